// Tests of the actor mailbox (runtime/mailbox.h, an internal API): an
// intrusive MPSC queue whose producers' end carries the "empty and
// unscheduled" bit.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

// The internal headers have no extern "C" of their own.
extern "C" {
#include "runtime/mailbox.h"
}

namespace {

// Messages that live in the test, not in the pool: the mailbox only links
// them.
std::vector<weft_msg> MakeMsgs(size_t n, uint64_t from) {
  std::vector<weft_msg> v(n);
  for (size_t i = 0; i < n; i++) {
    v[i] = weft_msg{};
    v[i].word = i;
    v[i].from.id = from;
  }
  return v;
}

// Pops with BUSY treated as "try again"; EMPTY and MSG are returned.
weft__pop_result PopRetryingBusy(weft__mailbox *mb, weft_msg **out) {
  for (;;) {
    weft__pop_result r = weft__mailbox_pop(mb, out);
    if (r != WEFT__POP_BUSY) return r;
    std::this_thread::yield();
  }
}

TEST(Mailbox, FreshMailboxPopsEmpty) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  weft_msg *m = nullptr;
  EXPECT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
  EXPECT_EQ(nullptr, m);
}

TEST(Mailbox, SingleThreadPopsInPushOrder) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(1000, 1);
  for (auto &m : msgs) weft__mailbox_push(&mb, &m);
  for (size_t i = 0; i < msgs.size(); i++) {
    weft_msg *m = nullptr;
    ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m)) << "at " << i;
    ASSERT_EQ(&msgs[i], m) << "at " << i;
    ASSERT_EQ(i, m->word);
  }
  weft_msg *m = nullptr;
  EXPECT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
}

TEST(Mailbox, InterleavedPushAndPopKeepFifo) {
  // The queue passes through "one message left" (where pop re-inserts the
  // stub) many times.
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(300, 1);
  size_t pushed = 0, popped = 0;
  for (size_t round = 0; round < 100; round++) {
    for (size_t k = 0; k < round % 4 + 1 && pushed < msgs.size(); k++)
      weft__mailbox_push(&mb, &msgs[pushed++]);
    for (size_t k = 0; k < round % 3 + 1; k++) {
      weft_msg *m = nullptr;
      weft__pop_result r = weft__mailbox_pop(&mb, &m);
      if (popped == pushed) {
        ASSERT_EQ(WEFT__POP_EMPTY, r);
        break;
      }
      ASSERT_EQ(WEFT__POP_MSG, r);
      ASSERT_EQ(&msgs[popped], m);
      popped++;
    }
  }
  while (popped < pushed) {
    weft_msg *m = nullptr;
    ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
    ASSERT_EQ(&msgs[popped++], m);
  }
  weft_msg *m = nullptr;
  EXPECT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
}

TEST(Mailbox, FirstPushIntoFreshMailboxMustScheduleLaterPushesNot) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(3, 1);
  EXPECT_TRUE(weft__mailbox_push(&mb, &msgs[0]));
  EXPECT_FALSE(weft__mailbox_push(&mb, &msgs[1]));
  EXPECT_FALSE(weft__mailbox_push(&mb, &msgs[2]));
}

TEST(Mailbox, PushAfterMarkEmptyMustScheduleAgain) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(4, 1);
  ASSERT_TRUE(weft__mailbox_push(&mb, &msgs[0]));
  ASSERT_FALSE(weft__mailbox_push(&mb, &msgs[1]));
  weft_msg *m = nullptr;
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  ASSERT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
  // Still "scheduled" until the consumer marks it: no push schedules.
  ASSERT_TRUE(weft__mailbox_mark_empty(&mb));
  EXPECT_TRUE(weft__mailbox_push(&mb, &msgs[2]));
  EXPECT_FALSE(weft__mailbox_push(&mb, &msgs[3]));
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  EXPECT_EQ(&msgs[2], m);
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  EXPECT_EQ(&msgs[3], m);
}

TEST(Mailbox, PopOnMarkedEmptyMailboxIsEmpty) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(1, 1);
  weft__mailbox_push(&mb, &msgs[0]);
  weft_msg *m = nullptr;
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  ASSERT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
  ASSERT_TRUE(weft__mailbox_mark_empty(&mb));
  EXPECT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
}

TEST(Mailbox, MarkEmptyFailsWhenAMessageArrivedAfterEmptyPop) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(2, 1);
  ASSERT_TRUE(weft__mailbox_push(&mb, &msgs[0]));
  weft_msg *m = nullptr;
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  ASSERT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
  // A producer gets in between the consumer's EMPTY and its mark.
  EXPECT_FALSE(weft__mailbox_push(&mb, &msgs[1]));
  EXPECT_FALSE(weft__mailbox_mark_empty(&mb));
  // The consumer is still the scheduled one and finds the message.
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  EXPECT_EQ(&msgs[1], m);
  ASSERT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
  EXPECT_TRUE(weft__mailbox_mark_empty(&mb));
}

TEST(Mailbox, MarkEmptyIsRefusedWhileMessagesAreQueued) {
  weft__mailbox mb;
  weft__mailbox_init(&mb);
  auto msgs = MakeMsgs(2, 1);
  weft__mailbox_push(&mb, &msgs[0]);
  weft__mailbox_push(&mb, &msgs[1]);
  EXPECT_FALSE(weft__mailbox_mark_empty(&mb));
  weft_msg *m = nullptr;
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  EXPECT_FALSE(weft__mailbox_mark_empty(&mb));
  ASSERT_EQ(WEFT__POP_MSG, weft__mailbox_pop(&mb, &m));
  EXPECT_EQ(&msgs[1], m);
}

// 4 producers x 200k messages into one consumer that follows the actor
// protocol: it runs a "turn" only while it holds a schedule token, and a
// producer hands it one exactly when its push returned true. A turn pops
// until EMPTY and ends when mark_empty succeeds; mark_empty failing means a
// message arrived, so the turn goes on.
TEST(Mailbox, FourProducersOneConsumerExactlyOnceFifoAndOneSchedulePerEmpty) {
  constexpr int kProducers = 4;
  constexpr size_t kPerProducer = 200000;

  weft__mailbox mb;
  weft__mailbox_init(&mb);
  std::vector<std::vector<weft_msg>> msgs;
  for (int p = 0; p < kProducers; p++)
    msgs.push_back(MakeMsgs(kPerProducer, static_cast<uint64_t>(p)));

  std::atomic<int64_t> tokens{0};  // schedules handed to the consumer
  std::atomic<uint64_t> pushes_true{0};
  std::atomic<bool> go{false};

  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; p++) {
    producers.emplace_back([&, p] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      uint64_t mine = 0;
      for (auto &m : msgs[p]) {
        if (weft__mailbox_push(&mb, &m)) {
          mine++;
          tokens.fetch_add(1, std::memory_order_release);
        }
      }
      pushes_true.fetch_add(mine);
    });
  }

  const size_t total = kProducers * kPerProducer;
  std::vector<uint64_t> next_seq(kProducers, 0);
  std::vector<uint8_t> seen(total, 0);
  size_t received = 0;
  uint64_t marks_ok = 0;
  uint64_t fifo_errors = 0, dup_errors = 0, bad_from = 0;
  int64_t max_tokens = 0;
  bool timed_out = false;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);

  go.store(true, std::memory_order_release);
  while (received < total || tokens.load(std::memory_order_acquire) > 0) {
    int64_t t = tokens.load(std::memory_order_acquire);
    if (t == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        timed_out = true;
        break;
      }
      std::this_thread::yield();
      continue;
    }
    if (t > max_tokens) max_tokens = t;
    // One turn.
    for (;;) {
      weft_msg *m = nullptr;
      weft__pop_result r = PopRetryingBusy(&mb, &m);
      if (r == WEFT__POP_MSG) {
        uint64_t p = m->from.id;
        if (p >= static_cast<uint64_t>(kProducers)) {
          bad_from++;
          continue;
        }
        if (m->word != next_seq[p]) fifo_errors++;
        next_seq[p] = m->word + 1;
        size_t idx = p * kPerProducer + m->word;
        if (seen[idx]++) dup_errors++;
        received++;
        continue;
      }
      if (weft__mailbox_mark_empty(&mb)) {
        marks_ok++;
        tokens.fetch_sub(1, std::memory_order_acq_rel);
        break;
      }
    }
  }
  for (auto &t : producers) t.join();

  ASSERT_FALSE(timed_out) << "received " << received << " of " << total;
  EXPECT_EQ(total, received);
  EXPECT_EQ(0u, fifo_errors);
  EXPECT_EQ(0u, dup_errors);
  EXPECT_EQ(0u, bad_from);
  for (int p = 0; p < kProducers; p++) EXPECT_EQ(kPerProducer, next_seq[p]);
  // Entries into the empty state: the initial one plus every successful
  // mark_empty. Exits from it: every push that returned true. The consumer
  // ended on a successful mark, so the mailbox is in that state now:
  // 1 + marks_ok == pushes_true + 1.
  EXPECT_EQ(pushes_true.load(), marks_ok);
  EXPECT_EQ(0, tokens.load());
  // Pushes returning true and successful marks alternate, so the consumer
  // never found more than one schedule pending when it started a turn.
  EXPECT_EQ(1, max_tokens);
  weft_msg *m = nullptr;
  EXPECT_EQ(WEFT__POP_EMPTY, weft__mailbox_pop(&mb, &m));
}

}  // namespace

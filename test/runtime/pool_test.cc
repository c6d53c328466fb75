// Tests of message memory: weft_msg_new / weft_msg_free and the per-thread
// pools behind them (runtime/pool.h).
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

// The internal headers have no extern "C" of their own.
extern "C" {
#include "runtime/pool.h"
}
#include "weft/weft.h"

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_TEST_ASAN 1
#endif
#endif

namespace {

TEST(Pool, MsgNewOfEverySizeIsUsableAndFreed) {
  const int64_t before = weft_msg_outstanding();
  for (uint32_t size : {0u, 1u, 31u, 4000u, 100000u}) {
    SCOPED_TRACE(size);
    weft_msg *m = weft_msg_new(42, size);
    ASSERT_NE(nullptr, m);
    EXPECT_EQ(42u, m->type);
    EXPECT_EQ(size, m->size);
    EXPECT_EQ(0u, m->word);
    EXPECT_EQ(0u, m->from.id);
    EXPECT_EQ(static_cast<void *>(m + 1), weft_msg_data(m));
    // Every byte of data is writable and keeps what was written (ASan
    // catches a block too small).
    auto *d = static_cast<unsigned char *>(weft_msg_data(m));
    for (uint32_t i = 0; i < size; i++) d[i] = static_cast<unsigned char>(i * 7);
    m->word = ~0ull;
    m->from.id = 99;
    for (uint32_t i = 0; i < size; i++)
      ASSERT_EQ(static_cast<unsigned char>(i * 7), d[i]) << "at " << i;
    EXPECT_EQ(before + 1, weft_msg_outstanding());
    weft_msg_free(m);
    EXPECT_EQ(before, weft_msg_outstanding());
  }
}

TEST(Pool, RecycledBlockIsReinitialised) {
  weft_msg *a = weft_msg_new(1, 8);
  ASSERT_NE(nullptr, a);
  a->word = 123;
  a->from.id = 456;
  weft_msg_free(a);
  weft_msg *b = weft_msg_new(2, 8);
  ASSERT_NE(nullptr, b);
  EXPECT_EQ(2u, b->type);
  EXPECT_EQ(8u, b->size);
  EXPECT_EQ(0u, b->word);
  EXPECT_EQ(0u, b->from.id);
  weft_msg_free(b);
}

TEST(Pool, FreeOfNullIsIgnored) {
  const int64_t before = weft_msg_outstanding();
  weft_msg_free(nullptr);
  EXPECT_EQ(before, weft_msg_outstanding());
}

TEST(Pool, OutstandingCountsAllocationsUpAndFreesDown) {
  const int64_t before = weft_msg_outstanding();
  std::vector<weft_msg *> v;
  for (int i = 0; i < 1000; i++) {
    // Sizes spread over every class and the large-object path.
    uint32_t size = static_cast<uint32_t>((i * 37) % 5000);
    weft_msg *m = weft_msg_new(0, size);
    ASSERT_NE(nullptr, m);
    std::memset(weft_msg_data(m), 0xAB, size);
    v.push_back(m);
    ASSERT_EQ(before + i + 1, weft_msg_outstanding());
  }
  for (size_t i = 0; i < v.size(); i++) {
    weft_msg_free(v[i]);
    ASSERT_EQ(before + static_cast<int64_t>(v.size() - i - 1),
              weft_msg_outstanding());
  }
}

TEST(Pool, SizeClassGrowsWithSizeAndHugeSizesShareTheLargeClass) {
  const unsigned large = weft__pool_class(size_t{1} << 20);
  EXPECT_EQ(large, weft__pool_class(100000));
  EXPECT_EQ(large, weft__pool_class(size_t{1} << 32));
  unsigned prev = weft__pool_class(0);
  for (size_t size = 1; size <= 20000; size++) {
    unsigned c = weft__pool_class(size);
    ASSERT_GE(c, prev) << "at " << size;
    ASSERT_LE(c, large) << "at " << size;
    prev = c;
  }
  EXPECT_LT(weft__pool_class(64), large) << "small messages are pooled";
}

TEST(Pool, MessageAllocatedOnOneThreadIsFreedOnAnother) {
  const int64_t before = weft_msg_outstanding();
  std::vector<weft_msg *> v;
  std::thread t([&] {
    for (uint32_t i = 0; i < 2000; i++) {
      weft_msg *m = weft_msg_new(7, i % 300);
      if (m == nullptr) return;
      std::memset(weft_msg_data(m), static_cast<int>(i & 0xFF), m->size);
      m->word = i;
      v.push_back(m);
    }
  });
  t.join();
  ASSERT_EQ(2000u, v.size());
  // The allocating thread has exited; its messages still count.
  EXPECT_EQ(before + 2000, weft_msg_outstanding());
  for (uint32_t i = 0; i < v.size(); i++) {
    ASSERT_EQ(i, v[i]->word);
    ASSERT_EQ(i % 300, v[i]->size);
    weft_msg_free(v[i]);
  }
  EXPECT_EQ(before, weft_msg_outstanding());

  // And the other way: allocated here, freed on a thread.
  v.clear();
  for (int i = 0; i < 2000; i++) v.push_back(weft_msg_new(7, 100));
  std::thread f([&] {
    for (weft_msg *m : v) weft_msg_free(m);
  });
  f.join();
  EXPECT_EQ(before, weft_msg_outstanding());
}

// A bounded hand-off queue between two threads.
class Channel {
 public:
  explicit Channel(size_t cap) : cap_(cap) {}
  void Put(weft_msg *m) {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [this] { return q_.size() < cap_; });
    q_.push_back(m);
    cv_.notify_all();
  }
  weft_msg *Get() {
    std::unique_lock<std::mutex> g(mu_);
    cv_.wait(g, [this] { return !q_.empty(); });
    weft_msg *m = q_.front();
    q_.pop_front();
    cv_.notify_all();
    return m;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<weft_msg *> q_;
  size_t cap_;
};

TEST(Pool, ProducerConsumerThreadsLeaveNothingOutstanding) {
  constexpr uint64_t kMsgs = 200000;
  constexpr size_t kCap = 1024;
  const int64_t before = weft_msg_outstanding();
  Channel ch(kCap);
  std::set<uintptr_t> addrs;  // every block the producer was given
  uint64_t bad = 0;

  std::thread producer([&] {
    for (uint64_t i = 0; i < kMsgs; i++) {
      weft_msg *m = weft_msg_new(1, 16);
      if (m == nullptr) abort();
      m->word = i;
      std::memset(weft_msg_data(m), static_cast<int>(i & 0xFF), 16);
      addrs.insert(reinterpret_cast<uintptr_t>(m));
      ch.Put(m);
    }
    ch.Put(nullptr);
  });
  std::thread consumer([&] {
    uint64_t expect = 0;
    for (;;) {
      weft_msg *m = ch.Get();
      if (m == nullptr) break;
      auto *d = static_cast<unsigned char *>(weft_msg_data(m));
      if (m->word != expect++ || d[15] != (m->word & 0xFF)) bad++;
      weft_msg_free(m);
    }
  });
  producer.join();
  consumer.join();
  EXPECT_EQ(0u, bad);
  EXPECT_EQ(before, weft_msg_outstanding());
#ifndef WEFT_TEST_ASAN
  // pool.h: the consumer's surplus travels back to the producer through
  // the depot, so the producer's blocks are recycled, not malloc'd anew.
  // At most kCap are in flight plus what two thread caches hold.
  EXPECT_LT(addrs.size(), 4u * kCap) << "blocks were not recycled";
#endif
}

}  // namespace

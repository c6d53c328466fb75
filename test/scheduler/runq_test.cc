// The per-worker run queue: FIFO for its owner, half-stealing for thieves,
// every job taken exactly once under contention.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

extern "C" {
#include "scheduler/runq.h"
}

namespace {

struct TestJob {
  weft__job job;
  int id;
};

int IdOf(weft__job *j) { return reinterpret_cast<TestJob *>(j)->id; }

std::vector<TestJob> MakeJobs(int n) {
  std::vector<TestJob> jobs(n);
  for (int i = 0; i < n; i++) jobs[i].id = i;
  return jobs;
}

TEST(RunQueue, OwnerTakesJobsInFifoOrder) {
  weft__runq q;
  weft__runq_init(&q);
  auto jobs = MakeJobs(10);
  for (auto &j : jobs) ASSERT_TRUE(weft__runq_push(&q, &j.job));
  EXPECT_EQ(10u, weft__runq_len(&q));
  for (int i = 0; i < 10; i++) {
    weft__job *j = weft__runq_pop(&q);
    ASSERT_NE(nullptr, j);
    EXPECT_EQ(i, IdOf(j));
  }
  EXPECT_EQ(nullptr, weft__runq_pop(&q));
}

TEST(RunQueue, PushFailsWhenFullAndSpillMovesOlderHalfPlusNewJob) {
  weft__runq q;
  weft__runq_init(&q);
  auto jobs = MakeJobs(WEFT__RUNQ_SIZE + 1);
  for (unsigned i = 0; i < WEFT__RUNQ_SIZE; i++)
    ASSERT_TRUE(weft__runq_push(&q, &jobs[i].job));
  weft__job *extra = &jobs[WEFT__RUNQ_SIZE].job;
  EXPECT_FALSE(weft__runq_push(&q, extra));

  weft__job *first = nullptr, *last = nullptr;
  uint32_t n = weft__runq_spill(&q, extra, &first, &last);
  ASSERT_EQ(WEFT__RUNQ_SIZE / 2 + 1, n);
  // The spilled list holds the oldest half, in order, then the new job.
  int expect = 0;
  for (weft__job *j = first; j != nullptr; j = j->next) {
    if (j == extra) {
      EXPECT_EQ(j, last);
      break;
    }
    EXPECT_EQ(expect++, IdOf(j));
  }
  EXPECT_EQ(int(WEFT__RUNQ_SIZE / 2), expect);
  // The newer half stays, still in order.
  EXPECT_EQ(WEFT__RUNQ_SIZE / 2, weft__runq_len(&q));
  EXPECT_EQ(int(WEFT__RUNQ_SIZE / 2), IdOf(weft__runq_pop(&q)));
}

TEST(RunQueue, SpillOnANotFullQueueChangesNothing) {
  weft__runq q;
  weft__runq_init(&q);
  auto jobs = MakeJobs(3);
  ASSERT_TRUE(weft__runq_push(&q, &jobs[0].job));
  weft__job *first = nullptr, *last = nullptr;
  EXPECT_EQ(0u, weft__runq_spill(&q, &jobs[1].job, &first, &last));
  EXPECT_EQ(1u, weft__runq_len(&q));
}

TEST(RunQueue, ThiefTakesHalfRoundedUpAndRunsTheNewestOfThem) {
  weft__runq victim, mine;
  weft__runq_init(&victim);
  weft__runq_init(&mine);
  auto jobs = MakeJobs(9);
  for (auto &j : jobs) ASSERT_TRUE(weft__runq_push(&victim, &j.job));
  weft__job *run = weft__runq_steal(&mine, &victim);
  ASSERT_NE(nullptr, run);
  // 9 - 9/2 = 5 taken: ids 0..4; 4 runs now, 0..3 wait in mine.
  EXPECT_EQ(4, IdOf(run));
  EXPECT_EQ(4u, weft__runq_len(&mine));
  EXPECT_EQ(4u, weft__runq_len(&victim));
  for (int i = 0; i < 4; i++) EXPECT_EQ(i, IdOf(weft__runq_pop(&mine)));
  for (int i = 5; i < 9; i++) EXPECT_EQ(i, IdOf(weft__runq_pop(&victim)));
  EXPECT_EQ(nullptr, weft__runq_steal(&mine, &victim));
}

TEST(RunQueue, PopAtTakesTheChosenPositionAndKeepsTheRest) {
  weft__runq q;
  weft__runq_init(&q);
  auto jobs = MakeJobs(5);
  for (auto &j : jobs) ASSERT_TRUE(weft__runq_push(&q, &j.job));
  EXPECT_EQ(2, IdOf(weft__runq_pop_at(&q, 7)));  // 7 % 5 == 2
  std::vector<int> rest;
  while (weft__job *j = weft__runq_pop(&q)) rest.push_back(IdOf(j));
  std::sort(rest.begin(), rest.end());
  EXPECT_EQ((std::vector<int>{0, 1, 3, 4}), rest);
}

// One owner pushing and popping while two thieves steal: each job is taken
// exactly once. Run under ThreadSanitizer in CI.
TEST(RunQueue, OwnerAndThievesUnderContentionTakeEachJobExactlyOnce) {
  constexpr int kJobs = 200000;
  weft__runq victim;
  weft__runq_init(&victim);
  auto jobs = MakeJobs(kJobs);
  std::vector<std::atomic<int>> taken(kJobs);
  for (auto &t : taken) t.store(0);
  std::atomic<bool> done{false};
  std::atomic<int> total{0};

  auto thief = [&] {
    weft__runq mine;
    weft__runq_init(&mine);
    while (!done.load(std::memory_order_acquire) || weft__runq_len(&victim)) {
      weft__job *j = weft__runq_steal(&mine, &victim);
      if (j == nullptr) continue;
      taken[IdOf(j)].fetch_add(1);
      total.fetch_add(1);
      while ((j = weft__runq_pop(&mine)) != nullptr) {
        taken[IdOf(j)].fetch_add(1);
        total.fetch_add(1);
      }
    }
  };
  std::thread t1(thief), t2(thief);
  std::vector<weft__job *> spilled;
  for (int i = 0; i < kJobs; i++) {
    weft__job *j = &jobs[i].job;
    while (!weft__runq_push(&victim, j)) {
      weft__job *first, *last;
      if (weft__runq_spill(&victim, j, &first, &last)) {
        for (weft__job *s = first; s; s = s->next) spilled.push_back(s);
        break;
      }
    }
    if (i % 3 == 0) {
      if (weft__job *p = weft__runq_pop(&victim)) {
        taken[IdOf(p)].fetch_add(1);
        total.fetch_add(1);
      }
    }
  }
  while (weft__job *p = weft__runq_pop(&victim)) {
    taken[IdOf(p)].fetch_add(1);
    total.fetch_add(1);
  }
  done.store(true, std::memory_order_release);
  t1.join();
  t2.join();
  for (weft__job *s : spilled) {
    taken[IdOf(s)].fetch_add(1);
    total.fetch_add(1);
  }
  EXPECT_EQ(kJobs, total.load());
  for (int i = 0; i < kJobs; i++) ASSERT_EQ(1, taken[i].load()) << "job " << i;
}

}  // namespace

// The worker pool: outside submissions run, work spreads by stealing, idle
// workers park (no CPU) and wake for new work, run-next cannot starve the
// queue, and shutdown joins everything.
#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "weft/testing/gtest.h"

extern "C" {
#include "scheduler/sched.h"
}

namespace {

using weft::testing::Latch;

struct CountJob {
  weft__job job;
  std::atomic<int> *runs;
  Latch *latch;
};

void RunCount(weft__job *j, weft__worker *) {
  auto *c = reinterpret_cast<CountJob *>(j);
  c->runs->fetch_add(1);
  c->latch->CountDown();
}

class SchedTest : public ::testing::Test {
 protected:
  void Open(unsigned workers, unsigned spin_us = 50) {
    weft__sched_config cfg{};
    cfg.workers = workers;
    cfg.spin_us = spin_us;
    ASSERT_EQ(WEFT_OK, weft__sched_create(&cfg, &s_));
  }
  void TearDown() override {
    if (s_) weft__sched_destroy(s_);
  }
  weft__sched *s_ = nullptr;
};

TEST_F(SchedTest, JobsSubmittedFromOutsideThePoolEachRunOnce) {
  Open(2);
  constexpr int kJobs = 10000;
  std::atomic<int> runs{0};
  Latch latch(kJobs);
  std::vector<CountJob> jobs(kJobs);
  for (auto &j : jobs) {
    j.job.run = RunCount;
    j.runs = &runs;
    j.latch = &latch;
    weft__sched_submit(s_, &j.job, WEFT__SUBMIT_TAIL);
  }
  ASSERT_TRUE(latch.WaitFor());
  ASSERT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
  EXPECT_EQ(kJobs, runs.load());
}

// Work that one worker pushes onto its own queue is finished by others.
struct SpinJob {
  weft__job job;
  std::atomic<int> *where;  // one counter per worker index
  Latch *latch;
};

void RunSpin(weft__job *j, weft__worker *w) {
  auto *s = reinterpret_cast<SpinJob *>(j);
  // Enough work (about 20 us) that a second worker has time to steal.
  auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
  while (std::chrono::steady_clock::now() < until) {
  }
  s->where[weft__worker_index(w)].fetch_add(1);
  s->latch->CountDown();
}

struct FanOutJob {
  weft__job job;
  weft__sched *s;
  std::vector<SpinJob> *children;
  unsigned *origin;
};

void RunFanOut(weft__job *j, weft__worker *w) {
  auto *f = reinterpret_cast<FanOutJob *>(j);
  *f->origin = weft__worker_index(w);
  for (auto &c : *f->children)
    weft__sched_submit(f->s, &c.job, WEFT__SUBMIT_TAIL);  // onto w's queue
}

TEST_F(SchedTest, WorkPushedOntoOneWorkerIsStolenByAnother) {
  Open(2);
  constexpr int kChildren = 2000;
  std::atomic<int> where[2] = {{0}, {0}};
  Latch latch(kChildren);
  std::vector<SpinJob> children(kChildren);
  for (auto &c : children) {
    c.job.run = RunSpin;
    c.where = where;
    c.latch = &latch;
  }
  unsigned origin = 99;
  FanOutJob fan{{RunFanOut, nullptr}, s_, &children, &origin};
  weft__sched_submit(s_, &fan.job, WEFT__SUBMIT_TAIL);
  ASSERT_TRUE(latch.WaitFor());
  ASSERT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
  ASSERT_LT(origin, 2u);
  unsigned other = 1 - origin;
  EXPECT_GT(where[other].load(), 0) << "no job ran on the other worker";
  EXPECT_EQ(kChildren, where[0].load() + where[1].load());
  struct weft__sched_stats st;
  weft__sched_stats(s_, &st);
  EXPECT_GT(st.steals, 0u);
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Parked workers sleep in the kernel: over a quiet stretch the process
// uses almost no CPU (a spinning pool would use the whole stretch times
// the worker count).
TEST_F(SchedTest, IdleWorkersParkAndUseNoCpu) {
  Open(2);
  ASSERT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
  double before = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  double used = ProcessCpuSeconds() - before;
  EXPECT_LT(used, 0.03) << "an idle pool burned " << used << " s of CPU";
}

TEST_F(SchedTest, ParkedWorkersWakeForNewWorkFromOutside) {
  Open(2);
  for (int round = 0; round < 50; round++) {
    ASSERT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
    std::atomic<int> runs{0};
    Latch latch(1);
    CountJob j{{RunCount, nullptr}, &runs, &latch};
    weft__sched_submit(s_, &j.job, WEFT__SUBMIT_TAIL);
    ASSERT_TRUE(latch.WaitFor()) << "round " << round;
    ASSERT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
  }
  struct weft__sched_stats st;
  weft__sched_stats(s_, &st);
  EXPECT_GE(st.parks, 50u);
}

// Two jobs that keep re-submitting each other as "run next" must not starve
// a job waiting in the queue: on one worker, the queued job still runs.
struct BounceJob {
  weft__job job;
  weft__sched *s;
  BounceJob *peer;
  std::atomic<bool> *stop;
  std::atomic<long> *bounces;
};

void RunBounce(weft__job *j, weft__worker *) {
  auto *b = reinterpret_cast<BounceJob *>(j);
  b->bounces->fetch_add(1);
  if (!b->stop->load()) weft__sched_submit(b->s, &b->peer->job, WEFT__SUBMIT_NEXT);
}

struct StopJob {
  weft__job job;
  std::atomic<bool> *stop;
  std::atomic<long> *bounces;
  long seen;
  Latch *latch;
};

void RunStop(weft__job *j, weft__worker *) {
  auto *s = reinterpret_cast<StopJob *>(j);
  s->seen = s->bounces->load();
  s->stop->store(true);
  s->latch->CountDown();
}

struct StartJob {
  weft__job job;
  weft__sched *s;
  BounceJob *first;
  StopJob *queued;
};

void RunStart(weft__job *j, weft__worker *) {
  auto *st = reinterpret_cast<StartJob *>(j);
  // From the worker: the bouncer goes to run-next, the stopper behind it
  // in the queue.
  weft__sched_submit(st->s, &st->queued->job, WEFT__SUBMIT_TAIL);
  weft__sched_submit(st->s, &st->first->job, WEFT__SUBMIT_NEXT);
}

TEST_F(SchedTest, RunNextPairCannotStarveAQueuedJob) {
  Open(1);
  std::atomic<bool> stop{false};
  std::atomic<long> bounces{0};
  Latch latch(1);
  BounceJob a{{RunBounce, nullptr}, s_, nullptr, &stop, &bounces};
  BounceJob b{{RunBounce, nullptr}, s_, &a, &stop, &bounces};
  a.peer = &b;
  StopJob queued{{RunStop, nullptr}, &stop, &bounces, -1, &latch};
  StartJob start{{RunStart, nullptr}, s_, &a, &queued};
  weft__sched_submit(s_, &start.job, WEFT__SUBMIT_TAIL);
  ASSERT_TRUE(latch.WaitFor(std::chrono::seconds(10)))
      << "the queued job never ran: run-next starved it";
  EXPECT_LE(queued.seen, 1000) << "it ran, but only after a long streak";
  ASSERT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
}

struct WaitIdleFromWorkerJob {
  weft__job job;
  weft__sched *s;
  weft_err got;
  Latch *latch;
};

void RunWaitIdle(weft__job *j, weft__worker *) {
  auto *w = reinterpret_cast<WaitIdleFromWorkerJob *>(j);
  w->got = weft__sched_wait_idle(w->s, 1000);
  w->latch->CountDown();
}

TEST_F(SchedTest, WaitIdleFromAWorkerIsRefused) {
  Open(2);
  Latch latch(1);
  WaitIdleFromWorkerJob j{{RunWaitIdle, nullptr}, s_, WEFT_OK, &latch};
  weft__sched_submit(s_, &j.job, WEFT__SUBMIT_TAIL);
  ASSERT_TRUE(latch.WaitFor());
  EXPECT_EQ(WEFT_ESTATE, j.got);
}

struct BusyJob {
  weft__job job;
  std::atomic<bool> *release;
  Latch *started;
};

void RunBusy(weft__job *j, weft__worker *) {
  auto *b = reinterpret_cast<BusyJob *>(j);
  b->started->CountDown();
  while (!b->release->load()) std::this_thread::yield();
}

TEST_F(SchedTest, WaitIdleTimesOutWhileAJobRuns) {
  Open(2);
  std::atomic<bool> release{false};
  Latch started(1);
  BusyJob j{{RunBusy, nullptr}, &release, &started};
  weft__sched_submit(s_, &j.job, WEFT__SUBMIT_TAIL);
  ASSERT_TRUE(started.WaitFor());
  EXPECT_EQ(WEFT_ETIMEDOUT, weft__sched_wait_idle(s_, 20ull * 1000 * 1000));
  release.store(true);
  EXPECT_EQ(WEFT_OK, weft__sched_wait_idle(s_, 10ull * 1000 * 1000 * 1000));
}

TEST_F(SchedTest, CreateRefusesZeroWorkers) {
  weft__sched_config cfg{};
  cfg.workers = 0;
  weft__sched *s = nullptr;
  EXPECT_EQ(WEFT_EINVAL, weft__sched_create(&cfg, &s));
  EXPECT_EQ(nullptr, s);
}

TEST_F(SchedTest, DestroyJoinsAllWorkersEvenWhileSomeAreSearching) {
  for (int i = 0; i < 20; i++) {
    weft__sched_config cfg{};
    cfg.workers = 2;
    cfg.spin_us = 1000;  // workers still spinning when destroy begins
    weft__sched *s = nullptr;
    ASSERT_EQ(WEFT_OK, weft__sched_create(&cfg, &s));
    weft__sched_destroy(s);
  }
  SUCCEED();
}

}  // namespace

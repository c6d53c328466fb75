// test/fiber_test.cc - tests for runtime/fiber.{h,c} (the C fiber layer).
#include "runtime/fiber.h"

#include <gtest/gtest.h>

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cfenv>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FIBER_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FIBER_TEST_SANITIZED 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FIBER_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define FIBER_TEST_TSAN 1
#endif

namespace {

// gettid() in a function the optimizer cannot merge across a suspend
// (pthread_self()/std::this_thread::get_id() are declared const).
__attribute__((noinline)) pid_t CurrentTid() { return gettid(); }

struct Fiber {
  weft__fiber *f = nullptr;
  Fiber(void (*entry)(void *), void *arg, size_t stack = 0) {
    EXPECT_EQ(weft__fiber_create(&f, stack, entry, arg), WEFT_OK);
  }
  ~Fiber() { weft__fiber_destroy(f); }
  Fiber(const Fiber &) = delete;
  Fiber &operator=(const Fiber &) = delete;
};

// ---- basics ---------------------------------------------------------------

struct BasicState {
  int ran = 0;
  weft__fiber *seen_current = nullptr;
};

void BasicEntry(void *arg) {
  auto *s = static_cast<BasicState *>(arg);
  s->ran++;
  s->seen_current = weft__fiber_current();
}

TEST(Fiber, EntryRunsAndFinishes) {
  BasicState s;
  weft__fiber *f = nullptr;
  ASSERT_EQ(weft__fiber_create(&f, 0, BasicEntry, &s), WEFT_OK);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(weft__fiber_finished(f));
  EXPECT_EQ(s.ran, 0);  // create does not run it
  EXPECT_EQ(weft__fiber_current(), nullptr);

  weft__fiber_switch_in(f);
  EXPECT_EQ(s.ran, 1);
  EXPECT_EQ(s.seen_current, f);
  EXPECT_TRUE(weft__fiber_finished(f));
  EXPECT_EQ(weft__fiber_current(), nullptr);
  weft__fiber_destroy(f);
}

TEST(Fiber, CreateValidatesArguments) {
  weft__fiber *f = reinterpret_cast<weft__fiber *>(1);
  EXPECT_EQ(weft__fiber_create(nullptr, 0, BasicEntry, nullptr), WEFT_EINVAL);
  EXPECT_EQ(weft__fiber_create(&f, 0, nullptr, nullptr), WEFT_EINVAL);
  EXPECT_EQ(f, nullptr);
  EXPECT_EQ(weft__fiber_create(&f, SIZE_MAX, BasicEntry, nullptr), WEFT_EINVAL);
  // Tiny requests are raised to the minimum, huge-but-sane ones honoured.
  ASSERT_EQ(weft__fiber_create(&f, 1, BasicEntry, nullptr), WEFT_OK);
  void *lo;
  size_t size;
  weft__fiber_stack_bounds(f, &lo, &size);
  EXPECT_GE(size + 8192, WEFT__FIBER_MIN_STACK);  // minus the header
  weft__fiber_destroy(f);  // never started: allowed
  weft__fiber_destroy(nullptr);
}

TEST(Fiber, DefaultStackIs64KiB) {
  weft__fiber *f = nullptr;
  ASSERT_EQ(weft__fiber_create(&f, 0, BasicEntry, nullptr), WEFT_OK);
  void *lo;
  size_t size;
  weft__fiber_stack_bounds(f, &lo, &size);
  EXPECT_LE(size, WEFT__FIBER_DEFAULT_STACK);
  // Minus the header: ~200 bytes on x86_64, ~1-5 KiB with ucontext.
  EXPECT_GE(size, WEFT__FIBER_DEFAULT_STACK - 8192);
  weft__fiber_destroy(f);
}

// ---- ping-pong ------------------------------------------------------------

constexpr long kPingPongs = 1000000;

struct PingPong {
  long counter = 0;
  long fiber_saw_mismatch = 0;
};

void PingPongEntry(void *arg) {
  auto *p = static_cast<PingPong *>(arg);
  for (long i = 0; i < kPingPongs; i++) {
    if (p->counter != 2 * i) p->fiber_saw_mismatch++;
    p->counter++;  // odd: fiber's turn done
    weft__fiber_suspend();
  }
}

TEST(Fiber, PingPongAMillionTimes) {
  PingPong p;
  Fiber fb(PingPongEntry, &p);
  long caller_mismatch = 0;
  for (long i = 0; i < kPingPongs; i++) {
    weft__fiber_switch_in(fb.f);
    if (p.counter != 2 * i + 1 || weft__fiber_finished(fb.f))
      caller_mismatch++;
    p.counter++;  // even: caller's turn done
  }
  EXPECT_FALSE(weft__fiber_finished(fb.f));
  weft__fiber_switch_in(fb.f);  // loop ends, entry returns
  EXPECT_TRUE(weft__fiber_finished(fb.f));
  EXPECT_EQ(p.counter, 2 * kPingPongs);
  EXPECT_EQ(caller_mismatch, 0);
  EXPECT_EQ(p.fiber_saw_mismatch, 0);
}

// ---- values across switches -----------------------------------------------

// A generator: the caller sends x, the fiber replies with a running sum and
// keeps many locals (integer and floating point) live across each suspend,
// so callee-saved registers and stack slots must survive the switch.
struct Channel {
  long in = 0;
  long out = 0;
  double fout = 0;
  bool locals_ok = true;
};

void GeneratorEntry(void *arg) {
  auto *ch = static_cast<Channel *>(arg);
  long sum = 0;
  volatile long a = 11, b = 22, c = 33;
  long d = 44, e = 55, g = 66, h = 77;
  double fs = 0.5, fm = 1.0;
  for (int i = 0; i < 100; i++) {
    sum += ch->in;
    fs += 0.25;
    fm *= 1.5;
    d += 1; e += 2; g += 3; h += 4;
    ch->out = sum;
    ch->fout = fs;
    weft__fiber_suspend();
    if (a != 11 || b != 22 || c != 33 || d != 45 + i || e != 57 + 2 * i ||
        g != 69 + 3 * i || h != 81 + 4 * i)
      ch->locals_ok = false;
  }
  ch->out = -1;
  ch->fout = fm;
}

TEST(Fiber, ValuesPassAcrossSwitches) {
  Channel ch;
  Fiber fb(GeneratorEntry, &ch);
  long expect = 0;
  double fexpect = 0.5;
  for (int i = 0; i < 100; i++) {
    ch.in = i * 7 + 1;
    expect += ch.in;
    fexpect += 0.25;
    weft__fiber_switch_in(fb.f);
    ASSERT_EQ(ch.out, expect) << "at step " << i;
    ASSERT_DOUBLE_EQ(ch.fout, fexpect);
    // Clobber callee-saved registers on the caller side too.
    volatile long junk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    (void)junk;
  }
  weft__fiber_switch_in(fb.f);
  EXPECT_TRUE(weft__fiber_finished(fb.f));
  EXPECT_EQ(ch.out, -1);
  double fm = 1.0;
  for (int i = 0; i < 100; i++) fm *= 1.5;
  EXPECT_DOUBLE_EQ(ch.fout, fm);
  EXPECT_TRUE(ch.locals_ok);
}

#if defined(__x86_64__)
// MXCSR and the x87 control word belong to the fiber, not to the thread.
struct FpState {
  int initial = -1;
  int after_resume = -1;
};

void FpEntry(void *arg) {
  auto *s = static_cast<FpState *>(arg);
  s->initial = fegetround();
  fesetround(FE_UPWARD);
  weft__fiber_suspend();
  s->after_resume = fegetround();
  fesetround(FE_TONEAREST);
}

TEST(Fiber, FloatingPointControlIsPerFiber) {
  FpState s;
  Fiber fb(FpEntry, &s);
  ASSERT_EQ(fesetround(FE_DOWNWARD), 0);
  weft__fiber_switch_in(fb.f);
  EXPECT_EQ(fegetround(), FE_DOWNWARD);  // fiber's FE_UPWARD did not leak
  fesetround(FE_TONEAREST);
  weft__fiber_switch_in(fb.f);
  EXPECT_EQ(fegetround(), FE_TONEAREST);
  EXPECT_EQ(s.initial, FE_TONEAREST);  // fresh fiber: ABI default
  EXPECT_EQ(s.after_resume, FE_UPWARD);
  EXPECT_TRUE(weft__fiber_finished(fb.f));
}
#endif

// ---- nesting ----------------------------------------------------------------

struct Nest {
  weft__fiber *outer = nullptr;
  weft__fiber *inner = nullptr;
  std::vector<int> trace;
  bool current_ok = true;
};

void InnerEntry(void *arg) {
  auto *n = static_cast<Nest *>(arg);
  if (weft__fiber_current() != n->inner) n->current_ok = false;
  n->trace.push_back(2);
  weft__fiber_suspend();
  n->trace.push_back(4);
}

void OuterEntry(void *arg) {
  auto *n = static_cast<Nest *>(arg);
  n->trace.push_back(1);
  weft__fiber_switch_in(n->inner);
  if (weft__fiber_current() != n->outer) n->current_ok = false;
  n->trace.push_back(3);
  weft__fiber_suspend();  // back to the test body, inner still suspended
  weft__fiber_switch_in(n->inner);
  n->trace.push_back(5);
}

TEST(Fiber, SwitchInFromInsideAFiberNests) {
  Nest n;
  ASSERT_EQ(weft__fiber_create(&n.outer, 0, OuterEntry, &n), WEFT_OK);
  ASSERT_EQ(weft__fiber_create(&n.inner, 0, InnerEntry, &n), WEFT_OK);
  weft__fiber_switch_in(n.outer);
  EXPECT_EQ(weft__fiber_current(), nullptr);
  EXPECT_FALSE(weft__fiber_finished(n.inner));
  weft__fiber_switch_in(n.outer);
  EXPECT_TRUE(weft__fiber_finished(n.outer));
  EXPECT_TRUE(weft__fiber_finished(n.inner));
  EXPECT_EQ(n.trace, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(n.current_ok);
  weft__fiber_destroy(n.inner);
  weft__fiber_destroy(n.outer);
}

// ---- thread migration -----------------------------------------------------

constexpr int kHops = 40;

struct Migrant {
  std::vector<pid_t> fiber_tids;  // where the fiber found itself
  weft__fiber *self = nullptr;
  bool current_ok = true;
  long local_check = 0;
};

void MigrantEntry(void *arg) {
  auto *m = static_cast<Migrant *>(arg);
  long local = 12345;
  for (int i = 0; i < kHops; i++) {
    m->fiber_tids.push_back(CurrentTid());
    if (weft__fiber_current() != m->self) m->current_ok = false;
    local += i;
    weft__fiber_suspend();
  }
  m->local_check = local;
}

TEST(Fiber, ResumesOnAnotherThread) {
  Migrant m;
  Fiber fb(MigrantEntry, &m);
  m.self = fb.f;

  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;  // which worker may run the fiber next
  bool done = false;
  std::vector<pid_t> worker_tids;  // who called switch_in, per hop

  auto worker = [&](int me) {
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      cv.wait(lk, [&] { return done || turn == me; });
      if (done) return;
      worker_tids.push_back(CurrentTid());
      lk.unlock();
      weft__fiber_switch_in(fb.f);  // fiber runs here, on this thread
      lk.lock();
      // Publish only after switch_in returned (the fiber is saved).
      if (weft__fiber_finished(fb.f)) done = true;
      turn = 1 - me;
      cv.notify_all();
    }
  };
  std::thread t0(worker, 0), t1(worker, 1);
  t0.join();
  t1.join();

  ASSERT_TRUE(weft__fiber_finished(fb.f));
  ASSERT_EQ(m.fiber_tids.size(), static_cast<size_t>(kHops));
  ASSERT_EQ(worker_tids.size(), static_cast<size_t>(kHops + 1));
  EXPECT_NE(worker_tids[0], worker_tids[1]);
  for (int i = 0; i < kHops; i++) {
    EXPECT_EQ(m.fiber_tids[i], worker_tids[i]) << "hop " << i;
    if (i > 0) {
      EXPECT_NE(m.fiber_tids[i], m.fiber_tids[i - 1]) << "hop " << i;
    }
  }
  EXPECT_TRUE(m.current_ok);
  EXPECT_EQ(m.local_check, 12345 + kHops * (kHops - 1) / 2);
}

// Work stealing in miniature: several threads share one run queue, so each
// fiber resumes on whatever thread pops it, and finished fibers are
// destroyed on threads other than their creator.
struct Task {
  weft__fiber *f = nullptr;
  std::atomic<long> *total = nullptr;
  int steps = 0;
};

void TaskEntry(void *arg) {
  auto *t = static_cast<Task *>(arg);
  for (int i = 0; i < t->steps; i++) {
    t->total->fetch_add(1, std::memory_order_relaxed);
    weft__fiber_suspend();
  }
}

TEST(Fiber, SharedRunQueueAcrossThreads) {
  constexpr int kTasks = 300, kSteps = 50, kThreads = 4;
  std::atomic<long> total{0};
  std::vector<Task> tasks(kTasks);
  std::deque<Task *> q;
  std::mutex mu;
  for (auto &t : tasks) {
    t.total = &total;
    t.steps = kSteps;
    ASSERT_EQ(weft__fiber_create(&t.f, 0, TaskEntry, &t), WEFT_OK);
    q.push_back(&t);
  }
  std::atomic<int> finished{0};
  auto worker = [&] {
    for (;;) {
      Task *t = nullptr;
      {
        std::lock_guard<std::mutex> lk(mu);
        if (!q.empty()) {
          t = q.front();
          q.pop_front();
        }
      }
      if (!t) {
        if (finished.load() == kTasks) return;
        std::this_thread::yield();
        continue;
      }
      weft__fiber_switch_in(t->f);
      if (weft__fiber_finished(t->f)) {
        weft__fiber_destroy(t->f);
        t->f = nullptr;
        finished.fetch_add(1);
      } else {
        std::lock_guard<std::mutex> lk(mu);
        q.push_back(t);
      }
    }
  };
  std::vector<std::thread> th;
  for (int i = 0; i < kThreads; i++) th.emplace_back(worker);
  for (auto &x : th) x.join();
  EXPECT_EQ(finished.load(), kTasks);
  EXPECT_EQ(total.load(), static_cast<long>(kTasks) * kSteps);
}

// ---- many fibers ------------------------------------------------------------

long ResidentKiB() {
  long pages = 0, resident = 0;
  FILE *fp = std::fopen("/proc/self/statm", "r");
  if (!fp) return -1;
  if (std::fscanf(fp, "%ld %ld", &pages, &resident) != 2) resident = -1;
  std::fclose(fp);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

struct Many {
  long started = 0;
  long resumed = 0;
};

void ManyEntry(void *arg) {
  auto *m = static_cast<Many *>(arg);
  m->started++;
  weft__fiber_suspend();
  m->resumed++;
}

TEST(Fiber, TenThousandSuspendedAtOnce) {
#ifndef FIBER_TEST_TSAN
  constexpr int kN = 10000;
#else
  // Each fiber costs 2 mappings (guard + stack); TSan adds ~6 more of its
  // own, and vm.max_map_count defaults to 65530: 10,000 would not fit.
  constexpr int kN = 4000;
#endif
  Many m;
  std::vector<weft__fiber *> fs(kN, nullptr);
  long rss_before = ResidentKiB();
  for (int i = 0; i < kN; i++)
    ASSERT_EQ(weft__fiber_create(&fs[i], 0, ManyEntry, &m), WEFT_OK);
  for (int i = 0; i < kN; i++) weft__fiber_switch_in(fs[i]);
  EXPECT_EQ(m.started, kN);
  EXPECT_EQ(m.resumed, 0);
  long rss_during = ResidentKiB();
  for (int i = 0; i < kN; i++) ASSERT_FALSE(weft__fiber_finished(fs[i]));
  // Resume in reverse order: any order must work.
  for (int i = kN - 1; i >= 0; i--) weft__fiber_switch_in(fs[i]);
  EXPECT_EQ(m.resumed, kN);
  int finished = 0;
  for (int i = 0; i < kN; i++) finished += weft__fiber_finished(fs[i]);
  EXPECT_EQ(finished, kN);
  for (auto *f : fs) weft__fiber_destroy(f);
#ifndef FIBER_TEST_SANITIZED
  // Only touched pages count: far less than 64 KiB per fiber.
  ASSERT_GT(rss_before, 0);
  long per_fiber = (rss_during - rss_before) / kN;
  EXPECT_LT(per_fiber, 12) << "KiB resident per suspended fiber";
  std::printf("[ info     ] ~%ld KiB resident per suspended fiber\n",
              per_fiber);
#else
  (void)rss_before;
  (void)rss_during;
#endif
}

// ---- stack cache ------------------------------------------------------------

void NopEntry(void *) {}

TEST(Fiber, StackCacheReusesStacks) {
  weft__fiber_flush_thread_cache();
  weft__fiber_stats s0;
  weft__fiber_get_stats(&s0);
  weft__fiber *first = nullptr;
  int same = 0;
#ifndef FIBER_TEST_TSAN
  constexpr int kLoops = 100000;
#else
  constexpr int kLoops = 2000;  // TSan fiber create/destroy is ~0.4 ms
#endif
  for (int i = 0; i < kLoops; i++) {
    BasicState b;
    weft__fiber *f = nullptr;
    ASSERT_EQ(weft__fiber_create(&f, 0, BasicEntry, &b), WEFT_OK);
    if (i == 0) first = f;
    same += (f == first);
    weft__fiber_switch_in(f);
    ASSERT_EQ(b.ran, 1);
    ASSERT_EQ(b.seen_current, f);
    weft__fiber_destroy(f);
  }
  weft__fiber_stats s1;
  weft__fiber_get_stats(&s1);
  EXPECT_EQ(same, kLoops);  // LIFO cache: the very same stack every time
  EXPECT_LE(s1.stacks_mapped - s0.stacks_mapped, 1u);
  EXPECT_EQ(s1.stacks_unmapped, s0.stacks_unmapped);
}

TEST(Fiber, NonDefaultStacksAreUnmapped) {
  weft__fiber_stats s0, s1;
  weft__fiber_get_stats(&s0);
  for (int i = 0; i < 10; i++) {
    Fiber fb(NopEntry, nullptr, 256 * 1024);
    weft__fiber_switch_in(fb.f);
  }
  weft__fiber_get_stats(&s1);
  EXPECT_EQ(s1.stacks_mapped - s0.stacks_mapped, 10u);
  EXPECT_EQ(s1.stacks_unmapped - s0.stacks_unmapped, 10u);
}

TEST(Fiber, StacksFreedOnAnotherThreadAreRecycled) {
  constexpr int kN = 64;
  weft__fiber_flush_thread_cache();
  std::vector<weft__fiber *> fs(kN, nullptr);
  for (auto &f : fs) ASSERT_EQ(weft__fiber_create(&f, 0, NopEntry, nullptr), WEFT_OK);
  for (auto *f : fs) weft__fiber_switch_in(f);

  weft__fiber_stats s0, s1, s2;
  weft__fiber_get_stats(&s0);
  std::thread([&] {
    for (auto *f : fs) weft__fiber_destroy(f);
  }).join();  // thread exit flushes its cache into the global pool
  weft__fiber_get_stats(&s1);
  // Every stack is accounted for: in the pool or unmapped (pool full).
  EXPECT_EQ((s1.pool_stacks - s0.pool_stacks) +
                (s1.stacks_unmapped - s0.stacks_unmapped),
            static_cast<size_t>(kN));
  ASSERT_GE(s1.pool_stacks, static_cast<size_t>(kN));

  for (auto &f : fs) ASSERT_EQ(weft__fiber_create(&f, 0, NopEntry, nullptr), WEFT_OK);
  weft__fiber_get_stats(&s2);
  EXPECT_EQ(s2.stacks_mapped, s1.stacks_mapped);  // all from the pool
  for (auto *f : fs) weft__fiber_destroy(f);  // NEW fibers may be destroyed
}

// ---- deep recursion ---------------------------------------------------------

struct Deep {
  int depth = 0;
  long result = 0;
  uintptr_t lowest = UINTPTR_MAX;
};

__attribute__((noinline)) long Recurse(Deep *d, int n) {
  char frame[400];
  for (size_t i = 0; i < sizeof frame; i += 64) frame[i] = static_cast<char>(n);
  __asm__ volatile("" : : "r"(frame) : "memory");  // frame must really exist
  // The real frame (not &frame: ASan may put arrays on a fake stack).
  uintptr_t here = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (here < d->lowest) d->lowest = here;
  if (n == 0) {
    weft__fiber_suspend();  // suspend at the deepest point, then unwind
    return 0;
  }
  long below = Recurse(d, n - 1);
  __asm__ volatile("" : : "r"(frame) : "memory");
  return below + frame[0] + frame[64];
}

void DeepEntry(void *arg) {
  auto *d = static_cast<Deep *>(arg);
  d->result = Recurse(d, d->depth);
}

void RunDeep(size_t stack, int depth, double min_fraction_used) {
  Deep d;
  d.depth = depth;
  Fiber fb(DeepEntry, &d, stack);
  weft__fiber_switch_in(fb.f);
  ASSERT_FALSE(weft__fiber_finished(fb.f));
  weft__fiber_switch_in(fb.f);
  ASSERT_TRUE(weft__fiber_finished(fb.f));
  long expect = 0;
  for (int n = 1; n <= depth; n++) expect += 2 * static_cast<char>(n);
  EXPECT_EQ(d.result, expect);
  void *lo;
  size_t size;
  weft__fiber_stack_bounds(fb.f, &lo, &size);
  uintptr_t base = reinterpret_cast<uintptr_t>(lo);
  ASSERT_GT(d.lowest, base);  // stayed inside the stack
  double used = static_cast<double>(base + size - d.lowest) / size;
  EXPECT_GT(used, min_fraction_used);
}

TEST(Fiber, DeepRecursionWithinDefaultStack) {
  // ~100 frames of ~0.45 KiB: around 2/3 of 64 KiB (more under ASan).
  RunDeep(0, 100, 0.5);
}

TEST(Fiber, DeepRecursionWithinLargeStack) {
  // 1 MiB stack, ~1400 frames: most of it.
  RunDeep(1024 * 1024, 1400, 0.5);
}

// ---- misuse and overflow ------------------------------------------------------

__attribute__((noinline)) long Bottomless(long n) {
  volatile char frame[256];
  frame[0] = static_cast<char>(n);
  frame[255] = static_cast<char>(n);
  if (n == -1) return 0;  // never true; defeats infinite-recursion checks
  return Bottomless(n + 1) + frame[0] + frame[255];
}

void OverflowEntry(void *) { (void)Bottomless(0); }

void OverflowInFiber() {
  weft__fiber *f = nullptr;
  if (weft__fiber_create(&f, 0, OverflowEntry, nullptr) != WEFT_OK) return;
  weft__fiber_switch_in(f);
}

void SuspendForever(void *) { weft__fiber_suspend(); }

TEST(FiberDeathTest, GuardPageStopsStackOverflow) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(OverflowInFiber(), "");
}

TEST(FiberDeathTest, MisuseAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(weft__fiber_suspend(), "suspend outside a fiber");
  weft__fiber *f = nullptr;
  ASSERT_EQ(weft__fiber_create(&f, 0, SuspendForever, nullptr), WEFT_OK);
  weft__fiber_switch_in(f);  // now suspended
  EXPECT_DEATH(weft__fiber_destroy(f), "destroy of a running or suspended");
  weft__fiber_switch_in(f);  // finishes
  EXPECT_DEATH(weft__fiber_switch_in(f), "finished fiber");
  weft__fiber_destroy(f);
}

}  // namespace

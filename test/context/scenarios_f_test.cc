/* Section F of ../shared/scenarios.md ("Streaming": F.1 test_2way, F.2 the
 * legacy one-way streams, F.3 advanced streaming, F.4 broadcast receivers)
 * ported to weft, plus the stream rules of semantics.md §2.5 / §8 that no
 * scenario covers (the tests named Rule...).
 *
 * Scenarios that need OS processes or signals: none. Every scenario of
 * section F runs with in-process actors:
 *   - S104/S105 and S107 raise KeyboardInterrupt (or TooSlowError) from the
 *     root task's body, not through a signal: weft_fail_kind(INTERRUPT).
 *
 * The same binary runs with WEFT_SPAWN=process (CTest:
 * context_f_test_process), every nursery then starting its actors in child
 * processes: what a child's function records for the test, or reads from
 * it, is made in shared memory (SharedNew, weft/testing/shared.h), and
 * Settle() synchronises by a round trip to the peer, which holds across
 * processes. S104/S105's consumers reach the publisher through their
 * arguments: those carry a weft_actor_ref (made by root, which holds the
 * publisher's portal), not a weft_aid, which names an actor of one process
 * only; a consumer opens it with weft_portal_open_ref, locally in-process,
 * through a connection to the publisher's process otherwise.
 *
 * Adaptations, and what the API cannot express:
 *   - S093 (`@stream` on a function without a ctx parameter is a
 *     TypeError) is a Python type check (semantics.md §W.1, not ported): the
 *     weft_fn signature makes the ctx parameter mandatory at compile time.
 *     What is left at run time is that an exposed function without a body is
 *     refused (WEFT_EINVAL) and one taking a ctx is accepted.
 *   - S094/S095 step 1 (`find_actor('streamerd')` is None) and S104/S105's
 *     `wait_for_actor('publisher')`: weft's discovery API (the registry) is
 *     not used here; the portal, or an actor reference, is handed over
 *     directly.
 *   - Legacy one-way streams (`open_stream_from`) are contexts whose callee
 *     only yields (§W.1): OpenStreamFrom/CloseStreamFrom below. S094 and
 *     S095 (async generator vs `@stream` + send_yield) are one mechanism in
 *     weft; they differ only in the callee sending its own final Stop when
 *     cancelled, as a real async generator does (§4.3.2).
 *   - Time-driven steps are replaced by explicit synchronisation: a cancel
 *     "after N seconds" happens after a given number of values was
 *     received; "slow" and "fast" readers are ordered by waiting on each
 *     other's progress (WaitUntil polls a condition; it never guesses a
 *     duration). tractor's time bounds are kept as upper bounds (scaled under
 *     sanitizers).
 *   - Missing from the API: a shielded join (or a task nursery). A
 *     cancelled weft task cannot wait for the tasks it spawned
 *     (weft_task_join returns WEFT_ECANCELED at once), so a callee that fans
 *     out to tasks (tractor's trio nursery inside an endpoint: S096-S102's
 *     aggregator, S106's two tasks) cannot wait for them when cancelled, as
 *     trio does before the actor nursery is torn down. Those callees are
 *     written so that their tasks end without being joined after a cancel
 *     (on their own streams' errors, or on a stop flag), and S097-S102 check
 *     that the aggregator's tasks end, not that they end before it returns.
 *   - S104/S105 use 2 static consumers (tractor: cpu_count - 2, which is 0 on
 *     a 2-core box) plus the dynamic one. */
#include <weft/testing/gtest.h>
#include <weft/testing/shared.h>
#include <weft/weft.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using weft::testing::Describe;
using weft::testing::IsAbsorbedSelfCancel;
using weft::testing::IsBoxedError;
using weft::testing::IsContextCancelled;
using weft::testing::RunTask;
using weft::testing::SharedNew;
using weft::testing::SharedSpinLock;
using weft::testing::SharedString;
using weft::testing::SpawnsProcesses;
using weft::testing::UidName;
using Clock = std::chrono::steady_clock;

#if defined(__SANITIZE_THREAD__)
#define F_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#define F_ASAN 1
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) && !defined(F_TSAN)
#define F_TSAN 1
#endif
#if __has_feature(address_sanitizer) && !defined(F_ASAN)
#define F_ASAN 1
#endif
#endif

/* tractor's time bounds, loosened under sanitizers. */
#if defined(F_TSAN)
constexpr double kSlack = 6;
#elif defined(F_ASAN)
constexpr double kSlack = 3;
#else
constexpr double kSlack = 1;
#endif

constexpr uint64_t kUs = 1000ull;
constexpr uint64_t kMs = 1000ull * kUs;
constexpr uint64_t kSec = 1000ull * kMs;
/* "Sleep forever" in a callee that only a cancel may end: bounded, so that
 * a cancel that never lands fails the test instead of hanging it. */
constexpr uint64_t kForever = uint64_t(5 * kSlack) * kSec;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string ErrStr() { return Describe(weft_task_error()); }

std::vector<int32_t> Iota(int32_t from, int32_t to) {
  std::vector<int32_t> v;
  for (int32_t i = from; i < to; i++) v.push_back(i);
  return v;
}

/* ---- payloads: ints (int32), strings, sequences of ints ---- */

std::string Str(const weft_payload &p) {
  return std::string(reinterpret_cast<const char *>(p.data), p.len);
}

int32_t Int(const weft_payload &p) {
  int32_t v = INT32_MIN;
  if (p.len == sizeof(v)) std::memcpy(&v, p.data, sizeof(v));
  return v;
}

std::vector<int32_t> Ints(const weft_payload &p) {
  std::vector<int32_t> v(p.len / sizeof(int32_t));
  if (!v.empty()) std::memcpy(v.data(), p.data, v.size() * sizeof(int32_t));
  return v;
}

weft_err SendInt(weft_stream *s, int32_t v) {
  return weft_stream_send(s, &v, sizeof(v));
}

weft_err SendStr(weft_stream *s, const std::string &v) {
  return weft_stream_send(s, v.data(), v.size());
}

/* One message holding the sequence [from, to). */
weft_err SendSeq(weft_stream *s, int32_t from, int32_t to) {
  std::vector<int32_t> v = Iota(from, to);
  return weft_stream_send(s, v.data(), v.size() * sizeof(int32_t));
}

weft_err RecvInt(weft_stream *s, int32_t *out) {
  weft_payload p;
  weft_err rc = weft_stream_recv(s, &p);
  if (rc == WEFT_OK) *out = Int(p);
  weft_payload_free(&p);
  return rc;
}

weft_err RecvStr(weft_stream *s, std::string *out) {
  weft_payload p;
  weft_err rc = weft_stream_recv(s, &p);
  if (rc == WEFT_OK) *out = Str(p);
  weft_payload_free(&p);
  return rc;
}

weft_err BRecvInt(weft_bcast *b, int32_t *out) {
  weft_payload p;
  weft_err rc = weft_bcast_recv(b, &p);
  if (rc == WEFT_OK) *out = Int(p);
  weft_payload_free(&p);
  return rc;
}

/* Inside a task body (a function returning weft_err): checks a call's code;
 * on a mismatch records the failure and ends the body with WEFT_EFAILED, a
 * bounded failure instead of a hang. */
#define F_REQUIRE(expected, expr)                                            \
  do {                                                                       \
    weft_err f_rc_ = (expr);                                                 \
    if (f_rc_ != (expected)) {                                               \
      ADD_FAILURE() << #expr << " returned " << weft_errname(f_rc_)          \
                    << ", expected " << weft_errname(expected) << " ("       \
                    << ErrStr() << ")";                                      \
      return WEFT_EFAILED;                                                   \
    }                                                                        \
  } while (0)

/* The same, without ending the body. */
#define F_EXPECT(expected, expr)                                             \
  do {                                                                       \
    weft_err f_rc_ = (expr);                                                 \
    EXPECT_EQ(weft_errname(expected), std::string(weft_errname(f_rc_)))      \
        << #expr << " (" << ErrStr() << ")";                                 \
  } while (0)

#define EXPECT_RC(expected, actual)                                          \
  EXPECT_EQ(std::string(weft_errname(expected)),                             \
            std::string(weft_errname(static_cast<weft_err>(actual))))

/* Task only: waits until `pred` holds, re-checking it every 100 us (a weft
 * sleep, so the actor's other tasks and messages run meanwhile). This is
 * explicit synchronisation on a condition; the bound only turns a lost
 * wake-up into a failure instead of a hang. Returns WEFT_ECANCELED if the
 * task is cancelled while waiting. */
weft_err WaitUntil(const std::function<bool()> &pred, const char *what,
                   double bound_s = 10) {
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(
                                         bound_s * kSlack));
  while (!pred()) {
    if (Clock::now() > deadline) {
      ADD_FAILURE() << "timed out waiting for " << what;
      return WEFT_ETIMEDOUT;
    }
    weft_err rc = weft_sleep(100 * kUs);
    if (rc != WEFT_OK) return rc;
  }
  return WEFT_OK;
}

/* Task only: after the actor behind `p` set a flag *after* sending us
 * messages, one round trip to it guarantees those messages were dispatched
 * into our contexts: its reply is queued in our mailbox behind them (the
 * route is FIFO), whether it is an actor of this process or of a child
 * process. (A timer would do in-process only: across processes the flag,
 * in shared memory, may be seen before the messages crossed the
 * connection.) The actor must expose "rule:noop". */
weft_err Noop(weft_ctx *, const weft_payload *, void *);
weft_err Settle(weft_portal *p) {
  return weft_portal_run(p, "rule:noop", nullptr, 0, nullptr);
}

/* Task only: a nursery holding daemon `name` exposing `fns`; runs
 * body(portal), then (if the body succeeded) cancels the daemon with
 * portal.cancel_actor() and exits the nursery with the body's code. Returns
 * the nursery's code. */
weft_err WithDaemon(const char *name, const std::vector<weft_function> &fns,
                    const std::function<weft_err(weft_portal *)> &body) {
  weft_nursery *n = nullptr;
  F_REQUIRE(WEFT_OK, weft_nursery_open(&n));
  weft_actor_opts o{name, fns.data(), fns.size(), WEFT_SPAWN_DEFAULT};
  weft_portal *p = nullptr;
  weft_err rc = weft_nursery_start_actor(n, &o, &p);
  EXPECT_RC(WEFT_OK, rc) << "start_actor(" << name << ")";
  if (rc == WEFT_OK) {
    rc = body(p);
    if (rc == WEFT_OK) {
      bool acked = false;
      EXPECT_RC(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      EXPECT_TRUE(acked) << name << " did not acknowledge cancel_actor()";
    }
  }
  return weft_nursery_exit(n, rc);
}

/* tractor's Portal.open_stream_from(fn): a context whose callee only yields,
 * with this side's stream opened at once (semantics.md §W.1). */
weft_err OpenStreamFrom(weft_portal *p, const char *fn, const void *args,
                        size_t len, weft_ctx **ctx, weft_stream **s) {
  *s = nullptr;
  weft_err rc = weft_open_context(p, fn, args, len, nullptr, ctx, nullptr);
  if (rc != WEFT_OK) return rc;
  rc = weft_ctx_open_stream(*ctx, nullptr, s);
  if (rc != WEFT_OK) {
    weft_ctx_exit(*ctx, rc);
    weft_ctx_free(*ctx);
    *ctx = nullptr;
  }
  return rc;
}

/* The open_stream_from block's exit: the far end's task is coupled to the
 * block, so it is cancelled (shielded) and the context ended (§4.3.2: the
 * requester sends Stop, then the ctx cancel). An error in the body cancels
 * the callee through the exit itself (§7 step 7). */
weft_err CloseStreamFrom(weft_ctx *ctx, weft_err body_rc) {
  if (body_rc == WEFT_OK) weft_ctx_cancel(ctx);
  return weft_ctx_exit(ctx, body_rc);
}

std::string CancellerName(const weft_ctx *ctx) {
  const weft_uid *u = weft_ctx_canceller(ctx);
  return u ? std::string(u->name) : std::string();
}

/* ---- the fixture: fails on leftovers (RuntimeTest) and never hangs ---- */

class ScenarioF : public weft::testing::RuntimeTest {
 protected:
  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "." + info->name();
    watchdog_ = std::thread([this, name] {
      std::unique_lock<std::mutex> g(wd_mu_);
      if (!wd_cv_.wait_for(g, std::chrono::seconds(int(60 * kSlack)),
                           [this] { return wd_done_; })) {
        std::fprintf(stderr, "watchdog: %s hung; aborting\n", name.c_str());
        std::fflush(stderr);
        std::abort();
      }
    });
    // WEFT_SPAWN=process: a descendant whose parent died stays ours, so
    // that TearDown finds it.
    if (SpawnsProcesses()) weft::testing::AdoptOrphans();
    RuntimeTest::SetUp();
  }

  void TearDown() override {
    RuntimeTest::TearDown();
    if (SpawnsProcesses()) {
      // No child process outlives its nursery, hence the test.
      EXPECT_EQ(0, weft::testing::LiveDescendants())
          << "child processes left behind";
      weft::testing::ReapExitedChildren();  // adopted orphans
    }
    weft::testing::SharedReset();  // every child process is gone
    {
      std::lock_guard<std::mutex> g(wd_mu_);
      wd_done_ = true;
    }
    wd_cv_.notify_all();
    watchdog_.join();
  }

 private:
  std::thread watchdog_;
  std::mutex wd_mu_;
  std::condition_variable wd_cv_;
  bool wd_done_ = false;
};

/* ---- shared callees ---- */

/* F.4's echo_sequences: echoes each int of every sequence it receives;
 * returns when the caller ends its stream. An empty sequence asks it to end
 * its own stream and return (the producer's `tx` closing, S114). */
weft_err EchoSequences(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (;;) {
    weft_payload p;
    rc = weft_stream_recv(s, &p);
    if (rc != WEFT_OK) break;
    std::vector<int32_t> seq = Ints(p);
    weft_payload_free(&p);
    if (seq.empty()) return weft_stream_close(s);
    for (int32_t v : seq)
      if ((rc = SendInt(s, v)) != WEFT_OK) break;
    if (rc != WEFT_OK) break;
  }
  return rc == WEFT_EEOC ? WEFT_OK : rc;
}

/* Echoes every payload as is; returns when the caller ends its stream. */
weft_err EchoBytes(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (;;) {
    weft_payload p;
    rc = weft_stream_recv(s, &p);
    if (rc != WEFT_OK) break;
    rc = weft_stream_send(s, p.data, p.len);
    weft_payload_free(&p);
    if (rc != WEFT_OK) break;
  }
  return rc == WEFT_EEOC ? WEFT_OK : rc;
}

/* Sends the ints [0, n) (n = the int argument), closes its stream and
 * returns "bye". */
weft_err SendNThenClose(weft_ctx *ctx, const weft_payload *args, void *) {
  int32_t n = Int(*args);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (int32_t i = 0; i < n; i++)
    if ((rc = SendInt(s, i)) != WEFT_OK) return rc;
  if ((rc = weft_stream_close(s)) != WEFT_OK) return rc;
  return weft_ctx_return(ctx, "bye", 3);
}

/* What a child observed, for callees that sleep until cancelled. Like every
 * object a child's function writes and the test reads, it is made in the
 * shared arena (SharedNew, weft/testing/shared.h), so that the test reads it
 * also when the child is a forked process (WEFT_SPAWN=process): plain data,
 * atomics, a lock that works across processes. */
struct SleeperObs {
  std::atomic<int> rc{-1};
  SharedSpinLock mu;
  SharedString<WEFT_NAME_MAX> canceller;
  void Record(weft_ctx *ctx, weft_err r) {
    rc = r;
    std::lock_guard<SharedSpinLock> g(mu);
    canceller.Set(CancellerName(ctx));
  }
  std::string Canceller() {
    std::lock_guard<SharedSpinLock> g(mu);
    return canceller.Get();
  }
};

/* started(), then sleeps until cancelled. */
weft_err SleepForever(weft_ctx *ctx, const weft_payload *, void *arg) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  rc = weft_sleep(kForever);
  if (arg) static_cast<SleeperObs *>(arg)->Record(ctx, rc);
  return rc;
}

/* =====================================================================
 * F.1 tests/test_2way.py
 * ===================================================================== */

struct RpcChild {
  std::atomic<int32_t> data{-1};
  std::atomic<int> count{-1};
};

/* simple_rpc: answers every 'ping' with 'pong' until the end of the
 * stream, which must come after exactly 10 pings. */
weft_err SimpleRpc(weft_ctx *ctx, const weft_payload *args, void *arg) {
  auto *st = static_cast<RpcChild *>(arg);
  int32_t data = Int(*args);
  st->data = data;
  int32_t sent = data + 1;
  F_REQUIRE(WEFT_OK, weft_ctx_started(ctx, &sent, sizeof(sent)));
  weft_stream *s;
  F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
  int count = 0;
  for (;;) {
    std::string msg;
    weft_err rc = RecvStr(s, &msg);
    if (rc == WEFT_EEOC) { /* the parent's stream exit */
      st->count = count;
      if (count != 10)
        return weft_fail("AssertionError", "count %d != 10", count);
      break;
    }
    if (rc != WEFT_OK) return rc;
    if (msg != "ping")
      return weft_fail("AssertionError", "got '%s'", msg.c_str());
    F_REQUIRE(WEFT_OK, SendStr(s, "pong"));
    count++;
  }
  return WEFT_OK;
}

/* simple_rpc_with_forloop: the same as an `async for` with a for-else. */
weft_err SimpleRpcWithForloop(weft_ctx *ctx, const weft_payload *args,
                              void *arg) {
  auto *st = static_cast<RpcChild *>(arg);
  int32_t data = Int(*args);
  st->data = data;
  int32_t sent = data + 1;
  F_REQUIRE(WEFT_OK, weft_ctx_started(ctx, &sent, sizeof(sent)));
  weft_stream *s;
  F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
  int count = 0;
  weft_err rc;
  std::string msg;
  for (; (rc = RecvStr(s, &msg)) == WEFT_OK; count++) {
    if (msg != "ping")
      return weft_fail("AssertionError", "got '%s'", msg.c_str());
    F_REQUIRE(WEFT_OK, SendStr(s, "pong"));
  }
  if (rc != WEFT_EEOC) return rc; /* not the for-else */
  st->count = count;
  if (count != 10) return weft_fail("AssertionError", "count %d != 10", count);
  return WEFT_OK;
}

struct RpcParam {
  const char *id;
  bool forloop;
  bool use_async_for;
};

void PrintTo(const RpcParam &p, std::ostream *os) { *os << p.id; }

class F1SimpleRpc : public ScenarioF,
                    public ::testing::WithParamInterface<RpcParam> {};

/* S089-S092 test_simple_rpc[server_func, use_async_for]. (The mapping of
 * the four ids onto tractor's 2x2 grid follows its parametrize order.) */
TEST_P(F1SimpleRpc, PingPongTenTimes) {
  const RpcParam prm = GetParam();
  RpcChild &child = *SharedNew<RpcChild>();
  std::vector<weft_function> fns = {
      {"rpc:simple_rpc", SimpleRpc, &child},
      {"rpc:simple_rpc_with_forloop", SimpleRpcWithForloop, &child}};
  auto t0 = Clock::now();
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("rpc_server", fns, [&](weft_portal *p) -> weft_err {
      int32_t data = 10;
      weft_ctx *ctx;
      weft_payload first;
      F_REQUIRE(WEFT_OK,
                weft_open_context(p,
                                  prm.forloop ? "rpc:simple_rpc_with_forloop"
                                              : "rpc:simple_rpc",
                                  &data, sizeof(data), nullptr, &ctx, &first));
      EXPECT_EQ(11, Int(first)) << "sent";
      weft_stream *s;
      weft_err body = weft_ctx_open_stream(ctx, nullptr, &s);
      if (body == WEFT_OK && prm.use_async_for) {
        /* send 'ping', then one 'ping' per 'pong' until count >= 9 */
        body = SendStr(s, "ping");
        for (int count = 0; body == WEFT_OK;) {
          std::string msg;
          if ((body = RecvStr(s, &msg)) != WEFT_OK) break;
          EXPECT_EQ("pong", msg);
          if ((body = SendStr(s, "ping")) != WEFT_OK) break;
          if (++count >= 9) break;
        }
      } else if (body == WEFT_OK) {
        for (int i = 0; i < 10 && body == WEFT_OK; i++) {
          std::string msg;
          if ((body = SendStr(s, "ping")) == WEFT_OK &&
              (body = RecvStr(s, &msg)) == WEFT_OK) {
            EXPECT_EQ("pong", msg);
          }
        }
      }
      EXPECT_RC(WEFT_OK, body) << ErrStr();
      if (body == WEFT_OK) body = weft_stream_close(s); /* the block's exit */
      weft_err r = weft_ctx_exit(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      EXPECT_EQ(nullptr, weft_ctx_remote_error(ctx))
          << Describe(weft_ctx_remote_error(ctx));
      if (!prm.use_async_for) {
        /* Every pong was read: the drain meets the child's Stop, then its
         * Return (None). With async-for the 10th pong may reach the drain
         * after our Stop, which ends the drain without a result (§10). */
        weft_payload res;
        EXPECT_TRUE(weft_ctx_has_result(ctx, &res));
        EXPECT_EQ(0u, res.len);
      }
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_EQ(10, child.data.load());
  if (!prm.use_async_for) {
    EXPECT_EQ(10, child.count.load()) << "the child's loop must end by EoC "
                                         "after exactly 10 pings";
  } else {
    /* With async-for our drain may end on the 10th pong (§10) and the
     * nursery then cancels the daemon: the child may be cancelled between
     * that pong and our Stop, before it records its count. If it did end
     * by EoC, it saw exactly 10 pings. */
    int c = child.count.load();
    EXPECT_TRUE(c == 10 || c == -1) << "count " << c;
  }
  EXPECT_LT(Seconds(t0), 6.0 * kSlack);
}

INSTANTIATE_TEST_SUITE_P(
    F1, F1SimpleRpc,
    ::testing::Values(RpcParam{"S089_simple_rpc_async_for", false, true},
                      RpcParam{"S090_simple_rpc_send_recv", false, false},
                      RpcParam{"S091_simple_rpc_with_forloop_async_for", true,
                               true},
                      RpcParam{"S092_simple_rpc_with_forloop_send_recv", true,
                               false}),
    [](const ::testing::TestParamInfo<RpcParam> &i) {
      return std::string(i.param.id);
    });

/* =====================================================================
 * F.2 tests/test_legacy_one_way_streaming.py
 * ===================================================================== */

weft_err Noop(weft_ctx *, const weft_payload *, void *) { return WEFT_OK; }

/* S093 test_must_define_ctx: see the header comment. An entry point with no
 * body (nothing that could take the ctx) is refused; one taking the ctx is
 * accepted and runs. */
TEST_F(ScenarioF, S093_MustDefineCtx) {
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    weft_nursery *n;
    F_REQUIRE(WEFT_OK, weft_nursery_open(&n));
    weft_function bad[] = {{"legacy:no_ctx", nullptr, nullptr}};
    weft_actor_opts o{"streamerd", bad, 1, WEFT_SPAWN_DEFAULT};
    weft_portal *p = nullptr;
    EXPECT_RC(WEFT_EINVAL, weft_nursery_start_actor(n, &o, &p));
    EXPECT_EQ(nullptr, p);
    weft_function good[] = {{"legacy:has_ctx", Noop, nullptr}};
    o.functions = good;
    weft_err r = weft_nursery_start_actor(n, &o, &p);
    EXPECT_RC(WEFT_OK, r);
    if (r == WEFT_OK) {
      EXPECT_RC(WEFT_OK, weft_portal_run(p, "legacy:has_ctx", nullptr, 0,
                                         nullptr));
      bool acked = false;
      weft_portal_cancel_actor(p, &acked);
      EXPECT_TRUE(acked);
    }
    return weft_nursery_exit(n, WEFT_OK);
  });
  EXPECT_RC(WEFT_OK, rc);
}

struct GenChild {
  bool async_gen = false; /* S094: a real generator's final Stop */
  SleeperObs obs;
};

/* async_gen_stream / context_stream: yields each int of the sequence, then
 * sleeps until the consumer's close cancels it. */
weft_err StreamSequenceThenSleep(weft_ctx *ctx, const weft_payload *args,
                                 void *arg) {
  auto *st = static_cast<GenChild *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (int32_t v : Ints(*args))
    if ((rc = SendInt(s, v)) != WEFT_OK) return rc;
  rc = weft_sleep(kForever); /* only the consumer's close ends this */
  st->obs.Record(ctx, rc);
  if (st->async_gen) weft_stream_close(s);
  return rc;
}

struct GenParam {
  const char *id;
  bool async_gen;
};

void PrintTo(const GenParam &p, std::ostream *os) { *os << p.id; }

class F2StreamFromSingleSubactor
    : public ScenarioF,
      public ::testing::WithParamInterface<GenParam> {};

/* S094-S095 test_stream_from_single_subactor[async_gen_stream |
 * context_stream]. */
TEST_P(F2StreamFromSingleSubactor, ReceivesSequenceThenClose) {
  GenChild &child = *SharedNew<GenChild>();
  child.async_gen = GetParam().async_gen;
  std::vector<weft_function> fns = {
      {"legacy:stream", StreamSequenceThenSleep, &child}};
  auto t0 = Clock::now();
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("streamerd", fns, [&](weft_portal *p) -> weft_err {
      std::vector<int32_t> seq = Iota(0, 10);
      weft_ctx *ctx;
      weft_stream *s;
      F_REQUIRE(WEFT_OK,
                OpenStreamFrom(p, "legacy:stream", seq.data(),
                               seq.size() * sizeof(int32_t), &ctx, &s));
      std::vector<int32_t> got;
      weft_err body = WEFT_OK;
      for (size_t i = 0; i < seq.size() && body == WEFT_OK; i++) {
        int32_t v;
        if ((body = RecvInt(s, &v)) == WEFT_OK) got.push_back(v);
      }
      EXPECT_EQ(seq, got);
      /* stream.aclose(), then __anext__ raises StopAsyncIteration: EoC,
       * and it stays so. */
      F_EXPECT(WEFT_OK, weft_stream_close(s));
      int32_t v;
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      weft_err r = CloseStreamFrom(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
      EXPECT_TRUE(IsContextCancelled(weft_ctx_remote_error(ctx), "root"));
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_ECANCELED, child.obs.rc.load())
      << "the child's sleep must be cancelled by the consumer's close";
  EXPECT_EQ("root", child.obs.Canceller());
  EXPECT_LT(Seconds(t0), 5.0 * kSlack);
}

INSTANTIATE_TEST_SUITE_P(
    F2, F2StreamFromSingleSubactor,
    ::testing::Values(GenParam{"S094_async_gen_stream", true},
                      GenParam{"S095_context_stream", false}),
    [](const ::testing::TestParamInfo<GenParam> &i) {
      return std::string(i.param.id);
    });

/* ---- S096-S102: the quadruple example ---- */

/* The aggregator's observations (in the shared arena). */
struct QuadChild {
  int32_t n = 1000;
  weft_function streamer_fns[1] = {};
  std::atomic<int> agg_rc{-1};
  std::atomic<int> push_finished{0};
  std::atomic<int> push_rc[2] = {{-1}, {-1}};
  SharedSpinLock mu;
  SharedString<WEFT_NAME_MAX> agg_canceller;
};

/* stream_data(seed): yields 0..seed-1, pacing as tractor does (100 us). */
weft_err StreamData(weft_ctx *ctx, const weft_payload *args, void *) {
  int32_t seed = Int(*args);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (int32_t i = 0; i < seed; i++) {
    if ((rc = SendInt(s, i)) != WEFT_OK) return rc;
    if ((rc = weft_sleep(100 * kUs)) != WEFT_OK) return rc;
  }
  return WEFT_OK; /* the generator ends: Stop, then Return */
}

/* The aggregator's state, shared with its push tasks (which may outlive a
 * cancelled aggregator function, see the header comment). */
struct AggShared {
  QuadChild *st = nullptr;
  std::set<int32_t> seen;
  weft_stream *out = nullptr; /* null once the aggregator returned */
  int done = 0;
  weft_err rc[2] = {WEFT_OK, WEFT_OK};
};

struct PushArg {
  std::shared_ptr<AggShared> sh;
  weft_portal *portal;
  int idx;
};

/* push_to_chan: forwards every value not seen before to the parent. It ends
 * by the streamer's end of stream, or, when the aggregator is cancelled, by
 * the ctxc its streamer sends when the aggregator's nursery cancels it. */
weft_err PushToParent(void *a) {
  std::unique_ptr<PushArg> pa(static_cast<PushArg *>(a));
  std::shared_ptr<AggShared> sh = pa->sh;
  int32_t seed = sh->st->n;
  weft_ctx *ctx;
  weft_stream *s;
  weft_err rc = OpenStreamFrom(pa->portal, "quad:stream_data", &seed,
                               sizeof(seed), &ctx, &s);
  if (rc == WEFT_OK) {
    weft_err body = WEFT_OK;
    for (;;) {
      int32_t v;
      weft_err r = RecvInt(s, &v);
      if (r == WEFT_EEOC) break;
      if (r != WEFT_OK) {
        body = r;
        break;
      }
      if (sh->out != nullptr && sh->seen.insert(v).second &&
          (r = SendInt(sh->out, v)) != WEFT_OK) {
        body = r;
        break;
      }
    }
    rc = CloseStreamFrom(ctx, body);
    weft_ctx_free(ctx);
  }
  sh->rc[pa->idx] = rc;
  sh->done++;
  sh->st->push_finished++;
  return WEFT_OK;
}

/* aggregate(seed): spawns streamer_1 and streamer_2, yields each value the
 * first time either streams it, then an.cancel(). */
weft_err Aggregate(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *st = static_cast<QuadChild *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *out;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &out)) != WEFT_OK) return rc;
  weft_nursery *n;
  if ((rc = weft_nursery_open(&n)) != WEFT_OK) return rc;
  auto sh = std::make_shared<AggShared>();
  sh->st = st;
  sh->out = out;
  weft_err body = WEFT_OK;
  int spawned = 0;
  for (int i = 0; i < 2 && body == WEFT_OK; i++) {
    std::string name = "streamer_" + std::to_string(i + 1);
    weft_actor_opts o{name.c_str(), st->streamer_fns,
                      std::size(st->streamer_fns), WEFT_SPAWN_DEFAULT};
    weft_portal *p;
    body = weft_nursery_start_actor(n, &o, &p);
    if (body == WEFT_OK)
      body = weft_task_spawn(PushToParent, new PushArg{sh, p, i}, nullptr);
    if (body == WEFT_OK) spawned++;
  }
  if (body == WEFT_OK)
    body = WaitUntil([&] { return sh->done == spawned; },
                     "both streamers' streams to end", 30);
  if (body == WEFT_OK) weft_nursery_cancel(n); /* an.cancel() */
  weft_err nrc = weft_nursery_exit(n, body);
  sh->out = nullptr; /* the stream ends with this function */
  st->push_rc[0] = sh->rc[0];
  st->push_rc[1] = sh->rc[1];
  {
    std::lock_guard<SharedSpinLock> g(st->mu);
    st->agg_canceller.Set(CancellerName(ctx));
  }
  rc = body != WEFT_OK ? body : nrc;
  st->agg_rc = rc;
  return rc;
}

void SetUpQuad(QuadChild *child, std::vector<weft_function> *agg_fns) {
  child->streamer_fns[0] = {"quad:stream_data", StreamData, nullptr};
  *agg_fns = {{"quad:aggregate", Aggregate, child}};
}

/* S096 test_a_quadruple_example. */
TEST_F(ScenarioF, S096_AQuadrupleExample) {
  QuadChild &child = *SharedNew<QuadChild>();
  std::vector<weft_function> agg_fns;
  SetUpQuad(&child, &agg_fns);
  std::vector<int32_t> got;
  auto t0 = Clock::now();
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("aggregator", agg_fns, [&](weft_portal *p) -> weft_err {
      int32_t seed = child.n;
      weft_ctx *ctx;
      weft_stream *s;
      F_REQUIRE(WEFT_OK, OpenStreamFrom(p, "quad:aggregate", &seed,
                                        sizeof(seed), &ctx, &s));
      weft_err body = WEFT_OK;
      for (;;) {
        int32_t v;
        weft_err r = RecvInt(s, &v);
        if (r == WEFT_EEOC) break;
        if (r != WEFT_OK) {
          ADD_FAILURE() << "recv: " << weft_errname(r) << " " << ErrStr();
          body = r;
          break;
        }
        got.push_back(v);
      }
      weft_err r = CloseStreamFrom(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_EQ(Iota(0, child.n), got) << "exactly range(1000), in order";
  EXPECT_LT(Seconds(t0), 3.0 * kSlack);
  EXPECT_RC(WEFT_OK, child.agg_rc.load());
  EXPECT_EQ(2, child.push_finished.load());
  EXPECT_RC(WEFT_OK, child.push_rc[0].load());
  EXPECT_RC(WEFT_OK, child.push_rc[1].load());
}

struct QuadRun {
  weft_task *self = nullptr;
  size_t k = 0; /* the move_on_after deadline: after k values */
  std::vector<int32_t> got;
  weft_err recv_rc = WEFT_OK;
  weft_err ctx_exit_rc = WEFT_OK;
  weft_err nursery_rc = WEFT_OK;
  bool cancel_called = false, cancel_acked = false;
  bool ctxc_from_root = false;
  QuadChild *child = nullptr;
  std::vector<weft_function> *agg_fns = nullptr;
};

/* a_quadruple_example() under move_on_after(): the deadline is "after k
 * values", where the run cancels itself (the cancel scope around it
 * expires); every later blocking call returns WEFT_ECANCELED. */
weft_err QuadExample(void *arg) {
  auto *q = static_cast<QuadRun *>(arg);
  weft_nursery *n;
  F_REQUIRE(WEFT_OK, weft_nursery_open(&n));
  weft_actor_opts o{"aggregator", q->agg_fns->data(), q->agg_fns->size(), WEFT_SPAWN_DEFAULT};
  weft_portal *p;
  weft_err body = weft_nursery_start_actor(n, &o, &p);
  weft_ctx *ctx = nullptr;
  weft_stream *s = nullptr;
  if (body == WEFT_OK) {
    int32_t seed = q->child->n;
    body = OpenStreamFrom(p, "quad:aggregate", &seed, sizeof(seed), &ctx, &s);
  }
  if (body == WEFT_OK) {
    for (;;) {
      int32_t v;
      body = RecvInt(s, &v);
      if (body != WEFT_OK) break;
      q->got.push_back(v);
      if (q->got.size() == q->k) weft_task_cancel(q->self); /* deadline */
    }
    q->recv_rc = body;
    q->ctx_exit_rc = CloseStreamFrom(ctx, body);
    q->cancel_called = weft_ctx_cancel_called(ctx);
    q->cancel_acked = weft_ctx_cancel_acked(ctx);
    q->ctxc_from_root =
        bool(IsContextCancelled(weft_ctx_remote_error(ctx), "root"));
    weft_ctx_free(ctx);
    body = q->ctx_exit_rc;
  }
  q->nursery_rc = weft_nursery_exit(n, body);
  return q->nursery_rc;
}

struct QuadCancelParam {
  const char *id;
  double cancel_delay;
};

void PrintTo(const QuadCancelParam &p, std::ostream *os) { *os << p.id; }

class F2NotFastEnoughQuad
    : public ScenarioF,
      public ::testing::WithParamInterface<QuadCancelParam> {};

/* S097-S102 test_not_fast_enough_quad[cancel_delay 0.3 .. 0.8]: the run is
 * cancelled midway (after (1 - cancel_delay) of the values instead of at
 * total_time - cancel_delay); the result is None and every subactor tears
 * down gracefully. */
TEST_P(F2NotFastEnoughQuad, CancelledMidway) {
  QuadChild &child = *SharedNew<QuadChild>();
  std::vector<weft_function> agg_fns;
  SetUpQuad(&child, &agg_fns);
  QuadRun q;
  q.child = &child;
  q.agg_fns = &agg_fns;
  q.k = size_t(std::lround((1.0 - GetParam().cancel_delay) * child.n));
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    weft_task *t;
    F_REQUIRE(WEFT_OK, weft_task_spawn(QuadExample, &q, &t));
    q.self = t;
    weft_err r = weft_task_join(t);
    /* move_on_after absorbs the cancel: the result is None */
    EXPECT_RC(WEFT_ECANCELED, r) << ErrStr();
    return WEFT_OK;
  });
  EXPECT_RC(WEFT_OK, rc);
  /* cancelled midway: a prefix of range(1000) in order, at least k long.
   * (That it is exactly k, because the receive after the cancel returns
   * WEFT_ECANCELED even with values queued, is
   * RuleW1_CancelledTaskStreamCallsReturnCancelledWithItemsQueued.) */
  ASSERT_GE(q.got.size(), q.k);
  EXPECT_LT(q.got.size(), size_t(child.n));
  EXPECT_EQ(Iota(0, int32_t(q.got.size())), q.got);
  EXPECT_RC(WEFT_ECANCELED, q.recv_rc);
  EXPECT_RC(WEFT_ECANCELED, q.ctx_exit_rc);
  EXPECT_RC(WEFT_ECANCELED, q.nursery_rc);
  /* graceful: the aggregator acknowledged the cancel in time */
  EXPECT_TRUE(q.cancel_called);
  EXPECT_TRUE(q.cancel_acked);
  EXPECT_TRUE(q.ctxc_from_root);
  EXPECT_RC(WEFT_ECANCELED, child.agg_rc.load());
  {
    std::lock_guard<SharedSpinLock> g(child.mu);
    EXPECT_EQ("root", child.agg_canceller.Get());
  }
  /* tractor's aggregator waits for its push tasks (its trio nursery)
   * before its actor nursery cancels the streamers. A cancelled weft task
   * cannot wait (no shielded join), so a push task may still be in its
   * shielded ctx.cancel() when the aggregator returns; it must end by the
   * aggregator's own teardown. */
  EXPECT_EQ(2, child.push_finished.load()) << "both push tasks ended";
}

INSTANTIATE_TEST_SUITE_P(
    F2, F2NotFastEnoughQuad,
    ::testing::Values(QuadCancelParam{"S097_cancel_delay_0_3", 0.3},
                      QuadCancelParam{"S098_cancel_delay_0_4", 0.4},
                      QuadCancelParam{"S099_cancel_delay_0_5", 0.5},
                      QuadCancelParam{"S100_cancel_delay_0_6", 0.6},
                      QuadCancelParam{"S101_cancel_delay_0_7", 0.7},
                      QuadCancelParam{"S102_cancel_delay_0_8", 0.8}),
    [](const ::testing::TestParamInfo<QuadCancelParam> &i) {
      return std::string(i.param.id);
    });

/* ---- S103 ---- */

struct GatedChild {
  std::atomic<int> allowed{0};
};

/* stream_data(seed), paced by the consumer side: value i is sent once
 * `allowed` > i, and the generator ends once `allowed` > seed. */
weft_err GatedStreamData(weft_ctx *ctx, const weft_payload *args, void *arg) {
  auto *st = static_cast<GatedChild *>(arg);
  int32_t seed = Int(*args);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (int32_t i = 0; i <= seed; i++) {
    rc = WaitUntil([&] { return st->allowed.load() > i; },
                   "the consumer side to release a value");
    if (rc != WEFT_OK) return rc;
    if (i < seed && (rc = SendInt(s, i)) != WEFT_OK) return rc;
  }
  return WEFT_OK;
}

struct Consumer {
  weft_stream *s;
  std::vector<int32_t> *received;
  std::set<int32_t> *expect;
};

/* consume(): iterates the stream until its end. */
weft_err Consume(void *arg) {
  auto *c = static_cast<Consumer *>(arg);
  for (;;) {
    int32_t v;
    weft_err rc = RecvInt(c->s, &v);
    if (rc == WEFT_EEOC) return WEFT_OK;
    if (rc != WEFT_OK) return rc;
    EXPECT_EQ(1u, c->expect->erase(v)) << "value " << v
                                       << " received twice or unexpected";
    c->received->push_back(v);
  }
}

/* S103 test_respawn_consumer_task: the consumer is cancelled while blocked
 * in its receive after every even value, and a new one is started on the
 * same stream; all 11 values arrive exactly once. */
TEST_F(ScenarioF, S103_RespawnConsumerTask) {
  GatedChild &gate = *SharedNew<GatedChild>();
  std::vector<weft_function> fns = {
      {"legacy:stream_data", GatedStreamData, &gate}};
  std::vector<int32_t> received;
  std::set<int32_t> expect;
  for (int32_t i = 0; i < 11; i++) expect.insert(i);
  int respawns = 0;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("streamer", fns, [&](weft_portal *p) -> weft_err {
      int32_t seed = 11;
      weft_ctx *ctx;
      weft_stream *s;
      F_REQUIRE(WEFT_OK, OpenStreamFrom(p, "legacy:stream_data", &seed,
                                        sizeof(seed), &ctx, &s));
      std::vector<std::unique_ptr<Consumer>> consumers;
      weft_task *t = nullptr;
      auto spawn = [&]() -> weft_err {
        consumers.emplace_back(new Consumer{s, &received, &expect});
        return weft_task_spawn(Consume, consumers.back().get(), &t);
      };
      weft_err body = spawn();
      for (int i = 0; i < seed && body == WEFT_OK; i++) {
        gate.allowed = i + 1;
        body = WaitUntil([&] { return received.size() == size_t(i + 1); },
                         "the consumer to receive the value");
        if (body != WEFT_OK) break;
        if (received.back() % 2 == 0) {
          /* It is blocked in its receive (it got the value and no other
           * is released): cancel it and start a new one. */
          weft_task_cancel(t);
          EXPECT_RC(WEFT_ECANCELED, weft_task_join(t)) << ErrStr();
          t = nullptr;
          respawns++;
          body = spawn();
        }
      }
      gate.allowed = seed + 1; /* the generator ends: EoC */
      if (t != nullptr) {
        if (body != WEFT_OK) weft_task_cancel(t);
        weft_err jr = weft_task_join(t);
        if (body == WEFT_OK) {
          EXPECT_RC(WEFT_OK, jr) << "the last consumer ends by EoC";
          body = jr;
        }
      }
      weft_err r = CloseStreamFrom(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_EQ(Iota(0, 11), received);
  EXPECT_TRUE(expect.empty());
  EXPECT_EQ(6, respawns);
}

/* =====================================================================
 * F.3 tests/test_advanced_streaming.py
 * ===================================================================== */

/* ---- S104-S105 test_dynamic_pub_sub ---- */

/* What the publisher and the consumers observed, read by the test: in the
 * shared arena (SharedNew), the actors may be other processes. */
struct PubSubObs {
  std::atomic<int> publisher_rc{-1};
  struct Cons {
    /* The values received, in order: the first kCap of them (at ~1 kHz,
     * more than any run of the test receives). */
    static constexpr size_t kCap = size_t(1) << 16;
    SharedSpinLock mu;
    int32_t values[kCap]; /* under mu */
    size_t nvalues = 0;   /* under mu; may exceed kCap */
    std::atomic<int> n{0};
    std::atomic<bool> saw_even{false}, saw_odd{false};
    std::atomic<int> end_rc{-1};
    std::atomic<bool> end_is_ctxc_from_root{false};
    SharedString<512> end_err; /* under mu */
    void Push(int32_t v) {
      std::lock_guard<SharedSpinLock> g(mu);
      if (nvalues < kCap) values[nvalues] = v;
      nvalues++;
    }
    std::vector<int32_t> Values(size_t *total) {
      std::lock_guard<SharedSpinLock> g(mu);
      *total = nvalues;
      return std::vector<int32_t>(values, values + std::min(nvalues, kCap));
    }
  } cons[3];
};

/* The publisher actor's own state (only its tasks touch it: with
 * WEFT_SPAWN=process, its process's copy). */
struct PubSub {
  std::map<std::string, std::set<weft_stream *>> registry{{"even", {}},
                                                          {"odd", {}}};
  PubSubObs *obs;
};

struct ConsArgs {
  weft_actor_ref pub; /* valid in any process (an aid is not) */
  int idx;
  char topics[16];
};

std::vector<std::string> SplitTopics(const std::string &s) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t c = s.find(',', start);
    out.push_back(s.substr(start, c - start));
    if (c == std::string::npos) break;
    start = c + 1;
  }
  return out;
}

/* publisher(): sends each int to the streams registered for its parity,
 * at ~1 kHz, until cancelled. */
weft_err Publisher(weft_ctx *, const weft_payload *, void *arg) {
  auto *ps = static_cast<PubSub *>(arg);
  weft_err rc = WEFT_OK;
  for (int32_t val = 0; val < 1000000; val++) {
    const auto &subs = ps->registry[val % 2 == 0 ? "even" : "odd"];
    std::vector<weft_stream *> copy(subs.begin(), subs.end());
    for (weft_stream *s : copy)
      if ((rc = SendInt(s, val)) == WEFT_ECANCELED) break;
    if (rc == WEFT_ECANCELED || (rc = weft_sleep(1 * kMs)) != WEFT_OK) break;
  }
  ps->obs->publisher_rc = rc;
  return rc;
}

/* subscribe(ctx): registers its stream under every topic it is sent. */
weft_err Subscribe(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *ps = static_cast<PubSub *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (;;) {
    std::string topics;
    if ((rc = RecvStr(s, &topics)) != WEFT_OK) break;
    for (const std::string &t : SplitTopics(topics)) ps->registry[t].insert(s);
  }
  /* The stream dies with this function: deregister it. */
  for (auto &kv : ps->registry) kv.second.erase(s);
  return rc == WEFT_EEOC ? WEFT_OK : rc;
}

/* consumer(subs): a static consumer sends its topics once; the dynamic one
 * flips between them every 7 values. */
weft_err ConsumerFn(weft_ctx *, const weft_payload *args, void *arg) {
  auto *obs = static_cast<PubSubObs *>(arg);
  ConsArgs a;
  std::memcpy(&a, args->data, sizeof(a));
  auto &me = obs->cons[a.idx];
  weft_portal *p;
  weft_err rc = weft_portal_open_ref(weft_current_runtime(), &a.pub, &p);
  if (rc != WEFT_OK) {
    ADD_FAILURE() << "open_ref(publisher): " << weft_errname(rc) << " ("
                  << ErrStr() << ")";
    return rc;
  }
  weft_ctx *ctx;
  if ((rc = weft_open_context(p, "pub:subscribe", nullptr, 0, nullptr, &ctx,
                              nullptr)) != WEFT_OK) {
    weft_portal_free(p);
    return rc;
  }
  weft_stream *s;
  weft_err body = weft_ctx_open_stream(ctx, nullptr, &s);
  std::vector<std::string> subs = SplitTopics(a.topics);
  auto record = [&](int32_t v) {
    me.Push(v);
    (v % 2 == 0 ? me.saw_even : me.saw_odd) = true;
    me.n++;
  };
  if (body == WEFT_OK && subs.size() > 1) {
    for (size_t i = 0; body == WEFT_OK; i++) {
      if ((body = SendStr(s, subs[i % subs.size()])) != WEFT_OK) break;
      for (int count = 0;;) {
        int32_t v;
        if ((body = RecvInt(s, &v)) != WEFT_OK) break;
        record(v);
        if (count > 5) break;
        count++;
      }
    }
  } else if (body == WEFT_OK) {
    body = SendStr(s, subs[0]);
    while (body == WEFT_OK) {
      int32_t v;
      if ((body = RecvInt(s, &v)) == WEFT_OK) record(v);
    }
  }
  /* `async for` ends cleanly at EoC: the subscribe task's stream exit
   * sends Stop before its ctxc, and the exit then raises that ctxc. */
  if (body == WEFT_EEOC) body = WEFT_OK;
  rc = weft_ctx_exit(ctx, body);
  me.end_rc = rc;
  me.end_is_ctxc_from_root =
      rc == WEFT_EREMOTE && bool(IsContextCancelled(weft_task_error(), "root"));
  {
    std::lock_guard<SharedSpinLock> g(me.mu);
    me.end_err.Set(rc == WEFT_OK ? "" : ErrStr());
  }
  weft_ctx_free(ctx);
  weft_portal_free(p);
  return rc;
}

struct PubSubParam {
  const char *id;
  bool keyboard_interrupt; /* else TooSlowError */
};

void PrintTo(const PubSubParam &p, std::ostream *os) { *os << p.id; }

class F3DynamicPubSub : public ScenarioF,
                        public ::testing::WithParamInterface<PubSubParam> {};

/* S104-S105 test_dynamic_pub_sub[KeyboardInterrupt | TooSlowError]. The
 * error is raised once every consumer has received values (instead of
 * after 3 s). */
TEST_P(F3DynamicPubSub, ErrorEscapesAndAllActorsTornDown) {
  const PubSubParam prm = GetParam();
  PubSubObs &obs = *SharedNew<PubSubObs>();
  PubSub ps;
  ps.obs = &obs;
  std::vector<weft_function> pub_fns = {{"pub:publisher", Publisher, &ps},
                                        {"pub:subscribe", Subscribe, &ps}};
  std::vector<weft_function> cons_fns = {{"cons:consumer", ConsumerFn, &obs}};
  const char *names[3] = {"consumer_even", "consumer_odd", "consumer_dynamic"};
  const char *topics[3] = {"even", "odd", "even,odd"};
  auto t0 = Clock::now();
  weft_err nrc = WEFT_OK;
  bool bare = false, right_error = false;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    weft_nursery *n;
    F_REQUIRE(WEFT_OK, weft_nursery_open(&n));
    weft_actor_opts po{"publisher", pub_fns.data(), pub_fns.size(), WEFT_SPAWN_DEFAULT};
    weft_portal *pp = nullptr;
    std::vector<weft_portal *> portals; /* run_in_actor portals are ours */
    weft_err body = weft_nursery_run_in_actor(n, &po, "pub:publisher",
                                              nullptr, 0, &pp);
    if (pp) portals.push_back(pp);
    /* The publisher's address, valid in the consumers' processes too. */
    weft_actor_ref pub{};
    if (body == WEFT_OK) {
      body = weft_actor_ref_of(weft_current_runtime(), weft_portal_aid(pp),
                               &pub);
      F_EXPECT(WEFT_OK, body);
      EXPECT_EQ(SpawnsProcesses(), pub.pid != getpid())
          << "a reference to an actor of another process iff it is one";
    }
    for (int i = 0; i < 3 && body == WEFT_OK; i++) {
      ConsArgs a{};
      a.pub = pub;
      a.idx = i;
      std::snprintf(a.topics, sizeof(a.topics), "%s", topics[i]);
      weft_actor_opts co{names[i], cons_fns.data(), cons_fns.size(), WEFT_SPAWN_DEFAULT};
      weft_portal *cp = nullptr;
      body = weft_nursery_run_in_actor(n, &co, "cons:consumer", &a, sizeof(a),
                                       &cp);
      if (cp) portals.push_back(cp);
    }
    if (body == WEFT_OK)
      body = WaitUntil(
          [&] {
            return obs.cons[0].n >= 10 && obs.cons[1].n >= 10 &&
                   obs.cons[2].saw_even && obs.cons[2].saw_odd;
          },
          "every consumer to receive values", 15);
    if (body == WEFT_OK)
      body = prm.keyboard_interrupt
                 ? weft_fail_kind(WEFT_ERRKIND_INTERRUPT, "KeyboardInterrupt")
                 : weft_fail("TooSlowError", "fail_after(3) expired");
    nrc = weft_nursery_exit(n, body);
    const weft_error *e = weft_task_error();
    auto is_raised = [&](const weft_error *x) {
      return x != nullptr && IsBoxedError(x, nullptr, "root") &&
             (prm.keyboard_interrupt
                  ? weft_error_kind(x) == WEFT_ERRKIND_INTERRUPT
                  : std::string(weft_error_boxed_type(x)) == "TooSlowError");
    };
    /* bare, or in a group where `split` finds it; any other member may only
     * be a consumer's ContextCancelled from this teardown (canceller root,
     * possibly relayed) */
    bare = e != nullptr && weft_error_group_len(e) == 0;
    right_error = is_raised(e);
    for (size_t i = 0; e && i < weft_error_group_len(e); i++) {
      const weft_error *m = weft_error_group_at(e, i);
      if (is_raised(m)) {
        right_error = true;
        continue;
      }
      const weft_uid *by = weft_error_canceller(m);
      EXPECT_TRUE(std::string(weft_error_src_type(m)) == "ContextCancelled" &&
                  by && std::string(by->name) == "root")
          << "unexpected member of the group: " << Describe(m);
    }
    for (weft_portal *x : portals) weft_portal_free(x);
    return nrc;
  });
  if (bare) {
    EXPECT_RC(prm.keyboard_interrupt ? WEFT_EINTERRUPT : WEFT_EFAILED, nrc);
  } else {
    EXPECT_RC(WEFT_EFAILED, nrc);
  }
  EXPECT_RC(nrc, rc);
  EXPECT_TRUE(right_error) << "the raised error escapes, bare or in a group";
  EXPECT_LT(Seconds(t0), 20.0 * kSlack);
  EXPECT_RC(WEFT_ECANCELED, obs.publisher_rc.load());
  for (int i = 0; i < 3; i++) {
    size_t total = 0;
    const std::vector<int32_t> v = obs.cons[i].Values(&total);
    EXPECT_EQ(total, v.size()) << names[i] << ": values kept";
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()) &&
                std::adjacent_find(v.begin(), v.end()) == v.end())
        << names[i] << ": values strictly increasing";
    for (int32_t x : v) {
      if (i == 0) {
        EXPECT_EQ(0, x % 2) << names[i];
      }
      if (i == 1) {
        EXPECT_EQ(1, x % 2) << names[i];
      }
    }
    /* Torn down by the nursery: the consumer's context exit raises the
     * ctxc (canceller root) of the publisher's subscribe task, or the
     * consumer's own cancel came first. */
    int end = obs.cons[i].end_rc.load();
    std::string end_err;
    {
      std::lock_guard<SharedSpinLock> g(obs.cons[i].mu);
      end_err = obs.cons[i].end_err.Get();
    }
    EXPECT_TRUE((end == WEFT_EREMOTE && obs.cons[i].end_is_ctxc_from_root) ||
                end == WEFT_ECANCELED)
        << names[i] << " ended with " << weft_errname(weft_err(end)) << ": "
        << end_err;
  }
}

INSTANTIATE_TEST_SUITE_P(
    F3, F3DynamicPubSub,
    ::testing::Values(PubSubParam{"S104_KeyboardInterrupt", true},
                      PubSubParam{"S105_TooSlowError", false}),
    [](const ::testing::TestParamInfo<PubSubParam> &i) {
      return std::string(i.param.id);
    });

/* ---- S106 ---- */

struct DualChild {
  std::atomic<int> pings{0}, yos{0};
  std::atomic<bool> bad_msg{false};
  SleeperObs obs; /* the ping-pong loop's end */
};

struct DualShared {
  weft_stream *s = nullptr;
  bool stop = false; /* the stream is gone: do not touch it */
  DualChild *st = nullptr;
};

/* The child's second task: streams 'yo' every 10 ms. */
weft_err StreamYo(void *arg) {
  std::unique_ptr<std::shared_ptr<DualShared>> holder(
      static_cast<std::shared_ptr<DualShared> *>(arg));
  std::shared_ptr<DualShared> sh = *holder;
  while (!sh->stop) {
    if (SendStr(sh->s, "yo") != WEFT_OK) break;
    sh->st->yos++;
    if (weft_sleep(10 * kMs) != WEFT_OK) break;
  }
  return WEFT_OK;
}

/* one_task_streams_and_one_handles_reqresp: two tasks share one stream. */
weft_err DualTasks(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *st = static_cast<DualChild *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  auto sh = std::make_shared<DualShared>();
  sh->s = s;
  sh->st = st;
  if ((rc = weft_task_spawn(StreamYo, new std::shared_ptr<DualShared>(sh),
                            nullptr)) != WEFT_OK)
    return rc;
  for (;;) {
    std::string m;
    if ((rc = RecvStr(s, &m)) != WEFT_OK) break;
    if (m != "ping") st->bad_msg = true;
    if ((rc = SendStr(s, "pong")) != WEFT_OK) break;
    st->pings++;
  }
  sh->stop = true;
  st->obs.Record(ctx, rc);
  return rc == WEFT_EEOC ? WEFT_OK : rc;
}

/* S106 test_reqresp_ontopof_streaming: the run ends (move_on_after) once 5
 * pongs and 5 yos were received. */
TEST_F(ScenarioF, S106_ReqrespOntopofStreaming) {
  DualChild &child = *SharedNew<DualChild>();
  std::vector<weft_function> fns = {{"dual:reqresp", DualTasks, &child}};
  int pongs = 0, yos = 0;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("dual_tasks", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      weft_payload first;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "dual:reqresp", nullptr, 0,
                                           nullptr, &ctx, &first));
      EXPECT_EQ(0u, first.len);
      weft_stream *s;
      weft_err body = weft_ctx_open_stream(ctx, nullptr, &s);
      if (body == WEFT_OK) body = SendStr(s, "ping");
      while (body == WEFT_OK && (pongs < 5 || yos < 5)) {
        std::string m;
        if ((body = RecvStr(s, &m)) != WEFT_OK) break;
        EXPECT_TRUE(m == "pong" || m == "yo") << m;
        if (m == "yo") yos++;
        if (m == "pong") {
          pongs++;
          body = SendStr(s, "ping");
        }
      }
      EXPECT_RC(WEFT_OK, body) << ErrStr();
      /* the deadline: the block is cancelled, the cancel absorbed */
      if (body == WEFT_OK) weft_ctx_cancel(ctx);
      weft_err r = weft_ctx_exit(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_GE(pongs, 1) << "at least one pong";
  EXPECT_GE(child.pings.load(), pongs);
  EXPECT_GE(child.yos.load(), yos);
  EXPECT_FALSE(child.bad_msg.load());
  EXPECT_RC(WEFT_ECANCELED, child.obs.rc.load());
  EXPECT_EQ("root", child.obs.Canceller());
}

/* ---- S107 ---- */

/* S107 test_sigint_both_stream_types: a ctx stream and a legacy stream side
 * by side; the root raises KeyboardInterrupt in its body. */
TEST_F(ScenarioF, S107_KeyboardInterruptWithBothStreamTypes) {
  GenChild &gen = *SharedNew<GenChild>();
  gen.async_gen = true;
  std::vector<weft_function> fns = {
      {"2way:async_gen_stream", StreamSequenceThenSleep, &gen},
      {"2way:echo", EchoBytes, nullptr}};
  auto t0 = Clock::now();
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt_, "root",
      [&]() -> weft_err {
        weft_nursery *n;
        F_REQUIRE(WEFT_OK, weft_nursery_open(&n));
        weft_actor_opts o{"2_way", fns.data(), fns.size(), WEFT_SPAWN_DEFAULT};
        weft_portal *p;
        weft_err body = weft_nursery_start_actor(n, &o, &p);
        int32_t zero = 0;
        weft_ctx *gctx = nullptr, *ectx = nullptr;
        weft_stream *gs = nullptr, *es = nullptr;
        if (body == WEFT_OK)
          body = OpenStreamFrom(p, "2way:async_gen_stream", &zero,
                                sizeof(zero), &gctx, &gs);
        if (body == WEFT_OK) {
          body = weft_open_context(p, "2way:echo", nullptr, 0, nullptr, &ectx,
                                   nullptr);
          if (body == WEFT_OK) {
            body = weft_ctx_open_stream(ectx, nullptr, &es);
            int32_t v = -1, echoed = -2;
            if (body == WEFT_OK) body = RecvInt(gs, &v);
            if (body == WEFT_OK) body = SendInt(es, v);
            if (body == WEFT_OK) body = RecvInt(es, &echoed);
            EXPECT_RC(WEFT_OK, body) << ErrStr();
            EXPECT_EQ(0, v);
            EXPECT_EQ(v, echoed);
            if (body == WEFT_OK)
              body = weft_fail_kind(WEFT_ERRKIND_INTERRUPT, "KeyboardInterrupt");
            EXPECT_RC(WEFT_EINTERRUPT, body);
            /* §7 step 7 / §15.5: the callee is cancelled, its ack absorbed,
             * and the local error propagates unchanged. */
            weft_err er = weft_ctx_exit(ectx, body);
            EXPECT_RC(WEFT_EINTERRUPT, er);
            EXPECT_EQ(WEFT_ERRKIND_INTERRUPT,
                      weft_error_kind(weft_task_error()));
            /* (The stream block's exit sent Stop first, so the echo server
             * may return before the cancel lands, §9.5: whether the cancel
             * is acknowledged is a race.) */
            EXPECT_TRUE(weft_ctx_cancel_called(ectx));
            const weft_error *le = weft_ctx_local_error(ectx);
            EXPECT_TRUE(le && weft_error_kind(le) == WEFT_ERRKIND_INTERRUPT)
                << Describe(le);
            weft_ctx_free(ectx);
            body = er;
          }
          weft_err gr = CloseStreamFrom(gctx, body);
          EXPECT_RC(WEFT_EINTERRUPT, gr);
          EXPECT_TRUE(IsAbsorbedSelfCancel(gctx));
          weft_ctx_free(gctx);
          body = gr;
        }
        weft_err nr = weft_nursery_exit(n, body);
        EXPECT_RC(WEFT_EINTERRUPT, nr);
        return nr;
      },
      &err);
  EXPECT_RC(WEFT_EINTERRUPT, rc);
  ASSERT_NE(nullptr, err);
  EXPECT_EQ(WEFT_ERRKIND_INTERRUPT, weft_error_kind(err)) << Describe(err);
  EXPECT_EQ(0u, weft_error_group_len(err)) << "bare";
  EXPECT_TRUE(IsBoxedError(err, nullptr, "root"));
  weft_error_release(err);
  EXPECT_LT(Seconds(t0), 2.0 * kSlack);
  EXPECT_RC(WEFT_ECANCELED, gen.obs.rc.load());
  EXPECT_EQ("root", gen.obs.Canceller());
}

/* ---- S108 ---- */

struct InfChild {
  std::atomic<int> sent{0};
  std::atomic<int> stop_rc{-1};
  std::atomic<int> listener_rc{-1};
  std::atomic<bool> saw_done{false};
};

struct Listener {
  weft_stream *s;
  InfChild *st;
};

/* close_stream_on_sentinel: on 'done' closes the stream. */
weft_err CloseStreamOnSentinel(void *arg) {
  auto *l = static_cast<Listener *>(arg);
  weft_err rc;
  for (;;) {
    std::string m;
    if ((rc = RecvStr(l->s, &m)) != WEFT_OK) break;
    if (m == "done") {
      l->st->saw_done = true;
      weft_stream_close(l->s);
    }
  }
  l->st->listener_rc = rc;
  return WEFT_OK;
}

/* inf_streamer: sends ints every 1 ms until send fails because its own
 * stream was closed (ClosedResourceError); more than 10000 is a failure. */
weft_err InfStreamer(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *st = static_cast<InfChild *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  Listener l{s, st};
  weft_task *lt;
  if ((rc = weft_task_spawn(CloseStreamOnSentinel, &l, &lt)) != WEFT_OK)
    return rc;
  const int32_t cap = 10000;
  for (int32_t val = 0; val < cap; val++) {
    if ((rc = SendInt(s, val)) != WEFT_OK) break;
    st->sent = val + 1;
    if ((rc = weft_sleep(1 * kMs)) != WEFT_OK) break;
  }
  st->stop_rc = rc;
  weft_err jr = weft_task_join(lt);
  /* ClosedResourceError is the expected end (the test checks which code
   * it was); anything else, or no end at all, fails the function. */
  if (rc == WEFT_OK)
    return weft_fail("RuntimeError", "Streamer never cancelled by sentinel?");
  if (rc != WEFT_ECLOSED && rc != WEFT_EEOC) return rc;
  return jr;
}

struct Puller {
  weft_bcast *b = nullptr;
  std::vector<int32_t> got;
  weft_err end_rc = WEFT_OK;
};

/* pull_and_count: counts what its subscription receives until the end. */
weft_err PullAndCount(void *arg) {
  auto *p = static_cast<Puller *>(arg);
  for (;;) {
    int32_t v;
    weft_err rc = BRecvInt(p->b, &v);
    if (rc != WEFT_OK) {
      p->end_rc = rc;
      break;
    }
    p->got.push_back(v);
  }
  weft_bcast_close(p->b);
  return WEFT_OK;
}

/* S108 test_local_task_fanout_from_stream: 22 local subscribers each get
 * every value until the child closes its stream on the 'done' sentinel. */
TEST_F(ScenarioF, S108_LocalTaskFanoutFromStream) {
  InfChild &child = *SharedNew<InfChild>();
  std::vector<weft_function> fns = {{"inf:streamer", InfStreamer, &child}};
  constexpr int kTasks = 22;
  std::vector<Puller> pullers(kTasks);
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("inf_streamer", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "inf:streamer", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      weft_err body = weft_ctx_open_stream(ctx, nullptr, &s);
      std::vector<weft_task *> tasks;
      /* Each subscription is made before any value is read, so each
       * subscriber's first value is 0. */
      for (int i = 0; i < kTasks && body == WEFT_OK; i++)
        body = weft_stream_subscribe(s, true, &pullers[i].b);
      for (int i = 0; i < kTasks && body == WEFT_OK; i++) {
        weft_task *t;
        if ((body = weft_task_spawn(PullAndCount, &pullers[i], &t)) ==
            WEFT_OK)
          tasks.push_back(t);
      }
      if (body == WEFT_OK)
        body = WaitUntil(
            [&] {
              for (auto &pl : pullers)
                if (pl.got.size() < 30) return false;
              return true;
            },
            "every subscriber to count 30 values");
      if (body == WEFT_OK) body = SendStr(s, "done");
      for (weft_task *t : tasks) {
        if (body != WEFT_OK) weft_task_cancel(t);
        weft_task_join(t);
      }
      EXPECT_RC(WEFT_OK, body) << ErrStr();
      weft_err r = weft_ctx_exit(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_TRUE(child.saw_done.load());
  EXPECT_RC(WEFT_ECLOSED, child.stop_rc.load())
      << "send after the child's own aclose() must raise ClosedResourceError";
  EXPECT_RC(WEFT_EEOC, child.listener_rc.load());
  int sent = child.sent.load();
  EXPECT_GE(sent, 30);
  for (int i = 0; i < kTasks; i++) {
    EXPECT_RC(WEFT_EEOC, pullers[i].end_rc) << "subscriber " << i;
    EXPECT_EQ(Iota(0, sent), pullers[i].got) << "subscriber " << i;
  }
}

/* =====================================================================
 * F.4 tests/test_task_broadcasting.py: root -> daemon sequence_echoer,
 * context to echo_sequences, parent stream with allow_overruns=True.
 * ===================================================================== */

std::vector<weft_function> EchoerFns() {
  return {{"bcast:echo_sequences", EchoSequences, nullptr},
          {"bcast:send_n_then_close", SendNThenClose, nullptr}};
}

/* open_sequence_streamer(): runs body(stream) in the common setup, then ends
 * the stream block and the context. */
weft_err WithSequenceStreamer(const std::function<weft_err(weft_stream *)> &body,
                              unsigned msg_buffer_size = 0) {
  return WithDaemon(
      "sequence_echoer", EchoerFns(), [&](weft_portal *p) -> weft_err {
        weft_ctx *ctx;
        weft_payload first;
        F_REQUIRE(WEFT_OK, weft_open_context(p, "bcast:echo_sequences",
                                             nullptr, 0, nullptr, &ctx,
                                             &first));
        EXPECT_EQ(0u, first.len) << "first is None";
        weft_stream_opts so{true, msg_buffer_size};
        weft_stream *s;
        weft_err b = weft_ctx_open_stream(ctx, &so, &s);
        if (b == WEFT_OK) b = body(s);
        if (b == WEFT_OK) b = weft_stream_close(s);
        weft_err r = weft_ctx_exit(ctx, b);
        weft_ctx_free(ctx);
        return r;
      });
}

struct SeqSub {
  weft_stream *s = nullptr;
  weft_bcast *b = nullptr; /* made by the task itself when null */
  int32_t n = 0;           /* values expected: 0..n-1 */
  std::vector<int32_t> got;
  weft_err sub_rc = WEFT_OK, end_rc = WEFT_OK;
  int lags = 0;
};

/* ensure_sequence: subscribes (if not yet) and checks it receives
 * 0..n-1 in order; a Lagged ends it (it escapes, as in tractor). */
weft_err EnsureSequence(void *arg) {
  auto *q = static_cast<SeqSub *>(arg);
  if (q->b == nullptr &&
      (q->sub_rc = weft_stream_subscribe(q->s, true, &q->b)) != WEFT_OK)
    return q->sub_rc;
  weft_err rc = WEFT_OK;
  while (q->got.size() < size_t(q->n)) {
    int32_t v;
    if ((rc = BRecvInt(q->b, &v)) != WEFT_OK) break;
    q->got.push_back(v);
  }
  q->end_rc = rc;
  if (rc == WEFT_ELAGGED) q->lags++;
  return rc;
}

/* S109 test_stream_fan_out_to_local_subscriptions. */
TEST_F(ScenarioF, S109_StreamFanOutToLocalSubscriptions) {
  constexpr int32_t kN = 1000;
  std::vector<SeqSub> subs(10);
  std::vector<int32_t> parent_got;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer([&](weft_stream *s) -> weft_err {
      std::vector<weft_task *> tasks;
      for (auto &q : subs) {
        q.s = s;
        q.n = kN;
        weft_task *t;
        F_REQUIRE(WEFT_OK, weft_task_spawn(EnsureSequence, &q, &t));
        tasks.push_back(t);
      }
      /* let them subscribe (each runs until it blocks in its receive) */
      F_REQUIRE(WEFT_OK, weft_checkpoint());
      for (auto &q : subs) EXPECT_RC(WEFT_OK, q.sub_rc);
      weft_err body = SendSeq(s, 0, kN);
      while (body == WEFT_OK && parent_got.size() < size_t(kN)) {
        int32_t v;
        if ((body = RecvInt(s, &v)) == WEFT_OK) parent_got.push_back(v);
      }
      EXPECT_RC(WEFT_OK, body) << ErrStr();
      for (weft_task *t : tasks) {
        if (body != WEFT_OK) weft_task_cancel(t);
        EXPECT_RC(body == WEFT_OK ? WEFT_OK : WEFT_ECANCELED,
                  weft_task_join(t));
      }
      for (auto &q : subs)
        if (q.b) weft_bcast_close(q.b);
      return body;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_EQ(Iota(0, kN), parent_got);
  for (size_t i = 0; i < subs.size(); i++)
    EXPECT_EQ(Iota(0, kN), subs[i].got) << "consumer_" << i;
}

struct LagParam {
  const char *id;
  bool parent_slower; /* (parent_delay, sub_delay) = (0.01, 0.001) */
};

void PrintTo(const LagParam &p, std::ostream *os) { *os << p.id; }

class F4ConsumerAndParentMaybeLag
    : public ScenarioF,
      public ::testing::WithParamInterface<LagParam> {};

/* S110-S111 test_consumer_and_parent_maybe_lag[(0.01,0.001) |
 * (0.001,0.01)]: the slower reader is made slower by reading only after
 * the faster one has read everything, so it lags by exactly
 * 300 - window; after Lagged it continues from the oldest retained value
 * (300 - 64 = 236, the default buffer size). */
TEST_P(F4ConsumerAndParentMaybeLag, SlowerReaderLagsThenContinues) {
  constexpr int32_t kN = 300, kWindow = 64;
  const bool parent_slower = GetParam().parent_slower;
  SeqSub sub;
  std::vector<int32_t> parent_got;
  int parent_lags = 0;
  weft_err join_rc = WEFT_OK;
  int32_t sub_after_lag = -1;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer([&](weft_stream *s) -> weft_err {
      sub.s = s;
      sub.n = kN;
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &sub.b));
      F_REQUIRE(WEFT_OK, SendSeq(s, 0, kN));
      weft_task *t;
      if (parent_slower) {
        /* the parent reads a little, then the subscriber reads all */
        for (int32_t i = 0; i < 10; i++) {
          int32_t v;
          F_REQUIRE(WEFT_OK, RecvInt(s, &v));
          parent_got.push_back(v);
        }
        F_REQUIRE(WEFT_OK, weft_task_spawn(EnsureSequence, &sub, &t));
        join_rc = weft_task_join(t);
        /* now the parent: Lagged, then from the oldest retained value */
        bool lagged = false;
        while (parent_got.empty() || parent_got.back() != kN - 1) {
          int32_t v;
          weft_err r = RecvInt(s, &v);
          if (r == WEFT_ELAGGED) {
            parent_lags++;
            lagged = true;
            if (parent_lags > 1) break;
            continue;
          }
          if (r != WEFT_OK) {
            ADD_FAILURE() << "parent recv: " << weft_errname(r);
            break;
          }
          if (lagged) {
            EXPECT_EQ(kN - kWindow, v) << "oldest retained";
          }
          lagged = false;
          parent_got.push_back(v);
        }
      } else {
        /* the parent reads everything, then the subscriber starts */
        while (parent_got.size() < size_t(kN)) {
          int32_t v;
          weft_err r = RecvInt(s, &v);
          if (r != WEFT_OK) {
            ADD_FAILURE() << "parent recv: " << weft_errname(r);
            break;
          }
          parent_got.push_back(v);
        }
        F_REQUIRE(WEFT_OK, weft_task_spawn(EnsureSequence, &sub, &t));
        join_rc = weft_task_join(t); /* its Lagged escapes */
        F_EXPECT(WEFT_OK, BRecvInt(sub.b, &sub_after_lag));
      }
      weft_bcast_close(sub.b);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  if (parent_slower) {
    EXPECT_RC(WEFT_OK, join_rc) << "the faster subscriber never lags";
    EXPECT_EQ(Iota(0, kN), sub.got);
    EXPECT_EQ(1, parent_lags) << "parent_delay > sub_delay: the parent lags";
    std::vector<int32_t> want = Iota(0, 10), tail = Iota(kN - kWindow, kN);
    want.insert(want.end(), tail.begin(), tail.end());
    EXPECT_EQ(want, parent_got);
  } else {
    EXPECT_RC(WEFT_ELAGGED, join_rc)
        << "the Lagged escapes only when the subscriber is the slower one";
    EXPECT_TRUE(sub.got.empty());
    EXPECT_EQ(0, parent_lags);
    EXPECT_EQ(Iota(0, kN), parent_got);
    EXPECT_EQ(kN - kWindow, sub_after_lag) << "oldest retained";
  }
}

INSTANTIATE_TEST_SUITE_P(
    F4, F4ConsumerAndParentMaybeLag,
    ::testing::Values(LagParam{"S110_parent_0_01_sub_0_001", true},
                      LagParam{"S111_parent_0_001_sub_0_01", false}),
    [](const ::testing::TestParamInfo<LagParam> &i) {
      return std::string(i.param.id);
    });

/* A subscriber task that reads until cancelled or the end. */
weft_err ReadUntilEnd(void *arg) {
  auto *q = static_cast<SeqSub *>(arg);
  weft_err rc;
  for (;;) {
    int32_t v;
    if ((rc = BRecvInt(q->b, &v)) != WEFT_OK) break;
    q->got.push_back(v);
  }
  q->end_rc = rc;
  weft_bcast_close(q->b); /* the subscribe() block's exit */
  q->b = nullptr;
  return rc;
}

/* S112 test_faster_task_to_recv_is_cancelled_by_slower. */
TEST_F(ScenarioF, S112_FasterTaskToRecvIsCancelledBySlower) {
  constexpr int32_t kN = 1000;
  SeqSub fast;
  std::vector<int32_t> after;
  int lags_after_cancel = 0;
  double tail_s = 0;
  weft_err join_rc = WEFT_OK;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer([&](weft_stream *s) -> weft_err {
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &fast.b));
      weft_task *t;
      F_REQUIRE(WEFT_OK, weft_task_spawn(ReadUntilEnd, &fast, &t));
      F_REQUIRE(WEFT_OK, SendSeq(s, 0, kN));
      int32_t last = -1;
      for (int i = 0; i < 20; i++) {
        weft_err r = RecvInt(s, &last);
        if (r == WEFT_ELAGGED) continue;
        F_REQUIRE(WEFT_OK, r);
      }
      /* the fast task runs until it is blocked in its receive, then it
       * is cancelled there */
      F_REQUIRE(WEFT_OK, weft_checkpoint());
      weft_task_cancel(t);
      join_rc = weft_task_join(t);
      auto t0 = Clock::now();
      while (after.empty() || after.back() != kN - 1) {
        int32_t v;
        weft_err r = RecvInt(s, &v);
        if (r == WEFT_ELAGGED && after.empty() && lags_after_cancel == 0) {
          lags_after_cancel++;
          continue;
        }
        if (r != WEFT_OK) {
          ADD_FAILURE() << "recv after the cancel: " << weft_errname(r);
          break;
        }
        after.push_back(v);
      }
      tail_s = Seconds(t0);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_ECANCELED, join_rc);
  EXPECT_RC(WEFT_ECANCELED, fast.end_rc);
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(Iota(after.front(), kN), after)
      << "no value missed once the faster task was cancelled";
  EXPECT_LE(lags_after_cancel, 1);
  EXPECT_LT(tail_s, 0.5 * kSlack);
}

/* S113 test_subscribe_errors_after_close: subscribing to a closed
 * broadcaster is a ClosedResourceError (WEFT_ECLOSED) and registers
 * nothing; three ways a broadcaster is closed. */
TEST_F(ScenarioF, S113_SubscribeErrorsAfterClose) {
  auto expect_closed = [](weft_stream *s, const char *how) {
    weft_bcast *b = reinterpret_cast<weft_bcast *>(1);
    F_EXPECT(WEFT_ECLOSED, weft_stream_subscribe(s, true, &b));
    EXPECT_EQ(nullptr, b) << how << ": nothing is registered";
    EXPECT_TRUE(IsBoxedError(weft_task_error(), "ClosedResourceError",
                             nullptr))
        << how;
  };
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("sequence_echoer", EchoerFns(),
                      [&](weft_portal *p) -> weft_err {
      /* (a) our own stream was closed */
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "bcast:echo_sequences", nullptr,
                                           0, nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      F_REQUIRE(WEFT_OK, weft_stream_close(s));
      expect_closed(s, "after our close");
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      weft_ctx_free(ctx);
      /* (b) the peer's end of stream was received */
      int32_t n = 3;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "bcast:send_n_then_close", &n,
                                           sizeof(n), nullptr, &ctx, nullptr));
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      for (int32_t i = 0; i < n; i++) {
        int32_t v;
        F_EXPECT(WEFT_OK, RecvInt(s, &v));
      }
      int32_t v;
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      expect_closed(s, "after the peer's EoC");
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      weft_ctx_free(ctx);
      /* (c) a subscriber saw the broadcaster end */
      F_REQUIRE(WEFT_OK, weft_open_context(p, "bcast:send_n_then_close", &n,
                                           sizeof(n), nullptr, &ctx, nullptr));
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      weft_bcast *a;
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &a));
      for (int32_t i = 0; i < n; i++) {
        F_EXPECT(WEFT_OK, BRecvInt(a, &v));
        EXPECT_EQ(i, v);
      }
      F_EXPECT(WEFT_EEOC, BRecvInt(a, &v));
      expect_closed(s, "after a subscriber saw the end");
      F_EXPECT(WEFT_EEOC, BRecvInt(a, &v));
      weft_bcast_close(a);
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* ---- S114 ---- */

struct LagOut {
  weft_stream *s = nullptr;
  weft_bcast *b[4] = {};        /* sub_1..sub_3 (index 1..3) */
  size_t count[4] = {};         /* values read */
  int elagged[4] = {};          /* Lagged seen */
  int retries[4] = {};          /* tractor's laggers[name] */
  bool alive[4] = {};
  std::vector<std::string> errors;
  weft_err resub_rc = WEFT_OK;  /* sub_1 re-entering the closed bcaster */
  weft_err sub1_end = WEFT_OK;
};

struct LagOutArg {
  LagOut *lo;
  int k; /* sub_k: reads one value per k values of sub_1 */
};

/* sub_and_print(delay = k ms): sub_1 reads as fast as values come; sub_k
 * reads one value each time sub_1 has advanced k values, so it lags. */
weft_err SubAndPrint(void *arg) {
  auto *a = static_cast<LagOutArg *>(arg);
  LagOut *lo = a->lo;
  const int k = a->k;
  const int retries = 3;
  bool just_lagged = false;
  int32_t prev = -1;
  for (;;) {
    int32_t v;
    weft_err rc = BRecvInt(lo->b[k], &v);
    if (rc == WEFT_OK) {
      if (just_lagged) {
        /* continues from the oldest retained value: the window is 100 */
        if (v != int32_t(lo->count[1]) - 100)
          lo->errors.push_back("sub_" + std::to_string(k) + " after lag got " +
                               std::to_string(v) + ", expected " +
                               std::to_string(int(lo->count[1]) - 100));
      } else if (v != prev + 1) {
        lo->errors.push_back("sub_" + std::to_string(k) + " got " +
                             std::to_string(v) + " after " +
                             std::to_string(prev));
      }
      just_lagged = false;
      prev = v;
      lo->count[k]++;
      if (k > 1) {
        size_t mark = lo->count[1];
        rc = WaitUntil([&] { return lo->count[1] >= mark + size_t(k); },
                       "sub_1 to advance");
        if (rc != WEFT_OK) {
          lo->errors.push_back("sub_" + std::to_string(k) + " wait failed");
          break;
        }
      }
      continue;
    }
    if (rc == WEFT_ELAGGED) {
      lo->elagged[k]++;
      just_lagged = true;
      if (lo->retries[k] <= retries) {
        lo->retries[k]++;
        continue;
      }
      break; /* too slow: terminated */
    }
    if (rc == WEFT_EEOC && k == 1) {
      /* the non-lagger got the end; it closes itself and re-entering the
       * closed broadcaster is a ClosedResourceError */
      lo->sub1_end = rc;
      weft_bcast_close(lo->b[1]);
      lo->b[1] = nullptr;
      weft_bcast *again = nullptr;
      lo->resub_rc = weft_stream_subscribe(lo->s, true, &again);
      if (again) weft_bcast_close(again);
      lo->alive[1] = false;
      return WEFT_OK;
    }
    lo->errors.push_back("sub_" + std::to_string(k) + " ended with " +
                         weft_errname(rc));
    break;
  }
  if (lo->b[k]) weft_bcast_close(lo->b[k]);
  lo->b[k] = nullptr;
  lo->alive[k] = false;
  return WEFT_OK;
}

/* S114 test_ensure_slow_consumers_lag_out: three subscribers of a 100-slot
 * broadcaster read at speeds 1 : 1/2 : 1/3; the slow ones lag, retry 4
 * times and quit; the producer stops once only sub_1 (and the never-read
 * broadcaster itself) remain; sub_1 gets the end and cannot re-subscribe;
 * the never-read receiver lags once and then yields the last 100 values. */
TEST_F(ScenarioF, S114_EnsureSlowConsumersLagOut) {
  LagOut lo;
  std::vector<int32_t> own;
  weft_err own_first = WEFT_OK, own_end = WEFT_OK;
  int32_t produced = 0;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer(
        [&](weft_stream *s) -> weft_err {
          lo.s = s;
          for (int k = 1; k <= 3; k++) {
            F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &lo.b[k]));
            lo.alive[k] = true;
          }
          std::vector<LagOutArg> args = {{&lo, 1}, {&lo, 2}, {&lo, 3}};
          std::vector<weft_task *> tasks;
          for (auto &a : args) {
            weft_task *t;
            F_REQUIRE(WEFT_OK, weft_task_spawn(SubAndPrint, &a, &t));
            tasks.push_back(t);
          }
          /* the producer: one value at a time, each read by sub_1 before
           * the next, until only sub_1 is left */
          weft_err body = WEFT_OK;
          while (body == WEFT_OK && (lo.alive[2] || lo.alive[3]) &&
                 produced < 100000) {
            if ((body = SendSeq(s, produced, produced + 1)) != WEFT_OK) break;
            produced++;
            body = WaitUntil(
                [&] { return lo.count[1] == size_t(produced) || !lo.alive[1]; },
                "sub_1 to read the value");
            if (!lo.alive[1]) {
              ADD_FAILURE() << "sub_1 ended early";
              break;
            }
          }
          /* `async with tx` exits: the producer (the echoer) ends its
           * stream */
          F_EXPECT(WEFT_OK, SendSeq(s, 0, 0));
          for (weft_task *t : tasks) weft_task_join(t);
          /* the broadcaster's own receiver, never read: overrun */
          int32_t v;
          own_first = RecvInt(s, &v);
          for (;;) {
            weft_err r = RecvInt(s, &v);
            if (r != WEFT_OK) {
              own_end = r;
              break;
            }
            own.push_back(v);
          }
          return body;
        },
        100);
  });
  EXPECT_RC(WEFT_OK, rc);
  for (const auto &e : lo.errors) ADD_FAILURE() << e;
  EXPECT_EQ(0, lo.elagged[1]) << "the non-lagger never lags";
  EXPECT_EQ(size_t(produced), lo.count[1]);
  for (int k = 2; k <= 3; k++) {
    EXPECT_EQ(5, lo.elagged[k]) << "sub_" << k << ": 4 retries, then out";
    EXPECT_EQ(4, lo.retries[k]) << "sub_" << k;
  }
  EXPECT_RC(WEFT_EEOC, lo.sub1_end);
  EXPECT_RC(WEFT_ECLOSED, lo.resub_rc);
  EXPECT_RC(WEFT_ELAGGED, own_first);
  EXPECT_EQ(Iota(produced - 100, produced), own)
      << "the trailing window of 100 values";
  EXPECT_RC(WEFT_EEOC, own_end);
}

/* S115 test_first_recver_is_cancelled: the first receiver is cancelled while
 * it is the one blocked on the stream; another task's receive still gets
 * the next value promptly. */
TEST_F(ScenarioF, S115_FirstRecverIsCancelled) {
  SeqSub first;
  int32_t value = -1;
  double waited = 0;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer([&](weft_stream *s) -> weft_err {
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &first.b));
      weft_task *a;
      F_REQUIRE(WEFT_OK, weft_task_spawn(ReadUntilEnd, &first, &a));
      F_REQUIRE(WEFT_OK, weft_checkpoint()); /* it blocks in its receive */
      struct CancelAndSend {
        weft_task *a;
        weft_stream *s;
        weft_err rc;
      } cs{a, s, WEFT_OK};
      weft_task *b;
      F_REQUIRE(WEFT_OK,
                weft_task_spawn(
                    [](void *arg) -> weft_err {
                      auto *c = static_cast<CancelAndSend *>(arg);
                      weft_task_cancel(c->a);
                      c->rc = SendSeq(c->s, 1, 2);
                      return WEFT_OK;
                    },
                    &cs, &b));
      auto t0 = Clock::now();
      weft_err r = RecvInt(s, &value);
      waited = Seconds(t0);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      EXPECT_RC(WEFT_ECANCELED, weft_task_join(a));
      EXPECT_RC(WEFT_OK, weft_task_join(b));
      EXPECT_RC(WEFT_OK, cs.rc);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_EQ(1, value);
  EXPECT_LT(waited, 0.5 * kSlack);
  EXPECT_RC(WEFT_ECANCELED, first.end_rc);
  EXPECT_TRUE(first.got.empty());
}

/* S116 test_no_raise_on_lag: a subscriber with raise_on_lag=false never
 * gets Lagged; it silently continues from the oldest retained value. A
 * KeyboardInterrupt in the body ends the run. */
TEST_F(ScenarioF, S116_NoRaiseOnLag) {
  constexpr int32_t kN = 300, kWindow = 100;
  SeqSub fast;
  std::vector<int32_t> slow_got;
  int slow_lags = 0;
  weft_err slow_rc = WEFT_OK;
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt_, "root",
      [&]() -> weft_err {
        return WithSequenceStreamer(
            [&](weft_stream *s) -> weft_err {
              weft_bcast *slow;
              F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &fast.b));
              F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, false, &slow));
              fast.n = kN;
              struct Slow {
                weft_bcast *b;
                SeqSub *fast;
                std::vector<int32_t> *got;
                int *lags;
                weft_err *rc;
              } sl{slow, &fast, &slow_got, &slow_lags, &slow_rc};
              weft_task *ft, *st;
              F_REQUIRE(WEFT_OK, weft_task_spawn(EnsureSequence, &fast, &ft));
              F_REQUIRE(WEFT_OK,
                        weft_task_spawn(
                            [](void *arg) -> weft_err {
                              auto *x = static_cast<Slow *>(arg);
                              bool waited = false;
                              while (x->got->empty() || x->got->back() != 299) {
                                int32_t v;
                                weft_err r = BRecvInt(x->b, &v);
                                if (r == WEFT_ELAGGED) {
                                  (*x->lags)++;
                                  continue;
                                }
                                if (r != WEFT_OK) {
                                  *x->rc = r;
                                  return r;
                                }
                                x->got->push_back(v);
                                if (!waited) { /* be slow: wait for fast */
                                  waited = true;
                                  r = WaitUntil(
                                      [&] {
                                        return x->fast->got.size() == 300;
                                      },
                                      "the fast subscriber");
                                  if (r != WEFT_OK) return *x->rc = r;
                                }
                              }
                              return WEFT_OK;
                            },
                            &sl, &st));
              F_REQUIRE(WEFT_OK, SendSeq(s, 0, kN));
              EXPECT_RC(WEFT_OK, weft_task_join(ft));
              EXPECT_RC(WEFT_OK, weft_task_join(st));
              weft_bcast_close(fast.b);
              weft_bcast_close(slow);
              /* the user's Ctrl-C ends the run */
              return weft_fail_kind(WEFT_ERRKIND_INTERRUPT,
                                    "KeyboardInterrupt");
            },
            kWindow);
      },
      &err);
  EXPECT_RC(WEFT_EINTERRUPT, rc);
  EXPECT_TRUE(err && weft_error_kind(err) == WEFT_ERRKIND_INTERRUPT &&
              weft_error_group_len(err) == 0)
      << Describe(err);
  weft_error_release(err);
  EXPECT_EQ(Iota(0, kN), fast.got);
  EXPECT_EQ(0, slow_lags) << "raise_on_lag=false never raises Lagged";
  EXPECT_RC(WEFT_OK, slow_rc);
  std::vector<int32_t> want = {0}, tail = Iota(kN - kWindow, kN);
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(want, slow_got) << "after falling behind it continues from the "
                               "oldest retained value";
}

/* =====================================================================
 * Stream rules of semantics.md §2.5 / §8 not covered by a scenario.
 * ===================================================================== */

/* A child's observations (in the shared arena); `flag` goes either way. */
struct ChildObs {
  std::atomic<int> rc{-1};
  std::atomic<int> rc2{-1};
  std::atomic<int> kind{-1};
  std::atomic<bool> flag{false};
  SharedSpinLock mu;
  SharedString<256> msg;
  void SetMsg(const weft_error *e) {
    std::lock_guard<SharedSpinLock> g(mu);
    msg.Set(e ? weft_error_message(e) : "");
  }
  std::string Msg() {
    std::lock_guard<SharedSpinLock> g(mu);
    return msg.Get();
  }
};

/* §8 / §15.11: the callee opens its stream before started(). */
weft_err OpenStreamBeforeStarted(weft_ctx *ctx, const weft_payload *,
                                 void *arg) {
  auto *o = static_cast<ChildObs *>(arg);
  weft_stream *s = reinterpret_cast<weft_stream *>(1);
  weft_err rc = weft_ctx_open_stream(ctx, nullptr, &s);
  o->rc = rc;
  o->flag = s == nullptr;
  const weft_error *e = weft_task_error();
  o->kind = e ? int(weft_error_kind(e)) : -1;
  o->SetMsg(e);
  return rc;
}

TEST_F(ScenarioF, Rule8_CalleeOpensStreamBeforeStartedIsRuntimeError) {
  ChildObs &obs = *SharedNew<ChildObs>();
  std::vector<weft_function> fns = {
      {"rule:open_early", OpenStreamBeforeStarted, &obs}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx = reinterpret_cast<weft_ctx *>(1);
      F_EXPECT(WEFT_EREMOTE, weft_open_context(p, "rule:open_early", nullptr,
                                               0, nullptr, &ctx, nullptr));
      EXPECT_EQ(nullptr, ctx);
      const weft_error *e = weft_task_error();
      EXPECT_TRUE(IsBoxedError(e, "RuntimeError", "child"));
      EXPECT_TRUE(e && weft_error_kind(e) == WEFT_ERRKIND_RUNTIME)
          << Describe(e);
      EXPECT_NE(nullptr, e ? std::strstr(weft_error_message(e),
                                         "started() must be called before "
                                         "opening a stream")
                           : nullptr)
          << Describe(e);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_ESTATE, obs.rc.load());
  EXPECT_TRUE(obs.flag.load()) << "*out is NULL";
  EXPECT_EQ(int(WEFT_ERRKIND_RUNTIME), obs.kind.load());
  EXPECT_NE(std::string::npos,
            obs.Msg().find("started() must be called before opening a stream"))
      << obs.Msg();
}

weft_err ReturnYo(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  return weft_ctx_return(ctx, "yo", 2);
}

/* §8: open_stream() after this side's cancel(): the recorded remote error,
 * even our own acknowledged cancel (then absorbed at the exit); with none
 * recorded, RuntimeError("Stream opened after Context.cancel() called"). */
TEST_F(ScenarioF, Rule8_OpenStreamAfterCancelRaisesAckElseRuntimeError) {
  SleeperObs &sleeper = *SharedNew<SleeperObs>();
  std::vector<weft_function> fns = {{"rule:sleep", SleepForever, &sleeper},
                                    {"rule:return_yo", ReturnYo, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      /* the callee is running: its ctxc is recorded by cancel() */
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:sleep", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      F_EXPECT(WEFT_OK, weft_ctx_cancel(ctx));
      weft_stream *s = reinterpret_cast<weft_stream *>(1);
      weft_err r = weft_ctx_open_stream(ctx, nullptr, &s);
      EXPECT_RC(WEFT_EREMOTE, r);
      EXPECT_EQ(nullptr, s);
      EXPECT_EQ(weft_ctx_remote_error(ctx), weft_task_error())
          << "the recorded error itself";
      EXPECT_TRUE(IsContextCancelled(weft_task_error(), "root"));
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, r)); /* absorbed at the exit */
      EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
      weft_ctx_free(ctx);
      /* the callee already returned: nothing recorded */
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:return_yo", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_payload res;
      F_EXPECT(WEFT_OK, weft_ctx_result(ctx, &res));
      EXPECT_EQ("yo", Str(res));
      F_EXPECT(WEFT_OK, weft_ctx_cancel(ctx));
      EXPECT_TRUE(weft_ctx_cancel_called(ctx));
      r = weft_ctx_open_stream(ctx, nullptr, &s);
      EXPECT_RC(WEFT_ESTATE, r);
      const weft_error *e = weft_task_error();
      EXPECT_TRUE(e && weft_error_kind(e) == WEFT_ERRKIND_RUNTIME &&
                  std::strstr(weft_error_message(e),
                              "Stream opened after Context.cancel() called"))
          << Describe(e);
      /* the body's RuntimeError propagates from the exit (§7 step 7) */
      F_EXPECT(WEFT_ESTATE, weft_ctx_exit(ctx, r));
      e = weft_task_error();
      EXPECT_TRUE(e && weft_error_kind(e) == WEFT_ERRKIND_RUNTIME)
          << Describe(e);
      EXPECT_FALSE(weft_ctx_cancel_acked(ctx)) << "§9.5: returned first";
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_ECANCELED, sleeper.rc.load());
  EXPECT_EQ("root", sleeper.Canceller());
}

/* Opens its stream, closes it, tries again; then a fresh double open is
 * not possible either. */
weft_err ReopenStream(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *o = static_cast<ChildObs *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s, *s2 = reinterpret_cast<weft_stream *>(1);
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  o->rc2 = weft_ctx_open_stream(ctx, nullptr, &s2); /* still open */
  if ((rc = weft_stream_close(s)) != WEFT_OK) return rc;
  o->rc = weft_ctx_open_stream(ctx, nullptr, &s2); /* after its exit */
  o->flag = s2 == nullptr;
  return WEFT_OK;
}

/* §2.5: a stream is one-shot, on either side: a second open_stream() is a
 * ClosedResourceError (WEFT_ECLOSED), whether the first is still open or
 * closed. */
TEST_F(ScenarioF, Rule25_StreamIsOneShot) {
  ChildObs &obs = *SharedNew<ChildObs>();
  std::vector<weft_function> fns = {{"rule:reopen", ReopenStream, &obs}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:reopen", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s, *s2 = reinterpret_cast<weft_stream *>(1);
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      F_EXPECT(WEFT_ECLOSED, weft_ctx_open_stream(ctx, nullptr, &s2));
      EXPECT_EQ(nullptr, s2);
      F_EXPECT(WEFT_OK, weft_stream_close(s));
      s2 = reinterpret_cast<weft_stream *>(1);
      F_EXPECT(WEFT_ECLOSED, weft_ctx_open_stream(ctx, nullptr, &s2));
      EXPECT_EQ(nullptr, s2);
      EXPECT_TRUE(IsBoxedError(weft_task_error(), "ClosedResourceError",
                               nullptr));
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      EXPECT_EQ(nullptr, weft_ctx_remote_error(ctx));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_ECLOSED, obs.rc2.load()) << "callee: second open while open";
  EXPECT_RC(WEFT_ECLOSED, obs.rc.load()) << "callee: open after close";
  EXPECT_TRUE(obs.flag.load());
}

/* §2.5 aclose(): idempotent; afterwards send is ClosedResourceError
 * (WEFT_ECLOSED, weft/context.h) and receive is EndOfChannel (the stream
 * is marked EoC; S094's StopAsyncIteration). */
TEST_F(ScenarioF, Rule25_AfterOwnCloseSendIsClosedRecvIsEocCloseIdempotent) {
  std::vector<weft_function> fns = {{"rule:echo", EchoBytes, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:echo", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      int32_t v;
      F_EXPECT(WEFT_OK, SendInt(s, 7));
      F_EXPECT(WEFT_OK, RecvInt(s, &v));
      EXPECT_EQ(7, v);
      F_EXPECT(WEFT_OK, weft_stream_close(s));
      F_EXPECT(WEFT_OK, weft_stream_close(s)); /* idempotent */
      F_EXPECT(WEFT_ECLOSED, SendInt(s, 8));
      EXPECT_TRUE(IsBoxedError(weft_task_error(), "ClosedResourceError",
                               nullptr));
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      /* the echo child saw our Stop: it ends with its result */
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      EXPECT_TRUE(weft_ctx_has_result(ctx, nullptr));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* §2.5: once the peer's Stop was seen, every later receive and send raises
 * the same EndOfChannel. */
TEST_F(ScenarioF, Rule25_PeerEocIsStickyForRecvAndSend) {
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", EchoerFns(), [&](weft_portal *p) -> weft_err {
      int32_t n = 2;
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "bcast:send_n_then_close", &n,
                                           sizeof(n), nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      int32_t v;
      for (int32_t i = 0; i < n; i++) {
        F_EXPECT(WEFT_OK, RecvInt(s, &v));
        EXPECT_EQ(i, v);
      }
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_EEOC, SendInt(s, 1));
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      weft_payload res;
      EXPECT_TRUE(weft_ctx_has_result(ctx, &res));
      EXPECT_EQ("bye", Str(res));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* Sends 0..2, waits for 'go', then fails with ValueError. */
weft_err StreamThenFail(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (int32_t i = 0; i < 3; i++)
    if ((rc = SendInt(s, i)) != WEFT_OK) return rc;
  std::string go;
  if ((rc = RecvStr(s, &go)) != WEFT_OK) return rc;
  return weft_fail("ValueError", "boom after %s", go.c_str());
}

/* §2.5 + §9.4: a remote error arriving while the stream is open cancels the
 * owner's scope (it was blocked elsewhere); then send raises it, and
 * receive raises it before the EoC that precedes it in the queue, the same
 * record every time; the exit returns it (§7: the boxed error surfaces). */
TEST_F(ScenarioF, Rule25_RemoteErrorRaisedBySendAndByRecvBeforeEoc) {
  std::vector<weft_function> fns = {{"rule:fail", StreamThenFail, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:fail", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      F_EXPECT(WEFT_OK, SendStr(s, "go"));
      weft_err body = weft_sleep(10 * kSec);
      EXPECT_RC(WEFT_ECANCELED, body) << "the arriving error cancels the "
                                         "context's scope";
      const weft_error *re = weft_ctx_remote_error(ctx);
      EXPECT_TRUE(IsBoxedError(re, "ValueError", "child"));
      F_EXPECT(WEFT_EREMOTE, SendInt(s, 1));
      EXPECT_EQ(re, weft_task_error());
      int32_t v;
      F_EXPECT(WEFT_EREMOTE, RecvInt(s, &v));
      EXPECT_EQ(re, weft_task_error());
      F_EXPECT(WEFT_EREMOTE, RecvInt(s, &v));
      EXPECT_EQ(re, weft_task_error()) << "the same record every time";
      F_EXPECT(WEFT_EREMOTE, weft_ctx_exit(ctx, body));
      EXPECT_TRUE(IsBoxedError(weft_task_error(), "ValueError", "child"));
      EXPECT_FALSE(weft_ctx_cancel_called(ctx));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* §2.5 / §15.4: after our own cancel was acknowledged, send does not raise
 * the ack, but receive does (then the exit absorbs it). */
TEST_F(ScenarioF, Rule25_SendIgnoresSelfCancelAckRecvRaisesIt) {
  std::vector<weft_function> fns = {{"rule:echo", EchoBytes, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:echo", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      F_EXPECT(WEFT_OK, weft_ctx_cancel(ctx));
      EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
      /* not raised by send: it succeeds, or (§9.4: the ack cancelled the
       * context's scope out of band) reports the cancel */
      weft_err sr = SendInt(s, 1);
      EXPECT_TRUE(sr == WEFT_OK || sr == WEFT_ECANCELED)
          << weft_errname(sr) << " " << ErrStr();
      int32_t v;
      weft_err r = RecvInt(s, &v);
      EXPECT_RC(WEFT_EREMOTE, r);
      EXPECT_TRUE(IsContextCancelled(weft_task_error(), "root"));
      EXPECT_EQ(weft_ctx_remote_error(ctx), weft_task_error());
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, r));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* Sends 0..n-1 at once after started, sets the flag, then echoes until the
 * end of the stream; n = the int argument. */
weft_err FloodThenWait(weft_ctx *ctx, const weft_payload *args, void *arg) {
  auto *o = static_cast<ChildObs *>(arg);
  int32_t n = Int(*args);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  std::string go;
  if (n < 0) { /* wait for the parent's 'go' first */
    n = -n;
    if ((rc = RecvStr(s, &go)) != WEFT_OK) return rc;
  }
  for (int32_t i = 0; i < n; i++)
    if ((rc = SendInt(s, i)) != WEFT_OK) break;
  o->rc2 = rc;
  o->flag = true;
  if (rc != WEFT_OK) return rc;
  int32_t v;
  while ((rc = RecvInt(s, &v)) == WEFT_OK) {
  }
  o->rc = rc;
  o->kind = weft_task_error() ? int(weft_error_kind(weft_task_error())) : -1;
  return rc == WEFT_EEOC ? WEFT_OK : rc;
}

/* §8: the peer may send before this side opens its stream; the items wait
 * in the context's queue, in order. */
TEST_F(ScenarioF, Rule8_PeerMaySendBeforeStreamIsOpened) {
  ChildObs &obs = *SharedNew<ChildObs>();
  std::vector<weft_function> fns = {{"rule:flood", FloodThenWait, &obs},
                                    {"rule:noop", Noop, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      int32_t n = 10;
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:flood", &n, sizeof(n),
                                           nullptr, &ctx, nullptr));
      weft_err body = WaitUntil([&] { return obs.flag.load(); },
                                "the child to send");
      if (body == WEFT_OK) body = Settle(p); /* they are in our queue */
      weft_stream *s;
      if (body == WEFT_OK) body = weft_ctx_open_stream(ctx, nullptr, &s);
      std::vector<int32_t> got;
      while (body == WEFT_OK && got.size() < size_t(n)) {
        int32_t v;
        if ((body = RecvInt(s, &v)) == WEFT_OK) got.push_back(v);
      }
      EXPECT_EQ(Iota(0, n), got);
      weft_err r = weft_ctx_exit(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_OK, obs.rc2.load());
  EXPECT_RC(WEFT_EEOC, obs.rc.load()) << "the child's loop ends by our Stop";
}

struct OverrideParam {
  const char *id;
  weft_stream_opts opts;
};

void PrintTo(const OverrideParam &p, std::ostream *os) { *os << p.id; }

class Rule8StreamOptsOverrideContextOpts
    : public ScenarioF,
      public ::testing::WithParamInterface<OverrideParam> {};

/* §8: allow_overruns / msg_buffer_size given to open_stream override the
 * context's (default: no overruns, 64): a burst of 200 items sent while we
 * do not read is kept whole and no StreamOverrun reaches the sender. */
TEST_P(Rule8StreamOptsOverrideContextOpts, BurstIsKept) {
  ChildObs &obs = *SharedNew<ChildObs>();
  std::vector<weft_function> fns = {{"rule:flood", FloodThenWait, &obs},
                                    {"rule:noop", Noop, nullptr}};
  const weft_stream_opts so = GetParam().opts;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      int32_t n = -200; /* after our 'go' */
      weft_ctx_opts co{false, 0};
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:flood", &n, sizeof(n),
                                           &co, &ctx, nullptr));
      weft_stream *s;
      weft_err body = weft_ctx_open_stream(ctx, &so, &s);
      if (body == WEFT_OK) body = SendStr(s, "go");
      if (body == WEFT_OK)
        body = WaitUntil([&] { return obs.flag.load(); }, "the burst");
      if (body == WEFT_OK) body = Settle(p); /* all of it reached our queue */
      std::vector<int32_t> got;
      while (body == WEFT_OK && got.size() < 200) {
        int32_t v;
        if ((body = RecvInt(s, &v)) == WEFT_OK) got.push_back(v);
      }
      EXPECT_RC(WEFT_OK, body) << ErrStr();
      EXPECT_EQ(Iota(0, 200), got);
      EXPECT_EQ(nullptr, weft_ctx_remote_error(ctx))
          << Describe(weft_ctx_remote_error(ctx));
      weft_err r = weft_ctx_exit(ctx, body);
      EXPECT_RC(WEFT_OK, r) << ErrStr();
      weft_ctx_free(ctx);
      return r;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_OK, obs.rc2.load());
  EXPECT_RC(WEFT_EEOC, obs.rc.load())
      << "the sender got no StreamOverrun (kind " << obs.kind.load() << ")";
}

INSTANTIATE_TEST_SUITE_P(
    Rule8, Rule8StreamOptsOverrideContextOpts,
    ::testing::Values(OverrideParam{"allow_overruns", {true, 0}},
                      OverrideParam{"msg_buffer_size_256", {false, 256}}),
    [](const ::testing::TestParamInfo<OverrideParam> &i) {
      return std::string(i.param.id);
    });

/* Counts what it receives until the end of the stream; returns the count. */
weft_err CountUntilEoc(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  int32_t count = 0, v;
  while ((rc = RecvInt(s, &v)) == WEFT_OK) count++;
  if (rc != WEFT_EEOC) return rc;
  return weft_ctx_return(ctx, &count, sizeof(count));
}

/* §8: leaving the context with the stream still open closes it (Stop), so
 * the peer's receive loop ends and its result comes back. */
TEST_F(ScenarioF, Rule8_ContextExitClosesOpenStreamPeerSeesEoc) {
  std::vector<weft_function> fns = {{"rule:count", CountUntilEoc, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:count", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      for (int32_t i = 0; i < 3; i++) F_EXPECT(WEFT_OK, SendInt(s, i));
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK)); /* no close first */
      weft_payload res;
      EXPECT_TRUE(weft_ctx_has_result(ctx, &res));
      EXPECT_EQ(3, Int(res));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* Sends 1..5, waits until the parent closed its stream, sends 6..10, then
 * returns "done". */
weft_err SendAroundParentStop(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *o = static_cast<ChildObs *>(arg);
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  for (int32_t i = 1; i <= 5; i++)
    if ((rc = SendInt(s, i)) != WEFT_OK) return rc;
  if ((rc = WaitUntil([&] { return o->flag.load(); }, "the parent's close")) !=
      WEFT_OK)
    return rc;
  for (int32_t i = 6; i <= 10; i++)
    if ((rc = SendInt(s, i)) != WEFT_OK) break;
  o->rc = rc;
  if (rc != WEFT_OK) return rc;
  return weft_ctx_return(ctx, "done", 4);
}

/* §8 / §10: Yields the peer sends after our own Stop are never delivered;
 * the final drain drops them, and since our stream is closed it stops at
 * the first one without waiting for the result. */
TEST_F(ScenarioF, Rule8_YieldsAfterOwnStopAreDroppedByTheDrain) {
  ChildObs &obs = *SharedNew<ChildObs>();
  std::vector<weft_function> fns = {
      {"rule:around", SendAroundParentStop, &obs}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:around", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      for (int32_t i = 1; i <= 5; i++) {
        int32_t v;
        F_EXPECT(WEFT_OK, RecvInt(s, &v));
        EXPECT_EQ(i, v);
      }
      F_EXPECT(WEFT_OK, weft_stream_close(s));
      obs.flag = true;
      int32_t v;
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      EXPECT_EQ(nullptr, weft_ctx_remote_error(ctx));
      EXPECT_FALSE(weft_ctx_has_result(ctx, nullptr))
          << "§10: a Yield after our stream closed ends the drain";
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_OK, obs.rc.load()) << "the child's late sends succeed";
}

/* §2.5: each subscriber's window is the stream's buffer size: a subscriber
 * exactly `size` items behind is not lagged; one more and it is, and it
 * resumes at the oldest retained item. The stream's own receive is a
 * subscriber too. */
TEST_F(ScenarioF, Rule25_BroadcastWindowIsTheStreamBufferSize) {
  constexpr int32_t kWin = 16;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer(
        [&](weft_stream *s) -> weft_err {
          weft_bcast *a, *b, *c;
          F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &a));
          F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &b));
          F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &c));
          F_REQUIRE(WEFT_OK, SendSeq(s, 0, kWin + 1));
          int32_t v;
          for (int32_t i = 0; i < kWin; i++) {
            F_REQUIRE(WEFT_OK, BRecvInt(a, &v));
            EXPECT_EQ(i, v);
          }
          F_EXPECT(WEFT_OK, BRecvInt(b, &v)); /* exactly kWin behind */
          EXPECT_EQ(0, v);
          F_REQUIRE(WEFT_OK, BRecvInt(a, &v));
          EXPECT_EQ(kWin, v);
          F_EXPECT(WEFT_ELAGGED, BRecvInt(c, &v)); /* kWin + 1 behind */
          EXPECT_TRUE(IsBoxedError(weft_task_error(), "Lagged", nullptr));
          F_EXPECT(WEFT_OK, BRecvInt(c, &v));
          EXPECT_EQ(1, v) << "the oldest retained item";
          F_EXPECT(WEFT_ELAGGED, RecvInt(s, &v)); /* the own receiver */
          F_EXPECT(WEFT_OK, RecvInt(s, &v));
          EXPECT_EQ(1, v);
          F_EXPECT(WEFT_OK, BRecvInt(b, &v)); /* b is still in the window */
          EXPECT_EQ(1, v);
          weft_bcast_close(a);
          weft_bcast_close(b);
          weft_bcast_close(c);
          return WEFT_OK;
        },
        kWin);
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* §2.5: a subscriber receives the items that come after it subscribed, not
 * those other subscribers already took. */
TEST_F(ScenarioF, Rule25_LateSubscriberGetsOnlyLaterItems) {
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithSequenceStreamer([&](weft_stream *s) -> weft_err {
      weft_bcast *a, *b;
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &a));
      F_REQUIRE(WEFT_OK, SendSeq(s, 0, 10));
      int32_t v;
      for (int32_t i = 0; i < 5; i++) {
        F_REQUIRE(WEFT_OK, BRecvInt(a, &v));
        EXPECT_EQ(i, v);
      }
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &b));
      for (int32_t i = 5; i < 10; i++) {
        F_EXPECT(WEFT_OK, BRecvInt(b, &v));
        EXPECT_EQ(i, v) << "late subscriber";
        F_EXPECT(WEFT_OK, BRecvInt(a, &v));
        EXPECT_EQ(i, v);
      }
      weft_bcast_close(a);
      weft_bcast_close(b);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* §2.5: the end of the stream reaches every subscriber, after the items,
 * and stays. */
TEST_F(ScenarioF, Rule25_BroadcastEndsEverySubscriberWithEoc) {
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", EchoerFns(), [&](weft_portal *p) -> weft_err {
      int32_t n = 5;
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "bcast:send_n_then_close", &n,
                                           sizeof(n), nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      weft_bcast *a, *b;
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &a));
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &b));
      int32_t v;
      for (int32_t i = 0; i < n; i++) {
        F_EXPECT(WEFT_OK, BRecvInt(a, &v));
        EXPECT_EQ(i, v);
      }
      F_EXPECT(WEFT_EEOC, BRecvInt(a, &v));
      for (int32_t i = 0; i < n; i++) {
        F_EXPECT(WEFT_OK, BRecvInt(b, &v));
        EXPECT_EQ(i, v);
        F_EXPECT(WEFT_OK, RecvInt(s, &v));
        EXPECT_EQ(i, v);
      }
      F_EXPECT(WEFT_EEOC, BRecvInt(b, &v));
      F_EXPECT(WEFT_EEOC, RecvInt(s, &v));
      F_EXPECT(WEFT_EEOC, BRecvInt(a, &v));
      weft_bcast_close(a);
      weft_bcast_close(b);
      F_EXPECT(WEFT_OK, weft_ctx_exit(ctx, WEFT_OK));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* §2.5: a remote error ends every subscriber with that error. */
TEST_F(ScenarioF, Rule25_BroadcastEndsEverySubscriberWithTheRemoteError) {
  std::vector<weft_function> fns = {{"rule:fail", StreamThenFail, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      weft_ctx *ctx;
      F_REQUIRE(WEFT_OK, weft_open_context(p, "rule:fail", nullptr, 0,
                                           nullptr, &ctx, nullptr));
      weft_stream *s;
      F_REQUIRE(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      weft_bcast *a, *b;
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &a));
      F_REQUIRE(WEFT_OK, weft_stream_subscribe(s, true, &b));
      int32_t v;
      for (int32_t i = 0; i < 3; i++) {
        F_EXPECT(WEFT_OK, BRecvInt(a, &v));
        F_EXPECT(WEFT_OK, BRecvInt(b, &v));
        F_EXPECT(WEFT_OK, RecvInt(s, &v));
        EXPECT_EQ(i, v);
      }
      F_EXPECT(WEFT_OK, SendStr(s, "go"));
      weft_err body = weft_sleep(10 * kSec); /* until the error arrives */
      EXPECT_RC(WEFT_ECANCELED, body);
      const weft_error *re = weft_ctx_remote_error(ctx);
      EXPECT_TRUE(IsBoxedError(re, "ValueError", "child"));
      F_EXPECT(WEFT_EREMOTE, BRecvInt(a, &v));
      EXPECT_EQ(re, weft_task_error());
      F_EXPECT(WEFT_EREMOTE, BRecvInt(b, &v));
      EXPECT_EQ(re, weft_task_error());
      F_EXPECT(WEFT_EREMOTE, RecvInt(s, &v));
      EXPECT_EQ(re, weft_task_error());
      weft_bcast_close(a);
      weft_bcast_close(b);
      F_EXPECT(WEFT_EREMOTE, weft_ctx_exit(ctx, body));
      weft_ctx_free(ctx);
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
}

/* started(), opens its stream, then sleeps until cancelled. */
weft_err StreamThenSleep(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK) return rc;
  weft_stream *s;
  if ((rc = weft_ctx_open_stream(ctx, nullptr, &s)) != WEFT_OK) return rc;
  return weft_sleep(kForever);
}

/* §2.5 aclose(): the Stop is sent shielded and a TransportClosed from it is
 * swallowed. So when the peer has already gone, the context's exit (which
 * closes the open stream first) still reports the body's own error: here
 * the ContextCancelled of Portal.cancel_actor() by us, which is raised, not
 * absorbed (§9.1, S021), and is the very record received. (S104/S105 meet
 * this when the publisher is torn down before its consumers.) */
TEST_F(ScenarioF, Rule25_AcloseSwallowsTransportClosedAtExit) {
  std::vector<weft_function> fns = {
      {"rule:stream_sleep", StreamThenSleep, nullptr}};
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    weft_nursery *n;
    F_REQUIRE(WEFT_OK, weft_nursery_open(&n));
    weft_actor_opts o{"child", fns.data(), fns.size(), WEFT_SPAWN_DEFAULT};
    weft_portal *p;
    weft_err body = weft_nursery_start_actor(n, &o, &p);
    weft_ctx *ctx = nullptr;
    weft_stream *s = nullptr;
    if (body == WEFT_OK)
      body = weft_open_context(p, "rule:stream_sleep", nullptr, 0, nullptr,
                               &ctx, nullptr);
    if (body == WEFT_OK) body = weft_ctx_open_stream(ctx, nullptr, &s);
    if (body == WEFT_OK) {
      bool acked = false;
      F_EXPECT(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      EXPECT_TRUE(acked);
      weft_aid aid = weft_portal_aid(p);
      weft_runtime *rt = weft_current_runtime();
      // The child's ctxc may already have cancelled this context's scope
      // (it arrived while we waited for the ack), so a weft_sleep here
      // could rightly return WEFT_ECANCELED (level-triggered). The child
      // acked, so its exit is under way: wait for it without blocking.
      auto deadline = Clock::now() + std::chrono::seconds(10);
      weft_uid u;
      while (weft_actor_uid(rt, aid, &u) != WEFT_ECLOSED &&
             Clock::now() < deadline)
        std::this_thread::yield();
      EXPECT_EQ(WEFT_ECLOSED, weft_actor_uid(rt, aid, &u))
          << "the child actor did not exit";
    }
    if (body == WEFT_OK) {
      int32_t v;
      body = RecvInt(s, &v);
      EXPECT_RC(WEFT_EREMOTE, body);
      EXPECT_TRUE(IsContextCancelled(weft_task_error(), "root"));
      const weft_error *re = weft_ctx_remote_error(ctx);
      weft_err r = weft_ctx_exit(ctx, body);
      EXPECT_RC(WEFT_EREMOTE, r) << ErrStr();
      EXPECT_EQ(re, weft_task_error())
          << "the exit must raise the received ctxc, got "
          << Describe(weft_task_error());
      EXPECT_TRUE(IsContextCancelled(weft_task_error(), "root"));
      body = WEFT_OK;
    }
    if (ctx) weft_ctx_free(ctx);
    return weft_nursery_exit(n, body);
  });
  EXPECT_RC(WEFT_OK, rc);
}

struct SelfCancelRun {
  weft_task *self = nullptr;
  weft_portal *p = nullptr;
  ChildObs *obs = nullptr;
  weft_err recv_rc = WEFT_OK, send_rc = WEFT_OK, exit_rc = WEFT_OK;
  int32_t leaked = -1;
  bool acked = false;
};

weft_err CancelSelfWithItemsQueued(void *arg) {
  auto *r = static_cast<SelfCancelRun *>(arg);
  int32_t n = 5;
  weft_ctx *ctx;
  F_REQUIRE(WEFT_OK, weft_open_context(r->p, "rule:flood", &n, sizeof(n),
                                       nullptr, &ctx, nullptr));
  weft_stream *s;
  weft_err body = weft_ctx_open_stream(ctx, nullptr, &s);
  if (body == WEFT_OK)
    body = WaitUntil([&] { return r->obs->flag.load(); }, "the child's items");
  if (body == WEFT_OK) body = Settle(r->p); /* five items are queued */
  if (body == WEFT_OK) {
    weft_task_cancel(r->self);
    r->recv_rc = RecvInt(s, &r->leaked);
    r->send_rc = SendInt(s, 1);
    body = r->recv_rc == WEFT_OK ? WEFT_ECANCELED : r->recv_rc;
  }
  r->exit_rc = weft_ctx_exit(ctx, body);
  r->acked = weft_ctx_cancel_called(ctx);
  weft_ctx_free(ctx);
  return r->exit_rc;
}

/* §W.1 (weft/task.h): cancellation is level-triggered: once the task is
 * cancelled, its stream calls return WEFT_ECANCELED, even a receive that
 * would find items already queued. */
TEST_F(ScenarioF, RuleW1_CancelledTaskStreamCallsReturnCancelledWithItemsQueued) {
  ChildObs &obs = *SharedNew<ChildObs>();
  std::vector<weft_function> fns = {{"rule:flood", FloodThenWait, &obs},
                                    {"rule:noop", Noop, nullptr}};
  SelfCancelRun run;
  run.obs = &obs;
  weft_err rc = RunTask(rt_, "root", [&]() -> weft_err {
    return WithDaemon("child", fns, [&](weft_portal *p) -> weft_err {
      run.p = p;
      weft_task *t;
      F_REQUIRE(WEFT_OK, weft_task_spawn(CancelSelfWithItemsQueued, &run, &t));
      run.self = t;
      EXPECT_RC(WEFT_ECANCELED, weft_task_join(t));
      return WEFT_OK;
    });
  });
  EXPECT_RC(WEFT_OK, rc);
  EXPECT_RC(WEFT_ECANCELED, run.recv_rc)
      << "a cancelled task's receive returned item " << run.leaked;
  EXPECT_RC(WEFT_ECANCELED, run.send_rc);
  EXPECT_RC(WEFT_ECANCELED, run.exit_rc);
  EXPECT_TRUE(run.acked) << "the exit cancels the callee (§7 step 7)";
}

}  // namespace

// Section A of ../shared/scenarios.md (S001-S047): tractor's
// tests/test_context_stream_semantics.py, ported to weft's C API.
//
// Translation (semantics.md §W.1):
//   - "X is raised"   -> the call returns an error code and the record is
//                        weft_task_error() / the context's remote error;
//   - "X is absorbed" -> the call returns WEFT_OK and cancel_acked holds;
//   - "escapes trio.run" -> what weft::testing::RunTask returns (code and
//                        error), after the root's actor nursery exit;
//   - tractor's `fail_after(T)` -> FailAfter(): the body runs in a task
//                        that a watchdog cancels (and the test fails) if
//                        it is still running after a generous bound;
//   - the child's global `state` and its other observations live in a
//     ChildState that the child's functions write; the root reads a copy
//     with a portal run of `test:assert_state` (tractor's assert_state), or
//     reads it directly once the child actor has exited. The ChildState is
//     in shared memory (weft/testing/shared.h), so that the root reads what
//     the child wrote also when the child runs in a forked process
//     (WEFT_SPAWN=process): every test here runs both ways.
//
// Every child is a daemon started in the root's actor nursery, as in
// tractor's tests, so that an error escaping the root's body passes through
// the nursery exit (bare when it is the only one, §9.7).
#include <weft/testing/gtest.h>
#include <weft/testing/shared.h>
#include <weft/weft.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace {

using weft::testing::Describe;
using weft::testing::IsAbsorbedSelfCancel;
using weft::testing::IsBoxedError;
using weft::testing::IsContextCancelled;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;
using weft::testing::SharedNew;

constexpr uint64_t kMs = 1000ull * 1000ull;
// "sleep forever": every such sleep in these scenarios ends by a cancel long
// before this passes (the FailAfter bounds are far shorter).
constexpr uint64_t kForever = 120000ull * kMs;

// ---- small helpers --------------------------------------------------------

std::string Uid(const weft_uid *u) {
  if (u == nullptr) return "(none)";
  char buf[WEFT_NAME_MAX + 16];
  return weft_uid_format(u, buf, sizeof(buf));
}

bool SameUid(const weft_uid *a, const weft_uid *b) {
  return a != nullptr && b != nullptr && std::strcmp(a->name, b->name) == 0 &&
         std::memcmp(a->uuid, b->uuid, sizeof(a->uuid)) == 0;
}

::testing::AssertionResult UidIs(const weft_uid *got, const weft_uid &want) {
  if (SameUid(got, &want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "uid is " << Uid(got) << ", expected " << Uid(&want);
}

std::string PayloadStr(const weft_payload &p) {
  return std::string(reinterpret_cast<const char *>(p.data), p.len);
}

int PayloadInt(const weft_payload &p) {
  int v = -1;
  if (p.len == sizeof(v)) std::memcpy(&v, p.data, sizeof(v));
  return v;
}

// What an error record must look like. Unset fields are not checked.
struct ErrSpec {
  weft_errkind kind = WEFT_ERRKIND_NONE;
  const char *boxed = nullptr;
  const char *src_type = nullptr;
  const weft_uid *src = nullptr;
  const weft_uid *canceller = nullptr;
  const weft_uid *sender = nullptr;
  std::vector<const weft_uid *> relay;  // the whole relay path, source first
  const char *tb_has = nullptr;         // substring of the traceback text
  const char *msg_has = nullptr;        // substring of the message
};

::testing::AssertionResult Matches(const weft_error *e, const ErrSpec &s) {
  if (e == nullptr) return ::testing::AssertionFailure() << "no error";
  auto fail = [&]() {
    return ::testing::AssertionFailure() << "[" << Describe(e) << "] ";
  };
  if (s.kind != WEFT_ERRKIND_NONE && weft_error_kind(e) != s.kind)
    return fail() << "kind is " << weft_errkind_name(weft_error_kind(e))
                  << ", expected " << weft_errkind_name(s.kind);
  if (s.boxed && std::strcmp(weft_error_boxed_type(e), s.boxed) != 0)
    return fail() << "boxed type is " << weft_error_boxed_type(e)
                  << ", expected " << s.boxed;
  if (s.src_type && std::strcmp(weft_error_src_type(e), s.src_type) != 0)
    return fail() << "src type is " << weft_error_src_type(e)
                  << ", expected " << s.src_type;
  if (s.src && !SameUid(weft_error_src_uid(e), s.src))
    return fail() << "src uid is " << Uid(weft_error_src_uid(e))
                  << ", expected " << Uid(s.src);
  if (s.canceller && !SameUid(weft_error_canceller(e), s.canceller))
    return fail() << "canceller is " << Uid(weft_error_canceller(e))
                  << ", expected " << Uid(s.canceller);
  if (s.sender && !SameUid(weft_error_sender(e), s.sender))
    return fail() << "sender is " << Uid(weft_error_sender(e))
                  << ", expected " << Uid(s.sender);
  if (!s.relay.empty()) {
    if (weft_error_relay_len(e) != s.relay.size())
      return fail() << "relay path has " << weft_error_relay_len(e)
                    << " hops, expected " << s.relay.size();
    for (size_t i = 0; i < s.relay.size(); i++)
      if (!SameUid(weft_error_relay_at(e, i), s.relay[i]))
        return fail() << "relay hop " << i << " is "
                      << Uid(weft_error_relay_at(e, i)) << ", expected "
                      << Uid(s.relay[i]);
    if (!SameUid(weft_error_relay_uid(e), s.relay.back()))
      return fail() << "relay uid is " << Uid(weft_error_relay_uid(e));
  }
  if (s.tb_has && std::strstr(weft_error_traceback(e), s.tb_has) == nullptr)
    return fail() << "traceback lacks '" << s.tb_has
                  << "': " << weft_error_traceback(e);
  if (s.msg_has && std::strstr(weft_error_message(e), s.msg_has) == nullptr)
    return fail() << "message lacks '" << s.msg_has
                  << "': " << weft_error_message(e);
  if (weft_error_group_len(e) != 0)
    return fail() << "an aggregate, expected a bare error";
  return ::testing::AssertionSuccess();
}

// A ContextCancelled sent by `src` for a cancel requested by `canceller`.
ErrSpec Ctxc(const weft_uid &src, const weft_uid &canceller) {
  ErrSpec s;
  s.kind = WEFT_ERRKIND_CONTEXT_CANCELLED;
  s.boxed = "ContextCancelled";
  s.src = &src;
  s.canceller = &canceller;
  s.relay = {&src};
  return s;
}

// ---- tractor's fail_after -------------------------------------------------

struct Watch {
  const std::function<weft_err()> *body;
  uint64_t ns;
  weft_task *dog = nullptr;
  weft_task *worker = nullptr;
  bool body_done = false;
  bool dog_done = false;
  bool timed_out = false;
};

weft_err WatchBody(void *arg) {
  auto *w = static_cast<Watch *>(arg);
  weft_err rc = (*w->body)();
  w->body_done = true;
  if (!w->dog_done) weft_task_cancel(w->dog);
  return rc;
}

weft_err WatchDog(void *arg) {
  auto *w = static_cast<Watch *>(arg);
  if (weft_sleep(w->ns) == WEFT_OK && !w->body_done) {
    w->timed_out = true;
    weft_task_cancel(w->worker);
  }
  w->dog_done = true;
  return WEFT_OK;
}

// Task only. Runs `body` in a task of the current actor; if it has not
// returned after `seconds` it is cancelled and the test fails. Returns the
// body's code, and its error becomes the current task's error.
weft_err FailAfter(double seconds, const std::function<weft_err()> &body) {
  Watch w;
  w.body = &body;
  w.ns = static_cast<uint64_t>(seconds * 1e9);
  EXPECT_EQ(WEFT_OK, weft_task_spawn(WatchDog, &w, &w.dog));
  EXPECT_EQ(WEFT_OK, weft_task_spawn(WatchBody, &w, &w.worker));
  weft_task_join(w.dog);
  weft_err rc = weft_task_join(w.worker);
  EXPECT_FALSE(w.timed_out) << "the scenario did not finish within "
                            << seconds << " s";
  return rc;
}

// ---- the child side: exposed functions and what they observe --------------

// Everything a child function observes. Written only by the child actor's
// tasks; the root reads a copy (assert_state) or reads it after the child
// actor has exited. Plain data only: it lives in the shared arena (the ctx
// pointer is the child's own, never dereferenced by the root).
struct ChildState {
  int state = 0;  // tractor's module-global `state`
  int calls = 0;
  int finally_runs = 0;
  bool current_ctx_ok = false;  // current_ipc_ctx() is ctx
  weft_ctx *live_ctx = nullptr; // the running function's context
  weft_err started_rc = WEFT_OK;
  weft_err started2_rc = WEFT_OK;
  weft_errkind started2_kind = WEFT_ERRKIND_NONE;
  weft_err cancel_rc = WEFT_OK;
  weft_err open_stream_rc = WEFT_OK;
  weft_errkind open_stream_kind = WEFT_ERRKIND_NONE;
  char open_stream_msg[200] = "";
  weft_err close_rc = WEFT_OK;
  bool blocked_call_returned = false;
  weft_err block_rc = WEFT_OK;  // the blocking call that ended the function
  bool ended = false;
  weft_err end_rc = WEFT_OK;    // what the function returned
  // the child's context, as last recorded
  bool cancel_called = false;
  bool has_canceller = false;
  weft_uid canceller{};
  bool has_remote_error = false;
  weft_errkind remote_kind = WEFT_ERRKIND_NONE;
  bool remote_has_src = false;
  weft_uid remote_src{};
  bool remote_has_sender = false;
  weft_uid remote_sender{};
  bool maybe_error_null = true;
  bool has_result = false;
  // expect_cancelled
  bool stream_ended_without_cancel = false;
  int echoed = 0;
  // keep_sending_from_child
  int items_sent = 0;
  weft_err failed_send_rc = WEFT_OK;
  weft_err failed_sleep_rc = WEFT_OK;
  // echo_back_sequence
  int releases = 0;
  int items_received = 0;
  int batches_done = 0;
  int first_batch_received = 0;
  bool batch_mismatch = false;
};

void RecordCtx(ChildState *cs, weft_ctx *ctx) {
  cs->cancel_called = weft_ctx_cancel_called(ctx);
  const weft_uid *c = weft_ctx_canceller(ctx);
  cs->has_canceller = c != nullptr;
  if (c) cs->canceller = *c;
  const weft_error *re = weft_ctx_remote_error(ctx);
  cs->has_remote_error = re != nullptr;
  if (re) {
    cs->remote_kind = weft_error_kind(re);
    const weft_uid *s = weft_error_src_uid(re);
    cs->remote_has_src = s != nullptr;
    if (s) cs->remote_src = *s;
    const weft_uid *snd = weft_error_sender(re);
    cs->remote_has_sender = snd != nullptr;
    if (snd) cs->remote_sender = *snd;
  }
  cs->maybe_error_null = weft_ctx_maybe_error(ctx) == nullptr;
  cs->has_result = weft_ctx_has_result(ctx, nullptr);
}

void Begin(ChildState *cs, weft_ctx *ctx) {
  cs->calls++;
  cs->live_ctx = ctx;
  cs->current_ctx_ok = weft_current_ctx() == ctx;
}

weft_err End(ChildState *cs, weft_ctx *ctx, weft_err rc) {
  RecordCtx(cs, ctx);
  cs->end_rc = rc;
  cs->ended = true;
  cs->live_ctx = nullptr;
  return rc;
}

// A non-NULL placeholder, to see that a failed open sets *ctx to NULL.
weft_ctx *Sentinel() {
  static int token;
  return reinterpret_cast<weft_ctx *>(&token);
}

template <typename T>
T ArgsOf(const weft_payload *args) {
  T v{};
  if (args && args->len == sizeof(T)) std::memcpy(&v, args->data, sizeof(T));
  return v;
}

// assert_state(value): fails with AssertionError unless state == value;
// returns a snapshot of everything the child observed.
struct StateArgs {
  int value;
};
constexpr int kAnyState = -1;  // a snapshot without the check
weft_err AssertStateFn(weft_ctx *ctx, const weft_payload *args, void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  auto a = ArgsOf<StateArgs>(args);
  if (cs->live_ctx) RecordCtx(cs, cs->live_ctx);
  if (a.value != kAnyState && cs->state != a.value)
    return weft_fail("AssertionError", "state is %d, expected %d", cs->state,
                     a.value);
  return weft_ctx_return(ctx, cs, sizeof(*cs));
}

// simple_setup_teardown(ctx, data, block_forever)
struct SetupArgs {
  int data;
  int block_forever;
};
weft_err SimpleSetupTeardown(weft_ctx *ctx, const weft_payload *args,
                             void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  auto a = ArgsOf<SetupArgs>(args);
  Begin(cs, ctx);
  cs->state = 1;
  int v = a.data + 1;
  weft_err rc = cs->started_rc = weft_ctx_started(ctx, &v, sizeof(v));
  if (rc == WEFT_OK) {
    if (a.block_forever) {
      rc = cs->block_rc = weft_sleep(kForever);
      cs->blocked_call_returned = true;
    } else {
      rc = weft_ctx_return(ctx, "yo", 2);
    }
  }
  // finally:
  cs->state = 0;
  cs->finally_runs++;
  return End(cs, ctx, rc);
}

// too_many_starteds: the second started() is a RuntimeError.
weft_err TooManyStarteds(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  Begin(cs, ctx);
  cs->started_rc = weft_ctx_started(ctx, nullptr, 0);
  weft_err rc = cs->started2_rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc != WEFT_OK && weft_task_error())
    cs->started2_kind = weft_error_kind(weft_task_error());
  return End(cs, ctx, rc);
}

void RecordOpenStream(ChildState *cs, weft_err rc) {
  cs->open_stream_rc = rc;
  const weft_error *e = weft_task_error();
  if (rc != WEFT_OK && e) {
    cs->open_stream_kind = weft_error_kind(e);
    std::snprintf(cs->open_stream_msg, sizeof(cs->open_stream_msg), "%s",
                  weft_error_message(e));
  }
}

// not_started_but_stream_opened: open_stream() before started().
weft_err NotStartedButStreamOpened(weft_ctx *ctx, const weft_payload *,
                                   void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  Begin(cs, ctx);
  weft_stream *s = nullptr;
  weft_err rc = weft_ctx_open_stream(ctx, nullptr, &s);
  RecordOpenStream(cs, rc);
  return End(cs, ctx, rc);
}

// close_ctx_immediately: started(), open the stream and leave its block at
// once, return None.
weft_err CloseCtxImmediately(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  Begin(cs, ctx);
  weft_err rc = cs->started_rc = weft_ctx_started(ctx, nullptr, 0);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) {
    rc = weft_ctx_open_stream(ctx, nullptr, &s);
    RecordOpenStream(cs, rc);
  }
  if (rc == WEFT_OK) rc = cs->close_rc = weft_stream_close(s);
  return End(cs, ctx, rc);
}

// expect_cancelled(ctx, send_before_receive)
struct ExpectCancelledArgs {
  int send_before_receive;
};
weft_err ExpectCancelled(weft_ctx *ctx, const weft_payload *args, void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  auto a = ArgsOf<ExpectCancelledArgs>(args);
  Begin(cs, ctx);
  cs->state = 1;
  weft_err rc = cs->started_rc = weft_ctx_started(ctx, nullptr, 0);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) {
    rc = weft_ctx_open_stream(ctx, nullptr, &s);
    RecordOpenStream(cs, rc);
  }
  if (rc == WEFT_OK && a.send_before_receive)
    rc = weft_stream_send(s, "yo", 2);
  while (rc == WEFT_OK) {
    weft_payload p{};
    rc = weft_stream_recv(s, &p);
    if (rc != WEFT_OK) break;
    rc = weft_stream_send(s, p.data, p.len);
    weft_payload_free(&p);
    cs->echoed++;
  }
  cs->block_rc = rc;
  cs->blocked_call_returned = true;
  if (rc == WEFT_ECANCELED) {
    // The child-side checks of tractor's expect_cancelled run in End():
    // the cancel request is recorded (canceller), no error, no result.
    cs->state = 0;
    return End(cs, ctx, rc);
  }
  cs->stream_ended_without_cancel = true;
  cs->state = 0;
  End(cs, ctx, rc);
  return weft_fail("AssertionError", "stream ended without a cancel: %s",
                   weft_errname(rc));
}

// cancel_self: ctx.cancel() before started(), then open_stream(), then
// sleep under fail_after(0.1) which must be cancelled, not time out.
weft_err CancelSelf(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  Begin(cs, ctx);
  cs->state = 1;
  cs->cancel_rc = weft_ctx_cancel(ctx);
  weft_stream *s = nullptr;
  RecordOpenStream(cs, weft_ctx_open_stream(ctx, nullptr, &s));
  weft_err rc = cs->block_rc = weft_sleep(100 * kMs);
  cs->blocked_call_returned = true;
  return End(cs, ctx, rc);
}

// never_open_stream: started(), then sleep forever without a stream.
weft_err NeverOpenStream(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  Begin(cs, ctx);
  cs->state = 1;
  weft_err rc = cs->started_rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc == WEFT_OK) {
    rc = cs->block_rc = weft_sleep(kForever);
    cs->blocked_call_returned = true;
  }
  cs->state = 0;
  return End(cs, ctx, rc);
}

// keep_sending_from_child: an endless counter, one item every 10 ms.
weft_err KeepSendingFromChild(weft_ctx *ctx, const weft_payload *,
                              void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  Begin(cs, ctx);
  weft_err rc = cs->started_rc = weft_ctx_started(ctx, nullptr, 0);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) {
    rc = weft_ctx_open_stream(ctx, nullptr, &s);
    RecordOpenStream(cs, rc);
  }
  for (int i = 0; rc == WEFT_OK; i++) {
    rc = weft_stream_send(s, &i, sizeof(i));
    if (rc != WEFT_OK) {
      cs->failed_send_rc = rc;
      break;
    }
    cs->items_sent++;
    rc = weft_sleep(10 * kMs);
    if (rc != WEFT_OK) cs->failed_sleep_rc = rc;
  }
  return End(cs, ctx, rc);
}

// echo_back_sequence(seq=[0..9], wait_for_cancel, be_slow,
// allow_overruns_side). `gated`: instead of sleeping 0.05 s per item when
// slow, the child receives batch i only after the parent's (i+1)-th
// `test:release` call, which the parent makes after sending the batch: so
// the whole batch has reached the child's 1-slot queue before it reads
// anything (a deterministic "slow child").
struct EchoArgs {
  int wait_for_cancel;
  int gated;
  int allow_overruns;
};
const int kSeq[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

weft_err EchoBackSequence(weft_ctx *ctx, const weft_payload *args,
                          void *arg) {
  auto *cs = static_cast<ChildState *>(arg);
  auto a = ArgsOf<EchoArgs>(args);
  Begin(cs, ctx);
  weft_err rc = cs->started_rc = weft_ctx_started(ctx, nullptr, 0);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) {
    weft_stream_opts so{};
    so.allow_overruns = a.allow_overruns != 0;
    so.msg_buffer_size = 1;
    rc = weft_ctx_open_stream(ctx, &so, &s);
    RecordOpenStream(cs, rc);
  }
  const int total_batches = a.wait_for_cancel ? 1000 : 6;
  bool eoc = false;
  for (int i = 0; rc == WEFT_OK && i < total_batches; i++) {
    if (eoc || weft_ctx_cancel_called(ctx)) {
      // The stream has ended: wait a little instead of spinning, so a
      // parent that cancels finds us still running.
      rc = weft_sleep(50 * kMs);
      continue;
    }
    while (a.gated && cs->releases <= i && rc == WEFT_OK)
      rc = weft_sleep(1 * kMs);
    std::vector<int> batch;
    while (rc == WEFT_OK) {
      weft_payload p{};
      rc = weft_stream_recv(s, &p);
      if (rc == WEFT_EEOC) {
        eoc = true;
        rc = WEFT_OK;
        break;
      }
      if (rc != WEFT_OK) break;
      batch.push_back(PayloadInt(p));
      weft_payload_free(&p);
      cs->items_received++;
      if (i == 0) cs->first_batch_received = static_cast<int>(batch.size());
      if (batch == std::vector<int>(kSeq, kSeq + 10)) break;
      if (batch.size() >= 10) cs->batch_mismatch = true;
    }
    for (size_t j = 0; rc == WEFT_OK && j < batch.size(); j++)
      rc = weft_stream_send(s, &batch[j], sizeof(batch[j]));
    if (rc == WEFT_OK && batch.size() == 10) cs->batches_done++;
  }
  if (rc == WEFT_OK) rc = weft_ctx_return(ctx, "yo", 2);
  cs->block_rc = rc;
  return End(cs, ctx, rc);
}

weft_err Release(weft_ctx *, const weft_payload *, void *arg) {
  static_cast<ChildState *>(arg)->releases++;
  return WEFT_OK;
}

std::vector<weft_function> Functions(ChildState *cs) {
  return {
      {"test:assert_state", AssertStateFn, cs},
      {"test:simple_setup_teardown", SimpleSetupTeardown, cs},
      {"test:too_many_starteds", TooManyStarteds, cs},
      {"test:not_started_but_stream_opened", NotStartedButStreamOpened, cs},
      {"test:close_ctx_immediately", CloseCtxImmediately, cs},
      {"test:expect_cancelled", ExpectCancelled, cs},
      {"test:cancel_self", CancelSelf, cs},
      {"test:never_open_stream", NeverOpenStream, cs},
      {"test:keep_sending_from_child", KeepSendingFromChild, cs},
      {"test:echo_back_sequence", EchoBackSequence, cs},
      {"test:release", Release, cs},
  };
}

// ---- the root side --------------------------------------------------------

// portal.run(assert_state, value=v); *snap gets the child's observations.
::testing::AssertionResult AssertState(weft_portal *p, int value,
                                       ChildState *snap) {
  StateArgs a{value};
  weft_payload res{};
  weft_err rc = weft_portal_run(p, "test:assert_state", &a, sizeof(a), &res);
  if (rc != WEFT_OK)
    return ::testing::AssertionFailure()
           << "assert_state(" << value << "): " << weft_errname(rc) << " "
           << Describe(weft_task_error());
  bool ok = res.len == sizeof(*snap);
  if (ok) std::memcpy(static_cast<void *>(snap), res.data, sizeof(*snap));
  weft_payload_free(&res);
  if (!ok) return ::testing::AssertionFailure() << "bad assert_state reply";
  return ::testing::AssertionSuccess();
}

// Polls the child (portal runs of assert_state, no sleeps: a successful
// weft_sleep() would replace this task's error) until pred(snapshot) holds;
// a bounded wait. Returns the failing call's code if a poll fails.
weft_err WaitChild(weft_portal *p,
                   const std::function<bool(const ChildState &)> &pred,
                   ChildState *last = nullptr) {
  ChildState snap;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    StateArgs a{kAnyState};
    weft_payload res{};
    weft_err rc =
        weft_portal_run(p, "test:assert_state", &a, sizeof(a), &res);
    if (rc != WEFT_OK) return rc;
    if (res.len == sizeof(snap))
      std::memcpy(static_cast<void *>(&snap), res.data, sizeof(snap));
    weft_payload_free(&res);
    if (last) *last = snap;
    if (pred(snap)) return WEFT_OK;
  }
  ADD_FAILURE() << "the child did not get there within 10 s";
  return WEFT_ETIMEDOUT;
}

// Opens an actor nursery, starts the daemon `name` exposing `fns`, runs
// body(portal) and exits the nursery with the body's code (what escapes).
weft_err WithDaemon(const char *name, const std::vector<weft_function> &fns,
                    weft_uid *child_uid,
                    const std::function<weft_err(weft_portal *)> &body) {
  weft_nursery *n = nullptr;
  weft_err rc = weft_nursery_open(&n);
  EXPECT_EQ(WEFT_OK, rc);
  if (rc != WEFT_OK) return rc;
  weft_actor_opts o{name, fns.data(), fns.size(), WEFT_SPAWN_DEFAULT};
  weft_portal *p = nullptr;
  rc = weft_nursery_start_actor(n, &o, &p);
  EXPECT_EQ(WEFT_OK, rc);
  if (rc != WEFT_OK) return weft_nursery_exit(n, rc);
  EXPECT_EQ(WEFT_OK,
            weft_actor_uid(weft_current_runtime(), weft_portal_aid(p),
                           child_uid));
  return weft_nursery_exit(n, body(p));
}

class ScenariosA : public RuntimeTest {
 protected:
  // The root actor's main task (tractor's trio.run(main)) with a time
  // bound; returns what escapes it, *err its error (caller releases).
  weft_err RunRoot(double bound_s, const std::function<weft_err()> &body,
                   weft_error **err) {
    return RunTask(
        rt_, "root",
        [&]() -> weft_err {
          root_ = *weft_current_uid();
          return FailAfter(bound_s, body);
        },
        err);
  }

  void SetUp() override {
    // WEFT_SPAWN=process: a descendant whose parent died stays ours, so
    // that TearDown finds it.
    if (weft::testing::SpawnsProcesses()) weft::testing::AdoptOrphans();
    RuntimeTest::SetUp();
  }

  void TearDown() override {
    RuntimeTest::TearDown();
    if (weft::testing::SpawnsProcesses()) {
      // No child process outlives its nursery, hence the test.
      EXPECT_EQ(0, weft::testing::LiveDescendants())
          << "child processes left behind";
      weft::testing::ReapExitedChildren();  // adopted orphans
    }
    weft::testing::SharedReset();  // every child process is gone
  }

  weft_uid root_{};
  weft_uid child_{};
  // In shared memory: the child's functions write it, in this process or
  // in a forked one, and the root reads it.
  ChildState &cs_ = *SharedNew<ChildState>();
  std::vector<weft_function> fns_ = Functions(&cs_);
};

// ===========================================================================
// S001-S012 test_simple_context[open_stream, child_blocks_forever,
// error_parent]
// ===========================================================================

enum class Raise { kNone, kValueError, kKeyboardInterrupt };

weft_err RaiseInBody(Raise r) {
  switch (r) {
    case Raise::kValueError:
      return weft_fail("ValueError", "the parent's body failed");
    case Raise::kKeyboardInterrupt:
      return weft_fail_kind(WEFT_ERRKIND_INTERRUPT, "Ctrl-C in the body");
    case Raise::kNone:
      break;
  }
  return WEFT_OK;
}

weft_err RaisedCode(Raise r) {
  switch (r) {
    case Raise::kValueError:
      return WEFT_EFAILED;
    case Raise::kKeyboardInterrupt:
      return WEFT_EINTERRUPT;
    case Raise::kNone:
      break;
  }
  return WEFT_OK;
}

struct SimpleCase {
  const char *name;
  bool open_stream;
  bool block_forever;
  Raise error_parent;
};
void PrintTo(const SimpleCase &c, std::ostream *os) { *os << c.name; }

class SimpleContext : public ScenariosA,
                      public ::testing::WithParamInterface<SimpleCase> {};

TEST_P(SimpleContext, Run) {
  const SimpleCase k = GetParam();
  const bool errs = k.error_parent != Raise::kNone;
  weft_error *raised = nullptr;  // the parent's own error, held
  weft_error *escaped = nullptr;
  ChildState at_finally;
  bool acked = false;

  weft_err rc = RunRoot(15.0, [&]() -> weft_err {  // tractor: 1.5 s
    return WithDaemon("simple_context", fns_, &child_, [&](weft_portal *p) {
      SetupArgs a{10, k.block_forever};
      weft_ctx *ctx = nullptr;
      weft_payload first{};
      weft_err orc = weft_open_context(p, "test:simple_setup_teardown", &a,
                                       sizeof(a), nullptr, &ctx, &first);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      EXPECT_EQ(11, PayloadInt(first));   // sent == 11
      EXPECT_EQ(ctx, weft_current_ctx());  // current_ipc_ctx() is ctx

      ChildState snap;
      if (k.block_forever) {
        EXPECT_TRUE(AssertState(p, 1, &snap));
      } else {
        weft_payload res{};
        EXPECT_EQ(WEFT_OK, weft_ctx_result(ctx, &res));
        EXPECT_EQ("yo", PayloadStr(res));
      }

      weft_err body_rc = WEFT_OK;
      if (k.open_stream) {
        weft_stream *s = nullptr;
        EXPECT_EQ(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
        if (errs) {
          body_rc = RaiseInBody(k.error_parent);
        } else if (k.block_forever) {
          EXPECT_EQ(WEFT_OK, weft_ctx_cancel(ctx));
        }
        // The stream block's exit. A Stop to a child that already
        // returned is dropped there.
        if (s) {
          EXPECT_EQ(WEFT_OK, weft_stream_close(s));
        }
      } else if (errs) {
        body_rc = RaiseInBody(k.error_parent);
      } else {
        // S001: after the result this is a no-op; S004: absorbed below.
        EXPECT_EQ(WEFT_OK, weft_ctx_cancel(ctx));
      }
      if (errs) {
        EXPECT_EQ(RaisedCode(k.error_parent), body_rc);
        raised = weft_error_hold(weft_task_error());
      }

      weft_err exit_rc = weft_ctx_exit(ctx, body_rc);
      // The user sees the root's own error (never masked by the ctxc) or
      // nothing.
      EXPECT_EQ(RaisedCode(k.error_parent), exit_rc)
          << Describe(weft_task_error());
      if (errs) {
        EXPECT_EQ(raised, weft_task_error());
      }

      const weft_error *re = weft_ctx_remote_error(ctx);
      weft_payload res{};
      if (k.block_forever) {
        // The child ended with a ctxc (canceller = root), absorbed here.
        EXPECT_TRUE(Matches(re, Ctxc(child_, root_)));
        EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
        EXPECT_TRUE(UidIs(weft_ctx_canceller(ctx), root_));
        EXPECT_EQ(re, weft_ctx_maybe_error(ctx));  // remote beats local
        EXPECT_EQ(errs ? raised : re, weft_ctx_local_error(ctx));
        EXPECT_FALSE(weft_ctx_has_result(ctx, nullptr));
        // wait_for_result() returns the absorbed ctxc as the outcome.
        EXPECT_EQ(WEFT_OK, weft_ctx_result(ctx, &res));
        EXPECT_EQ(0u, res.len);
      } else {
        // The child returned before any cancel: ctx.cancel() is a no-op.
        EXPECT_EQ(nullptr, re) << Describe(re);
        EXPECT_FALSE(weft_ctx_cancel_acked(ctx));
        EXPECT_EQ(errs || !k.open_stream, weft_ctx_cancel_called(ctx));
        EXPECT_EQ(nullptr, weft_ctx_canceller(ctx));
        EXPECT_EQ(raised, weft_ctx_local_error(ctx));
        EXPECT_EQ(raised, weft_ctx_maybe_error(ctx));
        EXPECT_TRUE(weft_ctx_has_result(ctx, &res));
        EXPECT_EQ("yo", PayloadStr(res));
      }
      weft_ctx_free(ctx);

      // finally: the child's `finally` ran (every case), then cancel_actor.
      EXPECT_TRUE(AssertState(p, 0, &at_finally));
      EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      return exit_rc;
    });
  }, &escaped);

  // What escapes trio.run: the root's own error, bare, or nothing.
  EXPECT_EQ(RaisedCode(k.error_parent), rc) << Describe(escaped);
  if (errs) {
    EXPECT_EQ(raised, escaped) << Describe(escaped);
    ErrSpec want;
    want.kind = k.error_parent == Raise::kValueError ? WEFT_ERRKIND_APP
                                                     : WEFT_ERRKIND_INTERRUPT;
    want.boxed = k.error_parent == Raise::kValueError ? "ValueError"
                                                      : "KeyboardInterrupt";
    want.src = &root_;
    want.relay = {&root_};
    EXPECT_TRUE(Matches(escaped, want));
  } else {
    EXPECT_EQ(nullptr, escaped) << Describe(escaped);
  }
  EXPECT_TRUE(acked);

  // The child's side.
  EXPECT_EQ(1, at_finally.calls);
  EXPECT_EQ(1, at_finally.finally_runs);
  EXPECT_TRUE(at_finally.current_ctx_ok);
  EXPECT_EQ(WEFT_OK, at_finally.started_rc);
  EXPECT_TRUE(at_finally.ended);
  EXPECT_FALSE(at_finally.has_remote_error);
  if (k.block_forever) {
    // Cancelled while blocked; the request came from root.
    EXPECT_TRUE(at_finally.blocked_call_returned);
    EXPECT_EQ(WEFT_ECANCELED, at_finally.block_rc);
    EXPECT_EQ(WEFT_ECANCELED, at_finally.end_rc);
    EXPECT_TRUE(at_finally.has_canceller);
    EXPECT_TRUE(UidIs(&at_finally.canceller, root_));
  } else {
    EXPECT_EQ(WEFT_OK, at_finally.end_rc);
    EXPECT_FALSE(at_finally.has_canceller);
  }
  weft_error_release(raised);
  weft_error_release(escaped);
}

INSTANTIATE_TEST_SUITE_P(
    ScenariosA, SimpleContext,
    ::testing::Values(
        SimpleCase{"S001_Returns_NoError", false, false, Raise::kNone},
        SimpleCase{"S002_Returns_ValueError", false, false, Raise::kValueError},
        SimpleCase{"S003_Returns_KeyboardInterrupt", false, false,
                   Raise::kKeyboardInterrupt},
        SimpleCase{"S004_BlocksForever_NoError", false, true, Raise::kNone},
        SimpleCase{"S005_BlocksForever_ValueError", false, true,
                   Raise::kValueError},
        SimpleCase{"S006_BlocksForever_KeyboardInterrupt", false, true,
                   Raise::kKeyboardInterrupt},
        SimpleCase{"S007_Stream_Returns_NoError", true, false, Raise::kNone},
        SimpleCase{"S008_Stream_Returns_ValueError", true, false,
                   Raise::kValueError},
        SimpleCase{"S009_Stream_Returns_KeyboardInterrupt", true, false,
                   Raise::kKeyboardInterrupt},
        SimpleCase{"S010_Stream_BlocksForever_NoError", true, true,
                   Raise::kNone},
        SimpleCase{"S011_Stream_BlocksForever_ValueError", true, true,
                   Raise::kValueError},
        SimpleCase{"S012_Stream_BlocksForever_KeyboardInterrupt", true, true,
                   Raise::kKeyboardInterrupt}),
    [](const ::testing::TestParamInfo<SimpleCase> &i) {
      return std::string(i.param.name);
    });

// ===========================================================================
// S013-S014 test_started_misuse
// ===========================================================================

TEST_F(ScenariosA, S013_TooManyStartedsRaisesRemoteRuntimeErrorAtExit) {
  weft_error *escaped = nullptr;
  const weft_error *at_exit = nullptr;
  weft_err rc = RunRoot(10.0, [&]() -> weft_err {
    return WithDaemon("started_misuse", fns_, &child_, [&](weft_portal *p) {
      weft_ctx *ctx = nullptr;
      weft_err orc = weft_open_context(p, "test:too_many_starteds", nullptr,
                                       0, nullptr, &ctx, nullptr);
      // The enter succeeds: the first started() arrived.
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      // sleep(1) inside the block: the RuntimeError arriving meanwhile
      // cancels the context's scope, so the sleep is interrupted.
      weft_err body_rc = weft_sleep(1000 * kMs);
      EXPECT_EQ(WEFT_ECANCELED, body_rc);
      weft_err exit_rc = weft_ctx_exit(ctx, body_rc);
      EXPECT_EQ(WEFT_EREMOTE, exit_rc);
      at_exit = weft_task_error();
      ErrSpec want;
      want.kind = WEFT_ERRKIND_RUNTIME;
      want.boxed = "RuntimeError";
      want.src = &child_;
      want.relay = {&child_};
      EXPECT_TRUE(Matches(at_exit, want));
      EXPECT_EQ(weft_ctx_remote_error(ctx), at_exit);
      EXPECT_FALSE(weft_ctx_cancel_called(ctx));
      EXPECT_TRUE(UidIs(weft_ctx_canceller(ctx), child_));
      weft_ctx_free(ctx);
      return exit_rc;  // through the nursery
    });
  }, &escaped);
  // A bare RemoteActorError (boxed RuntimeError) escapes.
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_EQ(at_exit, escaped);
  EXPECT_TRUE(IsBoxedError(escaped, "RuntimeError", "started_misuse"));
  EXPECT_EQ(0u, escaped ? weft_error_group_len(escaped) : 1u);
  // Child: the first started() worked, the second was a RuntimeError.
  EXPECT_EQ(1, cs_.calls);
  EXPECT_EQ(WEFT_OK, cs_.started_rc);
  EXPECT_EQ(WEFT_ESTATE, cs_.started2_rc);
  EXPECT_EQ(WEFT_ERRKIND_RUNTIME, cs_.started2_kind);
  EXPECT_EQ(WEFT_ESTATE, cs_.end_rc);
  weft_error_release(escaped);
}

TEST_F(ScenariosA, S014_StreamBeforeStartedRaisesFromOpenContext) {
  weft_error *escaped = nullptr;
  const weft_error *at_open = nullptr;
  weft_err rc = RunRoot(10.0, [&]() -> weft_err {
    return WithDaemon("started_misuse", fns_, &child_, [&](weft_portal *p) {
      weft_ctx *ctx = Sentinel();
      weft_err orc =
          weft_open_context(p, "test:not_started_but_stream_opened", nullptr,
                            0, nullptr, &ctx, nullptr);
      // Raised from the enter, which was waiting for Started.
      EXPECT_EQ(WEFT_EREMOTE, orc);
      EXPECT_EQ(nullptr, ctx);
      at_open = weft_task_error();
      ErrSpec want;
      want.kind = WEFT_ERRKIND_RUNTIME;
      want.boxed = "RuntimeError";
      want.src = &child_;
      want.relay = {&child_};
      want.msg_has = "started";
      EXPECT_TRUE(Matches(at_open, want));
      if (orc == WEFT_OK) weft_ctx_free(ctx);
      return orc;
    });
  }, &escaped);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_EQ(at_open, escaped);
  EXPECT_TRUE(IsBoxedError(escaped, "RuntimeError", "started_misuse"));
  EXPECT_EQ(0u, escaped ? weft_error_group_len(escaped) : 1u);
  EXPECT_EQ(1, cs_.calls);
  EXPECT_EQ(WEFT_ESTATE, cs_.open_stream_rc);
  EXPECT_EQ(WEFT_ERRKIND_RUNTIME, cs_.open_stream_kind);
  EXPECT_EQ(WEFT_ESTATE, cs_.end_rc);
  weft_error_release(escaped);
}

// ===========================================================================
// S015-S022 test_parent_cancels[child_returns_early, cancel_method,
// chk_ctx_result_before_exit]
// ===========================================================================

struct CancelCase {
  const char *name;
  bool early;
  bool use_portal;  // portal.cancel_actor() instead of ctx.cancel()
  bool chk_inside;
};
void PrintTo(const CancelCase &c, std::ostream *os) { *os << c.name; }

class ParentCancels : public ScenariosA,
                      public ::testing::WithParamInterface<CancelCase> {};

TEST_P(ParentCancels, Run) {
  const CancelCase k = GetParam();
  const bool raises = k.use_portal && !k.early;  // the one raising case
  weft_error *escaped = nullptr;
  bool acked = false;
  int checks = 0;

  // check_canceller(ctx)
  auto check_canceller = [&](weft_ctx *ctx) {
    checks++;
    weft_payload res{};
    weft_err r = weft_ctx_result(ctx, &res);
    const weft_error *re = weft_ctx_remote_error(ctx);
    if (raises) {
      // cancel_actor() alone: the ctxc names us but is not absorbed.
      EXPECT_EQ(WEFT_EREMOTE, r);
      EXPECT_TRUE(IsContextCancelled(weft_task_error(), "root"));
      EXPECT_TRUE(Matches(weft_task_error(), Ctxc(child_, root_)));
      EXPECT_EQ(weft_ctx_maybe_error(ctx), weft_task_error());
      EXPECT_EQ(re, weft_task_error());
      EXPECT_FALSE(weft_ctx_cancel_called(ctx));
      EXPECT_FALSE(weft_ctx_cancel_acked(ctx));
      EXPECT_TRUE(UidIs(weft_ctx_canceller(ctx), root_));
    } else if (k.early) {
      // The result was delivered before the cancel: no error.
      EXPECT_EQ(WEFT_OK, r) << Describe(weft_task_error());
      EXPECT_EQ("yo", PayloadStr(res));
      EXPECT_EQ(nullptr, weft_ctx_maybe_error(ctx));
      EXPECT_EQ(nullptr, re);
      EXPECT_FALSE(weft_ctx_cancel_acked(ctx));
      EXPECT_EQ(!k.use_portal, weft_ctx_cancel_called(ctx));
    } else {
      // ctx.cancel() of a blocked child: result() returns the ctxc.
      EXPECT_EQ(WEFT_OK, r) << Describe(weft_task_error());
      EXPECT_EQ(0u, res.len);
      EXPECT_TRUE(Matches(re, Ctxc(child_, root_)));
      EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
      EXPECT_EQ(re, weft_ctx_maybe_error(ctx));
      const weft_error *le = weft_ctx_local_error(ctx);
      if (le) {
        EXPECT_EQ(re, le);
      }
    }
  };

  weft_err rc = RunRoot(k.early ? 20.0 : 5.0, [&]() -> weft_err {
    return WithDaemon("simple_context", fns_, &child_, [&](weft_portal *p) {
      SetupArgs a{10, !k.early};
      weft_ctx *ctx = nullptr;
      weft_payload first{};
      weft_err orc = weft_open_context(p, "test:simple_setup_teardown", &a,
                                       sizeof(a), nullptr, &ctx, &first);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      EXPECT_EQ(11, PayloadInt(first));
      ChildState snap;
      // tractor sleeps 0.5 s so that an early child has returned; here the
      // child's state says so for certain: its Return was sent before the
      // assert_state reply, so it is already in our queue.
      EXPECT_TRUE(AssertState(p, k.early ? 0 : 1, &snap));
      if (k.use_portal) {
        EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      } else {
        EXPECT_EQ(WEFT_OK, weft_ctx_cancel(ctx));
        EXPECT_TRUE(weft_ctx_cancel_called(ctx));
      }
      if (k.chk_inside) check_canceller(ctx);
      weft_err exit_rc = weft_ctx_exit(ctx, WEFT_OK);
      if (raises) {
        // Not absorbed: the exit raises the same ctxc again (caught by the
        // test's expect_ctxc wrapper).
        EXPECT_EQ(WEFT_EREMOTE, exit_rc);
        EXPECT_EQ(weft_ctx_remote_error(ctx), weft_task_error());
        EXPECT_TRUE(Matches(weft_task_error(), Ctxc(child_, root_)));
      } else {
        EXPECT_EQ(WEFT_OK, exit_rc) << Describe(weft_task_error());
      }
      if (!k.chk_inside) check_canceller(ctx);
      weft_ctx_free(ctx);
      if (!k.use_portal) {
        EXPECT_TRUE(AssertState(p, 0, &snap));
        EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      }
      return WEFT_OK;  // expect_ctxc(yay=...) caught what was expected
    });
  }, &escaped);

  EXPECT_EQ(WEFT_OK, rc) << Describe(escaped);
  EXPECT_EQ(nullptr, escaped);
  EXPECT_EQ(1, checks);
  EXPECT_TRUE(acked);
  // The child (exited by now): its finally ran; a blocked child was
  // cancelled with root as the requester.
  EXPECT_EQ(1, cs_.calls);
  EXPECT_EQ(0, cs_.state);
  EXPECT_EQ(1, cs_.finally_runs);
  EXPECT_FALSE(cs_.has_remote_error);
  if (k.early) {
    EXPECT_EQ(WEFT_OK, cs_.end_rc);
    EXPECT_FALSE(cs_.has_canceller);
  } else {
    EXPECT_EQ(WEFT_ECANCELED, cs_.block_rc);
    EXPECT_EQ(WEFT_ECANCELED, cs_.end_rc);
    EXPECT_TRUE(cs_.has_canceller);
    EXPECT_TRUE(UidIs(&cs_.canceller, root_));
  }
  weft_error_release(escaped);
}

INSTANTIATE_TEST_SUITE_P(
    ScenariosA, ParentCancels,
    ::testing::Values(
        CancelCase{"S015_Early_CtxCancel_CheckInside", true, false, true},
        CancelCase{"S016_Early_CtxCancel_CheckAfter", true, false, false},
        CancelCase{"S017_Early_CancelActor_CheckInside", true, true, true},
        CancelCase{"S018_Early_CancelActor_CheckAfter", true, true, false},
        CancelCase{"S019_Blocking_CtxCancel_CheckInside", false, false, true},
        CancelCase{"S020_Blocking_CtxCancel_CheckAfter", false, false, false},
        CancelCase{"S021_Blocking_CancelActor_CheckInside", false, true,
                   true},
        CancelCase{"S022_Blocking_CancelActor_CheckAfter", false, true,
                   false}),
    [](const ::testing::TestParamInfo<CancelCase> &i) {
      return std::string(i.param.name);
    });

// ===========================================================================
// S023-S024 test_child_exits_ctx_after_stream_open
// ===========================================================================

class ChildExitsAfterStreamOpen : public ScenariosA,
                                  public ::testing::WithParamInterface<
                                      std::pair<const char *, bool>> {};

TEST_P(ChildExitsAfterStreamOpen, Run) {
  const bool send_first = GetParam().second;
  weft_error *escaped = nullptr;
  bool acked = false;
  weft_err rc = RunRoot(5.0, [&]() -> weft_err {  // tractor: 0.5 s
    return WithDaemon("fast_stream_closer", fns_, &child_,
                      [&](weft_portal *p) {
      weft_ctx *ctx = nullptr;
      weft_payload first{};
      weft_err orc = weft_open_context(p, "test:close_ctx_immediately",
                                       nullptr, 0, nullptr, &ctx, &first);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      EXPECT_EQ(0u, first.len);  // sent is None
      weft_stream *s = nullptr;
      EXPECT_EQ(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      if (s) {
        // S024: must not fail although the child's stream is closed.
        if (send_first) {
          EXPECT_EQ(WEFT_OK, weft_stream_send(s, "yo", 2));
        }
        // `async for` yields nothing and ends by EoC ...
        weft_payload item{};
        weft_err r = weft_stream_recv(s, &item);
        EXPECT_EQ(WEFT_EEOC, r) << "got an item: " << PayloadStr(item);
        weft_payload_free(&item);
        // ... and a further receive raises EndOfChannel again.
        EXPECT_EQ(WEFT_EEOC, weft_stream_recv(s, &item));
        weft_payload_free(&item);
        EXPECT_EQ(WEFT_OK, weft_stream_close(s));
      }
      // A stream is one-shot: reopening raises ClosedResourceError (the
      // code weft documents for a second open).
      weft_stream *again = nullptr;
      EXPECT_EQ(WEFT_ECLOSED, weft_ctx_open_stream(ctx, nullptr, &again));
      weft_err exit_rc = weft_ctx_exit(ctx, WEFT_OK);
      EXPECT_EQ(WEFT_OK, exit_rc) << Describe(weft_task_error());
      weft_payload res{};
      EXPECT_TRUE(weft_ctx_has_result(ctx, &res));  // result None
      EXPECT_EQ(0u, res.len);
      EXPECT_EQ(nullptr, weft_ctx_maybe_error(ctx));
      EXPECT_FALSE(weft_ctx_cancel_called(ctx));
      weft_ctx_free(ctx);
      EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      return exit_rc;
    });
  }, &escaped);
  EXPECT_EQ(WEFT_OK, rc) << Describe(escaped);
  EXPECT_EQ(nullptr, escaped);
  EXPECT_TRUE(acked);
  // The child: started, opened and closed its stream, returned None; the
  // parent's Stop and 'yo' reached a finished context and were dropped.
  EXPECT_EQ(1, cs_.calls);
  EXPECT_EQ(WEFT_OK, cs_.started_rc);
  EXPECT_EQ(WEFT_OK, cs_.open_stream_rc);
  EXPECT_EQ(WEFT_OK, cs_.close_rc);
  EXPECT_EQ(WEFT_OK, cs_.end_rc);
  EXPECT_FALSE(cs_.has_remote_error);
  weft_error_release(escaped);
}

INSTANTIATE_TEST_SUITE_P(
    ScenariosA, ChildExitsAfterStreamOpen,
    ::testing::Values(std::make_pair("S023_ParentReceivesFirst", false),
                      std::make_pair("S024_ParentSendsBeforeReceive", true)),
    [](const ::testing::TestParamInfo<std::pair<const char *, bool>> &i) {
      return std::string(i.param.first);
    });

// ===========================================================================
// S025-S026 test_parent_exits_ctx_after_child_enters_stream
// ===========================================================================

struct ExitCase {
  const char *name;
  bool cancel_before_stream;  // S025 ('pre_stream'); S026 otherwise
  bool child_send_before_receive;
};
void PrintTo(const ExitCase &c, std::ostream *os) { *os << c.name; }

class ParentExitsAfterChildEntersStream
    : public ScenariosA,
      public ::testing::WithParamInterface<ExitCase> {};

struct ResultWait {
  weft_ctx *ctx;
  weft_err rc = WEFT_OK;
  bool returned = false;
};

weft_err WaitResult(void *arg) {
  auto *w = static_cast<ResultWait *>(arg);
  weft_payload r{};
  w->rc = weft_ctx_result(w->ctx, &r);
  w->returned = true;
  return w->rc;
}

TEST_P(ParentExitsAfterChildEntersStream, Run) {
  const ExitCase k = GetParam();
  weft_error *escaped = nullptr;
  bool acked = false;
  ChildState snap;
  weft_err rc = RunRoot(10.0, [&]() -> weft_err {
    return WithDaemon("ctx_cancelled", fns_, &child_, [&](weft_portal *p) {
      ExpectCancelledArgs a{k.child_send_before_receive};
      weft_ctx *ctx = nullptr;
      weft_payload first{};
      weft_err orc = weft_open_context(p, "test:expect_cancelled", &a,
                                       sizeof(a), nullptr, &ctx, &first);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      EXPECT_EQ(0u, first.len);  // sent is None
      EXPECT_TRUE(AssertState(p, 1, &snap));

      weft_err body_rc = WEFT_OK;
      if (k.cancel_before_stream) {
        // S025: cancel, then open_stream() raises our own (acked) ctxc.
        EXPECT_EQ(WEFT_OK, weft_ctx_cancel(ctx));
        weft_stream *s = nullptr;
        body_rc = weft_ctx_open_stream(ctx, nullptr, &s);
        EXPECT_EQ(WEFT_EREMOTE, body_rc);
        EXPECT_EQ(nullptr, s);
        EXPECT_TRUE(Matches(weft_task_error(), Ctxc(child_, root_)));
        EXPECT_EQ(weft_ctx_remote_error(ctx), weft_task_error());
      } else {
        // S026: wait_for_result() under fail_after(0.5) times out, as the
        // child blocks in its echo loop (a 'yo' it sent first is drained
        // and ignored).
        ResultWait w{ctx};
        weft_task *t = nullptr;
        EXPECT_EQ(WEFT_OK, weft_task_spawn(WaitResult, &w, &t));
        EXPECT_EQ(WEFT_OK, weft_sleep(500 * kMs));
        EXPECT_FALSE(w.returned) << "result() returned while the child "
                                    "was blocked: "
                                 << weft_errname(w.rc);
        weft_task_cancel(t);
        EXPECT_EQ(WEFT_ECANCELED, weft_task_join(t));  // TooSlowError
        EXPECT_EQ(WEFT_ECANCELED, w.rc);
        EXPECT_EQ(nullptr, weft_ctx_remote_error(ctx));
        EXPECT_FALSE(weft_ctx_has_result(ctx, nullptr));
        EXPECT_EQ(WEFT_OK, weft_ctx_cancel(ctx));
      }
      // The block exits quietly: the ack is absorbed.
      weft_err exit_rc = weft_ctx_exit(ctx, body_rc);
      EXPECT_EQ(WEFT_OK, exit_rc) << Describe(weft_task_error());
      const weft_error *re = weft_ctx_remote_error(ctx);
      EXPECT_TRUE(Matches(re, Ctxc(child_, root_)));
      EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
      EXPECT_TRUE(UidIs(weft_ctx_canceller(ctx), root_));
      // _remote_error is _local_error is maybe_error is outcome
      EXPECT_EQ(re, weft_ctx_local_error(ctx));
      EXPECT_EQ(re, weft_ctx_maybe_error(ctx));
      weft_payload res{};
      EXPECT_EQ(WEFT_OK, weft_ctx_result(ctx, &res));
      EXPECT_EQ(0u, res.len);
      EXPECT_FALSE(weft_ctx_has_result(ctx, nullptr));
      // A fresh open_stream() after the exit raises the ctxc.
      weft_stream *s2 = nullptr;
      EXPECT_EQ(WEFT_EREMOTE, weft_ctx_open_stream(ctx, nullptr, &s2));
      EXPECT_EQ(re, weft_task_error());
      weft_ctx_free(ctx);
      // The child's finally ran; the actor (its "channel") is still
      // there: only the context died.
      EXPECT_TRUE(AssertState(p, 0, &snap));
      EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      return WEFT_OK;
    });
  }, &escaped);
  EXPECT_EQ(WEFT_OK, rc) << Describe(escaped);
  EXPECT_EQ(nullptr, escaped);
  EXPECT_TRUE(acked);
  // expect_cancelled's checks on the child side: cancelled while in its
  // echo loop, by the parent's request (_cancel_msg / canceller), with no
  // error and no result.
  EXPECT_EQ(1, snap.calls);
  EXPECT_EQ(WEFT_OK, snap.open_stream_rc);
  EXPECT_TRUE(snap.ended);
  EXPECT_FALSE(snap.stream_ended_without_cancel);
  EXPECT_EQ(WEFT_ECANCELED, snap.block_rc);
  EXPECT_EQ(WEFT_ECANCELED, snap.end_rc);
  EXPECT_TRUE(snap.has_canceller);
  EXPECT_TRUE(UidIs(&snap.canceller, root_));
  EXPECT_FALSE(snap.cancel_called);  // the child did not cancel itself
  EXPECT_TRUE(snap.maybe_error_null);
  EXPECT_FALSE(snap.has_remote_error);
  EXPECT_FALSE(snap.has_result);
  EXPECT_EQ(0, snap.echoed);  // the parent never sent anything
  weft_error_release(escaped);
}

INSTANTIATE_TEST_SUITE_P(
    ScenariosA, ParentExitsAfterChildEntersStream,
    ::testing::Values(
        ExitCase{"S025_CancelBeforeStream_ChildReceivesFirst", true, false},
        ExitCase{"S025_CancelBeforeStream_ChildSendsFirst", true, true},
        ExitCase{"S026_ResultTimesOutThenCancel_ChildReceivesFirst", false,
                 false},
        ExitCase{"S026_ResultTimesOutThenCancel_ChildSendsFirst", false,
                 true}),
    [](const ::testing::TestParamInfo<ExitCase> &i) {
      return std::string(i.param.name);
    });

// ===========================================================================
// S028 test_child_cancels_before_started
// ===========================================================================

TEST_F(ScenariosA, S028_ChildCancelsItselfBeforeStarted) {
  weft_error *escaped = nullptr;
  bool acked = false;
  weft_err rc = RunRoot(10.0, [&]() -> weft_err {
    return WithDaemon("cancels_self", fns_, &child_, [&](weft_portal *p) {
      weft_ctx *ctx = Sentinel();
      weft_err orc = weft_open_context(p, "test:cancel_self", nullptr, 0,
                                       nullptr, &ctx, nullptr);
      // open_context (waiting for Started) raises ContextCancelled.
      EXPECT_EQ(WEFT_EREMOTE, orc);
      EXPECT_EQ(nullptr, ctx);
      const weft_error *ce = weft_task_error();
      EXPECT_TRUE(IsContextCancelled(ce, "cancels_self"));
      // canceller = the child itself, message "itself".
      EXPECT_TRUE(Matches(ce, Ctxc(child_, child_)));
      ErrSpec itself;
      itself.tb_has = "itself";
      EXPECT_TRUE(Matches(ce, itself));
      if (ce) {  // tb_str carries the message
        EXPECT_NE(nullptr, std::strstr(weft_error_traceback(ce),
                                       weft_error_message(ce)));
      }
      if (orc == WEFT_OK) weft_ctx_free(ctx);
      EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      return WEFT_OK;  // pytest.raises(ContextCancelled) caught it
    });
  }, &escaped);
  EXPECT_EQ(WEFT_OK, rc) << Describe(escaped);
  EXPECT_EQ(nullptr, escaped);
  EXPECT_TRUE(acked);
  // The child: cancel() worked; open_stream() after it is a RuntimeError
  // ("Stream opened after Context.cancel() called", §8); the sleep under
  // fail_after(0.1) is cancelled rather than timing out.
  EXPECT_EQ(1, cs_.calls);
  EXPECT_EQ(1, cs_.state);
  EXPECT_EQ(WEFT_OK, cs_.cancel_rc);
  EXPECT_EQ(WEFT_ESTATE, cs_.open_stream_rc);
  EXPECT_EQ(WEFT_ERRKIND_RUNTIME, cs_.open_stream_kind);
  EXPECT_NE(nullptr, std::strstr(cs_.open_stream_msg, "cancel"))
      << "open_stream() after cancel() should say so (§8), says: "
      << cs_.open_stream_msg;
  EXPECT_TRUE(cs_.blocked_call_returned);
  EXPECT_EQ(WEFT_ECANCELED, cs_.block_rc);
  EXPECT_TRUE(cs_.cancel_called);
  EXPECT_TRUE(cs_.has_canceller);
  EXPECT_TRUE(UidIs(&cs_.canceller, child_));
  EXPECT_FALSE(cs_.has_remote_error);
  weft_error_release(escaped);
}

// ===========================================================================
// S029-S030 test_one_end_stream_not_opened[overrun_by]
// ===========================================================================

TEST_F(ScenariosA, S029_ParentOverrunsChildWithoutStream) {
  weft_error *escaped = nullptr;
  const weft_error *at_exit = nullptr;
  ChildState after;
  weft_err rc = RunRoot(10.0, [&]() -> weft_err {  // tractor: 1 s
    return WithDaemon("never_open_stream", fns_, &child_,
                      [&](weft_portal *p) {
      weft_ctx *ctx = nullptr;
      weft_err orc = weft_open_context(p, "test:never_open_stream", nullptr,
                                       0, nullptr, &ctx, nullptr);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      weft_stream *s = nullptr;
      EXPECT_EQ(WEFT_OK, weft_ctx_open_stream(ctx, nullptr, &s));
      // msg_buffer_size (64) + 1 items: the last overflows the child.
      for (int i = 0; s && i < 65; i++)
        EXPECT_EQ(WEFT_OK, weft_stream_send(s, &i, sizeof(i))) << i;
      // Sleep forever: the child's StreamOverrun cancels our scope.
      weft_err body_rc = weft_sleep(kForever);
      EXPECT_EQ(WEFT_ECANCELED, body_rc);
      weft_err exit_rc = weft_ctx_exit(ctx, body_rc);
      EXPECT_EQ(WEFT_EREMOTE, exit_rc);
      at_exit = weft_task_error();
      ErrSpec want;
      want.kind = WEFT_ERRKIND_STREAM_OVERRUN;
      want.boxed = "StreamOverrun";
      want.src = &child_;
      want.sender = &root_;  // we overran it
      want.relay = {&child_};
      want.msg_has = "no stream open";
      EXPECT_TRUE(Matches(at_exit, want));
      EXPECT_EQ(weft_ctx_remote_error(ctx), at_exit);
      EXPECT_FALSE(weft_ctx_cancel_called(ctx));
      EXPECT_FALSE(weft_ctx_cancel_acked(ctx));
      EXPECT_TRUE(UidIs(weft_ctx_canceller(ctx), child_));
      weft_ctx_free(ctx);
      // The child did not fail: it still sleeps, with no error recorded.
      EXPECT_TRUE(AssertState(p, 1, &after));
      return exit_rc;  // the nursery then cancels the child
    });
  }, &escaped);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_EQ(at_exit, escaped);
  EXPECT_TRUE(IsBoxedError(escaped, "StreamOverrun", "never_open_stream"));
  EXPECT_EQ(0u, escaped ? weft_error_group_len(escaped) : 1u);
  EXPECT_FALSE(after.blocked_call_returned);
  EXPECT_FALSE(after.has_remote_error);
  EXPECT_FALSE(after.cancel_called);
  // Later the nursery's teardown cancelled it (requester: root).
  EXPECT_EQ(WEFT_ECANCELED, cs_.block_rc);
  EXPECT_FALSE(cs_.has_remote_error);
  EXPECT_TRUE(UidIs(&cs_.canceller, root_));
  weft_error_release(escaped);
}

TEST_F(ScenariosA, S030_ChildOverrunsParentWithoutStreamRelayed) {
  weft_error *escaped = nullptr;
  const weft_error *at_exit = nullptr;
  weft_err rc = RunRoot(10.0, [&]() -> weft_err {  // tractor: 1 s
    return WithDaemon("keep_sending", fns_, &child_, [&](weft_portal *p) {
      weft_ctx *ctx = nullptr;
      weft_err orc = weft_open_context(p, "test:keep_sending_from_child",
                                       nullptr, 0, nullptr, &ctx, nullptr);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      // Never opens a stream; sleeps until the relayed error arrives.
      weft_err body_rc = weft_sleep(kForever);
      EXPECT_EQ(WEFT_ECANCELED, body_rc);
      weft_err exit_rc = weft_ctx_exit(ctx, body_rc);
      EXPECT_EQ(WEFT_EREMOTE, exit_rc);
      at_exit = weft_task_error();
      // An inception: the child died of the StreamOverrun we sent it.
      ErrSpec want;
      want.kind = WEFT_ERRKIND_REMOTE;
      want.boxed = "RemoteActorError";
      want.src_type = "StreamOverrun";
      want.src = &root_;
      want.sender = &child_;
      want.relay = {&root_, &child_};
      want.tb_has = "StreamOverrun";
      EXPECT_TRUE(Matches(at_exit, want));
      EXPECT_EQ(weft_ctx_remote_error(ctx), at_exit);
      EXPECT_TRUE(UidIs(weft_ctx_canceller(ctx), root_))
          << "ctx.canceller = the error's src_uid (§9.2)";
      weft_ctx_free(ctx);
      return exit_rc;
    });
  }, &escaped);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_EQ(at_exit, escaped);
  EXPECT_TRUE(IsBoxedError(escaped, "RemoteActorError", "root"));
  // The child: the 65th item overflowed root's queue; root told it, and
  // its next operation failed with RAE[StreamOverrun] (sender = itself).
  // Its next send raises it; if the error lands while it sleeps between
  // sends, the sleep is cancelled (§9.4) and the function still ends with
  // that error relayed (§7.1 step 3).
  EXPECT_GE(cs_.items_sent, 65);
  EXPECT_TRUE(cs_.failed_send_rc == WEFT_EREMOTE ||
              cs_.failed_sleep_rc == WEFT_ECANCELED)
      << weft_errname(cs_.failed_send_rc) << "/"
      << weft_errname(cs_.failed_sleep_rc);
  EXPECT_TRUE(cs_.has_remote_error);
  EXPECT_EQ(WEFT_ERRKIND_STREAM_OVERRUN, cs_.remote_kind);
  EXPECT_TRUE(UidIs(&cs_.remote_src, root_));
  EXPECT_TRUE(UidIs(&cs_.remote_sender, child_));
  weft_error_release(escaped);
}

// ===========================================================================
// S031-S046 test_maybe_allow_overruns_stream[cancel_ctx, slow_side,
// allow_overruns_side]
//
// Determinism. Whether a side overruns depends on whether it reads while
// the other sends; in weft (as in trio) a reader may or may not be resumed
// between two deliveries. tractor's sleeps (child: 0.05 s per item; parent:
// 0.16 s per send) are replaced by explicit synchronisation, so that "who
// is not reading when the other sends" is a certainty, whatever the
// scheduling:
//   - a slow child is gated: it reads batch i only after the parent's
//     (i+1)-th `test:release` portal run, which the parent makes after
//     sending the batch; the release's Start follows the batch on the same
//     FIFO route, so the whole batch reaches the child's 1-slot queue
//     before the child reads anything;
//   - a slow parent paces its sends: after each item it polls the child
//     (portal runs of assert_state) until the child has received it, so the
//     child's 1-slot queue never holds two items; the poll that sees the
//     10th item comes back after the child's 10 echoes (the echo task sent
//     them before that snapshot was taken, same FIFO route), so all of them
//     reach the parent's 1-slot queue before it reads.
// Both-forbid rows (S033/S041, S037/S045) are a race in tractor; each
// order is forced here:
//   - parent overruns first: slow (pacing) parent, ungated child -> RAE
//     boxing RemoteActorError (the child died of our StreamOverrun);
//   - child overruns first: gated child -> RAE boxing StreamOverrun.
//   With a slow child (S037/S045) the parent-first order cannot happen: the
//   parent's queue is 64 deep and a batch is 10, so only child-first is run.
// §W.3.2: weft has no double drainer, so every success row must succeed
// (tractor@978 failed 7 of 8 of them on an internal assertion).
// ===========================================================================

enum class Side { kParent, kChild, kNone, kBoth };
enum class Outcome { kSuccess, kParentOverranFirst, kChildOverranFirst };

struct OverrunCase {
  const char *name;
  bool cancel_ctx;
  Side slow;
  Side allow;
  bool gate_child;  // forced child-first order for a slow parent
  Outcome expect;
};
void PrintTo(const OverrunCase &c, std::ostream *os) { *os << c.name; }

bool Allows(Side allow, Side side) {
  return allow == Side::kBoth || allow == side;
}

class MaybeAllowOverruns : public ScenariosA,
                           public ::testing::WithParamInterface<OverrunCase> {
};

TEST_P(MaybeAllowOverruns, Run) {
  const OverrunCase k = GetParam();
  const bool gated = k.slow == Side::kChild || k.gate_child;
  const bool paced = k.slow == Side::kParent && !gated;
  weft_error *escaped = nullptr;
  const weft_error *at_exit = nullptr;
  int parent_batches = 0;
  int parent_received = 0;  // in the batch that failed
  bool acked = false;
  ChildState cf_child;  // a child-first child, after its first batch

  weft_err rc = RunRoot(20.0, [&]() -> weft_err {  // tractor: 4 s
    return WithDaemon("child_sends_forever", fns_, &child_,
                      [&](weft_portal *p) {
      EchoArgs a{k.cancel_ctx, gated, Allows(k.allow, Side::kChild)};
      weft_ctx *ctx = nullptr;
      weft_payload first{};
      weft_err orc = weft_open_context(p, "test:echo_back_sequence", &a,
                                       sizeof(a), nullptr, &ctx, &first);
      EXPECT_EQ(WEFT_OK, orc) << Describe(weft_task_error());
      if (orc != WEFT_OK) return orc;
      EXPECT_EQ(0u, first.len);  // sent is None

      weft_stream_opts so{};
      so.allow_overruns = Allows(k.allow, Side::kParent);
      so.msg_buffer_size = k.slow == Side::kParent ? 1 : 0;
      weft_stream *s = nullptr;
      weft_err body_rc = weft_ctx_open_stream(ctx, &so, &s);
      EXPECT_EQ(WEFT_OK, body_rc);
      const std::vector<int> seq(kSeq, kSeq + 10);
      for (int b = 0; body_rc == WEFT_OK && b < 2; b++) {
        for (int v : seq) {
          body_rc = weft_stream_send(s, &v, sizeof(v));
          if (body_rc != WEFT_OK) break;
          if (paced) {  // slow parent: one item in flight at a time
            const int want = b * 10 + v + 1;
            body_rc = WaitChild(p, [&](const ChildState &c) {
              return c.items_received >= want;
            });
            if (body_rc != WEFT_OK) break;
          }
        }
        if (body_rc == WEFT_OK && gated)
          body_rc = weft_portal_run(p, "test:release", nullptr, 0, nullptr);
        // async for msg in stream: ... (an end of stream ends the loop)
        std::vector<int> batch;
        while (body_rc == WEFT_OK) {
          weft_payload item{};
          body_rc = weft_stream_recv(s, &item);
          if (body_rc == WEFT_EEOC) {
            body_rc = WEFT_OK;
            break;
          }
          if (body_rc != WEFT_OK) break;
          batch.push_back(PayloadInt(item));
          weft_payload_free(&item);
          if (batch == seq) break;
          if (batch.size() >= seq.size()) {
            ADD_FAILURE() << "echoes out of order";
            body_rc = weft_fail("AssertionError", "echoes out of order");
          }
        }
        parent_received = static_cast<int>(batch.size());
        if (body_rc == WEFT_OK && batch == seq) parent_batches++;
      }
      if (body_rc == WEFT_OK) {
        EXPECT_EQ(WEFT_OK, weft_stream_close(s));  // stream block exit
        // Lets a gated child read on and meet the end of the stream.
        if (gated) {
          EXPECT_EQ(WEFT_OK,
                    weft_portal_run(p, "test:release", nullptr, 0, nullptr));
        }
        if (k.cancel_ctx) {
          EXPECT_EQ(WEFT_OK, weft_ctx_cancel(ctx));
        }
        weft_payload res{};
        weft_err r = weft_ctx_result(ctx, &res);
        EXPECT_EQ(WEFT_OK, r) << Describe(weft_task_error());
        if (k.cancel_ctx) {
          // The ctxc is the (returned, not raised) outcome.
          EXPECT_EQ(0u, res.len);
          EXPECT_TRUE(Matches(weft_ctx_remote_error(ctx),
                              Ctxc(child_, root_)));
          EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
        } else {
          EXPECT_EQ("yo", PayloadStr(res));
          EXPECT_EQ(nullptr, weft_ctx_maybe_error(ctx));
        }
      }
      weft_err exit_rc = weft_ctx_exit(ctx, body_rc);
      at_exit = exit_rc == WEFT_OK ? nullptr : weft_task_error();
      if (exit_rc != WEFT_OK) {
        EXPECT_EQ(weft_ctx_remote_error(ctx), at_exit);
      }
      if (k.expect == Outcome::kParentOverranFirst) {
        // Our receive raised the relayed error; the exit then cancelled
        // the (already finished) child: cancel_called, not acked.
        EXPECT_EQ(WEFT_EREMOTE, body_rc);
        EXPECT_TRUE(weft_ctx_cancel_called(ctx));
        EXPECT_FALSE(weft_ctx_cancel_acked(ctx));
        // At most one echo fitted in our 1-slot queue (none is read if the
        // child's error is recorded first: it is raised before items).
        EXPECT_LE(parent_received, 1);
      }
      if (k.expect == Outcome::kChildOverranFirst) {
        // The StreamOverrun cancelled our scope while we were blocked in
        // the release call (the child sent it before the release reply);
        // the exit raises it (not absorbed: it is about our own sends).
        EXPECT_EQ(WEFT_ECANCELED, body_rc);
        EXPECT_FALSE(weft_ctx_cancel_called(ctx));
      }
      weft_ctx_free(ctx);
      if (k.expect == Outcome::kChildOverranFirst) {
        // The receiver did not fail: it kept one item (capacity 1) and
        // dropped the rest; our exit closed our stream (Stop), so it then
        // met the end of the stream and its echo of [0] hit the closed
        // stream. Wait for its function to end (polling with portal runs
        // only: a successful weft_sleep() would replace this task's error,
        // which the nursery exit below reports).
        EXPECT_EQ(WEFT_OK,
                  WaitChild(p, [](const ChildState &c) { return c.ended; },
                            &cf_child));
        EXPECT_TRUE(cf_child.ended);
        EXPECT_EQ(1, cf_child.first_batch_received);
        EXPECT_FALSE(cf_child.has_remote_error);
        EXPECT_EQ(0, cf_child.batches_done);
        EXPECT_EQ(WEFT_EEOC, cf_child.end_rc);
        EXPECT_EQ(at_exit, weft_task_error());
      }
      if (exit_rc == WEFT_OK) {
        EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
      }
      return exit_rc;
    });
  }, &escaped);

  switch (k.expect) {
    case Outcome::kSuccess: {
      EXPECT_EQ(WEFT_OK, rc) << Describe(escaped);
      EXPECT_EQ(nullptr, escaped);
      EXPECT_EQ(2, parent_batches);
      EXPECT_TRUE(acked);
      // The child echoed both batches whole and in order.
      EXPECT_EQ(2, cs_.batches_done);
      EXPECT_FALSE(cs_.batch_mismatch);
      EXPECT_FALSE(cs_.has_remote_error);
      if (k.cancel_ctx) {
        EXPECT_EQ(WEFT_ECANCELED, cs_.end_rc);
        EXPECT_TRUE(UidIs(&cs_.canceller, root_));
      } else {
        EXPECT_EQ(WEFT_OK, cs_.end_rc);
      }
      break;
    }
    case Outcome::kParentOverranFirst: {
      EXPECT_EQ(WEFT_EREMOTE, rc);
      EXPECT_EQ(at_exit, escaped);
      ErrSpec want;
      want.kind = WEFT_ERRKIND_REMOTE;
      want.boxed = "RemoteActorError";
      want.src_type = "StreamOverrun";
      want.src = &root_;
      want.sender = &child_;
      want.relay = {&root_, &child_};
      want.tb_has = "StreamOverrun";
      EXPECT_TRUE(Matches(escaped, want));
      EXPECT_EQ(0, parent_batches);
      // The child: one batch echoed, then its receive raised
      // RAE[StreamOverrun] (sender = itself) and it died of it.
      EXPECT_EQ(1, cs_.batches_done);
      EXPECT_EQ(WEFT_EREMOTE, cs_.end_rc);
      EXPECT_TRUE(cs_.has_remote_error);
      EXPECT_EQ(WEFT_ERRKIND_STREAM_OVERRUN, cs_.remote_kind);
      EXPECT_TRUE(UidIs(&cs_.remote_src, root_));
      EXPECT_TRUE(UidIs(&cs_.remote_sender, child_));
      break;
    }
    case Outcome::kChildOverranFirst: {
      EXPECT_EQ(WEFT_EREMOTE, rc);
      EXPECT_EQ(at_exit, escaped);
      ErrSpec want;
      want.kind = WEFT_ERRKIND_STREAM_OVERRUN;
      want.boxed = "StreamOverrun";
      want.src = &child_;
      want.sender = &root_;
      want.relay = {&child_};
      EXPECT_TRUE(Matches(escaped, want));
      EXPECT_EQ(0, parent_batches);
      // The child was never told of an error (checked above).
      EXPECT_EQ(0, cs_.batches_done);
      EXPECT_FALSE(cs_.has_remote_error);
      break;
    }
  }
  // The child opened its stream with a 1-slot buffer (tractor checks the
  // queue's capacity; weft has no accessor, the drops above show it).
  EXPECT_EQ(WEFT_OK, cs_.open_stream_rc);
  weft_error_release(escaped);
}

constexpr Side P = Side::kParent, C = Side::kChild, N = Side::kNone,
               B = Side::kBoth;
constexpr Outcome OK = Outcome::kSuccess, PF = Outcome::kParentOverranFirst,
                  CF = Outcome::kChildOverranFirst;

INSTANTIATE_TEST_SUITE_P(
    ScenariosA, MaybeAllowOverruns,
    ::testing::Values(
        // cancel_ctx = True
        OverrunCase{"S031_Cancel_SlowParent_AllowParent", true, P, P, false,
                    OK},
        OverrunCase{"S032_Cancel_SlowParent_AllowChild", true, P, C, false,
                    PF},
        OverrunCase{"S033_Cancel_SlowParent_AllowNone_ParentOverrunsFirst",
                    true, P, N, false, PF},
        OverrunCase{"S033_Cancel_SlowParent_AllowNone_ChildOverrunsFirst",
                    true, P, N, true, CF},
        OverrunCase{"S034_Cancel_SlowParent_AllowBoth", true, P, B, false,
                    OK},
        OverrunCase{"S035_Cancel_SlowChild_AllowParent", true, C, P, false,
                    CF},
        OverrunCase{"S036_Cancel_SlowChild_AllowChild", true, C, C, false,
                    OK},
        OverrunCase{"S037_Cancel_SlowChild_AllowNone_ChildOverrunsFirst",
                    true, C, N, false, CF},
        OverrunCase{"S038_Cancel_SlowChild_AllowBoth", true, C, B, false, OK},
        // cancel_ctx = False
        OverrunCase{"S039_NoCancel_SlowParent_AllowParent", false, P, P,
                    false, OK},
        OverrunCase{"S040_NoCancel_SlowParent_AllowChild", false, P, C, false,
                    PF},
        OverrunCase{"S041_NoCancel_SlowParent_AllowNone_ParentOverrunsFirst",
                    false, P, N, false, PF},
        OverrunCase{"S041_NoCancel_SlowParent_AllowNone_ChildOverrunsFirst",
                    false, P, N, true, CF},
        OverrunCase{"S042_NoCancel_SlowParent_AllowBoth", false, P, B, false,
                    OK},
        OverrunCase{"S043_NoCancel_SlowChild_AllowParent", false, C, P, false,
                    CF},
        OverrunCase{"S044_NoCancel_SlowChild_AllowChild", false, C, C, false,
                    OK},
        OverrunCase{"S045_NoCancel_SlowChild_AllowNone_ChildOverrunsFirst",
                    false, C, N, false, CF},
        OverrunCase{"S046_NoCancel_SlowChild_AllowBoth", false, C, B, false,
                    OK}),
    [](const ::testing::TestParamInfo<OverrunCase> &i) {
      return std::string(i.param.name);
    });

// ===========================================================================
// S047 test_ctx_with_self_actor
// ===========================================================================

TEST_F(ScenariosA, S047_ContextWithSelfIsInvalidAndSendsNothing) {
  weft_error *escaped = nullptr;
  int64_t msgs_before = -1, msgs_after = -2;
  int64_t ctxs_before = -1, ctxs_after = -2;
  weft_runtime_stats st{};
  weft_err rc = RunTask(
      rt_, "root",
      [&]() -> weft_err {
        root_ = *weft_current_uid();
        // find_actor('root') inside root: a portal to ourselves.
        weft_portal *self = nullptr;
        weft_err prc = weft_portal_open(weft_current_runtime(),
                                        weft_current_actor(), &self);
        EXPECT_EQ(WEFT_OK, prc);
        if (prc != WEFT_OK) return prc;
        weft_runtime_stats_get(weft_current_runtime(), &st);
        msgs_before = weft_msg_outstanding();
        ctxs_before = weft_live_contexts();
        weft_ctx *ctx = Sentinel();
        weft_payload first{};
        weft_err orc = weft_open_context(self, "test:expect_cancelled",
                                         nullptr, 0, nullptr, &ctx, &first);
        // Nothing was sent: no message was made, no context registered.
        msgs_after = weft_msg_outstanding();
        ctxs_after = weft_live_contexts();
        EXPECT_EQ(WEFT_ESTATE, orc);
        EXPECT_EQ(nullptr, ctx);
        EXPECT_EQ(0u, first.len);
        if (orc == WEFT_OK) weft_ctx_free(ctx);
        weft_portal_free(self);
        return orc;  // escapes
      },
      &escaped);
  EXPECT_EQ(WEFT_ESTATE, rc);
  ErrSpec want;
  want.kind = WEFT_ERRKIND_RUNTIME;
  want.boxed = "RuntimeError";
  want.src = &root_;
  want.msg_has = "Invalid Operation";
  EXPECT_TRUE(Matches(escaped, want));
  EXPECT_EQ(msgs_before, msgs_after);
  EXPECT_EQ(ctxs_before, ctxs_after);
  EXPECT_EQ(1u, st.actors_live);  // root only: no child exists
  weft_error_release(escaped);
}

}  // namespace

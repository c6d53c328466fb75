// test/net/process_test.cc - actors in child processes (issue 5): spawn
// and reap, supervision across processes, no orphans when the parent dies,
// SIGINT at the root. Every test ends with no process of the tree left
// (RuntimeTest checks CountTreeProcesses() == 0 after each).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <atomic>
#include <functional>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "weft/testing/gtest.h"
#include "weft/weft.h"

namespace {

using weft::testing::CountTreeProcesses;
using weft::testing::Describe;
using weft::testing::IsBoxedError;
using weft::testing::IsContextCancelled;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;

#define TRY(x)                                                 \
  do {                                                         \
    weft_err rc_ = (x);                                        \
    if (rc_ != WEFT_OK) {                                      \
      ADD_FAILURE() << #x << ": " << weft_errname(rc_) << " "  \
                    << Describe(weft_task_error());            \
      return rc_;                                              \
    }                                                          \
  } while (0)

// What children observe, in memory shared across fork().
struct Shared {
  std::atomic<int> pid_seen[4];
  char canceller[4][WEFT_NAME_MAX];
  std::atomic<int> cancelled;
};

Shared *NewShared() {
  void *p = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return new (p) Shared{};
}

weft_err Echo(weft_ctx *ctx, const weft_payload *args, void *) {
  return weft_ctx_return(ctx, args->data, args->len);
}

weft_err Pid(weft_ctx *ctx, const weft_payload *, void *) {
  int pid = getpid();
  return weft_ctx_return(ctx, &pid, sizeof(pid));
}

weft_err Fail(weft_ctx *, const weft_payload *, void *) {
  return weft_fail("ValueError", "failed in pid %d", static_cast<int>(getpid()));
}

// started, then sleeps until cancelled; records its canceller in slot
// args[0] of the shared block.
weft_err SleepForever(weft_ctx *ctx, const weft_payload *args, void *arg) {
  auto *sh = static_cast<Shared *>(arg);
  int slot = args->len ? args->data[0] : 0;
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc == WEFT_OK) rc = weft_sleep(UINT64_C(3600) * 1000000000u);
  const weft_uid *c = weft_ctx_canceller(ctx);
  if (sh && c) {
    std::snprintf(sh->canceller[slot], WEFT_NAME_MAX, "%s", c->name);
    sh->cancelled.fetch_add(1);
  }
  return rc;
}

// Blocks its worker in a C call: it cannot be cancelled gracefully.
weft_err Stuck(weft_ctx *ctx, const weft_payload *, void *) {
  weft_ctx_started(ctx, nullptr, 0);
  sleep(60);
  return WEFT_OK;
}

// A child that spawns its own process child and serves through it.
weft_err SpawnGrandchild(weft_ctx *ctx, const weft_payload *, void *);
// A child that runs p:fail in a grandchild process: the error it ends
// with is the grandchild's, relayed.
weft_err RelayFromGrandchild(weft_ctx *ctx, const weft_payload *, void *);

// args: a weft_actor_ref; runs p:pid on that actor (wherever it lives)
// and returns the pid it answered.
weft_err PidVia(weft_ctx *ctx, const weft_payload *args, void *) {
  weft_actor_ref ref;
  if (args->len != sizeof(ref)) return weft_fail("ValueError", "bad ref");
  std::memcpy(&ref, args->data, sizeof(ref));
  weft_portal *p = nullptr;
  weft_err rc = weft_portal_open_ref(weft_current_runtime(), &ref, &p);
  if (rc != WEFT_OK) return rc;
  weft_payload r{};
  rc = weft_portal_run(p, "p:pid", nullptr, 0, &r);
  weft_portal_free(p);
  if (rc == WEFT_OK) rc = weft_ctx_return(ctx, r.data, r.len);
  weft_payload_free(&r);
  return rc;
}

std::vector<weft_function> Functions(Shared *sh) {
  return {{"p:echo", Echo, nullptr},
          {"p:pid", Pid, nullptr},
          {"p:fail", Fail, nullptr},
          {"p:sleep", SleepForever, sh},
          {"p:stuck", Stuck, nullptr},
          {"p:grandchild", SpawnGrandchild, sh},
          {"p:relay", RelayFromGrandchild, sh},
          {"p:pid_via", PidVia, nullptr}};
}

weft_err RelayFromGrandchild(weft_ctx *, const weft_payload *, void *arg) {
  auto fns = Functions(static_cast<Shared *>(arg));
  weft_nursery *n = nullptr;
  TRY(weft_nursery_open(&n));
  weft_actor_opts o{"grandchild", fns.data(), fns.size(), WEFT_SPAWN_PROCESS};
  weft_portal *p = nullptr;
  weft_err rc = weft_nursery_run_in_actor(n, &o, "p:fail", nullptr, 0, &p);
  rc = weft_nursery_exit(n, rc);
  if (p) weft_portal_free(p);
  return rc;  // the grandchild's error, which this function relays
}

weft_err SpawnGrandchild(weft_ctx *ctx, const weft_payload *, void *arg) {
  auto fns = Functions(static_cast<Shared *>(arg));
  weft_nursery *n = nullptr;
  TRY(weft_nursery_open(&n));
  weft_actor_opts o{"grandchild", fns.data(), fns.size(), WEFT_SPAWN_PROCESS};
  weft_portal *p = nullptr;
  weft_err rc = weft_nursery_start_actor(n, &o, &p);
  int gpid = 0;
  if (rc == WEFT_OK) {
    weft_payload r{};
    rc = weft_portal_run(p, "p:pid", nullptr, 0, &r);
    if (rc == WEFT_OK && r.len == sizeof(gpid))
      std::memcpy(&gpid, r.data, sizeof(gpid));
    weft_payload_free(&r);
  }
  if (rc == WEFT_OK) rc = weft_ctx_started(ctx, &gpid, sizeof(gpid));
  // Serve until cancelled: the grandchild goes with us.
  if (rc == WEFT_OK) rc = weft_sleep(UINT64_C(3600) * 1000000000u);
  return weft_nursery_exit(n, rc);
}

bool ProcessGone(int pid) {
  // Reaped (ESRCH) or a zombie waiting for its new parent (init) to reap.
  if (kill(pid, 0) != 0) return true;
  char path[64], st = 0;
  std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = std::fopen(path, "r");
  if (f == nullptr) return true;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char *rp = std::strrchr(buf, ')');
  if (rp && rp[1]) st = rp[2];
  return st == 'Z' || st == 'X';
}

bool WaitGone(int pid, std::chrono::milliseconds bound) {
  auto until = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < until) {
    if (ProcessGone(pid)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ProcessGone(pid);
}

class Process : public RuntimeTest {
 protected:
  void SetUp() override {
    sh_ = NewShared();
    fns_ = Functions(sh_);
    RuntimeTest::SetUp();
  }
  void TearDown() override {
    RuntimeTest::TearDown();
    munmap(sh_, sizeof(Shared));
  }
  weft_actor_opts Opts(const char *name) {
    return weft_actor_opts{name, fns_.data(), fns_.size(), WEFT_SPAWN_PROCESS};
  }
  Shared *sh_ = nullptr;
  std::vector<weft_function> fns_;
};

TEST_F(Process, ChildRunsInItsOwnProcessAndIsReapedAtNurseryExit) {
  int child_pid = 0;
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              TRY(weft_nursery_open(&n));
              weft_actor_opts o = Opts("worker");
              weft_portal *p = nullptr;
              weft_err rc = weft_nursery_start_actor(n, &o, &p);
              if (rc == WEFT_OK) {
                child_pid = weft_portal_pid(p);
                weft_payload r{};
                rc = weft_portal_run(p, "p:pid", nullptr, 0, &r);
                int seen = 0;
                if (rc == WEFT_OK && r.len == sizeof(seen))
                  std::memcpy(&seen, r.data, sizeof(seen));
                weft_payload_free(&r);
                EXPECT_EQ(child_pid, seen) << "the call ran in the child";
                EXPECT_NE(getpid(), seen);
                weft_uid uid{};
                EXPECT_EQ(WEFT_OK, weft_actor_uid(weft_current_runtime(),
                                                  weft_portal_aid(p), &uid));
                EXPECT_STREQ("worker", uid.name);
                // A daemon lives until cancelled (semantics.md §7).
                bool acked = false;
                EXPECT_EQ(WEFT_OK, weft_portal_cancel_actor(p, &acked));
                EXPECT_TRUE(acked);
              }
              return weft_nursery_exit(n, rc);
            }));
  EXPECT_GT(child_pid, 0);
  EXPECT_TRUE(ProcessGone(child_pid)) << "reaped by the nursery's exit";
}

TEST_F(Process, RunInActorResultAndErrorCrossTheProcessBoundary) {
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt_, "root",
      [&]() -> weft_err {
        weft_nursery *n = nullptr;
        TRY(weft_nursery_open(&n));
        weft_actor_opts ok = Opts("echoer"), bad = Opts("failer");
        weft_portal *p1 = nullptr, *p2 = nullptr;
        weft_err r = weft_nursery_run_in_actor(n, &ok, "p:echo", "hi", 2, &p1);
        if (r == WEFT_OK)
          r = weft_nursery_run_in_actor(n, &bad, "p:fail", nullptr, 0, &p2);
        r = weft_nursery_exit(n, r);
        if (p1) {
          weft_payload res{};
          EXPECT_EQ(WEFT_OK, weft_portal_result(p1, &res));
          EXPECT_EQ(std::string("hi"),
                    std::string(reinterpret_cast<const char *>(res.data),
                                res.len));
          weft_portal_free(p1);
        }
        if (p2) weft_portal_free(p2);
        return r;
      },
      &err);
  // One failing child: its error, bare, from the failer (one-cancels-all).
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_TRUE(IsBoxedError(err, "ValueError", "failer")) << Describe(err);
  weft_error_release(err);
}

TEST_F(Process, NurseryTeardownCancelsProcessChildrenNamingTheParent) {
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              TRY(weft_nursery_open(&n));
              std::vector<weft_ctx *> ctxs;
              weft_err rc = WEFT_OK;
              for (char i = 0; i < 2 && rc == WEFT_OK; i++) {
                std::string name = "sleeper-" + std::to_string(i);
                weft_actor_opts o = Opts(name.c_str());
                weft_portal *p = nullptr;
                rc = weft_nursery_start_actor(n, &o, &p);
                weft_ctx *c = nullptr;
                if (rc == WEFT_OK)
                  rc = weft_open_context(p, "p:sleep", &i, 1, nullptr, &c,
                                         nullptr);
                if (c) ctxs.push_back(c);
              }
              // Cancel the children while our contexts into them are open.
              if (rc == WEFT_OK) rc = weft_nursery_cancel(n);
              // Contexts exit in the reverse order of opening.
              for (auto it = ctxs.rbegin(); it != ctxs.rend(); ++it) {
                weft_ctx *c = *it;
                weft_err r = weft_ctx_result(c, nullptr);
                EXPECT_EQ(WEFT_EREMOTE, r);
                EXPECT_TRUE(IsContextCancelled(weft_ctx_remote_error(c), "root"))
                    << Describe(weft_ctx_remote_error(c));
                weft_ctx_exit(c, WEFT_OK);
                weft_ctx_free(c);
              }
              return weft_nursery_exit(n, rc);
            }));
  EXPECT_EQ(2, sh_->cancelled.load());
  EXPECT_STREQ("root", sh_->canceller[0]);
  EXPECT_STREQ("root", sh_->canceller[1]);
}

TEST_F(Process, ChildStuckInACallIsSigtermedThenKilled) {
  auto t0 = std::chrono::steady_clock::now();
  int pid = 0;
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              TRY(weft_nursery_open(&n));
              weft_actor_opts o = Opts("stuck");
              weft_portal *p = nullptr;
              weft_err rc = weft_nursery_start_actor(n, &o, &p);
              weft_ctx *c = nullptr;
              if (rc == WEFT_OK) {
                pid = weft_portal_pid(p);
                rc = weft_open_context(p, "p:stuck", nullptr, 0, nullptr, &c,
                                       nullptr);
              }
              if (rc == WEFT_OK) rc = weft_nursery_cancel(n);
              if (c) {
                weft_ctx_exit(c, WEFT_OK);
                weft_ctx_free(c);
              }
              return weft_nursery_exit(n, rc);
            }));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(ProcessGone(pid));
  // 3 s for the cancel's ack, then SIGTERM ends it (not the 60 s call).
  EXPECT_LT(took, std::chrono::seconds(6));
}

TEST_F(Process, NestedTreeIsTornDownWhole) {
  int gpid = 0, cpid = 0;
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              TRY(weft_nursery_open(&n));
              weft_actor_opts o = Opts("middle");
              weft_portal *p = nullptr;
              weft_err rc = weft_nursery_start_actor(n, &o, &p);
              weft_ctx *c = nullptr;
              weft_payload first{};
              if (rc == WEFT_OK) {
                cpid = weft_portal_pid(p);
                rc = weft_open_context(p, "p:grandchild", nullptr, 0, nullptr,
                                       &c, &first);
              }
              if (rc == WEFT_OK && first.len == sizeof(gpid))
                std::memcpy(&gpid, first.data, sizeof(gpid));
              EXPECT_TRUE(gpid > 0 && gpid != cpid && gpid != getpid());
              EXPECT_EQ(2, CountTreeProcesses());
              if (rc == WEFT_OK) rc = weft_nursery_cancel(n);
              if (c) {
                weft_ctx_exit(c, WEFT_OK);
                weft_ctx_free(c);
              }
              return weft_nursery_exit(n, rc);
            }));
  EXPECT_TRUE(ProcessGone(cpid));
  EXPECT_TRUE(WaitGone(gpid, std::chrono::seconds(2)));
}

TEST_F(Process, ErrorsKeepTheirSourceAndRelayPathAcrossTwoProcessHops) {
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt_, "root",
      [&]() -> weft_err {
        weft_nursery *n = nullptr;
        TRY(weft_nursery_open(&n));
        weft_actor_opts o = Opts("middle");
        weft_portal *p = nullptr;
        weft_err r = weft_nursery_run_in_actor(n, &o, "p:relay", nullptr, 0,
                                               &p);
        r = weft_nursery_exit(n, r);
        if (p) weft_portal_free(p);
        return r;
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  ASSERT_NE(nullptr, err);
  EXPECT_EQ(WEFT_ERRKIND_REMOTE, weft_error_kind(err)) << Describe(err);
  EXPECT_STREQ("ValueError", weft_error_src_type(err));
  const weft_uid *src = weft_error_src_uid(err);
  EXPECT_TRUE(src && std::strcmp(src->name, "grandchild") == 0)
      << Describe(err);
  // The source first, then each actor that relayed it.
  ASSERT_GE(weft_error_relay_len(err), 2u) << Describe(err);
  EXPECT_STREQ("grandchild", weft_error_relay_at(err, 0)->name);
  EXPECT_STREQ("middle", weft_error_relay_at(err, 1)->name);
  weft_error_release(err);
}

TEST_F(Process, ASiblingReachesAnotherThroughAnActorRef) {
  EXPECT_EQ(WEFT_OK, RunTask(rt_, "root", [&]() -> weft_err {
              weft_nursery *n = nullptr;
              TRY(weft_nursery_open(&n));
              weft_actor_opts oa = Opts("a"), ob = Opts("b");
              weft_portal *pa = nullptr, *pb = nullptr;
              weft_err rc = weft_nursery_start_actor(n, &oa, &pa);
              if (rc == WEFT_OK) rc = weft_nursery_start_actor(n, &ob, &pb);
              weft_actor_ref ref{};
              if (rc == WEFT_OK)
                rc = weft_actor_ref_of(weft_current_runtime(),
                                       weft_portal_aid(pa), &ref);
              EXPECT_EQ(WEFT_OK, rc);
              EXPECT_STREQ("a", ref.uid.name);
              if (rc == WEFT_OK) {
                // b, in its own process, calls a in another one.
                weft_payload r{};
                rc = weft_portal_run(pb, "p:pid_via", &ref, sizeof(ref), &r);
                EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
                int pid = 0;
                if (r.len == sizeof(pid)) std::memcpy(&pid, r.data, sizeof(pid));
                weft_payload_free(&r);
                EXPECT_EQ(weft_portal_pid(pa), pid);
              }
              // A reference to a local actor, opened locally.
              weft_actor_ref self{};
              EXPECT_EQ(WEFT_OK, weft_actor_ref_of(weft_current_runtime(),
                                                   weft_current_actor(),
                                                   &self));
              weft_portal *ps = nullptr;
              EXPECT_EQ(WEFT_OK,
                        weft_portal_open_ref(weft_current_runtime(), &self, &ps));
              if (ps) {
                EXPECT_EQ(weft_current_actor().id, weft_portal_aid(ps).id);
                weft_portal_free(ps);
              }
              if (rc == WEFT_OK) rc = weft_nursery_cancel(n);
              return weft_nursery_exit(n, rc);
            }));
}

// ---- a parent that dies, and SIGINT: each in a separate process P --------

// Forks P before any runtime exists here. P runs `body` and exits with its
// code; `up` is a pipe P may write to.
pid_t ForkParent(const std::function<int(int up)> &body, int *up_read) {
  int up[2];
  if (pipe(up) != 0) return -1;
  pid_t p = fork();
  if (p == 0) {
    close(up[0]);
    _exit(body(up[1]));
  }
  close(up[1]);
  *up_read = up[0];
  return p;
}

bool ReadAll(int fd, void *buf, size_t n, int timeout_ms) {
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds(timeout_ms);
  size_t got = 0;
  while (got < n && std::chrono::steady_clock::now() < until) {
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, 50) != 1) continue;
    ssize_t r = read(fd, static_cast<char *>(buf) + got, n - got);
    if (r <= 0) return false;
    got += static_cast<size_t>(r);
  }
  return got == n;
}

// P: a root whose nursery holds two sleeping process children with
// contexts open into them; it reports the children's pids, then blocks.
int ParentWithSleepingChildren(int up, Shared *sh, bool handle_sigint,
                               const char *stuck_fn) {
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.workers = 2;
  weft_runtime *rt = nullptr;
  if (weft_runtime_open(&cfg, &rt) != WEFT_OK) return 10;
  if (handle_sigint && weft_runtime_handle_sigint(rt) != WEFT_OK) return 11;
  auto fns = Functions(sh);
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt, "root",
      [&]() -> weft_err {
        weft_nursery *n = nullptr;
        weft_err r = weft_nursery_open(&n);
        if (r != WEFT_OK) return r;
        std::vector<weft_ctx *> ctxs;
        int pids[2] = {0, 0};
        for (char i = 0; i < 2 && r == WEFT_OK; i++) {
          std::string name = "kid-" + std::to_string(i);
          weft_actor_opts o{name.c_str(), fns.data(), fns.size(),
                            WEFT_SPAWN_PROCESS};
          weft_portal *p = nullptr;
          r = weft_nursery_start_actor(n, &o, &p);
          weft_ctx *c = nullptr;
          if (r == WEFT_OK) {
            pids[static_cast<int>(i)] = weft_portal_pid(p);
            r = weft_open_context(p, stuck_fn, &i, 1, nullptr, &c, nullptr);
          }
          if (c) ctxs.push_back(c);
        }
        if (r == WEFT_OK && write(up, pids, sizeof(pids)) != sizeof(pids))
          r = WEFT_ECLOSED;
        // Block until interrupted (or forever, for the parent-death case).
        if (r == WEFT_OK && !ctxs.empty()) r = weft_ctx_result(ctxs[0], nullptr);
        for (auto it = ctxs.rbegin(); it != ctxs.rend(); ++it) {
          weft_ctx_exit(*it, r);
          weft_ctx_free(*it);
        }
        return weft_nursery_exit(n, r);
      },
      &err);
  char line[256];
  std::snprintf(line, sizeof(line), "root: %s: %s\n", weft_errname(rc),
                err ? weft_error_message(err) : "ok");
  ssize_t w = write(up, line, std::strlen(line));
  (void)w;
  weft_error_release(err);
  weft_runtime_close(rt, nullptr);
  return rc == WEFT_EINTERRUPT ? 2 : rc == WEFT_OK ? 0 : 3;
}

TEST(ProcessOrphans, ChildWhoseParentIsKilledExitsWithinTwoSeconds) {
  Shared *sh = NewShared();
  int up = -1;
  pid_t parent = ForkParent(
      [&](int w) { return ParentWithSleepingChildren(w, sh, false, "p:sleep"); },
      &up);
  ASSERT_GT(parent, 0);
  int pids[2] = {0, 0};
  ASSERT_TRUE(ReadAll(up, pids, sizeof(pids), 10000));
  EXPECT_FALSE(ProcessGone(pids[0]));
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  EXPECT_TRUE(WaitGone(pids[0], std::chrono::seconds(2)));
  EXPECT_TRUE(WaitGone(pids[1], std::chrono::seconds(2)));
  close(up);
  munmap(sh, sizeof(Shared));
}

TEST(ProcessSigint, FirstSigintCancelsTheTreeNamingTheRootAndExitsNonZero) {
  Shared *sh = NewShared();
  int up = -1;
  pid_t parent = ForkParent(
      [&](int w) { return ParentWithSleepingChildren(w, sh, true, "p:sleep"); },
      &up);
  ASSERT_GT(parent, 0);
  int pids[2] = {0, 0};
  ASSERT_TRUE(ReadAll(up, pids, sizeof(pids), 10000));
  kill(parent, SIGINT);
  int st = 0;
  auto t0 = std::chrono::steady_clock::now();
  waitpid(parent, &st, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(2, WEXITSTATUS(st)) << "the root's entry call reports EINTERRUPT";
  char line[256] = {};
  ssize_t n = read(up, line, sizeof(line) - 1);
  EXPECT_GT(n, 0);
  EXPECT_NE(nullptr, std::strstr(line, "EINTERRUPT")) << line;
  EXPECT_EQ(2, sh->cancelled.load());
  EXPECT_STREQ("root", sh->canceller[0]) << "canceller = root";
  EXPECT_STREQ("root", sh->canceller[1]);
  EXPECT_TRUE(ProcessGone(pids[0]));
  EXPECT_TRUE(ProcessGone(pids[1]));
  close(up);
  munmap(sh, sizeof(Shared));
}

TEST(ProcessSigint, SecondSigintKillsTheTreeAtOnce) {
  Shared *sh = NewShared();
  int up = -1;
  pid_t parent = ForkParent(
      [&](int w) { return ParentWithSleepingChildren(w, sh, true, "p:stuck"); },
      &up);
  ASSERT_GT(parent, 0);
  int pids[2] = {0, 0};
  ASSERT_TRUE(ReadAll(up, pids, sizeof(pids), 10000));
  kill(parent, SIGINT);  // the children cannot be cancelled gracefully
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto t0 = std::chrono::steady_clock::now();
  kill(parent, SIGINT);
  int st = 0;
  waitpid(parent, &st, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(130, WEXITSTATUS(st));
  EXPECT_TRUE(WaitGone(pids[0], std::chrono::seconds(1)));
  EXPECT_TRUE(WaitGone(pids[1], std::chrono::seconds(1)));
  close(up);
  munmap(sh, sizeof(Shared));
}

}  // namespace

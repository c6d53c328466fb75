/* weft/testing/gtest.h - GoogleTest helpers for programs that use weft
 * (what tractor's _testing package gives its users).
 *
 *   weft::testing::RuntimeTest  a fixture: opens a runtime in SetUp; in
 *       TearDown closes it and fails the test if anything was left behind:
 *       an actor still alive, a task or context not ended, a message or an
 *       error record not freed.
 *   RunTask(rt, name, body)     runs a C++ callable as a weft task (in a new
 *       actor) from the test's thread and returns its code.
 *   IsContextCancelled(err, canceller_name)
 *   IsBoxedError(err, boxed_type, src_name)
 *   IsAbsorbedSelfCancel(ctx)   assertions for the common outcomes; use
 *       with EXPECT_TRUE / ASSERT_TRUE.
 *   CountTreeProcesses()        child processes of the actor tree still
 *       alive (RuntimeTest checks it is 0 after every test).
 *
 * Header-only; include it from C++ test files. Thread: the test's thread,
 * except the assertions, which work anywhere (inside tasks too). */
#ifndef WEFT_TESTING_GTEST_H
#define WEFT_TESTING_GTEST_H

#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <functional>
#include <mutex>
#include <string>

#include "weft/weft.h"

namespace weft {
namespace testing {

/* A one-shot signal a handler raises and the test waits for, with a
 * bounded wait so that a lost signal fails instead of hanging. */
class Latch {
 public:
  explicit Latch(int count = 1) : count_(count) {}
  void CountDown() {
    std::lock_guard<std::mutex> g(mu_);
    if (count_ > 0 && --count_ == 0) cv_.notify_all();
  }
  bool WaitFor(std::chrono::milliseconds d = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> g(mu_);
    return cv_.wait_for(g, d, [this] { return count_ == 0; });
  }
  int Count() {
    std::lock_guard<std::mutex> g(mu_);
    return count_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

inline std::string UidName(const weft_uid *uid) {
  return uid ? std::string(uid->name) : std::string("(none)");
}

inline std::string Describe(const weft_error *e) {
  if (e == nullptr) return "(no error)";
  char buf[512];
  return weft_error_format(e, buf, sizeof(buf));
}

/* A ContextCancelled whose canceller is the actor named `canceller`. */
inline ::testing::AssertionResult IsContextCancelled(const weft_error *e,
                                                     const char *canceller) {
  if (e == nullptr) return ::testing::AssertionFailure() << "no error";
  if (weft_error_kind(e) != WEFT_ERRKIND_CONTEXT_CANCELLED)
    return ::testing::AssertionFailure()
           << "not a ContextCancelled: " << Describe(e);
  const weft_uid *c = weft_error_canceller(e);
  if (canceller != nullptr && (c == nullptr || std::strcmp(c->name, canceller)))
    return ::testing::AssertionFailure()
           << "canceller is " << UidName(c) << ", expected " << canceller;
  return ::testing::AssertionSuccess();
}

/* A boxed error whose boxed type is `boxed_type` and whose source is the
 * actor named `src` (either may be NULL: not checked). */
inline ::testing::AssertionResult IsBoxedError(const weft_error *e,
                                               const char *boxed_type,
                                               const char *src) {
  if (e == nullptr) return ::testing::AssertionFailure() << "no error";
  if (boxed_type && std::strcmp(weft_error_boxed_type(e), boxed_type))
    return ::testing::AssertionFailure()
           << "boxed type is " << weft_error_boxed_type(e) << ", expected "
           << boxed_type << " (" << Describe(e) << ")";
  const weft_uid *s = weft_error_src_uid(e);
  if (src && (s == nullptr || std::strcmp(s->name, src)))
    return ::testing::AssertionFailure()
           << "source is " << UidName(s) << ", expected " << src;
  return ::testing::AssertionSuccess();
}

/* Our own cancel of `ctx` was acknowledged and absorbed (semantics.md §9.3):
 * cancel_called, cancel_acked, and the remote error a ContextCancelled
 * naming us. */
inline ::testing::AssertionResult IsAbsorbedSelfCancel(const weft_ctx *ctx) {
  if (!weft_ctx_cancel_called(ctx))
    return ::testing::AssertionFailure() << "cancel was not called";
  if (!weft_ctx_cancel_acked(ctx))
    return ::testing::AssertionFailure()
           << "cancel not acked; remote error: "
           << Describe(weft_ctx_remote_error(ctx));
  return ::testing::AssertionSuccess();
}

/* Live processes of this process's actor tree: descendants of this
 * process whose name is "weft:..." (the title runtime/spawn.c gives a child
 * process), zombies excluded. After a test this must be 0. */
inline int CountTreeProcesses() {
  std::map<int, std::pair<int, std::string>> procs;  // pid -> (ppid, comm)
  std::map<int, char> state;
  DIR *d = opendir("/proc");
  if (d == nullptr) return 0;
  while (struct dirent *e = readdir(d)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    char path[64], buf[512];
    std::snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = std::fopen(path, "r");
    if (f == nullptr) continue;
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char *lp = std::strchr(buf, '('), *rp = std::strrchr(buf, ')');
    if (lp == nullptr || rp == nullptr || rp[1] == 0) continue;
    char st = 0;
    int ppid = 0;
    if (std::sscanf(rp + 2, "%c %d", &st, &ppid) != 2) continue;
    procs[pid] = {ppid, std::string(lp + 1, rp)};
    state[pid] = st;
  }
  closedir(d);
  std::set<int> tree = {static_cast<int>(getpid())};
  for (bool grew = true; grew;) {
    grew = false;
    for (auto &p : procs)
      if (!tree.count(p.first) && tree.count(p.second.first)) {
        tree.insert(p.first);
        grew = true;
      }
  }
  int live = 0;
  for (int pid : tree)
    if (pid != getpid() && procs[pid].second.rfind("weft:", 0) == 0 &&
        state[pid] != 'Z')
      live++;
  return live;
}

namespace detail {
inline weft_err CallBody(void *arg) {
  return (*static_cast<std::function<weft_err()> *>(arg))();
}
}  // namespace detail

/* Runs `body` as a task of a new actor named `name`; returns its code.
 * When `err` is given it receives the task's error (caller releases). */
inline weft_err RunTask(weft_runtime *rt, const char *name,
                        std::function<weft_err()> body,
                        weft_error **err = nullptr) {
  weft_error *e = nullptr;
  weft_err rc = weft_task_run(rt, name, detail::CallBody, &body, &e);
  if (err)
    *err = e;
  else
    weft_error_release(e);
  return rc;
}

class RuntimeTest : public ::testing::Test {
 protected:
  /* Override to change the configuration before the runtime opens. */
  virtual void Configure(weft_config *cfg) { (void)cfg; }

  void SetUp() override {
    msgs_before_ = weft_msg_outstanding();
    tasks_before_ = weft_live_tasks();
    ctxs_before_ = weft_live_contexts();
    errors_before_ = weft_live_errors();
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = 2;
    Configure(&cfg);
    ASSERT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt_));
  }

  void TearDown() override {
    if (rt_ != nullptr) {
      weft_close_report rep{};
      ASSERT_EQ(WEFT_OK, weft_runtime_close(rt_, &rep));
      rt_ = nullptr;
      EXPECT_EQ(0u, rep.actors_stopped)
          << "the test left actors alive (they were stopped at close)";
    }
    EXPECT_EQ(tasks_before_, weft_live_tasks()) << "tasks left behind";
    EXPECT_EQ(ctxs_before_, weft_live_contexts()) << "contexts left behind";
    EXPECT_EQ(msgs_before_, weft_msg_outstanding())
        << "messages were allocated and never freed";
    EXPECT_EQ(errors_before_, weft_live_errors())
        << "error records were never released";
    EXPECT_EQ(0, CountTreeProcesses())
        << "child processes of the actor tree were left behind";
  }

  /* Closes the runtime now and returns the report (for tests of close
   * itself); TearDown then checks only for leaks. */
  weft_close_report CloseNow() {
    weft_close_report rep{};
    EXPECT_EQ(WEFT_OK, weft_runtime_close(rt_, &rep));
    rt_ = nullptr;
    return rep;
  }

  weft_runtime *rt_ = nullptr;
  int64_t msgs_before_ = 0, tasks_before_ = 0, ctxs_before_ = 0,
          errors_before_ = 0;
};

}  // namespace testing
}  // namespace weft

#endif /* WEFT_TESTING_GTEST_H */

// test/net/interop_test.cc - weft against an independent implementation of
// docs/protocol.md: the Python reference peer test/peers/weft_peer.py
// (README.md beside it), run as a subprocess with /usr/bin/python3.
//
//   A. weft serves, Python calls (WeftServes): this process's runtime
//      exposes the c:* functions of the README contract on its primary
//      actor, listens with a token, and `weft_peer.py client --check NAME`
//      checks it, one gtest per check.
//   B. Python serves, weft calls (PythonServes): `weft_peer.py serve`
//      exposes py:*, and a weft task reaches it through weft_net_connect
//      and checks every outcome with the weft API.
//
// Every wait is bounded: a client subprocess is killed when its deadline
// passes, and a watchdog kills the Python server (which ends every context
// over its connection with TransportClosed) if a weft call in a test
// outlives its bound. Every subprocess is reaped before its test ends.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "weft/testing/gtest.h"
#include "weft/weft.h"

extern char **environ;

#ifndef WEFT_TEST_PYTHON
#define WEFT_TEST_PYTHON "/usr/bin/python3"
#endif
#ifndef WEFT_TEST_PEER_PY
#error "WEFT_TEST_PEER_PY (the path of test/peers/weft_peer.py) is required"
#endif
#ifndef WEFT_TEST_PB2_DIR
#error "WEFT_TEST_PB2_DIR (where weft_pb2.py is generated) is required"
#endif

namespace {

using weft::testing::Describe;
using weft::testing::IsAbsorbedSelfCancel;
using weft::testing::IsBoxedError;
using weft::testing::IsContextCancelled;
using weft::testing::Latch;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;
using Clock = std::chrono::steady_clock;

#define TRY(x)                                                 \
  do {                                                         \
    weft_err rc_ = (x);                                        \
    if (rc_ != WEFT_OK) {                                      \
      ADD_FAILURE() << #x << ": " << weft_errname(rc_) << " "  \
                    << Describe(weft_task_error());            \
      return rc_;                                              \
    }                                                          \
  } while (0)

const uint64_t kSecond = UINT64_C(1000000000);

// In the served functions: a failing call ends the function with its
// error (reported to the caller by the runtime, not a test failure here).
#define RET_IF(x)               \
  do {                          \
    weft_err rc_ = (x);         \
    if (rc_ != WEFT_OK) return rc_; \
  } while (0)

// The peer's log level: -v by default (printed only on failure);
// WEFT_INTEROP_VERBOSE=2 gives -vv, one line per frame. With it set at
// all, a client's output is printed even when its check passed.
std::string PeerVerbosity() {
  const char *env = std::getenv("WEFT_INTEROP_VERBOSE");
  return env && std::atoi(env) >= 2 ? "-vv" : "-v";
}

std::string Pb2Dir() {
  const char *env = std::getenv("WEFT_PB2_DIR");
  return env && *env ? env : WEFT_TEST_PB2_DIR;
}

// ---- a subprocess with its output captured --------------------------------

class Subprocess {
 public:
  Subprocess() = default;
  Subprocess(const Subprocess &) = delete;
  Subprocess &operator=(const Subprocess &) = delete;
  ~Subprocess() { Kill(); }

  // Starts argv[0] (an absolute path). Its stdout goes to a pipe we read;
  // its stderr to the same pipe, or (stderr_to_file) to an unlinked
  // temporary file read back by StderrText(), so that a long-lived child
  // never blocks on a pipe nobody reads. With stdin_pipe, its stdin is a
  // pipe we keep open until CloseStdin(); else /dev/null.
  bool Start(const std::vector<std::string> &argv, bool stdin_pipe,
             bool stderr_to_file) {
    int out[2] = {-1, -1}, in[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) != 0) return false;
    if (stdin_pipe && pipe2(in, O_CLOEXEC) != 0) {
      close(out[0]);
      close(out[1]);
      return false;
    }
    if (stderr_to_file) {
      char path[] = "/tmp/weft_interop_stderr_XXXXXX";
      err_fd_ = mkostemp(path, O_CLOEXEC);
      if (err_fd_ >= 0) unlink(path);
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_pipe)
      posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    else
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_fd_ >= 0 ? err_fd_ : out[1],
                                     2);
    // Clean signal state: the runtime's threads may block or ignore some.
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::vector<char *> args;
    for (const std::string &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, args[0], &fa, &at, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(out[1]);
    if (stdin_pipe) close(in[0]);
    if (rc != 0) {
      close(out[0]);
      if (stdin_pipe) close(in[1]);
      output_ += "posix_spawn failed: " + std::string(strerror(rc));
      return false;
    }
    pid_ = pid;
    out_fd_ = out[0];
    in_fd_ = stdin_pipe ? in[1] : -1;
    return true;
  }

  pid_t pid() const { return pid_; }
  const std::string &output() const { return output_; }

  // Reads what is available until `deadline`; false at EOF or timeout.
  bool ReadSome(Clock::time_point deadline) {
    if (out_fd_ < 0) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p = {out_fd_, POLLIN, 0};
    int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n <= 0) return n < 0 && errno == EINTR;
    char buf[4096];
    ssize_t got = read(out_fd_, buf, sizeof(buf));
    if (got <= 0) {
      if (got < 0 && errno == EINTR) return true;
      close(out_fd_);
      out_fd_ = -1;
      return false;
    }
    output_.append(buf, static_cast<size_t>(got));
    return true;
  }

  // Waits for a complete output line starting with `prefix`; returns the
  // rest of that line, or false at EOF or `deadline`.
  bool WaitForLine(const std::string &prefix, Clock::time_point deadline,
                   std::string *rest) {
    for (;;) {
      size_t at = 0;
      while (at < output_.size()) {
        size_t nl = output_.find('\n', at);
        if (nl == std::string::npos) break;
        if (output_.compare(at, prefix.size(), prefix) == 0) {
          *rest = output_.substr(at + prefix.size(), nl - at - prefix.size());
          return true;
        }
        at = nl + 1;
      }
      if (!ReadSome(deadline)) {
        if (out_fd_ < 0 || Clock::now() >= deadline) return false;
      }
    }
  }

  void CloseStdin() {
    if (in_fd_ >= 0) close(in_fd_);
    in_fd_ = -1;
  }

  // Only sends the signal (no reaping): safe from another thread while
  // the owner waits.
  void Signal(int sig) {
    pid_t p = pid_;
    if (p > 0) kill(p, sig);
  }

  // Reads the output to EOF and waits for the exit, both until `deadline`;
  // past it the child is killed. Returns the exit status (128 + signal if
  // killed by one); *timed_out tells whether the deadline passed.
  int Finish(Clock::time_point deadline, bool *timed_out) {
    *timed_out = false;
    while (out_fd_ >= 0 && Clock::now() < deadline) ReadSome(deadline);
    int st = 0;
    for (;;) {
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) {
        pid_ = -1;
        return -1;
      }
      if (Clock::now() >= deadline) {
        *timed_out = true;
        kill(pid_, SIGKILL);
        while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      // The child closed its output and is exiting: a bounded poll.
      struct timespec ts = {0, 5 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
    pid_ = -1;
    if (out_fd_ >= 0) {
      // Whatever is left (a killed child's last words).
      while (ReadSome(Clock::now() + std::chrono::milliseconds(100))) {
      }
    }
    CloseStdin();
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  // SIGKILL and reap, if still running.
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      int st;
      while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    CloseStdin();
    if (out_fd_ >= 0) close(out_fd_);
    out_fd_ = -1;
  }

  std::string StderrText() {
    std::string s;
    if (err_fd_ < 0) return s;
    char buf[4096];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(err_fd_, buf, sizeof(buf), off)) > 0) {
      s.append(buf, static_cast<size_t>(n));
      off += n;
    }
    return s;
  }

  void CloseStderrFile() {
    if (err_fd_ >= 0) close(err_fd_);
    err_fd_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1, in_fd_ = -1, err_fd_ = -1;
  std::string output_;
};

bool HasLine(const std::string &out, const std::string &line) {
  size_t at = 0;
  while (at < out.size()) {
    size_t nl = out.find('\n', at);
    size_t end = nl == std::string::npos ? out.size() : nl;
    if (out.compare(at, end - at, line) == 0 && end - at == line.size())
      return true;
    if (nl == std::string::npos) break;
    at = nl + 1;
  }
  return false;
}

// Runs `on_timeout` once if it is not disarmed (destroyed) within `bound`.
class Watchdog {
 public:
  Watchdog(std::chrono::milliseconds bound, std::function<void()> on_timeout)
      : th_([this, bound, on_timeout] {
          std::unique_lock<std::mutex> g(mu_);
          if (!cv_.wait_for(g, bound, [this] { return done_; })) {
            fired_ = true;
            on_timeout();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
    }
    cv_.notify_all();
    th_.join();
  }
  bool fired() {
    std::lock_guard<std::mutex> g(mu_);
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, fired_ = false;
  std::thread th_;
};

std::string PayloadString(const weft_payload &p) {
  return std::string(reinterpret_cast<const char *>(p.data), p.len);
}

void PutI64(uint8_t *p, int64_t v) {
  uint64_t u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(u >> (8 * i));
}

int64_t GetI64(const uint8_t *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<int64_t>(u);
}

// ===========================================================================
// A. weft serves the c:* contract (test/peers/README.md), Python calls
// ===========================================================================

weft_err CEcho(weft_ctx *ctx, const weft_payload *args, void *) {
  return weft_ctx_return(ctx, args->data, args->len);
}

weft_err CAdd(weft_ctx *ctx, const weft_payload *args, void *) {
  if (args->len != 16)
    return weft_fail("ValueError",
                     "add wants 16 bytes (two int64 LE), got %zu", args->len);
  uint64_t a = static_cast<uint64_t>(GetI64(args->data));
  uint64_t b = static_cast<uint64_t>(GetI64(args->data + 8));
  uint8_t sum[8];
  PutI64(sum, static_cast<int64_t>(a + b));  // wrapping
  return weft_ctx_return(ctx, sum, sizeof(sum));
}

// started("ready"); echoes every item; at the caller's stop (which the
// runtime answers with our own stop) returns "done:<n>".
weft_err CStreamEcho(weft_ctx *ctx, const weft_payload *, void *) {
  RET_IF(weft_ctx_started(ctx, "ready", 5));
  weft_stream *s = nullptr;
  RET_IF(weft_ctx_open_stream(ctx, nullptr, &s));
  uint64_t n = 0;
  weft_err rc;
  for (;;) {
    weft_payload p{};
    rc = weft_stream_recv(s, &p);
    if (rc != WEFT_OK) break;
    rc = weft_stream_send(s, p.data, p.len);
    weft_payload_free(&p);
    if (rc != WEFT_OK) return rc;
    n++;
  }
  if (rc != WEFT_EEOC) return rc;
  weft_stream_close(s);
  std::string r = "done:" + std::to_string(n);
  return weft_ctx_return(ctx, r.data(), r.size());
}

// args int64 LE n; started(""); items 0..n-1 as int64 LE; stop; "sent".
weft_err CCountTo(weft_ctx *ctx, const weft_payload *args, void *) {
  if (args->len != 8)
    return weft_fail("ValueError", "count_to wants an int64 LE, got %zu bytes",
                     args->len);
  int64_t n = GetI64(args->data);
  RET_IF(weft_ctx_started(ctx, nullptr, 0));
  weft_stream *s = nullptr;
  RET_IF(weft_ctx_open_stream(ctx, nullptr, &s));
  for (int64_t i = 0; i < n; i++) {
    uint8_t item[8];
    PutI64(item, i);
    weft_err rc = weft_stream_send(s, item, sizeof(item));
    if (rc != WEFT_OK) return rc;
  }
  weft_stream_close(s);
  return weft_ctx_return(ctx, "sent", 4);
}

weft_err CFail(weft_ctx *, const weft_payload *, void *) {
  return weft_fail("ValueError", "boom from C");
}

// started(), then blocks until cancelled: the runtime's final is then a
// ContextCancelled naming the canceller.
weft_err CSleepForever(weft_ctx *ctx, const weft_payload *, void *) {
  RET_IF(weft_ctx_started(ctx, nullptr, 0));
  return weft_sleep(UINT64_C(3600) * kSecond);
}

// started(); 10,000 items without waiting; then keeps the context open
// by receiving until the caller's stop. A caller refusing the overrun
// makes a send or the receive fail with its report, which the runtime
// relays as our final.
weft_err CFlood(weft_ctx *ctx, const weft_payload *, void *) {
  RET_IF(weft_ctx_started(ctx, nullptr, 0));
  weft_stream *s = nullptr;
  RET_IF(weft_ctx_open_stream(ctx, nullptr, &s));
  for (int64_t i = 0; i < 10000; i++) {
    uint8_t item[8];
    PutI64(item, i);
    weft_err rc = weft_stream_send(s, item, sizeof(item));
    if (rc != WEFT_OK) return rc;
  }
  for (;;) {
    weft_payload p{};
    weft_err rc = weft_stream_recv(s, &p);
    if (rc == WEFT_EEOC) break;
    if (rc != WEFT_OK) return rc;
    weft_payload_free(&p);
  }
  return weft_ctx_return(ctx, "flooded", 7);
}

// started(); reads nothing for 2 s; then receives until the caller's stop
// and returns "consumed:<n>". A caller sending more than 64 items quickly
// overruns it (the runtime refuses them with a StreamOverrun final).
weft_err CSlowConsumer(weft_ctx *ctx, const weft_payload *, void *) {
  RET_IF(weft_ctx_started(ctx, nullptr, 0));
  weft_stream *s = nullptr;
  RET_IF(weft_ctx_open_stream(ctx, nullptr, &s));
  weft_err rc = weft_sleep(2 * kSecond);
  if (rc != WEFT_OK) return rc;
  uint64_t n = 0;
  for (;;) {
    weft_payload p{};
    rc = weft_stream_recv(s, &p);
    if (rc == WEFT_EEOC) break;
    if (rc != WEFT_OK) return rc;
    weft_payload_free(&p);
    n++;
  }
  std::string r = "consumed:" + std::to_string(n);
  return weft_ctx_return(ctx, r.data(), r.size());
}

const weft_function kCFunctions[] = {
    {"c:echo", CEcho, nullptr},
    {"c:add", CAdd, nullptr},
    {"c:stream_echo", CStreamEcho, nullptr},
    {"c:count_to", CCountTo, nullptr},
    {"c:fail", CFail, nullptr},
    {"c:sleep_forever", CSleepForever, nullptr},
    {"c:flood", CFlood, nullptr},
    {"c:slow_consumer", CSlowConsumer, nullptr},
};

const char kToken[] = "interop-token";
// A client subprocess gets this long; its own waits (--timeout) are
// shorter, so that a stuck check reports FAIL before we kill it.
constexpr auto kClientBound = std::chrono::seconds(9);
constexpr int kClientTimeoutS = 5;

class WeftServes : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    if (HasFatalFailure()) return;
    weft_net_opts no;
    weft_net_opts_init(&no);
    no.auth_token = reinterpret_cast<const uint8_t *>(kToken);
    no.auth_token_len = std::strlen(kToken);
    ASSERT_EQ(WEFT_OK, weft_net_configure(rt_, &no));
    weft_spawn_opts so{};
    so.name = "cserver";
    so.functions = kCFunctions;
    so.nfunctions = sizeof(kCFunctions) / sizeof(kCFunctions[0]);
    so.state = &server_exited_;
    so.on_exit = [](weft_aid, void *state, weft_exit_reason) {
      static_cast<Latch *>(state)->CountDown();
    };
    ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &so, &server_));
    ASSERT_EQ(WEFT_OK, weft_net_set_primary(rt_, server_));
    ASSERT_EQ(WEFT_OK, weft_net_listen(rt_, "127.0.0.1", 0, &port_));
    ASSERT_NE(0, port_);
  }

  void TearDown() override {
    // The server actor is ours to end before the runtime closes (the
    // fixture fails a test that leaves actors alive).
    if (rt_ != nullptr && server_.id != 0 && server_exited_.Count() > 0) {
      weft_stop(rt_, server_);
      EXPECT_TRUE(server_exited_.WaitFor(std::chrono::seconds(5)))
          << "the server actor did not exit";
    }
    RuntimeTest::TearDown();
  }

  void StartClient(Subprocess *client, const std::string &check) {
    std::vector<std::string> argv = {
        WEFT_TEST_PYTHON, WEFT_TEST_PEER_PY, "client", "--pb2-dir", Pb2Dir(),
        "--connect", "127.0.0.1:" + std::to_string(port_), "--token", kToken,
        "--timeout", std::to_string(kClientTimeoutS), "--check", check,
        PeerVerbosity()};
    ASSERT_TRUE(client->Start(argv, false, false)) << client->output();
  }

  void ExpectPassed(Subprocess *client, const std::string &check,
                    Clock::time_point deadline) {
    bool timed_out = false;
    int st = client->Finish(deadline, &timed_out);
    const std::string &out = client->output();
    EXPECT_FALSE(timed_out) << "the client was killed after its bound";
    EXPECT_EQ(0, st) << "the client's exit status";
    EXPECT_TRUE(HasLine(out, "PASS " + check)) << "no 'PASS " << check
                                               << "' line";
    if (HasFailure() || std::getenv("WEFT_INTEROP_VERBOSE"))
      std::fprintf(stderr, "---- client output (check %s) ----\n%s----\n",
                   check.c_str(), out.c_str());
  }

  void RunCheck(const std::string &check) {
    Subprocess client;
    StartClient(&client, check);
    if (HasFatalFailure()) return;
    ExpectPassed(&client, check, Clock::now() + kClientBound);
  }

  weft_aid server_{};
  Latch server_exited_{1};
  uint16_t port_ = 0;
};

class PythonClientCheck : public WeftServes,
                          public ::testing::WithParamInterface<const char *> {};

TEST_P(PythonClientCheck, Passes) { RunCheck(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    Checks, PythonClientCheck,
    ::testing::Values("ping", "echo", "add", "large", "stream", "count",
                      "error", "cancel", "overrun", "slow", "nosuch",
                      "badtoken", "badversion", "notweft"),
    [](const ::testing::TestParamInfo<const char *> &i) {
      return std::string(i.param);
    });

// cancel_actor (opt-in): the target actor is cancelled, acknowledges and
// exits, and then "the target closes its connections (bye)". Here the
// target is not a process of its own: when the primary actor exits we do
// what a weft child process does then (runtime/spawn.c run_child): let
// what the actor sent last reach the connection, and close the runtime,
// which says bye on every connection.
TEST_F(WeftServes, CancelActorCheckPasses) {
  Subprocess client;
  StartClient(&client, "cancel_actor");
  if (HasFatalFailure()) return;
  auto deadline = Clock::now() + kClientBound;
  bool exited = server_exited_.WaitFor(std::chrono::seconds(7));
  EXPECT_TRUE(exited) << "the primary actor did not exit after cancel_actor";
  if (exited) {
    weft_runtime_wait_idle(rt_, 200 * UINT64_C(1000000));
    weft_close_report rep = CloseNow();
    EXPECT_EQ(0u, rep.actors_stopped);
  }
  ExpectPassed(&client, "cancel_actor", deadline);
}

// ===========================================================================
// B. Python serves py:*, weft calls
// ===========================================================================

constexpr auto kTaskBound = std::chrono::seconds(5);

class PythonServes : public RuntimeTest {
 protected:
  void TearDown() override {
    // Closing the runtime says bye to the server; then its stdin EOF
    // makes it exit 0.
    RuntimeTest::TearDown();
    if (server_.pid() > 0) {
      server_.CloseStdin();
      bool timed_out = false;
      int st = server_.Finish(Clock::now() + std::chrono::seconds(3),
                              &timed_out);
      EXPECT_FALSE(timed_out) << "the Python server did not exit at EOF";
      if (!watchdog_fired_) {
        EXPECT_EQ(0, st) << "the Python server's status";
      }
    }
    if (HasFailure())
      std::fprintf(stderr, "---- Python server stdout ----\n%s\n"
                   "---- Python server stderr ----\n%s\n",
                   server_.output().c_str(), server_.StderrText().c_str());
    server_.CloseStderrFile();
  }

  // Starts `weft_peer.py serve` and reads its port.
  void StartServer(const std::string &token = "") {
    std::vector<std::string> argv = {
        WEFT_TEST_PYTHON, WEFT_TEST_PEER_PY, "serve", "--pb2-dir", Pb2Dir(),
        "--listen", "127.0.0.1:0", "--name", "pyserver", PeerVerbosity()};
    if (!token.empty()) {
      argv.push_back("--token");
      argv.push_back(token);
    }
    ASSERT_TRUE(server_.Start(argv, true, true)) << server_.output();
    std::string rest;
    ASSERT_TRUE(server_.WaitForLine("LISTENING ",
                                    Clock::now() + std::chrono::seconds(4),
                                    &rest))
        << "no LISTENING line; stdout: " << server_.output()
        << "\nstderr: " << server_.StderrText();
    int port = std::atoi(rest.c_str());
    ASSERT_GT(port, 0);
    ASSERT_LT(port, 65536);
    port_ = static_cast<uint16_t>(port);
  }

  // Runs body as the task of actor "client", bounded by a watchdog that
  // kills the server (every context over its connection then ends).
  weft_err RunClient(const std::function<weft_err()> &body,
                     weft_error **err = nullptr) {
    Watchdog wd(kTaskBound, [this] {
      ADD_FAILURE() << "the weft task outlived its bound: killing the "
                       "Python server";
      server_.Signal(SIGKILL);
    });
    weft_err rc = RunTask(rt_, "client", body, err);
    watchdog_fired_ = wd.fired();
    return rc;
  }

  // RunClient with a portal on the server's primary actor.
  weft_err WithServer(const std::function<weft_err(weft_portal *)> &body,
                      weft_error **err = nullptr) {
    return RunClient(
        [&]() -> weft_err {
          weft_portal *p = nullptr;
          TRY(weft_net_connect(rt_, "127.0.0.1", port_, 0, &p));
          weft_err rc = body(p);
          weft_portal_free(p);
          return rc;
        },
        err);
  }

  Subprocess server_;
  uint16_t port_ = 0;
  bool watchdog_fired_ = false;
};

TEST_F(PythonServes, PortalRunEchoAndAdd) {
  StartServer();
  if (HasFatalFailure()) return;
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              // The peer's uid, from its hello.
              weft_payload r{};
              const char msg[] = "hello weft \0\xff";
              TRY(weft_portal_run(p, "py:echo", msg, sizeof(msg) - 1, &r));
              EXPECT_EQ(std::string(msg, sizeof(msg) - 1), PayloadString(r));
              weft_payload_free(&r);
              TRY(weft_portal_run(p, "py:echo", nullptr, 0, &r));
              EXPECT_EQ(0u, r.len);
              weft_payload_free(&r);
              const int64_t cases[][2] = {{40, 2},
                                          {-7, 3},
                                          {INT64_C(1) << 40, -(INT64_C(1) << 41)},
                                          {INT64_MAX, 1}};
              for (const auto &c : cases) {
                uint8_t args[16];
                PutI64(args, c[0]);
                PutI64(args + 8, c[1]);
                TRY(weft_portal_run(p, "py:add", args, sizeof(args), &r));
                EXPECT_EQ(8u, r.len);
                if (r.len == 8) {
                  int64_t want = static_cast<int64_t>(
                      static_cast<uint64_t>(c[0]) + static_cast<uint64_t>(c[1]));
                  EXPECT_EQ(want, GetI64(r.data)) << c[0] << " + " << c[1];
                }
                weft_payload_free(&r);
              }
              return WEFT_OK;
            }));
}

TEST_F(PythonServes, ContextStreamEchoesBothWaysAndReturnsDone) {
  StartServer();
  if (HasFatalFailure()) return;
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              weft_ctx *ctx = nullptr;
              weft_payload first{};
              TRY(weft_open_context(p, "py:stream_echo", nullptr, 0, nullptr,
                                    &ctx, &first));
              EXPECT_EQ("ready", PayloadString(first));
              weft_stream *s = nullptr;
              weft_err rc = weft_ctx_open_stream(ctx, nullptr, &s);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              // At most 32 unanswered, so neither side's 64-item queue
              // overruns.
              for (int lo = 0; rc == WEFT_OK && lo < 100; lo += 32) {
                int hi = lo + 32 < 100 ? lo + 32 : 100;
                for (int i = lo; rc == WEFT_OK && i < hi; i++) {
                  std::string it = "item-" + std::to_string(i);
                  rc = weft_stream_send(s, it.data(), it.size());
                  EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
                }
                for (int i = lo; rc == WEFT_OK && i < hi; i++) {
                  weft_payload r{};
                  rc = weft_stream_recv(s, &r);
                  EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
                  if (rc == WEFT_OK) {
                    EXPECT_EQ("item-" + std::to_string(i), PayloadString(r));
                  }
                  weft_payload_free(&r);
                }
              }
              if (rc == WEFT_OK) {
                EXPECT_EQ(WEFT_OK, weft_stream_close(s));
                weft_payload res{};
                rc = weft_ctx_result(ctx, &res);
                EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
                EXPECT_EQ("done:100", PayloadString(res));
              }
              weft_err xrc = weft_ctx_exit(ctx, rc);
              weft_ctx_free(ctx);
              return rc != WEFT_OK ? rc : xrc;
            }));
}

TEST_F(PythonServes, ContextCountToStreamsItemsThenReturnsSent) {
  StartServer();
  if (HasFatalFailure()) return;
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              const int64_t n = 50;
              uint8_t args[8];
              PutI64(args, n);
              weft_ctx *ctx = nullptr;
              weft_payload first{};
              TRY(weft_open_context(p, "py:count_to", args, sizeof(args),
                                    nullptr, &ctx, &first));
              EXPECT_EQ(0u, first.len);
              weft_stream *s = nullptr;
              weft_err rc = weft_ctx_open_stream(ctx, nullptr, &s);
              int64_t want = 0;
              while (rc == WEFT_OK) {
                weft_payload r{};
                rc = weft_stream_recv(s, &r);
                if (rc != WEFT_OK) break;
                EXPECT_EQ(8u, r.len);
                if (r.len == 8) {
                  EXPECT_EQ(want, GetI64(r.data));
                }
                weft_payload_free(&r);
                want++;
              }
              EXPECT_EQ(WEFT_EEOC, rc) << Describe(weft_task_error());
              EXPECT_EQ(n, want);
              weft_payload res{};
              rc = weft_ctx_result(ctx, &res);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              EXPECT_EQ("sent", PayloadString(res));
              weft_err xrc = weft_ctx_exit(ctx, rc);
              weft_ctx_free(ctx);
              return rc != WEFT_OK ? rc : xrc;
            }));
}

TEST_F(PythonServes, FailIsAnAppErrorBoxedAsValueErrorFromPyserver) {
  StartServer();
  if (HasFatalFailure()) return;
  weft_error *err = nullptr;
  weft_err rc = WithServer(
      [](weft_portal *p) -> weft_err {
        weft_err rc = weft_portal_run(p, "py:fail", nullptr, 0, nullptr);
        const weft_error *e = weft_task_error();
        EXPECT_EQ(WEFT_EREMOTE, rc) << Describe(e);
        EXPECT_EQ(WEFT_ERRKIND_APP, weft_error_kind(e)) << Describe(e);
        EXPECT_TRUE(IsBoxedError(e, "ValueError", "pyserver"));
        EXPECT_STREQ("ValueError", weft_error_src_type(e));
        EXPECT_NE(nullptr, std::strstr(weft_error_message(e), "boom"))
            << Describe(e);
        return rc;
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_TRUE(IsBoxedError(err, "ValueError", "pyserver"));
  weft_error_release(err);
}

TEST_F(PythonServes, UnknownFunctionIsNoSuchFunction) {
  StartServer();
  if (HasFatalFailure()) return;
  weft_error *err = nullptr;
  weft_err rc = WithServer(
      [](weft_portal *p) -> weft_err {
        return weft_portal_run(p, "py:missing", nullptr, 0, nullptr);
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_EQ(WEFT_ERRKIND_NO_SUCH_FUNCTION, weft_error_kind(err))
      << Describe(err);
  EXPECT_TRUE(IsBoxedError(err, "NoSuchFunction", "pyserver"));
  weft_error_release(err);
}

TEST_F(PythonServes, CancelOfSleepForeverIsAbsorbed) {
  StartServer();
  if (HasFatalFailure()) return;
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              weft_ctx *ctx = nullptr;
              TRY(weft_open_context(p, "py:sleep_forever", nullptr, 0,
                                    nullptr, &ctx, nullptr));
              TRY(weft_ctx_cancel(ctx));
              weft_err rc = weft_ctx_result(ctx, nullptr);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
              const weft_error *e = weft_ctx_remote_error(ctx);
              EXPECT_TRUE(IsContextCancelled(e, "client"));
              EXPECT_TRUE(IsBoxedError(e, "ContextCancelled", "pyserver"));
              rc = weft_ctx_exit(ctx, WEFT_OK);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              weft_ctx_free(ctx);
              return rc;
            }));
}

// py:flood sends 10,000 items without waiting while we read none: our
// 64-item queue fills and, overruns not being allowed, our side refuses
// every further item with a StreamOverrun report to the callee (src = us,
// sender = pyserver). The Python callee dies of the first report and
// relays it as its final.
//
// What the weft API gives then (observed and asserted here):
//   - the remote error arriving cancels the context's scope, so a task
//     blocked elsewhere inside the open context (here weft_sleep) returns
//     WEFT_ECANCELED at once: that is how we wait without reading;
//   - weft_ctx_result() returns WEFT_EREMOTE (the relayed overrun is not
//     absorbed: we did not allow overruns and did not cancel);
//   - weft_ctx_remote_error() is that relayed record: kind REMOTE, boxed
//     "RemoteActorError", src_type "StreamOverrun", sender pyserver (the
//     actor whose sends overran us), src_uid client (we raised it), and
//     relay path [client, pyserver]; its message is our own report's
//     ("pyserver:... overran the receive buffer of 64 item(s) (the
//     receiver has no stream open)").
TEST_F(PythonServes, FloodUnreadIsRefusedAsStreamOverrunNamingPyserver) {
  StartServer();
  if (HasFatalFailure()) return;
  weft_error *err = nullptr;
  weft_err rc = WithServer(
      [](weft_portal *p) -> weft_err {
        weft_ctx *ctx = nullptr;
        TRY(weft_open_context(p, "py:flood", nullptr, 0, nullptr, &ctx,
                              nullptr));
        auto t0 = Clock::now();
        weft_err slept = weft_sleep(4 * kSecond);
        EXPECT_EQ(WEFT_ECANCELED, slept)
            << "the flood's final did not cancel the context's scope";
        EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
        weft_payload res{};
        weft_err rc = weft_ctx_result(ctx, &res);
        EXPECT_EQ(WEFT_EREMOTE, rc) << Describe(weft_task_error());
        const weft_error *e = weft_ctx_remote_error(ctx);
        EXPECT_NE(nullptr, e);
        if (e) {
          EXPECT_EQ(WEFT_ERRKIND_REMOTE, weft_error_kind(e)) << Describe(e);
          EXPECT_STREQ("RemoteActorError", weft_error_boxed_type(e));
          EXPECT_STREQ("StreamOverrun", weft_error_src_type(e));
          const weft_uid *sender = weft_error_sender(e);
          EXPECT_TRUE(sender && std::strcmp(sender->name, "pyserver") == 0)
              << "sender " << weft::testing::UidName(sender) << ": "
              << Describe(e);
          const weft_uid *src = weft_error_src_uid(e);
          EXPECT_TRUE(src && std::strcmp(src->name, "client") == 0)
              << "src " << weft::testing::UidName(src) << ": " << Describe(e);
          // Raised by us, relayed by the callee: [client, pyserver].
          EXPECT_EQ(2u, weft_error_relay_len(e)) << Describe(e);
          if (weft_error_relay_len(e) == 2) {
            EXPECT_STREQ("client", weft_error_relay_at(e, 0)->name);
            EXPECT_STREQ("pyserver", weft_error_relay_at(e, 1)->name);
          }
        }
        weft_err xrc = weft_ctx_exit(ctx, rc);
        EXPECT_EQ(rc, xrc);
        weft_ctx_free(ctx);
        return rc;
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_TRUE(err && weft_error_kind(err) == WEFT_ERRKIND_REMOTE)
      << Describe(err);
  weft_error_release(err);
}

TEST_F(PythonServes, WrongTokenIsRefusedWithEproto) {
  StartServer("py-secret");
  if (HasFatalFailure()) return;
  const char wrong[] = "not-the-secret";
  weft_net_opts no;
  weft_net_opts_init(&no);
  no.auth_token = reinterpret_cast<const uint8_t *>(wrong);
  no.auth_token_len = std::strlen(wrong);
  ASSERT_EQ(WEFT_OK, weft_net_configure(rt_, &no));
  weft_error *err = nullptr;
  weft_err rc = RunClient(
      [this]() -> weft_err {
        weft_portal *p = nullptr;
        weft_err rc = weft_net_connect(rt_, "127.0.0.1", port_, 0, &p);
        EXPECT_EQ(nullptr, p);
        if (p) weft_portal_free(p);
        return rc;
      },
      &err);
  EXPECT_EQ(WEFT_EPROTO, rc);
  // weft_net_connect's record: kind RUNTIME, boxed "AuthFailed", and a
  // message naming the address and carrying the peer's refusal.
  EXPECT_TRUE(err && weft_error_kind(err) == WEFT_ERRKIND_RUNTIME)
      << Describe(err);
  EXPECT_TRUE(IsBoxedError(err, "AuthFailed", nullptr));
  // ("connect to 127.0.0.1:PORT: authentication failed": the reason is
  // the peer's refusal message).
  std::string want = "connect to 127.0.0.1:" + std::to_string(port_) + ": ";
  std::string msg = err ? weft_error_message(err) : "";
  EXPECT_EQ(0u, msg.find(want)) << Describe(err);
  EXPECT_GT(msg.size(), want.size()) << "no reason given: " << Describe(err);
  weft_net_stats st;
  weft_net_stats_get(rt_, &st);
  EXPECT_EQ(1u, st.handshakes_refused);
  EXPECT_EQ(0u, st.connections_open);
  weft_error_release(err);
}

// The control for the test above: the right token is accepted.
TEST_F(PythonServes, RightTokenConnects) {
  StartServer("py-secret");
  if (HasFatalFailure()) return;
  const char right[] = "py-secret";
  weft_net_opts no;
  weft_net_opts_init(&no);
  no.auth_token = reinterpret_cast<const uint8_t *>(right);
  no.auth_token_len = std::strlen(right);
  ASSERT_EQ(WEFT_OK, weft_net_configure(rt_, &no));
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              weft_payload r{};
              TRY(weft_portal_run(p, "py:echo", "tok", 3, &r));
              EXPECT_EQ("tok", PayloadString(r));
              weft_payload_free(&r);
              return WEFT_OK;
            }));
}

}  // namespace

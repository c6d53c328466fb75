// test/net/peer_process.h - a weft runtime in a child process, for tests
// that need a real second process on the other end of a connection.
//
// PeerProcess::Start forks BEFORE the test opens its own runtime (so the
// child starts from a single-threaded copy), and the child runs `serve`:
// it opens a runtime, spawns the actor "server" exposing the given
// functions, makes it the primary actor, listens on 127.0.0.1:0, tells the
// parent the port through a pipe, and serves until the parent closes the
// pipe (Stop) or dies. Kill() cuts it at any chosen point.
#ifndef WEFT_TEST_NET_PEER_PROCESS_H
#define WEFT_TEST_NET_PEER_PROCESS_H

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "weft/weft.h"

namespace weft {
namespace testing {

struct PeerOptions {
  std::string name = "server";
  std::vector<weft_function> functions;
  weft_net_opts net{};
  unsigned workers = 2;
  // Runs in the child after the runtime opened and before it listens.
  std::function<void(weft_runtime *)> setup;
  // Runs in the child once it listens, before the parent is told.
  std::function<void(weft_runtime *, weft_aid server)> ready;
};

class PeerProcess {
 public:
  PeerProcess() = default;
  PeerProcess(const PeerProcess &) = delete;
  PeerProcess &operator=(const PeerProcess &) = delete;
  ~PeerProcess() { Kill(SIGKILL); }

  // Forks the child; returns once it listens. false on failure.
  bool Start(const PeerOptions &o) {
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0) return false;
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      // No child outlives its parent, even a test runner killed hard.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(3);
      close(up[0]);
      close(down[1]);
      _exit(ChildMain(o, up[1], down[0]));
    }
    close(up[1]);
    close(down[0]);
    to_child_ = down[1];
    uint16_t port = 0;
    struct pollfd p = {up[0], POLLIN, 0};
    bool ok = poll(&p, 1, 10000) == 1 &&
              read(up[0], &port, sizeof(port)) == sizeof(port) && port != 0;
    close(up[0]);
    port_ = port;
    if (!ok) Kill(SIGKILL);
    return ok;
  }

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  // Graceful: the child closes its runtime (bye on every connection) and
  // exits 0. Returns the exit status.
  int Stop() {
    if (pid_ <= 0) return -1;
    close(to_child_);
    to_child_ = -1;
    return Reap();
  }

  // Cuts the child at once (SIGKILL: no bye, no FIN handshake beyond the
  // kernel's).
  void Kill(int sig = SIGKILL) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    Reap();
  }

 private:
  int Reap() {
    int st = 0;
    if (to_child_ >= 0) close(to_child_);
    to_child_ = -1;
    waitpid(pid_, &st, 0);
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  static int ChildMain(const PeerOptions &o, int up, int down) {
    weft_config cfg;
    weft_config_init(&cfg);
    cfg.workers = o.workers;
    weft_runtime *rt = nullptr;
    if (weft_runtime_open(&cfg, &rt) != WEFT_OK) return 10;
    if (o.setup) o.setup(rt);
    weft_net_opts no = o.net;
    if (weft_net_configure(rt, &no) != WEFT_OK) return 11;
    weft_spawn_opts so{};
    so.name = o.name.c_str();
    so.functions = o.functions.data();
    so.nfunctions = o.functions.size();
    weft_aid server{};
    if (weft_spawn(rt, &so, &server) != WEFT_OK) return 12;
    if (weft_net_set_primary(rt, server) != WEFT_OK) return 13;
    uint16_t port = 0;
    if (weft_net_listen(rt, "127.0.0.1", 0, &port) != WEFT_OK) return 14;
    if (o.ready) o.ready(rt, server);
    if (write(up, &port, sizeof(port)) != sizeof(port)) return 15;
    close(up);
    char b;
    while (read(down, &b, 1) > 0) {
    }
    weft_runtime_close(rt, nullptr);
    return 0;
  }

  pid_t pid_ = -1;
  int to_child_ = -1;
  uint16_t port_ = 0;
};

}  // namespace testing
}  // namespace weft

#endif  // WEFT_TEST_NET_PEER_PROCESS_H

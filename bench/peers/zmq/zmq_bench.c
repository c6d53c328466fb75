/* ZeroMQ 4.3 anchors (Debian libzmq3-dev), public C API only.
 *
 * Copied from shared/bench-peers/zmq/zmq_bench.c; weft's copy adds the two
 * "-fork" modes (one command, two processes, a wildcard port: what
 * bench/run uses). The measured loops are the original's.
 *
 *   zmq_bench rtt-server ENDPOINT       PAIR, echo every message (forever;
 *                                       an empty message ends it)
 *   zmq_bench rtt ENDPOINT N            B6: PAIR, N round trips of 64 bytes
 *   zmq_bench stream-recv ENDPOINT N    B7 receiver: PULL, counts N messages
 *   zmq_bench stream-send ENDPOINT N    B7 sender: PUSH, N messages of 64 B
 *   zmq_bench rtt-fork N                B6: forks the PAIR echo server (it
 *                                       binds tcp://127.0.0.1:*, passes the
 *                                       endpoint back through a pipe), runs
 *                                       `rtt` against it, then ends it
 *   zmq_bench stream-fork N             B7: binds PULL on tcp://127.0.0.1:*,
 *                                       forks the PUSH sender, receives and
 *                                       prints (the parent is the receiver)
 *
 * In the -fork modes the fork happens before either process makes a ZeroMQ
 * context.
 *
 * ENDPOINT is e.g. tcp://127.0.0.1:7701. B7 time is taken at the receiver
 * from the first message to the N-th. The sender's zmq_ctx_term waits (the
 * default linger is infinite) until every queued message has been written.
 * One I/O thread per context (the default).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check(int rv, const char* what) {
  if (rv < 0) {
    fprintf(stderr, "%s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
  }
}

/* Binds s to ep and, if ep_fd >= 0, writes the bound endpoint (with the
 * port a wildcard picked) and a newline to ep_fd. */
static void bind_report(void* s, const char* ep, int ep_fd) {
  check(zmq_bind(s, ep), "zmq_bind");
  if (ep_fd < 0) return;
  char last[256];
  size_t len = sizeof last;
  check(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, last, &len), "ZMQ_LAST_ENDPOINT");
  len = strlen(last);
  last[len++] = '\n';
  if (write(ep_fd, last, len) != (ssize_t)len) {
    perror("write endpoint");
    exit(1);
  }
  close(ep_fd);
}

static void rtt_serve(const char* ep, int ep_fd) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_PAIR);
  bind_report(s, ep, ep_fd);
  char buf[256];
  for (;;) {
    int n = zmq_recv(s, buf, sizeof buf, 0);
    check(n, "zmq_recv");
    if (n == 0) break; /* the -fork client's "done" */
    check(zmq_send(s, buf, (size_t)n, 0), "zmq_send");
  }
  zmq_close(s);
  zmq_ctx_term(ctx);
}

static void rtt_server(const char* ep) { rtt_serve(ep, -1); }

static void rtt_loop(void* s, long n) {
  char buf[256];
  memset(buf, 'x', 64);
  for (long i = 0; i < n; i++) {
    check(zmq_send(s, buf, 64, 0), "zmq_send");
    int r = zmq_recv(s, buf, sizeof buf, 0);
    check(r, "zmq_recv");
    if (r != 64) exit(3);
  }
}

static void rtt_client(const char* ep, long n, int end_server) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_PAIR);
  check(zmq_connect(s, ep), "zmq_connect");
  rtt_loop(s, 1000); /* warm-up, also waits for the connection */
  double t0 = now();
  rtt_loop(s, n);
  double secs = now() - t0;
  printf("bench=tcp-rtt peer=zmq cfg=pair n=%ld secs=%.4f rate=%.0f "
         "unit=roundtrips/s us_per_rt=%.2f\n",
         n, secs, n / secs, 1e6 * secs / n);
  if (end_server) check(zmq_send(s, "", 0, 0), "zmq_send");
  zmq_close(s);
  zmq_ctx_term(ctx);
}

static void rtt(const char* ep, long n) { rtt_client(ep, n, 0); }

static void stream_recv_report(const char* ep, long n, int ep_fd) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_PULL);
  bind_report(s, ep, ep_fd);
  char buf[256];
  double t0 = 0;
  long ok = 0;
  for (long i = 0; i < n; i++) {
    int r = zmq_recv(s, buf, sizeof buf, 0);
    check(r, "zmq_recv");
    if (i == 0) t0 = now();
    ok += (r == 64);
  }
  double secs = now() - t0;
  printf("bench=tcp-stream peer=zmq cfg=pushpull n=%ld secs=%.4f rate=%.0f "
         "unit=msgs/s MBps=%.1f ok=%d\n",
         n, secs, n / secs, 64.0 * n / secs / 1e6, ok == n);
  zmq_close(s);
  zmq_ctx_term(ctx);
}

static void stream_send(const char* ep, long n) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_PUSH);
  check(zmq_connect(s, ep), "zmq_connect");
  char buf[64];
  memset(buf, 'x', sizeof buf);
  for (long i = 0; i < n; i++) check(zmq_send(s, buf, sizeof buf, 0), "zmq_send");
  zmq_close(s);
  zmq_ctx_term(ctx); /* blocks until everything is sent */
}

static void stream_recv(const char* ep, long n) { stream_recv_report(ep, n, -1); }

/* ---- the -fork modes ---- */

static pid_t fork_child(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    exit(1);
  }
  if (pid == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);
  return pid;
}

static int reap(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* Reads one line (the endpoint) from fd. */
static void read_endpoint(int fd, char* ep, size_t cap) {
  size_t have = 0;
  while (have + 1 < cap) {
    ssize_t r = read(fd, ep + have, 1);
    if (r <= 0) {
      fprintf(stderr, "no endpoint from the other process\n");
      exit(1);
    }
    if (ep[have] == '\n') break;
    have++;
  }
  ep[have] = '\0';
  close(fd);
}

static int rtt_fork(long n) {
  int p[2];
  char ep[256];
  if (pipe(p) < 0) return perror("pipe"), 1;
  pid_t pid = fork_child();
  if (pid == 0) {
    close(p[0]);
    rtt_serve("tcp://127.0.0.1:*", p[1]);
    _exit(0);
  }
  close(p[1]);
  read_endpoint(p[0], ep, sizeof ep);
  rtt_client(ep, n, 1);
  return reap(pid);
}

static int stream_fork(long n) {
  int p[2];
  char ep[256];
  if (pipe(p) < 0) return perror("pipe"), 1;
  pid_t pid = fork_child();
  if (pid == 0) {
    close(p[1]);
    read_endpoint(p[0], ep, sizeof ep);
    stream_send(ep, n);
    _exit(0);
  }
  close(p[0]);
  stream_recv_report("tcp://127.0.0.1:*", n, p[1]);
  return reap(pid);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: see zmq_bench.c\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char* m = argv[1];
  if (!strcmp(m, "rtt-fork")) return rtt_fork(atol(argv[2]));
  if (!strcmp(m, "stream-fork")) return stream_fork(atol(argv[2]));
  const char* ep = argv[2];
  long n = argc > 3 ? atol(argv[3]) : 0;
  if (!strcmp(m, "rtt-server")) rtt_server(ep);
  else if (!strcmp(m, "rtt")) rtt(ep, n);
  else if (!strcmp(m, "stream-recv")) stream_recv(ep, n);
  else if (!strcmp(m, "stream-send")) stream_send(ep, n);
  else {
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
  }
  return 0;
}

/* Raw TCP loopback baselines with plain blocking POSIX sockets.
 *
 * Copied from shared/bench-peers/raw/raw_tcp.c; weft's copy adds the two
 * "-fork" modes (one command, two processes, an ephemeral port: what
 * bench/run uses). The measured loops are the original's.
 *
 *   raw_tcp rtt-server PORT           echo 64-byte messages (forever)
 *   raw_tcp rtt PORT N                B6: N round trips of 64 bytes
 *   raw_tcp stream-recv PORT N        B7 receiver: counts N frames, prints
 *   raw_tcp stream-send PORT N BATCH  B7 sender: N frames, BATCH per write()
 *   raw_tcp rtt-fork N                B6: listens on 127.0.0.1:0, forks the
 *                                     echo server (serves that one
 *                                     connection), runs `rtt` against it
 *   raw_tcp stream-fork N BATCH       B7: listens on 127.0.0.1:0, forks the
 *                                     sender, receives and prints (the
 *                                     parent is the receiver); cfg=batchK
 *                                     unless RAW_CFG is set
 *   raw_tcp syscall N                 cost of one trivial syscall (getppid)
 *
 * B7 frame: 4-byte little-endian length (=64) followed by 64 payload bytes.
 * B7 time is taken at the receiver, from the first frame's arrival to the
 * N-th frame's arrival.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define FRAME (4 + MSG)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void set_opts(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int listen_on(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr*)&a, sizeof a) < 0) die("bind");
  if (listen(fd, 16) < 0) die("listen");
  return fd;
}

static int bound_port(int fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  if (getsockname(fd, (struct sockaddr*)&a, &len) < 0) die("getsockname");
  return ntohs(a.sin_port);
}

static int connect_to(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < 400; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) == 0) {
      set_opts(fd);
      return fd;
    }
    close(fd);
    usleep(25000);
  }
  die("connect");
  return -1;
}

static int read_full(int fd, char* p, size_t n) {
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const char* p, size_t n) {
  while (n) {
    ssize_t r = write(fd, p, n);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void rtt_server(int port) {
  int l = listen_on(port);
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0) continue;
    set_opts(c);
    char buf[MSG];
    while (read_full(c, buf, MSG) == 0 && write_full(c, buf, MSG) == 0) {
    }
    close(c);
  }
}

static void rtt_loop(int fd, long n) {
  char buf[MSG];
  memset(buf, 'x', MSG);
  for (long i = 0; i < n; i++)
    if (write_full(fd, buf, MSG) || read_full(fd, buf, MSG)) die("rtt io");
}

static void rtt_fd(int fd, long n) {
  rtt_loop(fd, 1000); /* warm-up */
  double t0 = now();
  rtt_loop(fd, n);
  double s = now() - t0;
  printf("bench=tcp-rtt peer=raw cfg=blocking n=%ld secs=%.4f rate=%.0f "
         "unit=roundtrips/s us_per_rt=%.2f\n",
         n, s, n / s, 1e6 * s / n);
  close(fd);
}

static void rtt(int port, long n) { rtt_fd(connect_to(port), n); }

static void stream_recv_fd(int c, long n, const char* cfg) {
  size_t cap = 256 * 1024;
  char* buf = malloc(cap);
  size_t have = 0;
  long count = 0;
  uint64_t check = 0;
  double t0 = 0;
  while (count < n) {
    ssize_t r = read(c, buf + have, cap - have);
    if (r <= 0) die("stream read");
    if (count == 0 && have == 0) t0 = now();
    have += (size_t)r;
    size_t off = 0;
    while (have - off >= 4) {
      uint32_t len;
      memcpy(&len, buf + off, 4);
      if (have - off < 4 + len) break;
      check += (unsigned char)buf[off + 4];
      off += 4 + len;
      count++;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
  }
  double s = now() - t0;
  printf("bench=tcp-stream peer=raw cfg=%s n=%ld secs=%.4f rate=%.0f "
         "unit=msgs/s MBps=%.1f ok=%d\n",
         cfg, n, s, n / s, 64.0 * n / s / 1e6, check == (uint64_t)'x' * n);
  free(buf);
  close(c);
}

static void stream_recv(int port, long n) {
  int l = listen_on(port);
  int c = accept(l, NULL, NULL);
  if (c < 0) die("accept");
  stream_recv_fd(c, n, getenv("RAW_CFG") ? getenv("RAW_CFG") : "recv");
}

static void stream_send_fd(int fd, long n, long batch) {
  char* buf = malloc((size_t)batch * FRAME);
  for (long i = 0; i < batch; i++) {
    uint32_t len = MSG;
    memcpy(buf + i * FRAME, &len, 4);
    memset(buf + i * FRAME + 4, 'x', MSG);
  }
  for (long sent = 0; sent < n;) {
    long k = n - sent < batch ? n - sent : batch;
    if (write_full(fd, buf, (size_t)k * FRAME)) die("stream write");
    sent += k;
  }
  /* wait for the receiver to close so the data is not cut short */
  char b;
  (void)read(fd, &b, 1);
  free(buf);
  close(fd);
}

static void stream_send(int port, long n, long batch) {
  stream_send_fd(connect_to(port), n, batch);
}

/* The child of a -fork mode: dies with its parent, exits without running
 * the parent's atexit handlers or flushing its copy of stdio. */
static pid_t fork_child(void) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) prctl(PR_SET_PDEATHSIG, SIGKILL);
  return pid;
}

static int reap(pid_t pid) {
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* B6 in one command: the child echoes on the one connection it accepts. */
static int rtt_fork(long n) {
  int l = listen_on(0);
  int port = bound_port(l);
  pid_t pid = fork_child();
  if (pid == 0) {
    int c = accept(l, NULL, NULL);
    if (c < 0) _exit(1);
    close(l);
    set_opts(c);
    char buf[MSG];
    while (read_full(c, buf, MSG) == 0 && write_full(c, buf, MSG) == 0) {
    }
    _exit(0);
  }
  close(l);
  rtt_fd(connect_to(port), n); /* closing it ends the child */
  return reap(pid);
}

/* B7 in one command: the child sends, this process receives and prints. */
static int stream_fork(long n, long batch) {
  int l = listen_on(0);
  int port = bound_port(l);
  pid_t pid = fork_child();
  if (pid == 0) {
    close(l);
    stream_send_fd(connect_to(port), n, batch);
    _exit(0);
  }
  int c = accept(l, NULL, NULL);
  if (c < 0) die("accept");
  close(l);
  char cfg[32];
  snprintf(cfg, sizeof cfg, "batch%ld", batch);
  stream_recv_fd(c, n, getenv("RAW_CFG") ? getenv("RAW_CFG") : cfg);
  return reap(pid);
}

static void syscall_cost(long n) {
  double t0 = now();
  for (long i = 0; i < n; i++) syscall(SYS_getppid);
  double s = now() - t0;
  printf("bench=syscall peer=raw cfg=getppid n=%ld secs=%.4f rate=%.0f "
         "unit=syscalls/s ns_per_call=%.1f\n",
         n, s, n / s, 1e9 * s / n);
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: see raw_tcp.c\n");
    return 2;
  }
  const char* m = argv[1];
  long a2 = atol(argv[2]);
  long a3 = argc > 3 ? atol(argv[3]) : 0;
  long a4 = argc > 4 ? atol(argv[4]) : 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(m, "rtt-server")) rtt_server((int)a2);
  else if (!strcmp(m, "rtt")) rtt((int)a2, a3);
  else if (!strcmp(m, "stream-recv")) stream_recv((int)a2, a3);
  else if (!strcmp(m, "stream-send")) stream_send((int)a2, a3, a4 > 0 ? a4 : 1);
  else if (!strcmp(m, "rtt-fork")) return rtt_fork(a2);
  else if (!strcmp(m, "stream-fork")) return stream_fork(a2, a3 > 0 ? a3 : 1);
  else if (!strcmp(m, "syscall")) syscall_cost(a2);
  else {
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
  }
  return 0;
}

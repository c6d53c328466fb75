/* bench/bench.h - what the benchmark programs (B1-B5, B9-B12 of
 * shared/bench-spec.md, B6, B7, B9-B12 across processes, and B13) share: options, the runtime, the completion signal,
 * sending, the result line and the clean-up checks.
 *
 * Each benchmark is one function run by weft_bench's main(); it returns the
 * process exit code (0, or 1 when a check failed). */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/weft.h>

/* Message types used by the benchmarks (any value below
 * WEFT_MSG_TYPE_RESERVED is the caller's). */
enum {
	MSG_START = 1, /* from main: begin */
	MSG_INT,       /* an int in msg->word */
	MSG_DONE,      /* counting: the done request; big: an actor's report */
	MSG_SUM,       /* counting: the counter's reply, the sum in word */
	MSG_PING,      /* big */
	MSG_PONG,      /* big */
	MSG_CONTINUE,  /* spawn: the spawner's message to itself */
};

struct bench_opts {
	unsigned workers; /* -w K: worker threads */
	long n;           /* -n N: work units (0: the spec's default) */
	long ring;        /* -r R: threadring ring size */
	long actors;      /* -a A: big actors */
	long pings;       /* -m M: big pongs per actor */
	long batch;       /* -b B: spawn actors per spawner turn */
	bool verbose;     /* -v: runtime stats on stderr */
	int dir;          /* -d fwd|rev|both: ctx-stream direction (0: both,
	                   * 1: forward, 2: reverse; -1: not given, which
	                   * is both, but forward only for tcp-stream) */
	int overruns;     /* -o refuse|allow: ctx-stream overrun setting
	                   * (0: refuse, tractor's default; 1: allow; -1: not
	                   * given: refuse in one process, allow across
	                   * processes) */
	long bufsize;     /* -q Q: ctx-stream msg_buffer_size (0: weft's 64) */
	int block;        /* -k sleep|recv: how the ctx-open-cancel and
	                   * ctx-10k callee blocks (0: weft_sleep, the spec's;
	                   * 1: weft_stream_recv on its own stream) */
	long port;        /* -p P: net benchmarks: connect to a server already
	                   * listening on 127.0.0.1:P (weft_bench serve-net)
	                   * instead of forking one; serve-net: the port to
	                   * listen on (0: any) */
	long item_len;    /* -s S: net benchmarks: bytes per stream item
	                   * (0: 64 for tcp-*, 4 for net-ctx-*) */
};

struct bench {
	weft_runtime *rt;
	struct bench_opts o;
	char cfg[16]; /* "w<K>" */

	/* The completion signal: the final handler records the time and
	 * wakes the main thread, which sleeps on the condvar meanwhile. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	uint64_t t_end_ns;
};

/* Monotonic clock (CLOCK_MONOTONIC) in nanoseconds. */
uint64_t bench_now_ns(void);

/* Prints "weft_bench: <message>" to stderr and exits with status 1 at once
 * (usable from a handler: a benchmark that cannot go on has failed). */
_Noreturn void bench_die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* Opens the runtime with o->workers workers; dies on failure. */
void bench_open(struct bench *b, const struct bench_opts *o);

/* From the final handler: records the end time and wakes bench_wait(). */
void bench_signal_done(struct bench *b);

/* Main thread: sleeps until bench_signal_done(); returns the end time. */
uint64_t bench_wait(struct bench *b);

/* Allocates and sends a header-only message; dies on failure. */
void bench_send(weft_runtime *rt, weft_aid to, uint32_t type, uint64_t word,
                weft_aid from);

/* Spawns an actor; dies on failure. */
weft_aid bench_spawn(weft_runtime *rt, const char *name, weft_handler_fn fn,
                     void *state, unsigned batch);

/* Prints the result line: "bench=<name> peer=weft cfg=w<K> n=<n>
 * secs=<s> rate=<n/s> unit=<unit>" then `extra` (may be NULL or ""). */
void bench_report(const struct bench *b, const char *name, uint64_t n,
                  uint64_t t0_ns, uint64_t t1_ns, const char *unit,
                  const char *extra);

/* VmHWM from /proc/self/status in KiB, or -1. */
long bench_peak_rss_kib(void);

/* The end of every benchmark: sends weft_stop() to the `nstop` actors that
 * are still alive, waits until every actor has exited, closes the runtime
 * and checks that nothing leaked: no actor left for close to stop, no
 * message dropped, no message outstanding. Returns 0 if clean, else 1
 * (after saying why on stderr). */
int bench_finish(struct bench *b, const weft_aid *stop, size_t nstop);

int run_pingpong(const struct bench_opts *o);
int run_counting(const struct bench_opts *o);
int run_threadring(const struct bench_opts *o);
int run_big(const struct bench_opts *o);
int run_spawn(const struct bench_opts *o, bool tight);
/* ctx.c: contexts, streams and portals in one process. */
int run_ctx_stream(const struct bench_opts *o);
int run_ctx_rtt(const struct bench_opts *o);
int run_ctx_open_cancel(const struct bench_opts *o);
int run_portal_run(const struct bench_opts *o);
int run_ctx_10k(const struct bench_opts *o);
/* net.c: two processes over weft's TCP transport (127.0.0.1). */
int run_tcp_rtt(const struct bench_opts *o);
int run_tcp_stream(const struct bench_opts *o);
int run_net_ctx_stream(const struct bench_opts *o);
int run_net_ctx_rtt(const struct bench_opts *o);
int run_net_ctx_open_cancel(const struct bench_opts *o);
int run_net_portal_run(const struct bench_opts *o);
/* The server of the net benchmarks, by hand: prints "port=P", serves until
 * its stdin ends. */
int run_serve_net(const struct bench_opts *o);
/* spawn_process.c: B13, actors in child processes (WEFT_SPAWN_PROCESS). */
int run_spawn_process(const struct bench_opts *o);

#endif /* WEFT_BENCH_H */

/* bench/net.c - the cross-process benchmarks of shared/bench-spec.md over
 * weft's TCP transport (weft/net.h): B6 tcp-rtt and B7 tcp-stream carried
 * by a context stream, and B9-B12 across two processes.
 *
 * Two OS processes on 127.0.0.1. Unless -p PORT names a server that is
 * already listening, the benchmark forks ITSELF before opening any runtime:
 * the child is the server, the parent the client.
 *
 *   server  opens a runtime, spawns a callee actor that only exposes the
 *           benchmark functions (bench:count, bench:produce, bench:echo,
 *           bench:block, bench:block-recv, bench:answer), makes it the
 *           primary (weft_net_set_primary), listens on 127.0.0.1:0
 *           (weft_net_listen) and writes "port=P" to the client through a
 *           pipe. It then waits for EOF on a second pipe (its lifeline: the
 *           client closes it once its own runtime is closed, or dies), stops
 *           the callee, closes its runtime, checks it (as every benchmark
 *           does) and exits 0, or 1 if a check failed.
 *   client  opens a runtime and runs one caller task (weft_task_run on the
 *           main thread) that gets a portal on the server's actor 0 with
 *           weft_net_connect and then does exactly what the in-process
 *           ctx.c benchmark does through a local portal. Connecting is not
 *           timed. Its exit status includes the server's.
 *
 *   tcp-rtt (B6)          net-ctx-rtt with 64-byte items and 1,000 untimed
 *                         warm-up round trips. Extra us_per_rt.
 *   tcp-stream (B7)       the caller streams N 64-byte items to bench:count,
 *                         which records when the first and the N-th arrived
 *                         (its own clock; CLOCK_MONOTONIC is one clock for
 *                         every process of the machine) and returns them with
 *                         its count. Rate = N / (first -> N-th arrival at the
 *                         receiver). -d rev: bench:produce streams them, the
 *                         caller receives and times them.
 *   net-ctx-stream (B9)   ctx-stream across processes: 4-byte ints; rate =
 *                         N / (first send -> the caller has the result);
 *                         rev: from the callee's first send (read from its
 *                         result) to the caller having the result. Extra
 *                         recv_rate (first -> N-th arrival at the receiver).
 *   net-ctx-rtt (B10)     ctx-rtt across processes (4-byte ints, no
 *                         warm-up).
 *   net-ctx-open-cancel (B11)  ctx-open-cancel across processes.
 *   net-portal-run (B12)  portal-run across processes.
 *
 * Streams (tcp-stream, net-ctx-stream): allow_overruns=true on both sides
 * by default (-o refuse to refuse), msg_buffer_size 64 (-q Q); weft's
 * streams have no flow control beyond TCP's and the connection's send
 * queue, so a receiver that falls more than 64 + 616 items behind drops
 * items, which fails the run (every receiver checks the count and the order
 * of what it got). The line says overruns= and buf=.
 *
 * Every item carries its index in its first 4 bytes (little-endian, this
 * machine's order: both ends are this program on this machine); the rest
 * of a 64-byte item is 'x'.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <weft/net.h>

#include "bench.h"

#define HOST "127.0.0.1"
/* "Forever" for bench:block (see ctx.c). */
#define BLOCK_NS 1000000000000000000ull
#define WARMUP_RT 1000u
/* How long the server may take to shut down once its lifeline is cut. */
#define SERVER_EXIT_S 30

/* The arguments of bench:count and bench:produce. Both ends are this
 * program on this machine, so the struct goes as it is. */
struct stream_args {
	uint64_t n;       /* items (bench:produce sends this many) */
	uint32_t len;     /* bytes per item, >= 4 */
	uint32_t allow;   /* allow_overruns on the callee's stream */
	uint32_t bufsize; /* msg_buffer_size on the callee's stream (0: 64) */
	uint32_t pad;
};

/* bench:count's result: what the receiver saw. */
struct count_res {
	uint64_t count;
	uint64_t t_first; /* the first item's arrival (callee's clock) */
	uint64_t t_last;  /* the last item's arrival */
};

/* bench:produce's result: what the sender did. */
struct produce_res {
	uint64_t sent;
	uint64_t t_first; /* just before the first send */
	uint64_t t_last;  /* the last send returned */
};

/* ---- server: the callee functions ---- */

static weft_err
read_stream_args(const weft_payload *args, struct stream_args *a,
                 weft_stream_opts *so)
{
	if (args->len != sizeof(*a))
		return weft_fail("ValueError", "bad arguments (%zu bytes)",
		                 args->len);
	memcpy(a, args->data, sizeof(*a));
	if (a->len < 4)
		return weft_fail("ValueError", "items of %u bytes", a->len);
	so->allow_overruns = a->allow != 0;
	so->msg_buffer_size = a->bufsize;
	return WEFT_OK;
}

/* Counts the items of `len` bytes arriving on `s` until the end of stream,
 * checking their order; records the first and the last arrival. Task
 * only. Sets *why (static text or a weft_fail) on a bad item. */
static weft_err
count_items(weft_stream *s, uint32_t len, struct count_res *r,
            const char **why)
{
	weft_payload p;
	weft_err rc;

	memset(r, 0, sizeof(*r));
	*why = NULL;
	while ((rc = weft_stream_recv(s, &p)) == WEFT_OK) {
		uint32_t v = ~0u;
		size_t got = p.len;
		if (got >= 4)
			memcpy(&v, p.data, 4);
		weft_payload_free(&p);
		/* The clock only at the first item and at the end (the Stop
		 * right behind the N-th item), as the ZeroMQ and raw
		 * receivers time theirs: a clock read per item cost 5% of a
		 * run. */
		if (r->count == 0)
			r->t_first = bench_now_ns();
		if (got != len) {
			*why = "item size";
			return weft_fail("ValueError",
			                 "item %llu has %zu bytes, expected %u",
			                 (unsigned long long)r->count, got, len);
		}
		if (v != (uint32_t)r->count) {
			*why = "item order";
			return weft_fail("ValueError",
			                 "item %u, expected %u (items lost?)", v,
			                 (uint32_t)r->count);
		}
		r->count++;
	}
	r->t_last = bench_now_ns();
	return rc;
}

/* Sends n items of len bytes on s; records the first and the last send. */
static weft_err
send_items(weft_stream *s, uint64_t n, uint32_t len, struct produce_res *r,
           uint64_t *failed_at)
{
	uint8_t item[4096];
	uint8_t *buf = len <= sizeof(item) ? item : malloc(len);
	weft_err rc = WEFT_OK;

	memset(r, 0, sizeof(*r));
	if (buf == NULL)
		return WEFT_ENOMEM;
	memset(buf, 'x', len);
	r->t_first = bench_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		uint32_t v = (uint32_t)i;
		memcpy(buf, &v, 4);
		if ((rc = weft_stream_send(s, buf, len)) != WEFT_OK) {
			*failed_at = i;
			break;
		}
		r->sent++;
	}
	r->t_last = bench_now_ns();
	if (buf != item)
		free(buf);
	return rc;
}

/* B7 / B9 forward: count the items, return what was seen. */
static weft_err
fn_count(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	struct stream_args a;
	weft_stream_opts so = {0};
	weft_stream *s;
	struct count_res r;
	const char *why;
	weft_err rc;

	(void)arg;
	if ((rc = read_stream_args(args, &a, &so)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, &so, &s)) != WEFT_OK)
		return rc;
	rc = count_items(s, a.len, &r, &why);
	if (rc != WEFT_EEOC)
		return rc;
	return weft_ctx_return(ctx, &r, sizeof(r));
}

/* B7 / B9 reverse: stream the items, return what was sent. */
static weft_err
fn_produce(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	struct stream_args a;
	weft_stream_opts so = {0};
	weft_stream *s;
	struct produce_res r;
	uint64_t at = 0;
	weft_err rc;

	(void)arg;
	if ((rc = read_stream_args(args, &a, &so)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, &so, &s)) != WEFT_OK)
		return rc;
	if ((rc = send_items(s, a.n, a.len, &r, &at)) != WEFT_OK)
		return rc;
	weft_stream_close(s);
	return weft_ctx_return(ctx, &r, sizeof(r));
}

/* B6 / B10: echo every item until the caller closes. */
static weft_err
fn_echo(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	weft_stream *s;
	weft_payload p;
	weft_err rc;

	(void)args;
	(void)arg;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK)
		return rc;
	while ((rc = weft_stream_recv(s, &p)) == WEFT_OK) {
		rc = weft_stream_send(s, p.data, p.len);
		weft_payload_free(&p);
		if (rc != WEFT_OK)
			break;
	}
	return rc == WEFT_EEOC ? WEFT_OK : rc;
}

/* B11: started, then block until cancelled. */
static weft_err
fn_block(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	weft_err rc;

	(void)args;
	(void)arg;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	return weft_sleep(BLOCK_NS);
}

/* B11 with -k recv: block in a receive on its own stream. */
static weft_err
fn_block_recv(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	weft_stream *s;
	weft_payload p;
	weft_err rc;

	(void)args;
	(void)arg;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK)
		return rc;
	rc = weft_stream_recv(s, &p);
	if (rc == WEFT_OK) {
		weft_payload_free(&p);
		return weft_fail("ValueError", "unexpected item");
	}
	return rc;
}

/* B12: return the argument + 1. */
static weft_err
fn_answer(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	uint32_t v;

	(void)arg;
	if (args->len != sizeof(v))
		return weft_fail("ValueError", "bad arguments");
	memcpy(&v, args->data, sizeof(v));
	v++;
	return weft_ctx_return(ctx, &v, sizeof(v));
}

static void
print_net_stats(weft_runtime *rt, const char *who)
{
	weft_net_stats st;

	weft_net_stats_get(rt, &st);
	fprintf(stderr,
	        "weft_bench: %s net: accepted=%llu dialed=%llu open=%llu "
	        "frames_in=%llu frames_out=%llu bytes_in=%llu bytes_out=%llu "
	        "protocol_errors=%llu heartbeat_timeouts=%llu\n",
	        who, (unsigned long long)st.connections_accepted,
	        (unsigned long long)st.connections_dialed,
	        (unsigned long long)st.connections_open,
	        (unsigned long long)st.frames_in,
	        (unsigned long long)st.frames_out,
	        (unsigned long long)st.bytes_in,
	        (unsigned long long)st.bytes_out,
	        (unsigned long long)st.protocol_errors,
	        (unsigned long long)st.heartbeat_timeouts);
}

/* The checks after a runtime is closed that ctx.c makes too. */
static int
check_live(const char *who)
{
	int64_t lt = weft_live_tasks(), lc = weft_live_contexts(),
	        le = weft_live_errors();

	if (lt == 0 && lc == 0 && le == 0)
		return 0;
	fprintf(stderr,
	        "weft_bench: %s after close: %lld task(s), %lld context(s), "
	        "%lld error record(s) still alive\n",
	        who, (long long)lt, (long long)lc, (long long)le);
	return 1;
}

static void
write_all(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t w = write(fd, s, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			bench_die("server: cannot write its port: %s",
			          strerror(errno));
		s += w;
		len -= (size_t)w;
	}
}

/* Blocks until EOF (or an error) on fd. */
static void
wait_eof(int fd)
{
	char buf[64];

	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno != EINTR))
			return;
	}
}

/* The server: see the top of the file. Writes "port=P\n" to port_fd once
 * it listens, serves until EOF on life_fd, then shuts down. Returns the
 * exit code. */
static int
serve(const struct bench_opts *o, int port_fd, int life_fd)
{
	struct bench b;
	weft_aid callee;
	uint16_t port = 0;
	char line[32];
	weft_err rc;
	int code;

	bench_open(&b, o);
	weft_function fns[] = {
		{"bench:count", fn_count, NULL},
		{"bench:produce", fn_produce, NULL},
		{"bench:echo", fn_echo, NULL},
		{"bench:block", fn_block, NULL},
		{"bench:block-recv", fn_block_recv, NULL},
		{"bench:answer", fn_answer, NULL},
	};
	weft_spawn_opts so = {
		.name = "callee",
		.functions = fns,
		.nfunctions = sizeof(fns) / sizeof(fns[0]),
	};
	if ((rc = weft_spawn(b.rt, &so, &callee)) != WEFT_OK)
		bench_die("server: weft_spawn(callee): %s", weft_strerror(rc));
	if ((rc = weft_net_set_primary(b.rt, callee)) != WEFT_OK)
		bench_die("server: weft_net_set_primary: %s",
		          weft_strerror(rc));
	if ((rc = weft_net_listen(b.rt, HOST, (uint16_t)o->port, &port)) !=
	    WEFT_OK)
		bench_die("server: weft_net_listen(%s:%ld): %s", HOST, o->port,
		          weft_strerror(rc));
	snprintf(line, sizeof(line), "port=%u\n", (unsigned)port);
	write_all(port_fd, line);
	if (port_fd != STDOUT_FILENO)
		close(port_fd);

	wait_eof(life_fd);
	/* The client is done (or gone): shut down, but never hang. */
	alarm(SERVER_EXIT_S);
	if (o->verbose)
		print_net_stats(b.rt, "server");
	code = bench_finish(&b, &callee, 1);
	code |= check_live("server");
	if (code)
		fprintf(stderr, "weft_bench: the server's checks failed\n");
	return code;
}

int
run_serve_net(const struct bench_opts *o)
{
	/* By hand: the port on stdout, serve until stdin ends. */
	signal(SIGPIPE, SIG_IGN); /* see ignore_sigpipe() */
	return serve(o, STDOUT_FILENO, STDIN_FILENO);
}

/* ---- client ---- */

struct server {
	pid_t pid;    /* -1: none of ours (-p PORT) */
	int life;     /* the lifeline's write end, -1 if none */
	uint16_t port;
};

/* Forks the server (before this process opens any runtime) and reads the
 * port it listens on. */
static void
start_server(const struct bench_opts *o, struct server *sv)
{
	int pp[2], lp[2];

	sv->pid = -1;
	sv->life = -1;
	sv->port = (uint16_t)o->port;
	if (o->port != 0)
		return; /* a server started by hand (serve-net) */
	if (pipe(pp) < 0 || pipe(lp) < 0)
		bench_die("pipe: %s", strerror(errno));
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	if (pid == 0) {
		struct bench_opts so = *o;
		/* Die with the client rather than outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(1);
		close(pp[0]);
		close(lp[1]);
		so.port = 0;
		_exit(serve(&so, pp[1], lp[0]));
	}
	close(pp[1]);
	close(lp[0]);
	sv->pid = pid;
	sv->life = lp[1];

	char buf[32];
	size_t have = 0;
	while (have + 1 < sizeof(buf)) {
		ssize_t r = read(pp[0], buf + have, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (buf[have] == '\n')
			break;
		have++;
	}
	buf[have] = '\0';
	close(pp[0]);
	unsigned port = 0;
	if (sscanf(buf, "port=%u", &port) != 1 || port == 0 || port > 65535) {
		int st;
		waitpid(pid, &st, 0);
		bench_die("the server did not start (said \"%s\")", buf);
	}
	sv->port = (uint16_t)port;
}

/* Cuts the lifeline and waits for the server; returns its exit code. */
static int
stop_server(struct server *sv)
{
	int st;

	if (sv->pid < 0)
		return 0;
	close(sv->life);
	while (waitpid(sv->pid, &st, 0) < 0)
		if (errno != EINTR)
			return 1;
	if (WIFEXITED(st)) {
		if (WEXITSTATUS(st) != 0)
			fprintf(stderr, "weft_bench: the server exited %d\n",
			        WEXITSTATUS(st));
		return WEXITSTATUS(st) != 0;
	}
	fprintf(stderr, "weft_bench: the server died of signal %d%s\n",
	        WTERMSIG(st),
	        WTERMSIG(st) == SIGALRM ? " (it did not shut down within "
	                                  "30 s)"
	                                : "");
	return 1;
}

enum which {
	N_TCP_RTT,
	N_TCP_STREAM,
	N_STREAM,
	N_RTT,
	N_OPEN_CANCEL,
	N_PORTAL_RUN,
};

struct nc {
	struct bench *b;
	enum which w;
	uint16_t port;
	uint64_t n;
	uint32_t len; /* item bytes (streams, rtt) */
	bool rev;
	bool allow;
	unsigned bufsize;
	unsigned warmup;
	const char *block_fn;

	uint64_t t0, t1;
	uint64_t t_first, t_last; /* the receiver's first and last arrival */
	uint64_t t_sent;          /* the sender's loop ended */
	uint64_t t_first10, t_last10;

	bool failed;
	char why[512];
};

static void failf(struct nc *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
failf(struct nc *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;
	c->failed = true;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

static void
fail_rc(struct nc *c, const char *what, weft_err rc)
{
	char buf[384];
	const weft_error *e = weft_task_error();

	failf(c, "%s: %s: %s", what, weft_strerror(rc),
	      e ? weft_error_format(e, buf, sizeof(buf)) : "(no error record)");
}

static weft_err
stream_fwd(struct nc *c, weft_portal *p)
{
	struct stream_args a = {
		.n = c->n, .len = c->len, .allow = c->allow,
		.bufsize = c->bufsize,
	};
	weft_ctx_opts co = {.allow_overruns = c->allow,
	                    .msg_buffer_size = c->bufsize};
	weft_stream_opts so = {.allow_overruns = c->allow,
	                       .msg_buffer_size = c->bufsize};
	struct produce_res sent;
	struct count_res got = {0};
	weft_ctx *ctx;
	weft_stream *s;
	weft_payload res;
	uint64_t at = 0;
	weft_err rc;

	if ((rc = weft_open_context(p, "bench:count", &a, sizeof(a), &co,
	                            &ctx, NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		return rc;
	}
	if ((rc = weft_ctx_open_stream(ctx, &so, &s)) != WEFT_OK) {
		fail_rc(c, "open_stream", rc);
		goto out;
	}
	rc = send_items(s, c->n, c->len, &sent, &at);
	c->t0 = sent.t_first;
	c->t_sent = sent.t_last;
	if (rc != WEFT_OK) {
		char what[64];
		snprintf(what, sizeof(what), "send #%llu",
		         (unsigned long long)at);
		fail_rc(c, what, rc);
		goto out;
	}
	weft_stream_close(s);
	if ((rc = weft_ctx_result(ctx, &res)) != WEFT_OK) {
		fail_rc(c, "result", rc);
		goto out;
	}
	c->t1 = bench_now_ns();
	if (res.len == sizeof(got))
		memcpy(&got, res.data, sizeof(got));
	c->t_first = got.t_first;
	c->t_last = got.t_last;
	if (got.count != c->n)
		failf(c, "the callee counted %llu of %llu (result of %zu bytes)",
		      (unsigned long long)got.count, (unsigned long long)c->n,
		      res.len);
out:
	if (weft_ctx_exit(ctx, rc) != WEFT_OK && !c->failed)
		fail_rc(c, "exit", rc);
	weft_ctx_free(ctx);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

static weft_err
stream_rev(struct nc *c, weft_portal *p)
{
	struct stream_args a = {
		.n = c->n, .len = c->len, .allow = c->allow,
		.bufsize = c->bufsize,
	};
	weft_ctx_opts co = {.allow_overruns = c->allow,
	                    .msg_buffer_size = c->bufsize};
	weft_stream_opts so = {.allow_overruns = c->allow,
	                       .msg_buffer_size = c->bufsize};
	struct produce_res sent = {0};
	struct count_res got;
	const char *why;
	weft_ctx *ctx;
	weft_stream *s;
	weft_payload res;
	weft_err rc;

	if ((rc = weft_open_context(p, "bench:produce", &a, sizeof(a), &co,
	                            &ctx, NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		return rc;
	}
	if ((rc = weft_ctx_open_stream(ctx, &so, &s)) != WEFT_OK) {
		fail_rc(c, "open_stream", rc);
		goto out;
	}
	rc = count_items(s, c->len, &got, &why);
	c->t_first = got.t_first;
	c->t_last = got.t_last;
	if (rc != WEFT_EEOC) {
		char what[96];
		snprintf(what, sizeof(what), "recv after %llu item(s)%s%s",
		         (unsigned long long)got.count, why ? ": " : "",
		         why ? why : "");
		fail_rc(c, what, rc);
		goto out;
	}
	if ((rc = weft_ctx_result(ctx, &res)) != WEFT_OK) {
		fail_rc(c, "result", rc);
		goto out;
	}
	c->t1 = bench_now_ns();
	if (res.len == sizeof(sent))
		memcpy(&sent, res.data, sizeof(sent));
	c->t0 = sent.t_first;
	c->t_sent = sent.t_last;
	if (sent.sent != c->n || got.count != c->n)
		failf(c, "the callee sent %llu, the caller counted %llu, of %llu",
		      (unsigned long long)sent.sent,
		      (unsigned long long)got.count, (unsigned long long)c->n);
out:
	if (weft_ctx_exit(ctx, rc == WEFT_EEOC ? WEFT_OK : rc) != WEFT_OK &&
	    !c->failed)
		fail_rc(c, "exit", rc);
	weft_ctx_free(ctx);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

/* count round trips of len-byte items over s; false on a failure. */
static bool
rtt_loop(struct nc *c, weft_stream *s, uint8_t *buf, uint64_t base,
         uint64_t count)
{
	weft_payload it;
	weft_err rc;

	for (uint64_t i = 0; i < count; i++) {
		uint32_t v = (uint32_t)(base + i), w = ~0u;
		memcpy(buf, &v, 4);
		if ((rc = weft_stream_send(s, buf, c->len)) != WEFT_OK) {
			fail_rc(c, "send", rc);
			return false;
		}
		if ((rc = weft_stream_recv(s, &it)) != WEFT_OK) {
			fail_rc(c, "recv", rc);
			return false;
		}
		size_t got = it.len;
		if (got >= 4)
			memcpy(&w, it.data, 4);
		weft_payload_free(&it);
		if (w != v || got != c->len) {
			failf(c, "echo %u (%zu bytes) of %u (%u bytes)", w, got,
			      v, c->len);
			return false;
		}
	}
	return true;
}

static weft_err
rtt(struct nc *c, weft_portal *p)
{
	weft_ctx *ctx;
	weft_stream *s;
	weft_err rc, xrc;
	uint8_t *buf = malloc(c->len);

	if (buf == NULL) {
		failf(c, "out of memory");
		return WEFT_ENOMEM;
	}
	memset(buf, 'x', c->len);
	if ((rc = weft_open_context(p, "bench:echo", NULL, 0, NULL, &ctx,
	                            NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		free(buf);
		return rc;
	}
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK) {
		fail_rc(c, "open_stream", rc);
		goto out;
	}
	if (!rtt_loop(c, s, buf, 0, c->warmup))
		goto out;
	c->t0 = bench_now_ns();
	if (!rtt_loop(c, s, buf, c->warmup, c->n))
		goto out;
	c->t1 = bench_now_ns();
	weft_stream_close(s);
out:
	if (c->failed && rc == WEFT_OK)
		rc = WEFT_EFAILED;
	if ((xrc = weft_ctx_exit(ctx, rc)) != WEFT_OK && !c->failed)
		fail_rc(c, "exit", xrc);
	weft_ctx_free(ctx);
	free(buf);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

static bool
open_cancel_one(struct nc *c, weft_portal *p, uint64_t i)
{
	weft_ctx *ctx;
	weft_err rc;

	if ((rc = weft_open_context(p, c->block_fn, NULL, 0, NULL, &ctx,
	                            NULL)) != WEFT_OK) {
		char what[64];
		snprintf(what, sizeof(what), "cycle %llu: open_context",
		         (unsigned long long)i);
		fail_rc(c, what, rc);
		return false;
	}
	weft_ctx_cancel(ctx);
	if (!weft_ctx_cancel_acked(ctx)) {
		failf(c,
		      "cycle %llu: weft_ctx_cancel() got no acknowledgement "
		      "within 0.616 s: the callee (%s) was not cancelled; "
		      "cancelling the callee actor to end the run",
		      (unsigned long long)i, c->block_fn);
		weft_portal_cancel_actor(p, NULL);
	}
	rc = weft_ctx_exit(ctx, WEFT_OK);
	if (rc != WEFT_OK || !weft_ctx_cancel_acked(ctx)) {
		char what[96];
		snprintf(what, sizeof(what), "cycle %llu: exit (acked=%d)",
		         (unsigned long long)i, weft_ctx_cancel_acked(ctx));
		fail_rc(c, what, rc);
	}
	weft_ctx_free(ctx);
	return !c->failed;
}

static weft_err
open_cancel(struct nc *c, weft_portal *p)
{
	uint64_t tenth = c->n / 10;

	c->t0 = bench_now_ns();
	for (uint64_t i = 0; i < c->n; i++) {
		if (i == tenth)
			c->t_first10 = bench_now_ns();
		if (i == c->n - tenth)
			c->t_last10 = bench_now_ns();
		if (!open_cancel_one(c, p, i))
			return WEFT_EFAILED;
	}
	c->t1 = bench_now_ns();
	return WEFT_OK;
}

static weft_err
portal_run(struct nc *c, weft_portal *p)
{
	weft_payload res;
	weft_err rc;

	c->t0 = bench_now_ns();
	for (uint64_t i = 0; i < c->n; i++) {
		uint32_t v = (uint32_t)i, w = 0;
		if ((rc = weft_portal_run(p, "bench:answer", &v, sizeof(v),
		                          &res)) != WEFT_OK) {
			fail_rc(c, "portal_run", rc);
			return rc;
		}
		if (res.len == sizeof(w))
			memcpy(&w, res.data, sizeof(w));
		weft_payload_free(&res);
		if (w != v + 1) {
			failf(c, "call %llu returned %u",
			      (unsigned long long)i, w);
			return WEFT_EFAILED;
		}
	}
	c->t1 = bench_now_ns();
	return WEFT_OK;
}

static weft_err
caller_main(void *arg)
{
	struct nc *c = arg;
	weft_portal *p;
	weft_err rc;

	if ((rc = weft_net_connect(c->b->rt, HOST, c->port, 0, &p)) !=
	    WEFT_OK) {
		char what[64];
		snprintf(what, sizeof(what), "weft_net_connect(%s:%u)", HOST,
		         (unsigned)c->port);
		fail_rc(c, what, rc);
		return rc;
	}
	switch (c->w) {
	case N_TCP_STREAM:
	case N_STREAM: rc = c->rev ? stream_rev(c, p) : stream_fwd(c, p); break;
	case N_TCP_RTT:
	case N_RTT: rc = rtt(c, p); break;
	case N_OPEN_CANCEL: rc = open_cancel(c, p); break;
	case N_PORTAL_RUN: rc = portal_run(c, p); break;
	}
	weft_portal_free(p);
	return rc;
}

static void
report(const struct bench_opts *o, struct bench *b, struct nc *c,
       const char *name)
{
	char extra[320];
	double secs = (double)(c->t1 - c->t0) / 1e9;
	double rsecs = (double)(c->t_last - c->t_first) / 1e9;
	uint64_t n = c->n;
	const char *ov = c->allow ? "allow" : "refuse";
	unsigned buf = c->bufsize ? c->bufsize : 64;

	switch (c->w) {
	case N_TCP_RTT:
	case N_RTT:
		snprintf(extra, sizeof(extra),
		         "us_per_rt=%.3f bytes=%u warmup=%u", secs * 1e6 / (double)n,
		         c->len, c->warmup);
		bench_report(b, name, n, c->t0, c->t1, "roundtrips/s", extra);
		break;
	case N_TCP_STREAM:
		/* Rate at the receiver: first arrival -> N-th arrival. */
		snprintf(extra, sizeof(extra),
		         "MBps=%.1f ok=1 bytes=%u overruns=%s buf=%u "
		         "recv_at=%s e2e_secs=%.4f send_secs=%.4f",
		         rsecs > 0 ? (double)c->len * (double)n / rsecs / 1e6 : 0,
		         c->len, ov, buf, c->rev ? "caller" : "callee",
		         secs, (double)(c->t_sent - c->t0) / 1e9);
		bench_report(b, name, n, c->t_first, c->t_last, "msgs/s", extra);
		break;
	case N_STREAM:
		snprintf(extra, sizeof(extra),
		         "ok=1 bytes=%u overruns=%s buf=%u recv_rate=%.0f "
		         "send_secs=%.4f",
		         c->len, ov, buf, rsecs > 0 ? (double)n / rsecs : 0,
		         (double)(c->t_sent - c->t0) / 1e9);
		bench_report(b, name, n, c->t0, c->t1, "msgs/s", extra);
		break;
	case N_OPEN_CANCEL:
		snprintf(extra, sizeof(extra), "us_per_cycle=%.3f block=%s",
		         secs * 1e6 / (double)n, o->block ? "recv" : "sleep");
		bench_report(b, name, n, c->t0, c->t1, "cycles/s", extra);
		if (o->verbose && n >= 10)
			fprintf(stderr,
			        "weft_bench: %s %s: us per cycle over the first "
			        "10%%: %.3f, the last 10%%: %.3f\n",
			        name, b->cfg,
			        (double)(c->t_first10 - c->t0) / 1e3 /
			                (double)(n / 10),
			        (double)(c->t1 - c->t_last10) / 1e3 /
			                (double)(n / 10));
		break;
	case N_PORTAL_RUN:
		snprintf(extra, sizeof(extra), "us_per_call=%.3f",
		         secs * 1e6 / (double)n);
		bench_report(b, name, n, c->t0, c->t1, "calls/s", extra);
		break;
	}
}

/* The client's end: as bench_finish(), except that the proxy actor of the
 * connection (one per remote actor reached: the server's primary) is alive
 * until the runtime closes, which ends the connection; close stops it. So:
 * wait until at most `proxies` actors are alive, close, and accept that
 * close stopped at most that many. Returns 0 if clean, else 1. */
static int
client_finish(struct bench *b, uint64_t proxies)
{
	weft_runtime_stats st;
	weft_close_report rep;
	weft_err err;
	int rc = 0;
	uint64_t deadline = bench_now_ns() + 30ull * 1000000000u;

	for (;;) {
		err = weft_runtime_wait_idle(b->rt, 1000000000u);
		weft_runtime_stats_get(b->rt, &st);
		if (err == WEFT_OK && st.actors_live <= proxies)
			break;
		if (bench_now_ns() >= deadline) {
			fprintf(stderr,
			        "weft_bench: client: %llu actor(s) still alive "
			        "after 30 s (wait_idle: %s)\n",
			        (unsigned long long)st.actors_live,
			        weft_strerror(err));
			rc = 1;
			break;
		}
	}
	if (b->o.verbose)
		fprintf(stderr,
		        "weft_bench: client stats workers=%u spawned=%llu "
		        "turns=%llu steals=%llu parks=%llu dropped=%llu "
		        "live=%llu\n",
		        st.workers, (unsigned long long)st.actors_spawned,
		        (unsigned long long)st.turns,
		        (unsigned long long)st.steals,
		        (unsigned long long)st.parks,
		        (unsigned long long)st.messages_dropped,
		        (unsigned long long)st.actors_live);
	if (st.messages_dropped != 0) {
		fprintf(stderr, "weft_bench: client: %llu message(s) dropped\n",
		        (unsigned long long)st.messages_dropped);
		rc = 1;
	}
	if ((err = weft_runtime_close(b->rt, &rep)) != WEFT_OK) {
		fprintf(stderr, "weft_bench: client: weft_runtime_close: %s\n",
		        weft_strerror(err));
		return 1;
	}
	b->rt = NULL;
	if (rep.actors_stopped > proxies || rep.messages_dropped != 0) {
		fprintf(stderr,
		        "weft_bench: client: close stopped %llu actor(s) "
		        "(expected at most %llu proxies), dropped %llu "
		        "message(s)\n",
		        (unsigned long long)rep.actors_stopped,
		        (unsigned long long)proxies,
		        (unsigned long long)rep.messages_dropped);
		rc = 1;
	}
	int64_t out = weft_msg_outstanding();
	if (out != 0) {
		fprintf(stderr, "weft_bench: client: %lld message(s) never "
		                "freed\n",
		        (long long)out);
		rc = 1;
	}
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	return rc;
}

/* The transport (as of 2026-11-27) leaves SIGPIPE alone, and libuv does
 * not ignore it: a write to a connection the peer has reset kills the
 * process instead of ending its contexts with TransportClosed. Both ends
 * ignore it, so that a dying peer shows as a failed run with a reason. */
static void
ignore_sigpipe(void)
{
	signal(SIGPIPE, SIG_IGN);
}

/* One run: a fresh server process, a fresh client runtime, one line. */
static int
net_run(const struct bench_opts *o, enum which w, const char *name,
        uint64_t n, uint32_t len, bool rev)
{
	static struct nc c;
	struct server sv;
	struct bench b;
	weft_error *err = NULL;
	int code = 0;

	ignore_sigpipe();
	start_server(o, &sv);
	memset(&c, 0, sizeof(c));
	bench_open(&b, o);
	c.b = &b;
	c.w = w;
	c.port = sv.port;
	c.n = n;
	c.len = o->item_len ? (uint32_t)o->item_len : len;
	c.rev = rev;
	/* Streams: allow overruns unless -o refuse (see the top). */
	c.allow = o->overruns != 0;
	c.bufsize = o->bufsize ? (unsigned)o->bufsize : 0;
	c.warmup = w == N_TCP_RTT ? WARMUP_RT : 0;
	c.block_fn = o->block ? "bench:block-recv" : "bench:block";
	if (rev)
		snprintf(b.cfg, sizeof(b.cfg), "w%u-rev", o->workers);

	weft_err rc = weft_task_run(b.rt, "caller", caller_main, &c, &err);
	if (rc != WEFT_OK || c.failed) {
		char buf[384];
		bool why = c.failed || err == NULL;
		fprintf(stderr, "weft_bench: %s %s: %s%s%s\n", name, b.cfg,
		        c.failed ? c.why : weft_strerror(rc), why ? "" : ": ",
		        why ? "" : weft_error_format(err, buf, sizeof(buf)));
		code = 1;
	} else {
		report(o, &b, &c, name);
	}
	weft_error_release(err);
	if (o->verbose)
		print_net_stats(b.rt, "client");
	if (client_finish(&b, 1) != 0)
		code = 1;
	code |= check_live("client");
	code |= stop_server(&sv);
	return code;
}

int
run_tcp_rtt(const struct bench_opts *o)
{
	return net_run(o, N_TCP_RTT, "tcp-rtt", o->n ? (uint64_t)o->n : 20000u,
	               64, false);
}

int
run_tcp_stream(const struct bench_opts *o)
{
	uint64_t n = o->n ? (uint64_t)o->n : 1000000u;
	int code = 0;

	/* B7 is one way: forward unless -d says otherwise. */
	if (o->dir != 2)
		code |= net_run(o, N_TCP_STREAM, "tcp-stream", n, 64, false);
	if (o->dir == 0 || o->dir == 2)
		code |= net_run(o, N_TCP_STREAM, "tcp-stream", n, 64, true);
	return code;
}

int
run_net_ctx_stream(const struct bench_opts *o)
{
	uint64_t n = o->n ? (uint64_t)o->n : 1000000u;
	int code = 0;

	if (o->dir != 2)
		code |= net_run(o, N_STREAM, "net-ctx-stream", n, 4, false);
	if (o->dir != 1)
		code |= net_run(o, N_STREAM, "net-ctx-stream", n, 4, true);
	return code;
}

int
run_net_ctx_rtt(const struct bench_opts *o)
{
	return net_run(o, N_RTT, "net-ctx-rtt", o->n ? (uint64_t)o->n : 20000u,
	               4, false);
}

int
run_net_ctx_open_cancel(const struct bench_opts *o)
{
	return net_run(o, N_OPEN_CANCEL, "net-ctx-open-cancel",
	               o->n ? (uint64_t)o->n : 10000u, 4, false);
}

int
run_net_portal_run(const struct bench_opts *o)
{
	return net_run(o, N_PORTAL_RUN, "net-portal-run",
	               o->n ? (uint64_t)o->n : 20000u, 4, false);
}

/* bench/ctx.c - B9-B12 of shared/bench-spec.md in one process, and ctx-10k.
 *
 * Each benchmark has two actors: a callee actor that exposes functions
 * (no handler), and a caller task started with weft_task_run() on the main
 * thread (its own actor). The caller opens a portal to the callee and does
 * the timed work; the clock starts inside the caller task, so the runtime
 * is up, and ends in it too.
 *
 *   ctx-stream (B9)       the caller opens a context, the callee calls
 *                         started, both open the stream; the caller sends N
 *                         ints, closes its half, the callee counts them (in
 *                         order) and returns the count as its result, which
 *                         is checked. Rate = N / (first send -> result).
 *                         Reverse (cfg wK-rev): the callee streams N ints to
 *                         the caller, which counts them, then waits for the
 *                         result (the callee's count); the clock starts at
 *                         the callee's first send. Extra: overruns=, buf=,
 *                         peak_rss_kib=.
 *   ctx-rtt (B10)         over an open stream, send an int, the callee
 *                         echoes it, wait for it; N round trips.
 *   ctx-open-cancel (B11) per iteration: open a context to a function that
 *                         calls started then sleeps "forever", cancel it,
 *                         exit (absorbed; weft_ctx_cancel_acked() checked).
 *   portal-run (B12)      run an exposed function returning an int (its
 *                         argument + 1, checked) through a portal N times.
 *   ctx-10k               K = 10,000 contexts open at once from one task to
 *                         one callee actor (each callee task blocked in its
 *                         sleep); RSS while all are open; the time to open
 *                         them all and to cancel+exit them all.
 *
 * -k recv: the B11 / ctx-10k callee blocks in a receive on its own stream
 * instead of weft_sleep (a workaround: see bench/README.md).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* "Forever": about 31.7 years. Not UINT64_MAX: weft_sleep adds it to the
 * monotonic clock unchecked, and UINT64_MAX wraps to a past deadline (the
 * sleep returns at once). */
#define BLOCK_NS 1000000000000000000ull

struct cb {
	struct bench *b;
	const char *name;
	weft_aid callee;
	uint64_t n;
	bool rev;
	weft_ctx_opts copts;   /* the caller's context */
	weft_stream_opts sopts; /* both sides' streams */
	const char *block_fn;   /* "bench:block" or "bench:block-recv" */

	_Atomic uint64_t t0_callee; /* rev: the callee's first send */
	uint64_t t0, t1;
	uint64_t t_open; /* ctx-10k: all open */
	uint64_t t_sent; /* ctx-stream: the sender's last send returned */
	uint64_t t_first10, t_last10; /* ctx-open-cancel: 10% in, 90% in */
	long rss_base_kib, rss_open_kib, hwm_open_kib;

	bool failed;
	char why[512];
};

static void
failf(struct cb *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
failf(struct cb *c, const char *fmt, ...)
{
	va_list ap;

	if (c->failed)
		return;
	c->failed = true;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

/* The current task's error, formatted (for failure reports). */
static const char *
task_err(char *buf, size_t len)
{
	const weft_error *e = weft_task_error();

	if (e == NULL)
		return "(no error record)";
	return weft_error_format(e, buf, len);
}

static void
fail_rc(struct cb *c, const char *what, weft_err rc)
{
	char buf[384];

	failf(c, "%s: %s: %s", what, weft_strerror(rc),
	      task_err(buf, sizeof(buf)));
}

static long
proc_status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kl = strlen(key);
	long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ':')
			v = atol(line + kl + 1);
	fclose(f);
	return v;
}

/* Resets VmHWM to the current RSS (Linux: "5" to clear_refs), so that each
 * run of a process that makes several reports its own peak. */
static void
reset_peak_rss(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");

	if (f) {
		fputs("5", f);
		fclose(f);
	}
}

/* ---- callee functions ---- */

/* B9 forward: count the items (checking their order), return the count. */
static weft_err
fn_count(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	struct cb *c = arg;
	weft_stream *s;
	weft_payload p;
	uint64_t count = 0;
	weft_err rc;

	(void)args;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, &c->sopts, &s)) != WEFT_OK)
		return rc;
	while ((rc = weft_stream_recv(s, &p)) == WEFT_OK) {
		uint32_t v;
		if (p.len != sizeof(v))
			return weft_fail("ValueError", "item of %zu bytes",
			                 p.len);
		memcpy(&v, p.data, sizeof(v));
		weft_payload_free(&p);
		if (v != (uint32_t)count)
			return weft_fail("ValueError", "item %u, expected %u",
			                 v, (uint32_t)count);
		count++;
	}
	if (rc != WEFT_EEOC)
		return rc;
	weft_ctx_return(ctx, &count, sizeof(count));
	return WEFT_OK;
}

/* B9 reverse: stream N ints to the caller, return how many were sent. */
static weft_err
fn_produce(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	struct cb *c = arg;
	weft_stream *s;
	uint64_t n, i;
	weft_err rc;

	if (args->len != sizeof(n))
		return weft_fail("ValueError", "bad arguments");
	memcpy(&n, args->data, sizeof(n));
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, &c->sopts, &s)) != WEFT_OK)
		return rc;
	atomic_store_explicit(&c->t0_callee, bench_now_ns(),
	                      memory_order_release);
	for (i = 0; i < n; i++) {
		uint32_t v = (uint32_t)i;
		if ((rc = weft_stream_send(s, &v, sizeof(v))) != WEFT_OK)
			return rc;
	}
	c->t_sent = bench_now_ns();
	weft_stream_close(s);
	weft_ctx_return(ctx, &i, sizeof(i));
	return WEFT_OK;
}

/* B10: echo every item until the caller closes. */
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

/* B11, ctx-10k: started, then block until cancelled (-k sleep, the
 * spec's). */
static weft_err
fn_block(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	weft_err rc;

	(void)args;
	(void)arg;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK)
		return rc;
	return weft_sleep(BLOCK_NS); /* WEFT_ECANCELED when cancelled */
}

/* The same, blocked in a receive on its own stream (-k recv), to which the
 * caller never sends. On its end the runtime closes the stream: one more
 * message (Stop) to the caller than fn_block. */
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
	rc = weft_stream_recv(s, &p); /* WEFT_ECANCELED when cancelled */
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

/* ---- caller tasks ---- */

static weft_err
stream_fwd(struct cb *c, weft_portal *p)
{
	weft_ctx *ctx;
	weft_stream *s;
	weft_payload res;
	weft_err rc;

	if ((rc = weft_open_context(p, "bench:count", NULL, 0, &c->copts, &ctx,
	                            NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		return rc;
	}
	if ((rc = weft_ctx_open_stream(ctx, &c->sopts, &s)) != WEFT_OK) {
		fail_rc(c, "open_stream", rc);
		goto out;
	}
	c->t0 = bench_now_ns();
	for (uint64_t i = 0; i < c->n; i++) {
		uint32_t v = (uint32_t)i;
		if ((rc = weft_stream_send(s, &v, sizeof(v))) != WEFT_OK) {
			char what[64];
			snprintf(what, sizeof(what), "send #%llu",
			         (unsigned long long)i);
			fail_rc(c, what, rc);
			goto out;
		}
	}
	c->t_sent = bench_now_ns();
	weft_stream_close(s);
	if ((rc = weft_ctx_result(ctx, &res)) != WEFT_OK) {
		fail_rc(c, "result", rc);
		goto out;
	}
	c->t1 = bench_now_ns();
	uint64_t count = 0;
	if (res.len == sizeof(count))
		memcpy(&count, res.data, sizeof(count));
	if (count != c->n)
		failf(c, "the callee counted %llu of %llu",
		      (unsigned long long)count, (unsigned long long)c->n);
out:
	if (weft_ctx_exit(ctx, rc) != WEFT_OK && !c->failed)
		fail_rc(c, "exit", rc);
	weft_ctx_free(ctx);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

static weft_err
stream_rev(struct cb *c, weft_portal *p)
{
	weft_ctx *ctx;
	weft_stream *s;
	weft_payload res, it;
	uint64_t count = 0;
	weft_err rc;

	if ((rc = weft_open_context(p, "bench:produce", &c->n, sizeof(c->n),
	                            &c->copts, &ctx, NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		return rc;
	}
	if ((rc = weft_ctx_open_stream(ctx, &c->sopts, &s)) != WEFT_OK) {
		fail_rc(c, "open_stream", rc);
		goto out;
	}
	while ((rc = weft_stream_recv(s, &it)) == WEFT_OK) {
		uint32_t v = 0;
		if (it.len == sizeof(v))
			memcpy(&v, it.data, sizeof(v));
		weft_payload_free(&it);
		if (v != (uint32_t)count) {
			failf(c, "item %u, expected %u", v, (uint32_t)count);
			rc = WEFT_EFAILED;
			goto out;
		}
		count++;
	}
	if (rc != WEFT_EEOC) {
		char what[64];
		snprintf(what, sizeof(what), "recv after %llu item(s)",
		         (unsigned long long)count);
		fail_rc(c, what, rc);
		goto out;
	}
	if ((rc = weft_ctx_result(ctx, &res)) != WEFT_OK) {
		fail_rc(c, "result", rc);
		goto out;
	}
	c->t1 = bench_now_ns();
	c->t0 = atomic_load_explicit(&c->t0_callee, memory_order_acquire);
	uint64_t sent = 0;
	if (res.len == sizeof(sent))
		memcpy(&sent, res.data, sizeof(sent));
	if (sent != c->n || count != c->n)
		failf(c, "the callee sent %llu, the caller counted %llu, of %llu",
		      (unsigned long long)sent, (unsigned long long)count,
		      (unsigned long long)c->n);
out:
	if (weft_ctx_exit(ctx, rc == WEFT_EEOC ? WEFT_OK : rc) != WEFT_OK &&
	    !c->failed)
		fail_rc(c, "exit", rc);
	weft_ctx_free(ctx);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

static weft_err
rtt(struct cb *c, weft_portal *p)
{
	weft_ctx *ctx;
	weft_stream *s;
	weft_payload it;
	weft_err rc;

	if ((rc = weft_open_context(p, "bench:echo", NULL, 0, NULL, &ctx,
	                            NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		return rc;
	}
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK) {
		fail_rc(c, "open_stream", rc);
		goto out;
	}
	c->t0 = bench_now_ns();
	for (uint64_t i = 0; i < c->n; i++) {
		uint32_t v = (uint32_t)i, w = ~0u;
		if ((rc = weft_stream_send(s, &v, sizeof(v))) != WEFT_OK) {
			fail_rc(c, "send", rc);
			goto out;
		}
		if ((rc = weft_stream_recv(s, &it)) != WEFT_OK) {
			fail_rc(c, "recv", rc);
			goto out;
		}
		if (it.len == sizeof(w))
			memcpy(&w, it.data, sizeof(w));
		weft_payload_free(&it);
		if (w != v) {
			failf(c, "echo %u of %u", w, v);
			rc = WEFT_EFAILED;
			goto out;
		}
	}
	c->t1 = bench_now_ns();
	weft_stream_close(s);
out:
	if ((rc = weft_ctx_exit(ctx, rc)) != WEFT_OK && !c->failed)
		fail_rc(c, "exit", rc);
	weft_ctx_free(ctx);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

/* After weft_ctx_cancel(): false if the callee did not acknowledge within
 * weft's 0.616 s. Then exiting would wait for the callee's result, which
 * never comes while it still blocks: cancel the callee actor as a whole
 * (that cancels every task of it) so the benchmark fails instead of
 * hanging. */
static bool
check_acked(struct cb *c, weft_portal *p, weft_ctx *ctx, uint64_t i)
{
	if (weft_ctx_cancel_acked(ctx))
		return true;
	failf(c,
	      "context #%llu: weft_ctx_cancel() got no acknowledgement "
	      "within 0.616 s: the callee (%s) was not cancelled; "
	      "cancelling the callee actor to end the run",
	      (unsigned long long)i, c->block_fn);
	weft_portal_cancel_actor(p, NULL);
	return false;
}

/* One open / cancel / exit cycle; false (and c->failed) on a failure. */
static bool
open_cancel_one(struct cb *c, weft_portal *p, uint64_t i)
{
	weft_ctx *ctx;
	weft_err rc;

	if ((rc = weft_open_context(p, c->block_fn, NULL, 0, NULL, &ctx,
	                            NULL)) != WEFT_OK) {
		fail_rc(c, "open_context", rc);
		return false;
	}
	weft_ctx_cancel(ctx);
	check_acked(c, p, ctx, i);
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
open_cancel(struct cb *c, weft_portal *p)
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
portal_run(struct cb *c, weft_portal *p)
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
ctx_10k(struct cb *c, weft_portal *p)
{
	weft_ctx **ctxs = calloc(c->n, sizeof(*ctxs));
	uint64_t opened = 0;
	weft_err rc;

	if (ctxs == NULL) {
		failf(c, "out of memory");
		return WEFT_ENOMEM;
	}
	c->rss_base_kib = proc_status_kib("VmRSS");
	c->t0 = bench_now_ns();
	for (; opened < c->n; opened++) {
		if ((rc = weft_open_context(p, c->block_fn, NULL, 0, NULL,
		                            &ctxs[opened], NULL)) != WEFT_OK) {
			char what[64];
			snprintf(what, sizeof(what), "open #%llu",
			         (unsigned long long)opened);
			fail_rc(c, what, rc);
			break;
		}
	}
	c->t_open = bench_now_ns();
	c->rss_open_kib = proc_status_kib("VmRSS");
	c->hwm_open_kib = proc_status_kib("VmHWM");
	/* Cancel and exit them, the last opened first (scopes nest). */
	while (opened > 0) {
		weft_ctx *ctx = ctxs[--opened];
		weft_ctx_cancel(ctx);
		if (!c->failed)
			check_acked(c, p, ctx, opened);
		rc = weft_ctx_exit(ctx, WEFT_OK);
		if ((rc != WEFT_OK || !weft_ctx_cancel_acked(ctx)) &&
		    !c->failed) {
			char what[96];
			snprintf(what, sizeof(what), "exit #%llu (acked=%d)",
			         (unsigned long long)opened,
			         weft_ctx_cancel_acked(ctx));
			fail_rc(c, what, rc);
		}
		weft_ctx_free(ctx);
	}
	c->t1 = bench_now_ns();
	free(ctxs);
	return c->failed ? WEFT_EFAILED : WEFT_OK;
}

/* ---- the harness ---- */

enum which { B_STREAM, B_RTT, B_OPEN_CANCEL, B_PORTAL_RUN, B_10K };

struct job {
	struct cb *c;
	enum which w;
};

static weft_err
caller_main(void *arg)
{
	struct job *j = arg;
	struct cb *c = j->c;
	weft_portal *p;
	weft_err rc;

	if ((rc = weft_portal_open(c->b->rt, c->callee, &p)) != WEFT_OK) {
		failf(c, "portal_open: %s", weft_strerror(rc));
		return rc;
	}
	switch (j->w) {
	case B_STREAM: rc = c->rev ? stream_rev(c, p) : stream_fwd(c, p); break;
	case B_RTT: rc = rtt(c, p); break;
	case B_OPEN_CANCEL: rc = open_cancel(c, p); break;
	case B_PORTAL_RUN: rc = portal_run(c, p); break;
	case B_10K: rc = ctx_10k(c, p); break;
	}
	weft_portal_free(p);
	return rc;
}

/* One run: a fresh runtime, the callee, the caller task, the line, the
 * clean-up checks. Returns the exit code. */
static int
run_one(const struct bench_opts *o, enum which w, const char *name,
        uint64_t n, bool rev)
{
	static struct cb c; /* the callee functions' argument */
	struct bench b;
	char extra[256];
	weft_error *err = NULL;
	int code = 0;

	memset(&c, 0, sizeof(c));
	reset_peak_rss();
	bench_open(&b, o);
	c.b = &b;
	c.name = name;
	c.n = n;
	c.rev = rev;
	c.block_fn = o->block ? "bench:block-recv" : "bench:block";
	if (w == B_STREAM) {
		unsigned buf = o->bufsize ? (unsigned)o->bufsize : 0;
		c.copts.allow_overruns = o->overruns == 1;
		c.copts.msg_buffer_size = buf;
		c.sopts.allow_overruns = o->overruns == 1;
		c.sopts.msg_buffer_size = buf;
		if (rev)
			snprintf(b.cfg, sizeof(b.cfg), "w%u-rev", o->workers);
	}

	weft_function fns[] = {
		{"bench:count", fn_count, &c},
		{"bench:produce", fn_produce, &c},
		{"bench:echo", fn_echo, &c},
		{"bench:block", fn_block, &c},
		{"bench:block-recv", fn_block_recv, &c},
		{"bench:answer", fn_answer, &c},
	};
	weft_spawn_opts so = {
		.name = "callee",
		.functions = fns,
		.nfunctions = sizeof(fns) / sizeof(fns[0]),
	};
	weft_err rc = weft_spawn(b.rt, &so, &c.callee);
	if (rc != WEFT_OK)
		bench_die("weft_spawn(callee): %s", weft_strerror(rc));

	struct job j = {&c, w};
	rc = weft_task_run(b.rt, "caller", caller_main, &j, &err);
	if (rc != WEFT_OK || c.failed) {
		char buf[384];
		bool why = c.failed || err == NULL;
		fprintf(stderr, "weft_bench: %s %s: %s%s%s\n", name, b.cfg,
		        c.failed ? c.why : weft_strerror(rc),
		        why ? "" : ": ",
		        why ? "" : weft_error_format(err, buf, sizeof(buf)));
		weft_error_release(err);
		if (w == B_10K && c.t_open)
			fprintf(stderr,
			        "weft_bench: %s %s: before the failure: open_ms=%.1f "
			        "rss_kib=%ld hwm_kib=%ld base_rss_kib=%ld\n",
			        name, b.cfg, (double)(c.t_open - c.t0) / 1e6,
			        c.rss_open_kib, c.hwm_open_kib, c.rss_base_kib);
		code = 1;
	} else {
		double secs = (double)(c.t1 - c.t0) / 1e9;
		switch (w) {
		case B_STREAM:
			snprintf(extra, sizeof(extra),
			         "ok=1 overruns=%s buf=%u peak_rss_kib=%ld",
			         c.copts.allow_overruns ? "allow" : "refuse",
			         c.copts.msg_buffer_size ? c.copts.msg_buffer_size
			                                 : 64,
			         bench_peak_rss_kib());
			bench_report(&b, name, n, c.t0, c.t1, "msgs/s", extra);
			if (o->verbose)
				fprintf(stderr,
				        "weft_bench: %s %s: the sender's loop "
				        "took %.4f s of %.4f s\n",
				        name, b.cfg,
				        (double)(c.t_sent - c.t0) / 1e9, secs);
			break;
		case B_RTT:
			snprintf(extra, sizeof(extra), "us_per_rt=%.3f",
			         secs * 1e6 / (double)n);
			bench_report(&b, name, n, c.t0, c.t1, "roundtrips/s",
			             extra);
			break;
		case B_OPEN_CANCEL:
			snprintf(extra, sizeof(extra),
			         "us_per_cycle=%.3f block=%s",
			         secs * 1e6 / (double)n,
			         o->block ? "recv" : "sleep");
			bench_report(&b, name, n, c.t0, c.t1, "cycles/s", extra);
			if (o->verbose && n >= 10)
				fprintf(stderr,
				        "weft_bench: %s %s: us per cycle over the "
				        "first 10%%: %.3f, the last 10%%: %.3f\n",
				        name, b.cfg,
				        (double)(c.t_first10 - c.t0) / 1e3 /
				                (double)(n / 10),
				        (double)(c.t1 - c.t_last10) / 1e3 /
				                (double)(n / 10));
			break;
		case B_PORTAL_RUN:
			snprintf(extra, sizeof(extra), "us_per_call=%.3f",
			         secs * 1e6 / (double)n);
			bench_report(&b, name, n, c.t0, c.t1, "calls/s", extra);
			break;
		case B_10K: {
			double open_ms = (double)(c.t_open - c.t0) / 1e6;
			double close_ms = (double)(c.t1 - c.t_open) / 1e6;
			long per = c.rss_open_kib > 0 && c.rss_base_kib > 0
			                   ? (c.rss_open_kib - c.rss_base_kib) *
			                             1024 / (long)n
			                   : -1;
			snprintf(extra, sizeof(extra),
			         "open_ms=%.1f close_ms=%.1f rss_kib=%ld "
			         "hwm_kib=%ld base_rss_kib=%ld bytes_per_ctx=%ld "
			         "block=%s",
			         open_ms, close_ms, c.rss_open_kib,
			         c.hwm_open_kib, c.rss_base_kib, per,
			         o->block ? "recv" : "sleep");
			bench_report(&b, name, n, c.t0, c.t1, "contexts/s",
			             extra);
			break;
		}
		}
	}
	weft_aid stop[] = {c.callee};
	if (bench_finish(&b, stop, 1) != 0)
		code = 1;
	int64_t lt = weft_live_tasks(), lc = weft_live_contexts(),
	        le = weft_live_errors();
	if (lt != 0 || lc != 0 || le != 0) {
		fprintf(stderr,
		        "weft_bench: after close: %lld task(s), %lld "
		        "context(s), %lld error record(s) still alive\n",
		        (long long)lt, (long long)lc, (long long)le);
		code = 1;
	}
	return code;
}

int
run_ctx_stream(const struct bench_opts *o)
{
	uint64_t n = o->n ? (uint64_t)o->n : 2000000u;
	int code = 0;

	if (o->dir != 2)
		code |= run_one(o, B_STREAM, "ctx-stream", n, false);
	if (o->dir != 1)
		code |= run_one(o, B_STREAM, "ctx-stream", n, true);
	return code;
}

int
run_ctx_rtt(const struct bench_opts *o)
{
	return run_one(o, B_RTT, "ctx-rtt", o->n ? (uint64_t)o->n : 200000u,
	               false);
}

int
run_ctx_open_cancel(const struct bench_opts *o)
{
	return run_one(o, B_OPEN_CANCEL, "ctx-open-cancel",
	               o->n ? (uint64_t)o->n : 1000000u, false);
}

int
run_portal_run(const struct bench_opts *o)
{
	return run_one(o, B_PORTAL_RUN, "portal-run",
	               o->n ? (uint64_t)o->n : 200000u, false);
}

int
run_ctx_10k(const struct bench_opts *o)
{
	return run_one(o, B_10K, "ctx-10k", o->n ? (uint64_t)o->n : 10000u,
	               false);
}

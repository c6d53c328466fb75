/* examples/tree.c - weft_tree: a tree of actors in four child processes.
 *
 *                          root (this process)
 *          +--------------+------+-------+--------------+
 *      collector       worker-1       worker-2       worker-3
 *                 (each a forked child process: WEFT_SPAWN_PROCESS)
 *
 * Each worker streams the primes of its third of [0, 3000) to the root
 * over a context; the root relays every prime to the collector over
 * another context. An actor address (weft_aid) means something only in its
 * own process, so the children never address each other: everything goes
 * through the root, which holds every portal. worker-1 is slow on purpose;
 * worker-2, once done, asks the root to cancel it, and the root cancels
 * worker-1's actor (weft_portal_cancel_actor). Each side says what it saw.
 * Then the nursery tears the tree down and the root checks that no child
 * process is left. Exit status 0 iff every outcome is the expected one. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft/weft.h"

#define NWORKERS 3
#define LIMIT 3000 /* primes below this, a third per worker */

enum { PRIME, ASK_CANCEL, CANCEL_DONE }; /* what an item says */
struct item { unsigned kind, worker, value; };
struct job { unsigned worker, lo, hi, pause_ms, cancel_target; };
struct totals { unsigned count[NWORKERS + 1], sum[NWORKERS + 1]; };

static bool
is_prime(unsigned n)
{
	for (unsigned d = 2; d * d <= n; d++)
		if (n % d == 0)
			return false;
	return n >= 2;
}

/* One line per event, flushed at once: the children share our stdout and
 * leave with _exit(), which flushes nothing. */
static void
say(const char *who, const char *fmt, ...)
{
	va_list ap;
	printf("%-10s [pid %5d] ", who, (int)getpid());
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static const char *
uidstr(const weft_uid *u, char *buf)
{
	return u ? weft_uid_format(u, buf, 64) : "nobody";
}

/* ---- the children: each function runs in its own process ---- */

/* "primes:find": streams the primes of [lo, hi), returns how many. */
static weft_err
find_primes(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	struct job j;
	char me[16], who[64];
	weft_stream *s;
	unsigned sent = 0;
	weft_err rc;

	(void)arg;
	memcpy(&j, args->data, sizeof(j));
	snprintf(me, sizeof(me), "worker-%u", j.worker);
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK ||
	    (rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK)
		return rc;
	for (unsigned n = j.lo; n < j.hi && rc == WEFT_OK; n++) {
		struct item it = {PRIME, j.worker, n};
		if (!is_prime(n))
			continue;
		if ((rc = weft_stream_send(s, &it, sizeof(it))) == WEFT_OK)
			sent++;
		if (rc == WEFT_OK && j.pause_ms)
			rc = weft_sleep(j.pause_ms * 1000000ull);
	}
	if (rc == WEFT_ECANCELED) { /* our actor was cancelled: by whom? */
		say(me, "cancelled after sending %u prime(s); canceller: %s",
		    sent, uidstr(weft_ctx_canceller(ctx), who));
		return rc; /* the runtime sends the root a ContextCancelled */
	}
	if (rc == WEFT_OK && j.cancel_target) {
		struct item ask = {ASK_CANCEL, j.worker, j.cancel_target}, r;
		weft_payload reply;
		say(me, "sent its %u primes; asks the root to cancel worker-%u",
		    sent, j.cancel_target);
		if ((rc = weft_stream_send(s, &ask, sizeof(ask))) == WEFT_OK &&
		    (rc = weft_stream_recv(s, &reply)) == WEFT_OK) {
			memcpy(&r, reply.data, sizeof(r));
			weft_payload_free(&reply);
			say(me, "the root says worker-%u is cancelled (acked=%s)",
			    r.worker, r.value ? "yes" : "no");
		}
	}
	return rc == WEFT_OK ? weft_ctx_return(ctx, &sent, sizeof(sent)) : rc;
}

/* "tally:collect": counts and sums the primes per worker until the root
 * closes the stream, then returns the totals. */
static weft_err
collect(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	struct totals t = {0};
	weft_stream_opts so = {.msg_buffer_size = 1024};
	weft_payload p;
	weft_stream *s;
	weft_err rc;

	(void)args;
	(void)arg;
	if ((rc = weft_ctx_started(ctx, NULL, 0)) != WEFT_OK ||
	    (rc = weft_ctx_open_stream(ctx, &so, &s)) != WEFT_OK)
		return rc;
	while ((rc = weft_stream_recv(s, &p)) == WEFT_OK) {
		struct item it;
		memcpy(&it, p.data, sizeof(it));
		weft_payload_free(&p);
		t.count[it.worker]++;
		t.sum[it.worker] += it.value;
	}
	if (rc != WEFT_EEOC)
		return rc;
	say("collector", "the root closed the stream; returns %u primes",
	    t.count[1] + t.count[2] + t.count[3]);
	return weft_ctx_return(ctx, &t, sizeof(t));
}

static const weft_function worker_fns[] = {{"primes:find", find_primes, NULL}};
static const weft_function collector_fns[] = {{"tally:collect", collect, NULL}};

/* ---- the root: tasks of one actor, in this process ---- */

struct root {
	weft_portal *worker[NWORKERS + 1]; /* [1..3] */
	weft_stream *to_collector;
	unsigned expected[NWORKERS + 1], returned[NWORKERS + 1];
	unsigned relayed[NWORKERS + 1], requested_by[NWORKERS + 1];
	bool ctxc_ok[NWORKERS + 1]; /* ended with our ContextCancelled */
};
struct relay { struct root *r; unsigned w; };

/* One task per worker: worker-w -> root -> collector. */
static weft_err
relay(void *arg)
{
	struct root *r = ((struct relay *)arg)->r;
	unsigned w = ((struct relay *)arg)->w;
	/* After each prime worker-1 pauses 10 ms, worker-2 1 ms (and asks
	 * for worker-1's cancel once done), worker-3 not at all. */
	static const unsigned pause_ms[] = {0, 10, 1, 0};
	struct job j = {w, (w - 1) * LIMIT / NWORKERS, w * LIMIT / NWORKERS,
	                pause_ms[w], w == 2 ? 1 : 0};
	weft_ctx_opts co = {.msg_buffer_size = 1024};
	weft_payload p;
	weft_stream *s;
	weft_ctx *ctx;
	char who[64];
	weft_err rc;

	for (unsigned n = j.lo; n < j.hi; n++)
		r->expected[w] += is_prime(n);
	if ((rc = weft_open_context(r->worker[w], "primes:find", &j, sizeof(j),
	                            &co, &ctx, NULL)) != WEFT_OK)
		return rc;
	if ((rc = weft_ctx_open_stream(ctx, NULL, &s)) != WEFT_OK)
		return weft_ctx_exit(ctx, rc);
	while (rc == WEFT_OK && (rc = weft_stream_recv(s, &p)) == WEFT_OK) {
		struct item it;
		memcpy(&it, p.data, sizeof(it));
		weft_payload_free(&p);
		if (it.kind == PRIME) {
			r->relayed[w]++;
			rc = weft_stream_send(r->to_collector, &it, sizeof(it));
		} else if (it.kind == ASK_CANCEL && it.value >= 1 &&
		           it.value <= NWORKERS) {
			/* Only the root holds worker-1's portal, so the
			 * root is the one that cancels it. */
			bool acked = false;
			say("root", "worker-%u asks to cancel worker-%u: "
			    "weft_portal_cancel_actor(worker-%u)", w, it.value,
			    it.value);
			r->requested_by[it.value] = w;
			weft_portal_cancel_actor(r->worker[it.value], &acked);
			struct item done = {CANCEL_DONE, it.value, acked};
			rc = weft_stream_send(s, &done, sizeof(done));
		}
	}
	if (rc == WEFT_EEOC && (rc = weft_ctx_result(ctx, &p)) == WEFT_OK) {
		memcpy(&r->returned[w], p.data, sizeof(unsigned));
		say("root", "worker-%u returned %u primes in [%u, %u) "
		    "(expected %u)", w, r->returned[w], j.lo, j.hi,
		    r->expected[w]);
	} else if (rc == WEFT_EREMOTE) { /* e.g. a ContextCancelled */
		const weft_error *e = weft_ctx_remote_error(ctx);
		const weft_uid *c = e ? weft_error_canceller(e) : NULL;
		say("root", "worker-%u's context ended: %s, canceller %s "
		    "(requested by worker-%u), after %u of %u primes", w,
		    e ? weft_error_boxed_type(e) : "?", uidstr(c, who),
		    r->requested_by[w], r->relayed[w], r->expected[w]);
		r->ctxc_ok[w] =
			e && weft_error_kind(e) == WEFT_ERRKIND_CONTEXT_CANCELLED &&
			c && memcmp(c, weft_current_uid(), sizeof(*c)) == 0;
	}
	weft_ctx_exit(ctx, rc);
	weft_ctx_free(ctx);
	return rc == WEFT_OK || r->ctxc_ok[w] ? WEFT_OK : rc;
}

/* Our child processes, from /proc (a nursery does not show their pids):
 * the processes whose parent is us. Fills pids[] (up to 8), returns how
 * many there are. */
static int
children(pid_t *pids, bool print)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)) != NULL) {
		char path[300], buf[512], *rp, state;
		int ppid;
		FILE *f;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		buf[fread(buf, 1, sizeof(buf) - 1, f)] = '\0';
		fclose(f);
		/* "pid (comm) state ppid ...": comm may hold anything. */
		if ((rp = strrchr(buf, ')')) == NULL ||
		    sscanf(rp + 1, " %c %d", &state, &ppid) != 2 ||
		    ppid != getpid())
			continue;
		*rp = '\0';
		if (print)
			say("root", "  child process %s %-14s state %c",
			    de->d_name, strchr(buf, '(') + 1, state);
		if (n < 8)
			pids[n] = atoi(de->d_name);
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static weft_err
root_main(void *arg)
{
	struct root r = {0};
	struct relay rl[NWORKERS + 1];
	weft_task *tasks[NWORKERS + 1] = {0};
	weft_portal *collector;
	weft_nursery *n;
	weft_ctx *cctx;
	weft_payload res;
	pid_t pids[8], none[8];
	bool *ok = arg;
	char me[64];
	weft_err rc;

	say("root", "is %s; starts 4 actors, each in its own process",
	    uidstr(weft_current_uid(), me));
	if ((rc = weft_nursery_open(&n)) != WEFT_OK)
		return rc;
	weft_actor_opts o = {"collector", collector_fns, 1, WEFT_SPAWN_PROCESS};
	rc = weft_nursery_start_actor(n, &o, &collector);
	for (unsigned w = 1; w <= NWORKERS && rc == WEFT_OK; w++) {
		char name[16];
		snprintf(name, sizeof(name), "worker-%u", w);
		o = (weft_actor_opts){name, worker_fns, 1, WEFT_SPAWN_PROCESS};
		rc = weft_nursery_start_actor(n, &o, &r.worker[w]);
	}
	int nkids = children(pids, true);
	weft_ctx_opts co = {.msg_buffer_size = 1024};
	if (rc == WEFT_OK)
		rc = weft_open_context(collector, "tally:collect", NULL, 0, &co,
		                       &cctx, NULL);
	if (rc != WEFT_OK)
		return weft_nursery_exit(n, rc); /* cancels what was started */

	/* The body: one relay task per worker, all feeding one stream. */
	if ((rc = weft_ctx_open_stream(cctx, NULL, &r.to_collector)) == WEFT_OK) {
		for (unsigned w = 1; w <= NWORKERS; w++) {
			rl[w] = (struct relay){&r, w};
			if (weft_task_spawn(relay, &rl[w], &tasks[w]) != WEFT_OK)
				rc = WEFT_EFAILED;
		}
		for (unsigned w = 1; w <= NWORKERS; w++)
			if (tasks[w] && weft_task_join(tasks[w]) != WEFT_OK)
				rc = WEFT_EFAILED;
		weft_stream_close(r.to_collector); /* the collector returns */
	}
	if (rc == WEFT_OK && (rc = weft_ctx_result(cctx, &res)) == WEFT_OK) {
		struct totals t;
		memcpy(&t, res.data, sizeof(t));
		for (unsigned w = 1; w <= NWORKERS; w++) {
			say("root", "collector's total for worker-%u: %3u primes, "
			    "sum %6u", w, t.count[w], t.sum[w]);
			*ok &= t.count[w] == r.relayed[w];
		}
	}
	weft_ctx_exit(cctx, rc);
	weft_ctx_free(cctx);
	/* worker-1 was stopped short; the others delivered everything. */
	*ok &= rc == WEFT_OK && nkids == 1 + NWORKERS && r.ctxc_ok[1] &&
	       r.requested_by[1] == 2 && r.relayed[1] < r.expected[1];
	for (unsigned w = 2; w <= NWORKERS; w++)
		*ok &= r.returned[w] == r.expected[w] &&
		       r.relayed[w] == r.expected[w];

	/* Teardown: daemons live until cancelled; the exit then waits for
	 * every child process and reaps it. */
	double t0 = now_ms();
	weft_nursery_cancel(n);
	rc = weft_nursery_exit(n, rc);
	say("root", "nursery cancelled and exited: %s, in %.1f ms",
	    weft_errname(rc), now_ms() - t0);
	/* Nothing in /proc names us as its parent, none of the pids seen
	 * exists, and waitpid has no child left to report. */
	int left = children(none, true);
	for (int i = 0; i < nkids && i < 8; i++)
		left += kill(pids[i], 0) == 0 || errno != ESRCH;
	left += waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD;
	if (left == 0)
		say("root", "no process left behind");
	*ok &= rc == WEFT_OK && left == 0;
	return rc;
}

int
main(void)
{
	weft_runtime *rt;
	weft_error *err = NULL;
	bool ok = true;

	if (weft_runtime_open(NULL, &rt) != WEFT_OK)
		return 1;
	weft_err rc = weft_task_run(rt, "root", root_main, &ok, &err);
	if (rc != WEFT_OK) {
		char buf[256];
		fprintf(stderr, "weft_tree: root failed: %s\n",
		        err ? weft_error_format(err, buf, sizeof(buf))
		            : weft_strerror(rc));
	}
	weft_error_release(err);
	weft_runtime_close(rt, NULL);
	ok &= rc == WEFT_OK;
	printf("weft_tree: %s\n", ok ? "ok" : "FAILED");
	return ok ? 0 : 1;
}

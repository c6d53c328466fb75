/* bench/spawn_process.c - B13 of shared/bench-spec.md: actors in child
 * processes (weft_actor_opts.where = WEFT_SPAWN_PROCESS).
 *
 * One runtime (-w K workers; every child copies the configuration) and one
 * root task (weft_task_run on the main thread) that measures, each time in
 * a fresh nursery:
 *
 *   (a) first result   N times (-n, default 50): from weft_nursery_open()
 *       and the weft_nursery_start_actor() call that forks the child (as
 *       tractor's open_nursery() + start_actor()) to the return
 *       of the first weft_portal_run() of "bench:answer" on its portal
 *       (the answer is checked). The teardown that follows
 *       (weft_nursery_cancel + weft_nursery_exit, which reaps the child)
 *       is timed apart. Line cfg=wK: ms= the median, p90_ms, min_ms,
 *       max_ms, cold_ms (the first spawn of the run: it also opens this
 *       process's listener and I/O thread; counted in the median like the
 *       others), start_ms (the median of the start_actor call alone: fork,
 *       the child's runtime, its dial back and handshake), teardown_ms
 *       (median); rate = 1000 / median (spawns/s), so that
 *       summarize.sh's median is the median of ms.
 *   (b) tree   R times (-r, default 10): open a nursery, start A children
 *       (-a, default 10) one after the other, one portal run on each, then
 *       weft_nursery_cancel + weft_nursery_exit (every child reaped). Line
 *       cfg=wK-treeA: ms= the median of the whole, spawn_ms (start + calls)
 *       and teardown_ms (their medians), ms_min, ms_max; rate = A children
 *       per second of the median run.
 *   (c) idle RSS, once: one child, one portal run, then IDLE_MS (1 s, as
 *       tractor's script) of idleness; the child's VmRSS (as tractor
 *       reports) and its Pss (/proc/PID/smaps_rollup: a fork shares its
 *       untouched pages with the parent, which VmRSS counts in full), and
 *       the root process's VmRSS. On line (a): child_rss_kib,
 *       child_pss_kib, root_rss_kib, idle_ms. The nursery does not give a
 *       child's pid: the child is the one process whose parent is us
 *       (the ppid field of /proc/PID/stat).
 *
 * After every teardown the run checks that no child process is left
 * (waitpid(-1, WNOHANG) reports ECHILD); at the end, as every benchmark,
 * that nothing leaked (bench_finish, and no task, context or error record
 * alive). A failure exits 1 without a line. */
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define IDLE_MS 1000u

/* The child's one function: returns its int argument + 1. */
static weft_err
fn_answer(weft_ctx *ctx, const weft_payload *args, void *arg)
{
	uint32_t v = 0;

	(void)arg;
	if (args->len == sizeof(v))
		memcpy(&v, args->data, sizeof(v));
	v++;
	return weft_ctx_return(ctx, &v, sizeof(v));
}

static const weft_function child_fns[] = {
	{"bench:answer", fn_answer, NULL},
};

struct sp {
	struct bench *b;
	long n, tree, runs;
	double *first_ms, *first_start_ms, *first_td_ms; /* (a), n each */
	double *tree_ms, *tree_spawn_ms, *tree_td_ms; /* (b), runs each */
	long child_rss, child_pss, root_rss;          /* (c), KiB */
	char why[256]; /* the first failure */
};

static weft_err
fail(struct sp *s, const char *what, weft_err rc)
{
	if (s->why[0] == '\0') {
		const weft_error *e = weft_task_error();
		char buf[160];
		snprintf(s->why, sizeof(s->why), "%s: %s%s%s", what,
		         weft_strerror(rc), e ? ": " : "",
		         e ? weft_error_format(e, buf, sizeof(buf)) : "");
	}
	return rc ? rc : WEFT_EFAILED;
}

static double
ms_since(uint64_t t0)
{
	return (double)(bench_now_ns() - t0) / 1e6;
}

/* Starts a child process and runs "bench:answer" once on it; *start_ms
 * (may be NULL) is how long weft_nursery_start_actor() took. */
static weft_err
spawn_and_call(struct sp *s, weft_nursery *n, uint32_t i, weft_portal **out,
               double *start_ms)
{
	uint64_t t0 = bench_now_ns();
	weft_actor_opts ao = {"child", child_fns, 1, WEFT_SPAWN_PROCESS};
	weft_payload res;
	uint32_t got = 0;
	weft_err rc;

	if ((rc = weft_nursery_start_actor(n, &ao, out)) != WEFT_OK)
		return fail(s, "weft_nursery_start_actor", rc);
	if (start_ms)
		*start_ms = ms_since(t0);
	if ((rc = weft_portal_run(*out, "bench:answer", &i, sizeof(i),
	                          &res)) != WEFT_OK)
		return fail(s, "weft_portal_run", rc);
	if (res.len == sizeof(got))
		memcpy(&got, res.data, sizeof(got));
	weft_payload_free(&res);
	if (got != i + 1)
		return fail(s, "bench:answer returned a wrong value",
		            WEFT_EFAILED);
	return WEFT_OK;
}

/* Cancels and exits the nursery (it reaps its children), then checks that
 * this process has no child left. `body` is how the body ended. */
static weft_err
teardown(struct sp *s, weft_nursery *n, weft_err body)
{
	weft_err rc;

	if (body == WEFT_OK)
		weft_nursery_cancel(n);
	rc = weft_nursery_exit(n, body);
	if (body != WEFT_OK)
		return body;
	if (rc != WEFT_OK)
		return fail(s, "weft_nursery_exit", rc);
	if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
		return fail(s, "a child process outlived weft_nursery_exit",
		            WEFT_EFAILED);
	return WEFT_OK;
}

/* A KiB figure ("Key:   123 kB") from a /proc file; -1 if absent. */
static long
proc_kib(const char *path, const char *key)
{
	FILE *f = fopen(path, "r");
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

/* The pid of our one child process (ppid field of /proc/PID/stat), or -1
 * if there is not exactly one. */
static pid_t
only_child(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = -1;
	int count = 0;

	while (d && (de = readdir(d)) != NULL) {
		char path[300], buf[512], *rp, state;
		int ppid;
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		/* "pid (comm) state ppid ...": comm may hold anything. */
		if ((rp = strrchr(buf, ')')) != NULL &&
		    sscanf(rp + 1, " %c %d", &state, &ppid) == 2 &&
		    ppid == (int)getpid()) {
			found = (pid_t)atoi(de->d_name);
			count++;
		}
	}
	if (d)
		closedir(d);
	return count == 1 ? found : -1;
}

static weft_err
measure(struct sp *s)
{
	weft_nursery *n;
	weft_portal *p;
	weft_err rc;

	/* (a) spawn to first result, then the teardown. */
	for (long i = 0; i < s->n; i++) {
		uint64_t t0 = bench_now_ns();
		if ((rc = weft_nursery_open(&n)) != WEFT_OK)
			return fail(s, "weft_nursery_open", rc);
		rc = spawn_and_call(s, n, (uint32_t)i, &p,
		                    &s->first_start_ms[i]);
		s->first_ms[i] = ms_since(t0);
		uint64_t t1 = bench_now_ns();
		if ((rc = teardown(s, n, rc)) != WEFT_OK)
			return rc;
		s->first_td_ms[i] = ms_since(t1);
	}

	/* (b) a tree of s->tree children: spawn, one call each, tear down. */
	for (long r = 0; r < s->runs; r++) {
		uint64_t t0 = bench_now_ns();
		if ((rc = weft_nursery_open(&n)) != WEFT_OK)
			return fail(s, "weft_nursery_open", rc);
		for (long i = 0; i < s->tree && rc == WEFT_OK; i++)
			rc = spawn_and_call(s, n, (uint32_t)i, &p, NULL);
		s->tree_spawn_ms[r] = ms_since(t0);
		if ((rc = teardown(s, n, rc)) != WEFT_OK)
			return rc;
		s->tree_ms[r] = ms_since(t0);
		s->tree_td_ms[r] = s->tree_ms[r] - s->tree_spawn_ms[r];
	}

	/* (c) one child, up and idle. */
	if ((rc = weft_nursery_open(&n)) != WEFT_OK)
		return fail(s, "weft_nursery_open", rc);
	rc = spawn_and_call(s, n, 0, &p, NULL);
	if (rc == WEFT_OK &&
	    (rc = weft_sleep(IDLE_MS * 1000000ull)) != WEFT_OK)
		fail(s, "weft_sleep", rc);
	if (rc == WEFT_OK) {
		pid_t pid = only_child();
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
		s->child_rss = pid > 0 ? proc_kib(path, "VmRSS") : -1;
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
		s->child_pss = pid > 0 ? proc_kib(path, "Pss") : -1;
		s->root_rss = proc_kib("/proc/self/status", "VmRSS");
		if (s->child_rss < 0)
			rc = fail(s, "no child process found in /proc",
			          WEFT_EFAILED);
	}
	return teardown(s, n, rc);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Sorts v and returns its q-quantile (nearest rank; 0.5: the lower
 * median, as summarize.sh takes). */
static double
quantile(double *v, long n, double q)
{
	long k = (long)(q * (double)n + 0.999999);

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	if (k < 1)
		k = 1;
	return v[(k > n ? n : k) - 1];
}

static double
sum(const double *v, long n)
{
	double t = 0;
	for (long i = 0; i < n; i++)
		t += v[i];
	return t;
}

static weft_err
root_main(void *arg)
{
	return measure(arg);
}

int
run_spawn_process(const struct bench_opts *o)
{
	struct bench b;
	struct sp s = {0};
	weft_error *err = NULL;
	int code = 0;

	bench_open(&b, o);
	s.b = &b;
	s.n = o->n ? o->n : 50;
	s.tree = o->actors ? o->actors : 10;
	s.runs = o->ring ? o->ring : 10;
	double *mem = calloc((size_t)(3 * s.n + 3 * s.runs), sizeof(double));
	if (mem == NULL)
		bench_die("out of memory");
	s.first_ms = mem;
	s.first_start_ms = mem + s.n;
	s.first_td_ms = mem + 2 * s.n;
	s.tree_ms = mem + 3 * s.n;
	s.tree_spawn_ms = s.tree_ms + s.runs;
	s.tree_td_ms = s.tree_spawn_ms + s.runs;

	weft_err rc = weft_task_run(b.rt, "root", root_main, &s, &err);
	if (rc != WEFT_OK || s.why[0]) {
		char buf[256];
		fprintf(stderr, "weft_bench: spawn-process %s: %s\n", b.cfg,
		        s.why[0] ? s.why
		        : err    ? weft_error_format(err, buf, sizeof(buf))
		                 : weft_strerror(rc));
		code = 1;
	} else {
		if (o->verbose) {
			fprintf(stderr, "weft_bench: first result ms:");
			for (long i = 0; i < s.n; i++)
				fprintf(stderr, " %.2f", s.first_ms[i]);
			fprintf(stderr, "\nweft_bench: tree ms:");
			for (long r = 0; r < s.runs; r++)
				fprintf(stderr, " %.1f", s.tree_ms[r]);
			fputc('\n', stderr);
		}
		double cold = s.first_ms[0]; /* before sorting */
		double total = sum(s.first_ms, s.n) / 1e3;
		double min = quantile(s.first_ms, s.n, 0);
		double max = s.first_ms[s.n - 1];
		double p90 = quantile(s.first_ms, s.n, 0.9);
		double med = quantile(s.first_ms, s.n, 0.5);
		printf("bench=spawn-process peer=weft cfg=%s n=%ld secs=%.4f "
		       "rate=%.1f unit=ms ms=%.3f p90_ms=%.3f min_ms=%.3f "
		       "max_ms=%.3f cold_ms=%.3f start_ms=%.3f "
		       "teardown_ms=%.3f child_rss_kib=%ld child_pss_kib=%ld "
		       "root_rss_kib=%ld idle_ms=%u\n",
		       b.cfg, s.n, total, 1e3 / med, med, p90, min, max, cold,
		       quantile(s.first_start_ms, s.n, 0.5),
		       quantile(s.first_td_ms, s.n, 0.5), s.child_rss,
		       s.child_pss, s.root_rss, IDLE_MS);
		double tmin = quantile(s.tree_ms, s.runs, 0);
		double tmax = s.tree_ms[s.runs - 1];
		double tmed = quantile(s.tree_ms, s.runs, 0.5);
		printf("bench=spawn-process peer=weft cfg=%s-tree%ld n=%ld "
		       "secs=%.4f rate=%.1f unit=ms ms=%.3f spawn_ms=%.3f "
		       "teardown_ms=%.3f ms_min=%.3f ms_max=%.3f reps=%ld\n",
		       b.cfg, s.tree, s.tree, tmed / 1e3,
		       (double)s.tree * 1e3 / tmed, tmed,
		       quantile(s.tree_spawn_ms, s.runs, 0.5),
		       quantile(s.tree_td_ms, s.runs, 0.5), tmin, tmax,
		       s.runs);
		fflush(stdout);
	}
	weft_error_release(err);
	free(mem);
	if (bench_finish(&b, NULL, 0) != 0)
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

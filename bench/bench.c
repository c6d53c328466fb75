/* bench/bench.c - see bench.h. */
#define _POSIX_C_SOURCE 200809L

#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t
bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

_Noreturn void
bench_die(const char *fmt, ...)
{
	va_list ap;

	fputs("weft_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	_exit(1);
}

void
bench_open(struct bench *b, const struct bench_opts *o)
{
	weft_config cfg;
	weft_err err;

	memset(b, 0, sizeof(*b));
	b->o = *o;
	snprintf(b->cfg, sizeof(b->cfg), "w%u", o->workers);
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	weft_config_init(&cfg);
	cfg.workers = o->workers;
	if ((err = weft_runtime_open(&cfg, &b->rt)) != WEFT_OK)
		bench_die("weft_runtime_open: %s", weft_strerror(err));
}

void
bench_signal_done(struct bench *b)
{
	uint64_t t = bench_now_ns();

	pthread_mutex_lock(&b->lock);
	b->t_end_ns = t;
	b->done = true;
	pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

uint64_t
bench_wait(struct bench *b)
{
	uint64_t t;

	pthread_mutex_lock(&b->lock);
	while (!b->done)
		pthread_cond_wait(&b->cond, &b->lock);
	t = b->t_end_ns;
	pthread_mutex_unlock(&b->lock);
	return t;
}

void
bench_send(weft_runtime *rt, weft_aid to, uint32_t type, uint64_t word,
           weft_aid from)
{
	weft_msg *m = weft_msg_new(type, 0);
	weft_err err;

	if (m == NULL)
		bench_die("weft_msg_new: out of memory");
	m->word = word;
	m->from = from;
	if ((err = weft_send(rt, to, m)) != WEFT_OK)
		bench_die("weft_send(type %u): %s", (unsigned)type,
		          weft_strerror(err));
}

weft_aid
bench_spawn(weft_runtime *rt, const char *name, weft_handler_fn fn,
            void *state, unsigned batch)
{
	weft_spawn_opts so = {
		.name = name, .handler = fn, .state = state, .batch = batch,
	};
	weft_aid aid;
	weft_err err;

	if ((err = weft_spawn(rt, &so, &aid)) != WEFT_OK)
		bench_die("weft_spawn(%s): %s", name, weft_strerror(err));
	return aid;
}

void
bench_report(const struct bench *b, const char *name, uint64_t n,
             uint64_t t0_ns, uint64_t t1_ns, const char *unit,
             const char *extra)
{
	double secs = (double)(t1_ns - t0_ns) / 1e9;

	printf("bench=%s peer=weft cfg=%s n=%llu secs=%.4f rate=%.0f unit=%s%s%s\n",
	       name, b->cfg, (unsigned long long)n, secs,
	       secs > 0 ? (double)n / secs : 0.0, unit,
	       extra && *extra ? " " : "", extra ? extra : "");
	fflush(stdout);
}

long
bench_peak_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			v = atol(line + 6);
	fclose(f);
	return v;
}

int
bench_finish(struct bench *b, const weft_aid *stop, size_t nstop)
{
	weft_runtime_stats st;
	weft_close_report rep;
	weft_err err;
	int rc = 0;

	for (size_t i = 0; i < nstop; i++) {
		err = weft_stop(b->rt, stop[i]);
		if (err != WEFT_OK && err != WEFT_ECLOSED) {
			fprintf(stderr, "weft_bench: weft_stop: %s\n",
			        weft_strerror(err));
			rc = 1;
		}
	}
	/* Every actor has exited (or been stopped) once the runtime is idle;
	 * look again a few times in case an exit is still on its way. */
	uint64_t deadline = bench_now_ns() + 30ull * 1000000000u;
	for (;;) {
		err = weft_runtime_wait_idle(b->rt, 1000000000u);
		weft_runtime_stats_get(b->rt, &st);
		if (err == WEFT_OK && st.actors_live == 0)
			break;
		if (bench_now_ns() >= deadline) {
			fprintf(stderr,
			        "weft_bench: %llu actor(s) still alive after "
			        "30 s (wait_idle: %s)\n",
			        (unsigned long long)st.actors_live,
			        weft_strerror(err));
			rc = 1;
			break;
		}
	}
	if (b->o.verbose)
		fprintf(stderr,
		        "weft_bench: stats workers=%u spawned=%llu turns=%llu "
		        "steals=%llu parks=%llu dropped=%llu\n",
		        st.workers, (unsigned long long)st.actors_spawned,
		        (unsigned long long)st.turns,
		        (unsigned long long)st.steals,
		        (unsigned long long)st.parks,
		        (unsigned long long)st.messages_dropped);
	if (st.messages_dropped != 0) {
		fprintf(stderr, "weft_bench: %llu message(s) dropped\n",
		        (unsigned long long)st.messages_dropped);
		rc = 1;
	}
	if ((err = weft_runtime_close(b->rt, &rep)) != WEFT_OK) {
		fprintf(stderr, "weft_bench: weft_runtime_close: %s\n",
		        weft_strerror(err));
		return 1;
	}
	b->rt = NULL;
	if (rep.actors_stopped != 0 || rep.messages_dropped != 0) {
		fprintf(stderr,
		        "weft_bench: close stopped %llu actor(s), dropped %llu "
		        "message(s)\n",
		        (unsigned long long)rep.actors_stopped,
		        (unsigned long long)rep.messages_dropped);
		rc = 1;
	}
	int64_t out = weft_msg_outstanding();
	if (out != 0) {
		fprintf(stderr, "weft_bench: %lld message(s) never freed\n",
		        (long long)out);
		rc = 1;
	}
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
	return rc;
}

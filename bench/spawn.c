/* bench/spawn.c - B5 spawn and spawn-tight.
 *
 * A sink actor, and a spawner actor that creates N actors (default
 * 1,000,000), sending each one message (its index); each of those actors,
 * on its one message, sends one message to the sink and exits. Done when
 * the sink has counted N. Peak RSS = VmHWM of the process at the end.
 *
 * `spawn`: the spawner creates B actors (default 1,000) per turn and then
 * sends itself a `continue` message. It is spawned with a batch of one
 * message per turn, so each `continue` is handled in a new turn, behind the
 * actors it has just made runnable: the spawner yields (as CAF's does with
 * max-throughput=1). `spawn-tight`: one loop of N spawns in one handler
 * call. The clock runs from spawning the sink and the spawner to the sink's
 * N-th message. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>

#include "bench.h"

struct sink_state {
	struct bench *b;
	uint64_t n;
	uint64_t count;
	uint64_t sum;
};

struct spawner_state {
	uint64_t n;
	uint64_t batch;
	uint64_t i;
	weft_aid sink; /* read by the one-shot actors too */
};

static void
one_shot_handler(weft_turn *t, weft_msg *m, void *state)
{
	const struct spawner_state *sp = state;

	bench_send(weft_turn_runtime(t), sp->sink, MSG_INT, m->word,
	           weft_self(t));
	weft_msg_free(m);
	weft_exit(t);
}

static void
sink_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct sink_state *s = state;

	(void)t;
	s->sum += m->word;
	weft_msg_free(m);
	if (++s->count == s->n)
		bench_signal_done(s->b);
}

static void
spawner_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct spawner_state *s = state;
	weft_runtime *rt = weft_turn_runtime(t);
	weft_aid self = weft_self(t);
	uint64_t end = s->i + s->batch;

	weft_msg_free(m);
	if (end > s->n)
		end = s->n;
	for (; s->i < end; s->i++) {
		/* The one-shots only read sink, set before the first spawn. */
		weft_aid w = bench_spawn(rt, "one-shot", one_shot_handler, s,
		                         0);
		bench_send(rt, w, MSG_INT, s->i, self);
	}
	if (s->i < s->n)
		bench_send(rt, self, MSG_CONTINUE, 0, self);
	else
		weft_exit(t);
}

int
run_spawn(const struct bench_opts *o, bool tight)
{
	struct bench b;
	struct sink_state ks = {0};
	struct spawner_state ss = {0};
	char extra[96];

	bench_open(&b, o);
	ks.b = &b;
	ks.n = ss.n = o->n ? (uint64_t)o->n : 1000000u;
	ss.batch = tight ? ss.n : (o->batch ? (uint64_t)o->batch : 1000u);

	uint64_t t0 = bench_now_ns();
	weft_aid sink = bench_spawn(b.rt, "sink", sink_handler, &ks, 0);
	ss.sink = sink;
	/* batch 1: one `continue` per turn, so the spawner yields. */
	weft_aid spawner = bench_spawn(b.rt, "spawner", spawner_handler, &ss,
	                               1);
	bench_send(b.rt, spawner, MSG_START, 0, (weft_aid){0});
	uint64_t t1 = bench_wait(&b);
	long rss = bench_peak_rss_kib();

	int ok = ks.sum == ss.n * (ss.n - 1) / 2;
	snprintf(extra, sizeof(extra), "batch=%llu peak_rss_kib=%ld",
	         (unsigned long long)ss.batch, rss);
	bench_report(&b, tight ? "spawn-tight" : "spawn", ss.n, t0, t1,
	             "actors/s", extra);
	if (!ok)
		fprintf(stderr, "weft_bench: spawn: the sink's indexes sum to "
		        "%llu, expected %llu\n", (unsigned long long)ks.sum,
		        (unsigned long long)(ss.n * (ss.n - 1) / 2));
	/* The spawner and the one-shots exit by themselves. */
	int rc = bench_finish(&b, &sink, 1);
	return ok ? rc : 1;
}

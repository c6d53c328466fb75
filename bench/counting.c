/* bench/counting.c - B2 counting.
 *
 * A producer actor sends the ints 1..N (default 5,000,000) to a counter
 * actor, one message each, as fast as it can (no flow control, all in one
 * handler call); then, from the same actor (so FIFO order puts it last), a
 * `done` request. The counter replies with the sum, which the producer
 * checks: ok=1 if it is N(N+1)/2. The clock runs from spawning both actors
 * to the producer's handling of the reply. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>

#include "bench.h"

struct producer_state {
	struct bench *b;
	weft_aid counter;
	uint64_t n;
	uint64_t sum; /* the counter's reply */
};

struct counter_state {
	uint64_t sum;
};

static void
counter_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct counter_state *s = state;

	if (m->type == MSG_INT)
		s->sum += m->word;
	else if (m->type == MSG_DONE)
		bench_send(weft_turn_runtime(t), m->from, MSG_SUM, s->sum,
		           weft_self(t));
	weft_msg_free(m);
}

static void
producer_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct producer_state *s = state;
	weft_runtime *rt = weft_turn_runtime(t);
	weft_aid self = weft_self(t);

	if (m->type == MSG_START) {
		for (uint64_t i = 1; i <= s->n; i++)
			bench_send(rt, s->counter, MSG_INT, i, self);
		bench_send(rt, s->counter, MSG_DONE, 0, self);
	} else if (m->type == MSG_SUM) {
		s->sum = m->word;
		bench_signal_done(s->b);
	}
	weft_msg_free(m);
}

int
run_counting(const struct bench_opts *o)
{
	struct bench b;
	struct producer_state ps = {0};
	struct counter_state cs = {0};
	char extra[32];

	bench_open(&b, o);
	ps.b = &b;
	ps.n = o->n ? (uint64_t)o->n : 5000000u;

	uint64_t t0 = bench_now_ns();
	ps.counter = bench_spawn(b.rt, "counter", counter_handler, &cs, 0);
	weft_aid producer = bench_spawn(b.rt, "producer", producer_handler,
	                                &ps, 0);
	bench_send(b.rt, producer, MSG_START, 0, (weft_aid){0});
	uint64_t t1 = bench_wait(&b);

	uint64_t expect = ps.n * (ps.n + 1) / 2;
	int ok = ps.sum == expect;
	snprintf(extra, sizeof(extra), "ok=%d", ok);
	bench_report(&b, "counting", ps.n, t0, t1, "msgs/s", extra);
	if (!ok)
		fprintf(stderr, "weft_bench: counting: sum %llu, expected %llu\n",
		        (unsigned long long)ps.sum,
		        (unsigned long long)expect);
	weft_aid stop[] = {producer, ps.counter};
	int rc = bench_finish(&b, stop, 2);
	return ok ? rc : 1;
}

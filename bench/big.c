/* bench/big.c - B4 big.
 *
 * A actors (default 1,000). On `start` each sends `ping` to a random other
 * actor, and on each `pong` reply the next `ping`, until it has received M
 * pongs (default 1,000); then it reports `done` to the main actor (a
 * collector actor here, which wakes the main thread when all A reported)
 * and keeps answering pings. Every actor answers every ping with a pong to
 * the sender. Messages = 2*A*M. Spawning is not timed: the clock runs from
 * the first `start` to the last report.
 *
 * PRNG (MINSTD, as every peer): per actor x0 = index+1,
 * x = x*48271 mod 2147483647, target = x mod A, and if that is the actor
 * itself, (target+1) mod A. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

struct big_shared {
	struct bench *b;
	const weft_aid *peers;
	uint32_t a;
	uint32_t m;
	weft_aid collector;
};

struct big_actor {
	const struct big_shared *sh;
	uint32_t idx;
	uint32_t rng;
	uint32_t received;
};

struct collector_state {
	struct bench *b;
	uint32_t a;
	uint32_t count;
};

static inline uint32_t
minstd(uint32_t *x)
{
	*x = (uint32_t)(((uint64_t)*x * 48271u) % 2147483647u);
	return *x;
}

static void
send_ping(weft_turn *t, struct big_actor *s)
{
	const struct big_shared *sh = s->sh;
	uint32_t tgt = minstd(&s->rng) % sh->a;

	if (tgt == s->idx)
		tgt = (tgt + 1) % sh->a;
	bench_send(weft_turn_runtime(t), sh->peers[tgt], MSG_PING, 0,
	           weft_self(t));
}

static void
big_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct big_actor *s = state;
	uint32_t type = m->type;
	weft_aid from = m->from;

	weft_msg_free(m);
	switch (type) {
	case MSG_START:
		send_ping(t, s);
		break;
	case MSG_PING:
		bench_send(weft_turn_runtime(t), from, MSG_PONG, 0,
		           weft_self(t));
		break;
	case MSG_PONG:
		if (++s->received == s->sh->m)
			bench_send(weft_turn_runtime(t), s->sh->collector,
			           MSG_DONE, s->idx, weft_self(t));
		else
			send_ping(t, s);
		break;
	default:
		break;
	}
}

static void
collector_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct collector_state *s = state;

	(void)t;
	weft_msg_free(m);
	if (++s->count == s->a)
		bench_signal_done(s->b);
}

int
run_big(const struct bench_opts *o)
{
	struct bench b;
	struct big_shared sh;
	struct collector_state cs = {0};
	uint32_t a = o->actors ? (uint32_t)o->actors : 1000u;
	uint32_t mm = o->pings ? (uint32_t)o->pings : 1000u;
	char extra[64];

	if (a < 2)
		bench_die("big needs at least 2 actors");
	bench_open(&b, o);
	weft_aid *aids = calloc((size_t)a + 1, sizeof(*aids));
	struct big_actor *st = calloc(a, sizeof(*st));
	if (aids == NULL || st == NULL)
		bench_die("out of memory");
	cs.b = &b;
	cs.a = a;
	sh.b = &b;
	sh.peers = aids;
	sh.a = a;
	sh.m = mm;
	sh.collector = bench_spawn(b.rt, "collector", collector_handler, &cs,
	                           0);
	for (uint32_t i = 0; i < a; i++) {
		st[i].sh = &sh;
		st[i].idx = i;
		st[i].rng = i + 1;
		aids[i] = bench_spawn(b.rt, "big", big_handler, &st[i], 0);
	}
	aids[a] = sh.collector;

	uint64_t t0 = bench_now_ns();
	for (uint32_t i = 0; i < a; i++)
		bench_send(b.rt, aids[i], MSG_START, 0, (weft_aid){0});
	uint64_t t1 = bench_wait(&b);

	uint64_t msgs = 2ull * a * mm;
	snprintf(extra, sizeof(extra), "actors=%u pings_per_actor=%u", a, mm);
	bench_report(&b, "big", msgs, t0, t1, "msgs/s", extra);
	int rc = bench_finish(&b, aids, (size_t)a + 1);
	free(st);
	free(aids);
	return rc;
}

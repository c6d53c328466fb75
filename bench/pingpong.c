/* bench/pingpong.c - B1 pingpong.
 *
 * Two actors. Ping sends an int to pong, pong replies with the same int,
 * ping sends the next one; N round trips (default 1,000,000). The clock runs
 * from spawning both actors to ping's handling of the N-th reply. Every send
 * is a fresh message (weft_msg_new), every received one is freed. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>

#include "bench.h"

struct ping_state {
	struct bench *b;
	weft_aid pong;
	uint64_t n;
};

static void
pong_handler(weft_turn *t, weft_msg *m, void *state)
{
	(void)state;
	/* Reply to the sender with the same int. */
	bench_send(weft_turn_runtime(t), m->from, MSG_INT, m->word,
	           weft_self(t));
	weft_msg_free(m);
}

static void
ping_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct ping_state *s = state;
	uint64_t x = m->word; /* MSG_START carries 0 */

	weft_msg_free(m);
	if (x == s->n) {
		bench_signal_done(s->b);
		return;
	}
	bench_send(weft_turn_runtime(t), s->pong, MSG_INT, x + 1,
	           weft_self(t));
}

int
run_pingpong(const struct bench_opts *o)
{
	struct bench b;
	struct ping_state ps;
	char extra[64];

	bench_open(&b, o);
	ps.b = &b;
	ps.n = o->n ? (uint64_t)o->n : 1000000u;

	uint64_t t0 = bench_now_ns();
	ps.pong = bench_spawn(b.rt, "pong", pong_handler, NULL, 0);
	weft_aid ping = bench_spawn(b.rt, "ping", ping_handler, &ps, 0);
	bench_send(b.rt, ping, MSG_START, 0, (weft_aid){0});
	uint64_t t1 = bench_wait(&b);

	snprintf(extra, sizeof(extra), "ns_per_rt=%.1f",
	         (double)(t1 - t0) / (double)ps.n);
	bench_report(&b, "pingpong", ps.n, t0, t1, "roundtrips/s", extra);
	weft_aid stop[] = {ping, ps.pong};
	return bench_finish(&b, stop, 2);
}

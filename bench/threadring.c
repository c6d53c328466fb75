/* bench/threadring.c - B3 threadring.
 *
 * R actors (default 503) in a ring; actor i knows actor i+1 mod R. A token
 * with value T (default 5,000,000) is injected at actor 0; each actor that
 * receives t > 0 sends t-1 to its successor; whoever receives 0 reports.
 * Hops = T. Setting up the ring is not timed: the clock runs from the
 * injection to the report. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

struct ring_member {
	struct bench *b;
	weft_aid next;
};

static void
ring_handler(weft_turn *t, weft_msg *m, void *state)
{
	struct ring_member *s = state;
	uint64_t tok = m->word;

	weft_msg_free(m);
	if (tok == 0) {
		bench_signal_done(s->b);
		return;
	}
	bench_send(weft_turn_runtime(t), s->next, MSG_INT, tok - 1,
	           weft_self(t));
}

int
run_threadring(const struct bench_opts *o)
{
	struct bench b;
	size_t r = o->ring ? (size_t)o->ring : 503u;
	uint64_t tok = o->n ? (uint64_t)o->n : 5000000u;
	char extra[32];

	bench_open(&b, o);
	struct ring_member *ms = calloc(r, sizeof(*ms));
	weft_aid *aids = calloc(r, sizeof(*aids));
	if (ms == NULL || aids == NULL)
		bench_die("out of memory");
	for (size_t i = 0; i < r; i++) {
		ms[i].b = &b;
		aids[i] = bench_spawn(b.rt, "ring", ring_handler, &ms[i], 0);
	}
	/* No message has been sent yet: the states are complete before any
	 * handler runs. */
	for (size_t i = 0; i < r; i++)
		ms[i].next = aids[(i + 1) % r];

	uint64_t t0 = bench_now_ns();
	bench_send(b.rt, aids[0], MSG_INT, tok, (weft_aid){0});
	uint64_t t1 = bench_wait(&b);

	snprintf(extra, sizeof(extra), "ring=%zu", r);
	bench_report(&b, "threadring", tok, t0, t1, "hops/s", extra);
	int rc = bench_finish(&b, aids, r);
	free(aids);
	free(ms);
	return rc;
}

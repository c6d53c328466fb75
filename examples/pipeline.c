/* examples/pipeline.c - the demo: a small pipeline of actors in one process.
 *
 *   main --(N numbers)--> splitter --(round robin)--> square-0..square-2
 *        square-i --(x*x)--> collector --(sum, when all N arrived)--> main
 *
 * Each actor says what it did, prefixed with its uid (name and the first
 * bytes of its UUID). The runtime runs them on a pool of worker threads,
 * one message at a time per actor. At the end
 * main stops every actor and closes the runtime, which reports that nothing
 * was left behind. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/weft.h"

enum { MSG_NUMBER = 1, MSG_SQUARE = 2 };
#define NSQUARERS 3
#define NUMBERS 12

struct splitter {
	weft_aid squarers[NSQUARERS];
	unsigned next;
};

struct squarer {
	weft_aid collector;
	unsigned index;
	unsigned handled;
};

struct collector {
	unsigned got;
	unsigned long long sum;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
};

static void
say(weft_turn *turn, const char *fmt, unsigned long long a,
    unsigned long long b)
{
	char uid[64];
	weft_uid_format(weft_turn_uid(turn), uid, sizeof(uid));
	printf("%-20s ", uid);
	printf(fmt, a, b);
	printf("\n");
	fflush(stdout);
}

static void
splitter_handler(weft_turn *turn, weft_msg *m, void *state)
{
	struct splitter *s = state;
	unsigned to = s->next++ % NSQUARERS;

	say(turn, "got %llu, passes it to square-%llu", m->word, to);
	m->from = weft_self(turn);
	if (weft_send(weft_turn_runtime(turn), s->squarers[to], m) != WEFT_OK)
		weft_msg_free(m);
}

static void
squarer_handler(weft_turn *turn, weft_msg *m, void *state)
{
	struct squarer *s = state;
	unsigned long long x = m->word;

	s->handled++;
	m->type = MSG_SQUARE;
	m->word = x * x;
	say(turn, "squared %llu into %llu", x, m->word);
	if (weft_send(weft_turn_runtime(turn), s->collector, m) != WEFT_OK)
		weft_msg_free(m);
}

static void
collector_handler(weft_turn *turn, weft_msg *m, void *state)
{
	struct collector *c = state;

	c->sum += m->word;
	c->got++;
	weft_msg_free(m);
	if (c->got == NUMBERS) {
		say(turn, "has all %llu squares; their sum is %llu", c->got,
		    c->sum);
		pthread_mutex_lock(&c->lock);
		c->done = 1;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->lock);
	}
}

static void
squarer_exit(weft_aid self, void *state, weft_exit_reason why)
{
	struct squarer *s = state;
	(void)self;
	printf("square-%u             exits (%s) after squaring %u numbers\n",
	       s->index, why == WEFT_EXIT_STOPPED ? "stopped" : "other",
	       s->handled);
}

static int
check(weft_err rv, const char *what)
{
	if (rv != WEFT_OK) {
		fprintf(stderr, "demo: %s: %s\n", what, weft_strerror(rv));
		exit(1);
	}
	return 0;
}

int
main(void)
{
	weft_runtime *rt;
	weft_config cfg;
	struct collector coll = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                         .cond = PTHREAD_COND_INITIALIZER};
	struct squarer sq[NSQUARERS];
	struct splitter split = {0};
	weft_aid collector, splitter;
	weft_runtime_stats st;
	weft_close_report rep;

	weft_config_init(&cfg);
	check(weft_runtime_open(&cfg, &rt), "open");
	weft_runtime_stats_get(rt, &st);
	printf("weft demo: a pipeline of %d actors on %u worker threads\n",
	       NSQUARERS + 2, st.workers);

	weft_spawn_opts o = {.name = "collector",
	                     .handler = collector_handler,
	                     .state = &coll};
	check(weft_spawn(rt, &o, &collector), "spawn collector");
	for (int i = 0; i < NSQUARERS; i++) {
		char name[16];
		snprintf(name, sizeof(name), "square-%d", i);
		sq[i] = (struct squarer){.collector = collector,
		                         .index = (unsigned)i};
		o = (weft_spawn_opts){.name = name,
		                      .handler = squarer_handler,
		                      .state = &sq[i],
		                      .on_exit = squarer_exit};
		check(weft_spawn(rt, &o, &split.squarers[i]), "spawn squarer");
	}
	o = (weft_spawn_opts){.name = "splitter",
	                      .handler = splitter_handler,
	                      .state = &split};
	check(weft_spawn(rt, &o, &splitter), "spawn splitter");

	for (unsigned long long x = 1; x <= NUMBERS; x++) {
		weft_msg *m = weft_msg_new(MSG_NUMBER, 0);
		if (m == NULL)
			return 1;
		m->word = x;
		check(weft_send(rt, splitter, m), "send");
	}

	pthread_mutex_lock(&coll.lock);
	while (!coll.done)
		pthread_cond_wait(&coll.cond, &coll.lock);
	pthread_mutex_unlock(&coll.lock);

	unsigned long long expect = 0;
	for (unsigned long long x = 1; x <= NUMBERS; x++)
		expect += x * x;
	printf("main: the collector's sum %llu is %s\n", coll.sum,
	       coll.sum == expect ? "right" : "WRONG");

	check(weft_stop(rt, splitter), "stop");
	for (int i = 0; i < NSQUARERS; i++)
		check(weft_stop(rt, split.squarers[i]), "stop");
	check(weft_stop(rt, collector), "stop");
	check(weft_runtime_wait_idle(rt, 5ull * 1000 * 1000 * 1000), "idle");
	check(weft_runtime_close(rt, &rep), "close");
	printf("main: runtime closed; %llu actor(s) were still alive, %llu "
	       "message(s) unread, %lld message(s) leaked\n",
	       (unsigned long long)rep.actors_stopped,
	       (unsigned long long)rep.messages_dropped,
	       (long long)weft_msg_outstanding());
	return coll.sum == expect && rep.actors_stopped == 0 &&
	               weft_msg_outstanding() == 0
	               ? 0
	               : 1;
}

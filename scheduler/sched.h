/* scheduler/sched.h - the worker pool: per-worker run queues with work
 * stealing, a queue for work from outside the pool, and parking.
 *
 * The scheduler runs jobs; it knows nothing of actors. A job is embedded in
 * the object it runs (an actor) and is in at most one queue at a time: the
 * caller guarantees a job is submitted again only after it was taken to
 * run (the actor's mailbox "scheduled" bit gives that).
 *
 * Unless noted, any thread may call these functions. */
#ifndef WEFT_SCHED_H
#define WEFT_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "weft/errors.h"

struct weft__worker;

struct weft__job {
	void (*run)(struct weft__job *job, struct weft__worker *w);
	struct weft__job *next; /* link in the global queue only */
};

struct weft__sched_config {
	unsigned workers;      /* >= 1 */
	bool deterministic;    /* forces workers = 1; seeded run order */
	uint64_t seed;
	unsigned spin_us;      /* search time before parking */
	/* Called on each worker thread as it starts and before it exits. */
	void (*on_thread_start)(struct weft__worker *w, void *arg);
	void (*on_thread_stop)(struct weft__worker *w, void *arg);
	void *arg;
};

struct weft__sched;

weft_err weft__sched_create(const struct weft__sched_config *cfg,
                            struct weft__sched **out);

/* Where a job submitted from a worker goes. */
enum weft__submit_hint {
	/* Run it next on this worker (the job was just made runnable by the
	 * running turn: it is likely hot in this core's cache). */
	WEFT__SUBMIT_NEXT,
	/* Behind everything already queued here (a job that used its batch). */
	WEFT__SUBMIT_TAIL,
};

/* Queues `job`. From a worker of `s` it goes to that worker's own queue as
 * `hint` says; from any other thread into the global queue. Wakes a parked
 * worker when no worker is already looking for work. */
void weft__sched_submit(struct weft__sched *s, struct weft__job *job,
                        enum weft__submit_hint hint);

/* The worker of `s` this thread is, or NULL. */
struct weft__worker *weft__sched_current(const struct weft__sched *s);
/* Any scheduler's worker this thread is, or NULL. */
struct weft__worker *weft__worker_self(void);
unsigned weft__worker_index(const struct weft__worker *w);
struct weft__sched *weft__worker_sched(const struct weft__worker *w);

/* Waits until every worker is parked and no job is queued. WEFT_ETIMEDOUT
 * after timeout_ns. Thread: not a worker of `s`. */
weft_err weft__sched_wait_idle(struct weft__sched *s, uint64_t timeout_ns);

struct weft__sched_stats {
	unsigned workers;
	uint64_t jobs_run;
	uint64_t steals;
	uint64_t parks;
};
void weft__sched_stats(struct weft__sched *s, struct weft__sched_stats *out);

/* Stops the workers once they are idle, joins them and frees `s`. Jobs
 * still queued are not run: the caller must have drained them.
 * Thread: not a worker of `s`. */
void weft__sched_destroy(struct weft__sched *s);

/* Monotonic clock in nanoseconds. */
uint64_t weft__now_ns(void);

#endif /* WEFT_SCHED_H */

/* scheduler/runq.h - a worker's local run queue.
 *
 * A bounded ring (the Go runtime's runq design): the owner pushes at the
 * tail; the owner and thieves take from the head with a CAS. FIFO, so a job
 * put back after using its batch runs after everything already waiting: the
 * fairness a LIFO Chase-Lev deque would not give. A thief takes half in one
 * CAS. When the ring is full the owner moves half of it to the global queue.
 *
 * Thread: push and pop by the owner worker only; steal by any other
 * worker. */
#ifndef WEFT_RUNQ_H
#define WEFT_RUNQ_H

#include "scheduler/atomics.h"
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "scheduler/sched.h"

/* Power of two. Large enough that a turn making a thousand actors
 * runnable (a fan-out, B4's and B5's shapes) does not spill to the
 * global queue, whose lock the workers would then share. */
#define WEFT__RUNQ_SIZE 1024u

struct weft__runq {
	/* Written by the owner and by thieves (CAS). */
	_Alignas(64) _Atomic(uint32_t) head;
	/* Written by the owner only. */
	_Alignas(64) _Atomic(uint32_t) tail;
	/* Slots are atomics because a thief may read a slot that the owner is
	 * overwriting after the thief's CAS lost; the value read is discarded
	 * then, but the access must not be a data race. */
	_Atomic(struct weft__job *) buf[WEFT__RUNQ_SIZE];
};

void weft__runq_init(struct weft__runq *q);

/* Owner: appends `job`. false when full (nothing was changed). */
bool weft__runq_push(struct weft__runq *q, struct weft__job *job);

/* Owner: when full, takes the older half plus `job` out as a list linked
 * through job->next, for the global queue. Returns the count (0 if the
 * queue was no longer full: then `job` was pushed). */
uint32_t weft__runq_spill(struct weft__runq *q, struct weft__job *job,
                          struct weft__job **first, struct weft__job **last);

/* Owner: takes the oldest job, or NULL. */
struct weft__job *weft__runq_pop(struct weft__runq *q);

/* Owner, deterministic mode: takes the job at position `pick` modulo the
 * length (the others keep their order), or NULL if empty. */
struct weft__job *weft__runq_pop_at(struct weft__runq *q, uint64_t pick);

/* Thief: moves about half of `victim`'s jobs into `mine` (which must be
 * empty) and returns one of them to run now, or NULL. */
struct weft__job *weft__runq_steal(struct weft__runq *mine,
                                   struct weft__runq *victim);

/* Any thread: a racy length, for heuristics only. */
uint32_t weft__runq_len(struct weft__runq *q);

#endif /* WEFT_RUNQ_H */

/* runtime/mailbox.h - an actor's MPSC mailbox.
 *
 * Dmitry Vyukov's intrusive MPSC queue (one exchange per push, no CAS loop),
 * with Pony's trick of an "empty" bit in the producers' end: the push that
 * finds the bit set is the one that must schedule the actor, so one atomic
 * exchange both enqueues and tells whether the receiver needs scheduling.
 * The consumer sets the bit (mark_empty) only when it sees the queue empty,
 * which makes "empty" and "not scheduled" the same state.
 *
 * Thread: push from any thread; pop and mark_empty by the one thread running
 * the actor's turn. */
#ifndef WEFT_MAILBOX_H
#define WEFT_MAILBOX_H

#include "scheduler/atomics.h"
#include <stdbool.h>
#include <stdint.h>

#include "weft/actor.h"

struct weft__mailbox {
	/* Producers: the newest message, with bit 0 = empty/unscheduled. */
	_Alignas(64) _Atomic(uintptr_t) head;
	/* Consumer only. */
	_Alignas(64) weft_msg *tail;
	weft_msg stub;
};

static inline _Atomic(weft_msg *) *
weft__msg_link(weft_msg *m)
{
	/* The public header keeps the link a plain pointer so that C++ can
	 * include it; inside the runtime it is only touched atomically. */
	return (_Atomic(weft_msg *) *)(void *)&m->weft_link;
}

/* Starts empty and unscheduled. */
void weft__mailbox_init(struct weft__mailbox *mb);

/* Appends m. Returns true if the mailbox was empty and unscheduled: the
 * caller must now schedule the actor. */
static inline bool
weft__mailbox_push(struct weft__mailbox *mb, weft_msg *m)
{
	atomic_store_explicit(weft__msg_link(m), NULL, memory_order_relaxed);
	/* acq_rel: release publishes m's body to the consumer; acquire orders
	 * our store into prev after the previous producer's. */
	uintptr_t prev = atomic_exchange_explicit(&mb->head, (uintptr_t)m,
	                                          memory_order_acq_rel);
	weft_msg *p = (weft_msg *)(prev & ~(uintptr_t)1);
	/* release: the consumer that sees the link sees m's body. */
	atomic_store_explicit(weft__msg_link(p), m, memory_order_release);
	return (prev & 1) != 0;
}

enum weft__pop_result { WEFT__POP_MSG, WEFT__POP_EMPTY, WEFT__POP_BUSY };

/* Takes the oldest message into *out. EMPTY: nothing queued. BUSY: a push
 * is half done (the producer swapped head but has not linked yet): try again
 * shortly. */
enum weft__pop_result weft__mailbox_pop(struct weft__mailbox *mb,
                                        weft_msg **out);

/* After pop returned EMPTY: marks the mailbox empty and unscheduled.
 * Returns false if a message arrived meanwhile (still scheduled). */
bool weft__mailbox_mark_empty(struct weft__mailbox *mb);

#endif /* WEFT_MAILBOX_H */

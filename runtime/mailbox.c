/* runtime/mailbox.c - see mailbox.h. pop() is Vyukov's intrusive MPSC pop,
 * which re-inserts the stub when the last real message is taken so that a
 * message is never needed as a placeholder after it was handed out. */
#include "runtime/mailbox.h"

void
weft__mailbox_init(struct weft__mailbox *mb)
{
	atomic_init(weft__msg_link(&mb->stub), NULL);
	atomic_init(&mb->head, (uintptr_t)&mb->stub | 1);
	mb->tail = &mb->stub;
}

static void
push_stub(struct weft__mailbox *mb)
{
	weft_msg *stub = &mb->stub;

	atomic_store_explicit(weft__msg_link(stub), NULL, memory_order_relaxed);
	/* The consumer never sets the empty bit while it pops, so prev has
	 * no bit here. */
	uintptr_t prev = atomic_exchange_explicit(&mb->head, (uintptr_t)stub,
	                                          memory_order_acq_rel);
	atomic_store_explicit(weft__msg_link((weft_msg *)prev), stub,
	                      memory_order_release);
}

enum weft__pop_result
weft__mailbox_pop(struct weft__mailbox *mb, weft_msg **out)
{
	weft_msg *tail = mb->tail;
	/* acquire: pairs with the producer's release store of the link. */
	weft_msg *next = atomic_load_explicit(weft__msg_link(tail),
	                                      memory_order_acquire);

	if (tail == &mb->stub) {
		if (next == NULL) {
			uintptr_t h = atomic_load_explicit(
				&mb->head, memory_order_acquire);
			return (h & ~(uintptr_t)1) == (uintptr_t)tail
				       ? WEFT__POP_EMPTY
				       : WEFT__POP_BUSY;
		}
		mb->tail = next;
		tail = next;
		next = atomic_load_explicit(weft__msg_link(next),
		                            memory_order_acquire);
	}
	if (next != NULL) {
		mb->tail = next;
		*out = tail;
		return WEFT__POP_MSG;
	}
	uintptr_t h = atomic_load_explicit(&mb->head, memory_order_acquire);
	if ((weft_msg *)h != tail)
		return WEFT__POP_BUSY; /* a producer is linking after tail */
	push_stub(mb);
	next = atomic_load_explicit(weft__msg_link(tail), memory_order_acquire);
	if (next != NULL) {
		mb->tail = next;
		*out = tail;
		return WEFT__POP_MSG;
	}
	return WEFT__POP_BUSY;
}

bool
weft__mailbox_mark_empty(struct weft__mailbox *mb)
{
	uintptr_t expect = (uintptr_t)&mb->stub;

	/* Only valid when the consumer holds the stub as tail with nothing
	 * after it; then head == stub unless a push has begun. acq_rel: a
	 * producer's exchange that follows sees the bit, and we must not
	 * reorder our earlier reads after giving up the actor. */
	if (mb->tail != &mb->stub)
		return false;
	return atomic_compare_exchange_strong_explicit(
		&mb->head, &expect, expect | 1, memory_order_acq_rel,
		memory_order_acquire);
}

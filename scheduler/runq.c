/* scheduler/runq.c - see runq.h. The memory orders follow the Go runtime's
 * runq (proc.go), which has the same single-producer, many-consumer shape. */
#include "scheduler/runq.h"

#define MASK (WEFT__RUNQ_SIZE - 1)

void
weft__runq_init(struct weft__runq *q)
{
	atomic_init(&q->head, 0);
	atomic_init(&q->tail, 0);
	for (uint32_t i = 0; i < WEFT__RUNQ_SIZE; i++)
		atomic_init(&q->buf[i], NULL);
}

bool
weft__runq_push(struct weft__runq *q, struct weft__job *job)
{
	/* acquire: the consumer that advanced head has finished reading the
	 * slot we are about to overwrite. */
	uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	/* relaxed: only this thread writes tail. */
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);

	if (t - h >= WEFT__RUNQ_SIZE)
		return false;
	atomic_store_explicit(&q->buf[t & MASK], job, memory_order_relaxed);
	/* release: the slot's content is visible to whoever sees the new tail. */
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
	return true;
}

uint32_t
weft__runq_spill(struct weft__runq *q, struct weft__job *job,
                 struct weft__job **first, struct weft__job **last)
{
	struct weft__job *batch[WEFT__RUNQ_SIZE / 2 + 1];
	uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint32_t n = (t - h) / 2;

	if (n != WEFT__RUNQ_SIZE / 2)
		return 0; /* not full any more: the caller pushes normally */
	for (uint32_t i = 0; i < n; i++)
		batch[i] = atomic_load_explicit(&q->buf[(h + i) & MASK],
		                                memory_order_relaxed);
	/* release: pairs with push's acquire of head (slots now reusable). */
	if (!atomic_compare_exchange_strong_explicit(&q->head, &h, h + n,
	                                             memory_order_release,
	                                             memory_order_relaxed))
		return 0; /* a thief took some: no longer full */
	batch[n] = job;
	for (uint32_t i = 0; i < n; i++)
		batch[i]->next = batch[i + 1];
	job->next = NULL;
	*first = batch[0];
	*last = job;
	return n + 1;
}

struct weft__job *
weft__runq_pop(struct weft__runq *q)
{
	for (;;) {
		uint32_t h = atomic_load_explicit(&q->head,
		                                  memory_order_acquire);
		uint32_t t = atomic_load_explicit(&q->tail,
		                                  memory_order_relaxed);
		if (t == h)
			return NULL;
		struct weft__job *j = atomic_load_explicit(
			&q->buf[h & MASK], memory_order_relaxed);
		/* release: tells a pushing owner (us) and thieves the slot
		 * was consumed; a failed CAS means a thief took it. */
		if (atomic_compare_exchange_weak_explicit(
			    &q->head, &h, h + 1, memory_order_release,
			    memory_order_relaxed))
			return j;
	}
}

struct weft__job *
weft__runq_pop_at(struct weft__runq *q, uint64_t pick)
{
	uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);

	if (t == h)
		return NULL;
	/* Deterministic mode has no thieves: plain swaps are enough. */
	uint32_t k = (uint32_t)(pick % (t - h));
	struct weft__job *a = atomic_load_explicit(&q->buf[h & MASK],
	                                           memory_order_relaxed);
	struct weft__job *b = atomic_load_explicit(&q->buf[(h + k) & MASK],
	                                           memory_order_relaxed);
	atomic_store_explicit(&q->buf[(h + k) & MASK], a, memory_order_relaxed);
	atomic_store_explicit(&q->head, h + 1, memory_order_relaxed);
	return b;
}

struct weft__job *
weft__runq_steal(struct weft__runq *mine, struct weft__runq *victim)
{
	struct weft__job *batch[WEFT__RUNQ_SIZE / 2];
	uint32_t n;

	for (;;) {
		/* acquire both: see the slots published before tail moved,
		 * and the consumption that moved head. */
		uint32_t h = atomic_load_explicit(&victim->head,
		                                  memory_order_acquire);
		uint32_t t = atomic_load_explicit(&victim->tail,
		                                  memory_order_acquire);
		n = t - h;
		n = n - n / 2;
		if (n == 0)
			return NULL;
		if (n > WEFT__RUNQ_SIZE / 2)
			continue; /* read h and t far apart in time: retry */
		for (uint32_t i = 0; i < n; i++)
			batch[i] = atomic_load_explicit(
				&victim->buf[(h + i) & MASK],
				memory_order_relaxed);
		/* release: the victim may now reuse those slots. */
		if (atomic_compare_exchange_strong_explicit(
			    &victim->head, &h, h + n, memory_order_release,
			    memory_order_relaxed))
			break;
	}
	n--; /* batch[n] runs now; the rest go to our queue */
	if (n > 0) {
		uint32_t t = atomic_load_explicit(&mine->tail,
		                                  memory_order_relaxed);
		for (uint32_t i = 0; i < n; i++)
			atomic_store_explicit(&mine->buf[(t + i) & MASK],
			                      batch[i], memory_order_relaxed);
		/* release: publish the slots to other thieves. */
		atomic_store_explicit(&mine->tail, t + n,
		                      memory_order_release);
	}
	return batch[n];
}

uint32_t
weft__runq_len(struct weft__runq *q)
{
	/* relaxed: a hint only. */
	uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint32_t n = t - h;
	return n > WEFT__RUNQ_SIZE ? 0 : n;
}

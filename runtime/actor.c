/* runtime/actor.c - actors: the slot table, spawn, send, turns and exit.
 *
 * Life of a send: take a hold on the target (one CAS that also checks the
 * generation), refuse if it has exited, push into its mailbox. If the push
 * found the mailbox empty-and-unscheduled, the hold becomes the
 * "scheduled" reference and the actor is submitted to the scheduler;
 * otherwise the hold is dropped. A turn pops up to `batch` messages; when the
 * mailbox is empty it marks it so (one CAS) and drops the scheduled
 * reference, otherwise it puts itself at the tail of its worker's queue. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "runtime/host.h"
#include "runtime/internal.h"
#include "runtime/pool.h"

struct weft_turn {
	struct weft__actor *a;
	struct weft__worker *w;
};

static inline uint32_t
refs_of(uint64_t s)
{
	return (uint32_t)s;
}

static inline uint32_t
gen_of(uint64_t s)
{
	return (uint32_t)(s >> 32);
}

static inline struct weft__actor *
slot_actor(weft_runtime *rt, uint32_t slot)
{
	/* acquire: the chunk's memory was initialised before it was
	 * published. */
	struct weft__actor *chunk = atomic_load_explicit(
		&rt->chunks[slot >> WEFT__CHUNK_SHIFT], memory_order_acquire);
	return chunk ? &chunk[slot & (WEFT__CHUNK_SIZE - 1)] : NULL;
}

static struct weft__pcounter *
my_counter(weft_runtime *rt)
{
	struct weft__worker *w = weft__sched_current(rt->sched);
	return w ? &rt->pc[weft__worker_index(w)] : NULL;
}

/* Per-worker counters are written by their owner only; outside threads
 * share the last one with atomic adds. */
static void
counter_add(weft_runtime *rt, size_t field_off, uint64_t n)
{
	struct weft__pcounter *pc = my_counter(rt);
	if (pc) {
		_Atomic uint64_t *c = (_Atomic uint64_t *)((char *)pc + field_off);
		atomic_store_explicit(
			c, atomic_load_explicit(c, memory_order_relaxed) + n,
			memory_order_relaxed);
	} else {
		pc = &rt->pc[rt->cfg.workers];
		_Atomic uint64_t *c = (_Atomic uint64_t *)((char *)pc + field_off);
		atomic_fetch_add_explicit(c, n, memory_order_relaxed);
	}
}

#define COUNT(rt, field, n)                                                \
	counter_add((rt), offsetof(struct weft__pcounter, field), (n))

static uint64_t
counter_sum(weft_runtime *rt, size_t field_off)
{
	uint64_t sum = 0;
	for (unsigned i = 0; i <= rt->cfg.workers; i++) {
		_Atomic uint64_t *c =
			(_Atomic uint64_t *)((char *)&rt->pc[i] + field_off);
		sum += atomic_load_explicit(c, memory_order_relaxed);
	}
	return sum;
}

#define SUM(rt, field) counter_sum((rt), offsetof(struct weft__pcounter, field))

/* ---- slots ---- */

static weft_err
slot_alloc(weft_runtime *rt, uint32_t *out)
{
	/* acquire: see the free_next written before the slot was pushed. */
	uint64_t h = atomic_load_explicit(&rt->free_head, memory_order_acquire);

	while ((uint32_t)h != WEFT__SLOT_NONE) {
		uint32_t slot = (uint32_t)h;
		/* The slot's struct is never freed, so reading free_next of a
		 * slot that another thread popped meanwhile is harmless: the
		 * tag makes our CAS fail then. */
		struct weft__actor *a = slot_actor(rt, slot);
		if (a == NULL)
			__builtin_unreachable(); /* a freed slot's chunk exists */
		uint32_t next = atomic_load_explicit(&a->free_next,
		                                     memory_order_relaxed);
		uint64_t nh = ((uint64_t)(gen_of(h) + 1) << 32) | next;
		if (atomic_compare_exchange_weak_explicit(
			    &rt->free_head, &h, nh, memory_order_acquire,
			    memory_order_acquire)) {
			*out = slot;
			return WEFT_OK;
		}
	}
	uint32_t slot = atomic_fetch_add_explicit(&rt->nslots, 1,
	                                          memory_order_relaxed);
	if (slot >= WEFT__MAX_CHUNKS * WEFT__CHUNK_SIZE)
		return WEFT_ENOMEM;
	uint32_t c = slot >> WEFT__CHUNK_SHIFT;
	if (atomic_load_explicit(&rt->chunks[c], memory_order_acquire) == NULL) {
		pthread_mutex_lock(&rt->grow_lock);
		if (atomic_load_explicit(&rt->chunks[c],
		                         memory_order_relaxed) == NULL) {
			struct weft__actor *chunk =
				calloc(WEFT__CHUNK_SIZE, sizeof(*chunk));
			if (chunk == NULL) {
				pthread_mutex_unlock(&rt->grow_lock);
				return WEFT_ENOMEM;
			}
			for (uint32_t i = 0; i < WEFT__CHUNK_SIZE; i++) {
				chunk[i].slot = (c << WEFT__CHUNK_SHIFT) | i;
				atomic_init(&chunk[i].ref_gen, 0);
			}
			/* release: publish the initialised chunk. */
			atomic_store_explicit(&rt->chunks[c], chunk,
			                      memory_order_release);
		}
		pthread_mutex_unlock(&rt->grow_lock);
	}
	*out = slot;
	return WEFT_OK;
}

static void
slot_free(weft_runtime *rt, struct weft__actor *a)
{
	uint64_t h = atomic_load_explicit(&rt->free_head, memory_order_relaxed);
	uint64_t nh;

	do {
		atomic_store_explicit(&a->free_next, (uint32_t)h,
		                      memory_order_relaxed);
		nh = ((uint64_t)(gen_of(h) + 1) << 32) | a->slot;
		/* release: free_next (and the actor's last writes) are
		 * visible to the thread that pops this slot. */
	} while (!atomic_compare_exchange_weak_explicit(
		&rt->free_head, &h, nh, memory_order_release,
		memory_order_relaxed));
}

/* ---- references ---- */

weft_err
weft__actor_hold(weft_runtime *rt, weft_aid aid, struct weft__actor **out)
{
	uint32_t slot = (uint32_t)aid.id;
	uint32_t gen = (uint32_t)(aid.id >> 32);
	struct weft__actor *a;

	if (gen == 0 || (slot >> WEFT__CHUNK_SHIFT) >= WEFT__MAX_CHUNKS ||
	    (a = slot_actor(rt, slot)) == NULL)
		return WEFT_ECLOSED;
	uint64_t s = atomic_load_explicit(&a->ref_gen, memory_order_relaxed);
	do {
		if (gen_of(s) != gen || refs_of(s) == 0)
			return WEFT_ECLOSED;
		/* acquire: we see the actor as its spawner published it. */
	} while (!atomic_compare_exchange_weak_explicit(
		&a->ref_gen, &s, s + 1, memory_order_acquire,
		memory_order_relaxed));
	*out = a;
	return WEFT_OK;
}

void
weft__actor_rele(struct weft__actor *a)
{
	/* acq_rel: the last releaser sees every other holder's writes
	 * before the slot is recycled. */
	uint64_t s = atomic_fetch_sub_explicit(&a->ref_gen, 1,
	                                       memory_order_acq_rel);
	if (refs_of(s) == 1) {
		weft_runtime *rt = a->rt;
		uint32_t g = gen_of(s) + 1;
		if (g == 0)
			g = 1;
		/* A new generation: every old aid now fails its hold. */
		atomic_store_explicit(&a->ref_gen, (uint64_t)g << 32,
		                      memory_order_release);
		slot_free(rt, a);
	}
}

weft_aid
weft__actor_aid(const struct weft__actor *a)
{
	uint64_t s = atomic_load_explicit(
		&((struct weft__actor *)a)->ref_gen, memory_order_relaxed);
	return (weft_aid){((uint64_t)gen_of(s) << 32) | a->slot};
}

/* ---- messages ---- */

weft_msg *
weft_msg_new(uint32_t type, uint32_t size)
{
	unsigned cls;
	weft_msg *m = weft__pool_alloc(sizeof(*m) + (size_t)size, &cls);

	if (m == NULL)
		return NULL;
	m->weft_link = NULL;
	m->type = type;
	m->size = size;
	m->word = 0;
	m->from.id = 0;
	return m;
}

void
weft_msg_free(weft_msg *m)
{
	if (m == NULL)
		return;
	weft__pool_free(m, weft__pool_class(sizeof(*m) + (size_t)m->size));
}

int64_t
weft_msg_outstanding(void)
{
	return weft__pool_outstanding();
}

/* ---- spawn and send ---- */

static void actor_run(struct weft__job *job, struct weft__worker *w);

weft_err
weft_spawn(weft_runtime *rt, const weft_spawn_opts *o, weft_aid *out)
{
	const char *name = o && o->name ? o->name : "actor";
	size_t len = strlen(name);
	uint32_t slot;
	weft_err rv;

	if (o == NULL || len >= WEFT_NAME_MAX ||
	    (o->nfunctions && o->functions == NULL))
		return WEFT_EINVAL;
	for (size_t i = 0; i < o->nfunctions; i++)
		if (o->functions[i].name == NULL || o->functions[i].fn == NULL)
			return WEFT_EINVAL;
	if (atomic_load_explicit(&rt->closing, memory_order_acquire))
		return WEFT_ECLOSED;
	if ((rv = slot_alloc(rt, &slot)) != WEFT_OK)
		return rv;
	struct weft__actor *a = slot_actor(rt, slot);
	if (a == NULL)
		__builtin_unreachable(); /* slot_alloc made the chunk */
	a->job.run = actor_run;
	a->job.next = NULL;
	weft__mailbox_init(&a->mbox);
	atomic_store_explicit(&a->closed, 0, memory_order_relaxed);
	atomic_store_explicit(&a->stop_now, 0, memory_order_relaxed);
	a->batch = o->batch ? o->batch : rt->cfg.batch;
	a->handler = o->handler;
	a->on_exit = o->on_exit;
	a->state = o->state;
	a->rt = rt;
	a->exit_requested = false;
	a->host = NULL;
	a->proxy_fn = NULL;
	a->proxy = NULL;
	atomic_store_explicit(&a->registered, false, memory_order_relaxed);
	if (o->nfunctions) {
		struct weft__host *h = weft__host_get(a);
		if (h)
			weft__host_set_functions(h, o->functions,
			                         o->nfunctions);
		if (h == NULL || h->fns == NULL) {
			if (h)
				weft__host_destroy(h);
			a->host = NULL;
			slot_free(rt, a);
			return WEFT_ENOMEM;
		}
	}
	memcpy(a->uid.name, name, len + 1);
	memset(a->uid.name + len + 1, 0, WEFT_NAME_MAX - len - 1);
	weft__random_bytes(a->uid.uuid, sizeof(a->uid.uuid));

	uint32_t gen = gen_of(atomic_load_explicit(&a->ref_gen,
	                                           memory_order_relaxed));
	if (gen == 0)
		gen = 1;
	COUNT(rt, spawned, 1);
	/* release: a sender whose hold sees refs=1 sees the fields above. */
	atomic_store_explicit(&a->ref_gen, ((uint64_t)gen << 32) | 1,
	                      memory_order_release);
	if (out)
		*out = (weft_aid){((uint64_t)gen << 32) | slot};
	return WEFT_OK;
}

weft_err
weft__spawn_proxy(weft_runtime *rt, const weft_uid *uid,
                  void (*fn)(struct weft__actor *, weft_msg *), void *proxy,
                  weft_exit_fn on_exit, weft_aid *out)
{
	weft_spawn_opts o = {.name = "proxy", .state = proxy,
	                     .on_exit = on_exit, .batch = 256};
	weft_aid aid;
	weft_err rc = weft_spawn(rt, &o, &aid);
	if (rc != WEFT_OK)
		return rc;
	struct weft__actor *a;
	if (weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return WEFT_ECLOSED;
	/* Nobody has its aid yet: these plain writes are published by the
	 * aid's hand-over (a send's hold is an acquire on ref_gen, after the
	 * release that the mailbox push or the aid's publication does). */
	a->uid = *uid;
	a->proxy = proxy;
	a->proxy_fn = fn;
	weft__actor_rele(a);
	*out = aid;
	return WEFT_OK;
}

weft_err
weft__spawn_uid(weft_runtime *rt, const weft_spawn_opts *o,
                const weft_uid *uid, weft_aid *out)
{
	weft_aid aid;
	weft_err rc = weft_spawn(rt, o, &aid);
	if (rc != WEFT_OK)
		return rc;
	struct weft__actor *a;
	if (weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return WEFT_ECLOSED;
	/* Not yet published (see weft__spawn_proxy). */
	memcpy(a->uid.uuid, uid->uuid, sizeof(a->uid.uuid));
	weft__actor_rele(a);
	*out = aid;
	return WEFT_OK;
}

void
weft__actor_set_registered(weft_runtime *rt, weft_aid aid, bool on)
{
	struct weft__actor *a;
	if (weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return;
	atomic_store_explicit(&a->registered, on, memory_order_relaxed);
	weft__actor_rele(a);
}

void *
weft__proxy_of(weft_runtime *rt, weft_aid aid)
{
	struct weft__actor *a;
	if (aid.id == 0 || weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return NULL;
	void *p = a->proxy_fn ? a->proxy : NULL;
	weft__actor_rele(a);
	return p;
}

weft_err
weft__send_internal(weft_runtime *rt, weft_aid to, weft_msg *m)
{
	struct weft__actor *a;

	if (weft__actor_hold(rt, to, &a) != WEFT_OK)
		return WEFT_ECLOSED;
	/* acquire: pairs with the exit's release; after it we refuse. */
	if (atomic_load_explicit(&a->closed, memory_order_acquire)) {
		weft__actor_rele(a);
		return WEFT_ECLOSED;
	}
	if (weft__mailbox_push(&a->mbox, m))
		/* Our hold becomes the scheduled reference. */
		weft__sched_submit(rt->sched, &a->job, WEFT__SUBMIT_NEXT);
	else
		weft__actor_rele(a);
	return WEFT_OK;
}

weft_err
weft_send(weft_runtime *rt, weft_aid to, weft_msg *m)
{
	if (m == NULL || m->type >= WEFT_MSG_TYPE_RESERVED)
		return WEFT_EINVAL;
	return weft__send_internal(rt, to, m);
}

weft_err
weft_stop(weft_runtime *rt, weft_aid to)
{
	weft_msg *m = weft_msg_new(WEFT__MSG_STOP, 0);
	weft_err rv;

	if (m == NULL)
		return WEFT_ENOMEM;
	if ((rv = weft__send_internal(rt, to, m)) != WEFT_OK)
		weft_msg_free(m);
	return rv;
}

weft_err
weft_actor_uid(weft_runtime *rt, weft_aid aid, weft_uid *out)
{
	struct weft__actor *a;

	if (weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return WEFT_ECLOSED;
	bool closed = atomic_load_explicit(&a->closed, memory_order_acquire);
	if (!closed)
		*out = a->uid;
	weft__actor_rele(a);
	return closed ? WEFT_ECLOSED : WEFT_OK;
}

/* ---- turns ---- */

weft_aid
weft_self(const weft_turn *t)
{
	return weft__actor_aid(t->a);
}

weft_runtime *
weft_turn_runtime(const weft_turn *t)
{
	return t->a->rt;
}

const weft_uid *
weft_turn_uid(const weft_turn *t)
{
	return &t->a->uid;
}

void
weft_exit(weft_turn *t)
{
	t->a->exit_requested = true;
}

static inline void
relax(unsigned *spins)
{
	if (++*spins > 64) {
		*spins = 0;
		sched_yield(); /* the half-done pusher may be descheduled */
	} else {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	}
}

/* Frees everything queued (answering requests that expect an answer) and
 * leaves the mailbox empty-and-unscheduled. */
static uint64_t
drain(struct weft__actor *a)
{
	uint64_t n = 0;
	unsigned spins = 0;
	weft_msg *m;

	for (;;) {
		switch (weft__mailbox_pop(&a->mbox, &m)) {
		case WEFT__POP_MSG:
			/* The runtime's own messages are not the user's
			 * loss. */
			if (m->type < WEFT_MSG_TYPE_RESERVED)
				n++;
			weft__msg_dispose_at_exit(a, m);
			break;
		case WEFT__POP_EMPTY:
			if (weft__mailbox_mark_empty(&a->mbox))
				return n;
			break;
		case WEFT__POP_BUSY:
			relax(&spins);
			break;
		}
	}
}

static void
finish_exit(struct weft__actor *a, weft_exit_reason why)
{
	weft_runtime *rt = a->rt;
	weft_aid self = weft__actor_aid(a);

	/* release: a sender that sees closed=1 refuses; one that raced past
	 * the check pushes a message we (or a later drain) free. */
	atomic_store_explicit(&a->closed, 1, memory_order_release);
	/* Before the host's end wakes a weft_task_run caller, who may close
	 * the runtime (and its transport) at once. */
	if (atomic_load_explicit(&a->registered, memory_order_relaxed)) {
		atomic_store_explicit(&a->registered, false,
		                      memory_order_relaxed);
		weft__registry_actor_exit(rt, &a->uid);
	}
	if (a->host) {
		/* Tasks end (cancelled), peers and the parent are told. */
		weft__host_destroy(a->host);
		a->host = NULL;
	}
	uint64_t dropped = drain(a);
	if (dropped)
		COUNT(rt, dropped, dropped);
	WEFT_LOG(WEFT_LOG_RUNTIME, "exit (%s), %llu queued message(s) dropped",
	         why == WEFT_EXIT_NORMAL    ? "normal"
	         : why == WEFT_EXIT_STOPPED ? "stopped"
	                                    : "shutdown",
	         (unsigned long long)dropped);
	if (a->on_exit)
		a->on_exit(self, a->state, why);
	a->handler = NULL;
	a->state = NULL;
	COUNT(rt, exited, 1);
	if (atomic_load_explicit(&rt->closing, memory_order_acquire)) {
		pthread_mutex_lock(&rt->close_lock);
		pthread_cond_broadcast(&rt->close_cond);
		pthread_mutex_unlock(&rt->close_lock);
	}
	weft__log_set_actor(NULL);
	weft__actor_rele(a); /* scheduled */
	weft__actor_rele(a); /* alive */
}

/* Runs the tasks that this turn's messages made ready. Called when the
 * mailbox is empty and at the end of a batch, not after each message: a
 * burst of stream items is queued first and its reader then resumed once
 * (one fiber switch per burst, not per item). */
static inline bool
run_tasks(struct weft__actor *a)
{
	if (a->host == NULL)
		return false;
	weft__host_run_ready(a->host);
	return a->exit_requested;
}

static void
actor_run(struct weft__job *job, struct weft__worker *w)
{
	struct weft__actor *a = (struct weft__actor *)job;
	weft_runtime *rt = a->rt;
	struct weft_turn turn = {a, w};
	weft_msg *m;
	unsigned spins = 0;

	if (atomic_load_explicit(&a->closed, memory_order_acquire)) {
		/* A send raced with the exit and scheduled us again. */
		uint64_t dropped = drain(a);
		if (dropped)
			COUNT(rt, dropped, dropped);
		weft__actor_rele(a);
		return;
	}
	weft__log_set_actor(&a->uid);
	for (uint32_t i = 0; i < a->batch;) {
		if (atomic_load_explicit(&a->stop_now, memory_order_relaxed)) {
			finish_exit(a, WEFT_EXIT_SHUTDOWN);
			return;
		}
		switch (weft__mailbox_pop(&a->mbox, &m)) {
		case WEFT__POP_MSG:
			i++;
			if (m->type == WEFT__MSG_STOP) {
				weft_msg_free(m);
				finish_exit(a, WEFT_EXIT_STOPPED);
				return;
			}
			if (m->type == WEFT__MSG_WAKE) {
				weft_msg_free(m);
				continue; /* stop_now is checked above */
			}
			if (a->proxy_fn)
				a->proxy_fn(a, m);
			else if (m->type >= WEFT_MSG_TYPE_RESERVED)
				weft__host_dispatch(a, m);
			else if (a->handler)
				a->handler(&turn, m, a->state);
			else
				weft_msg_free(m); /* no handler for it */
			if (a->exit_requested) {
				finish_exit(a, WEFT_EXIT_NORMAL);
				return;
			}
			break;
		case WEFT__POP_EMPTY:
			if (a->proxy_fn)
				a->proxy_fn(a, NULL);
			if (run_tasks(a)) {
				finish_exit(a, WEFT_EXIT_NORMAL);
				return;
			}
			if (a->host && a->host->yield_requested)
				goto yield;
			if (a->host && a->host->ready_head)
				break; /* a task readied another */
			if (weft__mailbox_mark_empty(&a->mbox)) {
				weft__log_set_actor(NULL);
				/* From here another worker may run us: touch
				 * nothing but our reference. */
				weft__actor_rele(a);
				return;
			}
			break;
		case WEFT__POP_BUSY:
			if (++spins > 16)
				goto requeue;
			break;
		}
	}
requeue:
	if (a->proxy_fn)
		a->proxy_fn(a, NULL);
	if (run_tasks(a)) {
		finish_exit(a, WEFT_EXIT_NORMAL);
		return;
	}
yield:
	if (a->host)
		a->host->yield_requested = false;
	weft__log_set_actor(NULL);
	weft__sched_submit(rt->sched, &a->job, WEFT__SUBMIT_TAIL);
}

/* ---- runtime-wide ---- */

void
weft__actor_stats(weft_runtime *rt, uint64_t *spawned, uint64_t *exited,
                  uint64_t *dropped)
{
	/* Exits first: every exit follows its spawn, so live never reads
	 * negative. */
	*exited = SUM(rt, exited);
	*spawned = SUM(rt, spawned);
	*dropped = SUM(rt, dropped);
}

void
weft__actor_kill(weft_runtime *rt, weft_aid aid)
{
	struct weft__actor *a;

	if (weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return;
	if (!atomic_exchange_explicit(&a->stop_now, 1, memory_order_acq_rel)) {
		weft_msg *m = weft_msg_new(WEFT__MSG_WAKE, 0);
		if (m != NULL && weft__send_internal(rt, aid, m) != WEFT_OK)
			weft_msg_free(m);
	}
	weft__actor_rele(a);
}

/* Marks every live actor stop_now and wakes it. Returns how many it
 * marked. */
uint64_t
weft__actor_stop_all(weft_runtime *rt)
{
	uint64_t n = 0;
	uint32_t nslots = atomic_load_explicit(&rt->nslots,
	                                       memory_order_acquire);

	for (uint32_t slot = 0; slot < nslots; slot++) {
		struct weft__actor *a = slot_actor(rt, slot);
		if (a == NULL)
			continue;
		uint64_t s = atomic_load_explicit(&a->ref_gen,
		                                  memory_order_acquire);
		if (refs_of(s) == 0)
			continue;
		weft_aid aid = {((uint64_t)gen_of(s) << 32) | slot};
		struct weft__actor *held;
		if (weft__actor_hold(rt, aid, &held) != WEFT_OK)
			continue;
		if (!atomic_load_explicit(&a->closed, memory_order_acquire) &&
		    !atomic_exchange_explicit(&a->stop_now, 1,
		                              memory_order_acq_rel)) {
			weft_msg *m = weft_msg_new(WEFT__MSG_WAKE, 0);
			if (m != NULL &&
			    weft__send_internal(rt, aid, m) != WEFT_OK)
				weft_msg_free(m);
			n++;
		}
		weft__actor_rele(held);
	}
	return n;
}

/* ---- identity ---- */

static _Thread_local uint64_t rng_state[4];
static _Thread_local bool rng_seeded;

static inline uint64_t
rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void
weft__random_bytes(uint8_t *out, size_t n)
{
	uint64_t *s = rng_state;

	if (!rng_seeded) {
		if (getrandom(s, sizeof(rng_state), 0) != sizeof(rng_state))
			for (int i = 0; i < 4; i++)
				s[i] = weft__now_ns() * 0x9E3779B97F4A7C15ull + (uint64_t)i;
		rng_seeded = true;
	}
	while (n > 0) {
		/* xoshiro256**: fast and well distributed; not for secrets. */
		uint64_t r = rotl(s[1] * 5, 7) * 9;
		uint64_t t = s[1] << 17;
		s[2] ^= s[0];
		s[3] ^= s[1];
		s[1] ^= s[2];
		s[0] ^= s[3];
		s[2] ^= t;
		s[3] = rotl(s[3], 45);
		size_t k = n < 8 ? n : 8;
		memcpy(out, &r, k);
		out += k;
		n -= k;
	}
}

char *
weft_uid_format(const weft_uid *uid, char *buf, size_t len)
{
	snprintf(buf, len, "%s:%02x%02x%02x%02x", uid->name, uid->uuid[0],
	         uid->uuid[1], uid->uuid[2], uid->uuid[3]);
	return buf;
}

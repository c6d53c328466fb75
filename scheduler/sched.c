/* scheduler/sched.c - workers, the global queue, stealing and parking.
 *
 * Each worker owns a FIFO ring (runq.h) and a one-slot "run next": a job made
 * runnable by the running turn goes there and runs right after it, hot in
 * this core's cache (ping-pong and rings stay on one core). A worker looks
 * for work in this order: every 61st look the global queue (so outside work
 * is never starved), run-next (at most RUNNEXT_STREAK times in a row when
 * others wait), its ring, the global queue, then other workers' rings.
 *
 * Parking follows the Go runtime's protocol. At most half of the non-idle
 * workers search at once ("spinning"). A submitter wakes a parked worker only
 * when nobody is spinning, and the worker it wakes starts out spinning, so a
 * burst of submissions costs one wake-up, not one per job. A worker about to
 * park first publishes that it is idle, then re-checks every queue; a
 * submitter first publishes its job, then reads the idle count. Both sides
 * put a seq_cst fence between the two steps, so at least one of them sees the
 * other: no wake-up is lost.
 *
 * Lock order: gq_lock and idle_lock are leaves; no job runs with either
 * held. */

#include "scheduler/sched.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "scheduler/runq.h"

#define RUNNEXT_STREAK 64   /* run-next turns in a row while others wait */
#define GLOBAL_CHECK_TICK 61 /* look at the global queue every Nth pick */
#define STEAL_ROUNDS 4

enum park_state { RUNNING = 0, SLEEPING = 1, WOKEN = 2 };

#define WEFT__UNREACHABLE() __builtin_trap()

struct weft__worker {
	/* Set before the thread starts; read-only afterwards. */
	struct weft__sched *s;
	unsigned index;
	pthread_t thread;

	/* Owner thread only. */
	uint64_t rng;
	uint32_t tick;
	unsigned runnext_streak;
	/* We spilled our older half to the global queue: run from there
	 * first, so that spilled jobs do not wait behind newer ones. */
	bool prefer_global;
	uint64_t *seen_turn; /* per victim: its turn_seq when we last looked */

	/* Owner writes, anyone reads (relaxed counters). */
	_Atomic uint64_t jobs_run;
	_Atomic uint64_t steals;
	_Atomic uint64_t parks;

	/* Owner pushes; thieves take. */
	_Alignas(64) struct weft__runq q;
	_Alignas(64) _Atomic(struct weft__job *) runnext;
	/* Bumped by the owner at each job start; thieves read it to tell a
	 * worker stuck in one long turn (its run-next may be stolen). */
	_Atomic uint64_t turn_seq;
	/* The futex word; written by the owner and by wakers. */
	_Alignas(64) _Atomic uint32_t park_state;
};

struct weft__sched {
	struct weft__sched_config cfg;
	unsigned n;
	struct weft__worker *w;

	_Alignas(64) pthread_mutex_t gq_lock;
	struct weft__job *gq_head, *gq_tail;
	_Atomic uint64_t gq_len; /* written under gq_lock; read racily */

	_Alignas(64) _Atomic uint32_t nidle;
	_Atomic uint32_t nspinning;
	_Atomic bool stopping;

	pthread_mutex_t idle_lock;
	pthread_cond_t idle_cond;
};

static _Thread_local struct weft__worker *tls_worker;

uint64_t
weft__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline void
count(_Atomic uint64_t *c)
{
	/* Only the owner writes: a plain load+store avoids a locked RMW. */
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

static uint64_t
next_rand(uint64_t *x)
{
	/* xorshift64*: cheap, and enough to spread victims. */
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 2685821657736338717ull;
}

static void
futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL,
	        NULL, 0);
}

static void
futex_wake(_Atomic uint32_t *addr)
{
	syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL,
	        0);
}

/* ---- global queue ---- */

static void
gq_push_list(struct weft__sched *s, struct weft__job *first,
             struct weft__job *last, uint32_t n)
{
	last->next = NULL;
	pthread_mutex_lock(&s->gq_lock);
	if (s->gq_tail)
		s->gq_tail->next = first;
	else
		s->gq_head = first;
	s->gq_tail = last;
	/* relaxed: the lock orders the list; the count is a hint outside. */
	atomic_store_explicit(&s->gq_len,
	                      atomic_load_explicit(&s->gq_len,
	                                           memory_order_relaxed) + n,
	                      memory_order_relaxed);
	pthread_mutex_unlock(&s->gq_lock);
}

/* Takes a fair share of the global queue: one job to run, the rest into w's
 * ring. */
static struct weft__job *
gq_take(struct weft__sched *s, struct weft__worker *w, uint32_t max)
{
	if (atomic_load_explicit(&s->gq_len, memory_order_relaxed) == 0)
		return NULL;
	pthread_mutex_lock(&s->gq_lock);
	uint64_t len = atomic_load_explicit(&s->gq_len, memory_order_relaxed);
	uint64_t n = len / s->n + 1;
	if (n > len)
		n = len;
	if (n > max)
		n = max;
	if (n > WEFT__RUNQ_SIZE / 2)
		n = WEFT__RUNQ_SIZE / 2;
	/* Only the owner pushes, so the room we see cannot shrink. */
	uint32_t room = WEFT__RUNQ_SIZE - weft__runq_len(&w->q);
	if (n > (uint64_t)room + 1)
		n = (uint64_t)room + 1;
	struct weft__job *first = s->gq_head;
	struct weft__job *j = first;
	for (uint64_t i = 0; i < n; i++) {
		struct weft__job *next = j->next;
		if (i > 0 && !weft__runq_push(&w->q, j))
			WEFT__UNREACHABLE(); /* room was checked */
		s->gq_head = next;
		j = next;
	}
	if (s->gq_head == NULL)
		s->gq_tail = NULL;
	atomic_store_explicit(&s->gq_len, len - n, memory_order_relaxed);
	pthread_mutex_unlock(&s->gq_lock);
	if (first)
		first->next = NULL;
	return first;
}

/* ---- waking ---- */

static void
wakep(struct weft__sched *s)
{
	uint32_t zero = 0;

	/* Become the one spinner on behalf of the worker we wake; if someone
	 * is spinning already, they will find the work. */
	if (!atomic_compare_exchange_strong_explicit(&s->nspinning, &zero, 1,
	                                             memory_order_seq_cst,
	                                             memory_order_relaxed))
		return;
	for (unsigned i = 0; i < s->n; i++) {
		struct weft__worker *v = &s->w[i];
		uint32_t st = SLEEPING;
		if (atomic_load_explicit(&v->park_state, memory_order_relaxed) !=
		    SLEEPING)
			continue;
		if (atomic_compare_exchange_strong_explicit(
			    &v->park_state, &st, WOKEN, memory_order_seq_cst,
			    memory_order_relaxed)) {
			atomic_fetch_sub_explicit(&s->nidle, 1,
			                          memory_order_seq_cst);
			futex_wake(&v->park_state);
			return; /* v inherits our spinner count */
		}
	}
	atomic_fetch_sub_explicit(&s->nspinning, 1, memory_order_seq_cst);
}

/* ThreadSanitizer does not model fences (GCC refuses them under
 * -fsanitize=thread), so its builds use the RMW form of the same Dekker
 * pattern: a seq_cst read-modify-write of nidle is ordered against park()'s
 * increment and synchronizes with it either way round. */
#if defined(__SANITIZE_THREAD__)
#define WEFT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#endif
#endif

static inline uint32_t
nidle_after_publish(struct weft__sched *s)
{
#ifdef WEFT_TSAN
	return atomic_fetch_add_explicit(&s->nidle, 0, memory_order_seq_cst);
#else
	/* seq_cst fence: our job is published before we read nidle; pairs
	 * with the fence in park(). */
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load_explicit(&s->nidle, memory_order_relaxed);
#endif
}

static inline void
maybe_wake(struct weft__sched *s)
{
	if (nidle_after_publish(s) != 0 &&
	    atomic_load_explicit(&s->nspinning, memory_order_relaxed) == 0)
		wakep(s);
}

/* ---- submitting ---- */

static void
push_local(struct weft__worker *w, struct weft__job *job)
{
	struct weft__job *first, *last;

	while (!weft__runq_push(&w->q, job)) {
		uint32_t n = weft__runq_spill(&w->q, job, &first, &last);
		if (n) {
			gq_push_list(w->s, first, last, n);
			w->prefer_global = true;
			return;
		}
	}
}

void
weft__sched_submit(struct weft__sched *s, struct weft__job *job,
                   enum weft__submit_hint hint)
{
	struct weft__worker *w = tls_worker;

	if (w != NULL && w->s == s) {
		if (hint == WEFT__SUBMIT_NEXT && !s->cfg.deterministic) {
			/* The old run-next, if any, waits its turn in the
			 * ring. */
			struct weft__job *old = atomic_exchange_explicit(
				&w->runnext, job, memory_order_acq_rel);
			if (old == NULL) {
				/* We run it ourselves right after this turn,
				 * unless the turn is long: an idle worker
				 * may then steal it, so still wake one. */
				maybe_wake(s);
				return;
			}
			push_local(w, old);
		} else {
			push_local(w, job);
		}
	} else {
		job->next = NULL;
		gq_push_list(s, job, job, 1);
	}
	maybe_wake(s);
}

/* ---- finding work ---- */

static bool
any_work(struct weft__sched *s)
{
	if (atomic_load_explicit(&s->gq_len, memory_order_relaxed) != 0)
		return true;
	for (unsigned i = 0; i < s->n; i++) {
		if (weft__runq_len(&s->w[i].q) != 0)
			return true;
		if (atomic_load_explicit(&s->w[i].runnext,
		                         memory_order_relaxed) != NULL)
			return true;
	}
	return false;
}

static struct weft__job *
local_get(struct weft__worker *w)
{
	struct weft__sched *s = w->s;
	struct weft__job *j;

	if (s->cfg.deterministic) {
		/* One worker; draw only when there is a choice to make, so
		 * idle polls (whose number depends on thread timing) do not
		 * consume the seeded sequence. Outside work joins the ring
		 * only when the ring is empty. */
		if (weft__runq_len(&w->q) == 0 &&
		    (j = gq_take(s, w, WEFT__RUNQ_SIZE / 2)) != NULL) {
			if (!weft__runq_push(&w->q, j))
				WEFT__UNREACHABLE();
		}
		if (weft__runq_len(&w->q) == 0)
			return NULL;
		return weft__runq_pop_at(&w->q, next_rand(&w->rng));
	}
	if (w->prefer_global && w->tick % GLOBAL_CHECK_TICK != 0) {
		/* FIFO across the spill: the global queue holds our older
		 * jobs. Without this a job that requeues itself (a spawner)
		 * runs before them every time and the queue grows without
		 * bound. Every 61st pick still goes to the local ring. */
		++w->tick;
		if ((j = gq_take(s, w, 1)) != NULL)
			return j;
		w->prefer_global = false;
	}
	if (++w->tick % GLOBAL_CHECK_TICK == 0) {
		j = gq_take(s, w, WEFT__RUNQ_SIZE / 2);
		if (j)
			return j;
	}
	j = atomic_load_explicit(&w->runnext, memory_order_relaxed);
	if (j != NULL) {
		bool others_wait = weft__runq_len(&w->q) != 0;
		/* acquire: pairs with a thief's CAS; whoever wins owns j. */
		j = atomic_exchange_explicit(&w->runnext, NULL,
		                             memory_order_acquire);
		if (j != NULL) {
			if (!others_wait || w->runnext_streak < RUNNEXT_STREAK) {
				w->runnext_streak++;
				return j;
			}
			/* A pair bouncing messages through run-next
			 * would starve the ring: queue it behind. */
			push_local(w, j);
		}
	}
	w->runnext_streak = 0;
	return weft__runq_pop(&w->q);
}

static struct weft__job *
steal_work(struct weft__worker *w, bool take_runnext)
{
	struct weft__sched *s = w->s;
	unsigned start = (unsigned)(next_rand(&w->rng) % s->n);

	for (unsigned k = 0; k < s->n; k++) {
		unsigned i = (start + k) % s->n;
		struct weft__worker *v = &s->w[i];
		if (v == w)
			continue;
		struct weft__job *j = weft__runq_steal(&w->q, &v->q);
		if (j) {
			count(&w->steals);
			return j;
		}
		if (!take_runnext)
			continue;
		j = atomic_load_explicit(&v->runnext, memory_order_relaxed);
		if (j == NULL)
			continue;
		/* relaxed: a heuristic; only the CAS below decides. */
		uint64_t seq = atomic_load_explicit(&v->turn_seq,
		                                    memory_order_relaxed);
		if (w->seen_turn[i] != seq) {
			/* v may just be finishing a short turn: leave its
			 * run-next for now and look again later. */
			w->seen_turn[i] = seq;
			continue;
		}
		/* acquire: pairs with the owner's exchange that stored j. */
		if (atomic_compare_exchange_strong_explicit(
			    &v->runnext, &j, NULL, memory_order_acquire,
			    memory_order_relaxed)) {
			count(&w->steals);
			return j;
		}
	}
	return NULL;
}

static void
notify_if_idle(struct weft__sched *s)
{
	pthread_mutex_lock(&s->idle_lock);
	pthread_cond_broadcast(&s->idle_cond);
	pthread_mutex_unlock(&s->idle_lock);
}

/* Sleeps until woken. Returns true if we come back as a spinner (a waker
 * counted us), false if we cancelled the sleep ourselves. */
static bool
park(struct weft__worker *w, bool spinning)
{
	struct weft__sched *s = w->s;
	uint32_t st = SLEEPING;

	atomic_store_explicit(&w->park_state, SLEEPING, memory_order_seq_cst);
	uint32_t idle = atomic_fetch_add_explicit(&s->nidle, 1,
	                                          memory_order_seq_cst) + 1;
	if (spinning)
		atomic_fetch_sub_explicit(&s->nspinning, 1,
		                          memory_order_seq_cst);
#ifndef WEFT_TSAN
	/* seq_cst fence: idle is published before we re-check the queues;
	 * pairs with maybe_wake(). (Under TSan the seq_cst RMW above is
	 * enough: see nidle_after_publish().) */
	atomic_thread_fence(memory_order_seq_cst);
#endif
	if (any_work(s) ||
	    atomic_load_explicit(&s->stopping, memory_order_acquire)) {
		if (atomic_compare_exchange_strong_explicit(
			    &w->park_state, &st, RUNNING,
			    memory_order_seq_cst, memory_order_relaxed)) {
			atomic_fetch_sub_explicit(&s->nidle, 1,
			                          memory_order_seq_cst);
			return false;
		}
		/* A waker got us first and counted us as spinning. */
		atomic_store_explicit(&w->park_state, RUNNING,
		                      memory_order_relaxed);
		return true;
	}
	if (idle == s->n)
		notify_if_idle(s);
	count(&w->parks);
	while (atomic_load_explicit(&w->park_state, memory_order_acquire) ==
	       SLEEPING)
		futex_wait(&w->park_state, SLEEPING);
	atomic_store_explicit(&w->park_state, RUNNING, memory_order_relaxed);
	return true;
}

static struct weft__job *
find_work(struct weft__worker *w)
{
	struct weft__sched *s = w->s;
	bool spinning = false;
	struct weft__job *j;

	for (;;) {
		j = local_get(w);
		if (j == NULL)
			j = gq_take(s, w, UINT32_MAX);
		if (j == NULL && s->n > 1) {
			if (!spinning) {
				uint32_t sp = atomic_load_explicit(
					&s->nspinning, memory_order_relaxed);
				uint32_t busy = s->n - atomic_load_explicit(
					&s->nidle, memory_order_relaxed);
				if (2 * sp < busy) {
					atomic_fetch_add_explicit(
						&s->nspinning, 1,
						memory_order_seq_cst);
					spinning = true;
				}
			}
			if (spinning) {
				uint64_t deadline = weft__now_ns() +
					(uint64_t)s->cfg.spin_us * 1000u;
				for (unsigned r = 0; j == NULL; r++) {
					j = steal_work(w, r >= STEAL_ROUNDS);
					if (j == NULL)
						j = gq_take(s, w, UINT32_MAX);
					if (j != NULL ||
					    weft__now_ns() >= deadline ||
					    atomic_load_explicit(
						    &s->stopping,
						    memory_order_relaxed))
						break;
					for (int p = 0; p < 32; p++)
						cpu_relax();
				}
			}
		}
		if (j != NULL) {
			if (spinning &&
			    atomic_fetch_sub_explicit(&s->nspinning, 1,
			                              memory_order_seq_cst) ==
				    1)
				/* We were the last searcher and found work:
				 * there may be more, so keep one looking. */
				maybe_wake(s);
			return j;
		}
		if (atomic_load_explicit(&s->stopping, memory_order_acquire) &&
		    !any_work(s)) {
			if (spinning)
				atomic_fetch_sub_explicit(
					&s->nspinning, 1,
					memory_order_seq_cst);
			return NULL;
		}
		spinning = park(w, spinning);
	}
}

static void *
worker_main(void *arg)
{
	struct weft__worker *w = arg;
	struct weft__sched *s = w->s;
	struct weft__job *j;

	tls_worker = w;
	if (s->cfg.on_thread_start)
		s->cfg.on_thread_start(w, s->cfg.arg);
	while ((j = find_work(w)) != NULL) {
		atomic_store_explicit(
			&w->turn_seq,
			atomic_load_explicit(&w->turn_seq,
			                     memory_order_relaxed) + 1,
			memory_order_relaxed);
		j->run(j, w);
		count(&w->jobs_run);
	}
	if (s->cfg.on_thread_stop)
		s->cfg.on_thread_stop(w, s->cfg.arg);
	tls_worker = NULL;
	return NULL;
}

/* ---- lifecycle ---- */

weft_err
weft__sched_create(const struct weft__sched_config *cfg,
                   struct weft__sched **out)
{
	struct weft__sched *s;
	unsigned n = cfg->deterministic ? 1 : cfg->workers;
	unsigned started = 0;

	if (n == 0 || n > 1024)
		return WEFT_EINVAL;
	if ((s = aligned_alloc(64, (sizeof(*s) + 63) & ~(size_t)63)) == NULL)
		return WEFT_ENOMEM;
	memset(s, 0, sizeof(*s));
	s->cfg = *cfg;
	s->n = n;
	size_t wsz = ((sizeof(*s->w) * n) + 63) & ~(size_t)63;
	if ((s->w = aligned_alloc(64, wsz)) == NULL)
		goto out_free_sched;
	memset(s->w, 0, wsz);
	pthread_mutex_init(&s->gq_lock, NULL);
	pthread_mutex_init(&s->idle_lock, NULL);
	pthread_cond_init(&s->idle_cond, NULL);
	atomic_init(&s->gq_len, 0);
	atomic_init(&s->nidle, 0);
	atomic_init(&s->nspinning, 0);
	atomic_init(&s->stopping, false);
	for (unsigned i = 0; i < n; i++) {
		struct weft__worker *w = &s->w[i];
		w->s = s;
		w->index = i;
		w->rng = (cfg->seed ? cfg->seed : 0x9E3779B97F4A7C15ull) +
			 (uint64_t)i * 0x632BE59BD9B4E019ull;
		if (w->rng == 0)
			w->rng = 1;
		weft__runq_init(&w->q);
		atomic_init(&w->runnext, NULL);
		atomic_init(&w->turn_seq, 0);
		atomic_init(&w->park_state, RUNNING);
		if ((w->seen_turn = calloc(n, sizeof(*w->seen_turn))) == NULL)
			goto out_stop;
	}
	for (; started < n; started++)
		if (pthread_create(&s->w[started].thread, NULL, worker_main,
		                   &s->w[started]) != 0)
			goto out_stop;
	*out = s;
	return WEFT_OK;

out_stop:
	atomic_store_explicit(&s->stopping, true, memory_order_seq_cst);
	for (unsigned i = 0; i < started; i++) {
		atomic_store(&s->w[i].park_state, WOKEN);
		futex_wake(&s->w[i].park_state);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(s->w[i].thread, NULL);
	for (unsigned i = 0; i < n; i++)
		free(s->w[i].seen_turn);
	free(s->w);
out_free_sched:
	free(s);
	return WEFT_ENOMEM;
}

void
weft__sched_destroy(struct weft__sched *s)
{
	atomic_store_explicit(&s->stopping, true, memory_order_seq_cst);
	for (unsigned i = 0; i < s->n; i++) {
		struct weft__worker *v = &s->w[i];
		uint32_t st = SLEEPING;
		if (atomic_compare_exchange_strong(&v->park_state, &st,
		                                   WOKEN)) {
			atomic_fetch_sub(&s->nidle, 1);
			atomic_fetch_add(&s->nspinning, 1);
			futex_wake(&v->park_state);
		}
	}
	for (unsigned i = 0; i < s->n; i++)
		pthread_join(s->w[i].thread, NULL);
	for (unsigned i = 0; i < s->n; i++)
		free(s->w[i].seen_turn);
	pthread_mutex_destroy(&s->gq_lock);
	pthread_mutex_destroy(&s->idle_lock);
	pthread_cond_destroy(&s->idle_cond);
	free(s->w);
	free(s);
}

weft_err
weft__sched_wait_idle(struct weft__sched *s, uint64_t timeout_ns)
{
	uint64_t deadline = weft__now_ns() + timeout_ns;
	weft_err rv = WEFT_OK;

	if (weft__sched_current(s) != NULL)
		return WEFT_ESTATE;
	pthread_mutex_lock(&s->idle_lock);
	for (;;) {
		if (atomic_load(&s->nidle) == s->n && !any_work(s))
			break;
		uint64_t now = weft__now_ns();
		if (now >= deadline) {
			rv = WEFT_ETIMEDOUT;
			break;
		}
		/* Wait at most 1 ms per round: the last parker's broadcast
		 * can slip between our check and the wait. */
		uint64_t until = now + 1000000u;
		if (until > deadline)
			until = deadline;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t rel = until - now;
		ts.tv_sec += (time_t)(rel / 1000000000u);
		ts.tv_nsec += (long)(rel % 1000000000u);
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->idle_cond, &s->idle_lock, &ts);
	}
	pthread_mutex_unlock(&s->idle_lock);
	return rv;
}

struct weft__worker *
weft__sched_current(const struct weft__sched *s)
{
	struct weft__worker *w = tls_worker;
	return (w != NULL && w->s == s) ? w : NULL;
}

struct weft__worker *
weft__worker_self(void)
{
	return tls_worker;
}

unsigned
weft__worker_index(const struct weft__worker *w)
{
	return w->index;
}

struct weft__sched *
weft__worker_sched(const struct weft__worker *w)
{
	return w->s;
}

void
weft__sched_stats(struct weft__sched *s, struct weft__sched_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->workers = s->n;
	for (unsigned i = 0; i < s->n; i++) {
		out->jobs_run += atomic_load_explicit(&s->w[i].jobs_run,
		                                      memory_order_relaxed);
		out->steals += atomic_load_explicit(&s->w[i].steals,
		                                    memory_order_relaxed);
		out->parks += atomic_load_explicit(&s->w[i].parks,
		                                   memory_order_relaxed);
	}
}

/* runtime/timer.c - one timer thread per runtime, started on first use: a
 * binary heap of deadlines; at each deadline it sends a TIMER message to the
 * task's actor, which wakes the task if it is still waiting for that very
 * timer (the sequence number says so). Cancelling a timer is not needed:
 * a stale one is ignored on arrival. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "runtime/host.h"

struct weft__timers {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct weft__timer_node **heap;
	size_t len, cap;
	bool stop;
	/* What the thread sleeps until (UINT64_MAX: no deadline). Arming
	 * wakes it only for an earlier deadline; a removed entry just costs
	 * it one early wake-up, so a cancel-then-rearm cycle (every context
	 * cancel) costs no futex call. */
	uint64_t waiting_until;
	weft_runtime *rt;
};

static void
place(struct weft__timer_node **h, size_t i, struct weft__timer_node *n)
{
	h[i] = n;
	n->pos = i;
}

static void
heap_up(struct weft__timer_node **h, size_t i)
{
	struct weft__timer_node *n = h[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h[p]->deadline <= n->deadline)
			break;
		place(h, i, h[p]);
		i = p;
	}
	place(h, i, n);
}

static void
heap_down(struct weft__timer_node **h, size_t len, size_t i)
{
	struct weft__timer_node *n = h[i];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		uint64_t best = n->deadline;
		if (l < len && h[l]->deadline < best) {
			m = l;
			best = h[l]->deadline;
		}
		if (r < len && h[r]->deadline < best)
			m = r;
		if (m == i)
			break;
		place(h, i, h[m]);
		i = m;
	}
	place(h, i, n);
}

static void
heap_remove(struct weft__timers *tm, size_t i)
{
	struct weft__timer_node *gone = tm->heap[i];
	gone->pos = SIZE_MAX;
	if (--tm->len == i)
		return;
	place(tm->heap, i, tm->heap[tm->len]);
	heap_down(tm->heap, tm->len, i);
	heap_up(tm->heap, tm->heap[i]->pos);
}

static void
fire(weft_runtime *rt, struct weft__timer_node *n)
{
	/* The node may be re-armed as soon as the message is out: copy. */
	struct weft__task *task = n->task;
	weft_aid aid = n->aid;
	uint64_t seq = n->seq;
	weft_msg *m = weft_msg_new(WEFT__MSG_TIMER, sizeof(task));
	if (m == NULL)
		return; /* the task stays blocked; its owner may cancel it */
	m->word = seq;
	memcpy(weft_msg_data(m), &task, sizeof(task));
	weft__send_sys(rt, aid, m); /* disposes (drops the ref) on failure */
}

static void *
timer_main(void *arg)
{
	struct weft__timers *tm = arg;

	pthread_mutex_lock(&tm->lock);
	while (!tm->stop) {
		uint64_t now = weft__now_ns();
		if (tm->len > 0 && tm->heap[0]->deadline <= now) {
			struct weft__timer_node n = *tm->heap[0];
			heap_remove(tm, 0);
			pthread_mutex_unlock(&tm->lock);
			fire(tm->rt, &n);
			pthread_mutex_lock(&tm->lock);
			continue;
		}
		if (tm->len == 0) {
			tm->waiting_until = UINT64_MAX;
			pthread_cond_wait(&tm->cond, &tm->lock);
		} else {
			uint64_t d = tm->heap[0]->deadline;
			tm->waiting_until = d;
			struct timespec ts = {(time_t)(d / 1000000000u),
			                      (long)(d % 1000000000u)};
			pthread_cond_timedwait(&tm->cond, &tm->lock, &ts);
		}
	}
	/* Entries left hold task references: hand them back as messages the
	 * actors dispose of. */
	while (tm->len > 0) {
		struct weft__timer_node n = *tm->heap[tm->len - 1];
		heap_remove(tm, tm->len - 1);
		pthread_mutex_unlock(&tm->lock);
		fire(tm->rt, &n);
		pthread_mutex_lock(&tm->lock);
	}
	pthread_mutex_unlock(&tm->lock);
	return NULL;
}

static struct weft__timers *
timers_get(weft_runtime *rt)
{
	pthread_mutex_lock(&rt->timers_lock);
	if (rt->timers == NULL) {
		struct weft__timers *tm = calloc(1, sizeof(*tm));
		if (tm) {
			pthread_condattr_t ca;
			pthread_condattr_init(&ca);
			pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
			pthread_cond_init(&tm->cond, &ca);
			pthread_condattr_destroy(&ca);
			pthread_mutex_init(&tm->lock, NULL);
			tm->rt = rt;
			tm->waiting_until = UINT64_MAX;
			if (pthread_create(&tm->thread, NULL, timer_main, tm)) {
				free(tm);
				tm = NULL;
			}
		}
		rt->timers = tm;
	}
	pthread_mutex_unlock(&rt->timers_lock);
	return rt->timers;
}

void
weft__timer_arm(weft_runtime *rt, struct weft__timer_node *n)
{
	struct weft__timers *tm = timers_get(rt);

	n->pos = SIZE_MAX;
	if (tm == NULL) {
		fire(rt, n); /* degrade: fire at once rather than never */
		return;
	}
	pthread_mutex_lock(&tm->lock);
	if (tm->len == tm->cap) {
		size_t cap = tm->cap ? 2 * tm->cap : 64;
		struct weft__timer_node **h = realloc(tm->heap, cap * sizeof(*h));
		if (h == NULL) {
			pthread_mutex_unlock(&tm->lock);
			fire(rt, n);
			return;
		}
		tm->heap = h;
		tm->cap = cap;
	}
	place(tm->heap, tm->len, n);
	heap_up(tm->heap, tm->len++);
	if (n->deadline < tm->waiting_until) {
		tm->waiting_until = n->deadline;
		pthread_cond_signal(&tm->cond); /* an earlier deadline */
	}
	pthread_mutex_unlock(&tm->lock);
}

bool
weft__timer_cancel(weft_runtime *rt, struct weft__timer_node *n)
{
	struct weft__timers *tm = rt->timers;
	bool removed = false;

	if (tm == NULL)
		return false;
	pthread_mutex_lock(&tm->lock);
	if (n->pos != SIZE_MAX && n->pos < tm->len && tm->heap[n->pos] == n) {
		heap_remove(tm, n->pos);
		removed = true;
	}
	pthread_mutex_unlock(&tm->lock);
	return removed;
}

void
weft__timers_stop(weft_runtime *rt)
{
	struct weft__timers *tm = rt->timers;
	if (tm == NULL)
		return;
	pthread_mutex_lock(&tm->lock);
	tm->stop = true;
	pthread_cond_signal(&tm->cond);
	pthread_mutex_unlock(&tm->lock);
	pthread_join(tm->thread, NULL);
	pthread_mutex_destroy(&tm->lock);
	pthread_cond_destroy(&tm->cond);
	free(tm->heap);
	free(tm);
	rt->timers = NULL;
}

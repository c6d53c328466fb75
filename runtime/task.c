/* runtime/task.c - tasks hosted by actors, cancel scopes, and the host's
 * dispatch of the runtime's own messages.
 *
 * A task is a fiber. It runs only inside its actor's turn: the turn resumes
 * ready tasks one after another (weft__host_run_ready), each until it blocks
 * or returns. Blocking = recording what it waits for and suspending the
 * fiber; waking = putting it on the host's ready list. Both happen within
 * the actor's turn, so no lock is needed, and consecutive resumptions may
 * happen on different workers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/fiber.h"
#include "runtime/host.h"

struct outside_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	weft_err rc;
	weft_error *err;
};

struct weft__task {
	struct weft__host *host;
	struct weft__fiber *fiber;
	weft_err (*entry)(void *);
	void *arg;
	weft_err rc;
	weft_error *error;
	_Atomic int refs; /* the host while live, a handle, pending timers */

	bool finished;
	bool cancelled;
	bool in_ready;
	bool blocked;
	bool shield;
	void *wait_on;
	weft_err wake_rc;
	struct weft__timer_node tnode;
	struct weft__scope *scope; /* innermost */
	uint32_t ncancelled;       /* cancelled scopes on the stack */
	uint32_t sends;            /* sends since it last suspended */

	struct weft__task *joiner;
	bool has_handle;
	struct outside_wait *ow;

	struct weft__task *next, *prev; /* live list */
	struct weft__task *ready_next;
};

struct task_start {
	weft_task_fn fn;
	void *arg;
	struct outside_wait *ow;
};

static _Atomic int64_t live_tasks;

int64_t
weft__host_live_tasks(void)
{
	return atomic_load_explicit(&live_tasks, memory_order_relaxed);
}

/* The fiber rules: never keep a thread-local's address across a suspend.
 * Every read goes through this accessor, which the compiler cannot inline
 * or fold. */
static _Thread_local struct weft__task *tls_task;

__attribute__((noinline)) struct weft__task *
weft__task_current(void)
{
	struct weft__task *t;
	__asm__ __volatile__("" ::: "memory");
	t = tls_task;
	return t;
}

__attribute__((noinline)) static void
set_current(struct weft__task *t)
{
	tls_task = t;
}

struct weft__host *
weft__task_host(struct weft__task *t)
{
	return t->host;
}

static void
task_rele(struct weft__task *t)
{
	/* acq_rel: the timer thread's last use happens before the free. */
	if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) {
		weft_error_release(t->error);
		free(t);
		atomic_fetch_sub_explicit(&live_tasks, 1, memory_order_relaxed);
	}
}

void
weft__task_set_error(struct weft__task *t, weft_error *e)
{
	weft_error_release(t->error);
	t->error = e;
}

weft_error *
weft__task_get_error(struct weft__task *t)
{
	return t->error;
}

/* ---- errors made here ---- */

weft_error *
weft__error_here(weft_errkind kind, const char *type, const char *fmt, ...)
{
	const weft_uid *uid = weft_current_uid();
	va_list ap;
	va_start(ap, fmt);
	weft_error *e = weft_error_newv(kind, type, uid, fmt, ap);
	va_end(ap);
	return e;
}

static weft_err
fail_current(weft_err rc, weft_errkind kind, const char *type,
             const char *msg)
{
	struct weft__task *t = weft__task_current();
	if (t)
		weft__task_set_error(t, weft__error_here(kind, type, "%s", msg));
	return rc;
}

/* ---- the ready list ---- */

static void
make_ready(struct weft__task *t)
{
	struct weft__host *h = t->host;
	if (t->in_ready)
		return;
	t->in_ready = true;
	t->ready_next = NULL;
	if (h->ready_tail)
		h->ready_tail->ready_next = t;
	else
		h->ready_head = t;
	h->ready_tail = t;
}

void
weft__task_wake(struct weft__task *t, weft_err rc)
{
	if (!t->blocked || t->in_ready)
		return;
	t->wake_rc = rc;
	make_ready(t);
}

void *
weft__task_waiting_on(struct weft__task *t)
{
	return t->blocked && !t->in_ready ? t->wait_on : NULL;
}

bool
weft__task_is_cancelled(struct weft__task *t)
{
	return t->cancelled || t->host->dying || t->ncancelled > 0;
}

bool
weft__task_cancelled_besides(struct weft__task *t, struct weft__scope *s)
{
	uint32_t n = t->ncancelled;
	if (s->cancelled && s->task == t)
		n--;
	return t->cancelled || t->host->dying || n > 0;
}

void
weft__task_cancel(struct weft__task *t)
{
	t->cancelled = true;
	if (t->blocked && !t->shield)
		weft__task_wake(t, WEFT_ECANCELED);
}

struct weft__scope *
weft__task_scope(struct weft__task *t)
{
	return t->scope;
}

void
weft__scope_push(struct weft__task *t, struct weft__scope *s)
{
	s->outer = t->scope;
	s->task = t;
	t->scope = s;
	if (s->cancelled)
		t->ncancelled++;
}

void
weft__scope_pop(struct weft__task *t, struct weft__scope *s)
{
	WEFT_ASSERT(t->scope == s);
	t->scope = s->outer;
	s->outer = NULL;
	s->task = NULL;
	if (s->cancelled)
		t->ncancelled--;
}

void
weft__scope_cancel(struct weft__task *t, struct weft__scope *s,
                   void *except_on)
{
	if (!s->cancelled) {
		s->cancelled = true;
		if (s->task)
			s->task->ncancelled++;
	}
	if (s->task)
		t = s->task;
	if (t && t->blocked && !t->shield &&
	    (except_on == NULL || t->wait_on != except_on))
		weft__task_wake(t, WEFT_ECANCELED);
}

weft_err
weft__task_block(struct weft__task *t, void *on, uint64_t deadline,
                 bool shield)
{
	if (t->host->dying)
		return fail_current(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED,
		                    NULL, "the actor is exiting");
	if (!shield && weft__task_is_cancelled(t))
		return fail_current(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED,
		                    NULL, "the task was cancelled");
	t->blocked = true;
	t->shield = shield;
	t->wait_on = on;
	t->wake_rc = WEFT_OK;
	if (deadline) {
		t->tnode.deadline = deadline;
		t->tnode.seq++;
		t->tnode.aid = weft__actor_aid(t->host->actor);
		t->tnode.task = t;
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
		weft__timer_arm(t->host->rt, &t->tnode);
	}
	t->sends = 0;
	weft__fiber_suspend();
	/* Possibly on another worker now: re-read nothing thread-local. */
	t->blocked = false;
	t->wait_on = NULL;
	t->shield = false;
	if (deadline) {
		/* Woken before the timer fired: take it out, and with it
		 * the reference it held. One already on its way is stale. */
		if (weft__timer_cancel(t->host->rt, &t->tnode))
			atomic_fetch_sub_explicit(&t->refs, 1,
			                          memory_order_relaxed);
		t->tnode.seq++;
	}
	if (t->wake_rc == WEFT_ECANCELED)
		return fail_current(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED,
		                    NULL, "the task was cancelled");
	/* A deadline is not a failure by itself (weft_sleep ends that way):
	 * the caller records an error if it treats it as one. */
	return t->wake_rc;
}

/* ---- task lifecycle ---- */

static void
task_entry(void *arg)
{
	struct weft__task *t = arg;
	t->rc = t->entry(t->arg);
	if (t->rc == WEFT_OK) {
		weft_error_release(t->error);
		t->error = NULL;
	} else if (t->error == NULL) {
		t->error = weft__error_here(WEFT_ERRKIND_RUNTIME, NULL,
		                            "task failed: %s",
		                            weft_strerror(t->rc));
	}
}

struct weft__task *
weft__task_new(struct weft__host *h, weft_err (*entry)(void *), void *arg)
{
	struct weft__task *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	if (weft__fiber_create(&t->fiber, 0, task_entry, t) != WEFT_OK) {
		free(t);
		return NULL;
	}
	atomic_fetch_add_explicit(&live_tasks, 1, memory_order_relaxed);
	atomic_init(&t->refs, 1);
	t->host = h;
	t->entry = entry;
	t->arg = arg;
	t->next = h->tasks;
	if (h->tasks)
		h->tasks->prev = t;
	h->tasks = t;
	h->ntasks++;
	if (h->dying)
		t->cancelled = true;
	make_ready(t);
	return t;
}

static void
task_finished(struct weft__host *h, struct weft__task *t)
{
	t->finished = true;
	if (t->prev)
		t->prev->next = t->next;
	else
		h->tasks = t->next;
	if (t->next)
		t->next->prev = t->prev;
	h->ntasks--;
	weft__fiber_destroy(t->fiber);
	t->fiber = NULL;
	if (t->ow) {
		/* Told when the actor has exited (host_destroy), so that the
		 * caller of weft_task_run finds nothing left behind. */
		h->ow = t->ow;
		if (h->interrupted && t->rc != WEFT_OK) {
			h->ow->rc = WEFT_EINTERRUPT;
			h->ow->err = weft_error_new(
				WEFT_ERRKIND_INTERRUPT, NULL, &h->actor->uid,
				"interrupted (SIGINT): the tree was cancelled");
		} else {
			h->ow->rc = t->rc;
			h->ow->err = t->error ? weft_error_hold(t->error)
			                      : NULL;
		}
	}
	if (t->joiner)
		weft__task_wake(t->joiner, WEFT_OK);
	task_rele(t); /* the host's reference */
}

static void host_after_run(struct weft__host *h);

void
weft__host_run_ready(struct weft__host *h)
{
	struct weft__task *t;

	while ((t = h->ready_head) != NULL) {
		h->ready_head = t->ready_next;
		if (h->ready_head == NULL)
			h->ready_tail = NULL;
		t->in_ready = false;
		h->running = t;
		set_current(t);
		weft__fiber_switch_in(t->fiber);
		set_current(NULL);
		h->running = NULL;
		if (weft__fiber_finished(t->fiber))
			task_finished(h, t);
		if (h->yield_requested)
			break; /* the actor's turn ends here */
	}
	host_after_run(h);
}

#define SENDS_PER_TURN 64

void
weft__task_note_send(struct weft__task *t)
{
	if (++t->sends < SENDS_PER_TURN)
		return;
	/* A task that only sends would keep its worker (and, on one worker,
	 * its receivers) forever, piling its messages into their mailboxes:
	 * every 64 sends it gives up the turn and its actor goes to the back
	 * of the run queue. */
	t->sends = 0;
	t->host->yield_requested = true;
	t->blocked = true;
	t->wait_on = NULL;
	t->wake_rc = WEFT_OK;
	make_ready(t);
	weft__fiber_suspend();
	t->blocked = false;
}

/* ---- the public task API ---- */

static struct weft__task *
need_task(void)
{
	return weft__task_current();
}

weft_err
weft_task_spawn(weft_task_fn fn, void *arg, weft_task **out)
{
	struct weft__task *cur = need_task();
	struct weft__task *t;

	if (cur == NULL || fn == NULL)
		return WEFT_ESTATE;
	if ((t = weft__task_new(cur->host, fn, arg)) == NULL)
		return WEFT_ENOMEM;
	if (out) {
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
		t->has_handle = true;
		*out = (weft_task *)t;
	}
	return WEFT_OK;
}

weft_err
weft_task_join(weft_task *handle)
{
	struct weft__task *cur = need_task();
	struct weft__task *t = (struct weft__task *)handle;
	weft_err rc;

	if (cur == NULL || t == NULL || t == cur || t->host != cur->host)
		return WEFT_ESTATE;
	while (!t->finished) {
		t->joiner = cur;
		rc = weft__task_block(cur, t, 0, false);
		t->joiner = NULL;
		if (rc != WEFT_OK && !t->finished)
			return rc;
	}
	rc = t->rc;
	weft__task_set_error(cur, t->error ? weft_error_hold(t->error) : NULL);
	task_rele(t);
	return rc;
}

weft_err
weft__task_join_teardown(weft_task *handle, void (*on_cancel)(void *arg),
                         void *arg)
{
	struct weft__task *cur = need_task();
	struct weft__task *t = (struct weft__task *)handle;
	bool shielded = false;

	if (cur == NULL || t == NULL || t == cur || t->host != cur->host)
		return WEFT_ESTATE;
	while (!t->finished) {
		t->joiner = cur;
		weft_err rc = weft__task_block(cur, t, 0, shielded);
		t->joiner = NULL;
		if (rc == WEFT_ECANCELED && !shielded) {
			/* Told once, then we wait it out: teardown finishes. */
			shielded = true;
			if (on_cancel)
				on_cancel(arg);
		}
	}
	weft_err rc = t->rc;
	task_rele(t);
	return rc;
}

void
weft_task_cancel(weft_task *handle)
{
	struct weft__task *t = (struct weft__task *)handle;
	if (t && !t->finished)
		weft__task_cancel(t);
}

weft_err
weft_sleep(uint64_t ns)
{
	struct weft__task *t = need_task();
	weft_err rc;

	if (t == NULL)
		return WEFT_ESTATE;
	uint64_t now = weft__now_ns();
	/* A deadline past the clock's range is no deadline: only a cancel
	 * ends that sleep. */
	uint64_t deadline = ns > UINT64_MAX - now ? 0 : now + (ns ? ns : 1);
	rc = weft__task_block(t, NULL, deadline, false);
	return rc == WEFT_ETIMEDOUT ? WEFT_OK : rc;
}

weft_err
weft_checkpoint(void)
{
	struct weft__task *t = need_task();

	if (t == NULL)
		return WEFT_ESTATE;
	if (weft__task_is_cancelled(t))
		return fail_current(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED,
		                    NULL, "the task was cancelled");
	if (t->host->ready_head == NULL)
		return WEFT_OK;
	/* Let the others that are ready run first. */
	t->blocked = true;
	t->wait_on = NULL;
	make_ready(t);
	t->wake_rc = WEFT_OK;
	weft__fiber_suspend();
	t->blocked = false;
	return t->wake_rc;
}

const weft_error *
weft_task_error(void)
{
	struct weft__task *t = need_task();
	return t ? t->error : NULL;
}

weft_err
weft_fail(const char *type_name, const char *fmt, ...)
{
	struct weft__task *t = need_task();
	va_list ap;

	if (t == NULL)
		return WEFT_ESTATE;
	va_start(ap, fmt);
	weft__task_set_error(t, weft_error_newv(WEFT_ERRKIND_APP,
	                                        type_name ? type_name
	                                                  : "Exception",
	                                        weft_current_uid(), fmt, ap));
	va_end(ap);
	return WEFT_EFAILED;
}

weft_err
weft_fail_kind(weft_errkind kind, const char *fmt, ...)
{
	struct weft__task *t = need_task();
	va_list ap;

	if (t == NULL)
		return WEFT_ESTATE;
	va_start(ap, fmt);
	weft__task_set_error(t, weft_error_newv(kind, NULL, weft_current_uid(),
	                                        fmt, ap));
	va_end(ap);
	switch (kind) {
	case WEFT_ERRKIND_INTERRUPT:
		return WEFT_EINTERRUPT;
	case WEFT_ERRKIND_CANCELLED:
		return WEFT_ECANCELED;
	default:
		return WEFT_EFAILED;
	}
}

weft_aid
weft_current_actor(void)
{
	struct weft__task *t = weft__task_current();
	if (t == NULL)
		return (weft_aid){0};
	return weft__actor_aid(t->host->actor);
}

const weft_uid *
weft_current_uid(void)
{
	struct weft__task *t = weft__task_current();
	return t ? &t->host->actor->uid : NULL;
}

weft_runtime *
weft_current_runtime(void)
{
	struct weft__task *t = weft__task_current();
	return t ? t->host->rt : NULL;
}

/* ---- running a task from outside the runtime ---- */

static weft_err
outside_entry(void *arg)
{
	struct task_start *ts = arg;
	weft_err rc = ts->fn(ts->arg);
	free(ts);
	return rc;
}

weft_err
weft_task_run(weft_runtime *rt, const char *name, weft_task_fn fn, void *arg,
              weft_error **err)
{
	struct outside_wait ow = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                          .cond = PTHREAD_COND_INITIALIZER};
	weft_spawn_opts o = {.name = name ? name : "main"};
	weft_aid aid;
	weft_err rv;

	if (err)
		*err = NULL;
	if (fn == NULL)
		return WEFT_EINVAL;
	if (weft__sched_current(rt->sched) != NULL)
		return WEFT_ESTATE;
	if ((rv = weft_spawn(rt, &o, &aid)) != WEFT_OK)
		return rv;
	struct task_start *ts = malloc(sizeof(*ts));
	weft_msg *m = weft_msg_new(WEFT__MSG_TASK_START, sizeof(ts));
	if (ts == NULL || m == NULL) {
		free(ts);
		weft_msg_free(m);
		weft_stop(rt, aid);
		return WEFT_ENOMEM;
	}
	ts->fn = fn;
	ts->arg = arg;
	ts->ow = &ow;
	memcpy(weft_msg_data(m), &ts, sizeof(ts));
	weft__sigint_root(rt, aid, true);
	if ((rv = weft__send_internal(rt, aid, m)) != WEFT_OK) {
		weft__sigint_root(rt, aid, false);
		free(ts);
		weft_msg_free(m);
		return rv;
	}
	pthread_mutex_lock(&ow.lock);
	while (!ow.done)
		pthread_cond_wait(&ow.cond, &ow.lock);
	pthread_mutex_unlock(&ow.lock);
	weft__sigint_root(rt, aid, false);
	if (err)
		*err = ow.err;
	else
		weft_error_release(ow.err);
	return ow.rc;
}

/* ---- the host ---- */

struct weft__host *
weft__host_get(struct weft__actor *a)
{
	if (a->host == NULL) {
		a->host = calloc(1, sizeof(*a->host));
		if (a->host) {
			a->host->actor = a;
			a->host->rt = a->rt;
		}
	}
	return a->host;
}

void
weft__host_set_functions(struct weft__host *h, const weft_function *fns,
                         size_t n)
{
	h->fns = malloc(sizeof(*fns) * (n ? n : 1));
	if (h->fns) {
		memcpy(h->fns, fns, sizeof(*fns) * n);
		h->nfns = n;
	}
}

static void
send_actor_cancel_acks(struct weft__host *h)
{
	for (size_t i = 0; i < h->nacks; i++) {
		weft_msg *m = weft_msg_new(WEFT__MSG_ACTOR_CANCEL_ACK, 0);
		if (m == NULL)
			continue;
		m->word = h->acks[i].token;
		m->from = weft__actor_aid(h->actor);
		weft__send_sys(h->rt, h->acks[i].to, m);
	}
	free(h->acks);
	h->acks = NULL;
	h->nacks = 0;
}

static void
host_after_run(struct weft__host *h)
{
	if (h->dying)
		return;
	if (h->cancelling && h->ntasks == 0) {
		/* Every context into us has sent its ctxc: acknowledge, then
		 * exit. */
		send_actor_cancel_acks(h);
		h->actor->exit_requested = true;
	} else if (h->exit_when_idle && h->ntasks == 0) {
		h->actor->exit_requested = true;
	}
}

static void
actor_cancel(struct weft__host *h, weft_msg *m)
{
	struct weft__ack *acks = realloc(h->acks, sizeof(*acks) * (h->nacks + 1));
	if (acks) {
		h->acks = acks;
		h->acks[h->nacks++] = (struct weft__ack){m->from, m->word};
	}
	if (!h->has_requester && m->size >= sizeof(weft_uid)) {
		memcpy(&h->requester, weft_msg_data(m), sizeof(weft_uid));
		h->has_requester = true;
	}
	h->cancelling = true;
	weft__ctx_host_cancel_all(h);
	for (struct weft__task *t = h->tasks; t; t = t->next)
		weft__task_cancel(t);
}

/* ---- events ---- */

struct weft__event {
	_Atomic int refs;
	_Atomic bool done;
	weft_err rc;
	/* a task waiter: its actor is sent an EVENT message */
	struct weft__task *task;
	weft_runtime *rt;
	weft_aid actor;
	/* an outside waiter */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct weft__event *
weft__event_new(void)
{
	struct weft__event *ev = calloc(1, sizeof(*ev));
	if (ev == NULL)
		return NULL;
	atomic_init(&ev->refs, 2);
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	return ev;
}

void
weft__event_rele(struct weft__event *ev)
{
	if (atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) ==
	    1) {
		pthread_mutex_destroy(&ev->lock);
		pthread_cond_destroy(&ev->cond);
		free(ev);
	}
}

/* In the waiting task's actor: wake it if it still waits for this. */
static void
event_fire(struct weft__event *ev)
{
	struct weft__task *t = ev->task;
	if (!t->finished && weft__task_waiting_on(t) == ev)
		weft__task_wake(t, WEFT_OK);
	task_rele(t);
	weft__event_rele(ev);
}

static void
event_drop(struct weft__event *ev)
{
	task_rele(ev->task);
	weft__event_rele(ev);
}

weft_err
weft__event_wait(struct weft__event *ev, uint64_t deadline)
{
	struct weft__task *t = weft__task_current();
	if (t) {
		/* The first wait registers the task (with a reference the
		 * completion's message gives back); a later wait by the same
		 * task (a caller waiting in slices) finds it registered. */
		atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
		pthread_mutex_lock(&ev->lock);
		bool registered = false;
		if (ev->task == NULL &&
		    !atomic_load_explicit(&ev->done, memory_order_acquire)) {
			ev->rt = t->host->rt;
			ev->actor = weft__actor_aid(t->host->actor);
			ev->task = t;
			registered = true;
		}
		pthread_mutex_unlock(&ev->lock);
		if (!registered)
			task_rele(t); /* done already, or registered before */
		while (!atomic_load_explicit(&ev->done, memory_order_acquire)) {
			weft_err rc = weft__task_block(t, ev, deadline, false);
			if (rc == WEFT_ECANCELED)
				return rc;
			if (rc == WEFT_ETIMEDOUT &&
			    !atomic_load_explicit(&ev->done,
			                          memory_order_acquire))
				return WEFT_ETIMEDOUT;
		}
		return ev->rc;
	}
	pthread_mutex_lock(&ev->lock);
	while (!atomic_load_explicit(&ev->done, memory_order_acquire)) {
		if (deadline == 0) {
			pthread_cond_wait(&ev->cond, &ev->lock);
			continue;
		}
		/* The condvar runs on CLOCK_REALTIME: wait in short steps
		 * against the monotonic deadline. */
		uint64_t now = weft__now_ns();
		if (now >= deadline) {
			pthread_mutex_unlock(&ev->lock);
			return WEFT_ETIMEDOUT;
		}
		uint64_t step = deadline - now;
		if (step > 10000000u)
			step = 10000000u;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)step;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&ev->cond, &ev->lock, &ts);
	}
	pthread_mutex_unlock(&ev->lock);
	return ev->rc;
}

void
weft__event_complete(struct weft__event *ev, weft_err rc)
{
	pthread_mutex_lock(&ev->lock);
	ev->rc = rc;
	/* release: the waiter that sees done sees rc. */
	atomic_store_explicit(&ev->done, true, memory_order_release);
	struct weft__task *t = ev->task;
	pthread_cond_signal(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
	if (t == NULL) {
		weft__event_rele(ev);
		return;
	}
	/* The task's reference and ours travel with the message. */
	weft_msg *m = weft_msg_new(WEFT__MSG_EVENT, sizeof(ev));
	if (m) {
		memcpy(weft_msg_data(m), &ev, sizeof(ev));
		/* On failure (the actor has gone) the message's disposal
		 * drops both references. */
		weft__send_sys(ev->rt, ev->actor, m);
		return;
	}
	task_rele(t);
	weft__event_rele(ev);
}

void
weft__host_dispatch(struct weft__actor *a, weft_msg *m)
{
	struct weft__host *h = weft__host_get(a);

	if (h == NULL) {
		weft__msg_dispose(m);
		return;
	}
	switch (m->type) {
	case WEFT__MSG_TASK_START: {
		struct task_start *ts;
		memcpy(&ts, weft_msg_data(m), sizeof(ts));
		weft_msg_free(m);
		struct weft__task *t = weft__task_new(h, outside_entry, ts);
		if (t == NULL) {
			struct outside_wait *ow = ts->ow;
			free(ts);
			pthread_mutex_lock(&ow->lock);
			ow->rc = WEFT_ENOMEM;
			ow->done = true;
			pthread_cond_signal(&ow->cond);
			pthread_mutex_unlock(&ow->lock);
			return;
		}
		t->ow = ts->ow;
		h->exit_when_idle = true;
		break;
	}
	case WEFT__MSG_TIMER: {
		struct weft__task *t;
		memcpy(&t, weft_msg_data(m), sizeof(t));
		if (!t->finished && t->blocked && t->tnode.seq == m->word)
			weft__task_wake(t, WEFT_ETIMEDOUT);
		weft_msg_free(m);
		task_rele(t);
		break;
	}
	case WEFT__MSG_ACTOR_CANCEL:
		actor_cancel(h, m);
		weft_msg_free(m);
		break;
	case WEFT__MSG_INTERRUPT:
		/* tractor's KeyboardInterrupt in the root: every task of this
		 * actor is cancelled by the actor itself (its nurseries then
		 * cancel their children, naming it), and weft_task_run
		 * reports the interrupt. */
		weft_msg_free(m);
		if (!h->interrupted) {
			h->interrupted = true;
			if (!h->has_requester) {
				h->requester = h->actor->uid;
				h->has_requester = true;
			}
			weft__ctx_host_cancel_all(h);
			for (struct weft__task *t = h->tasks; t; t = t->next)
				weft__task_cancel(t);
		}
		break;
	case WEFT__MSG_EVENT: {
		struct weft__event *ev;
		memcpy(&ev, weft_msg_data(m), sizeof(ev));
		weft_msg_free(m);
		event_fire(ev);
		break;
	}
	case WEFT__MSG_PEER_GONE: {
		weft_error *e;
		memcpy(&e, weft_msg_data(m), sizeof(e));
		weft__ctx_peer_gone(h, m->from, e);
		weft_error_release(e);
		weft_msg_free(m);
		break;
	}
	default:
		weft__ctx_dispatch(h, m);
		break;
	}
}

void
weft__msg_dispose(weft_msg *m)
{
	if (m->type == WEFT__MSG_TIMER) {
		struct weft__task *t;
		memcpy(&t, weft_msg_data(m), sizeof(t));
		task_rele(t);
	} else if (m->type == WEFT__MSG_EVENT) {
		struct weft__event *ev;
		memcpy(&ev, weft_msg_data(m), sizeof(ev));
		event_drop(ev);
	} else if (m->type == WEFT__MSG_ERROR ||
	           m->type == WEFT__MSG_PEER_GONE) {
		weft_error *e;
		memcpy(&e, weft_msg_data(m), sizeof(e));
		weft_error_release(e);
	} else if (m->type == WEFT__MSG_TASK_START) {
		struct task_start *ts;
		memcpy(&ts, weft_msg_data(m), sizeof(ts));
		pthread_mutex_lock(&ts->ow->lock);
		ts->ow->rc = WEFT_ECLOSED;
		ts->ow->done = true;
		pthread_cond_signal(&ts->ow->cond);
		pthread_mutex_unlock(&ts->ow->lock);
		free(ts);
	}
	weft_msg_free(m);
}

void
weft__host_destroy(struct weft__host *h)
{
	h->dying = true;
	weft__ctx_host_cancel_all(h);
	/* Run every task to its end: each blocking call now returns at once,
	 * shielded or not. */
	while (h->ntasks > 0) {
		for (struct weft__task *t = h->tasks; t; t = t->next) {
			t->cancelled = true;
			if (t->blocked)
				weft__task_wake(t, WEFT_ECANCELED);
		}
		weft__host_run_ready(h);
	}
	if (h->nacks)
		send_actor_cancel_acks(h);
	weft__ctx_host_destroy(h);
	if (h->parent.id) {
		weft_msg *m = weft_msg_new(WEFT__MSG_CHILD_EXIT, 0);
		if (m) {
			m->word = h->parent_token;
			m->from = weft__actor_aid(h->actor);
			weft__send_sys(h->rt, h->parent, m);
		}
	}
	struct outside_wait *ow = h->ow;
	free(h->fns);
	free(h->map);
	free(h);
	if (ow) {
		pthread_mutex_lock(&ow->lock);
		ow->done = true;
		pthread_cond_signal(&ow->cond);
		pthread_mutex_unlock(&ow->lock);
	}
}

weft_err
weft__send_sys(weft_runtime *rt, weft_aid to, weft_msg *m)
{
	weft_err rv = weft__send_internal(rt, to, m);
	if (rv != WEFT_OK)
		weft__msg_dispose(m);
	return rv;
}

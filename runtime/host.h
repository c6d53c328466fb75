/* runtime/host.h - what an actor needs to host tasks and contexts.
 *
 * An actor that exposes functions, runs tasks or opens contexts has a host:
 * its tasks, the contexts it takes part in (this actor's shard of the
 * process's cancellation registry, keyed by (peer, cid)), and the ready
 * queue of tasks to resume. Everything here is touched only during the
 * actor's turn (by the runtime's dispatch or by one of its tasks), so it
 * needs no lock: the actor's one-turn-at-a-time rule is the lock.
 *
 * The runtime protocol between actors is a set of reserved message types;
 * the same messages will cross the wire between processes. */
#ifndef WEFT_HOST_H
#define WEFT_HOST_H

#include "runtime/internal.h"
#include "runtime/error_internal.h"

enum {
	WEFT__MSG_TASK_START = WEFT_MSG_TYPE_RESERVED + 16,
	WEFT__MSG_TIMER,
	WEFT__MSG_START,        /* open a context / run a function */
	WEFT__MSG_STARTED,
	WEFT__MSG_YIELD,
	WEFT__MSG_STREAM_STOP,
	WEFT__MSG_RETURN,
	WEFT__MSG_ERROR,
	WEFT__MSG_CANCEL,       /* cancel one context's callee task */
	WEFT__MSG_CANCEL_ACK,
	WEFT__MSG_ACTOR_CANCEL, /* cancel the whole actor */
	WEFT__MSG_ACTOR_CANCEL_ACK,
	WEFT__MSG_CHILD_EXIT,   /* to a nursery's actor: a child exited */
	WEFT__MSG_START_ACK,    /* the callee found the function */
	WEFT__MSG_EVENT,        /* a weft__event completed: wake its task */
	WEFT__MSG_PEER_GONE,    /* from a proxy: its connection broke */
	WEFT__MSG_INTERRUPT,    /* SIGINT: interrupt a weft_task_run root */
};

/* START's data: this header, the function name (name_len bytes, no NUL),
 * then the arguments. */
struct weft__start_hdr {
	weft_uid caller;
	uint32_t kind; /* enum weft__call_kind */
	uint32_t name_len;
};

enum weft__call_kind { WEFT__CALL_RUN = 1, WEFT__CALL_CONTEXT = 2 };
/* In start_hdr.kind: the caller wants a START_ACK (tractor's StartAck)
 * before anything else. */
#define WEFT__CALL_WANT_ACK 0x100u

struct weft__task;
struct weft__scope;
struct outside_wait;

struct weft__host {
	struct weft__actor *actor;
	weft_runtime *rt;
	weft_function *fns;
	size_t nfns;

	/* contexts: open addressing on (peer, cid) */
	struct weft_ctx **map;
	size_t map_cap, map_used;

	struct weft__task *tasks; /* live tasks, doubly linked */
	size_t ntasks;
	struct weft__task *ready_head, *ready_tail;
	struct weft__task *running;
	bool yield_requested; /* a task gave up the turn */

	/* whole-actor cancel (portal cancel_actor) */
	bool cancelling;
	bool interrupted; /* SIGINT reached this root (weft_task_run) */
	bool dying; /* the actor is exiting: every block returns at once */
	bool has_requester;
	weft_uid requester;
	size_t nacks;
	struct weft__ack { weft_aid to; uint64_t token; } *acks;

	/* exit when the last task ends (weft_task_run, run_in_actor) */
	bool exit_when_idle;
	/* weft_task_run's caller, told when this actor has exited */
	struct outside_wait *ow;
	/* told with CHILD_EXIT when this actor exits (a nursery) */
	weft_aid parent;
	uint64_t parent_token;
};

/* The host of actor `a`, made on first use. NULL when out of memory. */
struct weft__host *weft__host_get(struct weft__actor *a);
/* Called by the actor's turn for a reserved message the actor layer does
 * not handle itself. Owns m. */
void weft__host_dispatch(struct weft__actor *a, weft_msg *m);
/* Runs ready tasks; called by the turn after each message. */
void weft__host_run_ready(struct weft__host *h);
/* Called by the actor's exit: cancels every task and runs them to their
 * end, tells peers and the parent, frees the host. */
void weft__host_destroy(struct weft__host *h);
/* Live tasks and contexts in the process (for leak checks). */
int64_t weft__host_live_tasks(void);
int64_t weft__host_live_ctxs(void);

void weft__host_set_functions(struct weft__host *h, const weft_function *fns,
                              size_t n);
/* Frees a message, releasing whatever a reserved-type message holds. */
void weft__msg_dispose(weft_msg *m);
/* The same for a message still queued at actor `a`'s exit: a request that
 * expects an answer (a START, a cancel) gets one, so no caller waits for
 * an actor that has gone. */
void weft__msg_dispose_at_exit(struct weft__actor *a, weft_msg *m);
/* Is the task cancelled by anything but scope s? */
bool weft__task_cancelled_besides(struct weft__task *t,
                                  struct weft__scope *s);

/* Timers (timer.c): at `deadline` (monotonic ns) a TIMER message with
 * word=seq and the task pointer as data goes to `aid`. A task has at most
 * one pending timer, in the node it embeds; arming takes a task reference
 * that the TIMER message (or a successful cancel) gives back. */
struct weft__timer_node {
	uint64_t deadline;
	uint64_t seq;
	weft_aid aid;
	struct weft__task *task;
	size_t pos; /* index in the heap; SIZE_MAX when not in it */
};
void weft__timer_arm(weft_runtime *rt, struct weft__timer_node *n);
/* Takes n out of the heap if it is still there: true if it was (the
 * caller then owns the reference the timer held). */
bool weft__timer_cancel(weft_runtime *rt, struct weft__timer_node *n);
void weft__timers_stop(weft_runtime *rt);

/* Tasks (task.c) used by context.c. */
struct weft__task *weft__task_current(void);
struct weft__host *weft__task_host(struct weft__task *t);
/* Blocks the current task until woken. `on` names what it waits for (a
 * context, or NULL). A deadline of 0 means none (WEFT_ETIMEDOUT when it
 * passes). `shield`: not interrupted by cancellation. Returns the code given
 * to weft__task_wake, or WEFT_ECANCELED. */
weft_err weft__task_block(struct weft__task *t, void *on, uint64_t deadline,
                          bool shield);
/* From the actor's turn or one of its tasks: makes a blocked `t` ready with
 * `rc` (no effect if it is not blocked). */
void weft__task_wake(struct weft__task *t, weft_err rc);
/* What `t` is blocked on, or NULL. */
void *weft__task_waiting_on(struct weft__task *t);
bool weft__task_is_cancelled(struct weft__task *t);
/* Counts a send; every 64 sends without a suspension the task yields its
 * actor's turn (the actor requeues at the tail). */
void weft__task_note_send(struct weft__task *t);
void weft__task_cancel(struct weft__task *t);
/* Replace the current task's error (takes the reference). */
void weft__task_set_error(struct weft__task *t, weft_error *e);
weft_error *weft__task_get_error(struct weft__task *t);
/* Joins a task of the current actor for a teardown: the first time the
 * joiner is cancelled, on_cancel(arg) runs (it may cancel what the task
 * waits for); then the join goes on shielded. Frees the handle. */
weft_err weft__task_join_teardown(weft_task *t, void (*on_cancel)(void *arg),
                                  void *arg);
/* Starts a task in host h running entry(arg); NULL on ENOMEM. */
struct weft__task *weft__task_new(struct weft__host *h,
                                  weft_err (*entry)(void *), void *arg);

/* Cancel scopes: a context is one. Each task counts the cancelled scopes
 * on its stack, so "is this task cancelled" costs O(1) however deep the
 * stack (10,000 open contexts in one task). */
struct weft__scope {
	bool cancelled;
	struct weft__task *task; /* whose stack it is on; NULL when off */
	struct weft__scope *outer;
};
void weft__scope_push(struct weft__task *t, struct weft__scope *s);
/* The innermost scope on t's stack, or NULL. */
struct weft__scope *weft__task_scope(struct weft__task *t);
/* Pops s (must be the innermost). */
void weft__scope_pop(struct weft__task *t, struct weft__scope *s);
/* Cancels s, owned by t: wakes t with WEFT_ECANCELED if it is blocked,
 * unless it is blocked on `except_on` (NULL: no exception). */
void weft__scope_cancel(struct weft__task *t, struct weft__scope *s,
                        void *except_on);

/* Context layer (context.c), called from dispatch. */
void weft__ctx_dispatch(struct weft__host *h, weft_msg *m);
/* A callee task's function has returned: send the final message. */
void weft__ctx_host_cancel_all(struct weft__host *h);
void weft__ctx_host_destroy(struct weft__host *h);

/* Shared by context.c and nursery.c: waiters are registered contexts that
 * wait for one runtime message (an actor-cancel ack, a child's exit). */
struct child;
struct weft_ctx *weft__waiter_new(struct weft__task *t, weft_aid peer,
                                  uint64_t *token);
bool weft__waiter_fired(struct weft_ctx *c);
/* deadline 0: unshielded, no limit; else shielded until the deadline. */
weft_err weft__waiter_wait(struct weft_ctx *c, uint64_t deadline);
void weft__waiter_free(struct weft_ctx *c);
bool weft__portal_child(weft_portal *p, struct child **out);
/* A run_in_actor outcome moved into the portal at nursery exit (takes the
 * result and the error reference), and read back. */
void weft__portal_keep_outcome(weft_portal *p, weft_err rc,
                               weft_payload *result, weft_error *error);
bool weft__portal_outcome(weft_portal *p, weft_err *rc, weft_payload *result,
                          const weft_error **error);
/* An actor cancel in two steps, so that a nursery can cancel all its
 * children at once: send (NULL if the actor has gone), then wait for the
 * ack until the deadline (shielded); frees the waiter. */
struct weft_ctx *weft__cancel_actor_begin(weft_portal *p);
bool weft__cancel_actor_end(struct weft_ctx *c, uint64_t deadline);
void weft__portal_set_child(weft_portal *p, struct child *c);

/* weft_portal_run that first waits for the callee's START_ACK: *acked is
 * set, and `on_ack(arg, rc)` called once, when the ack (rc WEFT_OK) or an
 * error instead of it (rc != WEFT_OK, the task's error says why) arrives. */
weft_err weft__portal_run_acked(weft_portal *p, const char *fn,
                                const void *args, size_t len,
                                weft_payload *result,
                                void (*on_ack)(void *arg, weft_err rc),
                                void *arg);

/* Makes an error record whose source is the current actor. */
weft_error *weft__error_here(weft_errkind kind, const char *type,
                             const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sends a reserved-type message from the runtime (frees it on failure).
 * Returns the send's code. */
weft_err weft__send_sys(weft_runtime *rt, weft_aid to, weft_msg *m);

/* One-shot completion of something another thread does (the net I/O
 * thread's connect), waited for by a task (which yields its worker) or by a
 * thread outside the runtime. Reference-counted: the waiter and the
 * completer each hold one. */
struct weft__event;
struct weft__event *weft__event_new(void);
/* Waits until completed, the deadline (monotonic ns, 0: none) passes
 * (WEFT_ETIMEDOUT), or the waiting task is cancelled (WEFT_ECANCELED).
 * Returns the completion's code. The same waiter may call it again after
 * a timeout; then weft__event_rele() once. */
weft_err weft__event_wait(struct weft__event *ev, uint64_t deadline);
/* Any thread, once. */
void weft__event_complete(struct weft__event *ev, weft_err rc);
void weft__event_rele(struct weft__event *ev);

/* PEER_GONE (context.c): every context of host h whose peer is `peer` ends
 * now; callers get `e` (a TransportClosed) as the peer's final error,
 * callees are cancelled. Takes nothing. */
void weft__ctx_peer_gone(struct weft__host *h, weft_aid peer,
                         const weft_error *e);

#endif /* WEFT_HOST_H */

/* runtime/nursery.c - actor nurseries: one-cancels-all supervision of
 * in-process children (semantics.md §2.2). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "runtime/host.h"
#include "runtime/net.h"
#include "runtime/spawn.h"

struct child {
	weft_portal *portal;
	weft_aid aid;   /* the actor, or the proxy of a child process's */
	pid_t pid;      /* a child process; 0 in-process */
	bool sigtermed;
	uint64_t token;      /* the CHILD_EXIT route */
	struct weft_ctx *exit_waiter;
	bool exited;
	/* run_in_actor */
	bool main_call;
	weft_task *watcher;
	char *fn;
	void *args;
	size_t len;
	bool done;
	weft_err rc;
	weft_payload result;
	weft_error *error;
	struct weft__task *result_waiter;
	struct weft_nursery *n;
	/* the START_ACK of the main call: 0 pending, 1 acked, else refused */
	int start_state;
	weft_err start_rc;
	struct weft__task *start_waiter;
	bool portal_given; /* run_in_actor returned the portal */
};

struct weft_nursery {
	struct weft__task *owner;
	weft_runtime *rt;
	struct child **children;
	size_t nchildren;
	weft_error **errors;
	size_t nerrors;
	bool cancel_called;
	bool exit_cancelled; /* the exiting task was cancelled */
	bool own_error;      /* an error of this actor is recorded */
};


static void
add_error(struct weft_nursery *n, const weft_error *e)
{
	if (e == NULL)
		return;
	weft_error **errs = realloc(n->errors,
	                            sizeof(*errs) * (n->nerrors + 1));
	if (errs == NULL)
		return;
	n->errors = errs;
	n->errors[n->nerrors++] = weft_error_hold(e);
}

weft_err
weft_nursery_open(weft_nursery **out)
{
	struct weft__task *t = weft__task_current();
	*out = NULL;
	if (t == NULL)
		return WEFT_ESTATE;
	struct weft_nursery *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return WEFT_ENOMEM;
	n->owner = t;
	n->rt = weft__task_host(t)->rt;
	*out = n;
	return WEFT_OK;
}

static weft_err
spawn_child(weft_nursery *n, const weft_actor_opts *o, struct child **out)
{
	struct weft__task *t = weft__task_current();
	weft_spawn_opts so = {.name = o ? o->name : NULL,
	                      .functions = o ? o->functions : NULL,
	                      .nfunctions = o ? o->nfunctions : 0};
	struct weft__actor *a;
	weft_aid aid;
	weft_err rv;

	if (t == NULL || t != n->owner)
		return WEFT_ESTATE;
	if (n->cancel_called) {
		/* Its teardown has begun (a sibling failed, or a cancel):
		 * a child started now would escape it. */
		weft__task_set_error(
			t, weft__error_here(WEFT_ERRKIND_CANCELLED, NULL,
			                    "the nursery is being cancelled: no "
			                    "new actor '%s'",
			                    so.name ? so.name : "actor"));
		return WEFT_ECANCELED;
	}
	struct child *c = calloc(1, sizeof(*c));
	struct child **arr = realloc(n->children,
	                             sizeof(*arr) * (n->nchildren + 1));
	if (c == NULL || arr == NULL) {
		free(c);
		if (arr)
			n->children = arr;
		return WEFT_ENOMEM;
	}
	n->children = arr;
	c->n = n;
	weft_spawn_where where = o ? o->where : WEFT_SPAWN_DEFAULT;
	if (where == WEFT_SPAWN_DEFAULT)
		where = (weft_spawn_where)n->rt->cfg.spawn_where;
	bool child_process = where == WEFT_SPAWN_PROCESS ||
	                     where == WEFT_SPAWN_EXEC;
	if (child_process) {
		rv = WEFT_OK;
		for (size_t i = 0; i < so.nfunctions; i++)
			if (so.functions[i].name == NULL ||
			    so.functions[i].fn == NULL)
				rv = WEFT_EINVAL;
		if (so.name && strlen(so.name) >= WEFT_NAME_MAX)
			rv = WEFT_EINVAL;
		if (rv == WEFT_EINVAL)
			;
		else if (where == WEFT_SPAWN_EXEC)
			rv = weft__spawn_exec(n->rt, &so, &aid, &c->pid);
		else
			rv = weft__spawn_process(n->rt, &so, &aid, &c->pid);
	} else {
		rv = weft_spawn(n->rt, &so, &aid);
	}
	if (rv != WEFT_OK && child_process && rv != WEFT_EINVAL) {
		free(c);
		return rv; /* the task's error says why */
	}
	if (rv != WEFT_OK) {
		/* A bad spec fails here, in the parent, before any spawn
		 * (S120/S121). */
		free(c);
		weft__task_set_error(
			t, weft__error_here(WEFT_ERRKIND_RUNTIME,
			                    rv == WEFT_EINVAL ? "ValueError" : NULL,
			                    "cannot start actor '%s': %s",
			                    so.name ? so.name : "actor",
			                    rv == WEFT_EINVAL
			                            ? "invalid spec (a function "
			                              "without a name or body, or "
			                              "a name too long)"
			                            : weft_strerror(rv)));
		return rv;
	}
	c->aid = aid;
	if (c->pid > 0) {
		/* Its exit is its connection's end (PEER_GONE fires the
		 * waiter), which this actor must hear of even if it never
		 * talks to the child. */
		c->exit_waiter = weft__waiter_new(t, aid, &c->token);
		weft__net_note_local(n->rt, aid, weft_current_actor());
	} else if (weft__actor_hold(n->rt, aid, &a) == WEFT_OK) {
		/* The child has no message yet, so it cannot be running: its
		 * host is ours to fill in until the first send publishes
		 * it. */
		struct weft__host *h = weft__host_get(a);
		c->exit_waiter = weft__waiter_new(t, aid, &c->token);
		if (h && c->exit_waiter) {
			h->parent = weft_current_actor();
			h->parent_token = c->token;
		}
		weft__actor_rele(a);
	}
	if ((rv = weft_portal_open(n->rt, aid, &c->portal)) != WEFT_OK ||
	    c->exit_waiter == NULL) {
		if (c->pid > 0) {
			kill(c->pid, SIGKILL);
			weft__reap(c->pid, 2000);
		}
		weft_stop(n->rt, aid);
		weft__waiter_free(c->exit_waiter);
		weft_portal_free(c->portal);
		free(c);
		return rv ? rv : WEFT_ENOMEM;
	}
	weft__portal_set_child(c->portal, c);
	n->children[n->nchildren++] = c;
	*out = c;
	return WEFT_OK;
}

int
weft_portal_pid(weft_portal *p)
{
	struct child *c;
	if (p == NULL || !weft__portal_child(p, &c) || c == NULL)
		return 0;
	return (int)c->pid;
}

weft_err
weft_nursery_start_actor(weft_nursery *n, const weft_actor_opts *o,
                         weft_portal **portal)
{
	struct child *c;
	weft_err rv = spawn_child(n, o, &c);
	*portal = rv == WEFT_OK ? c->portal : NULL;
	return rv;
}

static weft_err cancel_children(weft_nursery *n);

/* The hard stop: the in-process kill, or for a child process the end of
 * the teardown ladder (semantics.md §14): SIGTERM first, SIGKILL when
 * `hard` (the SIGTERM grace has passed). */
static void
child_kill(struct weft_nursery *n, struct child *c, bool hard)
{
	if (c->pid <= 0) {
		weft__actor_kill(n->rt, c->aid);
		return;
	}
	if (!c->sigtermed && !hard) {
		WEFT_LOG(WEFT_LOG_CANCEL, "SIGTERM to child process %d",
		         (int)c->pid);
		kill(c->pid, SIGTERM);
		c->sigtermed = true;
		return;
	}
	WEFT_LOG(WEFT_LOG_CANCEL, "SIGKILL to child process %d", (int)c->pid);
	kill(c->pid, SIGKILL);
}

/* After the child's exit was seen (or forced): reap the process. */
static void
child_reap(struct weft_nursery *n, struct child *c)
{
	if (c->pid <= 0)
		return;
	if (!weft__reap(c->pid, n->rt->cfg.sigterm_timeout_ms)) {
		kill(c->pid, SIGKILL);
		weft__reap(c->pid, 5000);
	}
	c->pid = 0;
}

static void
main_call_acked(void *arg, weft_err rc)
{
	struct child *c = arg;
	c->start_state = rc == WEFT_OK ? 1 : 2;
	c->start_rc = rc;
	if (c->start_waiter)
		weft__task_wake(c->start_waiter, WEFT_OK);
}

static weft_err
watch_main_call(void *arg)
{
	struct child *c = arg;
	struct weft_nursery *n = c->n;

	c->rc = weft__portal_run_acked(c->portal, c->fn, c->args, c->len,
	                               &c->result, main_call_acked, c);
	if (c->rc != WEFT_OK && c->start_state == 2) {
		/* Refused at start: run_in_actor() itself reports it; the
		 * watcher was never armed. */
		c->error = weft_error_hold(weft_task_error());
	} else if (c->rc != WEFT_OK) {
		c->error = weft_error_hold(weft_task_error());
		/* One cancels all. Once our teardown has begun, a child that
		 * ends with its effects (the ContextCancelled it caused, our
		 * own watcher cancelled with the actor, or a TransportClosed
		 * because a sibling went first) adds no error;
		 * every other failure counts, so several independently
		 * failing children make a group. */
		bool ours = n->cancel_called && c->error &&
		            (weft_error_kind(c->error) ==
		                     WEFT_ERRKIND_CONTEXT_CANCELLED ||
		             weft_error_kind(c->error) ==
		                     WEFT_ERRKIND_CANCELLED ||
		             weft_error_kind(c->error) ==
		                     WEFT_ERRKIND_TRANSPORT_CLOSED ||
		             strcmp(weft_error_src_type(c->error),
		                    "ContextCancelled") == 0 ||
		             strcmp(weft_error_src_type(c->error),
		                    "TransportClosed") == 0);
		if (!ours)
			add_error(n, c->error);
		if (!n->cancel_called)
			cancel_children(n);
	} else if (!n->cancel_called) {
		/* A result: end the child gracefully. */
		weft_portal_cancel_actor(c->portal, NULL);
	}
	c->done = true;
	if (c->result_waiter)
		weft__task_wake(c->result_waiter, WEFT_OK);
	return WEFT_OK;
}

weft_err
weft_nursery_run_in_actor(weft_nursery *n, const weft_actor_opts *o,
                          const char *fn, const void *args, size_t len,
                          weft_portal **portal)
{
	struct child *c;
	weft_err rv;

	*portal = NULL;
	if (fn == NULL)
		return WEFT_EINVAL;
	if ((rv = spawn_child(n, o, &c)) != WEFT_OK)
		return rv;
	c->main_call = true;
	c->fn = strdup(fn);
	c->args = malloc(len ? len : 1);
	if (c->fn == NULL || c->args == NULL)
		return WEFT_ENOMEM; /* the child is cancelled at exit */
	if (len)
		memcpy(c->args, args, len);
	c->len = len;
	if ((rv = weft_task_spawn(watch_main_call, c, &c->watcher)) != WEFT_OK)
		return rv;
	/* Wait for the child to accept the call (tractor's StartAck): a
	 * refusal fails run_in_actor() itself (S056). */
	struct weft__task *t = weft__task_current();
	while (c->start_state == 0) {
		c->start_waiter = t;
		rv = weft__task_block(t, NULL, 0, false);
		c->start_waiter = NULL;
		if (rv != WEFT_OK)
			return rv;
	}
	if (c->start_state == 2) {
		/* Nothing to supervise: stop the child now, so that the
		 * nursery's exit does not wait for it. */
		child_kill(n, c, true);
		weft__task_set_error(t, weft_error_hold(c->error));
		return c->start_rc;
	}
	c->portal_given = true;
	*portal = c->portal;
	return WEFT_OK;
}

weft_err
weft_portal_result(weft_portal *p, weft_payload *result)
{
	struct weft__task *t = weft__task_current();
	struct child *c;

	if (result)
		*result = (weft_payload){0};
	if (t == NULL)
		return WEFT_ESTATE;
	weft_err done_rc;
	weft_payload kept;
	const weft_error *kept_err;
	if (weft__portal_outcome(p, &done_rc, &kept, &kept_err)) {
		/* The nursery has exited; the outcome stayed with the portal. */
		if (done_rc == WEFT_OK) {
			if (result)
				*result = kept;
			return WEFT_OK;
		}
		weft__task_set_error(t, weft_error_hold(kept_err));
		return done_rc;
	}
	if (!weft__portal_child(p, &c) || !c->main_call)
		return WEFT_ESTATE;
	while (!c->done) {
		c->result_waiter = t;
		weft_err rc = weft__task_block(t, NULL, 0, false);
		c->result_waiter = NULL;
		if (rc != WEFT_OK)
			return rc;
	}
	if (c->rc == WEFT_OK) {
		if (result)
			*result = (weft_payload){c->result.data, c->result.len,
			                         NULL, NULL};
		return WEFT_OK;
	}
	weft__task_set_error(t, weft_error_hold(c->error));
	return c->rc;
}

static weft_err
cancel_children(weft_nursery *n)
{
	size_t done = 0;

	n->cancel_called = true;
	/* In rounds: another task of ours may start a child while we wait,
	 * and it must not escape the cancel. */
	while (done < n->nchildren) {
		size_t count = n->nchildren;
		struct weft_ctx **waiting = calloc(count - done,
		                                   sizeof(*waiting));
		if (waiting == NULL)
			return WEFT_ENOMEM;
		/* Every child at once, one bound for all (tractor: 3 s),
		 * then the in-process hard kill for whoever did not
		 * acknowledge. */
		for (size_t i = done; i < count; i++) {
			struct child *c = n->children[i];
			if (!c->exited && !weft__waiter_fired(c->exit_waiter))
				waiting[i - done] =
					weft__cancel_actor_begin(c->portal);
		}
		uint64_t deadline = weft__now_ns() +
			(uint64_t)n->rt->cfg.nursery_cancel_timeout_ms *
				1000000u;
		for (size_t i = done; i < count; i++) {
			if (waiting[i - done] == NULL)
				continue;
			if (!weft__cancel_actor_end(waiting[i - done],
			                            deadline)) {
				WEFT_LOG(WEFT_LOG_CANCEL,
				         "a child did not acknowledge its "
				         "cancel: stopping it");
				child_kill(n, n->children[i], false);
			}
		}
		free(waiting);
		done = count;
	}
	return WEFT_OK;
}

weft_err
weft_nursery_cancel(weft_nursery *n)
{
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	return cancel_children(n);
}

static void
exit_cancelled(void *arg)
{
	weft_nursery *n = arg;
	if (n->exit_cancelled)
		return;
	n->exit_cancelled = true;
	/* Errors are keyed by actor (semantics.md §2.2): a body that
	 * already failed does not fail twice. */
	if (!n->own_error) {
		n->own_error = true;
		add_error(n, weft_task_error());
	}
	if (!n->cancel_called)
		cancel_children(n);
}

weft_err
weft_nursery_exit(weft_nursery *n, weft_err body_rc)
{
	struct weft__task *t = weft__task_current();
	weft_err rc;

	if (t == NULL || t != n->owner)
		return WEFT_ESTATE;
	if (body_rc != WEFT_OK) {
		const weft_error *e = weft_task_error();
		weft_error *own = e ? weft_error_hold(e)
		                    : weft__error_here(WEFT_ERRKIND_RUNTIME,
		                                       NULL, "body failed: %s",
		                                       weft_strerror(body_rc));
		add_error(n, own);
		weft_error_release(own);
		n->own_error = true;
		cancel_children(n);
	}
	/* Every main call's outcome (each watcher cancels all on error). */
	for (size_t i = 0; i < n->nchildren; i++) {
		struct child *c = n->children[i];
		if (c->watcher) {
			weft_task *w = c->watcher;
			c->watcher = NULL;
			/* Cancelled while waiting: that is our error, and
			 * it cancels every child; then the join goes on
			 * shielded (a cancelled task's blocks return at once,
			 * so an unshielded loop would spin). */
			weft__task_join_teardown(w, exit_cancelled, n);
		}
	}
	if (n->nerrors > 0 && !n->cancel_called)
		cancel_children(n);
	if (weft__task_host(t)->dying) {
		/* Our actor is being stopped hard: no wait can block any
		 * more, and no exit notice can be handled. Stop the children
		 * the same way and leave. */
		for (size_t i = 0; i < n->nchildren; i++)
			child_kill(n, n->children[i], true);
		for (size_t i = 0; i < n->nchildren; i++)
			n->children[i]->exited = true;
	}
	/* No child outlives us: wait for each one's exit. */
	for (size_t i = 0; i < n->nchildren; i++) {
		struct child *c = n->children[i];
		while (!c->exited && !weft__waiter_fired(c->exit_waiter)) {
			if (weft__waiter_wait(c->exit_waiter, 0) != WEFT_OK &&
			    !weft__waiter_fired(c->exit_waiter)) {
				/* We were cancelled: that is our error; cancel
				 * the children and keep waiting (shielded). */
				exit_cancelled(n);
				weft__waiter_wait(
					c->exit_waiter,
					weft__now_ns() +
						(uint64_t)n->rt->cfg
								.nursery_cancel_timeout_ms *
							1000000u);
				if (!weft__waiter_fired(c->exit_waiter))
					child_kill(n, c, c->pid <= 0);
			}
			if (c->sigtermed && !weft__waiter_fired(c->exit_waiter)) {
				/* SIGTERMed: its grace, then SIGKILL. */
				weft__waiter_wait(
					c->exit_waiter,
					weft__now_ns() +
						(uint64_t)n->rt->cfg
								.sigterm_timeout_ms *
							1000000u);
				if (!weft__waiter_fired(c->exit_waiter))
					child_kill(n, c, true);
			}
		}
		c->exited = true;
		child_reap(n, c);
	}
	if (weft_log_enabled(WEFT_LOG_CANCEL))
		for (size_t i = 0; i < n->nerrors; i++) {
			char b[256];
			weft_log_write(WEFT_LOG_CANCEL, "nursery error %zu: %s", i,
			               weft_error_format(n->errors[i], b,
			                                 sizeof(b)));
		}
	if (n->nerrors == 0) {
		rc = WEFT_OK;
	} else if (n->nerrors == 1) {
		weft__task_set_error(t, weft_error_hold(n->errors[0]));
		rc = body_rc != WEFT_OK ? body_rc
		     : n->exit_cancelled ? WEFT_ECANCELED
		                         : WEFT_EREMOTE;
	} else {
		weft__task_set_error(t, weft__error_group(n->errors, n->nerrors,
		                                          weft_current_uid()));
		rc = WEFT_EFAILED;
	}
	for (size_t i = 0; i < n->nchildren; i++) {
		struct child *c = n->children[i];
		weft__waiter_free(c->exit_waiter);
		if (c->main_call && c->portal_given) {
			/* Its portal outlives us: the caller may still read
			 * the result, then frees it. */
			weft__portal_keep_outcome(c->portal, c->rc, &c->result,
			                          c->error);
			c->error = NULL;
		} else {
			weft_portal_free(c->portal);
		}
		weft_payload_free(&c->result);
		weft_error_release(c->error);
		free(c->fn);
		free(c->args);
		free(c);
	}
	for (size_t i = 0; i < n->nerrors; i++)
		weft_error_release(n->errors[i]);
	free(n->errors);
	free(n->children);
	free(n);
	return rc;
}

/* runtime/context.c - portals, contexts and streams (docs/semantics.md).
 *
 * Both sides of a context are a struct weft_ctx in their own actor's host,
 * registered under (peer, cid); they talk only through the runtime
 * messages of host.h, whether the peer is local or (later) remote. Each side
 * has one feeder queue: every message for the context except Started
 * arrives there in order, and the owner's calls consume it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/host.h"
#include "runtime/net.h"

struct child; /* nursery.c */

enum ctx_kind { KIND_RUN = WEFT__CALL_RUN, KIND_CONTEXT = WEFT__CALL_CONTEXT,
                KIND_WAITER };

#define DEFAULT_BUFFER 64
#define OVERFLOW_MAX 616 /* tractor's overflow deque bound */
#define DRAIN_YIELD_LIMIT 6

struct bcast_sub;

struct weft_stream {
	struct weft_ctx *ctx;
	/* broadcast: a ring of retained items, one cursor per subscriber */
	weft_msg **ring;
	uint64_t ring_cap;
	uint64_t head_seq; /* sequence number of the next item */
	struct weft_bcast *subs;
	bool bcast;
	bool bcast_eoc;
	weft_err bcast_end_rc;
};

struct weft_bcast {
	struct weft_stream *s;
	uint64_t next_seq;
	bool raise_on_lag;
	struct weft_bcast *next;
	struct weft__task *waiter;
};

struct weft_ctx {
	struct weft__host *host;
	struct weft__task *owner;
	struct weft__scope scope;
	struct weft_ctx *map_next;
	uint64_t cid;
	weft_aid peer;
	weft_uid peer_uid;
	weft_uid self_uid;
	enum ctx_kind kind;
	bool caller;
	bool registered;

	/* feeder queue */
	weft_msg *q_head, *q_tail;
	uint32_t q_yields;
	uint32_t cap;
	bool allow_overruns;

	struct weft__task *waiter; /* the task blocked on this context */
	struct weft__task *cancel_waiter; /* a task in weft_ctx_cancel() */

	bool started;
	weft_msg *started_msg;
	bool has_result;
	weft_msg *result_msg;
	uint8_t *ret_data;
	size_t ret_len;
	weft_msg *args_msg;

	weft_error *remote_error;
	weft_error *local_error;
	bool cancel_called;
	bool self_cancelled; /* callee cancelled itself */
	bool has_canceller;
	weft_uid canceller;
	bool ack_received;
	bool start_acked;
	uint32_t acks_owed; /* callee: CANCEL_ACKs to send at the end */
	bool fn_done;
	bool exited;
	weft_err exit_rc;

	struct weft_stream stream;
	bool stream_opened;
	bool stream_closed; /* our half */
	bool eoc;           /* the peer's Stop (or Return) was received */

	/* The connection when the peer is remote (a proxy): its frame limit
	 * and its backpressure apply to our sends. */
	struct weft__conn *conn;
	/* An overrun was reported to the peer: once per context. From the
	 * callee that report is its final message (protocol.md §6.4), so
	 * nothing final follows it. */
	bool overrun_reported;
};

static _Atomic int64_t live_ctxs;
static _Atomic uint64_t next_cid;

int64_t
weft__host_live_ctxs(void)
{
	return atomic_load_explicit(&live_ctxs, memory_order_relaxed);
}

static uint64_t
new_cid(void)
{
	uint64_t c = atomic_fetch_add_explicit(&next_cid, 1,
	                                       memory_order_relaxed);
	if (c == 0) {
		/* First use: start from a random base so that cids of
		 * different processes rarely meet. */
		uint64_t base;
		weft__random_bytes((uint8_t *)&base, sizeof(base));
		base = (base & 0x0000FFFFFFFFFFFFull) | 1;
		uint64_t expect = 1;
		atomic_compare_exchange_strong(&next_cid, &expect, base + 1);
		c = atomic_fetch_add_explicit(&next_cid, 1,
		                              memory_order_relaxed);
	}
	return c;
}

static bool
uid_eq(const weft_uid *a, const weft_uid *b)
{
	return a && b && memcmp(a->uuid, b->uuid, sizeof(a->uuid)) == 0 &&
	       strcmp(a->name, b->name) == 0;
}

static weft_err
fail(weft_err rc, weft_errkind kind, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static weft_err
fail(weft_err rc, weft_errkind kind, const char *type, const char *fmt, ...)
{
	struct weft__task *t = weft__task_current();
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (t)
		weft__task_set_error(t, weft__error_here(kind, type, "%s",
		                                         msg));
	return rc;
}

static void
set_task_error(const weft_error *e)
{
	struct weft__task *t = weft__task_current();
	if (t)
		weft__task_set_error(t, weft_error_hold(e));
}

/* ---- the registry shard ---- */

static size_t
bucket(const struct weft__host *h, weft_aid peer, uint64_t cid)
{
	uint64_t x = (cid ^ (peer.id * 0x9E3779B97F4A7C15ull));
	x ^= x >> 29;
	return (size_t)(x & (h->map_cap - 1));
}

static bool
map_put(struct weft__host *h, struct weft_ctx *c)
{
	if (h->map_used + 1 > h->map_cap) {
		size_t cap = h->map_cap ? h->map_cap * 2 : 16;
		struct weft_ctx **map = calloc(cap, sizeof(*map));
		if (map == NULL)
			return false;
		struct weft_ctx **old = h->map;
		size_t oldcap = h->map_cap;
		h->map = map;
		h->map_cap = cap;
		for (size_t i = 0; i < oldcap; i++) {
			struct weft_ctx *e = old[i];
			while (e) {
				struct weft_ctx *next = e->map_next;
				size_t b = bucket(h, e->peer, e->cid);
				e->map_next = h->map[b];
				h->map[b] = e;
				e = next;
			}
		}
		free(old);
	}
	size_t b = bucket(h, c->peer, c->cid);
	c->map_next = h->map[b];
	h->map[b] = c;
	h->map_used++;
	c->registered = true;
	return true;
}

static struct weft_ctx *
map_get(struct weft__host *h, weft_aid peer, uint64_t cid)
{
	if (h->map_cap == 0)
		return NULL;
	for (struct weft_ctx *e = h->map[bucket(h, peer, cid)]; e;
	     e = e->map_next)
		if (e->cid == cid && e->peer.id == peer.id)
			return e;
	return NULL;
}

static void
map_del(struct weft__host *h, struct weft_ctx *c)
{
	if (!c->registered)
		return;
	struct weft_ctx **pp = &h->map[bucket(h, c->peer, c->cid)];
	while (*pp && *pp != c)
		pp = &(*pp)->map_next;
	if (*pp) {
		*pp = c->map_next;
		h->map_used--;
	}
	c->registered = false;
}

/* ---- the feeder queue ---- */

static void
q_push(struct weft_ctx *c, weft_msg *m)
{
	m->weft_link = NULL;
	if (c->q_tail)
		c->q_tail->weft_link = m;
	else
		c->q_head = m;
	c->q_tail = m;
	if (m->type == WEFT__MSG_YIELD)
		c->q_yields++;
}

static weft_msg *
q_pop(struct weft_ctx *c)
{
	weft_msg *m = c->q_head;
	if (m) {
		c->q_head = m->weft_link;
		if (c->q_head == NULL)
			c->q_tail = NULL;
		m->weft_link = NULL;
		if (m->type == WEFT__MSG_YIELD)
			c->q_yields--;
	}
	return m;
}

static void
q_clear(struct weft_ctx *c)
{
	weft_msg *m;
	while ((m = q_pop(c)) != NULL)
		weft__msg_dispose(m);
}

/* ---- making and ending contexts ---- */

static struct weft_ctx *
ctx_new(struct weft__host *h, bool caller, enum ctx_kind kind, weft_aid peer,
        const weft_uid *peer_uid, uint64_t cid)
{
	struct weft_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	atomic_fetch_add_explicit(&live_ctxs, 1, memory_order_relaxed);
	c->host = h;
	c->caller = caller;
	c->kind = kind;
	c->peer = peer;
	if (peer_uid)
		c->peer_uid = *peer_uid;
	c->self_uid = h->actor->uid;
	c->cid = cid;
	c->cap = DEFAULT_BUFFER;
	c->stream.ctx = c;
	c->conn = weft__net_conn_hold(h->rt, peer);
	if (!map_put(h, c)) {
		weft__net_conn_rele(c->conn);
		free(c);
		atomic_fetch_sub(&live_ctxs, 1);
		return NULL;
	}
	return c;
}

static void stream_release(struct weft_stream *s);

static void
ctx_destroy(struct weft_ctx *c)
{
	map_del(c->host, c);
	q_clear(c);
	stream_release(&c->stream);
	weft_msg_free(c->started_msg);
	weft_msg_free(c->result_msg);
	weft_msg_free(c->args_msg);
	free(c->ret_data);
	weft_error_release(c->remote_error);
	weft_error_release(c->local_error);
	weft__net_conn_rele(c->conn);
	free(c);
	atomic_fetch_sub_explicit(&live_ctxs, 1, memory_order_relaxed);
}

static weft_msg *
msg_for(struct weft_ctx *c, uint32_t type, const void *data, size_t len)
{
	weft_msg *m = weft_msg_new(type, (uint32_t)len);
	if (m == NULL)
		return NULL;
	m->word = c->cid;
	m->from = weft__actor_aid(c->host->actor);
	if (len)
		memcpy(weft_msg_data(m), data, len);
	return m;
}

/* A payload for a remote peer must fit in one of its frames (the wire has
 * no fragmentation; protocol.md §2.1): refused here, before anything is
 * sent, so the context is unaffected. `extra`: the envelope's other
 * contents (a start's name and caller). */
static weft_err
check_size(struct weft_ctx *c, size_t len, size_t extra)
{
	if (c->conn == NULL)
		return WEFT_OK;
	size_t max = weft__net_payload_max(c->conn);
	if (len + extra <= max)
		return WEFT_OK;
	char uid[WEFT_NAME_MAX + 16];
	weft_uid_format(&c->peer_uid, uid, sizeof(uid));
	return fail(WEFT_EMSGSIZE, WEFT_ERRKIND_RUNTIME, "ValueError",
	            "a %zu-byte payload exceeds the frame limit of peer %s "
	            "(%zu bytes); stream it in parts",
	            len, uid, max > extra ? max - extra : 0);
}

/* Sends to the peer; a peer that has gone is a TransportClosed. */
static weft_err
ctx_send(struct weft_ctx *c, weft_msg *m)
{
	if (m == NULL)
		return fail(WEFT_ENOMEM, WEFT_ERRKIND_RUNTIME, "MemoryError",
		            "out of memory");
	if (weft__send_sys(c->host->rt, c->peer, m) != WEFT_OK) {
		char uid[WEFT_NAME_MAX + 16];
		weft_uid_format(&c->peer_uid, uid, sizeof(uid));
		return fail(WEFT_ECLOSED, WEFT_ERRKIND_TRANSPORT_CLOSED, NULL,
		            "peer actor %s has exited", uid);
	}
	return WEFT_OK;
}

static weft_err
send_error(struct weft_ctx *c, const weft_error *e)
{
	weft_msg *m = weft_msg_new(WEFT__MSG_ERROR, sizeof(e));
	if (m == NULL)
		return WEFT_ENOMEM;
	weft_error *held = weft_error_hold(e);
	m->word = c->cid;
	m->from = weft__actor_aid(c->host->actor);
	memcpy(weft_msg_data(m), &held, sizeof(held));
	return weft__send_sys(c->host->rt, c->peer, m);
}

/* ---- the cancellation rules ---- */

static bool
is_ctxc(const weft_error *e)
{
	return e && e->kind == WEFT_ERRKIND_CONTEXT_CANCELLED;
}

/* semantics.md §9.3 */
static bool
self_cancel_acked(const struct weft_ctx *c)
{
	const weft_error *e = c->remote_error;
	return c->cancel_called && is_ctxc(e) && e->has_src &&
	       uid_eq(&e->src, &c->peer_uid) && e->has_canceller &&
	       uid_eq(&e->canceller, &c->self_uid) && c->has_canceller &&
	       uid_eq(&c->canceller, &c->self_uid);
}

static bool
is_overrun(const weft_error *e)
{
	return e && (e->kind == WEFT_ERRKIND_STREAM_OVERRUN ||
	             strcmp(e->boxed_type, "StreamOverrun") == 0);
}

static void
set_canceller(struct weft_ctx *c, const weft_uid *uid)
{
	if (!c->has_canceller && uid) {
		c->canceller = *uid;
		c->has_canceller = true;
	}
}

/* §9.4: record a remote error, then cancel the scope unless the owner will
 * see it itself. */
static void
record_remote_error(struct weft_ctx *c, weft_error *e)
{
	if (c->remote_error == NULL) {
		c->remote_error = weft_error_hold(e);
		if (is_ctxc(e) && e->has_canceller &&
		    uid_eq(&e->canceller, &c->self_uid))
			set_canceller(c, &c->self_uid);
		else
			set_canceller(c, e->has_src ? &e->src : &c->peer_uid);
	}
	if (c->owner == NULL || c->scope.cancelled || c->exited)
		return;
	bool blocked_here = weft__task_waiting_on(c->owner) == c;
	if (!self_cancel_acked(c) || !blocked_here)
		weft__scope_cancel(c->owner, &c->scope, c);
}

/* §9.1 for a result wait: absorbed (true) or to be raised. */
static bool
absorbs(const struct weft_ctx *c)
{
	const weft_error *e = c->remote_error;
	if (self_cancel_acked(c))
		return true;
	bool raise_overrun_from_self = !c->allow_overruns && !c->cancel_called;
	if (!raise_overrun_from_self && is_overrun(e) && e->has_sender &&
	    uid_eq(&e->sender, &c->peer_uid))
		return true;
	return false;
}

static void
wake_waiter(struct weft_ctx *c)
{
	if (c->waiter)
		weft__task_wake(c->waiter, WEFT_OK);
	if (c->cancel_waiter)
		weft__task_wake(c->cancel_waiter, WEFT_OK);
	if (c->stream.bcast)
		for (struct weft_bcast *b = c->stream.subs; b; b = b->next)
			if (b->waiter)
				weft__task_wake(b->waiter, WEFT_OK);
}

/* Blocks the current task on c. One task at a time waits in each slot:
 * the owner's calls use `waiter`, weft_ctx_cancel() (which another task
 * of the actor may call, S164) uses `cancel_waiter`. */
static weft_err
wait_in(struct weft_ctx *c, struct weft__task **slot, uint64_t deadline,
        bool shield)
{
	struct weft__task *t = weft__task_current();
	*slot = t;
	weft_err rc = weft__task_block(t, c, deadline, shield);
	if (*slot == t)
		*slot = NULL;
	return rc;
}

static weft_err
wait_on(struct weft_ctx *c, uint64_t deadline, bool shield)
{
	return wait_in(c, &c->waiter, deadline, shield);
}

/* ---- overruns (§12) ---- */

static void
deliver_yield(struct weft_ctx *c, weft_msg *m)
{
	if (c->q_yields < c->cap) {
		q_push(c, m);
		return;
	}
	if (c->allow_overruns) {
		/* weft has no drainer task: the queue itself grows up to
		 * the overflow bound, so §12's double-drainer defect cannot
		 * happen (semantics.md §W.3.2). */
		if (c->q_yields < c->cap + OVERFLOW_MAX) {
			q_push(c, m);
			return;
		}
		WEFT_LOG(WEFT_LOG_WARNING,
		         "ctx %llx: overflow queue full, item dropped",
		         (unsigned long long)c->cid);
		weft_msg_free(m);
		return;
	}
	/* Refuse: drop it and tell the sender; we do not fail ourselves.
	 * Once: the first report decides the peer's outcome (it records the
	 * first remote error only), and a callee's report is its final. */
	weft_msg_free(m);
	if (c->overrun_reported)
		return;
	c->overrun_reported = true;
	char uid[WEFT_NAME_MAX + 16];
	weft_uid_format(&c->peer_uid, uid, sizeof(uid));
	weft_error *e = weft_error_new(
		WEFT_ERRKIND_STREAM_OVERRUN, NULL, &c->self_uid,
		"%s overran the receive buffer of %u item(s)%s", uid, c->cap,
		c->stream_opened ? "" : " (the receiver has no stream open)");
	if (e) {
		weft__error_set_sender(e, &c->peer_uid);
		weft__error_set_cid(e, c->cid);
		send_error(c, e);
		weft_error_release(e);
	}
}

/* ---- dispatch ---- */

static void callee_start(struct weft__host *h, weft_msg *m);

void
weft__ctx_dispatch(struct weft__host *h, weft_msg *m)
{
	if (m->type == WEFT__MSG_START) {
		callee_start(h, m);
		return;
	}
	struct weft_ctx *c = map_get(h, m->from, m->word);
	if (c == NULL || c->exited) {
		if (m->type == WEFT__MSG_CANCEL) {
			/* The task already ended: nothing to cancel. */
			weft_msg *ack = weft_msg_new(WEFT__MSG_CANCEL_ACK, 0);
			if (ack) {
				ack->word = m->word;
				ack->from = weft__actor_aid(h->actor);
				weft__send_sys(h->rt, m->from, ack);
			}
		}
		/* Messages after the context closed are dropped. */
		weft__msg_dispose(m);
		return;
	}
	switch (m->type) {
	case WEFT__MSG_STARTED:
		if (!c->started) {
			c->started = true;
			c->started_msg = m;
		} else {
			weft_msg_free(m);
		}
		break;
	case WEFT__MSG_YIELD:
		deliver_yield(c, m);
		break;
	case WEFT__MSG_STREAM_STOP:
	case WEFT__MSG_RETURN:
		q_push(c, m);
		break;
	case WEFT__MSG_ERROR: {
		weft_error *e;
		memcpy(&e, weft_msg_data(m), sizeof(e));
		record_remote_error(c, e);
		q_push(c, m);
		break;
	}
	case WEFT__MSG_CANCEL:
		/* Callee: the caller's ctx.cancel() (tractor's
		 * _cancel_task). The ack goes after our final message. */
		if (m->size >= sizeof(weft_uid))
			set_canceller(c, (const weft_uid *)weft_msg_data(m));
		c->acks_owed++;
		if (c->owner)
			weft__scope_cancel(c->owner, &c->scope, NULL);
		weft_msg_free(m);
		break;
	case WEFT__MSG_CANCEL_ACK:
	case WEFT__MSG_ACTOR_CANCEL_ACK:
	case WEFT__MSG_CHILD_EXIT:
		c->ack_received = true;
		weft_msg_free(m);
		break;
	case WEFT__MSG_START_ACK:
		c->start_acked = true;
		weft_msg_free(m);
		break;
	default:
		weft__msg_dispose(m);
		return;
	}
	wake_waiter(c);
}

static bool
final_queued(const struct weft_ctx *c)
{
	for (weft_msg *m = c->q_head; m; m = m->weft_link)
		if (m->type == WEFT__MSG_RETURN || m->type == WEFT__MSG_ERROR)
			return true;
	return c->has_result;
}

void
weft__ctx_peer_gone(struct weft__host *h, weft_aid peer, const weft_error *e)
{
	for (size_t i = 0; i < h->map_cap; i++)
		for (struct weft_ctx *c = h->map[i]; c; c = c->map_next) {
			if (c->peer.id != peer.id || c->exited)
				continue;
			/* No ack will come over a dead connection. */
			c->ack_received = true;
			if (c->kind == KIND_WAITER) {
				wake_waiter(c);
				continue;
			}
			if (c->caller) {
				/* §W.3.1: the peer's final is a TransportClosed
				 * naming it (unless its real final came). */
				if (!final_queued(c)) {
					weft_error *held = weft_error_hold(e);
					weft_msg *m = weft_msg_new(WEFT__MSG_ERROR,
					                           sizeof(held));
					if (m == NULL) {
						weft_error_release(held);
						continue;
					}
					m->word = c->cid;
					m->from = peer;
					memcpy(weft_msg_data(m), &held,
					       sizeof(held));
					record_remote_error(c, held);
					q_push(c, m);
				}
				wake_waiter(c);
				continue;
			}
			/* A callee whose caller's process is unreachable: its
			 * task is cancelled by this actor (protocol.md §6.5);
			 * its final goes nowhere. */
			set_canceller(c, &c->self_uid);
			c->acks_owed = 0;
			if (c->owner)
				weft__scope_cancel(c->owner, &c->scope, NULL);
			wake_waiter(c);
		}
}

void
weft__ctx_host_cancel_all(struct weft__host *h)
{
	for (size_t i = 0; i < h->map_cap; i++)
		for (struct weft_ctx *c = h->map[i]; c; c = c->map_next) {
			if (c->caller || c->fn_done)
				continue;
			set_canceller(c, h->has_requester ? &h->requester
			                                  : &c->self_uid);
			if (c->owner)
				weft__scope_cancel(c->owner, &c->scope, NULL);
		}
}

void
weft__ctx_host_destroy(struct weft__host *h)
{
	/* Contexts we opened and never exited: their callees would run on
	 * for a caller that is gone (tractor cancels a channel's tasks at
	 * its EOF), so cancel them, naming ourselves. */
	for (size_t i = 0; i < h->map_cap; i++)
		for (struct weft_ctx *c = h->map[i]; c; c = c->map_next)
			if (c->caller && c->kind != KIND_WAITER && !c->exited &&
			    !c->has_result && c->remote_error == NULL)
				weft__send_sys(h->rt, c->peer,
				               msg_for(c, WEFT__MSG_CANCEL,
				                       &c->self_uid,
				                       sizeof(weft_uid)));
	for (size_t i = 0; i < h->map_cap; i++) {
		while (h->map[i]) {
			struct weft_ctx *c = h->map[i];
			ctx_destroy(c); /* unlinks itself */
		}
	}
}

/* ---- callee ---- */

static weft_fn
find_fn(struct weft__host *h, const char *name, size_t len, void **arg)
{
	for (size_t i = 0; i < h->nfns; i++)
		if (strlen(h->fns[i].name) == len &&
		    memcmp(h->fns[i].name, name, len) == 0) {
			*arg = h->fns[i].arg;
			return h->fns[i].fn;
		}
	return NULL;
}

struct callee {
	struct weft_ctx *c;
	weft_fn fn;
	void *arg;
	weft_payload args;
};

static weft_error *
final_error(struct weft_ctx *c, weft_err rc)
{
	struct weft__task *t = weft__task_current();
	weft_error *te = weft__task_get_error(t);

	if (c->scope.cancelled && c->remote_error == NULL &&
	    (rc == WEFT_ECANCELED || rc == WEFT_OK ||
	     (te && te->kind == WEFT_ERRKIND_CANCELLED))) {
		/* §7.1 step 3: cancelled by our own ctx.cancel(), the
		 * caller's, or an actor cancel. */
		const char *by = c->self_cancelled ? "itself"
		                 : (c->has_canceller &&
		                    uid_eq(&c->canceller, &c->peer_uid))
		                         ? "its parent-side peer"
		                         : "a remote peer";
		weft_error *e = weft_error_new(
			WEFT_ERRKIND_CONTEXT_CANCELLED, NULL, &c->self_uid,
			"the task of context %llx was cancelled by %s",
			(unsigned long long)c->cid, by);
		if (e) {
			weft__error_set_canceller(
				e, c->self_cancelled ? &c->self_uid
				   : c->has_canceller ? &c->canceller
				                      : &c->self_uid);
			weft__error_set_cid(e, c->cid);
		}
		return e;
	}
	if (c->scope.cancelled && c->remote_error &&
	    (rc == WEFT_ECANCELED || rc == WEFT_OK ||
	     (te && te->kind == WEFT_ERRKIND_CANCELLED)))
		/* The peer's error cancelled us (e.g. its StreamOverrun
		 * report): we die of it, and relay it (S030). */
		te = c->remote_error;
	if (te == NULL)
		return weft__error_here(WEFT_ERRKIND_RUNTIME, NULL,
		                        "function failed: %s",
		                        weft_strerror(rc));
	bool own = te->has_src && uid_eq(&te->src, &c->self_uid) &&
	           te->kind != WEFT_ERRKIND_REMOTE;
	if (own) {
		weft_error *e = weft_error_hold(te);
		if (e->cid == 0)
			weft__error_set_cid(e, c->cid); /* still private */
		return e;
	}
	return weft__error_relay(te, &c->self_uid, c->cid);
}

static weft_err
callee_main(void *arg)
{
	struct callee *ce = arg;
	struct weft_ctx *c = ce->c;
	weft_err rc = ce->fn(c, &ce->args, ce->arg);
	bool cancelled = c->scope.cancelled;

	free(ce);
	c->fn_done = true;
	if (c->overrun_reported) {
		/* Our overrun report was the final (§5.3); the caller has
		 * ended the context with it. Only the owed acks remain. */
		c->stream_closed = true;
		if (rc != WEFT_OK)
			weft__task_set_error(weft__task_current(), NULL);
	} else if (rc == WEFT_OK && !cancelled) {
		/* The stream block ends before the function returns: Stop,
		 * then Return. */
		if (c->stream_opened && !c->stream_closed)
			weft_stream_close(&c->stream);
		ctx_send(c, msg_for(c, WEFT__MSG_RETURN, c->ret_data,
		                    c->ret_len));
	} else {
		/* A failure sends no Stop: the Error is the end, and a caller
		 * reading its stream must meet the error, not an EoC. */
		c->stream_closed = true;
		weft_error *e = final_error(c, rc);
		if (e) {
			weft_error_release(c->local_error);
			c->local_error = weft_error_hold(e);
			send_error(c, e);
			/* The task ends with it too (for logs and joiners). */
			weft__task_set_error(weft__task_current(), e);
		}
	}
	for (; c->acks_owed > 0; c->acks_owed--)
		ctx_send(c, msg_for(c, WEFT__MSG_CANCEL_ACK, NULL, 0));
	weft__scope_pop(weft__task_current(), &c->scope);
	ctx_destroy(c);
	/* A failed function has reported to its caller; the task itself ends
	 * quietly (tractor swallows errors relayed over IPC). */
	return WEFT_OK;
}

static void
callee_start(struct weft__host *h, weft_msg *m)
{
	struct weft__start_hdr hdr;
	void *fn_arg = NULL;

	if (m->size < sizeof(hdr)) {
		weft_msg_free(m);
		return;
	}
	memcpy(&hdr, weft_msg_data(m), sizeof(hdr));
	if (hdr.name_len > m->size - sizeof(hdr)) {
		weft_msg_free(m);
		return;
	}
	const char *name = (const char *)weft_msg_data(m) + sizeof(hdr);
	weft_fn fn = find_fn(h, name, hdr.name_len, &fn_arg);
	bool want_ack = (hdr.kind & WEFT__CALL_WANT_ACK) != 0;
	struct weft_ctx *c = ctx_new(h, false,
	                             (enum ctx_kind)(hdr.kind & 0xFFu),
	                             m->from, &hdr.caller, m->word);
	if (c == NULL) {
		weft_msg_free(m);
		return;
	}
	if (fn == NULL) {
		weft_error *e = weft_error_new(
			WEFT_ERRKIND_NO_SUCH_FUNCTION, NULL, &c->self_uid,
			"function '%.*s' is not exposed by actor %s",
			(int)hdr.name_len, name, c->self_uid.name);
		if (e) {
			weft__error_set_cid(e, c->cid);
			send_error(c, e);
			weft_error_release(e);
		}
		weft_msg_free(m);
		ctx_destroy(c);
		return;
	}
	struct callee *ce = malloc(sizeof(*ce));
	struct weft__task *t = ce ? weft__task_new(h, callee_main, ce) : NULL;
	if (t == NULL) {
		free(ce);
		weft_error *e = weft_error_new(WEFT_ERRKIND_RUNTIME,
		                               "MemoryError", &c->self_uid,
		                               "out of memory");
		if (e) {
			send_error(c, e);
			weft_error_release(e);
		}
		weft_msg_free(m);
		ctx_destroy(c);
		return;
	}
	size_t off = sizeof(hdr) + hdr.name_len;
	if (want_ack) {
		/* The ack echoes the call's kind (protocol.md §3). */
		uint8_t k = (uint8_t)(hdr.kind & 0xFFu);
		ctx_send(c, msg_for(c, WEFT__MSG_START_ACK, &k, 1));
	}
	ce->c = c;
	ce->fn = fn;
	ce->arg = fn_arg;
	ce->args = (weft_payload){(const uint8_t *)weft_msg_data(m) + off,
	                          m->size - off, NULL, NULL};
	c->args_msg = m;
	c->owner = t;
	weft__scope_push(t, &c->scope);
	if (h->cancelling) {
		set_canceller(c, h->has_requester ? &h->requester
		                                  : &c->self_uid);
		weft__scope_cancel(t, &c->scope, NULL);
	}
}

weft_err
weft_ctx_started(weft_ctx *c, const void *data, size_t len)
{
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	if (c->caller)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "started() is for the callee side only");
	if (c->kind != KIND_CONTEXT)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "started() in a portal run");
	if (c->started)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "started() called more than once");
	weft_err rc = check_size(c, len, 0);
	if (rc != WEFT_OK)
		return rc;
	c->started = true;
	return ctx_send(c, msg_for(c, WEFT__MSG_STARTED, data, len));
}

weft_err
weft_ctx_return(weft_ctx *c, const void *data, size_t len)
{
	if (c->caller)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "return is for the callee side only");
	weft_err rc = check_size(c, len, 0);
	if (rc != WEFT_OK)
		return rc;
	uint8_t *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return WEFT_ENOMEM;
	if (len)
		memcpy(copy, data, len);
	free(c->ret_data);
	c->ret_data = copy;
	c->ret_len = len;
	return WEFT_OK;
}

/* ---- portals ---- */

struct weft_portal {
	weft_runtime *rt;
	weft_aid aid;
	weft_uid uid;
	/* run_in_actor outcome, kept after the nursery has exited */
	bool done;
	weft_err rc;
	weft_payload result;
	weft_error *error;
	struct child *child; /* when a nursery made it */
};

weft_err
weft_portal_open(weft_runtime *rt, weft_aid aid, weft_portal **out)
{
	weft_portal *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return WEFT_ENOMEM;
	weft_err rv = weft_actor_uid(rt, aid, &p->uid);
	if (rv != WEFT_OK) {
		free(p);
		return rv;
	}
	p->rt = rt;
	p->aid = aid;
	*out = p;
	return WEFT_OK;
}

void
weft_portal_free(weft_portal *p)
{
	if (p == NULL)
		return;
	weft_payload_free(&p->result);
	weft_error_release(p->error);
	free(p);
}

weft_aid
weft_portal_aid(const weft_portal *p)
{
	return p->aid;
}

bool
weft__portal_child(weft_portal *p, struct child **out)
{
	*out = p->child;
	return p->child != NULL;
}

void
weft__portal_keep_outcome(weft_portal *p, weft_err rc, weft_payload *result,
                          weft_error *error)
{
	p->child = NULL;
	p->done = true;
	p->rc = rc;
	p->result = *result;
	*result = (weft_payload){0};
	p->error = error;
}

bool
weft__portal_outcome(weft_portal *p, weft_err *rc, weft_payload *result,
                     const weft_error **error)
{
	if (!p->done)
		return false;
	*rc = p->rc;
	*result = (weft_payload){p->result.data, p->result.len, NULL, NULL};
	*error = p->error;
	return true;
}

void
weft__portal_set_child(weft_portal *p, struct child *c)
{
	p->child = c;
}

/* Waiters: a registered context that only waits for one runtime message
 * (an actor-cancel ack, a child's exit) routed by (peer, cid). */
struct weft_ctx *
weft__waiter_new(struct weft__task *t, weft_aid peer, uint64_t *token)
{
	struct weft_ctx *c = ctx_new(weft__task_host(t), true, KIND_WAITER,
	                             peer, NULL, new_cid());
	if (c)
		*token = c->cid;
	return c;
}

bool
weft__waiter_fired(struct weft_ctx *c)
{
	return c == NULL || c->ack_received;
}

weft_err
weft__waiter_wait(struct weft_ctx *c, uint64_t deadline)
{
	if (c->ack_received)
		return WEFT_OK;
	weft_err rc = wait_on(c, deadline, deadline != 0);
	return rc;
}

void
weft__waiter_free(struct weft_ctx *c)
{
	if (c)
		ctx_destroy(c);
}

void
weft_payload_free(weft_payload *p)
{
	if (p == NULL)
		return;
	if (p->owner)
		weft_msg_free(p->owner);
	*p = (weft_payload){0};
}

static weft_err
send_start_flags(struct weft_ctx *c, const char *fn, const void *args,
                 size_t len, uint32_t flags)
{
	size_t nlen = strlen(fn);
	weft_err rc = check_size(c, len, nlen + 128);
	if (rc != WEFT_OK)
		return rc;
	struct weft__start_hdr hdr = {c->self_uid, (uint32_t)c->kind | flags,
	                              (uint32_t)nlen};
	weft_msg *m = weft_msg_new(WEFT__MSG_START,
	                           (uint32_t)(sizeof(hdr) + nlen + len));
	if (m == NULL)
		return fail(WEFT_ENOMEM, WEFT_ERRKIND_RUNTIME, "MemoryError",
		            "out of memory");
	uint8_t *d = weft_msg_data(m);
	memcpy(d, &hdr, sizeof(hdr));
	memcpy(d + sizeof(hdr), fn, nlen);
	if (len)
		memcpy(d + sizeof(hdr) + nlen, args, len);
	m->word = c->cid;
	m->from = weft__actor_aid(c->host->actor);
	return ctx_send(c, m);
}

static weft_err
send_start(struct weft_ctx *c, const char *fn, const void *args, size_t len)
{
	return send_start_flags(c, fn, args, len, 0);
}

static struct weft_ctx *
caller_ctx(struct weft__task *t, weft_portal *p, enum ctx_kind kind)
{
	struct weft__host *h = weft__task_host(t);
	struct weft_ctx *c = ctx_new(h, true, kind, p->aid, &p->uid,
	                             new_cid());
	if (c)
		c->owner = t;
	return c;
}

static void
payload_of(weft_msg *m, weft_payload *out, bool give)
{
	if (out == NULL)
		return;
	if (m == NULL) {
		*out = (weft_payload){0};
		return;
	}
	*out = (weft_payload){weft_msg_data(m), m->size, NULL,
	                      give ? m : NULL};
}

static weft_err
raise_remote(struct weft_ctx *c)
{
	set_task_error(c->remote_error);
	return WEFT_EREMOTE;
}

weft_err
weft__portal_run_acked(weft_portal *p, const char *fn, const void *args,
                       size_t len, weft_payload *result,
                       void (*on_ack)(void *arg, weft_err rc), void *arg)
{
	struct weft__task *t = weft__task_current();
	struct weft_ctx *c;
	weft_err rc;
	bool told = on_ack == NULL;

	if (result)
		*result = (weft_payload){0};
	if (t == NULL)
		return WEFT_ESTATE;
	if ((c = caller_ctx(t, p, KIND_RUN)) == NULL)
		return WEFT_ENOMEM;
	rc = send_start_flags(c, fn, args, len,
	                      on_ack ? WEFT__CALL_WANT_ACK : 0);
	if (rc != WEFT_OK)
		goto out;
	for (;;) {
		if (!told && c->start_acked) {
			told = true;
			on_ack(arg, WEFT_OK);
		}
		weft_msg *m = q_pop(c);
		if (m && m->type == WEFT__MSG_RETURN) {
			payload_of(m, result, true);
			if (result == NULL)
				weft_msg_free(m);
			rc = WEFT_OK;
			break;
		}
		if (m)
			weft__msg_dispose(m);
		if (c->remote_error) {
			rc = raise_remote(c);
			break;
		}
		if ((rc = wait_on(c, 0, false)) != WEFT_OK) {
			/* Cancelled: tell the callee, do not wait. */
			ctx_send(c, msg_for(c, WEFT__MSG_CANCEL, &c->self_uid,
			                    sizeof(weft_uid)));
			rc = fail(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED, NULL,
			          "the task was cancelled");
			break;
		}
	}
out:
	if (!told)
		on_ack(arg, rc == WEFT_OK ? WEFT_OK : rc);
	ctx_destroy(c);
	return rc;
}

weft_err
weft_portal_run(weft_portal *p, const char *fn, const void *args, size_t len,
                weft_payload *result)
{
	return weft__portal_run_acked(p, fn, args, len, result, NULL, NULL);
}

struct weft_ctx *
weft__cancel_actor_begin(weft_portal *p)
{
	struct weft__task *t = weft__task_current();
	struct weft_ctx *c = t ? caller_ctx(t, p, KIND_WAITER) : NULL;

	if (c == NULL)
		return NULL;
	c->owner = NULL;
	weft_msg *m = msg_for(c, WEFT__MSG_ACTOR_CANCEL, &c->self_uid,
	                      sizeof(weft_uid));
	if (m == NULL || weft__send_sys(p->rt, p->aid, m) != WEFT_OK) {
		ctx_destroy(c);
		return NULL;
	}
	return c;
}

bool
weft__cancel_actor_end(struct weft_ctx *c, uint64_t deadline)
{
	while (!c->ack_received && wait_on(c, deadline, true) == WEFT_OK)
		;
	bool acked = c->ack_received;
	ctx_destroy(c);
	return acked;
}

weft_err
weft_portal_cancel_actor(weft_portal *p, bool *acked)
{
	struct weft__task *t = weft__task_current();
	struct weft_ctx *c;

	if (acked)
		*acked = false;
	if (t == NULL)
		return WEFT_ESTATE;
	if ((c = caller_ctx(t, p, KIND_WAITER)) == NULL)
		return WEFT_ENOMEM;
	c->owner = NULL; /* not a scope: nothing to cancel locally */
	weft_msg *m = msg_for(c, WEFT__MSG_ACTOR_CANCEL, &c->self_uid,
	                      sizeof(weft_uid));
	if (m && weft__send_sys(p->rt, p->aid, m) == WEFT_OK) {
		uint64_t deadline = weft__now_ns() +
			(uint64_t)p->rt->cfg.cancel_actor_timeout_ms * 1000000u;
		while (!c->ack_received &&
		       wait_on(c, deadline, true) == WEFT_OK)
			;
	}
	if (acked)
		*acked = c->ack_received;
	ctx_destroy(c);
	return WEFT_OK;
}

/* ---- contexts: the caller's side ---- */

weft_err
weft_open_context(weft_portal *p, const char *fn, const void *args,
                  size_t len, const weft_ctx_opts *opts, weft_ctx **out,
                  weft_payload *first)
{
	struct weft__task *t = weft__task_current();
	struct weft_ctx *c;
	weft_err rc;

	*out = NULL;
	if (first)
		*first = (weft_payload){0};
	if (t == NULL)
		return WEFT_ESTATE;
	if (p->aid.id == weft_current_actor().id)
		/* §11: nothing is sent. */
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "Invalid Operation: can not open a context with "
		            "the local actor itself");
	if ((c = caller_ctx(t, p, KIND_CONTEXT)) == NULL)
		return WEFT_ENOMEM;
	if (opts) {
		c->allow_overruns = opts->allow_overruns;
		if (opts->msg_buffer_size)
			c->cap = opts->msg_buffer_size;
	}
	weft__scope_push(t, &c->scope);
	if ((rc = send_start(c, fn, args, len)) != WEFT_OK)
		goto out_fail;
	for (;;) {
		if (c->started)
			break;
		if (c->remote_error) {
			rc = raise_remote(c);
			goto out_fail;
		}
		if (c->q_head && c->q_head->type == WEFT__MSG_RETURN) {
			/* The callee ended without started(): a protocol
			 * violation, not something to wait out. */
			char uid[WEFT_NAME_MAX + 16];
			weft_uid_format(&c->peer_uid, uid, sizeof(uid));
			rc = fail(WEFT_EPROTO, WEFT_ERRKIND_RUNTIME,
			          "MessagingError",
			          "%s returned from '%s' without calling "
			          "started()", uid, fn);
			goto out_fail;
		}
		if ((rc = wait_on(c, 0, false)) != WEFT_OK) {
			if (c->remote_error) {
				rc = raise_remote(c);
				goto out_fail;
			}
			weft_error *saved = weft_error_hold(weft_task_error());
			weft_ctx_cancel(c);
			weft__task_set_error(t, saved);
			goto out_fail;
		}
	}
	payload_of(c->started_msg, first, false);
	*out = c;
	return WEFT_OK;

out_fail:
	weft__scope_pop(t, &c->scope);
	ctx_destroy(c);
	return rc;
}

static bool
pop_final(struct weft_ctx *c, uint32_t *drained_yields)
{
	/* One step of §10; true when the drain is over. */
	weft_msg *m = q_pop(c);
	if (m == NULL)
		return false;
	switch (m->type) {
	case WEFT__MSG_RETURN:
		c->has_result = true;
		c->result_msg = m;
		return true;
	case WEFT__MSG_YIELD:
		weft_msg_free(m);
		if (c->stream_opened &&
		    (c->stream_closed || self_cancel_acked(c) ||
		     c->cancel_called || ++*drained_yields > DRAIN_YIELD_LIMIT))
			return true;
		return false;
	case WEFT__MSG_ERROR:
		weft__msg_dispose(m);
		return c->remote_error != NULL;
	default: /* Stop */
		weft__msg_dispose(m);
		return false;
	}
}

weft_err
weft_ctx_result(weft_ctx *c, weft_payload *result)
{
	uint32_t drained = 0;

	if (result)
		*result = (weft_payload){0};
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	if (!c->caller)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "result() is for the caller side only");
	while (!c->has_result && c->remote_error == NULL) {
		if (pop_final(c, &drained))
			break;
		if (c->q_head)
			continue;
		if (c->exited)
			break;
		weft_err rc = wait_on(c, 0, false);
		if (rc != WEFT_OK) {
			if (c->remote_error)
				break;
			return rc;
		}
	}
	if (c->has_result) {
		payload_of(c->result_msg, result, false);
		return WEFT_OK;
	}
	if (c->remote_error) {
		if (absorbs(c)) {
			if (c->local_error == NULL)
				c->local_error = weft_error_hold(c->remote_error);
			return WEFT_OK;
		}
		return raise_remote(c);
	}
	return WEFT_OK;
}

weft_err
weft_ctx_exit(weft_ctx *c, weft_err body_rc)
{
	struct weft__task *t = weft__task_current();
	weft_err rc;

	if (t == NULL)
		return WEFT_ESTATE;
	if (c->exited)
		return c->exit_rc;
	if (!c->caller || c->owner != t)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "exit from a task other than the opener");
	if (c->stream_opened && !c->stream_closed)
		weft_stream_close(&c->stream);
	const weft_error *te = weft_task_error();
	if (body_rc == WEFT_ECANCELED && c->scope.cancelled &&
	    !weft__task_cancelled_besides(t, &c->scope))
		body_rc = WEFT_OK; /* the scope caught its own cancel */
	if (body_rc == WEFT_OK) {
		rc = weft_ctx_result(c, NULL);
		if (rc == WEFT_ECANCELED) {
			/* Cancelled from outside while waiting: §7 step 7. */
			weft_error *saved = weft_error_hold(weft_task_error());
			if (c->local_error == NULL)
				c->local_error = weft_error_hold(saved);
			weft_ctx_cancel(c);
			weft__task_set_error(t, saved);
		}
	} else if (body_rc == WEFT_EREMOTE && is_ctxc(te) &&
	           te == c->remote_error) {
		/* §7 step 6 */
		if (c->local_error == NULL)
			c->local_error = weft_error_hold(te);
		rc = (c->cancel_called && te->has_canceller &&
		      uid_eq(&te->canceller, &c->self_uid))
			     ? WEFT_OK
			     : WEFT_EREMOTE;
	} else {
		/* §7 step 7: cancel the callee, absorb its ack, keep our
		 * own error. */
		weft_error *saved = te ? weft_error_hold(te) : NULL;
		if (saved && c->local_error == NULL)
			c->local_error = weft_error_hold(saved);
		weft_ctx_cancel(c);
		weft__task_set_error(t, saved);
		rc = body_rc;
	}
	c->exited = true;
	c->exit_rc = rc;
	c->waiter = NULL;
	q_clear(c);
	map_del(c->host, c);
	weft__scope_pop(t, &c->scope);
	return rc;
}

void
weft_ctx_free(weft_ctx *c)
{
	if (c == NULL || !c->caller)
		return;
	if (!c->exited && weft__task_current() == c->owner)
		weft_ctx_exit(c, WEFT_OK);
	else if (!c->exited)
		weft__scope_pop(c->owner, &c->scope);
	ctx_destroy(c);
}

weft_err
weft_ctx_cancel(weft_ctx *c)
{
	struct weft__task *t = weft__task_current();

	if (t == NULL)
		return WEFT_ESTATE;
	c->cancel_called = true;
	if (!c->caller) {
		/* Cancel our own function's scope (S028). */
		c->self_cancelled = true;
		set_canceller(c, &c->self_uid);
		weft__scope_cancel(c->owner, &c->scope, NULL);
		return WEFT_OK;
	}
	if (c->exited || c->has_result || c->remote_error)
		return WEFT_OK; /* the callee is done: nothing to cancel */
	c->ack_received = false;
	weft_err rc = ctx_send(c, msg_for(c, WEFT__MSG_CANCEL, &c->self_uid,
	                                 sizeof(weft_uid)));
	if (rc != WEFT_OK) {
		WEFT_LOG(WEFT_LOG_CANCEL, "ctx %llx: cancel not sent: peer gone",
		         (unsigned long long)c->cid);
		return WEFT_OK;
	}
	uint64_t deadline = weft__now_ns() +
		(uint64_t)c->host->rt->cfg.ctx_cancel_timeout_ms * 1000000u;
	while (!c->ack_received) {
		/* Shielded: our own cancellation does not cut it short. */
		if (wait_in(c, &c->cancel_waiter, deadline, true) != WEFT_OK) {
			WEFT_LOG(WEFT_LOG_CANCEL,
			         "ctx %llx: no cancel ack in time",
			         (unsigned long long)c->cid);
			break;
		}
	}
	return WEFT_OK;
}

/* ---- state ---- */

bool weft_ctx_cancel_called(const weft_ctx *c) { return c->cancel_called; }
bool weft_ctx_cancel_acked(const weft_ctx *c) { return self_cancel_acked(c); }
const weft_uid *weft_ctx_canceller(const weft_ctx *c)
{
	return c->has_canceller ? &c->canceller : NULL;
}
const weft_error *weft_ctx_remote_error(const weft_ctx *c)
{
	return c->remote_error;
}
const weft_error *weft_ctx_local_error(const weft_ctx *c)
{
	return c->local_error;
}
const weft_error *
weft_ctx_maybe_error(const weft_ctx *c)
{
	return c->remote_error ? c->remote_error : c->local_error;
}
bool
weft_ctx_has_result(const weft_ctx *c, weft_payload *result)
{
	if (c->has_result)
		payload_of(c->result_msg, result, false);
	return c->has_result;
}
const weft_uid *weft_ctx_peer_uid(const weft_ctx *c) { return &c->peer_uid; }
uint64_t weft_ctx_cid(const weft_ctx *c) { return c->cid; }

weft_ctx *
weft_current_ctx(void)
{
	struct weft__task *t = weft__task_current();
	/* Every cancel scope is a context's: the innermost scope on the
	 * task's stack is its innermost open context. */
	struct weft__scope *sc = t ? weft__task_scope(t) : NULL;
	if (sc == NULL)
		return NULL;
	return (struct weft_ctx *)((char *)sc - offsetof(struct weft_ctx, scope));
}

/* ---- streams ---- */

weft_err
weft_ctx_open_stream(weft_ctx *c, const weft_stream_opts *opts,
                     weft_stream **out)
{
	*out = NULL;
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	if (c->cancel_called) {
		if (c->remote_error)
			return raise_remote(c);
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "Stream opened after Context.cancel() called");
	}
	if (!c->caller && !c->started)
		return fail(WEFT_ESTATE, WEFT_ERRKIND_RUNTIME, NULL,
		            "started() must be called before opening a stream");
	if (c->stream_opened || c->exited)
		return fail(WEFT_ECLOSED, WEFT_ERRKIND_RUNTIME,
		            "ClosedResourceError", "the stream was already used");
	if (opts) {
		if (opts->allow_overruns)
			c->allow_overruns = true;
		if (opts->msg_buffer_size)
			c->cap = opts->msg_buffer_size;
	}
	c->stream_opened = true;
	*out = &c->stream;
	return WEFT_OK;
}

weft_err
weft_stream_send(weft_stream *s, const void *data, size_t len)
{
	struct weft_ctx *c = s->ctx;
	struct weft__task *t = weft__task_current();

	if (t == NULL)
		return WEFT_ESTATE;
	if (c->remote_error && !self_cancel_acked(c))
		return raise_remote(c);
	if (c->stream_closed || c->exited)
		return fail(c->eoc ? WEFT_EEOC : WEFT_ECLOSED,
		            WEFT_ERRKIND_RUNTIME,
		            c->eoc ? "EndOfChannel" : "ClosedResourceError",
		            "the stream is closed");
	if (c->eoc)
		return fail(WEFT_EEOC, WEFT_ERRKIND_RUNTIME, "EndOfChannel",
		            "the peer closed its stream");
	if (weft__task_is_cancelled(t))
		return fail(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED, NULL,
		            "the task was cancelled");
	weft_err rc = check_size(c, len, 0);
	if (rc != WEFT_OK)
		return rc;
	/* Backpressure from the socket: while the connection has more
	 * queued than its bound, the sender waits (polling the queue every
	 * 200 us; cancellable, and a remote error ends the wait). */
	while (c->conn && weft__net_congested(c->conn)) {
		/* Blocked on this context: its remote error (the connection
		 * ending) wakes us and is returned, not a cancel. */
		uint64_t until = weft__now_ns() + 200000u;
		rc = c->waiter == NULL ? wait_on(c, until, false)
		                       : weft__task_block(t, NULL, until, false);
		if (c->remote_error && !self_cancel_acked(c))
			return raise_remote(c);
		if (rc == WEFT_ECANCELED)
			return rc;
	}
	rc = ctx_send(c, msg_for(c, WEFT__MSG_YIELD, data, len));
	if (rc == WEFT_OK)
		weft__task_note_send(t);
	return rc;
}

/* Takes the next stream event off the queue: an item (true, *out set) or
 * the end (false, *rc set); NULL queue: returns false with rc WEFT_OK. */
static bool
next_item(struct weft_ctx *c, weft_msg **item, weft_err *rc)
{
	for (;;) {
		if (c->remote_error) {
			*rc = raise_remote(c);
			return false;
		}
		if (c->eoc) {
			*rc = fail(WEFT_EEOC, WEFT_ERRKIND_RUNTIME,
			           "EndOfChannel", "end of stream");
			return false;
		}
		if (c->stream_closed) {
			/* Our own close marked the stream ended (§2.5). */
			*rc = fail(WEFT_EEOC, WEFT_ERRKIND_RUNTIME,
			           "EndOfChannel", "the stream was closed");
			return false;
		}
		struct weft__task *t = weft__task_current();
		if (t && weft__task_is_cancelled(t)) {
			/* A receive is a checkpoint: cancelled means cancelled,
			 * even with items queued (level-triggered). */
			*rc = fail(WEFT_ECANCELED, WEFT_ERRKIND_CANCELLED, NULL,
			           "the task was cancelled");
			return false;
		}
		weft_msg *m = q_pop(c);
		if (m == NULL) {
			*rc = WEFT_OK;
			return false;
		}
		switch (m->type) {
		case WEFT__MSG_YIELD:
			*item = m;
			return true;
		case WEFT__MSG_RETURN:
			c->has_result = true;
			c->result_msg = m;
			c->eoc = true;
			break;
		case WEFT__MSG_STREAM_STOP:
			weft_msg_free(m);
			c->eoc = true;
			/* The first EoC closes our half too. */
			if (!c->stream_closed)
				weft_stream_close(&c->stream);
			break;
		default:
			weft__msg_dispose(m);
			break;
		}
	}
}

static weft_err
raw_recv(struct weft_ctx *c, weft_msg **item)
{
	weft_err rc;
	for (;;) {
		if (next_item(c, item, &rc))
			return WEFT_OK;
		if (rc != WEFT_OK)
			return rc;
		if (c->exited)
			return fail(WEFT_ECLOSED, WEFT_ERRKIND_RUNTIME,
			            "ClosedResourceError", "context exited");
		if ((rc = wait_on(c, 0, false)) != WEFT_OK) {
			if (c->remote_error)
				return raise_remote(c);
			return rc;
		}
	}
}

static weft_err bcast_recv_internal(struct weft_bcast *b, weft_payload *out);

weft_err
weft_stream_recv(weft_stream *s, weft_payload *out)
{
	struct weft_ctx *c = s->ctx;
	weft_msg *m;
	weft_err rc;

	*out = (weft_payload){0};
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	if (s->bcast && s->subs) {
		/* Reading through the broadcaster: the stream's own
		 * subscription is the first one made. */
		struct weft_bcast *own = s->subs;
		while (own->next)
			own = own->next;
		return bcast_recv_internal(own, out);
	}
	if ((rc = raw_recv(c, &m)) != WEFT_OK)
		return rc;
	payload_of(m, out, true);
	return WEFT_OK;
}

weft_err
weft_stream_close(weft_stream *s)
{
	struct weft_ctx *c = s->ctx;

	if (c->stream_closed)
		return WEFT_OK;
	c->stream_closed = true;
	/* Drop the items already queued; keep what ends the context. */
	weft_msg *keep_head = NULL, *keep_tail = NULL, *m;
	while ((m = q_pop(c)) != NULL) {
		if (m->type == WEFT__MSG_YIELD) {
			weft_msg_free(m);
			continue;
		}
		if (m->type == WEFT__MSG_STREAM_STOP) {
			c->eoc = true;
			weft_msg_free(m);
			continue;
		}
		m->weft_link = NULL;
		if (keep_tail)
			keep_tail->weft_link = m;
		else
			keep_head = m;
		keep_tail = m;
	}
	c->q_head = keep_head;
	c->q_tail = keep_tail;
	/* Shielded and quiet (§2.5): a peer that has gone is no error here,
	 * and must not replace the error the task is ending with. */
	if (!c->exited && !(c->fn_done && c->caller)) {
		weft_msg *m = msg_for(c, WEFT__MSG_STREAM_STOP, NULL, 0);
		if (m)
			weft__send_sys(c->host->rt, c->peer, m);
	}
	return WEFT_OK;
}

/* ---- broadcast ---- */

static void
stream_release(struct weft_stream *s)
{
	if (s->ring) {
		for (uint64_t i = 0; i < s->ring_cap; i++)
			weft_msg_free(s->ring[i]);
		free(s->ring);
		s->ring = NULL;
	}
	struct weft_bcast *b = s->subs;
	while (b) {
		struct weft_bcast *next = b->next;
		free(b);
		b = next;
	}
	s->subs = NULL;
}

weft_err
weft_stream_subscribe(weft_stream *s, bool raise_on_lag, weft_bcast **out)
{
	*out = NULL;
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	if (s->bcast_eoc || s->ctx->eoc || s->ctx->stream_closed)
		return fail(WEFT_ECLOSED, WEFT_ERRKIND_RUNTIME,
		            "ClosedResourceError", "the broadcaster is closed");
	if (!s->bcast) {
		s->ring_cap = s->ctx->cap ? s->ctx->cap : DEFAULT_BUFFER;
		s->ring = calloc(s->ring_cap, sizeof(*s->ring));
		if (s->ring == NULL)
			return WEFT_ENOMEM;
		s->bcast = true;
		/* The stream's own receive becomes a subscriber too. */
		struct weft_bcast *own = calloc(1, sizeof(*own));
		if (own == NULL)
			return WEFT_ENOMEM;
		own->s = s;
		own->raise_on_lag = true;
		s->subs = own;
	}
	struct weft_bcast *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return WEFT_ENOMEM;
	b->s = s;
	b->raise_on_lag = raise_on_lag;
	b->next_seq = s->head_seq;
	b->next = s->subs;
	s->subs = b;
	*out = b;
	return WEFT_OK;
}

static weft_err
bcast_recv_internal(struct weft_bcast *b, weft_payload *out)
{
	struct weft_stream *s = b->s;
	struct weft_ctx *c = s->ctx;

	*out = (weft_payload){0};
	for (;;) {
		uint64_t oldest = s->head_seq > s->ring_cap
			                  ? s->head_seq - s->ring_cap
			                  : 0;
		if (b->next_seq < oldest) {
			b->next_seq = oldest;
			if (b->raise_on_lag)
				return fail(WEFT_ELAGGED, WEFT_ERRKIND_RUNTIME,
				            "Lagged",
				            "the subscriber fell behind");
		}
		if (b->next_seq < s->head_seq) {
			weft_msg *m = s->ring[b->next_seq % s->ring_cap];
			b->next_seq++;
			weft_msg *copy = weft_msg_new(WEFT__MSG_YIELD, m->size);
			if (copy == NULL)
				return WEFT_ENOMEM;
			memcpy(weft_msg_data(copy), weft_msg_data(m), m->size);
			payload_of(copy, out, true);
			return WEFT_OK;
		}
		if (s->bcast_eoc) {
			if (s->bcast_end_rc == WEFT_EREMOTE && c->remote_error)
				return raise_remote(c);
			return fail(WEFT_EEOC, WEFT_ERRKIND_RUNTIME,
			            "EndOfChannel", "end of stream");
		}
		/* Pull the next item from the context for everyone. */
		weft_msg *m;
		weft_err rc;
		if (next_item(c, &m, &rc)) {
			uint64_t slot = s->head_seq % s->ring_cap;
			weft_msg_free(s->ring[slot]);
			s->ring[slot] = m;
			s->head_seq++;
			for (struct weft_bcast *o = s->subs; o; o = o->next)
				if (o != b && o->waiter)
					weft__task_wake(o->waiter, WEFT_OK);
			continue;
		}
		if (rc != WEFT_OK) {
			s->bcast_eoc = true;
			s->bcast_end_rc = rc;
			for (struct weft_bcast *o = s->subs; o; o = o->next)
				if (o != b && o->waiter)
					weft__task_wake(o->waiter, WEFT_OK);
			return rc;
		}
		struct weft__task *t = weft__task_current();
		b->waiter = t;
		rc = weft__task_block(t, c, 0, false);
		b->waiter = NULL;
		if (rc != WEFT_OK)
			return rc;
	}
}

weft_err
weft_bcast_recv(weft_bcast *b, weft_payload *out)
{
	if (weft__task_current() == NULL)
		return WEFT_ESTATE;
	return bcast_recv_internal(b, out);
}

void
weft_bcast_close(weft_bcast *b)
{
	struct weft_stream *s = b->s;
	struct weft_bcast **pp = &s->subs;
	while (*pp && *pp != b)
		pp = &(*pp)->next;
	if (*pp)
		*pp = b->next;
	free(b);
}

void
weft__msg_dispose_at_exit(struct weft__actor *a, weft_msg *m)
{
	weft_runtime *rt = a->rt;
	weft_aid self = weft__actor_aid(a);

	switch (m->type) {
	case WEFT__MSG_START: {
		weft_error *e = weft_error_new(
			WEFT_ERRKIND_TRANSPORT_CLOSED, NULL, &a->uid,
			"actor %s exited before it ran the call", a->uid.name);
		weft_msg *r = e ? weft_msg_new(WEFT__MSG_ERROR, sizeof(e)) : NULL;
		if (r) {
			weft__error_set_cid(e, m->word);
			r->word = m->word;
			r->from = self;
			memcpy(weft_msg_data(r), &e, sizeof(e));
			weft__send_sys(rt, m->from, r);
		} else {
			weft_error_release(e);
		}
		break;
	}
	case WEFT__MSG_CANCEL:
	case WEFT__MSG_ACTOR_CANCEL: {
		weft_msg *r = weft_msg_new(m->type == WEFT__MSG_CANCEL
		                                   ? WEFT__MSG_CANCEL_ACK
		                                   : WEFT__MSG_ACTOR_CANCEL_ACK,
		                           0);
		if (r) {
			r->word = m->word;
			r->from = self;
			weft__send_sys(rt, m->from, r);
		}
		break;
	}
	default:
		break;
	}
	weft__msg_dispose(m);
}

/* runtime/net.c - the transport: runtimes of different processes talking
 * docs/protocol.md over TCP (weft/net.h).
 *
 * Threads. One I/O thread per runtime runs a libuv loop and owns every
 * libuv handle, the connection list and each connection's proxy map.
 * Workers never call libuv: they hand work over through the command queue
 * or a connection's output queue and wake the loop with uv_async_send.
 *
 * Proxies. A remote actor is a local proxy actor (actor.c's proxy_fn):
 * messages sent to it are encoded, in its own turn, into a chunk of frames
 * that goes on its connection's output queue at the end of the turn; the
 * I/O thread writes every queued chunk with one uv_write (writev). Frames
 * read from the socket are decoded on the I/O thread and sent to their
 * local actor with `from` set to the sender's proxy, so the context layer
 * cannot tell a remote peer from a local one.
 *
 * Context ids. A local context is keyed by (peer aid, cid). The cids this
 * process opens come from context.c's counter (below 2^49); contexts a
 * peer opens are given local cid = wire cid ^ 2^63, so the two never meet
 * however the peer picks its cids, and the top bit says which side we are
 * (SIDE_CALLEE when we send on such a cid).
 *
 * Failure. When a connection ends, each proxy sends PEER_GONE to every
 * local actor that talked through it (after everything already received,
 * FIFO), and is killed; context.c ends those contexts (weft__ctx_peer_gone)
 * and the proxy's queued requests are answered at its exit. */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "proto/codec.h"
#include "proto/item.h"
#include "runtime/host.h"
#include "runtime/net.h"

#define PEER_OPENED (1ull << 63)
#define CHUNK_SIZE (64u * 1024u)
#define READ_BUF (64u * 1024u)
#define ACCEPT_HELLO_MS 10000u
#define MAX_LISTEN 4

/* ------------------------------------------------------------------ types */

struct chunk {
	struct chunk *next;
	size_t len, cap;
	uint32_t frames;
	uint8_t data[];
};

enum conn_state {
	CONN_CONNECTING, /* dialer: resolving / connecting */
	CONN_HELLO_SENT, /* dialer: waiting for the acceptor's hello */
	CONN_AWAIT_HELLO, /* acceptor: waiting for the dialer's hello */
	CONN_OPEN,
	CONN_CLOSING, /* flushing a last frame, then closing */
	CONN_CLOSED,
};

struct connect_req;

struct proxy {
	struct weft__conn *conn;
	uint64_t remote_id;
	weft_aid aid;
	weft_uid uid;
	_Atomic int refs; /* the actor, the connection's map */
	/* Local actors that talked through it (told PEER_GONE). */
	pthread_mutex_t lock;
	uint64_t *locals;
	size_t nlocals, cap;
	uint64_t last_out; /* proxy turn's cache */
	uint64_t last_in;  /* I/O thread's cache */
	struct chunk *cur; /* frames encoded in this turn */
	struct proxy *next; /* in the connection's list (I/O thread) */
	weft_runtime *rt;
	/* Its connection ended (under lock): why, for the PEER_GONE its exit
	 * sends. */
	bool gone;
	char gone_why[160];
};

struct weft__conn {
	struct weft__net *net;
	uv_tcp_t tcp;
	uv_timer_t hs_timer;
	_Atomic int refs; /* the I/O thread until closed, each proxy */
	enum conn_state state;
	bool dialer;
	_Atomic bool dead;
	char host[256];
	uint16_t port;
	struct addrinfo *ai, *ai_next;
	struct addrinfo *literal; /* an IP literal's address (our malloc) */
	bool retrying; /* tcp is closing, to connect again on a new handle */

	weft_frame_decoder dec;
	uint8_t *rbuf;
	bool reading_into_body;

	weft_uid peer_uid;
	uint32_t peer_hb_ms;
	_Atomic uint32_t peer_limit; /* largest envelope we may send */
	uint32_t npeer_addrs;
	struct { char host[256]; uint16_t port; } peer_addrs[4];
	uint64_t last_rx, last_tx;
	uint64_t ping_nonce;

	/* output: chunks from proxies and the I/O thread */
	pthread_mutex_t out_lock;
	struct chunk *out_head, *out_tail;
	_Atomic size_t out_bytes;
	size_t queue_max; /* opts.send_queue_max, kept here: proxies may
	                   * outlive the net struct */
	size_t writes_in_flight;
	/* Direct writes: a proxy whose turn ends while the connection has
	 * nothing queued or in flight writes its chunk to the socket itself
	 * (non-blocking), saving the wake-up of the I/O thread. Under
	 * out_lock: the socket, whether direct writes are allowed, one in
	 * progress, uv_writes in flight. */
	int fd;
	bool direct_ok, direct_busy;
	size_t io_inflight;
	_Atomic uint64_t direct_tx_ns;

	struct proxy *proxies; /* I/O thread */
	struct proxy *last_proxy;
	uint64_t last_to; /* the last local target found not to be a proxy */
	struct connect_req *waiters;
	struct weft__conn *next;
	char close_why[160];
	/* called once when it ends (a child process watching its parent) */
	void (*on_end)(void *arg);
	void *on_end_arg;
	bool is_child;         /* the peer is a child process we spawned */
	bool peer_registrar;   /* its hello said is_registrar */
	struct reg_req *reg_pending; /* our registry requests on it */
	bool spec_received;    /* child side: the parent's spawn_spec came */
};

/* A spawned child process's connection, awaited by its spawner. */
struct weft__expect {
	_Atomic int refs;
	uint8_t uuid[16];
	struct weft__event *ev;
	weft_err rc;
	weft_aid aid;
	struct weft__expect *next;
};

struct connect_req {
	_Atomic int refs;
	char host[256];
	uint16_t port;
	uint64_t actor_id;
	struct weft__event *ev;
	/* results */
	weft_err rc;
	weft_aid aid;
	char why[256];
	int refusal_kind;
	struct connect_req *next;
};

/* ---- registry types ---- */

struct reg_entry {
	weft_v1_Registration reg;
	struct weft__conn *conn; /* the process that registered it; NULL:
	                          * this one */
	struct reg_entry *next;
};

/* A find that waits for a name, on the registrar. */
struct reg_wait {
	char name[WEFT_NAME_MAX];
	struct weft__conn *conn; /* a remote requester; NULL: local */
	uint64_t cid, from_actor;
	struct reg_req *local;   /* a local requester */
	struct reg_wait *next;
};

enum reg_op { REG_REGISTER, REG_UNREGISTER, REG_FIND };

/* A registry request from this process: made by the caller, answered on
 * the I/O thread. Two references: the caller's and the I/O thread's. */
struct reg_req {
	_Atomic int refs;
	enum reg_op op;
	weft_v1_Registration reg;    /* REGISTER; uid for UNREGISTER */
	char name[WEFT_NAME_MAX];    /* FIND */
	bool wait;
	struct weft__conn *conn;     /* to the registrar; NULL if we are it */
	uint64_t cid;
	struct weft__event *ev;
	weft_err rc;
	char why[160];
	size_t nfound;
	weft_v1_Registration found[16];
	struct reg_req *next;        /* in conn->reg_pending */
};

enum cmd_kind { CMD_CONNECT, CMD_LISTEN, CMD_STOP, CMD_EXPECT, CMD_REGISTRY };

struct cmd {
	enum cmd_kind kind;
	struct cmd *next;
	struct connect_req *req;       /* CONNECT */
	struct weft__expect *expect;   /* EXPECT */
	struct reg_req *rreq;          /* REGISTRY */
	/* LISTEN */
	char host[256];
	uint16_t port;
	uint16_t *bound;
	weft_err *rc;
	struct weft__event *ev;
};

struct weft__net {
	weft_runtime *rt;
	weft_net_opts opts;
	uint8_t token[WEFT_WIRE_TOKEN_MAX];
	weft_uid proc_uid;
	_Atomic uint64_t primary;

	uv_loop_t loop;
	uv_async_t async;
	uv_timer_t tick;
	pthread_t thread;
	bool stopping;

	pthread_mutex_t lock; /* cmds */
	struct cmd *cmds;

	uv_tcp_t listeners[MAX_LISTEN];
	size_t nlisten;
	struct { char host[256]; uint16_t port; } listen_addrs[MAX_LISTEN];

	struct weft__conn *conns; /* I/O thread */
	struct weft__expect *expects; /* I/O thread */

	/* The registry (docs/protocol.md §7.5). */
	_Atomic bool is_registrar;
	char reg_host[256];   /* where the registrar is (under lock) */
	uint16_t reg_port;
	struct reg_entry *regs;    /* registrar: the table (I/O thread) */
	struct reg_wait *reg_waits; /* registrar: withheld finds */
	_Atomic uint64_t reg_cid;
	_Atomic uint64_t reg_aid; /* a client: the registrar's proxy */

	struct {
		_Atomic uint64_t open, accepted, dialed, refused, proto,
			hb_timeouts, frames_in, frames_out, bytes_in,
			bytes_out;
	} st;
};

/* ------------------------------------------------------------- utilities */

static void
uid_to_wire(const weft_uid *u, weft_v1_ActorUid *w)
{
	memcpy(w->name, u->name, sizeof(w->name));
	w->name[sizeof(w->name) - 1] = 0;
	if (w->name[0] == 0)
		strcpy(w->name, "anon");
	memcpy(w->uuid, u->uuid, sizeof(w->uuid));
}

static void
uid_from_wire(const weft_v1_ActorUid *w, weft_uid *u)
{
	memset(u, 0, sizeof(*u));
	memcpy(u->name, w->name, sizeof(u->name) - 1);
	memcpy(u->uuid, w->uuid, sizeof(u->uuid));
}

static void
conn_hold(struct weft__conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void
weft__net_conn_rele(struct weft__conn *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1,
	                                   memory_order_acq_rel) == 1) {
		struct chunk *k = c->out_head;
		while (k) {
			struct chunk *n = k->next;
			free(k);
			k = n;
		}
		weft_frame_decoder_fini(&c->dec);
		pthread_mutex_destroy(&c->out_lock);
		free(c->rbuf);
		free(c);
	}
}

static void
proxy_rele(struct proxy *p)
{
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) ==
	    1) {
		free(p->cur);
		free(p->locals);
		pthread_mutex_destroy(&p->lock);
		weft__net_conn_rele(p->conn);
		free(p);
	}
}

static void
req_rele(struct connect_req *r)
{
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
		free(r);
}

static void
expect_rele(struct weft__expect *x)
{
	if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1)
		free(x);
}

/* An event that was made but never waited for or completed. */
static void
event_discard(struct weft__event *ev)
{
	if (ev) {
		weft__event_rele(ev); /* the completer's */
		weft__event_rele(ev); /* the waiter's */
	}
}

static void
wake_loop(struct weft__net *n)
{
	uv_async_send(&n->async);
}

/* Remembers that local actor `local` talks through p. */
static void
proxy_note_local(struct proxy *p, uint64_t local, uint64_t *cache)
{
	if (*cache == local)
		return;
	*cache = local;
	pthread_mutex_lock(&p->lock);
	for (size_t i = 0; i < p->nlocals; i++)
		if (p->locals[i] == local) {
			pthread_mutex_unlock(&p->lock);
			return;
		}
	if (p->nlocals == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 8;
		uint64_t *l = realloc(p->locals, cap * sizeof(*l));
		if (l == NULL) {
			pthread_mutex_unlock(&p->lock);
			*cache = 0;
			return;
		}
		p->locals = l;
		p->cap = cap;
	}
	p->locals[p->nlocals++] = local;
	pthread_mutex_unlock(&p->lock);
}

/* ------------------------------------------------------------ output */

/* Appends a chunk to c's output queue; false if the connection is dead
 * (the chunk is freed). Any thread. */
static bool
out_push(struct weft__conn *c, struct chunk *k)
{
	pthread_mutex_lock(&c->out_lock);
	if (atomic_load_explicit(&c->dead, memory_order_relaxed)) {
		pthread_mutex_unlock(&c->out_lock);
		free(k);
		return false;
	}
	k->next = NULL;
	if (c->out_tail)
		c->out_tail->next = k;
	else
		c->out_head = k;
	c->out_tail = k;
	atomic_fetch_add_explicit(&c->out_bytes, k->len, memory_order_relaxed);
	pthread_mutex_unlock(&c->out_lock);
	return true;
}

static struct chunk *
chunk_new(size_t cap)
{
	struct chunk *k = malloc(sizeof(*k) + cap);
	if (k) {
		k->next = NULL;
		k->len = 0;
		k->cap = cap;
		k->frames = 0;
	}
	return k;
}

/* Encodes env as one frame at the end of *kp (a new chunk when it does not
 * fit; the full one is pushed to c). `limit`: the peer's envelope limit. */
static weft_err
encode_into(struct weft__conn *c, struct chunk **kp,
            const weft_v1_Envelope *env, size_t limit)
{
	/* At most: push the partly full chunk, try a fresh one, make one
	 * the frame's own size. */
	for (int attempt = 0; attempt < 3; attempt++) {
		struct chunk *k = *kp;
		if (k == NULL || k->cap - k->len < 64) {
			if (k)
				out_push(c, k);
			*kp = k = chunk_new(CHUNK_SIZE);
			if (k == NULL)
				return WEFT_ENOMEM;
		}
		size_t room = k->cap - k->len - WEFT_FRAME_HEADER;
		if (room > limit)
			room = limit;
		size_t len = 0;
		weft_err rc = weft_wire_encode_msg(
			weft_v1_Envelope_fields, env,
			k->data + k->len + WEFT_FRAME_HEADER, room, &len);
		if (rc == WEFT_OK) {
			weft_frame_put_header(k->data + k->len, (uint32_t)len);
			k->len += WEFT_FRAME_HEADER + len;
			k->frames++;
			return WEFT_OK;
		}
		if (rc != WEFT_EMSGSIZE)
			return rc;
		if (room == limit)
			return WEFT_EMSGSIZE; /* over the peer's limit */
		if (k->len == 0) {
			/* Larger than a chunk: a chunk of its own. */
			size_t need = (size_t)limit + WEFT_FRAME_HEADER;
			struct chunk *big = chunk_new(need);
			if (big == NULL)
				return WEFT_ENOMEM;
			free(k);
			*kp = big;
			continue;
		}
		out_push(c, k);
		*kp = NULL;
	}
	return WEFT_EMSGSIZE;
}

/* I/O thread: queue one control frame. */
static void
send_env(struct weft__conn *c, const weft_v1_Envelope *env)
{
	struct chunk *k = NULL;
	uint32_t limit = c->state == CONN_OPEN
	                         ? atomic_load(&c->peer_limit)
	                         : WEFT_FRAME_LIMIT_HANDSHAKE;
	if (encode_into(c, &k, env, limit) != WEFT_OK) {
		free(k);
		return;
	}
	if (k)
		out_push(c, k);
}

static void flush(struct weft__conn *c);

/* ------------------------------------------------------- errors on wire */

struct err_buf {
	uint8_t *bufs[WEFT_SLICE_LIST_MAX * 4];
	size_t n;
};

static void
err_buf_free(struct err_buf *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->bufs[i]);
	b->n = 0;
}

static void
error_to_wire(const weft_error *e, weft_v1_Error *w, struct err_buf *b,
              int depth)
{
	memset(w, 0, sizeof(*w));
	w->kind = (weft_v1_ErrorKind)e->kind;
	snprintf(w->src_type, sizeof(w->src_type), "%s",
	         e->src_type ? e->src_type : "");
	snprintf(w->boxed_type, sizeof(w->boxed_type), "%s",
	         e->boxed_type ? e->boxed_type : "");
	if (e->message)
		w->message = (weft_slice){(const uint8_t *)e->message,
		                          strlen(e->message)};
	if (e->traceback)
		w->traceback = (weft_slice){(const uint8_t *)e->traceback,
		                            strlen(e->traceback)};
	if (e->has_src) {
		w->has_src_uid = true;
		uid_to_wire(&e->src, &w->src_uid);
	}
	/* At most 16 hops: the first and the 15 most recent. */
	size_t n = e->nrelay, skip = n > 16 ? n - 16 : 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && i <= skip)
			continue;
		uid_to_wire(&e->relay[i], &w->relay_path[w->relay_path_count++]);
	}
	if (e->has_canceller) {
		w->has_canceller = true;
		uid_to_wire(&e->canceller, &w->canceller);
	}
	if (e->has_sender) {
		w->has_sender = true;
		uid_to_wire(&e->sender, &w->sender);
	}
	for (size_t i = 0; i < e->ngroup && i < WEFT_SLICE_LIST_MAX &&
	                   depth < 4 && b->n < sizeof(b->bufs) / sizeof(b->bufs[0]);
	     i++) {
		weft_v1_Error *sub = malloc(sizeof(*sub));
		size_t cap = 4096, len = 0;
		uint8_t *buf = malloc(cap);
		if (sub == NULL || buf == NULL) {
			free(sub);
			free(buf);
			break;
		}
		error_to_wire(e->group[i], sub, b, depth + 1);
		if (weft_wire_encode_msg(weft_v1_Error_fields, sub, buf, cap,
		                         &len) == WEFT_OK) {
			b->bufs[b->n++] = buf;
			w->members.items[w->members.n++] =
				(weft_slice){buf, len};
		} else {
			free(buf);
		}
		free(sub);
	}
}

static char *
dup_slice(weft_slice s)
{
	char *p = malloc(s.len + 1);
	if (p) {
		if (s.len)
			memcpy(p, s.ptr, s.len);
		p[s.len] = 0;
	}
	return p;
}

static weft_error *
error_from_wire(const weft_v1_Error *w, int depth)
{
	weft_error *e = weft_error_new(
		(int)w->kind >= 1 && (int)w->kind <= (int)WEFT_ERRKIND_GROUP
			? (weft_errkind)w->kind
			: WEFT_ERRKIND_APP,
		w->boxed_type[0] ? w->boxed_type : NULL, NULL, "%s", "");
	if (e == NULL)
		return NULL;
	/* Still private: fill it in. */
	free(e->src_type);
	e->src_type = strdup(w->src_type[0] ? w->src_type : e->boxed_type);
	free(e->message);
	e->message = dup_slice(w->message);
	free(e->traceback);
	e->traceback = dup_slice(w->traceback);
	if (w->has_src_uid) {
		e->has_src = true;
		uid_from_wire(&w->src_uid, &e->src);
	}
	if (w->relay_path_count) {
		e->relay = calloc(w->relay_path_count, sizeof(*e->relay));
		if (e->relay) {
			e->nrelay = w->relay_path_count;
			for (size_t i = 0; i < e->nrelay; i++)
				uid_from_wire(&w->relay_path[i], &e->relay[i]);
		}
	}
	if (w->has_canceller) {
		e->has_canceller = true;
		uid_from_wire(&w->canceller, &e->canceller);
	}
	if (w->has_sender) {
		e->has_sender = true;
		uid_from_wire(&w->sender, &e->sender);
	}
	if (w->members.n && depth < 4) {
		e->group = calloc(w->members.n, sizeof(*e->group));
		weft_v1_Error *sub = malloc(sizeof(*sub));
		for (uint32_t i = 0; e->group && sub && i < w->members.n; i++) {
			if (weft_wire_decode_error(w->members.items[i], sub) !=
			    WEFT_OK)
				continue;
			weft_error *m = error_from_wire(sub, depth + 1);
			if (m)
				e->group[e->ngroup++] = m;
		}
		free(sub);
	}
	if (e->src_type == NULL || e->message == NULL || e->traceback == NULL) {
		weft_error_release(e);
		return NULL;
	}
	return e;
}

/* ------------------------------------------------------------ proxies */

static uint64_t
wire_id_of(struct weft__net *n, weft_aid aid)
{
	return aid.id == atomic_load_explicit(&n->primary,
	                                      memory_order_relaxed)
	               ? 0
	               : aid.id;
}

/* Encodes one runtime message (host.h) for the wire. Returns false for a
 * message that has no wire form. */
static bool
msg_to_env(struct proxy *p, weft_msg *m, weft_v1_Envelope *env,
           struct err_buf *eb)
{
	struct weft__net *n = p->conn->net;
	memset(env, 0, sizeof(*env));
	env->to_actor = p->remote_id;
	env->from_actor = wire_id_of(n, m->from);
	if (m->word & PEER_OPENED) {
		env->cid = m->word ^ PEER_OPENED;
		env->side = weft_v1_Side_SIDE_CALLEE;
	} else {
		env->cid = m->word;
		env->side = weft_v1_Side_SIDE_CALLER;
	}
	const uint8_t *data = weft_msg_data(m);
	/* CANCEL and ACTOR_CANCEL carry the asking actor's uid. */
	const weft_uid *who = m->size >= sizeof(weft_uid)
	                              ? (const weft_uid *)data
	                              : &n->proc_uid;
	switch (m->type) {
	case WEFT__MSG_START: {
		struct weft__start_hdr hdr;
		if (m->size < sizeof(hdr))
			return false;
		memcpy(&hdr, data, sizeof(hdr));
		if (hdr.name_len == 0 || hdr.name_len > 255 ||
		    hdr.name_len > m->size - sizeof(hdr))
			return false;
		env->which_msg = weft_v1_Envelope_start_tag;
		weft_v1_Start *s = &env->msg.start;
		memcpy(s->func, data + sizeof(hdr), hdr.name_len);
		s->func[hdr.name_len] = 0;
		s->kind = (weft_v1_FuncKind)(hdr.kind & 0xFFu);
		size_t off = sizeof(hdr) + hdr.name_len;
		if (m->size > off) {
			s->has_args = true;
			s->args.value = (weft_slice){data + off, m->size - off};
		}
		s->has_caller = true;
		uid_to_wire(&hdr.caller, &s->caller);
		return true;
	}
	case WEFT__MSG_START_ACK:
		env->which_msg = weft_v1_Envelope_start_ack_tag;
		/* The kind echoed (context.c puts it in the ack). */
		env->msg.start_ack.kind = (weft_v1_FuncKind)(
			m->size >= 1 ? data[0] : weft_v1_FuncKind_FUNC_KIND_CONTEXT);
		return true;
	case WEFT__MSG_STARTED:
		env->which_msg = weft_v1_Envelope_started_tag;
		if (m->size) {
			env->msg.started.has_pld = true;
			env->msg.started.pld.value = (weft_slice){data, m->size};
		}
		return true;
	case WEFT__MSG_YIELD:
		env->which_msg = weft_v1_Envelope_yield_item_tag;
		if (m->size) {
			env->msg.yield_item.has_pld = true;
			env->msg.yield_item.pld.value =
				(weft_slice){data, m->size};
		}
		return true;
	case WEFT__MSG_RETURN:
		env->which_msg = weft_v1_Envelope_return_value_tag;
		if (m->size) {
			env->msg.return_value.has_pld = true;
			env->msg.return_value.pld.value =
				(weft_slice){data, m->size};
		}
		return true;
	case WEFT__MSG_STREAM_STOP:
		env->which_msg = weft_v1_Envelope_stop_tag;
		return true;
	case WEFT__MSG_ERROR: {
		weft_error *e;
		memcpy(&e, data, sizeof(e));
		env->which_msg = weft_v1_Envelope_error_tag;
		error_to_wire(e, &env->msg.error, eb, 0);
		return true;
	}
	case WEFT__MSG_CANCEL:
		env->which_msg = weft_v1_Envelope_cancel_context_tag;
		env->msg.cancel_context.has_canceller = true;
		uid_to_wire(who, &env->msg.cancel_context.canceller);
		return true;
	case WEFT__MSG_CANCEL_ACK:
	case WEFT__MSG_ACTOR_CANCEL_ACK:
		env->which_msg = weft_v1_Envelope_cancel_ack_tag;
		return true;
	case WEFT__MSG_ACTOR_CANCEL:
		env->which_msg = weft_v1_Envelope_cancel_actor_tag;
		env->msg.cancel_actor.has_requester = true;
		uid_to_wire(who, &env->msg.cancel_actor.requester);
		return true;
	default:
		return false;
	}
}

/* A message the proxy cannot send (too large, or the connection is gone):
 * answer it locally the way an exiting actor does. */
static void
proxy_refuse(struct weft__actor *a, weft_msg *m, const char *why)
{
	struct proxy *p = a->proxy;
	if (m->type == WEFT__MSG_START) {
		weft_error *e = weft_error_new(WEFT_ERRKIND_TRANSPORT_CLOSED, NULL,
		                               &p->uid, "%s", why);
		weft_msg *r = e ? weft_msg_new(WEFT__MSG_ERROR, sizeof(e)) : NULL;
		if (r) {
			r->word = m->word;
			r->from = a->proxy ? p->aid : (weft_aid){0};
			memcpy(weft_msg_data(r), &e, sizeof(e));
			weft__send_sys(a->rt, m->from, r);
		} else {
			weft_error_release(e);
		}
		weft__msg_dispose(m);
		return;
	}
	weft__msg_dispose_at_exit(a, m);
}

/* The fast path for the per-item messages (item.h): straight into the
 * turn's chunk. false: not one of them, or too large for a chunk (the
 * general path handles it, limits included). */
static bool
encode_item_msg(struct proxy *p, weft_msg *m)
{
	struct weft__conn *c = p->conn;
	weft_wire_item it;
	const uint8_t *data = weft_msg_data(m);
	memset(&it, 0, sizeof(it));
	switch (m->type) {
	case WEFT__MSG_YIELD:
		it.which = weft_v1_Envelope_yield_item_tag;
		break;
	case WEFT__MSG_STARTED:
		it.which = weft_v1_Envelope_started_tag;
		break;
	case WEFT__MSG_RETURN:
		it.which = weft_v1_Envelope_return_value_tag;
		break;
	case WEFT__MSG_STREAM_STOP:
		it.which = weft_v1_Envelope_stop_tag;
		break;
	case WEFT__MSG_CANCEL_ACK:
	case WEFT__MSG_ACTOR_CANCEL_ACK:
		it.which = weft_v1_Envelope_cancel_ack_tag;
		break;
	case WEFT__MSG_START_ACK:
		it.which = weft_v1_Envelope_start_ack_tag;
		it.ack_kind = m->size >= 1 ? data[0] : 0;
		if (it.ack_kind != 1 && it.ack_kind != 2)
			return false;
		break;
	default:
		return false;
	}
	if (m->type == WEFT__MSG_YIELD || m->type == WEFT__MSG_STARTED ||
	    m->type == WEFT__MSG_RETURN) {
		it.pld = data;
		it.pld_len = m->size;
	}
	size_t need = (size_t)m->size + WEFT_WIRE_ITEM_OVERHEAD;
	if (need + WEFT_FRAME_HEADER > CHUNK_SIZE ||
	    need > atomic_load_explicit(&c->peer_limit, memory_order_relaxed))
		return false;
	if (m->word & PEER_OPENED) {
		it.cid = m->word ^ PEER_OPENED;
		it.side = weft_v1_Side_SIDE_CALLEE;
	} else {
		it.cid = m->word;
		it.side = weft_v1_Side_SIDE_CALLER;
	}
	it.to_actor = p->remote_id;
	it.from_actor = wire_id_of(c->net, m->from);
	struct chunk *k = p->cur;
	if (k == NULL || k->cap - k->len < need + WEFT_FRAME_HEADER) {
		if (k)
			out_push(c, k);
		p->cur = k = chunk_new(CHUNK_SIZE);
		if (k == NULL)
			return false;
	}
	size_t n = weft_wire_item_encode(&it, k->data + k->len + WEFT_FRAME_HEADER,
	                                 k->cap - k->len - WEFT_FRAME_HEADER);
	if (n == 0)
		return false;
	weft_frame_put_header(k->data + k->len, (uint32_t)n);
	k->len += WEFT_FRAME_HEADER + n;
	k->frames++;
	return true;
}

/* Writes k to the socket from this (worker) thread when nothing else is
 * queued or being written: one syscall instead of a wake-up of the I/O
 * thread and its syscall. A partial write leaves the rest at the head of
 * the queue for the I/O thread. true: k was taken. */
static bool
try_direct(struct weft__conn *c, struct chunk *k)
{
	pthread_mutex_lock(&c->out_lock);
	bool go = c->direct_ok && !c->direct_busy && c->out_head == NULL &&
	          c->io_inflight == 0;
	if (go)
		c->direct_busy = true;
	pthread_mutex_unlock(&c->out_lock);
	if (!go)
		return false;
	ssize_t n = send(c->fd, k->data, k->len, MSG_DONTWAIT | MSG_NOSIGNAL);
	size_t done = n > 0 ? (size_t)n : 0;
	atomic_store_explicit(&c->direct_tx_ns, weft__now_ns(),
	                      memory_order_relaxed);
	atomic_fetch_add_explicit(&c->net->st.frames_out,
	                          done == k->len ? k->frames : 0,
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&c->net->st.bytes_out, done,
	                          memory_order_relaxed);
	pthread_mutex_lock(&c->out_lock);
	c->direct_busy = false;
	bool more = c->out_head != NULL;
	if (done < k->len && !atomic_load(&c->dead)) {
		/* The rest goes first, before anything queued meanwhile. */
		memmove(k->data, k->data + done, k->len - done);
		k->len -= done;
		k->next = c->out_head;
		c->out_head = k;
		if (c->out_tail == NULL)
			c->out_tail = k;
		atomic_fetch_add_explicit(&c->out_bytes, k->len,
		                          memory_order_relaxed);
		k = NULL;
		more = true;
	}
	pthread_mutex_unlock(&c->out_lock);
	free(k);
	if (more)
		wake_loop(c->net);
	return true;
}

static void
proxy_turn(struct weft__actor *a, weft_msg *m)
{
	struct proxy *p = a->proxy;
	struct weft__conn *c = p->conn;

	if (m == NULL) {
		if (p->cur && p->cur->len) {
			struct chunk *k = p->cur;
			p->cur = NULL;
			if (!try_direct(c, k) && out_push(c, k))
				wake_loop(c->net);
		}
		return;
	}
	if (m->type < WEFT_MSG_TYPE_RESERVED) {
		/* A user message has no wire form. */
		weft_msg_free(m);
		return;
	}
	if (m->from.id)
		proxy_note_local(p, m->from.id, &p->last_out);
	if (atomic_load_explicit(&c->dead, memory_order_acquire)) {
		proxy_refuse(a, m, c->close_why[0] ? c->close_why
		                                   : "connection closed");
		return;
	}
	if (encode_item_msg(p, m)) {
		weft__msg_dispose(m);
		return;
	}
	weft_v1_Envelope env;
	struct err_buf eb = {.n = 0};
	if (!msg_to_env(p, m, &env, &eb)) {
		weft__msg_dispose(m);
		return;
	}
	weft_err rc = encode_into(c, &p->cur, &env,
	                          atomic_load(&c->peer_limit));
	err_buf_free(&eb);
	if (rc == WEFT_EMSGSIZE && m->type == WEFT__MSG_RETURN) {
		/* The result does not fit: the caller gets an error instead,
		 * so the context still ends. */
		weft_error *e = weft_error_new(
			WEFT_ERRKIND_RUNTIME, NULL, NULL,
			"the result (%u bytes) exceeds the peer's frame limit",
			m->size);
		if (e) {
			memset(&env.msg, 0, sizeof(env.msg));
			env.which_msg = weft_v1_Envelope_error_tag;
			error_to_wire(e, &env.msg.error, &eb, 0);
			encode_into(c, &p->cur, &env, atomic_load(&c->peer_limit));
			err_buf_free(&eb);
			weft_error_release(e);
		}
	} else if (rc != WEFT_OK) {
		char why[128];
		snprintf(why, sizeof(why), "cannot send %u bytes to %s: %s",
		         m->size, p->uid.name, weft_strerror(rc));
		WEFT_LOG(WEFT_LOG_WARNING, "%s", why);
		proxy_refuse(a, m, why);
		return;
	}
	weft__msg_dispose(m);
}

/* The proxy's last act (on a worker, after it closed): if its
 * connection ended, every local actor that talked through it gets
 * PEER_GONE, after everything the I/O thread delivered before the end
 * (that happened before the kill that led here). */
static void
proxy_exit(weft_aid self, void *state, weft_exit_reason why)
{
	(void)why;
	struct proxy *p = state;
	struct weft__conn *c = p->conn;
	pthread_mutex_lock(&p->lock);
	if (p->gone && p->nlocals) {
		char uid[WEFT_NAME_MAX + 16];
		weft_uid_format(&p->uid, uid, sizeof(uid));
		weft_error *e = weft_error_new(
			WEFT_ERRKIND_TRANSPORT_CLOSED, NULL, &p->uid,
			"the connection to peer %s (%s:%u) closed: %s", uid,
			c->host, (unsigned)c->port, p->gone_why);
		for (size_t i = 0; e && i < p->nlocals; i++) {
			weft_error *held = weft_error_hold(e);
			weft_msg *m = weft_msg_new(WEFT__MSG_PEER_GONE,
			                           sizeof(held));
			if (m == NULL) {
				weft_error_release(held);
				continue;
			}
			m->from = self;
			memcpy(weft_msg_data(m), &held, sizeof(held));
			weft__send_sys(p->rt, (weft_aid){p->locals[i]}, m);
		}
		weft_error_release(e);
	}
	pthread_mutex_unlock(&p->lock);
	proxy_rele(p);
}

/* I/O thread: the proxy for the peer's actor `id`, made on first use. */
static struct proxy *
proxy_get(struct weft__conn *c, uint64_t id, const weft_v1_ActorUid *hint)
{
	if (c->last_proxy && c->last_proxy->remote_id == id)
		return c->last_proxy;
	for (struct proxy *p = c->proxies; p; p = p->next)
		if (p->remote_id == id) {
			c->last_proxy = p;
			return p;
		}
	struct proxy *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->conn = c;
	p->rt = c->net->rt;
	p->remote_id = id;
	if (id == 0)
		p->uid = c->peer_uid;
	else if (hint)
		uid_from_wire(hint, &p->uid);
	else
		snprintf(p->uid.name, sizeof(p->uid.name), "remote-%llx",
		         (unsigned long long)(id & 0xFFFFFFFFu));
	pthread_mutex_init(&p->lock, NULL);
	atomic_init(&p->refs, 2);
	conn_hold(c);
	if (weft__spawn_proxy(c->net->rt, &p->uid, proxy_turn, p, proxy_exit,
	                      &p->aid) != WEFT_OK) {
		atomic_store(&p->refs, 1);
		proxy_rele(p);
		return NULL;
	}
	p->next = c->proxies;
	c->proxies = p;
	c->last_proxy = p;
	return p;
}

/* ------------------------------------------------------ conn lifecycle */

static void registry_conn_end(struct weft__conn *c, const char *why);

static void on_hs_timeout(uv_timer_t *t);

static void
on_closed(uv_handle_t *h)
{
	struct weft__conn *c = h->data;
	weft__net_conn_rele(c); /* the I/O thread's */
}

static void
on_hs_timer_closed(uv_handle_t *h)
{
	struct weft__conn *c = h->data;
	if (c->ai) {
		uv_freeaddrinfo(c->ai);
		c->ai = c->ai_next = NULL;
	}
	free(c->literal);
	c->literal = NULL;
	c->ai_next = NULL;
	if (c->retrying)
		return; /* on_retry_closed releases */
	uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void
fail_waiters(struct weft__conn *c, weft_err rc, int kind, const char *why)
{
	struct connect_req *r;
	while ((r = c->waiters) != NULL) {
		c->waiters = r->next;
		r->rc = rc;
		r->refusal_kind = kind;
		snprintf(r->why, sizeof(r->why), "%s", why);
		weft__event_complete(r->ev, WEFT_OK);
		req_rele(r);
	}
}

static void
unlink_conn(struct weft__conn *c)
{
	struct weft__conn **pp = &c->net->conns;
	while (*pp && *pp != c)
		pp = &(*pp)->next;
	if (*pp)
		*pp = c->next;
}

/* Ends the connection: every context over it ends (PEER_GONE), its
 * proxies go, waiters fail. `flush_first`: write what is queued (a last
 * error or bye frame) before closing. I/O thread. */
static void
conn_end(struct weft__conn *c, const char *why, bool flush_first)
{
	if (c->state == CONN_CLOSED || c->state == CONN_CLOSING)
		return;
	struct weft__net *n = c->net;
	bool was_open = c->state == CONN_OPEN;
	snprintf(c->close_why, sizeof(c->close_why), "%s", why);
	if (was_open)
		atomic_fetch_sub(&n->st.open, 1);
	bool graceful = n->stopping || strcmp(why, "the peer said bye") == 0;
	WEFT_LOG(was_open && !graceful ? WEFT_LOG_WARNING : WEFT_LOG_INFO,
	         "connection to %s (%s:%u) ends: %s",
	         c->peer_uid.name[0] ? c->peer_uid.name : "?", c->host,
	         (unsigned)c->port, why);
	fail_waiters(c, WEFT_ECLOSED, 0, why);

	/* After this no proxy queues anything (out_push refuses). */
	pthread_mutex_lock(&c->out_lock);
	atomic_store_explicit(&c->dead, true, memory_order_release);
	c->direct_ok = false;
	/* A direct write in progress uses the socket: it must be done
	 * before the socket is closed (and its number reused). It does not
	 * block, so this wait is short. */
	while (c->direct_busy) {
		pthread_mutex_unlock(&c->out_lock);
		sched_yield();
		pthread_mutex_lock(&c->out_lock);
	}
	void (*on_end)(void *) = c->on_end;
	c->on_end = NULL;
	pthread_mutex_unlock(&c->out_lock);
	if (on_end)
		on_end(c->on_end_arg);

	/* Each proxy exits; its exit tells the local actors that used it
	 * (proxy_exit), so that whoever learns of the end (a nursery
	 * waiting for a child process) finds the proxy already closed. */
	struct proxy *p;
	while ((p = c->proxies) != NULL) {
		c->proxies = p->next;
		pthread_mutex_lock(&p->lock);
		p->gone = true;
		snprintf(p->gone_why, sizeof(p->gone_why), "%s", why);
		pthread_mutex_unlock(&p->lock);
		weft__actor_kill(n->rt, p->aid);
		proxy_rele(p); /* the map's */
	}
	c->last_proxy = NULL;
	registry_conn_end(c, why);
	unlink_conn(c);

	if (flush_first && c->state != CONN_CONNECTING) {
		c->state = CONN_CLOSING;
		flush(c); /* closes when the writes are done */
		if (c->writes_in_flight == 0) {
			c->state = CONN_CLOSED;
			uv_close((uv_handle_t *)&c->hs_timer, on_hs_timer_closed);
		} else {
			/* A peer that does not read cannot hold us open. */
			uv_timer_start(&c->hs_timer, on_hs_timeout, 1000, 0);
		}
		return;
	}
	c->state = CONN_CLOSED;
	uv_close((uv_handle_t *)&c->hs_timer, on_hs_timer_closed);
}

/* A protocol error: tell the peer (unless it never spoke weft), close. */
static void
conn_protocol_error(struct weft__conn *c, weft_v1_ErrorKind kind,
                    const char *why, const uint8_t *bad, size_t bad_len,
                    bool tell)
{
	struct weft__net *n = c->net;
	atomic_fetch_add(&n->st.proto, 1);
	if (tell) {
		weft_v1_Envelope env;
		memset(&env, 0, sizeof(env));
		env.which_msg = weft_v1_Envelope_error_tag;
		weft_v1_Error *e = &env.msg.error;
		e->kind = kind;
		snprintf(e->src_type, sizeof(e->src_type), "%s",
		         kind == weft_v1_ErrorKind_ERROR_KIND_FRAME_TOO_LARGE
		                 ? "FrameTooLarge"
		                 : "ProtocolError");
		memcpy(e->boxed_type, e->src_type, sizeof(e->src_type));
		e->message = (weft_slice){(const uint8_t *)why, strlen(why)};
		e->has_src_uid = true;
		uid_to_wire(&n->proc_uid, &e->src_uid);
		if (bad && bad_len)
			e->bad_msg = (weft_slice){
				bad, bad_len > WEFT_WIRE_BAD_MSG_MAX
				             ? WEFT_WIRE_BAD_MSG_MAX
				             : bad_len};
		send_env(c, &env);
	}
	char msg[200];
	snprintf(msg, sizeof(msg), "protocol error: %s", why);
	conn_end(c, msg, tell);
}

/* ------------------------------------------------------------ writing */

struct write_req {
	uv_write_t req;
	struct weft__conn *conn;
	struct chunk *chunks;
	size_t bytes;
	uv_buf_t bufs[];
};

static void
on_write(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct weft__conn *c = w->conn;
	struct chunk *k = w->chunks;
	while (k) {
		struct chunk *nx = k->next;
		free(k);
		k = nx;
	}
	atomic_fetch_sub_explicit(&c->out_bytes, w->bytes,
	                          memory_order_relaxed);
	atomic_fetch_add(&c->net->st.bytes_out, w->bytes);
	free(w);
	c->writes_in_flight--;
	pthread_mutex_lock(&c->out_lock);
	c->io_inflight--;
	pthread_mutex_unlock(&c->out_lock);
	if (status < 0 && status != UV_ECANCELED)
		conn_end(c, uv_strerror(status), false);
	if (c->state == CONN_CLOSING && c->writes_in_flight == 0) {
		c->state = CONN_CLOSED;
		uv_close((uv_handle_t *)&c->hs_timer, on_hs_timer_closed);
	}
}

/* I/O thread: writes every queued chunk with one uv_write. */
static void
flush(struct weft__conn *c)
{
	if (c->state == CONN_CLOSED || c->state == CONN_CONNECTING)
		return;
	pthread_mutex_lock(&c->out_lock);
	if (c->direct_busy) {
		/* The direct writer kicks us again when it is done. */
		pthread_mutex_unlock(&c->out_lock);
		return;
	}
	struct chunk *head = c->out_head;
	c->out_head = c->out_tail = NULL;
	if (head)
		c->io_inflight++;
	pthread_mutex_unlock(&c->out_lock);
	if (head == NULL)
		return;
	size_t n = 0, bytes = 0, frames = 0;
	for (struct chunk *k = head; k; k = k->next) {
		n++;
		bytes += k->len;
		frames += k->frames;
	}
	atomic_fetch_add_explicit(&c->net->st.frames_out, frames,
	                          memory_order_relaxed);
	struct write_req *w = malloc(sizeof(*w) + n * sizeof(uv_buf_t));
	if (w == NULL) {
		pthread_mutex_lock(&c->out_lock);
		c->io_inflight--;
		pthread_mutex_unlock(&c->out_lock);
		conn_end(c, "out of memory", false);
		return;
	}
	w->conn = c;
	w->chunks = head;
	w->bytes = bytes;
	size_t i = 0;
	for (struct chunk *k = head; k; k = k->next)
		w->bufs[i++] = uv_buf_init((char *)k->data, (unsigned)k->len);
	c->writes_in_flight++;
	c->last_tx = uv_now(&c->net->loop);
	int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, w->bufs,
	                  (unsigned)n, on_write);
	if (rv < 0) {
		c->writes_in_flight--;
		pthread_mutex_lock(&c->out_lock);
		c->io_inflight--;
		pthread_mutex_unlock(&c->out_lock);
		for (struct chunk *k = head; k;) {
			struct chunk *nx = k->next;
			free(k);
			k = nx;
		}
		atomic_fetch_sub(&c->out_bytes, bytes);
		free(w);
		conn_end(c, uv_strerror(rv), false);
	}
}

/* ------------------------------------------------------------ handshake */

static void
fill_hello(struct weft__conn *c, weft_v1_Hello *h)
{
	struct weft__net *n = c->net;
	memset(h, 0, sizeof(*h));
	h->protocol_version = WEFT_WIRE_PROTOCOL_VERSION;
	h->has_uid = true;
	weft_uid u = n->proc_uid;
	uint64_t prim = atomic_load(&n->primary);
	if (prim)
		weft_actor_uid(n->rt, (weft_aid){prim}, &u);
	uid_to_wire(&u, &h->uid);
	h->pid = (uint32_t)getpid();
	h->is_registrar = atomic_load(&n->is_registrar);
	h->max_frame_size = n->opts.max_frame;
	h->heartbeat_interval_ms = n->opts.heartbeat_ms;
	if (c->dialer && n->opts.auth_token_len) {
		h->auth_token.size = (pb_size_t)n->opts.auth_token_len;
		memcpy(h->auth_token.bytes, n->token, n->opts.auth_token_len);
	}
	for (size_t i = 0; i < n->nlisten; i++) {
		weft_v1_Addr *a = &h->listen_addrs[h->listen_addrs_count++];
		strcpy(a->transport, "tcp");
		snprintf(a->host, sizeof(a->host), "%s", n->listen_addrs[i].host);
		a->port = n->listen_addrs[i].port;
	}
}

static void
send_hello(struct weft__conn *c)
{
	weft_v1_Hello h;
	fill_hello(c, &h);
	uint8_t buf[2048];
	size_t len = 0;
	if (weft_wire_encode_msg(weft_v1_Hello_fields, &h, buf, sizeof(buf),
	                         &len) != WEFT_OK) {
		conn_end(c, "cannot encode hello", false);
		return;
	}
	weft_v1_Envelope env;
	memset(&env, 0, sizeof(env));
	env.which_msg = weft_v1_Envelope_hello_tag;
	env.msg.hello = (weft_slice){buf, len};
	send_env(c, &env);
	flush(c);
}

static void
refuse(struct weft__conn *c, weft_v1_ErrorKind kind, const char *why)
{
	struct weft__net *n = c->net;
	atomic_fetch_add(&n->st.refused, 1);
	weft_v1_Envelope env;
	memset(&env, 0, sizeof(env));
	env.which_msg = weft_v1_Envelope_error_tag;
	weft_v1_Error *e = &env.msg.error;
	e->kind = kind;
	strcpy(e->src_type, "HandshakeRefused");
	strcpy(e->boxed_type, "HandshakeRefused");
	e->message = (weft_slice){(const uint8_t *)why, strlen(why)};
	e->has_src_uid = true;
	uid_to_wire(&n->proc_uid, &e->src_uid);
	send_env(c, &env);
	char msg[200];
	snprintf(msg, sizeof(msg), "handshake refused by this end: %s", why);
	struct connect_req *r;
	while ((r = c->waiters) != NULL) {
		c->waiters = r->next;
		r->rc = WEFT_EPROTO;
		r->refusal_kind = kind;
		snprintf(r->why, sizeof(r->why), "%s", why);
		weft__event_complete(r->ev, WEFT_OK);
		req_rele(r);
	}
	conn_end(c, msg, true);
}

static void
complete_waiters(struct weft__conn *c)
{
	struct connect_req *r;
	while ((r = c->waiters) != NULL) {
		c->waiters = r->next;
		struct proxy *p = proxy_get(c, r->actor_id, NULL);
		r->rc = p ? WEFT_OK : WEFT_ENOMEM;
		if (p)
			r->aid = p->aid;
		weft__event_complete(r->ev, WEFT_OK);
		req_rele(r);
	}
}

/* A child we spawned has dialed back: send its spawn spec (protocol.md
 * §5.4) and hand its spawner the proxy of its actor. */
static void
match_child(struct weft__conn *c)
{
	struct weft__net *n = c->net;
	for (struct weft__expect **pp = &n->expects; *pp; pp = &(*pp)->next) {
		struct weft__expect *x = *pp;
		if (memcmp(x->uuid, c->peer_uid.uuid, 16) != 0)
			continue;
		*pp = x->next;
		c->is_child = true;
		weft_v1_SpawnSpec spec;
		memset(&spec, 0, sizeof(spec));
		for (size_t i = 0; i < n->nlisten && i < 4; i++) {
			weft_v1_Addr *a =
				&spec.registry_addrs[spec.registry_addrs_count++];
			strcpy(a->transport, "tcp");
			snprintf(a->host, sizeof(a->host), "%s",
			         n->listen_addrs[i].host);
			a->port = n->listen_addrs[i].port;
		}
		uint8_t buf[4096];
		size_t len = 0;
		if (weft_wire_encode_msg(weft_v1_SpawnSpec_fields, &spec, buf,
		                         sizeof(buf), &len) == WEFT_OK) {
			weft_v1_Envelope env;
			memset(&env, 0, sizeof(env));
			env.which_msg = weft_v1_Envelope_spawn_spec_tag;
			env.msg.spawn_spec = (weft_slice){buf, len};
			send_env(c, &env);
		}
		struct proxy *p = proxy_get(c, 0, NULL);
		x->rc = p ? WEFT_OK : WEFT_ENOMEM;
		if (p)
			x->aid = p->aid;
		weft__event_complete(x->ev, WEFT_OK);
		expect_rele(x);
		return;
	}
}

static void
on_hello(struct weft__conn *c, weft_slice s)
{
	struct weft__net *n = c->net;
	weft_v1_Hello h;
	if (weft_wire_decode_hello(s, &h) != WEFT_OK) {
		conn_protocol_error(c, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL,
		                    "malformed hello", s.ptr, s.len, true);
		return;
	}
	const char *why = "";
	weft_v1_ErrorKind k = weft_wire_hello_check(
		&h, !c->dialer, n->token, n->opts.auth_token_len, &why);
	if (k != weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED) {
		refuse(c, k, why);
		return;
	}
	uid_from_wire(&h.uid, &c->peer_uid);
	c->peer_registrar = h.is_registrar;
	c->peer_hb_ms = h.heartbeat_interval_ms
	                        ? h.heartbeat_interval_ms
	                        : WEFT_WIRE_HEARTBEAT_DEFAULT_MS;
	atomic_store(&c->peer_limit, weft_wire_peer_limit(h.max_frame_size));
	c->npeer_addrs = 0;
	for (pb_size_t i = 0; i < h.listen_addrs_count && i < 4; i++) {
		snprintf(c->peer_addrs[i].host, sizeof(c->peer_addrs[i].host),
		         "%s", h.listen_addrs[i].host);
		c->peer_addrs[i].port = (uint16_t)h.listen_addrs[i].port;
		c->npeer_addrs++;
	}
	if (!c->dialer)
		send_hello(c);
	weft_frame_decoder_set_limit(&c->dec,
	                             n->opts.max_frame ? n->opts.max_frame
	                                               : WEFT_FRAME_LIMIT_DEFAULT);
	c->state = CONN_OPEN;
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
		pthread_mutex_lock(&c->out_lock);
		c->fd = fd;
		c->direct_ok = true;
		pthread_mutex_unlock(&c->out_lock);
	}
	uv_timer_stop(&c->hs_timer);
	atomic_fetch_add(&n->st.open, 1);
	WEFT_LOG(WEFT_LOG_INFO, "connected to %s (%s:%u, %s)",
	         c->peer_uid.name, c->host, (unsigned)c->port,
	         c->dialer ? "dialed" : "accepted");
	complete_waiters(c);
	if (!c->dialer)
		match_child(c);
}

/* ------------------------------------------------------------ reading */

static weft_msg *
msg_with(uint32_t type, const void *data, size_t len)
{
	if (len > UINT32_MAX)
		return NULL;
	weft_msg *m = weft_msg_new(type, (uint32_t)len);
	if (m && len)
		memcpy(weft_msg_data(m), data, len);
	return m;
}

/* Sends an envelope straight back (for a message with no live target). */
static void
reply_direct(struct weft__conn *c, const weft_v1_Envelope *in,
             pb_size_t which, const weft_error *e)
{
	weft_v1_Envelope env;
	struct err_buf eb = {.n = 0};
	memset(&env, 0, sizeof(env));
	env.cid = in->cid;
	env.side = in->side == weft_v1_Side_SIDE_CALLER
	                   ? weft_v1_Side_SIDE_CALLEE
	                   : weft_v1_Side_SIDE_CALLER;
	env.to_actor = in->from_actor;
	env.from_actor = in->to_actor;
	env.which_msg = which;
	if (e)
		error_to_wire(e, &env.msg.error, &eb, 0);
	send_env(c, &env);
	err_buf_free(&eb);
}

static void
undeliverable(struct weft__conn *c, const weft_v1_Envelope *env)
{
	struct weft__net *n = c->net;
	switch (env->which_msg) {
	case weft_v1_Envelope_start_tag: {
		weft_error *e = weft_error_new(
			WEFT_ERRKIND_NO_SUCH_FUNCTION, NULL, &n->proc_uid,
			"no actor with id %llu serves '%s' here",
			(unsigned long long)env->to_actor, env->msg.start.func);
		if (e) {
			weft__error_set_cid(e, env->cid);
			reply_direct(c, env, weft_v1_Envelope_error_tag, e);
			weft_error_release(e);
		}
		break;
	}
	case weft_v1_Envelope_cancel_context_tag:
	case weft_v1_Envelope_cancel_actor_tag:
		reply_direct(c, env, weft_v1_Envelope_cancel_ack_tag, NULL);
		break;
	default:
		break; /* a late message for a context that has gone */
	}
}

/* The local actor a peer's envelope is for: its primary for id 0, and
 * never one of our proxies (a peer may not route through them). 0: none. */
static uint64_t
local_target(struct weft__conn *c, uint64_t to_actor)
{
	struct weft__net *n = c->net;
	if (to_actor == 0)
		return atomic_load_explicit(&n->primary, memory_order_relaxed);
	if (to_actor == c->last_to)
		return to_actor; /* an aid's proxy-ness never changes */
	if (weft__proxy_of(n->rt, (weft_aid){to_actor}) != NULL)
		return 0;
	c->last_to = to_actor;
	return to_actor;
}

/* The fast path: a per-item envelope read without nanopb (item.h). */
static void
on_item(struct weft__conn *c, const weft_wire_item *it)
{
	struct weft__net *n = c->net;
	weft_aid to = {local_target(c, it->to_actor)};
	if (to.id == 0)
		return; /* none of these needs an answer */
	uint64_t word;
	if (it->side == weft_v1_Side_SIDE_CALLER) {
		word = it->cid ^ PEER_OPENED;
	} else {
		if (it->cid & PEER_OPENED)
			return;
		word = it->cid;
	}
	uint32_t type;
	uint8_t kind = (uint8_t)it->ack_kind;
	const void *data = it->pld;
	size_t len = it->pld_len;
	switch (it->which) {
	case weft_v1_Envelope_yield_item_tag:
		type = WEFT__MSG_YIELD;
		break;
	case weft_v1_Envelope_started_tag:
		type = WEFT__MSG_STARTED;
		break;
	case weft_v1_Envelope_return_value_tag:
		type = WEFT__MSG_RETURN;
		break;
	case weft_v1_Envelope_stop_tag:
		type = WEFT__MSG_STREAM_STOP;
		break;
	case weft_v1_Envelope_start_ack_tag:
		type = WEFT__MSG_START_ACK;
		data = &kind;
		len = 1;
		break;
	case weft_v1_Envelope_cancel_ack_tag:
		type = WEFT__MSG_CANCEL_ACK;
		break;
	default:
		return;
	}
	weft_msg *m = msg_with(type, data, len);
	struct proxy *p = m ? proxy_get(c, it->from_actor, NULL) : NULL;
	if (p == NULL) {
		if (m)
			weft_msg_free(m);
		conn_end(c, "out of memory", false);
		return;
	}
	m->word = word;
	m->from = p->aid;
	proxy_note_local(p, to.id, &p->last_in);
	if (weft__send_internal(n->rt, to, m) != WEFT_OK)
		weft_msg_free(m);
}

static bool registry_env(struct weft__conn *c, const weft_v1_Envelope *env);

static void
on_context_env(struct weft__conn *c, const weft_v1_Envelope *env)
{
	struct weft__net *n = c->net;
	if (registry_env(c, env))
		return;
	const weft_v1_ActorUid *hint = NULL;
	if (env->which_msg == weft_v1_Envelope_start_tag)
		hint = &env->msg.start.caller;
	else if (env->which_msg == weft_v1_Envelope_cancel_actor_tag)
		hint = &env->msg.cancel_actor.requester;

	weft_aid to = {local_target(c, env->to_actor)};
	if (to.id == 0) {
		undeliverable(c, env);
		return;
	}
	uint64_t word;
	if (env->side == weft_v1_Side_SIDE_CALLER) {
		word = env->cid ^ PEER_OPENED;
	} else {
		if (env->cid & PEER_OPENED)
			return; /* not a cid we opened: drop */
		word = env->cid;
	}

	weft_msg *m = NULL;
	switch (env->which_msg) {
	case weft_v1_Envelope_start_tag: {
		const weft_v1_Start *s = &env->msg.start;
		struct weft__start_hdr hdr;
		memset(&hdr, 0, sizeof(hdr));
		uid_from_wire(&s->caller, &hdr.caller);
		/* A weft callee always acks a remote start (§6.2). */
		hdr.kind = (uint32_t)s->kind | WEFT__CALL_WANT_ACK;
		hdr.name_len = (uint32_t)strlen(s->func);
		size_t alen = s->has_args ? s->args.value.len : 0;
		size_t total = sizeof(hdr) + hdr.name_len + alen;
		m = total <= UINT32_MAX ? weft_msg_new(WEFT__MSG_START,
		                                       (uint32_t)total)
		                        : NULL;
		if (m) {
			uint8_t *d = weft_msg_data(m);
			memcpy(d, &hdr, sizeof(hdr));
			memcpy(d + sizeof(hdr), s->func, hdr.name_len);
			if (alen)
				memcpy(d + sizeof(hdr) + hdr.name_len,
				       s->args.value.ptr, alen);
		}
		break;
	}
	case weft_v1_Envelope_start_ack_tag: {
		uint8_t k = (uint8_t)env->msg.start_ack.kind;
		m = msg_with(WEFT__MSG_START_ACK, &k, 1);
		break;
	}
	case weft_v1_Envelope_started_tag:
		m = msg_with(WEFT__MSG_STARTED, env->msg.started.pld.value.ptr,
		             env->msg.started.pld.value.len);
		break;
	case weft_v1_Envelope_yield_item_tag:
		m = msg_with(WEFT__MSG_YIELD, env->msg.yield_item.pld.value.ptr,
		             env->msg.yield_item.pld.value.len);
		break;
	case weft_v1_Envelope_return_value_tag:
		m = msg_with(WEFT__MSG_RETURN,
		             env->msg.return_value.pld.value.ptr,
		             env->msg.return_value.pld.value.len);
		break;
	case weft_v1_Envelope_stop_tag:
		m = msg_with(WEFT__MSG_STREAM_STOP, NULL, 0);
		break;
	case weft_v1_Envelope_error_tag: {
		weft_error *e = error_from_wire(&env->msg.error, 0);
		if (e == NULL)
			return;
		if (e->cid == 0)
			weft__error_set_cid(e, word);
		m = msg_with(WEFT__MSG_ERROR, &e, sizeof(e));
		if (m == NULL)
			weft_error_release(e);
		break;
	}
	case weft_v1_Envelope_cancel_context_tag: {
		weft_uid u;
		uid_from_wire(&env->msg.cancel_context.canceller, &u);
		m = msg_with(WEFT__MSG_CANCEL, &u, sizeof(u));
		break;
	}
	case weft_v1_Envelope_cancel_ack_tag:
		m = msg_with(WEFT__MSG_CANCEL_ACK, NULL, 0);
		break;
	case weft_v1_Envelope_cancel_actor_tag: {
		weft_uid u;
		uid_from_wire(&env->msg.cancel_actor.requester, &u);
		m = msg_with(WEFT__MSG_ACTOR_CANCEL, &u, sizeof(u));
		break;
	}
	default:
		return;
	}
	if (m == NULL) {
		conn_end(c, "out of memory", false);
		return;
	}
	struct proxy *p = proxy_get(c, env->from_actor, hint);
	if (p == NULL) {
		weft__msg_dispose(m);
		conn_end(c, "out of memory", false);
		return;
	}
	m->word = word;
	m->from = p->aid;
	proxy_note_local(p, to.id, &p->last_in);
	if (weft__send_internal(n->rt, to, m) != WEFT_OK) {
		weft__msg_dispose(m);
		undeliverable(c, env);
	}
}

static void
on_env(struct weft__conn *c, const weft_v1_Envelope *env, const uint8_t *raw,
       size_t raw_len)
{
	if (c->state == CONN_AWAIT_HELLO || c->state == CONN_HELLO_SENT) {
		if (env->which_msg == weft_v1_Envelope_hello_tag) {
			on_hello(c, env->msg.hello);
			return;
		}
		if (c->dialer && env->which_msg == weft_v1_Envelope_error_tag) {
			/* Refused by the acceptor. */
			const weft_v1_Error *e = &env->msg.error;
			char why[200];
			snprintf(why, sizeof(why), "%.*s",
			         (int)(e->message.len > 180 ? 180
			                                    : e->message.len),
			         (const char *)e->message.ptr);
			atomic_fetch_add(&c->net->st.refused, 1);
			struct connect_req *r;
			while ((r = c->waiters) != NULL) {
				c->waiters = r->next;
				r->rc = WEFT_EPROTO;
				r->refusal_kind = e->kind;
				snprintf(r->why, sizeof(r->why), "%s", why);
				weft__event_complete(r->ev, WEFT_OK);
				req_rele(r);
			}
			char msg[240];
			snprintf(msg, sizeof(msg),
			         "handshake refused by the peer: %s", why);
			conn_end(c, msg, false);
			return;
		}
		conn_protocol_error(c, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL,
		                    "the first envelope must be a hello", raw,
		                    raw_len, true);
		return;
	}
	if (c->state != CONN_OPEN)
		return;
	if (env->cid != 0) {
		on_context_env(c, env);
		return;
	}
	switch (env->which_msg) {
	case weft_v1_Envelope_ping_tag: {
		weft_v1_Envelope r;
		memset(&r, 0, sizeof(r));
		r.which_msg = weft_v1_Envelope_pong_tag;
		r.msg.pong.nonce = env->msg.ping.nonce;
		send_env(c, &r);
		break;
	}
	case weft_v1_Envelope_pong_tag:
		break;
	case weft_v1_Envelope_bye_tag:
		conn_end(c, "the peer said bye", false);
		break;
	case weft_v1_Envelope_spawn_spec_tag:
		/* Once, from the parent, on the connection the child dialed:
		 * a forked child already has everything it says. */
		weft_v1_SpawnSpec *spec = malloc(sizeof(*spec));
		bool ok = spec && c->dialer && !c->spec_received &&
		          weft_wire_decode_spawn_spec(env->msg.spawn_spec,
		                                      spec) == WEFT_OK;
		free(spec);
		if (!ok) {
			conn_protocol_error(
				c, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL,
				"unexpected spawn_spec", raw, raw_len, true);
			break;
		}
		c->spec_received = true;
		break;
	case weft_v1_Envelope_error_tag: {
		const weft_v1_Error *e = &env->msg.error;
		char why[220];
		snprintf(why, sizeof(why), "the peer reported %s: %.*s",
		         e->boxed_type,
		         (int)(e->message.len > 160 ? 160 : e->message.len),
		         (const char *)e->message.ptr);
		if (e->kind >= 100)
			conn_end(c, why, false);
		else
			WEFT_LOG(WEFT_LOG_WARNING, "%s", why);
		break;
	}
	default:
		conn_protocol_error(c, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL,
		                    "message not allowed on cid 0 after the "
		                    "handshake",
		                    raw, raw_len, true);
		break;
	}
}

static weft_err
on_frame(void *arg, weft_frame *f)
{
	struct weft__conn *c = arg;
	weft_v1_Envelope env;
	const char *why = NULL;
	atomic_fetch_add_explicit(&c->net->st.frames_in, 1,
	                          memory_order_relaxed);
	weft_wire_item it;
	if (c->state == CONN_OPEN && weft_wire_item_decode(f->data, f->len, &it)) {
		on_item(c, &it);
		return c->state == CONN_OPEN ? WEFT_OK : WEFT_ECLOSED;
	}
	if (weft_wire_decode_ex(f->data, f->len, &env, &why) != WEFT_OK) {
		/* A whole frame arrived: the peer frames like weft, so it
		 * is told why before the close. */
		conn_protocol_error(c, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL,
		                    why ? why : "malformed envelope", f->data,
		                    f->len, true);
		return WEFT_EPROTO;
	}
	on_env(c, &env, f->data, f->len);
	return c->state == CONN_CLOSED || c->state == CONN_CLOSING
	               ? WEFT_ECLOSED
	               : WEFT_OK;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct weft__conn *c = h->data;
	uint8_t *dst = NULL;
	size_t room = weft_frame_decoder_room(&c->dec, &dst);
	if (room >= 16 * 1024) {
		/* A large split body: read straight into it. */
		c->reading_into_body = true;
		*buf = uv_buf_init((char *)dst,
		                   (unsigned)(room > (1u << 30) ? (1u << 30)
		                                                : room));
		return;
	}
	c->reading_into_body = false;
	*buf = uv_buf_init((char *)c->rbuf, READ_BUF);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct weft__conn *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		if (c->state == CONN_OPEN || c->state == CONN_HELLO_SENT ||
		    c->state == CONN_AWAIT_HELLO) {
			char why[160];
			bool clean = nread == UV_EOF &&
			             weft_frame_decoder_idle(&c->dec);
			snprintf(why, sizeof(why), "%s%s",
			         nread == UV_EOF ? "the peer closed the connection"
			                         : uv_strerror((int)nread),
			         nread == UV_EOF && !clean ? " mid-frame" : "");
			conn_end(c, why, false);
		}
		return;
	}
	if (c->state == CONN_CLOSED || c->state == CONN_CLOSING)
		return;
	c->last_rx = uv_now(&c->net->loop);
	atomic_fetch_add_explicit(&c->net->st.bytes_in, (uint64_t)nread,
	                          memory_order_relaxed);
	weft_err rc;
	if (c->reading_into_body)
		rc = weft_frame_decoder_commit(&c->dec, (size_t)nread, on_frame,
		                               c);
	else
		rc = weft_frame_feed(&c->dec, (const uint8_t *)buf->base,
		                     (size_t)nread, on_frame, c, NULL);
	if (rc == WEFT_EMSGSIZE || (rc == WEFT_EPROTO &&
	                            weft_frame_decoder_error(&c->dec) != WEFT_OK)) {
		/* A bad header: unless the first one, tell the peer. */
		bool spoke_weft = c->dec.frames > 0;
		conn_protocol_error(
			c, weft_wire_close_kind(rc),
			weft_frame_decoder_why(&c->dec), NULL, 0, spoke_weft);
	} else if (rc == WEFT_ENOMEM) {
		conn_end(c, "out of memory for a frame", false);
	}
	flush(c); /* replies (pongs, refusals) go out now */
}

/* ------------------------------------------------------------ timers */

static void
on_hs_timeout(uv_timer_t *t)
{
	struct weft__conn *c = t->data;
	if (c->state == CONN_OPEN || c->state == CONN_CLOSED)
		return;
	if (c->state == CONN_CLOSING) {
		/* The last writes did not drain: close anyway (pending
		 * writes are cancelled). */
		c->state = CONN_CLOSED;
		uv_close((uv_handle_t *)&c->hs_timer, on_hs_timer_closed);
		return;
	}
	conn_end(c, c->dialer ? "connect/handshake timed out"
	                      : "no hello within 10 s",
	         false);
}

static void
on_tick(uv_timer_t *t)
{
	struct weft__net *n = t->data;
	uint64_t now = uv_now(&n->loop);
	uint32_t own = n->opts.heartbeat_ms;
	struct weft__conn *c = n->conns, *next;
	for (; c; c = next) {
		next = c->next;
		if (c->state != CONN_OPEN)
			continue;
		if (now - c->last_rx > 3ull * c->peer_hb_ms) {
			atomic_fetch_add(&n->st.hb_timeouts, 1);
			char why[120];
			snprintf(why, sizeof(why),
			         "heartbeat timeout: nothing received for %llu ms",
			         (unsigned long long)(now - c->last_rx));
			conn_end(c, why, false);
			continue;
		}
		uint64_t direct = atomic_load_explicit(&c->direct_tx_ns,
		                                       memory_order_relaxed);
		if (direct && weft__now_ns() - direct < (uint64_t)own * 1000000u)
			continue; /* a direct write was recent enough */
		if (now - c->last_tx >= own) {
			weft_v1_Envelope env;
			memset(&env, 0, sizeof(env));
			env.which_msg = weft_v1_Envelope_ping_tag;
			env.msg.ping.nonce = ++c->ping_nonce;
			send_env(c, &env);
			flush(c);
		}
	}
}

/* ------------------------------------------------------------ connections */

static struct weft__conn *
conn_new(struct weft__net *n, bool dialer)
{
	struct weft__conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->rbuf = malloc(READ_BUF);
	if (c->rbuf == NULL) {
		free(c);
		return NULL;
	}
	c->net = n;
	c->fd = -1;
	c->queue_max = n->opts.send_queue_max;
	c->dialer = dialer;
	atomic_init(&c->refs, 1);
	atomic_init(&c->peer_limit, WEFT_FRAME_LIMIT_HANDSHAKE);
	pthread_mutex_init(&c->out_lock, NULL);
	weft_frame_decoder_init(&c->dec, WEFT_FRAME_LIMIT_HANDSHAKE, NULL);
	uv_tcp_init(&n->loop, &c->tcp);
	uv_timer_init(&n->loop, &c->hs_timer);
	c->tcp.data = c;
	c->hs_timer.data = c;
	c->last_rx = c->last_tx = uv_now(&n->loop);
	c->next = n->conns;
	n->conns = c;
	return c;
}

static void
on_connection(uv_stream_t *server, int status)
{
	struct weft__net *n = server->data;
	if (status < 0)
		return;
	struct weft__conn *c = conn_new(n, false);
	if (c == NULL)
		return;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		c->state = CONN_CONNECTING;
		conn_end(c, "accept failed", false);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, c->host, sizeof(c->host));
			c->port = ntohs(a->sin6_port);
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, c->host, sizeof(c->host));
			c->port = ntohs(a->sin_port);
		}
	}
	c->state = CONN_AWAIT_HELLO;
	atomic_fetch_add(&n->st.accepted, 1);
	uv_timer_start(&c->hs_timer, on_hs_timeout, ACCEPT_HELLO_MS, 0);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void try_connect(struct weft__conn *c);

static void
on_retry_closed(uv_handle_t *h)
{
	struct weft__conn *c = h->data;
	c->retrying = false;
	if (c->state != CONN_CONNECTING) {
		/* Ended while the handle closed: conn_end's close of it
		 * was skipped, so finish the release here. */
		weft__net_conn_rele(c);
		return;
	}
	uv_tcp_init(&c->net->loop, &c->tcp);
	c->tcp.data = c;
	try_connect(c);
}

static void
on_connect(uv_connect_t *req, int status)
{
	struct weft__conn *c = req->data;
	free(req);
	if (c->state != CONN_CONNECTING)
		return; /* ended meanwhile (timeout) */
	if (status < 0) {
		if (c->ai_next) {
			/* The next address, on a fresh handle once this one
			 * has closed. */
			c->retrying = true;
			uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
			return;
		}
		char why[160];
		snprintf(why, sizeof(why), "cannot connect to %.100s:%u: %s",
		         c->host, (unsigned)c->port, uv_strerror(status));
		conn_end(c, why, false);
		return;
	}
	uv_freeaddrinfo(c->ai);
	c->ai = c->ai_next = NULL;
	free(c->literal);
	c->literal = NULL;
	uv_tcp_nodelay(&c->tcp, 1);
	c->state = CONN_HELLO_SENT;
	atomic_fetch_add(&c->net->st.dialed, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	send_hello(c);
}

static void
try_connect(struct weft__conn *c)
{
	struct addrinfo *ai = c->ai_next;
	c->ai_next = ai->ai_next;
	uv_connect_t *req = malloc(sizeof(*req));
	if (req == NULL) {
		conn_end(c, "out of memory", false);
		return;
	}
	req->data = c;
	int rv = uv_tcp_connect(req, &c->tcp, ai->ai_addr, on_connect);
	if (rv < 0) {
		free(req);
		char why[160];
		snprintf(why, sizeof(why), "cannot connect to %.100s:%u: %s",
		         c->host, (unsigned)c->port, uv_strerror(rv));
		conn_end(c, why, false);
	}
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct weft__conn *c = req->data;
	free(req);
	if (c->state != CONN_CONNECTING) {
		uv_freeaddrinfo(res);
		weft__net_conn_rele(c); /* the resolver's */
		return;
	}
	weft__net_conn_rele(c); /* the loop still holds one */
	if (status < 0 || res == NULL) {
		char why[200];
		snprintf(why, sizeof(why), "cannot resolve %.100s: %s", c->host,
		         uv_strerror(status));
		uv_freeaddrinfo(res);
		conn_end(c, why, false);
		return;
	}
	c->ai = c->ai_next = res;
	try_connect(c);
}

static bool
conn_matches(const struct weft__conn *c, const char *host, uint16_t port)
{
	if (c->dialer && c->port == port && strcmp(c->host, host) == 0)
		return true;
	for (uint32_t i = 0; i < c->npeer_addrs; i++)
		if (c->peer_addrs[i].port == port &&
		    strcmp(c->peer_addrs[i].host, host) == 0)
			return true;
	return false;
}

static void
do_connect(struct weft__net *n, struct connect_req *r)
{
	for (struct weft__conn *c = n->conns; c; c = c->next) {
		if (!conn_matches(c, r->host, r->port))
			continue;
		if (c->state == CONN_OPEN) {
			r->next = NULL;
			c->waiters = r;
			complete_waiters(c);
			return;
		}
		if (c->state == CONN_CONNECTING || c->state == CONN_HELLO_SENT) {
			r->next = c->waiters;
			c->waiters = r;
			return;
		}
	}
	struct weft__conn *c = conn_new(n, true);
	if (c == NULL) {
		r->rc = WEFT_ENOMEM;
		weft__event_complete(r->ev, WEFT_OK);
		req_rele(r);
		return;
	}
	snprintf(c->host, sizeof(c->host), "%s", r->host);
	c->port = r->port;
	c->state = CONN_CONNECTING;
	r->next = NULL;
	c->waiters = r;
	uv_timer_start(&c->hs_timer, on_hs_timeout, n->opts.connect_timeout_ms,
	               0);
	/* An IP literal needs no resolver (whose thread pool would start
	 * four threads in every child process). */
	struct addrinfo *lit = calloc(1, sizeof(*lit) + sizeof(struct sockaddr_in6));
	if (lit) {
		struct sockaddr *sa = (struct sockaddr *)(lit + 1);
		if (uv_ip4_addr(r->host, r->port, (struct sockaddr_in *)sa) == 0)
			lit->ai_family = AF_INET;
		else if (uv_ip6_addr(r->host, r->port,
		                     (struct sockaddr_in6 *)sa) == 0)
			lit->ai_family = AF_INET6;
		if (lit->ai_family) {
			lit->ai_addr = sa;
			lit->ai_addrlen = lit->ai_family == AF_INET
			                          ? sizeof(struct sockaddr_in)
			                          : sizeof(struct sockaddr_in6);
			lit->ai_socktype = SOCK_STREAM;
			c->literal = lit;
			c->ai_next = lit;
			try_connect(c);
			return;
		}
		free(lit);
	}
	uv_getaddrinfo_t *gai = malloc(sizeof(*gai));
	if (gai == NULL) {
		conn_end(c, "out of memory", false);
		return;
	}
	gai->data = c;
	conn_hold(c); /* for the resolver's callback */
	char port[8];
	snprintf(port, sizeof(port), "%u", (unsigned)r->port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int rv = uv_getaddrinfo(&n->loop, gai, on_resolved, r->host, port,
	                        &hints);
	if (rv < 0) {
		free(gai);
		weft__net_conn_rele(c);
		char why[200];
		snprintf(why, sizeof(why), "cannot resolve %.100s: %s", r->host,
		         uv_strerror(rv));
		conn_end(c, why, false);
	}
}

static weft_err
do_listen(struct weft__net *n, const char *host, uint16_t port,
          uint16_t *bound)
{
	if (n->nlisten == MAX_LISTEN)
		return WEFT_ENOMEM;
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", (unsigned)port);
	if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL)
		return WEFT_EINVAL;
	uv_tcp_t *l = &n->listeners[n->nlisten];
	uv_tcp_init(&n->loop, l);
	l->data = n;
	int rv = uv_tcp_bind(l, res->ai_addr, 0);
	if (rv == 0)
		rv = uv_listen((uv_stream_t *)l, 128, on_connection);
	freeaddrinfo(res);
	if (rv < 0) {
		uv_close((uv_handle_t *)l, NULL);
		WEFT_LOG(WEFT_LOG_WARNING, "cannot listen on %s:%u: %s", host,
		         (unsigned)port, uv_strerror(rv));
		return WEFT_ECLOSED;
	}
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_getsockname(l, (struct sockaddr *)&ss, &len);
	uint16_t p = ss.ss_family == AF_INET6
	                     ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	pthread_mutex_lock(&n->lock);
	snprintf(n->listen_addrs[n->nlisten].host,
	         sizeof(n->listen_addrs[n->nlisten].host), "%s", host);
	n->listen_addrs[n->nlisten].port = p;
	n->nlisten++;
	pthread_mutex_unlock(&n->lock);
	if (bound)
		*bound = p;
	return WEFT_OK;
}

/* ------------------------------------------------------------ the loop */

static void on_async(uv_async_t *a);
static void registry_cmd(struct weft__net *n, struct reg_req *r);
static void registry_shutdown(struct weft__net *n);
static void reg_complete(struct reg_req *r, weft_err rc, const char *why);

static void
close_all(struct weft__net *n)
{
	n->stopping = true;
	struct weft__conn *c;
	while ((c = n->conns) != NULL) {
		if (c->state == CONN_OPEN) {
			weft_v1_Envelope env;
			memset(&env, 0, sizeof(env));
			env.which_msg = weft_v1_Envelope_bye_tag;
			const char *r = "runtime closing";
			env.msg.bye.reason = (weft_slice){(const uint8_t *)r,
			                                  strlen(r)};
			send_env(c, &env);
		}
		conn_end(c, "this runtime is closing", true);
	}
	for (size_t i = 0; i < n->nlisten; i++)
		uv_close((uv_handle_t *)&n->listeners[i], NULL);
	n->nlisten = 0;
	uv_close((uv_handle_t *)&n->tick, NULL);
	uv_close((uv_handle_t *)&n->async, NULL);
}

static void
on_async(uv_async_t *a)
{
	struct weft__net *n = a->data;
	pthread_mutex_lock(&n->lock);
	struct cmd *cmds = n->cmds;
	n->cmds = NULL;
	pthread_mutex_unlock(&n->lock);
	/* The list is newest first: run in order. */
	struct cmd *rev = NULL;
	while (cmds) {
		struct cmd *nx = cmds->next;
		cmds->next = rev;
		rev = cmds;
		cmds = nx;
	}
	for (struct cmd *k = rev, *nx; k; k = nx) {
		nx = k->next;
		switch (k->kind) {
		case CMD_CONNECT:
			if (n->stopping) {
				k->req->rc = WEFT_ECLOSED;
				weft__event_complete(k->req->ev, WEFT_OK);
				req_rele(k->req);
			} else {
				do_connect(n, k->req);
			}
			break;
		case CMD_LISTEN:
			*k->rc = n->stopping ? WEFT_ECLOSED
			                     : do_listen(n, k->host, k->port,
			                                 k->bound);
			weft__event_complete(k->ev, WEFT_OK);
			break;
		case CMD_STOP:
			if (!n->stopping)
				close_all(n);
			break;
		case CMD_REGISTRY:
			registry_cmd(n, k->rreq);
			break;
		case CMD_EXPECT:
			if (n->stopping) {
				k->expect->rc = WEFT_ECLOSED;
				weft__event_complete(k->expect->ev, WEFT_OK);
				expect_rele(k->expect);
			} else {
				k->expect->next = n->expects;
				n->expects = k->expect;
			}
			break;
		}
		free(k);
	}
	if (n->stopping)
		return;
	for (struct weft__conn *c = n->conns; c; c = c->next)
		if (c->out_head)
			flush(c);
}

static void *
loop_main(void *arg)
{
	struct weft__net *n = arg;
	uv_run(&n->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* ------------------------------------------------------------ public */

void
weft_net_opts_init(weft_net_opts *o)
{
	memset(o, 0, sizeof(*o));
}

static void
opts_fill(weft_net_opts *o)
{
	if (o->heartbeat_ms == 0)
		o->heartbeat_ms = WEFT_WIRE_HEARTBEAT_DEFAULT_MS;
	if (o->connect_timeout_ms == 0)
		o->connect_timeout_ms = 5000;
	if (o->send_queue_max == 0)
		o->send_queue_max = 4u << 20;
	if (o->max_frame && o->max_frame < WEFT_FRAME_LIMIT_MIN)
		o->max_frame = WEFT_FRAME_LIMIT_MIN;
}

static struct weft__net *
net_get(weft_runtime *rt, bool create)
{
	pthread_mutex_lock(&rt->net_lock);
	struct weft__net *n = rt->net;
	if (n || !create || atomic_load(&rt->closing)) {
		pthread_mutex_unlock(&rt->net_lock);
		return n;
	}
	n = calloc(1, sizeof(*n));
	if (n == NULL) {
		pthread_mutex_unlock(&rt->net_lock);
		return NULL;
	}
	n->rt = rt;
	opts_fill(&n->opts);
	n->opts.auth_token = NULL;
	snprintf(n->proc_uid.name, sizeof(n->proc_uid.name), "weft");
	weft__random_bytes(n->proc_uid.uuid, sizeof(n->proc_uid.uuid));
	pthread_mutex_init(&n->lock, NULL);
	if (uv_loop_init(&n->loop) != 0) {
		free(n);
		pthread_mutex_unlock(&rt->net_lock);
		return NULL;
	}
	uv_async_init(&n->loop, &n->async, on_async);
	n->async.data = n;
	uv_timer_init(&n->loop, &n->tick);
	n->tick.data = n;
	rt->net = n;
	pthread_mutex_unlock(&rt->net_lock);
	return n;
}

/* Starts the I/O thread on first use (after the options are final). */
static weft_err
net_start(struct weft__net *n)
{
	pthread_mutex_lock(&n->lock);
	if (n->thread) {
		pthread_mutex_unlock(&n->lock);
		return WEFT_OK;
	}
	/* A write to a peer that has gone must be an EPIPE for the I/O
	 * thread, not a signal that kills the process (libuv writes with
	 * write(2), which raises SIGPIPE). Only when nobody handles it. */
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	uint64_t tick = n->opts.heartbeat_ms / 4;
	if (tick < 5)
		tick = 5;
	if (tick > 250)
		tick = 250;
	uv_timer_start(&n->tick, on_tick, tick, tick);
	int rv = pthread_create(&n->thread, NULL, loop_main, n);
	pthread_mutex_unlock(&n->lock);
	return rv == 0 ? WEFT_OK : WEFT_ENOMEM;
}

static void
push_cmd(struct weft__net *n, struct cmd *k)
{
	pthread_mutex_lock(&n->lock);
	k->next = n->cmds;
	n->cmds = k;
	pthread_mutex_unlock(&n->lock);
	wake_loop(n);
}

weft_err
weft_net_configure(weft_runtime *rt, const weft_net_opts *o)
{
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return WEFT_ECLOSED;
	if (o == NULL || o->auth_token_len > WEFT_WIRE_TOKEN_MAX)
		return WEFT_EINVAL;
	pthread_mutex_lock(&n->lock);
	if (n->thread) {
		pthread_mutex_unlock(&n->lock);
		return WEFT_ESTATE;
	}
	n->opts = *o;
	opts_fill(&n->opts);
	if (o->auth_token_len)
		memcpy(n->token, o->auth_token, o->auth_token_len);
	n->opts.auth_token = n->token;
	pthread_mutex_unlock(&n->lock);
	return WEFT_OK;
}

weft_err
weft_net_set_primary(weft_runtime *rt, weft_aid aid)
{
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return WEFT_ECLOSED;
	weft_uid u;
	if (weft_actor_uid(rt, aid, &u) != WEFT_OK)
		return WEFT_ECLOSED;
	atomic_store(&n->primary, aid.id);
	return WEFT_OK;
}

uint64_t
weft_net_actor_id(weft_runtime *rt, weft_aid aid)
{
	struct weft__net *n = net_get(rt, false);
	return n ? wire_id_of(n, aid) : aid.id;
}

static uint64_t
deadline_after_ms(uint32_t ms)
{
	return weft__now_ns() + (uint64_t)ms * 1000000u;
}

weft_err
weft_net_listen(weft_runtime *rt, const char *host, uint16_t port,
                uint16_t *bound_port)
{
	if (host == NULL || strlen(host) > 255)
		return WEFT_EINVAL;
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return WEFT_ECLOSED;
	weft_err rc = net_start(n);
	if (rc != WEFT_OK)
		return rc;
	struct cmd *k = calloc(1, sizeof(*k));
	struct weft__event *ev = weft__event_new();
	weft_err *res = malloc(sizeof(*res));
	uint16_t *b = malloc(sizeof(*b));
	if (!k || !ev || !res || !b) {
		free(k);
		free(res);
		free(b);
		event_discard(ev);
		return WEFT_ENOMEM;
	}
	k->kind = CMD_LISTEN;
	snprintf(k->host, sizeof(k->host), "%s", host);
	k->port = port;
	k->bound = b;
	k->rc = res;
	k->ev = ev;
	*res = WEFT_ECLOSED;
	*b = 0;
	push_cmd(n, k);
	/* Listening is quick; this waits uncancelled so the result cells
	 * stay ours. */
	weft_err w;
	while ((w = weft__event_wait(ev, 0)) == WEFT_ECANCELED)
		;
	rc = *res;
	if (rc == WEFT_OK && bound_port)
		*bound_port = *b;
	weft__event_rele(ev);
	free(res);
	free(b);
	return rc;
}

weft_err
weft_net_connect(weft_runtime *rt, const char *host, uint16_t port,
                 uint64_t actor_id, weft_portal **out)
{
	if (host == NULL || strlen(host) > 255 || port == 0 || out == NULL)
		return WEFT_EINVAL;
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return WEFT_ECLOSED;
	weft_err rc = net_start(n);
	if (rc != WEFT_OK)
		return rc;
	struct connect_req *r = calloc(1, sizeof(*r));
	struct cmd *k = calloc(1, sizeof(*k));
	struct weft__event *ev = weft__event_new();
	if (!r || !k || !ev) {
		free(r);
		free(k);
		event_discard(ev);
		return WEFT_ENOMEM;
	}
	atomic_init(&r->refs, 2);
	snprintf(r->host, sizeof(r->host), "%s", host);
	r->port = port;
	r->actor_id = actor_id;
	r->ev = ev;
	k->kind = CMD_CONNECT;
	k->req = r;
	push_cmd(n, k);
	rc = weft__event_wait(ev, deadline_after_ms(n->opts.connect_timeout_ms +
	                                            1000));
	if (rc == WEFT_OK)
		rc = r->rc;
	struct weft__task *t = weft__task_current();
	if (rc == WEFT_OK) {
		rc = weft_portal_open(rt, r->aid, out);
	} else if (t && rc != WEFT_ECANCELED) {
		const char *kind =
			r->refusal_kind == weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH
				? "VersionMismatch"
			: r->refusal_kind == weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED
				? "AuthFailed"
			: r->refusal_kind ? "HandshakeRefused"
			: rc == WEFT_ETIMEDOUT ? "TimeoutError"
			                       : "ConnectionError";
		weft__task_set_error(
			t, weft__error_here(rc == WEFT_EPROTO
			                            ? WEFT_ERRKIND_RUNTIME
			                            : WEFT_ERRKIND_TRANSPORT_CLOSED,
			                    kind, "connect to %s:%u: %s", host,
			                    (unsigned)port,
			                    r->why[0] ? r->why
			                              : weft_strerror(rc)));
	}
	weft__event_rele(ev);
	req_rele(r);
	return rc;
}

void
weft_net_stats_get(weft_runtime *rt, weft_net_stats *o)
{
	memset(o, 0, sizeof(*o));
	struct weft__net *n = net_get(rt, false);
	if (n == NULL)
		return;
	o->connections_open = atomic_load(&n->st.open);
	o->connections_accepted = atomic_load(&n->st.accepted);
	o->connections_dialed = atomic_load(&n->st.dialed);
	o->handshakes_refused = atomic_load(&n->st.refused);
	o->protocol_errors = atomic_load(&n->st.proto);
	o->heartbeat_timeouts = atomic_load(&n->st.hb_timeouts);
	o->frames_in = atomic_load(&n->st.frames_in);
	o->frames_out = atomic_load(&n->st.frames_out);
	o->bytes_in = atomic_load(&n->st.bytes_in);
	o->bytes_out = atomic_load(&n->st.bytes_out);
}

/* ------------------------------------------------------------ internal */

struct weft__conn *
weft__net_conn_hold(weft_runtime *rt, weft_aid aid)
{
	struct weft__actor *a;
	if (aid.id == 0 || weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return NULL;
	struct weft__conn *c = NULL;
	if (a->proxy_fn) {
		struct proxy *p = a->proxy;
		c = p->conn;
		conn_hold(c);
	}
	weft__actor_rele(a);
	return c;
}

bool
weft__net_congested(const struct weft__conn *c)
{
	return atomic_load_explicit(&c->out_bytes, memory_order_relaxed) >
	               c->queue_max &&
	       !atomic_load_explicit(&c->dead, memory_order_relaxed);
}

size_t
weft__net_payload_max(const struct weft__conn *c)
{
	/* The envelope around a payload: at most ~48 bytes (cid, side, two
	 * actor ids, tags and lengths). */
	uint32_t lim = atomic_load_explicit(&c->peer_limit,
	                                    memory_order_relaxed);
	return lim > 64 ? lim - 64 : 0;
}

void
weft__net_shutdown(weft_runtime *rt)
{
	pthread_mutex_lock(&rt->net_lock);
	struct weft__net *n = rt->net;
	pthread_mutex_unlock(&rt->net_lock);
	if (n == NULL)
		return;
	if (n->thread) {
		struct cmd *k = calloc(1, sizeof(*k));
		if (k) {
			k->kind = CMD_STOP;
			push_cmd(n, k);
		}
		pthread_join(n->thread, NULL);
	} else {
		close_all(n);
		uv_run(&n->loop, UV_RUN_DEFAULT);
	}
	/* Commands that raced with the stop. */
	struct cmd *k = n->cmds;
	while (k) {
		struct cmd *nx = k->next;
		if (k->kind == CMD_CONNECT) {
			k->req->rc = WEFT_ECLOSED;
			weft__event_complete(k->req->ev, WEFT_OK);
			req_rele(k->req);
		} else if (k->kind == CMD_LISTEN) {
			*k->rc = WEFT_ECLOSED;
			weft__event_complete(k->ev, WEFT_OK);
		} else if (k->kind == CMD_EXPECT) {
			k->expect->rc = WEFT_ECLOSED;
			weft__event_complete(k->expect->ev, WEFT_OK);
			expect_rele(k->expect);
		} else if (k->kind == CMD_REGISTRY) {
			reg_complete(k->rreq, WEFT_ECLOSED,
			             "the runtime is closing");
		}
		free(k);
		k = nx;
	}
	registry_shutdown(n);
	struct weft__expect *x;
	while ((x = n->expects) != NULL) {
		n->expects = x->next;
		x->rc = WEFT_ECLOSED;
		weft__event_complete(x->ev, WEFT_OK);
		expect_rele(x);
	}
	uv_loop_close(&n->loop);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_lock(&rt->net_lock);
	rt->net = NULL;
	pthread_mutex_unlock(&rt->net_lock);
	free(n);
}

/* ------------------------------------------------------ child processes */

uint16_t
weft__net_parent_port(weft_runtime *rt)
{
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return 0;
	if (net_start(n) != WEFT_OK)
		return 0;
	/* The I/O thread writes listen_addrs; read them through a listen
	 * command when none is known yet. */
	uint16_t port = 0;
	pthread_mutex_lock(&n->lock);
	bool have = n->nlisten > 0;
	if (have)
		port = n->listen_addrs[0].port;
	pthread_mutex_unlock(&n->lock);
	if (!have && weft_net_listen(rt, "127.0.0.1", 0, &port) != WEFT_OK)
		return 0;
	return port;
}

struct weft__expect *
weft__net_expect_child(weft_runtime *rt, const weft_uid *uid)
{
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return NULL;
	struct weft__expect *x = calloc(1, sizeof(*x));
	struct cmd *k = calloc(1, sizeof(*k));
	struct weft__event *ev = weft__event_new();
	if (!x || !k || !ev) {
		free(x);
		free(k);
		event_discard(ev);
		return NULL;
	}
	atomic_init(&x->refs, 2);
	memcpy(x->uuid, uid->uuid, 16);
	x->ev = ev;
	k->kind = CMD_EXPECT;
	k->expect = x;
	push_cmd(n, k);
	return x;
}

weft_err
weft__net_expect_wait(struct weft__expect *x, uint64_t deadline,
                      weft_aid *aid)
{
	return weft__net_expect_wait_pid(x, deadline, 0, aid);
}

weft_err
weft__net_expect_wait_pid(struct weft__expect *x, uint64_t deadline,
                          pid_t pid, weft_aid *aid)
{
	weft_err rc;
	/* In 20 ms slices, so that a child that exits without dialing back
	 * (not a weft program, a crash) fails the spawn at once. */
	for (;;) {
		uint64_t now = weft__now_ns(), slice = now + 20000000u;
		if (pid <= 0 || (deadline && slice > deadline))
			slice = deadline;
		rc = weft__event_wait(x->ev, slice);
		if (rc != WEFT_ETIMEDOUT || slice == deadline)
			break;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			rc = WEFT_ECLOSED;
			break;
		}
	}
	if (rc == WEFT_OK)
		rc = x->rc;
	if (rc == WEFT_OK)
		*aid = x->aid;
	/* Our reference to the event; the I/O thread's goes with its
	 * completion. A waiter that gives up leaves the expectation
	 * registered: its uuid never comes, and shutdown frees it. */
	weft__event_rele(x->ev);
	expect_rele(x);
	return rc;
}

void
weft__net_note_local(weft_runtime *rt, weft_aid proxy, weft_aid local)
{
	struct weft__actor *a;
	if (weft__actor_hold(rt, proxy, &a) != WEFT_OK)
		return;
	if (a->proxy_fn) {
		uint64_t cache = 0;
		proxy_note_local(a->proxy, local.id, &cache);
	}
	weft__actor_rele(a);
}

void
weft__net_conn_on_end(struct weft__conn *c, void (*fn)(void *arg), void *arg)
{
	/* Set before anything can end it: the caller holds the only route
	 * to it (its own connect), and the I/O thread reads it at the end
	 * under this connection's output lock. */
	pthread_mutex_lock(&c->out_lock);
	bool dead = atomic_load(&c->dead);
	if (!dead) {
		c->on_end = fn;
		c->on_end_arg = arg;
	}
	pthread_mutex_unlock(&c->out_lock);
	if (dead)
		fn(arg);
}

void
weft__net_opts_get(weft_runtime *rt, weft_net_opts *o,
                   uint8_t *token)
{
	weft_net_opts_init(o);
	struct weft__net *n = net_get(rt, false);
	if (n == NULL)
		return;
	pthread_mutex_lock(&n->lock);
	*o = n->opts;
	memcpy(token, n->token, WEFT_WIRE_TOKEN_MAX);
	pthread_mutex_unlock(&n->lock);
	o->auth_token = token;
}

/* ------------------------------------------------------------ registry */

/* Registry request cids: bit 62 set, so they never meet the cids of
 * contexts (context.c's counter stays below 2^49). */
#define REG_CID_BIT (1ull << 62)

static void
reg_req_rele(struct reg_req *r)
{
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
		weft__net_conn_rele(r->conn);
		free(r);
	}
}

/* I/O thread: answers a local request (and drops the I/O thread's
 * reference). */
static void
reg_complete(struct reg_req *r, weft_err rc, const char *why)
{
	r->rc = rc;
	if (why)
		snprintf(r->why, sizeof(r->why), "%s", why);
	if (r->ev)
		weft__event_complete(r->ev, WEFT_OK);
	reg_req_rele(r);
}

static bool
addr_eq(const weft_v1_Addr *a, const weft_v1_Addr *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static bool
reg_same_place(const weft_v1_Registration *a, const weft_v1_Registration *b)
{
	if (a->actor_id != b->actor_id)
		return false;
	for (pb_size_t i = 0; i < a->addrs_count; i++)
		for (pb_size_t j = 0; j < b->addrs_count; j++)
			if (addr_eq(&a->addrs[i], &b->addrs[j]))
				return true;
	return false;
}

static size_t
registrar_match(struct weft__net *n, const char *name,
                weft_v1_Registration *out, size_t cap)
{
	size_t k = 0;
	for (struct reg_entry *e = n->regs; e && k < cap; e = e->next)
		if (strcmp(name, "*") == 0 || strcmp(e->reg.uid.name, name) == 0)
			out[k++] = e->reg;
	return k;
}

static void
reply_found(struct weft__conn *c, uint64_t cid, uint64_t to_actor,
            const weft_v1_Registration *regs, size_t nregs)
{
	weft_v1_FoundActors *fa = calloc(1, sizeof(*fa));
	size_t cap = 32u * 1024u, len = 0;
	uint8_t *buf = malloc(cap);
	if (fa && buf) {
		for (size_t i = 0; i < nregs && i < 16; i++)
			fa->regs[fa->regs_count++] = regs[i];
		if (weft_wire_encode_msg(weft_v1_FoundActors_fields, fa, buf,
		                         cap, &len) == WEFT_OK) {
			weft_v1_Envelope env;
			memset(&env, 0, sizeof(env));
			env.cid = cid;
			env.side = weft_v1_Side_SIDE_CALLEE;
			env.to_actor = to_actor;
			env.which_msg = weft_v1_Envelope_found_actors_tag;
			env.msg.found_actors = (weft_slice){buf, len};
			send_env(c, &env);
		}
	}
	free(fa);
	free(buf);
}

static void
reply_reg(struct weft__conn *c, const weft_v1_Envelope *in, pb_size_t which,
          const weft_error *e)
{
	reply_direct(c, in, which, e);
}

/* A find that was waiting for `name` is answered (remote or local). */
static void
answer_wait(struct weft__net *n, struct reg_wait *w)
{
	weft_v1_Registration *found = calloc(16, sizeof(*found));
	size_t k = found ? registrar_match(n, w->name, found, 16) : 0;
	if (w->local) {
		struct reg_req *r = w->local;
		r->nfound = k;
		for (size_t i = 0; i < k; i++)
			r->found[i] = found[i];
		reg_complete(r, WEFT_OK, NULL);
	} else {
		reply_found(w->conn, w->cid, w->from_actor, found, k);
		flush(w->conn);
	}
	free(found);
}

static void
registrar_add(struct weft__net *n, const weft_v1_Registration *reg,
              struct weft__conn *c)
{
	/* A new actor at the same place (process address and actor id)
	 * replaces a stale entry; the same uid registering again replaces
	 * its old entry. */
	for (struct reg_entry **pp = &n->regs; *pp;) {
		struct reg_entry *e = *pp;
		if (memcmp(e->reg.uid.uuid, reg->uid.uuid, 16) == 0 ||
		    reg_same_place(&e->reg, reg)) {
			*pp = e->next;
			free(e);
		} else {
			pp = &e->next;
		}
	}
	struct reg_entry *e = calloc(1, sizeof(*e));
	if (e == NULL)
		return;
	e->reg = *reg;
	e->conn = c;
	e->next = n->regs;
	n->regs = e;
	WEFT_LOG(WEFT_LOG_INFO, "registry: %s registered", reg->uid.name);
	for (struct reg_wait **wp = &n->reg_waits; *wp;) {
		struct reg_wait *w = *wp;
		if (strcmp(w->name, reg->uid.name) == 0) {
			*wp = w->next;
			answer_wait(n, w);
			free(w);
		} else {
			wp = &w->next;
		}
	}
}

static void
registrar_remove(struct weft__net *n, const uint8_t uuid[16])
{
	for (struct reg_entry **pp = &n->regs; *pp;) {
		struct reg_entry *e = *pp;
		if (memcmp(e->reg.uid.uuid, uuid, 16) == 0) {
			*pp = e->next;
			free(e);
		} else {
			pp = &e->next;
		}
	}
}

/* I/O thread: the registry envelopes, both roles. true: handled. */
static bool
registry_env(struct weft__conn *c, const weft_v1_Envelope *env)
{
	struct weft__net *n = c->net;
	switch (env->which_msg) {
	case weft_v1_Envelope_register_actor_tag:
	case weft_v1_Envelope_unregister_actor_tag:
	case weft_v1_Envelope_find_actor_tag:
		break;
	case weft_v1_Envelope_ack_tag:
	case weft_v1_Envelope_found_actors_tag:
	case weft_v1_Envelope_error_tag: {
		if (env->side != weft_v1_Side_SIDE_CALLEE ||
		    !(env->cid & REG_CID_BIT))
			return false;
		struct reg_req **pp = &c->reg_pending;
		while (*pp && (*pp)->cid != env->cid)
			pp = &(*pp)->next;
		struct reg_req *r = *pp;
		if (r == NULL)
			return true; /* a late reply: the requester gave up */
		*pp = r->next;
		if (env->which_msg == weft_v1_Envelope_ack_tag) {
			reg_complete(r, WEFT_OK, NULL);
		} else if (env->which_msg == weft_v1_Envelope_found_actors_tag) {
			weft_v1_FoundActors *fa = malloc(sizeof(*fa));
			if (fa && weft_wire_decode_found_actors(
					  env->msg.found_actors, fa) == WEFT_OK) {
				r->nfound = fa->regs_count;
				for (size_t i = 0; i < r->nfound; i++)
					r->found[i] = fa->regs[i];
				reg_complete(r, WEFT_OK, NULL);
			} else {
				reg_complete(r, WEFT_EPROTO,
				             "malformed found_actors");
			}
			free(fa);
		} else {
			const weft_v1_Error *e = &env->msg.error;
			char why[160];
			snprintf(why, sizeof(why), "%s: %.*s", e->boxed_type,
			         (int)(e->message.len > 120 ? 120
			                                    : e->message.len),
			         (const char *)e->message.ptr);
			reg_complete(r, WEFT_EREMOTE, why);
		}
		return true;
	}
	default:
		return false;
	}
	/* A request to us. */
	if (!atomic_load(&n->is_registrar)) {
		weft_error *e = weft_error_new(WEFT_ERRKIND_NO_SUCH_FUNCTION,
		                               NULL, &n->proc_uid,
		                               "this process is not a registrar");
		if (e) {
			reply_reg(c, env, weft_v1_Envelope_error_tag, e);
			weft_error_release(e);
		}
		return true;
	}
	switch (env->which_msg) {
	case weft_v1_Envelope_register_actor_tag:
		registrar_add(n, &env->msg.register_actor.reg, c);
		reply_reg(c, env, weft_v1_Envelope_ack_tag, NULL);
		break;
	case weft_v1_Envelope_unregister_actor_tag:
		registrar_remove(n, env->msg.unregister_actor.uid.uuid);
		reply_reg(c, env, weft_v1_Envelope_ack_tag, NULL);
		break;
	default: {
		const weft_v1_FindActor *f = &env->msg.find_actor;
		weft_v1_Registration *found = calloc(16, sizeof(*found));
		size_t k = found ? registrar_match(n, f->name, found, 16) : 0;
		if (k == 0 && f->wait) {
			struct reg_wait *w = calloc(1, sizeof(*w));
			if (w) {
				snprintf(w->name, sizeof(w->name), "%s", f->name);
				w->conn = c;
				w->cid = env->cid;
				w->from_actor = env->from_actor;
				w->next = n->reg_waits;
				n->reg_waits = w;
			}
		} else {
			reply_found(c, env->cid, env->from_actor, found, k);
		}
		free(found);
		break;
	}
	}
	return true;
}

/* I/O thread: a connection ends: the registrar drops what came over it
 * (stale entries), a client fails what it was waiting for. */
static void
registry_conn_end(struct weft__conn *c, const char *why)
{
	struct weft__net *n = c->net;
	for (struct reg_entry **pp = &n->regs; *pp;) {
		struct reg_entry *e = *pp;
		if (e->conn == c) {
			WEFT_LOG(WEFT_LOG_INFO, "registry: %s dropped (%s)",
			         e->reg.uid.name, why);
			*pp = e->next;
			free(e);
		} else {
			pp = &e->next;
		}
	}
	for (struct reg_wait **wp = &n->reg_waits; *wp;) {
		struct reg_wait *w = *wp;
		if (w->conn == c) {
			*wp = w->next;
			free(w);
		} else {
			wp = &w->next;
		}
	}
	struct reg_req *r;
	while ((r = c->reg_pending) != NULL) {
		c->reg_pending = r->next;
		reg_complete(r, WEFT_ECLOSED, why);
	}
}

/* I/O thread: a request from this process. */
static void
registry_cmd(struct weft__net *n, struct reg_req *r)
{
	if (n->stopping) {
		reg_complete(r, WEFT_ECLOSED, "the runtime is closing");
		return;
	}
	if (r->conn == NULL) {
		/* We are the registrar. */
		switch (r->op) {
		case REG_REGISTER:
			registrar_add(n, &r->reg, NULL);
			reg_complete(r, WEFT_OK, NULL);
			return;
		case REG_UNREGISTER:
			registrar_remove(n, r->reg.uid.uuid);
			reg_complete(r, WEFT_OK, NULL);
			return;
		case REG_FIND:
			r->nfound = registrar_match(n, r->name, r->found, 16);
			if (r->nfound == 0 && r->wait) {
				struct reg_wait *w = calloc(1, sizeof(*w));
				if (w == NULL) {
					reg_complete(r, WEFT_ENOMEM, NULL);
					return;
				}
				snprintf(w->name, sizeof(w->name), "%s", r->name);
				w->local = r;
				w->next = n->reg_waits;
				n->reg_waits = w;
				return;
			}
			reg_complete(r, WEFT_OK, NULL);
			return;
		}
	}
	struct weft__conn *c = r->conn;
	if (c->state != CONN_OPEN) {
		reg_complete(r, WEFT_ECLOSED, "the registrar's connection closed");
		return;
	}
	weft_v1_Envelope env;
	memset(&env, 0, sizeof(env));
	env.cid = r->cid;
	env.side = weft_v1_Side_SIDE_CALLER;
	switch (r->op) {
	case REG_REGISTER:
		env.which_msg = weft_v1_Envelope_register_actor_tag;
		env.msg.register_actor.has_reg = true;
		env.msg.register_actor.reg = r->reg;
		break;
	case REG_UNREGISTER:
		env.which_msg = weft_v1_Envelope_unregister_actor_tag;
		env.msg.unregister_actor.has_uid = true;
		env.msg.unregister_actor.uid = r->reg.uid;
		break;
	case REG_FIND:
		env.which_msg = weft_v1_Envelope_find_actor_tag;
		snprintf(env.msg.find_actor.name, sizeof(env.msg.find_actor.name),
		         "%s", r->name);
		env.msg.find_actor.wait = r->wait;
		break;
	}
	r->next = c->reg_pending;
	c->reg_pending = r;
	send_env(c, &env);
	flush(c);
}

static void
registry_shutdown(struct weft__net *n)
{
	struct reg_entry *e;
	while ((e = n->regs) != NULL) {
		n->regs = e->next;
		free(e);
	}
	struct reg_wait *w;
	while ((w = n->reg_waits) != NULL) {
		n->reg_waits = w->next;
		if (w->local)
			reg_complete(w->local, WEFT_ECLOSED,
			             "the runtime is closing");
		free(w);
	}
}

static void
fill_uid_wire(const weft_uid *u, weft_v1_ActorUid *w)
{
	uid_to_wire(u, w);
}

/* Sends r (already filled) to the registrar and waits for the answer.
 * Takes r (the caller's reference). */
static weft_err
reg_request(weft_runtime *rt, struct reg_req *r, uint64_t deadline)
{
	struct weft__net *n = net_get(rt, false);
	if (n == NULL) {
		reg_req_rele(r); /* the I/O thread's, unused */
		return WEFT_ESTATE;
	}
	pthread_mutex_lock(&n->lock);
	char host[256];
	uint16_t port = n->reg_port;
	snprintf(host, sizeof(host), "%s", n->reg_host);
	pthread_mutex_unlock(&n->lock);
	if (port == 0) {
		reg_req_rele(r); /* the I/O thread's, unused */
		return WEFT_ESTATE; /* weft_registry_open first */
	}
	if (!atomic_load(&n->is_registrar)) {
		weft_aid via = {atomic_load(&n->reg_aid)};
		r->conn = weft__net_conn_hold(rt, via);
		if (r->conn == NULL ||
		    atomic_load_explicit(&r->conn->dead, memory_order_acquire)) {
			/* Reconnect (the registrar may have restarted). */
			weft__net_conn_rele(r->conn);
			r->conn = NULL;
			weft_portal *p = NULL;
			weft_err rc = weft_net_connect(rt, host, port, 0, &p);
			if (rc != WEFT_OK) {
				reg_req_rele(r); /* the I/O thread's */
				return rc;
			}
			atomic_store(&n->reg_aid, weft_portal_aid(p).id);
			r->conn = weft__net_conn_hold(rt, weft_portal_aid(p));
			weft_portal_free(p);
			if (r->conn == NULL) {
				reg_req_rele(r); /* the I/O thread's */
				return WEFT_ECLOSED;
			}
		}
	}
	r->cid = REG_CID_BIT | (atomic_fetch_add(&n->reg_cid, 1) + 1);
	r->ev = weft__event_new();
	struct cmd *k = calloc(1, sizeof(*k));
	if (r->ev == NULL || k == NULL) {
		free(k);
		event_discard(r->ev);
		r->ev = NULL;
		reg_req_rele(r); /* the I/O thread's, unused */
		return WEFT_ENOMEM;
	}
	k->kind = CMD_REGISTRY;
	k->rreq = r;
	push_cmd(n, k);
	struct weft__event *ev = r->ev;
	weft_err rc = weft__event_wait(ev, deadline);
	if (rc == WEFT_OK)
		rc = r->rc;
	struct weft__task *t = weft__task_current();
	if (rc != WEFT_OK && rc != WEFT_ECANCELED && t)
		weft__task_set_error(
			t, weft__error_here(
				   rc == WEFT_EREMOTE ? WEFT_ERRKIND_REMOTE
				                      : WEFT_ERRKIND_TRANSPORT_CLOSED,
				   "RegistryError", "registry %s:%u: %s", host,
				   (unsigned)port,
				   r->why[0] ? r->why : weft_strerror(rc)));
	weft__event_rele(ev);
	return rc;
}

static struct reg_req *
reg_req_new(enum reg_op op)
{
	struct reg_req *r = calloc(1, sizeof(*r));
	if (r) {
		atomic_init(&r->refs, 2);
		r->op = op;
	}
	return r;
}

weft_err
weft_registry_open(weft_runtime *rt, const char *host, uint16_t port,
                   bool *is_registrar)
{
	if (host == NULL || port == 0 || strlen(host) > 255)
		return WEFT_EINVAL;
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return WEFT_ECLOSED;
	for (int attempt = 0; attempt < 3; attempt++) {
		weft_portal *p = NULL;
		weft_err rc = weft_net_connect(rt, host, port, 0, &p);
		if (rc == WEFT_OK) {
			struct weft__conn *c =
				weft__net_conn_hold(rt, weft_portal_aid(p));
			bool reg = c && c->peer_registrar;
			weft__net_conn_rele(c);
			if (!reg) {
				weft_portal_free(p);
				return WEFT_EPROTO; /* something else is there */
			}
			atomic_store(&n->reg_aid, weft_portal_aid(p).id);
			weft_portal_free(p);
			pthread_mutex_lock(&n->lock);
			snprintf(n->reg_host, sizeof(n->reg_host), "%s", host);
			n->reg_port = port;
			pthread_mutex_unlock(&n->lock);
			if (is_registrar)
				*is_registrar = false;
			return WEFT_OK;
		}
		if (rc != WEFT_ECLOSED && rc != WEFT_ETIMEDOUT)
			return rc;
		/* Nobody answers: we are the registrar (a process that binds
		 * the address first wins; the loser connects to it). */
		atomic_store(&n->is_registrar, true);
		if (weft_net_listen(rt, host, port, NULL) == WEFT_OK) {
			pthread_mutex_lock(&n->lock);
			snprintf(n->reg_host, sizeof(n->reg_host), "%s", host);
			n->reg_port = port;
			pthread_mutex_unlock(&n->lock);
			if (is_registrar)
				*is_registrar = true;
			WEFT_LOG(WEFT_LOG_INFO, "registry: registrar at %s:%u",
			         host, (unsigned)port);
			return WEFT_OK;
		}
		atomic_store(&n->is_registrar, false);
	}
	return WEFT_ECLOSED;
}

weft_err
weft_registry_register(weft_runtime *rt, weft_aid aid)
{
	struct weft__net *n = net_get(rt, false);
	weft_uid uid;
	if (n == NULL)
		return WEFT_ESTATE;
	if (weft_actor_uid(rt, aid, &uid) != WEFT_OK)
		return WEFT_ECLOSED;
	/* Others reach it at our listen addresses: open one if needed. */
	pthread_mutex_lock(&n->lock);
	bool listening = n->nlisten > 0;
	pthread_mutex_unlock(&n->lock);
	if (!listening && weft_net_listen(rt, "127.0.0.1", 0, NULL) != WEFT_OK)
		return WEFT_ECLOSED;
	struct reg_req *r = reg_req_new(REG_REGISTER);
	if (r == NULL)
		return WEFT_ENOMEM;
	r->reg.has_uid = true;
	fill_uid_wire(&uid, &r->reg.uid);
	r->reg.actor_id = wire_id_of(n, aid);
	pthread_mutex_lock(&n->lock);
	for (size_t i = 0; i < n->nlisten && i < 4; i++) {
		weft_v1_Addr *a = &r->reg.addrs[r->reg.addrs_count++];
		strcpy(a->transport, "tcp");
		snprintf(a->host, sizeof(a->host), "%s", n->listen_addrs[i].host);
		a->port = n->listen_addrs[i].port;
	}
	pthread_mutex_unlock(&n->lock);
	weft_err rc = reg_request(rt, r, weft__now_ns() + 5000000000ull);
	if (rc == WEFT_OK)
		weft__actor_set_registered(rt, aid, true);
	reg_req_rele(r);
	return rc;
}

static weft_err
unregister_uid(weft_runtime *rt, const weft_uid *uid, bool wait)
{
	struct reg_req *r = reg_req_new(REG_UNREGISTER);
	if (r == NULL)
		return WEFT_ENOMEM;
	r->reg.has_uid = true;
	fill_uid_wire(uid, &r->reg.uid);
	weft_err rc = reg_request(rt, r,
	                          weft__now_ns() +
	                                  (wait ? 5000000000ull : 1000000000ull));
	reg_req_rele(r);
	return rc;
}

weft_err
weft_registry_unregister(weft_runtime *rt, weft_aid aid)
{
	weft_uid uid;
	if (weft_actor_uid(rt, aid, &uid) != WEFT_OK)
		return WEFT_ECLOSED;
	weft__actor_set_registered(rt, aid, false);
	return unregister_uid(rt, &uid, true);
}

/* An actor that registered has exited (actor.c): unregister it without
 * making its worker wait (the I/O thread sends the request). */
void
weft__registry_actor_exit(weft_runtime *rt, const weft_uid *uid)
{
	struct weft__net *n = net_get(rt, false);
	if (n == NULL)
		return;
	struct reg_req *r = reg_req_new(REG_UNREGISTER);
	struct cmd *k = calloc(1, sizeof(*k));
	if (r == NULL || k == NULL) {
		free(r);
		free(k);
		return;
	}
	atomic_store(&r->refs, 1); /* nobody waits */
	r->reg.has_uid = true;
	fill_uid_wire(uid, &r->reg.uid);
	if (!atomic_load(&n->is_registrar)) {
		weft_aid via = {atomic_load(&n->reg_aid)};
		r->conn = weft__net_conn_hold(rt, via);
		if (r->conn == NULL) {
			/* No connection: the registrar dropped our entries
			 * when it ended. */
			free(r);
			free(k);
			return;
		}
	}
	r->cid = REG_CID_BIT | (atomic_fetch_add(&n->reg_cid, 1) + 1);
	k->kind = CMD_REGISTRY;
	k->rreq = r;
	push_cmd(n, k);
}

weft_err
weft_registry_find(weft_runtime *rt, const char *name, bool wait,
                   uint32_t timeout_ms, weft_portal **out)
{
	if (name == NULL || name[0] == 0 || strlen(name) >= WEFT_NAME_MAX ||
	    out == NULL)
		return WEFT_EINVAL;
	*out = NULL;
	struct weft__net *n = net_get(rt, false);
	if (n == NULL)
		return WEFT_ESTATE;
	struct reg_req *r = reg_req_new(REG_FIND);
	if (r == NULL)
		return WEFT_ENOMEM;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->wait = wait;
	uint64_t deadline =
		timeout_ms ? weft__now_ns() + (uint64_t)timeout_ms * 1000000u
		           : (wait ? 0 : weft__now_ns() + 5000000000ull);
	weft_err rc = reg_request(rt, r, deadline);
	if (rc == WEFT_OK && r->nfound == 0) {
		rc = WEFT_ENOENT;
		struct weft__task *t = weft__task_current();
		if (t)
			weft__task_set_error(
				t, weft__error_here(WEFT_ERRKIND_NO_SUCH_FUNCTION,
				                    "NoSuchActor",
				                    "no actor named '%s' is "
				                    "registered",
				                    name));
	}
	if (rc != WEFT_OK) {
		reg_req_rele(r);
		return rc;
	}
	/* The newest registration first. Ours (one of our listen
	 * addresses): a local portal; else a connection to its process. An
	 * entry whose process cannot be reached is stale: the registrar is
	 * told to drop it, and the next one is tried. */
	rc = WEFT_ENOENT;
	for (size_t e = 0; e < r->nfound && rc != WEFT_OK; e++) {
		const weft_v1_Registration *g = &r->found[e];
		bool local = false;
		pthread_mutex_lock(&n->lock);
		for (size_t i = 0; i < n->nlisten; i++)
			for (pb_size_t j = 0; j < g->addrs_count; j++)
				if (g->addrs[j].port == n->listen_addrs[i].port &&
				    strcmp(g->addrs[j].host,
				           n->listen_addrs[i].host) == 0)
					local = true;
		pthread_mutex_unlock(&n->lock);
		if (local) {
			weft_aid aid = {g->actor_id ? g->actor_id
			                            : atomic_load(&n->primary)};
			rc = weft_portal_open(rt, aid, out);
			if (rc == WEFT_ECLOSED)
				rc = WEFT_ENOENT; /* exited; unregistering */
			continue;
		}
		if (g->addrs_count == 0)
			continue;
		rc = weft_net_connect(rt, g->addrs[0].host,
		                      (uint16_t)g->addrs[0].port, g->actor_id, out);
		if (rc == WEFT_ECLOSED) {
			weft_uid stale;
			uid_from_wire(&g->uid, &stale);
			weft__registry_actor_exit(rt, &stale);
			rc = WEFT_ENOENT;
		} else if (rc != WEFT_OK) {
			break;
		}
	}
	if (rc == WEFT_ENOENT) {
		struct weft__task *t = weft__task_current();
		if (t)
			weft__task_set_error(
				t, weft__error_here(WEFT_ERRKIND_NO_SUCH_FUNCTION,
				                    "NoSuchActor",
				                    "no live actor named '%s' is "
				                    "registered",
				                    name));
	}
	reg_req_rele(r);
	return rc;
}

weft_err
weft_registry_list(weft_runtime *rt, weft_uid *uids, size_t cap, size_t *count)
{
	struct reg_req *r = reg_req_new(REG_FIND);
	if (r == NULL)
		return WEFT_ENOMEM;
	strcpy(r->name, "*");
	weft_err rc = reg_request(rt, r, weft__now_ns() + 5000000000ull);
	if (rc == WEFT_OK) {
		size_t k = 0;
		for (size_t i = 0; i < r->nfound && k < cap; i++)
			uid_from_wire(&r->found[i].uid, &uids[k++]);
		if (count)
			*count = r->nfound;
	}
	reg_req_rele(r);
	return rc;
}

/* ------------------------------------------------------------ references */

weft_err
weft_actor_ref_of(weft_runtime *rt, weft_aid aid, weft_actor_ref *out)
{
	memset(out, 0, sizeof(*out));
	struct weft__actor *a;
	if (aid.id == 0 || weft__actor_hold(rt, aid, &a) != WEFT_OK)
		return WEFT_ECLOSED;
	out->uid = a->uid;
	if (a->proxy_fn) {
		/* A remote actor: its own process's address. */
		struct proxy *p = a->proxy;
		struct weft__conn *c = p->conn;
		out->actor_id = p->remote_id;
		out->pid = -1;
		if (c->npeer_addrs) {
			snprintf(out->host, sizeof(out->host), "%.63s",
			         c->peer_addrs[0].host);
			out->port = c->peer_addrs[0].port;
		} else if (c->dialer) {
			snprintf(out->host, sizeof(out->host), "%.63s", c->host);
			out->port = c->port;
		}
		weft__actor_rele(a);
		return out->port ? WEFT_OK : WEFT_ECLOSED;
	}
	weft__actor_rele(a);
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return WEFT_ECLOSED;
	pthread_mutex_lock(&n->lock);
	bool listening = n->nlisten > 0;
	pthread_mutex_unlock(&n->lock);
	if (!listening && weft_net_listen(rt, "127.0.0.1", 0, NULL) != WEFT_OK)
		return WEFT_ECLOSED;
	pthread_mutex_lock(&n->lock);
	snprintf(out->host, sizeof(out->host), "%.63s", n->listen_addrs[0].host);
	out->port = n->listen_addrs[0].port;
	pthread_mutex_unlock(&n->lock);
	out->actor_id = wire_id_of(n, aid);
	out->pid = (int32_t)getpid();
	out->runtime = (uint64_t)(uintptr_t)rt;
	return WEFT_OK;
}

weft_err
weft_portal_open_ref(weft_runtime *rt, const weft_actor_ref *ref,
                     weft_portal **out)
{
	*out = NULL;
	if (ref->pid == (int32_t)getpid() &&
	    ref->runtime == (uint64_t)(uintptr_t)rt) {
		struct weft__net *n = net_get(rt, false);
		weft_aid aid = {ref->actor_id ? ref->actor_id
		                : n ? atomic_load(&n->primary) : 0};
		weft_uid u;
		if (aid.id == 0 || weft_actor_uid(rt, aid, &u) != WEFT_OK ||
		    memcmp(u.uuid, ref->uid.uuid, 16) != 0)
			return WEFT_ECLOSED;
		return weft_portal_open(rt, aid, out);
	}
	if (ref->port == 0 || ref->host[0] == 0)
		return WEFT_EINVAL;
	return weft_net_connect(rt, ref->host, ref->port, ref->actor_id, out);
}

uint16_t
weft__net_registry_addr(weft_runtime *rt, char *host, size_t cap)
{
	struct weft__net *n = net_get(rt, false);
	if (n == NULL)
		return 0;
	pthread_mutex_lock(&n->lock);
	uint16_t port = n->reg_port;
	snprintf(host, cap, "%s", n->reg_host);
	pthread_mutex_unlock(&n->lock);
	return port;
}

void
weft__net_registry_use(weft_runtime *rt, const char *host, uint16_t port)
{
	struct weft__net *n = net_get(rt, true);
	if (n == NULL)
		return;
	pthread_mutex_lock(&n->lock);
	snprintf(n->reg_host, sizeof(n->reg_host), "%s", host);
	n->reg_port = port;
	pthread_mutex_unlock(&n->lock);
}

/* weft/net.h - runtimes of different processes, connected over TCP.
 *
 * A runtime that listens or connects gets an I/O thread running a libuv
 * loop; workers never call libuv. Between two processes there is at most
 * one connection (either may have dialed), shared by all their actors. A
 * remote actor is represented locally by a proxy actor: a portal on it
 * (weft_net_connect) runs functions, opens contexts and streams and cancels
 * exactly as a portal on a local actor does (docs/semantics.md §9); the
 * proxy turns the runtime's messages into envelopes of docs/protocol.md.
 *
 * When a connection breaks (EOF, reset, heartbeat timeout, a protocol
 * error), every context over it ends at once: a caller's blocked call fails
 * with WEFT_EREMOTE and an error of kind TRANSPORT_CLOSED naming the peer;
 * a callee's task is cancelled. Nothing received before the break is lost.
 *
 * Thread: every function may be called from any thread, including tasks
 * (a task that blocks here yields its worker) and threads outside the
 * runtime. */
#ifndef WEFT_NET_H
#define WEFT_NET_H

#include <stddef.h>
#include <stdint.h>

#include "weft/actor.h"
#include "weft/context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_net_opts {
	/* Shared secret a dialer must present (docs/protocol.md §5.3); at
	 * most 64 bytes. Empty: this end accepts any dialer, and dials with
	 * no token. */
	const uint8_t *auth_token;
	size_t auth_token_len;
	/* Send something at least this often when idle (ping); a peer silent
	 * for 3 x its own announced interval is dead. 0: 5000. */
	uint32_t heartbeat_ms;
	/* Largest envelope this end accepts. 0: 16 MiB. */
	uint32_t max_frame;
	/* Bound on connect + handshake. 0: 5000. */
	uint32_t connect_timeout_ms;
	/* Bytes queued for one connection beyond which stream senders to it
	 * wait (backpressure). 0: 4 MiB. */
	size_t send_queue_max;
} weft_net_opts;

WEFT_EXTERN void weft_net_opts_init(weft_net_opts *o);

/* Sets the options (copied). Only before the first listen or connect:
 * WEFT_ESTATE afterwards. */
WEFT_EXTERN weft_err weft_net_configure(weft_runtime *rt,
                                        const weft_net_opts *o);

/* The actor that peers reach as wire actor id 0 and whose uid this
 * process announces in its Hello. Without one, the Hello carries a
 * process uid ("weft") and a start for id 0 is refused as
 * NO_SUCH_FUNCTION. */
WEFT_EXTERN weft_err weft_net_set_primary(weft_runtime *rt, weft_aid aid);

/* Accepts connections on host:port (an IPv4 or IPv6 literal, or a name;
 * port 0 picks a free one, returned in *bound_port, which may be NULL).
 * WEFT_EINVAL for an unparseable host, WEFT_ECLOSED if it cannot bind. */
WEFT_EXTERN weft_err weft_net_listen(weft_runtime *rt, const char *host,
                                     uint16_t port, uint16_t *bound_port);

/* A portal on actor `actor_id` (0: the primary) of the process listening
 * at host:port, connecting and handshaking first unless a connection to
 * that process is already open. Blocks the calling task or thread.
 * WEFT_ECLOSED: refused, unreachable, or closed before the handshake;
 * WEFT_EPROTO: the handshake was refused (wrong version or token; from a
 * task, weft_task_error() holds the kind's name and the peer's message);
 * WEFT_ETIMEDOUT: connect_timeout_ms passed. The portal is the caller's
 * (weft_portal_free). */
WEFT_EXTERN weft_err weft_net_connect(weft_runtime *rt, const char *host,
                                      uint16_t port, uint64_t actor_id,
                                      weft_portal **out);

/* The id a peer uses for local actor `aid` (Envelope.to_actor): 0 for the
 * primary. Hand it to a peer out of band or through the registry. */
WEFT_EXTERN uint64_t weft_net_actor_id(weft_runtime *rt, weft_aid aid);

typedef struct weft_net_stats {
	uint64_t connections_open;
	uint64_t connections_accepted;
	uint64_t connections_dialed;
	uint64_t handshakes_refused; /* by either end */
	uint64_t protocol_errors;    /* connections closed for bad input */
	uint64_t heartbeat_timeouts;
	uint64_t frames_in, frames_out;
	uint64_t bytes_in, bytes_out;
} weft_net_stats;

WEFT_EXTERN void weft_net_stats_get(weft_runtime *rt, weft_net_stats *out);

/* ---- actor references that travel between processes ----
 *
 * A weft_aid means something only in its own process. A weft_actor_ref
 * names an actor from anywhere: its uid, the process's pid and listen
 * address, and its wire actor id. Send one in a payload (it is plain
 * bytes) and open a portal on it in any process of the tree. */
typedef struct weft_actor_ref {
	weft_uid uid;
	uint64_t actor_id;  /* in its process (0: the primary) */
	int32_t pid;        /* its process */
	uint16_t port;      /* where its process listens (127.0.0.1 or host) */
	char host[64];
	uint64_t runtime;   /* distinguishes runtimes within one process */
} weft_actor_ref;

/* A reference to `aid`, local or a proxy of a remote actor. For a local
 * actor this process listens on 127.0.0.1 first if it listens nowhere.
 * WEFT_ECLOSED if the actor has gone. */
WEFT_EXTERN weft_err weft_actor_ref_of(weft_runtime *rt, weft_aid aid,
                                       weft_actor_ref *out);
/* A portal (the caller's) on the referenced actor: local when it lives in
 * this runtime, else through a connection to its process. WEFT_ECLOSED if
 * it has gone (a local actor with another uid is gone too). */
WEFT_EXTERN weft_err weft_portal_open_ref(weft_runtime *rt,
                                          const weft_actor_ref *ref,
                                          weft_portal **out);

/* ---- the registry: finding actors by name (docs/protocol.md §7.5) ----
 *
 * One process of a tree is the registrar; the others send it their
 * registrations. An entry is dropped when its actor exits (after a cancel
 * or SIGINT too) or when the registering process's connection to the
 * registrar ends (stale addresses), and replaced when another actor
 * registers at the same process address and actor id. */

/* Joins the registry at host:port: if a registrar answers there this
 * process uses it, otherwise it becomes the registrar, listening there
 * (*is_registrar, may be NULL, says which). WEFT_EPROTO if something that
 * is not a registrar answers. */
WEFT_EXTERN weft_err weft_registry_open(weft_runtime *rt, const char *host,
                                        uint16_t port, bool *is_registrar);
/* Registers a live local actor under its uid (its name need not be
 * unique). This process listens on 127.0.0.1 first if it listens nowhere
 * yet. WEFT_ESTATE before weft_registry_open. */
WEFT_EXTERN weft_err weft_registry_register(weft_runtime *rt, weft_aid aid);
WEFT_EXTERN weft_err weft_registry_unregister(weft_runtime *rt, weft_aid aid);
/* A portal (the caller's) on the most recently registered actor named
 * `name`, local or remote. `wait`: until one registers, bounded by
 * timeout_ms (0: no bound); without wait, WEFT_ENOENT when none is. */
WEFT_EXTERN weft_err weft_registry_find(weft_runtime *rt, const char *name,
                                        bool wait, uint32_t timeout_ms,
                                        weft_portal **out);
/* The uids registered (a snapshot): up to `cap` into uids, the total in
 * *count. */
WEFT_EXTERN weft_err weft_registry_list(weft_runtime *rt, weft_uid *uids,
                                        size_t cap, size_t *count);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_NET_H */

/* weft/context.h - portals, exposed functions, contexts and streams:
 * tractor's linked inter-actor contexts in C.
 *
 * An actor exposes functions by name ("namespace:function"). Another actor's
 * task reaches it through a portal: it runs a function for one result, or
 * opens a context to it. In a context the callee sends `started`, either
 * side may open a bidirectional stream, the callee ends with a result or an
 * error, and either side may cancel. docs/semantics.md says, case by case,
 * what each call returns on each side; in short:
 *
 *   - WEFT_EREMOTE: a boxed error from the peer (weft_task_error(), and the
 *     context's remote error): an application error, a ContextCancelled
 *     (the canceller is in the record), a StreamOverrun, a relayed error.
 *   - WEFT_ECANCELED: this task (or a scope it is in) was cancelled.
 *   - A cancel this side asked for is absorbed: the exit (and result) call
 *     returns WEFT_OK and weft_ctx_cancel_acked() is true.
 *
 * Ownership: a weft_ctx the caller opened is the caller's until
 * weft_ctx_free(); the callee's weft_ctx belongs to the runtime and is valid
 * while the function runs. A weft_stream belongs to its context. Payloads
 * returned through a weft_payload are either the context's (valid until
 * weft_ctx_free, said per call) or the caller's, freed with
 * weft_payload_free().
 *
 * Thread: every call here is "task only" (from inside a weft task; see
 * weft/task.h) unless marked otherwise, and a context, stream or portal is
 * used only by tasks of the actor that made it. */
#ifndef WEFT_CONTEXT_H
#define WEFT_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/actor.h"
#include "weft/error.h"
#include "weft/task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes, with an optional type URL (shaped like google.protobuf.Any). */
typedef struct weft_payload {
	const uint8_t *data;
	size_t len;
	const char *type_url; /* NULL: untyped */
	void *owner;          /* runtime-private */
} weft_payload;

/* Frees a payload the caller owns; sets it empty. Any thread. */
WEFT_EXTERN void weft_payload_free(weft_payload *p);

typedef struct weft_ctx weft_ctx;
typedef struct weft_stream weft_stream;
typedef struct weft_portal weft_portal;

/* ---- exposed functions (callee side) ---- */

/* Runs as a new task of the callee actor, for a portal run or a context.
 * Return WEFT_OK to end with the value given to weft_ctx_return() (empty if
 * none); any other code fails the call with the task's error (weft_fail()
 * makes an application error; an error from a call it made is relayed). */
typedef weft_err (*weft_fn)(weft_ctx *ctx, const weft_payload *args,
                            void *arg);

typedef struct weft_function {
	const char *name; /* "namespace:function" */
	weft_fn fn;
	void *arg;
} weft_function;

/* Callee: sends `started` with a value. Once only (a second call is a
 * RuntimeError: WEFT_ESTATE); not in a portal run. */
WEFT_EXTERN weft_err weft_ctx_started(weft_ctx *ctx, const void *data,
                                      size_t len);
/* Callee: the value sent as the result when the function returns
 * WEFT_OK (copied; a later call replaces it). */
WEFT_EXTERN weft_err weft_ctx_return(weft_ctx *ctx, const void *data,
                                     size_t len);

/* ---- portals ---- */

/* A handle on an actor for running its functions, opening contexts to it
 * and cancelling it. Any thread may open and free one. */
WEFT_EXTERN weft_err weft_portal_open(weft_runtime *rt, weft_aid aid,
                                      weft_portal **out);
WEFT_EXTERN void weft_portal_free(weft_portal *p);
/* Any thread. */
WEFT_EXTERN weft_aid weft_portal_aid(const weft_portal *p);

/* Runs `fn` in the portal's actor and waits for its one result, owned by
 * the caller (*result may be NULL to drop it). WEFT_EREMOTE with the boxed
 * error if it failed (kind NO_SUCH_FUNCTION for a name it does not expose).
 * If the call is cancelled, the callee is told and WEFT_ECANCELED
 * returned. */
WEFT_EXTERN weft_err weft_portal_run(weft_portal *p, const char *fn,
                                     const void *args, size_t len,
                                     weft_payload *result);

/* Asks the portal's whole actor to cancel itself: every context into it
 * ends with ContextCancelled naming this actor as the canceller, then it
 * exits. Waits at most 0.5 s (weft_config.cancel_actor_timeout_ms) for the
 * acknowledgement; *acked (may be NULL) tells whether it came. WEFT_OK
 * either way. */
WEFT_EXTERN weft_err weft_portal_cancel_actor(weft_portal *p, bool *acked);

/* For portals from weft_nursery_run_in_actor(): waits for the function's
 * result (owned by the portal) or returns its boxed error. */
WEFT_EXTERN weft_err weft_portal_result(weft_portal *p, weft_payload *result);

/* ---- contexts (caller side) ---- */

typedef struct weft_ctx_opts {
	bool allow_overruns;      /* queue instead of refusing overruns */
	unsigned msg_buffer_size; /* per-context receive buffer; 0: 64 */
} weft_ctx_opts;

/* Opens a context to `fn` in the portal's actor and waits for `started`.
 * On WEFT_OK *ctx is open and *first (may be NULL) is the started value,
 * owned by the context. On failure *ctx is NULL: WEFT_EREMOTE if the callee
 * failed before started (or does not expose fn); WEFT_ESTATE
 * (RuntimeError, "Invalid Operation") for a context with the current actor
 * itself, before anything is sent; WEFT_EPROTO (MessagingError) if the
 * callee returned without calling started(); WEFT_ECANCELED if this task was
 * cancelled while waiting (the callee is cancelled too).
 * The context is a cancel scope: a remote error arriving while it is open
 * cancels what the task is blocked in (unless it is blocked on this very
 * context, which then returns the error itself). Exit contexts in the
 * reverse order of opening. */
WEFT_EXTERN weft_err weft_open_context(weft_portal *p, const char *fn,
                                       const void *args, size_t len,
                                       const weft_ctx_opts *opts,
                                       weft_ctx **ctx, weft_payload *first);

/* Caller: waits for the final outcome (draining the context as
 * semantics.md §10 says). WEFT_OK with *result (may be NULL; owned by the
 * context) the callee's value, or with an empty result when our own cancel
 * was acknowledged (absorbed: weft_ctx_cancel_acked()). WEFT_EREMOTE with
 * any other remote error. The same outcome on every later call. */
WEFT_EXTERN weft_err weft_ctx_result(weft_ctx *ctx, weft_payload *result);

/* Caller: ends the context (semantics.md §7 steps 5-8). `body_rc` is how
 * the caller's body ended: WEFT_OK, or the code of the call that failed
 * (the task's current error says why). WEFT_OK: the result is waited for
 * (as weft_ctx_result). A ContextCancelled from this context: absorbed if
 * it acknowledges our own cancel, else returned. Any other error: the
 * callee is cancelled, its acknowledgement absorbed, and body_rc returned
 * with the task's error restored. Closes an open stream first. Messages
 * arriving later are dropped. The context stays readable until
 * weft_ctx_free(). */
WEFT_EXTERN weft_err weft_ctx_exit(weft_ctx *ctx, weft_err body_rc);

/* Caller: frees an exited context (exits it first, with WEFT_OK, if
 * needed). */
WEFT_EXTERN void weft_ctx_free(weft_ctx *ctx);

/* Either side. Caller: asks the callee to cancel and waits at most 0.616 s
 * (shielded from our own cancellation) for its acknowledgement. Callee:
 * cancels its own function's scope (its next blocking call returns
 * WEFT_ECANCELED). Always sets cancel_called. */
WEFT_EXTERN weft_err weft_ctx_cancel(weft_ctx *ctx);

/* ---- context state (either side; any task of the owning actor) ---- */

WEFT_EXTERN bool weft_ctx_cancel_called(const weft_ctx *ctx);
/* semantics.md §9.3: our cancel was acknowledged by our peer. */
WEFT_EXTERN bool weft_ctx_cancel_acked(const weft_ctx *ctx);
/* The actor blamed for the cancellation (§9.2); NULL if none. */
WEFT_EXTERN const weft_uid *weft_ctx_canceller(const weft_ctx *ctx);
/* The first error received from the peer; NULL if none. */
WEFT_EXTERN const weft_error *weft_ctx_remote_error(const weft_ctx *ctx);
/* The error this side's body or function ended with, or an absorbed
 * self-cancel; NULL if none. */
WEFT_EXTERN const weft_error *weft_ctx_local_error(const weft_ctx *ctx);
/* The remote error if it is a boxed remote error, else the local one. */
WEFT_EXTERN const weft_error *weft_ctx_maybe_error(const weft_ctx *ctx);
/* true once a result was received (*result, may be NULL, then the value,
 * owned by the context). */
WEFT_EXTERN bool weft_ctx_has_result(const weft_ctx *ctx,
                                     weft_payload *result);
/* The peer's uid; the context id. */
WEFT_EXTERN const weft_uid *weft_ctx_peer_uid(const weft_ctx *ctx);
WEFT_EXTERN uint64_t weft_ctx_cid(const weft_ctx *ctx);
/* The context of the current task (callee) or the innermost one the task
 * has open (caller); NULL if none (tractor's current_ipc_ctx()). */
WEFT_EXTERN weft_ctx *weft_current_ctx(void);

/* ---- streams ---- */

typedef struct weft_stream_opts {
	/* Override the context's settings when nonzero/true. */
	bool allow_overruns;
	unsigned msg_buffer_size;
} weft_stream_opts;

/* Opens the context's stream (one-shot). Callee: only after started
 * (RuntimeError: WEFT_ESTATE). After a cancel on this side: the recorded
 * remote error if any (even our own acknowledged cancel: WEFT_EREMOTE),
 * else a RuntimeError (WEFT_ESTATE). A second open: WEFT_ECLOSED. */
WEFT_EXTERN weft_err weft_ctx_open_stream(weft_ctx *ctx,
                                          const weft_stream_opts *opts,
                                          weft_stream **out);

/* Sends one item. WEFT_EREMOTE if a remote error is recorded (not for an
 * acknowledged self-cancel), WEFT_EEOC after the peer's end of stream,
 * WEFT_ECLOSED after weft_stream_close(). */
WEFT_EXTERN weft_err weft_stream_send(weft_stream *s, const void *data,
                                      size_t len);

/* Receives the next item into *out (owned by the caller). WEFT_EEOC when
 * the peer closed its half (and on every later call); a recorded remote
 * error first (WEFT_EREMOTE, even our own acknowledged cancel). */
WEFT_EXTERN weft_err weft_stream_recv(weft_stream *s, weft_payload *out);

/* Ends this side's half: drops what is queued, sends Stop, and marks the
 * stream ended. Idempotent. The stream stays valid (its calls return
 * WEFT_ECLOSED / WEFT_EEOC) until its context is freed. */
WEFT_EXTERN weft_err weft_stream_close(weft_stream *s);

/* ---- broadcast: several local tasks each receive every item ---- */

typedef struct weft_bcast weft_bcast;

/* Subscribes to `s`: the subscriber receives every item that arrives from
 * now on, within a window of the stream's buffer size. Once any
 * subscription exists, weft_stream_recv() on `s` reads through the
 * broadcaster too. A subscriber that falls behind gets WEFT_ELAGGED on its
 * next receive (unless raise_on_lag is false) and continues from the
 * oldest item retained. WEFT_ECLOSED if the stream has ended. */
WEFT_EXTERN weft_err weft_stream_subscribe(weft_stream *s, bool raise_on_lag,
                                           weft_bcast **out);
WEFT_EXTERN weft_err weft_bcast_recv(weft_bcast *b, weft_payload *out);
WEFT_EXTERN void weft_bcast_close(weft_bcast *b);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_CONTEXT_H */

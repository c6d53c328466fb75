/* weft/actor.h - actors: spawning them, sending them messages, exiting.
 *
 * An actor is a handler, a state pointer and a mailbox. Its handler sees one
 * message at a time and never runs on two workers at once; consecutive turns
 * may run on different workers (work stealing), and everything the handler
 * wrote in one turn is visible in the next.
 *
 * Unless noted, any thread may call these functions, including threads
 * outside the runtime. */
#ifndef WEFT_ACTOR_H
#define WEFT_ACTOR_H

#include <stddef.h>
#include <stdint.h>

#include "weft/errors.h"
#include "weft/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An actor's address. Copy it freely: it never dangles; once the actor has
 * exited, every call that takes it returns WEFT_ECLOSED. Zero is no actor. */
typedef struct weft_aid {
	uint64_t id;
} weft_aid;

#define WEFT_NAME_MAX 32 /* bytes of an actor name, the NUL included */

/* An actor's identity, unique per instance (tractor's uid): its name and a
 * random UUID drawn at spawn. */
typedef struct weft_uid {
	char name[WEFT_NAME_MAX];
	uint8_t uuid[16];
} weft_uid;

/* "name:xxxxxxxx" (the first 4 UUID bytes in hex) into buf; returns buf. */
WEFT_EXTERN char *weft_uid_format(const weft_uid *uid, char *buf,
                                  size_t len);

/* A message: this header, then `size` bytes at weft_msg_data(). */
typedef struct weft_msg {
	void *weft_link;  /* runtime-private: the mailbox link */
	uint32_t type;    /* the caller's tag; values >= WEFT_MSG_TYPE_RESERVED
	                   * belong to the runtime */
	uint32_t size;    /* read-only: bytes of data, fixed at allocation */
	uint64_t word;    /* free for the caller: a small payload needs no data */
	weft_aid from;    /* free for the caller: by convention the sender */
} weft_msg;

#define WEFT_MSG_TYPE_RESERVED 0xFFFF0000u

static inline void *
weft_msg_data(weft_msg *m)
{
	return (void *)(m + 1);
}

/* A message with `size` bytes of uninitialised data, type `type`, word 0 and
 * from {0}. NULL when out of memory. The caller owns it until a successful
 * weft_send(). */
WEFT_EXTERN weft_msg *weft_msg_new(uint32_t type, uint32_t size);

/* Frees a message the caller owns. NULL is ignored. */
WEFT_EXTERN void weft_msg_free(weft_msg *m);

/* The running handler's view of its actor. Valid only during the handler
 * call it was passed to. */
typedef struct weft_turn weft_turn;

/* Called for each message, one at a time. The handler owns `msg`: it frees
 * it, keeps it, or passes it on with weft_send().
 * Thread: a worker of the actor's runtime. */
typedef void (*weft_handler_fn)(weft_turn *turn, weft_msg *msg, void *state);

typedef enum weft_exit_reason {
	WEFT_EXIT_NORMAL = 0, /* the handler called weft_exit() */
	WEFT_EXIT_STOPPED,    /* weft_stop() was handled */
	WEFT_EXIT_SHUTDOWN,   /* weft_runtime_close() stopped it */
} weft_exit_reason;

/* Called once, as the actor's last act, on a worker, after its queued
 * messages were freed; a good place to free `state`. The actor can no
 * longer be sent to.
 * Thread: a worker of the actor's runtime. */
typedef void (*weft_exit_fn)(weft_aid self, void *state,
                             weft_exit_reason why);

struct weft_function; /* see weft/context.h */

typedef struct weft_spawn_opts {
	const char *name;        /* < WEFT_NAME_MAX bytes; NULL: "actor" */
	/* Sees the caller's own message types. May be NULL for an actor that
	 * only hosts tasks and exposed functions (messages of the caller's
	 * types are then freed unread). */
	weft_handler_fn handler;
	void *state;             /* passed to handler and on_exit; not owned */
	weft_exit_fn on_exit;    /* may be NULL */
	unsigned batch;          /* messages per turn; 0: the runtime's */
	/* Functions other actors may run or open contexts to, by name. The
	 * array is copied; the names must stay valid while the actor lives. */
	const struct weft_function *functions;
	size_t nfunctions;
} weft_spawn_opts;

/* Starts an actor. It runs when its first message arrives. On WEFT_OK
 * *out (may be NULL) is its address. WEFT_ECLOSED once the runtime is
 * closing; WEFT_EINVAL with a name too long or a function without a name
 * or body. */
WEFT_EXTERN weft_err weft_spawn(weft_runtime *rt, const weft_spawn_opts *opts,
                                weft_aid *out);

/* Queues `msg` for `to`; never blocks. On WEFT_OK the runtime owns `msg`; on
 * error the caller still does. WEFT_ECLOSED if `to` has exited or never
 * existed; WEFT_EINVAL for a reserved type.
 * A message accepted while the actor is exiting is freed unread (counted
 * in weft_runtime_stats.messages_dropped), as when an actor exits with
 * messages queued. */
WEFT_EXTERN weft_err weft_send(weft_runtime *rt, weft_aid to, weft_msg *msg);

/* Asks `to` to exit after handling the messages queued before this request;
 * later ones are dropped. Its on_exit gets WEFT_EXIT_STOPPED. Returns at
 * once; WEFT_ECLOSED if it has already exited. */
WEFT_EXTERN weft_err weft_stop(weft_runtime *rt, weft_aid to);

/* Copies the uid of a live actor. WEFT_ECLOSED if it has exited. */
WEFT_EXTERN weft_err weft_actor_uid(weft_runtime *rt, weft_aid aid,
                                    weft_uid *out);

/* Thread: handler only (these take the turn). */
WEFT_EXTERN weft_aid weft_self(const weft_turn *turn);
WEFT_EXTERN weft_runtime *weft_turn_runtime(const weft_turn *turn);
WEFT_EXTERN const weft_uid *weft_turn_uid(const weft_turn *turn);
/* The actor exits when this handler returns: queued messages are freed
 * unread, on_exit gets WEFT_EXIT_NORMAL. */
WEFT_EXTERN void weft_exit(weft_turn *turn);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_ACTOR_H */

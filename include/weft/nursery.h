/* weft/nursery.h - actor nurseries: structured lifetimes for actors.
 *
 * A nursery starts actors and supervises them one-cancels-all: an error in
 * a run-in-actor child, or in the body, cancels every child; the exit
 * returns the single error unchanged, or an aggregate (kind GROUP) when
 * there are several. Daemon children cancelled during teardown add no
 * error. No child outlives the nursery's exit.
 *
 * Thread: task only (see weft/task.h), and a nursery is used only by the
 * task that opened it. */
#ifndef WEFT_NURSERY_H
#define WEFT_NURSERY_H

#include "weft/context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_nursery weft_nursery;

/* Where a nursery starts an actor. */
typedef enum weft_spawn_where {
	WEFT_SPAWN_DEFAULT = 0, /* weft_config.spawn_where */
	WEFT_SPAWN_IN_PROCESS,  /* an actor of this runtime */
	/* A child process: a fork of this program running its own runtime
	 * that hosts the actor (same functions and arguments, a copy of the
	 * memory at the spawn), connected back to this one over TCP
	 * (weft/net.h). The portal and every semantic are the same as
	 * in-process; the child exits when its actor does, cancels itself
	 * if this process dies, and is reaped by the nursery. */
	WEFT_SPAWN_PROCESS,
	/* A child process that executes a program afresh: this program
	 * (/proc/self/exe) unless weft_config.child_program names another.
	 * The program must call weft_expose() for its functions and then
	 * weft_main() first thing in main() (weft/process.h); the child's
	 * actor serves the functions of the namespaces of `functions` that
	 * the child program exposes (their `fn`/`arg` here are not used). */
	WEFT_SPAWN_EXEC,
} weft_spawn_where;

typedef struct weft_actor_opts {
	const char *name;
	const weft_function *functions;
	size_t nfunctions;
	weft_spawn_where where;
} weft_actor_opts;

WEFT_EXTERN weft_err weft_nursery_open(weft_nursery **out);

/* The process id of the child process hosting the actor of a portal that a
 * nursery started with WEFT_SPAWN_PROCESS or _EXEC (while the nursery is
 * open); 0
 * for an in-process actor. Thread: the nursery's task. */
WEFT_EXTERN int weft_portal_pid(weft_portal *p);

/* Starts a daemon actor; it lives until cancelled (weft_portal_cancel_actor
 * or the nursery's teardown). *portal is owned by the nursery and freed by
 * weft_nursery_exit(). */
WEFT_EXTERN weft_err weft_nursery_start_actor(weft_nursery *n,
                                              const weft_actor_opts *opts,
                                              weft_portal **portal);

/* Starts an actor and runs `fn` in it as its one main call. A result ends
 * the actor gracefully (read it with weft_portal_result()); an error is
 * recorded under the child's uid and cancels the whole nursery. This
 * portal is the caller's: it stays valid (and its outcome readable) after
 * weft_nursery_exit(), until weft_portal_free(). */
WEFT_EXTERN weft_err weft_nursery_run_in_actor(weft_nursery *n,
                                               const weft_actor_opts *opts,
                                               const char *fn,
                                               const void *args, size_t len,
                                               weft_portal **portal);

/* Cancels every child: all get an actor cancel at once; one that has not
 * acknowledged within weft_config.nursery_cancel_timeout_ms (3 s) is
 * stopped hard. Returns when every child acknowledged or was stopped. */
WEFT_EXTERN weft_err weft_nursery_cancel(weft_nursery *n);

/* Ends the nursery. `body_rc` is how the body ended (an error is recorded
 * under this actor's uid and cancels every child). Without errors, waits
 * for every run-in-actor result and for every child to exit. Returns
 * WEFT_OK, the one error's code (the task's error is that error), or
 * WEFT_EFAILED with an aggregate (kind GROUP) as the task's error. Once the
 * teardown has begun, a child that ends with its effects (a
 * ContextCancelled, a Cancelled, or a TransportClosed because a sibling
 * exited first) adds no error. Cancelling the exiting task records a
 * Cancelled as the body's error and cancels every child; the exit then
 * still waits for each one (no child outlives it). Frees the nursery and its daemon portals. */
WEFT_EXTERN weft_err weft_nursery_exit(weft_nursery *n, weft_err body_rc);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_NURSERY_H */

/* weft/runtime.h - opening and closing a runtime: the worker pool that runs
 * every actor of this process.
 *
 * Unless noted, any thread may call these functions, including threads that
 * the runtime did not start. */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

#include "weft/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_runtime weft_runtime; /* opaque; owned by the caller */

/* Options. Initialise with weft_config_init(), then set what you need. */
typedef struct weft_config {
	/* Worker threads. 0: one per online core. */
	unsigned workers;
	/* Messages an actor may handle in one turn before the worker moves on,
	 * so that a flooded actor cannot starve the others. 0: 64. */
	unsigned batch;
	/* Deterministic mode: one worker, and the order in which runnable
	 * actors run is drawn from `seed`. The same program with the same seed
	 * runs its actors in the same order (threads outside the runtime
	 * still race). The seed is logged at start. */
	bool deterministic;
	uint64_t seed;
	/* How long an idle worker keeps looking for work before it parks, in
	 * microseconds. Parked workers use no CPU. 0: 50. */
	unsigned spin_us;
	/* Log threshold (enum weft_log_level); negative: take it from the
	 * WEFT_LOG environment variable, else WEFT_LOG_WARNING. */
	int log_level;
	/* tractor's timing constants (its Context.cancel, Portal.cancel_timeout
	 * and ActorNursery.cancel bounds), in milliseconds;
	 * 0 means the default given. */
	unsigned ctx_cancel_timeout_ms;     /* 616: wait for a cancel ack */
	unsigned cancel_actor_timeout_ms;   /* 500: wait for an actor cancel */
	unsigned nursery_cancel_timeout_ms; /* 3000: graceful teardown */
	/* Where nurseries start actors whose options say
	 * WEFT_SPAWN_DEFAULT (enum weft_spawn_where in weft/nursery.h).
	 * weft_config_init() reads the environment variable WEFT_SPAWN
	 * ("process", "exec" or "in-process"); in-process if unset. */
	int spawn_where;
	/* After SIGTERM, how long a child process gets before SIGKILL (the
	 * last steps of the teardown ladder). 0: 1000. */
	unsigned sigterm_timeout_ms;
	/* The program WEFT_SPAWN_EXEC children run; NULL: this program. */
	const char *child_program;
} weft_config;

/* tractor's Ctrl-C, opt-in: installs a SIGINT handler for this process.
 * The first SIGINT interrupts every weft_task_run() of `rt` in progress:
 * its actor's tasks are cancelled by the actor itself (so its nurseries
 * cancel their children, in-process or child processes, naming it as the
 * canceller), and weft_task_run() returns WEFT_EINTERRUPT with a
 * KeyboardInterrupt error. A second SIGINT SIGKILLs every child process
 * this process spawned and exits with status 130. Child processes ignore
 * SIGINT (a terminal's Ctrl-C reaches the whole process group): their
 * parent cancels them. One runtime per process handles SIGINT; the last
 * call wins. Thread: any, typically main before weft_task_run(). */
WEFT_EXTERN weft_err weft_runtime_handle_sigint(weft_runtime *rt);

/* Fills `cfg` with the defaults. */
WEFT_EXTERN void weft_config_init(weft_config *cfg);

/* Starts the worker threads. `cfg` may be NULL for the defaults; it is
 * copied. On WEFT_OK *out is a runtime the caller must close. */
WEFT_EXTERN weft_err weft_runtime_open(const weft_config *cfg,
                                       weft_runtime **out);

/* What weft_runtime_close() found. */
typedef struct weft_close_report {
	/* Actors still alive when close began; each was stopped with
	 * WEFT_EXIT_SHUTDOWN and its on_exit ran. */
	uint64_t actors_stopped;
	/* Messages still queued in those actors' mailboxes, freed unread. */
	uint64_t messages_dropped;
} weft_close_report;

/* Stops every live actor (each exits at the start of its next turn with
 * WEFT_EXIT_SHUTDOWN, its queued messages freed unread and its on_exit run
 * on a worker), then stops and joins the workers and frees the runtime.
 * Spawns that race with close fail with WEFT_ECLOSED. `report` may be
 * NULL.
 * Thread: not from a worker of this runtime (it would wait for itself):
 * WEFT_ESTATE then, and nothing is closed. */
WEFT_EXTERN weft_err weft_runtime_close(weft_runtime *rt,
                                        weft_close_report *report);

/* Waits until no actor is runnable and no worker is busy, or `timeout_ns`
 * passes (WEFT_ETIMEDOUT). Meant for demos and programs whose work is done
 * when the runtime goes quiet; tests should wait for an explicit signal.
 * Thread: not from a worker (WEFT_ESTATE). */
WEFT_EXTERN weft_err weft_runtime_wait_idle(weft_runtime *rt,
                                            uint64_t timeout_ns);

/* Counters, read without stopping anything (each one exact, the set not a
 * snapshot). */
typedef struct weft_runtime_stats {
	unsigned workers;
	uint64_t actors_live;
	uint64_t actors_spawned;
	uint64_t turns;       /* actor turns run */
	uint64_t steals;      /* successful steals between workers */
	uint64_t parks;       /* times a worker went to sleep */
	uint64_t messages_dropped; /* queued at an actor's exit, freed unread */
} weft_runtime_stats;

WEFT_EXTERN void weft_runtime_stats_get(weft_runtime *rt,
                                        weft_runtime_stats *out);

/* Messages allocated with weft_msg_new() and not yet freed, in the whole
 * process. Tests compare it before and after to find leaks. */
WEFT_EXTERN int64_t weft_msg_outstanding(void);
/* Tasks, contexts (either side) and error records alive in the whole
 * process, for the same purpose. */
WEFT_EXTERN int64_t weft_live_tasks(void);
WEFT_EXTERN int64_t weft_live_contexts(void);
WEFT_EXTERN int64_t weft_live_errors(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_RUNTIME_H */

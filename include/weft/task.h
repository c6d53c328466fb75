/* weft/task.h - tasks: blocking-style code hosted by an actor.
 *
 * A task runs on behalf of an actor and may block in weft calls (wait for
 * `started`, a result, a stream item, sleep). While it waits it holds no
 * worker thread: it is a fiber that its actor resumes when what it waits for
 * arrives. Tasks of one actor never run in parallel with each other or with
 * that actor's handler; a task may resume on another worker than the one it
 * blocked on, so it must not keep thread-local addresses, errno or locks
 * across a blocking call.
 *
 * Cancellation is level-triggered, as in trio: once a task (or a context
 * scope it is inside, see weft/context.h) is cancelled, its current blocking
 * call and every later one return WEFT_ECANCELED until the task returns or
 * leaves that scope.
 *
 * Errors: a call that fails records why in the task's current error
 * (weft_task_error()), like errno but a full record; a task function that
 * returns a code other than WEFT_OK fails with that record.
 *
 * Thread: the functions marked "task only" must be called from inside a
 * task (WEFT_ESTATE otherwise); the others from any thread. */
#ifndef WEFT_TASK_H
#define WEFT_TASK_H

#include <stdint.h>

#include "weft/actor.h"
#include "weft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_task weft_task;

/* A task's body. Its return code is the task's result. */
typedef weft_err (*weft_task_fn)(void *arg);

/* Runs fn(arg) as the only task of a new actor named `name` (NULL: "main")
 * and waits for it on the calling thread, so a program's main can be a weft
 * task. Returns fn's code; when it is not WEFT_OK and `err` is not NULL,
 * *err is a reference to the task's error (release it). The actor exits
 * when fn returns.
 * Thread: not a worker (WEFT_ESTATE). */
WEFT_EXTERN weft_err weft_task_run(weft_runtime *rt, const char *name,
                                   weft_task_fn fn, void *arg,
                                   weft_error **err);

/* Task only. Starts fn(arg) as another task of the current actor; it first
 * runs when the current task blocks or returns. *out (may be NULL) is a
 * handle for weft_task_join(); a task that is never joined is freed when
 * it ends. */
WEFT_EXTERN weft_err weft_task_spawn(weft_task_fn fn, void *arg,
                                     weft_task **out);

/* Task only. Waits for `t` (of the same actor) to return and gives its
 * code; its error, if any, becomes the current task's error. Frees the
 * handle. Cancellation of the waiter returns WEFT_ECANCELED and leaves `t`
 * running (join it again later, or cancel it). */
WEFT_EXTERN weft_err weft_task_join(weft_task *t);

/* Task only. Cancels `t` (of the same actor): level-triggered. */
WEFT_EXTERN void weft_task_cancel(weft_task *t);

/* Task only. Blocks for `ns` nanoseconds. WEFT_ECANCELED if cancelled. */
WEFT_EXTERN weft_err weft_sleep(uint64_t ns);

/* Task only. Returns WEFT_ECANCELED if the task is cancelled, else lets
 * other tasks of this actor that are ready run first and returns WEFT_OK. */
WEFT_EXTERN weft_err weft_checkpoint(void);

/* Task only: the current task's error record (borrowed: valid until the
 * next failing call of this task; hold it to keep it). NULL if none. */
WEFT_EXTERN const weft_error *weft_task_error(void);

/* Task only. Fails the current task with an application error of type
 * `type_name` (e.g. "ValueError"): sets the task's current error and
 * returns WEFT_EFAILED, so `return weft_fail("ValueError", "bad %d", x);`
 * ends a task function with it. */
WEFT_EXTERN weft_err weft_fail(const char *type_name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Task only. Fails the current task with a record of `kind` (for example
 * WEFT_ERRKIND_INTERRUPT, tractor's KeyboardInterrupt); returns the code
 * that kind is reported with (WEFT_EINTERRUPT, WEFT_ECANCELED or
 * WEFT_EFAILED). */
WEFT_EXTERN weft_err weft_fail_kind(weft_errkind kind, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The actor the current task runs in (task or handler); {0} elsewhere. */
WEFT_EXTERN weft_aid weft_current_actor(void);
WEFT_EXTERN const weft_uid *weft_current_uid(void);
WEFT_EXTERN weft_runtime *weft_current_runtime(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_TASK_H */

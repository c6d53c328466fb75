/* runtime/spawn.h - child processes (runtime/spawn.c). */
#ifndef WEFT_SPAWN_INTERNAL_H
#define WEFT_SPAWN_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "runtime/internal.h"

/* Forks a child process hosting the actor `o` describes and waits (task
 * or thread) until it has connected back; *aid is then the proxy of its
 * actor and *pid the process. On failure the child is killed and reaped,
 * and the task's error says why. */
weft_err weft__spawn_process(weft_runtime *rt, const weft_spawn_opts *o,
                             weft_aid *aid, pid_t *pid);
/* The same for WEFT_SPAWN_EXEC: runs weft_config.child_program (or this
 * program) with --weft-child arguments (weft_main). */
weft_err weft__spawn_exec(weft_runtime *rt, const weft_spawn_opts *o,
                          weft_aid *aid, pid_t *pid);
/* Reaps pid, waiting at most wait_ms; true once reaped. */
bool weft__reap(pid_t pid, unsigned wait_ms);

#endif /* WEFT_SPAWN_INTERNAL_H */

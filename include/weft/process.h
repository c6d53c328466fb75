/* weft/process.h - programs whose actors run in child processes that
 * execute a program afresh (WEFT_SPAWN_EXEC in weft/nursery.h).
 *
 * A program that may be started as such a child (itself by default, or the
 * one weft_config.child_program names) exposes its functions by name and
 * hands its command line to weft_main() first:
 *
 *     static const weft_function fns[] = {{"calc:add", add, NULL}};
 *     int main(int argc, char **argv) {
 *         weft_expose(fns, 1);
 *         weft_main(argc, argv);   // returns only when not a child
 *         ...the program's own main...
 *     }
 *
 * In child mode weft_main() opens a runtime, starts the actor the parent
 * asked for (its name and uid from the command line), exposing the
 * functions of the namespaces the parent listed, dials the parent, serves
 * until the actor exits (cancelled by the parent) or the parent goes, and
 * exits the process. Unlike a WEFT_SPAWN_PROCESS (fork) child, it starts
 * from a fresh image: only what is exposed and passed in arguments
 * reaches it.
 *
 * Thread: call both from main() before any runtime is opened. */
#ifndef WEFT_PROCESS_H
#define WEFT_PROCESS_H

#include <stddef.h>

#include "weft/context.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Adds functions to this program's table of exposed functions (copied;
 * the names must stay valid). */
WEFT_EXTERN weft_err weft_expose(const weft_function *fns, size_t n);

/* Child mode when the command line says so (it then never returns: the
 * process exits with 0 after its actor's end, non-zero if it could not
 * start); otherwise returns 0 and the program goes on. */
WEFT_EXTERN int weft_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROCESS_H */

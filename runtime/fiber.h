/* runtime/fiber.h - stackful coroutines ("fibers") for blocking-style tasks.
 *
 * INTERNAL: not installed, not part of the public API. Prefix weft__fiber_.
 *
 * A fiber is an entry function running on its own mmap'd stack. A worker
 * (an OS thread, or another fiber) runs it with weft__fiber_switch_in();
 * the fiber runs until it calls weft__fiber_suspend() or its entry returns,
 * and then switch_in() returns to the worker. A suspended fiber may be
 * switched in again later by ANY thread (work stealing): a fiber can
 * suspend on thread A and resume on thread B.
 *
 * Lifecycle:      create --> NEW --switch_in--> RUNNING --suspend--> SUSPENDED
 *                                                  ^    \                |
 *                                                  |     entry returns   |
 *                                                  |     v               |
 *                                                  |   FINISHED          |
 *                                                  +----switch_in--------+
 * destroy() is allowed only in NEW or FINISHED.
 *
 * Who may call what, from which thread:
 *
 *   weft__fiber_create()     any thread, inside or outside a fiber.
 *   weft__fiber_switch_in()  any thread, inside or outside a fiber, for a
 *                            fiber that is NEW or SUSPENDED. At most one
 *                            switch_in() per fiber at a time, and it must
 *                            happen-after the return of the switch_in() that
 *                            last ran the fiber (e.g. the worker publishes
 *                            the fiber to a queue / other thread after its
 *                            switch_in() returned, under a lock or with
 *                            release/acquire). A fiber is NOT resumable
 *                            while it is still inside weft__fiber_suspend()
 *                            on its old thread: never publish it for
 *                            resumption from inside the fiber itself. Doing
 *                            so anyway is detected, usually, and aborts.
 *   weft__fiber_suspend()    only from inside a running fiber (aborts
 *                            otherwise). May return on a different thread.
 *   weft__fiber_finished()   any thread; stable once switch_in() returned.
 *   weft__fiber_current()    any thread; NULL outside a fiber.
 *   weft__fiber_destroy()    any thread (not necessarily the creator's), for
 *                            a NEW or FINISHED fiber (aborts otherwise), not
 *                            concurrently with any other call on it.
 * Misuse that would corrupt a stack (switching into a running or finished
 * fiber, suspending outside a fiber, destroying a live fiber) aborts with a
 * message on stderr; it is never reported as an error code.
 *
 * Rules for code running inside a fiber (the entry and all it calls):
 *   - Do not cache thread-local state across weft__fiber_suspend(): after
 *     it returns you may be on another thread. This includes the ADDRESS of
 *     any _Thread_local/thread_local variable (compilers compute it once per
 *     function and may reuse it after the call), errno (glibc declares
 *     __errno_location() const, so &errno may be reused), pthread_self() and
 *     std::this_thread::get_id() (declared const too: re-call them in a
 *     separate noinline function, or use gettid()). fiber.c itself reads its
 *     own thread-locals only through a noinline, non-IPA accessor, never
 *     across a switch.
 *   - Do not hold an OS lock (pthread_mutex, std::mutex) across suspend():
 *     it may be unlocked on a different thread, which is undefined.
 *   - The entry must not be left by unwinding: no C++ exception may escape
 *     it, no longjmp out of the fiber, no pthread_exit/cancellation inside.
 *   - Stack: default 64 KiB (WEFT__FIBER_DEFAULT_STACK), of which the top
 *     128 bytes (x86_64; ~1 KiB with ucontext) hold the fiber's header. One
 *     PROT_NONE guard page below, so a plain overflow faults (a frame larger
 *     than 4 KiB can jump it unless built with -fstack-clash-protection).
 *     Only touched pages cost RSS (~4 KiB for a small suspended fiber).
 *     Each stack is 2 kernel mappings: vm.max_map_count (default 65530)
 *     caps live + cached stacks near 32k (fewer under TSan). Sanitizers
 *     enlarge frames: give fibers more stack under ASan.
 *   - Floating point: each fiber has its own MXCSR and x87 control word
 *     (rounding mode, exception masks), starting at the ABI defaults (with
 *     the ucontext fallback: the creating thread's); a fesetround() inside
 *     a fiber does not leak into the worker thread.
 *   - Nothing here is async-signal-safe.
 *
 * Sanitizers: switches are annotated for ASan (fiber stacks and fake
 * stacks) and TSan (one TSan fiber per weft fiber; each switch is a
 * happens-before edge) when the TU is built with -fsanitize=address or
 * -fsanitize=thread.
 */
#ifndef WEFT_RUNTIME_FIBER_H
#define WEFT_RUNTIME_FIBER_H

#include <stdbool.h>
#include <stddef.h>

#include "weft/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Usable stack bytes for stack_size == 0. Stacks of exactly this size are
 * recycled through a per-thread cache backed by a global pool. */
#define WEFT__FIBER_DEFAULT_STACK ((size_t)64 * 1024)

/* Smaller nonzero requests are raised to this. */
#define WEFT__FIBER_MIN_STACK ((size_t)16 * 1024)

/* Opaque; lives at the top of its own stack mapping. */
struct weft__fiber;

/* Create a NEW fiber that will run entry(arg) on a fresh stack of
 * stack_size bytes (0 = WEFT__FIBER_DEFAULT_STACK; otherwise rounded up to
 * the page size, at least WEFT__FIBER_MIN_STACK). Does not run it.
 * Returns WEFT_OK and sets *out, WEFT_EINVAL (NULL out/entry, absurd size)
 * or WEFT_ENOMEM (mmap failed). Thread: any. */
weft_err weft__fiber_create(struct weft__fiber **out, size_t stack_size,
                            void (*entry)(void *arg), void *arg);

/* Run f on the calling thread until it calls weft__fiber_suspend() or its
 * entry returns, then return. f must be NEW or SUSPENDED (aborts
 * otherwise). Thread: any; see the happens-after rule above. When called
 * from inside a fiber, that fiber is f's "caller" until f suspends. */
void weft__fiber_switch_in(struct weft__fiber *f);

/* Save the running fiber and return to whoever called switch_in() on it.
 * Returns when the fiber is next switched in, possibly on another thread.
 * Thread: only from inside a running fiber (aborts otherwise). */
void weft__fiber_suspend(void);

/* True once f's entry has returned. Thread: any. */
bool weft__fiber_finished(const struct weft__fiber *f);

/* The fiber running on the calling thread, or NULL. Thread: any. Inside a
 * fiber, do not keep the result of a call made before a suspend() as a
 * statement about the thread; the fiber pointer itself stays valid. */
struct weft__fiber *weft__fiber_current(void);

/* Free a NEW or FINISHED fiber and recycle its stack (aborts if f is
 * running or suspended; NULL is a no-op). Thread: any. */
void weft__fiber_destroy(struct weft__fiber *f);

/* Bounds of f's usable stack [*lo, *lo + *size), for diagnostics and
 * tests. Thread: any. */
void weft__fiber_stack_bounds(const struct weft__fiber *f, void **lo,
                              size_t *size);

/* Process-wide stack counters (relaxed; for tests and diagnostics). */
struct weft__fiber_stats {
	size_t stacks_mapped;   /* mmap calls for fiber stacks so far */
	size_t stacks_unmapped; /* munmap calls so far */
	size_t pool_stacks;     /* stacks now in the global pool */
};
void weft__fiber_get_stats(struct weft__fiber_stats *out);

/* Release the calling thread's stack cache to the global pool now (it is
 * also done automatically at thread exit). Thread: any. */
void weft__fiber_flush_thread_cache(void);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_RUNTIME_FIBER_H */

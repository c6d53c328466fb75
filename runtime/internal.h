/* runtime/internal.h - the one include for runtime internals. */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "weft/weft.h"
#include "runtime/mailbox.h"
#include "scheduler/sched.h"

#define WEFT_ASSERT(x)                                                     \
	do {                                                               \
		if (__builtin_expect(!(x), 0))                             \
			weft__panic(__FILE__, __LINE__, #x);               \
	} while (0)

_Noreturn void weft__panic(const char *file, int line, const char *what);

/* Reserved message types (>= WEFT_MSG_TYPE_RESERVED). */
enum {
	WEFT__MSG_STOP = WEFT_MSG_TYPE_RESERVED, /* weft_stop() */
	WEFT__MSG_WAKE,                           /* runtime close: run now */
};

/* Actor slots: the actor table is an array of chunks of actor structs that
 * are never freed while the runtime lives. A slot keeps its struct for ever;
 * an aid names (slot, generation), and the generation shares one atomic word
 * with the reference count, so "take a hold if this is still the same
 * actor" is one CAS and a stale aid can never touch a newer actor. */
#define WEFT__CHUNK_SHIFT 12
#define WEFT__CHUNK_SIZE (1u << WEFT__CHUNK_SHIFT)
#define WEFT__MAX_CHUNKS (1u << 16) /* 268M slots */
#define WEFT__SLOT_NONE 0xFFFFFFFFu

struct weft__actor {
	/* The scheduler's link; first so a job pointer is the actor. */
	struct weft__job job;
	struct weft__mailbox mbox;

	/* gen (high 32 bits) | references (low 32). References: one while
	 * alive, one while scheduled, one per in-flight weft_send. */
	_Alignas(64) _Atomic uint64_t ref_gen;
	_Atomic uint32_t free_next; /* in the free-slot stack */
	_Atomic uint8_t closed;     /* exited: sends fail */
	_Atomic uint8_t stop_now;   /* runtime close */

	/* Set at spawn, read by the turn's worker. */
	uint32_t slot;
	uint32_t batch;
	weft_handler_fn handler;
	weft_exit_fn on_exit;
	void *state;
	weft_runtime *rt;
	weft_uid uid;
	bool exit_requested; /* by the running handler or the host */
	struct weft__host *host; /* tasks and contexts; NULL until used */
	/* A proxy for a remote actor (runtime/net.c): sees every message
	 * (reserved types included), and NULL at the end of each turn so it
	 * can flush what it encoded. NULL for ordinary actors. */
	void (*proxy_fn)(struct weft__actor *a, weft_msg *m);
	void *proxy;
	/* Registered with the registry: unregistered at its exit. */
	_Atomic bool registered;
};

struct weft__pcounter {
	/* per worker, owner-written */
	_Alignas(64) _Atomic uint64_t spawned;
	_Atomic uint64_t exited;
	_Atomic uint64_t dropped;
};

struct weft_runtime {
	weft_config cfg;
	struct weft__sched *sched;

	/* Actor table. */
	_Atomic(struct weft__actor *) chunks[WEFT__MAX_CHUNKS];
	_Alignas(64) _Atomic uint32_t nslots; /* slots ever handed out */
	pthread_mutex_t grow_lock;
	/* Free-slot stack head: slot (low 32) | ABA tag (high 32). */
	_Alignas(64) _Atomic uint64_t free_head;

	/* Counters: one per worker, plus one for outside threads. */
	struct weft__pcounter *pc; /* [workers + 1] */
	_Alignas(64) pthread_mutex_t outside_lock; /* for pc[workers] */

	struct weft__timers *timers; /* made on first use */
	pthread_mutex_t timers_lock;

	_Atomic bool closing;
	struct weft__net *net; /* made by the first listen/connect */
	/* weft_task_run roots, for SIGINT (sigint.c) */
	pthread_mutex_t roots_lock;
	weft_aid *roots;
	size_t nroots, roots_cap;
	pthread_mutex_t net_lock;
	pthread_mutex_t close_lock;
	pthread_cond_t close_cond;
};

/* Actor references. */
weft_err weft__actor_hold(weft_runtime *rt, weft_aid aid,
                          struct weft__actor **out);
void weft__actor_rele(struct weft__actor *a);
weft_aid weft__actor_aid(const struct weft__actor *a);
/* The in-process hard kill: the actor exits at its next turn, as at
 * runtime close. */
void weft__actor_kill(weft_runtime *rt, weft_aid aid);
weft_err weft__send_internal(weft_runtime *rt, weft_aid to, weft_msg *m);

/* Spawns a proxy actor with a given uid (the remote actor's). */
weft_err weft__spawn_proxy(weft_runtime *rt, const weft_uid *uid,
                           void (*fn)(struct weft__actor *, weft_msg *),
                           void *proxy, weft_exit_fn on_exit,
                           weft_aid *out);
void weft__actor_set_registered(weft_runtime *rt, weft_aid aid, bool on);
/* runtime/net.c: a registered actor has exited. */
void weft__registry_actor_exit(weft_runtime *rt, const weft_uid *uid);

/* weft_spawn with a given uuid (a child process's actor, whose uid its
 * parent chose before the fork). */
weft_err weft__spawn_uid(weft_runtime *rt, const weft_spawn_opts *o,
                         const weft_uid *uid, weft_aid *out);
/* The proxy state of a live actor that is a proxy, else NULL (no hold is
 * kept: the caller knows the proxy outlives the use). */
void *weft__proxy_of(weft_runtime *rt, weft_aid aid);

struct weft__net;

/* SIGINT (runtime/sigint.c): weft_task_run registers its actor while it
 * runs, so that a SIGINT interrupts it. */
void weft__sigint_root(weft_runtime *rt, weft_aid aid, bool add);
/* A child process pid to SIGKILL on a second SIGINT (spawn.c). */
void weft__sigint_child(pid_t pid, bool add);
/* Runtime close: stop routing SIGINT to rt. */
void weft__sigint_forget(weft_runtime *rt);

/* uuid bytes from a per-thread generator seeded by the OS. */
void weft__random_bytes(uint8_t *out, size_t n);

void weft__log_set_actor(const weft_uid *uid);
/* Set once, before any thread: every log line of this process starts
 * with it (a child process: its actor and its parent). */
void weft__log_set_process(const char *prefix);

/* Runtime-wide actor bookkeeping (actor.c), used by runtime.c. */
void weft__actor_stats(weft_runtime *rt, uint64_t *spawned, uint64_t *exited,
                       uint64_t *dropped);
/* Marks every live actor stop_now and wakes it; returns how many. */
uint64_t weft__actor_stop_all(weft_runtime *rt);

#endif /* WEFT_INTERNAL_H */

/* runtime/net.h - what the rest of the runtime knows of the transport
 * (runtime/net.c). */
#ifndef WEFT_NET_INTERNAL_H
#define WEFT_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/internal.h"

struct weft__conn;

/* The connection behind a proxy actor, with a reference the caller
 * releases; NULL for a local actor (or one that has gone). Any thread. */
struct weft__conn *weft__net_conn_hold(weft_runtime *rt, weft_aid aid);
void weft__net_conn_rele(struct weft__conn *c);
/* More than send_queue_max bytes wait to be written (and the connection
 * is still up). */
bool weft__net_congested(const struct weft__conn *c);
/* The largest payload that fits in one envelope to this peer. */
size_t weft__net_payload_max(const struct weft__conn *c);

/* ---- child processes (runtime/spawn.c, nursery.c) ---- */

/* The port this runtime listens on for its children (127.0.0.1, opened on
 * first use); 0 if it cannot listen. */
uint16_t weft__net_parent_port(weft_runtime *rt);
struct weft__expect;
/* Registers a child about to be spawned with actor uid `uid`: when a
 * connection whose Hello carries that uuid is accepted, it is sent the
 * spawn spec and the waiter gets the proxy of the child's actor. Call
 * before forking. NULL when out of memory. */
struct weft__expect *weft__net_expect_child(weft_runtime *rt,
                                            const weft_uid *uid);
/* Waits (task or thread) until the child connected or the deadline
 * (monotonic ns); frees x. */
weft_err weft__net_expect_wait(struct weft__expect *x, uint64_t deadline,
                               weft_aid *aid);
/* The same, failing (WEFT_ECLOSED) as soon as process `pid` has exited
 * (then reaped). */
weft_err weft__net_expect_wait_pid(struct weft__expect *x, uint64_t deadline,
                                   pid_t pid, weft_aid *aid);
/* Local actor `local` is told PEER_GONE when `proxy`'s connection ends,
 * even if it never sent anything through it. */
void weft__net_note_local(weft_runtime *rt, weft_aid proxy, weft_aid local);
/* fn(arg) runs once on the I/O thread when c ends (at once if it has). */
void weft__net_conn_on_end(struct weft__conn *c, void (*fn)(void *arg),
                           void *arg);

/* A copy of the options (the token into `token`, 64 bytes). */
void weft__net_opts_get(weft_runtime *rt, weft_net_opts *o, uint8_t *token);

/* The registry this runtime joined (weft_registry_open): its port (0:
 * none) and host. */
uint16_t weft__net_registry_addr(weft_runtime *rt, char *host, size_t cap);

/* A child process: use the registry at host:port (its parent's) without
 * probing it; set before anything can call the child's functions. */
void weft__net_registry_use(weft_runtime *rt, const char *host,
                            uint16_t port);

/* Runtime close: says bye on every connection, stops the I/O thread. */
void weft__net_shutdown(weft_runtime *rt);

#endif /* WEFT_NET_INTERNAL_H */

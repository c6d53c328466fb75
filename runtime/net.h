/* runtime/net.h - what the rest of the runtime knows of the transport
 * (runtime/net.c). */
#ifndef WEFT_NET_INTERNAL_H
#define WEFT_NET_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

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

/* Runtime close: says bye on every connection, stops the I/O thread. */
void weft__net_shutdown(weft_runtime *rt);

#endif /* WEFT_NET_INTERNAL_H */

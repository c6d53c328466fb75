/* proto/item.h - the per-item envelopes without nanopb.
 *
 * A stream moves millions of yield_items a second; nanopb's table-driven
 * encoder and decoder cost about a microsecond each for them (perf: most
 * of a B7 run). The envelopes of the hot kinds have a fixed shape, so they
 * are written and read here directly:
 *
 *   yield_item, started, return_value  {pld {value}}  (no type_url or
 *                                       content_type)
 *   stop, cancel_ack                    {}
 *   start_ack                           {kind}
 *
 * The encoder's bytes are exactly nanopb's for the same envelope (checked
 * by test/proto/item_test.cc). The decoder is conservative: it accepts
 * only an envelope it can read completely and that keeps every envelope
 * rule (docs/protocol.md §4.1); for anything else (another kind, an
 * unknown field, a field twice, a rule broken) it says no and the caller
 * decodes with weft_wire_decode(), which also produces the protocol error.
 * So the fast path never accepts what the full decoder would refuse
 * (tools/fuzz checks that on every input).
 *
 * Thread: reentrant, no state. */
#ifndef WEFT_PROTO_ITEM_H
#define WEFT_PROTO_ITEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft.pb.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_wire_item {
	uint64_t cid;
	weft_v1_Side side;
	uint64_t to_actor, from_actor;
	pb_size_t which; /* weft_v1_Envelope_*_tag */
	const uint8_t *pld; /* yield_item/started/return_value: the value */
	size_t pld_len;
	uint32_t ack_kind; /* start_ack */
} weft_wire_item;

/* Largest envelope overhead around the payload (tags, lengths, ids). */
#define WEFT_WIRE_ITEM_OVERHEAD 64u

/* True for the kinds above. */
bool weft_wire_item_kind(pb_size_t which);

/* Writes the envelope (no frame header) into buf; returns its length, or
 * 0 when it does not fit in cap or `it` is not a hot kind. */
size_t weft_wire_item_encode(const weft_wire_item *it, uint8_t *buf,
                             size_t cap);

/* Reads an envelope of a hot kind; false: use weft_wire_decode(). The
 * payload points into data. */
bool weft_wire_item_decode(const uint8_t *data, size_t len,
                           weft_wire_item *out);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROTO_ITEM_H */

/* tools/fuzz/frame_fuzz.c - libFuzzer target over the wire decoders.
 *
 * Input: byte 0 seeds how the rest is cut into chunks; bytes 1.. are a
 * connection's byte stream. The stream goes through the frame decoder in
 * those chunks (handshake limit for the first frame, 16 MiB after it, as a
 * real connection would), and every frame through the envelope decoder and
 * the lazy decoders. The whole input is also decoded directly as one
 * envelope. Checked, beyond "no crash, no sanitizer report":
 *   - decoders return only their documented codes;
 *   - every decoded slice lies inside the frame it came from;
 *   - whatever decodes re-encodes, and re-encoding is stable:
 *     encode(decode(encode(x))) == encode(x), with and without references;
 *   - the fast path for per-item envelopes (item.h) accepts nothing the
 *     full decoder refuses, reads the same values, and its encoder writes
 *     the same bytes as nanopb's.
 * Build and run: tools/fuzz/run.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "item.h"

#define CHECK(c)                                                          \
	do {                                                              \
		if (!(c)) {                                               \
			fprintf(stderr, "check failed: %s (%s:%d)\n", #c, \
			        __FILE__, __LINE__);                      \
			abort();                                          \
		}                                                         \
	} while (0)

static const uint8_t *frame_lo, *frame_hi;

static void
in_frame(weft_slice s)
{
	if (s.len == 0)
		return;
	CHECK(s.ptr >= frame_lo && s.ptr + s.len <= frame_hi);
}

static void
check_error(const weft_v1_Error *e, int depth)
{
	in_frame(e->message);
	in_frame(e->traceback);
	in_frame(e->bad_msg);
	CHECK(e->members.n <= WEFT_SLICE_LIST_MAX);
	for (uint32_t i = 0; i < e->members.n; i++) {
		in_frame(e->members.items[i]);
		if (depth >= 4)
			continue;
		weft_v1_Error m;
		weft_err rc = weft_wire_decode_error(e->members.items[i], &m);
		CHECK(rc == WEFT_OK || rc == WEFT_EPROTO);
		if (rc == WEFT_OK)
			check_error(&m, depth + 1);
	}
}

/* Encodes `e` flat (copying everything) into a fresh buffer. */
static uint8_t *
encode_flat(const weft_v1_Envelope *e, size_t ref_min, size_t *len)
{
	weft_wire_frame f;
	weft_err rc = weft_wire_encode(e, WEFT_FRAME_LIMIT_MAX, ref_min, &f);
	CHECK(rc == WEFT_OK);
	CHECK(f.nseg >= 1 && f.nseg <= WEFT_WIRE_MAX_SEGS);
	uint8_t *buf = malloc(f.len);
	CHECK(buf != NULL);
	CHECK(weft_wire_frame_flatten(&f, buf, f.len) == WEFT_OK);
	CHECK(weft_frame_get_header(buf) == f.len - 4);
	*len = f.len;
	weft_wire_frame_fini(&f);
	return buf;
}

static weft_slice
item_value(const weft_v1_Envelope *e)
{
	switch (e->which_msg) {
	case weft_v1_Envelope_yield_item_tag:
		return e->msg.yield_item.pld.value;
	case weft_v1_Envelope_started_tag:
		return e->msg.started.pld.value;
	case weft_v1_Envelope_return_value_tag:
		return e->msg.return_value.pld.value;
	default:
		return (weft_slice){NULL, 0};
	}
}

static void
check_envelope(const uint8_t *data, size_t len)
{
	weft_v1_Envelope e;
	const char *why = NULL;
	weft_err rc = weft_wire_decode_ex(data, len, &e, &why);
	weft_wire_item it;
	bool fast = weft_wire_item_decode(data, len, &it);

	CHECK(rc == WEFT_OK || rc == WEFT_EPROTO);
	/* The fast path never accepts what the full decoder refuses. */
	CHECK(!fast || rc == WEFT_OK);
	if (rc != WEFT_OK) {
		CHECK(why != NULL);
		return;
	}
	if (fast) {
		CHECK(it.which == e.which_msg && it.cid == e.cid &&
		      it.side == e.side && it.to_actor == e.to_actor &&
		      it.from_actor == e.from_actor);
		weft_slice v = item_value(&e);
		CHECK(it.pld_len == v.len &&
		      (v.len == 0 || memcmp(it.pld, v.ptr, v.len) == 0));
		if (e.which_msg == weft_v1_Envelope_start_ack_tag)
			CHECK(it.ack_kind == (uint32_t)e.msg.start_ack.kind);
		/* And its encoding is nanopb's, byte for byte. */
		uint8_t buf[256];
		size_t n = it.pld_len + WEFT_WIRE_ITEM_OVERHEAD <= sizeof(buf)
		                   ? weft_wire_item_encode(&it, buf, sizeof(buf))
		                   : 0;
		if (n) {
			size_t m;
			weft_v1_Envelope c = e;
			weft_slice *cv = NULL;
			switch (c.which_msg) {
			case weft_v1_Envelope_yield_item_tag:
				c.msg.yield_item.has_pld = v.len > 0;
				cv = &c.msg.yield_item.pld.value;
				break;
			case weft_v1_Envelope_started_tag:
				c.msg.started.has_pld = v.len > 0;
				cv = &c.msg.started.pld.value;
				break;
			case weft_v1_Envelope_return_value_tag:
				c.msg.return_value.has_pld = v.len > 0;
				cv = &c.msg.return_value.pld.value;
				break;
			default:
				break;
			}
			(void)cv;
			uint8_t *ref = encode_flat(&c, SIZE_MAX, &m);
			CHECK(m - 4 == n && memcmp(ref + 4, buf, n) == 0);
			free(ref);
		}
	}
	frame_lo = data;
	frame_hi = data + len;

	switch (e.which_msg) {
	case weft_v1_Envelope_yield_item_tag:
		in_frame(e.msg.yield_item.pld.value);
		break;
	case weft_v1_Envelope_started_tag:
		in_frame(e.msg.started.pld.value);
		break;
	case weft_v1_Envelope_return_value_tag:
		in_frame(e.msg.return_value.pld.value);
		break;
	case weft_v1_Envelope_start_tag:
		in_frame(e.msg.start.args.value);
		break;
	case weft_v1_Envelope_error_tag:
		check_error(&e.msg.error, 0);
		break;
	case weft_v1_Envelope_hello_tag: {
		weft_v1_Hello h;
		in_frame(e.msg.hello);
		rc = weft_wire_decode_hello(e.msg.hello, &h);
		CHECK(rc == WEFT_OK || rc == WEFT_EPROTO);
		if (rc == WEFT_OK) {
			const char *w = NULL;
			weft_v1_ErrorKind k = weft_wire_hello_check(
				&h, true, (const uint8_t *)"tok", 3, &w);
			CHECK(w != NULL);
			(void)k;
		}
		break;
	}
	case weft_v1_Envelope_spawn_spec_tag: {
		weft_v1_SpawnSpec s;
		in_frame(e.msg.spawn_spec);
		rc = weft_wire_decode_spawn_spec(e.msg.spawn_spec, &s);
		CHECK(rc == WEFT_OK || rc == WEFT_EPROTO);
		break;
	}
	case weft_v1_Envelope_found_actors_tag: {
		weft_v1_FoundActors f;
		in_frame(e.msg.found_actors);
		rc = weft_wire_decode_found_actors(e.msg.found_actors, &f);
		CHECK(rc == WEFT_OK || rc == WEFT_EPROTO);
		break;
	}
	default:
		break;
	}
	CHECK(strcmp(weft_wire_msg_name(e.which_msg), "unknown") != 0);

	/* Re-encode, decode again, re-encode: stable bytes. */
	size_t n1, n2, n3;
	uint8_t *b1 = encode_flat(&e, SIZE_MAX, &n1);
	uint8_t *b3 = encode_flat(&e, 1, &n3); /* everything by reference */
	CHECK(n1 == n3 && memcmp(b1, b3, n1) == 0);
	weft_v1_Envelope e2;
	CHECK(weft_wire_decode(b1 + 4, n1 - 4, &e2) == WEFT_OK);
	CHECK(e2.which_msg == e.which_msg && e2.cid == e.cid &&
	      e2.side == e.side);
	uint8_t *b2 = encode_flat(&e2, SIZE_MAX, &n2);
	CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
	free(b1);
	free(b2);
	free(b3);
}

struct feed_state {
	weft_frame_decoder *d;
	int frames;
};

static weft_err
on_frame(void *arg, weft_frame *f)
{
	struct feed_state *st = arg;

	CHECK(f->len >= 1 && f->len <= WEFT_FRAME_LIMIT_DEFAULT);
	CHECK(f->owned == NULL || f->owned == f->data);
	check_envelope(f->data, f->len);
	/* After the first frame (the Hello), the negotiated limit. */
	if (st->frames++ == 0)
		CHECK(weft_frame_decoder_set_limit(st->d,
		                                   WEFT_FRAME_LIMIT_DEFAULT) ==
		      WEFT_OK);
	return WEFT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint32_t seed = data[0] * 2654435761u + 1;
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	check_envelope(p, n);

	weft_frame_decoder d;
	struct feed_state st = { &d, 0 };
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, NULL);
	size_t off = 0;
	weft_err rc = WEFT_OK;
	while (off < n && rc == WEFT_OK) {
		seed = seed * 1103515245u + 12345u;
		size_t chunk = 1 + (seed >> 16) % 64;
		if (chunk > n - off)
			chunk = n - off;
		/* Sometimes read straight into a pending body. */
		uint8_t *dst;
		size_t room = weft_frame_decoder_room(&d, &dst);
		if (room != 0 && (seed & 0x100)) {
			if (chunk > room)
				chunk = room;
			memcpy(dst, p + off, chunk);
			rc = weft_frame_decoder_commit(&d, chunk, on_frame, &st);
		} else {
			size_t used = 0;
			rc = weft_frame_feed(&d, p + off, chunk, on_frame, &st,
			                     &used);
			CHECK(rc != WEFT_OK || used == chunk);
		}
		off += chunk;
	}
	CHECK(rc == WEFT_OK || rc == WEFT_EMSGSIZE || rc == WEFT_EPROTO);
	CHECK(rc == weft_frame_decoder_error(&d));
	weft_frame_decoder_fini(&d);
	return 0;
}

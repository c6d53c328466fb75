/* proto/item.c - the per-item envelopes without nanopb (item.h). */
#include <string.h>

#include "item.h"

#define WT_VARINT 0u
#define WT_LEN 2u

bool
weft_wire_item_kind(pb_size_t which)
{
	switch (which) {
	case weft_v1_Envelope_yield_item_tag:
	case weft_v1_Envelope_started_tag:
	case weft_v1_Envelope_return_value_tag:
	case weft_v1_Envelope_stop_tag:
	case weft_v1_Envelope_start_ack_tag:
	case weft_v1_Envelope_cancel_ack_tag:
		return true;
	default:
		return false;
	}
}

static bool
has_payload(pb_size_t which)
{
	return which == weft_v1_Envelope_yield_item_tag ||
	       which == weft_v1_Envelope_started_tag ||
	       which == weft_v1_Envelope_return_value_tag;
}

static size_t
varint_len(uint64_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* A varint field, omitted at its default (proto3, as nanopb does). */
static uint8_t *
put_field(uint8_t *p, uint32_t field, uint64_t v)
{
	if (v == 0)
		return p;
	*p++ = (uint8_t)(field << 3 | WT_VARINT);
	return put_varint(p, v);
}

size_t
weft_wire_item_encode(const weft_wire_item *it, uint8_t *buf, size_t cap)
{
	if (!weft_wire_item_kind(it->which))
		return 0;
	/* Sizes inside out: Payload{value}, the member, the envelope. */
	size_t pay = 0, member;
	bool with_pld = has_payload(it->which) && it->pld_len > 0;
	if (with_pld)
		pay = 1 + varint_len(it->pld_len) + it->pld_len;
	if (with_pld)
		member = 1 + varint_len(pay) + pay;
	else if (it->which == weft_v1_Envelope_start_ack_tag && it->ack_kind)
		member = 1 + varint_len(it->ack_kind);
	else
		member = 0;
	size_t need = 4 * 11 + 1 + varint_len(member) + member;
	if (need > cap)
		return 0;
	uint8_t *p = buf;
	p = put_field(p, 1, it->cid);
	p = put_field(p, 2, (uint64_t)it->side);
	p = put_field(p, 3, it->to_actor);
	p = put_field(p, 4, it->from_actor);
	/* Oneof members 5..15 have one-byte keys. */
	*p++ = (uint8_t)(it->which << 3 | WT_LEN);
	p = put_varint(p, member);
	if (with_pld) {
		*p++ = (uint8_t)(1u << 3 | WT_LEN); /* pld */
		p = put_varint(p, pay);
		*p++ = (uint8_t)(2u << 3 | WT_LEN); /* value */
		p = put_varint(p, it->pld_len);
		memcpy(p, it->pld, it->pld_len);
		p += it->pld_len;
	} else if (member) {
		*p++ = (uint8_t)(1u << 3 | WT_VARINT); /* kind */
		p = put_varint(p, it->ack_kind);
	}
	return (size_t)(p - buf);
}

/* ---- decoding ---- */

struct rd {
	const uint8_t *p, *end;
};

static bool get_varint_slow(struct rd *r, uint64_t *out);

/* Most varints here (keys, lengths of small items, small ids) are one
 * byte: that case inline, the rest out of line. */
static inline __attribute__((always_inline)) bool
get_varint(struct rd *r, uint64_t *out)
{
	if (__builtin_expect(r->p < r->end && *r->p < 0x80, 1)) {
		*out = *r->p++;
		return true;
	}
	return get_varint_slow(r, out);
}

static bool
get_varint_slow(struct rd *r, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (r->p == r->end)
			return false;
		uint8_t b = *r->p++;
		if (shift == 63 && b > 1)
			return false; /* more than 64 bits */
		v |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

static bool
get_len(struct rd *r, struct rd *sub)
{
	uint64_t n;
	if (!get_varint(r, &n) || n > (uint64_t)(r->end - r->p))
		return false;
	sub->p = r->p;
	sub->end = r->p + n;
	r->p += n;
	return true;
}

/* Payload {value = 2}: anything else (a type_url, a content_type, an
 * unknown field, value twice) goes the slow way. */
static bool
read_payload(struct rd r, const uint8_t **v, size_t *n)
{
	bool seen = false;
	while (r.p < r.end) {
		uint64_t key;
		if (!get_varint(&r, &key) || key != (2u << 3 | WT_LEN) || seen)
			return false;
		struct rd s;
		if (!get_len(&r, &s))
			return false;
		*v = s.p;
		*n = (size_t)(s.end - s.p);
		seen = true;
	}
	return true;
}

static bool
read_member(pb_size_t which, struct rd r, weft_wire_item *out)
{
	if (has_payload(which)) {
		bool seen = false;
		while (r.p < r.end) {
			uint64_t key;
			if (!get_varint(&r, &key) ||
			    key != (1u << 3 | WT_LEN) || seen)
				return false;
			struct rd s;
			if (!get_len(&r, &s) ||
			    !read_payload(s, &out->pld, &out->pld_len))
				return false;
			seen = true;
		}
		return true;
	}
	if (which == weft_v1_Envelope_start_ack_tag) {
		bool seen = false;
		while (r.p < r.end) {
			uint64_t key, v;
			if (!get_varint(&r, &key) ||
			    key != (1u << 3 | WT_VARINT) || seen ||
			    !get_varint(&r, &v) || v > 2)
				return false;
			out->ack_kind = (uint32_t)v;
			seen = true;
		}
		/* Required: RUN or CONTEXT (§4.1 rule 5). */
		return out->ack_kind == 1 || out->ack_kind == 2;
	}
	return r.p == r.end; /* stop, cancel_ack: empty */
}

bool
weft_wire_item_decode(const uint8_t *data, size_t len, weft_wire_item *out)
{
	struct rd r = {data, data + len};
	struct rd member = {NULL, NULL};
	bool seen[5] = {false};
	memset(out, 0, sizeof(*out));
	while (r.p < r.end) {
		uint64_t key, v;
		if (!get_varint(&r, &key))
			return false;
		uint64_t field = key >> 3;
		unsigned wt = (unsigned)(key & 7);
		if (field >= 1 && field <= 4) {
			if (wt != WT_VARINT || seen[field] || !get_varint(&r, &v))
				return false;
			seen[field] = true;
			if (field == 1)
				out->cid = v;
			else if (field == 2) {
				if (v > 2)
					return false;
				out->side = (weft_v1_Side)v;
			} else if (field == 3)
				out->to_actor = v;
			else
				out->from_actor = v;
			continue;
		}
		if (wt != WT_LEN || field > 15 ||
		    !weft_wire_item_kind((pb_size_t)field) || out->which != 0)
			return false;
		out->which = (pb_size_t)field;
		if (!get_len(&r, &member))
			return false;
	}
	if (out->which == 0 || !read_member(out->which, member, out))
		return false;
	/* §4.1 rules 3 and 4: a context envelope, from the right side. */
	if (out->cid == 0 || out->side == weft_v1_Side_SIDE_UNSPECIFIED)
		return false;
	bool callee_only = out->which == weft_v1_Envelope_started_tag ||
	                   out->which == weft_v1_Envelope_return_value_tag ||
	                   out->which == weft_v1_Envelope_start_ack_tag ||
	                   out->which == weft_v1_Envelope_cancel_ack_tag;
	if (callee_only && out->side != weft_v1_Side_SIDE_CALLEE)
		return false;
	return true;
}

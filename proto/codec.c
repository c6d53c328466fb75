/* proto/codec.c - envelope encode/decode (see codec.h).
 *
 * Zero copy hinges on one nanopb field callback, weft__wire_slice_cb, named
 * for every message with weft_slice fields in weft.options:
 *
 *   - Decode reads from our own stream type (rd_read over struct rd), never
 *     from pb_istream_from_buffer. nanopb hands a callback field either a
 *     substream of ours (a length-delimited field: we record where its bytes
 *     are in the input and step over them) or, when a peer put a varint or
 *     fixed-width value where bytes belong, a stream over a temporary stack
 *     copy. Only the first has our read function, so the callback can tell
 *     them apart and refuse the second instead of keeping a pointer into a
 *     dead stack frame.
 *   - Encode writes through our stream type (wr_write over struct wr),
 *     which copies small writes into the frame's buffer and, when the
 *     callback offers a slice of at least ref_min bytes, records a reference
 *     to the caller's bytes as a segment of its own. It runs twice: a count
 *     pass (sizes only, so the size limit is checked and the buffer sized
 *     before anything is allocated) and a write pass that makes exactly the
 *     same decisions.
 *
 * nanopb 0.4.7 facts relied on (wire-notes §2.5): callback members of a
 * oneof do not set which_msg on decode, so the callback does; callback
 * fields are not reset by pb_decode, so every decode zeroes its output. */
#include "codec.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdlib.h>
#include <string.h>

#include "weft/actor.h"
#include "weft/error.h"

/* weft.options must have been applied (wire-notes pitfall 1: a missed
 * .options file silently turns every string into a pb_callback_t). */
_Static_assert(sizeof(((weft_v1_ActorUid *)0)->name) == WEFT_NAME_MAX,
               "ActorUid.name must hold a weft_uid name");
_Static_assert(sizeof(((weft_v1_ActorUid *)0)->uuid) == 16,
               "ActorUid.uuid is 16 bytes");
_Static_assert(sizeof(((weft_v1_Payload *)0)->value) == sizeof(weft_slice),
               "Payload.value is a weft_slice");
_Static_assert(sizeof(((weft_v1_Hello *)0)->auth_token.bytes) ==
                       WEFT_WIRE_TOKEN_MAX,
               "Hello.auth_token bound");

/* The wire kinds 1..10 are weft_errkind (docs/protocol.md §8). */
#define SAME_KIND(w, c) _Static_assert((int)(w) == (int)(c), #w " == " #c)
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED, WEFT_ERRKIND_NONE);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_APP, WEFT_ERRKIND_APP);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_CONTEXT_CANCELLED,
          WEFT_ERRKIND_CONTEXT_CANCELLED);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_STREAM_OVERRUN,
          WEFT_ERRKIND_STREAM_OVERRUN);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_REMOTE, WEFT_ERRKIND_REMOTE);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_NO_SUCH_FUNCTION,
          WEFT_ERRKIND_NO_SUCH_FUNCTION);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_RUNTIME, WEFT_ERRKIND_RUNTIME);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_CANCELLED, WEFT_ERRKIND_CANCELLED);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_INTERRUPT, WEFT_ERRKIND_INTERRUPT);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_TRANSPORT_CLOSED,
          WEFT_ERRKIND_TRANSPORT_CLOSED);
SAME_KIND(weft_v1_ErrorKind_ERROR_KIND_GROUP, WEFT_ERRKIND_GROUP);

/* ------------------------------------------------------------ reading */

struct rd {
	const uint8_t *cur;
	const uint8_t *end;
};

static bool
rd_read(pb_istream_t *s, pb_byte_t *buf, size_t n)
{
	struct rd *r = (struct rd *)s->state;

	/* nanopb checks bytes_left first; this guards the arithmetic. */
	if ((size_t)(r->end - r->cur) < n)
		PB_RETURN_ERROR(s, "read past the input");
	memcpy(buf, r->cur, n);
	r->cur += n;
	return true;
}

static pb_istream_t
rd_stream(struct rd *r, const uint8_t *data, size_t len)
{
	static const uint8_t none[1];
	pb_istream_t s;

	memset(&s, 0, sizeof(s));
	r->cur = data != NULL ? data : none;
	r->end = r->cur + (data != NULL ? len : 0);
	s.callback = rd_read;
	s.state = r;
	s.bytes_left = data != NULL ? len : 0;
	return s;
}

/* ------------------------------------------------------------ writing */

struct wr {
	bool writing;      /* false: the count pass */
	size_t ref_min;
	uint8_t *store;    /* writing: header, then the copied bytes */
	size_t copied;     /* envelope bytes copied so far */
	size_t refd;       /* envelope bytes referenced so far */
	size_t nseg;
	bool open;         /* the last segment is a copy run still growing */
	weft_slice *seg;   /* writing: the frame's segments */
};

static bool
wr_write(pb_ostream_t *s, const pb_byte_t *buf, size_t n)
{
	struct wr *w = (struct wr *)s->state;

	if (!w->open) {
		if (w->writing)
			w->seg[w->nseg] = (weft_slice){
				w->store + WEFT_FRAME_HEADER + w->copied, 0 };
		w->nseg++;
		w->open = true;
	}
	if (w->writing) {
		memcpy(w->store + WEFT_FRAME_HEADER + w->copied, buf, n);
		w->seg[w->nseg - 1].len += n;
	}
	w->copied += n;
	return true;
}

/* Whether a slice of `len` bytes goes by reference: big enough, and room
 * for its segment plus the copy run that may follow it. */
static bool
wr_can_ref(const pb_ostream_t *s, size_t len)
{
	const struct wr *w;

	if (s->callback != wr_write)
		return false; /* a nanopb sizing stream, or encode_msg */
	w = (const struct wr *)s->state;
	return len >= w->ref_min && w->nseg + 2 <= WEFT_WIRE_MAX_SEGS;
}

static bool
wr_ref(pb_ostream_t *s, const uint8_t *ptr, size_t len)
{
	struct wr *w = (struct wr *)s->state;

	if (!pb_encode_varint(s, len))
		return false;
	if (s->max_size - s->bytes_written < len)
		PB_RETURN_ERROR(s, "stream full");
	s->bytes_written += len;
	if (w->writing)
		w->seg[w->nseg] = (weft_slice){ ptr, len };
	w->nseg++;
	w->open = false;
	w->refd += len;
	return true;
}

/* ------------------------------------------------------------ callback */

static bool
slice_decode(pb_istream_t *is, const pb_field_t *field)
{
	struct rd *r;
	weft_slice s;

	if (is->callback != rd_read)
		PB_RETURN_ERROR(is, "wrong wire type for a bytes field");
	r = (struct rd *)is->state;
	if ((size_t)(r->end - r->cur) < is->bytes_left)
		PB_RETURN_ERROR(is, "slice past the input");
	s.ptr = r->cur;
	s.len = is->bytes_left;
	r->cur += is->bytes_left;
	is->bytes_left = 0;

	if (PB_HTYPE(field->type) == PB_HTYPE_REPEATED) {
		weft_slice_list *l = (weft_slice_list *)field->pData;
		if (l->n >= WEFT_SLICE_LIST_MAX)
			PB_RETURN_ERROR(is, "too many repeated elements");
		l->items[l->n++] = s;
		return true;
	}
	*(weft_slice *)field->pData = s;
	if (PB_HTYPE(field->type) == PB_HTYPE_ONEOF)
		*(pb_size_t *)field->pSize = field->tag;
	return true;
}

static bool
slice_encode_one(pb_ostream_t *os, const pb_field_t *field,
                 const weft_slice *s)
{
	if (s->len != 0 && s->ptr == NULL)
		PB_RETURN_ERROR(os, "slice without bytes");
	if (!pb_encode_tag_for_field(os, field))
		return false;
	if (wr_can_ref(os, s->len))
		return wr_ref(os, s->ptr, s->len);
	return pb_encode_string(os, s->ptr, s->len);
}

bool
weft__wire_slice_cb(pb_istream_t *is, pb_ostream_t *os,
                    const pb_field_t *field)
{
	if (is != NULL)
		return slice_decode(is, field);
	if (os == NULL)
		return true;

	if (PB_HTYPE(field->type) == PB_HTYPE_REPEATED) {
		const weft_slice_list *l = (const weft_slice_list *)field->pData;
		if (l->n > WEFT_SLICE_LIST_MAX)
			PB_RETURN_ERROR(os, "too many repeated elements");
		for (uint32_t i = 0; i < l->n; i++)
			if (!slice_encode_one(os, field, &l->items[i]))
				return false;
		return true;
	}
	const weft_slice *s = (const weft_slice *)field->pData;
	/* proto3: an empty bytes field is not sent; a oneof member is, so
	 * that the receiver sees which one it is. */
	if (s->len == 0 && PB_HTYPE(field->type) != PB_HTYPE_ONEOF)
		return true;
	return slice_encode_one(os, field, s);
}

/* ------------------------------------------------------------ rules */

enum { SIDE_NONE = 1, SIDE_CALLER_OK = 2, SIDE_CALLEE_OK = 4 };

/* Which sides may carry each message kind (docs/protocol.md §4.2). */
static unsigned
allowed_sides(pb_size_t which)
{
	switch (which) {
	case weft_v1_Envelope_hello_tag:
	case weft_v1_Envelope_spawn_spec_tag:
	case weft_v1_Envelope_bye_tag:
	case weft_v1_Envelope_ping_tag:
	case weft_v1_Envelope_pong_tag:
		return SIDE_NONE;
	case weft_v1_Envelope_start_tag:
	case weft_v1_Envelope_cancel_context_tag:
	case weft_v1_Envelope_cancel_actor_tag:
	case weft_v1_Envelope_register_actor_tag:
	case weft_v1_Envelope_unregister_actor_tag:
	case weft_v1_Envelope_find_actor_tag:
		return SIDE_CALLER_OK;
	case weft_v1_Envelope_start_ack_tag:
	case weft_v1_Envelope_started_tag:
	case weft_v1_Envelope_return_value_tag:
	case weft_v1_Envelope_cancel_ack_tag:
	case weft_v1_Envelope_ack_tag:
	case weft_v1_Envelope_found_actors_tag:
		return SIDE_CALLEE_OK;
	case weft_v1_Envelope_yield_item_tag:
	case weft_v1_Envelope_stop_tag:
		return SIDE_CALLER_OK | SIDE_CALLEE_OK;
	case weft_v1_Envelope_error_tag:
		/* From the caller it is not final: an overrun report (§6.4). */
		return SIDE_NONE | SIDE_CALLER_OK | SIDE_CALLEE_OK;
	default:
		return 0; /* no message, or a kind v1 does not know */
	}
}

static bool
uid_ok(bool has, const weft_v1_ActorUid *u)
{
	static const uint8_t zero[16];

	return has && u->name[0] != '\0' &&
	       memcmp(u->uuid, zero, sizeof(zero)) != 0;
}

static bool
func_kind_ok(weft_v1_FuncKind k)
{
	return k == weft_v1_FuncKind_FUNC_KIND_RUN ||
	       k == weft_v1_FuncKind_FUNC_KIND_CONTEXT;
}

static bool
error_ok(const weft_v1_Error *e)
{
	return e->bad_msg.len <= WEFT_WIRE_BAD_MSG_MAX &&
	       e->members.n <= WEFT_SLICE_LIST_MAX;
}

/* The envelope rules of docs/protocol.md §4; NULL when they hold. */
static const char *
check_env(const weft_v1_Envelope *e)
{
	unsigned sides = allowed_sides(e->which_msg);
	unsigned side;

	if (sides == 0)
		return "no message, or an unknown message kind";
	switch (e->side) {
	case weft_v1_Side_SIDE_UNSPECIFIED: side = SIDE_NONE; break;
	case weft_v1_Side_SIDE_CALLER: side = SIDE_CALLER_OK; break;
	case weft_v1_Side_SIDE_CALLEE: side = SIDE_CALLEE_OK; break;
	default: return "unknown side";
	}
	if ((e->cid == 0) != (side == SIDE_NONE))
		return "cid 0 goes with side UNSPECIFIED, and only it";
	if ((sides & side) == 0)
		return "message kind not allowed on this side";

	switch (e->which_msg) {
	case weft_v1_Envelope_start_tag: {
		const weft_v1_Start *s = &e->msg.start;
		if (s->func[0] == '\0' || !func_kind_ok(s->kind))
			return "start needs func and kind RUN or CONTEXT";
		if (!uid_ok(s->has_caller, &s->caller))
			return "start needs the caller uid";
		break;
	}
	case weft_v1_Envelope_start_ack_tag:
		if (!func_kind_ok(e->msg.start_ack.kind))
			return "start_ack needs kind RUN or CONTEXT";
		break;
	case weft_v1_Envelope_cancel_context_tag:
		if (!uid_ok(e->msg.cancel_context.has_canceller,
		            &e->msg.cancel_context.canceller))
			return "cancel_context needs the canceller uid";
		break;
	case weft_v1_Envelope_cancel_actor_tag:
		if (!uid_ok(e->msg.cancel_actor.has_requester,
		            &e->msg.cancel_actor.requester))
			return "cancel_actor needs the requester uid";
		break;
	case weft_v1_Envelope_error_tag:
		if (!error_ok(&e->msg.error))
			return "error bad_msg over 256 bytes";
		if (e->msg.error.kind >= 100 && e->cid != 0)
			return "a connection-level error kind needs cid 0";
		break;
	case weft_v1_Envelope_register_actor_tag:
		if (!e->msg.register_actor.has_reg ||
		    !uid_ok(e->msg.register_actor.reg.has_uid,
		            &e->msg.register_actor.reg.uid))
			return "register_actor needs a uid";
		break;
	case weft_v1_Envelope_unregister_actor_tag:
		if (!uid_ok(e->msg.unregister_actor.has_uid,
		            &e->msg.unregister_actor.uid))
			return "unregister_actor needs a uid";
		break;
	case weft_v1_Envelope_find_actor_tag:
		if (e->msg.find_actor.name[0] == '\0')
			return "find_actor needs a name";
		break;
	default:
		break;
	}
	return NULL;
}

/* ------------------------------------------------------------ decode */

static weft_err
decode_msg(const pb_msgdesc_t *fields, const uint8_t *data, size_t len,
           void *out, size_t out_size, const char **why)
{
	struct rd r;
	pb_istream_t s = rd_stream(&r, data, len);

	memset(out, 0, out_size);
	if (!pb_decode_ex(&s, fields, out, PB_DECODE_NOINIT)) {
		if (why != NULL)
			*why = s.errmsg != NULL ? s.errmsg : "malformed field";
		memset(out, 0, out_size); /* no half-decoded slices */
		return WEFT_EPROTO;
	}
	return WEFT_OK;
}

weft_err
weft_wire_decode_ex(const uint8_t *data, size_t len, weft_v1_Envelope *out,
                    const char **why)
{
	weft_err rc = decode_msg(weft_v1_Envelope_fields, data, len, out,
	                         sizeof(*out), why);
	if (rc != WEFT_OK)
		return rc;
	const char *bad = check_env(out);
	if (bad != NULL) {
		if (why != NULL)
			*why = bad;
		memset(out, 0, sizeof(*out));
		return WEFT_EPROTO;
	}
	return WEFT_OK;
}

weft_err
weft_wire_decode(const uint8_t *data, size_t len, weft_v1_Envelope *out)
{
	return weft_wire_decode_ex(data, len, out, NULL);
}

weft_err
weft_wire_decode_hello(weft_slice s, weft_v1_Hello *out)
{
	return decode_msg(weft_v1_Hello_fields, s.ptr, s.len, out,
	                  sizeof(*out), NULL);
}

weft_err
weft_wire_decode_spawn_spec(weft_slice s, weft_v1_SpawnSpec *out)
{
	return decode_msg(weft_v1_SpawnSpec_fields, s.ptr, s.len, out,
	                  sizeof(*out), NULL);
}

weft_err
weft_wire_decode_found_actors(weft_slice s, weft_v1_FoundActors *out)
{
	return decode_msg(weft_v1_FoundActors_fields, s.ptr, s.len, out,
	                  sizeof(*out), NULL);
}

weft_err
weft_wire_decode_error(weft_slice s, weft_v1_Error *out)
{
	weft_err rc = decode_msg(weft_v1_Error_fields, s.ptr, s.len, out,
	                         sizeof(*out), NULL);
	if (rc == WEFT_OK && !error_ok(out)) {
		memset(out, 0, sizeof(*out));
		rc = WEFT_EPROTO;
	}
	return rc;
}

/* ------------------------------------------------------------ encode */

static void
frame_empty(weft_wire_frame *f)
{
	f->nseg = 0;
	f->len = 0;
	f->copied = 0;
	f->heap = NULL;
	f->heap_cap = 0;
}

void
weft_wire_frame_fini(weft_wire_frame *f)
{
	free(f->heap);
	frame_empty(f);
}

static bool
wr_run(struct wr *w, const weft_v1_Envelope *env)
{
	pb_ostream_t s;

	memset(&s, 0, sizeof(s));
	s.callback = wr_write;
	s.state = w;
	s.max_size = SIZE_MAX;
	w->copied = w->refd = 0;
	w->nseg = 1; /* the header */
	w->open = true;
	if (w->writing)
		w->seg[0] = (weft_slice){ w->store, WEFT_FRAME_HEADER };
	return pb_encode(&s, weft_v1_Envelope_fields, env);
}

weft_err
weft_wire_encode(const weft_v1_Envelope *env, size_t max_body,
                 size_t ref_min, weft_wire_frame *out)
{
	struct wr w;
	size_t copied, refd, body;

	frame_empty(out);
	if (check_env(env) != NULL)
		return WEFT_EINVAL;
	memset(&w, 0, sizeof(w));
	w.ref_min = ref_min;
	if (!wr_run(&w, env))
		return WEFT_EINVAL; /* a bound broken (a string too long) */
	copied = w.copied;
	refd = w.refd;
	body = copied + refd;
	if (body > max_body || body > WEFT_FRAME_LIMIT_MAX)
		return WEFT_EMSGSIZE;

	w.store = out->inline_buf;
	if (WEFT_FRAME_HEADER + copied > sizeof(out->inline_buf)) {
		out->heap_cap = WEFT_FRAME_HEADER + copied;
		if ((out->heap = malloc(out->heap_cap)) == NULL) {
			frame_empty(out);
			return WEFT_ENOMEM;
		}
		w.store = out->heap;
	}
	w.writing = true;
	w.seg = out->seg;
	if (!wr_run(&w, env) || w.copied != copied || w.refd != refd) {
		/* The struct changed between the passes (another thread?). */
		weft_wire_frame_fini(out);
		return WEFT_EINVAL;
	}
	weft_frame_put_header(w.store, (uint32_t)body);
	out->nseg = w.nseg;
	out->len = WEFT_FRAME_HEADER + body;
	out->copied = WEFT_FRAME_HEADER + copied;
	return WEFT_OK;
}

weft_err
weft_wire_frame_flatten(const weft_wire_frame *f, uint8_t *dst, size_t cap)
{
	size_t off = 0;

	if (cap < f->len)
		return WEFT_EMSGSIZE;
	for (size_t i = 0; i < f->nseg; i++) {
		if (f->seg[i].len != 0)
			memcpy(dst + off, f->seg[i].ptr, f->seg[i].len);
		off += f->seg[i].len;
	}
	return WEFT_OK;
}

weft_err
weft_wire_encode_msg(const pb_msgdesc_t *fields, const void *msg,
                     uint8_t *buf, size_t cap, size_t *len)
{
	size_t need;

	if (!pb_get_encoded_size(&need, fields, msg))
		return WEFT_EINVAL;
	if (need > cap)
		return WEFT_EMSGSIZE;
	pb_ostream_t s = pb_ostream_from_buffer(buf, cap);
	if (!pb_encode(&s, fields, msg))
		return WEFT_EINVAL;
	*len = s.bytes_written;
	return WEFT_OK;
}

/* ------------------------------------------------------------ handshake */

weft_v1_ErrorKind
weft_wire_hello_check(const weft_v1_Hello *peer, bool from_dialer,
                      const uint8_t *token, size_t token_len,
                      const char **why)
{
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	if (peer->protocol_version != WEFT_WIRE_PROTOCOL_VERSION) {
		*why = "unsupported protocol version (this end speaks 1)";
		return weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH;
	}
	if (!uid_ok(peer->has_uid, &peer->uid)) {
		*why = "hello without a valid actor uid";
		return weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE;
	}
	if (peer->max_frame_size != 0 &&
	    peer->max_frame_size < WEFT_FRAME_LIMIT_MIN) {
		*why = "max_frame_size below 65536";
		return weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE;
	}
	if (from_dialer) {
		if (token_len != 0) {
			/* Constant time in the token's bytes: every byte
			 * of both padded buffers is compared. */
			uint8_t want[WEFT_WIRE_TOKEN_MAX] = { 0 };
			unsigned diff = token_len > WEFT_WIRE_TOKEN_MAX;
			if (!diff)
				memcpy(want, token, token_len);
			diff |= peer->auth_token.size != token_len;
			for (size_t i = 0; i < WEFT_WIRE_TOKEN_MAX; i++)
				diff |= (unsigned)(want[i] ^
				                   peer->auth_token.bytes[i]);
			if (diff != 0) {
				*why = "authentication failed";
				return weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED;
			}
		}
	} else {
		if (peer->auth_token.size != 0 || peer->is_probe) {
			*why = "an acceptor hello carries no token and is no probe";
			return weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE;
		}
	}
	*why = "";
	return weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED;
}

uint32_t
weft_wire_peer_limit(uint32_t max_frame_size)
{
	if (max_frame_size == 0)
		return WEFT_FRAME_LIMIT_DEFAULT;
	if (max_frame_size < WEFT_FRAME_LIMIT_MIN)
		return WEFT_FRAME_LIMIT_MIN;
	if (max_frame_size > WEFT_FRAME_LIMIT_MAX)
		return WEFT_FRAME_LIMIT_MAX;
	return max_frame_size;
}

weft_v1_ErrorKind
weft_wire_close_kind(weft_err err)
{
	return err == WEFT_EMSGSIZE
		       ? weft_v1_ErrorKind_ERROR_KIND_FRAME_TOO_LARGE
		       : weft_v1_ErrorKind_ERROR_KIND_PROTOCOL;
}

const char *
weft_wire_msg_name(pb_size_t which)
{
	switch (which) {
	case weft_v1_Envelope_yield_item_tag: return "yield_item";
	case weft_v1_Envelope_started_tag: return "started";
	case weft_v1_Envelope_return_value_tag: return "return_value";
	case weft_v1_Envelope_stop_tag: return "stop";
	case weft_v1_Envelope_start_tag: return "start";
	case weft_v1_Envelope_start_ack_tag: return "start_ack";
	case weft_v1_Envelope_error_tag: return "error";
	case weft_v1_Envelope_cancel_context_tag: return "cancel_context";
	case weft_v1_Envelope_cancel_ack_tag: return "cancel_ack";
	case weft_v1_Envelope_cancel_actor_tag: return "cancel_actor";
	case weft_v1_Envelope_ping_tag: return "ping";
	case weft_v1_Envelope_pong_tag: return "pong";
	case weft_v1_Envelope_hello_tag: return "hello";
	case weft_v1_Envelope_spawn_spec_tag: return "spawn_spec";
	case weft_v1_Envelope_bye_tag: return "bye";
	case weft_v1_Envelope_register_actor_tag: return "register_actor";
	case weft_v1_Envelope_unregister_actor_tag: return "unregister_actor";
	case weft_v1_Envelope_find_actor_tag: return "find_actor";
	case weft_v1_Envelope_found_actors_tag: return "found_actors";
	case weft_v1_Envelope_ack_tag: return "ack";
	default: return "unknown";
	}
}

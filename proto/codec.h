/* proto/codec.h - weft.v1.Envelope encode/decode on nanopb.
 *
 * The structs are the ones nanopb generates from proto/weft.proto
 * (weft.pb.h), shaped by proto/weft.options:
 *
 *   - bounded strings and repeats are inline arrays (FT_STATIC);
 *   - Payload.value, Error.message/traceback/bad_msg, the `reason` texts and
 *     the Envelope's hello/spawn_spec/found_actors are weft_slice: after a
 *     decode they point INTO the decoded bytes (no copy, no malloc), so the
 *     frame must outlive the struct; to encode, point them at your bytes;
 *   - Error.members is a weft_slice_list of encoded Errors.
 *
 * Always zero a struct before filling it (`= {0}` / memset; nanopb's
 * *_init_zero macros do not compile with weft_slice). String fields are
 * NUL-terminated char arrays and must be valid UTF-8.
 *
 * Decoding is bounded: no recursion beyond the schema's fixed depth, no
 * allocation, and any input, however malformed, gives WEFT_EPROTO, never a
 * crash. Decoding also enforces the envelope rules of docs/protocol.md §4
 * (which kinds may travel on which side, required fields), so a struct that
 * weft_wire_decode() accepted is structurally valid; the per-context state
 * machine (§6) is the runtime's job.
 *
 * Thread: every function is reentrant; nothing here has global state. */
#ifndef WEFT_PROTO_CODEC_H
#define WEFT_PROTO_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "weft.pb.h"
#include "weft/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The protocol major version this code speaks (Hello.protocol_version). */
#define WEFT_WIRE_PROTOCOL_VERSION 1u
/* Hello.heartbeat_interval_ms = 0 means this. */
#define WEFT_WIRE_HEARTBEAT_DEFAULT_MS 5000u
/* Error.bad_msg carries at most this many bytes. */
#define WEFT_WIRE_BAD_MSG_MAX 256u
/* Hello.auth_token: at most this many bytes. */
#define WEFT_WIRE_TOKEN_MAX 64u

/* ---- decode ---- */

/* Decodes one envelope from `data` (a frame's body) into `out`, which is
 * zeroed first. Slices in `out` point into `data`. WEFT_EPROTO for bytes
 * that are not a valid v1 envelope: bad protobuf, a bound exceeded, no
 * message or an unknown message kind, or an envelope rule broken (§4). */
weft_err weft_wire_decode(const uint8_t *data, size_t len,
                          weft_v1_Envelope *out);
/* The same; *why (may be NULL) receives a static sentence on WEFT_EPROTO,
 * for logs and for the message of the Error{PROTOCOL} sent before
 * closing. */
weft_err weft_wire_decode_ex(const uint8_t *data, size_t len,
                             weft_v1_Envelope *out, const char **why);

/* The lazily decoded members: `s` is env.msg.hello / spawn_spec /
 * found_actors, or one element of Error.members. Same contract as
 * weft_wire_decode(). weft_wire_decode_hello() checks only the structure;
 * weft_wire_hello_check() judges the handshake. */
weft_err weft_wire_decode_hello(weft_slice s, weft_v1_Hello *out);
weft_err weft_wire_decode_spawn_spec(weft_slice s, weft_v1_SpawnSpec *out);
weft_err weft_wire_decode_found_actors(weft_slice s,
                                       weft_v1_FoundActors *out);
weft_err weft_wire_decode_error(weft_slice s, weft_v1_Error *out);

/* ---- encode ---- */

/* A frame ready for a gather write (writev / uv_write with several bufs):
 * `seg[0..nseg)` in order, header first. Copied parts live in the struct
 * itself or in its heap buffer; large weft_slice fields (at least
 * `ref_min` bytes) are referenced where the caller keeps them. So: do not
 * move the struct while its segments are in use, keep referenced bytes
 * alive and unchanged until the write completes, then call
 * weft_wire_frame_fini(). */
#define WEFT_WIRE_MAX_SEGS 16
#define WEFT_WIRE_INLINE 256
#define WEFT_WIRE_REF_MIN 1024 /* a good default for ref_min */

typedef struct weft_wire_frame {
	weft_slice seg[WEFT_WIRE_MAX_SEGS];
	size_t nseg;
	size_t len;    /* header + envelope bytes, the sum of the segments */
	size_t copied; /* bytes of it in the frame's own buffer */
	/* private */
	uint8_t *heap;
	size_t heap_cap;
	uint8_t inline_buf[WEFT_WIRE_INLINE];
} weft_wire_frame;

/* Encodes `env` as one frame into `out` (whose previous contents are
 * ignored). `max_body` is the largest envelope the peer accepts (its
 * announced limit, or WEFT_FRAME_LIMIT_HANDSHAKE before its Hello);
 * `ref_min` the smallest slice sent by reference (SIZE_MAX: copy
 * everything). Returns:
 *   WEFT_OK        *out holds the frame;
 *   WEFT_EINVAL    `env` breaks an envelope rule (§4) or a bound;
 *   WEFT_EMSGSIZE  the envelope is larger than `max_body` (found before
 *                  anything is allocated);
 *   WEFT_ENOMEM.
 * On error *out is empty and needs no fini. */
weft_err weft_wire_encode(const weft_v1_Envelope *env, size_t max_body,
                          size_t ref_min, weft_wire_frame *out);

/* Frees the frame's heap buffer (if any) and empties it. */
void weft_wire_frame_fini(weft_wire_frame *f);

/* Copies the whole frame (header included) into `dst`. WEFT_EMSGSIZE if
 * `cap` is too small. */
weft_err weft_wire_frame_flatten(const weft_wire_frame *f, uint8_t *dst,
                                 size_t cap);

/* Encodes one message (no header) into a caller's buffer, copying every
 * slice: for the lazily decoded members (hello, spawn_spec, found_actors)
 * and group members, whose bytes the envelope then references. `fields`
 * is the generated descriptor, e.g. weft_v1_Hello_fields. WEFT_EMSGSIZE if
 * `cap` is too small, WEFT_EINVAL if `msg` breaks a bound. */
weft_err weft_wire_encode_msg(const pb_msgdesc_t *fields, const void *msg,
                              uint8_t *buf, size_t cap, size_t *len);

/* ---- handshake (docs/protocol.md §5) ---- */

/* Judges the peer's Hello. `from_dialer`: we are the acceptor and `peer`
 * is the dialer's Hello (its token is checked against `token`, which may
 * be empty: no token required). Returns ERROR_KIND_UNSPECIFIED to accept,
 * else the kind to refuse with (VERSION_MISMATCH, AUTH_FAILED, HANDSHAKE)
 * and *why a static sentence for Error.message and logs. The token is
 * compared in constant time. */
weft_v1_ErrorKind weft_wire_hello_check(const weft_v1_Hello *peer,
                                        bool from_dialer,
                                        const uint8_t *token,
                                        size_t token_len, const char **why);

/* The largest envelope to send to a peer that announced `max_frame_size`
 * (0: the default; clamped to [WEFT_FRAME_LIMIT_MIN,
 * WEFT_FRAME_LIMIT_MAX]). */
uint32_t weft_wire_peer_limit(uint32_t max_frame_size);

/* The Error kind to close with after a frame decoder or envelope decode
 * error: FRAME_TOO_LARGE for WEFT_EMSGSIZE, PROTOCOL otherwise. */
weft_v1_ErrorKind weft_wire_close_kind(weft_err err);

/* ---- names (logs, tests) ---- */

/* "yield_item", "start", ... for Envelope.which_msg; "unknown" else. */
const char *weft_wire_msg_name(pb_size_t which_msg);

/* Internal: the shared nanopb field callback named in weft.options. */
bool weft__wire_slice_cb(pb_istream_t *is, pb_ostream_t *os,
                         const pb_field_t *field);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROTO_CODEC_H */

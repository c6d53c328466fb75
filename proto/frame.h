/* proto/frame.h - length-prefixed framing of the weft wire protocol.
 *
 * A connection is a stream of frames: a 4-byte big-endian length N, then N
 * bytes holding one serialized weft.v1.Envelope (docs/protocol.md §2).
 * N counts the envelope only, never the header; 1 <= N <= the receiver's
 * limit. The decoder here turns the bytes of a stream, in whatever chunks
 * the transport delivers them, into frames:
 *
 *   - the length is checked against the limit as soon as the 4 header bytes
 *     are in, BEFORE anything is allocated for the body;
 *   - a frame that lies whole inside one input chunk is handed out in place
 *     (no copy, no allocation);
 *   - a frame split across chunks is assembled in one buffer of exactly its
 *     size, which the consumer may take over instead of copying it again;
 *   - the first error is sticky: a byte stream cannot be resynchronised, so
 *     the connection must be closed.
 *
 * This file also defines weft_slice, the byte span the generated nanopb
 * code uses for zero-copy fields (proto/weft.options).
 *
 * Thread: a decoder is used by one thread at a time (the connection's I/O
 * thread); distinct decoders are independent. Nothing here blocks. */
#ifndef WEFT_PROTO_FRAME_H
#define WEFT_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- byte spans (used by the generated weft.pb.h) ---- */

/* Bytes owned by someone else: decoded fields point into the frame they
 * came from; fields to encode point at the caller's memory, which must stay
 * valid (and unchanged) until the encoded frame has been written. */
typedef struct weft_slice {
	const uint8_t *ptr;
	size_t len;
} weft_slice;

/* A repeated zero-copy field (Error.members): at most WEFT_SLICE_LIST_MAX
 * elements, more fail the decode. */
#define WEFT_SLICE_LIST_MAX 16
typedef struct weft_slice_list {
	uint32_t n;
	weft_slice items[WEFT_SLICE_LIST_MAX];
} weft_slice_list;

/* ---- limits (docs/protocol.md §9) ---- */

#define WEFT_FRAME_HEADER 4u
/* Until the peer's Hello has been accepted. */
#define WEFT_FRAME_LIMIT_HANDSHAKE (64u * 1024u)
/* Hello.max_frame_size = 0 means this. */
#define WEFT_FRAME_LIMIT_DEFAULT (16u * 1024u * 1024u)
/* The smallest and largest limit an end may announce. */
#define WEFT_FRAME_LIMIT_MIN WEFT_FRAME_LIMIT_HANDSHAKE
#define WEFT_FRAME_LIMIT_MAX (1u << 30)

/* Writes the header for an envelope of `len` bytes. */
static inline void
weft_frame_put_header(uint8_t out[4], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

static inline uint32_t
weft_frame_get_header(const uint8_t in[4])
{
	return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 |
	       (uint32_t)in[2] << 8 | (uint32_t)in[3];
}

/* ---- decoder ---- */

/* Where a split frame's body buffer comes from. NULL members mean
 * malloc/free. `free` gets the size that was allocated. */
typedef struct weft_frame_alloc {
	void *(*alloc)(size_t size, void *arg);
	void (*free)(void *p, size_t size, void *arg);
	void *arg;
} weft_frame_alloc;

/* One complete frame, as handed to a weft_frame_cb. */
typedef struct weft_frame {
	const uint8_t *data; /* the envelope bytes (no header) */
	size_t len;          /* >= 1 */
	/* NULL: `data` points into the chunk being fed and is valid only
	 * during the callback. Non-NULL: `data` == `owned`, a buffer of `len`
	 * bytes from the decoder's allocator. The callback may take it over by
	 * setting `owned` to NULL (it then frees it with that allocator's free,
	 * size `len`); otherwise the decoder frees it when the callback
	 * returns. */
	uint8_t *owned;
} weft_frame;

/* Called once per complete frame, in stream order. Returning anything but
 * WEFT_OK stops the feed, which returns that code; the frame counts as
 * consumed. The callback may call weft_frame_decoder_set_limit(): the new
 * limit applies from the next frame's header on. */
typedef weft_err (*weft_frame_cb)(void *arg, weft_frame *frame);

/* Private: use the functions below. Callers allocate it (e.g. inside their
 * connection struct). */
typedef struct weft_frame_decoder {
	uint32_t limit;     /* largest body accepted */
	uint32_t body_len;  /* body length of the frame in progress */
	uint32_t body_got;  /* bytes of it in `body` so far */
	uint8_t hdr[4];
	uint8_t hdr_got;    /* 0..4 */
	uint8_t *body;      /* non-NULL while a split body is being assembled */
	uint64_t frames;    /* frames delivered */
	weft_err err;       /* sticky */
	const char *why;    /* static text for err */
	weft_frame_alloc a;
} weft_frame_decoder;

/* Sets up `d` with body limit `limit` (normally WEFT_FRAME_LIMIT_HANDSHAKE;
 * clamped to [1, WEFT_FRAME_LIMIT_MAX]). `a` may be NULL (malloc/free); it
 * is copied. */
void weft_frame_decoder_init(weft_frame_decoder *d, uint32_t limit,
                             const weft_frame_alloc *a);

/* Frees a partial body, if any. `d` may be initialised again. */
void weft_frame_decoder_fini(weft_frame_decoder *d);

/* Changes the limit for frames whose header is not yet complete (after the
 * handshake: this end's own announced max_frame_size). WEFT_EINVAL when
 * `limit` is outside [WEFT_FRAME_LIMIT_MIN, WEFT_FRAME_LIMIT_MAX]. */
weft_err weft_frame_decoder_set_limit(weft_frame_decoder *d, uint32_t limit);

/* Feeds `len` bytes of the stream (`data` may be NULL when len is 0) and
 * calls `cb` for every frame they complete. Returns:
 *   WEFT_OK        every byte was consumed;
 *   WEFT_EMSGSIZE  a header announced more than the limit (nothing was
 *                  allocated for it);
 *   WEFT_EPROTO    not a weft stream: a zero length, or a first header that
 *                  is plainly text or TLS (an HTTP request, "GET ...");
 *   WEFT_ENOMEM    a split body could not be allocated;
 *   the callback's code, if it returned one.
 * The three decoder errors are sticky: every later feed returns them at
 * once. `used` (may be NULL) receives the bytes consumed, so a caller whose
 * callback stopped the feed can resume with the rest. */
weft_err weft_frame_feed(weft_frame_decoder *d, const uint8_t *data,
                         size_t len, weft_frame_cb cb, void *arg,
                         size_t *used);

/* For reading straight into a split frame's body (a libuv alloc_cb): when a
 * body is being assembled, sets *dst to where its next byte goes and
 * returns how many bytes are still missing; else returns 0. Write at most
 * that many bytes there, then call weft_frame_decoder_commit(). */
size_t weft_frame_decoder_room(const weft_frame_decoder *d, uint8_t **dst);

/* Records `n` bytes written at the pointer weft_frame_decoder_room() gave
 * and delivers the frame if it is now complete. WEFT_EINVAL if `n` is more
 * than the room. */
weft_err weft_frame_decoder_commit(weft_frame_decoder *d, size_t n,
                                   weft_frame_cb cb, void *arg);

/* The sticky error (WEFT_OK while healthy) and a static sentence saying
 * what was wrong ("" while healthy). */
weft_err weft_frame_decoder_error(const weft_frame_decoder *d);
const char *weft_frame_decoder_why(const weft_frame_decoder *d);

/* True when no partial frame is buffered (a clean point to close). */
bool weft_frame_decoder_idle(const weft_frame_decoder *d);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_PROTO_FRAME_H */

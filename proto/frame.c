/* proto/frame.c - the incremental frame decoder (see frame.h).
 *
 * State: `hdr_got` < 4 means a header is being read; once it is complete
 * and checked, `body_len` is set and either the body is handed out in place
 * (it lies whole in the current chunk) or `body` is allocated to exactly
 * `body_len` bytes and filled across chunks. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

static void *
default_alloc(size_t size, void *arg)
{
	(void)arg;
	return malloc(size);
}

static void
default_free(void *p, size_t size, void *arg)
{
	(void)size;
	(void)arg;
	free(p);
}

void
weft_frame_decoder_init(weft_frame_decoder *d, uint32_t limit,
                        const weft_frame_alloc *a)
{
	memset(d, 0, sizeof(*d));
	if (limit == 0)
		limit = 1;
	if (limit > WEFT_FRAME_LIMIT_MAX)
		limit = WEFT_FRAME_LIMIT_MAX;
	d->limit = limit;
	d->why = "";
	d->a.alloc = default_alloc;
	d->a.free = default_free;
	if (a != NULL && a->alloc != NULL && a->free != NULL)
		d->a = *a;
}

void
weft_frame_decoder_fini(weft_frame_decoder *d)
{
	if (d->body != NULL)
		d->a.free(d->body, d->body_len, d->a.arg);
	d->body = NULL;
	d->body_len = d->body_got = 0;
	d->hdr_got = 0;
}

weft_err
weft_frame_decoder_set_limit(weft_frame_decoder *d, uint32_t limit)
{
	if (limit < WEFT_FRAME_LIMIT_MIN || limit > WEFT_FRAME_LIMIT_MAX)
		return WEFT_EINVAL;
	d->limit = limit;
	return WEFT_OK;
}

weft_err
weft_frame_decoder_error(const weft_frame_decoder *d)
{
	return d->err;
}

const char *
weft_frame_decoder_why(const weft_frame_decoder *d)
{
	return d->why;
}

bool
weft_frame_decoder_idle(const weft_frame_decoder *d)
{
	return d->hdr_got == 0 && d->body == NULL;
}

static weft_err
fail(weft_frame_decoder *d, weft_err err, const char *why)
{
	weft_frame_decoder_fini(d);
	d->err = err;
	d->why = why;
	return err;
}

/* The first bytes of a connection that is plainly not weft: printable
 * ASCII (an HTTP request "GET ", "POST", a text protocol) or a TLS record
 * header (0x16 0x03). Only asked when the length is already over the limit,
 * to say why more usefully than "too large". */
static const char *
foreign_protocol(const uint8_t h[4])
{
	if (h[0] == 0x16 && h[1] == 0x03)
		return "peer sent a TLS handshake, not a weft frame";
	for (int i = 0; i < 4; i++)
		if (h[i] < 0x20 || h[i] > 0x7e)
			return NULL;
	return "peer sent text (an HTTP request?), not a weft frame";
}

/* The header is complete: check it before anything is allocated. */
static weft_err
check_header(weft_frame_decoder *d)
{
	uint32_t n = weft_frame_get_header(d->hdr);

	if (n == 0)
		return fail(d, WEFT_EPROTO, "zero-length frame");
	if (n > d->limit) {
		const char *why =
			d->frames == 0 ? foreign_protocol(d->hdr) : NULL;
		if (why != NULL)
			return fail(d, WEFT_EPROTO, why);
		return fail(d, WEFT_EMSGSIZE, "frame length over the limit");
	}
	d->body_len = n;
	d->body_got = 0;
	return WEFT_OK;
}

/* Hands a completed split body to the callback and resets for the next
 * header. */
static weft_err
deliver_owned(weft_frame_decoder *d, weft_frame_cb cb, void *arg)
{
	weft_frame f = { d->body, d->body_len, d->body };
	size_t size = d->body_len;

	d->body = NULL;
	d->body_len = d->body_got = 0;
	d->hdr_got = 0;
	d->frames++;
	weft_err rc = cb(arg, &f);
	if (f.owned != NULL)
		d->a.free(f.owned, size, d->a.arg);
	return rc;
}

weft_err
weft_frame_feed(weft_frame_decoder *d, const uint8_t *data, size_t len,
                weft_frame_cb cb, void *arg, size_t *used)
{
	size_t off = 0;
	weft_err rc = WEFT_OK;

	if (d->err != WEFT_OK) {
		rc = d->err;
		goto out;
	}
	while (off < len) {
		if (d->body != NULL) {
			/* Filling a split body. */
			size_t take = d->body_len - d->body_got;
			if (take > len - off)
				take = len - off;
			memcpy(d->body + d->body_got, data + off, take);
			d->body_got += (uint32_t)take;
			off += take;
			if (d->body_got == d->body_len &&
			    (rc = deliver_owned(d, cb, arg)) != WEFT_OK)
				goto out;
			continue;
		}
		if (d->hdr_got < 4) {
			d->hdr[d->hdr_got++] = data[off++];
			if (d->hdr_got < 4)
				continue;
			if ((rc = check_header(d)) != WEFT_OK)
				goto out;
		}
		/* Header done, no body bytes held yet. */
		if (len - off >= d->body_len) {
			/* Whole body in this chunk: hand it out in place. */
			weft_frame f = { data + off, d->body_len, NULL };
			off += d->body_len;
			d->hdr_got = 0;
			d->body_len = 0;
			d->frames++;
			if ((rc = cb(arg, &f)) != WEFT_OK)
				goto out;
			continue;
		}
		/* Split: one buffer of exactly the body's size. */
		d->body = d->a.alloc(d->body_len, d->a.arg);
		if (d->body == NULL) {
			rc = fail(d, WEFT_ENOMEM, "out of memory for a frame");
			goto out;
		}
	}
out:
	if (used != NULL)
		*used = off;
	return rc;
}

size_t
weft_frame_decoder_room(const weft_frame_decoder *d, uint8_t **dst)
{
	if (d->err != WEFT_OK || d->body == NULL)
		return 0;
	*dst = d->body + d->body_got;
	return d->body_len - d->body_got;
}

weft_err
weft_frame_decoder_commit(weft_frame_decoder *d, size_t n, weft_frame_cb cb,
                          void *arg)
{
	if (d->err != WEFT_OK)
		return d->err;
	if (d->body == NULL ? n != 0 : n > d->body_len - d->body_got)
		return WEFT_EINVAL;
	if (n == 0)
		return WEFT_OK;
	d->body_got += (uint32_t)n;
	if (d->body_got == d->body_len)
		return deliver_owned(d, cb, arg);
	return WEFT_OK;
}

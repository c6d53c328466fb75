/* runtime/error.c - boxed error records (weft/error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/internal.h"
#include "runtime/error_internal.h"

static const char *const kind_names[] = {
	[WEFT_ERRKIND_NONE] = "None",
	[WEFT_ERRKIND_APP] = "Exception",
	[WEFT_ERRKIND_CONTEXT_CANCELLED] = "ContextCancelled",
	[WEFT_ERRKIND_STREAM_OVERRUN] = "StreamOverrun",
	[WEFT_ERRKIND_REMOTE] = "RemoteActorError",
	[WEFT_ERRKIND_NO_SUCH_FUNCTION] = "NoSuchFunction",
	[WEFT_ERRKIND_RUNTIME] = "RuntimeError",
	[WEFT_ERRKIND_CANCELLED] = "Cancelled",
	[WEFT_ERRKIND_INTERRUPT] = "KeyboardInterrupt",
	[WEFT_ERRKIND_TRANSPORT_CLOSED] = "TransportClosed",
	[WEFT_ERRKIND_GROUP] = "ExceptionGroup",
};

const char *
weft_errkind_name(weft_errkind kind)
{
	if ((unsigned)kind >= sizeof(kind_names) / sizeof(kind_names[0]))
		return "Unknown";
	return kind_names[kind];
}

static char *
dup_str(const char *s)
{
	return strdup(s ? s : "");
}

static void
free_fields(weft_error *e)
{
	free(e->boxed_type);
	free(e->src_type);
	free(e->message);
	free(e->traceback);
	free(e->relay);
	for (size_t i = 0; i < e->ngroup; i++)
		weft_error_release(e->group[i]);
	free(e->group);
}

static _Atomic int64_t live_errors;

int64_t
weft__error_live(void)
{
	return atomic_load_explicit(&live_errors, memory_order_relaxed);
}

static weft_error *
alloc_error(void)
{
	weft_error *e = calloc(1, sizeof(*e));
	if (e) {
		atomic_init(&e->refs, 1);
		atomic_fetch_add_explicit(&live_errors, 1,
		                          memory_order_relaxed);
	}
	return e;
}

weft_error *
weft_error_newv(weft_errkind kind, const char *type_name, const weft_uid *src,
                const char *fmt, va_list ap)
{
	char msg[512];
	char uid[WEFT_NAME_MAX + 16];
	char tb[1024];
	weft_error *e;

	if ((e = alloc_error()) == NULL)
		return NULL;
	vsnprintf(msg, sizeof(msg), fmt ? fmt : "", ap);
	if (type_name == NULL)
		type_name = weft_errkind_name(kind);
	e->kind = kind;
	e->boxed_type = dup_str(type_name);
	e->src_type = dup_str(type_name);
	e->message = dup_str(msg);
	if (src) {
		e->has_src = true;
		e->src = *src;
		e->relay = malloc(sizeof(*e->relay));
		if (e->relay) {
			e->relay[0] = *src;
			e->nrelay = 1;
		}
		weft_uid_format(src, uid, sizeof(uid));
	} else {
		snprintf(uid, sizeof(uid), "?");
	}
	snprintf(tb, sizeof(tb), "%s raised in actor %s: %s\n", type_name, uid,
	         msg);
	e->traceback = dup_str(tb);
	if (!e->boxed_type || !e->src_type || !e->message || !e->traceback ||
	    (src && !e->relay)) {
		free_fields(e);
		free(e);
		atomic_fetch_sub(&live_errors, 1);
		return NULL;
	}
	return e;
}

weft_error *
weft_error_new(weft_errkind kind, const char *type_name, const weft_uid *src,
               const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	weft_error *e = weft_error_newv(kind, type_name, src, fmt, ap);
	va_end(ap);
	return e;
}

weft_error *
weft_error_hold(const weft_error *ce)
{
	weft_error *e = (weft_error *)ce;
	if (e)
		/* relaxed: a new reference needs no ordering; the record is
		 * immutable once shared. */
		atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	return e;
}

void
weft_error_release(const weft_error *ce)
{
	weft_error *e = (weft_error *)ce;
	if (e == NULL)
		return;
	/* acq_rel: the last releaser frees after every other use. */
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
		free_fields(e);
		free(e);
		atomic_fetch_sub_explicit(&live_errors, 1,
		                          memory_order_relaxed);
	}
}

weft_errkind weft_error_kind(const weft_error *e) { return e->kind; }
const char *weft_error_boxed_type(const weft_error *e) { return e->boxed_type; }
const char *weft_error_src_type(const weft_error *e) { return e->src_type; }
const char *weft_error_message(const weft_error *e) { return e->message; }
const char *weft_error_traceback(const weft_error *e) { return e->traceback; }
uint64_t weft_error_cid(const weft_error *e) { return e->cid; }

const weft_uid *
weft_error_src_uid(const weft_error *e)
{
	return e->has_src ? &e->src : NULL;
}

size_t
weft_error_relay_len(const weft_error *e)
{
	return e->nrelay;
}

const weft_uid *
weft_error_relay_at(const weft_error *e, size_t i)
{
	return i < e->nrelay ? &e->relay[i] : NULL;
}

const weft_uid *
weft_error_relay_uid(const weft_error *e)
{
	return e->nrelay ? &e->relay[e->nrelay - 1] : NULL;
}

const weft_uid *
weft_error_canceller(const weft_error *e)
{
	return e->has_canceller ? &e->canceller : NULL;
}

const weft_uid *
weft_error_sender(const weft_error *e)
{
	return e->has_sender ? &e->sender : NULL;
}

size_t
weft_error_group_len(const weft_error *e)
{
	return e->ngroup;
}

const weft_error *
weft_error_group_at(const weft_error *e, size_t i)
{
	return i < e->ngroup ? e->group[i] : NULL;
}

char *
weft_error_format(const weft_error *e, char *buf, size_t len)
{
	char uid[WEFT_NAME_MAX + 16] = "?";
	if (e->has_src)
		weft_uid_format(&e->src, uid, sizeof(uid));
	if (e->kind == WEFT_ERRKIND_REMOTE)
		snprintf(buf, len, "RemoteActorError[%s] from %s: %s",
		         e->src_type, uid, e->message);
	else
		snprintf(buf, len, "%s from %s: %s", e->boxed_type, uid,
		         e->message);
	return buf;
}

/* ---- internal constructors ---- */

void
weft__error_set_canceller(weft_error *e, const weft_uid *uid)
{
	if (uid) {
		e->has_canceller = true;
		e->canceller = *uid;
	}
}

void
weft__error_set_sender(weft_error *e, const weft_uid *uid)
{
	if (uid) {
		e->has_sender = true;
		e->sender = *uid;
	}
}

void
weft__error_set_cid(weft_error *e, uint64_t cid)
{
	e->cid = cid;
}

weft_error *
weft__error_relay(const weft_error *from, const weft_uid *by, uint64_t cid)
{
	weft_error *e;
	char uid[WEFT_NAME_MAX + 16];
	size_t tblen;

	if ((e = alloc_error()) == NULL)
		return NULL;
	e->kind = WEFT_ERRKIND_REMOTE;
	e->boxed_type = dup_str("RemoteActorError");
	e->src_type = dup_str(from->src_type);
	e->message = dup_str(from->message);
	e->has_src = from->has_src;
	e->src = from->src;
	e->has_canceller = from->has_canceller;
	e->canceller = from->canceller;
	e->has_sender = from->has_sender;
	e->sender = from->sender;
	e->cid = cid;
	e->relay = malloc(sizeof(*e->relay) * (from->nrelay + 1));
	weft_uid_format(by, uid, sizeof(uid));
	tblen = strlen(from->traceback) + strlen(from->boxed_type) +
		strlen(uid) + 64;
	e->traceback = malloc(tblen);
	if (!e->boxed_type || !e->src_type || !e->message || !e->relay ||
	    !e->traceback) {
		free_fields(e);
		free(e);
		atomic_fetch_sub(&live_errors, 1);
		return NULL;
	}
	memcpy(e->relay, from->relay, sizeof(*e->relay) * from->nrelay);
	e->relay[from->nrelay] = *by;
	e->nrelay = from->nrelay + 1;
	snprintf(e->traceback, tblen, "%s%s relayed by actor %s\n",
	         from->traceback, from->boxed_type, uid);
	return e;
}

weft_error *
weft__error_group(weft_error *const *members, size_t n, const weft_uid *src)
{
	weft_error *e = weft_error_new(WEFT_ERRKIND_GROUP, NULL, src,
	                               "%zu errors", n);
	if (e == NULL)
		return NULL;
	e->group = malloc(sizeof(*e->group) * (n ? n : 1));
	if (e->group == NULL) {
		weft_error_release(e);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		e->group[i] = weft_error_hold(members[i]);
	e->ngroup = n;
	return e;
}

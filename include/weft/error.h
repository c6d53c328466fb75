/* weft/error.h - boxed error records: what a failed context, stream, portal
 * or nursery call reports beyond its return code.
 *
 * A record is immutable once made and reference-counted; any thread may
 * read it and hold/release it. tractor's exception types map onto `kind`
 * (an enum, the same on the wire) plus the type-name strings:
 *
 *   kind                               boxed_type string (tractor)
 *   WEFT_ERRKIND_APP                   the application's own type name
 *   WEFT_ERRKIND_CONTEXT_CANCELLED     "ContextCancelled"
 *   WEFT_ERRKIND_STREAM_OVERRUN        "StreamOverrun"
 *   WEFT_ERRKIND_REMOTE                "RemoteActorError" (a relayed error)
 *   WEFT_ERRKIND_NO_SUCH_FUNCTION      "NoSuchFunction" (ModuleNotExposed)
 *   WEFT_ERRKIND_RUNTIME               "RuntimeError" (API misuse)
 *   WEFT_ERRKIND_CANCELLED             "Cancelled" (a local cancel)
 *   WEFT_ERRKIND_INTERRUPT             "KeyboardInterrupt"
 *   WEFT_ERRKIND_TRANSPORT_CLOSED      "TransportClosed"
 *   WEFT_ERRKIND_GROUP                 "ExceptionGroup" (several errors)
 *
 * Relaying (semantics.md §3): when an actor's task fails because of a
 * remote error it received, the error it sends on is the same record with
 * kind REMOTE and boxed_type "RemoteActorError", src_uid/src_type kept, and
 * the relaying actor appended to relay_path. */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/actor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum weft_errkind {
	WEFT_ERRKIND_NONE = 0,
	WEFT_ERRKIND_APP,
	WEFT_ERRKIND_CONTEXT_CANCELLED,
	WEFT_ERRKIND_STREAM_OVERRUN,
	WEFT_ERRKIND_REMOTE,
	WEFT_ERRKIND_NO_SUCH_FUNCTION,
	WEFT_ERRKIND_RUNTIME,
	WEFT_ERRKIND_CANCELLED,
	WEFT_ERRKIND_INTERRUPT,
	WEFT_ERRKIND_TRANSPORT_CLOSED,
	WEFT_ERRKIND_GROUP,
} weft_errkind;

typedef struct weft_error weft_error; /* opaque, reference-counted */

/* The canonical type name of a kind ("ContextCancelled", ...); for APP,
 * "Exception". Never NULL. */
WEFT_EXTERN const char *weft_errkind_name(weft_errkind kind);

/* Makes a record of `kind` whose source is `src` (may be NULL: no
 * source). `type_name` NULL means weft_errkind_name(kind). The message is
 * printf-formatted. src_type = boxed_type = type_name; relay_path = [src];
 * the traceback text records where it was made. NULL when out of memory.
 * The caller owns one reference. */
WEFT_EXTERN weft_error *weft_error_new(weft_errkind kind, const char *type_name,
                                       const weft_uid *src, const char *fmt,
                                       ...) __attribute__((format(printf, 4, 5)));
WEFT_EXTERN weft_error *weft_error_newv(weft_errkind kind,
                                        const char *type_name,
                                        const weft_uid *src, const char *fmt,
                                        va_list ap);

WEFT_EXTERN weft_error *weft_error_hold(const weft_error *e); /* returns e */
WEFT_EXTERN void weft_error_release(const weft_error *e);     /* NULL ok */

WEFT_EXTERN weft_errkind weft_error_kind(const weft_error *e);
/* The type name at the last hop. */
WEFT_EXTERN const char *weft_error_boxed_type(const weft_error *e);
/* The type name where it was first raised. */
WEFT_EXTERN const char *weft_error_src_type(const weft_error *e);
WEFT_EXTERN const char *weft_error_message(const weft_error *e);
/* Multi-line text: where it was raised and every hop it took. */
WEFT_EXTERN const char *weft_error_traceback(const weft_error *e);
/* The actor that first raised it; NULL if none. */
WEFT_EXTERN const weft_uid *weft_error_src_uid(const weft_error *e);
/* The actors that packed or relayed it, the source first. */
WEFT_EXTERN size_t weft_error_relay_len(const weft_error *e);
WEFT_EXTERN const weft_uid *weft_error_relay_at(const weft_error *e, size_t i);
/* The last of the relay path (the hop it came from); NULL if empty. */
WEFT_EXTERN const weft_uid *weft_error_relay_uid(const weft_error *e);
/* ContextCancelled: the actor that requested the cancel; else NULL. */
WEFT_EXTERN const weft_uid *weft_error_canceller(const weft_error *e);
/* StreamOverrun: the actor whose sends overran the receiver; else NULL. */
WEFT_EXTERN const weft_uid *weft_error_sender(const weft_error *e);
/* The context id it was routed on; 0 if none. */
WEFT_EXTERN uint64_t weft_error_cid(const weft_error *e);

/* An aggregate's members (kind GROUP), one by one; 0 for a plain error. */
WEFT_EXTERN size_t weft_error_group_len(const weft_error *e);
WEFT_EXTERN const weft_error *weft_error_group_at(const weft_error *e,
                                                  size_t i);

/* One line "Kind[boxed] from name:xxxx: message" into buf; returns buf. */
WEFT_EXTERN char *weft_error_format(const weft_error *e, char *buf,
                                    size_t len);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_ERROR_H */

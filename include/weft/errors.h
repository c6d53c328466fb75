/* weft/errors.h - the one error enum, generated from one list.
 *
 * Every weft call that can fail returns a weft_err. WEFT_OK is 0; every
 * other code is positive. Thread: any thread may call weft_strerror() and
 * weft_errname(). */
#ifndef WEFT_ERRORS_H
#define WEFT_ERRORS_H

#include "weft/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, message). Append only: the numbers travel in logs and, later,
 * on the wire. */
#define WEFT_ERR_MAP(X)                                                    \
	X(OK, "success")                                                   \
	X(ENOMEM, "out of memory")                                         \
	X(EINVAL, "invalid argument")                                      \
	X(ECLOSED, "object is closed or has exited")                       \
	X(ECANCELED, "operation was cancelled")                            \
	X(ETIMEDOUT, "timed out")                                          \
	X(EBUSY, "object is still in use")                                 \
	X(ESTATE, "call not allowed in this state or from this thread")    \
	X(EMSGSIZE, "message too large")                                   \
	X(EPROTO, "malformed message")                                     \
	X(EREMOTE, "remote actor failed")                                  \
	X(ENOENT, "no such function or name")                              \
	X(EOVERRUN, "stream overrun")                                      \
	X(ESYS, "system call failed")                                      \
	X(EFAILED, "failed with an error (see the error record)")           \
	X(EEOC, "end of channel: the peer closed its stream")               \
	X(ELAGGED, "broadcast receiver fell behind")                        \
	X(EINTERRUPT, "interrupted")

typedef enum weft_err {
#define WEFT__ERR_ENUM(name, msg) WEFT_##name,
	WEFT_ERR_MAP(WEFT__ERR_ENUM)
#undef WEFT__ERR_ENUM
	WEFT__ERR_COUNT
} weft_err;

/* A static, human-readable sentence for `err` ("unknown error" if out of
 * range). Never NULL. */
WEFT_EXTERN const char *weft_strerror(weft_err err);

/* The code's name without prefix, e.g. "ECLOSED". Never NULL. */
WEFT_EXTERN const char *weft_errname(weft_err err);

#ifdef __cplusplus
}
#endif
#endif /* WEFT_ERRORS_H */

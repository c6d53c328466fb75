/* runtime/error_internal.h - the record behind weft_error, and the
 * constructors the runtime uses while a record is still private to its
 * maker (before it is shared, it may be filled in). */
#ifndef WEFT_ERROR_INTERNAL_H
#define WEFT_ERROR_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "weft/error.h"

struct weft_error {
	_Atomic int refs;
	weft_errkind kind;
	char *boxed_type;
	char *src_type;
	char *message;
	char *traceback;
	bool has_src, has_canceller, has_sender;
	weft_uid src, canceller, sender;
	size_t nrelay;
	weft_uid *relay;
	uint64_t cid;
	size_t ngroup;
	weft_error **group;
};

void weft__error_set_canceller(weft_error *e, const weft_uid *uid);
void weft__error_set_sender(weft_error *e, const weft_uid *uid);
void weft__error_set_cid(weft_error *e, uint64_t cid);
/* `from` relayed by `by`: kind REMOTE, source kept, `by` appended. */
weft_error *weft__error_relay(const weft_error *from, const weft_uid *by,
                              uint64_t cid);
/* An aggregate holding a reference to each member. */
weft_error *weft__error_group(weft_error *const *members, size_t n,
                              const weft_uid *src);
/* Records alive in the process (for leak checks). */
int64_t weft__error_live(void);

#endif /* WEFT_ERROR_INTERNAL_H */

/* runtime/pool.h - message memory: size-class free lists per thread, with a
 * shared depot that moves whole batches between threads. A producer on one
 * worker and a consumer on another reach a steady state with no malloc: the
 * consumer's surplus batches travel back to the producer through the depot.
 *
 * Under AddressSanitizer pooling is off (every message is malloc'd and
 * freed), so use-after-free and leaks of messages are reported.
 *
 * Thread: any thread. */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include <stddef.h>
#include <stdint.h>

void *weft__pool_alloc(size_t size, unsigned *cls_out);
void weft__pool_free(void *p, unsigned cls);
/* The class that an allocation of `size` bytes uses (or the large-object
 * class). */
unsigned weft__pool_class(size_t size);

/* Allocations minus frees so far, across threads. */
int64_t weft__pool_outstanding(void);

#endif /* WEFT_POOL_H */

/* runtime/pool.c - see pool.h. */

#include "runtime/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_POOL_BYPASS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_POOL_BYPASS 1
#endif
#endif

#define NCLASS 7          /* 64 .. 4096 bytes: one cache line at least, so that
                           * two messages on different cores never share one */
#define MIN_SHIFT 6
#define LARGE NCLASS      /* class for larger blocks: plain malloc */
#define BATCH 256         /* blocks moved between thread and depot at once */
#define CACHE_MAX (2 * BATCH)
#define SLAB_BYTES (64u * 1024u)

/* Free blocks of a class are carved from slabs that are never returned to
 * malloc: the pool keeps its high-water mark (as Pony's does), and in
 * exchange an empty cache costs one malloc per slab, not per message. */
struct block {
	struct block *next;
	struct block *next_batch; /* in the depot: the next batch */
	uint32_t count;           /* in the depot: blocks in this batch */
};

struct depot {
	pthread_mutex_t lock;
	struct block *batches;
};

/* Each thread's cache is on this list so that the outstanding count can be
 * summed; a thread that exits folds its counts into `retired`. */
struct cache {
	struct block *free[NCLASS];
	uint32_t n[NCLASS];
	/* Owner writes, others read: relaxed. */
	_Atomic int64_t allocs;
	_Atomic int64_t frees;
	struct cache *next_cache;
	bool registered;
};

#ifndef WEFT_POOL_BYPASS
static struct depot depots[NCLASS] = {
	[0 ... NCLASS - 1] = {PTHREAD_MUTEX_INITIALIZER, NULL},
};
#endif
static pthread_mutex_t caches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cache *caches;
static int64_t retired; /* under caches_lock */
static pthread_key_t cache_key;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;
static _Thread_local struct cache tls_cache;

unsigned
weft__pool_class(size_t size)
{
	if (size <= (1u << MIN_SHIFT))
		return 0;
	if (size > ((size_t)1 << (MIN_SHIFT + NCLASS - 1)))
		return LARGE;
	/* smallest c with 64 << c >= size */
	return (unsigned)(64 - __builtin_clzll((unsigned long long)size - 1)) -
	       MIN_SHIFT;
}

static size_t
class_bytes(unsigned c)
{
	return (size_t)1 << (MIN_SHIFT + c);
}

#ifndef WEFT_POOL_BYPASS
static void depot_put(unsigned c, struct block *first, uint32_t n);
#endif

static void
cache_exit(void *arg)
{
	struct cache *tc = arg;

#ifndef WEFT_POOL_BYPASS
	/* Slab blocks cannot go back to malloc: the depot keeps them. */
	for (unsigned c = 0; c < NCLASS; c++) {
		if (tc->free[c])
			depot_put(c, tc->free[c], tc->n[c]);
		tc->free[c] = NULL;
		tc->n[c] = 0;
	}
#endif
	pthread_mutex_lock(&caches_lock);
	struct cache **pp = &caches;
	while (*pp && *pp != tc)
		pp = &(*pp)->next_cache;
	if (*pp)
		*pp = tc->next_cache;
	retired += atomic_load(&tc->allocs) - atomic_load(&tc->frees);
	atomic_store(&tc->allocs, 0);
	atomic_store(&tc->frees, 0);
	tc->registered = false;
	pthread_mutex_unlock(&caches_lock);
}

/* fork() (a child process spawned by a nursery) copies only the forking
 * thread: no pool lock may be held by another thread at that moment, or
 * the child's first allocation would wait for ever. */
static void
fork_prepare(void)
{
	pthread_mutex_lock(&caches_lock);
#ifndef WEFT_POOL_BYPASS
	for (unsigned c = 0; c < NCLASS; c++)
		pthread_mutex_lock(&depots[c].lock);
#endif
}

static void
fork_release(void)
{
#ifndef WEFT_POOL_BYPASS
	for (unsigned c = NCLASS; c-- > 0;)
		pthread_mutex_unlock(&depots[c].lock);
#endif
	pthread_mutex_unlock(&caches_lock);
}

static void
make_key(void)
{
	pthread_key_create(&cache_key, cache_exit);
	pthread_atfork(fork_prepare, fork_release, fork_release);
}

static struct cache *
cache_get(void)
{
	struct cache *tc = &tls_cache;

	if (__builtin_expect(!tc->registered, 0)) {
		pthread_once(&cache_key_once, make_key);
		pthread_mutex_lock(&caches_lock);
		tc->next_cache = caches;
		caches = tc;
		tc->registered = true;
		pthread_mutex_unlock(&caches_lock);
		pthread_setspecific(cache_key, tc);
	}
	return tc;
}

static inline void
bump(_Atomic int64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

#ifndef WEFT_POOL_BYPASS
static void
depot_put(unsigned c, struct block *first, uint32_t n)
{
	first->count = n;
	pthread_mutex_lock(&depots[c].lock);
	first->next_batch = depots[c].batches;
	depots[c].batches = first;
	pthread_mutex_unlock(&depots[c].lock);
}

static struct block *
depot_get(unsigned c)
{
	struct block *b;

	pthread_mutex_lock(&depots[c].lock);
	b = depots[c].batches;
	if (b)
		depots[c].batches = b->next_batch;
	pthread_mutex_unlock(&depots[c].lock);
	return b;
}

/* A new slab, carved into a list of blocks; returns the count. */
static uint32_t
slab_new(unsigned c, struct block **first)
{
	size_t bytes = class_bytes(c);
	uint32_t n = (uint32_t)(SLAB_BYTES / bytes);
	if (n < 16)
		n = 16;
	char *slab = malloc(bytes * n);
	if (slab == NULL)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		((struct block *)(slab + i * bytes))->next =
			i + 1 < n ? (struct block *)(slab + (i + 1) * bytes)
				  : NULL;
	*first = (struct block *)slab;
	return n;
}
#endif

void *
weft__pool_alloc(size_t size, unsigned *cls_out)
{
	struct cache *tc = cache_get();
	unsigned c = weft__pool_class(size);

	*cls_out = c;
	bump(&tc->allocs);
#ifdef WEFT_POOL_BYPASS
	return malloc(c == LARGE ? size : class_bytes(c));
#else
	if (c == LARGE)
		return malloc(size);
	struct block *b = tc->free[c];
	if (b == NULL) {
		uint32_t n;
		if ((b = depot_get(c)) != NULL) {
			n = b->count;
		} else if ((n = slab_new(c, &b)) == 0) {
			atomic_store_explicit(
				&tc->allocs,
				atomic_load_explicit(&tc->allocs,
				                     memory_order_relaxed) - 1,
				memory_order_relaxed);
			return NULL;
		}
		tc->free[c] = b;
		tc->n[c] = n;
	}
	tc->free[c] = b->next;
	tc->n[c]--;
	return b;
#endif
}

void
weft__pool_free(void *p, unsigned c)
{
	struct cache *tc = cache_get();

	bump(&tc->frees);
#ifdef WEFT_POOL_BYPASS
	(void)c;
	free(p);
#else
	if (c == LARGE) {
		free(p);
		return;
	}
	struct block *b = p;
	b->next = tc->free[c];
	tc->free[c] = b;
	if (++tc->n[c] >= CACHE_MAX) {
		/* Hand the newest BATCH blocks to the depot as one batch. */
		struct block *first = tc->free[c];
		struct block *last = first;
		for (uint32_t i = 1; i < BATCH; i++)
			last = last->next;
		tc->free[c] = last->next;
		last->next = NULL;
		tc->n[c] -= BATCH;
		depot_put(c, first, BATCH);
	}
#endif
}

int64_t
weft__pool_outstanding(void)
{
	int64_t sum;

	pthread_mutex_lock(&caches_lock);
	sum = retired;
	for (struct cache *tc = caches; tc; tc = tc->next_cache)
		sum += atomic_load_explicit(&tc->allocs, memory_order_relaxed) -
		       atomic_load_explicit(&tc->frees, memory_order_relaxed);
	pthread_mutex_unlock(&caches_lock);
	return sum;
}

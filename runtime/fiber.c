/* runtime/fiber.c - stackful coroutines; see fiber.h for the contract.
 *
 * Layout of one fiber mapping (low to high addresses):
 *
 *   [ guard page, PROT_NONE ][ stack ...... grows down <-- ][ header ]
 *   map_base                 stack_lo                       struct weft__fiber
 *
 * The header (struct weft__fiber) sits in the top bytes of the mapping, so
 * creating a fiber is one cache pop and no malloc. Default-size mappings
 * are recycled: per-thread cache (no lock) -> global pool (mutex) -> munmap.
 *
 * x86_64: a hand-written switch saves the SysV callee-saved registers plus
 * MXCSR and the x87 control word on the old stack and stores rsp; no
 * syscall, no signal mask. Elsewhere: ucontext (slow: sigprocmask per
 * switch; and the signal mask travels with the fiber between threads).
 *
 * Thread-locals are reached only through weft__fiber_tls(), a noinline,
 * non-IPA function, and no pointer obtained from it is used after a switch:
 * a fiber may come back on another thread.
 */
#include "fiber.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- configuration ------------------------------------------------------ */

#if defined(__x86_64__) && !defined(WEFT__FIBER_FORCE_UCONTEXT)
#define WEFT__FIBER_ASM 1
#else
/* Non-x86_64 targets. WEFT__FIBER_FORCE_UCONTEXT exists only to test this
 * path on x86_64; never use it in a real build there. */
#define WEFT__FIBER_ASM 0
#include <ucontext.h>
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT__FIBER_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define WEFT__FIBER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(WEFT__FIBER_ASAN)
#define WEFT__FIBER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(WEFT__FIBER_TSAN)
#define WEFT__FIBER_TSAN 1
#endif

#ifdef WEFT__FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef WEFT__FIBER_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if defined(__clang__)
/* clang has no noipa; the asm in weft__fiber_tls() keeps it from being
 * inferred readnone (which would let calls be merged across a switch). */
#define WEFT__FIBER_NOIPA __attribute__((noinline))
#else
#define WEFT__FIBER_NOIPA __attribute__((noinline, noipa))
#endif

/* Stacks per thread cache; half of them move to the pool on overflow. */
#define WEFT__FIBER_TCACHE_MAX 16
/* Stacks kept in the global pool (x 68 KiB of address space; RSS is only
 * what the previous owners touched). */
#define WEFT__FIBER_POOL_MAX 256
/* Sanity bound on stack_size. */
#define WEFT__FIBER_MAX_STACK ((size_t)1 << 32)

enum {
	WEFT__FIBER_NEW = 0,
	WEFT__FIBER_RUNNING = 1,
	WEFT__FIBER_SUSPENDED = 2,
	WEFT__FIBER_FINISHED = 3,
};

struct weft__fiber {
#if WEFT__FIBER_ASM
	void *sp;        /* fiber's saved rsp while not running */
	void *caller_sp; /* switch_in caller's saved rsp while running */
#else
	ucontext_t ctx;         /* fiber's context while not running */
	ucontext_t *caller_ctx; /* on the switch_in caller's stack */
#endif
	void (*entry)(void *arg);
	void *arg;
	char *map_base;
	size_t map_size;
	char *stack_lo;
	size_t stack_size;
	struct weft__fiber *prev_current; /* caller's current, for nesting */
	_Atomic int state;
	int leave_state; /* SUSPENDED or FINISHED, set by the fiber */
	bool pooled;     /* default-size mapping: recycle, don't unmap */
#ifdef WEFT__FIBER_ASAN
	void *asan_fake_caller; /* caller's fake stack while the fiber runs */
	void *asan_fake_self;   /* fiber's fake stack while suspended */
	const void *asan_caller_bottom;
	size_t asan_caller_size;
#endif
#ifdef WEFT__FIBER_TSAN
	void *tsan_self;
	void *tsan_caller;
#endif
};

#define WEFT__FIBER_HDR_SIZE ((sizeof(struct weft__fiber) + 63) & ~(size_t)63)

/* Free-list node stored where the header goes (always-touched memory). */
struct weft__fiber_free {
	struct weft__fiber_free *next;
};

struct weft__fiber_tls {
	struct weft__fiber *current;
	unsigned ncached;
	bool dtor_registered;
	char *cached[WEFT__FIBER_TCACHE_MAX]; /* map bases */
};

static _Thread_local struct weft__fiber_tls weft__fiber_tl;

/* The only way to reach thread-local state. Never keep its result across a
 * context switch. */
static WEFT__FIBER_NOIPA struct weft__fiber_tls *weft__fiber_tls(void)
{
	struct weft__fiber_tls *p = &weft__fiber_tl;
	__asm__ volatile("" : "+r"(p) : : "memory");
	return p;
}

static _Noreturn void weft__fiber_panic(const char *what)
{
	fprintf(stderr, "weft: fiber misuse: %s\n", what);
	fflush(stderr);
	abort();
}

/* ---- context switch ----------------------------------------------------- */

#if WEFT__FIBER_ASM

/* void weft__fiber_ctx_swap(void **save_sp, void *load_sp, void *arg)
 * Pushes rbp rbx r12-r15, MXCSR, x87 CW; stores rsp to *save_sp; loads
 * load_sp and pops the same. Returns arg in rax, and also leaves it in rdi
 * so that a fresh stack can "return" straight into weft__fiber_start(arg).
 * Frame (from saved rsp up): [0] x87 CW, [8] MXCSR, [16] r15, r14, r13,
 * r12, rbx, [56] rbp, [64] return address. */
__asm__(".text\n"
        ".p2align 4\n"
        ".globl weft__fiber_ctx_swap\n"
        ".hidden weft__fiber_ctx_swap\n"
        ".type weft__fiber_ctx_swap,@function\n"
        "weft__fiber_ctx_swap:\n"
        "\t.cfi_startproc\n"
        "\tpushq %rbp\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tpushq %rbx\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tpushq %r12\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tpushq %r13\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tpushq %r14\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tpushq %r15\n"
        "\t.cfi_adjust_cfa_offset 8\n"
        "\tsubq $16, %rsp\n"
        "\t.cfi_adjust_cfa_offset 16\n"
        "\tstmxcsr 8(%rsp)\n"
        "\tfnstcw (%rsp)\n"
        "\tmovq %rsp, (%rdi)\n"
        "\tmovq %rsi, %rsp\n"
        "\tfldcw (%rsp)\n"
        "\tldmxcsr 8(%rsp)\n"
        "\taddq $16, %rsp\n"
        "\t.cfi_adjust_cfa_offset -16\n"
        "\tpopq %r15\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpopq %r14\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpopq %r13\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpopq %r12\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpopq %rbx\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tpopq %rbp\n"
        "\t.cfi_adjust_cfa_offset -8\n"
        "\tmovq %rdx, %rax\n"
        "\tmovq %rdx, %rdi\n"
        "\tret\n"
        "\t.cfi_endproc\n"
        ".size weft__fiber_ctx_swap, .-weft__fiber_ctx_swap\n");

__attribute__((visibility("hidden"))) void
weft__fiber_ctx_swap(void **save_sp, void *load_sp, void *arg);

#endif /* WEFT__FIBER_ASM */

/* First code on a fresh stack. Never returns: the last switch leaves the
 * stack for good and the fiber is destroyed from elsewhere. */
static _Noreturn void weft__fiber_start(struct weft__fiber *f)
{
#ifdef WEFT__FIBER_ASAN
	__sanitizer_finish_switch_fiber(NULL, &f->asan_caller_bottom,
	                                &f->asan_caller_size);
#endif
	f->entry(f->arg);

	f->leave_state = WEFT__FIBER_FINISHED;
#ifdef WEFT__FIBER_ASAN
	/* NULL: this stack is never resumed, drop its fake stack. */
	__sanitizer_start_switch_fiber(NULL, f->asan_caller_bottom,
	                               f->asan_caller_size);
#endif
#ifdef WEFT__FIBER_TSAN
	__tsan_switch_to_fiber(f->tsan_caller, 0);
#endif
#if WEFT__FIBER_ASM
	weft__fiber_ctx_swap(&f->sp, f->caller_sp, f);
#else
	setcontext(f->caller_ctx);
#endif
	weft__fiber_panic("a finished fiber was resumed");
}

#if !WEFT__FIBER_ASM
static void weft__fiber_uc_start(void)
{
	/* switch_in set current just before swapcontext; nothing has been
	 * suspended yet, so reading it here is safe. */
	weft__fiber_start(weft__fiber_tls()->current);
}

/* Separate and noinline: getcontext() returns twice, which would make the
 * compiler distrust every local of its caller. */
static __attribute__((noinline)) int weft__fiber_uc_init(struct weft__fiber *f)
{
	if (getcontext(&f->ctx) != 0)
		return -1;
	f->ctx.uc_stack.ss_sp = f->stack_lo;
	f->ctx.uc_stack.ss_size = f->stack_size;
	f->ctx.uc_link = NULL;
	makecontext(&f->ctx, weft__fiber_uc_start, 0);
	return 0;
}
#endif

/* ---- stacks ------------------------------------------------------------- */

static _Atomic size_t weft__fiber_page;
static _Atomic size_t weft__fiber_nmapped;
static _Atomic size_t weft__fiber_nunmapped;

static pthread_mutex_t weft__fiber_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weft__fiber_free *weft__fiber_pool_head; /* under the lock */
static size_t weft__fiber_pool_n;                      /* under the lock */

static pthread_once_t weft__fiber_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t weft__fiber_key;
static bool weft__fiber_key_ok;

static size_t weft__fiber_page_size(void)
{
	size_t p = atomic_load_explicit(&weft__fiber_page, memory_order_relaxed);
	if (p == 0) {
		long v = sysconf(_SC_PAGESIZE);
		p = v > 0 ? (size_t)v : 4096;
		atomic_store_explicit(&weft__fiber_page, p, memory_order_relaxed);
	}
	return p;
}

static size_t weft__fiber_round_page(size_t n)
{
	size_t page = weft__fiber_page_size();
	return (n + page - 1) & ~(page - 1);
}

/* Mapping size (guard + stack) of a default-size fiber. */
static size_t weft__fiber_default_map_size(void)
{
	return weft__fiber_page_size() +
	       weft__fiber_round_page(WEFT__FIBER_DEFAULT_STACK);
}

static char *weft__fiber_map(size_t map_size)
{
	size_t guard = weft__fiber_page_size();
	void *p = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
	               -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (mprotect(p, guard, PROT_NONE) != 0) {
		munmap(p, map_size);
		return NULL;
	}
	atomic_fetch_add_explicit(&weft__fiber_nmapped, 1, memory_order_relaxed);
	return p;
}

static void weft__fiber_unmap(char *base, size_t map_size)
{
	munmap(base, map_size);
	atomic_fetch_add_explicit(&weft__fiber_nunmapped, 1,
	                          memory_order_relaxed);
}

static struct weft__fiber_free *weft__fiber_node_of(char *base)
{
	return (struct weft__fiber_free *)(void *)(base +
	                                           weft__fiber_default_map_size() -
	                                           WEFT__FIBER_HDR_SIZE);
}

static char *weft__fiber_base_of(struct weft__fiber_free *n)
{
	return (char *)n - (weft__fiber_default_map_size() - WEFT__FIBER_HDR_SIZE);
}

/* Move bases[0..n) to the global pool; unmap what does not fit. */
static void weft__fiber_pool_put(char **bases, unsigned n)
{
	unsigned i = 0;
	pthread_mutex_lock(&weft__fiber_pool_lock);
	for (; i < n && weft__fiber_pool_n < WEFT__FIBER_POOL_MAX; i++) {
		struct weft__fiber_free *node = weft__fiber_node_of(bases[i]);
		node->next = weft__fiber_pool_head;
		weft__fiber_pool_head = node;
		weft__fiber_pool_n++;
	}
	pthread_mutex_unlock(&weft__fiber_pool_lock);
	for (; i < n; i++)
		weft__fiber_unmap(bases[i], weft__fiber_default_map_size());
}

/* Take up to max stacks from the global pool into bases; returns count. */
static unsigned weft__fiber_pool_get(char **bases, unsigned max)
{
	unsigned n = 0;
	pthread_mutex_lock(&weft__fiber_pool_lock);
	while (n < max && weft__fiber_pool_head) {
		struct weft__fiber_free *node = weft__fiber_pool_head;
		weft__fiber_pool_head = node->next;
		weft__fiber_pool_n--;
		bases[n++] = weft__fiber_base_of(node);
	}
	pthread_mutex_unlock(&weft__fiber_pool_lock);
	return n;
}

static void weft__fiber_flush(struct weft__fiber_tls *t)
{
	unsigned n = t->ncached;
	t->ncached = 0;
	if (n)
		weft__fiber_pool_put(t->cached, n);
}

static void weft__fiber_tls_dtor(void *p)
{
	struct weft__fiber_tls *t = p;
	t->dtor_registered = false; /* re-arm if used by a later destructor */
	weft__fiber_flush(t);
}

static void weft__fiber_key_init(void)
{
	weft__fiber_key_ok =
		pthread_key_create(&weft__fiber_key, weft__fiber_tls_dtor) == 0;
}

static char *weft__fiber_cache_get(void)
{
	struct weft__fiber_tls *t = weft__fiber_tls();
	if (t->ncached == 0)
		t->ncached = weft__fiber_pool_get(t->cached,
		                                  WEFT__FIBER_TCACHE_MAX / 2);
	if (t->ncached == 0)
		return NULL;
	return t->cached[--t->ncached];
}

static void weft__fiber_cache_put(char *base)
{
	struct weft__fiber_tls *t = weft__fiber_tls();
	if (!t->dtor_registered) {
		pthread_once(&weft__fiber_key_once, weft__fiber_key_init);
		if (!weft__fiber_key_ok ||
		    pthread_setspecific(weft__fiber_key, t) != 0) {
			/* Cannot flush at thread exit: do not cache here. */
			weft__fiber_pool_put(&base, 1);
			return;
		}
		t->dtor_registered = true;
	}
	if (t->ncached == WEFT__FIBER_TCACHE_MAX) {
		unsigned half = WEFT__FIBER_TCACHE_MAX / 2;
		t->ncached -= half;
		weft__fiber_pool_put(t->cached + t->ncached, half);
	}
	t->cached[t->ncached++] = base;
}

/* ---- API ---------------------------------------------------------------- */

weft_err weft__fiber_create(struct weft__fiber **out, size_t stack_size,
                            void (*entry)(void *arg), void *arg)
{
	if (!out)
		return WEFT_EINVAL;
	*out = NULL;
	if (!entry || stack_size > WEFT__FIBER_MAX_STACK)
		return WEFT_EINVAL;
	if (stack_size == 0)
		stack_size = WEFT__FIBER_DEFAULT_STACK;
	if (stack_size < WEFT__FIBER_MIN_STACK)
		stack_size = WEFT__FIBER_MIN_STACK;

	size_t page = weft__fiber_page_size();
	size_t map_size = page + weft__fiber_round_page(stack_size);
	bool pooled = map_size == weft__fiber_default_map_size();
	char *base = pooled ? weft__fiber_cache_get() : NULL;
	if (!base) {
		base = weft__fiber_map(map_size);
		if (!base)
			return WEFT_ENOMEM;
	}

	char *hdr = base + map_size - WEFT__FIBER_HDR_SIZE;
#ifdef WEFT__FIBER_ASAN
	/* A recycled stack may carry poisoned redzones of frames that never
	 * returned (the previous fiber's last switch). */
	__asan_unpoison_memory_region(base + page, map_size - page);
#endif
	struct weft__fiber *f = (struct weft__fiber *)(void *)hdr;
	memset(f, 0, sizeof *f);
	f->entry = entry;
	f->arg = arg;
	f->map_base = base;
	f->map_size = map_size;
	f->stack_lo = base + page;
	f->stack_size = (size_t)(hdr - f->stack_lo);
	f->pooled = pooled;
	atomic_init(&f->state, WEFT__FIBER_NEW);

#if WEFT__FIBER_ASM
	/* A frame as weft__fiber_ctx_swap leaves it, returning into
	 * weft__fiber_start with rsp = top - 8 (== 8 mod 16, as after a call)
	 * above which sits a zero return address that ends unwinding. */
	uintptr_t *sp = (uintptr_t *)(void *)(hdr - 80); /* hdr is 64-aligned */
	memset(sp, 0, 80);
	sp[0] = 0x037F; /* x87 control word: ABI default */
	sp[1] = 0x1F80; /* MXCSR: ABI default */
	sp[8] = (uintptr_t)weft__fiber_start;
	f->sp = sp;
#else
	if (weft__fiber_uc_init(f) != 0) {
		if (pooled)
			weft__fiber_cache_put(base);
		else
			weft__fiber_unmap(base, map_size);
		return WEFT_ENOMEM;
	}
#endif
#ifdef WEFT__FIBER_TSAN
	f->tsan_self = __tsan_create_fiber(0);
#endif
	*out = f;
	return WEFT_OK;
}

void weft__fiber_switch_in(struct weft__fiber *f)
{
	if (!f)
		weft__fiber_panic("switch_in(NULL)");
	int s = atomic_load_explicit(&f->state, memory_order_acquire);
	if (s == WEFT__FIBER_RUNNING)
		weft__fiber_panic("switch_in on a running fiber (double resume, "
		                  "or published before its switch_in returned)");
	if (s == WEFT__FIBER_FINISHED)
		weft__fiber_panic("switch_in on a finished fiber");
	if (!atomic_compare_exchange_strong_explicit(&f->state, &s,
	                                             WEFT__FIBER_RUNNING,
	                                             memory_order_acquire,
	                                             memory_order_relaxed))
		weft__fiber_panic("concurrent switch_in on one fiber");

	struct weft__fiber_tls *t = weft__fiber_tls();
	f->prev_current = t->current;
	t->current = f;

#ifdef WEFT__FIBER_ASAN
	__sanitizer_start_switch_fiber(&f->asan_fake_caller, f->stack_lo,
	                               f->stack_size);
#endif
#ifdef WEFT__FIBER_TSAN
	f->tsan_caller = __tsan_get_current_fiber();
	__tsan_switch_to_fiber(f->tsan_self, 0);
#endif
#if WEFT__FIBER_ASM
	weft__fiber_ctx_swap(&f->caller_sp, f->sp, f);
#else
	ucontext_t caller;
	f->caller_ctx = &caller;
	if (swapcontext(&caller, &f->ctx) != 0)
		weft__fiber_panic("swapcontext failed");
#endif
#ifdef WEFT__FIBER_ASAN
	__sanitizer_finish_switch_fiber(f->asan_fake_caller, NULL, NULL);
#endif
	/* Same thread as before the switch, but re-fetch on principle. */
	weft__fiber_tls()->current = f->prev_current;
	/* Only now is the fiber's context fully saved: make it resumable. */
	atomic_store_explicit(&f->state, f->leave_state, memory_order_release);
}

void weft__fiber_suspend(void)
{
	struct weft__fiber *f = weft__fiber_tls()->current;
	if (!f)
		weft__fiber_panic("suspend outside a fiber");
	f->leave_state = WEFT__FIBER_SUSPENDED;
#ifdef WEFT__FIBER_ASAN
	__sanitizer_start_switch_fiber(&f->asan_fake_self, f->asan_caller_bottom,
	                               f->asan_caller_size);
#endif
#ifdef WEFT__FIBER_TSAN
	__tsan_switch_to_fiber(f->tsan_caller, 0);
#endif
#if WEFT__FIBER_ASM
	weft__fiber_ctx_swap(&f->sp, f->caller_sp, f);
#else
	if (swapcontext(&f->ctx, f->caller_ctx) != 0)
		weft__fiber_panic("swapcontext failed");
#endif
	/* Possibly on another thread now; f itself (a local) is still ours. */
#ifdef WEFT__FIBER_ASAN
	__sanitizer_finish_switch_fiber(f->asan_fake_self, &f->asan_caller_bottom,
	                                &f->asan_caller_size);
#endif
}

bool weft__fiber_finished(const struct weft__fiber *f)
{
	return atomic_load_explicit(&f->state, memory_order_acquire) ==
	       WEFT__FIBER_FINISHED;
}

WEFT__FIBER_NOIPA struct weft__fiber *weft__fiber_current(void)
{
	return weft__fiber_tls()->current;
}

void weft__fiber_destroy(struct weft__fiber *f)
{
	if (!f)
		return;
	int s = atomic_load_explicit(&f->state, memory_order_acquire);
	if (s != WEFT__FIBER_NEW && s != WEFT__FIBER_FINISHED)
		weft__fiber_panic("destroy of a running or suspended fiber");
#ifdef WEFT__FIBER_TSAN
	__tsan_destroy_fiber(f->tsan_self);
#endif
	char *base = f->map_base;
	size_t map_size = f->map_size;
	if (f->pooled)
		weft__fiber_cache_put(base);
	else
		weft__fiber_unmap(base, map_size);
}

void weft__fiber_stack_bounds(const struct weft__fiber *f, void **lo,
                              size_t *size)
{
	if (lo)
		*lo = f->stack_lo;
	if (size)
		*size = f->stack_size;
}

void weft__fiber_get_stats(struct weft__fiber_stats *out)
{
	out->stacks_mapped =
		atomic_load_explicit(&weft__fiber_nmapped, memory_order_relaxed);
	out->stacks_unmapped =
		atomic_load_explicit(&weft__fiber_nunmapped, memory_order_relaxed);
	pthread_mutex_lock(&weft__fiber_pool_lock);
	out->pool_stacks = weft__fiber_pool_n;
	pthread_mutex_unlock(&weft__fiber_pool_lock);
}

void weft__fiber_flush_thread_cache(void)
{
	weft__fiber_flush(weft__fiber_tls());
}

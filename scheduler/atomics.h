/* scheduler/atomics.h - C11 atomics in internal headers that the C++ tests
 * also include. Write `_Atomic(T)` (the specifier form) in such headers;
 * under C++ it maps to std::atomic<T>, which GCC and Clang lay out the same
 * way. */
#ifndef WEFT_ATOMICS_H
#define WEFT_ATOMICS_H

#ifdef __cplusplus
#include <atomic>
#define _Atomic(T) std::atomic<T>
#define _Alignas(x) alignas(x)
using std::atomic_compare_exchange_strong_explicit;
using std::atomic_compare_exchange_weak_explicit;
using std::atomic_exchange_explicit;
using std::atomic_fetch_add_explicit;
using std::atomic_fetch_sub_explicit;
using std::atomic_init;
using std::atomic_load_explicit;
using std::atomic_store_explicit;
using std::memory_order_acq_rel;
using std::memory_order_acquire;
using std::memory_order_relaxed;
using std::memory_order_release;
using std::memory_order_seq_cst;
#else
#include <stdatomic.h>
#endif

#endif /* WEFT_ATOMICS_H */

/* weft/testing/shared.h - memory that a test and the child processes its
 * nurseries fork both see, so that the same test code observes a child
 * actor whether it runs in this process or in another one.
 *
 * A nursery may start an actor in a child process (WEFT_SPAWN_PROCESS, or
 * WEFT_SPAWN=process in the environment for every nursery): a fork of this
 * program that gets a COPY of the memory at the spawn. A function exposed by
 * that actor which writes an observation into an object the test then reads
 * writes its own copy: the test sees nothing. Objects made with SharedNew()
 * live in one MAP_SHARED | MAP_ANONYMOUS arena mapped before any fork, so
 * every process of the tree reads and writes the same bytes.
 *
 *   T &obs = *weft::testing::SharedNew<T>(args...);   // instead of T obs;
 *
 * What may live there: plain data, fixed-size arrays, std::atomic (lock-free
 * ones work across processes), weft_uid, and the SharedSpinLock below. Not
 * anything that owns heap memory or process-private resources: the members
 * of a std::string, std::vector, std::map, std::function or std::shared_ptr
 * would point into one process's private heap. Not std::mutex or
 * std::condition_variable either: they use process-private futexes, so a
 * waiter in one process is never woken by another. Pointers (weft_ctx *,
 * weft_stream *, weft_error *) and weft_aid values are meaningful only in
 * the process that stored them.
 *
 * Allocation is a bump pointer kept in the arena itself (any process of the
 * tree may allocate); nothing is freed one by one and no destructor runs.
 * SharedReset() empties the arena: a fixture calls it between tests, once
 * every child process is gone (after the runtime is closed). The arena is
 * created on first use (SharedArenaInit() creates it explicitly); it must
 * exist before the first fork for the children to share it, which holds for
 * any object made before the actor that uses it is spawned.
 *
 * SpawnsProcesses() tells whether nurseries start actors in child processes
 * by default (weft_config_init() reads WEFT_SPAWN), for tests that can only
 * run one way. LiveDescendants() counts the processes of this one's tree
 * still alive (none may outlive a nursery); AdoptOrphans() makes an
 * orphaned descendant count too.
 *
 * Header-only, C++17; Linux (MAP_ANONYMOUS, MAP_NORESERVE). */
#ifndef WEFT_TESTING_SHARED_H
#define WEFT_TESTING_SHARED_H

#include <dirent.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "weft/nursery.h"
#include "weft/runtime.h"

namespace weft {
namespace testing {

namespace detail {

struct SharedArenaHeader {
  std::atomic<size_t> used;  // bytes handed out, from the arena's start
  size_t size;
};

constexpr size_t kSharedArenaSize = size_t(64) << 20;  // 64 MiB, lazily
constexpr size_t kSharedAlign = 64;

inline SharedArenaHeader *SharedArena() {
  static SharedArenaHeader *arena = [] {
    void *p = mmap(nullptr, kSharedArenaSize, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::perror("weft::testing shared arena: mmap");
      std::abort();
    }
    auto *h = new (p) SharedArenaHeader;
    h->size = kSharedArenaSize;
    h->used.store((sizeof(SharedArenaHeader) + kSharedAlign - 1) &
                      ~(kSharedAlign - 1),
                  std::memory_order_relaxed);
    return h;
  }();
  return arena;
}

inline size_t SharedArenaStart() {
  return (sizeof(SharedArenaHeader) + kSharedAlign - 1) & ~(kSharedAlign - 1);
}

}  // namespace detail

/* Creates the arena now (it is otherwise created on first use). */
inline void SharedArenaInit() { (void)detail::SharedArena(); }

/* Raw storage in the arena: `size` bytes, 64-byte aligned, zero-filled. */
inline void *SharedAlloc(size_t size) {
  detail::SharedArenaHeader *h = detail::SharedArena();
  size_t len = (size + detail::kSharedAlign - 1) & ~(detail::kSharedAlign - 1);
  if (len == 0) len = detail::kSharedAlign;
  size_t off = h->used.fetch_add(len, std::memory_order_relaxed);
  if (off + len > h->size) {
    std::fprintf(stderr, "weft::testing shared arena exhausted (%zu bytes)\n",
                 h->size);
    std::abort();
  }
  void *p = reinterpret_cast<char *>(h) + off;
  std::memset(p, 0, len);
  return p;
}

/* A T constructed in the arena, visible to this process and to every child
 * process forked after the arena was created. Never destroyed (T must be
 * trivially destructible: a type with a destructor would most likely own
 * something that cannot be shared). */
template <class T, class... A>
T *SharedNew(A &&...args) {
  static_assert(std::is_trivially_destructible<T>::value,
                "objects in the shared arena are never destroyed and must "
                "not own heap memory: use fixed arrays, std::atomic, plain "
                "structs");
  static_assert(alignof(T) <= detail::kSharedAlign, "over-aligned type");
  return new (SharedAlloc(sizeof(T))) T(std::forward<A>(args)...);
}

/* An array of n value-initialised Ts in the arena. */
template <class T>
T *SharedNewArray(size_t n) {
  static_assert(std::is_trivially_destructible<T>::value,
                "objects in the shared arena are never destroyed");
  static_assert(alignof(T) <= detail::kSharedAlign, "over-aligned type");
  T *p = static_cast<T *>(SharedAlloc(sizeof(T) * (n ? n : 1)));
  for (size_t i = 0; i < n; i++) new (p + i) T();
  return p;
}

/* Forgets everything allocated (no destructor runs). Call it between tests,
 * when no process still uses an object of the arena. */
inline void SharedReset() {
  detail::SharedArena()->used.store(detail::SharedArenaStart(),
                                    std::memory_order_relaxed);
}

/* Bytes in use (for tests of the arena itself). */
inline size_t SharedUsed() {
  return detail::SharedArena()->used.load(std::memory_order_relaxed) -
         detail::SharedArenaStart();
}

/* A lock that works across processes (a spin lock on a lock-free atomic,
 * yielding while it waits). BasicLockable: use it with std::lock_guard.
 * Meant for short critical sections (copying an observation). */
class SharedSpinLock {
 public:
  void lock() {
    while (locked_.exchange(true, std::memory_order_acquire))
      std::this_thread::yield();
  }
  bool try_lock() { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};
static_assert(std::atomic<bool>::is_always_lock_free, "lock-free atomics");
static_assert(std::atomic<int>::is_always_lock_free, "lock-free atomics");

/* A fixed-capacity string for shared objects (truncates what does not fit;
 * not synchronised: guard it with a SharedSpinLock where it races). */
template <size_t N>
struct SharedString {
  char buf[N] = "";
  void Set(const char *s) { std::snprintf(buf, N, "%s", s ? s : ""); }
  void Set(const std::string &s) { Set(s.c_str()); }
  std::string Get() const { return std::string(buf, ::strnlen(buf, N)); }
};

/* Whether nurseries start actors in child processes unless told otherwise
 * (weft_config_init(): WEFT_SPAWN=process). */
inline bool SpawnsProcesses() {
  weft_config cfg;
  weft_config_init(&cfg);
  return cfg.spawn_where == WEFT_SPAWN_PROCESS;
}

/* The processes descending from this one (children, theirs, ...) that are
 * still running; exited ones not yet reaped (zombies) do not count. Reads
 * /proc. A descendant whose parent died is reparented away from this tree
 * unless AdoptOrphans() was called. */
inline int LiveDescendants() {
  struct Proc {
    pid_t pid, ppid;
    char state;
  };
  std::vector<Proc> procs;
  DIR *d = opendir("/proc");
  if (d == nullptr) return -1;
  while (struct dirent *e = readdir(d)) {
    char *end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    char path[64], buf[512];
    std::snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = std::fopen(path, "r");
    if (f == nullptr) continue;  // gone meanwhile
    size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const char *rp = std::strrchr(buf, ')');
    char state = 0;
    int ppid = 0;
    if (rp == nullptr || std::sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
      continue;
    procs.push_back(Proc{pid_t(pid), pid_t(ppid), state});
  }
  closedir(d);
  std::vector<pid_t> frontier{getpid()};
  int alive = 0;
  while (!frontier.empty()) {
    pid_t parent = frontier.back();
    frontier.pop_back();
    for (const Proc &p : procs) {
      if (p.ppid != parent) continue;
      frontier.push_back(p.pid);
      if (p.state != 'Z' && p.state != 'X') alive++;
    }
  }
  return alive;
}

/* Makes this process the reaper of its orphaned descendants
 * (PR_SET_CHILD_SUBREAPER): a process of an actor tree whose parent died
 * stays in this process's tree, where LiveDescendants() finds it. */
inline void AdoptOrphans() { prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

/* Reaps the children of this process that have exited (adopted orphans a
 * nursery does not wait for). Only when no nursery of this process is
 * still running (e.g. after its runtime was closed). */
inline void ReapExitedChildren() {
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace testing
}  // namespace weft

#endif /* WEFT_TESTING_SHARED_H */

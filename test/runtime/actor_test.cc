// Tests of actors (weft/actor.h) and of the runtime that runs them
// (weft/runtime.h): spawn, send, ownership, exit, stop, close, fairness and
// deterministic mode.
//
// Conventions: everything a handler or on_exit touches lives in state that
// the fixture keeps until after the runtime is closed (Keep<T>()), so a
// failing test cannot leave a handler with a dangling pointer. Ordering is
// forced with a gate: an actor whose handler blocks the worker on a
// condition variable until the test opens it.
#include <gtest/gtest.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "weft/testing/gtest.h"
#include "weft/weft.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define WEFT_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define WEFT_TEST_SANITIZED 1
#endif
#endif

namespace {

using weft::testing::Latch;
using namespace std::chrono_literals;

constexpr auto kWait = 60s;  // bound on every wait; a lost signal fails

// ---- shared helpers ----

// Every actor state derives from this; on_exit records into it. The state
// pointer handed to the runtime is always the Base*.
struct Base {
  virtual ~Base() = default;
  Latch exited{1};
  std::atomic<int> exit_calls{0};
  std::atomic<int> exit_reason{-1};
  std::atomic<uint64_t> exit_self{0};
};

template <class T>
T *St(void *s) {
  return static_cast<T *>(static_cast<Base *>(s));
}

void RecordExit(weft_aid self, void *s, weft_exit_reason why) {
  Base *b = static_cast<Base *>(s);
  b->exit_self.store(self.id);
  b->exit_reason.store(static_cast<int>(why));
  b->exit_calls.fetch_add(1);
  b->exited.CountDown();
}

weft_aid MustSpawn(weft_runtime *rt, Base *state, weft_handler_fn h,
                   const char *name = "actor", unsigned batch = 0) {
  weft_spawn_opts o{};
  o.name = name;
  o.handler = h;
  o.state = state;
  o.on_exit = RecordExit;
  o.batch = batch;
  weft_aid aid{0};
  weft_err rv = weft_spawn(rt, &o, &aid);
  EXPECT_EQ(WEFT_OK, rv) << weft_errname(rv);
  return aid;
}

weft_err Send(weft_runtime *rt, weft_aid to, uint32_t type = 1,
              uint64_t word = 0, uint64_t from = 0) {
  weft_msg *m = weft_msg_new(type, 0);
  if (m == nullptr) return WEFT_ENOMEM;
  m->word = word;
  m->from.id = from;
  weft_err rv = weft_send(rt, to, m);
  if (rv != WEFT_OK) weft_msg_free(m);
  return rv;
}

// A handler that frees what it gets and exits.
void ExitOnFirst(weft_turn *t, weft_msg *m, void *) {
  weft_msg_free(m);
  weft_exit(t);
}

// Counts messages; never exits by itself.
struct CountState : Base {
  std::atomic<uint64_t> handled{0};
  std::vector<uint64_t> words;  // the handler's only
};

void CountHandler(weft_turn *, weft_msg *m, void *s) {
  auto *st = St<CountState>(s);
  st->words.push_back(m->word);
  st->handled.fetch_add(1);
  weft_msg_free(m);
}

// The gate: its handler blocks its worker until Open().
struct GateState : Base {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  bool timed_out = false;
  bool exit_after = true;
  Latch entered{1};
};

void GateHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *g = St<GateState>(s);
  weft_msg_free(m);
  g->entered.CountDown();
  {
    std::unique_lock<std::mutex> l(g->mu);
    if (!g->cv.wait_for(l, kWait, [g] { return g->open; }))
      g->timed_out = true;
  }
  if (g->exit_after) weft_exit(t);
}

void OpenGate(GateState *g) {
  std::lock_guard<std::mutex> l(g->mu);
  g->open = true;
  g->cv.notify_all();
}

class ActorTest : public weft::testing::RuntimeTest {
 protected:
  void TearDown() override {
    // A test that failed half way must not leave the worker blocked.
    for (GateState *g : gates_) OpenGate(g);
    RuntimeTest::TearDown();
  }

  template <class T>
  T *Keep() {
    auto p = std::make_shared<T>();
    kept_.push_back(p);
    return p.get();
  }

  // Spawns a gate and blocks a worker in it; nullptr if it never ran.
  GateState *ShutGate(bool exit_after = true) {
    GateState *g = Keep<GateState>();
    g->exit_after = exit_after;
    gates_.push_back(g);
    weft_aid aid = MustSpawn(rt_, g, GateHandler, "gate");
    if (Send(rt_, aid) != WEFT_OK || !g->entered.WaitFor(kWait)) {
      ADD_FAILURE() << "the gate never ran";
      return nullptr;
    }
    return g;
  }

  // Opens the gate and waits for it to exit.
  bool OpenAndDrain(GateState *g) {
    OpenGate(g);
    bool ok = g->exited.WaitFor(kWait);
    EXPECT_FALSE(g->timed_out) << "the gate timed out: the test lost order";
    return ok;
  }

  weft_runtime_stats Stats() {
    weft_runtime_stats s;
    weft_runtime_stats_get(rt_, &s);
    return s;
  }

  std::vector<std::shared_ptr<Base>> kept_;
  std::vector<GateState *> gates_;
};

class OneWorkerTest : public ActorTest {
 protected:
  void Configure(weft_config *cfg) override {
    cfg->workers = 1;
    cfg->batch = 64;
  }
};

// ---- spawn, send, ownership ----

struct SeeState : Base {
  uint32_t type = 0, size = 0;
  uint64_t word = 0, from = 0;
  std::string data;
  weft_msg *ptr = nullptr;
};

void SeeHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<SeeState>(s);
  st->type = m->type;
  st->size = m->size;
  st->word = m->word;
  st->from = m->from.id;
  st->data.assign(static_cast<char *>(weft_msg_data(m)), m->size);
  st->ptr = m;
  weft_msg_free(m);
  weft_exit(t);
}

TEST_F(ActorTest, SpawnedActorHandlerSeesTheMessageAsSent) {
  auto *st = Keep<SeeState>();
  weft_aid aid = MustSpawn(rt_, st, SeeHandler, "see");
  ASSERT_NE(0u, aid.id);
  weft_msg *m = weft_msg_new(7, 6);
  ASSERT_NE(nullptr, m);
  std::memcpy(weft_msg_data(m), "hello", 6);
  m->word = 0x1122334455667788ull;
  m->from.id = 4242;
  ASSERT_EQ(WEFT_OK, weft_send(rt_, aid, m));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(7u, st->type);
  EXPECT_EQ(6u, st->size);
  EXPECT_EQ(0x1122334455667788ull, st->word);
  EXPECT_EQ(4242u, st->from);
  EXPECT_STREQ("hello", st->data.c_str());
  EXPECT_EQ(m, st->ptr) << "the message is delivered, not copied";
  EXPECT_EQ(WEFT_EXIT_NORMAL, st->exit_reason.load());
  EXPECT_EQ(1, st->exit_calls.load());
  EXPECT_EQ(aid.id, st->exit_self.load()) << "on_exit gets the actor's aid";
}

struct ForwardState : Base {
  weft_aid to{0};
  weft_err rv = WEFT_EINVAL;
};

void ForwardHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<ForwardState>(s);
  m->word += 1;  // the handler owns it: it may change it and pass it on
  st->rv = weft_send(weft_turn_runtime(t), st->to, m);
  if (st->rv != WEFT_OK) weft_msg_free(m);
  weft_exit(t);
}

TEST_F(ActorTest, HandlerOwnsTheMessageAndCanForwardIt) {
  auto *last = Keep<SeeState>();
  weft_aid b = MustSpawn(rt_, last, SeeHandler, "b");
  auto *fwd = Keep<ForwardState>();
  fwd->to = b;
  weft_aid a = MustSpawn(rt_, fwd, ForwardHandler, "a");
  weft_msg *m = weft_msg_new(3, 4);
  ASSERT_NE(nullptr, m);
  std::memcpy(weft_msg_data(m), "abc", 4);
  m->word = 10;
  ASSERT_EQ(WEFT_OK, weft_send(rt_, a, m));
  ASSERT_TRUE(fwd->exited.WaitFor(kWait));
  ASSERT_TRUE(last->exited.WaitFor(kWait));
  EXPECT_EQ(WEFT_OK, fwd->rv);
  EXPECT_EQ(m, last->ptr) << "the same message travelled";
  EXPECT_EQ(11u, last->word);
  EXPECT_EQ(3u, last->type);
  EXPECT_STREQ("abc", last->data.c_str());
}

TEST_F(ActorTest, SendToExitedActorReturnsClosedAndCallerKeepsMessage) {
  auto *st = Keep<Base>();
  weft_aid aid = MustSpawn(rt_, st, ExitOnFirst);
  ASSERT_EQ(WEFT_OK, Send(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));

  const int64_t before = weft_msg_outstanding();
  weft_msg *m = weft_msg_new(1, 64);
  ASSERT_NE(nullptr, m);
  EXPECT_EQ(WEFT_ECLOSED, weft_send(rt_, aid, m));
  // Still ours: usable, counted, and ours to free.
  std::memset(weft_msg_data(m), 0x5A, 64);
  EXPECT_EQ(1u, m->type);
  EXPECT_EQ(before + 1, weft_msg_outstanding());
  weft_msg_free(m);
  EXPECT_EQ(before, weft_msg_outstanding());

  EXPECT_EQ(WEFT_ECLOSED, weft_stop(rt_, aid));
  weft_uid uid;
  EXPECT_EQ(WEFT_ECLOSED, weft_actor_uid(rt_, aid, &uid));
  EXPECT_EQ(before, weft_msg_outstanding()) << "a failed stop leaks nothing";
}

TEST_F(ActorTest, SendToZeroOrMadeUpAidReturnsClosed) {
  // A live actor, so that slot 0 and its chunk exist.
  auto *st = Keep<Base>();
  weft_aid live = MustSpawn(rt_, st, ExitOnFirst);
  const uint64_t live_slot = live.id & 0xFFFFFFFFu;
  const uint64_t live_gen = live.id >> 32;
  const weft_aid bogus[] = {
      {0},
      {live_slot},                                  // generation 0
      {((live_gen + 77) << 32) | live_slot},        // wrong generation
      {(live_gen << 32) | (live_slot + 1)},         // a slot never used
      {(uint64_t{1} << 32) | 123456789u},           // a chunk never made
      {~uint64_t{0}},
  };
  for (weft_aid aid : bogus) {
    SCOPED_TRACE(aid.id);
    weft_msg *m = weft_msg_new(1, 0);
    ASSERT_NE(nullptr, m);
    EXPECT_EQ(WEFT_ECLOSED, weft_send(rt_, aid, m));
    weft_msg_free(m);
    EXPECT_EQ(WEFT_ECLOSED, weft_stop(rt_, aid));
    weft_uid uid;
    EXPECT_EQ(WEFT_ECLOSED, weft_actor_uid(rt_, aid, &uid));
  }
  ASSERT_EQ(WEFT_OK, Send(rt_, live));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
}

TEST_F(ActorTest, StaleAidWhoseSlotWasReusedDoesNotReachTheNewActor) {
  auto *old_st = Keep<Base>();
  weft_aid old_aid = MustSpawn(rt_, old_st, ExitOnFirst, "old");
  ASSERT_EQ(WEFT_OK, Send(rt_, old_aid));
  ASSERT_TRUE(old_st->exited.WaitFor(kWait));

  // The slot is recycled once the worker drops its last reference, just
  // after on_exit: spawn until a new actor lands in it.
  std::vector<std::pair<weft_aid, CountState *>> spawned;
  CountState *reuser = nullptr;
  weft_aid new_aid{0};
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (reuser == nullptr && std::chrono::steady_clock::now() < deadline) {
    auto *st = Keep<CountState>();
    weft_aid aid = MustSpawn(rt_, st, CountHandler, "new");
    if ((aid.id & 0xFFFFFFFFu) == (old_aid.id & 0xFFFFFFFFu)) {
      reuser = st;
      new_aid = aid;
    } else {
      spawned.emplace_back(aid, st);
      std::this_thread::yield();
    }
  }
  ASSERT_NE(nullptr, reuser) << "the slot was never reused";
  EXPECT_NE(old_aid.id, new_aid.id) << "a reused slot gets a new generation";

  weft_msg *m = weft_msg_new(1, 0);
  m->word = 666;
  EXPECT_EQ(WEFT_ECLOSED, weft_send(rt_, old_aid, m));
  weft_msg_free(m);
  EXPECT_EQ(WEFT_ECLOSED, weft_stop(rt_, old_aid));
  weft_uid uid;
  EXPECT_EQ(WEFT_ECLOSED, weft_actor_uid(rt_, old_aid, &uid));
  ASSERT_EQ(WEFT_OK, weft_actor_uid(rt_, new_aid, &uid));
  EXPECT_STREQ("new", uid.name);

  // The new actor gets what is sent to it, and only that.
  ASSERT_EQ(WEFT_OK, Send(rt_, new_aid, 1, 1));
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, new_aid));
  ASSERT_TRUE(reuser->exited.WaitFor(kWait));
  EXPECT_EQ(std::vector<uint64_t>{1}, reuser->words);
  EXPECT_EQ(WEFT_EXIT_STOPPED, reuser->exit_reason.load());
  for (auto &p : spawned) ASSERT_EQ(WEFT_OK, weft_stop(rt_, p.first));
  for (auto &p : spawned) ASSERT_TRUE(p.second->exited.WaitFor(kWait));
}

// ---- identity ----

struct SelfState : Base {
  weft_aid self{0};
  weft_uid uid{};
  weft_runtime *rt = nullptr;
};

void SelfHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<SelfState>(s);
  st->self = weft_self(t);
  st->uid = *weft_turn_uid(t);
  st->rt = weft_turn_runtime(t);
  weft_msg_free(m);
  weft_exit(t);
}

TEST_F(ActorTest, SelfAndUidNameTheActorAndUuidsDifferPerInstance) {
  auto *a = Keep<SelfState>();
  auto *b = Keep<SelfState>();
  weft_aid aa = MustSpawn(rt_, a, SelfHandler, "twin");
  weft_aid bb = MustSpawn(rt_, b, SelfHandler, "twin");
  ASSERT_NE(aa.id, bb.id);

  weft_uid ua, ub;
  ASSERT_EQ(WEFT_OK, weft_actor_uid(rt_, aa, &ua));
  ASSERT_EQ(WEFT_OK, weft_actor_uid(rt_, bb, &ub));
  EXPECT_STREQ("twin", ua.name);
  EXPECT_STREQ("twin", ub.name);
  EXPECT_NE(0, std::memcmp(ua.uuid, ub.uuid, sizeof(ua.uuid)));

  ASSERT_EQ(WEFT_OK, Send(rt_, aa));
  ASSERT_EQ(WEFT_OK, Send(rt_, bb));
  ASSERT_TRUE(a->exited.WaitFor(kWait));
  ASSERT_TRUE(b->exited.WaitFor(kWait));
  EXPECT_EQ(aa.id, a->self.id);
  EXPECT_EQ(bb.id, b->self.id);
  EXPECT_EQ(rt_, a->rt);
  EXPECT_EQ(0, std::memcmp(&ua, &a->uid, sizeof(ua)))
      << "the handler's uid is the one weft_actor_uid gave";
  EXPECT_EQ(0, std::memcmp(&ub, &b->uid, sizeof(ub)));

  char buf[64];
  char want[64];
  std::snprintf(want, sizeof(want), "twin:%02x%02x%02x%02x", ua.uuid[0],
                ua.uuid[1], ua.uuid[2], ua.uuid[3]);
  EXPECT_STREQ(want, weft_uid_format(&ua, buf, sizeof(buf)));
}

TEST_F(ActorTest, SpawnWithoutNameIsCalledActor) {
  auto *st = Keep<Base>();
  weft_spawn_opts o{};
  o.handler = ExitOnFirst;
  o.state = st;
  o.on_exit = RecordExit;
  weft_aid aid;
  ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &o, &aid));
  weft_uid uid;
  ASSERT_EQ(WEFT_OK, weft_actor_uid(rt_, aid, &uid));
  EXPECT_STREQ("actor", uid.name);
  ASSERT_EQ(WEFT_OK, Send(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
}

// ---- invalid arguments ----

weft_err NoopFunction(weft_ctx *, const weft_payload *, void *) {
  return WEFT_OK;
}

TEST_F(ActorTest, SpawnWithInvalidOptionsReturnsEinvalAndSpawnsNothing) {
  const uint64_t spawned = Stats().actors_spawned;
  weft_aid aid{0};
  EXPECT_EQ(WEFT_EINVAL, weft_spawn(rt_, nullptr, &aid));

  weft_spawn_opts o{};
  o.handler = ExitOnFirst;
  const std::string too_long(WEFT_NAME_MAX, 'n');  // no room for the NUL
  o.name = too_long.c_str();
  EXPECT_EQ(WEFT_EINVAL, weft_spawn(rt_, &o, &aid));
  const std::string much_too_long(1000, 'n');
  o.name = much_too_long.c_str();
  EXPECT_EQ(WEFT_EINVAL, weft_spawn(rt_, &o, &aid));

  // Exposed functions need a name and a body, and an array to be in.
  o.name = "fns";
  weft_function nameless[] = {{nullptr, NoopFunction, nullptr}};
  o.functions = nameless;
  o.nfunctions = 1;
  EXPECT_EQ(WEFT_EINVAL, weft_spawn(rt_, &o, &aid));
  weft_function bodiless[] = {{"test:ok", NoopFunction, nullptr},
                              {"test:nobody", nullptr, nullptr}};
  o.functions = bodiless;
  o.nfunctions = 2;
  EXPECT_EQ(WEFT_EINVAL, weft_spawn(rt_, &o, &aid));
  o.functions = nullptr;
  o.nfunctions = 1;
  EXPECT_EQ(WEFT_EINVAL, weft_spawn(rt_, &o, &aid));
  EXPECT_EQ(spawned, Stats().actors_spawned);
  EXPECT_EQ(0u, Stats().actors_live);

  // The longest name that fits is accepted and kept whole.
  o.functions = nullptr;
  o.nfunctions = 0;
  auto *st = Keep<Base>();
  const std::string longest(WEFT_NAME_MAX - 1, 'k');
  o.name = longest.c_str();
  o.state = st;
  o.on_exit = RecordExit;
  ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &o, &aid));
  weft_uid uid;
  ASSERT_EQ(WEFT_OK, weft_actor_uid(rt_, aid, &uid));
  EXPECT_EQ(longest, std::string(uid.name));
  ASSERT_EQ(WEFT_OK, Send(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
}

TEST_F(ActorTest, SpawnWithoutHandlerFreesCallerMessagesUnread) {
  // weft_spawn_opts.handler may be NULL (an actor that only hosts tasks
  // and functions): messages of the caller's types are freed unread.
  auto *st = Keep<Base>();
  weft_spawn_opts o{};
  o.name = "nohandler";
  o.state = st;
  o.on_exit = RecordExit;
  weft_aid aid{0};
  ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &o, &aid));
  for (int i = 0; i < 10; i++) ASSERT_EQ(WEFT_OK, Send(rt_, aid, 1, i));
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(WEFT_EXIT_STOPPED, st->exit_reason.load());
  EXPECT_EQ(msgs_before_, weft_msg_outstanding());
}

TEST_F(ActorTest, SendOfReservedTypeReturnsEinvalAndCallerKeepsMessage) {
  auto *st = Keep<CountState>();
  weft_aid aid = MustSpawn(rt_, st, CountHandler);
  const int64_t before = weft_msg_outstanding();
  for (uint32_t type : {WEFT_MSG_TYPE_RESERVED, WEFT_MSG_TYPE_RESERVED + 1,
                        0xFFFFFFFFu}) {
    SCOPED_TRACE(type);
    weft_msg *m = weft_msg_new(type, 8);
    ASSERT_NE(nullptr, m);
    EXPECT_EQ(WEFT_EINVAL, weft_send(rt_, aid, m));
    std::memset(weft_msg_data(m), 0, 8);  // still ours
    weft_msg_free(m);
  }
  EXPECT_EQ(WEFT_EINVAL, weft_send(rt_, aid, nullptr));
  EXPECT_EQ(before, weft_msg_outstanding());
  // The largest caller type is fine.
  ASSERT_EQ(WEFT_OK, Send(rt_, aid, WEFT_MSG_TYPE_RESERVED - 1, 5));
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(std::vector<uint64_t>{5}, st->words)
      << "the reserved-type messages never reached the handler";
}

// ---- one turn at a time, ordering ----

constexpr int kMaxSenders = 16;

struct SerialState : Base {
  std::atomic<bool> in_handler{false};
  std::atomic<uint64_t> overlaps{0};
  uint64_t count = 0;  // plain: only the handler touches it
  uint64_t next_seq[kMaxSenders] = {};
  uint64_t fifo_errors = 0;
  uint64_t expected = 0;
  std::set<std::thread::id> threads;
  Latch done{1};
};

void SerialHandler(weft_turn *, weft_msg *m, void *s) {
  auto *st = St<SerialState>(s);
  if (st->in_handler.exchange(true, std::memory_order_acq_rel))
    st->overlaps.fetch_add(1);
  st->count++;
  uint64_t from = m->from.id;
  if (from >= kMaxSenders || m->word != st->next_seq[from])
    st->fifo_errors++;
  else
    st->next_seq[from]++;
  st->threads.insert(std::this_thread::get_id());
  weft_msg_free(m);
  bool last = st->count == st->expected;
  st->in_handler.store(false, std::memory_order_release);
  if (last) st->done.CountDown();
}

class TwoWorkerTest : public ActorTest {
 protected:
  void Configure(weft_config *cfg) override { cfg->workers = 2; }
};

TEST_F(TwoWorkerTest, HandlerNeverRunsOnTwoThreadsAtOnceAndSeesItsOwnWrites) {
#ifdef WEFT_TEST_SANITIZED
  constexpr uint64_t kPerSender = 5000;
#else
  constexpr uint64_t kPerSender = 25000;
#endif
  constexpr int kSenders = 8;
  auto *st = Keep<SerialState>();
  st->expected = kSenders * kPerSender;
  weft_aid aid = MustSpawn(rt_, st, SerialHandler, "serial");

  std::atomic<uint64_t> send_errors{0};
  std::vector<std::thread> senders;
  for (int s = 0; s < kSenders; s++) {
    senders.emplace_back([&, s] {
      for (uint64_t i = 0; i < kPerSender; i++)
        if (Send(rt_, aid, 1, i, static_cast<uint64_t>(s)) != WEFT_OK)
          send_errors.fetch_add(1);
    });
  }
  for (auto &t : senders) t.join();
  ASSERT_EQ(0u, send_errors.load());
  ASSERT_TRUE(st->done.WaitFor(kWait));
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(0u, st->overlaps.load());
  EXPECT_EQ(st->expected, st->count);
  EXPECT_EQ(0u, st->fifo_errors);
  for (int s = 0; s < kSenders; s++) EXPECT_EQ(kPerSender, st->next_seq[s]);
  EXPECT_EQ(WEFT_EXIT_STOPPED, st->exit_reason.load());
  // Not asserted (scheduling decides), but worth seeing when it fails.
  RecordProperty("handler_threads", static_cast<int>(st->threads.size()));
}

struct RelayState : Base {
  weft_aid to{0};
  uint64_t id = 0;
  uint64_t n = 0;
  uint64_t errors = 0;
};

// On its one message, sends n sequenced messages to `to` from the handler.
void RelayHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<RelayState>(s);
  weft_msg_free(m);
  for (uint64_t i = 0; i < st->n; i++)
    if (Send(weft_turn_runtime(t), st->to, 1, i, st->id) != WEFT_OK)
      st->errors++;
  weft_exit(t);
}

TEST_F(TwoWorkerTest, PerSenderFifoHoldsForHandlersAndOutsideThreads) {
  constexpr int kRelays = 3, kOutside = 3;
  constexpr uint64_t kEach = 10000;
  auto *sink = Keep<SerialState>();
  sink->expected = (kRelays + kOutside) * kEach;
  weft_aid sink_aid = MustSpawn(rt_, sink, SerialHandler, "sink");

  std::vector<RelayState *> relays;
  std::vector<weft_aid> relay_aids;
  for (int r = 0; r < kRelays; r++) {
    auto *st = Keep<RelayState>();
    st->to = sink_aid;
    st->id = static_cast<uint64_t>(r);
    st->n = kEach;
    relays.push_back(st);
    relay_aids.push_back(MustSpawn(rt_, st, RelayHandler, "relay"));
  }
  for (weft_aid a : relay_aids) ASSERT_EQ(WEFT_OK, Send(rt_, a));
  std::vector<std::thread> outside;
  for (int o = 0; o < kOutside; o++) {
    outside.emplace_back([&, o] {
      for (uint64_t i = 0; i < kEach; i++)
        Send(rt_, sink_aid, 1, i, static_cast<uint64_t>(kRelays + o));
    });
  }
  for (auto &t : outside) t.join();
  ASSERT_TRUE(sink->done.WaitFor(kWait)) << "sink got " << sink->count;
  for (auto *r : relays) {
    ASSERT_TRUE(r->exited.WaitFor(kWait));
    EXPECT_EQ(0u, r->errors);
  }
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, sink_aid));
  ASSERT_TRUE(sink->exited.WaitFor(kWait));
  EXPECT_EQ(0u, sink->fifo_errors);
  EXPECT_EQ(0u, sink->overlaps.load());
  for (int s = 0; s < kRelays + kOutside; s++)
    EXPECT_EQ(kEach, sink->next_seq[s]) << "sender " << s;
}

// ---- stop and exit ----

TEST_F(OneWorkerTest, StopHandlesEarlierMessagesThenExitsStoppedAndDropsLater) {
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  auto *st = Keep<CountState>();
  weft_aid aid = MustSpawn(rt_, st, CountHandler, "stoppee");
  const uint64_t dropped_before = Stats().messages_dropped;
  for (uint64_t i = 0; i < 100; i++) ASSERT_EQ(WEFT_OK, Send(rt_, aid, 1, i));
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, aid));
  // Accepted (the actor has not exited yet) but behind the stop.
  for (uint64_t i = 100; i < 110; i++)
    ASSERT_EQ(WEFT_OK, Send(rt_, aid, 1, i));
  ASSERT_TRUE(OpenAndDrain(g));
  ASSERT_TRUE(st->exited.WaitFor(kWait));

  std::vector<uint64_t> want(100);
  for (uint64_t i = 0; i < 100; i++) want[i] = i;
  EXPECT_EQ(want, st->words) << "every message before the stop, in order";
  EXPECT_EQ(WEFT_EXIT_STOPPED, st->exit_reason.load());
  EXPECT_EQ(1, st->exit_calls.load());
  EXPECT_EQ(10u, Stats().messages_dropped - dropped_before);
  EXPECT_EQ(msgs_before_, weft_msg_outstanding()) << "dropped ones are freed";

  weft_msg *m = weft_msg_new(1, 0);
  EXPECT_EQ(WEFT_ECLOSED, weft_send(rt_, aid, m));
  weft_msg_free(m);
  EXPECT_EQ(WEFT_ECLOSED, weft_stop(rt_, aid));
}

struct ExitAtState : Base {
  uint64_t handled = 0;
  uint64_t exit_at = 1;
};

void ExitAtHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<ExitAtState>(s);
  weft_msg_free(m);
  if (++st->handled == st->exit_at) weft_exit(t);
}

TEST_F(OneWorkerTest, ExitDropsQueuedMessagesCountsThemAndReportsNormal) {
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  auto *st = Keep<ExitAtState>();
  st->exit_at = 3;
  weft_aid aid = MustSpawn(rt_, st, ExitAtHandler, "quitter");
  const uint64_t dropped_before = Stats().messages_dropped;
  for (uint64_t i = 0; i < 50; i++) {
    weft_msg *m = weft_msg_new(1, static_cast<uint32_t>(i * 100));
    ASSERT_NE(nullptr, m);
    ASSERT_EQ(WEFT_OK, weft_send(rt_, aid, m));
  }
  ASSERT_TRUE(OpenAndDrain(g));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(3u, st->handled);
  EXPECT_EQ(WEFT_EXIT_NORMAL, st->exit_reason.load());
  EXPECT_EQ(1, st->exit_calls.load());
  EXPECT_EQ(aid.id, st->exit_self.load());
  EXPECT_EQ(47u, Stats().messages_dropped - dropped_before);
  EXPECT_EQ(msgs_before_, weft_msg_outstanding()) << "dropped ones are freed";
  EXPECT_EQ(WEFT_ECLOSED, Send(rt_, aid));
}

// ---- fairness ----

struct FloodState : Base {
  std::atomic<uint64_t> handled{0};
  uint64_t total = 0;
};

void FloodHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<FloodState>(s);
  weft_msg_free(m);
  if (st->handled.fetch_add(1, std::memory_order_relaxed) + 1 == st->total)
    weft_exit(t);
}

struct WitnessState : Base {
  FloodState *flood = nullptr;
  uint64_t flood_handled_when_run = 0;
};

void WitnessHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<WitnessState>(s);
  st->flood_handled_when_run =
      st->flood->handled.load(std::memory_order_relaxed);
  weft_msg_free(m);
  weft_exit(t);
}

void RunFloodAgainstWitness(weft_runtime *rt, unsigned batch,
                            FloodState *flood, WitnessState *witness,
                            GateState *g) {
  constexpr uint64_t kFlood = 100000;
  flood->total = kFlood;
  witness->flood = flood;
  weft_aid f = MustSpawn(rt, flood, FloodHandler, "flood", batch);
  weft_aid w = MustSpawn(rt, witness, WitnessHandler, "witness");
  // Both queued while the only worker is held by the gate.
  for (uint64_t i = 0; i < kFlood; i++) ASSERT_EQ(WEFT_OK, Send(rt, f));
  ASSERT_EQ(WEFT_OK, Send(rt, w));
  OpenGate(g);
  ASSERT_TRUE(g->exited.WaitFor(kWait));
  ASSERT_TRUE(witness->exited.WaitFor(kWait));
  ASSERT_TRUE(flood->exited.WaitFor(kWait));
  EXPECT_FALSE(g->timed_out);
  EXPECT_EQ(kFlood, flood->handled.load());
}

TEST_F(OneWorkerTest, FloodedActorDoesNotStarveAnotherRunnableActor) {
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  auto *flood = Keep<FloodState>();
  auto *witness = Keep<WitnessState>();
  RunFloodAgainstWitness(rt_, 0, flood, witness, g);
  // With batch 64 the witness runs after a few flood turns at most (the
  // worker also looks at the global queue every few dozen picks), not
  // after the 100k.
  EXPECT_LT(witness->flood_handled_when_run, 10000u);
}

TEST_F(OneWorkerTest, SpawnBatchOptionBoundsTheTurn) {
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  auto *flood = Keep<FloodState>();
  auto *witness = Keep<WitnessState>();
  RunFloodAgainstWitness(rt_, 10, flood, witness, g);
  // The witness ran between two flood turns of 10 messages each.
  EXPECT_LT(witness->flood_handled_when_run, 1000u);
  EXPECT_EQ(0u, witness->flood_handled_when_run % 10)
      << witness->flood_handled_when_run;
}

struct HopCounter : Base {
  std::atomic<uint64_t> hops{0};
};

// Two actors that bounce one message between them `rounds` times; every
// hop is made runnable by the running turn (the "run next" fast path).
struct PingState : Base {
  weft_aid peer{0};
  std::atomic<uint64_t> *hops = nullptr;
  uint64_t rounds = 0;
};

void PingHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<PingState>(s);
  uint64_t hop = st->hops->fetch_add(1, std::memory_order_relaxed) + 1;
  if (hop >= st->rounds) {
    // Tell the peer to stop too, then go.
    m->word = 1;
    if (weft_send(weft_turn_runtime(t), st->peer, m) != WEFT_OK)
      weft_msg_free(m);
    weft_exit(t);
    return;
  }
  if (m->word == 1) {  // the peer is done
    weft_msg_free(m);
    weft_exit(t);
    return;
  }
  if (weft_send(weft_turn_runtime(t), st->peer, m) != WEFT_OK)
    weft_msg_free(m);
}

struct HopWitnessState : Base {
  std::atomic<uint64_t> *hops = nullptr;
  uint64_t hops_when_run = 0;
};

void HopWitnessHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<HopWitnessState>(s);
  st->hops_when_run = st->hops->load(std::memory_order_relaxed);
  weft_msg_free(m);
  weft_exit(t);
}

TEST_F(OneWorkerTest, PingPongPairDoesNotStarveAThirdActor) {
  constexpr uint64_t kRounds = 100000;
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  std::atomic<uint64_t> *hops = &Keep<HopCounter>()->hops;
  auto *a = Keep<PingState>();
  auto *b = Keep<PingState>();
  auto *w = Keep<HopWitnessState>();
  a->hops = b->hops = w->hops = hops;
  a->rounds = b->rounds = kRounds;
  weft_aid aa = MustSpawn(rt_, a, PingHandler, "ping");
  weft_aid bb = MustSpawn(rt_, b, PingHandler, "pong");
  weft_aid ww = MustSpawn(rt_, w, HopWitnessHandler, "witness");
  a->peer = bb;
  b->peer = aa;
  ASSERT_EQ(WEFT_OK, Send(rt_, aa));
  ASSERT_EQ(WEFT_OK, Send(rt_, ww));
  ASSERT_TRUE(OpenAndDrain(g));
  ASSERT_TRUE(w->exited.WaitFor(kWait));
  ASSERT_TRUE(a->exited.WaitFor(kWait));
  ASSERT_TRUE(b->exited.WaitFor(kWait));
  EXPECT_LT(w->hops_when_run, 10000u)
      << "the witness waited for the ping-pong pair";
  EXPECT_GE(hops->load(), kRounds);
}

TEST_F(OneWorkerTest, WaitIdleTimesOutWhileAHandlerIsBusy) {
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  EXPECT_EQ(WEFT_ETIMEDOUT, weft_runtime_wait_idle(rt_, 20 * 1000 * 1000));
  ASSERT_TRUE(OpenAndDrain(g));
  EXPECT_EQ(WEFT_OK, weft_runtime_wait_idle(rt_, 30000000000ull));
}

TEST_F(ActorTest, StopOfAnIdleActorExitsItStopped) {
  auto *st = Keep<CountState>();
  weft_aid aid = MustSpawn(rt_, st, CountHandler);
  ASSERT_EQ(WEFT_OK, weft_stop(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(WEFT_EXIT_STOPPED, st->exit_reason.load());
  EXPECT_TRUE(st->words.empty());
  EXPECT_EQ(WEFT_ECLOSED, weft_stop(rt_, aid));
}

struct ExitProbeState : Base {
  weft_runtime *rt = nullptr;
  weft_err send_rv = WEFT_OK;
  weft_err uid_rv = WEFT_OK;
  int64_t outstanding_at_exit = -1;
};

void ExitProbe(weft_aid self, void *s, weft_exit_reason why) {
  auto *st = St<ExitProbeState>(s);
  st->outstanding_at_exit = weft_msg_outstanding();
  weft_msg *m = weft_msg_new(1, 0);
  st->send_rv = weft_send(st->rt, self, m);
  if (st->send_rv != WEFT_OK) weft_msg_free(m);
  weft_uid uid;
  st->uid_rv = weft_actor_uid(st->rt, self, &uid);
  RecordExit(self, s, why);
}

TEST_F(OneWorkerTest, OnExitRunsAfterQueuedMessagesAreFreedAndCannotBeSentTo) {
  GateState *g = ShutGate();
  ASSERT_NE(nullptr, g);
  auto *st = Keep<ExitProbeState>();
  st->rt = rt_;
  weft_spawn_opts o{};
  o.name = "probe";
  o.handler = ExitOnFirst;
  o.state = static_cast<Base *>(st);
  o.on_exit = ExitProbe;
  weft_aid aid;
  ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &o, &aid));
  for (int i = 0; i < 20; i++) ASSERT_EQ(WEFT_OK, Send(rt_, aid));
  ASSERT_TRUE(OpenAndDrain(g));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(1, st->exit_calls.load());
  EXPECT_EQ(WEFT_ECLOSED, st->send_rv);
  EXPECT_EQ(WEFT_ECLOSED, st->uid_rv);
  EXPECT_EQ(msgs_before_, st->outstanding_at_exit)
      << "queued messages were still allocated when on_exit ran";
}

// ---- closing the runtime ----

struct ShutdownState : Base {
  std::atomic<uint64_t> handled{0};
};

void ShutdownHandler(weft_turn *, weft_msg *m, void *s) {
  St<ShutdownState>(s)->handled.fetch_add(1);
  weft_msg_free(m);
}

TEST_F(OneWorkerTest, CloseStopsLiveActorsDropsQueuedMessagesAndReportsExactly) {
  constexpr int kBusy = 10, kIdle = 5;
  constexpr uint64_t kQueued = 100;
  GateState *g = ShutGate(/*exit_after=*/false);
  ASSERT_NE(nullptr, g);
  std::vector<ShutdownState *> states;
  for (int i = 0; i < kBusy + kIdle; i++) {
    auto *st = Keep<ShutdownState>();
    states.push_back(st);
    weft_aid aid = MustSpawn(rt_, st, ShutdownHandler, "doomed");
    if (i < kBusy) {
      for (uint64_t k = 0; k < kQueued; k++)
        ASSERT_EQ(WEFT_OK, Send(rt_, aid, 1, k));
    }
  }
  const int64_t live_actors = kBusy + kIdle + 1;  // and the gate

  // Close runs on this thread; the gate must stay shut until close has
  // marked every actor, or the worker would handle the queued messages.
  // Close wakes each live actor it marks with one runtime message allocated
  // right after the mark, so the process's outstanding message count tells
  // when the sweep is done (white-box: see weft__actor_stop_all).
  const int64_t queued = weft_msg_outstanding();
  std::atomic<bool> swept{false};
  std::atomic<int> late_spawn_rv{-1};
  auto *late = Keep<Base>();
  weft_runtime *rt = rt_;
  std::thread releaser([&] {
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (weft_msg_outstanding() < queued + live_actors &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    swept = weft_msg_outstanding() >= queued + live_actors;
    // Close is under way (it cannot finish while the gate is shut): a
    // spawn now must be refused.
    weft_spawn_opts o{};
    o.handler = ExitOnFirst;
    o.state = late;
    o.on_exit = RecordExit;
    late_spawn_rv = weft_spawn(rt, &o, nullptr);
    OpenGate(g);
  });
  weft_close_report rep = CloseNow();
  releaser.join();
  ASSERT_TRUE(swept.load()) << "close never woke every actor";
  EXPECT_EQ(WEFT_ECLOSED, late_spawn_rv.load()) << "spawn during close";

  EXPECT_EQ(static_cast<uint64_t>(live_actors), rep.actors_stopped);
  EXPECT_EQ(kBusy * kQueued, rep.messages_dropped);
  EXPECT_EQ(WEFT_EXIT_SHUTDOWN, g->exit_reason.load());
  for (auto *st : states) {
    EXPECT_EQ(0u, st->handled.load()) << "a queued message was handled";
    EXPECT_EQ(1, st->exit_calls.load());
    EXPECT_EQ(WEFT_EXIT_SHUTDOWN, st->exit_reason.load());
  }
  EXPECT_EQ(msgs_before_, weft_msg_outstanding());
}

TEST_F(ActorTest, CloseWithNoActorsReportsNothing) {
  weft_close_report rep = CloseNow();
  EXPECT_EQ(0u, rep.actors_stopped);
  EXPECT_EQ(0u, rep.messages_dropped);
}

struct CloserState : Base {
  weft_err close_rv = WEFT_OK;
  weft_err idle_rv = WEFT_OK;
};

void CloserHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<CloserState>(s);
  weft_close_report rep{};
  st->close_rv = weft_runtime_close(weft_turn_runtime(t), &rep);
  st->idle_rv = weft_runtime_wait_idle(weft_turn_runtime(t), 1000000);
  weft_msg_free(m);
  weft_exit(t);
}

TEST_F(ActorTest, RuntimeCloseFromAHandlerReturnsEstateAndClosesNothing) {
  auto *st = Keep<CloserState>();
  weft_aid aid = MustSpawn(rt_, st, CloserHandler, "closer");
  ASSERT_EQ(WEFT_OK, Send(rt_, aid));
  ASSERT_TRUE(st->exited.WaitFor(kWait));
  EXPECT_EQ(WEFT_ESTATE, st->close_rv);
  EXPECT_EQ(WEFT_ESTATE, st->idle_rv);
  // The runtime still works.
  auto *after = Keep<Base>();
  weft_aid b = MustSpawn(rt_, after, ExitOnFirst);
  ASSERT_EQ(WEFT_OK, Send(rt_, b));
  EXPECT_TRUE(after->exited.WaitFor(kWait));
}

TEST(RuntimeConfig, WorkersAreAsConfiguredOrOnePerCore) {
  for (unsigned n : {1u, 3u, 0u}) {
    weft_config cfg;
    weft_config_init(&cfg);
    EXPECT_EQ(0u, cfg.workers);
    EXPECT_EQ(0u, cfg.batch);
    EXPECT_FALSE(cfg.deterministic);
    EXPECT_LT(cfg.log_level, 0);
    cfg.workers = n;
    cfg.log_level = WEFT_LOG_ERROR;
    weft_runtime *rt = nullptr;
    ASSERT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt));
    weft_runtime_stats s;
    weft_runtime_stats_get(rt, &s);
    const unsigned want =
        n ? n : static_cast<unsigned>(std::thread::hardware_concurrency());
    EXPECT_EQ(want, s.workers) << "asked for " << n;
    EXPECT_EQ(0u, s.actors_live);
    EXPECT_EQ(0u, s.actors_spawned);
    weft_close_report rep{1, 1};
    ASSERT_EQ(WEFT_OK, weft_runtime_close(rt, &rep));
    EXPECT_EQ(0u, rep.actors_stopped);
    EXPECT_EQ(0u, rep.messages_dropped);
  }
}

// ---- many actors ----

struct SinkState : Base {
  uint64_t count = 0;  // the handler's
  uint64_t bad = 0;
  std::atomic<uint64_t> published{0};
  uint64_t total = 0;
  std::mutex mu;
  std::condition_variable cv;

  bool WaitFor(uint64_t n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, kWait, [&] { return published.load() >= n; });
  }
};

void SinkHandler(weft_turn *, weft_msg *m, void *s) {
  auto *st = St<SinkState>(s);
  if (m->from.id == 0) st->bad++;
  weft_msg_free(m);
  if (++st->count % 1024 == 0 || st->count == st->total) {
    std::lock_guard<std::mutex> l(st->mu);
    st->published.store(st->count);
    st->cv.notify_all();
  }
}

struct EphemeralShared : Base {
  weft_aid sink{0};
  std::atomic<uint64_t> send_errors{0};
  std::atomic<uint64_t> exits{0};
  std::atomic<uint64_t> bad_reasons{0};
  uint64_t total = 0;
  Latch all_exited{1};
};

void EphemeralHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<EphemeralShared>(s);
  m->from = weft_self(t);
  if (weft_send(weft_turn_runtime(t), st->sink, m) != WEFT_OK) {
    st->send_errors.fetch_add(1);
    weft_msg_free(m);
  }
  weft_exit(t);
}

void EphemeralExit(weft_aid, void *s, weft_exit_reason why) {
  auto *st = St<EphemeralShared>(s);
  if (why != WEFT_EXIT_NORMAL) st->bad_reasons.fetch_add(1);
  if (st->exits.fetch_add(1) + 1 == st->total) st->all_exited.CountDown();
}

TEST_F(ActorTest, MillionActorsSpawnHandleOneMessageAndExit) {
#ifdef WEFT_TEST_SANITIZED
  constexpr uint64_t kActors = 100000;
#else
  constexpr uint64_t kActors = 1000000;
#endif
  constexpr uint64_t kWindow = 50000;  // actors alive at once, at most
  auto *sink = Keep<SinkState>();
  sink->total = kActors;
  weft_aid sink_aid = MustSpawn(rt_, sink, SinkHandler, "sink");
  auto *shared = Keep<EphemeralShared>();
  shared->sink = sink_aid;
  shared->total = kActors;
  const uint64_t spawned_before = Stats().actors_spawned;

  weft_spawn_opts o{};
  o.name = "ephemeral";
  o.handler = EphemeralHandler;
  o.state = static_cast<Base *>(shared);
  o.on_exit = EphemeralExit;
  for (uint64_t i = 0; i < kActors; i++) {
    if (i >= kWindow && i % 4096 == 0) {
      ASSERT_TRUE(sink->WaitFor(i - kWindow)) << "stuck at " << i;
    }
    weft_aid aid;
    ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &o, &aid)) << "at " << i;
    ASSERT_EQ(WEFT_OK, Send(rt_, aid, 1, i)) << "at " << i;
  }
  ASSERT_TRUE(sink->WaitFor(kActors)) << "sink has " << sink->published;
  ASSERT_TRUE(shared->all_exited.WaitFor(kWait))
      << shared->exits.load() << " exited";
  // on_exit runs just before the exit is counted: let the workers finish.
  ASSERT_EQ(WEFT_OK, weft_runtime_wait_idle(rt_, 30000000000ull));

  weft_runtime_stats s = Stats();
  EXPECT_EQ(1u, s.actors_live) << "only the sink is left";
  EXPECT_EQ(kActors, s.actors_spawned - spawned_before);
  EXPECT_EQ(0u, shared->send_errors.load());
  EXPECT_EQ(0u, shared->bad_reasons.load());
  EXPECT_EQ(0u, s.messages_dropped);

  ASSERT_EQ(WEFT_OK, weft_stop(rt_, sink_aid));
  ASSERT_TRUE(sink->exited.WaitFor(kWait));
  EXPECT_EQ(kActors, sink->count);
  EXPECT_EQ(0u, sink->bad);
  ASSERT_EQ(WEFT_OK, weft_runtime_wait_idle(rt_, 30000000000ull));
  EXPECT_EQ(0u, Stats().actors_live);
}

// ---- deterministic mode ----

struct OrderShared : Base {
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> exits{0};
  int total = 0;
  Latch all_exited{1};
};

struct OrderActor : Base {
  OrderShared *shared = nullptr;
  int index = 0;
};

void OrderHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<OrderActor>(s);
  {
    std::lock_guard<std::mutex> l(st->shared->mu);
    st->shared->order.push_back(st->index);
  }
  weft_msg_free(m);
  weft_exit(t);
}

void OrderExit(weft_aid, void *s, weft_exit_reason) {
  auto *st = St<OrderActor>(s);
  if (st->shared->exits.fetch_add(1) + 1 == st->shared->total)
    st->shared->all_exited.CountDown();
}

// Opens a deterministic runtime, makes 50 actors runnable at once behind a
// gate, and returns the order in which they ran.
std::vector<int> RunDeterministic(uint64_t seed) {
  constexpr int kActors = 50;
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.deterministic = true;
  cfg.seed = seed;
  cfg.workers = 4;  // deterministic mode uses one regardless
  cfg.log_level = WEFT_LOG_ERROR;  // it announces the seed at WARNING
  weft_runtime *rt = nullptr;
  EXPECT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt));
  if (rt == nullptr) return {};
  weft_runtime_stats s;
  weft_runtime_stats_get(rt, &s);
  EXPECT_EQ(1u, s.workers);
  // Let the worker park before any work arrives, so that every run sees the
  // same sequence of events (see SameSeedGivesSameOrderHowever... below).
  EXPECT_EQ(WEFT_OK, weft_runtime_wait_idle(rt, 30000000000ull));

  auto gate = std::make_unique<GateState>();
  auto shared = std::make_unique<OrderShared>();
  shared->total = kActors;
  std::vector<std::unique_ptr<OrderActor>> actors;
  std::vector<weft_aid> aids;
  weft_aid gate_aid = MustSpawn(rt, gate.get(), GateHandler, "gate");
  for (int i = 0; i < kActors; i++) {
    actors.push_back(std::make_unique<OrderActor>());
    actors.back()->shared = shared.get();
    actors.back()->index = i;
    weft_spawn_opts o{};
    o.name = "ordered";
    o.handler = OrderHandler;
    o.state = static_cast<Base *>(actors.back().get());
    o.on_exit = OrderExit;
    weft_aid aid{0};
    EXPECT_EQ(WEFT_OK, weft_spawn(rt, &o, &aid));
    aids.push_back(aid);
  }
  EXPECT_EQ(WEFT_OK, Send(rt, gate_aid));
  EXPECT_TRUE(gate->entered.WaitFor(kWait));
  for (weft_aid a : aids) EXPECT_EQ(WEFT_OK, Send(rt, a));
  OpenGate(gate.get());
  EXPECT_TRUE(shared->all_exited.WaitFor(kWait));
  EXPECT_TRUE(gate->exited.WaitFor(kWait));
  weft_close_report rep{};
  EXPECT_EQ(WEFT_OK, weft_runtime_close(rt, &rep));
  EXPECT_EQ(0u, rep.actors_stopped);
  std::lock_guard<std::mutex> l(shared->mu);
  EXPECT_EQ(static_cast<size_t>(kActors), shared->order.size());
  return shared->order;
}

TEST(DeterministicMode, SameSeedRunsEquallyRunnableActorsInTheSameOrder) {
  const int64_t before = weft_msg_outstanding();
  std::vector<int> a = RunDeterministic(12345);
  std::vector<int> b = RunDeterministic(12345);
  ASSERT_EQ(50u, a.size());
  EXPECT_EQ(a, b);
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 50; i++) ASSERT_EQ(i, sorted[i]) << "each ran once";
  std::vector<int> fifo(50);
  for (int i = 0; i < 50; i++) fifo[i] = i;
  EXPECT_NE(fifo, a) << "the order is drawn from the seed, not FIFO";
  EXPECT_EQ(before, weft_msg_outstanding());
}

TEST(DeterministicMode, DifferentSeedRunsThemInADifferentOrder) {
  std::vector<int> a = RunDeterministic(12345);
  std::vector<int> b = RunDeterministic(67890);
  ASSERT_EQ(50u, a.size());
  ASSERT_EQ(50u, b.size());
  EXPECT_NE(a, b);
}

struct RootState : Base {
  OrderShared *shared = nullptr;
  std::vector<std::unique_ptr<OrderActor>> *children = nullptr;
  weft_err rv = WEFT_OK;
};

// Spawns every child and sends each one message, all in one turn.
void RootHandler(weft_turn *t, weft_msg *m, void *s) {
  auto *st = St<RootState>(s);
  weft_msg_free(m);
  for (auto &child : *st->children) {
    weft_spawn_opts o{};
    o.name = "child";
    o.handler = OrderHandler;
    o.state = static_cast<Base *>(child.get());
    o.on_exit = OrderExit;
    weft_aid aid{0};
    weft_err rv = weft_spawn(weft_turn_runtime(t), &o, &aid);
    if (rv == WEFT_OK) rv = Send(weft_turn_runtime(t), aid);
    if (rv != WEFT_OK) st->rv = rv;
  }
  weft_exit(t);
}

// Pins the calling thread to one of its CPUs for the object's lifetime.
class OneCpu {
 public:
  OneCpu() {
    CPU_ZERO(&saved_);
    if (sched_getaffinity(0, sizeof(saved_), &saved_) != 0) return;
    for (int c = 0; c < CPU_SETSIZE; c++) {
      if (CPU_ISSET(c, &saved_)) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(c, &one);
        pinned_ = sched_setaffinity(0, sizeof(one), &one) == 0;
        break;
      }
    }
  }
  ~OneCpu() {
    if (pinned_) sched_setaffinity(0, sizeof(saved_), &saved_);
  }

 private:
  cpu_set_t saved_;
  bool pinned_ = false;
};

// A program whose only outside event is one message to a root actor, which
// makes 50 children runnable at once; returns the order they ran in.
std::vector<int> RunRootSpawner(uint64_t seed, bool idle_first) {
  constexpr int kChildren = 50;
  // Everything on one CPU (the worker inherits this thread's affinity), so
  // that the worker starts only when this thread blocks: without
  // idle_first, the root's message is then queued before the worker first
  // looks for work; with it, the worker has parked first.
  OneCpu pinned;
  weft_config cfg;
  weft_config_init(&cfg);
  cfg.deterministic = true;
  cfg.seed = seed;
  cfg.log_level = WEFT_LOG_ERROR;
  weft_runtime *rt = nullptr;
  EXPECT_EQ(WEFT_OK, weft_runtime_open(&cfg, &rt));
  if (rt == nullptr) return {};
  if (idle_first) {
    EXPECT_EQ(WEFT_OK, weft_runtime_wait_idle(rt, 30000000000ull));
  }
  auto shared = std::make_unique<OrderShared>();
  shared->total = kChildren;
  std::vector<std::unique_ptr<OrderActor>> children;
  for (int i = 0; i < kChildren; i++) {
    children.push_back(std::make_unique<OrderActor>());
    children.back()->shared = shared.get();
    children.back()->index = i;
  }
  auto root = std::make_unique<RootState>();
  root->shared = shared.get();
  root->children = &children;
  weft_aid root_aid = MustSpawn(rt, root.get(), RootHandler, "root");
  EXPECT_EQ(WEFT_OK, Send(rt, root_aid));
  EXPECT_TRUE(shared->all_exited.WaitFor(kWait));
  EXPECT_TRUE(root->exited.WaitFor(kWait));
  EXPECT_EQ(WEFT_OK, root->rv);
  weft_close_report rep{};
  EXPECT_EQ(WEFT_OK, weft_runtime_close(rt, &rep));
  EXPECT_EQ(0u, rep.actors_stopped);
  std::lock_guard<std::mutex> l(shared->mu);
  EXPECT_EQ(static_cast<size_t>(kChildren), shared->order.size());
  return shared->order;
}

TEST(DeterministicMode, SameSeedReplaysActorsSpawnedByAHandlerInTheSameOrder) {
  std::vector<int> a = RunRootSpawner(777, /*idle_first=*/true);
  std::vector<int> b = RunRootSpawner(777, /*idle_first=*/true);
  ASSERT_EQ(50u, a.size());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, RunRootSpawner(778, /*idle_first=*/true));
}

// BUG: the order depends on how many times the idle worker looked at its
// empty run queue before the first message arrived, which is thread timing,
// not the program. In deterministic mode local_get() (scheduler/sched.c)
// calls weft__runq_pop_at(&w->q, next_rand(&w->rng)) on every look, so each
// idle poll consumes a draw from the seeded generator (the GLOBAL_CHECK_TICK
// counter also advances on idle polls). Here the program is identical in
// every run (one outside message to a root actor that spawns and messages
// 50 children); only whether the worker had already parked when that message
// came differs. Without waiting, about 6 runs in 10 come out in another
// order than with waiting.
TEST(DeterministicMode, SameSeedGivesSameOrderHoweverLongTheWorkerIdledFirst) {
  const std::vector<int> ref = RunRootSpawner(777, /*idle_first=*/true);
  ASSERT_EQ(50u, ref.size());
  int differ = 0;
  constexpr int kRuns = 20;
  for (int i = 0; i < kRuns; i++)
    if (RunRootSpawner(777, /*idle_first=*/i % 2 == 1) != ref) differ++;
  EXPECT_EQ(0, differ) << differ << " of " << kRuns
                       << " runs with seed 777 ran the children in another "
                          "order";
}

}  // namespace

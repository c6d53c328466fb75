// test/net/transport_test.cc - contexts across two processes (issue 4):
// the same calls as in-process, through a portal from weft_net_connect, to
// an actor in a forked child process (PeerProcess); and what each side
// observes when that process vanishes at chosen points (semantics.md
// §W.3.1, protocol.md §6.5).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test/net/peer_process.h"
#include "weft/testing/gtest.h"
#include "weft/weft.h"

namespace {

using weft::testing::Describe;
using weft::testing::IsAbsorbedSelfCancel;
using weft::testing::IsBoxedError;
using weft::testing::IsContextCancelled;
using weft::testing::PeerOptions;
using weft::testing::PeerProcess;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;

#define TRY(x)                                                 \
  do {                                                         \
    weft_err rc_ = (x);                                        \
    if (rc_ != WEFT_OK) {                                      \
      ADD_FAILURE() << #x << ": " << weft_errname(rc_) << " "  \
                    << Describe(weft_task_error());            \
      return rc_;                                              \
    }                                                          \
  } while (0)

// ---- the server's functions (they run in the child process) -------------

// What the child saw of the last context that ended cancelled, readable
// with t:last_cancel.
char g_last_canceller[WEFT_NAME_MAX];

weft_err Echo(weft_ctx *ctx, const weft_payload *args, void *) {
  return weft_ctx_return(ctx, args->data, args->len);
}

weft_err Fail(weft_ctx *, const weft_payload *, void *) {
  return weft_fail("ValueError", "boom from the child");
}

weft_err StreamEcho(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, "ready", 5);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) rc = weft_ctx_open_stream(ctx, nullptr, &s);
  uint64_t n = 0;
  while (rc == WEFT_OK) {
    weft_payload p{};
    rc = weft_stream_recv(s, &p);
    if (rc != WEFT_OK) break;
    rc = weft_stream_send(s, p.data, p.len);
    weft_payload_free(&p);
    n++;
  }
  if (rc != WEFT_EEOC) return rc;
  weft_stream_close(s);
  return weft_ctx_return(ctx, &n, sizeof(n));
}

weft_err SleepForever(weft_ctx *ctx, const weft_payload *, void *) {
  g_last_canceller[0] = 0;
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc == WEFT_OK) rc = weft_sleep(UINT64_C(3600) * 1000000000u);
  const weft_uid *c = weft_ctx_canceller(ctx);
  if (c) std::snprintf(g_last_canceller, sizeof(g_last_canceller), "%s",
                       c->name);
  return rc;
}

weft_err LastCancel(weft_ctx *ctx, const weft_payload *, void *) {
  return weft_ctx_return(ctx, g_last_canceller, std::strlen(g_last_canceller));
}

weft_err CountTo(weft_ctx *ctx, const weft_payload *args, void *) {
  uint64_t n = 0;
  if (args->len == sizeof(n)) std::memcpy(&n, args->data, sizeof(n));
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) rc = weft_ctx_open_stream(ctx, nullptr, &s);
  for (uint64_t i = 0; rc == WEFT_OK && i < n; i++)
    rc = weft_stream_send(s, &i, sizeof(i));
  if (rc != WEFT_OK) return rc;
  weft_stream_close(s);
  return weft_ctx_return(ctx, "sent", 4);
}

// Started, then does not read its stream for a while: the caller's sends
// overrun it (refused: StreamOverrun naming the caller).
weft_err SlowReader(weft_ctx *ctx, const weft_payload *, void *) {
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  weft_stream *s = nullptr;
  if (rc == WEFT_OK) rc = weft_ctx_open_stream(ctx, nullptr, &s);
  if (rc == WEFT_OK) rc = weft_sleep(UINT64_C(3600) * 1000000000u);
  return rc;
}

std::vector<weft_function> ServerFunctions() {
  return {
      {"t:echo", Echo, nullptr},
      {"t:fail", Fail, nullptr},
      {"t:stream_echo", StreamEcho, nullptr},
      {"t:sleep_forever", SleepForever, nullptr},
      {"t:last_cancel", LastCancel, nullptr},
      {"t:count_to", CountTo, nullptr},
      {"t:slow_reader", SlowReader, nullptr},
  };
}

// ---- the fixture ----------------------------------------------------------

class Transport : public RuntimeTest {
 protected:
  void SetUp() override {
    PeerOptions o;
    o.functions = ServerFunctions();
    ASSERT_TRUE(peer_.Start(o)) << "the server process did not start";
    RuntimeTest::SetUp();
  }
  void TearDown() override {
    RuntimeTest::TearDown();
    peer_.Kill();
  }

  // Runs body(portal on the server) as the task of actor "client".
  weft_err WithServer(const std::function<weft_err(weft_portal *)> &body,
                      weft_error **err = nullptr) {
    return RunTask(
        rt_, "client",
        [&]() -> weft_err {
          weft_portal *p = nullptr;
          TRY(weft_net_connect(rt_, "127.0.0.1", peer_.port(), 0, &p));
          weft_err rc = body(p);
          weft_portal_free(p);
          return rc;
        },
        err);
  }

  PeerProcess peer_;
};

std::string PayloadString(const weft_payload &p) {
  return std::string(reinterpret_cast<const char *>(p.data), p.len);
}

// ---- location transparency ------------------------------------------------

TEST_F(Transport, PortalRunReturnsTheRemoteResult) {
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              weft_payload r{};
              TRY(weft_portal_run(p, "t:echo", "hello", 5, &r));
              EXPECT_EQ("hello", PayloadString(r));
              weft_payload_free(&r);
              return WEFT_OK;
            }));
}

TEST_F(Transport, RemoteErrorIsBoxedWithItsSource) {
  weft_error *err = nullptr;
  EXPECT_EQ(WEFT_EREMOTE, WithServer(
                              [](weft_portal *p) -> weft_err {
                                return weft_portal_run(p, "t:fail", nullptr,
                                                       0, nullptr);
                              },
                              &err));
  EXPECT_TRUE(IsBoxedError(err, "ValueError", "server"));
  EXPECT_EQ(WEFT_ERRKIND_APP, weft_error_kind(err));
  EXPECT_NE(nullptr, std::strstr(weft_error_message(err), "boom"));
  weft_error_release(err);
}

TEST_F(Transport, UnknownFunctionIsNoSuchFunction) {
  weft_error *err = nullptr;
  EXPECT_EQ(WEFT_EREMOTE, WithServer(
                              [](weft_portal *p) -> weft_err {
                                return weft_portal_run(p, "t:missing",
                                                       nullptr, 0, nullptr);
                              },
                              &err));
  EXPECT_EQ(WEFT_ERRKIND_NO_SUCH_FUNCTION, weft_error_kind(err))
      << Describe(err);
  weft_error_release(err);
}

TEST_F(Transport, ContextStreamsBothWaysAndReturns) {
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              weft_ctx *ctx = nullptr;
              weft_payload first{};
              TRY(weft_open_context(p, "t:stream_echo", nullptr, 0, nullptr,
                                    &ctx, &first));
              EXPECT_EQ("ready", PayloadString(first));
              weft_stream *s = nullptr;
              TRY(weft_ctx_open_stream(ctx, nullptr, &s));
              for (uint64_t i = 0; i < 1000; i++) {
                TRY(weft_stream_send(s, &i, sizeof(i)));
                weft_payload r{};
                TRY(weft_stream_recv(s, &r));
                uint64_t v = ~0ull;
                if (r.len == sizeof(v)) std::memcpy(&v, r.data, sizeof(v));
                weft_payload_free(&r);
                if (v != i) {
                  ADD_FAILURE() << "echo " << i << " came back as " << v;
                  break;
                }
              }
              TRY(weft_stream_close(s));
              weft_payload res{};
              TRY(weft_ctx_result(ctx, &res));
              uint64_t n = 0;
              if (res.len == sizeof(n)) std::memcpy(&n, res.data, sizeof(n));
              EXPECT_EQ(1000u, n);
              weft_err rc = weft_ctx_exit(ctx, WEFT_OK);
              weft_ctx_free(ctx);
              return rc;
            }));
}

TEST_F(Transport, CalleeStreamsToCallerInOrder) {
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              const uint64_t n = 20000;
              weft_ctx *ctx = nullptr;
              weft_ctx_opts o{};
              o.allow_overruns = true;
              TRY(weft_open_context(p, "t:count_to", &n, sizeof(n), &o, &ctx,
                                    nullptr));
              weft_stream *s = nullptr;
              TRY(weft_ctx_open_stream(ctx, nullptr, &s));
              uint64_t want = 0;
              weft_err rc;
              for (;;) {
                weft_payload r{};
                rc = weft_stream_recv(s, &r);
                if (rc != WEFT_OK) break;
                uint64_t v = ~0ull;
                if (r.len == sizeof(v)) std::memcpy(&v, r.data, sizeof(v));
                weft_payload_free(&r);
                if (v != want) {
                  ADD_FAILURE() << "item " << want << " came as " << v;
                  break;
                }
                want++;
              }
              EXPECT_EQ(WEFT_EEOC, rc);
              EXPECT_EQ(n, want);
              rc = weft_ctx_exit(ctx, WEFT_OK);
              weft_ctx_free(ctx);
              return rc;
            }));
}

TEST_F(Transport, CallerCancelIsAbsorbedAndTheCalleeSeesTheCanceller) {
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              weft_ctx *ctx = nullptr;
              TRY(weft_open_context(p, "t:sleep_forever", nullptr, 0, nullptr,
                                    &ctx, nullptr));
              TRY(weft_ctx_cancel(ctx));
              weft_err rc = weft_ctx_exit(ctx, WEFT_OK);
              EXPECT_EQ(WEFT_OK, rc) << Describe(weft_task_error());
              EXPECT_TRUE(IsAbsorbedSelfCancel(ctx));
              EXPECT_TRUE(IsContextCancelled(weft_ctx_remote_error(ctx),
                                             "client"));
              weft_ctx_free(ctx);
              weft_payload r{};
              TRY(weft_portal_run(p, "t:last_cancel", nullptr, 0, &r));
              EXPECT_EQ("client", PayloadString(r));
              weft_payload_free(&r);
              return WEFT_OK;
            }));
}

TEST_F(Transport, CancelActorEndsItsContextsNamingTheRequester) {
  EXPECT_EQ(WEFT_OK, WithServer([this](weft_portal *p) -> weft_err {
              weft_ctx *ctx = nullptr;
              TRY(weft_open_context(p, "t:sleep_forever", nullptr, 0, nullptr,
                                    &ctx, nullptr));
              // A third actor (same process, other task) cancels the
              // whole server actor while we wait for the result.
              std::thread third([this] {
                weft_err rc2 = RunTask(rt_, "canceller", [this]() -> weft_err {
                  weft_portal *q = nullptr;
                  TRY(weft_net_connect(rt_, "127.0.0.1", peer_.port(), 0,
                                       &q));
                  bool acked = false;
                  weft_err rc = weft_portal_cancel_actor(q, &acked);
                  EXPECT_TRUE(acked);
                  weft_portal_free(q);
                  return rc;
                });
                EXPECT_EQ(WEFT_OK, rc2);
              });
              weft_err rc = weft_ctx_result(ctx, nullptr);
              third.join();
              EXPECT_EQ(WEFT_EREMOTE, rc);
              EXPECT_TRUE(IsContextCancelled(weft_ctx_remote_error(ctx),
                                             "canceller"));
              weft_ctx_exit(ctx, WEFT_OK);
              weft_ctx_free(ctx);
              return WEFT_OK;
            }));
}

TEST_F(Transport, CallerOverrunningTheCalleeGetsStreamOverrunNamingItself) {
  weft_error *err = nullptr;
  weft_err rc = WithServer(
      [](weft_portal *p) -> weft_err {
        weft_ctx *ctx = nullptr;
        TRY(weft_open_context(p, "t:slow_reader", nullptr, 0, nullptr, &ctx,
                              nullptr));
        weft_stream *s = nullptr;
        TRY(weft_ctx_open_stream(ctx, nullptr, &s));
        weft_err rc = WEFT_OK;
        for (uint64_t i = 0; i < 100000 && rc == WEFT_OK; i++)
          rc = weft_stream_send(s, &i, sizeof(i));
        if (rc == WEFT_OK) rc = weft_ctx_result(ctx, nullptr);
        EXPECT_EQ(WEFT_EREMOTE, rc);
        const weft_error *e = weft_ctx_remote_error(ctx);
        EXPECT_NE(nullptr, e);
        if (e) {
          EXPECT_STREQ("StreamOverrun", weft_error_src_type(e)) << Describe(e);
          const weft_uid *sender = weft_error_sender(e);
          EXPECT_TRUE(sender && std::strcmp(sender->name, "client") == 0)
              << Describe(e);
        }
        weft_ctx_exit(ctx, rc);
        weft_ctx_free(ctx);
        return rc;
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  weft_error_release(err);
}

TEST_F(Transport, LargePayloadsCrossBothWays) {
  EXPECT_EQ(WEFT_OK, WithServer([](weft_portal *p) -> weft_err {
              std::string big(3 << 20, 'x');  // larger than a write chunk
              for (size_t i = 0; i < big.size(); i += 4096) big[i] = 'a' + i % 26;
              weft_payload r{};
              TRY(weft_portal_run(p, "t:echo", big.data(), big.size(), &r));
              EXPECT_TRUE(PayloadString(r) == big) << "3 MiB echoed intact";
              weft_payload_free(&r);
              return WEFT_OK;
            }));
}

TEST_F(Transport, PayloadOverThePeersFrameLimitIsRefusedLocally) {
  weft_error *err = nullptr;
  weft_err rc = WithServer(
      [](weft_portal *p) -> weft_err {
        std::string huge((16u << 20) + 1, 'x');  // the default limit + 1
        weft_err r = weft_portal_run(p, "t:echo", huge.data(), huge.size(),
                                     nullptr);
        EXPECT_EQ(WEFT_EMSGSIZE, r);
        const weft_error *e = weft_task_error();
        EXPECT_TRUE(e && std::strstr(weft_error_message(e), "frame limit"))
            << Describe(e);
        // The connection and the peer are unaffected.
        weft_payload ok{};
        TRY(weft_portal_run(p, "t:echo", "still here", 10, &ok));
        EXPECT_EQ("still here", PayloadString(ok));
        weft_payload_free(&ok);
        return WEFT_OK;
      },
      &err);
  EXPECT_EQ(WEFT_OK, rc) << Describe(err);
  weft_error_release(err);
}

// A peer that stops reading (SIGSTOP: its kernel buffers fill) makes the
// stream sender wait instead of queueing without bound; when the peer
// then dies, the waiting sender gets the transport-closed error at once.
TEST_F(Transport, SocketBackpressureBoundsTheSendersQueue) {
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> done{false};
  std::chrono::steady_clock::time_point killed_at;
  std::thread watcher([&] {
    uint64_t last = ~0ull;
    for (int stable = 0; stable < 5 && !done;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      uint64_t now = sent.load();
      stable = now == last && now > 0 ? stable + 1 : 0;
      last = now;
    }
    // 4 MiB of queue plus the kernel's socket buffers, not 256 MiB.
    EXPECT_LT(sent.load() * 1024, 64ull << 20)
        << "sent " << sent.load() << " KiB while the peer was stopped";
    killed_at = std::chrono::steady_clock::now();
    peer_.Kill();
  });
  weft_err send_rc = WEFT_OK;
  weft_err rc = WithServer([&](weft_portal *p) -> weft_err {
    weft_ctx *ctx = nullptr;
    weft_ctx_opts o{};
    o.allow_overruns = true;
    TRY(weft_open_context(p, "t:slow_reader", nullptr, 0, &o, &ctx,
                          nullptr));
    weft_stream *s = nullptr;
    TRY(weft_ctx_open_stream(ctx, nullptr, &s));
    kill(peer_.pid(), SIGSTOP);
    std::string item(1024, 'y');
    for (uint64_t i = 0; i < (256u << 10); i++) {  // 256 MiB worth
      send_rc = weft_stream_send(s, item.data(), item.size());
      if (send_rc != WEFT_OK) break;
      sent.fetch_add(1);
    }
    done = true;
    weft_ctx_exit(ctx, send_rc);
    weft_ctx_free(ctx);
    return WEFT_OK;
  });
  auto ended = std::chrono::steady_clock::now();
  done = true;
  watcher.join();
  EXPECT_EQ(WEFT_OK, rc);
  EXPECT_TRUE(send_rc == WEFT_EREMOTE || send_rc == WEFT_ECLOSED)
      << weft_errname(send_rc);
  EXPECT_LT(ended - killed_at, std::chrono::seconds(2));
}

// ---- the peer process vanishes --------------------------------------------

TEST_F(Transport, PeerKilledMidStreamEndsTheContextWithTransportClosed) {
  weft_error *err = nullptr;
  auto t0 = std::chrono::steady_clock::now();
  weft_err rc = WithServer(
      [this](weft_portal *p) -> weft_err {
        weft_ctx *ctx = nullptr;
        TRY(weft_open_context(p, "t:stream_echo", nullptr, 0, nullptr, &ctx,
                              nullptr));
        weft_stream *s = nullptr;
        TRY(weft_ctx_open_stream(ctx, nullptr, &s));
        uint64_t i = 1;
        TRY(weft_stream_send(s, &i, sizeof(i)));
        weft_payload r{};
        TRY(weft_stream_recv(s, &r));
        weft_payload_free(&r);
        peer_.Kill();  // mid-stream, while we wait for the next echo
        // The send may already see the peer gone (a TransportClosed),
        // or be accepted and lost with the connection.
        weft_err sent = weft_stream_send(s, &i, sizeof(i));
        EXPECT_TRUE(sent == WEFT_OK || sent == WEFT_ECLOSED)
            << weft_errname(sent);
        if (sent == WEFT_ECLOSED) {
          EXPECT_EQ(WEFT_ERRKIND_TRANSPORT_CLOSED,
                    weft_error_kind(weft_task_error()));
        }
        weft_err rc = weft_stream_recv(s, &r);
        EXPECT_EQ(WEFT_EREMOTE, rc);
        const weft_error *e = weft_ctx_remote_error(ctx);
        EXPECT_TRUE(e && weft_error_kind(e) == WEFT_ERRKIND_TRANSPORT_CLOSED)
            << Describe(e);
        EXPECT_TRUE(e && std::strstr(weft_error_message(e), "server"))
            << "the error names the peer: " << Describe(e);
        weft_ctx_exit(ctx, rc);
        weft_ctx_free(ctx);
        return rc;
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  weft_error_release(err);
}

TEST_F(Transport, PeerKilledBeforeStartedFailsTheOpen) {
  weft_error *err = nullptr;
  weft_err rc = WithServer(
      [this](weft_portal *p) -> weft_err {
        // Freeze the server so that `started` cannot come, then cut it.
        kill(peer_.pid(), SIGSTOP);
        weft_task *t = nullptr;
        struct Killer {
          PeerProcess *peer;
        } k{&peer_};
        weft_task_spawn(
            [](void *a) -> weft_err {
              weft_sleep(50 * 1000000u);
              static_cast<Killer *>(a)->peer->Kill();
              return WEFT_OK;
            },
            &k, &t);
        weft_ctx *ctx = nullptr;
        weft_err rc = weft_open_context(p, "t:sleep_forever", nullptr, 0,
                                        nullptr, &ctx, nullptr);
        const weft_error *e = weft_task_error();
        EXPECT_EQ(WEFT_EREMOTE, rc);
        EXPECT_EQ(nullptr, ctx);
        EXPECT_TRUE(e && weft_error_kind(e) == WEFT_ERRKIND_TRANSPORT_CLOSED)
            << Describe(e);
        weft_error *keep = const_cast<weft_error *>(weft_error_hold(e));
        weft_task_join(t);
        weft_error_release(keep);
        return rc;
      },
      &err);
  EXPECT_EQ(WEFT_EREMOTE, rc);
  weft_error_release(err);
}

TEST_F(Transport, PeerKilledDuringCancelDoesNotHang) {
  weft_err rc = WithServer([this](weft_portal *p) -> weft_err {
    weft_ctx *ctx = nullptr;
    TRY(weft_open_context(p, "t:sleep_forever", nullptr, 0, nullptr, &ctx,
                          nullptr));
    kill(peer_.pid(), SIGSTOP);  // the ack cannot come
    weft_task *t = nullptr;
    weft_task_spawn(
        [](void *a) -> weft_err {
          weft_sleep(100 * 1000000u);
          static_cast<PeerProcess *>(a)->Kill();
          return WEFT_OK;
        },
        &peer_, &t);
    auto t0 = std::chrono::steady_clock::now();
    weft_ctx_cancel(ctx);
    weft_ctx_exit(ctx, WEFT_OK);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    EXPECT_TRUE(weft_ctx_cancel_called(ctx));
    weft_ctx_free(ctx);
    weft_task_join(t);
    return WEFT_OK;
  });
  EXPECT_EQ(WEFT_OK, rc);
}

TEST_F(Transport, ConnectToNothingFailsClosed) {
  peer_.Kill();
  weft_error *err = nullptr;
  weft_err rc = RunTask(
      rt_, "client",
      [this]() -> weft_err {
        weft_portal *p = nullptr;
        return weft_net_connect(rt_, "127.0.0.1", 1, 0, &p);
      },
      &err);
  EXPECT_EQ(WEFT_ECLOSED, rc);
  EXPECT_TRUE(err && weft_error_kind(err) == WEFT_ERRKIND_TRANSPORT_CLOSED)
      << Describe(err);
  weft_error_release(err);
}

TEST_F(Transport, GracefulStopOfThePeerEndsContextsToo) {
  weft_err rc = WithServer([this](weft_portal *p) -> weft_err {
    weft_ctx *ctx = nullptr;
    TRY(weft_open_context(p, "t:sleep_forever", nullptr, 0, nullptr, &ctx,
                          nullptr));
    // The child closes its runtime: its actor's contexts end (cancelled
    // by its own close) or the bye ends them; either way nothing hangs.
    std::thread stopper([this] { peer_.Stop(); });
    weft_err r = weft_ctx_result(ctx, nullptr);
    stopper.join();
    EXPECT_EQ(WEFT_EREMOTE, r);
    weft_ctx_exit(ctx, r);
    weft_ctx_free(ctx);
    return WEFT_OK;
  });
  EXPECT_EQ(WEFT_OK, rc);
}

}  // namespace

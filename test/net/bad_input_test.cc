// test/net/bad_input_test.cc - the transport facing bad or hostile input
// (docs/protocol.md §2 framing, §5 handshake, §6.5 connection loss, §7.3
// heartbeat, §8.3 protocol errors, §9 limits).
//
// A weft runtime in the test process (the RuntimeTest fixture, which also
// fails a test that leaks actors, tasks, contexts, messages or errors) runs
// a "server" actor exposing t:echo (RUN), t:stream_echo (CONTEXT, echoes
// its stream) and t:block (CONTEXT, blocks until cancelled), made primary
// and listening on 127.0.0.1:0. The test thread then acts as a RAW peer:
// blocking POSIX sockets, every read bounded by poll, frames crafted with
// the wire codec (proto/codec.h). Covered, each checking what the peer
// receives, that the connection is closed where the byte stream cannot be
// resynchronised, and the server's weft_net_stats:
//
//   - before the handshake: non-weft bytes (HTTP) and an oversized or zero
//     first header are closed without a reply; a wrong version, a wrong
//     token and a first frame that is not a hello get error{kind} + close;
//   - after it: a malformed envelope, an oversized header and an unknown
//     message kind get error{PROTOCOL / FRAME_TOO_LARGE} + close; a message
//     for an unknown context is dropped and a start for an unknown function
//     answered NO_SUCH_FUNCTION, both leaving the connection usable;
//   - a peer vanishing mid-frame cancels the callee task it started;
//   - a bad peer does not disturb a good connection's open context;
//   - a silent peer is pinged, then dropped after 3 heartbeat intervals;
//   - from the weft side, a payload over the peer's announced frame limit
//     (a raw acceptor thread announcing 64 KiB), as call args or as a
//     stream item, is never written, fails locally with WEFT_EMSGSIZE,
//     and the connection (and the stream) stay usable.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "proto/codec.h"
#include "weft/testing/gtest.h"
#include "weft/weft.h"

namespace {

using weft::testing::Describe;
using weft::testing::Latch;
using weft::testing::RunTask;
using weft::testing::RuntimeTest;

using Bytes = std::vector<uint8_t>;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kReadMs = 2000;  // bound on any single expected reply
constexpr uint64_t kForeverNs = UINT64_C(3600) * 1000000000u;

const weft_v1_Side kNone = weft_v1_Side_SIDE_UNSPECIFIED;
const weft_v1_Side kCaller = weft_v1_Side_SIDE_CALLER;
const weft_v1_Side kCallee = weft_v1_Side_SIDE_CALLEE;

// ---- the server's functions ------------------------------------------------

// What t:block saw when it ended: its exit code (-1 while it runs or never
// ran) and the canceller's name.
std::atomic<int> g_block_started{0};
std::atomic<int> g_block_exit{-1};
char g_block_canceller[WEFT_NAME_MAX];

weft_err Echo(weft_ctx *ctx, const weft_payload *args, void *) {
  return weft_ctx_return(ctx, args->data, args->len);
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

weft_err Block(weft_ctx *ctx, const weft_payload *, void *) {
  g_block_started.fetch_add(1);  // before `started` can reach the peer
  weft_err rc = weft_ctx_started(ctx, nullptr, 0);
  if (rc == WEFT_OK) rc = weft_sleep(kForeverNs);
  const weft_uid *c = weft_ctx_canceller(ctx);
  std::snprintf(g_block_canceller, sizeof(g_block_canceller), "%s",
                c ? c->name : "");
  g_block_exit.store(static_cast<int>(rc));
  return rc;
}

const weft_function kServerFunctions[] = {
    {"t:echo", Echo, nullptr},
    {"t:stream_echo", StreamEcho, nullptr},
    {"t:block", Block, nullptr},
};

// ---- bytes and envelopes ---------------------------------------------------

std::string Hex(const uint8_t *p, size_t n, size_t max = 64) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n && i < max; i++) {
    std::snprintf(b, sizeof(b), "%02x", p[i]);
    s += b;
  }
  if (n > max) s += "...";
  return s;
}

std::string Str(weft_slice s) {
  return std::string(reinterpret_cast<const char *>(s.ptr), s.len);
}

weft_slice Slice(const void *p, size_t n) {
  return weft_slice{static_cast<const uint8_t *>(p), n};
}

weft_v1_ActorUid WireUid(const char *name, uint8_t seed) {
  weft_v1_ActorUid u{};
  std::snprintf(u.name, sizeof(u.name), "%s", name);
  for (int i = 0; i < 16; i++) u.uuid[i] = static_cast<uint8_t>(seed + i);
  return u;
}

// A frame: 4-byte big-endian length, then `body`, bypassing the codec.
Bytes RawFrame(const Bytes &body) {
  Bytes f(4 + body.size());
  weft_frame_put_header(f.data(), static_cast<uint32_t>(body.size()));
  std::memcpy(f.data() + 4, body.data(), body.size());
  return f;
}

// The whole frame of `e`, header included (empty on an encode failure,
// which is reported).
Bytes Encode(const weft_v1_Envelope &e) {
  weft_wire_frame f;
  weft_err rc = weft_wire_encode(&e, WEFT_FRAME_LIMIT_MAX, SIZE_MAX, &f);
  EXPECT_EQ(WEFT_OK, rc) << "encoding " << weft_wire_msg_name(e.which_msg)
                         << ": " << weft_errname(rc);
  if (rc != WEFT_OK) return {};
  Bytes out(f.len);
  EXPECT_EQ(WEFT_OK, weft_wire_frame_flatten(&f, out.data(), out.size()));
  weft_wire_frame_fini(&f);
  return out;
}

weft_v1_Envelope Env(uint64_t cid, weft_v1_Side side, pb_size_t which) {
  weft_v1_Envelope e{};
  e.cid = cid;
  e.side = side;
  e.which_msg = which;
  return e;
}

struct HelloOpts {
  uint32_t version = WEFT_WIRE_PROTOCOL_VERSION;
  std::string name = "rawpeer";
  std::string token;
  uint32_t max_frame = 0;
  uint32_t heartbeat_ms = 0;
};

// A hello frame as the raw peer (dialer) or raw acceptor sends it.
Bytes HelloFrame(const HelloOpts &o) {
  weft_v1_Hello h{};
  h.protocol_version = o.version;
  h.has_uid = true;
  h.uid = WireUid(o.name.c_str(), 0x40);
  h.pid = static_cast<uint32_t>(getpid());
  h.max_frame_size = o.max_frame;
  h.heartbeat_interval_ms = o.heartbeat_ms;
  h.auth_token.size = static_cast<pb_size_t>(o.token.size());
  std::memcpy(h.auth_token.bytes, o.token.data(), o.token.size());
  uint8_t buf[2048];
  size_t len = 0;
  EXPECT_EQ(WEFT_OK, weft_wire_encode_msg(weft_v1_Hello_fields, &h, buf,
                                          sizeof(buf), &len));
  weft_v1_Envelope e = Env(0, kNone, weft_v1_Envelope_hello_tag);
  e.msg.hello = Slice(buf, len);
  return Encode(e);
}

Bytes PingFrame(uint64_t nonce) {
  weft_v1_Envelope e = Env(0, kNone, weft_v1_Envelope_ping_tag);
  e.msg.ping.nonce = nonce;
  return Encode(e);
}

Bytes StartFrame(uint64_t cid, const char *func, weft_v1_FuncKind kind,
                 const std::string &args = "") {
  weft_v1_Envelope e = Env(cid, kCaller, weft_v1_Envelope_start_tag);
  weft_v1_Start &s = e.msg.start;
  std::snprintf(s.func, sizeof(s.func), "%s", func);
  s.kind = kind;
  if (!args.empty()) {
    s.has_args = true;
    s.args.value = Slice(args.data(), args.size());
  }
  s.has_caller = true;
  s.caller = WireUid("rawpeer", 0x40);
  return Encode(e);
}

Bytes YieldFrame(uint64_t cid, weft_v1_Side side, const std::string &v) {
  weft_v1_Envelope e = Env(cid, side, weft_v1_Envelope_yield_item_tag);
  e.msg.yield_item.has_pld = true;
  e.msg.yield_item.pld.value = Slice(v.data(), v.size());
  return Encode(e);
}

Bytes StopFrame(uint64_t cid) {
  return Encode(Env(cid, kCaller, weft_v1_Envelope_stop_tag));
}

Bytes ByeFrame() {
  static const char kWhy[] = "test done";
  weft_v1_Envelope e = Env(0, kNone, weft_v1_Envelope_bye_tag);
  e.msg.bye.reason = Slice(kWhy, sizeof(kWhy) - 1);
  return Encode(e);
}

// One received frame and its decoded envelope (which points into `body`,
// so the struct is neither copied nor moved).
struct Rx {
  Rx() = default;
  Rx(const Rx &) = delete;
  Rx &operator=(const Rx &) = delete;

  Bytes body;
  weft_v1_Envelope env{};
  weft_err decode_rc = WEFT_EPROTO;

  bool Is(pb_size_t which) const {
    return decode_rc == WEFT_OK && env.which_msg == which;
  }
  std::string Describe() const {
    if (decode_rc != WEFT_OK)
      return "undecodable frame " + Hex(body.data(), body.size());
    std::string s = std::string(weft_wire_msg_name(env.which_msg)) +
                    " cid=" + std::to_string(env.cid) +
                    " side=" + std::to_string(static_cast<int>(env.side));
    if (env.which_msg == weft_v1_Envelope_error_tag)
      s += " kind=" + std::to_string(static_cast<int>(env.msg.error.kind)) +
           " message=\"" + Str(env.msg.error.message) + "\"";
    return s;
  }
};

// ---- a raw peer: blocking socket, every wait bounded -----------------------

enum class Rd { kFrame, kEof, kTimeout, kError };

const char *RdName(Rd r) {
  switch (r) {
    case Rd::kFrame: return "a frame";
    case Rd::kEof: return "EOF";
    case Rd::kTimeout: return "a timeout";
    default: return "a socket error";
  }
}

class RawConn {
 public:
  RawConn() = default;
  explicit RawConn(int fd) : fd_(fd) {}
  RawConn(const RawConn &) = delete;
  RawConn &operator=(const RawConn &) = delete;
  ~RawConn() { Close(); }

  bool Connect(uint16_t port) {
    Close();
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof(a)) == 0;
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  int fd() const { return fd_; }

  bool Send(const Bytes &b) { return Send(b.data(), b.size()); }
  bool Send(const std::string &s) { return Send(s.data(), s.size()); }
  bool Send(const void *p, size_t n) {
    const uint8_t *c = static_cast<const uint8_t *>(p);
    while (n > 0) {
      ssize_t w = send(fd_, c, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      c += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  // Reads exactly n bytes by `deadline`. kEof when the peer closed (or
  // reset) first; *got says how many bytes came.
  Rd ReadExact(uint8_t *p, size_t n, Clock::time_point deadline,
               size_t *got) {
    *got = 0;
    while (*got < n) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline -
                                                           Clock::now());
      if (left.count() < 0) return Rd::kTimeout;
      pollfd pfd = {fd_, POLLIN, 0};
      int pr = poll(&pfd, 1, static_cast<int>(left.count()));
      if (pr < 0 && errno == EINTR) continue;
      if (pr < 0) return Rd::kError;
      if (pr == 0) return Rd::kTimeout;
      ssize_t r = recv(fd_, p + *got, n - *got, 0);
      if (r > 0) {
        *got += static_cast<size_t>(r);
      } else if (r == 0) {
        return Rd::kEof;
      } else if (errno == ECONNRESET) {
        return Rd::kEof;
      } else if (errno != EINTR && errno != EAGAIN) {
        return Rd::kError;
      }
    }
    return Rd::kFrame;
  }

  // One frame within timeout_ms; decoded into rx->env when it decodes.
  Rd ReadFrame(Rx *rx, int timeout_ms = kReadMs) {
    auto deadline = Clock::now() + milliseconds(timeout_ms);
    uint8_t hdr[4];
    size_t got = 0;
    Rd r = ReadExact(hdr, 4, deadline, &got);
    if (r != Rd::kFrame) return r == Rd::kEof && got ? Rd::kError : r;
    uint32_t len = weft_frame_get_header(hdr);
    if (len == 0 || len > WEFT_FRAME_LIMIT_DEFAULT) return Rd::kError;
    rx->body.assign(len, 0);
    r = ReadExact(rx->body.data(), len, deadline, &got);
    if (r != Rd::kFrame) return r == Rd::kEof ? Rd::kError : r;
    rx->decode_rc = weft_wire_decode(rx->body.data(), rx->body.size(),
                                     &rx->env);
    return Rd::kFrame;
  }

  // The next frame that is not a ping (the server's heartbeat may come at
  // any time; the raw peer does not answer it).
  Rd ReadNonPing(Rx *rx, int timeout_ms = kReadMs) {
    auto deadline = Clock::now() + milliseconds(timeout_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline -
                                                           Clock::now());
      Rd r = ReadFrame(rx, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (r != Rd::kFrame || !rx->Is(weft_v1_Envelope_ping_tag)) return r;
    }
  }

  // The peer closes without sending a single byte.
  ::testing::AssertionResult ExpectSilentClose(int timeout_ms = kReadMs) {
    auto deadline = Clock::now() + milliseconds(timeout_ms);
    uint8_t buf[256];
    size_t got = 0;
    Rd r = ReadExact(buf, sizeof(buf), deadline, &got);
    if (got > 0)
      return ::testing::AssertionFailure()
             << "expected a close without reply, got " << got
             << " bytes: " << Hex(buf, got);
    if (r != Rd::kEof)
      return ::testing::AssertionFailure()
             << "expected the connection closed, got " << RdName(r);
    return ::testing::AssertionSuccess();
  }

  // The peer closes (after at most some pings) within timeout_ms.
  ::testing::AssertionResult ExpectEof(int timeout_ms = kReadMs) {
    Rx rx;
    Rd r = ReadNonPing(&rx, timeout_ms);
    if (r == Rd::kEof) return ::testing::AssertionSuccess();
    if (r == Rd::kFrame)
      return ::testing::AssertionFailure()
             << "expected EOF, got " << rx.Describe();
    return ::testing::AssertionFailure() << "expected EOF, got " << RdName(r);
  }

  // Reads the next non-ping frame and checks it is `which` on (cid, side).
  ::testing::AssertionResult Expect(Rx *rx, pb_size_t which, uint64_t cid,
                                    weft_v1_Side side) {
    Rd r = ReadNonPing(rx);
    if (r != Rd::kFrame)
      return ::testing::AssertionFailure()
             << "expected " << weft_wire_msg_name(which) << ", got "
             << RdName(r);
    if (!rx->Is(which) || rx->env.cid != cid || rx->env.side != side)
      return ::testing::AssertionFailure()
             << "expected " << weft_wire_msg_name(which) << " cid=" << cid
             << " side=" << static_cast<int>(side) << ", got "
             << rx->Describe();
    return ::testing::AssertionSuccess();
  }

  // Reads error{kind} on cid 0 (a connection-level error).
  ::testing::AssertionResult ExpectConnError(Rx *rx, weft_v1_ErrorKind kind) {
    ::testing::AssertionResult a =
        Expect(rx, weft_v1_Envelope_error_tag, 0, kNone);
    if (!a) return a;
    if (rx->env.msg.error.kind != kind)
      return ::testing::AssertionFailure()
             << "expected error kind " << static_cast<int>(kind) << ", got "
             << rx->Describe();
    if (rx->env.msg.error.message.len == 0)
      return ::testing::AssertionFailure()
             << "the error says nothing: " << rx->Describe();
    return ::testing::AssertionSuccess();
  }

  // The dialer's side of the handshake: sends hello, expects the
  // acceptor's hello (decoded into *server when given).
  ::testing::AssertionResult Handshake(const HelloOpts &o = HelloOpts(),
                                       weft_v1_Hello *server = nullptr) {
    if (!Send(HelloFrame(o)))
      return ::testing::AssertionFailure() << "cannot send the hello";
    Rx rx;
    ::testing::AssertionResult a =
        Expect(&rx, weft_v1_Envelope_hello_tag, 0, kNone);
    if (!a) return a;
    weft_v1_Hello h{};
    if (weft_wire_decode_hello(rx.env.msg.hello, &h) != WEFT_OK)
      return ::testing::AssertionFailure() << "the acceptor's hello is bad";
    if (h.protocol_version != WEFT_WIRE_PROTOCOL_VERSION || !h.has_uid)
      return ::testing::AssertionFailure()
             << "acceptor hello: version " << h.protocol_version;
    if (server) *server = h;
    return ::testing::AssertionSuccess();
  }

  // A ping on cid 0 gets its pong: the connection is alive and in sync.
  ::testing::AssertionResult PingPong(uint64_t nonce) {
    if (!Send(PingFrame(nonce)))
      return ::testing::AssertionFailure() << "cannot send the ping";
    Rx rx;
    ::testing::AssertionResult a =
        Expect(&rx, weft_v1_Envelope_pong_tag, 0, kNone);
    if (!a) return a;
    if (rx.env.msg.pong.nonce != nonce)
      return ::testing::AssertionFailure()
             << "pong nonce " << rx.env.msg.pong.nonce << ", sent " << nonce;
    return ::testing::AssertionSuccess();
  }

  // A one-shot t:echo on `cid`: start_ack, then the value back.
  ::testing::AssertionResult EchoRun(uint64_t cid, const std::string &v) {
    if (!Send(StartFrame(cid, "t:echo", weft_v1_FuncKind_FUNC_KIND_RUN, v)))
      return ::testing::AssertionFailure() << "cannot send the start";
    Rx ack, ret;
    ::testing::AssertionResult a =
        Expect(&ack, weft_v1_Envelope_start_ack_tag, cid, kCallee);
    if (!a) return a;
    a = Expect(&ret, weft_v1_Envelope_return_value_tag, cid, kCallee);
    if (!a) return a;
    std::string got = Str(ret.env.msg.return_value.pld.value);
    if (got != v)
      return ::testing::AssertionFailure()
             << "echo returned \"" << got << "\", sent \"" << v << "\"";
    return ::testing::AssertionSuccess();
  }

 private:
  int fd_ = -1;
};

// Waits (bounded) until pred() holds; true if it did.
template <typename Pred>
bool Eventually(Pred pred, int timeout_ms = kReadMs) {
  auto deadline = Clock::now() + milliseconds(timeout_ms);
  while (!pred()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// ---- the fixture -----------------------------------------------------------

class BadInput : public RuntimeTest {
 protected:
  void SetUp() override {
    g_block_started.store(0);
    g_block_exit.store(-1);
    g_block_canceller[0] = 0;
    RuntimeTest::SetUp();
  }

  void TearDown() override {
    if (rt_ != nullptr) {
      // Every raw connection of the test is closed by now; let the
      // server see it before its actor goes, so the fixture's leak
      // checks judge a quiet runtime.
      EXPECT_TRUE(Eventually([this] { return Stats().connections_open == 0; }))
          << "a connection is still open";
      if (server_.id != 0) {
        EXPECT_EQ(WEFT_OK, weft_stop(rt_, server_));
        EXPECT_TRUE(server_exited_.WaitFor(std::chrono::seconds(5)))
            << "the server actor did not exit";
      }
    }
    RuntimeTest::TearDown();
  }

  static void OnServerExit(weft_aid, void *state, weft_exit_reason) {
    static_cast<Latch *>(state)->CountDown();
  }

  // Configures the transport, spawns the server actor, makes it primary
  // and listens on 127.0.0.1:0 (port_).
  void StartServer(const weft_net_opts *opts = nullptr) {
    weft_net_opts o;
    weft_net_opts_init(&o);
    if (opts) o = *opts;
    ASSERT_EQ(WEFT_OK, weft_net_configure(rt_, &o));
    weft_spawn_opts so{};
    so.name = "server";
    so.state = &server_exited_;
    so.on_exit = OnServerExit;
    so.functions = kServerFunctions;
    so.nfunctions = sizeof(kServerFunctions) / sizeof(kServerFunctions[0]);
    ASSERT_EQ(WEFT_OK, weft_spawn(rt_, &so, &server_));
    ASSERT_EQ(WEFT_OK, weft_net_set_primary(rt_, server_));
    ASSERT_EQ(WEFT_OK, weft_net_listen(rt_, "127.0.0.1", 0, &port_));
    ASSERT_NE(0, port_);
  }

  weft_net_stats Stats() {
    weft_net_stats s{};
    weft_net_stats_get(rt_, &s);
    return s;
  }

  // A raw connection to the server.
  void Dial(RawConn *c) { ASSERT_TRUE(c->Connect(port_)) << strerror(errno); }

  weft_aid server_{};
  Latch server_exited_;
  uint16_t port_ = 0;
};

// ---- 1-5: before the handshake ----------------------------------------------

// §2, §11: "GET / HTTP/1.1" reads as a 1.19 GB header: not weft, so the
// acceptor closes without revealing anything.
TEST_F(BadInput, HttpRequestIsClosedWithoutReply) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Send(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  EXPECT_TRUE(c.ExpectSilentClose());
  EXPECT_TRUE(Eventually([this] { return Stats().protocol_errors == 1; }));
  weft_net_stats s = Stats();
  EXPECT_EQ(1u, s.protocol_errors);
  EXPECT_EQ(0u, s.handshakes_refused);
  EXPECT_EQ(0u, s.connections_open);
}

// §2.1: the very first header is over the 64 KiB pre-handshake limit (or
// zero): closed at once, nothing sent back, nothing read for the body.
TEST_F(BadInput, OversizedOrZeroFirstHeaderIsClosedWithoutReply) {
  StartServer();
  {
    RawConn c;
    Dial(&c);
    uint8_t hdr[4];
    weft_frame_put_header(hdr, WEFT_FRAME_LIMIT_HANDSHAKE + 1);
    ASSERT_TRUE(c.Send(hdr, sizeof(hdr)));
    EXPECT_TRUE(c.ExpectSilentClose());
  }
  {
    RawConn c;
    Dial(&c);
    const uint8_t zero[4] = {0, 0, 0, 0};
    ASSERT_TRUE(c.Send(zero, sizeof(zero)));
    EXPECT_TRUE(c.ExpectSilentClose());
  }
  EXPECT_TRUE(Eventually([this] { return Stats().protocol_errors == 2; }));
  EXPECT_EQ(2u, Stats().protocol_errors);
  EXPECT_EQ(0u, Stats().handshakes_refused);
}

// §5.3: protocol_version 2 is refused with VERSION_MISMATCH and a message,
// then the acceptor closes.
TEST_F(BadInput, WrongVersionIsRefusedWithVersionMismatch) {
  StartServer();
  RawConn c;
  Dial(&c);
  HelloOpts h;
  h.version = 2;
  ASSERT_TRUE(c.Send(HelloFrame(h)));
  Rx rx;
  ASSERT_TRUE(
      c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH));
  EXPECT_NE(std::string::npos,
            Str(rx.env.msg.error.message).find("version"))
      << rx.Describe();
  EXPECT_TRUE(c.ExpectEof());
  EXPECT_TRUE(Eventually([this] { return Stats().handshakes_refused == 1; }));
  EXPECT_EQ(1u, Stats().handshakes_refused);
  EXPECT_EQ(0u, Stats().protocol_errors);
}

// §5.3: with a token configured, a wrong one is AUTH_FAILED (the message
// does not say what was wrong), the right one gets the acceptor's hello.
TEST_F(BadInput, WrongTokenIsAuthFailedRightTokenIsWelcome) {
  static const char kToken[] = "s3cret";
  weft_net_opts o;
  weft_net_opts_init(&o);
  o.auth_token = reinterpret_cast<const uint8_t *>(kToken);
  o.auth_token_len = sizeof(kToken) - 1;
  StartServer(&o);
  {
    RawConn c;
    Dial(&c);
    HelloOpts h;
    h.token = "guess";
    ASSERT_TRUE(c.Send(HelloFrame(h)));
    Rx rx;
    ASSERT_TRUE(
        c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED));
    EXPECT_EQ(std::string::npos, Str(rx.env.msg.error.message).find(kToken))
        << "the refusal must not reveal the token: " << rx.Describe();
    EXPECT_TRUE(c.ExpectEof());
  }
  {
    RawConn c;
    Dial(&c);
    HelloOpts h;
    h.token = kToken;
    weft_v1_Hello server{};
    ASSERT_TRUE(c.Handshake(h, &server));
    EXPECT_STREQ("server", server.uid.name);
    EXPECT_EQ(0u, server.auth_token.size) << "an acceptor sends no token";
    EXPECT_TRUE(c.PingPong(7));
  }
  weft_net_stats s = Stats();
  EXPECT_EQ(1u, s.handshakes_refused);
  EXPECT_EQ(0u, s.protocol_errors);
}

// §5.1 rule 3: a well-formed frame that is not a hello is PROTOCOL.
TEST_F(BadInput, FirstFrameNotAHelloIsProtocolError) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Send(PingFrame(1)));
  Rx rx;
  ASSERT_TRUE(c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL));
  EXPECT_TRUE(c.ExpectEof());
  EXPECT_TRUE(Eventually([this] { return Stats().protocol_errors == 1; }));
  EXPECT_EQ(1u, Stats().protocol_errors);
  EXPECT_EQ(0u, Stats().handshakes_refused);
}

// ---- 6-10: after the handshake ----------------------------------------------

// §4.1 rule 1, §8.3: bytes that are not protobuf inside a good frame:
// error{PROTOCOL} whose bad_msg carries the offending envelope (at most its
// first 256 bytes), then the close.
TEST_F(BadInput, MalformedEnvelopeIsProtocolErrorWithBadMsg) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Handshake());
  Bytes garbage = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07, 0x13};
  garbage.resize(600, 0x5a);
  ASSERT_TRUE(c.Send(RawFrame(garbage)));
  Rx rx;
  ASSERT_TRUE(c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL));
  const weft_slice bad = rx.env.msg.error.bad_msg;
  ASSERT_EQ(size_t{WEFT_WIRE_BAD_MSG_MAX}, bad.len)
      << "bad_msg is the envelope's first 256 bytes";
  EXPECT_EQ(Hex(garbage.data(), bad.len, 1024), Hex(bad.ptr, bad.len, 1024));
  EXPECT_TRUE(c.ExpectEof());
  EXPECT_TRUE(Eventually([this] { return Stats().protocol_errors == 1; }));
  EXPECT_EQ(1u, Stats().protocol_errors);
}

// §2, §2.1: a header over the receiver's own max_frame (64 KiB here) after
// the handshake: FRAME_TOO_LARGE, then the close; the body is never sent
// (the check happens on the 4 header bytes alone). A zero length after the
// handshake is PROTOCOL, also told before the close.
TEST_F(BadInput, OversizedHeaderAfterHandshakeIsFrameTooLarge) {
  weft_net_opts o;
  weft_net_opts_init(&o);
  o.max_frame = 65536;
  StartServer(&o);
  {
    RawConn c;
    Dial(&c);
    weft_v1_Hello server{};
    ASSERT_TRUE(c.Handshake(HelloOpts(), &server));
    EXPECT_EQ(65536u, server.max_frame_size);
    uint8_t hdr[4];
    weft_frame_put_header(hdr, 1u << 20);
    ASSERT_TRUE(c.Send(hdr, sizeof(hdr)));
    Rx rx;
    ASSERT_TRUE(
        c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_FRAME_TOO_LARGE));
    EXPECT_TRUE(c.ExpectEof());
  }
  {
    RawConn c;
    Dial(&c);
    ASSERT_TRUE(c.Handshake());
    const uint8_t zero[4] = {0, 0, 0, 0};
    ASSERT_TRUE(c.Send(zero, sizeof(zero)));
    Rx rx;
    ASSERT_TRUE(c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL));
    EXPECT_TRUE(c.ExpectEof());
  }
  EXPECT_TRUE(Eventually([this] { return Stats().protocol_errors == 2; }));
  EXPECT_EQ(2u, Stats().protocol_errors);
}

// §4.1 rule 2, §11.9: an envelope whose only member is field 99 (no v1
// kind): PROTOCOL, bad_msg = the envelope, close.
TEST_F(BadInput, UnknownMessageKindIsProtocolError) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Handshake());
  // cid=1 CALLER, field 99 (length-delimited, empty): the golden §11.9.
  const Bytes unknown = {0x08, 0x01, 0x10, 0x01, 0x9a, 0x06, 0x00};
  ASSERT_TRUE(c.Send(RawFrame(unknown)));
  Rx rx;
  ASSERT_TRUE(c.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL));
  const weft_slice bad = rx.env.msg.error.bad_msg;
  EXPECT_EQ(Hex(unknown.data(), unknown.size()), Hex(bad.ptr, bad.len));
  EXPECT_TRUE(c.ExpectEof());
  EXPECT_TRUE(Eventually([this] { return Stats().protocol_errors == 1; }));
  EXPECT_EQ(1u, Stats().protocol_errors);
}

// §6.2 / §6.3 "unknown cid: drop": a yield on a context that was never
// opened, from either side, is dropped; the connection stays in sync.
TEST_F(BadInput, MessageForUnknownContextIsDropped) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Handshake());
  ASSERT_TRUE(c.Send(YieldFrame(4242, kCaller, "stray")));
  ASSERT_TRUE(c.Send(YieldFrame(4243, kCallee, "stray")));
  ASSERT_TRUE(c.Send(StopFrame(4244)));
  EXPECT_TRUE(c.PingPong(99));
  // A call goes through the same actor mailbox after the strays: they
  // were handled (dropped) and the server still serves this peer.
  EXPECT_TRUE(c.EchoRun(5, "still here"));
  // In: hello, 3 strays, ping, start. Out: hello, pong, start_ack, return.
  EXPECT_TRUE(Eventually([this] {
    weft_net_stats t = Stats();
    return t.frames_in == 6 && t.frames_out == 4;
  }));
  weft_net_stats s = Stats();
  EXPECT_EQ(6u, s.frames_in);
  EXPECT_EQ(4u, s.frames_out);
  EXPECT_EQ(0u, s.protocol_errors);
  EXPECT_EQ(1u, s.connections_open);
}

// §6.2: a start for a function nobody exposes is answered on its own cid
// (SIDE_CALLEE) with NO_SUCH_FUNCTION, as the final message; the
// connection stays up.
TEST_F(BadInput, StartForUnknownFunctionIsNoSuchFunction) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Handshake());
  ASSERT_TRUE(
      c.Send(StartFrame(11, "t:missing", weft_v1_FuncKind_FUNC_KIND_RUN)));
  Rx rx;
  ASSERT_TRUE(c.Expect(&rx, weft_v1_Envelope_error_tag, 11, kCallee));
  EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_NO_SUCH_FUNCTION,
            rx.env.msg.error.kind)
      << rx.Describe();
  EXPECT_NE(std::string::npos, Str(rx.env.msg.error.message).find("t:missing"))
      << rx.Describe();
  // The same for a whole namespace that does not exist, as a CONTEXT.
  ASSERT_TRUE(c.Send(
      StartFrame(12, "nope:missing", weft_v1_FuncKind_FUNC_KIND_CONTEXT)));
  Rx rx2;
  ASSERT_TRUE(c.Expect(&rx2, weft_v1_Envelope_error_tag, 12, kCallee));
  EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_NO_SUCH_FUNCTION,
            rx2.env.msg.error.kind)
      << rx2.Describe();
  EXPECT_TRUE(c.PingPong(3));
  EXPECT_TRUE(c.EchoRun(13, "after"));
  EXPECT_EQ(0u, Stats().protocol_errors);
}

// ---- 11-12: a vanishing peer, isolation --------------------------------------

// §6.5: the raw peer opens a context on t:block, then sends half a frame
// and vanishes. The callee task it started is cancelled (with the local
// actor as canceller) and nothing leaks (the fixture checks).
TEST_F(BadInput, PeerGoneMidFrameCancelsItsCalleeTask) {
  StartServer();
  RawConn c;
  Dial(&c);
  ASSERT_TRUE(c.Handshake());
  ASSERT_TRUE(c.Send(StartFrame(21, "t:block",
                                weft_v1_FuncKind_FUNC_KIND_CONTEXT)));
  Rx ack, started;
  ASSERT_TRUE(c.Expect(&ack, weft_v1_Envelope_start_ack_tag, 21, kCallee));
  EXPECT_EQ(weft_v1_FuncKind_FUNC_KIND_CONTEXT, ack.env.msg.start_ack.kind);
  ASSERT_TRUE(c.Expect(&started, weft_v1_Envelope_started_tag, 21, kCallee));
  EXPECT_EQ(1, g_block_started.load());
  EXPECT_EQ(-1, g_block_exit.load()) << "t:block ended on its own";
  // A header announcing 100 bytes, 10 of them, and the socket closes.
  uint8_t partial[4 + 10] = {};
  weft_frame_put_header(partial, 100);
  ASSERT_TRUE(c.Send(partial, sizeof(partial)));
  c.Close();
  ASSERT_TRUE(Eventually([] { return g_block_exit.load() != -1; }))
      << "the callee task was not cancelled when its peer vanished";
  EXPECT_EQ(WEFT_ECANCELED, static_cast<weft_err>(g_block_exit.load()))
      << weft_errname(static_cast<weft_err>(g_block_exit.load()));
  EXPECT_STREQ("server", g_block_canceller)
      << "§6.5: cancelled with the local actor as canceller";
  EXPECT_TRUE(Eventually([this] { return Stats().connections_open == 0; }));
}

// A good connection with an open context keeps working while other peers
// are refused or dropped for bad input.
TEST_F(BadInput, BadPeersDoNotDisturbAGoodConnection) {
  StartServer();
  RawConn good;
  Dial(&good);
  ASSERT_TRUE(good.Handshake());
  ASSERT_TRUE(good.Send(StartFrame(31, "t:stream_echo",
                                   weft_v1_FuncKind_FUNC_KIND_CONTEXT)));
  Rx ack, started;
  ASSERT_TRUE(good.Expect(&ack, weft_v1_Envelope_start_ack_tag, 31, kCallee));
  ASSERT_TRUE(
      good.Expect(&started, weft_v1_Envelope_started_tag, 31, kCallee));
  EXPECT_EQ("ready", Str(started.env.msg.started.pld.value));
  ASSERT_TRUE(good.Send(YieldFrame(31, kCaller, "one")));
  Rx y1;
  ASSERT_TRUE(good.Expect(&y1, weft_v1_Envelope_yield_item_tag, 31, kCallee));
  EXPECT_EQ("one", Str(y1.env.msg.yield_item.pld.value));

  {  // not weft at all
    RawConn bad;
    Dial(&bad);
    ASSERT_TRUE(bad.Send(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
    EXPECT_TRUE(bad.ExpectSilentClose());
  }
  {  // refused in the handshake
    RawConn bad;
    Dial(&bad);
    HelloOpts h;
    h.version = 7;
    ASSERT_TRUE(bad.Send(HelloFrame(h)));
    Rx rx;
    EXPECT_TRUE(
        bad.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH));
    EXPECT_TRUE(bad.ExpectEof());
  }
  {  // handshaken, then garbage, on the same server actor
    RawConn bad;
    Dial(&bad);
    ASSERT_TRUE(bad.Handshake());
    ASSERT_TRUE(bad.Send(RawFrame({0xff, 0xff, 0xff})));
    Rx rx;
    EXPECT_TRUE(
        bad.ExpectConnError(&rx, weft_v1_ErrorKind_ERROR_KIND_PROTOCOL));
    EXPECT_TRUE(bad.ExpectEof());
  }

  // The good context goes on and finishes normally.
  ASSERT_TRUE(good.Send(YieldFrame(31, kCaller, "two")));
  Rx y2;
  ASSERT_TRUE(good.Expect(&y2, weft_v1_Envelope_yield_item_tag, 31, kCallee));
  EXPECT_EQ("two", Str(y2.env.msg.yield_item.pld.value));
  ASSERT_TRUE(good.Send(StopFrame(31)));
  Rx stop, ret;
  ASSERT_TRUE(good.Expect(&stop, weft_v1_Envelope_stop_tag, 31, kCallee));
  ASSERT_TRUE(
      good.Expect(&ret, weft_v1_Envelope_return_value_tag, 31, kCallee));
  uint64_t n = 0;
  const weft_slice v = ret.env.msg.return_value.pld.value;
  ASSERT_EQ(sizeof(n), v.len);
  std::memcpy(&n, v.ptr, sizeof(n));
  EXPECT_EQ(2u, n);
  EXPECT_TRUE(good.PingPong(5));

  weft_net_stats s = Stats();
  EXPECT_EQ(2u, s.protocol_errors);
  EXPECT_EQ(1u, s.handshakes_refused);
  EXPECT_EQ(1u, s.connections_open);
  ASSERT_TRUE(good.Send(ByeFrame()));
  EXPECT_TRUE(good.ExpectEof()) << "after bye the acceptor closes too";
}

// ---- 13: heartbeat -----------------------------------------------------------

// §7.3: with heartbeat_ms = 100 the server pings an idle peer; a peer that
// announced 100 ms and then stays silent is dead after 3 x 100 ms.
TEST_F(BadInput, SilentPeerIsPingedThenDroppedOnHeartbeatTimeout) {
  weft_net_opts o;
  weft_net_opts_init(&o);
  o.heartbeat_ms = 100;
  StartServer(&o);
  RawConn c;
  Dial(&c);
  HelloOpts h;
  h.heartbeat_ms = 100;
  weft_v1_Hello server{};
  ASSERT_TRUE(c.Handshake(h, &server));
  EXPECT_EQ(100u, server.heartbeat_interval_ms);
  auto t0 = Clock::now();
  int pings = 0;
  Rd r;
  for (;;) {
    Rx rx;
    r = c.ReadFrame(&rx, 1500);
    if (r != Rd::kFrame) break;
    ASSERT_TRUE(rx.Is(weft_v1_Envelope_ping_tag))
        << "only pings were expected, got " << rx.Describe();
    pings++;
  }
  auto elapsed =
      std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(Rd::kEof, r) << RdName(r);
  EXPECT_GE(pings, 1) << "the server never pinged the idle peer";
  EXPECT_GE(elapsed, 250) << "dropped before 3 heartbeat intervals";
  EXPECT_LT(elapsed, 1000) << "not dropped within ~1 s";
  EXPECT_TRUE(Eventually([this] { return Stats().heartbeat_timeouts >= 1; }));
  weft_net_stats s = Stats();
  EXPECT_GE(s.heartbeat_timeouts, 1u);
  EXPECT_EQ(0u, s.protocol_errors);
}

// ---- 14: a payload over the peer's limit, from the weft side ---------------

// A raw acceptor: accepts one connection, answers the dialer's hello with
// its own announcing max_frame_size = 64 KiB, then serves, for any
// function name: RUN like t:echo (start_ack, the args back); CONTEXT like
// t:stream_echo (start_ack, started, each yield echoed, on stop: stop and a
// return); cancel_context (error{CONTEXT_CANCELLED}, cancel_ack); ping. It
// runs until told to stop, then closes the connection.
class RawAcceptor {
 public:
  bool Start() {
    lfd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd_ < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(lfd_, reinterpret_cast<sockaddr *>(&a), sizeof(a)) != 0 ||
        listen(lfd_, 4) != 0 ||
        getsockname(lfd_, reinterpret_cast<sockaddr *>(&a), &len) != 0)
      return false;
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
    return true;
  }

  // Closes the connection (the weft side sees EOF) and joins.
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (lfd_ >= 0) close(lfd_);
    lfd_ = -1;
  }

  ~RawAcceptor() { Stop(); }

  uint16_t port() const { return port_; }
  std::atomic<int> handshakes{0}, starts{0}, yields{0}, bad_frames{0};
  std::atomic<size_t> largest_frame{0};
  std::string last_problem;  // read after Stop()

 private:
  // An envelope answering `in` on its context (sides and actors swapped).
  static weft_v1_Envelope Reply(const weft_v1_Envelope &in, pb_size_t which) {
    weft_v1_Envelope e = Env(in.cid, kCallee, which);
    e.to_actor = in.from_actor;
    e.from_actor = in.to_actor;
    return e;
  }

  void Serve() {
    pollfd p = {lfd_, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return Problem("no connection");
    RawConn c(accept(lfd_, nullptr, nullptr));
    if (c.fd() < 0) return Problem("accept failed");
    Rx hello;
    if (c.ReadFrame(&hello) != Rd::kFrame ||
        !hello.Is(weft_v1_Envelope_hello_tag))
      return Problem("no hello from the dialer");
    HelloOpts h;
    h.name = "rawacceptor";
    h.max_frame = 65536;
    if (!c.Send(HelloFrame(h))) return Problem("cannot send hello");
    handshakes.fetch_add(1);
    while (!stop_.load()) {
      // Wait for bytes in short steps (to see stop_), then read a whole
      // frame with the usual bound, so a timeout never splits one.
      pollfd pfd = {c.fd(), POLLIN, 0};
      int pr = poll(&pfd, 1, 20);
      if (pr == 0 || (pr < 0 && errno == EINTR)) continue;
      if (pr < 0) return Problem("poll failed");
      Rx rx;
      Rd r = c.ReadFrame(&rx);
      if (r != Rd::kFrame) return Problem(std::string("read: ") + RdName(r));
      if (rx.body.size() > largest_frame.load())
        largest_frame.store(rx.body.size());
      if (rx.decode_rc != WEFT_OK) {
        bad_frames.fetch_add(1);
        continue;
      }
      const weft_v1_Envelope &in = rx.env;
      switch (in.which_msg) {
        case weft_v1_Envelope_ping_tag: {
          weft_v1_Envelope e = Env(0, kNone, weft_v1_Envelope_pong_tag);
          e.msg.pong.nonce = in.msg.ping.nonce;
          c.Send(Encode(e));
          break;
        }
        case weft_v1_Envelope_start_tag: {
          starts.fetch_add(1);
          weft_v1_Envelope e = Reply(in, weft_v1_Envelope_start_ack_tag);
          e.msg.start_ack.kind = in.msg.start.kind;
          c.Send(Encode(e));
          if (in.msg.start.kind == weft_v1_FuncKind_FUNC_KIND_CONTEXT) {
            c.Send(Encode(Reply(in, weft_v1_Envelope_started_tag)));
            break;
          }
          weft_v1_Envelope v = Reply(in, weft_v1_Envelope_return_value_tag);
          if (in.msg.start.has_args && in.msg.start.args.value.len) {
            v.msg.return_value.has_pld = true;
            v.msg.return_value.pld.value = in.msg.start.args.value;
          }
          c.Send(Encode(v));
          break;
        }
        case weft_v1_Envelope_yield_item_tag: {
          yields.fetch_add(1);
          weft_v1_Envelope e = Reply(in, weft_v1_Envelope_yield_item_tag);
          e.msg.yield_item = in.msg.yield_item;
          c.Send(Encode(e));
          break;
        }
        case weft_v1_Envelope_stop_tag: {
          c.Send(Encode(Reply(in, weft_v1_Envelope_stop_tag)));
          static const char kDone[] = "done";
          weft_v1_Envelope v = Reply(in, weft_v1_Envelope_return_value_tag);
          v.msg.return_value.has_pld = true;
          v.msg.return_value.pld.value = Slice(kDone, 4);
          c.Send(Encode(v));
          break;
        }
        case weft_v1_Envelope_cancel_context_tag: {
          static const char kWhy[] = "cancelled";
          weft_v1_Envelope e = Reply(in, weft_v1_Envelope_error_tag);
          weft_v1_Error &err = e.msg.error;
          err.kind = weft_v1_ErrorKind_ERROR_KIND_CONTEXT_CANCELLED;
          std::snprintf(err.src_type, sizeof(err.src_type), "Cancelled");
          std::snprintf(err.boxed_type, sizeof(err.boxed_type),
                        "ContextCancelled");
          err.message = Slice(kWhy, sizeof(kWhy) - 1);
          err.has_canceller = true;
          err.canceller = in.msg.cancel_context.canceller;
          c.Send(Encode(e));
          c.Send(Encode(Reply(in, weft_v1_Envelope_cancel_ack_tag)));
          break;
        }
        case weft_v1_Envelope_bye_tag:
          return;
        default:
          break;
      }
    }
  }

  void Problem(const std::string &s) { last_problem = s; }

  int lfd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

// What a refused oversize send returned, from inside the task.
struct Refusal {
  weft_err rc = WEFT_OK;
  weft_errkind kind = WEFT_ERRKIND_NONE;
  std::string text;

  void Record(weft_err r) {
    rc = r;
    if (r == WEFT_OK) return;
    if (const weft_error *e = weft_task_error()) {
      kind = weft_error_kind(e);
      text = weft::testing::Describe(e);
    }
  }
  // protocol.md §2.1: WEFT_EMSGSIZE to the caller, with an error that
  // names the limit, not one claiming the transport closed (it did not).
  ::testing::AssertionResult AsSpecified() const {
    if (rc == WEFT_EMSGSIZE && kind != WEFT_ERRKIND_TRANSPORT_CLOSED &&
        text.find("limit") != std::string::npos)
      return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "oversize send: " << weft_errname(rc) << " / kind "
           << weft_errkind_name(kind) << " (" << text
           << "); protocol.md §2.1 wants WEFT_EMSGSIZE naming the limit";
  }
};

std::string PayloadString(const weft_payload &p) {
  return std::string(reinterpret_cast<const char *>(p.data), p.len);
}

// §2.1: "A sender MUST NOT send an envelope larger than the peer's
// announced limit ... weft: WEFT_EMSGSIZE to the caller; the connection is
// unaffected." Nothing over 64 KiB reaches the wire, the call fails at
// once, and a small call afterwards works.
TEST_F(BadInput, PayloadOverThePeersFrameLimitFailsLocally) {
  RawAcceptor acc;
  ASSERT_TRUE(acc.Start());
  Refusal big;
  weft_err rc = RunTask(rt_, "client", [&]() -> weft_err {
    weft_portal *p = nullptr;
    weft_err r = weft_net_connect(rt_, "127.0.0.1", acc.port(), 0, &p);
    if (r != WEFT_OK) {
      ADD_FAILURE() << "connect: " << weft_errname(r) << " "
                    << weft::testing::Describe(weft_task_error());
      return r;
    }
    const std::string data(100 * 1024, 'x');
    auto t0 = Clock::now();
    weft_payload res{};
    big.Record(weft_portal_run(p, "t:echo", data.data(), data.size(), &res));
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
    if (big.rc == WEFT_OK) weft_payload_free(&res);
    // The connection is unaffected: a small call still works.
    weft_payload small{};
    r = weft_portal_run(p, "t:echo", "small", 5, &small);
    EXPECT_EQ(WEFT_OK, r) << weft_errname(r) << " "
                          << weft::testing::Describe(weft_task_error());
    if (r == WEFT_OK) {
      EXPECT_EQ("small", PayloadString(small));
      weft_payload_free(&small);
    }
    weft_portal_free(p);
    return WEFT_OK;
  });
  EXPECT_EQ(WEFT_OK, rc);
  weft_net_stats s = Stats();
  EXPECT_EQ(1u, s.connections_open) << "the connection survived the refusal";
  EXPECT_EQ(0u, s.protocol_errors);
  acc.Stop();
  EXPECT_EQ("", acc.last_problem);
  EXPECT_EQ(1, acc.handshakes.load());
  EXPECT_EQ(1, acc.starts.load()) << "only the small start reached the wire";
  EXPECT_LE(acc.largest_frame.load(), 65536u)
      << "a frame over the announced limit was sent";
  EXPECT_EQ(0, acc.bad_frames.load());
  EXPECT_TRUE(big.AsSpecified());
}

// The same limit for a stream item: weft_stream_send of 100 KiB into a
// context with the 64 KiB peer fails locally (the item must not vanish
// with WEFT_OK), and the stream goes on: a small item is echoed and the
// context ends normally.
TEST_F(BadInput, StreamItemOverThePeersFrameLimitFailsLocally) {
  RawAcceptor acc;
  ASSERT_TRUE(acc.Start());
  Refusal big;
  weft_err rc = RunTask(rt_, "client", [&]() -> weft_err {
    weft_portal *p = nullptr;
    weft_err r = weft_net_connect(rt_, "127.0.0.1", acc.port(), 0, &p);
    if (r != WEFT_OK) {
      ADD_FAILURE() << "connect: " << weft_errname(r);
      return r;
    }
    weft_ctx *ctx = nullptr;
    r = weft_open_context(p, "t:stream_echo", nullptr, 0, nullptr, &ctx,
                          nullptr);
    if (r != WEFT_OK) {
      ADD_FAILURE() << "open_context: " << weft_errname(r) << " "
                    << weft::testing::Describe(weft_task_error());
      weft_portal_free(p);
      return r;
    }
    weft_stream *st = nullptr;
    r = weft_ctx_open_stream(ctx, nullptr, &st);
    EXPECT_EQ(WEFT_OK, r);
    if (r == WEFT_OK) {
      const std::string data(100 * 1024, 'y');
      big.Record(weft_stream_send(st, data.data(), data.size()));
      // The stream is unaffected: a small item goes and comes back.
      r = weft_stream_send(st, "small", 5);
      EXPECT_EQ(WEFT_OK, r) << weft_errname(r);
      weft_payload back{};
      r = weft_stream_recv(st, &back);
      EXPECT_EQ(WEFT_OK, r) << weft_errname(r);
      if (r == WEFT_OK) {
        EXPECT_EQ("small", PayloadString(back));
        weft_payload_free(&back);
      }
      EXPECT_EQ(WEFT_OK, weft_stream_close(st));
      weft_payload res{};
      r = weft_ctx_result(ctx, &res);
      EXPECT_EQ(WEFT_OK, r) << weft_errname(r) << " "
                            << weft::testing::Describe(weft_task_error());
      if (r == WEFT_OK) {
        EXPECT_EQ("done", PayloadString(res));  // owned by the context
      }
    }
    r = weft_ctx_exit(ctx, r);
    weft_ctx_free(ctx);
    weft_portal_free(p);
    return r;
  });
  EXPECT_EQ(WEFT_OK, rc);
  EXPECT_EQ(1u, Stats().connections_open);
  EXPECT_EQ(0u, Stats().protocol_errors);
  acc.Stop();
  EXPECT_EQ("", acc.last_problem);
  EXPECT_EQ(1, acc.yields.load()) << "only the small item reached the wire";
  EXPECT_LE(acc.largest_frame.load(), 65536u)
      << "a frame over the announced limit was sent";
  EXPECT_TRUE(big.AsSpecified());
}

}  // namespace

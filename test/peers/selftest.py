#!/usr/bin/python3
"""selftest: weft_peer.py against itself over loopback TCP.

    /usr/bin/python3 test/peers/selftest.py --pb2-dir <build>/proto/py
        [--golden-dir test/proto/golden] [-k SUBSTRING] [-v]

Runs the reference peer's features against each other: the client checks
(the same ones the C side must pass, here against `serve`'s py:*
functions), both context state machines from both sides, handshake
refusals on both ends, framing and protocol errors (through a raw socket
that speaks the wire by hand), heartbeats, bye, overruns, cancellation and
the CLI (serve/client as subprocesses). It also checks that the peer's
encoders reproduce frames of the golden transcripts (docs/protocol.md §11)
byte for byte.

Every wait is on an event or a socket with a timeout; each test runs under
a watchdog. Prints one line per test and exits 0 only if all passed.
"""

import argparse
import collections
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

wp = pb = None  # set in main(), after --pb2-dir is known

TIMEOUT = 5.0          # any single wait in a test
TEST_TIMEOUT = 30.0    # watchdog per test
EVENTS = collections.defaultdict(threading.Event)  # set by t:* functions

# ------------------------------------------------------------------ helpers


def check(cond, why="check failed"):
    if not cond:
        raise AssertionError(why)


def raises(exc_type, fn, *a, **kw):
    try:
        got = fn(*a, **kw)
    except exc_type as e:
        return e
    raise AssertionError(f"expected {exc_type.__name__}, got {got!r}")


class Spawn:
    """Runs fn in a thread; result() re-raises its exception."""

    def __init__(self, fn, *a, **kw):
        self.box = {}
        self.t = threading.Thread(target=self._run, args=(fn, a, kw),
                                  daemon=True)
        self.t.start()

    def _run(self, fn, a, kw):
        try:
            self.box["value"] = fn(*a, **kw)
        except BaseException as e:
            self.box["error"] = e

    def result(self, timeout=TIMEOUT):
        self.t.join(timeout)
        check(not self.t.is_alive(), "spawned call did not finish")
        if "error" in self.box:
            raise self.box["error"]
        return self.box["value"]


def test_functions():
    """Extra functions for the tests (namespace t)."""
    CONTEXT, RUN = wp.CONTEXT, wp.RUN

    @wp.exposed(CONTEXT)
    def wait_cancel(ctx, args):
        # started(); EVENTS[args] is set once the task sees its cancel.
        ctx.started()
        ctx.cancelled.wait()
        EVENTS[args.decode()].set()
        return b""

    @wp.exposed(CONTEXT)
    def started_twice(ctx, args):
        ctx.started(b"1")
        ctx.started(b"2")  # UsageError -> error{RUNTIME}
        return b"unreachable"

    @wp.exposed(CONTEXT)
    def no_started(ctx, args):
        return b"forgot started"

    @wp.exposed(CONTEXT)
    def self_cancel(ctx, args):
        ctx.started()
        ctx.cancel()
        ctx.recv()  # raises Cancelled
        return b"unreachable"

    @wp.exposed(RUN)
    def relay(ctx, args):
        # Calls back into the caller (connections are symmetric); the
        # caller's error is relayed (§8.1).
        return ctx.conn.run(args.decode(), timeout=TIMEOUT)

    @wp.exposed(RUN)
    def big_return(ctx, args):
        return b"x" * 70000

    return {"t:wait_cancel": wait_cancel, "t:started_twice": started_twice,
            "t:no_started": no_started, "t:self_cancel": self_cancel,
            "t:relay": relay, "t:big_return": big_return}


class Server:
    """A Peer serving py:* and t:* on 127.0.0.1:<free port>."""

    def __init__(self, name="pyserver", **kw):
        fns = wp.standard_functions("py")
        fns.update(test_functions())
        fns.update(kw.pop("functions", {}))
        self.peer = wp.Peer(name, fns, **kw)
        self.port = self.peer.listen("127.0.0.1", 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.peer.close("test over")

    def client(self, name="pyclient", **kw):
        """(client Peer, Connection)."""
        connect_kw = {k: kw.pop(k) for k in ("token", "protocol_version")
                      if k in kw}
        peer = wp.Peer(name, **kw)
        return peer, peer.connect("127.0.0.1", self.port, **connect_kw)


RAW_UID = None  # set in main()


class Raw:
    """A hand-driven weft end over a raw socket."""

    def __init__(self, sock):
        self.s = sock
        self.r = wp.FrameReader(sock)
        self.last_body = None

    @classmethod
    def dial(cls, port):
        return cls(socket.create_connection(("127.0.0.1", port), TIMEOUT))

    def send(self, env):
        self.s.sendall(wp.encode_frame(env))

    def send_bytes(self, data):
        self.s.sendall(data)

    def send_body(self, body):
        self.s.sendall(struct.pack(">I", len(body)) + body)

    def read(self, timeout=TIMEOUT):
        """The next envelope (None at EOF or reset)."""
        try:
            body = self.r.read(1 << 30, time.monotonic() + timeout)
        except (ConnectionResetError, BrokenPipeError):
            return None
        if body is None:
            return None
        self.last_body = body
        return pb.Envelope.FromString(body)

    def read_kind(self, kind, timeout=TIMEOUT):
        """The next envelope, skipping heartbeat traffic (pings are
        answered) unless that is what is asked for; it must be `kind`."""
        while True:
            env = self.read(timeout)
            check(env is not None, f"EOF while waiting for {kind}")
            k = env.WhichOneof("msg")
            if k != kind and k == "ping":
                self.send(wp.envelope("pong", pb.Pong(nonce=env.ping.nonce)))
                continue
            if k != kind and k == "pong":
                continue
            check(k == kind, f"got {k} ({env}), expected {kind}")
            return env

    def rest(self, timeout=TIMEOUT):
        """Envelopes (no ping/pong) until EOF; fails if EOF does not come."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            env = self.read(max(0.01, deadline - time.monotonic()))
            if env is None:
                return out
            if env.WhichOneof("msg") not in ("ping", "pong"):
                out.append(env)

    def expect_silent_close(self, timeout=TIMEOUT):
        self.s.settimeout(timeout)
        try:
            got = self.s.recv(4096)
        except ConnectionResetError:
            got = b""
        check(got == b"", f"expected a silent close, got {got[:40]!r}")

    def hello(self, uid=None, **fields):
        fields.setdefault("protocol_version", 1)
        h = pb.Hello(uid=(uid or RAW_UID).to_pb(), **fields)
        return wp.envelope("hello", h)

    def handshake(self, **fields):
        self.send(self.hello(**fields))
        return self.read_kind("hello")

    def close(self):
        self.s.close()


class RawServer:
    """A listening socket whose connections are driven by hand (to test
    the peer as dialer and as caller)."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]

    def accept(self):
        self.ls.settimeout(TIMEOUT)
        sock, _ = self.ls.accept()
        sock.settimeout(None)
        return Raw(sock)

    def close(self):
        self.ls.close()


def expect_closed_with(raw, kind):
    """The peer sends exactly error{kind} on cid 0, then EOF (§8.3)."""
    envs = raw.rest()
    kinds = [e.WhichOneof("msg") for e in envs]
    check(kinds == ["error"], f"expected [error] then EOF, got {kinds}")
    e = envs[0]
    check(e.cid == 0 and e.error.kind == kind,
          f"got {e}, expected error kind {wp.kind_name(kind)} on cid 0")
    return e.error


def start_env(cid, func, kind, args=b"", to_actor=0):
    s = pb.Start(func=func, kind=kind, caller=RAW_UID.to_pb())
    if args:
        s.args.value = args
    return wp.envelope("start", s, cid, wp.SIDE_CALLER, to_actor=to_actor)


# ------------------------------------------------------------------ tests

TESTS = []


def test(fn):
    TESTS.append((fn.__name__[len("test_"):], fn))
    return fn


@test
def test_golden_frames():
    """The peer's encoders give the bytes of docs/protocol.md §11."""
    gdir = ARGS.golden_dir
    if not os.path.isdir(gdir):
        raise AssertionError(f"no golden dir {gdir} (pass --golden-dir)")
    frames = {}
    for name in os.listdir(gdir):
        if not name.endswith(".hex"):
            continue
        with open(os.path.join(gdir, name)) as f:
            lines = [ln for ln in f.read().splitlines()
                     if ln.strip() and not ln.startswith("#")]
        frames[name[:-4]] = [bytes.fromhex(ln[1:].replace(" ", ""))
                             for ln in lines]
    check(frames, "no golden transcripts")
    # Every frame is well-formed, except the first of protocol_error,
    # which breaks rule 2 with exactly the message weft sends.
    for t, fs in frames.items():
        for i, fr in enumerate(fs):
            env, problem = wp.parse_envelope(fr[4:])
            if (t, i) == ("protocol_error", 0):
                check(problem == "no message, or an unknown message kind",
                      f"protocol_error[0]: {problem!r}")
            else:
                check(problem is None, f"{t}[{i}]: {problem}")
    worker = wp.Uid("worker", uuid.UUID(
        "2b8e47f0-15a6-4c09-b37d-601e9258af44").bytes)
    root = wp.Uid("root", uuid.UUID(
        "6f1c3a52-9d04-4b7e-8a21-5e90c4330bd1").bytes)
    E, enc = wp.envelope, wp.encode_frame

    def dialer_hello(fr):
        return pb.Envelope.FromString(fr[4:]).hello

    # §11.3 / §11.4: the refusals, with judge_hello's own texts.
    kind, msg = wp.judge_hello(dialer_hello(frames["refused_version"][0]),
                               from_dialer=True, token=b"s3cret")
    check(enc(E("error", wp.make_error(kind, msg, root, relay=False)))
          == frames["refused_version"][1], "refused_version frame")
    kind, msg = wp.judge_hello(dialer_hello(frames["refused_auth"][0]),
                               from_dialer=True, token=b"s3cret")
    check(enc(E("error", wp.make_error(kind, msg, root, relay=False)))
          == frames["refused_auth"][1], "refused_auth frame")
    check(wp.judge_hello(dialer_hello(frames["handshake"][0]),
                         from_dialer=True, token=b"s3cret") is None,
          "the golden hello is refused")
    # §11.9: the protocol error, bad_msg = the offending envelope.
    bad = frames["protocol_error"][0][4:]
    _, problem = wp.parse_envelope(bad)
    check(enc(E("error", wp.make_error(wp.PROTOCOL, problem, root,
                                       relay=False, bad_msg=bad)))
          == frames["protocol_error"][1], "protocol_error frame")
    # §11.6: NO_SUCH_FUNCTION as the callee sends it.
    check(enc(E("error", wp.make_error(
        wp.NO_SUCH_FUNCTION, "no function 'nope:missing' is exposed",
        worker), 3, wp.SIDE_CALLEE)) == frames["run"][4], "run[4] frame")
    # §11.5: a context's messages.
    ctx = frames["context"]
    st = pb.Start(func="demo:echo", kind=wp.CONTEXT, caller=root.to_pb())
    st.args.value = b"hi"
    want = [E("start", st, 1, wp.SIDE_CALLER),
            E("start_ack", pb.StartAck(kind=wp.CONTEXT), 1, wp.SIDE_CALLEE),
            E("started", wp._with_pld(pb.Started, b"ready"), 1,
              wp.SIDE_CALLEE),
            E("yield_item", wp._with_pld(pb.Yield, b"ping-1"), 1,
              wp.SIDE_CALLER),
            E("yield_item", wp._with_pld(pb.Yield, b"ping-1"), 1,
              wp.SIDE_CALLEE),
            E("stop", pb.Stop(), 1, wp.SIDE_CALLER),
            E("stop", pb.Stop(), 1, wp.SIDE_CALLEE),
            E("return_value", wp._with_pld(pb.Return, b"1 item"), 1,
              wp.SIDE_CALLEE)]
    for i, w in enumerate(want):
        check(enc(w) == ctx[i], f"context[{i}] frame")
    check(enc(E("started", wp._with_pld(pb.Started, b""), 4,
                wp.SIDE_CALLEE)) == frames["cancel"][2], "cancel[2] frame")
    check(enc(E("cancel_ack", pb.CancelAck(), 4, wp.SIDE_CALLEE))
          == frames["cancel"][5], "cancel[5] frame")


@test
def test_client_checks():
    """Every default client check passes against serve's functions."""
    with Server(token=b"sekrit") as srv:
        lines = []
        ok = wp.Checks("127.0.0.1", srv.port, token=b"sekrit", ns="py",
                       timeout=TIMEOUT).run(["all"], out=lines.append)
        check(ok and len(lines) == len(wp.Checks.DEFAULT),
              "\n".join(lines))
        check(all(ln.startswith("PASS ") for ln in lines), "\n".join(lines))
        # The refusing end reports its refusals too (§5.1 step 6); it
        # records them before sending the error.
        kinds = sorted(r.kind for r in srv.peer.refusals)
        check(kinds == [wp.VERSION_MISMATCH, wp.AUTH_FAILED],
              f"refusals recorded: {kinds}")


@test
def test_cancel_actor():
    """§7.2: contexts end with ctxc(canceller = requester), cancel_ack,
    then the target process closes its connections and exits."""
    with Server() as srv:
        lines = []
        ok = wp.Checks("127.0.0.1", srv.port, ns="py",
                       timeout=TIMEOUT).run(["cancel_actor"],
                                            out=lines.append)
        check(ok, "\n".join(lines))
        check(srv.peer.exited.wait(TIMEOUT), "the peer did not exit")


@test
def test_cancel_actor_third_party():
    """A context of client A is cancelled by client B's cancel_actor: its
    ctxc names B as canceller and is not absorbed by A."""
    with Server() as srv:
        a, ca = srv.client("a")
        ctx, _ = ca.open_context("py:sleep_forever", timeout=TIMEOUT)
        b, cb = srv.client("b")
        check(cb.cancel_actor(timeout=TIMEOUT), "no ack")
        e = raises(wp.RemoteError, ctx.result, TIMEOUT)
        check(e.kind == wp.CONTEXT_CANCELLED and e.canceller == b.uid,
              f"{e}")
        check(not ctx.cancel_acked)
        check(ca.closed.wait(TIMEOUT) and cb.closed.wait(TIMEOUT),
              "connections stayed open")


@test
def test_symmetric_same_cid():
    """Both ends open a context with the same cid at once; side keeps them
    apart (§3); the acceptor calls the dialer."""
    with Server(cid_start=1000) as srv:
        cli = wp.Peer("dialer", wp.standard_functions("cli"), cid_start=1000)
        conn = cli.connect("127.0.0.1", srv.port)
        back = srv.peer.wait_for_connection("dialer", TIMEOUT)
        c1, f1 = conn.open_context("py:stream_echo", timeout=TIMEOUT)
        c2, f2 = back.open_context("cli:stream_echo", timeout=TIMEOUT)
        check(c1.cid == c2.cid == 1000, f"cids {c1.cid} {c2.cid}")
        check(f1 == f2 == b"ready")
        for i in range(20):
            c1.send(b"a%d" % i)
            c2.send(b"b%d" % i)
            check(c1.recv(TIMEOUT) == b"a%d" % i)
            check(c2.recv(TIMEOUT) == b"b%d" % i)
        c1.stop()
        c2.stop()
        check(c1.result(TIMEOUT) == b"done:20")
        check(c2.result(TIMEOUT) == b"done:20")
        check(back.run("cli:add", struct.pack("<qq", 2, 3),
                       timeout=TIMEOUT) == struct.pack("<q", 5))
        conn.close()


@test
def test_relay_through_callee():
    """A callee failing with an error from its own call relays it: kind
    REMOTE, src kept, relay_path [origin, relayer] (§8.1)."""
    with Server() as srv:
        cli = wp.Peer("dialer", wp.standard_functions("cli"))
        conn = cli.connect("127.0.0.1", srv.port)
        e = raises(wp.RemoteError, conn.run, "t:relay", b"cli:fail",
                   timeout=TIMEOUT)
        check(e.kind == wp.REMOTE and e.boxed_type == "RemoteActorError",
              f"{e}")
        check(e.src_type == "ValueError" and e.src_uid == cli.uid, f"{e}")
        check(e.relay_path == [cli.uid, srv.peer.uid],
              f"relay_path {e.relay_path}")
        check("relayed by actor" in e.traceback)
        conn.close()


@test
def test_callee_misuse_and_self_cancel():
    with Server() as srv:
        _, conn = srv.client()
        ctx, first = conn.open_context("t:started_twice", timeout=TIMEOUT)
        check(first == b"1")
        e = raises(wp.RemoteError, ctx.result, TIMEOUT)
        check(e.kind == wp.RUNTIME and e.boxed_type == "RuntimeError",
              f"{e}")
        # sem §4.1: a CONTEXT callee returning without started.
        raises(wp.MessagingError, conn.open_context, "t:no_started",
               timeout=TIMEOUT)
        # sem §4.5: a self-cancel names the callee; never absorbed.
        ctx, _ = conn.open_context("t:self_cancel", timeout=TIMEOUT)
        e = raises(wp.RemoteError, ctx.result, TIMEOUT)
        check(e.kind == wp.CONTEXT_CANCELLED and
              e.canceller == srv.peer.uid and "itself" in e.message, f"{e}")
        conn.close()


@test
def test_cancel_after_result():
    """sem §4.9: cancel after the final sends nothing; the result stands."""
    with Server() as srv:
        _, conn = srv.client()
        ctx, first = conn.open_context("py:echo", b"v", kind=wp.RUN,
                                       timeout=TIMEOUT)
        check(first is None)
        check(ctx.result(TIMEOUT) == b"v")
        check(ctx.cancel() is False and not ctx.cancel_acked)
        check(ctx.result(TIMEOUT) == b"v")
        conn.close()


@test
def test_allow_overruns():
    """A caller that allows overruns with a big buffer gets every item of
    the flood, in order, and no report is sent."""
    with Server() as srv:
        _, conn = srv.client()
        ctx, _ = conn.open_context("py:flood", allow_overruns=True,
                                   msg_buffer_size=wp.FLOOD_ITEMS,
                                   timeout=TIMEOUT)
        for i in range(wp.FLOOD_ITEMS):
            check(ctx.recv(TIMEOUT) == struct.pack("<q", i), f"item {i}")
        ctx.stop()
        check(ctx.result(TIMEOUT) == b"flooded")
        check(ctx.overruns_reported == 0 and ctx.dropped == 0)
        conn.close()


@test
def test_frame_limits_local():
    """§2.1: an envelope over the peer's limit is refused locally and the
    connection goes on; 1 MiB passes when the peer accepts it."""
    with Server(max_frame_size=65536) as srv:
        _, conn = srv.client()
        raises(wp.MessageTooLarge, conn.run, "py:echo", b"x" * 70000)
        check(conn.run("py:echo", b"small", timeout=TIMEOUT) == b"small")
        # The limits are per direction: the client announced 16 MiB, so
        # the server may send it 70 KB.
        check(len(conn.run("t:big_return", timeout=TIMEOUT)) == 70000)
        conn.close()


@test
def test_probe():
    """§5.2 is_probe: identity, then bye; no contexts on it."""
    with Server() as srv:
        cli = wp.Peer("prober")
        h = cli.probe("127.0.0.1", srv.port)
        check(wp.Uid.from_pb(h.uid) == srv.peer.uid)


@test
def test_handshake_refusals_acceptor():
    """§5.3, acceptor column, through a raw dialer."""
    with Server(token=b"tok") as srv:
        cases = [
            (dict(protocol_version=2, auth_token=b"tok"),
             wp.VERSION_MISMATCH),
            (dict(uid=wp.Uid("", b"\1" * 16), auth_token=b"tok"),
             wp.HANDSHAKE),
            (dict(uid=wp.Uid("x", bytes(16)), auth_token=b"tok"),
             wp.HANDSHAKE),
            (dict(max_frame_size=1000, auth_token=b"tok"), wp.HANDSHAKE),
            (dict(auth_token=b"tok2"), wp.AUTH_FAILED),
            (dict(), wp.AUTH_FAILED),
        ]
        for fields, kind in cases:
            raw = Raw.dial(srv.port)
            raw.send(raw.hello(**fields))
            err = expect_closed_with(raw, kind)
            check(err.message and err.src_uid.name == "pyserver", f"{err}")
            raw.close()
        # The version check comes first (§5.3 order).
        raw = Raw.dial(srv.port)
        raw.send(raw.hello(protocol_version=3, max_frame_size=5))
        expect_closed_with(raw, wp.VERSION_MISMATCH)
        raw.close()


@test
def test_handshake_bad_first_frames():
    with Server() as srv:
        # §2: text, or a first header over 64 KiB: closed without a word.
        raw = Raw.dial(srv.port)
        raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        raw.expect_silent_close()
        raw = Raw.dial(srv.port)
        raw.send_bytes(struct.pack(">I", 65537) + b"\0" * 16)
        raw.expect_silent_close()
        raw = Raw.dial(srv.port)
        raw.send_bytes(struct.pack(">I", 0))
        raw.expect_silent_close()
        # §5.1 step 3: a good frame that is not hello: error{PROTOCOL}.
        raw = Raw.dial(srv.port)
        raw.send(wp.envelope("ping", pb.Ping(nonce=1)))
        expect_closed_with(raw, wp.PROTOCOL)
        # Undecodable bytes.
        raw = Raw.dial(srv.port)
        raw.send_body(b"\xff\xff\xff")
        expect_closed_with(raw, wp.PROTOCOL)


@test
def test_handshake_refusals_dialer():
    """§5.3, dialer column, and refusals received: both ends report."""
    rs = RawServer()
    try:
        cli = wp.Peer("dialer")
        # The acceptor's hello may not carry a token.
        job = Spawn(cli.connect, "127.0.0.1", rs.port)
        raw = rs.accept()
        raw.read_kind("hello")
        raw.send(raw.hello(auth_token=b"x"))
        expect_closed_with(raw, wp.HANDSHAKE)
        raw.close()  # as a refused dialer would; the refuser waits for it
        e = raises(wp.HandshakeRefused, job.result)
        check(e.kind == wp.HANDSHAKE and not e.by_peer, f"{e}")
        # A refusal received: by_peer, with the peer's kind and message.
        job = Spawn(cli.connect, "127.0.0.1", rs.port)
        raw = rs.accept()
        raw.read_kind("hello")
        raw.send(wp.envelope("error", wp.make_error(
            wp.AUTH_FAILED, "authentication failed", RAW_UID, relay=False)))
        raw.close()
        e = raises(wp.HandshakeRefused, job.result)
        check(e.kind == wp.AUTH_FAILED and e.by_peer and
              e.message == "authentication failed", f"{e}")
        # Closed before any hello.
        job = Spawn(cli.connect, "127.0.0.1", rs.port)
        rs.accept().close()
        raises(wp.TransportClosed, job.result)
        # An acceptor that does not speak weft.
        job = Spawn(cli.connect, "127.0.0.1", rs.port)
        raw = rs.accept()
        raw.send_bytes(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        raises(wp.NotWeft, job.result)
        raw.close()
    finally:
        rs.close()


@test
def test_protocol_errors_after_handshake():
    """§8.3: error{PROTOCOL or FRAME_TOO_LARGE} on cid 0, then close."""
    with Server(max_frame_size=65536) as srv:
        def session():
            raw = Raw.dial(srv.port)
            raw.handshake()
            return raw
        raw = session()
        raw.send_bytes(struct.pack(">I", 0))
        expect_closed_with(raw, wp.PROTOCOL)
        raw = session()
        raw.send_bytes(struct.pack(">I", 65537))
        expect_closed_with(raw, wp.FRAME_TOO_LARGE)
        # §11.9: an unknown message kind; bad_msg is the envelope.
        raw = session()
        key = 99 << 3 | 2  # field 99, length-delimited: no v1 message
        body = (pb.Envelope(cid=1, side=wp.SIDE_CALLER).SerializeToString()
                + bytes([key & 0x7f | 0x80, key >> 7, 0]))
        raw.send_body(body)
        err = expect_closed_with(raw, wp.PROTOCOL)
        check(err.bad_msg == body and
              err.message == "no message, or an unknown message kind",
              f"{err}")
        bad_envs = [
            wp.envelope("yield_item", pb.Yield(), 0, 0),          # rule 3
            wp.envelope("ping", pb.Ping(), 5, wp.SIDE_CALLER),    # rule 4
            wp.envelope("started", pb.Started(), 5, wp.SIDE_CALLER),
            wp.envelope("start", pb.Start(func="py:echo", kind=wp.RUN),
                        5, wp.SIDE_CALLER),                       # rule 5
            wp.envelope("error", pb.Error(kind=wp.PROTOCOL), 5,
                        wp.SIDE_CALLER),                          # rule 6
            wp.envelope("hello", raw.hello().hello),              # state
            wp.envelope("spawn_spec", pb.SpawnSpec()),
        ]
        for env in bad_envs:
            raw = session()
            raw.send(env)
            expect_closed_with(raw, wp.PROTOCOL)
        # State rules of a served context (§6.2).
        raw = session()
        raw.send(start_env(7, "py:sleep_forever", wp.CONTEXT))
        raw.read_kind("start_ack")
        raw.read_kind("started")
        raw.send(start_env(7, "py:sleep_forever", wp.CONTEXT))
        expect_closed_with(raw, wp.PROTOCOL)
        raw = session()
        raw.send(start_env(8, "py:echo", wp.RUN))
        raw.read_kind("start_ack")
        raw.read_kind("return_value")
        # A late message for an ended context is only dropped (§6.2).
        raw.send(wp.envelope("stop", pb.Stop(), 8, wp.SIDE_CALLER))
        raw.send(start_env(9, "py:count_to", wp.CONTEXT,
                           struct.pack("<q", 0)))
        raw.read_kind("start_ack")
        raw.read_kind("started")
        raw.read_kind("stop")
        raw.read_kind("return_value")
        raw.send(wp.envelope("ping", pb.Ping(nonce=3)))
        check(raw.read_kind("pong").pong.nonce == 3, "connection died")
        raw.close()


@test
def test_served_control_messages():
    """§6.2 and §7: acks, refusals and replies a server owes."""
    with Server() as srv:
        raw = Raw.dial(srv.port)
        raw.handshake()
        # cancel_context for an unknown cid: cancel_ack alone.
        raw.send(wp.envelope("cancel_context", pb.CancelContext(
            canceller=RAW_UID.to_pb()), 42, wp.SIDE_CALLER))
        ack = raw.read_kind("cancel_ack")
        check(ack.cid == 42 and ack.side == wp.SIDE_CALLEE)
        # A registry request to a non-registrar: error on the same cid.
        raw.send(wp.envelope("find_actor", pb.FindActor(name="x"), 43,
                             wp.SIDE_CALLER))
        e = raw.read_kind("error")
        check(e.cid == 43 and e.error.kind == wp.NO_SUCH_FUNCTION, f"{e}")
        # Unknown actor id, unknown function, unsupported kind: error
        # instead of start_ack, addressed back (§3).
        for cid, func, kind, to in ((44, "py:echo", wp.RUN, 7),
                                    (45, "py:nope", wp.RUN, 0),
                                    (46, "py:sleep_forever", wp.RUN, 0)):
            raw.send(start_env(cid, func, kind, to_actor=to))
            e = raw.read_kind("error")
            check(e.cid == cid and e.side == wp.SIDE_CALLEE and
                  e.error.kind == wp.NO_SUCH_FUNCTION and
                  e.from_actor == to, f"{e}")
        # A RUN call: start_ack echoing the kind, then the return.
        raw.send(start_env(47, "py:echo", wp.RUN, b"abc"))
        check(raw.read_kind("start_ack").start_ack.kind == wp.RUN)
        r = raw.read_kind("return_value")
        check(r.cid == 47 and r.return_value.pld.value == b"abc")
        # cancel_context on a running context: final ctxc, then the ack.
        raw.send(start_env(48, "py:sleep_forever", wp.CONTEXT))
        raw.read_kind("start_ack")
        raw.read_kind("started")
        raw.send(wp.envelope("cancel_context", pb.CancelContext(
            canceller=RAW_UID.to_pb(), reason="t"), 48, wp.SIDE_CALLER))
        raw.send(wp.envelope("cancel_context", pb.CancelContext(
            canceller=wp.Uid.new("other").to_pb()), 48, wp.SIDE_CALLER))
        e = raw.read_kind("error").error
        check(e.kind == wp.CONTEXT_CANCELLED and
              wp.Uid.from_pb(e.canceller) == RAW_UID and
              "parent-side" in e.message, f"{e}")
        raw.read_kind("cancel_ack")
        raw.read_kind("cancel_ack")  # one per cancel_context (§7.1)
        # A caller's overrun report cancels the task; its final relays it.
        raw.send(start_env(49, "py:sleep_forever", wp.CONTEXT))
        raw.read_kind("start_ack")
        raw.read_kind("started")
        raw.send(wp.envelope("error", wp.make_error(
            wp.STREAM_OVERRUN, "overrun", RAW_UID, sender=srv.peer.uid),
            49, wp.SIDE_CALLER))
        e = raw.read_kind("error").error
        check(e.kind == wp.REMOTE and e.src_type == "StreamOverrun" and
              len(e.relay_path) == 2, f"{e}")
        # An error on cid 0 below 100 keeps the connection (§8.1).
        raw.send(wp.envelope("error", wp.make_error(wp.APP, "meh", RAW_UID)))
        raw.send(wp.envelope("ping", pb.Ping(nonce=77)))
        check(raw.read_kind("pong").pong.nonce == 77)
        raw.close()


@test
def test_caller_state_rules():
    """§6.3 from the caller: illegal callee messages are protocol errors;
    late ones for a forgotten cid are dropped."""
    rs = RawServer()
    cli = wp.Peer("dialer")

    def session():
        job = Spawn(cli.connect, "127.0.0.1", rs.port)
        raw = rs.accept()
        raw.read_kind("hello")
        raw.send(raw.hello())
        return raw, job.result()
    try:
        # started before start_ack.
        raw, conn = session()
        job = Spawn(conn.open_context, "x:f", timeout=TIMEOUT)
        st = raw.read_kind("start")
        check(st.start.caller.name == "dialer")
        raw.send(wp.envelope("started", pb.Started(), st.cid,
                             wp.SIDE_CALLEE))
        expect_closed_with(raw, wp.PROTOCOL)
        raises(wp.TransportClosed, job.result)
        # cancel_ack before the final.
        raw, conn = session()
        job = Spawn(conn.open_context, "x:f", timeout=TIMEOUT)
        st = raw.read_kind("start")
        raw.send(wp.envelope("start_ack", pb.StartAck(kind=wp.CONTEXT),
                             st.cid, wp.SIDE_CALLEE))
        raw.send(wp.envelope("started", pb.Started(), st.cid,
                             wp.SIDE_CALLEE))
        ctx, _ = job.result()
        job = Spawn(ctx.cancel, timeout=TIMEOUT)
        raw.read_kind("cancel_context")
        raw.send(wp.envelope("cancel_ack", pb.CancelAck(), st.cid,
                             wp.SIDE_CALLEE))
        expect_closed_with(raw, wp.PROTOCOL)
        check(job.result() is False)
        check(isinstance(ctx.remote_error, wp.TransportClosed))
        # start_ack with another kind; a late message is only dropped.
        raw, conn = session()
        job = Spawn(conn.run, "x:f", timeout=TIMEOUT)
        st = raw.read_kind("start")
        raw.send(wp.envelope("start_ack", pb.StartAck(kind=wp.RUN),
                             st.cid, wp.SIDE_CALLEE))
        raw.send(wp.envelope("return_value", wp._with_pld(pb.Return, b"r"),
                             st.cid, wp.SIDE_CALLEE))
        check(job.result() == b"r")
        raw.send(wp.envelope("stop", pb.Stop(), st.cid, wp.SIDE_CALLEE))
        job = Spawn(conn.ping, TIMEOUT)  # still alive after the late stop
        nonce = raw.read_kind("ping").ping.nonce
        raw.send(wp.envelope("pong", pb.Pong(nonce=nonce)))
        check(job.result() >= 0)
        job = Spawn(conn.run, "x:g", timeout=TIMEOUT)
        st = raw.read_kind("start")
        raw.send(wp.envelope("start_ack", pb.StartAck(kind=wp.CONTEXT),
                             st.cid, wp.SIDE_CALLEE))
        expect_closed_with(raw, wp.PROTOCOL)
        raises(wp.TransportClosed, job.result)
        # The peer closing with error{PROTOCOL}: no reply, calls fail.
        raw, conn = session()
        job = Spawn(conn.open_context, "x:f", timeout=TIMEOUT)
        raw.read_kind("start")
        raw.send(wp.envelope("error", wp.make_error(
            wp.PROTOCOL, "you broke it", RAW_UID, relay=False)))
        raw.s.shutdown(socket.SHUT_WR)
        check(raw.rest() == [], "answered a protocol error")
        e = raises(wp.TransportClosed, job.result)
        check("you broke it" in e.message, e.message)
        # Vanishing without bye (§6.5): calls fail, nothing hangs.
        raw, conn = session()
        job = Spawn(conn.open_context, "x:f", timeout=TIMEOUT)
        raw.read_kind("start")
        raw.close()
        e = raises(wp.TransportClosed, job.result)
        check("without bye" in e.message, e.message)
    finally:
        rs.close()


@test
def test_heartbeat():
    """§7.3: an idle end pings within its interval; a silent peer is dead
    after 3 x its interval; two live peers stay up."""
    with Server(heartbeat_ms=50) as srv:
        raw = Raw.dial(srv.port)
        h = raw.handshake(heartbeat_interval_ms=60)
        check(h.hello.heartbeat_interval_ms == 50)
        t0 = time.monotonic()
        pings = 0
        while True:  # never answer, never send
            try:
                body = raw.r.read(1 << 20, time.monotonic() + TIMEOUT)
            except ConnectionResetError:
                body = None
            if body is None:
                break
            env = pb.Envelope.FromString(body)
            check(env.WhichOneof("msg") == "ping", f"{env}")
            pings += 1
        dt = time.monotonic() - t0
        check(pings >= 2, f"{pings} pings")
        check(0.15 <= dt < 3.0, f"closed after {dt:.3f} s, not ~0.18 s")
        # Two peers at 50 ms stay connected through 10 intervals of quiet.
        cli = wp.Peer("idle", heartbeat_ms=50)
        conn = cli.connect("127.0.0.1", srv.port)
        back = srv.peer.wait_for_connection("idle", TIMEOUT)
        check(not conn.closed.wait(0.5), "an idle live connection died")
        # Whichever end pings first keeps the other busy answering (a pong
        # is a frame too), so count both ends.
        pings = conn.pings_sent + back.pings_sent
        pongs = conn.pongs_received + back.pongs_received
        check(pings >= 5 and pongs >= 5, f"{pings} pings, {pongs} pongs")
        check(conn.ping(TIMEOUT) < 1.0)
        conn.close()


@test
def test_bye_and_connection_loss():
    """§7.4 / §6.5: on bye or a vanished peer, every context ends at once:
    the callee's task is cancelled, the caller's calls fail."""
    with Server() as srv:
        # The caller says bye: the served task is cancelled.
        _, conn = srv.client("byer")
        ctx, _ = conn.open_context("t:wait_cancel", b"bye",
                                   timeout=TIMEOUT)
        back = srv.peer.wait_for_connection("byer", TIMEOUT)
        conn.close("bye-test")
        check(EVENTS["bye"].wait(TIMEOUT), "the callee was not cancelled")
        check(back.closed.wait(TIMEOUT) and back.bye_reason == "bye-test")
        e = raises(wp.TransportClosed, ctx.result, TIMEOUT)
        check("closed by this end" in e.message, e.message)
        # A raw caller vanishes without bye.
        raw = Raw.dial(srv.port)
        raw.handshake()
        raw.send(start_env(5, "t:wait_cancel", wp.CONTEXT, b"vanish"))
        raw.read_kind("start_ack")
        raw.read_kind("started")
        raw.close()
        check(EVENTS["vanish"].wait(TIMEOUT), "the callee was not cancelled")
        # The server says bye: the caller's waiting call fails.
        _, conn = srv.client("waiter")
        ctx, _ = conn.open_context("py:sleep_forever", timeout=TIMEOUT)
        job = Spawn(ctx.result, TIMEOUT)
    e = raises(wp.TransportClosed, job.result)
    check("said bye" in e.message and e.src_uid == srv.peer.uid, f"{e}")
    check(conn.closed.wait(TIMEOUT))


@test
def test_cli():
    """serve and client as subprocesses, as the C++ tests run them."""
    py = sys.executable
    peer = os.path.join(HERE, "weft_peer.py")
    pbdir = ["--pb2-dir", ARGS.pb2_dir] if ARGS.pb2_dir else []
    serve = subprocess.Popen(
        [py, peer, "serve", *pbdir, "--listen", "127.0.0.1:0",
         "--token", "t0k"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()
        m = re.fullmatch(r"LISTENING (\d+)\n", line)
        check(m, f"serve printed {line!r}")
        port = m.group(1)
        cl = subprocess.run(
            [py, peer, "client", *pbdir, "--connect", f"127.0.0.1:{port}",
             "--token", "t0k", "--ns", "py", "--check", "echo", "stream",
             "cancel", "badtoken"], capture_output=True, text=True,
            timeout=TEST_TIMEOUT)
        check(cl.returncode == 0 and cl.stdout.split("\n")[:4] ==
              ["PASS echo", "PASS stream", "PASS cancel", "PASS badtoken"],
              f"rc {cl.returncode}:\n{cl.stdout}{cl.stderr}")
        cl = subprocess.run(
            [py, peer, "client", *pbdir, "--connect", f"127.0.0.1:{port}",
             "--token", "t0k", "--ns", "nope", "--check", "echo"],
            capture_output=True, text=True, timeout=TEST_TIMEOUT)
        check(cl.returncode == 1 and cl.stdout.startswith("FAIL echo: "),
              f"rc {cl.returncode}:\n{cl.stdout}{cl.stderr}")
        serve.stdin.close()  # stdin EOF: serve exits
        check(serve.wait(TIMEOUT) == 0, f"serve exit {serve.returncode}")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    serve = subprocess.Popen(
        [py, peer, "serve", *pbdir, "--listen", "127.0.0.1:0",
         "--ignore-stdin"], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        check(serve.stdout.readline().startswith("LISTENING "))
        serve.send_signal(signal.SIGTERM)
        check(serve.wait(TIMEOUT) == 0, f"serve exit {serve.returncode}")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()


# ------------------------------------------------------------------ main

def main():
    global ARGS, wp, pb, RAW_UID
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pb2-dir", default=os.environ.get("WEFT_PB2_DIR"),
                    help="directory holding weft_pb2.py")
    ap.add_argument("--golden-dir", default=os.path.normpath(
        os.path.join(HERE, "..", "proto", "golden")))
    ap.add_argument("-k", dest="only", default="",
                    help="run tests whose name contains this")
    ap.add_argument("-v", "--verbose", action="count", default=0)
    ARGS = ap.parse_args()
    import logging
    logging.basicConfig(
        stream=sys.stderr, format="%(asctime)s %(threadName)s: %(message)s",
        level=(logging.DEBUG if ARGS.verbose > 1 else
               logging.INFO if ARGS.verbose else logging.CRITICAL))
    import weft_peer
    wp = weft_peer
    pb = wp.load_pb2(ARGS.pb2_dir)
    RAW_UID = wp.Uid("rawpeer", uuid.UUID(
        "6f1c3a52-9d04-4b7e-8a21-5e90c4330bd1").bytes)

    failed = 0
    t_all = time.monotonic()
    for name, fn in TESTS:
        if ARGS.only not in name:
            continue
        t0 = time.monotonic()
        job = Spawn(fn)
        job.t.join(TEST_TIMEOUT)
        dt = time.monotonic() - t0
        if job.t.is_alive():
            failed += 1
            print(f"FAIL  {name}: still running after {TEST_TIMEOUT} s",
                  flush=True)
            continue
        err = job.box.get("error")
        if err is None:
            print(f"ok    {name} ({dt:.2f} s)", flush=True)
        else:
            failed += 1
            print(f"FAIL  {name} ({dt:.2f} s): {type(err).__name__}: {err}",
                  flush=True)
            if ARGS.verbose:
                traceback.print_exception(type(err), err, err.__traceback__)
    print(f"{'FAILED' if failed else 'passed'}: {failed} failed, "
          f"{time.monotonic() - t_all:.1f} s", flush=True)
    # Daemon threads of still-running tests must not keep us alive.
    sys.stdout.flush()
    os._exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""weft_peer: a reference peer for the weft wire protocol, version 1.

This is a small, complete implementation of docs/protocol.md in Python
(standard library + google.protobuf only), written to be read: each rule it
follows names its section (§n of docs/protocol.md, "sem §n" of
docs/semantics.md). It serves two purposes:

  - a library: Peer (one process hosting one actor, wire actor id 0),
    Connection (one TCP connection after the handshake), CallerContext and
    CalleeContext (the two ends of a context);
  - a CLI used by weft's interop tests:

      weft_peer.py serve  --listen HOST:PORT [--token T] [--name N]
      weft_peer.py client --connect HOST:PORT [--token T] --check NAME...

    See README.md next to this file for the functions `serve` exposes and
    the contract the `client` checks expect from the other side.

The generated classes come from <build>/proto/py/weft_pb2.py: put that
directory on sys.path, or in the environment variable WEFT_PB2_DIR, or pass
--pb2-dir. Run with a Python that has google.protobuf (Debian's
/usr/bin/python3 with python3-protobuf).

Threads: each Connection has a reader thread (parses and dispatches frames),
a writer thread (the only one that writes the socket, so a slow peer never
blocks the reader) and a heartbeat thread. Each served context runs its
function in a thread of its own. All state of one connection and of its
contexts is guarded by that connection's lock; blocking calls wait on
conditions of that lock, always with a timeout.
"""

from __future__ import annotations

import argparse
import collections
import hmac
import itertools
import logging
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback as traceback_mod
import uuid as uuid_mod

log = logging.getLogger("weft_peer")

pb = None  # the generated weft_pb2 module (load_pb2)


def load_pb2(pb2_dir=None):
    """Imports weft_pb2 from pb2_dir, $WEFT_PB2_DIR or sys.path."""
    global pb
    if pb is not None:
        return pb
    for d in (pb2_dir, os.environ.get("WEFT_PB2_DIR")):
        if d and d not in sys.path:
            sys.path.insert(0, d)
    try:
        import weft_pb2
    except ImportError as e:
        raise ImportError(
            f"cannot import weft_pb2 ({e}). Build the target weft_py and "
            "pass --pb2-dir <build>/proto/py (or set WEFT_PB2_DIR); run "
            "with /usr/bin/python3, which has google.protobuf") from e
    # The numbers below are normative (proto/weft.proto); make sure the
    # generated module agrees before using them.
    assert (weft_pb2.SIDE_CALLER, weft_pb2.SIDE_CALLEE) == (1, 2)
    assert (weft_pb2.FUNC_KIND_RUN, weft_pb2.FUNC_KIND_CONTEXT) == (1, 2)
    assert weft_pb2.ERROR_KIND_FRAME_TOO_LARGE == 104
    pb = weft_pb2
    return pb


try:  # importable without the classes; Peer() says what is missing
    load_pb2()
except ImportError:
    pass


def _need_pb():
    if pb is None:
        load_pb2()


# ------------------------------------------------------------------ constants

PROTOCOL_VERSION = 1
HANDSHAKE_LIMIT = 64 * 1024          # §2.1: before the peer's hello
DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # §2.1: max_frame_size 0
MAX_FRAME_CAP = 1 << 30               # §2.1: larger announced values
DEFAULT_HEARTBEAT_MS = 5000           # §5.2: heartbeat_interval_ms 0
FIRST_FRAME_TIMEOUT = 10.0            # §5.1 step 2
CONNECT_TIMEOUT = 5.0
DEFAULT_TIMEOUT = 30.0                # bound on every blocking call here
CANCEL_TIMEOUT = 2.0                  # §6.3 (weft waits 0.616 s; CI is slower)
CANCEL_ACTOR_GRACE = 2.0              # how long tasks get to end on cancel_actor
QUEUE_SIZE = 64                       # sem §5.3: msg_buffer_size default
OVERFLOW_MAX = 616                    # sem §5.3: allow_overruns bound
SEND_QUEUE_MAX = 4 * 1024 * 1024      # stream sends wait beyond this
LINGER = 2.0                          # wait for the peer's EOF when closing
RECV_CHUNK = 256 * 1024

SIDE_UNSPECIFIED, SIDE_CALLER, SIDE_CALLEE = 0, 1, 2
RUN, CONTEXT = 1, 2

# ErrorKind (§8.2)
UNSPECIFIED, APP, CONTEXT_CANCELLED, STREAM_OVERRUN, REMOTE = 0, 1, 2, 3, 4
NO_SUCH_FUNCTION, RUNTIME, CANCELLED, INTERRUPT = 5, 6, 7, 8
TRANSPORT_CLOSED, GROUP = 9, 10
VERSION_MISMATCH, AUTH_FAILED, HANDSHAKE, PROTOCOL, FRAME_TOO_LARGE = (
    100, 101, 102, 103, 104)

KIND_NAMES = {
    UNSPECIFIED: "UNSPECIFIED", APP: "APP",
    CONTEXT_CANCELLED: "CONTEXT_CANCELLED", STREAM_OVERRUN: "STREAM_OVERRUN",
    REMOTE: "REMOTE", NO_SUCH_FUNCTION: "NO_SUCH_FUNCTION",
    RUNTIME: "RUNTIME", CANCELLED: "CANCELLED", INTERRUPT: "INTERRUPT",
    TRANSPORT_CLOSED: "TRANSPORT_CLOSED", GROUP: "GROUP",
    VERSION_MISMATCH: "VERSION_MISMATCH", AUTH_FAILED: "AUTH_FAILED",
    HANDSHAKE: "HANDSHAKE", PROTOCOL: "PROTOCOL",
    FRAME_TOO_LARGE: "FRAME_TOO_LARGE",
}

# boxed_type / src_type of a fresh error of each kind (§8.2). APP errors
# carry the application's own type name instead. The connection-level names
# are the ones of the golden transcripts (§11.3, §11.4, §11.9).
TYPE_NAMES = {
    APP: "Exception", CONTEXT_CANCELLED: "ContextCancelled",
    STREAM_OVERRUN: "StreamOverrun", REMOTE: "RemoteActorError",
    NO_SUCH_FUNCTION: "NoSuchFunction", RUNTIME: "RuntimeError",
    CANCELLED: "Cancelled", INTERRUPT: "KeyboardInterrupt",
    TRANSPORT_CLOSED: "TransportClosed", GROUP: "ExceptionGroup",
    VERSION_MISMATCH: "HandshakeRefused", AUTH_FAILED: "HandshakeRefused",
    HANDSHAKE: "HandshakeRefused", PROTOCOL: "ProtocolError",
    FRAME_TOO_LARGE: "ProtocolError",
}


def kind_name(kind):
    return KIND_NAMES.get(kind, f"kind {kind}")


def normalize_kind(kind):
    """§8.2: unknown kinds below 100 read as APP (0 too), 100 and up as
    PROTOCOL."""
    if kind in KIND_NAMES and kind != UNSPECIFIED:
        return kind
    return APP if kind < 100 else PROTOCOL


def effective_limit(max_frame_size):
    """§2.1: the limit an announced max_frame_size stands for."""
    if max_frame_size == 0:
        return DEFAULT_MAX_FRAME
    return min(max_frame_size, MAX_FRAME_CAP)


# ------------------------------------------------------------------ identity

class Uid(collections.namedtuple("Uid", "name uuid")):
    """An actor's uid: a name (1..31 bytes) and 16 uuid bytes (§3)."""
    __slots__ = ()

    @classmethod
    def new(cls, name):
        return cls(name, uuid_mod.uuid4().bytes)

    @classmethod
    def from_pb(cls, m):
        return cls(m.name, bytes(m.uuid))

    def to_pb(self):
        return pb.ActorUid(name=self.name, uuid=self.uuid)

    def __str__(self):
        if len(self.uuid) == 16:
            return f"{self.name}@{uuid_mod.UUID(bytes=self.uuid)}"
        return f"{self.name}@{self.uuid.hex()}"

    def __repr__(self):
        return f"Uid({self})"


def _uid_of(msg, field):
    return Uid.from_pb(getattr(msg, field)) if msg.HasField(field) else None


# ------------------------------------------------------------------ exceptions

class WeftError(Exception):
    """Base of every error this module raises."""


class HandshakeRefused(WeftError):
    """§5.1 step 6: a refused handshake, on both ends, with the kind and
    message that went over the wire. by_peer: the other end refused us."""

    def __init__(self, kind, message, by_peer):
        self.kind = kind
        self.kind_name = kind_name(kind)
        self.message = message
        self.by_peer = by_peer
        who = ("the peer refused the handshake" if by_peer
               else "this end refused the peer's handshake")
        super().__init__(f"{who}: {self.kind_name}: {message}")


class NotWeft(WeftError):
    """The other end's first frame header was bad: it does not speak weft
    (§2: closed without a word)."""


class MessageTooLarge(WeftError):
    """§2.1: an envelope over the peer's limit; refused locally, the
    connection is unaffected."""


class EndOfChannel(WeftError):
    """The stream ended: the peer's stop (or return) was received, or this
    side's own half is closed (sem §5.2)."""


class ClosedResourceError(WeftError):
    """Sending on a stream half this side already stopped."""


class Cancelled(WeftError):
    """Callee side: this context's task was cancelled (a checkpoint such as
    recv() or send() noticed it). Let it propagate: the final message then
    becomes error{CONTEXT_CANCELLED}."""


class UsageError(WeftError):
    """API misuse (started twice, send before started, ...). A callee
    failing with it sends error{RUNTIME, "RuntimeError"} (sem §4.2)."""


class MessagingError(WeftError):
    """The peer broke a context's contract, e.g. a CONTEXT callee returned
    without started (sem §4.1)."""


class ProtocolViolation(WeftError):
    """§8.3: the peer broke §4; the connection sends error{kind} and
    closes."""

    def __init__(self, kind, message, bad_msg=b""):
        self.kind = kind
        self.message = message
        self.bad_msg = bad_msg or b""
        super().__init__(f"{kind_name(kind)}: {message}")


class RemoteError(WeftError):
    """A boxed error (§8.1), as received (or, for TransportClosed, made
    locally). Fields mirror the Error message; uids are Uid tuples."""

    def __init__(self, err, cid=0):
        self.pb = err
        self.cid = cid
        self.raw_kind = err.kind
        self.kind = normalize_kind(err.kind)
        self.kind_name = kind_name(self.kind)
        self.src_type = err.src_type
        self.boxed_type = err.boxed_type
        self.message = err.message
        self.traceback = err.traceback
        self.src_uid = _uid_of(err, "src_uid")
        self.relay_path = [Uid.from_pb(u) for u in err.relay_path]
        self.canceller = _uid_of(err, "canceller")
        self.sender = _uid_of(err, "sender")
        self.members = [RemoteError(m, cid) for m in err.members]
        self.bad_msg = bytes(err.bad_msg)
        super().__init__(self.describe())

    def describe(self):
        s = f"{self.kind_name} {self.boxed_type or '?'}"
        if self.src_type and self.src_type != self.boxed_type:
            s += f" (from {self.src_type})"
        if self.message:
            s += f": {self.message}"
        for label, uid in (("src", self.src_uid),
                           ("canceller", self.canceller),
                           ("sender", self.sender)):
            if uid:
                s += f" [{label} {uid}]"
        return s


class TransportClosed(RemoteError):
    """§6.5: the connection under a call ended; src_uid names the peer."""

    def __init__(self, peer_uid, message):
        _need_pb()
        err = make_error(TRANSPORT_CLOSED, message, peer_uid, relay=False)
        super().__init__(err)


# ------------------------------------------------------------------ messages

def envelope(member, msg=None, cid=0, side=SIDE_UNSPECIFIED, to_actor=0,
             from_actor=0):
    """Envelope{cid, side, to_actor, from_actor, <member> = msg}. An empty
    msg (stop, cancel_ack, ...) is still present."""
    env = pb.Envelope(cid=cid, side=side, to_actor=to_actor,
                      from_actor=from_actor)
    field = getattr(env, member)
    field.SetInParent()
    if msg is not None:
        field.MergeFrom(msg)
    return env


def _with_pld(cls, value):
    """Started/Yield/Return: the payload only if there is a value (an absent
    pld is an empty value, §3; this keeps frames minimal as in §11)."""
    value = bytes(value)
    return cls(pld=pb.Payload(value=value)) if value else cls()


def _pld_value(msg):
    return bytes(msg.pld.value) if msg.HasField("pld") else b""


def make_error(kind, message, src_uid, *, type_name=None, src_type=None,
               relay=True, canceller=None, sender=None, traceback="",
               bad_msg=b""):
    """A fresh error raised by src_uid (§8.1): src_type = boxed_type = the
    type name, relay_path = [src]. Connection-level errors (relay=False)
    carry no relay path, as in the transcripts of §11."""
    t = (type_name or TYPE_NAMES.get(kind, "Exception"))[:127]
    e = pb.Error(kind=kind, src_type=(src_type or t)[:127], boxed_type=t,
                 message=message, traceback=traceback)
    if src_uid is not None:
        e.src_uid.CopyFrom(src_uid.to_pb())
        if relay:
            e.relay_path.append(src_uid.to_pb())
    if canceller is not None:
        e.canceller.CopyFrom(canceller.to_pb())
    if sender is not None:
        e.sender.CopyFrom(sender.to_pb())
    if bad_msg:
        e.bad_msg = bytes(bad_msg[:256])
    return e


def relay_error(err, by):
    """§8.1 relaying: kind REMOTE, boxed "RemoteActorError"; src_uid,
    src_type, canceller, sender kept; `by` appended to relay_path (the
    first entry and the 15 most recent are kept beyond 16)."""
    e = pb.Error()
    e.CopyFrom(err)
    e.kind = REMOTE
    e.boxed_type = TYPE_NAMES[REMOTE]
    if not e.src_type:
        e.src_type = err.boxed_type or TYPE_NAMES[APP]
    del e.members[:]
    e.ClearField("bad_msg")
    path = list(err.relay_path) + [by.to_pb()]
    if len(path) > 16:
        path = path[:1] + path[-15:]
    del e.relay_path[:]
    e.relay_path.extend(path)
    e.traceback = err.traceback + f"{err.boxed_type} relayed by actor {by}\n"
    return e


def encode_frame(env, limit=None):
    """§2: the 4-byte big-endian length, then the envelope."""
    body = env.SerializeToString()
    if limit is not None and len(body) > limit:
        raise MessageTooLarge(
            f"{env.WhichOneof('msg')} of {len(body)} bytes is over the "
            f"peer's limit of {limit}")
    return struct.pack(">I", len(body)) + body


# ------------------------------------------------------------------ §4.1 rules

_SENT_ON = {  # §3, "sent on"
    "yield_item": "either", "stop": "either", "error": "any",
    "started": SIDE_CALLEE, "return_value": SIDE_CALLEE,
    "start_ack": SIDE_CALLEE, "cancel_ack": SIDE_CALLEE,
    "found_actors": SIDE_CALLEE, "ack": SIDE_CALLEE,
    "start": SIDE_CALLER, "cancel_context": SIDE_CALLER,
    "cancel_actor": SIDE_CALLER, "register_actor": SIDE_CALLER,
    "unregister_actor": SIDE_CALLER, "find_actor": SIDE_CALLER,
    "ping": "cid0", "pong": "cid0", "hello": "cid0", "spawn_spec": "cid0",
    "bye": "cid0",
}
_REGISTRY_REQUESTS = ("register_actor", "unregister_actor", "find_actor")


def _blen(s):
    return len(s.encode("utf-8"))


def _uid_problem(u, what, required=False):
    """ActorUid bounds (§9); a required one also needs a name and a
    non-zero uuid (§4.1 rule 5)."""
    if _blen(u.name) > 31:
        return f"{what}.name over 31 bytes"
    if len(u.uuid) not in (0, 16):
        return f"{what}.uuid of {len(u.uuid)} bytes, not 16"
    if required and not (u.name and len(u.uuid) == 16 and any(u.uuid)):
        return f"{what} is required (a name and a non-zero uuid)"
    return None


def _required_uid(msg, field, what):
    if not msg.HasField(field):
        return f"{what} is required"
    return _uid_problem(getattr(msg, field), what, required=True)


def _payload_problem(msg, what):
    if not msg.HasField("pld"):
        return None
    p = msg.pld
    if _blen(p.type_url) > 255 or _blen(p.content_type) > 63:
        return f"{what}.pld type_url/content_type over bounds"
    return None


def _addr_problem(a, what):
    if _blen(a.transport) > 7 or _blen(a.host) > 255 or a.port > 65535:
        return f"{what}: address over bounds"
    return None


def _error_problem(e, depth=1):
    if _blen(e.src_type) > 127 or _blen(e.boxed_type) > 127:
        return "error src_type/boxed_type over 127 bytes"
    if len(e.relay_path) > 16:
        return "error relay_path over 16 entries"
    if len(e.members) > 16:
        return "error members over 16 entries"
    if len(e.bad_msg) > 256:
        return "error bad_msg over 256 bytes"  # rule 6
    for f in ("src_uid", "canceller", "sender"):
        if e.HasField(f):
            p = _uid_problem(getattr(e, f), f"error.{f}")
            if p:
                return p
    for u in e.relay_path:
        p = _uid_problem(u, "error.relay_path")
        if p:
            return p
    if e.members and depth >= 4:
        return "error members nested deeper than 4"
    for m in e.members:
        p = _error_problem(m, depth + 1)
        if p:
            return p
    return None


def _message_problem(kind, m, env):
    """Rules 5 and 6 and the §9 bounds of one message."""
    if kind == "start":
        if not 1 <= _blen(m.func) <= 255:
            return "start.func must be 1..255 bytes"
        if m.kind not in (RUN, CONTEXT):
            return "start.kind must be RUN or CONTEXT"
        if m.HasField("args"):
            p = m.args
            if _blen(p.type_url) > 255 or _blen(p.content_type) > 63:
                return "start.args type_url/content_type over bounds"
        return _required_uid(m, "caller", "start.caller")
    if kind == "start_ack":
        return None if m.kind in (RUN, CONTEXT) else \
            "start_ack.kind must be RUN or CONTEXT"
    if kind in ("started", "yield_item", "return_value"):
        return _payload_problem(m, kind)
    if kind == "cancel_context":
        return _required_uid(m, "canceller", "cancel_context.canceller")
    if kind == "cancel_actor":
        return _required_uid(m, "requester", "cancel_actor.requester")
    if kind == "error":
        if m.kind >= 100 and env.cid != 0:
            return f"error kind {m.kind} (connection-level) on cid {env.cid}"
        return _error_problem(m)
    if kind == "hello":
        if len(m.auth_token) > 64:
            return "hello.auth_token over 64 bytes"
        if len(m.features) > 16 or any(not 1 <= _blen(f) <= 31
                                       for f in m.features):
            return "hello.features over bounds"
        if len(m.listen_addrs) > 4:
            return "hello.listen_addrs over 4 entries"
        if m.HasField("uid"):
            p = _uid_problem(m.uid, "hello.uid")
            if p:
                return p
        for a in m.listen_addrs:
            p = _addr_problem(a, "hello.listen_addrs")
            if p:
                return p
        return None
    if kind == "spawn_spec":
        if len(m.registry_addrs) > 4 or len(m.bind_addrs) > 4:
            return "spawn_spec addresses over 4 entries"
        if len(m.enable_namespaces) > 32 or any(
                _blen(n) > 63 for n in m.enable_namespaces):
            return "spawn_spec.enable_namespaces over bounds"
        if len(m.runtime_vars) > 32 or any(
                _blen(k) > 63 or _blen(v) > 255
                for k, v in m.runtime_vars.items()):
            return "spawn_spec.runtime_vars over bounds"
        return None
    if kind == "register_actor":
        if not m.HasField("reg"):
            return "register_actor.reg is required"
        if len(m.reg.addrs) > 4:
            return "register_actor.reg.addrs over 4 entries"
        return _required_uid(m.reg, "uid", "register_actor.reg.uid")
    if kind == "unregister_actor":
        return _required_uid(m, "uid", "unregister_actor.uid")
    if kind == "find_actor":
        return None if 1 <= _blen(m.name) <= 31 else \
            "find_actor.name must be 1..31 bytes"
    if kind == "found_actors":
        if len(m.regs) > 16:
            return "found_actors.regs over 16 entries"
        return None
    return None


def envelope_problem(env):
    """What in env breaks §4.1 (rules 2 to 6, §9 bounds), or None. Rule 1
    (a valid encoding, valid UTF-8) is checked by the parser."""
    kind = env.WhichOneof("msg")
    if kind is None or kind not in _SENT_ON:
        return "no message, or an unknown message kind"  # rule 2 (§11.9)
    if env.side not in (SIDE_UNSPECIFIED, SIDE_CALLER, SIDE_CALLEE):
        return f"side {env.side} is not a Side"
    if (env.cid == 0) != (env.side == SIDE_UNSPECIFIED):
        return f"cid {env.cid} with side {env.side}"  # rule 3
    on = _SENT_ON[kind]
    if on == "cid0" and env.cid != 0:
        return f"{kind} on cid {env.cid}; it belongs on cid 0"  # rule 4
    if on == "either" and env.cid == 0:
        return f"{kind} on cid 0"
    if on in (SIDE_CALLER, SIDE_CALLEE) and env.side != on:
        return f"{kind} with side {env.side}"
    return _message_problem(kind, getattr(env, kind), env)


def parse_envelope(body):
    """(envelope, problem): problem is None for a well-formed envelope."""
    env = pb.Envelope()
    try:
        env.ParseFromString(body)
    except Exception as e:  # DecodeError, or a string that is not UTF-8
        return None, f"not a valid Envelope: {e}"
    return env, envelope_problem(env)


# ------------------------------------------------------------------ framing

class FrameHeaderError(WeftError):
    """A bad frame header (§2): zero or over the limit."""

    def __init__(self, length, limit, header):
        self.length = length
        if length == 0:
            self.kind, text = PROTOCOL, "zero-length frame"
        else:
            self.kind = FRAME_TOO_LARGE
            text = f"frame of {length} bytes is over the limit of {limit}"
            if all(32 <= b < 127 for b in header):
                text += " (peer sent text, an HTTP request?, not a weft frame)"
        super().__init__(text)


class _Woken(Exception):
    """The connection's wake-up socket fired (it is closing)."""


class FrameReader:
    """Splits a socket's bytes into frames (§2). The length is checked
    against the limit as soon as the 4 header bytes are in, before the body
    is read."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.frames = 0  # frames accepted so far

    def _parse(self, limit):
        avail = len(self.buf) - self.pos
        if avail < 4:
            return None
        (n,) = struct.unpack_from(">I", self.buf, self.pos)
        if n == 0 or n > limit:
            raise FrameHeaderError(n, limit,
                                   bytes(self.buf[self.pos:self.pos + 4]))
        if avail < 4 + n:
            return None
        body = bytes(self.buf[self.pos + 4:self.pos + 4 + n])
        self.pos += 4 + n
        self.frames += 1
        return body

    def read(self, limit, deadline=None, wake=None):
        """The next envelope's bytes; None at EOF. Raises FrameHeaderError,
        socket.timeout when the monotonic deadline passes, _Woken if the
        wake socket is readable."""
        while True:
            body = self._parse(limit)
            if body is not None:
                return body
            timeout = None
            if deadline is not None:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise socket.timeout("timed out waiting for a frame")
            fds = [self.sock] if wake is None else [self.sock, wake]
            ready, _, _ = select.select(fds, [], [], timeout)
            if not ready:
                continue  # the deadline check above raises
            if wake is not None and wake in ready:
                raise _Woken()
            chunk = self.sock.recv(RECV_CHUNK)
            if not chunk:
                if len(self.buf) > self.pos:
                    log.debug("EOF inside a frame (%d bytes pending)",
                              len(self.buf) - self.pos)
                return None
            if self.pos:
                del self.buf[:self.pos]
                self.pos = 0
            self.buf += chunk


def _send_now(sock, env, limit):
    sock.sendall(encode_frame(env, limit))


def _close_after_refusal(sock):
    """§5.1 step 4: shut the write side down after the error frame, then
    wait briefly for the peer's EOF so our close does not reset the
    connection before the peer has read the frame."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([sock], [], [], left)
            if not ready or not sock.recv(RECV_CHUNK):
                break
    except OSError:
        pass
    sock.close()


# ------------------------------------------------------------------ handshake

def judge_hello(h, from_dialer, token=b""):
    """§5.3, in order: (kind, message) to refuse with, or None. token: the
    acceptor's configured token (empty: any is accepted)."""
    if h.protocol_version != PROTOCOL_VERSION:
        return (VERSION_MISMATCH, "unsupported protocol version "
                f"(this end speaks {PROTOCOL_VERSION})")
    if not (h.HasField("uid") and h.uid.name and len(h.uid.uuid) == 16
            and any(h.uid.uuid)):
        return HANDSHAKE, "hello without a valid uid (name and uuid)"
    if h.max_frame_size and h.max_frame_size < HANDSHAKE_LIMIT:
        return (HANDSHAKE, f"max_frame_size {h.max_frame_size} is below "
                f"{HANDSHAKE_LIMIT}")
    if from_dialer:
        if token and not _token_equal(bytes(h.auth_token), token):
            return AUTH_FAILED, "authentication failed"
    elif h.auth_token or h.is_probe:
        return (HANDSHAKE, "the acceptor's hello must have no auth_token "
                "and no is_probe")
    return None


def _token_equal(got, want):
    """§5.3: compared in constant time over 64 bytes."""
    same = hmac.compare_digest(got.ljust(64, b"\0")[:64],
                               want.ljust(64, b"\0")[:64])
    return same and len(got) == len(want)


# ------------------------------------------------------------------ caller side

def _wait(cv, ready, deadline, what):
    """Waits on cv (held) until ready() or the monotonic deadline (None:
    forever); TimeoutError names `what`."""
    while not ready():
        if deadline is None:
            cv.wait()
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        cv.wait(left)


def _deadline(timeout):
    return None if timeout is None else time.monotonic() + timeout


_STOP = object()  # a stop marker in a context's receive queue


class CallerContext:
    """The opener's end of a context (§6.3): created by
    Connection.open_context(). Receives on SIDE_CALLEE, sends SIDE_CALLER.

    States: await_ack -> open -> ended (final received) -> forgotten (once
    no cancel_ack is owed to us)."""

    def __init__(self, conn, cid, func, kind, to_actor, msg_buffer_size,
                 allow_overruns):
        self.conn = conn
        self.cid = cid
        self.func = func
        self.kind = kind
        self.to_actor = to_actor
        self.cap = msg_buffer_size or QUEUE_SIZE
        self.allow_overruns = allow_overruns
        self._cv = threading.Condition(conn._lock)
        self.state = "await_ack"
        self.acked = False            # start_ack arrived
        self.started = False          # started arrived
        self.started_value = None
        self.peer_stopped = False     # the callee's stop arrived (wire)
        self._queue = collections.deque()  # items and _STOP, in order
        self._nitems = 0
        self._eoc = False             # a recv() met the end
        self.own_stopped = False      # this side sent stop
        self.final = None             # ("return", bytes) / ("error", exc)
        self.remote_error = None      # the final error, if any
        self.cancel_called = False
        self._cancel_sent = False
        self.ack_received = False     # cancel_ack for our cancel_context
        self.overruns_reported = 0    # error{STREAM_OVERRUN} we sent
        self.dropped = 0              # items dropped (refused or overflow)

    def __repr__(self):
        return (f"<CallerContext {self.func} cid={self.cid:x} "
                f"{self.state}>")

    # -- reader thread (lock held) --

    def _bad(self, why, body):
        raise ProtocolViolation(
            PROTOCOL, f"context {self.cid:x} ({self.func}): {why}", body)

    def _on_envelope(self, env, kind, body):
        if self.state == "ended":
            if kind == "cancel_ack" and self._cancel_sent \
                    and not self.ack_received:
                self.ack_received = True
                self._forget()
                return
            self._bad(f"{kind} after the final message", body)
        if kind == "cancel_ack":
            self._bad("cancel_ack before the final message"
                      if self._cancel_sent else
                      "cancel_ack without cancel_context", body)
        if kind == "error":  # final from the callee (§8.1)
            self._end(("error", RemoteError(env.error, self.cid)))
            return
        if self.state == "await_ack":
            if kind == "start_ack" and env.start_ack.kind == self.kind:
                self.state = "open"
                self.acked = True
                self._cv.notify_all()
                return
            self._bad(f"{kind} while waiting for start_ack", body)
        if kind == "return_value":
            self._end(("return", _pld_value(env.return_value)))
            return
        if self.kind != CONTEXT:
            self._bad(f"{kind} in a RUN call", body)
        if kind == "started":
            if self.started:
                self._bad("a second started", body)
            self.started = True
            self.started_value = _pld_value(env.started)
        elif kind == "yield_item":
            if not self.started or self.peer_stopped:
                self._bad("yield_item outside the callee's stream half",
                          body)
            self._deliver(_pld_value(env.yield_item))
        elif kind == "stop":
            if not self.started or self.peer_stopped:
                self._bad("stop before started, or a second stop", body)
            self.peer_stopped = True
            self._queue.append(_STOP)
        else:
            self._bad(f"unexpected {kind}", body)
        self._cv.notify_all()

    def _deliver(self, item):
        """sem §5.3: a bounded queue; the overrun policy beyond it."""
        if self._nitems < self.cap or (
                self.allow_overruns
                and self._nitems < self.cap + OVERFLOW_MAX):
            self._queue.append(item)
            self._nitems += 1
            return
        self.dropped += 1
        if self.allow_overruns:
            log.warning("%r: overflow queue full, item dropped", self)
            return
        # §6.4: refuse. From the caller this report is not final: the
        # callee's task is cancelled and it sends its own final error.
        self.overruns_reported += 1
        me, peer = self.conn.peer.uid, self.conn.remote_uid
        err = make_error(
            STREAM_OVERRUN,
            f"{peer} overran the receive buffer of {self.cap} item(s)",
            me, sender=peer)
        self.conn._enqueue_env(envelope("error", err, self.cid, SIDE_CALLER,
                                        to_actor=self.to_actor))

    def _end(self, final):
        self.final = final
        if final[0] == "error":
            self.remote_error = final[1]
        self.state = "ended"
        if not (self._cancel_sent and not self.ack_received):
            self._forget()
        self._cv.notify_all()

    def _forget(self):
        self.conn._opened.pop(self.cid, None)
        self._cv.notify_all()

    def _on_transport_closed(self, exc):
        """§6.5: every waiting call fails with TransportClosed."""
        if self.final is None:
            self.final = ("error", exc)
            self.remote_error = exc
        self.state = "ended"
        self._cv.notify_all()

    # -- application threads --

    def _send_env(self, member, msg):
        return self.conn._enqueue_env(envelope(member, msg, self.cid,
                                               SIDE_CALLER,
                                               to_actor=self.to_actor))

    def _ended_by_transport(self):
        return isinstance(self.remote_error, TransportClosed)

    def send(self, data, timeout=DEFAULT_TIMEOUT):
        """Sends one stream item (CONTEXT only)."""
        frame = self.conn._encode(envelope(
            "yield_item", _with_pld(pb.Yield, data), self.cid, SIDE_CALLER,
            to_actor=self.to_actor))
        with self._cv:
            if self.kind != CONTEXT or not self.started:
                raise UsageError("send() needs a CONTEXT that has started")
            self.conn._wait_send_room(_deadline(timeout))
            if self.remote_error is not None and not self.cancel_acked:
                raise self.remote_error  # sem §5.2: the peer's error first
            if self.own_stopped or self.state == "ended":
                if self._eoc:
                    raise EndOfChannel("the peer closed its stream")
                raise ClosedResourceError("the stream is closed")
            if self._eoc:
                raise EndOfChannel("the peer closed its stream")
            if not self.conn._enqueue(frame):
                raise self.conn.close_error

    def recv(self, timeout=DEFAULT_TIMEOUT):
        """The next stream item. Raises EndOfChannel at the callee's stop
        (answering with our own stop, as tractor does), RemoteError if the
        callee failed (even with items still queued, sem §5.2)."""
        with self._cv:
            if self.kind != CONTEXT:
                raise UsageError("recv() in a RUN call")
            while True:
                if self.remote_error is not None:
                    raise self.remote_error
                if self._eoc or self.own_stopped:
                    raise EndOfChannel("end of stream")
                if self._queue:
                    item = self._queue.popleft()
                    if item is not _STOP:
                        self._nitems -= 1
                        return item
                    self._eoc = True
                    self._stop_quietly()
                    raise EndOfChannel("the callee stopped its stream")
                if self.final is not None:  # a return ends the stream too
                    self._eoc = True
                    raise EndOfChannel("the callee returned")
                _wait(self._cv, lambda: (self._queue or self.final
                                         is not None),
                      _deadline(timeout), f"an item of {self.func}")

    def _stop_quietly(self):
        if not self.own_stopped:
            self.own_stopped = True
            if self.state != "ended":
                self._send_env("stop", pb.Stop())

    def stop(self):
        """Closes this side's stream half (sends stop once)."""
        with self._cv:
            if self.kind != CONTEXT or not self.started:
                raise UsageError("stop() needs a CONTEXT that has started")
            self._stop_quietly()

    @property
    def cancel_acked(self):
        """sem §4.7: we cancelled, and the final is the peer's
        ContextCancelled naming us as canceller."""
        e = self.remote_error
        me = self.conn.peer.uid
        return (self.cancel_called and e is not None
                and not isinstance(e, TransportClosed)
                and e.kind == CONTEXT_CANCELLED
                and e.src_uid == self.conn.remote_uid and e.canceller == me)

    def _absorbs(self):
        """sem §4.3: our own acked cancel, or an overrun whose sender is the
        peer when we allow overruns or cancelled, is not raised. The
        overrun may come relayed (kind REMOTE, src_type "StreamOverrun")."""
        e = self.remote_error
        if self.cancel_acked:
            return True
        is_overrun = (e.kind == STREAM_OVERRUN or
                      "StreamOverrun" in (e.boxed_type, e.src_type))
        return ((self.allow_overruns or self.cancel_called) and is_overrun
                and e.sender == self.conn.remote_uid)

    def result(self, timeout=DEFAULT_TIMEOUT):
        """Waits for the final message, dropping unread items. Returns the
        return value; None for an absorbed error (our own cancel); raises
        RemoteError (TransportClosed if the connection ended first)."""
        with self._cv:
            _wait(self._cv, lambda: self.final is not None,
                  _deadline(timeout), f"the result of {self.func}")
            self._queue.clear()
            self._nitems = 0
            what, value = self.final
            if what == "return":
                return value
            if self._absorbs():
                return None
            raise value

    def cancel(self, reason="", timeout=CANCEL_TIMEOUT):
        """§7.1: sends cancel_context{canceller = our uid} and waits (bounded)
        for the final message and cancel_ack. Nothing is sent if the
        context already ended (its result stands, sem §4.9). Returns whether
        the ack came."""
        with self._cv:
            self.cancel_called = True
            if self.final is not None:
                return self.ack_received
            if not self._cancel_sent:
                self._cancel_sent = True
                self._send_env("cancel_context", pb.CancelContext(
                    canceller=self.conn.peer.uid.to_pb(), reason=reason))
            try:
                _wait(self._cv, lambda: self.ack_received or
                      self._ended_by_transport(), _deadline(timeout),
                      f"cancel_ack of {self.func}")
            except TimeoutError:
                log.warning("%r: no cancel_ack within %.3f s; forgetting it",
                            self, timeout)
                self._forget()
            return self.ack_received

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Like tractor's context block: an error in the body cancels the
        context; a clean exit closes our stream half and waits for the
        result (raising the peer's error)."""
        if exc_type is not None:
            self.cancel()
            return False
        if self.kind == CONTEXT and self.started:
            self.stop()
        self.result()
        return False


class _Request:
    """A request on a fresh cid (§7.2 cancel_actor): one reply, then
    forgotten."""

    def __init__(self, conn, cid, what):
        self.conn = conn
        self.cid = cid
        self.what = what
        self._cv = threading.Condition(conn._lock)
        self.reply = None  # ("ack", None) / ("error", exc)

    def _on_envelope(self, env, kind, body):
        if kind == "cancel_ack" and self.what == "cancel_actor":
            self.reply = ("ack", None)
        elif kind == "error":
            self.reply = ("error", RemoteError(env.error, self.cid))
        else:
            raise ProtocolViolation(
                PROTOCOL, f"{kind} in reply to {self.what} {self.cid:x}",
                body)
        self.conn._opened.pop(self.cid, None)
        self._cv.notify_all()

    def _on_transport_closed(self, exc):
        if self.reply is None:
            self.reply = ("error", exc)
        self._cv.notify_all()


# ------------------------------------------------------------------ callee side

class CalleeContext:
    """The serving end of a context (§6.2), handed to the exposed function
    as `ctx`. Receives on SIDE_CALLER, sends SIDE_CALLEE.

    The function runs in its own thread: fn(ctx, args) -> bytes. Its return
    value becomes return_value; an exception becomes error{...} (§8.1).
    ctx.cancelled (a threading.Event) is set by cancel_context, by the
    caller's overrun report, by cancel_actor or by the connection's end;
    ctx.recv()/send() raise Cancelled then. A function that returns (or
    lets Cancelled out) while cancelled ends the context with
    error{CONTEXT_CANCELLED, canceller} (sem §4.5)."""

    def __init__(self, conn, cid, start_env):
        s = start_env.start
        self.conn = conn
        self.cid = cid
        self.func = s.func
        self.kind = s.kind
        self.args = bytes(s.args.value) if s.HasField("args") else b""
        self.caller = Uid.from_pb(s.caller)
        # §3: our envelopes carry the reverse of the start's addressing.
        self._to_actor = start_env.from_actor
        self._from_actor = start_env.to_actor
        self._cv = threading.Condition(conn._lock)
        self.cap = conn.peer.callee_queue_size
        self.cancelled = threading.Event()
        self.canceller = None        # first canceller recorded wins
        self.self_cancelled = False
        self.remote_error = None     # the caller's overrun report
        self._queue = collections.deque()
        self._nitems = 0
        self._started_sent = False
        self.own_stopped = False
        self.peer_stopped = False
        self._eoc = False
        self._acks_owed = 0
        self.finished = False        # our final message was sent/discarded
        self.final_sent = None       # (member, msg) for tests and logs

    def __repr__(self):
        return f"<CalleeContext {self.func} cid={self.cid:x}>"

    # -- reader thread (lock held) --

    def _on_envelope(self, env, kind, body):
        if kind == "cancel_context":
            # §6.2: record the canceller (first wins), owe one ack.
            if self.canceller is None:
                self.canceller = Uid.from_pb(env.cancel_context.canceller)
            self._acks_owed += 1
            self._cancel()
            return
        if kind == "error":
            # §6.4: the caller's overrun report. Not final; it cancels us.
            if self.remote_error is None:
                self.remote_error = RemoteError(env.error, self.cid)
                if self.canceller is None:
                    self.canceller = self.remote_error.src_uid
            self._cancel()
            return
        if kind not in ("yield_item", "stop"):
            raise ProtocolViolation(
                PROTOCOL, f"{kind} on running context {self.cid:x}", body)
        if self.kind != CONTEXT or not self._started_sent:
            raise ProtocolViolation(
                PROTOCOL, f"{kind} on context {self.cid:x} before started "
                "(or in a RUN call)", body)
        if self.peer_stopped:
            raise ProtocolViolation(
                PROTOCOL, f"{kind} after the caller's stop on context "
                f"{self.cid:x}", body)
        if kind == "stop":
            self.peer_stopped = True
            self._queue.append(_STOP)
        elif self._nitems < self.cap:
            self._queue.append(_pld_value(env.yield_item))
            self._nitems += 1
        else:
            # §6.4: from the callee the overrun report is the final message.
            me = self.conn.peer.uid
            err = make_error(
                STREAM_OVERRUN,
                f"{self.caller} overran the receive buffer of {self.cap} "
                "item(s)", me, sender=self.caller)
            self._send_final("error", err)
            self._cancel()
        self._cv.notify_all()

    def _cancel(self):
        self.cancelled.set()
        self._cv.notify_all()

    def _cancel_by(self, requester):
        """cancel_actor (§7.2): cancel with the requester as canceller."""
        with self._cv:
            if self.canceller is None:
                self.canceller = requester
            self._cancel()

    def _on_connection_lost(self):
        """§6.5: cancelled, with this actor as canceller; the final is
        discarded."""
        self.finished = True
        if self.canceller is None:
            self.canceller = self.conn.peer.uid
        self._cancel()

    def _send_final(self, member, msg):
        """Exactly one final (§6.1), then every owed cancel_ack (§7.1),
        then the context is forgotten."""
        if self.finished:
            return False
        self.finished = True
        self.final_sent = (member, msg)
        self._send_env(member, msg)
        for _ in range(self._acks_owed):
            self._send_env("cancel_ack", pb.CancelAck())
        self._acks_owed = 0
        self.conn._served.pop(self.cid, None)
        self._cv.notify_all()
        return True

    def _send_env(self, member, msg):
        return self.conn._enqueue_env(envelope(
            member, msg, self.cid, SIDE_CALLEE, to_actor=self._to_actor,
            from_actor=self._from_actor))

    # -- the task thread --

    def _run(self, fn):
        exc = out = None
        try:
            out = fn(self, self.args)
        except BaseException as e:  # every way out becomes the final
            exc = e
            if not isinstance(e, (Cancelled, RemoteError, UsageError)):
                log.debug("%r failed", self, exc_info=True)
        with self._cv:
            if self.finished:
                log.debug("%r: outcome discarded (context already ended)",
                          self)
                return
            member, msg = self._final_for(out, exc)
            if member == "return_value" and self._started_sent \
                    and not self.own_stopped:
                # sem §4.5: a successful return closes the stream: stop,
                # then return. A failure sends no stop.
                self.own_stopped = True
                self._send_env("stop", pb.Stop())
            self._send_final(member, msg)

    def _final_for(self, out, exc):
        me = self.conn.peer.uid
        cancelled = self.cancelled.is_set()
        if exc is None and not cancelled:
            if out is None:
                out = b""
            if not isinstance(out, (bytes, bytearray, memoryview)):
                return "error", make_error(
                    RUNTIME, f"{self.func} returned {type(out).__name__}, "
                    "not bytes", me)
            return "return_value", _with_pld(pb.Return, out)
        cancel_like = (exc is None or isinstance(exc, Cancelled)
                       or exc is self.remote_error)
        if cancelled and cancel_like:
            if self.remote_error is not None:
                # Died of the caller's overrun report: relay it (§6.4).
                return "error", relay_error(self.remote_error.pb, me)
            return "error", self._ctxc()
        if isinstance(exc, RemoteError):
            if exc.src_uid == me and exc.kind != REMOTE:
                return "error", exc.pb  # our own record, unchanged
            return "error", relay_error(exc.pb, me)
        if isinstance(exc, UsageError):
            return "error", make_error(RUNTIME, str(exc), me)
        if isinstance(exc, Cancelled):  # e.g. cancelled by a nested call
            self.self_cancelled = True
            return "error", self._ctxc()
        tb = "".join(traceback_mod.format_exception(
            type(exc), exc, exc.__traceback__))
        kind = INTERRUPT if isinstance(exc, KeyboardInterrupt) else APP
        return "error", make_error(kind, str(exc), me,
                                   type_name=type(exc).__name__,
                                   traceback=tb)

    def _ctxc(self):
        """sem §4.5: a new ContextCancelled raised by this actor."""
        me = self.conn.peer.uid
        if self.self_cancelled:
            canceller, by = me, "itself"
        else:
            canceller = self.canceller or me
            by = ("its parent-side peer" if canceller == self.caller
                  else "a remote peer")
        return make_error(
            CONTEXT_CANCELLED,
            f"the task of context {self.cid:x} was cancelled by {by}", me,
            canceller=canceller)

    # -- the function's API --

    def _raise_if_cancelled(self):
        if self.remote_error is not None:
            raise self.remote_error
        if self.cancelled.is_set():
            raise Cancelled(f"{self.func}: the context was cancelled")

    def started(self, value=b""):
        """tractor's ctx.started(value): CONTEXT only, once, first."""
        frame = self.conn._encode(envelope(
            "started", _with_pld(pb.Started, value), self.cid, SIDE_CALLEE,
            to_actor=self._to_actor, from_actor=self._from_actor))
        with self._cv:
            if self.kind != CONTEXT:
                raise UsageError("started() in a RUN call")
            if self._started_sent:
                raise UsageError("started() called more than once")
            self._raise_if_cancelled()
            self._started_sent = True  # before the caller can answer it
            self.conn._enqueue(frame)

    def send(self, data, timeout=DEFAULT_TIMEOUT):
        """Sends one stream item."""
        frame = self.conn._encode(envelope(
            "yield_item", _with_pld(pb.Yield, data), self.cid, SIDE_CALLEE,
            to_actor=self._to_actor, from_actor=self._from_actor))
        with self._cv:
            if not self._started_sent:
                raise UsageError("send() before started()")
            self.conn._wait_send_room(_deadline(timeout))
            self._raise_if_cancelled()
            if self.own_stopped:
                if self._eoc:
                    raise EndOfChannel("the caller closed its stream")
                raise ClosedResourceError("the stream is closed")
            if self._eoc:
                raise EndOfChannel("the caller closed its stream")
            if not self.conn._enqueue(frame):
                raise Cancelled("the connection is closed")

    def recv(self, timeout=None):
        """The next item from the caller. EndOfChannel at the caller's stop
        (our own half is closed then too); Cancelled / RemoteError when the
        context was cancelled (a checkpoint, even with items queued)."""
        with self._cv:
            if not self._started_sent:
                raise UsageError("recv() before started()")
            while True:
                self._raise_if_cancelled()
                if self._eoc or self.own_stopped:
                    raise EndOfChannel("end of stream")
                if self._queue:
                    item = self._queue.popleft()
                    if item is not _STOP:
                        self._nitems -= 1
                        return item
                    self._eoc = True
                    if not self.own_stopped:
                        self.own_stopped = True
                        self._send_env("stop", pb.Stop())
                    raise EndOfChannel("the caller stopped its stream")
                _wait(self._cv, lambda: (self._queue or
                                         self.cancelled.is_set()),
                      _deadline(timeout), f"an item for {self.func}")

    def stop(self):
        """Closes our stream half (sends stop once)."""
        with self._cv:
            if not self._started_sent:
                raise UsageError("stop() before started()")
            if not self.own_stopped and not self.finished:
                self.own_stopped = True
                self._send_env("stop", pb.Stop())

    def cancel(self):
        """Self-cancel (sem §4.5): canceller = this actor."""
        with self._cv:
            self.self_cancelled = True
            if self.canceller is None:
                self.canceller = self.conn.peer.uid
            self._cancel()


# ------------------------------------------------------------------ connection

_CLOSE_WRITE = object()  # writer queue sentinel: flush, then shut down writes


class Connection:
    """One connection after a successful handshake. Symmetric (§1): either
    end opens contexts (open_context, run, cancel_actor) and serves the
    Peer's functions."""

    def __init__(self, peer, sock, reader, remote_hello, role, probe=False):
        self.peer = peer
        self.sock = sock
        self._frames = reader
        self.remote_hello = remote_hello
        self.remote_uid = Uid.from_pb(remote_hello.uid)
        self.role = role  # "dialer" or "acceptor"
        self.is_probe = probe or remote_hello.is_probe
        # §5.1 step 7: receive with our own limit, send with the peer's.
        self._recv_limit = effective_limit(peer.max_frame_size)
        self._send_limit = effective_limit(remote_hello.max_frame_size)
        self.own_interval = (peer.heartbeat_ms or DEFAULT_HEARTBEAT_MS) / 1e3
        self.peer_interval = (remote_hello.heartbeat_interval_ms
                              or DEFAULT_HEARTBEAT_MS) / 1e3
        self._lock = threading.RLock()
        self._wcv = threading.Condition(self._lock)
        self._wq = collections.deque()
        self._wbytes = 0
        self._opened = {}   # cid -> CallerContext/_Request (we sent start)
        self._served = {}   # cid -> CalleeContext (we received start)
        self._pings = {}    # nonce -> threading.Event
        self._nonces = itertools.count(1)
        self._closing = False
        self._linger = False
        self._eof = False
        self.close_error = None   # TransportClosed, once closing
        self.bye_reason = None    # the peer's bye, if it sent one
        self.remote_errors = []   # cid-0 errors (kind < 100) from the peer
        self.pings_sent = 0
        self.pongs_received = 0
        self.closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._last_recv = self._last_sent = time.monotonic()
        self._threads = []

    def __repr__(self):
        return f"<Connection {self.role} to {self.remote_uid}>"

    def _start(self):
        for name, fn in (("reader", self._reader_main),
                         ("writer", self._writer_main),
                         ("heartbeat", self._heartbeat_main)):
            t = threading.Thread(target=fn, daemon=True,
                                 name=f"weft-{name}-{self.remote_uid.name}")
            self._threads.append(t)
            t.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close("done")
        return False

    # -- sending --

    def _encode(self, env):
        return encode_frame(env, self._send_limit)

    def _enqueue(self, frame):
        """Queues one frame for the writer; False once closing."""
        with self._lock:
            if self._closing:
                return False
            self._wq.append(frame)
            self._wbytes += len(frame)
            self._wcv.notify_all()
            return True

    def _enqueue_env(self, env):
        try:
            return self._enqueue(self._encode(env))
        except MessageTooLarge as e:
            log.error("%r: not sent: %s", self, e)
            return False

    def _wait_send_room(self, deadline):
        """Backpressure for stream items: wait while much is queued."""
        _wait(self._wcv, lambda: self._wbytes <= SEND_QUEUE_MAX
              or self._closing, deadline, "room in the send queue")

    def _writer_main(self):
        while True:
            with self._lock:
                while not self._wq:
                    self._wcv.wait()
                frame = self._wq.popleft()
                if frame is not _CLOSE_WRITE:
                    self._wbytes -= len(frame)
                self._wcv.notify_all()
            try:
                if frame is _CLOSE_WRITE:
                    self.sock.shutdown(socket.SHUT_WR)
                    return
                self.sock.sendall(frame)
                self._last_sent = time.monotonic()
            except OSError as e:
                self._teardown(TransportClosed(
                    self.remote_uid, f"send failed: {e}"), linger=False)
                return

    # -- receiving --

    def _reader_main(self):
        try:
            while not self._closing:
                try:
                    body = self._frames.read(self._recv_limit,
                                             wake=self._wake_r)
                except _Woken:
                    break
                if body is None:
                    self._eof = True
                    self._teardown(TransportClosed(
                        self.remote_uid, "the peer closed the connection "
                        "without bye (a crash?)"), linger=False)
                    break
                self._last_recv = time.monotonic()
                self._handle_frame(body)
        except FrameHeaderError as e:
            self._protocol_error(e.kind, str(e), b"")
        except ProtocolViolation as e:
            self._protocol_error(e.kind, e.message, e.bad_msg)
        except OSError as e:
            self._teardown(TransportClosed(
                self.remote_uid, f"receive failed: {e}"), linger=False)
        except Exception as e:  # a bug here must not leave the peer hanging
            log.exception("%r: reader failed", self)
            self._teardown(TransportClosed(
                self.remote_uid, f"internal error: {e!r}"), linger=False)
        finally:
            self._finish_close()

    def _handle_frame(self, body):
        env, problem = parse_envelope(body)
        if problem:
            raise ProtocolViolation(PROTOCOL, problem, body)
        kind = env.WhichOneof("msg")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%r <- %s cid=%x side=%d", self, kind, env.cid,
                      env.side)
        if env.cid == 0:
            self._on_connection_msg(env, kind, body)
        elif env.side == SIDE_CALLER:   # a context this end serves
            self._on_served_msg(env, kind, body)
        else:                           # a context this end opened
            with self._lock:
                ctx = self._opened.get(env.cid)
                if ctx is None:  # §6.3: late message for a forgotten cid
                    log.debug("%r: %s for unknown cid %x dropped", self,
                              kind, env.cid)
                    return
                ctx._on_envelope(env, kind, body)

    def _on_connection_msg(self, env, kind, body):
        if kind == "ping":  # §7.3
            self._enqueue_env(envelope("pong", pb.Pong(nonce=env.ping.nonce)))
        elif kind == "pong":
            self.pongs_received += 1
            with self._lock:
                ev = self._pings.pop(env.pong.nonce, None)
            if ev:
                ev.ok = True
                ev.set()
        elif kind == "bye":  # §7.4
            self.bye_reason = env.bye.reason
            self._teardown(TransportClosed(
                self.remote_uid, f"the peer said bye: {env.bye.reason!r}"))
        elif kind == "error":
            err = RemoteError(env.error)
            if env.error.kind >= 100:
                # §8.1: the peer is closing the connection. No reply
                # (§8.3: never answer a protocol error with one).
                log.warning("%r: peer closes: %s", self, err)
                self._teardown(TransportClosed(
                    self.remote_uid, f"the peer closed the connection: "
                    f"{err.kind_name}: {err.message}"))
            else:
                log.warning("%r: peer reports: %s", self, err)
                self.remote_errors.append(err)
        elif kind == "hello":
            raise ProtocolViolation(PROTOCOL, "a second hello", body)
        elif kind == "spawn_spec":
            raise ProtocolViolation(
                PROTOCOL, "spawn_spec on a connection that did not spawn "
                "this process", body)

    def _on_served_msg(self, env, kind, body):
        with self._lock:
            ctx = self._served.get(env.cid)
            if kind == "start":
                if ctx is not None:
                    raise ProtocolViolation(
                        PROTOCOL, f"start for running context {env.cid:x}",
                        body)
                self._start_callee(env)
            elif ctx is not None:
                ctx._on_envelope(env, kind, body)
            elif kind == "cancel_context":
                # §6.2: already ended or never existed: ack at once.
                self._reply(env, "cancel_ack", pb.CancelAck())
            elif kind == "cancel_actor":
                threading.Thread(target=self.peer._on_cancel_actor,
                                 args=(self, env), daemon=True,
                                 name="weft-cancel-actor").start()
            elif kind in _REGISTRY_REQUESTS:
                # §7.5: any request may be answered by error.
                self._reply(env, "error", make_error(
                    NO_SUCH_FUNCTION, "this process hosts no registrar",
                    self.peer.uid))
            else:
                log.debug("%r: %s for unknown served cid %x dropped", self,
                          kind, env.cid)

    def _reply(self, req_env, member, msg):
        """A SIDE_CALLEE reply on the request's cid, addressed back."""
        self._enqueue_env(envelope(member, msg, req_env.cid, SIDE_CALLEE,
                                   to_actor=req_env.from_actor,
                                   from_actor=req_env.to_actor))

    def _start_callee(self, env):
        """§6.2, unknown cid + start (lock held)."""
        s = env.start
        fn = self.peer._lookup(env.to_actor, s.func, s.kind)
        if fn is None or self.is_probe:
            why = (f"no function '{s.func}' is exposed" if fn is None
                   else "no contexts on a probe connection")
            if env.to_actor != 0:
                why = f"no actor with id {env.to_actor} here"
            self._reply(env, "error", make_error(NO_SUCH_FUNCTION, why,
                                                 self.peer.uid))
            return
        ctx = CalleeContext(self, env.cid, env)
        self._served[env.cid] = ctx
        ctx._send_env("start_ack", pb.StartAck(kind=s.kind))
        threading.Thread(target=ctx._run, args=(fn,), daemon=True,
                         name=f"weft-callee-{s.func}-{env.cid:x}").start()

    # -- heartbeat (§7.3) --

    def _heartbeat_main(self):
        dead_after = 3 * self.peer_interval
        tick = max(0.005, min(self.own_interval, dead_after) / 4)
        while not self.closed.wait(tick):
            if self._closing:
                return
            now = time.monotonic()
            if now - self._last_recv > dead_after:
                self._teardown(TransportClosed(
                    self.remote_uid, f"no frame from the peer for "
                    f"{dead_after:.3f} s (3 x its heartbeat interval)"),
                    linger=False)
                return
            # Ping a little before the interval ends, so the peer always
            # hears from us within it.
            if now - self._last_sent >= 0.75 * self.own_interval \
                    and not self._wq:
                self.pings_sent += 1
                self._enqueue_env(envelope("ping", pb.Ping(
                    nonce=next(self._nonces))))

    def ping(self, timeout=DEFAULT_TIMEOUT):
        """Sends ping, waits for the pong with the same nonce; returns the
        round trip in seconds."""
        nonce = next(self._nonces)
        ev = threading.Event()
        ev.ok = False
        with self._lock:
            if self._closing:
                raise self.close_error
            self._pings[nonce] = ev
        t0 = time.monotonic()
        self.pings_sent += 1
        self._enqueue_env(envelope("ping", pb.Ping(nonce=nonce)))
        if not ev.wait(timeout):
            raise TimeoutError(f"no pong for nonce {nonce}")
        if not ev.ok:
            raise self.close_error
        return time.monotonic() - t0

    # -- closing --

    def _protocol_error(self, kind, message, bad_msg):
        """§8.3: error{PROTOCOL or FRAME_TOO_LARGE} on cid 0, then close."""
        log.warning("%r: protocol error: %s: %s", self, kind_name(kind),
                    message)
        frame = encode_frame(envelope("error", make_error(
            kind, message, self.peer.uid, relay=False, bad_msg=bad_msg)))
        self._teardown(TransportClosed(
            self.remote_uid, f"closed after the peer's protocol error: "
            f"{kind_name(kind)}: {message}"), frame=frame)

    def _teardown(self, exc, frame=None, linger=True):
        """Starts closing (once): queues `frame` (an error or bye) and the
        write shutdown, ends every context (§6.5) and wakes the reader.
        linger: the reader waits (bounded) for the peer's EOF, so that our
        last frame is not lost to a reset."""
        with self._lock:
            if self._closing:
                return False
            if frame is not None:
                self._wq.append(frame)
            self._wq.append(_CLOSE_WRITE)
            self._wcv.notify_all()
            self._closing = True
            self._linger = linger
            self.close_error = exc
            opened = list(self._opened.values())
            served = list(self._served.values())
            self._opened.clear()
            self._served.clear()
            for ctx in opened:
                ctx._on_transport_closed(exc)
            for ctx in served:
                ctx._on_connection_lost()
            pings = list(self._pings.values())
            self._pings.clear()
        for ev in pings:  # ping() fails with close_error
            ev.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        log.debug("%r: closing: %s", self, exc.message)
        return True

    def _finish_close(self):
        """Reader thread, last: linger for EOF, let the writer flush, close
        the socket."""
        deadline = time.monotonic() + LINGER
        if self._linger and not self._eof:
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    ready, _, _ = select.select([self.sock], [], [], left)
                    if not ready or not self.sock.recv(RECV_CHUNK):
                        break
            except OSError:
                pass
        writer = self._threads[1] if len(self._threads) > 1 else None
        if writer is not None:
            writer.join(max(0.05, deadline - time.monotonic())
                        if self._linger else 0.2)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # unblocks a stuck writer
        except OSError:
            pass
        if writer is not None:
            writer.join(1.0)
        for s in (self.sock, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:
                pass
        self.closed.set()
        self.peer._connection_closed(self)

    def close(self, reason="", timeout=LINGER + 1.0):
        """§7.4: bye{reason}, then close. Waits (bounded) until closed."""
        self._teardown(TransportClosed(self.remote_uid,
                                       f"closed by this end: {reason!r}"),
                       frame=encode_frame(envelope("bye",
                                                   pb.Bye(reason=reason))))
        if threading.current_thread() not in self._threads:
            self.closed.wait(timeout)

    # -- caller API --

    def open_context(self, func, args=b"", to_actor=0, kind=CONTEXT, *,
                     msg_buffer_size=QUEUE_SIZE, allow_overruns=False,
                     timeout=DEFAULT_TIMEOUT):
        """§6.1: sends start and waits for start_ack and (CONTEXT) started.
        Returns (ctx, first_value); first_value is None for RUN. Raises
        RemoteError if the callee's final arrives first (e.g.
        NO_SUCH_FUNCTION instead of start_ack), MessagingError if a CONTEXT
        callee returned without started."""
        if self.is_probe:
            raise UsageError("no contexts on a probe connection (§5.2)")
        cid = self.peer.next_cid()
        start = pb.Start(func=func, kind=kind,
                         caller=self.peer.uid.to_pb())
        if args:
            start.args.value = bytes(args)
        frame = self._encode(envelope("start", start, cid, SIDE_CALLER,
                                      to_actor=to_actor))
        ctx = CallerContext(self, cid, func, kind, to_actor, msg_buffer_size,
                            allow_overruns)
        with self._lock:
            if self._closing:
                raise self.close_error
            self._opened[cid] = ctx
            self._enqueue(frame)
            try:
                _wait(ctx._cv, lambda: ctx.final is not None or (
                    ctx.started if kind == CONTEXT else ctx.acked),
                    _deadline(timeout), f"{func} to start")
            except TimeoutError:
                ctx.cancel(reason="open_context timed out")
                raise
            if ctx.remote_error is not None and not ctx.started:
                ctx.remote_error.context = ctx  # for callers that inspect it
                raise ctx.remote_error
            if kind == CONTEXT and not ctx.started:
                raise MessagingError(
                    f"{func} returned without calling started()")
        return ctx, ctx.started_value

    def run(self, func, args=b"", to_actor=0, timeout=DEFAULT_TIMEOUT):
        """A one-shot call (kind RUN): start_ack, then the final."""
        ctx, _ = self.open_context(func, args, to_actor, RUN,
                                   timeout=timeout)
        return ctx.result(timeout)

    def cancel_actor(self, to_actor=0, reason="", timeout=CANCEL_TIMEOUT):
        """§7.2: cancel_actor{requester = our uid} on a fresh cid; returns
        whether cancel_ack came within the timeout."""
        cid = self.peer.next_cid()
        req = _Request(self, cid, "cancel_actor")
        with self._lock:
            if self._closing:
                raise self.close_error
            self._opened[cid] = req
            self._enqueue_env(envelope("cancel_actor", pb.CancelActor(
                requester=self.peer.uid.to_pb(), reason=reason), cid,
                SIDE_CALLER, to_actor=to_actor))
            try:
                _wait(req._cv, lambda: req.reply is not None,
                      _deadline(timeout), "cancel_ack")
            except TimeoutError:
                self._opened.pop(cid, None)
                return False
        what, value = req.reply
        if what == "error" and not isinstance(value, TransportClosed):
            raise value
        return what == "ack"


# ------------------------------------------------------------------ peer

def exposed(*kinds):
    """Decorator: the call kinds a function accepts (default both). A start
    of another kind is answered NO_SUCH_FUNCTION (§6.2)."""
    def mark(fn):
        fn.weft_kinds = frozenset(kinds)
        return fn
    return mark


class Peer:
    """One weft process hosting one actor (wire actor id 0): its uid, the
    functions it serves ("ns:name" -> fn(ctx, args) -> bytes), a listener
    and its connections."""

    def __init__(self, name="py", functions=None, *, token=b"",
                 heartbeat_ms=DEFAULT_HEARTBEAT_MS, max_frame_size=0,
                 callee_queue_size=QUEUE_SIZE, uid=None, cid_start=None):
        _need_pb()
        if isinstance(token, str):
            token = token.encode()
        if len(token) > 64:
            raise ValueError("auth token over 64 bytes (§5.2)")
        if max_frame_size and not (HANDSHAKE_LIMIT <= max_frame_size):
            raise ValueError("max_frame_size must be 0 or >= 65536 (§2.1)")
        self.uid = uid or Uid.new(name)
        self.functions = dict(functions or {})
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.max_frame_size = max_frame_size
        self.callee_queue_size = callee_queue_size
        # §3: one process-wide counter from a random start, so a cid is
        # never reused on a connection.
        start = random.getrandbits(63) if cid_start is None else cid_start
        self._cids = itertools.count(start)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._conns = []
        self._listener = None
        self._lwake_r = self._lwake_w = None
        self.port = None
        self.refusals = []  # HandshakeRefused this end sent as acceptor
        self.cancelled = threading.Event()  # a cancel_actor arrived
        self.exited = threading.Event()     # close() finished

    def __repr__(self):
        return f"<Peer {self.uid}>"

    def next_cid(self):
        while True:
            cid = next(self._cids) % (1 << 64)
            if cid:
                return cid

    def connections(self):
        with self._lock:
            return list(self._conns)

    def wait_for_connection(self, name=None, timeout=DEFAULT_TIMEOUT):
        """The first open connection (to a peer named `name`)."""
        def find():
            for c in self._conns:
                if not c._closing and (name is None
                                       or c.remote_uid.name == name):
                    return c
            return None
        with self._cv:
            _wait(self._cv, lambda: find() is not None, _deadline(timeout),
                  "a connection")
            return find()

    def _lookup(self, to_actor, func, kind):
        fn = self.functions.get(func)
        if to_actor != 0 or fn is None or self.cancelled.is_set():
            return None
        if kind not in getattr(fn, "weft_kinds", (RUN, CONTEXT)):
            return None
        return fn

    def _hello(self, token=b"", version=PROTOCOL_VERSION, is_probe=False):
        h = pb.Hello(protocol_version=version, uid=self.uid.to_pb(),
                     pid=os.getpid(), auth_token=token, is_probe=is_probe,
                     max_frame_size=self.max_frame_size,
                     heartbeat_interval_ms=self.heartbeat_ms)
        return envelope("hello", h)

    def _refuse(self, sock, kind, message, bad_msg=b"", record=False):
        """§5.1 steps 3-5: error{kind>=100} on cid 0, then close. Returns
        the HandshakeRefused to raise; record: also keep it in
        self.refusals (before the peer can see the error), as the
        refusing end's own report (§5.1 step 6)."""
        exc = HandshakeRefused(kind, message, by_peer=False)
        log.warning("%r: %s", self, exc)
        if record:
            with self._cv:
                self.refusals.append(exc)
                self._cv.notify_all()
        try:
            _send_now(sock, envelope("error", make_error(
                kind, message, self.uid, relay=False, bad_msg=bad_msg)),
                HANDSHAKE_LIMIT)
        except OSError:
            pass
        _close_after_refusal(sock)
        return exc

    # -- dialing --

    def connect(self, host, port, *, token=None, timeout=CONNECT_TIMEOUT,
                protocol_version=PROTOCOL_VERSION, is_probe=False):
        """Dials and handshakes (§5). Returns a Connection; raises
        HandshakeRefused (either end refused), NotWeft, TransportClosed
        (closed before any hello), TimeoutError or OSError."""
        token = self.token if token is None else token
        if isinstance(token, str):
            token = token.encode()
        deadline = time.monotonic() + timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            _send_now(sock, self._hello(token, protocol_version, is_probe),
                      HANDSHAKE_LIMIT)
            reader = FrameReader(sock)
            try:
                body = reader.read(HANDSHAKE_LIMIT, deadline)
            except FrameHeaderError as e:
                raise NotWeft(f"the acceptor does not speak weft: {e}")
            except socket.timeout:
                raise TimeoutError("no hello from the acceptor within "
                                   f"{timeout} s") from None
            except ConnectionError as e:  # reset: closed all the same
                raise TransportClosed(None, "the acceptor closed the "
                                      f"connection before any hello ({e})")
            if body is None:
                raise TransportClosed(None, "the acceptor closed the "
                                      "connection before any hello")
            env, problem = parse_envelope(body)
            kind = env.WhichOneof("msg") if env is not None else None
            if problem is None and kind == "error" and env.cid == 0 \
                    and env.error.kind >= 100:
                raise HandshakeRefused(env.error.kind, env.error.message,
                                       by_peer=True)
            if problem or kind != "hello":
                raise self._refuse(sock, PROTOCOL, problem or
                                   f"expected hello, got {kind}", body)
            verdict = judge_hello(env.hello, from_dialer=False)
            if verdict:
                raise self._refuse(sock, *verdict)
        except BaseException:
            sock.close()
            raise
        conn = Connection(self, sock, reader, env.hello, "dialer",
                          probe=is_probe)
        self._add(conn)
        return conn

    def probe(self, host, port, timeout=CONNECT_TIMEOUT):
        """§5.2 is_probe: handshake, bye, close. Returns the acceptor's
        Hello."""
        conn = self.connect(host, port, is_probe=True, timeout=timeout)
        conn.close("probe")
        return conn.remote_hello

    # -- accepting --

    def listen(self, host="127.0.0.1", port=0):
        """Accepts connections on host:port (0: any free port); returns the
        bound port."""
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_PASSIVE)[0]
        ls = socket.socket(info[0], socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(info[4])
        ls.listen(64)
        self._listener = ls
        self._lwake_r, self._lwake_w = socket.socketpair()
        self.port = ls.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_main,
                                          daemon=True, name="weft-accept")
        self._acceptor.start()
        return self.port

    def _accept_main(self):
        """Owns the listening socket: close() wakes it, it closes it."""
        ls, wake = self._listener, self._lwake_r
        try:
            while True:
                ready, _, _ = select.select([ls, wake], [], [])
                if wake in ready:
                    return
                try:
                    sock, addr = ls.accept()
                except OSError as e:  # e.g. the dialer reset already
                    log.debug("accept: %s", e)
                    continue
                threading.Thread(target=self._accept_one,
                                 args=(sock, addr), daemon=True,
                                 name="weft-handshake").start()
        finally:
            for s in (ls, self._lwake_r, self._lwake_w):
                s.close()

    def _accept_one(self, sock, addr):
        """The acceptor's side of §5.1 for one new connection."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = FrameReader(sock)
        try:
            body = reader.read(HANDSHAKE_LIMIT,
                               time.monotonic() + FIRST_FRAME_TIMEOUT)
        except FrameHeaderError as e:
            # §2: the very first header is bad: not weft; say nothing.
            log.warning("%r: refused %s: %s", self, addr, e)
            body = None
        except OSError as e:  # a timeout (§5.1 step 2), a reset
            log.warning("%r: no hello from %s: %s", self, addr, e)
            body = None
        if body is None:
            sock.close()
            return
        env, problem = parse_envelope(body)
        kind = env.WhichOneof("msg") if env is not None else None
        if problem or kind != "hello":
            self._refuse(sock, PROTOCOL, problem or
                         f"expected hello, got {kind}", body, record=True)
            return
        verdict = judge_hello(env.hello, from_dialer=True, token=self.token)
        if verdict:
            self._refuse(sock, *verdict, record=True)
            return
        try:
            _send_now(sock, self._hello(), HANDSHAKE_LIMIT)
            self._add(Connection(self, sock, reader, env.hello, "acceptor"))
        except (OSError, TransportClosed) as e:  # gone, or we closed
            log.warning("%r: handshake with %s failed: %s", self, addr, e)
            sock.close()

    def _add(self, conn):
        with self._cv:
            if self.exited.is_set():
                conn.sock.close()
                raise TransportClosed(conn.remote_uid, "this peer has exited")
            self._conns.append(conn)
            self._cv.notify_all()
        conn._start()

    def _connection_closed(self, conn):
        with self._cv:
            if conn in self._conns:
                self._conns.remove(conn)
            self._cv.notify_all()

    # -- cancel_actor (§7.2), served --

    def _on_cancel_actor(self, conn, env):
        requester = Uid.from_pb(env.cancel_actor.requester)
        if env.to_actor != 0:  # no such actor: nothing left to cancel
            conn._reply(env, "cancel_ack", pb.CancelAck())
            return
        log.info("%r: cancelled by %s (%s)", self, requester,
                 env.cancel_actor.reason)
        self.cancelled.set()
        ctxs = []
        for c in self.connections():
            with c._lock:
                ctxs += list(c._served.values())
        for ctx in ctxs:  # step 1: every served context ends with a ctxc
            ctx._cancel_by(requester)
        deadline = time.monotonic() + CANCEL_ACTOR_GRACE
        for ctx in ctxs:
            with ctx._cv:
                try:
                    _wait(ctx._cv, lambda: ctx.finished, deadline, "tasks")
                except TimeoutError:
                    log.warning("%r ignored its cancel; sending its ctxc",
                                ctx)
                    ctx._send_final("error", ctx._ctxc())
        conn._reply(env, "cancel_ack", pb.CancelAck())  # step 2
        self.close(reason="cancelled")                  # step 3

    # -- shutdown --

    def close(self, reason="", timeout=LINGER + 1.0):
        """Stops listening and says bye on every connection."""
        with self._cv:
            if self.exited.is_set():
                return
            listener, self._listener = self._listener, None
        if listener is not None:
            self._lwake_w.send(b"x")
            self._acceptor.join(timeout)
        conns = self.connections()
        for c in conns:
            c._teardown(TransportClosed(c.remote_uid, f"closed by this end: "
                                        f"{reason!r}"),
                        frame=encode_frame(envelope("bye",
                                                    pb.Bye(reason=reason))))
        for c in conns:
            c.closed.wait(timeout)
        self.exited.set()
        with self._cv:
            self._cv.notify_all()


# ------------------------------------------------------------------ functions

def _i64(data):
    (v,) = struct.unpack("<q", data)
    return v


def _pack_i64(v):
    return struct.pack("<q", (v + (1 << 63)) % (1 << 64) - (1 << 63))


@exposed(RUN)
def fn_echo(ctx, args):
    """RUN: returns args."""
    return args


@exposed(RUN)
def fn_add(ctx, args):
    """RUN: two int64 LE -> their sum as int64 LE (wrapping)."""
    if len(args) != 16:
        raise ValueError(f"add wants 16 bytes (two int64 LE), got "
                         f"{len(args)}")
    a, b = struct.unpack("<qq", args)
    return _pack_i64(a + b)


@exposed(CONTEXT)
def fn_stream_echo(ctx, args):
    """CONTEXT: started(b"ready"); echoes every item; at the caller's stop
    (which stops our half too) returns b"done:<count>"."""
    ctx.started(b"ready")
    n = 0
    while True:
        try:
            item = ctx.recv()
        except EndOfChannel:
            break
        ctx.send(item)
        n += 1
    return b"done:%d" % n


@exposed(CONTEXT)
def fn_count_to(ctx, args):
    """CONTEXT: args int64 LE n; started(); items 0..n-1 as int64 LE; stop;
    returns b"sent"."""
    n = _i64(args)
    ctx.started()
    for i in range(n):
        ctx.send(_pack_i64(i))
    ctx.stop()
    return b"sent"


@exposed(RUN, CONTEXT)
def fn_fail(ctx, args):
    """Raises ValueError: the caller gets error{APP, "ValueError"}."""
    raise ValueError("boom from python")


@exposed(CONTEXT)
def fn_sleep_forever(ctx, args):
    """CONTEXT: started(), then waits until cancelled (the final is then a
    ContextCancelled)."""
    ctx.started()
    ctx.cancelled.wait()
    return b""


FLOOD_ITEMS = 10000


@exposed(CONTEXT)
def fn_flood(ctx, args):
    """CONTEXT: started(); sends 10,000 int64 LE items without waiting;
    then reads until the caller's stop. A caller refusing the overrun
    cancels it (send/recv raise its report) and the final relays that
    StreamOverrun (§6.4)."""
    ctx.started()
    for i in range(FLOOD_ITEMS):
        ctx.send(_pack_i64(i))
    while True:
        try:
            ctx.recv()
        except EndOfChannel:
            return b"flooded"


@exposed(CONTEXT)
def fn_slow_consumer(ctx, args):
    """CONTEXT: started(); reads nothing for 2 s (ends early once the
    context is over: the caller's sends overran us, our final was
    error{STREAM_OVERRUN}); then reads until the stop; returns
    b"consumed:<count>"."""
    ctx.started()
    ctx.cancelled.wait(2.0)
    n = 0
    while True:
        try:
            ctx.recv()
        except EndOfChannel:
            return b"consumed:%d" % n
        n += 1


def standard_functions(ns="py"):
    """The functions `serve` exposes, under namespace ns. The C side
    exposes the same under "c" for the client checks (README.md)."""
    fns = {"echo": fn_echo, "add": fn_add, "stream_echo": fn_stream_echo,
           "count_to": fn_count_to, "fail": fn_fail,
           "sleep_forever": fn_sleep_forever, "flood": fn_flood,
           "slow_consumer": fn_slow_consumer}
    return {f"{ns}:{k}": v for k, v in fns.items()}


# ------------------------------------------------------------------ checks

class CheckFailed(Exception):
    pass


def expect(cond, why):
    if not cond:
        raise CheckFailed(why)


def expect_remote(call, what):
    """Runs call(); returns the RemoteError it must raise."""
    try:
        got = call()
    except RemoteError as e:
        return e
    raise CheckFailed(f"{what}: expected an error, got {got!r}")


class Checks:
    """Checks one weft process (the C side, or `serve` itself) through the
    functions of standard_functions(ns). Each check uses a connection of
    its own and says bye at the end."""

    DEFAULT = ["ping", "echo", "add", "large", "stream", "count", "error",
               "cancel", "overrun", "slow", "nosuch", "badtoken",
               "badversion", "notweft"]
    OPT_IN = ["cancel_actor"]  # the target exits afterwards (§7.2)

    def __init__(self, host, port, *, token=b"", ns="c", name="pyclient",
                 timeout=10.0):
        self.host, self.port, self.ns = host, port, ns
        self.token = token.encode() if isinstance(token, str) else token
        self.timeout = timeout
        self.peer = Peer(name, token=self.token)

    def fn(self, name):
        return f"{self.ns}:{name}"

    def connect(self, **kw):
        return self.peer.connect(self.host, self.port, **kw)

    def run(self, names, out=print):
        """Runs the named checks ("all" = DEFAULT); prints PASS/FAIL lines;
        True if all passed."""
        todo = []
        for n in names:
            todo += self.DEFAULT if n == "all" else [n]
        ok = True
        for n in todo:
            method = getattr(self, "check_" + n, None)
            try:
                if method is None:
                    raise CheckFailed(f"no such check (known: "
                                      f"{', '.join(self.DEFAULT + self.OPT_IN)})")
                method()
                out(f"PASS {n}")
            except CheckFailed as e:
                ok = False
                out(f"FAIL {n}: {e}")
            except Exception as e:
                ok = False
                out(f"FAIL {n}: {type(e).__name__}: {e}")
                log.debug("check %s", n, exc_info=True)
        return ok

    # Each check_* raises CheckFailed with the reason.

    def check_ping(self):
        with self.connect() as c:
            c.ping(self.timeout)

    def check_echo(self):
        with self.connect() as c:
            for data in (b"hello weft \x00\xff", b""):
                got = c.run(self.fn("echo"), data, timeout=self.timeout)
                expect(got == data, f"echo {data!r} returned {got!r}")

    def check_add(self):
        with self.connect() as c:
            for a, b in ((40, 2), (-7, 3), (1 << 40, -(1 << 41))):
                got = c.run(self.fn("add"), struct.pack("<qq", a, b),
                            timeout=self.timeout)
                expect(got == _pack_i64(a + b),
                       f"add({a}, {b}) returned {got!r}")

    def check_large(self):
        """A 1 MiB RUN argument: the limit is the peer's max_frame_size
        after the handshake, not 64 KiB (§2.1)."""
        data = random.Random(7).randbytes(1 << 20)
        with self.connect() as c:
            got = c.run(self.fn("echo"), data, timeout=self.timeout)
            expect(got == data, f"1 MiB echo came back as {len(got)} "
                   "different bytes")

    def check_stream(self):
        with self.connect() as c:
            ctx, first = c.open_context(self.fn("stream_echo"),
                                        timeout=self.timeout)
            expect(first == b"ready", f"started value {first!r}")
            items = [b"item-%d" % i for i in range(100)]
            # Keep at most 32 in flight so neither queue (64) overruns.
            for lo in range(0, 100, 32):
                batch = items[lo:lo + 32]
                for it in batch:
                    ctx.send(it, timeout=self.timeout)
                for it in batch:
                    got = ctx.recv(self.timeout)
                    expect(got == it, f"echo {it!r} came back as {got!r}")
            ctx.stop()
            res = ctx.result(self.timeout)
            expect(res == b"done:100", f"result {res!r}, not b'done:100'")
            expect(ctx.peer_stopped, "no stop from the callee before its "
                   "return (sem §4.5)")

    def check_count(self):
        with self.connect() as c:
            ctx, first = c.open_context(self.fn("count_to"), _pack_i64(5),
                                        timeout=self.timeout)
            expect(first == b"", f"started value {first!r}, not empty")
            got = []
            while True:
                try:
                    got.append(_i64(ctx.recv(self.timeout)))
                except EndOfChannel:
                    break
            expect(got == [0, 1, 2, 3, 4], f"items {got}")
            res = ctx.result(self.timeout)
            expect(res == b"sent", f"result {res!r}")

    def check_error(self):
        with self.connect() as c:
            e = expect_remote(lambda: c.run(self.fn("fail"),
                                            timeout=self.timeout), "fail")
            them = c.remote_uid
            expect(e.kind == APP, f"kind {e.kind_name}, not APP")
            expect(e.boxed_type == "ValueError" == e.src_type,
                   f"boxed_type {e.boxed_type!r} src_type {e.src_type!r}, "
                   "not 'ValueError'")
            expect(e.src_uid == them,
                   f"src_uid {e.src_uid}, not the peer's {them}")
            expect(e.relay_path == [them],
                   f"relay_path {[str(u) for u in e.relay_path]}")
            expect(e.message, "empty message")

    def check_cancel(self):
        with self.connect() as c:
            ctx, _ = c.open_context(self.fn("sleep_forever"),
                                    timeout=self.timeout)
            acked = ctx.cancel(reason="check", timeout=self.timeout)
            expect(acked, "no cancel_ack")
            e = ctx.remote_error
            expect(e is not None, f"final {ctx.final!r}, not an error")
            expect(e.kind == CONTEXT_CANCELLED and
                   e.boxed_type == "ContextCancelled",
                   f"final {e}, not a ContextCancelled")
            expect(e.canceller == self.peer.uid,
                   f"canceller {e.canceller}, not us ({self.peer.uid})")
            expect(e.src_uid == c.remote_uid, f"src_uid {e.src_uid}")
            expect(ctx.cancel_acked, "cancel not absorbed")
            expect(ctx.result(self.timeout) is None,
                   "result() of an absorbed cancel is not None")

    def check_overrun(self):
        """We refuse the callee's flood (queue 64, overruns not allowed):
        error{STREAM_OVERRUN, sender = the callee, src = us} goes back; the
        callee dies of it and relays it as its final (§6.4)."""
        with self.connect() as c:
            ctx, _ = c.open_context(self.fn("flood"), timeout=self.timeout)
            e = expect_remote(lambda: ctx.result(self.timeout), "flood")
            them, us = c.remote_uid, self.peer.uid
            expect(ctx.overruns_reported >= 1,
                   "the flood never overran our queue")
            expect(e.kind == REMOTE and e.boxed_type == "RemoteActorError",
                   f"final {e}: not a relayed error (kind REMOTE)")
            expect(e.src_type == "StreamOverrun",
                   f"src_type {e.src_type!r}, not 'StreamOverrun'")
            expect(e.sender == them, f"sender {e.sender}, not {them}")
            expect(e.src_uid == us, f"src_uid {e.src_uid}, not us ({us})")
            expect(e.relay_path[-1:] == [them],
                   f"relay_path {[str(u) for u in e.relay_path]} does not "
                   "end with the callee")

    def check_slow(self):
        """We overrun the callee (it reads nothing for 2 s, queue 64): its
        final is error{STREAM_OVERRUN, sender = us, src = the callee}."""
        with self.connect() as c:
            ctx, _ = c.open_context(self.fn("slow_consumer"),
                                    timeout=self.timeout)

            def flood():
                for i in range(1000):
                    ctx.send(_pack_i64(i), timeout=self.timeout)
                return ctx.result(self.timeout)
            e = expect_remote(flood, "slow_consumer")
            them, us = c.remote_uid, self.peer.uid
            expect(e.kind == STREAM_OVERRUN and
                   e.boxed_type == "StreamOverrun",
                   f"final {e}, not a StreamOverrun")
            expect(e.sender == us, f"sender {e.sender}, not us ({us})")
            expect(e.src_uid == them, f"src_uid {e.src_uid}, not {them}")

    def check_nosuch(self):
        """error{NO_SUCH_FUNCTION} instead of start_ack (§6.2)."""
        with self.connect() as c:
            e = expect_remote(lambda: c.open_context(
                self.fn("missing"), kind=RUN, timeout=self.timeout),
                "missing")
            expect(not e.context.acked, "start_ack before the error")
            expect(e.kind == NO_SUCH_FUNCTION, f"{e}, not NO_SUCH_FUNCTION")
            expect(e.boxed_type == "NoSuchFunction",
                   f"boxed_type {e.boxed_type!r}")
            expect(e.src_uid == c.remote_uid, f"src_uid {e.src_uid}")

    def _expect_refusal(self, kind, **kw):
        try:
            c = self.connect(**kw)
        except HandshakeRefused as e:
            expect(e.by_peer, f"we refused, not the peer: {e}")
            expect(e.kind == kind, f"refused with {e.kind_name}: "
                   f"{e.message!r}, not {kind_name(kind)}")
            return
        c.close()
        raise CheckFailed("the handshake succeeded")

    def check_badtoken(self):
        expect(self.token, "needs --token: the target must require one")
        self._expect_refusal(AUTH_FAILED, token=self.token + b"-wrong")

    def check_badversion(self):
        self._expect_refusal(VERSION_MISMATCH, protocol_version=2)

    def check_notweft(self):
        """§2/§11.9: an HTTP request is closed without a reply."""
        s = socket.create_connection((self.host, self.port), self.timeout)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: weft\r\n\r\n")
            s.settimeout(self.timeout)
            try:
                got = s.recv(4096)
            except ConnectionResetError:
                got = b""
            expect(got == b"", f"the peer answered {got[:32]!r}")
        finally:
            s.close()

    def check_cancel_actor(self):
        c = self.connect()
        try:
            ctx, _ = c.open_context(self.fn("sleep_forever"),
                                    timeout=self.timeout)
            acked = c.cancel_actor(reason="check", timeout=self.timeout)
            expect(acked, "no cancel_ack for cancel_actor")
            # §7.2 step 1; not absorbed: we did not cancel the context.
            e = expect_remote(lambda: ctx.result(self.timeout),
                              "sleep_forever")
            expect(e.kind == CONTEXT_CANCELLED, f"final {e}")
            expect(e.canceller == self.peer.uid,
                   f"canceller {e.canceller}, not us")
            # Step 3: the target exits; its connections end.
            expect(c.closed.wait(self.timeout),
                   "the connection stayed open after cancel_actor")
        finally:
            c.close()


# ------------------------------------------------------------------ CLI

def _hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{s!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _serve(args):
    # The signal handler only sets a flag: taking a lock there (as
    # Event.set() does) can deadlock with the interrupted main thread.
    # Installed first: a test may send SIGTERM as soon as it reads LISTENING.
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *a: stop.append("SIGINT"))
    peer = Peer(args.name, standard_functions(args.ns), token=args.token,
                heartbeat_ms=args.heartbeat_ms)
    host, port = args.listen
    bound = peer.listen(host, port)
    print(f"LISTENING {bound}", flush=True)

    def watch_stdin():  # the parent's end of our stdin closed: exit
        try:
            while sys.stdin.buffer.read1(4096):
                pass
        except (OSError, ValueError):
            pass
        stop.append("stdin EOF")
    if not args.ignore_stdin:
        threading.Thread(target=watch_stdin, daemon=True).start()
    # Exit on a signal, stdin EOF, or cancel_actor (§7.2 step 3).
    while not stop and not peer.exited.is_set():
        time.sleep(0.05)
    log.info("serve: exiting (%s)", stop[0] if stop else "cancelled")
    peer.close("shutting down")
    return 0


def _client(args):
    checks = Checks(*args.connect, token=args.token, ns=args.ns,
                    name=args.name, timeout=args.timeout)
    ok = checks.run(args.check, out=lambda s: print(s, flush=True))
    return 0 if ok else 1


def main(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--pb2-dir", default=argparse.SUPPRESS,
                        help="directory holding weft_pb2.py")
    common.add_argument("-v", "--verbose", action="count",
                        default=argparse.SUPPRESS)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 parents=[common])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve", parents=[common],
                        help="serve the standard functions")
    sv.add_argument("--listen", type=_hostport, required=True,
                    metavar="HOST:PORT")
    sv.add_argument("--token", default="")
    sv.add_argument("--name", default="pyserve")
    sv.add_argument("--ns", default="py", help="function namespace")
    sv.add_argument("--heartbeat-ms", type=int, default=DEFAULT_HEARTBEAT_MS)
    sv.add_argument("--ignore-stdin", action="store_true",
                    help="do not exit at stdin EOF")
    cl = sub.add_parser("client", parents=[common],
                        help="run checks against a weft process")
    cl.add_argument("--connect", type=_hostport, required=True,
                    metavar="HOST:PORT")
    cl.add_argument("--token", default="")
    cl.add_argument("--name", default="pyclient")
    cl.add_argument("--ns", default="c", help="the target's namespace")
    cl.add_argument("--timeout", type=float, default=10.0)
    cl.add_argument("--check", nargs="+", required=True, metavar="NAME",
                    help="check names, or 'all'")
    args = ap.parse_args(argv)
    verbose = getattr(args, "verbose", 0)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose > 1 else
        logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(name)s %(threadName)s: %(message)s")
    load_pb2(getattr(args, "pb2_dir", None))
    return _serve(args) if args.cmd == "serve" else _client(args)


if __name__ == "__main__":
    sys.exit(main())

// The envelope codec (proto/codec.h): every message kind round-trips,
// decode is zero-copy and bounded, encode references large payloads, the
// envelope rules hold both ways, and bad bytes give WEFT_EPROTO.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include <pb_encode.h>

#include "codec.h"
}

namespace {

using Bytes = std::vector<uint8_t>;

weft_v1_ActorUid Uid(const char *name, uint8_t seed)
{
	weft_v1_ActorUid u{};
	std::strncpy(u.name, name, sizeof(u.name) - 1);
	for (int i = 0; i < 16; i++)
		u.uuid[i] = (uint8_t)(seed + i);
	return u;
}

weft_slice S(const std::string &s)
{
	return weft_slice{reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

std::string Str(weft_slice s)
{
	return std::string(reinterpret_cast<const char *>(s.ptr), s.len);
}

// The whole frame, header included, copying everything.
Bytes Encode(const weft_v1_Envelope &e, size_t ref_min = SIZE_MAX)
{
	weft_wire_frame f;
	EXPECT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_MAX, ref_min, &f));
	Bytes out(f.len);
	EXPECT_EQ(WEFT_OK, weft_wire_frame_flatten(&f, out.data(), out.size()));
	weft_wire_frame_fini(&f);
	return out;
}

Bytes BodyOf(const Bytes &frame)
{
	EXPECT_GE(frame.size(), 4u);
	EXPECT_EQ(frame.size() - 4, weft_frame_get_header(frame.data()));
	return Bytes(frame.begin() + 4, frame.end());
}

// Raw protobuf bytes of any message, bypassing the envelope rules (to
// build what a broken peer might send).
Bytes RawEncode(const pb_msgdesc_t *fields, const void *msg)
{
	Bytes buf(1 << 16);
	size_t n = 0;
	EXPECT_EQ(WEFT_OK, weft_wire_encode_msg(fields, msg, buf.data(),
	                                        buf.size(), &n));
	buf.resize(n);
	return buf;
}

weft_v1_Envelope Env(uint64_t cid, weft_v1_Side side, pb_size_t which)
{
	weft_v1_Envelope e{};
	e.cid = cid;
	e.side = side;
	e.which_msg = which;
	return e;
}

const weft_v1_Side NONE = weft_v1_Side_SIDE_UNSPECIFIED;
const weft_v1_Side CALLER = weft_v1_Side_SIDE_CALLER;
const weft_v1_Side CALLEE = weft_v1_Side_SIDE_CALLEE;

const std::string kArgs = "\x0a\x03" "abc";
const std::string kValue = "hello, world";
const std::string kMsg = "boom: division by zero";
const std::string kTb = "Traceback (most recent call last):\n  ...";
const std::string kReason = "user asked";

// Keeps the pre-encoded bytes of lazily decoded members alive.
struct Holder {
	std::vector<std::unique_ptr<Bytes>> keep;
	weft_slice Keep(Bytes b)
	{
		keep.push_back(std::make_unique<Bytes>(std::move(b)));
		return weft_slice{keep.back()->data(), keep.back()->size()};
	}
};

weft_v1_Hello SampleHello()
{
	weft_v1_Hello h{};
	h.protocol_version = WEFT_WIRE_PROTOCOL_VERSION;
	h.has_uid = true;
	h.uid = Uid("root", 0x10);
	h.pid = 4242;
	h.is_registrar = true;
	h.auth_token.size = 6;
	std::memcpy(h.auth_token.bytes, "s3cret", 6);
	h.max_frame_size = 1u << 20;
	h.heartbeat_interval_ms = 2000;
	h.features_count = 2;
	std::strcpy(h.features[0], "batch");
	std::strcpy(h.features[1], "x-trace");
	h.listen_addrs_count = 1;
	std::strcpy(h.listen_addrs[0].transport, "tcp");
	std::strcpy(h.listen_addrs[0].host, "127.0.0.1");
	h.listen_addrs[0].port = 7000;
	return h;
}

weft_v1_SpawnSpec SampleSpawnSpec()
{
	weft_v1_SpawnSpec s{};
	s.registry_addrs_count = 1;
	std::strcpy(s.registry_addrs[0].transport, "tcp");
	std::strcpy(s.registry_addrs[0].host, "127.0.0.1");
	s.registry_addrs[0].port = 1616;
	s.bind_addrs_count = 1;
	std::strcpy(s.bind_addrs[0].transport, "tcp");
	std::strcpy(s.bind_addrs[0].host, "127.0.0.1");
	s.enable_namespaces_count = 2;
	std::strcpy(s.enable_namespaces[0], "demo");
	std::strcpy(s.enable_namespaces[1], "math");
	s.runtime_vars_count = 1;
	std::strcpy(s.runtime_vars[0].key, "loglevel");
	std::strcpy(s.runtime_vars[0].value, "info");
	return s;
}

weft_v1_Registration SampleReg(const char *name, uint8_t seed, uint64_t id)
{
	weft_v1_Registration r{};
	r.has_uid = true;
	r.uid = Uid(name, seed);
	r.addrs_count = 1;
	std::strcpy(r.addrs[0].transport, "tcp");
	std::strcpy(r.addrs[0].host, "10.1.2.3");
	r.addrs[0].port = 9000;
	r.actor_id = id;
	return r;
}

weft_v1_Error SampleError()
{
	weft_v1_Error e{};
	e.kind = weft_v1_ErrorKind_ERROR_KIND_REMOTE;
	std::strcpy(e.src_type, "ZeroDivisionError");
	std::strcpy(e.boxed_type, "RemoteActorError");
	e.message = S(kMsg);
	e.traceback = S(kTb);
	e.has_src_uid = true;
	e.src_uid = Uid("worker", 0x20);
	e.relay_path_count = 2;
	e.relay_path[0] = Uid("worker", 0x20);
	e.relay_path[1] = Uid("middle", 0x30);
	e.has_canceller = true;
	e.canceller = Uid("root", 0x10);
	e.has_sender = true;
	e.sender = Uid("middle", 0x30);
	return e;
}

// One envelope of every kind v1 knows.
std::vector<weft_v1_Envelope> EveryKind(Holder &h)
{
	std::vector<weft_v1_Envelope> v;
	weft_v1_Envelope e;

	e = Env(7, CALLEE, weft_v1_Envelope_yield_item_tag);
	e.msg.yield_item.has_pld = true;
	e.msg.yield_item.pld.value = S(kValue);
	v.push_back(e);

	e = Env(7, CALLEE, weft_v1_Envelope_started_tag);
	e.msg.started.has_pld = true;
	std::strcpy(e.msg.started.pld.type_url, "type.googleapis.com/demo.Point");
	e.msg.started.pld.value = S(kArgs);
	v.push_back(e);

	e = Env(7, CALLEE, weft_v1_Envelope_return_value_tag);
	e.msg.return_value.has_pld = true;
	e.msg.return_value.pld.value = S(kValue);
	std::strcpy(e.msg.return_value.pld.content_type, "text/plain");
	v.push_back(e);

	v.push_back(Env(7, CALLER, weft_v1_Envelope_stop_tag));

	e = Env(7, CALLER, weft_v1_Envelope_start_tag);
	e.to_actor = 3;
	e.from_actor = 9;
	std::strcpy(e.msg.start.func, "demo:echo");
	e.msg.start.kind = weft_v1_FuncKind_FUNC_KIND_CONTEXT;
	e.msg.start.has_args = true;
	e.msg.start.args.value = S(kArgs);
	e.msg.start.has_caller = true;
	e.msg.start.caller = Uid("root", 0x10);
	v.push_back(e);

	e = Env(7, CALLEE, weft_v1_Envelope_start_ack_tag);
	e.msg.start_ack.kind = weft_v1_FuncKind_FUNC_KIND_CONTEXT;
	v.push_back(e);

	e = Env(7, CALLEE, weft_v1_Envelope_error_tag);
	e.msg.error = SampleError();
	v.push_back(e);

	e = Env(7, CALLER, weft_v1_Envelope_cancel_context_tag);
	e.msg.cancel_context.has_canceller = true;
	e.msg.cancel_context.canceller = Uid("root", 0x10);
	e.msg.cancel_context.reason = S(kReason);
	v.push_back(e);

	v.push_back(Env(7, CALLEE, weft_v1_Envelope_cancel_ack_tag));

	e = Env(8, CALLER, weft_v1_Envelope_cancel_actor_tag);
	e.msg.cancel_actor.has_requester = true;
	e.msg.cancel_actor.requester = Uid("root", 0x10);
	e.msg.cancel_actor.reason = S(kReason);
	v.push_back(e);

	e = Env(0, NONE, weft_v1_Envelope_ping_tag);
	e.msg.ping.nonce = 0x1122334455667788ull;
	v.push_back(e);

	e = Env(0, NONE, weft_v1_Envelope_pong_tag);
	e.msg.pong.nonce = 0x1122334455667788ull;
	v.push_back(e);

	weft_v1_Hello hello = SampleHello();
	e = Env(0, NONE, weft_v1_Envelope_hello_tag);
	e.msg.hello = h.Keep(RawEncode(weft_v1_Hello_fields, &hello));
	v.push_back(e);

	weft_v1_SpawnSpec spec = SampleSpawnSpec();
	e = Env(0, NONE, weft_v1_Envelope_spawn_spec_tag);
	e.msg.spawn_spec = h.Keep(RawEncode(weft_v1_SpawnSpec_fields, &spec));
	v.push_back(e);

	e = Env(0, NONE, weft_v1_Envelope_bye_tag);
	e.msg.bye.reason = S(kReason);
	v.push_back(e);

	e = Env(9, CALLER, weft_v1_Envelope_register_actor_tag);
	e.msg.register_actor.has_reg = true;
	e.msg.register_actor.reg = SampleReg("worker", 0x20, 5);
	v.push_back(e);

	e = Env(10, CALLER, weft_v1_Envelope_unregister_actor_tag);
	e.msg.unregister_actor.has_uid = true;
	e.msg.unregister_actor.uid = Uid("worker", 0x20);
	v.push_back(e);

	e = Env(11, CALLER, weft_v1_Envelope_find_actor_tag);
	std::strcpy(e.msg.find_actor.name, "worker");
	e.msg.find_actor.wait = true;
	v.push_back(e);

	weft_v1_FoundActors found{};
	found.regs_count = 2;
	found.regs[0] = SampleReg("worker", 0x20, 5);
	found.regs[1] = SampleReg("worker", 0x40, 6);
	e = Env(11, CALLEE, weft_v1_Envelope_found_actors_tag);
	e.msg.found_actors = h.Keep(RawEncode(weft_v1_FoundActors_fields, &found));
	v.push_back(e);

	v.push_back(Env(9, CALLEE, weft_v1_Envelope_ack_tag));
	return v;
}

TEST(Codec, EveryMessageKindRoundTrips)
{
	Holder h;
	auto all = EveryKind(h);
	std::vector<bool> seen(32, false);
	for (const auto &e : all) {
		SCOPED_TRACE(weft_wire_msg_name(e.which_msg));
		Bytes frame = Encode(e);
		Bytes body = BodyOf(frame);
		weft_v1_Envelope d{};
		ASSERT_EQ(WEFT_OK, weft_wire_decode(body.data(), body.size(), &d));
		EXPECT_EQ(e.which_msg, d.which_msg);
		EXPECT_EQ(e.cid, d.cid);
		EXPECT_EQ(e.side, d.side);
		EXPECT_EQ(e.to_actor, d.to_actor);
		EXPECT_EQ(e.from_actor, d.from_actor);
		// Encoding what was decoded gives the same bytes.
		EXPECT_EQ(frame, Encode(d));
		seen[e.which_msg] = true;
	}
	// Every oneof member of the schema was covered.
	for (pb_size_t t = weft_v1_Envelope_yield_item_tag;
	     t <= weft_v1_Envelope_ack_tag; t++)
		EXPECT_TRUE(seen[t]) << "no round trip for tag " << t;
	EXPECT_EQ(20u, all.size());
}

TEST(Codec, EveryHostMessageHasAWireForm)
{
	// runtime/host.h's reserved messages and the envelope kind that
	// carries each across processes (docs/protocol.md §4.3).
	struct {
		const char *host;
		pb_size_t wire;
	} map[] = {
		{"START", weft_v1_Envelope_start_tag},
		{"STARTED", weft_v1_Envelope_started_tag},
		{"YIELD", weft_v1_Envelope_yield_item_tag},
		{"STREAM_STOP", weft_v1_Envelope_stop_tag},
		{"RETURN", weft_v1_Envelope_return_value_tag},
		{"ERROR", weft_v1_Envelope_error_tag},
		{"CANCEL", weft_v1_Envelope_cancel_context_tag},
		{"CANCEL_ACK", weft_v1_Envelope_cancel_ack_tag},
		{"ACTOR_CANCEL", weft_v1_Envelope_cancel_actor_tag},
		{"ACTOR_CANCEL_ACK", weft_v1_Envelope_cancel_ack_tag},
	};
	for (auto &m : map)
		EXPECT_STRNE("unknown", weft_wire_msg_name(m.wire)) << m.host;
}

TEST(Codec, FieldsSurviveTheRoundTrip)
{
	Holder h;
	auto all = EveryKind(h);

	// start
	Bytes b = BodyOf(Encode(all[4]));
	weft_v1_Envelope d{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	EXPECT_STREQ("demo:echo", d.msg.start.func);
	EXPECT_EQ(weft_v1_FuncKind_FUNC_KIND_CONTEXT, d.msg.start.kind);
	EXPECT_EQ(kArgs, Str(d.msg.start.args.value));
	EXPECT_STREQ("root", d.msg.start.caller.name);
	EXPECT_EQ(0x1f, d.msg.start.caller.uuid[15]);
	EXPECT_EQ(3u, d.to_actor);
	EXPECT_EQ(9u, d.from_actor);

	// started: type_url
	b = BodyOf(Encode(all[1]));
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	EXPECT_STREQ("type.googleapis.com/demo.Point", d.msg.started.pld.type_url);

	// error: every field
	b = BodyOf(Encode(all[6]));
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	const weft_v1_Error &er = d.msg.error;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_REMOTE, er.kind);
	EXPECT_STREQ("ZeroDivisionError", er.src_type);
	EXPECT_STREQ("RemoteActorError", er.boxed_type);
	EXPECT_EQ(kMsg, Str(er.message));
	EXPECT_EQ(kTb, Str(er.traceback));
	EXPECT_STREQ("worker", er.src_uid.name);
	ASSERT_EQ(2u, er.relay_path_count);
	EXPECT_STREQ("middle", er.relay_path[1].name);
	EXPECT_STREQ("root", er.canceller.name);
	EXPECT_STREQ("middle", er.sender.name);

	// cancel_context
	b = BodyOf(Encode(all[7]));
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	EXPECT_STREQ("root", d.msg.cancel_context.canceller.name);
	EXPECT_EQ(kReason, Str(d.msg.cancel_context.reason));

	// ping nonce
	b = BodyOf(Encode(all[10]));
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	EXPECT_EQ(0x1122334455667788ull, d.msg.ping.nonce);
}

TEST(Codec, LazyMembersDecodeOnDemand)
{
	Holder h;
	auto all = EveryKind(h);

	Bytes b = BodyOf(Encode(all[12]));
	weft_v1_Envelope d{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	ASSERT_EQ(weft_v1_Envelope_hello_tag, d.which_msg);
	weft_v1_Hello hello{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode_hello(d.msg.hello, &hello));
	weft_v1_Hello want = SampleHello();
	EXPECT_EQ(RawEncode(weft_v1_Hello_fields, &want),
	          RawEncode(weft_v1_Hello_fields, &hello));
	EXPECT_STREQ("x-trace", hello.features[1]);
	EXPECT_EQ(7000u, hello.listen_addrs[0].port);
	EXPECT_EQ(6u, hello.auth_token.size);

	b = BodyOf(Encode(all[13]));
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	weft_v1_SpawnSpec spec{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode_spawn_spec(d.msg.spawn_spec, &spec));
	EXPECT_EQ(2u, spec.enable_namespaces_count);
	EXPECT_STREQ("math", spec.enable_namespaces[1]);
	ASSERT_EQ(1u, spec.runtime_vars_count);
	EXPECT_STREQ("loglevel", spec.runtime_vars[0].key);
	EXPECT_STREQ("info", spec.runtime_vars[0].value);
	EXPECT_EQ(1616u, spec.registry_addrs[0].port);

	b = BodyOf(Encode(all[18]));
	ASSERT_EQ(WEFT_OK, weft_wire_decode(b.data(), b.size(), &d));
	weft_v1_FoundActors found{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode_found_actors(d.msg.found_actors, &found));
	ASSERT_EQ(2u, found.regs_count);
	EXPECT_EQ(6u, found.regs[1].actor_id);
	EXPECT_EQ(0x40, found.regs[1].uid.uuid[0]);
	EXPECT_STREQ("10.1.2.3", found.regs[1].addrs[0].host);
}

TEST(Codec, GroupErrorCarriesItsMembers)
{
	weft_v1_Error m1 = SampleError();
	weft_v1_Error m2{};
	m2.kind = weft_v1_ErrorKind_ERROR_KIND_CONTEXT_CANCELLED;
	std::strcpy(m2.boxed_type, "ContextCancelled");
	m2.has_canceller = true;
	m2.canceller = Uid("root", 0x10);
	Bytes b1 = RawEncode(weft_v1_Error_fields, &m1);
	Bytes b2 = RawEncode(weft_v1_Error_fields, &m2);

	weft_v1_Envelope e = Env(5, CALLEE, weft_v1_Envelope_error_tag);
	e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_GROUP;
	std::strcpy(e.msg.error.boxed_type, "ExceptionGroup");
	e.msg.error.members.n = 2;
	e.msg.error.members.items[0] = weft_slice{b1.data(), b1.size()};
	e.msg.error.members.items[1] = weft_slice{b2.data(), b2.size()};
	Bytes body = BodyOf(Encode(e));

	weft_v1_Envelope d{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode(body.data(), body.size(), &d));
	ASSERT_EQ(2u, d.msg.error.members.n);
	weft_v1_Error got{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode_error(d.msg.error.members.items[0], &got));
	EXPECT_EQ(kMsg, Str(got.message));
	EXPECT_STREQ("middle", got.relay_path[1].name);
	ASSERT_EQ(WEFT_OK, weft_wire_decode_error(d.msg.error.members.items[1], &got));
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_CONTEXT_CANCELLED, got.kind);
	EXPECT_STREQ("root", got.canceller.name);
	// Member slices point into the frame, too.
	EXPECT_GE(d.msg.error.members.items[0].ptr, body.data());
	EXPECT_LE(d.msg.error.members.items[1].ptr + d.msg.error.members.items[1].len,
	          body.data() + body.size());
}

TEST(Codec, DecodedPayloadPointsIntoTheFrame)
{
	Bytes big(1 << 20);
	for (size_t i = 0; i < big.size(); i++)
		big[i] = (uint8_t)(i * 31);
	weft_v1_Envelope e = Env(3, CALLER, weft_v1_Envelope_yield_item_tag);
	e.msg.yield_item.has_pld = true;
	e.msg.yield_item.pld.value = weft_slice{big.data(), big.size()};
	Bytes body = BodyOf(Encode(e));

	weft_v1_Envelope d{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode(body.data(), body.size(), &d));
	const weft_slice &v = d.msg.yield_item.pld.value;
	ASSERT_EQ(big.size(), v.len);
	EXPECT_GE(v.ptr, body.data());
	EXPECT_EQ(body.data() + body.size(), v.ptr + v.len);
	EXPECT_EQ(0, std::memcmp(v.ptr, big.data(), big.size()));
}

TEST(Codec, LargePayloadIsSentByReference)
{
	Bytes big(1 << 20, 0xab);
	weft_v1_Envelope e = Env(3, CALLEE, weft_v1_Envelope_yield_item_tag);
	e.msg.yield_item.has_pld = true;
	std::strcpy(e.msg.yield_item.pld.content_type, "application/octet-stream");
	e.msg.yield_item.pld.value = weft_slice{big.data(), big.size()};

	weft_wire_frame f;
	ASSERT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
	                                    WEFT_WIRE_REF_MIN, &f));
	// header+prefix copied, the value referenced, content_type copied.
	ASSERT_EQ(3u, f.nseg);
	EXPECT_EQ(big.data(), f.seg[1].ptr);
	EXPECT_EQ(big.size(), f.seg[1].len);
	EXPECT_LT(f.copied, (size_t)WEFT_WIRE_INLINE) << "no heap for the rest";
	size_t sum = 0;
	for (size_t i = 0; i < f.nseg; i++)
		sum += f.seg[i].len;
	EXPECT_EQ(f.len, sum);
	// The same bytes as the copying encoder.
	Bytes flat(f.len);
	ASSERT_EQ(WEFT_OK, weft_wire_frame_flatten(&f, flat.data(), flat.size()));
	EXPECT_EQ(Encode(e), flat);
	EXPECT_EQ(WEFT_EMSGSIZE, weft_wire_frame_flatten(&f, flat.data(), 10));
	weft_wire_frame_fini(&f);
}

TEST(Codec, SmallFrameNeedsNoHeap)
{
	weft_v1_Envelope e = Env(3, CALLER, weft_v1_Envelope_stop_tag);
	weft_wire_frame f;
	ASSERT_EQ(WEFT_OK, weft_wire_encode(&e, 100, WEFT_WIRE_REF_MIN, &f));
	EXPECT_EQ(1u, f.nseg);
	EXPECT_EQ(nullptr, f.heap);
	EXPECT_EQ(f.len, f.copied);
	weft_wire_frame_fini(&f);
}

TEST(Codec, RunningOutOfSegmentsFallsBackToCopying)
{
	// A group of 16 members of 2 KiB each, plus message and traceback:
	// more references than segments.
	std::vector<Bytes> members;
	weft_v1_Envelope e = Env(5, CALLEE, weft_v1_Envelope_error_tag);
	e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_GROUP;
	std::string longmsg(3000, 'm');
	e.msg.error.message = S(longmsg);
	e.msg.error.traceback = S(longmsg);
	for (int i = 0; i < WEFT_SLICE_LIST_MAX; i++) {
		weft_v1_Error m{};
		m.kind = weft_v1_ErrorKind_ERROR_KIND_APP;
		m.message = S(longmsg);
		members.push_back(RawEncode(weft_v1_Error_fields, &m));
	}
	e.msg.error.members.n = WEFT_SLICE_LIST_MAX;
	for (int i = 0; i < WEFT_SLICE_LIST_MAX; i++)
		e.msg.error.members.items[i] =
			weft_slice{members[i].data(), members[i].size()};

	weft_wire_frame f;
	ASSERT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
	                                    WEFT_WIRE_REF_MIN, &f));
	EXPECT_LE(f.nseg, (size_t)WEFT_WIRE_MAX_SEGS);
	EXPECT_NE(nullptr, f.heap) << "the rest was copied";
	Bytes flat(f.len);
	ASSERT_EQ(WEFT_OK, weft_wire_frame_flatten(&f, flat.data(), flat.size()));
	EXPECT_EQ(Encode(e), flat);
	weft_wire_frame_fini(&f);

	Bytes body = BodyOf(flat);
	weft_v1_Envelope d{};
	ASSERT_EQ(WEFT_OK, weft_wire_decode(body.data(), body.size(), &d));
	EXPECT_EQ((uint32_t)WEFT_SLICE_LIST_MAX, d.msg.error.members.n);
}

TEST(Codec, EncodeRefusesFramesOverThePeerLimit)
{
	Bytes big(WEFT_FRAME_LIMIT_HANDSHAKE, 1);
	weft_v1_Envelope e = Env(3, CALLER, weft_v1_Envelope_yield_item_tag);
	e.msg.yield_item.has_pld = true;
	e.msg.yield_item.pld.value = weft_slice{big.data(), big.size()};
	weft_wire_frame f;
	EXPECT_EQ(WEFT_EMSGSIZE, weft_wire_encode(&e, WEFT_FRAME_LIMIT_HANDSHAKE,
	                                          WEFT_WIRE_REF_MIN, &f));
	EXPECT_EQ(0u, f.nseg);
	EXPECT_EQ(nullptr, f.heap);
	ASSERT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
	                                    WEFT_WIRE_REF_MIN, &f));
	weft_wire_frame_fini(&f);
}

// ---- envelope rules ----

struct BadCase {
	const char *what;
	std::function<void(weft_v1_Envelope &)> make;
};

std::vector<BadCase> BadEnvelopes()
{
	return {
		{"no message", [](weft_v1_Envelope &e) { e = Env(1, CALLER, 0); }},
		{"cid 0 with a side",
		 [](weft_v1_Envelope &e) { e = Env(0, CALLER, weft_v1_Envelope_stop_tag); }},
		{"cid without a side",
		 [](weft_v1_Envelope &e) { e = Env(4, NONE, weft_v1_Envelope_stop_tag); }},
		{"unknown side",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, (weft_v1_Side)7, weft_v1_Envelope_stop_tag);
		 }},
		{"start from the callee side",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLEE, weft_v1_Envelope_start_tag);
			 std::strcpy(e.msg.start.func, "a:b");
			 e.msg.start.kind = weft_v1_FuncKind_FUNC_KIND_RUN;
			 e.msg.start.has_caller = true;
			 e.msg.start.caller = Uid("x", 1);
		 }},
		{"start without caller",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_start_tag);
			 std::strcpy(e.msg.start.func, "a:b");
			 e.msg.start.kind = weft_v1_FuncKind_FUNC_KIND_RUN;
		 }},
		{"start without kind",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_start_tag);
			 std::strcpy(e.msg.start.func, "a:b");
			 e.msg.start.has_caller = true;
			 e.msg.start.caller = Uid("x", 1);
		 }},
		{"start with a zero uuid",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_start_tag);
			 std::strcpy(e.msg.start.func, "a:b");
			 e.msg.start.kind = weft_v1_FuncKind_FUNC_KIND_RUN;
			 e.msg.start.has_caller = true;
			 std::strcpy(e.msg.start.caller.name, "x");
		 }},
		{"return from the caller side",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_return_value_tag);
		 }},
		{"hello on a context",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_hello_tag);
		 }},
		{"ping on a context",
		 [](weft_v1_Envelope &e) { e = Env(4, CALLEE, weft_v1_Envelope_ping_tag); }},
		{"connection error kind on a context",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLEE, weft_v1_Envelope_error_tag);
			 e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_PROTOCOL;
		 }},
		{"cancel_context without canceller",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_cancel_context_tag);
		 }},
		{"cancel_actor without requester",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_cancel_actor_tag);
		 }},
		{"start_ack without kind",
		 [](weft_v1_Envelope &e) { e = Env(4, CALLEE, weft_v1_Envelope_start_ack_tag); }},
		{"find_actor without name",
		 [](weft_v1_Envelope &e) { e = Env(4, CALLER, weft_v1_Envelope_find_actor_tag); }},
		{"register_actor without uid",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_register_actor_tag);
		 }},
		{"unregister_actor without uid",
		 [](weft_v1_Envelope &e) {
			 e = Env(4, CALLER, weft_v1_Envelope_unregister_actor_tag);
		 }},
	};
}

TEST(CodecRules, BrokenEnvelopesAreRefusedBothWays)
{
	for (auto &c : BadEnvelopes()) {
		SCOPED_TRACE(c.what);
		weft_v1_Envelope e{};
		c.make(e);
		weft_wire_frame f;
		EXPECT_EQ(WEFT_EINVAL, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
		                                        WEFT_WIRE_REF_MIN, &f));
		// What a broken peer would send instead.
		Bytes raw = RawEncode(weft_v1_Envelope_fields, &e);
		weft_v1_Envelope d{};
		const char *why = nullptr;
		EXPECT_EQ(WEFT_EPROTO, weft_wire_decode_ex(raw.data(), raw.size(), &d, &why));
		EXPECT_NE(nullptr, why);
		EXPECT_EQ(0u, d.which_msg) << "a refused decode leaves nothing behind";
	}
}

TEST(CodecRules, ErrorMayTravelOnEverySide)
{
	// CALLEE: the final message; CALLER: an overrun report to the callee;
	// cid 0: about the connection or the sending process.
	for (auto side : {NONE, CALLER, CALLEE}) {
		weft_v1_Envelope e = Env(side == NONE ? 0 : 4, side,
		                         weft_v1_Envelope_error_tag);
		e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_STREAM_OVERRUN;
		Bytes body = BodyOf(Encode(e));
		weft_v1_Envelope d{};
		EXPECT_EQ(WEFT_OK, weft_wire_decode(body.data(), body.size(), &d));
	}
}

TEST(CodecRules, BadMsgOver256BytesIsRefused)
{
	Bytes junk(WEFT_WIRE_BAD_MSG_MAX + 1, 0);
	weft_v1_Envelope e = Env(0, NONE, weft_v1_Envelope_error_tag);
	e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_PROTOCOL;
	e.msg.error.bad_msg = weft_slice{junk.data(), junk.size()};
	weft_wire_frame f;
	EXPECT_EQ(WEFT_EINVAL, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
	                                        WEFT_WIRE_REF_MIN, &f));
	e.msg.error.bad_msg.len = WEFT_WIRE_BAD_MSG_MAX;
	ASSERT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
	                                    WEFT_WIRE_REF_MIN, &f));
	weft_wire_frame_fini(&f);
}

// ---- malformed bytes ----

Bytes Hex(const char *s)
{
	std::string digits;
	for (; *s; s++)
		if (*s != ' ')
			digits.push_back(*s);
	Bytes b;
	for (size_t i = 0; i + 1 < digits.size(); i += 2)
		b.push_back((uint8_t)std::stoi(digits.substr(i, 2), nullptr, 16));
	return b;
}

TEST(CodecMalformed, HandPickedBadBytes)
{
	struct {
		const char *what;
		const char *hex;
	} cases[] = {
		{"empty envelope", ""},
		{"unknown kind (field 99)", "0801 1001 9a0600"},
		{"unknown kind only", "9a0600"},
		{"truncated varint", "08ff"},
		{"length past the end", "0801 1002 3a05 0a02"},
		{"bytes field sent as a varint", "0801 1001 2a04 0a02 1005"},
		{"bytes field sent as fixed64", "0801 1001 2a0b 0a09 110102030405060708"},
		{"hello sent as a varint", "880101"},
		{"group member sent as a varint", "0801 1002 5a02 5005"},
		{"wire type 7", "0f"},
		{"field number 0", "0001"},
		{"name over 31 bytes",
		 "0801 1001 4a29 0a0161 1001 2222 0a20"
		 "6161616161616161616161616161616161616161616161616161616161616161"},
		{"uuid of 15 bytes",
		 "0801 1001 4a1b 0a0161 1001 2214 0a0178 120f"
		 "000102030405060708090a0b0c0d0e"},
		{"start-group wire type", "0b"},
	};
	for (auto &c : cases) {
		Bytes b = Hex(c.hex);
		weft_v1_Envelope d{};
		EXPECT_EQ(WEFT_EPROTO, weft_wire_decode(b.data(), b.size(), &d))
			<< c.what;
	}
}

TEST(CodecMalformed, TooManyRepeatsAreRefused)
{
	// 17 relay_path entries and 17 group members: one over each bound.
	weft_v1_ActorUid u = Uid("w", 1);
	Bytes uid = RawEncode(weft_v1_ActorUid_fields, &u);
	for (int field : {7, 10}) {
		Bytes err;
		for (int i = 0; i < 17; i++) {
			err.push_back((uint8_t)(field << 3 | 2));
			err.push_back((uint8_t)uid.size());
			err.insert(err.end(), uid.begin(), uid.end());
		}
		weft_v1_Error out{};
		EXPECT_EQ(WEFT_EPROTO,
		          weft_wire_decode_error(weft_slice{err.data(), err.size()}, &out))
			<< "field " << field;
		// 16 are fine.
		err.resize(err.size() - uid.size() - 2);
		EXPECT_EQ(WEFT_OK,
		          weft_wire_decode_error(weft_slice{err.data(), err.size()}, &out))
			<< "field " << field;
	}
}

TEST(CodecMalformed, EveryTruncationOfEveryKindIsHandled)
{
	Holder h;
	for (const auto &e : EveryKind(h)) {
		Bytes body = BodyOf(Encode(e));
		for (size_t n = 0; n < body.size(); n++) {
			Bytes cut(body.begin(), body.begin() + n);
			weft_v1_Envelope d{};
			weft_err rc = weft_wire_decode(cut.data(), cut.size(), &d);
			// A prefix may still be a valid envelope (a field boundary
			// after the message); it is never anything but OK or EPROTO.
			EXPECT_TRUE(rc == WEFT_OK || rc == WEFT_EPROTO);
		}
	}
}

TEST(CodecMalformed, RandomGarbageNeverCrashes)
{
	uint32_t x = 0xC0FFEE;
	auto rnd = [&x]() { return x = x * 1664525u + 1013904223u, x >> 8; };
	int ok = 0;
	for (int i = 0; i < 20000; i++) {
		Bytes b(rnd() % 64);
		for (auto &c : b)
			c = (uint8_t)rnd();
		weft_v1_Envelope d{};
		weft_err rc = weft_wire_decode(b.data(), b.size(), &d);
		ASSERT_TRUE(rc == WEFT_OK || rc == WEFT_EPROTO);
		if (rc == WEFT_OK) {
			ok++;
			// Whatever was accepted re-encodes.
			Bytes again = Encode(d);
			EXPECT_FALSE(again.empty());
		}
	}
	EXPECT_LT(ok, 20000);
}

TEST(CodecMalformed, MutatedValidEnvelopesNeverCrash)
{
	Holder h;
	auto all = EveryKind(h);
	uint32_t x = 7;
	auto rnd = [&x]() { return x = x * 1664525u + 1013904223u, x >> 8; };
	for (int i = 0; i < 20000; i++) {
		Bytes b = BodyOf(Encode(all[rnd() % all.size()]));
		for (int k = 0; k < 1 + (int)(rnd() % 4); k++)
			b[rnd() % b.size()] ^= (uint8_t)(1u << (rnd() % 8));
		weft_v1_Envelope d{};
		weft_err rc = weft_wire_decode(b.data(), b.size(), &d);
		ASSERT_TRUE(rc == WEFT_OK || rc == WEFT_EPROTO);
		if (rc == WEFT_OK && d.which_msg == weft_v1_Envelope_hello_tag) {
			weft_v1_Hello hh{};
			weft_err r2 = weft_wire_decode_hello(d.msg.hello, &hh);
			ASSERT_TRUE(r2 == WEFT_OK || r2 == WEFT_EPROTO);
		}
	}
}

// ---- handshake ----

TEST(Handshake, AcceptsAMatchingHello)
{
	weft_v1_Hello h = SampleHello();
	const char *why = nullptr;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED,
	          weft_wire_hello_check(&h, true,
	                                reinterpret_cast<const uint8_t *>("s3cret"),
	                                6, &why));
	EXPECT_STREQ("", why);
	// An acceptor that requires no token accepts any.
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED,
	          weft_wire_hello_check(&h, true, nullptr, 0, nullptr));
}

TEST(Handshake, RefusesAnotherVersion)
{
	weft_v1_Hello h = SampleHello();
	h.protocol_version = 2;
	const char *why = nullptr;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH,
	          weft_wire_hello_check(&h, true, nullptr, 0, &why));
	EXPECT_NE(nullptr, std::strstr(why, "version"));
	h.protocol_version = 0;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH,
	          weft_wire_hello_check(&h, false, nullptr, 0, &why));
}

TEST(Handshake, RefusesAWrongToken)
{
	weft_v1_Hello h = SampleHello();
	const char *why = nullptr;
	const auto *tok = reinterpret_cast<const uint8_t *>("s3cret!");
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED,
	          weft_wire_hello_check(&h, true, tok, 7, &why));
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED,
	          weft_wire_hello_check(&h, true, tok, 5, &why));
	h.auth_token.size = 0;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED,
	          weft_wire_hello_check(&h, true, tok, 6, &why));
	EXPECT_STREQ("authentication failed", why);
}

TEST(Handshake, RefusesBadUidAndTinyFrames)
{
	weft_v1_Hello h = SampleHello();
	h.has_uid = false;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE,
	          weft_wire_hello_check(&h, true, nullptr, 0, nullptr));
	h = SampleHello();
	h.max_frame_size = 1000;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE,
	          weft_wire_hello_check(&h, true, nullptr, 0, nullptr));
}

TEST(Handshake, AcceptorHelloCarriesNoTokenAndIsNoProbe)
{
	weft_v1_Hello h = SampleHello(); // has a token
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE,
	          weft_wire_hello_check(&h, false, nullptr, 0, nullptr));
	h.auth_token.size = 0;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED,
	          weft_wire_hello_check(&h, false, nullptr, 0, nullptr));
	h.is_probe = true;
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_HANDSHAKE,
	          weft_wire_hello_check(&h, false, nullptr, 0, nullptr));
}

TEST(Handshake, PeerLimitAndCloseKind)
{
	EXPECT_EQ(WEFT_FRAME_LIMIT_DEFAULT, weft_wire_peer_limit(0));
	EXPECT_EQ(WEFT_FRAME_LIMIT_MIN, weft_wire_peer_limit(5));
	EXPECT_EQ(WEFT_FRAME_LIMIT_MAX, weft_wire_peer_limit(0xffffffffu));
	EXPECT_EQ(1000000u, weft_wire_peer_limit(1000000u));
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_FRAME_TOO_LARGE,
	          weft_wire_close_kind(WEFT_EMSGSIZE));
	EXPECT_EQ(weft_v1_ErrorKind_ERROR_KIND_PROTOCOL,
	          weft_wire_close_kind(WEFT_EPROTO));
}

} // namespace

// Golden transcripts: byte-exact conversations, stored under golden/ and
// reproduced in docs/protocol.md §11. The encoder must produce exactly
// these bytes, and every frame must decode and re-encode to itself. A
// change here is a wire change: bump the protocol version or make it
// compatible, then regenerate with WEFT_GOLDEN_UPDATE=1 and update the doc.
//
// File format: '#' starts a comment line; every other line is one frame,
// "<who> <hex>", who = D (the dialer's process) or A (the acceptor's), hex =
// the frame with its 4-byte header, spaces ignored.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

extern "C" {
#include "codec.h"
}

namespace {

using Bytes = std::vector<uint8_t>;

struct Frame {
	char who;         // 'D' or 'A'
	std::string note; // comment written above it
	Bytes bytes;      // header included
};

// Builds a transcript; keeps every byte a slice points at alive.
struct Transcript {
	std::string name;
	std::string about;
	std::vector<Frame> frames;
	std::vector<std::unique_ptr<std::string>> keep;

	weft_slice S(const std::string &s)
	{
		keep.push_back(std::make_unique<std::string>(s));
		return weft_slice{
			reinterpret_cast<const uint8_t *>(keep.back()->data()),
			keep.back()->size()};
	}
	template <typename T>
	weft_slice Msg(const pb_msgdesc_t *fields, const T &m)
	{
		uint8_t buf[8192];
		size_t n = 0;
		EXPECT_EQ(WEFT_OK, weft_wire_encode_msg(fields, &m, buf, sizeof(buf), &n));
		return S(std::string(reinterpret_cast<char *>(buf), n));
	}
	void Add(char who, const std::string &note, const weft_v1_Envelope &e)
	{
		weft_wire_frame f;
		EXPECT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
		                                    WEFT_WIRE_REF_MIN, &f))
			<< name << ": " << note;
		Bytes b(f.len);
		EXPECT_EQ(WEFT_OK, weft_wire_frame_flatten(&f, b.data(), b.size()));
		weft_wire_frame_fini(&f);
		frames.push_back(Frame{who, note, b});
	}
	void AddRaw(char who, const std::string &note, const Bytes &body)
	{
		Bytes b(4);
		weft_frame_put_header(b.data(), (uint32_t)body.size());
		b.insert(b.end(), body.begin(), body.end());
		frames.push_back(Frame{who, note, b});
	}
};

// The two processes of every transcript.
weft_v1_ActorUid Root()
{
	weft_v1_ActorUid u{};
	std::strcpy(u.name, "root");
	const uint8_t id[16] = {0x6f, 0x1c, 0x3a, 0x52, 0x9d, 0x04, 0x4b, 0x7e,
	                        0x8a, 0x21, 0x5e, 0x90, 0xc4, 0x33, 0x0b, 0xd1};
	std::memcpy(u.uuid, id, 16);
	return u;
}

weft_v1_ActorUid Worker()
{
	weft_v1_ActorUid u{};
	std::strcpy(u.name, "worker");
	const uint8_t id[16] = {0x2b, 0x8e, 0x47, 0xf0, 0x15, 0xa6, 0x4c, 0x09,
	                        0xb3, 0x7d, 0x60, 0x1e, 0x92, 0x58, 0xaf, 0x44};
	std::memcpy(u.uuid, id, 16);
	return u;
}

weft_v1_Addr Addr(const char *host, uint32_t port)
{
	weft_v1_Addr a{};
	std::strcpy(a.transport, "tcp");
	std::strcpy(a.host, host);
	a.port = port;
	return a;
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

weft_v1_Hello DialerHello()
{
	weft_v1_Hello h{};
	h.protocol_version = 1;
	h.has_uid = true;
	h.uid = Worker();
	h.pid = 2002;
	h.auth_token.size = 6;
	std::memcpy(h.auth_token.bytes, "s3cret", 6);
	h.listen_addrs_count = 1;
	h.listen_addrs[0] = Addr("127.0.0.1", 7001);
	return h;
}

weft_v1_Envelope HelloEnv(Transcript &t, const weft_v1_Hello &h)
{
	weft_v1_Envelope e = Env(0, NONE, weft_v1_Envelope_hello_tag);
	e.msg.hello = t.Msg(weft_v1_Hello_fields, h);
	return e;
}

weft_v1_Envelope RefusalEnv(weft_v1_ErrorKind kind, const char *why, Transcript &t)
{
	weft_v1_Envelope e = Env(0, NONE, weft_v1_Envelope_error_tag);
	e.msg.error.kind = kind;
	std::strcpy(e.msg.error.boxed_type, "HandshakeRefused");
	std::strcpy(e.msg.error.src_type, "HandshakeRefused");
	e.msg.error.message = t.S(why);
	e.msg.error.has_src_uid = true;
	e.msg.error.src_uid = Root();
	return e;
}

weft_v1_Envelope StartEnv(Transcript &t, uint64_t cid, weft_v1_FuncKind kind,
                          const char *func, const std::string &args)
{
	weft_v1_Envelope e = Env(cid, CALLER, weft_v1_Envelope_start_tag);
	std::strcpy(e.msg.start.func, func);
	e.msg.start.kind = kind;
	if (!args.empty()) {
		e.msg.start.has_args = true;
		e.msg.start.args.value = t.S(args);
	}
	e.msg.start.has_caller = true;
	e.msg.start.caller = Root();
	return e;
}

weft_v1_Envelope AckEnv(uint64_t cid, weft_v1_FuncKind kind)
{
	weft_v1_Envelope e = Env(cid, CALLEE, weft_v1_Envelope_start_ack_tag);
	e.msg.start_ack.kind = kind;
	return e;
}

// Started, Yield, Return: one payload value.
weft_v1_Envelope PldEnv(Transcript &t, uint64_t cid, weft_v1_Side side,
                        pb_size_t which, const std::string &value)
{
	weft_v1_Envelope e = Env(cid, side, which);
	weft_v1_Payload p{};
	p.value = t.S(value);
	switch (which) {
	case weft_v1_Envelope_started_tag:
		e.msg.started.has_pld = true;
		e.msg.started.pld = p;
		break;
	case weft_v1_Envelope_yield_item_tag:
		e.msg.yield_item.has_pld = true;
		e.msg.yield_item.pld = p;
		break;
	default:
		e.msg.return_value.has_pld = true;
		e.msg.return_value.pld = p;
		break;
	}
	return e;
}

std::vector<Transcript> All()
{
	std::vector<Transcript> all;
	const auto CONTEXT = weft_v1_FuncKind_FUNC_KIND_CONTEXT;
	const auto RUN = weft_v1_FuncKind_FUNC_KIND_RUN;

	{
		Transcript t;
		t.name = "handshake";
		t.about = "the child \"worker\" (D) dials its parent \"root\" (A) with "
		          "token \"s3cret\"; root accepts and sends the spawn spec";
		t.Add('D', "hello v1 worker pid=2002 token=s3cret listen=127.0.0.1:7001",
		      HelloEnv(t, DialerHello()));
		weft_v1_Hello a{};
		a.protocol_version = 1;
		a.has_uid = true;
		a.uid = Root();
		a.pid = 1001;
		a.is_registrar = true;
		a.heartbeat_interval_ms = 2000;
		a.listen_addrs_count = 1;
		a.listen_addrs[0] = Addr("127.0.0.1", 1616);
		t.Add('A', "hello v1 root pid=1001 registrar heartbeat=2000ms "
		           "listen=127.0.0.1:1616", HelloEnv(t, a));
		weft_v1_SpawnSpec s{};
		s.registry_addrs_count = 1;
		s.registry_addrs[0] = Addr("127.0.0.1", 1616);
		s.bind_addrs_count = 1;
		s.bind_addrs[0] = Addr("127.0.0.1", 0);
		s.enable_namespaces_count = 1;
		std::strcpy(s.enable_namespaces[0], "demo");
		s.runtime_vars_count = 1;
		std::strcpy(s.runtime_vars[0].key, "loglevel");
		std::strcpy(s.runtime_vars[0].value, "info");
		weft_v1_Envelope e = Env(0, NONE, weft_v1_Envelope_spawn_spec_tag);
		e.msg.spawn_spec = t.Msg(weft_v1_SpawnSpec_fields, s);
		t.Add('A', "spawn_spec registry=127.0.0.1:1616 bind=127.0.0.1:0 "
		           "namespaces=[demo] loglevel=info", e);
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "refused_version";
		t.about = "a dialer speaking version 2 is refused; A closes after the error";
		weft_v1_Hello h = DialerHello();
		h.protocol_version = 2;
		t.Add('D', "hello v2 worker", HelloEnv(t, h));
		t.Add('A', "error VERSION_MISMATCH, then A closes",
		      RefusalEnv(weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH,
		                 "unsupported protocol version (this end speaks 1)", t));
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "refused_auth";
		t.about = "a dialer with the wrong token is refused; A closes after the error";
		weft_v1_Hello h = DialerHello();
		h.auth_token.size = 5;
		std::memcpy(h.auth_token.bytes, "guess", 5);
		t.Add('D', "hello v1 worker token=guess", HelloEnv(t, h));
		t.Add('A', "error AUTH_FAILED, then A closes",
		      RefusalEnv(weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED,
		                 "authentication failed", t));
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "context";
		t.about = "after the handshake, root (A) opens context cid=1 to "
		          "demo:echo in worker (D); one item each way, both stop, "
		          "worker returns";
		t.Add('A', "start cid=1 CALLER demo:echo CONTEXT args=\"hi\" caller=root",
		      StartEnv(t, 1, CONTEXT, "demo:echo", "hi"));
		t.Add('D', "start_ack cid=1 CALLEE CONTEXT", AckEnv(1, CONTEXT));
		t.Add('D', "started cid=1 CALLEE \"ready\"",
		      PldEnv(t, 1, CALLEE, weft_v1_Envelope_started_tag, "ready"));
		t.Add('A', "yield_item cid=1 CALLER \"ping-1\"",
		      PldEnv(t, 1, CALLER, weft_v1_Envelope_yield_item_tag, "ping-1"));
		t.Add('D', "yield_item cid=1 CALLEE \"ping-1\"",
		      PldEnv(t, 1, CALLEE, weft_v1_Envelope_yield_item_tag, "ping-1"));
		t.Add('A', "stop cid=1 CALLER", Env(1, CALLER, weft_v1_Envelope_stop_tag));
		t.Add('D', "stop cid=1 CALLEE", Env(1, CALLEE, weft_v1_Envelope_stop_tag));
		t.Add('D', "return_value cid=1 CALLEE \"1 item\"",
		      PldEnv(t, 1, CALLEE, weft_v1_Envelope_return_value_tag, "1 item"));
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "run";
		t.about = "one-shot calls: demo:add on worker's actor 2 with a "
		          "protobuf payload, then an unknown function";
		weft_v1_Envelope e = StartEnv(t, 2, RUN, "demo:add", "");
		e.to_actor = 2;
		e.msg.start.has_args = true;
		std::strcpy(e.msg.start.args.type_url, "type.googleapis.com/demo.Pair");
		e.msg.start.args.value = t.S(std::string("\x08\x02\x10\x03", 4));
		t.Add('A', "start cid=2 CALLER to_actor=2 demo:add RUN "
		           "args=demo.Pair{a:2,b:3}", e);
		e = AckEnv(2, RUN);
		e.from_actor = 2;
		t.Add('D', "start_ack cid=2 CALLEE from_actor=2 RUN", e);
		e = PldEnv(t, 2, CALLEE, weft_v1_Envelope_return_value_tag,
		           std::string("\x08\x05", 2));
		std::strcpy(e.msg.return_value.pld.type_url,
		            "type.googleapis.com/demo.Sum");
		e.from_actor = 2;
		t.Add('D', "return_value cid=2 CALLEE from_actor=2 demo.Sum{v:5}", e);
		t.Add('A', "start cid=3 CALLER nope:missing RUN",
		      StartEnv(t, 3, RUN, "nope:missing", ""));
		e = Env(3, CALLEE, weft_v1_Envelope_error_tag);
		e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_NO_SUCH_FUNCTION;
		std::strcpy(e.msg.error.src_type, "NoSuchFunction");
		std::strcpy(e.msg.error.boxed_type, "NoSuchFunction");
		e.msg.error.message = t.S("no function 'nope:missing' is exposed");
		e.msg.error.has_src_uid = true;
		e.msg.error.src_uid = Worker();
		e.msg.error.relay_path_count = 1;
		e.msg.error.relay_path[0] = Worker();
		t.Add('D', "error cid=3 CALLEE NO_SUCH_FUNCTION (instead of start_ack)", e);
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "cancel";
		t.about = "root cancels context cid=4: the final error comes first, "
		          "then the ack";
		t.Add('A', "start cid=4 CALLER demo:sleep CONTEXT",
		      StartEnv(t, 4, CONTEXT, "demo:sleep", ""));
		t.Add('D', "start_ack cid=4 CALLEE CONTEXT", AckEnv(4, CONTEXT));
		weft_v1_Envelope e = Env(4, CALLEE, weft_v1_Envelope_started_tag);
		t.Add('D', "started cid=4 CALLEE (no value)", e);
		e = Env(4, CALLER, weft_v1_Envelope_cancel_context_tag);
		e.msg.cancel_context.has_canceller = true;
		e.msg.cancel_context.canceller = Root();
		e.msg.cancel_context.reason = t.S("timeout");
		t.Add('A', "cancel_context cid=4 CALLER canceller=root \"timeout\"", e);
		e = Env(4, CALLEE, weft_v1_Envelope_error_tag);
		e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_CONTEXT_CANCELLED;
		std::strcpy(e.msg.error.src_type, "Cancelled");
		std::strcpy(e.msg.error.boxed_type, "ContextCancelled");
		e.msg.error.message = t.S("cancelled by root");
		e.msg.error.has_src_uid = true;
		e.msg.error.src_uid = Worker();
		e.msg.error.relay_path_count = 1;
		e.msg.error.relay_path[0] = Worker();
		e.msg.error.has_canceller = true;
		e.msg.error.canceller = Root();
		t.Add('D', "error cid=4 CALLEE CONTEXT_CANCELLED canceller=root", e);
		t.Add('D', "cancel_ack cid=4 CALLEE",
		      Env(4, CALLEE, weft_v1_Envelope_cancel_ack_tag));
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "control";
		t.about = "heartbeat, registry calls from worker, actor cancel from "
		          "root, graceful close";
		weft_v1_Envelope e = Env(0, NONE, weft_v1_Envelope_ping_tag);
		e.msg.ping.nonce = 1;
		t.Add('A', "ping nonce=1", e);
		e = Env(0, NONE, weft_v1_Envelope_pong_tag);
		e.msg.pong.nonce = 1;
		t.Add('D', "pong nonce=1", e);
		e = Env(5, CALLER, weft_v1_Envelope_register_actor_tag);
		e.msg.register_actor.has_reg = true;
		e.msg.register_actor.reg.has_uid = true;
		e.msg.register_actor.reg.uid = Worker();
		e.msg.register_actor.reg.addrs_count = 1;
		e.msg.register_actor.reg.addrs[0] = Addr("127.0.0.1", 7001);
		t.Add('D', "register_actor cid=5 CALLER worker @127.0.0.1:7001", e);
		t.Add('A', "ack cid=5 CALLEE", Env(5, CALLEE, weft_v1_Envelope_ack_tag));
		e = Env(6, CALLER, weft_v1_Envelope_find_actor_tag);
		std::strcpy(e.msg.find_actor.name, "root");
		t.Add('D', "find_actor cid=6 CALLER name=root", e);
		weft_v1_FoundActors f{};
		f.regs_count = 1;
		f.regs[0].has_uid = true;
		f.regs[0].uid = Root();
		f.regs[0].addrs_count = 1;
		f.regs[0].addrs[0] = Addr("127.0.0.1", 1616);
		e = Env(6, CALLEE, weft_v1_Envelope_found_actors_tag);
		e.msg.found_actors = t.Msg(weft_v1_FoundActors_fields, f);
		t.Add('A', "found_actors cid=6 CALLEE [root @127.0.0.1:1616]", e);
		e = Env(7, CALLER, weft_v1_Envelope_cancel_actor_tag);
		e.msg.cancel_actor.has_requester = true;
		e.msg.cancel_actor.requester = Root();
		e.msg.cancel_actor.reason = t.S("nursery exit");
		t.Add('A', "cancel_actor cid=7 CALLER requester=root", e);
		t.Add('D', "cancel_ack cid=7 CALLEE",
		      Env(7, CALLEE, weft_v1_Envelope_cancel_ack_tag));
		e = Env(0, NONE, weft_v1_Envelope_bye_tag);
		e.msg.bye.reason = t.S("cancelled");
		t.Add('D', "bye \"cancelled\", then D shuts down its write side", e);
		all.push_back(std::move(t));
	}
	{
		Transcript t;
		t.name = "protocol_error";
		t.about = "worker sends an envelope of a kind v1 does not know "
		          "(field 99); root answers PROTOCOL and closes";
		Bytes bad = {0x08, 0x01, 0x10, 0x01, 0x9a, 0x06, 0x00};
		t.AddRaw('D', "cid=1 CALLER, unknown field 99 (no v1 message)", bad);
		weft_v1_Envelope e = Env(0, NONE, weft_v1_Envelope_error_tag);
		e.msg.error.kind = weft_v1_ErrorKind_ERROR_KIND_PROTOCOL;
		std::strcpy(e.msg.error.boxed_type, "ProtocolError");
		std::strcpy(e.msg.error.src_type, "ProtocolError");
		e.msg.error.message = t.S("no message, or an unknown message kind");
		e.msg.error.has_src_uid = true;
		e.msg.error.src_uid = Root();
		e.msg.error.bad_msg =
			t.S(std::string(reinterpret_cast<const char *>(bad.data()), bad.size()));
		t.Add('A', "error PROTOCOL bad_msg=<the frame>, then A closes", e);
		all.push_back(std::move(t));
	}
	return all;
}

std::string ToHex(const Bytes &b)
{
	static const char *d = "0123456789abcdef";
	std::string s;
	for (size_t i = 0; i < b.size(); i++) {
		if (i == 4)
			s.push_back(' ');
		s.push_back(d[b[i] >> 4]);
		s.push_back(d[b[i] & 15]);
	}
	return s;
}

std::string Render(const Transcript &t)
{
	std::ostringstream o;
	o << "# weft wire protocol v1 - golden transcript \"" << t.name << "\"\n"
	  << "# " << t.about << ".\n"
	  << "# One frame per line: D (dialer's process) or A (acceptor's), then\n"
	  << "# the 4-byte big-endian length and the Envelope bytes, in hex.\n";
	for (const auto &f : t.frames)
		o << "# " << f.note << "\n" << f.who << " " << ToHex(f.bytes) << "\n";
	return o.str();
}

std::string Path(const Transcript &t)
{
	return std::string(WEFT_GOLDEN_DIR) + "/" + t.name + ".hex";
}

bool Parse(const std::string &path, std::vector<std::pair<char, Bytes>> *out)
{
	std::ifstream in(path);
	if (!in)
		return false;
	std::string line;
	while (std::getline(in, line)) {
		if (line.empty() || line[0] == '#')
			continue;
		std::string digits;
		for (size_t i = 1; i < line.size(); i++)
			if (line[i] != ' ')
				digits.push_back(line[i]);
		Bytes b;
		for (size_t i = 0; i + 1 < digits.size(); i += 2)
			b.push_back((uint8_t)std::stoi(digits.substr(i, 2), nullptr, 16));
		out->emplace_back(line[0], b);
	}
	return true;
}

TEST(Golden, EncoderProducesTheStoredBytes)
{
	const bool update = std::getenv("WEFT_GOLDEN_UPDATE") != nullptr;
	for (const auto &t : All()) {
		SCOPED_TRACE(t.name);
		if (update) {
			std::ofstream(Path(t)) << Render(t);
			continue;
		}
		std::vector<std::pair<char, Bytes>> stored;
		ASSERT_TRUE(Parse(Path(t), &stored)) << "missing " << Path(t);
		ASSERT_EQ(t.frames.size(), stored.size());
		for (size_t i = 0; i < stored.size(); i++) {
			EXPECT_EQ(t.frames[i].who, stored[i].first) << "frame " << i;
			EXPECT_EQ(ToHex(t.frames[i].bytes), ToHex(stored[i].second))
				<< "frame " << i << ": " << t.frames[i].note;
		}
	}
}

struct Collect {
	std::vector<Bytes> bodies;
	static weft_err Cb(void *arg, weft_frame *f)
	{
		static_cast<Collect *>(arg)->bodies.emplace_back(f->data, f->data + f->len);
		return WEFT_OK;
	}
};

TEST(Golden, StoredFramesDecodeAndReencodeToThemselves)
{
	for (const auto &t : All()) {
		SCOPED_TRACE(t.name);
		std::vector<std::pair<char, Bytes>> stored;
		ASSERT_TRUE(Parse(Path(t), &stored));
		for (char who : {'D', 'A'}) {
			// One direction's byte stream, through the frame decoder in
			// 3-byte chunks, as TCP might deliver it.
			Bytes stream;
			for (auto &f : stored)
				if (f.first == who)
					stream.insert(stream.end(), f.second.begin(), f.second.end());
			weft_frame_decoder d;
			weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
			Collect c;
			for (size_t off = 0; off < stream.size(); off += 3)
				ASSERT_EQ(WEFT_OK, weft_frame_feed(&d, stream.data() + off,
				                                   std::min<size_t>(3, stream.size() - off),
				                                   Collect::Cb, &c, nullptr));
			weft_frame_decoder_fini(&d);
			size_t k = 0;
			for (auto &f : stored) {
				if (f.first != who)
					continue;
				ASSERT_LT(k, c.bodies.size());
				const Bytes &body = c.bodies[k++];
				weft_v1_Envelope e{};
				weft_err rc = weft_wire_decode(body.data(), body.size(), &e);
				if (t.name == "protocol_error" && who == 'D') {
					EXPECT_EQ(WEFT_EPROTO, rc);
					continue;
				}
				ASSERT_EQ(WEFT_OK, rc);
				weft_wire_frame wf;
				ASSERT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_DEFAULT,
				                                    SIZE_MAX, &wf));
				Bytes again(wf.len);
				weft_wire_frame_flatten(&wf, again.data(), again.size());
				weft_wire_frame_fini(&wf);
				EXPECT_EQ(ToHex(f.second), ToHex(again));
				if (e.which_msg == weft_v1_Envelope_hello_tag) {
					weft_v1_Hello h{};
					ASSERT_EQ(WEFT_OK, weft_wire_decode_hello(e.msg.hello, &h));
				}
			}
			EXPECT_EQ(k, c.bodies.size());
		}
	}
}

TEST(Golden, HandshakeTranscriptsJudgeAsStored)
{
	const auto *tok = reinterpret_cast<const uint8_t *>("s3cret");
	struct {
		const char *file;
		weft_v1_ErrorKind want;
	} cases[] = {
		{"handshake", weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED},
		{"refused_version", weft_v1_ErrorKind_ERROR_KIND_VERSION_MISMATCH},
		{"refused_auth", weft_v1_ErrorKind_ERROR_KIND_AUTH_FAILED},
	};
	for (auto &c : cases) {
		std::vector<std::pair<char, Bytes>> stored;
		ASSERT_TRUE(Parse(std::string(WEFT_GOLDEN_DIR) + "/" + c.file + ".hex",
		                  &stored));
		const Bytes &f = stored[0].second;
		weft_v1_Envelope e{};
		ASSERT_EQ(WEFT_OK, weft_wire_decode(f.data() + 4, f.size() - 4, &e));
		weft_v1_Hello h{};
		ASSERT_EQ(WEFT_OK, weft_wire_decode_hello(e.msg.hello, &h));
		EXPECT_EQ(c.want, weft_wire_hello_check(&h, true, tok, 6, nullptr))
			<< c.file;
		if (c.want != weft_v1_ErrorKind_ERROR_KIND_UNSPECIFIED) {
			const Bytes &r = stored[1].second;
			ASSERT_EQ(WEFT_OK, weft_wire_decode(r.data() + 4, r.size() - 4, &e));
			EXPECT_EQ(c.want, e.msg.error.kind);
		}
	}
}

} // namespace

// The frame decoder (proto/frame.h): chunking at every byte boundary, zero
// copy for frames inside one chunk, limits checked before allocation,
// sticky errors, foreign protocols recognised.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "frame.h"
}

namespace {

using Bytes = std::vector<uint8_t>;

// An allocator that counts, and can be told to fail.
struct CountingAlloc {
	int allocs = 0;
	int frees = 0;
	size_t bytes = 0;
	bool fail = false;

	static void *Alloc(size_t n, void *arg)
	{
		auto *self = static_cast<CountingAlloc *>(arg);
		if (self->fail)
			return nullptr;
		self->allocs++;
		self->bytes += n;
		return std::malloc(n);
	}
	static void Free(void *p, size_t, void *arg)
	{
		static_cast<CountingAlloc *>(arg)->frees++;
		std::free(p);
	}
	weft_frame_alloc hooks() { return weft_frame_alloc{Alloc, Free, this}; }
};

// Collects delivered frames, remembering how each came.
struct Sink {
	std::vector<Bytes> frames;
	std::vector<bool> in_place;
	const uint8_t *chunk = nullptr; // the chunk being fed
	size_t chunk_len = 0;
	int stop_after = -1;            // return EINTERRUPT after this many
	bool take = false;              // take over owned buffers
	std::vector<uint8_t *> taken;
	weft_frame_decoder *raise_limit_of = nullptr;

	static weft_err Cb(void *arg, weft_frame *f)
	{
		auto *s = static_cast<Sink *>(arg);
		s->frames.emplace_back(f->data, f->data + f->len);
		bool inside = s->chunk != nullptr && f->data >= s->chunk &&
		              f->data + f->len <= s->chunk + s->chunk_len;
		s->in_place.push_back(f->owned == nullptr);
		if (f->owned == nullptr) {
			EXPECT_TRUE(inside) << "an unowned frame must point into the chunk";
		} else {
			EXPECT_EQ(f->data, f->owned);
		}
		if (s->take && f->owned != nullptr) {
			s->taken.push_back(f->owned);
			f->owned = nullptr;
		}
		if (s->raise_limit_of != nullptr) {
			EXPECT_EQ(WEFT_OK, weft_frame_decoder_set_limit(
			                           s->raise_limit_of,
			                           WEFT_FRAME_LIMIT_DEFAULT));
		}
		if (s->stop_after >= 0 && (int)s->frames.size() >= s->stop_after)
			return WEFT_EINTERRUPT;
		return WEFT_OK;
	}

	weft_err Feed(weft_frame_decoder *d, const uint8_t *p, size_t n,
	              size_t *used = nullptr)
	{
		chunk = p;
		chunk_len = n;
		return weft_frame_feed(d, p, n, Cb, this, used);
	}
};

Bytes Frame(const Bytes &body)
{
	uint8_t h[4];
	weft_frame_put_header(h, (uint32_t)body.size());
	Bytes out(h, h + 4);
	out.resize(4 + body.size());
	if (!body.empty())
		std::memcpy(out.data() + 4, body.data(), body.size());
	return out;
}

Bytes Body(size_t n, uint8_t seed)
{
	Bytes b(n);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(seed + i * 7);
	return b;
}

// Three frames of different sizes, back to back.
struct Stream {
	std::vector<Bytes> bodies{Body(1, 1), Body(300, 2), Body(5, 3)};
	Bytes bytes;
	Stream()
	{
		for (auto &b : bodies) {
			Bytes f = Frame(b);
			bytes.insert(bytes.end(), f.begin(), f.end());
		}
	}
};

TEST(FrameHeader, IsFourBytesBigEndian)
{
	uint8_t h[4];
	weft_frame_put_header(h, 0x01020304u);
	EXPECT_EQ(0x01, h[0]);
	EXPECT_EQ(0x04, h[3]);
	EXPECT_EQ(0x01020304u, weft_frame_get_header(h));
}

TEST(FrameDecoder, FrameInsideOneChunkIsHandedOutInPlace)
{
	Stream st;
	CountingAlloc ca;
	weft_frame_alloc a = ca.hooks();
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
	Sink sink;
	size_t used = 0;
	ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data(), st.bytes.size(), &used));
	EXPECT_EQ(st.bytes.size(), used);
	ASSERT_EQ(st.bodies, sink.frames);
	for (bool in_place : sink.in_place)
		EXPECT_TRUE(in_place);
	EXPECT_EQ(0, ca.allocs) << "no allocation for whole frames";
	EXPECT_TRUE(weft_frame_decoder_idle(&d));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, SplitAtEveryByteBoundary)
{
	Stream st;
	for (size_t cut = 0; cut <= st.bytes.size(); cut++) {
		CountingAlloc ca;
		weft_frame_alloc a = ca.hooks();
		weft_frame_decoder d;
		weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
		Sink sink;
		ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data(), cut));
		ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data() + cut,
		                             st.bytes.size() - cut));
		ASSERT_EQ(st.bodies, sink.frames) << "cut at " << cut;
		EXPECT_TRUE(weft_frame_decoder_idle(&d));
		EXPECT_EQ(ca.allocs, ca.frees) << "cut at " << cut;
		// Only a frame whose body straddles the cut was assembled.
		EXPECT_LE(ca.allocs, 1) << "cut at " << cut;
		weft_frame_decoder_fini(&d);
	}
}

TEST(FrameDecoder, SplitAtEveryPairOfBoundaries)
{
	Stream st;
	const size_t n = st.bytes.size();
	for (size_t i = 0; i <= n; i += 3) {
		for (size_t j = i; j <= n; j += 5) {
			weft_frame_decoder d;
			weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
			Sink sink;
			ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data(), i));
			ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data() + i, j - i));
			ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data() + j, n - j));
			ASSERT_EQ(st.bodies, sink.frames) << i << "," << j;
			weft_frame_decoder_fini(&d);
		}
	}
}

TEST(FrameDecoder, OneByteAtATime)
{
	Stream st;
	CountingAlloc ca;
	weft_frame_alloc a = ca.hooks();
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
	Sink sink;
	for (uint8_t b : st.bytes)
		ASSERT_EQ(WEFT_OK, sink.Feed(&d, &b, 1));
	ASSERT_EQ(st.bodies, sink.frames);
	// Every body was assembled in a buffer of exactly its size.
	EXPECT_EQ(3, ca.allocs);
	EXPECT_EQ(306u, ca.bytes);
	EXPECT_EQ(3, ca.frees);
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, EmptyFeedIsANoOp)
{
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, 100, nullptr);
	Sink sink;
	EXPECT_EQ(WEFT_OK, sink.Feed(&d, nullptr, 0));
	EXPECT_TRUE(sink.frames.empty());
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, OwnedBufferCanBeTakenOver)
{
	Bytes f = Frame(Body(50, 9));
	CountingAlloc ca;
	weft_frame_alloc a = ca.hooks();
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
	Sink sink;
	sink.take = true;
	ASSERT_EQ(WEFT_OK, sink.Feed(&d, f.data(), 10));
	ASSERT_EQ(WEFT_OK, sink.Feed(&d, f.data() + 10, f.size() - 10));
	ASSERT_EQ(1u, sink.taken.size());
	EXPECT_EQ(0, ca.frees) << "the decoder must not free a taken buffer";
	EXPECT_EQ(0, std::memcmp(sink.taken[0], f.data() + 4, 50));
	CountingAlloc::Free(sink.taken[0], 50, &ca);
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, LengthOverLimitIsRejectedBeforeAllocation)
{
	for (uint32_t len : {WEFT_FRAME_LIMIT_HANDSHAKE + 1, 0x7fffffffu,
	                     0xffffffffu}) {
		CountingAlloc ca;
		weft_frame_alloc a = ca.hooks();
		weft_frame_decoder d;
		weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
		uint8_t h[6];
		weft_frame_put_header(h, len);
		h[4] = h[5] = 0;
		Sink sink;
		// The header arrives in two pieces, then some body bytes.
		EXPECT_EQ(WEFT_OK, sink.Feed(&d, h, 2));
		EXPECT_EQ(WEFT_EMSGSIZE, sink.Feed(&d, h + 2, 4));
		EXPECT_EQ(0, ca.allocs) << len;
		EXPECT_EQ(WEFT_EMSGSIZE, weft_frame_decoder_error(&d));
		EXPECT_STRNE("", weft_frame_decoder_why(&d));
		// Sticky: the stream cannot be resynchronised.
		EXPECT_EQ(WEFT_EMSGSIZE, sink.Feed(&d, h, 6));
		EXPECT_TRUE(sink.frames.empty());
		weft_frame_decoder_fini(&d);
	}
}

TEST(FrameDecoder, LimitIsInclusive)
{
	Bytes f = Frame(Body(100, 4));
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, 100, nullptr);
	Sink sink;
	EXPECT_EQ(WEFT_OK, sink.Feed(&d, f.data(), f.size()));
	EXPECT_EQ(1u, sink.frames.size());
	weft_frame_decoder_fini(&d);

	Bytes g = Frame(Body(101, 4));
	weft_frame_decoder_init(&d, 100, nullptr);
	EXPECT_EQ(WEFT_EMSGSIZE, sink.Feed(&d, g.data(), g.size()));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, ZeroLengthFrameIsAProtocolError)
{
	uint8_t z[4] = {0, 0, 0, 0};
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink sink;
	EXPECT_EQ(WEFT_EPROTO, sink.Feed(&d, z, 4));
	EXPECT_STREQ("zero-length frame", weft_frame_decoder_why(&d));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, HttpRequestIsRejectedAsNotWeft)
{
	const std::string req =
		"GET / HTTP/1.1\r\nHost: localhost:7000\r\nUser-Agent: curl/7.88\r\n"
		"Accept: */*\r\n\r\n";
	const auto *p = reinterpret_cast<const uint8_t *>(req.data());
	// Whole, and split at every boundary: the same answer, no allocation.
	for (size_t cut = 0; cut <= req.size(); cut++) {
		CountingAlloc ca;
		weft_frame_alloc a = ca.hooks();
		weft_frame_decoder d;
		weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
		Sink sink;
		weft_err rc = sink.Feed(&d, p, cut);
		if (rc == WEFT_OK)
			rc = sink.Feed(&d, p + cut, req.size() - cut);
		EXPECT_EQ(WEFT_EPROTO, rc) << cut;
		EXPECT_NE(nullptr, std::strstr(weft_frame_decoder_why(&d), "HTTP"));
		EXPECT_EQ(0, ca.allocs);
		EXPECT_TRUE(sink.frames.empty());
		weft_frame_decoder_fini(&d);
	}
}

TEST(FrameDecoder, TlsClientHelloIsRejectedAsNotWeft)
{
	const uint8_t hello[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink sink;
	EXPECT_EQ(WEFT_EPROTO, sink.Feed(&d, hello, sizeof(hello)));
	EXPECT_NE(nullptr, std::strstr(weft_frame_decoder_why(&d), "TLS"));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, TextAfterTheFirstFrameIsJustTooLarge)
{
	Bytes s = Frame(Body(3, 1));
	for (char c : std::string("GET / HTTP/1.1\r\n\r\n"))
		s.push_back((uint8_t)c);
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink sink;
	EXPECT_EQ(WEFT_EMSGSIZE, sink.Feed(&d, s.data(), s.size()));
	EXPECT_EQ(1u, sink.frames.size());
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, TruncatedFrameIsHeldNotDelivered)
{
	Bytes f = Frame(Body(200, 5));
	CountingAlloc ca;
	weft_frame_alloc a = ca.hooks();
	for (size_t n = 1; n < f.size(); n++) {
		weft_frame_decoder d;
		weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
		Sink sink;
		ASSERT_EQ(WEFT_OK, sink.Feed(&d, f.data(), n));
		EXPECT_TRUE(sink.frames.empty()) << n;
		EXPECT_FALSE(weft_frame_decoder_idle(&d)) << n;
		// The connection ends here (EOF): fini frees the partial body.
		weft_frame_decoder_fini(&d);
	}
	EXPECT_EQ(ca.allocs, ca.frees);
}

TEST(FrameDecoder, LimitRaisedByTheCallbackAppliesToTheNextFrame)
{
	// A small first frame (the handshake), then one over 64 KiB.
	Bytes big = Body(WEFT_FRAME_LIMIT_HANDSHAKE + 10, 6);
	Bytes s = Frame(Body(8, 1));
	Bytes f2 = Frame(big);
	s.insert(s.end(), f2.begin(), f2.end());

	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink sink;
	sink.raise_limit_of = &d;
	ASSERT_EQ(WEFT_OK, sink.Feed(&d, s.data(), s.size()));
	ASSERT_EQ(2u, sink.frames.size());
	EXPECT_EQ(big, sink.frames[1]);
	weft_frame_decoder_fini(&d);

	// Without the raise, the second frame is refused.
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink strict;
	EXPECT_EQ(WEFT_EMSGSIZE, strict.Feed(&d, s.data(), s.size()));
	EXPECT_EQ(1u, strict.frames.size());
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, SetLimitRefusesValuesOutOfRange)
{
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	EXPECT_EQ(WEFT_EINVAL, weft_frame_decoder_set_limit(&d, 1000));
	EXPECT_EQ(WEFT_EINVAL,
	          weft_frame_decoder_set_limit(&d, WEFT_FRAME_LIMIT_MAX + 1));
	EXPECT_EQ(WEFT_OK,
	          weft_frame_decoder_set_limit(&d, WEFT_FRAME_LIMIT_MAX));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, CallbackCanStopTheFeedAndItResumes)
{
	Stream st;
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink sink;
	sink.stop_after = 1;
	size_t used = 0;
	EXPECT_EQ(WEFT_EINTERRUPT,
	          sink.Feed(&d, st.bytes.data(), st.bytes.size(), &used));
	EXPECT_EQ(5u, used) << "exactly the first frame was consumed";
	EXPECT_EQ(WEFT_OK, weft_frame_decoder_error(&d)) << "not sticky";
	sink.stop_after = -1;
	ASSERT_EQ(WEFT_OK, sink.Feed(&d, st.bytes.data() + used,
	                             st.bytes.size() - used));
	EXPECT_EQ(st.bodies, sink.frames);
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, ReadsCanLandInPlace)
{
	Bytes body = Body(10000, 8);
	Bytes f = Frame(body);
	CountingAlloc ca;
	weft_frame_alloc a = ca.hooks();
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
	Sink sink;
	uint8_t *dst = nullptr;
	EXPECT_EQ(0u, weft_frame_decoder_room(&d, &dst));
	ASSERT_EQ(WEFT_OK, sink.Feed(&d, f.data(), 100));
	size_t room = weft_frame_decoder_room(&d, &dst);
	ASSERT_EQ(f.size() - 100, room);
	EXPECT_EQ(WEFT_EINVAL, weft_frame_decoder_commit(&d, room + 1, Sink::Cb, &sink));
	// Two "reads" straight into the body.
	std::memcpy(dst, f.data() + 100, 5000);
	ASSERT_EQ(WEFT_OK, weft_frame_decoder_commit(&d, 5000, Sink::Cb, &sink));
	EXPECT_TRUE(sink.frames.empty());
	room = weft_frame_decoder_room(&d, &dst);
	ASSERT_EQ(f.size() - 5100, room);
	std::memcpy(dst, f.data() + 5100, room);
	sink.chunk = nullptr;
	ASSERT_EQ(WEFT_OK, weft_frame_decoder_commit(&d, room, Sink::Cb, &sink));
	ASSERT_EQ(1u, sink.frames.size());
	EXPECT_EQ(body, sink.frames[0]);
	EXPECT_EQ(1, ca.allocs);
	EXPECT_EQ(0u, weft_frame_decoder_room(&d, &dst));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, AllocationFailureIsStickyEnomem)
{
	Bytes f = Frame(Body(100, 1));
	CountingAlloc ca;
	ca.fail = true;
	weft_frame_alloc a = ca.hooks();
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, &a);
	Sink sink;
	EXPECT_EQ(WEFT_ENOMEM, sink.Feed(&d, f.data(), 50));
	EXPECT_EQ(WEFT_ENOMEM, sink.Feed(&d, f.data() + 50, 54));
	weft_frame_decoder_fini(&d);
}

TEST(FrameDecoder, RandomChunkingDeliversTheSameFrames)
{
	// Many frames of assorted sizes, cut by a fixed pseudo-random sequence.
	std::vector<Bytes> bodies;
	Bytes s;
	uint32_t x = 12345;
	auto rnd = [&x]() { return x = x * 1103515245u + 12345u, (x >> 8); };
	for (int i = 0; i < 200; i++) {
		bodies.push_back(Body(1 + rnd() % 3000, (uint8_t)i));
		Bytes f = Frame(bodies.back());
		s.insert(s.end(), f.begin(), f.end());
	}
	weft_frame_decoder d;
	weft_frame_decoder_init(&d, WEFT_FRAME_LIMIT_HANDSHAKE, nullptr);
	Sink sink;
	for (size_t off = 0; off < s.size();) {
		size_t n = std::min<size_t>(s.size() - off, rnd() % 5000);
		ASSERT_EQ(WEFT_OK, sink.Feed(&d, s.data() + off, n));
		off += n;
	}
	EXPECT_EQ(bodies, sink.frames);
	weft_frame_decoder_fini(&d);
}

} // namespace

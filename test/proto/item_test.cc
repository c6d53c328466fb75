// test/proto/item_test.cc - the per-item fast path (proto/item.h) writes
// exactly nanopb's bytes and reads exactly what the full decoder reads;
// anything it does not fully understand it leaves to the full decoder.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "codec.h"
#include "item.h"

namespace {

std::vector<uint8_t> NanopbBytes(const weft_wire_item &it) {
  weft_v1_Envelope e;
  std::memset(&e, 0, sizeof(e));
  e.cid = it.cid;
  e.side = it.side;
  e.to_actor = it.to_actor;
  e.from_actor = it.from_actor;
  e.which_msg = it.which;
  weft_slice v{it.pld, it.pld_len};
  bool has = it.pld_len > 0;
  switch (it.which) {
    case weft_v1_Envelope_yield_item_tag:
      e.msg.yield_item.has_pld = has;
      e.msg.yield_item.pld.value = v;
      break;
    case weft_v1_Envelope_started_tag:
      e.msg.started.has_pld = has;
      e.msg.started.pld.value = v;
      break;
    case weft_v1_Envelope_return_value_tag:
      e.msg.return_value.has_pld = has;
      e.msg.return_value.pld.value = v;
      break;
    case weft_v1_Envelope_start_ack_tag:
      e.msg.start_ack.kind = static_cast<weft_v1_FuncKind>(it.ack_kind);
      break;
    default:
      break;
  }
  weft_wire_frame f;
  EXPECT_EQ(WEFT_OK, weft_wire_encode(&e, WEFT_FRAME_LIMIT_MAX, SIZE_MAX, &f));
  std::vector<uint8_t> out(f.len);
  EXPECT_EQ(WEFT_OK, weft_wire_frame_flatten(&f, out.data(), out.size()));
  weft_wire_frame_fini(&f);
  out.erase(out.begin(), out.begin() + 4);  // the frame header
  return out;
}

const pb_size_t kKinds[] = {
    weft_v1_Envelope_yield_item_tag, weft_v1_Envelope_started_tag,
    weft_v1_Envelope_return_value_tag, weft_v1_Envelope_stop_tag,
    weft_v1_Envelope_start_ack_tag, weft_v1_Envelope_cancel_ack_tag};

TEST(Item, EncodesExactlyAsNanopbAndDecodesBack) {
  std::mt19937_64 rng(42);
  std::vector<uint8_t> payload(3000);
  for (auto &b : payload) b = static_cast<uint8_t>(rng());
  const uint64_t ids[] = {1, 127, 128, 300, 1ull << 35, ~0ull, 1ull << 63};
  for (pb_size_t k : kKinds) {
    for (int i = 0; i < 400; i++) {
      weft_wire_item it{};
      it.which = k;
      it.cid = ids[rng() % 7];
      bool callee = k != weft_v1_Envelope_yield_item_tag &&
                    k != weft_v1_Envelope_stop_tag;
      it.side = callee || rng() % 2 ? weft_v1_Side_SIDE_CALLEE
                                    : weft_v1_Side_SIDE_CALLER;
      it.to_actor = rng() % 3 ? ids[rng() % 7] : 0;
      it.from_actor = rng() % 3 ? ids[rng() % 7] : 0;
      if (k == weft_v1_Envelope_start_ack_tag) it.ack_kind = 1 + rng() % 2;
      size_t len = rng() % 3 == 0 ? 0 : rng() % payload.size();
      if (k == weft_v1_Envelope_yield_item_tag ||
          k == weft_v1_Envelope_started_tag ||
          k == weft_v1_Envelope_return_value_tag) {
        it.pld = payload.data();
        it.pld_len = len;
      }
      std::vector<uint8_t> buf(it.pld_len + WEFT_WIRE_ITEM_OVERHEAD);
      size_t n = weft_wire_item_encode(&it, buf.data(), buf.size());
      ASSERT_GT(n, 0u);
      buf.resize(n);
      ASSERT_EQ(NanopbBytes(it), buf) << "kind " << k << " len " << len;
      weft_wire_item back;
      ASSERT_TRUE(weft_wire_item_decode(buf.data(), buf.size(), &back));
      EXPECT_EQ(it.which, back.which);
      EXPECT_EQ(it.cid, back.cid);
      EXPECT_EQ(it.side, back.side);
      EXPECT_EQ(it.to_actor, back.to_actor);
      EXPECT_EQ(it.from_actor, back.from_actor);
      EXPECT_EQ(it.pld_len, back.pld_len);
      EXPECT_EQ(it.ack_kind, back.ack_kind);
      if (it.pld_len) {
        EXPECT_EQ(0, std::memcmp(it.pld, back.pld, it.pld_len));
      }
    }
  }
}

TEST(Item, TooSmallABufferIsRefused) {
  uint8_t data[100] = {};
  weft_wire_item it{};
  it.which = weft_v1_Envelope_yield_item_tag;
  it.cid = 1;
  it.side = weft_v1_Side_SIDE_CALLER;
  it.pld = data;
  it.pld_len = sizeof(data);
  uint8_t buf[64];
  EXPECT_EQ(0u, weft_wire_item_encode(&it, buf, sizeof(buf)));
  it.which = weft_v1_Envelope_start_tag;  // not a per-item kind
  std::vector<uint8_t> big(512);
  EXPECT_EQ(0u, weft_wire_item_encode(&it, big.data(), big.size()));
}

// What the fast path leaves to the full decoder, which then decides.
TEST(Item, DeclinesWhatItDoesNotFullyUnderstand) {
  struct Case {
    const char *why;
    std::vector<uint8_t> bytes;
  } cases[] = {
      {"no cid", {0x10, 0x01, 0x2a, 0x00}},
      {"side 0 with a cid", {0x08, 0x01, 0x2a, 0x00}},
      {"side 3", {0x08, 0x01, 0x10, 0x03, 0x2a, 0x00}},
      {"started from the caller", {0x08, 0x01, 0x10, 0x01, 0x32, 0x00}},
      {"two members", {0x08, 0x01, 0x10, 0x01, 0x2a, 0x00, 0x42, 0x00}},
      {"a type_url", {0x08, 0x01, 0x10, 0x01, 0x2a, 0x05, 0x0a, 0x03, 0x0a,
                      0x01, 0x78}},
      {"an unknown field", {0x08, 0x01, 0x10, 0x01, 0x2a, 0x00, 0x48, 0x01}},
      {"a start", {0x08, 0x01, 0x10, 0x01, 0x4a, 0x00}},
      {"start_ack without kind", {0x08, 0x01, 0x10, 0x02, 0x52, 0x00}},
      {"cut off", {0x08, 0x01, 0x10, 0x01, 0x2a, 0x05, 0x0a}},
      {"an 11-byte varint", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0x01}},
      {"cid twice", {0x08, 0x01, 0x08, 0x02, 0x10, 0x01, 0x2a, 0x00}},
  };
  for (const Case &c : cases) {
    weft_wire_item it;
    EXPECT_FALSE(weft_wire_item_decode(c.bytes.data(), c.bytes.size(), &it))
        << c.why;
  }
}

}  // namespace

// libFuzzer target: the NVMe/TCP PDU codec (native/common/nvme_tcp), both roles.
//
// Input: a control byte, a chunking seed, then the byte stream. The control byte picks the
// role (target or host receiver), whether the ICReq/ICResp exchange is already done (and with
// which digests and data alignment), whether data goes through Feed() or the direct-read path
// (DirectIov/Advance), and a third mode that checks the builders against the receiver: fields
// taken from the input are built into a PDU, which the receiver must accept and give back.
//
// Checked on every input (abort = a finding): no memory error (ASan/UBSan), Feed() never
// consumes more than it was given, the data iovecs the sink is asked for sum to the data length
// and are filled exactly once, a failed receiver reports a defined FES, and built PDUs parse.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../native/common/nvme_tcp/pdu.h"

using namespace spdk_node::nvme_tcp;

namespace {

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "codec invariant broken: %s\n", what);
  abort();
}

class FuzzSink : public PduReceiver::Sink {
 public:
  explicit FuzzSink(uint32_t split) : split_(split) {}
  PduReceiver* rx = nullptr;
  bool set_params_on_ic = true;
  Params ic_params;
  std::vector<uint8_t> last_hdr;
  std::vector<uint8_t> data;
  bool last_ddgst_ok = true;
  int pdus = 0;

  bool OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                ProtocolError* err) override {
    const uint32_t hlen = hdr[off::kHlen];
    if (hlen > kMaxHlen) Fail("OnHeader with HLEN > 128");
    if (Get32(hdr + off::kPlen) < hlen + data_len) Fail("data length beyond PLEN");
    data.assign(data_len, 0xA5);
    *iovcnt = 0;
    if (data_len == 0) return true;
    const uint8_t type = hdr[off::kType];
    if (type == kH2CTermReq || type == kC2HTermReq) return true;  // kept by the receiver
    if ((split_ & 7) == 7) return true;  // discard: iovcnt 0
    // Up to three pieces, cut where the seed says.
    uint32_t a = data_len, b = 0;
    if (split_ & 1) a = data_len / 3, b = data_len / 3;
    int n = 0;
    iov[n++] = {data.data(), a};
    if (b) iov[n++] = {data.data() + a, b};
    if (data_len - a - b) iov[n++] = {data.data() + a + b, data_len - a - b};
    *iovcnt = n;
    (void)err;
    return true;
  }

  bool OnPdu(const uint8_t* hdr, bool data_digest_ok) override {
    pdus++;
    last_ddgst_ok = data_digest_ok;
    last_hdr.assign(hdr, hdr + hdr[off::kHlen]);
    const uint8_t type = hdr[off::kType];
    if ((type == kICReq || type == kICResp) && set_params_on_ic && !rx->ic_done()) {
      // What a target (ICReq) or host (ICResp) does: adopt the negotiated digests.
      Params p;
      p.hdgst = hdr[off::kDgst] & 1;
      p.ddgst = hdr[off::kDgst] & 2;
      p.recv_data_align = type == kICReq ? 0 : (hdr[off::kHpdaCpda] + 1u) * 4;
      rx->SetParams(p);
    }
    return true;
  }

 private:
  uint32_t split_;
};

// Feeds `p` in chunks (sizes from `seed`), through Feed() or the direct-read path.
void Stream(PduReceiver* rx, const uint8_t* p, size_t n, uint32_t seed, bool direct) {
  size_t pos = 0;
  uint32_t s = seed | 1;
  while (pos < n && !rx->failed()) {
    s ^= s << 13, s ^= s >> 17, s ^= s << 5;
    size_t chunk = 1 + s % 97;
    if (chunk > n - pos) chunk = n - pos;
    struct iovec iov[PduReceiver::kMaxDataIov + 1];
    // DirectIov gives nothing for data the sink discards: that goes through Feed().
    const int cnt = direct && rx->in_data() ? rx->DirectIov(iov, PduReceiver::kMaxDataIov + 1) : 0;
    if (cnt > 0) {
      size_t room = 0;
      for (int i = 0; i < cnt; i++) room += iov[i].iov_len;
      if (room == 0) Fail("direct iovecs of zero bytes");
      size_t take = chunk < room ? chunk : room;
      size_t left = take;
      // Copy into the iovecs as readv() would.
      for (int i = 0; i < cnt && left > 0; i++) {
        const size_t k = left < iov[i].iov_len ? left : iov[i].iov_len;
        memcpy(iov[i].iov_base, p + pos, k);
        pos += k;
        left -= k;
      }
      if (!rx->Advance(take)) return;
      continue;
    }
    const size_t used = rx->Feed(p + pos, chunk);
    if (used > chunk) Fail("Feed consumed more than it was given");
    if (used < chunk && !rx->failed()) {
      // Feed stops early only when the sink says stop (never here) or on failure.
      Fail("Feed stopped early without failing");
    }
    pos += used;
  }
  if (rx->failed()) {
    const uint16_t fes = rx->error().fes;
    if (fes < kFesInvalidHeaderField || fes > kFesUnsupportedParameter) Fail("undefined FES");
  }
}

// Builder <-> receiver: builds a PDU from fields in the input; it must parse back.
void RoundTrip(const uint8_t* in, size_t n) {
  if (n < 80) return;  // 16 bytes of fields, a 64-byte SQE/CQE/header, then data
  Params p;
  p.hdgst = in[0] & 1;
  p.ddgst = in[0] & 2;
  const uint32_t align = (in[0] & 4) ? ((in[1] & 31) + 1u) * 4 : 0;
  p.send_data_align = align;
  p.recv_data_align = align;
  const int kind = in[2] % 6;
  const uint8_t* sqe = in + 16;
  const uint8_t* body = in + 80;
  const uint32_t dlen = static_cast<uint32_t>(n - 80) > 8192 ? 8192 : static_cast<uint32_t>(n - 80);
  uint8_t hdr[kMaxHeaderOut];
  uint32_t hl = 0;
  bool c2h = false, has_data = false;
  const uint16_t cccid = Get16(in + 4), ttag = Get16(in + 6);
  const uint32_t datao = Get32(in + 8) & 0xFFFFFF;
  switch (kind) {
    case 0: hl = BuildCapsuleCmd(hdr, p, sqe, dlen); has_data = dlen > 0; break;
    case 1: hl = BuildCapsuleResp(hdr, p, sqe); c2h = true; break;
    case 2: hl = BuildData(hdr, p, false, cccid, ttag, datao, dlen ? dlen : 1, in[3] & kFlagLastPdu); has_data = true; break;
    case 3: hl = BuildData(hdr, p, true, cccid, ttag, datao, dlen ? dlen : 1, in[3] & (kFlagLastPdu | kFlagSuccess)); c2h = true; has_data = true; break;
    case 4: hl = BuildR2T(hdr, p, cccid, ttag, datao, Get32(in + 12)); c2h = true; break;
    default: hl = BuildTermReq(hdr, in[3] & 1, 1 + in[3] % 6, Get32(in + 12), sqe, in[4] % 65); c2h = in[3] & 1; break;
  }
  if (hl > kMaxHeaderOut) Fail("builder overran kMaxHeaderOut");
  std::vector<uint8_t> wire(hdr, hdr + hl);
  const bool term = kind == 5;
  if (has_data && !term) {
    const uint32_t len = kind == 0 ? dlen : (dlen ? dlen : 1);
    std::vector<uint8_t> d(len);
    for (uint32_t i = 0; i < len; i++) d[i] = i < dlen ? body[i] : 0;
    wire.insert(wire.end(), d.begin(), d.end());
    if (p.ddgst) {
      uint8_t dd[4];
      Put32(dd, Digest(d.data(), d.size()));
      wire.insert(wire.end(), dd, dd + 4);
    }
  }
  if (Get32(wire.data() + off::kPlen) != wire.size()) Fail("PLEN differs from the PDU's length");
  FuzzSink sink(in[5]);
  PduReceiver rx(c2h ? Role::kHost : Role::kTarget, &sink);
  sink.rx = &rx;
  rx.set_max_data(1u << 20);
  if (!term) rx.SetParams(p);
  Stream(&rx, wire.data(), wire.size(), Get32(in + 12) ^ 0x9e3779b9u, in[0] & 8);
  if (rx.failed()) {
    fprintf(stderr, "kind %d fes %u fei %u\n", kind, rx.error().fes, rx.error().fei);
    Fail("a built PDU was rejected");
  }
  if (sink.pdus != 1) Fail("a built PDU was not delivered exactly once");
  if (!sink.last_ddgst_ok) Fail("a built PDU's data digest did not match");
  if (memcmp(sink.last_hdr.data(), hdr, 8) != 0) Fail("common header changed in transit");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t ctl = data[0];
  if ((ctl & 0xC0) == 0xC0) {
    RoundTrip(data + 1, size - 1);
    return 0;
  }
  const Role role = (ctl & 1) ? Role::kHost : Role::kTarget;
  FuzzSink sink(data[1]);
  PduReceiver rx(role, &sink);
  sink.rx = &rx;
  rx.set_max_data((ctl & 0x20) ? 4096 : 1u << 20);
  if (ctl & 2) {
    Params p;
    p.hdgst = ctl & 4;
    p.ddgst = ctl & 8;
    p.recv_data_align = (ctl & 0x10) ? 32 : 0;
    rx.SetParams(p);
  }
  Stream(&rx, data + 2, size - 2, data[1] * 2654435761u, ctl & 0x40);
  return 0;
}

// The PDU codec reachable from JavaScript, for its tests and the fuzz pass (test/nvme-tcp-codec):
// `nvmeTcpDecode(bytes, opts)` feeds a byte stream through a PduReceiver in chunks of the given
// sizes (half of them through the direct-read path the target uses) and reports every PDU, or
// the fatal error that stopped it. Nothing on the I/O path uses this file.
#include <napi.h>

#include <vector>

#include "pdu.h"

namespace spdk_node {
namespace nvme_tcp {

namespace {

struct Collector : PduReceiver::Sink {
  Napi::Env env;
  Napi::Array out;
  uint32_t count = 0;
  std::vector<uint8_t> data;
  bool place = true;  // give the receiver a buffer for data (else it discards it)
  explicit Collector(Napi::Env e) : env(e), out(Napi::Array::New(e)) {}

  bool OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                ProtocolError* err) override {
    data.assign(data_len, 0);
    *iovcnt = 0;
    if (place && data_len > 0) {
      // Split into up to three pieces to exercise scatter placement.
      const uint32_t a = data_len / 3, b = data_len / 3;
      uint32_t used = 0;
      int n = 0;
      for (uint32_t len : {a, b, data_len - a - b}) {
        if (len == 0) continue;
        iov[n++] = {data.data() + used, len};
        used += len;
      }
      *iovcnt = n;
    }
    return true;
  }
  bool OnPdu(const uint8_t* hdr, bool ok) override {
    Napi::Object o = Napi::Object::New(env);
    const uint32_t hlen = hdr[off::kHlen];
    o.Set("type", hdr[off::kType]);
    o.Set("flags", hdr[off::kFlags]);
    o.Set("header", Napi::Buffer<uint8_t>::Copy(env, hdr, hlen));
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, data.data(), data.size()));
    o.Set("digestOk", ok);
    out.Set(count++, o);
    return true;
  }
};

bool BoolOpt(Napi::Object o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

uint32_t U32Opt(Napi::Object o, const char* k, uint32_t d) {
  Napi::Value v = o.Get(k);
  return v.IsNumber() ? v.As<Napi::Number>().Uint32Value() : d;
}

}  // namespace

// nvmeTcpDecode(bytes: Uint8Array, opts: { role: 'target'|'host', icDone, hdgst, ddgst,
//   recvAlign, maxData, chunks: number[], direct: boolean, place: boolean })
//   -> { pdus, consumed, error: { fes, fei } | null, termData }
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  Napi::Object o = info[1].As<Napi::Object>();
  Collector sink(env);
  sink.place = !o.Get("place").IsBoolean() || BoolOpt(o, "place");
  const Role role = o.Get("role").ToString().Utf8Value() == "host" ? Role::kHost : Role::kTarget;
  PduReceiver rx(role, &sink);
  rx.set_max_data(U32Opt(o, "maxData", 1u << 20));
  if (BoolOpt(o, "icDone")) {
    Params p;
    p.hdgst = BoolOpt(o, "hdgst");
    p.ddgst = BoolOpt(o, "ddgst");
    p.recv_data_align = U32Opt(o, "recvAlign", 0);
    rx.SetParams(p);
  }
  std::vector<uint32_t> chunks;
  Napi::Value cv = o.Get("chunks");
  if (cv.IsArray()) {
    Napi::Array a = cv.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) chunks.push_back(std::max(1u, a.Get(i).As<Napi::Number>().Uint32Value()));
  }
  if (chunks.empty()) chunks.push_back(static_cast<uint32_t>(bytes.ByteLength()));
  const bool direct = BoolOpt(o, "direct");
  const uint8_t* p = bytes.Data();
  const size_t n = bytes.ByteLength();
  size_t pos = 0, ci = 0;
  while (pos < n && !rx.failed()) {
    const size_t len = std::min<size_t>(chunks[ci++ % chunks.size()], n - pos);
    struct iovec iov[PduReceiver::kMaxDataIov + 1];
    const int cnt = direct ? rx.DirectIov(iov, PduReceiver::kMaxDataIov + 1) : 0;
    if (cnt > 0) {
      // What a readv() into the receiver's iovecs would do with the next `len` bytes.
      size_t left = len, src = pos;
      for (int i = 0; i < cnt && left > 0; i++) {
        const size_t k = std::min(left, iov[i].iov_len);
        memcpy(iov[i].iov_base, p + src, k);
        src += k;
        left -= k;
      }
      rx.Advance(src - pos);
      pos = src;
    } else {
      pos += rx.Feed(p + pos, len);
    }
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("pdus", sink.out);
  res.Set("consumed", Napi::Number::New(env, static_cast<double>(pos)));
  if (rx.failed()) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("fes", rx.error().fes);
    e.Set("fei", rx.error().fei);
    res.Set("error", e);
  } else {
    res.Set("error", env.Null());
  }
  res.Set("termData", Napi::Buffer<uint8_t>::Copy(env, rx.term_data(), rx.term_data_len()));
  return res;
}

// nvmeTcpBuild(kind, args) -> Buffer: the builders, for round-trip tests.
Napi::Value Build(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string kind = info[0].As<Napi::String>().Utf8Value();
  Napi::Object a = info[1].As<Napi::Object>();
  Params p;
  p.hdgst = BoolOpt(a, "hdgst");
  p.ddgst = BoolOpt(a, "ddgst");
  p.send_data_align = U32Opt(a, "sendAlign", 0);
  uint8_t out[kMaxHeaderOut];
  uint32_t len = 0;
  std::vector<uint8_t> data;
  if (a.Get("data").IsTypedArray()) {
    Napi::Uint8Array d = a.Get("data").As<Napi::Uint8Array>();
    data.assign(d.Data(), d.Data() + d.ByteLength());
  }
  if (kind == "icreq") {
    len = BuildICReq(out, U32Opt(a, "pda", 0), p.hdgst, p.ddgst, U32Opt(a, "max", 0));
  } else if (kind == "icresp") {
    len = BuildICResp(out, U32Opt(a, "pda", 0), p.hdgst, p.ddgst, U32Opt(a, "max", 0));
  } else if (kind == "capsule") {
    uint8_t sqe[64] = {0};
    if (a.Get("sqe").IsTypedArray()) memcpy(sqe, a.Get("sqe").As<Napi::Uint8Array>().Data(), 64);
    len = BuildCapsuleCmd(out, p, sqe, static_cast<uint32_t>(data.size()));
  } else if (kind == "resp") {
    uint8_t cqe[16] = {0};
    if (a.Get("cqe").IsTypedArray()) memcpy(cqe, a.Get("cqe").As<Napi::Uint8Array>().Data(), 16);
    len = BuildCapsuleResp(out, p, cqe);
  } else if (kind == "h2c" || kind == "c2h") {
    len = BuildData(out, p, kind == "c2h", U32Opt(a, "cccid", 0), U32Opt(a, "ttag", 0),
                    U32Opt(a, "datao", 0), static_cast<uint32_t>(data.size()), U32Opt(a, "flags", 0));
  } else if (kind == "r2t") {
    len = BuildR2T(out, p, U32Opt(a, "cccid", 0), U32Opt(a, "ttag", 0), U32Opt(a, "r2to", 0),
                   U32Opt(a, "r2tl", 0));
  } else {
    Napi::TypeError::New(env, "unknown PDU kind " + kind).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<uint8_t> pdu(out, out + len);
  if (!data.empty() && kind != "r2t" && kind != "resp" && kind != "icreq" && kind != "icresp") {
    pdu.insert(pdu.end(), data.begin(), data.end());
    if (p.ddgst) {
      uint8_t d[4];
      Put32(d, Digest(data.data(), data.size()));
      pdu.insert(pdu.end(), d, d + 4);
    }
  }
  return Napi::Buffer<uint8_t>::Copy(env, pdu.data(), pdu.size());
}

}  // namespace nvme_tcp
}  // namespace spdk_node

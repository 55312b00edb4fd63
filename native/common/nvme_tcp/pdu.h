// NVMe/TCP PDU codec (NVMe/TCP Transport Specification 1.0): wire layouts, a streaming receiver
// and header builders. Shared by the builtin engine's target and host, and driven directly by
// the fuzzers. No sockets here: callers feed bytes and send what the builders produce.
//
// Layout of every PDU: an 8-byte common header (type, flags, HLEN, PDO, PLEN), the rest of the
// PDU-specific header up to HLEN, a 4-byte header digest (CRC32C of the header) when HDGSTF,
// padding up to PDO, data, and a 4-byte data digest (CRC32C of the data) when DDGSTF.
// All multi-byte fields are little-endian.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace spdk_node {
namespace nvme_tcp {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the codec assumes a little-endian host");

enum PduType : uint8_t {
  kICReq = 0x00,
  kICResp = 0x01,
  kH2CTermReq = 0x02,
  kC2HTermReq = 0x03,
  kCapsuleCmd = 0x04,
  kCapsuleResp = 0x05,
  kH2CData = 0x06,
  kC2HData = 0x07,
  kR2T = 0x09,
};

// Common-header flags.
constexpr uint8_t kFlagHdgst = 0x01;
constexpr uint8_t kFlagDdgst = 0x02;
constexpr uint8_t kFlagLastPdu = 0x04;  // H2CData, C2HData
constexpr uint8_t kFlagSuccess = 0x08;  // C2HData: the command completed; no CapsuleResp follows

// Header lengths (HLEN) per type.
constexpr uint32_t kIcHlen = 128;
constexpr uint32_t kTermReqHlen = 24;
constexpr uint32_t kCapsuleCmdHlen = 72;  // 8 + 64-byte SQE
constexpr uint32_t kCapsuleRespHlen = 24;  // 8 + 16-byte CQE
constexpr uint32_t kDataHlen = 24;  // H2CData, C2HData, R2T
constexpr uint32_t kDigestLen = 4;
constexpr uint32_t kMaxHlen = 128;
// A TermReq carries at most 128 bytes of the offending header (PLEN <= 152).
constexpr uint32_t kTermReqMaxData = 128;

// Fatal error status (TermReq FES).
enum Fes : uint16_t {
  kFesInvalidHeaderField = 0x01,
  kFesPduSequenceError = 0x02,
  kFesHeaderDigestError = 0x03,
  kFesDataOutOfRange = 0x04,
  kFesDataLimitExceeded = 0x05,  // also "R2T limit exceeded"
  kFesUnsupportedParameter = 0x06,
};

// Field offsets inside the PDU header (common header included).
namespace off {
constexpr uint32_t kType = 0, kFlags = 1, kHlen = 2, kPdo = 3, kPlen = 4;
// ICReq / ICResp
constexpr uint32_t kPfv = 8, kHpdaCpda = 10, kDgst = 11, kMaxr2tMaxh2c = 12;
// TermReq
constexpr uint32_t kFes = 8, kFei = 10;
// CapsuleCmd: SQE at 8; CapsuleResp: CQE at 8
constexpr uint32_t kSqe = 8, kCqe = 8;
// H2CData / C2HData / R2T
constexpr uint32_t kCccid = 8, kTtag = 10, kDatao = 12, kDatal = 16;
}  // namespace off

inline uint16_t Get16(const uint8_t* p) { uint16_t v; memcpy(&v, p, 2); return v; }
inline uint32_t Get32(const uint8_t* p) { uint32_t v; memcpy(&v, p, 4); return v; }
inline uint64_t Get64(const uint8_t* p) { uint64_t v; memcpy(&v, p, 8); return v; }
inline void Put16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
inline void Put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
inline void Put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

// CRC32C digest as NVMe/TCP sends it (the standard CRC-32C: init ~0, final xor ~0).
uint32_t Digest(const void* data, size_t len);
uint32_t DigestIov(const struct iovec* iov, int iovcnt, size_t len);

// Which end of the connection the receiver is (which PDU types it accepts).
enum class Role { kTarget, kHost };

// Negotiated connection parameters that shape the PDUs after the ICReq/ICResp exchange.
struct Params {
  bool hdgst = false;
  bool ddgst = false;
  // Data alignment the *sender* of data PDUs must honour towards us (in bytes, (xPDA+1)*4;
  // 0 = none): a target checks H2C PDUs against its CPDA, a host checks C2H against its HPDA.
  uint32_t recv_data_align = 0;
  // Alignment of data in PDUs we send (the peer's requirement).
  uint32_t send_data_align = 0;
};

// A fatal protocol error: what goes into the TermReq.
struct ProtocolError {
  uint16_t fes = 0;
  uint32_t fei = 0;  // byte offset of the offending field (kFesInvalidHeaderField, ...)
};

// Receives a PDU stream. The owner (a connection) implements Sink; the receiver validates the
// framing (types allowed for the role and the connection phase, HLEN, PDO, PLEN, flags,
// digests) and asks the sink where each PDU's data goes, so data lands in its final buffer.
class PduReceiver {
 public:
  class Sink {
   public:
    virtual ~Sink() = default;
    // A header arrived and passed the framing checks (`hdr` holds HLEN bytes; `data_len` is
    // the data length, 0 for none). Point `iov`/`iovcnt` (at most kMaxDataIov entries, summing
    // to data_len) at where the data goes; leave iovcnt 0 to have it discarded (TermReq data is
    // kept internally: see term_data()). Return false with `err` set for a fatal error.
    virtual bool OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                          ProtocolError* err) = 0;
    // The whole PDU has arrived (data placed). `data_digest_ok` is false when the data digest
    // did not match (a transient transport error for that command, not fatal). Return false to
    // stop feeding (the connection is closing); Feed() then returns what it consumed.
    virtual bool OnPdu(const uint8_t* hdr, bool data_digest_ok) = 0;
  };

  static constexpr int kMaxDataIov = 64;

  PduReceiver(Role role, Sink* sink) : role_(role), sink_(sink) {}

  // Called once the ICReq/ICResp exchange has set the parameters.
  void SetParams(const Params& p) { params_ = p; ic_done_ = true; }
  const Params& params() const { return params_; }
  bool ic_done() const { return ic_done_; }
  // Maximum data length accepted in one PDU (larger is kFesDataLimitExceeded).
  void set_max_data(uint32_t n) { max_data_ = n; }

  // Consumes bytes. Returns the number consumed; stops early when the sink returns false from
  // OnPdu. After a fatal error, failed() is true and error() says why.
  size_t Feed(const uint8_t* p, size_t n);

  // While a PDU's data (and data digest) is still to come, the iovecs where the next bytes go,
  // so the caller can read them straight from the socket (readv) instead of through Feed().
  // Returns 0 when not in the data phase. Then call Advance(n) with the bytes read; it returns
  // false when the sink's OnPdu asked to stop.
  int DirectIov(struct iovec* out, int max);
  bool Advance(size_t n);
  bool in_data() const { return state_ == State::kData || state_ == State::kDdgst; }
  // Bytes still to come before the PDU in progress reaches its data (or its end, when it has
  // none): the rest of the common header at the start of a PDU (its length is not known yet),
  // else the rest of the header, its digest and the padding. 0 in the data phase. A caller
  // that wants the data read in place reads exactly this much, then DirectIov().
  uint32_t header_remaining() const {
    switch (state_) {
      case State::kCh:
        return 8 - hdr_have_;
      case State::kHeader:
        return hdr_need_ - hdr_have_ + pad_left_;
      case State::kPad:
        return pad_left_;
      default:
        return 0;
    }
  }
  uint32_t data_remaining() const { return data_len_ - data_done_; }

  bool failed() const { return state_ == State::kFailed; }
  const ProtocolError& error() const { return err_; }
  // The header in progress or last completed (for a TermReq's copy of the offending header).
  const uint8_t* header() const { return hdr_; }
  uint32_t header_len() const { return hdr_have_ < kMaxHlen ? hdr_have_ : kMaxHlen; }
  // Data of the last TermReq received.
  const uint8_t* term_data() const { return term_data_; }
  uint32_t term_data_len() const { return term_data_len_; }

  // Bytes of data copied out of Feed()'s input (data that did not arrive by DirectIov()).
  uint64_t copied_bytes() const { return copied_bytes_; }

 private:
  enum class State { kCh, kHeader, kPad, kData, kDdgst, kFailed };

  bool CheckCommonHeader();
  bool FinishHeader();
  bool FinishPdu();
  void Fail(uint16_t fes, uint32_t fei);
  void PlaceData(const uint8_t* p, size_t n);
  void StartNext();

  Role role_;
  Sink* sink_;
  Params params_;
  bool ic_done_ = false;
  uint32_t max_data_ = 1u << 20;
  State state_ = State::kCh;
  ProtocolError err_;

  uint8_t hdr_[kMaxHlen + kDigestLen];
  uint32_t hdr_have_ = 0;
  uint32_t hdr_need_ = 0;  // HLEN + header digest
  uint32_t pad_left_ = 0;
  uint32_t data_len_ = 0;
  uint32_t data_done_ = 0;
  bool has_ddgst_ = false;
  uint8_t ddgst_[kDigestLen];
  uint32_t ddgst_have_ = 0;
  uint32_t data_crc_ = 0;  // running raw CRC over data placed so far (when has_ddgst_)
  struct iovec iov_[kMaxDataIov];
  int iovcnt_ = 0;
  int iov_i_ = 0;
  size_t iov_off_ = 0;
  uint8_t term_data_[kTermReqMaxData];
  uint32_t term_data_len_ = 0;
  uint64_t copied_bytes_ = 0;
};

// ---- Builders: each writes a complete header (with header digest and padding to the data
// offset when the PDU carries data) into `out` (at least kMaxHeaderOut bytes) and returns its
// length. The caller sends the header, then the data, then the data digest when ddgst.
constexpr uint32_t kMaxHeaderOut = kMaxHlen + kDigestLen + 128;

uint32_t BuildICReq(uint8_t* out, uint8_t hpda, bool hdgst, bool ddgst, uint32_t maxr2t);
uint32_t BuildICResp(uint8_t* out, uint8_t cpda, bool hdgst, bool ddgst, uint32_t maxh2cdata);
// TermReq (H2C from a host, C2H from a target) with up to kTermReqMaxData bytes of the header
// in error appended as its data.
uint32_t BuildTermReq(uint8_t* out, bool c2h, uint16_t fes, uint32_t fei, const uint8_t* bad_hdr,
                      uint32_t bad_len);
// CapsuleCmd header; `data_len` bytes of in-capsule data follow.
uint32_t BuildCapsuleCmd(uint8_t* out, const Params& p, const uint8_t sqe[64], uint32_t data_len);
uint32_t BuildCapsuleResp(uint8_t* out, const Params& p, const uint8_t cqe[16]);
// H2CData or C2HData header for `datal` bytes at `datao`; flags: kFlagLastPdu, kFlagSuccess.
uint32_t BuildData(uint8_t* out, const Params& p, bool c2h, uint16_t cccid, uint16_t ttag,
                   uint32_t datao, uint32_t datal, uint8_t flags);
uint32_t BuildR2T(uint8_t* out, const Params& p, uint16_t cccid, uint16_t ttag, uint32_t r2to,
                  uint32_t r2tl);

}  // namespace nvme_tcp
}  // namespace spdk_node

#include "pdu.h"

#include <algorithm>

#include "../crc32c.h"

namespace spdk_node {
namespace nvme_tcp {

uint32_t Digest(const void* data, size_t len) { return Crc32c(data, len, 0); }

uint32_t DigestIov(const struct iovec* iov, int iovcnt, size_t len) {
  uint32_t crc = 0;
  for (int i = 0; i < iovcnt && len > 0; i++) {
    const size_t n = std::min(len, iov[i].iov_len);
    crc = Crc32c(iov[i].iov_base, n, crc);
    len -= n;
  }
  return crc;
}

namespace {

uint32_t ExpectedHlen(uint8_t type) {
  switch (type) {
    case kICReq:
    case kICResp:
      return kIcHlen;
    case kH2CTermReq:
    case kC2HTermReq:
      return kTermReqHlen;
    case kCapsuleCmd:
      return kCapsuleCmdHlen;
    case kCapsuleResp:
      return kCapsuleRespHlen;
    case kH2CData:
    case kC2HData:
    case kR2T:
      return kDataHlen;
    default:
      return 0;
  }
}

bool AllowedFor(Role role, uint8_t type) {
  if (role == Role::kTarget) {
    return type == kICReq || type == kH2CTermReq || type == kCapsuleCmd || type == kH2CData;
  }
  return type == kICResp || type == kC2HTermReq || type == kCapsuleResp || type == kC2HData ||
         type == kR2T;
}

bool IsIc(uint8_t t) { return t == kICReq || t == kICResp; }
bool IsTermReq(uint8_t t) { return t == kH2CTermReq || t == kC2HTermReq; }
// PDUs that may carry data with a PDO (TermReq data follows its header directly).
bool CarriesData(uint8_t t) { return t == kCapsuleCmd || t == kH2CData || t == kC2HData; }

}  // namespace

void PduReceiver::Fail(uint16_t fes, uint32_t fei) {
  err_.fes = fes;
  err_.fei = fei;
  state_ = State::kFailed;
}

void PduReceiver::StartNext() {
  state_ = State::kCh;
  hdr_have_ = 0;
  hdr_need_ = 0;
  pad_left_ = 0;
  data_len_ = 0;
  data_done_ = 0;
  has_ddgst_ = false;
  ddgst_have_ = 0;
  data_crc_ = 0;
  iovcnt_ = 0;
  iov_i_ = 0;
  iov_off_ = 0;
}

bool PduReceiver::CheckCommonHeader() {
  const uint8_t type = hdr_[off::kType];
  const uint8_t flags = hdr_[off::kFlags];
  const uint8_t hlen = hdr_[off::kHlen];
  const uint8_t pdo = hdr_[off::kPdo];
  const uint32_t plen = Get32(hdr_ + off::kPlen);

  if (!AllowedFor(role_, type)) {
    // A known type going the wrong way is out of sequence; anything else is a bad field.
    const bool known = ExpectedHlen(type) != 0;
    Fail(known ? kFesPduSequenceError : kFesInvalidHeaderField, off::kType);
    return false;
  }
  if (IsIc(type) == ic_done_ && !IsTermReq(type)) {
    Fail(kFesPduSequenceError, off::kType);  // IC twice, or anything before IC
    return false;
  }
  if (hlen != ExpectedHlen(type)) {
    Fail(kFesInvalidHeaderField, off::kHlen);
    return false;
  }
  // Digest flags: header digest on every PDU but IC and TermReq iff negotiated; data digest
  // only on data PDUs and only when negotiated.
  const bool hd_expected = ic_done_ && params_.hdgst && !IsIc(type) && !IsTermReq(type);
  if (((flags & kFlagHdgst) != 0) != hd_expected) {
    Fail(kFesInvalidHeaderField, off::kFlags);
    return false;
  }
  const bool dd = (flags & kFlagDdgst) != 0;
  if (dd && (!CarriesData(type) || !params_.ddgst)) {
    Fail(kFesInvalidHeaderField, off::kFlags);
    return false;
  }
  const uint32_t hd = hd_expected ? kDigestLen : 0;
  const uint32_t hlen_total = hlen + hd;
  if (IsTermReq(type)) {
    if (plen < hlen || plen > hlen + kTermReqMaxData) {
      Fail(kFesInvalidHeaderField, off::kPlen);
      return false;
    }
    data_len_ = plen - hlen;
  } else if (IsIc(type) || !CarriesData(type) || plen == hlen_total) {
    if (plen != hlen_total) {
      Fail(kFesInvalidHeaderField, off::kPlen);
      return false;
    }
    if (dd || type == kH2CData || type == kC2HData) {
      // A data PDU with no data, or a digest over nothing.
      Fail(kFesInvalidHeaderField, dd ? off::kFlags : off::kPlen);
      return false;
    }
    data_len_ = 0;
  } else {
    if (pdo < hlen_total || pdo > plen) {
      Fail(kFesInvalidHeaderField, off::kPdo);
      return false;
    }
    if (params_.recv_data_align > 1 && pdo % params_.recv_data_align != 0) {
      Fail(kFesInvalidHeaderField, off::kPdo);
      return false;
    }
    const uint32_t dlen_room = plen - pdo;
    const uint32_t dd_len = dd ? kDigestLen : 0;
    if (dlen_room <= dd_len) {
      Fail(kFesInvalidHeaderField, off::kPlen);
      return false;
    }
    data_len_ = dlen_room - dd_len;
    if (params_.ddgst && !dd) {
      Fail(kFesInvalidHeaderField, off::kFlags);
      return false;
    }
    if (data_len_ > max_data_) {
      Fail(kFesDataLimitExceeded, off::kPlen);
      return false;
    }
    pad_left_ = pdo - hlen_total;
    has_ddgst_ = dd;
  }
  hdr_need_ = hlen_total;
  state_ = State::kHeader;
  return true;
}

bool PduReceiver::FinishHeader() {
  const uint8_t type = hdr_[off::kType];
  const uint32_t hlen = hdr_[off::kHlen];
  if (hdr_need_ > hlen) {
    const uint32_t want = Get32(hdr_ + hlen);
    if (Digest(hdr_, hlen) != want) {
      Fail(kFesHeaderDigestError, 0);
      return false;
    }
  }
  if (type == kH2CData || type == kC2HData) {
    if (Get32(hdr_ + off::kDatal) != data_len_) {
      Fail(kFesInvalidHeaderField, off::kDatal);
      return false;
    }
  }
  ProtocolError e;
  int cnt = 0;
  if (!sink_->OnHeader(hdr_, data_len_, iov_, &cnt, &e)) {
    Fail(e.fes, e.fei);
    return false;
  }
  iovcnt_ = std::min(cnt, kMaxDataIov);
  if (IsTermReq(type)) {
    // A TermReq's data (the header in error) is kept here, whatever the sink said.
    term_data_len_ = data_len_;
    iov_[0] = {term_data_, data_len_};
    iovcnt_ = data_len_ > 0 ? 1 : 0;
  }
  iov_i_ = 0;
  iov_off_ = 0;
  if (data_len_ == 0) return FinishPdu();
  state_ = pad_left_ > 0 ? State::kPad : State::kData;
  return true;
}

bool PduReceiver::FinishPdu() {
  const bool ok = !has_ddgst_ || Get32(ddgst_) == data_crc_;
  // hdr_ keeps the header (header()) until the next PDU's bytes overwrite it.
  const bool go_on = sink_->OnPdu(hdr_, ok);
  StartNext();
  return go_on;
}

void PduReceiver::PlaceData(const uint8_t* p, size_t n) {
  if (has_ddgst_) data_crc_ = Crc32c(p, n, data_crc_);
  data_done_ += static_cast<uint32_t>(n);
  while (n > 0 && iov_i_ < iovcnt_) {
    const size_t room = iov_[iov_i_].iov_len - iov_off_;
    const size_t k = std::min(room, n);
    memcpy(static_cast<uint8_t*>(iov_[iov_i_].iov_base) + iov_off_, p, k);
    copied_bytes_ += k;
    p += k;
    n -= k;
    iov_off_ += k;
    if (iov_off_ == iov_[iov_i_].iov_len) {
      iov_i_++;
      iov_off_ = 0;
    }
  }
}

size_t PduReceiver::Feed(const uint8_t* p, size_t n) {
  size_t used = 0;
  while (used < n) {
    const size_t avail = n - used;
    switch (state_) {
      case State::kFailed:
        return used;
      case State::kCh: {
        const size_t k = std::min<size_t>(8 - hdr_have_, avail);
        memcpy(hdr_ + hdr_have_, p + used, k);
        hdr_have_ += static_cast<uint32_t>(k);
        used += k;
        if (hdr_have_ == 8 && !CheckCommonHeader()) return used;
        break;
      }
      case State::kHeader: {
        const size_t k = std::min<size_t>(hdr_need_ - hdr_have_, avail);
        memcpy(hdr_ + hdr_have_, p + used, k);
        hdr_have_ += static_cast<uint32_t>(k);
        used += k;
        if (hdr_have_ == hdr_need_ && !FinishHeader()) return used;
        break;
      }
      case State::kPad: {
        const size_t k = std::min<size_t>(pad_left_, avail);
        pad_left_ -= static_cast<uint32_t>(k);
        used += k;
        if (pad_left_ == 0) state_ = State::kData;
        break;
      }
      case State::kData: {
        const size_t k = std::min<size_t>(data_len_ - data_done_, avail);
        PlaceData(p + used, k);
        used += k;
        if (data_done_ == data_len_) {
          if (has_ddgst_) {
            state_ = State::kDdgst;
          } else if (!FinishPdu()) {
            return used;
          }
        }
        break;
      }
      case State::kDdgst: {
        const size_t k = std::min<size_t>(kDigestLen - ddgst_have_, avail);
        memcpy(ddgst_ + ddgst_have_, p + used, k);
        ddgst_have_ += static_cast<uint32_t>(k);
        used += k;
        if (ddgst_have_ == kDigestLen && !FinishPdu()) return used;
        break;
      }
    }
  }
  return used;
}

int PduReceiver::DirectIov(struct iovec* out, int max) {
  int n = 0;
  if (state_ == State::kData) {
    if (iovcnt_ == 0) return 0;  // discarded data goes through Feed()
    uint32_t left = data_len_ - data_done_;
    int i = iov_i_;
    size_t o = iov_off_;
    while (left > 0 && i < iovcnt_ && n < max) {
      const size_t k = std::min<size_t>(iov_[i].iov_len - o, left);
      out[n++] = {static_cast<uint8_t*>(iov_[i].iov_base) + o, k};
      left -= static_cast<uint32_t>(k);
      i++;
      o = 0;
    }
    if (left > 0) return n;  // more data than iovecs: the rest is read in a later call
    if (has_ddgst_ && n < max) out[n++] = {ddgst_, kDigestLen};
    return n;
  }
  if (state_ == State::kDdgst && n < max) {
    out[n++] = {ddgst_ + ddgst_have_, kDigestLen - ddgst_have_};
  }
  return n;
}

bool PduReceiver::Advance(size_t n) {
  while (n > 0) {
    if (state_ == State::kData) {
      // Bytes already in place: advance the cursor and fold them into the digest.
      size_t k = std::min<size_t>(data_len_ - data_done_, n);
      n -= k;
      data_done_ += static_cast<uint32_t>(k);
      while (k > 0 && iov_i_ < iovcnt_) {
        const size_t room = iov_[iov_i_].iov_len - iov_off_;
        const size_t s = std::min(room, k);
        if (has_ddgst_) {
          data_crc_ = Crc32c(static_cast<uint8_t*>(iov_[iov_i_].iov_base) + iov_off_, s, data_crc_);
        }
        k -= s;
        iov_off_ += s;
        if (iov_off_ == iov_[iov_i_].iov_len) {
          iov_i_++;
          iov_off_ = 0;
        }
      }
      if (data_done_ == data_len_) {
        if (has_ddgst_) {
          state_ = State::kDdgst;
        } else {
          return FinishPdu();
        }
      }
    } else if (state_ == State::kDdgst) {
      const size_t k = std::min<size_t>(kDigestLen - ddgst_have_, n);
      ddgst_have_ += static_cast<uint32_t>(k);  // DirectIov pointed the read at ddgst_
      n -= k;
      if (ddgst_have_ == kDigestLen) return FinishPdu();
    } else {
      return true;
    }
  }
  return true;
}

// ---- Builders

namespace {

void PutCh(uint8_t* out, uint8_t type, uint8_t flags, uint8_t hlen, uint8_t pdo, uint32_t plen) {
  out[off::kType] = type;
  out[off::kFlags] = flags;
  out[off::kHlen] = hlen;
  out[off::kPdo] = pdo;
  Put32(out + off::kPlen, plen);
}

// Finishes a header of `hlen` bytes: header digest, padding to the data offset, and the common
// header's flags, PDO and PLEN. Returns the bytes to send before the data.
uint32_t Seal(uint8_t* out, const Params& p, uint32_t hlen, uint32_t data_len) {
  uint32_t len = hlen;
  uint8_t flags = out[off::kFlags];
  if (p.hdgst) flags |= kFlagHdgst;
  uint32_t pdo = 0;
  uint32_t plen = hlen + (p.hdgst ? kDigestLen : 0);
  if (data_len > 0) {
    pdo = plen;
    if (p.send_data_align > 1) pdo = (pdo + p.send_data_align - 1) / p.send_data_align * p.send_data_align;
    if (p.ddgst) flags |= kFlagDdgst;
    plen = pdo + data_len + (p.ddgst ? kDigestLen : 0);
  }
  out[off::kFlags] = flags;
  out[off::kPdo] = static_cast<uint8_t>(pdo);
  Put32(out + off::kPlen, plen);
  if (p.hdgst) {
    Put32(out + hlen, Digest(out, hlen));
    len += kDigestLen;
  }
  if (pdo > len) {
    memset(out + len, 0, pdo - len);
    len = pdo;
  }
  return len;
}

}  // namespace

uint32_t BuildICReq(uint8_t* out, uint8_t hpda, bool hdgst, bool ddgst, uint32_t maxr2t) {
  memset(out, 0, kIcHlen);
  PutCh(out, kICReq, 0, kIcHlen, 0, kIcHlen);
  Put16(out + off::kPfv, 0);
  out[off::kHpdaCpda] = hpda;
  out[off::kDgst] = (hdgst ? 1 : 0) | (ddgst ? 2 : 0);
  Put32(out + off::kMaxr2tMaxh2c, maxr2t);
  return kIcHlen;
}

uint32_t BuildICResp(uint8_t* out, uint8_t cpda, bool hdgst, bool ddgst, uint32_t maxh2cdata) {
  memset(out, 0, kIcHlen);
  PutCh(out, kICResp, 0, kIcHlen, 0, kIcHlen);
  Put16(out + off::kPfv, 0);
  out[off::kHpdaCpda] = cpda;
  out[off::kDgst] = (hdgst ? 1 : 0) | (ddgst ? 2 : 0);
  Put32(out + off::kMaxr2tMaxh2c, maxh2cdata);
  return kIcHlen;
}

uint32_t BuildTermReq(uint8_t* out, bool c2h, uint16_t fes, uint32_t fei, const uint8_t* bad_hdr,
                      uint32_t bad_len) {
  bad_len = std::min(bad_len, kTermReqMaxData);
  memset(out, 0, kTermReqHlen);
  PutCh(out, c2h ? kC2HTermReq : kH2CTermReq, 0, kTermReqHlen, 0, kTermReqHlen + bad_len);
  Put16(out + off::kFes, fes);
  Put32(out + off::kFei, fei);
  if (bad_len > 0) memcpy(out + kTermReqHlen, bad_hdr, bad_len);
  return kTermReqHlen + bad_len;
}

uint32_t BuildCapsuleCmd(uint8_t* out, const Params& p, const uint8_t sqe[64], uint32_t data_len) {
  PutCh(out, kCapsuleCmd, 0, kCapsuleCmdHlen, 0, 0);
  memcpy(out + off::kSqe, sqe, 64);
  return Seal(out, p, kCapsuleCmdHlen, data_len);
}

uint32_t BuildCapsuleResp(uint8_t* out, const Params& p, const uint8_t cqe[16]) {
  PutCh(out, kCapsuleResp, 0, kCapsuleRespHlen, 0, 0);
  memcpy(out + off::kCqe, cqe, 16);
  return Seal(out, p, kCapsuleRespHlen, 0);
}

uint32_t BuildData(uint8_t* out, const Params& p, bool c2h, uint16_t cccid, uint16_t ttag,
                   uint32_t datao, uint32_t datal, uint8_t flags) {
  PutCh(out, c2h ? kC2HData : kH2CData, flags & (kFlagLastPdu | kFlagSuccess), kDataHlen, 0, 0);
  Put16(out + off::kCccid, cccid);
  Put16(out + off::kTtag, c2h ? 0 : ttag);
  Put32(out + off::kDatao, datao);
  Put32(out + off::kDatal, datal);
  Put32(out + 20, 0);
  return Seal(out, p, kDataHlen, datal);
}

uint32_t BuildR2T(uint8_t* out, const Params& p, uint16_t cccid, uint16_t ttag, uint32_t r2to,
                  uint32_t r2tl) {
  PutCh(out, kR2T, 0, kDataHlen, 0, 0);
  Put16(out + off::kCccid, cccid);
  Put16(out + off::kTtag, ttag);
  Put32(out + off::kDatao, r2to);
  Put32(out + off::kDatal, r2tl);
  Put32(out + 20, 0);
  return Seal(out, p, kDataHlen, 0);
}

}  // namespace nvme_tcp
}  // namespace spdk_node

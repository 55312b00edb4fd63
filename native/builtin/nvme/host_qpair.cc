#include "host_qpair.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../common/clock.h"
#include "../../common/nvme/spec.h"

namespace spdk_node {
namespace nvme_host {

using namespace nvme_tcp;
namespace sqe = nvme::sqe;
namespace cqe = nvme::cqe;

namespace {

constexpr size_t kStagingSize = 64 * 1024;
// A read of at least this many bytes switches receiving to header-by-header while it is out,
// so its C2HData payload is read straight into its buffer.
constexpr uint32_t kLargeRead = 16384;
// The most data one received PDU may carry (the target's choice; our commands are far smaller).
constexpr uint32_t kMaxRecvData = 16u << 20;
// ICResp MAXH2CDATA must be at least this (NVMe/TCP 1.0, 3.6.2.3).
constexpr uint32_t kMinMaxH2CData = 4096;
// System calls per Process(): bounded so one busy queue pair cannot starve its event loop; the
// socket stays readable, so the loop comes back.
constexpr int kMaxRounds = 64;
constexpr int kMaxSendIov = 256;

std::string FesName(uint16_t fes) {
  switch (fes) {
    case kFesInvalidHeaderField: return "invalid header field";
    case kFesPduSequenceError: return "PDU sequence error";
    case kFesHeaderDigestError: return "header digest error";
    case kFesDataOutOfRange: return "data transfer out of range";
    case kFesDataLimitExceeded: return "data transfer limit exceeded";
    case kFesUnsupportedParameter: return "unsupported parameter";
    default: return "FES " + std::to_string(fes);
  }
}

}  // namespace

int32_t StatusFromCqe(const uint8_t c[16]) {
  return static_cast<int32_t>(Get16(c + cqe::kStatus) >> 1);
}

const char* QpairStateName(QpairState s) {
  switch (s) {
    case QpairState::kIdle: return "idle";
    case QpairState::kConnecting: return "connecting";
    case QpairState::kIcWait: return "initializing connection";
    case QpairState::kConnectWait: return "connecting queue";
    case QpairState::kReady: return "ready";
    case QpairState::kFailed: return "failed";
  }
  return "?";
}

HostQpair::HostQpair(const QpairOptions& o, Owner* owner)
    : opts_(o), owner_(owner), rx_(Role::kHost, this), staging_(kStagingSize) {
  const uint32_t depth = std::max<uint32_t>(1, o.depth);
  reqs_.resize(depth + 1);
  for (uint32_t i = 0; i <= depth; i++) reqs_[i].cid = static_cast<uint16_t>(i);
  wire_limit_ = std::max<uint32_t>(1, o.queue_size - 1);
  rx_.set_max_data(kMaxRecvData);
  memset(connect_data_, 0, sizeof(connect_data_));
}

HostQpair::~HostQpair() {
  FreeSendQueue();
  for (SendItem* it : all_items_) delete it;
  CloseSocket();
}

void HostQpair::CloseSocket() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

// ---------------------------------------------------------------------------------------------
// Connection setup: TCP connect, ICReq/ICResp, Fabrics Connect.

int HostQpair::Connect(const struct sockaddr* addr, socklen_t len) {
  fd_ = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    const int e = errno;
    Fail(e, std::string("socket: ") + strerror(e));
    return -e;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  state_ = QpairState::kConnecting;
  if (connect(fd_, addr, len) == 0) {
    StartIc();
    return 0;
  }
  if (errno == EINPROGRESS) return 0;
  const int e = errno;
  Fail(e, std::string("connect: ") + strerror(e));
  return -e;
}

void HostQpair::StartIc() {
  state_ = QpairState::kIcWait;
  SendItem* it = NewItem();
  // MAXR2T 0: one R2T outstanding per command (the target sends the next when the data of the
  // last has arrived), as SPDK's host asks.
  it->hdr_len = BuildICReq(it->hdr, opts_.hpda, opts_.hdgst, opts_.ddgst, 0);
  Enqueue(it);
  Flush();
}

bool HostQpair::HandleICResp(const uint8_t* hdr) {
  const uint16_t pfv = Get16(hdr + off::kPfv);
  const uint8_t cpda = hdr[off::kHpdaCpda];
  const uint8_t dgst = hdr[off::kDgst];
  const uint32_t maxh2c = Get32(hdr + off::kMaxr2tMaxh2c);
  if (pfv != 0) {
    Fatal(kFesInvalidHeaderField, off::kPfv, "ICResp: unsupported PDU format version " + std::to_string(pfv));
    return false;
  }
  if (cpda > 31) {
    Fatal(kFesInvalidHeaderField, off::kHpdaCpda, "ICResp: CPDA " + std::to_string(cpda) + " out of range");
    return false;
  }
  if (maxh2c < kMinMaxH2CData || maxh2c % 4 != 0) {
    Fatal(kFesInvalidHeaderField, off::kMaxr2tMaxh2c, "ICResp: invalid MAXH2CDATA " + std::to_string(maxh2c));
    return false;
  }
  if (((dgst & 1) && !opts_.hdgst) || ((dgst & 2) && !opts_.ddgst)) {
    // A controller enables only digests the host asked for (NVMe/TCP 1.0, 3.6.2.3).
    Fatal(kFesInvalidHeaderField, off::kDgst, "ICResp: digest enabled that the host did not ask for");
    return false;
  }
  params_.hdgst = (dgst & 1) != 0;
  params_.ddgst = (dgst & 2) != 0;
  params_.recv_data_align = opts_.hpda > 0 ? (opts_.hpda + 1u) * 4 : 0;
  params_.send_data_align = cpda > 0 ? (cpda + 1u) * 4 : 0;
  maxh2cdata_ = maxh2c;
  rx_.SetParams(params_);
  SendConnect();
  return true;
}

void HostQpair::SendConnect() {
  state_ = QpairState::kConnectWait;
  HostRequest* r = &reqs_.back();
  memset(r->sqe, 0, 64);
  r->sqe[sqe::kOpc] = nvme::opc::kFabrics;
  r->sqe[sqe::kFctype] = nvme::fctype::kConnect;
  Put16(r->sqe + nvme::connect::kRecfmt, 0);
  Put16(r->sqe + nvme::connect::kQid, opts_.qid);
  Put16(r->sqe + nvme::connect::kSqsize, static_cast<uint16_t>(opts_.queue_size - 1));
  r->sqe[nvme::connect::kCattr] = opts_.disable_sq_flow_control ? nvme::connect::kCattrDisableSqFlowControl : 0;
  Put32(r->sqe + nvme::connect::kKato, opts_.qid == 0 ? opts_.kato_ms : 0);
  memset(connect_data_, 0, sizeof(connect_data_));
  memcpy(connect_data_ + nvme::connect::kHostId, opts_.hostid, 16);
  Put16(connect_data_ + nvme::connect::kCntlid, opts_.cntlid);
  memcpy(connect_data_ + nvme::connect::kSubnqn, opts_.subnqn.data(), std::min<size_t>(opts_.subnqn.size(), 255));
  memcpy(connect_data_ + nvme::connect::kHostnqn, opts_.hostnqn.data(), std::min<size_t>(opts_.hostnqn.size(), 255));
  r->data = connect_data_;
  r->len = sizeof(connect_data_);
  r->h2c = true;
  r->c2h = false;
  Put16(r->sqe + sqe::kCid, r->cid);
  r->sqe[sqe::kFuse] = static_cast<uint8_t>((r->sqe[sqe::kFuse] & 0x3F) | 0x40);
  memset(r->sqe + sqe::kDptr, 0, 16);
  Put32(r->sqe + sqe::kSglLen, r->len);
  r->sqe[sqe::kSglId] = nvme::kSglDataBlockOffset;
  r->in_capsule = true;
  r->resp = false;
  r->sends = 0;
  Launch(r);
  Flush();
}

void HostQpair::HandleConnectResp(const uint8_t* c) {
  HostRequest* r = &reqs_.back();
  r->state = HostRequest::St::kIdle;
  const int32_t status = StatusFromCqe(c);
  if (status != 0) {
    connect_status_ = status;
    connect_dw0_ = Get32(c + cqe::kDw0);
    char buf[96];
    snprintf(buf, sizeof(buf), "Connect (qid %u) refused: SCT 0x%x SC 0x%02x", opts_.qid,
             (status >> 8) & 7, status & 0xff);
    Fail(ECONNREFUSED, buf);
    return;
  }
  cntlid_ = static_cast<uint16_t>(Get32(c + cqe::kDw0) & 0xFFFF);
  state_ = QpairState::kReady;
  owner_->OnStateChange(QpairState::kReady);
  // Requests submitted while connecting (none from our owners, but allowed) go out now.
  while (wait_head_ != nullptr && on_wire_ < wire_limit_) {
    HostRequest* q = wait_head_;
    wait_head_ = q->next;
    if (wait_head_ == nullptr) wait_tail_ = nullptr;
    Launch(q);
  }
}

// ---------------------------------------------------------------------------------------------
// Submission

void HostQpair::Submit(HostRequest* r) {
  uint8_t* s = r->sqe;
  Put16(s + sqe::kCid, r->cid);
  // PSDT 01b: data through an SGL (NVMe/TCP carries data only so).
  s[sqe::kFuse] = static_cast<uint8_t>((s[sqe::kFuse] & 0x3F) | 0x40);
  memset(s + sqe::kDptr, 0, 16);
  Put32(s + sqe::kSglLen, r->len);
  r->in_capsule = r->h2c && r->len > 0 && r->len <= opts_.in_capsule_limit;
  // In-capsule data: a data block SGL at offset 0 of the capsule's data. Otherwise a transport
  // data block: the target fetches writes with R2T and sends reads as C2HData.
  s[sqe::kSglId] = r->in_capsule ? nvme::kSglDataBlockOffset : nvme::kSglTransportDataBlock;
  r->large = r->c2h && r->len >= kLargeRead;
  r->resp = false;
  r->digest_error = false;
  r->timed_out = false;
  r->c2h_done = 0;
  r->h2c_next = 0;
  r->sends = 0;
  r->status = 0;
  r->next = nullptr;
  outstanding_++;
  if (state_ == QpairState::kFailed) {
    r->status = -(error_errno_ != 0 ? error_errno_ : ENOTCONN);
    r->resp = true;
    r->state = HostRequest::St::kActive;
    on_wire_++;
    Finish(r);
    return;
  }
  if (state_ == QpairState::kReady && on_wire_ < wire_limit_ && wait_head_ == nullptr) {
    Launch(r);
    return;
  }
  r->state = HostRequest::St::kQueued;
  if (wait_tail_ != nullptr)
    wait_tail_->next = r;
  else
    wait_head_ = r;
  wait_tail_ = r;
}

void HostQpair::Launch(HostRequest* r) {
  r->state = HostRequest::St::kActive;
  r->start_us = NowNs() / 1000;
  const bool internal = r == &reqs_.back();
  if (!internal) {
    on_wire_++;
    if (r->large) large_reads_++;
  }
  SendItem* it = NewItem();
  it->hdr_len = BuildCapsuleCmd(it->hdr, params_, r->sqe, r->in_capsule ? r->len : 0);
  if (r->in_capsule) {
    it->data = r->data;
    it->data_len = r->len;
    if (params_.ddgst) {
      Put32(it->ddgst, Digest(r->data, r->len));
      it->has_ddgst = true;
    }
    it->req = r;
    r->sends++;
  }
  Enqueue(it);
}

void HostQpair::MaybeFinish(HostRequest* r) {
  if (r->resp && r->sends == 0 && r->state == HostRequest::St::kActive) Finish(r);
}

void HostQpair::Finish(HostRequest* r) {
  r->state = HostRequest::St::kDone;
  if (r->large && large_reads_ > 0) large_reads_--;
  on_wire_--;
  outstanding_--;
  owner_->OnRequestDone(r);
  while (wait_head_ != nullptr && on_wire_ < wire_limit_ && state_ == QpairState::kReady) {
    HostRequest* q = wait_head_;
    wait_head_ = q->next;
    if (wait_head_ == nullptr) wait_tail_ = nullptr;
    Launch(q);
  }
}

HostRequest* HostQpair::ActiveByCid(uint16_t cid) {
  if (cid >= reqs_.size()) return nullptr;
  HostRequest* r = &reqs_[cid];
  if (r->state != HostRequest::St::kActive || r->resp) return nullptr;
  return r;
}

void HostQpair::CheckTimeouts(uint64_t before_us, std::vector<HostRequest*>* out) {
  for (size_t i = 0; i + 1 < reqs_.size(); i++) {
    HostRequest* r = &reqs_[i];
    if (r->state == HostRequest::St::kActive && !r->resp && !r->timed_out && r->start_us < before_us) {
      r->timed_out = true;
      out->push_back(r);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Receive

bool HostQpair::Process() {
  const uint64_t before = stats_.pdus_received + stats_.pdus_sent;
  const QpairState st0 = state_;
  if (state_ == QpairState::kConnecting) {
    struct pollfd p = {fd_, POLLOUT, 0};
    if (poll(&p, 1, 0) <= 0) return false;
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &l) != 0) err = errno;
    if (err != 0) {
      Fail(err, strerror(err));
      return true;
    }
    StartIc();
  }
  if (state_ == QpairState::kIcWait || state_ == QpairState::kConnectWait || state_ == QpairState::kReady) {
    Receive();
    if (state_ != QpairState::kFailed && sendq_head_ != nullptr) Flush();
  }
  return state_ != st0 || stats_.pdus_received + stats_.pdus_sent != before;
}

void HostQpair::Receive() {
  for (int round = 0; round < kMaxRounds && state_ != QpairState::kFailed; round++) {
    const bool large = large_reads_ > 0;
    if (staged_off_ == staged_ && rx_.in_data()) {
      // The rest of this PDU's data straight into its buffer; whatever follows into staging
      // (just the next common header while large reads are out) in the same system call.
      struct iovec iov[PduReceiver::kMaxDataIov + 2];
      const int n = rx_.DirectIov(iov, PduReceiver::kMaxDataIov + 1);
      if (n > 0) {
        size_t direct = 0;
        for (int i = 0; i < n; i++) direct += iov[i].iov_len;
        iov[n] = {staging_.data(), large ? 8 : staging_.size()};
        const ssize_t got = readv(fd_, iov, n + 1);
        stats_.recv_calls++;
        if (got == 0) return Fail(ECONNRESET, "the target closed the connection");
        if (got < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) return;
          if (errno == EINTR) continue;
          const int e = errno;
          return Fail(e, std::string("receive: ") + strerror(e));
        }
        const size_t g = static_cast<size_t>(got);
        const size_t adv = std::min(g, direct);
        stats_.direct_bytes += adv;
        rx_.Advance(adv);
        if (state_ == QpairState::kFailed) return;
        if (g <= direct) {
          if (g < direct) return;  // the socket is drained for now
          continue;
        }
        staged_ = g - direct;
        staged_off_ = 0;
      }
    }
    bool drained = false;
    if (staged_off_ == staged_) {
      size_t want = staging_.size();
      if (large) {
        // Exactly the header, so that a C2HData payload that follows is read in place.
        const uint32_t h = rx_.header_remaining();
        if (h > 0 && h < want) want = h;
      }
      const ssize_t got = recv(fd_, staging_.data(), want, 0);
      stats_.recv_calls++;
      if (got == 0) return Fail(ECONNRESET, "the target closed the connection");
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        const int e = errno;
        return Fail(e, std::string("receive: ") + strerror(e));
      }
      staged_ = static_cast<size_t>(got);
      staged_off_ = 0;
      drained = staged_ < want;
    }
    const uint64_t copied0 = rx_.copied_bytes();
    staged_off_ += rx_.Feed(staging_.data() + staged_off_, staged_ - staged_off_);
    stats_.copied_bytes += rx_.copied_bytes() - copied0;
    if (rx_.failed()) {
      const ProtocolError e = rx_.error();
      return Fatal(e.fes, e.fei, "malformed PDU from the target (" + FesName(e.fes) + ")");
    }
    if (state_ == QpairState::kFailed) return;
    // Feed consumes everything unless the connection failed, so staging is empty here.
    staged_off_ = staged_ = 0;
    if (drained && !rx_.in_data()) return;
  }
}

bool HostQpair::OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                         ProtocolError* err) {
  const uint8_t type = hdr[off::kType];
  *iovcnt = 0;
  switch (type) {
    case kICResp:
    case kC2HTermReq:
    case kCapsuleResp:
    case kR2T:
      return true;
    case kC2HData: {
      if (state_ != QpairState::kReady && state_ != QpairState::kConnectWait) {
        err->fes = kFesPduSequenceError;
        err->fei = 0;
        return false;
      }
      const uint16_t cccid = Get16(hdr + off::kCccid);
      const uint32_t datao = Get32(hdr + off::kDatao);
      HostRequest* r = ActiveByCid(cccid);
      if (r == nullptr || !r->c2h) {
        err->fes = kFesInvalidHeaderField;
        err->fei = off::kCccid;
        return false;
      }
      if ((hdr[off::kFlags] & kFlagSuccess) && !(hdr[off::kFlags] & kFlagLastPdu)) {
        err->fes = kFesInvalidHeaderField;
        err->fei = off::kFlags;
        return false;
      }
      if (datao != r->c2h_done) {
        err->fes = kFesInvalidHeaderField;
        err->fei = off::kDatao;
        return false;
      }
      if (data_len > r->len - datao) {
        err->fes = kFesDataOutOfRange;
        err->fei = off::kDatal;
        return false;
      }
      cur_ = r;
      iov[0] = {r->data + datao, data_len};
      *iovcnt = 1;
      return true;
    }
    default:
      err->fes = kFesInvalidHeaderField;
      err->fei = off::kType;
      return false;
  }
}

bool HostQpair::OnPdu(const uint8_t* hdr, bool data_digest_ok) {
  stats_.pdus_received++;
  const uint8_t type = hdr[off::kType];
  switch (type) {
    case kICResp:
      return HandleICResp(hdr);
    case kC2HTermReq: {
      const uint16_t fes = Get16(hdr + off::kFes);
      Fail(ECONNRESET, "the target ended the connection with C2HTermReq (" + FesName(fes) + ")");
      return false;
    }
    case kCapsuleResp: {
      const uint8_t* c = hdr + off::kCqe;
      const uint16_t cid = Get16(c + cqe::kCid);
      if (state_ == QpairState::kConnectWait && cid == reqs_.size() - 1 &&
          reqs_.back().state == HostRequest::St::kActive) {
        HandleConnectResp(c);
        return state_ != QpairState::kFailed;
      }
      HostRequest* r = state_ == QpairState::kReady ? ActiveByCid(cid) : nullptr;
      if (r == nullptr || cid == reqs_.size() - 1) {
        Fatal(kFesInvalidHeaderField, off::kCqe + cqe::kCid,
              "CapsuleResp for command " + std::to_string(cid) + ", which is not outstanding");
        return false;
      }
      memcpy(r->cqe, c, 16);
      r->status = StatusFromCqe(c);
      if (r->status == 0 && r->c2h && r->c2h_done != r->len) {
        Fatal(kFesPduSequenceError, 0,
              "command " + std::to_string(cid) + " completed with " + std::to_string(r->c2h_done) +
                  " of its " + std::to_string(r->len) + " bytes of data");
        return false;
      }
      if (r->status == 0 && r->digest_error) r->status = NvmeStatus(0, nvme::sc::kTransientTransportError);
      r->resp = true;
      MaybeFinish(r);
      return true;
    }
    case kC2HData: {
      HostRequest* r = cur_;
      cur_ = nullptr;
      const uint8_t flags = hdr[off::kFlags];
      r->c2h_done += Get32(hdr + off::kDatal);
      if (!data_digest_ok) r->digest_error = true;
      if (flags & kFlagSuccess) {
        if (r->c2h_done != r->len) {
          Fatal(kFesPduSequenceError, off::kFlags,
                "C2HData with SUCCESS before all data of command " + std::to_string(r->cid));
          return false;
        }
        memset(r->cqe, 0, 16);
        Put16(r->cqe + cqe::kCid, r->cid);
        Put16(r->cqe + cqe::kSqid, opts_.qid);
        r->status = r->digest_error ? NvmeStatus(0, nvme::sc::kTransientTransportError) : 0;
        r->resp = true;
        MaybeFinish(r);
      }
      return true;
    }
    case kR2T:
      return HandleR2T(hdr);
    default:
      return false;
  }
}

bool HostQpair::HandleR2T(const uint8_t* hdr) {
  const uint16_t cccid = Get16(hdr + off::kCccid);
  const uint16_t ttag = Get16(hdr + off::kTtag);
  const uint32_t r2to = Get32(hdr + off::kDatao);
  const uint32_t r2tl = Get32(hdr + off::kDatal);
  HostRequest* r = state_ == QpairState::kReady ? ActiveByCid(cccid) : nullptr;
  if (r == nullptr || !r->h2c || r->in_capsule) {
    Fatal(kFesInvalidHeaderField, off::kCccid, "R2T for command " + std::to_string(cccid) + ", which has no data to send");
    return false;
  }
  if (r2to != r->h2c_next) {
    Fatal(kFesInvalidHeaderField, off::kDatao, "R2T offset " + std::to_string(r2to) + " out of order");
    return false;
  }
  if (r2tl == 0 || r2tl > r->len - r2to) {
    Fatal(kFesDataOutOfRange, off::kDatal, "R2T length " + std::to_string(r2tl) + " out of range");
    return false;
  }
  // The data, in PDUs of at most MAXH2CDATA bytes, sent from the request's buffer.
  uint32_t off = r2to;
  const uint32_t end = r2to + r2tl;
  while (off < end) {
    const uint32_t n = std::min(end - off, maxh2cdata_);
    SendItem* it = NewItem();
    it->hdr_len = BuildData(it->hdr, params_, false, r->cid, ttag, off, n, off + n == end ? kFlagLastPdu : 0);
    it->data = r->data + off;
    it->data_len = n;
    if (params_.ddgst) {
      Put32(it->ddgst, Digest(it->data, n));
      it->has_ddgst = true;
    }
    it->req = r;
    r->sends++;
    Enqueue(it);
    off += n;
  }
  r->h2c_next = end;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Send

HostQpair::SendItem* HostQpair::NewItem() {
  SendItem* it;
  if (free_items_.empty()) {
    it = new SendItem();
    all_items_.push_back(it);
  } else {
    it = free_items_.back();
    free_items_.pop_back();
  }
  it->hdr_len = 0;
  it->data = nullptr;
  it->data_len = 0;
  it->has_ddgst = false;
  it->sent = 0;
  it->req = nullptr;
  it->next = nullptr;
  return it;
}

void HostQpair::Enqueue(SendItem* it) {
  if (sendq_tail_ != nullptr)
    sendq_tail_->next = it;
  else
    sendq_head_ = it;
  sendq_tail_ = it;
}

void HostQpair::FreeSendQueue() {
  for (SendItem* it = sendq_head_; it != nullptr;) {
    SendItem* next = it->next;
    if (it->req != nullptr && it->req->sends > 0) it->req->sends--;
    free_items_.push_back(it);
    it = next;
  }
  sendq_head_ = sendq_tail_ = nullptr;
}

void HostQpair::Flush() {
  while (sendq_head_ != nullptr && fd_ >= 0 && state_ != QpairState::kFailed &&
         state_ != QpairState::kConnecting) {
    struct iovec iov[kMaxSendIov];
    int n = 0;
    for (SendItem* it = sendq_head_; it != nullptr && n <= kMaxSendIov - 3; it = it->next) {
      uint32_t skip = it->sent;
      auto add = [&](const uint8_t* p, uint32_t len) {
        if (skip >= len) {
          skip -= len;
          return;
        }
        iov[n++] = {const_cast<uint8_t*>(p) + skip, len - skip};
        skip = 0;
      };
      add(it->hdr, it->hdr_len);
      if (it->data_len > 0) add(it->data, it->data_len);
      if (it->has_ddgst) add(it->ddgst, 4);
    }
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = static_cast<size_t>(n);
    const ssize_t w = sendmsg(fd_, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    stats_.sendmsg_calls++;
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        want_write_ = true;
        return;
      }
      if (errno == EINTR) continue;
      const int e = errno;
      return Fail(e == EPIPE ? ECONNRESET : e, std::string("send: ") + strerror(e));
    }
    size_t left = static_cast<size_t>(w);
    while (sendq_head_ != nullptr) {
      SendItem* it = sendq_head_;
      const uint32_t total = it->hdr_len + it->data_len + (it->has_ddgst ? 4 : 0);
      const uint32_t rest = total - it->sent;
      if (left < rest) {
        it->sent += static_cast<uint32_t>(left);
        break;
      }
      left -= rest;
      sendq_head_ = it->next;
      if (sendq_head_ == nullptr) sendq_tail_ = nullptr;
      stats_.pdus_sent++;
      HostRequest* r = it->req;
      free_items_.push_back(it);
      if (r != nullptr) {
        r->sends--;
        MaybeFinish(r);
      }
    }
  }
  if (sendq_head_ == nullptr) want_write_ = false;
}

// ---------------------------------------------------------------------------------------------
// Errors

void HostQpair::Fatal(uint16_t fes, uint32_t fei, const std::string& why) {
  // H2CTermReq with the offending header, best effort, unless a PDU is half-written (the
  // TermReq would land inside it).
  if (fd_ >= 0 && (sendq_head_ == nullptr || sendq_head_->sent == 0)) {
    uint8_t buf[kTermReqHlen + kTermReqMaxData];
    const uint32_t n = BuildTermReq(buf, false, fes, fei, rx_.header(), rx_.header_len());
    (void)!send(fd_, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  Fail(EPROTO, why);
}

void HostQpair::Reset(uint16_t cntlid) {
  if (state_ != QpairState::kFailed && state_ != QpairState::kIdle) Fail(ECONNABORTED, "reset");
  CloseSocket();
  state_ = QpairState::kIdle;
  error_.clear();
  error_errno_ = 0;
  connect_status_ = 0;
  connect_dw0_ = 0;
  opts_.cntlid = cntlid;
  rx_ = PduReceiver(Role::kHost, this);
  rx_.set_max_data(kMaxRecvData);
  params_ = Params();
  staged_ = staged_off_ = 0;
  cur_ = nullptr;
  outstanding_ = on_wire_ = large_reads_ = 0;
  for (HostRequest& r : reqs_) r.state = HostRequest::St::kIdle;
}

void HostQpair::Fail(int err, const std::string& why, int32_t status) {
  if (state_ == QpairState::kFailed) return;
  state_ = QpairState::kFailed;
  error_ = why;
  error_errno_ = err;
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  FreeSendQueue();
  cur_ = nullptr;
  want_write_ = false;
  wait_head_ = wait_tail_ = nullptr;
  reqs_.back().state = HostRequest::St::kIdle;
  for (size_t i = 0; i + 1 < reqs_.size(); i++) {
    HostRequest* r = &reqs_[i];
    if (r->state != HostRequest::St::kActive && r->state != HostRequest::St::kQueued) continue;
    if (r->state == HostRequest::St::kQueued) on_wire_++;  // Finish() counts it off the wire
    r->state = HostRequest::St::kActive;
    r->status = r->timed_out ? -ETIMEDOUT : status != 0 ? status : -err;
    r->resp = true;
    r->sends = 0;
    Finish(r);
  }
  owner_->OnStateChange(QpairState::kFailed);
}

}  // namespace nvme_host
}  // namespace spdk_node

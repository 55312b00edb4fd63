#include "tcp_conn.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../common/nvme/spec.h"
#include "../reactor/reactor.h"

namespace spdk_node {

using namespace nvme_tcp;
namespace sqe = nvme::sqe;
namespace cqe = nvme::cqe;
namespace sc = nvme::sc;

namespace {

constexpr size_t kStagingSize = 64 * 1024;
// Receive size after a PDU with large data: a header with digest and padding fits.
constexpr size_t kPeekSize = 256;
constexpr uint32_t kLargeData = 16384;
// A free request keeps a data buffer up to this size (in-capsule data needs one at once).
constexpr uint32_t kKeepBufferCap = 8192;
// NVMe/TCP: the admin queue accepts 8 KiB of in-capsule data (Connect's 1 KiB included).
constexpr uint32_t kAdminIcdSize = 8192;
// Maximum data per H2CData PDU the target accepts (ICResp MAXH2CDATA).
constexpr uint32_t kMaxH2CData = 131072;
constexpr uint32_t kMaxC2HData = 131072;
constexpr uint32_t kMaxAers = 4;  // AERL + 1


void PadCopy(uint8_t* dst, const std::string& s, size_t n, char pad) {
  memset(dst, pad, n);
  memcpy(dst, s.data(), std::min(s.size(), n));
}

std::string NqnFrom(const uint8_t* p) {
  size_t n = 0;
  while (n < nvme::connect::kNqnLen && p[n] != 0) n++;
  return std::string(reinterpret_cast<const char*>(p), n);
}

}  // namespace

TcpConn::TcpConn(PollGroup* pg, uint64_t id, int fd, const ListenAddr& local,
                 const ListenAddr& peer)
    : pg_(pg), tgt_(pg->target()), id_(id), fd_(fd), local_(local), peer_(peer),
      rx_(Role::kTarget, this), staging_(kStagingSize) {
  accepted_us_ = Reactor::NowUs();
  const NvmfOpts& o = tgt_->opts();
  const uint32_t depth = std::max(o.max_queue_depth, o.max_aq_depth);
  reqs_.resize(depth);
  free_reqs_.reserve(depth);
  for (uint32_t i = 0; i < depth; i++) {
    reqs_[i].conn = this;
    reqs_[i].idx = static_cast<uint16_t>(i);
    reqs_[i].io.cb = &TcpConn::OnBdevDone;
    reqs_[i].io.cb_ctx = &reqs_[i];
    free_reqs_.push_back(static_cast<uint16_t>(depth - 1 - i));
  }
  rx_.set_max_data(std::max({kAdminIcdSize, o.in_capsule_data_size, kMaxH2CData}));
}

TcpConn::~TcpConn() {
  for (Request& r : reqs_) {
    ReleaseBuffers(&r);
    pg_->PutBuffer(r.buf, r.buf_cap);
  }
  for (SendItem* it : sendq_) delete it;
  for (SendItem* it : free_items_) delete it;
  if (fd_ >= 0) close(fd_);
}

// ---------------------------------------------------------------------------------------------
// Receive

void TcpConn::OnReadable() {
  if (closing_) return;
  // Bounded work per wake-up so one busy connection cannot starve the others; a short read
  // means the socket is drained for now (the level-triggered epoll set reports more).
  for (int round = 0; round < 16 && !closing_; round++) {
    // Data of the PDU in progress goes straight to its buffer once staging is drained.
    if (staged_off_ == staged_ && rx_.in_data()) {
      struct iovec iov[PduReceiver::kMaxDataIov + 1];
      const int n = rx_.DirectIov(iov, PduReceiver::kMaxDataIov + 1);
      if (n > 0) {
        size_t asked = 0;
        for (int i = 0; i < n; i++) asked += iov[i].iov_len;
        const ssize_t got = readv(fd_, iov, n);
        if (got == 0) return Close("host closed the connection");
        if (got < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) return;
          if (errno == EINTR) continue;
          return Close("receive error");
        }
        if (!rx_.Advance(static_cast<size_t>(got)) || static_cast<size_t>(got) < asked) return;
        continue;
      }
    }
    bool drained = false;
    if (staged_off_ == staged_) {
      // While large H2CData is expected (R2Ts outstanding), read little more than a header, so
      // the data is read into place instead of into staging (and copied).
      const size_t want = r2t_large_ > 0 ? kPeekSize : staging_.size();
      const ssize_t got = recv(fd_, staging_.data(), want, 0);
      if (got == 0) return Close("host closed the connection");
      if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR) continue;
        return Close("receive error");
      }
      staged_ = static_cast<size_t>(got);
      staged_off_ = 0;
      drained = staged_ < want;
    }
    const uint64_t before = rx_.copied_bytes();
    staged_off_ += rx_.Feed(staging_.data() + staged_off_, staged_ - staged_off_);
    if (rx_.copied_bytes() != before) pg_->stats.data_copies.Add(static_cast<int64_t>(rx_.copied_bytes() - before));
    if (rx_.failed()) {
      return Fatal(rx_.error().fes, rx_.error().fei);
    }
    if (drained && staged_off_ == staged_ && !rx_.in_data()) break;
  }
  // Data left in the socket is reported again by the level-triggered epoll set; data left in
  // the staging buffer is not, so come back on the next poll.
  if (!closing_ && staged_off_ < staged_) pg_->WantRead(this);
}

bool TcpConn::OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                       ProtocolError* err) {
  const uint8_t type = hdr[off::kType];
  *iovcnt = 0;
  switch (type) {
    case kICReq:
      return true;
    case kH2CTermReq:
      return true;
    case kCapsuleCmd: {
      const uint32_t icd = qid_ > 0 ? tgt_->opts().in_capsule_data_size : kAdminIcdSize;
      if (data_len > icd) {
        err->fes = kFesDataLimitExceeded;
        err->fei = 0;
        return false;
      }
      Request* r = AllocRequest();
      if (r == nullptr) {
        // More commands than the queue holds: the host ignored SQ flow control.
        err->fes = kFesPduSequenceError;
        err->fei = 0;
        return false;
      }
      memcpy(r->sqe, hdr + off::kSqe, 64);
      r->cid = Get16(r->sqe + sqe::kCid);
      r->state = ReqState::kRecvCapsule;
      r->len = data_len;
      cur_ = r;
      if (data_len > 0) {
        if (!EnsureBuffer(r, data_len)) {
          err->fes = kFesDataLimitExceeded;
          return false;
        }
        iov[0] = {r->buf, data_len};
        *iovcnt = 1;
      }
      return true;
    }
    case kH2CData: {
      const uint16_t ttag = Get16(hdr + off::kTtag);
      const uint16_t cccid = Get16(hdr + off::kCccid);
      const uint32_t datao = Get32(hdr + off::kDatao);
      if (ttag >= reqs_.size() || reqs_[ttag].state != ReqState::kWaitH2C ||
          reqs_[ttag].cid != cccid) {
        err->fes = kFesInvalidHeaderField;
        err->fei = off::kTtag;
        return false;
      }
      Request* r = &reqs_[ttag];
      if (datao != r->h2c_offset) {
        err->fes = kFesDataOutOfRange;
        err->fei = off::kDatao;
        return false;
      }
      if (data_len > r->len - datao) {
        err->fes = kFesDataOutOfRange;
        err->fei = off::kDatal;
        return false;
      }
      if (data_len > kMaxH2CData) {
        err->fes = kFesDataLimitExceeded;
        err->fei = off::kDatal;
        return false;
      }
      cur_ = r;
      iov[0] = {r->buf + datao, data_len};
      *iovcnt = 1;
      return true;
    }
    default:
      err->fes = kFesInvalidHeaderField;
      err->fei = off::kType;
      return false;
  }
}

bool TcpConn::OnPdu(const uint8_t* hdr, bool data_digest_ok) {
  const uint8_t type = hdr[off::kType];
  switch (type) {
    case kICReq:
      return HandleICReq(hdr);
    case kH2CTermReq:
      Close("host sent H2CTermReq");
      return false;
    case kCapsuleCmd: {
      Request* r = cur_;
      cur_ = nullptr;
      if (!data_digest_ok) r->digest_error = true;
      StartCommand(r);
      return !closing_;
    }
    case kH2CData: {
      Request* r = cur_;
      cur_ = nullptr;
      const uint32_t datal = Get32(hdr + off::kDatal);
      if (!data_digest_ok) r->digest_error = true;
      r->h2c_offset += datal;
      if (r->h2c_offset == r->len) {
        if (r->len >= kLargeData) r2t_large_--;
        r->state = ReqState::kExecuting;
        if (r->digest_error) {
          SetStatus(r, nvme::kSctGeneric, sc::kTransientTransportError);
          Complete(r);
        } else {
          Execute(r);
        }
      }
      return !closing_;
    }
    default:
      return false;
  }
}

bool TcpConn::HandleICReq(const uint8_t* hdr) {
  const uint16_t pfv = Get16(hdr + off::kPfv);
  const uint8_t hpda = hdr[off::kHpdaCpda];
  const uint8_t dgst = hdr[off::kDgst];
  if (pfv != 0) {
    Fatal(kFesInvalidHeaderField, off::kPfv);
    return false;
  }
  if (hpda > 31) {
    Fatal(kFesInvalidHeaderField, off::kHpdaCpda);
    return false;
  }
  params_.hdgst = (dgst & 1) != 0;
  params_.ddgst = (dgst & 2) != 0;
  params_.send_data_align = hpda > 0 ? (hpda + 1u) * 4 : 0;
  params_.recv_data_align = 0;  // CPDA 0: data may follow the header directly
  SendItem* it = NewItem();
  it->hdr_len = BuildICResp(it->hdr, 0, params_.hdgst, params_.ddgst, kMaxH2CData);
  sendq_.push_back(it);
  pg_->WantFlush(this);
  rx_.SetParams(params_);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Requests

TcpConn::Request* TcpConn::AllocRequest() {
  // The host may have at most its queue size outstanding; before Connect, only Connect.
  if (free_reqs_.empty() || (qid_ < 0 && free_reqs_.size() < reqs_.size())) return nullptr;
  Request* r = &reqs_[free_reqs_.back()];
  free_reqs_.pop_back();
  r->digest_error = false;
  r->c2h = false;
  r->h2c_offset = 0;
  r->dsm_next = r->dsm_count = 0;
  memset(r->cqe, 0, 16);
  return r;
}

void TcpConn::FreeRequest(Request* r) {
  r->state = ReqState::kFree;
  r->ns.reset();
  r->ch = nullptr;
  ReleaseBuffers(r);
  free_reqs_.push_back(r->idx);
}

void TcpConn::ReleaseBuffers(Request* r) {
  // Large buffers go back to the poll group (a free request keeps only a small one, for the
  // next in-capsule command), and so does the budget they were reserved from.
  if (r->buf_cap > kKeepBufferCap) {
    pg_->PutBuffer(r->buf, r->buf_cap);
    r->buf = nullptr;
    r->buf_cap = 0;
  }
  if (r->buf2 != nullptr) {
    pg_->PutBuffer(r->buf2, r->buf2_cap);
    r->buf2 = nullptr;
    r->buf2_cap = 0;
  }
  if (r->reserved > 0) {
    const uint32_t n = r->reserved;
    r->reserved = 0;
    pg_->Release(n);
  }
}

bool TcpConn::EnsureBuffer(Request* r, uint32_t len) {
  if (r->buf != nullptr && r->buf_cap >= len) return true;
  pg_->PutBuffer(r->buf, r->buf_cap);
  r->buf = pg_->GetBuffer(len, &r->buf_cap);
  return r->buf != nullptr;
}

void TcpConn::SetStatus(Request* r, uint8_t sct, uint8_t sc, bool dnr) {
  Put16(r->cqe + cqe::kStatus, nvme::MakeStatus(sct, sc, dnr));
}

// A capsule arrived: check its data descriptor, then run it or fetch its data with R2T.
void TcpConn::StartCommand(Request* r) {
  if (sqsize_ > 0) sq_head_ = (sq_head_ + 1) % sqsize_;
  r->state = ReqState::kExecuting;
  if (r->digest_error) {
    SetStatus(r, nvme::kSctGeneric, sc::kTransientTransportError);
    return Complete(r);
  }
  const uint8_t opc = r->sqe[sqe::kOpc];
  const uint8_t psdt = (r->sqe[sqe::kFuse] >> 6) & 3;
  const uint8_t sgl_id = r->sqe[sqe::kSglId];
  const uint32_t sgl_len = Get32(r->sqe + sqe::kSglLen);
  if (qid_ < 0 && !(opc == nvme::opc::kFabrics && r->sqe[sqe::kFctype] == nvme::fctype::kConnect)) {
    SetStatus(r, nvme::kSctGeneric, sc::kCommandSequenceError);
    return Complete(r);
  }
  // Host-to-controller data? Decided by the opcode's data-direction bits (bit 0: host to
  // controller, bit 1: controller to host); for fabrics commands, by the fctype.
  uint8_t dir = opc & 3;
  if (opc == nvme::opc::kFabrics) dir = r->sqe[sqe::kFctype] & 3;
  if (dir == 0 || sgl_len == 0) {
    r->len = 0;
    return Execute(r);
  }
  if (psdt != 1 && psdt != 2) {
    // NVMe/TCP carries data through SGLs only.
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
    return Complete(r);
  }
  const uint32_t max_io = qid_ > 0 ? tgt_->opts().max_io_size : 65536;
  if (sgl_id == nvme::kSglDataBlockOffset) {
    // In-capsule data: must be what the capsule carried, from offset 0.
    const uint64_t offset = Get64(r->sqe + sqe::kSglAddr);
    if (dir != 1) {
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
      return Complete(r);
    }
    if (offset != 0 || sgl_len != r->len) {
      SetStatus(r, nvme::kSctGeneric, offset != 0 ? sc::kSglOffsetInvalid : sc::kDataSglLengthInvalid, true);
      return Complete(r);
    }
    return Execute(r);
  }
  if (sgl_id != nvme::kSglTransportDataBlock) {
    SetStatus(r, nvme::kSctGeneric, sc::kSglDescriptorTypeInvalid, true);
    return Complete(r);
  }
  if (r->len != 0) {
    // A transport SGL with in-capsule data as well.
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
    return Complete(r);
  }
  if (sgl_len > max_io) {
    SetStatus(r, nvme::kSctGeneric, sc::kDataSglLengthInvalid, true);
    return Complete(r);
  }
  r->len = sgl_len;
  // Transfers through the transport take their buffer from the poll group's budget (SPDK's
  // shared buffer pool): when it is spent, the command waits for a buffer before its R2T or
  // its read, so memory stays bounded whatever the hosts queue.
  if (!pg_->Reserve(sgl_len)) {
    r->state = ReqState::kWaitBuffer;
    pg_->WaitForBuffer(id_, r->idx);
    return;
  }
  r->reserved = sgl_len;
  StartTransfer(r);
}

void TcpConn::ResumeWithBuffer(uint16_t idx) {
  Request* r = &reqs_[idx];
  if (closing_ || r->state != ReqState::kWaitBuffer) {
    pg_->Release(r->len);
    return;
  }
  r->reserved = r->len;
  StartTransfer(r);
}

void TcpConn::StartTransfer(Request* r) {
  const uint32_t len = r->len;
  if (!EnsureBuffer(r, len)) {
    SetStatus(r, nvme::kSctGeneric, sc::kInternalDeviceError);
    return Complete(r);
  }
  const uint8_t opc = r->sqe[sqe::kOpc];
  const uint8_t dir = opc == nvme::opc::kFabrics ? (r->sqe[sqe::kFctype] & 3) : (opc & 3);
  if (dir == 2) {
    r->c2h = true;
    return Execute(r);
  }
  // Host to controller: one R2T for the whole transfer; the host splits it into H2CData PDUs
  // of at most MAXH2CDATA.
  r->state = ReqState::kWaitH2C;
  r->h2c_offset = 0;
  if (len >= kLargeData) r2t_large_++;
  SendItem* it = NewItem();
  it->hdr_len = BuildR2T(it->hdr, params_, r->cid, r->idx, 0, len);
  sendq_.push_back(it);
  pg_->WantFlush(this);
}

void TcpConn::Execute(Request* r) {
  r->state = ReqState::kExecuting;
  const uint8_t opc = r->sqe[sqe::kOpc];
  if (opc == nvme::opc::kFabrics) return ExecuteFabrics(r);
  if (qid_ == 0) return ExecuteAdmin(r);
  return ExecuteIo(r);
}

// ---------------------------------------------------------------------------------------------
// Fabrics commands

void TcpConn::ExecuteFabrics(Request* r) {
  const uint8_t fct = r->sqe[sqe::kFctype];
  if (fct == nvme::fctype::kConnect) {
    if (qid_ >= 0) {
      SetStatus(r, nvme::kSctGeneric, sc::kCommandSequenceError, true);
      return Complete(r);
    }
    return Connect(r);
  }
  if (fct == nvme::fctype::kDisconnect) {
    Complete(r);
    sendq_.back()->close_after = true;
    return;
  }
  if (qid_ != 0) {
    // Property Get/Set go to the admin queue only.
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
    return Complete(r);
  }
  if (fct == nvme::fctype::kPropertyGet) return PropertyGet(r);
  if (fct == nvme::fctype::kPropertySet) return PropertySet(r);
  SetStatus(r, nvme::kSctGeneric, sc::kInvalidOpcode, true);
  Complete(r);
}

namespace {

// Connect "invalid parameters": DW0 bits 15:0 IPO (byte offset of the bad field), bits 23:16
// IATTR (0 = in the command, 1 = in the data).
void ConnectInvalid(uint8_t* cqe_bytes, bool in_data, uint16_t offset) {
  Put16(cqe_bytes + cqe::kStatus,
        nvme::MakeStatus(nvme::kSctCommandSpecific, sc::kConnectInvalidParameters, true));
  Put16(cqe_bytes, offset);
  cqe_bytes[2] = in_data ? 1 : 0;
}

}  // namespace

void TcpConn::Connect(Request* r) {
  namespace cn = nvme::connect;
  if (r->len < cn::kDataLen) {
    SetStatus(r, nvme::kSctGeneric, sc::kDataSglLengthInvalid, true);
    return Complete(r);
  }
  const uint16_t recfmt = Get16(r->sqe + cn::kRecfmt);
  if (recfmt != 0) {
    SetStatus(r, nvme::kSctCommandSpecific, sc::kConnectIncompatibleFormat, true);
    return Complete(r);
  }
  const uint8_t* data = r->buf;
  const std::string subnqn = NqnFrom(data + cn::kSubnqn);
  const std::string hostnqn = NqnFrom(data + cn::kHostnqn);
  std::shared_ptr<Subsystem> s = tgt_->FindSubsystem(subnqn);
  if (!s) {
    ConnectInvalid(r->cqe, true, cn::kSubnqn);
    return Complete(r);
  }
  {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->deleted || !s->ListenerAllowed(local_)) {
      ConnectInvalid(r->cqe, true, cn::kSubnqn);
      return Complete(r);
    }
    if (!s->HostAllowed(hostnqn)) {
      SetStatus(r, nvme::kSctCommandSpecific, sc::kConnectInvalidHost, true);
      return Complete(r);
    }
  }
  const uint16_t qid = Get16(r->sqe + cn::kQid);
  const uint16_t sqsize = Get16(r->sqe + cn::kSqsize);  // 0's based
  const uint32_t max_depth = qid == 0 ? tgt_->opts().max_aq_depth : tgt_->opts().max_queue_depth;
  if (sqsize == 0 || sqsize + 1u > max_depth) {
    ConnectInvalid(r->cqe, false, cn::kSqsize);
    return Complete(r);
  }
  sqsize_ = sqsize + 1u;
  sq_flow_disabled_ = (r->sqe[cn::kCattr] & cn::kCattrDisableSqFlowControl) != 0;
  if (qid == 0) return ConnectAdmin(r, s, data);
  ConnectIo(r, s, data);
}

void TcpConn::ConnectAdmin(Request* r, const std::shared_ptr<Subsystem>& s, const uint8_t* data) {
  namespace cn = nvme::connect;
  const uint16_t want = Get16(data + cn::kCntlid);
  if (want != 0xFFFF) {
    // Dynamic controller model: the host must ask for any controller.
    ConnectInvalid(r->cqe, true, cn::kCntlid);
    return Complete(r);
  }
  uint32_t kato = Get32(r->sqe + cn::kKato);
  std::shared_ptr<Controller> c;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    uint16_t id = 0;
    const uint32_t span = static_cast<uint32_t>(s->max_cntlid) - s->min_cntlid + 1;
    for (uint32_t k = 0; k < span; k++) {
      uint16_t cand = s->next_cntlid;
      if (cand < s->min_cntlid || cand > s->max_cntlid) cand = s->min_cntlid;
      s->next_cntlid = cand == s->max_cntlid ? s->min_cntlid : static_cast<uint16_t>(cand + 1);
      if (s->ctrlrs.count(cand) == 0) {
        id = cand;
        break;
      }
    }
    if (id == 0) {
      SetStatus(r, nvme::kSctCommandSpecific, sc::kConnectControllerBusy, true);
      return Complete(r);
    }
    c = std::make_shared<Controller>(s, id, NqnFrom(data + cn::kHostnqn), data + cn::kHostId,
                                     kato, tgt_->opts());
    c->admin = QpairRef{pg_, id_, local_, peer_};
    s->ctrlrs[id] = c;
  }
  qid_ = 0;
  ctrlr_ = c;
  subsys_ = s;
  pg_->stats.admin_qpairs.Add(1);
  pg_->stats.current_admin_qpairs.Add(1);
  Put16(r->cqe + cqe::kDw0, c->cntlid);
  Complete(r);
}

void TcpConn::ConnectIo(Request* r, const std::shared_ptr<Subsystem>& s, const uint8_t* data) {
  namespace cn = nvme::connect;
  const uint16_t qid = Get16(r->sqe + cn::kQid);
  const uint16_t cntlid = Get16(data + cn::kCntlid);
  std::shared_ptr<Controller> c;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    auto it = s->ctrlrs.find(cntlid);
    if (it != s->ctrlrs.end()) c = it->second;
  }
  if (!c || s->discovery || c->gone.load(std::memory_order_acquire)) {
    ConnectInvalid(r->cqe, true, cn::kCntlid);
    return Complete(r);
  }
  if (c->hostnqn != NqnFrom(data + cn::kHostnqn)) {
    ConnectInvalid(r->cqe, true, cn::kHostnqn);
    return Complete(r);
  }
  const uint32_t cc = c->cc.load(std::memory_order_acquire);
  if ((cc & nvme::kCcEn) == 0 || ((cc >> nvme::kCcIosqesShift) & 0xF) != 6 ||
      ((cc >> nvme::kCcIocqesShift) & 0xF) != 4) {
    ConnectInvalid(r->cqe, false, cn::kQid);
    return Complete(r);
  }
  {
    std::lock_guard<std::mutex> lock(c->mu);
    if (qid > c->num_io_queues || qid > c->io.size()) {
      SetStatus(r, nvme::kSctCommandSpecific, sc::kInvalidQueueIdentifier, true);
      return Complete(r);
    }
    if (c->io[qid - 1].pg != nullptr) {
      ConnectInvalid(r->cqe, false, cn::kQid);
      return Complete(r);
    }
    c->io[qid - 1] = QpairRef{pg_, id_, local_, peer_};
    c->io_count++;
  }
  qid_ = qid;
  ctrlr_ = c;
  subsys_ = s;
  pg_->stats.io_qpairs.Add(1);
  pg_->stats.current_io_qpairs.Add(1);
  Put16(r->cqe + cqe::kDw0, c->cntlid);
  Complete(r);
}

void TcpConn::PropertyGet(Request* r) {
  const uint8_t size8 = r->sqe[nvme::prop::kAttrib] & 7;  // 0: 4 bytes, 1: 8 bytes
  const uint32_t ofst = Get32(r->sqe + nvme::prop::kOfst);
  Controller* c = ctrlr_.get();
  uint64_t v = 0;
  bool ok = true;
  switch (ofst) {
    case nvme::prop::kCap: v = c->cap; ok = size8 == 1; break;
    case nvme::prop::kVs: v = c->vs; ok = size8 == 0; break;
    case nvme::prop::kCc: v = c->cc.load(std::memory_order_acquire); ok = size8 == 0; break;
    case nvme::prop::kCsts: v = c->csts.load(std::memory_order_acquire); ok = size8 == 0; break;
    default: ok = false;
  }
  if (!ok) {
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
    return Complete(r);
  }
  Put64(r->cqe + cqe::kDw0, v);
  Complete(r);
}

void TcpConn::PropertySet(Request* r) {
  const uint8_t size8 = r->sqe[nvme::prop::kAttrib] & 7;
  const uint32_t ofst = Get32(r->sqe + nvme::prop::kOfst);
  const uint64_t value = Get64(r->sqe + nvme::prop::kValue);
  Controller* c = ctrlr_.get();
  if (ofst != nvme::prop::kCc || size8 != 0) {
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
    return Complete(r);
  }
  const uint32_t old_cc = c->cc.load(std::memory_order_acquire);
  const uint32_t cc = static_cast<uint32_t>(value);
  const uint32_t shn = (cc >> nvme::kCcShnShift) & 3;
  const uint32_t old_shn = (old_cc >> nvme::kCcShnShift) & 3;
  c->cc.store(cc, std::memory_order_release);
  uint32_t csts = c->csts.load(std::memory_order_acquire);
  if ((cc & nvme::kCcEn) && !(old_cc & nvme::kCcEn)) {
    csts |= nvme::kCstsRdy;
  } else if (!(cc & nvme::kCcEn) && (old_cc & nvme::kCcEn)) {
    // Controller reset: its I/O queues go away; the host reconnects them after re-enabling.
    std::vector<QpairRef> io;
    {
      std::lock_guard<std::mutex> lock(c->mu);
      for (QpairRef& q : c->io) {
        if (q.pg != nullptr) io.push_back(q);
      }
    }
    for (const QpairRef& q : io) {
      PollGroup* pg = q.pg;
      const uint64_t id = q.id;
      pg->reactor()->Send([pg, id]() { pg->CloseConnection(id); });
    }
    csts &= ~(nvme::kCstsRdy | (3u << nvme::kCstsShstShift));
  }
  if (shn != 0 && old_shn == 0) {
    // Shutdown notification: nothing is cached, so shutdown processing completes at once.
    csts = (csts & ~(3u << nvme::kCstsShstShift)) | (nvme::kShstComplete << nvme::kCstsShstShift);
  } else if (shn == 0 && old_shn != 0) {
    csts &= ~(3u << nvme::kCstsShstShift);
  }
  c->csts.store(csts, std::memory_order_release);
  Complete(r);
}

// ---------------------------------------------------------------------------------------------
// Admin commands

void TcpConn::ExecuteAdmin(Request* r) {
  const uint8_t opc = r->sqe[sqe::kOpc];
  Controller* c = ctrlr_.get();
  const bool enabled = (c->cc.load(std::memory_order_acquire) & nvme::kCcEn) != 0;
  if (!enabled) {
    SetStatus(r, nvme::kSctGeneric, sc::kCommandSequenceError, true);
    return Complete(r);
  }
  switch (opc) {
    case nvme::opc::kIdentify: return Identify(r);
    case nvme::opc::kGetLogPage: return GetLogPage(r);
    case nvme::opc::kGetFeatures: return GetFeatures(r);
    case nvme::opc::kSetFeatures: return SetFeatures(r);
    case nvme::opc::kAsyncEventRequest: return AsyncEventRequest(r);
    case nvme::opc::kKeepAlive:
      c->last_keep_alive_us.store(Reactor::NowUs(), std::memory_order_relaxed);
      return Complete(r);
    case nvme::opc::kAbort: return Abort(r);
    default:
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidOpcode, true);
      return Complete(r);
  }
}

void TcpConn::RefreshNamespaces() {
  const uint64_t gen = subsys_->ns_gen.load(std::memory_order_acquire);
  if (gen == ns_gen_) return;
  std::lock_guard<std::mutex> lock(subsys_->mu);
  ns_ = subsys_->ns;
  ns_gen_ = gen;
  ns_ch_.assign(ns_->size(), nullptr);
}

void TcpConn::Identify(Request* r) {
  const uint8_t cns = r->sqe[sqe::kCdw10];
  const uint32_t nsid = Get32(r->sqe + sqe::kNsid);
  if (r->len < 4096 || !r->c2h) {
    SetStatus(r, nvme::kSctGeneric, sc::kDataSglLengthInvalid, true);
    return Complete(r);
  }
  uint8_t* d = r->buf;
  memset(d, 0, 4096);
  Controller* c = ctrlr_.get();
  Subsystem* s = subsys_.get();
  const NvmfOpts& o = tgt_->opts();
  RefreshNamespaces();
  switch (cns) {
    case nvme::cns::kController: {
      namespace idc = nvme::idc;
      std::string sn, mn;
      uint32_t max_ns;
      {
        std::lock_guard<std::mutex> lock(s->mu);
        sn = s->sn;
        mn = s->mn;
        max_ns = s->max_namespaces;
      }
      const bool disc = s->discovery;
      if (!disc) {
        Put16(d + idc::kVid, 0x8086);
        Put16(d + idc::kSsvid, 0x8086);
        PadCopy(d + idc::kSn, sn, idc::kSnLen, ' ');
        PadCopy(d + idc::kMn, mn, idc::kMnLen, ' ');
        d[idc::kRab] = 6;
        d[idc::kIeee] = 0xe4;
        d[idc::kIeee + 1] = 0xd2;
        d[idc::kIeee + 2] = 0x5c;
        d[idc::kCmic] = 0x3;  // multi-port, multi-controller
        Put32(d + idc::kOaes, 1u << 8);  // namespace attribute notices
        Put32(d + idc::kCtratt, 1u << 0);  // 128-bit host identifier
        d[idc::kCntrltype] = idc::kCntrltypeIo;
        d[idc::kAcl] = 3;
        d[idc::kFrmw] = 0x3;  // slot 1 read-only, 1 slot
        d[idc::kLpa] = 0x02 | 0x04;  // command effects, extended data
        d[idc::kSqes] = 0x66;
        d[idc::kCqes] = 0x44;
        uint32_t nn = max_ns;
        if (nn == 0) nn = static_cast<uint32_t>(std::max<size_t>(ns_->size(), 1));
        Put32(d + idc::kNn, nn);
        Put16(d + idc::kOncs, 0x1 | 0x4 | 0x8);  // compare, dataset management, write zeroes
        d[idc::kVwc] = 0x1 | (0x2 << 1);  // present; flush broadcast not supported
        Put32(d + idc::kMnan, max_ns);
        Put32(d + idc::kIoccsz, (64 + o.in_capsule_data_size) / 16);
        Put32(d + idc::kIorcsz, 1);
        Put16(d + idc::kIcdoff, 0);
        d[idc::kFcatt] = 0;  // dynamic controller model
        d[idc::kMsdbd] = 1;
      } else {
        d[idc::kCntrltype] = idc::kCntrltypeDiscovery;
        Put32(d + idc::kOaes, 1u << 31);  // discovery log change notices
        Put16(d + idc::kVid, 0x8086);
        Put16(d + idc::kSsvid, 0x8086);
        PadCopy(d + idc::kSn, sn, idc::kSnLen, ' ');
        PadCopy(d + idc::kMn, mn, idc::kMnLen, ' ');
      }
      PadCopy(d + idc::kFr, "25.09", idc::kFrLen, ' ');
      uint32_t mdts = 0;
      while ((4096u << (mdts + 1)) <= o.max_io_size) mdts++;
      d[idc::kMdts] = static_cast<uint8_t>(mdts);
      Put16(d + idc::kCntlid, c->cntlid);
      Put32(d + idc::kVer, c->vs);
      d[idc::kAerl] = kMaxAers - 1;
      d[idc::kElpe] = 127;
      Put16(d + idc::kWctemp, 0x0157);
      Put16(d + idc::kCctemp, 0x0175);
      Put16(d + idc::kKas, 10);  // 100 ms units: 1 s granularity
      Put16(d + idc::kMaxcmd, static_cast<uint16_t>(o.max_queue_depth));
      Put32(d + idc::kSgls, 0x1 | (1u << 20));  // SGLs supported, SGL offset
      if (!disc) d[idc::kSgls] |= 0x4;  // keyed SGL bit as SPDK reports for fabrics
      PadCopy(d + idc::kSubnqn, s->nqn, idc::kSubnqnLen, '\0');
      break;
    }
    case nvme::cns::kNamespace: {
      namespace idns = nvme::idns;
      uint32_t nn;
      {
        std::lock_guard<std::mutex> lock(s->mu);
        nn = s->max_namespaces;
      }
      if (nn == 0) nn = static_cast<uint32_t>(std::max<size_t>(ns_->size(), 1));
      if (nsid == 0 || nsid > nn) {
        // Beyond NN (0xFFFFFFFF, the broadcast value, included): invalid; inactive: zeroes.
        SetStatus(r, nvme::kSctGeneric, sc::kInvalidNamespaceOrFormat, true);
        return Complete(r);
      }
      if (nsid > ns_->size() || !(*ns_)[nsid - 1]) break;  // inactive: all zeroes
      const Namespace& n = *(*ns_)[nsid - 1];
      const uint64_t blocks = n.bdev->num_blocks();
      Put64(d + idns::kNsze, blocks);
      Put64(d + idns::kNcap, blocks);
      Put64(d + idns::kNuse, blocks);
      d[idns::kNsfeat] = 0x4 | 0x8;  // deallocated blocks error, NGUID/EUI64 never reused
      d[idns::kNlbaf] = 0;
      d[idns::kFlbas] = 0;
      d[idns::kNmic] = 1;  // may be attached to several controllers
      d[idns::kDlfeat] = 0x1;  // deallocated blocks read as zeroes
      if (n.has_nguid) memcpy(d + idns::kNguid, n.nguid, 16);
      if (n.has_eui64) memcpy(d + idns::kEui64, n.eui64, 8);
      uint8_t lbads = 0;
      while ((1u << lbads) < n.bdev->block_size()) lbads++;
      d[idns::kLbaf0 + 2] = lbads;
      break;
    }
    case nvme::cns::kActiveNsList: {
      uint32_t k = 0;
      for (size_t i = 0; i < ns_->size() && k < 1024; i++) {
        if ((*ns_)[i] && i + 1 > nsid) Put32(d + 4 * k++, static_cast<uint32_t>(i + 1));
      }
      break;
    }
    case nvme::cns::kNsIdDescriptors: {
      if (nsid == 0 || nsid > ns_->size() || !(*ns_)[nsid - 1]) {
        SetStatus(r, nvme::kSctGeneric, sc::kInvalidNamespaceOrFormat, true);
        return Complete(r);
      }
      const Namespace& n = *(*ns_)[nsid - 1];
      uint32_t p = 0;
      auto add = [&](uint8_t type, const uint8_t* v, uint8_t len) {
        d[p] = type;
        d[p + 1] = len;
        memcpy(d + p + 4, v, len);
        p += 4 + len;
      };
      if (n.has_eui64) add(nvme::kNidtEui64, n.eui64, 8);
      if (n.has_nguid) add(nvme::kNidtNguid, n.nguid, 16);
      if (n.has_uuid) add(nvme::kNidtUuid, n.uuid, 16);
      const uint8_t csi = 0;  // NVM command set
      add(nvme::kNidtCsi, &csi, 1);
      break;
    }
    default:
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
      return Complete(r);
  }
  SendData(r, d, std::min<uint32_t>(r->len, 4096), false);
  Complete(r);
}

void TcpConn::GetLogPage(Request* r) {
  const uint32_t cdw10 = Get32(r->sqe + sqe::kCdw10);
  const uint32_t cdw11 = Get32(r->sqe + sqe::kCdw11);
  const uint8_t lid = cdw10 & 0xFF;
  const uint64_t numd = ((static_cast<uint64_t>(cdw11 & 0xFFFF) << 16) | (cdw10 >> 16)) + 1;
  const uint64_t offset = (static_cast<uint64_t>(Get32(r->sqe + sqe::kCdw13)) << 32) |
                          Get32(r->sqe + sqe::kCdw12);
  const uint64_t len = numd * 4;
  if (!r->c2h || len > r->len || (offset & 3) != 0) {
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
    return Complete(r);
  }
  std::vector<uint8_t> page;
  Controller* c = ctrlr_.get();
  const bool disc = subsys_->discovery;
  if (disc) {
    if (lid != nvme::lid::kDiscovery) {
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
      return Complete(r);
    }
    page = tgt_->DiscoveryLog(c->hostnqn);
  } else {
    switch (lid) {
      case nvme::lid::kErrorInfo:
        page.assign(64, 0);  // no errors recorded
        break;
      case nvme::lid::kHealth:
        page.assign(512, 0);
        Put16(page.data() + 1, 0x0140);  // 320 K
        page[3] = 100;  // available spare
        page[4] = 10;   // spare threshold
        break;
      case nvme::lid::kFirmwareSlot:
        page.assign(512, 0);
        page[0] = 1;  // active slot 1
        PadCopy(page.data() + 8, "25.09", 8, ' ');
        break;
      case nvme::lid::kChangedNsList: {
        page.assign(4096, 0);
        if (c->changed_ns_overflow) {
          Put32(page.data(), 0xFFFFFFFF);
        } else {
          for (size_t i = 0; i < c->changed_ns.size() && i < 1024; i++) {
            Put32(page.data() + 4 * i, c->changed_ns[i]);
          }
        }
        if (!(cdw10 & (1u << 15))) {  // RAE clear: reading clears the list
          c->changed_ns.clear();
          c->changed_ns_overflow = false;
        }
        break;
      }
      case nvme::lid::kCommandEffects: {
        page.assign(4096, 0);
        const uint8_t admin[] = {nvme::opc::kGetLogPage, nvme::opc::kIdentify, nvme::opc::kAbort,
                                 nvme::opc::kSetFeatures, nvme::opc::kGetFeatures,
                                 nvme::opc::kAsyncEventRequest, nvme::opc::kKeepAlive};
        for (uint8_t op : admin) Put32(page.data() + 4 * op, 1);
        const uint8_t io[] = {nvme::opc::kFlush, nvme::opc::kWrite, nvme::opc::kRead,
                              nvme::opc::kCompare, nvme::opc::kWriteZeroes,
                              nvme::opc::kDatasetManagement};
        for (uint8_t op : io) {
          const bool writes = op == nvme::opc::kWrite || op == nvme::opc::kWriteZeroes ||
                              op == nvme::opc::kDatasetManagement;
          Put32(page.data() + 1024 + 4 * op, 1 | (writes ? 2 : 0));
        }
        break;
      }
      default:
        SetStatus(r, nvme::kSctCommandSpecific, sc::kInvalidLogPage, true);
        return Complete(r);
    }
  }
  // The requested window of the page, zero-filled past its end.
  memset(r->buf, 0, len);
  if (offset < page.size()) {
    memcpy(r->buf, page.data() + offset, std::min<uint64_t>(len, page.size() - offset));
  }
  SendData(r, r->buf, static_cast<uint32_t>(len), false);
  Complete(r);
}

void TcpConn::GetFeatures(Request* r) {
  const uint8_t fid = r->sqe[sqe::kCdw10];
  Controller* c = ctrlr_.get();
  uint32_t v = 0;
  switch (fid) {
    case nvme::feat::kNumberOfQueues: {
      std::lock_guard<std::mutex> lock(c->mu);
      v = (c->num_io_queues - 1) | ((c->num_io_queues - 1) << 16);
      break;
    }
    case nvme::feat::kKeepAliveTimer: v = c->kato_ms.load(std::memory_order_relaxed); break;
    case nvme::feat::kAsyncEventConfig: v = c->async_event_config; break;
    case nvme::feat::kVolatileWriteCache: v = 1; break;
    case nvme::feat::kTemperatureThreshold: v = c->temp_threshold; break;
    case nvme::feat::kArbitration:
    case nvme::feat::kPowerManagement:
    case nvme::feat::kErrorRecovery:
    case nvme::feat::kInterruptCoalescing:
    case nvme::feat::kInterruptVectorConfig:
    case nvme::feat::kWriteAtomicity:
      v = 0;
      break;
    case nvme::feat::kHostIdentifier: {
      if (!(r->sqe[sqe::kCdw11] & 1) || !r->c2h || r->len < 16) {
        SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
        return Complete(r);
      }
      memcpy(r->buf, c->hostid, 16);
      SendData(r, r->buf, 16, false);
      return Complete(r);
    }
    default:
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
      return Complete(r);
  }
  Put32(r->cqe + cqe::kDw0, v);
  Complete(r);
}

void TcpConn::SetFeatures(Request* r) {
  const uint8_t fid = r->sqe[sqe::kCdw10];
  const bool save = (r->sqe[sqe::kCdw10 + 3] & 0x80) != 0;
  const uint32_t cdw11 = Get32(r->sqe + sqe::kCdw11);
  Controller* c = ctrlr_.get();
  if (save) {
    SetStatus(r, nvme::kSctCommandSpecific, sc::kFeatureIdNotSaveable, true);
    return Complete(r);
  }
  switch (fid) {
    case nvme::feat::kNumberOfQueues: {
      std::lock_guard<std::mutex> lock(c->mu);
      if (c->io_count > 0) {
        SetStatus(r, nvme::kSctGeneric, sc::kCommandSequenceError, true);
        return Complete(r);
      }
      const uint32_t nsq = (cdw11 & 0xFFFF) + 1, ncq = (cdw11 >> 16) + 1;
      if (nsq == 0x10000 || ncq == 0x10000) {
        SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
        return Complete(r);
      }
      const uint32_t max = tgt_->opts().max_io_qpairs_per_ctrlr;
      c->num_io_queues = std::min({nsq, ncq, max});
      // The reply reports what is allocated (SPDK answers its maximum).
      Put32(r->cqe + cqe::kDw0, (max - 1) | ((max - 1) << 16));
      return Complete(r);
    }
    case nvme::feat::kKeepAliveTimer:
      c->kato_ms.store(cdw11, std::memory_order_relaxed);
      c->last_keep_alive_us.store(Reactor::NowUs(), std::memory_order_relaxed);
      return Complete(r);
    case nvme::feat::kAsyncEventConfig:
      c->async_event_config = cdw11;
      return Complete(r);
    case nvme::feat::kTemperatureThreshold:
      c->temp_threshold = cdw11 & 0xFFFF;
      return Complete(r);
    case nvme::feat::kVolatileWriteCache:
    case nvme::feat::kArbitration:
    case nvme::feat::kPowerManagement:
    case nvme::feat::kErrorRecovery:
    case nvme::feat::kInterruptCoalescing:
    case nvme::feat::kInterruptVectorConfig:
    case nvme::feat::kWriteAtomicity:
      return Complete(r);
    case nvme::feat::kHostIdentifier:
      SetStatus(r, nvme::kSctCommandSpecific, sc::kFeatureNotChangeable, true);
      return Complete(r);
    default:
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidField, true);
      return Complete(r);
  }
}

void TcpConn::AsyncEventRequest(Request* r) {
  if (aers_.size() >= kMaxAers) {
    SetStatus(r, nvme::kSctCommandSpecific, sc::kAsyncEventRequestLimitExceeded, true);
    return Complete(r);
  }
  if (events_queued_ > 0) {
    Put32(r->cqe + cqe::kDw0, event_dw0_[0]);
    memmove(event_dw0_, event_dw0_ + 1, sizeof(uint32_t) * (events_queued_ - 1));
    events_queued_--;
    return Complete(r);
  }
  aers_.push_back(r);  // completes when an event happens
}

void TcpConn::PostAsyncEvent(uint32_t kind_bit, uint32_t dw0) {
  if (qid_ != 0 || closing_ || !ctrlr_) return;
  if ((ctrlr_->async_event_config & kind_bit) == 0) return;
  if (!aers_.empty()) {
    Request* r = aers_.front();
    aers_.erase(aers_.begin());
    Put32(r->cqe + cqe::kDw0, dw0);
    Complete(r);
    pg_->WantFlush(this);
    return;
  }
  for (int i = 0; i < events_queued_; i++) {
    if (event_dw0_[i] == dw0) return;  // one of each kind is enough
  }
  if (events_queued_ < 8) event_dw0_[events_queued_++] = dw0;
}

void TcpConn::NoteChangedNs(const std::vector<uint32_t>& nsids) {
  if (!ctrlr_) return;
  Controller* c = ctrlr_.get();
  for (uint32_t n : nsids) {
    if (std::find(c->changed_ns.begin(), c->changed_ns.end(), n) != c->changed_ns.end()) continue;
    if (c->changed_ns.size() >= 1024) {
      c->changed_ns_overflow = true;
      break;
    }
    c->changed_ns.push_back(n);
  }
}

void TcpConn::Abort(Request* r) {
  const uint32_t cdw10 = Get32(r->sqe + sqe::kCdw10);
  const uint16_t sqid = cdw10 & 0xFFFF;
  const uint16_t cid = cdw10 >> 16;
  if (sqid == 0) {
    Put32(r->cqe + cqe::kDw0, AbortQueued(cid) ? 0 : 1);
    return Complete(r);
  }
  // An I/O queue, possibly on another reactor: ask it, and complete the Abort when it answers.
  QpairRef q;
  {
    std::lock_guard<std::mutex> lock(ctrlr_->mu);
    if (sqid <= ctrlr_->io.size()) q = ctrlr_->io[sqid - 1];
  }
  if (q.pg == nullptr) {
    Put32(r->cqe + cqe::kDw0, 1);
    return Complete(r);
  }
  PollGroup* home = pg_;
  const uint64_t self = id_;
  const uint16_t idx = r->idx;
  q.pg->reactor()->Send([q, cid, home, self, idx]() {
    TcpConn* target = q.pg->Find(q.id);
    const bool aborted = target != nullptr && target->AbortQueued(cid);
    home->reactor()->Send([home, self, idx, aborted]() {
      TcpConn* admin = home->Find(self);
      if (admin != nullptr) admin->FinishAbort(idx, aborted);
    });
  });
}

void TcpConn::FinishAbort(uint16_t idx, bool aborted) {
  Request* r = &reqs_[idx];
  if (closing_ || r->state != ReqState::kExecuting) return;
  Put32(r->cqe + cqe::kDw0, aborted ? 0 : 1);
  Complete(r);
  pg_->WantFlush(this);
}

bool TcpConn::AbortQueued(uint16_t cid) {
  if (closing_) return false;
  // An outstanding Asynchronous Event Request (admin queue).
  for (size_t i = 0; i < aers_.size(); i++) {
    if (aers_[i]->cid == cid) {
      Request* a = aers_[i];
      aers_.erase(aers_.begin() + static_cast<long>(i));
      SetStatus(a, nvme::kSctGeneric, sc::kAbortedByRequest);
      Complete(a);
      return true;
    }
  }
  // A command still waiting for a data buffer (no data has moved yet).
  for (Request& x : reqs_) {
    if (x.state == ReqState::kWaitBuffer && x.cid == cid) {
      x.state = ReqState::kExecuting;  // the poll group's waiter entry is skipped from now on
      SetStatus(&x, nvme::kSctGeneric, sc::kAbortedByRequest);
      Complete(&x);
      pg_->WantFlush(this);
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// I/O commands

bool TcpConn::LookupNs(Request* r, uint32_t nsid) {
  RefreshNamespaces();
  if (nsid == 0 || nsid > ns_->size() || !(*ns_)[nsid - 1]) {
    SetStatus(r, nvme::kSctGeneric, sc::kInvalidNamespaceOrFormat, true);
    return false;
  }
  r->ns = (*ns_)[nsid - 1];
  BdevChannel*& ch = ns_ch_[nsid - 1];
  if (ch == nullptr) ch = pg_->Channel(r->ns);
  r->ch = ch;
  return true;
}

void TcpConn::ExecuteIo(Request* r) {
  const uint8_t opc = r->sqe[sqe::kOpc];
  const uint32_t nsid = Get32(r->sqe + sqe::kNsid);
  if (!LookupNs(r, nsid)) return Complete(r);
  Bdev* b = r->ns->bdev;
  const uint32_t bs = b->block_size();
  const uint64_t nb = b->num_blocks();
  const uint64_t slba = Get64(r->sqe + sqe::kCdw10);
  const uint64_t nlb = (Get32(r->sqe + sqe::kCdw12) & 0xFFFF) + 1ull;
  auto range_ok = [&]() { return slba < nb && nlb <= nb - slba; };
  switch (opc) {
    case nvme::opc::kRead:
    case nvme::opc::kWrite:
    case nvme::opc::kCompare: {
      if (!range_ok()) {
        SetStatus(r, nvme::kSctGeneric, sc::kLbaOutOfRange, true);
        return Complete(r);
      }
      if (nlb * bs != r->len) {
        SetStatus(r, nvme::kSctGeneric, sc::kDataSglLengthInvalid, true);
        return Complete(r);
      }
      if (opc == nvme::opc::kWrite) {
        if (b->read_only() || !b->io_type_supported(IoType::kWrite)) {
          SetStatus(r, nvme::kSctGeneric, sc::kNamespaceWriteProtected, true);
          return Complete(r);
        }
        return SubmitBdev(r, IoType::kWrite, slba, nlb, r->buf);
      }
      if (opc == nvme::opc::kRead) return SubmitBdev(r, IoType::kRead, slba, nlb, r->buf);
      // Compare: read into a second buffer, then compare with the host's data.
      pg_->PutBuffer(r->buf2, r->buf2_cap);
      r->buf2 = pg_->GetBuffer(r->len, &r->buf2_cap);
      if (r->buf2 == nullptr) {
        SetStatus(r, nvme::kSctGeneric, sc::kInternalDeviceError);
        return Complete(r);
      }
      return SubmitBdev(r, IoType::kRead, slba, nlb, r->buf2);
    }
    case nvme::opc::kWriteZeroes:
      if (!range_ok()) {
        SetStatus(r, nvme::kSctGeneric, sc::kLbaOutOfRange, true);
        return Complete(r);
      }
      if (b->read_only()) {
        SetStatus(r, nvme::kSctGeneric, sc::kNamespaceWriteProtected, true);
        return Complete(r);
      }
      return SubmitBdev(r, IoType::kWriteZeroes, slba, nlb, nullptr);
    case nvme::opc::kFlush:
      return SubmitBdev(r, IoType::kFlush, 0, 0, nullptr);
    case nvme::opc::kDatasetManagement: {
      const uint32_t nr = (Get32(r->sqe + sqe::kCdw10) & 0xFF) + 1;
      const uint32_t attr = Get32(r->sqe + sqe::kCdw11);
      if (r->len < nr * 16) {
        SetStatus(r, nvme::kSctGeneric, sc::kDataSglLengthInvalid, true);
        return Complete(r);
      }
      if (!(attr & 0x4)) return Complete(r);  // only deallocate does anything
      if (b->read_only()) {
        SetStatus(r, nvme::kSctGeneric, sc::kNamespaceWriteProtected, true);
        return Complete(r);
      }
      for (uint32_t i = 0; i < nr; i++) {
        const uint64_t len = Get32(r->buf + 16 * i + 4);
        const uint64_t start = Get64(r->buf + 16 * i + 8);
        if (start > nb || len > nb - start) {
          SetStatus(r, nvme::kSctGeneric, sc::kLbaOutOfRange, true);
          return Complete(r);
        }
      }
      r->dsm_next = 0;
      r->dsm_count = nr;
      return DsmNext(r);
    }
    default:
      SetStatus(r, nvme::kSctGeneric, sc::kInvalidOpcode, true);
      return Complete(r);
  }
}

void TcpConn::DsmNext(Request* r) {
  while (r->dsm_next < r->dsm_count) {
    const uint32_t i = r->dsm_next++;
    const uint64_t len = Get32(r->buf + 16 * i + 4);
    const uint64_t start = Get64(r->buf + 16 * i + 8);
    if (len == 0) continue;
    return SubmitBdev(r, IoType::kUnmap, start, len, nullptr);
  }
  Complete(r);
}

void TcpConn::SubmitBdev(Request* r, IoType type, uint64_t lba, uint64_t nblocks, uint8_t* data) {
  BdevIo& io = r->io;
  io.type = type;
  io.offset_blocks = lba;
  io.num_blocks = nblocks;
  if (data != nullptr) {
    r->iov = {data, static_cast<size_t>(nblocks * r->ns->bdev->block_size())};
    io.iovs = &r->iov;
    io.iovcnt = 1;
  } else {
    io.iovs = nullptr;
    io.iovcnt = 0;
  }
  outstanding_io_++;
  pg_->stats.pending_bdev_io.Add(1);
  r->ch->Submit(&io);
}

void TcpConn::OnBdevDone(BdevIo* io, int status, void* ctx) {
  Request* r = static_cast<Request*>(ctx);
  r->conn->BdevDone(r, status);
}

void TcpConn::BdevDone(Request* r, int status) {
  outstanding_io_--;
  pg_->stats.pending_bdev_io.Add(-1);
  if (closing_) {
    FreeRequest(r);
    if (Drained()) pg_->Destroyed(this);
    return;
  }
  const uint8_t opc = r->sqe[sqe::kOpc];
  if (status != 0) {
    if (status == -EPERM || status == -EROFS) {
      SetStatus(r, nvme::kSctGeneric, sc::kNamespaceWriteProtected, true);
    } else if (status == -ENOSPC) {
      SetStatus(r, nvme::kSctGeneric, sc::kCapacityExceeded, true);
    } else if (status == -ENODEV) {
      SetStatus(r, nvme::kSctGeneric, sc::kNamespaceNotReady);
    } else if (status == -EINVAL) {
      SetStatus(r, nvme::kSctGeneric, sc::kLbaOutOfRange, true);
    } else {
      const bool rd = r->io.type == IoType::kRead;
      SetStatus(r, nvme::kSctMedia, rd ? sc::kUnrecoveredReadError : sc::kWriteFault);
    }
    return Complete(r);
  }
  if (opc == nvme::opc::kDatasetManagement) return DsmNext(r);
  if (opc == nvme::opc::kCompare) {
    if (memcmp(r->buf, r->buf2, r->len) != 0) {
      SetStatus(r, nvme::kSctMedia, sc::kCompareFailure);
    }
    return Complete(r);
  }
  if (opc == nvme::opc::kRead) {
    // Read data goes out with the SUCCESS flag (no CapsuleResp) when the host disabled SQ flow
    // control and the transport allows it.
    const bool success = tgt_->opts().c2h_success && sq_flow_disabled_;
    SendData(r, r->buf, r->len, success);
    if (success) {
      SendItem* last = sendq_.back();
      last->release = r;
      r->state = ReqState::kSending;
      pg_->stats.completed_nvme_io.Add(1);
      pg_->WantFlush(this);
      return;
    }
  }
  Complete(r);
}

// ---------------------------------------------------------------------------------------------
// Send

TcpConn::SendItem* TcpConn::NewItem() {
  SendItem* it;
  if (free_items_.empty()) {
    it = new SendItem();
  } else {
    it = free_items_.back();
    free_items_.pop_back();
  }
  it->hdr_len = 0;
  it->data = nullptr;
  it->data_len = 0;
  it->has_ddgst = false;
  it->sent = 0;
  it->release = nullptr;
  it->close_after = false;
  return it;
}

void TcpConn::SendData(Request* r, const uint8_t* data, uint32_t len, bool success_flag) {
  uint32_t off = 0;
  while (off < len) {
    const uint32_t n = std::min(len - off, kMaxC2HData);
    const bool last = off + n == len;
    SendItem* it = NewItem();
    uint8_t flags = last ? kFlagLastPdu : 0;
    if (last && success_flag) flags |= kFlagSuccess;
    it->hdr_len = BuildData(it->hdr, params_, true, r->cid, 0, off, n, flags);
    it->data = data + off;
    it->data_len = n;
    if (params_.ddgst) {
      Put32(it->ddgst, Digest(data + off, n));
      it->has_ddgst = true;
    }
    sendq_.push_back(it);
    off += n;
  }
}

void TcpConn::Complete(Request* r) {
  if (closing_) {
    FreeRequest(r);
    return;
  }
  uint8_t* c = r->cqe;
  Put16(c + cqe::kSqhd, static_cast<uint16_t>(sq_head_));
  Put16(c + cqe::kSqid, static_cast<uint16_t>(qid_ < 0 ? 0 : qid_));
  Put16(c + cqe::kCid, r->cid);
  SendItem* it = NewItem();
  it->hdr_len = BuildCapsuleResp(it->hdr, params_, c);
  it->release = r;
  r->state = ReqState::kSending;
  sendq_.push_back(it);
  if (qid_ > 0) pg_->stats.completed_nvme_io.Add(1);
  pg_->WantFlush(this);
}

void TcpConn::Flush() {
  while (!sendq_.empty() && fd_ >= 0) {
    struct iovec iov[64];
    int n = 0;
    for (size_t i = 0; i < sendq_.size() && n <= 61; i++) {
      SendItem* it = sendq_[i];
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
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!writable_watch_) {
          writable_watch_ = true;
          pg_->WatchWritable(this, true);
        }
        return;
      }
      if (errno == EINTR) continue;
      sendq_.clear();  // the items leak into nothing: freed below via Close
      return Close("send error");
    }
    size_t left = static_cast<size_t>(w);
    while (!sendq_.empty()) {
      SendItem* it = sendq_.front();
      const uint32_t total = it->hdr_len + it->data_len + (it->has_ddgst ? 4 : 0);
      const uint32_t rest = total - it->sent;
      if (left < rest) {
        it->sent += static_cast<uint32_t>(left);
        left = 0;
        break;
      }
      left -= rest;
      sendq_.pop_front();
      if (it->release != nullptr) FreeRequest(it->release);
      const bool close_after = it->close_after;
      free_items_.push_back(it);
      if (close_after) return Close("host disconnected");
    }
  }
  if (writable_watch_ && sendq_.empty()) {
    writable_watch_ = false;
    pg_->WatchWritable(this, false);
  }
}

void TcpConn::OnWritable() { Flush(); }

// ---------------------------------------------------------------------------------------------
// Errors and teardown

void TcpConn::Fatal(uint16_t fes, uint32_t fei) {
  // C2HTermReq carrying the offending header, then close once it is written.
  SendItem* it = NewItem();
  it->hdr_len = BuildTermReq(it->hdr, true, fes, fei, rx_.header(), rx_.header_len());
  it->close_after = true;
  sendq_.push_back(it);
  Flush();
  if (!closing_) Close("protocol error");
}

bool TcpConn::CheckTimers(uint64_t now_us) {
  if (closing_) return false;
  if (qid_ < 0) {
    if (now_us - accepted_us_ <= kConnectTimeoutUs) return false;
    pg_->stats.connect_timeouts.Add(1);
    Close("no Connect in time");
    return true;
  }
  if (qid_ != 0 || !ctrlr_) return false;
  const uint64_t kato = ctrlr_->kato_ms.load(std::memory_order_relaxed);
  if (kato == 0) return false;
  const uint64_t last = ctrlr_->last_keep_alive_us.load(std::memory_order_relaxed);
  if (now_us > last && now_us - last > kato * 1000) {
    pg_->stats.keep_alive_timeouts.Add(1);
    Close("keep-alive timeout");
    return true;
  }
  return false;
}

void TcpConn::Close(const char* /*why*/) {
  if (closing_) return;
  closing_ = true;
  if (fd_ >= 0) {
    pg_->Unwatch(this);
    shutdown(fd_, SHUT_RDWR);
  }
  for (SendItem* it : sendq_) free_items_.push_back(it);
  sendq_.clear();
  // Outstanding AERs complete nowhere: they die with the connection.
  aers_.clear();
  if (ctrlr_) {
    Controller* c = ctrlr_.get();
    if (qid_ == 0) {
      pg_->stats.current_admin_qpairs.Add(-1);
      {
        std::lock_guard<std::mutex> lock(c->mu);
        c->admin = QpairRef{};
      }
      // The controller goes with its admin queue: disconnect its I/O queues, forget it.
      tgt_->DisconnectController(ctrlr_);
      std::lock_guard<std::mutex> lock(subsys_->mu);
      auto it = subsys_->ctrlrs.find(c->cntlid);
      if (it != subsys_->ctrlrs.end() && it->second == ctrlr_) subsys_->ctrlrs.erase(it);
    } else if (qid_ > 0) {
      pg_->stats.current_io_qpairs.Add(-1);
      std::lock_guard<std::mutex> lock(c->mu);
      if (static_cast<size_t>(qid_) <= c->io.size() && c->io[qid_ - 1].id == id_) {
        c->io[qid_ - 1] = QpairRef{};
        c->io_count--;
      }
    }
  }
  // Requests in the bdev finish first (BdevDone); everything else goes with the connection.
  if (Drained()) pg_->Destroyed(this);
}

}  // namespace spdk_node

// NvmeQpair on SPDK's NVMe driver, owned by the JS thread (see js_nvme.h).
//
// A CID here is our request slot (SPDK picks its own CIDs on the wire): busy from submit() until
// JavaScript has reaped its completion, so the {cid, status} ring (capacity >= depth) never
// overflows and a buffer is in flight to JavaScript exactly until its completion is handed over.
#include <spdk/env.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "../../common/napi_util.h"
#include "../js_app.h"
#include "../log.h"
#include "js_nvme.h"

namespace spdk_node::libspdk {

using namespace nvme_host;

namespace {

const char* kOpSubmit = "nvme.submit";
const char* kOpAlloc = "nvme.allocQpair";
constexpr uint64_t kSpinMs = 2;  // spin this long without progress, then tick
constexpr uint64_t kTickMs = 1;
// ABORTED - SQ DELETION (SCT 0, SC 08h), what SPDK completes a command with when its qpair goes.
constexpr int32_t kAbortedSqDeletion = 0x08;


void FinalizeNothing(napi_env, void*, void*) {}

uint64_t NowMs() { return uv_hrtime() / 1000000; }

int32_t StatusOf(const spdk_nvme_cpl* c) { return static_cast<int32_t>(c->status_raw >> 1); }

void FreeIdle(uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); }
void FreeTimer(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

}  // namespace

Napi::Function JsLsQpair::Init(Napi::Env env) {
  return DefineClass(env, "NvmeQpair",
                     {
                         InstanceMethod("connect", &JsLsQpair::Connect),
                         InstanceMethod("submit", &JsLsQpair::Submit),
                         InstanceMethod("reap", &JsLsQpair::Reap),
                         InstanceMethod("disconnect", &JsLsQpair::Disconnect),
                         InstanceMethod("reconnect", &JsLsQpair::Reconnect),
                         InstanceMethod("state", &JsLsQpair::State),
                         InstanceMethod("stats", &JsLsQpair::Stats),
                         InstanceMethod("inFlight", &JsLsQpair::InFlight),
                     });
}

// new NvmeQpair(ctrlr, { qid, depth, queueSize, reactor, spin, timeoutMs }, onReady)
JsLsQpair::JsLsQpair(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsLsQpair>(info) {
  Napi::Env env = info.Env();
  env_ = env;
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsFunction())
    ThrowSpdkError(env, "NvmeQpair(ctrlr, options, onReady)", EINVAL, kOpAlloc);
  ctrlr_ = JsLsCtrlr::Unwrap(info[0].As<Napi::Object>());
  if (!ctrlr_->app()->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, kOpAlloc);
  if (!ctrlr_->ready())
    ThrowSpdkError(env, "the controller is not connected" + (ctrlr_->failed() ? ": " + ctrlr_->failure() : std::string()),
                   ENOTCONN, kOpAlloc);
  Napi::Object o = info[1].As<Napi::Object>();
  depth_ = static_cast<uint32_t>(GetUint(o, "depth", kOpAlloc));
  queue_size_ = static_cast<uint32_t>(GetUint(o, "queueSize", kOpAlloc));
  spin_ = o.Get("spin").ToBoolean();
  if (o.Get("reactor").As<Napi::Number>().Int32Value() >= 0)
    ThrowSpdkError(env,
                   "nvme.allocQpair with owner 'reactor' is not available on the libspdk engine yet: queue pairs are "
                   "owned by the JS thread (owner 'js')",
                   EOPNOTSUPP, kOpAlloc, "ERR_ENGINE_UNSUPPORTED");
  if (GetUint(o, "timeoutMs", kOpAlloc) > 0)
    ThrowSpdkError(env, "per-command timeouts (timeoutMs, ioTimeoutMs) are not available on the libspdk engine yet",
                   EOPNOTSUPP, kOpAlloc, "ERR_ENGINE_UNSUPPORTED");
  if (depth_ == 0 || depth_ > 65535 || queue_size_ < 2 || queue_size_ > 65536)
    ThrowSpdkError(env, "invalid depth or queue size", EINVAL, kOpAlloc);
  max_xfer_ = spdk_nvme_ctrlr_get_max_xfer_size(ctrlr_->ctrlr());
  slots_.resize(depth_);
  for (Slot& s : slots_) s.qp = this;
  free_.reserve(depth_);
  for (uint32_t i = depth_; i > 0; i--) free_.push_back(static_cast<uint16_t>(i - 1));
  uint32_t cap = 1;
  while (cap < depth_) cap <<= 1;
  cq_mask_ = cap - 1;
  desc_ = new double[static_cast<size_t>(depth_) * kNdWords]();
  cq_ = new uint32_t[static_cast<size_t>(cap) * 2]();

  napi_value ab;
  if (napi_create_external_arraybuffer(env, desc_, sizeof(double) * depth_ * kNdWords, FinalizeNothing, nullptr, &ab) != napi_ok)
    ThrowSpdkError(env, "cannot create the descriptor array", ENOMEM, kOpAlloc);
  info.This().As<Napi::Object>().Set("desc", Napi::Float64Array::New(env, static_cast<size_t>(depth_) * kNdWords,
                                                                     Napi::ArrayBuffer(env, ab), 0));
  on_ready_ = Napi::Persistent(info[2].As<Napi::Function>());
  ctrlr_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  idle_ = new uv_idle_t();
  uv_idle_init(ctrlr_->loop(), idle_);
  idle_->data = this;
  timer_ = new uv_timer_t();
  uv_timer_init(ctrlr_->loop(), timer_);
  timer_->data = this;
  counted_ = true;
  ctrlr_->AddQpair(this);
  Ref();  // the event loop calls back into us until disconnect() completes
}

JsLsQpair::~JsLsQpair() {
  if (ctrlr_ != nullptr && counted_) ctrlr_->RemoveQpair(this);
  if (idle_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(idle_), FreeIdle);
  if (timer_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(timer_), FreeTimer);
  if (ring_ref_ != nullptr) napi_delete_reference(env_, ring_ref_);
  delete[] desc_;
  delete[] cq_;
}

std::string JsLsQpair::Where() const {
  return "qpair " + std::to_string(qp_ != nullptr ? spdk_nvme_qpair_get_id(qp_) : 0) + " of " + ctrlr_->where();
}

// ---------------------------------------------------------------------------------------------
// Connection

Napi::Value JsLsQpair::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (phase_ != Phase::kNew) ThrowSpdkError(env, "qpair already connected", EALREADY, kOpAlloc);
  spdk_nvme_io_qpair_opts o;
  spdk_nvme_ctrlr_get_default_io_qpair_opts(ctrlr_->ctrlr(), &o, sizeof(o));
  // SPDK keeps the commands a full queue cannot take in its own queue, in order: requests for
  // depth commands (a large one may be split in children) whatever the queue size.
  o.io_queue_size = queue_size_;
  o.io_queue_requests = std::max<uint32_t>(o.io_queue_requests, depth_ * 2 + 8);
  o.async_mode = true;  // connected by polling, never blocking the JS thread
  ClearRecent();
  qp_ = spdk_nvme_ctrlr_alloc_io_qpair(ctrlr_->ctrlr(), &o, sizeof(o));
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  if (qp_ == nullptr) {
    phase_ = Phase::kFailed;
    failure_ = "SPDK could not allocate an I/O queue pair" + (RecentErrors().empty() ? std::string() : ": " + RecentErrors());
    d->Reject(MakeSpdkError(env, "cannot connect an I/O qpair to " + ctrlr_->where() + ": " + failure_, EIO, kOpAlloc).Value());
    return d->Promise();
  }
  StartConnect(d);
  return d->Promise();
}

void JsLsQpair::StartConnect(std::shared_ptr<Napi::Promise::Deferred> d) {
  phase_ = Phase::kConnecting;
  connect_deferred_ = std::move(d);
  failure_.clear();
  transport_lost_ = false;
  UpdateDriver();
}

void JsLsQpair::FinishConnect(napi_env env, bool ok) {
  if (phase_ != Phase::kConnecting) return;
  auto d = std::move(connect_deferred_);
  connect_deferred_ = nullptr;
  Napi::Env e(env);
  if (ok) {
    phase_ = Phase::kReady;
    if (d) d->Resolve(e.Undefined());
    return;
  }
  phase_ = Phase::kFailed;
  if (d) d->Reject(MakeSpdkError(e, "cannot connect " + Where() + ": " + failure_, ECONNREFUSED, kOpAlloc).Value());
}

// ---------------------------------------------------------------------------------------------
// Polling: a uv_idle handle while commands are outstanding (every loop iteration polls SPDK),
// a 1 ms timer once 2 ms passed without progress or with spin off, nothing when idle.

void JsLsQpair::UpdateDriver() {
  const bool closed = phase_ == Phase::kClosed || qp_ == nullptr;
  const bool connecting = phase_ == Phase::kConnecting;
  const bool work = !closed && (connecting || in_spdk_ > 0);
  const bool spin = work && !connecting && spin_ && NowMs() - last_progress_ms_ <= kSpinMs;
  if (spin != idling_) {
    if (spin)
      uv_idle_start(idle_, OnIdle);
    else
      uv_idle_stop(idle_);
    idling_ = spin;
  }
  const bool tick = work && !spin;
  if (tick != ticking_) {
    if (tick)
      uv_timer_start(timer_, OnTimer, kTickMs, kTickMs);
    else
      uv_timer_stop(timer_);
    ticking_ = tick;
  }
}

void JsLsQpair::OnIdle(uv_idle_t* h) { static_cast<JsLsQpair*>(h->data)->Poll(); }
void JsLsQpair::OnTimer(uv_timer_t* t) { static_cast<JsLsQpair*>(t->data)->Poll(); }

int32_t JsLsQpair::Process() {
  if (qp_ == nullptr || in_process_ || !ctrlr_->app()->running()) return 0;
  in_process_ = true;
  const uint32_t before = cq_tail_;
  const int32_t rc = spdk_nvme_qpair_process_completions(qp_, 0);
  in_process_ = false;
  process_calls_++;
  if (rc > 0) last_progress_ms_ = NowMs();
  if (phase_ == Phase::kReady && (rc < 0 || spdk_nvme_qpair_get_failure_reason(qp_) != SPDK_NVME_QPAIR_FAILURE_NONE)) {
    // Transport lost: what SPDK aborted in this call failed for that reason, not a deletion.
    for (uint32_t i = before; i != cq_tail_; i++) {
      uint32_t* e = cq_ + static_cast<size_t>(i & cq_mask_) * 2;
      if (static_cast<int32_t>(e[1]) == kAbortedSqDeletion) e[1] = static_cast<uint32_t>(-ECONNRESET);
    }
    TransportFailed(rc);
  }
  return rc;
}

void JsLsQpair::TransportFailed(int rc) {
  phase_ = Phase::kFailed;
  transport_lost_ = true;
  const spdk_nvme_qp_failure_reason r = spdk_nvme_qpair_get_failure_reason(qp_);
  failure_ = r == SPDK_NVME_QPAIR_FAILURE_REMOTE ? "the target closed the connection"
           : r == SPDK_NVME_QPAIR_FAILURE_LOCAL  ? "the connection was lost"
                                                 : "the queue pair failed (" + ErrnoText(-rc) + ")";
  // SPDK completes what it still holds when the qpair is disconnected: now, so nothing waits.
  spdk_nvme_ctrlr_disconnect_io_qpair(qp_);
  in_process_ = true;
  spdk_nvme_qpair_process_completions(qp_, 0);
  in_process_ = false;
  // Anything SPDK still has is failed by us; its late callback is ignored (in_spdk false).
  for (Slot& s : slots_) {
    if (s.in_spdk) Complete(&s, -ECONNRESET);
  }
}

void JsLsQpair::Poll() {
  if (phase_ == Phase::kConnecting) {
    const int32_t rc = spdk_nvme_qpair_process_completions(qp_, 0);
    if (spdk_nvme_qpair_is_connected(qp_)) {
      ctrlr_->RunJs([this]() { FinishConnect(env_, true); });
    } else if (rc < 0 && rc != -EAGAIN) {
      failure_ = "SPDK could not connect it (" + ErrnoText(-rc) + ")";
      const std::string log = RecentErrors();
      if (!log.empty()) failure_ += "\nSPDK: " + log;
      ctrlr_->RunJs([this]() { FinishConnect(env_, false); });
    }
    UpdateDriver();
    return;
  }
  Process();
  if (armed_ && cq_head_ != cq_tail_) ctrlr_->RunJs([this]() { Deliver(env_); });
  UpdateDriver();
}

// ---------------------------------------------------------------------------------------------
// Submission

int JsLsQpair::Prepare(const double* d, uint16_t* cid_out, std::string* msg) {
  NvmeIoHead h;
  if (int err = ParseNvmeHead(d, &h, msg)) return err;
  const uint32_t nsid = h.nsid;
  if (nsid != last_nsid_ || last_gen_ != ctrlr_->generation()) {
    spdk_nvme_ctrlr* c = ctrlr_->ctrlr();
    spdk_nvme_ns* ns = spdk_nvme_ctrlr_is_active_ns(c, nsid) ? spdk_nvme_ctrlr_get_ns(c, nsid) : nullptr;
    if (ns == nullptr) {
      *msg = "namespace " + std::to_string(nsid) + " is not active on " + ctrlr_->where();
      return EINVAL;
    }
    last_ns_ = ns;
    last_nsid_ = nsid;
    last_gen_ = ctrlr_->generation();
    // Payloads are extended LBAs when metadata is interleaved with the data.
    last_lba_size_ = spdk_nvme_ns_get_extended_sector_size(ns);
  }
  DmaBuffer* buf = nullptr;
  uint64_t off = 0, len = 0;
  if (int err = ParseNvmePayload(d, h, last_lba_size_, max_xfer_,
                                 [this](double id) { return ctrlr_->app()->LookupBuffer(id); }, &buf, &off, &len, msg))
    return err;
  if (buf != nullptr) {
    if (int err = CheckNoOverlap(static_cast<const Slot*>(buf->host_io), off, len, msg)) return err;
  }
  if (free_.empty()) {
    *msg = "the qpair has " + std::to_string(depth_) + " I/Os in flight (its depth)";
    return EAGAIN;
  }
  const uint16_t cid = free_.back();
  free_.pop_back();
  Slot& s = slots_[cid];
  s.busy = true;
  s.tag = h.tag;
  s.buf = buf;
  s.off = off;
  s.len = len;
  s.prev = s.next = nullptr;
  if (buf != nullptr) {
    Slot* head = static_cast<Slot*>(buf->host_io);
    s.next = head;
    if (head != nullptr) head->prev = &s;
    buf->host_io = &s;
    buf->IoRef();
  }
  *cid_out = cid;
  return 0;
}

// Hands one validated descriptor to SPDK; 0 or a negative errno (nothing submitted).
int JsLsQpair::Issue(const double* d, uint16_t cid) {
  Slot& s = slots_[cid];
  const int op = static_cast<int>(d[kNdOp]);
  const uint32_t count = static_cast<uint32_t>(d[kNdCount]);
  const uint64_t lba = op == kNdFlush || op == kNdDeallocate ? 0 : static_cast<uint64_t>(d[kNdLba]);
  const uint32_t flags = static_cast<uint32_t>(d[kNdFlags]);
  uint32_t io_flags = (flags & kNdFlagFua) ? SPDK_NVME_IO_FLAGS_FORCE_UNIT_ACCESS : 0;
  void* payload = s.buf != nullptr ? s.buf->data + s.off : nullptr;
  spdk_nvme_ns* ns = last_ns_;
  if (static_cast<uint32_t>(d[kNdNsid]) != last_nsid_) {
    ns = spdk_nvme_ctrlr_get_ns(ctrlr_->ctrlr(), static_cast<uint32_t>(d[kNdNsid]));
  }
  switch (op) {
    case kNdRead:
      return spdk_nvme_ns_cmd_read(ns, qp_, payload, lba, count, &JsLsQpair::IoDone, &s, io_flags);
    case kNdWrite:
      return spdk_nvme_ns_cmd_write(ns, qp_, payload, lba, count, &JsLsQpair::IoDone, &s, io_flags);
    case kNdCompare:
      return spdk_nvme_ns_cmd_compare(ns, qp_, payload, lba, count, &JsLsQpair::IoDone, &s, io_flags);
    case kNdWriteZeroes:
      // Write Zeroes DEAC is CDW12 bit 25; SPDK copies the upper half of io_flags into CDW12.
      if (flags & kNdFlagDeac) io_flags |= 1u << 25;
      return spdk_nvme_ns_cmd_write_zeroes(ns, qp_, lba, count, &JsLsQpair::IoDone, &s, io_flags);
    case kNdDeallocate:
      // SPDK copies the ranges (16 bytes each, the buffer's layout) into its own request.
      return spdk_nvme_ns_cmd_dataset_management(ns, qp_, SPDK_NVME_DSM_ATTR_DEALLOCATE,
                                                 static_cast<const spdk_nvme_dsm_range*>(payload),
                                                 static_cast<uint16_t>(count), &JsLsQpair::IoDone, &s);
    case kNdFlush:
      return spdk_nvme_ns_cmd_flush(ns, qp_, &JsLsQpair::IoDone, &s);
  }
  return -EINVAL;
}

void JsLsQpair::Unprepare(uint16_t cid) {
  Slot& s = slots_[cid];
  if (s.buf != nullptr) {
    if (s.prev != nullptr)
      s.prev->next = s.next;
    else
      s.buf->host_io = s.next;
    if (s.next != nullptr) s.next->prev = s.prev;
    s.buf->IoUnref();
    s.buf = nullptr;
  }
  s.prev = s.next = nullptr;
  s.busy = false;
  free_.push_back(cid);
}

void JsLsQpair::IoDone(void* arg, const spdk_nvme_cpl* cpl) {
  Slot* s = static_cast<Slot*>(arg);
  if (!s->in_spdk) return;  // we failed it already (transport lost)
  s->qp->Complete(s, StatusOf(cpl));
}

void JsLsQpair::Complete(Slot* s, int32_t status) {
  s->in_spdk = false;
  in_spdk_--;
  // SPDK aborts a lost connection's commands with ABORTED - SQ DELETION, sometimes in the poll
  // before the one that reports the failure: a deletion we did not ask for (free, reset) is the
  // transport's, and fails as on the builtin host (-ECONNRESET: no completion).
  if (status == kAbortedSqDeletion &&
      (transport_lost_ || (phase_ == Phase::kReady && qp_ != nullptr &&
                           spdk_nvme_qpair_get_failure_reason(qp_) != SPDK_NVME_QPAIR_FAILURE_NONE)))
    status = -ECONNRESET;
  const uint16_t cid = static_cast<uint16_t>(s - slots_.data());
  uint32_t* e = cq_ + static_cast<size_t>(cq_tail_ & cq_mask_) * 2;
  e[0] = cid;
  e[1] = static_cast<uint32_t>(status);
  cq_tail_++;
  completions_++;
}

uint32_t JsLsQpair::SubmitBatch(Napi::Env env, uint32_t count) {
  if (phase_ != Phase::kReady || !ctrlr_->app()->running()) {
    std::string why;
    if (phase_ == Phase::kClosing || phase_ == Phase::kClosed)
      why = "the qpair is freed";
    else if (phase_ == Phase::kNew || phase_ == Phase::kConnecting)
      why = "the qpair is not connected yet";
    else if (!ctrlr_->app()->running())
      why = "the engine is stopped";
    else
      why = "the qpair is disconnected (" + (failure_.empty() ? std::string("transport lost") : failure_) +
            "); ctrlr.reset() reconnects it";
    ThrowSpdkError(env, why, ENOTCONN, kOpSubmit);
  }
  if (count > depth_) ThrowSpdkError(env, "more descriptors than the qpair's depth", EINVAL, kOpSubmit);
  uint16_t small[256];
  std::vector<uint16_t> big;
  uint16_t* prepared = small;
  if (count > 256) {
    big.resize(count);
    prepared = big.data();
  }
  for (uint32_t i = 0; i < count; i++) {
    std::string msg;
    const int rc = Prepare(desc_ + static_cast<size_t>(i) * kNdWords, &prepared[i], &msg);
    if (rc == 0) continue;
    for (uint32_t j = i; j > 0; j--) Unprepare(prepared[j - 1]);
    Napi::Error e = MakeSpdkError(env, msg, rc, kOpSubmit);
    e.Set("index", Napi::Number::New(env, i));
    throw e;
  }
  in_flight_ += count;
  for (uint32_t i = 0; i < count; i++) {
    Slot& s = slots_[prepared[i]];
    s.in_spdk = true;
    in_spdk_++;
    const int rc = Issue(desc_ + static_cast<size_t>(i) * kNdWords, prepared[i]);
    // Refused by SPDK (the qpair failed under us, no request left): it completes at once.
    if (rc != 0) Complete(&s, rc == -ENXIO ? -ECONNRESET : rc);
  }
  submissions_ += count;
  last_progress_ms_ = NowMs();
  // Sends what SPDK queued (the TCP transport writes on its poll) and takes early completions.
  Process();
  UpdateDriver();
  return count;
}

Napi::Value JsLsQpair::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Number::New(env, SubmitBatch(env, info[0].As<Napi::Number>().Uint32Value()));
}

// ---------------------------------------------------------------------------------------------
// Completion

uint32_t JsLsQpair::CopyOut(int32_t* ring, uint32_t cap) {
  uint32_t n = 0;
  while (cq_head_ != cq_tail_ && n < cap) {
    const uint32_t* e = cq_ + static_cast<size_t>(cq_head_ & cq_mask_) * 2;
    const uint16_t cid = static_cast<uint16_t>(e[0]);
    ring[2 * n] = slots_[cid].tag;
    ring[2 * n + 1] = static_cast<int32_t>(e[1]);
    Unprepare(cid);
    cq_head_++;
    n++;
  }
  in_flight_ -= n;
  return n;
}

void JsLsQpair::Arm(Napi::Env env, Napi::Value ring, int32_t* ptr, uint32_t cap) {
  Disarm();
  napi_create_reference(env, ring, 1, &ring_ref_);
  ring_ptr_ = ptr;
  ring_cap_ = cap;
  armed_ = true;
}

void JsLsQpair::Disarm() {
  if (ring_ref_ != nullptr) napi_delete_reference(env_, ring_ref_);
  ring_ref_ = nullptr;
  ring_ptr_ = nullptr;
  ring_cap_ = 0;
  armed_ = false;
}

void JsLsQpair::Deliver(napi_env env) {
  if (phase_ == Phase::kConnecting) return;
  if (!armed_ || cq_head_ == cq_tail_) return;
  const uint32_t n = CopyOut(ring_ptr_, ring_cap_);
  Disarm();
  napi_value fn = on_ready_.Value();
  napi_value recv, arg;
  napi_get_undefined(env, &recv);
  napi_create_uint32(env, n, &arg);
  if (napi_call_function(env, recv, fn, 1, &arg, nullptr) == napi_pending_exception) {
    napi_value ex;
    napi_get_and_clear_last_exception(env, &ex);
    napi_fatal_exception(env, ex);
  }
}

// reap(ring: Int32Array, pending: number, wait: boolean) -> number (the builtin host's contract)
Napi::Value JsLsQpair::Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (!info[0].IsTypedArray() ||
      napi_get_typedarray_info(env, info[0], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array || length < 2)
    ThrowSpdkError(env, "reap(ring) needs an Int32Array of at least 2 elements", EINVAL, "nvme.reap");
  const uint32_t pending = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  const bool wait = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  if (pending > 0)
    SubmitBatch(env, pending);  // polls once after sending
  else if (phase_ == Phase::kReady && in_spdk_ > 0)
    Process();
  Disarm();
  const uint32_t n = CopyOut(static_cast<int32_t*>(data), static_cast<uint32_t>(length / 2));
  if (n == 0 && wait && in_flight_ > 0) Arm(env, info[0], static_cast<int32_t*>(data), static_cast<uint32_t>(length / 2));
  UpdateDriver();
  return Napi::Number::New(env, n);
}

Napi::Value JsLsQpair::InFlight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), in_flight_); }

// ---------------------------------------------------------------------------------------------
// Controller reset/detach, failure, free and reconnect

void JsLsQpair::OnCtrlrDisconnect() {
  if (qp_ == nullptr || phase_ == Phase::kClosed || phase_ == Phase::kClosing) return;
  if (phase_ == Phase::kConnecting) {
    failure_ = "the controller was reset";
    ctrlr_->RunJs([this]() { FinishConnect(env_, false); });
  }
  phase_ = Phase::kFailed;
  if (failure_.empty()) failure_ = "controller reset";
  spdk_nvme_ctrlr_disconnect_io_qpair(qp_);
  in_process_ = true;
  spdk_nvme_qpair_process_completions(qp_, 0);
  in_process_ = false;
  for (Slot& s : slots_)
    if (s.in_spdk) Complete(&s, kAbortedSqDeletion);
  if (armed_ && cq_head_ != cq_tail_) ctrlr_->RunJs([this]() { Deliver(env_); });
  UpdateDriver();
}

void JsLsQpair::OnCtrlrFailed(const std::string& why) {
  if (phase_ != Phase::kReady || qp_ == nullptr) return;
  // The qpair's own connection may still be up; its next poll tells. Commands keep their
  // chance to complete; new ones are refused.
  if (in_spdk_ == 0) {
    phase_ = Phase::kFailed;
    failure_ = why;
  }
}

void JsLsQpair::FreeSpdkQpair() {
  if (qp_ == nullptr) return;
  // SPDK aborts what it still holds (ABORTED - SQ DELETION) and frees the qpair.
  if (ctrlr_->app()->running() && ctrlr_->ctrlr() != nullptr) spdk_nvme_ctrlr_free_io_qpair(qp_);
  qp_ = nullptr;
  for (Slot& s : slots_)
    if (s.in_spdk) Complete(&s, kAbortedSqDeletion);
}

// disconnect() -> Promise: commands in flight complete with ABORTED - SQ DELETION; their
// completions stay to be reaped.
Napi::Value JsLsQpair::Disconnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (close_deferred_) return close_deferred_->Promise();
  close_deferred_ = std::make_shared<Napi::Promise::Deferred>(env);
  Napi::Value p = close_deferred_->Promise();
  if (phase_ == Phase::kConnecting) {
    failure_ = "the qpair was freed while connecting";
    FinishConnect(env, false);
  }
  phase_ = Phase::kClosing;
  FreeSpdkQpair();
  Finish(env);
  return p;
}

void JsLsQpair::Finish(napi_env env) {
  phase_ = Phase::kClosed;
  UpdateDriver();
  Deliver(env);  // completions armed for go out now; the rest stay for reap()
  auto d = std::move(close_deferred_);
  if (d) d->Resolve(Napi::Env(env).Undefined());
  if (counted_) {
    counted_ = false;
    ctrlr_->RemoveQpair(this);
    Unref();
  }
}

// reconnect() -> Promise: after the controller was reset, connects this qpair again.
Napi::Value JsLsQpair::Reconnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvme.reset";
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed || qp_ == nullptr) ThrowSpdkError(env, "the qpair is freed", ENOTCONN, op);
  if (phase_ == Phase::kConnecting) ThrowSpdkError(env, "the qpair is connecting", EBUSY, op);
  if (!ctrlr_->ready()) ThrowSpdkError(env, "the controller is not connected", ENOTCONN, op);
  max_xfer_ = spdk_nvme_ctrlr_get_max_xfer_size(ctrlr_->ctrlr());
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  if (spdk_nvme_qpair_is_connected(qp_)) {
    // PCIe: SPDK's reset re-created the queue itself.
    phase_ = Phase::kReady;
    failure_.clear();
    d->Resolve(env.Undefined());
    return d->Promise();
  }
  ClearRecent();
  const int rc = spdk_nvme_ctrlr_connect_io_qpair(ctrlr_->ctrlr(), qp_);
  if (rc != 0 && rc != -EISCONN) {
    phase_ = Phase::kFailed;
    failure_ = "SPDK could not reconnect it (" + ErrnoText(-rc) + ")";
    d->Reject(MakeSpdkError(env, "cannot reconnect " + Where() + ": " + failure_, -rc, op).Value());
    return d->Promise();
  }
  StartConnect(d);
  return d->Promise();
}

Napi::Value JsLsQpair::State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const char* names[] = {"new", "connecting", "ready", "failed", "closing", "closed"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("phase", names[static_cast<int>(phase_)]);
  if (!failure_.empty()) o.Set("failure", failure_);
  return o;
}

Napi::Value JsLsQpair::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("submissions", Napi::Number::New(env, static_cast<double>(submissions_)));
  o.Set("completions", Napi::Number::New(env, static_cast<double>(completions_)));
  o.Set("processCalls", Napi::Number::New(env, static_cast<double>(process_calls_)));
  return o;
}

}  // namespace spdk_node::libspdk

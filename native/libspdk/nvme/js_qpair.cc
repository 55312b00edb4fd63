// NvmeQpair on SPDK's NVMe driver (see js_nvme.h), owned by the JS thread or by a reactor.
//
// A CID here is our request slot (common/nvme/host_slots.h; SPDK picks its own CIDs on the
// wire). Owner 'js': submissions go to SPDK in the submitting call and completions are polled
// from the JS thread's loop. Owner 'reactor': the queue has its own spdk_thread on the reactor's
// core (ReactorLink); submit() validates on the JS thread and pushes CIDs into a lockless ring
// that the thread's poller hands to SPDK; completions come back in one wake-up per poll.
#include <spdk/env.h>
#include <spdk/thread.h>

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
constexpr uint64_t kAbortPending = ~0ull;
// ABORTED - SQ DELETION (SCT 0, SC 08h), what SPDK completes a command with when its qpair goes.
constexpr int32_t kAbortedSqDeletion = 0x08;

uint64_t NowUs() { return spdk_get_ticks() * 1000000 / spdk_get_ticks_hz(); }

int32_t StatusOf(const spdk_nvme_cpl* c) { return static_cast<int32_t>(c->status_raw >> 1); }

void FreeIdle(uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); }
void FreeTimer(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

// The core of reactor `index`: SPDK's reactors are its cores in order.
int CoreOfReactor(int index) {
  uint32_t core;
  int i = 0;
  SPDK_ENV_FOREACH_CORE(core) {
    if (i++ == index) return static_cast<int>(core);
  }
  return -1;
}

}  // namespace

struct JsLsQpair::AbortCtx {
  JsLsQpair* qp;
  uint16_t cid;
  uint64_t issued_us;
  std::shared_ptr<bool> alive;
};

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
JsLsQpair::JsLsQpair(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<JsLsQpair>(info), io_(QpairDepthArg(info)), sq_(QpairDepthArg(info)) {
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
  timeout_ms_ = static_cast<uint32_t>(GetUint(o, "timeoutMs", kOpAlloc));
  spin_ = o.Get("spin").ToBoolean();
  const int reactor_index = o.Get("reactor").As<Napi::Number>().Int32Value();
  if (depth_ == 0 || depth_ > 65535 || depth_ != io_.depth() || queue_size_ < 2 || queue_size_ > 65536)
    ThrowSpdkError(env, "invalid depth or queue size", EINVAL, kOpAlloc);
  if (reactor_index >= 0) {
    const int core = CoreOfReactor(reactor_index);
    if (core < 0) ThrowSpdkError(env, "no reactor " + std::to_string(reactor_index), EINVAL, kOpAlloc);
    core_ = static_cast<uint32_t>(core);
    link_ = std::make_unique<ReactorLink>(env, "spdk-node:nvme-completion", [this](Napi::Env e) { Deliver(e); });
  }
  max_xfer_ = spdk_nvme_ctrlr_get_max_xfer_size(ctrlr_->ctrlr());
  reqs_.resize(depth_);
  for (Req& r : reqs_) r.qp = this;
  info.This().As<Napi::Object>().Set("desc", io_.DescArray(env));
  on_ready_ = Napi::Persistent(info[2].As<Napi::Function>());
  ctrlr_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  if (!reactor()) {
    idle_ = new uv_idle_t();
    uv_idle_init(ctrlr_->loop(), idle_);
    idle_->data = this;
    timer_ = new uv_timer_t();
    uv_timer_init(ctrlr_->loop(), timer_);
    timer_->data = this;
  }
  counted_ = true;
  ctrlr_->AddQpair(this);
  Ref();  // the event loop or a reactor calls back into us until disconnect() completes
}

JsLsQpair::~JsLsQpair() {
  *alive_ = false;
  if (ctrlr_ != nullptr && counted_) ctrlr_->RemoveQpair(this);
  if (idle_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(idle_), FreeIdle);
  if (timer_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(timer_), FreeTimer);
  if (timeout_timer_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(timeout_timer_), FreeTimer);
}

std::string JsLsQpair::Where() const {
  return "qpair " + std::to_string(qp_ != nullptr ? spdk_nvme_qpair_get_id(qp_) : 0) + " of " + ctrlr_->where();
}

void JsLsQpair::ToJs(std::function<void(napi_env)> f) {
  if (!reactor()) return f(env_);
  link_->PostToJs([f](Napi::Env env) { f(env); });
}

void JsLsQpair::SetFailed(const std::string& why) {
  if (phase_ != Phase::kReady) return;
  phase_ = Phase::kFailed;
  failure_ = why;
}

// ---------------------------------------------------------------------------------------------
// Connection

Napi::Value JsLsQpair::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (phase_ != Phase::kNew) ThrowSpdkError(env, "qpair already connected", EALREADY, kOpAlloc);
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  phase_ = Phase::kConnecting;
  connect_deferred_ = d;
  if (reactor()) {
    owner_alive_ = true;
    link_->Start(core_, "spdk-node:nvme-qpair", [this]() { AllocOnReactor(); },
                 [this](Napi::Env e, int, const std::string& msg) { ConnectFailed(e, msg); });
    return d->Promise();
  }
  const std::string err = AllocSpdkQpair();
  if (!err.empty()) {
    failure_ = err;
    FinishConnect(env, false);
    return d->Promise();
  }
  StartConnect(d);
  return d->Promise();
}

// The owner's thread: allocates SPDK's qpair, connected by polling (never blocking); SPDK keeps
// the commands a full queue cannot take in its own queue, in order: requests for depth commands,
// a large one maybe split in children. Returns what failed, or "".
std::string JsLsQpair::AllocSpdkQpair() {
  spdk_nvme_io_qpair_opts o;
  spdk_nvme_ctrlr_get_default_io_qpair_opts(ctrlr_->ctrlr(), &o, sizeof(o));
  o.io_queue_size = queue_size_;
  o.io_queue_requests = std::max<uint32_t>(o.io_queue_requests, depth_ * 2 + 8);
  o.async_mode = true;
  if (!reactor()) ClearRecent();
  qp_ = spdk_nvme_ctrlr_alloc_io_qpair(ctrlr_->ctrlr(), &o, sizeof(o));
  if (qp_ == nullptr) {
    const std::string log = reactor() ? std::string() : RecentErrors();
    return "SPDK could not allocate an I/O queue pair" + (log.empty() ? std::string() : ": " + log);
  }
  transport_lost_ = false;
  owner_connecting_ = true;
  return "";
}

// The reactor's thread, once created.
void JsLsQpair::AllocOnReactor() {
  if (closing_.load(std::memory_order_acquire)) return CloseOnReactor();
  const std::string err = AllocSpdkQpair();
  if (!err.empty()) {
    link_->Exit();
    ToJs([this, err](napi_env env) { ConnectFailed(env, err); });
    return;
  }
  poller_ = spdk_poller_register(&JsLsQpair::PollOnReactor, this, 0);
  if (timeout_ms_ > 0) {
    const uint64_t period_us = std::max<uint64_t>(1000, std::min<uint64_t>(1000000, timeout_ms_ * 250ull));
    timeout_poller_ = spdk_poller_register(&JsLsQpair::TimeoutsOnReactor, this, period_us);
  }
}

// JS thread: the queue's thread could not be made or could not allocate the qpair, and is gone.
void JsLsQpair::ConnectFailed(napi_env env, const std::string& why) {
  owner_alive_ = false;
  failure_ = why;
  FinishConnect(env, false);
  if (phase_ == Phase::kClosing) Finish(env);
}

void JsLsQpair::StartConnect(std::shared_ptr<Napi::Promise::Deferred> d) {
  phase_ = Phase::kConnecting;
  connect_deferred_ = std::move(d);
  failure_.clear();
  owner_connecting_ = true;
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
    if (timeout_ms_ > 0 && !reactor()) {
      if (timeout_timer_ == nullptr) {
        timeout_timer_ = new uv_timer_t();
        uv_timer_init(ctrlr_->loop(), timeout_timer_);
        timeout_timer_->data = this;
        uv_unref(reinterpret_cast<uv_handle_t*>(timeout_timer_));
      }
      const uint64_t period = std::max<uint64_t>(10, std::min<uint64_t>(1000, timeout_ms_ / 4));
      uv_timer_start(timeout_timer_, OnTimeoutTimer, period, period);
    }
    if (d) d->Resolve(e.Undefined());
    return;
  }
  phase_ = Phase::kFailed;
  if (d) d->Reject(MakeSpdkError(e, "cannot connect " + Where() + ": " + failure_, ECONNREFUSED, kOpAlloc).Value());
}

// The owner's thread, while SPDK connects the qpair.
void JsLsQpair::PollConnecting() {
  const int32_t rc = spdk_nvme_qpair_process_completions(qp_, 0);
  if (spdk_nvme_qpair_is_connected(qp_)) {
    owner_connecting_ = false;
    ToJs([this](napi_env env) {
      if (!reactor()) return ctrlr_->RunJs([this]() { FinishConnect(env_, true); });
      FinishConnect(env, true);
    });
  } else if (rc < 0 && rc != -EAGAIN) {
    owner_connecting_ = false;
    std::string why = "SPDK could not connect it (" + ErrnoText(-rc) + ")";
    const std::string log = RecentErrors();
    if (!log.empty()) why += "\nSPDK: " + log;
    ToJs([this, why](napi_env env) {
      failure_ = why;
      if (!reactor()) return ctrlr_->RunJs([this]() { FinishConnect(env_, false); });
      FinishConnect(env, false);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Polling. Owner 'js': a uv_idle handle while commands are outstanding (every loop iteration
// polls SPDK), a 1 ms timer once 2 ms passed without progress or with spin off, nothing when
// idle. Owner 'reactor': a poller on the queue's thread.

void JsLsQpair::UpdateDriver() {
  if (reactor()) return;
  const bool closed = phase_ == Phase::kClosed || qp_ == nullptr;
  const bool work = !closed && (owner_connecting_ || in_spdk_ > 0);
  // The loop's cached time: no clock read per poll.
  const bool spin = work && !owner_connecting_ && spin_ && uv_now(ctrlr_->loop()) - last_progress_ms_ <= kSpinMs;
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
  if (qp_ == nullptr || in_process_ || transport_lost_) return 0;
  if (!reactor() && !ctrlr_->app()->running()) return 0;
  in_process_ = true;
  const uint32_t before = io_.tail();
  const int32_t rc = spdk_nvme_qpair_process_completions(qp_, 0);
  in_process_ = false;
  process_calls_++;
  if (rc > 0 && !reactor()) last_progress_ms_ = uv_now(ctrlr_->loop());
  if (!owner_connecting_ && (rc < 0 || spdk_nvme_qpair_get_failure_reason(qp_) != SPDK_NVME_QPAIR_FAILURE_NONE)) {
    // Transport lost: what SPDK aborted in this call failed for that reason, not a deletion.
    for (uint32_t i = before; i != io_.tail(); i++) {
      int32_t* st = io_.status_at(i);
      if (*st == kAbortedSqDeletion) *st = -ECONNRESET;
    }
    TransportFailed(rc);
  }
  return rc;
}

void JsLsQpair::TransportFailed(int rc) {
  const spdk_nvme_qp_failure_reason r = spdk_nvme_qpair_get_failure_reason(qp_);
  const std::string why = r == SPDK_NVME_QPAIR_FAILURE_REMOTE ? "the target closed the connection"
                        : r == SPDK_NVME_QPAIR_FAILURE_LOCAL  ? "the connection was lost"
                                                              : "the queue pair failed (" + ErrnoText(-rc) + ")";
  DropConnection(-ECONNRESET, -1);
  ToJs([this, why](napi_env) { SetFailed(why); });
}

void JsLsQpair::DropConnection(int32_t status, int timed_out_cid) {
  transport_lost_ = true;
  owner_connecting_ = false;
  forced_status_ = status;
  forced_timed_out_ = timed_out_cid;
  // SPDK completes what it still holds when the qpair is disconnected: now, so nothing waits.
  spdk_nvme_ctrlr_disconnect_io_qpair(qp_);
  in_process_ = true;
  spdk_nvme_qpair_process_completions(qp_, 0);
  in_process_ = false;
  // Anything SPDK still has is completed by us; its late callback is ignored (in_spdk false).
  for (uint32_t i = 0; i < depth_; i++)
    if (reqs_[i].in_spdk) Complete(static_cast<uint16_t>(i), status);
  forced_status_ = 0;
  forced_timed_out_ = -1;
}

void JsLsQpair::Poll() {
  if (owner_connecting_) {
    PollConnecting();
    UpdateDriver();
    return;
  }
  Process();
  Announce();
  UpdateDriver();
}

void JsLsQpair::Announce() {
  if (reactor()) {
    if (unnotified_) {
      unnotified_ = false;
      link_->Notify();
    }
    return;
  }
  if (io_.armed() && io_.has_completions()) {
    // What JavaScript submits from these completions (and its microtasks) is sent by the next poll.
    delivering_ = true;
    ctrlr_->RunJs([this]() { Deliver(env_); });
    delivering_ = false;
  }
}

int JsLsQpair::PollOnReactor(void* arg) {
  JsLsQpair* q = static_cast<JsLsQpair*>(arg);
  if (q->closing_.load(std::memory_order_acquire)) {
    q->CloseOnReactor();
    return SPDK_POLLER_BUSY;
  }
  if (q->owner_connecting_) {
    q->PollConnecting();
    return SPDK_POLLER_BUSY;
  }
  bool busy = false;
  uint16_t cid;
  while (q->sq_.Pop(&cid)) {
    const int rc = q->Issue(cid);
    // Refused by SPDK (the qpair failed, no request left): it completes at once.
    if (rc != 0) q->Complete(cid, rc == -ENXIO ? -ECONNRESET : rc);
    busy = true;
  }
  if (q->in_spdk_ > 0 && q->Process() > 0) busy = true;
  q->Announce();
  return busy ? SPDK_POLLER_BUSY : SPDK_POLLER_IDLE;
}

// ---------------------------------------------------------------------------------------------
// Submission

int JsLsQpair::Prepare(const double* d, uint16_t* cid, std::string* msg) {
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
  if (int err = io_.Take(h, buf, off, len, cid, msg)) return err;
  reqs_[*cid].ns = last_ns_;
  return 0;
}

// The owner's thread: hands one prepared command to SPDK; 0 or a negative errno (nothing
// submitted).
int JsLsQpair::Issue(uint16_t cid) {
  HostSlot& s = io_.slot(cid);
  Req& r = reqs_[cid];
  r.in_spdk = true;
  in_spdk_++;
  if (timeout_ms_ > 0) {
    r.issued_us = NowUs();
    r.abort_deadline_us = 0;
  }
  const uint64_t lba = s.op == kNdFlush || s.op == kNdDeallocate ? 0 : s.lba;
  uint32_t io_flags = (s.flags & kNdFlagFua) ? SPDK_NVME_IO_FLAGS_FORCE_UNIT_ACCESS : 0;
  void* payload = s.buf != nullptr ? s.buf->data + s.off : nullptr;
  switch (s.op) {
    case kNdRead:
      return spdk_nvme_ns_cmd_read(r.ns, qp_, payload, lba, s.count, &JsLsQpair::IoDone, &r, io_flags);
    case kNdWrite:
      return spdk_nvme_ns_cmd_write(r.ns, qp_, payload, lba, s.count, &JsLsQpair::IoDone, &r, io_flags);
    case kNdCompare:
      return spdk_nvme_ns_cmd_compare(r.ns, qp_, payload, lba, s.count, &JsLsQpair::IoDone, &r, io_flags);
    case kNdWriteZeroes:
      // Write Zeroes DEAC is CDW12 bit 25; SPDK copies the upper half of io_flags into CDW12.
      if (s.flags & kNdFlagDeac) io_flags |= 1u << 25;
      return spdk_nvme_ns_cmd_write_zeroes(r.ns, qp_, lba, s.count, &JsLsQpair::IoDone, &r, io_flags);
    case kNdDeallocate:
      // SPDK copies the ranges (16 bytes each, the buffer's layout) into its own request.
      return spdk_nvme_ns_cmd_dataset_management(r.ns, qp_, SPDK_NVME_DSM_ATTR_DEALLOCATE,
                                                 static_cast<const spdk_nvme_dsm_range*>(payload),
                                                 static_cast<uint16_t>(s.count), &JsLsQpair::IoDone, &r);
    case kNdFlush:
      return spdk_nvme_ns_cmd_flush(r.ns, qp_, &JsLsQpair::IoDone, &r);
  }
  return -EINVAL;
}

void JsLsQpair::IoDone(void* arg, const spdk_nvme_cpl* cpl) {
  Req* r = static_cast<Req*>(arg);
  if (!r->in_spdk) return;  // we completed it already (the connection dropped)
  JsLsQpair* q = r->qp;
  q->Complete(static_cast<uint16_t>(r - q->reqs_.data()), StatusOf(cpl));
}

// The owner's thread.
void JsLsQpair::Complete(uint16_t cid, int32_t status) {
  Req& r = reqs_[cid];
  if (!r.in_spdk) return;
  r.in_spdk = false;
  in_spdk_--;
  if (forced_status_ != 0) {
    status = static_cast<int>(cid) == forced_timed_out_ ? -ETIMEDOUT : forced_status_;
  } else if (status == kAbortedSqDeletion && !transport_lost_ && qp_ != nullptr &&
             spdk_nvme_qpair_get_failure_reason(qp_) != SPDK_NVME_QPAIR_FAILURE_NONE) {
    // SPDK aborts a lost connection's commands with ABORTED - SQ DELETION, sometimes in the poll
    // before the one that reports the failure: a deletion we did not ask for (free, reset) is
    // the transport's, and fails as on the builtin host (-ECONNRESET: no completion).
    status = -ECONNRESET;
  }
  io_.Push(cid, status);
  completions_++;
  unnotified_ = true;
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
  const std::vector<uint16_t>& cids =
      io_.PrepareBatch(env, count, kOpSubmit, [this](const double* d, uint16_t* cid, std::string* msg) {
        return Prepare(d, cid, msg);
      });
  if (reactor()) {
    // Cannot fail: at most depth CIDs are busy and the ring holds depth entries.
    for (uint16_t cid : cids) sq_.Push(cid);
    return count;
  }
  const bool others_out = in_spdk_ > 0;
  for (uint16_t cid : cids) {
    const int rc = Issue(cid);
    // Refused by SPDK (the qpair failed under us, no request left): it completes at once.
    if (rc != 0) Complete(cid, rc == -ENXIO ? -ECONNRESET : rc);
  }
  submissions_ += count;
  last_progress_ms_ = uv_now(ctrlr_->loop());
  // SPDK's TCP transport sends what it queued on its next poll. Submitted from the completions a
  // poll delivered while other commands are out, that is the idle handle's next poll, one loop
  // iteration away, as in spdk_nvme_perf's loop (completion callbacks submit, the next
  // process_completions() sends): fewer, fuller reads. Alone (depth 1), or outside a poll, or
  // with the loop not spinning: now, for the latency.
  if (!(delivering_ && idling_ && others_out)) Process();
  UpdateDriver();
  return count;
}

Napi::Value JsLsQpair::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Napi::Number::New(env, SubmitBatch(env, info[0].As<Napi::Number>().Uint32Value()));
}

// ---------------------------------------------------------------------------------------------
// Completion (JS thread)

void JsLsQpair::Deliver(napi_env env) {
  if (phase_ == Phase::kConnecting) return;
  io_.Deliver(env, on_ready_.Value());
}

// reap(ring: Int32Array, pending: number, wait: boolean) -> number (the builtin host's contract)
Napi::Value JsLsQpair::Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ReapArgs a = ParseReapArgs(info);
  if (a.pending > 0)
    SubmitBatch(env, a.pending);
  else if (!reactor() && phase_ == Phase::kReady && in_spdk_ > 0 && !(delivering_ && idling_))
    Process();
  if (reactor()) link_->ClearWake();
  const uint32_t n = io_.Collect(env, info[0], a);
  UpdateDriver();
  return Napi::Number::New(env, n);
}

Napi::Value JsLsQpair::InFlight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), io_.in_flight()); }

// ---------------------------------------------------------------------------------------------
// Command timeouts (the owner's thread): an Abort on the admin queue; if the controller does not
// abort the command (or it is still there one more timeout later), the qpair is disconnected:
// the command fails with ETIMEDOUT, everything else in flight with ECONNABORTED.

void JsLsQpair::OnTimeoutTimer(uv_timer_t* t) {
  JsLsQpair* q = static_cast<JsLsQpair*>(t->data);
  if (q->phase_ == Phase::kReady && q->ctrlr_->app()->running()) q->CheckTimeouts();
}

int JsLsQpair::TimeoutsOnReactor(void* arg) {
  JsLsQpair* q = static_cast<JsLsQpair*>(arg);
  if (q->owner_connecting_ || q->transport_lost_ || q->closing_.load(std::memory_order_acquire)) return SPDK_POLLER_IDLE;
  q->CheckTimeouts();
  q->Announce();
  return SPDK_POLLER_IDLE;
}

void JsLsQpair::CheckTimeouts() {
  if (qp_ == nullptr || transport_lost_ || in_spdk_ == 0) return;
  const uint64_t now = NowUs();
  const uint64_t limit = static_cast<uint64_t>(timeout_ms_) * 1000;
  for (uint32_t i = 0; i < depth_ && !transport_lost_; i++) {
    Req& r = reqs_[i];
    if (!r.in_spdk || r.abort_deadline_us == kAbortPending) continue;
    if (r.abort_deadline_us != 0) {
      if (now > r.abort_deadline_us) FailForTimeout(static_cast<uint16_t>(i), 2ull * timeout_ms_);
    } else if (now - r.issued_us > limit) {
      SendAbort(static_cast<uint16_t>(i));
    }
  }
}

void JsLsQpair::SendAbort(uint16_t cid) {
  Req& r = reqs_[cid];
  r.abort_deadline_us = kAbortPending;
  auto* ctx = new AbortCtx{this, cid, r.issued_us, alive_};
  // SPDK finds the command by its callback argument; a command it still queues itself is
  // aborted at once (the callback runs before this returns).
  const int rc = spdk_nvme_ctrlr_cmd_abort_ext(ctrlr_->ctrlr(), qp_, &r, &JsLsQpair::AbortDone, ctx);
  if (rc != 0) {
    delete ctx;
    FailForTimeout(cid, timeout_ms_);
  }
}

// Runs where admin completions are processed (the JS thread), or inside SendAbort.
void JsLsQpair::AbortDone(void* arg, const spdk_nvme_cpl* cpl) {
  std::unique_ptr<AbortCtx> ctx(static_cast<AbortCtx*>(arg));
  // CDW0 bit 0 clear: the command was aborted (its own completion follows).
  const bool aborted = spdk_nvme_cpl_is_success(cpl) && (cpl->cdw0 & 1) == 0;
  if (!*ctx->alive) return;
  JsLsQpair* q = ctx->qp;
  const uint16_t cid = ctx->cid;
  const uint64_t issued = ctx->issued_us;
  if (!q->reactor() || spdk_get_thread() == q->link_->thread()) return q->OnAbortResult(cid, issued, aborted);
  // The JS thread: the answer goes to the reactor, unless the qpair is going away.
  if (q->phase_ != Phase::kReady && q->phase_ != Phase::kFailed) return;
  q->link_->Send([q, cid, issued, aborted]() { q->OnAbortResult(cid, issued, aborted); });
}

void JsLsQpair::OnAbortResult(uint16_t cid, uint64_t issued_us, bool aborted) {
  Req& r = reqs_[cid];
  if (!r.in_spdk || r.issued_us != issued_us || transport_lost_) return;  // it completed meanwhile
  if (aborted) {
    r.abort_deadline_us = NowUs() + static_cast<uint64_t>(timeout_ms_) * 1000;
  } else {
    FailForTimeout(cid, timeout_ms_);
  }
  Announce();
}

void JsLsQpair::FailForTimeout(uint16_t cid, uint64_t ms) {
  const std::string why = "command " + std::to_string(cid) + " got no completion within " + std::to_string(ms) +
                          " ms and the controller did not abort it; " + Where() + " disconnected";
  DropConnection(-ECONNABORTED, cid);
  ToJs([this, why](napi_env) { SetFailed(why); });
  UpdateDriver();
}

// ---------------------------------------------------------------------------------------------
// Controller reset/detach, failure, free and reconnect

void JsLsQpair::OnCtrlrDisconnect(std::function<void()> done) {
  if (phase_ == Phase::kClosed || phase_ == Phase::kClosing || phase_ == Phase::kNew) return done();
  if (phase_ == Phase::kConnecting) {
    failure_ = "the controller was reset";
    if (reactor())
      FinishConnect(env_, false);
    else
      ctrlr_->RunJs([this]() { FinishConnect(env_, false); });
  }
  phase_ = Phase::kFailed;
  if (failure_.empty()) failure_ = "controller reset";
  // Freed, not just disconnected: SPDK's controller initialisation after a reset hands out the
  // qpair IDs again (as SPDK's bdev_nvme does, a new qpair is allocated on reconnect).
  auto drop = [this]() {
    owner_connecting_ = false;
    FreeSpdkQpair();
  };
  if (reactor()) {
    if (!owner_alive_ || !link_->Send([this, drop, done]() {
          drop();
          Announce();
          done();
        }))
      done();
    return;
  }
  drop();
  if (io_.armed() && io_.has_completions()) ctrlr_->RunJs([this]() { Deliver(env_); });
  UpdateDriver();
  done();
}

void JsLsQpair::OnCtrlrFailed(const std::string& why) {
  // The qpair's own connection may still be up; its next poll tells. Commands keep their
  // chance to complete; new ones are refused.
  if (!reactor() && in_spdk_ == 0) SetFailed(why);
}

// The owner's thread: SPDK aborts what it still holds (ABORTED - SQ DELETION) and frees the qpair.
void JsLsQpair::FreeSpdkQpair() {
  if (qp_ != nullptr && ctrlr_->ctrlr() != nullptr) spdk_nvme_ctrlr_free_io_qpair(qp_);
  qp_ = nullptr;
  for (uint32_t i = 0; i < depth_; i++)
    if (reqs_[i].in_spdk) Complete(static_cast<uint16_t>(i), kAbortedSqDeletion);
}

void JsLsQpair::CloseOnReactor() {
  uint16_t cid;
  // Commands JavaScript submitted that the poller has not taken complete without being sent.
  while (sq_.Pop(&cid)) io_.Push(cid, kAbortedSqDeletion);
  FreeSpdkQpair();
  if (poller_ != nullptr) spdk_poller_unregister(&poller_);
  if (timeout_poller_ != nullptr) spdk_poller_unregister(&timeout_poller_);
  link_->Exit();
  link_->PostToJs([this](Napi::Env env) { Finish(env); });
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
  if (timeout_timer_ != nullptr) uv_timer_stop(timeout_timer_);
  if (reactor() && owner_alive_) {
    // The queue's thread frees SPDK's qpair and exits (or, still being created, exits at once);
    // Finish() runs when it did. A thread that could not be created finishes from its failure.
    closing_.store(true, std::memory_order_release);
    return p;
  }
  if (ctrlr_->app()->running()) FreeSpdkQpair();
  qp_ = nullptr;
  Finish(env);
  return p;
}

void JsLsQpair::Finish(napi_env env) {
  if (phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosed;
  owner_alive_ = false;
  UpdateDriver();
  Deliver(env);  // completions armed for go out now; the rest stay for reap()
  if (link_) link_->Release();
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
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed || phase_ == Phase::kNew) ThrowSpdkError(env, "the qpair is freed", ENOTCONN, op);
  if (phase_ == Phase::kConnecting) ThrowSpdkError(env, "the qpair is connecting", EBUSY, op);
  if (!ctrlr_->ready()) ThrowSpdkError(env, "the controller is not connected", ENOTCONN, op);
  max_xfer_ = spdk_nvme_ctrlr_get_max_xfer_size(ctrlr_->ctrlr());
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  phase_ = Phase::kConnecting;
  connect_deferred_ = d;
  failure_.clear();
  // On the owner's thread: a new SPDK qpair on the new association (the reset freed the old one).
  auto reconnect = [this]() {
    FreeSpdkQpair();
    const std::string err = AllocSpdkQpair();
    if (!err.empty()) {
      ToJs([this, err](napi_env env) {
        failure_ = err;
        FinishConnect(env, false);
      });
    }
  };
  if (!reactor()) {
    reconnect();
    UpdateDriver();
  } else if (!link_->Send(reconnect)) {
    failure_ = "the queue pair's thread is gone";
    FinishConnect(env, false);
  }
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
  if (reactor()) return o;  // counters live on the reactor's thread
  o.Set("submissions", Napi::Number::New(env, static_cast<double>(submissions_)));
  o.Set("completions", Napi::Number::New(env, static_cast<double>(completions_)));
  o.Set("processCalls", Napi::Number::New(env, static_cast<double>(process_calls_)));
  return o;
}

}  // namespace spdk_node::libspdk

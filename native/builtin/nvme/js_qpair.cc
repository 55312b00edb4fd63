#include <cerrno>
#include <cmath>
#include <cstring>

#include "../../common/clock.h"
#include "../../common/napi_util.h"
#include "../../common/nvme/spec.h"
#include "../engine.h"
#include "../reactor/reactor.h"
#include "js_nvme.h"

namespace spdk_node {
namespace nvme_host {

using nvme_tcp::Put32;
namespace sqe = nvme::sqe;

namespace {

const char* kOpSubmit = "nvme.submit";

uint64_t NowUs() { return NowNs() / 1000; }

void FreeTimer(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

}  // namespace

Napi::Function JsNvmeQpair::Init(Napi::Env env) {
  return DefineClass(env, "NvmeQpair",
                     {
                         InstanceMethod("connect", &JsNvmeQpair::Connect),
                         InstanceMethod("submit", &JsNvmeQpair::Submit),
                         InstanceMethod("reap", &JsNvmeQpair::Reap),
                         InstanceMethod("disconnect", &JsNvmeQpair::Disconnect),
                         InstanceMethod("reconnect", &JsNvmeQpair::Reconnect),
                         InstanceMethod("state", &JsNvmeQpair::State),
                         InstanceMethod("stats", &JsNvmeQpair::Stats),
                         InstanceMethod("inFlight", &JsNvmeQpair::InFlight),
                     });
}

// new NvmeQpair(ctrlr, { qid, depth, queueSize, reactor, spin, timeoutMs }, onReady)
JsNvmeQpair::JsNvmeQpair(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<JsNvmeQpair>(info), io_(QpairDepthArg(info)), sq_(QpairDepthArg(info)) {
  Napi::Env env = info.Env();
  env_ = env;
  const std::string op = "nvme.allocQpair";
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsObject() || !info[2].IsFunction())
    ThrowSpdkError(env, "NvmeQpair(ctrlr, options, onReady)", EINVAL, op);
  ctrlr_ = JsNvmeCtrlr::Unwrap(info[0].As<Napi::Object>());
  engine_ = ctrlr_->engine();
  if (!engine_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  HostCtrlr* h = ctrlr_->host();
  if (h == nullptr || !h->ready())
    ThrowSpdkError(env, "the controller is not connected" + std::string(h && h->failed() ? ": " + h->failure() : ""), ENOTCONN, op);
  Napi::Object o = info[1].As<Napi::Object>();
  qid_ = static_cast<uint16_t>(GetUint(o, "qid", op));
  depth_ = static_cast<uint32_t>(GetUint(o, "depth", op));
  queue_size_ = static_cast<uint32_t>(GetUint(o, "queueSize", op));
  timeout_ms_ = static_cast<uint32_t>(GetUint(o, "timeoutMs", op));
  spin_ = o.Get("spin").ToBoolean();
  reactor_index_ = o.Get("reactor").As<Napi::Number>().Int32Value();
  if (qid_ == 0 || depth_ == 0 || depth_ > 65535 || depth_ != io_.depth() || queue_size_ < 2 || queue_size_ > 65536)
    ThrowSpdkError(env, "invalid qid, depth or queue size", EINVAL, op);
  if (reactor_index_ >= 0) {
    reactor_ = engine_->GetReactor(reactor_index_);
    if (reactor_ == nullptr) ThrowSpdkError(env, "no reactor " + std::to_string(reactor_index_), EINVAL, op);
  }
  max_xfer_ = h->max_xfer();
  abort_deadline_us_.assign(depth_, 0);
  hq_ = std::make_unique<HostQpair>(MakeOptions(), this);

  Napi::Object self = info.This().As<Napi::Object>();
  self.Set("desc", io_.DescArray(env));
  on_ready_ = Napi::Persistent(info[2].As<Napi::Function>());
  if (reactor_ != nullptr) {
    napi_status st = napi_create_threadsafe_function(env, nullptr, nullptr,
                                                     Napi::String::New(env, "spdk-node:nvme-completion"), 0, 1,
                                                     nullptr, nullptr, this, &JsNvmeQpair::CallJs, &tsfn_);
    if (st != napi_ok) ThrowSpdkError(env, "cannot create the completion wake-up", ENOMEM, op);
    napi_unref_threadsafe_function(env, tsfn_);
  }
  ctrlr_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  counted_ = true;
  engine_->open_queues++;
  Ref();  // the event loop or a reactor calls back into us until disconnect() completes
}

JsNvmeQpair::~JsNvmeQpair() {
  *alive_ = false;
  if (driver_ != nullptr) driver_->Close();
  if (timer_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(timer_), FreeTimer);
  if (tsfn_ != nullptr) napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
  hq_.reset();
}

QpairOptions JsNvmeQpair::MakeOptions() {
  HostCtrlr* h = ctrlr_->host();
  const CtrlrOptions& c = h->options();
  QpairOptions q;
  q.qid = qid_;
  q.cntlid = h->cntlid();
  q.queue_size = queue_size_;
  q.depth = depth_;
  q.hdgst = c.hdgst;
  q.ddgst = c.ddgst;
  q.hpda = c.hpda;
  q.in_capsule_limit = h->in_capsule_limit();
  q.subnqn = c.subnqn;
  q.hostnqn = c.hostnqn;
  memcpy(q.hostid, c.hostid, 16);
  return q;
}

std::string JsNvmeQpair::Where() const {
  return "qpair " + std::to_string(qid_) + " of " + ctrlr_->host()->options().where + " (" +
         ctrlr_->host()->options().subnqn + ")";
}

// ---------------------------------------------------------------------------------------------
// Connection

Napi::Value JsNvmeQpair::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (phase_ != Phase::kNew) ThrowSpdkError(env, "qpair already connected", EALREADY, "nvme.allocQpair");
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  StartConnect(d);
  return d->Promise();
}

void JsNvmeQpair::StartConnect(std::shared_ptr<Napi::Promise::Deferred> d) {
  phase_ = Phase::kConnecting;
  connect_deferred_ = std::move(d);
  transport_failed_.store(false);
  const CtrlrOptions& c = ctrlr_->host()->options();
  if (reactor_ == nullptr) {
    const int rc = hq_->Connect(reinterpret_cast<const sockaddr*>(&c.addr), c.addrlen);
    driver_ = UvQpairDriver::Create(ctrlr_->host()->loop(), hq_.get(), [this]() {
      // Only enter JavaScript when there is something for it.
      const bool news = (phase_ == Phase::kConnecting && (hq_->ready() || hq_->failed())) ||
                        (phase_ == Phase::kReady && hq_->failed()) ||
                        (io_.armed() && io_.has_completions());
      if (news) ctrlr_->RunJs([this]() { Deliver(env_, true); });
    }, spin_);
    if (rc < 0) {
      failure_ = hq_->error();
      FinishConnect(env_, false);
    }
  } else {
    sockaddr_storage addr = c.addr;
    const socklen_t len = c.addrlen;
    reported_ = false;
    reactor_->Send([this, addr, len]() {
      hq_->Connect(reinterpret_cast<const sockaddr*>(&addr), len);
      if (hq_->fd() >= 0) {
        reactor_->AddWakeFd(hq_->fd());
        wake_fd_ = hq_->fd();
      }
      if (poller_ == nullptr) poller_ = reactor_->RegisterPoller("nvme_qpair", [this]() { return Poll(); });
      // A sleeping reactor wakes for timed pollers only: command timeouts need one.
      if (timeout_ms_ > 0 && timeout_poller_ == nullptr) {
        const uint64_t period = std::max<uint64_t>(1000, std::min<uint64_t>(1000000, timeout_ms_ * 250ull));
        timeout_poller_ = reactor_->RegisterPoller("nvme_qpair_timeouts", [this]() { return CheckTimeoutsOnReactor(); }, period);
      }
    });
  }
  StartTimer();
}

void JsNvmeQpair::FinishConnect(napi_env env, bool ok) {
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
  if (d) {
    Napi::Error err = MakeSpdkError(e, "cannot connect " + Where() + ": " + failure_,
                                    hq_ && reactor_ == nullptr && hq_->error_errno() ? hq_->error_errno() : ECONNREFUSED,
                                    "nvme.allocQpair");
    if (reactor_ == nullptr && hq_->connect_status() > 0) {
      err.Set("status", Napi::Number::New(e, hq_->connect_status()));
      err.Set("dw0", Napi::Number::New(e, hq_->connect_dw0()));
    }
    d->Reject(err.Value());
  }
}

// JS thread (driver events in a callback scope; tsfn calls): connection outcome and armed
// completions.
void JsNvmeQpair::Deliver(napi_env env, bool) {
  if (reactor_ == nullptr && hq_) {
    if (phase_ == Phase::kConnecting) {
      if (hq_->ready()) {
        FinishConnect(env, true);
      } else if (hq_->failed()) {
        failure_ = hq_->error();
        FinishConnect(env, false);
      }
    }
    if (phase_ == Phase::kReady && hq_->failed()) {
      phase_ = Phase::kFailed;
      failure_ = hq_->error();
    }
  }
  io_.Deliver(env, on_ready_.Value());
}

void JsNvmeQpair::OnStateChange(QpairState s) {
  if (s == QpairState::kFailed) transport_failed_.store(true, std::memory_order_release);
}

void JsNvmeQpair::OnRequestDone(HostRequest* r) {
  // The owner's thread. The slot stays busy until JavaScript reaps this entry.
  io_.Push(r->cid, r->status);
  unnotified_++;
}

// ---------------------------------------------------------------------------------------------
// Submission

int JsNvmeQpair::Prepare(const double* d, uint16_t* cid_out, std::string* msg) {
  NvmeIoHead h;
  if (int err = ParseNvmeHead(d, &h, msg)) return err;
  const int op = h.op;
  const uint32_t nsid = h.nsid;
  uint32_t lba_size = 0;
  if (op != kNdFlush) {
    if (nsid == last_nsid_ && last_gen_ == ctrlr_->generation()) {
      lba_size = last_lba_size_;
    } else {
      const NsData* ns = ctrlr_->host()->ns(nsid);
      if (ns == nullptr) {
        *msg = "namespace " + std::to_string(nsid) + " is not active on " + ctrlr_->host()->options().subnqn;
        return EINVAL;
      }
      if (ns->lba_size == 0) {
        *msg = "namespace " + std::to_string(nsid) + " has an LBA format this host cannot use";
        return EINVAL;
      }
      lba_size = ns->lba_size;
      last_nsid_ = nsid;
      last_lba_size_ = lba_size;
      last_gen_ = ctrlr_->generation();
    }
  }
  const uint32_t count = h.count;
  const uint64_t lba = h.lba;
  const uint32_t flags = h.flags;
  DmaBuffer* buf = nullptr;
  uint64_t off = 0, len = 0;
  if (int err = ParseNvmePayload(d, h, lba_size, max_xfer_, [this](double id) { return engine_->LookupBuffer(id); },
                                 &buf, &off, &len, msg))
    return err;
  uint16_t cid;
  if (int err = io_.Take(h, buf, off, len, &cid, msg)) return err;
  abort_deadline_us_[cid] = 0;
  HostRequest* r = hq_->request(cid);
  uint8_t* q = r->sqe;
  memset(q, 0, 64);
  Put32(q + sqe::kNsid, nsid);
  r->data = buf != nullptr ? buf->data + off : nullptr;
  r->len = static_cast<uint32_t>(len);
  r->h2c = false;
  r->c2h = false;
  const uint32_t fua = (flags & kNdFlagFua) ? 1u << 30 : 0;
  switch (op) {
    case kNdRead:
    case kNdWrite:
    case kNdCompare:
      q[sqe::kOpc] = op == kNdRead ? nvme::opc::kRead : op == kNdWrite ? nvme::opc::kWrite : nvme::opc::kCompare;
      Put32(q + sqe::kCdw10, static_cast<uint32_t>(lba));
      Put32(q + sqe::kCdw11, static_cast<uint32_t>(lba >> 32));
      Put32(q + sqe::kCdw12, (count - 1) | fua);
      r->c2h = op == kNdRead;
      r->h2c = op != kNdRead;
      break;
    case kNdWriteZeroes:
      q[sqe::kOpc] = nvme::opc::kWriteZeroes;
      Put32(q + sqe::kCdw10, static_cast<uint32_t>(lba));
      Put32(q + sqe::kCdw11, static_cast<uint32_t>(lba >> 32));
      Put32(q + sqe::kCdw12, (count - 1) | fua | ((flags & kNdFlagDeac) ? 1u << 25 : 0));
      break;
    case kNdDeallocate:
      q[sqe::kOpc] = nvme::opc::kDatasetManagement;
      Put32(q + sqe::kCdw10, count - 1);
      Put32(q + sqe::kCdw11, 1u << 2);  // AD: deallocate
      r->h2c = true;
      break;
    case kNdFlush:
      q[sqe::kOpc] = nvme::opc::kFlush;
      break;
  }
  *cid_out = cid;
  return 0;
}

uint32_t JsNvmeQpair::SubmitBatch(Napi::Env env, uint32_t count) {
  if (phase_ != Phase::kReady || transport_failed_.load(std::memory_order_acquire)) {
    std::string why;
    if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) {
      why = "the qpair is freed";
    } else if (phase_ == Phase::kNew || phase_ == Phase::kConnecting) {
      why = "the qpair is not connected yet";
    } else {
      if (reactor_ == nullptr && hq_->failed()) failure_ = hq_->error();
      why = "the qpair is disconnected (" + (failure_.empty() ? std::string("transport lost") : failure_) +
            "); ctrlr.reset() reconnects it";
    }
    ThrowSpdkError(env, why, ENOTCONN, kOpSubmit);
  }
  const std::vector<uint16_t>& prepared =
      io_.PrepareBatch(env, count, kOpSubmit, [this](const double* d, uint16_t* cid, std::string* msg) {
        return Prepare(d, cid, msg);
      });
  if (reactor_ == nullptr) {
    for (uint32_t i = 0; i < count; i++) hq_->Submit(hq_->request(prepared[i]));
    hq_->Flush();
    if (driver_ != nullptr) driver_->Update();
  } else {
    // Cannot fail: at most depth CIDs are busy and the ring holds depth entries.
    for (uint32_t i = 0; i < count; i++) sq_.Push(prepared[i]);
    reactor_->Wake();
  }
  return count;
}

Napi::Value JsNvmeQpair::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t count = info[0].As<Napi::Number>().Uint32Value();
  return Napi::Number::New(env, SubmitBatch(env, count));
}

// ---------------------------------------------------------------------------------------------
// Completion

// reap(ring: Int32Array, pending: number, wait: boolean) -> number
// Submits the first `pending` descriptors (as submit()), takes what the socket has, copies up to
// ring.length / 2 completions into ring as {tag, status} pairs and returns how many. With `wait`
// and none ready while I/O is in flight, the next completions go into this ring and
// onReady(count) is called.
Napi::Value JsNvmeQpair::Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ReapArgs a = ParseReapArgs(info);
  const uint32_t older = io_.in_flight();
  const uint32_t pending = a.pending;
  if (pending > 0) SubmitBatch(env, pending);
  // Read the socket now if commands older than the ones just sent are out (their completions
  // may be waiting there: taking them here saves a wake-up); right after sending the only ones
  // in flight nothing can have come back yet, and the event loop watches the socket anyway.
  if (reactor_ == nullptr && hq_ && phase_ == Phase::kReady && (older > 0 || pending == 0)) {
    hq_->Process();
    if (driver_ != nullptr) driver_->Update();
  }
  wake_pending_.store(false, std::memory_order_seq_cst);
  return Napi::Number::New(env, io_.Collect(env, info[0], a));
}

Napi::Value JsNvmeQpair::InFlight(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), io_.in_flight());
}

// ---------------------------------------------------------------------------------------------
// Reactor owner

bool JsNvmeQpair::Poll() {
  bool busy = false;
  uint16_t cid;
  while (sq_.Pop(&cid)) {
    hq_->Submit(hq_->request(cid));
    busy = true;
  }
  if (hq_->state() != QpairState::kIdle && hq_->Process()) busy = true;
  if (hq_->has_unsent() && !hq_->failed()) hq_->Flush();
  if (!reported_ && (hq_->ready() || hq_->failed())) {
    reported_ = true;
    const bool ok = hq_->ready();
    std::string err = hq_->error();
    const int errn = hq_->error_errno();
    const int32_t st = hq_->connect_status();
    const uint32_t dw0 = hq_->connect_dw0();
    engine_->PostToJs([this, ok, err, errn, st, dw0](Napi::Env env) {
      if (phase_ != Phase::kConnecting) return;
      failure_ = err;
      if (ok) return FinishConnect(env, true);
      auto d = std::move(connect_deferred_);
      connect_deferred_ = nullptr;
      phase_ = Phase::kFailed;
      Napi::Error e = MakeSpdkError(env, "cannot connect " + Where() + ": " + err, errn ? errn : ECONNREFUSED,
                                    "nvme.allocQpair");
      if (st > 0) {
        e.Set("status", Napi::Number::New(env, st));
        e.Set("dw0", Napi::Number::New(env, dw0));
      }
      if (d) d->Reject(e.Value());
    });
  }
  if (hq_->failed() && wake_fd_ >= 0) {
    // A shut-down socket stays readable: it must not keep waking the reactor.
    reactor_->RemoveWakeFd(wake_fd_);
    wake_fd_ = -1;
    if (reported_ && hq_->error() != "") {
      std::string err = hq_->error();
      engine_->PostToJs([this, err](Napi::Env) {
        if (failure_.empty() || phase_ == Phase::kReady) failure_ = err;
      });
    }
  }
  if (unnotified_ > 0) {
    unnotified_ = 0;
    Notify();
  }
  if (hq_->want_write()) busy = true;
  return busy;
}

// Reactor thread: commands JavaScript submitted that the poller has not taken from the ring
// yet (a message can run before the poller) complete with `status` without being sent.
void JsNvmeQpair::FailUnsent(int32_t status) {
  uint16_t cid;
  while (sq_.Pop(&cid)) {
    HostRequest* r = hq_->request(cid);
    r->status = status;
    r->state = HostRequest::St::kDone;
    OnRequestDone(r);
  }
}

bool JsNvmeQpair::CheckTimeoutsOnReactor() {
  if (!hq_->ready()) return false;
  std::vector<HostRequest*> late;
  hq_->CheckTimeouts(NowUs() - timeout_ms_ * 1000ull, &late);
  if (late.empty()) return false;
  std::vector<uint16_t> cids;
  for (HostRequest* r : late) cids.push_back(r->cid);
  engine_->PostToJs([this, cids](Napi::Env) { HandleTimeouts(cids); });
  return true;
}

void JsNvmeQpair::Notify() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  if (tsfn_ != nullptr) napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
}

void JsNvmeQpair::CallJs(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;
  JsNvmeQpair* self = static_cast<JsNvmeQpair*>(context);
  self->wake_pending_.store(false, std::memory_order_seq_cst);
  self->Deliver(env, false);
}

// ---------------------------------------------------------------------------------------------
// Timeouts: an Abort on the admin queue; if the controller does not abort the command (or it is
// still there one more timeout later), the qpair is disconnected: the command fails with
// ETIMEDOUT, everything else in flight with ECONNABORTED.

void JsNvmeQpair::StartTimer() {
  if (timeout_ms_ == 0) return;
  if (timer_ == nullptr) {
    timer_ = new uv_timer_t();
    uv_timer_init(ctrlr_->host()->loop(), timer_);
    timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  }
  const uint64_t period = std::max<uint64_t>(10, std::min<uint64_t>(1000, timeout_ms_ / 4));
  uv_timer_start(timer_, OnTimer, period, period);
}

void JsNvmeQpair::OnTimer(uv_timer_t* t) {
  JsNvmeQpair* self = static_cast<JsNvmeQpair*>(t->data);
  if (self->phase_ != Phase::kReady) return;
  const uint64_t now = NowUs();
  std::vector<uint16_t> late;
  if (self->reactor_ == nullptr) {
    std::vector<HostRequest*> rs;
    self->hq_->CheckTimeouts(now - self->timeout_ms_ * 1000ull, &rs);
    for (HostRequest* r : rs) late.push_back(r->cid);
  }
  std::vector<uint16_t> overdue;
  for (uint32_t i = 0; i < self->depth_; i++) {
    uint64_t& deadline = self->abort_deadline_us_[i];
    if (self->io_.slot(static_cast<uint16_t>(i)).busy && deadline != 0 && now > deadline) {
      deadline = 0;
      overdue.push_back(static_cast<uint16_t>(i));
    }
  }
  if (late.empty() && overdue.empty()) return;
  self->ctrlr_->RunJs([self, late, overdue]() {
    if (!late.empty()) self->HandleTimeouts(late);
    for (uint16_t cid : overdue) self->FailForTimeout(cid, self->timeout_ms_ * 2);
  });
}

void JsNvmeQpair::HandleTimeouts(const std::vector<uint16_t>& cids) {
  for (uint16_t cid : cids) {
    if (phase_ != Phase::kReady || !io_.slot(cid).busy) continue;
    std::shared_ptr<bool> alive = alive_;
    ctrlr_->AbortCommand(qid_, cid, [this, alive, cid](bool aborted) {
      if (!*alive || phase_ != Phase::kReady || !io_.slot(cid).busy) return;
      if (aborted) {
        // Its completion (Aborted by Request) should follow; if not, disconnect later.
        abort_deadline_us_[cid] = NowUs() + timeout_ms_ * 1000ull;
      } else {
        FailForTimeout(cid, timeout_ms_);
      }
    });
  }
}

void JsNvmeQpair::FailForTimeout(uint16_t cid, uint32_t ms) {
  const std::string why = "command " + std::to_string(cid) + " got no completion within " + std::to_string(ms) +
                          " ms and the controller did not abort it; " + Where() + " disconnected";
  if (reactor_ == nullptr) {
    HostRequest* r = hq_->request(cid);
    if (r->state != HostRequest::St::kActive) return;
    r->timed_out = true;
    hq_->Fail(ECONNABORTED, why);
    failure_ = why;
    phase_ = Phase::kFailed;
    if (driver_ != nullptr) driver_->Update();
    Deliver(env_, true);
  } else {
    reactor_->Send([this, cid, why]() {
      HostRequest* r = hq_->request(cid);
      if (r->state != HostRequest::St::kActive) return;
      r->timed_out = true;
      hq_->Fail(ECONNABORTED, why);
    });
    failure_ = why;
  }
}

// ---------------------------------------------------------------------------------------------
// Teardown and reconnection

// disconnect() -> Promise: commands in flight complete with Aborted - SQ Deletion (as SPDK's
// spdk_nvme_ctrlr_free_io_qpair does); their completions stay to be reaped.
Napi::Value JsNvmeQpair::Disconnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (close_deferred_) return close_deferred_->Promise();
  close_deferred_ = std::make_shared<Napi::Promise::Deferred>(env);
  Napi::Value p = close_deferred_->Promise();
  if (phase_ == Phase::kConnecting) {
    failure_ = "the qpair was freed while connecting";
    FinishConnect(env, false);
  }
  phase_ = Phase::kClosing;
  if (timer_ != nullptr) uv_timer_stop(timer_);
  const int32_t aborted = NvmeStatus(nvme::kSctGeneric, nvme::sc::kAbortedSqDeletion);
  if (reactor_ == nullptr) {
    if (hq_->state() != QpairState::kIdle) hq_->Fail(ECANCELED, "qpair freed", aborted);
    if (driver_ != nullptr) driver_->Close();
    driver_ = nullptr;
    hq_->CloseSocket();
    FinishDisconnect(env);
  } else {
    reactor_->Send([this, aborted]() {
      FailUnsent(aborted);
      if (hq_->state() != QpairState::kIdle) hq_->Fail(ECANCELED, "qpair freed", aborted);
      if (wake_fd_ >= 0) reactor_->RemoveWakeFd(wake_fd_);
      wake_fd_ = -1;
      hq_->CloseSocket();
      if (poller_ != nullptr) reactor_->UnregisterPoller(poller_);
      poller_ = nullptr;
      if (timeout_poller_ != nullptr) reactor_->UnregisterPoller(timeout_poller_);
      timeout_poller_ = nullptr;
      unnotified_ = 0;
      engine_->PostToJs([this](Napi::Env env) { FinishDisconnect(env); });
    });
  }
  return p;
}

void JsNvmeQpair::FinishDisconnect(napi_env env) {
  phase_ = Phase::kClosed;
  if (tsfn_ != nullptr) {
    napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
    tsfn_ = nullptr;
  }
  // Completions still armed for go out now; the rest stay for reap().
  Deliver(env, false);
  auto d = std::move(close_deferred_);
  if (d) d->Resolve(Napi::Env(env).Undefined());
  if (counted_) {
    counted_ = false;
    engine_->open_queues--;
    Unref();
  }
}

// reconnect() -> Promise: after the controller was reset, connects this qpair to the new
// controller. Commands still in flight complete with Aborted - SQ Deletion first.
Napi::Value JsNvmeQpair::Reconnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvme.reset";
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) ThrowSpdkError(env, "the qpair is freed", ENOTCONN, op);
  if (phase_ == Phase::kConnecting) ThrowSpdkError(env, "the qpair is connecting", EBUSY, op);
  HostCtrlr* h = ctrlr_->host();
  if (h == nullptr || !h->ready()) ThrowSpdkError(env, "the controller is not connected", ENOTCONN, op);
  const int32_t aborted = NvmeStatus(nvme::kSctGeneric, nvme::sc::kAbortedSqDeletion);
  const uint16_t cntlid = h->cntlid();
  const uint32_t icd = h->in_capsule_limit();
  max_xfer_ = h->max_xfer();
  failure_.clear();
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  if (reactor_ == nullptr) {
    if (driver_ != nullptr) driver_->Close();
    driver_ = nullptr;
    if (!hq_->failed() && hq_->state() != QpairState::kIdle) hq_->Fail(ECONNABORTED, "controller reset", aborted);
    hq_->Reset(cntlid);
    hq_->set_in_capsule_limit(icd);
    StartConnect(d);
  } else {
    phase_ = Phase::kConnecting;
    connect_deferred_ = d;
    // Cleared before the reactor reconnects, so a failure of the new connection is never lost.
    transport_failed_.store(false);
    const CtrlrOptions& c = h->options();
    sockaddr_storage addr = c.addr;
    const socklen_t len = c.addrlen;
    reactor_->Send([this, aborted, cntlid, icd, addr, len]() {
      FailUnsent(aborted);
      if (!hq_->failed() && hq_->state() != QpairState::kIdle) hq_->Fail(ECONNABORTED, "controller reset", aborted);
      if (wake_fd_ >= 0) reactor_->RemoveWakeFd(wake_fd_);
      wake_fd_ = -1;
      hq_->Reset(cntlid);
      hq_->set_in_capsule_limit(icd);
      reported_ = false;
      hq_->Connect(reinterpret_cast<const sockaddr*>(&addr), len);
      if (hq_->fd() >= 0) {
        reactor_->AddWakeFd(hq_->fd());
        wake_fd_ = hq_->fd();
      }
      if (unnotified_ > 0) {
        unnotified_ = 0;
        Notify();
      }
    });
    StartTimer();
  }
  return d->Promise();
}

Napi::Value JsNvmeQpair::State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const char* names[] = {"new", "connecting", "ready", "failed", "closing", "closed"};
  if (phase_ == Phase::kReady && transport_failed_.load(std::memory_order_acquire)) {
    phase_ = Phase::kFailed;
    if (reactor_ == nullptr) failure_ = hq_->error();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("phase", names[static_cast<int>(phase_)]);
  if (!failure_.empty()) o.Set("failure", failure_);
  return o;
}

Napi::Value JsNvmeQpair::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (reactor_ != nullptr) return o;  // counters live on the reactor thread
  const HostQpair::Stats& s = hq_->stats();
  o.Set("pdusSent", Napi::Number::New(env, static_cast<double>(s.pdus_sent)));
  o.Set("pdusReceived", Napi::Number::New(env, static_cast<double>(s.pdus_received)));
  o.Set("sendmsgCalls", Napi::Number::New(env, static_cast<double>(s.sendmsg_calls)));
  o.Set("recvCalls", Napi::Number::New(env, static_cast<double>(s.recv_calls)));
  o.Set("copiedBytes", Napi::Number::New(env, static_cast<double>(s.copied_bytes)));
  o.Set("directBytes", Napi::Number::New(env, static_cast<double>(s.direct_bytes)));
  return o;
}

}  // namespace nvme_host
}  // namespace spdk_node

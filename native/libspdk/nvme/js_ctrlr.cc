// NvmeController on SPDK's NVMe driver (see js_nvme.h). JS thread only.
#include <spdk/env.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <regex>

#include "../../common/napi_util.h"
#include "../js_app.h"
#include "../log.h"
#include "js_nvme.h"

namespace spdk_node::libspdk {

namespace {

const char* kOpConnect = "nvme.connect";
constexpr uint64_t kBusyPeriodMs = 1;
constexpr uint64_t kIdlePeriodMs = 10;  // keep-alive and asynchronous events
constexpr uint64_t kResetTimeoutMs = 30000;

std::string GetStr(const Napi::Object& o, const char* k) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

uint32_t GetU32(const Napi::Object& o, const char* k, uint32_t def) {
  Napi::Value v = o.Get(k);
  if (!v.IsNumber()) return def;
  const double d = v.As<Napi::Number>().DoubleValue();
  return d >= 0 && d <= 4294967295.0 ? static_cast<uint32_t>(d) : def;
}

// The NVMe status field as lib/nvme/status.ts reads it: CQE DW3 bits 31:17 (SC 0-7, SCT 8-10,
// CRD 11-12, More 13, DNR 14); status_raw has the phase tag in bit 0.
int32_t StatusOf(const spdk_nvme_cpl* c) { return static_cast<int32_t>(c->status_raw >> 1); }

uint64_t NowMs() { return uv_hrtime() / 1000000; }

void FreeTimer(uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); }

}  // namespace

Napi::Function JsLsCtrlr::Init(Napi::Env env) {
  return DefineClass(env, "NvmeController",
                     {
                         InstanceMethod("connect", &JsLsCtrlr::Connect),
                         InstanceMethod("admin", &JsLsCtrlr::Admin),
                         InstanceMethod("reset", &JsLsCtrlr::Reset),
                         InstanceMethod("detach", &JsLsCtrlr::Detach),
                         InstanceMethod("state", &JsLsCtrlr::State),
                         InstanceMethod("stats", &JsLsCtrlr::Stats),
                         InstanceMethod("onEvent", &JsLsCtrlr::OnEvent),
                     });
}

JsLsCtrlr::JsLsCtrlr(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsLsCtrlr>(info) {
  Napi::Env env = info.Env();
  env_ = env;
  if (info.Length() < 1 || !info[0].IsObject()) ThrowSpdkError(env, "NvmeController(app)", EINVAL, kOpConnect);
  app_ = JsApp::Unwrap(info[0].As<Napi::Object>());
  app_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  napi_get_uv_event_loop(env, &loop_);
  Napi::Object resource = Napi::Object::New(env);
  resource_ = Napi::Persistent(resource);
  napi_async_init(env, resource, Napi::String::New(env, "spdk-node:nvme"), &async_ctx_);
}

JsLsCtrlr::~JsLsCtrlr() {
  // Only reached once detached (a connected controller holds a self reference), or never
  // connected. A controller SPDK still has (the env went away) is left to the process's end.
  Live().erase(this);
  if (timer_ != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(timer_), FreeTimer);
  if (async_ctx_ != nullptr) napi_async_destroy(env_, async_ctx_);
}

void JsLsCtrlr::RunJs(const std::function<void()>& f) {
  napi_handle_scope hs;
  napi_open_handle_scope(env_, &hs);
  napi_callback_scope cs = nullptr;
  napi_open_callback_scope(env_, resource_.Value(), async_ctx_, &cs);
  try {
    f();
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env_, e.Value());
  }
  if (cs != nullptr) napi_close_callback_scope(env_, cs);
  napi_close_handle_scope(env_, hs);
}

// ---------------------------------------------------------------------------------------------
// The poll timer

void JsLsCtrlr::Schedule() {
  if (timer_ == nullptr) {
    timer_ = new uv_timer_t();
    uv_timer_init(loop_, timer_);
    timer_->data = this;
  }
  if (phase_ == Phase::kNew || phase_ == Phase::kDetached) {
    uv_timer_stop(timer_);
    timer_period_ = 0;
    return;
  }
  const bool busy = phase_ != Phase::kReady || admin_pending_ > 0;
  // An operation or an admin command keeps the loop alive; an idle attached controller does not
  // (the engine decides that), but still sends keep-alives and takes events.
  if (busy)
    uv_ref(reinterpret_cast<uv_handle_t*>(timer_));
  else
    uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  const uint64_t period = busy ? kBusyPeriodMs : kIdlePeriodMs;
  if (period != timer_period_ || !uv_is_active(reinterpret_cast<uv_handle_t*>(timer_))) {
    timer_period_ = period;
    uv_timer_start(timer_, OnTimer, period, period);
  }
}

void JsLsCtrlr::OnTimer(uv_timer_t* t) { static_cast<JsLsCtrlr*>(t->data)->Tick(); }

void JsLsCtrlr::Tick() {
  if (!app_->running()) {
    // SPDK is stopping or gone: nothing of it may be touched any more.
    if (phase_ != Phase::kDetached) MarkFailed("the engine is stopped");
    if (timer_ != nullptr) uv_timer_stop(timer_);
    return;
  }
  switch (phase_) {
    case Phase::kConnecting: {
      const int rc = spdk_nvme_probe_poll_async(probe_);
      if (rc == -EAGAIN) return;
      probe_ = nullptr;  // freed by SPDK
      RunJs([this]() { FinishConnect(Napi::Env(env_)); });
      break;
    }
    case Phase::kResetting: {
      if (NowMs() > reset_deadline_ms_) {
        RunJs([this]() { FinishReset(Napi::Env(env_), -ETIMEDOUT); });
        break;
      }
      if (qpairs_pending_.load(std::memory_order_acquire) > 0) break;  // reactors still disconnecting theirs
      if (!admin_disconnected_) {
        // Then the controller: its admin queue goes, SPDK initialises it again (a new association).
        admin_disconnected_ = true;
        ClearRecent();
        const int rc = spdk_nvme_ctrlr_disconnect(ctrlr_);
        FailAdmin(ECONNABORTED);
        RunJs([this, rc]() {
          DeliverAdmin(Napi::Env(env_));
          if (rc != 0 && rc != -EBUSY) FinishReset(Napi::Env(env_), rc);
        });
        break;
      }
      if (detach_ctx_ == nullptr) {
        // Step 1 (detach_ctx_ unused as a marker): wait until the admin queue is disconnected.
        if (spdk_nvme_ctrlr_process_admin_completions(ctrlr_) != -ENXIO) return;
        spdk_nvme_ctrlr_reconnect_async(ctrlr_);
        detach_ctx_ = reinterpret_cast<spdk_nvme_detach_ctx*>(1);
        return;
      }
      const int rc = spdk_nvme_ctrlr_reconnect_poll_async(ctrlr_);
      if (rc == -EAGAIN) return;
      detach_ctx_ = nullptr;
      RunJs([this, rc]() { FinishReset(Napi::Env(env_), rc); });
      break;
    }
    case Phase::kDetaching: {
      if (qpairs_pending_.load(std::memory_order_acquire) > 0) break;  // reactors still freeing theirs
      if (!admin_disconnected_) {
        admin_disconnected_ = true;
        // SPDK shuts the controller down (CC.SHN) and disconnects.
        if (app_->running() && spdk_nvme_detach_async(ctrlr_, &detach_ctx_) != 0) detach_ctx_ = nullptr;
        break;
      }
      if (detach_ctx_ != nullptr && spdk_nvme_detach_poll_async(detach_ctx_) == -EAGAIN) return;
      detach_ctx_ = nullptr;
      RunJs([this]() { FinishDetach(Napi::Env(env_)); });
      break;
    }
    case Phase::kReady: {
      if (failed_) break;
      const int32_t rc = spdk_nvme_ctrlr_process_admin_completions(ctrlr_);
      if (rc < 0 || spdk_nvme_ctrlr_is_failed(ctrlr_)) {
        MarkFailed("the admin queue failed (" + ErrnoText(rc < 0 ? -rc : ENXIO) + "): " +
                   (spdk_nvme_ctrlr_get_admin_qp_failure_reason(ctrlr_) == SPDK_NVME_QPAIR_FAILURE_REMOTE
                        ? "the target closed the connection"
                        : "the connection was lost"));
      }
      if (!admin_.empty() || !events_.empty()) {
        RunJs([this]() {
          DeliverAdmin(Napi::Env(env_));
          DeliverEvents(Napi::Env(env_));
        });
      }
      break;
    }
    default:
      break;
  }
  Schedule();
}

void JsLsCtrlr::MarkFailed(const std::string& why) {
  if (failed_) return;
  failed_ = true;
  failure_ = why;
  FailAdmin(ECONNRESET);
  for (JsLsQpair* q : std::set<JsLsQpair*>(qpairs_)) q->OnCtrlrFailed(why);
  if (!admin_.empty()) RunJs([this]() { DeliverAdmin(Napi::Env(env_)); });
}

// ---------------------------------------------------------------------------------------------
// Connect

// connect({ trid, subnqn, hostnqn, hostid, keepAliveMs, adminQueueSize, hdgst, ddgst, ioQueues,
//           connectTimeoutMs, ... }) -> Promise<info>. `trid` is SPDK's string form; TypeScript
// validated every field.
Napi::Value JsLsCtrlr::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!app_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, kOpConnect);
  if (phase_ != Phase::kNew) ThrowSpdkError(env, "controller already connected", EALREADY, kOpConnect);
  if (!info[0].IsObject()) ThrowSpdkError(env, "connect(options)", EINVAL, kOpConnect);
  Napi::Object o = info[0].As<Napi::Object>();
  const std::string trid = GetStr(o, "trid");
  subnqn_ = GetStr(o, "subnqn");
  where_ = GetStr(o, "where");
  if (where_.empty()) where_ = trid;
  if (spdk_nvme_transport_id_parse(&trid_, trid.c_str()) != 0)
    ThrowSpdkError(env, "SPDK cannot parse the transport ID '" + trid + "'", EINVAL, kOpConnect);
  hostnqn_ = GetStr(o, "hostnqn");
  // SPDK's driver attaches a controller once per transport ID and host NQN: a second connect
  // would be handed the same controller, whose reset or detach would then pull it from under
  // the first NvmeController.
  for (JsLsCtrlr* other : Live()) {
    if (other != this && other->hostnqn_ == hostnqn_ && spdk_nvme_transport_id_compare(&other->trid_, &trid_) == 0)
      ThrowSpdkError(env,
                     "already connected to " + where_ + " (" + subnqn_ + ") as " + hostnqn_ +
                         ": SPDK's driver attaches a controller once per transport ID and host NQN; use that "
                         "NvmeController, or connect with another hostnqn",
                     EALREADY, kOpConnect);
  }

  connect_ = std::make_unique<ConnectCtx>();
  connect_->self = this;
  spdk_nvme_ctrlr_opts& c = connect_->opts;
  spdk_nvme_ctrlr_get_default_ctrlr_opts(&c, sizeof(c));
  snprintf(c.hostnqn, sizeof(c.hostnqn), "%s", hostnqn_.c_str());
  Napi::Value hid = o.Get("hostid");
  if (hid.IsTypedArray() && hid.As<Napi::Uint8Array>().ByteLength() == 16)
    memcpy(c.extended_host_id, hid.As<Napi::Uint8Array>().Data(), 16);
  c.keep_alive_timeout_ms = GetU32(o, "keepAliveMs", 10000);
  c.num_io_queues = std::max<uint32_t>(1, std::min<uint32_t>(GetU32(o, "ioQueues", 1024), 65535));
  c.header_digest = o.Get("hdgst").ToBoolean();
  c.data_digest = o.Get("ddgst").ToBoolean();
  c.admin_queue_size = std::max<uint32_t>(2, std::min<uint32_t>(GetU32(o, "adminQueueSize", 32), 4096));
  const uint32_t timeout_ms = GetU32(o, "connectTimeoutMs", 0);
  if (timeout_ms > 0) c.fabrics_connect_timeout_us = static_cast<uint64_t>(timeout_ms) * 1000;

  ClearRecent();
  probe_ = spdk_nvme_connect_async(&trid_, &c, &JsLsCtrlr::AttachCb);
  if (probe_ == nullptr) {
    Napi::Error e = ConnectError(env, "SPDK could not start connecting");
    throw e;
  }
  phase_ = Phase::kConnecting;
  counted_ = true;
  Live().insert(this);
  Ref();  // alive while connected: the event loop calls back into us
  op_deferred_ = std::make_shared<Napi::Promise::Deferred>(env);
  Napi::Value p = op_deferred_->Promise();
  Schedule();
  return p;
}

void JsLsCtrlr::AttachCb(void* cb_ctx, const spdk_nvme_transport_id*, spdk_nvme_ctrlr* ctrlr,
                         const spdk_nvme_ctrlr_opts*) {
  // cb_ctx is the opts pointer given to spdk_nvme_connect_async: our ConnectCtx.
  ConnectCtx* ctx = static_cast<ConnectCtx*>(cb_ctx);
  ctx->self->ctrlr_ = ctrlr;
}

Napi::Error JsLsCtrlr::ConnectError(Napi::Env env, const std::string& what) {
  // SPDK's driver says why only in its log: the errno of a failed connect(), or the status of a
  // refused Fabrics Connect. The line that says it goes into the message.
  const std::string log = RecentErrors();
  int err = ECONNREFUSED;
  int32_t status = 0;
  std::string why;
  static const std::regex status_re("sct (\\d+), sc (\\d+)");
  static const std::regex errno_re("(?:err|errno) = (\\d+)|connection error -(\\d+)");
  static const std::regex prefix_re("^(\\[[^\\]]*\\] )+");
  size_t start = 0;
  while (start < log.size()) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    const std::string line = log.substr(start, end - start);
    start = end + 1;
    std::smatch m;
    if (status == 0 && std::regex_search(line, m, status_re)) {
      status = (std::stoi(m[1].str()) << 8) | std::stoi(m[2].str());
      why = std::regex_replace(line, prefix_re, "");
    } else if (why.empty() && std::regex_search(line, m, errno_re)) {
      err = std::stoi(m[1].matched ? m[1].str() : m[2].str());
      why = std::regex_replace(line, prefix_re, "");
    }
  }
  std::string msg = "cannot connect to " + where_ + " (" + subnqn_ + "): " + what;
  if (status == 0) msg += ": " + ErrnoText(err);
  if (!why.empty()) msg += " (SPDK: " + why + ")";
  Napi::Error e = MakeSpdkError(env, msg, status != 0 ? EIO : err, kOpConnect);
  if (status > 0) {
    e.Set("status", Napi::Number::New(env, status));
    e.Set("dw0", Napi::Number::New(env, 0));
  }
  return e;
}

void JsLsCtrlr::FinishConnect(Napi::Env env) {
  auto d = std::move(op_deferred_);
  if (ctrlr_ == nullptr) {
    phase_ = Phase::kDetached;
    d->Reject(ConnectError(env, "SPDK's driver did not attach the controller").Value());
    Release();
    return;
  }
  phase_ = Phase::kReady;
  spdk_nvme_ctrlr_register_aer_callback(ctrlr_, &JsLsCtrlr::AerCb, this);
  d->Resolve(Describe(env));
}

Napi::Object JsLsCtrlr::Describe(Napi::Env env) {
  const spdk_nvme_ctrlr_data* cd = spdk_nvme_ctrlr_get_data(ctrlr_);
  const spdk_nvme_cap_register cap = spdk_nvme_ctrlr_get_regs_cap(ctrlr_);
  const spdk_nvme_vs_register vs = spdk_nvme_ctrlr_get_regs_vs(ctrlr_);
  Napi::Object o = Napi::Object::New(env);
  o.Set("cntlid", Napi::Number::New(env, cd->cntlid));
  o.Set("capLo", Napi::Number::New(env, static_cast<double>(cap.raw & 0xFFFFFFFFu)));
  o.Set("capHi", Napi::Number::New(env, static_cast<double>(cap.raw >> 32)));
  o.Set("vs", Napi::Number::New(env, vs.raw));
  o.Set("identify", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(cd), sizeof(*cd)));
  o.Set("ioQueues", Napi::Number::New(env, spdk_nvme_ctrlr_get_opts(ctrlr_)->num_io_queues));
  o.Set("maxXfer", Napi::Number::New(env, spdk_nvme_ctrlr_get_max_xfer_size(ctrlr_)));
  const uint32_t ioccsz = cd->nvmf_specific.ioccsz;
  o.Set("inCapsuleDataSize", Napi::Number::New(env, spdk_nvme_ctrlr_is_fabrics(ctrlr_) && ioccsz >= 4 ? ioccsz * 16 - 64 : 0));
  o.Set("maxQueueEntries", Napi::Number::New(env, static_cast<uint32_t>(cap.bits.mqes) + 1));
  Napi::Array arr = Napi::Array::New(env);
  uint32_t i = 0;
  last_nsids_.clear();
  last_sizes_.clear();
  for (uint32_t nsid = spdk_nvme_ctrlr_get_first_active_ns(ctrlr_); nsid != 0;
       nsid = spdk_nvme_ctrlr_get_next_active_ns(ctrlr_, nsid)) {
    spdk_nvme_ns* ns = spdk_nvme_ctrlr_get_ns(ctrlr_, nsid);
    if (ns == nullptr) continue;
    const spdk_nvme_ns_data* nd = spdk_nvme_ns_get_data(ns);
    Napi::Object x = Napi::Object::New(env);
    x.Set("nsid", Napi::Number::New(env, nsid));
    x.Set("identify", Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(nd), sizeof(*nd)));
    // SPDK read the identification descriptors (CNS 03h) itself; lib/nvme takes the UUID from
    // them (NGUID and EUI-64 are in the namespace data): one UUID descriptor when there is one.
    const spdk_uuid* u = spdk_nvme_ns_get_uuid(ns);
    if (u != nullptr) {
      uint8_t desc[20] = {3, 16, 0, 0};
      memcpy(desc + 4, u, 16);
      x.Set("descriptors", Napi::Buffer<uint8_t>::Copy(env, desc, sizeof(desc)));
    }
    arr.Set(i++, x);
    last_nsids_.push_back(nsid);
    last_sizes_.push_back(nd->nsze);
  }
  o.Set("namespaces", arr);
  return o;
}

std::set<JsLsCtrlr*>& JsLsCtrlr::Live() {
  static std::set<JsLsCtrlr*> live;  // one SPDK per process, used from the JS thread
  return live;
}

void JsLsCtrlr::Release() {
  if (!counted_) return;
  counted_ = false;
  Live().erase(this);
  Schedule();
  Unref();
}

// ---------------------------------------------------------------------------------------------
// Admin commands

// admin(sqe: Uint8Array(64), len, data: Uint8Array | null) -> Promise<{ status, dw0, dw1, data }>
Napi::Value JsLsCtrlr::Admin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvme.admin";
  if (!ready() || !app_->running()) {
    const std::string why = !app_->running() ? "the engine is stopped" : failed_ ? failure_ : "not ready";
    ThrowSpdkError(env, "the controller is not usable (" + why + ")", ENOTCONN, op);
  }
  if (!info[0].IsTypedArray() || info[0].As<Napi::Uint8Array>().ByteLength() != 64 || !info[1].IsNumber())
    ThrowSpdkError(env, "admin(sqe, len, data)", EINVAL, op);
  Napi::Uint8Array s = info[0].As<Napi::Uint8Array>();
  const uint32_t len = info[1].As<Napi::Number>().Uint32Value();
  if (len > (1u << 20)) ThrowSpdkError(env, "admin data is limited to 1 MiB", EINVAL, op);
  bool out = false;
  if (info.Length() > 2 && info[2].IsTypedArray()) {
    if (info[2].As<Napi::Uint8Array>().ByteLength() != len) ThrowSpdkError(env, "data length differs from len", EINVAL, op);
    out = true;
  }
  void* buf = nullptr;
  if (len > 0) {
    // Admin data is copied through DMA memory (it is not on the data path).
    buf = spdk_zmalloc(len, 4096, nullptr, SPDK_ENV_NUMA_ID_ANY, SPDK_MALLOC_DMA);
    if (buf == nullptr) ThrowSpdkError(env, "SPDK's memory is exhausted", ENOMEM, op);
    if (out) memcpy(buf, info[2].As<Napi::Uint8Array>().Data(), len);
  }
  spdk_nvme_cmd cmd;
  static_assert(sizeof(cmd) == 64, "an NVMe command is 64 bytes");
  memcpy(&cmd, s.Data(), 64);
  auto* ctx = new AdminCtx{this, std::make_shared<Napi::Promise::Deferred>(env), buf, len, !out, false, 0, 0, 0};
  const int rc = spdk_nvme_ctrlr_cmd_admin_raw(ctrlr_, &cmd, buf, len, &JsLsCtrlr::AdminDone, ctx);
  if (rc != 0) {
    auto d = ctx->deferred;
    if (buf != nullptr) spdk_free(buf);
    delete ctx;
    ThrowSpdkError(env, "SPDK refused the admin command", -rc, op);
  }
  admin_.push_back(ctx);
  admin_pending_++;
  Schedule();
  return ctx->deferred->Promise();
}

void JsLsCtrlr::AdminDone(void* arg, const spdk_nvme_cpl* cpl) {
  AdminCtx* c = static_cast<AdminCtx*>(arg);
  c->done = true;
  c->status = StatusOf(cpl);
  c->dw0 = cpl->cdw0;
  c->dw1 = cpl->cdw1;
  c->self->admin_pending_--;
}

// Commands SPDK will not complete any more (the controller failed or is going away).
void JsLsCtrlr::FailAdmin(int err) {
  for (AdminCtx* c : admin_) {
    if (c->done) continue;
    c->done = true;
    c->status = -err;
    admin_pending_--;
  }
}

void JsLsCtrlr::DeliverAdmin(Napi::Env env) {
  std::vector<AdminCtx*> done;
  auto it = std::partition(admin_.begin(), admin_.end(), [](AdminCtx* c) { return !c->done; });
  done.assign(it, admin_.end());
  admin_.erase(it, admin_.end());
  for (AdminCtx* c : done) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("status", Napi::Number::New(env, c->status));
    r.Set("dw0", Napi::Number::New(env, c->dw0));
    r.Set("dw1", Napi::Number::New(env, c->dw1));
    if (c->status < 0) r.Set("error", failure_.empty() ? std::string("the controller went away") : failure_);
    if (c->in && c->len > 0 && c->status >= 0)
      r.Set("data", Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(c->buf), c->len));
    // A command SPDK still holds (failed by us) keeps its memory: SPDK may yet write to it.
    if (c->buf != nullptr && c->status >= 0) spdk_free(c->buf);
    c->deferred->Resolve(r);
    delete c;
  }
}

// ---------------------------------------------------------------------------------------------
// Asynchronous events: SPDK itself re-reads the namespaces on a namespace attribute notice
// (and the Changed Namespace List), then calls this; the JS side gets the same event as on the
// builtin engine, with the namespaces already re-read.

void JsLsCtrlr::AerCb(void* arg, const spdk_nvme_cpl* cpl) {
  JsLsCtrlr* self = static_cast<JsLsCtrlr*>(arg);
  if (StatusOf(cpl) != 0) return;  // aborted at reset or detach
  const uint32_t dw0 = cpl->cdw0;
  self->events_.push_back(Event{dw0 & 0x7, (dw0 >> 8) & 0xff, (dw0 >> 16) & 0xff});
  self->generation_++;
}

void JsLsCtrlr::DeliverEvents(Napi::Env env) {
  if (events_.empty()) return;
  std::vector<Event> evs;
  evs.swap(events_);
  for (const Event& e : evs) {
    const std::vector<uint32_t> before = last_nsids_;
    const std::vector<uint64_t> before_sizes = last_sizes_;
    Napi::Object desc = Describe(env);
    // The Changed Namespace List SPDK read is not public: the changed NSIDs are those added,
    // removed or resized.
    std::vector<uint32_t> changed;
    for (size_t i = 0; i < before.size(); i++) {
      auto at = std::find(last_nsids_.begin(), last_nsids_.end(), before[i]);
      if (at == last_nsids_.end() || last_sizes_[at - last_nsids_.begin()] != before_sizes[i]) changed.push_back(before[i]);
    }
    for (uint32_t n : last_nsids_)
      if (std::find(before.begin(), before.end(), n) == before.end()) changed.push_back(n);
    std::sort(changed.begin(), changed.end());
    if (on_event_.IsEmpty()) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("type", Napi::Number::New(env, e.type));
    o.Set("info", Napi::Number::New(env, e.info));
    o.Set("logPage", Napi::Number::New(env, e.log_page));
    Napi::Array nsids = Napi::Array::New(env, changed.size());
    for (size_t i = 0; i < changed.size(); i++) nsids.Set(static_cast<uint32_t>(i), Napi::Number::New(env, changed[i]));
    o.Set("nsids", nsids);
    o.Set("controller", desc);
    on_event_.Call({o});
  }
}

Napi::Value JsLsCtrlr::OnEvent(const Napi::CallbackInfo& info) {
  if (info[0].IsFunction()) on_event_ = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Reset and detach

Napi::Value JsLsCtrlr::Reset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvme.reset";
  if (!counted_ || ctrlr_ == nullptr) ThrowSpdkError(env, "the controller is detached", ENOTCONN, op);
  if (phase_ != Phase::kReady) ThrowSpdkError(env, "a connect, reset or detach is in progress", EBUSY, op);
  if (!app_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  // I/O queue pairs first (their commands complete with ABORTED - SQ DELETION; a reactor's on
  // its thread), then the controller (Tick).
  phase_ = Phase::kResetting;
  DisconnectQpairs();
  detach_ctx_ = nullptr;
  reset_deadline_ms_ = NowMs() + kResetTimeoutMs;
  generation_++;
  op_deferred_ = std::make_shared<Napi::Promise::Deferred>(env);
  Napi::Value p = op_deferred_->Promise();
  Schedule();
  return p;
}

void JsLsCtrlr::DisconnectQpairs() {
  admin_disconnected_ = false;
  const std::set<JsLsQpair*> qs(qpairs_);
  qpairs_pending_.store(static_cast<int>(qs.size()), std::memory_order_release);
  for (JsLsQpair* q : qs) q->OnCtrlrDisconnect([this]() { qpairs_pending_.fetch_sub(1, std::memory_order_acq_rel); });
}

void JsLsCtrlr::FinishReset(Napi::Env env, int rc) {
  auto d = std::move(op_deferred_);
  phase_ = Phase::kReady;
  if (rc != 0) {
    // SPDK leaves the controller failed; another reset() may try again.
    failed_ = true;
    failure_ = "reset failed";
    Napi::Error e = ConnectError(env, "the controller did not come back after the reset");
    e.Set("op", Napi::String::New(env, "nvme.reset"));
    d->Reject(e.Value());
    return;
  }
  failed_ = false;
  failure_.clear();
  d->Resolve(Describe(env));
}

Napi::Value JsLsCtrlr::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  if (!counted_ || ctrlr_ == nullptr || phase_ == Phase::kDetached) {
    d->Resolve(env.Undefined());
    return d->Promise();
  }
  if (phase_ != Phase::kReady) ThrowSpdkError(env, "a connect, reset or detach is in progress", EBUSY, "nvme.detach");
  phase_ = Phase::kDetaching;
  op_deferred_ = d;
  detach_ctx_ = nullptr;
  DisconnectQpairs();
  Schedule();
  return d->Promise();
}

void JsLsCtrlr::FinishDetach(Napi::Env env) {
  ctrlr_ = nullptr;
  phase_ = Phase::kDetached;
  FailAdmin(ECONNABORTED);
  // SPDK freed its requests with the controller: the admin buffers are ours again.
  for (AdminCtx* c : admin_) c->status = c->status < 0 ? c->status : -ECONNABORTED;
  DeliverAdmin(env);
  auto d = std::move(op_deferred_);
  if (d) d->Resolve(env.Undefined());
  Release();
}

Napi::Value JsLsCtrlr::State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("ready", Napi::Boolean::New(env, ready() && app_->running()));
  o.Set("failed", Napi::Boolean::New(env, ctrlr_ == nullptr || failed_));
  o.Set("detached", Napi::Boolean::New(env, !counted_));
  if (failed_) o.Set("failure", failure_);
  o.Set("cntlid", Napi::Number::New(env, ctrlr_ != nullptr ? spdk_nvme_ctrlr_get_data(ctrlr_)->cntlid : 0xFFFF));
  return o;
}

Napi::Value JsLsCtrlr::Stats(const Napi::CallbackInfo& info) {
  // SPDK's driver keeps no per-controller PDU counters the API exposes.
  return Napi::Object::New(info.Env());
}

}  // namespace spdk_node::libspdk

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "../../common/napi_util.h"
#include "../../common/nvme/spec.h"
#include "../engine.h"
#include "js_nvme.h"

namespace spdk_node {
namespace nvme_host {

namespace {

const char* kOpConnect = "nvme.connect";

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

Napi::Buffer<uint8_t> Copy(Napi::Env env, const std::vector<uint8_t>& v) {
  return Napi::Buffer<uint8_t>::Copy(env, v.data(), v.size());
}

}  // namespace

Napi::Function JsNvmeCtrlr::Init(Napi::Env env) {
  return DefineClass(env, "NvmeController",
                     {
                         InstanceMethod("connect", &JsNvmeCtrlr::Connect),
                         InstanceMethod("admin", &JsNvmeCtrlr::Admin),
                         InstanceMethod("reset", &JsNvmeCtrlr::Reset),
                         InstanceMethod("detach", &JsNvmeCtrlr::Detach),
                         InstanceMethod("state", &JsNvmeCtrlr::State),
                         InstanceMethod("stats", &JsNvmeCtrlr::Stats),
                         InstanceMethod("onEvent", &JsNvmeCtrlr::OnEvent),
                     });
}

JsNvmeCtrlr::JsNvmeCtrlr(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsNvmeCtrlr>(info) {
  Napi::Env env = info.Env();
  env_ = env;
  if (info.Length() < 1 || !info[0].IsObject()) ThrowSpdkError(env, "NvmeController(engine)", EINVAL, kOpConnect);
  engine_ = JsEngine::Unwrap(info[0].As<Napi::Object>());
  engine_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  Napi::Object resource = Napi::Object::New(env);
  resource_ = Napi::Persistent(resource);
  napi_value name = Napi::String::New(env, "spdk-node:nvme");
  napi_async_init(env, resource, name, &async_ctx_);
}

JsNvmeCtrlr::~JsNvmeCtrlr() {
  if (host_) {
    host_->set_run_js([](const std::function<void()>&) {});  // no JS from a finalizer
    host_->set_event_cb(nullptr);
    host_->Close();
    host_.reset();
  }
  if (async_ctx_ != nullptr) napi_async_destroy(env_, async_ctx_);
}

void JsNvmeCtrlr::RunJs(const std::function<void()>& f) {
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

Napi::Error JsNvmeCtrlr::ConnectError(Napi::Env env, int err, const std::string& msg, int32_t status,
                                      uint32_t dw0) {
  const CtrlrOptions& o = host_->options();
  Napi::Error e = MakeSpdkError(env, "cannot connect to " + o.where + " (" + o.subnqn + "): " + msg,
                                err != 0 ? err : EIO, kOpConnect);
  if (status > 0) {
    e.Set("status", Napi::Number::New(env, status));
    e.Set("dw0", Napi::Number::New(env, dw0));
  }
  return e;
}

// connect({ traddr, trsvcid, family, subnqn, hostnqn, hostid, keepAliveMs, adminQueueSize, hdgst,
//           ddgst, hpda, ioQueues, discovery, connectTimeoutMs, adminTimeoutMs }) -> Promise<info>
// TypeScript validated every field; the address must be numeric.
Napi::Value JsNvmeCtrlr::Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!engine_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, kOpConnect);
  if (started_) ThrowSpdkError(env, "controller already connected", EALREADY, kOpConnect);
  if (!info[0].IsObject()) ThrowSpdkError(env, "connect(options)", EINVAL, kOpConnect);
  Napi::Object o = info[0].As<Napi::Object>();
  CtrlrOptions c;
  const std::string traddr = GetStr(o, "traddr");
  const std::string trsvcid = GetStr(o, "trsvcid");
  const uint32_t family = GetU32(o, "family", 4);
  const uint32_t port = static_cast<uint32_t>(atoi(trsvcid.c_str()));
  if (port == 0 || port > 65535) ThrowSpdkError(env, "trsvcid must be a TCP port", EINVAL, kOpConnect);
  if (family == 6) {
    sockaddr_in6* a = reinterpret_cast<sockaddr_in6*>(&c.addr);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, traddr.c_str(), &a->sin6_addr) != 1)
      ThrowSpdkError(env, "traddr '" + traddr + "' is not an IPv6 address", EINVAL, kOpConnect);
    c.addrlen = sizeof(sockaddr_in6);
    c.where = "[" + traddr + "]:" + trsvcid;
  } else {
    sockaddr_in* a = reinterpret_cast<sockaddr_in*>(&c.addr);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, traddr.c_str(), &a->sin_addr) != 1)
      ThrowSpdkError(env, "traddr '" + traddr + "' is not an IPv4 address", EINVAL, kOpConnect);
    c.addrlen = sizeof(sockaddr_in);
    c.where = traddr + ":" + trsvcid;
  }
  c.subnqn = GetStr(o, "subnqn");
  c.hostnqn = GetStr(o, "hostnqn");
  Napi::Value hid = o.Get("hostid");
  if (hid.IsTypedArray()) {
    Napi::Uint8Array a = hid.As<Napi::Uint8Array>();
    if (a.ByteLength() == 16) memcpy(c.hostid, a.Data(), 16);
  }
  c.kato_ms = GetU32(o, "keepAliveMs", 10000);
  c.admin_queue_size = std::max<uint32_t>(2, std::min<uint32_t>(GetU32(o, "adminQueueSize", 32), 4096));
  c.hdgst = o.Get("hdgst").ToBoolean();
  c.ddgst = o.Get("ddgst").ToBoolean();
  c.hpda = static_cast<uint8_t>(std::min<uint32_t>(GetU32(o, "hpda", 0), 31));
  c.io_queues = std::max<uint32_t>(1, std::min<uint32_t>(GetU32(o, "ioQueues", 1), 65535));
  c.discovery = o.Get("discovery").ToBoolean();
  c.connect_timeout_ms = GetU32(o, "connectTimeoutMs", 10000);
  c.admin_timeout_ms = GetU32(o, "adminTimeoutMs", 0);

  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  host_ = std::make_unique<HostCtrlr>(loop, c);
  host_->set_run_js([this](const std::function<void()>& f) { RunJs(f); });
  host_->set_event_cb([this](const AsyncEvent& ev) { DeliverEvent(ev); });
  started_ = true;
  busy_ = true;
  counted_ = true;
  engine_->open_queues++;
  Ref();  // alive while connected: the event loop calls back into us
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  host_->Start([this, deferred](int err, const std::string& msg, int32_t status, uint32_t dw0) {
    Napi::Env env(env_);
    busy_ = false;
    if (err != 0) {
      deferred->Reject(ConnectError(env, err, msg, status, dw0).Value());
      Release();
      return;
    }
    deferred->Resolve(Describe(env));
  });
  return deferred->Promise();
}

Napi::Object JsNvmeCtrlr::Describe(Napi::Env env) {
  HostCtrlr* h = host_.get();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cntlid", Napi::Number::New(env, h->cntlid()));
  o.Set("capLo", Napi::Number::New(env, static_cast<double>(h->cap() & 0xFFFFFFFFu)));
  o.Set("capHi", Napi::Number::New(env, static_cast<double>(h->cap() >> 32)));
  o.Set("vs", Napi::Number::New(env, h->vs()));
  o.Set("identify", Copy(env, h->identify()));
  o.Set("ioQueues", Napi::Number::New(env, h->io_queues_granted()));
  o.Set("maxXfer", Napi::Number::New(env, h->max_xfer()));
  o.Set("inCapsuleDataSize", Napi::Number::New(env, h->in_capsule_limit()));
  o.Set("maxQueueEntries", Napi::Number::New(env, h->max_queue_entries()));
  Napi::Array ns = Napi::Array::New(env, h->namespaces().size());
  uint32_t i = 0;
  for (const NsData& n : h->namespaces()) {
    Napi::Object x = Napi::Object::New(env);
    x.Set("nsid", Napi::Number::New(env, n.nsid));
    x.Set("identify", Copy(env, n.id));
    if (!n.desc.empty()) x.Set("descriptors", Copy(env, n.desc));
    ns.Set(i++, x);
  }
  o.Set("namespaces", ns);
  return o;
}

// onEvent(fn): fn({ type, info, logPage, nsids, error?, controller }) for every asynchronous
// event, `controller` being the data as connect() resolves it (namespaces re-read).
Napi::Value JsNvmeCtrlr::OnEvent(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) ThrowSpdkError(info.Env(), "onEvent(fn)", EINVAL, "nvme.connect");
  on_event_ = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

// Inside the host's run_js (a callback scope).
void JsNvmeCtrlr::DeliverEvent(const AsyncEvent& ev) {
  generation_++;  // namespace data may have changed: queue pairs look their LBA size up again
  if (on_event_.IsEmpty()) return;
  Napi::Env env(env_);
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Napi::Number::New(env, ev.type));
  o.Set("info", Napi::Number::New(env, ev.info));
  o.Set("logPage", Napi::Number::New(env, ev.log_page));
  Napi::Array ids = Napi::Array::New(env, ev.nsids.size());
  for (uint32_t i = 0; i < ev.nsids.size(); i++) ids.Set(i, Napi::Number::New(env, ev.nsids[i]));
  o.Set("nsids", ids);
  if (!ev.error.empty()) o.Set("error", Napi::String::New(env, ev.error));
  o.Set("controller", Describe(env));
  on_event_.Call({o});
}

void JsNvmeCtrlr::Release() {
  if (!counted_) return;
  counted_ = false;
  on_event_.Reset();  // its closure holds the TypeScript controller, which holds us
  engine_->open_queues--;
  Unref();
}

// admin(sqe: Uint8Array(64), len, data: Uint8Array | null) -> Promise<{ status, dw0, dw1, data }>
// `data` given: `len` bytes to the controller; else `len` bytes from it. The promise resolves
// with the status (0, an NVMe status, or -errno when the command got no completion).
Napi::Value JsNvmeCtrlr::Admin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvme.admin";
  if (!host_ || !host_->ready()) {
    const std::string why = !host_ ? "not connected" : host_->failed() ? host_->failure() : "not ready";
    ThrowSpdkError(env, "the controller is not usable (" + why + ")", ENOTCONN, op);
  }
  if (!info[0].IsTypedArray() || info[0].As<Napi::Uint8Array>().ByteLength() != 64 || !info[1].IsNumber())
    ThrowSpdkError(env, "admin(sqe, len, data)", EINVAL, op);
  Napi::Uint8Array s = info[0].As<Napi::Uint8Array>();
  const uint32_t len = info[1].As<Napi::Number>().Uint32Value();
  if (len > (1u << 20)) ThrowSpdkError(env, "admin data is limited to 1 MiB", EINVAL, op);
  std::vector<uint8_t> data;
  bool h2c = false;
  if (info.Length() > 2 && info[2].IsTypedArray()) {
    Napi::Uint8Array d = info[2].As<Napi::Uint8Array>();
    if (d.ByteLength() != len) ThrowSpdkError(env, "data length differs from len", EINVAL, op);
    data.assign(d.Data(), d.Data() + len);
    h2c = true;
  }
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  int rc = host_->Admin(s.Data(), std::move(data), len, h2c,
                        [this, deferred, len, h2c](int32_t st, const uint8_t* c, std::vector<uint8_t> d) {
                          Napi::Env env(env_);
                          Napi::Object r = Napi::Object::New(env);
                          r.Set("status", Napi::Number::New(env, st));
                          r.Set("dw0", Napi::Number::New(env, nvme_tcp::Get32(c)));
                          r.Set("dw1", Napi::Number::New(env, nvme_tcp::Get32(c + 4)));
                          if (st < 0) r.Set("error", host_ ? host_->failure() : "closed");
                          if (!h2c && len > 0 && st >= 0) r.Set("data", Napi::Buffer<uint8_t>::Copy(env, d.data(), std::min<size_t>(d.size(), len)));
                          deferred->Resolve(r);
                        });
  if (rc < 0) ThrowSpdkError(env, "the controller is not connected", -rc, op);
  return deferred->Promise();
}

void JsNvmeCtrlr::AbortCommand(uint16_t sqid, uint16_t cid, std::function<void(bool)> cb) {
  uint8_t s[64] = {0};
  s[nvme::sqe::kOpc] = nvme::opc::kAbort;
  nvme_tcp::Put32(s + nvme::sqe::kCdw10, static_cast<uint32_t>(sqid) | (static_cast<uint32_t>(cid) << 16));
  if (!host_ || !host_->ready()) return cb(false);
  int rc = host_->Admin(s, {}, 0, false, [cb](int32_t st, const uint8_t* c, std::vector<uint8_t>) {
    // DW0 bit 0: 0 = the command was aborted, 1 = it was not.
    cb(st == 0 && (nvme_tcp::Get32(c) & 1) == 0);
  });
  if (rc < 0) cb(false);
}

Napi::Value JsNvmeCtrlr::Reset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvme.reset";
  if (!counted_ || !host_) ThrowSpdkError(env, "the controller is detached", ENOTCONN, op);
  if (busy_) ThrowSpdkError(env, "a connect, reset or detach is in progress", EBUSY, op);
  if (!engine_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  busy_ = true;
  generation_++;
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  host_->Reset([this, deferred](int err, const std::string& msg, int32_t status, uint32_t dw0) {
    Napi::Env env(env_);
    busy_ = false;
    if (err != 0) {
      Napi::Error e = ConnectError(env, err, msg, status, dw0);
      e.Set("op", Napi::String::New(env, "nvme.reset"));
      deferred->Reject(e.Value());
      return;
    }
    deferred->Resolve(Describe(env));
  });
  return deferred->Promise();
}

Napi::Value JsNvmeCtrlr::Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  if (!counted_ || !host_) {
    deferred->Resolve(env.Undefined());
    return deferred->Promise();
  }
  if (busy_) ThrowSpdkError(env, "a connect, reset or detach is in progress", EBUSY, "nvme.detach");
  busy_ = true;
  host_->Detach([this, deferred](int, const std::string&, int32_t, uint32_t) {
    busy_ = false;
    deferred->Resolve(Napi::Env(env_).Undefined());
    Release();
  });
  return deferred->Promise();
}

Napi::Value JsNvmeCtrlr::State(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("ready", Napi::Boolean::New(env, host_ && host_->ready()));
  o.Set("failed", Napi::Boolean::New(env, !host_ || host_->failed()));
  o.Set("detached", Napi::Boolean::New(env, !counted_));
  if (host_ && host_->failed()) o.Set("failure", host_->failure());
  o.Set("cntlid", Napi::Number::New(env, host_ ? host_->cntlid() : 0xFFFF));
  return o;
}

Napi::Value JsNvmeCtrlr::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const HostQpair::Stats* s = host_ ? host_->admin_stats() : nullptr;
  if (s != nullptr) {
    o.Set("pdusSent", Napi::Number::New(env, static_cast<double>(s->pdus_sent)));
    o.Set("pdusReceived", Napi::Number::New(env, static_cast<double>(s->pdus_received)));
  }
  return o;
}

}  // namespace nvme_host
}  // namespace spdk_node

#include "js_app.h"

#include <spdk/env.h>

#include <cerrno>
#include <cmath>

#include "../common/napi_util.h"
#include "app.h"

namespace spdk_node::libspdk {

namespace {

void ReleaseSpdkMemory(uint8_t* data, size_t /*len*/) { SpdkApp::FreeIfUsable(data); }

const char* StateText(AppState s) {
  switch (s) {
    case AppState::kNever: return "never";
    case AppState::kStarting: return "starting";
    case AppState::kRunning: return "running";
    case AppState::kStopping: return "stopping";
    default: return "exited";
  }
}

std::string GetString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

}  // namespace

Napi::Function JsApp::Init(Napi::Env env) {
  return DefineClass(env, "App",
                     {
                         InstanceMethod("start", &JsApp::Start),
                         InstanceMethod("stop", &JsApp::Stop),
                         InstanceMethod("stopSync", &JsApp::StopSync),
                         InstanceMethod("allocBuffer", &JsApp::AllocBuffer),
                         InstanceMethod("freeBuffer", &JsApp::FreeBuffer),
                         InstanceMethod("bufferInfo", &JsApp::BufferInfo),
                         InstanceMethod("ref", &JsApp::RefLoop),
                         InstanceMethod("unref", &JsApp::UnrefLoop),
                         InstanceMethod("state", &JsApp::StateName),
                     });
}

JsApp::JsApp(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsApp>(info), env_(info.Env()) {}

JsApp::~JsApp() { RemoveCleanupHook(); }

void JsApp::CallJs(Napi::Env env, Napi::Function, JsApp* /*self*/, Task* task) {
  if (env != nullptr) {
    Napi::HandleScope scope(env);
    (*task)(env);
  }
  delete task;
}

void JsApp::Post(Task task) {
  Task* t = new Task(std::move(task));
  if (tsfn_.NonBlockingCall(t) != napi_ok) delete t;
}

Napi::Value JsApp::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "spdk.start";
  if (owner_) ThrowSpdkError(env, "this engine was already started", EALREADY, op);
  Napi::Object o = info[0].As<Napi::Object>();
  AppOptions opts;
  opts.reactor_mask = GetString(o, "reactorMask");
  opts.mem_size_mib = o.Get("memSizeMiB").As<Napi::Number>().Int32Value();
  opts.no_huge = o.Get("noHuge").ToBoolean();
  opts.no_pci = o.Get("noPci").ToBoolean();
  opts.rpc_addr = GetString(o, "rpcAddr");
  opts.json_config = GetString(o, "json");
  opts.print_level = o.Get("printLevel").As<Napi::Number>().Int32Value();
  opts.interrupt_mode = o.Get("interruptMode").ToBoolean();
  hugepages_ = !opts.no_huge;
  if (info.Length() > 1 && info[1].IsFunction()) on_exit_ = Napi::Persistent(info[1].As<Napi::Function>());

  tsfn_ = Tsfn::New(env, "spdk-node:libspdk", 0, 1, this);
  tsfn_live_ = true;
  std::string err = SpdkApp::Start(
      opts, [this]() { Post([this](Napi::Env env) {
                  if (!start_deferred_) return;
                  running_ = true;
                  start_deferred_->Resolve(env.Undefined());
                  start_deferred_.reset();
                }); },
      [this](int rc, const std::string& errors, bool env_up) {
        Post([this, rc, errors, env_up](Napi::Env env) { OnExited(env, rc, errors, env_up); });
      });
  if (!err.empty()) {
    tsfn_.Release();
    tsfn_live_ = false;
    on_exit_.Reset();
    ThrowSpdkError(env, err, EALREADY, op, "ERR_SPDK_ENV_ONCE");
  }
  owner_ = true;
  napi_add_env_cleanup_hook(env, &JsApp::CleanupHook, this);
  cleanup_hook_ = true;
  Ref();  // SPDK's callbacks reach this object until it exits
  start_deferred_ = std::make_unique<Napi::Promise::Deferred>(env);
  return start_deferred_->Promise();
}

void JsApp::OnExited(Napi::Env env, int rc, const std::string& errors, bool env_up) {
  SpdkApp::Join();  // the thread has nothing left to do but return
  // Detach whatever JavaScript still holds (the memory is gone or deliberately leaked).
  buffers_.ReleaseAll(env);
  owner_ = false;
  const bool was_running = running_;
  running_ = false;
  if (start_deferred_) {
    // ERR_SPDK_ENV: SPDK's environment (DPDK) did not come up; ERR_SPDK_START: it did, and a
    // later step failed (the JSON config, the RPC socket, a subsystem).
    std::string msg = stop_deferred_ ? std::string("SPDK was stopped before it finished starting")
                      : env_up       ? "SPDK failed to start (spdk_app_start returned " + std::to_string(rc) + ")"
                                     : "SPDK's environment (DPDK) could not be initialised (spdk_app_start returned " +
                                           std::to_string(rc) + ")";
    if (!errors.empty()) msg += ":\n" + errors;
    const char* code = stop_deferred_ ? "ERR_SPDK_START" : env_up ? "ERR_SPDK_START" : "ERR_SPDK_ENV";
    start_deferred_->Reject(MakeSpdkError(env, msg, stop_deferred_ ? ECANCELED : EIO, "spdk.start", code).Value());
    start_deferred_.reset();
  }
  if (stop_deferred_) {
    stop_deferred_->Resolve(env.Undefined());
    stop_deferred_.reset();
  } else if (was_running && !on_exit_.IsEmpty()) {
    // SPDK stopped by itself (spdk_kill_instance, a fatal error): tell TypeScript.
    on_exit_.Call({Napi::Number::New(env, rc), Napi::String::New(env, errors)});
  }
  on_exit_.Reset();
  RemoveCleanupHook();
  if (tsfn_live_) {
    tsfn_.Release();
    tsfn_live_ = false;
  }
  Unref();
}

Napi::Value JsApp::Stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (!owner_) {
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  if (stop_deferred_) ThrowSpdkError(env, "stop() is already in progress", EALREADY, "spdk.stop");
  // SPDK memory goes back while SPDK's memory maps still exist (spdk_app_fini frees them).
  buffers_.ReleaseAll(env);
  running_ = false;
  stop_deferred_ = std::make_unique<Napi::Promise::Deferred>(env);
  SpdkApp::RequestStop();
  return stop_deferred_->Promise();
}

Napi::Value JsApp::StopSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!owner_) return Napi::Boolean::New(env, true);
  const int timeout_ms = info[0].As<Napi::Number>().Int32Value();
  buffers_.ReleaseAll(env);
  running_ = false;
  return Napi::Boolean::New(env, SpdkApp::StopBlocking(timeout_ms));
}

Napi::Value JsApp::AllocBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "spdk.allocBuffer";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  const double len = info[0].As<Napi::Number>().DoubleValue();
  if (!(len >= 1) || len > 1099511627776.0 || std::floor(len) != len) {
    ThrowSpdkError(env, "buffer size must be an integer between 1 byte and 1 TiB", EINVAL, op);
  }
  // DMA-able, 4 KiB aligned, zeroed: what SPDK's drivers read from and write to directly.
  void* p = spdk_zmalloc(static_cast<size_t>(len), 4096, nullptr, SPDK_ENV_NUMA_ID_ANY, SPDK_MALLOC_DMA);
  if (p == nullptr) {
    ThrowSpdkError(env, "SPDK's memory is exhausted (spdk_zmalloc of " + std::to_string(static_cast<uint64_t>(len)) +
                            " bytes failed; start with a larger memoryMiB)", ENOMEM, op);
  }
  DmaBuffer* b = new DmaBuffer();
  b->data = static_cast<uint8_t*>(p);
  b->len = static_cast<size_t>(len);
  b->map_len = b->len;
  b->hugepage = hugepages_;
  b->release = ReleaseSpdkMemory;
  return buffers_.Add(env, b, op);
}

Napi::Value JsApp::FreeBuffer(const Napi::CallbackInfo& info) {
  buffers_.Free(info.Env(), info[0].As<Napi::Number>().DoubleValue(), "buffer.free");
  return info.Env().Undefined();
}

Napi::Value JsApp::BufferInfo(const Napi::CallbackInfo& info) {
  return buffers_.Info(info.Env(), info[0].As<Napi::Number>().DoubleValue());
}

Napi::Value JsApp::RefLoop(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value JsApp::UnrefLoop(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Unref(info.Env());
  return info.Env().Undefined();
}

Napi::Value JsApp::StateName(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), StateText(SpdkApp::State()));
}

void JsApp::CleanupHook(void* arg) {
  // The environment is going away with SPDK running (a worker terminated, or the loop emptied
  // after unref()): stop SPDK synchronously. Blocking is fine here: nothing else runs.
  JsApp* self = static_cast<JsApp*>(arg);
  self->cleanup_hook_ = false;
  SpdkApp::StopBlocking(10000);
  if (self->tsfn_live_) {
    self->tsfn_.Abort();
    self->tsfn_live_ = false;
  }
  self->owner_ = false;
  self->running_ = false;
}

void JsApp::RemoveCleanupHook() {
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(env_, &JsApp::CleanupHook, this);
    cleanup_hook_ = false;
  }
}

}  // namespace spdk_node::libspdk

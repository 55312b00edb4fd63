// The libspdk engine as JavaScript sees it: `new addon.App()`, one per Spdk instance (and at most
// one that ever starts, per process: see app.h).
//
// Threads: every method runs on the JS thread. SPDK's threads reach JS only through one
// thread-safe function (started, exited); it is referenced while SPDK runs, so the event loop
// stays alive exactly as long as SPDK does (unref() lets the process exit anyway).
#pragma once

#include <napi.h>

#include <functional>
#include <memory>

#include "../common/buffer_table.h"

namespace spdk_node::libspdk {

class JsApp : public Napi::ObjectWrap<JsApp> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit JsApp(const Napi::CallbackInfo& info);
  ~JsApp() override;

  // JS thread: SPDK runs (started, not stopping); what spdk.nvme needs before touching SPDK.
  bool running() const { return running_; }
  // JS thread: the live buffer with this id (the NVMe host's payloads), or nullptr.
  DmaBuffer* LookupBuffer(double id) const { return buffers_.Lookup(id); }

 private:
  using Task = std::function<void(Napi::Env)>;
  static void CallJs(Napi::Env env, Napi::Function, JsApp* self, Task* task);
  using Tsfn = Napi::TypedThreadSafeFunction<JsApp, Task, CallJs>;

  // start({ reactorMask, memSizeMiB, noHuge, noPci, rpcAddr, json, printLevel, interruptMode }, onExit)
  //   -> Promise<void>: resolves once SPDK's start callback ran; rejects (after the thread is
  //   joined) with SPDK's errors when spdk_app_start fails. onExit(rc, errors) is called if SPDK
  //   stops by itself later (not after stop()).
  Napi::Value Start(const Napi::CallbackInfo& info);
  // stop() -> Promise<void>: frees every buffer, stops SPDK, joins its thread (spdk_app_fini ran).
  Napi::Value Stop(const Napi::CallbackInfo& info);
  // stopSync(timeoutMs) -> boolean: for process exit; blocks the JS thread.
  Napi::Value StopSync(const Napi::CallbackInfo& info);
  Napi::Value AllocBuffer(const Napi::CallbackInfo& info);
  Napi::Value FreeBuffer(const Napi::CallbackInfo& info);
  Napi::Value BufferInfo(const Napi::CallbackInfo& info);
  Napi::Value RefLoop(const Napi::CallbackInfo& info);
  Napi::Value UnrefLoop(const Napi::CallbackInfo& info);
  Napi::Value StateName(const Napi::CallbackInfo& info);

  // Any thread: run task on the JS thread (dropped once the env is going away).
  void Post(Task task);
  void OnExited(Napi::Env env, int rc, const std::string& errors, bool env_up);
  // Env teardown with SPDK running (worker terminated, process exiting normally).
  static void CleanupHook(void* arg);
  void RemoveCleanupHook();

  napi_env env_ = nullptr;
  Tsfn tsfn_;
  bool tsfn_live_ = false;
  bool owner_ = false;     // this object started SPDK and has not seen it exit
  bool running_ = false;   // started callback seen, no stop yet
  bool cleanup_hook_ = false;
  bool hugepages_ = false;  // SPDK's memory is hugepage memory (no --no-huge)
  std::unique_ptr<Napi::Promise::Deferred> start_deferred_;
  std::unique_ptr<Napi::Promise::Deferred> stop_deferred_;
  Napi::FunctionReference on_exit_;
  BufferTable buffers_;
};

}  // namespace spdk_node::libspdk

// The NVMe host as JavaScript sees it (lib/nvme/ wraps these): NvmeController and NvmeQpair.
//
// NvmeController (JS thread): a HostCtrlr driven by the JS thread's event loop. connect(),
// admin commands, reset(), detach() return promises; its answers are delivered inside a JS
// callback scope, so promise reactions run at once.
//
// NvmeQpair: one I/O queue pair, owned either by the JS thread ('js') or by a reactor thread.
//
//  JS thread (TypeScript)                   owner of the HostQpair
//  ----------------------                   ----------------------
//  writes descriptors into `desc`           'js' owner = this same thread: submit() builds the
//  (Float64Array, 8 words each)             PDUs and sends them (one sendmsg) before returning;
//  submit(n) / reap(ring, n, wait):         the socket is polled from the event loop while
//    one N-API call per batch   ──────▶     commands are outstanding (UvQpairDriver).
//                                           reactor owner: submit() validates and pushes CIDs
//                                           into a lockless ring, the reactor's poller sends.
//  reap() copies {tag, status} pairs  ◀──── completions: {cid, status} into `cq` (release
//  into the caller's Int32Array ring,       store of its tail); 'js': delivered after the
//  drops buffer references, frees CIDs      event that produced them; reactor: one coalesced
//                                           thread-safe-function call per batch.
//
// A CID (request slot) is busy from submit() until JavaScript has reaped its completion, so
// `cq` (capacity >= depth) never overflows and a buffer is "in flight" to JavaScript exactly
// until its completion is handed over. reap(ring, n, true) arms a wait when nothing is ready:
// the next completions are copied into that ring and `onReady(count)` is called once.
#pragma once

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../common/dma_buffer.h"
#include "../../common/nvme/host_desc.h"
#include "../../common/nvme/host_slots.h"
#include "../../common/ring.h"
#include "host_ctrlr.h"
#include "host_qpair.h"
#include "uv_driver.h"

namespace spdk_node {

class JsEngine;
class Reactor;
struct Poller;

namespace nvme_host {

// The descriptor layout (kNd*) is in native/common/nvme/host_desc.h.

class JsNvmeCtrlr : public Napi::ObjectWrap<JsNvmeCtrlr> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new NvmeController(engine)
  explicit JsNvmeCtrlr(const Napi::CallbackInfo& info);
  ~JsNvmeCtrlr() override;

  HostCtrlr* host() { return host_.get(); }
  JsEngine* engine() { return engine_; }
  // Runs f inside a handle scope and a JS callback scope (microtasks run when it closes).
  void RunJs(const std::function<void()>& f);
  napi_env env() const { return env_; }
  napi_async_context async_context() const { return async_ctx_; }
  // Sends an Abort for (sqid, cid); cb(aborted) on the JS thread (false when the controller
  // did not abort it or the Abort failed).
  void AbortCommand(uint16_t sqid, uint16_t cid, std::function<void(bool)> cb);
  // The controller's incarnation: bumped by every reset.
  uint32_t generation() const { return generation_; }

 private:
  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value Admin(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value OnEvent(const Napi::CallbackInfo& info);
  void DeliverEvent(const AsyncEvent& ev);
  Napi::Object Describe(Napi::Env env);
  Napi::Error ConnectError(Napi::Env env, int err, const std::string& msg, int32_t status, uint32_t dw0);
  void Release();

  napi_env env_ = nullptr;
  JsEngine* engine_ = nullptr;
  Napi::ObjectReference engine_ref_;
  std::unique_ptr<HostCtrlr> host_;
  napi_async_context async_ctx_ = nullptr;
  Napi::ObjectReference resource_;
  Napi::FunctionReference on_event_;
  bool started_ = false;
  bool counted_ = false;  // holds one of the engine's open_queues and a self reference
  bool busy_ = false;  // connect/reset/detach in progress
  uint32_t generation_ = 0;
};

class JsNvmeQpair : public Napi::ObjectWrap<JsNvmeQpair>, public HostQpair::Owner {
 public:
  static Napi::Function Init(Napi::Env env);
  // new NvmeQpair(ctrlr, { qid, depth, queueSize, reactor, spin, timeoutMs }, onReady)
  explicit JsNvmeQpair(const Napi::CallbackInfo& info);
  ~JsNvmeQpair() override;

  // HostQpair::Owner (the owner's thread).
  void OnRequestDone(HostRequest* r) override;
  void OnStateChange(QpairState s) override;

 private:

  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Reap(const Napi::CallbackInfo& info);
  Napi::Value Disconnect(const Napi::CallbackInfo& info);
  Napi::Value Reconnect(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value InFlight(const Napi::CallbackInfo& info);

  // JS thread.
  uint32_t SubmitBatch(Napi::Env env, uint32_t count);
  // Validates descriptor d and fills a request for it: 0 (*cid set) or a positive errno.
  int Prepare(const double* d, uint16_t* cid, std::string* msg);
  // Delivers armed completions (JS thread, inside a callback scope or a tsfn call).
  void Deliver(napi_env env, bool make_callback);
  void StartConnect(std::shared_ptr<Napi::Promise::Deferred> d);
  void FinishConnect(napi_env env, bool ok);
  void FinishDisconnect(napi_env env);
  QpairOptions MakeOptions();
  void StartTimer();
  static void OnTimer(uv_timer_t* t);
  void HandleTimeouts(const std::vector<uint16_t>& cids);
  void FailForTimeout(uint16_t cid, uint32_t ms);
  std::string Where() const;

  // Reactor owner.
  bool Poll();
  bool CheckTimeoutsOnReactor();
  void FailUnsent(int32_t status);
  void Notify();
  static void CallJs(napi_env env, napi_value js_cb, void* context, void* data);

  napi_env env_ = nullptr;
  JsNvmeCtrlr* ctrlr_ = nullptr;
  Napi::ObjectReference ctrlr_ref_;
  JsEngine* engine_ = nullptr;
  Napi::FunctionReference on_ready_;
  std::unique_ptr<HostQpair> hq_;
  uint16_t qid_ = 0;
  uint32_t depth_ = 0;
  uint32_t queue_size_ = 0;
  uint32_t timeout_ms_ = 0;
  bool spin_ = true;
  int reactor_index_ = -1;  // -1: the JS thread owns the qpair
  Reactor* reactor_ = nullptr;
  Poller* poller_ = nullptr;
  Poller* timeout_poller_ = nullptr;
  int wake_fd_ = -1;  // reactor thread: the socket registered with the reactor
  UvQpairDriver* driver_ = nullptr;  // 'js' owner
  uv_timer_t* timer_ = nullptr;  // command timeouts ('js' owner and reactor owner alike)
  uint32_t max_xfer_ = 0;

  HostSlots io_;
  // An Abort was sent for this CID: the command must be gone by then (JS thread).
  std::vector<uint64_t> abort_deadline_us_;
  SpscRing<uint16_t> sq_;
  alignas(64) std::atomic<bool> wake_pending_{false};
  uint32_t unnotified_ = 0;
  napi_threadsafe_function tsfn_ = nullptr;

  // Connection state as the JS thread knows it.
  enum class Phase : uint8_t { kNew, kConnecting, kReady, kFailed, kClosing, kClosed };
  Phase phase_ = Phase::kNew;
  std::atomic<bool> transport_failed_{false};
  std::string failure_;  // JS thread copy of the reason
  std::shared_ptr<Napi::Promise::Deferred> connect_deferred_;
  std::shared_ptr<Napi::Promise::Deferred> close_deferred_;
  bool counted_ = false;
  uint32_t last_nsid_ = 0;
  uint32_t last_lba_size_ = 0;
  uint32_t last_gen_ = ~0u;
  // Reactor thread: connect outcome already reported.
  bool reported_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace nvme_host
}  // namespace spdk_node

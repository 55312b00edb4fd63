// spdk.nvme on the libspdk engine: SPDK's own NVMe driver (include/spdk/nvme.h) behind the same
// JavaScript interface as the builtin engine's NVMe/TCP host (native/builtin/nvme/js_nvme.h), so
// lib/nvme/ works unchanged on both: NvmeController and NvmeQpair.
//
// Threads: everything here runs on the JS thread, which is SPDK's "application thread" for these
// controllers and queue pairs, as in spdk_nvme_perf (SPDK's NVMe driver needs no spdk_thread for
// them; its reactors never touch them). SPDK's environment must be up: the engine's App
// (native/libspdk/js_app.h) started it on its own thread.
//
//  - NvmeController: spdk_nvme_connect_async, then spdk_nvme_probe_poll_async from a uv timer;
//    while attached the same timer calls spdk_nvme_ctrlr_process_admin_completions (admin
//    commands, SPDK's keep-alive, asynchronous events): every 1 ms while something is pending,
//    else every 10 ms. Reset: spdk_nvme_ctrlr_disconnect + reconnect_async/_poll_async. Detach:
//    spdk_nvme_detach_async/_poll_async.
//  - NvmeQpair: spdk_nvme_ctrlr_alloc_io_qpair (async_mode, connected by polling); submissions
//    with spdk_nvme_ns_cmd_* from the descriptors, one N-API call per batch; completions by
//    spdk_nvme_qpair_process_completions from a uv_idle handle while commands are outstanding
//    (after 2 ms without progress a 1 ms uv timer instead, so a slow target costs no core), into
//    the same {cid, status} ring and reap(ring) contract as the builtin host.
//
// SPDK callbacks never call JavaScript: they record what happened, and JavaScript is entered
// once, after SPDK's poll function returned (admin answers, events, an armed reap).
#pragma once

#include <napi.h>
#include <spdk/nvme.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../../common/dma_buffer.h"
#include "../../common/nvme/host_desc.h"

namespace spdk_node::libspdk {

class JsApp;
class JsLsQpair;

class JsLsCtrlr : public Napi::ObjectWrap<JsLsCtrlr> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new NvmeController(app)
  explicit JsLsCtrlr(const Napi::CallbackInfo& info);
  ~JsLsCtrlr() override;

  spdk_nvme_ctrlr* ctrlr() const { return ctrlr_; }
  JsApp* app() const { return app_; }
  uv_loop_t* loop() const { return loop_; }
  bool ready() const { return phase_ == Phase::kReady && !failed_; }
  bool failed() const { return failed_; }
  const std::string& failure() const { return failure_; }
  const std::string& where() const { return where_; }
  // Bumped by every reset and namespace change: qpairs look namespaces up again.
  uint32_t generation() const { return generation_; }
  // Runs f inside a handle scope and a JS callback scope (microtasks run when it closes).
  void RunJs(const std::function<void()>& f);
  void AddQpair(JsLsQpair* q) { qpairs_.insert(q); }
  void RemoveQpair(JsLsQpair* q) { qpairs_.erase(q); }

 private:
  enum class Phase : uint8_t { kNew, kConnecting, kReady, kResetting, kDetaching, kDetached };
  // spdk_nvme_connect_async hands its opts pointer back to attach_cb as cb_ctx: this wraps it.
  struct ConnectCtx {
    spdk_nvme_ctrlr_opts opts;  // first member: cb_ctx == &opts == this
    JsLsCtrlr* self;
  };
  struct AdminCtx {
    JsLsCtrlr* self;
    std::shared_ptr<Napi::Promise::Deferred> deferred;
    void* buf;
    uint32_t len;
    bool in;  // data from the controller
    bool done;
    int32_t status;
    uint32_t dw0, dw1;
  };
  struct Event {
    uint32_t type, info, log_page;
  };

  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value Admin(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Detach(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value OnEvent(const Napi::CallbackInfo& info);

  static void AttachCb(void* cb_ctx, const spdk_nvme_transport_id* trid, spdk_nvme_ctrlr* ctrlr,
                       const spdk_nvme_ctrlr_opts* opts);
  static void AdminDone(void* arg, const spdk_nvme_cpl* cpl);
  static void AerCb(void* arg, const spdk_nvme_cpl* cpl);
  static void OnTimer(uv_timer_t* t);
  void Tick();
  void Schedule();
  void FinishConnect(Napi::Env env);
  void FinishReset(Napi::Env env, int rc);
  void FinishDetach(Napi::Env env);
  void DeliverAdmin(Napi::Env env);
  void DeliverEvents(Napi::Env env);
  void FailAdmin(int err);
  void MarkFailed(const std::string& why);
  Napi::Object Describe(Napi::Env env);
  Napi::Error ConnectError(Napi::Env env, const std::string& what);
  void Release();

  napi_env env_ = nullptr;
  JsApp* app_ = nullptr;
  Napi::ObjectReference app_ref_;
  uv_loop_t* loop_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  uint64_t timer_period_ = 0;
  napi_async_context async_ctx_ = nullptr;
  Napi::ObjectReference resource_;
  Napi::FunctionReference on_event_;

  Phase phase_ = Phase::kNew;
  bool failed_ = false;
  std::string failure_;
  std::string where_;
  std::string subnqn_;
  uint32_t generation_ = 0;
  bool counted_ = false;  // a self reference while connected

  std::unique_ptr<ConnectCtx> connect_;
  spdk_nvme_transport_id trid_{};
  spdk_nvme_probe_ctx* probe_ = nullptr;
  spdk_nvme_ctrlr* ctrlr_ = nullptr;
  spdk_nvme_detach_ctx* detach_ctx_ = nullptr;
  uint64_t reset_deadline_ms_ = 0;
  std::shared_ptr<Napi::Promise::Deferred> op_deferred_;  // connect, reset or detach

  std::vector<AdminCtx*> admin_;  // submitted, not delivered
  uint32_t admin_pending_ = 0;
  std::vector<Event> events_;
  std::vector<uint32_t> last_nsids_;
  std::vector<uint64_t> last_sizes_;
  std::set<JsLsQpair*> qpairs_;
};

class JsLsQpair : public Napi::ObjectWrap<JsLsQpair> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new NvmeQpair(ctrlr, { qid, depth, queueSize, reactor, spin, timeoutMs }, onReady)
  explicit JsLsQpair(const Napi::CallbackInfo& info);
  ~JsLsQpair() override;

  // The controller is being reset or detached: the qpair is disconnected (commands in flight
  // complete with ABORTED - SQ DELETION).
  void OnCtrlrDisconnect();
  // The controller failed: the qpair fails too.
  void OnCtrlrFailed(const std::string& why);

 private:
  struct Slot {
    JsLsQpair* qp = nullptr;
    int32_t tag = 0;
    bool busy = false;      // from submission until JavaScript reaped it
    bool in_spdk = false;   // SPDK holds the request (its callback has not run)
    DmaBuffer* buf = nullptr;
    uint64_t off = 0, len = 0;
    Slot* prev = nullptr;  // in buf->host_io
    Slot* next = nullptr;
  };
  enum class Phase : uint8_t { kNew, kConnecting, kReady, kFailed, kClosing, kClosed };

  Napi::Value Connect(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Reap(const Napi::CallbackInfo& info);
  Napi::Value Disconnect(const Napi::CallbackInfo& info);
  Napi::Value Reconnect(const Napi::CallbackInfo& info);
  Napi::Value State(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value InFlight(const Napi::CallbackInfo& info);

  uint32_t SubmitBatch(Napi::Env env, uint32_t count);
  int Prepare(const double* d, uint16_t* cid, std::string* msg);
  int Issue(const double* d, uint16_t cid);
  void Unprepare(uint16_t cid);
  uint32_t CopyOut(int32_t* ring, uint32_t cap);
  void Arm(Napi::Env env, Napi::Value ring, int32_t* ptr, uint32_t cap);
  void Disarm();
  void Deliver(napi_env env);
  static void IoDone(void* arg, const spdk_nvme_cpl* cpl);
  void Complete(Slot* s, int32_t status);
  // Calls spdk_nvme_qpair_process_completions once; returns completions processed.
  int32_t Process();
  void Poll();
  void UpdateDriver();
  static void OnIdle(uv_idle_t* h);
  static void OnTimer(uv_timer_t* t);
  void StartConnect(std::shared_ptr<Napi::Promise::Deferred> d);
  void FinishConnect(napi_env env, bool ok);
  void TransportFailed(int rc);
  void FreeSpdkQpair();
  void Finish(napi_env env);
  std::string Where() const;

  napi_env env_ = nullptr;
  JsLsCtrlr* ctrlr_ = nullptr;
  Napi::ObjectReference ctrlr_ref_;
  Napi::FunctionReference on_ready_;
  spdk_nvme_qpair* qp_ = nullptr;
  uint32_t depth_ = 0;
  uint32_t queue_size_ = 0;
  bool spin_ = true;
  uint32_t max_xfer_ = 0;

  std::vector<Slot> slots_;
  std::vector<uint16_t> free_;
  uint32_t in_flight_ = 0;  // JS view: submitted, not reaped
  uint32_t in_spdk_ = 0;    // SPDK holds these requests
  double* desc_ = nullptr;
  uint32_t* cq_ = nullptr;  // {cid, status} pairs
  uint32_t cq_mask_ = 0;
  uint32_t cq_head_ = 0, cq_tail_ = 0;

  bool armed_ = false;
  napi_ref ring_ref_ = nullptr;
  int32_t* ring_ptr_ = nullptr;
  uint32_t ring_cap_ = 0;

  uv_idle_t* idle_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  bool idling_ = false;
  bool ticking_ = false;
  uint64_t last_progress_ms_ = 0;
  bool in_process_ = false;
  bool transport_lost_ = false;  // commands SPDK aborts now failed with the connection

  Phase phase_ = Phase::kNew;
  std::string failure_;
  std::shared_ptr<Napi::Promise::Deferred> connect_deferred_;
  std::shared_ptr<Napi::Promise::Deferred> close_deferred_;
  bool counted_ = false;
  uint32_t last_nsid_ = 0, last_gen_ = ~0u;
  spdk_nvme_ns* last_ns_ = nullptr;
  uint32_t last_lba_size_ = 0;
  uint64_t completions_ = 0, submissions_ = 0, process_calls_ = 0;
};

}  // namespace spdk_node::libspdk

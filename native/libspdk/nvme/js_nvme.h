// spdk.nvme on the libspdk engine: SPDK's own NVMe driver (include/spdk/nvme.h) behind the same
// JavaScript interface as the builtin engine's NVMe/TCP host (native/builtin/nvme/js_nvme.h), so
// lib/nvme/ works unchanged on both: NvmeController and NvmeQpair.
//
// Threads: controllers run on the JS thread, SPDK's "application thread" for them as in
// spdk_nvme_perf (SPDK's driver needs no spdk_thread there). A queue pair is owned by the JS thread
// or by a reactor: then it has its own spdk_thread on that core (ReactorLink) and SPDK's qpair is
// allocated, polled and freed only there. SPDK's environment must be up: the engine's App
// (native/libspdk/js_app.h) started it on its own thread.
//
//  - NvmeController: spdk_nvme_connect_async, then spdk_nvme_probe_poll_async from a uv timer;
//    while attached the same timer calls spdk_nvme_ctrlr_process_admin_completions (admin
//    commands, SPDK's keep-alive, asynchronous events, Abort answers): every 1 ms while something
//    is pending, else every 10 ms. Reset: the queue pairs' SPDK qpairs freed on their owners, then
//    spdk_nvme_ctrlr_disconnect + reconnect_async/_poll_async. Detach: the same, then
//    spdk_nvme_detach_async/_poll_async.
//  - NvmeQpair: spdk_nvme_ctrlr_alloc_io_qpair (async_mode, connected by polling); submissions
//    with spdk_nvme_ns_cmd_* from the slots (common/nvme/host_slots.h), one N-API call per batch;
//    completions by spdk_nvme_qpair_process_completions into the same {cid, status} ring and
//    reap(ring) contract as the builtin host. Owner 'js': polled from a uv_idle handle while
//    commands are outstanding (after 2 ms without progress a 1 ms uv timer instead, so a slow
//    target costs no core). Owner 'reactor': a poller drains the submission ring and polls SPDK;
//    one wake-up of the JS thread per poll with completions.
//
// SPDK callbacks never call JavaScript: they record what happened, and JavaScript is entered
// once, after SPDK's poll function returned (admin answers, events, an armed reap).
#pragma once

#include <napi.h>
#include <spdk/nvme.h>
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../../common/dma_buffer.h"
#include "../../common/nvme/host_desc.h"
#include "../../common/nvme/host_slots.h"
#include "../../common/ring.h"
#include "../reactor_link.h"

struct spdk_poller;

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
  // Frees every queue pair's SPDK qpair; the reset or detach goes on once all did.
  void DisconnectQpairs();

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
  // Controllers connecting or connected (counted_).
  static std::set<JsLsCtrlr*>& Live();

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
  std::string hostnqn_;
  uint32_t generation_ = 0;
  bool counted_ = false;  // a self reference while connected

  std::unique_ptr<ConnectCtx> connect_;
  spdk_nvme_transport_id trid_{};
  spdk_nvme_probe_ctx* probe_ = nullptr;
  spdk_nvme_ctrlr* ctrlr_ = nullptr;
  spdk_nvme_detach_ctx* detach_ctx_ = nullptr;
  uint64_t reset_deadline_ms_ = 0;
  std::atomic<int> qpairs_pending_{0};  // queue pairs still disconnecting (reactors answer)
  bool admin_disconnected_ = false;     // reset: spdk_nvme_ctrlr_disconnect done
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

  // JS thread. The controller is being reset or detached: SPDK's qpair is freed (commands in
  // flight complete with ABORTED - SQ DELETION; reconnect() allocates a new one); done() runs
  // once it is, at once for the JS owner, on the reactor for a reactor owner.
  void OnCtrlrDisconnect(std::function<void()> done);
  // JS thread. The controller failed: the qpair fails too.
  void OnCtrlrFailed(const std::string& why);

 private:
  // What SPDK's driver holds for one command (the owner's thread), beside its HostSlot.
  struct Req {
    JsLsQpair* qp = nullptr;
    spdk_nvme_ns* ns = nullptr;  // looked up at submission (JS thread)
    bool in_spdk = false;        // SPDK holds the request (its callback has not run)
    uint64_t issued_us = 0;      // command timeouts
    uint64_t abort_deadline_us = 0;  // kAbortPending while the Abort is out, then its deadline
  };
  struct AbortCtx;
  enum class Phase : uint8_t { kNew, kConnecting, kReady, kFailed, kClosing, kClosed };

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
  int Prepare(const double* d, uint16_t* cid, std::string* msg);
  void Deliver(napi_env env);
  void StartConnect(std::shared_ptr<Napi::Promise::Deferred> d);
  void FinishConnect(napi_env env, bool ok);
  void ConnectFailed(napi_env env, const std::string& why);
  void Finish(napi_env env);
  void SetFailed(const std::string& why);
  void UpdateDriver();
  static void OnIdle(uv_idle_t* h);
  static void OnTimer(uv_timer_t* t);
  static void OnTimeoutTimer(uv_timer_t* t);
  std::string Where() const;
  bool reactor() const { return link_ != nullptr; }

  // The owner's thread (the JS thread, or the queue's SPDK thread on a reactor).
  void Poll();
  static int PollOnReactor(void* arg);
  static int TimeoutsOnReactor(void* arg);
  void AllocOnReactor();
  std::string AllocSpdkQpair();
  void CloseOnReactor();
  int Issue(uint16_t cid);
  static void IoDone(void* arg, const spdk_nvme_cpl* cpl);
  void Complete(uint16_t cid, int32_t status);
  // Calls spdk_nvme_qpair_process_completions once; returns its result.
  int32_t Process();
  void PollConnecting();
  void TransportFailed(int rc);
  // Disconnects SPDK's qpair and completes everything it held: with `status`, or (timed_out_cid
  // >= 0) that one with -ETIMEDOUT and the rest with `status`.
  void DropConnection(int32_t status, int timed_out_cid);
  void FreeSpdkQpair();
  void CheckTimeouts();
  void SendAbort(uint16_t cid);
  static void AbortDone(void* arg, const spdk_nvme_cpl* cpl);
  void OnAbortResult(uint16_t cid, uint64_t issued_us, bool aborted);
  void FailForTimeout(uint16_t cid, uint64_t ms);
  // Completions went into the queue: JavaScript hears of them (armed wait or wake-up).
  void Announce();
  // Runs f on the JS thread: at once for the JS owner, posted for a reactor owner.
  void ToJs(std::function<void(napi_env)> f);

  napi_env env_ = nullptr;
  JsLsCtrlr* ctrlr_ = nullptr;
  Napi::ObjectReference ctrlr_ref_;
  Napi::FunctionReference on_ready_;
  nvme_host::HostSlots io_;
  std::vector<Req> reqs_;
  uint32_t depth_ = 0;
  uint32_t queue_size_ = 0;
  uint32_t timeout_ms_ = 0;
  bool spin_ = true;
  uint32_t max_xfer_ = 0;

  // Owner 'js': polled from the JS thread's loop.
  uv_idle_t* idle_ = nullptr;
  uv_timer_t* timer_ = nullptr;
  uv_timer_t* timeout_timer_ = nullptr;
  bool idling_ = false;
  bool ticking_ = false;
  bool delivering_ = false;  // inside the JS callback of a poll's completions
  uint64_t last_progress_ms_ = 0;  // uv_now()

  // Owner 'reactor': the queue's SPDK thread, submissions crossing a lockless ring.
  std::unique_ptr<ReactorLink> link_;
  uint32_t core_ = 0;
  SpscRing<uint16_t> sq_;
  std::atomic<bool> closing_{false};
  bool owner_alive_ = false;  // JS thread: the queue's thread exists or is being created
  spdk_poller* poller_ = nullptr;
  spdk_poller* timeout_poller_ = nullptr;
  bool unnotified_ = false;

  // The owner's thread.
  spdk_nvme_qpair* qp_ = nullptr;
  uint32_t in_spdk_ = 0;
  bool owner_connecting_ = false;
  bool in_process_ = false;
  bool transport_lost_ = false;  // commands SPDK aborts now failed with the connection
  int32_t forced_status_ = 0;    // while dropping the connection: what its commands complete with
  int forced_timed_out_ = -1;
  uint64_t completions_ = 0, submissions_ = 0, process_calls_ = 0;

  // JS thread.
  Phase phase_ = Phase::kNew;
  std::string failure_;
  std::shared_ptr<Napi::Promise::Deferred> connect_deferred_;
  std::shared_ptr<Napi::Promise::Deferred> close_deferred_;
  bool counted_ = false;
  uint32_t last_nsid_ = 0, last_gen_ = ~0u;
  spdk_nvme_ns* last_ns_ = nullptr;
  uint32_t last_lba_size_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace spdk_node::libspdk

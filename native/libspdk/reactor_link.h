// ReactorLink: what a queue driven by one of SPDK's reactors needs to talk to the JS thread and
// back: its own spdk_thread on the reactor's core, tasks posted to the JS thread through one
// thread-safe function, and a coalesced completion wake-up. Used by BdevQueue and by NvmeQpair
// with owner 'reactor'.
//
// Each queue gets its own spdk_thread with the reactor's core as its cpumask (SPDK's scheduler
// keeps it there): queues on different reactors run in parallel, and closing one is that
// thread's exit. spdk_thread_create runs on SPDK's app thread (SPDK's threads are created from
// SPDK threads).
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

struct spdk_thread;

namespace spdk_node::libspdk {

class ReactorLink {
 public:
  using Task = std::function<void(Napi::Env)>;

  // JS thread. on_wake runs on the JS thread after Notify() (at most one call pending); the
  // link keeps the event loop alive only while Ref()-ed. Throws when N-API cannot make the tsfn.
  ReactorLink(Napi::Env env, const char* name, std::function<void(Napi::Env)> on_wake);
  ~ReactorLink();
  ReactorLink(const ReactorLink&) = delete;
  ReactorLink& operator=(const ReactorLink&) = delete;

  // JS thread: creates the thread on `core` (from SPDK's app thread) and runs on_thread there;
  // on failure failed(errno, message) runs on the JS thread.
  void Start(uint32_t core, const std::string& name, std::function<void()> on_thread,
             std::function<void(Napi::Env, int, const std::string&)> failed);
  // Any thread: runs f on the queue's thread (after what was sent before). False when it cannot
  // (no thread, SPDK gone).
  bool Send(std::function<void()> f);
  // The queue's thread: leaves it (pollers must be unregistered first).
  void Exit();
  spdk_thread* thread() const { return thread_; }
  // Any thread: runs task on the JS thread; dropped once released or the env is going away.
  void PostToJs(Task task);
  // The queue's thread: wakes the JS thread's on_wake, once until it ran (ClearWake()).
  void Notify();
  // JS thread, before taking completions: later ones Notify() again.
  void ClearWake() { wake_pending_.store(false, std::memory_order_seq_cst); }
  // JS thread: no more tasks or wake-ups (idempotent).
  void Release();

 private:
  static void CallJs(napi_env env, napi_value js_cb, void* context, void* data);
  static void CreateThread(void* ctx);

  napi_threadsafe_function tsfn_ = nullptr;
  std::function<void(Napi::Env)> on_wake_;
  alignas(64) std::atomic<bool> wake_pending_{false};
  spdk_thread* thread_ = nullptr;
  uint32_t core_ = 0;
  std::string name_;
  std::function<void()> on_thread_;
  std::function<void(Napi::Env, int, const std::string&)> failed_;
};

}  // namespace spdk_node::libspdk

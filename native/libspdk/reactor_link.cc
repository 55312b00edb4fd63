#include "reactor_link.h"

#include <spdk/thread.h>

#include <cerrno>
#include <memory>

namespace spdk_node::libspdk {

ReactorLink::ReactorLink(Napi::Env env, const char* name, std::function<void(Napi::Env)> on_wake)
    : on_wake_(std::move(on_wake)) {
  if (napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, name), 0, 1, nullptr, nullptr, this,
                                      &ReactorLink::CallJs, &tsfn_) != napi_ok)
    throw Napi::Error::New(env, std::string("cannot create the wake-up of ") + name);
  napi_unref_threadsafe_function(env, tsfn_);  // the engine keeps the loop alive, not a queue
}

ReactorLink::~ReactorLink() { Release(); }

void ReactorLink::Release() {
  if (tsfn_ != nullptr) napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
  tsfn_ = nullptr;
}

void ReactorLink::PostToJs(Task task) {
  Task* t = new Task(std::move(task));
  if (tsfn_ == nullptr || napi_call_threadsafe_function(tsfn_, t, napi_tsfn_nonblocking) != napi_ok) delete t;
}

void ReactorLink::Notify() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  if (tsfn_ != nullptr) napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
}

void ReactorLink::CallJs(napi_env env, napi_value, void* context, void* data) {
  std::unique_ptr<Task> task(static_cast<Task*>(data));
  if (env == nullptr) return;  // torn down
  ReactorLink* self = static_cast<ReactorLink*>(context);
  if (task) return (*task)(Napi::Env(env));
  self->ClearWake();
  if (self->on_wake_) self->on_wake_(Napi::Env(env));
}

void ReactorLink::Start(uint32_t core, const std::string& name, std::function<void()> on_thread,
                        std::function<void(Napi::Env, int, const std::string&)> failed) {
  core_ = core;
  name_ = name;
  on_thread_ = std::move(on_thread);
  failed_ = std::move(failed);
  if (spdk_thread_send_msg(spdk_thread_get_app_thread(), &ReactorLink::CreateThread, this) != 0)
    PostToJs([this](Napi::Env env) { failed_(env, ENOMEM, "cannot reach SPDK's app thread"); });
}

void ReactorLink::CreateThread(void* ctx) {
  ReactorLink* self = static_cast<ReactorLink*>(ctx);
  spdk_cpuset mask;
  spdk_cpuset_zero(&mask);
  spdk_cpuset_set_cpu(&mask, self->core_, true);
  self->thread_ = spdk_thread_create(self->name_.c_str(), &mask);
  if (self->thread_ == nullptr) {
    const std::string msg = "cannot create an SPDK thread on core " + std::to_string(self->core_);
    self->PostToJs([self, msg](Napi::Env env) { self->failed_(env, ENOMEM, msg); });
    return;
  }
  self->Send(self->on_thread_);
}

bool ReactorLink::Send(std::function<void()> f) {
  if (thread_ == nullptr) return false;
  auto* fn = new std::function<void()>(std::move(f));
  const int rc = spdk_thread_send_msg(
      thread_,
      [](void* arg) {
        std::unique_ptr<std::function<void()>> g(static_cast<std::function<void()>*>(arg));
        (*g)();
      },
      fn);
  if (rc != 0) delete fn;
  return rc == 0;
}

void ReactorLink::Exit() {
  if (thread_ != nullptr) spdk_thread_exit(thread_);
  thread_ = nullptr;
}

}  // namespace spdk_node::libspdk

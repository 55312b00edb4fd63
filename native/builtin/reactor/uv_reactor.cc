#include "uv_reactor.h"

namespace spdk_node {

namespace {
constexpr uint64_t kSpinBeforeSleepUs = 200;
}

UvReactor::UvReactor(uint32_t index, bool polling) : Reactor(index, -1, polling) {}

UvReactor::~UvReactor() = default;

int UvReactor::Start(uv_loop_t* loop) {
  thread_id_ = std::this_thread::get_id();
  int rc = uv_poll_init(loop, &poll_, epoll_fd_);
  if (rc != 0) return rc;
  poll_.data = this;
  uv_idle_init(loop, &idle_);
  idle_.data = this;
  // Neither handle keeps the process alive: the engine holds the loop open while it runs.
  uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&idle_));
  uv_poll_start(&poll_, UV_READABLE, OnPoll);
  open_handles_ = 2;
  started_ = true;
  Kick();
  return 0;
}

void UvReactor::Kick() {
  if (!started_ || idle_active_) return;
  idle_active_ = true;
  last_busy_us_ = NowUs();
  uv_idle_start(&idle_, OnIdle);
}

void UvReactor::OnPoll(uv_poll_t* h, int, int) {
  UvReactor* r = static_cast<UvReactor*>(h->data);
  r->FinishSleep();
  r->Kick();
}

void UvReactor::OnIdle(uv_idle_t* h) {
  UvReactor* r = static_cast<UvReactor*>(h->data);
  const bool busy = r->RunOnce();
  if (r->after_run_) r->after_run_();
  if (busy) {
    r->last_busy_us_ = NowUs();
    return;
  }
  if (r->polling_) return;
  if (NowUs() - r->last_busy_us_ < kSpinBeforeSleepUs) return;
  if (!r->PrepareSleep()) {
    if (r->after_run_) r->after_run_();
    r->last_busy_us_ = NowUs();
    return;
  }
  // Sleeping: libuv blocks in its own epoll, which watches our epoll fd. Timed pollers are
  // not woken by a timer here; the builtin engine only uses them on thread reactors.
  r->idle_active_ = false;
  uv_idle_stop(&r->idle_);
}

void UvReactor::Close() {
  if (!started_) {
    delete this;
    return;
  }
  started_ = false;
  uv_idle_stop(&idle_);
  uv_poll_stop(&poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), OnClosed);
}

void UvReactor::OnClosed(uv_handle_t* h) {
  UvReactor* r = static_cast<UvReactor*>(h->data);
  if (--r->open_handles_ == 0) {
    for (int i = 0; i < 1000 && r->RunOnce(); i++) {
    }
    delete r;
  }
}

}  // namespace spdk_node

#include "uv_driver.h"

#include "../../common/clock.h"

namespace spdk_node {
namespace nvme_host {

UvQpairDriver* UvQpairDriver::Create(uv_loop_t* loop, HostQpair* qp, std::function<void()> on_event,
                                     bool spin) {
  UvQpairDriver* d = new UvQpairDriver();
  d->qp_ = qp;
  d->on_event_ = std::move(on_event);
  d->spin_ = spin;
  uv_idle_init(loop, &d->idle_);
  d->idle_.data = d;
  uv_unref(reinterpret_cast<uv_handle_t*>(&d->idle_));
  d->open_ = 1;
  if (qp->fd() >= 0 && uv_poll_init(loop, &d->poll_, qp->fd()) == 0) {
    d->poll_.data = d;
    uv_unref(reinterpret_cast<uv_handle_t*>(&d->poll_));
    d->open_ = 2;
  } else {
    d->poll_.data = nullptr;  // no socket (connect failed at once): nothing to watch
  }
  d->last_progress_us_ = NowNs() / 1000;
  d->Update();
  return d;
}

void UvQpairDriver::Update() {
  if (closing_) return;
  const bool live = !qp_->failed() && qp_->fd() >= 0;
  // Spinning starts when there is work and goes on until spin_limit_us pass without progress,
  // outstanding commands or not (so a queue pair at depth 1 stays out of epoll between commands,
  // and one waiting on a slow command stops burning the core).
  bool spin = false;
  if (spin_ && live) {
    if (idle_on_)
      spin = NowNs() / 1000 - last_progress_us_ <= spin_limit_us_;
    else
      spin = qp_->outstanding() > 0 || qp_->has_unsent();
  }
  int want = 0;
  if (live) {
    // While spinning the idle callback reads the socket itself: out of epoll, a target's send
    // does not run epoll's wake-up callback for every PDU (SPDK's host polls the same way).
    if (!spin) want = UV_READABLE;
    if (qp_->want_write()) want |= UV_WRITABLE;
  }
  if (poll_.data != nullptr && want != events_) {
    if (want == 0)
      uv_poll_stop(&poll_);
    else
      uv_poll_start(&poll_, want, OnPoll);
    events_ = want;
  }
  if (spin && !idle_on_) {
    last_progress_us_ = NowNs() / 1000;
    uv_idle_start(&idle_, OnIdle);
    idle_on_ = true;
  } else if (!spin && idle_on_) {
    uv_idle_stop(&idle_);
    idle_on_ = false;
  }
}

void UvQpairDriver::Run() {
  // on_event may call into JavaScript, which may free the queue pair (Close() is then deferred
  // to its handles' close callbacks, so `this` stays valid until we return).
  in_run_ = true;
  if (qp_->Process()) last_progress_us_ = NowNs() / 1000;
  if (on_event_ && !closing_) on_event_();
  in_run_ = false;
  Update();
}

void UvQpairDriver::OnPoll(uv_poll_t* h, int, int) {
  UvQpairDriver* d = static_cast<UvQpairDriver*>(h->data);
  if (d->closing_) return;
  d->Run();
}

void UvQpairDriver::OnIdle(uv_idle_t* h) {
  UvQpairDriver* d = static_cast<UvQpairDriver*>(h->data);
  if (d->closing_) return;
  d->Run();
}

void UvQpairDriver::Close() {
  if (closing_) return;
  // on_event_ may be running (it is what asked to close): it is destroyed with the driver.
  closing_ = true;
  if (poll_.data != nullptr) uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), OnClosed);
}

void UvQpairDriver::OnClosed(uv_handle_t* h) {
  UvQpairDriver* d = static_cast<UvQpairDriver*>(h->data);
  if (--d->open_ == 0) delete d;
}

}  // namespace nvme_host
}  // namespace spdk_node

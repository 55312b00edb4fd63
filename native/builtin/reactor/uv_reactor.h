// A reactor driven by the JS thread's libuv loop instead of a native thread: SPDK's model of
// the application thread polling its own queues. While it has work it runs once per loop
// iteration (uv_idle keeps the loop from blocking); when idle it stops the idle handle and
// lets libuv block on its epoll fd (uv_poll), so the kernel wakes it (eventfd kick, io_uring
// completion, socket readable).
#pragma once

#include <uv.h>

#include "reactor.h"

namespace spdk_node {

class UvReactor : public Reactor {
 public:
  UvReactor(uint32_t index, bool polling);
  ~UvReactor() override;
  // JS thread. Returns 0 or a negative libuv error.
  int Start(uv_loop_t* loop);
  // JS thread. Closes the libuv handles; the object is deleted once they are closed.
  void Close();
  // JS thread: make sure the loop runs us soon (work was queued from this thread).
  void Kick();
  // JS thread: runs after every iteration driven by libuv; the engine delivers completions of
  // JS-polled queues here, directly, without a thread-safe-function round trip.
  void SetAfterRun(std::function<void()> fn) { after_run_ = std::move(fn); }

 private:
  static void OnPoll(uv_poll_t* h, int status, int events);
  static void OnIdle(uv_idle_t* h);
  static void OnClosed(uv_handle_t* h);
  uv_poll_t poll_{};
  uv_idle_t idle_{};
  bool idle_active_ = false;
  bool started_ = false;
  int open_handles_ = 0;
  uint64_t last_busy_us_ = 0;
  std::function<void()> after_run_;
};

}  // namespace spdk_node

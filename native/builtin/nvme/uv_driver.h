// UvQpairDriver: runs a HostQpair from the JS thread's libuv loop (SPDK's model of an application
// thread polling its own queue pairs, as spdk_nvme_perf does).
//
//  - Idle, the socket is watched with uv_poll (readable; writable while sends are blocked or the
//    connection is being made), so an idle queue pair costs nothing: the kernel wakes the loop.
//  - With work to do (and `spin` on) a uv_idle handle keeps the loop from blocking and its
//    callback reads the socket directly on every loop iteration, as SPDK's pollers do; the socket
//    is out of epoll meanwhile, so the target's sends do not run epoll's wake-up callback for
//    every PDU (measured: ~8% of nvmf_tgt's core at 4 KiB QD 128). Spinning goes on until
//    `spin_limit_us` pass without progress, whether commands are out or not: a queue pair at
//    depth 1 stays out of epoll between commands, and a stuck target does not burn a core (the
//    loop blocks in epoll again; the next readable event or submission resumes spinning).
//
// JS thread only. The handles are unref'd: a queue pair never keeps the process alive (the
// engine does, while it runs).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>

#include "host_qpair.h"

namespace spdk_node {
namespace nvme_host {

class UvQpairDriver {
 public:
  // on_event runs after every Process() (with the qpair's new completions, state changes).
  static UvQpairDriver* Create(uv_loop_t* loop, HostQpair* qp, std::function<void()> on_event,
                               bool spin);
  // Re-arms the handles from the qpair's state (writable interest, spinning). Call after
  // submitting or flushing outside on_event.
  void Update();
  // Stops watching at once (the socket may be closed right after this returns) and closes the
  // handles; the driver deletes itself when libuv has closed them. on_event never runs again.
  void Close();
  void set_spin_limit_us(uint64_t us) { spin_limit_us_ = us; }

 private:
  UvQpairDriver() = default;
  ~UvQpairDriver() = default;
  void Run();
  static void OnPoll(uv_poll_t* h, int status, int events);
  static void OnIdle(uv_idle_t* h);
  static void OnClosed(uv_handle_t* h);

  HostQpair* qp_ = nullptr;
  std::function<void()> on_event_;
  uv_poll_t poll_{};
  uv_idle_t idle_{};
  int events_ = 0;
  bool idle_on_ = false;
  bool spin_ = false;
  bool closing_ = false;
  bool in_run_ = false;
  int open_ = 0;
  uint64_t spin_limit_us_ = 2000;
  uint64_t last_progress_us_ = 0;
};

}  // namespace nvme_host
}  // namespace spdk_node

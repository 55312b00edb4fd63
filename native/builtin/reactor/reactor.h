// Reactor: a poll loop that owns a set of pollers and receives messages from other threads.
//
// This is SPDK's spdk_thread/reactor idea, reduced to what the builtin engine needs:
//  - A reactor runs on one native thread pinned to one core (ThreadReactor), or is driven by
//    the JS thread's libuv loop (see uv_reactor.h), never both.
//  - Other threads talk to it only through Send() (an MPSC message queue) or through the
//    lockless rings that pollers drain; after publishing work they call Wake().
//  - Every poller, message and channel that belongs to a reactor is touched only on that
//    reactor's thread, so nothing on the I/O path takes a lock.
//  - Idle behaviour: in interrupt mode (the default) a reactor that found no work for a short
//    spin period blocks in epoll_wait on its event fd and on the fds pollers register (an
//    io_uring's eventfd, a socket), so an idle engine uses ~0% CPU. In polling mode it never
//    sleeps (benchmarks).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../../common/ring.h"

namespace spdk_node {

class Reactor;

// A poller returns true when it did work ("busy"); the reactor sleeps only after a spin period
// in which no poller was busy. A timed poller (period_us > 0) runs at most once per period.
struct Poller {
  std::function<bool()> fn;
  uint64_t period_us = 0;
  uint64_t next_run_us = 0;
  bool unregistered = false;
  std::string name;
};

struct ReactorMsg {
  std::function<void()> fn;
  std::atomic<ReactorMsg*> mpsc_next{nullptr};
};

class Reactor {
 public:
  Reactor(uint32_t index, int32_t core, bool polling);
  virtual ~Reactor();

  uint32_t index() const { return index_; }
  int32_t core() const { return core_; }
  bool polling() const { return polling_; }

  // Any thread. Runs fn on this reactor's thread, in order with other messages.
  void Send(std::function<void()> fn);
  // Any thread. Call after publishing work into a ring a poller of this reactor drains.
  // Cheap when the reactor is awake (one seq_cst load).
  void Wake();

  // Reactor thread only.
  Poller* RegisterPoller(std::string name, std::function<bool()> fn, uint64_t period_us = 0);
  void UnregisterPoller(Poller* p);
  // Reactor thread only. Adds fd to the set that wakes a sleeping reactor (EPOLLIN).
  // The fd's readiness must be cleared by a poller (e.g. by reading the eventfd).
  int AddWakeFd(int fd);
  void RemoveWakeFd(int fd);
  bool OnReactorThread() const;

  // Runs every due message and poller once; returns true if any did work. Reactor thread only.
  bool RunOnce();

  static uint64_t NowUs();
  uint64_t busy_iterations() const { return busy_iterations_.load(std::memory_order_relaxed); }
  uint64_t idle_sleeps() const { return idle_sleeps_.load(std::memory_order_relaxed); }

 protected:
  // Prepares to block: marks the reactor sleeping and runs one more check so no work published
  // before the mark is missed. Returns false if work appeared (the caller must not block).
  bool PrepareSleep();
  void FinishSleep();
  // Milliseconds until the next timed poller is due, or -1 for none.
  int NextTimeoutMs() const;
  void DrainEventFd();

  uint32_t index_;
  int32_t core_;
  bool polling_;
  int epoll_fd_ = -1;
  int event_fd_ = -1;
  std::thread::id thread_id_{};
  MpscQueue<ReactorMsg> msgs_;
  std::vector<Poller*> pollers_;
  bool pollers_dirty_ = false;
  alignas(64) std::atomic<bool> sleeping_{false};
  std::atomic<uint64_t> busy_iterations_{0};
  std::atomic<uint64_t> idle_sleeps_{0};
};

// A reactor on its own native thread, pinned to `core` (core < 0: not pinned).
class ThreadReactor : public Reactor {
 public:
  ThreadReactor(uint32_t index, int32_t core, bool polling);
  ~ThreadReactor() override;
  // Starts the thread; returns an error string (empty on success), e.g. when pinning fails.
  std::string Start();
  // Asks the loop to exit after draining its messages, then joins. Blocks the caller briefly.
  void StopAndJoin();
  // Asks the loop to exit; does not join.
  void RequestStop();
  void Join();

 private:
  void Loop();
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::string start_error_;
};

}  // namespace spdk_node

#include "reactor.h"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace spdk_node {

namespace {
// How long a reactor in interrupt mode keeps spinning after its last busy iteration before it
// blocks in epoll_wait. Long enough that a queue-depth-1 request/response loop stays on the
// fast path, short enough that an idle engine costs nothing measurable.
constexpr uint64_t kSpinBeforeSleepUs = 200;
}  // namespace

uint64_t Reactor::NowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000ull + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

Reactor::Reactor(uint32_t index, int32_t core, bool polling)
    : index_(index), core_(core), polling_(polling) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  event_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ >= 0 && event_fd_ >= 0) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.fd = event_fd_;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, event_fd_, &ev);
  }
}

Reactor::~Reactor() {
  for (Poller* p : pollers_) delete p;
  while (ReactorMsg* m = msgs_.Pop()) delete m;
  if (event_fd_ >= 0) close(event_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

void Reactor::Send(std::function<void()> fn) {
  ReactorMsg* m = new ReactorMsg();
  m->fn = std::move(fn);
  msgs_.Push(m);
  Wake();
}

void Reactor::Wake() {
  // Pairs with the seq_cst store + fence in PrepareSleep(): either the reactor sees the work we
  // published before this fence, or we see sleeping_ == true and kick its event fd.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed)) {
    uint64_t one = 1;
    ssize_t rc = write(event_fd_, &one, sizeof(one));
    (void)rc;
  }
}

bool Reactor::OnReactorThread() const { return std::this_thread::get_id() == thread_id_; }

Poller* Reactor::RegisterPoller(std::string name, std::function<bool()> fn, uint64_t period_us) {
  Poller* p = new Poller();
  p->name = std::move(name);
  p->fn = std::move(fn);
  p->period_us = period_us;
  p->next_run_us = period_us ? NowUs() + period_us : 0;
  pollers_.push_back(p);
  return p;
}

void Reactor::UnregisterPoller(Poller* p) {
  // Deferred: the poller may be unregistering itself from inside its own fn.
  p->unregistered = true;
  pollers_dirty_ = true;
}

int Reactor::AddWakeFd(int fd) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

void Reactor::RemoveWakeFd(int fd) { epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr); }

bool Reactor::RunOnce() {
  bool busy = false;
  // Bound the messages run per iteration so a flood of messages cannot starve the pollers.
  for (int i = 0; i < 64; i++) {
    ReactorMsg* m = msgs_.Pop();
    if (m == nullptr) break;
    m->fn();
    delete m;
    busy = true;
  }
  uint64_t now = 0;
  // Index loop: a poller may register another poller while running.
  for (size_t i = 0; i < pollers_.size(); i++) {
    Poller* p = pollers_[i];
    if (p->unregistered) continue;
    if (p->period_us) {
      if (now == 0) now = NowUs();
      if (now < p->next_run_us) continue;
      p->next_run_us = now + p->period_us;
    }
    if (p->fn()) busy = true;
  }
  if (pollers_dirty_) {
    pollers_dirty_ = false;
    auto it = std::remove_if(pollers_.begin(), pollers_.end(), [](Poller* p) {
      if (!p->unregistered) return false;
      delete p;
      return true;
    });
    pollers_.erase(it, pollers_.end());
  }
  if (busy) busy_iterations_.fetch_add(1, std::memory_order_relaxed);
  return busy;
}

bool Reactor::PrepareSleep() {
  sleeping_.store(true, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Work published before the producer read sleeping_ == false is visible now.
  if (RunOnce()) {
    sleeping_.store(false, std::memory_order_relaxed);
    return false;
  }
  idle_sleeps_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Reactor::FinishSleep() {
  sleeping_.store(false, std::memory_order_relaxed);
  DrainEventFd();
}

void Reactor::DrainEventFd() {
  uint64_t v;
  while (read(event_fd_, &v, sizeof(v)) > 0) {
  }
}

int Reactor::NextTimeoutMs() const {
  uint64_t next = UINT64_MAX;
  for (const Poller* p : pollers_) {
    if (!p->unregistered && p->period_us) next = std::min(next, p->next_run_us);
  }
  if (next == UINT64_MAX) return -1;
  uint64_t now = NowUs();
  if (next <= now) return 0;
  return static_cast<int>((next - now + 999) / 1000);
}

ThreadReactor::ThreadReactor(uint32_t index, int32_t core, bool polling)
    : Reactor(index, core, polling) {}

ThreadReactor::~ThreadReactor() { StopAndJoin(); }

std::string ThreadReactor::Start() {
  if (epoll_fd_ < 0 || event_fd_ < 0) return std::string("epoll/eventfd: ") + strerror(errno);
  std::atomic<int> started{0};
  thread_ = std::thread([this, &started]() {
    thread_id_ = std::this_thread::get_id();
    char name[16];
    snprintf(name, sizeof(name), "reactor_%u", index_);
    pthread_setname_np(pthread_self(), name);
    if (core_ >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(core_, &set);
      int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
      if (rc != 0) {
        start_error_ = "cannot pin reactor " + std::to_string(index_) + " to core " +
                       std::to_string(core_) + ": " + strerror(rc);
        started.store(-1, std::memory_order_release);
        return;
      }
    }
    started.store(1, std::memory_order_release);
    Loop();
  });
  while (started.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  if (started.load() < 0) {
    thread_.join();
    return start_error_;
  }
  return "";
}

void ThreadReactor::Loop() {
  uint64_t last_busy = NowUs();
  while (!stop_.load(std::memory_order_acquire)) {
    if (RunOnce()) {
      if (!polling_) last_busy = NowUs();
      continue;
    }
    if (polling_) continue;
    uint64_t now = NowUs();
    if (now - last_busy < kSpinBeforeSleepUs) continue;
    if (!PrepareSleep()) {
      last_busy = NowUs();
      continue;
    }
    if (stop_.load(std::memory_order_acquire)) {
      sleeping_.store(false);
      break;
    }
    struct epoll_event evs[16];
    epoll_wait(epoll_fd_, evs, 16, NextTimeoutMs());
    FinishSleep();
    last_busy = NowUs();
  }
  // Run what was sent before the stop request (e.g. channel teardown messages), bounded in
  // case a poller keeps reporting work.
  for (int i = 0; i < 1000 && RunOnce(); i++) {
  }
}

void ThreadReactor::RequestStop() {
  stop_.store(true, std::memory_order_release);
  // Unconditional kick: the loop may be about to block.
  uint64_t one = 1;
  ssize_t rc = write(event_fd_, &one, sizeof(one));
  (void)rc;
}

void ThreadReactor::Join() {
  if (thread_.joinable()) thread_.join();
}

void ThreadReactor::StopAndJoin() {
  RequestStop();
  Join();
}

}  // namespace spdk_node

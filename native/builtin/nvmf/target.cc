#include "target.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <thread>

#include "../../common/huge_map.h"
#include "../../common/nvme/spec.h"
#include "../reactor/reactor.h"
#include "tcp_conn.h"

namespace spdk_node {

// ---------------------------------------------------------------------------------------------
// Namespace, Subsystem, Controller

Namespace::Namespace(uint32_t nsid, Bdev* bdev) : nsid(nsid), bdev(bdev) { bdev->Ref(); }
Namespace::~Namespace() { bdev->Unref(); }

bool Subsystem::HostAllowed(const std::string& hostnqn) {
  if (allow_any_host) return true;
  return std::find(hosts.begin(), hosts.end(), hostnqn) != hosts.end();
}

bool Subsystem::ListenerAllowed(const ListenAddr& a) {
  // The discovery subsystem answers on every listener of the target (as SPDK's does).
  if (discovery) return true;
  return std::find(listeners.begin(), listeners.end(), a) != listeners.end();
}

Controller::Controller(std::shared_ptr<Subsystem> s, uint16_t cntlid, std::string hostnqn,
                       const uint8_t hid[16], uint32_t kato, const NvmfOpts& opts)
    : subsys(std::move(s)), cntlid(cntlid), hostnqn(std::move(hostnqn)),
      num_io_queues(opts.max_io_qpairs_per_ctrlr) {
  memcpy(hostid, hid, 16);
  kato_ms.store(kato, std::memory_order_relaxed);
  last_keep_alive_us.store(Reactor::NowUs(), std::memory_order_relaxed);
  // CAP: MQES (0's based), CQR (required for fabrics), TO in 500 ms units, CSS NVM.
  cap = static_cast<uint64_t>(opts.max_queue_depth - 1) | (1ull << 16) | (30ull << 24) |
        (1ull << 37);
  io.resize(opts.max_io_qpairs_per_ctrlr);
}

// ---------------------------------------------------------------------------------------------
// PollGroup

namespace {

constexpr uint64_t kListenerTag = 1ull << 63;
constexpr uint32_t kMinBufShift = 12;  // 4 KiB
constexpr size_t kBufCachePerClass = 64;  // for buffers larger than a chunk (malloc'd)

uint32_t SizeClass(uint32_t len, uint32_t* cap) {
  uint32_t c = 0;
  uint32_t sz = 1u << kMinBufShift;
  while (sz < len) {
    sz <<= 1;
    c++;
  }
  *cap = sz;
  return c;
}

std::string AddrString(const sockaddr_storage& ss, std::string* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *port = std::to_string(ntohs(a->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    *port = std::to_string(ntohs(a->sin6_port));
  }
  return buf;
}

}  // namespace

PollGroup::PollGroup(NvmfTarget* tgt, Reactor* reactor, uint32_t index)
    : tgt_(tgt), reactor_(reactor), index_(index) {
  name = "nvmf_tgt_poll_group_" + std::to_string(index);
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  buf_cache_.resize(24);
}

PollGroup::~PollGroup() {
  if (poller_ != nullptr) reactor_->UnregisterPoller(poller_);
  if (timer_ != nullptr) reactor_->UnregisterPoller(timer_);
  if (epfd_ >= 0) {
    reactor_->RemoveWakeFd(epfd_);
    close(epfd_);
  }
  for (auto& kv : channels_) delete kv.second.ch;
  for (size_t c = 0; c < buf_cache_.size(); c++) {
    if ((size_t{1} << (kMinBufShift + c)) <= kHugePageSize) continue;  // in a chunk
    for (uint8_t* b : buf_cache_[c]) free(b);
  }
  for (uint8_t* chunk : chunks_) UnmapHuge(chunk, kHugePageSize);
}

bool PollGroup::Reserve(uint32_t len) {
  if (reserved_ + len > budget_ || !buf_waiters_.empty()) return false;  // FIFO behind waiters
  reserved_ += len;
  return true;
}

void PollGroup::WaitForBuffer(uint64_t conn_id, uint16_t req_idx) {
  buf_waiters_.emplace_back(conn_id, req_idx);
}

void PollGroup::Release(uint32_t len) {
  reserved_ -= std::min<uint64_t>(len, reserved_);
  if (resuming_) return;  // the loop below picks up the room
  resuming_ = true;
  while (!buf_waiters_.empty()) {
    const auto [id, idx] = buf_waiters_.front();
    TcpConn* c = Find(id);
    if (c == nullptr || c->closing()) {
      buf_waiters_.pop_front();
      continue;
    }
    const uint32_t need = c->RequestLength(idx);
    if (reserved_ + need > budget_) break;
    buf_waiters_.pop_front();
    reserved_ += need;
    c->ResumeWithBuffer(idx);
  }
  resuming_ = false;
}

void PollGroup::Start() {
  poller_ = reactor_->RegisterPoller("nvmf_tcp", [this]() { return Poll(); });
  timer_ = reactor_->RegisterPoller("nvmf_timers", [this]() { return TimedChecks(); }, 100000);
  reactor_->AddWakeFd(epfd_);
}

void PollGroup::AddConnection(int fd, const ListenAddr& local, const ListenAddr& peer) {
  const uint64_t id = tgt_->NewConnId();
  TcpConn* c = new TcpConn(this, id, fd, local, peer);
  conns_[id] = c;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = id;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

TcpConn* PollGroup::Find(uint64_t id) {
  auto it = conns_.find(id);
  return it == conns_.end() ? nullptr : it->second;
}

void PollGroup::CloseConnection(uint64_t id) {
  TcpConn* c = Find(id);
  if (c != nullptr) c->Close("disconnected by the target");
}

void PollGroup::CloseAll() {
  for (auto& kv : conns_) kv.second->Close("target shutting down");
}

void PollGroup::WantFlush(TcpConn* c) {
  if (!c->want_flush) {
    c->want_flush = true;
    flush_.push_back(c);
  }
}

void PollGroup::WantRead(TcpConn* c) { again_.push_back(c->id()); }

void PollGroup::WatchWritable(TcpConn* c, bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | (on ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.u64 = c->id();
  epoll_ctl(epfd_, EPOLL_CTL_MOD, c->fd(), &ev);
}

void PollGroup::Unwatch(TcpConn* c) { epoll_ctl(epfd_, EPOLL_CTL_DEL, c->fd(), nullptr); }

void PollGroup::Destroyed(TcpConn* c) { dead_.push_back(c); }

BdevChannel* PollGroup::Channel(const std::shared_ptr<Namespace>& ns) {
  auto it = channels_.find(ns.get());
  if (it != channels_.end()) return it->second.ch;
  BdevChannel* ch = ns->bdev->CreateChannel(reactor_);
  channels_[ns.get()] = Chan{ns, ch};
  return ch;
}

uint8_t* PollGroup::GetBuffer(uint32_t len, uint32_t* cap) {
  const uint32_t c = SizeClass(len, cap);
  if (c < buf_cache_.size() && !buf_cache_[c].empty()) {
    uint8_t* b = buf_cache_[c].back();
    buf_cache_[c].pop_back();
    return b;
  }
  if (*cap > kHugePageSize) {
    void* p = nullptr;
    if (posix_memalign(&p, 4096, *cap) != 0) return nullptr;
    return static_cast<uint8_t*>(p);
  }
  if (chunk_left_ < *cap) {
    // What is left of the current chunk goes to the smaller classes' caches, then a new chunk.
    while (chunk_left_ >= (1u << kMinBufShift)) {
      uint32_t piece_cap;
      uint32_t pc = SizeClass(static_cast<uint32_t>(chunk_left_), &piece_cap);
      if (piece_cap > chunk_left_) piece_cap >>= 1, pc--;
      buf_cache_[pc].push_back(chunk_cur_);
      chunk_cur_ += piece_cap;
      chunk_left_ -= piece_cap;
    }
    int err = 0;
    uint8_t* chunk = MapHuge(kHugePageSize, &err);
    if (chunk == nullptr) return nullptr;
    chunks_.push_back(chunk);
    chunk_cur_ = chunk;
    chunk_left_ = kHugePageSize;
  }
  uint8_t* b = chunk_cur_;
  chunk_cur_ += *cap;
  chunk_left_ -= *cap;
  return b;
}

void PollGroup::PutBuffer(uint8_t* buf, uint32_t cap) {
  if (buf == nullptr) return;
  uint32_t c2;
  const uint32_t c = SizeClass(cap, &c2);
  if (c2 <= kHugePageSize || (c < buf_cache_.size() && buf_cache_[c].size() < kBufCachePerClass)) {
    buf_cache_[c].push_back(buf);
  } else {
    free(buf);
  }
}

bool PollGroup::Poll() {
  epoll_event evs[64];
  const int n = epoll_wait(epfd_, evs, 64, 0);
  bool busy = n > 0;
  if (!again_.empty()) {
    busy = true;
    std::vector<uint64_t> ids;
    ids.swap(again_);
    for (uint64_t id : ids) {
      TcpConn* c = Find(id);
      if (c != nullptr) c->OnReadable();
    }
  }
  for (int i = 0; i < n; i++) {
    const uint64_t tag = evs[i].data.u64;
    if (tag & kListenerTag) {
      tgt_->AcceptPoll();
      continue;
    }
    TcpConn* c = Find(tag);
    if (c == nullptr) continue;
    if (evs[i].events & EPOLLOUT) c->OnWritable();
    if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->OnReadable();
  }
  if (!flush_.empty()) {
    busy = true;
    // Flush may queue more (never re-adds during the loop: want_flush is cleared first).
    std::vector<TcpConn*> list;
    list.swap(flush_);
    for (TcpConn* c : list) {
      c->want_flush = false;
      c->Flush();
    }
  }
  if (!dead_.empty()) {
    std::vector<TcpConn*> list;
    list.swap(dead_);
    for (TcpConn* c : list) {
      conns_.erase(c->id());
      flush_.erase(std::remove(flush_.begin(), flush_.end(), c), flush_.end());
      delete c;
      tgt_->connections_.fetch_sub(1, std::memory_order_relaxed);
    }
    busy = true;
  }
  return busy;
}

bool PollGroup::TimedChecks() {
  const uint64_t now = Reactor::NowUs();
  std::vector<TcpConn*> list;
  for (auto& kv : conns_) list.push_back(kv.second);
  for (TcpConn* c : list) c->CheckTimers(now);
  // Channels of removed namespaces, once no request uses them (a request holds the
  // Namespace; the map holds one more reference).
  for (auto it = channels_.begin(); it != channels_.end();) {
    if (it->second.ns->removed.load(std::memory_order_acquire) && it->second.ns.use_count() == 1) {
      delete it->second.ch;
      it = channels_.erase(it);
    } else {
      ++it;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// NvmfTarget

NvmfTarget::NvmfTarget(std::vector<Reactor*> reactors) {
  for (size_t i = 0; i < reactors.size(); i++) {
    groups_.emplace_back(new PollGroup(this, reactors[i], static_cast<uint32_t>(i)));
  }
  for (auto& g : groups_) {
    PollGroup* pg = g.get();
    pg->reactor()->Send([pg]() { pg->Start(); });
  }
}

NvmfTarget::~NvmfTarget() = default;

int NvmfTarget::CreateTransport(const NvmfOpts& opts) {
  if (has_transport_) return -EEXIST;
  opts_ = opts;
  has_transport_ = true;
  // Each poll group's share of the transport's buffers (no connection exists yet: the first
  // arrives through a reactor message, after this).
  const uint64_t share = static_cast<uint64_t>(opts.num_shared_buffers) * opts.io_unit_size / groups_.size();
  for (auto& g : groups_) g->budget_ = std::max<uint64_t>(share, 2ull * opts.max_io_size);
  return 0;
}

PollGroup* NvmfTarget::NextGroup() {
  const uint32_t i = rr_.fetch_add(1, std::memory_order_relaxed);
  return groups_[i % groups_.size()].get();
}

int NvmfTarget::Listen(const ListenAddr& a) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& l : listeners_) {
      if (l->addr == a) return -EEXIST;
    }
  }
  char* end = nullptr;
  const unsigned long port = strtoul(a.trsvcid.c_str(), &end, 10);
  if (a.trsvcid.empty() || *end != '\0' || port > 65535) return -EINVAL;
  sockaddr_storage ss{};
  socklen_t sl = 0;
  int family = AF_INET;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, a.traddr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    sl = sizeof(*v4);
  } else if (inet_pton(AF_INET6, a.traddr.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    sl = sizeof(*v6);
  } else {
    return -EINVAL;
  }
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) != 0 || listen(fd, 512) != 0) {
    const int e = errno;
    close(fd);
    return -e;
  }
  auto l = std::make_shared<Listener>();
  l->addr = a;
  l->fd = fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    l->portid = next_portid_++;
    listeners_.push_back(l);
  }
  PollGroup* pg0 = groups_[0].get();
  pg0->reactor()->Send([pg0, l]() {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerTag | l->portid;
    epoll_ctl(pg0->epfd_, EPOLL_CTL_ADD, l->fd, &ev);
  });
  NotifyDiscoveryChanged();
  return 0;
}

int NvmfTarget::StopListen(const ListenAddr& a) {
  std::shared_ptr<Listener> l;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < listeners_.size(); i++) {
      if (listeners_[i]->addr == a) {
        l = listeners_[i];
        listeners_.erase(listeners_.begin() + static_cast<long>(i));
        break;
      }
    }
  }
  if (!l) return -ENOENT;
  // The socket is closed by reactor 0, which accepts on it, and the caller waits for that, so
  // the port is free again when this returns (a listener added back at once binds).
  struct Done {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
  };
  auto d = std::make_shared<Done>();
  PollGroup* pg0 = groups_[0].get();
  pg0->reactor()->Send([pg0, l, d]() {
    epoll_ctl(pg0->epfd_, EPOLL_CTL_DEL, l->fd, nullptr);
    close(l->fd);
    std::lock_guard<std::mutex> lock(d->m);
    d->done = true;
    d->cv.notify_one();
  });
  {
    std::unique_lock<std::mutex> lock(d->m);
    d->cv.wait_for(lock, std::chrono::seconds(2), [&]() { return d->done; });
  }
  NotifyDiscoveryChanged();
  return 0;
}

bool NvmfTarget::AcceptPoll() {
  std::vector<std::shared_ptr<Listener>> ls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ls = listeners_;
  }
  bool did = false;
  for (auto& l : ls) {
    for (int k = 0; k < 16; k++) {
      sockaddr_storage peer{};
      socklen_t pl = sizeof(peer);
      const int fd = accept4(l->fd, reinterpret_cast<sockaddr*>(&peer), &pl,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      did = true;
      if (connections_.load(std::memory_order_relaxed) >= opts_.max_connections) {
        // At the limit: the host sees the connection closed before ICResp; counted in
        // nvmfStats().refusedConnections.
        close(fd);
        refused_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      connections_.fetch_add(1, std::memory_order_relaxed);
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      sockaddr_storage local{};
      socklen_t ll = sizeof(local);
      getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll);
      ListenAddr la = l->addr;  // the listener's own address (as configured)
      ListenAddr pa;
      pa.traddr = AddrString(peer, &pa.trsvcid);
      PollGroup* pg = NextGroup();
      pg->reactor()->Send([pg, fd, la, pa]() { pg->AddConnection(fd, la, pa); });
    }
  }
  return did;
}

std::shared_ptr<Subsystem> NvmfTarget::FindSubsystem(const std::string& nqn) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : subsystems_) {
    if (s->nqn == nqn) return s;
  }
  return nullptr;
}

std::shared_ptr<Subsystem> NvmfTarget::GetOrCreateSubsystem(const std::string& nqn, bool discovery) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : subsystems_) {
    if (s->nqn == nqn) return s;
  }
  auto s = std::make_shared<Subsystem>(nqn, discovery);
  subsystems_.push_back(s);
  return s;
}

std::vector<std::shared_ptr<Subsystem>> NvmfTarget::Subsystems() {
  std::lock_guard<std::mutex> lock(mu_);
  return subsystems_;
}

void NvmfTarget::DisconnectController(const std::shared_ptr<Controller>& c) {
  std::vector<QpairRef> refs;
  {
    std::lock_guard<std::mutex> lock(c->mu);
    c->gone.store(true, std::memory_order_release);
    if (c->admin.pg != nullptr) refs.push_back(c->admin);
    for (const QpairRef& q : c->io) {
      if (q.pg != nullptr) refs.push_back(q);
    }
  }
  for (const QpairRef& q : refs) {
    PollGroup* pg = q.pg;
    const uint64_t id = q.id;
    pg->reactor()->Send([pg, id]() { pg->CloseConnection(id); });
  }
}

void NvmfTarget::DeleteSubsystem(const std::string& nqn, std::function<void()> done) {
  std::shared_ptr<Subsystem> s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < subsystems_.size(); i++) {
      if (subsystems_[i]->nqn == nqn) {
        s = subsystems_[i];
        subsystems_.erase(subsystems_.begin() + static_cast<long>(i));
        break;
      }
    }
  }
  if (!s) {
    done();
    return;
  }
  std::vector<std::shared_ptr<Controller>> ctrlrs;
  std::shared_ptr<const NsTable> ns;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->deleted = true;
    for (auto& kv : s->ctrlrs) ctrlrs.push_back(kv.second);
    ns = s->ns;
    s->ns = std::make_shared<NsTable>();
  }
  s->ns_gen.fetch_add(1, std::memory_order_release);
  if (ns) {
    for (auto& n : *ns) {
      if (n) n->removed.store(true, std::memory_order_release);
    }
  }
  for (auto& c : ctrlrs) DisconnectController(c);
  NotifyDiscoveryChanged();
  // Wait (off the JS thread's critical path: polled from a helper thread) until every
  // controller of the subsystem is gone.
  std::thread([s, done]() {
    for (int i = 0; i < 10000; i++) {
      {
        std::lock_guard<std::mutex> lock(s->mu);
        if (s->ctrlrs.empty()) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    done();
  }).detach();
}

void NvmfTarget::ToAdminQueues(const std::vector<std::shared_ptr<Controller>>& ctrlrs,
                               std::function<void(TcpConn*)> fn) {
  for (auto& c : ctrlrs) {
    QpairRef a;
    {
      std::lock_guard<std::mutex> lock(c->mu);
      a = c->admin;
    }
    if (a.pg == nullptr) continue;
    PollGroup* pg = a.pg;
    const uint64_t id = a.id;
    pg->reactor()->Send([pg, id, fn]() {
      TcpConn* conn = pg->Find(id);
      if (conn != nullptr) fn(conn);
    });
  }
}

void NvmfTarget::NotifyNsChanged(const std::shared_ptr<Subsystem>& s,
                                 const std::vector<uint32_t>& nsids) {
  std::vector<std::shared_ptr<Controller>> ctrlrs;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    for (auto& kv : s->ctrlrs) ctrlrs.push_back(kv.second);
  }
  ToAdminQueues(ctrlrs, [nsids](TcpConn* conn) {
    conn->NoteChangedNs(nsids);
    // Notice: namespace attribute changed, log page 04h.
    conn->PostAsyncEvent(nvme::kAecNsAttrNotices,
                         nvme::kAerTypeNotice | (nvme::kAerInfoNsAttrChanged << 8) |
                             (static_cast<uint32_t>(nvme::lid::kChangedNsList) << 16));
  });
}

void NvmfTarget::NotifyDiscoveryChanged() {
  discovery_genctr_.fetch_add(1, std::memory_order_acq_rel);
  std::vector<std::shared_ptr<Controller>> ctrlrs;
  for (auto& s : Subsystems()) {
    if (!s->discovery) continue;
    std::lock_guard<std::mutex> lock(s->mu);
    for (auto& kv : s->ctrlrs) ctrlrs.push_back(kv.second);
  }
  ToAdminQueues(ctrlrs, [](TcpConn* conn) {
    conn->PostAsyncEvent(nvme::kAecDiscoveryLogNotices,
                         nvme::kAerTypeNotice | (nvme::kAerInfoDiscoveryLogChanged << 8) |
                             (static_cast<uint32_t>(nvme::lid::kDiscovery) << 16));
  });
}

std::vector<uint8_t> NvmfTarget::DiscoveryLog(const std::string& hostnqn) {
  using namespace nvme::disc;
  std::vector<std::shared_ptr<Listener>> ls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ls = listeners_;
  }
  std::vector<uint8_t> log(kHeaderLen, 0);
  uint64_t numrec = 0;
  for (auto& s : Subsystems()) {
    std::lock_guard<std::mutex> lock(s->mu);
    if (s->deleted || !s->HostAllowed(hostnqn)) continue;
    for (const ListenAddr& a : s->listeners) {
      uint16_t portid = 0;
      for (auto& l : ls) {
        if (l->addr == a) portid = l->portid;
      }
      log.resize(log.size() + kEntryLen, 0);
      uint8_t* e = log.data() + kHeaderLen + numrec * kEntryLen;
      e[kTrtype] = kTrtypeTcp;
      e[kAdrfam] = a.traddr.find(':') != std::string::npos ? kAdrfamIpv6 : kAdrfamIpv4;
      e[kSubtype] = s->discovery ? kSubtypeCurrentDiscovery : kSubtypeNvme;
      e[kTreq] = kTreqSecureChannelNotRequired;
      nvme_tcp::Put16(e + kPortid, portid);
      nvme_tcp::Put16(e + kCntlid, 0xFFFF);
      nvme_tcp::Put16(e + kAsqsz, static_cast<uint16_t>(opts_.max_aq_depth));
      if (s->discovery) nvme_tcp::Put16(e + kEflags, kEflagsDupRetInfo | kEflagsEpcsd);
      memset(e + kTrsvcid, ' ', 32);
      memcpy(e + kTrsvcid, a.trsvcid.data(), std::min<size_t>(a.trsvcid.size(), 32));
      memcpy(e + kSubnqn, s->nqn.data(), std::min<size_t>(s->nqn.size(), 255));
      memset(e + kTraddr, ' ', 256);
      memcpy(e + kTraddr, a.traddr.data(), std::min<size_t>(a.traddr.size(), 256));
      // TSAS for TCP: SECTYPE 0 (no security), the rest reserved.
      numrec++;
    }
  }
  nvme_tcp::Put64(log.data() + kGenctr, discovery_genctr());
  nvme_tcp::Put64(log.data() + kNumrec, numrec);
  nvme_tcp::Put16(log.data() + kRecfmt, 0);
  return log;
}

void NvmfTarget::Shutdown() {
  std::vector<std::shared_ptr<Listener>> ls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ls.swap(listeners_);
  }
  PollGroup* pg0 = groups_[0].get();
  pg0->reactor()->Send([pg0, ls]() {
    for (auto& l : ls) {
      epoll_ctl(pg0->epfd_, EPOLL_CTL_DEL, l->fd, nullptr);
      close(l->fd);
    }
  });
  // State shared with the reactors' messages (it outlives a timed-out wait here).
  struct Wait {
    std::mutex m;
    std::condition_variable cv;
    size_t answered = 0;
    size_t remaining = 0;
  };
  auto w = std::make_shared<Wait>();
  std::vector<PollGroup*> pgs;
  for (auto& g : groups_) pgs.push_back(g.release());  // from here on deleted by their reactors
  groups_.clear();
  auto round = [&](bool destroy) {
    {
      std::lock_guard<std::mutex> lock(w->m);
      w->answered = 0;
      w->remaining = 0;
    }
    for (PollGroup* pg : pgs) {
      pg->reactor()->Send([pg, w, destroy]() {
        size_t left;
        if (destroy) {
          delete pg;
          left = 0;
        } else {
          pg->CloseAll();
          left = pg->connection_count();
        }
        std::lock_guard<std::mutex> lock(w->m);
        w->answered++;
        w->remaining += left;
        w->cv.notify_one();
      });
    }
    std::unique_lock<std::mutex> lock(w->m);
    w->cv.wait_for(lock, std::chrono::seconds(5), [&]() { return w->answered == pgs.size(); });
    return w->answered == pgs.size() ? w->remaining : SIZE_MAX;
  };
  // Close every connection and wait until they are gone (in-flight bdev I/O drains first).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (round(false) != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  round(true);
}

}  // namespace spdk_node

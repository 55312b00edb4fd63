// The builtin engine's NVMe-oF target over NVMe/TCP (SPDK's lib/nvmf idea, written afresh).
//
// Objects and threads:
//  - NvmfTarget: one per engine. Its configuration (transport options, subsystems, listen
//    sockets) is changed on the JS thread by the RPC layer, which owns the model and mirrors it
//    here (lib/engine/native.ts: nvmf*).
//  - Subsystem: configuration behind a mutex, read by connections only at Connect, at
//    namespace-table refreshes (a generation counter tells them) and for the discovery log.
//  - PollGroup: one per thread reactor. Owns the connections (qpairs) assigned to it, an epoll
//    set of their sockets, the bdev channels its qpairs use, and a data-buffer cache. Nothing a
//    poll group owns is touched by another thread; other threads reach it only through
//    Reactor::Send() and look connections up by id (a closed one is simply not found).
//  - TcpConn: one NVMe/TCP connection = one queue pair. Reactor-local: receive, command
//    execution, bdev I/O and sends happen on its poll group's reactor without locks.
//  - Controller: created by an admin-queue Connect; shared (shared_ptr) by its admin qpair and
//    I/O qpairs, which may live on different reactors. Its registers are atomics; its qpair
//    table is behind a mutex (Connect and teardown only).
// Listening sockets are accepted on reactor 0; each new connection goes to the next poll group
// round-robin, as SPDK's target assigns new qpairs.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../bdev/bdev.h"

namespace spdk_node {

class Reactor;
class PollGroup;
class TcpConn;
class NvmfTarget;

struct NvmfOpts {
  uint32_t max_queue_depth = 128;
  uint32_t max_io_qpairs_per_ctrlr = 127;
  uint32_t in_capsule_data_size = 4096;
  uint32_t max_io_size = 131072;
  uint32_t io_unit_size = 131072;
  uint32_t max_aq_depth = 128;
  bool c2h_success = true;
  uint32_t num_shared_buffers = 511;
  // spdk-node's own limit: TCP connections open at once (any state); more are refused at accept.
  uint32_t max_connections = 1024;
};

// A connection must finish ICReq and Fabrics Connect within this long, or it is closed (a host
// that opens connections and sends nothing cannot hold connection slots).
constexpr uint64_t kConnectTimeoutUs = 10 * 1000 * 1000;

struct ListenAddr {
  std::string traddr, trsvcid;
  bool operator==(const ListenAddr& o) const { return traddr == o.traddr && trsvcid == o.trsvcid; }
};

// An exported namespace: immutable once created; holds a reference on its bdev.
struct Namespace {
  Namespace(uint32_t nsid, Bdev* bdev);
  ~Namespace();
  Namespace(const Namespace&) = delete;
  Namespace& operator=(const Namespace&) = delete;

  uint32_t nsid;
  Bdev* bdev;
  uint8_t uuid[16] = {0}, nguid[16] = {0}, eui64[8] = {0};
  bool has_uuid = false, has_nguid = false, has_eui64 = false;
  // Set when the namespace leaves its subsystem: poll groups drop their channel once idle.
  std::atomic<bool> removed{false};
};
using NsTable = std::vector<std::shared_ptr<Namespace>>;  // index nsid-1; null = inactive

class Controller;

class Subsystem {
 public:
  Subsystem(std::string nqn, bool discovery) : nqn(std::move(nqn)), discovery(discovery) {}
  const std::string nqn;
  const bool discovery;

  std::mutex mu;  // guards everything below
  std::string sn, mn;
  bool allow_any_host = false;
  std::vector<std::string> hosts;
  std::vector<ListenAddr> listeners;
  std::shared_ptr<const NsTable> ns = std::make_shared<NsTable>();
  uint32_t max_namespaces = 0;
  uint16_t min_cntlid = 1, max_cntlid = 0xFFEF;
  uint16_t next_cntlid = 1;
  std::map<uint16_t, std::shared_ptr<Controller>> ctrlrs;
  bool deleted = false;
  // Bumped (release) after every namespace-table change; qpairs compare it per command.
  std::atomic<uint64_t> ns_gen{0};

  bool HostAllowed(const std::string& hostnqn);  // mu held
  bool ListenerAllowed(const ListenAddr& a);  // mu held
};

// Where a qpair lives: its poll group and id there.
struct QpairRef {
  PollGroup* pg = nullptr;
  uint64_t id = 0;
  ListenAddr local, peer;  // for nvmf_subsystem_get_qpairs
};

class Controller {
 public:
  Controller(std::shared_ptr<Subsystem> subsys, uint16_t cntlid, std::string hostnqn,
             const uint8_t hostid[16], uint32_t kato_ms, const NvmfOpts& opts);

  const std::shared_ptr<Subsystem> subsys;
  const uint16_t cntlid;
  const std::string hostnqn;
  uint8_t hostid[16];

  std::atomic<uint32_t> cc{0};
  std::atomic<uint32_t> csts{0};
  std::atomic<uint64_t> last_keep_alive_us{0};
  std::atomic<uint32_t> kato_ms{0};
  std::atomic<bool> gone{false};  // torn down: new I/O connects fail
  uint64_t cap = 0;
  uint32_t vs = 0x00010400;  // NVMe 1.4, as SPDK's target reports

  std::mutex mu;  // guards the fields below
  uint32_t num_io_queues;  // granted by Set Features Number of Queues (1-based)
  QpairRef admin;
  std::vector<QpairRef> io;  // index qid-1
  int io_count = 0;

  // Admin reactor only.
  uint32_t async_event_config = 0;
  uint32_t temp_threshold = 0x0157;
  std::vector<uint32_t> changed_ns;  // pending Changed Namespace List entries
  bool changed_ns_overflow = false;
};

// A counter written only by its poll group's reactor and read by any thread: a plain
// load + store, so the I/O path pays no locked instruction for statistics.
struct GroupCounter {
  std::atomic<uint64_t> v{0};
  void Add(int64_t d) { v.store(v.load(std::memory_order_relaxed) + d, std::memory_order_relaxed); }
  uint64_t Get() const { return v.load(std::memory_order_relaxed); }
};

// Statistics of one poll group (SPDK's nvmf_get_stats).
struct PollGroupStats {
  GroupCounter admin_qpairs, io_qpairs, current_admin_qpairs, current_io_qpairs, pending_bdev_io,
      completed_nvme_io;
  GroupCounter data_copies;  // bytes of command data copied (out of receive buffers)
  // Connections closed for not completing Connect in time, and by keep-alive expiry.
  GroupCounter connect_timeouts, keep_alive_timeouts;
};

class PollGroup {
 public:
  PollGroup(NvmfTarget* tgt, Reactor* reactor, uint32_t index);
  ~PollGroup();  // reactor thread, after every connection is gone
  // Reactor thread.
  void Start();
  void AddConnection(int fd, const ListenAddr& local, const ListenAddr& peer);
  void CloseConnection(uint64_t id);
  void CloseAll();
  TcpConn* Find(uint64_t id);
  // A connection has data to send: flush it at the end of this poll iteration.
  void WantFlush(TcpConn* c);
  // A connection has received bytes still to parse: run it again on the next poll.
  void WantRead(TcpConn* c);
  void WatchWritable(TcpConn* c, bool on);
  void Unwatch(TcpConn* c);
  // The bdev channel for a namespace on this reactor (created on first use).
  BdevChannel* Channel(const std::shared_ptr<Namespace>& ns);
  // Data buffers (4 KiB aligned), cached per size class.
  uint8_t* GetBuffer(uint32_t len, uint32_t* cap);
  void PutBuffer(uint8_t* buf, uint32_t cap);
  // The budget of data-transfer bytes in flight (SPDK's num_shared_buffers x io_unit_size,
  // shared out over the poll groups). Reserve fails when it is spent; WaitForBuffer queues a
  // request that Release resumes (in order) once there is room.
  bool Reserve(uint32_t len);
  void Release(uint32_t len);
  void WaitForBuffer(uint64_t conn_id, uint16_t req_idx);
  void Destroyed(TcpConn* c);  // a closed connection finished draining

  Reactor* reactor() const { return reactor_; }
  NvmfTarget* target() const { return tgt_; }
  uint32_t index() const { return index_; }
  size_t connection_count() const { return conns_.size(); }
  PollGroupStats stats;
  std::string name;

 private:
  bool Poll();
  bool TimedChecks();

  NvmfTarget* tgt_;
  Reactor* reactor_;
  uint32_t index_;
  int epfd_ = -1;
  struct Poller* poller_ = nullptr;
  struct Poller* timer_ = nullptr;
  std::unordered_map<uint64_t, TcpConn*> conns_;
  std::vector<TcpConn*> flush_;
  std::vector<uint64_t> again_;  // ids (a connection may be gone by the next poll)
  std::vector<TcpConn*> dead_;
  struct Chan {
    std::shared_ptr<Namespace> ns;
    BdevChannel* ch;
  };
  std::unordered_map<Namespace*, Chan> channels_;
  std::vector<std::vector<uint8_t*>> buf_cache_;  // by size class
  // Buffers up to 2 MiB are carved from 2 MiB chunks on huge pages (the kernel's copy into and
  // out of the socket then pays no 4 KiB page walks), kept for the poll group's life: a freed
  // buffer goes back to its class's cache, so the chunks hold at most the peak in use.
  std::vector<uint8_t*> chunks_;
  uint8_t* chunk_cur_ = nullptr;
  size_t chunk_left_ = 0;
  uint64_t budget_ = 0, reserved_ = 0;
  std::deque<std::pair<uint64_t, uint16_t>> buf_waiters_;
  bool resuming_ = false;
  friend class NvmfTarget;  // registers listening sockets in group 0's epoll set
};

class NvmfTarget {
 public:
  NvmfTarget(std::vector<Reactor*> reactors);
  ~NvmfTarget();

  // JS thread.
  int CreateTransport(const NvmfOpts& opts);  // 0 or -EEXIST
  const NvmfOpts& opts() const { return opts_; }
  // Listen/unlisten: 0 or a negative errno.
  int Listen(const ListenAddr& a);
  int StopListen(const ListenAddr& a);
  std::shared_ptr<Subsystem> FindSubsystem(const std::string& nqn);
  std::shared_ptr<Subsystem> GetOrCreateSubsystem(const std::string& nqn, bool discovery);
  // Removes the subsystem and disconnects its controllers; `done` runs on the JS thread... via
  // the caller's poster once every qpair is gone.
  void DeleteSubsystem(const std::string& nqn, std::function<void()> done);
  std::vector<std::shared_ptr<Subsystem>> Subsystems();
  // Namespace change notices to every controller of `s` (s->mu not held).
  void NotifyNsChanged(const std::shared_ptr<Subsystem>& s, const std::vector<uint32_t>& nsids);
  // Discovery log change notices to every discovery controller.
  void NotifyDiscoveryChanged();
  // Disconnects `ctrlr` entirely (admin and I/O qpairs). Any thread.
  void DisconnectController(const std::shared_ptr<Controller>& c);
  // Stops everything (JS thread, reactors still running): blocks until connections are gone.
  void Shutdown();

  // Any thread.
  PollGroup* NextGroup();
  PollGroup* group(uint32_t i) const { return groups_[i].get(); }
  size_t group_count() const { return groups_.size(); }
  uint64_t NewConnId() { return next_conn_id_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t discovery_genctr() const { return discovery_genctr_.load(std::memory_order_acquire); }
  // TCP connections open (accepted and not yet destroyed), and those refused at the limit.
  uint32_t connections() const { return connections_.load(std::memory_order_relaxed); }
  uint64_t refused_connections() const { return refused_.load(std::memory_order_relaxed); }

  // Builds the discovery log for `hostnqn` (any thread).
  std::vector<uint8_t> DiscoveryLog(const std::string& hostnqn);

 private:
  struct Listener {
    ListenAddr addr;
    int fd = -1;
    uint16_t portid = 0;
  };
  bool AcceptPoll();
  // Runs fn on each controller's admin queue (on its reactor; skipped if it is gone).
  void ToAdminQueues(const std::vector<std::shared_ptr<Controller>>& ctrlrs,
                     std::function<void(TcpConn*)> fn);

  std::vector<std::unique_ptr<PollGroup>> groups_;
  NvmfOpts opts_;
  bool has_transport_ = false;
  std::mutex mu_;  // subsystems_, listeners_
  std::vector<std::shared_ptr<Subsystem>> subsystems_;
  std::vector<std::shared_ptr<Listener>> listeners_;  // reactor 0 accepts; guarded by mu_
  uint16_t next_portid_ = 0;
  std::atomic<uint32_t> rr_{0};
  std::atomic<uint64_t> next_conn_id_{1};
  std::atomic<uint64_t> discovery_genctr_{0};
  std::atomic<uint32_t> connections_{0};
  std::atomic<uint64_t> refused_{0};
  struct Poller* accept_poller_ = nullptr;
  friend class PollGroup;
};

}  // namespace spdk_node

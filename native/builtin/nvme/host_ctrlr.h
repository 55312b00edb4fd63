// HostCtrlr: an NVMe-oF controller as the builtin host sees it, over NVMe/TCP: the admin queue
// pair, the controller's initialisation, admin commands, keep-alive, reset and shutdown.
//
// Initialisation (NVMe-oF 1.1 3.5 and NVMe base 2.0 3.5.2, what SPDK's nvme_ctrlr state machine
// does for fabrics): TCP connect, ICReq/ICResp, Fabrics Connect on qid 0 with CNTLID 0xFFFF
// (the target picks the controller), Property Get CAP and VS, Property Set CC (EN=1, 64-byte
// SQEs, 16-byte CQEs), Property Get CSTS until RDY (within CAP.TO), Identify Controller; for an
// I/O controller also Set Features Number of Queues, Identify the active namespace list and each
// namespace (and its identification descriptors). Then Keep Alive every KATO/2.
//
// JS thread only, driven by libuv (UvQpairDriver on the admin socket, one timer). No N-API here:
// callbacks are C++ functions, run outside the qpair's receive path, each inside `run_js` (the
// N-API wrapper opens a JS callback scope there).
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host_qpair.h"
#include "uv_driver.h"

namespace spdk_node {
namespace nvme_host {

struct CtrlrOptions {
  sockaddr_storage addr{};
  socklen_t addrlen = 0;
  std::string where;  // "traddr:trsvcid", for messages
  std::string subnqn, hostnqn;
  uint8_t hostid[16] = {0};
  uint32_t kato_ms = 10000;
  uint32_t admin_queue_size = 32;
  bool hdgst = false, ddgst = false;
  uint8_t hpda = 0;
  uint32_t io_queues = 1;  // asked for with Set Features Number of Queues
  bool discovery = false;
  uint32_t connect_timeout_ms = 10000;
  // Admin commands not answered within this long fail the admin queue (0: never).
  uint32_t admin_timeout_ms = 0;
};

struct NsData {
  uint32_t nsid = 0;
  uint32_t lba_size = 0;  // 0: not usable for I/O (unknown format)
  uint64_t nsze = 0;
  std::vector<uint8_t> id;  // Identify Namespace, 4096 bytes
  std::vector<uint8_t> desc;  // identification descriptors, 4096 bytes (empty if not supported)
};

// An Asynchronous Event the controller reported (its log page already read, which re-arms it).
struct AsyncEvent {
  uint8_t type = 0;  // 0 error, 1 SMART/health, 2 notice, 6 I/O command set specific, 7 vendor
  uint8_t info = 0;  // e.g. notice 0: namespace attribute changed
  uint8_t log_page = 0;
  std::vector<uint32_t> nsids;  // Changed Namespace List (notice 0)
  std::string error;  // the namespace refresh failed (the old data stays)
};

class HostCtrlr : public HostQpair::Owner {
 public:
  // err: 0 or a positive errno; status: the NVMe status of the failing command, when there is
  // one (the Connect's, for a refused connection), with its DW0.
  using Done = std::function<void(int err, const std::string& msg, int32_t status, uint32_t dw0)>;
  using AdminCb = std::function<void(int32_t status, const uint8_t* cqe, std::vector<uint8_t> data)>;

  HostCtrlr(uv_loop_t* loop, const CtrlrOptions& o);
  ~HostCtrlr() override;
  // How callbacks are run (the N-API wrapper opens a callback scope). Default: directly.
  void set_run_js(std::function<void(const std::function<void()>&)> f) { run_js_ = std::move(f); }

  // Called (inside run_js) for every asynchronous event, after the namespaces were re-read for a
  // namespace notice.
  void set_event_cb(std::function<void(const AsyncEvent&)> f) { event_cb_ = std::move(f); }
  // Connects and initialises; done is called once.
  void Start(Done done);
  // An admin command: `sqe` with opcode, NSID and CDWs (CID, PSDT and SGL are set here); `len`
  // bytes of data to the controller (`h2c`, the bytes in `data`) or from it. Returns 0 (cb will
  // be called exactly once) or a negative errno (cb never called).
  int Admin(const uint8_t sqe[64], std::vector<uint8_t> data, uint32_t len, bool h2c, AdminCb cb);
  // Drops the admin connection, connects and initialises a new controller (new CNTLID).
  void Reset(Done done);
  // Normal shutdown (CC.SHN, waits for CSTS.SHST), then closes. done is called once.
  void Detach(Done done);
  // Closes at once: outstanding admin commands fail with -ECANCELED. The object may be deleted
  // right after (its libuv handles close on their own).
  void Close();

  bool ready() const { return ready_; }
  bool failed() const { return admin_ == nullptr || admin_->failed(); }
  std::string failure() const { return admin_ ? admin_->error() : "closed"; }
  const CtrlrOptions& options() const { return opts_; }
  uint16_t cntlid() const { return admin_ ? admin_->cntlid() : 0xFFFF; }
  uint64_t cap() const { return cap_; }
  uint32_t vs() const { return vs_; }
  const std::vector<uint8_t>& identify() const { return identify_; }
  const std::vector<NsData>& namespaces() const { return ns_; }
  const NsData* ns(uint32_t nsid) const;
  uint32_t io_queues_granted() const { return io_queues_granted_; }
  // Largest data transfer per command (MDTS), 0 = no limit.
  uint32_t max_xfer() const { return max_xfer_; }
  // Write data carried in the capsule on I/O queues (IOCCSZ * 16 - 64).
  uint32_t in_capsule_limit() const { return in_capsule_limit_; }
  // Entries an I/O queue may have (CAP.MQES + 1).
  uint32_t max_queue_entries() const { return static_cast<uint32_t>(cap_ & 0xFFFF) + 1; }
  const HostQpair::Stats* admin_stats() const { return admin_ ? &admin_->stats() : nullptr; }
  uv_loop_t* loop() const { return loop_; }

  // Owner.
  void OnRequestDone(HostRequest* r) override;
  void OnStateChange(QpairState s) override;

 private:
  struct Slot {
    AdminCb cb;
    std::vector<uint8_t> buf;
    bool busy = false;
  };
  struct Pending {
    uint8_t sqe[64];
    std::vector<uint8_t> data;
    uint32_t len;
    bool h2c;
    AdminCb cb;
  };
  void Launch(uint16_t slot, const uint8_t sqe[64], std::vector<uint8_t> data, uint32_t len, bool h2c, AdminCb cb);
  void OnEvent();
  void Dispatch();
  void StartTimer(uint64_t ms, std::function<void()> fn);
  static void OnTimer(uv_timer_t* t);
  static void OnKeepAliveTimer(uv_timer_t* t);
  void Connect();
  void Teardown(int err, const std::string& why, int32_t status);
  // Initialisation steps.
  void InitFail(int err, const std::string& msg, int32_t status = 0, uint32_t dw0 = 0);
  void InitCap();
  void InitEnable();
  void PollCsts(uint64_t deadline_us, bool shutdown, Done done);
  void InitIdentify();
  void InitQueues();
  void InitNsList();
  using NsDone = std::function<void(int32_t status, const std::string& what)>;
  void ReadNamespaces(NsDone done);
  void ReadNextNs(size_t i, std::vector<uint32_t> list, std::shared_ptr<std::vector<NsData>> out, NsDone done);
  void InitAer();
  void SubmitAer();
  void OnAsyncEvent(uint32_t dw0);
  void InitDone();
  void PropGet(uint32_t ofst, bool size8, std::function<void(int32_t, uint64_t)> cb);
  void PropSet(uint32_t ofst, uint64_t value, bool size8, std::function<void(int32_t)> cb);
  void IdentifyCmd(uint8_t cns, uint32_t nsid, std::function<void(int32_t, std::vector<uint8_t>)> cb);
  void KeepAlive();
  void CheckTimeouts();

  uv_loop_t* loop_;
  CtrlrOptions opts_;
  std::function<void(const std::function<void()>&)> run_js_;
  std::unique_ptr<HostQpair> admin_;
  UvQpairDriver* driver_ = nullptr;
  std::vector<Slot> slots_;
  std::vector<uint16_t> free_;
  std::deque<Pending> pending_;
  std::vector<uint16_t> done_;
  bool started_init_ = false;  // Connect answered: run the next step after Process()
  bool initializing_ = false;
  bool ready_ = false;
  bool closed_ = false;
  Done init_done_;
  // One-shot step timer (CSTS polling, connect deadline) and the keep-alive/timeout timer.
  uv_timer_t* timer_ = nullptr;
  std::function<void()> timer_fn_;
  uv_timer_t* ka_timer_ = nullptr;
  bool ka_outstanding_ = false;
  uint64_t last_ka_us_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  uint64_t cap_ = 0;
  uint32_t vs_ = 0;
  std::vector<uint8_t> identify_;
  std::vector<NsData> ns_;
  std::function<void(const AsyncEvent&)> event_cb_;
  uint32_t incarnation_ = 0;  // bumped when initialisation completes (events of an older one are dropped)
  static constexpr uint32_t kEventLogBytes = 4096;
  uint32_t io_queues_granted_ = 0;
  uint32_t max_xfer_ = 0;
  uint32_t in_capsule_limit_ = 0;
};

}  // namespace nvme_host
}  // namespace spdk_node

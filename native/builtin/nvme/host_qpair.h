// HostQpair: one NVMe/TCP queue pair of the builtin engine's host (initiator), the other end of
// native/builtin/nvmf/tcp_conn.h. Written from the NVMe/TCP transport and NVMe-oF specifications.
//
// It is the transport only: a non-blocking socket, the ICReq/ICResp exchange, Fabrics Connect,
// a request table (CID = index) and the PDUs that move commands and data. It knows no thread:
// its owner (the JS thread's event loop, or a reactor) calls Process() when the socket may have
// work and Flush() after submitting, always from one thread. Nothing here allocates per I/O:
// requests are preallocated, send items come from a pool that only grows to its high-water mark.
//
// Data never goes through an intermediate buffer on the way out: a write's data is sent from
// the request's buffer (in-capsule, or H2CData PDUs answering the target's R2Ts, at most
// MAXH2CDATA bytes each) with sendmsg iovecs. On the way in, C2HData is read into the request's
// buffer: with large reads outstanding the socket is read header by header so the data lands in
// place (readv); with only small transfers it is read in 64 KiB gulps and small payloads are
// copied out of that staging buffer, which costs less than a system call per PDU
// (copied_bytes() counts them).
//
// Completion: a request is done when its completion is known (CapsuleResp, or the last
// C2HData with SUCCESS) and no queued PDU still references its data. The owner hears of it in
// Owner::OnRequestDone, inside Process()/Flush()/Fail(); the request stays the owner's until it
// submits it again.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../../common/nvme_tcp/pdu.h"

namespace spdk_node {
namespace nvme_host {

// A completed request's status, one int32 (the value JavaScript sees in a completion ring):
//   0     success
//   > 0   the NVMe status field: CQE DW3 bits 31:17, i.e. SC in bits 0-7, SCT in 8-10, CRD 11-12,
//         More 13, DNR 14 (SPDK's struct spdk_nvme_status without the phase bit)
//   < 0   -errno: the command has no NVMe completion (transport lost, qpair freed, timed out)
inline int32_t NvmeStatus(uint8_t sct, uint8_t sc, bool dnr = false) {
  return static_cast<int32_t>(sc) | (static_cast<int32_t>(sct & 7) << 8) | (dnr ? 1 << 14 : 0);
}
int32_t StatusFromCqe(const uint8_t cqe[16]);

struct QpairOptions {
  uint16_t qid = 0;
  // 0xFFFF on the admin queue asks for a dynamic controller; I/O queues name the admin's.
  uint16_t cntlid = 0xFFFF;
  // Queue entries; Connect's SQSIZE is this minus one, and at most this minus one commands are
  // on the wire at once (one slot of a queue always stays empty).
  uint32_t queue_size = 32;
  // Requests (CIDs 0..depth-1). Requests beyond queue_size - 1 wait here, in order.
  uint32_t depth = 31;
  uint32_t kato_ms = 0;  // admin queue: Keep Alive Timeout given at Connect
  bool hdgst = false, ddgst = false;
  uint8_t hpda = 0;  // host PDU data alignment asked for in ICReq ((hpda+1)*4 bytes; 0 = none)
  bool disable_sq_flow_control = false;
  // Write data up to this many bytes goes in the command capsule; larger writes wait for R2T.
  uint32_t in_capsule_limit = 8192;
  std::string subnqn, hostnqn;
  uint8_t hostid[16] = {0};
};

enum class QpairState : uint8_t { kIdle, kConnecting, kIcWait, kConnectWait, kReady, kFailed };
const char* QpairStateName(QpairState s);

struct HostRequest {
  enum class St : uint8_t { kIdle, kQueued, kActive, kDone };
  uint16_t cid = 0;
  St state = St::kIdle;
  uint8_t sqe[64];
  uint8_t cqe[16];
  // The command's data: `len` bytes at `data`, to the controller (h2c) or from it (c2h).
  uint8_t* data = nullptr;
  uint32_t len = 0;
  bool h2c = false, c2h = false;
  bool in_capsule = false;
  bool large = false;  // a large read: the socket is read header by header while it is out
  bool resp = false;  // the completion is known
  bool digest_error = false;
  bool timed_out = false;  // owner's mark (see CheckTimeouts)
  uint32_t c2h_done = 0;  // bytes of C2HData received
  uint32_t h2c_next = 0;  // the next R2T offset expected
  uint32_t sends = 0;  // queued send items that reference `data`
  int32_t status = 0;
  uint64_t start_us = 0;
  HostRequest* next = nullptr;  // FIFO of requests waiting for room on the wire
  void* ctx = nullptr;  // the owner's
  uint64_t user = 0;  // the owner's
};

class HostQpair : public nvme_tcp::PduReceiver::Sink {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    // A request is done (r->status says how). Called inside Process(), Flush() or Fail(); do
    // not call into this qpair from here except to read it.
    virtual void OnRequestDone(HostRequest* r) = 0;
    // kReady (Connect succeeded) or kFailed (see error(), connect_status()).
    virtual void OnStateChange(QpairState s) = 0;
  };

  HostQpair(const QpairOptions& o, Owner* owner);
  ~HostQpair() override;
  HostQpair(const HostQpair&) = delete;
  HostQpair& operator=(const HostQpair&) = delete;

  // Starts connecting (non-blocking); the handshake then runs in Process(). Returns 0 or a
  // negative errno (the state is then kFailed).
  int Connect(const struct sockaddr* addr, socklen_t len);
  // Makes every step the socket allows now: finishes connecting, receives and handles PDUs,
  // sends what is queued. Returns true when anything happened.
  bool Process();
  // Sends queued PDUs (one sendmsg for many).
  void Flush();

  HostRequest* request(uint16_t cid) { return &reqs_[cid]; }
  uint32_t depth() const { return static_cast<uint32_t>(reqs_.size() - 1); }
  // Queues request r (filled by the owner: sqe opcode/nsid/cdws, data, len, h2c/c2h). Sets the
  // CID, PSDT and SGL. The PDUs go out on the next Flush().
  void Submit(HostRequest* r);

  // Ends the connection (shutdown; the descriptor stays open until CloseSocket() or the
  // destructor, so that an event loop watching it can stop first): every request not done
  // completes with `status` (0: -err; requests marked timed_out: -ETIMEDOUT). No-op once failed.
  void Fail(int err, const std::string& why, int32_t status = 0);
  void CloseSocket();
  // After a failure: closes the socket and makes the queue pair connectable again (a
  // controller reset), to controller `cntlid`. Every request is idle.
  void Reset(uint16_t cntlid);

  int fd() const { return fd_; }
  QpairState state() const { return state_; }
  bool ready() const { return state_ == QpairState::kReady; }
  bool failed() const { return state_ == QpairState::kFailed; }
  // The socket has bytes queued that it would not take (or is still connecting).
  bool want_write() const { return want_write_ || state_ == QpairState::kConnecting; }
  bool has_unsent() const { return sendq_head_ != nullptr; }
  const std::string& error() const { return error_; }
  int error_errno() const { return error_errno_; }
  // The Connect command's status and DW0 when the target refused it (status > 0).
  int32_t connect_status() const { return connect_status_; }
  uint32_t connect_dw0() const { return connect_dw0_; }
  uint16_t cntlid() const { return cntlid_; }
  uint16_t qid() const { return opts_.qid; }
  const QpairOptions& options() const { return opts_; }
  const nvme_tcp::Params& params() const { return params_; }
  uint32_t maxh2cdata() const { return maxh2cdata_; }
  void set_in_capsule_limit(uint32_t n) { opts_.in_capsule_limit = n; }
  // Requests submitted and not yet done (on the wire or waiting for room).
  uint32_t outstanding() const { return outstanding_; }
  // Active requests (on the wire) started before `before_us` and not yet marked timed out are
  // marked and appended to out.
  void CheckTimeouts(uint64_t before_us, std::vector<HostRequest*>* out);

  struct Stats {
    uint64_t pdus_sent = 0, pdus_received = 0, sendmsg_calls = 0, recv_calls = 0;
    uint64_t copied_bytes = 0;  // C2H data copied out of the staging buffer
    uint64_t direct_bytes = 0;  // C2H data read straight into request buffers
  };
  const Stats& stats() const { return stats_; }

  // Sink.
  bool OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                nvme_tcp::ProtocolError* err) override;
  bool OnPdu(const uint8_t* hdr, bool data_digest_ok) override;

 private:
  struct SendItem {
    uint8_t hdr[nvme_tcp::kMaxHeaderOut];
    uint32_t hdr_len = 0;
    const uint8_t* data = nullptr;
    uint32_t data_len = 0;
    uint8_t ddgst[4];
    bool has_ddgst = false;
    uint32_t sent = 0;
    HostRequest* req = nullptr;  // whose data this item references
    SendItem* next = nullptr;
  };

  void StartIc();
  bool HandleICResp(const uint8_t* hdr);
  void SendConnect();
  void HandleConnectResp(const uint8_t* cqe);
  bool HandleR2T(const uint8_t* hdr);
  void Launch(HostRequest* r);
  void MaybeFinish(HostRequest* r);
  void Finish(HostRequest* r);
  void Receive();
  void Fatal(uint16_t fes, uint32_t fei, const std::string& why);
  SendItem* NewItem();
  void Enqueue(SendItem* it);
  void FreeSendQueue();
  HostRequest* ActiveByCid(uint16_t cid);

  QpairOptions opts_;
  Owner* owner_;
  int fd_ = -1;
  QpairState state_ = QpairState::kIdle;
  std::string error_;
  int error_errno_ = 0;
  int32_t connect_status_ = 0;
  uint32_t connect_dw0_ = 0;
  uint16_t cntlid_ = 0xFFFF;
  nvme_tcp::PduReceiver rx_;
  nvme_tcp::Params params_;
  uint32_t maxh2cdata_ = 0;
  std::vector<uint8_t> staging_;
  size_t staged_ = 0, staged_off_ = 0;
  std::vector<HostRequest> reqs_;  // depth + 1: the last one is the Connect command
  uint8_t connect_data_[1024];
  HostRequest* cur_ = nullptr;  // whose C2HData is being received
  uint32_t outstanding_ = 0;
  uint32_t on_wire_ = 0;
  uint32_t wire_limit_ = 1;
  uint32_t large_reads_ = 0;
  HostRequest* wait_head_ = nullptr;
  HostRequest* wait_tail_ = nullptr;
  SendItem* sendq_head_ = nullptr;
  SendItem* sendq_tail_ = nullptr;
  std::vector<SendItem*> free_items_;
  std::vector<SendItem*> all_items_;
  bool want_write_ = false;
  Stats stats_;
};

}  // namespace nvme_host
}  // namespace spdk_node

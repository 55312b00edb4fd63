// One NVMe/TCP connection (queue pair) of the builtin target. Reactor-local: see target.h.
//
// Receive: bytes go through the PDU codec (native/common/nvme_tcp). Small reads go into a
// staging buffer and are parsed from there; once a PDU's header has said where its data goes
// (a request's buffer), the rest of the data is read straight into it (readv), so large writes
// land in the buffer the bdev writes from without a copy.
// Send: headers are built into per-item storage; data is sent from the request's buffer (the
// one the bdev read into). Everything queued in one poll iteration goes out in one sendmsg.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../common/nvme_tcp/pdu.h"
#include "../bdev/bdev.h"
#include "target.h"

namespace spdk_node {

class TcpConn : public nvme_tcp::PduReceiver::Sink {
 public:
  TcpConn(PollGroup* pg, uint64_t id, int fd, const ListenAddr& local, const ListenAddr& peer);
  ~TcpConn() override;

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  int qid() const { return qid_; }
  bool closing() const { return closing_; }
  const ListenAddr& local() const { return local_; }
  const ListenAddr& peer() const { return peer_; }
  const std::shared_ptr<Controller>& ctrlr() const { return ctrlr_; }

  // Poll group calls.
  void OnReadable();
  void OnWritable();
  void Flush();
  // Starts closing: no more receive; the connection is destroyed once its bdev I/O drained.
  void Close(const char* why);
  bool Drained() const { return closing_ && outstanding_io_ == 0; }
  // The poll group's buffer budget has room again for request `idx` (waiting in kWaitBuffer);
  // it has reserved the request's length already.
  void ResumeWithBuffer(uint16_t idx);
  uint32_t RequestLength(uint16_t idx) const { return reqs_[idx].len; }
  // Aborts command `cid` if it has not started moving data (an AER, a command waiting for a
  // buffer); true when it was aborted.
  bool AbortQueued(uint16_t cid);
  // The Abort command `idx` (this admin queue) learnt its answer from another reactor.
  void FinishAbort(uint16_t idx, bool aborted);
  // Connect deadline (kConnectTimeoutUs after accept) and, on an admin qpair, keep-alive expiry
  // (now in us); true if it closed.
  bool CheckTimers(uint64_t now_us);
  // Admin qpair: queue an asynchronous event (type/info/log page packed as in CQE dw0).
  void PostAsyncEvent(uint32_t kind_bit, uint32_t dw0);
  void NoteChangedNs(const std::vector<uint32_t>& nsids);

  // Sink.
  bool OnHeader(const uint8_t* hdr, uint32_t data_len, struct iovec* iov, int* iovcnt,
                nvme_tcp::ProtocolError* err) override;
  bool OnPdu(const uint8_t* hdr, bool data_digest_ok) override;

  bool want_flush = false;

 private:
  enum class ReqState : uint8_t { kFree, kRecvCapsule, kWaitBuffer, kWaitH2C, kExecuting, kSending };
  struct Request {
    TcpConn* conn = nullptr;
    uint16_t idx = 0;
    ReqState state = ReqState::kFree;
    uint8_t sqe[64];
    uint8_t cqe[16];
    uint16_t cid = 0;
    uint8_t* buf = nullptr;  // data buffer (from the poll group cache)
    uint32_t buf_cap = 0;
    uint32_t len = 0;  // data length of the command
    uint32_t reserved = 0;  // bytes reserved from the poll group's buffer budget
    uint32_t h2c_offset = 0;  // next expected H2CData offset
    bool digest_error = false;
    bool c2h = false;  // data goes to the host
    uint8_t* buf2 = nullptr;  // compare: the bdev's data
    uint32_t buf2_cap = 0;
    BdevIo io;
    struct iovec iov;
    uint32_t dsm_next = 0, dsm_count = 0;  // dataset management ranges
    BdevChannel* ch = nullptr;
    std::shared_ptr<Namespace> ns;
  };
  struct SendItem {
    uint8_t hdr[nvme_tcp::kMaxHeaderOut];
    uint32_t hdr_len = 0;
    const uint8_t* data = nullptr;
    uint32_t data_len = 0;
    uint8_t ddgst[4];
    bool has_ddgst = false;
    uint32_t sent = 0;  // bytes of this item already written
    Request* release = nullptr;  // freed once the item is fully written
    bool close_after = false;
  };

  // Connection setup.
  bool HandleICReq(const uint8_t* hdr);
  // Commands.
  Request* AllocRequest();
  void FreeRequest(Request* r);
  void StartCommand(Request* r);
  // Buffer reserved: send the R2T (host-to-controller data) or execute (controller-to-host).
  void StartTransfer(Request* r);
  void ReleaseBuffers(Request* r);
  void Execute(Request* r);
  void ExecuteFabrics(Request* r);
  void ExecuteAdmin(Request* r);
  void ExecuteIo(Request* r);
  void Connect(Request* r);
  void ConnectAdmin(Request* r, const std::shared_ptr<Subsystem>& s, const uint8_t* data);
  void ConnectIo(Request* r, const std::shared_ptr<Subsystem>& s, const uint8_t* data);
  void PropertyGet(Request* r);
  void PropertySet(Request* r);
  void Identify(Request* r);
  void GetLogPage(Request* r);
  void GetFeatures(Request* r);
  void SetFeatures(Request* r);
  void AsyncEventRequest(Request* r);
  void Abort(Request* r);
  void CompleteAsyncEvent(uint32_t dw0);
  // I/O.
  bool LookupNs(Request* r, uint32_t nsid);
  void SubmitBdev(Request* r, IoType type, uint64_t lba, uint64_t nblocks, uint8_t* data);
  static void OnBdevDone(BdevIo* io, int status, void* ctx);
  void BdevDone(Request* r, int status);
  void DsmNext(Request* r);
  void RefreshNamespaces();
  // Completion.
  void SetStatus(Request* r, uint8_t sct, uint8_t sc, bool dnr = false);
  void Complete(Request* r);  // sends data (host-bound) and the response, then frees
  void SendData(Request* r, const uint8_t* data, uint32_t len, bool success_flag);
  // Data buffer of `len` bytes for r (returns false when too large).
  bool EnsureBuffer(Request* r, uint32_t len);
  SendItem* NewItem();
  void Fatal(uint16_t fes, uint32_t fei);

  PollGroup* pg_;
  NvmfTarget* tgt_;
  uint64_t id_;
  int fd_;
  ListenAddr local_, peer_;
  nvme_tcp::PduReceiver rx_;
  nvme_tcp::Params params_;
  std::vector<uint8_t> staging_;
  size_t staged_ = 0, staged_off_ = 0;
  bool closing_ = false;
  bool writable_watch_ = false;
  int r2t_large_ = 0;  // R2Ts outstanding for large transfers (see OnReadable)

  uint64_t accepted_us_;
  int qid_ = -1;  // -1 until Connect
  std::shared_ptr<Controller> ctrlr_;
  std::shared_ptr<Subsystem> subsys_;
  uint32_t sqsize_ = 0;  // 1-based queue size
  uint32_t sq_head_ = 0;
  bool sq_flow_disabled_ = false;
  std::vector<Request> reqs_;
  std::vector<uint16_t> free_reqs_;
  Request* cur_ = nullptr;  // request whose capsule or H2C data is being received
  uint32_t outstanding_io_ = 0;

  std::deque<SendItem*> sendq_;
  std::vector<SendItem*> free_items_;

  // Namespaces as of the subsystem's generation ns_gen_.
  std::shared_ptr<const NsTable> ns_;
  uint64_t ns_gen_ = ~0ull;
  std::vector<BdevChannel*> ns_ch_;

  // Admin qpair: outstanding AERs (request indexes).
  std::vector<Request*> aers_;
  uint32_t event_dw0_[8];
  int events_queued_ = 0;
};

}  // namespace spdk_node

// What both engines' NvmeQpair classes (native/builtin/nvme/js_qpair.cc on our NVMe/TCP host,
// native/libspdk/nvme/js_qpair.cc on SPDK's driver) share between JavaScript and the queue's
// owner: the command slots, the descriptor array, the {cid, status} completion queue and the
// armed wait of reap(ring, n, true).
//
// A slot (its index is the CID JavaScript never sees) is busy from submit() until JavaScript has
// reaped its completion, so the completion queue (capacity >= depth) never overflows and a buffer
// is in flight exactly until its completion is handed over. JS thread, except Push(), which runs
// on the queue's owner (the JS thread or a reactor) and publishes with a release store.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "../dma_buffer.h"
#include "host_desc.h"

namespace spdk_node {
namespace nvme_host {

struct HostSlot {
  int32_t tag = 0;
  bool busy = false;
  uint8_t op = 0;
  uint32_t nsid = 0;
  uint32_t count = 0;  // blocks or ranges, as in the descriptor
  uint32_t flags = 0;
  uint64_t lba = 0;
  DmaBuffer* buf = nullptr;
  uint64_t off = 0, len = 0;  // the byte range of buf this command uses
  HostSlot* prev = nullptr;   // in buf->host_io
  HostSlot* next = nullptr;
};

// The arguments of reap(ring: Int32Array, pending: number, wait: boolean).
struct ReapArgs {
  int32_t* ring = nullptr;
  uint32_t cap = 0;  // {tag, status} pairs the ring holds
  uint32_t pending = 0;
  bool wait = false;
};
ReapArgs ParseReapArgs(const Napi::CallbackInfo& info);

// The `depth` of new NvmeQpair(ctrlr, { depth, ... }, onReady), for sizing what the constructor
// builds before it validates its arguments: 1 when missing or out of range (then refused).
uint32_t QpairDepthArg(const Napi::CallbackInfo& info);

class HostSlots {
 public:
  explicit HostSlots(uint32_t depth);
  ~HostSlots();
  HostSlots(const HostSlots&) = delete;
  HostSlots& operator=(const HostSlots&) = delete;

  uint32_t depth() const { return depth_; }
  // Submitted by JavaScript and not reaped yet.
  uint32_t in_flight() const { return in_flight_; }
  HostSlot& slot(uint16_t cid) { return slots_[cid]; }
  uint16_t cid_of(const HostSlot* s) const { return static_cast<uint16_t>(s - slots_.data()); }
  const double* desc(uint32_t i) const { return desc_ + static_cast<size_t>(i) * kNdWords; }
  // The descriptor array as JavaScript writes it (`desc` on the NvmeQpair object).
  Napi::Float64Array DescArray(Napi::Env env);

  // Prepares descriptors 0..count-1 with prepare(desc, &cid, &msg) -> 0 or a positive errno; on
  // the first failure releases what it took and throws an SpdkError with its `index`. Returns the
  // CIDs, in order (valid until the next call).
  template <class Prepare>
  const std::vector<uint16_t>& PrepareBatch(Napi::Env env, uint32_t count, const char* op, Prepare prepare) {
    if (count > depth_) ThrowBatch(env, "more descriptors than the qpair's depth", EINVAL, op, -1);
    batch_.clear();
    for (uint32_t i = 0; i < count; i++) {
      std::string msg;
      uint16_t cid = 0;
      const int rc = prepare(desc(i), &cid, &msg);
      if (rc != 0) {
        for (size_t j = batch_.size(); j > 0; j--) Release(batch_[j - 1]);
        ThrowBatch(env, msg, rc, op, static_cast<int>(i));
      }
      batch_.push_back(cid);
    }
    in_flight_ += count;
    return batch_;
  }

  // Takes a free slot for a parsed command with payload [off, off + len) of buf (null: none):
  // EBUSY when that range overlaps a command in flight on the buffer, EAGAIN when depth commands
  // are in flight; else 0 and *cid (the buffer gets an I/O reference).
  int Take(const NvmeIoHead& h, DmaBuffer* buf, uint64_t off, uint64_t len, uint16_t* cid, std::string* msg);
  // Frees a slot (its buffer reference dropped).
  void Release(uint16_t cid);

  // The owner's thread: a command's completion (status: NVMe status or a negative errno).
  void Push(uint16_t cid, int32_t status) {
    const uint32_t tail = cq_tail_.load(std::memory_order_relaxed);
    uint32_t* e = cq_ + static_cast<size_t>(tail & cq_mask_) * 2;
    e[0] = cid;
    e[1] = static_cast<uint32_t>(status);
    cq_tail_.store(tail + 1, std::memory_order_release);
  }
  // The owner's thread: the status of the completion queue's entries pushed since `from` (a
  // tail()), for rewriting them before JavaScript sees them.
  uint32_t tail() const { return cq_tail_.load(std::memory_order_acquire); }
  int32_t* status_at(uint32_t i) { return reinterpret_cast<int32_t*>(cq_ + static_cast<size_t>(i & cq_mask_) * 2 + 1); }

  bool has_completions() const { return cq_head_ != cq_tail_.load(std::memory_order_acquire); }
  // Copies up to cap completions into ring as {tag, status} pairs and frees their slots.
  uint32_t CopyOut(int32_t* ring, uint32_t cap);

  // The armed wait: reap(ring, n, true) found nothing while commands were in flight.
  bool armed() const { return armed_; }
  void Arm(napi_env env, napi_value ring, int32_t* ptr, uint32_t cap);
  void Disarm();
  // Copies what is ready into the armed ring, disarms and calls onReady(count); nothing when not
  // armed or nothing is ready. An exception from onReady is reported as uncaught.
  void Deliver(napi_env env, napi_value on_ready);
  // The end of reap(): copies what is ready into args' ring; arms the wait when nothing was and
  // args.wait asks for it with commands in flight. Returns the count copied.
  uint32_t Collect(napi_env env, napi_value ring, const ReapArgs& args);

 private:
  [[noreturn]] static void ThrowBatch(Napi::Env env, const std::string& msg, int err, const char* op, int index);

  napi_env env_ = nullptr;
  uint32_t depth_;
  std::vector<HostSlot> slots_;
  std::vector<uint16_t> free_;
  std::vector<uint16_t> batch_;
  uint32_t in_flight_ = 0;
  double* desc_ = nullptr;
  uint32_t* cq_ = nullptr;  // {cid, status} pairs
  uint32_t cq_mask_ = 0;
  uint32_t cq_head_ = 0;
  alignas(64) std::atomic<uint32_t> cq_tail_{0};

  bool armed_ = false;
  napi_ref ring_ref_ = nullptr;
  int32_t* ring_ptr_ = nullptr;
  uint32_t ring_cap_ = 0;
};

}  // namespace nvme_host
}  // namespace spdk_node

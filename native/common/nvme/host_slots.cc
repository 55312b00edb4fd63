#include "host_slots.h"

#include <cerrno>

#include "../napi_util.h"

namespace spdk_node {
namespace nvme_host {

ReapArgs ParseReapArgs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      napi_get_typedarray_info(env, info[0], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array || length < 2)
    ThrowSpdkError(env, "reap(ring) needs an Int32Array of at least 2 elements", EINVAL, "nvme.reap");
  ReapArgs a;
  a.ring = static_cast<int32_t*>(data);
  a.cap = static_cast<uint32_t>(length / 2);
  a.pending = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  a.wait = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  return a;
}

uint32_t QpairDepthArg(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsObject()) return 1;
  Napi::Value v = info[1].As<Napi::Object>().Get("depth");
  if (!v.IsNumber()) return 1;
  const uint32_t d = v.As<Napi::Number>().Uint32Value();
  return d == 0 || d > 65535 ? 1 : d;
}

HostSlots::HostSlots(uint32_t depth) : depth_(depth), slots_(depth) {
  free_.reserve(depth);
  for (uint32_t i = depth; i > 0; i--) free_.push_back(static_cast<uint16_t>(i - 1));
  batch_.reserve(depth);
  uint32_t cap = 1;
  while (cap < depth) cap <<= 1;
  cq_mask_ = cap - 1;
  desc_ = new double[static_cast<size_t>(depth) * kNdWords]();
  cq_ = new uint32_t[static_cast<size_t>(cap) * 2]();
}

HostSlots::~HostSlots() {
  if (ring_ref_ != nullptr) napi_delete_reference(env_, ring_ref_);
  delete[] desc_;
  delete[] cq_;
}

Napi::Float64Array HostSlots::DescArray(Napi::Env env) {
  return Napi::Float64Array::New(env, static_cast<size_t>(depth_) * kNdWords,
                                 ExternalArrayBuffer(env, desc_, sizeof(double) * depth_ * kNdWords), 0);
}

void HostSlots::ThrowBatch(Napi::Env env, const std::string& msg, int err, const char* op, int index) {
  Napi::Error e = MakeSpdkError(env, msg, err, op);
  if (index >= 0) e.Set("index", Napi::Number::New(env, index));
  throw e;
}

int HostSlots::Take(const NvmeIoHead& h, DmaBuffer* buf, uint64_t off, uint64_t len, uint16_t* cid, std::string* msg) {
  if (buf != nullptr) {
    if (int err = CheckNoOverlap(static_cast<const HostSlot*>(buf->host_io), off, len, msg)) return err;
  }
  if (free_.empty()) {
    *msg = "the qpair has " + std::to_string(depth_) + " I/Os in flight (its depth)";
    return EAGAIN;
  }
  const uint16_t c = free_.back();
  free_.pop_back();
  HostSlot& s = slots_[c];
  s.busy = true;
  s.tag = h.tag;
  s.op = static_cast<uint8_t>(h.op);
  s.nsid = h.nsid;
  s.count = h.count;
  s.flags = h.flags;
  s.lba = h.lba;
  s.buf = buf;
  s.off = off;
  s.len = len;
  s.prev = nullptr;
  s.next = nullptr;
  if (buf != nullptr) {
    HostSlot* head = static_cast<HostSlot*>(buf->host_io);
    s.next = head;
    if (head != nullptr) head->prev = &s;
    buf->host_io = &s;
    buf->IoRef();
  }
  *cid = c;
  return 0;
}

void HostSlots::Release(uint16_t cid) {
  HostSlot& s = slots_[cid];
  if (s.buf != nullptr) {
    if (s.prev != nullptr)
      s.prev->next = s.next;
    else
      s.buf->host_io = s.next;
    if (s.next != nullptr) s.next->prev = s.prev;
    s.buf->IoUnref();
    s.buf = nullptr;
  }
  s.prev = s.next = nullptr;
  s.busy = false;
  free_.push_back(cid);
}

uint32_t HostSlots::CopyOut(int32_t* ring, uint32_t cap) {
  const uint32_t tail = cq_tail_.load(std::memory_order_acquire);
  uint32_t n = 0;
  while (cq_head_ != tail && n < cap) {
    const uint32_t* e = cq_ + static_cast<size_t>(cq_head_ & cq_mask_) * 2;
    const uint16_t cid = static_cast<uint16_t>(e[0]);
    ring[2 * n] = slots_[cid].tag;
    ring[2 * n + 1] = static_cast<int32_t>(e[1]);
    Release(cid);
    cq_head_++;
    n++;
  }
  in_flight_ -= n;
  return n;
}

void HostSlots::Arm(napi_env env, napi_value ring, int32_t* ptr, uint32_t cap) {
  Disarm();
  env_ = env;
  napi_create_reference(env, ring, 1, &ring_ref_);
  ring_ptr_ = ptr;
  ring_cap_ = cap;
  armed_ = true;
}

void HostSlots::Disarm() {
  if (ring_ref_ != nullptr) napi_delete_reference(env_, ring_ref_);
  ring_ref_ = nullptr;
  ring_ptr_ = nullptr;
  ring_cap_ = 0;
  armed_ = false;
}

void HostSlots::Deliver(napi_env env, napi_value on_ready) {
  if (!armed_ || !has_completions()) return;
  const uint32_t n = CopyOut(ring_ptr_, ring_cap_);
  Disarm();
  napi_value recv, arg;
  napi_get_undefined(env, &recv);
  napi_create_uint32(env, n, &arg);
  if (napi_call_function(env, recv, on_ready, 1, &arg, nullptr) == napi_pending_exception) {
    napi_value ex;
    napi_get_and_clear_last_exception(env, &ex);
    napi_fatal_exception(env, ex);
  }
}

uint32_t HostSlots::Collect(napi_env env, napi_value ring, const ReapArgs& a) {
  // Every reap replaces the armed wait: afterwards it is armed (on this ring) exactly when nothing
  // was ready, `wait` was asked and commands are in flight. lib/nvme/qpair.ts mirrors this rule.
  Disarm();
  const uint32_t n = CopyOut(a.ring, a.cap);
  if (n == 0 && a.wait && in_flight_ > 0) Arm(env, ring, a.ring, a.cap);
  return n;
}

}  // namespace nvme_host
}  // namespace spdk_node

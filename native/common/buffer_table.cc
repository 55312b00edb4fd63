#include "buffer_table.h"

#include <cerrno>
#include <cmath>

#include "napi_util.h"

namespace spdk_node {

namespace {

constexpr double kGenScale = 16777216.0;  // id = generation * 2^24 + slot
constexpr uint32_t kMaxSlots = 0xffffff;

// The ArrayBuffer was collected (JS thread; also at env teardown).
void FinalizeBuffer(napi_env env, void* /*data*/, void* hint) {
  DmaBuffer* b = static_cast<DmaBuffer*>(hint);
  const size_t len = b->len;
  if (b->ReleaseOwner()) {
    int64_t ignored;
    napi_adjust_external_memory(env, -static_cast<int64_t>(len), &ignored);
  }
  b->Finalize();
}

// A buffer that never reached JavaScript: drop the owner and the finalizer references.
void Discard(DmaBuffer* b) {
  b->ReleaseOwner();
  b->Finalize();
}

}  // namespace

Napi::Object BufferTable::Add(Napi::Env env, DmaBuffer* b, const std::string& op) {
  // Reuse a slot: first the free list, then slots whose ArrayBuffer was collected.
  if (free_slots_.empty()) {
    for (uint32_t i = 0; i < entries_.size(); i++) {
      if (entries_[i].buf != nullptr && entries_[i].buf->owner_released.load()) Release(env, i, false);
    }
  }
  uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    if (entries_.size() >= kMaxSlots) {
      Discard(b);
      ThrowSpdkError(env, "too many live buffers", ENOMEM, op);
    }
    index = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  Entry& e = entries_[index];
  e.gen = (e.gen + 1) & 0x1fffffff;
  e.buf = b;
  b->obj_refs.fetch_add(1);  // the table's reference; dropped by Release

  napi_value ab;
  if (napi_create_external_arraybuffer(env, b->data, b->len, FinalizeBuffer, b, &ab) != napi_ok) {
    e.buf = nullptr;
    free_slots_.push_back(index);
    b->obj_refs.fetch_sub(1);
    Discard(b);
    ThrowSpdkError(env, "cannot create an external ArrayBuffer", ENOMEM, op);
  }
  napi_create_reference(env, ab, 0, &e.ab_ref);
  int64_t ignored;
  napi_adjust_external_memory(env, static_cast<int64_t>(b->len), &ignored);

  Napi::Object out = Napi::Object::New(env);
  out.Set("id", Napi::Number::New(env, static_cast<double>(e.gen) * kGenScale + index));
  out.Set("buffer", Napi::Value(env, ab));
  out.Set("hugepage", Napi::Boolean::New(env, b->hugepage));
  return out;
}

DmaBuffer* BufferTable::Lookup(double id) const {
  if (!(id >= 0) || std::floor(id) != id) return nullptr;
  const uint64_t v = static_cast<uint64_t>(id);
  const uint32_t index = static_cast<uint32_t>(v & kMaxSlots);
  const uint32_t gen = static_cast<uint32_t>(v >> 24);
  if (index >= entries_.size()) return nullptr;
  const Entry& e = entries_[index];
  if (e.buf == nullptr || e.gen != gen || e.buf->owner_released.load(std::memory_order_acquire)) return nullptr;
  return e.buf;
}

void BufferTable::Free(Napi::Env env, double id, const std::string& op) {
  DmaBuffer* b = Lookup(id);
  if (b == nullptr) ThrowSpdkError(env, "buffer already freed", EBADF, op);
  if (b->InFlight() > 0) {
    ThrowSpdkError(env, "buffer is in use by " + std::to_string(b->InFlight()) + " I/O(s)", EBUSY, op);
  }
  Release(env, static_cast<uint32_t>(static_cast<uint64_t>(id) & kMaxSlots), true);
}

Napi::Value BufferTable::Info(Napi::Env env, double id) const {
  DmaBuffer* b = Lookup(id);
  if (b == nullptr) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("inFlight", Napi::Number::New(env, b->InFlight()));
  o.Set("hugepage", Napi::Boolean::New(env, b->hugepage));
  return o;
}

void BufferTable::ReleaseAll(Napi::Env env) {
  for (uint32_t i = 0; i < entries_.size(); i++) Release(env, i, true);
}

void BufferTable::Release(Napi::Env env, uint32_t index, bool detach) {
  Entry& e = entries_[index];
  if (e.buf == nullptr) return;
  if (e.ab_ref != nullptr) {
    if (detach) {
      napi_value ab = nullptr;
      napi_get_reference_value(env, e.ab_ref, &ab);
      // Detach before the memory goes, so JS views become empty instead of dangling.
      if (ab != nullptr) napi_detach_arraybuffer(env, ab);
    }
    napi_delete_reference(env, e.ab_ref);
    e.ab_ref = nullptr;
  }
  DmaBuffer* b = e.buf;
  e.buf = nullptr;
  free_slots_.push_back(index);
  const size_t len = b->len;
  if (b->ReleaseOwner()) {
    int64_t ignored;
    napi_adjust_external_memory(env, -static_cast<int64_t>(len), &ignored);
  }
  // Drop the table's reference (the struct stays for the ArrayBuffer's finalizer).
  if (b->obj_refs.fetch_sub(1) == 1) delete b;
}

}  // namespace spdk_node

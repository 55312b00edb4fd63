// The buffers an engine handed to JavaScript, by id (both addons).
//
// An id is generation * 2^24 + slot, so an id of a freed buffer never finds the slot's next
// tenant. JS thread only. The table holds one object reference on each DmaBuffer (see
// dma_buffer.h) and a weak reference on its ArrayBuffer, so that stop() can detach the views of
// buffers JavaScript still holds: they become empty instead of pointing at freed memory.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dma_buffer.h"

namespace spdk_node {

class BufferTable {
 public:
  // Registers `b` (fresh from an allocator: one owner reference) and wraps its memory in an
  // external ArrayBuffer reported to V8 as external memory. Returns { id, buffer, hugepage }.
  // On failure throws an SpdkError for `op`, having released b.
  Napi::Object Add(Napi::Env env, DmaBuffer* b, const std::string& op);
  // The live buffer with this id, or nullptr (freed, collected, or never was).
  DmaBuffer* Lookup(double id) const;
  // buffer.free(): EBADF when not live, EBUSY while I/O uses it; detaches the ArrayBuffer.
  void Free(Napi::Env env, double id, const std::string& op);
  // { inFlight, hugepage } or null.
  Napi::Value Info(Napi::Env env, double id) const;
  // Releases every buffer and detaches every ArrayBuffer still reachable (engine stop).
  void ReleaseAll(Napi::Env env);

 private:
  struct Entry {
    DmaBuffer* buf = nullptr;
    uint32_t gen = 0;
    napi_ref ab_ref = nullptr;  // weak
  };
  void Release(Napi::Env env, uint32_t index, bool detach);

  std::vector<Entry> entries_;
  std::vector<uint32_t> free_slots_;
};

}  // namespace spdk_node

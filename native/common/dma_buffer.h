// Engine-owned I/O memory that JavaScript sees as an external ArrayBuffer (zero copy).
//
// Lifetime (DESIGN.md §3): a DmaBuffer's memory stays valid while either JavaScript still owns
// it (no free() yet and the ArrayBuffer not collected) or any I/O references it. Two counters:
//  - mem_refs: 1 for the JS owner + 1 per in-flight I/O. At 0 the memory is released.
//  - obj_refs: 1 for the ArrayBuffer's finalizer + 1 while the memory is alive. At 0 the struct
//    is deleted. The finalizer may run long after free() (V8 collects when it likes) or after
//    the engine stopped; it only drops counts, so it is always harmless.
// All count changes are atomic, so the last reference may drop on any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace spdk_node {

struct DmaBuffer {
  uint8_t* data = nullptr;
  size_t len = 0;
  size_t map_len = 0;     // bytes actually mapped (rounded up), for munmap
  bool hugepage = false;  // backed by MAP_HUGETLB (builtin) or hugepage env memory (libspdk)
  // How the memory goes back when the last reference drops: nullptr = munmap(data, map_len)
  // (Allocate's memory); the libspdk engine sets spdk_free. Called on whichever thread drops
  // the last reference.
  void (*release)(uint8_t* data, size_t map_len) = nullptr;
  std::atomic<int> mem_refs{1};
  std::atomic<int> obj_refs{2};
  std::atomic<bool> owner_released{false};
  // JS thread only: the NVMe host's I/Os in flight on this buffer (an intrusive list of their
  // byte ranges, native/builtin/nvme/js_qpair.cc), so an overlapping I/O can be refused.
  void* host_io = nullptr;

  // Allocates `len` bytes aligned to 4 KiB (2 MiB hugepages when `try_huge` and available).
  // Returns nullptr on failure (errno set).
  static DmaBuffer* Allocate(size_t len, bool try_huge);

  // An in-flight I/O takes a memory reference (JS thread, at submission)...
  void IoRef() { mem_refs.fetch_add(1, std::memory_order_relaxed); }
  // ...and drops it when JS has been handed the completion (JS thread; any thread is safe).
  void IoUnref() { DropMem(); }
  // Number of I/Os referencing the memory (JS thread view; exact when no completion races).
  int InFlight() const {
    int r = mem_refs.load(std::memory_order_acquire);
    return owner_released.load(std::memory_order_relaxed) ? r : r - 1;
  }
  // JS owner gives up the memory (explicit free(), engine stop, or finalizer). Idempotent.
  // Returns true if this call released the owner (the caller then adjusts V8's external
  // memory accounting).
  bool ReleaseOwner();
  // The ArrayBuffer's finalizer (JS thread, exactly once).
  void Finalize();

 private:
  void DropMem();
  void DropObj();
};

}  // namespace spdk_node

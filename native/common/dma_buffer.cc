#include "dma_buffer.h"

#include <sys/mman.h>

#include <cerrno>

namespace spdk_node {

namespace {
constexpr size_t kPage = 4096;
constexpr size_t kHugePage = 2u << 20;
}  // namespace

DmaBuffer* DmaBuffer::Allocate(size_t len, bool try_huge) {
  if (len == 0) {
    errno = EINVAL;
    return nullptr;
  }
  void* p = MAP_FAILED;
  size_t map_len = 0;
  bool huge = false;
  if (try_huge && len >= kHugePage) {
    map_len = (len + kHugePage - 1) & ~(kHugePage - 1);
    p = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
             -1, 0);
    huge = p != MAP_FAILED;
  }
  if (p == MAP_FAILED) {
    // Anonymous mappings are page aligned and zero filled: no stale data reaches JS.
    map_len = (len + kPage - 1) & ~(kPage - 1);
    p = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
  }
  DmaBuffer* b = new DmaBuffer();
  b->data = static_cast<uint8_t*>(p);
  b->len = len;
  b->map_len = map_len;
  b->hugepage = huge;
  return b;
}

bool DmaBuffer::ReleaseOwner() {
  if (owner_released.exchange(true, std::memory_order_acq_rel)) return false;
  DropMem();
  return true;
}

void DmaBuffer::Finalize() {
  ReleaseOwner();
  DropObj();
}

void DmaBuffer::DropMem() {
  if (mem_refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (release != nullptr) {
    release(data, map_len);
  } else {
    munmap(data, map_len);
  }
  data = nullptr;
  DropObj();
}

void DmaBuffer::DropObj() {
  if (obj_refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

}  // namespace spdk_node

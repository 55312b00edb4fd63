#include "huge_map.h"

#include <sys/mman.h>

#include <cerrno>

namespace spdk_node {

namespace {

#ifdef MADV_POPULATE_WRITE
constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kMadvPopulateWrite = 23;  // <linux/mman.h>, Linux 5.14
#endif

size_t RoundUp(size_t len) { return (len + 4095) & ~size_t{4095}; }

}  // namespace

uint8_t* MapHuge(size_t len, int* errno_out) {
  len = RoundUp(len);
  const size_t map_len = len + kHugePageSize;
  void* m = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    *errno_out = ENOMEM;
    return nullptr;
  }
  uint8_t* p = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(m) + kHugePageSize - 1) &
                                          ~(uintptr_t{kHugePageSize} - 1));
  const size_t head = static_cast<size_t>(p - static_cast<uint8_t*>(m));
  if (head != 0) munmap(m, head);
  if (map_len - head > len) munmap(p + len, map_len - head - len);
  madvise(p, len, MADV_HUGEPAGE);  // best effort: without THP it stays 4 KiB pages
  // MADV_POPULATE_WRITE (Linux 5.14) fails cleanly when memory runs out; older kernels touch
  // every page instead.
  if (madvise(p, len, kMadvPopulateWrite) != 0) {
    if (errno != EINVAL) {
      munmap(p, len);
      *errno_out = ENOMEM;
      return nullptr;
    }
    for (size_t off = 0; off < len; off += 4096) p[off] = 0;
  }
  return p;
}

void UnmapHuge(uint8_t* p, size_t len) {
  if (p != nullptr) munmap(p, RoundUp(len));
}

}  // namespace spdk_node

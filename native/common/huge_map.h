// Anonymous memory on transparent huge pages where the kernel offers them (THP "madvise" or
// "always"), as SPDK's memory lives in hugepages. With 4 KiB pages, every pass over a large
// buffer pays a page walk per page, and in a VM a page walk is a two-dimensional one; 2 MiB pages
// make that nearly free.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spdk_node {

constexpr size_t kHugePageSize = 2u << 20;

// Maps `len` bytes (rounded up to 4 KiB), 2 MiB-aligned so every part of it can be a huge page,
// and populates it (no page fault on first use). Returns nullptr with *errno_out = ENOMEM when
// the memory is not there.
uint8_t* MapHuge(size_t len, int* errno_out);
void UnmapHuge(uint8_t* p, size_t len);

}  // namespace spdk_node

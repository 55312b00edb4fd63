// CRC-32C (Castagnoli, polynomial 0x1EDC6F41 reflected = 0x82F63B78), the checksum NVMe, iSCSI
// and the lvol store's on-disk format use. Crc32c("123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spdk_node {

// CRC-32C of `len` bytes, continuing from `crc` (0 to start). Uses the SSE4.2 crc32 instruction
// when the CPU has it (checked once at run time), else a slicing-by-8 table.
uint32_t Crc32c(const void* data, size_t len, uint32_t crc = 0);

// The table implementation alone (tests compare both paths).
uint32_t Crc32cPortable(const void* data, size_t len, uint32_t crc = 0);

}  // namespace spdk_node

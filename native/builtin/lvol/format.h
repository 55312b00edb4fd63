// The builtin lvol store's on-disk format, version 1 (docs/lvol-format.md is the specification;
// this file is its only implementation). Pure functions: no I/O, no threads.
//
//   offset 0: superblock (4 KiB) | slot A (S bytes) | slot B (S bytes) | pad | data clusters
//
// A metadata image (one slot's content) is the whole store: name, geometry and every lvol with
// its sparse cluster map. Decoding validates everything a loader relies on (checksum, ranges,
// unique names/UUIDs, no cluster referenced twice, parents that exist and are read-only, no
// parent cycles), so a decoded image can be used without further checks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace spdk_node {
namespace lvolfmt {

constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kSuperblockSize = 4096;
constexpr uint32_t kSizingMaxLvols = 1024;  // the slot size formula's max_lvols
constexpr size_t kMaxNameLen = 63;          // bytes of UTF-8 (SPDK's 64 including the NUL)
constexpr uint32_t kMinClusterSize = 4096;
constexpr size_t kImageFixedHeader = 48;  // image header bytes before the store name
constexpr size_t kRecordFixed = 48;       // lvol record bytes before its name
// Cluster numbers are u32 on disk; the in-memory maps keep "data cluster + 1" with 0 meaning
// unallocated, so neither count may reach 2^32 - 1.
constexpr uint64_t kMaxClusters = 0xFFFFFFFEull;

enum ClearMethod : uint32_t { kClearNone = 0, kClearUnmap = 1, kClearWriteZeroes = 2 };
enum LvolFlag : uint32_t { kFlagThin = 1, kFlagReadOnly = 2, kFlagSnapshot = 4 };
constexpr uint32_t kKnownFlags = kFlagThin | kFlagReadOnly | kFlagSnapshot;

using Uuid = std::array<uint8_t, 16>;
bool ParseUuid(const std::string& s, Uuid* out);  // 8-4-4-4-12 hex, either case
std::string FormatUuid(const Uuid& u);            // lower case
bool IsNullUuid(const Uuid& u);
Uuid NewUuid();                                   // random, version 4
const char* ClearMethodName(uint32_t m);
bool ParseClearMethod(const std::string& s, uint32_t* out);
// 1..63 bytes, no NUL.
bool ValidName(const std::string& name);

uint64_t AlignUp(uint64_t v, uint64_t a);

struct Superblock {
  Uuid uuid{};
  uint32_t cluster_size = 0;
  uint32_t block_size = 0;
  uint64_t slot_size = 0;
  uint32_t md_clusters = 0;
  uint32_t clear_method = kClearUnmap;  // what creation did to the data region (SPDK's meaning)
};

// Geometry of a store on a bdev of `bdev_bytes`.
struct Layout {
  uint64_t slot_size = 0;
  uint32_t md_clusters = 0;
  uint64_t total_data_clusters = 0;
};

// Layout of a new store. Returns 0, or EINVAL (bad cluster/block size) / ENOSPC (bdev too small)
// with a message.
int ComputeLayout(uint64_t bdev_bytes, uint32_t cluster_size, uint32_t block_size, Layout* out,
                  std::string* msg);
// Data clusters a bdev of `bdev_bytes` holds under an existing superblock.
uint64_t DataClustersFor(uint64_t bdev_bytes, const Superblock& sb);
inline uint64_t SlotOffset(int slot, uint64_t slot_size) {
  return kSuperblockSize + static_cast<uint64_t>(slot) * slot_size;
}

void EncodeSuperblock(const Superblock& sb, uint8_t* out /* kSuperblockSize bytes */);
// Returns "" on success. *has_magic tells whether the block claims to be a superblock at all
// (false: not an lvstore, no error to report).
std::string DecodeSuperblock(const uint8_t* in /* kSuperblockSize bytes */, Superblock* sb,
                             bool* has_magic);

struct LvolRecord {
  Uuid uuid{};
  Uuid parent{};  // all zero: none
  uint64_t size_clusters = 0;
  uint32_t flags = 0;
  uint32_t clear_method = kClearUnmap;
  std::string name;
  // (lvol cluster index, data cluster number), ascending by index.
  std::vector<std::pair<uint32_t, uint32_t>> map;
};

struct Image {
  uint64_t sequence = 0;
  Uuid lvs_uuid{};
  uint32_t total_data_clusters = 0;
  std::string name;
  std::vector<LvolRecord> lvols;  // creation order
};

constexpr size_t NameFieldSize(size_t name_len) { return (2 + name_len + 7) & ~size_t(7); }
inline size_t ImageHeaderSize(size_t store_name_len) {
  return kImageFixedHeader + NameFieldSize(store_name_len);
}
inline size_t RecordSize(size_t name_len, size_t allocated) {
  return kRecordFixed + NameFieldSize(name_len) + 4 + 8 * allocated;
}

// Encodes `img` (sequence included) with its checksum. The result's size is image_length.
std::vector<uint8_t> EncodeImage(const Image& img);

// The image_length a slot's header claims, or 0 when the first bytes are not an image header.
uint32_t PeekImageLength(const uint8_t* data, size_t avail);

// Decodes and validates one slot. `avail` bytes of the slot are in `data` (at least the
// image_length the header claims, else the image is reported truncated). Returns "" or why the
// image is invalid.
std::string DecodeImage(const uint8_t* data, size_t avail, const Uuid& expect_uuid,
                        uint64_t max_data_clusters, Image* out);

}  // namespace lvolfmt
}  // namespace spdk_node

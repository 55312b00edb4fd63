#include "format.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "../bdev/bdev.h"
#include "../../common/crc32c.h"

namespace spdk_node {
namespace lvolfmt {

namespace {

const char kSuperMagic[8] = {'S', 'P', 'D', 'K', 'N', 'L', 'V', 'S'};
const char kImageMagic[8] = {'S', 'P', 'D', 'K', 'N', 'L', 'V', 'M'};
constexpr uint64_t kSlotBase = 64 * 1024;
constexpr uint64_t kSlotPerCluster = 8;
constexpr uint64_t kSlotPerLvol = 96;

void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Appends a u16-length-prefixed name padded to a multiple of 8 bytes.
void PutName(std::vector<uint8_t>* out, const std::string& name) {
  size_t at = out->size();
  out->resize(at + NameFieldSize(name.size()), 0);
  Put16(out->data() + at, static_cast<uint16_t>(name.size()));
  memcpy(out->data() + at + 2, name.data(), name.size());
}

// Bounds-checked reader over one image.
struct Reader {
  const uint8_t* p;
  size_t len;
  size_t pos = 0;
  bool Need(size_t n) const { return n <= len - pos; }
  bool Name(std::string* out, std::string* err, const char* what) {
    if (!Need(2)) {
      *err = std::string(what) + " runs past the end of the image";
      return false;
    }
    size_t n = Get16(p + pos);
    if (!Need(NameFieldSize(n))) {
      *err = std::string(what) + " runs past the end of the image";
      return false;
    }
    out->assign(reinterpret_cast<const char*>(p + pos + 2), n);
    pos += NameFieldSize(n);
    if (!ValidName(*out)) {
      *err = std::string(what) + " is not a valid name (1 to 63 bytes, no NUL)";
      return false;
    }
    return true;
  }
};

}  // namespace

uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

bool ParseUuid(const std::string& s, Uuid* out) {
  if (s.size() != 36) return false;
  size_t j = 0;
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
      i++;
      continue;
    }
    int hi = HexVal(s[i]), lo = HexVal(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[j++] = static_cast<uint8_t>(hi << 4 | lo);
    i += 2;
  }
  return j == 16;
}

std::string FormatUuid(const Uuid& u) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    s.push_back(hex[u[i] >> 4]);
    s.push_back(hex[u[i] & 15]);
  }
  return s;
}

bool IsNullUuid(const Uuid& u) {
  for (uint8_t b : u)
    if (b != 0) return false;
  return true;
}

Uuid NewUuid() {
  Uuid u{};
  ParseUuid(GenerateUuid(), &u);
  return u;
}

const char* ClearMethodName(uint32_t m) {
  switch (m) {
    case kClearNone: return "none";
    case kClearUnmap: return "unmap";
    case kClearWriteZeroes: return "write_zeroes";
  }
  return "unknown";
}

bool ParseClearMethod(const std::string& s, uint32_t* out) {
  if (s == "none") *out = kClearNone;
  else if (s == "unmap") *out = kClearUnmap;
  else if (s == "write_zeroes") *out = kClearWriteZeroes;
  else return false;
  return true;
}

bool ValidName(const std::string& name) {
  return !name.empty() && name.size() <= kMaxNameLen && name.find('\0') == std::string::npos;
}

int ComputeLayout(uint64_t bdev_bytes, uint32_t cluster_size, uint32_t block_size, Layout* out,
                  std::string* msg) {
  if (block_size < 512 || block_size > 4096 || (block_size & (block_size - 1)) != 0) {
    *msg = "an lvstore needs a base bdev with a block size of 512 to 4096 bytes (a power of two), not " +
           std::to_string(block_size);
    return EINVAL;
  }
  if (cluster_size < kMinClusterSize || (cluster_size & (cluster_size - 1)) != 0 ||
      cluster_size % block_size != 0) {
    *msg = "cluster size " + std::to_string(cluster_size) +
           " must be a power of two, at least 4096 and a multiple of the block size " +
           std::to_string(block_size);
    return EINVAL;
  }
  const uint64_t could_hold = bdev_bytes / cluster_size;
  if (could_hold > kMaxClusters) {
    *msg = "cluster size " + std::to_string(cluster_size) + " is too small for a bdev of " +
           std::to_string(bdev_bytes) + " bytes (more than 2^32 - 2 clusters)";
    return EINVAL;
  }
  const uint64_t max_clusters = std::min<uint64_t>(4 * could_hold, kMaxClusters);
  const uint64_t slot =
      AlignUp(kSlotBase + kSlotPerCluster * max_clusters + kSlotPerLvol * kSizingMaxLvols, 4096);
  const uint64_t md_clusters = (kSuperblockSize + 2 * slot + cluster_size - 1) / cluster_size;
  if (could_hold <= md_clusters) {
    *msg = "bdev of " + std::to_string(bdev_bytes) + " bytes is too small for an lvstore with " +
           std::to_string(cluster_size) + "-byte clusters (metadata needs " +
           std::to_string(md_clusters) + " clusters)";
    return ENOSPC;
  }
  out->slot_size = slot;
  out->md_clusters = static_cast<uint32_t>(md_clusters);
  out->total_data_clusters = could_hold - md_clusters;
  return 0;
}

uint64_t DataClustersFor(uint64_t bdev_bytes, const Superblock& sb) {
  uint64_t n = bdev_bytes / sb.cluster_size;
  return n > sb.md_clusters ? std::min<uint64_t>(n - sb.md_clusters, kMaxClusters) : 0;
}

void EncodeSuperblock(const Superblock& sb, uint8_t* out) {
  memset(out, 0, kSuperblockSize);
  memcpy(out, kSuperMagic, 8);
  Put32(out + 8, kFormatVersion);
  memcpy(out + 16, sb.uuid.data(), 16);
  Put32(out + 32, sb.cluster_size);
  Put32(out + 36, sb.block_size);
  Put64(out + 40, sb.slot_size);
  Put32(out + 48, sb.md_clusters);
  Put32(out + 52, sb.clear_method);
  Put32(out + 12, Crc32c(out, kSuperblockSize));
}

std::string DecodeSuperblock(const uint8_t* in, Superblock* sb, bool* has_magic) {
  *has_magic = memcmp(in, kSuperMagic, 8) == 0;
  if (!*has_magic) return "no lvstore superblock";
  uint8_t copy[kSuperblockSize];
  memcpy(copy, in, kSuperblockSize);
  const uint32_t stored = Get32(copy + 12);
  Put32(copy + 12, 0);
  if (Crc32c(copy, kSuperblockSize) != stored) return "the superblock fails its checksum";
  const uint32_t version = Get32(in + 8);
  if (version != kFormatVersion) {
    return "unsupported lvstore format version " + std::to_string(version) + " (this build reads " +
           std::to_string(kFormatVersion) + ")";
  }
  memcpy(sb->uuid.data(), in + 16, 16);
  sb->cluster_size = Get32(in + 32);
  sb->block_size = Get32(in + 36);
  sb->slot_size = Get64(in + 40);
  sb->md_clusters = Get32(in + 48);
  sb->clear_method = Get32(in + 52);
  if (sb->cluster_size < kMinClusterSize || (sb->cluster_size & (sb->cluster_size - 1)) != 0 ||
      sb->block_size < 512 || sb->block_size > 4096 ||
      (sb->block_size & (sb->block_size - 1)) != 0 || sb->cluster_size % sb->block_size != 0) {
    return "the superblock has an invalid cluster size " + std::to_string(sb->cluster_size) +
           " or block size " + std::to_string(sb->block_size);
  }
  if (sb->slot_size < kSlotBase || sb->slot_size % 4096 != 0 || sb->slot_size > (1ull << 40) ||
      sb->md_clusters == 0 ||
      static_cast<uint64_t>(sb->md_clusters) * sb->cluster_size <
          kSuperblockSize + 2 * sb->slot_size) {
    return "the superblock describes an impossible layout (slot size " +
           std::to_string(sb->slot_size) + ", " + std::to_string(sb->md_clusters) +
           " metadata clusters)";
  }
  if (sb->clear_method > kClearWriteZeroes) return "the superblock has an unknown clear method";
  if (IsNullUuid(sb->uuid)) return "the superblock has a null lvstore UUID";
  return "";
}

std::vector<uint8_t> EncodeImage(const Image& img) {
  size_t total = ImageHeaderSize(img.name.size());
  for (const LvolRecord& r : img.lvols) total += RecordSize(r.name.size(), r.map.size());
  std::vector<uint8_t> out;
  out.reserve(total);
  out.resize(kImageFixedHeader, 0);
  memcpy(out.data(), kImageMagic, 8);
  Put64(out.data() + 8, img.sequence);
  memcpy(out.data() + 24, img.lvs_uuid.data(), 16);
  Put32(out.data() + 40, img.total_data_clusters);
  Put32(out.data() + 44, static_cast<uint32_t>(img.lvols.size()));
  PutName(&out, img.name);
  for (const LvolRecord& r : img.lvols) {
    size_t at = out.size();
    out.resize(at + kRecordFixed, 0);
    uint8_t* p = out.data() + at;
    memcpy(p, r.uuid.data(), 16);
    memcpy(p + 16, r.parent.data(), 16);
    Put64(p + 32, r.size_clusters);
    Put32(p + 40, r.flags);
    Put32(p + 44, r.clear_method);
    PutName(&out, r.name);
    at = out.size();
    out.resize(at + 4 + 8 * r.map.size());
    p = out.data() + at;
    Put32(p, static_cast<uint32_t>(r.map.size()));
    p += 4;
    for (const auto& e : r.map) {
      Put32(p, e.first);
      Put32(p + 4, e.second);
      p += 8;
    }
  }
  Put32(out.data() + 16, static_cast<uint32_t>(out.size()));
  Put32(out.data() + 20, Crc32c(out.data(), out.size()));
  return out;
}

uint32_t PeekImageLength(const uint8_t* data, size_t avail) {
  if (avail < kImageFixedHeader || memcmp(data, kImageMagic, 8) != 0) return 0;
  return Get32(data + 16);
}

std::string DecodeImage(const uint8_t* data, size_t avail, const Uuid& expect_uuid,
                        uint64_t max_data_clusters, Image* out) {
  if (avail < kImageFixedHeader || memcmp(data, kImageMagic, 8) != 0) return "no metadata image";
  const uint32_t len = Get32(data + 16);
  if (len < kImageFixedHeader + 8 || len > avail) {
    return "image length " + std::to_string(len) + " is out of range";
  }
  {
    // The checksum covers the image with its checksum field zero: CRC the three pieces.
    const uint8_t zero[4] = {0, 0, 0, 0};
    uint32_t crc = Crc32c(data, 20);
    crc = Crc32c(zero, 4, crc);
    crc = Crc32c(data + 24, len - 24, crc);
    if (crc != Get32(data + 20)) return "checksum mismatch";
  }
  Image img;
  img.sequence = Get64(data + 8);
  memcpy(img.lvs_uuid.data(), data + 24, 16);
  if (img.lvs_uuid != expect_uuid) return "lvstore UUID differs from the superblock's";
  img.total_data_clusters = Get32(data + 40);
  if (img.total_data_clusters == 0 || img.total_data_clusters > max_data_clusters) {
    return "total_data_clusters " + std::to_string(img.total_data_clusters) +
           " does not fit the bdev (" + std::to_string(max_data_clusters) + " data clusters)";
  }
  const uint32_t count = Get32(data + 44);
  Reader rd{data, len, kImageFixedHeader};
  std::string err;
  if (!rd.Name(&img.name, &err, "the lvstore name")) return err;
  // A record is at least kRecordFixed + 8 + 4 bytes: bound the count before reserving.
  if (count > (len - rd.pos) / (kRecordFixed + 12)) {
    return "lvol count " + std::to_string(count) + " does not fit the image";
  }
  img.lvols.resize(count);
  std::vector<uint8_t> used((img.total_data_clusters + 7) / 8, 0);
  for (uint32_t i = 0; i < count; i++) {
    LvolRecord& r = img.lvols[i];
    const std::string which = "lvol record " + std::to_string(i);
    if (!rd.Need(kRecordFixed)) return which + " runs past the end of the image";
    const uint8_t* p = data + rd.pos;
    memcpy(r.uuid.data(), p, 16);
    memcpy(r.parent.data(), p + 16, 16);
    r.size_clusters = Get64(p + 32);
    r.flags = Get32(p + 40);
    r.clear_method = Get32(p + 44);
    rd.pos += kRecordFixed;
    if (IsNullUuid(r.uuid)) return which + " has a null UUID";
    if (r.size_clusters > kMaxClusters + 1) return which + " is too large";
    if ((r.flags & ~kKnownFlags) != 0) return which + " has unknown flags";
    if (r.clear_method > kClearWriteZeroes) return which + " has an unknown clear method";
    if (!rd.Name(&r.name, &err, (which + "'s name").c_str())) return err;
    if (!rd.Need(4)) return which + " runs past the end of the image";
    const uint32_t n = Get32(data + rd.pos);
    rd.pos += 4;
    if (n > (len - rd.pos) / 8) return which + "'s cluster map runs past the end of the image";
    r.map.resize(n);
    int64_t prev = -1;
    for (uint32_t k = 0; k < n; k++) {
      const uint32_t idx = Get32(data + rd.pos);
      const uint32_t dc = Get32(data + rd.pos + 4);
      rd.pos += 8;
      if (static_cast<int64_t>(idx) <= prev) return which + "'s cluster map is not ascending";
      if (idx >= r.size_clusters) {
        return which + " maps cluster " + std::to_string(idx) + " beyond its size";
      }
      if (dc >= img.total_data_clusters) {
        return which + " references data cluster " + std::to_string(dc) + ", out of range";
      }
      if (used[dc / 8] & (1u << (dc % 8))) {
        return "data cluster " + std::to_string(dc) + " is referenced twice";
      }
      used[dc / 8] |= static_cast<uint8_t>(1u << (dc % 8));
      r.map[k] = {idx, dc};
      prev = idx;
    }
  }
  if (rd.pos != len) return "image has " + std::to_string(len - rd.pos) + " trailing bytes";

  // Cross-record rules: unique UUIDs and names, parents exist, are read-only, no cycles.
  std::unordered_map<std::string, size_t> by_uuid;
  std::unordered_set<std::string> names;
  for (size_t i = 0; i < img.lvols.size(); i++) {
    const LvolRecord& r = img.lvols[i];
    std::string key(reinterpret_cast<const char*>(r.uuid.data()), 16);
    if (!by_uuid.emplace(key, i).second) return "lvol UUID " + FormatUuid(r.uuid) + " appears twice";
    if (!names.insert(r.name).second) return "lvol name '" + r.name + "' appears twice";
  }
  auto parent_of = [&](const LvolRecord& r) -> size_t {
    if (IsNullUuid(r.parent)) return SIZE_MAX;
    auto it = by_uuid.find(std::string(reinterpret_cast<const char*>(r.parent.data()), 16));
    return it == by_uuid.end() ? SIZE_MAX - 1 : it->second;
  };
  for (const LvolRecord& r : img.lvols) {
    const size_t p = parent_of(r);
    if (p == SIZE_MAX) continue;
    if (p == SIZE_MAX - 1) return "lvol '" + r.name + "' has a parent that does not exist";
    if (!(img.lvols[p].flags & kFlagReadOnly)) {
      return "lvol '" + r.name + "' has a parent that is not read-only";
    }
  }
  for (size_t i = 0; i < img.lvols.size(); i++) {
    // Walk up: a chain longer than the record count is a cycle.
    size_t steps = 0;
    for (size_t cur = parent_of(img.lvols[i]); cur != SIZE_MAX; cur = parent_of(img.lvols[cur])) {
      if (cur == i || ++steps > img.lvols.size()) {
        return "lvol '" + img.lvols[i].name + "' is in a parent cycle";
      }
    }
  }
  *out = std::move(img);
  return "";
}

}  // namespace lvolfmt
}  // namespace spdk_node

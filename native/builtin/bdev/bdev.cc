#include "bdev.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <random>

namespace spdk_node {

const char* IoTypeName(IoType t) {
  switch (t) {
    case IoType::kRead: return "read";
    case IoType::kWrite: return "write";
    case IoType::kFlush: return "flush";
    case IoType::kUnmap: return "unmap";
    case IoType::kWriteZeroes: return "write_zeroes";
  }
  return "unknown";
}

void BdevStats::Record(IoType type, uint64_t bytes, uint64_t lat, int status) {
  constexpr auto rx = std::memory_order_relaxed;
  if (status != 0) {
    io_errors.fetch_add(1, rx);
    return;
  }
  switch (type) {
    case IoType::kRead:
      num_read_ops.fetch_add(1, rx);
      bytes_read.fetch_add(bytes, rx);
      read_latency_ticks.fetch_add(lat, rx);
      break;
    case IoType::kWrite:
      num_write_ops.fetch_add(1, rx);
      bytes_written.fetch_add(bytes, rx);
      write_latency_ticks.fetch_add(lat, rx);
      break;
    case IoType::kUnmap:
      num_unmap_ops.fetch_add(1, rx);
      bytes_unmapped.fetch_add(bytes, rx);
      unmap_latency_ticks.fetch_add(lat, rx);
      break;
    case IoType::kFlush:
      num_flush_ops.fetch_add(1, rx);
      break;
    case IoType::kWriteZeroes:
      num_write_zeroes_ops.fetch_add(1, rx);
      bytes_write_zeroes.fetch_add(bytes, rx);
      break;
  }
}

BdevChannel::BdevChannel(Bdev* bdev, Reactor* reactor) : bdev_(bdev), reactor_(reactor) {
  bdev_->Ref();
}

BdevChannel::~BdevChannel() { bdev_->Unref(); }

Bdev::Bdev(std::string name, std::string product_name, uint32_t block_size, uint64_t num_blocks,
           std::string uuid)
    : name_(std::move(name)),
      product_name_(std::move(product_name)),
      block_size_(block_size),
      num_blocks_(num_blocks),
      uuid_(uuid.empty() ? GenerateUuid() : std::move(uuid)) {}

Bdev::~Bdev() = default;

std::string GenerateUuid() {
  uint8_t b[16];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, b, sizeof(b)) : -1;
  if (fd >= 0) close(fd);
  if (got != static_cast<ssize_t>(sizeof(b))) {
    std::random_device rd;
    for (auto& x : b) x = static_cast<uint8_t>(rd());
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char s[37];
  snprintf(s, sizeof(s),
           "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return s;
}

void CopyToIovs(const struct iovec* iovs, int iovcnt, const uint8_t* src, uint64_t len) {
  for (int i = 0; i < iovcnt && len > 0; i++) {
    uint64_t n = std::min<uint64_t>(len, iovs[i].iov_len);
    memcpy(iovs[i].iov_base, src, n);
    src += n;
    len -= n;
  }
}

void CopyFromIovs(uint8_t* dst, const struct iovec* iovs, int iovcnt, uint64_t len) {
  for (int i = 0; i < iovcnt && len > 0; i++) {
    uint64_t n = std::min<uint64_t>(len, iovs[i].iov_len);
    memcpy(dst, iovs[i].iov_base, n);
    dst += n;
    len -= n;
  }
}

}  // namespace spdk_node

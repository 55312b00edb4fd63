#include "io_desc.h"

#include <cerrno>
#include <cmath>

namespace spdk_node {

namespace {

bool IsUint(double v) { return v >= 0 && v <= 9007199254740991.0 && std::floor(v) == v; }

}  // namespace

int ParseIoHead(const double* d, uint32_t depth, uint64_t num_blocks, const std::string& name, IoHead* h,
                std::string* msg) {
  const double op = d[kDescOp];
  if (!(op >= kIoRead && op <= kIoWriteZeroes) || std::floor(op) != op) {
    *msg = "unknown I/O type";
    return EINVAL;
  }
  const double tag = d[kDescTag];
  if (!IsUint(tag) || tag >= depth) {
    *msg = "tag out of range";
    return EINVAL;
  }
  if (!IsUint(d[kDescOffsetBlocks]) || !IsUint(d[kDescNumBlocks])) {
    *msg = "offsetBlocks and numBlocks must be non-negative integers";
    return EINVAL;
  }
  const uint64_t off = static_cast<uint64_t>(d[kDescOffsetBlocks]);
  const uint64_t num = static_cast<uint64_t>(d[kDescNumBlocks]);
  if (off > num_blocks || num > num_blocks - off) {
    *msg = "blocks [" + std::to_string(off) + ", +" + std::to_string(num) + ") beyond the end of " + name + " (" +
           std::to_string(num_blocks) + " blocks)";
    return ERANGE;
  }
  h->op = static_cast<int>(op);
  if (num == 0 && h->op != kIoFlush) {
    *msg = "numBlocks must be at least 1";
    return EINVAL;
  }
  h->tag = static_cast<uint32_t>(tag);
  h->offset = off;
  h->blocks = num;
  return 0;
}

int ParseIoBuffers(const double* d, const double* iov_table, uint32_t depth, uint64_t need, uint32_t align,
                   const std::string& name, const std::function<DmaBuffer*(double)>& lookup, struct iovec* iovs,
                   DmaBuffer** bufs, int* iovcnt, std::string* msg) {
  const double niov_d = d[kDescIovCount];
  if (!IsUint(niov_d) || niov_d > kMaxIovs) {
    *msg = "at most " + std::to_string(kMaxIovs) + " buffers per I/O";
    return EINVAL;
  }
  const int niov = niov_d == 0 ? 1 : static_cast<int>(niov_d);
  const double* iov_src = nullptr;
  if (niov_d > 0) {
    const double start = d[kDescIovStart];
    if (!IsUint(start) || start + niov > static_cast<double>(depth) * 4) {
      *msg = "iov table range out of bounds";
      return EINVAL;
    }
    iov_src = iov_table + static_cast<uint64_t>(start) * kIovWords;
  }
  uint64_t total = 0;
  for (int i = 0; i < niov; i++) {
    const double id = iov_src ? iov_src[i * kIovWords] : d[kDescBuf];
    const double boff = iov_src ? iov_src[i * kIovWords + 1] : d[kDescBufOffset];
    const double blen = iov_src ? iov_src[i * kIovWords + 2] : static_cast<double>(need);
    DmaBuffer* b = lookup(id);
    if (b == nullptr) {
      *msg = "buffer is freed or unknown";
      return EBADF;
    }
    if (!IsUint(boff) || !IsUint(blen) || blen == 0 || boff + blen > static_cast<double>(b->len)) {
      *msg = "buffer range [" + std::to_string(static_cast<uint64_t>(boff)) + ", +" +
             std::to_string(static_cast<uint64_t>(blen)) + ") exceeds the buffer (" + std::to_string(b->len) + " bytes)";
      return ERANGE;
    }
    uint8_t* p = b->data + static_cast<uint64_t>(boff);
    if (align > 1 && ((reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(blen)) % align) != 0) {
      *msg = "bdev " + name + " needs buffers aligned to " + std::to_string(align) + " bytes";
      return EINVAL;
    }
    iovs[i].iov_base = p;
    iovs[i].iov_len = static_cast<size_t>(blen);
    bufs[i] = b;
    total += static_cast<uint64_t>(blen);
  }
  if (total != need) {
    *msg = "buffers hold " + std::to_string(total) + " bytes; the I/O needs " + std::to_string(need);
    return EINVAL;
  }
  *iovcnt = niov;
  return 0;
}

IoQueueMemory::~IoQueueMemory() {
  delete[] desc;
  delete[] iov_table;
  delete[] cq;
}

void IoQueueMemory::Allocate(Napi::Object self, uint32_t depth, uint32_t cq_capacity) {
  Napi::Env env = self.Env();
  cq_cap = cq_capacity;
  desc = new double[static_cast<size_t>(depth) * kDescWords]();
  iov_table = new double[static_cast<size_t>(depth) * kIovWords * 4]();
  cq = new int32_t[static_cast<size_t>(cq_cap) * 2]();
  self.Set("desc", Napi::Float64Array::New(env, static_cast<size_t>(depth) * kDescWords,
                                           ExternalArrayBuffer(env, desc, sizeof(double) * depth * kDescWords), 0));
  self.Set("iovs", Napi::Float64Array::New(env, static_cast<size_t>(depth) * kIovWords * 4,
                                           ExternalArrayBuffer(env, iov_table, sizeof(double) * depth * kIovWords * 4), 0));
  self.Set("cq", Napi::Int32Array::New(env, static_cast<size_t>(cq_cap) * 2,
                                       ExternalArrayBuffer(env, cq, sizeof(int32_t) * cq_cap * 2), 0));
  self.Set("cqCapacity", Napi::Number::New(env, cq_cap));
}

}  // namespace spdk_node

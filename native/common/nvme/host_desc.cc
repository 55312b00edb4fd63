#include "host_desc.h"

#include <cerrno>
#include <cmath>

namespace spdk_node {
namespace nvme_host {

namespace {

bool IsUint(double v) { return v >= 0 && v <= 9007199254740991.0 && std::floor(v) == v; }

}  // namespace

int ParseNvmeHead(const double* d, NvmeIoHead* h, std::string* msg) {
  const double opd = d[kNdOp];
  if (!(opd >= kNdRead && opd <= kNdCompare) || std::floor(opd) != opd) {
    *msg = "unknown I/O type";
    return EINVAL;
  }
  const int op = static_cast<int>(opd);
  const double tagd = d[kNdTag];
  if (!(tagd >= -2147483648.0 && tagd <= 2147483647.0) || std::floor(tagd) != tagd) {
    *msg = "tag must be an int32";
    return EINVAL;
  }
  const double nsidd = d[kNdNsid];
  if (!(nsidd >= 1 && nsidd <= 4294967294.0) || std::floor(nsidd) != nsidd) {
    *msg = "invalid namespace ID";
    return EINVAL;
  }
  const double countd = d[kNdCount];
  const double max_count = op == kNdDeallocate ? 256 : 65536;
  if (op != kNdFlush && (!(countd >= 1 && countd <= max_count) || std::floor(countd) != countd)) {
    *msg = op == kNdDeallocate ? "a deallocate takes 1..256 ranges" : "block count must be 1..65536";
    return EINVAL;
  }
  const double lbad = d[kNdLba];
  if (op != kNdFlush && op != kNdDeallocate && !IsUint(lbad)) {
    *msg = "LBA must be a non-negative integer below 2^53";
    return EINVAL;
  }
  const double flagsd = d[kNdFlags];
  h->op = op;
  h->tag = static_cast<int32_t>(tagd);
  h->nsid = static_cast<uint32_t>(nsidd);
  h->count = op == kNdFlush ? 0 : static_cast<uint32_t>(countd);
  h->lba = op == kNdFlush || op == kNdDeallocate ? 0 : static_cast<uint64_t>(lbad);
  h->flags = flagsd >= 0 && flagsd < 256 ? static_cast<uint32_t>(flagsd) : 0;
  return 0;
}

int ParseNvmePayload(const double* d, const NvmeIoHead& h, uint32_t lba_size, uint32_t max_xfer,
                     const std::function<DmaBuffer*(double)>& lookup, DmaBuffer** buf, uint64_t* off, uint64_t* len,
                     std::string* msg) {
  *buf = nullptr;
  *off = 0;
  *len = 0;
  if (h.op != kNdRead && h.op != kNdWrite && h.op != kNdCompare && h.op != kNdDeallocate) return 0;
  const uint64_t n = h.op == kNdDeallocate ? static_cast<uint64_t>(h.count) * 16 : static_cast<uint64_t>(h.count) * lba_size;
  DmaBuffer* b = lookup(d[kNdBuf]);
  if (b == nullptr) {
    *msg = "buffer is freed or unknown";
    return EBADF;
  }
  const double offd = d[kNdBufOffset];
  if (!IsUint(offd) || offd + static_cast<double>(n) > static_cast<double>(b->len)) {
    *msg = "buffer range [" + std::to_string(static_cast<uint64_t>(offd)) + ", +" + std::to_string(n) +
           ") exceeds the buffer (" + std::to_string(b->len) + " bytes)";
    return ERANGE;
  }
  if (h.op != kNdDeallocate && max_xfer != 0 && n > max_xfer) {
    *msg = std::to_string(n) + " bytes exceed the controller's maximum data transfer size (" + std::to_string(max_xfer) +
           " bytes)";
    return EINVAL;
  }
  *buf = b;
  *off = static_cast<uint64_t>(offd);
  *len = n;
  return 0;
}

}  // namespace nvme_host
}  // namespace spdk_node

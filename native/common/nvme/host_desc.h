// The NVMe host's I/O descriptor layout, shared by both engines' NvmeQpair classes
// (native/builtin/nvme/js_qpair.cc, native/libspdk/nvme/js_qpair.cc) and lib/nvme/qpair.ts,
// which reads it through the addon's `nvmeConstants`.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>

#include "../dma_buffer.h"

namespace spdk_node {
namespace nvme_host {

// Descriptor words (Float64Array, kNdWords per command).
enum NvmeDescWord : int {
  kNdOp = 0,
  kNdTag = 1,
  kNdNsid = 2,
  kNdBuf = 3,
  kNdBufOffset = 4,
  kNdLba = 5,
  kNdCount = 6,  // blocks (read/write/compare/write zeroes) or ranges (deallocate)
  kNdFlags = 7,
  kNdWords = 8,
};
enum NvmeDescOp : int {
  kNdRead = 1,
  kNdWrite = 2,
  kNdFlush = 3,
  kNdWriteZeroes = 4,
  kNdDeallocate = 5,
  kNdCompare = 6,
};
constexpr uint32_t kNdFlagFua = 1;  // read/write/compare/write zeroes: Force Unit Access
constexpr uint32_t kNdFlagDeac = 2;  // write zeroes: deallocate

// What both engines check in a descriptor before looking the namespace up: the operation, an
// int32 tag, a namespace ID, the block or range count, the LBA. 0 or a positive errno with *msg.
struct NvmeIoHead {
  int op = 0;
  int32_t tag = 0;
  uint32_t nsid = 0;
  uint32_t count = 0;  // 0 for a flush
  uint64_t lba = 0;    // 0 for a flush or a deallocate
  uint32_t flags = 0;
};
int ParseNvmeHead(const double* d, NvmeIoHead* h, std::string* msg);

// The data buffer of a read, write, compare (count * lba_size bytes, within the controller's
// maximum transfer `max_xfer`, 0 = none) or deallocate (16 bytes per range): looked up by id and
// in range. Sets *buf, *off, *len (*buf stays null for commands without data). 0 or an errno.
int ParseNvmePayload(const double* d, const NvmeIoHead& h, uint32_t lba_size, uint32_t max_xfer,
                     const std::function<DmaBuffer*(double)>& lookup, DmaBuffer** buf, uint64_t* off, uint64_t* len,
                     std::string* msg);

// Refuses bytes [off, off + len) of a buffer that overlap a command in flight on it: `head` is
// the buffer's list of in-flight slots (each with off, len, next). 0 or EBUSY with *msg.
template <class Slot>
int CheckNoOverlap(const Slot* head, uint64_t off, uint64_t len, std::string* msg) {
  for (const Slot* s = head; s != nullptr; s = s->next) {
    if (off < s->off + s->len && s->off < off + len) {
      *msg = "buffer bytes [" + std::to_string(off) + ", +" + std::to_string(len) + ") overlap an I/O in flight (bytes [" +
             std::to_string(s->off) + ", +" + std::to_string(s->len) + "))";
      return EBUSY;
    }
  }
  return 0;
}

// The addon's `nvmeConstants` object.
inline Napi::Object NvmeConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("DESC_OP", static_cast<double>(kNdOp));
  c.Set("DESC_TAG", static_cast<double>(kNdTag));
  c.Set("DESC_NSID", static_cast<double>(kNdNsid));
  c.Set("DESC_BUF", static_cast<double>(kNdBuf));
  c.Set("DESC_BUF_OFFSET", static_cast<double>(kNdBufOffset));
  c.Set("DESC_LBA", static_cast<double>(kNdLba));
  c.Set("DESC_COUNT", static_cast<double>(kNdCount));
  c.Set("DESC_FLAGS", static_cast<double>(kNdFlags));
  c.Set("DESC_WORDS", static_cast<double>(kNdWords));
  c.Set("OP_READ", static_cast<double>(kNdRead));
  c.Set("OP_WRITE", static_cast<double>(kNdWrite));
  c.Set("OP_FLUSH", static_cast<double>(kNdFlush));
  c.Set("OP_WRITE_ZEROES", static_cast<double>(kNdWriteZeroes));
  c.Set("OP_DEALLOCATE", static_cast<double>(kNdDeallocate));
  c.Set("OP_COMPARE", static_cast<double>(kNdCompare));
  c.Set("FLAG_FUA", static_cast<double>(kNdFlagFua));
  c.Set("FLAG_DEAC", static_cast<double>(kNdFlagDeac));
  return c;
}

}  // namespace nvme_host
}  // namespace spdk_node

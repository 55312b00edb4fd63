// The NVMe host's I/O descriptor layout, shared by both engines' NvmeQpair classes
// (native/builtin/nvme/js_qpair.cc, native/libspdk/nvme/js_qpair.cc) and lib/nvme/qpair.ts,
// which reads it through the addon's `nvmeConstants`.
#pragma once

#include <napi.h>

#include <cstdint>

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

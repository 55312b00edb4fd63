// The descriptor layout of a bdev I/O queue (lib/bdev/queue.ts), shared by both engines' addons
// and handed to TypeScript as the addon's `constants`.
//
// JavaScript writes one descriptor per I/O into a Float64Array (plain numbers, exact up to
// 2^53): operation, tag, buffer id and offset, block range, and for vectored I/O a range of the
// iov table (buffer id, byte offset, byte length per entry).
#pragma once

#include <napi.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dma_buffer.h"
#include "napi_util.h"

namespace spdk_node {

enum DescWord : int {
  kDescOp = 0,
  kDescTag = 1,
  kDescBuf = 2,
  kDescBufOffset = 3,
  kDescOffsetBlocks = 4,
  kDescNumBlocks = 5,
  kDescIovCount = 6,  // 0: single buffer (kDescBuf/kDescBufOffset); >0: iovs from kDescIovStart
  kDescIovStart = 7,
  kDescWords = 8,
};
// An iov entry in the iov table: buffer id, byte offset in buffer, byte length.
constexpr int kIovWords = 3;
constexpr int kMaxIovs = 32;

// Operations (kDescOp).
enum IoOp : int { kIoRead = 1, kIoWrite = 2, kIoFlush = 3, kIoUnmap = 4, kIoWriteZeroes = 5 };

// A descriptor's operation, tag and block range.
struct IoHead {
  int op = 0;
  uint32_t tag = 0;
  uint64_t offset = 0;
  uint64_t blocks = 0;
};

// Checks what every engine checks, the same way: a known operation, a tag below `depth`, a block
// range inside `num_blocks` (of bdev `name`), at least one block unless a flush. Returns 0, or a
// positive errno with *msg.
int ParseIoHead(const double* d, uint32_t depth, uint64_t num_blocks, const std::string& name, IoHead* h,
                std::string* msg);

// A read's or write's payload: the descriptor's buffer (or its range of `iov_table`, which has
// depth * 4 entries), each buffer looked up by id, in range and aligned to `align`, together
// exactly `need` bytes. Fills iovs/bufs (kMaxIovs each) and *iovcnt. Returns 0 or a positive
// errno with *msg.
int ParseIoBuffers(const double* d, const double* iov_table, uint32_t depth, uint64_t need, uint32_t align,
                   const std::string& name, const std::function<DmaBuffer*(double)>& lookup, struct iovec* iovs,
                   DmaBuffer** bufs, int* iovcnt, std::string* msg);

// The memory a bdev queue shares with JavaScript: the descriptors (depth of them), the iov table
// (depth * 4 entries) and the completion ring ({tag, status} pairs, cq_cap of them, a power of
// two). Freed with the queue; JavaScript reaches the views only through the queue's object.
struct IoQueueMemory {
  double* desc = nullptr;
  double* iov_table = nullptr;
  int32_t* cq = nullptr;
  uint32_t cq_cap = 0;

  IoQueueMemory() = default;
  IoQueueMemory(const IoQueueMemory&) = delete;
  IoQueueMemory& operator=(const IoQueueMemory&) = delete;
  ~IoQueueMemory();
  // Allocates it and sets `desc`, `iovs`, `cq` and `cqCapacity` on the queue's JS object.
  void Allocate(Napi::Object self, uint32_t depth, uint32_t cq_capacity);
  // The thread completing I/O: one completion, published with a release store of the tail.
  void Push(uint32_t tag, int32_t status) {
    const uint32_t t = tail.load(std::memory_order_relaxed);
    int32_t* e = cq + static_cast<size_t>(t & (cq_cap - 1)) * 2;
    e[0] = static_cast<int32_t>(tag);
    e[1] = status;
    tail.store(t + 1, std::memory_order_release);
  }
  alignas(64) std::atomic<uint32_t> tail{0};  // read by the JS thread with acquire
};

// What a bdev queue's slot (one per tag) holds for the JS thread: busy from submit() until its
// completion is reaped, and the buffers its I/O references meanwhile.
struct IoSlotRefs {
  uint32_t tag = 0;
  bool busy = false;
  int nbufs = 0;
  DmaBuffer* bufs[kMaxIovs];
};

// A bdev queue's submit(count) on the JS thread: validates descriptors 0..count-1 of `desc` with
// prepare(d, &msg) (0 or a positive errno; it fills the tag's slot and refuses a busy one),
// marking each slot busy as it goes so a tag twice in the batch is refused; a failure unmarks
// them and throws an SpdkError with its `index`, so nothing was submitted. Then each I/O takes
// its buffer references and goes to push(slot).
template <class Slot, class Prepare, class Push>
void SubmitIoBatch(Napi::Env env, const double* desc, uint32_t count, std::vector<Slot>& slots, const std::string& op,
                   Prepare prepare, Push push) {
  if (count > slots.size()) ThrowSpdkError(env, "more descriptors than the queue depth", EINVAL, op);
  auto slot_of = [&](uint32_t i) -> Slot& { return slots[static_cast<uint32_t>(desc[static_cast<size_t>(i) * kDescWords + kDescTag])]; };
  for (uint32_t i = 0; i < count; i++) {
    std::string msg;
    const int err = prepare(desc + static_cast<size_t>(i) * kDescWords, &msg);
    if (err == 0) {
      slot_of(i).busy = true;
      continue;
    }
    for (uint32_t j = 0; j < i; j++) slot_of(j).busy = false;
    Napi::Error e = MakeSpdkError(env, msg, err, op);
    e.Set("index", Napi::Number::New(env, i));
    throw e;
  }
  for (uint32_t i = 0; i < count; i++) {
    Slot& s = slot_of(i);
    for (int k = 0; k < s.nbufs; k++) s.bufs[k]->IoRef();
    push(s);
  }
}

// A bdev queue's reap() on the JS thread: completions [head, head + n) of `cq` ({tag, status}
// pairs, capacity `cap`, a power of two) are JavaScript's to read; their slots drop their buffer
// references and are free again. Returns reap()'s answer: start index * 2^17 + count.
template <class Slot>
double ReleaseReaped(const int32_t* cq, uint32_t cap, uint32_t head, uint32_t n, std::vector<Slot>& slots) {
  for (uint32_t i = 0; i < n; i++) {
    Slot& s = slots[static_cast<uint32_t>(cq[static_cast<size_t>((head + i) & (cap - 1)) * 2])];
    for (int k = 0; k < s.nbufs; k++) s.bufs[k]->IoUnref();
    s.nbufs = 0;
    s.busy = false;
  }
  return static_cast<double>(head & (cap - 1)) * 131072.0 + n;
}

inline Napi::Object IoQueueConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("DESC_OP", Napi::Number::New(env, kDescOp));
  c.Set("DESC_TAG", Napi::Number::New(env, kDescTag));
  c.Set("DESC_BUF", Napi::Number::New(env, kDescBuf));
  c.Set("DESC_BUF_OFFSET", Napi::Number::New(env, kDescBufOffset));
  c.Set("DESC_OFFSET_BLOCKS", Napi::Number::New(env, kDescOffsetBlocks));
  c.Set("DESC_NUM_BLOCKS", Napi::Number::New(env, kDescNumBlocks));
  c.Set("DESC_IOV_COUNT", Napi::Number::New(env, kDescIovCount));
  c.Set("DESC_IOV_START", Napi::Number::New(env, kDescIovStart));
  c.Set("DESC_WORDS", Napi::Number::New(env, kDescWords));
  c.Set("IOV_WORDS", Napi::Number::New(env, kIovWords));
  c.Set("MAX_IOVS", Napi::Number::New(env, kMaxIovs));
  c.Set("IO_READ", Napi::Number::New(env, kIoRead));
  c.Set("IO_WRITE", Napi::Number::New(env, kIoWrite));
  c.Set("IO_FLUSH", Napi::Number::New(env, kIoFlush));
  c.Set("IO_UNMAP", Napi::Number::New(env, kIoUnmap));
  c.Set("IO_WRITE_ZEROES", Napi::Number::New(env, kIoWriteZeroes));
  return c;
}

}  // namespace spdk_node

// The descriptor layout of a bdev I/O queue (lib/bdev/queue.ts), shared by both engines' addons
// and handed to TypeScript as the addon's `constants`.
//
// JavaScript writes one descriptor per I/O into a Float64Array (plain numbers, exact up to
// 2^53): operation, tag, buffer id and offset, block range, and for vectored I/O a range of the
// iov table (buffer id, byte offset, byte length per entry).
#pragma once

#include <napi.h>

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

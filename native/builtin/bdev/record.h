// TEST-ONLY fault injection (used by test/lvol-powercut.test.ts, never by the product): a RAM
// bdev that records every write, write_zeroes, unmap and flush it receives, in order, so a test
// can rebuild what a disk would hold after a power cut at any point: everything up to the last
// completed flush, plus any subset of later writes, some torn. Created only through
// JsEngine.createRecordBdev, which no RPC exposes.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "bdev.h"

namespace spdk_node {

struct RecordedOp {
  enum Kind : uint8_t { kWrite = 0, kFlush = 1, kZero = 2 } kind = kWrite;
  uint64_t offset = 0;  // bytes
  uint64_t length = 0;  // bytes
  std::vector<uint8_t> data;  // kWrite only
};

class RecordBdev : public Bdev {
 public:
  static RecordBdev* Create(const std::string& name, uint64_t num_blocks, uint32_t block_size, int* errno_out);
  ~RecordBdev() override;
  const char* driver() const override { return "test_record"; }
  BdevChannel* CreateChannel(Reactor* reactor) override;
  int ReadSync(uint64_t offset, void* buf, size_t len) override;

  // Any thread. Takes the log recorded so far (and clears it).
  std::vector<RecordedOp> TakeLog();
  void Append(RecordedOp op);
  uint8_t* data() const { return data_; }

 private:
  RecordBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size, uint8_t* data, size_t len);
  uint8_t* data_;
  size_t len_;
  std::mutex mu_;
  std::vector<RecordedOp> log_;
};

}  // namespace spdk_node

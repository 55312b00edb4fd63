// TEST-ONLY fault injection (used by test/lvol-powercut.test.ts, never by the product): a RAM
// bdev that records every write, write_zeroes, unmap and flush it receives, in order, so a test
// can rebuild what a disk would hold after a power cut at any point: everything up to the last
// completed flush, plus any subset of later writes, some torn. Created only through
// JsEngine.createRecordBdev, which no RPC exposes.
//
// With a delay (delay_us > 0) it is also a slow disk: every I/O is carried out and completed
// delay_us after it was submitted (a write's data lands then, a read's data is taken then), in
// submission order per channel, so I/O stays in flight long enough for tests of what may run
// while it is (test/lvol-native.test.ts: lvol freezes under write load).
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
  static RecordBdev* Create(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                            uint64_t delay_us, int* errno_out);
  ~RecordBdev() override;
  const char* driver() const override { return "test_record"; }
  BdevChannel* CreateChannel(Reactor* reactor) override;
  int ReadSync(uint64_t offset, void* buf, size_t len) override;

  // Any thread. Takes the log recorded so far (and clears it).
  std::vector<RecordedOp> TakeLog();
  void Append(RecordedOp op);
  uint8_t* data() const { return data_; }
  uint64_t delay_us() const { return delay_us_; }

 private:
  RecordBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size, uint64_t delay_us,
             uint8_t* data, size_t len);
  uint64_t delay_us_;
  uint8_t* data_;
  size_t len_;
  std::mutex mu_;
  std::vector<RecordedOp> log_;
};

}  // namespace spdk_node

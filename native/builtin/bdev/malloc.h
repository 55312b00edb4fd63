// RAM-backed bdev (SPDK's malloc bdev). Data lives in an anonymous mapping, zero-filled at
// creation; unmap and write_zeroes zero the range (SPDK's malloc bdev does the same).
#pragma once

#include <string>

#include "bdev.h"

namespace spdk_node {

class MallocBdev : public Bdev {
 public:
  // Returns nullptr and sets *errno_out (ENOMEM) when the memory cannot be mapped.
  static MallocBdev* Create(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                            const std::string& uuid, int* errno_out);
  ~MallocBdev() override;

  const char* driver() const override { return "malloc"; }
  BdevChannel* CreateChannel(Reactor* reactor) override;
  int ReadSync(uint64_t offset, void* buf, size_t len) override;
  uint8_t* data() const { return data_; }

 private:
  MallocBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size,
             const std::string& uuid, uint8_t* data, size_t len);
  uint8_t* data_;
  size_t len_;
};

}  // namespace spdk_node

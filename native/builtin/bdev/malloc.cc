#include "malloc.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "../../common/huge_map.h"

namespace spdk_node {

namespace {

class MallocChannel : public BdevChannel {
 public:
  MallocChannel(MallocBdev* bdev, Reactor* reactor) : BdevChannel(bdev, reactor), mb_(bdev) {}

  // The copy happens inline on the reactor thread and the I/O completes before Submit returns:
  // completion handlers (IoQueue) only record the result, they never resubmit from inside.
  void Submit(BdevIo* io) override {
    const uint64_t bs = mb_->block_size();
    uint8_t* base = mb_->data() + io->offset_blocks * bs;
    const uint64_t len = io->num_blocks * bs;
    switch (io->type) {
      case IoType::kRead:
        CopyToIovs(io->iovs, io->iovcnt, base, len);
        break;
      case IoType::kWrite:
        CopyFromIovs(base, io->iovs, io->iovcnt, len);
        break;
      case IoType::kUnmap:
      case IoType::kWriteZeroes:
        memset(base, 0, len);
        break;
      case IoType::kFlush:
        break;
    }
    io->Complete(0);
  }

 private:
  MallocBdev* mb_;
};

}  // namespace

MallocBdev* MallocBdev::Create(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                               const std::string& uuid, int* errno_out) {
  const size_t len = num_blocks * block_size;
  // On huge pages (common/huge_map.h): with 4 KiB pages, random I/O over a bdev much larger than
  // the TLB's reach pays a page walk on nearly every I/O, and its cost depends on where the kernel
  // happened to place the pages: two equal malloc bdevs then differ by up to ~10% in random 4 KiB
  // IOPS (bench/RESULTS.md, lvol-io). Populated up front, as SPDK's malloc bdev zeroes its memory
  // at creation: I/O never pays a page fault, and reads of never-written blocks cost what reads
  // of written blocks cost.
  uint8_t* p = MapHuge(len, errno_out);
  if (p == nullptr) return nullptr;
  return new MallocBdev(name, num_blocks, block_size, uuid, p, len);
}

MallocBdev::MallocBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                       const std::string& uuid, uint8_t* data, size_t len)
    : Bdev(name, "Malloc disk", block_size, num_blocks, uuid), data_(data), len_(len) {}

MallocBdev::~MallocBdev() { UnmapHuge(data_, len_); }

BdevChannel* MallocBdev::CreateChannel(Reactor* reactor) { return new MallocChannel(this, reactor); }

int MallocBdev::ReadSync(uint64_t offset, void* buf, size_t len) {
  if (offset > len_ || len > len_ - offset) return -EINVAL;
  memcpy(buf, data_ + offset, len);
  return 0;
}

}  // namespace spdk_node

#include "malloc.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace spdk_node {

namespace {

#ifdef MADV_POPULATE_WRITE
constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kMadvPopulateWrite = 23;  // <linux/mman.h>, Linux 5.14
#endif

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
  // Transparent huge pages where the kernel offers them (THP "madvise" or "always"), as SPDK's
  // malloc bdev lives in hugepage memory. With 4 KiB pages, random I/O over a bdev much larger
  // than the TLB's reach pays a page walk on nearly every I/O, and its cost depends on where the
  // kernel happened to place the pages: two equal malloc bdevs then differ by up to ~10% in
  // random 4 KiB IOPS (bench/RESULTS.md, lvol-io). The mapping is 2 MiB-aligned so that every
  // part of it can be a huge page.
  const size_t huge = 2u << 20;
  const size_t map_len = len + huge;
  void* m = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    *errno_out = ENOMEM;
    return nullptr;
  }
  uint8_t* p = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(m) + huge - 1) & ~(uintptr_t{huge} - 1));
  const size_t head = static_cast<size_t>(p - static_cast<uint8_t*>(m));
  if (head != 0) munmap(m, head);
  if (map_len - head > len) munmap(p + len, map_len - head - len);
  madvise(p, len, MADV_HUGEPAGE);  // best effort: without THP it stays 4 KiB pages
  // Populated up front, as SPDK's malloc bdev zeroes its memory at creation: I/O never pays a
  // page fault, and reads of never-written blocks cost what reads of written blocks cost.
  // MADV_POPULATE_WRITE (Linux 5.14) fails cleanly when memory runs out; older kernels touch
  // every page instead.
  if (madvise(p, len, kMadvPopulateWrite) != 0) {
    if (errno != EINVAL) {
      munmap(p, len);
      *errno_out = ENOMEM;
      return nullptr;
    }
    for (size_t off = 0; off < len; off += 4096) p[off] = 0;
  }
  return new MallocBdev(name, num_blocks, block_size, uuid, p, len);
}

MallocBdev::MallocBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                       const std::string& uuid, uint8_t* data, size_t len)
    : Bdev(name, "Malloc disk", block_size, num_blocks, uuid), data_(data), len_(len) {}

MallocBdev::~MallocBdev() { munmap(data_, len_); }

BdevChannel* MallocBdev::CreateChannel(Reactor* reactor) { return new MallocChannel(this, reactor); }

int MallocBdev::ReadSync(uint64_t offset, void* buf, size_t len) {
  if (offset > len_ || len > len_ - offset) return -EINVAL;
  memcpy(buf, data_ + offset, len);
  return 0;
}

}  // namespace spdk_node

// The builtin engine's block device layer (SPDK's bdev idea).
//
// A Bdev is created and deleted on the JS thread (by the RPC layer) and is immutable while it
// lives, except for `removed_`, the JS-thread fields (aliases, claimed, taste_error) and an
// lvol's size (resize). I/O goes through a BdevChannel: one per (bdev, reactor), created
// and used only on that reactor's thread. A channel holds a reference on its bdev, so a deleted
// bdev's memory stays until its last channel is gone.
//
// I/O contract (SPDK's): Submit() never fails synchronously; every submitted BdevIo completes
// exactly once, by calling io->Complete(status) on the channel's reactor thread (possibly from
// inside Submit()). status is 0 or a negative errno.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

namespace spdk_node {

class Reactor;
class Bdev;
class BdevChannel;
struct BdevIo;

enum class IoType : uint8_t {
  kRead = 1,
  kWrite = 2,
  kFlush = 3,
  kUnmap = 4,
  kWriteZeroes = 5,
};

const char* IoTypeName(IoType t);

using IoCompleteFn = void (*)(BdevIo* io, int status, void* ctx);

// One I/O. Owned by whoever submits it (preallocated by an IoQueue slot); the bdev layer only
// borrows it between Submit() and Complete().
struct BdevIo {
  IoType type = IoType::kRead;
  uint64_t offset_blocks = 0;
  uint64_t num_blocks = 0;
  // Scatter-gather list for read/write (unused for flush/unmap/write_zeroes).
  // iovs points to inline_iov unless the I/O has more than one segment.
  struct iovec* iovs = nullptr;
  int iovcnt = 0;
  IoCompleteFn cb = nullptr;
  void* cb_ctx = nullptr;
  // Driver scratch space (a driver may keep per-I/O state here between Submit and Complete).
  uint64_t driver_ctx[4] = {0, 0, 0, 0};

  void Complete(int status) { cb(this, status, cb_ctx); }
};

class BdevChannel {
 public:
  BdevChannel(Bdev* bdev, Reactor* reactor);
  virtual ~BdevChannel();
  Bdev* bdev() const { return bdev_; }
  Reactor* reactor() const { return reactor_; }
  // Reactor thread only. Validation of range and alignment is the caller's job (IoQueue checks
  // on the JS thread before the I/O is queued); drivers may still fail an I/O with an errno.
  virtual void Submit(BdevIo* io) = 0;

 protected:
  Bdev* bdev_;
  Reactor* reactor_;
};

struct BdevStats {
  std::atomic<uint64_t> bytes_read{0}, num_read_ops{0};
  std::atomic<uint64_t> bytes_written{0}, num_write_ops{0};
  std::atomic<uint64_t> bytes_unmapped{0}, num_unmap_ops{0};
  std::atomic<uint64_t> num_flush_ops{0}, num_write_zeroes_ops{0}, bytes_write_zeroes{0};
  std::atomic<uint64_t> read_latency_ticks{0}, write_latency_ticks{0}, unmap_latency_ticks{0};
  std::atomic<uint64_t> io_errors{0};

  // Any thread: counts one completed I/O (bdev_get_iostat).
  void Record(IoType type, uint64_t bytes, uint64_t latency_ns, int status);
};

class Bdev {
 public:
  Bdev(std::string name, std::string product_name, uint32_t block_size, uint64_t num_blocks,
       std::string uuid);
  virtual ~Bdev();

  const std::string& name() const { return name_; }
  const std::string& product_name() const { return product_name_; }
  uint32_t block_size() const { return block_size_; }
  // Fixed for most drivers; an lvol's changes on resize (any thread may read it).
  uint64_t num_blocks() const { return num_blocks_.load(std::memory_order_acquire); }
  const std::string& uuid() const { return uuid_; }
  // Required buffer alignment in bytes for this bdev's I/O (1 = none; O_DIRECT files need the
  // logical block size).
  virtual uint32_t required_alignment() const { return 1; }
  // Every type, less the write types while read-only (SPDK's lvol and aio bdevs report it so).
  virtual bool io_type_supported(IoType t) const {
    return !(read_only() && (t == IoType::kWrite || t == IoType::kUnmap || t == IoType::kWriteZeroes));
  }
  virtual bool read_only() const { return false; }
  // The errno a write to a read_only() bdev fails with (SPDK's lvols answer EPERM).
  virtual int read_only_errno() const { return EROFS; }
  // Driver name as SPDK's bdev_get_bdevs reports it in driver_specific ("malloc", "uring", ...).
  virtual const char* driver() const = 0;

  // Reactor thread only: a new channel for `reactor`.
  virtual BdevChannel* CreateChannel(Reactor* reactor) = 0;

  // Synchronous read of `len` bytes at byte `offset` (both multiples of the block size), for
  // tasting a new bdev on the JS thread before any channel exists. 0 or a negative errno.
  virtual int ReadSync(uint64_t /*offset*/, void* /*buf*/, size_t /*len*/) { return -ENOTSUP; }

  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  // Deletes the bdev when the last reference goes (any thread).
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }
  // Set when the bdev is deleted; new opens and new I/O fail with -ENODEV.
  bool removed() const { return removed_.load(std::memory_order_acquire); }
  void MarkRemoved() { removed_.store(true, std::memory_order_release); }
  // Count of open descriptors (JS thread only): the JSON "claimed" field is separate.
  int open_count = 0;
  // JS thread only. Other names the bdev is found by (an lvol's "<lvstore>/<lvol>").
  std::vector<std::string> aliases;
  // JS thread only. Set while a module (an lvstore, the NVMe-oF target) owns the bdev: no I/O
  // queues may open it. claim_type: SPDK's name for the claim ("read_many_write_one" for an
  // lvstore's base, "exclusive_write" for an exported namespace).
  bool claimed = false;
  const char* claim_type = "";
  // JS thread only. Why the lvstore found on this bdev at creation was not loaded ("" = none).
  std::string taste_error;

  BdevStats stats;

 protected:
  void set_num_blocks(uint64_t n) { num_blocks_.store(n, std::memory_order_release); }

 private:
  std::string name_, product_name_;
  uint32_t block_size_;
  std::atomic<uint64_t> num_blocks_;
  std::string uuid_;
  std::atomic<int> refs_{1};
  std::atomic<bool> removed_{false};
};

// Helpers shared by drivers.
std::string GenerateUuid();
// Fills an iovec list with zeroes / copies between a flat region and an iovec list.
void CopyToIovs(const struct iovec* iovs, int iovcnt, const uint8_t* src, uint64_t len);
void CopyFromIovs(uint8_t* dst, const struct iovec* iovs, int iovcnt, uint64_t len);

}  // namespace spdk_node

// File-backed bdev (SPDK's bdev_aio / bdev_uring idea): a regular file or a block device, with
// I/O through one io_uring per channel.
//
// - Opened O_DIRECT where the file system allows it; where O_DIRECT open fails with EINVAL
//   (e.g. ramfs, some FUSE file systems) it falls back to buffered I/O and says so in direct().
// - Unmap punches a hole (FALLOC_FL_PUNCH_HOLE; on block devices the kernel turns that into a
//   write-zeroes/discard that guarantees zeroes), write_zeroes uses FALLOC_FL_ZERO_RANGE; where
//   the file or device does not support those, the channel writes zeroes from a buffer. Either
//   way an unmapped range reads back as zeroes.
// - driver() reports the name the bdev was created with ("aio" or "uring"): both use io_uring
//   underneath; the name only keeps SPDK's RPC names and bdev_get_bdevs output.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "bdev.h"

namespace spdk_node {

class FileBdev : public Bdev {
 public:
  struct Params {
    std::string name, filename, driver, uuid;
    uint32_t block_size = 0;        // 0 = detected
    bool read_only = false;
  };

  ~FileBdev() override;

  uint32_t required_alignment() const override { return direct_ ? logical_block_size_ : 1; }
  bool read_only() const override { return read_only_; }
  const char* driver() const override { return driver_.c_str(); }
  // Reactor thread. Never null: if the channel's io_uring cannot be set up (a memory limit, too
  // many rings) the channel completes every I/O with that errno.
  BdevChannel* CreateChannel(Reactor* reactor) override;
  // pread through an aligned bounce buffer (the fd may be O_DIRECT).
  int ReadSync(uint64_t offset, void* buf, size_t len) override;

  // For bdev_get_bdevs' driver_specific section.
  const std::string& filename() const { return filename_; }
  bool block_size_override() const { return block_size_override_; }
  bool direct() const { return direct_; }
  bool is_block_device() const { return is_block_device_; }
  uint32_t logical_block_size() const { return logical_block_size_; }

  int fd() const { return fd_; }
  // The file's or device's size now, in bytes (for bdev_aio_rescan / bdev_uring_rescan), or a
  // negative errno.
  int64_t CurrentSize() const;
  // JS thread, after CurrentSize(): the new block count (the rescan checks allowed it).
  void Rescanned(uint64_t num_blocks) { set_num_blocks(num_blocks); }

  // Learned at run time and shared by every channel: once the file system answers that it
  // cannot punch holes / zero ranges, channels go straight to the fallback.
  std::atomic<bool> punch_hole_supported{true};
  std::atomic<bool> zero_range_supported{true};

 private:
  friend Bdev* CreateFileBdev(const std::string&, const std::string&, uint32_t, bool,
                              const std::string&, const std::string&, std::string*, int*);
  FileBdev(const Params& p, uint64_t num_blocks, int fd, bool direct, bool is_block_device,
           uint32_t logical_block_size);

  std::string filename_, driver_;
  int fd_;
  bool read_only_;
  bool direct_;
  bool is_block_device_;
  bool block_size_override_;
  uint32_t logical_block_size_;
};

// Opens `filename` and creates a FileBdev (JS thread). block_size 0 detects it (the device's
// logical block size; 512 for regular files unless the file system reports a larger direct-I/O
// alignment). On failure returns nullptr with a message in *err and a positive errno in
// *errno_out (ENOENT, EACCES, EINVAL for a bad block size or an empty file, ...).
//
// The io_uring is probed here too, so a kernel or sandbox (seccomp) that forbids io_uring fails
// bdev creation with a clear error rather than every I/O later.
Bdev* CreateFileBdev(const std::string& name, const std::string& filename, uint32_t block_size,
                     bool read_only, const std::string& driver, const std::string& uuid,
                     std::string* err, int* errno_out);

}  // namespace spdk_node

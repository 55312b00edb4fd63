#include "file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../reactor/reactor.h"
#include "uring.h"

namespace spdk_node {

namespace {

constexpr unsigned kRingEntries = 256;
// Zero-write fallback: one zeroed buffer per channel, reused for every chunk.
constexpr uint64_t kZeroBufSize = 1ull << 20;
// A single READ/WRITE's length must fit the SQE's 32-bit len; a longer single-segment I/O is
// simply issued in pieces by the short-I/O path.
constexpr uint64_t kMaxSingleRw = 1ull << 30;
// Interrupt-mode eventfd housekeeping: how often an idle poller clears the eventfd while
// completions may have signalled it (dirty), and how often otherwise (a safety sweep).
constexpr uint64_t kEventFdDirtyCheckUs = 50;
constexpr uint64_t kEventFdCleanCheckUs = 10000;

// What an I/O is doing now. An unmap may step punch-hole -> zero-range -> zero-write as the
// file system turns out not to support each.
enum Stage : uint64_t {
  kStageRw = 0,
  kStageFlush,
  kStagePunchHole,
  kStageZeroRange,
  kStageZeroWrite,
};

// Per-I/O state in BdevIo::driver_ctx: [0] bytes done, [1] next pending I/O, [2] stage,
// [3] a heap iovec array describing the rest of a short vectored I/O (rare path), or null.
// Pointers are stored as integers (not type-punned) so strict aliasing holds.
uint64_t& DoneBytes(BdevIo* io) { return io->driver_ctx[0]; }
uint64_t& StageOf(BdevIo* io) { return io->driver_ctx[2]; }
BdevIo* NextPending(const BdevIo* io) { return reinterpret_cast<BdevIo*>(io->driver_ctx[1]); }
void SetNextPending(BdevIo* io, BdevIo* next) {
  io->driver_ctx[1] = reinterpret_cast<uintptr_t>(next);
}
struct iovec* RemainderIovs(const BdevIo* io) {
  return reinterpret_cast<struct iovec*>(io->driver_ctx[3]);
}
void SetRemainderIovs(BdevIo* io, struct iovec* iovs) {
  io->driver_ctx[3] = reinterpret_cast<uintptr_t>(iovs);
}
static_assert(sizeof(BdevIo*) <= sizeof(uint64_t), "driver_ctx holds a pointer");

// fallocate modes a file system (or an io_uring too old for IORING_OP_FALLOCATE) rejects
// answer EOPNOTSUPP, or EINVAL for a mode combination it does not know.
bool FallocateUnsupported(int res) { return res == -EOPNOTSUPP || res == -EINVAL; }

class FileChannel : public BdevChannel {
 public:
  FileChannel(FileBdev* bdev, Reactor* reactor);
  ~FileChannel() override;
  void Submit(BdevIo* io) override;

 private:
  bool Poll();
  bool ServiceEventFd();
  unsigned Reap();
  // Prepares an SQE for the I/O's current step. Returns false when the ring has no free SQE
  // (the caller queues the I/O); true when an SQE was prepared or the I/O was completed.
  bool Issue(BdevIo* io);
  // Issue(), preserving FIFO order behind already-pending I/Os.
  void IssueOrQueue(BdevIo* io) {
    if (pending_head_ != nullptr || !Issue(io)) Enqueue(io);
  }
  void Enqueue(BdevIo* io);
  bool DrainPending();
  void OnCqe(BdevIo* io, int res);
  // Switches an unmap/write_zeroes to the next zeroing method; false if the I/O completed.
  bool StartZeroing(BdevIo* io);
  bool EnterZeroWrite(BdevIo* io);
  void Finish(BdevIo* io, int status);
  uint64_t LengthBytes(const BdevIo* io) const { return io->num_blocks * bdev_->block_size(); }
  uint64_t OffsetBytes(const BdevIo* io) const { return io->offset_blocks * bdev_->block_size(); }

  FileBdev* file_;
  Uring ring_;
  int init_error_ = 0;
  bool fixed_file_ = false;
  bool wake_fd_added_ = false;
  Poller* poller_ = nullptr;
  // FIFO of I/Os waiting for a free SQE, linked through driver_ctx (no allocation).
  BdevIo* pending_head_ = nullptr;
  BdevIo* pending_tail_ = nullptr;
  uint8_t* zero_buf_ = nullptr;
  uint64_t zero_buf_size_ = 0;
  // Interrupt mode: whether the eventfd may hold signals for completions we already reaped.
  bool efd_dirty_ = false;
  bool efd_activity_ = false;
  uint64_t efd_last_check_us_ = 0;
};

FileChannel::FileChannel(FileBdev* bdev, Reactor* reactor)
    : BdevChannel(bdev, reactor), file_(bdev) {
  init_error_ = ring_.Init(kRingEntries);
  if (init_error_ != 0) return;
  int fd = file_->fd();
  fixed_file_ = ring_.RegisterFiles(&fd, 1) == 0;
  int rc = reactor_->AddWakeFd(ring_.event_fd());
  if (rc == 0) {
    wake_fd_added_ = true;
  } else if (!reactor_->polling()) {
    // An interrupt-mode reactor that cannot wait on the ring would sleep through completions.
    init_error_ = rc;
    return;
  }
  poller_ = reactor_->RegisterPoller("file_bdev:" + bdev->name(), [this]() { return Poll(); });
}

FileChannel::~FileChannel() {
  // The caller guarantees nothing is in flight; the ring (a member) is torn down after this.
  if (poller_ != nullptr) reactor_->UnregisterPoller(poller_);
  if (wake_fd_added_) reactor_->RemoveWakeFd(ring_.event_fd());
  free(zero_buf_);
}

void FileChannel::Submit(BdevIo* io) {
  if (init_error_ != 0) return io->Complete(init_error_);
  const uint64_t nb = bdev_->num_blocks();
  if (io->offset_blocks > nb || io->num_blocks > nb - io->offset_blocks) {
    return io->Complete(-EINVAL);
  }
  const bool writes = io->type == IoType::kWrite || io->type == IoType::kUnmap ||
                      io->type == IoType::kWriteZeroes;
  if (writes && file_->read_only()) return io->Complete(-EROFS);
  DoneBytes(io) = 0;
  SetNextPending(io, nullptr);
  SetRemainderIovs(io, nullptr);
  switch (io->type) {
    case IoType::kRead:
    case IoType::kWrite: {
      if (io->num_blocks == 0) return io->Complete(0);
      uint64_t total = 0;
      for (int i = 0; i < io->iovcnt; i++) total += io->iovs[i].iov_len;
      // The iovecs must describe exactly the range: more would touch blocks outside it.
      if (io->iovcnt <= 0 || total != LengthBytes(io)) return io->Complete(-EINVAL);
      StageOf(io) = kStageRw;
      break;
    }
    case IoType::kFlush:
      StageOf(io) = kStageFlush;
      break;
    case IoType::kUnmap:
      if (io->num_blocks == 0) return io->Complete(0);
      if (file_->punch_hole_supported.load(std::memory_order_relaxed)) {
        StageOf(io) = kStagePunchHole;
      } else if (!StartZeroing(io)) {
        return;
      }
      break;
    case IoType::kWriteZeroes:
      if (io->num_blocks == 0) return io->Complete(0);
      if (!StartZeroing(io)) return;
      break;
    default:
      return io->Complete(-ENOTSUP);
  }
  IssueOrQueue(io);
}

bool FileChannel::StartZeroing(BdevIo* io) {
  DoneBytes(io) = 0;
  if (file_->zero_range_supported.load(std::memory_order_relaxed)) {
    StageOf(io) = kStageZeroRange;
    return true;
  }
  return EnterZeroWrite(io);
}

bool FileChannel::EnterZeroWrite(BdevIo* io) {
  if (zero_buf_ == nullptr) {
    // Allocated on first use: most channels never need it. 4 KiB alignment satisfies O_DIRECT
    // on any logical block size up to 4 KiB; larger blocks get a buffer aligned to themselves.
    uint64_t size = std::max<uint64_t>(kZeroBufSize, bdev_->block_size());
    size_t align = std::max<size_t>(4096, file_->logical_block_size());
    void* p = nullptr;
    if (posix_memalign(&p, align, size) != 0) {
      Finish(io, -ENOMEM);
      return false;
    }
    memset(p, 0, size);
    zero_buf_ = static_cast<uint8_t*>(p);
    zero_buf_size_ = size;
  }
  StageOf(io) = kStageZeroWrite;
  DoneBytes(io) = 0;
  return true;
}

bool FileChannel::Issue(BdevIo* io) {
  const uint64_t len = LengthBytes(io);
  const uint64_t off = OffsetBytes(io);
  const uint64_t done = DoneBytes(io);
  const uint64_t ud = reinterpret_cast<uint64_t>(io);
  const int fd = fixed_file_ ? 0 : file_->fd();

  // A resumed vectored I/O whose remainder starts inside a segment needs its own iovec array
  // (the caller's must not be modified). Built before taking an SQE so a failed allocation
  // leaves no SQE half-filled.
  const struct iovec* iovs = io->iovs;
  int iovcnt = io->iovcnt;
  uint64_t skip = done;
  if (StageOf(io) == kStageRw) {
    free(RemainderIovs(io));  // the previous attempt's, if any: it has completed
    SetRemainderIovs(io, nullptr);
    while (iovcnt > 0 && skip >= iovs[0].iov_len) {
      skip -= iovs[0].iov_len;
      iovs++;
      iovcnt--;
    }
    if (iovcnt > 1 && skip > 0) {
      auto* rem = static_cast<struct iovec*>(malloc(sizeof(struct iovec) * iovcnt));
      if (rem == nullptr) {
        Finish(io, -ENOMEM);
        return true;
      }
      memcpy(rem, iovs, sizeof(struct iovec) * iovcnt);
      rem[0].iov_base = static_cast<uint8_t*>(rem[0].iov_base) + skip;
      rem[0].iov_len -= skip;
      SetRemainderIovs(io, rem);
      iovs = rem;
      skip = 0;
    }
  }

  io_uring_sqe* sqe = ring_.GetSqe();
  if (sqe == nullptr) return false;
  switch (StageOf(io)) {
    case kStageRw: {
      const bool read = io->type == IoType::kRead;
      if (iovcnt == 1) {
        // One segment: plain READ/WRITE avoids the kernel's iovec import.
        uint64_t n = std::min<uint64_t>(iovs[0].iov_len - skip, kMaxSingleRw);
        Uring::PrepRw(sqe, read ? IORING_OP_READ : IORING_OP_WRITE, fd,
                      static_cast<uint8_t*>(iovs[0].iov_base) + skip, static_cast<uint32_t>(n),
                      off + done, ud);
      } else {
        Uring::PrepRw(sqe, read ? IORING_OP_READV : IORING_OP_WRITEV, fd, iovs,
                      static_cast<uint32_t>(iovcnt), off + done, ud);
      }
      break;
    }
    case kStageFlush:
      Uring::PrepFsync(sqe, fd, IORING_FSYNC_DATASYNC, ud);
      break;
    case kStagePunchHole:
      // On a block device the kernel implements this as a zeroing discard that guarantees
      // zeroes on read (BLKDEV_ZERO_NOFALLBACK), or answers EOPNOTSUPP.
      Uring::PrepFallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len, ud);
      break;
    case kStageZeroRange:
      Uring::PrepFallocate(sqe, fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len, ud);
      break;
    case kStageZeroWrite: {
      uint64_t n = std::min(len - done, zero_buf_size_);
      Uring::PrepRw(sqe, IORING_OP_WRITE, fd, zero_buf_, static_cast<uint32_t>(n), off + done,
                    ud);
      break;
    }
  }
  if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
  return true;
}

void FileChannel::Enqueue(BdevIo* io) {
  SetNextPending(io, nullptr);
  if (pending_tail_ != nullptr) {
    SetNextPending(pending_tail_, io);
  } else {
    pending_head_ = io;
  }
  pending_tail_ = io;
}

bool FileChannel::DrainPending() {
  bool any = false;
  while (pending_head_ != nullptr) {
    BdevIo* io = pending_head_;
    // Unlink first: Issue() may complete the I/O, and its callback may submit more I/O here.
    pending_head_ = NextPending(io);
    if (pending_head_ == nullptr) pending_tail_ = nullptr;
    if (!Issue(io)) {
      SetNextPending(io, pending_head_);
      pending_head_ = io;
      if (pending_tail_ == nullptr) pending_tail_ = io;
      break;
    }
    any = true;
  }
  return any;
}

void FileChannel::Finish(BdevIo* io, int status) {
  free(RemainderIovs(io));
  SetRemainderIovs(io, nullptr);
  io->Complete(status);
}

void FileChannel::OnCqe(BdevIo* io, int res) {
  switch (StageOf(io)) {
    case kStageRw:
    case kStageZeroWrite: {
      if (res == -EINTR || res == -EAGAIN) return IssueOrQueue(io);  // transient: same step again
      if (res < 0) return Finish(io, res);
      // A transfer of 0 bytes means end of file (the file shrank under us) or no progress is
      // possible: fail rather than loop.
      if (res == 0) return Finish(io, -EIO);
      // Short transfer (a signal, a size limit, a partial write before ENOSPC): continue with
      // the rest; a persistent error shows up on the next attempt.
      DoneBytes(io) += static_cast<uint64_t>(res);
      if (DoneBytes(io) >= LengthBytes(io)) return Finish(io, 0);
      return IssueOrQueue(io);
    }
    case kStageFlush:
      return Finish(io, res < 0 ? res : 0);
    case kStagePunchHole:
      if (FallocateUnsupported(res)) {
        file_->punch_hole_supported.store(false, std::memory_order_relaxed);
        if (StartZeroing(io)) IssueOrQueue(io);
        return;
      }
      return Finish(io, res < 0 ? res : 0);
    case kStageZeroRange:
      if (FallocateUnsupported(res)) {
        file_->zero_range_supported.store(false, std::memory_order_relaxed);
        if (EnterZeroWrite(io)) IssueOrQueue(io);
        return;
      }
      return Finish(io, res < 0 ? res : 0);
  }
}

unsigned FileChannel::Reap() {
  return ring_.ForEachCqe([this](uint64_t user_data, int32_t res) {
    OnCqe(reinterpret_cast<BdevIo*>(user_data), res);
  });
}

bool FileChannel::Poll() {
  bool busy = Reap() > 0;
  // Completions freed SQEs: move waiting I/Os into the ring before submitting.
  if (pending_head_ != nullptr && DrainPending()) busy = true;
  // One io_uring_enter per iteration submits everything Submit()/OnCqe() prepared since the last.
  // (A transient refusal leaves the SQEs queued, and staying busy retries on the next iteration.
  // The kernel fails individual bad SQEs through their CQEs, so a hard error here would mean the
  // ring itself is broken.)
  if (ring_.sq_pending() > 0) {
    ring_.Submit();
    busy = true;
  }
  if (!reactor_->polling()) {
    if (busy) {
      efd_dirty_ = true;
      efd_activity_ = true;
    } else if (ServiceEventFd()) {
      busy = true;
    }
  }
  return busy;
}

// Interrupt mode only. The kernel signals the eventfd after posting completions; the reactor
// waits on it level-triggered, so signals for completions we already reaped would wake it
// forever. Reading the eventfd on every poll would cost a syscall per iteration under load, so
// an idle poller clears it every kEventFdDirtyCheckUs while completions may have signalled it
// (the reactor spins longer than that before it sleeps), and rarely otherwise (a signal can land
// after the kernel's tail update we already reaped; the sweep bounds that rare spurious wake).
// Clearing is always followed by a reap: a consumed signal's completion is then reaped here,
// because the kernel publishes the CQ tail before it signals.
bool FileChannel::ServiceEventFd() {
  uint64_t now = Reactor::NowUs();
  uint64_t interval = efd_dirty_ ? kEventFdDirtyCheckUs : kEventFdCleanCheckUs;
  if (now - efd_last_check_us_ < interval) return false;
  efd_last_check_us_ = now;
  bool signalled = ring_.DrainEventFd();
  if (Reap() > 0) {
    efd_activity_ = true;
    return true;
  }
  // Clean once a whole check interval passed with no activity, nothing in flight and nothing
  // left in the eventfd.
  if (!signalled && !efd_activity_ && ring_.outstanding() == 0) efd_dirty_ = false;
  efd_activity_ = false;
  return false;
}

}  // namespace

FileBdev::FileBdev(const Params& p, uint64_t num_blocks, int fd, bool direct,
                   bool is_block_device, uint32_t logical_block_size)
    : Bdev(p.name, p.driver == "uring" ? "URING bdev" : "AIO disk",
           p.block_size, num_blocks, p.uuid),
      filename_(p.filename),
      driver_(p.driver),
      fd_(fd),
      read_only_(p.read_only),
      direct_(direct),
      is_block_device_(is_block_device),
      block_size_override_(false),
      logical_block_size_(logical_block_size) {}

FileBdev::~FileBdev() {
  if (fd_ >= 0) close(fd_);
}

int64_t FileBdev::CurrentSize() const {
  if (is_block_device_) {
    uint64_t size = 0;
    if (ioctl(fd_, BLKGETSIZE64, &size) != 0) return -errno;
    return static_cast<int64_t>(size);
  }
  struct stat st;
  if (fstat(fd_, &st) != 0) return -errno;
  return static_cast<int64_t>(st.st_size);
}

BdevChannel* FileBdev::CreateChannel(Reactor* reactor) {
  // A channel whose ring failed to initialise still honours the I/O contract: it completes
  // every I/O with the setup errno (CreateFileBdev probed io_uring, so this is rare).
  return new FileChannel(this, reactor);
}

int FileBdev::ReadSync(uint64_t offset, void* buf, size_t len) {
  const uint64_t size = num_blocks() * block_size();
  if (offset > size || len > size - offset) return -EINVAL;
  // O_DIRECT wants offset, length and memory aligned to the logical block size.
  const uint64_t align = std::max<uint64_t>(logical_block_size_, 4096);
  const uint64_t start = offset / align * align;
  const uint64_t end = std::min<uint64_t>((offset + len + align - 1) / align * align,
                                          (size + align - 1) / align * align);
  void* bounce = nullptr;
  if (posix_memalign(&bounce, align, end - start) != 0) return -ENOMEM;
  uint64_t done = 0;
  int rc = 0;
  while (start + done < end) {
    ssize_t n = pread(fd_, static_cast<uint8_t*>(bounce) + done, end - start - done,
                      static_cast<off_t>(start + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0) break;  // end of file: the rest stays as read so far
    done += static_cast<uint64_t>(n);
  }
  if (rc == 0 && start + done < offset + len) rc = -EIO;
  if (rc == 0) memcpy(buf, static_cast<uint8_t*>(bounce) + (offset - start), len);
  free(bounce);
  return rc;
}

Bdev* CreateFileBdev(const std::string& name, const std::string& filename, uint32_t block_size,
                     bool read_only, const std::string& driver, const std::string& uuid,
                     std::string* err, int* errno_out) {
  int fd = -1;
  auto fail = [&](int e, const std::string& msg) -> Bdev* {
    if (fd >= 0) close(fd);
    if (err != nullptr) *err = msg;
    if (errno_out != nullptr) *errno_out = e;
    return nullptr;
  };
  if (name.empty()) return fail(EINVAL, "bdev name must not be empty");
  if (filename.empty()) return fail(EINVAL, "filename must not be empty");
  if (driver != "aio" && driver != "uring") {
    return fail(EINVAL, "unknown file bdev driver '" + driver + "' (expected aio or uring)");
  }
  if (block_size != 0 && (block_size < 512 || (block_size & (block_size - 1)) != 0)) {
    return fail(EINVAL, "Invalid block size " + std::to_string(block_size) +
                            " specified; must be a power of 2 and at least 512");
  }

  const int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  bool direct = true;
  fd = open(filename.c_str(), flags | O_DIRECT);
  if (fd < 0 && errno == EINVAL) {
    // The file system refuses O_DIRECT (ramfs, some FUSE/overlay setups): buffered I/O.
    direct = false;
    fd = open(filename.c_str(), flags);
  }
  if (fd < 0) {
    int e = errno;
    return fail(e, "Unable to open file " + filename + ": " + strerror(e));
  }

  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    return fail(e, "fstat " + filename + ": " + strerror(e));
  }
  uint64_t size = 0;
  uint32_t lbs = 512;
  bool is_blk = false;
  if (S_ISBLK(st.st_mode)) {
    is_blk = true;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) {
      int e = errno;
      return fail(e, "BLKGETSIZE64 on " + filename + ": " + strerror(e));
    }
    int ssz = 0;
    if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz >= 512) lbs = static_cast<uint32_t>(ssz);
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
#ifdef STATX_DIOALIGN
    // A file on a 4Kn disk needs 4 KiB-aligned O_DIRECT offsets; the kernel (6.1+) tells us.
    struct statx sx;
    if (direct && statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align > lbs) {
      lbs = sx.stx_dio_offset_align;
    }
#endif
  } else {
    return fail(EINVAL, filename + " is not a regular file or a block device");
  }

  bool override = block_size != 0;
  if (!override) {
    block_size = lbs;
  } else if (block_size < lbs) {
    return fail(EINVAL, "Specified block size " + std::to_string(block_size) +
                            " is smaller than the logical block size " + std::to_string(lbs) +
                            " of " + filename);
  }
  // SPDK's aio and uring modules refuse a size that is not a whole number of blocks.
  if (size % block_size != 0) {
    return fail(EINVAL, "Disk size " + std::to_string(size) + " of " + filename +
                            " is not a multiple of block size " + std::to_string(block_size));
  }
  uint64_t num_blocks = size / block_size;
  if (num_blocks == 0) {
    return fail(EINVAL, "Disk size " + std::to_string(size) + " of " + filename +
                            " is smaller than block size " + std::to_string(block_size));
  }

  {
    // Probe io_uring now (seccomp'd containers and kernel.io_uring_disabled forbid it) so the
    // failure is a clear creation error, not an errno on every I/O.
    Uring probe;
    int rc = probe.Init(4);
    if (rc < 0) return fail(-rc, std::string("io_uring is not available: ") + strerror(-rc));
  }

  FileBdev::Params p;
  p.name = name;
  p.filename = filename;
  p.driver = driver;
  p.uuid = uuid;
  p.block_size = block_size;
  p.read_only = read_only;
  auto* bdev = new FileBdev(p, num_blocks, fd, direct, is_blk, lbs);
  bdev->block_size_override_ = override;
  return bdev;
}

}  // namespace spdk_node

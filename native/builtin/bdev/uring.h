// A minimal io_uring wrapper for the builtin engine (no liburing: raw syscalls on the kernel's
// <linux/io_uring.h> ABI, so a fresh machine needs nothing but Linux headers).
//
// One Uring belongs to one thread (a reactor); nothing here is thread-safe, and it is used
// without SQPOLL, so the kernel touches the submission queue only inside io_uring_enter().
//
// Usage: GetSqe() + fill it (Prep* helpers) for every operation, then Submit() once per batch;
// ForEachCqe() reaps completions. Every SQE handed out produces exactly one CQE (no multishot,
// no CQE skipping), which is what lets Uring cap the operations in flight at the CQ size so the
// completion queue can never overflow.
#pragma once

#include <linux/io_uring.h>

#include <cstddef>
#include <cstdint>

namespace spdk_node {

class Uring {
 public:
  Uring() = default;
  ~Uring();
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;

  // Sets up a ring with (at least) `entries` submission slots, maps its rings and creates an
  // eventfd registered with the ring (IORING_REGISTER_EVENTFD) so a sleeping reactor can wait on
  // it. Returns 0 or -errno. On failure the object is left torn down (Init may be retried).
  int Init(unsigned entries);
  bool initialized() const { return ring_fd_ >= 0; }

  // Registers `fds` as fixed files (IOSQE_FIXED_FILE + index saves an fget/fput per I/O).
  // Returns 0 or -errno; callers fall back to plain fds on failure.
  int RegisterFiles(const int* fds, unsigned count);

  // A zeroed SQE to fill, or nullptr when the submission queue is full or as many operations as
  // the completion queue holds are already outstanding. Every SQE returned must be filled: it
  // is part of the next Submit().
  io_uring_sqe* GetSqe();

  // Hands every SQE prepared since the last call to the kernel with one io_uring_enter. Returns
  // the number the kernel consumed (>= 0), 0 when it was busy (EAGAIN/EBUSY/EINTR: the SQEs stay
  // queued for the next call), or another -errno.
  int Submit();

  // Calls fn(user_data, res) for up to `max` available completions, oldest first; returns the
  // number reaped. fn may call GetSqe()/Submit() (the CQE's slot is released before fn runs).
  template <typename Fn>
  unsigned ForEachCqe(Fn&& fn, unsigned max = ~0u);

  // Reads (clears) the eventfd without blocking; returns true if it was signalled.
  bool DrainEventFd();

  int event_fd() const { return event_fd_; }
  unsigned sq_entries() const { return sq_entries_; }
  unsigned cq_entries() const { return cq_entries_; }
  // SQEs prepared but not yet consumed by the kernel.
  unsigned sq_pending() const;
  // SQEs handed out whose CQE has not been reaped yet.
  unsigned outstanding() const { return outstanding_; }

  // Fill helpers (the SQE is already zeroed by GetSqe()).
  static void PrepRw(io_uring_sqe* sqe, uint8_t op, int fd, const void* addr, uint32_t len,
                     uint64_t offset, uint64_t user_data) {
    sqe->opcode = op;
    sqe->fd = fd;
    sqe->addr = reinterpret_cast<uint64_t>(addr);
    sqe->len = len;
    sqe->off = offset;
    sqe->user_data = user_data;
  }
  static void PrepFsync(io_uring_sqe* sqe, int fd, uint32_t fsync_flags, uint64_t user_data) {
    sqe->opcode = IORING_OP_FSYNC;
    sqe->fd = fd;
    sqe->fsync_flags = fsync_flags;
    sqe->user_data = user_data;
  }
  // IORING_OP_FALLOCATE's odd encoding: the length travels in addr and the mode in len.
  static void PrepFallocate(io_uring_sqe* sqe, int fd, int mode, uint64_t offset, uint64_t len,
                            uint64_t user_data) {
    sqe->opcode = IORING_OP_FALLOCATE;
    sqe->fd = fd;
    sqe->off = offset;
    sqe->addr = len;
    sqe->len = static_cast<uint32_t>(mode);
    sqe->user_data = user_data;
  }

 private:
  void TearDown();

  int ring_fd_ = -1;
  int event_fd_ = -1;
  bool files_registered_ = false;

  // Mappings (sq_ring_ and cq_ring_ are the same mapping with IORING_FEAT_SINGLE_MMAP).
  void* sq_ring_ = nullptr;
  size_t sq_ring_size_ = 0;
  void* cq_ring_ = nullptr;
  size_t cq_ring_size_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqes_size_ = 0;

  // Pointers into the shared rings.
  unsigned* ksq_head_ = nullptr;  // written by the kernel
  unsigned* ksq_tail_ = nullptr;  // written by us
  unsigned* ksq_flags_ = nullptr;
  unsigned* kcq_head_ = nullptr;  // written by us
  unsigned* kcq_tail_ = nullptr;  // written by the kernel
  io_uring_cqe* cqes_ = nullptr;

  unsigned sq_entries_ = 0, sq_mask_ = 0;
  unsigned cq_entries_ = 0, cq_mask_ = 0;
  unsigned sqe_tail_ = 0;      // local tail: SQEs handed out by GetSqe()
  unsigned outstanding_ = 0;   // handed out, CQE not reaped yet
};

template <typename Fn>
unsigned Uring::ForEachCqe(Fn&& fn, unsigned max) {
  if (ring_fd_ < 0) return 0;
  // Only this thread writes the CQ head, so a relaxed read of our own value is enough.
  unsigned head = __atomic_load_n(kcq_head_, __ATOMIC_RELAXED);
  // Acquire pairs with the kernel's store-release of the tail after it writes a CQE: every CQE
  // before `tail` is fully written and visible once we see the tail value.
  unsigned tail = __atomic_load_n(kcq_tail_, __ATOMIC_ACQUIRE);
  unsigned n = 0;
  while (head != tail && n < max) {
    const io_uring_cqe* cqe = &cqes_[head & cq_mask_];
    uint64_t user_data = cqe->user_data;
    int32_t res = cqe->res;
    ++head;
    // Release orders our reads of the CQE above before the head update: once the kernel sees
    // the new head it may reuse the slot for a new completion.
    __atomic_store_n(kcq_head_, head, __ATOMIC_RELEASE);
    --outstanding_;
    ++n;
    fn(user_data, res);
  }
  return n;
}

}  // namespace spdk_node

#include "uring.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace spdk_node {

namespace {

int SysSetup(unsigned entries, io_uring_params* p) {
  return static_cast<int>(syscall(__NR_io_uring_setup, entries, p));
}

int SysEnter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags) {
  return static_cast<int>(
      syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, nullptr, 0));
}

int SysRegister(int fd, unsigned opcode, const void* arg, unsigned nr_args) {
  return static_cast<int>(syscall(__NR_io_uring_register, fd, opcode, arg, nr_args));
}

template <typename T>
T* At(void* base, uint32_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
}

}  // namespace

Uring::~Uring() { TearDown(); }

void Uring::TearDown() {
  if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
  if (cq_ring_ != nullptr && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_ring_size_);
  if (sq_ring_ != nullptr) munmap(sq_ring_, sq_ring_size_);
  // The kernel frees a closed ring (and drops its registered files) later, from a workqueue;
  // unregistering first releases the files now, so whoever deletes the bdev can unmount the file
  // system or detach the device right away.
  if (files_registered_) SysRegister(ring_fd_, IORING_UNREGISTER_FILES, nullptr, 0);
  files_registered_ = false;
  if (ring_fd_ >= 0) close(ring_fd_);
  if (event_fd_ >= 0) close(event_fd_);
  sqes_ = nullptr;
  sq_ring_ = cq_ring_ = nullptr;
  ring_fd_ = event_fd_ = -1;
  sq_entries_ = cq_entries_ = sqe_tail_ = outstanding_ = 0;
}

int Uring::Init(unsigned entries) {
  TearDown();
  io_uring_params p;
  memset(&p, 0, sizeof(p));
  // CLAMP: an oversized request is clamped to the kernel's maximum instead of failing.
  p.flags = IORING_SETUP_CLAMP;
  int fd = SysSetup(entries, &p);
  if (fd < 0) return -errno;
  ring_fd_ = fd;

  sq_ring_size_ = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  cq_ring_size_ = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  bool single_mmap = (p.features & IORING_FEAT_SINGLE_MMAP) != 0;
  // With SINGLE_MMAP (5.4+) the CQ ring lives in the same mapping as the SQ ring, so one mapping
  // of the larger size covers both.
  if (single_mmap) sq_ring_size_ = cq_ring_size_ = std::max(sq_ring_size_, cq_ring_size_);

  int err = 0;
  void* sq = mmap(nullptr, sq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                  IORING_OFF_SQ_RING);
  if (sq == MAP_FAILED) {
    err = -errno;
    TearDown();
    return err;
  }
  sq_ring_ = sq;
  if (single_mmap) {
    cq_ring_ = sq_ring_;
  } else {
    void* cq = mmap(nullptr, cq_ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                    fd, IORING_OFF_CQ_RING);
    if (cq == MAP_FAILED) {
      err = -errno;
      TearDown();
      return err;
    }
    cq_ring_ = cq;
  }
  sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
  void* sqes = mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQES);
  if (sqes == MAP_FAILED) {
    err = -errno;
    TearDown();
    return err;
  }
  sqes_ = static_cast<io_uring_sqe*>(sqes);

  ksq_head_ = At<unsigned>(sq_ring_, p.sq_off.head);
  ksq_tail_ = At<unsigned>(sq_ring_, p.sq_off.tail);
  ksq_flags_ = At<unsigned>(sq_ring_, p.sq_off.flags);
  sq_entries_ = p.sq_entries;
  sq_mask_ = *At<unsigned>(sq_ring_, p.sq_off.ring_mask);
  kcq_head_ = At<unsigned>(cq_ring_, p.cq_off.head);
  kcq_tail_ = At<unsigned>(cq_ring_, p.cq_off.tail);
  cq_entries_ = p.cq_entries;
  cq_mask_ = *At<unsigned>(cq_ring_, p.cq_off.ring_mask);
  cqes_ = At<io_uring_cqe>(cq_ring_, p.cq_off.cqes);

  // The SQ ring holds indexes into the SQE array. We always fill SQEs in ring order, so the
  // index array is the identity mapping, written once here.
  unsigned* array = At<unsigned>(sq_ring_, p.sq_off.array);
  for (unsigned i = 0; i < sq_entries_; i++) array[i] = i;
  sqe_tail_ = __atomic_load_n(ksq_tail_, __ATOMIC_RELAXED);

  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    err = -errno;
    TearDown();
    return err;
  }
  event_fd_ = efd;
  if (SysRegister(ring_fd_, IORING_REGISTER_EVENTFD, &event_fd_, 1) < 0) {
    err = -errno;
    TearDown();
    return err;
  }
  return 0;
}

int Uring::RegisterFiles(const int* fds, unsigned count) {
  if (ring_fd_ < 0) return -EBADF;
  if (SysRegister(ring_fd_, IORING_REGISTER_FILES, fds, count) < 0) return -errno;
  files_registered_ = true;
  return 0;
}

io_uring_sqe* Uring::GetSqe() {
  if (ring_fd_ < 0) return nullptr;
  // Never have more operations outstanding than the CQ holds: then the kernel never has to
  // park completions on its overflow list (which costs and needs an io_uring_enter to flush).
  if (outstanding_ >= cq_entries_) return nullptr;
  // Acquire pairs with the kernel's release of the SQ head: slots before it have been read by
  // the kernel and may be reused. (Without SQPOLL the kernel only moves the head inside our own
  // io_uring_enter, so this is belt and braces.)
  unsigned head = __atomic_load_n(ksq_head_, __ATOMIC_ACQUIRE);
  if (sqe_tail_ - head >= sq_entries_) return nullptr;
  io_uring_sqe* sqe = &sqes_[sqe_tail_ & sq_mask_];
  sqe_tail_++;
  outstanding_++;
  memset(sqe, 0, sizeof(*sqe));
  return sqe;
}

unsigned Uring::sq_pending() const {
  if (ring_fd_ < 0) return 0;
  return sqe_tail_ - __atomic_load_n(ksq_head_, __ATOMIC_ACQUIRE);
}

int Uring::Submit() {
  if (ring_fd_ < 0) return -EBADF;
  // Release publishes the SQE contents written since the last Submit() before the kernel can
  // observe the new tail (it reads the tail with acquire semantics).
  __atomic_store_n(ksq_tail_, sqe_tail_, __ATOMIC_RELEASE);
  // The kernel's head tells how many published SQEs it has not consumed yet; an earlier call
  // that the kernel answered with EAGAIN (or partially consumed) leaves them here.
  unsigned to_submit = sqe_tail_ - __atomic_load_n(ksq_head_, __ATOMIC_ACQUIRE);
  unsigned flags = 0;
  // Completions can only overflow if something bypassed the outstanding cap; if the kernel has
  // parked some anyway, GETEVENTS flushes them into the CQ.
  if (__atomic_load_n(ksq_flags_, __ATOMIC_RELAXED) & IORING_SQ_CQ_OVERFLOW) {
    flags |= IORING_ENTER_GETEVENTS;
  }
  if (to_submit == 0 && flags == 0) return 0;
  int rc = SysEnter(ring_fd_, to_submit, 0, flags);
  if (rc >= 0) return rc;
  int e = errno;
  // Transient: the kernel could not allocate requests (EAGAIN) or has completions to flush
  // first (EBUSY), or a signal interrupted us. The SQEs remain published; the next Submit()
  // offers them again.
  if (e == EAGAIN || e == EBUSY || e == EINTR) return 0;
  return -e;
}

bool Uring::DrainEventFd() {
  if (event_fd_ < 0) return false;
  // A (non-semaphore) eventfd read returns the whole count and resets it: one read clears it.
  uint64_t v;
  return read(event_fd_, &v, sizeof(v)) == static_cast<ssize_t>(sizeof(v));
}

}  // namespace spdk_node

#include "record.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace spdk_node {

namespace {

class RecordChannel : public BdevChannel {
 public:
  RecordChannel(RecordBdev* bdev, Reactor* reactor) : BdevChannel(bdev, reactor), rb_(bdev) {}

  void Submit(BdevIo* io) override {
    const uint64_t bs = rb_->block_size();
    const uint64_t off = io->offset_blocks * bs;
    const uint64_t len = io->num_blocks * bs;
    uint8_t* base = rb_->data() + off;
    RecordedOp op;
    op.offset = off;
    op.length = len;
    switch (io->type) {
      case IoType::kRead:
        CopyToIovs(io->iovs, io->iovcnt, base, len);
        return io->Complete(0);
      case IoType::kWrite:
        CopyFromIovs(base, io->iovs, io->iovcnt, len);
        op.kind = RecordedOp::kWrite;
        op.data.assign(base, base + len);
        break;
      case IoType::kUnmap:
      case IoType::kWriteZeroes:
        memset(base, 0, len);
        op.kind = RecordedOp::kZero;
        break;
      case IoType::kFlush:
        op.kind = RecordedOp::kFlush;
        break;
    }
    rb_->Append(std::move(op));
    io->Complete(0);
  }

 private:
  RecordBdev* rb_;
};

}  // namespace

RecordBdev* RecordBdev::Create(const std::string& name, uint64_t num_blocks, uint32_t block_size, int* errno_out) {
  size_t len = num_blocks * block_size;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    *errno_out = ENOMEM;
    return nullptr;
  }
  return new RecordBdev(name, num_blocks, block_size, static_cast<uint8_t*>(p), len);
}

RecordBdev::RecordBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size, uint8_t* data, size_t len)
    : Bdev(name, "Recording test disk", block_size, num_blocks, ""), data_(data), len_(len) {}

RecordBdev::~RecordBdev() { munmap(data_, len_); }

BdevChannel* RecordBdev::CreateChannel(Reactor* reactor) { return new RecordChannel(this, reactor); }

int RecordBdev::ReadSync(uint64_t offset, void* buf, size_t len) {
  if (offset > len_ || len > len_ - offset) return -EINVAL;
  memcpy(buf, data_ + offset, len);
  return 0;
}

void RecordBdev::Append(RecordedOp op) {
  std::lock_guard<std::mutex> lock(mu_);
  log_.push_back(std::move(op));
}

std::vector<RecordedOp> RecordBdev::TakeLog() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RecordedOp> out;
  out.swap(log_);
  return out;
}

}  // namespace spdk_node

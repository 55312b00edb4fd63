#include "record.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <deque>

#include "../reactor/reactor.h"

namespace spdk_node {

namespace {

class RecordChannel : public BdevChannel {
 public:
  RecordChannel(RecordBdev* bdev, Reactor* reactor) : BdevChannel(bdev, reactor), rb_(bdev) {}
  ~RecordChannel() override {
    // Nothing is in flight (the owner's contract), so the poller has nothing left to do.
    if (poller_ != nullptr) reactor_->UnregisterPoller(poller_);
  }

  void Submit(BdevIo* io) override {
    if (rb_->delay_us() == 0) return Execute(io);
    delayed_.push_back({io, Reactor::NowUs() + rb_->delay_us()});
    if (poller_ == nullptr) {
      // Untimed and busy while anything waits: the reactor spins instead of sleeping (timed
      // pollers do not wake the JS thread's reactor, and sleep in whole milliseconds).
      poller_ = reactor_->RegisterPoller("record_delay", [this]() { return Poll(); });
    }
  }

 private:
  struct Delayed {
    BdevIo* io;
    uint64_t due_us;
  };

  bool Poll() {
    const uint64_t now = Reactor::NowUs();
    bool did = false;
    while (!delayed_.empty() && delayed_.front().due_us <= now) {
      BdevIo* io = delayed_.front().io;
      delayed_.pop_front();
      Execute(io);  // may submit more (appended behind, due later)
      did = true;
    }
    if (delayed_.empty() && poller_ != nullptr) {
      reactor_->UnregisterPoller(poller_);
      poller_ = nullptr;
    }
    return did || !delayed_.empty();
  }

  void Execute(BdevIo* io) {
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

  RecordBdev* rb_;
  std::deque<Delayed> delayed_;
  Poller* poller_ = nullptr;
};

}  // namespace

RecordBdev* RecordBdev::Create(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                               uint64_t delay_us, int* errno_out) {
  size_t len = num_blocks * block_size;
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    *errno_out = ENOMEM;
    return nullptr;
  }
  return new RecordBdev(name, num_blocks, block_size, delay_us, static_cast<uint8_t*>(p), len);
}

RecordBdev::RecordBdev(const std::string& name, uint64_t num_blocks, uint32_t block_size,
                       uint64_t delay_us, uint8_t* data, size_t len)
    : Bdev(name, "Recording test disk", block_size, num_blocks, ""),
      delay_us_(delay_us),
      data_(data),
      len_(len) {}

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

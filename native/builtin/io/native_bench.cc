#include "native_bench.h"

#include <sys/mman.h>

#include <cerrno>
#include <vector>

#include "../../common/clock.h"
#include "../bdev/bdev.h"
#include "../reactor/reactor.h"

namespace spdk_node {

namespace {

struct BenchRun {
  Bdev* bdev;
  Reactor* reactor;
  NativeBenchParams p;
  std::function<void(NativeBenchResult)> done;
  BdevChannel* channel = nullptr;
  Poller* poller = nullptr;
  std::vector<BdevIo> ios;
  std::vector<struct iovec> iovs;
  std::vector<uint32_t> free_list;
  uint8_t* mem = nullptr;
  size_t mem_len = 0;
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  uint64_t completed = 0;
  uint64_t start_ns = 0, end_ns = 0;
  uint32_t in_flight = 0;
  int error = 0;
  bool stopping = false;

  uint64_t Next() {  // xorshift64*: cheap and good enough for offsets
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
  }

  static void OnComplete(BdevIo* io, int status, void* ctx) {
    BenchRun* r = static_cast<BenchRun*>(ctx);
    if (status != 0 && r->error == 0) r->error = -status;
    r->completed++;
    r->in_flight--;
    // Resubmission happens in the poller, never here: a malloc bdev completes inside Submit.
    r->free_list.push_back(static_cast<uint32_t>(io - r->ios.data()));
  }

  bool Poll() {
    bool busy = !free_list.empty();
    const uint64_t now = NowNs();
    if (!stopping && (now - start_ns >= p.duration_us * 1000 || error != 0)) {
      stopping = true;
      end_ns = now;
    }
    const uint64_t span = bdev->num_blocks() / p.io_blocks;
    // At most one round of the queue depth per poll: a malloc bdev completes inside Submit,
    // which would otherwise refill free_list forever within this call.
    for (size_t n = free_list.size(); !stopping && n > 0; n--) {
      BdevIo* io = &ios[free_list.back()];
      free_list.pop_back();
      io->offset_blocks = (Next() % span) * p.io_blocks;
      in_flight++;
      channel->Submit(io);
    }
    if (stopping && in_flight == 0) Finish();
    return busy;
  }

  void Finish() {
    reactor->UnregisterPoller(poller);
    delete channel;
    munmap(mem, mem_len);
    NativeBenchResult res;
    res.ios = completed;
    res.ns = end_ns - start_ns;
    res.error = error;
    auto cb = std::move(done);
    bdev->Unref();
    delete this;
    cb(res);
  }
};

}  // namespace

void RunNativeBench(Bdev* bdev, Reactor* reactor, const NativeBenchParams& p,
                    std::function<void(NativeBenchResult)> done) {
  bdev->Ref();
  BenchRun* r = new BenchRun{bdev, reactor, p, std::move(done)};
  reactor->Send([r]() {
    const size_t io_len = static_cast<size_t>(r->p.io_blocks) * r->bdev->block_size();
    r->mem_len = io_len * r->p.queue_depth;
    void* m = mmap(nullptr, r->mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || r->p.io_blocks == 0 || r->bdev->num_blocks() < r->p.io_blocks) {
      NativeBenchResult res;
      res.error = m == MAP_FAILED ? ENOMEM : EINVAL;
      if (m != MAP_FAILED) munmap(m, r->mem_len);
      auto cb = std::move(r->done);
      r->bdev->Unref();
      delete r;
      cb(res);
      return;
    }
    r->mem = static_cast<uint8_t*>(m);
    r->ios.resize(r->p.queue_depth);
    r->iovs.resize(r->p.queue_depth);
    for (uint32_t i = 0; i < r->p.queue_depth; i++) {
      r->iovs[i].iov_base = r->mem + i * io_len;
      r->iovs[i].iov_len = io_len;
      BdevIo& io = r->ios[i];
      io.type = r->p.write ? IoType::kWrite : IoType::kRead;
      io.num_blocks = r->p.io_blocks;
      io.iovs = &r->iovs[i];
      io.iovcnt = 1;
      io.cb = &BenchRun::OnComplete;
      io.cb_ctx = r;
      r->free_list.push_back(i);
    }
    r->channel = r->bdev->CreateChannel(r->reactor);
    r->start_ns = NowNs();
    r->poller = r->reactor->RegisterPoller("native_bench", [r]() { return r->Poll(); });
  });
}

}  // namespace spdk_node

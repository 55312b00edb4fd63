// Standalone test for the file bdev (FileBdev + Uring) on real files and a loop device.
//
// Build (from native/builtin):
//   g++ -std=c++17 -O2 -g -Wall -Wextra -pthread -o /tmp/file_bdev_test
//     bdev/test/file_bdev_test.cc bdev/file.cc bdev/uring.cc bdev/bdev.cc reactor/reactor.cc
// Add -fsanitize=address,undefined for a sanitizer run, or run the binary under valgrind.
// Root is needed for the loop-device and ramfs cases; without it they are skipped.
//
// What it covers, per backing store (ext4 file with O_DIRECT, the same with 4 KiB blocks on a
// polling reactor, a tmpfs file, a ramfs file (buffered: ramfs refuses O_DIRECT, and has no
// fallocate, so unmap/write_zeroes take the zero-write fallback), a loop device with 4 KiB
// sectors):
//   - batches of ~600 random writes, then reads, at random disjoint offsets/sizes, all in flight
//     at once (more than the 256-entry ring: exercises the channel's pending list), half of them
//     vectored with segments in a scrambled memory order; everything checked against a model
//   - flush; unmap then read -> zeroes; write_zeroes (incl. a 3 MiB one) then read -> zeroes
//   - out-of-range I/O and a mismatched iovec list -> -EINVAL; every I/O completes exactly once
//   - an idle interrupt-mode reactor really sleeps (the ring's eventfd is left clean)
//   - reopening read-only: data intact, writes/unmap/write_zeroes -> -EROFS
//   - a read across a file that shrank underneath: short read, resumed (mid-segment), -> -EIO
//   - a 2.5 GiB readv that the kernel answers short (MAX_RW_COUNT): resumed mid-segment, data
//     on both sides of the cut in the right place
//   - the Uring wrapper alone (eventfd, SQ-full and outstanding caps, ordering), and a slow
//     flush completing while the interrupt-mode reactor sleeps
//   - creation errors: ENOENT, bad block sizes, empty file, bad driver, block size below the
//     device's logical block size
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../reactor/reactor.h"
#include "../bdev.h"
#include "../file.h"
#include "../uring.h"

using namespace spdk_node;

namespace {

int g_failures = 0;
std::atomic<int> g_extra_completions{0};

#define CHECK(cond, ...)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);             \
      fprintf(stderr, __VA_ARGS__);                                                 \
      fprintf(stderr, "\n");                                                        \
      g_failures++;                                                                 \
    }                                                                               \
  } while (0)

struct Batch {
  std::atomic<size_t> remaining{0};
  std::promise<void> done;
};

// One test I/O: the BdevIo, its iovecs, and the aligned buffer they point into.
struct TestIo {
  BdevIo io;
  std::vector<struct iovec> iov;
  uint8_t* buf = nullptr;
  uint64_t buf_len = 0;
  int status = 1;  // 1 = not completed yet
  int completions = 0;
  Batch* batch = nullptr;
  ~TestIo() { free(buf); }
};

void OnComplete(BdevIo*, int status, void* ctx) {
  auto* t = static_cast<TestIo*>(ctx);
  t->status = status;
  if (++t->completions > 1) {
    g_extra_completions.fetch_add(1);
    return;
  }
  if (t->batch->remaining.fetch_sub(1) == 1) t->batch->done.set_value();
}

uint8_t* AlignedAlloc(uint64_t len) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, std::max<uint64_t>(len, 4096)) != 0) abort();
  // Initialised so valgrind does not flag kernel-filled bytes (it cannot see io_uring writes).
  memset(p, 0xA5, std::max<uint64_t>(len, 4096));
  return static_cast<uint8_t*>(p);
}

// Runs functions on a reactor thread and waits for them.
void OnReactor(Reactor* r, std::function<void()> fn) {
  std::promise<void> p;
  auto f = p.get_future();
  r->Send([&]() {
    fn();
    p.set_value();
  });
  f.wait();
}

class Harness {
 public:
  Harness(Reactor* reactor, Bdev* bdev) : reactor_(reactor), bdev_(bdev) {
    OnReactor(reactor_, [this]() { ch_ = bdev_->CreateChannel(reactor_); });
  }
  ~Harness() {
    OnReactor(reactor_, [this]() { delete ch_; });
  }
  Bdev* bdev() const { return bdev_; }

  // Submits every I/O from one reactor message, so all are in flight together; waits for all.
  bool Run(const std::vector<TestIo*>& ios) {
    if (ios.empty()) return true;
    Batch batch;
    batch.remaining = ios.size();
    auto fut = batch.done.get_future();
    for (TestIo* t : ios) {
      t->batch = &batch;
      t->status = 1;
      t->completions = 0;
      t->io.cb = OnComplete;
      t->io.cb_ctx = t;
      t->io.iovs = t->iov.empty() ? nullptr : t->iov.data();
      t->io.iovcnt = static_cast<int>(t->iov.size());
    }
    // The list is copied: once the last I/O completes, the caller may free its vector while
    // this message is still finishing its loop.
    reactor_->Send([this, list = ios]() {
      for (TestIo* t : list) ch_->Submit(&t->io);
    });
    if (fut.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
      fprintf(stderr, "  FAIL: batch of %zu I/Os did not complete (%zu left); aborting\n",
              ios.size(), batch.remaining.load());
      abort();
    }
    bool ok = true;
    for (TestIo* t : ios) {
      if (t->completions != 1) ok = false;
    }
    CHECK(ok, "an I/O completed more or less than once");
    return ok;
  }

  int RunOne(TestIo* t) {
    Run({t});
    return t->status;
  }

 private:
  Reactor* reactor_;
  Bdev* bdev_;
  BdevChannel* ch_ = nullptr;
};

// A read or write of [offset, offset+n) blocks. With segs > 1 the buffer is split at block
// boundaries into segs pieces that the iovec list visits in reverse memory order, so a driver
// that ignored the iovec order would be caught.
std::unique_ptr<TestIo> MakeRw(IoType type, uint64_t offset, uint64_t n, uint32_t bs, int segs,
                               std::mt19937_64* rng) {
  auto t = std::make_unique<TestIo>();
  t->io.type = type;
  t->io.offset_blocks = offset;
  t->io.num_blocks = n;
  t->buf_len = n * bs;
  t->buf = AlignedAlloc(t->buf_len);
  segs = static_cast<int>(std::min<uint64_t>(segs, n));
  std::vector<uint64_t> cuts;  // segment sizes in blocks
  uint64_t left = n;
  for (int i = 0; i < segs - 1; i++) {
    uint64_t c = 1 + (*rng)() % (left - (segs - 1 - i));
    cuts.push_back(c);
    left -= c;
  }
  cuts.push_back(left);
  // Memory layout: segment k lives at the position it would have if the order were reversed.
  std::vector<uint64_t> mem_off(cuts.size());
  uint64_t pos = 0;
  for (size_t k = cuts.size(); k-- > 0;) {
    mem_off[k] = pos;
    pos += cuts[k] * bs;
  }
  for (size_t k = 0; k < cuts.size(); k++) {
    t->iov.push_back({t->buf + mem_off[k], cuts[k] * bs});
  }
  return t;
}

std::unique_ptr<TestIo> MakeCmd(IoType type, uint64_t offset, uint64_t n) {
  auto t = std::make_unique<TestIo>();
  t->io.type = type;
  t->io.offset_blocks = offset;
  t->io.num_blocks = n;
  return t;
}

// The bytes an I/O moves, in device order.
std::vector<uint8_t> Flatten(const TestIo& t) {
  std::vector<uint8_t> v(t.buf_len);
  CopyFromIovs(v.data(), t.iov.data(), static_cast<int>(t.iov.size()), t.buf_len);
  return v;
}

// Random disjoint extents: the device is cut into chunks; each extent is a random block range
// inside a distinct random chunk.
struct Extent {
  uint64_t offset, n;
};
std::vector<Extent> RandomExtents(uint64_t num_blocks, uint64_t chunk_blocks, size_t count,
                                  std::mt19937_64* rng) {
  uint64_t chunks = num_blocks / chunk_blocks;
  std::vector<uint64_t> idx(chunks);
  for (uint64_t i = 0; i < chunks; i++) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), *rng);
  std::vector<Extent> out;
  for (size_t i = 0; i < count && i < chunks; i++) {
    uint64_t start = (*rng)() % chunk_blocks;
    uint64_t n = 1 + (*rng)() % (chunk_blocks - start);
    out.push_back({idx[i] * chunk_blocks + start, n});
  }
  return out;
}

class Suite {
 public:
  Suite(Harness* h, std::mt19937_64* rng, std::vector<uint8_t>* model)
      : h_(h), rng_(rng), model_(*model), bs_(h->bdev()->block_size()),
        nb_(h->bdev()->num_blocks()) {}

  void RandomWrites(size_t count) {
    std::vector<std::unique_ptr<TestIo>> ios;
    std::vector<TestIo*> raw;
    uint64_t chunk = std::max<uint64_t>(4, 16384 / bs_);
    for (const Extent& e : RandomExtents(nb_, chunk, count, rng_)) {
      int segs = ((*rng_)() & 1) ? 1 : 2 + static_cast<int>((*rng_)() % 6);
      auto t = MakeRw(IoType::kWrite, e.offset, e.n, bs_, segs, rng_);
      for (uint64_t i = 0; i < t->buf_len; i += 8) {
        uint64_t v = (*rng_)();
        memcpy(t->buf + i, &v, std::min<uint64_t>(8, t->buf_len - i));
      }
      raw.push_back(t.get());
      ios.push_back(std::move(t));
    }
    h_->Run(raw);
    int bad = 0;
    for (auto& t : ios) {
      if (t->status != 0) {
        if (bad++ < 3) fprintf(stderr, "  write failed: %d\n", t->status);
        continue;
      }
      std::vector<uint8_t> data = Flatten(*t);
      memcpy(&model_[t->io.offset_blocks * bs_], data.data(), data.size());
    }
    CHECK(bad == 0, "%d of %zu random writes failed", bad, ios.size());
  }

  void RandomReads(size_t count) {
    std::vector<std::unique_ptr<TestIo>> ios;
    std::vector<TestIo*> raw;
    uint64_t chunk = std::max<uint64_t>(4, 16384 / bs_);
    for (const Extent& e : RandomExtents(nb_, chunk, count, rng_)) {
      int segs = ((*rng_)() & 1) ? 1 : 2 + static_cast<int>((*rng_)() % 6);
      ios.push_back(MakeRw(IoType::kRead, e.offset, e.n, bs_, segs, rng_));
      raw.push_back(ios.back().get());
    }
    h_->Run(raw);
    int bad = 0, mismatched = 0;
    for (auto& t : ios) {
      if (t->status != 0) {
        bad++;
        continue;
      }
      std::vector<uint8_t> data = Flatten(*t);
      if (memcmp(data.data(), &model_[t->io.offset_blocks * bs_], data.size()) != 0) {
        if (mismatched++ < 3) {
          fprintf(stderr, "  mismatch at block %" PRIu64 " (+%" PRIu64 ", %zu iovs)\n",
                  t->io.offset_blocks, t->io.num_blocks, t->iov.size());
        }
      }
    }
    CHECK(bad == 0 && mismatched == 0, "%d failed, %d mismatched of %zu reads", bad, mismatched,
          ios.size());
  }

  // Reads the whole device in 1 MiB pieces, all in flight, and compares with the model.
  void VerifyAll(const char* what) {
    uint64_t per = std::max<uint64_t>(1, (1u << 20) / bs_);
    std::vector<std::unique_ptr<TestIo>> ios;
    std::vector<TestIo*> raw;
    for (uint64_t off = 0; off < nb_; off += per) {
      ios.push_back(MakeRw(IoType::kRead, off, std::min(per, nb_ - off), bs_, 1, rng_));
      raw.push_back(ios.back().get());
    }
    h_->Run(raw);
    int bad = 0;
    for (auto& t : ios) {
      if (t->status != 0 ||
          memcmp(t->buf, &model_[t->io.offset_blocks * bs_], t->buf_len) != 0) {
        if (bad++ < 3) {
          fprintf(stderr, "  %s: block %" PRIu64 ": status %d / content differs\n", what,
                  t->io.offset_blocks, t->status);
        }
      }
    }
    CHECK(bad == 0, "%s: %d of %zu full-device reads wrong", what, bad, ios.size());
  }

  // Zeroing commands (unmap or write_zeroes) on disjoint extents plus one multi-MiB range.
  void Zeroing(IoType type) {
    std::vector<std::unique_ptr<TestIo>> ios;
    std::vector<TestIo*> raw;
    uint64_t chunk = std::max<uint64_t>(1, 65536 / bs_) * 4;
    // The first chunks hold the big range below; random extents go after it.
    uint64_t big_off = 0, big_n = std::min<uint64_t>(nb_ / 4, (3u << 20) / bs_);
    for (const Extent& e : RandomExtents(nb_, chunk, 40, rng_)) {
      if (e.offset < big_off + big_n + chunk) continue;
      ios.push_back(MakeCmd(type, e.offset, e.n));
      raw.push_back(ios.back().get());
    }
    ios.push_back(MakeCmd(type, big_off + 1, big_n));
    raw.push_back(ios.back().get());
    h_->Run(raw);
    int bad = 0;
    for (auto& t : ios) {
      if (t->status != 0) {
        if (bad++ < 3) fprintf(stderr, "  %s failed: %d\n", IoTypeName(type), t->status);
        continue;
      }
      memset(&model_[t->io.offset_blocks * bs_], 0, t->io.num_blocks * bs_);
    }
    CHECK(bad == 0, "%d of %zu %s commands failed", bad, ios.size(), IoTypeName(type));
  }

  void Flush() {
    auto t = MakeCmd(IoType::kFlush, 0, 0);
    int rc = h_->RunOne(t.get());
    CHECK(rc == 0, "flush: %d", rc);
  }

  void BadRequests() {
    auto t = MakeRw(IoType::kRead, nb_ - 1, 2, bs_, 1, rng_);
    int rc = h_->RunOne(t.get());
    CHECK(rc == -EINVAL, "read past the end: %d", rc);
    t = MakeRw(IoType::kWrite, nb_, 1, bs_, 1, rng_);
    rc = h_->RunOne(t.get());
    CHECK(rc == -EINVAL, "write past the end: %d", rc);
    t = MakeRw(IoType::kWrite, UINT64_MAX - 1, 4, bs_, 1, rng_);
    rc = h_->RunOne(t.get());
    CHECK(rc == -EINVAL, "write at an overflowing offset: %d", rc);
    auto z = MakeCmd(IoType::kUnmap, nb_ - 2, 8);
    rc = h_->RunOne(z.get());
    CHECK(rc == -EINVAL, "unmap past the end: %d", rc);
    // The iovecs must describe exactly num_blocks.
    t = MakeRw(IoType::kWrite, 0, 2, bs_, 1, rng_);
    t->iov[0].iov_len = bs_;
    rc = h_->RunOne(t.get());
    CHECK(rc == -EINVAL, "short iovec list: %d", rc);
  }

 private:
  Harness* h_;
  std::mt19937_64* rng_;
  std::vector<uint8_t>& model_;
  uint32_t bs_;
  uint64_t nb_;
};

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[256];
  while (fgets(buf, sizeof(buf), f) != nullptr) out += buf;
  int rc = pclose(f);
  if (rc != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

bool MakeFile(const std::string& path, uint64_t size) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ftruncate(fd, static_cast<off_t>(size)) == 0;
  close(fd);
  return ok;
}

Bdev* Open(const std::string& name, const std::string& path, uint32_t bs, bool ro) {
  std::string err;
  int e = 0;
  Bdev* b = CreateFileBdev(name, path, bs, ro, "uring", "", &err, &e);
  CHECK(b != nullptr, "CreateFileBdev(%s): %s (errno %d)", path.c_str(), err.c_str(), e);
  return b;
}

void DeleteBdev(Bdev* b) {
  b->MarkRemoved();
  b->Unref();
}

// The full scenario on one backing store. `model` is its expected content (zeroes for a fresh
// sparse file).
void RunScenario(const char* label, const std::string& path, uint32_t bs_arg,
                 ThreadReactor* reactor, uint64_t seed) {
  printf("== %s: %s (block_size %s, %s reactor)\n", label, path.c_str(),
         bs_arg ? std::to_string(bs_arg).c_str() : "auto",
         reactor->polling() ? "polling" : "interrupt");
  int failures_before = g_failures;
  std::mt19937_64 rng(seed);
  Bdev* bdev = Open(std::string("file_") + label, path, bs_arg, false);
  if (bdev == nullptr) return;
  auto* fb = static_cast<FileBdev*>(bdev);
  printf("   direct=%d block_size=%u num_blocks=%" PRIu64 " alignment=%u blockdev=%d\n",
         fb->direct(), bdev->block_size(), bdev->num_blocks(), bdev->required_alignment(),
         fb->is_block_device());
  CHECK(fb->block_size_override() == (bs_arg != 0), "block_size_override");
  CHECK(bdev->io_type_supported(IoType::kWrite) && bdev->io_type_supported(IoType::kUnmap) &&
            bdev->io_type_supported(IoType::kWriteZeroes) &&
            bdev->io_type_supported(IoType::kFlush),
        "io types");
  std::vector<uint8_t> model(bdev->num_blocks() * bdev->block_size(), 0);
  {
    Harness h(reactor, bdev);
    Suite s(&h, &rng, &model);
    s.VerifyAll("fresh device reads zeroes");
    for (int round = 0; round < 3; round++) {
      s.RandomWrites(600);
      s.RandomReads(700);
    }
    s.Flush();
    s.VerifyAll("after random writes");
    s.Zeroing(IoType::kUnmap);
    s.VerifyAll("after unmap");
    s.RandomWrites(600);
    s.Zeroing(IoType::kWriteZeroes);
    s.VerifyAll("after write_zeroes");
    s.RandomWrites(300);
    s.Flush();
    s.BadRequests();
    s.VerifyAll("after bad requests");
    printf("   fallocate: punch_hole=%d zero_range=%d\n", fb->punch_hole_supported.load(),
           fb->zero_range_supported.load());

    if (!reactor->polling()) {
      // An idle interrupt-mode reactor must sleep, not spin on a still-signalled eventfd.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      uint64_t sleeps = reactor->idle_sleeps(), busy = reactor->busy_iterations();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      uint64_t ds = reactor->idle_sleeps() - sleeps, db = reactor->busy_iterations() - busy;
      CHECK(ds < 20 && db < 20, "idle reactor woke %" PRIu64 " times (%" PRIu64 " busy)", ds,
            db);
    }
  }
  DeleteBdev(bdev);

  // Reopen read-only: the data is still there, and nothing writes.
  Bdev* ro = Open(std::string("ro_") + label, path, bs_arg, true);
  if (ro != nullptr) {
    CHECK(ro->read_only() && !ro->io_type_supported(IoType::kWrite) &&
              !ro->io_type_supported(IoType::kUnmap) &&
              !ro->io_type_supported(IoType::kWriteZeroes) &&
              ro->io_type_supported(IoType::kRead),
          "read-only io types");
    Harness h(reactor, ro);
    Suite s(&h, &rng, &model);
    s.VerifyAll("reopened read-only");
    auto w = MakeRw(IoType::kWrite, 0, 1, ro->block_size(), 1, &rng);
    int rc = h.RunOne(w.get());
    CHECK(rc == -EROFS, "write to read-only bdev: %d", rc);
    auto u = MakeCmd(IoType::kUnmap, 0, 1);
    rc = h.RunOne(u.get());
    CHECK(rc == -EROFS, "unmap on read-only bdev: %d", rc);
    auto z = MakeCmd(IoType::kWriteZeroes, 0, 1);
    rc = h.RunOne(z.get());
    CHECK(rc == -EROFS, "write_zeroes on read-only bdev: %d", rc);
    s.Flush();
    s.VerifyAll("read-only after rejected writes");
    DeleteBdev(ro);
  }
  printf("   %s\n", g_failures == failures_before ? "ok" : "FAILED");
}

// A file that shrinks under an open bdev: a read across the new end is short, the driver resumes
// the remainder (mid-segment, through its own iovec copy), gets 0 bytes, and fails with -EIO.
void ShrunkFile(const std::string& path, ThreadReactor* reactor) {
  printf("== shrunk file: %s\n", path.c_str());
  int failures_before = g_failures;
  std::mt19937_64 rng(7);
  if (!MakeFile(path, 1 << 20)) {
    CHECK(false, "create %s", path.c_str());
    return;
  }
  Bdev* bdev = Open("shrunk", path, 512, false);
  if (bdev == nullptr) return;
  {
    Harness h(reactor, bdev);
    if (truncate(path.c_str(), 512 * 1024 + 12 * 1024) != 0) CHECK(false, "truncate");
    // 3 segments of 16 blocks starting at 512 KiB: EOF falls 4 KiB into the second segment.
    auto t = MakeRw(IoType::kRead, 1024, 48, 512, 1, &rng);
    t->iov.clear();
    for (int k = 0; k < 3; k++) t->iov.push_back({t->buf + k * 8192, 8192});
    int rc = h.RunOne(t.get());
    CHECK(rc == -EIO, "read across the shrunk end: %d", rc);
    auto t2 = MakeRw(IoType::kRead, 1500, 8, 512, 1, &rng);
    rc = h.RunOne(t2.get());
    CHECK(rc == -EIO, "read wholly past the shrunk end: %d", rc);
    auto t3 = MakeRw(IoType::kRead, 0, 64, 512, 3, &rng);
    rc = h.RunOne(t3.get());
    CHECK(rc == 0, "read before the end: %d", rc);
  }
  DeleteBdev(bdev);
  unlink(path.c_str());
  printf("   %s\n", g_failures == failures_before ? "ok" : "FAILED");
}

// The kernel caps one read at MAX_RW_COUNT (2 GiB - 4 KiB), so a 2.5 GiB vectored read comes back
// short, 4 KiB before the end of a 64 MiB segment: the driver must resume mid-segment through its
// own copy of the iovec list, and the bytes on both sides of the cut must land where they belong.
// The file is sparse except for a pattern around the cut; the iovecs not checked share one sink
// buffer, so the whole test needs 192 MiB of memory.
void ShortVectoredRead(const std::string& path, ThreadReactor* reactor) {
  printf("== short vectored read (2.5 GiB readv): %s\n", path.c_str());
  int failures_before = g_failures;
  const uint64_t kSeg = 64ull << 20, kSegs = 40, kCut = 0x7ffff000ull;
  const uint64_t kPat = 1ull << 20;  // pattern bytes on each side of the cut
  if (!MakeFile(path, kSeg * (kSegs + 1))) {
    CHECK(false, "create %s", path.c_str());
    return;
  }
  std::vector<uint8_t> pattern(2 * kPat);
  for (size_t i = 0; i < pattern.size(); i++) pattern[i] = static_cast<uint8_t>(i * 131 + 7);
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  bool wrote = fd >= 0 && pwrite(fd, pattern.data(), pattern.size(), kCut - kPat) ==
                              static_cast<ssize_t>(pattern.size());
  if (fd >= 0) close(fd);
  CHECK(wrote, "write pattern");
  Bdev* bdev = Open("bigread", path, 0, false);
  if (bdev == nullptr) return;
  {
    Harness h(reactor, bdev);
    uint8_t* sink = AlignedAlloc(kSeg);
    uint8_t* seg31 = AlignedAlloc(kSeg);
    uint8_t* seg32 = AlignedAlloc(kSeg);
    TestIo t;
    t.io.type = IoType::kRead;
    t.io.offset_blocks = 0;
    t.io.num_blocks = kSeg * kSegs / bdev->block_size();
    for (uint64_t k = 0; k < kSegs; k++) {
      t.iov.push_back({k == 31 ? seg31 : k == 32 ? seg32 : sink, kSeg});
    }
    int rc = h.RunOne(&t);
    CHECK(rc == 0, "2.5 GiB readv: %d", rc);
    // The cut is kSeg - 4096 into segment 31.
    uint64_t cut_in_31 = kCut - 31 * kSeg;
    CHECK(memcmp(seg31 + cut_in_31 - kPat, pattern.data(), kPat) == 0,
          "bytes before the cut misplaced");
    CHECK(memcmp(seg31 + cut_in_31, pattern.data() + kPat, kSeg - cut_in_31) == 0,
          "bytes after the cut (rest of segment 31) misplaced");
    CHECK(memcmp(seg32, pattern.data() + kPat + (kSeg - cut_in_31), kPat - (kSeg - cut_in_31)) ==
              0,
          "bytes after the cut (segment 32) misplaced");
    free(sink);
    free(seg31);
    free(seg32);
  }
  DeleteBdev(bdev);
  unlink(path.c_str());
  printf("   %s\n", g_failures == failures_before ? "ok" : "FAILED");
}

// The io_uring wrapper on its own: the eventfd fires on completions, GetSqe() refuses when the SQ
// is full and when as many operations as the CQ holds are outstanding, completions come back
// with their user_data.
void UringBasics() {
  printf("== uring wrapper\n");
  int failures_before = g_failures;
  Uring ring;
  int rc = ring.Init(8);
  CHECK(rc == 0, "Init: %d", rc);
  if (rc != 0) return;
  CHECK(ring.sq_entries() == 8 && ring.cq_entries() == 16, "entries %u/%u", ring.sq_entries(),
        ring.cq_entries());
  unsigned got = 0;
  while (io_uring_sqe* sqe = ring.GetSqe()) {
    sqe->opcode = IORING_OP_NOP;
    sqe->user_data = 1000 + got++;
  }
  CHECK(got == 8 && ring.sq_pending() == 8, "SQ full after %u SQEs", got);
  rc = ring.Submit();
  CHECK(rc == 8 && ring.sq_pending() == 0, "Submit: %d", rc);
  while (io_uring_sqe* sqe = ring.GetSqe()) {
    sqe->opcode = IORING_OP_NOP;
    sqe->user_data = 1000 + got++;
  }
  CHECK(got == 16 && ring.outstanding() == 16, "outstanding cap: %u", got);
  rc = ring.Submit();
  CHECK(rc == 8, "Submit: %d", rc);
  struct pollfd pfd = {ring.event_fd(), POLLIN, 0};
  CHECK(poll(&pfd, 1, 1000) == 1, "eventfd not readable after completions");
  std::vector<uint64_t> seen;
  unsigned n = ring.ForEachCqe([&](uint64_t ud, int32_t res) {
    CHECK(res == 0, "nop res %d", res);
    seen.push_back(ud);
  });
  bool ordered = n == 16;
  for (unsigned i = 0; i < seen.size(); i++) ordered = ordered && seen[i] == 1000 + i;
  CHECK(ordered, "reaped %u completions, in order: %d", n, ordered);
  CHECK(ring.outstanding() == 0 && ring.DrainEventFd() && !ring.DrainEventFd(),
        "eventfd drain");
  CHECK(ring.GetSqe() != nullptr, "SQE after reaping");  // a NOP-zeroed SQE, submitted below
  rc = ring.Submit();
  n = ring.ForEachCqe([](uint64_t, int32_t) {});
  for (int i = 0; i < 100 && n == 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    n = ring.ForEachCqe([](uint64_t, int32_t) {});
  }
  CHECK(rc == 1 && n == 1, "zeroed SQE is a NOP: submit %d reaped %u", rc, n);
  printf("   %s\n", g_failures == failures_before ? "ok" : "FAILED");
}

// A completion that arrives while the interrupt-mode reactor sleeps: a flush that has to write
// back dirty page cache takes milliseconds, so the reactor is asleep when it completes.
void SleepingReactorWakes(const std::string& path, ThreadReactor* reactor) {
  printf("== completion wakes a sleeping reactor: %s\n", path.c_str());
  int failures_before = g_failures;
  const uint64_t kSize = 32 << 20;
  MakeFile(path, kSize);
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  std::vector<uint8_t> data(kSize, 0x5a);
  bool wrote = fd >= 0 && pwrite(fd, data.data(), kSize, 0) == static_cast<ssize_t>(kSize);
  if (fd >= 0) close(fd);
  CHECK(wrote, "dirty the page cache");
  Bdev* bdev = Open("sleepy", path, 0, false);
  if (bdev == nullptr) return;
  {
    Harness h(reactor, bdev);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    uint64_t sleeps = reactor->idle_sleeps();
    auto t0 = std::chrono::steady_clock::now();
    auto f = MakeCmd(IoType::kFlush, 0, 0);
    int rc = h.RunOne(f.get());
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    printf("   flush %d in %.1f ms, reactor slept %" PRIu64 " times meanwhile\n", rc, ms,
           reactor->idle_sleeps() - sleeps);
    CHECK(rc == 0, "flush: %d", rc);
  }
  DeleteBdev(bdev);
  unlink(path.c_str());
  printf("   %s\n", g_failures == failures_before ? "ok" : "FAILED");
}

void CreationErrors(const std::string& dir, const std::string& loop_dev) {
  printf("== creation errors\n");
  int failures_before = g_failures;
  std::string err;
  int e = 0;
  Bdev* b = CreateFileBdev("x", dir + "/does-not-exist", 0, false, "aio", "", &err, &e);
  CHECK(b == nullptr && e == ENOENT, "missing file: errno %d (%s)", e, err.c_str());
  printf("   missing file -> %s\n", err.c_str());
  std::string f = dir + "/errors.img";
  MakeFile(f, 1 << 20);
  for (uint32_t bad : {256u, 1000u, 3u, 1536u}) {
    e = 0;
    b = CreateFileBdev("x", f, bad, false, "aio", "", &err, &e);
    CHECK(b == nullptr && e == EINVAL, "block size %u: errno %d", bad, e);
  }
  printf("   block size 1536 -> %s\n", err.c_str());
  e = 0;
  b = CreateFileBdev("x", f, 0, false, "nvme", "", &err, &e);
  CHECK(b == nullptr && e == EINVAL, "bad driver: errno %d", e);
  e = 0;
  b = CreateFileBdev("x", f, 2u << 20, false, "aio", "", &err, &e);
  CHECK(b == nullptr && e == EINVAL, "block larger than the file: errno %d", e);
  printf("   block size 2 MiB on 1 MiB -> %s\n", err.c_str());
  MakeFile(f, 0);
  e = 0;
  b = CreateFileBdev("x", f, 0, false, "aio", "", &err, &e);
  CHECK(b == nullptr && e == EINVAL, "empty file: errno %d", e);
  e = 0;
  b = CreateFileBdev("x", dir, 0, true, "aio", "", &err, &e);
  CHECK(b == nullptr && e != 0, "directory: errno %d", e);
  printf("   directory -> %s\n", err.c_str());
  unlink(f.c_str());
  // Explicit uuid and product name are kept.
  MakeFile(f, 1 << 20);
  b = CreateFileBdev("named", f, 4096, false, "aio", "11111111-2222-4333-8444-555555555555", &err,
                     &e);
  CHECK(b != nullptr && b->uuid() == "11111111-2222-4333-8444-555555555555" &&
            b->num_blocks() == 256 && std::string(b->driver()) == "aio" &&
            b->product_name() == "AIO disk",
        "uuid/geometry/driver");
  if (b) DeleteBdev(b);
  unlink(f.c_str());
  if (!loop_dev.empty()) {
    e = 0;
    b = CreateFileBdev("x", loop_dev, 512, false, "uring", "", &err, &e);
    CHECK(b == nullptr && e == EINVAL, "block size below the device's: errno %d", e);
    printf("   512 on a 4Kn loop device -> %s\n", err.c_str());
  }
  printf("   %s\n", g_failures == failures_before ? "ok" : "FAILED");
}

}  // namespace

int main() {
  uint64_t seed = std::random_device{}();
  if (const char* s = getenv("SEED")) seed = strtoull(s, nullptr, 0);
  printf("seed %" PRIu64 "\n", seed);
  setvbuf(stdout, nullptr, _IOLBF, 0);

  ThreadReactor reactor(0, -1, /*polling=*/false);
  ThreadReactor poller(1, -1, /*polling=*/true);
  if (!reactor.Start().empty() || !poller.Start().empty()) {
    fprintf(stderr, "cannot start reactors\n");
    return 2;
  }

  char tmpl[] = "/tmp/file_bdev_test.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 2;
  std::string dir = tmpl;
  const uint64_t kSize = 16 << 20;

  UringBasics();
  SleepingReactorWakes(dir + "/sleepy.img", &reactor);

  std::string f1 = dir + "/disk.img";
  if (MakeFile(f1, kSize)) {
    RunScenario("ext4", f1, 0, &reactor, seed);
    MakeFile(f1, kSize);
    RunScenario("ext4_4k", f1, 4096, &poller, seed + 1);
  }
  unlink(f1.c_str());

  std::string shm = "/dev/shm/file_bdev_test." + std::to_string(getpid());
  if (MakeFile(shm, kSize)) RunScenario("tmpfs", shm, 0, &reactor, seed + 2);
  unlink(shm.c_str());

  // ramfs: refuses O_DIRECT and fallocate, so this is the buffered + zero-write-fallback case.
  std::string rdir = dir + "/ramfs";
  bool ramfs = mkdir(rdir.c_str(), 0700) == 0 && mount("ramfs", rdir.c_str(), "ramfs", 0, "") == 0;
  if (ramfs) {
    std::string rf = rdir + "/disk.img";
    if (MakeFile(rf, kSize)) RunScenario("ramfs", rf, 0, &reactor, seed + 3);
    ShrunkFile(rdir + "/shrunk.img", &reactor);
    unlink(rf.c_str());
    // Deleting a bdev must release the file at once (io_uring frees closed rings lazily).
    int urc = umount(rdir.c_str());
    CHECK(urc == 0, "umount ramfs right after deleting its bdevs: %s", strerror(errno));
    if (urc != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      umount2(rdir.c_str(), MNT_DETACH);
    }
  } else {
    printf("== ramfs: skipped (mount failed: %s)\n", strerror(errno));
  }
  rmdir(rdir.c_str());

  ShrunkFile(dir + "/shrunk.img", &reactor);
  ShortVectoredRead(dir + "/big.img", &reactor);

  // Loop device with 4 KiB logical sectors over a sparse file.
  std::string backing = dir + "/loop.img";
  std::string loop_dev;
  if (MakeFile(backing, kSize)) {
    loop_dev = Run("losetup -f --show -b 4096 " + backing + " 2>/dev/null");
    if (loop_dev.empty()) loop_dev = Run("losetup -f --show " + backing + " 2>/dev/null");
  }
  if (!loop_dev.empty()) {
    RunScenario("loop", loop_dev, 0, &reactor, seed + 4);
  } else {
    printf("== loop device: skipped (losetup failed)\n");
  }
  CreationErrors(dir, loop_dev);
  if (!loop_dev.empty()) Run("losetup -d " + loop_dev);
  unlink(backing.c_str());
  rmdir(dir.c_str());

  reactor.StopAndJoin();
  poller.StopAndJoin();
  CHECK(g_extra_completions.load() == 0, "%d duplicate completions", g_extra_completions.load());
  if (g_failures == 0) {
    printf("PASS\n");
    return 0;
  }
  printf("FAIL (%d failures)\n", g_failures);
  return 1;
}

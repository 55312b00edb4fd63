#include "store.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "../reactor/reactor.h"

namespace spdk_node {

using namespace lvolfmt;

namespace {

// Allocations alone are committed this long after the first one (a flush commits at once).
constexpr uint64_t kLazyCommitUs = 10000;
// Largest single zeroing I/O on the base (a malloc base memsets inline on the md thread).
constexpr uint64_t kMaxZeroChunk = 64ull << 20;
constexpr uint64_t kCopyChunk = 1ull << 20;
constexpr uint64_t kDrainPollUs = 50;

std::string ErrText(int e) {
  char buf[128];
  const char* s = strerror_r(e < 0 ? -e : e, buf, sizeof(buf));
  return s;
}

void* AlignedAlloc(size_t len) {
  void* p = nullptr;
  if (posix_memalign(&p, 4096, len == 0 ? 4096 : len) != 0) return nullptr;
  return p;
}

using Step = std::function<void(std::function<void(int)>)>;

// Runs steps one after another; stops at the first error. Steps complete asynchronously (md I/O
// callbacks never run inline), so the chain does not grow the stack.
void RunSteps(std::shared_ptr<std::vector<Step>> steps, size_t i, std::function<void(int)> done) {
  if (i == steps->size()) return done(0);
  (*steps)[i]([steps, i, done](int st) {
    if (st != 0) return done(st);
    RunSteps(steps, i + 1, done);
  });
}

}  // namespace

StoreView::~StoreView() {
  for (LvolViewEntry& e : lvols) e.lvol->Unref();
}

Lvstore::Lvstore(LvolHost* host, Bdev* base, const Superblock& sb, uint64_t total_data_clusters,
                 const std::string& name)
    : host_(host),
      base_(base),
      sb_(sb),
      uuid_str_(FormatUuid(sb.uuid)),
      block_size_(base->block_size()),
      blocks_per_cluster_(sb.cluster_size / base->block_size()),
      data_offset_blocks_(static_cast<uint64_t>(sb.md_clusters) * (sb.cluster_size / base->block_size())),
      total_data_clusters_(total_data_clusters),
      md_reactor_(host->MdReactor()),
      name_(name) {
  base_->Ref();
  used_.assign((total_data_clusters + 63) / 64, 0);
  // Bits past the last data cluster are permanently "used" so the scan never returns them.
  if (total_data_clusters % 64 != 0) used_.back() = ~0ull << (total_data_clusters % 64);
  free_count_ = total_data_clusters;
  free_clusters.store(free_count_);
  js.name = name;
}

Lvstore::~Lvstore() {
  for (Lvol* lv : lvols_) lv->Unref();
  // md_channel_ is closed on the md thread before the store goes (Unload, Quiesce, Destroy);
  // one left here means the reactors are gone (process exit): leave it.
  base_->Unref();
}

// ---------------------------------------------------------------------------------------------
// Loading (JS thread, before the md thread sees the store)

void Lvstore::LoadImage(const Image& img, int active_slot) {
  name_ = img.name;
  js.name = img.name;
  active_slot_ = active_slot;
  next_sequence_ = img.sequence + 1;
  std::map<Uuid, Lvol*> by_uuid;
  for (const LvolRecord& r : img.lvols) {
    Lvol* lv = NewLvol(r.uuid, r.name, r.size_clusters, r.flags, r.clear_method);
    lv->md.state = Lvol::MdState::kLive;
    for (const auto& e : r.map) {
      lv->map()->Set(e.first, e.second + 1);
      used_[e.second / 64] |= 1ull << (e.second % 64);
    }
    lv->num_allocated.store(r.map.size());
    free_count_ -= r.map.size();
    by_uuid[r.uuid] = lv;
  }
  for (size_t i = 0; i < img.lvols.size(); i++) {
    if (IsNullUuid(img.lvols[i].parent)) continue;
    Lvol* parent = by_uuid[img.lvols[i].parent];
    lvols_[i]->SetParent(parent);
    AddClone(parent, lvols_[i]);
  }
  free_clusters.store(free_count_);
}

StoreView* Lvstore::InitialView() { return BuildView(); }

Lvol* Lvstore::NewLvol(const Uuid& uuid, const std::string& name, uint64_t size_clusters,
                       uint32_t flags, uint32_t clear_method) {
  Lvol* lv = new Lvol(shared_from_this(), uuid, size_clusters);
  lv->md.name = name;
  lv->md.flags = flags;
  lv->md.clear_method = clear_method;
  lv->md.state = Lvol::MdState::kCreating;
  lv->read_only_.store((flags & kFlagReadOnly) != 0);
  lvols_.push_back(lv);  // the constructor's reference belongs to lvols_
  return lv;
}

bool Lvstore::RemoveLvol(Lvol* lv) {
  auto it = std::find(lvols_.begin(), lvols_.end(), lv);
  if (it == lvols_.end()) return false;
  lvols_.erase(it);
  return true;
}

void Lvstore::Forsake(Lvol* lv) {
  // The lvol was answered as not created: it must not appear in a later commit either. Its
  // clusters come back only after a later commit succeeds (the failed one may be on disk).
  if (unloaded_ || !RemoveLvol(lv)) return;
  std::vector<std::pair<uint32_t, uint32_t>> entries;
  lv->map()->Collect(&entries);
  Waiter w;
  for (const auto& e : entries) w.freed.push_back(e.second);
  if (lv->parent() != nullptr) ReplaceClone(lv->parent(), lv, nullptr);
  lv->deleted.store(true);
  MarkChanged();
  w.target = change_seq_;
  w.clear_method = kClearNone;
  if (!w.freed.empty()) orphan_frees_.push_back(std::move(w));
  lv->Unref();
}

void Lvstore::AddClone(Lvol* parent, Lvol* clone) {
  parent->md.clones.push_back(clone);
  parent->md.was_parent = true;
}

void Lvstore::ReplaceClone(Lvol* parent, Lvol* from, Lvol* to) {
  auto& c = parent->md.clones;
  auto it = std::find(c.begin(), c.end(), from);
  if (it == c.end()) return;
  if (to != nullptr) {
    *it = to;
  } else {
    c.erase(it);
  }
}

void Lvstore::Descendants(Lvol* lv, std::vector<Lvol*>* out) const {
  for (Lvol* c : lv->md.clones) {
    out->push_back(c);
    Descendants(c, out);
  }
}

int Lvstore::CheckNewName(const std::string& name, std::string* msg) const {
  if (!ValidName(name)) {
    *msg = "lvol name must be 1 to 63 bytes";
    return EINVAL;
  }
  for (const Lvol* lv : lvols_) {
    if (lv->md.name == name) {
      *msg = "lvol with name " + name + " already exists in lvstore " + name_;
      return EEXIST;
    }
  }
  return 0;
}

size_t Lvstore::FixedImageBytes() const {
  size_t n = ImageHeaderSize(name_.size());
  for (const Lvol* lv : lvols_) n += RecordSize(lv->md.name.size(), 0);
  return n;
}

bool Lvstore::Fits(size_t extra_bytes) const {
  // Room for the records plus every data cluster allocated: allocations can never overflow.
  return FixedImageBytes() + extra_bytes + 8 * total_data_clusters_ <= sb_.slot_size;
}

Image Lvstore::BuildImage() const {
  Image img;
  img.lvs_uuid = sb_.uuid;
  img.total_data_clusters = static_cast<uint32_t>(total_data_clusters_);
  img.name = name_;
  for (const Lvol* lv : lvols_) {
    if (lv->md.state == Lvol::MdState::kCreating) continue;
    LvolRecord r;
    r.uuid = lv->id();
    if (lv->parent() != nullptr) r.parent = lv->parent()->id();
    r.size_clusters = lv->md.size_clusters;
    r.flags = lv->md.flags;
    r.clear_method = lv->md.clear_method;
    r.name = lv->md.name;
    lv->map()->Collect(&r.map);
    img.lvols.push_back(std::move(r));
  }
  return img;
}

StoreView* Lvstore::BuildView() const {
  auto* v = new StoreView();
  v->name = name_;
  for (Lvol* lv : lvols_) {
    if (lv->md.state == Lvol::MdState::kCreating) continue;
    LvolViewEntry e;
    lv->Ref();
    e.lvol = lv;
    e.name = lv->md.name;
    e.flags = lv->md.flags;
    e.clear_method = lv->md.clear_method;
    e.parent = lv->parent();
    e.was_parent = lv->md.was_parent;
    v->lvols.push_back(std::move(e));
  }
  return v;
}

void Lvstore::Reply(const Answer& a, int err, const std::string& msg, Lvol* lv) {
  if (lv != nullptr) lv->Ref();
  host_->PostToJs([a, err, msg, lv]() {
    a(err < 0 ? -err : err, msg, lv);
    if (lv != nullptr) lv->Unref();
  });
}

// ---------------------------------------------------------------------------------------------
// Operation queue

void Lvstore::RunOp(std::function<void(OpDone)> op) {
  ops_.push_back(std::move(op));
  if (!op_running_) NextOp();
}

void Lvstore::NextOp() {
  if (ops_.empty()) {
    op_running_ = false;
    return;
  }
  op_running_ = true;
  auto op = std::move(ops_.front());
  ops_.pop_front();
  auto self = shared_from_this();
  op([self]() { self->md_reactor_->Send([self]() { self->NextOp(); }); });
}

// ---------------------------------------------------------------------------------------------
// Commit

void Lvstore::WaitCommit(std::function<void(int)> cb) {
  WaitCommitThenFree({}, 0, std::move(cb), nullptr);
}

void Lvstore::WaitCommitThenFree(std::vector<uint32_t> freed, uint32_t clear_method,
                                 std::function<void(int)> committed,
                                 std::function<void(int)> released) {
  if (unloaded_ || destroying_) {
    if (committed) committed(-ENODEV);
    if (released) released(-ENODEV);
    return;
  }
  Waiter w;
  w.target = change_seq_;
  w.committed = std::move(committed);
  w.freed = std::move(freed);
  w.clear_method = clear_method;
  w.released = std::move(released);
  waiters_.push_back(std::move(w));
  ScheduleCommit(false);
}

void Lvstore::ScheduleCommit(bool lazy) {
  if (unloaded_ || destroying_) return;
  auto self = shared_from_this();
  if (!lazy) {
    // Next md iteration: everything applied before then joins this commit.
    if (commit_now_pending_) return;
    commit_now_pending_ = true;
    md_reactor_->Send([self]() {
      self->commit_now_pending_ = false;
      self->StartCommit();
    });
    return;
  }
  if (lazy_poller_ != nullptr) return;
  lazy_poller_ = md_reactor_->RegisterPoller(
      "lvstore_commit",
      [self]() {
        self->md_reactor_->UnregisterPoller(self->lazy_poller_);
        self->lazy_poller_ = nullptr;
        self->StartCommit();
        return true;
      },
      kLazyCommitUs);
}

void Lvstore::StartCommit() {
  if (commit_running_ || unloaded_ || destroying_) return;
  if (change_seq_ == committed_seq_) {
    FinishWaiters(committed_seq_, 0);
    return;
  }
  const uint64_t seq = change_seq_;
  Image img = BuildImage();
  img.sequence = next_sequence_;
  std::vector<uint8_t> bytes = EncodeImage(img);
  if (bytes.size() > sb_.slot_size) {
    // Fits() is checked before every change that adds bytes; this is a bug guard.
    FinishWaiters(seq, -ENOSPC);
    return;
  }
  const size_t len = AlignUp(bytes.size(), block_size_);
  void* buf = AlignedAlloc(len);
  if (buf == nullptr) {
    FinishWaiters(seq, -ENOMEM);
    return;
  }
  memcpy(buf, bytes.data(), bytes.size());
  memset(static_cast<uint8_t*>(buf) + bytes.size(), 0, len - bytes.size());
  StoreView* view = BuildView();
  const int slot = 1 - active_slot_;
  commit_running_ = true;
  auto self = shared_from_this();
  const uint64_t slot_off = SlotOffset(slot, sb_.slot_size);
  auto steps = std::make_shared<std::vector<Step>>();
  // Data (and new clusters' initial content) before the map that points at it...
  steps->push_back([self](std::function<void(int)> k) { self->MdIo(IoType::kFlush, 0, 0, nullptr, k); });
  steps->push_back([self, slot_off, len, buf](std::function<void(int)> k) {
    self->MdIo(IoType::kWrite, slot_off, len, buf, k);
  });
  // ...and the image durable before anyone is told it is.
  steps->push_back([self](std::function<void(int)> k) { self->MdIo(IoType::kFlush, 0, 0, nullptr, k); });
  RunSteps(steps, 0, [self, seq, buf, view, slot](int st) { self->EndCommit(seq, st, buf, view, slot); });
}

void Lvstore::EndCommit(uint64_t seq, int status, void* buf, StoreView* view, int slot) {
  free(buf);
  commit_running_ = false;
  if (status == 0 && !unloaded_) {
    active_slot_ = slot;
    next_sequence_++;
    committed_seq_ = seq;
    auto self = shared_from_this();
    host_->PostToJs([self, view]() { self->host_->ApplyView(self, view); });
  } else {
    delete view;
  }
  FinishWaiters(seq, status);
  if (status == 0) {
    // Clusters a failed commit freed are safe to reuse now that a later image is durable.
    std::vector<Waiter> orphans;
    orphans.swap(orphan_frees_);
    for (Waiter& w : orphans) {
      if (w.target <= committed_seq_) {
        ClearAndRelease(std::move(w.freed), w.clear_method, nullptr);
      } else {
        orphan_frees_.push_back(std::move(w));
      }
    }
  }
  if (unloaded_ || destroying_) return;
  bool waiting = false;
  for (const Waiter& w : waiters_) waiting = waiting || w.target > committed_seq_;
  if (waiting) {
    ScheduleCommit(false);
  } else if (status == 0 && change_seq_ > committed_seq_) {
    ScheduleCommit(true);
  }
}

void Lvstore::FinishWaiters(uint64_t seq, int status) {
  std::vector<Waiter> done;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->target <= seq) {
      done.push_back(std::move(*it));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  for (Waiter& w : done) {
    if (w.committed) w.committed(status);
    if (w.freed.empty() && !w.released) continue;
    if (status == 0) {
      auto rel = std::move(w.released);
      ClearAndRelease(std::move(w.freed), w.clear_method, [rel]() {
        if (rel) rel(0);
      });
    } else {
      if (w.released) w.released(status);
      if (!w.freed.empty()) {
        w.committed = nullptr;
        w.released = nullptr;
        orphan_frees_.push_back(std::move(w));
      }
    }
  }
}

void Lvstore::FlushBarrier(std::function<void(int)> cb) {
  if (unloaded_ || destroying_) return cb(-ENODEV);
  if (change_seq_ == committed_seq_) return cb(0);
  WaitCommit(std::move(cb));
}

// ---------------------------------------------------------------------------------------------
// Clusters

int64_t Lvstore::TakeCluster() {
  if (free_count_ == 0) return -1;
  const size_t words = used_.size();
  size_t w = static_cast<size_t>(alloc_hint_ / 64) % words;
  for (size_t n = 0; n <= words; n++, w = (w + 1) % words) {
    uint64_t avail = ~used_[w];
    if (n == 0) avail &= ~0ull << (alloc_hint_ % 64);  // from the hint on in its own word
    if (avail == 0) continue;
    const unsigned bit = static_cast<unsigned>(__builtin_ctzll(avail));
    used_[w] |= 1ull << bit;
    free_count_--;
    free_clusters.store(free_count_);
    const uint64_t dc = static_cast<uint64_t>(w) * 64 + bit;
    alloc_hint_ = dc + 1 < total_data_clusters_ ? dc + 1 : 0;
    return static_cast<int64_t>(dc);
  }
  return -1;
}

void Lvstore::ReleaseClusters(const std::vector<uint32_t>& clusters) {
  for (uint32_t dc : clusters) {
    const uint64_t bit = 1ull << (dc % 64);
    if (used_[dc / 64] & bit) {
      used_[dc / 64] &= ~bit;
      free_count_++;
    }
  }
  free_clusters.store(free_count_);
}

void Lvstore::ClearAndRelease(std::vector<uint32_t> clusters, uint32_t clear_method,
                              std::function<void()> done) {
  if (clusters.empty()) {
    if (done) done();
    return;
  }
  if (clear_method == kClearNone || unloaded_) {
    ReleaseClusters(clusters);
    if (done) done();
    return;
  }
  background_++;
  auto self = shared_from_this();
  auto shared = std::make_shared<std::vector<uint32_t>>(std::move(clusters));
  const IoType type = clear_method == kClearUnmap ? IoType::kUnmap : IoType::kWriteZeroes;
  ZeroClusters(type, *shared, [self, shared, done](int) {
    // A failed clear does not keep the clusters: every reuse initialises them anyway.
    self->ReleaseClusters(*shared);
    self->background_--;
    if (done) done();
  });
}

// ---------------------------------------------------------------------------------------------
// Base I/O from the md thread

bool Lvstore::EnsureMdChannel() {
  if (md_channel_ != nullptr) return true;
  if (md_closed_) return false;
  md_channel_ = base_->CreateChannel(md_reactor_);
  return true;
}

namespace {
struct MdIoCtx {
  BdevIo io;
  struct iovec iov;
  std::function<void(int)> cb;
  std::shared_ptr<Lvstore> store;
};
}  // namespace

void Lvstore::MdIo(IoType type, uint64_t off_bytes, uint64_t len_bytes, void* buf,
                   std::function<void(int)> cb) {
  if (!EnsureMdChannel()) {
    md_reactor_->Send([cb]() { cb(-ENODEV); });
    return;
  }
  auto* c = new MdIoCtx();
  c->cb = std::move(cb);
  c->store = shared_from_this();
  c->io.type = type;
  c->io.offset_blocks = off_bytes / block_size_;
  c->io.num_blocks = len_bytes / block_size_;
  if (buf != nullptr) {
    c->iov.iov_base = buf;
    c->iov.iov_len = len_bytes;
    c->io.iovs = &c->iov;
    c->io.iovcnt = 1;
  }
  c->io.cb_ctx = c;
  c->io.cb = [](BdevIo*, int status, void* ctx) {
    auto* c = static_cast<MdIoCtx*>(ctx);
    // Always through a message: a malloc base completes inside Submit, and callers chain.
    c->store->md_reactor_->Send([c, status]() {
      std::shared_ptr<Lvstore> store = std::move(c->store);
      auto cb = std::move(c->cb);
      delete c;
      store->md_inflight_--;
      cb(status);
      store->MaybeCloseMdChannel();
    });
  };
  md_inflight_++;
  md_channel_->Submit(&c->io);
}

void Lvstore::MaybeCloseMdChannel() {
  if (!unloaded_ || md_inflight_ != 0 || md_channel_ == nullptr || background_ != 0) return;
  delete md_channel_;
  md_channel_ = nullptr;
  md_closed_ = true;
}

void Lvstore::ZeroRange(IoType type, uint64_t off_bytes, uint64_t len_bytes,
                        std::function<void(int)> cb) {
  if (len_bytes == 0) {
    md_reactor_->Send([cb]() { cb(0); });
    return;
  }
  const uint64_t n = std::min(len_bytes, kMaxZeroChunk);
  auto self = shared_from_this();
  MdIo(type, off_bytes, n, nullptr, [self, type, off_bytes, len_bytes, n, cb](int st) {
    if (st != 0 || n == len_bytes) return cb(st);
    self->ZeroRange(type, off_bytes + n, len_bytes - n, cb);
  });
}

void Lvstore::ZeroClusters(IoType type, std::vector<uint32_t> clusters,
                           std::function<void(int)> cb) {
  std::sort(clusters.begin(), clusters.end());
  auto runs = std::make_shared<std::vector<std::pair<uint32_t, uint32_t>>>();  // (start, count)
  for (uint32_t dc : clusters) {
    if (!runs->empty() && runs->back().first + runs->back().second == dc) {
      runs->back().second++;
    } else {
      runs->emplace_back(dc, 1);
    }
  }
  auto steps = std::make_shared<std::vector<Step>>();
  auto self = shared_from_this();
  for (const auto& r : *runs) {
    const uint64_t off = ClusterOffsetBytes(r.first);
    const uint64_t len = static_cast<uint64_t>(r.second) * sb_.cluster_size;
    steps->push_back([self, type, off, len](std::function<void(int)> k) {
      self->ZeroRange(type, off, len, k);
    });
  }
  RunSteps(steps, 0, std::move(cb));
}

void Lvstore::CopyCluster(uint32_t src, uint32_t dst, std::function<void(int)> cb) {
  const uint64_t chunk = std::min<uint64_t>(kCopyChunk, sb_.cluster_size);
  void* buf = AlignedAlloc(chunk);
  if (buf == nullptr) {
    md_reactor_->Send([cb]() { cb(-ENOMEM); });
    return;
  }
  auto self = shared_from_this();
  auto steps = std::make_shared<std::vector<Step>>();
  for (uint64_t off = 0; off < sb_.cluster_size; off += chunk) {
    const uint64_t from = ClusterOffsetBytes(src) + off, to = ClusterOffsetBytes(dst) + off;
    steps->push_back([self, from, chunk, buf](std::function<void(int)> k) {
      self->MdIo(IoType::kRead, from, chunk, buf, k);
    });
    steps->push_back([self, to, chunk, buf](std::function<void(int)> k) {
      self->MdIo(IoType::kWrite, to, chunk, buf, k);
    });
  }
  RunSteps(steps, 0, [buf, cb](int st) {
    free(buf);
    cb(st);
  });
}

// ---------------------------------------------------------------------------------------------
// Freeze

void Lvstore::WaitUntil(std::function<bool()> pred, std::function<void()> then) {
  if (pred()) return then();
  auto holder = std::make_shared<Poller*>(nullptr);
  Reactor* r = md_reactor_;
  *holder = r->RegisterPoller(
      "lvstore_wait",
      [r, holder, pred, then]() {
        if (*holder == nullptr || !pred()) return false;
        r->UnregisterPoller(*holder);
        *holder = nullptr;
        then();
        return true;
      },
      kDrainPollUs);
}

void Lvstore::Freeze(const std::vector<Lvol*>& set, std::function<void()> drained) {
  // Every lvol of the set is frozen at once (its registry flag set before any drain is
  // awaited); drained runs when the last one has nothing in flight.
  auto left = std::make_shared<size_t>(set.size() + 1);  // + a guard, dropped below
  auto finish = [set, drained, left]() {
    if (--*left != 0) return;
    drained();
    for (Lvol* lv : set) lv->Unref();
  };
  for (Lvol* lv : set) {
    lv->Ref();  // kept until the wait ends
    lv->md.freeze_count++;
    lv->FreezeChannels(md_reactor_, finish);
  }
  finish();
}

void Lvstore::Thaw(const std::vector<Lvol*>& set) {
  for (Lvol* lv : set) {
    if (--lv->md.freeze_count == 0) lv->ThawChannels();
  }
}

// ---------------------------------------------------------------------------------------------
// Allocation

void Lvstore::AllocateCluster(Lvol* lv, uint64_t idx, std::function<void(int)> cb) {
  if (unloaded_ || destroying_ || lv->md.state != Lvol::MdState::kLive) return cb(-ENODEV);
  if (lv->map()->Get(idx) != 0) return cb(0);
  if (idx >= lv->md.size_clusters) return cb(-EINVAL);
  const auto key = std::make_pair(lv, idx);
  auto it = pending_allocs_.find(key);
  if (it != pending_allocs_.end()) {
    it->second.cbs.push_back(std::move(cb));
    return;
  }
  const int64_t dc = TakeCluster();
  if (dc < 0) return cb(-ENOSPC);
  PendingAlloc& pa = pending_allocs_[key];
  pa.data_cluster = static_cast<uint32_t>(dc);
  pa.cbs.push_back(std::move(cb));
  lv->Ref();
  // Copy-on-write from the parent chain, or zeroes.
  uint32_t src = 0;
  for (const Lvol* a = lv->parent(); a != nullptr && src == 0; a = a->parent()) {
    src = a->map()->Get(idx);
  }
  auto self = shared_from_this();
  auto finish = [self, lv, idx, key](int st) {
    auto node = self->pending_allocs_.extract(key);
    const uint32_t dc = node.mapped().data_cluster;
    if (st == 0 && (self->unloaded_ || lv->md.state != Lvol::MdState::kLive)) st = -ENODEV;
    if (st == 0) {
      lv->map()->Set(idx, dc + 1);
      lv->num_allocated.fetch_add(1);
      self->MarkChanged();
      self->ScheduleCommit(true);
    } else {
      self->ReleaseClusters({dc});
    }
    for (auto& cb : node.mapped().cbs) cb(st);
    lv->Unref();
  };
  if (src != 0) {
    CopyCluster(src - 1, static_cast<uint32_t>(dc), finish);
  } else {
    ZeroRange(IoType::kWriteZeroes, ClusterOffsetBytes(static_cast<uint32_t>(dc)), sb_.cluster_size,
              finish);
  }
}

// ---------------------------------------------------------------------------------------------
// Store lifecycle

void Lvstore::Initialize(Answer done) {
  auto self = shared_from_this();
  RunOp([self, done](OpDone next) { self->InitializeNow(done, next); });
}

void Lvstore::InitializeNow(Answer done, std::function<void()> next) {
  auto self = shared_from_this();
  auto steps = std::make_shared<std::vector<Step>>();
  // SPDK's lvstore clear_method: what creation does to the data region.
  if (sb_.clear_method != kClearNone) {
    const IoType t = sb_.clear_method == kClearUnmap ? IoType::kUnmap : IoType::kWriteZeroes;
    const uint64_t off = ClusterOffsetBytes(0), len = total_data_clusters_ * sb_.cluster_size;
    steps->push_back([self, t, off, len](std::function<void(int)> k) { self->ZeroRange(t, off, len, k); });
  }
  // Slot B must not hold an old image; slot A gets the first one; the superblock goes last, so
  // a crash before it leaves no half-made store that tastes.
  steps->push_back([self](std::function<void(int)> k) {
    self->ZeroRange(IoType::kWriteZeroes, SlotOffset(1, self->sb_.slot_size), 4096, k);
  });
  steps->push_back([self](std::function<void(int)> k) {
    Image img = self->BuildImage();
    img.sequence = 1;
    std::vector<uint8_t> bytes = EncodeImage(img);
    const size_t len = AlignUp(bytes.size(), self->block_size_);
    void* buf = AlignedAlloc(len);
    if (buf == nullptr) return k(-ENOMEM);
    memset(buf, 0, len);
    memcpy(buf, bytes.data(), bytes.size());
    self->MdIo(IoType::kWrite, SlotOffset(0, self->sb_.slot_size), len, buf, [buf, k](int st) {
      free(buf);
      k(st);
    });
  });
  steps->push_back([self](std::function<void(int)> k) { self->MdIo(IoType::kFlush, 0, 0, nullptr, k); });
  steps->push_back([self](std::function<void(int)> k) {
    void* buf = AlignedAlloc(kSuperblockSize);
    if (buf == nullptr) return k(-ENOMEM);
    EncodeSuperblock(self->sb_, static_cast<uint8_t*>(buf));
    self->MdIo(IoType::kWrite, 0, kSuperblockSize, buf, [buf, k](int st) {
      free(buf);
      k(st);
    });
  });
  steps->push_back([self](std::function<void(int)> k) { self->MdIo(IoType::kFlush, 0, 0, nullptr, k); });
  RunSteps(steps, 0, [self, done, next](int st) {
    if (st != 0) {
      self->unloaded_ = true;
      self->MaybeCloseMdChannel();
      self->Reply(done, -st, "cannot write lvstore metadata to " + self->base_->name() + ": " + ErrText(st),
                  nullptr);
      return next();
    }
    self->active_slot_ = 0;
    self->next_sequence_ = 2;
    self->Reply(done, 0, "", nullptr);
    next();
  });
}

void Lvstore::Unload() {
  unloaded_ = true;
  for (Lvol* lv : lvols_) {
    lv->deleted.store(true);
    lv->KickChannels();
  }
  std::deque<Waiter> waiters;
  waiters.swap(waiters_);
  for (Waiter& w : waiters) {
    if (w.committed) w.committed(-ENODEV);
    if (w.released) w.released(-ENODEV);
  }
  orphan_frees_.clear();
  if (lazy_poller_ != nullptr) {
    md_reactor_->UnregisterPoller(lazy_poller_);
    lazy_poller_ = nullptr;
  }
  std::vector<Lvol*> lvols;
  lvols.swap(lvols_);
  for (Lvol* lv : lvols) lv->Unref();
  MaybeCloseMdChannel();
}

void Lvstore::Quiesce(std::function<void()> done) {
  auto self = shared_from_this();
  RunOp([self, done](OpDone next) {
    auto finish = [self, done]() {
      self->WaitUntil(
          [self]() {
            return self->background_ == 0 && !self->commit_running_ && self->md_inflight_ == 0 &&
                   self->pending_allocs_.empty();
          },
          [self, done]() {
            self->unloaded_ = true;
            if (self->lazy_poller_ != nullptr) {
              self->md_reactor_->UnregisterPoller(self->lazy_poller_);
              self->lazy_poller_ = nullptr;
            }
            self->MaybeCloseMdChannel();
            done();
          });
    };
    if (!self->unloaded_ && !self->destroying_ && self->change_seq_ != self->committed_seq_) {
      self->WaitCommit([finish](int) { finish(); });
    } else {
      finish();
    }
    next();
  });
}

void Lvstore::DropLvols() {
  std::vector<Lvol*> lvols;
  lvols.swap(lvols_);
  for (Lvol* lv : lvols) lv->Unref();
}

void Lvstore::OpDestroy(Answer done) {
  auto self = shared_from_this();
  RunOp([self, done](OpDone next) {
    if (self->unloaded_ || self->destroying_) {
      self->Reply(done, ENODEV, "lvstore is gone", nullptr);
      return next();
    }
    self->destroying_ = true;
    std::vector<Lvol*> all = self->lvols_;
    for (Lvol* lv : all) {
      lv->deleted.store(true);
      lv->KickChannels();
    }
    next();  // later operations see destroying_ and fail
    self->Freeze(all, [self, done]() {
      self->WaitUntil([self]() { return !self->commit_running_ && self->pending_allocs_.empty(); }, [self, done]() {
        // The superblock first, durably: from then on the bdev no longer tastes as an lvstore
        // (a power cut leaves the store either whole or gone, never a half-wiped one that
        // tastes with an error). Then the slots' headers.
        auto steps = std::make_shared<std::vector<Step>>();
        for (uint64_t off : {uint64_t{0}, SlotOffset(0, self->sb_.slot_size), SlotOffset(1, self->sb_.slot_size)}) {
          steps->push_back([self, off](std::function<void(int)> k) {
            self->ZeroRange(IoType::kWriteZeroes, off, 4096, k);
          });
          steps->push_back([self](std::function<void(int)> k) { self->MdIo(IoType::kFlush, 0, 0, nullptr, k); });
        }
        RunSteps(steps, 0, [self, done](int st) {
          if (st != 0) {
            self->Reply(done, -st, "cannot wipe the lvstore superblock on " + self->base_->name() + ": " + ErrText(st),
                        nullptr);
            return;
          }
          // Then every lvol's data, by its clear method; the store is gone when that is done.
          auto pending = std::make_shared<int>(1);
          auto finish = [self, done, pending]() {
            if (--*pending != 0) return;
            std::deque<Waiter> waiters;
            waiters.swap(self->waiters_);
            for (Waiter& w : waiters) {
              if (w.committed) w.committed(-ENODEV);
              if (w.released) w.released(-ENODEV);
            }
            self->unloaded_ = true;
            self->DropLvols();
            self->MaybeCloseMdChannel();
            self->Reply(done, 0, "", nullptr);
          };
          for (Lvol* lv : self->lvols_) {
            std::vector<std::pair<uint32_t, uint32_t>> entries;
            lv->map()->Collect(&entries);
            std::vector<uint32_t> clusters;
            for (const auto& e : entries) clusters.push_back(e.second);
            ++*pending;
            self->ClearAndRelease(std::move(clusters), lv->md.clear_method, finish);
          }
          finish();
        });
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Lvol operations

namespace {
bool Gone(bool unloaded, bool destroying, const Lvol* lv) {
  return unloaded || destroying || lv->md.state != Lvol::MdState::kLive;
}
std::string CommitMsg(int st) { return st == 0 ? "" : "lvstore metadata commit failed: " + ErrText(st); }
}  // namespace

void Lvstore::OpCreateLvol(const std::string& name, uint64_t size_clusters, bool thin,
                           uint32_t clear_method, const Uuid& uuid, Answer done) {
  auto self = shared_from_this();
  RunOp([self, name, size_clusters, thin, clear_method, uuid, done](OpDone next) {
    std::string msg;
    if (self->unloaded_ || self->destroying_) {
      self->Reply(done, ENODEV, "lvstore is gone", nullptr);
      return next();
    }
    if (int e = self->CheckNewName(name, &msg)) {
      self->Reply(done, e, msg, nullptr);
      return next();
    }
    if (size_clusters > kMaxClusters + 1) {
      self->Reply(done, EINVAL, "lvol size must be at most 2^32 - 1 clusters", nullptr);
      return next();
    }
    for (const Lvol* lv : self->lvols_) {
      if (lv->id() == uuid) {
        self->Reply(done, EEXIST, "an lvol with UUID " + FormatUuid(uuid) + " already exists", nullptr);
        return next();
      }
    }
    if (!self->Fits(RecordSize(name.size(), 0))) {
      self->Reply(done, ENOSPC, "lvstore " + self->name_ + " has no room for another lvol's metadata", nullptr);
      return next();
    }
    if (!thin && size_clusters > self->free_count_) {
      self->Reply(done, ENOSPC,
                  "lvstore " + self->name_ + " has " + std::to_string(self->free_count_) +
                      " free clusters; the lvol needs " + std::to_string(size_clusters),
                  nullptr);
      return next();
    }
    Lvol* lv = self->NewLvol(uuid, name, size_clusters, thin ? uint32_t{kFlagThin} : 0u, clear_method);
    auto commit = [self, lv, done, next]() {
      lv->md.state = Lvol::MdState::kLive;
      self->MarkChanged();
      self->WaitCommit([self, lv, done](int st) {
        if (st != 0) self->Forsake(lv);
        self->Reply(done, st, CommitMsg(st), st ? nullptr : lv);
      });
      next();
    };
    if (thin) return commit();
    // Thick: every cluster allocated and zeroed before the commit that makes the lvol exist.
    auto clusters = std::make_shared<std::vector<uint32_t>>();
    for (uint64_t i = 0; i < size_clusters; i++) {
      const uint32_t dc = static_cast<uint32_t>(self->TakeCluster());
      clusters->push_back(dc);
      lv->map()->Set(i, dc + 1);
    }
    lv->num_allocated.store(size_clusters);
    self->ZeroClusters(IoType::kWriteZeroes, *clusters, [self, lv, clusters, done, next, commit](int st) {
      if (st == 0 && (self->unloaded_ || self->destroying_)) st = -ENODEV;
      if (st != 0) {
        if (self->RemoveLvol(lv)) lv->Unref();
        self->ReleaseClusters(*clusters);
        self->Reply(done, st, "cannot initialise the lvol's clusters: " + ErrText(st), nullptr);
        return next();
      }
      commit();
    });
  });
}

void Lvstore::OpDeleteLvol(Lvol* lv, Answer done) {
  auto self = shared_from_this();
  lv->Ref();
  RunOp([self, lv, done](OpDone next) {
    if (Gone(self->unloaded_, self->destroying_, lv)) {
      self->Reply(done, ENODEV, "no such lvol", nullptr);
      lv->Unref();
      return next();
    }
    if (lv->md.clones.size() > 1) {
      self->Reply(done, EBUSY,
                  "lvol " + lv->md.name + " has " + std::to_string(lv->md.clones.size()) + " clones",
                  nullptr);
      lv->Unref();
      return next();
    }
    lv->md.state = Lvol::MdState::kDeleting;
    lv->deleted.store(true);
    lv->KickChannels();
    // Deleting a snapshot with one clone: the clone inherits its clusters and its parent, so the
    // clone and everything reading through it must be still while the maps change.
    Lvol* heir = lv->md.clones.empty() ? nullptr : lv->md.clones[0];
    std::vector<Lvol*> set{lv};
    if (heir != nullptr) {
      set.push_back(heir);
      self->Descendants(heir, &set);
    }
    self->Freeze(set, [self, lv, heir, set, done, next]() {
      std::vector<Lvol*> thaw(set.begin() + 1, set.end());
      if (self->unloaded_ || self->destroying_) {
        self->Thaw(thaw);
        self->Reply(done, ENODEV, "lvstore is gone", nullptr);
        lv->Unref();
        return next();
      }
      std::vector<std::pair<uint32_t, uint32_t>> entries;
      lv->map()->Collect(&entries);
      std::vector<uint32_t> freed;
      Lvol* gp = lv->parent();
      if (heir != nullptr) {
        for (const auto& e : entries) {
          if (e.first < heir->md.size_clusters && heir->map()->Get(e.first) == 0) {
            heir->map()->Set(e.first, e.second + 1);
            heir->num_allocated.fetch_add(1);
          } else {
            freed.push_back(e.second);
          }
        }
        heir->SetParent(gp);
      } else {
        for (const auto& e : entries) freed.push_back(e.second);
      }
      if (gp != nullptr) ReplaceClone(gp, lv, heir);
      lv->md.clones.clear();
      lv->num_allocated.store(0);
      const bool owned = self->RemoveLvol(lv);
      self->MarkChanged();
      const uint32_t clear = lv->md.clear_method;
      self->WaitCommitThenFree(
          std::move(freed), clear, [self, thaw](int) { self->Thaw(thaw); },
          [self, lv, owned, done](int st) {
            self->Reply(done, st, CommitMsg(st), nullptr);
            if (owned) lv->Unref();
            lv->Unref();
          });
      next();
    });
  });
}

void Lvstore::OpResize(Lvol* lv, uint64_t size_clusters, Answer done) {
  auto self = shared_from_this();
  lv->Ref();
  RunOp([self, lv, size_clusters, done](OpDone next) {
    auto fail = [&](int e, const std::string& m) {
      self->Reply(done, e, m, nullptr);
      lv->Unref();
      next();
    };
    if (Gone(self->unloaded_, self->destroying_, lv)) return fail(ENODEV, "no such lvol");
    if (lv->read_only()) return fail(EPERM, "lvol " + lv->md.name + " is read-only");
    if (size_clusters > kMaxClusters + 1) return fail(EINVAL, "lvol size is too large");
    const uint64_t old = lv->md.size_clusters;
    const uint64_t bpc = self->blocks_per_cluster_;
    if (size_clusters == old) return fail(0, "");
    if (size_clusters > old) {
      const uint64_t need = (lv->md.flags & kFlagThin) ? 0 : size_clusters - old;
      if (need > self->free_count_) {
        return fail(ENOSPC, "lvstore " + self->name_ + " has " + std::to_string(self->free_count_) +
                                " free clusters; growing needs " + std::to_string(need));
      }
      auto clusters = std::make_shared<std::vector<uint32_t>>();
      for (uint64_t i = 0; i < need; i++) clusters->push_back(static_cast<uint32_t>(self->TakeCluster()));
      auto apply = [self, lv, old, size_clusters, bpc, clusters, done, next]() {
        self->Freeze({lv}, [self, lv, old, size_clusters, bpc, clusters, done, next]() {
          if (Gone(self->unloaded_, self->destroying_, lv)) {
            self->Thaw({lv});
            self->ReleaseClusters(*clusters);
            self->Reply(done, ENODEV, "no such lvol", nullptr);
            lv->Unref();
            return next();
          }
          lv->map()->Resize(size_clusters);
          for (size_t i = 0; i < clusters->size(); i++) lv->map()->Set(old + i, (*clusters)[i] + 1);
          lv->num_allocated.fetch_add(clusters->size());
          lv->md.size_clusters = size_clusters;
          self->Thaw({lv});
          self->MarkChanged();
          self->WaitCommit([self, lv, size_clusters, bpc, done](int st) {
            lv->SetSizeBlocks(size_clusters * bpc);
            self->Reply(done, st, CommitMsg(st), nullptr);
            lv->Unref();
          });
          next();
        });
      };
      if (clusters->empty()) return apply();
      self->ZeroClusters(IoType::kWriteZeroes, *clusters, [self, lv, clusters, done, next, apply](int st) {
        if (st != 0) {
          self->ReleaseClusters(*clusters);
          self->Reply(done, st, "cannot initialise new clusters: " + ErrText(st), nullptr);
          lv->Unref();
          return next();
        }
        apply();
      });
      return;
    }
    // Shrink: no new I/O past the new end from now on; wait for what is in flight.
    lv->SetSizeBlocks(size_clusters * bpc);
    self->Freeze({lv}, [self, lv, size_clusters, done, next]() {
      if (Gone(self->unloaded_, self->destroying_, lv)) {
        self->Thaw({lv});
        self->Reply(done, ENODEV, "no such lvol", nullptr);
        lv->Unref();
        return next();
      }
      std::vector<std::pair<uint32_t, uint32_t>> entries;
      lv->map()->Collect(&entries);
      std::vector<uint32_t> freed;
      for (const auto& e : entries) {
        if (e.first < size_clusters) continue;
        freed.push_back(e.second);
        lv->map()->Set(e.first, 0);
      }
      lv->map()->Resize(size_clusters);
      lv->num_allocated.fetch_sub(freed.size());
      lv->md.size_clusters = size_clusters;
      self->Thaw({lv});
      self->MarkChanged();
      self->WaitCommitThenFree(std::move(freed), lv->md.clear_method, nullptr, [self, lv, done](int st) {
        self->Reply(done, st, CommitMsg(st), nullptr);
        lv->Unref();
      });
      next();
    });
  });
}

void Lvstore::OpSetReadOnly(Lvol* lv, Answer done) {
  auto self = shared_from_this();
  lv->Ref();
  RunOp([self, lv, done](OpDone next) {
    if (Gone(self->unloaded_, self->destroying_, lv) || lv->read_only()) {
      const bool gone = Gone(self->unloaded_, self->destroying_, lv);
      self->Reply(done, gone ? ENODEV : 0, gone ? "no such lvol" : "", nullptr);
      lv->Unref();
      return next();
    }
    // Drain writes in flight first: once read-only, the lvol's map never changes again (clones
    // of it rely on that).
    self->Freeze({lv}, [self, lv, done, next]() {
      lv->read_only_.store(true);
      lv->md.flags |= kFlagReadOnly;
      self->Thaw({lv});
      self->MarkChanged();
      self->WaitCommit([self, lv, done](int st) {
        self->Reply(done, st, CommitMsg(st), nullptr);
        lv->Unref();
      });
      next();
    });
  });
}

void Lvstore::OpRenameLvol(Lvol* lv, const std::string& name, Answer done) {
  auto self = shared_from_this();
  lv->Ref();
  RunOp([self, lv, name, done](OpDone next) {
    auto finish = [&](int e, const std::string& m) {
      self->Reply(done, e, m, nullptr);
      lv->Unref();
      next();
    };
    if (Gone(self->unloaded_, self->destroying_, lv)) return finish(ENODEV, "no such lvol");
    if (name == lv->md.name) return finish(0, "");
    std::string msg;
    if (int e = self->CheckNewName(name, &msg)) return finish(e, msg);
    if (lv->read_only()) return finish(EPERM, "lvol " + lv->md.name + " is read-only");
    if (name.size() > lv->md.name.size() &&
        !self->Fits(NameFieldSize(name.size()) - NameFieldSize(lv->md.name.size()))) {
      return finish(ENOSPC, "lvstore metadata is full");
    }
    lv->md.name = name;
    self->MarkChanged();
    self->WaitCommit([self, lv, done](int st) {
      self->Reply(done, st, CommitMsg(st), nullptr);
      lv->Unref();
    });
    next();
  });
}

void Lvstore::OpRenameStore(const std::string& name, Answer done) {
  auto self = shared_from_this();
  RunOp([self, name, done](OpDone next) {
    if (self->unloaded_ || self->destroying_) {
      self->Reply(done, ENODEV, "lvstore is gone", nullptr);
      return next();
    }
    if (name == self->name_) {
      self->Reply(done, 0, "", nullptr);
      return next();
    }
    if (name.size() > self->name_.size() &&
        !self->Fits(NameFieldSize(name.size()) - NameFieldSize(self->name_.size()))) {
      self->Reply(done, ENOSPC, "lvstore metadata is full", nullptr);
      return next();
    }
    self->name_ = name;
    self->MarkChanged();
    self->WaitCommit([self, done](int st) { self->Reply(done, st, CommitMsg(st), nullptr); });
    next();
  });
}

void Lvstore::OpGrow(Answer done) {
  auto self = shared_from_this();
  RunOp([self, done](OpDone next) {
    if (self->unloaded_ || self->destroying_) {
      self->Reply(done, ENODEV, "lvstore is gone", nullptr);
      return next();
    }
    const uint64_t old = self->total_data_clusters_;
    const uint64_t holds = DataClustersFor(self->base_->num_blocks() * self->block_size_, self->sb_);
    const uint64_t room = (self->sb_.slot_size - self->FixedImageBytes()) / 8;
    const uint64_t want = std::min(holds, room);
    if (want <= old) {
      self->Reply(done, 0, "", nullptr);
      return next();
    }
    // The old last word's sentinel bits become real clusters; the new last word gets its own.
    if (old % 64 != 0) self->used_[old / 64] &= ~(~0ull << (old % 64));
    self->used_.resize((want + 63) / 64, 0);
    if (want % 64 != 0) self->used_.back() |= ~0ull << (want % 64);
    self->total_data_clusters_ = want;
    self->free_count_ += want - old;
    self->free_clusters.store(self->free_count_);
    self->MarkChanged();
    self->WaitCommit([self, done](int st) { self->Reply(done, st, CommitMsg(st), nullptr); });
    next();
  });
}

void Lvstore::OpSnapshot(Lvol* origin, const std::string& name, Answer done) {
  auto self = shared_from_this();
  origin->Ref();
  RunOp([self, origin, name, done](OpDone next) {
    auto fail = [&](int e, const std::string& m) {
      self->Reply(done, e, m, nullptr);
      origin->Unref();
      next();
    };
    if (Gone(self->unloaded_, self->destroying_, origin)) return fail(ENODEV, "no such lvol");
    if (origin->read_only()) return fail(EINVAL, "cannot snapshot read-only lvol " + origin->md.name);
    std::string msg;
    if (int e = self->CheckNewName(name, &msg)) return fail(e, msg);
    if (!self->Fits(RecordSize(name.size(), 0))) return fail(ENOSPC, "lvstore metadata is full");
    Lvol* snap = self->NewLvol(NewUuid(), name, origin->md.size_clusters,
                               (origin->md.flags & kFlagThin) | kFlagReadOnly | kFlagSnapshot,
                               origin->md.clear_method);
    // The snapshot takes the origin's clusters; the origin becomes an empty thin clone of it.
    self->Freeze({origin}, [self, origin, snap, done, next]() {
      if (Gone(self->unloaded_, self->destroying_, origin)) {
        self->Thaw({origin});
        if (self->RemoveLvol(snap)) snap->Unref();
        self->Reply(done, ENODEV, "no such lvol", nullptr);
        origin->Unref();
        return next();
      }
      ClusterMap* taken = origin->SwapMap(new ClusterMap(origin->md.size_clusters));
      delete snap->SwapMap(taken);
      snap->num_allocated.store(origin->num_allocated.exchange(0));
      Lvol* gp = origin->parent();
      snap->SetParent(gp);
      if (gp != nullptr) ReplaceClone(gp, origin, snap);
      origin->SetParent(snap);
      AddClone(snap, origin);
      origin->md.flags |= kFlagThin;
      snap->md.state = Lvol::MdState::kLive;
      self->MarkChanged();
      // The origin's I/O stays held until the new maps are durable.
      self->WaitCommit([self, origin, snap, done](int st) {
        self->Thaw({origin});
        self->Reply(done, st, CommitMsg(st), st ? nullptr : snap);
        origin->Unref();
      });
      next();
    });
  });
}

void Lvstore::OpClone(Lvol* snap, const std::string& name, Answer done) {
  auto self = shared_from_this();
  snap->Ref();
  RunOp([self, snap, name, done](OpDone next) {
    auto fail = [&](int e, const std::string& m) {
      self->Reply(done, e, m, nullptr);
      snap->Unref();
      next();
    };
    if (Gone(self->unloaded_, self->destroying_, snap)) return fail(ENODEV, "no such lvol");
    if (!snap->read_only()) {
      return fail(EINVAL, "lvol " + snap->md.name + " is not read-only (clone a snapshot)");
    }
    std::string msg;
    if (int e = self->CheckNewName(name, &msg)) return fail(e, msg);
    if (!self->Fits(RecordSize(name.size(), 0))) return fail(ENOSPC, "lvstore metadata is full");
    Lvol* c = self->NewLvol(NewUuid(), name, snap->md.size_clusters, kFlagThin, kClearUnmap);
    c->SetParent(snap);
    AddClone(snap, c);
    c->md.state = Lvol::MdState::kLive;
    self->MarkChanged();
    self->WaitCommit([self, c, snap, done](int st) {
      if (st != 0) self->Forsake(c);
      self->Reply(done, st, CommitMsg(st), st ? nullptr : c);
      snap->Unref();
    });
    next();
  });
}

void Lvstore::OpInflate(Lvol* lv, bool allocate_all, Answer done) {
  auto self = shared_from_this();
  lv->Ref();
  RunOp([self, lv, allocate_all, done](OpDone next) {
    auto fail = [&](int e, const std::string& m) {
      self->Reply(done, e, m, nullptr);
      lv->Unref();
      next();
    };
    if (Gone(self->unloaded_, self->destroying_, lv)) return fail(ENODEV, "no such lvol");
    Lvol* parent = lv->parent();
    // bs_inflate_blob_open_cpl: decoupling needs a parent; a thick lvol (which never has one)
    // has nothing to inflate.
    if (!allocate_all && parent == nullptr) {
      return fail(EINVAL, "cannot decouple the parent of lvol " + lv->md.name + ": it has no parent");
    }
    if ((lv->md.flags & kFlagThin) == 0) return fail(0, "");
    const uint64_t size = lv->md.size_clusters;
    const char* what = allocate_all ? "inflating" : "decoupling";
    // Inflate needs every cluster the lvol does not have (bs_cluster_needs_allocation): fail
    // before looking at each one when there cannot be enough.
    if (allocate_all && size - lv->num_allocated.load() > self->free_count_) {
      return fail(ENOSPC, "lvstore " + self->name_ + " has " + std::to_string(self->free_count_) +
                              " free clusters; " + what + " lvol " + lv->md.name + " needs " +
                              std::to_string(size - lv->num_allocated.load()));
    }
    // The clusters to give the lvol: (index, source data cluster + 1 or 0 for zeroes, new one).
    // Ancestors are read-only and operations run one at a time, so the sources stay put while
    // they are copied.
    struct Job {
      uint64_t idx;
      uint32_t src;
      uint32_t dst;
    };
    auto jobs = std::make_shared<std::vector<Job>>();
    if (allocate_all) {
      for (uint64_t i = 0; i < size; i++) {
        if (lv->map()->Get(i) != 0) continue;
        uint32_t src = 0;
        for (const Lvol* a = parent; a != nullptr && src == 0; a = a->parent()) src = a->map()->Get(i);
        jobs->push_back(Job{i, src, 0});
      }
    } else {
      // Only what the parent itself holds (spdk_bs_blob_decouple_parent); the rest keeps
      // reading through the grandparent, which becomes the parent.
      std::vector<std::pair<uint32_t, uint32_t>> entries;
      parent->map()->Collect(&entries);
      for (const auto& e : entries) {
        if (e.first >= size || lv->map()->Get(e.first) != 0) continue;
        jobs->push_back(Job{e.first, e.second + 1, 0});
      }
    }
    if (jobs->size() > self->free_count_) {
      return fail(ENOSPC, "lvstore " + self->name_ + " has " + std::to_string(self->free_count_) +
                              " free clusters; " + what + " lvol " + lv->md.name + " needs " +
                              std::to_string(jobs->size()));
    }
    auto taken = std::make_shared<std::vector<uint32_t>>();
    std::vector<uint32_t> zero;
    auto steps = std::make_shared<std::vector<Step>>();
    for (Job& j : *jobs) {
      j.dst = static_cast<uint32_t>(self->TakeCluster());
      taken->push_back(j.dst);
      if (j.src == 0) {
        zero.push_back(j.dst);
        continue;
      }
      const uint32_t src = j.src - 1, dst = j.dst;
      steps->push_back([self, src, dst](std::function<void(int)> k) { self->CopyCluster(src, dst, k); });
    }
    if (!zero.empty()) {
      steps->push_back([self, zero](std::function<void(int)> k) {
        self->ZeroClusters(IoType::kWriteZeroes, zero, k);
      });
    }
    // The lvol's map and parent change frozen (and so does every lvol reading through it: its
    // parent pointer is part of their chain); the copies above were made while it ran.
    auto apply = [self, lv, allocate_all, jobs, taken, done, next]() {
      std::vector<Lvol*> set{lv};
      self->Descendants(lv, &set);
      self->Freeze(set, [self, lv, allocate_all, jobs, taken, set, done, next]() {
        if (Gone(self->unloaded_, self->destroying_, lv)) {
          self->Thaw(set);
          self->ReleaseClusters(*taken);
          self->Reply(done, ENODEV, "no such lvol", nullptr);
          lv->Unref();
          return next();
        }
        std::vector<uint32_t> unused;
        uint64_t added = 0;
        for (const Job& j : *jobs) {
          // A write allocated this cluster (with the same content) while the copies ran.
          if (lv->map()->Get(j.idx) != 0) {
            unused.push_back(j.dst);
            continue;
          }
          lv->map()->Set(j.idx, j.dst + 1);
          added++;
        }
        // Never referenced by any image: free at once.
        self->ReleaseClusters(unused);
        lv->num_allocated.fetch_add(added);
        Lvol* parent = lv->parent();
        Lvol* heir = allocate_all || parent == nullptr ? nullptr : parent->parent();
        if (parent != nullptr) ReplaceClone(parent, lv, nullptr);
        if (heir != nullptr) AddClone(heir, lv);
        lv->SetParent(heir);
        if (allocate_all) lv->md.flags &= ~uint32_t{kFlagThin};
        self->Thaw(set);
        self->MarkChanged();
        self->WaitCommit([self, lv, done](int st) {
          self->Reply(done, st, CommitMsg(st), nullptr);
          lv->Unref();
        });
        next();
      });
    };
    if (steps->empty()) return apply();
    RunSteps(steps, 0, [self, lv, taken, apply, done, next](int st) {
      if (st == 0 && (self->unloaded_ || self->destroying_)) st = -ENODEV;
      if (st != 0) {
        self->ReleaseClusters(*taken);
        self->Reply(done, st, "cannot copy the lvol's clusters: " + ErrText(st), nullptr);
        lv->Unref();
        return next();
      }
      apply();
    });
  });
}

}  // namespace spdk_node

#include "lvol.h"

#include <algorithm>
#include <cstring>

#include "../reactor/reactor.h"
#include "store.h"

namespace spdk_node {

// ---------------------------------------------------------------------------------------------
// ClusterMap

ClusterMap::ClusterMap(uint64_t size_clusters) { Resize(size_clusters); }

ClusterMap::~ClusterMap() {
  for (uint64_t i = 0; i < npages_; i++) delete[] pages_[i].load(std::memory_order_relaxed);
  delete[] pages_;
}

void ClusterMap::Set(uint64_t idx, uint32_t value) {
  const uint64_t pg = idx >> kPageShift;
  if (pg >= npages_) return;  // callers stay inside the size; nothing to publish past it
  std::atomic<uint32_t>* p = pages_[pg].load(std::memory_order_relaxed);
  if (p == nullptr) {
    if (value == 0) return;
    p = new std::atomic<uint32_t>[kPageEntries]();
    pages_[pg].store(p, std::memory_order_release);
  }
  p[idx & (kPageEntries - 1)].store(value, std::memory_order_release);
}

void ClusterMap::Resize(uint64_t size_clusters) {
  const uint64_t n = (size_clusters + kPageEntries - 1) >> kPageShift;
  if (n == npages_ && pages_ != nullptr) return;
  auto* top = new std::atomic<std::atomic<uint32_t>*>[n == 0 ? 1 : n]();
  const uint64_t keep = std::min(n, npages_);
  for (uint64_t i = 0; i < keep; i++) {
    top[i].store(pages_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  for (uint64_t i = keep; i < npages_; i++) delete[] pages_[i].load(std::memory_order_relaxed);
  delete[] pages_;
  pages_ = top;
  npages_ = n;
}

void ClusterMap::Collect(std::vector<std::pair<uint32_t, uint32_t>>* out) const {
  out->clear();
  for (uint64_t pg = 0; pg < npages_; pg++) {
    const std::atomic<uint32_t>* p = pages_[pg].load(std::memory_order_acquire);
    if (p == nullptr) continue;
    for (uint64_t i = 0; i < kPageEntries; i++) {
      const uint32_t v = p[i].load(std::memory_order_relaxed);
      if (v != 0) out->emplace_back(static_cast<uint32_t>((pg << kPageShift) + i), v - 1);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Lvol

Lvol::Lvol(std::shared_ptr<Lvstore> store, const lvolfmt::Uuid& uuid, uint64_t size_clusters)
    : Bdev(lvolfmt::FormatUuid(uuid), "Logical Volume", store->block_size(),
           size_clusters * store->blocks_per_cluster(), lvolfmt::FormatUuid(uuid)),
      store_(std::move(store)),
      id_(uuid),
      map_(new ClusterMap(size_clusters)) {
  md.size_clusters = size_clusters;
}

Lvol::~Lvol() {
  delete map_;
  if (parent_ != nullptr) parent_->Unref();
}

BdevChannel* Lvol::CreateChannel(Reactor* reactor) { return new LvolChannel(this, reactor); }

uint32_t Lvol::required_alignment() const { return store_->base()->required_alignment(); }

void Lvol::SetParent(Lvol* p) {
  if (p != nullptr) p->Ref();
  Lvol* old = parent_;
  parent_ = p;
  if (old != nullptr) old->Unref();
}

ClusterMap* Lvol::SwapMap(ClusterMap* m) {
  ClusterMap* old = map_;
  map_ = m;
  return old;
}

bool Lvol::AddChannel(LvolChannel* ch) {
  std::lock_guard<std::mutex> lock(ch_mu_);
  channels_.push_back(ch);
  return frozen_;
}

void Lvol::RemoveChannel(LvolChannel* ch) {
  std::lock_guard<std::mutex> lock(ch_mu_);
  channels_.erase(std::remove(channels_.begin(), channels_.end(), ch), channels_.end());
}

std::vector<Reactor*> Lvol::ReactorsLocked() const {
  std::vector<Reactor*> rs;
  for (LvolChannel* ch : channels_) {
    if (std::find(rs.begin(), rs.end(), ch->reactor()) == rs.end()) rs.push_back(ch->reactor());
  }
  return rs;
}

void Lvol::FreezeChannels(Reactor* md, std::function<void()> drained) {
  std::vector<Reactor*> rs;
  {
    std::lock_guard<std::mutex> lock(ch_mu_);
    frozen_ = true;
    rs = ReactorsLocked();
  }
  if (rs.empty()) return drained();
  // md thread only: reactors that have not answered yet.
  auto left = std::make_shared<size_t>(rs.size());
  auto fn = std::make_shared<std::function<void()>>(std::move(drained));
  for (Reactor* r : rs) {
    Ref();  // the message may outlive every channel
    r->Send([this, r, md, left, fn]() {
      auto wait = std::make_shared<LvolChannel::DrainWait>();
      wait->left = 1;  // a guard, dropped below
      wait->done = [md, left, fn]() {
        md->Send([left, fn]() {
          if (--*left == 0) (*fn)();
        });
      };
      {
        // Channels on r are created and destroyed only on r's thread, and nothing below calls
        // out, so the set is stable while the lock is held.
        std::lock_guard<std::mutex> lock(ch_mu_);
        for (LvolChannel* ch : channels_) {
          if (ch->reactor() != r) continue;
          ch->frozen_ = true;
          if (ch->inflight_ != 0) {
            wait->left++;
            ch->drain_waits_.push_back(wait);
          }
        }
      }
      if (--wait->left == 0) wait->done();
      Unref();
    });
  }
}

void Lvol::ThawChannels() {
  {
    std::lock_guard<std::mutex> lock(ch_mu_);
    frozen_ = false;
  }
  KickChannels();
}

void Lvol::KickChannels() {
  std::vector<Reactor*> rs;
  {
    std::lock_guard<std::mutex> lock(ch_mu_);
    rs = ReactorsLocked();
  }
  for (Reactor* r : rs) {
    Ref();
    r->Send([this, r]() {
      SyncChannelsOn(r);
      Unref();
    });
  }
}

void Lvol::SyncChannelsOn(Reactor* r) {
  std::vector<LvolChannel*> mine;
  {
    std::lock_guard<std::mutex> lock(ch_mu_);
    for (LvolChannel* ch : channels_)
      if (ch->reactor() == r) mine.push_back(ch);
  }
  for (LvolChannel* ch : mine) {
    {
      // Resume() below runs completion callbacks, which may close another channel here: touch
      // only channels still registered. The state is read now, not when the message was sent:
      // a freeze that came after this thaw must stay in force.
      std::lock_guard<std::mutex> lock(ch_mu_);
      if (std::find(channels_.begin(), channels_.end(), ch) == channels_.end()) continue;
      ch->frozen_ = frozen_;
    }
    ch->Resume();
  }
}

// ---------------------------------------------------------------------------------------------
// LvolChannel

namespace {

bool IsWriteType(IoType t) {
  return t == IoType::kWrite || t == IoType::kUnmap || t == IoType::kWriteZeroes;
}

// The parent I/O's bookkeeping in its driver_ctx: [0] parts outstanding, [1] first error.
uint64_t& PartsLeft(BdevIo* io) { return io->driver_ctx[0]; }
uint64_t& FirstError(BdevIo* io) { return io->driver_ctx[1]; }

// Copies the next `len` bytes of an iovec list (cursor *i, *off) as iovecs into out.
void SliceIovs(const struct iovec* iovs, int iovcnt, int* i, size_t* off, uint64_t len,
               std::vector<struct iovec>* out) {
  out->clear();
  while (len > 0 && *i < iovcnt) {
    const size_t avail = iovs[*i].iov_len - *off;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(avail, len));
    out->push_back({static_cast<uint8_t*>(iovs[*i].iov_base) + *off, n});
    len -= n;
    *off += n;
    if (*off == iovs[*i].iov_len) {
      (*i)++;
      *off = 0;
    }
  }
}

}  // namespace

LvolChannel::LvolChannel(Lvol* lvol, Reactor* reactor)
    : BdevChannel(lvol, reactor),
      lvol_(lvol),
      store_(lvol->store_ref()),
      base_(store_->base()->CreateChannel(reactor)),
      blocks_per_cluster_(store_->blocks_per_cluster()),
      cluster_shift_(static_cast<unsigned>(__builtin_ctzll(store_->blocks_per_cluster()))),
      data_offset_blocks_(store_->data_offset_blocks()) {
  frozen_ = lvol_->AddChannel(this);
}

LvolChannel::~LvolChannel() {
  // Nothing is in flight or held (the owner's contract: every submitted I/O has completed).
  lvol_->RemoveChannel(this);
  if (!drain_waits_.empty()) Drained();
  delete base_;
  while (free_pieces_ != nullptr) {
    Piece* p = free_pieces_;
    free_pieces_ = p->next_free;
    delete p;
  }
  while (free_directs_ != nullptr) {
    Direct* d = free_directs_;
    free_directs_ = d->next_free;
    delete d;
  }
}

void LvolChannel::Drained() {
  std::vector<std::shared_ptr<DrainWait>> waits;
  waits.swap(drain_waits_);
  for (const auto& w : waits)
    if (--w->left == 0) w->done();
}

// The I/O path (Submit, Dispatch, OnDirectDone) calls nothing but in tail position, and keeps
// the rare cases in separate functions, so it needs no stack frame of its own: after a write's
// copy into a malloc base the store buffer is full, and every store here (a register spilled to
// the stack included) waits for it to drain.
void LvolChannel::Submit(BdevIo* io) {
  if (__builtin_expect(lvol_->deleted.load(std::memory_order_acquire) || lvol_->removed(), 0)) {
    return io->Complete(-ENODEV);
  }
  // Behind held I/O (FIFO), or held itself while frozen; a thaw message resumes it.
  if (__builtin_expect(frozen_ || !held_.empty(), 0)) return Hold(io);
  Dispatch(io);
}

void LvolChannel::Hold(BdevIo* io) { held_.push_back(io); }

void LvolChannel::Resume() {
  while (!held_.empty()) {
    BdevIo* io = held_.front();
    if (lvol_->deleted.load(std::memory_order_acquire) || lvol_->removed()) {
      held_.pop_front();
      io->Complete(-ENODEV);
      continue;
    }
    if (frozen_) break;
    held_.pop_front();
    Dispatch(io);
  }
}

LvolChannel::Piece* LvolChannel::AllocPiece() {
  Piece* p = new Piece();
  p->ch = this;
  p->child.cb = &LvolChannel::OnChildDone;
  p->child.cb_ctx = p;
  return p;
}

void LvolChannel::Dispatch(BdevIo* io) {
  // Fast path: a read or write inside one allocated cluster is one base I/O on the parent's
  // own iovecs; no splitting, no part counting (OnDirectDone completes the parent).
  const IoType type = io->type;
  if (type == IoType::kRead || type == IoType::kWrite) {
    const uint64_t off = io->offset_blocks;
    const uint64_t n = io->num_blocks;
    const uint64_t cluster = off >> cluster_shift_;
    const uint64_t in = off & (blocks_per_cluster_ - 1);
    const uint64_t nb = lvol_->num_blocks();
    if (n != 0 && in + n <= blocks_per_cluster_ && off < nb && n <= nb - off &&
        (type == IoType::kRead || !lvol_->read_only())) {
      const uint32_t e = lvol_->map()->Get(cluster);
      uint64_t total = 0;
      for (int i = 0; i < io->iovcnt; i++) total += io->iovs[i].iov_len;
      if (e != 0 && total == n * lvol_->block_size()) {
        Direct* d = free_directs_;
        if (__builtin_expect(d == nullptr, 0)) return AddDirect(io);
        free_directs_ = d->next_free;
        inflight_++;
        d->parent = io;
        BdevIo& c = d->child;
        c.type = type;
        c.offset_blocks = data_offset_blocks_ + (static_cast<uint64_t>(e - 1) << cluster_shift_) + in;
        c.num_blocks = n;
        c.iovs = io->iovs;
        c.iovcnt = io->iovcnt;
        return base_->Submit(&c);
      }
    }
  }
  inflight_++;
  DispatchSplit(io);
}

void LvolChannel::AddDirect(BdevIo* io) {
  Direct* d = new Direct();
  d->ch = this;
  d->child.cb = &LvolChannel::OnDirectDone;
  d->child.cb_ctx = d;
  d->next_free = free_directs_;
  free_directs_ = d;
  Dispatch(io);
}

void LvolChannel::OnDirectDone(BdevIo* c, int status, void* ctx) {
  Direct* d = static_cast<Direct*>(ctx);
  LvolChannel* ch = d->ch;
  BdevIo* parent = d->parent;
  d->next_free = ch->free_directs_;
  ch->free_directs_ = d;
  ch->ParentDone(parent, status);
  (void)c;
}

void LvolChannel::DispatchSplit(BdevIo* io) {
  PartsLeft(io) = 1;  // a guard: inline completions cannot finish the parent early
  FirstError(io) = 0;
  if (IsWriteType(io->type) && lvol_->read_only()) return ParentDone(io, -EPERM);
  if (io->type == IoType::kFlush) {
    // Flush = flush the base (data written through this channel) + wait for the commit of
    // every metadata change made so far (cluster allocations included).
    PartsLeft(io) = 3;
    Piece* p = NewPiece();
    p->parent = io;
    p->child.type = IoType::kFlush;
    p->child.offset_blocks = 0;
    p->child.num_blocks = 0;
    p->child.iovs = nullptr;
    p->child.iovcnt = 0;
    base_->Submit(&p->child);
    Reactor* r = reactor_;
    std::shared_ptr<Lvstore> store = store_;
    store_->md_reactor()->Send([store, r, this, io]() {
      store->FlushBarrier([r, this, io](int st) {
        r->Send([this, io, st]() { PieceDone(nullptr, st, io); });
      });
    });
    return PieceDone(nullptr, 0, io);
  }
  const uint64_t nb = lvol_->num_blocks();
  if (io->offset_blocks > nb || io->num_blocks > nb - io->offset_blocks) {
    return ParentDone(io, -EINVAL);
  }
  if (io->num_blocks == 0) return ParentDone(io, 0);
  const uint64_t bs = lvol_->block_size();
  const bool rw = io->type == IoType::kRead || io->type == IoType::kWrite;
  if (rw) {
    uint64_t total = 0;
    for (int i = 0; i < io->iovcnt; i++) total += io->iovs[i].iov_len;
    if (total != io->num_blocks * bs) return ParentDone(io, -EINVAL);
  }
  uint64_t off = io->offset_blocks;
  uint64_t left = io->num_blocks;
  int iov_i = 0;
  size_t iov_off = 0;
  while (left > 0) {
    const uint64_t in = off % blocks_per_cluster_;
    const uint64_t n = std::min(left, blocks_per_cluster_ - in);
    Piece* p = NewPiece();
    p->parent = io;
    p->cluster = off / blocks_per_cluster_;
    p->off_blocks = in;
    p->num_blocks = n;
    if (rw) SliceIovs(io->iovs, io->iovcnt, &iov_i, &iov_off, n * bs, &p->iovs);
    PartsLeft(io)++;
    StartPiece(p);
    off += n;
    left -= n;
  }
  PieceDone(nullptr, 0, io);  // drop the guard
}

uint32_t LvolChannel::LookupChain(uint64_t idx) const {
  for (const Lvol* a = lvol_->parent(); a != nullptr; a = a->parent()) {
    const uint32_t e = a->map()->Get(idx);
    if (e != 0) return e;
  }
  return 0;
}

void LvolChannel::StartPiece(Piece* p) {
  const IoType type = p->parent->type;
  const uint32_t e = lvol_->map()->Get(p->cluster);
  if (e != 0) return SubmitToBase(p, type, e);
  switch (type) {
    case IoType::kRead: {
      // Unallocated: the parent chain's data, or zeroes.
      const uint32_t src = LookupChain(p->cluster);
      if (src != 0) return SubmitToBase(p, IoType::kRead, src);
      for (const struct iovec& v : p->iovs) memset(v.iov_base, 0, v.iov_len);
      return PieceDone(p, 0, p->parent);
    }
    case IoType::kWrite:
      return RequestCluster(p);
    case IoType::kUnmap:
    case IoType::kWriteZeroes:
      // Already zeroes unless an ancestor has data there; then it needs a cluster of its own.
      if (LookupChain(p->cluster) == 0) return PieceDone(p, 0, p->parent);
      return RequestCluster(p);
    case IoType::kFlush:
      break;
  }
  PieceDone(p, -EINVAL, p->parent);
}

void LvolChannel::SubmitToBase(Piece* p, IoType type, uint32_t entry) {
  BdevIo& c = p->child;
  c.type = type;
  c.offset_blocks = data_offset_blocks_ + static_cast<uint64_t>(entry - 1) * blocks_per_cluster_ +
                    p->off_blocks;
  c.num_blocks = p->num_blocks;
  c.iovs = p->iovs.empty() ? nullptr : p->iovs.data();
  c.iovcnt = static_cast<int>(p->iovs.size());
  base_->Submit(&c);
}

void LvolChannel::RequestCluster(Piece* p) {
  // The md thread answers "allocated" only after publishing the entry, so one retry suffices;
  // more means the entry vanished (it cannot while this I/O is in flight).
  if (++p->attempts > 2) return PieceDone(p, -EIO, p->parent);
  Reactor* r = reactor_;
  Lvol* lv = lvol_;
  const uint64_t idx = p->cluster;
  std::shared_ptr<Lvstore> store = store_;
  store_->md_reactor()->Send([store, lv, idx, r, this, p]() {
    store->AllocateCluster(lv, idx, [r, this, p](int st) {
      r->Send([this, p, st]() { OnAllocated(p, st); });
    });
  });
}

void LvolChannel::OnAllocated(Piece* p, int status) {
  if (status != 0) return PieceDone(p, status, p->parent);
  StartPiece(p);
}

void LvolChannel::OnChildDone(BdevIo* io, int status, void* ctx) {
  Piece* p = static_cast<Piece*>(ctx);
  p->ch->PieceDone(p, status, p->parent);
}

void LvolChannel::PieceDone(Piece* p, int status, BdevIo* parent) {
  if (p != nullptr) FreePiece(p);
  if (status != 0 && FirstError(parent) == 0) {
    FirstError(parent) = static_cast<uint64_t>(static_cast<int64_t>(status));
  }
  if (--PartsLeft(parent) == 0) {
    ParentDone(parent, static_cast<int>(static_cast<int64_t>(FirstError(parent))));
  }
}

}  // namespace spdk_node

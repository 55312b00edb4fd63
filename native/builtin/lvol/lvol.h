// A logical volume (SPDK's lvol) as a bdev, and its per-reactor I/O channel.
//
// Threads (see store.h for the metadata side):
//  - md thread (reactor 0): owns every metadata field (Lvol::md, the cluster maps' contents,
//    the parent pointer) and is the only writer of the maps.
//  - channel reactors: an LvolChannel reads the maps lock-free (atomic u32 entries), splits each
//    I/O at cluster boundaries onto a base-bdev channel on the same reactor, and asks the md
//    thread to allocate a cluster on the first write to it.
//  - JS thread: reads Lvol::js (the state as of the last commit) and the atomics.
//
// Freeze (SPDK's model: spdk_for_each_channel, no shared counter on the I/O path): while an
// operation changes what channels read without atomics (a map's page table, the parent pointer,
// whose clusters a map holds), the md thread freezes the lvol. It marks the channel registry
// frozen (under its mutex) and sends every reactor that has a channel of the lvol a message;
// on that reactor the message sets each channel's own `frozen_` flag and answers the md thread
// once the channel's own in-flight count (plain, reactor-local) is zero. New I/O on a frozen
// channel is held. A channel created while the registry is frozen starts frozen (it decides
// under the same mutex), so a channel the messages missed cannot slip I/O in. Thaw clears the
// registry flag and sends each reactor a message that copies the registry's state into its
// channels and resubmits their held I/O. Messages from the md thread to one reactor run in
// order, and each channel copies the registry state rather than assuming "thawed", so a late
// thaw message never undoes a newer freeze.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../bdev/bdev.h"
#include "format.h"

namespace spdk_node {

class Lvstore;
class LvolChannel;
class Reactor;

// Sparse map: lvol cluster index -> data cluster + 1 (0 = unallocated). Pages of entries are
// allocated on first use, so a huge thin lvol costs memory only where it is allocated.
// Get() is lock-free from any thread; everything else is md thread only, and Resize() only while
// no reader can run (the lvol is frozen, or has no channels).
class ClusterMap {
 public:
  static constexpr unsigned kPageShift = 12;
  static constexpr uint64_t kPageEntries = 1ull << kPageShift;

  explicit ClusterMap(uint64_t size_clusters);
  ~ClusterMap();
  ClusterMap(const ClusterMap&) = delete;
  ClusterMap& operator=(const ClusterMap&) = delete;

  uint32_t Get(uint64_t idx) const {
    const uint64_t pg = idx >> kPageShift;
    if (pg >= npages_) return 0;
    const std::atomic<uint32_t>* p = pages_[pg].load(std::memory_order_acquire);
    return p == nullptr ? 0 : p[idx & (kPageEntries - 1)].load(std::memory_order_acquire);
  }
  // Publishes an entry (release: the cluster's initial content is visible before the entry).
  void Set(uint64_t idx, uint32_t value);
  // Room for `size_clusters` entries; pages past it are freed (their entries must be cleared).
  void Resize(uint64_t size_clusters);
  // (index, data cluster) of every allocated entry, ascending.
  void Collect(std::vector<std::pair<uint32_t, uint32_t>>* out) const;

 private:
  std::atomic<std::atomic<uint32_t>*>* pages_ = nullptr;
  uint64_t npages_ = 0;
};

class Lvol final : public Bdev {
 public:
  Lvol(std::shared_ptr<Lvstore> store, const lvolfmt::Uuid& uuid, uint64_t size_clusters);
  ~Lvol() override;

  // Bdev. Write-type I/O is reported unsupported while read-only (the base class's rule, as
  // SPDK's vbdev_lvol_io_type_supported) and refused with EPERM.
  bool read_only() const override { return read_only_.load(std::memory_order_acquire); }
  int read_only_errno() const override { return EPERM; }
  const char* driver() const override { return "lvol"; }
  // Buffers go to the base bdev as they are (an O_DIRECT file needs aligned ones).
  uint32_t required_alignment() const override;
  BdevChannel* CreateChannel(Reactor* reactor) override;

  Lvstore* store() const { return store_.get(); }
  const std::shared_ptr<Lvstore>& store_ref() const { return store_; }
  const lvolfmt::Uuid& id() const { return id_; }

  // Read by channels; changed by the md thread only while the lvol is frozen.
  ClusterMap* map() const { return map_; }
  Lvol* parent() const { return parent_; }
  // md thread, frozen (or no channels yet). Takes a reference on the new parent.
  void SetParent(Lvol* p);
  // md thread, frozen. Returns the old map (caller owns it).
  ClusterMap* SwapMap(ClusterMap* m);
  void SetSizeBlocks(uint64_t blocks) { set_num_blocks(blocks); }

  std::atomic<bool> deleted{false};  // set when deletion starts: new I/O fails -ENODEV
  std::atomic<bool> read_only_{false};
  std::atomic<uint64_t> num_allocated{0};

  // Channel registry (channel create/destroy, freeze and thaw; never on the I/O path).
  // Registers ch (its reactor's thread); returns whether it must start frozen.
  bool AddChannel(LvolChannel* ch);
  void RemoveChannel(LvolChannel* ch);
  // md thread: freeze every channel (see the top of this file); `drained` runs on the md thread
  // (inline when the lvol has no channel) once none has an I/O in flight. Each call waits for
  // the drain, also when the lvol is already frozen.
  void FreezeChannels(Reactor* md, std::function<void()> drained);
  // md thread: the registry is thawed and every channel follows.
  void ThawChannels();
  // Any thread: every channel re-reads the registry's frozen state and re-examines its held I/O
  // (resubmits it when thawed, fails it with -ENODEV once the lvol is deleted or removed).
  void KickChannels();

  // md thread only.
  struct MdState {
    enum State { kCreating, kLive, kDeleting };
    std::string name;
    uint32_t flags = 0;
    uint32_t clear_method = lvolfmt::kClearUnmap;
    uint64_t size_clusters = 0;
    State state = kCreating;
    std::vector<Lvol*> clones;  // lvols whose parent this is
    // Has had a clone since the store was loaded: what SPDK reports as "snapshot" (its blobstore
    // keeps a blob's clone list from its first clone until the blob or the store goes, and
    // builds lists at load only for blobs that have clones). Never stored.
    bool was_parent = false;
    int freeze_count = 0;
  } md;

  // JS thread only: the state as of the last commit (what JS lists and describes).
  struct JsView {
    std::string name;
    uint32_t flags = 0;
    uint32_t clear_method = lvolfmt::kClearUnmap;
    Lvol* parent = nullptr;
    bool was_parent = false;
    bool registered = false;
  } js;

 private:
  std::shared_ptr<Lvstore> store_;
  lvolfmt::Uuid id_;
  ClusterMap* map_;
  Lvol* parent_ = nullptr;
  // On a channel's reactor: the registry's current state into each of its channels there.
  void SyncChannelsOn(Reactor* r);
  // Reactors with at least one channel (ch_mu_ held).
  std::vector<Reactor*> ReactorsLocked() const;

  std::mutex ch_mu_;
  std::vector<LvolChannel*> channels_;
  bool frozen_ = false;  // the registry's state (ch_mu_)
};

class LvolChannel : public BdevChannel {
 public:
  LvolChannel(Lvol* lvol, Reactor* reactor);
  ~LvolChannel() override;
  void Submit(BdevIo* io) override;

 private:
  friend class Lvol;  // freeze and thaw messages

  // A read or write inside one allocated cluster, passed to the base as it is (fast path).
  struct Direct {
    BdevIo child;  // cb, cb_ctx set once
    BdevIo* parent = nullptr;
    LvolChannel* ch = nullptr;
    Direct* next_free = nullptr;
  };
  // One cluster-sized (or smaller) part of an I/O.
  struct Piece {
    BdevIo child;
    BdevIo* parent = nullptr;
    LvolChannel* ch = nullptr;
    Piece* next_free = nullptr;
    uint64_t cluster = 0;        // lvol cluster index
    uint64_t off_blocks = 0;     // offset inside the cluster
    uint64_t num_blocks = 0;
    std::vector<struct iovec> iovs;
    int attempts = 0;
  };
  // Counts down the channels of one reactor a freeze waits for (that reactor's thread only).
  struct DrainWait {
    int left = 0;
    std::function<void()> done;
  };

  void Exit() {
    if (--inflight_ == 0 && !drain_waits_.empty()) Drained();
  }
  void Drained();
  void Hold(BdevIo* io);
  // Held I/O: resubmits it while not frozen, fails it once the lvol is gone.
  void Resume();
  void Dispatch(BdevIo* io);
  void DispatchSplit(BdevIo* io);
  void StartPiece(Piece* p);
  void SubmitToBase(Piece* p, IoType type, uint32_t entry);
  void RequestCluster(Piece* p);
  void OnAllocated(Piece* p, int status);
  // A part of `parent` finished (p: the piece to recycle, or null for a part without one).
  void PieceDone(Piece* p, int status, BdevIo* parent);
  void ParentDone(BdevIo* io, int status) {
    Exit();
    io->Complete(status);
  }
  Piece* NewPiece() {
    Piece* p = free_pieces_;
    if (p == nullptr) return AllocPiece();
    free_pieces_ = p->next_free;
    p->attempts = 0;
    p->iovs.clear();
    return p;
  }
  Piece* AllocPiece();
  void FreePiece(Piece* p) {
    p->next_free = free_pieces_;
    free_pieces_ = p;
  }
  static void OnChildDone(BdevIo* io, int status, void* ctx);
  // Adds one to the free list, then dispatches io (the fast path found the list empty).
  void AddDirect(BdevIo* io);
  static void OnDirectDone(BdevIo* io, int status, void* ctx);
  // Data cluster + 1 holding lvol cluster `idx` in the parent chain, or 0 (zeroes).
  uint32_t LookupChain(uint64_t idx) const;

  Lvol* lvol_;
  std::shared_ptr<Lvstore> store_;
  BdevChannel* base_;
  uint64_t blocks_per_cluster_;
  unsigned cluster_shift_;  // log2(blocks_per_cluster_): both sizes are powers of two
  uint64_t data_offset_blocks_;
  // Reactor-local: no other thread reads these (the md thread learns of a drain by message).
  bool frozen_ = false;
  uint64_t inflight_ = 0;  // dispatched and not yet completed (held I/O is not counted)
  std::vector<std::shared_ptr<DrainWait>> drain_waits_;
  std::deque<BdevIo*> held_;
  Piece* free_pieces_ = nullptr;
  Direct* free_directs_ = nullptr;
};

}  // namespace spdk_node

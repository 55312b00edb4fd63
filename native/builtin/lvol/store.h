// Lvstore: an lvol store on a base bdev it claims (SPDK's lvol store + blobstore, reduced to the
// on-disk format of docs/lvol-format.md).
//
// Threads:
//  - Everything that changes metadata runs on the md thread (reactor 0), through messages. Store
//    operations (create/delete/resize/... an lvol, rename, snapshot, clone) are queued and run one
//    at a time up to the point where their change is applied in memory; cluster allocations for
//    first writes run at once (they never wait for an operation).
//  - Group commit: a change bumps change_seq_; a commit captures the whole image at the current
//    change_seq_ and does flush base -> write the inactive slot -> flush base -> swap. Every
//    operation, and every lvol flush, waits for the first commit that covers its change; all
//    changes made while a commit runs go into the next one. Allocations alone schedule a commit
//    after kLazyCommitUs.
//  - Clusters freed by a commit (delete, shrink) are cleared (the lvol's clear_method) after that
//    commit and only then become free, so a cluster is never reused while the committed image
//    may still reference it, and never cleared while someone else owns it.
//  - After each successful commit the store posts a view (names, flags, parents as committed) to
//    the JS thread, which updates the bdev registry from it; operation answers are posted after
//    that view, so JS sees a completed operation's effect when its Promise settles.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../bdev/bdev.h"
#include "format.h"
#include "lvol.h"

namespace spdk_node {

class Reactor;
struct Poller;
class Lvstore;

// One lvol as of a commit (holds a reference on lvol until released).
struct LvolViewEntry {
  Lvol* lvol = nullptr;
  std::string name;
  uint32_t flags = 0;
  uint32_t clear_method = 0;
  Lvol* parent = nullptr;
  bool was_parent = false;
};

struct StoreView {
  std::string name;
  std::vector<LvolViewEntry> lvols;  // creation order
  ~StoreView();
};

// What a store needs from the engine.
class LvolHost {
 public:
  virtual ~LvolHost() = default;
  // Any thread: run fn on the JS thread (in order with other posts).
  virtual void PostToJs(std::function<void()> fn) = 0;
  // The md thread.
  virtual Reactor* MdReactor() = 0;
  // JS thread: a commit completed; bring the registry up to date with `view` (consumed).
  virtual void ApplyView(const std::shared_ptr<Lvstore>& store, StoreView* view) = 0;
};

class Lvstore : public std::enable_shared_from_this<Lvstore> {
 public:
  // Runs on the JS thread. lvol (if any) is referenced until the call returns.
  using Answer = std::function<void(int err, const std::string& msg, Lvol* lvol)>;

  // JS thread. `base` gets a reference. For a new store, `sb` comes from ComputeLayout.
  Lvstore(LvolHost* host, Bdev* base, const lvolfmt::Superblock& sb, uint64_t total_data_clusters,
          const std::string& name);
  ~Lvstore();

  // Immutable.
  Bdev* base() const { return base_; }
  const lvolfmt::Uuid& uuid() const { return sb_.uuid; }
  const std::string& uuid_str() const { return uuid_str_; }
  uint32_t cluster_size() const { return sb_.cluster_size; }
  uint32_t block_size() const { return block_size_; }
  uint64_t blocks_per_cluster() const { return blocks_per_cluster_; }
  uint64_t data_offset_blocks() const { return data_offset_blocks_; }
  uint32_t clear_method() const { return sb_.clear_method; }
  uint64_t total_data_clusters() const { return total_data_clusters_.load(); }
  Reactor* md_reactor() const { return md_reactor_; }

  // Any thread.
  std::atomic<uint64_t> free_clusters{0};

  // JS thread only.
  struct JsView {
    std::string name;
    std::vector<Lvol*> lvols;  // registered lvol bdevs, creation order
    bool gone = false;         // deleted or unloaded: ignore late views
  } js;

  // JS thread, before the store is handed to the md thread: the state of a tasted image.
  void LoadImage(const lvolfmt::Image& img, int active_slot);
  // The lvols LoadImage created (JS thread, right after it), as a view to register.
  StoreView* InitialView();

  // ---- md thread ----
  // New store: clear the data region, write both slots and the superblock.
  void Initialize(Answer done);
  void OpCreateLvol(const std::string& name, uint64_t size_clusters, bool thin,
                    uint32_t clear_method, const lvolfmt::Uuid& uuid, Answer done);
  void OpDeleteLvol(Lvol* lv, Answer done);
  void OpResize(Lvol* lv, uint64_t size_clusters, Answer done);
  void OpSetReadOnly(Lvol* lv, Answer done);
  void OpRenameLvol(Lvol* lv, const std::string& name, Answer done);
  void OpRenameStore(const std::string& name, Answer done);
  // bdev_lvol_grow_lvstore: take in data clusters the base bdev gained since creation (as far
  // as the metadata slots have room for).
  void OpGrow(Answer done);
  void OpSnapshot(Lvol* origin, const std::string& name, Answer done);
  void OpClone(Lvol* snap, const std::string& name, Answer done);
  // bdev_lvol_inflate (allocate_all) / bdev_lvol_decouple_parent, as spdk_bs_inflate_blob /
  // spdk_bs_blob_decouple_parent: give the lvol its own copy of every cluster it reads from its
  // parent (inflate: of every cluster, zeroes where no ancestor has data), then drop the parent
  // (decouple: the lvol becomes a clone of its grandparent, if any). Inflate also clears the thin
  // flag. The copies are made before the lvol is frozen; its map and parent change frozen, in
  // one commit.
  void OpInflate(Lvol* lv, bool allocate_all, Answer done);
  // Delete the store: every lvol's data is cleared and the superblock wiped.
  void OpDestroy(Answer done);
  // The base bdev went away: forget everything, write nothing.
  void Unload();
  // Engine stop: commit what is dirty, finish background work, close the md channel. done runs
  // on the md thread.
  void Quiesce(std::function<void()> done);
  // Drops the store's references on its lvols (md thread, or any thread once the reactors are
  // gone): breaks the store <-> lvol reference cycle at teardown.
  void DropLvols();

  // First write to lvol cluster `idx`: allocate and initialise a data cluster (zeroes, or the
  // parent chain's content), publish it in the map. cb(0 | -errno) on the md thread.
  void AllocateCluster(Lvol* lv, uint64_t idx, std::function<void(int)> cb);
  // cb once every metadata change made before this call is committed (md thread).
  void FlushBarrier(std::function<void(int)> cb);

 private:
  struct Waiter {
    uint64_t target = 0;
    std::function<void(int)> committed;   // right after the commit (or its failure)
    std::vector<uint32_t> freed;          // clusters this change freed
    uint32_t clear_method = 0;
    std::function<void(int)> released;    // after they were cleared and made free
  };
  struct PendingAlloc {
    uint32_t data_cluster = 0;
    std::vector<std::function<void(int)>> cbs;
  };
  using OpDone = std::function<void()>;

  void InitializeNow(Answer done, std::function<void()> next);
  // Operation queue.
  void RunOp(std::function<void(OpDone)> op);
  void NextOp();
  void Reply(const Answer& a, int err, const std::string& msg, Lvol* lv);

  // Commit machinery.
  void MarkChanged() { change_seq_++; }
  void WaitCommit(std::function<void(int)> cb);
  void WaitCommitThenFree(std::vector<uint32_t> freed, uint32_t clear_method,
                          std::function<void(int)> committed, std::function<void(int)> released);
  void ScheduleCommit(bool lazy);
  void StartCommit();
  void EndCommit(uint64_t seq, int status, void* buf, StoreView* view, int slot);
  void FinishWaiters(uint64_t seq, int status);
  lvolfmt::Image BuildImage() const;
  StoreView* BuildView() const;
  size_t FixedImageBytes() const;
  bool Fits(size_t extra_bytes) const;

  // Clusters.
  int64_t TakeCluster();
  void ReleaseClusters(const std::vector<uint32_t>& clusters);
  void ClearAndRelease(std::vector<uint32_t> clusters, uint32_t clear_method,
                       std::function<void()> done);
  uint64_t ClusterOffsetBytes(uint32_t dc) const {
    return (static_cast<uint64_t>(sb_.md_clusters) + dc) * sb_.cluster_size;
  }

  // Base I/O on the md thread's channel; cb never runs inline.
  bool EnsureMdChannel();
  void MdIo(IoType type, uint64_t off_bytes, uint64_t len_bytes, void* buf,
            std::function<void(int)> cb);
  // Zeroes (kWriteZeroes) or unmaps (kUnmap) a byte range in chunks.
  void ZeroRange(IoType type, uint64_t off_bytes, uint64_t len_bytes, std::function<void(int)> cb);
  // Applies `type` to every cluster of `clusters` (merged into runs), one run after another.
  void ZeroClusters(IoType type, std::vector<uint32_t> clusters, std::function<void(int)> cb);
  void CopyCluster(uint32_t src, uint32_t dst, std::function<void(int)> cb);
  void MaybeCloseMdChannel();

  // Freeze.
  void Freeze(const std::vector<Lvol*>& set, std::function<void()> drained);
  void Thaw(const std::vector<Lvol*>& set);
  void WaitUntil(std::function<bool()> pred, std::function<void()> then);
  void Descendants(Lvol* lv, std::vector<Lvol*>* out) const;

  int CheckNewName(const std::string& name, std::string* msg) const;
  Lvol* NewLvol(const lvolfmt::Uuid& uuid, const std::string& name, uint64_t size_clusters,
                uint32_t flags, uint32_t clear_method);
  bool RemoveLvol(Lvol* lv);  // false if it was not in lvols_
  // Undoes a create/clone whose commit failed.
  void Forsake(Lvol* lv);
  static void ReplaceClone(Lvol* parent, Lvol* from, Lvol* to);
  static void AddClone(Lvol* parent, Lvol* clone);

  LvolHost* host_;
  Bdev* base_;
  lvolfmt::Superblock sb_;
  std::string uuid_str_;
  uint32_t block_size_;
  uint64_t blocks_per_cluster_;
  uint64_t data_offset_blocks_;
  std::atomic<uint64_t> total_data_clusters_;  // written by the md thread (grow)
  Reactor* md_reactor_;

  // md thread.
  std::string name_;
  std::vector<Lvol*> lvols_;  // creation order; each holds a reference
  std::vector<uint64_t> used_;  // bitmap of data clusters in use (or waiting to be cleared)
  uint64_t free_count_ = 0;
  uint64_t alloc_hint_ = 0;
  int active_slot_ = 0;        // slot holding the newest valid image
  uint64_t next_sequence_ = 1;
  uint64_t change_seq_ = 0;
  uint64_t committed_seq_ = 0;
  bool commit_running_ = false;
  bool commit_now_pending_ = false;
  Poller* lazy_poller_ = nullptr;
  std::deque<Waiter> waiters_;
  std::vector<Waiter> orphan_frees_;  // freed by a change whose commit failed
  std::map<std::pair<Lvol*, uint64_t>, PendingAlloc> pending_allocs_;
  std::deque<std::function<void(OpDone)>> ops_;
  bool op_running_ = false;
  bool unloaded_ = false;  // unloaded, destroyed or quiesced: nothing more is written
  bool destroying_ = false;
  int background_ = 0;     // clears in progress
  BdevChannel* md_channel_ = nullptr;
  bool md_closed_ = false;
  int md_inflight_ = 0;
};

}  // namespace spdk_node

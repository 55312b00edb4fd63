// LvolModule: the engine's lvol stores as the JS thread sees them. It tastes new bdevs, keeps
// the registry of stores and lvstore names, validates requests, hands operations to the md
// thread and applies the views the stores post back (registering, renaming and removing lvol
// bdevs in the engine's bdev registry). JS thread only, except PostToJs/MdReactor.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "store.h"

namespace spdk_node {

class LvolModule : public LvolHost {
 public:
  struct Hooks {
    std::function<void(std::function<void()>)> post_to_js;
    Reactor* md_reactor = nullptr;
    // Appends to the bdev registry (the registry takes its own reference).
    std::function<void(Bdev*)> add_bdev;
    // Marks removed, drops from the registry and drops the registry's reference.
    std::function<void(Bdev*)> remove_bdev;
    // By name, alias or UUID.
    std::function<Bdev*(const std::string&)> find_bdev;
  };
  using Answer = Lvstore::Answer;
  using StoreAnswer = std::function<void(int err, const std::string& msg, Lvstore* store)>;

  explicit LvolModule(Hooks hooks);
  ~LvolModule() override;

  // LvolHost.
  void PostToJs(std::function<void()> fn) override { hooks_.post_to_js(std::move(fn)); }
  Reactor* MdReactor() override { return hooks_.md_reactor; }
  void ApplyView(const std::shared_ptr<Lvstore>& store, StoreView* view) override;

  // A bdev was just created: load the lvstore on it, if any. A store that fails its checks is
  // not loaded; the reason goes to b->taste_error.
  void Taste(Bdev* b);

  // Operations. Each answers exactly once, on the JS thread (possibly before returning). Errors
  // are positive errnos with a message.
  void CreateLvstore(Bdev* base, const std::string& name, uint64_t cluster_size,
                     uint32_t clear_method, StoreAnswer done);
  void DeleteLvstore(const std::shared_ptr<Lvstore>& s, Answer done);
  void RenameLvstore(const std::shared_ptr<Lvstore>& s, const std::string& name, Answer done);
  void GrowLvstore(const std::shared_ptr<Lvstore>& s, Answer done);
  void CreateLvol(const std::shared_ptr<Lvstore>& s, const std::string& name, uint64_t size_bytes,
                  bool thin, uint32_t clear_method, const std::string& uuid, Answer done);
  void DeleteLvol(Lvol* lv, Answer done);
  void ResizeLvol(Lvol* lv, uint64_t size_bytes, Answer done);
  void SetReadOnly(Lvol* lv, Answer done);
  void RenameLvol(Lvol* lv, const std::string& name, Answer done);
  void Snapshot(Lvol* lv, const std::string& name, Answer done);
  void Clone(Lvol* lv, const std::string& name, Answer done);
  // bdev_lvol_inflate / bdev_lvol_decouple_parent.
  void Inflate(Lvol* lv, Answer done);
  void DecoupleParent(Lvol* lv, Answer done);

  // Loaded stores (creation/taste order), those still being created excluded.
  std::vector<std::shared_ptr<Lvstore>> Stores() const;
  std::shared_ptr<Lvstore> FindStore(const std::string& uuid) const;
  bool empty() const { return stores_.empty(); }

  // A claimed base bdev is being deleted: unload its store (nothing is written).
  void OnBaseDeleted(Bdev* base);
  // Engine stop, before the reactors stop: every store commits and goes quiet. done on the JS
  // thread.
  void PrepareStop(std::function<void()> done);
  // After the reactors are joined: drop every reference.
  void Shutdown();
  // Process exit without stop(): commit dirty metadata, waiting at most timeout_ms.
  void FlushBlocking(int timeout_ms);

 private:
  struct Entry {
    std::shared_ptr<Lvstore> store;
    bool ready = false;  // false while being created
  };
  bool NameInUse(const std::string& name) const;
  void Forget(const std::shared_ptr<Lvstore>& s);
  // Runs fn on the md thread.
  void ToMd(std::function<void()> fn);
  // A usable lvol of a usable store, else answers ENODEV and returns false.
  bool CheckLvol(Lvol* lv, const Answer& done);

  Hooks hooks_;
  std::vector<Entry> stores_;
  std::multiset<std::string> pending_names_;  // targets of store renames in progress
  std::set<std::string> pending_uuids_;       // lvols being created with a given UUID
};

}  // namespace spdk_node

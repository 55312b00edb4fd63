#include "module.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "../reactor/reactor.h"

namespace spdk_node {

using namespace lvolfmt;

namespace {

bool IsChecksumKind(const std::string& why) {
  return why == "checksum mismatch" || why == "no metadata image";
}

}  // namespace

LvolModule::LvolModule(Hooks hooks) : hooks_(std::move(hooks)) {}

LvolModule::~LvolModule() { Shutdown(); }

void LvolModule::ToMd(std::function<void()> fn) { hooks_.md_reactor->Send(std::move(fn)); }

bool LvolModule::NameInUse(const std::string& name) const {
  if (pending_names_.count(name) != 0) return true;
  for (const Entry& e : stores_)
    if (e.store->js.name == name) return true;
  return false;
}

std::vector<std::shared_ptr<Lvstore>> LvolModule::Stores() const {
  std::vector<std::shared_ptr<Lvstore>> out;
  for (const Entry& e : stores_)
    if (e.ready) out.push_back(e.store);
  return out;
}

std::shared_ptr<Lvstore> LvolModule::FindStore(const std::string& uuid) const {
  Uuid u;
  if (!ParseUuid(uuid, &u)) return nullptr;
  for (const Entry& e : stores_)
    if (e.ready && e.store->uuid() == u) return e.store;
  return nullptr;
}

void LvolModule::ApplyView(const std::shared_ptr<Lvstore>& store, StoreView* view) {
  std::unique_ptr<StoreView> v(view);
  if (store->js.gone) return;
  store->js.name = v->name;
  std::vector<Lvol*> next;
  next.reserve(v->lvols.size());
  for (const LvolViewEntry& e : v->lvols) next.push_back(e.lvol);
  for (Lvol* old : store->js.lvols) {
    if (std::find(next.begin(), next.end(), old) != next.end()) continue;
    old->js.registered = false;
    hooks_.remove_bdev(old);
  }
  for (const LvolViewEntry& e : v->lvols) {
    Lvol* lv = e.lvol;
    lv->js.name = e.name;
    lv->js.flags = e.flags;
    lv->js.clear_method = e.clear_method;
    lv->js.parent = e.parent;
    lv->js.was_parent = e.was_parent;
    lv->aliases.assign(1, v->name + "/" + e.name);
    if (!lv->js.registered) {
      lv->js.registered = true;
      hooks_.add_bdev(lv);
    }
  }
  store->js.lvols = std::move(next);
}

void LvolModule::Forget(const std::shared_ptr<Lvstore>& s) {
  s->js.gone = true;
  for (Lvol* lv : s->js.lvols) {
    lv->js.registered = false;
    hooks_.remove_bdev(lv);
  }
  s->js.lvols.clear();
  s->base()->claimed = false;
  stores_.erase(std::remove_if(stores_.begin(), stores_.end(), [&](const Entry& e) { return e.store == s; }),
                stores_.end());
}

// ---------------------------------------------------------------------------------------------
// Tasting

void LvolModule::Taste(Bdev* b) {
  const uint64_t bs = b->block_size();
  const uint64_t bytes = b->num_blocks() * bs;
  if (bytes < kSuperblockSize || bs > kSuperblockSize) return;
  std::vector<uint8_t> block(kSuperblockSize);
  if (b->ReadSync(0, block.data(), kSuperblockSize) != 0) return;
  Superblock sb;
  bool magic = false;
  std::string err = DecodeSuperblock(block.data(), &sb, &magic);
  if (!magic) return;
  auto refuse = [&](const std::string& why) { b->taste_error = why; };
  const std::string where = "lvstore on " + b->name() + " not loaded: ";
  if (!err.empty()) return refuse(where + err);
  if (sb.block_size != bs) {
    return refuse(where + "it was created with block size " + std::to_string(sb.block_size) +
                  " and the bdev has block size " + std::to_string(bs));
  }
  const uint64_t max_dc = DataClustersFor(bytes, sb);
  if (max_dc == 0) return refuse(where + "the bdev is smaller than the lvstore's metadata area");

  Image images[2];
  std::string why[2];
  for (int slot = 0; slot < 2; slot++) {
    const uint64_t off = SlotOffset(slot, sb.slot_size);
    if (off + kSuperblockSize > bytes) {
      why[slot] = "slot beyond the end of the bdev";
      continue;
    }
    std::vector<uint8_t> head(kSuperblockSize);
    if (int rc = b->ReadSync(off, head.data(), head.size())) {
      why[slot] = std::string("read error: ") + strerror(-rc);
      continue;
    }
    const uint32_t len = PeekImageLength(head.data(), head.size());
    if (len == 0) {
      why[slot] = "no metadata image";
      continue;
    }
    if (len > sb.slot_size || off + AlignUp(len, bs) > bytes) {
      why[slot] = "image length " + std::to_string(len) + " is out of range";
      continue;
    }
    std::vector<uint8_t> data(AlignUp(len, bs));
    if (int rc = b->ReadSync(off, data.data(), data.size())) {
      why[slot] = std::string("read error: ") + strerror(-rc);
      continue;
    }
    why[slot] = DecodeImage(data.data(), data.size(), sb.uuid, max_dc, &images[slot]);
  }
  int winner = -1;
  for (int slot = 0; slot < 2; slot++) {
    if (!why[slot].empty()) continue;
    if (winner < 0 || images[slot].sequence > images[winner].sequence) winner = slot;
  }
  if (winner < 0) {
    const std::string detail = " (slot A: " + why[0] + "; slot B: " + why[1] + ")";
    if (IsChecksumKind(why[0]) && IsChecksumKind(why[1])) {
      return refuse("lvstore metadata on " + b->name() +
                    " is corrupt: both metadata copies fail their checksum" + detail);
    }
    return refuse("lvstore metadata on " + b->name() + " is corrupt: both metadata copies are invalid" +
                  detail);
  }
  const Image& img = images[winner];
  // Never half-loaded: every name and UUID must be free before anything is registered.
  if (NameInUse(img.name)) return refuse(where + "an lvstore named " + img.name + " is already loaded");
  for (const Entry& e : stores_) {
    if (e.store->uuid() == sb.uuid) {
      return refuse(where + "an lvstore with UUID " + FormatUuid(sb.uuid) + " is already loaded (on " +
                    e.store->base()->name() + ")");
    }
  }
  for (const LvolRecord& r : img.lvols) {
    const std::string id = FormatUuid(r.uuid);
    if (hooks_.find_bdev(id) != nullptr || pending_uuids_.count(id) != 0) {
      return refuse(where + "lvol " + img.name + "/" + r.name + " has UUID " + id +
                    ", which another bdev already uses");
    }
    if (hooks_.find_bdev(img.name + "/" + r.name) != nullptr) {
      return refuse(where + "a bdev named " + img.name + "/" + r.name + " already exists");
    }
  }
  auto store = std::make_shared<Lvstore>(this, b, sb, img.total_data_clusters, img.name);
  store->LoadImage(img, winner);
  b->claimed = true;
  b->claim_type = "read_many_write_one";
  stores_.push_back(Entry{store, true});
  ApplyView(store, store->InitialView());
  // From here on the md thread owns the store's metadata; the message queue orders our writes
  // before its first access.
}

// ---------------------------------------------------------------------------------------------
// Store operations

void LvolModule::CreateLvstore(Bdev* base, const std::string& name, uint64_t cluster_size,
                               uint32_t clear_method, StoreAnswer done) {
  if (dynamic_cast<Lvol*>(base) != nullptr) {
    return done(EINVAL, "an lvstore on an lvol bdev is not supported", nullptr);
  }
  if (base->claimed) return done(EBUSY, "bdev " + base->name() + " is already claimed", nullptr);
  if (base->open_count > 0) {
    return done(EBUSY, "bdev " + base->name() + " is open for I/O; close it first", nullptr);
  }
  if (!ValidName(name)) return done(EINVAL, "lvstore name must be 1 to 63 bytes", nullptr);
  if (NameInUse(name)) return done(EEXIST, "lvolstore with name " + name + " already exists", nullptr);
  if (cluster_size > 0x80000000ull) {
    return done(EINVAL, "cluster size " + std::to_string(cluster_size) + " is too large", nullptr);
  }
  Layout layout;
  std::string msg;
  if (int e = ComputeLayout(base->num_blocks() * base->block_size(), static_cast<uint32_t>(cluster_size),
                            base->block_size(), &layout, &msg)) {
    return done(e, msg, nullptr);
  }
  Superblock sb;
  sb.uuid = NewUuid();
  sb.cluster_size = static_cast<uint32_t>(cluster_size);
  sb.block_size = base->block_size();
  sb.slot_size = layout.slot_size;
  sb.md_clusters = layout.md_clusters;
  sb.clear_method = clear_method;
  auto store = std::make_shared<Lvstore>(this, base, sb, layout.total_data_clusters, name);
  base->claimed = true;
  base->claim_type = "read_many_write_one";
  stores_.push_back(Entry{store, false});
  ToMd([this, store, done]() {
    store->Initialize([this, store, done](int err, const std::string& m, Lvol*) {
      if (store->js.gone) return done(ENODEV, "the base bdev was deleted", nullptr);
      if (err != 0) {
        Forget(store);
        return done(err, m, nullptr);
      }
      for (Entry& e : stores_)
        if (e.store == store) e.ready = true;
      done(0, "", store.get());
    });
  });
}

void LvolModule::DeleteLvstore(const std::shared_ptr<Lvstore>& s, Answer done) {
  if (s->js.gone) return done(ENODEV, "no such lvstore", nullptr);
  ToMd([this, s, done]() {
    s->OpDestroy([this, s, done](int err, const std::string& m, Lvol*) {
      if (err == 0 && !s->js.gone) Forget(s);
      done(err, m, nullptr);
    });
  });
}

void LvolModule::RenameLvstore(const std::shared_ptr<Lvstore>& s, const std::string& name, Answer done) {
  if (s->js.gone) return done(ENODEV, "no such lvstore", nullptr);
  if (!ValidName(name)) return done(EINVAL, "lvstore name must be 1 to 63 bytes", nullptr);
  if (name == s->js.name) return done(0, "", nullptr);
  if (NameInUse(name)) return done(EEXIST, "lvolstore with name " + name + " already exists", nullptr);
  pending_names_.insert(name);
  ToMd([this, s, name, done]() {
    s->OpRenameStore(name, [this, name, done](int err, const std::string& m, Lvol*) {
      pending_names_.erase(pending_names_.find(name));
      done(err, m, nullptr);
    });
  });
}

void LvolModule::GrowLvstore(const std::shared_ptr<Lvstore>& s, Answer done) {
  if (s->js.gone) return done(ENODEV, "no such lvstore", nullptr);
  ToMd([s, done]() { s->OpGrow(done); });
}

// ---------------------------------------------------------------------------------------------
// Lvol operations

bool LvolModule::CheckLvol(Lvol* lv, const Answer& done) {
  if (lv->store()->js.gone || !lv->js.registered) {
    done(ENODEV, "no such lvol", nullptr);
    return false;
  }
  return true;
}

void LvolModule::CreateLvol(const std::shared_ptr<Lvstore>& s, const std::string& name,
                            uint64_t size_bytes, bool thin, uint32_t clear_method,
                            const std::string& uuid, Answer done) {
  if (s->js.gone) return done(ENODEV, "no such lvstore", nullptr);
  const uint64_t clusters = size_bytes / s->cluster_size() + (size_bytes % s->cluster_size() != 0);
  Uuid u{};
  if (!uuid.empty()) {
    if (!ParseUuid(uuid, &u)) return done(EINVAL, "invalid UUID " + uuid, nullptr);
  }
  if (uuid.empty() || IsNullUuid(u)) u = NewUuid();
  const std::string id = FormatUuid(u);
  if (hooks_.find_bdev(id) != nullptr || pending_uuids_.count(id) != 0) {
    return done(EEXIST, "a bdev with UUID " + id + " already exists", nullptr);
  }
  pending_uuids_.insert(id);
  ToMd([this, s, name, clusters, thin, clear_method, u, id, done]() {
    s->OpCreateLvol(name, clusters, thin, clear_method, u,
                    [this, id, done](int err, const std::string& m, Lvol* lv) {
                      pending_uuids_.erase(id);
                      done(err, m, lv);
                    });
  });
}

void LvolModule::DeleteLvol(Lvol* lv, Answer done) {
  if (!CheckLvol(lv, done)) return;
  if (lv->claimed) return done(EBUSY, "lvol " + lv->name() + " is claimed", nullptr);
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, done]() {
    s->OpDeleteLvol(lv, done);
    lv->Unref();
  });
}

void LvolModule::ResizeLvol(Lvol* lv, uint64_t size_bytes, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  const uint64_t clusters = size_bytes / s->cluster_size() + (size_bytes % s->cluster_size() != 0);
  lv->Ref();
  ToMd([s, lv, clusters, done]() {
    s->OpResize(lv, clusters, done);
    lv->Unref();
  });
}

void LvolModule::SetReadOnly(Lvol* lv, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, done]() {
    s->OpSetReadOnly(lv, done);
    lv->Unref();
  });
}

void LvolModule::RenameLvol(Lvol* lv, const std::string& name, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, name, done]() {
    s->OpRenameLvol(lv, name, done);
    lv->Unref();
  });
}

void LvolModule::Snapshot(Lvol* lv, const std::string& name, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, name, done]() {
    s->OpSnapshot(lv, name, done);
    lv->Unref();
  });
}

void LvolModule::Clone(Lvol* lv, const std::string& name, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, name, done]() {
    s->OpClone(lv, name, done);
    lv->Unref();
  });
}

void LvolModule::Inflate(Lvol* lv, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, done]() {
    s->OpInflate(lv, true, done);
    lv->Unref();
  });
}

void LvolModule::DecoupleParent(Lvol* lv, Answer done) {
  if (!CheckLvol(lv, done)) return;
  std::shared_ptr<Lvstore> s = lv->store_ref();
  lv->Ref();
  ToMd([s, lv, done]() {
    s->OpInflate(lv, false, done);
    lv->Unref();
  });
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

void LvolModule::OnBaseDeleted(Bdev* base) {
  std::vector<std::shared_ptr<Lvstore>> hit;
  for (const Entry& e : stores_)
    if (e.store->base() == base) hit.push_back(e.store);
  for (const auto& s : hit) {
    Forget(s);
    ToMd([s]() { s->Unload(); });
  }
}

void LvolModule::PrepareStop(std::function<void()> done) {
  if (stores_.empty()) return done();
  auto left = std::make_shared<size_t>(stores_.size());
  for (const Entry& e : stores_) {
    std::shared_ptr<Lvstore> s = e.store;
    ToMd([this, s, left, done]() {
      s->Quiesce([this, left, done]() {
        PostToJs([left, done]() {
          if (--*left == 0) done();
        });
      });
    });
  }
}

void LvolModule::Shutdown() {
  for (Entry& e : stores_) {
    e.store->js.gone = true;
    e.store->js.lvols.clear();
    e.store->DropLvols();
  }
  stores_.clear();
}

void LvolModule::FlushBlocking(int timeout_ms) {
  if (stores_.empty()) return;
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
  };
  auto st = std::make_shared<State>();
  st->left = stores_.size();
  for (const Entry& e : stores_) {
    std::shared_ptr<Lvstore> s = e.store;
    ToMd([s, st]() {
      s->FlushBarrier([st](int) {
        std::lock_guard<std::mutex> lock(st->mu);
        if (--st->left == 0) st->cv.notify_all();
      });
    });
  }
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&]() { return st->left == 0; });
}

}  // namespace spdk_node

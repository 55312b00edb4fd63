// JsEngine's lvol methods: the N-API glue between lib/engine/native.ts and the LvolModule.
// (JsEngine members, kept out of engine.cc so that file stays about the engine itself.)
//
// Every asynchronous method returns a Promise that settles on the JS thread after the
// operation's metadata commit (or its failure): rejections are SpdkErrors with a positive errno.
// Wrong argument types (the TypeScript layer validated them) throw EINVAL synchronously.
#include <cmath>

#include "../../common/napi_util.h"
#include "../engine.h"
#include "module.h"

namespace spdk_node {

namespace {

using Deferred = std::shared_ptr<Napi::Promise::Deferred>;

std::string Str(const Napi::CallbackInfo& info, size_t i, const char* what, const std::string& op) {
  if (!info[i].IsString()) ThrowSpdkError(info.Env(), std::string(what) + " must be a string", EINVAL, op);
  return info[i].As<Napi::String>().Utf8Value();
}

uint64_t Uint(const Napi::CallbackInfo& info, size_t i, const char* what, const std::string& op) {
  const double v = info[i].IsNumber() ? info[i].As<Napi::Number>().DoubleValue() : -1;
  if (!(v >= 0) || v > 9007199254740991.0 || std::floor(v) != v) {
    ThrowSpdkError(info.Env(), std::string(what) + " must be a non-negative integer", EINVAL, op);
  }
  return static_cast<uint64_t>(v);
}

uint32_t ClearArg(const Napi::CallbackInfo& info, size_t i, const std::string& op) {
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return lvolfmt::kClearUnmap;
  uint32_t m = 0;
  if (!info[i].IsString() || !lvolfmt::ParseClearMethod(info[i].As<Napi::String>().Utf8Value(), &m)) {
    ThrowSpdkError(info.Env(), "clear method must be 'none', 'unmap' or 'write_zeroes'", EINVAL, op);
  }
  return m;
}

void Reject(Napi::Env env, const Deferred& d, int err, const std::string& msg, const std::string& op) {
  d->Reject(MakeSpdkError(env, msg.empty() ? ErrnoText(err) : msg, err, op).Value());
}

// The lvstore with this UUID, or nullptr after rejecting `d` with ENODEV.
std::shared_ptr<Lvstore> StoreOrReject(LvolModule* m, Napi::Env env, const Deferred& d, const std::string& uuid,
                                       const std::string& op) {
  auto s = m != nullptr ? m->FindStore(uuid) : nullptr;
  if (!s) Reject(env, d, ENODEV, "no lvstore with UUID " + uuid, op);
  return s;
}

Napi::Object StoreInfo(Napi::Env env, const Lvstore* s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("uuid", s->uuid_str());
  o.Set("name", s->js.name);
  o.Set("baseBdev", s->base()->name());
  o.Set("totalDataClusters", Napi::Number::New(env, static_cast<double>(s->total_data_clusters())));
  o.Set("freeClusters", Napi::Number::New(env, static_cast<double>(s->free_clusters.load())));
  o.Set("blockSize", Napi::Number::New(env, s->block_size()));
  o.Set("clusterSize", Napi::Number::New(env, s->cluster_size()));
  o.Set("clearMethod", lvolfmt::ClearMethodName(s->clear_method()));
  return o;
}

}  // namespace

LvolModule* JsEngine::Lvols() {
  if (!lvol_) {
    LvolModule::Hooks h;
    h.post_to_js = [this](std::function<void()> fn) {
      PostToJs([fn](Napi::Env) { fn(); });
    };
    h.md_reactor = GetReactor(0);
    h.add_bdev = [this](Bdev* b) {
      b->Ref();
      AddBdev(b);
    };
    h.remove_bdev = [this](Bdev* b) {
      for (size_t i = 0; i < bdevs_.size(); i++) {
        if (bdevs_[i] != b) continue;
        b->MarkRemoved();
        bdevs_.erase(bdevs_.begin() + static_cast<long>(i));
        bdev_removals_++;
        b->Unref();
        return;
      }
    };
    h.find_bdev = [this](const std::string& n) { return FindBdev(n); };
    lvol_ = std::make_unique<LvolModule>(std::move(h));
  }
  return lvol_.get();
}

void JsEngine::DescribeLvol(Napi::Env env, Lvol* lv, Napi::Object& o) const {
  const Lvstore* s = lv->store();
  // driver_specific.lvol as SPDK's vbdev_lvol_dump_info_json writes it (v25.09), key order kept.
  bool has_clones = false;
  Napi::Array clones = Napi::Array::New(env);
  uint32_t n = 0;
  for (const Lvol* other : s->js.lvols) {
    if (other->js.parent == lv) {
      clones.Set(n++, other->js.name);
      has_clones = true;
    }
  }
  Napi::Object ds = Napi::Object::New(env);
  ds.Set("lvol_store_uuid", s->uuid_str());
  ds.Set("base_bdev", s->base()->name());
  ds.Set("thin_provision", Napi::Boolean::New(env, (lv->js.flags & lvolfmt::kFlagThin) != 0));
  ds.Set("num_allocated_clusters", Napi::Number::New(env, static_cast<double>(lv->num_allocated.load())));
  // SPDK's spdk_blob_is_snapshot(): has had a clone since the store was loaded (see
  // Lvol::MdState::was_parent), not the on-disk snapshot flag: a snapshot whose clones are all
  // gone stays one until the store is loaded again, and then is not.
  ds.Set("snapshot", Napi::Boolean::New(env, lv->js.was_parent || has_clones));
  ds.Set("clone", Napi::Boolean::New(env, lv->js.parent != nullptr));
  if (lv->js.parent != nullptr) ds.Set("base_snapshot", lv->js.parent->js.name);
  if (has_clones) ds.Set("clones", clones);
  ds.Set("esnap_clone", Napi::Boolean::New(env, false));
  o.Set("driverSpecific", ds);
  // What bdev_lvol_get_lvols needs beyond it.
  o.Set("lvsUuid", s->uuid_str());
  o.Set("lvsName", s->js.name);
  o.Set("lvolName", lv->js.name);
  o.Set("clearMethod", lvolfmt::ClearMethodName(lv->js.clear_method));
  o.Set("numClusters", Napi::Number::New(env, static_cast<double>(lv->num_blocks() / s->blocks_per_cluster())));
}

// createLvstore(bdevName, lvsName, clusterSize, clearMethod) -> Promise<LvstoreInfo>
Napi::Value JsEngine::CreateLvstore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev_lvol_create_lvstore";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  const std::string bdev = Str(info, 0, "bdevName", op);
  const std::string name = Str(info, 1, "lvsName", op);
  const uint64_t cluster = Uint(info, 2, "clusterSize", op);
  const uint32_t clear = ClearArg(info, 3, op);
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  Bdev* b = FindBdev(bdev);
  if (b == nullptr) {
    Reject(env, d, ENODEV, "no bdev named " + bdev, op);
    return d->Promise();
  }
  napi_env e = env_;
  Lvols()->CreateLvstore(b, name, cluster, clear, [d, e, op](int err, const std::string& msg, Lvstore* s) {
    Napi::Env env(e);
    if (err != 0) return Reject(env, d, err, msg, op);
    d->Resolve(StoreInfo(env, s));
  });
  return d->Promise();
}

// listLvstores() -> LvstoreInfo[]
Napi::Value JsEngine::ListLvstores(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  if (!lvol_) return a;
  uint32_t i = 0;
  for (const auto& s : lvol_->Stores()) a.Set(i++, StoreInfo(env, s.get()));
  return a;
}

namespace {
// The settle-with-nothing answer most operations use.
LvolModule::Answer VoidAnswer(napi_env e, Deferred d, std::string op) {
  return [e, d, op](int err, const std::string& msg, Lvol*) {
    Napi::Env env(e);
    if (err != 0) return Reject(env, d, err, msg, op);
    d->Resolve(env.Undefined());
  };
}
}  // namespace

// deleteLvstore(uuid) -> Promise<void>
Napi::Value JsEngine::DeleteLvstore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev_lvol_delete_lvstore";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  const std::string uuid = Str(info, 0, "uuid", op);
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  auto s = StoreOrReject(lvol_.get(), env, d, uuid, op);
  if (!s) return d->Promise();
  lvol_->DeleteLvstore(s, VoidAnswer(env_, d, op));
  return d->Promise();
}

// renameLvstore(uuid, newName) -> Promise<void>
Napi::Value JsEngine::RenameLvstore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev_lvol_rename_lvstore";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  const std::string uuid = Str(info, 0, "uuid", op);
  const std::string name = Str(info, 1, "newName", op);
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  auto s = StoreOrReject(lvol_.get(), env, d, uuid, op);
  if (!s) return d->Promise();
  lvol_->RenameLvstore(s, name, VoidAnswer(env_, d, op));
  return d->Promise();
}

// growLvstore(uuid) -> Promise<void>
Napi::Value JsEngine::GrowLvstore(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev_lvol_grow_lvstore";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  const std::string uuid = Str(info, 0, "uuid", op);
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  auto s = StoreOrReject(lvol_.get(), env, d, uuid, op);
  if (!s) return d->Promise();
  lvol_->GrowLvstore(s, VoidAnswer(env_, d, op));
  return d->Promise();
}

// createLvol(lvsUuid, name, sizeBytes, thin, clearMethod, uuid?) -> Promise<BdevInfo>
Napi::Value JsEngine::CreateLvol(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev_lvol_create";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  const std::string lvs = Str(info, 0, "lvsUuid", op);
  const std::string name = Str(info, 1, "name", op);
  const uint64_t size = Uint(info, 2, "sizeBytes", op);
  const bool thin = info[3].ToBoolean();
  const uint32_t clear = ClearArg(info, 4, op);
  std::string uuid;
  if (info.Length() > 5 && !info[5].IsUndefined() && !info[5].IsNull()) uuid = Str(info, 5, "uuid", op);
  auto d = std::make_shared<Napi::Promise::Deferred>(env);
  auto s = StoreOrReject(lvol_.get(), env, d, lvs, op);
  if (!s) return d->Promise();
  napi_env e = env_;
  lvol_->CreateLvol(s, name, size, thin, clear, uuid, [this, e, d, op](int err, const std::string& msg, Lvol* lv) {
    Napi::Env env(e);
    if (err != 0) return Reject(env, d, err, msg, op);
    d->Resolve(DescribeBdev(env, lv));
  });
  return d->Promise();
}

// The common shape of the per-lvol operations: look the lvol up by name, alias or UUID.
#define LVOL_OP_PROLOGUE(OPNAME)                                                   \
  Napi::Env env = info.Env();                                                      \
  const std::string op = OPNAME;                                                   \
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);      \
  const std::string bdev_name = Str(info, 0, "bdevName", op);                      \
  auto d = std::make_shared<Napi::Promise::Deferred>(env);                         \
  Lvol* lv = dynamic_cast<Lvol*>(FindBdev(bdev_name));                             \
  if (lv == nullptr || !lvol_) {                                                   \
    Reject(env, d, ENODEV, "no lvol bdev named " + bdev_name, op);                 \
    return d->Promise();                                                           \
  }

// deleteLvol(bdevName) -> Promise<void>
Napi::Value JsEngine::DeleteLvol(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_delete");
  // SPDK unregisters the lvol's bdev before deleting its blob (_vbdev_lvol_destroy), and the
  // NVMe-oF target hot-removes the namespaces exporting it, as for any deleted bdev; the
  // claim does not stop it. (The RPC layer has refused a snapshot with two clones already.)
  if (nvmf_claims_.count(lv) != 0) NvmfBdevRemoved(lv);
  lvol_->DeleteLvol(lv, VoidAnswer(env_, d, op));
  return d->Promise();
}

// resizeLvol(bdevName, sizeBytes) -> Promise<void>
Napi::Value JsEngine::ResizeLvol(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_resize");
  const uint64_t size = Uint(info, 1, "sizeBytes", op);
  Bdev* b = lv;
  const uint64_t blocks_before = lv->num_blocks();
  auto answer = VoidAnswer(env_, d, op);
  b->Ref();  // read again when the answer comes
  lvol_->ResizeLvol(lv, size, [this, b, blocks_before, answer](int err, const std::string& msg, Lvol* l) {
    // SPDK's resize event (spdk_bdev_notify_blockcnt_change -> nvmf_ns_resize): the hosts of
    // the namespaces exporting the lvol get a Namespace Attribute Changed notice.
    if (err == 0 && nvmf_claims_.count(b) != 0 && b->num_blocks() != blocks_before) NvmfBdevResized(b);
    b->Unref();
    answer(err, msg, l);
  });
  return d->Promise();
}

// setLvolReadOnly(bdevName) -> Promise<void>
Napi::Value JsEngine::SetLvolReadOnly(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_set_read_only");
  lvol_->SetReadOnly(lv, VoidAnswer(env_, d, op));
  return d->Promise();
}

// renameLvol(bdevName, newName) -> Promise<void>
Napi::Value JsEngine::RenameLvol(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_rename");
  const std::string name = Str(info, 1, "newName", op);
  lvol_->RenameLvol(lv, name, VoidAnswer(env_, d, op));
  return d->Promise();
}

// snapshotLvol(bdevName, snapName) -> Promise<BdevInfo>
Napi::Value JsEngine::SnapshotLvol(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_snapshot");
  const std::string name = Str(info, 1, "snapName", op);
  napi_env e = env_;
  lvol_->Snapshot(lv, name, [this, e, d, op](int err, const std::string& msg, Lvol* snap) {
    Napi::Env env(e);
    if (err != 0) return Reject(env, d, err, msg, op);
    d->Resolve(DescribeBdev(env, snap));
  });
  return d->Promise();
}

// cloneLvol(snapBdevName, cloneName) -> Promise<BdevInfo>
Napi::Value JsEngine::CloneLvol(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_clone");
  const std::string name = Str(info, 1, "cloneName", op);
  napi_env e = env_;
  lvol_->Clone(lv, name, [this, e, d, op](int err, const std::string& msg, Lvol* c) {
    Napi::Env env(e);
    if (err != 0) return Reject(env, d, err, msg, op);
    d->Resolve(DescribeBdev(env, c));
  });
  return d->Promise();
}

// inflateLvol(bdevName) -> Promise<void>
Napi::Value JsEngine::InflateLvol(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_inflate");
  lvol_->Inflate(lv, VoidAnswer(env_, d, op));
  return d->Promise();
}

// decoupleLvolParent(bdevName) -> Promise<void>
Napi::Value JsEngine::DecoupleLvolParent(const Napi::CallbackInfo& info) {
  LVOL_OP_PROLOGUE("bdev_lvol_decouple_parent");
  lvol_->DecoupleParent(lv, VoidAnswer(env_, d, op));
  return d->Promise();
}

#undef LVOL_OP_PROLOGUE

}  // namespace spdk_node

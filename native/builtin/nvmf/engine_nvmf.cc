// JsEngine's NVMe-oF target methods: the N-API glue between lib/engine/native.ts (nvmf*) and
// NvmfTarget. The RPC layer validates and owns the configuration model; these mirror it.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../../common/napi_util.h"
#include "../engine.h"
#include "target.h"

namespace spdk_node {

namespace {

int HexNibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses `n` bytes of hex, ignoring dashes (UUID form). False when malformed.
bool ParseHex(const std::string& s, uint8_t* out, size_t n) {
  size_t k = 0;
  int hi = -1;
  for (char c : s) {
    if (c == '-') continue;
    const int v = HexNibble(c);
    if (v < 0 || k >= n) return false;
    if (hi < 0) {
      hi = v;
    } else {
      out[k++] = static_cast<uint8_t>(hi << 4 | v);
      hi = -1;
    }
  }
  return k == n && hi < 0;
}

std::string UuidText(const uint8_t* u) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    s += hex[u[i] >> 4];
    s += hex[u[i] & 15];
  }
  return s;
}

uint32_t U32(Napi::Object o, const char* key, uint32_t dflt) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) return dflt;
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 4294967295.0) return dflt;
  return static_cast<uint32_t>(d);
}

std::string S(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

Napi::Object AddrObj(Napi::Env env, const ListenAddr& a) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("traddr", a.traddr);
  o.Set("trsvcid", a.trsvcid);
  return o;
}

}  // namespace

NvmfTarget* JsEngine::Nvmf() {
  if (!nvmf_) {
    std::vector<Reactor*> rs;
    for (auto& r : reactors_) rs.push_back(r.get());
    nvmf_.reset(new NvmfTarget(rs));
  }
  return nvmf_.get();
}

void JsEngine::ShutdownNvmf() {
  if (!nvmf_) return;
  nvmf_->Shutdown();
  for (Bdev* b : nvmf_claims_) b->claimed = false;
  nvmf_claims_.clear();
  nvmf_.reset();
}

Napi::Value JsEngine::NvmfCreateTransport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvmf_create_transport";
  if (!running_ || reactors_.empty()) ThrowSpdkError(env, "engine is not running", ENODEV, op);
  if (!info[0].IsObject()) ThrowSpdkError(env, "options must be an object", EINVAL, op);
  Napi::Object o = info[0].As<Napi::Object>();
  NvmfOpts opts;
  opts.max_queue_depth = U32(o, "maxQueueDepth", opts.max_queue_depth);
  opts.max_io_qpairs_per_ctrlr = U32(o, "maxIoQpairsPerCtrlr", opts.max_io_qpairs_per_ctrlr);
  opts.in_capsule_data_size = U32(o, "inCapsuleDataSize", opts.in_capsule_data_size);
  opts.max_io_size = U32(o, "maxIoSize", opts.max_io_size);
  opts.io_unit_size = U32(o, "ioUnitSize", opts.io_unit_size);
  opts.max_aq_depth = U32(o, "maxAqDepth", opts.max_aq_depth);
  opts.num_shared_buffers = U32(o, "numSharedBuffers", opts.num_shared_buffers);
  opts.max_connections = U32(o, "maxConnections", opts.max_connections);
  Napi::Value c2h = o.Get("c2hSuccess");
  if (c2h.IsBoolean()) opts.c2h_success = c2h.As<Napi::Boolean>().Value();
  if (opts.max_queue_depth < 2 || opts.max_queue_depth > 65535 || opts.max_aq_depth < 2 ||
      opts.max_aq_depth > 4096 || opts.max_io_qpairs_per_ctrlr < 1 ||
      opts.max_io_qpairs_per_ctrlr > 65535 || opts.max_io_size < 4096 ||
      opts.max_io_size > (1u << 24) || opts.in_capsule_data_size > (1u << 20) ||
      opts.io_unit_size == 0 || opts.num_shared_buffers == 0 || opts.max_connections == 0) {
    ThrowSpdkError(env, "transport options out of range", EINVAL, op);
  }
  const int rc = Nvmf()->CreateTransport(opts);
  if (rc != 0) ThrowSpdkError(env, "transport already exists", -rc, op);
  return env.Undefined();
}

Napi::Value JsEngine::NvmfSetSubsystem(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvmf_set_subsystem";
  if (!running_ || reactors_.empty()) ThrowSpdkError(env, "engine is not running", ENODEV, op);
  if (!info[0].IsObject()) ThrowSpdkError(env, "desc must be an object", EINVAL, op);
  Napi::Object d = info[0].As<Napi::Object>();
  const std::string nqn = S(d, "nqn");
  if (nqn.empty()) ThrowSpdkError(env, "nqn must be a string", EINVAL, op);
  const bool discovery = S(d, "subtype") == "Discovery";
  NvmfTarget* tgt = Nvmf();
  std::shared_ptr<Subsystem> s = tgt->FindSubsystem(nqn);
  const bool is_new = !s;

  // The new namespace table: unchanged namespaces keep their object (and their channels).
  std::shared_ptr<const NsTable> old_ns;
  if (s) {
    std::lock_guard<std::mutex> lock(s->mu);
    old_ns = s->ns;
  } else {
    old_ns = std::make_shared<NsTable>();
  }
  auto table = std::make_shared<NsTable>();
  std::vector<Bdev*> to_claim;
  std::vector<uint32_t> changed;
  Napi::Value nsv = d.Get("namespaces");
  if (nsv.IsArray()) {
    Napi::Array arr = nsv.As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) {
      if (!arr.Get(i).IsObject()) ThrowSpdkError(env, "namespace must be an object", EINVAL, op);
      Napi::Object n = arr.Get(i).As<Napi::Object>();
      const uint32_t nsid = U32(n, "nsid", 0);
      const std::string bdev_name = S(n, "bdevName");
      if (nsid == 0 || nsid > 0xFFFFFFFEu) ThrowSpdkError(env, "invalid nsid", EINVAL, op);
      if (table->size() < nsid) table->resize(nsid);
      if ((*table)[nsid - 1]) ThrowSpdkError(env, "duplicate nsid " + std::to_string(nsid), EINVAL, op);
      Bdev* b = FindBdev(bdev_name);
      if (b == nullptr) ThrowSpdkError(env, "bdev " + bdev_name + " not found", ENODEV, op);
      std::shared_ptr<Namespace> keep;
      if (nsid <= old_ns->size() && (*old_ns)[nsid - 1] && (*old_ns)[nsid - 1]->bdev == b) {
        keep = (*old_ns)[nsid - 1];
      }
      if (!keep) {
        if (b->claimed && nvmf_claims_.count(b) == 0) {
          ThrowSpdkError(env, "bdev " + bdev_name + " is claimed by another module", EBUSY, op);
        }
        // One subsystem namespace per bdev, as SPDK's exclusive-write claim.
        bool in_use = nvmf_claims_.count(b) != 0;
        if (in_use) {
          // ... unless it is this subsystem's namespace moving to another nsid.
          for (auto& on : *old_ns) {
            if (on && on->bdev == b) in_use = false;
          }
        }
        if (in_use) ThrowSpdkError(env, "bdev " + bdev_name + " is already exported", EBUSY, op);
        keep = std::make_shared<Namespace>(nsid, b);
        const std::string uuid = S(n, "uuid"), nguid = S(n, "nguid"), eui64 = S(n, "eui64");
        if (!uuid.empty()) {
          if (!ParseHex(uuid, keep->uuid, 16)) ThrowSpdkError(env, "invalid uuid " + uuid, EINVAL, op);
          keep->has_uuid = true;
        }
        if (!nguid.empty()) {
          if (!ParseHex(nguid, keep->nguid, 16)) ThrowSpdkError(env, "invalid nguid " + nguid, EINVAL, op);
          keep->has_nguid = true;
        }
        if (!eui64.empty()) {
          if (!ParseHex(eui64, keep->eui64, 8)) ThrowSpdkError(env, "invalid eui64 " + eui64, EINVAL, op);
          keep->has_eui64 = true;
        }
        to_claim.push_back(b);
        changed.push_back(nsid);
      }
      (*table)[nsid - 1] = keep;
    }
  }
  std::vector<std::shared_ptr<Namespace>> removed;
  for (size_t i = 0; i < old_ns->size(); i++) {
    const auto& on = (*old_ns)[i];
    if (!on) continue;
    if (i >= table->size() || (*table)[i] != on) {
      removed.push_back(on);
      if (std::find(changed.begin(), changed.end(), on->nsid) == changed.end()) {
        changed.push_back(on->nsid);
      }
    }
  }

  std::vector<std::string> hosts;
  Napi::Value hv = d.Get("hosts");
  if (hv.IsArray()) {
    Napi::Array a = hv.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      if (a.Get(i).IsString()) hosts.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    }
  }
  std::vector<ListenAddr> listeners;
  Napi::Value lv = d.Get("listeners");
  if (lv.IsArray()) {
    Napi::Array a = lv.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      if (!a.Get(i).IsObject()) continue;
      Napi::Object l = a.Get(i).As<Napi::Object>();
      listeners.push_back(ListenAddr{S(l, "traddr"), S(l, "trsvcid")});
    }
  }
  Napi::Value aah = d.Get("allowAnyHost");
  const bool allow_any = aah.IsBoolean() && aah.As<Napi::Boolean>().Value();

  // Everything checked: apply.
  if (!s) s = tgt->GetOrCreateSubsystem(nqn, discovery);
  std::vector<std::shared_ptr<Controller>> evict;
  bool discovery_changed = is_new;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->sn = S(d, "serialNumber");
    s->mn = S(d, "modelNumber");
    discovery_changed = discovery_changed || s->listeners != listeners || s->hosts != hosts ||
                        s->allow_any_host != allow_any;
    s->allow_any_host = allow_any;
    s->hosts = hosts;
    s->listeners = listeners;
    s->ns = table;
    s->max_namespaces = U32(d, "maxNamespaces", 0);
    s->min_cntlid = static_cast<uint16_t>(U32(d, "minCntlid", 1));
    s->max_cntlid = static_cast<uint16_t>(U32(d, "maxCntlid", 0xFFEF));
    // Hosts no longer allowed, and controllers that came in through a listener the subsystem
    // no longer has, are disconnected (as SPDK's remove_host / remove_listener do).
    for (auto& kv : s->ctrlrs) {
      ListenAddr via;
      {
        std::lock_guard<std::mutex> l2(kv.second->mu);
        via = kv.second->admin.local;
      }
      if (!s->HostAllowed(kv.second->hostnqn) || !s->ListenerAllowed(via)) {
        evict.push_back(kv.second);
      }
    }
  }
  s->ns_gen.fetch_add(1, std::memory_order_release);
  for (Bdev* b : to_claim) {
    b->claimed = true;
    b->claim_type = "exclusive_write";
    nvmf_claims_.insert(b);
  }
  for (auto& on : removed) {
    on->removed.store(true, std::memory_order_release);
    bool still = false;
    for (auto& nn : *table) {
      if (nn && nn->bdev == on->bdev) still = true;
    }
    if (!still) {
      on->bdev->claimed = false;
      nvmf_claims_.erase(on->bdev);
    }
  }
  for (auto& c : evict) tgt->DisconnectController(c);
  if (!changed.empty()) tgt->NotifyNsChanged(s, changed);
  if (discovery_changed) tgt->NotifyDiscoveryChanged();
  return env.Undefined();
}

void JsEngine::NvmfBdevRemoved(Bdev* b) {
  if (!nvmf_) return;
  for (auto& s : nvmf_->Subsystems()) {
    std::vector<uint32_t> gone;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      auto table = std::make_shared<NsTable>(*s->ns);
      for (auto& n : *table) {
        if (n && n->bdev == b) {
          n->removed.store(true, std::memory_order_release);
          gone.push_back(n->nsid);
          n.reset();
        }
      }
      if (gone.empty()) continue;
      s->ns = table;
    }
    s->ns_gen.fetch_add(1, std::memory_order_release);
    nvmf_->NotifyNsChanged(s, gone);
  }
  b->claimed = false;
  nvmf_claims_.erase(b);
}

void JsEngine::NvmfBdevResized(Bdev* b) {
  if (!nvmf_) return;
  for (auto& s : nvmf_->Subsystems()) {
    std::vector<uint32_t> changed;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      for (auto& n : *s->ns) {
        if (n && n->bdev == b) changed.push_back(n->nsid);
      }
    }
    if (!changed.empty()) nvmf_->NotifyNsChanged(s, changed);
  }
}

Napi::Value JsEngine::NvmfDeleteSubsystem(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvmf_delete_subsystem";
  if (!info[0].IsString()) ThrowSpdkError(env, "nqn must be a string", EINVAL, op);
  const std::string nqn = info[0].As<Napi::String>().Utf8Value();
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  if (!nvmf_) {
    deferred->Resolve(env.Undefined());
    return deferred->Promise();
  }
  std::shared_ptr<Subsystem> s = nvmf_->FindSubsystem(nqn);
  if (s) {
    std::lock_guard<std::mutex> lock(s->mu);
    for (auto& n : *s->ns) {
      if (!n) continue;
      n->bdev->claimed = false;
      nvmf_claims_.erase(n->bdev);
    }
  }
  Ref();
  nvmf_->DeleteSubsystem(nqn, [this, deferred]() {
    PostToJs([this, deferred](Napi::Env env) {
      deferred->Resolve(env.Undefined());
      Unref();
    });
  });
  return deferred->Promise();
}

Napi::Value JsEngine::NvmfListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvmf_listen";
  if (!running_ || reactors_.empty()) ThrowSpdkError(env, "engine is not running", ENODEV, op);
  if (!info[0].IsString() || !info[1].IsString()) ThrowSpdkError(env, "traddr and trsvcid must be strings", EINVAL, op);
  ListenAddr a{info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value()};
  const int rc = Nvmf()->Listen(a);
  if (rc != 0) {
    ThrowSpdkError(env, "cannot listen on " + a.traddr + ":" + a.trsvcid + ": " + ErrnoText(-rc), -rc, op);
  }
  return env.Undefined();
}

Napi::Value JsEngine::NvmfStopListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "nvmf_stop_listen";
  if (!info[0].IsString() || !info[1].IsString()) ThrowSpdkError(env, "traddr and trsvcid must be strings", EINVAL, op);
  ListenAddr a{info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value()};
  const int rc = nvmf_ ? nvmf_->StopListen(a) : -ENOENT;
  if (rc != 0) ThrowSpdkError(env, "not listening on " + a.traddr + ":" + a.trsvcid, -rc, op);
  return env.Undefined();
}

Napi::Value JsEngine::NvmfControllers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  if (!nvmf_ || !info[0].IsString()) return out;
  std::shared_ptr<Subsystem> s = nvmf_->FindSubsystem(info[0].As<Napi::String>().Utf8Value());
  if (!s) return out;
  std::lock_guard<std::mutex> lock(s->mu);
  uint32_t k = 0;
  for (auto& kv : s->ctrlrs) {
    Controller* c = kv.second.get();
    Napi::Object o = Napi::Object::New(env);
    o.Set("cntlid", c->cntlid);
    o.Set("hostnqn", c->hostnqn);
    o.Set("hostid", UuidText(c->hostid));
    std::lock_guard<std::mutex> l2(c->mu);
    o.Set("numIoQpairs", c->io_count);
    out.Set(k++, o);
  }
  return out;
}

Napi::Value JsEngine::NvmfQpairs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  if (!nvmf_ || !info[0].IsString()) return out;
  std::shared_ptr<Subsystem> s = nvmf_->FindSubsystem(info[0].As<Napi::String>().Utf8Value());
  if (!s) return out;
  std::lock_guard<std::mutex> lock(s->mu);
  uint32_t k = 0;
  auto add = [&](Controller* c, int qid, const QpairRef& q) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("cntlid", c->cntlid);
    o.Set("qid", qid);
    o.Set("state", "active");
    o.Set("listenAddress", AddrObj(env, q.local));
    o.Set("peerAddress", AddrObj(env, q.peer));
    o.Set("reactor", q.pg->reactor()->index());
    out.Set(k++, o);
  };
  for (auto& kv : s->ctrlrs) {
    Controller* c = kv.second.get();
    std::lock_guard<std::mutex> l2(c->mu);
    if (c->admin.pg != nullptr) add(c, 0, c->admin);
    for (size_t i = 0; i < c->io.size(); i++) {
      if (c->io[i].pg != nullptr) add(c, static_cast<int>(i + 1), c->io[i]);
    }
  }
  return out;
}

Napi::Value JsEngine::NvmfStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("tickRate", 1000000000.0);
  Napi::Array groups = Napi::Array::New(env);
  double copies = 0, connect_timeouts = 0, keep_alive_timeouts = 0;
  if (nvmf_) {
    for (size_t i = 0; i < nvmf_->group_count(); i++) {
      PollGroup* pg = nvmf_->group(i);
      Napi::Object g = Napi::Object::New(env);
      auto num = [&](const char* k, const GroupCounter& v) {
        g.Set(k, Napi::Number::New(env, static_cast<double>(v.Get())));
      };
      g.Set("name", pg->name);
      num("adminQpairs", pg->stats.admin_qpairs);
      num("ioQpairs", pg->stats.io_qpairs);
      num("currentAdminQpairs", pg->stats.current_admin_qpairs);
      num("currentIoQpairs", pg->stats.current_io_qpairs);
      num("pendingBdevIo", pg->stats.pending_bdev_io);
      num("completedNvmeIo", pg->stats.completed_nvme_io);
      groups.Set(static_cast<uint32_t>(i), g);
      copies += static_cast<double>(pg->stats.data_copies.Get());
      connect_timeouts += static_cast<double>(pg->stats.connect_timeouts.Get());
      keep_alive_timeouts += static_cast<double>(pg->stats.keep_alive_timeouts.Get());
    }
  }
  out.Set("pollGroups", groups);
  out.Set("dataCopies", copies);
  out.Set("connections", nvmf_ ? static_cast<double>(nvmf_->connections()) : 0.0);
  out.Set("refusedConnections", nvmf_ ? static_cast<double>(nvmf_->refused_connections()) : 0.0);
  out.Set("connectTimeouts", connect_timeouts);
  out.Set("keepAliveTimeouts", keep_alive_timeouts);
  return out;
}

}  // namespace spdk_node

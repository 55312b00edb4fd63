#include "engine.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <thread>

#include "../common/napi_util.h"
#include "io/io_queue.h"
#include "bdev/file.h"
#include "bdev/malloc.h"
#include "bdev/record.h"
#include "io/native_bench.h"
#include "lvol/module.h"
#include "nvmf/target.h"

namespace spdk_node {

namespace {

// Joins reactor threads off the JS thread so stop() never blocks the event loop.
class JoinWorker : public Napi::AsyncWorker {
 public:
  JoinWorker(Napi::Env env, std::vector<std::unique_ptr<ThreadReactor>> reactors,
             std::function<void(Napi::Env)> done,
             std::shared_ptr<Napi::Promise::Deferred> deferred)
      : Napi::AsyncWorker(env, "spdk-node:stop"),
        deferred_(std::move(deferred)),
        reactors_(std::move(reactors)),
        done_(std::move(done)) {}
  void Execute() override {
    for (auto& r : reactors_) r->Join();
    reactors_.clear();
  }
  void OnOK() override {
    done_(Env());
    deferred_->Resolve(Env().Undefined());
  }

 private:
  std::shared_ptr<Napi::Promise::Deferred> deferred_;
  std::vector<std::unique_ptr<ThreadReactor>> reactors_;
  std::function<void(Napi::Env)> done_;
};

}  // namespace

Napi::Function JsEngine::Init(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {
                         InstanceMethod("start", &JsEngine::Start),
                         InstanceMethod("stop", &JsEngine::Stop),
                         InstanceMethod("createMallocBdev", &JsEngine::CreateMallocBdev),
                         InstanceMethod("createFileBdev", &JsEngine::CreateFileBdev),
                         InstanceMethod("deleteBdev", &JsEngine::DeleteBdev),
                         InstanceMethod("rescanFileBdev", &JsEngine::RescanFileBdev),
                         InstanceMethod("listBdevs", &JsEngine::ListBdevs),
                         InstanceMethod("findBdev", &JsEngine::FindBdevInfo),
                         InstanceMethod("bdevRemovals", &JsEngine::BdevRemovals),
                         InstanceMethod("bdevStats", &JsEngine::BdevStats),
                         InstanceMethod("createRecordBdev", &JsEngine::CreateRecordBdev),
                         InstanceMethod("takeRecordLog", &JsEngine::TakeRecordLog),
                         InstanceMethod("allocBuffer", &JsEngine::AllocBuffer),
                         InstanceMethod("freeBuffer", &JsEngine::FreeBuffer),
                         InstanceMethod("bufferInfo", &JsEngine::BufferInfo),
                         InstanceMethod("reactorStats", &JsEngine::ReactorStats),
                         InstanceMethod("nativeBench", &JsEngine::NativeBench),
                         InstanceMethod("unref", &JsEngine::UnrefLoop),
                         InstanceMethod("ref", &JsEngine::RefLoop),
                         InstanceMethod("createLvstore", &JsEngine::CreateLvstore),
                         InstanceMethod("nvmfCreateTransport", &JsEngine::NvmfCreateTransport),
                         InstanceMethod("nvmfSetSubsystem", &JsEngine::NvmfSetSubsystem),
                         InstanceMethod("nvmfDeleteSubsystem", &JsEngine::NvmfDeleteSubsystem),
                         InstanceMethod("nvmfListen", &JsEngine::NvmfListen),
                         InstanceMethod("nvmfStopListen", &JsEngine::NvmfStopListen),
                         InstanceMethod("nvmfControllers", &JsEngine::NvmfControllers),
                         InstanceMethod("nvmfQpairs", &JsEngine::NvmfQpairs),
                         InstanceMethod("nvmfStats", &JsEngine::NvmfStats),
                         InstanceMethod("listLvstores", &JsEngine::ListLvstores),
                         InstanceMethod("deleteLvstore", &JsEngine::DeleteLvstore),
                         InstanceMethod("renameLvstore", &JsEngine::RenameLvstore),
                         InstanceMethod("growLvstore", &JsEngine::GrowLvstore),
                         InstanceMethod("createLvol", &JsEngine::CreateLvol),
                         InstanceMethod("deleteLvol", &JsEngine::DeleteLvol),
                         InstanceMethod("resizeLvol", &JsEngine::ResizeLvol),
                         InstanceMethod("setLvolReadOnly", &JsEngine::SetLvolReadOnly),
                         InstanceMethod("renameLvol", &JsEngine::RenameLvol),
                         InstanceMethod("snapshotLvol", &JsEngine::SnapshotLvol),
                         InstanceMethod("cloneLvol", &JsEngine::CloneLvol),
                         InstanceMethod("inflateLvol", &JsEngine::InflateLvol),
                         InstanceMethod("decoupleLvolParent", &JsEngine::DecoupleLvolParent),
                     });
}

JsEngine::JsEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsEngine>(info) {
  env_ = info.Env();
}

JsEngine::~JsEngine() {
  if (cleanup_hook_added_) napi_remove_env_cleanup_hook(env_, &JsEngine::CleanupHook, this);
  StopReactorsBlocking();
  if (lvol_) lvol_->Shutdown();
  for (Bdev* b : bdevs_) b->Unref();
}

// start({ cores: number[], polling: boolean, hugepages: boolean })
Napi::Value JsEngine::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "spdk.start";
  if (running_ || stopping_) ThrowSpdkError(env, "engine already started", EALREADY, op);
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Array cores = o.Get("cores").As<Napi::Array>();
  polling_ = o.Get("polling").ToBoolean();
  try_huge_ = o.Get("hugepages").ToBoolean();
  for (uint32_t i = 0; i < cores.Length(); i++) {
    int32_t core = cores.Get(i).As<Napi::Number>().Int32Value();
    auto r = std::make_unique<ThreadReactor>(i, core, polling_);
    std::string err = r->Start();
    if (!err.empty()) {
      for (auto& started : reactors_) started->StopAndJoin();
      reactors_.clear();
      ThrowSpdkError(env, err, EINVAL, op);
    }
    reactors_.push_back(std::move(r));
  }
  napi_status st = napi_create_threadsafe_function(
      env, nullptr, nullptr, Napi::String::New(env, "spdk-node:engine"), 0, 1, nullptr, nullptr,
      this, &JsEngine::CallJs, &tsfn_);
  if (st != napi_ok) {
    StopReactorsBlocking();
    ThrowSpdkError(env, "cannot create the engine's wake-up", ENOMEM, op);
  }
  napi_add_env_cleanup_hook(env, &JsEngine::CleanupHook, this);
  cleanup_hook_added_ = true;
  running_ = true;
  // Keep the JS object alive while native threads may call back into it.
  Ref();
  return env.Undefined();
}

void JsEngine::PostToJs(std::function<void(Napi::Env)> fn) {
  {
    std::lock_guard<std::mutex> lock(post_mu_);
    if (tsfn_ == nullptr) return;
    posted_.push_back(std::move(fn));
  }
  napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
}

void JsEngine::CallJs(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;
  JsEngine* self = static_cast<JsEngine*>(context);
  std::deque<std::function<void(Napi::Env)>> batch;
  {
    std::lock_guard<std::mutex> lock(self->post_mu_);
    batch.swap(self->posted_);
  }
  Napi::Env e(env);
  for (auto& fn : batch) {
    Napi::HandleScope scope(e);
    try {
      fn(e);
    } catch (const Napi::Error& err) {
      // A throwing JS callback must not leave the batch half-delivered.
      napi_value ex = err.Value();
      napi_fatal_exception(env, ex);
    }
  }
}

Reactor* JsEngine::GetReactor(int index) {
  if (index < 0) return JsReactor();
  if (static_cast<size_t>(index) >= reactors_.size()) return nullptr;
  return reactors_[index].get();
}

UvReactor* JsEngine::JsReactor() {
  if (js_reactor_ == nullptr && running_) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env_, &loop);
    js_reactor_ = new UvReactor(static_cast<uint32_t>(reactors_.size()), polling_);
    if (js_reactor_->Start(loop) != 0) {
      js_reactor_->Close();
      js_reactor_ = nullptr;
      return nullptr;
    }
    if (async_ctx_ == nullptr) {
      napi_value name;
      napi_create_string_utf8(env_, "spdk-node:io-completion", NAPI_AUTO_LENGTH, &name);
      napi_async_init(env_, nullptr, name, &async_ctx_);
    }
    js_reactor_->SetAfterRun([this]() { DeliverJsReady(); });
  }
  return js_reactor_;
}

void JsEngine::DeliverJsReady() {
  if (js_ready_.empty()) return;
  std::vector<JsIoQueue*> ready;
  ready.swap(js_ready_);
  for (JsIoQueue* q : ready) q->DeliverDirect(env_, async_ctx_);
}

void JsEngine::ForgetJsReady(JsIoQueue* q) {
  for (auto it = js_ready_.begin(); it != js_ready_.end();) it = *it == q ? js_ready_.erase(it) : it + 1;
}

Bdev* JsEngine::FindBdev(const std::string& name) const {
  for (Bdev* b : bdevs_)
    if (b->name() == name || b->uuid() == name) return b;
  for (Bdev* b : bdevs_)
    for (const std::string& a : b->aliases)
      if (a == name) return b;
  return nullptr;
}

void JsEngine::AddBdev(Bdev* b) { bdevs_.push_back(b); }

Napi::Object JsEngine::DescribeBdev(Napi::Env env, Bdev* b) const {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", b->name());
  Napi::Array aliases = Napi::Array::New(env, b->aliases.size());
  for (size_t i = 0; i < b->aliases.size(); i++) aliases.Set(static_cast<uint32_t>(i), b->aliases[i]);
  o.Set("aliases", aliases);
  o.Set("productName", b->product_name());
  o.Set("blockSize", Napi::Number::New(env, b->block_size()));
  o.Set("numBlocks", Napi::Number::New(env, static_cast<double>(b->num_blocks())));
  o.Set("uuid", b->uuid());
  o.Set("driver", b->driver());
  o.Set("requiredAlignment", Napi::Number::New(env, b->required_alignment()));
  o.Set("readOnly", Napi::Boolean::New(env, b->read_only()));
  o.Set("claimed", Napi::Boolean::New(env, b->claimed));
  if (b->claimed) o.Set("claimType", b->claim_type);
  if (!b->taste_error.empty()) o.Set("tasteError", b->taste_error);
  Napi::Object io = Napi::Object::New(env);
  io.Set("read", b->io_type_supported(IoType::kRead));
  io.Set("write", b->io_type_supported(IoType::kWrite));
  io.Set("flush", b->io_type_supported(IoType::kFlush));
  io.Set("unmap", b->io_type_supported(IoType::kUnmap));
  io.Set("write_zeroes", b->io_type_supported(IoType::kWriteZeroes));
  o.Set("ioTypes", io);
  Napi::Object ds = Napi::Object::New(env);
  // SPDK's driver_specific keys per module (bdev_aio_dump_info_json, bdev_uring_dump_info_json).
  if (FileBdev* f = dynamic_cast<FileBdev*>(b)) {
    ds.Set("filename", f->filename());
    if (std::string(f->driver()) == "aio") {
      ds.Set("block_size_override", Napi::Boolean::New(env, f->block_size_override()));
      ds.Set("readonly", Napi::Boolean::New(env, f->read_only()));
    }
  }
  o.Set("driverSpecific", ds);
  if (Lvol* lv = dynamic_cast<Lvol*>(b)) DescribeLvol(env, lv, o);
  return o;
}

// createMallocBdev(name, numBlocks, blockSize, uuid) -> info. Parameters were validated in TS.
Napi::Value JsEngine::CreateMallocBdev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev_malloc_create";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  std::string name = info[0].As<Napi::String>();
  double nb = info[1].As<Napi::Number>().DoubleValue();
  uint32_t bs = info[2].As<Napi::Number>().Uint32Value();
  std::string uuid = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
  if (FindBdev(name) != nullptr) ThrowSpdkError(env, "bdev " + name + " already exists", EEXIST, op);
  if (!(nb >= 1) || bs == 0) ThrowSpdkError(env, "invalid size", EINVAL, op);
  int err = 0;
  MallocBdev* b = MallocBdev::Create(name, static_cast<uint64_t>(nb), bs, uuid, &err);
  if (b == nullptr) ThrowSpdkError(env, ErrnoText(err), err, op);
  AddBdev(b);
  Lvols()->Taste(b);
  return DescribeBdev(env, b);
}

// createFileBdev(name, filename, blockSize, readOnly, driver, uuid) -> info
Napi::Value JsEngine::CreateFileBdev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string driver = info[4].As<Napi::String>();
  const std::string op = "bdev_" + driver + "_create";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  std::string name = info[0].As<Napi::String>();
  std::string filename = info[1].As<Napi::String>();
  uint32_t bs = info[2].As<Napi::Number>().Uint32Value();
  bool ro = info[3].ToBoolean();
  std::string uuid = info[5].IsString() ? info[5].As<Napi::String>().Utf8Value() : "";
  if (FindBdev(name) != nullptr) ThrowSpdkError(env, "bdev " + name + " already exists", EEXIST, op);
  std::string msg;
  int err = 0;
  Bdev* b = spdk_node::CreateFileBdev(name, filename, bs, ro, driver, uuid, &msg, &err);
  if (b == nullptr) ThrowSpdkError(env, msg.empty() ? ErrnoText(err) : msg, err ? err : EINVAL, op);
  AddBdev(b);
  Lvols()->Taste(b);
  return DescribeBdev(env, b);
}

// deleteBdev(name, driver): the bdev disappears from the registry at once; open queues see
// ENODEV on their next submission and the memory goes with the last channel.
Napi::Value JsEngine::DeleteBdev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  std::string driver = info[1].As<Napi::String>();
  for (size_t i = 0; i < bdevs_.size(); i++) {
    Bdev* b = bdevs_[i];
    if (b->name() != name) continue;
    if (b->driver() != driver) break;
    if (dynamic_cast<Lvol*>(b) != nullptr) {
      ThrowSpdkError(env, "lvol bdev " + name + " is deleted with bdev_lvol_delete", EPERM,
                     "bdev_" + driver + "_delete");
    }
    // An exported bdev leaves its subsystem first (SPDK's hot remove of the namespace).
    if (nvmf_claims_.count(b) != 0) NvmfBdevRemoved(b);
    // Deleting an lvstore's base bdev unloads the store (SPDK's hot remove): its lvols go.
    if (b->claimed && lvol_) {
      lvol_->OnBaseDeleted(b);  // unregisters the lvols (they follow b in bdevs_)
      i = static_cast<size_t>(std::find(bdevs_.begin(), bdevs_.end(), b) - bdevs_.begin());
    }
    b->MarkRemoved();
    bdevs_.erase(bdevs_.begin() + static_cast<long>(i));
    bdev_removals_++;
    b->Unref();
    return Napi::Boolean::New(env, true);
  }
  ThrowSpdkError(env, ErrnoText(ENODEV), ENODEV, "bdev_" + driver + "_delete");
}

// rescanFileBdev(name, driver): picks up a file or block device that grew or shrank, as SPDK's
// bdev_aio_rescan / bdev_uring_rescan (spdk_bdev_notify_blockcnt_change): shrinking a bdev that
// is open or claimed fails with EBUSY; a bdev of another module is ENODEV.
Napi::Value JsEngine::RescanFileBdev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  std::string driver = info[1].As<Napi::String>();
  const std::string op = "bdev_" + driver + "_rescan";
  FileBdev* f = dynamic_cast<FileBdev*>(FindBdev(name));
  if (f == nullptr || driver != f->driver()) ThrowSpdkError(env, ErrnoText(ENODEV), ENODEV, op);
  const int64_t size = f->CurrentSize();
  if (size < 0) ThrowSpdkError(env, ErrnoText(static_cast<int>(-size)), static_cast<int>(-size), op);
  const uint64_t blocks = static_cast<uint64_t>(size) / f->block_size();
  if (blocks == f->num_blocks()) return Napi::Boolean::New(env, true);
  if (blocks < f->num_blocks() && (f->open_count > 0 || f->claimed)) ThrowSpdkError(env, ErrnoText(EBUSY), EBUSY, op);
  f->Rescanned(blocks);
  return Napi::Boolean::New(env, true);
}

Napi::Value JsEngine::ListBdevs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env, bdevs_.size());
  for (size_t i = 0; i < bdevs_.size(); i++) a.Set(static_cast<uint32_t>(i), DescribeBdev(env, bdevs_[i]));
  return a;
}

// findBdev(nameOrAliasOrUuid) -> the bdev described as listBdevs does, or undefined: one lookup
// in native code instead of describing every bdev to JS and searching the list.
Napi::Value JsEngine::FindBdevInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) return env.Undefined();
  Bdev* b = FindBdev(info[0].As<Napi::String>());
  return b == nullptr ? env.Undefined() : Napi::Value(DescribeBdev(env, b));
}

Napi::Value JsEngine::BdevRemovals(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bdev_removals_));
}

Napi::Value JsEngine::BdevStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  Bdev* b = FindBdev(name);
  if (b == nullptr) ThrowSpdkError(env, ErrnoText(ENODEV), ENODEV, "bdev_get_iostat");
  const spdk_node::BdevStats& s = b->stats;
  Napi::Object o = Napi::Object::New(env);
  auto put = [&](const char* k, const std::atomic<uint64_t>& v) {
    o.Set(k, Napi::Number::New(env, static_cast<double>(v.load(std::memory_order_relaxed))));
  };
  put("bytesRead", s.bytes_read);
  put("numReadOps", s.num_read_ops);
  put("bytesWritten", s.bytes_written);
  put("numWriteOps", s.num_write_ops);
  put("bytesUnmapped", s.bytes_unmapped);
  put("numUnmapOps", s.num_unmap_ops);
  put("numFlushOps", s.num_flush_ops);
  put("numWriteZeroesOps", s.num_write_zeroes_ops);
  put("bytesWriteZeroes", s.bytes_write_zeroes);
  put("readLatencyTicks", s.read_latency_ticks);
  put("writeLatencyTicks", s.write_latency_ticks);
  put("unmapLatencyTicks", s.unmap_latency_ticks);
  put("ioErrors", s.io_errors);
  return o;
}

// createRecordBdev(name, numBlocks, blockSize, delayUs = 0): TEST-ONLY (see bdev/record.h).
Napi::Value JsEngine::CreateRecordBdev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "test.createRecordBdev";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  std::string name = info[0].As<Napi::String>();
  if (FindBdev(name) != nullptr) ThrowSpdkError(env, "bdev " + name + " already exists", EEXIST, op);
  int err = 0;
  const uint64_t delay_us =
      info.Length() > 3 && info[3].IsNumber() ? static_cast<uint64_t>(info[3].As<Napi::Number>().DoubleValue()) : 0;
  RecordBdev* b = RecordBdev::Create(name, static_cast<uint64_t>(info[1].As<Napi::Number>().DoubleValue()),
                                     info[2].As<Napi::Number>().Uint32Value(), delay_us, &err);
  if (b == nullptr) ThrowSpdkError(env, ErrnoText(err), err, op);
  AddBdev(b);
  return DescribeBdev(env, b);
}

// takeRecordLog(name) -> [{ kind: 'write'|'flush'|'zero', offset, length, data? }], and clears it.
Napi::Value JsEngine::TakeRecordLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  RecordBdev* b = dynamic_cast<RecordBdev*>(FindBdev(info[0].As<Napi::String>()));
  if (b == nullptr) ThrowSpdkError(env, ErrnoText(ENODEV), ENODEV, "test.takeRecordLog");
  std::vector<RecordedOp> log = b->TakeLog();
  Napi::Array out = Napi::Array::New(env, log.size());
  static const char* kinds[] = {"write", "flush", "zero"};
  for (size_t i = 0; i < log.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("kind", kinds[log[i].kind]);
    o.Set("offset", Napi::Number::New(env, static_cast<double>(log[i].offset)));
    o.Set("length", Napi::Number::New(env, static_cast<double>(log[i].length)));
    if (log[i].kind == RecordedOp::kWrite) o.Set("data", Napi::Buffer<uint8_t>::Copy(env, log[i].data.data(), log[i].data.size()));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

DmaBuffer* JsEngine::LookupBuffer(double id) const { return buffers_.Lookup(id); }

// allocBuffer(len) -> { id, buffer: ArrayBuffer, hugepage }
Napi::Value JsEngine::AllocBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "spdk.allocBuffer";
  if (!running_) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  double len = info[0].As<Napi::Number>().DoubleValue();
  if (!(len >= 1) || len > 1099511627776.0 || std::floor(len) != len)
    ThrowSpdkError(env, "buffer size must be an integer between 1 byte and 1 TiB", EINVAL, op);
  DmaBuffer* b = DmaBuffer::Allocate(static_cast<size_t>(len), try_huge_);
  if (b == nullptr) ThrowSpdkError(env, ErrnoText(errno), errno ? errno : ENOMEM, op);
  return buffers_.Add(env, b, op);
}

// freeBuffer(id): EBUSY while I/O uses it; EBADF if already freed.
Napi::Value JsEngine::FreeBuffer(const Napi::CallbackInfo& info) {
  buffers_.Free(info.Env(), info[0].As<Napi::Number>().DoubleValue(), "buffer.free");
  return info.Env().Undefined();
}

Napi::Value JsEngine::BufferInfo(const Napi::CallbackInfo& info) {
  return buffers_.Info(info.Env(), info[0].As<Napi::Number>().DoubleValue());
}

Napi::Value JsEngine::ReactorStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  uint32_t n = 0;
  auto add = [&](Reactor* r, bool js) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", Napi::Number::New(env, r->index()));
    o.Set("core", Napi::Number::New(env, r->core()));
    o.Set("jsThread", Napi::Boolean::New(env, js));
    o.Set("busyIterations", Napi::Number::New(env, static_cast<double>(r->busy_iterations())));
    o.Set("idleSleeps", Napi::Number::New(env, static_cast<double>(r->idle_sleeps())));
    a.Set(n++, o);
  };
  for (auto& r : reactors_) add(r.get(), false);
  if (js_reactor_) add(js_reactor_, true);
  return a;
}

// nativeBench({ bdev, reactor, write, queueDepth, ioBlocks, durationMs }) -> Promise<{ios, ns}>
Napi::Value JsEngine::NativeBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bench";
  Napi::Object o = info[0].As<Napi::Object>();
  std::string name = o.Get("bdev").As<Napi::String>();
  Bdev* b = FindBdev(name);
  if (b == nullptr) ThrowSpdkError(env, ErrnoText(ENODEV), ENODEV, op);
  Reactor* r = GetReactor(o.Get("reactor").As<Napi::Number>().Int32Value());
  if (r == nullptr || r == js_reactor_) ThrowSpdkError(env, "no such thread reactor", EINVAL, op);
  NativeBenchParams p;
  p.write = o.Get("write").ToBoolean();
  p.queue_depth = static_cast<uint32_t>(GetUint(o, "queueDepth", op));
  p.io_blocks = static_cast<uint32_t>(GetUint(o, "ioBlocks", op));
  p.duration_us = GetUint(o, "durationMs", op) * 1000;
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  RunNativeBench(b, r, p, [this, deferred](NativeBenchResult res) {
    PostToJs([deferred, res](Napi::Env env) {
      if (res.error != 0) {
        deferred->Reject(MakeSpdkError(env, ErrnoText(res.error), res.error, "bench").Value());
        return;
      }
      Napi::Object out = Napi::Object::New(env);
      out.Set("ios", Napi::Number::New(env, static_cast<double>(res.ios)));
      out.Set("ns", Napi::Number::New(env, static_cast<double>(res.ns)));
      deferred->Resolve(out);
    });
  });
  return deferred->Promise();
}

Napi::Value JsEngine::UnrefLoop(const Napi::CallbackInfo& info) {
  if (tsfn_ != nullptr) napi_unref_threadsafe_function(info.Env(), tsfn_);
  return info.Env().Undefined();
}

Napi::Value JsEngine::RefLoop(const Napi::CallbackInfo& info) {
  if (tsfn_ != nullptr) napi_ref_threadsafe_function(info.Env(), tsfn_);
  return info.Env().Undefined();
}

// stop(): every queue must be closed first (TypeScript closes them). Resolves after every
// reactor thread has been joined and every buffer released.
Napi::Value JsEngine::Stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "spdk.stop";
  if (!running_) ThrowSpdkError(env, "engine is not running", EALREADY, op);
  if (open_queues > 0)
    ThrowSpdkError(env, std::to_string(open_queues) + " I/O queue(s) still open", EBUSY, op);
  running_ = false;
  stopping_ = true;
  ShutdownNvmf();  // connections go before the bdevs they use
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  if (lvol_ && !lvol_->empty()) {
    // Every lvstore commits its dirty metadata (acknowledged writes to new clusters) first.
    lvol_->PrepareStop([this, deferred]() { FinishStop(Napi::Env(env_), deferred); });
  } else {
    FinishStop(env, deferred);
  }
  return deferred->Promise();
}

void JsEngine::FinishStop(Napi::Env env, std::shared_ptr<Napi::Promise::Deferred> deferred) {
  for (auto& r : reactors_) r->RequestStop();
  auto* worker = new JoinWorker(env, std::move(reactors_), [this](Napi::Env env) {
    buffers_.ReleaseAll(env);
    if (lvol_) lvol_->Shutdown();
    for (Bdev* b : bdevs_) {
      b->MarkRemoved();
      b->Unref();
    }
    bdevs_.clear();
    lvol_.reset();
    if (js_reactor_ != nullptr) {
      js_reactor_->SetAfterRun(nullptr);
      js_reactor_->Close();
      js_reactor_ = nullptr;
    }
    js_ready_.clear();
    if (async_ctx_ != nullptr) {
      napi_async_destroy(env, async_ctx_);
      async_ctx_ = nullptr;
    }
    {
      std::lock_guard<std::mutex> lock(post_mu_);
      napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
      tsfn_ = nullptr;
      posted_.clear();
    }
    if (cleanup_hook_added_) {
      napi_remove_env_cleanup_hook(env, &JsEngine::CleanupHook, this);
      cleanup_hook_added_ = false;
    }
    stopping_ = false;
    Unref();
  }, std::move(deferred));
  reactors_.clear();
  worker->Queue();
}

void JsEngine::StopReactorsBlocking() {
  for (auto& r : reactors_) r->RequestStop();
  for (auto& r : reactors_) r->Join();
  reactors_.clear();
}

void JsEngine::CleanupHook(void* arg) {
  // The environment is going away (process exit, worker termination) with the engine still
  // running: stop the reactor threads synchronously. Blocking is fine here: nothing else runs.
  JsEngine* self = static_cast<JsEngine*>(arg);
  self->cleanup_hook_added_ = false;
  // Best effort: commit lvstore metadata (allocations of acknowledged writes) before the
  // reactors go. A crash at any point is safe anyway; this only keeps recent allocations.
  // (process.exit() does not run cleanup hooks: there, unflushed writes have crash semantics.)
  if (self->running_) self->ShutdownNvmf();
  if (self->lvol_ && self->running_) self->lvol_->FlushBlocking(2000);
  self->StopReactorsBlocking();
  std::lock_guard<std::mutex> lock(self->post_mu_);
  if (self->tsfn_ != nullptr) {
    napi_release_threadsafe_function(self->tsfn_, napi_tsfn_abort);
    self->tsfn_ = nullptr;
  }
  self->running_ = false;
}

}  // namespace spdk_node

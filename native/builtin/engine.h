// The builtin engine as JavaScript sees it: one JsEngine per Spdk instance.
//
// Threads: JsEngine's methods run on the JS thread. Reactor threads reach JS only through
// PostToJs() (one thread-safe function per engine, coalescing) and the per-queue completion
// wake-ups in io_queue.h. The bdev registry and the buffer table are JS-thread only.
#pragma once

#include <napi.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "../common/buffer_table.h"
#include "../common/dma_buffer.h"
#include "bdev/bdev.h"
#include "reactor/reactor.h"
#include "reactor/uv_reactor.h"

namespace spdk_node {

class JsIoQueue;
class Lvol;
class LvolModule;
class NvmfTarget;

class JsEngine : public Napi::ObjectWrap<JsEngine> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit JsEngine(const Napi::CallbackInfo& info);
  ~JsEngine() override;

  // Any thread: run fn on the JS thread soon. Dropped silently once the engine is torn down.
  void PostToJs(std::function<void(Napi::Env)> fn);

  // JS thread. reactor index >= 0: a thread reactor; -1: the JS thread's own (uv) reactor.
  Reactor* GetReactor(int index);
  UvReactor* JsReactor();
  bool running() const { return running_; }
  Bdev* FindBdev(const std::string& name_or_alias) const;

  // Buffer table (JS thread). Returns nullptr when the id is not a live buffer.
  DmaBuffer* LookupBuffer(double id) const;

  // Count of open IoQueues (JS thread); stop() requires zero.
  int open_queues = 0;

  // JS thread. A queue on the JS-thread reactor has completions: deliver them after the current
  // reactor iteration. Forget removes a closing queue from the list.
  void MarkJsReady(JsIoQueue* q) { js_ready_.push_back(q); }
  void ForgetJsReady(JsIoQueue* q);

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value CreateMallocBdev(const Napi::CallbackInfo& info);
  Napi::Value CreateFileBdev(const Napi::CallbackInfo& info);
  Napi::Value DeleteBdev(const Napi::CallbackInfo& info);
  Napi::Value RescanFileBdev(const Napi::CallbackInfo& info);
  Napi::Value ListBdevs(const Napi::CallbackInfo& info);
  Napi::Value FindBdevInfo(const Napi::CallbackInfo& info);
  Napi::Value BdevRemovals(const Napi::CallbackInfo& info);
  Napi::Value BdevStats(const Napi::CallbackInfo& info);
  // Test-only fault injection (bdev/record.h); reachable from JS, never from an RPC.
  Napi::Value CreateRecordBdev(const Napi::CallbackInfo& info);
  Napi::Value TakeRecordLog(const Napi::CallbackInfo& info);
  Napi::Value AllocBuffer(const Napi::CallbackInfo& info);
  Napi::Value FreeBuffer(const Napi::CallbackInfo& info);
  Napi::Value BufferInfo(const Napi::CallbackInfo& info);
  Napi::Value ReactorStats(const Napi::CallbackInfo& info);
  Napi::Value NativeBench(const Napi::CallbackInfo& info);
  Napi::Value UnrefLoop(const Napi::CallbackInfo& info);
  Napi::Value RefLoop(const Napi::CallbackInfo& info);
  // Logical volumes (defined in lvol/engine_lvol.cc).
  Napi::Value CreateLvstore(const Napi::CallbackInfo& info);
  Napi::Value ListLvstores(const Napi::CallbackInfo& info);
  Napi::Value DeleteLvstore(const Napi::CallbackInfo& info);
  Napi::Value RenameLvstore(const Napi::CallbackInfo& info);
  Napi::Value GrowLvstore(const Napi::CallbackInfo& info);
  Napi::Value CreateLvol(const Napi::CallbackInfo& info);
  Napi::Value DeleteLvol(const Napi::CallbackInfo& info);
  Napi::Value ResizeLvol(const Napi::CallbackInfo& info);
  Napi::Value SetLvolReadOnly(const Napi::CallbackInfo& info);
  Napi::Value RenameLvol(const Napi::CallbackInfo& info);
  Napi::Value SnapshotLvol(const Napi::CallbackInfo& info);
  Napi::Value CloneLvol(const Napi::CallbackInfo& info);
  Napi::Value InflateLvol(const Napi::CallbackInfo& info);
  Napi::Value DecoupleLvolParent(const Napi::CallbackInfo& info);
  void DescribeLvol(Napi::Env env, Lvol* lv, Napi::Object& o) const;
  // The NVMe-oF target (defined in nvmf/engine_nvmf.cc).
  Napi::Value NvmfCreateTransport(const Napi::CallbackInfo& info);
  Napi::Value NvmfSetSubsystem(const Napi::CallbackInfo& info);
  Napi::Value NvmfDeleteSubsystem(const Napi::CallbackInfo& info);
  Napi::Value NvmfListen(const Napi::CallbackInfo& info);
  Napi::Value NvmfStopListen(const Napi::CallbackInfo& info);
  Napi::Value NvmfControllers(const Napi::CallbackInfo& info);
  Napi::Value NvmfQpairs(const Napi::CallbackInfo& info);
  Napi::Value NvmfStats(const Napi::CallbackInfo& info);
  // The target, created on first use (the engine must be running).
  NvmfTarget* Nvmf();
  // Closes every connection and listener (reactors still running); blocks briefly.
  void ShutdownNvmf();
  // A bdev exported as a namespace is being deleted: its namespaces leave their subsystems.
  void NvmfBdevRemoved(Bdev* b);
  // A bdev exported as a namespace changed size: its hosts are told (namespace changed notice).
  void NvmfBdevResized(Bdev* b);
  // The lvol module, created on first use (the engine must be running).
  LvolModule* Lvols();
  // stop(), once every lvstore has committed and gone quiet.
  void FinishStop(Napi::Env env, std::shared_ptr<Napi::Promise::Deferred> deferred);

  Napi::Object DescribeBdev(Napi::Env env, Bdev* b) const;
  void AddBdev(Bdev* b);
  // Synchronous teardown for env cleanup (process exit without stop()).
  static void CleanupHook(void* arg);
  void StopReactorsBlocking();
  static void CallJs(napi_env env, napi_value js_cb, void* context, void* data);

  std::vector<std::unique_ptr<ThreadReactor>> reactors_;
  UvReactor* js_reactor_ = nullptr;
  bool polling_ = false;
  bool running_ = false;
  bool stopping_ = false;
  napi_threadsafe_function tsfn_ = nullptr;
  std::mutex post_mu_;
  std::deque<std::function<void(Napi::Env)>> posted_;
  void DeliverJsReady();
  std::vector<JsIoQueue*> js_ready_;
  napi_async_context async_ctx_ = nullptr;  // for direct delivery (async hooks see one resource)
  std::vector<Bdev*> bdevs_;  // creation order; each holds one reference
  uint64_t bdev_removals_ = 0;  // bumped whenever a bdev leaves bdevs_
  BufferTable buffers_;
  bool try_huge_ = true;
  napi_env env_ = nullptr;
  bool cleanup_hook_added_ = false;
  std::unique_ptr<LvolModule> lvol_;
  std::unique_ptr<NvmfTarget> nvmf_;
  std::set<Bdev*> nvmf_claims_;  // bdevs exported as namespaces (claimed by the target)
};

}  // namespace spdk_node

// IoQueue: the JS <-> reactor I/O path for one open bdev (and the model the NVMe queue pairs
// of later work reuse). It is a submission/completion queue pair in shared memory:
//
//  JS thread                                   owning reactor
//  ---------                                   --------------
//  writes descriptors into `desc` (Float64)
//  submit(n): validates, fills slots,  ──sq──▶ poller drains sq, Submit()s to the BdevChannel
//             one N-API call per batch          completion: writes {tag,status} into `cq`,
//  reap(): one N-API call per wake-up  ◀──cq──  publishes tail, wakes JS once (coalesced
//          returns how many entries are ready    thread-safe function call)
//
// A tag is a slot index in [0, depth); JS owns the free tags. A slot is busy from submit()
// until JS reaps its completion, so cq can never overflow (capacity >= depth).
// A submit() that throws submitted nothing and never calls back; a submit() that returns
// completes every descriptor exactly once.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "../../common/dma_buffer.h"
#include "../../common/io_desc.h"
#include "../../common/ring.h"
#include "../bdev/bdev.h"

namespace spdk_node {

class JsEngine;
class Reactor;
struct Poller;

// The descriptor layout (kDesc*, kIovWords, kMaxIovs, IoOp) is in common/io_desc.h.
static_assert(static_cast<int>(IoType::kRead) == kIoRead && static_cast<int>(IoType::kWrite) == kIoWrite &&
                  static_cast<int>(IoType::kFlush) == kIoFlush && static_cast<int>(IoType::kUnmap) == kIoUnmap &&
                  static_cast<int>(IoType::kWriteZeroes) == kIoWriteZeroes,
              "IoType and the descriptor operations must agree");

class JsIoQueue : public Napi::ObjectWrap<JsIoQueue> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new IoQueue(engine, bdevName, reactorIndex, depth, onComplete)
  explicit JsIoQueue(const Napi::CallbackInfo& info);
  ~JsIoQueue() override;

 private:
  struct Slot : IoSlotRefs {
    BdevIo io;
    JsIoQueue* queue = nullptr;
    uint64_t submit_ns = 0;
    struct iovec iovs[kMaxIovs];
  };

  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Reap(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value InFlight(const Napi::CallbackInfo& info);

  // Validates descriptor i and fills its slot; returns 0 or a positive errno with *msg set.
  int Prepare(const double* d, std::string* msg);
  // JS thread: the channel is gone (or never existed); drop references, tell JS.
  void FinishClose();

 public:
  // JS thread, queues on the JS-thread reactor only: call onComplete now (we are inside a
  // libuv callback, so through napi_make_callback: microtasks run after it).
  void DeliverDirect(napi_env env, napi_async_context ctx);

 private:
  // Reactor thread.
  bool Poll();
  static void OnIoComplete(BdevIo* io, int status, void* ctx);
  void Notify();
  static void CallJs(napi_env env, napi_value js_cb, void* context, void* data);

  JsEngine* engine_ = nullptr;
  Napi::ObjectReference engine_ref_;
  Bdev* bdev_ = nullptr;
  Reactor* reactor_ = nullptr;
  bool js_polled_ = false;
  BdevChannel* channel_ = nullptr;  // reactor thread
  Poller* poller_ = nullptr;        // reactor thread
  uint32_t depth_ = 0;
  std::vector<Slot> slots_;
  SpscRing<uint32_t> sq_;
  // Shared with JS as external ArrayBuffers.
  IoQueueMemory mem_;  // desc, iovs, cq: shared with JavaScript
  uint32_t cq_head_ = 0;  // JS thread
  alignas(64) std::atomic<bool> wake_pending_{false};
  std::atomic<int> in_flight_{0};
  uint32_t unnotified_ = 0;  // reactor thread: completions not yet signalled to JS
  std::atomic<bool> closing_{false};
  bool opened_ = false;
  bool closed_ = false;
  napi_threadsafe_function tsfn_ = nullptr;
  Napi::FunctionReference on_complete_;  // for DeliverDirect
};

}  // namespace spdk_node

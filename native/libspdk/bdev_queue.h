// BdevQueue: the libspdk engine's bdev I/O queue, with the builtin engine's JavaScript contract
// (lib/bdev/queue.ts; the descriptor layout is common/io_desc.h) on an SPDK bdev.
//
//  JS thread                                   the queue's SPDK thread (on the chosen reactor)
//  ---------                                   -----------------------------------------------
//  writes descriptors into `desc`              opened there: spdk_bdev_open_ext, an I/O channel,
//  submit(n): validates, fills slots,  ──sq──▶ a poller that drains sq into spdk_bdev_*_blocks;
//             one N-API call per batch         -ENOMEM: spdk_bdev_queue_io_wait, retried when
//                                              the bdev has room (never seen by JavaScript)
//  reap(): one N-API call per wake-up  ◀──cq── completion: {tag, status} into cq, one coalesced
//                                              thread-safe-function call per poll
//
// Each queue has its own spdk_thread, created with the reactor's core as its cpumask (SPDK's
// scheduler keeps it there), so queues on different reactors run in parallel and closing one
// is just that thread's exit. A tag is busy from submit() until JavaScript reaps it, so cq never
// overflows. A bdev removed under the queue (hot removal, bdev_*_delete): I/O in flight
// completes (SPDK fails it), the channel and descriptor are released at once (SPDK waits for
// that before the bdev goes), later submits throw ENODEV.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../common/dma_buffer.h"
#include "../common/io_desc.h"
#include "../common/ring.h"
#include "reactor_link.h"

struct spdk_bdev;
struct spdk_bdev_desc;
struct spdk_bdev_io;
struct spdk_io_channel;
struct spdk_poller;
struct spdk_thread;

namespace spdk_node::libspdk {

class JsApp;

class BdevQueue : public Napi::ObjectWrap<BdevQueue> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new IoQueue(app, bdevName, core, depth, onComplete)
  explicit BdevQueue(const Napi::CallbackInfo& info);
  ~BdevQueue() override;

 private:
  struct Slot;

  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Submit(const Napi::CallbackInfo& info);
  Napi::Value Reap(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value InFlight(const Napi::CallbackInfo& info);
  int Prepare(const double* d, std::string* msg);
  void FinishClose(Napi::Env env);
  // Any thread: open() fails with err (a positive errno) and msg.
  void Fail(int err, const std::string& msg);

  // The queue's SPDK thread.
  static void OpenOnThread(BdevQueue* q);
  static void OnBdevEvent(int type, spdk_bdev* bdev, void* ctx);
  static int Poll(void* ctx);
  void SubmitOne(Slot* s);
  static void RetryIo(void* ctx);
  static void OnIoDone(spdk_bdev_io* io, bool success, void* ctx);
  void ReleaseBdev();

  JsApp* app_ = nullptr;
  Napi::ObjectReference app_ref_;
  std::string name_;
  uint32_t core_ = 0;
  uint32_t depth_ = 0;
  // Known once open (from the bdev, on its thread).
  uint32_t block_size_ = 0;
  uint64_t num_blocks_ = 0;
  uint32_t align_ = 1;
  uint32_t supported_ = 0;  // bit per IoOp

  std::vector<Slot> slots_;
  SpscRing<uint32_t> sq_;
  IoQueueMemory mem_;  // desc, iovs, cq: shared with JavaScript
  uint32_t cq_head_ = 0;  // JS thread
  std::atomic<int> in_flight_{0};
  std::atomic<bool> closing_{false};
  std::atomic<bool> removed_{false};
  bool opened_ = false;  // JS thread: open() called
  bool ready_ = false;   // JS thread: open() resolved
  bool closed_ = false;
  Napi::FunctionReference on_complete_;
  std::unique_ptr<ReactorLink> link_;  // the queue's SPDK thread and the way back to JS
  // Settles open()'s promise (JS thread).
  std::function<void(Napi::Env, int, const std::string&)> open_done_;

  // SPDK thread state.
  spdk_bdev_desc* bdev_desc_ = nullptr;
  spdk_io_channel* channel_ = nullptr;
  spdk_poller* poller_ = nullptr;
  uint32_t unnotified_ = 0;
};

}  // namespace spdk_node::libspdk

#include "bdev_queue.h"

#include <spdk/bdev.h>
#include <spdk/cpuset.h>
#include <spdk/thread.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>

#include "../common/napi_util.h"
#include "js_app.h"

namespace spdk_node::libspdk {

struct BdevQueue::Slot : IoSlotRefs {
  BdevQueue* queue = nullptr;
  int op = 0;
  uint64_t offset = 0;
  uint64_t blocks = 0;
  struct iovec iovs[kMaxIovs];
  spdk_bdev_io_wait_entry wait{};
};

namespace {

const char* kOpOpen = "bdev.open";
const char* kOpSubmit = "bdev.submit";


uint32_t RingSize(const Napi::Value& v) {
  if (!v.IsNumber()) return 1;
  const uint32_t d = v.As<Napi::Number>().Uint32Value();
  return d == 0 || d > 65536 ? 1 : d;
}



const char* OpName(int op) {
  switch (op) {
    case kIoRead: return "read";
    case kIoWrite: return "write";
    case kIoFlush: return "flush";
    case kIoUnmap: return "unmap";
    case kIoWriteZeroes: return "write_zeroes";
  }
  return "?";
}

}  // namespace

Napi::Function BdevQueue::Init(Napi::Env env) {
  return DefineClass(env, "IoQueue",
                     {
                         InstanceMethod("open", &BdevQueue::Open),
                         InstanceMethod("submit", &BdevQueue::Submit),
                         InstanceMethod("reap", &BdevQueue::Reap),
                         InstanceMethod("close", &BdevQueue::Close),
                         InstanceMethod("inFlight", &BdevQueue::InFlight),
                     });
}

BdevQueue::BdevQueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BdevQueue>(info), sq_(RingSize(info[3])) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsObject() || !info[1].IsString() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsFunction())
    ThrowSpdkError(env, "IoQueue(app, bdevName, core, depth, onComplete)", EINVAL, kOpOpen);
  app_ = JsApp::Unwrap(info[0].As<Napi::Object>());
  if (!app_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, kOpOpen);
  name_ = info[1].As<Napi::String>();
  core_ = info[2].As<Napi::Number>().Uint32Value();
  depth_ = info[3].As<Napi::Number>().Uint32Value();
  if (depth_ == 0 || depth_ > 65536) ThrowSpdkError(env, "depth must be 1..65536", EINVAL, kOpOpen);
  app_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  slots_.resize(depth_);
  for (uint32_t i = 0; i < depth_; i++) {
    slots_[i].queue = this;
    slots_[i].tag = i;
  }
  Napi::Object self = info.This().As<Napi::Object>();
  mem_.Allocate(self, depth_, sq_.capacity());
  on_complete_ = Napi::Persistent(info[4].As<Napi::Function>());
  link_ = std::make_unique<ReactorLink>(env, "spdk-node:bdev-queue", [this](Napi::Env e) {
    if (closed_) return;
    // A throwing onComplete is reported as uncaught (no C++ exception through N-API's frames).
    napi_value undefined;
    napi_get_undefined(e, &undefined);
    napi_call_function(e, undefined, on_complete_.Value(), 0, nullptr, nullptr);
  });
  Ref();  // SPDK's thread points at us until close() completes
}

BdevQueue::~BdevQueue() = default;

// ---------------------------------------------------------------------------------------------
// Opening: a thread on the reactor's core, then the bdev, its channel and the poller there.

Napi::Value BdevQueue::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (opened_) ThrowSpdkError(env, "queue already open", EALREADY, kOpOpen);
  opened_ = true;
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  // Settled on the JS thread by the task OpenOnThread posts (or CreateThread, on failure).
  open_done_ = [this, deferred](Napi::Env env, int err, const std::string& msg) {
    if (err != 0) {
      deferred->Reject(MakeSpdkError(env, msg, err, kOpOpen).Value());
      FinishClose(env);
      return;
    }
    ready_ = true;
    Napi::Object self = Value();
    self.Set("blockSize", Napi::Number::New(env, block_size_));
    self.Set("numBlocks", Napi::Number::New(env, static_cast<double>(num_blocks_)));
    self.Set("requiredAlignment", Napi::Number::New(env, align_));
    deferred->Resolve(env.Undefined());
  };
  link_->Start(core_, "spdk-node:" + name_, [this]() { OpenOnThread(this); },
               [this](Napi::Env env, int err, const std::string& msg) { open_done_(env, err, msg); });
  return deferred->Promise();
}

void BdevQueue::Fail(int err, const std::string& msg) {
  link_->PostToJs([this, err, msg](Napi::Env env) { open_done_(env, err, msg); });
}

void BdevQueue::OpenOnThread(BdevQueue* q) {
  auto event = [](enum spdk_bdev_event_type type, spdk_bdev* bdev, void* c) {
    OnBdevEvent(static_cast<int>(type), bdev, c);
  };
  int rc = spdk_bdev_open_ext(q->name_.c_str(), true, event, q, &q->bdev_desc_);
  std::string msg;
  if (rc == -ENODEV) {
    msg = "no bdev named '" + q->name_ + "'";
  } else if (rc == -EPERM) {
    rc = -EBUSY;
    msg = "bdev " + q->name_ + " is claimed (an lvstore lives on it, or an NVMe-oF subsystem exports it)";
  } else if (rc != 0) {
    msg = "cannot open bdev " + q->name_ + ": " + strerror(-rc);
  }
  if (rc == 0) {
    q->channel_ = spdk_bdev_get_io_channel(q->bdev_desc_);
    if (q->channel_ == nullptr) {
      spdk_bdev_close(q->bdev_desc_);
      q->bdev_desc_ = nullptr;
      rc = -ENOMEM;
      msg = "cannot get an I/O channel for bdev " + q->name_;
    }
  }
  if (rc != 0) {
    q->link_->Exit();
    return q->Fail(-rc, msg);
  }
  spdk_bdev* b = spdk_bdev_desc_get_bdev(q->bdev_desc_);
  q->block_size_ = spdk_bdev_get_block_size(b);
  q->num_blocks_ = spdk_bdev_get_num_blocks(b);
  q->align_ = static_cast<uint32_t>(spdk_bdev_get_buf_align(b));
  const std::pair<int, spdk_bdev_io_type> types[] = {
      {kIoRead, SPDK_BDEV_IO_TYPE_READ},   {kIoWrite, SPDK_BDEV_IO_TYPE_WRITE},
      {kIoFlush, SPDK_BDEV_IO_TYPE_FLUSH}, {kIoUnmap, SPDK_BDEV_IO_TYPE_UNMAP},
      {kIoWriteZeroes, SPDK_BDEV_IO_TYPE_WRITE_ZEROES}};
  for (const auto& [op, t] : types)
    if (spdk_bdev_io_type_supported(b, t)) q->supported_ |= 1u << op;
  q->poller_ = spdk_poller_register(&BdevQueue::Poll, q, 0);
  q->link_->PostToJs([q](Napi::Env env) { q->open_done_(env, 0, ""); });
}

void BdevQueue::OnBdevEvent(int type, spdk_bdev*, void* ctx) {
  if (type != SPDK_BDEV_EVENT_REMOVE) return;
  BdevQueue* q = static_cast<BdevQueue*>(ctx);
  q->removed_.store(true, std::memory_order_release);
  // The poller releases the descriptor once nothing is in flight (SPDK waits for that).
}

// ---------------------------------------------------------------------------------------------
// Submission (JS thread)

int BdevQueue::Prepare(const double* d, std::string* msg) {
  IoHead h;
  if (int err = ParseIoHead(d, depth_, num_blocks_, name_, &h, msg)) return err;
  if ((supported_ & (1u << h.op)) == 0) {
    *msg = std::string(OpName(h.op)) + " is not supported by bdev " + name_;
    return ENOTSUP;
  }
  Slot* s = &slots_[h.tag];
  if (s->busy) {
    *msg = "tag " + std::to_string(s->tag) + " is already in flight";
    return EBUSY;
  }
  s->op = h.op;
  s->offset = h.offset;
  s->blocks = h.blocks;
  s->nbufs = 0;
  if (h.op != kIoRead && h.op != kIoWrite) return 0;
  return ParseIoBuffers(d, mem_.iov_table, depth_, h.blocks * block_size_, align_, name_,
                        [this](double id) { return app_->LookupBuffer(id); }, s->iovs, s->bufs, &s->nbufs, msg);
}

Napi::Value BdevQueue::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing_.load(std::memory_order_relaxed) || !ready_)
    ThrowSpdkError(env, ready_ ? "queue is closed" : "queue is not open", ESHUTDOWN, kOpSubmit);
  if (removed_.load(std::memory_order_acquire)) ThrowSpdkError(env, "bdev " + name_ + " was deleted", ENODEV, kOpSubmit);
  const uint32_t count = info[0].As<Napi::Number>().Uint32Value();
  SubmitIoBatch(env, mem_.desc, count, slots_, kOpSubmit, [this](const double* d, std::string* msg) { return Prepare(d, msg); },
                [this](Slot& s) {
                  in_flight_.fetch_add(1, std::memory_order_relaxed);
                  sq_.Push(s.tag);  // cannot fail: at most depth_ slots are busy
                });
  return Napi::Number::New(env, count);
}

// ---------------------------------------------------------------------------------------------
// The SPDK thread

int BdevQueue::Poll(void* ctx) {
  BdevQueue* q = static_cast<BdevQueue*>(ctx);
  uint32_t tag;
  int busy = 0;
  while (q->sq_.Pop(&tag)) {
    q->SubmitOne(&q->slots_[tag]);
    busy = 1;
  }
  if (q->unnotified_ > 0) {
    q->unnotified_ = 0;
    q->link_->Notify();
  }
  const bool idle = q->in_flight_.load(std::memory_order_acquire) == 0;
  if (idle && q->removed_.load(std::memory_order_acquire) && q->bdev_desc_ != nullptr) q->ReleaseBdev();
  if (idle && q->closing_.load(std::memory_order_acquire)) {
    q->ReleaseBdev();
    spdk_poller_unregister(&q->poller_);
    q->link_->Exit();
    q->link_->PostToJs([q](Napi::Env env) { q->FinishClose(env); });
    return 1;
  }
  return busy ? SPDK_POLLER_BUSY : SPDK_POLLER_IDLE;
}

void BdevQueue::ReleaseBdev() {
  if (channel_ != nullptr) spdk_put_io_channel(channel_);
  channel_ = nullptr;
  if (bdev_desc_ != nullptr) spdk_bdev_close(bdev_desc_);
  bdev_desc_ = nullptr;
}

void BdevQueue::SubmitOne(Slot* s) {
  int rc;
  if (bdev_desc_ == nullptr) {
    rc = -ENODEV;  // removed and released
  } else {
    switch (s->op) {
      case kIoRead:
        rc = spdk_bdev_readv_blocks(bdev_desc_, channel_, s->iovs, s->nbufs, s->offset, s->blocks, &OnIoDone, s);
        break;
      case kIoWrite:
        rc = spdk_bdev_writev_blocks(bdev_desc_, channel_, s->iovs, s->nbufs, s->offset, s->blocks, &OnIoDone, s);
        break;
      case kIoFlush:
        rc = spdk_bdev_flush_blocks(bdev_desc_, channel_, s->offset, s->blocks, &OnIoDone, s);
        break;
      case kIoUnmap:
        rc = spdk_bdev_unmap_blocks(bdev_desc_, channel_, s->offset, s->blocks, &OnIoDone, s);
        break;
      default:
        rc = spdk_bdev_write_zeroes_blocks(bdev_desc_, channel_, s->offset, s->blocks, &OnIoDone, s);
        break;
    }
  }
  if (rc == -ENOMEM) {
    // The bdev layer is out of spdk_bdev_io structures: retried when one frees up.
    s->wait.bdev = spdk_bdev_desc_get_bdev(bdev_desc_);
    s->wait.cb_fn = &BdevQueue::RetryIo;
    s->wait.cb_arg = s;
    rc = spdk_bdev_queue_io_wait(s->wait.bdev, channel_, &s->wait);
    if (rc == 0) return;
  }
  if (rc != 0) {
    // Refused at submission: complete it like a failed I/O.
    mem_.Push(s->tag, rc);
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    unnotified_++;
  }
}

void BdevQueue::RetryIo(void* ctx) {
  Slot* s = static_cast<Slot*>(ctx);
  s->queue->SubmitOne(s);
}

void BdevQueue::OnIoDone(spdk_bdev_io* io, bool success, void* ctx) {
  Slot* s = static_cast<Slot*>(ctx);
  BdevQueue* q = s->queue;
  spdk_bdev_free_io(io);
  // Buffer references are dropped in Reap(), on the JS thread (see the builtin queue).
  q->mem_.Push(s->tag, success ? 0 : -EIO);
  q->in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  q->unnotified_++;  // Poll() wakes JS once per batch
}

// ---------------------------------------------------------------------------------------------
// Completions and closing (JS thread)

Napi::Value BdevQueue::Reap(const Napi::CallbackInfo& info) {
  link_->ClearWake();
  const uint32_t tail = mem_.tail.load(std::memory_order_acquire);
  const uint32_t n = tail - cq_head_;
  const double packed = ReleaseReaped(mem_.cq, mem_.cq_cap, cq_head_, n, slots_);
  cq_head_ = tail;
  return Napi::Number::New(info.Env(), packed);
}

Napi::Value BdevQueue::InFlight(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), in_flight_.load(std::memory_order_acquire));
}

Napi::Value BdevQueue::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing_.exchange(true)) return env.Undefined();
  // Not open (or its opening failed and already finished): nothing on SPDK's side.
  if (!ready_ && !opened_) FinishClose(env);
  // Otherwise the poller (which exists once open() resolved; an open in progress resolves
  // first) sees closing_ once nothing is in flight.
  return env.Undefined();
}

void BdevQueue::FinishClose(Napi::Env env) {
  if (closed_) return;
  closed_ = true;
  ready_ = false;
  link_->Release();
  Napi::Value cb = Value().Get("_onClosed");
  if (cb.IsFunction()) cb.As<Napi::Function>().Call(Value(), {});
  app_ref_.Reset();
  Unref();
}

}  // namespace spdk_node::libspdk

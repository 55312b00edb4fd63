#include "io_queue.h"


#include <cerrno>
#include <cmath>
#include <memory>

#include "../../common/clock.h"
#include "../../common/napi_util.h"
#include "../engine.h"
#include "../reactor/reactor.h"
#include "../reactor/uv_reactor.h"

namespace spdk_node {

namespace {

// Completions per wake-up while a large batch is being worked through (see Poll()). Measured
// with bench/bdev-io.ts: 4 and 64 both lose to 16 at queue depths 32 and 128.
constexpr uint32_t kNotifyBatch = 16;



// The ring is built before the constructor body validates depth: never size it from junk.
uint32_t RingSize(const Napi::Value& v) {
  if (!v.IsNumber()) return 1;
  const uint32_t d = v.As<Napi::Number>().Uint32Value();
  return d == 0 || d > 65536 ? 1 : d;
}


}  // namespace

Napi::Function JsIoQueue::Init(Napi::Env env) {
  return DefineClass(env, "IoQueue",
                     {
                         InstanceMethod("open", &JsIoQueue::Open),
                         InstanceMethod("submit", &JsIoQueue::Submit),
                         InstanceMethod("reap", &JsIoQueue::Reap),
                         InstanceMethod("close", &JsIoQueue::Close),
                         InstanceMethod("inFlight", &JsIoQueue::InFlight),
                     });
}

JsIoQueue::JsIoQueue(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<JsIoQueue>(info), sq_(RingSize(info[3])) {
  Napi::Env env = info.Env();
  const std::string op = "bdev.open";
  if (info.Length() < 5 || !info[0].IsObject() || !info[1].IsString() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsFunction())
    ThrowSpdkError(env, "IoQueue(engine, bdevName, reactor, depth, onComplete)", EINVAL, op);
  engine_ = JsEngine::Unwrap(info[0].As<Napi::Object>());
  if (!engine_->running()) ThrowSpdkError(env, "the engine is stopped", ESHUTDOWN, op);
  std::string name = info[1].As<Napi::String>();
  bdev_ = engine_->FindBdev(name);
  if (bdev_ == nullptr) ThrowSpdkError(env, "no bdev named '" + name + "'", ENODEV, op);
  if (bdev_->claimed) {
    const std::string who = std::string(bdev_->claim_type) == "exclusive_write"
                                ? "an NVMe-oF subsystem exports it"
                                : "an lvstore lives on it";
    ThrowSpdkError(env, "bdev " + bdev_->name() + " is claimed (" + who + ")", EBUSY, op);
  }
  int reactor_index = info[2].As<Napi::Number>().Int32Value();
  reactor_ = engine_->GetReactor(reactor_index);
  if (reactor_ == nullptr)
    ThrowSpdkError(env, "no reactor " + std::to_string(reactor_index), EINVAL, op);
  js_polled_ = reactor_index < 0;
  depth_ = info[3].As<Napi::Number>().Uint32Value();
  if (depth_ == 0 || depth_ > 65536) ThrowSpdkError(env, "depth must be 1..65536", EINVAL, op);

  engine_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  bdev_->Ref();
  bdev_->open_count++;
  engine_->open_queues++;
  slots_.resize(depth_);
  for (uint32_t i = 0; i < depth_; i++) {
    Slot& s = slots_[i];
    s.queue = this;
    s.tag = i;
    s.io.cb = &JsIoQueue::OnIoComplete;
    s.io.cb_ctx = &s;
    s.io.iovs = s.iovs;
  }
  Napi::Object self = info.This().As<Napi::Object>();
  mem_.Allocate(self, depth_, sq_.capacity());
  self.Set("blockSize", Napi::Number::New(env, bdev_->block_size()));
  self.Set("numBlocks", Napi::Number::New(env, static_cast<double>(bdev_->num_blocks())));
  self.Set("requiredAlignment", Napi::Number::New(env, bdev_->required_alignment()));

  on_complete_ = Napi::Persistent(info[4].As<Napi::Function>());
  napi_status st = napi_create_threadsafe_function(
      env, info[4], nullptr, Napi::String::New(env, "spdk-node:io-completion"), 0, 1, nullptr,
      nullptr, this, &JsIoQueue::CallJs, &tsfn_);
  if (st != napi_ok) throw Napi::Error::New(env, "cannot create completion wake-up");
  // The engine keeps the loop alive while it runs; a queue alone does not.
  napi_unref_threadsafe_function(env, tsfn_);
  // JS may drop its last reference to a queue it never closed; the reactor still points at us
  // until close() completes, so hold ourselves alive until then.
  Ref();
}

JsIoQueue::~JsIoQueue() = default;

Napi::Value JsIoQueue::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  if (opened_) ThrowSpdkError(env, "queue already open", EALREADY, "bdev.open");
  opened_ = true;
  JsEngine* engine = engine_;
  reactor_->Send([this, engine, deferred]() {
    channel_ = bdev_->CreateChannel(reactor_);
    poller_ = reactor_->RegisterPoller("io_queue", [this]() { return Poll(); });
    engine->PostToJs([deferred](Napi::Env env) { deferred->Resolve(env.Undefined()); });
  });
  if (js_polled_) static_cast<UvReactor*>(reactor_)->Kick();
  return deferred->Promise();
}

int JsIoQueue::Prepare(const double* d, std::string* msg) {
  IoHead h;
  if (int err = ParseIoHead(d, depth_, bdev_->num_blocks(), bdev_->name(), &h, msg)) return err;
  const IoType type = static_cast<IoType>(h.op);
  // Read-only first: a read-only bdev reports writes unsupported, but the answer to a write is
  // "read-only" (EROFS; EPERM for an lvol, as SPDK's blobstore answers).
  if ((type == IoType::kWrite || type == IoType::kUnmap || type == IoType::kWriteZeroes) && bdev_->read_only()) {
    *msg = "bdev " + bdev_->name() + " is read-only";
    return bdev_->read_only_errno();
  }
  if (!bdev_->io_type_supported(type)) {
    *msg = std::string(IoTypeName(type)) + " is not supported by bdev " + bdev_->name();
    return ENOTSUP;
  }
  Slot* s = &slots_[h.tag];
  if (s->busy) {
    *msg = "tag " + std::to_string(s->tag) + " is already in flight";
    return EBUSY;
  }
  s->io.type = type;
  s->io.offset_blocks = h.offset;
  s->io.num_blocks = h.blocks;
  s->io.iovcnt = 0;
  s->nbufs = 0;
  if (type != IoType::kRead && type != IoType::kWrite) return 0;
  int n = 0;
  if (int err = ParseIoBuffers(d, mem_.iov_table, depth_, h.blocks * bdev_->block_size(), bdev_->required_alignment(),
                               bdev_->name(), [this](double id) { return engine_->LookupBuffer(id); }, s->iovs,
                               s->bufs, &n, msg))
    return err;
  s->io.iovcnt = n;
  s->nbufs = n;
  return 0;
}

Napi::Value JsIoQueue::Submit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string op = "bdev.submit";
  if (closing_.load(std::memory_order_relaxed) || !opened_)
    ThrowSpdkError(env, opened_ ? "queue is closed" : "queue is not open", ESHUTDOWN, op);
  if (bdev_->removed()) ThrowSpdkError(env, "bdev " + bdev_->name() + " was deleted", ENODEV, op);
  const uint32_t count = info[0].As<Napi::Number>().Uint32Value();
  SubmitIoBatch(env, mem_.desc, count, slots_, op, [this](const double* d, std::string* msg) { return Prepare(d, msg); },
                [this](Slot& s) {
                  in_flight_.fetch_add(1, std::memory_order_relaxed);
                  // Cannot fail: at most depth_ slots are busy and the ring holds depth_ entries.
                  sq_.Push(s.tag);
                });
  if (count > 0) {
    if (js_polled_)
      static_cast<UvReactor*>(reactor_)->Kick();
    else
      reactor_->Wake();
  }
  return Napi::Number::New(env, count);
}

bool JsIoQueue::Poll() {
  uint32_t tag;
  bool busy = false;
  while (sq_.Pop(&tag)) {
    Slot* s = &slots_[tag];
    s->submit_ns = NowNs();
    channel_->Submit(&s->io);
    busy = true;
    // Wake JS once kNotifyBatch completions are waiting rather than after the whole batch, so
    // that JS consumes one part while the reactor works on the next.
    if (unnotified_ >= kNotifyBatch) {
      unnotified_ = 0;
      Notify();
    }
  }
  // One wake-up for everything else that completed since the last poll (inline completions
  // above, completions other pollers delivered in the previous iteration): JS finds batches
  // instead of being woken by the first completion of each.
  if (unnotified_ > 0) {
    unnotified_ = 0;
    Notify();
  }
  if (closing_.load(std::memory_order_acquire) && in_flight_.load(std::memory_order_acquire) == 0 &&
      channel_ != nullptr) {
    delete channel_;
    channel_ = nullptr;
    reactor_->UnregisterPoller(poller_);
    poller_ = nullptr;
    engine_->PostToJs([this](Napi::Env env) {
      (void)env;
      FinishClose();
    });
    busy = true;
  }
  return busy;
}

void JsIoQueue::OnIoComplete(BdevIo* io, int status, void* ctx) {
  Slot* s = static_cast<Slot*>(ctx);
  JsIoQueue* q = s->queue;
  q->bdev_->stats.Record(io->type, io->num_blocks * q->bdev_->block_size(), NowNs() - s->submit_ns, status);
  // Buffer references are dropped in Reap(), on the JS thread: to JavaScript a buffer is in
  // flight until its completion is delivered, so free() between submit and completion always
  // fails with EBUSY, never depending on how fast the reactor was.
  q->mem_.Push(s->tag, status);
  q->in_flight_.fetch_sub(1, std::memory_order_acq_rel);
  q->unnotified_++;  // Poll() wakes JS once per batch
}

void JsIoQueue::Notify() {
  // One wake-up per batch: JS clears wake_pending_ in reap() before reading the tail, so a
  // completion published after that read raises a new wake-up.
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  if (js_polled_) {
    engine_->MarkJsReady(this);  // we are on the JS thread: deliver after this iteration
  } else if (tsfn_ != nullptr) {
    napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
  }
}

void JsIoQueue::DeliverDirect(napi_env env, napi_async_context ctx) {
  Napi::HandleScope scope(env);
  napi_value recv;  // napi_make_callback wants an object receiver
  napi_get_global(env, &recv);
  napi_value result;
  napi_status st = napi_make_callback(env, ctx, recv, on_complete_.Value(), 0, nullptr, &result);
  if (st == napi_pending_exception) {
    napi_value ex;
    napi_get_and_clear_last_exception(env, &ex);
    napi_fatal_exception(env, ex);
  }
}

void JsIoQueue::CallJs(napi_env env, napi_value js_cb, void*, void*) {
  if (env == nullptr || js_cb == nullptr) return;  // torn down
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, js_cb, 0, nullptr, nullptr);
}

Napi::Value JsIoQueue::Reap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  wake_pending_.store(false, std::memory_order_seq_cst);
  const uint32_t tail = mem_.tail.load(std::memory_order_acquire);
  const uint32_t n = tail - cq_head_;
  // Entries [head, head + n) are JS's to read now; their tags stay busy until resubmitted,
  // which is what keeps the reactor from overwriting them (see the header comment).
  const double packed = ReleaseReaped(mem_.cq, mem_.cq_cap, cq_head_, n, slots_);
  cq_head_ = tail;
  return Napi::Number::New(env, packed);
}

void JsIoQueue::FinishClose() {
  closed_ = true;
  if (js_polled_) engine_->ForgetJsReady(this);
  on_complete_.Reset();
  napi_release_threadsafe_function(tsfn_, napi_tsfn_abort);
  tsfn_ = nullptr;
  bdev_->open_count--;
  engine_->open_queues--;
  bdev_->Unref();
  Napi::Value cb = Value().Get("_onClosed");
  if (cb.IsFunction()) cb.As<Napi::Function>().Call(Value(), {});
  engine_ref_.Reset();
  Unref();
}

Napi::Value JsIoQueue::InFlight(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), in_flight_.load(std::memory_order_acquire));
}

Napi::Value JsIoQueue::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing_.exchange(true)) return env.Undefined();
  if (!opened_) {
    // No channel was ever created: finish here. (An open still in progress is finished by the
    // poller, which sees closing_ once the channel exists.)
    FinishClose();
    return env.Undefined();
  }
  if (js_polled_)
    static_cast<UvReactor*>(reactor_)->Kick();
  else
    reactor_->Send([]() {});  // wakes the reactor so the poller sees closing_
  return env.Undefined();
}

}  // namespace spdk_node

// Entry point of the builtin engine's addon (build/Release/spdk_builtin.node).
#include <napi.h>

#include "../common/napi_util.h"
#include "engine.h"
#include "io/io_queue.h"
#include "nvme/js_nvme.h"

namespace spdk_node {

namespace nvme_tcp {
// The PDU codec for tests (native/common/nvme_tcp/napi_codec.cc).
Napi::Value Decode(const Napi::CallbackInfo& info);
Napi::Value Build(const Napi::CallbackInfo& info);
}  // namespace nvme_tcp

namespace {

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  GetAddonData(info.Env())->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("DESC_OP", Napi::Number::New(env, kDescOp));
  c.Set("DESC_TAG", Napi::Number::New(env, kDescTag));
  c.Set("DESC_BUF", Napi::Number::New(env, kDescBuf));
  c.Set("DESC_BUF_OFFSET", Napi::Number::New(env, kDescBufOffset));
  c.Set("DESC_OFFSET_BLOCKS", Napi::Number::New(env, kDescOffsetBlocks));
  c.Set("DESC_NUM_BLOCKS", Napi::Number::New(env, kDescNumBlocks));
  c.Set("DESC_IOV_COUNT", Napi::Number::New(env, kDescIovCount));
  c.Set("DESC_IOV_START", Napi::Number::New(env, kDescIovStart));
  c.Set("DESC_WORDS", Napi::Number::New(env, kDescWords));
  c.Set("IOV_WORDS", Napi::Number::New(env, kIovWords));
  c.Set("MAX_IOVS", Napi::Number::New(env, kMaxIovs));
  c.Set("IO_READ", static_cast<int>(IoType::kRead));
  c.Set("IO_WRITE", static_cast<int>(IoType::kWrite));
  c.Set("IO_FLUSH", static_cast<int>(IoType::kFlush));
  c.Set("IO_UNMAP", static_cast<int>(IoType::kUnmap));
  c.Set("IO_WRITE_ZEROES", static_cast<int>(IoType::kWriteZeroes));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("engine", "builtin");
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("Engine", JsEngine::Init(env));
  exports.Set("IoQueue", JsIoQueue::Init(env));
  exports.Set("constants", Constants(env));
  exports.Set("NvmeController", nvme_host::JsNvmeCtrlr::Init(env));
  exports.Set("NvmeQpair", nvme_host::JsNvmeQpair::Init(env));
  exports.Set("nvmeConstants", nvme_host::NvmeConstants(env));
  exports.Set("nvmeTcpDecode", Napi::Function::New(env, nvme_tcp::Decode));
  exports.Set("nvmeTcpBuild", Napi::Function::New(env, nvme_tcp::Build));
  return exports;
}

}  // namespace

}  // namespace spdk_node

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return spdk_node::Init(env, exports);
}

NODE_API_MODULE(spdk_builtin, InitModule)

// Entry point of the builtin engine's addon (build/Release/spdk_builtin.node).
#include <napi.h>

#include "../common/napi_util.h"
#include "engine.h"
#include "../common/io_desc.h"
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

// The NVMe host's descriptor layout and operations (lib/nvme/qpair.ts).
Napi::Object NvmeConstants(Napi::Env env) {
  using namespace nvme_host;
  Napi::Object c = Napi::Object::New(env);
  c.Set("DESC_OP", static_cast<double>(kNdOp));
  c.Set("DESC_TAG", static_cast<double>(kNdTag));
  c.Set("DESC_NSID", static_cast<double>(kNdNsid));
  c.Set("DESC_BUF", static_cast<double>(kNdBuf));
  c.Set("DESC_BUF_OFFSET", static_cast<double>(kNdBufOffset));
  c.Set("DESC_LBA", static_cast<double>(kNdLba));
  c.Set("DESC_COUNT", static_cast<double>(kNdCount));
  c.Set("DESC_FLAGS", static_cast<double>(kNdFlags));
  c.Set("DESC_WORDS", static_cast<double>(kNdWords));
  c.Set("OP_READ", static_cast<double>(kNdRead));
  c.Set("OP_WRITE", static_cast<double>(kNdWrite));
  c.Set("OP_FLUSH", static_cast<double>(kNdFlush));
  c.Set("OP_WRITE_ZEROES", static_cast<double>(kNdWriteZeroes));
  c.Set("OP_DEALLOCATE", static_cast<double>(kNdDeallocate));
  c.Set("OP_COMPARE", static_cast<double>(kNdCompare));
  c.Set("FLAG_FUA", static_cast<double>(kNdFlagFua));
  c.Set("FLAG_DEAC", static_cast<double>(kNdFlagDeac));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("engine", "builtin");
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("Engine", JsEngine::Init(env));
  exports.Set("IoQueue", JsIoQueue::Init(env));
  exports.Set("constants", IoQueueConstants(env));
  exports.Set("NvmeController", nvme_host::JsNvmeCtrlr::Init(env));
  exports.Set("NvmeQpair", nvme_host::JsNvmeQpair::Init(env));
  exports.Set("nvmeConstants", NvmeConstants(env));
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

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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("engine", "builtin");
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("Engine", JsEngine::Init(env));
  exports.Set("IoQueue", JsIoQueue::Init(env));
  exports.Set("constants", IoQueueConstants(env));
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

// Entry point of the libspdk engine's addon (build/Release/spdk_libspdk.node), linked against
// the SPDK installed on the machine (spdk/probe.js finds it; binding.gyp links it).
#include <napi.h>
#include <spdk/version.h>

#include "../common/io_desc.h"
#include "../common/napi_util.h"
#include "../common/nvme/host_desc.h"
#include "bdev_queue.h"
#include "js_app.h"
#include "nvme/js_nvme.h"

namespace spdk_node::libspdk {

namespace {

Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  GetAddonData(info.Env())->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("engine", "libspdk");
  // The SPDK the addon was compiled against (SPDK_VERSION_STRING, e.g. "SPDK v25.09").
  exports.Set("spdkVersion", SPDK_VERSION_STRING);
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass));
  exports.Set("App", JsApp::Init(env));
  exports.Set("IoQueue", BdevQueue::Init(env));
  exports.Set("constants", IoQueueConstants(env));
  // spdk.nvme on SPDK's NVMe driver: the same interface as the builtin engine's host.
  exports.Set("NvmeController", JsLsCtrlr::Init(env));
  exports.Set("NvmeQpair", JsLsQpair::Init(env));
  exports.Set("nvmeConstants", nvme_host::NvmeConstants(env));
  return exports;
}

}  // namespace

}  // namespace spdk_node::libspdk

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return spdk_node::libspdk::Init(env, exports);
}

NODE_API_MODULE(spdk_libspdk, InitModule)

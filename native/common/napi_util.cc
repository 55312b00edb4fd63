#include "napi_util.h"

#include <cmath>
#include <cstring>

namespace spdk_node {

AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

std::string ErrnoText(int errno_value) {
  char buf[128];
  // GNU strerror_r returns the message pointer (possibly not buf).
  return std::string(strerror_r(errno_value, buf, sizeof(buf)));
}

Napi::Error MakeSpdkError(Napi::Env env, const std::string& message, int errno_value,
                          const std::string& op, const std::string& code) {
  AddonData* data = GetAddonData(env);
  if (data != nullptr && !data->error_class.IsEmpty()) {
    Napi::Object opts = Napi::Object::New(env);
    opts.Set("errno", Napi::Number::New(env, errno_value));
    opts.Set("op", Napi::String::New(env, op));
    if (!code.empty()) opts.Set("code", Napi::String::New(env, code));
    Napi::Object err = data->error_class.New({Napi::String::New(env, message), opts});
    return Napi::Error(env, err);
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("errno", Napi::Number::New(env, errno_value));
  err.Set("op", Napi::String::New(env, op));
  return err;
}

void ThrowSpdkError(Napi::Env env, const std::string& message, int errno_value,
                    const std::string& op, const std::string& code) {
  throw MakeSpdkError(env, message, errno_value, op, code);
}

uint64_t GetUint(const Napi::Object& o, const char* key, const std::string& op) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) ThrowSpdkError(o.Env(), std::string(key) + " must be a number", EINVAL, op);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || std::floor(d) != d)
    ThrowSpdkError(o.Env(), std::string(key) + " must be a non-negative safe integer", EINVAL, op);
  return static_cast<uint64_t>(d);
}

namespace {
void FinalizeNothing(napi_env, void*, void*) {}
}  // namespace

Napi::ArrayBuffer ExternalArrayBuffer(Napi::Env env, void* p, size_t len) {
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, len, FinalizeNothing, nullptr, &ab) != napi_ok)
    throw Napi::Error::New(env, "cannot create an external ArrayBuffer");
  return Napi::ArrayBuffer(env, ab);
}

}  // namespace spdk_node

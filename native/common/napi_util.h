// N-API helpers shared by both addons: per-env addon data and SpdkError creation.
#pragma once

#include <napi.h>

#include <string>

namespace spdk_node {

// Per-env state (worker_threads each get their own). Set once at module init.
struct AddonData {
  Napi::FunctionReference error_class;  // lib/errors.ts SpdkError, registered from TypeScript
};

AddonData* GetAddonData(Napi::Env env);

// Builds an SpdkError (or a plain Error before TypeScript registered the class).
// errno_value is a positive POSIX errno or 0; code may be empty (derived from errno in TS).
Napi::Error MakeSpdkError(Napi::Env env, const std::string& message, int errno_value,
                          const std::string& op, const std::string& code = "");
// Throws it as a C++ exception (node-addon-api is built with NAPI_CPP_EXCEPTIONS).
[[noreturn]] void ThrowSpdkError(Napi::Env env, const std::string& message, int errno_value,
                                 const std::string& op, const std::string& code = "");
// strerror(errno) text, thread-safe.
std::string ErrnoText(int errno_value);

// Reads an integer property that must be a safe non-negative integer (checked in TS already;
// this is the cheap re-check).
uint64_t GetUint(const Napi::Object& o, const char* key, const std::string& op);

// Native memory a queue shares with JavaScript (descriptors, completion rings) as an external
// ArrayBuffer without a finalizer: the queue frees the memory in its destructor, and the views
// are reachable only through the queue's JS object, which holds them. Throws on failure.
Napi::ArrayBuffer ExternalArrayBuffer(Napi::Env env, void* p, size_t len);

}  // namespace spdk_node

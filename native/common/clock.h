// Monotonic time for latency accounting and benchmarks (any thread).
#pragma once

#include <time.h>

#include <cstdint>

namespace spdk_node {

inline uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace spdk_node

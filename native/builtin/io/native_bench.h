// The benchmark reference for JS-driven I/O: the same random-I/O workload driven by a C++ loop
// on a reactor, with no JavaScript in the path (bench/bdev-io.ts runs both, alternating).
#pragma once

#include <cstdint>
#include <functional>

namespace spdk_node {

class Bdev;
class Reactor;

struct NativeBenchParams {
  bool write = false;
  uint32_t queue_depth = 1;
  uint32_t io_blocks = 1;
  uint64_t duration_us = 1000000;
};

struct NativeBenchResult {
  uint64_t ios = 0;
  uint64_t ns = 0;
  int error = 0;
};

// Any thread. Runs on `reactor` with a channel of its own; `done` is called on the reactor
// thread when the run ends.
void RunNativeBench(Bdev* bdev, Reactor* reactor, const NativeBenchParams& p,
                    std::function<void(NativeBenchResult)> done);

}  // namespace spdk_node

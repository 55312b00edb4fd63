// SPDK's application framework on a dedicated native thread (never the JS thread).
//
// The thread calls spdk_app_start(), which initialises DPDK's environment (that thread becomes
// the main lcore and SPDK's app thread), starts a reactor per core of the mask, loads the JSON
// config and starts SPDK's JSON-RPC server; it returns once the framework has stopped, and the
// thread then calls spdk_app_fini() and exits.
//
// DPDK's environment is process-global and cannot be initialised twice (spdk_app_fini frees
// SPDK's memory maps, and a second spdk_app_start would run without them), so SPDK starts at
// most once per process: the state below is process-global, shared by every Node environment
// (worker threads) that loads the addon.
#pragma once

#include <functional>
#include <string>

namespace spdk_node::libspdk {

struct AppOptions {
  std::string reactor_mask;  // SPDK's -m, e.g. "[0,1]"
  int mem_size_mib = -1;     // -s; -1 = DPDK's default (hugepages: grow as needed)
  bool no_huge = false;
  bool no_pci = true;
  std::string rpc_addr;      // Unix socket path; empty = no RPC server
  std::string json_config;   // SPDK JSON config text; empty = none
  int print_level = 0;       // spdk_log_level: lines at or above it go to stderr
  bool interrupt_mode = false;
};

enum class AppState { kNever, kStarting, kRunning, kStopping, kExited };

class SpdkApp {
 public:
  // Called on the SPDK app thread once the framework runs (config loaded, RPC served).
  using StartedFn = std::function<void()>;
  // Called on the native thread after spdk_app_start() returned and spdk_app_fini() ran;
  // rc is spdk_app_start's (0 after a requested stop), errors SPDK's recent error lines, env_up
  // whether DPDK's environment had come up (false: SPDK could not initialise at all).
  using ExitedFn = std::function<void(int rc, const std::string& errors, bool env_up)>;

  // JS thread. Starts the native thread. Returns an error text (nothing started) when SPDK was
  // already started in this process or the thread cannot be created.
  static std::string Start(const AppOptions& opts, StartedFn started, ExitedFn exited);
  // Any thread. Asks the framework to stop (spdk_app_start_shutdown); during start-up, the stop
  // happens as soon as the start callback runs. Idempotent.
  static void RequestStop();
  // Any thread but the SPDK ones. RequestStop() and wait up to timeout_ms for the thread to
  // finish; joins it if it did. True when SPDK is not running any more.
  static bool StopBlocking(int timeout_ms);
  // Joins the native thread once it has reported its exit (JS thread; returns at once then).
  static void Join();
  static AppState State();
  // spdk_free(p) while SPDK's memory maps exist; after spdk_app_fini (or before a start) the
  // memory is left alone (leaked: this only happens when the process or environment goes away
  // with buffers alive, since stop() frees every buffer first). Any thread.
  static void FreeIfUsable(void* p);
};

}  // namespace spdk_node::libspdk

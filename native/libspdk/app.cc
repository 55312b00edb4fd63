#include "app.h"

#include <spdk/env.h>
#include <spdk/env_dpdk.h>
#include <spdk/event.h>
#include <spdk/log.h>
#include <spdk/thread.h>

#include <chrono>
#include <condition_variable>
#include <pthread.h>

#include <csignal>
#include <mutex>
#include <thread>

#include "log.h"

namespace spdk_node::libspdk {

namespace {

// Process-global: one SPDK per process (see app.h).
std::mutex g_mu;
std::condition_variable g_cv;
AppState g_state = AppState::kNever;
bool g_stop_requested = false;
bool g_memory_usable = false;
std::thread g_thread;
AppOptions g_opts;
SpdkApp::StartedFn g_started;
SpdkApp::ExitedFn g_exited;

// On the SPDK app thread, once subsystems are up and the config ran.
void OnStarted(void*) {
  bool stop;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    stop = g_stop_requested;
    if (!stop) g_state = AppState::kRunning;
  }
  if (stop) {
    // stop() or process exit came during start-up: stop now, report only the exit.
    spdk_app_stop(0);
    return;
  }
  g_started();
}

void ThreadMain() {
  // DPDK makes this thread the main lcore; the name shows in top -H and /proc/<pid>/task.
  pthread_setname_np(pthread_self(), "spdk_app");
  // Signals are Node's: block them here so that this thread and every thread SPDK and DPDK
  // create from it (they inherit the mask) leave SIGINT, SIGTERM, ... to Node's threads.
  sigset_t all;
  sigfillset(&all);
  for (int s : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigdelset(&all, s);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);

  struct spdk_app_opts opts = {};
  spdk_app_opts_init(&opts, sizeof(opts));
  opts.name = "spdk-node";
  opts.reactor_mask = g_opts.reactor_mask.c_str();
  opts.shm_id = -1;  // a private DPDK file prefix (spdk_pid<pid>): parallel processes never collide
  opts.mem_size = g_opts.mem_size_mib;
  opts.no_huge = g_opts.no_huge;
  opts.no_pci = g_opts.no_pci;
  opts.rpc_addr = g_opts.rpc_addr.empty() ? nullptr : g_opts.rpc_addr.c_str();
  if (!g_opts.json_config.empty()) {
    opts.json_data = const_cast<char*>(g_opts.json_config.data());
    opts.json_data_size = g_opts.json_config.size();
  }
  opts.print_level = static_cast<spdk_log_level>(g_opts.print_level);
  opts.log = LogLine;
  opts.disable_signal_handlers = true;  // Node keeps SIGINT/SIGTERM
  opts.disable_cpumask_locks = true;    // no /var/tmp/spdk_cpu_lock_* files
  opts.enable_coredump = false;         // would raise RLIMIT_CORE for the whole Node process
  opts.num_entries = 0;                 // no trace buffers in /dev/shm
  opts.interrupt_mode = g_opts.interrupt_mode;

  int rc = spdk_app_start(&opts, OnStarted, nullptr);
  // SPDK's env library initialised DPDK itself (it did not find it initialised by someone else).
  const bool env_up = !spdk_env_dpdk_external_init();
  {
    // Buffers freed from here on would reach spdk_free after the memory maps are gone.
    std::lock_guard<std::mutex> lock(g_mu);
    g_memory_usable = false;
  }
  spdk_app_fini();
  const std::string errors = RecentErrors();
  SpdkApp::ExitedFn exited;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_state = AppState::kExited;
    exited = std::move(g_exited);
    g_started = nullptr;
  }
  g_cv.notify_all();
  if (exited) exited(rc, errors, env_up);
}

}  // namespace

std::string SpdkApp::Start(const AppOptions& opts, StartedFn started, ExitedFn exited) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_state != AppState::kNever) {
    return g_state == AppState::kExited
               ? "SPDK was already started and stopped in this process; DPDK's environment cannot be "
                 "initialised twice. Start SPDK in a new process (e.g. child_process.fork) instead"
               : "SPDK is already running in this process (one SPDK per process: DPDK's environment is "
                 "process-global)";
  }
  g_opts = opts;
  g_started = std::move(started);
  g_exited = std::move(exited);
  g_stop_requested = false;
  g_memory_usable = true;
  SetPrintLevel(static_cast<spdk_log_level>(opts.print_level));
  ClearRecent();
  try {
    g_thread = std::thread(ThreadMain);
  } catch (const std::system_error& e) {
    g_started = nullptr;
    g_exited = nullptr;
    g_memory_usable = false;
    return std::string("cannot create SPDK's thread: ") + e.what();
  }
  g_state = AppState::kStarting;
  return "";
}

void SpdkApp::RequestStop() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_stop_requested) return;
  g_stop_requested = true;
  if (g_state == AppState::kRunning) {
    g_state = AppState::kStopping;
    // Runs app_start_shutdown on the app thread (a critical message: no allocation, safe from
    // any thread), which calls spdk_app_stop(0): subsystems finish, reactors stop, and
    // spdk_app_start() returns on our thread.
    spdk_app_start_shutdown();
  }
}

bool SpdkApp::StopBlocking(int timeout_ms) {
  RequestStop();
  std::unique_lock<std::mutex> lock(g_mu);
  if (g_state == AppState::kNever) return true;
  const bool done = g_cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [] { return g_state == AppState::kExited; });
  lock.unlock();
  if (done) Join();
  return done;
}

void SpdkApp::Join() {
  if (g_thread.joinable() && g_thread.get_id() != std::this_thread::get_id()) g_thread.join();
}

AppState SpdkApp::State() {
  std::lock_guard<std::mutex> lock(g_mu);
  return g_state;
}

void SpdkApp::FreeIfUsable(void* p) {
  // Under the lock: the native thread clears g_memory_usable under it before spdk_app_fini.
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_memory_usable) spdk_free(p);
}

}  // namespace spdk_node::libspdk

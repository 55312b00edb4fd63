#include "log.h"

#include <atomic>
#include <cstdio>
#include <deque>
#include <mutex>

namespace spdk_node::libspdk {

namespace {

constexpr size_t kKeep = 16;  // recent warnings/errors kept for error messages

std::atomic<int> g_print_level{SPDK_LOG_WARN};
std::mutex g_mu;
std::deque<std::string> g_recent;

const char* LevelName(int level) {
  switch (level) {
    case SPDK_LOG_ERROR: return "ERROR";
    case SPDK_LOG_WARN: return "WARNING";
    case SPDK_LOG_NOTICE: return "NOTICE";
    case SPDK_LOG_INFO: return "INFO";
    default: return "DEBUG";
  }
}

}  // namespace

void LogLine(int level, const char* file, const int line, const char* func, const char* format, va_list args) {
  const bool print = level <= g_print_level.load(std::memory_order_relaxed);
  const bool keep = level <= SPDK_LOG_WARN;
  if (!print && !keep) return;
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), format, args);
  std::string msg(buf, n < 0 ? 0 : std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  if (print) {
    // One fprintf per line, so lines from several reactors do not interleave mid-line.
    if (file != nullptr) {
      fprintf(stderr, "[spdk] %s:%d:%s: *%s*: %s\n", file, line, func, LevelName(level), msg.c_str());
    } else {
      fprintf(stderr, "[spdk] %s\n", msg.c_str());
    }
  }
  if (keep) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_recent.push_back(msg);
    if (g_recent.size() > kKeep) g_recent.pop_front();
  }
}

void SetPrintLevel(spdk_log_level level) { g_print_level.store(level, std::memory_order_relaxed); }

std::string RecentErrors() {
  std::lock_guard<std::mutex> lock(g_mu);
  std::string out;
  for (const std::string& l : g_recent) {
    if (!out.empty()) out += '\n';
    out += l;
  }
  return out;
}

void ClearRecent() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_recent.clear();
}

}  // namespace spdk_node::libspdk

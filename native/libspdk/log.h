// SPDK's log inside a Node process.
//
// SPDK hands every log line to the callback given in spdk_app_opts.log (and then neither prints
// nor sends it to syslog itself), so the levels are applied here: lines at or above the print
// level go to stderr, as SPDK's own apps print them; warnings and errors are also kept (the last
// few) so that a failed start can say why in its SpdkError. Any thread (reactors log).
#pragma once

#include <spdk/log.h>

#include <cstdarg>
#include <string>

namespace spdk_node::libspdk {

// The spdk_app_opts.log callback.
void LogLine(int level, const char* file, const int line, const char* func, const char* format, va_list args);
// Lines of level <= print_level reach stderr (SPDK_LOG_DISABLED = none).
void SetPrintLevel(spdk_log_level level);
// The errors (and warnings) logged since the last ClearRecent(), oldest first, one per line.
std::string RecentErrors();
void ClearRecent();

}  // namespace spdk_node::libspdk

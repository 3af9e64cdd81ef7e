// --bar: a progress bar with ETA on a terminal, plain progress lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace pools_run {

/// The text of the bar (without '\r'), `width` columns wide at most:
/// "[#####.....]  50% 5/10 done, 1 failed, 2 running, ETA 0:03".
/// ETA is unknown ("?") until a job finished.
std::string progress_line(std::uint64_t done, std::uint64_t failed, std::uint64_t running,
                          std::uint64_t total, std::chrono::nanoseconds elapsed,
                          std::size_t width, bool with_bar);

/// "0:07", "1:02:03".
std::string format_duration(std::chrono::nanoseconds d);

/// Draws the progress on a FILE (stderr). On a terminal the line is redrawn in
/// place and clear() removes it before other output is written; otherwise a
/// plain line is printed at most once a second, and at the end.
class Progress {
public:
  Progress(bool enabled, std::uint64_t total, std::FILE* out);

  void update(std::uint64_t done, std::uint64_t failed, std::uint64_t running);
  /// Removes the bar from the terminal (no-op otherwise) before other output.
  void clear();
  /// Redraws the bar after other output (terminal only).
  void redraw();
  /// The final state: a last line, and a newline on a terminal.
  void finish();

private:
  void draw(bool force);
  bool enabled_;
  bool tty_;
  std::uint64_t total_;
  std::FILE* out_;
  std::uint64_t done_ = 0, failed_ = 0, running_ = 0;
  std::chrono::steady_clock::time_point start_, last_plain_{};
  bool shown_ = false;
};

}  // namespace pools_run

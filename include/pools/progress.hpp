// The progress display that pools-run, pools-thumbs and the ProgressBar observer
// share: a bar with ETA redrawn in place on a terminal, plain lines otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace pools {

/// The text of the bar (without '\r'), `width` columns wide at most:
/// "[#####.....]  50% 5/10 done, 1 failed, 2 running, ETA 0:03". Without the
/// bar, only the text after it. ETA is unknown ("?") until a task finished.
std::string progress_line(std::uint64_t done, std::uint64_t failed, std::uint64_t running,
                          std::uint64_t total, std::chrono::nanoseconds elapsed,
                          std::size_t width, bool with_bar);

/// "0:07", "1:02:03".
std::string format_duration(std::chrono::nanoseconds d);

/// Draws progress on a FILE (stderr). On a terminal the line is redrawn in
/// place and clear() removes it before other output is written; otherwise a
/// plain line "LABEL: 40% 4/10 done, ..." is printed at most once a second,
/// and at finish(). Disabled: draws nothing. Not thread-safe: one thread
/// draws (the ProgressBar observer locks around it).
class ProgressView {
public:
  /// label: the prefix of plain lines (none when empty).
  ProgressView(std::string label, bool enabled, std::uint64_t total, std::FILE* out);

  void set_total(std::uint64_t total) noexcept { total_ = total; }
  void update(std::uint64_t done, std::uint64_t failed, std::uint64_t running);
  /// Removes the bar from the terminal (no-op otherwise) before other output.
  void clear();
  /// Redraws the bar after other output (terminal only).
  void redraw();
  /// The final state: a last line, and a newline on a terminal.
  void finish();
  /// True when drawing on a terminal (redrawn in place).
  bool on_terminal() const noexcept { return tty_; }

private:
  void draw(bool force);
  std::string label_;
  bool enabled_;
  bool tty_;
  std::uint64_t total_;
  std::FILE* out_;
  std::uint64_t done_ = 0, failed_ = 0, running_ = 0;
  std::chrono::steady_clock::time_point start_, last_plain_{};
  bool shown_ = false;
};

}  // namespace pools

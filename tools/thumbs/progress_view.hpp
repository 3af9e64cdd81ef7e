// Progress on stderr for pools-thumbs: pools-run's progress line, drawn by a
// small local drawer (pools_run::Progress prints "pools-run:" in its plain lines).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>

namespace pools_thumbs {

/// On a terminal, a bar with ETA redrawn in place; otherwise a plain
/// "pools-thumbs: 40% 4/10 done, ..." line at most once a second, and one at
/// the end. Disabled: draws nothing. Not thread-safe (the runner's thread).
class ProgressView {
public:
  ProgressView(bool enabled, std::uint64_t total, std::FILE* out);
  void update(std::uint64_t done, std::uint64_t failed, std::uint64_t running);
  /// The last state; ends the terminal line.
  void finish();

private:
  void draw(bool force);
  bool enabled_, tty_;
  std::uint64_t total_, done_ = 0, failed_ = 0, running_ = 0;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_, last_plain_{};
};

}  // namespace pools_thumbs

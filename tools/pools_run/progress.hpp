// --bar: a progress bar with ETA on a terminal, plain "pools-run: ..." lines
// otherwise; drawn by the library's pools::ProgressView (pools/progress.hpp).
#pragma once

#include <cstdint>
#include <cstdio>

#include <pools/progress.hpp>

namespace pools_run {

using pools::format_duration;
using pools::progress_line;

/// pools-run's progress: the library's view with the "pools-run" label.
class Progress : public pools::ProgressView {
public:
  Progress(bool enabled, std::uint64_t total, std::FILE* out)
      : pools::ProgressView("pools-run", enabled, total, out) {}
};

}  // namespace pools_run

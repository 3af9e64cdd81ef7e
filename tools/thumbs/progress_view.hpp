// Progress on stderr for pools-thumbs: the library's progress display
// (pools/progress.hpp) with the "pools-thumbs" label.
#pragma once

#include <cstdint>
#include <cstdio>

#include <pools/progress.hpp>

namespace pools_thumbs {

/// On a terminal, a bar with ETA redrawn in place; otherwise a plain
/// "pools-thumbs: 40% 4/10 done, ..." line at most once a second, and one at
/// the end. Disabled: draws nothing. Not thread-safe (the runner's thread).
class ProgressView : public pools::ProgressView {
public:
  ProgressView(bool enabled, std::uint64_t total, std::FILE* out)
      : pools::ProgressView("pools-thumbs", enabled, total, out) {}
};

}  // namespace pools_thumbs

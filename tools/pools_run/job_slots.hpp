// Job slot numbers, as GNU parallel's {%} and $PARALLEL_JOBSLOT: shared by a
// local run and --worker, which both hand a job to the pool only when one of
// their slots is free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace pools_run {

/// From 1 to the number of jobs at once, never the same for two running
/// jobs, the lowest free one first.
class JobSlots {
public:
  std::size_t take() {
    auto free = std::find(busy_.begin(), busy_.end(), false);
    if (free == busy_.end()) free = busy_.insert(busy_.end(), false);
    *free = true;
    return static_cast<std::size_t>(free - busy_.begin()) + 1;
  }
  /// Frees `slot`; 0 (no slot) and numbers never handed out are ignored.
  void give_back(std::size_t slot) noexcept {
    if (slot >= 1 && slot <= busy_.size()) busy_[slot - 1] = false;
  }

private:
  std::vector<bool> busy_;
};

}  // namespace pools_run

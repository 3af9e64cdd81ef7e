// The hook through which a waiting pool thread runs its pool's work instead of
// sleeping, so nested waits never deadlock.
#pragma once

#include <cstdint>

#include <pools/detail/task_state.hpp>

namespace pools::detail {

class Helper {
public:
  /// Runs queued work of the thread's pool until s is final or the deadline
  /// (now_ns() clock; < 0: none) passed. True when s is final.
  virtual bool help_until_final(TaskState* s, std::int64_t deadline_ns) noexcept = 0;
  /// Runs one queued task of the thread's pool, if there is one.
  virtual bool run_one() noexcept = 0;

protected:
  ~Helper() = default;
};

/// The calling thread's helper: set on pool threads, null elsewhere.
Helper*& current_helper() noexcept;

/// Blocks without helping until s is final or the deadline passed.
bool block_until_final(TaskState* s, std::int64_t deadline_ns) noexcept;

}  // namespace pools::detail

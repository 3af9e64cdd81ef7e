// The exceptions that pools raises itself; every one derives from pools::Error.
#pragma once

#include <stdexcept>
#include <string>

namespace pools {

/// Base of every error the library raises itself (bad arguments, a closed pool,
/// a cancelled task, ...). A task's own exception is rethrown as it was thrown,
/// not wrapped, by the thread and serial pools.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Thrown by wait()/wait_return() of a task that was cancelled before it started.
class Cancelled : public Error {
public:
  using Error::Error;
};

}  // namespace pools

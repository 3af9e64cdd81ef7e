// The receiving side of include/pools/detail/remote_call.hpp: finding the
// invoker and verifying the function a call names.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <pools/detail/remote_call.hpp>

namespace pools::wire {

/// What a worker runs for a call: the invoker and the verified function.
struct ResolvedCall {
  detail::InvokeFn invoke = nullptr;
  void* fn = nullptr;           // the plain function, or null
  std::string_view args;        // the encoded callable and arguments
};

/// Checks a call payload's identity against this process: the invoker must be
/// registered, and a plain function must lie in an executable segment of the
/// module it names, with the same first code bytes. Throws pools::Error saying
/// what could not be verified.
ResolvedCall resolve_call(std::string_view payload);

/// The identity of this executable (its GNU build-id, or else a hash of its
/// path, size and modification time): processes that compare equal run the
/// same code.
std::string executable_identity();

/// The demangled type of the exception being handled (in a catch block).
std::string current_exception_type();

}  // namespace pools::wire

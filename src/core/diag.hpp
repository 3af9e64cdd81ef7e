// Diagnostics: the POOLS_DIAG lifecycle log and the reporting of lost failures.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include <fmt/core.h>

namespace pools::detail {

/// True when POOLS_DIAG is set to a non-empty value other than "0".
bool diag_enabled() noexcept;

/// Writes "pools: <message>\n" to stderr in one write. Never throws.
void write_line(std::string_view message) noexcept;

/// Logs a lifecycle event when POOLS_DIAG is on. Never throws.
template <class... Args>
void diag(fmt::format_string<Args...> format, Args&&... args) noexcept {
  if (!diag_enabled()) return;
  try {
    write_line(fmt::format(format, std::forward<Args>(args)...));
  } catch (...) {
  }
}

/// "TypeName: what()" for an exception, with the demangled type name.
std::string describe_exception(const std::exception_ptr& e) noexcept;

}  // namespace pools::detail

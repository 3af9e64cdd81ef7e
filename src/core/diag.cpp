// POOLS_DIAG logging and exception descriptions.
#include "core/diag.hpp"

#include <cstdlib>
#include <cxxabi.h>
#include <memory>
#include <typeinfo>
#include <unistd.h>

namespace pools::detail {

bool diag_enabled() noexcept {
  static const bool enabled = [] {
    const char* v = std::getenv("POOLS_DIAG");
    return v && *v && std::string_view(v) != "0";
  }();
  return enabled;
}

void write_line(std::string_view message) noexcept {
  std::string line;
  try {
    line.reserve(message.size() + 8);
    line.append("pools: ").append(message).push_back('\n');
  } catch (...) {
    return;
  }
  // One write() so lines from several threads do not interleave.
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

static std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

std::string describe_exception(const std::exception_ptr& e) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      return fmt::format("{}: {}", demangle(typeid(ex).name()), ex.what());
    } catch (...) {
      const std::type_info* t = abi::__cxa_current_exception_type();
      return fmt::format("exception of type {}", t ? demangle(t->name()) : std::string("unknown"));
    }
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace pools::detail

#include "process/program_path.hpp"

#include <sys/stat.h>
#include <unistd.h>

namespace pools::detail {

std::string search_path(std::string_view name, std::string_view path, bool* denied) {
  if (denied) *denied = false;
  if (name.find('/') != std::string_view::npos) return std::string(name);
  for (;;) {
    const std::size_t colon = path.find(':');
    const std::string_view dir = path.substr(0, colon);
    std::string candidate(dir.empty() ? std::string_view(".") : dir);
    candidate += '/';
    candidate += name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
      if (denied) *denied = true;  // execvp goes on past EACCES, and so do we
    }
    if (colon == std::string_view::npos) return {};
    path.remove_prefix(colon + 1);
  }
}

}  // namespace pools::detail

#include "quote.hpp"

namespace pools_run {

namespace {
bool is_safe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.' || c == '+' || c == '/';
}
}  // namespace

std::string shell_quote(std::string_view value) {
  if (value.empty()) return "''";
  bool safe = true;
  for (char c : value) safe = safe && is_safe(c);
  if (safe) return std::string(value);

  // '...' around everything, each ' as '"'"'; then drop the empty '' that a
  // leading or trailing quote leaves behind, as parallel does.
  std::string out = "'";
  for (char c : value) {
    if (c == '\'')
      out += "'\"'\"'";
    else
      out += c;
  }
  out += '\'';
  if (out.compare(0, 2, "''") == 0) out.erase(0, 2);
  if (out.size() >= 2 && out.compare(out.size() - 2, 2, "''") == 0) out.erase(out.size() - 2);
  return out;
}

}  // namespace pools_run

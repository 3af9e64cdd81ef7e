#include "quote.hpp"

#include "process/program_path.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

namespace pools_run {

namespace {
bool is_safe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_' || c == '.' || c == '+' || c == '/';
}

// Characters that /bin/sh takes literally inside a word.
bool is_plain(char c) { return is_safe(c) || c == ',' || c == ':' || c == '@' || c == '%' || c == '='; }

// dash's builtins and reserved words: the shell runs these itself.
bool is_shell_word(std::string_view w) {
  static constexpr std::array<std::string_view, 46> words{
      ".", ":", "[", "alias", "bg", "break", "cd", "chdir", "command", "continue", "echo",
      "eval", "exec", "exit", "export", "false", "fc", "fg", "getopts", "hash", "jobs", "kill",
      "local", "printf", "pwd", "read", "readonly", "return", "set", "shift", "test", "times",
      "trap", "true", "type", "ulimit", "umask", "unalias", "unset", "wait",
      // reserved words that can start a command
      "if", "case", "for", "while", "until", "function"};
  return std::find(words.begin(), words.end(), w) != words.end();
}

// An executable regular file that execve runs as it is (ELF or #!).
bool directly_executable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(path.c_str(), X_OK) != 0)
    return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char head[4] = {};
  const ssize_t n = ::read(fd, head, sizeof head);
  ::close(fd);
  return (n >= 2 && head[0] == '#' && head[1] == '!') ||
         (n == 4 && head[0] == '\x7f' && head[1] == 'E' && head[2] == 'L' && head[3] == 'F');
}

// The first match on PATH is what the shell would run; whether it can is decided there.
bool found_and_executable(const std::string& program) {
  const char* path = std::getenv("PATH");
  const std::string file = pools::detail::search_path(program, path ? path : "/bin:/usr/bin");
  return !file.empty() && directly_executable(file);
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

bool runs_without_shell(const std::string& program) {
  // Remembered: pools-run runs thousands of commands with few programs, and
  // nothing it does changes PATH or the files on it meanwhile.
  static std::mutex mutex;
  static std::unordered_map<std::string, bool> known;
  std::lock_guard lock(mutex);
  if (auto it = known.find(program); it != known.end()) return it->second;
  const bool yes = !is_shell_word(program) && found_and_executable(program);
  if (known.size() < 4096) known.emplace(program, yes);
  return yes;
}

std::vector<std::string> words_without_shell(std::string_view command) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < command.size()) {
    const char c = command[i];
    if (c == ' ' || c == '\t') {
      ++i;
      continue;
    }
    const std::size_t start = i;
    while (i < command.size() && command[i] != ' ' && command[i] != '\t') {
      if (!is_plain(command[i])) return {};
      ++i;
    }
    words.emplace_back(command.substr(start, i - start));
  }
  if (words.empty() || words[0].find('=') != std::string::npos || !runs_without_shell(words[0]))
    return {};
  return words;
}

}  // namespace pools_run

// Where a program name leads on PATH, as execvp looks: shared by the process
// engine (which runs it) and pools-run (which decides whether a command needs
// the shell).
#pragma once

#include <string>
#include <string_view>

namespace pools::detail {

/// The file execvp would run for `name`: a name with a slash as it is; else
/// the first regular, executable file `dir/name` for the directories of
/// `path` (colon-separated; an empty entry is the current directory). Empty
/// when there is none; then `denied`, if given, says whether a regular file of
/// that name was found but is not executable.
std::string search_path(std::string_view name, std::string_view path, bool* denied = nullptr);

}  // namespace pools::detail

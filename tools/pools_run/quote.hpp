// Shell quoting as GNU parallel does it, and commands that need no shell.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pools_run {

/// Quotes `value` for /bin/sh the way GNU parallel does: unchanged when it holds
/// only the characters -_.+/ letters and digits; otherwise in single quotes, a
/// single quote inside becoming '"'"'. The empty string becomes ''.
std::string shell_quote(std::string_view value);

/// The words of `command` when `/bin/sh -c command` would do nothing but split
/// it at blanks and execute its first word, found on PATH, with the others as
/// arguments; empty otherwise. Then running the words directly gives the same
/// result with one exec instead of two (the shell's, then the program's).
/// Nothing but letters, digits, blanks and -_.+/,:@%= (no '=' in the first
/// word: an assignment); the first word no builtin or keyword of the shell,
/// and an executable file on PATH that the kernel can exec itself (an ELF
/// binary or a #! script: the shell would run any other file as a script).
std::vector<std::string> words_without_shell(std::string_view command);

/// The test words_without_shell makes of a program name (remembered per name).
bool runs_without_shell(const std::string& program);

}  // namespace pools_run

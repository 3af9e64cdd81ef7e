// The command template: replacement strings and how a job's command is built.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pools_run {

/// A template that cannot be used (an unterminated quote, a bad replacement string).
class TemplateError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// What a replacement string does to the value it stands for.
enum class Transform {
  none,           // {}   the value
  no_extension,   // {.}  without its extension
  basename,       // {/}  without its directory
  dirname,        // {//} its directory
  basename_no_ext // {/.} without directory and extension
};

/// Applies a transform to one value, as GNU parallel does.
std::string apply_transform(Transform t, std::string_view value);

/// A parsed command template: literal text and replacement strings
/// ({} {.} {/} {//} {/.}, the same with a column number {1} {2.} ..., {#}
/// and {%}).
class CommandTemplate {
public:
  /// Parses `text` (the command words joined by spaces). Empty text: each
  /// job's arguments, joined by spaces, are the whole command (unquoted).
  /// Throws TemplateError for an unterminated ' or " quote or a trailing \.
  explicit CommandTemplate(std::string text);

  /// The command of job number `seq` with these arguments (columns). Every
  /// substituted value is shell-quoted; a column that does not exist is empty.
  /// A template without replacement strings gets the quoted arguments appended.
  /// `slot` is the job slot {%} stands for (see JobSlots).
  std::string render(const std::vector<std::string>& args, std::uint64_t seq, std::size_t slot = 0) const;

  /// The template as a plain value, not a command (--group): substituted
  /// values are not quoted and nothing is appended.
  std::string render_value(const std::vector<std::string>& args, std::uint64_t seq) const;

  bool empty() const noexcept { return text_.empty(); }
  bool has_replacements() const noexcept { return has_replacements_; }
  /// Whether it has {%}: its command is known only when the job starts.
  bool uses_slot() const noexcept { return uses_slot_; }
  const std::string& text() const noexcept { return text_; }

private:
  std::string render_parts(const std::vector<std::string>& args, std::uint64_t seq, std::size_t slot,
                           bool quote) const;

  struct Part {
    enum Kind { literal, all_args, one_column, job_number, job_slot } kind = literal;
    std::string text;      // literal
    std::size_t column = 0;  // 1-based, for Kind::column
    Transform transform = Transform::none;
  };
  std::string text_;
  std::vector<Part> parts_;
  bool has_replacements_ = false;
  bool uses_slot_ = false;
};

/// Checks that `text` has no unterminated ' or " quote and does not end in a
/// lone backslash, following /bin/sh's rules. Throws TemplateError otherwise.
void check_shell_quotes(std::string_view text);

}  // namespace pools_run

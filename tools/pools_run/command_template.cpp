#include "command_template.hpp"

#include <optional>

#include "quote.hpp"

namespace pools_run {

std::string apply_transform(Transform t, std::string_view value) {
  auto strip_dir = [](std::string_view v) {
    auto slash = v.rfind('/');
    return slash == std::string_view::npos ? v : v.substr(slash + 1);
  };
  // GNU parallel removes an extension only when the dot follows the last slash
  // and is not the first character of the file name.
  auto strip_ext = [](std::string_view v) {
    auto slash = v.rfind('/');
    auto name_start = slash == std::string_view::npos ? 0 : slash + 1;
    auto dot = v.rfind('.');
    if (dot == std::string_view::npos || dot <= name_start) return v;
    return v.substr(0, dot);
  };
  switch (t) {
    case Transform::none: return std::string(value);
    case Transform::no_extension: return std::string(strip_ext(value));
    case Transform::basename: return std::string(strip_dir(value));
    case Transform::basename_no_ext: return std::string(strip_ext(strip_dir(value)));
    case Transform::dirname: {
      auto slash = value.rfind('/');
      if (slash == std::string_view::npos) return ".";
      if (slash == 0) return "/";
      return std::string(value.substr(0, slash));
    }
  }
  return std::string(value);
}

void check_shell_quotes(std::string_view text) {
  char open = 0;  // the quote we are inside, if any
  std::size_t open_at = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (open == '\'') {
      if (c == '\'') open = 0;
    } else if (c == '\\') {
      if (i + 1 == text.size())
        throw TemplateError("the command template ends in a lone backslash: " + std::string(text));
      ++i;  // escapes the next character (outside quotes and inside "...")
    } else if (open == '"') {
      if (c == '"') open = 0;
    } else if (c == '\'' || c == '"') {
      open = c;
      open_at = i;
    }
  }
  if (open)
    throw TemplateError(std::string("unterminated ") + open + " quote (opened at character " +
                        std::to_string(open_at + 1) + ") in the command template: " +
                        std::string(text));
}

namespace {

std::optional<Transform> parse_transform(std::string_view s) {
  if (s.empty()) return Transform::none;
  if (s == ".") return Transform::no_extension;
  if (s == "/") return Transform::basename;
  if (s == "//") return Transform::dirname;
  if (s == "/.") return Transform::basename_no_ext;
  return std::nullopt;
}

}  // namespace

CommandTemplate::CommandTemplate(std::string text) : text_(std::move(text)) {
  check_shell_quotes(text_);
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) parts_.push_back(Part{Part::literal, std::move(literal), 0, Transform::none});
    literal.clear();
  };
  for (std::size_t i = 0; i < text_.size();) {
    if (text_[i] == '{') {
      auto close = text_.find('}', i + 1);
      if (close != std::string::npos) {
        std::string_view inner(text_.data() + i + 1, close - i - 1);
        std::optional<Part> part;
        if (inner == "#") {
          part = Part{Part::job_number, {}, 0, Transform::none};
        } else if (inner == "%") {
          part = Part{Part::job_slot, {}, 0, Transform::none};
          uses_slot_ = true;
        } else {
          std::size_t digits = 0;
          while (digits < inner.size() && inner[digits] >= '0' && inner[digits] <= '9') ++digits;
          if (auto t = parse_transform(inner.substr(digits))) {
            if (digits == 0) {
              part = Part{Part::all_args, {}, 0, *t};
            } else if (digits <= 6) {
              auto column = std::stoul(std::string(inner.substr(0, digits)));
              if (column > 0) part = Part{Part::one_column, {}, column, *t};
            }
          }
        }
        if (part) {
          flush();
          parts_.push_back(std::move(*part));
          has_replacements_ = true;
          i = close + 1;
          continue;
        }
      }
    }
    literal += text_[i++];
  }
  flush();
}

std::string CommandTemplate::render(const std::vector<std::string>& args, std::uint64_t seq,
                                    std::size_t slot) const {
  return render_parts(args, seq, slot, true);
}

std::string CommandTemplate::render_value(const std::vector<std::string>& args,
                                          std::uint64_t seq) const {
  return render_parts(args, seq, 0, false);
}

std::string CommandTemplate::render_parts(const std::vector<std::string>& args, std::uint64_t seq,
                                          std::size_t slot, bool quote_values) const {
  auto joined = [&](Transform t, bool quote) {
    std::string out;
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (i) out += ' ';
      auto v = apply_transform(t, args[i]);
      out += quote ? shell_quote(v) : v;
    }
    return out;
  };
  if (text_.empty()) return joined(Transform::none, false);

  std::string out;
  for (const Part& p : parts_) {
    switch (p.kind) {
      case Part::literal: out += p.text; break;
      case Part::job_number: out += std::to_string(seq); break;
      case Part::job_slot: out += std::to_string(slot); break;
      case Part::all_args: out += joined(p.transform, quote_values); break;
      case Part::one_column:
        if (p.column <= args.size()) {
          auto v = apply_transform(p.transform, args[p.column - 1]);
          out += quote_values ? shell_quote(v) : v;
        }
        break;
    }
  }
  if (quote_values && !has_replacements_ && !args.empty()) out += ' ' + joined(Transform::none, true);
  return out;
}

}  // namespace pools_run

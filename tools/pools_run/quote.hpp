// Shell quoting as GNU parallel does it.
#pragma once

#include <string>
#include <string_view>

namespace pools_run {

/// Quotes `value` for /bin/sh the way GNU parallel does: unchanged when it holds
/// only the characters -_.+/ letters and digits; otherwise in single quotes, a
/// single quote inside becoming '"'"'. The empty string becomes ''.
std::string shell_quote(std::string_view value);

}  // namespace pools_run

#include "halt.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace pools_run {

namespace {

bool parse_number(std::string_view s, double& out, bool& percent) {
  percent = !s.empty() && s.back() == '%';
  if (percent) s.remove_suffix(1);
  if (s.empty() || s.size() > 30) return false;
  std::string str(s);
  char* end = nullptr;
  out = std::strtod(str.c_str(), &end);
  return end == str.c_str() + str.size() && out >= 0 && std::isfinite(out) &&
         (!percent || out <= 100);
}

}  // namespace

HaltPolicy HaltPolicy::parse(std::string_view text) {
  const std::string bad = "--halt " + std::string(text) +
                          ": expected never, now,fail=N, soon,fail=N, now,success=N, "
                          "soon,success=N, now,done=N or soon,done=N (N may be a percentage: 10%)";
  HaltPolicy p;
  // The old numeric forms.
  if (text == "0" || text == "never") return p;
  if (text == "1") return {When::soon, Why::fail, 1, false};
  if (text == "2") return {When::now, Why::fail, 1, false};
  if (text == "-1") return {When::soon, Why::success, 1, false};
  if (text == "-2") return {When::now, Why::success, 1, false};
  if (text.find(',') == std::string_view::npos) {
    if (!text.empty() && text.back() == '%' && parse_number(text, p.threshold, p.percent) &&
        p.threshold > 0 && p.threshold < 100) {
      p.when = When::soon;
      return p;
    }
    throw HaltError(bad);
  }
  auto comma = text.find(',');
  auto when = text.substr(0, comma);
  auto rest = text.substr(comma + 1);
  auto eq = rest.find('=');
  if (eq == std::string_view::npos) throw HaltError(bad);
  auto why = rest.substr(0, eq);
  if (when == "now") p.when = When::now;
  else if (when == "soon") p.when = When::soon;
  else throw HaltError(bad);
  if (why == "fail") p.why = Why::fail;
  else if (why == "success") p.why = Why::success;
  else if (why == "done") p.why = Why::done;
  else throw HaltError(bad);
  if (!parse_number(rest.substr(eq + 1), p.threshold, p.percent) || p.threshold <= 0)
    throw HaltError(bad);
  return p;
}

bool HaltPolicy::triggered(std::uint64_t succeeded, std::uint64_t failed,
                           std::uint64_t total) const {
  if (when == When::never) return false;
  double count = why == Why::fail ? double(failed)
                 : why == Why::success ? double(succeeded)
                                       : double(succeeded + failed);
  if (count == 0) return false;
  if (percent) return total > 0 && count * 100.0 >= threshold * double(total);
  return count >= threshold;
}

std::string_view HaltPolicy::why_name() const noexcept {
  switch (why) {
    case Why::fail: return "fail";
    case Why::success: return "success";
    case Why::done: return "done";
  }
  return "fail";
}

int exit_status(const HaltPolicy& policy, const Outcome& o) {
  if (o.halted && policy.why == HaltPolicy::Why::success) return 0;
  if (o.failed == 0) return 0;
  bool on_fail = policy.when != HaltPolicy::When::never && policy.why == HaltPolicy::Why::fail;
  if (on_fail && policy.percent) {  // halted or not, as GNU parallel
    double pct = 100.0 * double(o.failed) / double(std::max<std::uint64_t>(o.total, 1));
    return std::clamp(static_cast<int>(std::lround(pct)), 1, 100);
  }
  if (on_fail && o.halted && policy.threshold == 1 && o.halting_exit && *o.halting_exit > 0 &&
      *o.halting_exit < 255)
    return *o.halting_exit;
  return o.failed > 100 ? 101 : static_cast<int>(o.failed);
}

}  // namespace pools_run

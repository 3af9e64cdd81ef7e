#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace pools_run {

std::string format_duration(std::chrono::nanoseconds d) {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 0) s = 0;
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string progress_line(std::uint64_t done, std::uint64_t failed, std::uint64_t running,
                          std::uint64_t total, std::chrono::nanoseconds elapsed,
                          std::size_t width, bool with_bar) {
  unsigned pct = total ? static_cast<unsigned>(done * 100 / total) : 100;
  std::string eta = "?";
  if (done >= total) eta = "0:00";
  else if (done > 0) eta = format_duration(elapsed / done * (total - done));
  std::string text = fmt::format("{:3}% {}/{} done", pct, done, total);
  if (failed) text += fmt::format(", {} failed", failed);
  text += fmt::format(", {} running, ETA {}", running, eta);
  if (!with_bar) return text;
  std::size_t bar = width > text.size() + 12 ? std::min<std::size_t>(width - text.size() - 3, 40) : 0;
  if (bar < 5) return text.substr(0, width);
  std::size_t filled = total ? static_cast<std::size_t>(done * bar / total) : bar;
  return "[" + std::string(filled, '#') + std::string(bar - filled, '.') + "] " + text;
}

Progress::Progress(bool enabled, std::uint64_t total, std::FILE* out)
    : enabled_(enabled),
      tty_(enabled && isatty(fileno(out))),
      total_(total),
      out_(out),
      start_(std::chrono::steady_clock::now()) {}

void Progress::update(std::uint64_t done, std::uint64_t failed, std::uint64_t running) {
  done_ = done;
  failed_ = failed;
  running_ = running;
  draw(false);
}

void Progress::draw(bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    winsize ws{};
    std::size_t width = ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    auto line = progress_line(done_, failed_, running_, total_, now - start_, width - 1, true);
    fmt::print(out_, "\r{}\x1b[K", line);
    shown_ = true;
  } else if (force || now - last_plain_ >= std::chrono::seconds(1)) {
    last_plain_ = now;
    fmt::print(out_, "pools-run: {}\n", progress_line(done_, failed_, running_, total_, now - start_, 0, false));
  }
  std::fflush(out_);
}

void Progress::clear() {
  if (enabled_ && tty_ && shown_) {
    fmt::print(out_, "\r\x1b[K");
    std::fflush(out_);
    shown_ = false;
  }
}

void Progress::redraw() {
  if (tty_) draw(true);
}

void Progress::finish() {
  if (!enabled_) return;
  draw(true);
  if (tty_) fmt::print(out_, "\n");
  std::fflush(out_);
}

}  // namespace pools_run

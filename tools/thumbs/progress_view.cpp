#include "progress_view.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "progress.hpp"  // tools/pools_run: progress_line

namespace pools_thumbs {

ProgressView::ProgressView(bool enabled, std::uint64_t total, std::FILE* out)
    : enabled_(enabled),
      tty_(enabled && isatty(fileno(out))),
      total_(total),
      out_(out),
      start_(std::chrono::steady_clock::now()) {}

void ProgressView::update(std::uint64_t done, std::uint64_t failed, std::uint64_t running) {
  done_ = done;
  failed_ = failed;
  running_ = running;
  draw(false);
}

void ProgressView::finish() {
  if (!enabled_) return;
  draw(true);
  if (tty_) fmt::print(out_, "\n");
  std::fflush(out_);
}

void ProgressView::draw(bool force) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    winsize ws{};
    std::size_t width = ioctl(fileno(out_), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
    fmt::print(out_, "\r{}\x1b[K",
               pools_run::progress_line(done_, failed_, running_, total_, now - start_, width - 1, true));
  } else if (force || now - last_plain_ >= std::chrono::seconds(1)) {
    last_plain_ = now;
    fmt::print(out_, "pools-thumbs: {}\n",
               pools_run::progress_line(done_, failed_, running_, total_, now - start_, 0, false));
  }
  std::fflush(out_);
}

}  // namespace pools_thumbs

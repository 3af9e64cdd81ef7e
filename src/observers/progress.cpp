// The progress display (moved here from pools-run so that every tool and the
// ProgressBar observer draw the same line).
#include <pools/progress.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

namespace pools {

std::string format_duration(std::chrono::nanoseconds d) {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 0) s = 0;
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string progress_line(std::uint64_t done, std::uint64_t failed, std::uint64_t running,
                          std::uint64_t total, std::chrono::nanoseconds elapsed,
                          std::size_t width, bool with_bar) {
  unsigned pct = total ? static_cast<unsigned>(std::min(done, total) * 100 / total) : 100;
  std::string eta = "?";
  if (done >= total) eta = "0:00";
  else if (done > 0) eta = format_duration(elapsed / done * (total - done));
  std::string text = fmt::format("{:3}% {}/{} done", pct, done, total);
  if (failed) text += fmt::format(", {} failed", failed);
  text += fmt::format(", {} running, ETA {}", running, eta);
  if (!with_bar) return text;
  std::size_t bar = width > text.size() + 12 ? std::min<std::size_t>(width - text.size() - 3, 40) : 0;
  if (bar < 5) return text.substr(0, width);
  std::size_t filled = total ? static_cast<std::size_t>(std::min(done, total) * bar / total) : bar;
  return "[" + std::string(filled, '#') + std::string(bar - filled, '.') + "] " + text;
}

ProgressView::ProgressView(std::string label, bool enabled, std::uint64_t total, std::FILE* out)
    : label_(std::move(label)),
      enabled_(enabled),
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

void ProgressView::draw(bool force) {
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
    const std::string text = progress_line(done_, failed_, running_, total_, now - start_, 0, false);
    if (label_.empty()) {
      fmt::print(out_, "{}\n", text);
    } else {
      fmt::print(out_, "{}: {}\n", label_, text);
    }
  }
  std::fflush(out_);
}

void ProgressView::clear() {
  if (enabled_ && tty_ && shown_) {
    fmt::print(out_, "\r\x1b[K");
    std::fflush(out_);
    shown_ = false;
  }
}

void ProgressView::redraw() {
  if (tty_) draw(true);
}

void ProgressView::finish() {
  if (!enabled_) return;
  draw(true);
  if (tty_) fmt::print(out_, "\n");
  std::fflush(out_);
}

}  // namespace pools

// ---- the ProgressBar observer ------------------------------------------------------

#include <pools/observer.hpp>

namespace pools {

namespace {
// A terminal is redrawn at most this often: with a million tiny tasks, drawing
// on every event would cost more than the tasks.
constexpr auto redraw_interval = std::chrono::milliseconds(100);
}  // namespace

ProgressBar::ProgressBar(std::string label, std::uint64_t total, std::FILE* out)
    : view_(std::move(label), true, total, out), fixed_total_(total != 0), total_(total) {}

void ProgressBar::on_queued(const TaskEvent&) {
  std::lock_guard lock(mutex_);
  if (finished_ || fixed_total_) return;
  view_.set_total(++total_);
}

void ProgressBar::on_started(const TaskEvent&) {
  std::lock_guard lock(mutex_);
  if (finished_) return;
  ++running_;
}

void ProgressBar::on_finished(const TaskEvent& e) {
  std::lock_guard lock(mutex_);
  if (finished_) return;
  if (e.worker.kind != WorkerKind::none && running_ > 0) --running_;
  ++done_;
  if (e.outcome != TaskOutcome::succeeded) ++failed_;
  if (!fixed_total_ && done_ > total_) view_.set_total(total_ = done_);  // queued before we came
  const auto now = std::chrono::steady_clock::now();
  if (done_ == total_ || now - last_draw_ >= redraw_interval) {
    last_draw_ = now;
    view_.update(done_, failed_, running_);
  }
}

void ProgressBar::finish() {
  std::lock_guard lock(mutex_);
  if (finished_) return;
  finished_ = true;
  view_.update(done_, failed_, running_);
  view_.finish();
}

std::uint64_t ProgressBar::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

}  // namespace pools

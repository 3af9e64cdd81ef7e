#include "runner.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "thumbnail.hpp"

namespace fs = std::filesystem;

namespace pools_thumbs {

pools::PoolBase& thumbnail_pool(const std::string& kind, std::size_t workers) {
  const std::string name = "pools-thumbs-" + kind;  // one pool per kind: a program may use several
  if (kind == "multiprocess") {
    pools::MultiprocessOptions options;
    options.workers = workers;
    options.initializer = init_vips_in_worker;
    return pools::get_multiprocess_pool(name, options);
  }
  if (kind == "process") return pools::get_process_pool(name, workers);
  if (kind == "serial") return pools::get_serial_pool(name);
  return pools::get_thread_pool(name, workers);
}

std::string find_vips_program() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    auto candidate = fs::path(dir.empty() ? "." : dir) / "vips";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

namespace {

// The error lines of vips's stderr, joined with "; "; its warnings
// ("(vips:123): VIPS-WARNING **: error in tile 0 x 16") say nothing more.
std::string vips_errors(const std::string& stderr_text) {
  std::stringstream lines(stderr_text);
  std::string joined;
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && line.rfind("(vips:", 0) != 0) joined += (joined.empty() ? "" : "; ") + line;
  return joined;
}

/// `vips thumbnail` for one image: the same settings as make_thumbnail.
std::vector<std::string> vips_command(const std::string& program, const Image& image, const Settings& s) {
  std::string save_options = s.format == "png" ? "[strip]" : fmt::format("[Q={},strip]", s.quality);
  return {program,  "thumbnail",   image.input,   partial_path(image.output) + save_options,
          std::to_string(s.size), "--height", std::to_string(s.size), "--fail-on", "truncated"};
}

/// What a finished `vips thumbnail` command did, as make_thumbnail reports it.
ThumbResult command_result(const pools::ProcessTask& task, const Image& image) {
  ThumbResult r;
  r.input = image.input;
  r.output = image.output;
  std::string part = partial_path(image.output);
  try {
    const pools::ProcessResult& p = task.result();
    if (!p.succeeded()) {
      r.error = p.signal ? fmt::format("vips thumbnail was killed by signal {}", p.signal)
                         : fmt::format("vips thumbnail exited with status {}", p.exit_code);
      if (auto why = vips_errors(p.stderr_text); !why.empty()) r.error += ": " + why;
    } else if (std::error_code ec; fs::rename(part, image.output, ec), ec) {
      r.error = fmt::format("cannot write {}: {}", image.output, ec.message());
    } else if (auto size = image_size(image.output)) {
      std::tie(r.width, r.height) = *size;
      r.bytes = fs::file_size(image.output, ec);
    } else {
      r.error = "vips thumbnail wrote a file that is not an image";
    }
  } catch (const std::exception& e) {  // the command never ran
    r.error = e.what();
  }
  if (!r.ok()) {
    std::error_code ignored;
    fs::remove(part, ignored);
  }
  return r;
}

// One image on its way: a function task, or a command on the process pool.
struct InFlight {
  std::size_t index;
  pools::Task<ThumbResult> thumb;
  pools::ProcessTask command;
};

}  // namespace

Outcome make_thumbnails(pools::PoolBase& pool, const std::vector<Image>& images, const Settings& settings,
                        const OnProgress& on_progress, const std::string& vips_program) {
  auto start = std::chrono::steady_clock::now();
  const bool commands = pool.kind() == pools::PoolKind::process;
  Outcome out;
  std::vector<std::string> reasons(images.size());  // empty: succeeded
  std::size_t done = 0, failed = 0;
  auto finish = [&](std::size_t index, std::string reason) {
    ++done;
    if (reason.empty()) {
      ++out.succeeded;
    } else {
      ++failed;
      reasons[index] = std::move(reason);
    }
  };

  // Output directories, made once each; an image whose directory cannot be
  // made, or whose thumbnail would replace an input, fails without running.
  std::map<fs::path, std::string> dir_errors;
  std::set<fs::path> inputs;
  std::error_code ec;
  for (const auto& im : images) inputs.insert(fs::weakly_canonical(im.input, ec));
  std::vector<std::size_t> runnable;
  for (std::size_t i = 0; i < images.size(); ++i) {
    fs::path dir = fs::path(images[i].output).parent_path();
    auto [it, inserted] = dir_errors.try_emplace(dir);
    if (inserted && (fs::create_directories(dir, ec), ec))
      it->second = fmt::format("cannot create the output directory {}: {}", dir.string(), ec.message());
    if (!it->second.empty())
      finish(i, it->second);
    else if (inputs.count(fs::weakly_canonical(images[i].output, ec)))
      finish(i, "the thumbnail would overwrite an input image: " + images[i].output);
    else
      runnable.push_back(i);
  }

  // About four images per worker in flight: every worker stays busy, and the
  // handles and the pool's queue stay small however large the directory.
  const std::size_t window = std::max<std::size_t>(2, 4 * pool.num_workers());
  std::vector<InFlight> running;
  std::vector<pools::TaskBase> handles;  // the same tasks, for wait_any
  auto report = [&] {
    if (on_progress) on_progress(done, failed, std::min(running.size(), pool.num_workers()));
  };
  report();
  std::size_t next = 0;
  while (next < runnable.size() || !running.empty()) {
    while (next < runnable.size() && running.size() < window) {
      std::size_t i = runnable[next++];
      const Image& im = images[i];
      InFlight f{i, {}, {}};
      if (commands) {
        pools::ProcessOptions po;
        po.check = false;
        po.env = {{"VIPS_CONCURRENCY", "1"}};
        f.command = pool.add_process(im.relative, vips_command(vips_program, im, settings), po);
        handles.push_back(f.command);
      } else {
        f.thumb = pool.add_task(im.relative, make_thumbnail,
                                ThumbJob{im.input, im.output, settings.size, settings.format, settings.quality});
        handles.push_back(f.thumb);
      }
      running.push_back(std::move(f));
    }
    std::size_t k = pools::wait_any(handles);
    InFlight f = std::move(running[k]);
    running[k] = std::move(running.back());
    running.pop_back();
    handles[k] = std::move(handles.back());
    handles.pop_back();
    std::string reason;
    if (commands) {
      reason = command_result(f.command, images[f.index]).error;
    } else {
      try {
        reason = f.thumb.wait_return().error;
      } catch (const pools::WorkerLost& e) {  // the decoder crashed its worker
        reason = e.signal() ? fmt::format("its worker process {} died of signal {} ({})", e.pid(), e.signal(),
                                          strsignal(e.signal()))
                            : fmt::format("its worker process {} exited with status {}", e.pid(), e.exit_status());
      } catch (const std::exception& e) {
        reason = e.what();
      }
    }
    finish(f.index, std::move(reason));
    report();
  }
  for (std::size_t i = 0; i < images.size(); ++i)
    if (!reasons[i].empty()) out.failures.push_back({images[i].relative, reasons[i]});
  out.wall = std::chrono::steady_clock::now() - start;
  return out;
}

std::string summary_text(const std::string& pool_description, const Settings& settings, const Scan& scan,
                         const Outcome& outcome) {
  std::string s = fmt::format("pools-thumbs: {}, {} px {}\n", pool_description, settings.size, settings.format);
  s += fmt::format("images: {}\n", scan.images.size());
  s += fmt::format("succeeded: {}\n", outcome.succeeded);
  s += fmt::format("failed: {}\n", outcome.failures.size());
  for (const auto& f : outcome.failures) s += fmt::format("  {}: {}\n", f.relative, f.reason);
  s += fmt::format("skipped: {}\n", scan.skipped.size());
  double seconds = std::chrono::duration<double>(outcome.wall).count();
  s += fmt::format("wall time: {:.3f} s\n", seconds);
  double rate = seconds > 0 ? static_cast<double>(scan.images.size()) / seconds : 0.0;
  s += fmt::format("images per second: {:.1f}\n", rate);
  return s;
}

}  // namespace pools_thumbs

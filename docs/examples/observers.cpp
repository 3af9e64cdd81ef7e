// Observers: a progress bar, a JSON-lines event log and a summary over a pool's
// tasks, an observer of one's own, and results taken in completion order.
#include <pools/pools.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

int resize(int image) {
  if (image == 13) throw std::runtime_error("image 13 is corrupt");
  return image * 2;
}

// An observer of one's own: called on worker threads, so it only touches atomics.
struct SlowTasks : pools::Observer {
  std::atomic<int> over_1s{0};
  void on_finished(const pools::TaskEvent& e) override {
    if (e.duration > std::chrono::seconds(1)) ++over_1s;
  }
};

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("images", 2);

  const auto log_path = std::filesystem::temp_directory_path() / "pools-example-events.jsonl";
  auto bar = std::make_shared<pools::ProgressBar>("images");  // on stderr
  auto log = std::make_shared<pools::JsonLog>(log_path.string());
  auto summary = std::make_shared<pools::Summary>(/*slowest=*/3);
  auto slow = std::make_shared<SlowTasks>();
  for (std::shared_ptr<pools::Observer> o : {std::shared_ptr<pools::Observer>(bar),
                                             std::shared_ptr<pools::Observer>(log),
                                             std::shared_ptr<pools::Observer>(summary),
                                             std::shared_ptr<pools::Observer>(slow)})
    pool.add_observer(o);

  std::vector<pools::Task<int>> tasks;
  for (int image = 0; image < 20; ++image)
    tasks.push_back(pool.add_task("resize " + std::to_string(image), resize, image));

  // Results as they come, whatever order the tasks finish in.
  int total = 0, failed = 0;
  for (const auto& t : pools::as_completed(tasks)) {
    try {
      total += t.wait_return();
    } catch (const std::exception&) {
      ++failed;
    }
  }
  pool.wait_completion();
  bar->finish();  // the last progress line
  for (std::shared_ptr<pools::Observer> o : {std::shared_ptr<pools::Observer>(bar),
                                             std::shared_ptr<pools::Observer>(log),
                                             std::shared_ptr<pools::Observer>(summary),
                                             std::shared_ptr<pools::Observer>(slow)})
    pool.remove_observer(o);

  std::printf("total %d, %d failed\n", total, failed);
  std::printf("%s", summary->text().c_str());

  // One line per event: 20 queued, 20 started, 20 finished.
  std::ifstream in(log_path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  std::printf("event log: %d lines\n", lines);
  std::filesystem::remove(log_path);

  const auto r = summary->report();
  return total == 354 && failed == 1 && lines == 60 && r.succeeded == 19 && r.failed == 1 ? 0 : 1;
}

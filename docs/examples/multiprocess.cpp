// Functions in worker processes: plain functions and captureless lambdas with
// serializable arguments, a crash that fails one task only, a task's
// exception as pools::RemoteError, per-pool options and a chunked bulk call.
#include <pools/pools.hpp>

#include <unistd.h>

#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

// A user type crosses a process when it has a serialize function (cereal).
struct Tile {
  int x = 0, y = 0;
  std::vector<float> pixels;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(x, y, pixels);
  }
};

// Plain functions need no registration: every worker runs this executable.
float brightness(Tile t) {
  return std::accumulate(t.pixels.begin(), t.pixels.end(), 0.0f) /
         static_cast<float>(t.pixels.size());
}

int crash(int) {
  volatile int* p = nullptr;
  return *p;  // SIGSEGV in the worker, not in this program
}

int square(int x) { return x * x; }

int main(int argc, char** argv) {
  pools::init(argc, argv);  // first thing: starts the fork server (see the docs)

  pools::PoolBase& pool = pools::get_multiprocess_pool("tiles", 2);

  std::vector<pools::Task<float>> tasks;
  for (int i = 0; i < 8; ++i)
    tasks.push_back(pool.add_task("tile " + std::to_string(i), brightness,
                                  Tile{i, 0, std::vector<float>(1024, static_cast<float>(i))}));
  for (int i = 0; i < 8; ++i) std::printf("tile %d: %.1f\n", i, tasks[i].wait_return());

  // A captureless lambda travels too; the worker's pid shows where it ran.
  const int worker = pool.add_task("where", [] { return static_cast<int>(::getpid()); }).wait_return();
  std::printf("ran in process %d, not in %d\n", worker, static_cast<int>(::getpid()));

  // A task's exception comes back as pools::RemoteError.
  auto failing = pool.add_task("parse", [](std::string s) { return std::stoi(s); }, "not a number");
  try {
    failing.wait();
  } catch (const pools::RemoteError& e) {
    std::printf("RemoteError: %s threw '%s'\n", e.remote_type().c_str(), e.remote_what().c_str());
  }

  // A crash fails only the task that crashed; the worker is replaced.
  auto crashed = pool.add_task("crash", crash, 0);
  auto fine = pool.add_task("fine", square, 12);
  try {
    crashed.wait();
  } catch (const pools::WorkerLost& e) {
    std::printf("WorkerLost: signal %d\n", e.signal());
  }
  std::printf("the other task: %d\n", fine.wait_return());

  // What cannot cross a process is refused at once, naming the type.
  int local = 1;
  try {
    pool.add_task("captures", [local] { return local; });
  } catch (const pools::Error& e) {
    std::printf("refused: %s\n", e.what());
  }

  // Options: timeouts, recycling, hooks and environment are per pool.
  pools::MultiprocessOptions options;
  options.workers = 2;
  options.task_timeout = std::chrono::seconds(10);
  options.max_tasks_per_worker = 1000;
  options.environment = {{"OMP_NUM_THREADS", "1"}};
  pools::PoolBase& bulk = pools::get_multiprocess_pool("bulk", options);

  // Many small calls at once: add_tasks sends them in chunks.
  std::vector<int> inputs(10000);
  std::iota(inputs.begin(), inputs.end(), 0);
  auto squares = bulk.add_tasks("square", square, inputs);
  long long sum = 0;
  for (auto& t : squares) sum += t.wait_return();
  std::printf("sum of 10000 squares: %lld\n", sum);
}

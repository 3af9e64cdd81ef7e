// cancel() stops a task that has not started yet; its wait() throws pools::Cancelled.
#include <pools/pools.hpp>

#include <cstdio>
#include <future>

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("one worker", 1);

  // Keep the only worker busy until we say so.
  std::promise<void> started, release;
  auto busy = pool.add_task("busy", [&] {
    started.set_value();
    release.get_future().wait();
  });
  started.get_future().wait();

  auto queued = pool.add_task("queued", [] { return 1; });
  bool cancelled = queued.cancel();     // not started yet: true
  bool again = busy.cancel();           // already running: false, it runs on
  release.set_value();

  int problems = !cancelled + again;
  try {
    queued.wait_return();
    ++problems;
  } catch (const pools::Cancelled& e) {  // a pools::Error
    std::printf("pools::Cancelled: %s\n", e.what());
  }
  busy.wait();
  std::printf("queued: iscompleted=%d failed=%d\n", queued.iscompleted(), queued.failed());
  return problems == 0 ? 0 : 1;
}

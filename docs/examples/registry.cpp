// The registry: pools are found by name; bad requests throw pools::Error.
#include <pools/pools.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  pools::init(argc, argv);
  int problems = 0;
  auto expect = [&](bool ok, const char* what) {
    std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
    problems += !ok;
  };
  auto throws_error = [](auto&& f) {
    try {
      f();
    } catch (const pools::Error& e) {
      std::printf("      pools::Error: %s\n", e.what());
      return true;
    }
    return false;
  };

  pools::PoolBase& io = pools::get_thread_pool("io", 2);
  expect(&pools::get_thread_pool("io") == &io, "the same name returns the same pool");
  expect(&pools::get_thread_pool("io", 2) == &io, "... also with the same size");
  expect(io.name() == "io" && io.kind() == pools::PoolKind::thread, "name() and kind()");
  expect(&pools::get_thread_pool() == &pools::global_thread_pool(),
         "an empty name gives the global pool");
  expect(&pools::get_serial_pool() != &pools::get_serial_pool("debug"),
         "each kind has its global pool; named pools are separate");

  expect(&pools::find_pool("io") == &io, "find_pool looks a pool up without creating one");
  expect(throws_error([] { pools::find_pool("no such pool"); }),
         "find_pool of an unknown name throws");

  expect(throws_error([] { pools::get_serial_pool("io"); }),
         "a name already used by another kind throws");
  expect(throws_error([] { pools::get_thread_pool("io", 3); }),
         "a different explicit size for an existing pool throws");
  expect(throws_error([] { pools::get_thread_pool("zero", 0); }), "size 0 throws");
  expect(throws_error([] { pools::get_thread_pool("huge", 100000); }),
         "a size above 4096 throws");

  return problems == 0 ? 0 : 1;
}

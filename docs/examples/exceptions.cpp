// A task's exception comes back from wait()/wait_return() as it was thrown.
#include <pools/pools.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

struct ParseError : std::runtime_error {
  int line;
  ParseError(const std::string& what, int l) : std::runtime_error(what), line(l) {}
};

int parse(int line) {
  if (line == 7) throw ParseError("unexpected token", line);
  return line;
}

int main(int argc, char** argv) {
  pools::init(argc, argv);
  pools::PoolBase& pool = pools::get_thread_pool("parser", 2);
  int problems = 0;

  // wait_return() rethrows the very same exception type, with its data.
  auto bad = pool.add_task("parse line 7", parse, 7);
  try {
    bad.wait_return();
    ++problems;
  } catch (const ParseError& e) {
    std::printf("caught ParseError on line %d: %s\n", e.line, e.what());
  }

  // So does wait(), as often as it is called, also after wait_completion()
  // (which itself never throws a task's failure).
  pool.wait_completion();
  try {
    bad.wait();
    ++problems;
  } catch (const ParseError&) {
    std::printf("wait() after wait_completion() rethrows it too\n");
  }

  // Anything can be thrown, not only std::exception.
  auto odd = pool.add_task("throws an int", [] { throw 42; });
  try {
    odd.wait();
    ++problems;
  } catch (int value) {
    std::printf("caught int %d\n", value);
  }

  // iscompleted() and failed() never throw and never block.
  std::printf("iscompleted=%d failed=%d\n", bad.iscompleted(), bad.failed());
  return problems == 0 && bad.failed() ? 0 : 1;
}

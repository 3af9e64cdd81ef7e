// Commands in bulk on the process pool: stdout as the result, the exit status
// in result(), failures as pools::ProcessError, options per command.
#include <pools/pools.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  pools::init(argc, argv);

  // At most 4 commands run at once, started and watched by the pool's engine.
  pools::PoolBase& pool = pools::get_process_pool("commands", 4);

  // A string runs through /bin/sh -c; wait_return() is its stdout.
  std::vector<pools::ProcessTask> tasks;
  for (int i = 1; i <= 8; ++i)
    tasks.push_back(pool.add_process("square " + std::to_string(i),
                                     "echo $((" + std::to_string(i) + " * " +
                                         std::to_string(i) + "))"));
  int sum = 0;
  for (const auto& t : tasks) sum += std::stoi(t.wait_return());
  std::printf("sum of squares 1..8 = %d\n", sum);

  // A vector is an argv: no shell, so nothing in it is special.
  std::string literal = pool.add_process("literal", {"printf", "%s", "$HOME; echo $PATH"}).wait_return();
  std::printf("argv arrives literally: %s\n", literal.c_str());

  // A non-zero exit throws pools::ProcessError from wait() (check is on by default).
  try {
    pool.add_process("fails", "echo 'disk full' >&2; exit 3").wait();
  } catch (const pools::ProcessError& e) {
    std::printf("exit code %d, stderr '%s'\n", e.exit_code(), e.stderr_text().c_str());
  }

  // With check off, result() tells what happened; nothing throws.
  pools::ProcessOptions relaxed;
  relaxed.check = false;
  const pools::ProcessResult& r = pool.add_process("grep", "grep -q root /etc/passwd", relaxed).result();
  std::printf("grep exited %d after %.1f ms\n", r.exit_code,
              std::chrono::duration<double, std::milli>(r.elapsed).count());

  // stdin, environment, working directory, timeout and retries, per command.
  pools::ProcessOptions o;
  o.stdin_text = "b\na\nc\n";
  o.env = {{"LC_ALL", "C"}};
  o.cwd = "/tmp";
  o.timeout = std::chrono::seconds(30);
  o.retries = 2;
  std::printf("sorted: %s", pool.add_process("sort", {"sort"}, o).wait_return().c_str());

  // A command that runs too long is killed with its whole process group.
  pools::ProcessOptions quick;
  quick.timeout = std::chrono::milliseconds(200);
  try {
    pool.add_process("slow", "sleep 30 & wait", quick).wait();
  } catch (const pools::ProcessError& e) {
    std::printf("timed out: %s\n", e.timed_out() ? "yes" : "no");
  }

  // Every pool kind runs commands; the thread pool runs each on a worker.
  std::string on_thread = pools::global_thread_pool().add_process("uname", {"uname", "-s"}).wait_return();
  std::printf("on the thread pool: %s", on_thread.c_str());
  return sum == 204 && literal == "$HOME; echo $PATH" ? 0 : 1;
}

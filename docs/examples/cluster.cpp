// The cluster pool: pools::init first, then tasks on the worker ranks of an
// MPI job. Run it as `mpirun -np 3 ./example_cluster`: rank 0 runs main, ranks
// 1 and 2 serve. Started alone, the cluster pool is a multiprocess pool on
// this machine (said once on stderr), and the same code runs.
#include <pools/pools.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

// Plain functions need no registration: every rank runs this executable.
double integrate_slice(int slice, int slices) {
  // The midpoint rule for 4/(1+x^2) on [slice/slices, (slice+1)/slices].
  const int steps = 100000;
  const double a = double(slice) / slices, h = 1.0 / slices / steps;
  double sum = 0;
  for (int i = 0; i < steps; ++i) {
    const double x = a + (i + 0.5) * h;
    sum += 4.0 / (1.0 + x * x);
  }
  return sum * h;
}

int check_input(int x) {
  if (x < 0) throw std::invalid_argument("negative input " + std::to_string(x));
  return x;
}

int main(int argc, char** argv) {
  pools::init(argc, argv);  // worker ranks serve in here and never return

  for (const pools::ClusterNode& n : pools::cluster_nodes())
    std::printf("rank %d: %s, pid %d, %u cores\n", n.rank, n.host.c_str(), n.pid, n.cores);

  pools::PoolBase& pool = pools::global_cluster_pool();
  std::printf("%s pool with %zu workers\n", std::string(pools::to_string(pool.kind())).c_str(),
              pool.num_workers());

  // Dynamic load balancing: each slice goes to the rank with the least work.
  const int slices = 64;
  std::vector<pools::Task<double>> parts;
  for (int s = 0; s < slices; ++s) parts.push_back(pool.add_task("slice", integrate_slice, s, slices));
  double pi = 0;
  for (auto& p : parts) pi += p.wait_return();
  std::printf("pi = %.10f\n", pi);

  // A task's exception arrives as pools::RemoteError, naming the rank and host.
  try {
    pool.add_task("check", check_input, -1).wait();
  } catch (const pools::RemoteError& e) {
    std::printf("%s: %s (rank %s)\n", e.remote_type().c_str(), e.remote_what().c_str(),
                e.rank() >= 0 ? std::to_string(e.rank()).c_str() : "none: not under mpirun");
  }

  // Commands run on a worker rank too.
  std::printf("a worker says: %s", pool.add_process("hello", "echo hello from $(hostname)")
                                       .wait_return()
                                       .c_str());
}  // at exit: the pools close, then the worker ranks stop and MPI finalizes

// The main of test_cluster, which mpirun starts on every rank: pools::init
// comes first (worker ranks serve there and never return), then Catch2 runs
// the tests on rank 0.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <pools/pools.hpp>

int main(int argc, char** argv) {
  pools::init(argc, argv);
  if (!pools::in_cluster()) {
    std::fprintf(stderr, "test_cluster: run me under mpirun with at least 3 ranks\n");
    return 2;
  }
  return Catch::Session().run(argc, argv);
}

"""The mpi4py.futures side of tools/bench/cluster_bench.cpp.

Run on every rank as `mpirun -np 3 python3 -m mpi4py.futures mpi4py_bench.py
TASKS ROUNDTRIPS`: rank 0 runs this script, the other ranks serve as
MPIPoolExecutor's workers. Prints one line of key=value fields: the time per
task of TASKS tiny tasks submitted one by one (every result collected and
checked), and the mean round trip of one task submitted and waited for.
"""
import sys
import time

import mpi4py
from mpi4py.futures import MPIPoolExecutor


def add_one(x):
    return x + 1


def main():
    tasks, roundtrips = int(sys.argv[1]), int(sys.argv[2])
    with MPIPoolExecutor() as ex:
        # The workers are up before the clock starts, as on the other sides.
        assert list(ex.map(add_one, range(100))) == list(range(1, 101))
        t0 = time.perf_counter()
        futures = [ex.submit(add_one, i) for i in range(tasks)]
        total = sum(f.result() for f in futures)
        t1 = time.perf_counter()
        if total != tasks * (tasks + 1) // 2:
            sys.exit("mpi4py_bench: wrong sum")
        t2 = time.perf_counter()
        for i in range(roundtrips):
            if ex.submit(add_one, i).result() != i + 1:
                sys.exit("mpi4py_bench: wrong result")
        t3 = time.perf_counter()
    print(f"per_task_us={(t1 - t0) / tasks * 1e6:.3f} rt_us={(t3 - t2) / roundtrips * 1e6:.3f} "
          f"python={sys.version.split()[0]} mpi4py={mpi4py.__version__}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Python's peers for tools/bench/multiprocess_bench (docs/performance.md).

Runs one measurement against concurrent.futures.ProcessPoolExecutor
(--peer executor) or multiprocessing.Pool (--peer pool) and prints one line:

    seconds=<float> tasks=<int> peer=<name> mode=<mode> start_method=fork python=<version>

  throughput  N calls of square(x), submitted one call at a time
              (executor.submit / pool.apply_async), every result collected
              and checked; seconds = the whole batch.
  roundtrip   one call submitted and waited for, N times; seconds = the mean.
  startup     from creating the pool to the first result of a trivial call.
  map         (bulk, for reference) N calls through Pool.map / Executor.map
              with their default chunksize; seconds = the whole batch.

For throughput, roundtrip and map the pool is created, and warmed up with one
call, outside the timed region, as the C++ side does. Workers are made with the
'fork' start method, set explicitly (it is Linux's default in Python 3.11; 3.14
changes the default to 'forkserver').

Standard library only.
"""

import argparse
import concurrent.futures
import multiprocessing
import sys
import time

START_METHOD = "fork"


def square(x):
    return x * x


def trivial():
    return 1


def make_pool(peer, workers):
    ctx = multiprocessing.get_context(START_METHOD)
    if peer == "executor":
        return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    return ctx.Pool(processes=workers)


def submit(peer, pool, fn, *args):
    """Submits one call; returns a function that waits for its result."""
    if peer == "executor":
        return pool.submit(fn, *args).result
    return pool.apply_async(fn, args).get


def close(peer, pool):
    if peer == "executor":
        pool.shutdown(wait=True)
    else:
        pool.close()
        pool.join()


def check(got, want, what):
    if got != want:
        sys.exit(f"py_pool_bench: {what}: got {got!r}, expected {want!r}")


def throughput(peer, pool, n):
    t0 = time.perf_counter()
    waits = [submit(peer, pool, square, i) for i in range(n)]
    results = [w() for w in waits]
    seconds = time.perf_counter() - t0
    check(sum(results), sum(i * i for i in range(n)), "sum of squares")
    return seconds


def roundtrip(peer, pool, n):
    t0 = time.perf_counter()
    for i in range(n):
        check(submit(peer, pool, square, i)(), i * i, "square")
    return (time.perf_counter() - t0) / n


def bulk_map(peer, pool, n):
    t0 = time.perf_counter()
    results = list(pool.map(square, range(n)))  # default chunksize of each
    seconds = time.perf_counter() - t0
    check(sum(results), sum(i * i for i in range(n)), "sum of squares (map)")
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=["executor", "pool"], required=True)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=["throughput", "roundtrip", "startup", "map"],
                    default="throughput")
    a = ap.parse_args()
    if a.tasks < 1 or a.workers < 1:
        ap.error("--tasks and --workers must be at least 1")

    if a.mode == "startup":
        t0 = time.perf_counter()
        pool = make_pool(a.peer, a.workers)
        check(submit(a.peer, pool, trivial)(), 1, "trivial")
        seconds = time.perf_counter() - t0
    else:
        pool = make_pool(a.peer, a.workers)
        check(submit(a.peer, pool, square, 3)(), 9, "warm-up")
        run = {"throughput": throughput, "roundtrip": roundtrip, "map": bulk_map}[a.mode]
        seconds = run(a.peer, pool, a.tasks)
    close(a.peer, pool)
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"seconds={seconds:.9f} tasks={a.tasks} peer={a.peer} mode={a.mode} "
          f"start_method={START_METHOD} python={version}", flush=True)


if __name__ == "__main__":
    main()

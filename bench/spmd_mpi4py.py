#!/usr/bin/env python3
"""spmd_mpi4py.py - bench/spmd.py's peer: the SPMD job of spmd_bench.c in
mpi4py.futures, on the same work.

    mpiexec -n 4 python3 -m mpi4py.futures bench/spmd_mpi4py.py [--tasks N] [--chunksize C]

Rank 0 runs this script, ranks 1..3 are MPIPoolExecutor's workers. As
spmd_bench does: submits square(1) and notes the wall clock when its
result is in (bench/spmd.py takes the time from mpiexec's start to it);
waits until every worker is up (bootup); maps square over range(N) with
chunksize C (mpi4py's default: 1), timed, and checks every result; prints
one JSON object: first_result_unix, map_seconds, tasks, chunksize.
"""

import argparse
import json
import time

from mpi4py.futures import MPIPoolExecutor


def square(x):
    """The task: x -> x * x."""
    return x * x


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--chunksize", type=int, default=1)
    args = parser.parse_args()
    with MPIPoolExecutor() as executor:
        if executor.submit(square, 1).result() != 1:
            raise RuntimeError("square(1) is not 1")
        first = time.time()
        executor.bootup(wait=True)
        start = time.perf_counter()
        results = list(executor.map(square, range(args.tasks), chunksize=args.chunksize))
        seconds = time.perf_counter() - start
        if results != [x * x for x in range(args.tasks)]:
            raise RuntimeError("the map's results are wrong")
    print(json.dumps({"first_result_unix": first, "map_seconds": seconds, "tasks": args.tasks,
                      "chunksize": args.chunksize}))


if __name__ == "__main__":
    main()

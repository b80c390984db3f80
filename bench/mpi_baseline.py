#!/usr/bin/env python3
"""mpi_baseline.py - the benchmark's workloads through mpi4py.futures'
MPIPoolExecutor with 2 workers, a peer dpool is measured against.

Started by bench/run.py as

    mpiexec -n 3 python3 -m mpi4py.futures bench/mpi_baseline.py --workload W

(rank 0 runs this script, ranks 1 and 2 are the executor's workers), so no
dynamic process spawning is needed. Runs ONE workload and prints one JSON
object on stdout with the same keys as pool_baseline.py. Counts are the
defaults below times --scale (at least 1); only the workload is timed.

Workloads, as in pool_baseline.py:
  apply_async  N executor.submit of a no-op, then every result()
  map1         executor.map of N no-ops with chunksize=1
  mapdef       executor.map with its default chunksize (which is 1)
  apply_seq    N sequential submit(...).result(): latency p50 and p99
  echo1k       N submit of 1 KiB of bytes that the task returns
  echo64k      the same with 64 KiB
  sleep        N submit of a task that sleeps 1 ms (ideal N/2 ms)

Peak RSS: this process's VmHWM, and the largest worker's as the workers
report it (asked with a few small tasks after the workload).
"""

import argparse
import json
import resource
import sys
import time

from mpi4py.futures import MPIPoolExecutor

COUNTS = {
    "apply_async": 200_000,
    "map1": 1_000_000,
    "mapdef": 1_000_000,
    "apply_seq": 10_000,
    "echo1k": 100_000,
    "echo64k": 10_000,
    "sleep": 10_000,
}
SIZES = {"echo1k": 1024, "echo64k": 64 * 1024}
SLEEP_S = 0.001
WARMUP_TASKS = 200
RSS_PROBES = 8


def noop(_x):
    """The no-op task: one argument, returns None."""
    return None


def echo(data):
    """Returns its argument."""
    return data


def sleep_task(seconds):
    """Sleeps, returns None."""
    time.sleep(seconds)


def peak_rss_kb(_x):
    """This worker's peak RSS in KiB, after a short sleep so that the
    probes spread over every worker."""
    time.sleep(0.05)
    return self_peak_kb()


def self_peak_kb():
    """This process's peak RSS in KiB: VmHWM, which starts afresh at exec
    (ru_maxrss keeps the high-water mark of the process that exec'd it)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def percentile(sorted_values, fraction):
    """The value below which fraction of the sorted values fall."""
    return sorted_values[int(fraction * (len(sorted_values) - 1) + 0.5)]


def run_submit(executor, fn, arg, count, check_size=0):
    """count submit calls, then every result(); returns the seconds."""
    start = time.perf_counter()
    futures = [executor.submit(fn, arg) for _ in range(count)]
    for future in futures:
        value = future.result()
        if check_size and len(value) != check_size:
            raise RuntimeError("echo returned %d bytes, not %d" % (len(value), check_size))
    return time.perf_counter() - start


def run(executor, workload, count, procs, figures):
    """Runs one workload and fills figures."""
    list(executor.map(noop, range(WARMUP_TASKS)))
    if workload == "apply_async":
        figures["seconds"] = run_submit(executor, noop, 1, count)
    elif workload in ("map1", "mapdef"):
        start = time.perf_counter()
        if workload == "map1":
            results = list(executor.map(noop, range(count), chunksize=1))
        else:
            results = list(executor.map(noop, range(count)))
        figures["seconds"] = time.perf_counter() - start
        if len(results) != count:
            raise RuntimeError("map of %d gave %d results" % (count, len(results)))
    elif workload == "apply_seq":
        latency = []
        start = time.perf_counter()
        for _ in range(count):
            sent = time.perf_counter()
            executor.submit(noop, 1).result()
            latency.append(time.perf_counter() - sent)
        figures["seconds"] = time.perf_counter() - start
        latency.sort()
        figures["p50_us"] = percentile(latency, 0.50) * 1e6
        figures["p99_us"] = percentile(latency, 0.99) * 1e6
    elif workload in SIZES:
        size = SIZES[workload]
        figures["size"] = size
        figures["seconds"] = run_submit(executor, echo, bytes(size), count, size)
    elif workload == "sleep":
        figures["seconds"] = run_submit(executor, sleep_task, SLEEP_S, count)
        figures["ideal_seconds"] = count * SLEEP_S / procs
    figures["rss_worker_kb"] = max(executor.map(peak_rss_kb, range(RSS_PROBES)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, choices=sorted(COUNTS))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    count = max(1, int(COUNTS[args.workload] * args.scale + 0.5))
    figures = {
        "system": "mpi",
        "transport": "mpi",
        "workload": args.workload,
        "tasks": count,
        "size": 0,
        "procs": args.procs,
        "p50_us": 0.0,
        "p99_us": 0.0,
        "ideal_seconds": 0.0,
        "python": sys.version.split()[0],
    }
    with MPIPoolExecutor(max_workers=args.procs) as executor:
        run(executor, args.workload, count, args.procs, figures)
    figures["rate"] = count / figures["seconds"]
    figures["rss_main_kb"] = self_peak_kb()
    figures["rss_broker_kb"] = 0
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""pool_baseline.py - the benchmark's workloads through Python's
multiprocessing.Pool, the peer dpool is measured against.

Runs ONE workload (--workload) on Pool(--procs) and prints one JSON object
on stdout with the same keys as bench's C programs (forwarder, dpool_bench),
for bench/run.py to read. Counts are the defaults below times --scale (at
least 1). Only the workload is timed: the pool is started and warmed up
first, and closed after.

Workloads:
  apply_async  N no-op apply_async calls one at a time, then every get()
  map1         pool.map of N no-ops with chunksize=1
  mapdef       pool.map of N no-ops with Pool's default chunksize
  apply_seq    N sequential pool.apply: latency p50 and p99
  echo1k       N apply_async of 1 KiB of bytes that the task returns
  echo64k      the same with 64 KiB
  sleep        N apply_async of a task that sleeps 1 ms (ideal N/procs ms)
  sleep_floor  no pool: N/procs 1 ms sleeps one after the other in this
               process, what one of procs workers with no per-task cost at
               all would take for its share of sleep: the ideal as this
               machine's timers allow it

Peak RSS: the main process (its VmHWM) and the largest worker (ru_maxrss
of the waited children, after pool.join()).
"""

import argparse
import json
import multiprocessing
import resource
import sys
import time

COUNTS = {
    "apply_async": 200_000,
    "map1": 1_000_000,
    "mapdef": 1_000_000,
    "apply_seq": 10_000,
    "echo1k": 100_000,
    "echo64k": 10_000,
    "sleep": 10_000,
    "sleep_floor": 10_000,
}
SIZES = {"echo1k": 1024, "echo64k": 64 * 1024}
SLEEP_S = 0.001
WARMUP_TASKS = 200


def noop(_x):
    """The no-op task: one argument, returns None."""
    return None


def echo(data):
    """Returns its argument."""
    return data


def sleep_task(seconds):
    """Sleeps, returns None."""
    time.sleep(seconds)


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


def run_apply_async(pool, fn, arg, count, check_size=0):
    """count apply_async calls, then every get(); returns the seconds."""
    start = time.perf_counter()
    handles = [pool.apply_async(fn, (arg,)) for _ in range(count)]
    for handle in handles:
        value = handle.get()
        if check_size and len(value) != check_size:
            raise RuntimeError("echo returned %d bytes, not %d" % (len(value), check_size))
    return time.perf_counter() - start


def run(workload, count, procs, figures):
    """Runs one workload and fills figures (seconds, latencies...)."""
    if workload == "sleep_floor":
        figures["system"] = "sleep floor"
        figures["transport"] = "none"
        start = time.perf_counter()
        for _ in range(count // procs):
            time.sleep(SLEEP_S)
        figures["seconds"] = time.perf_counter() - start
        figures["ideal_seconds"] = count * SLEEP_S / procs
        return
    context = multiprocessing.get_context("fork")
    pool = context.Pool(procs)
    pool.map(noop, range(WARMUP_TASKS), chunksize=1)
    if workload == "apply_async":
        figures["seconds"] = run_apply_async(pool, noop, 1, count)
    elif workload in ("map1", "mapdef"):
        chunksize = 1 if workload == "map1" else None
        start = time.perf_counter()
        results = pool.map(noop, range(count), chunksize=chunksize)
        figures["seconds"] = time.perf_counter() - start
        if len(results) != count:
            raise RuntimeError("map of %d gave %d results" % (count, len(results)))
    elif workload == "apply_seq":
        latency = []
        start = time.perf_counter()
        for _ in range(count):
            sent = time.perf_counter()
            pool.apply(noop, (1,))
            latency.append(time.perf_counter() - sent)
        figures["seconds"] = time.perf_counter() - start
        latency.sort()
        figures["p50_us"] = percentile(latency, 0.50) * 1e6
        figures["p99_us"] = percentile(latency, 0.99) * 1e6
    elif workload in SIZES:
        size = SIZES[workload]
        figures["size"] = size
        figures["seconds"] = run_apply_async(pool, echo, bytes(size), count, size)
    elif workload == "sleep":
        figures["seconds"] = run_apply_async(pool, sleep_task, SLEEP_S, count)
        figures["ideal_seconds"] = count * SLEEP_S / procs
    pool.close()
    pool.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", required=True, choices=sorted(COUNTS))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--procs", type=int, default=2)
    args = parser.parse_args()
    count = max(1, int(COUNTS[args.workload] * args.scale + 0.5))
    figures = {
        "system": "pool",
        "transport": "pipe",
        "workload": args.workload,
        "tasks": count,
        "size": 0,
        "procs": args.procs,
        "p50_us": 0.0,
        "p99_us": 0.0,
        "ideal_seconds": 0.0,
        "python": sys.version.split()[0],
        "executable": sys.executable,
    }
    run(args.workload, count, args.procs, figures)
    figures["rate"] = count / figures["seconds"]
    figures["rss_main_kb"] = self_peak_kb()
    figures["rss_worker_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures["rss_broker_kb"] = 0
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""spmd.py - an SPMD job against mpi4py.futures, on the same work, in one run.

    bench/spmd.py [BUILD_DIR] [--runs N] [--tasks N] [--json]

dpool: `mpirun -n 4 spmd_bench` (bench/spmd_bench.c: dpool_pool_spmd with
MPI as its bootstrap; rank 0 runs the program, ranks 1..3 serve). The
peer: `mpiexec -n 4 python3 -m mpi4py.futures bench/spmd_mpi4py.py`
(rank 0 runs the script, ranks 1..3 are MPIPoolExecutor's workers). Both
run square (x -> x * x) and report the same figures:

  start-up  from the launcher's start to the first result in rank 0
            (square(1)), wall clock: MPI's start, the pool's, one task;
  map1      a map of N squares (default 100,000) with chunksize 1, once
            every worker is up: seconds from the call to the last result;
  mapdef    dpool only: the same with dpool's own chunksize (mpi4py's
            default is 1: its map1 is its mapdef).

Runs are interleaved (dpool, dpool, mpi4py; again). Prints each run, then
the medians and the target (dpool faster on both start-up and map1).
--json: the last line is {"tasks": N, "dpool": {...}, "mpi4py": {...}},
each figure a list of runs (mpi4py's {"skipped": why} when it cannot run);
bench/run.py reads it. Exits 1 if a dpool run fails.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

RANKS = 4
TIMEOUT_S = 300
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def launcher(name):
    """The launcher's command prefix for RANKS ranks, and its environment."""
    path = shutil.which(name)
    if not path:
        return None, None
    # Open MPI refuses root (CI and containers run as root) unless told.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    # Open MPI's own allocations outlive MPI_Finalize: in a sanitizer build
    # (the CI smoke test runs this on build-asan) LeakSanitizer would fail
    # the run for them. Not this benchmark's to judge.
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "detect_leaks=0"
    prefix = [path, "-n", str(RANKS)]
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False,
                             env=env)
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout:
        prefix.append("--oversubscribe")  # four ranks on two cores
    return prefix, env


def one_run(command, env):
    """Runs a job to its end in a process group of its own; returns its
    figures with "startup" (seconds from the start to the first result)."""
    launched = time.time()
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, start_new_session=True)
    try:
        out, err = job.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise RuntimeError("%s timed out after %d s" % (command[0], TIMEOUT_S))
    lines = out.strip().splitlines()
    if job.returncode != 0 or not lines:
        raise RuntimeError("%s exited %d: %s" % (" ".join(command), job.returncode,
                                                  err.strip()[-2000:]))
    figures = json.loads(lines[-1])
    figures["startup"] = figures["first_result_unix"] - launched
    return figures


def peer_skip(python):
    """Why the mpi4py peer cannot run, or None."""
    probe = subprocess.run([python, "-c", "import mpi4py.futures"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return "mpi4py not importable by %s (Debian package python3-mpi4py)" % python
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args()
    bench = os.path.join(args.build, "bench", "spmd_bench")
    mpirun, env = launcher("mpirun")
    mpiexec, _ = launcher("mpiexec")
    if not os.access(bench, os.X_OK) or not mpirun:
        sys.exit("spmd.py: needs %s (a build with MPI) and mpirun" % bench)
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    skip = peer_skip(python) if mpiexec else "mpiexec not found (Debian package openmpi-bin)"
    tasks = str(args.tasks)
    jobs = [("dpool", "map1", mpirun + [bench, "--tasks", tasks, "--chunksize", "1"]),
            ("dpool", "mapdef", mpirun + [bench, "--tasks", tasks, "--chunksize", "0"])]
    if not skip:
        jobs.append(("mpi4py", "map1", mpiexec + [python, "-m", "mpi4py.futures",
                                                  os.path.join(BENCH_DIR, "spmd_mpi4py.py"),
                                                  "--tasks", tasks, "--chunksize", "1"]))
    figures = {"dpool": {"startup": [], "map1": [], "mapdef": []},
               "mpi4py": {"startup": [], "map1": []} if not skip else {"skipped": skip}}
    for run in range(args.runs):
        for system, workload, command in jobs:
            try:
                got = one_run(command, env)
            except RuntimeError as error:
                if system == "dpool":
                    sys.exit("spmd.py: %s" % error)
                figures["mpi4py"] = {"skipped": "failed: %s" % error}
                jobs = [job for job in jobs if job[0] != "mpi4py"]
                continue
            figures[system]["startup"].append(got["startup"])
            figures[system][workload].append(got["map_seconds"])
            print("run %d: %s %s: start-up %.3f s, map of %s %.3f s"
                  % (run + 1, system, workload, got["startup"], tasks, got["map_seconds"]),
                  flush=True)
    for system, data in figures.items():
        for name, runs in data.items():
            if isinstance(runs, list) and runs:
                print("%s %s: median %.3f s [%.3f-%.3f]" % (system, name, statistics.median(runs),
                                                            min(runs), max(runs)))
    if args.json:
        print(json.dumps({"tasks": args.tasks, "ranks": RANKS, **figures}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""dpool map --exec against GNU parallel: N `true` commands on 2 processes.

Starts dpool-broker and `dpool-worker --procs 2 --allow-exec`, waits until
both processes are registered, then times, runs interleaved:
  dpool map --exec true < lines     (N lines, stdout to /dev/null)
  parallel -j2 true < lines         (Debian's GNU parallel)
each from its start to its exit, the dpool command's connection included.
Prints each run and the medians; the target (issue 14 item 5) is dpool
faster than parallel.

usage: bench/exec_parallel.py [BUILD_DIR] [--lines N] [--runs N] [--json]
(--json: the last line is {"dpool_s": [...], "parallel_s": [...],
"dpool_median_s": D, "parallel_median_s": P}, or {"skipped": reason};
run.py reads it)
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_workers(cli, endpoint, count, deadline):
    while time.monotonic() < deadline:
        out = subprocess.run([cli, "status", "--connect", endpoint, "--json"],
                             capture_output=True, text=True, timeout=10).stdout
        if out and len(json.loads(out).get("workers", [])) >= count:
            return
        time.sleep(0.05)
    sys.exit("exec_parallel.py: the workers did not register")


def timed(command, lines_path, env=None):
    with open(lines_path, "rb") as lines:
        start = time.monotonic()
        done = subprocess.run(command, stdin=lines, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=600, env=env)
        seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit("exec_parallel.py: %s exited %d: %s" %
                 (command[0], done.returncode, done.stderr.decode(errors="replace")))
    return seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args()
    parallel = shutil.which("parallel")
    if not parallel:
        reason = "GNU parallel not found (Debian's package parallel; setup.sh installs it)"
        print(json.dumps({"skipped": reason}) if args.json else reason)
        return 0
    broker_bin = os.path.join(args.build, "broker", "dpool-broker")
    worker_bin = os.path.join(args.build, "worker", "dpool-worker")
    cli = os.path.join(args.build, "cli", "dpool")
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    broker = subprocess.Popen([broker_bin, "--bind", endpoint])
    workers = subprocess.Popen([worker_bin, "--connect", endpoint, "--procs", "2",
                                "--allow-exec=true"])
    home = tempfile.mkdtemp(prefix="dpool-exec-bench-")
    try:
        wait_workers(cli, endpoint, 2, time.monotonic() + 30)
        lines_path = os.path.join(home, "lines")
        with open(lines_path, "w", encoding="ascii") as out:
            out.write("".join("%d\n" % i for i in range(1, args.lines + 1)))
        dpool_cmd = [cli, "map", "--exec", "--connect", endpoint, "true"]
        # parallel keeps its state in ~/.parallel: a home of its own, so
        # that no user's configuration or citation notice takes part.
        parallel_cmd = [parallel, "-j2", "true"]
        os.makedirs(os.path.join(home, ".parallel"))
        open(os.path.join(home, ".parallel", "will-cite"), "w").close()
        parallel_env = dict(os.environ, HOME=home)
        dpool_s, parallel_s = [], []
        for run in range(args.runs):
            dpool_s.append(timed(dpool_cmd, lines_path))
            parallel_s.append(timed(parallel_cmd, lines_path, parallel_env))
            print("run %d: dpool map --exec %.3f s, parallel -j2 %.3f s" %
                  (run + 1, dpool_s[-1], parallel_s[-1]), file=sys.stderr)
    finally:
        workers.terminate()
        broker.terminate()
        workers.wait(timeout=30)
        broker.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    figures = {"lines": args.lines, "dpool_s": dpool_s, "parallel_s": parallel_s,
               "dpool_median_s": statistics.median(dpool_s),
               "parallel_median_s": statistics.median(parallel_s)}
    print("%d true commands, 2 processes: dpool map --exec %.3f s, parallel -j2 %.3f s "
          "(medians of %d)" % (args.lines, figures["dpool_median_s"],
                               figures["parallel_median_s"], args.runs))
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How soon a task runs again after its worker process is SIGKILLed.

Starts dpool-broker (heartbeat expiry 30 s, so that only its sight of the
closed connection can be quick) and `dpool-worker --procs 2`; then, N times:
`dpool apply sleep S` runs on one process, which is SIGKILLed once the
broker's status shows it running the task; the apply ends when the task has
run again, on the other process, for S seconds. The figure is the time from
the kill to the task's new start: the apply's end less S (an upper bound:
it includes the result's way back). Prints each run and the median; the
target is a median of at most 100 ms (issue 18; Dask took 2.3 s here).

usage: bench/worker_death.py [BUILD_DIR] [--runs N] [--sleep S] [--json]
(--json: the last line is {"runs": [ms...], "median_ms": M}; run.py reads it)
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_pid(cli, endpoint):
    out = subprocess.run([cli, "status", "--connect", endpoint, "--json"],
                         capture_output=True, text=True, timeout=10).stdout
    running = json.loads(out).get("running", []) if out else []
    return running[0]["pid"] if len(running) == 1 else 0


def wait_workers(cli, endpoint, count, deadline):
    while time.monotonic() < deadline:
        out = subprocess.run([cli, "status", "--connect", endpoint, "--json"],
                             capture_output=True, text=True, timeout=10).stdout
        if out and len(json.loads(out).get("workers", [])) >= count:
            return
        time.sleep(0.05)
    sys.exit("workers did not register")


def one_run(cli, endpoint, seconds):
    apply = subprocess.Popen([cli, "apply", "sleep", str(seconds), "--connect", endpoint],
                             stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    pid = 0
    while not pid and time.monotonic() < deadline:
        pid = running_pid(cli, endpoint)
    if not pid:
        apply.kill()
        sys.exit("the task never showed as running")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    if apply.wait(timeout=60) != 0:
        sys.exit("dpool apply failed")
    return (time.monotonic() - killed - seconds) * 1000.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("build", nargs="?", default="build")
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    args = parser.parse_args()
    broker_bin = os.path.join(args.build, "broker", "dpool-broker")
    worker_bin = os.path.join(args.build, "worker", "dpool-worker")
    cli = os.path.join(args.build, "cli", "dpool")
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    broker = subprocess.Popen([broker_bin, "--bind", endpoint, "--expiry-ms", "30000"])
    workers = subprocess.Popen([worker_bin, "--connect", endpoint, "--procs", "2"])
    try:
        wait_workers(cli, endpoint, 2, time.monotonic() + 20)
        figures = []
        for i in range(args.runs):
            wait_workers(cli, endpoint, 2, time.monotonic() + 20)  # the killed one's successor
            ms = one_run(cli, endpoint, args.sleep)
            figures.append(ms)
            print("run %d: %.1f ms" % (i + 1, ms), flush=True)
        print("kill to restart: median %.1f ms [%.1f-%.1f] over %d runs (target <= 100 ms)"
              % (statistics.median(figures), min(figures), max(figures), len(figures)))
        if args.json:
            print(json.dumps({"runs": figures, "median_ms": statistics.median(figures)}))
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(timeout=10)
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)


if __name__ == "__main__":
    main()

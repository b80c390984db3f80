#!/usr/bin/env python3
"""run.py - dpool's benchmark, side by side with its peers, in one command.

    bench/run.py            build (Release, into build-bench/), run everything
                            3 times, print the table, write bench/RESULTS.md
    bench/run.py --quick    every workload tiny, once: seconds in all (the CI
                            smoke test); writes no RESULTS.md

What runs (bench/README.md says more):
  zmq fwd tcp|ipc   forwarder.c: ZeroMQ alone, a ROUTER-to-ROUTER forwarder
                    and echo workers: the transport's limit
  pool              pool_baseline.py: Python's multiprocessing.Pool(2)
  mpi               mpi_baseline.py: mpi4py.futures MPIPoolExecutor, 2 workers
                    (skipped with a message when mpi4py or mpiexec is absent)
  dpool embedded    dpool_bench: dpool_pool_new(2)
  dpool tcp|ipc     dpool_bench: dpool_pool_connect to a dpool-broker process
  broker-only       dpool_bench: broker RSS per queued task, broker CPU with
                    1,000 idle workers, cancelling 100,000 queued tasks
  fair share        dpool_bench: two clients of one broker at once: a
                    sequential apply's latency while the other has
                    1,000,000 no-ops queued, throughput and each one's
                    share of the workers' time
  worker death      worker_death.py: time from SIGKILL of a busy worker
                    process to its task running on another (21 kills)
  exec              exec_parallel.py: dpool map --exec of 1,000 `true`
                    commands against GNU parallel -j2 (skipped without it)
  slow link         dpool_bench through delay_relay.c (a TCP relay that holds
                    bytes 5 ms each way), the workers in a network namespace:
                    1 ms tasks and sequential applies against loopback
  many workers      dpool_bench broker_many: 10, 100 and 1,000 busy fake
                    workers draining 1,000,000 no-ops, and a newcomer's wait
  SPMD              spmd.py: an SPMD job under mpirun -n 4 (spmd_bench.c)
                    against mpiexec -n 4 python3 -m mpi4py.futures: start-up
                    to the first result, a 100,000-task map

Runs are interleaved (run 1 of every figure, then run 2...) so that a change
in the machine's load touches every system alike. Every measurement is one
process started afresh, so each peak RSS is that workload's own. Exits 0
when every measurement of the project's own programs and of Pool succeeded
(mpi may be skipped or fail: it is reported, not fatal), else 1.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

import slow_many

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)

POOL_WORKLOADS = ["apply_async", "map1", "mapdef", "apply_seq", "echo1k", "echo64k", "sleep"]
WORKLOAD_TITLES = {
    "apply_async": "apply_async one at a time (200,000 no-ops)",
    "map1": "map, chunksize=1 (1,000,000 no-ops)",
    "mapdef": "map, default chunksize (1,000,000 no-ops)",
    "apply_seq": "sequential apply (10,000): latency",
    "echo1k": "echo 1 KiB (100,000 apply_async)",
    "echo64k": "echo 64 KiB (10,000 apply_async)",
    "echo1k_stream": "echo 1 KiB streamed (100,000 apply_async, ≤ 1,000 in flight)",
    "echo64k_stream": "echo 64 KiB streamed (10,000 apply_async, ≤ 1,000 in flight)",
    "sleep": "sleep 1 ms (10,000 apply_async, 2 procs: ideal 5.0 s)",
}
# dpool's echo streamed (dpool_bench --workload echoN_stream): at most 1,000
# tasks unfinished, each result dropped once collected, as the forwarder's
# client does with its replies. dpool systems only; the forwarder's row of
# the held echo it is named after is its baseline.
STREAM_WORKLOADS = {"echo1k_stream": "echo1k", "echo64k_stream": "echo64k"}
BROKER_WORKLOADS = ["broker_rss", "broker_idle", "cancel", "cancel_all", "restart"]
# The broker's journal (dpool-broker --journal, default --sync): the same
# no-op workloads as "dpool tcp", with a journaled broker, in the same run.
JOURNAL_SYSTEM = "dpool tcp journal"
JOURNAL_WORKLOADS = ["apply_async", "map1"]
JOURNAL_SYNC = "normal"
FAIR_WORKLOADS = ["fair_apply_seq", "fair_two"]
PEERS = ["pool", "mpi"]
DPOOL_SYSTEMS = ["dpool embedded", "dpool tcp", "dpool ipc"]
FORWARDERS = ["zmq fwd tcp", "zmq fwd ipc"]
# The forwarder's client keeping every reply until the end (forwarder
# --keep), as the pools' echo workloads keep every result: echo rows only.
KEEP_FORWARDERS = ["zmq fwd tcp keep", "zmq fwd ipc keep"]
SYSTEMS = FORWARDERS + KEEP_FORWARDERS + PEERS + DPOOL_SYSTEMS

# A system that would take longer than BUDGET_S for one run of a high-count
# workload runs it on a smaller count, so that a slow peer (mpi4py moves a
# few thousand tasks a second here) or a slow dpool does not stretch the run
# to hours. The count is chosen from a pilot run at PILOT_SCALE before run 1;
# the rate is what is compared, and the table's n column shows the count
# each system ran.
SCALABLE = ["apply_async", "map1", "mapdef", "echo1k", "echo64k", "echo1k_stream",
            "echo64k_stream"]
BUDGET_S = 20.0
PILOT_SCALE = 0.01

# Forwarder counts at scale 1: requests for throughput and echo, round
# trips for latency.
FWD_THROUGHPUT = 1_000_000
FWD_LATENCY = 10_000
FWD_ECHO = {"echo1k": (1024, 100_000), "echo64k": (65536, 10_000)}

PROCS = 2
TIMEOUT_S = 180  # no figure needs more than ~40 s; beyond this it hung
QUICK_TIMEOUT_S = 90
QUICK_SCALE = 0.001
QUICK_IDLE = (10, 1.0)  # idle workers, seconds
FULL_IDLE = (1000, 10.0)


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Building and finding the programs.


def find_program(build_dir, name):
    """The path of an executable called name under build_dir, or None."""
    for root, _dirs, files in os.walk(build_dir):
        if name in files:
            path = os.path.join(root, name)
            if os.access(path, os.X_OK):
                return path
    return None


def build(args):
    """Configures and builds the programs in args.build_dir (Release)."""
    source = args.cmake_source or REPO_DIR
    log("run.py: building into %s (Release)" % args.build_dir)
    # Warnings stay warnings here: -O3 finds maybe-uninitialized cases that
    # the -Werror build of CI (RelWithDebInfo) does not, and the benchmark
    # is not the place to stop on them.
    subprocess.run(["cmake", "-S", source, "-B", args.build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DDPOOL_WERROR=OFF"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", args.build_dir, "-j", str(os.cpu_count() or 2),
                    "--target", "bench_forwarder", "dpool_bench", "delay_relay", "dpool-broker",
                    "dpool-worker", "dpool-cli", "bench_idmap"],
                   check=True, stdout=subprocess.DEVNULL)
    # Only a build that found MPI has it: its absence skips the SPMD figures.
    subprocess.run(["cmake", "--build", args.build_dir, "--target", "spmd_bench"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def locate(args):
    """Fills args.forwarder, args.dpool_bench and args.broker."""
    for attr, name in (("forwarder", "forwarder"), ("dpool_bench", "dpool_bench"),
                       ("broker", "dpool-broker")):
        if not getattr(args, attr):
            setattr(args, attr, find_program(args.build_dir, name))
        if not getattr(args, attr):
            sys.exit("run.py: %s not found under %s (is add_subdirectory (bench) in the "
                     "top-level CMakeLists.txt?)" % (name, args.build_dir))
    # delay_relay is built beside dpool_bench.
    args.relay = os.path.join(os.path.dirname(os.path.abspath(args.dpool_bench)), "delay_relay")
    if not os.access(args.relay, os.X_OK):
        sys.exit("run.py: %s not found" % args.relay)


# ---------------------------------------------------------------------------
# Measurements: one command each, one JSON object back.


class Job:
    """One measurement: a system on a workload, a command to run."""

    def __init__(self, system, workload, command, env=None, fatal=True):
        self.system = system
        self.workload = workload
        self.command = command
        self.env = env
        self.fatal = fatal


def baseline_python():
    """Debian's python3 when it is there (the peer as users have it)."""
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def mpi_setup(python):
    """(mpiexec command prefix, env) or (None, reason it is skipped)."""
    mpiexec = shutil.which("mpiexec")
    if not mpiexec:
        return None, "skipped: mpiexec not found (Debian package openmpi-bin)"
    probe = subprocess.run([python, "-c", "import mpi4py.futures"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return None, "skipped: mpi4py not importable by %s (Debian package python3-mpi4py)" % python
    # Open MPI refuses root (CI and containers run as root) unless told,
    # even for --version; other MPIs ignore these two variables.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    prefix = [mpiexec, "-n", str(PROCS + 1)]
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True, check=False,
                             env=env)
    text = version.stdout + version.stderr
    if "Open MPI" in text or "OpenRTE" in text or "open-mpi" in text:
        # Three ranks on two cores.
        prefix.append("--oversubscribe")
    return (prefix, env), None


def make_jobs(args, scale, mpi, scales=None):
    """Every measurement of one run, in the order they run. scales maps
    (system, workload) to a scale that replaces scale for that job."""
    scales = scales or {}
    jobs = []
    python = baseline_python()
    quick = scale < 1

    def dpool(mode, workload, system=None, extra=()):
        system = system or "dpool " + mode
        own = scales.get((system, workload), scale)
        return Job(system, workload,
                   [args.dpool_bench, "--workload", workload, "--mode", mode, "--scale",
                    "%g" % own, "--procs", str(PROCS), "--broker-bin", args.broker] + list(extra))

    def forwarder(transport):
        return [args.forwarder, "--transport", transport, "--workers", str(PROCS)]

    for transport in ("tcp", "ipc"):
        system = "zmq fwd " + transport
        n = max(1, int(FWD_THROUGHPUT * scale))
        jobs.append(Job(system, "throughput", forwarder(transport) + ["--requests", str(n)]))
        n = max(1, int(FWD_LATENCY * scale))
        jobs.append(Job(system, "latency", forwarder(transport) +
                        ["--workload", "latency", "--requests", str(n)]))
    for workload in POOL_WORKLOADS:
        if workload in FWD_ECHO:
            # Each echo right after the forwarder figure it is compared
            # with, so that both meet the machine in the same state: the
            # streamed echo after the plain forwarder, the held one after
            # the forwarder keeping its replies (embedded's limit is ipc's).
            size, count = FWD_ECHO[workload]
            n = max(1, int(count * scale))
            stream = workload + "_stream"
            for transport, modes in (("tcp", ["tcp"]), ("ipc", ["ipc", "embedded"])):
                echo = forwarder(transport) + ["--requests", str(n), "--size", str(size)]
                jobs.append(Job("zmq fwd " + transport, workload, echo))
                jobs += [dpool(mode, stream) for mode in modes]
                jobs.append(Job("zmq fwd %s keep" % transport, workload, echo + ["--keep"]))
                jobs += [dpool(mode, workload) for mode in modes]
        own = scales.get(("pool", workload), scale)
        jobs.append(Job("pool", workload, [python, os.path.join(BENCH_DIR, "pool_baseline.py"),
                                           "--workload", workload, "--scale", "%g" % own,
                                           "--procs", str(PROCS)]))
        if mpi:
            prefix, env = mpi
            own = scales.get(("mpi", workload), scale)
            jobs.append(Job("mpi", workload,
                            prefix + [python, "-m", "mpi4py.futures",
                                      os.path.join(BENCH_DIR, "mpi_baseline.py"), "--workload",
                                      workload, "--scale", "%g" % own, "--procs", str(PROCS)],
                            env=env, fatal=False))
        if workload not in FWD_ECHO:
            jobs += [dpool(mode, workload) for mode in ("embedded", "tcp", "ipc")]
    for workload in JOURNAL_WORKLOADS:
        jobs.append(dpool("tcp", workload, JOURNAL_SYSTEM, ["--journal-sync", JOURNAL_SYNC]))
    jobs.append(Job("sleep floor", "sleep_floor",
                    [python, os.path.join(BENCH_DIR, "pool_baseline.py"), "--workload",
                     "sleep_floor", "--scale", str(scale), "--procs", str(PROCS)]))
    idle_workers, idle_seconds = QUICK_IDLE if quick else FULL_IDLE
    for workload in BROKER_WORKLOADS:
        command = [args.dpool_bench, "--workload", workload, "--mode", "tcp", "--scale",
                   str(scale), "--broker-bin", args.broker]
        if workload == "broker_idle":
            command += ["--idle-workers", str(idle_workers), "--idle-seconds", str(idle_seconds)]
        jobs.append(Job("dpool broker", workload, command))
    for workload in FAIR_WORKLOADS:
        jobs.append(Job("dpool fair", workload,
                        [args.dpool_bench, "--workload", workload, "--mode", "tcp", "--scale",
                         str(scale), "--procs", str(PROCS), "--broker-bin", args.broker]))
    return jobs


class Done:
    """What a finished job left: exit status and output."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def run_job(job, timeout):
    """Runs a job in its own process group; returns (figures dict, None) or
    (None, error text). A job still running after timeout seconds is ended
    with its whole group (the brokers and workers it started too)."""
    try:
        process = subprocess.Popen(job.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, text=True, env=job.env,
                                   start_new_session=True)
    except OSError as error:
        return None, str(error)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        return None, "timed out after %d s" % timeout
    finally:
        # Whatever the job left behind in its group (a broker, workers) goes too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    done = Done(process.returncode, stdout, stderr)
    for line in reversed(done.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                figures = json.loads(line)
            except ValueError:
                continue
            if done.returncode == 0:
                return figures, None
    lines = [line.strip() for line in done.stderr.splitlines()
             if line.strip() and not line.strip().startswith("---")]
    tail = lines[-1] if lines else "(no message)"
    return None, "exit %d: %s" % (done.returncode, tail[:200])


def pilot(args, scale, mpi, wanted, timeout):
    """Runs every high-count pool workload once at PILOT_SCALE and returns
    the scales of those that would take longer than BUDGET_S at scale."""
    scales = {}
    for job in make_jobs(args, scale * PILOT_SCALE, mpi):
        if job.workload not in SCALABLE or job.system.startswith("zmq") or not wanted(job):
            continue
        log("run.py: pilot: %s %s" % (job.system, job.workload))
        figures, error = run_job(job, timeout)
        if figures is None or not figures.get("seconds"):
            log("run.py:   pilot failed (%s): the full count will run" % error)
            continue
        estimate = figures["seconds"] / PILOT_SCALE
        if estimate > BUDGET_S:
            scales[(job.system, job.workload)] = scale * BUDGET_S / estimate
            log("run.py:   about %.0f s at full count: scaled to %.3g" %
                (estimate, scales[(job.system, job.workload)]))
    return scales


# ---------------------------------------------------------------------------
# Aggregation and the table.


class Figure:
    """Every run of one system on one workload."""

    def __init__(self):
        self.runs = []
        self.errors = []

    def ok(self):
        return bool(self.runs)

    def median(self, key):
        values = [run[key] for run in self.runs if key in run]
        return statistics.median(values) if values else 0.0

    def spread(self, key):
        values = [run[key] for run in self.runs if key in run]
        return (min(values), max(values)) if values else (0.0, 0.0)


def fmt_rate(value):
    if value >= 1e6:
        return "%.2fM" % (value / 1e6)
    if value >= 1e4:
        return "%.0fk" % (value / 1e3)
    if value >= 1e3:
        return "%.1fk" % (value / 1e3)
    return "%.0f" % value


def fmt_count(value):
    value = int(value)
    if value >= 1_000_000 and value % 1_000_000 == 0:
        return "%dM" % (value // 1_000_000)
    if value >= 1000 and value % 1000 == 0:
        return "%dk" % (value // 1000)
    return str(value)


def fmt_mib(kb):
    return "%.0f" % (kb / 1024.0) if kb >= 10240 else "%.1f" % (kb / 1024.0)


def transport_of(system):
    """The forwarder that is a dpool system's transport limit: the same
    transport; for embedded, ipc (its workers reach the broker over ipc)."""
    return "zmq fwd tcp" if system == "dpool tcp" else "zmq fwd ipc"


def forwarder_workload(workload):
    """The forwarder figure that is the limit for a pool workload."""
    if workload == "apply_seq":
        return "latency"
    if workload in FWD_ECHO:
        return workload
    if workload in STREAM_WORKLOADS:
        return STREAM_WORKLOADS[workload]
    if workload == "sleep":
        return None
    return "throughput"


def best_peer(results, workload, latency):
    """(system, figure) of the best peer on a workload, or (None, None)."""
    best = (None, None)
    for peer in PEERS:
        figure = results.get((peer, workload))
        if not figure or not figure.ok():
            continue
        if best[1] is None:
            best = (peer, figure)
        elif latency and figure.median("p50_us") < best[1].median("p50_us"):
            best = (peer, figure)
        elif not latency and figure.median("rate") > best[1].median("rate"):
            best = (peer, figure)
    return best


def ratio_cells(results, system, workload, figure):
    """The 'vs best peer' and 'vs transport' cells of a dpool row."""
    if workload == "sleep" and figure.ok() and figure.median("ideal_seconds"):
        vs_ideal = "%.3f× ideal" % (figure.median("seconds") / figure.median("ideal_seconds"))
        return vs_ideal, ""
    if not system.startswith("dpool") or not figure.ok():
        return "", ""
    latency = workload == "apply_seq"
    peer_name, peer = best_peer(results, workload, latency)
    vs_peer = ""
    if peer is not None and latency:
        vs_peer = "p50 %.2f× %s" % (figure.median("p50_us") / peer.median("p50_us"), peer_name)
    elif peer is not None:
        vs_peer = "%.2f× %s" % (figure.median("rate") / peer.median("rate"), peer_name)
    vs_limit = ""
    fwd_workload = forwarder_workload(workload)
    limit = results.get((transport_of(system), fwd_workload)) if fwd_workload else None
    if limit is not None and limit.ok():
        if latency:
            vs_limit = "p50 %.2f× fwd" % (figure.median("p50_us") / limit.median("p50_us"))
        else:
            vs_limit = "%.2f× fwd" % (figure.median("rate") / limit.median("rate"))
    keep = results.get((transport_of(system) + " keep", workload)) if workload in FWD_ECHO else None
    if keep is not None and keep.ok():
        vs_limit += ", %.2f× fwd keep" % (figure.median("rate") / keep.median("rate"))
    return vs_peer, vs_limit


def rss_cell(figure):
    parts = [fmt_mib(figure.median("rss_main_kb")), fmt_mib(figure.median("rss_worker_kb"))]
    if figure.median("rss_broker_kb"):
        parts.append(fmt_mib(figure.median("rss_broker_kb")))
    return "/".join(parts)


def pool_rows(results, skipped):
    """Rows of the side-by-side table."""
    rows = []
    for workload in POOL_WORKLOADS + list(STREAM_WORKLOADS):
        systems = FORWARDERS + PEERS + DPOOL_SYSTEMS
        if workload in FWD_ECHO:
            systems = FORWARDERS + KEEP_FORWARDERS + PEERS + DPOOL_SYSTEMS
        if workload in STREAM_WORKLOADS:
            systems = FORWARDERS + DPOOL_SYSTEMS
        if workload == "sleep":
            systems = ["sleep floor"] + systems
        for system in systems:
            fwd = forwarder_workload(workload) if system.startswith("zmq") else workload
            if system == "sleep floor":
                fwd = "sleep_floor"
            if fwd is None:
                continue
            figure = results.get((system, fwd))
            name = system
            if figure is None:
                if system in skipped:
                    rows.append([workload, name, "", skipped[system], "", "", "", ""])
                continue
            if not figure.ok():
                rows.append([workload, name, "", "FAILED: " + figure.errors[-1], "", "", "", ""])
                continue
            low, high = figure.spread("rate")
            rate = "%s [%s–%s]" % (fmt_rate(figure.median("rate")), fmt_rate(low), fmt_rate(high))
            if workload == "sleep":
                rate += " (%.2f s)" % figure.median("seconds")
            lat = ""
            if figure.median("p50_us"):
                lat = "%.0f / %.0f" % (figure.median("p50_us"), figure.median("p99_us"))
            vs_peer, vs_limit = ratio_cells(results, system, workload, figure)
            rows.append([workload, name, fmt_count(figure.median("tasks")), rate, lat,
                         rss_cell(figure), vs_peer, vs_limit])
    return rows


def broker_rows(results):
    rows = []
    for workload in BROKER_WORKLOADS:
        figure = results.get(("dpool broker", workload))
        if figure is None:
            continue
        if not figure.ok():
            rows.append([workload, "", "FAILED: " + figure.errors[-1], ""])
            continue
        n = fmt_count(figure.median("tasks"))
        if workload == "broker_rss":
            low, high = figure.spread("bytes_per_task")
            value = "%.0f B/task [%.0f–%.0f]" % (figure.median("bytes_per_task"), low, high)
            note = ("beyond %d B of args; RSS %s → %s MiB, queued in %.2f s" %
                    (figure.median("payload_bytes"), fmt_mib(figure.median("rss_broker_idle_kb")),
                     fmt_mib(figure.median("rss_broker_full_kb")), figure.median("seconds")))
        elif workload == "broker_idle":
            low, high = figure.spread("cpu_percent")
            value = "%.2f%% of a core [%.2f–%.2f]" % (figure.median("cpu_percent"), low, high)
            note = ("idle workers over %.0f s; %d dropped by the broker" %
                    (figure.median("seconds"), max(r.get("expired", 0) for r in figure.runs)))
        elif workload == "restart":
            low, high = figure.spread("seconds")
            value = "%.2f s [%.2f–%.2f]" % (figure.median("seconds"), low, high)
            note = ("journaled broker SIGKILLed with %s tasks queued, started again: until "
                    "its status shows them all; broker peak RSS %s MiB" %
                    (n, fmt_mib(figure.median("rss_broker_kb"))))
        else:
            low, high = figure.spread("rate")
            value = "%s/s [%s–%s]" % (fmt_rate(figure.median("rate")), fmt_rate(low),
                                      fmt_rate(high))
            note = ("%.3f s; CANCEL %s" %
                    (figure.median("seconds"),
                     "all" if workload == "cancel_all" else "listing every seq"))
        rows.append([workload, n, value, note])
    return rows


def journal_rows(results):
    """Rows of the journal table: workload, n, in-memory and journaled
    rates, and their ratio."""
    rows = []
    for workload in JOURNAL_WORKLOADS:
        memory = results.get(("dpool tcp", workload))
        journal = results.get((JOURNAL_SYSTEM, workload))
        if journal is None:
            continue
        if not journal.ok():
            rows.append([workload, "", "", "FAILED: " + journal.errors[-1], ""])
            continue
        low, high = journal.spread("rate")
        cell = "%s [%s–%s]" % (fmt_rate(journal.median("rate")), fmt_rate(low), fmt_rate(high))
        mem = fmt_rate(memory.median("rate")) if memory and memory.ok() else ""
        ratio = ("%.2f×" % (journal.median("rate") / memory.median("rate"))
                 if memory and memory.ok() else "")
        rows.append([workload, fmt_count(journal.median("tasks")), mem, cell, ratio])
    return rows


def journal_targets(results):
    """Issue 15 item 5's targets, each with what this run measured."""
    lines = []
    for workload in JOURNAL_WORKLOADS:
        memory = results.get(("dpool tcp", workload))
        journal = results.get((JOURNAL_SYSTEM, workload))
        if memory and memory.ok() and journal and journal.ok():
            ratio = journal.median("rate") / memory.median("rate")
            lines.append("- %s no-ops, journaled broker (--sync %s) against in-memory, tcp: "
                         "%.2f× (target ≥ 0.5×): %s" %
                         (workload, JOURNAL_SYNC, ratio, "MET" if ratio >= 0.5 else "MISSED"))
    figure = results.get(("dpool broker", "restart"))
    if figure and figure.ok():
        seconds = figure.median("seconds")
        lines.append("- restart of a journaled broker with %s tasks queued: %.2f s (target ≤ "
                     "5 s): %s" % (fmt_count(figure.median("tasks")), seconds,
                                   "MET" if seconds <= 5 else "MISSED"))
    return lines


def fair_rows(results):
    """Rows of the fair-share table: (figure, median [range], notes)."""
    rows = []

    def cell(figure, key, fmt):
        low, high = figure.spread(key)
        return "%s [%s–%s]" % (fmt(figure.median(key)), fmt(low), fmt(high))

    def us(value):
        return "%.0f" % value

    def pct(value):
        return "%.1f%%" % (100 * value)

    figure = results.get(("dpool fair", "fair_apply_seq"))
    if figure is not None and not figure.ok():
        rows.append(["fair_apply_seq", "FAILED: " + figure.errors[-1], ""])
    elif figure is not None:
        n = fmt_count(figure.median("tasks"))
        rows.append(["sequential apply p50 µs, idle broker", cell(figure, "p50_idle_us", us),
                     "%s applies; p99 %.0f µs" % (n, figure.median("p99_idle_us"))])
        rows.append(["sequential apply p50 µs, another client's no-ops queued",
                     cell(figure, "p50_us", us),
                     "%s applies; p99 %.0f µs; that client's queue %s → %s" %
                     (n, figure.median("p99_us"), fmt_count(figure.median("queued_start")),
                      fmt_count(figure.median("queued_end")))])
    figure = results.get(("dpool fair", "fair_two"))
    if figure is not None and not figure.ok():
        rows.append(["fair_two", "FAILED: " + figure.errors[-1], ""])
    elif figure is not None:
        n = figure.median("tasks")
        rows.append(["no-ops/s, one client alone", cell(figure, "rate_alone", fmt_rate),
                     "%s no-ops" % fmt_count(n)])
        rows.append(["no-ops/s, two clients at once", cell(figure, "rate", fmt_rate),
                     "%s no-ops each" % fmt_count(n / 2)])
        window = figure.median("window_seconds")
        rows.append(["workers busy, one client of 1 ms tasks", cell(figure, "busy_alone", pct),
                     "the tasks' run time over %.1f s × %d workers" % (window, PROCS)])
        rows.append(["workers busy, two clients (1 ms and 2 ms tasks)", cell(figure, "busy", pct),
                     "the same window"])
        rows.append(["share of the workers' time, client A (1 ms tasks)",
                     cell(figure, "share_a", pct),
                     "%.0f tasks in the window" % figure.median("tasks_a")])
        rows.append(["share of the workers' time, client B (2 ms tasks)",
                     cell(figure, "share_b", pct),
                     "%.0f tasks in the window" % figure.median("tasks_b")])
    return rows


def fair_targets(results):
    """Issue 16 item 1's targets, each with what this run measured."""
    lines = []

    def verdict(ok):
        return "MET" if ok else "MISSED"

    figure = results.get(("dpool fair", "fair_apply_seq"))
    if figure and figure.ok():
        ratios = [run["p50_us"] / run["p50_idle_us"] for run in figure.runs if run["p50_idle_us"]]
        dry = min(run["queued_end"] for run in figure.runs) == 0
        ratio = statistics.median(ratios) if ratios else float("inf")
        lines.append("- sequential apply p50 while another client has %s no-ops queued: %.0f µs "
                     "= %.2f× its %.0f µs on the idle broker (target ≤ 2×)%s: %s" %
                     (fmt_count(figure.median("queued_start")), figure.median("p50_us"), ratio,
                      figure.median("p50_idle_us"),
                      "; that client's queue ran dry, so not measured" if dry else "",
                      verdict(ratio <= 2 and not dry)))
    figure = results.get(("dpool fair", "fair_two"))
    if figure and figure.ok():
        two, one = figure.median("rate"), figure.median("rate_alone")
        lines.append("- total throughput of no-ops, two busy clients: %s/s = %.0f%% of one "
                     "client alone's %s/s (target ≥ 95%%): %s" %
                     (fmt_rate(two), 100 * two / one, fmt_rate(one), verdict(two >= 0.95 * one)))
        two, one = figure.median("busy"), figure.median("busy_alone")
        lines.append("- total throughput of 1 ms and 2 ms tasks, two busy clients: workers busy "
                     "%.1f%% = %.0f%% of one client alone's %.1f%% (target ≥ 95%%): %s" %
                     (100 * two, 100 * two / one, 100 * one, verdict(two >= 0.95 * one)))
        shares = [run["share_a"] for run in figure.runs]
        lines.append("- share of the workers' time, two equally weighted busy clients (1 ms and "
                     "2 ms tasks): A %.1f%% / B %.1f%% (every run: A %.1f–%.1f%%; target 50%% ± "
                     "5%%): %s" %
                     (100 * figure.median("share_a"), 100 * figure.median("share_b"),
                      100 * min(shares), 100 * max(shares),
                      verdict(all(abs(share - 0.5) <= 0.05 for share in shares))))
    return lines


def render(headers, rows):
    """A Markdown table, columns padded so it also reads as plain text."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["| " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(headers)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(row)) + " |")
    return "\n".join(lines)


# Issue 19 item 1: payloads at the transport's speed, read like for like:
# the streamed echo (at most 1,000 in flight, each result dropped once
# collected) against the forwarder, whose client does the same with its
# replies; the held echo (Pool's way: everything submitted, every result kept
# to the end) against the forwarder keeping its replies. Each line also gives
# the held echo against the plain forwarder, and what keeping its replies
# costs ZeroMQ itself (keep ÷ plain), which bounds that cross ratio for any
# transport. The broker's peak for the 64 KiB stream is held to twice the
# data the forwarder keeps in flight (1,000 requests of 64 KiB), the stricter
# reading: dpool's held echo submits all its tasks at once.
ECHO_VS_FWD = 0.9
ECHO64K_IN_FLIGHT_KB = 1000 * 64


def payload_targets(results, rate):
    """Issue 19 item 1's targets: echo rates against the forwarder's, and
    the broker's peak RSS for the 64 KiB stream."""
    lines = []
    for workload in FWD_ECHO:
        stream = workload + "_stream"
        for system in DPOOL_SYSTEMS:
            fwd = transport_of(system)
            held, streamed = rate(system, workload), rate(system, stream)
            plain, keep = rate(fwd, workload), rate(fwd + " keep", workload)
            if not (held and streamed and plain and keep):
                continue
            ok = streamed >= ECHO_VS_FWD * plain and held >= ECHO_VS_FWD * keep
            lines.append("- %s, %s: streamed %.2f× the forwarder, held %.2f× the forwarder "
                         "keeping its replies (target ≥ %.1f× each): %s; held ÷ plain forwarder "
                         "%.2f× (the forwarder's own keep ÷ plain: %.2f×)" %
                         (workload, system, streamed / plain, held / keep, ECHO_VS_FWD,
                          "MET" if ok else "MISSED", held / plain, keep / plain))
    for system in ("dpool tcp", "dpool ipc"):
        figure = results.get((system, "echo64k"))
        if figure and figure.ok() and figure.median("rss_broker_kb"):
            kb = figure.median("rss_broker_kb")
            lines.append("- broker peak RSS, echo64k, %s: %.0f MiB (target ≤ 2 × %.1f MiB in "
                         "flight): %s" % (system, kb / 1024, ECHO64K_IN_FLIGHT_KB / 1024,
                                          "MET" if kb <= 2 * ECHO64K_IN_FLIGHT_KB else "MISSED"))
    return lines


def targets(results):
    """Issue 4 item 3's targets, each with what this run measured."""
    lines = []

    def rate(system, workload):
        figure = results.get((system, workload))
        return figure.median("rate") if figure and figure.ok() else None

    def p50(system, workload):
        figure = results.get((system, workload))
        return figure.median("p50_us") if figure and figure.ok() else None

    def verdict(ok):
        return "MET" if ok else "MISSED"

    for system in DPOOL_SYSTEMS:
        d, p = rate(system, "apply_async"), rate("pool", "apply_async")
        f = rate(transport_of(system), "throughput")
        if d and p and f:
            lines.append("- apply_async, %s: %.1f× Pool (target ≥ 15×), %.0f%% of the forwarder "
                         "(target ≥ 60%%): %s" %
                         (system, d / p, 100 * d / f, verdict(d >= 15 * p and d >= 0.6 * f)))
    for system in DPOOL_SYSTEMS:
        d, p = rate(system, "mapdef"), rate("pool", "mapdef")
        if d and p:
            lines.append("- map of no-ops (default chunksize), %s: %.2f× Pool.map's rate "
                         "(target ≥ 1×): %s" % (system, d / p, verdict(d >= p)))
    d, p = p50("dpool embedded", "apply_seq"), p50("pool", "apply_seq")
    if d and p:
        lines.append("- sequential apply p50, embedded: %.0f µs vs Pool.apply's %.0f µs "
                     "(target ≤): %s" % (d, p, verdict(d <= p)))
    for system in ("dpool tcp", "dpool ipc"):
        d, f = p50(system, "apply_seq"), p50(transport_of(system), "latency")
        if d and f:
            lines.append("- sequential apply p50, %s: %.0f µs = %.2f× the forwarder's %.0f µs "
                         "round trip (target ≤ 1.2×): %s" % (system, d, d / f, f,
                                                              verdict(d <= 1.2 * f)))
    for system in DPOOL_SYSTEMS:
        figure = results.get((system, "sleep"))
        if figure and figure.ok() and figure.median("ideal_seconds"):
            over = figure.median("seconds") / figure.median("ideal_seconds") - 1
            floor = results.get(("sleep floor", "sleep_floor"))
            note = ""
            if floor and floor.ok():
                note = " (this machine's floor: %.2f s, %.1f%% over)" % (
                    floor.median("seconds"),
                    100 * (floor.median("seconds") / floor.median("ideal_seconds") - 1))
            lines.append("- 1 ms sleeps, %s: %.2f s, %.1f%% over the ideal %.2f s (target ≤ 5%%)%s: "
                         "%s" % (system, figure.median("seconds"), 100 * over,
                                 figure.median("ideal_seconds"), note, verdict(over <= 0.05)))
    lines += payload_targets(results, rate)
    figure = results.get(("dpool broker", "broker_rss"))
    if figure and figure.ok():
        b = figure.median("bytes_per_task")
        lines.append("- broker memory per queued task beyond its payload: %.0f B (target ≤ 150 B): "
                     "%s" % (b, verdict(b <= 150)))
    figure = results.get(("dpool broker", "broker_idle"))
    if figure and figure.ok():
        c = figure.median("cpu_percent")
        lines.append("- broker CPU with %s idle workers: %.2f%% of a core (target < 2%%): %s" %
                     (fmt_count(figure.median("tasks")), c, verdict(c < 2)))
    return lines


# ---------------------------------------------------------------------------
# The machine and RESULTS.md.


def machine():
    """A short description of this machine, its load, and the code."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    debian = "?"
    try:
        with open("/etc/debian_version", encoding="utf-8") as version:
            debian = version.read().strip()
    except OSError:
        pass
    memory = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            memory = "%.0f GiB" % (int(meminfo.readline().split()[1]) / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass

    def output(command):
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False,
                                  cwd=REPO_DIR).stdout.strip()
        except OSError:
            return ""

    commit = output(["git", "rev-parse", "--short", "HEAD"]) or "?"
    dirty = output(["git", "status", "--porcelain", "--untracked-files=no", "--", "."])
    untracked = output(["git", "status", "--porcelain", "--", "client", "worker", "broker",
                        "proto"])
    return {
        "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "debian": debian,
        "memory": memory, "zmq": output(["pkg-config", "--modversion", "libzmq"]) or "?",
        "python": output([baseline_python(), "--version"]) or "?",
        "commit": commit + (" (with uncommitted changes in the work tree)"
                            if dirty or untracked else ""),
    }


class CpuAccount:
    """How much CPU the rest of the machine used while the benchmark ran:
    the machine's busy time (/proc/stat) less the CPU time of the
    benchmark's own processes (its waited children and itself)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        ticks = os.sysconf("SC_CLK_TCK")
        busy = 0.0
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(x) for x in stat.readline().split()[1:]]
            # user, nice, system: time charged to processes. Not irq and
            # softirq, where the kernel moves the benchmark's own loopback
            # traffic without charging it to anyone, nor steal.
            busy = (fields[0] + fields[1] + fields[2]) / ticks
        except (OSError, ValueError, IndexError):
            pass
        own = 0.0
        for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF):
            usage = resource.getrusage(who)
            own += usage.ru_utime + usage.ru_stime
        return time.monotonic(), busy, own

    def others_cores(self):
        """Cores' worth of CPU the other processes used on average so far."""
        now, busy, own = self._sample()
        wall = now - self.start[0]
        if wall <= 0:
            return 0.0
        return max(0.0, ((busy - self.start[1]) - (own - self.start[2])) / wall)


def worker_death(args, quick):
    """bench/worker_death.py on the build: time from SIGKILL of a busy worker
    process to its task running again (issue 18 item 7). Returns the
    report's section and its target line, or ("", None) when it cannot run."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.broker)))  # <build>/broker/
    needed = [os.path.join(build, *part) for part in
              (("broker", "dpool-broker"), ("worker", "dpool-worker"), ("cli", "dpool"))]
    if not all(os.access(path, os.X_OK) for path in needed):
        log("run.py: worker death skipped: dpool-broker, dpool-worker or dpool missing in %s"
            % build)
        return "", None
    runs = 3 if quick else 21
    log("run.py: worker death, %d kills" % runs)
    done = subprocess.run([sys.executable, os.path.join(BENCH_DIR, "worker_death.py"), build,
                           "--runs", str(runs), "--sleep", "0.3", "--json"],
                          capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        log("run.py: worker death failed: %s" % (done.stderr.strip() or done.returncode))
        return "", None
    figures = json.loads(lines[-1])
    ms = figures["runs"]
    section = ("## Worker death (bench/worker_death.py)\n\n"
               "Time from SIGKILL of a worker process running a task to that task running on "
               "the other process (`dpool-worker --procs 2`, broker expiry 30 s, so only the "
               "closed connection can make it quick): median %.1f ms [%.1f–%.1f] over %d kills."
               "\n\n" % (figures["median_ms"], min(ms), max(ms), len(ms)))
    target = ("- worker process SIGKILLed to its task running elsewhere: median %.1f ms "
              "(target ≤ 100 ms; Dask: 2.3 s): %s"
              % (figures["median_ms"], "MET" if figures["median_ms"] <= 100 else "MISSED"))
    return section, target


def exec_vs_parallel(args, quick):
    """bench/exec_parallel.py on the build: 1,000 `true` commands through
    dpool map --exec and through parallel -j2 (issue 14 item 5). Returns the
    report's section and its target line (None when skipped)."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.broker)))  # <build>/broker/
    lines, runs = (50, 1) if quick else (1000, 3)
    log("run.py: dpool map --exec against parallel -j2, %d commands, %d runs" % (lines, runs))
    done = subprocess.run([sys.executable, os.path.join(BENCH_DIR, "exec_parallel.py"), build,
                           "--lines", str(lines), "--runs", str(runs), "--json"],
                          capture_output=True, text=True, timeout=900)
    out = done.stdout.strip().splitlines()
    title = "## Shell commands as tasks (bench/exec_parallel.py)\n\n"
    if done.returncode != 0 or not out:
        log("run.py: exec_parallel.py failed: %s" % (done.stderr.strip() or done.returncode))
        return title + "FAILED: %s\n\n" % (done.stderr.strip() or done.returncode), None
    figures = json.loads(out[-1])
    if "skipped" in figures:
        return title + "skipped: %s\n\n" % figures["skipped"], None
    d, p = figures["dpool_median_s"], figures["parallel_median_s"]
    section = title + ("%d `true` commands, 2 worker processes (`dpool-worker --procs 2 "
                       "--allow-exec=true`) against `parallel -j2 true` on the same lines, "
                       "each timed from start to exit: dpool map --exec %.3f s [%.3f–%.3f], "
                       "parallel %.3f s [%.3f–%.3f] (medians of %d runs, interleaved).\n\n"
                       % (lines, d, min(figures["dpool_s"]), max(figures["dpool_s"]), p,
                          min(figures["parallel_s"]), max(figures["parallel_s"]), runs))
    target = ("- %d true commands: dpool map --exec %.3f s vs parallel -j2 %.3f s, %.1f× as "
              "fast (target > 1×): %s" % (lines, d, p, p / d, "MET" if d < p else "MISSED"))
    return section, target


def spmd(args, quick):
    """bench/spmd.py on the build: an SPMD job under mpirun -n 4 against
    mpi4py.futures, start-up and a 100,000-task map (issue 14 item 5).
    Returns the report's section and its target line, or ("", None) when it
    cannot run."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.broker)))  # <build>/broker/
    if not os.access(os.path.join(build, "bench", "spmd_bench"), os.X_OK):
        log("run.py: SPMD skipped: no spmd_bench in %s (a build without MPI)" % build)
        return "", None
    runs, tasks = (1, 1000) if quick else (3, 100_000)
    log("run.py: SPMD, %d run(s) of %d tasks" % (runs, tasks))
    done = subprocess.run([sys.executable, os.path.join(BENCH_DIR, "spmd.py"), build,
                           "--runs", str(runs), "--tasks", str(tasks), "--json"],
                          capture_output=True, text=True, timeout=3600)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        log("run.py: SPMD failed: %s" % (done.stderr.strip() or done.returncode))
        return "", None
    figures = json.loads(lines[-1])
    dpool, peer = figures["dpool"], figures["mpi4py"]

    def cell(runs_s):
        if not runs_s:
            return "-"
        return "%.3f [%.3f–%.3f]" % (statistics.median(runs_s), min(runs_s), max(runs_s))

    rows = [["start-up to the first result", cell(dpool["startup"]),
             cell(peer.get("startup", []))],
            ["map of %s, chunksize 1" % fmt_count(tasks), cell(dpool["map1"]),
             cell(peer.get("map1", []))],
            ["map of %s, default chunksize" % fmt_count(tasks), cell(dpool["mapdef"]),
             cell(peer.get("map1", []))]]
    section = ("## SPMD under mpirun (bench/spmd.py)\n\n"
               "4 ranks, 3 of them workers, on this host: `mpirun -n 4 spmd_bench` "
               "(dpool_pool_spmd, MPI bootstrap) against `mpiexec -n 4 python3 -m "
               "mpi4py.futures spmd_mpi4py.py`, both squaring integers; seconds, median "
               "[range] over %d run(s). Start-up runs from the launcher's start to the first "
               "result in rank 0; maps start once every worker is up (mpi4py's default "
               "chunksize is 1).\n\n" % runs)
    section += render(["figure", "dpool s", "mpi4py s"], rows) + "\n\n"
    if "skipped" in peer:
        section += "mpi4py: %s\n\n" % peer["skipped"]
        return section, ("- SPMD vs mpi4py.futures: not measured (%s): MISSED"
                         % peer["skipped"])
    start_ok = statistics.median(dpool["startup"]) < statistics.median(peer["startup"])
    map_ok = statistics.median(dpool["map1"]) < statistics.median(peer["map1"])
    target = ("- SPMD under mpirun -n 4 faster than mpi4py.futures: start-up %.3f s vs %.3f s, "
              "map of %s (chunksize 1) %.3f s vs %.3f s: %s"
              % (statistics.median(dpool["startup"]), statistics.median(peer["startup"]),
                 fmt_count(tasks), statistics.median(dpool["map1"]),
                 statistics.median(peer["map1"]), "MET" if start_ok and map_ok else "MISSED"))
    return section, target


def idmap(args, quick):
    """bench_idmap on the build: proto/dp_idmap against CZMQ's zhashx on
    the broker's id-map pattern (issue 17 item 5). Returns the report's
    section and its target line (None when it cannot run)."""
    build = os.path.dirname(os.path.dirname(os.path.abspath(args.broker)))  # <build>/broker/
    program = os.path.join(build, "bench", "bench_idmap")
    title = "## Id maps: dp_idmap against zhashx (bench/bench_idmap.c)\n\n"
    if not os.access(program, os.X_OK):
        log("run.py: id maps skipped: no bench_idmap in %s" % build)
        return title + "skipped: no bench_idmap in the build\n\n", None
    command = [program, "--json"] + (["--sizes", "1e3", "--runs", "1"] if quick else [])
    log("run.py: id maps: %s" % " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not rows:
        log("run.py: bench_idmap failed: %s" % (done.stderr.strip() or done.returncode))
        return title + "FAILED: %s\n\n" % (done.stderr.strip() or done.returncode), None
    base = {r["size"]: r["churn_ns"] for r in rows if r["map"].startswith("dp_idmap")}
    table = [[fmt_count(r["size"]), r["map"], "%.1f" % r["fill_ns"], "%.1f" % r["lookup_ns"],
              "%.1f" % r["churn_ns"], "%.2f×" % (r["churn_ns"] / base[r["size"]])]
             for r in rows]
    section = title + ("The broker's id maps' pattern, in one process, each map in turn: "
                       "ids that count up, put into an empty map (fill), got at random among "
                       "the live ones (lookup), and a sliding window of live ids (churn: put "
                       "the next, get it, remove the oldest, per task). ns per operation, "
                       "median of %s run(s). Command: `%s`.\n\n"
                       % ("1" if quick else "3", " ".join(["bench_idmap"] + command[1:])))
    section += render(["live ids", "map", "fill ns/put", "lookup ns/get",
                       "churn ns/task", "churn vs dp_idmap"], table) + "\n\n"
    worse = [fmt_count(size) for size, ns in base.items()
             if any(r["size"] == size and not r["map"].startswith("dp_idmap")
                    and r["churn_ns"] < ns for r in rows)]
    target = ("- dp_idmap's churn faster than every zhashx's at every size: %s"
              % ("MET" if not worse else "MISSED (zhashx faster at %s live ids)"
                 % ", ".join(worse)))
    return section, target


def load_text():
    one, five, fifteen = os.getloadavg()
    return "%.2f %.2f %.2f" % (one, five, fifteen)


def write_results(path, report, info, loads, runs, started, seconds):
    with open(path, "w", encoding="utf-8") as out:
        out.write("# dpool benchmark results\n\n")
        out.write("Written by `bench/run.py` (see bench/README.md for what each figure is); "
                  "the latest run replaces this file.\n\n")
        out.write("- date: %s (took %.0f s)\n" % (started, seconds))
        out.write("- machine: %s, %d cores, %s RAM; kernel %s; Debian %s\n" %
                  (info["cpu"], info["cores"], info["memory"], info["kernel"], info["debian"]))
        out.write("- load average (1/5/15 min): %s at the start, %s at the end (the end "
                  "includes the benchmark's own processes); CPU used by other processes during "
                  "the run: %.2f cores on average (machine busy time less the benchmark's own)\n"
                  % loads)
        out.write("- software: libzmq %s; %s; dpool at %s\n" %
                  (info["zmq"], info["python"], info["commit"]))
        out.write("- runs: %d per figure, interleaved; cells are the median [min–max]; a system "
                  "that would take over %.0f s for one run of a high-count workload ran a smaller "
                  "count (column n)\n\n" % (runs, BUDGET_S))
        out.write(report)
        out.write("\n")


def main():
    parser = argparse.ArgumentParser(description="dpool's benchmark, side by side with its peers.")
    parser.add_argument("--quick", action="store_true",
                        help="every workload tiny, one run (smoke test); no RESULTS.md")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument("--scale", type=float,
                        help="multiply every count (default 1; %g with --quick)" % QUICK_SCALE)
    parser.add_argument("--build-dir", default=os.path.join(REPO_DIR, "build-bench"))
    parser.add_argument("--no-build", action="store_true", help="use the programs as built")
    parser.add_argument("--cmake-source", help=argparse.SUPPRESS)
    parser.add_argument("--forwarder", help="path of the forwarder program (implies --no-build)")
    parser.add_argument("--dpool-bench", help="path of dpool_bench (implies --no-build)")
    parser.add_argument("--broker", help="path of dpool-broker (implies --no-build)")
    parser.add_argument("--results", help="write the results here (default bench/RESULTS.md; "
                        "none with --quick)")
    parser.add_argument("--only", help="comma-separated systems to run (e.g. 'pool,dpool ipc'; "
                        "also 'worker death', 'exec', 'spmd', 'idmap')")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    scale = args.scale or (QUICK_SCALE if args.quick else 1.0)
    timeout = QUICK_TIMEOUT_S if args.quick else TIMEOUT_S
    given = args.forwarder or args.dpool_bench or args.broker
    if not (args.no_build or given):
        build(args)
    locate(args)

    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load_start = load_text()
    account = CpuAccount()
    t0 = time.monotonic()
    python = baseline_python()
    mpi, mpi_skip = mpi_setup(python)
    skipped = {"mpi": mpi_skip} if mpi_skip else {}
    if mpi_skip:
        log("run.py: mpi %s" % mpi_skip)
    only = set(s.strip() for s in args.only.split(",")) if args.only else None

    def wanted(job):
        return not only or job.system in only

    scales = {}
    if not args.quick:
        scales = pilot(args, scale, mpi, wanted, timeout)
    results = {}
    raw = None
    if not args.quick:
        os.makedirs(args.build_dir, exist_ok=True)
        raw = open(os.path.join(args.build_dir, "bench-raw.jsonl"), "w", encoding="utf-8")
        log("run.py: every measurement is also logged to %s" % raw.name)
    netns = slow_many.Netns(log)
    if not only or slow_many.SLOW_SYSTEM in only:
        netns.make()
    try:
        failed = run_all(args, runs, scale, mpi, scales, netns, wanted, timeout, results, raw)
    finally:
        netns.remove()
    if raw:
        raw.close()
    report_and_write(args, runs, results, skipped, only, netns, account, t0, started,
                     load_start)
    return 1 if failed else 0


def run_all(args, runs, scale, mpi, scales, netns, wanted, timeout, results, raw):
    """Every job of every run, interleaved; fills results. True if a job
    whose failure is fatal failed."""
    failed = False
    for run in range(runs):
        jobs = make_jobs(args, scale, mpi, scales)
        jobs += slow_many.make_jobs(args, scale, args.quick, netns, Job)
        for job in jobs:
            if not wanted(job):
                continue
            log("run.py: run %d/%d: %s %s" % (run + 1, runs, job.system, job.workload))
            figures, error = run_job(job, timeout)
            if raw:
                raw.write(json.dumps({"run": run + 1, "system": job.system,
                                      "workload": job.workload, "command": job.command,
                                      "figures": figures, "error": error}) + "\n")
                raw.flush()
            figure = results.setdefault((job.system, job.workload), Figure())
            if figures is not None:
                figure.runs.append(figures)
            else:
                figure.errors.append(error)
                log("run.py:   failed: %s" % error)
                if job.fatal:
                    failed = True
    return failed


def report_and_write(args, runs, results, skipped, only, netns, account, t0, started,
                     load_start):
    """The sections run after the jobs, the report, RESULTS.md."""
    death_section, death_target = "", None
    if not only or "worker death" in only:
        death_section, death_target = worker_death(args, args.quick)
    exec_section, exec_target = "", None
    if not only or "exec" in only:
        exec_section, exec_target = exec_vs_parallel(args, args.quick)
    spmd_section, spmd_target = "", None
    if not only or "spmd" in only:
        spmd_section, spmd_target = spmd(args, args.quick)
    idmap_section, idmap_target = "", None
    if not only or "idmap" in only:
        idmap_section, idmap_target = idmap(args, args.quick)
    seconds = time.monotonic() - t0
    load_end = load_text()
    others = account.others_cores()

    headers = ["workload", "system", "n", "tasks/s median [range]", "p50/p99 µs",
               "peak RSS MiB main/worker/broker", "vs best peer", "vs transport"]
    report = "## Side by side (2 worker processes each)\n\n"
    report += render(headers, pool_rows(results, skipped)) + "\n\n"
    rows = broker_rows(results)
    if rows:
        report += "## Broker alone (dpool-broker over tcp loopback, no client library)\n\n"
        report += render(["workload", "n", "median [range]", "notes"], rows) + "\n\n"
    rows = journal_rows(results)
    if rows:
        report += ("## The broker's journal (dpool tcp, journaled with --sync %s, against "
                   "in-memory)\n\n" % JOURNAL_SYNC)
        report += render(["workload", "n", "in-memory tasks/s", "journaled tasks/s median "
                          "[range]", "journaled / in-memory"], rows) + "\n\n"
    rows = fair_rows(results)
    if rows:
        report += ("## Fair share between clients (one dpool-broker over tcp, %d workers, two "
                   "clients at once)\n\n" % PROCS)
        report += render(["figure", "median [range]", "notes"], rows) + "\n\n"
    slow_text, slow_lines = slow_many.slow_section(results, netns, render)
    many_text, many_lines = slow_many.many_section(results, render, fmt_rate)
    report += slow_text + many_text
    report += death_section + exec_section + spmd_section + idmap_section
    lines = targets(results) + fair_targets(results) + journal_targets(results)
    lines += slow_lines + many_lines
    lines += [t for t in (death_target, exec_target, spmd_target, idmap_target) if t]
    if lines:
        report += "## Targets on these figures\n\n" + "\n".join(lines) + "\n"
    if args.quick:
        report = ("**Quick mode: every workload tiny, one run. These figures only show that "
                  "the benchmark works; they measure nothing.**\n\n" + report)
    print(report)
    print("load average %s at the start, %s at the end (the benchmark's own processes "
          "included); other processes used %.2f cores on average; %d run(s) in %.0f s" %
          (load_start, load_end, others, runs, seconds))

    results_path = args.results or (None if args.quick else os.path.join(BENCH_DIR, "RESULTS.md"))
    if results_path:
        write_results(results_path, report, machine(), (load_start, load_end, others), runs,
                      started, seconds)
        log("run.py: wrote %s" % results_path)


if __name__ == "__main__":
    sys.exit(main())

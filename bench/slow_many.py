"""slow_many.py - run.py's slow-link and many-worker figures (issue 19 items
2 and 3): the jobs, the network namespace the slow link's workers run in,
the tables and the targets. Imported by run.py; not a program of its own.

Slow link: dpool_bench's `sleep` (10,000 tasks of 1 ms on 2 workers) and
`apply_seq` (500 sequential applies) over tcp, three ways in the same run:
the workers on loopback (the baseline), and the workers behind
delay_relay (bench/delay_relay.c) with no delay and with a 10 ms round
trip. As root with iproute2, the workers run in a network namespace of
their own, joined to this one by a veth pair; the relay listens on this
side's end of it and connects to the broker on loopback. Without root,
the relay listens on loopback (the table says so).

Many workers: dpool_bench's `broker_many` (bench/bench_many.c), 10, 100
and 1,000 fake workers draining 1,000,000 no-ops, each count against a
broker of its own, in one process per run.
"""

import os
import shutil
import statistics
import subprocess

SLOW_DELAY_MS = 10
SLOW_SLEEP_SCALE = 1.0  # sleep: 10,000 tasks of 1 ms
SLOW_SEQ_SCALE = 0.05  # apply_seq: 500 of its 10,000 (each costs a round trip)
SLOW_CONFIGS = [("loopback", None), ("relay 0 ms", 0), ("relay %d ms" % SLOW_DELAY_MS,
                                                          SLOW_DELAY_MS)]
SLOW_SYSTEM = "dpool slow link"
MANY_SYSTEM = "dpool many"
MANY_COUNTS = [10, 100, 1000]
QUICK_MANY_COUNTS = [2, 5, 10]
HEARTBEAT_MS = 1000  # DP_HEARTBEAT_MS, the broker's default
NETNS_PREFIX = "dpool-bench-"


class Netns:
    """A network namespace for the slow link's workers, joined to this one
    by a veth pair with a /30 of its own; made by make() when this process
    can (root, iproute2), removed by remove(). host is the address the relay
    listens on: this side's end of the pair, or 127.0.0.1 without one."""

    def __init__(self, log):
        self.log = log
        self.name = None
        self.host = "127.0.0.1"
        self.why_not = None
        self.made = False
        self.ip = shutil.which("ip") or ("/usr/sbin/ip" if os.access("/usr/sbin/ip", os.X_OK)
                                         else None)

    def _ip(self, *args):
        return subprocess.run([self.ip] + list(args), capture_output=True, text=True,
                              check=False, timeout=30)

    def make(self):
        if os.geteuid() != 0 or not self.ip:
            self.why_not = "not root" if os.geteuid() != 0 else "no iproute2"
            return
        pid = os.getpid()
        name = NETNS_PREFIX + str(pid)
        n = pid % 65536
        base = "10.%d.%d.%d" % (128 + (n >> 14), (n >> 6) & 255, (n & 63) * 4)
        prefix = base.rsplit(".", 1)[0]
        last = int(base.rsplit(".", 1)[1])
        host, inside = "%s.%d" % (prefix, last + 1), "%s.%d" % (prefix, last + 2)
        outer, inner = "dpb%dh" % pid, "dpb%dn" % pid
        steps = [("netns", "add", name),
                 ("link", "add", outer, "type", "veth", "peer", "name", inner),
                 ("link", "set", inner, "netns", name),
                 ("addr", "add", host + "/30", "dev", outer),
                 ("link", "set", outer, "up"),
                 ("-n", name, "addr", "add", inside + "/30", "dev", inner),
                 ("-n", name, "link", "set", inner, "up"),
                 ("-n", name, "link", "set", "lo", "up")]
        self.name = name
        self.outer = outer
        for step in steps:
            done = self._ip(*step)
            if done.returncode != 0:
                self.why_not = "ip %s: %s" % (" ".join(step), done.stderr.strip())
                self.log("run.py: slow link without a namespace (%s)" % self.why_not)
                self.remove()
                return
        self.host = host
        self.made = True

    def remove(self):
        if self.name:
            self._ip("link", "delete", self.outer)
            self._ip("netns", "delete", self.name)
            self.name = None
            self.host = "127.0.0.1"

    def describe(self):
        if self.made:
            return ("the workers in a network namespace of their own, joined to the broker's by "
                    "a veth pair; the relay on this side's end of it")
        return "the workers and the relay on loopback (%s: no namespace)" % self.why_not


def make_jobs(args, scale, quick, netns, Job):
    """The slow-link and many-worker jobs of one run."""
    jobs = []
    base = [args.dpool_bench, "--mode", "tcp", "--procs", "2", "--broker-bin", args.broker]
    for label, delay in SLOW_CONFIGS:
        link = []
        if delay is not None:
            link = ["--relay-delay-ms", str(delay), "--relay-bin", args.relay, "--relay-host",
                    netns.host]
            if netns.name:
                link += ["--netns", netns.name]
        for workload, own in (("sleep", SLOW_SLEEP_SCALE), ("apply_seq", SLOW_SEQ_SCALE)):
            jobs.append(Job(SLOW_SYSTEM, "%s %s" % (workload, label),
                            base + ["--workload", workload, "--scale", "%g" % (own * scale)]
                            + link))
    counts = QUICK_MANY_COUNTS if quick else MANY_COUNTS
    jobs.append(Job(MANY_SYSTEM, "broker_many",
                    [args.dpool_bench, "--workload", "broker_many", "--scale", "%g" % scale,
                     "--many-workers", ",".join(str(c) for c in counts), "--broker-bin",
                     args.broker]))
    return jobs


def _cell(values, fmt):
    if not values:
        return "-"
    return "%s [%s–%s]" % (fmt(statistics.median(values)), fmt(min(values)), fmt(max(values)))


def _values(figure, key):
    return [run[key] for run in figure.runs if key in run] if figure and figure.ok() else []


def slow_section(results, netns, render):
    """The slow-link section and its target lines; render is run.py's
    table maker."""
    rows, lines = [], []
    base_sleep = base_seq = None
    for label, delay in SLOW_CONFIGS:
        sleep = results.get((SLOW_SYSTEM, "sleep " + label))
        seq = results.get((SLOW_SYSTEM, "apply_seq " + label))
        if sleep is None and seq is None:
            continue
        err = [f.errors[-1] for f in (sleep, seq) if f is not None and not f.ok()]
        if err:
            rows.append([label, "FAILED: " + err[0], "", "", ""])
            continue
        secs, p50s = _values(sleep, "seconds"), _values(seq, "p50_us")
        s, p = statistics.median(secs), statistics.median(p50s)
        if delay is None:
            base_sleep, base_seq = s, p
        vs = "%+.1f%%" % (100 * (s / base_sleep - 1)) if base_sleep else ""
        extra = "%+.2f ms" % ((p - base_seq) / 1000) if base_seq is not None else ""
        rows.append([label, _cell(secs, lambda v: "%.2f" % v), vs,
                     _cell(p50s, lambda v: "%.0f" % v), extra])
        if delay and base_sleep:
            over = s / base_sleep - 1
            base_secs = _values(results.get((SLOW_SYSTEM, "sleep loopback")), "seconds")
            per_run = ""
            if len(base_secs) == len(secs) > 1:
                ratios = ", ".join("%+.0f%%" % (100 * (a / b - 1))
                                   for a, b in zip(secs, base_secs))
                per_run = " (each run against its own loopback run: %s)" % ratios
            lines.append("- 10,000 × 1 ms on 2 workers across a %d ms round trip: %.2f s vs "
                         "%.2f s over loopback, %+.1f%% (target ≤ +10%%): %s%s"
                         % (delay, s, base_sleep, 100 * over, "MET" if over <= 0.10 else "MISSED",
                            per_run))
        if delay and base_seq is not None:
            extra_ms = (p - base_seq) / 1000
            lines.append("- sequential apply across a %d ms round trip: p50 %.2f ms, %.2f ms more "
                         "than over loopback (target: one round trip, ≤ %.1f ms more): %s"
                         % (delay, p / 1000, extra_ms, 1.1 * delay,
                            "MET" if extra_ms <= 1.1 * delay else "MISSED"))
    if not rows:
        return "", []
    figure = results.get((SLOW_SYSTEM, "sleep loopback"))
    n_sleep = "{:,}".format(int(figure.median("tasks"))) if figure and figure.ok() else "?"
    figure = results.get((SLOW_SYSTEM, "apply_seq loopback"))
    n_seq = "{:,}".format(int(figure.median("tasks"))) if figure and figure.ok() else "?"
    section = ("## Slow link (bench/delay_relay.c between the workers and the broker)\n\n"
               "`dpool_bench --mode tcp --procs 2`, %s; delay_relay holds every chunk of bytes "
               "half the round trip in each direction. `sleep`: %s tasks of 1 ms on 2 workers, "
               "seconds; `apply_seq`: %s sequential applies of a no-op, p50 µs. Every row of "
               "the same run, interleaved; cells are the median [min–max].\n\n"
               % (netns.describe(), n_sleep, n_seq))
    section += render(["link", "sleep s", "vs loopback", "apply_seq p50 µs",
                        "p50 − loopback's"], rows) + "\n\n"
    return section, lines


def many_section(results, render, fmt_rate):
    """The many-worker section and its target lines; render and fmt_rate
    are run.py's."""
    figure = results.get((MANY_SYSTEM, "broker_many"))
    if figure is None:
        return "", []
    if not figure.ok():
        return ("## Many workers (bench/bench_many.c)\n\nFAILED: %s\n\n" % figure.errors[-1],
                ["- 1,000 busy workers: not measured (failed): MISSED"])
    runs = [run["many"] for run in figure.runs if "many" in run]
    counts = [int(w) for w in runs[0]["workers"]]
    rows, medians = [], {}
    for k, count in enumerate(counts):
        rate = [r["rate"][k] for r in runs]
        cpu = [r["cpu_us"][k] for r in runs]
        join = [r["join_ms"][k] for r in runs if r["join_ms"][k] >= 0]
        medians[count] = (statistics.median(rate), statistics.median(cpu),
                          statistics.median(join) if join else None, max(join) if join else None,
                          len(join) < len(runs))
        rows.append([str(count), _cell(rate, fmt_rate), "", _cell(cpu, lambda v: "%.2f" % v),
                     _cell(join, lambda v: "%.0f" % v) if join else "none (queue ran dry)"])
    first = counts[0]
    for row, count in zip(rows, counts):
        row[2] = "%.2f×" % (medians[count][0] / medians[first][0])
    section = ("## Many workers (bench/bench_many.c)\n\n"
               "`dpool_bench --workload broker_many`: for each count, a dpool-broker of its own "
               "(tcp loopback) and that many fake workers (DEALERs of one process, credit 512, "
               "answering each DISPATCH at once, each no-op said to run 1 µs) drain 1,000,000 "
               "no-ops of one client. The rate runs from the first submit to the last result; "
               "the broker's CPU time over the same span, per task, is its cost per task free "
               "of the fake workers' (one process polling every socket, whose own cost grows "
               "with the count). Once a tenth of the tasks are done, one more worker (a thread "
               "with a ZeroMQ context of its own) joins: its wait from READY to its first "
               "DISPATCH. %d run(s), interleaved with the rest.\n\n" % len(runs))
    section += render(["workers", "no-ops/s median [range]", "vs %d" % first,
                        "broker CPU µs/task", "newcomer's wait ms"], rows) + "\n\n"
    lines = []
    last = counts[-1]
    ratio = medians[last][0] / medians[first][0]
    cpu_ratio = medians[last][1] / medians[first][1] if medians[first][1] else 0
    lines.append("- %d busy workers: %.0f%% of the throughput at %d (target ≥ 90%%): %s"
                 % (last, 100 * ratio, first, "MET" if ratio >= 0.9 else "MISSED"))
    lines.append("- the broker's dispatch cost per task does not grow with the workers: "
                 "%.2f µs of its CPU per task at %d, %.2f µs at %d, %.2f× (target ≤ 1.1×): "
                 "%s"
                 % (medians[last][1], last, medians[first][1], first, cpu_ratio,
                    "MET" if 0 < cpu_ratio <= 1.1 else "MISSED"))
    join, worst, dry = medians[last][2], medians[last][3], medians[last][4]
    if join is None:
        lines.append("- a worker joining %d busy ones: never got work before the queue ran dry: "
                     "MISSED" % last)
    else:
        lines.append("- a worker joining %d busy ones gets its first job in %.0f ms median, %.0f "
                     "ms at worst (target ≤ one heartbeat, %d ms): %s%s"
                     % (last, join, worst, HEARTBEAT_MS,
                        "MET" if worst <= HEARTBEAT_MS and not dry else "MISSED",
                        " (in some runs none came)" if dry else ""))
    return section, lines

"""Real brokers and workers for the Python package's tests.

The programs come from the build: DPOOL_BROKER_BIN, DPOOL_WORKER_BIN and
DPOOL_CLI_BIN (tests/python.cmake sets them). Every broker binds an ipc://
path in a directory of its own, so tests run in parallel without
colliding; every process started is stopped by its pid. Waiting is always
for a condition, with a deadline.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)
sys.path.insert(0, PACKAGE)

import dpool  # noqa: E402

BROKER = os.environ.get("DPOOL_BROKER_BIN", "dpool-broker")
WORKER = os.environ.get("DPOOL_WORKER_BIN", "dpool-worker")
CLI = os.environ.get("DPOOL_CLI_BIN", "dpool")
DEADLINE = 20.0


def wait_for(condition, deadline=DEADLINE, what="a condition"):
    """Polls condition every 20 ms until it is true; fails after deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out after %g s waiting for %s" % (deadline, what))


class Cluster:
    """A broker, and workers of either kind, on an ipc endpoint of its own."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dpool-py-")
        self.endpoint = "ipc://%s/broker.ipc" % self.dir
        self.processes = []
        self.broker = None

    def env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE + os.pathsep + HERE + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("DPOOL_CONNECT", None)
        return env

    def _start(self, argv, log):
        out = open(os.path.join(self.dir, log), "ab")
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                   start_new_session=True)
        out.close()
        self.processes.append(process)
        return process

    def start_broker(self, *args):
        self.broker = self._start([BROKER, "--bind", self.endpoint] + list(args), "broker.log")
        wait_for(lambda: os.path.exists(self.endpoint[len("ipc://"):]), what="the broker's socket")
        return self.broker

    def start_c_workers(self, procs=2, *args):
        return self._start([WORKER, "--connect", self.endpoint, "--procs", str(procs)]
                           + list(args), "c-worker.log")

    def start_py_workers(self, procs=2, *args):
        return self._start([sys.executable, "-m", "dpool.worker", "--connect", self.endpoint,
                            "--procs", str(procs)] + list(args), "py-worker.log")

    def pool(self, **kwargs):
        return dpool.Pool(broker=self.endpoint, **kwargs)

    def wait_workers(self, pool, count, function=None):
        """Waits until the broker has count workers (offering function)."""
        def enough():
            workers = pool.status()["workers"]
            if function is not None:
                workers = [w for w in workers if function in w["functions"]]
            return len(workers) >= count
        wait_for(enough, what="%d workers" % count)

    def cli(self, *args, stdin=None, timeout=DEADLINE):
        return subprocess.run([CLI] + list(args) + ["--connect", self.endpoint], input=stdin,
                              capture_output=True, timeout=timeout, env=self.env())

    def stop(self, process, sig=signal.SIGTERM):
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def close(self):
        for process in reversed(self.processes):
            self.stop(process)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

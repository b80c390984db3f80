"""dpool.worker: serves Python functions to a dpool broker's clients, C or
Python (docs/PROTOCOL.md section 5.2).

    python3 -m dpool.worker --connect tcp://HOST:5555 --procs 4 \\
        --module mytasks --function math.sqrt

A Worker's I/O thread (the caller of serve) owns its connection: READY,
heartbeats, DISPATCH in, DONE out. Its task thread runs one job at a time,
in the order received. A job's arguments are a function's positional
arguments when they are an array (what dpool.Pool and `dpool apply` send;
a C map over arrays therefore reaches a Python function as a starmap), its
one argument otherwise, and [args, kwargs] in the ext type 1 that
dpool.Pool uses for keyword arguments. A chunk (flags bit 0) is a list of
such argument items, one call each, and its value the list of their
[code, value] pairs, in order. A function's exception fails the call
EFAILED with "NAME: message"; a value msgpack cannot carry fails it too.
"""

import argparse
import collections
import ctypes
import importlib
import inspect
import itertools
import os
import queue
import signal
import socket
import sys
import threading
import time

import msgpack
import zmq

from . import _proto as proto
from ._link import Calls, Link
from .pool import KWARGS_EXT

DEFAULT_CREDIT = 64


def resolve(name):
    """The callable a dotted name names: the longest importable module
    prefix, then attributes (no name part may start with '__')."""
    parts = name.split(".")
    if any(part.startswith("__") or not part for part in parts):
        raise ValueError("%s: not a function name this worker serves" % name)
    for cut in range(len(parts) - 1, 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            target = getattr(target, part)
        if not callable(target):
            raise ValueError("%s is not callable" % name)
        return target
    raise ValueError("%s: no module of it can be imported" % name)


def module_functions(module_name):
    """{MODULE.NAME: function} for every public function MODULE defines."""
    module = importlib.import_module(module_name)
    return {"%s.%s" % (module_name, name): fn
            for name, fn in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(fn)
            and fn.__module__ == module.__name__}


def _failure(exc):
    text = "%s: %s" % (type(exc).__name__, exc)
    data = text.encode("utf-8", "replace")[:proto.MAX_ERROR]
    return data.decode("utf-8", "ignore")


def call(fn, args):
    """(code, value) of one call."""
    try:
        if isinstance(args, msgpack.ExtType) and args.code == KWARGS_EXT:
            positional, keywords = msgpack.unpackb(args.data, raw=False)
            if not isinstance(positional, list) or not isinstance(keywords, dict):
                return proto.EINVAL, "keyword arguments of another shape"
            value = fn(*positional, **keywords)
        elif isinstance(args, list):
            value = fn(*args)
        else:
            value = fn(args)
    except Exception as exc:
        return proto.EFAILED, _failure(exc)
    try:
        msgpack.packb(value, use_bin_type=True)
    except Exception as exc:
        return proto.EFAILED, _failure(TypeError("its result cannot travel as msgpack: %s" % exc))
    return proto.OK, value


class Worker:
    """A worker process serving functions registered by name."""

    def __init__(self, broker=None, functions=None, *, name=None, credit=DEFAULT_CREDIT,
                 curve_server=None, curve_secret=None):
        self.endpoint = broker or os.environ.get("DPOOL_CONNECT") or "tcp://127.0.0.1:5555"
        self.functions = dict(functions or {})
        self.name = name or "python-worker-%d" % os.getpid()
        if not 1 <= credit <= proto.MAX_CREDIT:
            raise ValueError("credit is 1 to %d" % proto.MAX_CREDIT)
        self.credit = credit
        self.curve = (curve_server, curve_secret)
        self._stop = threading.Event()
        self.done = 0

    def register(self, fn, name=None):
        """Offers fn under name (default MODULE.QUALNAME, the name
        dpool.Pool gives a Python callable)."""
        from .pool import function_name
        self.functions[function_name(name or fn)] = fn
        return fn

    def stop(self):
        self._stop.set()

    def serve(self):
        """Registers and runs jobs until stop() (or SIGTERM/SIGINT when
        run by main); says BYE on the way out: jobs held go back to the
        broker's queue."""
        if not self.functions:
            raise ValueError("a worker offers at least one function")
        _Serving(self).run()


class _Serving:
    """One serve(): the I/O thread's state."""

    def __init__(self, worker):
        self.worker = worker
        self.context = zmq.Context()
        host = socket.gethostname()
        names = sorted(worker.functions)
        self.link = Link(self.context, worker.endpoint,
                         lambda: proto.ready(worker.name, os.getpid(), host, worker.credit,
                                             names), *worker.curve)
        self.link.idle = True
        self.generation = 0  # a registration's number: jobs of older ones are dropped
        self.held = {}       # ref -> job, of this registration
        self.jobs = queue.Queue()
        self.results = collections.deque()
        self.running = None  # (generation, ref, deadline or None) of the job running
        # What the task thread asks of the I/O thread: queue requests
        # (dpool.queue.Queue talks to this as to a pool's actor) and progress.
        self.calls = Calls()
        self.queue_reqs = {}
        self.reqs = itertools.count(1)
        self.progress = None  # (generation, ref, value) not yet sent
        self.progress_sent = 0.0

    # Called from the task thread.

    def call(self, fn):
        self.calls.add(fn)

    # The task thread.

    def _task_thread(self):
        global _CURRENT
        _CURRENT = self
        while True:
            generation, job = self.jobs.get()
            if job is None:
                return
            if generation != self.generation:
                continue
            deadline = None
            if job["timeout_ms"]:
                deadline = time.monotonic() + job["timeout_ms"] / 1000.0
            self.running = (generation, job["ref"], deadline)
            started = time.monotonic()
            code, value = self._run(job)
            run_us = int((time.monotonic() - started) * 1e6)
            self.running = None
            self.results.append((generation, job["ref"], code, value, run_us))
            self.calls.wake()

    def _run(self, job):
        fn = self.worker.functions.get(job["fn"])
        if fn is None:
            return proto.ENOFUNC, "%s is not offered by this worker" % job["fn"]
        if job["flags"] & proto.FLAG_CHUNK:
            return proto.OK, [list(call(fn, args)) for args in job["args"]]
        return call(fn, job["args"])

    # The I/O thread.

    def run(self):
        threading.Thread(target=self._task_thread, name="dpool-task", daemon=True).start()
        poller = zmq.Poller()
        poller.register(self.calls.fileno(), zmq.POLLIN)
        watched = None
        try:
            while not self.worker._stop.is_set():
                if watched is not self.link.socket:
                    if watched is not None:
                        poller.unregister(watched)
                    watched = self.link.socket
                    poller.register(watched, zmq.POLLIN)
                timeout = min(self.link.timeout(), 0.1)
                poller.poll(int(timeout * 1000) + 1)
                self.calls.run()
                self._drain()
                self._send_progress(False)
                self._send_results()
                self._check_deadline()
                if self.link.tick():
                    self._registration_lost()
        finally:
            self._leave()

    def _drain(self):
        while True:
            message = self.link.recv()
            if message is None:
                if self.link.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    continue
                return
            command, fields = message
            if command == proto.WELCOME:
                self._registration_lost()
                for request in list(self.queue_reqs.values()):
                    request.registered_again(self)
            elif command == proto.QUEUE_REPLY:
                request = self.queue_reqs.pop(fields["req"], None)
                if request is not None:
                    request.answer(self, fields)
                elif fields["token"]:
                    self.link.send(proto.queue_ack(fields["token"], False))
            elif command == proto.DISPATCH:
                for job in fields:
                    self.held[job["ref"]] = job
                    self.jobs.put((self.generation, job))
                self.link.idle = not self.held
            elif command == proto.ERROR and fields[0] == proto.ESTATE:
                self._registration_lost()

    def _registration_lost(self):
        """A new registration: jobs of the old one are dropped (the broker
        took them back, section 6)."""
        self.generation += 1
        self.held.clear()
        self.link.idle = True

    def _send_progress(self, before_done):
        """The last progress report of the running job: at most one per
        100 ms, and the one held back before the job's DONE (section 5.5)."""
        pending = self.progress
        if pending is None:
            return
        now = time.monotonic()
        if not before_done and now - self.progress_sent < 0.1:
            return
        self.progress = None
        generation, ref, value = pending
        if generation == self.generation and ref in self.held and self.link.registered:
            self.link.send(proto.progress(ref, value))
            self.progress_sent = now

    def _send_results(self):
        if self.results:
            self._send_progress(True)
        batch = []
        while self.results:
            generation, ref, code, value, run_us = self.results.popleft()
            if generation == self.generation and self.held.pop(ref, None) is not None:
                batch.append([ref, code, value, run_us])
                self.worker.done += 1
        if batch and self.link.registered:
            self.link.send(proto.done(batch))
        self.link.idle = not self.held

    def _check_deadline(self):
        """A job past its timeout: its EDEADLINE goes out, and the process
        ends, as a C worker's does (a supervisor starts another)."""
        running = self.running
        if running is None or running[2] is None or time.monotonic() < running[2]:
            return
        generation, ref, _ = running
        if generation == self.generation and ref in self.held:
            job = self.held.pop(ref)
            self.link.send(proto.done([[ref, proto.EDEADLINE, "ran past its timeout of %d ms"
                                        % job["timeout_ms"], 0]]))
        self._leave()
        os._exit(3)

    def _leave(self):
        if self.link.socket is None:
            return
        if self.link.registered:
            self.link.send(proto.bye())
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:  # the broker's BYE: it has everything
                if not self.link.socket.poll(100):
                    continue
                message = self.link.recv()
                if message is not None and message[0] == proto.BYE:
                    break
        self.link.close(bye=False)
        self.jobs.put((None, None))
        self.context.term()
        self.calls.close()


_CURRENT = None  # the _Serving whose task thread this is


def _serving():
    serving = _CURRENT
    if serving is None or threading.current_thread().name != "dpool-task":
        raise RuntimeError("not inside a task run by dpool.worker")
    return serving


def report_progress(value):
    """From inside a task: its progress, any msgpack value of at most 4096
    bytes (by convention [done, total]); the client sees the last one
    (ApplyResult.progress). Reports more often than every 100 ms are
    folded into the last."""
    serving = _serving()
    if len(msgpack.packb(value, use_bin_type=True)) > 4096:
        raise ValueError("a progress value is at most 4096 bytes")
    running = serving.running
    if running is not None:
        serving.progress = (running[0], running[1], value)
        serving.calls.wake()


class _TaskHandle:
    def __init__(self, serving):
        self._actor = serving


def task_queue(name, maxsize=0):
    """From inside a task: the broker's named queue NAME, reached through
    this worker's connection (Manager().Queue() between tasks)."""
    from .queue import Queue
    return Queue(_TaskHandle(_serving()), name, maxsize)


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve_forever(worker):
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    worker.serve()


def _supervise(make_worker, procs):
    """Runs procs worker processes, each started again when it ends, until
    SIGTERM or SIGINT; then ends them."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    children = {}

    def spawn():
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code = 0
            try:
                _serve_forever(make_worker())
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        children[pid] = time.monotonic()

    for _ in range(procs):
        spawn()
    while not stopping:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        started = children.pop(pid, None)
        if not stopping and started is not None:
            if time.monotonic() - started < 1.0:
                time.sleep(1.0)  # one that dies at once is not started in a loop
            spawn()
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python3 -m dpool.worker",
        description="Serve Python functions to a dpool broker's clients.")
    parser.add_argument("-c", "--connect", default=os.environ.get("DPOOL_CONNECT"),
                        help="the broker's endpoint (default $DPOOL_CONNECT, else "
                        "tcp://127.0.0.1:5555)")
    parser.add_argument("-p", "--procs", type=int,
                        default=int(os.environ.get("DPOOL_PROCS") or 1),
                        help="worker processes to run (default $DPOOL_PROCS, else 1)")
    parser.add_argument("--credit", type=int,
                        default=int(os.environ.get("DPOOL_CREDIT") or DEFAULT_CREDIT),
                        help="jobs one process may hold (default %d)" % DEFAULT_CREDIT)
    parser.add_argument("-n", "--name", help="the worker's name (default python-worker-PID)")
    parser.add_argument("-m", "--module", action="append", default=[],
                        help="serve every public function MODULE defines, as MODULE.NAME")
    parser.add_argument("-f", "--function", action="append", default=[],
                        help="serve the callable of this dotted name, e.g. math.sqrt "
                        "(NAME=DOTTED serves it under NAME)")
    parser.add_argument("-k", "--curve-server", default=os.environ.get("DPOOL_CURVE_SERVER"),
                        help="the broker's CURVE public key: 40 Z85 characters or a key file")
    parser.add_argument("-K", "--curve-secret", default=os.environ.get("DPOOL_CURVE_SECRET"),
                        help="this worker's secret key file (default: a key of its own)")
    args = parser.parse_args(argv)
    if args.procs < 1:
        parser.error("--procs must be at least 1")
    if not args.module and not args.function:
        parser.error("nothing to serve: give --module or --function")
    return args


def _functions(args):
    functions = {}
    for module in args.module:
        functions.update(module_functions(module))
    for entry in args.function:
        name, sep, dotted = entry.partition("=")
        if not sep:
            name, dotted = entry, entry
        functions[name] = resolve(dotted)
    return functions


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    try:
        functions = _functions(args)
    except (ImportError, AttributeError, ValueError) as exc:
        print("dpool.worker: %s" % exc, file=sys.stderr)
        return 2

    def make_worker():
        return Worker(args.connect, functions, name=args.name, credit=args.credit,
                      curve_server=args.curve_server, curve_secret=args.curve_secret)
    if args.procs == 1:
        _serve_forever(make_worker())
    else:
        _supervise(make_worker, args.procs)
    return 0


if __name__ == "__main__":
    # Run as the module dpool.worker, not as __main__, so that the tasks'
    # own `import dpool.worker` (task_queue, report_progress) finds the
    # state this process serves with.
    from dpool.worker import main as module_main
    sys.exit(module_main())

"""dpool.Pool: multiprocessing.Pool's interface over a dpool broker.

A Pool is a client session (docs/PROTOCOL.md section 5.1). Its one I/O
thread owns the connection: the caller's threads hand it work through a
queue of closures and a pipe that wakes it, and it completes result
objects, running their callbacks, as Pool's result-handler thread does.
Every task stays in the session's table until its result arrives, and is
sent again whenever the session registers again (after a broker restart),
so none is lost, and a result that comes twice is taken once.
"""

import collections
import itertools
import multiprocessing
import os
import threading

import msgpack
import zmq

from . import _proto as proto
from ._link import Calls, Link
from .errors import error_from

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"
KWARGS_EXT = 1       # msgpack ext type: a call with keyword arguments
SUBMIT_BATCH = 1000  # tasks in one SUBMIT
MAX_INFLIGHT = 100000  # imap's tasks submitted ahead of the reader


def function_name(fn):
    """The name a task's function goes by: a str as it is (a C function,
    or any a worker registered under that name), a Python callable as
    MODULE.QUALNAME, the name dpool.worker serves it under."""
    if isinstance(fn, str):
        if not fn or len(fn.encode()) > proto.MAX_NAME:
            raise ValueError("a function name is 1 to %d bytes" % proto.MAX_NAME)
        return fn
    module = getattr(fn, "__module__", None) or "builtins"
    qualname = getattr(fn, "__qualname__", None)
    if qualname is None:
        raise TypeError("%r has no name a worker could serve it under" % (fn,))
    return function_name("%s.%s" % (module, qualname))


def call_args(args=(), kwds=None):
    """The msgpack arguments of fn(*args, **kwds): the array of positional
    arguments, or with keywords an ext value [args, kwds] that
    dpool.worker unpacks (a C function sees an ext it does not know)."""
    if kwds:
        return msgpack.ExtType(KWARGS_EXT, msgpack.packb([list(args), dict(kwds)],
                                                         use_bin_type=True))
    return list(args)


class _Task:
    __slots__ = ("seq", "fn", "args", "priority", "timeout_ms", "retries", "flags",
                 "owner", "index", "calls")

    def wire(self):
        return [self.seq, self.fn, self.args, self.priority, self.timeout_ms,
                self.retries, self.flags]


class ApplyResult:
    """multiprocessing.pool.AsyncResult: one task's result."""

    def __init__(self, pool, callback=None, error_callback=None):
        self._pool = pool
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = None
        self._value = None
        self.progress = None  # the last WORK-STATUS value of a running task

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("%r not ready" % self)
        return self._success

    def wait(self, timeout=None):
        self._event.wait(timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise multiprocessing.TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _complete(self, success, value):
        if self._event.is_set():
            return
        self._success, self._value = success, value
        callback = self._callback if success else self._error_callback
        try:
            if callback is not None:
                callback(value)
        except Exception:  # a callback's failure is its own, as in Pool
            import traceback
            traceback.print_exc()
        finally:
            # Set after the callback, as Pool does: a get() that returns
            # sees what the callback did.
            self._event.set()

    def _task_done(self, task, code, value):
        if code == proto.OK:
            self._complete(True, value)
        else:
            self._complete(False, error_from(code, value))


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """map_async's result: the list of values in input order, or the first
    failure (ready as soon as one task failed, as Pool's)."""

    def __init__(self, pool, length, callback=None, error_callback=None):
        super().__init__(pool, callback, error_callback)
        self._values = [None] * length
        self._left = length
        if length == 0:
            self._complete(True, [])

    def _task_done(self, task, code, value):
        if self.ready():
            return
        if code != proto.OK:
            self._complete(False, error_from(code, value))
            return
        if task.flags & proto.FLAG_CHUNK:
            if not isinstance(value, list) or len(value) != task.calls:
                self._complete(False, error_from(proto.EPROTO, "a chunk's result of another shape"))
                return
            for offset, entry in enumerate(value):
                call_code, call_value = (entry + [None, None])[:2] if isinstance(
                    entry, list) else (proto.EPROTO, "not a [code, value] pair")
                if call_code != proto.OK:
                    self._complete(False, error_from(call_code, call_value))
                    return
                self._values[task.index + offset] = call_value
        else:
            self._values[task.index] = value
        self._left -= task.calls
        if self._left == 0:
            self._complete(True, self._values)


class IMapIterator:
    """imap's and imap_unordered's iterator: a failed call raises its error
    at its place, and iteration goes on after it, as Pool's."""

    def __init__(self, pool, ordered):
        self._pool = pool
        self._ordered = ordered
        self._cond = threading.Condition()
        self._items = {} if ordered else collections.deque()
        self._next = 0          # ordered: the index next() returns
        self._length = None     # known once the input is exhausted
        self._taken = 0
        self._feed_error = None  # (index, exception) of the input's own failure

    def __iter__(self):
        return self

    def _put(self, index, success, value):
        with self._cond:
            if self._ordered:
                self._items[index] = (success, value)
            else:
                self._items.append((success, value))
            self._cond.notify_all()

    def _task_done(self, task, code, value):
        if code != proto.OK:
            error = error_from(code, value)
            for offset in range(task.calls):
                self._put(task.index + offset, False, error)
        elif task.flags & proto.FLAG_CHUNK:
            for offset in range(task.calls):
                entry = value[offset] if isinstance(value, list) and offset < len(value) else None
                if isinstance(entry, list) and len(entry) >= 2 and entry[0] == proto.OK:
                    self._put(task.index + offset, True, entry[1])
                elif isinstance(entry, list) and len(entry) >= 2:
                    self._put(task.index + offset, False, error_from(entry[0], entry[1]))
                else:
                    self._put(task.index + offset, False,
                              error_from(proto.EPROTO, "a chunk's result of another shape"))
        else:
            self._put(task.index, True, value)
        self._pool._actor.release(task.calls)

    def _set_length(self, length, error=None):
        with self._cond:
            if error is not None:
                self._feed_error = (length, error)
                length += 1
            self._length = length
            self._cond.notify_all()

    def _ready(self):
        if self._ordered:
            if self._feed_error and self._next == self._feed_error[0]:
                return True
            return self._next in self._items or self._length == self._next
        return bool(self._items) or (self._length is not None and self._taken >= self._length) \
            or (self._feed_error is not None and self._taken >= self._feed_error[0])

    def next(self, timeout=None):
        with self._cond:
            if not self._cond.wait_for(self._ready, timeout):
                raise multiprocessing.TimeoutError
            if self._ordered:
                if self._feed_error and self._next == self._feed_error[0]:
                    self._next += 1
                    raise self._feed_error[1]
                if self._next not in self._items:
                    raise StopIteration
                success, value = self._items.pop(self._next)
                self._next += 1
            else:
                if not self._items:
                    if self._feed_error is not None and self._taken == self._feed_error[0]:
                        self._taken += 1
                        raise self._feed_error[1]
                    raise StopIteration
                success, value = self._items.popleft()
                self._taken += 1
        if success:
            return value
        raise value

    __next__ = next


class _Actor(threading.Thread):
    """The pool's I/O thread: the only one that touches its socket."""

    def __init__(self, pool, endpoint, name, curve_server, curve_secret):
        super().__init__(name="dpool-pool", daemon=True)
        self.pool = pool
        self.context = zmq.Context()
        self.session = os.urandom(proto.SESSION_SIZE)
        self.name = name
        self.link = Link(self.context, endpoint, lambda: proto.hello(self.session, self.name),
                         curve_server, curve_secret)
        self.calls = Calls()  # closures to run on this thread
        self.lock = threading.Lock()
        self.tasks = {}  # seq -> _Task, sent or not, until its result
        self.unsent = collections.deque()
        self.seqs = itertools.count(1)
        self.queue_reqs = {}  # req -> _QueueRequest
        self.reqs = itertools.count(1)
        self.status_waiters = collections.deque()
        self.welcomed = threading.Event()
        self.last_error = None
        self.stopping = False
        self.inflight = threading.Semaphore(MAX_INFLIGHT)
        self.empty = threading.Event()  # set while no task waits for its result

    # Called from any thread.

    def call(self, fn):
        self.calls.add(fn)

    def release(self, calls):
        for _ in range(calls):
            self.inflight.release()

    # The thread.

    def run(self):
        poller = zmq.Poller()
        poller.register(self.calls.fileno(), zmq.POLLIN)
        socket_now = None
        while not self.stopping:
            if socket_now is not self.link.socket:
                if socket_now is not None:
                    poller.unregister(socket_now)
                socket_now = self.link.socket
                poller.register(socket_now, zmq.POLLIN)
            timeout = self.link.timeout()
            events = dict(poller.poll(int(timeout * 1000) + 1))
            self.calls.run(self.calls.fileno() in events)
            self._drain()
            if self.link.tick():
                self._lost()
            self._send_unsent()
        self.link.close(bye=True)
        self.context.term()
        self.calls.close()

    def _drain(self):
        for _ in range(1000):
            message = self.link.recv()
            if message is None:
                if self.link.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    continue  # a malformed one was dropped; more may wait
                return
            self._on_message(*message)

    def _on_message(self, command, fields):
        if command == proto.WELCOME:
            self.unsent = collections.deque(sorted(self.tasks))
            self.welcomed.set()
            for request in list(self.queue_reqs.values()):
                request.registered_again(self)
        elif command == proto.RESULT:
            for seq, code, value in fields:
                task = self.tasks.pop(seq, None)
                if task is not None:
                    task.owner._task_done(task, code, value)
            self.check_empty()
        elif command == proto.WORK_STATUS:
            task = self.tasks.get(fields[0])
            if task is not None and isinstance(task.owner, ApplyResult):
                task.owner.progress = fields[1]
        elif command == proto.QUEUE_REPLY:
            request = self.queue_reqs.pop(fields["req"], None)
            if request is not None:
                request.answer(self, fields)
            elif fields["token"]:
                self.link.send(proto.queue_ack(fields["token"], False))
        elif command == proto.STATUS_REPLY:
            if self.status_waiters:
                self.status_waiters.popleft().set_result(fields)
        elif command == proto.ERROR:
            self.last_error = fields
            if fields[0] in (proto.EDENIED, proto.EREJECTED) and not self.link.registered:
                self.welcomed.set()  # the constructor reports it

    def _lost(self):
        """The broker went silent: the link is new, and everything is sent
        again once it registers."""
        self.unsent.clear()
        for request in list(self.queue_reqs.values()):
            request.lost(self)

    def _send_unsent(self):
        while self.unsent and self.link.registered:
            batch = []
            while self.unsent and len(batch) < SUBMIT_BATCH:
                task = self.tasks.get(self.unsent.popleft())
                if task is not None:
                    batch.append(task.wire())
            if batch and not self.link.send(proto.submit(batch)):
                self.unsent.extendleft(reversed([entry[0] for entry in batch]))
                return

    # Work handed over by the pool's threads (run on this thread).

    def check_empty(self):
        if not self.tasks:
            self.empty.set()

    def add(self, tasks):
        if tasks:
            self.empty.clear()
        for task in tasks:
            self.tasks[task.seq] = task
            self.unsent.append(task.seq)

    def cancel_all(self, error):
        if self.link.registered:
            self.link.send(proto.cancel())
        tasks, self.tasks = self.tasks, {}
        self.unsent.clear()
        for task in tasks.values():
            task.owner._task_done(task, proto.ECANCELLED, error)
        self.empty.set()

    def stop(self):
        self.stopping = True


class Pool:
    """multiprocessing.Pool's interface; the tasks run on a dpool broker's
    workers.

    broker: the broker's endpoint (default $DPOOL_CONNECT, else
    tcp://127.0.0.1:5555). processes: accepted as Pool's first argument
    and checked (a positive number) but not used: the broker's workers
    are the pool's processes. Functions are named (function_name): a
    str, or a Python callable that a dpool.worker serves. The Pool waits
    up to connect_timeout seconds for the broker's WELCOME and raises
    ConnectionError without it."""

    def __init__(self, processes=None, broker=None, *, name=None, connect_timeout=10.0,
                 priority=0, timeout=None, retries=0, curve_server=None, curve_secret=None):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        self._processes = processes
        self._feeders = []
        self._state = RUN
        self.priority, self.retries = priority, retries
        self.timeout_ms = int(timeout * 1000) if timeout else 0
        endpoint = broker or os.environ.get("DPOOL_CONNECT") or "tcp://127.0.0.1:5555"
        name = name or "python-%d" % os.getpid()
        self._actor = _Actor(self, endpoint, name, curve_server, curve_secret)
        self._actor.start()
        if not self._actor.welcomed.wait(connect_timeout) or not self._actor.link.registered:
            error = self._actor.last_error
            self._actor.call(self._actor.stop)
            self._actor.join()
            self._state = TERMINATE
            if error is not None:
                raise error_from(*error)
            raise ConnectionError("no broker answered at %s within %g s" %
                                  (endpoint, connect_timeout))

    # Pool's life cycle.

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    def close(self):
        """No more tasks; those submitted run to the end."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self):
        """Cancels every task not yet run (their results fail
        ECANCELLED: nobody waits forever) and disconnects."""
        if self._state == TERMINATE and not self._actor.is_alive():
            return
        self._state = TERMINATE
        error = "the pool was terminated"
        self._actor.call(lambda: self._actor.cancel_all(error))
        self._actor.call(self._actor.stop)

    def join(self):
        """Waits for every task's result (after close), or for the I/O
        thread to end (after terminate)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            for feeder in list(self._feeders):
                feeder.join()
            self._actor.call(self._actor.check_empty)
            self._actor.empty.wait()
            self._actor.call(self._actor.stop)
        self._actor.join()

    def __del__(self):
        if getattr(self, "_state", None) == RUN:
            import warnings
            warnings.warn("unclosed running dpool pool %r" % self, ResourceWarning,
                          source=self)
            if self._actor.is_alive():
                self.terminate()

    # Submissions.

    def _task(self, fn, args, owner, index=0, calls=1, flags=0):
        task = _Task()
        task.seq = next(self._actor.seqs)
        task.fn, task.args = fn, args
        task.priority, task.timeout_ms, task.retries = self.priority, self.timeout_ms, self.retries
        task.flags, task.owner, task.index, task.calls = flags, owner, index, calls
        msgpack.packb(args, use_bin_type=True)  # unpackable arguments fail here, in the caller
        return task

    def apply_async(self, func, args=(), kwds=None, callback=None, error_callback=None):
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        task = self._task(function_name(func), call_args(args, kwds), result)
        self._actor.call(lambda: self._actor.add([task]))
        return result

    def apply(self, func, args=(), kwds=None):
        return self.apply_async(func, args, kwds).get()

    def _chunksize(self, length, chunksize):
        if chunksize is not None:
            if chunksize < 1:
                raise ValueError("Chunksize must be 1+, not %r" % chunksize)
            return chunksize
        workers = max(1, (self._actor.link.welcome or {}).get("workers", 0) or 4)
        chunksize, extra = divmod(length, workers * 4)
        return chunksize + 1 if extra else max(1, chunksize)

    def _chunk_tasks(self, fn, calls, chunksize, owner, start=0):
        tasks = []
        for offset in range(0, len(calls), chunksize):
            part = calls[offset:offset + chunksize]
            if chunksize == 1:
                tasks.append(self._task(fn, part[0], owner, start + offset))
            else:
                tasks.append(self._task(fn, part, owner, start + offset, len(part),
                                        proto.FLAG_CHUNK))
        return tasks

    def _map_async(self, func, calls, chunksize, callback, error_callback):
        self._check_running()
        fn = function_name(func)
        result = MapResult(self, len(calls), callback, error_callback)
        if calls:
            tasks = self._chunk_tasks(fn, calls, self._chunksize(len(calls), chunksize), result)
            self._actor.call(lambda: self._actor.add(tasks))
        return result

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._map_async(func, [[item] for item in iterable], chunksize, callback,
                               error_callback)

    def map(self, func, iterable, chunksize=None):
        return self.map_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        return self._map_async(func, [list(args) for args in iterable], chunksize, callback,
                               error_callback)

    def starmap(self, func, iterable, chunksize=None):
        return self.starmap_async(func, iterable, chunksize).get()

    def _imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        if chunksize < 1:
            raise ValueError("Chunksize must be 1+, not %r" % chunksize)
        fn = function_name(func)
        iterator = IMapIterator(self, ordered)
        feeder = threading.Thread(target=self._feed, name="dpool-feed", daemon=True,
                                  args=(fn, iter(iterable), chunksize, iterator))
        self._feeders = [thread for thread in self._feeders if thread.is_alive()]
        self._feeders.append(feeder)
        feeder.start()
        return iterator

    def _feed(self, fn, items, chunksize, iterator):
        """Submits imap's input as it is read, at most MAX_INFLIGHT calls
        ahead of the reader; an input that fails ends it there, its
        exception raised at that place."""
        index = 0
        while True:
            calls = []
            try:
                for item in itertools.islice(items, chunksize):
                    calls.append([item])
            except Exception as exc:
                iterator._set_length(index, exc)
                return
            if not calls:
                iterator._set_length(index)
                return
            for _ in calls:
                self._actor.inflight.acquire()
            if self._state == TERMINATE:
                return
            tasks = self._chunk_tasks(fn, calls, chunksize, iterator, index)
            self._actor.call(lambda tasks=tasks: self._actor.add(tasks))
            index += len(calls)

    def imap(self, func, iterable, chunksize=1):
        return self._imap(func, iterable, chunksize, True)

    def imap_unordered(self, func, iterable, chunksize=1):
        return self._imap(func, iterable, chunksize, False)

    # Beyond Pool.

    def status(self, timeout=10.0):
        """The broker's STATUS-REPLY (docs/PROTOCOL.md section 7), a dict."""
        future = _Future()

        def ask():
            self._actor.status_waiters.append(future)
            self._actor.link.send(proto.status())
        self._actor.call(ask)
        return future.result(timeout)

    def Queue(self, name, maxsize=0):
        """The broker's named queue NAME, made if it does not exist (section
        5.4): a Manager().Queue() every task and client can reach."""
        from .queue import Queue
        return Queue(self, name, maxsize)


class _Future:
    def __init__(self):
        self._event = threading.Event()
        self._value = None

    def set_result(self, value):
        self._value = value
        self._event.set()

    def result(self, timeout=None):
        if not self._event.wait(timeout):
            raise multiprocessing.TimeoutError
        return self._value

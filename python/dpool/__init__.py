"""dpool for Python: a client and a worker of dpool's broker, pure Python
over pyzmq and msgpack, written from docs/PROTOCOL.md.

    import dpool
    with dpool.Pool(broker="tcp://127.0.0.1:5555") as pool:
        print(pool.map("square", range(10)))

Pool has multiprocessing.Pool's interface (apply, apply_async, map,
map_async, starmap, imap, imap_unordered, close, terminate, join) for
functions known by name: a str names any function a worker offers (a C
one, or a Python one); a Python callable is sent as MODULE.QUALNAME, the
name `python3 -m dpool.worker` serves it under. Arguments and results are
msgpack values. Pool.Queue(name) is a broker's named queue.
"""

from multiprocessing import TimeoutError

from .errors import (CancelledError, DeadlineError, DeniedError, NoFunctionError,
                     ProtocolError, RejectedError, TaskError, WorkerLostError)
from .pool import ApplyResult, AsyncResult, IMapIterator, MapResult, Pool, function_name
from .queue import Queue


def __getattr__(name):
    # dpool.worker is also a program (python3 -m dpool.worker): imported
    # when first used, not with the package, so that runpy runs it fresh.
    if name == "Worker":
        from .worker import Worker
        return Worker
    raise AttributeError("module 'dpool' has no attribute %r" % name)

__version__ = "0.1.0"

__all__ = [
    "Pool", "Queue", "Worker", "ApplyResult", "AsyncResult", "MapResult", "IMapIterator",
    "TimeoutError", "TaskError", "DeadlineError", "CancelledError", "WorkerLostError",
    "NoFunctionError", "RejectedError", "DeniedError", "ProtocolError", "function_name",
]

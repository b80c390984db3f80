"""Task functions the Python workers of the tests serve (as pytasks.NAME)."""

import os
import time


def square(x):
    return x * x


def add(x, y=0, *, scale=1):
    return (x + y) * scale


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def fail(message):
    raise KeyError(message)


def unsendable():
    return object()


def echo(*args):
    return list(args)


def die_once(marker):
    """Kills its process the first time it runs with this marker file."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    return "survived"


def produce(name, count):
    """Puts count values on the named queue NAME, reporting progress."""
    from dpool.worker import report_progress, task_queue
    queue = task_queue(name)
    for i in range(count):
        queue.put(i)
        report_progress([i + 1, count])
        time.sleep(0.02)
    return count


def consume(name, count):
    """Takes count values off the named queue NAME and returns them."""
    from dpool.worker import task_queue
    queue = task_queue(name)
    return [queue.get(timeout=20) for _ in range(count)]

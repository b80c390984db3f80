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

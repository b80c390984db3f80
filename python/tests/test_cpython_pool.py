"""CPython's own Pool tests (class _TestPool of Lib/test/_test_multiprocessing.py,
Debian's libpython3.11-testsuite) run against dpool.Pool.

The pool's functions (sqr, mul, identity, raise_large_valuerror, int,
time.sleep, _TestPool's own class methods) run on Python workers started
from `python3 -m dpool.worker`, behind a real dpool-broker. Cases that do
not apply to a pool of named functions and msgpack values are skipped,
each with its reason; they are listed in python/README.md too.
"""

import gc
import os
import sys
import unittest
import warnings

from dpool_fixture import Cluster

import dpool

try:
    import test._test_multiprocessing as cpython
except ImportError as exc:  # the test suite of the interpreter is missing
    raise unittest.SkipTest("CPython's test suite is not installed: %s" % exc)

CLUSTER = None
PROCESSES = 4


def setUpModule():
    global CLUSTER
    CLUSTER = Cluster()
    CLUSTER.start_broker()
    tests = cpython.__name__
    CLUSTER.start_py_workers(
        PROCESSES, "--module", tests, "--function", "builtins.int", "--function", "time.sleep",
        "--function", tests + "._TestPool._test_traceback",
        "--function", tests + "._TestPool._test_wrapped_exception")
    with dpool.Pool(broker=CLUSTER.endpoint) as pool:
        CLUSTER.wait_workers(pool, PROCESSES, tests + ".sqr")


def tearDownModule():
    CLUSTER.close()


def make_pool(processes=None, *args, **kwargs):
    return dpool.Pool(processes, *args, broker=CLUSTER.endpoint, **kwargs)


NOT_MSGPACK = "arguments and results are msgpack values, not pickles"


class DpoolTestPool(cpython._TestPool, unittest.TestCase):
    TYPE = "processes"
    Pool = staticmethod(make_pool)

    @unittest.skip("Pool._pool lists local processes; dpool's are the broker's workers")
    def test_make_pool(self):
        pass

    @unittest.skip(NOT_MSGPACK + ": an object that cannot travel fails TypeError "
                   "(tested in test_interop), not its __reduce__'s RuntimeError")
    def test_map_unplicklable(self):
        pass

    @unittest.skip(NOT_MSGPACK + ": CountedObject cannot travel")
    def test_release_task_refs(self):
        pass

    @unittest.skip("a remote failure carries its type and message, not its args "
                   "(RuntimeError(123).args) nor a RemoteTraceback")
    def test_traceback(self):
        pass

    def test_resource_warning(self):
        # CPython's case checks its own warning text; dpool's says "dpool pool"
        pool = self.Pool(1)
        pool.terminate()
        pool.join()
        pool._state = "RUN"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool = None
            gc.collect()
        self.assertTrue(any(issubclass(w.category, ResourceWarning) for w in caught), caught)


if __name__ == "__main__":
    unittest.main()

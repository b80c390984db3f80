"""The Python package against the C programs, over real sockets: a Python
Pool on C workers, C clients (`dpool`) on Python workers, Python on
Python, and what must survive: a broker restart, a worker's death."""

import json
import os
import signal
import threading
import time
import unittest

from dpool_fixture import Cluster, wait_for

import dpool
import pytasks


class PythonPoolOnCWorkers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.cluster.start_broker()
        cls.cluster.start_c_workers(2)
        cls.pool = cls.cluster.pool()
        cls.cluster.wait_workers(cls.pool, 2, "echo")

    @classmethod
    def tearDownClass(cls):
        cls.pool.terminate()
        cls.pool.join()
        cls.cluster.close()

    def test_apply_sends_positional_arguments_as_an_array(self):
        self.assertEqual(self.pool.apply("echo", (1, "two", [3])), [1, "two", [3]])
        self.assertEqual(self.pool.apply("echo"), [])

    def test_large_values_come_back_in_payload_frames(self):
        # C workers send values of 4 KiB or more as payload frames (DPP/2)
        big = "x" * 70000
        self.assertEqual(self.pool.apply("echo", (big, 1)), [big, 1])
        self.assertEqual(self.pool.map("echo", [big, "small", big], chunksize=1),
                         [[big], ["small"], [big]])

    def test_map_keeps_input_order_across_chunks(self):
        # sleep returns its arguments: [seconds, tag] each, in order
        calls = [(0.001, i) for i in range(60)]
        self.assertEqual(self.pool.starmap("sleep", calls, chunksize=7),
                         [[0.001, i] for i in range(60)])
        self.assertEqual(self.pool.map("echo", range(25), chunksize=4),
                         [[i] for i in range(25)])

    def test_imap_unordered_gets_every_result_once(self):
        got = list(self.pool.imap_unordered("echo", range(200), 9))
        self.assertEqual(sorted(v[0] for v in got), list(range(200)))

    def test_c_failure_is_a_task_error_with_its_message(self):
        with self.assertRaises(dpool.TaskError) as caught:
            self.pool.apply("fail", ("boom",))
        self.assertIn("boom", str(caught.exception))
        self.assertEqual(caught.exception.code, 1)

    def test_unknown_function_fails_enofunc(self):
        with self.assertRaises(dpool.NoFunctionError):
            self.pool.apply("no_such_function", (1,))

    def test_callbacks_run_once_with_the_value(self):
        seen, errors = [], []
        done = threading.Event()
        self.pool.apply_async("echo", (5,), callback=lambda v: (seen.append(v), done.set()))
        self.pool.apply_async("fail", ("x",), error_callback=errors.append).wait(10)
        self.assertTrue(done.wait(10))
        self.assertEqual(seen, [[5]])
        wait_for(lambda: errors, what="the error callback")
        self.assertIsInstance(errors[0], dpool.TaskError)

    def test_get_returns_after_the_callback_ran(self):
        # As Pool: what a callback did is seen once get() returns.
        seen = []

        def slow(value):
            time.sleep(0.1)
            seen.append(value)

        self.assertEqual(self.pool.apply_async("echo", (3,), callback=slow).get(10), [3])
        self.assertEqual(seen, [[3]])
        failing = self.pool.apply_async("fail", ("x",), error_callback=slow)
        failing.wait(10)
        self.assertTrue(failing.ready())
        self.assertEqual(len(seen), 2)

    def test_get_times_out_as_multiprocessing_does(self):
        result = self.pool.apply_async("sleep", (0.5,))
        with self.assertRaises(dpool.TimeoutError):
            result.get(timeout=0.01)
        self.assertEqual(result.get(10), [0.5])

    def test_named_queue_between_python_and_the_cli(self):
        queue = self.pool.Queue("py-cli")
        queue.put({"from": "python", "n": [1, 2]})
        out = self.cluster.cli("queue", "get", "py-cli")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), {"from": "python", "n": [1, 2]})
        out = self.cluster.cli("queue", "put", "py-cli", '"from the cli"')
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(queue.get(timeout=10), "from the cli")
        with self.assertRaises(__import__("queue").Empty):
            queue.get(timeout=0.05)


class CClientOnPythonWorkers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.cluster.start_broker()
        cls.cluster.start_py_workers(2, "--module", "pytasks")
        with cls.cluster.pool() as pool:
            cls.cluster.wait_workers(pool, 2, "pytasks.square")

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()

    def test_dpool_apply_calls_a_python_function(self):
        out = self.cluster.cli("apply", "pytasks.add", "[2, 3]")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), 5)

    def test_dpool_map_chunks_reach_python_in_order(self):
        # dpool map sends chunks (flags bit 0): the worker must answer
        # [code, value] per call, in order
        lines = "".join("%d\n" % i for i in range(500)).encode()
        out = self.cluster.cli("map", "pytasks.square", "--chunksize", "16", stdin=lines)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual([json.loads(line) for line in out.stdout.splitlines()],
                         [i * i for i in range(500)])

    def test_large_arguments_reach_python_in_payload_frames(self):
        # the C client frames arguments of 4 KiB or more (DPP/2)
        big = "y" * 50000
        out = self.cluster.cli("apply", "pytasks.echo", json.dumps([big, 2]))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout), [big, 2])

    def test_python_exception_fails_the_call_with_its_name(self):
        out = self.cluster.cli("apply", "pytasks.fail", '["no luck"]')
        self.assertEqual(out.returncode, 1)
        self.assertIn(b"KeyError", out.stderr)
        self.assertIn(b"no luck", out.stderr)

    def test_result_msgpack_cannot_carry_fails_cleanly(self):
        out = self.cluster.cli("apply", "pytasks.unsendable", "[]")
        self.assertEqual(out.returncode, 1)
        self.assertIn(b"TypeError", out.stderr)


class PythonOnPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.cluster.start_broker()
        cls.cluster.start_py_workers(2, "--module", "pytasks")
        cls.pool = cls.cluster.pool()
        cls.cluster.wait_workers(cls.pool, 2, "pytasks.square")

    @classmethod
    def tearDownClass(cls):
        cls.pool.terminate()
        cls.pool.join()
        cls.cluster.close()

    def test_callables_travel_by_name_with_keywords(self):
        self.assertEqual(self.pool.apply(pytasks.add, (1, 2), {"scale": 10}), 30)
        self.assertEqual(self.pool.map(pytasks.square, range(10)),
                         [i * i for i in range(10)])
        # a list item is one argument, not a starmap: map wraps each call
        self.assertEqual(self.pool.map(pytasks.echo, [[1, 2], [3]]), [[[1, 2]], [[3]]])

    def test_builtin_exceptions_come_back_as_themselves(self):
        with self.assertRaises(KeyError):
            self.pool.apply(pytasks.fail, ("k",))
        with self.assertRaises(KeyError):
            self.pool.map(pytasks.fail, ["a", "b"])

    def test_two_tasks_talk_through_a_named_queue_with_progress(self):
        # the tutorial's second example: a producer task and a consumer task
        consumer = self.pool.apply_async(pytasks.consume, ("py-q", 10))
        producer = self.pool.apply_async(pytasks.produce, ("py-q", 10))
        self.assertEqual(consumer.get(30), list(range(10)))
        self.assertEqual(producer.get(30), 10)
        wait_for(lambda: producer.progress is not None, what="a progress report")
        self.assertEqual(producer.progress[1], 10)

    def test_tasks_run_on_several_processes(self):
        pids = set(self.pool.map(pytasks.pid_after, [0.05] * 8, chunksize=1))
        self.assertEqual(len(pids), 2)


class HostileBroker(unittest.TestCase):
    """A fake broker (a pyzmq ROUTER) that sends malformed messages: the
    Pool counts and drops them, and goes on with the good ones."""

    def test_malformed_messages_are_dropped_and_counted(self):
        import zmq
        from dpool import _proto as proto
        cluster = Cluster()
        context = zmq.Context()
        router = context.socket(zmq.ROUTER)
        router.bind(cluster.endpoint)
        garbage = [[b"DP\x02"], [b"XP\x02\x02", b"\x90"], [b"DP\x09\x02", b"\x90"],
                   [b"DP\x02\x02", b"\x95\x01"], [b"DP\x02\x05", b"\x91\x93\x01\x01\x02"]]

        def fake():
            rid, *frames = router.recv_multipart()
            self.assertEqual(proto.decode_any(frames)[0], proto.HELLO)
            for frames in garbage:
                router.send_multipart([rid] + frames)
            router.send_multipart([rid] + proto.encode(proto.WELCOME, [1000, 2500, "fake", 1]))
            while True:
                rid, *frames = router.recv_multipart()
                command, body = proto.decode_any(frames)
                if command == proto.SUBMIT:
                    seq = body[0][0]
                    router.send_multipart([rid, b"DP\x02\x05", b"\x91\x92\x01"])
                    router.send_multipart([rid] + proto.encode(proto.RESULT, [[seq, 0, "ok"]]))
                    return
        thread = threading.Thread(target=fake, daemon=True)
        thread.start()
        try:
            pool = cluster.pool(connect_timeout=10)
            self.assertEqual(pool.apply("anything", (1,)), "ok")
            self.assertGreaterEqual(pool._actor.link.malformed, 6)
            pool.terminate()
            pool.join()
        finally:
            thread.join(10)
            router.close(linger=0)
            context.term()
            cluster.close()

    def test_arguments_msgpack_cannot_carry_fail_in_the_caller(self):
        cluster = Cluster()
        cluster.start_broker()
        try:
            with cluster.pool() as pool:
                with self.assertRaises(TypeError):
                    pool.apply("echo", (object(),))
                with self.assertRaises(TypeError):
                    pool.map("echo", [1, object()])
        finally:
            cluster.close()


class Failures(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster()

    def tearDown(self):
        self.cluster.close()

    def test_no_broker_is_a_connection_error(self):
        with self.assertRaises(ConnectionError):
            self.cluster.pool(connect_timeout=0.3)

    def test_tasks_survive_a_broker_killed_and_restarted(self):
        broker = self.cluster.start_broker()
        self.cluster.start_c_workers(2)
        pool = self.cluster.pool()
        try:
            self.cluster.wait_workers(pool, 2, "sleep")
            result = pool.starmap_async("sleep", [(0.01, i) for i in range(300)], chunksize=1)
            wait_for(lambda: pool.status()["done"] >= 20, what="some tasks done")
            self.cluster.stop(broker, signal.SIGKILL)
            os.unlink(self.cluster.endpoint[len("ipc://"):])
            self.cluster.start_broker()
            self.assertEqual(result.get(60), [[0.01, i] for i in range(300)])
        finally:
            pool.terminate()
            pool.join()

    def test_a_python_worker_that_dies_gets_its_task_run_again(self):
        self.cluster.start_broker()
        self.cluster.start_py_workers(2, "--module", "pytasks")
        marker = os.path.join(self.cluster.dir, "died")
        with self.cluster.pool() as pool:
            self.cluster.wait_workers(pool, 2, "pytasks.die_once")
            self.assertEqual(pool.apply(pytasks.die_once, (marker,)), "survived")
            self.assertTrue(os.path.exists(marker))

    def test_terminate_fails_waiting_results_instead_of_hanging(self):
        self.cluster.start_broker()
        self.cluster.start_c_workers(1)
        pool = self.cluster.pool()
        self.cluster.wait_workers(pool, 1, "sleep")
        result = pool.map_async("sleep", [0.05] * 2000, chunksize=1)
        pool.terminate()
        pool.join()
        with self.assertRaises(dpool.CancelledError):
            result.get(10)
        with self.assertRaises(ValueError):
            pool.apply("echo")

    def test_close_then_join_waits_for_every_result(self):
        self.cluster.start_broker()
        self.cluster.start_c_workers(2)
        pool = self.cluster.pool()
        self.cluster.wait_workers(pool, 2, "sleep")
        results = [pool.apply_async("sleep", (0.01, i)) for i in range(40)]
        pool.close()
        pool.join()
        self.assertTrue(all(r.ready() for r in results))
        self.assertEqual([r.get() for r in results], [[0.01, i] for i in range(40)])


if __name__ == "__main__":
    unittest.main()

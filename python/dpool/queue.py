"""dpool.Queue: a broker's named queue (docs/PROTOCOL.md section 5.4),
with the interface of queue.Queue and of a Manager().Queue() proxy."""

import queue as queue_module
import threading
import time

from . import _proto as proto
from .errors import error_from

WAIT_FOREVER = -1


class _QueueRequest:
    """One request waiting for its QUEUE-REPLY, on the pool's I/O thread."""

    def __init__(self, frames_of, timeout):
        self.frames_of = frames_of  # (req, timeout_ms) -> frames
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.sent = False
        self.event = threading.Event()
        self.reply = None
        self.is_get = False
        self.abandoned = False
        self.req = 0

    def _timeout_ms(self):
        if self.deadline is None:
            return WAIT_FOREVER
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def send(self, actor):
        """Sends it now if the session is registered, else once it is."""
        self.req = next(actor.reqs)
        actor.queue_reqs[self.req] = self
        if actor.link.registered:
            self.sent = actor.link.send(self.frames_of(self.req, self._timeout_ms()))

    def answer(self, actor, fields):
        if fields["token"]:
            keep = not self.abandoned
            actor.link.send(proto.queue_ack(fields["token"], keep))
        self.reply = fields
        self.event.set()

    def registered_again(self, actor):
        """The session registered again: a GET is asked again (the broker
        took back anything it lent); anything else may or may not have
        happened."""
        actor.queue_reqs.pop(self.req, None)
        if (not self.sent or self.is_get) and not self.abandoned:
            self.send(actor)
        else:
            self.reply = {"code": -1, "value": "the broker was lost; the request may or may "
                          "not have been carried out", "size": 0, "maxsize": 0, "token": 0}
            self.event.set()

    def lost(self, actor):
        pass  # answered when the link registers again


class Queue:
    """put, get, qsize, empty, full, put_nowait, get_nowait, as
    queue.Queue; values are msgpack values of at most 1 MiB."""

    def __init__(self, pool, name, maxsize=0):
        if not name or len(name.encode()) > proto.MAX_NAME:
            raise ValueError("a queue name is 1 to %d bytes" % proto.MAX_NAME)
        self._pool = pool
        self.name = name
        self.maxsize = maxsize
        reply = self._request(lambda req, t: proto.queue_open(req, name, maxsize), None)
        self._check(reply)

    def _request(self, frames_of, timeout, is_get=False):
        request = _QueueRequest(frames_of, timeout)
        request.is_get = is_get
        actor = self._pool._actor
        actor.call(lambda: request.send(actor))
        try:
            request.event.wait()
        except BaseException:
            request.abandoned = True
            raise
        return request.reply

    def _check(self, reply, empty_error=None):
        code = reply["code"]
        if code == proto.OK:
            return reply
        if code in (proto.ETIMEOUT, proto.EAGAIN) and empty_error is not None:
            raise empty_error
        if code == -1:
            raise ConnectionError(reply["value"])
        raise error_from(code, reply["value"])

    def put(self, item, block=True, timeout=None):
        timeout = timeout if block else 0
        reply = self._request(
            lambda req, t: proto.queue_put(req, self.name, item, t, self.maxsize), timeout)
        self._check(reply, queue_module.Full())

    def put_nowait(self, item):
        self.put(item, False)

    def get(self, block=True, timeout=None):
        timeout = timeout if block else 0
        reply = self._request(lambda req, t: proto.queue_get(req, self.name, t), timeout,
                              is_get=True)
        return self._check(reply, queue_module.Empty())["value"]

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        reply = self._request(lambda req, t: proto.queue_size(req, self.name), 0)
        return self._check(reply)["size"]

    def empty(self):
        return self.qsize() == 0

    def full(self):
        reply = self._check(self._request(lambda req, t: proto.queue_size(req, self.name), 0))
        return reply["maxsize"] > 0 and reply["size"] >= reply["maxsize"]

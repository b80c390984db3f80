"""One peer's connection to a broker: its DEALER, registration, heartbeats
and expiry (docs/PROTOCOL.md sections 5 and 6).

A Link belongs to one thread, the I/O thread of a Pool or a Worker, which
alone touches its socket. The owner says what registers it (a HELLO or a
READY), and is told when the broker welcomed it and when the link was made
anew (the broker went silent past expiry, or forgot this peer).
"""

import collections
import os
import socket
import time

import zmq

from . import _proto as proto

BACKOFF_FIRST = 0.1  # seconds before registering again, doubling ...
BACKOFF_MAX = 2.0    # ... up to this
DEFAULT_HEARTBEAT = 1.0
DEFAULT_EXPIRY = 2.5
IDLE_FACTOR = 3      # an idle worker beats this much slower (section 6)


def load_curve(value):
    """A CURVE key given as 40 Z85 characters or a key file (ZPL, as
    `dpool keygen` writes): (public, secret or None), as bytes."""
    if value is None:
        return None, None
    if len(value) == 40 and not os.path.exists(value):
        return value.encode(), None
    import zmq.auth
    public, secret = zmq.auth.load_certificate(value)
    return public, secret


class Link:
    """The DEALER to a broker, made again whenever the broker is lost."""

    def __init__(self, context, endpoint, register, curve_server=None, curve_secret=None):
        self.context = context
        self.endpoint = endpoint
        self.register = register  # () -> frames of HELLO or READY
        self.server_key, _ = load_curve(curve_server)
        self.public_key = self.secret_key = None
        if curve_secret is not None:
            self.public_key, self.secret_key = load_curve(curve_secret)
            if self.secret_key is None:
                raise ValueError("%s: not a secret key file" % curve_secret)
        elif self.server_key is not None:
            self.public_key, self.secret_key = zmq.curve_keypair()
        self.socket = None
        self.registered = False
        self.welcome = None
        self.heartbeat = DEFAULT_HEARTBEAT
        self.expiry = DEFAULT_EXPIRY
        self.idle = False  # a worker holding no job
        self.backoff = BACKOFF_FIRST
        self.next_register = 0.0
        self.last_recv = self.last_sent = time.monotonic()
        self.malformed = 0
        self.connect()

    def connect(self):
        if self.socket is not None:
            self.socket.close(linger=0)
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, proto.MAX_MSG_SIZE)
        if self.server_key is not None:
            sock.curve_serverkey = self.server_key
            sock.curve_publickey = self.public_key
            sock.curve_secretkey = self.secret_key
        sock.connect(self.endpoint)
        self.socket = sock
        self.registered = False
        self.next_register = 0.0
        self.last_recv = time.monotonic()

    def send(self, frames):
        """Sends a message; False if ZeroMQ has no room for it now."""
        try:
            self.socket.send_multipart(frames, flags=zmq.DONTWAIT, copy=False)
        except zmq.Again:
            return False
        self.last_sent = time.monotonic()
        return True

    def _expiry(self):
        return self.expiry * (IDLE_FACTOR if self.idle else 1)

    def timeout(self):
        """Seconds until tick() has something to do."""
        now = time.monotonic()
        if not self.registered:
            return max(0.0, self.next_register - now)
        beat = self.heartbeat * 1.5 * (IDLE_FACTOR if self.idle else 1)
        due = min(self.last_sent + beat, self.last_recv + self._expiry())
        return max(0.0, due - now)

    def tick(self):
        """Registers, beats or gives the broker up, as the clock says.
        Returns True when the link was made anew."""
        now = time.monotonic()
        if not self.registered:
            if now >= self.next_register:
                if now - self.last_recv > max(self._expiry(), 2 * self.backoff):
                    self.connect()  # nothing came back: a fresh socket
                    self.last_recv = now
                self.send(self.register())
                self.next_register = now + self.backoff
                self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return False
        if now - self.last_recv > self._expiry():
            self.connect()
            return True
        beat = self.heartbeat * 1.5 * (IDLE_FACTOR if self.idle else 1)
        if now - self.last_sent >= beat:
            self.send(proto.heartbeat())
        return False

    def recv(self):
        """The next message, validated: (command, fields), or None when
        there is none or it was malformed (counted and dropped)."""
        try:
            frames = self.socket.recv_multipart(flags=zmq.DONTWAIT, copy=True)
        except zmq.Again:
            return None
        self.last_recv = time.monotonic()
        try:
            command, fields = proto.decode(frames)
        except proto.ProtocolError:
            self.malformed += 1
            return None
        if command == proto.WELCOME:
            self.registered = True
            self.welcome = fields
            self.heartbeat = fields["heartbeat_ms"] / 1000.0
            self.expiry = fields["expiry_ms"] / 1000.0
            self.backoff = BACKOFF_FIRST
        elif command == proto.HEARTBEAT:
            if time.monotonic() - self.last_sent >= self.heartbeat / 2:
                self.send(proto.heartbeat())
        elif command == proto.ERROR and fields[0] == proto.ESTATE:
            self.registered = False  # the broker forgot us: register again
            self.next_register = 0.0
        return command, fields

    def close(self, bye=True):
        if self.socket is None:
            return
        if bye and self.registered:
            self.send(proto.bye())
            self.socket.setsockopt(zmq.LINGER, 200)
        self.socket.close()
        self.socket = None


class Calls:
    """Closures other threads hand to an I/O thread, and the socket pair
    that wakes the thread's poll when one comes (or when wake() is called
    for another reason). Register fileno() with the thread's poller."""

    def __init__(self):
        self._calls = collections.deque()
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)

    def fileno(self):
        return self._r.fileno()

    def add(self, fn):
        """From any thread: fn() runs on the I/O thread, at its next turn."""
        self._calls.append(fn)
        self.wake()

    def wake(self):
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is pending already, or the thread has ended

    def run(self, woken=True):
        """On the I/O thread: clears the wake-ups (woken: the poll said
        some came) and runs the closures handed in."""
        if woken:
            try:
                while self._r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        while self._calls:
            self._calls.popleft()()

    def close(self):
        self._r.close()
        self._w.close()

"""DPP/2, the dpool Pool Protocol, as docs/PROTOCOL.md specifies it.

The only module of the package that knows the bytes: a message is two
frames, a 4-byte header ('D', 'P', version, command) and one msgpack body
whose shape depends on the command, and in SUBMIT, DISPATCH, RESULT and
DONE payload frames, each one framed entry's args or value. This package
reads framed entries and never frames its own (the protocol lets a
sender choose). decode() validates what arrives from
the network before anyone acts on it and raises ProtocolError otherwise,
as section 3 asks of every peer.
"""

import msgpack

VERSION = 2
ERROR_VERSIONS = (1, 2)  # an ERROR of version 1 is read too (section 9)
SIGNATURE = b"DP"

HELLO = 1
WELCOME = 2
READY = 3
SUBMIT = 4
RESULT = 5
DISPATCH = 6
DONE = 7
CANCEL = 8
STATUS = 9
STATUS_REPLY = 10
HEARTBEAT = 11
BYE = 12
ERROR = 13
QUEUE_OPEN = 14
QUEUE_PUT = 15
QUEUE_GET = 16
QUEUE_SIZE = 17
QUEUE_REPLY = 18
QUEUE_ACK = 19
PROGRESS = 20
WORK_STATUS = 21
ATTACH = 22

NAMES = {
    HELLO: "HELLO", WELCOME: "WELCOME", READY: "READY", SUBMIT: "SUBMIT",
    RESULT: "RESULT", DISPATCH: "DISPATCH", DONE: "DONE", CANCEL: "CANCEL",
    STATUS: "STATUS", STATUS_REPLY: "STATUS-REPLY", HEARTBEAT: "HEARTBEAT",
    BYE: "BYE", ERROR: "ERROR", QUEUE_OPEN: "QUEUE-OPEN", QUEUE_PUT: "QUEUE-PUT",
    QUEUE_GET: "QUEUE-GET", QUEUE_SIZE: "QUEUE-SIZE", QUEUE_REPLY: "QUEUE-REPLY",
    QUEUE_ACK: "QUEUE-ACK", PROGRESS: "PROGRESS", WORK_STATUS: "WORK-STATUS",
    ATTACH: "ATTACH",
}

# Error codes (section 3.2; dpool_error_t in include/dpool.h).
OK = 0
EFAILED = 1
ETIMEOUT = 2
EDEADLINE = 3
ECANCELLED = 4
ELOST = 5
ENOFUNC = 6
EREJECTED = 7
EINVAL = 9
ENOMEM = 10
EAGAIN = 11
EPROTO = 12
ESTATE = 13
EDENIED = 17

# Limits (section 8).
MAX_MSG_SIZE = 64 * 1024 * 1024
MAX_NAME = 255
MAX_ERROR = 4096
MAX_BATCH = 1000000
MAX_CREDIT = 100000
SESSION_SIZE = 16
MAX_DEPTH = 32
MAX_QUEUE_VALUE = 1024 * 1024
MAX_PAYLOAD_FRAMES = 256

FLAG_CHUNK = 1          # SUBMIT and DISPATCH flags bit 0: args is a list of calls
FLAG_RETRY_TIMEOUT = 2  # bit 1: an EDEADLINE attempt is retried
FLAG_FRAMED = 4         # bit 2: its args travel in a payload frame (section 3)
PAYLOAD_COMMANDS = (4, 5, 6, 7)  # SUBMIT, RESULT, DISPATCH, DONE


class ProtocolError(Exception):
    """A message that section 3 calls malformed."""


def encode(command, body):
    """The two frames of a message."""
    header = bytes((SIGNATURE[0], SIGNATURE[1], VERSION, command))
    return [header, msgpack.packb(body, use_bin_type=True)]


def _unpack(frame):
    try:
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=False, max_buffer_size=MAX_MSG_SIZE)
        unpacker.feed(frame)
        item = unpacker.unpack()
    except (msgpack.OutOfData, ValueError, msgpack.ExtraData) as exc:
        raise ProtocolError("body: " + (str(exc) or "not msgpack")) from None
    except UnicodeDecodeError:
        raise ProtocolError("body: str that is not UTF-8") from None
    rest = unpacker.tell()
    if rest != len(frame):
        raise ProtocolError("body: bytes after its one item")
    return item


def _depth(value, level=0):
    if level > MAX_DEPTH:
        raise ProtocolError("limit: nested deeper than %d" % MAX_DEPTH)
    if isinstance(value, (list, tuple)):
        for item in value:
            _depth(item, level + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _depth(key, level + 1)
            _depth(item, level + 1)


def _uint(value, what, top=2**64 - 1):
    if type(value) is not int or value < 0 or value > top:
        raise ProtocolError("body: %s is not an unsigned integer" % what)
    return value


def _int(value, what):
    if type(value) is not int:
        raise ProtocolError("body: %s is not an integer" % what)
    return value


def _str(value, what, limit=MAX_NAME):
    if not isinstance(value, str):
        raise ProtocolError("body: %s is not a str" % what)
    if len(value.encode()) > limit:
        raise ProtocolError("limit: %s longer than %d bytes" % (what, limit))
    return value


def _array(value, what, least=0):
    if not isinstance(value, list) or len(value) < least:
        raise ProtocolError("body: %s is not an array of at least %d" % (what, least))
    if len(value) > MAX_BATCH:
        raise ProtocolError("limit: %s of more than %d entries" % (what, MAX_BATCH))
    return value


def _value(code, value, what):
    """A result's value: any item on success, else its message (a str)."""
    if code != OK:
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if not isinstance(value, str):
            raise ProtocolError("body: %s failed without a message" % what)
        return value[:MAX_ERROR]
    return value


def _welcome(body):
    _array(body, "WELCOME", 4)
    token = _uint(body[4], "token") if len(body) > 4 else 0
    return {"heartbeat_ms": _uint(body[0], "heartbeat_ms", 2**31 - 1) or 1000,
            "expiry_ms": _uint(body[1], "expiry_ms", 2**31 - 1) or 2500,
            "broker": _str(body[2], "broker"),
            "workers": _uint(body[3], "workers"), "token": token}


class _Payloads:
    """The payload frames of one message, taken in order by the framed
    entries of its list; every one must be taken (section 3)."""

    def __init__(self, frames):
        self.frames = frames
        self.next = 0

    def take(self, what):
        if self.next >= len(self.frames):
            raise ProtocolError("frames: a framed %s without its payload frame" % what)
        item = _unpack(bytes(self.frames[self.next]))
        _depth(item)
        self.next += 1
        return item

    def done(self):
        if self.next != len(self.frames):
            raise ProtocolError("frames: %d payload frames for %d framed entries"
                                % (len(self.frames), self.next))


def _results(body, what, key, payloads):
    _array(body, what)
    out = []
    for entry in body:
        _array(entry, what + " entry", 3)
        seq = _uint(entry[0], key)
        code = _int(entry[1], "code")
        framed = len(entry) > 4 and entry[4]
        if len(entry) > 4 and not isinstance(entry[4], bool):
            raise ProtocolError("body: %s entry's framed is not a bool" % what)
        if framed:
            if code != OK or entry[2] is not None:
                raise ProtocolError("body: a framed %s entry must succeed with nil" % what)
            value = payloads.take("value")
        else:
            value = _value(code, entry[2], what)
        out.append((seq, code, value))
    payloads.done()
    return out


def _dispatch(body, payloads):
    _array(body, "DISPATCH")
    jobs = []
    for job in body:
        _array(job, "DISPATCH job", 6)
        fn = _str(job[1], "fn")
        if not fn:
            raise ProtocolError("limit: an empty function name")
        flags = _uint(job[5], "flags")
        args = job[2]
        if flags & FLAG_FRAMED:
            if args is not None:
                raise ProtocolError("body: a framed job's args must be nil")
            args = payloads.take("job")
        if flags & FLAG_CHUNK and not isinstance(args, list):
            raise ProtocolError("body: a chunk whose args is not an array")
        jobs.append({"ref": _uint(job[0], "ref"), "fn": fn, "args": args,
                     "timeout_ms": _uint(job[3], "timeout_ms", 2**32 - 1),
                     "attempt": _uint(job[4], "attempt"), "flags": flags})
    return jobs


def _error(body):
    _array(body, "ERROR", 2)
    return (_int(body[0], "code"), _str(body[1], "message", MAX_ERROR))


def _queue_reply(body):
    _array(body, "QUEUE-REPLY", 6)
    code = _int(body[1], "code")
    return {"req": _uint(body[0], "req"), "code": code, "size": _uint(body[2], "size"),
            "maxsize": _uint(body[3], "maxsize"),
            "value": _value(code, body[4], "QUEUE-REPLY") if code else body[4],
            "token": _uint(body[5], "token")}


def _work_status(body):
    _array(body, "WORK-STATUS", 2)
    return (_uint(body[0], "seq"), body[1])


def _status_reply(body):
    if not isinstance(body, dict):
        raise ProtocolError("body: STATUS-REPLY is not a map")
    return body


def _empty(body):
    if not isinstance(body, list):
        raise ProtocolError("body: not an array")
    return None


_DECODERS = {
    WELCOME: _welcome,
    RESULT: lambda body, payloads: _results(body, "RESULT", "seq", payloads),
    DISPATCH: _dispatch,
    STATUS_REPLY: _status_reply,
    HEARTBEAT: _empty,
    BYE: _empty,
    ERROR: _error,
    QUEUE_REPLY: _queue_reply,
    WORK_STATUS: _work_status,
}


def decode(frames):
    """(command, fields) of a message a broker sent, validated; raises
    ProtocolError for anything section 3 calls malformed, or a command a
    broker never sends."""
    if len(frames) < 2:
        raise ProtocolError("frames: %d frames, not 2 or more" % len(frames))
    header, body = bytes(frames[0]), bytes(frames[1])
    if len(header) != 4:
        raise ProtocolError("header: %d bytes, not 4" % len(header))
    if header[:2] != SIGNATURE:
        raise ProtocolError("signature")
    command = header[3]
    if header[2] != VERSION and not (command == ERROR and header[2] in ERROR_VERSIONS):
        raise ProtocolError("version: %d" % header[2])
    decoder = _DECODERS.get(command)
    if decoder is None:
        raise ProtocolError("command: %d is not one a broker sends" % command)
    payloads = frames[2:]
    if payloads and command not in PAYLOAD_COMMANDS:
        raise ProtocolError("frames: payload frames on %s" % NAMES[command])
    if len(payloads) > MAX_PAYLOAD_FRAMES:
        raise ProtocolError("frames: more than %d payload frames" % MAX_PAYLOAD_FRAMES)
    if sum(len(frame) for frame in frames[1:]) > MAX_MSG_SIZE:
        raise ProtocolError("limit: body and payload frames over %d bytes" % MAX_MSG_SIZE)
    item = _unpack(body)
    _depth(item)
    if command in PAYLOAD_COMMANDS:
        return command, decoder(item, _Payloads(payloads))
    return command, decoder(item)


def decode_any(frames):
    """(command, body) of any well-framed message, its body unpacked but
    not checked against the command's shape: for tests and tools that play
    the broker."""
    if len(frames) != 2 or len(frames[0]) != 4 or bytes(frames[0][:2]) != SIGNATURE:
        raise ProtocolError("not a DPP message")
    return frames[0][3], _unpack(bytes(frames[1]))


# Encoders, one per command a client or worker sends.

def hello(session, name, lane=0):
    body = [session, name[:MAX_NAME]]
    if lane:
        body.append(lane)
    return encode(HELLO, body)


def ready(name, pid, host, credit, functions):
    return encode(READY, [name[:MAX_NAME], pid, host[:MAX_NAME], credit, list(functions)])


def submit(tasks):
    """tasks: [seq, fn, args, priority, timeout_ms, retries, flags] each."""
    return encode(SUBMIT, tasks)


def done(results):
    """results: [ref, code, value, run_us] each."""
    return encode(DONE, results)


def cancel(seqs=None):
    return encode(CANCEL, [seqs is None, list(seqs or [])])


def status():
    return encode(STATUS, [])


def heartbeat():
    return encode(HEARTBEAT, [])


def bye():
    return encode(BYE, [])


def queue_open(req, name, maxsize):
    return encode(QUEUE_OPEN, [req, name, maxsize])


def queue_put(req, name, value, timeout_ms, maxsize):
    return encode(QUEUE_PUT, [req, name, value, timeout_ms, maxsize])


def queue_get(req, name, timeout_ms):
    return encode(QUEUE_GET, [req, name, timeout_ms])


def queue_size(req, name):
    return encode(QUEUE_SIZE, [req, name])


def queue_ack(token, accept):
    return encode(QUEUE_ACK, [token, bool(accept)])


def progress(ref, value):
    return encode(PROGRESS, [ref, value])

"""docs/PROTOCOL.md's test vectors (section 11) against the Python codec:
each message the doc shows is exactly what dpool._proto encodes from the
fields beside it, and each a broker sends decodes. (tests/test_vectors.c
checks that the C codec accepts every one of them.)

    python3 test_vectors.py --print    # the section's table, from VECTORS
"""

import os
import re
import sys
import unittest

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from dpool import _proto as proto  # noqa: E402

DOC = os.path.join(HERE, "..", "..", "docs", "PROTOCOL.md")
SESSION = bytes.fromhex("00112233445566778899aabbccddeeff")

# (name, fields as the doc shows them, the frames)
VECTORS = [
    ("HELLO", '[session, "c1"]', proto.hello(SESSION, "c1")),
    ("HELLO", '[session, "c1", 2] (lane 2)', proto.hello(SESSION, "c1", 2)),
    ("WELCOME", '[1000, 2500, "b", 2, 7]',
     proto.encode(proto.WELCOME, [1000, 2500, "b", 2, 7])),
    ("READY", '["w1", 4242, "h", 512, ["square", "echo"]]',
     proto.ready("w1", 4242, "h", 512, ["square", "echo"])),
    ("SUBMIT", '[[1, "square", [7], 0, 0, 0, 0]]',
     proto.submit([[1, "square", [7], 0, 0, 0, 0]])),
    ("SUBMIT", '[[2, "square", [[1], [2]], 5, 1000, -1, 1]] (a chunk)',
     proto.submit([[2, "square", [[1], [2]], 5, 1000, -1, 1]])),
    ("RESULT", '[[1, 0, 49], [2, 1, "boom"]]',
     proto.encode(proto.RESULT, [[1, 0, 49], [2, 1, "boom"]])),
    ("DISPATCH", '[[100, "square", [7], 0, 1, 0]]',
     proto.encode(proto.DISPATCH, [[100, "square", [7], 0, 1, 0]])),
    ("DISPATCH", '[[101, "square", [[1], [2]], 0, 1, 1]] (a chunk)',
     proto.encode(proto.DISPATCH, [[101, "square", [[1], [2]], 0, 1, 1]])),
    ("DONE", '[[100, 0, 49, 15]]', proto.done([[100, 0, 49, 15]])),
    ("DONE", '[[101, 0, [[0, 1], [0, 4]], 30]] (a chunk: [code, value] per call)',
     proto.done([[101, 0, [[0, 1], [0, 4]], 30]])),
    ("CANCEL", '[false, [1, 2]]', proto.cancel([1, 2])),
    ("CANCEL", '[true, []]', proto.cancel()),
    ("STATUS", "[]", proto.status()),
    ("HEARTBEAT", "[]", proto.heartbeat()),
    ("BYE", "[]", proto.bye()),
    ("ERROR", '[13, "unknown peer"]', proto.encode(proto.ERROR, [13, "unknown peer"])),
    ("QUEUE-OPEN", '[1, "q", 10]', proto.queue_open(1, "q", 10)),
    ("QUEUE-PUT", '[2, "q", "v", -1, 10]', proto.queue_put(2, "q", "v", -1, 10)),
    ("QUEUE-GET", '[3, "q", 1000]', proto.queue_get(3, "q", 1000)),
    ("QUEUE-SIZE", '[4, "q"]', proto.queue_size(4, "q")),
    ("QUEUE-REPLY", '[3, 0, 0, 10, "v", 5]',
     proto.encode(proto.QUEUE_REPLY, [3, 0, 0, 10, "v", 5])),
    ("QUEUE-ACK", "[5, true]", proto.queue_ack(5, True)),
    ("PROGRESS", "[100, [1, 10]]", proto.progress(100, [1, 10])),
    ("WORK-STATUS", "[1, [1, 10]]", proto.encode(proto.WORK_STATUS, [1, [1, 10]])),
    ("ATTACH", "[7]", proto.encode(proto.ATTACH, [7])),
]

LINE = re.compile(r"^\| `([A-Z-]+)` \| (.+?) \| `([0-9a-f]{8})` \| `([0-9a-f]+)` \|$")


def table():
    rows = ["| command | fields | header | body |", "|---|---|---|---|"]
    for name, fields, frames in VECTORS:
        rows.append("| `%s` | %s | `%s` | `%s` |" % (name, fields, frames[0].hex(),
                                                    frames[1].hex()))
    return "\n".join(rows)


def doc_rows():
    with open(DOC, encoding="utf-8") as f:
        return [LINE.match(line.rstrip("\n")) for line in f if LINE.match(line.rstrip("\n"))]


class Vectors(unittest.TestCase):
    def test_the_doc_shows_what_the_codec_encodes(self):
        rows = doc_rows()
        self.assertEqual(len(rows), len(VECTORS), "vectors in docs/PROTOCOL.md")
        for row, (name, fields, frames) in zip(rows, VECTORS):
            self.assertEqual(row.group(1), name)
            self.assertEqual(row.group(2), fields)
            self.assertEqual(row.group(3), frames[0].hex(), name)
            self.assertEqual(row.group(4), frames[1].hex(), name)

    def test_what_a_broker_sends_decodes(self):
        for row in doc_rows():
            header, body = bytes.fromhex(row.group(3)), bytes.fromhex(row.group(4))
            command = header[3]
            if command in (proto.WELCOME, proto.RESULT, proto.DISPATCH, proto.ERROR,
                           proto.QUEUE_REPLY, proto.WORK_STATUS, proto.HEARTBEAT, proto.BYE):
                decoded, _ = proto.decode([header, body])
                self.assertEqual(decoded, command)

    def test_hostile_bytes_are_refused_not_raised_as_anything_else(self):
        good = proto.encode(proto.RESULT, [[1, 0, 49]])
        framed = proto.encode(proto.RESULT, [[1, 0, None, 0, True]])
        value = msgpack.packb([1, 2])
        bad = [
            [good[0]],                                   # one frame
            [good[0][:3], good[1]],                      # short header
            [b"XP\x02\x05", good[1]],                    # signature
            [b"DP\x01\x05", good[1]],                    # version (only ERROR may be 1)
            [b"DP\x02\x04", good[1]],                    # a command brokers never send
            framed,                                      # a framed value without its frame
            framed + [value, value],                     # a payload frame too many
            good + [value],                              # a payload frame nobody claims
            proto.encode(proto.WELCOME, [1000, 2500, "b", 1]) + [value],  # on WELCOME
            framed[:1] + [b"\x91\x95\x01\x01\xa1x\x00\xc3", value],  # a framed failure
            framed + [value + b"\x01"],                  # a frame of two items
            [good[0], good[1][:-1]],                     # truncated body
            [good[0], good[1] + b"\xc0"],                # bytes after the item
            [good[0], b"\x91\x92\x01\x00"],              # an entry too short
            [good[0], b"\x91\x93\xff\x00\x01"],          # a negative seq
            [good[0], b"\x91\x93\x01\x01\x02"],          # a failure without a message
            [good[0], b"\x91" * 40 + b"\xc0"],           # nested too deep
        ]
        for frames in bad:
            with self.assertRaises(proto.ProtocolError, msg=repr(frames)):
                proto.decode(frames)

    def test_framed_entries_take_their_payload_frames_in_order(self):
        body = [[1, 0, None, 0, True], [2, 0, 5], [3, 0, None, 0, True]]
        frames = proto.encode(proto.RESULT, body) + [msgpack.packb("a"), msgpack.packb([1])]
        self.assertEqual(proto.decode(frames)[1], [(1, 0, "a"), (2, 0, 5), (3, 0, [1])])
        jobs = [[7, "f", None, 0, 1, proto.FLAG_FRAMED | proto.FLAG_CHUNK]]
        frames = proto.encode(proto.DISPATCH, jobs) + [msgpack.packb([[1], [2]])]
        self.assertEqual(proto.decode(frames)[1][0]["args"], [[1], [2]])
        # an ERROR of version 1 is read: an old broker's refusal
        old = [b"DP\x01\x0d", msgpack.packb([12, "unsupported version 2"])]
        self.assertEqual(proto.decode(old), (proto.ERROR, (12, "unsupported version 2")))


if __name__ == "__main__":
    if sys.argv[1:] == ["--print"]:
        print(table())
    else:
        unittest.main()

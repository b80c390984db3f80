#!/usr/bin/env python3
"""delay_relay_check.py - checks bench/delay_relay.c, the benchmark's slow
link (tests/bench.cmake runs it as the test bench_delay_relay_works).

    delay_relay_check.py PATH-OF-delay_relay

Starts an echo server on loopback and the relay in front of it with
--delay-ms 40, then checks, through the relay:
  - a small message comes back unchanged, and never sooner than the round
    trip asked for (the relay holds bytes 20 ms each way; a lower bound
    only: how much later depends on the machine's load);
  - 8 MiB of random bytes, sent while the answer is read (so that the
    relay's bounded buffers fill and drain), come back byte for byte;
  - the sender's end of stream reaches the server and the server's comes
    back (half closes are passed on);
  - a second connection is relayed too, and the port file names the port;
  - SIGTERM ends the relay with exit 0.
Exits 0 when all hold; otherwise says which failed on stderr and exits 1.
Every process it starts, it stops.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DELAY_MS = 40
BULK_BYTES = 8 * 1024 * 1024
WAIT_S = 60  # generous: sanitizers and a loaded machine are slow


def fail(message):
    print("delay_relay_check: " + message, file=sys.stderr)
    sys.exit(1)


def echo_server():
    """A listening socket whose accepted connections echo until EOF, then
    close their side."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve(conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(data)

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


def read_exactly(sock, size):
    got = bytearray()
    while len(got) < size:
        data = sock.recv(size - len(got))
        if not data:
            fail("the relay closed after %d of %d bytes" % (len(got), size))
        got += data
    return bytes(got)


def check_ping(port):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(3):
            start = time.monotonic()
            sock.sendall(b"ping")
            if read_exactly(sock, 4) != b"ping":
                fail("a small message came back changed")
            rtt_ms = (time.monotonic() - start) * 1000
            if rtt_ms < DELAY_MS:
                fail("a round trip took %.1f ms, less than --delay-ms %d" % (rtt_ms, DELAY_MS))


def check_bulk(port):
    payload = os.urandom(BULK_BYTES)
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:

        def send():
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got = bytearray()
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += data
        sender.join(WAIT_S)
    if bytes(got) != payload:
        fail("%d random bytes came back as %d different ones" % (len(payload), len(got)))


def main():
    if len(sys.argv) != 2:
        fail("usage: delay_relay_check.py PATH-OF-delay_relay")
    server = echo_server()
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        relay = subprocess.Popen([sys.argv[1], "--listen", "127.0.0.1:0", "--connect",
                                  "127.0.0.1:%d" % server.getsockname()[1], "--delay-ms",
                                  str(DELAY_MS), "--port-file", port_file],
                                 stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + WAIT_S
            while not os.path.exists(port_file):
                if relay.poll() is not None or time.monotonic() > deadline:
                    fail("the relay wrote no port file: %s" % relay.stderr.read())
                time.sleep(0.01)
            with open(port_file, encoding="ascii") as text:
                port = int(text.read())
            check_ping(port)
            check_bulk(port)
            relay.send_signal(signal.SIGTERM)
            _, err = relay.communicate(timeout=WAIT_S)
            if relay.returncode != 0:
                fail("SIGTERM: the relay exited %d: %s" % (relay.returncode, err))
            if "2 connections" not in err:
                fail("the relay's counters do not say 2 connections: %s" % err.strip())
        finally:
            if relay.poll() is None:
                relay.kill()
                relay.wait()
            server.close()
    print("delay_relay_check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

/*  bench_peer.c - a peer of the broker spoken over the wire protocol
    (proto/) on plain libzmq, with no client library in between: what the
    broker-only workloads (bench_broker.c) and the fair-share workloads
    (bench_fair.c) drive the broker with. See bench_peer.h.
*/
#include "bench_peer.h"

#include "dpool_bench.h"

#include <zmq.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUBMIT_BATCH 10000 /* tasks per SUBMIT */

void
bench_peer_open (bench_peer_t *self, void *ctx, const char *endpoint)
{
    self->socket = zmq_socket (ctx, ZMQ_DEALER);
    if (!self->socket)
        bench_fail ("zmq_socket: %s", zmq_strerror (errno));
    if (dp_wire_configure (self->socket, false, 0) != 0 ||
        zmq_connect (self->socket, endpoint) != 0)
        bench_fail ("connect %s: %s", endpoint, zmq_strerror (errno));
    dp_writer_init (&self->writer);
    self->last_sent = 0;
}

void
bench_peer_close (bench_peer_t *self)
{
    zmq_close (self->socket);
    dp_writer_fini (&self->writer);
}

/*  Sends the writer's body as cmd; fails the run if it cannot. */
void
bench_peer_send (bench_peer_t *self, dp_cmd_t cmd)
{
    if (!dp_writer_ok (&self->writer))
        bench_fail ("out of memory encoding %s", dp_cmd_name (cmd));
    if (dp_wire_send_writer (self->socket, NULL, 0, cmd, &self->writer, 0) != 0)
        bench_fail ("send %s: %s", dp_cmd_name (cmd), zmq_strerror (errno));
    self->last_sent = bench_now ();
}

/*  Receives one message into msg (decoded into out) within timeout_ms;
    returns false on timeout. A malformed message fails the run. */
bool
bench_peer_recv (bench_peer_t *self, dp_wire_msg_t *msg, dp_msg_t *out, int timeout_ms)
{
    zmq_pollitem_t item = {self->socket, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return false;
    if (dp_wire_recv (self->socket, msg, 0) != 0)
        bench_fail ("recv: %s", zmq_strerror (errno));
    dp_reason_t reason = dp_wire_decode (msg, false, NULL, out);
    if (reason != DP_OK)
        bench_fail ("malformed message from the broker: %s", dp_reason_name (reason));
    return true;
}

/*  HELLO, then waits for WELCOME (results held for the session first). */
void
bench_peer_hello (bench_peer_t *self)
{
    uint8_t session[DP_SESSION_SIZE];
    for (size_t i = 0; i < sizeof session; i++)
        session[i] = (uint8_t)rand ();
    dp_encode_hello (&self->writer, session, "dpool_bench");
    bench_peer_send (self, DP_CMD_HELLO);
    double deadline = bench_now () + BENCH_START_LIMIT_MS / 1000.0;
    while (bench_now () < deadline) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!bench_peer_recv (self, &msg, &decoded, 100))
            continue;
        dp_cmd_t cmd = decoded.cmd;
        dp_wire_close (&msg);
        if (cmd == DP_CMD_WELCOME)
            return;
    }
    bench_fail ("no WELCOME from the broker");
}

/*  Submits count tasks of fn with seqs first..first+count-1, in batches;
    args is one packed object. */
void
bench_peer_submit (bench_peer_t *self, const char *fn, uint64_t first, long count,
                   const void *args, size_t size)
{
    dp_task_t task = {0};
    task.fn.data = (const uint8_t *)fn;
    task.fn.size = strlen (fn);
    task.args.data = args;
    task.args.size = size;
    long sent = 0;
    while (sent < count) {
        dp_list_begin (&self->writer);
        long batch = count - sent < SUBMIT_BATCH ? count - sent : SUBMIT_BATCH;
        for (long i = 0; i < batch; i++) {
            task.id = first + (uint64_t)(sent + i);
            dp_list_add_task (&self->writer, DP_CMD_SUBMIT, &task);
        }
        dp_list_end (&self->writer);
        bench_peer_send (self, DP_CMD_SUBMIT);
        sent += batch;
    }
}

/*  Reads an unsigned value of key from a packed status map; -1 if absent. */
long
bench_status_uint (dp_span_t status, const char *key)
{
    dp_reader_t reader;
    dp_reader_init (&reader, status.data, status.size);
    uint32_t pairs;
    if (dp_mp_read_map (&reader, &pairs) != 0)
        return -1;
    for (uint32_t i = 0; i < pairs; i++) {
        dp_span_t name, value;
        uint64_t number;
        if (dp_mp_read_str (&reader, &name) != 0)
            return -1;
        if (dp_span_eq (name, key) && dp_mp_read_uint (&reader, &number) == 0)
            return (long)number;
        if (dp_mp_read_object (&reader, &value) != 0)
            return -1;
    }
    return -1;
}

void
bench_peer_beat (bench_peer_t *self, bool asked)
{
    double ivl = DP_HEARTBEAT_MS / 1000.0;
    double quiet = bench_now () - self->last_sent;
    if (quiet >= (asked ? DP_HEARTBEAT_QUIET (ivl) : DP_HEARTBEAT_ALONE (ivl))) {
        dp_encode_empty (&self->writer);
        bench_peer_send (self, DP_CMD_HEARTBEAT);
    }
}

/*  bench_peer.h - a peer of the broker spoken over the wire protocol on
    plain libzmq (no client library): a DEALER and a reusable writer, with
    the few exchanges the broker-only and fair-share workloads need. Every
    function fails the run (bench_fail) on an error it cannot go on from.
    Private to bench/.
*/
#ifndef DPOOL_BENCH_PEER_H
#define DPOOL_BENCH_PEER_H

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  One peer of the broker. */
typedef struct {
    void *socket;
    dp_writer_t writer;
    double last_sent; /* bench_now () of the last send */
} bench_peer_t;

/*  Opens a DEALER in ctx connected to endpoint. */
void
bench_peer_open (bench_peer_t *self, void *ctx, const char *endpoint);

/*  Closes the socket and frees the writer. */
void
bench_peer_close (bench_peer_t *self);

/*  Sends the writer's body as cmd. */
void
bench_peer_send (bench_peer_t *self, dp_cmd_t cmd);

/*  Receives one message into msg (decoded into out) within timeout_ms;
    returns false on timeout. A malformed message fails the run. The
    caller closes msg (dp_wire_close) when it returned true. */
bool
bench_peer_recv (bench_peer_t *self, dp_wire_msg_t *msg, dp_msg_t *out, int timeout_ms);

/*  HELLO with a random session (a tenant of its own), then waits for
    WELCOME. */
void
bench_peer_hello (bench_peer_t *self);

/*  Submits count tasks of fn, each with the packed args, seqs first ..
    first + count - 1, in SUBMITs of 10,000. */
void
bench_peer_submit (bench_peer_t *self, const char *fn, uint64_t first, long count,
                   const void *args, size_t size);

/*  Keeps the session alive by the rules of docs/PROTOCOL.md section 6:
    with asked (the broker's HEARTBEAT came), answers unless the peer sent
    something in the last half interval; else sends one unasked after 1.5
    intervals of its own silence. A client that only reads results must
    call it at least every few hundred ms, or the broker gives it up. */
void
bench_peer_beat (bench_peer_t *self, bool asked);

/*  The unsigned value of key in a packed status map; -1 if absent. */
long
bench_status_uint (dp_span_t status, const char *key);

#endif

/*  dp_handshake.h - watches a worker's connection attempts for handshakes
    that fail, so that a worker the broker will never admit says why.

    libzmq retries a connection whose ZMTP handshake failed (a CURVE key the
    broker does not admit, the wrong server key, CURVE on one side only)
    silently and for ever, and the worker would wait for a WELCOME that
    never comes. A watch monitors one socket at a time (the DEALER of the
    current registration attempt) through zmq_socket_monitor and reads its
    handshake events. Each failure is logged at error level, naming the
    endpoint and the likely cause, at once and then at most every
    DP_HANDSHAKE_LOG_MS; once handshakes have failed and none succeeded for
    the watch's timeout, dp_handshake_expired says so, and the worker gives
    up. A handshake that succeeds starts the count again. A broker that is
    not running is no failure: no handshake begins, and the worker goes on
    waiting for it.

    A watch belongs to the thread that owns the socket it watches (the
    worker's I/O thread); its monitor is a PAIR socket of the same context,
    made and closed by that thread.
*/
#ifndef DP_HANDSHAKE_H_INCLUDED
#define DP_HANDSHAKE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

/*  A failed handshake is logged at once, then at most this often. */
#define DP_HANDSHAKE_LOG_MS 10000

typedef struct dp_handshake_t dp_handshake_t;

/*  Makes a watch of connections to endpoint (borrowed) in the ZeroMQ
    context ctx; curve says whether this side uses CURVE (for the causes it
    names). timeout_ms > 0: the time after which failures alone make the
    watch expire; 0: never. NULL if out of memory. */
dp_handshake_t *
dp_handshake_new (void *ctx, const char *endpoint, bool curve, int timeout_ms);

/*  Detaches the watch (the socket it watches must still be open) and frees
    it. NULL is harmless; nulls the caller's pointer. */
void
dp_handshake_destroy (dp_handshake_t **self_p);

/*  Watches socket (a new one, before its zmq_connect, so that no event is
    missed) instead of any other. Returns 0, or -1 if it cannot (the socket
    then simply goes unwatched; a warning says so). */
int
dp_handshake_attach (dp_handshake_t *self, void *socket);

/*  Stops watching; to call before closing the watched socket. Harmless
    when not attached. */
void
dp_handshake_detach (dp_handshake_t *self);

/*  The socket watched, or NULL. */
void *
dp_handshake_socket (const dp_handshake_t *self);

/*  The monitor's descriptor to poll for input, or -1 when not attached. It
    fires only once every event was read: call dp_handshake_read before
    each poll. */
int
dp_handshake_fd (const dp_handshake_t *self);

/*  Reads every event waiting, logging the failures; never blocks. */
void
dp_handshake_read (dp_handshake_t *self);

/*  The broker admitted this worker (its WELCOME came): no failure counts
    any more. */
void
dp_handshake_reset (dp_handshake_t *self);

/*  When (ms, dp_now_ms's clock) the watch expires if no handshake succeeds
    before; INT64_MAX when it is not counting. */
int64_t
dp_handshake_deadline (const dp_handshake_t *self);

/*  True if handshakes failed and none succeeded for the timeout. */
bool
dp_handshake_expired (const dp_handshake_t *self, int64_t now);

/*  True if handshakes failed and none succeeded since. */
bool
dp_handshake_failing (const dp_handshake_t *self);

#endif

/*  dp_handshake.c - watches a worker's connection attempts for handshakes
    that fail (dp_handshake.h).

    The monitor's events are libzmq 4.x's: a first frame of 6 bytes, the
    event (uint16) and its value (uint32) in host order, then a frame with
    the endpoint. HANDSHAKE_FAILED_AUTH carries the ZAP status the broker's
    authenticator gave (400: key not admitted), HANDSHAKE_FAILED_PROTOCOL a
    ZMQ_PROTOCOL_ERROR_* code (a mechanism mismatch: CURVE on one side
    only, as a broker sees it), HANDSHAKE_FAILED_NO_DETAIL an errno (the
    broker closed the connection mid-handshake: what libzmq 4.3 shows the
    connecting side for a HELLO sealed with the wrong server key, and for
    CURVE on one side only).
*/
#include "dp_handshake.h"

#include "dp_util.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define EVENT_SIZE 6 /* uint16 event, uint32 value */

/*  The events a watch asks for. */
#define EVENTS                                                                                    \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                       \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

struct dp_handshake_t {
    void *ctx;
    const char *endpoint;
    bool curve;
    int timeout_ms;
    void *socket;          /* the socket watched, or NULL */
    void *monitor;         /* the PAIR its events come on, or NULL */
    int64_t failing_since; /* ms: the first failure since the last success; 0: none */
    int64_t logged;        /* ms: when a failure was last logged; 0: never */
    uint64_t unlogged;     /* failures since the last one logged */
};

dp_handshake_t *
dp_handshake_new (void *ctx, const char *endpoint, bool curve, int timeout_ms)
{
    assert (ctx && endpoint && timeout_ms >= 0);
    dp_handshake_t *self = (dp_handshake_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = ctx;
    self->endpoint = endpoint;
    self->curve = curve;
    self->timeout_ms = timeout_ms;
    return self;
}

void
dp_handshake_destroy (dp_handshake_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_handshake_detach (*self_p);
        free (*self_p);
        *self_p = NULL;
    }
}

int
dp_handshake_attach (dp_handshake_t *self, void *socket)
{
    assert (self && socket);
    static atomic_uint serial;
    dp_handshake_detach (self);
    char name[96];
    snprintf (name, sizeof name, "inproc://dpool-worker-handshake-%p-%u", (void *)self,
              atomic_fetch_add (&serial, 1));
    void *monitor = NULL;
    if (zmq_socket_monitor (socket, name, EVENTS) == 0 &&
        (monitor = zmq_socket (self->ctx, ZMQ_PAIR)) && zmq_connect (monitor, name) == 0) {
        self->socket = socket;
        self->monitor = monitor;
        return 0;
    }
    dp_warn ("cannot watch the handshakes with %s: %s", self->endpoint, zmq_strerror (errno));
    if (monitor)
        zmq_close (monitor);
    zmq_socket_monitor (socket, NULL, 0);
    return -1;
}

void
dp_handshake_detach (dp_handshake_t *self)
{
    assert (self);
    if (!self->socket)
        return;
    zmq_socket_monitor (self->socket, NULL, 0);
    int zero = 0;
    zmq_setsockopt (self->monitor, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close (self->monitor);
    self->socket = NULL;
    self->monitor = NULL;
}

void *
dp_handshake_socket (const dp_handshake_t *self)
{
    assert (self);
    return self->socket;
}

int
dp_handshake_fd (const dp_handshake_t *self)
{
    assert (self);
    if (!self->monitor)
        return -1;
    int fd = -1;
    size_t size = sizeof fd;
    return zmq_getsockopt (self->monitor, ZMQ_FD, &fd, &size) == 0 ? fd : -1;
}

/*  Writes the likely cause of a failed handshake (event, value) into
    text. */
static void
s_cause (const dp_handshake_t *self, uint16_t event, uint32_t value, char *text, size_t size)
{
    const char *at = self->endpoint;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf (text, size,
                  "the broker at %s refused this worker's CURVE key (ZAP status %u): is its "
                  "public key in the broker's --curve-clients directory?",
                  at, value);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
             value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH && self->curve)
        snprintf (text, size,
                  "the broker at %s runs without CURVE but this worker uses it: start the "
                  "broker with --curve-secret, or the worker without --curve-server",
                  at);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
             value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        snprintf (text, size,
                  "the broker at %s requires CURVE: give this worker its public key "
                  "(--curve-server)",
                  at);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
             value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        snprintf (text, size, "the CURVE handshake with %s failed: wrong --curve-server key?", at);
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        snprintf (text, size, "the handshake with %s failed: ZMTP protocol error 0x%x", at, value);
    else if (self->curve)
        snprintf (text, size,
                  "the broker at %s closed the connection during the CURVE handshake (%s): "
                  "wrong --curve-server key, or a broker without CURVE?",
                  at, strerror ((int)value));
    else
        snprintf (text, size,
                  "the peer at %s closed the connection during the handshake (%s): a broker "
                  "that requires CURVE (--curve-server), or no dpool broker?",
                  at, strerror ((int)value));
}

/*  A failed handshake: counted, and logged unless one was lately. */
static void
s_on_failure (dp_handshake_t *self, uint16_t event, uint32_t value)
{
    int64_t now = dp_now_ms ();
    self->unlogged++;
    if (!self->failing_since)
        self->failing_since = now;
    if (self->logged && now - self->logged < DP_HANDSHAKE_LOG_MS)
        return;
    char cause[512];
    s_cause (self, event, value, cause, sizeof cause);
    char more[64] = "";
    if (self->unlogged > 1)
        snprintf (more, sizeof more, " (%llu failures since the last message)",
                  (unsigned long long)self->unlogged);
    if (self->timeout_ms > 0) {
        int64_t left = self->failing_since + self->timeout_ms - now;
        dp_error ("%s%s; giving up in %lld s unless a handshake succeeds", cause, more,
                  (long long)(left > 0 ? (left + 999) / 1000 : 0));
    } else
        dp_error ("%s%s; retrying", cause, more);
    self->logged = now;
    self->unlogged = 0;
}

void
dp_handshake_read (dp_handshake_t *self)
{
    assert (self);
    while (self->monitor) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            if (errno == EINTR)
                continue;
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        bool valid = zmq_msg_size (&frame) == EVENT_SIZE;
        if (valid) {
            const uint8_t *data = (const uint8_t *)zmq_msg_data (&frame);
            memcpy (&event, data, sizeof event);
            memcpy (&value, data + sizeof event, sizeof value);
        }
        /*  The endpoint follows in a frame of its own. */
        while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, self->monitor, 0) >= 0)
            ;
        zmq_msg_close (&frame);
        if (!valid)
            continue;
        dp_debug ("handshake event 0x%x (value %u) with %s", event, value, self->endpoint);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            self->failing_since = 0;
        else if (event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH))
            s_on_failure (self, event, value);
    }
}

void
dp_handshake_reset (dp_handshake_t *self)
{
    assert (self);
    self->failing_since = 0;
    self->logged = 0;
    self->unlogged = 0;
}

int64_t
dp_handshake_deadline (const dp_handshake_t *self)
{
    assert (self);
    if (!self->failing_since || self->timeout_ms <= 0)
        return INT64_MAX;
    return self->failing_since + self->timeout_ms;
}

bool
dp_handshake_expired (const dp_handshake_t *self, int64_t now)
{
    return now >= dp_handshake_deadline (self);
}

bool
dp_handshake_failing (const dp_handshake_t *self)
{
    assert (self);
    return self->failing_since != 0;
}

/*  dp_testpeer.h - hand-made protocol peers for tests: a DEALER socket that
    speaks DPP through proto/, so a test can drive the broker (or stand in
    for it) message by message. A real peer over a real socket, not a mock.

    Peers registered with peer_keepalive say HEARTBEAT every
    DP_TESTPEER_HEARTBEAT_MS while the test waits on any peer, so that only
    the peers a case means to silence go silent.
*/
#ifndef DP_TESTPEER_H_INCLUDED
#define DP_TESTPEER_H_INCLUDED

#include "dp_proto.h"
#include "dp_wire.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#define DP_TESTPEER_RECV_MS      10000 /* generous: valgrind is slow */
#define DP_TESTPEER_HEARTBEAT_MS 300

typedef struct {
    void *sock;
    dp_writer_t w;    /* the body of the next message to send */
    dp_wire_msg_t in; /* the last message received */
    dp_msg_t msg;     /* ... decoded */
    bool holding;
} peer_t;

/*  The ZeroMQ context peers are made in; set once by the test. */
void
peer_context (void *ctx);

/*  A DEALER connected to endpoint (linger 0). Stops the test on failure. */
peer_t *
peer_new (const char *endpoint);

/*  Closes the socket and frees the peer; nulls *peer_p. */
void
peer_destroy (peer_t **peer_p);

/*  Makes the peer say HEARTBEAT while the test waits; peer_silence stops it. */
void
peer_keepalive (peer_t *peer);
void
peer_silence (peer_t *peer);

/*  Sends peer->w as cmd, or a raw body. Stops the test if it cannot. */
void
peer_send (peer_t *peer, dp_cmd_t cmd);
void
peer_send_raw (peer_t *peer, dp_cmd_t cmd, const void *body, size_t size);

/*  The next message other than HEARTBEAT within timeout_ms: its command
    (peer->msg holds it until the next receive), or 0. A malformed message
    from the broker stops the test. */
int
peer_recv (peer_t *peer, int timeout_ms);

/*  Stops the test unless the next message is cmd (an ERROR names its
    code and message). */
void
peer_expect (peer_t *peer, dp_cmd_t cmd);

/*  Stops the test if anything but HEARTBEAT arrives within ms. */
void
peer_expect_silence (peer_t *peer, int ms);

/*  Asks the broker for its status (STATUS, then STATUS-REPLY) and unpacks
    the reply into unpacked, which the caller destroys with
    msgpack_unpacked_destroy. Returns the top map. */
msgpack_object
peer_status (peer_t *client, msgpack_unpacked *unpacked);

/*  The value of the string key in map; an object of type NIL if there is
    none (or map is not a map). */
msgpack_object
peer_map_get (msgpack_object map, const char *key);

#endif

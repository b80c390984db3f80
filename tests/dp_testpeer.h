/*  dp_testpeer.h - hand-made protocol peers for tests: a DEALER socket that
    speaks DPP through proto/, so a test can drive the broker (or stand in
    for it) message by message. A real peer over a real socket, not a mock.

    Peers registered with dp_testpeer_keepalive say HEARTBEAT every
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
} dp_testpeer_t;

/*  The ZeroMQ context peers are made in; set once by the test. */
void
dp_testpeer_context (void *ctx);

/*  A DEALER connected to endpoint (linger 0). Stops the test on failure. */
dp_testpeer_t *
dp_testpeer_new (const char *endpoint);

/*  Closes the socket and frees the peer; nulls *peer_p. */
void
dp_testpeer_destroy (dp_testpeer_t **peer_p);

/*  Makes the peer say HEARTBEAT while the test waits; dp_testpeer_silence stops it. */
void
dp_testpeer_keepalive (dp_testpeer_t *peer);
void
dp_testpeer_silence (dp_testpeer_t *peer);

/*  Sends peer->w as cmd, or a raw body. Stops the test if it cannot. */
void
dp_testpeer_send (dp_testpeer_t *peer, dp_cmd_t cmd);
void
dp_testpeer_send_raw (dp_testpeer_t *peer, dp_cmd_t cmd, const void *body, size_t size);

/*  The next message other than HEARTBEAT within timeout_ms: its command
    (peer->msg holds it until the next receive), or 0. A malformed message
    from the broker stops the test. */
int
dp_testpeer_recv (dp_testpeer_t *peer, int timeout_ms);

/*  Stops the test unless the next message is cmd (an ERROR names its
    code and message). */
void
dp_testpeer_expect (dp_testpeer_t *peer, dp_cmd_t cmd);

/*  Stops the test if anything but HEARTBEAT arrives within ms. */
void
dp_testpeer_expect_silence (dp_testpeer_t *peer, int ms);

/*  Asks the broker for its status (STATUS, then STATUS-REPLY) and unpacks
    the reply into unpacked, which the caller destroys with
    msgpack_unpacked_destroy. Returns the top map. */
msgpack_object
dp_testpeer_status (dp_testpeer_t *client, msgpack_unpacked *unpacked);

/*  The value of the string key in map; an object of type NIL if there is
    none (or map is not a map). */
msgpack_object
dp_testpeer_map_get (msgpack_object map, const char *key);

/*  ---------------------------------------------------------------------------
    Decoding by hand, for the tests of proto/ itself: bodies as they would
    come from the network, with their header made here.
*/

/*  Decodes body (size bytes) as a message of cmd into msg. */
dp_reason_t
dp_testpeer_decode (dp_cmd_t cmd, const void *body, size_t size, dp_msg_t *msg);

/*  Decodes what w holds as cmd; stops the test unless it decodes (DP_OK)
    to a message of cmd. */
dp_msg_t
dp_testpeer_decode_ok (const dp_writer_t *w, dp_cmd_t cmd);

/*  Stops the test unless what w holds, as cmd, is refused for reason. */
void
dp_testpeer_refused (const dp_writer_t *w, dp_cmd_t cmd, dp_reason_t reason);

/*  Stops the test unless every proper prefix of body is refused as cmd,
    each decoded from a copy of exactly its size (so that a sanitizer sees
    any read past it). */
void
dp_testpeer_prefixes_refused (dp_cmd_t cmd, const void *body, size_t size);

#endif

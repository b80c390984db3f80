/*  dp_testpeer.c - hand-made protocol peers for tests. */
#include "dp_testpeer.h"

#include "dp_testutil.h"
#include "dp_util.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_KEPT 32

static void *s_ctx;
static dp_testpeer_t *s_kept[MAX_KEPT];
static int64_t s_last_heartbeat;

void
dp_testpeer_context (void *ctx)
{
    s_ctx = ctx;
}

/*  Every DP_TESTPEER_HEARTBEAT_MS, a HEARTBEAT from every kept peer. */
static void
s_heartbeat_kept (void)
{
    if (dp_now_ms () - s_last_heartbeat < DP_TESTPEER_HEARTBEAT_MS)
        return;
    s_last_heartbeat = dp_now_ms ();
    dp_writer_t w;
    dp_writer_init (&w);
    dp_encode_empty (&w);
    for (int i = 0; i < MAX_KEPT; i++)
        if (s_kept[i])
            dp_wire_send_writer (s_kept[i]->sock, NULL, 0, DP_CMD_HEARTBEAT, &w, ZMQ_DONTWAIT);
    dp_writer_fini (&w);
}

void
dp_testpeer_keepalive (dp_testpeer_t *peer)
{
    for (int i = 0; i < MAX_KEPT; i++)
        if (!s_kept[i]) {
            s_kept[i] = peer;
            return;
        }
    dp_test_fail (__FILE__, __LINE__, "too many peers kept alive");
}

void
dp_testpeer_silence (dp_testpeer_t *peer)
{
    for (int i = 0; i < MAX_KEPT; i++)
        if (s_kept[i] == peer)
            s_kept[i] = NULL;
}

dp_testpeer_t *
dp_testpeer_new (const char *endpoint)
{
    CHECK (s_ctx);
    dp_testpeer_t *peer = calloc (1, sizeof *peer);
    CHECK (peer);
    peer->sock = zmq_socket (s_ctx, ZMQ_DEALER);
    CHECK (peer->sock);
    CHECK (dp_wire_configure (peer->sock, false, 0) == 0);
    CHECK (zmq_connect (peer->sock, endpoint) == 0);
    dp_writer_init (&peer->w);
    return peer;
}

void
dp_testpeer_destroy (dp_testpeer_t **peer_p)
{
    dp_testpeer_t *peer = *peer_p;
    dp_testpeer_silence (peer);
    if (peer->holding)
        dp_wire_close (&peer->in);
    zmq_close (peer->sock);
    dp_writer_fini (&peer->w);
    free (peer);
    *peer_p = NULL;
}

void
dp_testpeer_send (dp_testpeer_t *peer, dp_cmd_t cmd)
{
    CHECK (dp_wire_send_writer (peer->sock, NULL, 0, cmd, &peer->w, 0) == 0);
}

void
dp_testpeer_send_raw (dp_testpeer_t *peer, dp_cmd_t cmd, const void *body, size_t size)
{
    CHECK (dp_wire_send (peer->sock, NULL, 0, cmd, body, size, 0) == 0);
}

int
dp_testpeer_recv (dp_testpeer_t *peer, int timeout_ms)
{
    int64_t deadline = dp_now_ms () + timeout_ms;
    for (;;) {
        if (peer->holding) {
            dp_wire_close (&peer->in);
            peer->holding = false;
        }
        s_heartbeat_kept ();
        long left = (long)(deadline - dp_now_ms ());
        if (left < 0)
            left = 0;
        zmq_pollitem_t item = {peer->sock, 0, ZMQ_POLLIN, 0};
        long wait = left < DP_TESTPEER_HEARTBEAT_MS ? left : DP_TESTPEER_HEARTBEAT_MS;
        if (zmq_poll (&item, 1, wait) <= 0) {
            if (dp_now_ms () >= deadline)
                return 0;
            continue;
        }
        CHECK (dp_wire_recv (peer->sock, &peer->in, 0) == 0);
        peer->holding = true;
        dp_reason_t reason = dp_wire_decode (&peer->in, false, NULL, &peer->msg);
        if (reason != DP_OK)
            dp_test_fail (__FILE__, __LINE__, "broker sent a malformed message: %s",
                          dp_reason_name (reason));
        if (peer->msg.cmd != DP_CMD_HEARTBEAT)
            return peer->msg.cmd;
    }
}

void
dp_testpeer_expect (dp_testpeer_t *peer, dp_cmd_t cmd)
{
    int got = dp_testpeer_recv (peer, DP_TESTPEER_RECV_MS);
    if (got == DP_CMD_ERROR && cmd != DP_CMD_ERROR)
        dp_test_fail (__FILE__, __LINE__, "expected %s, got ERROR %d: %.*s", dp_cmd_name (cmd),
                      peer->msg.u.error.code, (int)peer->msg.u.error.message.size,
                      (const char *)peer->msg.u.error.message.data);
    if (got != (int)cmd)
        dp_test_fail (__FILE__, __LINE__, "expected %s, got %s", dp_cmd_name (cmd),
                      got ? dp_cmd_name (got) : "nothing");
}

void
dp_testpeer_expect_silence (dp_testpeer_t *peer, int ms)
{
    int got = dp_testpeer_recv (peer, ms);
    if (got)
        dp_test_fail (__FILE__, __LINE__, "expected nothing, got %s", dp_cmd_name (got));
}

msgpack_object
dp_testpeer_status (dp_testpeer_t *client, msgpack_unpacked *unpacked)
{
    dp_encode_empty (&client->w);
    dp_testpeer_send (client, DP_CMD_STATUS);
    dp_testpeer_expect (client, DP_CMD_STATUS_REPLY);
    msgpack_unpacked_init (unpacked);
    CHECK (msgpack_unpack_next (unpacked, (const char *)client->msg.u.status.data,
                                client->msg.u.status.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    CHECK (unpacked->data.type == MSGPACK_OBJECT_MAP);
    return unpacked->data;
}

msgpack_object
dp_testpeer_map_get (msgpack_object map, const char *key)
{
    msgpack_object value = {.type = MSGPACK_OBJECT_NIL};
    if (map.type != MSGPACK_OBJECT_MAP)
        return value;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object k = map.via.map.ptr[i].key;
        if (k.type == MSGPACK_OBJECT_STR && k.via.str.size == len &&
            memcmp (k.via.str.ptr, key, len) == 0)
            value = map.via.map.ptr[i].val;
    }
    return value;
}

/*  ---------------------------------------------------------------------------
    Decoding by hand.
*/

dp_reason_t
dp_testpeer_decode (dp_cmd_t cmd, const void *body, size_t size, dp_msg_t *msg)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, cmd);
    return dp_msg_decode (header, sizeof header, body, size, msg);
}

dp_msg_t
dp_testpeer_decode_ok (const dp_writer_t *w, dp_cmd_t cmd)
{
    dp_msg_t msg;
    CHECK (dp_writer_ok (w));
    dp_reason_t rc = dp_testpeer_decode (cmd, dp_writer_data (w), dp_writer_size (w), &msg);
    if (rc != DP_OK)
        dp_test_fail (__FILE__, __LINE__, "%s decoded as %s", dp_cmd_name (cmd),
                      dp_reason_name (rc));
    CHECK_EQ_INT (msg.cmd, cmd);
    return msg;
}

void
dp_testpeer_refused (const dp_writer_t *w, dp_cmd_t cmd, dp_reason_t reason)
{
    dp_msg_t msg;
    CHECK (dp_writer_ok (w));
    CHECK_EQ_INT (dp_testpeer_decode (cmd, dp_writer_data (w), dp_writer_size (w), &msg), reason);
}

void
dp_testpeer_prefixes_refused (dp_cmd_t cmd, const void *body, size_t size)
{
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *prefix = (uint8_t *)malloc (cut ? cut : 1);
        CHECK (prefix);
        memcpy (prefix, body, cut);
        dp_msg_t msg;
        if (dp_testpeer_decode (cmd, prefix, cut, &msg) == DP_OK)
            dp_test_fail (__FILE__, __LINE__, "%s: a prefix of %zu of %zu bytes decoded",
                          dp_cmd_name (cmd), cut, size);
        free (prefix);
    }
}

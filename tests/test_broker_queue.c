/*  test_broker_queue.c - the broker's named queues and progress, driven
    message by message by hand-made peers (DEALER sockets speaking DPP
    through proto/): values lent until acknowledged and taken back when
    refused or when their getter leaves or dies, waiters forgotten with
    their peer, PROGRESS passed on as WORK-STATUS before the RESULT, and
    hostile queue messages counted and answered without harm.

        test_broker_queue CASE

    Run under valgrind too (DPOOL_TEST_BROKER_WRAP): the broker must end
    clean after all of it.
*/
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

static void *s_ctx;
static dp_test_broker_t s_broker;

static dp_testpeer_t *
s_client_new (uint8_t tag)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "queue-client");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    return peer;
}

static dp_testpeer_t *
s_worker_new (const char *fn)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.ipc);
    const char *fns[] = {fn};
    dp_encode_ready (&peer->w, "fake", 4242, "testhost", 1, fns, 1);
    dp_testpeer_send (peer, DP_CMD_READY);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    return peer;
}

/*  Sends a request and expects its reply; returns it (valid until the
    peer's next receive). */
static dp_queue_reply_t
s_expect_reply (dp_testpeer_t *peer, uint64_t req, int32_t code)
{
    dp_testpeer_expect (peer, DP_CMD_QUEUE_REPLY);
    dp_queue_reply_t reply = peer->msg.u.queue_reply;
    if (reply.req != req || reply.code != code)
        dp_test_fail (__FILE__, __LINE__, "reply to %llu with code %d, expected %llu and %d",
                      (unsigned long long)reply.req, reply.code, (unsigned long long)req, code);
    return reply;
}

static void
put (dp_testpeer_t *peer, uint64_t req, const char *name, uint8_t value)
{
    dp_encode_queue_put (&peer->w, req, name, &value, 1, 0, 0);
    dp_testpeer_send (peer, DP_CMD_QUEUE_PUT);
    s_expect_reply (peer, req, 0);
}

static void
get (dp_testpeer_t *peer, uint64_t req, const char *name, int32_t timeout_ms)
{
    dp_encode_queue_get (&peer->w, req, name, timeout_ms);
    dp_testpeer_send (peer, DP_CMD_QUEUE_GET);
}

/*  Expects the value got by req: returns its token. */
static uint64_t
s_expect_value (dp_testpeer_t *peer, uint64_t req, uint8_t value)
{
    dp_queue_reply_t reply = s_expect_reply (peer, req, 0);
    CHECK (reply.token != 0);
    CHECK (reply.value.size == 1 && reply.value.data[0] == value);
    return reply.token;
}

static void
ack (dp_testpeer_t *peer, uint64_t token, bool accept)
{
    dp_encode_queue_ack (&peer->w, token, accept);
    dp_testpeer_send (peer, DP_CMD_QUEUE_ACK);
}

/*  A round trip: everything the peer sent before has been handled. */
static void
sync (dp_testpeer_t *peer)
{
    dp_encode_queue_size (&peer->w, 0, "sync");
    dp_testpeer_send (peer, DP_CMD_QUEUE_SIZE);
    s_expect_reply (peer, 0, 0);
}

static void
bye (dp_testpeer_t *peer)
{
    dp_encode_empty (&peer->w);
    dp_testpeer_send (peer, DP_CMD_BYE);
}

/*  A counter of the broker's status: under "dropped" if group is
    "dropped", under "queue_stats" if "queue_stats". */
static uint64_t
s_status_count (dp_testpeer_t *client, const char *group, const char *key)
{
    msgpack_unpacked unpacked;
    msgpack_object value = dp_testpeer_map_get (
        dp_testpeer_map_get (dp_testpeer_status (client, &unpacked), group), key);
    CHECK (value.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    msgpack_unpacked_destroy (&unpacked);
    return value.via.u64;
}

/*  Stops the broker with SIGTERM and checks it ends cleanly (under
    valgrind: no invalid access, no leak). */
static void
s_broker_stop (void)
{
    int status = dp_test_stop (s_broker.pid, SIGTERM, 60000);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "broker ended with wait status %d", status);
}

/*  A value is the broker's until acknowledged: refused, it comes back to
    the front; lent to a getter that leaves (BYE) or dies (silent past
    expiry), it comes back too; a waiting get dies with its peer; an
    acknowledged one is gone. */
static void
s_case_lent_values_come_back (void)
{
    dp_testpeer_t *a = s_client_new (1), *b = s_client_new (2), *c = s_client_new (3);
    /*  Refused: back to the front, ahead of a newer value. */
    put (a, 1, "q", 10);
    put (a, 2, "q", 11);
    get (b, 3, "q", 0);
    uint64_t token = s_expect_value (b, 3, 10);
    ack (b, token, false);
    sync (b);
    get (c, 4, "q", 0);
    ack (c, s_expect_value (c, 4, 10), true);
    get (c, 5, "q", 0);
    ack (c, s_expect_value (c, 5, 11), true);
    /*  A late or repeated acknowledgement is counted, and changes nothing. */
    ack (b, token, true);
    ack (c, 999999, true);
    sync (b);
    sync (c);
    CHECK_EQ_INT (s_status_count (a, "dropped", "unknown_token"), 2);

    /*  Lent to a getter that says BYE without acknowledging: back to the
        front, and to the getter waiting next. */
    get (b, 6, "q", -1);
    dp_testpeer_expect_silence (b, 100);
    get (c, 7, "q", -1);
    put (a, 8, "q", 12);
    s_expect_value (b, 6, 12);
    bye (b);
    ack (c, s_expect_value (c, 7, 12), true);
    dp_testpeer_destroy (&b);

    /*  Lent to a getter that dies (its socket gone, no BYE): back when the
        broker gives up on it, past expiry. */
    dp_testpeer_t *d = s_client_new (4);
    get (d, 9, "q", -1);
    dp_testpeer_expect_silence (d, 100);
    put (a, 10, "q", 13);
    s_expect_value (d, 9, 13);
    dp_testpeer_destroy (&d);
    get (c, 11, "q", -1);
    ack (c, s_expect_value (c, 11, 13), true);
    sync (c);

    /*  A waiting get dies with its peer: the next value is not lost to it. */
    dp_testpeer_t *e = s_client_new (5);
    get (e, 12, "q", -1);
    dp_testpeer_expect_silence (e, 100);
    dp_testpeer_destroy (&e);
    /*  Past expiry (status answers meanwhile: the broker never blocks). */
    int64_t until = dp_now_ms () + DP_EXPIRY_MS + 500;
    while (dp_now_ms () < until)
        CHECK (s_status_count (a, "queue_stats", "waiting") <= 1);
    CHECK_EQ_INT (s_status_count (a, "queue_stats", "waiting"), 0);
    put (a, 13, "q", 14);
    get (c, 14, "q", 0);
    ack (c, s_expect_value (c, 14, 14), true);
    sync (c);

    /*  A worker that registers again gives back what it was lent. */
    dp_testpeer_t *w = s_worker_new ("f");
    put (a, 15, "q", 15);
    get (w, 16, "q", 0);
    s_expect_value (w, 16, 15);
    const char *fns[] = {"f"};
    dp_encode_ready (&w->w, "fake", 4242, "testhost", 1, fns, 1);
    dp_testpeer_send (w, DP_CMD_READY);
    dp_testpeer_expect (w, DP_CMD_WELCOME);
    get (c, 17, "q", 0);
    ack (c, s_expect_value (c, 17, 15), true);
    sync (c);
    CHECK_EQ_INT (s_status_count (a, "queue_stats", "values"), 0);
    CHECK_EQ_INT (s_status_count (a, "queue_stats", "unacked"), 0);
    CHECK_EQ_INT (s_status_count (a, "queue_stats", "returned"), 4);

    /*  Left lent and queued at shutdown: freed with the broker. */
    put (a, 18, "q", 16);
    put (a, 19, "q", 17);
    get (c, 20, "q", 0);
    s_expect_value (c, 20, 16);
    get (w, 21, "empty", -1);
    dp_testpeer_destroy (&w);
    dp_testpeer_destroy (&a);
    dp_testpeer_destroy (&c);
    s_broker_stop ();
}

/*  PROGRESS from the worker holding a job reaches the task's client as
    WORK-STATUS, before the job's RESULT; from anyone else it is counted. */
static void
s_case_progress_before_result (void)
{
    dp_testpeer_t *client = s_client_new (1);
    dp_testpeer_t *worker = s_worker_new ("f");
    dp_list_begin (&client->w);
    static const uint8_t args[] = {0x07};
    dp_task_t task = {.id = 77, .fn = {(const uint8_t *)"f", 1}, .args = {args, 1}};
    dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_SUBMIT);
    dp_testpeer_expect (worker, DP_CMD_DISPATCH);
    dp_task_t job;
    CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
    uint64_t ref = job.id;
    static const uint8_t frac[] = {0x92, 0x01, 0x02};
    dp_encode_progress (&worker->w, ref, frac, sizeof frac);
    dp_testpeer_send (worker, DP_CMD_PROGRESS);
    dp_list_begin (&worker->w);
    dp_list_add_result (&worker->w, ref, 0, args, 1);
    dp_list_end (&worker->w);
    dp_testpeer_send (worker, DP_CMD_DONE);
    dp_testpeer_expect (client, DP_CMD_WORK_STATUS);
    CHECK_EQ_INT (client->msg.u.progress.id, 77);
    CHECK (client->msg.u.progress.value.size == 3 &&
           !memcmp (client->msg.u.progress.value.data, frac, 3));
    dp_testpeer_expect (client, DP_CMD_RESULT);
    /*  For a job it no longer holds: counted, not passed on. */
    dp_encode_progress (&worker->w, ref, frac, sizeof frac);
    dp_testpeer_send (worker, DP_CMD_PROGRESS);
    dp_testpeer_expect_silence (client, 200);
    CHECK_EQ_INT (s_status_count (client, "dropped", "unknown_ref"), 1);
    /*  From a client: not its role. */
    dp_encode_progress (&client->w, 1, frac, sizeof frac);
    dp_testpeer_send (client, DP_CMD_PROGRESS);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    CHECK_EQ_INT (client->msg.u.error.code, DPOOL_EPROTO);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
    s_broker_stop ();
}

/*  Hostile queue messages: each refused, counted and answered when it can
    be, and the broker goes on serving. */
static void
s_case_hostile (void)
{
    dp_testpeer_t *client = s_client_new (1);
    /*  From a peer the broker does not know: ESTATE. */
    dp_testpeer_t *stranger = dp_testpeer_new (s_broker.tcp);
    dp_encode_queue_get (&stranger->w, 1, "q", 0);
    dp_testpeer_send (stranger, DP_CMD_QUEUE_GET);
    dp_testpeer_expect (stranger, DP_CMD_ERROR);
    CHECK_EQ_INT (stranger->msg.u.error.code, DPOOL_ESTATE);
    dp_testpeer_destroy (&stranger);
    /*  Not a client's to send: QUEUE-REPLY, WORK-STATUS. */
    dp_encode_queue_reply (&client->w, 1, 0, 0, NULL, 0, 0);
    dp_testpeer_send (client, DP_CMD_QUEUE_REPLY);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    dp_encode_progress (&client->w, 1, "\x01", 1);
    dp_testpeer_send (client, DP_CMD_WORK_STATUS);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    CHECK_EQ_INT (s_status_count (client, "dropped", "role"), 2);
    /*  Malformed bodies: the wrong shape, fields beyond their limits. */
    static const uint8_t no_name[] = {0x93, 0x01, 0xa0, 0x00};          /* OPEN [1, "", 0] */
    static const uint8_t neg_timeout[] = {0x93, 0x01, 0xa1, 'q', 0xfe}; /* GET [1, "q", -2] */
    static const uint8_t huge_bound[] = {0x93, 0x01, 0xa1, 'q', 0xce, 0x7f, 0xff, 0xff, 0xff};
    static const uint8_t not_array[] = {0x81, 0x01, 0x02};
    static const uint8_t truncated[] = {0x95, 0x01, 0xa1, 'q', 0xc6, 0x00, 0x10, 0x00};
    dp_testpeer_send_raw (client, DP_CMD_QUEUE_OPEN, no_name, sizeof no_name);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    dp_testpeer_send_raw (client, DP_CMD_QUEUE_GET, neg_timeout, sizeof neg_timeout);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    dp_testpeer_send_raw (client, DP_CMD_QUEUE_OPEN, huge_bound, sizeof huge_bound);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    dp_testpeer_send_raw (client, DP_CMD_QUEUE_ACK, not_array, sizeof not_array);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    dp_testpeer_send_raw (client, DP_CMD_QUEUE_PUT, truncated, sizeof truncated);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    /*  A value just over 1 MiB. */
    size_t big = DP_MAX_QUEUE_VALUE + 1;
    uint8_t *value = calloc (1, big);
    CHECK (value);
    value[0] = 0xc6;
    value[1] = (uint8_t)((big - 5) >> 24);
    value[2] = (uint8_t)((big - 5) >> 16);
    value[3] = (uint8_t)((big - 5) >> 8);
    value[4] = (uint8_t)(big - 5);
    dp_encode_queue_put (&client->w, 1, "q", value, big, 0, 0);
    dp_testpeer_send (client, DP_CMD_QUEUE_PUT);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    free (value);
    CHECK_EQ_INT (s_status_count (client, "dropped", "limit"), 4);
    CHECK_EQ_INT (s_status_count (client, "dropped", "body"), 2);
    CHECK_EQ_INT (s_status_count (client, "dropped", "role"), 2);
    /*  Random bodies as every queue command, from a registered client. */
    uint64_t x = 0x853c49e6748fea9bull;
    for (int round = 0; round < 2000; round++) {
        uint8_t body[24];
        size_t size = (size_t)(x % sizeof body);
        for (size_t i = 0; i < size; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body[i] = (uint8_t)x;
        }
        if (size)
            body[0] = (uint8_t)(0x92 | (body[0] & 0x07));
        dp_cmd_t cmd = (dp_cmd_t)(DP_CMD_QUEUE_OPEN + x % (DP_CMD_COUNT_ - DP_CMD_QUEUE_OPEN));
        dp_testpeer_send_raw (client, cmd, body, size);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    /*  Whatever those did, a fresh client is served as ever. */
    dp_testpeer_t *fresh = s_client_new (2);
    put (fresh, 1, "sane", 42);
    get (fresh, 2, "sane", 0);
    ack (fresh, s_expect_value (fresh, 2, 42), true);
    dp_encode_queue_size (&fresh->w, 3, "sane");
    dp_testpeer_send (fresh, DP_CMD_QUEUE_SIZE);
    CHECK_EQ_INT (s_expect_reply (fresh, 3, 0).size, 0);
    dp_testpeer_destroy (&fresh);
    dp_testpeer_destroy (&client);
    s_broker_stop ();
}

static const dp_test_case_t s_cases[] = {
    {"broker_queue_lent_values_come_back", s_case_lent_values_come_back,
     .valgrind = "broker_queue_lent_values_come_back_valgrind"},
    {"broker_queue_progress_before_result", s_case_progress_before_result},
    {"broker_queue_hostile", s_case_hostile, .valgrind = "broker_queue_hostile_valgrind"},
};

int
main (int argc, char *argv[])
{
    const char *transport;
    const dp_test_case_t *run =
        dp_test_select (argc, argv, DP_TEST_CASES (s_cases), 150, &transport);
    s_ctx = zmq_ctx_new ();
    dp_testpeer_context (s_ctx);
    dp_test_broker_start (&s_broker, NULL);
    dp_test_run (run, transport);
    zmq_ctx_term (s_ctx);
    return 0;
}

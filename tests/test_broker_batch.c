/*  test_broker_batch.c - the broker's detached batches (PROTOCOL.md 5.8)
    message by message, with hand-made peers (dp_testpeer): a client adds
    tasks (again, after a "reconnect", adding nothing twice; out of order,
    refused), a fake worker runs them, a GET waits for their results and
    gets them in order, ACK deletes them and with the last the batch; then
    hostile batch messages, each refused and counted, after which a fresh
    client is served as ever. Under valgrind too (no invalid access, no
    leak at the broker's end with batches alive).
*/
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define ID "00000000000000aa"

static void *s_ctx;
static dp_test_broker_t s_broker;

static dp_testpeer_t *
s_client_new (uint8_t tag)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "batch-client");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    return peer;
}

/*  BATCH-ADD of the tasks first .. last - 1 of "work", args [i]. */
static void
s_add (dp_testpeer_t *client, uint64_t req, uint64_t first, uint64_t last, uint64_t total)
{
    dp_encode_batch_add (&client->w, req, ID, "b", "work", 0, 0, total);
    dp_list_open (&client->w);
    for (uint64_t i = first; i < last; i++) {
        uint8_t args[2] = {0x91, (uint8_t)i};
        dp_task_t task = {.id = i, .fn = {(const uint8_t *)"work", 4}, .args = {args, 2}};
        dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
    }
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_BATCH_ADD);
}

/*  The next BATCH-REPLY, for req with code; returns it. */
static dp_batch_reply_t
s_reply (dp_testpeer_t *client, uint64_t req, int32_t code)
{
    dp_testpeer_expect (client, DP_CMD_BATCH_REPLY);
    dp_batch_reply_t reply = client->msg.u.batch_reply;
    CHECK_EQ_INT (reply.req, req);
    if (reply.code != code)
        dp_test_fail (__FILE__, __LINE__, "code %d (%.*s), expected %d", reply.code,
                      (int)reply.message.size, (const char *)reply.message.data, code);
    return reply;
}

static uint64_t
s_added (dp_batch_reply_t reply)
{
    dp_batch_info_t info;
    CHECK (dp_list_next_batch (&reply.batches, &info));
    return info.added;
}

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

/*  The fake worker runs every job it holds: DONE with the args as value. */
static int
s_work (dp_testpeer_t *worker)
{
    CHECK_EQ_INT (dp_testpeer_recv (worker, DP_TESTPEER_RECV_MS), DP_CMD_DISPATCH);
    dp_list_t jobs = worker->msg.u.list;
    dp_task_t job;
    dp_writer_t w;
    dp_writer_init (&w);
    dp_list_begin (&w);
    int count = 0;
    while (dp_list_next_task (&jobs, DP_CMD_DISPATCH, &job)) {
        dp_list_add_result (&w, job.id, 0, job.args.data, job.args.size);
        count++;
    }
    dp_list_end (&w);
    dp_testpeer_send_raw (worker, DP_CMD_DONE, dp_writer_data (&w), dp_writer_size (&w));
    dp_writer_fini (&w);
    return count;
}

/*  Adds, resent adds, a gap; a GET that waits for the worker; the results
    in order; ACK, and the batch gone with the last. Returns the worker. */
static dp_testpeer_t *
s_add_run_collect (dp_testpeer_t *client)
{
    s_add (client, 1, 0, 3, 0);
    CHECK_EQ_INT (s_added (s_reply (client, 1, 0)), 3);
    /*  Sent again with one more (a resubmission): only the new one enters. */
    s_add (client, 2, 0, 4, 0);
    CHECK_EQ_INT (s_added (s_reply (client, 2, 0)), 4);
    /*  A gap: refused, nothing enters. */
    s_add (client, 3, 5, 6, 0);
    s_reply (client, 3, DPOOL_EINVAL);
    s_add (client, 4, 4, 5, 5); /* the fifth and last: sealed */
    CHECK_EQ_INT (s_added (s_reply (client, 4, 0)), 5);
    CHECK_EQ_INT (s_status_count (client, "limits", "batch_tasks"), 5);

    /*  A GET waits: no worker yet. */
    dp_encode_batch_get (&client->w, 5, ID, 0, 100, 60000);
    dp_testpeer_send (client, DP_CMD_BATCH_GET);
    dp_testpeer_expect_silence (client, 300);
    CHECK_EQ_INT (s_status_count (client, "limits", "batch_waiting"), 1);
    dp_testpeer_t *worker = dp_testpeer_new (s_broker.ipc);
    const char *fns[] = {"work"};
    dp_encode_ready (&worker->w, "fake", 4242, "testhost", 100, fns, 1);
    dp_testpeer_send (worker, DP_CMD_READY);
    dp_testpeer_expect (worker, DP_CMD_WELCOME);
    dp_testpeer_keepalive (worker);
    int ran = 0;
    while (ran < 5)
        ran += s_work (worker);
    /*  Its results, in order (the GET is answered with those ready when it
        wakes; ask on until all five came). */
    uint64_t next = 0;
    uint64_t req = 5;
    while (next < 5) {
        dp_batch_reply_t reply = s_reply (client, req, 0);
        dp_result_t result;
        while (dp_list_next_result (&reply.results, &result)) {
            CHECK_EQ_INT (result.id, next);
            CHECK_EQ_INT (result.code, 0);
            CHECK (result.value.size == 2 && result.value.data[1] == next);
            next++;
        }
        if (next < 5) {
            dp_encode_batch_get (&client->w, ++req, ID, next, 100, 60000);
            dp_testpeer_send (client, DP_CMD_BATCH_GET);
        }
    }
    /*  ACK of the first two, then of all: the batch is gone. */
    dp_encode_batch_ack (&client->w, 20, ID, 2);
    dp_testpeer_send (client, DP_CMD_BATCH_ACK);
    dp_batch_reply_t reply = s_reply (client, 20, 0);
    dp_batch_info_t info;
    CHECK (dp_list_next_batch (&reply.batches, &info));
    CHECK_EQ_INT (info.collected, 2);
    CHECK_EQ_INT (info.done, 5);
    dp_encode_batch_ack (&client->w, 21, ID, 5);
    dp_testpeer_send (client, DP_CMD_BATCH_ACK);
    reply = s_reply (client, 21, 0);
    CHECK (!dp_list_next_batch (&reply.batches, &info));
    dp_encode_batch_get (&client->w, 22, ID, 0, 1, 0);
    dp_testpeer_send (client, DP_CMD_BATCH_GET);
    s_reply (client, 22, DPOOL_ENOENT);
    return worker;
}

/*  Refusals: roles, a stranger, malformed bodies, each counted. */
static void
s_refusals (dp_testpeer_t *client, dp_testpeer_t *worker)
{
    /*  Roles: a worker may not send batch requests, nor a client a reply;
        a stranger is told to register. */
    dp_encode_batch_list (&worker->w, 1);
    dp_testpeer_send (worker, DP_CMD_BATCH_LIST);
    dp_testpeer_expect (worker, DP_CMD_ERROR);
    CHECK_EQ_INT (worker->msg.u.error.code, DPOOL_EPROTO);
    dp_encode_batch_reply (&client->w, 1, 0, NULL);
    dp_list_open (&client->w);
    dp_list_end (&client->w);
    dp_list_open (&client->w);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_BATCH_REPLY);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    CHECK_EQ_INT (s_status_count (client, "dropped", "role"), 2);
    dp_testpeer_t *stranger = dp_testpeer_new (s_broker.tcp);
    dp_encode_batch_list (&stranger->w, 1);
    dp_testpeer_send (stranger, DP_CMD_BATCH_LIST);
    dp_testpeer_expect (stranger, DP_CMD_ERROR);
    CHECK_EQ_INT (stranger->msg.u.error.code, DPOOL_ESTATE);
    dp_testpeer_destroy (&stranger);

    /*  Malformed: a bad id, a GET of 0 results; counted as "limit". */
    static const uint8_t bad_id[] = {0x92, 0x01, 0xa3, '.', '.', '/'}; /* CANCEL [1, "../"] */
    dp_testpeer_send_raw (client, DP_CMD_BATCH_CANCEL, bad_id, sizeof bad_id);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    dp_encode_batch_get (&client->w, 1, ID, 0, 0, 0);
    dp_testpeer_send (client, DP_CMD_BATCH_GET);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    CHECK_EQ_INT (s_status_count (client, "dropped", "limit"), 2);
}

static void
s_case_protocol (void)
{
    dp_testpeer_t *client = s_client_new (1);
    dp_testpeer_t *worker = s_add_run_collect (client);
    s_refusals (client, worker);
    /*  A batch left with tasks queued, one with results: freed at the
        broker's end (valgrind: no leak). Then random batch bodies. */
    s_add (client, 30, 0, 3, 0);
    s_reply (client, 30, 0);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 2000; round++) {
        uint8_t body[32];
        size_t size = (size_t)(x % sizeof body);
        for (size_t i = 0; i < size; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body[i] = (uint8_t)x;
        }
        if (size)
            body[0] = (uint8_t)(0x91 | (body[0] & 0x07));
        dp_cmd_t cmd = (dp_cmd_t)(DP_CMD_BATCH_ADD + x % 5);
        dp_testpeer_send_raw (client, cmd, body, size);
        x ^= x << 13;
    }
    dp_testpeer_t *fresh = s_client_new (2);
    dp_encode_batch_list (&fresh->w, 7);
    dp_testpeer_send (fresh, DP_CMD_BATCH_LIST);
    s_reply (fresh, 7, 0);
    dp_testpeer_destroy (&fresh);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
    int status = dp_test_stop (s_broker.pid, SIGTERM, 60000);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "broker ended with wait status %d", status);
}

static const dp_test_case_t s_cases[] = {
    {"broker_batch_protocol", s_case_protocol, .valgrind = "broker_batch_protocol_valgrind"},
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

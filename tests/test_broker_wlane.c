/*  test_broker_wlane.c - workers' lanes (PROTOCOL.md 5.7) in the broker,
    driven by hand-made peers: a worker's WELCOME carries its token, an
    ATTACH with it makes a second connection the worker's lane, DISPATCH
    goes there and DONE and PROGRESS come from it; a lane that is refused,
    replaced, closed or left says so in status, and the worker goes on
    through its own connection. Usage: test_broker_wlane CASE.
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
static const uint8_t s_args[1] = {0x07};

static dp_testpeer_t *
s_client_new (uint8_t tag)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "wlane-client");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

/*  A worker offering "fw" with credit 1; its token in *token. */
static dp_testpeer_t *
s_worker_new (uint64_t *token)
{
    const char *fns[] = {"fw"};
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.ipc);
    dp_encode_ready (&peer->w, "lane-worker", 4243, "testhost", 1, fns, 1);
    dp_testpeer_send (peer, DP_CMD_READY);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    *token = peer->msg.u.welcome.token;
    CHECK (*token != 0);
    return peer;
}

/*  ATTACH [token] on peer; returns the answer's command. */
static int
s_attach (dp_testpeer_t *peer, uint64_t token)
{
    dp_encode_attach (&peer->w, token);
    dp_testpeer_send (peer, DP_CMD_ATTACH);
    return dp_testpeer_recv (peer, DP_TESTPEER_RECV_MS);
}

static void
s_submit (dp_testpeer_t *client, uint64_t seq)
{
    dp_task_t task = {.id = seq, .fn = {(const uint8_t *)"fw", 2}, .args = {s_args, 1}};
    dp_list_begin (&client->w);
    dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_SUBMIT);
}

/*  The one job of the next DISPATCH on peer: its ref. */
static uint64_t
s_expect_job (dp_testpeer_t *peer)
{
    dp_testpeer_expect (peer, DP_CMD_DISPATCH);
    dp_task_t job;
    CHECK (dp_list_next_task (&peer->msg.u.list, DP_CMD_DISPATCH, &job));
    return job.id;
}

static void
s_done (dp_testpeer_t *peer, uint64_t ref)
{
    dp_list_begin (&peer->w);
    dp_list_add_result_run (&peer->w, ref, 0, s_args, sizeof s_args, 10);
    dp_list_end (&peer->w);
    dp_testpeer_send (peer, DP_CMD_DONE);
}

static uint64_t
s_expect_result (dp_testpeer_t *client)
{
    dp_testpeer_expect (client, DP_CMD_RESULT);
    dp_result_t result;
    CHECK (dp_list_next_result (&client->msg.u.list, &result));
    CHECK_EQ_INT (result.code, 0);
    return result.id;
}

/*  A top-level counter of status, or of its dropped map. */
static uint64_t
s_status (dp_testpeer_t *client, const char *key, bool dropped)
{
    msgpack_unpacked unpacked;
    msgpack_object map = dp_testpeer_status (client, &unpacked);
    if (dropped)
        map = dp_testpeer_map_get (map, "dropped");
    msgpack_object value = dp_testpeer_map_get (map, key);
    if (value.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        dp_test_fail (__FILE__, __LINE__, "status has no counter %s", key);
    msgpack_unpacked_destroy (&unpacked);
    return value.via.u64;
}

/*  The broker's count of connections ZeroMQ saw end. */
static uint64_t
s_disconnected (dp_testpeer_t *client)
{
    msgpack_unpacked unpacked;
    msgpack_object map = dp_testpeer_status (client, &unpacked);
    map = dp_testpeer_map_get (dp_testpeer_map_get (map, "connections"), "disconnected");
    CHECK (map.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    msgpack_unpacked_destroy (&unpacked);
    return map.via.u64;
}

typedef struct {
    dp_testpeer_t *client;
    uint64_t before;
} s_gone_t;

static bool
s_lane_gone (void *arg)
{
    s_gone_t *gone = (s_gone_t *)arg;
    return s_disconnected (gone->client) > gone->before;
}

/*  Jobs go out on the lane; DONE and PROGRESS come back on it; the lane's
    BYE is answered and the next job goes to the worker's own connection. */
static void
s_case_jobs_on_the_lane (void)
{
    dp_testpeer_t *client = s_client_new (31);
    uint64_t token;
    dp_testpeer_t *worker = s_worker_new (&token);
    dp_testpeer_keepalive (worker);
    dp_testpeer_t *lane = dp_testpeer_new (s_broker.ipc);
    CHECK_EQ_INT (s_attach (lane, token), DP_CMD_WELCOME);
    CHECK_EQ_INT (lane->msg.u.welcome.token, 0);
    CHECK_EQ_INT (s_status (client, "worker_lanes", false), 1);

    s_submit (client, 1);
    uint64_t ref = s_expect_job (lane);
    uint8_t value[] = {0x92, 0x01, 0x02};
    dp_encode_progress (&lane->w, ref, value, sizeof value);
    dp_testpeer_send (lane, DP_CMD_PROGRESS);
    dp_testpeer_expect (client, DP_CMD_WORK_STATUS);
    CHECK_EQ_INT (client->msg.u.progress.id, 1);
    s_done (lane, ref);
    CHECK_EQ_INT (s_expect_result (client), 1);
    CHECK_EQ_INT (s_status (client, "lane_dispatches", false), 1);
    dp_testpeer_expect_silence (worker, 300);

    /*  A lane may not ask queues: those stay on the worker's connection. */
    dp_encode_queue_size (&lane->w, 1, "q");
    dp_testpeer_send (lane, DP_CMD_QUEUE_SIZE);
    dp_testpeer_expect (lane, DP_CMD_ERROR);
    CHECK_EQ_INT (lane->msg.u.error.code, DPOOL_EPROTO);

    dp_encode_empty (&lane->w);
    dp_testpeer_send (lane, DP_CMD_BYE);
    dp_testpeer_expect (lane, DP_CMD_BYE);
    CHECK_EQ_INT (s_status (client, "worker_lanes", false), 0);
    s_submit (client, 2);
    s_done (worker, s_expect_job (worker));
    CHECK_EQ_INT (s_expect_result (client), 2);
    dp_testpeer_destroy (&lane);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  An unknown token is ESTATE; a worker's own connection cannot be its
    lane; a second ATTACH replaces the first lane; a lane whose socket is
    gone is dropped at the next DISPATCH, which goes to the worker; a lane
    goes with its worker. */
static void
s_case_lane_refused_replaced_and_dropped (void)
{
    dp_testpeer_t *client = s_client_new (32);
    uint64_t token;
    dp_testpeer_t *worker = s_worker_new (&token);
    dp_testpeer_keepalive (worker);
    dp_testpeer_t *stranger = dp_testpeer_new (s_broker.ipc);
    CHECK_EQ_INT (s_attach (stranger, token ^ 1), DP_CMD_ERROR);
    CHECK_EQ_INT (stranger->msg.u.error.code, DPOOL_ESTATE);
    CHECK_EQ_INT (s_status (client, "unknown_peer", true), 1);
    CHECK_EQ_INT (s_attach (worker, token), DP_CMD_ERROR);
    CHECK_EQ_INT (worker->msg.u.error.code, DPOOL_EPROTO);

    dp_testpeer_t *first = dp_testpeer_new (s_broker.ipc);
    CHECK_EQ_INT (s_attach (first, token), DP_CMD_WELCOME);
    dp_testpeer_t *second = dp_testpeer_new (s_broker.ipc);
    CHECK_EQ_INT (s_attach (second, token), DP_CMD_WELCOME);
    CHECK_EQ_INT (s_status (client, "worker_lanes", false), 1);
    s_submit (client, 1);
    s_done (second, s_expect_job (second));
    CHECK_EQ_INT (s_expect_result (client), 1);
    /*  The replaced lane is forgotten: its DONE is from nobody. */
    s_done (first, 99);
    dp_testpeer_expect (first, DP_CMD_ERROR);
    CHECK_EQ_INT (first->msg.u.error.code, DPOOL_ESTATE);

    s_gone_t gone = {client, s_disconnected (client)};
    dp_testpeer_destroy (&second);
    CHECK (dp_test_wait_until (s_lane_gone, &gone, 5000));
    s_submit (client, 2);
    s_done (worker, s_expect_job (worker));
    CHECK_EQ_INT (s_expect_result (client), 2);
    CHECK_EQ_INT (s_status (client, "worker_lanes", false), 0);

    CHECK_EQ_INT (s_attach (stranger, token), DP_CMD_WELCOME);
    CHECK_EQ_INT (s_status (client, "worker_lanes", false), 1);
    dp_encode_empty (&worker->w);
    dp_testpeer_send (worker, DP_CMD_BYE);
    dp_testpeer_expect (worker, DP_CMD_BYE);
    CHECK_EQ_INT (s_status (client, "worker_lanes", false), 0);
    dp_testpeer_destroy (&first);
    dp_testpeer_destroy (&stranger);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

static const dp_test_case_t s_cases[] = {
    {"broker_wlane_jobs_on_the_lane", s_case_jobs_on_the_lane},
    {"broker_wlane_refused_replaced_and_dropped", s_case_lane_refused_replaced_and_dropped},
};

int
main (int argc, char *argv[])
{
    const char *transport;
    const dp_test_case_t *run =
        dp_test_select (argc, argv, DP_TEST_CASES (s_cases), 60, &transport);
    s_ctx = zmq_ctx_new ();
    dp_testpeer_context (s_ctx);
    dp_test_broker_start (&s_broker, run->data);
    dp_test_run (run, transport);
    zmq_ctx_term (s_ctx);
    int status = dp_test_stop (s_broker.pid, SIGTERM, 30000);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "broker did not stop cleanly (status %d)", status);
    return 0;
}

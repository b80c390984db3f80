/*  dp_testbroker.c - the broker under test and the hand-made peers that
    drive it, for test_broker and test_broker_faults (dp_testbroker.h).
*/
#include "dp_testbroker.h"

#include "dp_util.h"
#include "dp_wire.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

void *dp_testbroker_ctx;
dp_test_broker_t dp_testbroker_broker;

dp_testpeer_t *
dp_testbroker_client (uint8_t tag)
{
    dp_testpeer_t *peer = dp_testpeer_new (dp_testbroker_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "test-client");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

dp_testpeer_t *
dp_testbroker_worker (const char *const *fns, size_t nfns, uint32_t credit)
{
    dp_testpeer_t *peer = dp_testpeer_new (dp_testbroker_broker.ipc);
    dp_encode_ready (&peer->w, "fake", 4242, "testhost", credit, fns, nfns);
    dp_testpeer_send (peer, DP_CMD_READY);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

/*  Packs a small int as the args. */
const uint8_t dp_testbroker_args[1] = {0x07};

/*  Sends count tasks in one SUBMIT. */
void
dp_testbroker_submit_tasks (dp_testpeer_t *client, const dp_task_t *tasks, size_t count)
{
    dp_list_begin (&client->w);
    for (size_t i = 0; i < count; i++)
        dp_list_add_task (&client->w, DP_CMD_SUBMIT, &tasks[i]);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_SUBMIT);
}

void
dp_testbroker_submit_flags (dp_testpeer_t *client, const char *fn, uint64_t seq, int32_t priority,
                            int32_t retries, uint32_t flags)
{
    dp_task_t task = {.id = seq,
                      .fn = {(const uint8_t *)fn, strlen (fn)},
                      .args = {dp_testbroker_args, sizeof dp_testbroker_args},
                      .priority = priority,
                      .retries = retries,
                      .flags = flags};
    dp_testbroker_submit_tasks (client, &task, 1);
}

void
dp_testbroker_submit (dp_testpeer_t *client, const char *fn, uint64_t seq, int32_t priority,
                      int32_t retries)
{
    dp_testbroker_submit_flags (client, fn, seq, priority, retries, 0);
}

/*  Receives a DISPATCH and returns its jobs' refs (and fns) in order. */
size_t
dp_testbroker_expect_jobs (dp_testpeer_t *worker, uint64_t *refs, char fns[][32], size_t max)
{
    dp_testpeer_expect (worker, DP_CMD_DISPATCH);
    size_t count = 0;
    dp_task_t job;
    while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job)) {
        CHECK (count < max);
        refs[count] = job.id;
        if (fns) {
            CHECK (job.fn.size < 32);
            memcpy (fns[count], job.fn.data, job.fn.size);
            fns[count][job.fn.size] = 0;
        }
        count++;
    }
    return count;
}

void
dp_testbroker_done_run (dp_testpeer_t *worker, uint64_t ref, int code, const char *message,
                        uint32_t run_us)
{
    dp_list_begin (&worker->w);
    if (code == 0)
        dp_list_add_result_run (&worker->w, ref, 0, dp_testbroker_args, sizeof dp_testbroker_args,
                                run_us);
    else
        dp_list_add_error_run (&worker->w, ref, code, message, run_us);
    dp_list_end (&worker->w);
    dp_testpeer_send (worker, DP_CMD_DONE);
}

/*  A job done in 10 microseconds: a fast function. */
void
dp_testbroker_done (dp_testpeer_t *worker, uint64_t ref, int code, const char *message)
{
    dp_testbroker_done_run (worker, ref, code, message, 10);
}

/*  Receives one RESULT with exactly one entry and returns it. */
dp_result_t
dp_testbroker_expect_result (dp_testpeer_t *client)
{
    dp_testpeer_expect (client, DP_CMD_RESULT);
    dp_result_t result;
    CHECK (dp_list_next_result (&client->msg.u.list, &result));
    dp_result_t extra;
    CHECK (!dp_list_next_result (&client->msg.u.list, &extra));
    return result;
}

char *
dp_testbroker_result_message (dp_result_t result)
{
    dp_reader_t reader;
    dp_span_t text;
    dp_reader_init (&reader, result.value.data, result.value.size);
    CHECK (dp_mp_read_str (&reader, &text) == 0);
    char *copy = malloc (text.size + 1);
    memcpy (copy, text.data, text.size);
    copy[text.size] = 0;
    return copy;
}

/*  Asks for status and returns the value of a counter in the top map, or in
    its "dropped" map when dropped is true, or in its "connections" map when
    key is one of the connection counters. */
uint64_t
dp_testbroker_status_counter (dp_testpeer_t *client, const char *key, bool dropped)
{
    msgpack_unpacked unpacked;
    msgpack_object map = dp_testpeer_status (client, &unpacked);
    const char *submap = dropped ? "dropped" : NULL;
    if (!strcmp (key, "accepted") || !strcmp (key, "disconnected") ||
        !strcmp (key, "handshake_failed"))
        submap = "connections";
    if (submap) {
        map = dp_testpeer_map_get (map, submap);
        CHECK (map.type == MSGPACK_OBJECT_MAP);
    }
    msgpack_object value = dp_testpeer_map_get (map, key);
    if (value.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        dp_test_fail (__FILE__, __LINE__, "status has no counter %s", key);
    msgpack_unpacked_destroy (&unpacked);
    return value.via.u64;
}

int
dp_testbroker_main (int argc, char *argv[], const dp_test_case_t *cases, size_t count)
{
    const char *transport;
    const dp_test_case_t *run = dp_test_select (argc, argv, cases, count, 60, &transport);
    dp_testbroker_ctx = zmq_ctx_new ();
    dp_testpeer_context (dp_testbroker_ctx);
    dp_test_broker_start (&dp_testbroker_broker, run->data);
    dp_test_run (run, transport);
    zmq_ctx_term (dp_testbroker_ctx);
    /*  Every case ends with a clean stop: SIGTERM, exit status 0. Under
        DPOOL_TEST_BROKER_WRAP=valgrind (--error-exitcode) this is also
        where a leak or a bad access fails the test. */
    if (kill (dp_testbroker_broker.pid, 0) == 0) {
        int status = dp_test_stop (dp_testbroker_broker.pid, SIGTERM, 30000);
        if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
            dp_test_fail (__FILE__, __LINE__, "broker did not stop cleanly (status %d)", status);
    }
    return 0;
}

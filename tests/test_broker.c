/*  test_broker.c - the broker program, driven by hand-made peers.

    Each peer here is a real DEALER socket speaking DPP through proto/, so
    every rule of the broker can be checked message by message: dispatch by
    function, credit, priority then FIFO, routing of results, dead workers,
    retries, unknown refs, stolen sessions, queue limit, cancel, the
    no-function grace period, and hostile input. Usage: test_broker CASE.
*/
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define RECV_MS DP_TESTPEER_RECV_MS

static void *s_ctx;
static dp_test_broker_t s_broker;

static dp_testpeer_t *
s_client_new (uint8_t tag)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "test-client");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

static dp_testpeer_t *
s_worker_new (const char *const *fns, size_t nfns, uint32_t credit)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.ipc);
    dp_encode_ready (&peer->w, "fake", 4242, "testhost", credit, fns, nfns);
    dp_testpeer_send (peer, DP_CMD_READY);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

/*  Packs a small int as the args. */
static const uint8_t s_args[1] = {0x07};

/*  Sends count tasks in one SUBMIT. */
static void
s_submit_tasks (dp_testpeer_t *client, const dp_task_t *tasks, size_t count)
{
    dp_list_begin (&client->w);
    for (size_t i = 0; i < count; i++)
        dp_list_add_task (&client->w, DP_CMD_SUBMIT, &tasks[i]);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_SUBMIT);
}

static void
s_submit_flags (dp_testpeer_t *client, const char *fn, uint64_t seq, int32_t priority,
                int32_t retries, uint32_t flags)
{
    dp_task_t task = {.id = seq,
                      .fn = {(const uint8_t *)fn, strlen (fn)},
                      .args = {s_args, sizeof s_args},
                      .priority = priority,
                      .retries = retries,
                      .flags = flags};
    s_submit_tasks (client, &task, 1);
}

static void
submit (dp_testpeer_t *client, const char *fn, uint64_t seq, int32_t priority, int32_t retries)
{
    s_submit_flags (client, fn, seq, priority, retries, 0);
}

/*  Receives a DISPATCH and returns its jobs' refs (and fns) in order. */
static size_t
s_expect_jobs (dp_testpeer_t *worker, uint64_t *refs, char fns[][32], size_t max)
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

static void
s_done_run (dp_testpeer_t *worker, uint64_t ref, int code, const char *message, uint32_t run_us)
{
    dp_list_begin (&worker->w);
    if (code == 0)
        dp_list_add_result_run (&worker->w, ref, 0, s_args, sizeof s_args, run_us);
    else
        dp_list_add_error_run (&worker->w, ref, code, message, run_us);
    dp_list_end (&worker->w);
    dp_testpeer_send (worker, DP_CMD_DONE);
}

/*  A job done in 10 microseconds: a fast function. */
static void
done (dp_testpeer_t *worker, uint64_t ref, int code, const char *message)
{
    s_done_run (worker, ref, code, message, 10);
}

/*  Receives one RESULT with exactly one entry and returns it. */
static dp_result_t
s_expect_result (dp_testpeer_t *client)
{
    dp_testpeer_expect (client, DP_CMD_RESULT);
    dp_result_t result;
    CHECK (dp_list_next_result (&client->msg.u.list, &result));
    dp_result_t extra;
    CHECK (!dp_list_next_result (&client->msg.u.list, &extra));
    return result;
}

static char *
s_result_message (dp_result_t result)
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
static uint64_t
s_status_counter (dp_testpeer_t *client, const char *key, bool dropped)
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

/*  ---------------------------------------------------------------------------
    Cases.
*/

/*  Tasks go only to workers offering their function, never beyond credit. */
static void
s_case_dispatch_by_function_and_credit (void)
{
    const char *fa[] = {"fa"};
    const char *fb[] = {"fb"};
    dp_testpeer_t *wa = s_worker_new (fa, 1, 2);
    dp_testpeer_t *wb = s_worker_new (fb, 1, 1);
    dp_testpeer_t *client = s_client_new (1);
    uint64_t refs[8];
    char fns[8][32];
    /*  While fa's pace is unknown, its tasks go one at a time. */
    submit (client, "fa", 1, 0, 0);
    submit (client, "fa", 2, 0, 0);
    CHECK_EQ_INT (s_expect_jobs (wa, refs, fns, 8), 1);
    CHECK_EQ_STR (fns[0], "fa");
    dp_testpeer_expect_silence (wa, 300);
    done (wa, refs[0], 0, NULL); /* fa is fast: 10 us */
    CHECK_EQ_INT (s_expect_result (client).id, 1);
    CHECK_EQ_INT (s_expect_jobs (wa, refs, fns, 8), 1);
    done (wa, refs[0], 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 2);

    /*  Now fast: wa gets its whole credit of 2, never more. */
    for (uint64_t seq = 3; seq <= 6; seq++)
        submit (client, "fa", seq, 0, 0);
    submit (client, "fb", 7, 0, 0);
    size_t got = 0;
    while (got < 2)
        got += s_expect_jobs (wa, refs + got, fns + got, 8 - got);
    CHECK_EQ_INT (got, 2);
    for (size_t i = 0; i < got; i++)
        CHECK_EQ_STR (fns[i], "fa");
    dp_testpeer_expect_silence (wa, 300);
    uint64_t bref;
    CHECK_EQ_INT (s_expect_jobs (wb, &bref, fns, 1), 1);
    CHECK_EQ_STR (fns[0], "fb");
    done (wa, refs[0], 0, NULL);
    dp_result_t r = s_expect_result (client);
    CHECK (r.code == 0);
    CHECK (r.id == 3);
    /*  One credit back: exactly one more job. */
    CHECK_EQ_INT (s_expect_jobs (wa, refs, fns, 8), 1);
    dp_testpeer_destroy (&wa);
    dp_testpeer_destroy (&wb);
    dp_testpeer_destroy (&client);
}

/*  A slow function's tasks go one per worker however much credit it has:
    the broker queues about DP_PREFETCH_US of run time at a worker. */
static void
s_case_slow_tasks_not_prefetched (void)
{
    const char *fns[] = {"slow"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 8);
    dp_testpeer_t *client = s_client_new (16);
    for (uint64_t seq = 1; seq <= 4; seq++)
        submit (client, "slow", seq, 0, 0);
    uint64_t ref;
    for (uint64_t seq = 1; seq <= 4; seq++) {
        CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
        dp_testpeer_expect_silence (worker, 200);
        s_done_run (worker, ref, 0, NULL, 2 * DP_PREFETCH_US); /* slower than the budget */
        CHECK_EQ_INT (s_expect_result (client).id, seq);
    }
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Higher priority first; equal priorities in arrival order. */
static void
s_case_priority_then_fifo (void)
{
    dp_testpeer_t *client = s_client_new (2);
    /*  Queued before any worker exists. */
    int32_t prio[] = {0, 5, 0, 5, -1, 9};
    for (uint64_t i = 0; i < 6; i++)
        submit (client, "fp", i + 1, prio[i], 0);
    /*  A round trip proves the broker has them all queued. */
    CHECK_EQ_INT (s_status_counter (client, "queued", false), 6);
    const char *fns[] = {"fp"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    uint64_t expected[] = {6, 2, 4, 1, 3, 5};
    for (int i = 0; i < 6; i++) {
        uint64_t ref;
        CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
        done (worker, ref, 0, NULL);
        dp_result_t r = s_expect_result (client);
        CHECK_EQ_INT (r.id, expected[i]);
    }
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Two clients with the same seqs get only their own results. */
static void
s_case_results_routed_by_session (void)
{
    const char *fns[] = {"f"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 4);
    dp_testpeer_t *c1 = s_client_new (3);
    dp_testpeer_t *c2 = s_client_new (4);
    submit (c1, "f", 1, 0, 0);
    submit (c2, "f", 1, 0, 0);
    uint64_t refs[4];
    CHECK_EQ_INT (s_expect_jobs (worker, refs, NULL, 4), 1);
    done (worker, refs[0], DPOOL_EFAILED, "first");
    CHECK_EQ_INT (s_expect_jobs (worker, refs + 1, NULL, 3), 1);
    done (worker, refs[1], DPOOL_EFAILED, "second");
    dp_result_t r1 = s_expect_result (c1);
    dp_result_t r2 = s_expect_result (c2);
    char *m1 = s_result_message (r1);
    char *m2 = s_result_message (r2);
    /*  Each got one result, and not the same one. */
    CHECK (strcmp (m1, m2) != 0);
    free (m1);
    free (m2);
    dp_testpeer_expect_silence (c1, 200);
    dp_testpeer_expect_silence (c2, 200);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&c1);
    dp_testpeer_destroy (&c2);
}

/*  A worker that goes silent is dropped; its job runs elsewhere; after too
    many deaths the task fails ELOST naming the cause; a late DONE from the
    dead worker is dropped and counted, never a second result. */
static void
s_case_dead_worker_retry_and_late_done (void)
{
    const char *fns[] = {"fd"};
    dp_testpeer_t *client = s_client_new (5);
    submit (client, "fd", 1, 0, 1); /* one retry allowed */
    dp_testpeer_t *w1 = s_worker_new (fns, 1, 1);
    uint64_t ref1;
    CHECK_EQ_INT (s_expect_jobs (w1, &ref1, NULL, 1), 1);
    /*  w1 goes silent; a second worker gets the task after expiry. */
    dp_testpeer_t *w2 = s_worker_new (fns, 1, 1);
    uint64_t ref2;
    int64_t start = dp_now_ms ();
    /*  w2 must keep heartbeating while it waits, or it expires too. */
    int got = 0;
    while (!got && dp_now_ms () - start < 6000) {
        dp_encode_empty (&w2->w);
        dp_testpeer_send (w2, DP_CMD_HEARTBEAT);
        dp_encode_empty (&client->w);
        dp_testpeer_send (client, DP_CMD_HEARTBEAT);
        if (dp_testpeer_recv (w2, 500) == DP_CMD_DISPATCH) {
            dp_task_t job;
            CHECK (dp_list_next_task (&w2->msg.u.list, DP_CMD_DISPATCH, &job));
            ref2 = job.id;
            CHECK_EQ_INT (job.attempt, 2);
            got = 1;
        }
    }
    CHECK (got);
    CHECK (ref2 != ref1);
    /*  The presumed-dead worker answers late: dropped (it is not even known
        any more, so it is told to register again). */
    done (w1, ref1, 0, NULL);
    dp_testpeer_expect (w1, DP_CMD_ERROR);
    CHECK_EQ_INT (w1->msg.u.error.code, DPOOL_ESTATE);
    /*  w2 dies too: the second death exceeds the one retry. */
    dp_testpeer_destroy (&w2);
    int64_t waited = dp_now_ms ();
    dp_result_t r;
    for (;;) {
        dp_encode_empty (&client->w);
        dp_testpeer_send (client, DP_CMD_HEARTBEAT);
        if (dp_testpeer_recv (client, 500) == DP_CMD_RESULT) {
            CHECK (dp_list_next_result (&client->msg.u.list, &r));
            break;
        }
        CHECK (dp_now_ms () - waited < 6000);
    }
    CHECK_EQ_INT (r.code, DPOOL_ELOST);
    char *message = s_result_message (r);
    CHECK (strstr (message, "worker died 2 times"));
    free (message);
    dp_testpeer_destroy (&w1);
    dp_testpeer_destroy (&client);
}

/*  Tasks a dead worker held go out again one at a time, each to a worker
    holding nothing else, however fast their function: if one of them kills
    its worker again, the death is charged to it alone. */
static void
s_case_orphans_go_alone (void)
{
    const char *fns[] = {"fo"};
    dp_testpeer_t *client = s_client_new (18);
    dp_testpeer_t *w1 = s_worker_new (fns, 1, 10);
    uint64_t refs[10];
    /*  fo is timed as fast, then w1 takes six at once. */
    submit (client, "fo", 1, 0, 0);
    CHECK_EQ_INT (s_expect_jobs (w1, refs, NULL, 10), 1);
    done (w1, refs[0], 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 1);
    for (uint64_t seq = 2; seq <= 7; seq++)
        submit (client, "fo", seq, 0, 0);
    size_t got = 0;
    while (got < 6)
        got += s_expect_jobs (w1, refs + got, NULL, 10 - got);
    /*  w1 goes silent; w2 heartbeats until the broker gives up on w1. */
    dp_testpeer_t *w2 = s_worker_new (fns, 1, 10);
    int64_t start = dp_now_ms ();
    bool dispatched = false;
    while (!dispatched && dp_now_ms () - start < 6000) {
        dp_encode_empty (&w2->w);
        dp_testpeer_send (w2, DP_CMD_HEARTBEAT);
        dp_encode_empty (&client->w);
        dp_testpeer_send (client, DP_CMD_HEARTBEAT);
        dispatched = dp_testpeer_recv (w2, 500) == DP_CMD_DISPATCH;
    }
    CHECK (dispatched);
    /*  Six DISPATCHes of one job each, the next only once the last is done. */
    bool seen[8] = {false};
    for (int i = 0; i < 6; i++) {
        if (i > 0)
            dp_testpeer_expect (w2, DP_CMD_DISPATCH);
        dp_task_t job;
        CHECK (dp_list_next_task (&w2->msg.u.list, DP_CMD_DISPATCH, &job));
        CHECK_EQ_INT (job.attempt, 2);
        dp_task_t more;
        CHECK (!dp_list_next_task (&w2->msg.u.list, DP_CMD_DISPATCH, &more));
        dp_testpeer_expect_silence (w2, 200);
        done (w2, job.id, 0, NULL);
        dp_result_t r = s_expect_result (client);
        CHECK (r.id >= 2 && r.id <= 7 && !seen[r.id]);
        seen[r.id] = true;
        dp_encode_empty (&client->w);
        dp_testpeer_send (client, DP_CMD_HEARTBEAT);
    }
    dp_testpeer_destroy (&w2);
    dp_testpeer_destroy (&w1);
    dp_testpeer_destroy (&client);
}

/*  A registered worker answering for a job it does not hold. */
static void
s_case_unknown_ref_counted (void)
{
    const char *fns[] = {"fu"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    dp_testpeer_t *client = s_client_new (6);
    submit (client, "fu", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
    done (worker, ref + 1000, 0, NULL);
    CHECK_EQ_INT (s_status_counter (client, "unknown_ref", true), 1);
    done (worker, ref, 0, NULL);
    dp_result_t r = s_expect_result (client);
    CHECK_EQ_INT (r.id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  A second live peer claiming a session is refused and counted. */
static void
s_case_session_stolen (void)
{
    dp_testpeer_t *owner = s_client_new (7);
    dp_testpeer_t *thief = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, 7, sizeof session);
    dp_encode_hello (&thief->w, session, "thief");
    dp_testpeer_send (thief, DP_CMD_HELLO);
    dp_testpeer_expect (thief, DP_CMD_ERROR);
    CHECK_EQ_INT (thief->msg.u.error.code, DPOOL_ESTATE);
    CHECK_EQ_INT (s_status_counter (owner, "session_stolen", true), 1);
    /*  The owner still works. */
    const char *fns[] = {"fs"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    submit (owner, "fs", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
    done (worker, ref, 0, NULL);
    CHECK_EQ_INT (s_expect_result (owner).id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&thief);
    dp_testpeer_destroy (&owner);
}

/*  Beyond --max-queue, tasks are rejected with EREJECTED. */
static void
s_case_queue_limit (void)
{
    dp_testpeer_t *client = s_client_new (8);
    for (uint64_t seq = 1; seq <= 3; seq++)
        submit (client, "fq", seq, 0, 0);
    dp_result_t r = s_expect_result (client);
    CHECK_EQ_INT (r.id, 3);
    CHECK_EQ_INT (r.code, DPOOL_EREJECTED);
    char *message = s_result_message (r);
    CHECK (strstr (message, "queue full"));
    free (message);
    CHECK_EQ_INT (s_status_counter (client, "queued", false), 2);
    dp_testpeer_destroy (&client);
}

/*  Cancel one queued task, then all; cancelled tasks never run. */
static void
s_case_cancel (void)
{
    dp_testpeer_t *client = s_client_new (9);
    for (uint64_t seq = 1; seq <= 4; seq++)
        submit (client, "fc", seq, 0, 0);
    uint64_t one = 2;
    dp_encode_cancel (&client->w, false, &one, 1);
    dp_testpeer_send (client, DP_CMD_CANCEL);
    dp_result_t r = s_expect_result (client);
    CHECK_EQ_INT (r.id, 2);
    CHECK_EQ_INT (r.code, DPOOL_ECANCELLED);
    const char *fns[] = {"fc"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
    /*  Task 1 runs; cancel everything else. */
    dp_encode_cancel (&client->w, true, NULL, 0);
    dp_testpeer_send (client, DP_CMD_CANCEL);
    dp_testpeer_expect (client, DP_CMD_RESULT);
    dp_result_t c;
    int cancelled = 0;
    while (dp_list_next_result (&client->msg.u.list, &c)) {
        CHECK (c.id == 3 || c.id == 4);
        CHECK_EQ_INT (c.code, DPOOL_ECANCELLED);
        cancelled++;
    }
    CHECK_EQ_INT (cancelled, 2);
    done (worker, ref, 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 1);
    /*  Nothing else is dispatched. */
    dp_testpeer_expect_silence (worker, 300);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  With workers connected but none offering the function, a task fails
    ENOFUNC after the grace period (200 ms here). */
static void
s_case_nofunc_grace (void)
{
    const char *fns[] = {"other"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    dp_testpeer_t *client = s_client_new (10);
    submit (client, "missing", 1, 0, 0);
    dp_result_t r = s_expect_result (client);
    CHECK_EQ_INT (r.code, DPOOL_ENOFUNC);
    char *message = s_result_message (r);
    CHECK (strstr (message, "missing"));
    free (message);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Garbage of every kind is counted by reason and answered; the broker
    keeps serving a well-behaved client throughout. */
static void
s_case_hostile_input (void)
{
    dp_testpeer_t *client = s_client_new (11);
    dp_testpeer_t *bad = dp_testpeer_new (s_broker.tcp);
    /*  One frame of garbage. */
    CHECK (zmq_send (bad->sock, "garbage", 7, 0) == 7);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  Four frames. */
    for (int i = 0; i < 3; i++)
        CHECK (zmq_send (bad->sock, "x", 1, ZMQ_SNDMORE) == 1);
    CHECK (zmq_send (bad->sock, "x", 1, 0) == 1);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  Wrong signature, wrong version, unknown command. */
    uint8_t headers[3][4] = {{'X', 'P', 1, 1}, {'D', 'P', 9, 1}, {'D', 'P', 1, 99}};
    for (int i = 0; i < 3; i++) {
        CHECK (zmq_send (bad->sock, headers[i], 4, ZMQ_SNDMORE) == 4);
        CHECK (zmq_send (bad->sock, "\x90", 1, 0) == 1);
        dp_testpeer_expect (bad, DP_CMD_ERROR);
        CHECK_EQ_INT (bad->msg.u.error.code, DPOOL_EPROTO);
    }
    /*  Valid framing, malformed msgpack. */
    uint8_t header[4];
    dp_header_encode (header, DP_CMD_SUBMIT);
    CHECK (zmq_send (bad->sock, header, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (bad->sock, "\x91\xc1", 2, 0) == 2);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  Valid msgpack claiming a batch beyond the limit. */
    CHECK (zmq_send (bad->sock, header, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (bad->sock, "\xdd\xff\xff\xff\xff", 5, 0) == 5);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  A well-formed command from a peer that never registered. */
    dp_encode_empty (&bad->w);
    dp_testpeer_send (bad, DP_CMD_STATUS);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    CHECK_EQ_INT (bad->msg.u.error.code, DPOOL_ESTATE);
    /*  A client sending a worker's command. */
    dp_list_begin (&client->w);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_DONE);
    dp_testpeer_expect (client, DP_CMD_ERROR);

    CHECK_EQ_INT (s_status_counter (client, "frames", true), 2);
    CHECK_EQ_INT (s_status_counter (client, "signature", true), 1);
    CHECK_EQ_INT (s_status_counter (client, "version", true), 1);
    CHECK_EQ_INT (s_status_counter (client, "command", true), 1);
    CHECK_EQ_INT (s_status_counter (client, "body", true), 1);
    CHECK_EQ_INT (s_status_counter (client, "limit", true), 1);
    CHECK_EQ_INT (s_status_counter (client, "unknown_peer", true), 1);
    CHECK_EQ_INT (s_status_counter (client, "role", true), 1);
    /*  Still serving. */
    const char *fns[] = {"fh"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    submit (client, "fh", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
    done (worker, ref, 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&bad);
    dp_testpeer_destroy (&client);
}

/*  SIGTERM: every peer hears BYE, the broker exits 0; a worker's BYE is
    answered with BYE and its job goes back to the queue. */
static void
s_case_bye_and_sigterm (void)
{
    const char *fns[] = {"fb"};
    dp_testpeer_t *client = s_client_new (12);
    submit (client, "fb", 1, 0, 0);
    dp_testpeer_t *w1 = s_worker_new (fns, 1, 1);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (w1, &ref, NULL, 1), 1);
    dp_encode_empty (&w1->w);
    dp_testpeer_send (w1, DP_CMD_BYE);
    dp_testpeer_expect (w1, DP_CMD_BYE);
    dp_testpeer_t *w2 = s_worker_new (fns, 1, 1);
    dp_task_t job;
    dp_testpeer_expect (w2, DP_CMD_DISPATCH);
    CHECK (dp_list_next_task (&w2->msg.u.list, DP_CMD_DISPATCH, &job));
    CHECK_EQ_INT (job.attempt, 1); /* a clean BYE is not a death */
    kill (s_broker.pid, SIGTERM);
    dp_testpeer_expect (client, DP_CMD_BYE);
    dp_testpeer_expect (w2, DP_CMD_BYE);
    int status = dp_test_wait_exit (s_broker.pid, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    dp_testpeer_destroy (&w1);
    dp_testpeer_destroy (&w2);
    dp_testpeer_destroy (&client);
}

/*  Below the protocol: bytes that are not ZMTP at all, and a frame over
    ZMQ_MAXMSGSIZE. ZeroMQ cuts both off; the broker counts them and goes
    on serving. */
static bool
s_garbage_cut_off (void *arg)
{
    /*  Not ZMTP: ZeroMQ accepts the connection, then drops it. */
    return s_status_counter ((dp_testpeer_t *)arg, "disconnected", false) >= 1;
}

static void
s_case_transport_garbage (void)
{
    dp_testpeer_t *client = s_client_new (13);
    int port = atoi (strrchr (s_broker.tcp, ':') + 1);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    CHECK (fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    CHECK (connect (fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    char junk[1024];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    CHECK (write (fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close (fd);
    CHECK (dp_test_wait_until (s_garbage_cut_off, client, 5000));

    /*  One frame over the limit (--max-msg-size 65536 here): the sender's
        connection is dropped. */
    uint64_t before = s_status_counter (client, "disconnected", false);
    dp_testpeer_t *big = dp_testpeer_new (s_broker.tcp);
    size_t size = 65536 + 1;
    char *payload = calloc (1, size);
    CHECK (payload);
    uint8_t header[4];
    dp_header_encode (header, DP_CMD_HEARTBEAT);
    CHECK (zmq_send (big->sock, header, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (big->sock, payload, size, 0) == (int)size);
    free (payload);
    int64_t deadline = dp_now_ms () + 10000;
    while (s_status_counter (client, "disconnected", false) == before)
        CHECK (dp_now_ms () < deadline);
    /*  Still serving. */
    const char *fns[] = {"fg"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    submit (client, "fg", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
    done (worker, ref, 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&big);
    dp_testpeer_destroy (&client);
}

/*  Random frames thrown at a live broker from several peers while a real
    client and worker run tasks: every task still ends exactly once, and the
    garbage shows in the counters. */
static void
s_case_random_frames (void)
{
    const char *fns[] = {"fr"};
    dp_testpeer_t *client = s_client_new (14);
    dp_testpeer_t *worker = s_worker_new (fns, 1, 4);
    dp_testpeer_t *noise[3];
    for (int i = 0; i < 3; i++)
        noise[i] = dp_testpeer_new (i == 0 ? s_broker.ipc : s_broker.tcp);
    uint64_t x = 88172645463325252ull;
    enum { TASKS = 300 };
    static bool seen[TASKS + 1];
    uint64_t next_seq = 1;
    int results = 0;
    int64_t deadline = dp_now_ms () + 20000;
    while (results < TASKS) {
        CHECK (dp_now_ms () < deadline);
        /*  A burst of noise: 1 to 4 frames of 0 to 63 random bytes, half of
            them behind a valid header. */
        for (int burst = 0; burst < 20; burst++) {
            dp_testpeer_t *from = noise[burst % 3];
            int frames = 1 + (int)(x % 4);
            for (int f = 0; f < frames; f++) {
                uint8_t bytes[64];
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                size_t len = (size_t)(x % sizeof bytes);
                for (size_t b = 0; b < len; b++)
                    bytes[b] = (uint8_t)(x >> (b % 56));
                if (f == 0 && (x & 1)) {
                    len = DP_HEADER_SIZE;
                    dp_header_encode (bytes, (dp_cmd_t)(1 + x % (DP_CMD_COUNT_ - 1)));
                }
                zmq_send (from->sock, bytes, len, f + 1 < frames ? ZMQ_SNDMORE : 0);
            }
        }
        if (next_seq <= TASKS) {
            submit (client, "fr", next_seq, 0, 0);
            next_seq++;
        }
        /*  Serve what was dispatched, collect what came back. */
        zmq_pollitem_t items[2] = {{worker->sock, 0, ZMQ_POLLIN, 0},
                                   {client->sock, 0, ZMQ_POLLIN, 0}};
        while (zmq_poll (items, 2, next_seq <= TASKS ? 0 : 100) > 0) {
            if (items[0].revents & ZMQ_POLLIN) {
                int cmd = dp_testpeer_recv (worker, 0);
                if (cmd == DP_CMD_DISPATCH) {
                    dp_task_t job;
                    while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job))
                        done (worker, job.id, 0, NULL);
                }
            }
            if (items[1].revents & ZMQ_POLLIN) {
                int cmd = dp_testpeer_recv (client, 0);
                if (cmd == DP_CMD_RESULT) {
                    dp_result_t r;
                    while (dp_list_next_result (&client->msg.u.list, &r)) {
                        CHECK (r.id >= 1 && r.id <= TASKS);
                        CHECK (!seen[r.id]);
                        CHECK_EQ_INT (r.code, 0);
                        seen[r.id] = true;
                        results++;
                    }
                }
            }
        }
    }
    CHECK (s_status_counter (client, "frames", true) > 0);
    CHECK (s_status_counter (client, "unknown_peer", true) +
               s_status_counter (client, "body", true) >
           0);
    for (int i = 0; i < 3; i++)
        dp_testpeer_destroy (&noise[i]);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  A timed-out attempt ends the task EDEADLINE, unless the caller asked for
    retries on timeout: then it runs again, within its retry budget. */
static void
s_case_retry_timeout (void)
{
    const char *fns[] = {"ft"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 1);
    dp_testpeer_t *client = s_client_new (15);
    submit (client, "ft", 1, 0, 3);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (worker, &ref, NULL, 1), 1);
    done (worker, ref, DPOOL_EDEADLINE, "task exceeded its timeout of 10 ms");
    dp_result_t r = s_expect_result (client);
    CHECK_EQ_INT (r.id, 1);
    CHECK_EQ_INT (r.code, DPOOL_EDEADLINE);

    s_submit_flags (client, "ft", 2, 0, 1, DP_TASK_RETRY_TIMEOUT);
    for (uint32_t attempt = 1; attempt <= 2; attempt++) {
        dp_testpeer_expect (worker, DP_CMD_DISPATCH);
        dp_task_t job;
        CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
        CHECK_EQ_INT (job.attempt, attempt);
        done (worker, job.id, DPOOL_EDEADLINE, "task exceeded its timeout of 10 ms");
    }
    r = s_expect_result (client);
    CHECK_EQ_INT (r.id, 2);
    CHECK_EQ_INT (r.code, DPOOL_EDEADLINE);
    dp_testpeer_expect_silence (worker, 200);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Heartbeats go out on a common beat (interval 400 ms here): two idle
    workers that registered 250 ms apart get theirs together, so a thousand
    idle workers' answers reach the broker in one burst. Each HEARTBEAT one
    of them gets once both are settled has a twin at the other within
    100 ms; heartbeats timed by each peer's own silence would be 200 ms
    apart. Idle workers get every DP_IDLE_FACTOR-th beat only; a worker
    holding a job gets every beat. All peers answer, as real ones do. */
#define BEAT_MS        400
#define BEAT_WATCH_MS  5000
#define BEAT_SETTLE_MS 700
#define BEAT_MAX       32

static bool
s_has_twin (int64_t at, const int64_t *others, int count)
{
    for (int i = 0; i < count; i++)
        if (llabs ((long long)(at - others[i])) < 100)
            return true;
    return false;
}

static void
s_case_heartbeats_on_a_common_beat (void)
{
    const char *fns[] = {"f"};
    const char *busy_fns[] = {"g"};
    dp_testpeer_t *peers[4];
    peers[0] = s_worker_new (fns, 1, 1);
    dp_testpeer_expect_silence (peers[0], 250);
    peers[1] = s_worker_new (fns, 1, 1);
    /*  The third holds a job it never finishes: busy. */
    peers[2] = s_worker_new (busy_fns, 1, 1);
    peers[3] = s_client_new (9);
    submit (peers[3], "g", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (peers[2], &ref, NULL, 1), 1);
    int64_t settled = dp_now_ms () + BEAT_SETTLE_MS;
    int64_t until = dp_now_ms () + BEAT_WATCH_MS;
    int64_t beats[3][BEAT_MAX];
    int count[3] = {0, 0, 0};
    int64_t now;
    while ((now = dp_now_ms ()) < until) {
        zmq_pollitem_t items[4];
        for (int i = 0; i < 4; i++)
            items[i] = (zmq_pollitem_t){peers[i]->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (items, 4, (long)(until - now)) <= 0)
            continue;
        for (int i = 0; i < 4; i++) {
            dp_wire_msg_t in;
            while (dp_wire_recv (peers[i]->sock, &in, ZMQ_DONTWAIT) == 0) {
                dp_msg_t msg;
                CHECK_EQ_INT (dp_wire_decode (&in, false, NULL, &msg), DP_OK);
                CHECK_EQ_INT (msg.cmd, DP_CMD_HEARTBEAT);
                dp_wire_close (&in);
                if (i < 3) {
                    CHECK (count[i] < BEAT_MAX);
                    beats[i][count[i]++] = dp_now_ms ();
                }
                dp_encode_empty (&peers[i]->w);
                dp_testpeer_send (peers[i], DP_CMD_HEARTBEAT);
            }
        }
    }
    int checked[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < count[i]; k++) {
            if (beats[i][k] < settled)
                continue;
            checked[i]++;
            if (i == 2)
                continue; /* the busy one: counted only */
            if (!s_has_twin (beats[i][k], beats[1 - i], count[1 - i]))
                dp_test_fail (__FILE__, __LINE__,
                              "worker %d's HEARTBEAT at +%lld ms has no twin at the other", i,
                              (long long)(beats[i][k] - settled));
        }
    /*  4.3 s watched after settling: idle, one beat per 1.2 s (3 or 4; at
        every beat it would be 10 or 11); busy, one per 400 ms. Counted, not
        timed one by one, so that this test's own delays cannot fail it. */
    for (int i = 0; i < 2; i++)
        if (checked[i] < 3 || checked[i] > 6)
            dp_test_fail (__FILE__, __LINE__, "idle worker %d got %d heartbeats in %d ms", i,
                          checked[i], BEAT_WATCH_MS - BEAT_SETTLE_MS);
    CHECK (checked[2] >= 2 * checked[0]);
    for (int i = 0; i < 4; i++)
        dp_testpeer_destroy (&peers[i]);
}

/*  The number of workers the broker lists in its status. */
static size_t
s_status_workers (dp_testpeer_t *client)
{
    msgpack_unpacked unpacked;
    msgpack_object workers =
        dp_testpeer_map_get (dp_testpeer_status (client, &unpacked), "workers");
    CHECK (workers.type == MSGPACK_OBJECT_ARRAY);
    size_t count = workers.via.array.size;
    msgpack_unpacked_destroy (&unpacked);
    return count;
}

/*  Polls the status until the broker lists want workers; returns when. */
static int64_t
s_wait_workers (dp_testpeer_t *client, size_t want)
{
    int64_t deadline = dp_now_ms () + 20000;
    while (s_status_workers (client) != want) {
        CHECK (dp_now_ms () < deadline);
        dp_testpeer_expect_silence (client, 20);
    }
    return dp_now_ms ();
}

/*  Expiry (heartbeat 200 ms, expiry 600 ms here): a silent worker that
    holds a job is given up after the expiry, and its job is queued again;
    a silent idle worker only after DP_IDLE_FACTOR times as long. The
    client stays alive by asking for status. */
#define EXPIRY_MS 600

static void
s_case_idle_workers_expire_later (void)
{
    const char *fns[] = {"f"};
    const char *busy_fns[] = {"g"};
    dp_testpeer_t *client = s_client_new (11);
    int64_t idle_spoke = dp_now_ms (); /* its READY went after this */
    dp_testpeer_t *idle = s_worker_new (fns, 1, 1);
    int64_t busy_spoke = dp_now_ms ();
    dp_testpeer_t *busy = s_worker_new (busy_fns, 1, 1);
    submit (client, "g", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (s_expect_jobs (busy, &ref, NULL, 1), 1);
    CHECK_EQ_INT (s_status_workers (client), 2);
    /*  Neither worker says anything any more. */
    int64_t busy_gone = s_wait_workers (client, 1);
    CHECK (busy_gone - busy_spoke >= EXPIRY_MS);
    CHECK_EQ_INT (s_status_counter (client, "queued", false), 1);
    int64_t idle_gone = s_wait_workers (client, 0);
    CHECK (idle_gone - idle_spoke >= DP_IDLE_FACTOR * EXPIRY_MS);
    CHECK (idle_gone > busy_gone);
    dp_testpeer_destroy (&idle);
    dp_testpeer_destroy (&busy);
    dp_testpeer_destroy (&client);
}

/*  A packed bin32 of size bytes of fill (size + 5 bytes in all), to free. */
static uint8_t *
s_bin_value (size_t size, uint8_t fill)
{
    uint8_t *value = malloc (size + 5);
    CHECK (value);
    value[0] = 0xc6;
    value[1] = (uint8_t)(size >> 24);
    value[2] = (uint8_t)(size >> 16);
    value[3] = (uint8_t)(size >> 8);
    value[4] = (uint8_t)size;
    memset (value + 5, fill, size);
    return value;
}

/*  The worker answers each DISPATCH with one DONE until count jobs are
    answered: the n-th job (from 0, in the order they came) with value when
    n % every == which, with s_args otherwise. */
static void
s_answer_jobs (dp_testpeer_t *worker, int count, const uint8_t *value, size_t size, int every,
               int which)
{
    int answered = 0;
    while (answered < count) {
        dp_testpeer_expect (worker, DP_CMD_DISPATCH);
        dp_task_t job;
        dp_list_begin (&worker->w);
        while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job)) {
            if (answered % every == which)
                dp_list_add_result_run (&worker->w, job.id, 0, value, size, 10);
            else
                dp_list_add_result_run (&worker->w, job.id, 0, s_args, sizeof s_args, 10);
            answered++;
        }
        dp_list_end (&worker->w);
        dp_testpeer_send (worker, DP_CMD_DONE);
    }
}

/*  However much credit a worker has, the broker queues about
    DP_PREFETCH_BYTES of arguments at it, and tops it up once it holds half
    of that: a fast function with large arguments does not fill a worker's
    memory with a whole credit of them. */
static void
s_case_large_args_prefetch_bounded (void)
{
    const char *fns[] = {"fast"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 100);
    dp_testpeer_t *client = s_client_new (17);
    uint64_t refs[100];
    /*  First, fast is timed. */
    submit (client, "fast", 1, 0, 0);
    CHECK_EQ_INT (s_expect_jobs (worker, refs, NULL, 100), 1);
    done (worker, refs[0], 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 1);
    /*  Twelve tasks of a million bytes each: four fit in the budget. */
    enum { SIZE = 1000000 };
    CHECK (4 * (SIZE + 5) <= DP_PREFETCH_BYTES && 5 * (SIZE + 5) > DP_PREFETCH_BYTES);
    uint8_t *args = s_bin_value (SIZE, 0x33);
    /*  In one SUBMIT, so that all are queued before the broker dispatches:
        sent one by one, the first could go out alone, and the top-ups after
        it stop at three, past half the budget. */
    dp_task_t tasks[12];
    for (uint64_t seq = 2; seq <= 13; seq++)
        tasks[seq - 2] =
            (dp_task_t){.id = seq, .fn = {(const uint8_t *)"fast", 4}, .args = {args, SIZE + 5}};
    s_submit_tasks (client, tasks, 12);
    free (args);
    size_t got = 0;
    while (got < 4)
        got += s_expect_jobs (worker, refs + got, NULL, 100 - got);
    CHECK_EQ_INT (got, 4);
    /*  One done leaves three megabytes held, over half: nothing more. */
    done (worker, refs[0], 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 2);
    dp_testpeer_expect_silence (worker, 300);
    /*  Two done leave two: topped up to four again. */
    done (worker, refs[1], 0, NULL);
    CHECK_EQ_INT (s_expect_result (client).id, 3);
    got = 0;
    while (got < 2)
        got += s_expect_jobs (worker, refs + got, NULL, 100 - got);
    CHECK_EQ_INT (got, 2);
    dp_testpeer_expect_silence (worker, 300);
    CHECK_EQ_INT (s_status_counter (client, "queued", false), 6);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Results pile up while a client is away (here: its connection is gone
    and it comes back with a new one): the broker holds them and sends them
    in messages under the size a client accepts, never one huge RESULT. */
static void
s_case_results_split_for_a_returning_client (void)
{
    /*  Values under the 32 KiB that travel alone (s_case_large_results_alone),
        so that RESULTs fill up to the limit. */
    enum { TASKS = 800, VALUE = 30 * 1024 };
    const char *fns[] = {"big"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, 64);
    dp_testpeer_t *client = s_client_new (17);
    for (uint64_t seq = 1; seq <= TASKS; seq++)
        submit (client, "big", seq, 0, 0);
    /*  A round trip: every SUBMIT is in before the socket (linger 0) goes. */
    s_status_counter (client, "queued", false);
    /*  The client goes away (its socket closed, the session stays), and the
        broker's ZeroMQ has seen the connection go, so that what it sends to
        the client from now on fails and is held. (A RESULT sent in the
        moment before that is lost in transit: a real client resubmits what
        it has no result for, as PROTOCOL.md says; this one does not.) */
    dp_testpeer_t *observer = s_client_new (18);
    uint64_t disconnected = s_status_counter (observer, "disconnected", false);
    dp_testpeer_destroy (&client);
    int64_t deadline = dp_now_ms () + 10000;
    while (s_status_counter (observer, "disconnected", false) == disconnected)
        CHECK (dp_now_ms () < deadline);
    /*  The worker answers everything with 30 KiB values: 23 MiB in all. */
    uint8_t *value = s_bin_value (VALUE, 'v');
    s_answer_jobs (worker, TASKS, value, VALUE + 5, 1, 0);
    free (value);
    /*  The client comes back with the same session, before it expires. */
    dp_testpeer_t *again = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, 17, sizeof session);
    dp_encode_hello (&again->w, session, "test-client");
    dp_testpeer_send (again, DP_CMD_HELLO);
    static bool seen[TASKS + 1];
    int results = 0, messages = 0;
    for (;;) {
        int cmd = dp_testpeer_recv (again, RECV_MS);
        CHECK (cmd == DP_CMD_RESULT || cmd == DP_CMD_WELCOME);
        if (cmd == DP_CMD_WELCOME)
            break; /* held results come before WELCOME */
        messages++;
        CHECK (zmq_msg_size (&again->in.frames[1]) <= 9 * 1024 * 1024);
        dp_result_t r;
        while (dp_list_next_result (&again->msg.u.list, &r)) {
            CHECK (r.id >= 1 && r.id <= TASKS && !seen[r.id]);
            CHECK_EQ_INT (r.value.size, VALUE + 5);
            seen[r.id] = true;
            results++;
        }
    }
    CHECK (messages >= 3);
    /*  As a real client does: resubmit what has no result (lost in transit
        in the moment the connection went), and get those too. */
    int missing = 0;
    for (uint64_t seq = 1; seq <= TASKS; seq++)
        if (!seen[seq]) {
            submit (again, "big", seq, 0, 0);
            missing++;
        }
    CHECK (missing <= TASKS / 4);
    while (results < TASKS) {
        int cmd = dp_testpeer_recv (worker, 50);
        if (cmd == DP_CMD_DISPATCH) {
            dp_task_t job;
            while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job))
                done (worker, job.id, 0, NULL);
        }
        if (dp_testpeer_recv (again, 50) == DP_CMD_RESULT) {
            dp_result_t r;
            while (dp_list_next_result (&again->msg.u.list, &r)) {
                CHECK (r.id >= 1 && r.id <= TASKS && !seen[r.id]);
                seen[r.id] = true;
                results++;
            }
        }
        CHECK (dp_now_ms () < deadline + 20000);
    }
    dp_testpeer_destroy (&observer);
    dp_testpeer_destroy (&again);
    dp_testpeer_destroy (&worker);
}

/*  A value of 32 KiB or more goes to the client in a RESULT of its own;
    the smaller ones of the same DONE still share RESULTs. Every third task
    here has a 40 KiB value. */
static void
s_case_large_results_alone (void)
{
    enum { TASKS = 12, LARGE = 40 * 1024 };
    const char *fns[] = {"f"};
    dp_testpeer_t *worker = s_worker_new (fns, 1, TASKS);
    dp_testpeer_t *client = s_client_new (19);
    for (uint64_t seq = 1; seq <= TASKS; seq++)
        submit (client, "f", seq, 0, 0);
    uint8_t *large = s_bin_value (LARGE, 'L');
    /*  Jobs come in the order they were submitted (equal priorities): the
        n-th is seq n + 1. Once the first DONE has shown the function fast,
        the rest come in one DISPATCH, answered by one DONE. */
    s_answer_jobs (worker, TASKS, large, LARGE + 5, 3, 1);
    free (large);
    bool seen[TASKS + 1] = {false};
    int results = 0, alone = 0, shared = 0;
    while (results < TASKS) {
        dp_testpeer_expect (client, DP_CMD_RESULT);
        dp_list_t list = client->msg.u.list;
        uint32_t entries = list.left;
        dp_result_t r;
        while (dp_list_next_result (&list, &r)) {
            CHECK (r.id >= 1 && r.id <= TASKS && !seen[r.id]);
            seen[r.id] = true;
            results++;
            if ((r.id - 1) % 3 == 1) {
                CHECK_EQ_INT (r.value.size, LARGE + 5);
                CHECK_EQ_INT (entries, 1);
                alone++;
            } else
                CHECK_EQ_INT (r.value.size, sizeof s_args);
        }
        if (entries > 1)
            shared++;
    }
    CHECK_EQ_INT (alone, TASKS / 3);
    CHECK (shared >= 1);
    dp_testpeer_destroy (&client);
    dp_testpeer_destroy (&worker);
}

/*  The broker's options for a case, where it needs some. */
static const char *const s_args_queue_limit[] = {"--max-queue", "2", NULL};
static const char *const s_args_nofunc_grace[] = {"--nofunc-grace", "200", NULL};
static const char *const s_args_transport_garbage[] = {"--max-msg-size", "65536", NULL};
static const char *const s_args_heartbeats_on_a_common_beat[] = {"--heartbeat-ms", "400",
                                                                 "--expiry-ms", "5000", NULL};
static const char *const s_args_idle_workers_expire_later[] = {"--heartbeat-ms", "200",
                                                               "--expiry-ms", "600", NULL};

static const dp_test_case_t s_cases[] = {
    {"broker_dispatch_by_function_and_credit", s_case_dispatch_by_function_and_credit},
    {"broker_slow_tasks_not_prefetched", s_case_slow_tasks_not_prefetched},
    {"broker_large_args_prefetch_bounded", s_case_large_args_prefetch_bounded},
    {"broker_priority_then_fifo", s_case_priority_then_fifo},
    {"broker_results_routed_by_session", s_case_results_routed_by_session},
    {"broker_dead_worker_retry_and_late_done", s_case_dead_worker_retry_and_late_done,
     .valgrind = "broker_dead_worker_retry_and_late_done_valgrind"},
    {"broker_orphans_go_alone", s_case_orphans_go_alone},
    {"broker_unknown_ref_counted", s_case_unknown_ref_counted},
    {"broker_session_stolen", s_case_session_stolen},
    {"broker_queue_limit", s_case_queue_limit, .data = s_args_queue_limit},
    {"broker_cancel", s_case_cancel},
    {"broker_nofunc_grace", s_case_nofunc_grace, .data = s_args_nofunc_grace},
    {"broker_hostile_input", s_case_hostile_input, .valgrind = "broker_hostile_input_valgrind"},
    {"broker_bye_and_sigterm", s_case_bye_and_sigterm},
    {"broker_transport_garbage", s_case_transport_garbage, .data = s_args_transport_garbage,
     .valgrind = "broker_transport_garbage_valgrind"},
    {"broker_random_frames", s_case_random_frames, .valgrind = "broker_random_frames_valgrind"},
    {"broker_retry_timeout", s_case_retry_timeout},
    {"broker_heartbeats_on_a_common_beat", s_case_heartbeats_on_a_common_beat,
     .data = s_args_heartbeats_on_a_common_beat},
    {"broker_results_split_for_a_returning_client", s_case_results_split_for_a_returning_client,
     .valgrind = "broker_results_split_for_a_returning_client_valgrind"},
    {"broker_large_results_alone", s_case_large_results_alone,
     .valgrind = "broker_large_results_alone_valgrind"},
    {"broker_idle_workers_expire_later", s_case_idle_workers_expire_later,
     .data = s_args_idle_workers_expire_later},
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
    /*  Every case ends with a clean stop: SIGTERM, exit status 0. Under
        DPOOL_TEST_BROKER_WRAP=valgrind (--error-exitcode) this is also
        where a leak or a bad access fails the test. */
    if (kill (s_broker.pid, 0) == 0) {
        int status = dp_test_stop (s_broker.pid, SIGTERM, 30000);
        if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
            dp_test_fail (__FILE__, __LINE__, "broker did not stop cleanly (status %d)", status);
    }
    return 0;
}

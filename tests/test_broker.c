/*  test_broker.c - the broker program's rules, driven by hand-made peers
    (dp_testbroker.h): dispatch by function, credit and prefetch (across a
    slow link too), priority
    then FIFO, routing of results, dead workers and retries, unknown refs,
    stolen sessions, queue limit, cancel, the no-function grace period,
    timeouts, and large values. test_broker --list names the cases;
    test_broker CASE runs one.
*/
#include "dp_proto.h"
#include "dp_testbroker.h"
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

/*  Tasks go only to workers offering their function, never beyond credit. */
static void
s_case_dispatch_by_function_and_credit (void)
{
    const char *fa[] = {"fa"};
    const char *fb[] = {"fb"};
    dp_testpeer_t *wa = dp_testbroker_worker (fa, 1, 2);
    dp_testpeer_t *wb = dp_testbroker_worker (fb, 1, 1);
    dp_testpeer_t *client = dp_testbroker_client (1);
    uint64_t refs[8];
    char fns[8][32];
    /*  While fa's pace is unknown, its tasks go one at a time. */
    dp_testbroker_submit (client, "fa", 1, 0, 0);
    dp_testbroker_submit (client, "fa", 2, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (wa, refs, fns, 8), 1);
    CHECK_EQ_STR (fns[0], "fa");
    dp_testpeer_expect_silence (wa, 300);
    dp_testbroker_done (wa, refs[0], 0, NULL); /* fa is fast: 10 us */
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (wa, refs, fns, 8), 1);
    dp_testbroker_done (wa, refs[0], 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 2);

    /*  Now fast: wa gets its whole credit of 2, never more. */
    for (uint64_t seq = 3; seq <= 6; seq++)
        dp_testbroker_submit (client, "fa", seq, 0, 0);
    dp_testbroker_submit (client, "fb", 7, 0, 0);
    size_t got = 0;
    while (got < 2)
        got += dp_testbroker_expect_jobs (wa, refs + got, fns + got, 8 - got);
    CHECK_EQ_INT (got, 2);
    for (size_t i = 0; i < got; i++)
        CHECK_EQ_STR (fns[i], "fa");
    dp_testpeer_expect_silence (wa, 300);
    uint64_t bref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (wb, &bref, fns, 1), 1);
    CHECK_EQ_STR (fns[0], "fb");
    dp_testbroker_done (wa, refs[0], 0, NULL);
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK (r.code == 0);
    CHECK (r.id == 3);
    /*  One credit back: exactly one more job. */
    CHECK_EQ_INT (dp_testbroker_expect_jobs (wa, refs, fns, 8), 1);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 8);
    dp_testpeer_t *client = dp_testbroker_client (16);
    for (uint64_t seq = 1; seq <= 4; seq++)
        dp_testbroker_submit (client, "slow", seq, 0, 0);
    uint64_t ref;
    for (uint64_t seq = 1; seq <= 4; seq++) {
        CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
        dp_testpeer_expect_silence (worker, 200);
        dp_testbroker_done_run (worker, ref, 0, NULL,
                                2 * DP_PREFETCH_US); /* slower than the budget */
        CHECK_EQ_INT (dp_testbroker_expect_result (client).id, seq);
    }
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Across a slow link the broker queues more at a worker: the budget grows
    by twice the worker's round trip, timed from the DONE of a job sent
    while it held nothing (here the worker answers LINK_MS late, as across
    a link of that round trip). 1 ms tasks then go all at once, where
    DP_PREFETCH_US alone lets five go. */
static void
s_case_prefetch_covers_a_slow_link (void)
{
    enum { LINK_MS = 50, TASK_US = 1000, COUNT = 60 };
    CHECK (COUNT * TASK_US <= DP_PREFETCH_US + 2 * (LINK_MS - 1) * 1000);
    CHECK (COUNT * TASK_US > DP_PREFETCH_US);
    const char *fns[] = {"ms"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 100);
    dp_testpeer_t *client = dp_testbroker_client (18);
    uint64_t refs[100];
    dp_testbroker_submit (client, "ms", 1, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, refs, NULL, 100), 1);
    dp_testpeer_expect_silence (worker, LINK_MS); /* the link's round trip */
    dp_testbroker_done_run (worker, refs[0], 0, NULL, TASK_US);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
    /*  In one SUBMIT, so that all are queued before the broker dispatches. */
    dp_task_t tasks[COUNT];
    for (uint64_t i = 0; i < COUNT; i++)
        tasks[i] = (dp_task_t){.id = i + 2,
                               .fn = {(const uint8_t *)"ms", 2},
                               .args = {dp_testbroker_args, sizeof dp_testbroker_args}};
    dp_testbroker_submit_tasks (client, tasks, COUNT);
    /*  The client was idle, so its first task is urgent and goes alone
        (PROTOCOL.md 5.2); the rest must follow at once, before any DONE. */
    size_t got = dp_testbroker_expect_jobs (worker, refs, NULL, 100);
    if (got == 1)
        got += dp_testbroker_expect_jobs (worker, refs + 1, NULL, 99);
    CHECK_EQ_INT (got, COUNT);
    for (size_t i = 0; i < COUNT; i++)
        dp_testbroker_done_run (worker, refs[i], 0, NULL, TASK_US);
    uint64_t next = 2;
    while (next < COUNT + 2) {
        dp_testpeer_expect (client, DP_CMD_RESULT);
        dp_result_t result;
        while (dp_list_next_result (&client->msg.u.list, &result))
            CHECK_EQ_INT (result.id, next++);
    }
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  A worker that says READY is first in turn: the next task goes to it,
    not to a worker that was there before (with many busy workers, those
    ahead of it in turn would take what is queued before its turn came). */
static void
s_case_newcomer_first_in_turn (void)
{
    const char *fns[] = {"fn"};
    dp_testpeer_t *old = dp_testbroker_worker (fns, 1, 10);
    dp_testpeer_t *client = dp_testbroker_client (19);
    uint64_t ref;
    dp_testbroker_submit (client, "fn", 1, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (old, &ref, NULL, 1), 1);
    dp_testbroker_done (old, ref, 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
    dp_testpeer_t *newcomer = dp_testbroker_worker (fns, 1, 10);
    dp_testbroker_submit (client, "fn", 2, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (newcomer, &ref, NULL, 1), 1);
    dp_testpeer_expect_silence (old, 200);
    dp_testbroker_done (newcomer, ref, 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 2);
    dp_testpeer_destroy (&newcomer);
    dp_testpeer_destroy (&old);
    dp_testpeer_destroy (&client);
}

/*  Higher priority first; equal priorities in arrival order. */
static void
s_case_priority_then_fifo (void)
{
    dp_testpeer_t *client = dp_testbroker_client (2);
    /*  Queued before any worker exists. */
    int32_t prio[] = {0, 5, 0, 5, -1, 9};
    for (uint64_t i = 0; i < 6; i++)
        dp_testbroker_submit (client, "fp", i + 1, prio[i], 0);
    /*  A round trip proves the broker has them all queued. */
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 6);
    const char *fns[] = {"fp"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    uint64_t expected[] = {6, 2, 4, 1, 3, 5};
    for (int i = 0; i < 6; i++) {
        uint64_t ref;
        CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
        dp_testbroker_done (worker, ref, 0, NULL);
        dp_result_t r = dp_testbroker_expect_result (client);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 4);
    dp_testpeer_t *c1 = dp_testbroker_client (3);
    dp_testpeer_t *c2 = dp_testbroker_client (4);
    dp_testbroker_submit (c1, "f", 1, 0, 0);
    dp_testbroker_submit (c2, "f", 1, 0, 0);
    /*  Both jobs come in one DISPATCH or two (with two clients sharing,
        the worker is given the next job with the one it runs). */
    uint64_t refs[4];
    size_t jobs = dp_testbroker_expect_jobs (worker, refs, NULL, 4);
    if (jobs == 1)
        jobs += dp_testbroker_expect_jobs (worker, refs + 1, NULL, 3);
    CHECK_EQ_INT (jobs, 2);
    dp_testbroker_done (worker, refs[0], DPOOL_EFAILED, "first");
    dp_testbroker_done (worker, refs[1], DPOOL_EFAILED, "second");
    dp_result_t r1 = dp_testbroker_expect_result (c1);
    dp_result_t r2 = dp_testbroker_expect_result (c2);
    char *m1 = dp_testbroker_result_message (r1);
    char *m2 = dp_testbroker_result_message (r2);
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
    dp_testpeer_t *client = dp_testbroker_client (5);
    dp_testbroker_submit (client, "fd", 1, 0, 1); /* one retry allowed */
    dp_testpeer_t *w1 = dp_testbroker_worker (fns, 1, 1);
    uint64_t ref1;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (w1, &ref1, NULL, 1), 1);
    /*  w1 goes silent; a second worker gets the task after expiry. */
    dp_testpeer_t *w2 = dp_testbroker_worker (fns, 1, 1);
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
    dp_testbroker_done (w1, ref1, 0, NULL);
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
    char *message = dp_testbroker_result_message (r);
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
    dp_testpeer_t *client = dp_testbroker_client (18);
    dp_testpeer_t *w1 = dp_testbroker_worker (fns, 1, 10);
    uint64_t refs[10];
    /*  fo is timed as fast, then w1 takes six at once. */
    dp_testbroker_submit (client, "fo", 1, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (w1, refs, NULL, 10), 1);
    dp_testbroker_done (w1, refs[0], 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
    for (uint64_t seq = 2; seq <= 7; seq++)
        dp_testbroker_submit (client, "fo", seq, 0, 0);
    size_t got = 0;
    while (got < 6)
        got += dp_testbroker_expect_jobs (w1, refs + got, NULL, 10 - got);
    /*  w1 goes silent; w2 heartbeats until the broker gives up on w1. */
    dp_testpeer_t *w2 = dp_testbroker_worker (fns, 1, 10);
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
        dp_testbroker_done (w2, job.id, 0, NULL);
        dp_result_t r = dp_testbroker_expect_result (client);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testpeer_t *client = dp_testbroker_client (6);
    dp_testbroker_submit (client, "fu", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
    dp_testbroker_done (worker, ref + 1000, 0, NULL);
    /*  The DONE and the STATUS come on two connections: either may be
        read first. */
    int64_t deadline = dp_now_ms () + 10000;
    while (dp_testbroker_status_counter (client, "unknown_ref", true) < 1 &&
           dp_now_ms () < deadline)
        dp_test_sleep_ms (10);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "unknown_ref", true), 1);
    dp_testbroker_done (worker, ref, 0, NULL);
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  A second live peer claiming a session is refused and counted. */
static void
s_case_session_stolen (void)
{
    dp_testpeer_t *owner = dp_testbroker_client (7);
    dp_testpeer_t *thief = dp_testpeer_new (dp_testbroker_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, 7, sizeof session);
    dp_encode_hello (&thief->w, session, "thief");
    dp_testpeer_send (thief, DP_CMD_HELLO);
    dp_testpeer_expect (thief, DP_CMD_ERROR);
    CHECK_EQ_INT (thief->msg.u.error.code, DPOOL_ESTATE);
    CHECK_EQ_INT (dp_testbroker_status_counter (owner, "session_stolen", true), 1);
    /*  The owner still works. */
    const char *fns[] = {"fs"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testbroker_submit (owner, "fs", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
    dp_testbroker_done (worker, ref, 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (owner).id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&thief);
    dp_testpeer_destroy (&owner);
}

/*  Beyond --max-queue, tasks are rejected with EREJECTED. */
static void
s_case_queue_limit (void)
{
    dp_testpeer_t *client = dp_testbroker_client (8);
    for (uint64_t seq = 1; seq <= 3; seq++)
        dp_testbroker_submit (client, "fq", seq, 0, 0);
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.id, 3);
    CHECK_EQ_INT (r.code, DPOOL_EREJECTED);
    char *message = dp_testbroker_result_message (r);
    CHECK (strstr (message, "queue full"));
    free (message);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 2);
    dp_testpeer_destroy (&client);
}

/*  Cancel one queued task, then all; cancelled tasks never run. */
static void
s_case_cancel (void)
{
    dp_testpeer_t *client = dp_testbroker_client (9);
    for (uint64_t seq = 1; seq <= 4; seq++)
        dp_testbroker_submit (client, "fc", seq, 0, 0);
    uint64_t one = 2;
    dp_encode_cancel (&client->w, false, &one, 1);
    dp_testpeer_send (client, DP_CMD_CANCEL);
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.id, 2);
    CHECK_EQ_INT (r.code, DPOOL_ECANCELLED);
    const char *fns[] = {"fc"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
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
    dp_testbroker_done (worker, ref, 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testpeer_t *client = dp_testbroker_client (10);
    dp_testbroker_submit (client, "missing", 1, 0, 0);
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.code, DPOOL_ENOFUNC);
    char *message = dp_testbroker_result_message (r);
    CHECK (strstr (message, "missing"));
    free (message);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Once a function's tasks have failed for want of a worker, its next ones
    fail as they come, with no grace of their own, until a worker offers it.
    The grace is 4 s here; the old broker forgot the function once its
    queue was empty and gave every later batch a grace again, so a batch
    sent after the first failure took 4 s more: half of it is the bound. */
#define NOFUNC_BATCH 100
static void
s_case_nofunc_fails_at_once (void)
{
    const char *fns[] = {"other"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testpeer_keepalive (worker); /* the grace is longer than the expiry */
    dp_testpeer_t *client = dp_testbroker_client (21);
    dp_testpeer_keepalive (client);
    dp_testbroker_submit (client, "missing", 1, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).code, DPOOL_ENOFUNC);
    /*  Ticks pass in which the old broker freed the empty queue. */
    dp_testpeer_expect_silence (client, 500);
    dp_task_t tasks[NOFUNC_BATCH];
    for (int i = 0; i < NOFUNC_BATCH; i++)
        tasks[i] = (dp_task_t){.id = 2 + (uint64_t)i,
                               .fn = {(const uint8_t *)"missing", 7},
                               .args = {dp_testbroker_args, sizeof dp_testbroker_args}};
    dp_testbroker_submit_tasks (client, tasks, NOFUNC_BATCH);
    int64_t deadline = dp_now_ms () + 2000;
    int failed = 0;
    while (failed < NOFUNC_BATCH) {
        int64_t left = deadline - dp_now_ms ();
        CHECK (left > 0 && dp_testpeer_recv (client, (int)left) == DP_CMD_RESULT);
        dp_result_t r;
        while (dp_list_next_result (&client->msg.u.list, &r)) {
            CHECK_EQ_INT (r.code, DPOOL_ENOFUNC);
            failed++;
        }
    }
    /*  A worker that offers it brings the wait back: the task runs. */
    const char *offers[] = {"missing"};
    dp_testpeer_t *late = dp_testbroker_worker (offers, 1, 1);
    dp_testbroker_submit (client, "missing", 200, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (late, &ref, NULL, 1), 1);
    dp_testbroker_done (late, ref, 0, NULL);
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.id, 200);
    CHECK_EQ_INT (r.code, 0);
    dp_testpeer_destroy (&late);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  A timed-out attempt ends the task EDEADLINE, unless the caller asked for
    retries on timeout: then it runs again, within its retry budget. */
static void
s_case_retry_timeout (void)
{
    const char *fns[] = {"ft"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testpeer_t *client = dp_testbroker_client (15);
    dp_testbroker_submit (client, "ft", 1, 0, 3);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
    dp_testbroker_done (worker, ref, DPOOL_EDEADLINE, "task exceeded its timeout of 10 ms");
    dp_result_t r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.id, 1);
    CHECK_EQ_INT (r.code, DPOOL_EDEADLINE);

    dp_testbroker_submit_flags (client, "ft", 2, 0, 1, DP_TASK_RETRY_TIMEOUT);
    for (uint32_t attempt = 1; attempt <= 2; attempt++) {
        dp_testpeer_expect (worker, DP_CMD_DISPATCH);
        dp_task_t job;
        CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
        CHECK_EQ_INT (job.attempt, attempt);
        dp_testbroker_done (worker, job.id, DPOOL_EDEADLINE, "task exceeded its timeout of 10 ms");
    }
    r = dp_testbroker_expect_result (client);
    CHECK_EQ_INT (r.id, 2);
    CHECK_EQ_INT (r.code, DPOOL_EDEADLINE);
    dp_testpeer_expect_silence (worker, 200);
    dp_testpeer_destroy (&worker);
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
    n % every == which, with dp_testbroker_args otherwise. */
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
                dp_list_add_result_run (&worker->w, job.id, 0, dp_testbroker_args,
                                        sizeof dp_testbroker_args, 10);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 100);
    dp_testpeer_t *client = dp_testbroker_client (17);
    uint64_t refs[100];
    /*  First, fast is timed. */
    dp_testbroker_submit (client, "fast", 1, 0, 0);
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, refs, NULL, 100), 1);
    dp_testbroker_done (worker, refs[0], 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
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
    dp_testbroker_submit_tasks (client, tasks, 12);
    free (args);
    size_t got = 0;
    while (got < 4)
        got += dp_testbroker_expect_jobs (worker, refs + got, NULL, 100 - got);
    CHECK_EQ_INT (got, 4);
    /*  One done leaves three megabytes held, over half: nothing more. */
    dp_testbroker_done (worker, refs[0], 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 2);
    dp_testpeer_expect_silence (worker, 300);
    /*  Two done leave two: topped up to four again. */
    dp_testbroker_done (worker, refs[1], 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 3);
    got = 0;
    while (got < 2)
        got += dp_testbroker_expect_jobs (worker, refs + got, NULL, 100 - got);
    CHECK_EQ_INT (got, 2);
    dp_testpeer_expect_silence (worker, 300);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 6);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 64);
    dp_testpeer_t *client = dp_testbroker_client (17);
    for (uint64_t seq = 1; seq <= TASKS; seq++)
        dp_testbroker_submit (client, "big", seq, 0, 0);
    /*  A round trip: every SUBMIT is in before the socket (linger 0) goes. */
    dp_testbroker_status_counter (client, "queued", false);
    /*  The client goes away (its socket closed, the session stays), and the
        broker's ZeroMQ has seen the connection go, so that what it sends to
        the client from now on fails and is held. (A RESULT sent in the
        moment before that is lost in transit: a real client resubmits what
        it has no result for, as PROTOCOL.md says; this one does not.) */
    dp_testpeer_t *observer = dp_testbroker_client (18);
    uint64_t disconnected = dp_testbroker_status_counter (observer, "disconnected", false);
    dp_testpeer_destroy (&client);
    int64_t deadline = dp_now_ms () + 10000;
    while (dp_testbroker_status_counter (observer, "disconnected", false) == disconnected)
        CHECK (dp_now_ms () < deadline);
    /*  The worker answers everything with 30 KiB values: 23 MiB in all. */
    uint8_t *value = s_bin_value (VALUE, 'v');
    s_answer_jobs (worker, TASKS, value, VALUE + 5, 1, 0);
    free (value);
    /*  The client comes back with the same session, before it expires. */
    dp_testpeer_t *again = dp_testpeer_new (dp_testbroker_broker.tcp);
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
            dp_testbroker_submit (again, "big", seq, 0, 0);
            missing++;
        }
    CHECK (missing <= TASKS / 4);
    while (results < TASKS) {
        int cmd = dp_testpeer_recv (worker, 50);
        if (cmd == DP_CMD_DISPATCH) {
            dp_task_t job;
            while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job))
                dp_testbroker_done (worker, job.id, 0, NULL);
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
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, TASKS);
    dp_testpeer_t *client = dp_testbroker_client (19);
    for (uint64_t seq = 1; seq <= TASKS; seq++)
        dp_testbroker_submit (client, "f", seq, 0, 0);
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
                CHECK_EQ_INT (r.value.size, sizeof dp_testbroker_args);
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
static const char *const s_args_nofunc_at_once[] = {"--nofunc-grace", "4000", NULL};

/*  Sends peer->w as cmd with one payload frame (PROTOCOL.md 3). */
static void
s_send_framed (dp_testpeer_t *peer, dp_cmd_t cmd, const void *frame, size_t size)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, cmd);
    CHECK (dp_writer_ok (&peer->w));
    CHECK (zmq_send (peer->sock, header, sizeof header, ZMQ_SNDMORE) == DP_HEADER_SIZE);
    CHECK (zmq_send (peer->sock, dp_writer_data (&peer->w), dp_writer_size (&peer->w),
                     ZMQ_SNDMORE) >= 0);
    CHECK (zmq_send (peer->sock, frame, size, 0) == (int)size);
}

/*  Payload frames through the broker: a task whose args came in a frame
    reaches the worker in one, byte for byte, beside an inline task; a value
    a worker sends in a frame reaches the client in one. A frame that is not
    one msgpack item is refused (counted) and changes nothing. */
static void
s_case_payload_frames_forwarded (void)
{
    enum { ARGS = 64 * 1024, VALUE = 48 * 1024 };
    const char *fns[] = {"echo"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 8);
    dp_testpeer_t *client = dp_testbroker_client (23);
    uint8_t *args = s_bin_value (ARGS, 'a');
    static const uint8_t small[] = {0x91, 0x07};
    dp_task_t task = {.id = 1, .fn = {(const uint8_t *)"echo", 4}, .args = {small, 2}};
    dp_list_begin (&client->w);
    dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
    task.id = 2;
    dp_list_add_task_framed (&client->w, DP_CMD_SUBMIT, &task);
    dp_list_end (&client->w);
    s_send_framed (client, DP_CMD_SUBMIT, args, ARGS + 5);
    /*  The function's pace is unknown: one job per DISPATCH. */
    uint8_t *value = s_bin_value (VALUE, 'v');
    for (int job = 0; job < 2; job++) {
        CHECK_EQ_INT (dp_testpeer_recv (worker, RECV_MS), DP_CMD_DISPATCH);
        dp_task_t t;
        CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &t));
        bool framed = t.frame != 0;
        CHECK_EQ_INT (worker->in.count, framed ? 3 : 2);
        if (framed) {
            CHECK_EQ_INT (t.args.size, ARGS + 5);
            CHECK (memcmp (t.args.data, args, ARGS + 5) == 0);
            dp_list_begin (&worker->w);
            dp_list_add_result_framed (&worker->w, t.id, 10);
            dp_list_end (&worker->w);
            s_send_framed (worker, DP_CMD_DONE, value, VALUE + 5);
        } else {
            CHECK (t.args.size == 2 && memcmp (t.args.data, small, 2) == 0);
            dp_testbroker_done_run (worker, t.id, 0, NULL, 10);
        }
    }
    bool seen[3] = {false};
    for (int result = 0; result < 2;) {
        CHECK_EQ_INT (dp_testpeer_recv (client, RECV_MS), DP_CMD_RESULT);
        dp_result_t r;
        while (dp_list_next_result (&client->msg.u.list, &r)) {
            CHECK (r.id >= 1 && r.id <= 2 && !seen[r.id]);
            seen[r.id] = true;
            result++;
            CHECK_EQ_INT (r.code, 0);
            if (r.id == 2) {
                CHECK (r.frame != 0);
                CHECK_EQ_INT (r.value.size, VALUE + 5);
                CHECK (memcmp (r.value.data, value, VALUE + 5) == 0);
            } else
                CHECK_EQ_INT (r.frame, 0);
        }
    }
    /*  A frame that lies: refused whole, the task never queued. */
    task.id = 3;
    dp_list_begin (&client->w);
    dp_list_add_task_framed (&client->w, DP_CMD_SUBMIT, &task);
    dp_list_end (&client->w);
    s_send_framed (client, DP_CMD_SUBMIT, "\xc1", 1);
    dp_testpeer_expect (client, DP_CMD_ERROR);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "body", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 0);
    free (value);
    free (args);
    dp_testpeer_destroy (&client);
    dp_testpeer_destroy (&worker);
}

static const dp_test_case_t s_cases[] = {
    {"broker_dispatch_by_function_and_credit", s_case_dispatch_by_function_and_credit},
    {"broker_slow_tasks_not_prefetched", s_case_slow_tasks_not_prefetched},
    {"broker_large_args_prefetch_bounded", s_case_large_args_prefetch_bounded},
    {"broker_prefetch_covers_a_slow_link", s_case_prefetch_covers_a_slow_link},
    {"broker_newcomer_first_in_turn", s_case_newcomer_first_in_turn},
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
    {"broker_nofunc_fails_at_once", s_case_nofunc_fails_at_once, .data = s_args_nofunc_at_once},
    {"broker_retry_timeout", s_case_retry_timeout},
    {"broker_results_split_for_a_returning_client", s_case_results_split_for_a_returning_client,
     .valgrind = "broker_results_split_for_a_returning_client_valgrind"},
    {"broker_large_results_alone", s_case_large_results_alone,
     .valgrind = "broker_large_results_alone_valgrind"},
    {"broker_payload_frames_forwarded", s_case_payload_frames_forwarded,
     .valgrind = "broker_payload_frames_forwarded_valgrind"},
};

int
main (int argc, char *argv[])
{
    return dp_testbroker_main (argc, argv, DP_TEST_CASES (s_cases));
}

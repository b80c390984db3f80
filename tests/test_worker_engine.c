/*  test_worker_engine.c - the worker engine's life with a broker, as real
    dpool-worker processes live it, against a fake broker (dp_testfake.h):
    registration and its retries, heartbeats (asked, unasked, idle, during
    a job), and registering again when the broker goes silent, forgets the
    worker or says BYE. Jobs and results are in test_worker_jobs.c, the
    supervisor and the program in test_worker_supervisor.c. Each case is one
    ctest test: test_worker_engine CASE.
*/
#include "dp_testfake.h"
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/*  True once the log file at arg shows two READYs sent. */
static bool
s_tried_twice (void *arg)
{
    char *text = dp_test_read_file ((const char *)arg);
    const char *first = text ? strstr (text, "READY to") : NULL;
    bool twice = first && strstr (first + 1, "READY to");
    free (text);
    return twice;
}

/*  READY carries what the worker is; with no broker it is sent again, on a
    fresh socket, until one answers. */
static void
s_case_registers (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    const char *extra[] = {"--credit", "3", "--name", "w-test", "--log-level", "debug", NULL};
    pid_t supervisor = dp_test_workers_logged (endpoint, 1, extra);
    /*  Let the worker try a few times with no broker there. */
    CHECK (dp_test_wait_until (s_tried_twice, (void *)dp_test_path ("workers1.err"),
                               DP_TESTFAKE_WAIT_MS));
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint);
    dp_testfake_msg_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    dp_ready_t *ready = &got.m.u.ready;
    CHECK (dp_span_eq (ready->name, "w-test"));
    CHECK (dp_span_eq (ready->host, dp_hostname ()));
    CHECK_EQ_INT (ready->credit, 3);
    CHECK (ready->pid > 0 && (pid_t)ready->pid != supervisor);
    const char *builtins[] = {"echo", "sleep", "fail", "pid"};
    for (int i = 0; i < 4; i++)
        CHECK (dp_testfake_ready_offers (&got, builtins[i]));
    /*  Unanswered, READY comes again (with backoff), from a fresh socket. */
    uint64_t pid = dp_testfake_ready_pid (&got);
    uint8_t first_rid[256];
    size_t first_rid_size = got.rid_size;
    memcpy (first_rid, got.rid, got.rid_size);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (got.rid_size == first_rid_size && memcmp (got.rid, first_rid, first_rid_size) == 0);
    CHECK_EQ_INT (dp_testfake_ready_pid (&got), pid);
    dp_testfake_welcome (&fake, &got, 100, DP_TESTFAKE_LONG_EXPIRY);
    /*  Welcomed, it heartbeats on the socket that was welcomed (the other
        attempt's socket says BYE, skipped by EXPECT). */
    EXPECT (&fake, &got, DP_CMD_HEARTBEAT);
    CHECK (dp_testfake_from_current (&fake, &got));
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  While a task sleeps, the I/O thread keeps heartbeating. */
static void
s_case_heartbeat (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    dp_testfake_welcome (&fake, &got, 100, DP_TESTFAKE_LONG_EXPIRY);
    dp_test_buf_t nap;
    dp_test_buf_init (&nap);
    msgpack_pack_double (&nap.pk, 2.0);
    dp_testfake_job_t job = {9, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &job, 1);
    int heartbeats = 0;
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    while (results.count == 0) {
        CHECK (dp_testfake_recv (&fake, &got, DP_TESTFAKE_WAIT_MS));
        if (got.m.cmd == DP_CMD_HEARTBEAT)
            heartbeats++;
        else
            dp_testfake_results_take (&results, &got);
    }
    CHECK_EQ_INT (results.code[9], 0);
    /*  2 s of task; this broker never beats, so the worker speaks unasked
        after 150 ms (1.5 intervals) of its own silence: about 13. At
        least 5 leaves room for a loaded machine (it failed once with 1 s
        and 5). */
    CHECK (heartbeats >= 5);
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&nap);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  A worker that holds no job is idle and beats DP_IDLE_FACTOR times as
    slowly (interval 100 ms, expiry 400 ms here): unasked heartbeats come
    450 ms apart, not 150, and a silent broker is given up after 1200 ms,
    not 400 (then the worker registers again). Heartbeats are counted, not
    timed one by one: this test's own delays in reading them cannot fail
    it. */
static void
s_case_idle_beat (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    int64_t before = dp_now_ms ();
    dp_testfake_welcome (&fake, &got, 100, 400);
    int heartbeats = 0;
    for (;;) {
        CHECK (dp_testfake_recv (&fake, &got, DP_TESTFAKE_WAIT_MS));
        if (got.m.cmd != DP_CMD_HEARTBEAT)
            break;
        heartbeats++;
    }
    /*  Past the idle expiry: it connects again, on a new socket (closing
        the old one with a BYE first). */
    int64_t gone = dp_now_ms ();
    CHECK (got.m.cmd == DP_CMD_READY || got.m.cmd == DP_CMD_BYE);
    CHECK (gone - before >= DP_IDLE_FACTOR * 400);
    /*  About 1.2 s of silence from the broker: two unasked heartbeats at
        the idle rate, eight at the busy one. */
    if (heartbeats < 1 || heartbeats > 4)
        dp_test_fail (__FILE__, __LINE__, "%d unasked heartbeats in %lld ms while idle",
                      heartbeats, (long long)(gone - before));
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  With the worker welcomed at interval 2 s at since (its last word): it
    says nothing for 1.1 s, then answers a HEARTBEAT within 700 ms, from
    its current registration. */
static void
s_quiet_then_answers (dp_testfake_t *fake, dp_testfake_msg_t *got, int64_t since)
{
    int64_t left;
    while ((left = since + 1100 - dp_now_ms ()) > 0)
        if (dp_testfake_recv (fake, got, (int)left))
            dp_test_fail (__FILE__, __LINE__, "the worker said %s while it should be quiet",
                          dp_cmd_name (got->m.cmd));
    dp_encode_empty (&fake->writer);
    int64_t asked = dp_now_ms ();
    dp_testfake_send (fake, DP_CMD_HEARTBEAT);
    CHECK (dp_testfake_recv (fake, got, DP_TESTFAKE_WAIT_MS));
    int64_t answered = dp_now_ms ();
    CHECK_EQ_INT (got->m.cmd, DP_CMD_HEARTBEAT);
    CHECK (dp_testfake_from_current (fake, got));
    if (answered - asked >= 700)
        dp_test_fail (__FILE__, __LINE__, "HEARTBEAT answered after %lld ms",
                      (long long)(answered - asked));
}

/*  A worker that has been quiet for half an interval answers the broker's
    HEARTBEAT at once, instead of waiting for its own timer (1.5 intervals):
    the answers of many idle workers then reach the broker together. */
static void
s_case_heartbeat_answer (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    /*  Interval 2 s: the worker answers after 1 s of quiet and would speak
        unasked only after 3 s. */
    dp_testfake_welcome (&fake, &got, 2000, DP_TESTFAKE_LONG_EXPIRY);
    /*  Its last word was the welcome ping's DONE. Its own timer would have
        spoken 3 s after the ping, and a worker of the old rule 2 s after
        it: an answer means well before both. */
    s_quiet_then_answers (&fake, &got, dp_now_ms ());
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  The I/O thread watches the broker's socket while the task thread runs
    a job, so a HEARTBEAT that comes in the middle of a long job is
    answered at once, not after the job. */
static void
s_case_busy_answer (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    /*  Interval 2 s: the worker answers after 1 s of quiet and would speak
        unasked only after 3 s, when the job below has ended. */
    dp_testfake_welcome (&fake, &got, 2000, DP_TESTFAKE_LONG_EXPIRY);
    int64_t welcomed = dp_now_ms ();
    dp_test_buf_t nap;
    dp_test_buf_init (&nap);
    msgpack_pack_double (&nap.pk, 2.5);
    dp_testfake_job_t job = {5, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &job, 1);
    /*  The job ends 2.5 s after it began: the answer came while it ran. */
    s_quiet_then_answers (&fake, &got, welcomed);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 1, __FILE__, __LINE__);
    CHECK_EQ_INT (results.code[5], 0);
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&nap);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  An idle worker sleeps between the broker's messages: heartbeats that
    wake it (every 50 ms for 2 s here) cost it a small fraction of a core,
    whichever of its threads watches the socket. A thread that missed a
    message it had been woken for would poll again at once, and spin. */
static void
s_case_idle_cpu (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    dp_testfake_welcome (&fake, &got, 100, DP_TESTFAKE_LONG_EXPIRY);
    int pid = (int)fake.current_pid;
    double before = dp_proc_cpu_seconds (pid);
    CHECK (before >= 0);
    int64_t start = dp_now_ms ();
    int answers = 0;
    while (dp_now_ms () - start < 2000) {
        dp_encode_empty (&fake.writer);
        dp_testfake_send (&fake, DP_CMD_HEARTBEAT);
        int64_t until = dp_now_ms () + 50;
        int64_t left;
        while ((left = until - dp_now_ms ()) > 0)
            if (dp_testfake_recv (&fake, &got, (int)left) && got.m.cmd == DP_CMD_HEARTBEAT)
                answers++;
    }
    double after = dp_proc_cpu_seconds (pid);
    CHECK (after >= 0);
    /*  A fifth of a core over 2 s; a spinning thread takes all of one. */
    if ((after - before) * 5 > 2)
        dp_test_fail (__FILE__, __LINE__, "an idle worker used %.2f s of CPU in 2 s",
                      after - before);
    /*  It answered (after 50 ms of its own quiet, half an interval). */
    CHECK (answers >= 10);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  A broker silent past expiry is presumed dead: the worker registers again
    on a fresh socket, and the result of a job from before is dropped. */
static void
s_case_broker_silence (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    uint8_t first_rid[256];
    int64_t start = dp_now_ms ();
    dp_testfake_welcome (&fake, &got, 100, 500);
    size_t first_rid_size = fake.current_size;
    memcpy (first_rid, fake.current, first_rid_size);
    dp_test_buf_t nap, value;
    dp_test_buf_init (&nap);
    msgpack_pack_double (&nap.pk, 1.2);
    dp_test_buf_init (&value);
    msgpack_pack_int (&value.pk, 5);
    dp_testfake_job_t old = {1, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &old, 1);
    /*  Heartbeats, then a new READY from a new socket, past the expiry.
        (A READY before that can only be a stray earlier attempt's.) */
    for (;;) {
        CHECK (dp_testfake_recv (&fake, &got, DP_TESTFAKE_WAIT_MS));
        bool first =
            got.rid_size == first_rid_size && memcmp (got.rid, first_rid, first_rid_size) == 0;
        if (got.m.cmd == DP_CMD_HEARTBEAT)
            continue;
        /*  The old socket is closed with a BYE, in case the broker lives. */
        if (got.m.cmd == DP_CMD_BYE && first)
            continue;
        CHECK (got.m.cmd == DP_CMD_READY);
        if (dp_now_ms () - start >= 450)
            break;
    }
    CHECK (got.rid_size != first_rid_size || memcmp (got.rid, first_rid, got.rid_size) != 0);
    dp_testfake_welcome (&fake, &got, 100, DP_TESTFAKE_LONG_EXPIRY);
    dp_testfake_job_t fresh = {2, "echo", value.sbuf.data, value.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &fresh, 1);
    /*  Only the new job's result comes, after the old sleep ends. */
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 1, __FILE__, __LINE__);
    CHECK (results.seen[2] && !results.seen[1]);
    CHECK (dp_now_ms () - start >= 1100);
    /*  And nothing but heartbeats after it: never the old job's result. */
    for (int64_t until = dp_now_ms () + 500, left; (left = until - dp_now_ms ()) > 0;)
        if (dp_testfake_recv (&fake, &got, (int)left))
            CHECK (got.m.cmd == DP_CMD_HEARTBEAT);
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&nap);
    dp_test_buf_fini (&value);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  ERROR ESTATE: the broker forgot us; READY again, on the same socket. */
static void
s_case_estate (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_encode_error (&fake.writer, DPOOL_ESTATE, "who are you?");
    dp_testfake_send (&fake, DP_CMD_ERROR);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (!dp_testfake_from_current (&fake, &got)); /* not a stray earlier attempt */
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_test_buf_t value;
    dp_test_buf_init (&value);
    msgpack_pack_int (&value.pk, 5);
    dp_testfake_job_t job = {4, "echo", value.sbuf.data, value.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &job, 1);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 1, __FILE__, __LINE__);
    CHECK_EQ_INT (results.code[4], 0);
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&value);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  BYE from the broker (shutting down): register again after the backoff. */
static void
s_case_broker_bye (void)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, NULL);
    uint64_t pid = dp_testfake_ready_pid (&got);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    int64_t start = dp_now_ms ();
    dp_encode_empty (&fake.writer);
    dp_testfake_send (&fake, DP_CMD_BYE);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (dp_now_ms () - start < DP_RECONNECT_MS - 10); /* not a stray earlier attempt */
    CHECK_EQ_INT (dp_testfake_ready_pid (&got), pid);    /* the same process, not a restart */
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  Whether a dpool-worker started with extra (and the environment the test
    has now) offers the built-in crash; the others it always offers. */
static bool
s_offers_crash (const char *const *extra)
{
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, extra);
    const char *builtins[] = {"echo", "sleep", "fail", "pid"};
    for (int i = 0; i < 4; i++)
        CHECK (dp_testfake_ready_offers (&got, builtins[i]));
    bool crash = dp_testfake_ready_offers (&got, "crash");
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_testfake_finish (&fake, &got, supervisor);
    return crash;
}

/*  crash, which aborts the process that runs it, is for tests and demos: a
    worker offers it only with --test-builtins or DPOOL_TEST_BUILTINS=1. */
static void
s_case_crash_only_when_asked (void)
{
    CHECK_EQ_INT (unsetenv ("DPOOL_TEST_BUILTINS"), 0);
    CHECK (!s_offers_crash (NULL));
    const char *test_builtins[] = {"--test-builtins", NULL};
    CHECK (s_offers_crash (test_builtins));
    CHECK_EQ_INT (setenv ("DPOOL_TEST_BUILTINS", "1", 1), 0);
    CHECK (s_offers_crash (NULL));
    CHECK_EQ_INT (setenv ("DPOOL_TEST_BUILTINS", "0", 1), 0);
    CHECK (!s_offers_crash (NULL));
}

/*  True once the log file at arg shows eight READYs sent: with the backoff
    (100 ms doubling to 2 s), more than 5 s of trying. */
static bool
s_tried_long (void *arg)
{
    char *text = dp_test_read_file ((const char *)arg);
    int count = 0;
    for (const char *at = text ? strstr (text, "READY to") : NULL; at;
         at = strstr (at + 1, "READY to"))
        count++;
    free (text);
    return count >= 8;
}

/*  No broker at the endpoint is no handshake failure: a worker with a
    handshake timeout of 1 s goes on waiting for one, well past it. */
static void
s_case_waits_for_broker (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    const char *extra[] = {"--handshake-timeout", "1", "--log-level", "debug", NULL};
    pid_t supervisor = dp_test_workers_logged (endpoint, 1, extra);
    CHECK (dp_test_wait_until (s_tried_long, (void *)dp_test_path ("workers1.err"), 20000));
    char *text = dp_test_read_file (dp_test_path ("workers1.err"));
    CHECK (text && !strstr (text, "giving up") && !strstr (text, "handshake"));
    free (text);
    int status = dp_test_stop (supervisor, SIGTERM, 5000);
    CHECK (status != -1 && WIFEXITED (status));
    CHECK_EQ_INT (WEXITSTATUS (status), 0);
}

static const dp_test_case_t s_cases[] = {
    {"worker_registers_with_backoff_until_welcome", s_case_registers},
    {"worker_heartbeats_while_task_runs", s_case_heartbeat},
    {"worker_idle_beats_and_expires_slower", s_case_idle_beat},
    {"worker_answers_broker_heartbeat_when_quiet", s_case_heartbeat_answer},
    {"worker_answers_broker_heartbeat_during_a_job", s_case_busy_answer},
    {"worker_idle_sleeps_between_messages", s_case_idle_cpu},
    {"worker_reconnects_when_broker_goes_silent", s_case_broker_silence},
    {"worker_registers_again_on_estate", s_case_estate},
    {"worker_registers_again_after_broker_bye", s_case_broker_bye},
    {"worker_offers_crash_only_when_asked", s_case_crash_only_when_asked},
    {"worker_waits_for_a_broker_not_running", s_case_waits_for_broker},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

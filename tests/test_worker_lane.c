/*  test_worker_lane.c - a dpool-worker process's lane (PROTOCOL.md 5.7)
    against a fake broker (dp_testfake.h) that gives the worker a lane token
    and then refuses the lane, or takes it and forgets it; and urgent jobs
    (PROTOCOL.md 5.2), on the lane and on the worker's own connection,
    which pass the jobs the worker holds. Each case is one ctest test:
    test_worker_lane CASE.
*/
#include "dp_testfake.h"
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define WAIT_MS 5000  /* how long a step may take before the test fails */
#define EXPIRY  60000 /* the fake never heartbeats: expiry_ms it announces */
#define TOKEN   0x5eed5eed5eedULL

/*  The next message other than HEARTBEAT, in got: its command; the test
    fails if none comes within WAIT_MS. */
static int
s_fake_recv (dp_testfake_t *fake, dp_testfake_msg_t *got)
{
    int64_t until = dp_now_ms () + WAIT_MS;
    for (;;) {
        long left = (long)(until - dp_now_ms ());
        CHECK (left > 0);
        if (!dp_testfake_recv (fake, got, (int)left))
            continue;
        if (got->m.cmd != DP_CMD_HEARTBEAT)
            return got->m.cmd;
    }
}

/*  The worker's READY, answered WELCOME with TOKEN; then its lane's ATTACH,
    whose routing id goes into lane. */
static void
s_fake_register (dp_testfake_t *fake, dp_testfake_msg_t *got, uint8_t *main, size_t *main_size,
                 uint8_t *lane, size_t *lane_size)
{
    CHECK_EQ_INT (s_fake_recv (fake, got), DP_CMD_READY);
    memcpy (main, got->rid, got->rid_size);
    *main_size = got->rid_size;
    dp_encode_welcome_token (&fake->writer, 1000, EXPIRY, "fake", 1, TOKEN);
    dp_testfake_send_to (fake, main, *main_size, DP_CMD_WELCOME);
    CHECK_EQ_INT (s_fake_recv (fake, got), DP_CMD_ATTACH);
    CHECK (got->m.u.attach.token == TOKEN);
    CHECK (got->rid_size != *main_size || memcmp (got->rid, main, *main_size) != 0);
    memcpy (lane, got->rid, got->rid_size);
    *lane_size = got->rid_size;
}

/*  Sends an echo job, ref, to rid. */
static void
s_fake_dispatch (dp_testfake_t *fake, const uint8_t *rid, size_t rid_size, uint64_t ref)
{
    static const uint8_t args[1] = {0x2a};
    dp_task_t job = {.id = ref, .fn = {(const uint8_t *)"echo", 4}, .args = {args, 1}};
    dp_list_begin (&fake->writer);
    dp_list_add_task (&fake->writer, DP_CMD_DISPATCH, &job);
    dp_list_end (&fake->writer);
    dp_testfake_send_to (fake, rid, rid_size, DP_CMD_DISPATCH);
}

/*  The next message is a DONE for ref with value 42, from rid. */
static void
s_fake_expect_done (dp_testfake_t *fake, dp_testfake_msg_t *got, const uint8_t *rid,
                    size_t rid_size, uint64_t ref)
{
    CHECK_EQ_INT (s_fake_recv (fake, got), DP_CMD_DONE);
    CHECK (got->rid_size == rid_size && memcmp (got->rid, rid, rid_size) == 0);
    dp_result_t result;
    CHECK (dp_list_next_result (&got->m.u.list, &result));
    CHECK_EQ_INT (result.id, ref);
    CHECK_EQ_INT (result.code, 0);
    CHECK (result.value.size == 1 && result.value.data[0] == 0x2a);
}

static pid_t
s_worker (const char *endpoint)
{
    const char *extra[] = {"--log-level", "info", NULL};
    return dp_test_workers_start (endpoint, 1, extra);
}

static void
s_stop (pid_t pid)
{
    int status = dp_test_stop (pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status));
}

/*  A broker that refuses the lane (as one without lanes does: EPROTO, an
    unknown command): the worker goes on through its own connection. */
static void
s_case_refused (void)
{
    const char *endpoint = dp_test_ipc ("fake");
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint);
    dp_testfake_msg_t got = {0};
    pid_t worker = s_worker (endpoint);
    uint8_t main[256], lane[256];
    size_t main_size, lane_size;
    s_fake_register (&fake, &got, main, &main_size, lane, &lane_size);
    dp_encode_error (&fake.writer, DPOOL_EPROTO, "malformed message (command)");
    dp_testfake_send_to (&fake, lane, lane_size, DP_CMD_ERROR);
    for (uint64_t ref = 1; ref <= 3; ref++) {
        s_fake_dispatch (&fake, main, main_size, ref);
        s_fake_expect_done (&fake, &got, main, main_size, ref);
    }
    s_stop (worker);
    dp_testfake_release (&got);
    dp_testfake_stop (&fake);
}

/*  A broker that takes the lane: jobs on it are answered on it, jobs on
    the worker's own connection too; once the broker forgets the lane
    (ERROR ESTATE), the worker registers again. */
static void
s_case_attached_then_lost (void)
{
    const char *endpoint = dp_test_ipc ("fake");
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint);
    dp_testfake_msg_t got = {0};
    pid_t worker = s_worker (endpoint);
    uint8_t main[256], lane[256];
    size_t main_size, lane_size;
    s_fake_register (&fake, &got, main, &main_size, lane, &lane_size);
    dp_encode_welcome (&fake.writer, 1000, EXPIRY, "fake", 1);
    dp_testfake_send_to (&fake, lane, lane_size, DP_CMD_WELCOME);
    s_fake_dispatch (&fake, lane, lane_size, 1);
    s_fake_expect_done (&fake, &got, lane, lane_size, 1);
    s_fake_dispatch (&fake, main, main_size, 2);
    s_fake_expect_done (&fake, &got, lane, lane_size, 2);

    dp_encode_error (&fake.writer, DPOOL_ESTATE, "unknown peer: send HELLO or READY");
    dp_testfake_send_to (&fake, lane, lane_size, DP_CMD_ERROR);
    CHECK_EQ_INT (s_fake_recv (&fake, &got), DP_CMD_READY);
    CHECK (got.rid_size == main_size && memcmp (got.rid, main, main_size) == 0);
    s_stop (worker);
    dp_testfake_release (&got);
    dp_testfake_stop (&fake);
}

#define SLOW_JOBS   10  /* jobs the worker holds when the urgent ones come */
#define SLOW_SECS   0.1 /* each sleeps this long: 1 s in all */
#define SLOW_BEFORE 4   /* of them, most that may end before the urgent ones */

/*  Sends one DISPATCH to rid: count jobs from ref first, sleeps of
    SLOW_SECS, or echoes of 42 marked urgent. */
static void
s_fake_dispatch_many (dp_testfake_t *fake, const uint8_t *rid, size_t rid_size, uint64_t first,
                      size_t count, bool urgent)
{
    dp_test_buf_t nap;
    dp_test_buf_init (&nap);
    msgpack_pack_double (&nap.pk, SLOW_SECS);
    static const uint8_t echo[1] = {0x2a};
    dp_list_begin (&fake->writer);
    for (size_t i = 0; i < count; i++) {
        dp_task_t job = {.id = first + i, .attempt = 1, .urgent = urgent};
        job.fn = urgent ? (dp_span_t){(const uint8_t *)"echo", 4}
                        : (dp_span_t){(const uint8_t *)"sleep", 5};
        job.args = urgent ? (dp_span_t){echo, 1}
                          : (dp_span_t){(const uint8_t *)nap.sbuf.data, nap.sbuf.size};
        dp_list_add_task (&fake->writer, DP_CMD_DISPATCH, &job);
    }
    dp_list_end (&fake->writer);
    dp_testfake_send_to (fake, rid, rid_size, DP_CMD_DISPATCH);
    dp_test_buf_fini (&nap);
}

/*  The worker holds SLOW_JOBS jobs of SLOW_SECS (refs 1 to SLOW_JOBS, on
    its lane) when two urgent jobs come, one on its lane, one on its own
    connection: both are run before the jobs it held, but the one that was
    running (a few more if the machine is slow), and each of the twelve is
    answered once. A worker that ran its jobs in the order received would
    answer them last. */
static void
s_case_urgent_first (void)
{
    const char *endpoint = dp_test_ipc ("fake");
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint);
    dp_testfake_msg_t got = {0};
    pid_t worker = s_worker (endpoint);
    uint8_t main[256], lane[256];
    size_t main_size, lane_size;
    s_fake_register (&fake, &got, main, &main_size, lane, &lane_size);
    dp_encode_welcome (&fake.writer, 1000, EXPIRY, "fake", 1);
    dp_testfake_send_to (&fake, lane, lane_size, DP_CMD_WELCOME);
    s_fake_dispatch_many (&fake, lane, lane_size, 1, SLOW_JOBS, false);
    s_fake_dispatch_many (&fake, lane, lane_size, SLOW_JOBS + 1, 1, true);
    s_fake_dispatch_many (&fake, main, main_size, SLOW_JOBS + 2, 1, true);
    /*  The order the results come in; a ref seen twice fails. */
    bool seen[SLOW_JOBS + 3] = {false};
    size_t slow_done = 0, urgent_done = 0;
    while (slow_done + urgent_done < SLOW_JOBS + 2) {
        CHECK_EQ_INT (s_fake_recv (&fake, &got), DP_CMD_DONE);
        dp_result_t result;
        while (dp_list_next_result (&got.m.u.list, &result)) {
            CHECK (result.id >= 1 && result.id <= SLOW_JOBS + 2 && !seen[result.id]);
            CHECK_EQ_INT (result.code, 0);
            seen[result.id] = true;
            if (result.id <= SLOW_JOBS) {
                slow_done++;
                continue;
            }
            CHECK (result.value.size == 1 && result.value.data[0] == 0x2a);
            if (slow_done > SLOW_BEFORE)
                dp_test_fail (__FILE__, __LINE__,
                              "urgent job %llu ran after %zu of the %d jobs held before it",
                              (unsigned long long)result.id, slow_done, SLOW_JOBS);
            urgent_done++;
        }
    }
    s_stop (worker);
    dp_testfake_release (&got);
    dp_testfake_stop (&fake);
}

static const dp_test_case_t s_cases[] = {
    {"worker_lane_refused", s_case_refused},
    {"worker_lane_attached_then_lost", s_case_attached_then_lost},
    {"worker_runs_urgent_jobs_before_those_held", s_case_urgent_first},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

/*  test_broker_fair.c - fair share between clients (issue 16, item 1) and
    the bound on a client's tasks running at once, against a real
    dpool-broker driven by hand-made peers: busy clients that submitted
    their tasks one after the other get the worker in turns, by weight and
    by run time; a client at --max-running-per-client waits while another
    runs; a client back from idle has its task sent at once, marked
    urgent, to a worker that holds many of another's. Then the case with real processes: a
   sequential apply behind another client's long map waits for a few of its tasks, not for the
   whole map. Usage: test_broker_fair CASE.
*/
#include "dp_proto.h"
#include "dp_testbroker.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define BATCH     1000 /* tasks each busy client submits */
#define MAX_PEERS 3
#define SHARE_PCT 5    /* allowed distance from the fair share, in points of the whole */
#define TAG_A     0xa1 /* client tags: their session ids are the tag repeated */
#define TAG_B     0xb2
#define TAG_C     0xc3
#define FUNCTION  "f"

/*  Submits BATCH tasks of FUNCTION at priority whose args name the client
    (its tag, a packed positive fixint cut to 7 bits). */
static void
s_submit_batch (dp_testpeer_t *client, uint8_t tag, int32_t priority)
{
    static dp_task_t tasks[BATCH];
    static uint8_t args[1];
    args[0] = tag & 0x7f;
    for (size_t i = 0; i < BATCH; i++)
        tasks[i] = (dp_task_t){.id = i + 1,
                               .fn = {(const uint8_t *)FUNCTION, strlen (FUNCTION)},
                               .args = {args, sizeof args},
                               .priority = priority};
    dp_testbroker_submit_tasks (client, tasks, BATCH);
}

/*  Receives one DISPATCH of one job; returns its ref, and in *tag the tag
    its args name. */
static uint64_t
s_next_job (dp_testpeer_t *worker, uint8_t *tag)
{
    dp_testpeer_expect (worker, DP_CMD_DISPATCH);
    dp_task_t job;
    CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
    CHECK_EQ_INT (job.args.size, 1);
    *tag = job.args.data[0];
    CHECK (!dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
    return job.id;
}

/*  Runs count jobs on a worker of credit 1, each said to take the run time
    run_us[i] of its client (by position in tags), and counts how many
    jobs and how much run time each client got. */
static void
s_run_jobs (dp_testpeer_t *worker, size_t count, const uint8_t *tags, const uint32_t *run_us,
            size_t nclients, size_t *jobs, uint64_t *time_us)
{
    for (size_t n = 0; n < count; n++) {
        uint8_t tag;
        uint64_t ref = s_next_job (worker, &tag);
        size_t i = 0;
        while (i < nclients && (tags[i] & 0x7f) != tag)
            i++;
        CHECK (i < nclients);
        jobs[i]++;
        time_us[i] += run_us[i];
        dp_testbroker_done_run (worker, ref, 0, NULL, run_us[i]);
    }
}

/*  Fails unless part is share_pct % of whole, give or take SHARE_PCT points. */
static void
s_check_share (const char *what, uint64_t part, uint64_t whole, double share_pct)
{
    double pct = 100.0 * (double)part / (double)whole;
    if (pct < share_pct - SHARE_PCT || pct > share_pct + SHARE_PCT)
        dp_test_fail (__FILE__, __LINE__, "%s got %.1f%% (%llu of %llu), not %.1f%% ± %d", what,
                      pct, (unsigned long long)part, (unsigned long long)whole, share_pct,
                      SHARE_PCT);
}

/*  nclients busy clients, each submitting BATCH tasks after the one
    before (so arrival order alone would serve the first only); a worker of
    credit 1 runs count jobs; each client gets shares[i] % of the run time. */
static void
s_busy_clients (const uint8_t *tags, const uint32_t *run_us, const double *shares, size_t nclients,
                size_t count)
{
    const char *const fns[] = {FUNCTION};
    dp_testpeer_t *clients[MAX_PEERS];
    for (size_t i = 0; i < nclients; i++) {
        clients[i] = dp_testbroker_client (tags[i]);
        s_submit_batch (clients[i], tags[i], 0);
        /*  Queued before the next client submits: status answers after. */
        CHECK (dp_testbroker_status_counter (clients[i], "queued", false) == (i + 1) * BATCH);
    }
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    size_t jobs[MAX_PEERS] = {0};
    uint64_t time_us[MAX_PEERS] = {0}, total = 0;
    s_run_jobs (worker, count, tags, run_us, nclients, jobs, time_us);
    for (size_t i = 0; i < nclients; i++)
        total += time_us[i];
    for (size_t i = 0; i < nclients; i++) {
        char what[64];
        snprintf (what, sizeof what, "client %zu (%zu jobs)", i, jobs[i]);
        s_check_share (what, time_us[i], total, shares[i]);
    }
    dp_testpeer_destroy (&worker);
    for (size_t i = 0; i < nclients; i++)
        dp_testpeer_destroy (&clients[i]);
}

/*  Two clients of equal weight and equal tasks: half each. */
static void
s_case_two_equal (void)
{
    const uint8_t tags[] = {TAG_A, TAG_B};
    const uint32_t run_us[] = {1000, 1000};
    const double shares[] = {50, 50};
    s_busy_clients (tags, run_us, shares, 2, 400);
}

/*  Three clients: a third each. */
static void
s_case_three_equal (void)
{
    const uint8_t tags[] = {TAG_A, TAG_B, TAG_C};
    const uint32_t run_us[] = {1000, 1000, 1000};
    const double shares[] = {100.0 / 3, 100.0 / 3, 100.0 / 3};
    s_busy_clients (tags, run_us, shares, 3, 600);
}

/*  A's tasks take three times as long as B's: the run time is shared, not
    the count of tasks (B gets about three tasks for each of A's). */
static void
s_case_run_time (void)
{
    const uint8_t tags[] = {TAG_A, TAG_B};
    const uint32_t run_us[] = {3000, 1000};
    const double shares[] = {50, 50};
    s_busy_clients (tags, run_us, shares, 2, 400);
}

/*  A weighs 3 (--weights with its session id), B 1: A gets three quarters. */
static const char *const s_args_weights[] = {"--weights", "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1=3",
                                             NULL};

static void
s_case_weights (void)
{
    const uint8_t tags[] = {TAG_A, TAG_B};
    const uint32_t run_us[] = {1000, 1000};
    const double shares[] = {75, 25};
    s_busy_clients (tags, run_us, shares, 2, 400);
}

/*  Priorities order a client's own tasks, not the others': A's tasks of
    priority 9 do not pass B's; B's urgent task (args URGENT, priority 1)
    comes before B's others, in B's turn. */
#define URGENT 0x7e

static void
s_case_priority_within (void)
{
    const char *const fns[] = {FUNCTION};
    dp_testpeer_t *a = dp_testbroker_client (TAG_A);
    dp_testpeer_t *b = dp_testbroker_client (TAG_B);
    s_submit_batch (a, TAG_A, 9);
    /*  Asked on A's own connection, so that its SUBMIT is in: the broker
        reads two connections in no set order. */
    CHECK (dp_testbroker_status_counter (a, "queued", false) == BATCH);
    static uint8_t args[1] = {TAG_B & 0x7f}, urgent[1] = {URGENT};
    dp_task_t tasks[3];
    for (size_t i = 0; i < 3; i++)
        tasks[i] = (dp_task_t){.id = 10 + i,
                               .fn = {(const uint8_t *)FUNCTION, strlen (FUNCTION)},
                               .args = {i == 2 ? urgent : args, 1},
                               .priority = i == 2 ? 1 : 0};
    dp_testbroker_submit_tasks (b, tasks, 3);
    CHECK (dp_testbroker_status_counter (b, "queued", false) == BATCH + 3);
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    /*  In 10 jobs, B's 3 come among A's, its urgent one first. */
    size_t of_b = 0;
    for (size_t n = 0; n < 10; n++) {
        uint8_t tag;
        dp_testpeer_expect (worker, DP_CMD_DISPATCH);
        dp_task_t job;
        CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
        tag = job.args.data[0];
        if (tag == (TAG_B & 0x7f) || tag == URGENT) {
            CHECK ((of_b == 0) == (tag == URGENT));
            of_b++;
        }
        dp_testbroker_done_run (worker, job.id, 0, NULL, 1000);
    }
    CHECK_EQ_INT (of_b, 3);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&b);
    dp_testpeer_destroy (&a);
}

/*  --max-running-per-client 2: A's many tasks take two of three workers;
    B's one task takes the third at once; A's next goes when one of its
    two ends. */
static const char *const s_args_running[] = {"--max-running-per-client", "2", NULL};

static void
s_case_max_running (void)
{
    const char *const fns[] = {FUNCTION};
    dp_testpeer_t *workers[3];
    for (size_t i = 0; i < 3; i++)
        workers[i] = dp_testbroker_worker (fns, 1, 1);
    dp_testpeer_t *a = dp_testbroker_client (TAG_A);
    dp_testpeer_t *b = dp_testbroker_client (TAG_B);
    s_submit_batch (a, TAG_A, 0);
    /*  Two workers hold A's tasks; the third, B's task. */
    static uint8_t args[1] = {TAG_B & 0x7f};
    dp_task_t task = {.id = 1,
                      .fn = {(const uint8_t *)FUNCTION, strlen (FUNCTION)},
                      .args = {args, sizeof args}};
    dp_testbroker_submit_tasks (b, &task, 1);
    uint64_t refs[3];
    uint8_t tags[3];
    for (size_t i = 0; i < 3; i++)
        refs[i] = s_next_job (workers[i], &tags[i]);
    size_t of_a = 0, of_b = 0, at_a = 3;
    for (size_t i = 0; i < 3; i++) {
        of_a += tags[i] == (TAG_A & 0x7f);
        of_b += tags[i] == (TAG_B & 0x7f);
        if (tags[i] == (TAG_A & 0x7f))
            at_a = i;
    }
    CHECK_EQ_INT (of_a, 2);
    CHECK_EQ_INT (of_b, 1);
    CHECK (dp_testbroker_status_counter (a, "queued", false) == BATCH - 2);
    /*  One of A's ends: its next task goes to that worker. */
    dp_testbroker_done_run (workers[at_a], refs[at_a], 0, NULL, 1000);
    uint8_t tag;
    s_next_job (workers[at_a], &tag);
    CHECK_EQ_INT (tag, TAG_A & 0x7f);
    CHECK_EQ_INT (dp_testbroker_expect_result (a).code, 0);
    CHECK (dp_testbroker_status_counter (a, "inflight", false) == 3);
    for (size_t i = 0; i < 3; i++)
        dp_testpeer_destroy (&workers[i]);
    dp_testpeer_destroy (&b);
    dp_testpeer_destroy (&a);
}

/*  Receives one DISPATCH: returns how many jobs it holds, their refs in
    refs (up to max), and in *tag and *urgent its first job's tag and mark;
    the test fails unless its other jobs are not urgent. */
static size_t
s_take_dispatch (dp_testpeer_t *worker, uint64_t *refs, size_t max, uint8_t *tag, bool *urgent)
{
    dp_testpeer_expect (worker, DP_CMD_DISPATCH);
    dp_task_t job;
    size_t count = 0;
    while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job)) {
        CHECK (count < max);
        refs[count] = job.id;
        if (count == 0) {
            *tag = job.args.data[0];
            *urgent = job.urgent;
        } else
            CHECK (!job.urgent);
        count++;
    }
    CHECK (count > 0);
    return count;
}

/*  A worker of credit 100 holds as many of A's tasks as 5 ms of their
    run time (100 us each): more than half its budget, so it gets no more
    until it answers. B, back from idle, submits one task: it goes to that
    worker at once, alone in a DISPATCH marked urgent (the worker runs it
    before those it holds). A's first task, A being fresh, was urgent too;
    the tasks prefetched after it are not. */
static void
s_case_urgent (void)
{
    const char *const fns[] = {FUNCTION};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 100);
    dp_testpeer_t *a = dp_testbroker_client (TAG_A);
    dp_testpeer_t *b = dp_testbroker_client (TAG_B);
    s_submit_batch (a, TAG_A, 0);
    uint64_t refs[100];
    uint8_t tag;
    bool urgent;
    /*  The function's pace is unknown: one task, then its run time. */
    CHECK_EQ_INT (s_take_dispatch (worker, refs, 100, &tag, &urgent), 1);
    CHECK (tag == (TAG_A & 0x7f) && urgent);
    dp_testbroker_done_run (worker, refs[0], 0, NULL, 100);
    CHECK_EQ_INT (dp_testbroker_expect_result (a).code, 0);
    /*  A's tasks fill the worker to 5 ms: one DISPATCH, or the one urgent
        task (A was idle again for an instant) and then the rest. */
    size_t held = s_take_dispatch (worker, refs, 100, &tag, &urgent);
    CHECK (tag == (TAG_A & 0x7f));
    if (urgent) {
        CHECK_EQ_INT (held, 1);
        held += s_take_dispatch (worker, refs + 1, 99, &tag, &urgent);
        CHECK (tag == (TAG_A & 0x7f) && !urgent);
    }
    CHECK (held >= 40 && held < 99);
    CHECK (dp_testbroker_status_counter (a, "inflight", false) == held);
    /*  B's task comes at once, before the worker answers any of A's. */
    static uint8_t args[1] = {TAG_B & 0x7f};
    dp_task_t task = {.id = 1,
                      .fn = {(const uint8_t *)FUNCTION, strlen (FUNCTION)},
                      .args = {args, sizeof args}};
    dp_testbroker_submit_tasks (b, &task, 1);
    uint64_t ref_b;
    CHECK_EQ_INT (s_take_dispatch (worker, &ref_b, 1, &tag, &urgent), 1);
    CHECK (tag == (TAG_B & 0x7f) && urgent);
    dp_testbroker_done_run (worker, ref_b, 0, NULL, 100);
    CHECK_EQ_INT (dp_testbroker_expect_result (b).code, 0);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&b);
    dp_testpeer_destroy (&a);
}

/*  ---------------------------------------------------------------------------
    The case, with real processes.
*/

#define MAP_INPUTS   4000 /* sleeps of MAP_SLEEP s: 10 s on 2 processes */
#define MAP_SLEEP    "0.005"
#define MAP_QUEUED   200  /* map tasks queued (it streams its input) before the apply */
#define APPLY_MAX_MS 2000 /* the apply's bound: a few tasks and a command's start */

/*  True once the broker holds more than MAP_QUEUED of the map's tasks queued. */
static bool
s_map_queued (void *arg)
{
    return dp_testbroker_status_counter ((dp_testpeer_t *)arg, "queued", false) > MAP_QUEUED;
}

/*  One client runs `dpool map sleep --chunksize 1` over MAP_INPUTS inputs
    of 5 ms on 2 worker processes (one task per input: a chunk, once
    running, is not shared); while it is queued, another client's `dpool apply
    echo '[1]'` takes well under the time left to the map (about 10 s; it
    was so on the old broker: 4.1 s behind 2,000 inputs). */
static void
s_case_apply_behind_map (void)
{
    const char *endpoint = dp_testbroker_broker.tcp;
    pid_t workers = dp_test_workers_start (endpoint, 2, NULL);
    FILE *input = fopen (dp_test_path ("map.in"), "w");
    CHECK (input);
    for (int i = 0; i < MAP_INPUTS; i++)
        fputs (MAP_SLEEP "\n", input);
    CHECK (fclose (input) == 0);
    char command[4096];
    snprintf (command, sizeof command,
              "exec '%s' map sleep --chunksize 1 --connect '%s' < '%s' > /dev/null",
              dp_test_cli_bin, endpoint, dp_test_path ("map.in"));
    char *const argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t map = dp_test_spawn ("map", argv);
    dp_testpeer_t *watcher = dp_testbroker_client (TAG_C);
    CHECK (dp_test_wait_until (s_map_queued, watcher, 30000));
    const char *const args[] = {"apply", "echo", "[1]", NULL};
    int64_t start = dp_test_now_ms ();
    char *out = NULL;
    int status = dp_test_cli_run ("apply", endpoint, args, 60000, &out, NULL);
    int64_t took = dp_test_now_ms () - start;
    CHECK_EQ_INT (WEXITSTATUS (status), 0);
    CHECK (strstr (out, "1"));
    free (out);
    if (took > APPLY_MAX_MS)
        dp_test_fail (__FILE__, __LINE__, "the apply took %lld ms behind the map (most %d)",
                      (long long)took, APPLY_MAX_MS);
    /*  The map was still running: the apply did not wait for its end. */
    CHECK (dp_testbroker_status_counter (watcher, "queued", false) > 0);
    dp_testpeer_destroy (&watcher);
    dp_test_stop (map, SIGTERM, 10000);
    dp_test_stop (workers, SIGTERM, 10000);
}

static const dp_test_case_t s_cases[] = {
    {"broker_fair_two_clients", s_case_two_equal},
    {"broker_fair_three_clients", s_case_three_equal},
    {"broker_fair_run_time", s_case_run_time},
    {"broker_fair_weights", s_case_weights, .data = s_args_weights},
    {"broker_fair_priority_within_client", s_case_priority_within},
    {"broker_fair_max_running", s_case_max_running, .data = s_args_running},
    {"broker_fair_urgent_passes_prefetched_tasks", s_case_urgent},
    {"broker_fair_apply_behind_map", s_case_apply_behind_map, .seconds = 90},
};

int
main (int argc, char *argv[])
{
    return dp_testbroker_main (argc, argv, DP_TEST_CASES (s_cases));
}

/*  test_worker_jobs.c - jobs through real dpool-worker processes, against
    a fake broker (dp_testfake.h): every kind of result, the batching of
    DONEs, a job past its deadline, and a plugin's functions. Each case is
    one ctest test: test_worker_jobs CASE.
*/
#include "dp_testfake.h"
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_worker.h"
#include "dpool.h"

#include <string.h>

#ifndef DPOOL_EXAMPLE_PLUGIN
#define DPOOL_EXAMPLE_PLUGIN "dpool_example_plugin.so"
#endif

static bool
s_str_starts (const msgpack_object *value, const char *text)
{
    size_t len = strlen (text);
    return value->type == MSGPACK_OBJECT_STR && value->via.str.size >= len &&
           memcmp (value->via.str.ptr, text, len) == 0;
}

/*  The arguments of the jobs of s_case_jobs, packed. */
typedef struct {
    dp_test_buf_t echo, boom, map, chunk, sleeps, pidargs, short_sleep;
} jobs_args_t;

/*  Packs [1, "two"], "boom", {"k": 5}, the chunk [7, "x", nil], the chunk
    ["later", 0.01] (a bad call, then a good one), nil and 0.05. */
static void
s_jobs_args_init (jobs_args_t *args)
{
    dp_test_buf_init (&args->echo);
    msgpack_pack_array (&args->echo.pk, 2);
    msgpack_pack_int (&args->echo.pk, 1);
    dp_test_pack_str (&args->echo.pk, "two");
    dp_test_buf_init (&args->boom);
    dp_test_pack_str (&args->boom.pk, "boom");
    dp_test_buf_init (&args->map);
    msgpack_pack_map (&args->map.pk, 1);
    dp_test_pack_str (&args->map.pk, "k");
    msgpack_pack_int (&args->map.pk, 5);
    dp_test_buf_init (&args->chunk);
    msgpack_pack_array (&args->chunk.pk, 3);
    msgpack_pack_int (&args->chunk.pk, 7);
    dp_test_pack_str (&args->chunk.pk, "x");
    msgpack_pack_nil (&args->chunk.pk);
    dp_test_buf_init (&args->sleeps);
    msgpack_pack_array (&args->sleeps.pk, 2);
    dp_test_pack_str (&args->sleeps.pk, "later");
    msgpack_pack_double (&args->sleeps.pk, 0.01);
    dp_test_buf_init (&args->pidargs);
    msgpack_pack_nil (&args->pidargs.pk);
    dp_test_buf_init (&args->short_sleep);
    msgpack_pack_double (&args->short_sleep.pk, 0.05);
}

static void
s_jobs_args_fini (jobs_args_t *args)
{
    dp_test_buf_fini (&args->echo);
    dp_test_buf_fini (&args->boom);
    dp_test_buf_fini (&args->map);
    dp_test_buf_fini (&args->chunk);
    dp_test_buf_fini (&args->sleeps);
    dp_test_buf_fini (&args->pidargs);
    dp_test_buf_fini (&args->short_sleep);
}

/*  Jobs 1 to 4: echo gives its arguments back; fail fails with them as the
    message (a str as it is, anything else as JSON); an unknown function is
    ENOFUNC. */
static void
s_check_single_results (const dp_testfake_results_t *results)
{
    CHECK_EQ_INT (results->code[1], 0);
    CHECK (results->value[1].type == MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_INT (results->value[1].via.array.size, 2);
    CHECK (dp_test_is_str (&results->value[1].via.array.ptr[1], "two"));

    CHECK_EQ_INT (results->code[2], DPOOL_EFAILED);
    CHECK (dp_test_is_str (&results->value[2], "boom"));
    CHECK_EQ_INT (results->code[3], DPOOL_EFAILED);
    CHECK (dp_test_is_str (&results->value[3], "{\"k\": 5}"));
    CHECK_EQ_INT (results->code[4], DPOOL_ENOFUNC);
    CHECK (s_str_starts (&results->value[4], "no function named 'no.such.fn'"));
}

/*  Jobs 5 and 6: a chunk succeeds as a whole; each call has its [code,
    value]. */
static void
s_check_chunk_results (const dp_testfake_results_t *results)
{
    CHECK_EQ_INT (results->code[5], 0);
    const msgpack_object *pairs = &results->value[5];
    CHECK (pairs->type == MSGPACK_OBJECT_ARRAY && pairs->via.array.size == 3);
    for (int i = 0; i < 3; i++) {
        const msgpack_object *pair = &pairs->via.array.ptr[i];
        CHECK (pair->type == MSGPACK_OBJECT_ARRAY && pair->via.array.size == 2);
        CHECK_EQ_INT (pair->via.array.ptr[0].via.u64, 0);
    }
    CHECK_EQ_INT (pairs->via.array.ptr[0].via.array.ptr[1].via.u64, 7);
    CHECK (dp_test_is_str (&pairs->via.array.ptr[1].via.array.ptr[1], "x"));
    CHECK (pairs->via.array.ptr[2].via.array.ptr[1].type == MSGPACK_OBJECT_NIL);

    CHECK_EQ_INT (results->code[6], 0);
    pairs = &results->value[6];
    CHECK (pairs->type == MSGPACK_OBJECT_ARRAY && pairs->via.array.size == 2);
    CHECK_EQ_INT (pairs->via.array.ptr[0].via.array.ptr[0].via.u64, DPOOL_EFAILED);
    CHECK (s_str_starts (&pairs->via.array.ptr[0].via.array.ptr[1], "sleep: expected"));
    CHECK_EQ_INT (pairs->via.array.ptr[1].via.array.ptr[0].via.u64, 0);
}

/*  Jobs 7 and 8: a job that ends within its timeout is not killed: the
    same process, pid, answers the next one. */
static void
s_check_same_process (const dp_testfake_results_t *results, uint64_t pid)
{
    CHECK_EQ_INT (results->code[7], 0);
    CHECK_EQ_INT (results->code[8], 0);
    const msgpack_object *info = &results->value[8];
    CHECK (info->type == MSGPACK_OBJECT_MAP && info->via.map.size == 2);
    CHECK (dp_test_is_str (&info->via.map.ptr[0].key, "pid"));
    CHECK_EQ_INT (info->via.map.ptr[0].val.via.u64, pid);
}

/*  Jobs of every kind come back with the right code and value. */
static void
s_case_jobs (void)
{
    const char *extra[] = {"--credit", "20", NULL};
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, extra);
    uint64_t pid = dp_testfake_ready_pid (&got);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);

    jobs_args_t args;
    s_jobs_args_init (&args);
    dp_testfake_job_t jobs[] = {
        {1, "echo", args.echo.sbuf.data, args.echo.sbuf.size, 0, 0},
        {2, "fail", args.boom.sbuf.data, args.boom.sbuf.size, 0, 0},
        {3, "fail", args.map.sbuf.data, args.map.sbuf.size, 0, 0},
        {4, "no.such.fn", args.echo.sbuf.data, args.echo.sbuf.size, 0, 0},
        {5, "echo", args.chunk.sbuf.data, args.chunk.sbuf.size, 0, DP_TASK_CHUNK},
        {6, "sleep", args.sleeps.sbuf.data, args.sleeps.sbuf.size, 0, DP_TASK_CHUNK},
        {7, "sleep", args.short_sleep.sbuf.data, args.short_sleep.sbuf.size, 5000, 0},
        {8, "pid", args.pidargs.sbuf.data, args.pidargs.sbuf.size, 0, 0},
    };
    dp_testfake_dispatch (&fake, jobs, 4);
    dp_testfake_dispatch (&fake, jobs + 4, 4);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 8, __FILE__, __LINE__);
    s_check_single_results (&results);
    s_check_chunk_results (&results);
    s_check_same_process (&results, pid);

    dp_testfake_results_fini (&results);
    s_jobs_args_fini (&args);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  Fast results share DONE messages; a slow job's result does not wait for
    the next slow job. */
static void
s_case_batching (void)
{
    const char *extra[] = {"--credit", "200", NULL};
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, extra);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);

    dp_test_buf_t value;
    dp_test_buf_init (&value);
    msgpack_pack_int (&value.pk, 42);
    dp_testfake_job_t jobs[200];
    for (int i = 0; i < 200; i++)
        jobs[i] = (dp_testfake_job_t){(uint64_t)i, "echo", value.sbuf.data, value.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, jobs, 200);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 200, __FILE__, __LINE__);
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT (results.code[i], 0);
    /*  At most 64 per DONE, and far fewer DONEs than results. */
    CHECK (results.messages >= 200 / DP_WORKER_DONE_BATCH);
    CHECK (results.messages < 100);
    dp_testfake_results_fini (&results);

    /*  Two slow jobs in one DISPATCH: the first result arrives alone. */
    dp_test_buf_t nap;
    dp_test_buf_init (&nap);
    msgpack_pack_double (&nap.pk, 0.4);
    dp_testfake_job_t slow[] = {{1, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0},
                                {2, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0}};
    int64_t start = dp_now_ms ();
    dp_testfake_dispatch (&fake, slow, 2);
    dp_testfake_results_init (&results);
    EXPECT (&fake, &got, DP_CMD_DONE);
    int64_t first = dp_now_ms () - start;
    CHECK_EQ_INT (dp_testfake_results_take (&results, &got), 1);
    CHECK (results.seen[1]);
    CHECK (first >= 390 && first < 700);
    EXPECT (&fake, &got, DP_CMD_DONE);
    CHECK_EQ_INT (dp_testfake_results_take (&results, &got), 1);
    CHECK (results.seen[2]);
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&value);
    dp_test_buf_fini (&nap);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  A job past its timeout: DONE EDEADLINE, BYE, and the supervisor starts a
    new process, which registers afresh. */
static void
s_case_timeout (void)
{
    const char *extra[] = {"--credit", "2", NULL};
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, extra);
    uint64_t pid = dp_testfake_ready_pid (&got);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_test_buf_t nap, value;
    dp_test_buf_init (&nap);
    msgpack_pack_int (&nap.pk, 30);
    dp_test_buf_init (&value);
    msgpack_pack_int (&value.pk, 1);
    dp_testfake_job_t jobs[] = {{1, "echo", value.sbuf.data, value.sbuf.size, 0, 0},
                                {2, "sleep", nap.sbuf.data, nap.sbuf.size, 300, 0},
                                {3, "echo", value.sbuf.data, value.sbuf.size, 0, 0}};
    int64_t start = dp_now_ms ();
    dp_testfake_dispatch (&fake, jobs, 3);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 2, __FILE__, __LINE__);
    CHECK (dp_now_ms () - start >= 300);
    CHECK_EQ_INT (results.code[1], 0);
    CHECK_EQ_INT (results.code[2], DPOOL_EDEADLINE);
    CHECK (dp_test_is_str (&results.value[2], "task exceeded its timeout of 300 ms"));
    CHECK (!results.seen[3]);
    EXPECT (&fake, &got, DP_CMD_BYE);
    dp_testfake_reply_bye (&fake, &got);
    /*  The prefetched job 3 is the broker's to requeue; a new process comes. */
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (dp_testfake_ready_pid (&got) == pid); /* a stray attempt of the old one */
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&nap);
    dp_test_buf_fini (&value);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  --plugin: the plugin's functions are offered and run. */
static void
s_case_plugin (void)
{
    const char *extra[] = {"--plugin", DPOOL_EXAMPLE_PLUGIN, "--credit", "2", NULL};
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, extra);
    CHECK (dp_testfake_ready_offers (&got, "example.add"));
    CHECK (dp_testfake_ready_offers (&got, "example.upper"));
    CHECK (dp_testfake_ready_offers (&got, "example.wordcount"));
    CHECK (dp_testfake_ready_offers (&got, "echo"));
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_test_buf_t numbers, text;
    dp_test_buf_init (&numbers);
    msgpack_pack_array (&numbers.pk, 3);
    msgpack_pack_int (&numbers.pk, 1);
    msgpack_pack_int (&numbers.pk, 2);
    msgpack_pack_double (&numbers.pk, 3.5);
    dp_test_buf_init (&text);
    dp_test_pack_str (&text.pk, "shout");
    dp_testfake_job_t jobs[] = {{1, "example.add", numbers.sbuf.data, numbers.sbuf.size, 0, 0},
                                {2, "example.upper", text.sbuf.data, text.sbuf.size, 0, 0}};
    dp_testfake_dispatch (&fake, jobs, 2);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 2, __FILE__, __LINE__);
    CHECK_EQ_INT (results.code[1], 0);
    CHECK (results.value[1].type == MSGPACK_OBJECT_FLOAT64 && results.value[1].via.f64 == 6.5);
    CHECK (dp_test_is_str (&results.value[2], "SHOUT"));
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&numbers);
    dp_test_buf_fini (&text);
    dp_testfake_finish (&fake, &got, supervisor);
}

static const dp_test_case_t s_cases[] = {
    {"worker_runs_dispatched_jobs", s_case_jobs},
    {"worker_batches_fast_results_not_slow_ones", s_case_batching},
    {"worker_timeout_reports_edeadline_and_restarts", s_case_timeout},
    {"worker_plugin_registers_functions", s_case_plugin},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

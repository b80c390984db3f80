/*  test_memory.c - backpressure keeps memory flat: a client submitting far
    faster than its workers consume, through a real broker, has at most
    max_outstanding tasks in flight, and neither the client nor the broker
    grows with the number of tasks submitted (the caller drops each handle,
    as a fire-and-forget submitter does). Memory, not time: no timing is
    asserted. */
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TASKS       200000
#define OUTSTANDING 1000
#define GROWTH_KB   (16 * 1024) /* allowed growth between the samples */

/*  Resident set size of pid in KiB (from /proc), or -1. */
static long
s_rss_kb (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = dp_test_read_file (path);
    if (!text)
        return -1;
    char *line = strstr (text, "VmRSS:");
    long kb = line ? atol (line + 6) : -1;
    free (text);
    return kb;
}

static bool
s_two_workers (void *arg)
{
    void *data;
    size_t size;
    if (dpool_pool_status ((dpool_pool_t *)arg, 5000, &data, &size))
        return false;
    free (data);
    return dpool_pool_workers ((dpool_pool_t *)arg) >= 2;
}

/*  The program's one case. */
static void
s_case_backpressure_memory_stays_flat_over_200000_tasks (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    dp_test_workers_start (broker.ipc, 2, NULL);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = broker.ipc;
    config.max_outstanding = OUTSTANDING;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    CHECK (dp_test_wait_until (s_two_workers, pool, 20000));

    /*  Arguments of some size, so that holding them would show. */
    char args[512];
    args[0] = (char)0xc5; /* bin16 of 509 bytes */
    args[1] = 0x01;
    args[2] = (char)0xfd;
    memset (args + 3, 'a', sizeof args - 3);
    long client_at = 0, broker_at = 0;
    for (int i = 0; i < TASKS; i++) {
        dpool_result_t *result = dpool_pool_apply_async (pool, "echo", args, sizeof args, NULL);
        CHECK (result);
        dpool_result_destroy (&result);
        if (i == TASKS / 10) {
            /*  Warmed up: every buffer has reached its working size. */
            client_at = s_rss_kb (getpid ());
            broker_at = s_rss_kb (broker.pid);
        }
    }
    CHECK (dpool_pool_close (pool) == 0);
    CHECK (dpool_pool_join (pool, 120000) == 0);
    long client_end = s_rss_kb (getpid ());
    long broker_end = s_rss_kb (broker.pid);
    fprintf (stderr, "memory: client %ld -> %ld KiB, broker %ld -> %ld KiB over %d tasks\n",
             client_at, client_end, broker_at, broker_end, TASKS - TASKS / 10);
    CHECK (client_at > 0 && broker_at > 0);
    /*  90% of the tasks went through after the first sample; had either side
        kept anything per task (512 bytes of args), it would have grown by
        about 90 MB. */
    CHECK (client_end - client_at < GROWTH_KB);
    CHECK (broker_end - broker_at < GROWTH_KB);
    dpool_pool_destroy (&pool);
}

static const dp_test_case_t s_cases[] = {
    {"backpressure_memory_stays_flat_over_200000_tasks",
     s_case_backpressure_memory_stays_flat_over_200000_tasks},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 240);
}

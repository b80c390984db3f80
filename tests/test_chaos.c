/*  test_chaos.c - never hang, never lose a task, under fire.

    kill_workers: a 10,000-task map while worker processes are SIGKILLed one
    after another (their supervisor restarts them): every task ends exactly
    once with the right value, and the broker finished exactly 10,000.

    restart_broker: a map while the broker is SIGKILLed and started again on
    the same endpoint: workers and client reconnect by themselves, the client
    resubmits what has no result, and every task ends with the right value;
    and the same five times over with a journaled broker.

    Usage: test_chaos CASE.
*/
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TASKS 10000

/*  Packs [seconds, i] for i in 0..n-1: the args of the built-in "sleep",
    which returns its args, so each item's value names itself. */
static void
s_pack_items (msgpack_sbuffer *sbuf, int n, double seconds)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    for (int i = 0; i < n; i++) {
        msgpack_pack_array (&pk, 2);
        msgpack_pack_double (&pk, seconds);
        msgpack_pack_int (&pk, i);
    }
}

/*  Every item of a finished map is [seconds, i]. */
static void
s_check_items (dpool_result_t *result, int n)
{
    CHECK_EQ_INT (dpool_result_count (result), n);
    for (int i = 0; i < n; i++) {
        msgpack_object value;
        if (dpool_result_item (result, (size_t)i, &value) != 0)
            dp_test_fail (__FILE__, __LINE__, "item %d failed: %s", i,
                          dpool_result_item_error (result, (size_t)i));
        CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == 2);
        CHECK (value.via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER);
        CHECK_EQ_INT (value.via.array.ptr[1].via.u64, i);
    }
}

/*  Reads a uint field of a msgpack map by key; -1 if absent. */
static int64_t
s_map_uint (msgpack_object map, const char *key)
{
    if (map.type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object k = map.via.map.ptr[i].key;
        if (k.type == MSGPACK_OBJECT_STR && k.via.str.size == strlen (key) &&
            memcmp (k.via.str.ptr, key, k.via.str.size) == 0 &&
            map.via.map.ptr[i].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return (int64_t)map.via.map.ptr[i].val.via.u64;
    }
    return -1;
}

/*  The pids of the workers the broker knows, up to max. */
static int
s_worker_pids (dpool_pool_t *pool, pid_t *pids, int max)
{
    msgpack_unpacked status = dp_test_status (pool);
    msgpack_object map = status.data;
    int count = 0;
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object k = map.via.map.ptr[i].key;
        if (k.type != MSGPACK_OBJECT_STR || k.via.str.size != 7 ||
            memcmp (k.via.str.ptr, "workers", 7) != 0)
            continue;
        msgpack_object workers = map.via.map.ptr[i].val;
        for (uint32_t w = 0; w < workers.via.array.size && count < max; w++) {
            int64_t pid = s_map_uint (workers.via.array.ptr[w], "pid");
            if (pid > 0)
                pids[count++] = (pid_t)pid;
        }
    }
    msgpack_unpacked_destroy (&status);
    return count;
}

static bool
s_workers_ready (void *arg)
{
    pid_t pids[16];
    return s_worker_pids ((dpool_pool_t *)arg, pids, 16) >= 4;
}

static void
s_case_kill_workers (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    dp_test_workers_start (broker.tcp, 4, NULL);
    dpool_pool_t *pool = dpool_pool_connect (broker.tcp);
    CHECK (pool);
    CHECK (dp_test_wait_until (s_workers_ready, pool, 20000));

    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    s_pack_items (&args, TASKS, 0.002);
    /*  Chunks of 20 keep many tasks in flight at every kill; plenty of
        retries, so that no task can fail however the kills fall. */
    dpool_call_t call = {.retries = 100};
    dpool_result_t *result = dpool_pool_map_async (pool, "sleep", args.data, args.size, 20, &call);
    CHECK (result);
    /*  Kill a worker process every 150 ms while the map runs: in the middle
        of tasks, holding prefetched ones, or while connecting. */
    uint64_t x = (uint64_t)getpid () * 2654435761u;
    int kills = 0;
    int64_t deadline = dp_now_ms () + 60000;
    while (dpool_result_wait (result, 150) != 0) {
        CHECK (dp_now_ms () < deadline);
        pid_t pids[16];
        int n = s_worker_pids (pool, pids, 16);
        if (n > 0 && kills < 12) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (kill (pids[x % (uint64_t)n], SIGKILL) == 0)
                kills++;
        }
    }
    CHECK (dpool_result_successful (result));
    s_check_items (result, TASKS);

    /*  Exactly one result per chunk task at the broker: no task finished
        twice, even when a worker presumed dead answered late. */
    msgpack_unpacked status = dp_test_status (pool);
    CHECK_EQ_INT (s_map_uint (status.data, "done"), TASKS / 20);
    CHECK_EQ_INT (s_map_uint (status.data, "failed"), 0);
    msgpack_unpacked_destroy (&status);
    fprintf (stderr, "kill_workers: %d workers killed during the map\n", kills);
    CHECK (kills > 0);
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    msgpack_sbuffer_destroy (&args);
}

static void
s_case_restart_broker (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    /*  The ipc path can be bound again after a SIGKILL; workers and the
        client use it. */
    dp_test_workers_start (broker.ipc, 4, NULL);
    dpool_pool_t *pool = dpool_pool_connect (broker.ipc);
    CHECK (pool);
    CHECK (dp_test_wait_until (s_workers_ready, pool, 20000));

    enum { N = 3000 };
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    s_pack_items (&args, N, 0.001);
    /*  One task per item, so the broker holds many when it dies. */
    dpool_result_t *result = dpool_pool_map_async (pool, "sleep", args.data, args.size, 1, NULL);
    CHECK (result);
    /*  Kill the broker at once: most tasks are queued or in flight. */
    kill (broker.pid, SIGKILL);
    CHECK (dp_test_wait_exit (broker.pid, 5000) != -1);
    dp_test_broker_t again;
    const char *const extra[] = {"--bind", broker.ipc, NULL};
    /*  dp_test_broker_start binds a fresh ipc path too; the old one is
        passed again so that the peers find the new broker where they left
        the old one. */
    dp_test_broker_start (&again, extra);
    CHECK_EQ_INT (dpool_result_wait (result, 60000), 0);
    if (!dpool_result_successful (result))
        dp_test_fail (__FILE__, __LINE__, "map failed: %s", dpool_result_error (result));
    s_check_items (result, N);
    dpool_result_destroy (&result);

    /*  And the pool goes on working against the new broker. */
    dpool_result_t *one = dpool_pool_apply (pool, "echo", "\x07", 1, NULL);
    CHECK (one && dpool_result_successful (one));
    dpool_result_destroy (&one);
    dpool_pool_destroy (&pool);
    msgpack_sbuffer_destroy (&args);
}

/*  The same with a journaled broker, SIGKILLed five times while the map
    runs and started again on its journal each time: the session comes
    back with its tasks and results (some of the turn's results may come
    twice, some tasks run twice), the client resubmits what it has no
    result for, and every task still ends once with the right value. */
static void
s_case_restart_journaled_broker (void)
{
    char journal[4096];
    snprintf (journal, sizeof journal, "%s", dp_test_path ("chaos.journal"));
    const char *const args[] = {"--journal", journal, NULL};
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, args);
    dp_test_workers_start (broker.ipc, 4, NULL);
    dpool_pool_t *pool = dpool_pool_connect (broker.ipc);
    CHECK (pool);
    CHECK (dp_test_wait_until (s_workers_ready, pool, 20000));

    enum { N = 3000, KILLS = 5 };
    msgpack_sbuffer items;
    msgpack_sbuffer_init (&items);
    s_pack_items (&items, N, 0.001);
    dpool_result_t *result = dpool_pool_map_async (pool, "sleep", items.data, items.size, 1, NULL);
    CHECK (result);
    srand ((unsigned)getpid ());
    int kills = 0;
    for (; kills < KILLS && !dpool_result_ready (result); kills++) {
        dp_test_sleep_ms (50 + rand () % 250); /* spreads the kills; nothing waits on it */
        kill (broker.pid, SIGKILL);
        CHECK (dp_test_wait_exit (broker.pid, 5000) != -1);
        char tag[32];
        snprintf (tag, sizeof tag, "broker-again%d", kills);
        dp_test_broker_restart (&broker, tag, args);
    }
    fprintf (stderr, "%d kills before the map ended\n", kills);
    CHECK_EQ_INT (dpool_result_wait (result, 60000), 0);
    if (!dpool_result_successful (result))
        dp_test_fail (__FILE__, __LINE__, "map failed: %s", dpool_result_error (result));
    s_check_items (result, N);
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    msgpack_sbuffer_destroy (&items);
}

static const dp_test_case_t s_cases[] = {
    {"chaos_kill9_workers_during_10000_task_map", s_case_kill_workers},
    {"chaos_kill9_and_restart_broker_mid_map", s_case_restart_broker},
    {"chaos_kill9_journaled_broker_five_times_mid_map", s_case_restart_journaled_broker},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

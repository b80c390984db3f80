/*  test_client_apply.c - the client library (dpool.h's pool, result and
    iterator calls): apply, map and imap, results and status, against real processes: a
   dpool-broker and dpool-worker processes reached over tcp or ipc, or embedded pools that fork
   their own workers. `test_client_apply --list` names the cases; `test_client_apply CASE
   [tcp|ipc]` runs one.

    Every case waits on conditions with deadlines, never on bare sleeps,
    and stops every process it started.
*/
#include "dp_testutil.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <czmq.h>
#include <errno.h>
#include <msgpack.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

/*  ---------------------------------------------------------------------------
    apply_async, apply, get with a timeout, the handle's properties.
*/
static void
s_case_apply_async (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    msgpack_pack_int (&buf.pk, 42);
    dpool_result_t *result =
        dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 10000, &value), 0);
    CHECK (dp_test_is_int (&value, 42));
    CHECK (dpool_result_ready (result));
    CHECK (dpool_result_successful (result));
    CHECK_EQ_INT (dpool_result_code (result), DPOOL_OK);
    CHECK (dpool_result_error (result) == NULL);
    CHECK_EQ_INT (dpool_result_count (result), 1);
    CHECK_EQ_INT (dpool_result_index (result), 0);
    CHECK_EQ_INT (dpool_result_item (result, 0, &value), 0);
    CHECK (dp_test_is_int (&value, 42));
    CHECK_EQ_INT (dpool_result_item (result, 1, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (dpool_result_item_error (result, 0) == NULL);
    dpool_result_destroy (&result);
    CHECK (result == NULL);
    dpool_result_destroy (&result);

    /*  apply: a nested value comes back whole. */
    dp_test_buf_clear (&buf);
    msgpack_pack_map (&buf.pk, 2);
    dp_test_pack_str (&buf.pk, "name");
    dp_test_pack_str (&buf.pk, "dpool");
    dp_test_pack_str (&buf.pk, "list");
    msgpack_pack_array (&buf.pk, 3);
    for (int i = 1; i <= 3; i++)
        msgpack_pack_int (&buf.pk, i);
    result = dpool_pool_apply (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK (dpool_result_ready (result));
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    const msgpack_object *name = dp_test_map_get (&value, "name");
    const msgpack_object *list = dp_test_map_get (&value, "list");
    CHECK (name && dp_test_is_str (name, "dpool"));
    CHECK (list && list->type == MSGPACK_OBJECT_ARRAY && list->via.array.size == 3);
    CHECK (dp_test_is_int (&list->via.array.ptr[2], 3));
    dpool_result_destroy (&result);

    /*  get times out while the task runs, then succeeds. */
    dp_test_buf_clear (&buf);
    msgpack_pack_double (&buf.pk, 0.5);
    result = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    CHECK (!dpool_result_ready (result));
    CHECK_EQ_INT (dpool_result_code (result), -1);
    CHECK_EQ_INT (dpool_result_item (result, 0, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ESTATE);
    CHECK_EQ_INT (dpool_result_wait (result, 10000), 0);
    CHECK_EQ_INT (dpool_result_get (result, -1, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_FLOAT64 && value.via.f64 == 0.5);
    dpool_result_destroy (&result);

    /*  Bad names and bad msgpack are refused at once. */
    CHECK (!dpool_pool_apply_async (pool, "", buf.sbuf.data, buf.sbuf.size, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_apply_async (pool, NULL, buf.sbuf.data, buf.sbuf.size, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_apply_async (pool, "echo", "\xc1", 1, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_apply_async (pool, "echo", "\x01\x02", 2, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_apply_async (pool, "echo", NULL, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    dpool_call_t call = {.retries = DPOOL_EINVAL * 1000};
    CHECK (!dpool_pool_apply_async (pool, "echo", "\x01", 1, &call));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);

    dpool_pool_destroy (&pool);
    CHECK (pool == NULL);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    map, map_async, starmap: values in input order, whatever the chunks.
*/
static void
s_case_map_results_in_input_order (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 3);
    dpool_pool_t *pool = dp_test_env_connect (&env, 3);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    dp_test_pack_range (&buf, 0, 100);
    size_t chunksizes[] = {0, 1, 7, 100, 1000};
    for (size_t c = 0; c < sizeof chunksizes / sizeof chunksizes[0]; c++) {
        dpool_result_t *result =
            dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, chunksizes[c], NULL);
        CHECK (dpool_result_ready (result));
        dp_test_check_range (result, 100);
        dpool_result_destroy (&result);
    }
    dpool_result_t *result =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    dp_test_check_range (result, 100);
    dpool_result_destroy (&result);

    /*  A bigger map, in Pool's chunks. */
    dp_test_pack_range (&buf, 0, 5000);
    result = dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    dp_test_check_range (result, 5000);
    dpool_result_destroy (&result);

    /*  A map whose objects ask for huge pages (over 2 MiB of them): nil
        and integer values, each stored straight into its object, read
        back in order. */
    enum { HUGE_MAP = 100000 };
    dp_test_buf_clear (&buf);
    for (int i = 0; i < HUGE_MAP; i++) {
        if (i % 2)
            msgpack_pack_int (&buf.pk, i);
        else
            msgpack_pack_nil (&buf.pk);
    }
    result = dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == HUGE_MAP);
    for (int i = 0; i < HUGE_MAP; i++) {
        const msgpack_object *item = &value.via.array.ptr[i];
        if (i % 2 ? !dp_test_is_int (item, i) : item->type != MSGPACK_OBJECT_NIL)
            dp_test_fail (__FILE__, __LINE__, "item %d: type %d", i, (int)item->type);
    }
    dpool_result_destroy (&result);

    /*  starmap: each object is the argument list. */
    dp_test_buf_clear (&buf);
    for (int i = 0; i < 20; i++) {
        msgpack_pack_array (&buf.pk, 2);
        msgpack_pack_int (&buf.pk, i);
        dp_test_pack_str (&buf.pk, "x");
    }
    result = dpool_pool_starmap (pool, "echo", buf.sbuf.data, buf.sbuf.size, 3, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK_EQ_INT (value.via.array.size, 20);
    for (int i = 0; i < 20; i++) {
        msgpack_object call = value.via.array.ptr[i];
        CHECK (call.type == MSGPACK_OBJECT_ARRAY && call.via.array.size == 2);
        CHECK (dp_test_is_int (&call.via.array.ptr[0], i));
        CHECK (dp_test_is_str (&call.via.array.ptr[1], "x"));
    }
    dpool_result_destroy (&result);
    result = dpool_pool_starmap_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_wait (result, 20000), 0);
    CHECK (dpool_result_successful (result));
    dpool_result_destroy (&result);

    /*  starmap refuses an object that is not an array; map refuses bytes
        that are not msgpack. */
    dp_test_pack_range (&buf, 0, 3);
    CHECK (!dpool_pool_starmap (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_starmap_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    msgpack_pack_array (&buf.pk, 3); /* truncated: the array has no items */
    CHECK (!dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);

    /*  An empty map is ready at once, with an empty array. */
    result = dpool_pool_map (pool, "echo", NULL, 0, 0, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == 0);
    CHECK_EQ_INT (dpool_result_count (result), 0);
    dpool_result_destroy (&result);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    imap hands items out in input order, imap_unordered as they finish:
    sleeps of decreasing length on as many workers finish in reverse.
*/
static void
s_check_iter (dpool_iter_t *iter, const double *sleeps, const int *order, int count)
{
    CHECK (iter);
    for (int k = 0; k < count; k++) {
        dpool_result_t *item = dpool_iter_next (iter, 20000);
        if (!item)
            dp_test_fail (__FILE__, __LINE__, "item %d: %s", k, dpool_strerror (dpool_errno ()));
        CHECK_EQ_INT (dpool_result_index (item), order[k]);
        CHECK (dpool_result_successful (item));
        CHECK_EQ_INT (dpool_result_count (item), 1);
        msgpack_object value;
        CHECK_EQ_INT (dpool_result_get (item, 0, &value), 0);
        CHECK (value.type == MSGPACK_OBJECT_FLOAT64 && value.via.f64 == sleeps[order[k]]);
        dpool_result_destroy (&item);
    }
    CHECK (!dpool_iter_next (iter, 0));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EEND);
    CHECK (!dpool_iter_next (iter, -1));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EEND);
}

static void
s_case_imap_vs_imap_unordered_order (const char *transport)
{
    enum { N = 4 };
    static const double sleeps[N] = {2.0, 1.5, 1.0, 0.5};
    static const int in_order[N] = {0, 1, 2, 3};
    static const int finish_order[N] = {3, 2, 1, 0};
    dp_test_env_t env;
    dp_test_env_start (&env, transport, N);
    dpool_pool_t *pool = dp_test_env_connect (&env, N);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < N; i++)
        msgpack_pack_double (&buf.pk, sleeps[i]);

    dpool_iter_t *iter = dpool_pool_imap (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (iter);
    CHECK (!dpool_iter_next (iter, 0));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    s_check_iter (iter, sleeps, in_order, N);
    dpool_iter_destroy (&iter);
    CHECK (iter == NULL);

    iter = dpool_pool_imap_unordered (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    s_check_iter (iter, sleeps, finish_order, N);
    dpool_iter_destroy (&iter);

    /*  An iterator dropped early: its tasks go on, nothing leaks. */
    iter = dpool_pool_imap_unordered (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (iter);
    dpool_result_t *first = dpool_iter_next (iter, 20000);
    CHECK (first && dpool_result_index (first) == 3);
    dpool_iter_destroy (&iter);
    dpool_iter_destroy (&iter);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    dpool_result_destroy (&first);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Two clients on one broker each get their own results, and only them.
*/
static void
s_case_two_clients_get_only_their_own_results (const char *transport)
{
    enum { N = 200 };
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pools[2] = {dp_test_env_connect (&env, 2), dp_test_env_connect (&env, 2)};
    static const char *tags[2] = {"A", "B"};
    dpool_result_t *results[2][N];
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < N; i++)
        for (int p = 0; p < 2; p++) {
            dp_test_buf_clear (&buf);
            msgpack_pack_array (&buf.pk, 2);
            dp_test_pack_str (&buf.pk, tags[p]);
            msgpack_pack_int (&buf.pk, i);
            results[p][i] =
                dpool_pool_apply_async (pools[p], "echo", buf.sbuf.data, buf.sbuf.size, NULL);
            CHECK (results[p][i]);
        }
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < N; i++) {
            msgpack_object value;
            CHECK_EQ_INT (dpool_result_get (results[p][i], 20000, &value), 0);
            CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == 2);
            CHECK (dp_test_is_str (&value.via.array.ptr[0], tags[p]));
            CHECK (dp_test_is_int (&value.via.array.ptr[1], i));
            dpool_result_destroy (&results[p][i]);
        }
    /*  Maps too, at the same time. */
    dp_test_pack_range (&buf, 0, 300);
    dpool_result_t *maps[2];
    for (int p = 0; p < 2; p++)
        maps[p] = dpool_pool_map_async (pools[p], "echo", buf.sbuf.data, buf.sbuf.size, 7, NULL);
    for (int p = 0; p < 2; p++) {
        dp_test_check_range (maps[p], 300);
        dpool_result_destroy (&maps[p]);
    }
    for (int p = 0; p < 2; p++)
        dpool_pool_destroy (&pools[p]);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Backpressure: beyond max_outstanding tasks in flight, submits block
    until earlier ones finish.
*/
static void
s_case_backpressure_blocks_submits (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = env.endpoint;
    config.max_outstanding = 1;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    dp_test_wait_workers (pool, 2, 15000);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_double (&buf.pk, 0.3);

    dpool_result_t *a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (a);
    /*  A non-blocking submit fails at once while a's 0.3 s run, and submits
        nothing. */
    dpool_call_t nowait = {.flags = DPOOL_CALL_NOWAIT};
    CHECK (!dpool_pool_apply_async (pool, "echo", "\x01", 1, &nowait));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EAGAIN);
    CHECK (!dpool_result_ready (a));
    dpool_result_t *b = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (b);
    CHECK (dpool_result_ready (a));
    dpool_result_t *c = dpool_pool_apply_async (pool, "echo", "\x02", 1, NULL);
    CHECK (c);
    CHECK (dpool_result_ready (b));
    msgpack_pack_double (&buf.pk, 0.2);
    msgpack_pack_double (&buf.pk, 0.2);
    dpool_result_t *m =
        dpool_pool_map_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (m);
    CHECK (dpool_result_ready (c));
    CHECK_EQ_INT (dpool_result_wait (m, 20000), 0);
    CHECK (dpool_result_successful (m));
    dpool_result_destroy (&a);
    dpool_result_destroy (&b);
    dpool_result_destroy (&c);
    dpool_result_destroy (&m);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  Beyond max_outstanding_bytes of arguments in flight, submits block too;
    one task larger than the bound still goes when nothing else is out. */
enum { T_BIG = 80000, T_BYTES_BOUND = 200000 };

typedef struct {
    dpool_pool_t *pool;
    dp_test_buf_t *big;
    dpool_result_t *result;
    atomic_int done;
} s_big_submit_t;

static void *
s_big_submitter (void *arg)
{
    s_big_submit_t *job = (s_big_submit_t *)arg;
    job->result =
        dpool_pool_apply_async (job->pool, "echo", job->big->sbuf.data, job->big->sbuf.size, NULL);
    atomic_store (&job->done, 1);
    return NULL;
}

static bool
s_big_submitted (void *arg)
{
    return atomic_load (&((s_big_submit_t *)arg)->done) != 0;
}

static void
s_pack_bin (dp_test_buf_t *buf, size_t size, uint8_t fill)
{
    dp_test_buf_clear (buf);
    uint8_t *bytes = (uint8_t *)malloc (size);
    CHECK (bytes);
    memset (bytes, fill, size);
    msgpack_pack_bin (&buf->pk, size);
    msgpack_pack_bin_body (&buf->pk, bytes, size);
    free (bytes);
}

static void
s_check_echo_bin (dpool_result_t *result, size_t size, uint8_t fill)
{
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 20000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_BIN && value.via.bin.size == size);
    for (size_t i = 0; i < size; i++)
        if ((uint8_t)value.via.bin.ptr[i] != fill)
            dp_test_fail (__FILE__, __LINE__, "byte %zu of the echo is wrong", i);
}

static void
s_case_backpressure_bounds_bytes (const char *transport)
{
    /*  No worker yet: every task stays outstanding. */
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 0);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = env.endpoint;
    config.max_outstanding_bytes = T_BYTES_BOUND;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    dp_test_buf_t big;
    dp_test_buf_init (&big);
    s_pack_bin (&big, T_BIG, 0xa5);

    /*  Two fit (160 KB of 200 KB); a third would not, while small ones
        still do: the bound is on bytes, not on tasks. */
    dpool_result_t *a = dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, NULL);
    dpool_result_t *b = dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, NULL);
    CHECK (a && b);
    dpool_call_t nowait = {.flags = DPOOL_CALL_NOWAIT};
    CHECK (!dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, &nowait));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EAGAIN);
    dpool_result_t *small = dpool_pool_apply_async (pool, "echo", "\x07", 1, &nowait);
    CHECK (small);

    /*  A blocking submit of a third waits for room... */
    s_big_submit_t job = {.pool = pool, .big = &big};
    pthread_t thread;
    CHECK_EQ_INT (pthread_create (&thread, NULL, s_big_submitter, &job), 0);
    CHECK (!dp_test_wait_until (s_big_submitted, &job, 300));
    /*  ...which workers make. */
    env.workers = dp_test_track (dp_test_workers_start (env.endpoint, 2, NULL));
    CHECK (dp_test_wait_until (s_big_submitted, &job, 20000));
    pthread_join (thread, NULL);
    CHECK (job.result);
    s_check_echo_bin (a, T_BIG, 0xa5);
    s_check_echo_bin (b, T_BIG, 0xa5);
    s_check_echo_bin (job.result, T_BIG, 0xa5);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (small, 20000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_POSITIVE_INTEGER && value.via.u64 == 7);
    dpool_result_destroy (&a);
    dpool_result_destroy (&b);
    dpool_result_destroy (&small);
    dpool_result_destroy (&job.result);

    /*  Many in a row: each waits for room and all come back whole. */
    dpool_result_t *many[12];
    for (int i = 0; i < 12; i++) {
        s_pack_bin (&big, T_BIG, (uint8_t)i);
        many[i] = dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, NULL);
        CHECK (many[i]);
    }
    for (int i = 0; i < 12; i++) {
        s_check_echo_bin (many[i], T_BIG, (uint8_t)i);
        dpool_result_destroy (&many[i]);
    }

    /*  Larger than the bound: it goes, alone, once the others are done
        (a blocking submit: the last result may be in before its place is
        given back). */
    s_pack_bin (&big, 3 * T_BYTES_BOUND, 0x3c);
    dpool_result_t *huge =
        dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, NULL);
    CHECK (huge);
    s_check_echo_bin (huge, 3 * T_BYTES_BOUND, 0x3c);
    dpool_result_destroy (&huge);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&big);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    status: the broker's map, and the workers it counts.
*/
static void
s_case_status_reports_workers (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 3);
    dpool_pool_t *pool = dp_test_env_connect (&env, 3);
    CHECK (dpool_pool_workers (pool) >= 3);
    void *data = NULL;
    size_t size = 0;
    CHECK_EQ_INT (dpool_pool_status (pool, 10000, &data, &size), 0);
    CHECK (data && size > 0);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    CHECK_EQ_INT (msgpack_unpack_next (&unpacked, data, size, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *map = &unpacked.data;
    CHECK (map->type == MSGPACK_OBJECT_MAP);
    static const char *keys[] = {"broker", "uptime_ms", "queued",  "inflight",
                                 "done",   "failed",    "clients", "dropped"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!dp_test_map_get (map, keys[i]))
            dp_test_fail (__FILE__, __LINE__, "status has no %s", keys[i]);
    const msgpack_object *workers = dp_test_map_get (map, "workers");
    CHECK (workers && workers->type == MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_INT (workers->via.array.size, dpool_pool_workers (pool));
    const msgpack_object *clients = dp_test_map_get (map, "clients");
    CHECK (clients->type == MSGPACK_OBJECT_POSITIVE_INTEGER && clients->via.u64 >= 1);
    msgpack_unpacked_destroy (&unpacked);
    free (data);
    dpool_pool_destroy (&pool);

    /*  No broker there: status times out. */
    pool = dpool_pool_connect (dp_test_ipc ("nobody"));
    CHECK (pool);
    CHECK_EQ_INT (dpool_pool_status (pool, 300, &data, &size), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    CHECK_EQ_INT (dpool_pool_workers (pool), 0);
    dpool_pool_destroy (&pool);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Many threads submit and wait at once, several on the same handle.
*/
typedef struct {
    dpool_pool_t *pool;
    dpool_result_t *shared;
    int id;
    bool ok;
} s_thread_t;

static void *
s_submitter (void *arg)
{
    s_thread_t *self = (s_thread_t *)arg;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dpool_result_t *results[50];
    self->ok = true;
    for (int i = 0; i < 50; i++) {
        dp_test_buf_clear (&buf);
        dp_test_pack_pair (&buf.pk, self->id, i);
        results[i] =
            dpool_pool_apply_async (self->pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
        self->ok = self->ok && results[i];
    }
    for (int i = 0; i < 50 && self->ok; i++) {
        msgpack_object value;
        self->ok = dpool_result_get (results[i], 20000, &value) == 0 &&
                   dp_test_is_pair (&value, self->id, i);
    }
    for (int i = 0; i < 50; i++)
        dpool_result_destroy (&results[i]);
    dp_test_buf_fini (&buf);
    return NULL;
}

static void *
s_waiter (void *arg)
{
    s_thread_t *self = (s_thread_t *)arg;
    msgpack_object value;
    self->ok = dpool_result_get (self->shared, 20000, &value) == 0 &&
               value.type == MSGPACK_OBJECT_FLOAT64 && value.via.f64 == 0.3;
    return NULL;
}

static void
s_case_many_threads_submit_and_wait (const char *transport)
{
    enum { THREADS = 8 };
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_double (&buf.pk, 0.3);
    dpool_result_t *shared =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (shared);
    pthread_t threads[THREADS];
    s_thread_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (s_thread_t){pool, shared, i, false};
        CHECK_EQ_INT (pthread_create (&threads[i], NULL, i % 2 ? s_waiter : s_submitter, &args[i]),
                      0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join (threads[i], NULL);
        if (!args[i].ok)
            dp_test_fail (__FILE__, __LINE__, "thread %d failed", i);
    }
    dpool_result_destroy (&shared);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Handles outlive their pool: finished ones keep their values,
    unfinished ones end cancelled.
*/
static void
s_case_result_outlives_pool (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 1);
    dpool_pool_t *pool = dp_test_env_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dp_test_pack_str (&buf.pk, "kept");
    dpool_result_t *done = dpool_pool_apply (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (dpool_result_successful (done));
    dp_test_buf_clear (&buf);
    msgpack_pack_double (&buf.pk, 30.0);
    dpool_result_t *pending =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_iter_t *iter = dpool_pool_imap (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (pending && iter);
    dpool_pool_destroy (&pool);

    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (done, 0, &value), 0);
    CHECK (dp_test_is_str (&value, "kept"));
    dp_test_check_failed (pending, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_result_cancel (pending), 0);
    dpool_result_t *item = dpool_iter_next (iter, 1000);
    CHECK (item);
    dp_test_check_failed (item, DPOOL_ECANCELLED);
    dpool_result_destroy (&item);
    dpool_iter_destroy (&iter);
    dpool_result_destroy (&done);
    dpool_result_destroy (&pending);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Large values (PROTOCOL.md 3's payload frames, which a one-call handle
    keeps as they came instead of copying them) come back byte for byte,
    whatever their kind (a bin or a str, unpacked with no zone, or an array
    holding one, unpacked into a zone), whichever way they come (apply_async
    on the actor, apply on a lane, an imap's items, a map's copied values),
    and stay valid until their handle is destroyed, however many values
    come and go meanwhile.
*/
enum { BIG_BIN, BIG_STR, BIG_ARRAY, BIG_KINDS };

/*  Byte j of the value with seed. */
static uint8_t
s_big_byte (int seed, size_t j)
{
    return (uint8_t)(seed * 31 + (int)(j % 251) * 7 + (int)(j / 251));
}

/*  Packs the value of kind, size bytes of payload and seed into buf. */
static void
s_pack_big (dp_test_buf_t *buf, int kind, size_t size, int seed)
{
    uint8_t *bytes = (uint8_t *)malloc (size);
    CHECK (bytes);
    for (size_t j = 0; j < size; j++)
        bytes[j] = s_big_byte (seed, j);
    if (kind == BIG_ARRAY) {
        msgpack_pack_array (&buf->pk, 2);
        msgpack_pack_int (&buf->pk, seed);
    }
    if (kind == BIG_STR) {
        msgpack_pack_str (&buf->pk, size);
        msgpack_pack_str_body (&buf->pk, bytes, size);
    } else {
        msgpack_pack_bin (&buf->pk, size);
        msgpack_pack_bin_body (&buf->pk, bytes, size);
    }
    free (bytes);
}

/*  True if value is the one s_pack_big made of kind, size and seed. */
static bool
s_is_big (const msgpack_object *value, int kind, size_t size, int seed)
{
    if (kind == BIG_ARRAY) {
        if (value->type != MSGPACK_OBJECT_ARRAY || value->via.array.size != 2 ||
            !dp_test_is_int (&value->via.array.ptr[0], seed))
            return false;
        value = &value->via.array.ptr[1];
    }
    const char *bytes;
    if (kind == BIG_STR && value->type == MSGPACK_OBJECT_STR && value->via.str.size == size)
        bytes = value->via.str.ptr;
    else if (kind != BIG_STR && value->type == MSGPACK_OBJECT_BIN && value->via.bin.size == size)
        bytes = value->via.bin.ptr;
    else
        return false;
    for (size_t j = 0; j < size; j++)
        if ((uint8_t)bytes[j] != s_big_byte (seed, j))
            return false;
    return true;
}

/*  The kind and size of the i-th value of the apply_async case: every kind
    at sizes around DP_FRAME_MIN (inline below it, framed from it on) and
    far above it. */
static void
s_big_shape (int i, int *kind, size_t *size)
{
    static const size_t sizes[] = {DP_FRAME_MIN - 64, DP_FRAME_MIN, 64 * 1024 + 3, 1024 * 1024};
    *kind = i % BIG_KINDS;
    *size = sizes[(i / BIG_KINDS) % (sizeof sizes / sizeof sizes[0])];
}

/*  Submits count echoes of large values, with seeds from seed0. */
static void
s_submit_big (dpool_pool_t *pool, dpool_result_t **results, int count, int seed0)
{
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < count; i++) {
        int kind;
        size_t size;
        s_big_shape (i, &kind, &size);
        dp_test_buf_clear (&buf);
        s_pack_big (&buf, kind, size, seed0 + i);
        results[i] = dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
        CHECK (results[i]);
    }
    dp_test_buf_fini (&buf);
}

/*  Checks the echoes s_submit_big made, every step-th from first. */
static void
s_check_big (dpool_result_t **results, int count, int seed0, int first, int step)
{
    for (int i = first; i < count; i += step) {
        int kind;
        size_t size;
        s_big_shape (i, &kind, &size);
        msgpack_object value;
        CHECK_EQ_INT (dpool_result_get (results[i], 30000, &value), 0);
        if (!s_is_big (&value, kind, size, seed0 + i))
            dp_test_fail (__FILE__, __LINE__, "value %d (kind %d, %zu bytes) differs", i, kind,
                          size);
    }
}

/*  imap (chunks of one: each item a handle of its own), then map (chunks
    of one and of two), of MAPPED large bins; then a map's chunk that holds
    large values and a failure. */
enum { MAPPED = 6 };
static void
s_check_big_maps (dpool_pool_t *pool, size_t size)
{
    int count = MAPPED;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < count; i++)
        s_pack_big (&buf, BIG_BIN, size, 1000 + i);
    dpool_iter_t *iter = dpool_pool_imap (pool, "echo", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (iter);
    dpool_result_t *items[MAPPED];
    for (int i = 0; i < count; i++)
        CHECK ((items[i] = dpool_iter_next (iter, 30000)) != NULL);
    dpool_iter_destroy (&iter);
    for (int i = count - 1; i >= 0; i--) {
        msgpack_object value;
        CHECK_EQ_INT (dpool_result_get (items[i], 0, &value), 0);
        CHECK (s_is_big (&value, BIG_BIN, size, 1000 + i));
        dpool_result_destroy (&items[i]);
    }
    for (size_t chunksize = 1; chunksize <= 2; chunksize++) {
        dpool_result_t *map =
            dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, chunksize, NULL);
        msgpack_object value;
        CHECK_EQ_INT (dpool_result_get (map, 30000, &value), 0);
        CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == (uint32_t)count);
        for (int i = 0; i < count; i++)
            CHECK (s_is_big (&value.via.array.ptr[i], BIG_BIN, size, 1000 + i));
        dpool_result_destroy (&map);
    }
    /*  One chunk of three calls, in one frame: the values stay in it, the
        failure's message is copied out. */
    dp_test_buf_clear (&buf);
    for (int i = 0; i < 3; i++) {
        if (i == 1) {
            dp_test_pack_str (&buf.pk, "not seconds");
            continue;
        }
        msgpack_pack_array (&buf.pk, 2);
        msgpack_pack_int (&buf.pk, 0);
        s_pack_big (&buf, BIG_BIN, size, 2000 + i);
    }
    dpool_result_t *mixed = dpool_pool_map (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 3, NULL);
    CHECK (mixed);
    CHECK_EQ_INT (dpool_result_wait (mixed, 30000), 0);
    CHECK_EQ_INT (dpool_result_code (mixed), DPOOL_EFAILED);
    CHECK (strstr (dpool_result_item_error (mixed, 1), "expected a number of seconds"));
    for (int i = 0; i < 3; i += 2) {
        msgpack_object value;
        CHECK_EQ_INT (dpool_result_item (mixed, (size_t)i, &value), 0);
        CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == 2);
        CHECK (s_is_big (&value.via.array.ptr[1], BIG_BIN, size, 2000 + i));
    }
    dpool_result_destroy (&mixed);
    dp_test_buf_fini (&buf);
}

static void
s_case_large_values_byte_for_byte (const char *transport)
{
    enum { COUNT = 48 };
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dpool_result_t *kept[COUNT], *churn[COUNT];
    s_submit_big (pool, kept, COUNT, 0);
    s_check_big (kept, COUNT, 0, 0, 1);
    /*  Half go, and as many values again come and go: the memory of those
        freed is used again while the others are held. */
    for (int i = 1; i < COUNT; i += 2)
        dpool_result_destroy (&kept[i]);
    s_submit_big (pool, churn, COUNT, 500);
    s_check_big (churn, COUNT, 500, 0, 1);
    for (int i = 0; i < COUNT; i++)
        dpool_result_destroy (&churn[i]);
    s_check_big (kept, COUNT, 0, 0, 2);

    /*  apply: on the calling thread's lane. */
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    s_pack_big (&buf, BIG_BIN, 256 * 1024, 7);
    dpool_result_t *applied = dpool_pool_apply (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    msgpack_object value;
    CHECK (applied);
    CHECK_EQ_INT (dpool_result_get (applied, 0, &value), 0);
    CHECK (s_is_big (&value, BIG_BIN, 256 * 1024, 7));
    s_check_big_maps (pool, 100 * 1000);
    /*  Still valid once the pool is gone: the handle owns its value. */
    dpool_pool_destroy (&pool);
    CHECK (s_is_big (&value, BIG_BIN, 256 * 1024, 7));
    s_check_big (kept, COUNT, 0, 0, 2);
    dpool_result_destroy (&applied);
    for (int i = 0; i < COUNT; i += 2)
        dpool_result_destroy (&kept[i]);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

static const dp_test_case_t s_cases[] = {
    {"client_apply_async", .run_on = s_case_apply_async, .seconds = 60},
    {"client_map_results_in_input_order", .run_on = s_case_map_results_in_input_order,
     .seconds = 60},
    {"client_imap_vs_imap_unordered_order", .run_on = s_case_imap_vs_imap_unordered_order,
     .seconds = 60},
    {"client_two_clients_get_only_their_own_results",
     .run_on = s_case_two_clients_get_only_their_own_results, .seconds = 60},
    {"client_backpressure_blocks_submits", .run_on = s_case_backpressure_blocks_submits,
     .seconds = 60},
    {"client_backpressure_bounds_bytes", .run_on = s_case_backpressure_bounds_bytes,
     .seconds = 60},
    {"client_status_reports_workers", .run_on = s_case_status_reports_workers, .seconds = 60},
    {"client_many_threads_submit_and_wait", .run_on = s_case_many_threads_submit_and_wait,
     .seconds = 60},
    {"client_result_outlives_pool", .run_on = s_case_result_outlives_pool, .seconds = 60},
    {"client_large_values_byte_for_byte", .run_on = s_case_large_values_byte_for_byte,
     .seconds = 90},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

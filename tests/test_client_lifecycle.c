/*  test_client_lifecycle.c - the client library (dpool.h's pool, result and
    iterator calls): a pool's life (close, join, terminate, reconnect, embedded pools,
   configuration), against real processes: a dpool-broker and dpool-worker processes reached over
   tcp or ipc, or embedded pools that fork their own workers. `test_client_lifecycle --list` names
   the cases; `test_client_lifecycle CASE [tcp|ipc]` runs one.

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
    close, join, terminate.
*/
static void
s_case_close_join_terminate (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 1);
    dpool_pool_t *pool = dp_test_env_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);

    /*  join needs close first; after close, submitted tasks run to the end. */
    CHECK_EQ_INT (dpool_pool_join (pool, 0), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ESTATE);
    msgpack_pack_double (&buf.pk, 0.2);
    dpool_result_t *a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *b = dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (a && b);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK (!dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    CHECK (dpool_result_successful (a));
    CHECK (dpool_result_successful (b));
    CHECK_EQ_INT (dpool_pool_join (pool, 0), 0);
    dpool_pool_destroy (&pool);
    dpool_result_destroy (&a);
    dpool_result_destroy (&b);

    /*  join times out while tasks run; terminate cancels every unfinished
        one, running or queued. */
    pool = dp_test_env_connect (&env, 1);
    dp_test_buf_clear (&buf);
    msgpack_pack_double (&buf.pk, 30.0);
    a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    b = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    msgpack_pack_double (&buf.pk, 30.0);
    dpool_result_t *m =
        dpool_pool_map_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (a && b && m);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK_EQ_INT (dpool_pool_join (pool, 200), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    dp_test_check_failed (a, DPOOL_ECANCELLED);
    dp_test_check_failed (b, DPOOL_ECANCELLED);
    dp_test_check_failed (m, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_pool_join (pool, 0), 0);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    CHECK (!dpool_pool_apply_async (pool, "echo", "\x01", 1, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    dpool_pool_destroy (&pool);
    dpool_result_destroy (&a);
    dpool_result_destroy (&b);
    dpool_result_destroy (&m);

    /*  terminate without close, then destroy. */
    pool = dp_test_env_connect (&env, 0);
    dp_test_buf_clear (&buf);
    msgpack_pack_double (&buf.pk, 30.0);
    a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (a);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    dp_test_check_failed (a, DPOOL_ECANCELLED);
    dpool_pool_destroy (&pool);
    dpool_result_destroy (&a);

    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    After close every way to submit fails with DPOOL_ECLOSED; what was
    submitted before still finishes.
*/
static void
s_case_submit_after_close_fails (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 1);
    dpool_pool_t *pool = dp_test_env_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_array (&buf.pk, 1);
    msgpack_pack_int (&buf.pk, 5);

    dpool_result_t *before =
        dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (before);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    const void *data = buf.sbuf.data;
    size_t size = buf.sbuf.size;
    CHECK (!dpool_pool_apply_async (pool, "echo", data, size, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_apply (pool, "echo", data, size, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_map_async (pool, "echo", data, size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_map (pool, "echo", data, size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_starmap_async (pool, "echo", data, size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_starmap (pool, "echo", data, size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_imap (pool, "echo", data, size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_imap_unordered (pool, "echo", data, size, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    CHECK (!dpool_pool_map_async (pool, "echo", NULL, 0, 0, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);

    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (before, 20000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY && dp_test_is_int (&value.via.array.ptr[0], 5));
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    dpool_result_destroy (&before);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    The broker dies and comes back on the same endpoints: the client says
    HELLO again and resubmits what has no result, under the same identity.
*/
static void
s_case_reconnect_resubmits_after_broker_restart (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    dpool_result_t *before = dpool_pool_apply (pool, "echo", "\x01", 1, NULL);
    CHECK (dpool_result_successful (before));
    dpool_result_destroy (&before);

    msgpack_pack_double (&buf.pk, 1.0);
    dpool_result_t *running =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (running);
    CHECK (dp_test_untrack_stop (env.broker.pid, SIGKILL) != -1);
    dp_test_pack_range (&buf, 0, 50);
    dpool_result_t *during =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 5, NULL);
    CHECK (during);
    CHECK_EQ_INT (dpool_result_wait (during, 300), -1);
    dp_test_env_restart_broker (&env, "restarted");

    CHECK_EQ_INT (dpool_result_get (running, 30000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_FLOAT64 && value.via.f64 == 1.0);
    dp_test_check_range (during, 50);
    dpool_result_destroy (&running);
    dpool_result_destroy (&during);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Embedded pools: Pool(procs) inside this program, running the functions
    it registered; a second pool later, and two at once.
*/
static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "square wants a uint, got type %d", (int)args->type);
    return msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
}

/*  True when the directory has no entry whose name starts with prefix. */
static bool
s_dir_has_no (const char *dir, const char *prefix)
{
    DIR *handle = opendir (dir);
    CHECK (handle);
    bool none = true;
    struct dirent *entry;
    while ((entry = readdir (handle)))
        if (strncmp (entry->d_name, prefix, strlen (prefix)) == 0)
            none = false;
    closedir (handle);
    return none;
}

static void
s_check_square (dpool_pool_t *pool, uint64_t n)
{
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_uint64 (&buf.pk, n);
    dpool_result_t *result = dpool_pool_apply (pool, "square", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK (dp_test_is_int (&value, (int64_t)(n * n)));
    dpool_result_destroy (&result);
    dp_test_buf_fini (&buf);
}

/*  Maps over chunks where scalars, failures and other values mix: each
    item keeps its own outcome, in input order, whatever the others were. */
static void
s_check_mixed_chunks (dpool_pool_t *pool, dp_test_buf_t *buf)
{
    msgpack_object value;
    dpool_result_t *result;
    dp_test_buf_clear (buf);
    for (int i = 0; i < 12; i++) {
        if (i % 4 == 1)
            dp_test_pack_str (&buf->pk, "bad");
        else
            msgpack_pack_int (&buf->pk, i);
    }
    result = dpool_pool_map (pool, "square", buf->sbuf.data, buf->sbuf.size, 12, NULL);
    dp_test_check_failed (result, DPOOL_EFAILED);
    CHECK (strstr (dpool_result_error (result), "square wants a uint"));
    for (int i = 0; i < 12; i++) {
        msgpack_object item;
        if (i % 4 == 1) {
            CHECK_EQ_INT (dpool_result_item (result, (size_t)i, &item), -1);
            CHECK (strstr (dpool_result_item_error (result, (size_t)i), "square wants a uint"));
        } else {
            CHECK_EQ_INT (dpool_result_item (result, (size_t)i, &item), 0);
            CHECK (dp_test_is_int (&item, i * i));
            CHECK (dpool_result_item_error (result, (size_t)i) == NULL);
        }
    }
    dpool_result_destroy (&result);
    dp_test_buf_clear (buf);
    for (int i = 0; i < 12; i++) {
        if (i % 3 == 0)
            dp_test_pack_str (&buf->pk, "s");
        else
            msgpack_pack_int (&buf->pk, i);
    }
    result = dpool_pool_map (pool, "echo", buf->sbuf.data, buf->sbuf.size, 5, NULL);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK_EQ_INT (value.via.array.size, 12);
    for (int i = 0; i < 12; i++)
        CHECK (i % 3 == 0 ? dp_test_is_str (&value.via.array.ptr[i], "s")
                          : dp_test_is_int (&value.via.array.ptr[i], i));
    dpool_result_destroy (&result);
}

/*  A second embedded pool in the same program, then two at once; every
    pool's directory is gone after. */
static void
s_check_more_pools (void)
{
    dpool_pool_t *pool = dpool_pool_new (1);
    CHECK (pool);
    s_check_square (pool, 12);
    dpool_pool_destroy (&pool);
    dpool_pool_t *one = dpool_pool_new (1);
    dpool_pool_t *two = dpool_pool_new (1);
    CHECK (one && two);
    s_check_square (one, 3);
    s_check_square (two, 4);
    dpool_pool_destroy (&two);
    s_check_square (one, 5);
    dpool_pool_destroy (&one);
    CHECK (s_dir_has_no (dp_test_dir (), "dpool-"));
}

static void
s_case_embedded_pool_apply_map (void)
{
    /*  The pool's private directory goes in the test's, to see it go. */
    setenv ("TMPDIR", dp_test_dir (), 1);
    CHECK_EQ_INT (dpool_register ("square", s_square, NULL), 0);
    dpool_pool_t *pool = dpool_pool_new (2);
    CHECK (pool);
    CHECK (!s_dir_has_no (dp_test_dir (), "dpool-"));
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    /*  The workers are other processes, forked from this program. */
    msgpack_pack_nil (&buf.pk);
    dpool_result_t *result = dpool_pool_apply (pool, "pid", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    const msgpack_object *pid = dp_test_map_get (&value, "pid");
    CHECK (pid && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    CHECK (pid->via.u64 != (uint64_t)getpid ());
    dpool_result_destroy (&result);

    /*  A function this program registered, over a map. */
    dp_test_pack_range (&buf, 0, 50);
    result = dpool_pool_map (pool, "square", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK_EQ_INT (value.via.array.size, 50);
    for (int i = 0; i < 50; i++)
        CHECK (dp_test_is_int (&value.via.array.ptr[i], i * i));
    dpool_result_destroy (&result);

    s_check_mixed_chunks (pool, &buf);
    dp_test_pack_range (&buf, 0, 50);

    dpool_iter_t *iter = dpool_pool_imap (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    for (int i = 0; i < 50; i++) {
        dpool_result_t *item = dpool_iter_next (iter, 20000);
        CHECK (item && dpool_result_index (item) == (size_t)i);
        CHECK_EQ_INT (dpool_result_get (item, 0, &value), 0);
        CHECK (dp_test_is_int (&value, i));
        dpool_result_destroy (&item);
    }
    dpool_iter_destroy (&iter);

    dp_test_buf_clear (&buf);
    dp_test_pack_str (&buf.pk, "bad");
    result = dpool_pool_apply (pool, "square", buf.sbuf.data, buf.sbuf.size, NULL);
    dp_test_check_failed (result, DPOOL_EFAILED);
    CHECK (strstr (dpool_result_error (result), "square wants a uint"));
    dpool_result_destroy (&result);

    dp_test_wait_workers (pool, 2, 15000);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    dpool_pool_destroy (&pool);
    CHECK (s_dir_has_no (dp_test_dir (), "dpool-"));

    s_check_more_pools ();

    /*  Every process the pools forked is gone and reaped. */
    CHECK_EQ_INT (waitpid (-1, NULL, WNOHANG), -1);
    CHECK_EQ_INT (errno, ECHILD);
    dp_test_buf_fini (&buf);
}

static bool
s_process_gone (void *arg)
{
    return kill ((pid_t)(intptr_t)arg, 0) == -1 && errno == ESRCH;
}

static void
s_case_embedded_terminate_stops_workers (void)
{
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = NULL;
    config.procs = 2;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_nil (&buf.pk);
    msgpack_object value;
    dpool_result_t *result = dpool_pool_apply (pool, "pid", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    pid_t worker = (pid_t)dp_test_map_get (&value, "pid")->via.u64;
    dpool_result_destroy (&result);

    dp_test_buf_clear (&buf);
    msgpack_pack_double (&buf.pk, 60.0);
    dpool_result_t *a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *b = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *c = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (a && b && c);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    dp_test_check_failed (a, DPOOL_ECANCELLED);
    dp_test_check_failed (b, DPOOL_ECANCELLED);
    dp_test_check_failed (c, DPOOL_ECANCELLED);
    CHECK (dp_test_wait_until (s_process_gone, (void *)(intptr_t)worker, 10000));
    CHECK_EQ_INT (waitpid (-1, NULL, WNOHANG), -1);
    CHECK_EQ_INT (errno, ECHILD);
    dpool_pool_destroy (&pool);
    dpool_result_destroy (&a);
    dpool_result_destroy (&b);
    dpool_result_destroy (&c);
    dp_test_buf_fini (&buf);
}

/*  An embedded pool bound to one more endpoint also serves outside workers;
    one whose endpoint cannot be bound fails cleanly. */
static void
s_case_embedded_pool_accepts_outside_workers (void)
{
    setenv ("TMPDIR", dp_test_dir (), 1);
    char endpoint[1024];
    snprintf (endpoint, sizeof endpoint, "%s", dp_test_ipc ("outside"));
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = NULL;
    config.procs = 1;
    config.bind = endpoint;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    pid_t outside = dp_test_track (dp_test_workers_start (endpoint, 2, NULL));
    dp_test_wait_workers (pool, 3, 15000);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dp_test_pack_range (&buf, 0, 30);
    dpool_result_t *result = dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    dp_test_check_range (result, 30);
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    dp_test_untrack_stop (outside, SIGTERM);

    /*  An endpoint that cannot be bound: no pool, nothing left behind. */
    config.bind = "nonsense://nowhere";
    CHECK (!dpool_pool_new_config (&config));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (s_dir_has_no (dp_test_dir (), "dpool-"));
    CHECK_EQ_INT (waitpid (-1, NULL, WNOHANG), -1);
    CHECK_EQ_INT (errno, ECHILD);
    /*  bind belongs to embedded pools only. */
    config.connect = "tcp://127.0.0.1:1";
    config.bind = endpoint;
    CHECK (!dpool_pool_new_config (&config));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    dp_test_buf_fini (&buf);
}

/*  ---------------------------------------------------------------------------
    Configuration from the environment, and refused configurations.
*/
static void
s_case_config_from_environment (void)
{
    dpool_config_t config;
    setenv ("DPOOL_CONNECT", "tcp://head:5555", 1);
    setenv ("DPOOL_PROCS", "3", 1);
    setenv ("DPOOL_TIMEOUT_MS", "1500", 1);
    setenv ("DPOOL_RETRIES", "-1", 1);
    setenv ("DPOOL_MAX_OUTSTANDING", "7", 1);
    setenv ("DPOOL_MAX_OUTSTANDING_BYTES", "1048576", 1);
    dpool_config_init (&config);
    CHECK_EQ_STR (config.connect, "tcp://head:5555");
    CHECK_EQ_INT (config.procs, 3);
    CHECK_EQ_INT (config.timeout_ms, 1500);
    CHECK_EQ_INT (config.retries, -1);
    CHECK_EQ_INT (config.max_outstanding, 7);
    CHECK (config.max_outstanding_bytes == 1048576);
    CHECK (config.bind == NULL && config.name == NULL);

    setenv ("DPOOL_PROCS", "many", 1);
    setenv ("DPOOL_RETRIES", "5000", 1);
    unsetenv ("DPOOL_CONNECT");
    dpool_config_init (&config);
    CHECK (config.connect == NULL);
    CHECK_EQ_INT (config.procs, 0);
    CHECK_EQ_INT (config.retries, 0);
    unsetenv ("DPOOL_PROCS");
    unsetenv ("DPOOL_TIMEOUT_MS");
    unsetenv ("DPOOL_RETRIES");
    unsetenv ("DPOOL_MAX_OUTSTANDING");
    unsetenv ("DPOOL_MAX_OUTSTANDING_BYTES");

    CHECK (!dpool_pool_connect ("nonsense"));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_connect ("tcp://"));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (!dpool_pool_connect (NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    dpool_config_init (&config);
    config.connect = "tcp://127.0.0.1:1";
    config.retries = 1001;
    CHECK (!dpool_pool_new_config (&config));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    config.retries = 0;
    config.procs = -1;
    CHECK (!dpool_pool_new_config (&config));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);

    /*  A valid but unreachable endpoint is not a failure. */
    config.procs = 0;
    config.name = "config-test";
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    CHECK_EQ_INT (dpool_pool_workers (pool), 0);
    dpool_pool_destroy (&pool);
}

/*  ---------------------------------------------------------------------------
    A worker idle past the busy expiry (the broker heartbeats idle workers
    DP_IDLE_FACTOR times as slowly) that then gets a job on its lane has
    heard from the broker all along: it keeps its registration. Before the
    fix its I/O thread measured the silence of its own connection only,
    and registered again as the job began (its "done" count started over).
*/
static void
s_case_idle_worker_keeps_registration (const char *transport)
{
    setenv ("DPOOL_HEARTBEAT_MS", "200", 1);
    setenv ("DPOOL_EXPIRY_MS", "600", 1);
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 1);
    dpool_pool_t *pool = dp_test_env_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    enum { ROUNDS = 5 };
    for (int round = 0; round < ROUNDS; round++) {
        /*  Idle longer than the busy expiry, then a job longer than it. */
        dp_test_sleep_ms (1000);
        dp_test_buf_clear (&buf);
        msgpack_pack_double (&buf.pk, 0.7);
        dpool_result_t *result =
            dpool_pool_apply (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
        CHECK (result && dpool_result_successful (result));
        dpool_result_destroy (&result);
    }
    msgpack_unpacked status = dp_test_status (pool);
    const msgpack_object *workers = dp_test_map_get (&status.data, "workers");
    CHECK (workers && workers->type == MSGPACK_OBJECT_ARRAY && workers->via.array.size == 1);
    const msgpack_object *done = dp_test_map_get (&workers->via.array.ptr[0], "done");
    if (!done || done->type != MSGPACK_OBJECT_POSITIVE_INTEGER || done->via.u64 != ROUNDS)
        dp_test_fail (__FILE__, __LINE__, "the worker's registration counts %lld of %d tasks",
                      done ? (long long)done->via.u64 : -1LL, ROUNDS);
    msgpack_unpacked_destroy (&status);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

static const dp_test_case_t s_cases[] = {
    {"client_close_join_terminate", .run_on = s_case_close_join_terminate, .seconds = 60},
    {"client_submit_after_close_fails", .run_on = s_case_submit_after_close_fails, .seconds = 60},
    {"client_reconnect_resubmits_after_broker_restart",
     .run_on = s_case_reconnect_resubmits_after_broker_restart, .seconds = 90},
    {"client_embedded_pool_apply_map", s_case_embedded_pool_apply_map, .seconds = 90},
    {"client_embedded_terminate_stops_workers", s_case_embedded_terminate_stops_workers,
     .seconds = 60},
    {"client_embedded_pool_accepts_outside_workers", s_case_embedded_pool_accepts_outside_workers,
     .seconds = 60},
    {"client_config_from_environment", s_case_config_from_environment, .seconds = 30},
    {"client_idle_worker_keeps_registration", .run_on = s_case_idle_worker_keeps_registration,
     .seconds = 60},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

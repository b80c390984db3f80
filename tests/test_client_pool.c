/*  test_client_pool.c - the client library (dpool.h's pool, result and
    iterator calls) against real processes: a dpool-broker and dpool-worker
    processes reached over tcp or ipc, and embedded pools that fork their
    own workers. One program, one case per run:

        test_client_pool CASE [tcp|ipc]

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

static void
t_pack_str (dp_test_buf_t *self, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (&self->pk, len);
    msgpack_pack_str_body (&self->pk, text, len);
}

static void
t_pack_double (dp_test_buf_t *self, double value)
{
    msgpack_pack_double (&self->pk, value);
}

/*  Packs the array [a, b] (a task's one argument list). */
static void
t_pack_pair (dp_test_buf_t *self, int64_t a, int64_t b)
{
    msgpack_pack_array (&self->pk, 2);
    msgpack_pack_int64 (&self->pk, a);
    msgpack_pack_int64 (&self->pk, b);
}

static bool
t_is_int (msgpack_object object, int64_t value)
{
    if (object.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return value >= 0 && object.via.u64 == (uint64_t)value;
    if (object.type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return object.via.i64 == value;
    return false;
}

/*  True if object is the array [a, b]. */
static bool
t_is_pair (msgpack_object object, int64_t a, int64_t b)
{
    return object.type == MSGPACK_OBJECT_ARRAY && object.via.array.size == 2 &&
           t_is_int (object.via.array.ptr[0], a) && t_is_int (object.via.array.ptr[1], b);
}

static bool
t_is_str (msgpack_object object, const char *text)
{
    size_t len = strlen (text);
    return object.type == MSGPACK_OBJECT_STR && object.via.str.size == len &&
           memcmp (object.via.str.ptr, text, len) == 0;
}

/*  The value of key in a map object, or NULL. */
static const msgpack_object *
t_map_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (t_is_str (map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

/*  Processes a test started, killed at exit even when the test fails with
    a pool still running (CZMQ's own exit handler may then abort before
    dp_testutil's can kill them, which would leave them to talk to the
    brokers of other tests). */
#define T_MAX_TRACKED 16
static pid_t s_tracked[T_MAX_TRACKED];
static pid_t s_main_pid;

static void
t_at_exit (void)
{
    if (getpid () != s_main_pid)
        return;
    for (int i = 0; i < T_MAX_TRACKED; i++)
        if (s_tracked[i] > 0) {
            kill (-s_tracked[i], SIGKILL);
            kill (s_tracked[i], SIGKILL);
            s_tracked[i] = 0;
        }
}

/*  Tracks pid (if > 0); the first call also makes CZMQ's context, so that
    this test's exit handler runs before CZMQ's. */
static pid_t
t_track (pid_t pid)
{
    if (!s_main_pid) {
        s_main_pid = getpid ();
        zsys_handler_set (NULL);
        zsys_init ();
        atexit (t_at_exit);
    }
    if (pid <= 0)
        return pid;
    for (int i = 0; i < T_MAX_TRACKED; i++)
        if (s_tracked[i] == 0) {
            s_tracked[i] = pid;
            return pid;
        }
    dp_test_fail (__FILE__, __LINE__, "too many processes");
}

/*  Stops a tracked process by pid (see dp_test_stop). */
static int
t_stop (pid_t pid, int sig)
{
    for (int i = 0; i < T_MAX_TRACKED; i++)
        if (s_tracked[i] == pid)
            s_tracked[i] = 0;
    return dp_test_stop (pid, sig, 5000);
}

/*  A broker, workers, and the endpoint of the transport a test uses. */
typedef struct {
    dp_test_broker_t broker;
    pid_t workers;
    const char *endpoint;
} t_env_t;

/*  Tests bind their brokers to a port the kernel picks (tcp port 0), not to
    one of the ports "tcp://host:*" hands out in order from 49152: the next
    broker to start (of this suite or of any other running on the machine)
    takes such a port as soon as it is free, and the workers and clients
    of a broker that died would then talk to it. */
static bool
t_has_endpoints (void *arg)
{
    char *text = dp_test_read_file ((const char *)arg);
    bool ready = text && strstr (text, "tcp://") && strstr (text, "ipc://");
    free (text);
    return ready;
}

/*  Starts a dpool-broker bound to tcp and ipc, writing what it bound to
    the file tag.endpoints, and waits until it has bound both. */
static pid_t
t_broker_spawn (const char *tcp, const char *ipc, const char *tag)
{
    char file[1024];
    snprintf (file, sizeof file, "%s.endpoints", dp_test_path (tag));
    const char *argv[] = {dp_test_broker_bin, "--bind", tcp, "--bind", ipc,
                          "--endpoint-file",  file,     NULL};
    pid_t pid = t_track (dp_test_spawn (tag, (char *const *)argv));
    if (!dp_test_wait_until (t_has_endpoints, file, 10000))
        dp_test_fail (__FILE__, __LINE__, "broker %s did not bind", tag);
    return pid;
}

/*  Starts a broker and, if procs > 0, a dpool-worker with procs processes,
    reached over transport ("tcp" or "ipc"). */
static void
t_env_start (t_env_t *env, const char *transport, int procs)
{
    memset (env, 0, sizeof *env);
    static int serial;
    char tag[32];
    snprintf (tag, sizeof tag, "broker%d", ++serial);
    t_track (0);
    snprintf (env->broker.ipc, sizeof env->broker.ipc, "%s", dp_test_ipc (tag));
    env->broker.pid = t_broker_spawn ("tcp://127.0.0.1:0", env->broker.ipc, tag);
    char file[1024];
    snprintf (file, sizeof file, "%s.endpoints", dp_test_path (tag));
    char *text = dp_test_read_file (file);
    CHECK (text);
    char *tcp = strstr (text, "tcp://");
    snprintf (env->broker.tcp, sizeof env->broker.tcp, "%.*s", (int)strcspn (tcp, "\r\n"), tcp);
    free (text);
    if (strcmp (transport, "tcp") == 0)
        env->endpoint = env->broker.tcp;
    else if (strcmp (transport, "ipc") == 0)
        env->endpoint = env->broker.ipc;
    else
        dp_test_fail (__FILE__, __LINE__, "unknown transport %s", transport);
    if (procs > 0)
        env->workers = t_track (dp_test_workers_start (env->endpoint, procs, NULL));
}

/*  Stops what t_env_start started, by pid. */
static void
t_env_stop (t_env_t *env)
{
    if (env->workers > 0)
        t_stop (env->workers, SIGTERM);
    t_stop (env->broker.pid, SIGTERM);
}

/*  Connects a pool to the environment's broker and waits for its workers. */
static dpool_pool_t *
t_connect (t_env_t *env, int workers)
{
    dpool_pool_t *pool = dpool_pool_connect (env->endpoint);
    CHECK (pool);
    if (workers > 0)
        dp_test_wait_workers (pool, workers, 15000);
    return pool;
}

/*  Packs the ints from .. to - 1 back to back. */
static void
t_pack_range (dp_test_buf_t *buf, int from, int to)
{
    dp_test_buf_clear (buf);
    for (int i = from; i < to; i++)
        msgpack_pack_int (&buf->pk, i);
}

/*  Checks that a finished handle failed with code. */
static void
t_check_failed (dpool_result_t *result, int code)
{
    msgpack_object value;
    CHECK (dpool_result_ready (result));
    CHECK (!dpool_result_successful (result));
    CHECK_EQ_INT (dpool_result_code (result), code);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), -1);
    CHECK_EQ_INT (dpool_errno (), code);
    CHECK (dpool_result_error (result) != NULL);
}

/*  Applies fn to what buf holds, with call, and checks that the handle
    comes back finished and failed with code. */
static void
t_apply_fails (dpool_pool_t *pool, const char *fn, const dp_test_buf_t *buf,
               const dpool_call_t *call, int code)
{
    dpool_result_t *result = dpool_pool_apply (pool, fn, buf->sbuf.data, buf->sbuf.size, call);
    CHECK (result);
    t_check_failed (result, code);
    dpool_result_destroy (&result);
}

/*  ---------------------------------------------------------------------------
    apply_async, apply, get with a timeout, the handle's properties.
*/
static void
test_apply_async (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    msgpack_pack_int (&buf.pk, 42);
    dpool_result_t *result =
        dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 10000, &value), 0);
    CHECK (t_is_int (value, 42));
    CHECK (dpool_result_ready (result));
    CHECK (dpool_result_successful (result));
    CHECK_EQ_INT (dpool_result_code (result), DPOOL_OK);
    CHECK (dpool_result_error (result) == NULL);
    CHECK_EQ_INT (dpool_result_count (result), 1);
    CHECK_EQ_INT (dpool_result_index (result), 0);
    CHECK_EQ_INT (dpool_result_item (result, 0, &value), 0);
    CHECK (t_is_int (value, 42));
    CHECK_EQ_INT (dpool_result_item (result, 1, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (dpool_result_item_error (result, 0) == NULL);
    dpool_result_destroy (&result);
    CHECK (result == NULL);
    dpool_result_destroy (&result);

    /*  apply: a nested value comes back whole. */
    dp_test_buf_clear (&buf);
    msgpack_pack_map (&buf.pk, 2);
    t_pack_str (&buf, "name");
    t_pack_str (&buf, "dpool");
    t_pack_str (&buf, "list");
    msgpack_pack_array (&buf.pk, 3);
    for (int i = 1; i <= 3; i++)
        msgpack_pack_int (&buf.pk, i);
    result = dpool_pool_apply (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK (dpool_result_ready (result));
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    const msgpack_object *name = t_map_get (&value, "name");
    const msgpack_object *list = t_map_get (&value, "list");
    CHECK (name && t_is_str (*name, "dpool"));
    CHECK (list && list->type == MSGPACK_OBJECT_ARRAY && list->via.array.size == 3);
    CHECK (t_is_int (list->via.array.ptr[2], 3));
    dpool_result_destroy (&result);

    /*  get times out while the task runs, then succeeds. */
    dp_test_buf_clear (&buf);
    t_pack_double (&buf, 0.5);
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
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    map, map_async, starmap: values in input order, whatever the chunks.
*/
static void
t_check_range (dpool_result_t *result, int count)
{
    msgpack_object value;
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 20000, &value), 0);
    CHECK_EQ_INT (dpool_result_count (result), count);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_INT (value.via.array.size, count);
    for (int i = 0; i < count; i++) {
        CHECK (t_is_int (value.via.array.ptr[i], i));
        msgpack_object item;
        CHECK_EQ_INT (dpool_result_item (result, (size_t)i, &item), 0);
        CHECK (t_is_int (item, i));
        CHECK (dpool_result_item_error (result, (size_t)i) == NULL);
    }
}

static void
test_map_results_in_input_order (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 3);
    dpool_pool_t *pool = t_connect (&env, 3);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    t_pack_range (&buf, 0, 100);
    size_t chunksizes[] = {0, 1, 7, 100, 1000};
    for (size_t c = 0; c < sizeof chunksizes / sizeof chunksizes[0]; c++) {
        dpool_result_t *result =
            dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, chunksizes[c], NULL);
        CHECK (dpool_result_ready (result));
        t_check_range (result, 100);
        dpool_result_destroy (&result);
    }
    dpool_result_t *result =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    t_check_range (result, 100);
    dpool_result_destroy (&result);

    /*  A bigger map, in Pool's chunks. */
    t_pack_range (&buf, 0, 5000);
    result = dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    t_check_range (result, 5000);
    dpool_result_destroy (&result);

    /*  starmap: each object is the argument list. */
    dp_test_buf_clear (&buf);
    for (int i = 0; i < 20; i++) {
        msgpack_pack_array (&buf.pk, 2);
        msgpack_pack_int (&buf.pk, i);
        t_pack_str (&buf, "x");
    }
    result = dpool_pool_starmap (pool, "echo", buf.sbuf.data, buf.sbuf.size, 3, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK_EQ_INT (value.via.array.size, 20);
    for (int i = 0; i < 20; i++) {
        msgpack_object call = value.via.array.ptr[i];
        CHECK (call.type == MSGPACK_OBJECT_ARRAY && call.via.array.size == 2);
        CHECK (t_is_int (call.via.array.ptr[0], i));
        CHECK (t_is_str (call.via.array.ptr[1], "x"));
    }
    dpool_result_destroy (&result);
    result = dpool_pool_starmap_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_wait (result, 20000), 0);
    CHECK (dpool_result_successful (result));
    dpool_result_destroy (&result);

    /*  starmap refuses an object that is not an array; map refuses bytes
        that are not msgpack. */
    t_pack_range (&buf, 0, 3);
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
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    imap hands items out in input order, imap_unordered as they finish:
    sleeps of decreasing length on as many workers finish in reverse.
*/
static void
t_check_iter (dpool_iter_t *iter, const double *sleeps, const int *order, int count)
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
test_imap_vs_imap_unordered_order (const char *transport)
{
    enum { N = 4 };
    static const double sleeps[N] = {2.0, 1.5, 1.0, 0.5};
    static const int in_order[N] = {0, 1, 2, 3};
    static const int finish_order[N] = {3, 2, 1, 0};
    t_env_t env;
    t_env_start (&env, transport, N);
    dpool_pool_t *pool = t_connect (&env, N);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < N; i++)
        t_pack_double (&buf, sleeps[i]);

    dpool_iter_t *iter = dpool_pool_imap (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (iter);
    CHECK (!dpool_iter_next (iter, 0));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    t_check_iter (iter, sleeps, in_order, N);
    dpool_iter_destroy (&iter);
    CHECK (iter == NULL);

    iter = dpool_pool_imap_unordered (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    t_check_iter (iter, sleeps, finish_order, N);
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
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    A task that fails carries the worker's message to the caller.
*/
static void
test_task_failure_carries_worker_message (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    t_pack_str (&buf, "disk full on /data (7)");
    dpool_result_t *result = dpool_pool_apply (pool, "fail", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    t_check_failed (result, DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_error (result), "disk full on /data (7)");
    CHECK_EQ_INT (dpool_result_item (result, 0, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_item_error (result, 0), "disk full on /data (7)");
    dpool_result_destroy (&result);

    /*  In a map every item keeps its own message; the handle reports the
        first in input order. */
    dp_test_buf_clear (&buf);
    t_pack_str (&buf, "first");
    t_pack_str (&buf, "second");
    t_pack_str (&buf, "third");
    result = dpool_pool_map (pool, "fail", buf.sbuf.data, buf.sbuf.size, 2, NULL);
    CHECK (result);
    t_check_failed (result, DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_error (result), "first");
    CHECK_EQ_STR (dpool_result_item_error (result, 1), "second");
    CHECK_EQ_STR (dpool_result_item_error (result, 2), "third");
    CHECK_EQ_INT (dpool_result_item (result, 2, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EFAILED);
    CHECK (dpool_result_item_error (result, 3) == NULL);
    dpool_result_destroy (&result);

    /*  imap items fail one by one. */
    dpool_iter_t *iter = dpool_pool_imap (pool, "fail", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (iter);
    dpool_result_t *item = dpool_iter_next (iter, 20000);
    CHECK (item);
    t_check_failed (item, DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_error (item), "first");
    dpool_result_destroy (&item);
    dpool_iter_destroy (&iter);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Tasks end in named states: past their timeout, lost with their worker,
    a function nobody offers.
*/
static void
test_task_failure_codes (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);

    t_pack_double (&buf, 30.0);
    dpool_call_t call = {.timeout_ms = 300};
    dpool_result_t *late =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, &call);
    dp_test_buf_clear (&buf);
    msgpack_pack_nil (&buf.pk);
    call = (dpool_call_t){.retries = -1};
    dpool_result_t *lost =
        dpool_pool_apply_async (pool, "crash", buf.sbuf.data, buf.sbuf.size, &call);
    dpool_result_t *nofunc =
        dpool_pool_apply_async (pool, "no_such_function", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (late && lost && nofunc);
    CHECK_EQ_INT (dpool_result_wait (late, 20000), 0);
    t_check_failed (late, DPOOL_EDEADLINE);
    CHECK_EQ_INT (dpool_result_wait (lost, 20000), 0);
    t_check_failed (lost, DPOOL_ELOST);
    CHECK_EQ_INT (dpool_result_wait (nofunc, 20000), 0);
    t_check_failed (nofunc, DPOOL_ENOFUNC);
    dpool_result_destroy (&late);
    dpool_result_destroy (&lost);
    dpool_result_destroy (&nofunc);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    close, join, terminate.
*/
static void
test_close_join_terminate (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 1);
    dpool_pool_t *pool = t_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);

    /*  join needs close first; after close, submitted tasks run to the end. */
    CHECK_EQ_INT (dpool_pool_join (pool, 0), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ESTATE);
    t_pack_double (&buf, 0.2);
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
    pool = t_connect (&env, 1);
    dp_test_buf_clear (&buf);
    t_pack_double (&buf, 30.0);
    a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    b = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    t_pack_double (&buf, 30.0);
    dpool_result_t *m =
        dpool_pool_map_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (a && b && m);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK_EQ_INT (dpool_pool_join (pool, 200), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    t_check_failed (a, DPOOL_ECANCELLED);
    t_check_failed (b, DPOOL_ECANCELLED);
    t_check_failed (m, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_pool_join (pool, 0), 0);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    CHECK (!dpool_pool_apply_async (pool, "echo", "\x01", 1, NULL));
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    dpool_pool_destroy (&pool);
    dpool_result_destroy (&a);
    dpool_result_destroy (&b);
    dpool_result_destroy (&m);

    /*  terminate without close, then destroy. */
    pool = t_connect (&env, 0);
    dp_test_buf_clear (&buf);
    t_pack_double (&buf, 30.0);
    a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (a);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    t_check_failed (a, DPOOL_ECANCELLED);
    dpool_pool_destroy (&pool);
    dpool_result_destroy (&a);

    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    After close every way to submit fails with DPOOL_ECLOSED; what was
    submitted before still finishes.
*/
static void
test_submit_after_close_fails (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 1);
    dpool_pool_t *pool = t_connect (&env, 1);
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
    CHECK (value.type == MSGPACK_OBJECT_ARRAY && t_is_int (value.via.array.ptr[0], 5));
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    dpool_result_destroy (&before);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Two clients on one broker each get their own results, and only them.
*/
static void
test_two_clients_get_only_their_own_results (const char *transport)
{
    enum { N = 200 };
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pools[2] = {t_connect (&env, 2), t_connect (&env, 2)};
    static const char *tags[2] = {"A", "B"};
    dpool_result_t *results[2][N];
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < N; i++)
        for (int p = 0; p < 2; p++) {
            dp_test_buf_clear (&buf);
            msgpack_pack_array (&buf.pk, 2);
            t_pack_str (&buf, tags[p]);
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
            CHECK (t_is_str (value.via.array.ptr[0], tags[p]));
            CHECK (t_is_int (value.via.array.ptr[1], i));
            dpool_result_destroy (&results[p][i]);
        }
    /*  Maps too, at the same time. */
    t_pack_range (&buf, 0, 300);
    dpool_result_t *maps[2];
    for (int p = 0; p < 2; p++)
        maps[p] = dpool_pool_map_async (pools[p], "echo", buf.sbuf.data, buf.sbuf.size, 7, NULL);
    for (int p = 0; p < 2; p++) {
        t_check_range (maps[p], 300);
        dpool_result_destroy (&maps[p]);
    }
    for (int p = 0; p < 2; p++)
        dpool_pool_destroy (&pools[p]);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Callbacks: one per handle (per map, not per item), on success or on
    failure, able to read the handle and to submit more tasks.
*/
typedef struct {
    atomic_int ok;
    atomic_int failed;
    atomic_int readable;
    dpool_pool_t *pool;
    _Atomic (dpool_result_t *) chained;
} t_counts_t;

static void
t_on_success (dpool_result_t *result, void *arg)
{
    t_counts_t *counts = (t_counts_t *)arg;
    msgpack_object value;
    if (dpool_result_ready (result) && dpool_result_get (result, 0, &value) == 0)
        atomic_fetch_add (&counts->readable, 1);
    atomic_fetch_add (&counts->ok, 1);
}

static void
t_on_failure (dpool_result_t *result, void *arg)
{
    t_counts_t *counts = (t_counts_t *)arg;
    if (dpool_result_ready (result) && dpool_result_error (result))
        atomic_fetch_add (&counts->readable, 1);
    atomic_fetch_add (&counts->failed, 1);
}

/*  A callback that submits another task from the pool's own thread. */
static void
t_on_success_chain (dpool_result_t *result, void *arg)
{
    (void)result;
    t_counts_t *counts = (t_counts_t *)arg;
    dpool_result_t *next = dpool_pool_apply_async (counts->pool, "echo", "\x07", 1, NULL);
    atomic_store (&counts->chained, next);
}

static bool
t_chained (void *arg)
{
    return atomic_load (&((t_counts_t *)arg)->chained) != NULL;
}

static void
test_callbacks_run_once (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_counts_t counts;
    memset (&counts, 0, sizeof counts);
    counts.pool = pool;
    dpool_call_t call = {.callback = t_on_success, .error_callback = t_on_failure, .arg = &counts};

    /*  A callback may submit: it must not wait for its own thread. */
    dpool_call_t chain = {.callback = t_on_success_chain, .arg = &counts};
    dpool_result_t *first = dpool_pool_apply_async (pool, "echo", "\x01", 1, &chain);
    CHECK (first);
    CHECK (dp_test_wait_until (t_chained, &counts, 20000));
    dpool_result_t *chained = atomic_load (&counts.chained);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (chained, 20000, &value), 0);
    CHECK (t_is_int (value, 7));
    dpool_result_destroy (&chained);
    dpool_result_destroy (&first);

    /*  A handle destroyed at once still gets its callback. */
    dpool_result_t *result = dpool_pool_apply_async (pool, "echo", "\x01", 1, &call);
    CHECK (result);
    dpool_result_destroy (&result);
    t_pack_str (&buf, "nope");
    dpool_result_t *failing =
        dpool_pool_apply_async (pool, "fail", buf.sbuf.data, buf.sbuf.size, &call);
    t_pack_range (&buf, 0, 10);
    dpool_result_t *map =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 3, &call);
    dp_test_buf_clear (&buf);
    t_pack_str (&buf, "a");
    t_pack_str (&buf, "b");
    dpool_result_t *failing_map =
        dpool_pool_map_async (pool, "fail", buf.sbuf.data, buf.sbuf.size, 1, &call);
    dpool_result_t *empty = dpool_pool_map_async (pool, "echo", NULL, 0, 0, &call);
    CHECK (failing && map && failing_map && empty);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    /*  join returns once every callback has run. */
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    CHECK_EQ_INT (atomic_load (&counts.ok), 3);
    CHECK_EQ_INT (atomic_load (&counts.failed), 2);
    CHECK_EQ_INT (atomic_load (&counts.readable), 5);
    dpool_result_destroy (&failing);
    dpool_result_destroy (&map);
    dpool_result_destroy (&failing_map);
    dpool_result_destroy (&empty);

    dpool_pool_destroy (&pool);
    CHECK_EQ_INT (atomic_load (&counts.ok), 3);
    CHECK_EQ_INT (atomic_load (&counts.failed), 2);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    cancel: a queued task ends cancelled; the running one finishes.
*/
static void
test_cancel_queued_task_ends_cancelled (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 1);
    dpool_pool_t *pool = t_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_double (&buf, 1.0);
    dpool_result_t *running =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *queued =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    t_pack_double (&buf, 1.0);
    dpool_result_t *map =
        dpool_pool_map_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    dpool_result_t *after = dpool_pool_apply_async (pool, "echo", "\x03", 1, NULL);
    CHECK (running && queued && map && after);
    CHECK_EQ_INT (dpool_result_cancel (queued), 0);
    CHECK_EQ_INT (dpool_result_cancel (map), 0);
    CHECK_EQ_INT (dpool_result_wait (queued, 20000), 0);
    t_check_failed (queued, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_result_wait (map, 20000), 0);
    t_check_failed (map, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_result_item_error (map, 1) != NULL, 1);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (running, 20000, &value), 0);
    CHECK_EQ_INT (dpool_result_get (after, 20000, &value), 0);
    CHECK (t_is_int (value, 3));
    /*  Cancelling a finished handle changes nothing. */
    CHECK_EQ_INT (dpool_result_cancel (running), 0);
    CHECK (dpool_result_successful (running));
    dpool_result_destroy (&running);
    dpool_result_destroy (&queued);
    dpool_result_destroy (&map);
    dpool_result_destroy (&after);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Backpressure: beyond max_outstanding tasks in flight, submits block
    until earlier ones finish.
*/
static void
test_backpressure_blocks_submits (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = env.endpoint;
    config.max_outstanding = 1;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    dp_test_wait_workers (pool, 2, 15000);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_double (&buf, 0.3);

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
    t_pack_double (&buf, 0.2);
    t_pack_double (&buf, 0.2);
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
    t_env_stop (&env);
}

/*  Beyond max_outstanding_bytes of arguments in flight, submits block too;
    one task larger than the bound still goes when nothing else is out. */
enum { T_BIG = 80000, T_BYTES_BOUND = 200000 };

typedef struct {
    dpool_pool_t *pool;
    dp_test_buf_t *big;
    dpool_result_t *result;
    atomic_int done;
} t_big_submit_t;

static void *
t_big_submitter (void *arg)
{
    t_big_submit_t *job = (t_big_submit_t *)arg;
    job->result =
        dpool_pool_apply_async (job->pool, "echo", job->big->sbuf.data, job->big->sbuf.size, NULL);
    atomic_store (&job->done, 1);
    return NULL;
}

static bool
t_big_submitted (void *arg)
{
    return atomic_load (&((t_big_submit_t *)arg)->done) != 0;
}

static void
t_pack_bin (dp_test_buf_t *buf, size_t size, uint8_t fill)
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
t_check_echo_bin (dpool_result_t *result, size_t size, uint8_t fill)
{
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 20000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_BIN && value.via.bin.size == size);
    for (size_t i = 0; i < size; i++)
        if ((uint8_t)value.via.bin.ptr[i] != fill)
            dp_test_fail (__FILE__, __LINE__, "byte %zu of the echo is wrong", i);
}

static void
test_backpressure_bounds_bytes (const char *transport)
{
    /*  No worker yet: every task stays outstanding. */
    t_env_t env;
    t_env_start (&env, transport, 0);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = env.endpoint;
    config.max_outstanding_bytes = T_BYTES_BOUND;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    dp_test_buf_t big;
    dp_test_buf_init (&big);
    t_pack_bin (&big, T_BIG, 0xa5);

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
    t_big_submit_t job = {.pool = pool, .big = &big};
    pthread_t thread;
    CHECK_EQ_INT (pthread_create (&thread, NULL, t_big_submitter, &job), 0);
    CHECK (!dp_test_wait_until (t_big_submitted, &job, 300));
    /*  ...which workers make. */
    env.workers = t_track (dp_test_workers_start (env.endpoint, 2, NULL));
    CHECK (dp_test_wait_until (t_big_submitted, &job, 20000));
    pthread_join (thread, NULL);
    CHECK (job.result);
    t_check_echo_bin (a, T_BIG, 0xa5);
    t_check_echo_bin (b, T_BIG, 0xa5);
    t_check_echo_bin (job.result, T_BIG, 0xa5);
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
        t_pack_bin (&big, T_BIG, (uint8_t)i);
        many[i] = dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, NULL);
        CHECK (many[i]);
    }
    for (int i = 0; i < 12; i++) {
        t_check_echo_bin (many[i], T_BIG, (uint8_t)i);
        dpool_result_destroy (&many[i]);
    }

    /*  Larger than the bound: it goes, alone, once the others are done
        (a blocking submit: the last result may be in before its place is
        given back). */
    t_pack_bin (&big, 3 * T_BYTES_BOUND, 0x3c);
    dpool_result_t *huge =
        dpool_pool_apply_async (pool, "echo", big.sbuf.data, big.sbuf.size, NULL);
    CHECK (huge);
    t_check_echo_bin (huge, 3 * T_BYTES_BOUND, 0x3c);
    dpool_result_destroy (&huge);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&big);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    status: the broker's map, and the workers it counts.
*/
static void
test_status_reports_workers (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 3);
    dpool_pool_t *pool = t_connect (&env, 3);
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
        if (!t_map_get (map, keys[i]))
            dp_test_fail (__FILE__, __LINE__, "status has no %s", keys[i]);
    const msgpack_object *workers = t_map_get (map, "workers");
    CHECK (workers && workers->type == MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_INT (workers->via.array.size, dpool_pool_workers (pool));
    const msgpack_object *clients = t_map_get (map, "clients");
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
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    The broker dies and comes back on the same endpoints: the client says
    HELLO again and resubmits what has no result, under the same identity.
*/
static void
test_reconnect_resubmits_after_broker_restart (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    dpool_result_t *before = dpool_pool_apply (pool, "echo", "\x01", 1, NULL);
    CHECK (dpool_result_successful (before));
    dpool_result_destroy (&before);

    t_pack_double (&buf, 1.0);
    dpool_result_t *running =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (running);
    CHECK (t_stop (env.broker.pid, SIGKILL) != -1);
    t_pack_range (&buf, 0, 50);
    dpool_result_t *during =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 5, NULL);
    CHECK (during);
    CHECK_EQ_INT (dpool_result_wait (during, 300), -1);
    env.broker.pid = t_broker_spawn (env.broker.tcp, env.broker.ipc, "restarted");

    CHECK_EQ_INT (dpool_result_get (running, 30000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_FLOAT64 && value.via.f64 == 1.0);
    t_check_range (during, 50);
    dpool_result_destroy (&running);
    dpool_result_destroy (&during);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    With no broker yet, tasks wait; they run once one appears.
*/
static void
test_tasks_wait_for_unreachable_broker (void)
{
    char endpoint[1024];
    snprintf (endpoint, sizeof endpoint, "%s", dp_test_ipc ("later"));
    dpool_pool_t *pool = dpool_pool_connect (endpoint);
    CHECK (pool);
    dpool_result_t *result = dpool_pool_apply_async (pool, "echo", "\x05", 1, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_wait (result, 500), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    const char *argv[] = {dp_test_broker_bin, "--bind", endpoint, NULL};
    pid_t broker = t_track (dp_test_spawn ("broker", (char *const *)argv));
    pid_t workers = t_track (dp_test_workers_start (endpoint, 1, NULL));
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 30000, &value), 0);
    CHECK (t_is_int (value, 5));
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    t_stop (workers, SIGTERM);
    t_stop (broker, SIGTERM);
}

/*  ---------------------------------------------------------------------------
    A broker that sends a malformed chunk result: every call of that chunk
    fails with DPOOL_EPROTO, whatever the calls before the bad pair stored,
    and the other chunk's calls keep their values. The broker is a ROUTER
    in this test, speaking through proto/.
*/
static void
test_malformed_chunk_result (void)
{
    char endpoint[1024];
    snprintf (endpoint, sizeof endpoint, "%s", dp_test_ipc ("fake"));
    void *ctx = zmq_ctx_new ();
    void *router = zmq_socket (ctx, ZMQ_ROUTER);
    CHECK (router);
    CHECK_EQ_INT (dp_wire_configure (router, true, 0), 0);
    CHECK_EQ_INT (zmq_bind (router, endpoint), 0);
    dp_writer_t w;
    dp_writer_init (&w);

    dpool_pool_t *pool = dpool_pool_connect (endpoint);
    CHECK (pool);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_range (&buf, 0, 6);
    dpool_result_t *result =
        dpool_pool_map_async (pool, "f", buf.sbuf.data, buf.sbuf.size, 3, NULL);
    CHECK (result);
    /*  Chunk one: a str and an int stored, then a pair whose code is a str.
        Chunk two: fine, a str among ints. */
    static const uint8_t bad[] = {0x93, 0x92, 0x00, 0xa1, 'a', 0x92,
                                  0x00, 0x01, 0x92, 0xa1, 'x', 0x03};
    static const uint8_t good[] = {0x93, 0x92, 0x00, 0xa1, 'b', 0x92,
                                   0x00, 0x04, 0x92, 0x00, 0x05};
    int64_t until = dp_now_ms () + 20000;
    while (!dpool_result_ready (result) && dp_now_ms () < until) {
        zmq_pollitem_t item = {router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        dp_wire_msg_t wire;
        CHECK_EQ_INT (dp_wire_recv (router, &wire, 0), 0);
        zmq_msg_t *rid = NULL;
        dp_msg_t msg;
        CHECK_EQ_INT (dp_wire_decode (&wire, true, &rid, &msg), DP_OK);
        const void *to = zmq_msg_data (rid);
        size_t to_size = zmq_msg_size (rid);
        if (msg.cmd == DP_CMD_HELLO) {
            dp_encode_welcome (&w, DP_HEARTBEAT_MS, DP_EXPIRY_MS, "fake", 1);
            CHECK_EQ_INT (dp_wire_send_writer (router, to, to_size, DP_CMD_WELCOME, &w, 0), 0);
        } else if (msg.cmd == DP_CMD_SUBMIT) {
            dp_task_t task;
            dp_list_t list = msg.u.list;
            dp_list_begin (&w);
            while (dp_list_next_task (&list, DP_CMD_SUBMIT, &task)) {
                CHECK (task.flags & DP_TASK_CHUNK);
                bool first = task.args.size > 1 && task.args.data[1] == 0x00;
                dp_list_add_result (&w, task.id, 0, first ? bad : good,
                                    first ? sizeof bad : sizeof good);
            }
            dp_list_end (&w);
            CHECK_EQ_INT (dp_wire_send_writer (router, to, to_size, DP_CMD_RESULT, &w, 0), 0);
        }
        dp_wire_close (&wire);
    }
    t_check_failed (result, DPOOL_EPROTO);
    msgpack_object value;
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT (dpool_result_item (result, i, &value), -1);
        CHECK_EQ_INT (dpool_errno (), DPOOL_EPROTO);
        CHECK_EQ_STR (dpool_result_item_error (result, i), "malformed chunk result");
    }
    CHECK_EQ_INT (dpool_result_item (result, 3, &value), 0);
    CHECK (t_is_str (value, "b"));
    CHECK_EQ_INT (dpool_result_item (result, 4, &value), 0);
    CHECK (t_is_int (value, 4));
    CHECK_EQ_INT (dpool_result_item (result, 5, &value), 0);
    CHECK (t_is_int (value, 5));
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_writer_fini (&w);
    zmq_close (router);
    zmq_ctx_term (ctx);
}

/*  ---------------------------------------------------------------------------
    Many threads submit and wait at once, several on the same handle.
*/
typedef struct {
    dpool_pool_t *pool;
    dpool_result_t *shared;
    int id;
    bool ok;
} t_thread_t;

static void *
t_submitter (void *arg)
{
    t_thread_t *self = (t_thread_t *)arg;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dpool_result_t *results[50];
    self->ok = true;
    for (int i = 0; i < 50; i++) {
        dp_test_buf_clear (&buf);
        t_pack_pair (&buf, self->id, i);
        results[i] =
            dpool_pool_apply_async (self->pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
        self->ok = self->ok && results[i];
    }
    for (int i = 0; i < 50 && self->ok; i++) {
        msgpack_object value;
        self->ok =
            dpool_result_get (results[i], 20000, &value) == 0 && t_is_pair (value, self->id, i);
    }
    for (int i = 0; i < 50; i++)
        dpool_result_destroy (&results[i]);
    dp_test_buf_fini (&buf);
    return NULL;
}

static void *
t_waiter (void *arg)
{
    t_thread_t *self = (t_thread_t *)arg;
    msgpack_object value;
    self->ok = dpool_result_get (self->shared, 20000, &value) == 0 &&
               value.type == MSGPACK_OBJECT_FLOAT64 && value.via.f64 == 0.3;
    return NULL;
}

static void
test_many_threads_submit_and_wait (const char *transport)
{
    enum { THREADS = 8 };
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_double (&buf, 0.3);
    dpool_result_t *shared =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (shared);
    pthread_t threads[THREADS];
    t_thread_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (t_thread_t){pool, shared, i, false};
        CHECK_EQ_INT (pthread_create (&threads[i], NULL, i % 2 ? t_waiter : t_submitter, &args[i]),
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
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Handles outlive their pool: finished ones keep their values,
    unfinished ones end cancelled.
*/
static void
test_result_outlives_pool (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 1);
    dpool_pool_t *pool = t_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_str (&buf, "kept");
    dpool_result_t *done = dpool_pool_apply (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (dpool_result_successful (done));
    dp_test_buf_clear (&buf);
    t_pack_double (&buf, 30.0);
    dpool_result_t *pending =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_iter_t *iter = dpool_pool_imap (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    CHECK (pending && iter);
    dpool_pool_destroy (&pool);

    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (done, 0, &value), 0);
    CHECK (t_is_str (value, "kept"));
    t_check_failed (pending, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_result_cancel (pending), 0);
    dpool_result_t *item = dpool_iter_next (iter, 1000);
    CHECK (item);
    t_check_failed (item, DPOOL_ECANCELLED);
    dpool_result_destroy (&item);
    dpool_iter_destroy (&iter);
    dpool_result_destroy (&done);
    dpool_result_destroy (&pending);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Embedded pools: Pool(procs) inside this program, running the functions
    it registered; a second pool later, and two at once.
*/
static int
t_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "square wants a uint, got type %d", (int)args->type);
    return msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
}

/*  True when the directory has no entry whose name starts with prefix. */
static bool
t_dir_has_no (const char *dir, const char *prefix)
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
t_check_square (dpool_pool_t *pool, uint64_t n)
{
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_uint64 (&buf.pk, n);
    dpool_result_t *result = dpool_pool_apply (pool, "square", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK (t_is_int (value, (int64_t)(n * n)));
    dpool_result_destroy (&result);
    dp_test_buf_fini (&buf);
}

static void
test_embedded_pool_apply_map (void)
{
    /*  The pool's private directory goes in the test's, to see it go. */
    setenv ("TMPDIR", dp_test_dir (), 1);
    CHECK_EQ_INT (dpool_register ("square", t_square, NULL), 0);
    dpool_pool_t *pool = dpool_pool_new (2);
    CHECK (pool);
    CHECK (!t_dir_has_no (dp_test_dir (), "dpool-"));
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    /*  The workers are other processes, forked from this program. */
    msgpack_pack_nil (&buf.pk);
    dpool_result_t *result = dpool_pool_apply (pool, "pid", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    const msgpack_object *pid = t_map_get (&value, "pid");
    CHECK (pid && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    CHECK (pid->via.u64 != (uint64_t)getpid ());
    dpool_result_destroy (&result);

    /*  A function this program registered, over a map. */
    t_pack_range (&buf, 0, 50);
    result = dpool_pool_map (pool, "square", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK_EQ_INT (value.via.array.size, 50);
    for (int i = 0; i < 50; i++)
        CHECK (t_is_int (value.via.array.ptr[i], i * i));
    dpool_result_destroy (&result);

    /*  Scalars, failures and other values mixed in one chunk: each item
        keeps its own outcome, in input order, whatever the others were. */
    dp_test_buf_clear (&buf);
    for (int i = 0; i < 12; i++) {
        if (i % 4 == 1)
            t_pack_str (&buf, "bad");
        else
            msgpack_pack_int (&buf.pk, i);
    }
    result = dpool_pool_map (pool, "square", buf.sbuf.data, buf.sbuf.size, 12, NULL);
    t_check_failed (result, DPOOL_EFAILED);
    CHECK (strstr (dpool_result_error (result), "square wants a uint"));
    for (int i = 0; i < 12; i++) {
        msgpack_object item;
        if (i % 4 == 1) {
            CHECK_EQ_INT (dpool_result_item (result, (size_t)i, &item), -1);
            CHECK (strstr (dpool_result_item_error (result, (size_t)i), "square wants a uint"));
        } else {
            CHECK_EQ_INT (dpool_result_item (result, (size_t)i, &item), 0);
            CHECK (t_is_int (item, i * i));
            CHECK (dpool_result_item_error (result, (size_t)i) == NULL);
        }
    }
    dpool_result_destroy (&result);
    dp_test_buf_clear (&buf);
    for (int i = 0; i < 12; i++) {
        if (i % 3 == 0)
            t_pack_str (&buf, "s");
        else
            msgpack_pack_int (&buf.pk, i);
    }
    result = dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, 5, NULL);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), 0);
    CHECK_EQ_INT (value.via.array.size, 12);
    for (int i = 0; i < 12; i++)
        CHECK (i % 3 == 0 ? t_is_str (value.via.array.ptr[i], "s")
                          : t_is_int (value.via.array.ptr[i], i));
    dpool_result_destroy (&result);
    t_pack_range (&buf, 0, 50);

    dpool_iter_t *iter = dpool_pool_imap (pool, "echo", buf.sbuf.data, buf.sbuf.size, 0, NULL);
    for (int i = 0; i < 50; i++) {
        dpool_result_t *item = dpool_iter_next (iter, 20000);
        CHECK (item && dpool_result_index (item) == (size_t)i);
        CHECK_EQ_INT (dpool_result_get (item, 0, &value), 0);
        CHECK (t_is_int (value, i));
        dpool_result_destroy (&item);
    }
    dpool_iter_destroy (&iter);

    dp_test_buf_clear (&buf);
    t_pack_str (&buf, "bad");
    result = dpool_pool_apply (pool, "square", buf.sbuf.data, buf.sbuf.size, NULL);
    t_check_failed (result, DPOOL_EFAILED);
    CHECK (strstr (dpool_result_error (result), "square wants a uint"));
    dpool_result_destroy (&result);

    dp_test_wait_workers (pool, 2, 15000);
    CHECK_EQ_INT (dpool_pool_close (pool), 0);
    CHECK_EQ_INT (dpool_pool_join (pool, 20000), 0);
    dpool_pool_destroy (&pool);
    CHECK (t_dir_has_no (dp_test_dir (), "dpool-"));

    /*  A second embedded pool in the same program, then two at once. */
    pool = dpool_pool_new (1);
    CHECK (pool);
    t_check_square (pool, 12);
    dpool_pool_destroy (&pool);
    dpool_pool_t *one = dpool_pool_new (1);
    dpool_pool_t *two = dpool_pool_new (1);
    CHECK (one && two);
    t_check_square (one, 3);
    t_check_square (two, 4);
    dpool_pool_destroy (&two);
    t_check_square (one, 5);
    dpool_pool_destroy (&one);
    CHECK (t_dir_has_no (dp_test_dir (), "dpool-"));

    /*  Every process the pools forked is gone and reaped. */
    CHECK_EQ_INT (waitpid (-1, NULL, WNOHANG), -1);
    CHECK_EQ_INT (errno, ECHILD);
    dp_test_buf_fini (&buf);
}

static bool
t_process_gone (void *arg)
{
    return kill ((pid_t)(intptr_t)arg, 0) == -1 && errno == ESRCH;
}

static void
test_embedded_terminate_stops_workers (void)
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
    pid_t worker = (pid_t)t_map_get (&value, "pid")->via.u64;
    dpool_result_destroy (&result);

    dp_test_buf_clear (&buf);
    t_pack_double (&buf, 60.0);
    dpool_result_t *a = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *b = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *c = dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (a && b && c);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    t_check_failed (a, DPOOL_ECANCELLED);
    t_check_failed (b, DPOOL_ECANCELLED);
    t_check_failed (c, DPOOL_ECANCELLED);
    CHECK (dp_test_wait_until (t_process_gone, (void *)(intptr_t)worker, 10000));
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
test_embedded_pool_accepts_outside_workers (void)
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
    pid_t outside = t_track (dp_test_workers_start (endpoint, 2, NULL));
    dp_test_wait_workers (pool, 3, 15000);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_range (&buf, 0, 30);
    dpool_result_t *result = dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    t_check_range (result, 30);
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    t_stop (outside, SIGTERM);

    /*  An endpoint that cannot be bound: no pool, nothing left behind. */
    config.bind = "nonsense://nowhere";
    CHECK (!dpool_pool_new_config (&config));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (t_dir_has_no (dp_test_dir (), "dpool-"));
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
test_config_from_environment (void)
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
    A sequential apply's thread sends its task and reads its result itself
    while nothing else is in flight (dp_client_actor_drive). Beside it, other
    threads apply and submit with callbacks: every value comes to its own
    caller, and every callback runs once, on the pool's thread, never on a
    thread that called apply.
*/
enum { SEQ_APPLIES = 300 };

typedef struct {
    dpool_pool_t *pool;
    int id;
    pthread_t self;
    atomic_int done;
    atomic_bool stop;
    bool ok;
} t_seq_t;

typedef struct {
    t_seq_t *drivers;
    int ndrivers;
    atomic_int called;
    atomic_int wrong_thread;
    atomic_int wrong_value;
} t_seq_callbacks_t;

/*  Applies echo of [id, i] until SEQ_APPLIES are done, or until stop once
    at least that many are. */
static void *
t_seq_applier (void *arg)
{
    t_seq_t *self = (t_seq_t *)arg;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    self->ok = true;
    for (int i = 0; self->ok && (i < SEQ_APPLIES || !atomic_load (&self->stop)); i++) {
        dp_test_buf_clear (&buf);
        t_pack_pair (&buf, self->id, i);
        dpool_result_t *result =
            dpool_pool_apply (self->pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
        msgpack_object value;
        self->ok =
            result && dpool_result_get (result, 0, &value) == 0 && t_is_pair (value, self->id, i);
        if (!self->ok)
            fprintf (stderr, "applier %d: call %d: %s\n", self->id, i,
                     result ? dpool_strerror (dpool_result_code (result)) : "no handle");
        dpool_result_destroy (&result);
        atomic_fetch_add (&self->done, 1);
    }
    dp_test_buf_fini (&buf);
    return NULL;
}

static void
t_seq_on_result (dpool_result_t *result, void *arg)
{
    t_seq_callbacks_t *counts = (t_seq_callbacks_t *)arg;
    for (int i = 0; i < counts->ndrivers; i++)
        if (pthread_equal (pthread_self (), counts->drivers[i].self))
            atomic_fetch_add (&counts->wrong_thread, 1);
    msgpack_object value;
    if (dpool_result_get (result, 0, &value) != 0 || value.type != MSGPACK_OBJECT_ARRAY ||
        value.via.array.size != 2 || !t_is_int (value.via.array.ptr[0], -1))
        atomic_fetch_add (&counts->wrong_value, 1);
    atomic_fetch_add (&counts->called, 1);
}

static bool
t_seq_all_called (void *arg)
{
    return atomic_load (&((t_seq_callbacks_t *)arg)->called) == SEQ_APPLIES;
}

static void
test_sequential_apply_beside_other_threads (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    t_seq_t drivers[2];
    t_seq_callbacks_t counts = {.drivers = drivers, .ndrivers = 2};
    for (int i = 0; i < 2; i++) {
        drivers[i] = (t_seq_t){.pool = pool, .id = i};
        atomic_store (&drivers[i].stop, true);
    }
    CHECK_EQ_INT (pthread_create (&drivers[0].self, NULL, t_seq_applier, &drivers[0]), 0);
    CHECK_EQ_INT (pthread_create (&drivers[1].self, NULL, t_seq_applier, &drivers[1]), 0);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dpool_call_t call = {
        .callback = t_seq_on_result, .error_callback = t_seq_on_result, .arg = &counts};
    dpool_result_t *async[SEQ_APPLIES];
    for (int i = 0; i < SEQ_APPLIES; i++) {
        dp_test_buf_clear (&buf);
        t_pack_pair (&buf, -1, i);
        async[i] = dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, &call);
        CHECK (async[i]);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT (pthread_join (drivers[i].self, NULL), 0);
        CHECK (drivers[i].ok);
        CHECK_EQ_INT (atomic_load (&drivers[i].done), SEQ_APPLIES);
    }
    CHECK (dp_test_wait_until (t_seq_all_called, &counts, 20000));
    CHECK_EQ_INT (atomic_load (&counts.wrong_thread), 0);
    CHECK_EQ_INT (atomic_load (&counts.wrong_value), 0);
    for (int i = 0; i < SEQ_APPLIES; i++)
        dpool_result_destroy (&async[i]);

    /*  Alone again after the others: a last run of applies. */
    t_seq_t last = {.pool = pool, .id = 7};
    atomic_store (&last.stop, true);
    t_seq_applier (&last);
    CHECK (last.ok);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Sequential applies go on across a broker killed and started again: the
    thread that drives the socket hands it back when the connection goes,
    and its task is submitted again.
*/
typedef struct {
    t_seq_t *seq;
    int at_least;
} t_seq_wait_t;

static bool
t_seq_reached (void *arg)
{
    t_seq_wait_t *wait = (t_seq_wait_t *)arg;
    return atomic_load (&wait->seq->done) >= wait->at_least;
}

static void
test_sequential_apply_across_broker_restart (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    t_seq_t seq = {.pool = pool, .id = 3};
    atomic_store (&seq.stop, false);
    CHECK_EQ_INT (pthread_create (&seq.self, NULL, t_seq_applier, &seq), 0);
    t_seq_wait_t wait = {&seq, 50};
    CHECK (dp_test_wait_until (t_seq_reached, &wait, 20000));
    CHECK (t_stop (env.broker.pid, SIGKILL) != -1);
    int before = atomic_load (&seq.done);
    env.broker.pid = t_broker_spawn (env.broker.tcp, env.broker.ipc, "restarted");
    wait.at_least = before + 50;
    CHECK (dp_test_wait_until (t_seq_reached, &wait, 60000));
    atomic_store (&seq.stop, true);
    CHECK_EQ_INT (pthread_join (seq.self, NULL), 0);
    CHECK (seq.ok);
    dpool_pool_destroy (&pool);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Sequential applies that fail, each driven by its caller: the handle
    comes back finished, with the failure's code - a worker that died, a
    deadline, a function nobody offers, a task that failed - and the next
    apply works.
*/
static void
test_sequential_apply_failures (const char *transport)
{
    t_env_t env;
    t_env_start (&env, transport, 2);
    dpool_pool_t *pool = t_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;
    for (int round = 0; round < 2; round++) {
        dp_test_buf_clear (&buf);
        msgpack_pack_nil (&buf.pk);
        dpool_call_t call = {.retries = -1};
        t_apply_fails (pool, "crash", &buf, &call, DPOOL_ELOST);

        dp_test_buf_clear (&buf);
        t_pack_double (&buf, 30.0);
        call = (dpool_call_t){.timeout_ms = 200};
        t_apply_fails (pool, "sleep", &buf, &call, DPOOL_EDEADLINE);

        dp_test_buf_clear (&buf);
        t_pack_str (&buf, "no");
        t_apply_fails (pool, "fail", &buf, NULL, DPOOL_EFAILED);

        dpool_result_t *ok = dpool_pool_apply (pool, "echo", "\x05", 1, NULL);
        CHECK_EQ_INT (dpool_result_get (ok, 0, &value), 0);
        CHECK (t_is_int (value, 5));
        dpool_result_destroy (&ok);
    }
    dp_test_buf_clear (&buf);
    msgpack_pack_nil (&buf.pk);
    t_apply_fails (pool, "no_such_function", &buf, NULL, DPOOL_ENOFUNC);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    t_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    terminate from another thread ends a sequential apply that waits for a
    running task: it returns at once, cancelled.
*/
typedef struct {
    dpool_pool_t *pool;
    dpool_result_t *result;
    atomic_bool returned;
} t_long_apply_t;

static void *
t_long_applier (void *arg)
{
    t_long_apply_t *self = (t_long_apply_t *)arg;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    t_pack_double (&buf, 60.0);
    self->result = dpool_pool_apply (self->pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    atomic_store (&self->returned, true);
    dp_test_buf_fini (&buf);
    return NULL;
}

/*  The broker's status lists a running task. */
static bool
t_one_running (void *arg)
{
    msgpack_unpacked status = dp_test_status ((dpool_pool_t *)arg);
    bool running = false;
    const msgpack_object *map = &status.data;
    for (uint32_t i = 0; map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 7 &&
            memcmp (kv->key.via.str.ptr, "running", 7) == 0)
            running = kv->val.type == MSGPACK_OBJECT_ARRAY && kv->val.via.array.size > 0;
    }
    msgpack_unpacked_destroy (&status);
    return running;
}

static bool
t_long_returned (void *arg)
{
    return atomic_load (&((t_long_apply_t *)arg)->returned);
}

static void
test_terminate_ends_a_sequential_apply (const char *transport)
{
    /*  A broker that says nothing for a minute: only the pool itself can
        wake the waiting apply. */
    setenv ("DPOOL_HEARTBEAT_MS", "60000", 1);
    setenv ("DPOOL_EXPIRY_MS", "150000", 1);
    t_env_t env;
    t_env_start (&env, transport, 1);
    dpool_pool_t *pool = t_connect (&env, 1);
    /*  Another client watches the broker, so that this pool's actor is
        left alone while the apply waits. */
    dpool_pool_t *observer = t_connect (&env, 1);
    t_long_apply_t apply = {.pool = pool};
    atomic_store (&apply.returned, false);
    pthread_t thread;
    CHECK_EQ_INT (pthread_create (&thread, NULL, t_long_applier, &apply), 0);
    CHECK (dp_test_wait_until (t_one_running, observer, 20000));
    CHECK (!atomic_load (&apply.returned));
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    CHECK (dp_test_wait_until (t_long_returned, &apply, 10000));
    CHECK_EQ_INT (pthread_join (thread, NULL), 0);
    CHECK (apply.result);
    t_check_failed (apply.result, DPOOL_ECANCELLED);
    dpool_result_destroy (&apply.result);
    dpool_pool_destroy (&pool);
    dpool_pool_destroy (&observer);
    t_env_stop (&env);
}

static const dp_test_case_t s_cases[] = {
    {"client_apply_async", .run_on = test_apply_async, .seconds = 60},
    {"client_map_results_in_input_order", .run_on = test_map_results_in_input_order,
     .seconds = 60},
    {"client_imap_vs_imap_unordered_order", .run_on = test_imap_vs_imap_unordered_order,
     .seconds = 60},
    {"client_task_failure_carries_worker_message",
     .run_on = test_task_failure_carries_worker_message, .seconds = 60},
    {"client_task_failure_codes", .run_on = test_task_failure_codes, .seconds = 90},
    {"client_close_join_terminate", .run_on = test_close_join_terminate, .seconds = 60},
    {"client_submit_after_close_fails", .run_on = test_submit_after_close_fails, .seconds = 60},
    {"client_two_clients_get_only_their_own_results",
     .run_on = test_two_clients_get_only_their_own_results, .seconds = 60},
    {"client_callbacks_run_once", .run_on = test_callbacks_run_once, .seconds = 60},
    {"client_cancel_queued_task_ends_cancelled", .run_on = test_cancel_queued_task_ends_cancelled,
     .seconds = 60},
    {"client_backpressure_blocks_submits", .run_on = test_backpressure_blocks_submits,
     .seconds = 60},
    {"client_backpressure_bounds_bytes", .run_on = test_backpressure_bounds_bytes, .seconds = 60},
    {"client_status_reports_workers", .run_on = test_status_reports_workers, .seconds = 60},
    {"client_reconnect_resubmits_after_broker_restart",
     .run_on = test_reconnect_resubmits_after_broker_restart, .seconds = 90},
    {"client_many_threads_submit_and_wait", .run_on = test_many_threads_submit_and_wait,
     .seconds = 60},
    {"client_result_outlives_pool", .run_on = test_result_outlives_pool, .seconds = 60},
    {"client_sequential_apply_beside_other_threads",
     .run_on = test_sequential_apply_beside_other_threads, .seconds = 90},
    {"client_sequential_apply_across_broker_restart",
     .run_on = test_sequential_apply_across_broker_restart, .seconds = 90},
    {"client_terminate_ends_a_sequential_apply", .run_on = test_terminate_ends_a_sequential_apply,
     .seconds = 60},
    {"client_sequential_apply_failures", .run_on = test_sequential_apply_failures, .seconds = 90},
    {"client_tasks_wait_for_unreachable_broker", test_tasks_wait_for_unreachable_broker,
     .seconds = 60},
    {"client_malformed_chunk_result", test_malformed_chunk_result, .seconds = 60},
    {"client_embedded_pool_apply_map", test_embedded_pool_apply_map, .seconds = 90},
    {"client_embedded_terminate_stops_workers", test_embedded_terminate_stops_workers,
     .seconds = 60},
    {"client_embedded_pool_accepts_outside_workers", test_embedded_pool_accepts_outside_workers,
     .seconds = 60},
    {"client_config_from_environment", test_config_from_environment, .seconds = 30},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

/*  test_client_sequential.c - the client library (dpool.h's pool, result and
    iterator calls): sequential apply (one thread applying one task at a
    time, on a lane of its own: client/dp_lane.h), against real processes:
    a dpool-broker and dpool-worker processes reached over tcp or ipc.
    `test_client_sequential --list` names the cases;
    `test_client_sequential CASE [tcp|ipc]` runs one.

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

/*  Applies fn to what buf holds, with call, and checks that the handle
    comes back finished and failed with code. */
static void
s_apply_fails (dpool_pool_t *pool, const char *fn, const dp_test_buf_t *buf,
               const dpool_call_t *call, int code)
{
    dpool_result_t *result = dpool_pool_apply (pool, fn, buf->sbuf.data, buf->sbuf.size, call);
    CHECK (result);
    dp_test_check_failed (result, code);
    dpool_result_destroy (&result);
}

/*  The count under key in the broker's status (as seen by pool), or -1. */
static int64_t
s_status_count (dpool_pool_t *pool, const char *key)
{
    msgpack_unpacked status = dp_test_status (pool);
    const msgpack_object *value = dp_test_map_get (&status.data, key);
    int64_t count =
        value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)value->via.u64 : -1;
    msgpack_unpacked_destroy (&status);
    return count;
}

typedef struct {
    dpool_pool_t *pool;
    int64_t lanes;
} s_lanes_wait_t;

/*  The broker counts exactly wait->lanes lanes. */
static bool
s_lanes_are (void *arg)
{
    s_lanes_wait_t *wait = (s_lanes_wait_t *)arg;
    return s_status_count (wait->pool, "lanes") == wait->lanes;
}

/*  ---------------------------------------------------------------------------
    A sequential apply's thread sends its task and reads its result on its
    own lane. Beside it, other threads apply and submit with callbacks:
    every value comes to its own caller, and every callback runs once, on
    the pool's thread, never on a thread that called apply. Nearly every
    apply's result came on a lane (only a lane's first applies, before its
    WELCOME, go through the pool's thread), and a thread's lane is closed
    when the thread ends.
*/
enum { SEQ_APPLIES = 300 };

typedef struct {
    dpool_pool_t *pool;
    int id;
    pthread_t self;
    atomic_int done;
    atomic_bool stop;
    bool ok;
} s_seq_t;

typedef struct {
    s_seq_t *drivers;
    int ndrivers;
    atomic_int called;
    atomic_int wrong_thread;
    atomic_int wrong_value;
} s_seq_callbacks_t;

/*  Applies echo of [id, i] until SEQ_APPLIES are done, or until stop once
    at least that many are. */
static void *
s_seq_applier (void *arg)
{
    s_seq_t *self = (s_seq_t *)arg;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    self->ok = true;
    for (int i = 0; self->ok && (i < SEQ_APPLIES || !atomic_load (&self->stop)); i++) {
        dp_test_buf_clear (&buf);
        dp_test_pack_pair (&buf.pk, self->id, i);
        dpool_result_t *result =
            dpool_pool_apply (self->pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
        msgpack_object value;
        self->ok = result && dpool_result_get (result, 0, &value) == 0 &&
                   dp_test_is_pair (&value, self->id, i);
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
s_seq_on_result (dpool_result_t *result, void *arg)
{
    s_seq_callbacks_t *counts = (s_seq_callbacks_t *)arg;
    for (int i = 0; i < counts->ndrivers; i++)
        if (pthread_equal (pthread_self (), counts->drivers[i].self))
            atomic_fetch_add (&counts->wrong_thread, 1);
    msgpack_object value;
    if (dpool_result_get (result, 0, &value) != 0 || value.type != MSGPACK_OBJECT_ARRAY ||
        value.via.array.size != 2 || !dp_test_is_int (&value.via.array.ptr[0], -1))
        atomic_fetch_add (&counts->wrong_value, 1);
    atomic_fetch_add (&counts->called, 1);
}

static bool
s_seq_all_called (void *arg)
{
    return atomic_load (&((s_seq_callbacks_t *)arg)->called) == SEQ_APPLIES;
}

static void
s_case_sequential_apply_beside_other_threads (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    s_seq_t drivers[2];
    s_seq_callbacks_t counts = {.drivers = drivers, .ndrivers = 2};
    for (int i = 0; i < 2; i++) {
        drivers[i] = (s_seq_t){.pool = pool, .id = i};
        atomic_store (&drivers[i].stop, true);
    }
    CHECK_EQ_INT (pthread_create (&drivers[0].self, NULL, s_seq_applier, &drivers[0]), 0);
    CHECK_EQ_INT (pthread_create (&drivers[1].self, NULL, s_seq_applier, &drivers[1]), 0);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dpool_call_t call = {
        .callback = s_seq_on_result, .error_callback = s_seq_on_result, .arg = &counts};
    dpool_result_t *async[SEQ_APPLIES];
    for (int i = 0; i < SEQ_APPLIES; i++) {
        dp_test_buf_clear (&buf);
        dp_test_pack_pair (&buf.pk, -1, i);
        async[i] = dpool_pool_apply_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, &call);
        CHECK (async[i]);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT (pthread_join (drivers[i].self, NULL), 0);
        CHECK (drivers[i].ok);
        CHECK_EQ_INT (atomic_load (&drivers[i].done), SEQ_APPLIES);
    }
    CHECK (dp_test_wait_until (s_seq_all_called, &counts, 20000));
    CHECK_EQ_INT (atomic_load (&counts.wrong_thread), 0);
    CHECK_EQ_INT (atomic_load (&counts.wrong_value), 0);
    for (int i = 0; i < SEQ_APPLIES; i++)
        dpool_result_destroy (&async[i]);
    /*  The two threads have ended, and with them their lanes. */
    s_lanes_wait_t lanes = {pool, 0};
    CHECK (dp_test_wait_until (s_lanes_are, &lanes, 10000));

    /*  Alone again after the others: a last run of applies, on a lane of
        this thread's. */
    s_seq_t last = {.pool = pool, .id = 7};
    atomic_store (&last.stop, true);
    s_seq_applier (&last);
    CHECK (last.ok);
    CHECK_EQ_INT (s_status_count (pool, "lanes"), 1);
    int64_t on_lanes = s_status_count (pool, "lane_results");
    if (on_lanes < 3 * SEQ_APPLIES - 3 * 4)
        dp_test_fail (__FILE__, __LINE__, "%lld of %d results came on lanes", (long long)on_lanes,
                      3 * SEQ_APPLIES);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Sequential applies go on across a broker killed and started again: the
    new broker does not know the thread's lane, so the task that was on it
    goes to the pool's thread, which submits it again, and the lane says
    HELLO again.
*/
typedef struct {
    s_seq_t *seq;
    int at_least;
} s_seq_wait_t;

static bool
s_seq_reached (void *arg)
{
    s_seq_wait_t *wait = (s_seq_wait_t *)arg;
    return atomic_load (&wait->seq->done) >= wait->at_least;
}

static void
s_case_sequential_apply_across_broker_restart (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    s_seq_t seq = {.pool = pool, .id = 3};
    atomic_store (&seq.stop, false);
    CHECK_EQ_INT (pthread_create (&seq.self, NULL, s_seq_applier, &seq), 0);
    s_seq_wait_t wait = {&seq, 50};
    CHECK (dp_test_wait_until (s_seq_reached, &wait, 20000));
    CHECK (dp_test_untrack_stop (env.broker.pid, SIGKILL) != -1);
    int before = atomic_load (&seq.done);
    dp_test_env_restart_broker (&env, "restarted");
    wait.at_least = before + 50;
    CHECK (dp_test_wait_until (s_seq_reached, &wait, 60000));
    /*  The thread's lane is back, at the new broker. */
    s_lanes_wait_t lanes = {pool, 1};
    CHECK (dp_test_wait_until (s_lanes_are, &lanes, 20000));
    atomic_store (&seq.stop, true);
    CHECK_EQ_INT (pthread_join (seq.self, NULL), 0);
    CHECK (seq.ok);
    dpool_pool_destroy (&pool);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Sequential applies that fail, each driven by its caller: the handle
    comes back finished, with the failure's code - a worker that died, a
    deadline, a function nobody offers, a task that failed - and the next
    apply works.
*/
static void
s_case_sequential_apply_failures (const char *transport)
{
    /*  The workers offer the test built-in crash. */
    CHECK_EQ_INT (setenv ("DPOOL_TEST_BUILTINS", "1", 1), 0);
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;
    for (int round = 0; round < 2; round++) {
        dp_test_buf_clear (&buf);
        msgpack_pack_nil (&buf.pk);
        dpool_call_t call = {.retries = -1};
        s_apply_fails (pool, "crash", &buf, &call, DPOOL_ELOST);

        dp_test_buf_clear (&buf);
        msgpack_pack_double (&buf.pk, 30.0);
        call = (dpool_call_t){.timeout_ms = 200};
        s_apply_fails (pool, "sleep", &buf, &call, DPOOL_EDEADLINE);

        dp_test_buf_clear (&buf);
        dp_test_pack_str (&buf.pk, "no");
        s_apply_fails (pool, "fail", &buf, NULL, DPOOL_EFAILED);

        dpool_result_t *ok = dpool_pool_apply (pool, "echo", "\x05", 1, NULL);
        CHECK_EQ_INT (dpool_result_get (ok, 0, &value), 0);
        CHECK (dp_test_is_int (&value, 5));
        dpool_result_destroy (&ok);
    }
    dp_test_buf_clear (&buf);
    msgpack_pack_nil (&buf.pk);
    s_apply_fails (pool, "no_such_function", &buf, NULL, DPOOL_ENOFUNC);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    terminate from another thread ends a sequential apply that waits for a
    running task: it returns at once, cancelled.
*/
typedef struct {
    dpool_pool_t *pool;
    bool warmup; /* echo applies until the thread's lane works, before the long one */
    dpool_result_t *result;
    atomic_bool warm; /* the echo applies returned */
    atomic_bool returned;
} s_long_apply_t;

static void *
s_long_applier (void *arg)
{
    s_long_apply_t *self = (s_long_apply_t *)arg;
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    /*  Warm, the thread's lane carries the long task: echo applies until
        one result came on a lane; cold, the pool's thread does (the lane
        has no WELCOME yet). */
    for (int i = 0; self->warmup && s_status_count (self->pool, "lane_results") < 1; i++) {
        if (i == 200)
            dp_test_fail (__FILE__, __LINE__, "no result came on a lane in 200 applies");
        dp_test_buf_clear (&buf);
        msgpack_pack_int (&buf.pk, i);
        dpool_result_t *echo =
            dpool_pool_apply (self->pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
        if (!echo || !dpool_result_successful (echo))
            dp_test_fail (__FILE__, __LINE__, "warm-up apply %d: %s", i,
                          echo ? dpool_result_error (echo) : "no handle");
        dpool_result_destroy (&echo);
    }
    atomic_store (&self->warm, true);
    dp_test_buf_clear (&buf);
    msgpack_pack_double (&buf.pk, 60.0);
    self->result = dpool_pool_apply (self->pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    atomic_store (&self->returned, true);
    dp_test_buf_fini (&buf);
    return NULL;
}

/*  The broker's status lists a running task. */
static bool
s_one_running (void *arg)
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
s_is_warm (void *arg)
{
    return atomic_load (&((s_long_apply_t *)arg)->warm);
}

static bool
s_long_returned (void *arg)
{
    return atomic_load (&((s_long_apply_t *)arg)->returned);
}

static void
s_terminate_ends_apply (const char *transport, bool warmup)
{
    /*  A broker that says nothing for a minute: only the pool itself can
        wake the waiting apply. */
    setenv ("DPOOL_HEARTBEAT_MS", "60000", 1);
    setenv ("DPOOL_EXPIRY_MS", "150000", 1);
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 1);
    dpool_pool_t *pool = dp_test_env_connect (&env, 1);
    /*  Another client watches the broker, so that this pool's actor is
        left alone while the apply waits. */
    dpool_pool_t *observer = dp_test_env_connect (&env, 1);
    s_long_apply_t apply = {.pool = pool, .warmup = warmup};
    atomic_store (&apply.warm, false);
    atomic_store (&apply.returned, false);
    pthread_t thread;
    CHECK_EQ_INT (pthread_create (&thread, NULL, s_long_applier, &apply), 0);
    /*  The task that runs is the long one, not a warm-up echo. */
    CHECK (dp_test_wait_until (s_is_warm, &apply, 20000));
    CHECK (dp_test_wait_until (s_one_running, observer, 20000));
    if (warmup)
        CHECK (s_status_count (observer, "lane_results") >= 1);
    CHECK (!atomic_load (&apply.returned));
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    CHECK (dp_test_wait_until (s_long_returned, &apply, 10000));
    CHECK_EQ_INT (pthread_join (thread, NULL), 0);
    CHECK (apply.result);
    dp_test_check_failed (apply.result, DPOOL_ECANCELLED);
    dpool_result_destroy (&apply.result);
    dpool_pool_destroy (&pool);
    dpool_pool_destroy (&observer);
    dp_test_env_stop (&env);
}

static void
s_case_terminate_ends_a_sequential_apply (const char *transport)
{
    s_terminate_ends_apply (transport, false);
}

static void
s_case_terminate_ends_an_apply_on_a_lane (const char *transport)
{
    s_terminate_ends_apply (transport, true);
}

static const dp_test_case_t s_cases[] = {
    {"client_sequential_apply_beside_other_threads",
     .run_on = s_case_sequential_apply_beside_other_threads, .seconds = 90},
    {"client_sequential_apply_across_broker_restart",
     .run_on = s_case_sequential_apply_across_broker_restart, .seconds = 90},
    {"client_sequential_apply_failures", .run_on = s_case_sequential_apply_failures,
     .seconds = 90},
    {"client_terminate_ends_a_sequential_apply",
     .run_on = s_case_terminate_ends_a_sequential_apply, .seconds = 60},
    {"client_terminate_ends_an_apply_on_a_lane",
     .run_on = s_case_terminate_ends_an_apply_on_a_lane, .seconds = 60},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

/*  test_queue.c - named queues (dpool_queue_*) against real processes: a
    dpool-broker, and worker processes that are this program serving its
    own task functions (test_queue serve EP PROCS), so that tasks on
    different worker processes share queues through the broker.

        test_queue CASE [tcp|ipc]

    Every case waits on conditions with deadlines and stops what it
    started, by pid.
*/
#define _GNU_SOURCE
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <czmq.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STOP         "stop" /* what tells a consumer to return */
#define GET_WAIT_MS  20000  /* the longest a task's get waits */
#define PRODUCERS    3
#define CONSUMERS    3
#define PER_PRODUCER 300
#define WORKERS      (PRODUCERS + CONSUMERS)
#define WAIT_MS      20000 /* for a condition, or a task */
#define SHORT_MS     300   /* a timeout that must run out */

/*  Copies a str argument into buf (NUL-terminated); false if it is none. */
static bool
s_str_arg (const msgpack_object *args, uint32_t at, char *buf, size_t size)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size <= at)
        return false;
    const msgpack_object *item = &args->via.array.ptr[at];
    if (item->type != MSGPACK_OBJECT_STR || item->via.str.size >= size)
        return false;
    memcpy (buf, item->via.str.ptr, item->via.str.size);
    buf[item->via.str.size] = 0;
    return true;
}

static int64_t
s_int_arg (const msgpack_object *args, uint32_t at)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size <= at)
        return -1;
    const msgpack_object *item = &args->via.array.ptr[at];
    if (item->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)item->via.u64;
    if (item->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return item->via.i64;
    return -1;
}

/*  ---------------------------------------------------------------------------
    Task functions, run by the worker processes this program serves.
*/

/*  [queue, producer, count]: puts [producer, i] for i < count, waiting for
    room; returns [pid, count]. */
static int
s_produce (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    char name[256];
    int64_t producer = s_int_arg (args, 1), count = s_int_arg (args, 2);
    if (!s_str_arg (args, 0, name, sizeof name) || producer < 0 || count < 0)
        return dpool_task_fail (task, "bad arguments");
    dpool_queue_t *q = dpool_task_queue_open (task, name, 0);
    if (!q)
        return dpool_task_fail (task, "open: %s", dpool_strerror (dpool_errno ()));
    dp_test_buf_t value;
    dp_test_buf_init (&value);
    for (int64_t i = 0; i < count; i++) {
        msgpack_sbuffer_clear (&value.sbuf);
        msgpack_pack_array (&value.pk, 2);
        msgpack_pack_int64 (&value.pk, producer);
        msgpack_pack_int64 (&value.pk, i);
        if (dpool_queue_put (q, value.sbuf.data, value.sbuf.size, GET_WAIT_MS)) {
            dp_test_buf_fini (&value);
            return dpool_task_fail (task, "put %lld: %s", (long long)i, dpool_queue_error (q));
        }
    }
    dp_test_buf_fini (&value);
    msgpack_pack_array (result, 2);
    msgpack_pack_int (result, (int)getpid ());
    return msgpack_pack_int64 (result, count);
}

/*  [queue]: gets values until "stop"; returns [pid, [value...]] in the
    order got. */
static int
s_consume (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    char name[256];
    if (!s_str_arg (args, 0, name, sizeof name))
        return dpool_task_fail (task, "bad arguments");
    dpool_queue_t *q = dpool_task_queue_open (task, name, 0);
    if (!q)
        return dpool_task_fail (task, "open: %s", dpool_strerror (dpool_errno ()));
    dp_test_buf_t got;
    dp_test_buf_init (&got);
    uint32_t count = 0;
    for (;;) {
        msgpack_object value;
        if (dpool_queue_get (q, GET_WAIT_MS, &value)) {
            dp_test_buf_fini (&got);
            return dpool_task_fail (task, "get: %s", dpool_queue_error (q));
        }
        if (dp_test_is_str (&value, STOP))
            break;
        msgpack_pack_object (&got.pk, value);
        count++;
    }
    msgpack_pack_array (result, 2);
    msgpack_pack_int (result, (int)getpid ());
    msgpack_pack_array (result, count);
    int rc = msgpack_sbuffer_write (result->data, got.sbuf.data, got.sbuf.size);
    dp_test_buf_fini (&got);
    return rc;
}

/*  [victim, pids]: puts its pid on pids, then waits for a value on victim;
    returns it. */
static int
s_wait_on (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    char victim[256], pids[256];
    if (!s_str_arg (args, 0, victim, sizeof victim) || !s_str_arg (args, 1, pids, sizeof pids))
        return dpool_task_fail (task, "bad arguments");
    dpool_queue_t *p = dpool_task_queue_open (task, pids, 0);
    dpool_queue_t *q = dpool_task_queue_open (task, victim, 0);
    if (!p || !q)
        return dpool_task_fail (task, "open: %s", dpool_strerror (dpool_errno ()));
    dp_test_buf_t pid;
    dp_test_buf_init (&pid);
    msgpack_pack_int (&pid.pk, (int)getpid ());
    int rc = dpool_queue_put (p, pid.sbuf.data, pid.sbuf.size, 0);
    dp_test_buf_fini (&pid);
    if (rc)
        return dpool_task_fail (task, "put pid: %s", dpool_queue_error (p));
    msgpack_object value;
    if (dpool_queue_get (q, GET_WAIT_MS, &value))
        return dpool_task_fail (task, "get: %s", dpool_queue_error (q));
    return msgpack_pack_object (result, value);
}

/*  [queue]: the codes a task sees on an empty queue and a full one:
    [get_nowait, get(SHORT_MS), ms it took, put_nowait on full, put(SHORT_MS)
    on full, ms it took, qsize, empty]. */
static int
s_codes (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    char name[256], full[300];
    if (!s_str_arg (args, 0, name, sizeof name))
        return dpool_task_fail (task, "bad arguments");
    snprintf (full, sizeof full, "%s.full", name);
    dpool_queue_t *q = dpool_task_queue_open (task, name, 0);
    dpool_queue_t *f = dpool_task_queue_open (task, full, 1);
    if (!q || !f)
        return dpool_task_fail (task, "open: %s", dpool_strerror (dpool_errno ()));
    msgpack_object value;
    int get_nowait = dpool_queue_get (q, 0, &value) ? dpool_errno () : 0;
    int64_t start = dp_now_ms ();
    int get_wait = dpool_queue_get (q, SHORT_MS, &value) ? dpool_errno () : 0;
    int64_t get_ms = dp_now_ms () - start;
    static const char one[] = {0x01};
    if (dpool_queue_put (f, one, 1, 0))
        return dpool_task_fail (task, "first put: %s", dpool_queue_error (f));
    int put_nowait = dpool_queue_put (f, one, 1, 0) ? dpool_errno () : 0;
    start = dp_now_ms ();
    int put_wait = dpool_queue_put (f, one, 1, SHORT_MS) ? dpool_errno () : 0;
    int64_t put_ms = dp_now_ms () - start;
    size_t size = 99;
    if (dpool_queue_qsize (f, &size))
        return dpool_task_fail (task, "qsize: %s", dpool_queue_error (f));
    int empty = dpool_queue_empty (q);
    msgpack_pack_array (result, 8);
    msgpack_pack_int (result, get_nowait);
    msgpack_pack_int (result, get_wait);
    msgpack_pack_int64 (result, get_ms);
    msgpack_pack_int (result, put_nowait);
    msgpack_pack_int (result, put_wait);
    msgpack_pack_int64 (result, put_ms);
    msgpack_pack_uint64 (result, size);
    return msgpack_pack_int (result, empty);
}

static void
s_register (void)
{
    CHECK (dpool_register ("q.produce", s_produce, NULL) == 0);
    CHECK (dpool_register ("q.consume", s_consume, NULL) == 0);
    CHECK (dpool_register ("q.wait_on", s_wait_on, NULL) == 0);
    CHECK (dpool_register ("q.codes", s_codes, NULL) == 0);
}

/*  ---------------------------------------------------------------------------
    The test's side.
*/
static dp_test_broker_t s_broker;
static const char *s_endpoint;

/*  Starts the broker and, if procs > 0, this program serving its
    functions with procs worker processes. */
static void
s_start (const char *transport, int procs)
{
    dp_test_broker_start (&s_broker, NULL);
    s_endpoint = strcmp (transport, "ipc") == 0 ? s_broker.ipc : s_broker.tcp;
    if (procs > 0) {
        static char self[PATH_MAX];
        ssize_t len = readlink ("/proc/self/exe", self, sizeof self - 1);
        CHECK (len > 0);
        self[len] = 0;
        char nprocs[16];
        snprintf (nprocs, sizeof nprocs, "%d", procs);
        char *argv[] = {self, "serve", (char *)s_endpoint, nprocs, NULL};
        dp_test_spawn ("workers", argv);
    }
}

static dpool_pool_t *
s_connect (int workers)
{
    /*  This program's exit handler runs before CZMQ's (see dp_testutil). */
    zsys_handler_set (NULL);
    dpool_pool_t *pool = dpool_pool_connect (s_endpoint);
    CHECK (pool);
    if (workers > 0)
        dp_test_wait_workers (pool, workers, WAIT_MS);
    return pool;
}

/*  The count under key of the queue name in the broker's status; -1 if it
    has no such queue. */
static int64_t
s_queue_field (dpool_pool_t *pool, const char *name, const char *key)
{
    msgpack_unpacked status = dp_test_status (pool);
    const msgpack_object *queues = dp_test_map_get (&status.data, "queues");
    int64_t value = -1;
    for (uint32_t i = 0; queues && i < queues->via.array.size; i++) {
        const msgpack_object *queue = &queues->via.array.ptr[i];
        const msgpack_object *qname = dp_test_map_get (queue, "name");
        const msgpack_object *field = dp_test_map_get (queue, key);
        if (qname && dp_test_is_str (qname, name) && field &&
            field->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            value = (int64_t)field->via.u64;
    }
    msgpack_unpacked_destroy (&status);
    return value;
}

typedef struct {
    dpool_pool_t *pool;
    const char *name;
    const char *key;
    int64_t value;
} s_field_wait_t;

static bool
s_field_is (void *arg)
{
    s_field_wait_t *wait = (s_field_wait_t *)arg;
    return s_queue_field (wait->pool, wait->name, wait->key) == wait->value;
}

/*  Waits until the broker shows value under key for the queue name. */
static void
s_wait_field (dpool_pool_t *pool, const char *name, const char *key, int64_t value)
{
    s_field_wait_t wait = {pool, name, key, value};
    if (!dp_test_wait_until (s_field_is, &wait, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "queue %s: %s is %lld, not %lld", name, key,
                      (long long)s_queue_field (pool, name, key), (long long)value);
}

/*  Stops the broker with SIGTERM and checks that it ended cleanly: under
    valgrind (DPOOL_TEST_BROKER_WRAP), an invalid access or a leak makes
    it end otherwise. */
static void
s_stop_broker (void)
{
    int status = dp_test_stop (s_broker.pid, SIGTERM, 60000);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "the broker ended with wait status %d", status);
}

/*  Submits fn with args packed by the caller. */
static dpool_result_t *
s_submit (dpool_pool_t *pool, const char *fn, dp_test_buf_t *args, int retries)
{
    dpool_call_t call = {.retries = retries};
    dpool_result_t *result =
        dpool_pool_apply_async (pool, fn, args->sbuf.data, args->sbuf.size, &call);
    CHECK (result);
    msgpack_sbuffer_clear (&args->sbuf);
    return result;
}

static msgpack_object
s_value (dpool_result_t *result)
{
    msgpack_object value;
    if (dpool_result_get (result, WAIT_MS, &value) != 0)
        dp_test_fail (__FILE__, __LINE__, "task failed: %s (%s)",
                      dpool_strerror (dpool_result_code (result)),
                      dpool_result_error (result) ? dpool_result_error (result) : "-");
    return value;
}

static int64_t
s_int (const msgpack_object *object)
{
    if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)object->via.u64;
    CHECK (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
    return object->via.i64;
}

/*  A program's own handle: open, put, get, qsize, empty, FIFO, waits that
    run out, a bound that holds, limits checked before anything is sent. */
static void
s_case_client_api (const char *transport)
{
    s_start (transport, 0);
    dpool_pool_t *pool = s_connect (0);
    dpool_queue_t *q = dpool_queue_open (pool, "api", 0);
    CHECK (q);
    CHECK_EQ_STR (dpool_queue_name (q), "api");
    CHECK_EQ_INT (dpool_queue_empty (q), 1);
    dp_test_buf_t value;
    dp_test_buf_init (&value);
    for (int i = 0; i < 50; i++) {
        msgpack_sbuffer_clear (&value.sbuf);
        msgpack_pack_array (&value.pk, 2);
        dp_test_pack_str (&value.pk, "n");
        msgpack_pack_int (&value.pk, i);
        CHECK (dpool_queue_put (q, value.sbuf.data, value.sbuf.size, 0) == 0);
    }
    size_t size = 0;
    CHECK (dpool_queue_qsize (q, &size) == 0);
    CHECK_EQ_INT (size, 50);
    CHECK_EQ_INT (dpool_queue_empty (q), 0);
    /*  A second handle on the same name sees the same queue, in order. */
    dpool_queue_t *again = dpool_queue_open (pool, "api", 0);
    CHECK (again);
    for (int i = 0; i < 50; i++) {
        msgpack_object got;
        CHECK (dpool_queue_get (i % 2 ? q : again, -1, &got) == 0);
        CHECK (got.type == MSGPACK_OBJECT_ARRAY && got.via.array.size == 2);
        CHECK_EQ_INT (s_int (&got.via.array.ptr[1]), i);
    }
    /*  Empty: get_nowait fails at once, a get with a timeout after it. */
    msgpack_object got;
    CHECK (dpool_queue_get (q, 0, &got) == -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EAGAIN);
    CHECK (dpool_queue_error (q) && strstr (dpool_queue_error (q), "empty"));
    int64_t start = dp_now_ms ();
    CHECK (dpool_queue_get (q, SHORT_MS, &got) == -1);
    int64_t took = dp_now_ms () - start;
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    CHECK (took >= SHORT_MS - 5 && took < SHORT_MS + 2000);

    /*  Bounded: a put waits for room, fails when told not to wait or when
        its wait runs out, and goes in when a get makes room. */
    dpool_queue_t *b = dpool_queue_open (pool, "bounded", 2);
    CHECK (b);
    CHECK_EQ_INT (dpool_queue_maxsize (b), 2);
    CHECK (dpool_queue_open (pool, "bounded", 3) == NULL);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    dpool_queue_t *b0 = dpool_queue_open (pool, "bounded", 0); /* as it is */
    CHECK (b0);
    static const char one[] = {0x01}, two[] = {0x02}, three[] = {0x03};
    CHECK (dpool_queue_put (b, one, 1, 0) == 0);
    CHECK (dpool_queue_put (b0, two, 1, 0) == 0);
    CHECK (dpool_queue_put (b, three, 1, 0) == -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EAGAIN);
    start = dp_now_ms ();
    CHECK (dpool_queue_put (b, three, 1, SHORT_MS) == -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    CHECK (dp_now_ms () - start >= SHORT_MS - 5);
    CHECK (dpool_queue_get (b0, 0, &got) == 0 && s_int (&got) == 1);
    CHECK (dpool_queue_put (b, three, 1, 0) == 0);
    CHECK (dpool_queue_get (b0, 0, &got) == 0 && s_int (&got) == 2);
    CHECK (dpool_queue_get (b0, 0, &got) == 0 && s_int (&got) == 3);

    /*  Checked here, before anything is sent. */
    CHECK (dpool_queue_open (pool, "", 0) == NULL);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (dpool_queue_put (q, "\x92\x01", 2, 0) == -1); /* an incomplete array */
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK (dpool_queue_put (q, "\x01\x02", 2, 0) == -1); /* two objects */
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    size_t big = 1024 * 1024 + 1;
    uint8_t *huge = calloc (1, big);
    CHECK (huge);
    huge[0] = 0xc6; /* bin32 of big - 5 bytes */
    huge[1] = (uint8_t)((big - 5) >> 24);
    huge[2] = (uint8_t)((big - 5) >> 16);
    huge[3] = (uint8_t)((big - 5) >> 8);
    huge[4] = (uint8_t)(big - 5);
    CHECK (dpool_queue_put (q, huge, big, 0) == -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    free (huge);

    dpool_queue_destroy (&b0);
    dpool_queue_destroy (&b);
    dpool_queue_destroy (&again);
    dpool_queue_destroy (&q);
    dpool_queue_destroy (&q); /* twice is harmless */
    /*  A handle outlives its pool; it then fails with DPOOL_ECLOSED. */
    dpool_queue_t *late = dpool_queue_open (pool, "api", 0);
    CHECK (late);
    dpool_pool_destroy (&pool);
    CHECK (dpool_queue_qsize (late, &size) == -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ECLOSED);
    dpool_queue_destroy (&late);
    dp_test_buf_fini (&value);
    s_stop_broker ();
}

/*  Several producers and consumers, each task on its own worker process:
    every value is consumed exactly once, in each producer's order. The
    consumers start first and wait in the broker while the producers run
    on the other processes. */
static void
s_case_producers_consumers (void)
{
    s_start ("tcp", WORKERS);
    dpool_pool_t *pool = s_connect (WORKERS);
    dpool_queue_t *q = dpool_queue_open (pool, "work", 50); /* bounded: producers wait too */
    CHECK (q);
    dp_test_buf_t args;
    dp_test_buf_init (&args);
    dpool_result_t *consumers[CONSUMERS], *producers[PRODUCERS];
    for (int c = 0; c < CONSUMERS; c++) {
        msgpack_pack_array (&args.pk, 1);
        dp_test_pack_str (&args.pk, "work");
        consumers[c] = s_submit (pool, "q.consume", &args, 0);
    }
    s_wait_field (pool, "work", "getters", CONSUMERS);
    for (int p = 0; p < PRODUCERS; p++) {
        msgpack_pack_array (&args.pk, 3);
        dp_test_pack_str (&args.pk, "work");
        msgpack_pack_int (&args.pk, p);
        msgpack_pack_int (&args.pk, PER_PRODUCER);
        producers[p] = s_submit (pool, "q.produce", &args, 0);
    }
    pid_t pids[WORKERS];
    int npids = 0;
    for (int p = 0; p < PRODUCERS; p++) {
        msgpack_object value = s_value (producers[p]);
        CHECK_EQ_INT (s_int (&value.via.array.ptr[1]), PER_PRODUCER);
        pids[npids++] = (pid_t)s_int (&value.via.array.ptr[0]);
    }
    /*  Then one "stop" per consumer, after every value. */
    dp_test_buf_t stop;
    dp_test_buf_init (&stop);
    dp_test_pack_str (&stop.pk, STOP);
    for (int c = 0; c < CONSUMERS; c++)
        CHECK (dpool_queue_put (q, stop.sbuf.data, stop.sbuf.size, WAIT_MS) == 0);
    static bool seen[PRODUCERS][PER_PRODUCER];
    int total = 0;
    for (int c = 0; c < CONSUMERS; c++) {
        msgpack_object value = s_value (consumers[c]);
        pids[npids++] = (pid_t)s_int (&value.via.array.ptr[0]);
        const msgpack_object *got = &value.via.array.ptr[1];
        int64_t last[PRODUCERS] = {-1, -1, -1};
        for (uint32_t i = 0; i < got->via.array.size; i++) {
            const msgpack_object *pair = &got->via.array.ptr[i];
            int64_t p = s_int (&pair->via.array.ptr[0]), n = s_int (&pair->via.array.ptr[1]);
            CHECK (p >= 0 && p < PRODUCERS && n >= 0 && n < PER_PRODUCER);
            if (seen[p][n])
                dp_test_fail (__FILE__, __LINE__, "value [%lld, %lld] consumed twice",
                              (long long)p, (long long)n);
            seen[p][n] = true;
            /*  FIFO per producer: a consumer sees each one's values in order. */
            CHECK (n > last[p]);
            last[p] = n;
            total++;
        }
    }
    CHECK_EQ_INT (total, PRODUCERS * PER_PRODUCER);
    /*  Every task ran on a process of its own. */
    for (int i = 0; i < npids; i++)
        for (int j = i + 1; j < npids; j++)
            CHECK (pids[i] != pids[j]);
    size_t size = 1;
    CHECK (dpool_queue_qsize (q, &size) == 0);
    CHECK_EQ_INT (size, 0);
    msgpack_unpacked status = dp_test_status (pool);
    const msgpack_object *stats = dp_test_map_get (&status.data, "queue_stats");
    CHECK_EQ_INT (s_int (dp_test_map_get (stats, "gets")), PRODUCERS * PER_PRODUCER + CONSUMERS);
    CHECK_EQ_INT (s_int (dp_test_map_get (stats, "unacked")), 0);
    msgpack_unpacked_destroy (&status);
    for (int i = 0; i < CONSUMERS; i++)
        dpool_result_destroy (&consumers[i]);
    for (int i = 0; i < PRODUCERS; i++)
        dpool_result_destroy (&producers[i]);
    dpool_queue_destroy (&q);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&stop);
    dp_test_buf_fini (&args);
    s_stop_broker ();
}

/*  A consumer SIGKILLed while it waits in get loses nothing: the value put
    afterwards is there for a later get. */
static void
s_case_consumer_killed_in_get (void)
{
    s_start ("tcp", 2);
    dpool_pool_t *pool = s_connect (2);
    dpool_queue_t *pids = dpool_queue_open (pool, "pids", 0);
    dpool_queue_t *victim = dpool_queue_open (pool, "victim", 0);
    CHECK (pids && victim);
    dp_test_buf_t args;
    dp_test_buf_init (&args);
    msgpack_pack_array (&args.pk, 2);
    dp_test_pack_str (&args.pk, "victim");
    dp_test_pack_str (&args.pk, "pids");
    dpool_result_t *consumer = s_submit (pool, "q.wait_on", &args, -1); /* never retried */
    msgpack_object pid;
    CHECK (dpool_queue_get (pids, WAIT_MS, &pid) == 0);
    s_wait_field (pool, "victim", "getters", 1);
    CHECK (kill ((pid_t)s_int (&pid), SIGKILL) == 0);
    /*  The value may reach the dead consumer's connection first; it is
        the broker's until acknowledged, so it comes back. */
    dp_test_buf_t value;
    dp_test_buf_init (&value);
    dp_test_pack_str (&value.pk, "precious");
    CHECK (dpool_queue_put (victim, value.sbuf.data, value.sbuf.size, 0) == 0);
    CHECK_EQ_INT (dpool_result_wait (consumer, WAIT_MS), 0);
    CHECK_EQ_INT (dpool_result_code (consumer), DPOOL_ELOST);
    msgpack_object got;
    CHECK (dpool_queue_get (victim, WAIT_MS, &got) == 0);
    CHECK (dp_test_is_str (&got, "precious"));
    size_t size = 1;
    CHECK (dpool_queue_qsize (victim, &size) == 0);
    CHECK_EQ_INT (size, 0);
    CHECK_EQ_INT (s_queue_field (pool, "victim", "getters"), 0);
    CHECK_EQ_INT (s_queue_field (pool, "victim", "unacked"), 0);
    dpool_result_destroy (&consumer);
    dpool_queue_destroy (&pids);
    dpool_queue_destroy (&victim);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&value);
    dp_test_buf_fini (&args);
    s_stop_broker ();
}

/*  A bounded queue from a task: a put waits while it is full and goes in
    when a get makes room; the puts keep their order. */
static void
s_case_bounded_put_blocks (void)
{
    s_start ("tcp", 1);
    dpool_pool_t *pool = s_connect (1);
    dpool_queue_t *q = dpool_queue_open (pool, "small", 2);
    CHECK (q);
    dp_test_buf_t args;
    dp_test_buf_init (&args);
    msgpack_pack_array (&args.pk, 3);
    dp_test_pack_str (&args.pk, "small");
    msgpack_pack_int (&args.pk, 7);
    msgpack_pack_int (&args.pk, 5);
    dpool_result_t *producer = s_submit (pool, "q.produce", &args, 0);
    /*  Two go in, the third waits in the broker, the task with it. */
    s_wait_field (pool, "small", "putters", 1);
    CHECK_EQ_INT (s_queue_field (pool, "small", "size"), 2);
    CHECK (!dpool_result_ready (producer));
    for (int i = 0; i < 5; i++) {
        msgpack_object got;
        CHECK (dpool_queue_get (q, WAIT_MS, &got) == 0);
        CHECK_EQ_INT (s_int (&got.via.array.ptr[1]), i);
    }
    s_value (producer);
    dpool_result_destroy (&producer);
    dpool_queue_destroy (&q);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&args);
    s_stop_broker ();
}

/*  From a task: get_nowait on empty, a get and a put whose waits run out,
    put_nowait on full, qsize, empty. */
static void
s_case_task_timeouts_and_nowait (void)
{
    s_start ("tcp", 1);
    dpool_pool_t *pool = s_connect (1);
    dp_test_buf_t args;
    dp_test_buf_init (&args);
    msgpack_pack_array (&args.pk, 1);
    dp_test_pack_str (&args.pk, "codes");
    dpool_result_t *result = s_submit (pool, "q.codes", &args, 0);
    msgpack_object value = s_value (result);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == 8);
    const msgpack_object *v = value.via.array.ptr;
    CHECK_EQ_INT (s_int (&v[0]), DPOOL_EAGAIN);
    CHECK_EQ_INT (s_int (&v[1]), DPOOL_ETIMEOUT);
    CHECK (s_int (&v[2]) >= SHORT_MS - 5 && s_int (&v[2]) < SHORT_MS + 2000);
    CHECK_EQ_INT (s_int (&v[3]), DPOOL_EAGAIN);
    CHECK_EQ_INT (s_int (&v[4]), DPOOL_ETIMEOUT);
    CHECK (s_int (&v[5]) >= SHORT_MS - 5 && s_int (&v[5]) < SHORT_MS + 2000);
    CHECK_EQ_INT (s_int (&v[6]), 1);
    CHECK_EQ_INT (s_int (&v[7]), 1);
    dpool_result_destroy (&result);
    /*  Nothing left waiting or lent at the broker. */
    msgpack_unpacked status = dp_test_status (pool);
    const msgpack_object *stats = dp_test_map_get (&status.data, "queue_stats");
    CHECK_EQ_INT (s_int (dp_test_map_get (stats, "waiting")), 0);
    CHECK_EQ_INT (s_int (dp_test_map_get (stats, "unacked")), 0);
    msgpack_unpacked_destroy (&status);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&args);
    s_stop_broker ();
}

/*  A get waiting in one thread does not hold up another thread's calls on
    the same pool: the pool's actor never waits for the broker. */
typedef struct {
    dpool_pool_t *pool;
    int code;
} s_getter_t;

static void *
s_getter (void *arg)
{
    s_getter_t *getter = (s_getter_t *)arg;
    dpool_queue_t *q = dpool_queue_open (getter->pool, "late", 0);
    msgpack_object got;
    getter->code = q && dpool_queue_get (q, WAIT_MS, &got) == 0 && s_int (&got) == 9 ? 0 : -1;
    dpool_queue_destroy (&q);
    return NULL;
}

static void
s_case_get_does_not_block_others (void)
{
    s_start ("tcp", 1);
    dpool_pool_t *pool = s_connect (1);
    s_getter_t getter = {pool, -1};
    pthread_t thread;
    CHECK (pthread_create (&thread, NULL, s_getter, &getter) == 0);
    s_wait_field (pool, "late", "getters", 1);
    /*  Meanwhile tasks run and other queues work. */
    for (int i = 0; i < 5; i++) {
        dpool_result_t *echo = dpool_pool_apply (pool, "echo", "\x05", 1, NULL);
        CHECK (echo && dpool_result_successful (echo));
        dpool_result_destroy (&echo);
    }
    dpool_queue_t *other = dpool_queue_open (pool, "other", 0);
    CHECK (other && dpool_queue_put (other, "\x01", 1, 0) == 0);
    dpool_queue_t *late = dpool_queue_open (pool, "late", 0);
    CHECK (late && dpool_queue_put (late, "\x09", 1, 0) == 0);
    pthread_join (thread, NULL);
    CHECK_EQ_INT (getter.code, 0);
    dpool_queue_destroy (&other);
    dpool_queue_destroy (&late);
    dpool_pool_destroy (&pool);
    s_stop_broker ();
}

/*  A program's queue and batch calls end with their pool (dp_reqs.h): a
    get waiting without limit in one thread ends DPOOL_ECLOSED when another
    terminates the pool; from a result's callback, on the pool's own
    thread, a queue call and a batch call are refused with DPOOL_ESTATE
    (they would wait for the thread that runs them). */
typedef struct {
    dpool_queue_t *q;
    dpool_pool_t *pool;
    int queue_code;
    int batch_code;
} s_in_callback_t;

static void
s_call_in_callback (dpool_result_t *result, void *arg)
{
    (void)result;
    s_in_callback_t *in = (s_in_callback_t *)arg;
    size_t size;
    in->queue_code = dpool_queue_qsize (in->q, &size) == 0 ? 0 : dpool_errno ();
    dpool_batch_info_t *infos = NULL;
    size_t count;
    in->batch_code = dpool_pool_batches (in->pool, &infos, &count) == 0 ? 0 : dpool_errno ();
    free (infos);
}

static void *
s_get_forever (void *arg)
{
    s_getter_t *getter = (s_getter_t *)arg;
    dpool_queue_t *q = dpool_queue_open (getter->pool, "forever", 0);
    msgpack_object got;
    getter->code = !q ? -2 : dpool_queue_get (q, -1, &got) == 0 ? 0 : dpool_errno ();
    dpool_queue_destroy (&q);
    return NULL;
}

static void
s_case_calls_end_with_their_pool (void)
{
    s_start ("tcp", 1);
    dpool_pool_t *pool = s_connect (1);
    dpool_queue_t *q = dpool_queue_open (pool, "cb", 0);
    CHECK (q);
    s_in_callback_t in = {q, pool, -1, -1};
    dpool_call_t call = {.callback = s_call_in_callback, .arg = &in};
    dpool_result_t *echo = dpool_pool_apply_async (pool, "echo", "\x05", 1, &call);
    CHECK (echo && dpool_result_wait (echo, WAIT_MS) == 0 && dpool_result_successful (echo));
    dpool_result_destroy (&echo);
    CHECK_EQ_INT (in.queue_code, DPOOL_ESTATE);
    CHECK_EQ_INT (in.batch_code, DPOOL_ESTATE);
    dpool_queue_destroy (&q);

    s_getter_t getter = {pool, -1};
    pthread_t thread;
    CHECK (pthread_create (&thread, NULL, s_get_forever, &getter) == 0);
    s_wait_field (pool, "forever", "getters", 1);
    CHECK_EQ_INT (dpool_pool_terminate (pool), 0);
    pthread_join (thread, NULL);
    CHECK_EQ_INT (getter.code, DPOOL_ECLOSED);
    dpool_pool_destroy (&pool);
    s_stop_broker ();
}

/*  The broker dies (SIGKILL) and comes back while a program's get and a
    task's get wait: both are sent again to the new broker and get the
    values put there. */
static void
s_case_get_resent_after_broker_restart (void)
{
    s_start ("ipc", 1);
    dpool_pool_t *pool = s_connect (1);
    s_getter_t getter = {pool, -1};
    pthread_t thread;
    CHECK (pthread_create (&thread, NULL, s_getter, &getter) == 0);
    dp_test_buf_t args;
    dp_test_buf_init (&args);
    msgpack_pack_array (&args.pk, 2);
    dp_test_pack_str (&args.pk, "task-side");
    dp_test_pack_str (&args.pk, "pids");
    dpool_result_t *waiter = s_submit (pool, "q.wait_on", &args, 0);
    dpool_queue_t *pids = dpool_queue_open (pool, "pids", 0);
    msgpack_object pid;
    CHECK (pids && dpool_queue_get (pids, WAIT_MS, &pid) == 0);
    dpool_queue_destroy (&pids);
    s_wait_field (pool, "late", "getters", 1);
    s_wait_field (pool, "task-side", "getters", 1);

    kill (s_broker.pid, SIGKILL);
    CHECK (dp_test_wait_exit (s_broker.pid, 5000) != -1);
    const char *extra[] = {"--bind", s_broker.ipc, NULL};
    dp_test_broker_t again;
    dp_test_broker_start (&again, extra);
    s_broker = again;
    /*  Both gets are back at the new broker (the task was resubmitted by
        the client, or its worker sent its get again). */
    s_wait_field (pool, "late", "getters", 1);
    s_wait_field (pool, "task-side", "getters", 1);
    dpool_queue_t *late = dpool_queue_open (pool, "late", 0);
    dpool_queue_t *task_side = dpool_queue_open (pool, "task-side", 0);
    CHECK (late && task_side);
    CHECK (dpool_queue_put (late, "\x09", 1, 0) == 0);
    CHECK (dpool_queue_put (task_side, "\x0a", 1, 0) == 0);
    pthread_join (thread, NULL);
    CHECK_EQ_INT (getter.code, 0);
    /*  The first attempt's get, sent again, takes 10; its result is of the
        old registration and dropped, so the task, resubmitted by the
        client, runs again: it takes the next value. A task that takes
        from a queue runs at least once, as any task. */
    CHECK (dpool_queue_put (task_side, "\x0b", 1, 0) == 0);
    msgpack_object value = s_value (waiter);
    CHECK (s_int (&value) == 10 || s_int (&value) == 11);
    dpool_result_destroy (&waiter);
    dpool_queue_destroy (&late);
    dpool_queue_destroy (&task_side);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&args);
    s_stop_broker ();
}

static const dp_test_case_t s_cases[] = {
    {"queue_client_open_put_get_qsize_bounds", .run_on = s_case_client_api, .seconds = 60,
     .valgrind = "queue_client_api_broker_valgrind"},
    {"queue_producers_consumers_exactly_once_fifo_per_producer", s_case_producers_consumers,
     .valgrind = "queue_producers_consumers_broker_valgrind"},
    {"queue_consumer_killed_in_get_loses_no_value", s_case_consumer_killed_in_get,
     .valgrind = "queue_consumer_killed_in_get_broker_valgrind"},
    {"queue_bounded_put_waits_for_room_in_order", s_case_bounded_put_blocks},
    {"queue_task_get_put_timeouts_and_nowait", s_case_task_timeouts_and_nowait},
    {"queue_waiting_get_does_not_hold_up_other_calls", s_case_get_does_not_block_others},
    {"queue_waiting_gets_sent_again_after_broker_restart", s_case_get_resent_after_broker_restart},
    {"queue_and_batch_calls_end_with_their_pool", s_case_calls_end_with_their_pool},
};

int
main (int argc, char *argv[])
{
    if (argc == 4 && strcmp (argv[1], "serve") == 0) {
        s_register ();
        return dpool_worker_serve (argv[2], atoi (argv[3])) == 0 ? 0 : 1;
    }
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 90);
}

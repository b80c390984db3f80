/*  test_client_errors.c - the client library (dpool.h's pool, result and
    iterator calls): failures, callbacks and cancellation, against real processes: a dpool-broker
   and dpool-worker processes reached over tcp or ipc, or embedded pools that fork their own
   workers. `test_client_errors --list` names the cases; `test_client_errors CASE [tcp|ipc]` runs
   one.

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
    A task that fails carries the worker's message to the caller.
*/
static void
s_case_task_failure_carries_worker_message (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_object value;

    dp_test_pack_str (&buf.pk, "disk full on /data (7)");
    dpool_result_t *result = dpool_pool_apply (pool, "fail", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    dp_test_check_failed (result, DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_error (result), "disk full on /data (7)");
    CHECK_EQ_INT (dpool_result_item (result, 0, &value), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_item_error (result, 0), "disk full on /data (7)");
    dpool_result_destroy (&result);

    /*  In a map every item keeps its own message; the handle reports the
        first in input order. */
    dp_test_buf_clear (&buf);
    dp_test_pack_str (&buf.pk, "first");
    dp_test_pack_str (&buf.pk, "second");
    dp_test_pack_str (&buf.pk, "third");
    result = dpool_pool_map (pool, "fail", buf.sbuf.data, buf.sbuf.size, 2, NULL);
    CHECK (result);
    dp_test_check_failed (result, DPOOL_EFAILED);
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
    dp_test_check_failed (item, DPOOL_EFAILED);
    CHECK_EQ_STR (dpool_result_error (item), "first");
    dpool_result_destroy (&item);
    dpool_iter_destroy (&iter);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    Tasks end in named states: past their timeout, lost with their worker,
    a function nobody offers.
*/
static void
s_case_task_failure_codes (const char *transport)
{
    /*  The workers offer the test built-in crash. */
    CHECK_EQ_INT (setenv ("DPOOL_TEST_BUILTINS", "1", 1), 0);
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);

    msgpack_pack_double (&buf.pk, 30.0);
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
    dp_test_check_failed (late, DPOOL_EDEADLINE);
    CHECK_EQ_INT (dpool_result_wait (lost, 20000), 0);
    dp_test_check_failed (lost, DPOOL_ELOST);
    CHECK_EQ_INT (dpool_result_wait (nofunc, 20000), 0);
    dp_test_check_failed (nofunc, DPOOL_ENOFUNC);
    dpool_result_destroy (&late);
    dpool_result_destroy (&lost);
    dpool_result_destroy (&nofunc);

    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
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
} s_counts_t;

static void
s_on_success (dpool_result_t *result, void *arg)
{
    s_counts_t *counts = (s_counts_t *)arg;
    msgpack_object value;
    if (dpool_result_ready (result) && dpool_result_get (result, 0, &value) == 0)
        atomic_fetch_add (&counts->readable, 1);
    atomic_fetch_add (&counts->ok, 1);
}

static void
s_on_failure (dpool_result_t *result, void *arg)
{
    s_counts_t *counts = (s_counts_t *)arg;
    if (dpool_result_ready (result) && dpool_result_error (result))
        atomic_fetch_add (&counts->readable, 1);
    atomic_fetch_add (&counts->failed, 1);
}

/*  A callback that submits another task from the pool's own thread. */
static void
s_on_success_chain (dpool_result_t *result, void *arg)
{
    (void)result;
    s_counts_t *counts = (s_counts_t *)arg;
    dpool_result_t *next = dpool_pool_apply_async (counts->pool, "echo", "\x07", 1, NULL);
    atomic_store (&counts->chained, next);
}

static bool
s_chained (void *arg)
{
    return atomic_load (&((s_counts_t *)arg)->chained) != NULL;
}

static void
s_case_callbacks_run_once (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    s_counts_t counts;
    memset (&counts, 0, sizeof counts);
    counts.pool = pool;
    dpool_call_t call = {.callback = s_on_success, .error_callback = s_on_failure, .arg = &counts};

    /*  A callback may submit: it must not wait for its own thread. */
    dpool_call_t chain = {.callback = s_on_success_chain, .arg = &counts};
    dpool_result_t *first = dpool_pool_apply_async (pool, "echo", "\x01", 1, &chain);
    CHECK (first);
    CHECK (dp_test_wait_until (s_chained, &counts, 20000));
    dpool_result_t *chained = atomic_load (&counts.chained);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (chained, 20000, &value), 0);
    CHECK (dp_test_is_int (&value, 7));
    dpool_result_destroy (&chained);
    dpool_result_destroy (&first);

    /*  A handle destroyed at once still gets its callback. */
    dpool_result_t *result = dpool_pool_apply_async (pool, "echo", "\x01", 1, &call);
    CHECK (result);
    dpool_result_destroy (&result);
    dp_test_pack_str (&buf.pk, "nope");
    dpool_result_t *failing =
        dpool_pool_apply_async (pool, "fail", buf.sbuf.data, buf.sbuf.size, &call);
    dp_test_pack_range (&buf, 0, 10);
    dpool_result_t *map =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 3, &call);
    dp_test_buf_clear (&buf);
    dp_test_pack_str (&buf.pk, "a");
    dp_test_pack_str (&buf.pk, "b");
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
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    cancel: a queued task ends cancelled; the running one finishes.
*/
static void
s_case_cancel_queued_task_ends_cancelled (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 1);
    dpool_pool_t *pool = dp_test_env_connect (&env, 1);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_double (&buf.pk, 1.0);
    dpool_result_t *running =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    dpool_result_t *queued =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    msgpack_pack_double (&buf.pk, 1.0);
    dpool_result_t *map =
        dpool_pool_map_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    dpool_result_t *after = dpool_pool_apply_async (pool, "echo", "\x03", 1, NULL);
    CHECK (running && queued && map && after);
    CHECK_EQ_INT (dpool_result_cancel (queued), 0);
    CHECK_EQ_INT (dpool_result_cancel (map), 0);
    CHECK_EQ_INT (dpool_result_wait (queued, 20000), 0);
    dp_test_check_failed (queued, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_result_wait (map, 20000), 0);
    dp_test_check_failed (map, DPOOL_ECANCELLED);
    CHECK_EQ_INT (dpool_result_item_error (map, 1) != NULL, 1);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (running, 20000, &value), 0);
    CHECK_EQ_INT (dpool_result_get (after, 20000, &value), 0);
    CHECK (dp_test_is_int (&value, 3));
    /*  Cancelling a finished handle changes nothing. */
    CHECK_EQ_INT (dpool_result_cancel (running), 0);
    CHECK (dpool_result_successful (running));
    dpool_result_destroy (&running);
    dpool_result_destroy (&queued);
    dpool_result_destroy (&map);
    dpool_result_destroy (&after);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_test_env_stop (&env);
}

/*  ---------------------------------------------------------------------------
    With no broker yet, tasks wait; they run once one appears.
*/
static void
s_case_tasks_wait_for_unreachable_broker (void)
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
    pid_t broker = dp_test_track (dp_test_spawn ("broker", (char *const *)argv));
    pid_t workers = dp_test_track (dp_test_workers_start (endpoint, 1, NULL));
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 30000, &value), 0);
    CHECK (dp_test_is_int (&value, 5));
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    dp_test_untrack_stop (workers, SIGTERM);
    dp_test_untrack_stop (broker, SIGTERM);
}

/*  ---------------------------------------------------------------------------
    A broker that sends a malformed chunk result: every call of that chunk
    fails with DPOOL_EPROTO, whatever the calls before the bad pair stored,
    and the other chunk's calls keep their values. The broker is a ROUTER
    in this test, speaking through proto/.
*/
static void
s_case_malformed_chunk_result (void)
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
    dp_test_pack_range (&buf, 0, 6);
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
    dp_test_check_failed (result, DPOOL_EPROTO);
    msgpack_object value;
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT (dpool_result_item (result, i, &value), -1);
        CHECK_EQ_INT (dpool_errno (), DPOOL_EPROTO);
        CHECK_EQ_STR (dpool_result_item_error (result, i), "malformed chunk result");
    }
    CHECK_EQ_INT (dpool_result_item (result, 3, &value), 0);
    CHECK (dp_test_is_str (&value, "b"));
    CHECK_EQ_INT (dpool_result_item (result, 4, &value), 0);
    CHECK (dp_test_is_int (&value, 4));
    CHECK_EQ_INT (dpool_result_item (result, 5, &value), 0);
    CHECK (dp_test_is_int (&value, 5));
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    dp_test_buf_fini (&buf);
    dp_writer_fini (&w);
    zmq_close (router);
    zmq_ctx_term (ctx);
}

/*  ---------------------------------------------------------------------------
    Payload frames (PROTOCOL.md 3) from the client: args of DP_FRAME_MIN
    bytes or more go in frames of their own, from apply_async (the actor)
    and from apply (a lane), small ones inline; a value that comes back in
    a frame is the task's value. The broker is a ROUTER in a thread of this
    test that echoes every task.
*/
typedef struct {
    void *router;
    atomic_bool stop;
    atomic_int framed; /* framed tasks seen, their bytes checked */
    atomic_int inlined;
    const uint8_t *big;
    size_t big_size;
} frames_broker_t;

/*  Answers a SUBMIT of the client: each task's args back as its value, in
    a frame when they came in one. */
static void
s_frames_echo (frames_broker_t *fb, dp_wire_msg_t *wire, dp_msg_t *msg, dp_writer_t *w)
{
    const void *to = zmq_msg_data (&wire->frames[0]);
    size_t to_size = zmq_msg_size (&wire->frames[0]);
    dp_task_t task;
    dp_list_t list = msg->u.list;
    while (dp_list_next_task (&list, DP_CMD_SUBMIT, &task)) {
        dp_list_begin (w);
        if (task.args.size >= DP_FRAME_MIN) {
            CHECK (task.frame != 0);
            CHECK (task.args.size == fb->big_size &&
                   !memcmp (task.args.data, fb->big, fb->big_size));
            fb->framed++;
            dp_list_add_result_framed (w, task.id, 0);
            dp_list_end (w);
            zmq_msg_t value;
            CHECK_EQ_INT (zmq_msg_init_size (&value, task.args.size), 0);
            memcpy (zmq_msg_data (&value), task.args.data, task.args.size);
            CHECK_EQ_INT (
                dp_wire_send_frames (fb->router, to, to_size, DP_CMD_RESULT, w, &value, 1, 0), 0);
            zmq_msg_close (&value);
        } else {
            CHECK_EQ_INT (task.frame, 0);
            fb->inlined++;
            dp_list_add_result (w, task.id, 0, task.args.data, task.args.size);
            dp_list_end (w);
            CHECK_EQ_INT (dp_wire_send_writer (fb->router, to, to_size, DP_CMD_RESULT, w, 0), 0);
        }
    }
}

static void *
s_frames_broker (void *arg)
{
    frames_broker_t *fb = (frames_broker_t *)arg;
    dp_writer_t w;
    dp_writer_init (&w);
    while (!fb->stop) {
        zmq_pollitem_t item = {fb->router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, 50) <= 0)
            continue;
        dp_wire_msg_t wire;
        CHECK_EQ_INT (dp_wire_recv (fb->router, &wire, 0), 0);
        zmq_msg_t *rid = NULL;
        dp_msg_t msg;
        CHECK_EQ_INT (dp_wire_decode (&wire, true, &rid, &msg), DP_OK);
        if (msg.cmd == DP_CMD_HELLO) {
            dp_encode_welcome (&w, DP_HEARTBEAT_MS, DP_EXPIRY_MS, "fake", 1);
            CHECK_EQ_INT (dp_wire_send_writer (fb->router, zmq_msg_data (rid), zmq_msg_size (rid),
                                               DP_CMD_WELCOME, &w, 0),
                          0);
        } else if (msg.cmd == DP_CMD_SUBMIT)
            s_frames_echo (fb, &wire, &msg, &w);
        dp_wire_close (&wire);
    }
    dp_writer_fini (&w);
    return NULL;
}

/*  Stops the test unless result holds a bin equal to data. */
static void
s_frames_check_value (dpool_result_t *result, const uint8_t *data, size_t size)
{
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, 20000, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_BIN);
    size_t header = data[0] == 0xc4 ? 2 : 5; /* bin8 or bin32 */
    CHECK (value.via.bin.size + header == size);
    CHECK (memcmp (value.via.bin.ptr, data + header, size - header) == 0);
}

static void
s_case_payload_frames (void)
{
    enum { BIG = 64 * 1024 };
    char endpoint[1024];
    snprintf (endpoint, sizeof endpoint, "%s", dp_test_ipc ("frames"));
    void *ctx = zmq_ctx_new ();
    frames_broker_t fb = {.router = zmq_socket (ctx, ZMQ_ROUTER)};
    CHECK (fb.router);
    CHECK_EQ_INT (dp_wire_configure (fb.router, true, 0), 0);
    CHECK_EQ_INT (zmq_bind (fb.router, endpoint), 0);
    uint8_t *big = (uint8_t *)malloc (BIG + 5);
    CHECK (big);
    big[0] = 0xc6; /* bin32 */
    big[1] = 0;
    big[2] = (uint8_t)(BIG >> 16);
    big[3] = (uint8_t)(BIG >> 8);
    big[4] = 0;
    for (int i = 0; i < BIG; i++)
        big[5 + i] = (uint8_t)(i * 13);
    fb.big = big;
    fb.big_size = BIG + 5;
    pthread_t thread;
    CHECK_EQ_INT (pthread_create (&thread, NULL, s_frames_broker, &fb), 0);

    dpool_pool_t *pool = dpool_pool_connect (endpoint);
    CHECK (pool);
    static const uint8_t small[] = {0xc4, 0x02, 'h', 'i'};
    dpool_result_t *framed = dpool_pool_apply_async (pool, "echo", big, BIG + 5, NULL);
    dpool_result_t *inlined = dpool_pool_apply_async (pool, "echo", small, sizeof small, NULL);
    CHECK (framed && inlined);
    s_frames_check_value (framed, big, BIG + 5);
    s_frames_check_value (inlined, small, sizeof small);
    dpool_result_t *applied = dpool_pool_apply (pool, "echo", big, BIG + 5, NULL);
    CHECK (applied);
    s_frames_check_value (applied, big, BIG + 5);
    CHECK_EQ_INT (fb.framed, 2);
    CHECK_EQ_INT (fb.inlined, 1);
    dpool_result_destroy (&framed);
    dpool_result_destroy (&inlined);
    dpool_result_destroy (&applied);
    dpool_pool_destroy (&pool);
    fb.stop = true;
    pthread_join (thread, NULL);
    free (big);
    zmq_close (fb.router);
    zmq_ctx_term (ctx);
}

/*  As with Pool, whose get() returns after the callback ran: a thread
    waiting for a handle (dpool_result_wait, _get, _ready) sees what its
    callback did. The callbacks take their time (100 ms) so that a waiter
    woken before them would see nothing. */
static void
s_on_slow (dpool_result_t *result, void *arg)
{
    (void)result;
    dp_test_sleep_ms (100);
    atomic_fetch_add ((atomic_int *)arg, 1);
}

static void
s_case_wait_sees_callback (const char *transport)
{
    dp_test_env_t env;
    dp_test_env_start (&env, transport, 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    atomic_int ran = 0;
    dpool_call_t call = {.callback = s_on_slow, .error_callback = s_on_slow, .arg = &ran};
    dpool_result_t *one = dpool_pool_apply_async (pool, "echo", "\x01", 1, &call);
    CHECK (one);
    CHECK_EQ_INT (dpool_result_wait (one, 20000), 0);
    CHECK_EQ_INT (atomic_load (&ran), 1);
    dpool_result_destroy (&one);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dp_test_pack_str (&buf.pk, "nope");
    dpool_result_t *failing =
        dpool_pool_apply_async (pool, "fail", buf.sbuf.data, buf.sbuf.size, &call);
    CHECK (failing);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (failing, 20000, &value), -1);
    CHECK_EQ_INT (atomic_load (&ran), 2);
    dpool_result_destroy (&failing);
    dp_test_buf_clear (&buf);
    dp_test_pack_range (&buf, 0, 10);
    dpool_result_t *map =
        dpool_pool_map_async (pool, "echo", buf.sbuf.data, buf.sbuf.size, 3, &call);
    CHECK (map);
    int64_t deadline = dp_now_ms () + 20000;
    while (!dpool_result_ready (map) && dp_now_ms () < deadline)
        dp_test_sleep_ms (1);
    CHECK (dpool_result_ready (map));
    CHECK_EQ_INT (atomic_load (&ran), 3);
    dpool_result_destroy (&map);
    dp_test_buf_fini (&buf);
    dpool_pool_destroy (&pool);
    dp_test_env_stop (&env);
}

static const dp_test_case_t s_cases[] = {
    {"client_task_failure_carries_worker_message",
     .run_on = s_case_task_failure_carries_worker_message, .seconds = 60},
    {"client_task_failure_codes", .run_on = s_case_task_failure_codes, .seconds = 90},
    {"client_callbacks_run_once", .run_on = s_case_callbacks_run_once, .seconds = 60},
    {"client_wait_sees_what_the_callback_did", .run_on = s_case_wait_sees_callback, .seconds = 60},
    {"client_cancel_queued_task_ends_cancelled",
     .run_on = s_case_cancel_queued_task_ends_cancelled, .seconds = 60},
    {"client_tasks_wait_for_unreachable_broker", s_case_tasks_wait_for_unreachable_broker,
     .seconds = 60},
    {"client_malformed_chunk_result", s_case_malformed_chunk_result, .seconds = 60},
    {"client_payload_frames", s_case_payload_frames, .seconds = 60},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

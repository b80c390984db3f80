/*  test_worker_engine.c - the worker engine and its supervisor, as real
    dpool-worker processes see them, against a small fake broker: a ROUTER
    socket in this test that speaks DPP/1 through proto/. Each case is one
    ctest test: test_worker_engine CASE.
*/
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dp_supervisor.h"
#include "dp_worker.h"
#include "dpool.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#ifndef DPOOL_EXAMPLE_PLUGIN
#define DPOOL_EXAMPLE_PLUGIN "dpool_example_plugin.so"
#endif

#define LONG_EXPIRY 60000 /* expiry_ms the fake broker announces when it does not heartbeat */
#define WAIT_MS     5000  /* how long a step may take before the test fails */

/*  ---------------------------------------------------------------------------
    The fake broker.
*/
#define MAX_WELCOMED 64

typedef struct {
    void *ctx;
    void *router;
    dp_writer_t writer;
    /*  Routing ids of the workers it registered (see s_fake_welcome). */
    uint8_t welcomed[MAX_WELCOMED][256];
    size_t welcomed_size[MAX_WELCOMED];
    int nwelcomed;
    /*  The worker registered last: where DISPATCH and the like go. */
    uint8_t current[256];
    size_t current_size;
    uint64_t current_pid;
    uint64_t pings;
} fake_t;

/*  One message from a worker, decoded; rid is a copy of its routing id. */
typedef struct {
    dp_wire_msg_t wire;
    dp_msg_t m;
    uint8_t rid[256];
    size_t rid_size;
    bool held;
} got_t;

static void
s_fake_start (fake_t *fake, const char *endpoint)
{
    memset (fake, 0, sizeof *fake);
    fake->ctx = zmq_ctx_new ();
    CHECK (fake->ctx);
    fake->router = zmq_socket (fake->ctx, ZMQ_ROUTER);
    CHECK (fake->router);
    CHECK_EQ_INT (dp_wire_configure (fake->router, true, 0), 0);
    CHECK_EQ_INT (zmq_bind (fake->router, endpoint), 0);
    dp_writer_init (&fake->writer);
}

static void
s_got_release (got_t *got)
{
    if (got->held)
        dp_wire_close (&got->wire);
    got->held = false;
}

static void
s_fake_stop (fake_t *fake)
{
    dp_writer_fini (&fake->writer);
    zmq_close (fake->router);
    zmq_ctx_term (fake->ctx);
}

/*  Receives the next message within timeout_ms; false if none came. Every
    message a worker sends must be well formed. */
static bool
s_fake_recv (fake_t *fake, got_t *got, int timeout_ms)
{
    s_got_release (got);
    zmq_pollitem_t item = {fake->router, 0, ZMQ_POLLIN, 0};
    int rc;
    while ((rc = zmq_poll (&item, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    if (rc <= 0)
        return false;
    CHECK_EQ_INT (dp_wire_recv (fake->router, &got->wire, 0), 0);
    got->held = true;
    zmq_msg_t *rid = NULL;
    dp_reason_t reason = dp_wire_decode (&got->wire, true, &rid, &got->m);
    if (reason != DP_OK)
        dp_test_fail (__FILE__, __LINE__, "malformed message from a worker: %s",
                      dp_reason_name (reason));
    got->rid_size = zmq_msg_size (rid);
    CHECK (got->rid_size <= sizeof got->rid);
    memcpy (got->rid, zmq_msg_data (rid), got->rid_size);
    return true;
}

static bool
s_fake_welcomed (const fake_t *fake, const got_t *got)
{
    for (int i = 0; i < fake->nwelcomed; i++)
        if (fake->welcomed_size[i] == got->rid_size &&
            memcmp (fake->welcomed[i], got->rid, got->rid_size) == 0)
            return true;
    return false;
}

/*  Receives until a cmd arrives, within timeout_ms. Skips HEARTBEATs, and
    the READY and BYE of registration attempts it did not welcome (a worker
    retrying READY on a fresh socket, then closing the one that lost). Any
    other command fails the test. */
static void
s_fake_expect (fake_t *fake, got_t *got, dp_cmd_t cmd, int timeout_ms, int line)
{
    int64_t until = dp_now_ms () + timeout_ms;
    for (;;) {
        int64_t left = until - dp_now_ms ();
        if (left < 0 || !s_fake_recv (fake, got, (int)left))
            dp_test_fail (__FILE__, line, "no %s from the worker in %d ms", dp_cmd_name (cmd),
                          timeout_ms);
        if (got->m.cmd == cmd)
            return;
        bool attempt = (got->m.cmd == DP_CMD_READY || got->m.cmd == DP_CMD_BYE) &&
                       !s_fake_welcomed (fake, got);
        if (got->m.cmd != DP_CMD_HEARTBEAT && !attempt)
            dp_test_fail (__FILE__, line, "%s from the worker while waiting for %s",
                          dp_cmd_name (got->m.cmd), dp_cmd_name (cmd));
    }
}

#define EXPECT(fake, got, cmd) s_fake_expect ((fake), (got), (cmd), WAIT_MS, __LINE__)

/*  Sends the writer's body as cmd to the worker registered last. Returns 0,
    or -1 with errno (EHOSTUNREACH: that socket is gone). */
static int
s_fake_try_send (fake_t *fake, dp_cmd_t cmd)
{
    return dp_wire_send_writer (fake->router, fake->current, fake->current_size, cmd,
                                &fake->writer, 0);
}

static void
s_fake_send (fake_t *fake, dp_cmd_t cmd)
{
    CHECK_EQ_INT (s_fake_try_send (fake, cmd), 0);
}

static bool
s_from_current (const fake_t *fake, const got_t *got)
{
    return got->rid_size == fake->current_size &&
           memcmp (got->rid, fake->current, got->rid_size) == 0;
}

#define PING_REF 1000000 /* refs of s_fake_welcome's ping jobs, above any test's */

/*  Registers the worker whose READY is in got (or the next READY) the way a
    broker would, and makes sure it took: WELCOME, then a ping job (echo)
    whose DONE proves that the worker adopted that socket. A worker that
    retried READY on a fresh socket meanwhile may drop the welcomed one (a
    send that fails, or its BYE; slow machines, valgrind): then the next READY
    of the same process is taken. The worker becomes fake->current; got is
    left empty. */
static void
s_fake_welcome (fake_t *fake, got_t *got, uint32_t heartbeat_ms, uint32_t expiry_ms)
{
    uint64_t pid = got->held && got->m.cmd == DP_CMD_READY ? got->m.u.ready.pid : 0;
    for (;;) {
        while (!got->held || got->m.cmd != DP_CMD_READY || (pid && got->m.u.ready.pid != pid))
            s_fake_expect (fake, got, DP_CMD_READY, WAIT_MS, __LINE__);
        pid = got->m.u.ready.pid;
        memcpy (fake->current, got->rid, got->rid_size);
        fake->current_size = got->rid_size;
        fake->current_pid = got->m.u.ready.pid;
        s_got_release (got);
        dp_encode_welcome (&fake->writer, heartbeat_ms, expiry_ms, "fake", 1);
        if (s_fake_try_send (fake, DP_CMD_WELCOME)) {
            CHECK_EQ_INT (errno, EHOSTUNREACH);
            continue;
        }
        uint64_t ping = PING_REF + fake->pings++;
        dp_task_t task = {
            .id = ping, .fn = {(const uint8_t *)"echo", 4}, .args = {(const uint8_t *)"\xc0", 1}};
        dp_list_begin (&fake->writer);
        dp_list_add_task (&fake->writer, DP_CMD_DISPATCH, &task);
        dp_list_end (&fake->writer);
        if (s_fake_try_send (fake, DP_CMD_DISPATCH)) {
            CHECK_EQ_INT (errno, EHOSTUNREACH);
            continue;
        }
        for (;;) {
            if (!s_fake_recv (fake, got, WAIT_MS))
                dp_test_fail (__FILE__, __LINE__, "no answer to a ping from the worker");
            if (!s_from_current (fake, got))
                continue; /* another attempt's READY or BYE: its worker retries */
            if (got->m.cmd == DP_CMD_DONE) {
                dp_result_t result;
                dp_list_t list = got->m.u.list;
                CHECK (dp_list_next_result (&list, &result));
                CHECK_EQ_INT (result.id, ping);
                CHECK_EQ_INT (result.code, 0);
                CHECK (fake->nwelcomed < MAX_WELCOMED);
                memcpy (fake->welcomed[fake->nwelcomed], fake->current, fake->current_size);
                fake->welcomed_size[fake->nwelcomed++] = fake->current_size;
                s_got_release (got);
                return;
            }
            if (got->m.cmd == DP_CMD_BYE)
                break; /* the worker dropped this socket: wait for its next READY */
            CHECK (got->m.cmd == DP_CMD_HEARTBEAT);
        }
        s_got_release (got);
    }
}

/*  Answers to a worker's BYE. The worker waits only so long for it, and may
    be gone already. */
static void
s_fake_reply_bye (fake_t *fake, const got_t *to)
{
    dp_encode_empty (&fake->writer);
    if (dp_wire_send_writer (fake->router, to->rid, to->rid_size, DP_CMD_BYE, &fake->writer, 0))
        CHECK_EQ_INT (errno, EHOSTUNREACH);
}

/*  A job to dispatch: args are packed msgpack bytes. */
typedef struct {
    uint64_t ref;
    const char *fn;
    const char *args;
    size_t args_size;
    uint32_t timeout_ms;
    uint32_t flags;
} job_t;

/*  Sends the jobs to the worker registered last. */
static void
s_fake_dispatch (fake_t *fake, const job_t *jobs, size_t count)
{
    dp_list_begin (&fake->writer);
    for (size_t i = 0; i < count; i++) {
        dp_task_t task = {.id = jobs[i].ref,
                          .fn = {(const uint8_t *)jobs[i].fn, strlen (jobs[i].fn)},
                          .args = {(const uint8_t *)jobs[i].args, jobs[i].args_size},
                          .timeout_ms = jobs[i].timeout_ms,
                          .attempt = 1,
                          .flags = jobs[i].flags};
        dp_list_add_task (&fake->writer, DP_CMD_DISPATCH, &task);
    }
    dp_list_end (&fake->writer);
    s_fake_send (fake, DP_CMD_DISPATCH);
}

/*  A READY's pid, and whether it offers fn. */
static uint64_t
s_ready_pid (const got_t *got)
{
    CHECK (got->m.cmd == DP_CMD_READY);
    return got->m.u.ready.pid;
}

static bool
s_ready_offers (const got_t *got, const char *fn)
{
    dp_list_t functions = got->m.u.ready.functions;
    dp_span_t name;
    while (dp_list_next_str (&functions, &name))
        if (dp_span_eq (name, fn))
            return true;
    return false;
}

/*  Results gathered from DONE messages, by ref. */
#define MAX_RESULTS 256
typedef struct {
    int32_t code[MAX_RESULTS];
    msgpack_object value[MAX_RESULTS];
    bool seen[MAX_RESULTS];
    char *bytes[MAX_RESULTS]; /* the values' bytes, which the objects point into */
    int count;
    int messages;
    msgpack_zone zone;
} results_t;

static void
s_results_init (results_t *results)
{
    memset (results, 0, sizeof *results);
    msgpack_zone_init (&results->zone, 4096);
}

static void
s_results_fini (results_t *results)
{
    for (int i = 0; i < MAX_RESULTS; i++)
        free (results->bytes[i]);
    msgpack_zone_destroy (&results->zone);
}

/*  Takes the entries of a DONE into results; each ref must come once. */
static int
s_results_take (results_t *results, got_t *got)
{
    CHECK (got->m.cmd == DP_CMD_DONE);
    results->messages++;
    dp_list_t list = got->m.u.list;
    dp_result_t result;
    int taken = 0;
    while (dp_list_next_result (&list, &result)) {
        CHECK (result.id < MAX_RESULTS);
        if (results->seen[result.id])
            dp_test_fail (__FILE__, __LINE__, "a second result for ref %llu",
                          (unsigned long long)result.id);
        results->seen[result.id] = true;
        results->code[result.id] = result.code;
        results->bytes[result.id] = (char *)malloc (result.value.size);
        CHECK (results->bytes[result.id]);
        memcpy (results->bytes[result.id], result.value.data, result.value.size);
        size_t offset = 0;
        CHECK (msgpack_unpack (results->bytes[result.id], result.value.size, &offset,
                               &results->zone,
                               &results->value[result.id]) == MSGPACK_UNPACK_SUCCESS);
        results->count++;
        taken++;
    }
    return taken;
}

/*  Receives DONEs until count results are in. */
static void
s_results_wait (fake_t *fake, got_t *got, results_t *results, int count, int line)
{
    while (results->count < count) {
        s_fake_expect (fake, got, DP_CMD_DONE, WAIT_MS, line);
        s_results_take (results, got);
    }
}

static bool
s_str_eq (const msgpack_object *value, const char *text)
{
    return value->type == MSGPACK_OBJECT_STR && value->via.str.size == strlen (text) &&
           memcmp (value->via.str.ptr, text, value->via.str.size) == 0;
}

static bool
s_str_starts (const msgpack_object *value, const char *text)
{
    size_t len = strlen (text);
    return value->type == MSGPACK_OBJECT_STR && value->via.str.size >= len &&
           memcmp (value->via.str.ptr, text, len) == 0;
}

/*  Packs msgpack into a static-lifetime buffer the test owns. */
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} pack_t;

static void
s_pack_init (pack_t *pack)
{
    msgpack_sbuffer_init (&pack->sbuf);
    msgpack_packer_init (&pack->pk, &pack->sbuf, msgpack_sbuffer_write);
}

static void
s_pack_str (pack_t *pack, const char *text)
{
    msgpack_pack_str (&pack->pk, strlen (text));
    msgpack_pack_str_body (&pack->pk, text, strlen (text));
}

/*  Starts dpool-worker with procs processes and extra options. */
static pid_t
s_workers (const char *endpoint, int procs, const char *const *extra)
{
    const char *argv[32];
    int argc = 0;
    argv[argc++] = "--log-level";
    argv[argc++] = getenv ("DPOOL_LOG") ? getenv ("DPOOL_LOG") : "info";
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    return dp_test_workers_start (endpoint, procs, argv);
}

/*  Starts a fake broker and a dpool-worker with one process, and waits for
    that process's READY (in got). Returns the supervisor's pid. */
static pid_t
s_one_worker (fake_t *fake, got_t *got)
{
    const char *endpoint = dp_test_ipc ("broker");
    s_fake_start (fake, endpoint);
    pid_t supervisor = s_workers (endpoint, 1, NULL);
    EXPECT (fake, got, DP_CMD_READY);
    return supervisor;
}

/*  Stops the supervisor with SIGTERM, answering its workers' BYEs, and
    checks that it ends with status 0 within the grace period. */
static void
s_stop_workers (fake_t *fake, pid_t supervisor)
{
    CHECK_EQ_INT (kill (supervisor, SIGTERM), 0);
    int64_t until = dp_now_ms () + DP_SUPERVISOR_GRACE_MS + 3000;
    int status = -1;
    got_t got = {0};
    while (dp_now_ms () < until) {
        if (s_fake_recv (fake, &got, 20) && got.m.cmd == DP_CMD_BYE)
            s_fake_reply_bye (fake, &got);
        status = dp_test_wait_exit (supervisor, 0);
        if (status != -1)
            break;
    }
    s_got_release (&got);
    CHECK (status != -1);
    CHECK (WIFEXITED (status));
    CHECK_EQ_INT (WEXITSTATUS (status), 0);
}

/*  ---------------------------------------------------------------------------
    Cases.
*/

/*  True once the log file at arg shows two READYs sent. */
static bool
s_tried_twice (void *arg)
{
    char *text = dp_test_read_file ((const char *)arg);
    const char *first = text ? strstr (text, "READY to") : NULL;
    bool twice = first && strstr (first + 1, "READY to");
    free (text);
    return twice;
}

/*  READY carries what the worker is; with no broker it is sent again, on a
    fresh socket, until one answers. */
static void
s_case_registers (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    const char *extra[] = {"--credit", "3", "--name", "w-test", "--log-level", "debug", NULL};
    pid_t supervisor = s_workers (endpoint, 1, extra);
    /*  Let the worker try a few times with no broker there. */
    CHECK (dp_test_wait_until (s_tried_twice, (void *)dp_test_path ("workers1.err"), WAIT_MS));
    fake_t fake;
    s_fake_start (&fake, endpoint);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    dp_ready_t *ready = &got.m.u.ready;
    CHECK (dp_span_eq (ready->name, "w-test"));
    CHECK (dp_span_eq (ready->host, dp_hostname ()));
    CHECK_EQ_INT (ready->credit, 3);
    CHECK (ready->pid > 0 && (pid_t)ready->pid != supervisor);
    const char *builtins[] = {"echo", "sleep", "fail", "crash", "pid"};
    for (int i = 0; i < 5; i++)
        CHECK (s_ready_offers (&got, builtins[i]));
    /*  Unanswered, READY comes again (with backoff), from a fresh socket. */
    uint64_t pid = s_ready_pid (&got);
    uint8_t first_rid[256];
    size_t first_rid_size = got.rid_size;
    memcpy (first_rid, got.rid, got.rid_size);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (got.rid_size == first_rid_size && memcmp (got.rid, first_rid, first_rid_size) == 0);
    CHECK_EQ_INT (s_ready_pid (&got), pid);
    s_fake_welcome (&fake, &got, 100, LONG_EXPIRY);
    /*  Welcomed, it heartbeats on the socket that was welcomed (the other
        attempt's socket says BYE, skipped by EXPECT). */
    EXPECT (&fake, &got, DP_CMD_HEARTBEAT);
    CHECK (s_from_current (&fake, &got));
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  Jobs of every kind come back with the right code and value. */
static void
s_case_jobs (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    const char *extra[] = {"--credit", "20", NULL};
    pid_t supervisor = s_workers (endpoint, 1, extra);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    uint64_t pid = s_ready_pid (&got);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);

    pack_t echo, boom, map, chunk, sleeps, pidargs, short_sleep;
    s_pack_init (&echo);
    msgpack_pack_array (&echo.pk, 2);
    msgpack_pack_int (&echo.pk, 1);
    s_pack_str (&echo, "two");
    s_pack_init (&boom);
    s_pack_str (&boom, "boom");
    s_pack_init (&map);
    msgpack_pack_map (&map.pk, 1);
    s_pack_str (&map, "k");
    msgpack_pack_int (&map.pk, 5);
    s_pack_init (&chunk);
    msgpack_pack_array (&chunk.pk, 3);
    msgpack_pack_int (&chunk.pk, 7);
    s_pack_str (&chunk, "x");
    msgpack_pack_nil (&chunk.pk);
    s_pack_init (&sleeps);
    msgpack_pack_array (&sleeps.pk, 2);
    s_pack_str (&sleeps, "later");
    msgpack_pack_double (&sleeps.pk, 0.01);
    s_pack_init (&pidargs);
    msgpack_pack_nil (&pidargs.pk);
    s_pack_init (&short_sleep);
    msgpack_pack_double (&short_sleep.pk, 0.05);

    job_t jobs[] = {
        {1, "echo", echo.sbuf.data, echo.sbuf.size, 0, 0},
        {2, "fail", boom.sbuf.data, boom.sbuf.size, 0, 0},
        {3, "fail", map.sbuf.data, map.sbuf.size, 0, 0},
        {4, "no.such.fn", echo.sbuf.data, echo.sbuf.size, 0, 0},
        {5, "echo", chunk.sbuf.data, chunk.sbuf.size, 0, DP_TASK_CHUNK},
        {6, "sleep", sleeps.sbuf.data, sleeps.sbuf.size, 0, DP_TASK_CHUNK},
        {7, "sleep", short_sleep.sbuf.data, short_sleep.sbuf.size, 5000, 0},
        {8, "pid", pidargs.sbuf.data, pidargs.sbuf.size, 0, 0},
    };
    s_fake_dispatch (&fake, jobs, 4);
    s_fake_dispatch (&fake, jobs + 4, 4);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 8, __LINE__);

    CHECK_EQ_INT (results.code[1], 0);
    CHECK (results.value[1].type == MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_INT (results.value[1].via.array.size, 2);
    CHECK (s_str_eq (&results.value[1].via.array.ptr[1], "two"));

    CHECK_EQ_INT (results.code[2], DPOOL_EFAILED);
    CHECK (s_str_eq (&results.value[2], "boom"));
    CHECK_EQ_INT (results.code[3], DPOOL_EFAILED);
    CHECK (s_str_eq (&results.value[3], "{\"k\": 5}"));
    CHECK_EQ_INT (results.code[4], DPOOL_ENOFUNC);
    CHECK (s_str_starts (&results.value[4], "no function named 'no.such.fn'"));

    /*  A chunk succeeds as a whole; each call has its [code, value]. */
    CHECK_EQ_INT (results.code[5], 0);
    msgpack_object *pairs = &results.value[5];
    CHECK (pairs->type == MSGPACK_OBJECT_ARRAY && pairs->via.array.size == 3);
    for (int i = 0; i < 3; i++) {
        msgpack_object *pair = &pairs->via.array.ptr[i];
        CHECK (pair->type == MSGPACK_OBJECT_ARRAY && pair->via.array.size == 2);
        CHECK_EQ_INT (pair->via.array.ptr[0].via.u64, 0);
    }
    CHECK_EQ_INT (pairs->via.array.ptr[0].via.array.ptr[1].via.u64, 7);
    CHECK (s_str_eq (&pairs->via.array.ptr[1].via.array.ptr[1], "x"));
    CHECK (pairs->via.array.ptr[2].via.array.ptr[1].type == MSGPACK_OBJECT_NIL);

    CHECK_EQ_INT (results.code[6], 0);
    pairs = &results.value[6];
    CHECK (pairs->type == MSGPACK_OBJECT_ARRAY && pairs->via.array.size == 2);
    CHECK_EQ_INT (pairs->via.array.ptr[0].via.array.ptr[0].via.u64, DPOOL_EFAILED);
    CHECK (s_str_starts (&pairs->via.array.ptr[0].via.array.ptr[1], "sleep: expected"));
    CHECK_EQ_INT (pairs->via.array.ptr[1].via.array.ptr[0].via.u64, 0);

    /*  A job that ends within its timeout is not killed: the same process
        answers the next one. */
    CHECK_EQ_INT (results.code[7], 0);
    CHECK_EQ_INT (results.code[8], 0);
    msgpack_object *info = &results.value[8];
    CHECK (info->type == MSGPACK_OBJECT_MAP && info->via.map.size == 2);
    CHECK (s_str_eq (&info->via.map.ptr[0].key, "pid"));
    CHECK_EQ_INT (info->via.map.ptr[0].val.via.u64, pid);

    s_results_fini (&results);
    msgpack_sbuffer_destroy (&echo.sbuf);
    msgpack_sbuffer_destroy (&boom.sbuf);
    msgpack_sbuffer_destroy (&map.sbuf);
    msgpack_sbuffer_destroy (&chunk.sbuf);
    msgpack_sbuffer_destroy (&sleeps.sbuf);
    msgpack_sbuffer_destroy (&pidargs.sbuf);
    msgpack_sbuffer_destroy (&short_sleep.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  Fast results share DONE messages; a slow job's result does not wait for
    the next slow job. */
static void
s_case_batching (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    const char *extra[] = {"--credit", "200", NULL};
    pid_t supervisor = s_workers (endpoint, 1, extra);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);

    pack_t value;
    s_pack_init (&value);
    msgpack_pack_int (&value.pk, 42);
    job_t jobs[200];
    for (int i = 0; i < 200; i++)
        jobs[i] = (job_t){(uint64_t)i, "echo", value.sbuf.data, value.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, jobs, 200);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 200, __LINE__);
    for (int i = 0; i < 200; i++)
        CHECK_EQ_INT (results.code[i], 0);
    /*  At most 64 per DONE, and far fewer DONEs than results. */
    CHECK (results.messages >= 200 / DP_WORKER_DONE_BATCH);
    CHECK (results.messages < 100);
    s_results_fini (&results);

    /*  Two slow jobs in one DISPATCH: the first result arrives alone. */
    pack_t nap;
    s_pack_init (&nap);
    msgpack_pack_double (&nap.pk, 0.4);
    job_t slow[] = {{1, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0},
                    {2, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0}};
    int64_t start = dp_now_ms ();
    s_fake_dispatch (&fake, slow, 2);
    s_results_init (&results);
    EXPECT (&fake, &got, DP_CMD_DONE);
    int64_t first = dp_now_ms () - start;
    CHECK_EQ_INT (s_results_take (&results, &got), 1);
    CHECK (results.seen[1]);
    CHECK (first >= 390 && first < 700);
    EXPECT (&fake, &got, DP_CMD_DONE);
    CHECK_EQ_INT (s_results_take (&results, &got), 1);
    CHECK (results.seen[2]);
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&value.sbuf);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  While a task sleeps, the I/O thread keeps heartbeating. */
static void
s_case_heartbeat (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    s_fake_welcome (&fake, &got, 100, LONG_EXPIRY);
    pack_t nap;
    s_pack_init (&nap);
    msgpack_pack_double (&nap.pk, 1.0);
    job_t job = {9, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &job, 1);
    int heartbeats = 0;
    results_t results;
    s_results_init (&results);
    while (results.count == 0) {
        CHECK (s_fake_recv (&fake, &got, WAIT_MS));
        if (got.m.cmd == DP_CMD_HEARTBEAT)
            heartbeats++;
        else
            s_results_take (&results, &got);
    }
    CHECK_EQ_INT (results.code[9], 0);
    /*  1 s of task; this broker never beats, so the worker speaks unasked
        after 150 ms (1.5 intervals) of its own silence: about 6. */
    CHECK (heartbeats >= 5);
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  A worker that holds no job is idle and beats DP_IDLE_FACTOR times as
    slowly (interval 100 ms, expiry 400 ms here): unasked heartbeats come
    450 ms apart, not 150, and a silent broker is given up after 1200 ms,
    not 400 (then the worker registers again). Heartbeats are counted, not
    timed one by one: this test's own delays in reading them cannot fail
    it. */
static void
s_case_idle_beat (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    int64_t before = dp_now_ms ();
    s_fake_welcome (&fake, &got, 100, 400);
    int heartbeats = 0;
    for (;;) {
        CHECK (s_fake_recv (&fake, &got, WAIT_MS));
        if (got.m.cmd != DP_CMD_HEARTBEAT)
            break;
        heartbeats++;
    }
    /*  Past the idle expiry: it connects again, on a new socket (closing
        the old one with a BYE first). */
    int64_t gone = dp_now_ms ();
    CHECK (got.m.cmd == DP_CMD_READY || got.m.cmd == DP_CMD_BYE);
    CHECK (gone - before >= DP_IDLE_FACTOR * 400);
    /*  About 1.2 s of silence from the broker: two unasked heartbeats at
        the idle rate, eight at the busy one. */
    if (heartbeats < 1 || heartbeats > 4)
        dp_test_fail (__FILE__, __LINE__, "%d unasked heartbeats in %lld ms while idle",
                      heartbeats, (long long)(gone - before));
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  A job past its timeout: DONE EDEADLINE, BYE, and the supervisor starts a
    new process, which registers afresh. */
static void
s_case_timeout (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    const char *extra[] = {"--credit", "2", NULL};
    pid_t supervisor = s_workers (endpoint, 1, extra);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    uint64_t pid = s_ready_pid (&got);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    pack_t nap, value;
    s_pack_init (&nap);
    msgpack_pack_int (&nap.pk, 30);
    s_pack_init (&value);
    msgpack_pack_int (&value.pk, 1);
    job_t jobs[] = {{1, "echo", value.sbuf.data, value.sbuf.size, 0, 0},
                    {2, "sleep", nap.sbuf.data, nap.sbuf.size, 300, 0},
                    {3, "echo", value.sbuf.data, value.sbuf.size, 0, 0}};
    int64_t start = dp_now_ms ();
    s_fake_dispatch (&fake, jobs, 3);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 2, __LINE__);
    CHECK (dp_now_ms () - start >= 300);
    CHECK_EQ_INT (results.code[1], 0);
    CHECK_EQ_INT (results.code[2], DPOOL_EDEADLINE);
    CHECK (s_str_eq (&results.value[2], "task exceeded its timeout of 300 ms"));
    CHECK (!results.seen[3]);
    EXPECT (&fake, &got, DP_CMD_BYE);
    s_fake_reply_bye (&fake, &got);
    /*  The prefetched job 3 is the broker's to requeue; a new process comes. */
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (s_ready_pid (&got) == pid); /* a stray attempt of the old one */
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&nap.sbuf);
    msgpack_sbuffer_destroy (&value.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  A worker process killed outright is replaced. */
static void
s_case_killed (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    pid_t supervisor = s_workers (endpoint, 2, NULL);
    got_t got = {0};
    uint64_t pids[2];
    for (int i = 0; i < 2;) {
        EXPECT (&fake, &got, DP_CMD_READY);
        if (i == 1 && s_ready_pid (&got) == pids[0])
            continue; /* a stray attempt of the first */
        s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
        pids[i++] = fake.current_pid;
    }
    CHECK_EQ_INT (kill ((pid_t)pids[0], SIGKILL), 0);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (s_ready_pid (&got) == pids[0] || s_ready_pid (&got) == pids[1]);
    /*  The crash built-in kills its process too; it is replaced as well. */
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    uint64_t pid = fake.current_pid;
    pack_t nil;
    s_pack_init (&nil);
    msgpack_pack_nil (&nil.pk);
    job_t crash = {1, "crash", nil.sbuf.data, nil.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &crash, 1);
    for (;;) {
        EXPECT (&fake, &got, DP_CMD_READY);
        uint64_t again = s_ready_pid (&got);
        if (again != pid && again != pids[1])
            break;
    }
    msgpack_sbuffer_destroy (&nil.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  SIGTERM while a task runs: BYE, and everything stops promptly. */
static void
s_case_sigterm (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    const char *extra[] = {"--credit", "2", NULL};
    pid_t supervisor = s_workers (endpoint, 1, extra);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    pack_t nap, value;
    s_pack_init (&nap);
    msgpack_pack_int (&nap.pk, 30);
    s_pack_init (&value);
    msgpack_pack_int (&value.pk, 1);
    job_t jobs[] = {{1, "echo", value.sbuf.data, value.sbuf.size, 0, 0},
                    {2, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0}};
    s_fake_dispatch (&fake, jobs, 2);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 1, __LINE__); /* the sleep has started */
    int64_t start = dp_now_ms ();
    CHECK_EQ_INT (kill (supervisor, SIGTERM), 0);
    EXPECT (&fake, &got, DP_CMD_BYE);
    s_fake_reply_bye (&fake, &got);
    int status = dp_test_wait_exit (supervisor, 3000);
    CHECK (status != -1);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    CHECK (dp_now_ms () - start < 1500);
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&nap.sbuf);
    msgpack_sbuffer_destroy (&value.sbuf);
    s_got_release (&got);
    s_fake_stop (&fake);
}

/*  A broker silent past expiry is presumed dead: the worker registers again
    on a fresh socket, and the result of a job from before is dropped. */
static void
s_case_broker_silence (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    uint8_t first_rid[256];
    int64_t start = dp_now_ms ();
    s_fake_welcome (&fake, &got, 100, 500);
    size_t first_rid_size = fake.current_size;
    memcpy (first_rid, fake.current, first_rid_size);
    pack_t nap, value;
    s_pack_init (&nap);
    msgpack_pack_double (&nap.pk, 1.2);
    s_pack_init (&value);
    msgpack_pack_int (&value.pk, 5);
    job_t old = {1, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &old, 1);
    /*  Heartbeats, then a new READY from a new socket, past the expiry.
        (A READY before that can only be a stray earlier attempt's.) */
    for (;;) {
        CHECK (s_fake_recv (&fake, &got, WAIT_MS));
        bool first =
            got.rid_size == first_rid_size && memcmp (got.rid, first_rid, first_rid_size) == 0;
        if (got.m.cmd == DP_CMD_HEARTBEAT)
            continue;
        /*  The old socket is closed with a BYE, in case the broker lives. */
        if (got.m.cmd == DP_CMD_BYE && first)
            continue;
        CHECK (got.m.cmd == DP_CMD_READY);
        if (dp_now_ms () - start >= 450)
            break;
    }
    CHECK (got.rid_size != first_rid_size || memcmp (got.rid, first_rid, got.rid_size) != 0);
    s_fake_welcome (&fake, &got, 100, LONG_EXPIRY);
    job_t fresh = {2, "echo", value.sbuf.data, value.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &fresh, 1);
    /*  Only the new job's result comes, after the old sleep ends. */
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 1, __LINE__);
    CHECK (results.seen[2] && !results.seen[1]);
    CHECK (dp_now_ms () - start >= 1100);
    /*  And nothing but heartbeats after it: never the old job's result. */
    for (int64_t until = dp_now_ms () + 500, left; (left = until - dp_now_ms ()) > 0;)
        if (s_fake_recv (&fake, &got, (int)left))
            CHECK (got.m.cmd == DP_CMD_HEARTBEAT);
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&nap.sbuf);
    msgpack_sbuffer_destroy (&value.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  ERROR ESTATE: the broker forgot us; READY again, on the same socket. */
static void
s_case_estate (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    dp_encode_error (&fake.writer, DPOOL_ESTATE, "who are you?");
    s_fake_send (&fake, DP_CMD_ERROR);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (!s_from_current (&fake, &got)); /* not a stray earlier attempt */
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    pack_t value;
    s_pack_init (&value);
    msgpack_pack_int (&value.pk, 5);
    job_t job = {4, "echo", value.sbuf.data, value.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &job, 1);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 1, __LINE__);
    CHECK_EQ_INT (results.code[4], 0);
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&value.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  BYE from the broker (shutting down): register again after the backoff. */
static void
s_case_broker_bye (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    uint64_t pid = s_ready_pid (&got);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    int64_t start = dp_now_ms ();
    dp_encode_empty (&fake.writer);
    s_fake_send (&fake, DP_CMD_BYE);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (dp_now_ms () - start < DP_RECONNECT_MS - 10); /* not a stray earlier attempt */
    CHECK_EQ_INT (s_ready_pid (&got), pid);              /* the same process, not a restart */
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  --plugin: the plugin's functions are offered and run. */
static void
s_case_plugin (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    const char *extra[] = {"--plugin", DPOOL_EXAMPLE_PLUGIN, "--credit", "2", NULL};
    pid_t supervisor = s_workers (endpoint, 1, extra);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    CHECK (s_ready_offers (&got, "example.add"));
    CHECK (s_ready_offers (&got, "example.upper"));
    CHECK (s_ready_offers (&got, "example.wordcount"));
    CHECK (s_ready_offers (&got, "echo"));
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    pack_t numbers, text;
    s_pack_init (&numbers);
    msgpack_pack_array (&numbers.pk, 3);
    msgpack_pack_int (&numbers.pk, 1);
    msgpack_pack_int (&numbers.pk, 2);
    msgpack_pack_double (&numbers.pk, 3.5);
    s_pack_init (&text);
    s_pack_str (&text, "shout");
    job_t jobs[] = {{1, "example.add", numbers.sbuf.data, numbers.sbuf.size, 0, 0},
                    {2, "example.upper", text.sbuf.data, text.sbuf.size, 0, 0}};
    s_fake_dispatch (&fake, jobs, 2);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 2, __LINE__);
    CHECK_EQ_INT (results.code[1], 0);
    CHECK (results.value[1].type == MSGPACK_OBJECT_FLOAT64 && results.value[1].via.f64 == 6.5);
    CHECK (s_str_eq (&results.value[2], "SHOUT"));
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&numbers.sbuf);
    msgpack_sbuffer_destroy (&text.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "square wants a natural number");
    return msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
}

/*  Processes this test forked itself (not with dp_test_spawn), killed with
    their process group at exit. */
static pid_t s_forked[4];
static int s_nforked;
static pid_t s_main_pid;

static void
s_kill_forked (void)
{
    if (getpid () != s_main_pid)
        return;
    for (int i = 0; i < s_nforked; i++)
        if (s_forked[i] > 0) {
            kill (-s_forked[i], SIGKILL);
            kill (s_forked[i], SIGKILL);
        }
}

/*  Forks a process in its own process group, remembered for cleanup. */
static pid_t
s_fork (void)
{
    if (s_nforked == 0) {
        s_main_pid = getpid ();
        atexit (s_kill_forked);
    }
    CHECK (s_nforked < 4);
    fflush (NULL);
    pid_t pid = fork ();
    CHECK (pid >= 0);
    if (pid == 0) {
        setpgid (0, 0);
        alarm (0);
        if (!getenv ("DPOOL_LOG"))
            dp_log_set_level (DP_LOG_INFO);
        return 0;
    }
    setpgid (pid, pid);
    s_forked[s_nforked++] = pid;
    return pid;
}

/*  dpool_worker_serve: a program serving its own functions, whose worker
    processes are restarted even though it ignores SIGCHLD. */
static void
s_case_serve (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    char endpoint_copy[2048];
    snprintf (endpoint_copy, sizeof endpoint_copy, "%s", endpoint);
    /*  Forked before this process makes a ZeroMQ context. */
    CHECK_EQ_INT (dpool_register ("test.square", s_square, NULL), 0);
    pid_t server = s_fork ();
    if (server == 0) {
        /*  A program that ignores SIGCHLD still gets its workers restarted. */
        signal (SIGCHLD, SIG_IGN);
        _exit (dpool_worker_serve (endpoint_copy, 1) == 0 ? 0 : 3);
    }
    fake_t fake;
    s_fake_start (&fake, endpoint_copy);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    CHECK (s_ready_offers (&got, "test.square"));
    CHECK (s_ready_offers (&got, "echo"));
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    pack_t seven;
    s_pack_init (&seven);
    msgpack_pack_int (&seven.pk, 7);
    job_t job = {1, "test.square", seven.sbuf.data, seven.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &job, 1);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 1, __LINE__);
    CHECK_EQ_INT (results.code[1], 0);
    CHECK_EQ_INT (results.value[1].via.u64, 49);
    uint64_t pid = fake.current_pid;
    CHECK_EQ_INT (kill ((pid_t)pid, SIGKILL), 0);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (s_ready_pid (&got) == pid);
    CHECK (s_ready_offers (&got, "test.square"));
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&seven.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, server);
    s_fake_stop (&fake);
}

typedef struct {
    pid_t pid;
    int status;
} reaped_t;

/*  True once some child of this process has ended (and was reaped). */
static bool
s_reaped (void *arg)
{
    reaped_t *reaped = (reaped_t *)arg;
    reaped->pid = waitpid (-1, &reaped->status, WNOHANG);
    return reaped->pid > 0;
}

/*  A supervisor with a parent to watch stops its workers (they say BYE)
    and itself once that parent is gone. */
static void
s_case_parent_gone (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    char endpoint_copy[2048];
    snprintf (endpoint_copy, sizeof endpoint_copy, "%s", endpoint);
    /*  The supervisor's parent will die; it is then reparented to us. */
    CHECK_EQ_INT (prctl (PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    CHECK_EQ_INT (pipe (fds), 0);
    pid_t parent = s_fork ();
    if (parent == 0) {
        close (fds[1]);
        pid_t supervisor = fork ();
        if (supervisor == 0) {
            close (fds[0]);
            dp_supervisor_config_t config;
            memset (&config, 0, sizeof config);
            dp_worker_config_init (&config.worker);
            config.worker.endpoint = endpoint_copy;
            config.procs = 1;
            config.parent = getppid ();
            _exit (dp_supervisor_run (&config) == 0 ? 0 : 3);
        }
        /*  Live until the test closes the pipe. */
        char byte;
        ssize_t rc = read (fds[0], &byte, 1);
        (void)rc;
        _exit (supervisor > 0 ? 0 : 1);
    }
    close (fds[0]);
    fake_t fake;
    s_fake_start (&fake, endpoint_copy);
    got_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    s_fake_welcome (&fake, &got, 1000, LONG_EXPIRY);
    close (fds[1]); /* the parent ends */
    int status = dp_test_wait_exit (parent, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    int64_t start = dp_now_ms ();
    EXPECT (&fake, &got, DP_CMD_BYE);
    CHECK (dp_now_ms () - start < 1000);
    s_fake_reply_bye (&fake, &got);
    /*  The supervisor, now our child, ends with status 0. */
    reaped_t reaped = {0, 0};
    CHECK (dp_test_wait_until (s_reaped, &reaped, 5000));
    CHECK (WIFEXITED (reaped.status) && WEXITSTATUS (reaped.status) == 0);
    s_got_release (&got);
    s_fake_stop (&fake);
}

/*  --help, --version, and bad options. */
static void
s_case_options (void)
{
    struct {
        const char *args[4];
        int status;
        const char *out;
        const char *err;
    } runs[] = {
        {{"--help"}, 0, "--plugin", NULL},
        {{"--version"}, 0, DPOOL_VERSION_STRING, NULL},
        {{"--procs", "many"}, 2, NULL, "invalid --procs"},
        {{"--bogus"}, 2, NULL, "unknown option --bogus"},
        {{"--credit", "0"}, 2, NULL, "invalid --credit"},
        {{"--log-level", "loud"}, 2, NULL, "invalid --log-level"},
        {{"--plugin", "/nonexistent/lib.so"}, 1, NULL, "cannot load plugin"},
        {{"stray"}, 2, NULL, "unexpected argument"},
        {{"--connect", "localhost:5555"}, 2, NULL, "invalid endpoint"},
    };
    const char *options[] = {"--connect",     "--procs",     "--credit",     "--name",
                             "--plugin",      "--log-level", "--help",       "--version",
                             "DPOOL_CONNECT", "DPOOL_PROCS", "DPOOL_CREDIT", "DPOOL_LOG"};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char tag[32];
        snprintf (tag, sizeof tag, "options%zu", i);
        const char *argv[8] = {dp_test_worker_bin};
        for (int a = 0; a < 4 && runs[i].args[a]; a++)
            argv[a + 1] = runs[i].args[a];
        pid_t pid = dp_test_spawn (tag, (char *const *)argv);
        int status = dp_test_wait_exit (pid, 5000);
        CHECK (status != -1 && WIFEXITED (status));
        CHECK_EQ_INT (WEXITSTATUS (status), runs[i].status);
        char name[64];
        snprintf (name, sizeof name, "%s.out", tag);
        char *out = dp_test_read_file (dp_test_path (name));
        snprintf (name, sizeof name, "%s.err", tag);
        char *err = dp_test_read_file (dp_test_path (name));
        CHECK (out && err);
        if (runs[i].out)
            CHECK (strstr (out, runs[i].out));
        if (runs[i].err)
            CHECK (strstr (err, runs[i].err));
        if (i == 0)
            for (size_t o = 0; o < sizeof options / sizeof options[0]; o++)
                if (!strstr (out, options[o]))
                    dp_test_fail (__FILE__, __LINE__, "--help does not mention %s", options[o]);
        free (out);
        free (err);
    }
}

/*  With the worker welcomed at interval 2 s at since (its last word): it
    says nothing for 1.1 s, then answers a HEARTBEAT within 700 ms, from
    its current registration. */
static void
s_quiet_then_answers (fake_t *fake, got_t *got, int64_t since)
{
    int64_t left;
    while ((left = since + 1100 - dp_now_ms ()) > 0)
        if (s_fake_recv (fake, got, (int)left))
            dp_test_fail (__FILE__, __LINE__, "the worker said %s while it should be quiet",
                          dp_cmd_name (got->m.cmd));
    dp_encode_empty (&fake->writer);
    int64_t asked = dp_now_ms ();
    s_fake_send (fake, DP_CMD_HEARTBEAT);
    CHECK (s_fake_recv (fake, got, WAIT_MS));
    int64_t answered = dp_now_ms ();
    CHECK_EQ_INT (got->m.cmd, DP_CMD_HEARTBEAT);
    CHECK (s_from_current (fake, got));
    if (answered - asked >= 700)
        dp_test_fail (__FILE__, __LINE__, "HEARTBEAT answered after %lld ms",
                      (long long)(answered - asked));
}

/*  A worker that has been quiet for half an interval answers the broker's
    HEARTBEAT at once, instead of waiting for its own timer (1.5 intervals):
    the answers of many idle workers then reach the broker together. */
static void
s_case_heartbeat_answer (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    /*  Interval 2 s: the worker answers after 1 s of quiet and would speak
        unasked only after 3 s. */
    s_fake_welcome (&fake, &got, 2000, LONG_EXPIRY);
    /*  Its last word was the welcome ping's DONE. Its own timer would have
        spoken 3 s after the ping, and a worker of the old rule 2 s after
        it: an answer means well before both. */
    s_quiet_then_answers (&fake, &got, dp_now_ms ());
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  The I/O thread watches the broker's socket while the task thread runs
    a job, so a HEARTBEAT that comes in the middle of a long job is
    answered at once, not after the job. */
static void
s_case_busy_answer (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    /*  Interval 2 s: the worker answers after 1 s of quiet and would speak
        unasked only after 3 s, when the job below has ended. */
    s_fake_welcome (&fake, &got, 2000, LONG_EXPIRY);
    int64_t welcomed = dp_now_ms ();
    pack_t nap;
    s_pack_init (&nap);
    msgpack_pack_double (&nap.pk, 2.5);
    job_t job = {5, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0};
    s_fake_dispatch (&fake, &job, 1);
    /*  The job ends 2.5 s after it began: the answer came while it ran. */
    s_quiet_then_answers (&fake, &got, welcomed);
    results_t results;
    s_results_init (&results);
    s_results_wait (&fake, &got, &results, 1, __LINE__);
    CHECK_EQ_INT (results.code[5], 0);
    s_results_fini (&results);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

/*  An idle worker sleeps between the broker's messages: heartbeats that
    wake it (every 50 ms for 2 s here) cost it a small fraction of a core,
    whichever of its threads watches the socket. A thread that missed a
    message it had been woken for would poll again at once, and spin. */
static void
s_case_idle_cpu (void)
{
    fake_t fake;
    got_t got = {0};
    pid_t supervisor = s_one_worker (&fake, &got);
    s_fake_welcome (&fake, &got, 100, LONG_EXPIRY);
    int pid = (int)fake.current_pid;
    double before = dp_proc_cpu_seconds (pid);
    CHECK (before >= 0);
    int64_t start = dp_now_ms ();
    int answers = 0;
    while (dp_now_ms () - start < 2000) {
        dp_encode_empty (&fake.writer);
        s_fake_send (&fake, DP_CMD_HEARTBEAT);
        int64_t until = dp_now_ms () + 50;
        int64_t left;
        while ((left = until - dp_now_ms ()) > 0)
            if (s_fake_recv (&fake, &got, (int)left) && got.m.cmd == DP_CMD_HEARTBEAT)
                answers++;
    }
    double after = dp_proc_cpu_seconds (pid);
    CHECK (after >= 0);
    /*  A fifth of a core over 2 s; a spinning thread takes all of one. */
    if ((after - before) * 5 > 2)
        dp_test_fail (__FILE__, __LINE__, "an idle worker used %.2f s of CPU in 2 s",
                      after - before);
    /*  It answered (after 50 ms of its own quiet, half an interval). */
    CHECK (answers >= 10);
    s_got_release (&got);
    s_stop_workers (&fake, supervisor);
    s_fake_stop (&fake);
}

static const dp_test_case_t s_cases[] = {
    {"worker_registers_with_backoff_until_welcome", s_case_registers},
    {"worker_runs_dispatched_jobs", s_case_jobs},
    {"worker_batches_fast_results_not_slow_ones", s_case_batching},
    {"worker_heartbeats_while_task_runs", s_case_heartbeat},
    {"worker_timeout_reports_edeadline_and_restarts", s_case_timeout},
    {"worker_supervisor_restarts_dead_process", s_case_killed},
    {"worker_sigterm_says_bye_and_stops", s_case_sigterm},
    {"worker_reconnects_when_broker_goes_silent", s_case_broker_silence},
    {"worker_registers_again_on_estate", s_case_estate},
    {"worker_registers_again_after_broker_bye", s_case_broker_bye},
    {"worker_plugin_registers_functions", s_case_plugin},
    {"worker_serve_offers_program_functions", s_case_serve},
    {"worker_supervisor_stops_when_parent_dies", s_case_parent_gone},
    {"worker_program_options", s_case_options},
    {"worker_answers_broker_heartbeat_when_quiet", s_case_heartbeat_answer},
    {"worker_answers_broker_heartbeat_during_a_job", s_case_busy_answer},
    {"worker_idle_sleeps_between_messages", s_case_idle_cpu},
    {"worker_idle_beats_and_expires_slower", s_case_idle_beat},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

/*  dp_testfake.c - a fake broker for tests of dpool-worker processes (see
    dp_testfake.h).
*/
#include "dp_testfake.h"

#include "dp_supervisor.h"
#include "dp_testutil.h"
#include "dp_util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define PING_REF 1000000 /* refs of dp_testfake_welcome's ping jobs, above any test's */

void
dp_testfake_start (dp_testfake_t *fake, const char *endpoint)
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

void
dp_testfake_release (dp_testfake_msg_t *got)
{
    if (got->held)
        dp_wire_close (&got->wire);
    got->held = false;
}

void
dp_testfake_stop (dp_testfake_t *fake)
{
    dp_writer_fini (&fake->writer);
    zmq_close (fake->router);
    zmq_ctx_term (fake->ctx);
}

bool
dp_testfake_recv (dp_testfake_t *fake, dp_testfake_msg_t *got, int timeout_ms)
{
    dp_testfake_release (got);
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
s_fake_welcomed (const dp_testfake_t *fake, const dp_testfake_msg_t *got)
{
    for (int i = 0; i < fake->nwelcomed; i++)
        if (fake->welcomed_size[i] == got->rid_size &&
            memcmp (fake->welcomed[i], got->rid, got->rid_size) == 0)
            return true;
    return false;
}

void
dp_testfake_expect (dp_testfake_t *fake, dp_testfake_msg_t *got, dp_cmd_t cmd, int timeout_ms,
                    const char *file, int line)
{
    int64_t until = dp_now_ms () + timeout_ms;
    for (;;) {
        int64_t left = until - dp_now_ms ();
        if (left < 0 || !dp_testfake_recv (fake, got, (int)left))
            dp_test_fail (file, line, "no %s from the worker in %d ms", dp_cmd_name (cmd),
                          timeout_ms);
        if (got->m.cmd == cmd)
            return;
        bool attempt = (got->m.cmd == DP_CMD_READY || got->m.cmd == DP_CMD_BYE) &&
                       !s_fake_welcomed (fake, got);
        if (got->m.cmd != DP_CMD_HEARTBEAT && !attempt)
            dp_test_fail (file, line, "%s from the worker while waiting for %s",
                          dp_cmd_name (got->m.cmd), dp_cmd_name (cmd));
    }
}

int
dp_testfake_try_send (dp_testfake_t *fake, dp_cmd_t cmd)
{
    return dp_wire_send_writer (fake->router, fake->current, fake->current_size, cmd,
                                &fake->writer, 0);
}

void
dp_testfake_send (dp_testfake_t *fake, dp_cmd_t cmd)
{
    CHECK_EQ_INT (dp_testfake_try_send (fake, cmd), 0);
}

void
dp_testfake_send_to (dp_testfake_t *fake, const uint8_t *rid, size_t rid_size, dp_cmd_t cmd)
{
    CHECK_EQ_INT (dp_wire_send_writer (fake->router, rid, rid_size, cmd, &fake->writer, 0), 0);
}

bool
dp_testfake_from_current (const dp_testfake_t *fake, const dp_testfake_msg_t *got)
{
    return got->rid_size == fake->current_size &&
           memcmp (got->rid, fake->current, got->rid_size) == 0;
}

void
dp_testfake_welcome (dp_testfake_t *fake, dp_testfake_msg_t *got, uint32_t heartbeat_ms,
                     uint32_t expiry_ms)
{
    uint64_t pid = got->held && got->m.cmd == DP_CMD_READY ? got->m.u.ready.pid : 0;
    for (;;) {
        while (!got->held || got->m.cmd != DP_CMD_READY || (pid && got->m.u.ready.pid != pid))
            dp_testfake_expect (fake, got, DP_CMD_READY, DP_TESTFAKE_WAIT_MS, __FILE__, __LINE__);
        pid = got->m.u.ready.pid;
        memcpy (fake->current, got->rid, got->rid_size);
        fake->current_size = got->rid_size;
        fake->current_pid = got->m.u.ready.pid;
        dp_testfake_release (got);
        dp_encode_welcome (&fake->writer, heartbeat_ms, expiry_ms, "fake", 1);
        if (dp_testfake_try_send (fake, DP_CMD_WELCOME)) {
            CHECK_EQ_INT (errno, EHOSTUNREACH);
            continue;
        }
        uint64_t ping = PING_REF + fake->pings++;
        dp_task_t task = {
            .id = ping, .fn = {(const uint8_t *)"echo", 4}, .args = {(const uint8_t *)"\xc0", 1}};
        dp_list_begin (&fake->writer);
        dp_list_add_task (&fake->writer, DP_CMD_DISPATCH, &task);
        dp_list_end (&fake->writer);
        if (dp_testfake_try_send (fake, DP_CMD_DISPATCH)) {
            CHECK_EQ_INT (errno, EHOSTUNREACH);
            continue;
        }
        for (;;) {
            if (!dp_testfake_recv (fake, got, DP_TESTFAKE_WAIT_MS))
                dp_test_fail (__FILE__, __LINE__, "no answer to a ping from the worker");
            if (!dp_testfake_from_current (fake, got))
                continue; /* another attempt's READY or BYE: its worker retries */
            if (got->m.cmd == DP_CMD_DONE) {
                dp_result_t result;
                dp_list_t list = got->m.u.list;
                CHECK (dp_list_next_result (&list, &result));
                CHECK_EQ_INT (result.id, ping);
                CHECK_EQ_INT (result.code, 0);
                CHECK (fake->nwelcomed < DP_TESTFAKE_MAX_WELCOMED);
                memcpy (fake->welcomed[fake->nwelcomed], fake->current, fake->current_size);
                fake->welcomed_size[fake->nwelcomed++] = fake->current_size;
                dp_testfake_release (got);
                return;
            }
            if (got->m.cmd == DP_CMD_BYE)
                break; /* the worker dropped this socket: wait for its next READY */
            CHECK (got->m.cmd == DP_CMD_HEARTBEAT);
        }
        dp_testfake_release (got);
    }
}

void
dp_testfake_reply_bye (dp_testfake_t *fake, const dp_testfake_msg_t *to)
{
    dp_encode_empty (&fake->writer);
    if (dp_wire_send_writer (fake->router, to->rid, to->rid_size, DP_CMD_BYE, &fake->writer, 0))
        CHECK_EQ_INT (errno, EHOSTUNREACH);
}

void
dp_testfake_dispatch (dp_testfake_t *fake, const dp_testfake_job_t *jobs, size_t count)
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
    dp_testfake_send (fake, DP_CMD_DISPATCH);
}

uint64_t
dp_testfake_ready_pid (const dp_testfake_msg_t *got)
{
    CHECK (got->m.cmd == DP_CMD_READY);
    return got->m.u.ready.pid;
}

bool
dp_testfake_ready_offers (const dp_testfake_msg_t *got, const char *fn)
{
    dp_list_t functions = got->m.u.ready.functions;
    dp_span_t name;
    while (dp_list_next_str (&functions, &name))
        if (dp_span_eq (name, fn))
            return true;
    return false;
}

void
dp_testfake_results_init (dp_testfake_results_t *results)
{
    memset (results, 0, sizeof *results);
    msgpack_zone_init (&results->zone, 4096);
}

void
dp_testfake_results_fini (dp_testfake_results_t *results)
{
    for (int i = 0; i < DP_TESTFAKE_MAX_RESULTS; i++)
        free (results->bytes[i]);
    msgpack_zone_destroy (&results->zone);
}

int
dp_testfake_results_take (dp_testfake_results_t *results, dp_testfake_msg_t *got)
{
    CHECK (got->m.cmd == DP_CMD_DONE);
    results->messages++;
    dp_list_t list = got->m.u.list;
    dp_result_t result;
    int taken = 0;
    while (dp_list_next_result (&list, &result)) {
        CHECK (result.id < DP_TESTFAKE_MAX_RESULTS);
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

void
dp_testfake_results_wait (dp_testfake_t *fake, dp_testfake_msg_t *got,
                          dp_testfake_results_t *results, int count, const char *file, int line)
{
    while (results->count < count) {
        dp_testfake_expect (fake, got, DP_CMD_DONE, DP_TESTFAKE_WAIT_MS, file, line);
        dp_testfake_results_take (results, got);
    }
}

pid_t
dp_testfake_one_worker (dp_testfake_t *fake, dp_testfake_msg_t *got, const char *const *extra)
{
    const char *endpoint = dp_test_ipc ("broker");
    dp_testfake_start (fake, endpoint);
    pid_t supervisor = dp_test_workers_logged (endpoint, 1, extra);
    EXPECT (fake, got, DP_CMD_READY);
    return supervisor;
}

void
dp_testfake_stop_workers (dp_testfake_t *fake, pid_t supervisor)
{
    CHECK_EQ_INT (kill (supervisor, SIGTERM), 0);
    int64_t until = dp_now_ms () + DP_SUPERVISOR_GRACE_MS + 3000;
    int status = -1;
    dp_testfake_msg_t got = {0};
    while (dp_now_ms () < until) {
        if (dp_testfake_recv (fake, &got, 20) && got.m.cmd == DP_CMD_BYE)
            dp_testfake_reply_bye (fake, &got);
        status = dp_test_wait_exit (supervisor, 0);
        if (status != -1)
            break;
    }
    dp_testfake_release (&got);
    CHECK (status != -1);
    CHECK (WIFEXITED (status));
    CHECK_EQ_INT (WEXITSTATUS (status), 0);
}

void
dp_testfake_finish (dp_testfake_t *fake, dp_testfake_msg_t *got, pid_t supervisor)
{
    dp_testfake_release (got);
    dp_testfake_stop_workers (fake, supervisor);
    dp_testfake_stop (fake);
}

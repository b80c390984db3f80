/*  test_worker_lane.c - a dpool-worker process's lane (PROTOCOL.md 5.7)
    against a fake broker: a ROUTER socket in this test, speaking DPP/1
    through proto/, that gives the worker a lane token and then refuses the
    lane, or takes it and forgets it. Each case is one ctest test:
    test_worker_lane CASE.
*/
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define WAIT_MS 5000  /* how long a step may take before the test fails */
#define EXPIRY  60000 /* the fake never heartbeats: expiry_ms it announces */
#define TOKEN   0x5eed5eed5eedULL

typedef struct {
    void *ctx;
    void *router;
    dp_writer_t w;
    dp_wire_msg_t in;
    dp_msg_t m;
    bool holding;
    uint8_t rid[256]; /* the sender of the last message */
    size_t rid_size;
} fake_t;

static void
s_fake_start (fake_t *fake, const char *endpoint)
{
    memset (fake, 0, sizeof *fake);
    fake->ctx = zmq_ctx_new ();
    fake->router = zmq_socket (fake->ctx, ZMQ_ROUTER);
    CHECK (fake->router);
    CHECK_EQ_INT (dp_wire_configure (fake->router, true, 0), 0);
    CHECK_EQ_INT (zmq_bind (fake->router, endpoint), 0);
    dp_writer_init (&fake->w);
}

static void
s_fake_stop (fake_t *fake)
{
    if (fake->holding)
        dp_wire_close (&fake->in);
    dp_writer_fini (&fake->w);
    zmq_close (fake->router);
    zmq_ctx_term (fake->ctx);
}

/*  The next message other than HEARTBEAT: its command; the test fails if
    none comes within WAIT_MS. */
static int
s_fake_recv (fake_t *fake)
{
    int64_t until = dp_now_ms () + WAIT_MS;
    for (;;) {
        if (fake->holding)
            dp_wire_close (&fake->in);
        fake->holding = false;
        zmq_pollitem_t item = {fake->router, 0, ZMQ_POLLIN, 0};
        long left = (long)(until - dp_now_ms ());
        CHECK (left > 0);
        if (zmq_poll (&item, 1, left) <= 0)
            continue;
        CHECK_EQ_INT (dp_wire_recv (fake->router, &fake->in, 0), 0);
        fake->holding = true;
        zmq_msg_t *rid;
        CHECK_EQ_INT (dp_wire_decode (&fake->in, true, &rid, &fake->m), DP_OK);
        fake->rid_size = zmq_msg_size (rid);
        memcpy (fake->rid, zmq_msg_data (rid), fake->rid_size);
        if (fake->m.cmd != DP_CMD_HEARTBEAT)
            return fake->m.cmd;
    }
}

static void
s_fake_send (fake_t *fake, const uint8_t *rid, size_t rid_size, dp_cmd_t cmd)
{
    CHECK_EQ_INT (dp_wire_send_writer (fake->router, rid, rid_size, cmd, &fake->w, 0), 0);
}

/*  The worker's READY, answered WELCOME with TOKEN; then its lane's ATTACH,
    whose routing id goes into lane. */
static void
s_fake_register (fake_t *fake, uint8_t *main, size_t *main_size, uint8_t *lane, size_t *lane_size)
{
    CHECK_EQ_INT (s_fake_recv (fake), DP_CMD_READY);
    memcpy (main, fake->rid, fake->rid_size);
    *main_size = fake->rid_size;
    dp_encode_welcome_token (&fake->w, 1000, EXPIRY, "fake", 1, TOKEN);
    s_fake_send (fake, main, *main_size, DP_CMD_WELCOME);
    CHECK_EQ_INT (s_fake_recv (fake), DP_CMD_ATTACH);
    CHECK (fake->m.u.attach.token == TOKEN);
    CHECK (fake->rid_size != *main_size || memcmp (fake->rid, main, *main_size) != 0);
    memcpy (lane, fake->rid, fake->rid_size);
    *lane_size = fake->rid_size;
}

/*  Sends an echo job, ref, to rid. */
static void
s_fake_dispatch (fake_t *fake, const uint8_t *rid, size_t rid_size, uint64_t ref)
{
    static const uint8_t args[1] = {0x2a};
    dp_task_t job = {.id = ref, .fn = {(const uint8_t *)"echo", 4}, .args = {args, 1}};
    dp_list_begin (&fake->w);
    dp_list_add_task (&fake->w, DP_CMD_DISPATCH, &job);
    dp_list_end (&fake->w);
    s_fake_send (fake, rid, rid_size, DP_CMD_DISPATCH);
}

/*  The next message is a DONE for ref with value 42, from rid. */
static void
s_fake_expect_done (fake_t *fake, const uint8_t *rid, size_t rid_size, uint64_t ref)
{
    CHECK_EQ_INT (s_fake_recv (fake), DP_CMD_DONE);
    CHECK (fake->rid_size == rid_size && memcmp (fake->rid, rid, rid_size) == 0);
    dp_result_t result;
    CHECK (dp_list_next_result (&fake->m.u.list, &result));
    CHECK_EQ_INT (result.id, ref);
    CHECK_EQ_INT (result.code, 0);
    CHECK (result.value.size == 1 && result.value.data[0] == 0x2a);
}

static pid_t
s_worker (const char *endpoint)
{
    const char *extra[] = {"--log-level", "info", NULL};
    return dp_test_workers_start (endpoint, 1, extra);
}

static void
s_stop (pid_t pid)
{
    int status = dp_test_stop (pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status));
}

/*  A broker that refuses the lane (as one without lanes does: EPROTO, an
    unknown command): the worker goes on through its own connection. */
static void
s_case_refused (void)
{
    const char *endpoint = dp_test_ipc ("fake");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    pid_t worker = s_worker (endpoint);
    uint8_t main[256], lane[256];
    size_t main_size, lane_size;
    s_fake_register (&fake, main, &main_size, lane, &lane_size);
    dp_encode_error (&fake.w, DPOOL_EPROTO, "malformed message (command)");
    s_fake_send (&fake, lane, lane_size, DP_CMD_ERROR);
    for (uint64_t ref = 1; ref <= 3; ref++) {
        s_fake_dispatch (&fake, main, main_size, ref);
        s_fake_expect_done (&fake, main, main_size, ref);
    }
    s_stop (worker);
    s_fake_stop (&fake);
}

/*  A broker that takes the lane: jobs on it are answered on it, jobs on
    the worker's own connection too; once the broker forgets the lane
    (ERROR ESTATE), the worker registers again. */
static void
s_case_attached_then_lost (void)
{
    const char *endpoint = dp_test_ipc ("fake");
    fake_t fake;
    s_fake_start (&fake, endpoint);
    pid_t worker = s_worker (endpoint);
    uint8_t main[256], lane[256];
    size_t main_size, lane_size;
    s_fake_register (&fake, main, &main_size, lane, &lane_size);
    dp_encode_welcome (&fake.w, 1000, EXPIRY, "fake", 1);
    s_fake_send (&fake, lane, lane_size, DP_CMD_WELCOME);
    s_fake_dispatch (&fake, lane, lane_size, 1);
    s_fake_expect_done (&fake, lane, lane_size, 1);
    s_fake_dispatch (&fake, main, main_size, 2);
    s_fake_expect_done (&fake, lane, lane_size, 2);

    dp_encode_error (&fake.w, DPOOL_ESTATE, "unknown peer: send HELLO or READY");
    s_fake_send (&fake, lane, lane_size, DP_CMD_ERROR);
    CHECK_EQ_INT (s_fake_recv (&fake), DP_CMD_READY);
    CHECK (fake.rid_size == main_size && memcmp (fake.rid, main, main_size) == 0);
    s_stop (worker);
    s_fake_stop (&fake);
}

static const dp_test_case_t s_cases[] = {
    {"worker_lane_refused", s_case_refused},
    {"worker_lane_attached_then_lost", s_case_attached_then_lost},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

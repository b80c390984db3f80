/*  test_broker_faults.c - the broker program under faults, driven by
    hand-made peers (dp_testbroker.h): hostile input by reason, garbage
    below the protocol, random frames beside a real map, BYE and SIGTERM,
    heartbeats on a common beat, and the expiry of silent workers.
    test_broker_faults --list names the cases; test_broker_faults CASE
    runs one.
*/
#include "dp_proto.h"
#include "dp_testbroker.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define RECV_MS DP_TESTPEER_RECV_MS

/*  Garbage of every kind is counted by reason and answered; the broker
    keeps serving a well-behaved client throughout. */
static void
s_case_hostile_input (void)
{
    dp_testpeer_t *client = dp_testbroker_client (11);
    dp_testpeer_t *bad = dp_testpeer_new (dp_testbroker_broker.tcp);
    /*  One frame of garbage. */
    CHECK (zmq_send (bad->sock, "garbage", 7, 0) == 7);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  Payload frames on a command that has no list. */
    uint8_t beat[4];
    dp_header_encode (beat, DP_CMD_HEARTBEAT);
    CHECK (zmq_send (bad->sock, beat, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (bad->sock, "\x90", 1, ZMQ_SNDMORE) == 1);
    CHECK (zmq_send (bad->sock, "x", 1, ZMQ_SNDMORE) == 1);
    CHECK (zmq_send (bad->sock, "x", 1, 0) == 1);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  Wrong signature, wrong version, unknown command. */
    uint8_t headers[3][4] = {
        {'X', 'P', DP_VERSION, 1}, {'D', 'P', 9, 1}, {'D', 'P', DP_VERSION, 99}};
    for (int i = 0; i < 3; i++) {
        CHECK (zmq_send (bad->sock, headers[i], 4, ZMQ_SNDMORE) == 4);
        CHECK (zmq_send (bad->sock, "\x90", 1, 0) == 1);
        dp_testpeer_expect (bad, DP_CMD_ERROR);
        CHECK_EQ_INT (bad->msg.u.error.code, DPOOL_EPROTO);
    }
    /*  Valid framing, malformed msgpack. */
    uint8_t header[4];
    dp_header_encode (header, DP_CMD_SUBMIT);
    CHECK (zmq_send (bad->sock, header, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (bad->sock, "\x91\xc1", 2, 0) == 2);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  Valid msgpack claiming a batch beyond the limit. */
    CHECK (zmq_send (bad->sock, header, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (bad->sock, "\xdd\xff\xff\xff\xff", 5, 0) == 5);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    /*  A well-formed command from a peer that never registered. */
    dp_encode_empty (&bad->w);
    dp_testpeer_send (bad, DP_CMD_STATUS);
    dp_testpeer_expect (bad, DP_CMD_ERROR);
    CHECK_EQ_INT (bad->msg.u.error.code, DPOOL_ESTATE);
    /*  A client sending a worker's command. */
    dp_list_begin (&client->w);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_DONE);
    dp_testpeer_expect (client, DP_CMD_ERROR);

    CHECK_EQ_INT (dp_testbroker_status_counter (client, "frames", true), 2);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "signature", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "version", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "command", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "body", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "limit", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "unknown_peer", true), 1);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "role", true), 1);
    /*  Still serving. */
    const char *fns[] = {"fh"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testbroker_submit (client, "fh", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
    dp_testbroker_done (worker, ref, 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&bad);
    dp_testpeer_destroy (&client);
}

/*  SIGTERM: every peer hears BYE, the broker exits 0; a worker's BYE is
    answered with BYE and its job goes back to the queue. */
static void
s_case_bye_and_sigterm (void)
{
    const char *fns[] = {"fb"};
    dp_testpeer_t *client = dp_testbroker_client (12);
    dp_testbroker_submit (client, "fb", 1, 0, 0);
    dp_testpeer_t *w1 = dp_testbroker_worker (fns, 1, 1);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (w1, &ref, NULL, 1), 1);
    dp_encode_empty (&w1->w);
    dp_testpeer_send (w1, DP_CMD_BYE);
    dp_testpeer_expect (w1, DP_CMD_BYE);
    dp_testpeer_t *w2 = dp_testbroker_worker (fns, 1, 1);
    dp_task_t job;
    dp_testpeer_expect (w2, DP_CMD_DISPATCH);
    CHECK (dp_list_next_task (&w2->msg.u.list, DP_CMD_DISPATCH, &job));
    CHECK_EQ_INT (job.attempt, 1); /* a clean BYE is not a death */
    kill (dp_testbroker_broker.pid, SIGTERM);
    dp_testpeer_expect (client, DP_CMD_BYE);
    dp_testpeer_expect (w2, DP_CMD_BYE);
    int status = dp_test_wait_exit (dp_testbroker_broker.pid, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    dp_testpeer_destroy (&w1);
    dp_testpeer_destroy (&w2);
    dp_testpeer_destroy (&client);
}

/*  Below the protocol: bytes that are not ZMTP at all, and a frame over
    ZMQ_MAXMSGSIZE. ZeroMQ cuts both off; the broker counts them and goes
    on serving. */
static bool
s_garbage_cut_off (void *arg)
{
    /*  Not ZMTP: ZeroMQ accepts the connection, then drops it. */
    return dp_testbroker_status_counter ((dp_testpeer_t *)arg, "disconnected", false) >= 1;
}

static void
s_case_transport_garbage (void)
{
    dp_testpeer_t *client = dp_testbroker_client (13);
    int port = atoi (strrchr (dp_testbroker_broker.tcp, ':') + 1);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    CHECK (fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    CHECK (connect (fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    char junk[1024];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    CHECK (write (fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close (fd);
    CHECK (dp_test_wait_until (s_garbage_cut_off, client, 5000));

    /*  One frame over the limit (--max-msg-size 65536 here): the sender's
        connection is dropped. */
    uint64_t before = dp_testbroker_status_counter (client, "disconnected", false);
    dp_testpeer_t *big = dp_testpeer_new (dp_testbroker_broker.tcp);
    size_t size = 65536 + 1;
    char *payload = calloc (1, size);
    CHECK (payload);
    uint8_t header[4];
    dp_header_encode (header, DP_CMD_HEARTBEAT);
    CHECK (zmq_send (big->sock, header, 4, ZMQ_SNDMORE) == 4);
    CHECK (zmq_send (big->sock, payload, size, 0) == (int)size);
    free (payload);
    int64_t deadline = dp_now_ms () + 10000;
    while (dp_testbroker_status_counter (client, "disconnected", false) == before)
        CHECK (dp_now_ms () < deadline);
    /*  Still serving. */
    const char *fns[] = {"fg"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 1);
    dp_testbroker_submit (client, "fg", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (worker, &ref, NULL, 1), 1);
    dp_testbroker_done (worker, ref, 0, NULL);
    CHECK_EQ_INT (dp_testbroker_expect_result (client).id, 1);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&big);
    dp_testpeer_destroy (&client);
}

/*  Random frames thrown at a live broker from several peers while a real
    client and worker run tasks: every task still ends exactly once, and the
    garbage shows in the counters. */
static void
s_case_random_frames (void)
{
    const char *fns[] = {"fr"};
    dp_testpeer_t *client = dp_testbroker_client (14);
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 4);
    dp_testpeer_t *noise[3];
    for (int i = 0; i < 3; i++)
        noise[i] = dp_testpeer_new (i == 0 ? dp_testbroker_broker.ipc : dp_testbroker_broker.tcp);
    uint64_t x = 88172645463325252ull;
    enum { TASKS = 300 };
    static bool seen[TASKS + 1];
    uint64_t next_seq = 1;
    int results = 0;
    int64_t deadline = dp_now_ms () + 20000;
    while (results < TASKS) {
        CHECK (dp_now_ms () < deadline);
        /*  A burst of noise: 1 to 4 frames of 0 to 63 random bytes, half of
            them behind a valid header. */
        for (int burst = 0; burst < 20; burst++) {
            dp_testpeer_t *from = noise[burst % 3];
            int frames = 1 + (int)(x % 4);
            for (int f = 0; f < frames; f++) {
                uint8_t bytes[64];
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                size_t len = (size_t)(x % sizeof bytes);
                for (size_t b = 0; b < len; b++)
                    bytes[b] = (uint8_t)(x >> (b % 56));
                if (f == 0 && (x & 1)) {
                    len = DP_HEADER_SIZE;
                    dp_header_encode (bytes, (dp_cmd_t)(1 + x % (DP_CMD_COUNT_ - 1)));
                }
                zmq_send (from->sock, bytes, len, f + 1 < frames ? ZMQ_SNDMORE : 0);
            }
        }
        if (next_seq <= TASKS) {
            dp_testbroker_submit (client, "fr", next_seq, 0, 0);
            next_seq++;
        }
        /*  Serve what was dispatched, collect what came back. */
        zmq_pollitem_t items[2] = {{worker->sock, 0, ZMQ_POLLIN, 0},
                                   {client->sock, 0, ZMQ_POLLIN, 0}};
        while (zmq_poll (items, 2, next_seq <= TASKS ? 0 : 100) > 0) {
            if (items[0].revents & ZMQ_POLLIN) {
                int cmd = dp_testpeer_recv (worker, 0);
                if (cmd == DP_CMD_DISPATCH) {
                    dp_task_t job;
                    while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job))
                        dp_testbroker_done (worker, job.id, 0, NULL);
                }
            }
            if (items[1].revents & ZMQ_POLLIN) {
                int cmd = dp_testpeer_recv (client, 0);
                if (cmd == DP_CMD_RESULT) {
                    dp_result_t r;
                    while (dp_list_next_result (&client->msg.u.list, &r)) {
                        CHECK (r.id >= 1 && r.id <= TASKS);
                        CHECK (!seen[r.id]);
                        CHECK_EQ_INT (r.code, 0);
                        seen[r.id] = true;
                        results++;
                    }
                }
            }
        }
    }
    CHECK (dp_testbroker_status_counter (client, "frames", true) > 0);
    CHECK (dp_testbroker_status_counter (client, "unknown_peer", true) +
               dp_testbroker_status_counter (client, "body", true) >
           0);
    for (int i = 0; i < 3; i++)
        dp_testpeer_destroy (&noise[i]);
    dp_testpeer_destroy (&worker);
    dp_testpeer_destroy (&client);
}

/*  Heartbeats go out on a common beat (interval 400 ms here): two idle
    workers that registered 250 ms apart get theirs together, so a thousand
    idle workers' answers reach the broker in one burst. Each HEARTBEAT one
    of them gets once both are settled has a twin at the other within
    100 ms; heartbeats timed by each peer's own silence would be 200 ms
    apart. Idle workers get every DP_IDLE_FACTOR-th beat only; a worker
    holding a job gets every beat. All peers answer, as real ones do. */
#define BEAT_MS        400
#define BEAT_WATCH_MS  5000
#define BEAT_SETTLE_MS 700
#define BEAT_MAX       32

static bool
s_has_twin (int64_t at, const int64_t *others, int count)
{
    for (int i = 0; i < count; i++)
        if (llabs ((long long)(at - others[i])) < 100)
            return true;
    return false;
}

static void
s_case_heartbeats_on_a_common_beat (void)
{
    const char *fns[] = {"f"};
    const char *busy_fns[] = {"g"};
    dp_testpeer_t *peers[4];
    peers[0] = dp_testbroker_worker (fns, 1, 1);
    dp_testpeer_expect_silence (peers[0], 250);
    peers[1] = dp_testbroker_worker (fns, 1, 1);
    /*  The third holds a job it never finishes: busy. */
    peers[2] = dp_testbroker_worker (busy_fns, 1, 1);
    peers[3] = dp_testbroker_client (9);
    dp_testbroker_submit (peers[3], "g", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (peers[2], &ref, NULL, 1), 1);
    int64_t settled = dp_now_ms () + BEAT_SETTLE_MS;
    int64_t until = dp_now_ms () + BEAT_WATCH_MS;
    int64_t beats[3][BEAT_MAX];
    int count[3] = {0, 0, 0};
    int64_t now;
    while ((now = dp_now_ms ()) < until) {
        zmq_pollitem_t items[4];
        for (int i = 0; i < 4; i++)
            items[i] = (zmq_pollitem_t){peers[i]->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (items, 4, (long)(until - now)) <= 0)
            continue;
        for (int i = 0; i < 4; i++) {
            dp_wire_msg_t in;
            while (dp_wire_recv (peers[i]->sock, &in, ZMQ_DONTWAIT) == 0) {
                dp_msg_t msg;
                CHECK_EQ_INT (dp_wire_decode (&in, false, NULL, &msg), DP_OK);
                CHECK_EQ_INT (msg.cmd, DP_CMD_HEARTBEAT);
                dp_wire_close (&in);
                if (i < 3) {
                    CHECK (count[i] < BEAT_MAX);
                    beats[i][count[i]++] = dp_now_ms ();
                }
                dp_encode_empty (&peers[i]->w);
                dp_testpeer_send (peers[i], DP_CMD_HEARTBEAT);
            }
        }
    }
    int checked[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < count[i]; k++) {
            if (beats[i][k] < settled)
                continue;
            checked[i]++;
            if (i == 2)
                continue; /* the busy one: counted only */
            if (!s_has_twin (beats[i][k], beats[1 - i], count[1 - i]))
                dp_test_fail (__FILE__, __LINE__,
                              "worker %d's HEARTBEAT at +%lld ms has no twin at the other", i,
                              (long long)(beats[i][k] - settled));
        }
    /*  4.3 s watched after settling: idle, one beat per 1.2 s (3 or 4; at
        every beat it would be 10 or 11); busy, one per 400 ms. Counted, not
        timed one by one, so that this test's own delays cannot fail it. */
    for (int i = 0; i < 2; i++)
        if (checked[i] < 3 || checked[i] > 6)
            dp_test_fail (__FILE__, __LINE__, "idle worker %d got %d heartbeats in %d ms", i,
                          checked[i], BEAT_WATCH_MS - BEAT_SETTLE_MS);
    CHECK (checked[2] >= 2 * checked[0]);
    for (int i = 0; i < 4; i++)
        dp_testpeer_destroy (&peers[i]);
}

/*  The number of workers the broker lists in its status. */
static size_t
s_status_workers (dp_testpeer_t *client)
{
    msgpack_unpacked unpacked;
    msgpack_object workers =
        dp_testpeer_map_get (dp_testpeer_status (client, &unpacked), "workers");
    CHECK (workers.type == MSGPACK_OBJECT_ARRAY);
    size_t count = workers.via.array.size;
    msgpack_unpacked_destroy (&unpacked);
    return count;
}

/*  Polls the status until the broker lists want workers; returns when. */
static int64_t
s_wait_workers (dp_testpeer_t *client, size_t want)
{
    int64_t deadline = dp_now_ms () + 20000;
    while (s_status_workers (client) != want) {
        CHECK (dp_now_ms () < deadline);
        dp_testpeer_expect_silence (client, 20);
    }
    return dp_now_ms ();
}

/*  Expiry (heartbeat 200 ms, expiry 600 ms here): a silent worker that
    holds a job is given up after the expiry, and its job is queued again;
    a silent idle worker only after DP_IDLE_FACTOR times as long. The
    client stays alive by asking for status. */
#define EXPIRY_MS 600

static void
s_case_idle_workers_expire_later (void)
{
    const char *fns[] = {"f"};
    const char *busy_fns[] = {"g"};
    dp_testpeer_t *client = dp_testbroker_client (11);
    int64_t idle_spoke = dp_now_ms (); /* its READY went after this */
    dp_testpeer_t *idle = dp_testbroker_worker (fns, 1, 1);
    int64_t busy_spoke = dp_now_ms ();
    dp_testpeer_t *busy = dp_testbroker_worker (busy_fns, 1, 1);
    dp_testbroker_submit (client, "g", 1, 0, 0);
    uint64_t ref;
    CHECK_EQ_INT (dp_testbroker_expect_jobs (busy, &ref, NULL, 1), 1);
    CHECK_EQ_INT (s_status_workers (client), 2);
    /*  Neither worker says anything any more. */
    int64_t busy_gone = s_wait_workers (client, 1);
    CHECK (busy_gone - busy_spoke >= EXPIRY_MS);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 1);
    int64_t idle_gone = s_wait_workers (client, 0);
    CHECK (idle_gone - idle_spoke >= DP_IDLE_FACTOR * EXPIRY_MS);
    CHECK (idle_gone > busy_gone);
    dp_testpeer_destroy (&idle);
    dp_testpeer_destroy (&busy);
    dp_testpeer_destroy (&client);
}

/*  A peer of version 1 (PROTOCOL.md 9: before payload frames) that says
    HELLO or READY in its own layout gets an ERROR it can read: in version
    1, naming the version the broker speaks. The broker serves on. */
static void
s_case_old_peer_told_version (void)
{
    dp_testpeer_t *old = dp_testpeer_new (dp_testbroker_broker.tcp);
    const dp_cmd_t cmds[] = {DP_CMD_HELLO, DP_CMD_READY};
    const char *fns[] = {"f"};
    uint8_t session[DP_SESSION_SIZE] = {1};
    for (int i = 0; i < 2; i++) {
        if (cmds[i] == DP_CMD_HELLO)
            dp_encode_hello (&old->w, session, "old-client");
        else
            dp_encode_ready (&old->w, "old-worker", 1, "host", 1, fns, 1);
        uint8_t header[DP_HEADER_SIZE];
        dp_header_encode_version (header, DP_VERSION_1, cmds[i]);
        CHECK (zmq_send (old->sock, header, sizeof header, ZMQ_SNDMORE) == 4);
        CHECK (zmq_send (old->sock, dp_writer_data (&old->w), dp_writer_size (&old->w), 0) >= 0);
        dp_testpeer_expect (old, DP_CMD_ERROR);
        zmq_msg_t *got = &old->in.frames[0];
        CHECK_EQ_INT (dp_header_version (zmq_msg_data (got), zmq_msg_size (got)), DP_VERSION_1);
        CHECK_EQ_INT (old->msg.u.error.code, DPOOL_EPROTO);
        CHECK (dp_span_eq (old->msg.u.error.message,
                           "unsupported version 1: this broker speaks DPP/2"));
    }
    dp_testpeer_t *client = dp_testbroker_client (12);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "version", true), 2);
    dp_testpeer_destroy (&client);
    dp_testpeer_destroy (&old);
}

/*  The broker's options for a case, where it needs some. */
static const char *const s_args_transport_garbage[] = {"--max-msg-size", "65536", NULL};
static const char *const s_args_heartbeats_on_a_common_beat[] = {"--heartbeat-ms", "400",
                                                                 "--expiry-ms", "5000", NULL};
static const char *const s_args_idle_workers_expire_later[] = {"--heartbeat-ms", "200",
                                                               "--expiry-ms", "600", NULL};

static const dp_test_case_t s_cases[] = {
    {"broker_hostile_input", s_case_hostile_input, .valgrind = "broker_hostile_input_valgrind"},
    {"broker_bye_and_sigterm", s_case_bye_and_sigterm},
    {"broker_old_peer_told_version", s_case_old_peer_told_version},
    {"broker_transport_garbage", s_case_transport_garbage, .data = s_args_transport_garbage,
     .valgrind = "broker_transport_garbage_valgrind"},
    {"broker_random_frames", s_case_random_frames, .valgrind = "broker_random_frames_valgrind"},
    {"broker_heartbeats_on_a_common_beat", s_case_heartbeats_on_a_common_beat,
     .data = s_args_heartbeats_on_a_common_beat},
    {"broker_idle_workers_expire_later", s_case_idle_workers_expire_later,
     .data = s_args_idle_workers_expire_later},
};

int
main (int argc, char *argv[])
{
    return dp_testbroker_main (argc, argv, DP_TEST_CASES (s_cases));
}

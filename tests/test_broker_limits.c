/*  test_broker_limits.c - the broker's bounds in bytes (PROTOCOL.md section
    8), each against a real dpool-broker started with small limits and
    driven by hand-made peers: the bytes of task arguments it holds, the
    results it holds for a session that does not read them (backpressure:
    its tasks wait, none is lost), the bytes of the named queues' values,
    and the memory it gives back to the system after a burst.
    Usage: test_broker_limits CASE.
*/
#include "dp_proto.h"
#include "dp_testbroker.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define BIG_ARGS   (100 * 1000) /* bytes of one task's arguments in the queue-bytes case */
#define VALUE_LEN  (16 * 1024)  /* bytes of one result in the held-results case */
#define SINK_TASKS 3000         /* tasks of the client that does not read */
#define WAIT_MS    20000        /* deadline of a condition */

/*  A bin of size bytes, packed, in a buffer the caller frees; *packed its size. */
static uint8_t *
s_bin (size_t size, size_t *packed)
{
    uint8_t *bin = malloc (size + 5);
    CHECK (bin);
    bin[0] = 0xc6; /* bin 32 */
    bin[1] = (uint8_t)(size >> 24);
    bin[2] = (uint8_t)(size >> 16);
    bin[3] = (uint8_t)(size >> 8);
    bin[4] = (uint8_t)size;
    memset (bin + 5, 'x', size);
    *packed = size + 5;
    return bin;
}

/*  Copies span into out as a string, cut to cap - 1 bytes. */
static void
s_text (dp_span_t span, char *out, size_t cap)
{
    size_t len = span.size < cap - 1 ? span.size : cap - 1;
    memcpy (out, span.data, len);
    out[len] = 0;
}

/*  A counter of status's "limits" map. */
static uint64_t
s_limit (dp_testpeer_t *client, const char *key)
{
    msgpack_unpacked unpacked;
    msgpack_object map = dp_testpeer_status (client, &unpacked);
    msgpack_object limits = dp_testpeer_map_get (map, "limits");
    if (limits.type != MSGPACK_OBJECT_MAP)
        dp_test_fail (__FILE__, __LINE__, "status has no map 'limits'");
    msgpack_object value = dp_testpeer_map_get (limits, key);
    if (value.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        dp_test_fail (__FILE__, __LINE__, "status limits has no counter %s", key);
    msgpack_unpacked_destroy (&unpacked);
    return value.via.u64;
}

/*  Reads RESULTs until every task from first to last has one, each once,
    with code, and (if needle is not NULL) a message holding needle. */
static void
s_expect_results (dp_testpeer_t *client, uint64_t first, uint64_t last, int code,
                  const char *needle)
{
    size_t want = (size_t)(last - first + 1), got = 0;
    uint8_t *seen = calloc (want, 1);
    CHECK (seen);
    while (got < want) {
        dp_testpeer_expect (client, DP_CMD_RESULT);
        dp_result_t r;
        while (dp_list_next_result (&client->msg.u.list, &r)) {
            CHECK (r.id >= first && r.id <= last && !seen[r.id - first]);
            CHECK_EQ_INT (r.code, code);
            if (needle) {
                char *message = dp_testbroker_result_message (r);
                if (!strstr (message, needle))
                    dp_test_fail (__FILE__, __LINE__, "'%s' does not say '%s'", message, needle);
                free (message);
            }
            seen[r.id - first] = 1;
            got++;
        }
    }
    free (seen);
}

/*  The broker's resident set, in bytes, from /proc/PID/statm. */
static size_t
s_rss (void)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/statm", (int)dp_testbroker_broker.pid);
    FILE *file = fopen (path, "r");
    CHECK (file);
    unsigned long size = 0, resident = 0;
    CHECK (fscanf (file, "%lu %lu", &size, &resident) == 2);
    fclose (file);
    return resident * (size_t)sysconf (_SC_PAGESIZE);
}

/*  ---------------------------------------------------------------------------
    Queued tasks: a bound in bytes of arguments.
*/

static const char *const s_args_queue_bytes[] = {"--max-queue-bytes", "1000000", NULL};

/*  100 KB tasks that no worker runs: past 1 MB of arguments held, each is
    rejected with EREJECTED naming the option; those queued stay queued. */
static void
s_case_queue_bytes (void)
{
    dp_testpeer_t *client = dp_testbroker_client (1);
    size_t size;
    uint8_t *args = s_bin (BIG_ARGS, &size);
    for (uint64_t seq = 1; seq <= 20; seq++) {
        dp_task_t task = {.id = seq, .fn = {(const uint8_t *)"nobody", 6}, .args = {args, size}};
        dp_testbroker_submit_tasks (client, &task, 1);
    }
    free (args);
    /*  Nine fit in 1,000,000 bytes; the other eleven are refused. */
    s_expect_results (client, 10, 20, DPOOL_EREJECTED,
                      "1000000 bytes of arguments: "
                      "--max-queue-bytes");
    CHECK_EQ_INT (s_limit (client, "queued"), 9);
    CHECK_EQ_INT (s_limit (client, "max_queue_bytes"), 1000000);
    CHECK (s_limit (client, "task_bytes") <= 1000000);
    CHECK (s_limit (client, "task_bytes") >= 9 * BIG_ARGS);
    /*  Cancelled, they free their bytes: new tasks fit again. */
    dp_encode_cancel (&client->w, true, NULL, 0);
    dp_testpeer_send (client, DP_CMD_CANCEL);
    s_expect_results (client, 1, 9, DPOOL_ECANCELLED, NULL);
    CHECK_EQ_INT (s_limit (client, "task_bytes"), 0);
    dp_testbroker_submit (client, "nobody", 21, 0, 0);
    CHECK_EQ_INT (s_limit (client, "queued"), 1);
    dp_testpeer_destroy (&client);
}

/*  ---------------------------------------------------------------------------
    Results held for a session that does not read them: backpressure.
*/

static const char *const s_args_held[] = {"--max-held-results", "40", "--max-held-bytes", "200000",
                                          NULL};

/*  A client whose socket takes almost nothing in until the test reads it
    (one message, a small kernel buffer): what the broker sends it piles up
    in the broker. It heartbeats while the test waits. */
static dp_testpeer_t *
s_sink_new (uint8_t tag)
{
    dp_testpeer_t *peer = calloc (1, sizeof *peer);
    CHECK (peer);
    peer->sock = zmq_socket (dp_testbroker_ctx, ZMQ_DEALER);
    CHECK (peer->sock);
    CHECK (dp_wire_configure (peer->sock, false, 0) == 0);
    int one = 1, small = 4096;
    CHECK (zmq_setsockopt (peer->sock, ZMQ_RCVHWM, &one, sizeof one) == 0);
    CHECK (zmq_setsockopt (peer->sock, ZMQ_RCVBUF, &small, sizeof small) == 0);
    CHECK (zmq_connect (peer->sock, dp_testbroker_broker.tcp) == 0);
    dp_writer_init (&peer->w);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "sink");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    return peer;
}

/*  Answers the jobs of one DISPATCH, if one comes within ms, each with a
    VALUE_LEN value. Returns how many. */
static size_t
s_serve (dp_testpeer_t *worker, const uint8_t *value, size_t size, int ms)
{
    if (dp_testpeer_recv (worker, ms) != DP_CMD_DISPATCH)
        return 0;
    uint64_t refs[64];
    size_t count = 0;
    dp_task_t job;
    while (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job)) {
        CHECK (count < 64);
        refs[count++] = job.id;
    }
    dp_list_begin (&worker->w);
    for (size_t i = 0; i < count; i++)
        dp_list_add_result_run (&worker->w, refs[i], 0, value, size, 10);
    dp_list_end (&worker->w);
    dp_testpeer_send (worker, DP_CMD_DONE);
    return count;
}

/*  Submits SINK_TASKS tasks of "fh" from the sink, in SUBMITs of 100. */
static void
s_sink_submit (dp_testpeer_t *sink)
{
    for (uint64_t first = 1; first <= SINK_TASKS; first += 100) {
        dp_list_begin (&sink->w);
        for (uint64_t seq = first; seq < first + 100; seq++) {
            dp_task_t task = {.id = seq,
                              .fn = {(const uint8_t *)"fh", 2},
                              .args = {dp_testbroker_args, sizeof dp_testbroker_args}};
            dp_list_add_task (&sink->w, DP_CMD_SUBMIT, &task);
        }
        dp_list_end (&sink->w);
        dp_testpeer_send (sink, DP_CMD_SUBMIT);
    }
}

/*  Reads the sink's results, serving the worker, until count tasks have
    one; each comes once, and none for a task numbered above last. */
static void
s_sink_drain (dp_testpeer_t *sink, dp_testpeer_t *worker, const uint8_t *value, size_t size,
              size_t count, uint64_t last)
{
    uint8_t *seen = calloc (last + 1, 1);
    CHECK (seen);
    size_t results = 0;
    int64_t deadline = dp_now_ms () + WAIT_MS;
    while (results < count) {
        if (dp_now_ms () >= deadline)
            dp_test_fail (__FILE__, __LINE__, "%zu results of %zu came", results, count);
        s_serve (worker, value, size, 5);
        while (results < count && dp_testpeer_recv (sink, 5) == DP_CMD_RESULT) {
            dp_result_t r;
            while (dp_list_next_result (&sink->msg.u.list, &r)) {
                CHECK (r.id >= 1 && r.id <= last && !seen[r.id]);
                CHECK_EQ_INT (r.code, 0);
                CHECK_EQ_INT (r.value.size, size);
                seen[r.id] = 1;
                results++;
            }
        }
    }
    free (seen);
}

/*  Serves the worker until no task comes for a second; returns how many ran. */
static size_t
s_serve_until_quiet (dp_testpeer_t *worker, const uint8_t *value, size_t size)
{
    size_t ran = 0;
    int64_t deadline = dp_now_ms () + WAIT_MS;
    int64_t quiet_since = dp_now_ms ();
    while (dp_now_ms () - quiet_since < 1000 && dp_now_ms () < deadline) {
        size_t given = s_serve (worker, value, size, 100);
        ran += given;
        if (given)
            quiet_since = dp_now_ms ();
    }
    return ran;
}

/*  A client that submits and reads nothing: once the results the broker
    holds for it reach the bound, its tasks wait (none is dispatched, the
    worker goes idle); once it reads, they all run and every result comes,
    once. On a broker without the bound every task runs and its results
    pile up in the broker. */
static void
s_case_held_results (void)
{
    const char *fns[] = {"fh"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 8);
    dp_testpeer_keepalive (worker);
    dp_testpeer_t *observer = dp_testbroker_client (2);
    dp_testpeer_keepalive (observer);
    dp_testpeer_t *sink = s_sink_new (3);
    size_t size;
    uint8_t *value = s_bin (VALUE_LEN - 5, &size);
    s_sink_submit (sink);
    size_t ran = s_serve_until_quiet (worker, value, size);
    CHECK (ran < SINK_TASKS);
    CHECK_EQ_INT (s_limit (observer, "stalled_sessions"), 1);
    CHECK (s_limit (observer, "parked") > 0);
    CHECK_EQ_INT (s_limit (observer, "queued"), SINK_TASKS - ran);
    /*  At the bound, plus what its worker still held then (credit 8). */
    uint64_t held = s_limit (observer, "session_held_bytes");
    CHECK (held >= 100000 && held <= 200000 + 9 * (VALUE_LEN + 16));
    CHECK (s_limit (observer, "session_held_results") <= 40 + 9);
    /*  Backpressure, not loss: once it reads, every task runs. */
    s_sink_drain (sink, worker, value, size, SINK_TASKS, SINK_TASKS);
    CHECK_EQ_INT (s_limit (observer, "stalled_sessions"), 0);
    CHECK_EQ_INT (s_limit (observer, "queued"), 0);
    CHECK_EQ_INT (s_limit (observer, "held_results"), 0);
    CHECK (s_limit (observer, "stalls") >= 1);
    free (value);
    dp_testpeer_destroy (&sink);
    dp_testpeer_destroy (&observer);
    dp_testpeer_destroy (&worker);
}

static const char *const s_args_flooded[] = {"--max-held-results", "1", NULL};

/*  A client that reads nothing at all: with results held at twice the
    bound and none taken for an expiry, its further tasks are dropped and
    counted, not answered (their refusals would pile up in their turn);
    the tasks it submitted before still all run once it reads. */
static void
s_case_flooded (void)
{
    const char *fns[] = {"fh"};
    dp_testpeer_t *worker = dp_testbroker_worker (fns, 1, 8);
    dp_testpeer_keepalive (worker);
    dp_testpeer_t *observer = dp_testbroker_client (6);
    dp_testpeer_keepalive (observer);
    dp_testpeer_t *sink = s_sink_new (7);
    size_t size;
    uint8_t *value = s_bin (VALUE_LEN - 5, &size);
    s_sink_submit (sink);
    s_serve_until_quiet (worker, value, size);
    CHECK_EQ_INT (s_limit (observer, "stalled_sessions"), 1);
    CHECK (s_limit (observer, "session_held_results") >= 2);
    /*  A task at a time until they are dropped: an expiry (2.5 s) on. */
    uint64_t seq = SINK_TASKS;
    int64_t deadline = dp_now_ms () + WAIT_MS;
    while (dp_testbroker_status_counter (observer, "held_full", true) == 0) {
        CHECK (dp_now_ms () < deadline);
        dp_testbroker_submit (sink, "fh", ++seq, 0, 0);
        dp_test_sleep_ms (200);
    }
    uint64_t kept = seq - SINK_TASKS - 1; /* the last one was dropped */
    for (int i = 0; i < 3; i++)
        dp_testbroker_submit (sink, "fh", ++seq, 0, 0);
    /*  The sink's SUBMITs and the observer's STATUS come on two connections. */
    while (dp_testbroker_status_counter (observer, "held_full", true) < 4) {
        CHECK (dp_now_ms () < deadline);
        dp_test_sleep_ms (20);
    }
    CHECK_EQ_INT (dp_testbroker_status_counter (observer, "held_full", true), 4);
    s_sink_drain (sink, worker, value, size, SINK_TASKS + kept, SINK_TASKS + kept);
    CHECK_EQ_INT (s_limit (observer, "queued"), 0);
    CHECK_EQ_INT (s_limit (observer, "held_results"), 0);
    free (value);
    dp_testpeer_destroy (&sink);
    dp_testpeer_destroy (&observer);
    dp_testpeer_destroy (&worker);
}

/*  ---------------------------------------------------------------------------
    Sessions: a bound in count (each holds its tasks and results, bounded
    above, and a table of lanes).
*/

static const char *const s_args_sessions[] = {"--max-sessions", "2", NULL};

/*  A HELLO for a third session is refused with EREJECTED naming the
    option, and changes nothing; once a session is gone (BYE), it is let
    in. */
static void
s_case_sessions (void)
{
    dp_testpeer_t *one = dp_testbroker_client (8);
    dp_testpeer_t *two = dp_testbroker_client (9);
    dp_testpeer_t *three = dp_testpeer_new (dp_testbroker_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, 10, sizeof session);
    dp_encode_hello (&three->w, session, "third");
    dp_testpeer_send (three, DP_CMD_HELLO);
    dp_testpeer_expect (three, DP_CMD_ERROR);
    CHECK_EQ_INT (three->msg.u.error.code, DPOOL_EREJECTED);
    char message[DP_MAX_ERROR + 1];
    s_text (three->msg.u.error.message, message, sizeof message);
    CHECK (strstr (message, "2 sessions (--max-sessions)"));
    CHECK_EQ_INT (s_limit (one, "sessions"), 2);
    CHECK_EQ_INT (s_limit (one, "sessions_refused"), 1);
    dp_encode_empty (&two->w);
    dp_testpeer_send (two, DP_CMD_BYE);
    int64_t deadline = dp_now_ms () + WAIT_MS;
    while (s_limit (one, "sessions") > 1) /* its BYE came on another connection */
        CHECK (dp_now_ms () < deadline);
    dp_encode_hello (&three->w, session, "third");
    dp_testpeer_send (three, DP_CMD_HELLO);
    dp_testpeer_expect (three, DP_CMD_WELCOME);
    dp_testpeer_destroy (&three);
    dp_testpeer_destroy (&two);
    dp_testpeer_destroy (&one);
}

/*  ---------------------------------------------------------------------------
    Named queues: a bound in bytes of values, given by an option.
*/

static const char *const s_args_named_bytes[] = {"--max-named-bytes", "100000", NULL};

/*  30 KB values: the fourth put would pass 100,000 bytes and is refused
    EREJECTED, naming the option; a get makes room again. */
static void
s_case_named_bytes (void)
{
    dp_testpeer_t *client = dp_testbroker_client (4);
    size_t size;
    uint8_t *value = s_bin (30000, &size);
    for (uint64_t req = 1; req <= 4; req++) {
        dp_encode_queue_put (&client->w, req, "q", value, size, 0, 0);
        dp_testpeer_send (client, DP_CMD_QUEUE_PUT);
        dp_testpeer_expect (client, DP_CMD_QUEUE_REPLY);
        CHECK_EQ_INT (client->msg.u.queue_reply.req, req);
        CHECK_EQ_INT (client->msg.u.queue_reply.code, req <= 3 ? 0 : DPOOL_EREJECTED);
    }
    dp_reader_t reader;
    dp_span_t text;
    dp_reader_init (&reader, client->msg.u.queue_reply.value.data,
                    client->msg.u.queue_reply.value.size);
    CHECK (dp_mp_read_str (&reader, &text) == 0);
    char message[DP_MAX_ERROR + 1];
    s_text (text, message, sizeof message);
    CHECK (strstr (message, "--max-named-bytes"));
    CHECK_EQ_INT (s_limit (client, "max_value_bytes"), 100000);
    CHECK_EQ_INT (s_limit (client, "value_bytes"), 3 * size);
    free (value);
    dp_testpeer_destroy (&client);
}

/*  ---------------------------------------------------------------------------
    Memory back to the system after a burst.
*/

#define BURST_TASKS 400
#define BURST_ARGS  (128 * 1024)
#define RETAINED    (4 << 20) /* what the broker may keep after a burst (README) */

/*  A burst of 50 MB of queued arguments, held below a live record (a
    small task submitted after them, still queued), is cancelled: the
    broker gives the memory back once it goes idle, and its resident set
    comes back within RETAINED of where it was. glibc alone would keep
    all of it (it trims only the top of its heap). */
static void
s_case_memory_returns (void)
{
    dp_testpeer_t *client = dp_testbroker_client (5);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 0);
    size_t before = s_rss ();
    size_t size;
    uint8_t *args = s_bin (BURST_ARGS, &size);
    for (uint64_t seq = 1; seq <= BURST_TASKS; seq++) {
        dp_task_t task = {.id = seq, .fn = {(const uint8_t *)"nobody", 6}, .args = {args, size}};
        dp_testbroker_submit_tasks (client, &task, 1);
    }
    free (args);
    dp_testbroker_submit (client, "nobody", BURST_TASKS + 1, 0, 0);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), BURST_TASKS + 1);
    size_t peak = s_rss ();
    uint64_t *seqs = malloc (BURST_TASKS * sizeof *seqs);
    CHECK (seqs);
    for (uint64_t i = 0; i < BURST_TASKS; i++)
        seqs[i] = i + 1;
    dp_encode_cancel (&client->w, false, seqs, BURST_TASKS);
    dp_testpeer_send (client, DP_CMD_CANCEL);
    free (seqs);
    s_expect_results (client, 1, BURST_TASKS, DPOOL_ECANCELLED, NULL);
    CHECK_EQ_INT (dp_testbroker_status_counter (client, "queued", false), 1);
    /*  The trim comes on the first tick (100 ms) after the burst. ASan's
        allocator keeps freed memory in quarantine: no bound on it there. */
    CHECK (SANITIZED || peak >= before + BURST_TASKS * (size_t)BURST_ARGS / 2);
    /*  Each turn asks for status, which keeps the session alive however
        long a loaded machine takes (a silent peer expires in 2.5 s). */
    int64_t deadline = dp_now_ms () + WAIT_MS;
    while (!SANITIZED && s_rss () > before + RETAINED && dp_now_ms () < deadline) {
        s_limit (client, "trims");
        dp_test_sleep_ms (50);
    }
    size_t after = s_rss ();
    if (!SANITIZED && after > before + RETAINED)
        dp_test_fail (__FILE__, __LINE__,
                      "RSS %zu KiB before, %zu at the peak, %zu after (bound %zu more); "
                      "trims %ld",
                      before >> 10, peak >> 10, after >> 10, (size_t)RETAINED >> 10,
                      (long)s_limit (client, "trims"));
    while (s_limit (client, "trims") == 0 && dp_now_ms () < deadline)
        dp_test_sleep_ms (100);
    CHECK (s_limit (client, "trims") >= 1);
    dp_testpeer_destroy (&client);
}

static const dp_test_case_t s_cases[] = {
    {"broker_limits_queue_bytes", s_case_queue_bytes, .data = s_args_queue_bytes},
    {"broker_limits_held_results", s_case_held_results, .data = s_args_held, .seconds = 90},
    {"broker_limits_flooded_session_dropped", s_case_flooded, .data = s_args_flooded,
     .seconds = 90},
    {"broker_limits_sessions", s_case_sessions, .data = s_args_sessions},
    {"broker_limits_named_bytes", s_case_named_bytes, .data = s_args_named_bytes},
    {"broker_limits_memory_returns", s_case_memory_returns, .seconds = 90},
};

int
main (int argc, char *argv[])
{
    return dp_testbroker_main (argc, argv, DP_TEST_CASES (s_cases));
}

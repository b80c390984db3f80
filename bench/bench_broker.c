/*  bench_broker.c - dpool_bench's broker-only workloads: a dpool-broker
    process driven with the wire protocol (proto/) over plain libzmq, with
    no client library in between. See dpool_bench.c for the list of
    workloads and what each measures.
*/
#include "dpool_bench.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <zmq.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  Default counts, before --scale. */
#define N_BROKER_RSS 1000000
#define N_CANCEL     100000

#define SUBMIT_BATCH   10000 /* tasks per SUBMIT */
#define STATUS_POLL_MS 50    /* between STATUS requests while waiting */
#define IDLE_TICK_MS   20    /* the fake workers' loop period */
#define SETTLE_MS      1000  /* after the idle workers are welcome, before measuring */

/*  ---------------------------------------------------------------------------
    Broker-only workloads: the wire protocol by hand, over plain libzmq.
*/

/*  One peer of the broker: a DEALER and a reusable writer. */
typedef struct {
    void *socket;
    dp_writer_t writer;
    double last_sent;
} s_peer_t;

static void
s_peer_open (s_peer_t *self, void *ctx, const char *endpoint)
{
    self->socket = zmq_socket (ctx, ZMQ_DEALER);
    if (!self->socket)
        bench_fail ("zmq_socket: %s", zmq_strerror (errno));
    if (dp_wire_configure (self->socket, false, 0) != 0 ||
        zmq_connect (self->socket, endpoint) != 0)
        bench_fail ("connect %s: %s", endpoint, zmq_strerror (errno));
    dp_writer_init (&self->writer);
    self->last_sent = 0;
}

static void
s_peer_close (s_peer_t *self)
{
    zmq_close (self->socket);
    dp_writer_fini (&self->writer);
}

/*  Sends the writer's body as cmd; fails the run if it cannot. */
static void
s_peer_send (s_peer_t *self, dp_cmd_t cmd)
{
    if (!dp_writer_ok (&self->writer))
        bench_fail ("out of memory encoding %s", dp_cmd_name (cmd));
    if (dp_wire_send_writer (self->socket, NULL, 0, cmd, &self->writer, 0) != 0)
        bench_fail ("send %s: %s", dp_cmd_name (cmd), zmq_strerror (errno));
    self->last_sent = bench_now ();
}

/*  Receives one message into msg (decoded into out) within timeout_ms;
    returns false on timeout. A malformed message fails the run. */
static bool
s_peer_recv (s_peer_t *self, dp_wire_msg_t *msg, dp_msg_t *out, int timeout_ms)
{
    zmq_pollitem_t item = {self->socket, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return false;
    if (dp_wire_recv (self->socket, msg, 0) != 0)
        bench_fail ("recv: %s", zmq_strerror (errno));
    dp_reason_t reason = dp_wire_decode (msg, false, NULL, out);
    if (reason != DP_OK)
        bench_fail ("malformed message from the broker: %s", dp_reason_name (reason));
    return true;
}

/*  HELLO, then waits for WELCOME (results held for the session first). */
static void
s_client_hello (s_peer_t *self)
{
    uint8_t session[DP_SESSION_SIZE];
    for (size_t i = 0; i < sizeof session; i++)
        session[i] = (uint8_t)rand ();
    dp_encode_hello (&self->writer, session, "dpool_bench");
    s_peer_send (self, DP_CMD_HELLO);
    double deadline = bench_now () + BENCH_START_LIMIT_MS / 1000.0;
    while (bench_now () < deadline) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!s_peer_recv (self, &msg, &decoded, 100))
            continue;
        dp_cmd_t cmd = decoded.cmd;
        dp_wire_close (&msg);
        if (cmd == DP_CMD_WELCOME)
            return;
    }
    bench_fail ("no WELCOME from the broker");
}

/*  Submits count no-op tasks with seqs first..first+count-1, in batches;
    args is one packed object. */
static void
s_client_submit (s_peer_t *self, uint64_t first, long count, const void *args, size_t size)
{
    dp_task_t task = {0};
    task.fn.data = (const uint8_t *)BENCH_FN_NOOP;
    task.fn.size = strlen (BENCH_FN_NOOP);
    task.args.data = args;
    task.args.size = size;
    long sent = 0;
    while (sent < count) {
        dp_list_begin (&self->writer);
        long batch = count - sent < SUBMIT_BATCH ? count - sent : SUBMIT_BATCH;
        for (long i = 0; i < batch; i++) {
            task.id = first + (uint64_t)(sent + i);
            dp_list_add_task (&self->writer, DP_CMD_SUBMIT, &task);
        }
        dp_list_end (&self->writer);
        s_peer_send (self, DP_CMD_SUBMIT);
        sent += batch;
    }
}

/*  Reads an unsigned value of key from a packed status map; -1 if absent. */
static long
s_status_uint (dp_span_t status, const char *key)
{
    dp_reader_t reader;
    dp_reader_init (&reader, status.data, status.size);
    uint32_t pairs;
    if (dp_mp_read_map (&reader, &pairs) != 0)
        return -1;
    for (uint32_t i = 0; i < pairs; i++) {
        dp_span_t name, value;
        uint64_t number;
        if (dp_mp_read_str (&reader, &name) != 0)
            return -1;
        if (dp_span_eq (name, key) && dp_mp_read_uint (&reader, &number) == 0)
            return (long)number;
        if (dp_mp_read_object (&reader, &value) != 0)
            return -1;
    }
    return -1;
}

/*  Asks STATUS until the broker holds count queued tasks; results that
    arrive meanwhile fail the run (no task may end yet). */
static void
s_client_wait_queued (s_peer_t *self, long count)
{
    double deadline = bench_now () + BENCH_WAIT_LIMIT_MS / 1000.0;
    while (bench_now () < deadline) {
        dp_encode_empty (&self->writer);
        s_peer_send (self, DP_CMD_STATUS);
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        long queued = -1;
        double asked = bench_now ();
        while (bench_now () - asked < 10.0) {
            if (!s_peer_recv (self, &msg, &decoded, 1000))
                continue;
            dp_cmd_t cmd = decoded.cmd;
            if (cmd == DP_CMD_STATUS_REPLY)
                queued = s_status_uint (decoded.u.status, "queued");
            dp_wire_close (&msg);
            if (cmd == DP_CMD_RESULT)
                bench_fail ("a result arrived while the tasks should wait");
            if (cmd == DP_CMD_STATUS_REPLY)
                break;
        }
        if (queued >= count)
            return;
        usleep (STATUS_POLL_MS * 1000);
    }
    bench_fail ("the broker never held %ld queued tasks", count);
}

/*  broker_rss: the broker's resident memory per queued task. */
static void
s_broker_rss (void *ctx, bench_figures_t *figures)
{
    long count = bench_scaled (N_BROKER_RSS);
    s_peer_t client;
    s_peer_open (&client, ctx, bench_procs.endpoint);
    s_client_hello (&client);
    /*  The argument: a uint64 in its 9-byte form, as a counter would be. */
    uint8_t args[9] = {0xcf, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
    /*  Settle what the first messages allocated, then take the baseline. */
    s_client_wait_queued (&client, 0);
    figures->rss_broker_idle_kb = bench_proc_status_kb (bench_procs.broker, "VmRSS");
    double start = bench_now ();
    s_client_submit (&client, 1, count, args, sizeof args);
    s_client_wait_queued (&client, count);
    figures->seconds = bench_now () - start;
    figures->rss_broker_full_kb = bench_proc_status_kb (bench_procs.broker, "VmRSS");
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    figures->tasks = count;
    figures->payload_bytes = (long)sizeof args;
    figures->bytes_per_task = (double)(figures->rss_broker_full_kb - figures->rss_broker_idle_kb) *
                                  1024.0 / (double)count -
                              (double)sizeof args;
    s_peer_close (&client);
}

/*  cancel and cancel_all: N queued tasks cancelled in one CANCEL. */
static void
s_cancel (void *ctx, bool all, bench_figures_t *figures)
{
    long count = bench_scaled (N_CANCEL);
    s_peer_t client;
    s_peer_open (&client, ctx, bench_procs.endpoint);
    s_client_hello (&client);
    uint8_t args[1] = {0x01};
    s_client_submit (&client, 1, count, args, sizeof args);
    s_client_wait_queued (&client, count);
    uint64_t *seqs = NULL;
    if (!all) {
        seqs = malloc ((size_t)count * sizeof *seqs);
        if (!seqs)
            bench_fail ("out of memory");
        for (long i = 0; i < count; i++)
            seqs[i] = (uint64_t)i + 1;
    }
    double start = bench_now ();
    dp_encode_cancel (&client.writer, all, seqs, all ? 0 : (size_t)count);
    s_peer_send (&client, DP_CMD_CANCEL);
    long cancelled = 0;
    double deadline = start + BENCH_WAIT_LIMIT_MS / 1000.0;
    while (cancelled < count) {
        if (bench_now () > deadline)
            bench_fail ("only %ld of %ld cancellations came back", cancelled, count);
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!s_peer_recv (&client, &msg, &decoded, 1000))
            continue;
        if (decoded.cmd == DP_CMD_RESULT) {
            dp_result_t result;
            while (dp_list_next_result (&decoded.u.list, &result)) {
                if (result.code != DPOOL_ECANCELLED)
                    bench_fail ("task %" PRIu64 " ended with code %d, not ECANCELLED", result.id,
                                (int)result.code);
                cancelled++;
            }
        }
        dp_wire_close (&msg);
    }
    figures->seconds = bench_now () - start;
    figures->tasks = count;
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    free (seqs);
    s_peer_close (&client);
}

/*  broker_idle: many workers that only heartbeat; the broker's CPU. */
static void
s_broker_idle (void *ctx, bench_figures_t *figures)
{
    long count =
        bench_options.idle_workers > 0 ? bench_options.idle_workers : bench_scaled (BENCH_N_IDLE);
    double seconds = bench_options.idle_seconds;
    s_peer_t *peers = calloc ((size_t)count, sizeof *peers);
    bool *welcome = calloc ((size_t)count, sizeof *welcome);
    if (!peers || !welcome)
        bench_fail ("out of memory");
    const char *functions[] = {BENCH_FN_NOOP};
    char name[64];
    for (long i = 0; i < count; i++) {
        s_peer_open (&peers[i], ctx, bench_procs.endpoint);
        snprintf (name, sizeof name, "idle-%ld", i);
        dp_encode_ready (&peers[i].writer, name, (uint64_t)getpid (), "localhost", 1, functions,
                         1);
        s_peer_send (&peers[i], DP_CMD_READY);
    }
    /*  Every worker keeps the protocol's heartbeat rules for idle workers
        (PROTOCOL.md §6): it answers the broker's HEARTBEAT when it has been
        quiet for half an interval, and speaks unasked after one and a half
        idle intervals (DP_IDLE_FACTOR intervals). Their own clocks start
        spread over the idle interval. */
    double heartbeat = DP_HEARTBEAT_MS / 1000.0;
    for (long i = 0; i < count; i++)
        peers[i].last_sent = bench_now () - DP_IDLE_FACTOR * heartbeat * (double)i / (double)count;
    long welcomed = 0, expired = 0;
    double started = bench_now ();
    double measure_from = 0, measure_to = 0;
    double cpu_from = 0;
    while (true) {
        double now = bench_now ();
        for (long i = 0; i < count; i++) {
            dp_wire_msg_t msg;
            while (dp_wire_recv (peers[i].socket, &msg, ZMQ_DONTWAIT) == 0) {
                dp_msg_t decoded;
                if (dp_wire_decode (&msg, false, NULL, &decoded) == DP_OK) {
                    if (decoded.cmd == DP_CMD_WELCOME && !welcome[i]) {
                        welcome[i] = true;
                        welcomed++;
                        heartbeat = decoded.u.welcome.heartbeat_ms / 1000.0;
                    } else if (decoded.cmd == DP_CMD_HEARTBEAT &&
                               now - peers[i].last_sent >= DP_HEARTBEAT_QUIET (heartbeat)) {
                        dp_encode_empty (&peers[i].writer);
                        s_peer_send (&peers[i], DP_CMD_HEARTBEAT);
                    } else if (decoded.cmd == DP_CMD_ERROR || decoded.cmd == DP_CMD_BYE)
                        expired++;
                }
                dp_wire_close (&msg);
            }
            if (now - peers[i].last_sent >= DP_HEARTBEAT_ALONE (DP_IDLE_FACTOR * heartbeat)) {
                dp_encode_empty (&peers[i].writer);
                s_peer_send (&peers[i], DP_CMD_HEARTBEAT);
            }
        }
        if (measure_from == 0 && welcomed == count) {
            /*  Everyone is in: let the broker settle, then start measuring. */
            measure_from = now + SETTLE_MS / 1000.0;
        }
        if (measure_from > 0 && cpu_from == 0 && now >= measure_from) {
            cpu_from = dp_proc_cpu_seconds (bench_procs.broker);
            measure_from = now;
            measure_to = now + seconds;
            expired = 0;
        }
        if (cpu_from > 0 && now >= measure_to) {
            double cpu_to = dp_proc_cpu_seconds (bench_procs.broker);
            figures->cpu_percent = (cpu_to - cpu_from) / (now - measure_from) * 100.0;
            figures->seconds = now - measure_from;
            break;
        }
        if (measure_from == 0 && now - started > BENCH_START_LIMIT_MS / 1000.0)
            bench_fail ("only %ld of %ld idle workers were welcomed", welcomed, count);
        usleep (IDLE_TICK_MS * 1000);
    }
    figures->tasks = count;
    figures->expired = expired;
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    for (long i = 0; i < count; i++)
        s_peer_close (&peers[i]);
    free (peers);
    free (welcome);
}

void
bench_broker_workload (bench_figures_t *figures)
{
    const char *w = bench_options.workload;
    bench_start_broker (bench_options.mode == BENCH_MODE_IPC ? BENCH_MODE_IPC : BENCH_MODE_TCP,
                        "100000000");
    void *ctx = zmq_ctx_new ();
    if (!ctx)
        bench_fail ("zmq_ctx_new: %s", zmq_strerror (errno));
    if (strcmp (w, "broker_idle") == 0) {
        long count = bench_options.idle_workers > 0 ? bench_options.idle_workers
                                                    : bench_scaled (BENCH_N_IDLE);
        zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, (int)count + 64);
        s_broker_idle (ctx, figures);
    } else if (strcmp (w, "broker_rss") == 0)
        s_broker_rss (ctx, figures);
    else if (strcmp (w, "cancel") == 0 || strcmp (w, "cancel_all") == 0)
        s_cancel (ctx, strcmp (w, "cancel_all") == 0, figures);
    else
        bench_fail ("unknown workload '%s'", w);
    zmq_ctx_term (ctx);
    bench_stop_procs ();
}

/*  bench_broker.c - dpool_bench's broker-only workloads: a dpool-broker
    process driven with the wire protocol (proto/) over plain libzmq, with
    no client library in between. See dpool_bench.c for the list of
    workloads and what each measures.
*/
#include "dpool_bench.h"

#include "bench_peer.h"

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
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*  Default counts, before --scale. */
#define N_BROKER_RSS 1000000
#define N_CANCEL     100000
#define N_RESTART    1000000

#define STATUS_POLL_MS 50   /* between STATUS requests while waiting */
#define IDLE_TICK_MS   20   /* the fake workers' loop period */
#define SETTLE_MS      1000 /* after the idle workers are welcome, before measuring */

/*  Asks STATUS until the broker holds count queued tasks; results that
    arrive meanwhile fail the run (no task may end yet). */
static void
s_client_wait_queued (bench_peer_t *self, long count)
{
    double deadline = bench_now () + BENCH_WAIT_LIMIT_MS / 1000.0;
    while (bench_now () < deadline) {
        dp_encode_empty (&self->writer);
        bench_peer_send (self, DP_CMD_STATUS);
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        long queued = -1;
        double asked = bench_now ();
        while (bench_now () - asked < 10.0) {
            if (!bench_peer_recv (self, &msg, &decoded, 1000))
                continue;
            dp_cmd_t cmd = decoded.cmd;
            if (cmd == DP_CMD_STATUS_REPLY)
                queued = bench_status_uint (decoded.u.status, "queued");
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
    bench_peer_t client;
    bench_peer_open (&client, ctx, bench_procs.endpoint);
    bench_peer_hello (&client);
    /*  The argument: a uint64 in its 9-byte form, as a counter would be. */
    uint8_t args[9] = {0xcf, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
    /*  Settle what the first messages allocated, then take the baseline. */
    s_client_wait_queued (&client, 0);
    figures->rss_broker_idle_kb = bench_proc_status_kb (bench_procs.broker, "VmRSS");
    double start = bench_now ();
    bench_peer_submit (&client, BENCH_FN_NOOP, 1, count, args, sizeof args);
    s_client_wait_queued (&client, count);
    figures->seconds = bench_now () - start;
    figures->rss_broker_full_kb = bench_proc_status_kb (bench_procs.broker, "VmRSS");
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    figures->tasks = count;
    figures->payload_bytes = (long)sizeof args;
    figures->bytes_per_task = (double)(figures->rss_broker_full_kb - figures->rss_broker_idle_kb) *
                                  1024.0 / (double)count -
                              (double)sizeof args;
    bench_peer_close (&client);
}

/*  Waits for the answer to a queue PUT: the broker answers it after the
    commit of its turn, so every message sent before it is journaled. */
static void
s_client_sync_journal (bench_peer_t *self)
{
    uint8_t value = 0x01;
    dp_encode_queue_put (&self->writer, 1, "bench-sync", &value, 1, 0, 0);
    bench_peer_send (self, DP_CMD_QUEUE_PUT);
    double deadline = bench_now () + BENCH_WAIT_LIMIT_MS / 1000.0;
    while (bench_now () < deadline) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!bench_peer_recv (self, &msg, &decoded, 1000))
            continue;
        dp_cmd_t cmd = decoded.cmd;
        dp_wire_close (&msg);
        if (cmd == DP_CMD_QUEUE_REPLY)
            return;
    }
    bench_fail ("the broker never answered a queue put");
}

/*  restart: a journaled broker holding N queued tasks (of a session whose
    client is gone) is SIGKILLed and started again on its journal; the time
    from the new process's start until its status shows every task queued
    again. */
static void
s_restart (void *ctx, bench_figures_t *figures)
{
    long count = bench_scaled (N_RESTART);
    bench_peer_t client;
    bench_peer_open (&client, ctx, bench_procs.endpoint);
    bench_peer_hello (&client);
    uint8_t args[9] = {0xcf, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
    bench_peer_submit (&client, BENCH_FN_NOOP, 1, count, args, sizeof args);
    s_client_wait_queued (&client, count);
    s_client_sync_journal (&client);
    bench_peer_close (&client);
    kill (bench_procs.broker, SIGKILL);
    waitpid (bench_procs.broker, NULL, 0);
    double start = bench_now ();
    bench_restart_broker ();
    bench_peer_open (&client, ctx, bench_procs.endpoint);
    bench_peer_hello (&client);
    s_client_wait_queued (&client, count);
    figures->seconds = bench_now () - start;
    figures->tasks = count;
    figures->payload_bytes = (long)sizeof args;
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    bench_peer_close (&client);
}

/*  cancel and cancel_all: N queued tasks cancelled in one CANCEL. */
static void
s_cancel (void *ctx, bool all, bench_figures_t *figures)
{
    long count = bench_scaled (N_CANCEL);
    bench_peer_t client;
    bench_peer_open (&client, ctx, bench_procs.endpoint);
    bench_peer_hello (&client);
    uint8_t args[1] = {0x01};
    bench_peer_submit (&client, BENCH_FN_NOOP, 1, count, args, sizeof args);
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
    bench_peer_send (&client, DP_CMD_CANCEL);
    long cancelled = 0;
    double deadline = start + BENCH_WAIT_LIMIT_MS / 1000.0;
    while (cancelled < count) {
        if (bench_now () > deadline)
            bench_fail ("only %ld of %ld cancellations came back", cancelled, count);
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!bench_peer_recv (&client, &msg, &decoded, 1000))
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
    bench_peer_close (&client);
}

/*  broker_idle: many workers that only heartbeat; the broker's CPU. */
static void
s_broker_idle (void *ctx, bench_figures_t *figures)
{
    long count =
        bench_options.idle_workers > 0 ? bench_options.idle_workers : bench_scaled (BENCH_N_IDLE);
    double seconds = bench_options.idle_seconds;
    bench_peer_t *peers = calloc ((size_t)count, sizeof *peers);
    bool *welcome = calloc ((size_t)count, sizeof *welcome);
    if (!peers || !welcome)
        bench_fail ("out of memory");
    const char *functions[] = {BENCH_FN_NOOP};
    char name[64];
    for (long i = 0; i < count; i++) {
        bench_peer_open (&peers[i], ctx, bench_procs.endpoint);
        snprintf (name, sizeof name, "idle-%ld", i);
        dp_encode_ready (&peers[i].writer, name, (uint64_t)getpid (), "localhost", 1, functions,
                         1);
        bench_peer_send (&peers[i], DP_CMD_READY);
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
                        bench_peer_send (&peers[i], DP_CMD_HEARTBEAT);
                    } else if (decoded.cmd == DP_CMD_ERROR || decoded.cmd == DP_CMD_BYE)
                        expired++;
                }
                dp_wire_close (&msg);
            }
            if (now - peers[i].last_sent >= DP_HEARTBEAT_ALONE (DP_IDLE_FACTOR * heartbeat)) {
                dp_encode_empty (&peers[i].writer);
                bench_peer_send (&peers[i], DP_CMD_HEARTBEAT);
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
        bench_peer_close (&peers[i]);
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
    else if (strcmp (w, "restart") == 0)
        s_restart (ctx, figures);
    else if (strcmp (w, "cancel") == 0 || strcmp (w, "cancel_all") == 0)
        s_cancel (ctx, strcmp (w, "cancel_all") == 0, figures);
    else
        bench_fail ("unknown workload '%s'", w);
    zmq_ctx_term (ctx);
    bench_stop_procs ();
}

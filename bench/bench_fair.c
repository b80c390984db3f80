/*  bench_fair.c - dpool_bench's fair-share workloads (issue 16 item 1): a
    dpool-broker process, procs workers, and two clients at once.

    fair_apply_seq  client B's sequential applies (the client library), p50
                    and p99, first on the idle broker, then while client A
                    (a process of its own, over the wire protocol) has
                    1,000,000 no-ops queued: both figures from one broker.
    fair_two        over the wire protocol: 1,000,000 no-ops from one
                    client alone, then 500,000 from each of two clients at
                    once (total throughput of each case); then over a
                    window of 5 s, one busy client with tasks that sleep
                    1 ms, then two, A's tasks 1 ms and B's 2 ms, each with
                    more than the workers can run in the window: how busy
                    the workers were in each case, and each client's share
                    of the workers' time, from the run times the tasks
                    return.
*/
#include "dpool_bench.h"

#include "bench_peer.h"
#include "dpool.h"

#include <zmq.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  Default counts and times, before --scale. */
#define N_FAIR_QUEUED 1000000 /* fair_apply_seq: client A's no-ops */
#define N_FAIR_SEQ    2000    /* fair_apply_seq: client B's applies, each phase */
#define N_FAIR_NOOPS  500000  /* fair_two: no-ops per client of two */
#define FAIR_WINDOW_S 5.0     /* fair_two: the shares' window */

#define QUEUED_WAIT_S 10.0 /* for A's tasks to be queued before measuring */
#define TASK_A_US     1000 /* fair_two: A's task run time */
#define TASK_B_US     2000 /* fair_two: B's */
#define FAIR_BATCH    10000

/*  ---------------------------------------------------------------------------
    fair_apply_seq.
*/

/*  Client A, in a process of its own: waits for a byte on go, submits count
    no-ops, says so with a byte on done, then reads its results until they
    are all in or it is stopped. Never returns. */
static void __attribute__ ((noreturn)) s_busy_client (int go, int done, long count)
{
    /*  A failure here must not stop the parent's broker and workers. */
    bench_procs.broker = bench_procs.workers = bench_procs.client = -1;
    bench_procs.dir[0] = '\0';
    char byte;
    if (read (go, &byte, 1) != 1)
        _exit (1);
    void *ctx = zmq_ctx_new ();
    bench_peer_t peer;
    bench_peer_open (&peer, ctx, bench_procs.endpoint);
    bench_peer_hello (&peer);
    uint8_t args[1] = {0x01};
    bench_peer_submit (&peer, BENCH_FN_NOOP, 1, count, args, sizeof args);
    if (write (done, "s", 1) != 1)
        _exit (1);
    long results = 0;
    while (results < count) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        bench_peer_beat (&peer, false);
        if (!bench_peer_recv (&peer, &msg, &decoded, 100))
            continue;
        if (decoded.cmd == DP_CMD_HEARTBEAT)
            bench_peer_beat (&peer, true);
        if (decoded.cmd == DP_CMD_RESULT) {
            dp_result_t result;
            while (dp_list_next_result (&decoded.u.list, &result))
                results++;
        }
        dp_wire_close (&msg);
    }
    _exit (0);
}

/*  The broker's count of queued tasks, from the pool's STATUS; -1 if none. */
static long
s_queued (dpool_pool_t *pool)
{
    void *data = NULL;
    size_t size = 0;
    if (dpool_pool_status (pool, 5000, &data, &size) != 0)
        return -1;
    long queued = bench_status_uint ((dp_span_t){data, size}, "queued");
    free (data);
    return queued;
}

/*  Waits up to seconds for a byte on fd; false if none came. */
static bool
s_wait_byte (int fd, double seconds)
{
    struct pollfd item = {fd, POLLIN, 0};
    char byte;
    return poll (&item, 1, (int)(seconds * 1000)) == 1 && read (fd, &byte, 1) == 1;
}

static void
s_fair_apply_seq (bench_figures_t *figures)
{
    long queued = bench_scaled (N_FAIR_QUEUED);
    int go[2], done[2];
    if (pipe (go) != 0 || pipe (done) != 0)
        bench_fail ("pipe: %s", strerror (errno));
    pid_t pid = fork ();
    if (pid < 0)
        bench_fail ("fork: %s", strerror (errno));
    if (pid == 0)
        s_busy_client (go[0], done[1], queued);
    bench_procs.client = pid;

    dpool_config_t config;
    dpool_config_init (&config);
    config.procs = bench_options.procs;
    config.connect = bench_procs.endpoint;
    config.name = "dpool_bench B";
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    if (!pool)
        bench_fail_dpool ("pool");
    bench_pool_warm_up (pool, bench_options.procs);
    figures->tasks = bench_scaled (N_FAIR_SEQ);
    bench_pool_apply_seq (pool, figures->tasks, figures);
    figures->p50_idle_us = figures->p50_us;
    figures->p99_idle_us = figures->p99_us;

    if (write (go[1], "g", 1) != 1)
        bench_fail ("write: %s", strerror (errno));
    if (!s_wait_byte (done[0], BENCH_WAIT_LIMIT_MS / 1000.0))
        bench_fail ("client A did not submit its tasks");
    /*  Until the broker has taken them all in: it holds 90% of them, or
        its queue shrinks (the workers run them faster than they come;
        quick runs' few may be gone already), so no failure. */
    double deadline = bench_now () + QUEUED_WAIT_S;
    long most = 0, now;
    while ((now = s_queued (pool)) < queued * 9 / 10 && now >= most - queued / 20 &&
           bench_now () < deadline) {
        most = now > most ? now : most;
        usleep (10000);
    }
    figures->queued_start = s_queued (pool);
    figures->seconds = bench_pool_apply_seq (pool, figures->tasks, figures);
    figures->queued_end = s_queued (pool);
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    dpool_pool_destroy (&pool);
    close (go[1]);
    close (done[0]);
}

/*  ---------------------------------------------------------------------------
    fair_two.
*/

/*  Two clients' sessions and what each got back. */
typedef struct {
    bench_peer_t peer;
    long submitted, results;
    double last_result; /* bench_now () of its last result */
    double window_us;   /* run time of its results inside the window */
    long window_results;
} s_client_t;

/*  Submits count tasks of fn with args for each client in turn, a batch
    of each at a time, so that neither is first by much. */
static void
s_submit_both (s_client_t *clients, int nclients, const char *fn, long count,
               const dp_span_t *args)
{
    for (long sent = 0; sent < count; sent += FAIR_BATCH) {
        long batch = count - sent < FAIR_BATCH ? count - sent : FAIR_BATCH;
        for (int i = 0; i < nclients; i++) {
            bench_peer_submit (&clients[i].peer, fn, (uint64_t)clients[i].submitted + 1, batch,
                               args[i].data, args[i].size);
            clients[i].submitted += batch;
        }
    }
}

/*  Keeps each client alive and reads what its socket holds (waiting up to
    100 ms for the first message); results inside [from, to) add their
    returned run time (a uint) to the client's window figures. */
static void
s_read_results (s_client_t *clients, int nclients, double from, double to)
{
    zmq_pollitem_t items[2];
    for (int i = 0; i < nclients; i++) {
        bench_peer_beat (&clients[i].peer, false);
        items[i] = (zmq_pollitem_t){clients[i].peer.socket, 0, ZMQ_POLLIN, 0};
    }
    if (zmq_poll (items, nclients, 100) <= 0)
        return;
    double now = bench_now ();
    for (int i = 0; i < nclients; i++) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        while (dp_wire_recv (clients[i].peer.socket, &msg, ZMQ_DONTWAIT) == 0) {
            if (dp_wire_decode (&msg, false, NULL, &decoded) != DP_OK)
                bench_fail ("malformed message from the broker");
            if (decoded.cmd == DP_CMD_HEARTBEAT)
                bench_peer_beat (&clients[i].peer, true);
            dp_result_t result;
            while (decoded.cmd == DP_CMD_RESULT &&
                   dp_list_next_result (&decoded.u.list, &result)) {
                if (result.code != 0 && result.code != DPOOL_ECANCELLED)
                    bench_fail ("a task failed with code %d", (int)result.code);
                clients[i].results++;
                clients[i].last_result = now;
                dp_reader_t reader;
                uint64_t us;
                dp_reader_init (&reader, result.value.data, result.value.size);
                if (now >= from && now < to && dp_mp_read_uint (&reader, &us) == 0) {
                    clients[i].window_us += (double)us;
                    clients[i].window_results++;
                }
            }
            dp_wire_close (&msg);
        }
    }
}

static void
s_open_clients (void *ctx, s_client_t *clients, int nclients)
{
    memset (clients, 0, (size_t)nclients * sizeof *clients);
    for (int i = 0; i < nclients; i++) {
        bench_peer_open (&clients[i].peer, ctx, bench_procs.endpoint);
        bench_peer_hello (&clients[i].peer);
    }
}

static void
s_close_clients (s_client_t *clients, int nclients)
{
    for (int i = 0; i < nclients; i++)
        bench_peer_close (&clients[i].peer);
}

/*  nclients clients submit per_client no-ops each; the rate of them all,
    from the first submit to the last result. */
static double
s_noop_rate (void *ctx, int nclients, long per_client)
{
    s_client_t clients[2];
    s_open_clients (ctx, clients, nclients);
    uint8_t one = 0x01;
    dp_span_t args[2] = {{&one, 1}, {&one, 1}};
    double start = bench_now ();
    s_submit_both (clients, nclients, BENCH_FN_NOOP, per_client, args);
    double deadline = start + BENCH_WAIT_LIMIT_MS / 1000.0;
    for (int i = 0; i < nclients; i++)
        while (clients[i].results < per_client) {
            if (bench_now () > deadline)
                bench_fail ("only %ld of %ld no-ops came back", clients[i].results, per_client);
            s_read_results (clients, nclients, 0, 0);
        }
    double last = clients[0].last_result;
    if (nclients > 1 && clients[1].last_result > last)
        last = clients[1].last_result;
    s_close_clients (clients, nclients);
    return (double)(per_client * nclients) / (last - start);
}

/*  nclients busy clients (A's tasks 1 ms, B's 2 ms), each with enough to
    keep every worker busy past the window; fills share (each one's part of
    the run time of the results that came back in the window), tasks (how
    many each ran in it) and returns how busy the workers were in it. */
static double
s_window (void *ctx, int nclients, double share[2], long tasks[2])
{
    double window = FAIR_WINDOW_S * bench_options.scale;
    window = window < 0.3 ? 0.3 : window > FAIR_WINDOW_S ? FAIR_WINDOW_S : window;
    double settle = window / 5;
    s_client_t clients[2];
    s_open_clients (ctx, clients, nclients);
    uint8_t a[3] = {0xcd, TASK_A_US >> 8, TASK_A_US & 0xff}; /* uint16 */
    uint8_t b[3] = {0xcd, TASK_B_US >> 8, TASK_B_US & 0xff};
    dp_span_t args[2] = {{a, sizeof a}, {b, sizeof b}};
    /*  Enough for all the workers for twice the window and the settling;
        B's tasks are longer, so the same count keeps it busy longer. */
    double worker_us = 2 * (window + settle) * 1e6 * bench_options.procs;
    long count = (long)(worker_us / TASK_A_US);
    double start = bench_now ();
    s_submit_both (clients, nclients, BENCH_FN_TIMED, count, args);
    double from = start + settle, to = from + window;
    while (bench_now () < to)
        s_read_results (clients, nclients, from, to);
    double total = 0;
    for (int i = 0; i < nclients; i++) {
        if (clients[i].results >= clients[i].submitted)
            bench_fail ("client %c ran out of tasks before the window ended", 'A' + i);
        total += clients[i].window_us;
    }
    if (total <= 0)
        bench_fail ("no task ended in the window");
    for (int i = 0; i < nclients; i++) {
        share[i] = clients[i].window_us / total;
        tasks[i] = clients[i].window_results;
    }
    s_close_clients (clients, nclients);
    return total / (window * 1e6 * bench_options.procs);
}

static void
s_fair_two (bench_figures_t *figures)
{
    /*  Every worker connected and warm first, through a pool of the
        client library that goes before the clock starts. */
    dpool_config_t config;
    dpool_config_init (&config);
    config.procs = bench_options.procs;
    config.connect = bench_procs.endpoint;
    config.name = "dpool_bench warm-up";
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    if (!pool)
        bench_fail_dpool ("pool");
    bench_pool_warm_up (pool, bench_options.procs);
    dpool_pool_destroy (&pool);
    void *ctx = zmq_ctx_new ();
    if (!ctx)
        bench_fail ("zmq_ctx_new: %s", zmq_strerror (errno));
    long per_client = bench_scaled (N_FAIR_NOOPS);
    figures->rate_alone = s_noop_rate (ctx, 1, 2 * per_client);
    double rate = s_noop_rate (ctx, 2, per_client);
    figures->tasks = 2 * per_client;
    figures->seconds = (double)figures->tasks / rate;
    double share[2];
    long tasks[2];
    figures->busy_alone = s_window (ctx, 1, share, tasks);
    figures->busy = s_window (ctx, 2, share, tasks);
    figures->share_a = share[0];
    figures->share_b = share[1];
    figures->tasks_a = tasks[0];
    figures->tasks_b = tasks[1];
    figures->window_seconds = FAIR_WINDOW_S * bench_options.scale;
    if (figures->window_seconds < 0.3)
        figures->window_seconds = 0.3;
    figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    zmq_ctx_term (ctx);
}

void
bench_fair_workload (bench_figures_t *figures)
{
    const char *w = bench_options.workload;
    bool seq = strcmp (w, "fair_apply_seq") == 0;
    if (!seq && strcmp (w, "fair_two") != 0)
        bench_fail ("unknown workload '%s'", w);
    bench_start_broker (bench_options.mode == BENCH_MODE_IPC ? BENCH_MODE_IPC : BENCH_MODE_TCP,
                        "10000000");
    bench_start_workers (bench_options.procs);
    if (seq)
        s_fair_apply_seq (figures);
    else
        s_fair_two (figures);
    bench_stop_procs ();
}

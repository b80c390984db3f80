/*  bench_many.c - dpool_bench's broker_many workload (issue 19 item 3): many
    busy workers draining no-op tasks, to show whether the broker's cost per
    task grows with the number of workers.

    For each count W of --many-workers, in turn, against a dpool-broker
    process of its own (tcp loopback): W fake workers, DEALERs of this one
    process, say READY (credit DP_DEFAULT_CREDIT, as a real worker
    process's) and answer every DISPATCH at once with a DONE of nil results
    that each ran 1 µs (a no-op's run time, so the broker learns the pace
    a real no-op has). Once all are welcome, one client (a DEALER of the
    same process) submits N no-ops in SUBMITs of 10,000 and reads the
    results: the rate is N over the time from the first submit to the last
    result, and the broker's CPU time over that time, per task, is its cost
    per task, free of this process's own cost (which grows with W: it polls
    W sockets). When the fake workers have done a tenth of the tasks, one
    more worker joins, a thread of its own: the time from its READY to its
    first DISPATCH is how long a newcomer waits for work while every other
    worker is busy.

    One epoll set watches every socket's ZMQ_FD. ZeroMQ's descriptor only
    signals edges, so a socket is read until it has nothing: up to
    DRAIN_BURST messages per turn (the broker may feed one as fast as it
    answers, which must not starve the others), and a socket that may hold
    more takes another turn in the next poll without waiting for an edge.
    Every socket is swept at least every SWEEP_MS besides.
*/
#include "dpool_bench.h"

#include "bench_peer.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"

#include <zmq.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define N_MANY_TASKS     1000000
#define SWEEP_MS         100  /* every socket is drained at least this often */
#define MAX_EVENTS       256  /* epoll events taken at once */
#define DRAIN_BURST      2    /* messages one socket may handle per turn */
#define NOOP_RUN_US      1    /* what each fake worker says a no-op ran */
#define JOIN_AT          10   /* the newcomer joins once 1/JOIN_AT of the tasks are done */
#define MSGPACK_NIL      0xc0 /* a no-op's result */
#define NEWCOMER_WAIT_MS 100  /* the newcomer's longest wait before it checks stop */

/*  The fake workers and the client (index count), with the figures they
    gather. */
typedef struct {
    void *ctx;
    long count;
    bench_peer_t *peers; /* count + 1 */
    bool *welcome;
    long *pending; /* sockets that may hold more than their last turn took */
    bool *is_pending;
    long npending;
    int epoll;
    long welcomed;
    long results;
    long done; /* tasks the fake workers answered */
    double last_sweep;
} s_fleet_t;

/*  Opens peer i, adds its descriptor to the epoll set. */
static void
s_fleet_open_peer (s_fleet_t *self, long i)
{
    bench_peer_open (&self->peers[i], self->ctx, bench_procs.endpoint);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = (uint64_t)i};
    int fd = dp_wire_fd (self->peers[i].socket);
    if (fd < 0 || epoll_ctl (self->epoll, EPOLL_CTL_ADD, fd, &ev) != 0)
        bench_fail ("epoll_ctl: %s", strerror (errno));
}

/*  Opens worker i and sends its READY. */
static void
s_fleet_ready (s_fleet_t *self, long i)
{
    const char *functions[] = {BENCH_FN_NOOP};
    char name[64];
    snprintf (name, sizeof name, "many-%ld", i);
    s_fleet_open_peer (self, i);
    dp_encode_ready (&self->peers[i].writer, name, (uint64_t)getpid (), "localhost",
                     DP_DEFAULT_CREDIT, functions, 1);
    bench_peer_send (&self->peers[i], DP_CMD_READY);
}

/*  Answers a DISPATCH: every task done, nil, in one DONE; adds the tasks
    to *done when done is not NULL. */
static void
s_answer_dispatch (bench_peer_t *peer, dp_msg_t *decoded, long *done)
{
    static const uint8_t nil = MSGPACK_NIL;
    dp_list_begin (&peer->writer);
    dp_task_t task;
    long count = 0;
    while (dp_list_next_task (&decoded->u.list, DP_CMD_DISPATCH, &task)) {
        dp_list_add_result_run (&peer->writer, task.id, 0, &nil, 1, NOOP_RUN_US);
        count++;
    }
    dp_list_end (&peer->writer);
    bench_peer_send (peer, DP_CMD_DONE);
    if (done)
        *done += count;
}

/*  Handles one message to peer i. */
static void
s_fleet_handle (s_fleet_t *self, long i, dp_msg_t *decoded)
{
    switch (decoded->cmd) {
    case DP_CMD_WELCOME:
        if (!self->welcome[i]) {
            self->welcome[i] = true;
            self->welcomed++;
        }
        break;
    case DP_CMD_DISPATCH:
        s_answer_dispatch (&self->peers[i], decoded, &self->done);
        break;
    case DP_CMD_RESULT: {
        dp_result_t result;
        while (dp_list_next_result (&decoded->u.list, &result)) {
            if (result.code != 0)
                bench_fail ("a no-op ended with code %d", (int)result.code);
            self->results++;
        }
        break;
    }
    case DP_CMD_HEARTBEAT:
        bench_peer_beat (&self->peers[i], true);
        break;
    case DP_CMD_ERROR:
    case DP_CMD_BYE:
        bench_fail ("the broker refused or dropped peer %ld", i);
    default:
        break;
    }
}

/*  Receives and handles up to DRAIN_BURST messages of peer i; if it may
    have more, it takes another turn in the next poll (a peer the broker
    feeds as fast as it answers must not starve the others). */
static void
s_fleet_drain (s_fleet_t *self, long i)
{
    dp_wire_msg_t msg;
    for (int n = 0; n < DRAIN_BURST; n++) {
        if (dp_wire_recv (self->peers[i].socket, &msg, ZMQ_DONTWAIT) != 0)
            return;
        dp_msg_t decoded;
        if (dp_wire_decode (&msg, false, NULL, &decoded) != DP_OK)
            bench_fail ("a malformed message from the broker");
        s_fleet_handle (self, i, &decoded);
        dp_wire_close (&msg);
    }
    if (!self->is_pending[i]) {
        self->is_pending[i] = true;
        self->pending[self->npending++] = i;
    }
}

/*  Gives every socket that may hold more one more turn. */
static void
s_fleet_drain_pending (s_fleet_t *self)
{
    long count = self->npending;
    for (long k = 0; k < count; k++) {
        long i = self->pending[k];
        self->is_pending[i] = false;
    }
    /*  Turns taken now may queue sockets again, behind these. */
    long *turns = malloc ((size_t)count * sizeof *turns);
    if (count && !turns)
        bench_fail ("out of memory");
    if (count)
        memcpy (turns, self->pending, (size_t)count * sizeof *turns);
    self->npending = 0;
    for (long k = 0; k < count; k++)
        s_fleet_drain (self, turns[k]);
    free (turns);
}

/*  Waits up to timeout_ms for sockets with something, drains them; every
    SWEEP_MS drains every open socket and keeps each one's heartbeat. */
static void
s_fleet_poll (s_fleet_t *self, long open, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    s_fleet_drain_pending (self);
    int got = epoll_wait (self->epoll, events, MAX_EVENTS, self->npending ? 0 : timeout_ms);
    if (got < 0 && errno != EINTR)
        bench_fail ("epoll_wait: %s", strerror (errno));
    for (int e = 0; e < got; e++)
        s_fleet_drain (self, (long)events[e].data.u64);
    double now = bench_now ();
    if (now - self->last_sweep < SWEEP_MS / 1000.0)
        return;
    self->last_sweep = now;
    for (long i = 0; i < open; i++) {
        if (self->peers[i].socket) {
            s_fleet_drain (self, i);
            bench_peer_beat (&self->peers[i], false);
        }
    }
}

/*  Opens the fleet's workers and waits until the broker welcomed all. */
static void
s_fleet_start (s_fleet_t *self, void *ctx, long count)
{
    memset (self, 0, sizeof *self);
    self->ctx = ctx;
    self->count = count;
    self->peers = calloc ((size_t)count + 1, sizeof *self->peers);
    self->welcome = calloc ((size_t)count + 1, sizeof *self->welcome);
    self->pending = calloc ((size_t)count + 1, sizeof *self->pending);
    self->is_pending = calloc ((size_t)count + 1, sizeof *self->is_pending);
    self->epoll = epoll_create1 (EPOLL_CLOEXEC);
    if (!self->peers || !self->welcome || !self->pending || !self->is_pending || self->epoll < 0)
        bench_fail ("out of memory or descriptors");
    for (long i = 0; i < count; i++)
        s_fleet_ready (self, i);
    double deadline = bench_now () + BENCH_START_LIMIT_MS / 1000.0;
    while (self->welcomed < count) {
        if (bench_now () > deadline)
            bench_fail ("only %ld of %ld workers were welcomed", self->welcomed, count);
        s_fleet_poll (self, count, 10);
    }
}

static void
s_fleet_stop (s_fleet_t *self)
{
    for (long i = 0; i <= self->count; i++) {
        if (self->peers[i].socket)
            bench_peer_close (&self->peers[i]);
    }
    close (self->epoll);
    free (self->peers);
    free (self->welcome);
    free (self->pending);
    free (self->is_pending);
}

/*  The worker that joins the busy ones: a thread with a ZeroMQ context of
    its own, so that its wait is the broker's and not this process's loop
    over the fleet (which, saturated, serves each socket only so often). */
typedef struct {
    atomic_int stop;
    double job_ms; /* from its READY to its first DISPATCH; -1: none came */
} s_newcomer_t;

static void *
s_newcomer_run (void *arg)
{
    s_newcomer_t *self = (s_newcomer_t *)arg;
    void *ctx = zmq_ctx_new ();
    if (!ctx)
        bench_fail ("zmq_ctx_new: %s", zmq_strerror (errno));
    bench_peer_t peer;
    bench_peer_open (&peer, ctx, bench_procs.endpoint);
    const char *functions[] = {BENCH_FN_NOOP};
    dp_encode_ready (&peer.writer, "many-newcomer", (uint64_t)getpid (), "localhost",
                     DP_DEFAULT_CREDIT, functions, 1);
    double sent = bench_now ();
    bench_peer_send (&peer, DP_CMD_READY);
    while (!atomic_load (&self->stop)) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!bench_peer_recv (&peer, &msg, &decoded, NEWCOMER_WAIT_MS)) {
            bench_peer_beat (&peer, false);
            continue;
        }
        if (decoded.cmd == DP_CMD_DISPATCH) {
            if (self->job_ms < 0)
                self->job_ms = (bench_now () - sent) * 1000.0;
            s_answer_dispatch (&peer, &decoded, NULL);
        } else if (decoded.cmd == DP_CMD_HEARTBEAT)
            bench_peer_beat (&peer, true);
        dp_wire_close (&msg);
    }
    bench_peer_close (&peer);
    zmq_ctx_term (ctx);
    return NULL;
}

/*  One count: W workers drain N no-ops; fills the count's figures. */
static void
s_many_one (void *ctx, long workers, long tasks, int at, bench_figures_t *figures)
{
    s_fleet_t fleet;
    s_fleet_start (&fleet, ctx, workers);
    long client = workers;
    s_fleet_open_peer (&fleet, client);
    bench_peer_hello (&fleet.peers[client]);
    uint8_t args[1] = {0x01};
    double cpu_from = dp_proc_cpu_seconds (bench_procs.broker);
    double start = bench_now ();
    bench_peer_submit (&fleet.peers[client], BENCH_FN_NOOP, 1, tasks, args, sizeof args);
    double deadline = start + BENCH_WAIT_LIMIT_MS / 1000.0;
    s_newcomer_t newcomer = {.job_ms = -1};
    pthread_t thread;
    bool joined = false;
    while (fleet.results < tasks) {
        if (bench_now () > deadline)
            bench_fail ("only %ld of %ld results came back", fleet.results, tasks);
        if (!joined && fleet.done >= tasks / JOIN_AT) {
            joined = true;
            if (pthread_create (&thread, NULL, s_newcomer_run, &newcomer) != 0)
                bench_fail ("pthread_create: %s", strerror (errno));
        }
        s_fleet_poll (&fleet, workers + 1, 10);
    }
    double seconds = bench_now () - start;
    double cpu = dp_proc_cpu_seconds (bench_procs.broker) - cpu_from;
    atomic_store (&newcomer.stop, 1);
    if (joined)
        pthread_join (thread, NULL);
    figures->many_workers[at] = workers;
    figures->many_rate[at] = (double)tasks / seconds;
    figures->many_cpu_us[at] = cpu / (double)tasks * 1e6;
    figures->many_join_ms[at] = newcomer.job_ms;
    figures->tasks = tasks;
    figures->seconds += seconds;
    s_fleet_stop (&fleet);
}

void
bench_many_workload (bench_figures_t *figures)
{
    long tasks = bench_scaled (N_MANY_TASKS);
    for (int at = 0; at < bench_options.many_count; at++) {
        long workers = bench_options.many[at];
        /*  A broker of its own for each count; forked before the context. */
        bench_start_broker (BENCH_MODE_TCP, "100000000");
        void *ctx = zmq_ctx_new ();
        if (!ctx)
            bench_fail ("zmq_ctx_new: %s", zmq_strerror (errno));
        zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, (int)workers + 64);
        s_many_one (ctx, workers, tasks, at, figures);
        long rss = bench_proc_status_kb (bench_procs.broker, "VmHWM");
        if (rss > figures->rss_broker_kb)
            figures->rss_broker_kb = rss;
        zmq_ctx_term (ctx);
        bench_stop_procs ();
    }
    figures->many_count = bench_options.many_count;
}

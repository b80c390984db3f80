/*  dp_broker_status.c - the broker's STATUS-REPLY.

    One msgpack map (docs/PROTOCOL.md §7): the broker's counters, its
    workers, the connections ZeroMQ cut off before the protocol saw them,
    the messages dropped by reason, the jobs running (those that reported
    progress first) and the named queues. The lists of jobs and queues are
    cut at STATUS_MAX entries, so that the reply stays small.
*/
#include "dp_broker_int.h"

#include "dp_util.h"

#include <msgpack.h>
#include <string.h>

#define STATUS_MAX DP_BROKER_STATUS_MAX /* running tasks and queues listed in status */

static const char *s_drop_names[DROP_COUNT_] = {
    "ok",   "frames", "header", "signature",   "version",      "command",
    "body", "limit",  "role",   "unknown_ref", "unknown_peer", "session_stolen"};

/*  Counters added later, from DROP_UNKNOWN_TOKEN on. */
static const char *s_more_drop_names[DROP_COUNT_ - DROP_UNKNOWN_TOKEN] = {"unknown_token",
                                                                          "held_full"};

static const char *
s_drop_name (int drop)
{
    return drop >= DROP_UNKNOWN_TOKEN ? s_more_drop_names[drop - DROP_UNKNOWN_TOKEN]
                                      : s_drop_names[drop];
}

/*  Packs the jobs workers hold for status, those that reported progress
    first, at most left of them. */
typedef struct {
    msgpack_packer *pk;
    worker_t *worker;
    size_t left;
    bool reported;        /* this pass packs the jobs with progress, or those without */
    const client_t *only; /* a non-administrator sees its own session's jobs only */
} s_running_t;

static void
s_pack_job (uint64_t ref, void *value, void *arg)
{
    s_running_t *running = (s_running_t *)arg;
    task_t *task = (task_t *)value;
    worker_t *worker = running->worker;
    progress_t *progress =
        worker->progress ? (progress_t *)dp_idmap_get (worker->progress, ref) : NULL;
    if (running->left == 0 || (progress != NULL) != running->reported)
        return;
    if (running->only && task->client != running->only)
        return;
    running->left--;
    msgpack_packer *pk = running->pk;
    msgpack_pack_map (pk, 7);
    dp_mp_pack_cstr (pk, "fn");
    dp_mp_pack_cstr (pk, task->flow->fnq->name);
    dp_mp_pack_count (pk, "seq", task->seq);
    dp_mp_pack_cstr (pk, "client");
    dp_mp_pack_cstr (pk, task->client ? task->client->name : "");
    dp_mp_pack_cstr (pk, "worker");
    dp_mp_pack_cstr (pk, worker->name);
    dp_mp_pack_count (pk, "pid", worker->pid);
    dp_mp_pack_cstr (pk, "attempt");
    msgpack_pack_uint32 (pk, (uint32_t)task->deaths + 1);
    dp_mp_pack_cstr (pk, "progress");
    if (progress) {
        /*  The packer writes straight to the buffer: the value goes as is. */
        msgpack_sbuffer *sbuf = (msgpack_sbuffer *)pk->data;
        msgpack_sbuffer_write (sbuf, (const char *)progress->value, progress->size);
    } else
        msgpack_pack_nil (pk);
}

/*  Counts the jobs of one session (a dp_idmap_foreach callback). */
static void
s_count_own (uint64_t ref, void *value, void *arg)
{
    (void)ref;
    s_running_t *running = (s_running_t *)arg;
    running->left += ((task_t *)value)->client == running->only;
}

static void
s_pack_running (dp_broker_t *self, msgpack_packer *pk, const client_t *only)
{
    s_running_t running = {pk, NULL, 0, true, only};
    for (worker_t *worker = (worker_t *)zlistx_first (self->workers); worker;
         worker = (worker_t *)zlistx_next (self->workers))
        if (only)
            dp_idmap_foreach (worker->jobs, s_count_own, &running);
        else
            running.left += dp_idmap_size (worker->jobs);
    if (running.left > STATUS_MAX)
        running.left = STATUS_MAX;
    msgpack_pack_array (pk, running.left);
    for (int pass = 0; pass < 2; pass++) {
        running.reported = pass == 0;
        for (worker_t *worker = (worker_t *)zlistx_first (self->workers); worker && running.left;
             worker = (worker_t *)zlistx_next (self->workers)) {
            running.worker = worker;
            dp_idmap_foreach (worker->jobs, s_pack_job, &running);
        }
    }
}

static void
s_pack_queue_stats (dp_broker_t *self, msgpack_packer *pk)
{
    dp_queues_stats_t stats;
    dp_queues_stats (self->queues, &stats);
    msgpack_pack_map (pk, 8);
    dp_mp_pack_count (pk, "queues", stats.queues);
    dp_mp_pack_count (pk, "values", stats.values);
    dp_mp_pack_count (pk, "bytes", stats.bytes);
    dp_mp_pack_count (pk, "waiting", stats.waiters);
    dp_mp_pack_count (pk, "unacked", stats.loans);
    dp_mp_pack_count (pk, "puts", stats.puts);
    dp_mp_pack_count (pk, "gets", stats.gets);
    dp_mp_pack_count (pk, "returned", stats.returned);
}

/*  The broker's bounds (PROTOCOL.md section 8) and their use: tasks and
    bytes of arguments held, results held for sessions (over them all, and
    the most of one), the sessions stalled at their bound and the tasks
    they park, detached batches (their tasks queued or running, bytes of
    results held, GETs waiting), named queues' bytes, and memory trims. */
static void
s_pack_limits (dp_broker_t *self, msgpack_packer *pk)
{
    size_t results = 0, bytes = 0, most_results = 0, most_bytes = 0, stalled = 0, parked = 0;
    for (client_t *client = (client_t *)zhashx_first (self->sessions); client;
         client = (client_t *)zhashx_next (self->sessions)) {
        size_t held = dp_broker_held_results (client);
        size_t held_bytes = dp_broker_held_bytes (client);
        results += held;
        bytes += held_bytes;
        most_results = held > most_results ? held : most_results;
        most_bytes = held_bytes > most_bytes ? held_bytes : most_bytes;
        stalled += client->stalled;
        parked += dp_taskq_size (&client->parked);
    }
    dp_queues_stats_t stats;
    dp_queues_stats (self->queues, &stats);
    size_t batches, batch_tasks, batch_bytes, batch_waiting;
    dp_batches_counts (self->batches, &batches, &batch_tasks, &batch_bytes, &batch_waiting);
    msgpack_pack_map (pk, 23);
    dp_mp_pack_count (pk, "batches", batches);
    dp_mp_pack_count (pk, "batch_tasks", batch_tasks);
    dp_mp_pack_count (pk, "batch_bytes", batch_bytes);
    dp_mp_pack_count (pk, "batch_waiting", batch_waiting);
    dp_mp_pack_count (pk, "sessions", zhashx_size (self->sessions));
    dp_mp_pack_count (pk, "max_sessions", self->max_sessions);
    dp_mp_pack_count (pk, "sessions_refused", self->sessions_refused);
    dp_mp_pack_count (pk, "queued", self->queued);
    dp_mp_pack_count (pk, "max_queue", self->max_queue);
    dp_mp_pack_count (pk, "task_bytes", self->task_bytes);
    dp_mp_pack_count (pk, "max_queue_bytes", self->max_queue_bytes);
    dp_mp_pack_count (pk, "held_results", results);
    dp_mp_pack_count (pk, "held_bytes", bytes);
    dp_mp_pack_count (pk, "session_held_results", most_results);
    dp_mp_pack_count (pk, "session_held_bytes", most_bytes);
    dp_mp_pack_count (pk, "max_held_results", self->max_held_results);
    dp_mp_pack_count (pk, "max_held_bytes", self->max_held_bytes);
    dp_mp_pack_count (pk, "stalled_sessions", stalled);
    dp_mp_pack_count (pk, "parked", parked);
    dp_mp_pack_count (pk, "stalls", self->stalls);
    dp_mp_pack_count (pk, "value_bytes", stats.bytes);
    dp_mp_pack_count (pk, "max_value_bytes", stats.max_bytes);
    dp_mp_pack_count (pk, "trims", self->trims);
}

/*  The journal: nil without one; else its commits, writes, and why it
    failed (nil while it works). */
static void
s_pack_journal (dp_broker_t *self, msgpack_packer *pk)
{
    if (!self->journal) {
        msgpack_pack_nil (pk);
        return;
    }
    dp_journal_stats_t stats;
    dp_journal_stats (self->journal, &stats);
    msgpack_pack_map (pk, 3);
    dp_mp_pack_count (pk, "commits", stats.commits);
    dp_mp_pack_count (pk, "writes", stats.writes);
    dp_mp_pack_cstr (pk, "failed");
    const char *failed = dp_journal_failed (self->journal);
    if (failed)
        dp_mp_pack_cstr (pk, failed);
    else
        msgpack_pack_nil (pk);
}

void
dp_broker_on_status (dp_broker_t *self, peer_t *peer, bool admin)
{
    dp_writer_reset (&self->w);
    msgpack_packer *pk = &self->w.pk;
    msgpack_pack_map (pk, 22);
    dp_mp_pack_cstr (pk, "broker");
    dp_mp_pack_cstr (pk, self->name);
    dp_mp_pack_count (pk, "uptime_ms", (uint64_t)(dp_now_ms () - self->started));
    dp_mp_pack_count (pk, "queued", self->queued);
    dp_mp_pack_count (pk, "inflight", self->inflight);
    dp_mp_pack_count (pk, "done", self->done);
    dp_mp_pack_count (pk, "failed", self->failed);
    dp_mp_pack_count (pk, "clients", zhashx_size (self->sessions));
    dp_mp_pack_count (pk, "lanes", self->lanes);
    dp_mp_pack_count (pk, "lane_results", self->lane_results);
    dp_mp_pack_count (pk, "worker_lanes", self->worker_lanes);
    dp_mp_pack_count (pk, "lane_dispatches", self->lane_dispatches);
    dp_mp_pack_cstr (pk, "workers");
    msgpack_pack_array (pk, zlistx_size (self->workers));
    for (worker_t *worker = (worker_t *)zlistx_first (self->workers); worker;
         worker = (worker_t *)zlistx_next (self->workers)) {
        msgpack_pack_map (pk, 8);
        dp_mp_pack_cstr (pk, "name");
        dp_mp_pack_cstr (pk, worker->name);
        dp_mp_pack_cstr (pk, "host");
        dp_mp_pack_cstr (pk, worker->host);
        dp_mp_pack_count (pk, "pid", worker->pid);
        dp_mp_pack_cstr (pk, "credit");
        msgpack_pack_uint32 (pk, worker->credit);
        dp_mp_pack_cstr (pk, "inflight");
        msgpack_pack_uint32 (pk, worker->inflight);
        dp_mp_pack_count (pk, "done", worker->done);
        dp_mp_pack_count (pk, "failed", worker->failed);
        dp_mp_pack_cstr (pk, "functions");
        msgpack_pack_array (pk, worker->nfns);
        for (size_t i = 0; i < worker->nfns; i++)
            dp_mp_pack_cstr (pk, worker->fns[i]->name);
    }
    /*  Connections: those ZeroMQ cut off before the protocol saw them,
        CURVE's refusals apart from the rest, and those beyond the bounds. */
    dp_conns_stats_t conns = dp_conns_stats (self->conns);
    dp_mp_pack_cstr (pk, "connections");
    msgpack_pack_map (pk, 8);
    dp_mp_pack_count (pk, "accepted", conns.accepted);
    dp_mp_pack_count (pk, "disconnected", conns.disconnected);
    dp_mp_pack_count (pk, "handshake_failed", conns.handshake_failed);
    dp_mp_pack_count (pk, "protocol_errors", conns.protocol_errors);
    dp_mp_pack_count (pk, "refused", conns.refused);
    dp_mp_pack_count (pk, "open", conns.open);
    dp_mp_pack_count (pk, "max", conns.max_total);
    dp_mp_pack_count (pk, "max_per_peer", conns.max_per_addr);
    dp_mp_pack_cstr (pk, "dropped");
    msgpack_pack_map (pk, DROP_COUNT_ - 1);
    for (int i = 1; i < DROP_COUNT_; i++) {
        dp_mp_pack_cstr (pk, s_drop_name (i));
        msgpack_pack_uint64 (pk, self->dropped[i]);
    }
    dp_mp_pack_cstr (pk, "running");
    s_pack_running (self, pk, admin ? NULL : peer->client);
    dp_broker_pack_clients (self, pk, peer);
    dp_broker_pack_tenants (self, pk, peer);
    dp_mp_pack_cstr (pk, "queues");
    dp_queues_pack (self->queues, pk, STATUS_MAX);
    dp_mp_pack_cstr (pk, "queue_stats");
    s_pack_queue_stats (self, pk);
    dp_mp_pack_cstr (pk, "limits");
    s_pack_limits (self, pk);
    dp_mp_pack_cstr (pk, "journal");
    s_pack_journal (self, pk);
    dp_broker_send (self, peer, DP_CMD_STATUS_REPLY, &self->w);
}

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

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

/*  A status map's key and its count. */
static void
s_pack_count (msgpack_packer *pk, const char *key, uint64_t count)
{
    s_pack_str (pk, key);
    msgpack_pack_uint64 (pk, count);
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
    s_pack_str (pk, "fn");
    s_pack_str (pk, task->flow->fnq->name);
    s_pack_count (pk, "seq", task->seq);
    s_pack_str (pk, "client");
    s_pack_str (pk, task->client ? task->client->name : "");
    s_pack_str (pk, "worker");
    s_pack_str (pk, worker->name);
    s_pack_count (pk, "pid", worker->pid);
    s_pack_str (pk, "attempt");
    msgpack_pack_uint32 (pk, (uint32_t)task->deaths + 1);
    s_pack_str (pk, "progress");
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
    s_pack_count (pk, "queues", stats.queues);
    s_pack_count (pk, "values", stats.values);
    s_pack_count (pk, "bytes", stats.bytes);
    s_pack_count (pk, "waiting", stats.waiters);
    s_pack_count (pk, "unacked", stats.loans);
    s_pack_count (pk, "puts", stats.puts);
    s_pack_count (pk, "gets", stats.gets);
    s_pack_count (pk, "returned", stats.returned);
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
    s_pack_count (pk, "batches", batches);
    s_pack_count (pk, "batch_tasks", batch_tasks);
    s_pack_count (pk, "batch_bytes", batch_bytes);
    s_pack_count (pk, "batch_waiting", batch_waiting);
    s_pack_count (pk, "sessions", zhashx_size (self->sessions));
    s_pack_count (pk, "max_sessions", self->max_sessions);
    s_pack_count (pk, "sessions_refused", self->sessions_refused);
    s_pack_count (pk, "queued", self->queued);
    s_pack_count (pk, "max_queue", self->max_queue);
    s_pack_count (pk, "task_bytes", self->task_bytes);
    s_pack_count (pk, "max_queue_bytes", self->max_queue_bytes);
    s_pack_count (pk, "held_results", results);
    s_pack_count (pk, "held_bytes", bytes);
    s_pack_count (pk, "session_held_results", most_results);
    s_pack_count (pk, "session_held_bytes", most_bytes);
    s_pack_count (pk, "max_held_results", self->max_held_results);
    s_pack_count (pk, "max_held_bytes", self->max_held_bytes);
    s_pack_count (pk, "stalled_sessions", stalled);
    s_pack_count (pk, "parked", parked);
    s_pack_count (pk, "stalls", self->stalls);
    s_pack_count (pk, "value_bytes", stats.bytes);
    s_pack_count (pk, "max_value_bytes", stats.max_bytes);
    s_pack_count (pk, "trims", self->trims);
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
    s_pack_count (pk, "commits", stats.commits);
    s_pack_count (pk, "writes", stats.writes);
    s_pack_str (pk, "failed");
    const char *failed = dp_journal_failed (self->journal);
    if (failed)
        s_pack_str (pk, failed);
    else
        msgpack_pack_nil (pk);
}

void
dp_broker_on_status (dp_broker_t *self, peer_t *peer, bool admin)
{
    dp_writer_reset (&self->w);
    msgpack_packer *pk = &self->w.pk;
    msgpack_pack_map (pk, 22);
    s_pack_str (pk, "broker");
    s_pack_str (pk, self->name);
    s_pack_count (pk, "uptime_ms", (uint64_t)(dp_now_ms () - self->started));
    s_pack_count (pk, "queued", self->queued);
    s_pack_count (pk, "inflight", self->inflight);
    s_pack_count (pk, "done", self->done);
    s_pack_count (pk, "failed", self->failed);
    s_pack_count (pk, "clients", zhashx_size (self->sessions));
    s_pack_count (pk, "lanes", self->lanes);
    s_pack_count (pk, "lane_results", self->lane_results);
    s_pack_count (pk, "worker_lanes", self->worker_lanes);
    s_pack_count (pk, "lane_dispatches", self->lane_dispatches);
    s_pack_str (pk, "workers");
    msgpack_pack_array (pk, zlistx_size (self->workers));
    for (worker_t *worker = (worker_t *)zlistx_first (self->workers); worker;
         worker = (worker_t *)zlistx_next (self->workers)) {
        msgpack_pack_map (pk, 8);
        s_pack_str (pk, "name");
        s_pack_str (pk, worker->name);
        s_pack_str (pk, "host");
        s_pack_str (pk, worker->host);
        s_pack_count (pk, "pid", worker->pid);
        s_pack_str (pk, "credit");
        msgpack_pack_uint32 (pk, worker->credit);
        s_pack_str (pk, "inflight");
        msgpack_pack_uint32 (pk, worker->inflight);
        s_pack_count (pk, "done", worker->done);
        s_pack_count (pk, "failed", worker->failed);
        s_pack_str (pk, "functions");
        msgpack_pack_array (pk, worker->nfns);
        for (size_t i = 0; i < worker->nfns; i++)
            s_pack_str (pk, worker->fns[i]->name);
    }
    /*  Connections: those ZeroMQ cut off before the protocol saw them,
        CURVE's refusals apart from the rest, and those beyond the bounds. */
    dp_conns_stats_t conns = dp_conns_stats (self->conns);
    s_pack_str (pk, "connections");
    msgpack_pack_map (pk, 8);
    s_pack_count (pk, "accepted", conns.accepted);
    s_pack_count (pk, "disconnected", conns.disconnected);
    s_pack_count (pk, "handshake_failed", conns.handshake_failed);
    s_pack_count (pk, "protocol_errors", conns.protocol_errors);
    s_pack_count (pk, "refused", conns.refused);
    s_pack_count (pk, "open", conns.open);
    s_pack_count (pk, "max", conns.max_total);
    s_pack_count (pk, "max_per_peer", conns.max_per_addr);
    s_pack_str (pk, "dropped");
    msgpack_pack_map (pk, DROP_COUNT_ - 1);
    for (int i = 1; i < DROP_COUNT_; i++) {
        s_pack_str (pk, s_drop_name (i));
        msgpack_pack_uint64 (pk, self->dropped[i]);
    }
    s_pack_str (pk, "running");
    s_pack_running (self, pk, admin ? NULL : peer->client);
    dp_broker_pack_clients (self, pk, peer);
    dp_broker_pack_tenants (self, pk, peer);
    s_pack_str (pk, "queues");
    dp_queues_pack (self->queues, pk, STATUS_MAX);
    s_pack_str (pk, "queue_stats");
    s_pack_queue_stats (self, pk);
    s_pack_str (pk, "limits");
    s_pack_limits (self, pk);
    s_pack_str (pk, "journal");
    s_pack_journal (self, pk);
    dp_broker_send (self, peer, DP_CMD_STATUS_REPLY, &self->w);
}

/*  dp_broker_peers.c - the broker's peers, workers and client sessions.

    A peer is a registered connection (the peers table, by routing id).
    Its role is a worker (the workers list, and the ready list while it
    has free credit), a worker's lane, a client session (the sessions
    table, by session id), which outlives its connection until it
    expires, so that a client that comes back finds its results, or a
    session's lane. This file makes and forgets them,
    sends to them, batches each session's RESULTs, and on the tick beats
    and expires them. The contracts are in dp_broker_int.h.
*/
#include "dp_broker_int.h"

#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define WARNED_MAX         4096              /* peers remembered as already warned about */
#define RESULT_MAX_BYTES   (8 * 1024 * 1024) /* a RESULT body is sent before it grows past this */
#define RESULT_ALONE_BYTES (32 * 1024)       /* a value this big goes in a RESULT of its own */
#define SHRINK_BYTES       (1024 * 1024)     /* writers above this are freed once sent */

/*  A RESULT body that reached RESULT_MAX_BYTES, or holds a large value
    alone, waiting to be sent: made a message at once, so that it is sent
    without a copy. */
typedef struct {
    zmq_msg_t msg;
    size_t results; /* entries in it */
    bool framed;    /* one result, whose value is frame (PROTOCOL.md 3) */
    zmq_msg_t frame;
} sealed_t;

static void
s_sealed_free (void **item)
{
    sealed_t *sealed = (sealed_t *)*item;
    if (sealed) {
        zmq_msg_close (&sealed->msg);
        if (sealed->framed)
            zmq_msg_close (&sealed->frame);
        free (sealed);
        *item = NULL;
    }
}

/*  ---------------------------------------------------------------------------
    Helpers, sending and the peer table.
*/
void
dp_broker_hex (const uint8_t *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * size] = 0;
}

void
dp_broker_span_copy (dp_span_t span, char *out, size_t cap)
{
    size_t len = span.size < cap - 1 ? span.size : cap - 1;
    if (len)
        memcpy (out, span.data, len); /* an empty span may have no data (BATCH-LIST's id) */
    out[len] = 0;
}

void
dp_broker_warn_once (dp_broker_t *self, const char *key, const char *what)
{
    if (zhashx_lookup (self->warned, key))
        return;
    if (zhashx_size (self->warned) >= WARNED_MAX)
        zhashx_purge (self->warned);
    zhashx_insert (self->warned, key, (void *)1);
    dp_warn ("peer %s: %s (logged once per peer)", key, what);
}

int
dp_broker_send (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, const dp_writer_t *body)
{
    int rc =
        dp_wire_send_writer (self->handle, peer->rid, peer->rid_size, cmd, body, ZMQ_DONTWAIT);
    if (rc == 0)
        peer->last_send = dp_now_ms ();
    return rc;
}

int
dp_broker_send_frames (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body,
                       zmq_msg_t *frames, size_t nframes)
{
    int rc = dp_wire_send_frames (self->handle, peer->rid, peer->rid_size, cmd, body, frames,
                                  nframes, ZMQ_DONTWAIT);
    if (rc == 0)
        peer->last_send = dp_now_ms ();
    return rc;
}

int
dp_broker_send_take (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body)
{
    int rc = dp_wire_send_take (self->handle, peer->rid, peer->rid_size, cmd, body, ZMQ_DONTWAIT);
    if (rc == 0)
        peer->last_send = dp_now_ms ();
    return rc;
}

peer_t *
dp_broker_peer_lookup (dp_broker_t *self, const void *rid, size_t rid_size)
{
    char key[2 * MAX_RID + 1];
    dp_broker_hex ((const uint8_t *)rid, rid_size, key);
    return (peer_t *)zhashx_lookup (self->peers, key);
}

peer_t *
dp_broker_peer_new (dp_broker_t *self, const void *rid, size_t rid_size)
{
    peer_t *peer = (peer_t *)calloc (1, sizeof *peer);
    if (!peer)
        return NULL;
    memcpy (peer->rid, rid, rid_size);
    peer->rid_size = rid_size;
    dp_broker_hex (peer->rid, rid_size, peer->key);
    peer->last_recv = peer->last_send = dp_now_ms ();
    memcpy (peer->user, self->from_user, sizeof peer->user);
    zhashx_insert (self->peers, peer->key, peer);
    return peer;
}

void
dp_broker_peer_delete (dp_broker_t *self, peer_t *peer)
{
    assert (!peer->client && !peer->worker);
    if (self->queues)
        dp_queues_forget (self->queues, peer, dp_now_ms ());
    zhashx_delete (self->peers, peer->key); /* frees via the table's destructor */
}

void
dp_broker_peer_free (void **item)
{
    free (*item);
    *item = NULL;
}

/*  ---------------------------------------------------------------------------
    Workers.
*/

void
dp_broker_ready_add (dp_broker_t *self, worker_t *worker)
{
    if (!worker->ready && worker->inflight < worker->credit)
        worker->ready = zlistx_add_end (self->ready, worker);
}

void
dp_broker_ready_remove (dp_broker_t *self, worker_t *worker)
{
    if (worker->ready) {
        zlistx_delete (self->ready, worker->ready);
        worker->ready = NULL;
    }
}

void
dp_broker_collect_task (uint64_t id, void *value, void *arg)
{
    (void)id;
    zlistx_add_end ((zlistx_t *)arg, value);
}

static void
s_free_progress (uint64_t id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    free (value);
}

void
dp_broker_progress_forget (worker_t *worker, uint64_t ref)
{
    if (!worker->progress)
        return;
    if (ref)
        free (dp_idmap_remove (worker->progress, ref));
    else {
        dp_idmap_foreach (worker->progress, s_free_progress, NULL);
        dp_idmap_destroy (&worker->progress);
    }
}

void
dp_broker_worker_remove (dp_broker_t *self, worker_t *worker, bool died)
{
    dp_info ("worker %s@%s (pid %llu) %s with %u jobs", worker->name, worker->host,
             (unsigned long long)worker->pid, died ? "lost" : "left", worker->inflight);
    dp_broker_ready_remove (self, worker);
    zlistx_t *jobs = zlistx_new ();
    dp_idmap_foreach (worker->jobs, dp_broker_collect_task, jobs);
    task_t *task;
    while ((task = (task_t *)zlistx_detach (jobs, NULL)))
        dp_broker_task_orphaned (self, task, worker, died);
    zlistx_destroy (&jobs);
    dp_idmap_destroy (&worker->jobs);
    dp_broker_progress_forget (worker, 0);
    if (worker->lane)
        dp_broker_wlane_drop (self, worker->lane);
    for (size_t i = 0; i < worker->nfns; i++)
        worker->fns[i]->nworkers--;
    free (worker->fns);
    if (worker->peer) {
        worker->peer->worker = NULL;
        worker->peer->kind = PEER_NEW;
    }
    void *handle = zlistx_find (self->workers, worker);
    if (handle)
        zlistx_delete (self->workers, handle);
    free (worker);
}

void
dp_broker_worker_gone (dp_broker_t *self, uint64_t token)
{
    worker_t *worker = dp_broker_worker_by_token (self, token);
    if (!worker)
        return;
    peer_t *peer = worker->peer;
    dp_info ("worker %s@%s (pid %llu): its connection closed", worker->name, worker->host,
             (unsigned long long)worker->pid);
    dp_broker_worker_remove (self, worker, true);
    dp_broker_peer_delete (self, peer);
}

worker_t *
dp_broker_worker_by_token (dp_broker_t *self, uint64_t token)
{
    /*  A walk: an ATTACH comes once per registration of a worker. */
    for (worker_t *worker = (worker_t *)zlistx_first (self->workers); worker;
         worker = (worker_t *)zlistx_next (self->workers))
        if (worker->token == token)
            return worker;
    return NULL;
}

/*  A worker's lane is the connection of its task thread (PROTOCOL.md
    5.7): the worker's DISPATCH goes there while it is attached, and its
    DONE and PROGRESS come from it as from the worker. Like a session's
    lane, it is neither heartbeated nor expired: it goes with its worker,
    on its BYE, when a send to it finds it gone, or when another ATTACH
    takes its place. */
void
dp_broker_wlane_attach (dp_broker_t *self, worker_t *worker, peer_t *peer)
{
    assert (peer->kind == PEER_NEW);
    if (worker->lane && worker->lane != peer)
        dp_broker_wlane_drop (self, worker->lane);
    worker->lane = peer;
    self->worker_lanes++;
    peer->kind = PEER_WLANE;
    peer->lane_worker = worker;
}

void
dp_broker_wlane_drop (dp_broker_t *self, peer_t *peer)
{
    assert (peer->kind == PEER_WLANE && peer->lane_worker);
    peer->lane_worker->lane = NULL;
    self->worker_lanes--;
    peer->lane_worker = NULL;
    peer->kind = PEER_NEW;
    dp_broker_peer_delete (self, peer);
}

/*  ---------------------------------------------------------------------------
    Clients.
*/

client_t *
dp_broker_client_make (dp_broker_t *self, const uint8_t *session, dp_span_t name,
                       const char *tenant_key, const char *tenant_name)
{
    client_t *client = (client_t *)calloc (1, sizeof *client);
    if (!client)
        return NULL;
    client->tasks = dp_idmap_new_sequential ();
    if (!client->tasks) {
        free (client);
        return NULL;
    }
    memcpy (client->session, session, DP_SESSION_SIZE);
    dp_broker_hex (session, DP_SESSION_SIZE, client->key);
    dp_broker_span_copy (name, client->name, sizeof client->name);
    dp_writer_init (&client->out);
    dp_taskq_init (&client->parked);
    client->sealed = zlistx_new ();
    if (!client->sealed) {
        dp_writer_fini (&client->out);
        dp_idmap_destroy (&client->tasks);
        free (client);
        return NULL;
    }
    zlistx_set_destructor (client->sealed, s_sealed_free);
    client->tenant = dp_broker_tenant_get (self, tenant_key ? tenant_key : client->key,
                                           tenant_name ? tenant_name : client->name);
    if (!client->tenant) {
        zlistx_destroy (&client->sealed);
        dp_writer_fini (&client->out);
        dp_idmap_destroy (&client->tasks);
        free (client);
        return NULL;
    }
    client->last_seen = dp_now_ms ();
    return client;
}

client_t *
dp_broker_client_new (dp_broker_t *self, const uint8_t *session, dp_span_t name)
{
    /*  With CURVE, the sessions of one key share its tenant. */
    client_t *client = dp_broker_client_make (
        self, session, name, self->zap && self->from_user[0] ? self->from_user : NULL, NULL);
    if (client)
        zhashx_insert (self->sessions, client->key, client);
    return client;
}

void
dp_broker_client_forget (dp_broker_t *self, client_t *client)
{
    dp_info ("client %s (%s) gone with %zu tasks", client->name, client->key,
             dp_idmap_size (client->tasks));
    dp_broker_journal_session_gone (self, client);
    zlistx_t *tasks = zlistx_new ();
    dp_idmap_foreach (client->tasks, dp_broker_collect_task, tasks);
    task_t *task;
    while ((task = (task_t *)zlistx_detach (tasks, NULL))) {
        if (task->item.index != DP_TASKQ_NONE) {
            dp_broker_task_unqueue (self, task);
            task->client = NULL;
            dp_broker_task_free (self, task);
        } else
            task->client = NULL;
    }
    zlistx_destroy (&tasks);
    dp_idmap_destroy (&client->tasks);
    dp_broker_client_unaccount (self, client);
    if (client->dirty)
        zlistx_delete (self->dirty, client->dirty);
    if (client->peer) {
        client->peer->client = NULL;
        client->peer->kind = PEER_NEW;
        dp_broker_peer_delete (self, client->peer);
    }
    for (size_t i = 0; i < DP_MAX_LANES; i++)
        if (client->lanes[i])
            dp_broker_lane_drop (self, client->lanes[i]);
    dp_taskq_fini (&client->parked);
    self->freed_bytes += dp_broker_held_bytes (client);
    dp_writer_fini (&client->out);
    zlistx_destroy (&client->sealed);
    if (!client->batch)
        zhashx_delete (self->sessions, client->key);
    dp_broker_tenant_release (self, client->tenant);
    free (client);
}

void
dp_broker_client_out (dp_broker_t *self, client_t *client, size_t upcoming)
{
    bool alone = upcoming >= RESULT_ALONE_BYTES + RESULT_OVERHEAD;
    if (dp_list_count (&client->out) > 0 &&
        (alone || client->out_full ||
         dp_writer_size (&client->out) + upcoming > RESULT_MAX_BYTES)) {
        size_t results = dp_list_count (&client->out);
        dp_list_end (&client->out);
        sealed_t *sealed = (sealed_t *)calloc (1, sizeof *sealed);
        if (!sealed || dp_wire_msg_take (&sealed->msg, &client->out) != 0)
            free (sealed); /* out of memory: these results are lost with the body */
        else {
            sealed->results = results;
            client->sealed_results += results;
            client->sealed_bytes += zmq_msg_size (&sealed->msg);
            zlistx_add_end (client->sealed, sealed);
        }
        dp_writer_reset (&client->out);
    }
    if (dp_list_count (&client->out) == 0)
        dp_list_begin (&client->out);
    client->out_full = alone;
    if (!client->stalled)
        dp_broker_client_pressure (self, client); /* at the bound: nothing more dispatched */
    if (!client->dirty)
        client->dirty = zlistx_add_end (self->dirty, client);
}

void
dp_broker_client_out_frame (dp_broker_t *self, client_t *client, uint64_t seq, zmq_msg_t *frame)
{
    /*  Seals what out holds, so that the results keep their order. */
    dp_broker_client_out (self, client, RESULT_ALONE_BYTES + RESULT_OVERHEAD);
    sealed_t *sealed = (sealed_t *)calloc (1, sizeof *sealed);
    if (!sealed)
        return; /* out of memory: the result is lost, as a sealed body's */
    dp_writer_t *w = &self->w;
    dp_list_begin (w);
    dp_list_add_result_framed (w, seq, 0);
    dp_list_end (w);
    zmq_msg_init (&sealed->frame);
    if (dp_wire_msg_take (&sealed->msg, w) != 0 || zmq_msg_copy (&sealed->frame, frame) != 0) {
        zmq_msg_close (&sealed->frame);
        free (sealed);
        return;
    }
    sealed->framed = true;
    sealed->results = 1;
    client->sealed_results++;
    client->sealed_bytes += zmq_msg_size (&sealed->msg) + zmq_msg_size (frame);
    zlistx_add_end (client->sealed, sealed);
    if (!client->stalled)
        dp_broker_client_pressure (self, client);
}

size_t
dp_broker_held_results (const client_t *client)
{
    return client->sealed_results + dp_list_count (&client->out);
}

size_t
dp_broker_held_bytes (const client_t *client)
{
    return client->sealed_bytes + dp_writer_size (&client->out);
}

bool
dp_broker_client_flooded (const dp_broker_t *self, const client_t *client)
{
    if (!client->stalled || self->round_ms - client->drained < self->expiry_ms)
        return false;
    return dp_broker_held_results (client) >= 2 * self->max_held_results ||
           dp_broker_held_bytes (client) >= 2 * self->max_held_bytes;
}

/*  Moves every queued task of a session between its functions' queues and
    its parked queue, as its stalled flag now says. Each keeps its priority
    and arrival order. A task that finds no room (out of memory) ends
    ENOMEM. */
static void
s_client_repark (dp_broker_t *self, client_t *client)
{
    zlistx_t *tasks = zlistx_new ();
    if (!tasks)
        return;
    if (client->stalled)
        dp_idmap_foreach (client->tasks, dp_broker_collect_task, tasks);
    else {
        dp_taskq_item_t *item;
        while ((item = dp_taskq_pop (&client->parked))) {
            ((task_t *)item)->parked = 0;
            self->queued--;
            zlistx_add_end (tasks, item);
        }
    }
    task_t *task;
    while ((task = (task_t *)zlistx_detach (tasks, NULL))) {
        if (client->stalled) {
            if (task->item.index == DP_TASKQ_NONE || task->parked)
                continue; /* running */
            dp_broker_task_unqueue (self, task);
        }
        dp_broker_task_queue (self, task);
    }
    zlistx_destroy (&tasks);
}

void
dp_broker_client_pressure (dp_broker_t *self, client_t *client)
{
    size_t results = dp_broker_held_results (client);
    size_t bytes = dp_broker_held_bytes (client);
    bool full = results >= self->max_held_results || bytes >= self->max_held_bytes;
    bool eased = results <= self->max_held_results / 2 && bytes <= self->max_held_bytes / 2;
    if (!client->stalled && full) {
        dp_info ("client %s (%s) holds %zu results (%zu bytes) unread: its tasks wait",
                 client->name, client->key, results, bytes);
        client->stalled = true;
        client->drained = dp_now_ms ();
        self->stalls++;
        s_client_repark (self, client);
    } else if (client->stalled && eased) {
        client->stalled = false;
        s_client_repark (self, client);
    }
}

/*  Sends what a session holds to its peer: sealed bodies, then out.
    Returns 0, or -1 with errno if the peer could not take them all. */
static int
s_client_send (dp_broker_t *self, client_t *client)
{
    int rc = 0;
    sealed_t *sealed;
    while (rc == 0 && (sealed = (sealed_t *)zlistx_first (client->sealed))) {
        size_t size = zmq_msg_size (&sealed->msg);
        if (sealed->framed)
            size += zmq_msg_size (&sealed->frame);
        rc = dp_wire_send_msgs (self->handle, client->peer->rid, client->peer->rid_size,
                                DP_CMD_RESULT, &sealed->msg, &sealed->frame,
                                sealed->framed ? 1 : 0, ZMQ_DONTWAIT);
        if (rc == 0) {
            client->peer->last_send = client->drained = dp_now_ms ();
            client->sealed_results -= sealed->results;
            dp_broker_journal_sent (self, client, sealed->results);
            client->sealed_bytes -= size;
            self->freed_bytes += size;
            zlistx_delete (client->sealed, zlistx_cursor (client->sealed));
        }
    }
    if (rc == 0 && dp_list_count (&client->out) > 0) {
        size_t size = dp_writer_size (&client->out);
        size_t results = dp_list_count (&client->out);
        dp_list_end (&client->out);
        rc = dp_broker_send_take (self, client->peer, DP_CMD_RESULT, &client->out);
        if (rc == 0) {
            dp_broker_journal_sent (self, client, results);
            client->drained = client->peer->last_send;
            self->freed_bytes += size;
            if (client->out.sbuf.alloc > SHRINK_BYTES) {
                dp_writer_fini (&client->out);
                dp_writer_init (&client->out);
            } else
                dp_writer_reset (&client->out);
        }
    }
    return rc;
}

void
dp_broker_client_flush (dp_broker_t *self, client_t *client)
{
    if (!client->peer) {
        dp_broker_client_pressure (self, client);
        return;
    }
    int rc = s_client_send (self, client);
    if (rc == 0) {
        if (client->dirty) {
            zlistx_delete (self->dirty, client->dirty);
            client->dirty = NULL;
        }
    } else if (errno == EHOSTUNREACH) {
        peer_t *peer = client->peer;
        client->peer = NULL;
        peer->client = NULL;
        peer->kind = PEER_NEW;
        dp_broker_peer_delete (self, peer);
    }
    dp_broker_client_pressure (self, client);
}

/*  ---------------------------------------------------------------------------
    Steps of the tick.
*/

void
dp_broker_forgive_stall (dp_broker_t *self, int64_t stall)
{
    dp_warn ("broker loop stalled for %lld ms; peers' silence forgiven", (long long)stall);
    for (peer_t *peer = (peer_t *)zhashx_first (self->peers); peer;
         peer = (peer_t *)zhashx_next (self->peers))
        peer->last_recv += stall;
    for (client_t *client = (client_t *)zhashx_first (self->sessions); client;
         client = (client_t *)zhashx_next (self->sessions))
        client->last_seen += stall;
    dp_queues_forgive (self->queues, stall);
}

void
dp_broker_beat_peers (dp_broker_t *self, int64_t now)
{
    bool beat = now >= self->next_beat;
    if (beat) {
        self->next_beat += self->heartbeat_ms;
        if (self->next_beat <= now)
            self->next_beat = now + self->heartbeat_ms;
        self->beats++;
    }
    bool idle_beat = beat && self->beats % DP_IDLE_FACTOR == 0;
    /*  The silent are collected first: expiry changes the peer table. */
    zlistx_t *dead = NULL;
    for (peer_t *peer = (peer_t *)zhashx_first (self->peers); peer;
         peer = (peer_t *)zhashx_next (self->peers)) {
        if (peer->kind == PEER_LANE || peer->kind == PEER_WLANE)
            continue; /* lives as long as its session, or its worker */
        worker_t *worker = peer->worker;
        bool idle = worker && worker->inflight == 0;
        int64_t heard = peer->last_recv;
        if (worker && !idle && worker->busy_since > heard)
            heard = worker->busy_since;
        if (now - heard >= DP_IDLE_SCALED (self->expiry_ms, idle)) {
            if (!dead)
                dead = zlistx_new ();
            zlistx_add_end (dead, peer);
        } else if ((idle ? idle_beat : beat) &&
                   now - peer->last_send >= DP_HEARTBEAT_QUIET (self->heartbeat_ms)) {
            dp_encode_empty (&self->w);
            dp_broker_send (self, peer, DP_CMD_HEARTBEAT, &self->w);
        }
    }
    peer_t *peer;
    while (dead && (peer = (peer_t *)zlistx_detach (dead, NULL))) {
        if (peer->worker)
            dp_broker_worker_remove (self, peer->worker, true);
        if (peer->client)
            dp_broker_client_forget (self, peer->client); /* deletes the peer */
        else
            dp_broker_peer_delete (self, peer);
    }
    zlistx_destroy (&dead);
}

void
dp_broker_expire_sessions (dp_broker_t *self, int64_t now)
{
    zlistx_t *gone = NULL;
    for (client_t *client = (client_t *)zhashx_first (self->sessions); client;
         client = (client_t *)zhashx_next (self->sessions))
        if (!client->peer && now - client->last_seen >= self->expiry_ms) {
            if (!gone)
                gone = zlistx_new ();
            zlistx_add_end (gone, client);
        }
    client_t *client;
    while (gone && (client = (client_t *)zlistx_detach (gone, NULL)))
        dp_broker_client_forget (self, client);
    zlistx_destroy (&gone);
}

/*  ---------------------------------------------------------------------------
    Lanes: extra connections of a session, each of one client thread, whose
    tasks' results go back to them (PROTOCOL.md 5.6). A lane is neither
    heartbeated nor expired: it lives as long as its session, until it says
    BYE, another peer takes its number, or a send to it finds it gone.
*/

void
dp_broker_lane_attach (dp_broker_t *self, client_t *client, peer_t *peer, uint32_t lane)
{
    assert (lane >= 1 && lane <= DP_MAX_LANES && peer->kind == PEER_NEW);
    peer_t *old = client->lanes[lane - 1];
    if (old && old != peer)
        dp_broker_lane_drop (self, old);
    client->lanes[lane - 1] = peer;
    self->lanes++;
    peer->kind = PEER_LANE;
    peer->lane_of = client;
    peer->lane = lane;
}

void
dp_broker_lane_drop (dp_broker_t *self, peer_t *peer)
{
    assert (peer->kind == PEER_LANE && peer->lane_of);
    peer->lane_of->lanes[peer->lane - 1] = NULL;
    self->lanes--;
    peer->lane_of = NULL;
    peer->lane = 0;
    peer->kind = PEER_NEW;
    dp_broker_peer_delete (self, peer);
}

int
dp_broker_lane_result_frame (dp_broker_t *self, const task_t *task, zmq_msg_t *frame)
{
    peer_t *lane = task->lane && task->client ? task->client->lanes[task->lane - 1] : NULL;
    if (!lane)
        return -1;
    zmq_msg_t copy;
    zmq_msg_init (&copy);
    if (zmq_msg_copy (&copy, frame) != 0) {
        zmq_msg_close (&copy);
        return -1;
    }
    dp_list_begin (&self->w);
    dp_list_add_result_framed (&self->w, task->seq, 0);
    dp_list_end (&self->w);
    int rc = dp_broker_send_frames (self, lane, DP_CMD_RESULT, &self->w, &copy, 1);
    int err = errno;
    zmq_msg_close (&copy);
    if (rc == 0) {
        self->lane_results++;
        return 0;
    }
    if (err == EHOSTUNREACH)
        dp_broker_lane_drop (self, lane);
    return -1;
}

int
dp_broker_lane_result (dp_broker_t *self, const task_t *task, int32_t code, const void *value,
                       size_t size)
{
    peer_t *lane = task->lane && task->client ? task->client->lanes[task->lane - 1] : NULL;
    if (!lane)
        return -1;
    dp_list_begin (&self->w);
    if (value)
        dp_list_add_result (&self->w, task->seq, code, value, size);
    else
        dp_list_add_error (&self->w, task->seq, code, dpool_strerror (code));
    dp_list_end (&self->w);
    if (dp_broker_send (self, lane, DP_CMD_RESULT, &self->w) == 0) {
        self->lane_results++;
        return 0;
    }
    if (errno == EHOSTUNREACH)
        dp_broker_lane_drop (self, lane);
    return -1;
}
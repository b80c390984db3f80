/*  dp_broker.c - the broker engine: its loop, the commands peers send,
    and its life cycle.

    All state lives in one dp_broker_t, owned by the thread that drives it
    (dp_broker.h). A round of the loop (dp_broker_work) follows a poll(2)
    of the ROUTER's descriptor and its monitor's: it drains up to
    DRAIN_MAX messages, each handed to its command's handler here (an
    urgent task, of a tenant back from idle, goes out right after the
    message that brought it), then dispatches queued tasks to workers
    with free credit
    (dp_broker_dispatch.c) and flushes the RESULT batches it built
    (dp_broker_peers.c), so every hop carries as many entries as arrived
    together. A tick every TICK_MS sends heartbeats, expires silent peers
    and detached sessions, and fails tasks whose function nobody offers.

    Ownership: peers, sessions (clients), workers and function queues are
    owned by the broker's tables; a task is owned by its session's table
    (and, when its session is gone but a worker still runs it, by that
    worker's job table alone).
*/
#include "dp_broker_int.h"

#include "dp_curve.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

#define TICK_MS     100    /* timer granularity: heartbeats, expiry, grace */
#define STALL_MS    500    /* a tick this late means the loop itself stalled */
#define DRAIN_MAX   1000   /* messages handled per wake before dispatching */
#define LINGER_MS   200    /* time to flush BYEs at shutdown */
#define MONITOR_HWM 100000 /* connection events held for the loop to read */

/*  ---------------------------------------------------------------------------
    Commands.
*/

/*  Sends ERROR [code, message] to a routing id, registered or not. */
static void
s_send_error (dp_broker_t *self, const void *rid, size_t rid_size, int code, const char *message)
{
    dp_encode_error (&self->w, code, message);
    dp_wire_send_writer (self->handle, rid, rid_size, DP_CMD_ERROR, &self->w, ZMQ_DONTWAIT);
}

/*  WELCOME; to a worker, with its registration's lane token (0: none). */
static void
s_send_welcome (dp_broker_t *self, peer_t *peer, uint64_t token)
{
    dp_encode_welcome_token (&self->w, (uint32_t)self->heartbeat_ms, (uint32_t)self->expiry_ms,
                             self->name, (uint32_t)zlistx_size (self->workers), token);
    dp_broker_send (self, peer, DP_CMD_WELCOME, &self->w);
}

/*  Detaches whatever role a peer had, so it can register as something new. */
static void
s_peer_reset (dp_broker_t *self, peer_t *peer)
{
    if (self->queues)
        dp_queues_forget (self->queues, peer, dp_now_ms ());
    if (peer->worker)
        dp_broker_worker_remove (self, peer->worker, false);
    if (peer->client) {
        peer->client->peer = NULL;
        peer->client->last_seen = dp_now_ms ();
        peer->client = NULL;
    }
    if (peer->lane_of) {
        peer->lane_of->lanes[peer->lane - 1] = NULL;
        self->lanes--;
        peer->lane_of = NULL;
        peer->lane = 0;
    }
    if (peer->lane_worker) {
        peer->lane_worker->lane = NULL;
        self->worker_lanes--;
        peer->lane_worker = NULL;
    }
    peer->kind = PEER_NEW;
}

/*  HELLO for a lane of a session (PROTOCOL.md 5.6): the session must be
    known; the peer becomes that lane, in place of any other. */
static void
s_on_lane_hello (dp_broker_t *self, zmq_msg_t *rid, peer_t *peer, const dp_hello_t *hello)
{
    char key[2 * DP_SESSION_SIZE + 1];
    dp_broker_hex (hello->session.data, DP_SESSION_SIZE, key);
    client_t *client = (client_t *)zhashx_lookup (self->sessions, key);
    if (!client) {
        self->dropped[DROP_UNKNOWN_PEER]++;
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_ESTATE,
                      "unknown session: its main connection must say HELLO first");
        return;
    }
    if (!peer) {
        peer = dp_broker_peer_new (self, zmq_msg_data (rid), zmq_msg_size (rid));
        if (!peer)
            return;
    } else if (peer->kind != PEER_LANE || peer->lane_of != client || peer->lane != hello->lane)
        s_peer_reset (self, peer);
    if (peer->kind == PEER_NEW)
        dp_broker_lane_attach (self, client, peer, hello->lane);
    s_send_welcome (self, peer, 0);
}

static void
s_on_hello (dp_broker_t *self, zmq_msg_t *rid, peer_t *peer, const dp_hello_t *hello)
{
    if (hello->lane > 0) {
        s_on_lane_hello (self, rid, peer, hello);
        return;
    }
    char key[2 * DP_SESSION_SIZE + 1];
    dp_broker_hex (hello->session.data, DP_SESSION_SIZE, key);
    client_t *client = (client_t *)zhashx_lookup (self->sessions, key);
    int64_t now = dp_now_ms ();
    if (client && client->peer && client->peer != peer &&
        now - client->peer->last_recv < self->expiry_ms) {
        self->dropped[DROP_SESSION_STOLEN]++;
        dp_broker_warn_once (self, peer ? peer->key : key, "HELLO for a session in use");
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_ESTATE,
                      "session in use");
        return;
    }
    if (!client && zhashx_size (self->sessions) >= self->max_sessions) {
        /*  Refused with nothing changed; detached sessions expire, so the
            client may be let in when it says HELLO again. */
        char message[96];
        snprintf (message, sizeof message,
                  "broker holds its limit of %zu sessions (--max-sessions)", self->max_sessions);
        self->sessions_refused++;
        char from[2 * MAX_RID + 1];
        dp_broker_hex ((const uint8_t *)zmq_msg_data (rid), zmq_msg_size (rid), from);
        dp_broker_warn_once (self, from, "HELLO refused: the broker holds its most sessions");
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_EREJECTED, message);
        return;
    }
    if (!peer) {
        peer = dp_broker_peer_new (self, zmq_msg_data (rid), zmq_msg_size (rid));
        if (!peer)
            return;
    } else if (peer->client != client || peer->kind != PEER_CLIENT)
        s_peer_reset (self, peer);
    if (client && client->peer && client->peer != peer) {
        /*  The old connection went silent: the session moves to the new one. */
        peer_t *old = client->peer;
        old->client = NULL;
        old->kind = PEER_NEW;
        dp_broker_peer_delete (self, old);
    }
    if (!client) {
        client = dp_broker_client_new (self, hello->session.data, hello->name);
        if (!client) {
            dp_broker_peer_delete (self, peer);
            return;
        }
        dp_info ("client %s (%s) attached", client->name, client->key);
        dp_broker_journal_session (self, client);
    }
    client->peer = peer;
    peer->client = client;
    peer->kind = PEER_CLIENT;
    dp_broker_client_account (self, client);
    /*  Results held for the session go first, so that by WELCOME the client
        knows exactly which tasks still need resubmitting. */
    dp_broker_client_flush (self, client);
    s_send_welcome (self, peer, 0);
}

/*  A READY without the worker right: answered ERROR [EDENIED] naming the
    right. Returns true if refused. */
static bool
s_ready_denied (dp_broker_t *self, zmq_msg_t *rid)
{
    char message[160];
    if (dp_broker_may (self, DP_RIGHT_WORKER, REFUSED_WORKER, message, sizeof message))
        return false;
    char from[2 * MAX_RID + 1];
    dp_broker_hex ((const uint8_t *)zmq_msg_data (rid), zmq_msg_size (rid), from);
    dp_broker_warn_once (self, from, message);
    s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_EDENIED, message);
    return true;
}

static void
s_on_ready (dp_broker_t *self, zmq_msg_t *rid, peer_t *peer, dp_ready_t *ready)
{
    if (s_ready_denied (self, rid))
        return;
    if (!peer) {
        peer = dp_broker_peer_new (self, zmq_msg_data (rid), zmq_msg_size (rid));
        if (!peer)
            return;
    } else
        s_peer_reset (self, peer);
    worker_t *worker = (worker_t *)calloc (1, sizeof *worker);
    if (worker)
        worker->jobs = dp_idmap_new_sequential ();
    if (worker && ready->functions.left > 0)
        worker->fns = (fnq_t **)calloc (ready->functions.left, sizeof (fnq_t *));
    if (!worker || !worker->jobs || (ready->functions.left > 0 && !worker->fns)) {
        if (worker) {
            dp_idmap_destroy (&worker->jobs);
            free (worker);
        }
        dp_broker_peer_delete (self, peer);
        return;
    }
    dp_broker_span_copy (ready->name, worker->name, sizeof worker->name);
    dp_broker_span_copy (ready->host, worker->host, sizeof worker->host);
    worker->pid = ready->pid;
    worker->credit = ready->credit;
    dp_span_t fn;
    while (dp_list_next_str (&ready->functions, &fn)) {
        char name[DP_MAX_NAME + 1];
        dp_broker_span_copy (fn, name, sizeof name);
        if (self->from && !dp_key_may_offer (self->from, name)) {
            /*  Not among its key's functions: the worker runs without it. */
            dp_broker_warn_once (self, peer->key, "offers functions its key may not offer");
            continue;
        }
        fnq_t *fnq = dp_broker_fnq_get (self, name);
        bool seen = false;
        for (size_t i = 0; i < worker->nfns && fnq; i++)
            seen = seen || worker->fns[i] == fnq;
        if (!fnq || seen)
            continue;
        dp_broker_fnq_offered (self, fnq);
        worker->fns[worker->nfns++] = fnq;
    }
    /*  Random, so that only the worker that was told it can attach a lane. */
    while (worker->token == 0)
        dp_random_bytes (&worker->token, sizeof worker->token);
    worker->peer = peer;
    peer->worker = worker;
    peer->kind = PEER_WORKER;
    zlistx_add_end (self->workers, worker);
    dp_broker_ready_add (self, worker);
    /*  It holds nothing: first in turn, not behind busy workers that would
        take what is queued before its turn comes. */
    if (worker->ready)
        zlistx_move_start (self->ready, worker->ready);
    self->dispatch_needed = true;
    dp_info ("worker %s@%s (pid %llu) ready: credit %u, %zu functions", worker->name, worker->host,
             (unsigned long long)worker->pid, worker->credit, worker->nfns);
    if (self->on_worker)
        self->on_worker (self->on_worker_arg, worker->name);
    s_send_welcome (self, peer, worker->token);
    /*  Work at once, not after the round of messages this READY came in
        (with many busy workers, a thousand DONEs): last, as it may drop
        the worker if it cannot be sent to. */
    dp_broker_dispatch_one (self, worker);
}

/*  ATTACH (PROTOCOL.md 5.7): the peer becomes the lane of the worker that
    was given the token, in place of any other. A worker's own connection
    may not be its lane. */
static void
s_on_attach (dp_broker_t *self, zmq_msg_t *rid, peer_t *peer, const dp_attach_t *attach)
{
    char message[160];
    if (!dp_broker_may (self, DP_RIGHT_WORKER, REFUSED_WORKER, message, sizeof message)) {
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_EDENIED, message);
        return;
    }
    worker_t *worker = dp_broker_worker_by_token (self, attach->token);
    if (!worker) {
        self->dropped[DROP_UNKNOWN_PEER]++;
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_ESTATE,
                      "unknown token: no worker registered with it");
        return;
    }
    if (peer == worker->peer) {
        self->dropped[DROP_ROLE]++;
        s_send_error (self, peer->rid, peer->rid_size, DPOOL_EPROTO,
                      "a worker's own connection cannot be its lane");
        return;
    }
    if (!peer) {
        peer = dp_broker_peer_new (self, zmq_msg_data (rid), zmq_msg_size (rid));
        if (!peer)
            return;
    } else if (peer->kind != PEER_WLANE || peer->lane_worker != worker)
        s_peer_reset (self, peer);
    if (peer->kind == PEER_NEW)
        dp_broker_wlane_attach (self, worker, peer);
    s_send_welcome (self, peer, 0);
}

/*  Writes why the broker refuses a task of args_size bytes to client by
    its bounds: its session's or key's quota, or the broker's limits.
    Returns false if none is reached. */
static bool
s_over_bounds (dp_broker_t *self, client_t *client, size_t args_size, char *message, size_t size)
{
    if (dp_broker_journal_refused (self, message, size) ||
        dp_broker_quota_refused (self, client, args_size, message, size))
        return true;
    if (self->queued >= self->max_queue)
        snprintf (message, size, "broker queue full (%zu tasks: --max-queue)", self->max_queue);
    else if (self->task_bytes + args_size > self->max_queue_bytes)
        snprintf (message, size, "broker queue full (%zu bytes of arguments: --max-queue-bytes)",
                  self->max_queue_bytes);
    else
        return false;
    return true;
}

/*  Refuses a new task: EDENIED when its key may not submit; EREJECTED
    naming the quota or the limit when its session or key, or the broker,
    holds its most tasks or bytes of arguments; dropped (counted, logged
    once) when the session reads none of its results, so that its
    refusals do not pile up in their turn. Returns true if refused. */
static bool
s_submit_refused (dp_broker_t *self, client_t *client, const dp_task_t *in)
{
    if (dp_broker_client_flooded (self, client)) {
        self->dropped[DROP_HELD_FULL]++;
        dp_broker_warn_once (self, client->key, "tasks dropped: it does not read its results");
        return true;
    }
    char message[DP_KEY_NAME_MAX + DP_MAX_NAME + 128];
    int code = DPOOL_EDENIED;
    if (dp_broker_may (self, DP_RIGHT_SUBMIT, REFUSED_SUBMIT, message, sizeof message)) {
        if (!s_over_bounds (self, client, in->args.size, message, sizeof message))
            return false;
        code = DPOOL_EREJECTED;
    }
    dp_broker_client_out (self, client, strlen (message) + RESULT_OVERHEAD);
    dp_broker_client_add_error (self, client, in->id, code, message);
    self->failed++;
    return true;
}

/*  A new task record for in: its arguments copied in, or, when they came
    in a payload frame of wire, that frame shared (no copy). NULL if out of
    memory. */
static task_t *
s_task_new (dp_broker_t *self, const dp_task_t *in, dp_wire_msg_t *wire)
{
    size_t extra = in->frame ? sizeof (zmq_msg_t) : in->args.size;
    task_t *task = (task_t *)dp_slab_alloc (self->slab, offsetof (task_t, args) + extra);
    if (!task)
        return NULL;
    memset (task, 0, offsetof (task_t, args));
    task->args_size = (uint32_t)in->args.size;
    if (in->frame) {
        zmq_msg_t *frame = (zmq_msg_t *)(void *)task->args;
        zmq_msg_init (frame);
        if (!wire || zmq_msg_copy (frame, dp_wire_payload (wire, in->frame)) != 0) {
            zmq_msg_close (frame);
            dp_slab_free (self->slab, task, offsetof (task_t, args) + extra);
            return NULL;
        }
        task->framed = 1;
    } else
        memcpy (task->args, in->args.data, in->args.size);
    return task;
}

int
dp_broker_task_enter (dp_broker_t *self, client_t *client, uint32_t lane, const dp_task_t *in,
                      dp_wire_msg_t *wire)
{
    char name[DP_MAX_NAME + 1];
    dp_broker_span_copy (in->fn, name, sizeof name);
    fnq_t *fnq = dp_broker_fnq_get (self, name);
    flow_t *flow = fnq ? dp_broker_flow_get (self, client, fnq) : NULL;
    task_t *task = flow ? s_task_new (self, in, wire) : NULL;
    if (!task) {
        if (flow)
            dp_broker_flow_put (self, flow);
        return -1;
    }
    task->item.priority = in->priority;
    task->item.order = ++self->next_order;
    task->item.index = DP_TASKQ_NONE;
    task->client = client;
    task->flow = flow;
    task->seq = in->id;
    task->timeout_ms = in->timeout_ms;
    task->retries = (int16_t)in->retries;
    task->flags = (uint8_t)in->flags;
    task->lane = (uint8_t)lane;
    task->calls = 1;
    if (in->flags & DP_TASK_CHUNK) {
        dp_reader_t reader;
        dp_reader_init (&reader, in->args.data, in->args.size);
        if (dp_mp_read_array (&reader, &task->calls) || task->calls == 0)
            task->calls = 1;
    }
    self->task_bytes += task->args_size;
    if (dp_idmap_put (client->tasks, task->seq, task) != 0) {
        task->client = NULL;
        dp_broker_task_free (self, task);
        return -1;
    }
    dp_broker_client_task_add (self, client, task);
    dp_broker_metrics_submitted (self, task);
    dp_broker_journal_task_new (self, task);
    dp_broker_task_queue (self, task);
    return 0;
}

static void
s_on_submit (dp_broker_t *self, client_t *client, uint32_t lane, dp_list_t *list,
             dp_wire_msg_t *wire)
{
    dp_task_t in;
    while (dp_list_next_task (list, DP_CMD_SUBMIT, &in)) {
        task_t *held = (task_t *)dp_idmap_get (client->tasks, in.id);
        if (held) {
            /*  A resubmission after a reconnect, or of a lane's task by the
                main connection: its result goes where it came from last. */
            held->lane = (uint8_t)lane;
            continue;
        }
        if (s_submit_refused (self, client, &in))
            continue;
        if (dp_broker_task_enter (self, client, lane, &in, wire) != 0) {
            dp_broker_client_out (self, client, RESULT_OVERHEAD * 2);
            dp_broker_client_add_error (self, client, in.id, DPOOL_ENOMEM, "broker out of memory");
        }
    }
}

static void
s_cancel_task (dp_broker_t *self, task_t *task)
{
    if (task->item.index == DP_TASKQ_NONE)
        return; /* running: it finishes */
    dp_broker_task_unqueue (self, task);
    dp_broker_task_finish (self, task, DPOOL_ECANCELLED, NULL, 0);
}

static void
s_on_cancel (dp_broker_t *self, client_t *client, dp_cancel_t *cancel)
{
    if (cancel->all) {
        zlistx_t *tasks = zlistx_new ();
        dp_idmap_foreach (client->tasks, dp_broker_collect_task, tasks);
        task_t *task;
        while ((task = (task_t *)zlistx_detach (tasks, NULL)))
            s_cancel_task (self, task);
        zlistx_destroy (&tasks);
    }
    uint64_t seq;
    while (dp_list_next_uint (&cancel->seqs, &seq)) {
        task_t *task = (task_t *)dp_idmap_get (client->tasks, seq);
        if (task)
            s_cancel_task (self, task);
    }
}

static void
s_on_done (dp_broker_t *self, worker_t *worker, dp_list_t *list, dp_wire_msg_t *wire)
{
    dp_result_t result;
    while (dp_list_next_result (list, &result)) {
        task_t *task = (task_t *)dp_idmap_remove (worker->jobs, result.id);
        dp_broker_progress_forget (worker, result.id);
        if (!task) {
            /*  A job it does not hold: reassigned after it was presumed dead,
                or forged. Never a second result. */
            self->dropped[DROP_UNKNOWN_REF]++;
            dp_broker_warn_once (self, worker->peer->key, "DONE for a job it does not hold");
            continue;
        }
        worker->inflight--;
        worker->load_us -= task->cost_us;
        worker->held -= task->args_size;
        self->inflight--;
        dp_broker_fair_stopped (self, task, result.run_us);
        dp_broker_metrics_ran (self, task, result.run_us);
        if (result.run_us > 0)
            dp_broker_pace_learn (task, result.run_us);
        dp_broker_rtt_learn (worker, result.id, result.run_us);
        if (result.code == 0)
            worker->done++;
        else
            worker->failed++;
        if (!task->client) {
            dp_broker_task_free (self, task);
            continue;
        }
        if (result.code == DPOOL_EDEADLINE && (task->flags & DP_TASK_RETRY_TIMEOUT) &&
            ++task->deaths <= dp_broker_task_retries (task)) {
            dp_broker_metrics_retried (self, task);
            dp_broker_task_queue (self, task); /* the caller asked for another try */
            continue;
        }
        if (result.frame)
            dp_broker_task_finish_frame (self, task, dp_wire_payload (wire, result.frame));
        else
            dp_broker_task_finish (self, task, result.code, result.value.data, result.value.size);
    }
    dp_broker_ready_add (self, worker);
    self->dispatch_needed = true;
}

/*  ---------------------------------------------------------------------------
    Named queues (dp_queues.h) and progress.
*/

/*  The queue store's answer to a peer, as a QUEUE-REPLY. */
static int
s_queue_reply (void *arg, void *owner, const dp_queues_reply_t *reply)
{
    dp_broker_t *self = (dp_broker_t *)arg;
    if (reply->code == 0)
        dp_encode_queue_reply (&self->w, reply->req, reply->size, reply->maxsize, reply->value,
                               reply->value_size, reply->token);
    else
        dp_encode_queue_fail (&self->w, reply->req, reply->code, reply->size, reply->maxsize,
                              reply->message);
    return dp_broker_send_held (self, (peer_t *)owner, DP_CMD_QUEUE_REPLY, &self->w);
}

/*  A queue request, if the key may use named queues; else its QUEUE-REPLY
    fails EDENIED naming the right. */
static void
s_on_queue (dp_broker_t *self, peer_t *peer, dp_msg_t *msg)
{
    char message[DP_MAX_NAME + 160];
    if (msg->cmd == DP_CMD_QUEUE_PUT &&
        dp_broker_journal_refused (self, message, sizeof message)) {
        dp_encode_queue_fail (&self->w, msg->u.queue.req, DPOOL_EREJECTED, 0, 0, message);
        dp_broker_send (self, peer, DP_CMD_QUEUE_REPLY, &self->w);
        return;
    }
    if (dp_broker_may (self, DP_RIGHT_QUEUE, REFUSED_QUEUE, message, sizeof message)) {
        dp_queues_request (self->queues, peer, msg->cmd, &msg->u.queue, peer->last_recv);
        return;
    }
    dp_broker_warn_once (self, peer->key, message);
    dp_encode_queue_fail (&self->w, msg->u.queue.req, DPOOL_EDENIED, 0, 0, message);
    dp_broker_send (self, peer, DP_CMD_QUEUE_REPLY, &self->w);
}

static void
s_on_queue_ack (dp_broker_t *self, peer_t *peer, const dp_queue_ack_t *ack)
{
    if (dp_queues_ack (self->queues, peer, ack->token, ack->accept, dp_now_ms ()) != 0) {
        /*  Late (the value went back already), repeated or forged. */
        self->dropped[DROP_UNKNOWN_TOKEN]++;
        dp_broker_warn_once (self, peer->key, "QUEUE-ACK for a value it does not hold");
    }
}

/*  A worker reports a running job's progress: kept for status, and passed
    on to the task's client as WORK-STATUS (best effort: a client that
    cannot take it now misses this one). It goes out before the job's
    RESULT, which waits in the client's batch until the loop's flush. */
static void
s_on_progress (dp_broker_t *self, worker_t *worker, const dp_progress_t *progress)
{
    task_t *task = (task_t *)dp_idmap_get (worker->jobs, progress->id);
    if (!task) {
        self->dropped[DROP_UNKNOWN_REF]++;
        dp_broker_warn_once (self, worker->peer->key, "PROGRESS for a job it does not hold");
        return;
    }
    if (!worker->progress && !(worker->progress = dp_idmap_new_sequential ()))
        return;
    progress_t *last = (progress_t *)dp_idmap_get (worker->progress, progress->id);
    progress_t *copy = (progress_t *)realloc (last, sizeof *copy + progress->value.size);
    if (!copy)
        return;
    copy->size = (uint32_t)progress->value.size;
    memcpy (copy->value, progress->value.data, progress->value.size);
    if (dp_idmap_put (worker->progress, progress->id, copy)) {
        dp_idmap_remove (worker->progress, progress->id);
        free (copy);
        return;
    }
    if (task->client && task->client->peer) {
        dp_encode_progress (&self->w, task->seq, copy->value, copy->size);
        dp_broker_send (self, task->client->peer, DP_CMD_WORK_STATUS, &self->w);
    }
}

/*  A peer said BYE. A worker's jobs are requeued without counting a death
    and it gets BYE back; a client's session is forgotten; a session's lane
    is forgotten, not its session; a worker's lane gets BYE back and is
    forgotten, not its worker. */
static void
s_on_bye (dp_broker_t *self, peer_t *peer)
{
    if (peer->kind == PEER_LANE) {
        dp_broker_lane_drop (self, peer);
        return;
    }
    if (peer->kind == PEER_WLANE) {
        /*  Answered, so that the worker knows its DONEs arrived. */
        dp_encode_empty (&self->w);
        dp_broker_send (self, peer, DP_CMD_BYE, &self->w);
        dp_broker_wlane_drop (self, peer);
        return;
    }
    if (peer->worker) {
        dp_broker_worker_remove (self, peer->worker, false);
        dp_encode_empty (&self->w);
        dp_broker_send (self, peer, DP_CMD_BYE, &self->w);
    }
    if (peer->client) {
        dp_broker_client_forget (self, peer->client); /* deletes the peer too */
        return;
    }
    dp_broker_peer_delete (self, peer);
}

/*  Counts and logs a malformed message, and tells its sender when it can. */
static void
s_malformed (dp_broker_t *self, zmq_msg_t *rid, zmq_msg_t *header, dp_reason_t reason)
{
    self->dropped[reason]++;
    char key[2 * MAX_RID + 1] = "?";
    if (rid)
        dp_broker_hex ((const uint8_t *)zmq_msg_data (rid), zmq_msg_size (rid), key);
    char what[96];
    snprintf (what, sizeof what, "malformed message (%s)", dp_reason_name (reason));
    dp_broker_warn_once (self, key, what);
    if (!rid)
        return;
    uint8_t version =
        header ? dp_header_version (zmq_msg_data (header), zmq_msg_size (header)) : 0;
    if (reason != DP_EVERSION || version == 0) {
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_EPROTO, what);
        return;
    }
    /*  In the peer's own version when this broker knows it, so that an old
        peer can read why (docs/PROTOCOL.md, 9). */
    snprintf (what, sizeof what, "unsupported version %u: this broker speaks DPP/%d", version,
              DP_VERSION);
    dp_encode_error (&self->w, DPOOL_EPROTO, what);
    uint8_t answer = version < DP_VERSION ? version : DP_VERSION;
    dp_wire_send_version (self->handle, zmq_msg_data (rid), zmq_msg_size (rid), answer,
                          DP_CMD_ERROR, dp_writer_data (&self->w), dp_writer_size (&self->w),
                          ZMQ_DONTWAIT);
}

/*  Acts on a command of a registered peer, as its role allows: HEARTBEAT
    from anyone; SUBMIT from a client or a lane of one; CANCEL and STATUS
    from a client; DONE and PROGRESS from a worker or its lane; queue
    requests from a client or a worker; batch requests from a client. Returns false, having done
    nothing, for a command the peer's role may not send. */
static bool
s_on_command (dp_broker_t *self, peer_t *peer, dp_msg_t *msg, dp_wire_msg_t *wire)
{
    switch (msg->cmd) {
    case DP_CMD_HEARTBEAT:
        return true;
    case DP_CMD_SUBMIT:
        if (peer->kind == PEER_CLIENT) {
            s_on_submit (self, peer->client, 0, &msg->u.list, wire);
            return true;
        }
        if (peer->kind == PEER_LANE) {
            s_on_submit (self, peer->lane_of, peer->lane, &msg->u.list, wire);
            return true;
        }
        break;
    case DP_CMD_CANCEL:
        if (peer->kind == PEER_CLIENT) {
            s_on_cancel (self, peer->client, &msg->u.cancel);
            return true;
        }
        break;
    case DP_CMD_STATUS:
        if (peer->kind == PEER_CLIENT) {
            dp_broker_on_status (self, peer, dp_broker_is_admin (self));
            return true;
        }
        break;
    case DP_CMD_DONE:
        if (peer->kind == PEER_WORKER || peer->kind == PEER_WLANE) {
            s_on_done (self, peer->worker ? peer->worker : peer->lane_worker, &msg->u.list, wire);
            return true;
        }
        break;
    case DP_CMD_QUEUE_OPEN:
    case DP_CMD_QUEUE_PUT:
    case DP_CMD_QUEUE_GET:
    case DP_CMD_QUEUE_SIZE:
        if (peer->kind == PEER_CLIENT || peer->kind == PEER_WORKER) {
            s_on_queue (self, peer, msg);
            return true;
        }
        break;
    case DP_CMD_QUEUE_ACK:
        if (peer->kind == PEER_CLIENT || peer->kind == PEER_WORKER) {
            s_on_queue_ack (self, peer, &msg->u.queue_ack);
            return true;
        }
        break;
    case DP_CMD_BATCH_ADD:
    case DP_CMD_BATCH_GET:
    case DP_CMD_BATCH_ACK:
    case DP_CMD_BATCH_LIST:
    case DP_CMD_BATCH_CANCEL:
        if (peer->kind == PEER_CLIENT) {
            dp_batches_request (self, peer->rid, peer->rid_size, peer->client, msg);
            return true;
        }
        break;
    case DP_CMD_PROGRESS:
        if (peer->kind == PEER_WORKER || peer->kind == PEER_WLANE) {
            s_on_progress (self, peer->worker ? peer->worker : peer->lane_worker,
                           &msg->u.progress);
            return true;
        }
        break;
    default:
        break;
    }
    return false;
}

/*  ---------------------------------------------------------------------------
    Connections (dp_conns.h).
*/

/*  Reads every event the router's monitor has reported into the
    connection table. Each event is two frames: a 6-byte header (event id,
    value) and the endpoint. A worker whose connection closed is declared
    dead once the ROUTER holds nothing more from it (s_bury). */
static void
s_on_monitor (dp_broker_t *self)
{
    void *handle = zsock_resolve (self->monitor);
    dp_wire_msg_t event;
    while (dp_wire_recv (handle, &event, ZMQ_DONTWAIT) == 0) {
        if (event.count >= 1 && zmq_msg_size (&event.frames[0]) >= 6) {
            uint16_t id;
            uint32_t value;
            memcpy (&id, zmq_msg_data (&event.frames[0]), sizeof id);
            memcpy (&value, (uint8_t *)zmq_msg_data (&event.frames[0]) + 2, sizeof value);
            uint64_t token = dp_conns_event (self->conns, id, value, dp_now_ms ());
            if (token && self->ngone == self->gone_cap) {
                size_t cap = self->gone_cap ? self->gone_cap * 2 : 16;
                uint64_t *more = (uint64_t *)realloc (self->gone, cap * sizeof *more);
                if (more) {
                    self->gone = more;
                    self->gone_cap = cap;
                }
            }
            if (token && self->ngone < self->gone_cap)
                self->gone[self->ngone++] = token; /* else: left to expiry */
        }
        dp_wire_close (&event);
    }
}

/*  Declares dead the workers whose connection closed. Called when the
    ROUTER is empty: every message such a worker sent before its
    connection closed was queued before the close was reported, so its
    last DONE has been handled and is not run again. */
static void
s_bury (dp_broker_t *self)
{
    for (size_t i = 0; i < self->ngone; i++)
        dp_broker_worker_gone (self, self->gone[i]);
    if (self->ngone)
        self->dispatch_needed = true;
    self->ngone = 0;
}

/*  The descriptor of the connection a message came on; -1 if unknown.
    Read from its header frame, which the connection's engine made: the
    routing-id frame has none when the ROUTER made it ahead of the receive
    (asked for its events, as dp_broker_wait_ms does). */
static int
s_source_fd (const dp_wire_msg_t *in)
{
    return in->count >= 2 ? zmq_msg_get ((zmq_msg_t *)&in->frames[1], ZMQ_SRCFD) : -1;
}

/*  A message on a connection beyond the bounds (dp_conns.h): its first is
    answered ERROR [EREJECTED, why], and every one is dropped. Returns
    true if the message is to be dropped. The table is brought up to date
    first when it says so, as the descriptor may be another connection's
    by now. */
static bool
s_refused (dp_broker_t *self, zmq_msg_t *rid, int fd)
{
    if (!dp_conns_refused (self->conns, fd))
        return false;
    if (self->monitor)
        s_on_monitor (self);
    if (!dp_conns_refused (self->conns, fd))
        return false;
    char reason[160];
    if (dp_conns_answer (self->conns, fd, dp_now_ms (), reason, sizeof reason)) {
        dp_broker_warn_once (self, "connections", reason);
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_EREJECTED, reason);
    }
    return true;
}

static void
s_handle (dp_broker_t *self, dp_wire_msg_t *in)
{
    zmq_msg_t *rid = NULL;
    dp_msg_t msg;
    dp_reason_t reason = dp_wire_decode (in, true, &rid, &msg);
    if (in->count >= 1 && !rid)
        rid = &in->frames[0];
    if (rid && (zmq_msg_size (rid) == 0 || zmq_msg_size (rid) >= MAX_RID))
        rid = NULL;
    if (reason != DP_OK) {
        s_malformed (self, rid, in->count >= 2 ? &in->frames[1] : NULL, reason);
        return;
    }
    if (!dp_broker_admit (self, in->count >= 2 ? &in->frames[1] : NULL, rid))
        return;
    int fd = s_source_fd (in);
    bool registers =
        msg.cmd == DP_CMD_HELLO || msg.cmd == DP_CMD_READY || msg.cmd == DP_CMD_ATTACH;
    if (registers && self->monitor)
        s_on_monitor (self); /* the table knows the connection that says it */
    if (s_refused (self, rid, fd))
        return;
    peer_t *peer = dp_broker_peer_lookup (self, zmq_msg_data (rid), zmq_msg_size (rid));
    if (peer)
        peer->last_recv = dp_now_ms ();
    switch (msg.cmd) {
    case DP_CMD_HELLO:
        s_on_hello (self, rid, peer, &msg.u.hello);
        return;
    case DP_CMD_READY:
        s_on_ready (self, rid, peer, &msg.u.ready);
        peer = dp_broker_peer_lookup (self, zmq_msg_data (rid), zmq_msg_size (rid));
        if (peer && peer->worker)
            dp_conns_set_token (self->conns, fd, peer->worker->token);
        return;
    case DP_CMD_ATTACH:
        s_on_attach (self, rid, peer, &msg.u.attach);
        return;
    case DP_CMD_BYE:
        if (peer)
            s_on_bye (self, peer);
        return;
    default:
        break;
    }
    if (!peer) {
        self->dropped[DROP_UNKNOWN_PEER]++;
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_ESTATE,
                      "unknown peer: send HELLO or READY");
        return;
    }
    if (peer->kind == PEER_CLIENT)
        peer->client->last_seen = peer->last_recv;
    if (!s_on_command (self, peer, &msg, in)) {
        /*  A command this peer's role may not send. */
        self->dropped[DROP_ROLE]++;
        dp_broker_warn_once (self, peer->key, "command not valid for its role");
        s_send_error (self, peer->rid, peer->rid_size, DPOOL_EPROTO,
                      "command not valid for your role");
    }
}

/*  ---------------------------------------------------------------------------
    Timers.
*/

/*  After a burst, once a tick went by in which nothing was freed: gives
    the memory freed since the last trim back to the system, when that
    was DP_BROKER_TRIM_BYTES or more (glibc keeps freed pages otherwise:
    up to its trim threshold at the top of the heap, and all of them below
    a block still in use). Under a steady load nothing is trimmed; a burst
    costs one malloc_trim once it is over. */
static void
s_trim (dp_broker_t *self)
{
    bool settled = self->freed_bytes == self->freed_at_tick;
    self->freed_at_tick = self->freed_bytes;
    if (!self->trim_memory || !settled || self->freed_bytes < DP_BROKER_TRIM_BYTES)
        return;
    self->freed_bytes = self->freed_at_tick = 0;
#ifdef __GLIBC__
    malloc_trim (0);
    self->trims++;
#endif
}

/*  The timer, every TICK_MS: forgives a stall of the loop itself, beats
    and expires peers, expires detached sessions, fails tasks nobody
    offers to run, ends the named queues' waits that are due, and gives
    memory back after a burst. */
static void
s_tick (dp_broker_t *self)
{
    int64_t now = dp_now_ms ();
    int64_t stall = now - self->last_tick - TICK_MS;
    if (stall > STALL_MS)
        dp_broker_forgive_stall (self, stall);
    self->last_tick = now;
    dp_broker_beat_peers (self, now);
    dp_broker_expire_sessions (self, now);
    dp_broker_fail_unoffered (self, now);
    dp_queues_tick (self->queues, now);
    dp_batches_tick (self, now);
    dp_conns_tick (self->conns, now);
    s_trim (self);
}

/*  ---------------------------------------------------------------------------
    Life cycle.
*/

void
dp_broker_config_init (dp_broker_config_t *config)
{
    memset (config, 0, sizeof *config);
    config->heartbeat_ms = DP_HEARTBEAT_MS;
    config->expiry_ms = DP_EXPIRY_MS;
    config->max_queue = DP_DEFAULT_MAX_QUEUE;
    config->max_queue_bytes = DP_DEFAULT_MAX_QUEUE_BYTES;
    config->max_held_results = DP_DEFAULT_MAX_HELD_RESULTS;
    config->max_held_bytes = DP_DEFAULT_MAX_HELD_BYTES;
    config->max_sessions = DP_DEFAULT_MAX_SESSIONS;
    config->nofunc_grace_ms = DP_DEFAULT_NOFUNC_GRACE;
    config->journal_sync = DP_JOURNAL_SYNC_DEFAULT;
}

static int
s_write_endpoint_file (const char *path, const char *text)
{
    char tmp[4096];
    snprintf (tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid ());
    FILE *file = fopen (tmp, "w");
    if (!file)
        return -1;
    int rc = fputs (text, file) < 0 ? -1 : 0;
    if (fclose (file) != 0)
        rc = -1;
    if (rc == 0 && rename (tmp, path) != 0)
        rc = -1;
    if (rc != 0)
        unlink (tmp);
    return rc;
}

static bool
s_curve_on (const dp_broker_config_t *config)
{
    return config->curve_secret || config->curve_secret_key;
}

/*  The bound on connections: config's, or the open-file limit less
    DP_BROKER_FD_RESERVE, so that accept(2) keeps finding a descriptor (at
    the limit, libzmq's listener spins on EMFILE). */
static size_t
s_max_connections (const dp_broker_config_t *config)
{
    if (config->max_connections > 0)
        return config->max_connections;
    struct rlimit limit;
    rlim_t soft = getrlimit (RLIMIT_NOFILE, &limit) == 0 ? limit.rlim_cur : 1024;
    if (soft == RLIM_INFINITY || soft > (rlim_t)1 << 30)
        soft = (rlim_t)1 << 30;
    return soft > 2 * DP_BROKER_FD_RESERVE ? (size_t)soft - DP_BROKER_FD_RESERVE
                                           : (size_t)soft / 2;
}

dp_broker_t *
dp_broker_new (const dp_broker_config_t *config)
{
    assert (config);
    dp_broker_t *self = (dp_broker_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    char name[DP_MAX_NAME + 1];
    if (config->name)
        snprintf (name, sizeof name, "%s", config->name);
    else
        snprintf (name, sizeof name, "%s:%d", dp_hostname (), (int)getpid ());
    self->name = strdup (name);
    self->heartbeat_ms = config->heartbeat_ms > 0 ? config->heartbeat_ms : DP_HEARTBEAT_MS;
    self->expiry_ms = config->expiry_ms > 0 ? config->expiry_ms : DP_EXPIRY_MS;
    if (self->expiry_ms <= DP_HEARTBEAT_ALONE (self->heartbeat_ms))
        self->expiry_ms = self->heartbeat_ms * 5 / 2; /* peers may be quiet 1.5 intervals */
    self->max_queue = config->max_queue > 0 ? config->max_queue : DP_DEFAULT_MAX_QUEUE;
    self->max_queue_bytes =
        config->max_queue_bytes > 0 ? config->max_queue_bytes : DP_DEFAULT_MAX_QUEUE_BYTES;
    self->max_held_results =
        config->max_held_results > 0 ? config->max_held_results : DP_DEFAULT_MAX_HELD_RESULTS;
    self->max_held_bytes =
        config->max_held_bytes > 0 ? config->max_held_bytes : DP_DEFAULT_MAX_HELD_BYTES;
    self->max_sessions = config->max_sessions > 0 ? config->max_sessions : DP_DEFAULT_MAX_SESSIONS;
    self->trim_memory = config->trim_memory;
    self->on_worker = config->on_worker;
    self->on_worker_arg = config->on_worker_arg;
    self->max_queued_per_client = config->max_queued_per_client;
    self->max_queued_bytes_per_client = config->max_queued_bytes_per_client;
    self->zap_fd = -1;
    self->nofunc_grace_ms =
        config->nofunc_grace_ms != 0 ? config->nofunc_grace_ms : DP_DEFAULT_NOFUNC_GRACE;
    dp_writer_init (&self->w); /* before anything can fail: destroy packs a BYE */
    self->peers = zhashx_new ();
    self->sessions = zhashx_new ();
    self->fnqs = zhashx_new ();
    self->workers = zlistx_new ();
    self->ready = zlistx_new ();
    self->dirty = zlistx_new ();
    self->warned = zhashx_new ();
    self->slab = dp_slab_new ();
    self->queues = dp_queues_new (config->queue_bytes, 0, s_queue_reply, self);
    dp_batches_config_t batches = {config->result_ttl_s, config->max_batches,
                                   config->max_batch_tasks, config->max_batch_bytes};
    self->batches = dp_batches_new (&batches);
    self->conns = dp_conns_new (s_max_connections (config),
                                config->max_peer_connections > 0 ? config->max_peer_connections
                                                                 : DP_DEFAULT_MAX_PEER_CONNS,
                                s_curve_on (config));
    self->max_running = config->max_running;
    self->metrics = config->metrics ? dp_metrics_new (0) : NULL;
    self->router = zsock_new (ZMQ_ROUTER);
    if (dp_broker_fair_init (self, config->weights) != 0 || !self->name || !self->peers ||
        !self->sessions || !self->fnqs || !self->workers || !self->ready || !self->dirty ||
        !self->warned || !self->queues || !self->batches || !self->router || !self->slab ||
        !self->conns || (config->metrics && !self->metrics)) {
        dp_broker_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->peers, dp_broker_peer_free);
    zhashx_set_destructor (self->fnqs, dp_broker_fnq_destroy);
    self->handle = zsock_resolve (self->router);
    dp_wire_configure (self->handle, true, LINGER_MS);
    /*  What ZeroMQ queues to a peer that does not read is out of the
        broker's sight: a few messages, then results are held where they
        are counted against the session's bound (PROTOCOL.md section 8). */
    int sndhwm = DP_BROKER_SNDHWM;
    zmq_setsockopt (self->handle, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    if (config->max_msg_size > 0 && config->max_msg_size < DP_MAX_MSG_SIZE)
        zmq_setsockopt (self->handle, ZMQ_MAXMSGSIZE, &config->max_msg_size,
                        sizeof config->max_msg_size);
    if (s_curve_on (config) && dp_broker_auth_setup (self, config) != 0) {
        dp_broker_destroy (&self);
        return NULL;
    }
    /*  After CURVE's set-up, so that replayed sessions take their key's
        tenant; before binding, so that a refused journal binds nothing. */
    if (config->journal &&
        dp_broker_journal_open (self, config->journal, config->journal_sync) != 0) {
        dp_broker_destroy (&self);
        return NULL;
    }
    char monitor[64];
    snprintf (monitor, sizeof monitor, "inproc://dpool-broker-monitor-%p", (void *)self);
    int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor (self->handle, monitor, events) == 0)
        self->monitor = zsock_new_pair (NULL);
    if (self->monitor)
        zsock_set_rcvhwm (self->monitor, MONITOR_HWM); /* an event lost is a table wrong */
    if (self->monitor && zsock_connect (self->monitor, "%s", monitor) != 0)
        zsock_destroy (&self->monitor);

    size_t nbinds = config->nbinds;
    const char *defaults[1] = {DP_DEFAULT_ENDPOINT};
    const char *const *binds = nbinds ? config->binds : defaults;
    if (!nbinds)
        nbinds = 1;
    char *endpoints = strdup ("");
    for (size_t i = 0; i < nbinds && endpoints; i++) {
        if (zsock_bind (self->router, "%s", binds[i]) < 0) {
            dp_error ("cannot bind %s: %s", binds[i], zmq_strerror (zmq_errno ()));
            free (endpoints);
            dp_broker_destroy (&self);
            return NULL;
        }
        char *bound = zsock_last_endpoint (self->router);
        size_t len = strlen (endpoints) + strlen (bound ? bound : binds[i]) + 2;
        char *more = (char *)realloc (endpoints, len);
        if (more) {
            strcat (more, bound ? bound : binds[i]);
            strcat (more, "\n");
        } else
            free (endpoints);
        endpoints = more;
        zstr_free (&bound);
    }
    self->endpoints = endpoints;
    if (!self->endpoints) {
        dp_broker_destroy (&self);
        return NULL;
    }
    if (config->endpoint_file && s_write_endpoint_file (config->endpoint_file, endpoints) != 0)
        dp_warn ("cannot write %s", config->endpoint_file);
    self->started = self->last_tick = self->round_ms = dp_now_ms ();
    self->next_beat = self->started + self->heartbeat_ms;
    return self;
}

const char *
dp_broker_endpoints (dp_broker_t *self)
{
    assert (self);
    return self->endpoints;
}

void
dp_broker_destroy (dp_broker_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_broker_t *self = *self_p;
        /*  The queues go first, answering nobody: peers leaving below
            need not be served from them. */
        dp_queues_destroy (&self->queues);
        if (self->peers) {
            /*  Everyone hears that the broker is going. */
            dp_encode_empty (&self->w);
            for (peer_t *peer = (peer_t *)zhashx_first (self->peers); peer;
                 peer = (peer_t *)zhashx_next (self->peers))
                dp_broker_send (self, peer, DP_CMD_BYE, &self->w);
        }
        worker_t *worker;
        while (self->workers && (worker = (worker_t *)zlistx_first (self->workers)))
            dp_broker_worker_remove (self, worker, false);
        /*  Closed before the sessions go: they stay in the journal. */
        dp_broker_journal_close (self);
        client_t *client;
        while (self->sessions && (client = (client_t *)zhashx_first (self->sessions)))
            dp_broker_client_forget (self, client);
        if (self->tenants)
            dp_batches_destroy (self, &self->batches);
        /*  What is left queued had no session (impossible) or was requeued
            from workers just removed: free it with its queue. */
        for (fnq_t *fnq = self->fnqs ? (fnq_t *)zhashx_first (self->fnqs) : NULL; fnq;
             fnq = (fnq_t *)zhashx_next (self->fnqs)) {
            zlistx_t *tasks = self->tenants ? dp_broker_fair_unqueue_all (self, fnq) : NULL;
            task_t *task;
            while (tasks && (task = (task_t *)zlistx_detach (tasks, NULL)))
                dp_broker_task_free (self, task);
            zlistx_destroy (&tasks);
        }
        if (self->monitor)
            zmq_socket_monitor (self->handle, NULL, 0);
        zsock_destroy (&self->monitor);
        zsock_destroy (&self->router);
        dp_broker_auth_destroy (self);
        zhashx_destroy (&self->peers);
        zhashx_destroy (&self->sessions);
        zhashx_destroy (&self->fnqs);
        dp_broker_fair_fini (self);
        zlistx_destroy (&self->workers);
        zlistx_destroy (&self->ready);
        zlistx_destroy (&self->dirty);
        zhashx_destroy (&self->warned);
        dp_conns_destroy (&self->conns);
        dp_metrics_destroy (&self->metrics);
        free (self->gone);
        dp_broker_journal_fini (self);
        dp_slab_destroy (&self->slab);
        dp_writer_fini (&self->w);
        free (self->batch);
        free (self->endpoints);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

/*  The loop polls file descriptors itself rather than with zmq_poll, which
    asks each socket for its events before and after it sleeps (a poll(2)
    and a getpid(2) each with this libzmq): with the monitor and the pipe,
    an idle broker spent ~20 system calls on every message. Here a round
    costs one look at the ROUTER's events and one poll(2). The monitor
    socket is read only when its descriptor fires: nothing else touches
    it, so its signal stays up until it is read to the end. */
int
dp_broker_fds (dp_broker_t *self, struct pollfd *fds)
{
    assert (self && fds);
    if (!self->fds_ready) {
        self->router_fd = dp_wire_fd (self->handle);
        self->monitor_fd = self->monitor ? dp_wire_fd (zsock_resolve (self->monitor)) : -1;
        /*  A socket's descriptor fires when a message arrives only once
            the socket has been found empty: look at the monitor once. */
        if (self->monitor)
            s_on_monitor (self);
        dp_broker_on_zap (self);
        self->fds_ready = true;
    }
    int nfds = 0;
    fds[nfds++] = (struct pollfd){self->router_fd, POLLIN, 0};
    if (self->monitor_fd >= 0)
        fds[nfds++] = (struct pollfd){self->monitor_fd, POLLIN, 0};
    if (self->zap_fd >= 0)
        fds[nfds++] = (struct pollfd){self->zap_fd, POLLIN, 0};
    return nfds;
}

int
dp_broker_wait_ms (dp_broker_t *self)
{
    assert (self);
    if (dp_wire_readable (self->handle))
        return 0;
    if (self->dispatch_needed && self->queued > 0)
        return 0; /* tasks came back after the round's dispatch (a session unstalled) */
    int64_t now = dp_now_ms ();
    int64_t wake = self->last_tick + TICK_MS;
    int64_t queue_deadline = dp_queues_next_deadline (self->queues);
    if (queue_deadline >= 0 && queue_deadline < wake)
        wake = queue_deadline;
    return wake - now < 0 ? 0 : (int)(wake - now);
}

void
dp_broker_work (dp_broker_t *self, const struct pollfd *fds, int nfds)
{
    assert (self);
    self->round_ms = dp_now_ms ();
    if (self->reload_pending) {
        self->reload_pending = 0;
        dp_broker_reload (self);
    }
    for (int i = 1; i < nfds; i++) {
        if (fds[i].revents && fds[i].fd == self->monitor_fd)
            s_on_monitor (self);
        if (fds[i].revents && fds[i].fd == self->zap_fd)
            dp_broker_on_zap (self);
    }
    dp_wire_msg_t in;
    for (int i = 0; i < DRAIN_MAX; i++) {
        if (dp_wire_recv (self->handle, &in, ZMQ_DONTWAIT) != 0) {
            s_bury (self); /* the ROUTER is empty */
            break;
        }
        s_handle (self, &in);
        dp_wire_close (&in);
        if (self->urgent_needed)
            dp_broker_dispatch_urgent (self);
    }
    if (self->dispatch_needed && self->queued > 0)
        dp_broker_dispatch (self);
    /*  Group commit: what this turn changed is journaled before anything
        that acknowledges it goes out. */
    dp_broker_journal_commit (self);
    /*  Each dirty session gets one try; those that could not be sent to
        (slow, or detached) stay dirty for the next round. */
    for (size_t i = zlistx_size (self->dirty); i > 0; i--) {
        client_t *client = (client_t *)zlistx_first (self->dirty);
        dp_broker_client_flush (self, client);
        if (client->dirty)
            zlistx_move_end (self->dirty, client->dirty);
    }
    /*  Batch replies last: what the turn changed is acknowledged only now,
        after any journal has recorded it (dp_batches.h). */
    dp_batches_flush (self, dp_now_ms ());
    int64_t queue_deadline = dp_queues_next_deadline (self->queues);
    if (dp_now_ms () - self->last_tick >= TICK_MS)
        s_tick (self);
    else if (queue_deadline >= 0 && dp_now_ms () >= queue_deadline)
        dp_queues_tick (self->queues, dp_now_ms ()); /* a queue wait ends between ticks */
    if (self->held && zlistx_size (self->held) > 0)
        dp_broker_journal_commit (self); /* replies of the tick's queue changes */
}

int
dp_broker_run (dp_broker_t *self)
{
    assert (self);
    struct pollfd fds[DP_BROKER_MAX_FDS];
    int nfds = dp_broker_fds (self, fds);
    if (fds[0].fd < 0)
        return -1;
    while (!zsys_interrupted) {
        int rc = poll (fds, (nfds_t)nfds, dp_broker_wait_ms (self));
        if (rc < 0 && errno != EINTR)
            return -1;
        if (zsys_interrupted)
            break;
        if (rc <= 0)
            for (int i = 0; i < nfds; i++)
                fds[i].revents = 0;
        dp_broker_work (self, fds, nfds);
    }
    return 0;
}

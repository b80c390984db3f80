/*  dp_broker.c - the broker engine.

    All state lives in one dp_broker_t owned by one thread. The loop wakes on
    the ROUTER socket (and the actor pipe), drains up to DRAIN_MAX messages,
    then dispatches queued tasks to workers with free credit and flushes the
    RESULT batches it built, so every hop carries as many entries as arrived
    together. A tick every TICK_MS sends heartbeats, expires silent peers,
    and fails tasks whose function nobody offers.

    Ownership: peers, sessions (clients), workers and function queues are
    owned by the broker's tables; a task is owned by its session's table
    (and, when its session is gone but a worker still runs it, by that
    worker's job table alone).
*/
#include "dp_broker.h"

#include "dp_curve.h"
#include "dp_idmap.h"
#include "dp_proto.h"
#include "dp_queues.h"
#include "dp_slab.h"
#include "dp_taskq.h"
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
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS            100               /* timer granularity: heartbeats, expiry, grace */
#define PACE_WEIGHT        4                 /* a pace sample moves the average by a quarter */
#define STALL_MS           500               /* a tick this late means the loop itself stalled */
#define DRAIN_MAX          1000              /* messages handled per wake before dispatching */
#define MAX_RID            256               /* ZeroMQ routing ids are at most 255 bytes */
#define WARNED_MAX         4096              /* peers remembered as already warned about */
#define LINGER_MS          200               /* time to flush BYEs at shutdown */
#define RESULT_OVERHEAD    24                /* bytes of a RESULT entry besides its value */
#define RESULT_MAX_BYTES   (8 * 1024 * 1024) /* a RESULT body is sent before it grows past this */
#define RESULT_ALONE_BYTES (32 * 1024)       /* a value this big goes in a RESULT of its own */
#define DISPATCH_MAX_BYTES (8 * 1024 * 1024) /* a DISPATCH stops taking tasks past this */
#define SHRINK_BYTES       (1024 * 1024)     /* writers above this are freed once sent */
#define STATUS_MAX         1000              /* running tasks and queues listed in status */

typedef struct _client_t client_t;
typedef struct _worker_t worker_t;
typedef struct _fnq_t fnq_t;

typedef enum { PEER_NEW = 0, PEER_CLIENT, PEER_WORKER } peer_kind_t;

/*  Anyone connected who has registered: a client or a worker. */
typedef struct {
    uint8_t rid[MAX_RID];
    size_t rid_size;
    char key[2 * MAX_RID + 1]; /* hex of rid, the table key */
    peer_kind_t kind;
    client_t *client;
    worker_t *worker;
    int64_t last_recv;
    int64_t last_send;
} peer_t;

/*  A job's last PROGRESS value. */
typedef struct {
    uint32_t size;
    uint8_t value[];
} progress_t;

/*  One task: queued in its function's queue, or running on a worker. Kept
    small: a broker may hold millions (docs: bytes per queued task). */
typedef struct {
    dp_taskq_item_t item; /* priority and arrival order; queued when index set */
    client_t *client;     /* NULL once its session is gone */
    fnq_t *fnq;
    uint64_t seq;
    uint64_t ref; /* this attempt's reference while running */
    uint32_t timeout_ms;
    uint32_t calls;   /* 1, or the calls in a chunk */
    uint32_t cost_us; /* run time charged to its worker while it holds it */
    uint32_t args_size;
    int16_t retries; /* -1 to DP_MAX_RETRIES */
    uint16_t deaths; /* workers that died running it */
    uint8_t flags;
    uint8_t args[];
} task_t;

_Static_assert(DP_TASK_FLAGS <= UINT8_MAX, "task flags fit task_t.flags");
_Static_assert(DP_MAX_RETRIES <= INT16_MAX, "retries fit task_t.retries");

/*  A RESULT body that reached RESULT_MAX_BYTES, or holds a large value
    alone, waiting to be sent: made a message at once, so that it is sent
    without a copy. */
typedef struct {
    zmq_msg_t msg;
} sealed_t;

static void
s_sealed_free (void **item)
{
    sealed_t *sealed = (sealed_t *)*item;
    if (sealed) {
        zmq_msg_close (&sealed->msg);
        free (sealed);
        *item = NULL;
    }
}

/*  The queue of one function name. */
struct _fnq_t {
    char *name;
    dp_taskq_t queue;
    size_t nworkers;         /* workers offering it */
    int64_t unoffered_since; /* when tasks began waiting with nobody offering it */
    uint32_t pace_us;        /* run time of one call, a moving average; 0: unknown */
};

/*  A client session. */
struct _client_t {
    uint8_t session[DP_SESSION_SIZE];
    char key[2 * DP_SESSION_SIZE + 1];
    char name[DP_MAX_NAME + 1];
    peer_t *peer;      /* NULL while detached */
    int64_t last_seen; /* for expiry while detached */
    dp_idmap_t *tasks; /* seq -> task_t, queued or running */
    dp_writer_t out;   /* RESULT entries not yet sent */
    zlistx_t *sealed;  /* full RESULT bodies not yet sent (sealed_t), oldest first */
    bool out_full;     /* out holds a large value alone: seal it before the next */
    void *dirty;       /* handle in broker->dirty while out or sealed has entries */
};

struct _worker_t {
    peer_t *peer;
    char name[DP_MAX_NAME + 1];
    char host[DP_MAX_NAME + 1];
    uint64_t pid;
    uint32_t credit;
    uint32_t inflight;
    int64_t busy_since; /* when inflight last rose from 0: idle until then (§6) */
    uint64_t load_us;   /* run time of the jobs it holds, as charged */
    uint64_t held;      /* bytes of arguments of the jobs it holds */
    fnq_t **fns;
    size_t nfns;
    dp_idmap_t *jobs; /* ref -> task_t */
    /*  The last PROGRESS of the jobs that reported one (ref -> progress_t),
        kept out of task_t, which stays small; NULL until the first. */
    dp_idmap_t *progress;
    uint64_t done;
    uint64_t failed;
    void *ready; /* handle in broker->ready while it has free credit */
};

/*  Counters beyond the malformed-message reasons of dp_reason_t. */
enum {
    DROP_ROLE = DP_EREASON_COUNT_,
    DROP_UNKNOWN_REF,
    DROP_UNKNOWN_PEER,
    DROP_SESSION_STOLEN,
    DROP_UNKNOWN_TOKEN,
    DROP_COUNT_
};

static const char *s_drop_names[DROP_COUNT_] = {
    "ok",   "frames", "header", "signature",   "version",      "command",
    "body", "limit",  "role",   "unknown_ref", "unknown_peer", "session_stolen"};

/*  Counters added with the named queues, from DROP_UNKNOWN_TOKEN on. */
static const char *s_more_drop_names[DROP_COUNT_ - DROP_UNKNOWN_TOKEN] = {"unknown_token"};

static const char *
s_drop_name (int drop)
{
    return drop >= DROP_UNKNOWN_TOKEN ? s_more_drop_names[drop - DROP_UNKNOWN_TOKEN]
                                      : s_drop_names[drop];
}

struct _dp_broker_t {
    char *name;
    int heartbeat_ms;
    int expiry_ms;
    size_t max_queue;
    int nofunc_grace_ms;
    zsock_t *router;
    void *handle;     /* router's libzmq socket */
    zsock_t *monitor; /* the router's connection events */
    zactor_t *auth;   /* CURVE: the ZAP handler that admits client keys */
    bool fds_ready;   /* router_fd and monitor_fd are known */
    int router_fd;
    int monitor_fd;
    uint64_t accepted;
    uint64_t disconnected;
    uint64_t handshake_failed;
    char *endpoints;
    zhashx_t *peers;    /* key -> peer_t */
    zhashx_t *sessions; /* key -> client_t */
    zhashx_t *fnqs;     /* name -> fnq_t */
    zlistx_t *workers;  /* worker_t, owned */
    zlistx_t *ready;    /* worker_t with free credit, in turn order */
    zlistx_t *dirty;    /* client_t with results to send */
    zhashx_t *warned;   /* peer keys already logged as misbehaving */
    dp_writer_t w;      /* scratch body */
    dp_slab_t *slab;    /* task records */
    task_t **batch;     /* tasks of the DISPATCH being built */
    size_t batch_cap;
    uint64_t next_ref;
    uint64_t next_order;
    size_t queued;
    size_t inflight;
    uint64_t done;
    uint64_t failed;
    uint64_t dropped[DROP_COUNT_];
    int64_t started;
    int64_t last_tick;
    int64_t next_beat; /* when heartbeats next go out, to every quiet peer at once */
    uint64_t beats;    /* beats so far: idle workers get every DP_IDLE_FACTOR-th */
    bool dispatch_needed;
    /*  The named queues (dp_queues.h). */
    dp_queues_t *queues;
};

static void
s_task_finish (dp_broker_t *self, task_t *task, int32_t code, const void *value, size_t size);

/*  Readies a session's RESULT body for an entry of about upcoming bytes:
    a body that would pass RESULT_MAX_BYTES is sealed and queued first, so
    that no message exceeds what a client accepts (ZMQ_MAXMSGSIZE), however
    many results pile up while it is away. A value of RESULT_ALONE_BYTES or
    more gets a body of its own (PROTOCOL.md, RESULT): the client's ZeroMQ
    then receives it into a buffer of its size, which it reuses, not into a
    fresh one of megabytes shared with many others. Marks the session
    dirty. */
static void
s_client_out (dp_broker_t *self, client_t *client, size_t upcoming)
{
    bool alone = upcoming >= RESULT_ALONE_BYTES + RESULT_OVERHEAD;
    if (dp_list_count (&client->out) > 0 &&
        (alone || client->out_full ||
         dp_writer_size (&client->out) + upcoming > RESULT_MAX_BYTES)) {
        dp_list_end (&client->out);
        sealed_t *sealed = (sealed_t *)malloc (sizeof *sealed);
        if (!sealed || dp_wire_msg_take (&sealed->msg, &client->out) != 0)
            free (sealed); /* out of memory: these results are lost with the body */
        else
            zlistx_add_end (client->sealed, sealed);
        dp_writer_reset (&client->out);
    }
    if (dp_list_count (&client->out) == 0)
        dp_list_begin (&client->out);
    client->out_full = alone;
    if (!client->dirty)
        client->dirty = zlistx_add_end (self->dirty, client);
}

/*  ---------------------------------------------------------------------------
    Helpers.
*/
static void
s_hex (const uint8_t *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * size] = 0;
}

static void
s_span_copy (dp_span_t span, char *out, size_t cap)
{
    size_t len = span.size < cap - 1 ? span.size : cap - 1;
    memcpy (out, span.data, len);
    out[len] = 0;
}

/*  Logs once per peer key that it misbehaved, so a flood costs one line. */
static void
s_warn_once (dp_broker_t *self, const char *key, const char *what)
{
    if (zhashx_lookup (self->warned, key))
        return;
    if (zhashx_size (self->warned) >= WARNED_MAX)
        zhashx_purge (self->warned);
    zhashx_insert (self->warned, key, (void *)1);
    dp_warn ("peer %s: %s (logged once per peer)", key, what);
}

/*  Sends a body to a peer; returns 0 or -1 with errno. */
static int
s_send (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, const dp_writer_t *body)
{
    int rc =
        dp_wire_send_writer (self->handle, peer->rid, peer->rid_size, cmd, body, ZMQ_DONTWAIT);
    if (rc == 0)
        peer->last_send = dp_now_ms ();
    return rc;
}

/*  s_send for a body sent once: a large one goes without a copy, and the
    writer is left empty (dp_wire_send_take). */
static int
s_send_take (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body)
{
    int rc = dp_wire_send_take (self->handle, peer->rid, peer->rid_size, cmd, body, ZMQ_DONTWAIT);
    if (rc == 0)
        peer->last_send = dp_now_ms ();
    return rc;
}

/*  Sends ERROR [code, message] to a routing id, registered or not. */
static void
s_send_error (dp_broker_t *self, const void *rid, size_t rid_size, int code, const char *message)
{
    dp_encode_error (&self->w, code, message);
    dp_wire_send_writer (self->handle, rid, rid_size, DP_CMD_ERROR, &self->w, ZMQ_DONTWAIT);
}

static peer_t *
s_peer_lookup (dp_broker_t *self, const void *rid, size_t rid_size)
{
    char key[2 * MAX_RID + 1];
    s_hex ((const uint8_t *)rid, rid_size, key);
    return (peer_t *)zhashx_lookup (self->peers, key);
}

static peer_t *
s_peer_new (dp_broker_t *self, const void *rid, size_t rid_size)
{
    peer_t *peer = (peer_t *)calloc (1, sizeof *peer);
    if (!peer)
        return NULL;
    memcpy (peer->rid, rid, rid_size);
    peer->rid_size = rid_size;
    s_hex (peer->rid, rid_size, peer->key);
    peer->last_recv = peer->last_send = dp_now_ms ();
    zhashx_insert (self->peers, peer->key, peer);
    return peer;
}

/*  Forgets a peer entry; its client or worker must be detached already.
    What it waited for at a queue is dropped, what it was lent goes back. */
static void
s_peer_delete (dp_broker_t *self, peer_t *peer)
{
    assert (!peer->client && !peer->worker);
    if (self->queues)
        dp_queues_forget (self->queues, peer, dp_now_ms ());
    zhashx_delete (self->peers, peer->key); /* frees via the table's destructor */
}

static fnq_t *
s_fnq_get (dp_broker_t *self, const char *name)
{
    fnq_t *fnq = (fnq_t *)zhashx_lookup (self->fnqs, name);
    if (fnq)
        return fnq;
    fnq = (fnq_t *)calloc (1, sizeof *fnq);
    if (!fnq)
        return NULL;
    fnq->name = strdup (name);
    if (!fnq->name) {
        free (fnq);
        return NULL;
    }
    dp_taskq_init (&fnq->queue);
    zhashx_insert (self->fnqs, fnq->name, fnq);
    return fnq;
}

static void
s_fnq_destroy (void **item)
{
    fnq_t *fnq = (fnq_t *)*item;
    if (fnq) {
        dp_taskq_fini (&fnq->queue);
        free (fnq->name);
        free (fnq);
        *item = NULL;
    }
}

static void
s_peer_free (void **item)
{
    free (*item);
    *item = NULL;
}

/*  ---------------------------------------------------------------------------
    Tasks.
*/
static void
s_task_queue (dp_broker_t *self, task_t *task)
{
    task->ref = 0;
    if (dp_taskq_push (&task->fnq->queue, &task->item) == 0) {
        self->queued++;
        self->dispatch_needed = true;
    } else
        s_task_finish (self, task, DPOOL_ENOMEM, NULL, 0);
}

/*  Frees a task that is in no queue and no job table. */
static void
s_task_free (dp_broker_t *self, task_t *task)
{
    assert (task->item.index == DP_TASKQ_NONE);
    dp_slab_free (self->slab, task, offsetof (task_t, args) + task->args_size);
}

/*  Ends a task: its result goes to its session (if it still has one) and
    the task is freed. value is the packed result when code is 0, the packed
    str message otherwise; NULL packs the text of the code. */
static void
s_task_finish (dp_broker_t *self, task_t *task, int32_t code, const void *value, size_t size)
{
    if (code == 0)
        self->done++;
    else
        self->failed++;
    client_t *client = task->client;
    if (client) {
        dp_idmap_remove (client->tasks, task->seq);
        s_client_out (self, client, size + RESULT_OVERHEAD);
        if (value)
            dp_list_add_result (&client->out, task->seq, code, value, size);
        else
            dp_list_add_error (&client->out, task->seq, code, dpool_strerror (code));
    }
    s_task_free (self, task);
}

/*  Ends a task with an error code and a formatted message. */
static void
s_task_fail (dp_broker_t *self, task_t *task, int32_t code, const char *message)
{
    client_t *client = task->client;
    if (client) {
        dp_idmap_remove (client->tasks, task->seq);
        s_client_out (self, client, strlen (message) + RESULT_OVERHEAD);
        dp_list_add_error (&client->out, task->seq, code, message);
    }
    self->failed++;
    s_task_free (self, task);
}

/*  The retry limit a task asked for: -1 never, 0 the default, else n. */
static uint32_t
s_task_retries (const task_t *task)
{
    if (task->retries < 0)
        return 0;
    return task->retries == 0 ? DP_DEFAULT_RETRIES : (uint32_t)task->retries;
}

/*  A worker holding task is gone. If it died (not a clean BYE), the task
    counts a death and fails once it has died more than its retries allow. */
static void
s_task_orphaned (dp_broker_t *self, task_t *task, worker_t *worker, bool died)
{
    self->inflight--;
    if (!task->client) {
        s_task_free (self, task); /* nobody wants its result any more */
        return;
    }
    if (died && ++task->deaths > s_task_retries (task)) {
        char message[DP_MAX_NAME * 2 + 64];
        snprintf (message, sizeof message, "worker died %u times (last: %s@%s)", task->deaths,
                  worker->name, worker->host);
        s_task_fail (self, task, DPOOL_ELOST, message);
        return;
    }
    s_task_queue (self, task);
}

/*  ---------------------------------------------------------------------------
    Workers.
*/
static void
s_ready_add (dp_broker_t *self, worker_t *worker)
{
    if (!worker->ready && worker->inflight < worker->credit)
        worker->ready = zlistx_add_end (self->ready, worker);
}

static void
s_ready_remove (dp_broker_t *self, worker_t *worker)
{
    if (worker->ready) {
        zlistx_delete (self->ready, worker->ready);
        worker->ready = NULL;
    }
}

static void
s_collect_task (uint64_t id, void *value, void *arg)
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

/*  Forgets the progress of job ref, or of every job when ref is 0. */
static void
s_progress_forget (worker_t *worker, uint64_t ref)
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

/*  Removes a worker: every job it held is requeued (counting a death if it
    died) and its peer entry is forgotten. */
static void
s_worker_remove (dp_broker_t *self, worker_t *worker, bool died)
{
    dp_info ("worker %s@%s (pid %llu) %s with %u jobs", worker->name, worker->host,
             (unsigned long long)worker->pid, died ? "lost" : "left", worker->inflight);
    s_ready_remove (self, worker);
    zlistx_t *jobs = zlistx_new ();
    dp_idmap_foreach (worker->jobs, s_collect_task, jobs);
    task_t *task;
    while ((task = (task_t *)zlistx_detach (jobs, NULL)))
        s_task_orphaned (self, task, worker, died);
    zlistx_destroy (&jobs);
    dp_idmap_destroy (&worker->jobs);
    s_progress_forget (worker, 0);
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

/*  ---------------------------------------------------------------------------
    Clients.
*/
static client_t *
s_client_new (dp_broker_t *self, const uint8_t *session, dp_span_t name)
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
    s_hex (session, DP_SESSION_SIZE, client->key);
    s_span_copy (name, client->name, sizeof client->name);
    dp_writer_init (&client->out);
    client->sealed = zlistx_new ();
    if (!client->sealed) {
        dp_writer_fini (&client->out);
        dp_idmap_destroy (&client->tasks);
        free (client);
        return NULL;
    }
    zlistx_set_destructor (client->sealed, s_sealed_free);
    client->last_seen = dp_now_ms ();
    zhashx_insert (self->sessions, client->key, client);
    return client;
}

/*  Forgets a session: queued tasks are dropped, running ones are orphaned
    (their results will be dropped), held results are discarded. */
static void
s_client_forget (dp_broker_t *self, client_t *client)
{
    dp_info ("client %s (%s) gone with %zu tasks", client->name, client->key,
             dp_idmap_size (client->tasks));
    zlistx_t *tasks = zlistx_new ();
    dp_idmap_foreach (client->tasks, s_collect_task, tasks);
    task_t *task;
    while ((task = (task_t *)zlistx_detach (tasks, NULL))) {
        task->client = NULL;
        if (task->item.index != DP_TASKQ_NONE) {
            dp_taskq_remove (&task->fnq->queue, &task->item);
            self->queued--;
            s_task_free (self, task);
        }
    }
    zlistx_destroy (&tasks);
    dp_idmap_destroy (&client->tasks);
    if (client->dirty)
        zlistx_delete (self->dirty, client->dirty);
    if (client->peer) {
        client->peer->client = NULL;
        client->peer->kind = PEER_NEW;
        s_peer_delete (self, client->peer);
    }
    dp_writer_fini (&client->out);
    zlistx_destroy (&client->sealed);
    zhashx_delete (self->sessions, client->key);
    free (client);
}

/*  Sends the client its pending results, if it is attached. A gone peer
    detaches the session (it may come back with HELLO before it expires); a
    slow one keeps them for the next try. */
static void
s_client_flush (dp_broker_t *self, client_t *client)
{
    if (!client->peer)
        return;
    int rc = 0;
    sealed_t *sealed;
    while (rc == 0 && (sealed = (sealed_t *)zlistx_first (client->sealed))) {
        rc = dp_wire_send_msg (self->handle, client->peer->rid, client->peer->rid_size,
                               DP_CMD_RESULT, &sealed->msg, ZMQ_DONTWAIT);
        if (rc == 0) {
            client->peer->last_send = dp_now_ms ();
            zlistx_delete (client->sealed, zlistx_cursor (client->sealed));
        }
    }
    if (rc == 0 && dp_list_count (&client->out) > 0) {
        dp_list_end (&client->out);
        rc = s_send_take (self, client->peer, DP_CMD_RESULT, &client->out);
        if (rc == 0) {
            if (client->out.sbuf.alloc > SHRINK_BYTES) {
                dp_writer_fini (&client->out);
                dp_writer_init (&client->out);
            } else
                dp_writer_reset (&client->out);
        }
    }
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
        s_peer_delete (self, peer);
    }
}

/*  ---------------------------------------------------------------------------
    Dispatch: fill every worker with free credit from the queues of the
    functions it offers, best task first, one DISPATCH per worker.
*/
static task_t *
s_best_task (worker_t *worker)
{
    dp_taskq_item_t *best = NULL;
    for (size_t i = 0; i < worker->nfns; i++) {
        dp_taskq_item_t *head = dp_taskq_peek (&worker->fns[i]->queue);
        if (head && (!best || dp_taskq_before (head, best)))
            best = head;
    }
    return (task_t *)best;
}

/*  What a task is expected to cost its worker, in run time: its function's
    pace times its calls, or a whole prefetch budget while the pace is
    unknown (so the first tasks of a function go one per worker, as Pool
    hands them out) and for a task held by a worker that died (it may be
    what killed it: alone, the next death is charged to it, not to the
    tasks that would have queued behind it). */
static uint32_t
s_task_cost (const task_t *task)
{
    uint64_t pace = task->fnq->pace_us;
    if (pace == 0 || task->deaths > 0)
        return DP_PREFETCH_US;
    uint64_t cost = pace * task->calls;
    return cost < 1 ? 1 : cost > DP_PREFETCH_US ? DP_PREFETCH_US : (uint32_t)cost;
}

/*  Learns a function's pace from a finished task's run time. */
static void
s_pace_learn (task_t *task, uint32_t run_us)
{
    fnq_t *fnq = task->fnq;
    int64_t sample = run_us / (task->calls ? task->calls : 1);
    if (sample < 1)
        sample = 1;
    if (fnq->pace_us == 0)
        fnq->pace_us = (uint32_t)sample;
    else {
        /*  A moving average that follows a change within a few tasks. */
        int64_t pace = fnq->pace_us + (sample - (int64_t)fnq->pace_us) / PACE_WEIGHT;
        fnq->pace_us = pace < 1 ? 1 : (uint32_t)pace;
    }
}

static bool
s_batch_reserve (dp_broker_t *self, size_t count)
{
    if (count <= self->batch_cap)
        return true;
    size_t cap = self->batch_cap ? self->batch_cap * 2 : 64;
    while (cap < count)
        cap *= 2;
    task_t **batch = (task_t **)realloc (self->batch, cap * sizeof (task_t *));
    if (!batch)
        return false;
    self->batch = batch;
    self->batch_cap = cap;
    return true;
}

/*  Gives worker tasks while it has credit, less than DP_PREFETCH_US of
    expected run time queued and less than DP_PREFETCH_BYTES of arguments
    (always at least one task); returns how many,
    or -1 if the worker could not be sent to (it is then gone, or out of the
    ready list until it is heard from again). */
static long
s_dispatch_worker (dp_broker_t *self, worker_t *worker)
{
    /*  A worker still holding half a budget or half its credit is busy
        enough: it is topped up once it runs lower, in one bigger batch
        rather than many small ones. */
    if (worker->inflight > 0 &&
        (worker->load_us > DP_PREFETCH_US / 2 || worker->held > DP_PREFETCH_BYTES / 2 ||
         worker->inflight > worker->credit / 2))
        return 0;
    size_t want = worker->credit - worker->inflight;
    if (!s_batch_reserve (self, want))
        return 0;
    size_t count = 0;
    uint64_t load = worker->load_us;
    uint64_t held = worker->held;
    dp_list_begin (&self->w);
    while (count < want) {
        task_t *task = s_best_task (worker);
        if (!task)
            break;
        uint32_t cost = s_task_cost (task);
        if (worker->inflight + count > 0 &&
            (load + cost > DP_PREFETCH_US || held + task->args_size > DP_PREFETCH_BYTES))
            break; /* enough queued there: keep the rest for whoever frees up */
        if (count > 0 && dp_writer_size (&self->w) + task->args_size > DISPATCH_MAX_BYTES)
            break; /* a message stays well under what a worker accepts */
        dp_taskq_remove (&task->fnq->queue, &task->item);
        load += cost;
        held += task->args_size;
        task->cost_us = cost;
        self->queued--;
        task->ref = ++self->next_ref;
        dp_task_t job = {.id = task->ref,
                         .fn = {(const uint8_t *)task->fnq->name, strlen (task->fnq->name)},
                         .args = {task->args, task->args_size},
                         .timeout_ms = task->timeout_ms,
                         .attempt = task->deaths + 1,
                         .flags = task->flags};
        dp_list_add_task (&self->w, DP_CMD_DISPATCH, &job);
        self->batch[count++] = task;
    }
    if (count == 0)
        return 0;
    dp_list_end (&self->w);
    if (s_send_take (self, worker->peer, DP_CMD_DISPATCH, &self->w) != 0) {
        /*  Not sent: the tasks go back where they were, untouched. */
        int err = errno;
        for (size_t i = 0; i < count; i++) {
            s_task_queue (self, self->batch[i]);
        }
        if (err == EHOSTUNREACH) {
            peer_t *peer = worker->peer;
            s_worker_remove (self, worker, true);
            s_peer_delete (self, peer);
        } else
            s_ready_remove (self, worker); /* slow: wait for its next message */
        return -1;
    }
    /*  An idle worker was heard from up to an idle expiry ago: from now on
        it must answer within the expiry of a busy one, counted from here. */
    if (worker->inflight == 0)
        worker->busy_since = dp_now_ms ();
    for (size_t i = 0; i < count; i++) {
        if (dp_idmap_put (worker->jobs, self->batch[i]->ref, self->batch[i]) != 0) {
            /*  Out of memory: the worker will answer for a ref it is not
                known to hold, and the task is retried from the queue. */
            s_task_queue (self, self->batch[i]);
            continue;
        }
        worker->inflight++;
        worker->load_us += self->batch[i]->cost_us;
        worker->held += self->batch[i]->args_size;
        self->inflight++;
    }
    return (long)count;
}

static void
s_dispatch (dp_broker_t *self)
{
    self->dispatch_needed = false;
    size_t rounds = zlistx_size (self->ready);
    /*  Each worker gets one turn; a worker that took tasks moves to the back,
        so under a deep queue the turns rotate. */
    for (size_t i = 0; i < rounds && self->queued > 0; i++) {
        worker_t *worker = (worker_t *)zlistx_first (self->ready);
        if (!worker)
            break;
        long given = s_dispatch_worker (self, worker);
        if (given < 0)
            continue; /* gone, or slow */
        if (worker->inflight >= worker->credit)
            s_ready_remove (self, worker);
        else if (given > 0 || zlistx_size (self->ready) > 1)
            zlistx_move_end (self->ready, worker->ready);
    }
}

/*  ---------------------------------------------------------------------------
    Commands.
*/
static void
s_send_welcome (dp_broker_t *self, peer_t *peer)
{
    dp_encode_welcome (&self->w, (uint32_t)self->heartbeat_ms, (uint32_t)self->expiry_ms,
                       self->name, (uint32_t)zlistx_size (self->workers));
    s_send (self, peer, DP_CMD_WELCOME, &self->w);
}

/*  Detaches whatever role a peer had, so it can register as something new. */
static void
s_peer_reset (dp_broker_t *self, peer_t *peer)
{
    if (self->queues)
        dp_queues_forget (self->queues, peer, dp_now_ms ());
    if (peer->worker)
        s_worker_remove (self, peer->worker, false);
    if (peer->client) {
        peer->client->peer = NULL;
        peer->client->last_seen = dp_now_ms ();
        peer->client = NULL;
    }
    peer->kind = PEER_NEW;
}

static void
s_on_hello (dp_broker_t *self, zmq_msg_t *rid, peer_t *peer, const dp_hello_t *hello)
{
    char key[2 * DP_SESSION_SIZE + 1];
    s_hex (hello->session.data, DP_SESSION_SIZE, key);
    client_t *client = (client_t *)zhashx_lookup (self->sessions, key);
    int64_t now = dp_now_ms ();
    if (client && client->peer && client->peer != peer &&
        now - client->peer->last_recv < self->expiry_ms) {
        self->dropped[DROP_SESSION_STOLEN]++;
        s_warn_once (self, peer ? peer->key : key, "HELLO for a session in use");
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_ESTATE,
                      "session in use");
        return;
    }
    if (!peer) {
        peer = s_peer_new (self, zmq_msg_data (rid), zmq_msg_size (rid));
        if (!peer)
            return;
    } else if (peer->client != client || peer->kind == PEER_WORKER)
        s_peer_reset (self, peer);
    if (client && client->peer && client->peer != peer) {
        /*  The old connection went silent: the session moves to the new one. */
        peer_t *old = client->peer;
        old->client = NULL;
        old->kind = PEER_NEW;
        s_peer_delete (self, old);
    }
    if (!client) {
        client = s_client_new (self, hello->session.data, hello->name);
        if (!client) {
            s_peer_delete (self, peer);
            return;
        }
        dp_info ("client %s (%s) attached", client->name, client->key);
    }
    client->peer = peer;
    peer->client = client;
    peer->kind = PEER_CLIENT;
    /*  Results held for the session go first, so that by WELCOME the client
        knows exactly which tasks still need resubmitting. */
    s_client_flush (self, client);
    s_send_welcome (self, peer);
}

static void
s_on_ready (dp_broker_t *self, zmq_msg_t *rid, peer_t *peer, dp_ready_t *ready)
{
    if (!peer) {
        peer = s_peer_new (self, zmq_msg_data (rid), zmq_msg_size (rid));
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
        s_peer_delete (self, peer);
        return;
    }
    s_span_copy (ready->name, worker->name, sizeof worker->name);
    s_span_copy (ready->host, worker->host, sizeof worker->host);
    worker->pid = ready->pid;
    worker->credit = ready->credit;
    dp_span_t fn;
    while (dp_list_next_str (&ready->functions, &fn)) {
        char name[DP_MAX_NAME + 1];
        s_span_copy (fn, name, sizeof name);
        fnq_t *fnq = s_fnq_get (self, name);
        bool seen = false;
        for (size_t i = 0; i < worker->nfns && fnq; i++)
            seen = seen || worker->fns[i] == fnq;
        if (!fnq || seen)
            continue;
        fnq->nworkers++;
        fnq->unoffered_since = 0;
        worker->fns[worker->nfns++] = fnq;
    }
    worker->peer = peer;
    peer->worker = worker;
    peer->kind = PEER_WORKER;
    zlistx_add_end (self->workers, worker);
    s_ready_add (self, worker);
    self->dispatch_needed = true;
    dp_info ("worker %s@%s (pid %llu) ready: credit %u, %zu functions", worker->name, worker->host,
             (unsigned long long)worker->pid, worker->credit, worker->nfns);
    s_send_welcome (self, peer);
}

static void
s_on_submit (dp_broker_t *self, client_t *client, dp_list_t *list)
{
    dp_task_t in;
    while (dp_list_next_task (list, DP_CMD_SUBMIT, &in)) {
        if (dp_idmap_get (client->tasks, in.id))
            continue; /* already held: a resubmission after reconnect */
        if (self->queued >= self->max_queue) {
            char message[96];
            snprintf (message, sizeof message, "broker queue full (%zu tasks)", self->queued);
            s_client_out (self, client, sizeof message + RESULT_OVERHEAD);
            dp_list_add_error (&client->out, in.id, DPOOL_EREJECTED, message);
            self->failed++;
            continue;
        }
        char name[DP_MAX_NAME + 1];
        s_span_copy (in.fn, name, sizeof name);
        fnq_t *fnq = s_fnq_get (self, name);
        task_t *task =
            fnq ? (task_t *)dp_slab_alloc (self->slab, offsetof (task_t, args) + in.args.size)
                : NULL;
        if (!task) {
            s_client_out (self, client, RESULT_OVERHEAD * 2);
            dp_list_add_error (&client->out, in.id, DPOOL_ENOMEM, "broker out of memory");
            continue;
        }
        memset (task, 0, offsetof (task_t, args));
        task->item.priority = in.priority;
        task->item.order = ++self->next_order;
        task->item.index = DP_TASKQ_NONE;
        task->client = client;
        task->fnq = fnq;
        task->seq = in.id;
        task->timeout_ms = in.timeout_ms;
        task->retries = (int16_t)in.retries;
        task->flags = (uint8_t)in.flags;
        task->calls = 1;
        if (in.flags & DP_TASK_CHUNK) {
            dp_reader_t reader;
            dp_reader_init (&reader, in.args.data, in.args.size);
            if (dp_mp_read_array (&reader, &task->calls) || task->calls == 0)
                task->calls = 1;
        }
        task->args_size = (uint32_t)in.args.size;
        memcpy (task->args, in.args.data, in.args.size);
        if (dp_idmap_put (client->tasks, task->seq, task) != 0) {
            dp_slab_free (self->slab, task, offsetof (task_t, args) + task->args_size);
            continue;
        }
        s_task_queue (self, task);
    }
}

static void
s_cancel_task (dp_broker_t *self, task_t *task)
{
    if (task->item.index == DP_TASKQ_NONE)
        return; /* running: it finishes */
    dp_taskq_remove (&task->fnq->queue, &task->item);
    self->queued--;
    s_task_finish (self, task, DPOOL_ECANCELLED, NULL, 0);
}

static void
s_on_cancel (dp_broker_t *self, client_t *client, dp_cancel_t *cancel)
{
    if (cancel->all) {
        zlistx_t *tasks = zlistx_new ();
        dp_idmap_foreach (client->tasks, s_collect_task, tasks);
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
s_on_done (dp_broker_t *self, worker_t *worker, dp_list_t *list)
{
    dp_result_t result;
    while (dp_list_next_result (list, &result)) {
        task_t *task = (task_t *)dp_idmap_remove (worker->jobs, result.id);
        s_progress_forget (worker, result.id);
        if (!task) {
            /*  A job it does not hold: reassigned after it was presumed dead,
                or forged. Never a second result. */
            self->dropped[DROP_UNKNOWN_REF]++;
            s_warn_once (self, worker->peer->key, "DONE for a job it does not hold");
            continue;
        }
        worker->inflight--;
        worker->load_us -= task->cost_us;
        worker->held -= task->args_size;
        self->inflight--;
        if (result.run_us > 0)
            s_pace_learn (task, result.run_us);
        if (result.code == 0)
            worker->done++;
        else
            worker->failed++;
        if (!task->client) {
            s_task_free (self, task);
            continue;
        }
        if (result.code == DPOOL_EDEADLINE && (task->flags & DP_TASK_RETRY_TIMEOUT) &&
            ++task->deaths <= s_task_retries (task)) {
            s_task_queue (self, task); /* the caller asked for another try */
            continue;
        }
        s_task_finish (self, task, result.code, result.value.data, result.value.size);
    }
    s_ready_add (self, worker);
    self->dispatch_needed = true;
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
    return s_send (self, (peer_t *)owner, DP_CMD_QUEUE_REPLY, &self->w);
}

static void
s_on_queue_ack (dp_broker_t *self, peer_t *peer, const dp_queue_ack_t *ack)
{
    if (dp_queues_ack (self->queues, peer, ack->token, ack->accept, dp_now_ms ()) != 0) {
        /*  Late (the value went back already), repeated or forged. */
        self->dropped[DROP_UNKNOWN_TOKEN]++;
        s_warn_once (self, peer->key, "QUEUE-ACK for a value it does not hold");
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
        s_warn_once (self, worker->peer->key, "PROGRESS for a job it does not hold");
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
        s_send (self, task->client->peer, DP_CMD_WORK_STATUS, &self->w);
    }
}

/*  Packs the jobs workers hold for status, those that reported progress
    first, at most left of them. */
typedef struct {
    msgpack_packer *pk;
    worker_t *worker;
    size_t left;
    bool reported; /* this pass packs the jobs with progress, or those without */
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
    running->left--;
    msgpack_packer *pk = running->pk;
    msgpack_pack_map (pk, 7);
    s_pack_str (pk, "fn");
    s_pack_str (pk, task->fnq->name);
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

static void
s_pack_running (dp_broker_t *self, msgpack_packer *pk)
{
    size_t count = 0;
    for (worker_t *worker = (worker_t *)zlistx_first (self->workers); worker;
         worker = (worker_t *)zlistx_next (self->workers))
        count += dp_idmap_size (worker->jobs);
    s_running_t running = {pk, NULL, count < STATUS_MAX ? count : STATUS_MAX, true};
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

static void
s_on_status (dp_broker_t *self, peer_t *peer)
{
    dp_writer_reset (&self->w);
    msgpack_packer *pk = &self->w.pk;
    msgpack_pack_map (pk, 13);
    s_pack_str (pk, "broker");
    s_pack_str (pk, self->name);
    s_pack_count (pk, "uptime_ms", (uint64_t)(dp_now_ms () - self->started));
    s_pack_count (pk, "queued", self->queued);
    s_pack_count (pk, "inflight", self->inflight);
    s_pack_count (pk, "done", self->done);
    s_pack_count (pk, "failed", self->failed);
    s_pack_count (pk, "clients", zhashx_size (self->sessions));
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
    /*  What ZeroMQ itself cut off before the protocol saw it: handshakes that
        failed (not ZMTP at all) and connections dropped, among them those
        that sent a frame over ZMQ_MAXMSGSIZE. */
    s_pack_str (pk, "connections");
    msgpack_pack_map (pk, 3);
    s_pack_count (pk, "accepted", self->accepted);
    s_pack_count (pk, "disconnected", self->disconnected);
    s_pack_count (pk, "handshake_failed", self->handshake_failed);
    s_pack_str (pk, "dropped");
    msgpack_pack_map (pk, DROP_COUNT_ - 1);
    for (int i = 1; i < DROP_COUNT_; i++) {
        s_pack_str (pk, s_drop_name (i));
        msgpack_pack_uint64 (pk, self->dropped[i]);
    }
    s_pack_str (pk, "running");
    s_pack_running (self, pk);
    s_pack_str (pk, "queues");
    dp_queues_pack (self->queues, pk, STATUS_MAX);
    s_pack_str (pk, "queue_stats");
    s_pack_queue_stats (self, pk);
    s_send (self, peer, DP_CMD_STATUS_REPLY, &self->w);
}

/*  A peer said BYE. A worker's jobs are requeued without counting a death
    and it gets BYE back; a client's session is forgotten. */
static void
s_on_bye (dp_broker_t *self, peer_t *peer)
{
    if (peer->worker) {
        s_worker_remove (self, peer->worker, false);
        dp_encode_empty (&self->w);
        s_send (self, peer, DP_CMD_BYE, &self->w);
    }
    if (peer->client) {
        s_client_forget (self, peer->client); /* deletes the peer too */
        return;
    }
    s_peer_delete (self, peer);
}

/*  Counts and logs a malformed message, and tells its sender when it can. */
static void
s_malformed (dp_broker_t *self, zmq_msg_t *rid, dp_reason_t reason)
{
    self->dropped[reason]++;
    char key[2 * MAX_RID + 1] = "?";
    if (rid)
        s_hex ((const uint8_t *)zmq_msg_data (rid), zmq_msg_size (rid), key);
    char what[64];
    snprintf (what, sizeof what, "malformed message (%s)", dp_reason_name (reason));
    s_warn_once (self, key, what);
    if (rid) {
        const char *text = reason == DP_EVERSION ? "unsupported version" : what;
        s_send_error (self, zmq_msg_data (rid), zmq_msg_size (rid), DPOOL_EPROTO, text);
    }
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
        s_malformed (self, rid, reason);
        return;
    }
    peer_t *peer = s_peer_lookup (self, zmq_msg_data (rid), zmq_msg_size (rid));
    if (peer)
        peer->last_recv = dp_now_ms ();
    switch (msg.cmd) {
    case DP_CMD_HELLO:
        s_on_hello (self, rid, peer, &msg.u.hello);
        return;
    case DP_CMD_READY:
        s_on_ready (self, rid, peer, &msg.u.ready);
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
    switch (msg.cmd) {
    case DP_CMD_HEARTBEAT:
        return;
    case DP_CMD_SUBMIT:
        if (peer->kind == PEER_CLIENT) {
            s_on_submit (self, peer->client, &msg.u.list);
            return;
        }
        break;
    case DP_CMD_CANCEL:
        if (peer->kind == PEER_CLIENT) {
            s_on_cancel (self, peer->client, &msg.u.cancel);
            return;
        }
        break;
    case DP_CMD_STATUS:
        if (peer->kind == PEER_CLIENT) {
            s_on_status (self, peer);
            return;
        }
        break;
    case DP_CMD_DONE:
        if (peer->kind == PEER_WORKER) {
            s_on_done (self, peer->worker, &msg.u.list);
            return;
        }
        break;
    case DP_CMD_QUEUE_OPEN:
    case DP_CMD_QUEUE_PUT:
    case DP_CMD_QUEUE_GET:
    case DP_CMD_QUEUE_SIZE:
        if (peer->kind != PEER_NEW) {
            dp_queues_request (self->queues, peer, msg.cmd, &msg.u.queue, peer->last_recv);
            return;
        }
        break;
    case DP_CMD_QUEUE_ACK:
        if (peer->kind != PEER_NEW) {
            s_on_queue_ack (self, peer, &msg.u.queue_ack);
            return;
        }
        break;
    case DP_CMD_PROGRESS:
        if (peer->kind == PEER_WORKER) {
            s_on_progress (self, peer->worker, &msg.u.progress);
            return;
        }
        break;
    default:
        break;
    }
    /*  A command this peer's role may not send. */
    self->dropped[DROP_ROLE]++;
    s_warn_once (self, peer->key, "command not valid for its role");
    s_send_error (self, peer->rid, peer->rid_size, DPOOL_EPROTO,
                  "command not valid for your role");
}

/*  ---------------------------------------------------------------------------
    Timers.
*/

/*  If this loop itself stalled (a huge burst, a stopped process, a
    debugger), peers' messages may be waiting unread: the silence is the
    broker's, not theirs, so stall ms are not held against any peer,
    session or queue waiter. */
static void
s_forgive_stall (dp_broker_t *self, int64_t stall)
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

/*  Heartbeats out, and expiry of the silent. Collected first: expiry
    changes the peer table. Heartbeats go out on a common beat, to every
    peer that has not heard from the broker for half an interval, and
    peers answer at once: a thousand idle workers cost the broker a
    burst, handled in a few wake-ups, not two thousand wake-ups spread
    over the interval. Idle workers get only every DP_IDLE_FACTOR-th
    beat, and as long again to answer. A silent worker's jobs are
    requeued (counting a death); a silent client's session is forgotten. */
static void
s_beat_peers (dp_broker_t *self, int64_t now)
{
    bool beat = now >= self->next_beat;
    if (beat) {
        self->next_beat += self->heartbeat_ms;
        if (self->next_beat <= now)
            self->next_beat = now + self->heartbeat_ms;
        self->beats++;
    }
    bool idle_beat = beat && self->beats % DP_IDLE_FACTOR == 0;
    zlistx_t *dead = NULL;
    for (peer_t *peer = (peer_t *)zhashx_first (self->peers); peer;
         peer = (peer_t *)zhashx_next (self->peers)) {
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
            s_send (self, peer, DP_CMD_HEARTBEAT, &self->w);
        }
    }
    peer_t *peer;
    while (dead && (peer = (peer_t *)zlistx_detach (dead, NULL))) {
        if (peer->worker)
            s_worker_remove (self, peer->worker, true);
        if (peer->client)
            s_client_forget (self, peer->client); /* deletes the peer */
        else
            s_peer_delete (self, peer);
    }
    zlistx_destroy (&dead);
}

/*  Forgets the sessions that have been detached for an expiry. */
static void
s_expire_sessions (dp_broker_t *self, int64_t now)
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
        s_client_forget (self, client);
    zlistx_destroy (&gone);
}

/*  Tasks for functions nobody offers fail (ENOFUNC) after the grace
    period, once there are workers at all; empty unoffered queues are
    freed. */
static void
s_fail_unoffered (dp_broker_t *self, int64_t now)
{
    zlistx_t *unused = NULL;
    for (fnq_t *fnq = (fnq_t *)zhashx_first (self->fnqs); fnq;
         fnq = (fnq_t *)zhashx_next (self->fnqs)) {
        if (fnq->nworkers > 0)
            continue;
        if (dp_taskq_size (&fnq->queue) == 0) {
            if (!unused)
                unused = zlistx_new ();
            zlistx_add_end (unused, fnq->name);
            continue;
        }
        if (zlistx_size (self->workers) == 0 || self->nofunc_grace_ms < 0) {
            fnq->unoffered_since = 0;
            continue;
        }
        if (fnq->unoffered_since == 0)
            fnq->unoffered_since = now;
        if (now - fnq->unoffered_since < self->nofunc_grace_ms)
            continue;
        char message[DP_MAX_NAME + 64];
        snprintf (message, sizeof message, "no worker offers function '%s'", fnq->name);
        dp_taskq_item_t *item;
        while ((item = dp_taskq_pop (&fnq->queue))) {
            self->queued--;
            s_task_fail (self, (task_t *)item, DPOOL_ENOFUNC, message);
        }
    }
    const char *name;
    while (unused && (name = (const char *)zlistx_detach (unused, NULL)))
        zhashx_delete (self->fnqs, name);
    zlistx_destroy (&unused);
}

/*  The timer, every TICK_MS: forgives a stall of the loop itself, beats
    and expires peers, expires detached sessions, fails tasks nobody
    offers to run, and ends the named queues' waits that are due. */
static void
s_tick (dp_broker_t *self)
{
    int64_t now = dp_now_ms ();
    int64_t stall = now - self->last_tick - TICK_MS;
    if (stall > STALL_MS)
        s_forgive_stall (self, stall);
    self->last_tick = now;
    s_beat_peers (self, now);
    s_expire_sessions (self, now);
    s_fail_unoffered (self, now);
    dp_queues_tick (self->queues, now);
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
    config->nofunc_grace_ms = DP_DEFAULT_NOFUNC_GRACE;
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

/*  Makes the ROUTER a CURVE server, with a ZAP handler that admits the
    client keys in config->curve_clients (or any key). Returns 0 or -1,
    having logged why. */
static int
s_curve_setup (dp_broker_t *self, const dp_broker_config_t *config)
{
    dp_curve_t curve;
    char err[256];
    if (dp_curve_server (&curve, config->curve_secret, err, sizeof err)) {
        dp_error ("%s", err);
        return -1;
    }
    const char *clients = config->curve_clients;
    bool listed = clients && *clients;
    struct stat st;
    int rc = -1;
    if (listed && (stat (clients, &st) != 0 || !S_ISDIR (st.st_mode)))
        dp_error ("--curve-clients %s is not a directory", clients);
    else if (!(self->auth = zactor_new (zauth, NULL)) ||
             zstr_sendx (self->auth, "CURVE", listed ? clients : CURVE_ALLOW_ANY, NULL) ||
             zsock_wait (self->auth) != 0 || dp_curve_apply (self->handle, &curve, true))
        dp_error ("cannot set up CURVE: %s", zmq_strerror (zmq_errno ()));
    else
        rc = 0;
    explicit_bzero (&curve, sizeof curve);
    if (rc != 0)
        return -1;
    if (listed)
        dp_info ("CURVE on: clients and workers need a key from %s", clients);
    else
        dp_warn ("CURVE on: traffic is encrypted, but any client key is accepted "
                 "(give --curve-clients DIR to admit only known keys)");
    return 0;
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
    self->nofunc_grace_ms =
        config->nofunc_grace_ms != 0 ? config->nofunc_grace_ms : DP_DEFAULT_NOFUNC_GRACE;
    self->peers = zhashx_new ();
    self->sessions = zhashx_new ();
    self->fnqs = zhashx_new ();
    self->workers = zlistx_new ();
    self->ready = zlistx_new ();
    self->dirty = zlistx_new ();
    self->warned = zhashx_new ();
    self->slab = dp_slab_new ();
    self->queues = dp_queues_new (config->queue_bytes, 0, s_queue_reply, self);
    self->router = zsock_new (ZMQ_ROUTER);
    if (!self->name || !self->peers || !self->sessions || !self->fnqs || !self->workers ||
        !self->ready || !self->dirty || !self->warned || !self->queues || !self->router ||
        !self->slab) {
        dp_broker_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->peers, s_peer_free);
    zhashx_set_destructor (self->fnqs, s_fnq_destroy);
    dp_writer_init (&self->w);
    self->handle = zsock_resolve (self->router);
    dp_wire_configure (self->handle, true, LINGER_MS);
    if (config->max_msg_size > 0 && config->max_msg_size < DP_MAX_MSG_SIZE)
        zmq_setsockopt (self->handle, ZMQ_MAXMSGSIZE, &config->max_msg_size,
                        sizeof config->max_msg_size);
    if (config->curve_secret && s_curve_setup (self, config)) {
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
    self->started = self->last_tick = dp_now_ms ();
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
                s_send (self, peer, DP_CMD_BYE, &self->w);
        }
        worker_t *worker;
        while (self->workers && (worker = (worker_t *)zlistx_first (self->workers)))
            s_worker_remove (self, worker, false);
        client_t *client;
        while (self->sessions && (client = (client_t *)zhashx_first (self->sessions)))
            s_client_forget (self, client);
        /*  What is left queued had no session (impossible) or was requeued
            from workers just removed: free it with its queue. */
        for (fnq_t *fnq = self->fnqs ? (fnq_t *)zhashx_first (self->fnqs) : NULL; fnq;
             fnq = (fnq_t *)zhashx_next (self->fnqs)) {
            dp_taskq_item_t *item;
            while ((item = dp_taskq_pop (&fnq->queue)))
                s_task_free (self, (task_t *)item);
        }
        if (self->monitor)
            zmq_socket_monitor (self->handle, NULL, 0);
        zsock_destroy (&self->monitor);
        zsock_destroy (&self->router);
        zactor_destroy (&self->auth);
        zhashx_destroy (&self->peers);
        zhashx_destroy (&self->sessions);
        zhashx_destroy (&self->fnqs);
        zlistx_destroy (&self->workers);
        zlistx_destroy (&self->ready);
        zlistx_destroy (&self->dirty);
        zhashx_destroy (&self->warned);
        dp_slab_destroy (&self->slab);
        dp_writer_fini (&self->w);
        free (self->batch);
        free (self->endpoints);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

/*  Counts the connection events the router's monitor reported. Each event
    is two frames: a 6-byte header (event id, value) and the endpoint. */
static void
s_on_monitor (dp_broker_t *self)
{
    void *handle = zsock_resolve (self->monitor);
    dp_wire_msg_t event;
    while (dp_wire_recv (handle, &event, ZMQ_DONTWAIT) == 0) {
        if (event.count >= 1 && zmq_msg_size (&event.frames[0]) >= 2) {
            uint16_t id;
            memcpy (&id, zmq_msg_data (&event.frames[0]), sizeof id);
            if (id == ZMQ_EVENT_ACCEPTED)
                self->accepted++;
            else if (id == ZMQ_EVENT_DISCONNECTED)
                self->disconnected++;
            else
                self->handshake_failed++;
        }
        dp_wire_close (&event);
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
        self->fds_ready = true;
    }
    int nfds = 0;
    fds[nfds++] = (struct pollfd){self->router_fd, POLLIN, 0};
    if (self->monitor_fd >= 0)
        fds[nfds++] = (struct pollfd){self->monitor_fd, POLLIN, 0};
    return nfds;
}

int
dp_broker_wait_ms (dp_broker_t *self)
{
    assert (self);
    if (dp_wire_readable (self->handle))
        return 0;
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
    if (nfds > 1 && fds[1].revents)
        s_on_monitor (self);
    dp_wire_msg_t in;
    for (int i = 0; i < DRAIN_MAX; i++) {
        if (dp_wire_recv (self->handle, &in, ZMQ_DONTWAIT) != 0)
            break;
        s_handle (self, &in);
        dp_wire_close (&in);
    }
    if (self->dispatch_needed && self->queued > 0)
        s_dispatch (self);
    /*  Each dirty session gets one try; those that could not be sent to
        (slow, or detached) stay dirty for the next round. */
    for (size_t i = zlistx_size (self->dirty); i > 0; i--) {
        client_t *client = (client_t *)zlistx_first (self->dirty);
        s_client_flush (self, client);
        if (client->dirty)
            zlistx_move_end (self->dirty, client->dirty);
    }
    int64_t queue_deadline = dp_queues_next_deadline (self->queues);
    if (dp_now_ms () - self->last_tick >= TICK_MS)
        s_tick (self);
    else if (queue_deadline >= 0 && dp_now_ms () >= queue_deadline)
        dp_queues_tick (self->queues, dp_now_ms ()); /* a queue wait ends between ticks */
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

/*  dp_broker_int.h - what the broker's source files share, and nobody else.

    The broker engine (dp_broker.h) is four files around one struct: the
    loop, command handlers and life cycle (dp_broker.c), tasks and dispatch
    (dp_broker_dispatch.c), fair share between tenants (dp_broker_fair.c),
    peers, workers and client sessions (dp_broker_peers.c), the STATUS
    reply (dp_broker_status.c) and the journal (dp_broker_journal.c);
    detached batches are a module of their own (dp_batches.h) that reaches
    into these records; its
    connections are a table of their own (dp_conns.h). This
    header defines dp_broker_t and its records, and declares the functions
    one of those files calls in another. It is private to broker/: nothing
    outside includes it.

    Every function here runs on the thread that drives the broker (see
    dp_broker.h), which owns every record below; none blocks, and none is
    thread-safe. Failures of the world (out of memory, a peer that cannot
    be sent to) are handled where they happen and said below; a broken
    invariant is an assert. The functions have hidden visibility: they are
    not part of libdpool.so's interface.
*/
#ifndef DP_BROKER_INT_H_INCLUDED
#define DP_BROKER_INT_H_INCLUDED

#include "dp_batches.h"
#include "dp_broker.h"

#include "dp_conns.h"
#include "dp_idmap.h"
#include "dp_journal.h"
#include "dp_keys.h"
#include "dp_metrics.h"
#include "dp_proto.h"
#include "dp_queues.h"
#include "dp_slab.h"
#include "dp_taskq.h"
#include "dp_wire.h"

#include <czmq.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_RID              256 /* ZeroMQ routing ids are at most 255 bytes */
#define TENANT_KEY_SIZE      48  /* a session's hex id, or a CURVE key's Z85 text, and a NUL */
#define FLOW_NONE            UINT32_MAX
#define RESULT_OVERHEAD      24   /* bytes of a RESULT entry besides its value */
#define DP_BROKER_STATUS_MAX 1000 /* entries of one list in status */

typedef struct _client_t client_t;
typedef struct _worker_t worker_t;
typedef struct _fnq_t fnq_t;
typedef struct _tenant_t tenant_t;
typedef struct _flow_t flow_t;
typedef struct _jgroup_t jgroup_t;     /* tasks journaled in one record (dp_broker_journal.c) */
typedef struct _jsession_t jsession_t; /* a session's journal state (dp_broker_journal.c) */
typedef struct _jstash_t jstash_t;     /* what a replay keeps between records */

typedef enum { PEER_NEW = 0, PEER_CLIENT, PEER_WORKER, PEER_LANE, PEER_WLANE } peer_kind_t;

/*  Anyone connected who has registered: a client (its session's main
    connection), a lane of a session (PROTOCOL.md 5.6), a worker, or a
    worker's lane (PROTOCOL.md 5.7). */
typedef struct {
    uint8_t rid[MAX_RID];
    size_t rid_size;
    char key[2 * MAX_RID + 1]; /* hex of rid, the table key */
    peer_kind_t kind;
    client_t *client;  /* PEER_CLIENT: its session */
    client_t *lane_of; /* PEER_LANE: its session, whose lanes[lane - 1] it is */
    uint32_t lane;
    worker_t *worker;
    worker_t *lane_worker; /* PEER_WLANE: the worker whose lane it is */
    int64_t last_recv;
    int64_t last_send;
    char user[DP_CURVE_KEY + 1]; /* with CURVE: its key (Z85); "" without */
} peer_t;

/*  What the sessions of one key hold, against its quotas (with a key
    configuration; without one each session is its own account). */
typedef struct {
    char user[DP_CURVE_KEY + 1];
    size_t tasks;    /* tasks held, queued or running */
    size_t bytes;    /* bytes of their arguments */
    size_t sessions; /* sessions that count here */
} account_t;

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
    flow_t *flow;         /* its function and tenant, which it keeps alive */
    uint64_t seq;
    uint64_t ref; /* this attempt's reference while running */
    uint32_t timeout_ms;
    uint32_t calls;   /* 1, or the calls in a chunk */
    uint32_t cost_us; /* run time charged to its worker while it holds it */
    uint32_t args_size;
    uint32_t stamp_ms; /* with metrics: when last queued, then when dispatched (ms, wraps) */
    int16_t retries;   /* -1 to DP_MAX_RETRIES */
    uint16_t deaths;   /* workers that died running it */
    uint8_t flags;
    uint8_t lane;   /* the lane its result goes to (the last that submitted it); 0: main */
    uint8_t parked; /* queued in its session's parked queue, not its function's */
    uint8_t framed; /* args is the zmq_msg_t of the payload frame they came in */
    /*  With a journal, a task journaled with others of its session: its
        group (broker->jgroups) and place in it (dp_broker_journal.c); 0:
        alone, or not journaled. */
    uint32_t jslot;
    /*  args_size bytes of arguments, or (framed) a zmq_msg_t holding them,
        aligned for the zmq_msg_t. */
    _Alignas(zmq_msg_t) uint8_t args[];
} task_t;

_Static_assert(offsetof (task_t, args) % _Alignof(zmq_msg_t) == 0,
               "a framed task's zmq_msg_t is aligned");

/*  The payload frame a framed task's arguments are held in. */
static inline zmq_msg_t *
dp_broker_task_frame (task_t *task)
{
    return task->framed ? (zmq_msg_t *)(void *)task->args : NULL;
}

/*  A task's arguments (args_size bytes), wherever they are held: in its
    record, or in the payload frame they came in (PROTOCOL.md 3). */
static inline const uint8_t *
dp_broker_task_args (task_t *task)
{
    return task->framed ? (const uint8_t *)zmq_msg_data (dp_broker_task_frame (task)) : task->args;
}

/*  The bytes of a task's record, for dp_slab_free. */
static inline size_t
dp_broker_task_record (const task_t *task)
{
    return offsetof (task_t, args) + (task->framed ? sizeof (zmq_msg_t) : task->args_size);
}

_Static_assert(DP_MAX_LANES <= UINT8_MAX, "lane numbers fit task_t.lane");

_Static_assert(DP_TASK_FLAGS <= UINT8_MAX, "task flags fit task_t.flags");
_Static_assert(DP_MAX_RETRIES <= INT16_MAX, "retries fit task_t.retries");

/*  The queue of one function name: a flow per tenant with tasks queued
    for it, in a heap by the tenants' virtual time (dp_broker_fair.c). */
struct _fnq_t {
    char *name;
    flow_t **heap; /* flows with tasks queued whose tenant may run more */
    uint32_t nheap;
    uint32_t heap_cap;
    size_t queued;           /* tasks queued in its flows */
    size_t nflows;           /* flows alive: tasks of theirs are queued or running */
    size_t nworkers;         /* workers offering it */
    int64_t unoffered_since; /* when tasks began waiting with nobody offering it */
    int64_t nofunc_at;       /* a task last failed for want of a worker; 0: not since
                                one offered it. While set, its tasks fail at once */
    uint32_t pace_us;        /* run time of one call, a moving average; 0: unknown */
    dp_metrics_fn_t *stats;  /* its series in broker->metrics; NULL without metrics */
    flow_t *wait_head;       /* flows of tenants with nothing running, oldest waiting first */
    flow_t *wait_tail;
};

/*  The unit of fair share (docs/PROTOCOL.md, dispatch): a client session,
    or with CURVE the client's key, which all its sessions share. Workers'
    time goes to tenants in proportion to their weights; a tenant's tasks
    run in their own order (priority, then arrival). Alive while a session
    or a task (a flow) names it. */
struct _tenant_t {
    char key[TENANT_KEY_SIZE];      /* the session's hex id, or the CURVE key's text */
    char name[DP_KEY_NAME_MAX + 1]; /* its key's name, or its session's */
    bool keyed;                     /* a CURVE key's, not one session's */
    uint32_t weight;                /* its share against others' (1 unless configured) */
    uint64_t max_running;           /* its key's quota of tasks running; 0: the option's */
    bool blocked;                   /* at its quota of tasks running: its flows wait */
    bool fresh;                     /* back from idle, no task started since: urgent */
    uint64_t vtime;                 /* virtual time: run time charged, over its weight */
    uint64_t refund_us;             /* run time charged beyond what its tasks took */
    size_t queued;                  /* tasks queued in its flows */
    size_t running;                 /* tasks of its flows that workers hold */
    size_t held_tasks;              /* tasks its sessions hold, queued or running */
    size_t held_bytes;              /* bytes of their arguments */
    uint64_t dispatched;            /* tasks dispatched, over its life */
    uint64_t charged_us;            /* run time its tasks took (as charged), over its life */
    uint64_t recent_us[2];          /* of that, in this share period and the one before */
    int64_t recent_period;          /* the period recent_us[0] counts */
    size_t sessions;                /* sessions whose tenant it is */
    zhashx_t *flows;                /* function name -> flow_t, one per function it uses */
    flow_t *last;                   /* the flow last looked up (a map's tasks share one) */
};

/*  The tasks of one tenant for one function: queued by priority, then
    arrival. Freed when no task names it. */
struct _flow_t {
    fnq_t *fnq;
    tenant_t *tenant;
    dp_taskq_t queue;
    uint64_t key;   /* its tenant's vtime when last placed in fnq's heap */
    uint32_t index; /* where it sits in fnq's heap, or FLOW_NONE */
    size_t tasks;   /* tasks that name it, queued or running */
    /*  In fnq's list of waiting flows (it has tasks queued, its tenant is
        fresh): its next task is urgent (dp_broker_fair_urgent). */
    bool waiting;
    flow_t *wait_prev;
    flow_t *wait_next;
};

/*  A client session. */
struct _client_t {
    tenant_t *tenant; /* whose share its tasks take */
    uint8_t session[DP_SESSION_SIZE];
    char key[2 * DP_SESSION_SIZE + 1];
    char name[DP_MAX_NAME + 1];
    peer_t *peer;                /* NULL while detached */
    int64_t last_seen;           /* for expiry while detached */
    dp_idmap_t *tasks;           /* seq -> task_t, queued or running */
    dp_writer_t out;             /* RESULT entries not yet sent */
    zlistx_t *sealed;            /* full RESULT bodies not yet sent (sealed_t), oldest first */
    bool out_full;               /* out holds a large value alone: seal it before the next */
    void *dirty;                 /* handle in broker->dirty while out or sealed has entries */
    peer_t *lanes[DP_MAX_LANES]; /* the session's lanes; NULL where none */
    size_t sealed_results;       /* entries in sealed */
    size_t sealed_bytes;         /* bytes in sealed */
    /*  Backpressure: while the results held (out and sealed) are at the
        broker's bound, the session is stalled and its queued tasks wait
        here, out of their functions' queues, so that none is dispatched. */
    bool stalled;
    dp_taskq_t parked;
    int64_t drained; /* when it last took a RESULT, or was stalled */
    /*  Quotas (dp_broker_auth.c): what it holds, and its key's account. */
    size_t held_tasks;
    size_t held_args;
    account_t *account; /* NULL without a key configuration */
    /*  A batch's own (dp_batches.h), in no session table; else NULL. */
    dp_batch_t *batch;
    /*  Entries put in out over its life, and sent: the journal numbers a
        session's unsent entries out_sent to out_next - 1. */
    uint64_t out_next;
    uint64_t out_sent;
    jsession_t *journal; /* with a journal: what this turn adds to it; NULL until then */
};

/*  A worker: a peer that sent READY, owned by broker->workers. */
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
    void *ready;    /* handle in broker->ready while it has free credit */
    uint64_t token; /* names this registration to an ATTACH; never 0 */
    peer_t *lane;   /* its lane (PEER_WLANE), which gets its DISPATCH; NULL if none */
    /*  Its round trip, so that the work queued at it covers the time a
        refill takes to reach it (a slow link): learned from the first job
        of each DISPATCH sent while it held none (dp_broker_rtt_learn). */
    uint64_t probe_ref; /* that job's ref; 0: none out */
    int64_t probe_us;   /* when it was sent (monotonic µs) */
    uint32_t rtt_us;    /* the least sample of a window; 0 until the first */
    int64_t rtt_at;     /* when that sample was taken (monotonic µs); 0: none */
};

/*  Counters beyond the malformed-message reasons of dp_reason_t; status
    names them (dp_broker_status.c) in this order. */
enum {
    DROP_ROLE = DP_EREASON_COUNT_,
    DROP_UNKNOWN_REF,
    DROP_UNKNOWN_PEER,
    DROP_SESSION_STOLEN,
    DROP_UNKNOWN_TOKEN,
    DROP_HELD_FULL,
    DROP_COUNT_
};

/*  Refusals of the key configuration, counted in status ("refused"). */
enum {
    REFUSED_SUBMIT = 0, /* SUBMIT without the submit right (per task) */
    REFUSED_WORKER,     /* READY or ATTACH without the worker right, or a function not allowed */
    REFUSED_QUEUE,      /* a queue command without the queue right */
    REFUSED_REMOVED,    /* a message from a key no longer in the configuration */
    REFUSED_QUOTA,      /* a task past its session's or key's quota */
    REFUSED_COUNT_
};

/*  The broker: every record above is reached from here. */
struct _dp_broker_t {
    char *name;
    int heartbeat_ms;
    int expiry_ms;
    size_t max_queue;
    size_t max_queue_bytes;  /* bound on task_bytes */
    size_t max_held_results; /* per session */
    size_t max_held_bytes;   /* per session */
    size_t max_sessions;
    bool trim_memory;
    int nofunc_grace_ms;
    /*  The clock (dp_now_ms) when this round of dp_broker_work began: what
        per-task bookkeeping reads, for a clock read per task cost a tenth
        of the broker's time on a flood of no-ops. */
    int64_t round_ms;
    void (*on_worker) (void *arg, const char *name); /* dp_broker_config_t's */
    void *on_worker_arg;
    zsock_t *router;
    void *handle;     /* router's libzmq socket */
    zsock_t *monitor; /* the router's connection events */
    zsock_t *zap;     /* CURVE: the ZAP handler's REP, which admits client keys */
    int zap_fd;
    dp_keys_t *keys;                  /* the key configuration; NULL: every key has every right */
    char *keys_path;                  /* where it is read from, again on reload */
    const dp_key_t *from;             /* the key of the message being handled; NULL: all rights */
    char from_user[DP_CURVE_KEY + 1]; /* and its Z85 key, "" without CURVE */
    volatile sig_atomic_t reload_pending;
    zhashx_t *accounts; /* user -> account_t, with a key configuration */
    size_t max_queued_per_client;
    size_t max_queued_bytes_per_client;
    uint64_t refused[REFUSED_COUNT_];
    uint64_t reloads;
    bool fds_ready; /* router_fd and monitor_fd are known */
    int router_fd;
    int monitor_fd;
    dp_conns_t *conns; /* its connections, from the monitor's events */
    /*  Tokens of workers whose connection closed, declared dead once the
        ROUTER holds nothing more from them (dp_broker_work). */
    uint64_t *gone;
    size_t ngone;
    size_t gone_cap;
    size_t nofunc_fnqs; /* fnqs with nofunc_at set (at most DP_MAX_NOFUNC_FNQS) */
    char *endpoints;
    zhashx_t *peers;                 /* key -> peer_t */
    zhashx_t *sessions;              /* key -> client_t */
    zhashx_t *fnqs;                  /* name -> fnq_t */
    zlistx_t *workers;               /* worker_t, owned */
    zlistx_t *ready;                 /* worker_t with free credit, in turn order */
    zlistx_t *dirty;                 /* client_t with results to send */
    zhashx_t *warned;                /* peer keys already logged as misbehaving */
    dp_writer_t w;                   /* scratch body */
    dp_slab_t *slab;                 /* task records */
    task_t **batch;                  /* tasks of the DISPATCH being built */
    zmq_msg_t frames[DP_MAX_FRAMES]; /* its payload frames: framed tasks' args, shared */
    size_t batch_cap;
    uint64_t next_ref;
    uint64_t next_order;
    size_t queued;
    size_t inflight;
    size_t task_bytes;         /* bytes of arguments of every task record alive */
    size_t freed_bytes;        /* bytes of tasks and results let go since the last trim */
    size_t freed_at_tick;      /* freed_bytes at the last tick */
    uint64_t trims;            /* times freed memory went back to the system */
    uint64_t stalls;           /* times a session's held results reached the bound */
    uint64_t sessions_refused; /* HELLOs refused at max_sessions */
    uint64_t done;
    uint64_t failed;
    size_t lanes;             /* lanes attached, over every session */
    uint64_t lane_results;    /* results sent straight to a lane */
    size_t worker_lanes;      /* workers' lanes attached */
    uint64_t lane_dispatches; /* DISPATCH messages sent on a worker's lane */
    uint64_t dropped[DROP_COUNT_];
    int64_t started;
    int64_t last_tick;
    int64_t next_beat; /* when heartbeats next go out, to every quiet peer at once */
    uint64_t beats;    /* beats so far: idle workers get every DP_IDLE_FACTOR-th */
    bool dispatch_needed;
    bool urgent_needed; /* a flow began to wait: its urgent task goes before the next message */
    /*  Fair share (dp_broker_fair.c). */
    zhashx_t *tenants;     /* key -> tenant_t, owned */
    zhashx_t *weights;     /* tenant key -> weight (a uint32_t in a pointer) */
    size_t max_running;    /* tasks of one tenant running at once; 0: no bound */
    uint64_t vtime;        /* virtual time of the tenant served last */
    uint64_t recent_us[2]; /* run time of every tenant, in this share period and the last */
    int64_t recent_period; /* the period recent_us[0] counts */
    size_t waiting;        /* flows waiting, in every fnq's list */
    /*  The named queues (dp_queues.h). */
    dp_queues_t *queues;
    dp_metrics_t *metrics; /* counters for --metrics-bind (dp_broker_metrics.c); NULL: none */
    /*  Detached batches (dp_batches.h). */
    dp_batches_t *batches;
    /*  The journal (dp_broker_journal.c); NULL without one. */
    dp_journal_t *journal;
    zlistx_t *held;     /* replies waiting for the turn's commit */
    jgroup_t **jgroups; /* the groups, by index (task_t.jslot); [0] unused */
    uint32_t njgroups;  /* indexes used so far */
    uint32_t jgroups_cap;
    uint32_t *jfree; /* indexes of groups freed, for reuse */
    uint32_t njfree;
    jgroup_t *jdirty;    /* groups whose state changed this turn */
    client_t **jclients; /* sessions with tasks or results to journal this turn */
    size_t njclients;
    size_t jclients_cap;
    jstash_t *jstash; /* while replaying */
};

#pragma GCC visibility push(hidden)

/*  ---------------------------------------------------------------------------
    Peers, workers and client sessions (dp_broker_peers.c).
*/

/*  Writes size bytes as lower-case hex into out, which holds 2 * size + 1
    characters (a NUL ends it). */
void
dp_broker_hex (const uint8_t *bytes, size_t size, char *out);

/*  Copies span into out as a string, cut to cap - 1 bytes. */
void
dp_broker_span_copy (dp_span_t span, char *out, size_t cap);

/*  Logs once per peer key that it misbehaved, so a flood costs one line. */
void
dp_broker_warn_once (dp_broker_t *self, const char *key, const char *what);

/*  Sends a body to a peer without blocking; returns 0, or -1 with errno
    (EHOSTUNREACH: the peer is gone; EAGAIN: it is slow). The body stays
    the caller's. */
int
dp_broker_send (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, const dp_writer_t *body);

/*  dp_broker_send for a body sent once: a large one goes without a copy,
    and the writer is left empty (dp_wire_send_take). */
int
dp_broker_send_take (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body);

/*  dp_broker_send_take followed by payload frames (dp_wire_send_frames):
    on 0 they are sent, on -1 the caller still closes them. */
int
dp_broker_send_frames (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body,
                       zmq_msg_t *frames, size_t nframes);

/*  The registered peer with this routing id, or NULL. */
peer_t *
dp_broker_peer_lookup (dp_broker_t *self, const void *rid, size_t rid_size);

/*  Registers a peer with no role yet, owned by the peer table. Returns
    NULL if out of memory. rid_size must be under MAX_RID. */
peer_t *
dp_broker_peer_new (dp_broker_t *self, const void *rid, size_t rid_size);

/*  Forgets a peer entry and frees it; its client or worker must be
    detached already. What it waited for at a queue is dropped, what it
    was lent goes back. */
void
dp_broker_peer_delete (dp_broker_t *self, peer_t *peer);

/*  The peer table's destructor: frees one peer_t. */
void
dp_broker_peer_free (void **item);

/*  Puts worker in the ready list if it has free credit and is not there. */
void
dp_broker_ready_add (dp_broker_t *self, worker_t *worker);

/*  Takes worker out of the ready list, if it is there. */
void
dp_broker_ready_remove (dp_broker_t *self, worker_t *worker);

/*  A dp_idmap_foreach callback: appends each value to the zlistx_t arg, so
    that the map can be changed while the list is walked. */
void
dp_broker_collect_task (uint64_t id, void *value, void *arg);

/*  Forgets the progress of job ref, or of every job when ref is 0. */
void
dp_broker_progress_forget (worker_t *worker, uint64_t ref);

/*  The worker registered with token is gone: its connection closed (the
    process died, or its host cut it). Removed as if expired, its jobs
    requeued counting a death, and its peer deleted. Nothing if no worker
    holds token (it left or registered again meanwhile). */
void
dp_broker_worker_gone (dp_broker_t *self, uint64_t token);

/*  Removes and frees a worker: every job it held is requeued (counting a
    death if it died), its lane is deleted, and its peer is left with no
    role (not deleted). */
void
dp_broker_worker_remove (dp_broker_t *self, worker_t *worker, bool died);

/*  The worker whose registration token is token, or NULL. */
worker_t *
dp_broker_worker_by_token (dp_broker_t *self, uint64_t token);

/*  Registers peer (new, or reset) as worker's lane (PROTOCOL.md 5.7), in
    place of any other peer there, which is deleted. */
void
dp_broker_wlane_attach (dp_broker_t *self, worker_t *worker, peer_t *peer);

/*  Takes a worker's lane off its worker, which is dispatched to on its
    main connection from then on, and deletes the peer. */
void
dp_broker_wlane_drop (dp_broker_t *self, peer_t *peer);

/*  Makes a session that no table holds (a batch's), whose tasks take the
    share of the tenant of tenant_key (made if there is none, named
    tenant_name). Returns NULL if out of memory. */
client_t *
dp_broker_client_make (dp_broker_t *self, const uint8_t *session, dp_span_t name,
                       const char *tenant_key, const char *tenant_name);

/*  Makes a detached session, owned by the session table. Returns NULL if
    out of memory. */
client_t *
dp_broker_client_new (dp_broker_t *self, const uint8_t *session, dp_span_t name);

/*  Forgets and frees a session and deletes its peer, if attached: queued
    tasks are dropped, running ones are orphaned (their results will be
    dropped), held results are discarded. */
void
dp_broker_client_forget (dp_broker_t *self, client_t *client);

/*  Readies a session's RESULT body for an entry of about upcoming bytes:
    a body that would pass RESULT_MAX_BYTES is sealed and queued first, so
    that no message exceeds what a client accepts (ZMQ_MAXMSGSIZE), however
    many results pile up while it is away. A value of RESULT_ALONE_BYTES or
    more gets a body of its own (PROTOCOL.md, RESULT): the client's ZeroMQ
    then receives it into a buffer of its size, which it reuses, not into a
    fresh one of megabytes shared with many others. Marks the session
    dirty, and stalls it if its held results reached the bound. If out of
    memory, the results of the body it seals are lost. */
void
dp_broker_client_out (dp_broker_t *self, client_t *client, size_t upcoming);

/*  Queues the successful result seq of client whose value is a payload
    frame, in a RESULT of its own that carries a share of frame (no copy),
    after what the session holds. If out of memory, the result is lost. */
void
dp_broker_client_out_frame (dp_broker_t *self, client_t *client, uint64_t seq, zmq_msg_t *frame);

/*  Results held for a session: entries and bytes (not yet sent, in out
    and sealed). */
size_t
dp_broker_held_results (const client_t *client);
size_t
dp_broker_held_bytes (const client_t *client);

/*  True once a stalled session holds twice its bound of results and has
    taken none for an expiry: it does not read them at all, so its further
    tasks are dropped (counted), not answered. */
bool
dp_broker_client_flooded (const dp_broker_t *self, const client_t *client);

/*  Backpressure: stalls a session whose held results reached the bound
    (its queued tasks are parked, so none is dispatched) and releases one
    whose held results fell under half of it (its tasks are queued again,
    in their order). */
void
dp_broker_client_pressure (dp_broker_t *self, client_t *client);

/*  Registers peer (new, or reset) as lane number lane of client's session,
    in place of any other peer there, which is deleted. */
void
dp_broker_lane_attach (dp_broker_t *self, client_t *client, peer_t *peer, uint32_t lane);

/*  Takes a lane peer off its session and deletes it. */
void
dp_broker_lane_drop (dp_broker_t *self, peer_t *peer);

/*  Sends the result of a task that came on a lane to that lane at once, in
    a RESULT of its own. Returns 0, or -1 if the task has no lane or the
    lane is gone or slow (the result then goes the session's way). value
    NULL: the message is the code's description. */
int
dp_broker_lane_result (dp_broker_t *self, const task_t *task, int32_t code, const void *value,
                       size_t size);

/*  dp_broker_lane_result of a successful task whose value is a payload
    frame, sent on as one (shared, not copied). */
int
dp_broker_lane_result_frame (dp_broker_t *self, const task_t *task, zmq_msg_t *frame);

/*  Sends the client its pending results, if it is attached, and takes it
    off the dirty list once all went. A gone peer detaches the session (it
    may come back with HELLO before it expires) and is deleted; a slow one
    keeps them for the next try. */
void
dp_broker_client_flush (dp_broker_t *self, client_t *client);

/*  A step of the tick, when the loop itself stalled (a huge burst, a
    stopped process, a debugger): peers' messages may be waiting unread,
    so the silence is the broker's, not theirs, and stall ms are not held
    against any peer, session or queue waiter. */
void
dp_broker_forgive_stall (dp_broker_t *self, int64_t stall);

/*  A step of the tick: heartbeats out, and expiry of the silent.
    Heartbeats go out on a common beat, to every peer that has not heard
    from the broker for half an interval, and peers answer at once: a
    thousand idle workers cost the broker a burst, handled in a few
    wake-ups, not two thousand wake-ups spread over the interval. Idle
    workers get only every DP_IDLE_FACTOR-th beat, and as long again to
    answer. A silent worker's jobs are requeued (counting a death); a
    silent client's session is forgotten. */
void
dp_broker_beat_peers (dp_broker_t *self, int64_t now);

/*  A step of the tick: forgets the sessions that have been detached for
    an expiry. */
void
dp_broker_expire_sessions (dp_broker_t *self, int64_t now);

/*  ---------------------------------------------------------------------------
    Tasks and dispatch (dp_broker_dispatch.c).
*/

/*  The queue of function name, made (owned by the function table) if
    there is none. Returns NULL if out of memory. */
fnq_t *
dp_broker_fnq_get (dp_broker_t *self, const char *name);

/*  The function table's destructor: frees one fnq_t (not its tasks). */
void
dp_broker_fnq_destroy (void **item);

/*  Queues a task (in no queue and no job table) in its function's queue
    and asks for a dispatch; if out of memory, ends it with ENOMEM. */
void
dp_broker_task_queue (dp_broker_t *self, task_t *task);

/*  Takes a queued task out of its queue (its function's, or its stalled
    session's parked queue). */
void
dp_broker_task_unqueue (dp_broker_t *self, task_t *task);

/*  Enters a new task of client (from lane, 0: none): in its table, against
    its quotas, and queued; its arguments in the payload frame of wire that
    in names, if it names one (wire may be NULL if not). Returns 0, or -1
    if out of memory (nothing entered). */
int
dp_broker_task_enter (dp_broker_t *self, client_t *client, uint32_t lane, const dp_task_t *in,
                      dp_wire_msg_t *wire);

/*  Frees a task that is in no queue and no job table. */
void
dp_broker_task_free (dp_broker_t *self, task_t *task);

/*  Ends a task (in no queue and no job table): its result goes to its
    session (if it still has one) and the task is freed. value is the
    packed result when code is 0, the packed str message otherwise; NULL
    packs the text of the code. */
void
dp_broker_task_finish (dp_broker_t *self, task_t *task, int32_t code, const void *value,
                       size_t size);

/*  dp_broker_task_finish of a successful task whose value came in a
    payload frame: the client gets a share of the frame, not a copy. */
void
dp_broker_task_finish_frame (dp_broker_t *self, task_t *task, zmq_msg_t *frame);

/*  Ends a task (in no queue and no job table) with an error code and a
    message, and frees it. */
void
dp_broker_task_fail (dp_broker_t *self, task_t *task, int32_t code, const char *message);

/*  The retry limit a task asked for: -1 never, 0 the default, else n. */
uint32_t
dp_broker_task_retries (const task_t *task);

/*  A worker holding task (taken out of its job table) is gone. If it died
    (not a clean BYE), the task counts a death and fails once it has died
    more than its retries allow; else it is queued again, or freed if its
    session is gone. */
void
dp_broker_task_orphaned (dp_broker_t *self, task_t *task, worker_t *worker, bool died);

/*  Learns a function's pace from a finished task's run time. */
void
dp_broker_pace_learn (task_t *task, uint32_t run_us);

/*  Learns worker's round trip from the DONE of its probe job ref, which ran
    run_us: the time since it was sent, less run_us; the worker's round
    trip is the least such sample of the last 10 s. Does nothing for any
    other ref. */
void
dp_broker_rtt_learn (worker_t *worker, uint64_t ref, uint32_t run_us);

/*  Fills every worker with free credit from the queues of the functions
    it offers, best task first, one DISPATCH per worker. A worker that
    cannot be sent to is removed (gone) or left out of the ready list
    (slow), its tasks queued again. */
void
dp_broker_dispatch (dp_broker_t *self);

/*  Gives worker (which just said READY) what dp_broker_dispatch would give
    it, now. worker may be gone when it returns (it could not be sent to). */
void
dp_broker_dispatch_one (dp_broker_t *self, worker_t *worker);

/*  Gives the urgent tasks (dp_broker_fair_urgent) to ready workers with
    credit left, each alone in a DISPATCH, at once: called between two
    messages when urgent_needed is set, so that a task of a tenant back
    from idle does not wait for the rest of the messages of the loop's
    turn. */
void
dp_broker_dispatch_urgent (dp_broker_t *self);

/*  A step of the tick: tasks for functions nobody offers fail (ENOFUNC)
    after the grace period, once there are workers at all, and the
    function is remembered (DP_NOFUNC_MEMORY_MS after its last failed task)
    so that its further tasks fail as they come, with no grace of their
    own; other empty unoffered queues are freed. */
void
dp_broker_fail_unoffered (dp_broker_t *self, int64_t now);

/*  A worker that registers offers fnq: counts it, and the function's
    tasks wait for workers again rather than failing at once. */
void
dp_broker_fnq_offered (dp_broker_t *self, fnq_t *fnq);

/*  ---------------------------------------------------------------------------
    Keys, rights and quotas (dp_broker_auth.c).
*/

/*  Sets up CURVE: the broker's secret key, the key configuration (or
    none: any key), and the ZAP handler's socket. Returns 0 or -1, having
    logged why. */
int
dp_broker_auth_setup (dp_broker_t *self, const dp_broker_config_t *config);

/*  Frees what dp_broker_auth_setup made. */
void
dp_broker_auth_destroy (dp_broker_t *self);

/*  Answers the ZAP requests waiting: a key in the configuration (or any,
    without one) is admitted, with its Z85 text as the connection's
    User-Id. */
void
dp_broker_on_zap (dp_broker_t *self);

/*  Finds the key a message came with (self->from, self->from_user).
    Returns false if it is no longer admitted: the message is counted and
    answered ERROR [EDENIED], and its peer, if any, forgotten. */
bool
dp_broker_admit (dp_broker_t *self, const zmq_msg_t *frame, const zmq_msg_t *rid);

/*  True if the current message's key holds right; else counts the
    refusal (as which) and writes "key 'name' may not ... (roles: ...)"
    into message. */
bool
dp_broker_may (dp_broker_t *self, dp_right_t right, int which, char *message, size_t size);

/*  True if the current message's key is an administrator (or there is no
    key configuration). */
bool
dp_broker_is_admin (const dp_broker_t *self);

/*  A new task of args_size bytes past its session's or key's quota:
    writes the EREJECTED message naming the quota and returns true. */
bool
dp_broker_quota_refused (dp_broker_t *self, client_t *client, size_t args_size, char *message,
                         size_t size);

/*  A task enters, or leaves, its session's table: counted against its
    quotas. */
void
dp_broker_client_task_add (dp_broker_t *self, client_t *client, const task_t *task);
void
dp_broker_client_task_remove (dp_broker_t *self, client_t *client, task_t *task);

/*  A session starts counting against the current message's key, or stops
    (at its end: the tasks it held no longer count). */
void
dp_broker_client_account (dp_broker_t *self, client_t *client);
void
dp_broker_client_unaccount (dp_broker_t *self, client_t *client);

/*  Forgets a peer as at BYE, with no answer (its key was removed). */
void
dp_broker_peer_forget (dp_broker_t *self, peer_t *peer);

/*  For fair share (dp_broker_dispatch.c): the key entry of a session's
    account (NULL: no configuration, weight 1, no running quota). */
const dp_key_t *
dp_broker_client_key (const dp_broker_t *self, const client_t *client);

/*  Packs status's "sessions" list: each session (only the asker's own
    unless it is an administrator) with its key, what it holds and its
    quotas; and "refused", the counters above. */
void
dp_broker_pack_clients (dp_broker_t *self, void *packer, const peer_t *asker);

/*  ---------------------------------------------------------------------------
    Fair share between tenants (dp_broker_fair.c).
*/

/*  Sets up the tenant table and parses weights, "KEY=N[,KEY=N...]" (NULL:
    none). Returns 0, or -1 (logged) if weights is malformed or out of
    memory. */
int
dp_broker_fair_init (dp_broker_t *self, const char *weights);

/*  Frees the tenant table; every flow and session must be gone. */
void
dp_broker_fair_fini (dp_broker_t *self);

/*  The tenant of key (a session's hex id, or a CURVE key's Z85 text),
    made if there is none, with the weight and running quota configured for
    key and named name unless the key configuration names key; counts one
    more session of it. Returns NULL if out of memory. */
tenant_t *
dp_broker_tenant_get (dp_broker_t *self, const char *key, const char *name);

/*  The key configuration changed (a reload): every tenant takes its key's
    weight and running quota anew. */
void
dp_broker_fair_reconfigure (dp_broker_t *self);

/*  Packs status's "tenants" list: each tenant (only the asker's own unless
    it is an administrator) with its weight, its share of the workers'
    recent time, its tasks and its quotas' use. */
void
dp_broker_pack_tenants (dp_broker_t *self, void *packer, const peer_t *asker);

/*  A session of tenant is gone: the tenant is freed once no session and
    no task names it. */
void
dp_broker_tenant_release (dp_broker_t *self, tenant_t *tenant);

/*  The tenant whose share client's tasks take. */
tenant_t *
dp_broker_tenant_of (dp_broker_t *self, const client_t *client);

/*  The flow of client's tenant for fnq, made if there is none, with one
    more task naming it; a task keeps it until dp_broker_task_free.
    Returns NULL if out of memory. */
flow_t *
dp_broker_flow_get (dp_broker_t *self, client_t *client, fnq_t *fnq);

/*  Queues task in its flow, whose tenant joins the fnq's heap if it may
    run more. Returns 0, or -1 if out of memory (nothing changed). */
int
dp_broker_fair_push (dp_broker_t *self, task_t *task);

/*  Takes a queued task out of its flow. */
void
dp_broker_fair_remove (dp_broker_t *self, task_t *task);

/*  The next task of fnq by fair share: the best task of the tenant that
    is furthest behind in virtual time, among those under their running
    quota; NULL if none. It stays queued. */
task_t *
dp_broker_fair_peek (dp_broker_t *self, fnq_t *fnq);

/*  task, taken out of its queue, is now held by a worker that expects it
    to take cost_us: its tenant is charged, and blocked if at its quota of
    tasks running. */
void
dp_broker_fair_started (dp_broker_t *self, task_t *task, uint32_t cost_us);

/*  task is no longer held by a worker (done, or its worker gone); run_us
    is what it took if known (0: the charge stands). Its tenant may run
    another: unblocked below its quota. */
void
dp_broker_fair_stopped (dp_broker_t *self, task_t *task, uint32_t run_us);

/*  Takes every queued task of fnq out of its queue (those of blocked
    tenants too) and returns them in a list the caller destroys; NULL if
    out of memory (then some may stay queued). */
zlistx_t *
dp_broker_fair_unqueue_all (dp_broker_t *self, fnq_t *fnq);

/*  A task no longer names its flow (it is freed): the flow goes with the
    last. */
void
dp_broker_flow_put (dp_broker_t *self, flow_t *flow);

/*  The urgent task of fnq: the next task of the fresh tenant (back from
    idle, none of its tasks started since) that has waited longest with
    tasks of fnq queued; NULL if none. It
    stays queued. Dispatch sends it at once, marked urgent, to a worker
    with credit left, however much that worker holds, and the worker runs
    it before the jobs it holds (PROTOCOL.md 5.2): a newcomer's task waits
    for no other tenant's prefetched jobs. */
task_t *
dp_broker_fair_urgent (dp_broker_t *self, fnq_t *fnq);

/*  ---------------------------------------------------------------------------
    Metrics (dp_broker_metrics.c): one-line hooks where the broker counts
    things; each does nothing when the broker keeps no metrics.
*/

/*  fnq was made: it takes its function's series. */
void
dp_broker_metrics_fnq (dp_broker_t *self, fnq_t *fnq);

/*  A task was taken in from a client (before it is queued). */
void
dp_broker_metrics_submitted (dp_broker_t *self, task_t *task);

/*  A task enters its queue (submitted, retried or given back): its wait
    starts. */
void
dp_broker_metrics_queued (dp_broker_t *self, task_t *task);

/*  A task went to a worker: its wait ends and its run starts. */
void
dp_broker_metrics_dispatched (dp_broker_t *self, task_t *task);

/*  A worker returned a task, which ran run_us by its account (0: not
    said; the time since its dispatch counts). */
void
dp_broker_metrics_ran (dp_broker_t *self, task_t *task, uint32_t run_us);

/*  A task begins another attempt (its worker died, or its deadline passed
    and it asked to be retried). */
void
dp_broker_metrics_retried (dp_broker_t *self, task_t *task);

/*  A task ended with code (0: done) and size bytes of result or message. */
void
dp_broker_metrics_ended (dp_broker_t *self, task_t *task, int32_t code, size_t size);

/*  ---------------------------------------------------------------------------
    The journal (dp_broker_journal.c). Every call does nothing without one.
*/

/*  Opens the journal at path with sync (dp_journal_sync_t) and replays it:
    sessions, their results and tasks, the named queues. Returns 0, or -1
    having logged why (the broker must not start). */
int
dp_broker_journal_open (dp_broker_t *self, const char *path, int sync);

/*  Commits what is pending and closes the journal. */
void
dp_broker_journal_close (dp_broker_t *self);

/*  Frees the journal's tables, once every task is freed. */
void
dp_broker_journal_fini (dp_broker_t *self);

/*  A session was made, or is forgotten (with its tasks and results). */
void
dp_broker_journal_session (dp_broker_t *self, const client_t *client);
void
dp_broker_journal_session_gone (dp_broker_t *self, client_t *client);

/*  A task of a session was taken (journaled with the others of its
    session this turn, in one record), its attempts changed (it gets a
    record of its own), it started on a worker, stopped without counting
    an attempt, ended, or is freed. */
void
dp_broker_journal_task_new (dp_broker_t *self, task_t *task);
void
dp_broker_journal_task (dp_broker_t *self, task_t *task);
void
dp_broker_journal_run (dp_broker_t *self, task_t *task);
void
dp_broker_journal_stopped (dp_broker_t *self, task_t *task);
void
dp_broker_journal_task_gone (dp_broker_t *self, task_t *task);
void
dp_broker_journal_task_free (dp_broker_t *self, task_t *task);

/*  Adds a result (a packed value) or an error (a message) to client's
    RESULT batch, and journals it until it is sent. The caller readied the
    batch (dp_broker_client_out). */
void
dp_broker_client_add_result (dp_broker_t *self, client_t *client, uint64_t seq, int32_t code,
                             const void *value, size_t size);
void
dp_broker_client_add_error (dp_broker_t *self, client_t *client, uint64_t seq, int32_t code,
                            const char *message);

/*  Journals a result that goes to client in a payload frame of its own
    (dp_broker_client_out_frame). */
void
dp_broker_journal_result_framed (dp_broker_t *self, client_t *client, uint64_t seq,
                                 const void *value, size_t size);

/*  The oldest results entries of client's batches went out. */
void
dp_broker_journal_sent (dp_broker_t *self, client_t *client, size_t results);

/*  Sends a reply that acknowledges a write: at once without a journal,
    else after the turn's commit (the body is taken). Returns 0 or -1. */
int
dp_broker_send_held (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body);

/*  Ends the turn's transaction, then sends the replies held for it; if
    the commit failed, they are dropped. */
void
dp_broker_journal_commit (dp_broker_t *self);

/*  True once the journal failed: writes message, the refusal's text. */
bool
dp_broker_journal_refused (dp_broker_t *self, char *message, size_t size);

/*  ---------------------------------------------------------------------------
    Status (dp_broker_status.c).
*/

/*  Answers a STATUS from peer with a STATUS-REPLY: the broker's counters,
    its workers, the jobs they run and the named queues, each list cut at
    STATUS_MAX. Best effort: a peer that cannot take it now misses it. */
void
dp_broker_on_status (dp_broker_t *self, peer_t *peer, bool admin);

#pragma GCC visibility pop

#endif

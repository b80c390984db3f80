/*  dp_broker.h - the broker engine: task queue, worker registry, dispatch,
    heartbeats, result routing, named queues.

    One broker is one ROUTER socket (bound to one or more endpoints), a
    PAIR socket that reads the ROUTER's connection events, and, with CURVE,
    a ZAP handler's REP socket. It is driven by poll(2) on its descriptors, not
    by a zloop: dp_broker_run polls them itself, or another loop polls
    them beside its own and calls dp_broker_work after each poll. The
    thread that drives it owns every piece of its state; it never runs
    user code. The same engine runs as the dpool-broker program
    (dp_broker_run on the main thread) and inside an embedded pool
    (dp_broker_fds, dp_broker_wait_ms and dp_broker_work in the pool's
    actor loop). Its behaviour on the wire is docs/PROTOCOL.md.

    Threads: a broker is not thread-safe, and its sockets belong to the
    thread that makes it: that thread alone drives and destroys it (the
    dpool-broker program's main thread, or an embedded pool's actor
    thread, through the pool's extension, embedded/dp_embedded.c). With
    CURVE, its ZAP handler is a REP socket of the same thread, polled
    beside the ROUTER (dp_broker_auth.c). dp_broker_run blocks until interrupted; no other call
   waits for a peer.

    Errors: a peer's bad or unexpected message is counted (status's
    "dropped"), logged once per peer and, for most kinds, answered with
    ERROR; it never stops the broker.
*/
#ifndef DP_BROKER_H_INCLUDED
#define DP_BROKER_H_INCLUDED

#include <czmq.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_BROKER_MAX_BINDS         8
#define DP_DEFAULT_MAX_QUEUE        10000000      /* queued tasks before SUBMITs are rejected */
#define DP_DEFAULT_MAX_QUEUE_BYTES  (1UL << 30)   /* bytes of task arguments held, likewise */
#define DP_DEFAULT_MAX_HELD_RESULTS 1000000       /* results held for one session ... */
#define DP_DEFAULT_MAX_HELD_BYTES   (256UL << 20) /* ... or bytes of them: its tasks wait */
#define DP_DEFAULT_MAX_SESSIONS     100000        /* client sessions held, attached or not */
#define DP_BROKER_SNDHWM            256 /* messages ZeroMQ queues to one peer (ZMQ_SNDHWM) */
#define DP_BROKER_TRIM_BYTES        (32UL << 20) /* freed since the last trim: trim when idle */
#define DP_DEFAULT_NOFUNC_GRACE     3000 /* ms a task waits for a worker offering its function */
#define DP_DEFAULT_MAX_PEER_CONNS   1024 /* connections admitted from one IP address */
#define DP_BROKER_FD_RESERVE        128  /* descriptors kept free of connections (default bound) */
#define DP_NOFUNC_MEMORY_MS         60000 /* a function's tasks fail at once this long after one did */
#define DP_MAX_NOFUNC_FNQS          4096 /* functions remembered so, at most */

typedef struct _dp_broker_t dp_broker_t;

typedef struct {
    const char *binds[DP_BROKER_MAX_BINDS]; /* endpoints to bind; "tcp://x:*" picks a port */
    size_t nbinds;                          /* 0: DP_DEFAULT_ENDPOINT */
    const char *name;                       /* shown in WELCOME and status; NULL: host:pid */
    int heartbeat_ms;                       /* 0: DP_HEARTBEAT_MS */
    int expiry_ms;                          /* 0: DP_EXPIRY_MS; too short: 2.5 beats */
    size_t max_queue;                       /* 0: DP_DEFAULT_MAX_QUEUE */
    size_t max_queue_bytes;                 /* 0: DP_DEFAULT_MAX_QUEUE_BYTES */
    size_t max_held_results;                /* per session; 0: DP_DEFAULT_MAX_HELD_RESULTS */
    size_t max_held_bytes;                  /* per session; 0: DP_DEFAULT_MAX_HELD_BYTES */
    size_t max_sessions;                    /* 0: DP_DEFAULT_MAX_SESSIONS */
    bool trim_memory;     /* give freed memory back to the system after a burst (malloc_trim) */
    int64_t max_msg_size; /* bytes (ZMQ_MAXMSGSIZE); 0: DP_MAX_MSG_SIZE, its cap */
    int nofunc_grace_ms;  /* 0: default; -1: wait forever */
    const char *endpoint_file; /* if set, bound endpoints are written here */
    size_t queue_bytes;        /* bytes of queued values held; 0: DP_QUEUE_BYTES */
    /*  Detached batches (dp_batches.h); 0 takes each default. */
    uint32_t result_ttl_s;  /* DP_BATCH_RESULT_TTL_S */
    size_t max_batches;     /* per owner key: DP_MAX_BATCHES */
    size_t max_batch_tasks; /* DP_MAX_BATCH_TASKS */
    size_t max_batch_bytes; /* bytes of results held, every batch: DP_BATCH_BYTES */
    /*  Connections admitted in all (0: the open-file limit less
        DP_BROKER_FD_RESERVE) and from one IP address (0:
        DP_DEFAULT_MAX_PEER_CONNS); those beyond are refused. */
    size_t max_connections;
    size_t max_peer_connections;
    /*  CURVE (docs/PROTOCOL.md §8): the broker's secret key file makes every
        connection encrypted; curve_clients, a directory of the public keys
        allowed in (NULL: any client key). curve_secret_key: the secret
        key itself (40 Z85 characters, held in memory: an SPMD job's),
        instead of curve_secret's file. */
    const char *curve_secret;
    const char *curve_secret_key;
    const char *curve_clients;
    /*  With curve_secret: the key configuration (dp_keys.h, PROTOCOL.md
        8.1), a file of keys with their rights and quotas; takes the place
        of curve_clients. dp_broker_reload reads it (or curve_clients)
        again. */
    const char *curve_keys;
    /*  Quotas of a session (without a key configuration) or of a key with
        none of its own: tasks held (queued or running) and bytes of their
        arguments; 0: none. Beyond them a task ends EREJECTED. */
    size_t max_queued_per_client;
    size_t max_queued_bytes_per_client;
    /*  Fair share (docs/PROTOCOL.md, dispatch): weights of tenants,
        "KEY=N[,KEY=N...]" (a tenant's key: its CURVE key, or without CURVE
        its session id in hex; NULL: every tenant weighs 1), and the most
        tasks of one tenant running at once (0: no bound). */
    const char *weights;
    size_t max_running;
    /*  Keep the counters dp_broker_metrics renders (tasks per function,
        their wait and run times); off by default. */
    bool metrics;
    /*  The journal (PROTOCOL.md 6.1): a SQLite file that keeps sessions,
        tasks, results not yet sent and named queues across restarts;
        NULL: none, all in memory. journal_sync is a dp_journal_sync_t. */
    const char *journal;
    int journal_sync;
    /*  Told the name of each worker the broker registers (its READY
        accepted), on the broker's thread; NULL: nobody. An SPMD job's rank
        0 learns by it which ranks have joined (cluster/dp_spmd.c). */
    void (*on_worker) (void *arg, const char *name);
    void *on_worker_arg;
} dp_broker_config_t;

/*  Fills config with the defaults above. */
void
dp_broker_config_init (dp_broker_config_t *config);

/*  Creates a broker and binds its endpoints. Returns NULL if an endpoint
    cannot be bound or CURVE cannot be set up (having logged why), or if
    out of memory. The config is read during the call only. An
    endpoint_file that cannot be written is logged, not an error. */
dp_broker_t *
dp_broker_new (const dp_broker_config_t *config);

/*  Stops the broker: says BYE to every peer (without waiting for it to
    go out), frees everything and nulls *self_p; harmless on NULL. */
void
dp_broker_destroy (dp_broker_t **self_p);

/*  The endpoints actually bound (a "*" port resolved), one per line.
    Borrowed: valid until the broker is destroyed. */
const char *
dp_broker_endpoints (dp_broker_t *self);

/*  Driving the broker from another thread's loop (an embedded pool's
    actor does): dp_broker_fds fills fds with the descriptors to poll for
    POLLIN (at most DP_BROKER_MAX_FDS; returns how many), dp_broker_wait_ms
    says how long the poll may sleep (0 when messages wait), and
    dp_broker_work does a round of work after the poll, given the same fds
    with their revents (zeroed if the poll failed or timed out): it
    handles the messages waiting (up to a bound), dispatches tasks,
    sends the results batched, and runs the timers that are due.
    dp_broker_run is these three in a loop. The descriptors stay the same
    for the broker's life. */
#define DP_BROKER_MAX_FDS 3
int
dp_broker_fds (dp_broker_t *self, struct pollfd *fds);
int
dp_broker_wait_ms (dp_broker_t *self);
void
dp_broker_work (dp_broker_t *self, const struct pollfd *fds, int nfds);

/*  Reads the key configuration again (curve_keys or curve_clients): keys
    added are admitted, a key removed loses access at once (its peers are
    forgotten as at BYE: a worker's jobs go back to the queue, a session's
    queued tasks are dropped; its further messages are answered ERROR
    [EDENIED]). A file that cannot be read or parsed leaves the old table
    in place. Returns 0, or -1 (logged why). Without CURVE, nothing. */
int
dp_broker_reload (dp_broker_t *self);

/*  Asks for dp_broker_reload at the start of the next dp_broker_work.
    Async-signal-safe: meant for a SIGHUP handler. */
void
dp_broker_reload_soon (dp_broker_t *self);

/*  The broker's metrics in Prometheus's text exposition format (version
    0.0.4; README, "Metrics"): gauges of the whole broker, then
    counters, gauges and histograms per function. Returns a string the
    caller frees, its length in *size; NULL if the broker was made without
    config.metrics, or out of memory. On the broker's thread only. */
char *
dp_broker_metrics (dp_broker_t *self, size_t *size);

/*  Runs the loop on the calling thread until zsys_interrupted is set
    (SIGINT/SIGTERM, with CZMQ's handler). Returns 0, or -1 if the ROUTER
    has no descriptor or poll(2) fails (other than EINTR). */
int
dp_broker_run (dp_broker_t *self);

#endif

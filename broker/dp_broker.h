/*  dp_broker.h - the broker engine: task queue, worker registry, dispatch,
    heartbeats, result routing.

    One broker is one ROUTER socket (bound to one or more endpoints) and one
    zloop that owns every piece of state; it never runs user code. The same
    engine runs as the dpool-broker program (dp_broker_run on the main
    thread) and inside an embedded pool (dp_broker_fds, dp_broker_wait_ms
    and dp_broker_work in the pool's actor loop). Its behaviour on the wire is docs/PROTOCOL.md.
*/
#ifndef DP_BROKER_H_INCLUDED
#define DP_BROKER_H_INCLUDED

#include <czmq.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_BROKER_MAX_BINDS     8
#define DP_DEFAULT_MAX_QUEUE    10000000 /* queued tasks before SUBMITs are rejected */
#define DP_DEFAULT_NOFUNC_GRACE 3000     /* ms a task waits for a worker offering its function */

typedef struct _dp_broker_t dp_broker_t;

typedef struct {
    const char *binds[DP_BROKER_MAX_BINDS]; /* endpoints to bind; "tcp://x:*" picks a port */
    size_t nbinds;                          /* 0: DP_DEFAULT_ENDPOINT */
    const char *name;                       /* shown in WELCOME and status; NULL: host:pid */
    int heartbeat_ms;                       /* 0: DP_HEARTBEAT_MS */
    int expiry_ms;                          /* 0: DP_EXPIRY_MS */
    size_t max_queue;                       /* 0: DP_DEFAULT_MAX_QUEUE */
    int64_t max_msg_size;                   /* bytes (ZMQ_MAXMSGSIZE); 0: DP_MAX_MSG_SIZE */
    int nofunc_grace_ms;                    /* 0: default; -1: wait forever */
    const char *endpoint_file;              /* if set, bound endpoints are written here */
    size_t queue_bytes;                     /* bytes of queued values held; 0: DP_QUEUE_BYTES */
    /*  CURVE (docs/PROTOCOL.md §8): the broker's secret key file makes every
        connection encrypted; curve_clients, a directory of the public keys
        allowed in (NULL: any client key). */
    const char *curve_secret;
    const char *curve_clients;
} dp_broker_config_t;

/*  Fills config with the defaults above. */
void
dp_broker_config_init (dp_broker_config_t *config);

/*  Creates a broker and binds its endpoints. Returns NULL (and logs why) if
    an endpoint cannot be bound. The config's strings are copied. */
dp_broker_t *
dp_broker_new (const dp_broker_config_t *config);

/*  Stops the broker: says BYE to every peer, frees everything. */
void
dp_broker_destroy (dp_broker_t **self_p);

/*  The endpoints actually bound (a "*" port resolved), one per line.
    Borrowed. */
const char *
dp_broker_endpoints (dp_broker_t *self);

/*  Driving the broker from another thread's loop (an embedded pool's
    actor does): dp_broker_fds fills fds with the descriptors to poll for
    POLLIN (at most DP_BROKER_MAX_FDS; returns how many), dp_broker_wait_ms
    says how long the poll may sleep (0 when messages wait), and
    dp_broker_work does a round of work after the poll, given the same fds
    with their revents (zeroed if the poll failed or timed out).
    dp_broker_run is these three in a loop. */
#define DP_BROKER_MAX_FDS 2
int
dp_broker_fds (dp_broker_t *self, struct pollfd *fds);
int
dp_broker_wait_ms (dp_broker_t *self);
void
dp_broker_work (dp_broker_t *self, const struct pollfd *fds, int nfds);

/*  Runs the loop until zsys_interrupted is set (SIGINT/SIGTERM, with
    CZMQ's handler). Returns 0, or -1 if it cannot poll. */
int
dp_broker_run (dp_broker_t *self);

#endif

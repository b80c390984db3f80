/*  dp_reqs.h - requests a program's threads make of the broker through
    the pool's I/O actor, and wait for: the named queues' (dp_pool_queue.c)
    and the detached batches' (dp_pool_batch.c).

    A request is a dp_req_t, the first member of its module's record,
    which lives on its caller's stack. The caller enters it in a table of
    the pool's shared state (dp_reqs_enter: numbered, the actor woken) and
    waits (dp_reqs_wait); the actor walks the requests not yet sent on its
    connection (dp_reqs_unsent), encodes and sends them, and hands each
    reply to the request it answers (dp_reqs_take), marking it done. A
    request is reachable from its table only while its caller waits: the
    caller takes it out (or finds it answered) before returning.

    Locking: every call is made with the pool's one mutex held (dp_client.h),
    except dp_reqs_enter, which takes it.
*/
#ifndef DP_REQS_H_INCLUDED
#define DP_REQS_H_INCLUDED

#include "dp_client.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t req;       /* its number, which the reply echoes */
    uint64_t sent_conn; /* the actor's connection it last went out on; 0: not yet */
    bool done;          /* answered, or ended by the actor */
} dp_req_t;

/*  Without the lock: enters req in *table (made on first use; the pool
    frees it with dp_reqs_destroy) and wakes the actor. Returns 0, or an
    error code with *why: DPOOL_ESTATE (called on the pool's own thread, a
    callback, which would wait for itself), DPOOL_ECLOSED (the pool was
    terminated) or DPOOL_ENOMEM. */
int
dp_reqs_enter (dpool_pool_t *pool, dp_reqs_t **table, dp_req_t *req, const char **why);

/*  Waits until req is done, the pool is terminated, or deadline (dp_now_ms
    time; -1: none). Returns 0 if it is done; else takes it out of the
    table (a reply that comes later finds nobody) and returns
    DPOOL_ECLOSED (terminated: from another thread, how a program ends a
    wait without limit) or DPOOL_ETIMEOUT. */
int
dp_reqs_wait (dpool_pool_t *pool, dp_reqs_t *table, dp_req_t *req, int64_t deadline);

/*  The requests of table (may be NULL) not yet sent on conn, in order of
    number: *out (malloc; the caller frees it) and *count. Returns 0, or -1
    if out of memory. */
int
dp_reqs_unsent (dp_reqs_t *table, uint64_t conn, dp_req_t ***out, size_t *count);

/*  Takes the request numbered req out of table (may be NULL); NULL if no
    caller waits for it. */
dp_req_t *
dp_reqs_take (dp_reqs_t *table, uint64_t req);

/*  The request numbered req, left in table; NULL if none. */
dp_req_t *
dp_reqs_get (dp_reqs_t *table, uint64_t req);

/*  Frees a table (its callers are gone) and nulls *self_p; harmless on
    NULL. */
void
dp_reqs_destroy (dp_reqs_t **self_p);

#endif

/*  dp_client_actor.h - a pool's I/O thread: the one owner of its DEALER
    socket to the broker, from its first connect to its last close.

    The actor speaks the client side of docs/PROTOCOL.md: HELLO with a
    random 16-byte session until WELCOME (backoff 100 ms doubling to
    2000 ms); SUBMIT of the batches API threads packed into the outbox;
    RESULT matched to tasks by seq (a result for a seq it does not hold is
    ignored, so no handle ever gets a second one); CANCEL; STATUS; a
    HEARTBEAT whenever it has sent nothing for heartbeat_ms. If the broker
    is silent past expiry_ms or says BYE, the actor drops its socket,
    connects a new one and says HELLO again; after every WELCOME, and after
    ERROR ESTATE, it resubmits every task it holds no result for, under the
    same (session, seq). When the pool is terminating it sends CANCEL for
    everything and ends every task it holds with DPOOL_ECANCELLED. Callbacks
    run on this thread, and an embedded pool's broker runs in its loop
    (dp_embedded.h).

    API threads reach the actor only through the pool's shared state and
    its wake eventfd (dp_client_want_wake, dp_client_wake in dp_client.h);
    the actor takes what they asked in one call (dp_client_take_requests).
    It owns its socket state (the s_actor_t in dp_client_actor.c) and
    nothing of the pool's; it reports what it learns through dp_client.h's
    calls (dp_client_set_status, dp_client_set_workers, ...). Its errors
    (a send that fails, out of memory, a silent broker) are handled by
    connecting again, and logged.
*/
#ifndef DP_CLIENT_ACTOR_H_INCLUDED
#define DP_CLIENT_ACTOR_H_INCLUDED

#include "dpool.h"

/*  Starts the actor thread of pool (dp_client_start_actor), on the thread
    that makes the pool, and waits until it has started the pool's
    extension, if any, and connected its DEALER. Returns 0, or a dpool
    error code: DPOOL_ESYS if the thread cannot start, the extension's
    code if it could not start, DPOOL_EINVAL for an endpoint ZeroMQ
    refuses (the thread has then ended). Blocks. The actor is stopped by
    dp_client_destroy: it then ends every task still held with
    DPOOL_ECANCELLED, says BYE if it is connected, and closes its DEALER. */
int
dp_client_actor_start (dpool_pool_t *pool);

#endif

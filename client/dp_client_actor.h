/*  dp_client_actor.h - a pool's I/O thread: the owner of its DEALER
    socket to the broker, which it lends to the caller of a sequential
    apply (dp_client_actor_drive).

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
    run on this thread.

    API threads reach the actor through the pool's shared state and its
    wake pipe (dp_client.h); the actor pipe only carries "$TERM".
*/
#ifndef DP_CLIENT_ACTOR_H_INCLUDED
#define DP_CLIENT_ACTOR_H_INCLUDED

#include "dpool.h"

#include <czmq.h>

/*  The actor function for zactor_new; args is the dpool_pool_t *, whose
    endpoint, name and wake pipe are set. It stores 0 in the pool's
    actor_status once its socket is connected, or -1 if the endpoint is
    invalid (then it ends), before it signals. On "$TERM" it says BYE to
    the broker if it is connected, closes its socket and ends. */
void
dp_client_actor (zsock_t *pipe, void *args);

/*  Called by dpool_pool_apply once it has submitted result's one task and
    left the wake-up of the actor it owed to this call (the pool's
    wake_pending is set and no byte written). If the actor sleeps, is
    welcomed, and the pool holds no other task, this thread sends the task
    and reads the DEALER itself until the result is in, or until the
    actor takes the DEALER back (another thread asked it for something, or
    the connection changed). Otherwise it writes the wake-up. Either way,
    the caller then waits for the handle as usual. */
void
dp_client_actor_drive (dpool_pool_t *pool, dpool_result_t *result);

#endif

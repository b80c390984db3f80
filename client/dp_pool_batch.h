/*  dp_pool_batch.h - detached batches reached from a program (dpool.h's
    dpool_batch_*), and the requests they make, carried by the pool's I/O
    actor as queue requests are (dp_reqs.h, dp_pool_queue.h).

    A calling thread enters its request (an encoder and its argument) in
    the pool's table of batch requests under the pool's lock, wakes the
    actor and waits on the pool's condition variable. The actor encodes
    and sends every request not yet sent on its current connection
    (dp_pool_batch_send), and hands each BATCH-REPLY's body to the request
    it answers (dp_pool_batch_reply), under the lock. Every batch request
    may be carried out twice with the same effect (a task's index makes a
    second BATCH-ADD of it a no-op; ACK and CANCEL are idempotent; GET and
    LIST change nothing), so a request sent on an older connection is
    simply sent again on the new one.
*/
#ifndef DP_POOL_BATCH_H_INCLUDED
#define DP_POOL_BATCH_H_INCLUDED

#include "dp_client.h"
#include "dp_pool_queue.h"
#include "dp_proto.h"

#include <stdbool.h>
#include <stdint.h>

/*  On the actor, without the lock, while welcomed on connection conn:
    sends the requests not yet sent on it. Returns 0, or -1 if a send
    failed (the actor then connects again). */
int
dp_pool_batch_send (dpool_pool_t *pool, uint64_t conn, dp_pool_queue_send_fn *send, void *arg);

/*  On the actor, without the lock: hands a BATCH-REPLY (its request's
    number, and its body, which was validated) to the request it answers;
    a reply nobody waits for is dropped. */
void
dp_pool_batch_reply (dpool_pool_t *pool, uint64_t req, const void *body, size_t size);

#endif

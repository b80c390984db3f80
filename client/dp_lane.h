/*  dp_lane.h - a calling thread's own connection to its pool's broker,
    for dpool_pool_apply.

    Through the pool's actor, a sequential apply costs two thread wake-ups
    on its way: the caller wakes the actor to send, the actor wakes the
    caller with the result. A lane takes both away. It is a DEALER that one
    API thread makes, uses and closes alone, connected to the pool's broker
    and registered as lane n of the pool's session (HELLO with a lane
    number, docs/PROTOCOL.md 5.1). The thread sends its task's SUBMIT on it
    and reads the RESULT itself, which the broker sends to the connection
    that submitted the task.

    Nothing is lost if a lane fails. Its task is in the pool's table like
    any other, so the actor resubmits it after any reconnection, and the
    broker then sends the result to the actor; a thread waiting on its
    lane is told when the actor finishes its handle (dp_client_set_waiter).
    A lane the broker refuses (ERROR: it restarted, or is too old to know
    lanes) hands its task to the actor and says HELLO again no sooner than
    DP_LANE_RETRY_MS later; until a WELCOME, applies go through the actor.

    Threads: each thread keeps its lanes, one per pool it applied on, in
    thread-local storage. A lane is closed, on its own thread, when the
    thread ends, when the thread destroys the pool, or at the thread's next
    apply once its pool has stopped. Each lane holds a reference on its
    pool's struct and one of the pool's DP_MAX_LANES lane numbers; a thread
    that finds none free goes through the actor.
*/
#ifndef DP_LANE_H_INCLUDED
#define DP_LANE_H_INCLUDED

#include "dp_client.h"

/*  How long a refused lane waits before it says HELLO again. */
#define DP_LANE_RETRY_MS 2000

typedef struct _dp_lane_t dp_lane_t;

/*  The calling thread's lane to pool, made (connected, HELLO sent) on the
    first call. Returns NULL if the thread has none: no lane number free,
    or out of memory. Not on the pool's actor thread. */
dp_lane_t *
dp_lane_mine (dpool_pool_t *pool);

/*  True if the broker welcomed the lane: a task may go out on it. */
bool
dp_lane_ready (const dp_lane_t *self);

/*  The chain of SUBMIT batches that dp_client_insert fills for the lane
    (under the pool's lock), sent by dp_lane_wait. */
dp_batch_t **
dp_lane_head (dp_lane_t *self);
dp_batch_t **
dp_lane_tail (dp_lane_t *self);

/*  Sends what the lane's chain holds (the task of seq, or nothing when the
    apply went through the actor), then reads the lane until result is
    ready, whoever finished it. Blocks, on the lane's own thread. */
void
dp_lane_wait (dp_lane_t *self, dpool_result_t *result, uint64_t seq);

/*  Closes the calling thread's lane to pool, if it has one (before the
    thread destroys the pool). */
void
dp_lane_close_mine (dpool_pool_t *pool);

#endif

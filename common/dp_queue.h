/*  dp_queue.h - queue handles: dpool.h's dpool_queue_* calls on a named
    queue held by the broker, whoever opened the handle.

    A handle names a queue and remembers the maxsize it was opened with; it
    holds no state of the queue, which lives in the broker. Each call packs
    a dp_qcall_t and hands it to the handle's link (dp_task.h): the worker
    engine's, for a handle a task opened (dpool_task_queue_open), or the
    pool's, for one a program opened (dpool_queue_open, client/). The value
    a get returns lives in the handle until its next get or its destroy.

    A handle is used by one thread at a time. A task's handles belong to
    the task: they are closed when its function returns, so a handle
    opened in a task never outlives it.
*/
#ifndef DP_QUEUE_H_INCLUDED
#define DP_QUEUE_H_INCLUDED

#include "dp_task.h"
#include "dpool.h"

/*  Makes a handle for the queue name (1 to DP_MAX_NAME bytes) with
    maxsize (at most DP_MAX_QUEUE_SIZE; 0 none) that sends its requests
    through link (copied). release (may be NULL) is called with link->arg
    when the handle is destroyed. Sends nothing. Returns NULL with
    DPOOL_EINVAL or DPOOL_ENOMEM. */
dpool_queue_t *
dp_queue_new (const char *name, size_t maxsize, const dp_task_link_t *link,
              void (*release) (void *arg));

/*  Asks the broker to open (make) the handle's queue with its maxsize.
    Returns 0, or -1 with the answer's code (DPOOL_EINVAL: the queue has
    another maxsize). */
int
dp_queue_open_remote (dpool_queue_t *self);

#endif

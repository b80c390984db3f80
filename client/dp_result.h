/*  dp_result.h - result handles (Pool's AsyncResult) and iterators: the
    library side of dpool.h's dpool_result_* and dpool_iter_* calls.

    A handle stands for one apply, one whole map, one imap (then owned by
    its iterator), or one finished item of an imap. It owns its results
    (the values' bytes, or the payload frames large values came in, and the
    zone they are unpacked into, if they needed one) and counts
    references: the caller's, and the pool's while any of its calls is
    unfinished.

    Threads. Its results are written by the thread that took its task out
    of the pool's table (dp_client_take_results): the actor, or, for a
    dpool_pool_apply without callbacks, the calling thread on its lane
    (dp_lane.h); never two at once, since each task is taken out once.
    Once the last call is in, that thread unpacks every value into the
    handle's zone, marks the handle ready under the pool's lock, wakes
    every waiter, runs the callback (outside the lock; a handle with
    callbacks is always finished on the actor), and drops the pool's
    reference. From then on the handle never changes, so readers (any
    thread) need the lock only to see that it is ready. Its refcount,
    readiness and an imap's queue of items are under the pool's lock.

    Errors: out of memory making a handle returns NULL; out of memory
    storing a value makes that call fail with DPOOL_ENOMEM. A result that
    does not fit its task (a malformed chunk) fails with DPOOL_EPROTO.

    Every handle holds a reference on its pool's struct (dp_client.h), so
    it stays usable after dpool_pool_destroy.
*/
#ifndef DP_RESULT_H_INCLUDED
#define DP_RESULT_H_INCLUDED

#include "dp_client.h"
#include "dp_msgpack.h"
#include "dpool.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DP_RESULT_APPLY = 0,          /* one call; its value */
    DP_RESULT_MAP = 1,            /* n calls; the array of their values */
    DP_RESULT_IMAP = 2,           /* n calls, handed out in input order */
    DP_RESULT_IMAP_UNORDERED = 3, /* n calls, handed out as they finish */
    DP_RESULT_ITEM = 4            /* one finished call of an imap */
} dp_result_mode_t;

/*  Makes a handle for count calls with the caller's and the pool's
    references, not yet attached to the pool. call (may be NULL) gives the
    callbacks; imap handles run none. Returns NULL if out of memory. Takes
    no lock. */
dpool_result_t *
dp_result_new (dpool_pool_t *pool, dp_result_mode_t mode, size_t count, const dpool_call_t *call);

/*  With the pool's lock held: attaches a new handle to its pool, whose
    tasks are numbered seq0 .. seq0 + ntasks - 1. From here on the handle
    counts in the pool's references and in the handles join waits for. */
void
dp_result_attach (dpool_result_t *self, uint64_t seq0, size_t ntasks);

/*  The seq of the handle's first task (attached handles). */
uint64_t
dp_result_seq (const dpool_result_t *self);

/*  Frees a handle that was never attached; nulls *self_p. */
void
dp_result_discard (dpool_result_t **self_p);

/*  On the thread that took the task out of the table (the actor or a
    lane's), without the lock: records the RESULT of one of the
    handle's tasks (code and value as decoded, the value a str message when
    code is not 0; a chunk's value is split into its calls). frame is NULL,
    or the payload frame whose bytes are value: the handle keeps a value of
    DP_FRAME_MIN bytes or more in it, moved out (zmq_msg_move), rather than
    copy it (but an imap's chunk, whose calls go to handles of their own, is
    copied). Returns true
    when that was the handle's last call: the caller then completes it with
    dp_result_complete, with the others of the same RESULT. */
bool
dp_result_task_done (dpool_result_t *self, const dp_ctask_t *task, int32_t code, dp_span_t value,
                     zmq_msg_t *frame);

/*  On the thread that recorded their last results, without the lock:
    completes handles whose last call is in: unpacks them, marks them ready with one wake-up for
   the waiters, runs their callbacks, drops the pool's references. */
void
dp_result_complete (dpool_result_t **handles, size_t count);

/*  True if the handle has a callback, an error callback or a progress
    callback: one that must run on the actor thread. */
bool
dp_result_has_callbacks (const dpool_result_t *self);

/*  With the pool's lock held: true once the handle is ready. */
bool
dp_result_ready (const dpool_result_t *self);

/*  On the actor thread, without the lock: passes a progress report (one
    packed msgpack object) of one of the handle's tasks, still running, to
    its progress callback, if it has one. */
void
dp_result_progress (dpool_result_t *self, const dp_ctask_t *task, dp_span_t value);

/*  On the actor thread, without the lock: like dp_result_task_done for a
    task that ended here, without a RESULT: every call of the task fails
    with code and message, and the handle is completed if that was its
    last. */
void
dp_result_task_failed (dpool_result_t *self, const dp_ctask_t *task, int code,
                       const char *message);

/*  On the actor thread: completes a handle that has no task (an empty map). */
void
dp_result_finish_empty (dpool_result_t *self);

/*  Makes an iterator over the calls of an imap handle, taking over the
    caller's reference to it. Returns NULL if out of memory (the handle is
    then still the caller's). */
dpool_iter_t *
dp_iter_new (dpool_result_t *job);

#endif

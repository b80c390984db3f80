/*  dp_client.h - a pool's shared state: what the threads that call the API
    and the pool's I/O actor (dp_client_actor.h) both touch.

    Threads. Any number of API threads call dpool.h's functions; the
    pool's actor thread owns its DEALER and runs the callbacks. They share
    this struct, and nothing else: no socket is ever used by two threads.

    Locking, for every file of client/. Each pool has one mutex, guarding
    the fields marked [lock] below and the refcounts, readiness and
    iterator queues of the pool's result handles, and two condition
    variables on it: cond (handles finishing, status, terminate) and room
    (submits waiting for the pool to fall under its bounds). A thread holds
    the mutex only to read or change that state: never during socket I/O,
    a write to the wake eventfd, a fork, a wait for a process, or a user
    callback. One write is made under it: the eventfd of a thread waiting
    on its lane (dp_client_set_waiter), which never blocks, and which the
    waiter cannot close while the lock is held. Fields marked [const] are set before the actor
   starts and never change afterwards; [actor] fields belong to the actor thread.

    Tasks go out like this: a submitting thread packs its task into the
    outbox (a chain of SUBMIT batches) under the lock and wakes the actor
    only if no wake-up is pending yet, so a burst of submits becomes one
    batch; the actor swaps the outbox out under the lock and sends it
    without. Every task stays in the table, with its arguments, until its
    result arrives: the table, not the outbox, is the truth, and the actor
    rebuilds SUBMITs from it after every (re)connection.

    The pool struct outlives dpool_pool_destroy while result handles still
    reference it (every handle holds a reference), so a handle can always
    take its pool's lock.
*/
#ifndef DP_CLIENT_H_INCLUDED
#define DP_CLIENT_H_INCLUDED

#include "dp_curve.h"
#include "dp_idmap.h"
#include "dp_proto.h"
#include "dp_recs.h"
#include "dpool.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  A SUBMIT body is closed and a new one started once it holds this many
    bytes, so no message nears DP_MAX_MSG_SIZE. */
#define DP_CLIENT_BATCH_BYTES (8 * 1024 * 1024)

/*  A task this big or bigger (its SUBMIT entry) goes in a SUBMIT of its
    own, in a buffer sized for it: packed into a growing batch, its args
    would be copied again at each doubling. */
#define DP_CLIENT_ALONE_BYTES (32 * 1024)

/*  The largest packed task (function name, arguments and fields) a client
    accepts: a SUBMIT holding it alone stays under DP_MAX_MSG_SIZE. */
#define DP_CLIENT_TASK_MAX (DP_MAX_MSG_SIZE - 64 * 1024)

/*  Bytes of arguments a pool has in flight before submits wait, unless
    the config says otherwise (max_outstanding_bytes). Enough to keep 64
    workers busy with 1 MiB tasks, and few enough that a stream of large
    tasks reuses the memory of those that finished (the client's copies,
    the broker's queue) rather than taking fresh pages: echo64k over tcp
    ran 1.4k tasks/s at 256 MiB and 1.9-2.1k at 64 MiB. */
#define DP_CLIENT_OUTSTANDING_BYTES (64u * 1024 * 1024)

/*  A map's chunk is closed early once its arguments reach this many bytes. */
#define DP_CLIENT_CHUNK_BYTES (16 * 1024 * 1024)

/*  Linger of the client's DEALER: long enough for a last CANCEL or BYE to
    leave over a live connection, short enough that a program never hangs
    at exit because its broker is unreachable. */
#define DP_CLIENT_LINGER_MS 50

/*  One task the pool submitted and has no result for yet. */
typedef struct _dp_ctask_t dp_ctask_t;
struct _dp_ctask_t {
    uint64_t seq;           /* its identity within the session */
    dpool_result_t *result; /* the handle it belongs to (the pool's reference) */
    size_t first;           /* index of its first call in the handle */
    size_t count;           /* calls it carries (1 unless a chunk) */
    int32_t priority;
    uint32_t timeout_ms;
    int32_t retries;
    uint32_t flags;   /* DP_TASK_CHUNK for map chunks */
    bool cancelled;   /* [lock] a CANCEL was asked for */
    dp_ctask_t *prev; /* [lock] submission order */
    dp_ctask_t *next;
    size_t fn_size;
    size_t args_size;
    uint8_t data[]; /* fn_size bytes of name, then args_size of args */
};

/*  Packed SUBMIT bodies waiting to be sent, oldest first. */
typedef struct _dp_batch_t dp_batch_t;
struct _dp_batch_t {
    dp_writer_t writer; /* an open list (dp_list_begin done) */
    bool full;          /* takes no more entries (it holds a task alone) */
    dp_batch_t *next;
};

/*  The pool's table of queue requests (dp_pool_queue.c). */
typedef struct _dp_pool_queues_t dp_pool_queues_t;

/*  Handles that finish without a task (an empty map), queued for the actor
    so that their callbacks too run on the pool's thread. */
typedef struct {
    dpool_result_t **items;
    size_t count;
    size_t cap;
} dp_handle_vec_t;

/*  dp_client_actor_start is waiting for the actor to connect. */
#define DP_ACTOR_STARTING 1

/*  A thread that waits on its lane for handle: the actor writes fd (an
    eventfd) if it finishes the handle instead (dp_lane.h). */
typedef struct {
    dpool_result_t *handle;
    int fd;
} dp_client_waiter_t;

/*  Scratch space for dp_client_take_results, of the thread that reads. */
typedef struct {
    dp_ctask_t **matched;
    dpool_result_t **completed;
    size_t cap;
} dp_client_scratch_t;

struct _dpool_pool_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond; /* every wait but room's */
    /*  Submits waiting for the pool to fall under its bounds: apart, so that
        the handles finishing while the pool stays full do not wake them. */
    pthread_cond_t room;
    int wake; /* [const] the eventfd that wakes the actor; closed with the struct */

    /*  [const] configuration. */
    uint8_t session[DP_SESSION_SIZE]; /* the pool's session id, random */
    char *endpoint;                   /* where the actor and the lanes connect */
    dp_curve_t curve;                 /* its CURVE keys (curve.on false: plain) */
    char *name;                       /* shown by the broker */
    int timeout_ms;                   /* task default, 0 none */
    int retries;                      /* task default, 0 the broker's */
    size_t max_outstanding;           /* tasks in flight before submits wait */
    size_t max_outstanding_bytes;     /* bytes of their arguments, likewise */
    int procs;                        /* embedded: worker processes; 0 when connected */
    void *embedded;                   /* dp_embedded_t *, NULL when connected */
    pthread_t actor;                  /* the actor thread, once actor_started */
    bool actor_started;               /* owned by the thread that makes and destroys the pool */
    atomic_int actor_status;          /* DP_ACTOR_STARTING, then 0 (running) or -1 */
    pthread_t actor_thread;           /* valid once actor_status is 0 */

    /*  [lock] shared state. */
    int refs;             /* the owner's, plus one per handle alive */
    bool closed;          /* no new submissions */
    bool terminating;     /* terminate asked: the actor ends every task */
    bool terminated;      /* the actor did so */
    bool actor_gone;      /* the actor has ended: nothing more will come */
    bool workers_stopped; /* embedded: terminate stopped (or is stopping) them */
    bool joined;          /* join returned 0 */
    bool wake_pending;    /* a wake-up is written, or about to be */
    bool stopping;        /* the actor is asked to stop */
    uint64_t next_seq;
    dp_idmap_t *tasks;  /* seq -> dp_ctask_t */
    dp_recs_t *handles; /* [lock] the result handles' records (made with the first) */
    dp_ctask_t *head;   /* oldest task */
    dp_ctask_t *tail;
    size_t outstanding;       /* tasks entered and not yet finished */
    size_t outstanding_bytes; /* the bytes of their arguments */
    dp_ctask_t *failed;       /* tasks that could not be made, to end ENOMEM */
    size_t live;              /* handles not finished (callbacks included) */
    dp_batch_t *outbox;       /* SUBMIT bodies for the actor */
    dp_batch_t *outbox_tail;
    uint64_t *cancels; /* seqs to CANCEL */
    size_t ncancels;
    size_t cancels_cap;
    dp_handle_vec_t finish; /* task-less handles to finish */
    bool status_wanted;     /* a STATUS is asked for */
    uint64_t status_gen;    /* STATUS-REPLYs received */
    uint8_t *status;        /* the last one's map */
    size_t status_size;
    int workers; /* as the broker reported last */
    /*  [lock] queue requests waiting for their replies (dp_pool_queue.h). */
    dp_pool_queues_t *queues;
    /*  [lock] lanes (dp_lane.h): the numbers in use, bit n-1 for lane n,
        and the threads waiting on a lane for a handle the actor may
        finish instead. */
    uint64_t lanes;
    dp_client_waiter_t waiters[DP_MAX_LANES];
    size_t nwaiters;
};

/*  Sets the function the first dp_client_czmq_init registers with atexit,
    after CZMQ's own: it stops the pools still alive at exit. */
void
dp_client_set_exit_handler (void (*handler) (void));

/*  Tells CZMQ, once per process and before this library first uses it,
    not to install its SIGINT/SIGTERM handlers: a library must not take
    its host program's signals. */
void
dp_client_czmq_init (void);

/*  Locks and unlocks the pool's mutex. */
void
dp_client_lock (dpool_pool_t *self);
void
dp_client_unlock (dpool_pool_t *self);

/*  With the lock held: waits for a broadcast, or until deadline_ms on the
    dp_now_ms clock (-1: no deadline). Returns false once the deadline has
    passed, true otherwise (spurious wake-ups included: re-check). */
bool
dp_client_wait (dpool_pool_t *self, int64_t deadline_ms);

/*  With the lock held: waits, with no deadline, for the pool to fall under
    its bounds (a dp_client_broadcast, not a dp_client_broadcast_results).
    Spurious wake-ups included: re-check. */
void
dp_client_wait_room (dpool_pool_t *self);

/*  Wakes every waiter; best called just after the lock is released (the
    state they wait for changed under it), so that they do not wake only to
    wait for the lock. */
void
dp_client_broadcast (dpool_pool_t *self);

/*  Wakes the waiters for handles (get, wait, an iterator, join), not the
    submits waiting for room: for handles finishing, which frees no room
    (dp_client_release does that, and broadcasts). */
void
dp_client_broadcast_results (dpool_pool_t *self);

/*  The deadline for a wait of timeout_ms from now; -1 for no limit. */
int64_t
dp_client_deadline (int timeout_ms);

/*  With the lock held: marks a wake-up pending and returns true if the
    caller must call dp_client_wake (after unlocking), false if one is
    already on its way. */
bool
dp_client_want_wake (dpool_pool_t *self);

/*  Without the lock: wakes the actor (writes its eventfd). */
void
dp_client_wake (dpool_pool_t *self);

/*  Without the lock: drops one reference; the last one frees the struct
    (mutex, condition variable, wake pipe). Everything else must be gone. */
void
dp_client_unref (dpool_pool_t *self);

/*  dp_client_unref for a result handle's reference: gives its record back
    to the pool's handles in the same hold of the lock. */
void
dp_client_unref_handle (dpool_pool_t *self, void *record);

/*  True when called on the pool's actor thread (from a callback). */
bool
dp_client_on_actor (dpool_pool_t *self);

/*  Makes a task record holding copies of fn and of args (one msgpack
    object; for a chunk, the array of calls built from prefix and args).
    Returns NULL if out of memory. */
dp_ctask_t *
dp_ctask_new (const char *fn, const void *prefix, size_t prefix_size, const void *args,
              size_t args_size);

/*  Frees a task record; harmless on NULL. */
void
dp_ctask_destroy (dp_ctask_t **self_p);

/*  Appends task, packed as a SUBMIT entry, to the batch chain *head..*tail,
    starting a new batch when the last one is full. Returns 0, or -1 if out
    of memory (the chain is unchanged then, but may need freeing). */
int
dp_batch_add (dp_batch_t **head, dp_batch_t **tail, const dp_ctask_t *task);

/*  Frees a whole chain of batches and nulls *head. */
void
dp_batch_destroy_all (dp_batch_t **head);

/*  With the lock held: enters task in the table and the submission order
    and, unless the pool is terminating, packs it into the outbox, or into
    the chain *head..*tail when head is not NULL (a lane's, dp_lane.h).
    Returns 0, or -1 if out of memory (the task is then not entered). */
int
dp_client_insert (dpool_pool_t *self, dp_ctask_t *task, dp_batch_t **head, dp_batch_t **tail);

/*  With the lock held: packs the task of seq, if the pool still holds it,
    into the outbox again, for the actor to send (a lane lost it). Returns
    true if the caller must wake the actor (dp_client_want_wake). */
bool
dp_client_resend (dpool_pool_t *self, uint64_t seq);

/*  Makes a DEALER with the pool's socket options and CURVE keys,
    connected to its endpoint. Returns NULL if it cannot. The caller's
    thread owns it. */
zsock_t *
dp_client_dealer_new (dpool_pool_t *self);

/*  Without the lock, on the thread that read the RESULT (the actor or a
    lane's): takes every task the body names out of the table, records
    each result in its handle, completes the handles whose last call came
    (running their callbacks, on this thread), and frees room. A result for
    a seq the pool does not hold is ignored. Returns how many were ignored,
    or -1 if out of memory for scratch (then nothing was taken). */
int64_t
dp_client_take_results (dpool_pool_t *self, dp_list_t list, dp_client_scratch_t *scratch);

/*  Frees scratch space. */
void
dp_client_scratch_fini (dp_client_scratch_t *scratch);

/*  With the lock held: registers fd as the waker of a thread waiting for
    handle on its lane, or removes it (fd -1). At most DP_MAX_LANES
    waiters: one per lane. */
void
dp_client_set_waiter (dpool_pool_t *self, dpool_result_t *handle, int fd);

/*  With the lock held: the waker of the thread waiting for handle, or -1. */
int
dp_client_waiter (const dpool_pool_t *self, const dpool_result_t *handle);

/*  Writes 1 to an eventfd. */
void
dp_client_kick (int fd);

/*  With the lock held: takes the task of seq out of the table and the
    order and returns it, or NULL if there is none (finished, or never).
    The task still counts as outstanding until dp_client_release. */
dp_ctask_t *
dp_client_remove (dpool_pool_t *self, uint64_t seq);

/*  With the lock held: stops counting count tasks, with bytes of
    arguments, as outstanding (their handles have their results) and wakes
    submits waiting for room once there is a quarter of the bounds free. */
void
dp_client_release (dpool_pool_t *self, size_t count, size_t bytes);

/*  With the lock held: true if tasks more tasks with bytes of arguments
    would pass the pool's bounds. One task always fits when none is
    outstanding, however large. */
bool
dp_client_full (const dpool_pool_t *self, size_t tasks, size_t bytes);

/*  With the lock held: appends seq to the CANCEL requests. Returns 0 or -1
    if out of memory. */
int
dp_client_add_cancel (dpool_pool_t *self, uint64_t seq);

/*  With the lock held: queues a handle that needs no task for the actor
    to finish. Returns 0 or -1 if out of memory. */
int
dp_client_add_finish (dpool_pool_t *self, dpool_result_t *result);

#endif

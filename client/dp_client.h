/*  dp_client.h - the pool: one private class holding the state that the
    threads calling dpool.h and the pool's I/O actor (dp_client_actor.h)
    share. Its struct is defined in dp_client_impl.h, which only its two
    files include: dp_client.c (life cycle, references, the actor thread,
    status, lanes and handle accounting) and dp_client_tasks.c (the task
    table, the outbox, submits, results and the actor's requests). Every
    other file uses the calls below.

    What it owns: the table of tasks without a result (each with a copy of
    its arguments) and their order, the outbox of packed SUBMIT batches,
    the CANCEL, STATUS and finish requests for the actor, the last
    STATUS-REPLY, the records of the result handles (dp_recs.h), the table
    of queue requests (dp_pool_queue.h, kept here for that file), the lane
    numbers, the wake eventfd, the configuration, and, for an embedded
    pool, the extension that runs its broker in the actor's loop and owns
    its processes (dp_client_ext_t; embedded/ provides it). No socket: the
    actor owns the pool's DEALER (and an embedded pool's broker sockets,
    which it makes and closes through the extension), and each lane's
    thread its own (dp_lane.h).

    Threads. Any number of API threads call dpool.h's functions; the actor
    thread runs the I/O and the callbacks; a thread that makes a lane reads
    its results itself. The owner (the thread that makes and destroys the
    pool) alone starts and stops the actor and destroys the extension;
    terminate, from any API thread, stops the worker processes once. Each call below says which
   thread may make it.

    Locking, for every file of client/. Each pool has one mutex. It guards
    the pool's shared state, and also the refcounts, readiness and iterator
    queues of its result handles (dp_result.c), its queue requests
    (dp_pool_queue.c) and each task's cancelled flag. Two condition
    variables go with it: one for handles finishing, STATUS-REPLYs, queue
    replies, terminate and the actor starting or ending
    (dp_client_wait), one for submits waiting for the pool to fall under
    its bounds (dp_client_wait_room), so that handles finishing while the
    pool stays full do not wake those. A thread holds the mutex only to
    read or change that state (packing a task into the outbox is such a
    change): never during socket I/O, a write to the wake eventfd, a fork,
    a wait for a process or a thread, or a user callback. One write is
    made under it: to the eventfd of a thread waiting on its lane for a
    handle (dp_client_set_waiter), which never blocks, and which the
    waiter cannot close while the lock is held. Calls marked "with the
    lock held" expect the caller to hold it; every other call takes it
    itself when it needs it and must not be made with it held. Besides,
    dp_pool.c keeps a process-wide mutex for its list of live pools, never
    held together with a pool's.

    Tasks go out like this: a submitting thread packs its task into the
    outbox (a chain of SUBMIT batches) under the lock and wakes the actor
    only if no wake-up is pending yet, so a burst of submits becomes one
    batch; the actor takes the outbox under the lock and sends it without
    (dp_client_take_requests). Every task stays in the table, with its
    arguments, until its result arrives: the table, not the outbox, is the
    truth, and the actor rebuilds SUBMITs from it after every (re)connection
    (dp_client_resubmit).

    References: the owner holds one, every attached result handle one, every
    lane and every queue handle one. The struct outlives dpool_pool_destroy
    while any is left, so a handle can always take its pool's lock.

    Errors: a call that can run out of memory returns -1 or NULL (said
    below), and the caller reports DPOOL_ENOMEM; a wrong thread, a lock
    not held or a broken count is a programmer error, caught by assert.
*/
#ifndef DP_CLIENT_H_INCLUDED
#define DP_CLIENT_H_INCLUDED

#include "dp_curve.h"
#include "dp_proto.h"
#include "dp_wire.h"
#include "dpool.h"

#include <poll.h>

#include <czmq.h>
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

/*  What an embedded pool runs beside the client (embedded/dp_embedded.c):
    its broker, in the actor's loop, and its worker processes. The actor
    calls start before it connects and stop after its last message, both
    on its own thread, so that the broker's sockets belong to it for their
    whole life; fds, wait_ms and work in every round of its loop, as
    dp_broker_fds, dp_broker_wait_ms and dp_broker_work are called. The
    pool calls stop_workers (terminate, once) and destroy (after the actor
    ended) on the API thread that makes them. */
#define DP_CLIENT_EXT_FDS 8 /* descriptors fds may add to the actor's poll */

typedef struct {
    void *self;
    int (*start) (void *self);                   /* 0, or a dpool error code */
    int (*fds) (void *self, struct pollfd *fds); /* fills at most DP_CLIENT_EXT_FDS */
    int (*wait_ms) (void *self);                 /* its next timer, from now */
    void (*work) (void *self, const struct pollfd *fds, int nfds); /* after the poll */
    void (*stop) (void *self);
    void (*stop_workers) (void *self);
    void (*destroy) (void *self);
} dp_client_ext_t;

/*  One task the pool submitted and has no result for yet. The pool's
    table owns it until a thread takes it out (dp_client_remove). */
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
    /*  Owners of the record: its holder, and each payload frame that sends
        its args from data (ZeroMQ's I/O thread drops those). */
    atomic_uint refs;
    uint8_t data[]; /* fn_size bytes of name, then args_size of args */
};

/*  Packed SUBMIT bodies waiting to be sent, oldest first. */
typedef struct _dp_batch_t dp_batch_t;
struct _dp_batch_t {
    dp_writer_t writer; /* an open list (dp_list_begin done) */
    bool full;          /* takes no more entries (it holds a task alone) */
    dp_batch_t *next;
    zmq_msg_t *frames; /* payload frames: args of DP_FRAME_MIN bytes or more, not copied */
    uint32_t nframes;
    uint32_t frames_cap;
    size_t frame_bytes; /* theirs */
};

/*  A table of requests the actor carries to the broker (dp_reqs.h): the
    pool has one for its queue requests, one for its batch requests. */
typedef struct _dp_reqs_t dp_reqs_t;

/*  Handles that finish without a task (an empty map), queued for the actor
    so that their callbacks too run on the pool's thread. */
typedef struct {
    dpool_result_t **items;
    size_t count;
    size_t cap;
} dp_handle_vec_t;

/*  Scratch space for dp_client_take_results, of the thread that reads. */
typedef struct {
    dp_ctask_t **matched;
    dpool_result_t **completed;
    size_t cap;
} dp_client_scratch_t;

/*  What a pool is made with (dp_client_new), checked by the caller. */
typedef struct {
    const char *endpoint;         /* where the actor and the lanes connect; copied */
    const char *name;             /* shown by the broker; copied */
    const dp_curve_t *curve;      /* CURVE keys, or NULL for plain; copied */
    int timeout_ms;               /* task default, 0 none */
    int retries;                  /* task default, 0 the broker's */
    size_t max_outstanding;       /* tasks in flight before submits wait */
    size_t max_outstanding_bytes; /* bytes of their arguments, likewise */
    int procs;                    /* embedded: worker processes; 0 when connected */
} dp_client_config_t;

/*  What the actor is asked to do, taken in one go (dp_client_take_requests). */
typedef struct {
    bool stop;          /* the actor is to end */
    bool terminating;   /* every task is to end cancelled */
    dp_ctask_t *ended;  /* terminating: every task, out of the table, by next */
    dp_batch_t *outbox; /* welcomed: SUBMIT bodies to send */
    uint64_t *cancels;  /* welcomed: seqs to CANCEL */
    size_t ncancels;
    bool status_wanted;     /* a STATUS is asked for */
    dp_handle_vec_t finish; /* task-less handles to finish */
    dp_ctask_t *failed;     /* tasks that could not be made, to end ENOMEM */
} dp_client_requests_t;

/*  ---------------------------------------------------------------------------
    Process set-up. Any thread.
*/

/*  Sets the function the first dp_client_czmq_init registers with atexit,
    after CZMQ's own: it stops the pools still alive at exit. */
void
dp_client_set_exit_handler (void (*handler) (void));

/*  Tells CZMQ, once per process and before this library first uses it,
    not to install its SIGINT/SIGTERM handlers: a library must not take
    its host program's signals. */
void
dp_client_czmq_init (void);

/*  ---------------------------------------------------------------------------
    Life cycle, on the owner's thread.
*/

/*  Makes a pool (its lock, wake eventfd, task table, random session) from
    config, with ext (copied; NULL for a connected pool): the pool owns
    what ext->self stands for once this returns it, and destroys it
    (ext->destroy) with itself. The actor is not started. Returns NULL if
    out of memory (ext is then still the caller's). */
dpool_pool_t *
dp_client_new (const dp_client_config_t *config, const dp_client_ext_t *ext);

/*  Starts the actor thread running main (self) and waits until it says
    whether it connected (dp_client_actor_up). Returns 0, or a dpool error
    code if the thread could not start (DPOOL_ESYS), or did not start its
    extension or connect (its code; it has then ended). Blocks. */
int
dp_client_start_actor (dpool_pool_t *self, void *(*main) (void *));

/*  Ends the owner's hold: asks the actor to stop and waits for its thread
    (which ends every task still held and stops the extension), destroys
    the extension, drops the owner's reference and nulls *self_p. Harmless
    whether the actor ever started or not. Blocks; not on the actor. */
void
dp_client_destroy (dpool_pool_t **self_p);

/*  ---------------------------------------------------------------------------
    The lock, the conditions and the actor's wake-up. Any thread.
*/

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

/*  ---------------------------------------------------------------------------
    Configuration, set before the actor starts. Any thread, no lock.
*/

/*  The wake eventfd, for the actor to poll and empty. */
int
dp_client_wake_fd (const dpool_pool_t *self);

/*  The pool's random session id, DP_SESSION_SIZE bytes. Borrowed. */
const uint8_t *
dp_client_session (const dpool_pool_t *self);

/*  The name the broker shows. Borrowed. */
const char *
dp_client_name (const dpool_pool_t *self);

/*  Where the actor and the lanes connect. Borrowed. */
const char *
dp_client_endpoint (const dpool_pool_t *self);

/*  The extension of an embedded pool, NULL for a connected pool. Borrowed;
    the actor alone calls its loop functions. */
const dp_client_ext_t *
dp_client_ext (const dpool_pool_t *self);

/*  An embedded pool's worker processes; 0 for a connected pool. */
int
dp_client_procs (const dpool_pool_t *self);

/*  The task defaults of the config: timeout (0 none), retries (0 the
    broker's). */
void
dp_client_task_defaults (const dpool_pool_t *self, int *timeout_ms, int *retries);

/*  Makes a DEALER with the pool's socket options and CURVE keys,
    connected to its endpoint. Returns NULL if it cannot. The caller's
    thread owns it. */
zsock_t *
dp_client_dealer_new (dpool_pool_t *self);

/*  ---------------------------------------------------------------------------
    References.
*/

/*  With the lock held: takes one more reference (a queue handle's, an
    imap item's). */
void
dp_client_ref (dpool_pool_t *self);

/*  Without the lock: drops one reference; the last one frees the struct
    and everything it still owns. */
void
dp_client_unref (dpool_pool_t *self);

/*  dp_client_unref for a result handle's reference: gives its record back
    to the pool's handles in the same hold of the lock. */
void
dp_client_unref_handle (dpool_pool_t *self, void *record);

/*  ---------------------------------------------------------------------------
    Result handles: their records and how many are alive (dp_result.c).
*/

/*  Without the lock: a record of size bytes for a new handle (its bytes
    undefined), from the pool's records, made with the first. Every call
    must ask for the same size. Returns NULL if out of memory. */
void *
dp_client_alloc_handle (dpool_pool_t *self, size_t size);

/*  Without the lock: gives back the record of a handle that holds no
    reference on the pool (never attached). */
void
dp_client_free_handle (dpool_pool_t *self, void *record);

/*  With the lock held: a handle was attached: one more reference on the
    pool, and one more handle that join waits for. */
void
dp_client_attach_handle (dpool_pool_t *self);

/*  With the lock held: the count handles are ready: tells each thread
    waiting on its lane for one of them (dp_client_set_waiter). */
void
dp_client_handles_ready (dpool_pool_t *self, dpool_result_t *const *handles, size_t count);

/*  With the lock held: count handles are finished, callbacks included: join
    stops waiting for them. The caller calls dp_client_broadcast_results
    after unlocking. */
void
dp_client_handles_finished (dpool_pool_t *self, size_t count);

/*  With the lock held: marks the tasks seq0 .. seq0 + ntasks - 1 that the
    pool still holds cancelled, and queues a CANCEL for each. Returns true
    if the caller must wake the actor (dp_client_want_wake); a CANCEL that
    finds no memory is not sent (the task then runs to its end). */
bool
dp_client_cancel_tasks (dpool_pool_t *self, uint64_t seq0, size_t ntasks);

/*  ---------------------------------------------------------------------------
    Tasks: records, batches, the table and submits (dp_client_tasks.c).
*/

/*  Makes a task record holding copies of fn and of args (one msgpack
    object; for a chunk, the array of calls built from prefix and args).
    Returns NULL if out of memory. Any thread, no lock. */
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

/*  An API thread, without the lock: opens a submit of ntasks tasks with
    bytes of arguments for result (dp_result_new). Unless the pool is
    closed, or nowait is set and the tasks would pass the pool's bounds,
    numbers the tasks, attaches result (dp_result_attach) and, when
    ntasks is 0, queues it for the actor to finish (*wake is then set if
    the caller must wake the actor). Returns the first task's seq, or 0
    with the code in *code (DPOOL_ECLOSED, DPOOL_EAGAIN): result is then
    still unattached. */
uint64_t
dp_client_open_submit (dpool_pool_t *self, dpool_result_t *result, size_t ntasks, size_t bytes,
                       bool nowait, bool *wake, int *code);

/*  An API thread, without the lock: enters a task of an open submit in the
    table and packs it into the outbox, or into the lane's chain
    *head..*tail when head is not NULL (dp_lane.h). If wait, it first waits
    for room under the pool's bounds (unless terminating), waking the actor
    first if wake says it must see what is queued. A task that failed to
    be made (failed), or that finds no memory, goes to the actor to end as
    DPOOL_ENOMEM. Returns whether the caller must wake the actor once done. */
bool
dp_client_submit (dpool_pool_t *self, dp_ctask_t *task, bool failed, bool wait, dp_batch_t **head,
                  dp_batch_t **tail, bool wake);

/*  With the lock held: packs the task of seq, if the pool still holds it,
    into the outbox again, for the actor to send (a lane lost it). Returns
    true if the caller must wake the actor (dp_client_want_wake). */
bool
dp_client_resend (dpool_pool_t *self, uint64_t seq);

/*  With the lock held: the task of seq in the table, or NULL. Borrowed: it
    stays valid while the lock is held. */
dp_ctask_t *
dp_client_task (dpool_pool_t *self, uint64_t seq);

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

/*  Without the lock, on the thread that read the RESULT (the actor or a
    lane's): takes every task the body names out of the table, records
    each result in its handle, completes the handles whose last call came
    (running their callbacks, on this thread), and frees room. A result for
    a seq the pool does not hold is ignored. wire is the message list was
    decoded from: a handle may keep a payload frame of it that holds a
    value (zmq_msg_move: the frame is left empty, its bytes the handle's),
    instead of copying the value. Returns how many were ignored, or -1 if
    out of memory for scratch (then nothing was taken). */
int64_t
dp_client_take_results (dpool_pool_t *self, dp_list_t list, dp_wire_msg_t *wire,
                        dp_client_scratch_t *scratch);

/*  Frees scratch space. */
void
dp_client_scratch_fini (dp_client_scratch_t *scratch);

/*  ---------------------------------------------------------------------------
    The actor's side (dp_client_actor.c): on the actor thread only.
*/

/*  Without the lock: records that the actor thread started (status 0) or
    could not (a dpool error code), and wakes dp_client_start_actor. */
void
dp_client_actor_up (dpool_pool_t *self, int status);

/*  True when called on the pool's actor thread (from a callback). Any
    thread, no lock. */
bool
dp_client_on_actor (dpool_pool_t *self);

/*  Without the lock: takes in one hold everything API threads asked of the
    actor since its last call (the pending wake-up with it) into *requests.
    When terminating it takes every task out of the table (in ended) and
    drops the outbox and CANCELs; otherwise, when welcomed, it takes the
    outbox and the CANCELs; else they wait. The caller owns what it took
    and frees it with dp_client_requests_fini. */
void
dp_client_take_requests (dpool_pool_t *self, bool welcomed, dp_client_requests_t *requests);

/*  Frees what a dp_client_requests_t still holds (not the tasks). */
void
dp_client_requests_fini (dp_client_requests_t *requests);

/*  Without the lock, after a WELCOME: drops the outbox and the CANCELs and
    packs every task of the table into *batches (a new chain), but for those
    whose cancel was asked, which it takes out of the table into *cancelled
    (by next). Returns how many were packed, or -1 if out of memory (the
    chain is freed; the table is as it was but for the cancelled). */
int64_t
dp_client_resubmit (dpool_pool_t *self, dp_batch_t **batches, dp_ctask_t **cancelled);

/*  Without the lock: terminate is carried out (every task ended); wakes
    dpool_pool_terminate. */
void
dp_client_set_terminated (dpool_pool_t *self);

/*  Without the lock: stores a STATUS-REPLY's map (taking over copy, of size
    bytes; NULL when out of memory to copy it, then only workers is stored)
    and the count of workers it gives (-1: none), and wakes the waiters. */
void
dp_client_set_status (dpool_pool_t *self, uint8_t *copy, size_t size, int workers);

/*  Without the lock: the broker refused this connection (its bound on
    connections; refused true), or welcomed it after a refusal (false).
    While refused, status calls fail EREJECTED, a waiting one at once. */
void
dp_client_set_refused (dpool_pool_t *self, bool refused);

/*  Without the lock: stores the count of workers a WELCOME gave. */
void
dp_client_set_workers (dpool_pool_t *self, int workers);

/*  Without the lock, once the actor's loop ended: closes the pool and
    marks it terminating, so that the actor's last dp_client_take_requests
    ends every task. */
void
dp_client_actor_closing (dpool_pool_t *self);

/*  Without the lock, just before the actor thread ends: nothing more will
    come from it; wakes every waiter. */
void
dp_client_actor_ended (dpool_pool_t *self);

/*  With the lock held: true once the actor has ended (dp_client_actor_ended).
    Any thread. */
bool
dp_client_stopped (const dpool_pool_t *self);

/*  With the lock held: true once terminate was asked (dpool_pool_terminate,
    or the actor's end). Any thread. */
bool
dp_client_terminating (const dpool_pool_t *self);

/*  ---------------------------------------------------------------------------
    The API's calls (dp_pool.c): any API thread, without the lock, never on
    the actor unless said.
*/

/*  Closes the pool to new submits and wakes every waiter. Also on the
    actor. */
void
dp_client_close (dpool_pool_t *self);

/*  Waits until every handle is finished, or until deadline_ms (-1: none).
    Returns DPOOL_OK (and remembers it: dp_client_joined), DPOOL_ESTATE if
    the pool is not closed, or DPOOL_ETIMEOUT. */
int
dp_client_join (dpool_pool_t *self, int64_t deadline_ms);

/*  True once dp_client_join returned DPOOL_OK. */
bool
dp_client_joined (dpool_pool_t *self);

/*  Closes the pool, has the actor end every task cancelled, waits for it,
    then stops the extension's worker processes, once. Blocks. */
void
dp_client_terminate (dpool_pool_t *self);

/*  Asks the actor for a STATUS and waits for the reply, or until
    deadline_ms (-1: none) or the actor's end. Returns DPOOL_OK with a copy
    of the reply's map in *data (the caller frees it) and its size in
    *size, DPOOL_ETIMEOUT, or DPOOL_ENOMEM. */
int
dp_client_status (dpool_pool_t *self, int64_t deadline_ms, void **data, size_t *size);

/*  The count of workers the broker reported last (0 before it did). Also
    on the actor. */
int
dp_client_workers (dpool_pool_t *self);

/*  ---------------------------------------------------------------------------
    Lanes (dp_lane.c): on the lane's own thread.
*/

/*  Without the lock: takes a free lane number (1 .. DP_MAX_LANES) and a
    reference on the pool for the lane. Returns 0 if none is free or the
    pool has stopped (no reference is taken then). */
uint32_t
dp_client_take_lane (dpool_pool_t *self);

/*  Without the lock: gives back a lane number and drops the lane's
    reference (which may free the pool). */
void
dp_client_drop_lane (dpool_pool_t *self, uint32_t number);

/*  With the lock held: registers fd (an eventfd) as the waker of a thread
    waiting for handle on its lane, or removes it (fd -1). At most
    DP_MAX_LANES waiters: one per lane. Returns true if fd was written
    while registered (the waiter then reads it empty). */
bool
dp_client_set_waiter (dpool_pool_t *self, dpool_result_t *handle, int fd);

/*  ---------------------------------------------------------------------------
    Requests of the named queues (dp_pool_queue.c) and of the batches
    (dp_pool_batch.c).
*/

/*  With the lock held: where the pool keeps its table of queue requests,
    and of batch requests (NULL until dp_reqs_enter makes them); the pool
    frees them with the struct. */
dp_reqs_t **
dp_client_queue_reqs (dpool_pool_t *self);
dp_reqs_t **
dp_client_batch_reqs (dpool_pool_t *self);

#endif

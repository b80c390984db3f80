/*  dpool.h - the one public header of libdpool.

    dpool is Python's multiprocessing.Pool for C, stretched across machines. A
    program hands named tasks with msgpack arguments to a pool and collects the
    results; the pool's processes are forked on this machine (an embedded pool,
    like Pool(3)) or run anywhere that reaches a dpool-broker.

    Conventions, the same in every call:
    - A call that can fail returns 0 on success or -1 on failure (or NULL for
      a constructor) and sets a thread-local error code, read with
      dpool_errno() and explained by dpool_strerror().
    - Destructors take T ** and null the caller's pointer; calling one on a
      NULL pointer is harmless.
    - Arguments and results are msgpack. "Packed" means msgpack bytes as made
      by msgpack-c's msgpack_packer; a msgpack_object handed out by dpool is
      valid as long as the handle it came from.
    - Every call on a pool may be made from any thread. Callbacks run on the
      pool's own thread, one at a time; they must not block for long (as
      with Pool): meanwhile no result is delivered, and an embedded pool,
      whose broker runs on that thread too, hands out no task.
*/
#ifndef DPOOL_H_INCLUDED
#define DPOOL_H_INCLUDED

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DPOOL_VERSION_MAJOR  0
#define DPOOL_VERSION_MINOR  1
#define DPOOL_VERSION_PATCH  0
#define DPOOL_VERSION_STRING "0.1.0"

/*  ---------------------------------------------------------------------------
    Errors. These codes are also the task status codes on the wire (see
    docs/PROTOCOL.md): 0 is success, anything else names why a call or a task
    failed. New codes are only ever appended.
*/
typedef enum {
    DPOOL_OK = 0,
    DPOOL_EFAILED = 1,       /* the task function reported failure */
    DPOOL_ETIMEOUT = 2,      /* a wait ran out before the result was ready */
    DPOOL_EDEADLINE = 3,     /* the task ran past its own timeout and was killed */
    DPOOL_ECANCELLED = 4,    /* the task was cancelled before it ran */
    DPOOL_ELOST = 5,         /* the workers running it died too many times */
    DPOOL_ENOFUNC = 6,       /* no worker offers the function */
    DPOOL_EREJECTED = 7,     /* the broker refused the task (its queue is full) */
    DPOOL_ECLOSED = 8,       /* the pool is closed to new tasks */
    DPOOL_EINVAL = 9,        /* an argument is invalid (bad msgpack, empty name) */
    DPOOL_ENOMEM = 10,       /* out of memory */
    DPOOL_EAGAIN = 11,       /* a non-blocking call would have to wait */
    DPOOL_EPROTO = 12,       /* a peer broke the wire protocol */
    DPOOL_ESTATE = 13,       /* the call is not valid in the object's state */
    DPOOL_ESYS = 14,         /* a system call failed (see errno) */
    DPOOL_EEND = 15,         /* an iterator has no more items */
    DPOOL_EUNREACHABLE = 16, /* the broker could not be reached */
    DPOOL_EDENIED = 17,      /* the broker's key configuration denies the right */
    DPOOL_ENOENT = 18        /* no such batch: collected, expired, or never made */
} dpool_error_t;

/*  The code of the last failed dpool call on this thread. */
int
dpool_errno (void);

/*  A short English description of an error code; never NULL. */
const char *
dpool_strerror (int code);

/*  ---------------------------------------------------------------------------
    Task functions. A task names a function; every worker process that can
    run it has registered that name. A function gets the task's unpacked
    arguments and writes exactly one msgpack object, its result, with the
    packer. It returns 0 on success, or fails by returning
    dpool_task_fail(task, ...), whose message reaches the caller.
*/
typedef struct _dpool_task_t dpool_task_t;

typedef int (dpool_fn_t) (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result);

/*  Registers fn under name (1 to 255 bytes) in this process, with an opaque
    hint the function can read back with dpool_task_hint(). Register before
    creating an embedded pool or running a worker: workers are forked copies
    of the program and know what it registered at that moment. Registering a
    name again replaces it. Returns 0, or -1 (DPOOL_EINVAL, DPOOL_ENOMEM). */
int
dpool_register (const char *name, dpool_fn_t *fn, void *hint);

/*  Marks the task failed with a printf-style message and returns -1, so a
    function can end with: return dpool_task_fail (task, "no such file %s", p); */
int
dpool_task_fail (dpool_task_t *task, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

/*  The hint given to dpool_register for this task's function. */
void *
dpool_task_hint (dpool_task_t *task);

/*  The name of the function being run. */
const char *
dpool_task_name (dpool_task_t *task);

/*  Which attempt this is: 1 for the first run, 2 after one worker died... */
unsigned
dpool_task_attempt (dpool_task_t *task);

/*  Reports the running task's progress, like Gearman's WORK_STATUS: done of
    total (sent as the array [done, total]), or any one packed msgpack
    object of at most 4096 bytes nested at most 8 levels. The caller's
    progress callback (dpool_call_t.progress) gets each report, in order
    and before the result, and `dpool status` shows the last one. Reports
    are rate-limited in the worker (one every 100 ms reaches the broker; the
    latest one is kept and goes out before the result), so a task may report
    as often as it likes. Returns 0, or -1 with DPOOL_EINVAL for a value
    that is not one such object. Outside a worker (a function called
    directly) it does nothing and returns 0. */
int
dpool_task_progress (dpool_task_t *task, uint64_t done, uint64_t total);
int
dpool_task_progress_value (dpool_task_t *task, const void *value, size_t size);

/*  ---------------------------------------------------------------------------
    Workers. A worker process connects to a broker, announces the functions
    this process registered (and the built-ins echo, sleep, fail and pid;
    crash too with DPOOL_TEST_BUILTINS=1), and runs tasks one at a time
    until told to stop.
*/

/*  Runs one worker process's loop against the broker at endpoint, in the
    calling process. Blocks until SIGINT/SIGTERM arrives (the worker then
    says BYE, so the broker requeues what it held) or a fatal error; returns
    0 on a clean stop, else -1. A broker that goes away or restarts is not a
    stop: the worker registers again, with backoff, until one answers. But
    a worker whose handshakes with the broker fail (a CURVE key it does not
    admit, the wrong server key, CURVE on one side only) logs why, and
    after 30 s of that with none succeeding returns -1 with
    DPOOL_EUNREACHABLE. The
    calling process is a worker from then on: its malloc is set to keep up
    to 64 MiB of freed memory for reuse (mallopt M_TRIM_THRESHOLD, with
    M_MMAP_THRESHOLD 32 MiB and M_TOP_PAD 16 MiB), as in every dpool worker
    process. */
int
dpool_worker_run (const char *endpoint);

/*  Supervises procs worker processes (0: one per CPU), forked from this
    program, against the broker at endpoint; a process that dies is replaced.
    This is how one program serves as its own worker on other hosts
    (./myprog --worker tcp://head:5555). Blocks until SIGINT/SIGTERM; then
    stops the workers and returns 0, or -1 if it could not start. When the
    workers give up on their handshakes with the broker (as in
    dpool_worker_run), it stops them all and returns -1 with
    DPOOL_EUNREACHABLE. */
int
dpool_worker_serve (const char *endpoint, int procs);

/*  dpool_worker_serve with more settings. Zero means the default. */
typedef struct {
    const char *endpoint;    /* the broker (required) */
    int procs;               /* worker processes; 0: one per CPU */
    const char *initializer; /* run once in each process first: see dpool_config_t */
    const void *initargs;    /* its packed msgpack arguments; NULL: nil */
    size_t initargs_size;
    int max_tasks; /* replace a process after this many tasks; 0: never */
    /*  CURVE, for a broker started with --curve-secret: its public key (40
        Z85 characters, or a key file), and this worker's secret key file
        (NULL: a fresh key, enough if the broker admits any key). Both NULL:
        DPOOL_CURVE_SERVER and DPOOL_CURVE_SECRET, if set; else plain. */
    const char *curve_server;
    const char *curve_secret;
} dpool_serve_config_t;

int
dpool_worker_serve_config (const dpool_serve_config_t *config);

/*  ---------------------------------------------------------------------------
    The pool.
*/
typedef struct _dpool_pool_t dpool_pool_t;
typedef struct _dpool_result_t dpool_result_t;
typedef struct _dpool_iter_t dpool_iter_t;

/*  How the ranks of an SPMD job (dpool_pool_spmd) find rank 0: a
    launcher's runtime, such as MPI (dpool_mpi.h's dpool_spmd_mpi, in
    libdpool_mpi). Each call runs on the thread that calls dpool_pool_spmd
    (finalize: on the thread that destroys rank 0's pool, or at exit). */
typedef struct {
    const char *name; /* for messages, e.g. "MPI" */
    /*  Starts the runtime (it may take its own arguments out of argv) and
        says this process's rank and the job's size. Returns 0 or -1. */
    int (*init) (int *argc, char ***argv, int *rank, int *size);
    /*  Rank 0's size bytes at data reach every rank's data (a broadcast);
        every rank calls it once. Returns 0 or -1. */
    int (*share) (void *data, size_t size);
    /*  Ends the runtime, once, on every rank. */
    void (*finalize) (void);
} dpool_spmd_bootstrap_t;

/*  How a pool is made. Zero (or dpool_config_init) means "the default" for
    every field. */
typedef struct {
    const char *connect; /* broker endpoint; NULL for an embedded pool */
    int procs;           /* embedded: worker processes (0: one per CPU) */
    const char *bind;    /* embedded: also accept outside workers here (plain:
                            no CURVE; use dpool-broker for untrusted networks) */
    int timeout_ms;      /* default task timeout (0: none) */
    int retries;         /* default retries after a worker dies (0: 3) */
    int max_outstanding; /* tasks in flight before submits block (0: 100000) */
    /*  Bytes of arguments in flight before submits block (0: 64 MiB). A
        task larger than this still goes, alone. Raise it when many
        workers run tasks with large arguments: each busy worker needs at
        least its task in flight. */
    size_t max_outstanding_bytes;
    const char *name; /* a name the broker shows in status */
    /*  Embedded: Pool's initializer and initargs. The function registered
        as initializer runs once in each worker process before it takes
        its first task, with initargs (one packed msgpack object of
        initargs_size bytes; none: nil) as its arguments; its result is
        dropped. If it fails, the process logs why and exits, takes no
        task, and is started again after a delay that grows to 5 s (tasks
        wait meanwhile, as with Pool; never a fork bomb). */
    const char *initializer;
    const void *initargs;
    size_t initargs_size;
    /*  Embedded: Pool's maxtasksperchild. A worker process that has run
        this many tasks (a map's chunk counts as one) hands back what it
        holds and is replaced by a fresh one (0: never). */
    int max_tasks;
    /*  Connected pools, for a broker started with --curve-secret: the
        broker's CURVE public key (40 Z85 characters, or a key file made by
        'dpool keygen'), and this client's secret key file (NULL: a fresh
        key, enough if the broker admits any key). NULL curve_server: plain.
        An embedded pool talks over a private ipc socket and ignores both. */
    const char *curve_server;
    const char *curve_secret;
    /*  SPMD pools (dpool_pool_spmd) only; each field's variable is read
        when the field is zero. */
    struct {
        /*  How ranks find rank 0 (NULL: the launcher's environment and the
            rendezvous). */
        const dpool_spmd_bootstrap_t *bootstrap;
        /*  Without a bootstrap: "file:PATH", a file on a filesystem every
            rank sees, where rank 0 writes its endpoint (mode 0600); or
            "tcp://HOST:PORT", a fixed endpoint rank 0 binds (HOST "*": on
            every interface, the others reaching it on the first node of
            SLURM_STEP_NODELIST). Variable DPOOL_SPMD_RENDEZVOUS. */
        const char *rendezvous;
        /*  Where rank 0's broker binds a free port: an interface name
            (eth0) or an address; DPOOL_SPMD_INTERFACE; else the first
            interface that is up and not loopback (loopback if none). */
        const char *interface;
        int procs;      /* worker processes of each rank but 0 (DPOOL_SPMD_PROCS; 1) */
        int root_procs; /* worker processes rank 0 also runs (DPOOL_SPMD_ROOT_PROCS;
                           none, or one per CPU of its task in a job of one rank) */
        int timeout_ms; /* how long ranks wait for rank 0 (DPOOL_SPMD_TIMEOUT_MS; 30 s) */
        /*  CURVE on the job's connections: 1 on, -1 off; 0: variable
            DPOOL_SPMD_CURVE (1 or 0), else on whenever rank 0's card
            travels through a bootstrap or a rendezvous file. Rank 0
            makes fresh keys for this job (its broker's, and one pair its
            workers share, the only client key it admits) and hands them
            out through that channel, never a command line or the
            environment; a fixed tcp:// rendezvous has none: plain by
            default, refused with CURVE asked for. */
        int curve;
    } spmd;
} dpool_config_t;

/*  Fills config with defaults, then applies the DPOOL_* environment
    variables it knows (DPOOL_CONNECT, DPOOL_PROCS, DPOOL_TIMEOUT_MS,
    DPOOL_RETRIES, DPOOL_MAX_OUTSTANDING, DPOOL_MAX_OUTSTANDING_BYTES, DPOOL_CURVE_SERVER,
    DPOOL_CURVE_SECRET). */
void
dpool_config_init (dpool_config_t *config);

/*  An embedded pool: Pool(procs). Runs a broker on the pool's own thread
    in this program and forks procs worker processes (0: one per CPU) that run the
    functions this program registered. Returns NULL on failure.
    The fork may happen while other threads of the program (another pool's,
    for one) are running; the child starts afresh (its own ZeroMQ context) and needs only
    malloc and stdio from before the fork, which glibc keeps usable. Memory checkers whose
   allocator is not fork-safe can deadlock there: AddressSanitizer before LLVM 18 does, so test.sh
   builds with clang-19. */
dpool_pool_t *
dpool_pool_new (int procs);

/*  A pool whose tasks go to the dpool-broker at endpoint, for example
    "tcp://head:5555". Returns NULL on failure (DPOOL_EINVAL for a bad
    endpoint); an unreachable broker is not a failure here: tasks wait. */
dpool_pool_t *
dpool_pool_connect (const char *endpoint);

/*  Either of the above, from a config. */
dpool_pool_t *
dpool_pool_new_config (const dpool_config_t *config);

/*  SPMD: one program started N times by a launcher (mpirun -n N ./prog,
    srun -n N ./prog) becomes one pool, as mpi4py.futures does. Register
    the task functions first, then call this early in main, on every rank,
    with the same config (may be NULL).

    On rank 0 it returns a pool whose broker runs in this program (as
    dpool_pool_new's does), bound to a free port on config->spmd.interface,
    after it told the other ranks where it is (through spmd.bootstrap, or
    the rendezvous). On every other rank it never returns: the process
    serves as a worker of rank 0's pool (spmd.procs worker processes that
    run the functions this program registered, with config's initializer,
    initargs and max_tasks) and exits with status 0 once rank 0's pool is
    destroyed (its broker's goodbye) or rank 0 is dead (the broker's
    silence past its heartbeat expiry); with status 1 and a message naming
    what it waited for when rank 0 is not found or does not answer within
    spmd.timeout_ms. Its worker processes never outlive it.

    Ranks come from the bootstrap, else from the launcher's environment:
    SLURM_PROCID and SLURM_STEP_NUM_TASKS (or SLURM_NTASKS),
    OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE, PMI_RANK and PMI_SIZE;
    with none, the program is rank 0 of 1, and this is an embedded pool.
    Without a bootstrap, a job of more than one rank needs a rendezvous.
    Destroying rank 0's pool ends the bootstrap's runtime (finalize) and
    removes the rendezvous file. config's connect, procs and bind are not
    used. Returns NULL on failure on rank 0 (DPOOL_EINVAL for a missing
    rendezvous or a bad setting, DPOOL_ESYS...). */
dpool_pool_t *
dpool_pool_spmd (int *argc, char ***argv, const dpool_config_t *config);

/*  Terminates the pool unless it was joined, then frees it. Result handles
    the caller still holds stay valid; those not finished end cancelled. */
void
dpool_pool_destroy (dpool_pool_t **self_p);

/*  Per-call options. Zero means "the pool's default" for every field. */
typedef void (dpool_callback_fn) (dpool_result_t *result, void *arg);

/*  dpool_call_t flags. */
/*  A timed-out task is retried like one whose worker died, within its
    retries. */
#define DPOOL_CALL_RETRY_TIMEOUT 0x01u
/*  Fail with DPOOL_EAGAIN, submitting nothing, instead of waiting while
    max_outstanding tasks are in flight. */
#define DPOOL_CALL_NOWAIT 0x02u

/*  Gets a task's progress reports (dpool_task_progress): result is the
    handle, index the index (in the handle's input) of the first call of
    the task that reported, value the report (valid during the call). */
typedef void (dpool_progress_fn) (dpool_result_t *result, size_t index,
                                  const msgpack_object *value, void *arg);

typedef struct {
    int priority;                      /* higher runs first; equal is FIFO */
    int timeout_ms;                    /* 0: pool default; -1: none */
    int retries;                       /* 0: pool default; -1: never retry */
    dpool_callback_fn *callback;       /* called once when it succeeded */
    dpool_callback_fn *error_callback; /* called once when it failed */
    void *arg;                         /* passed to the callbacks */
    unsigned flags;                    /* DPOOL_CALL_* */
    /*  Called on the pool's thread for each progress report of a running
        task, in order, and never after the handle's result is in. */
    dpool_progress_fn *progress;
} dpool_call_t;

/*  Submits fn(args), args being one packed msgpack object, and returns a
    handle at once (Pool.apply_async). call may be NULL. Blocks only while
    the pool has max_outstanding tasks, or max_outstanding_bytes of
    arguments, in flight (with DPOOL_CALL_NOWAIT it
    fails with DPOOL_EAGAIN instead). Returns NULL on failure:
    DPOOL_ECLOSED after close, DPOOL_EINVAL for a bad name or bad msgpack.
    The caller owns the handle and destroys it; destroying it does not
    cancel the task, and callbacks still run. */
dpool_result_t *
dpool_pool_apply_async (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                        const dpool_call_t *call);

/*  apply_async, then waits for the result (Pool.apply). Returns a finished
    handle, successful or not; NULL only if the task could not be submitted.
    Without callbacks in call, the calling thread sends the task and reads
    its result on a connection of its own to the broker (a lane, opened at
    its first apply on the pool and closed when the thread ends or destroys
    the pool), rather than through the pool's thread: two thread wake-ups
    fewer per call. Not from a callback. */
dpool_result_t *
dpool_pool_apply (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                  const dpool_call_t *call);

/*  Submits fn over every object of args, a sequence of packed msgpack
    objects back to back (one task each), in chunks of chunksize tasks (0:
    chosen from the count and the number of workers, as Pool does). The one
    handle stands for the whole map: its value is the array of results in
    input order; dpool_result_item reads one. Callbacks run once, when all
    are done; error_callback if any failed. Returns NULL on failure. */
dpool_result_t *
dpool_pool_map_async (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                      size_t chunksize, const dpool_call_t *call);

/*  map_async, then waits for every task. */
dpool_result_t *
dpool_pool_map (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                size_t chunksize, const dpool_call_t *call);

/*  map where every object of args must be an array (the function's
    positional arguments); DPOOL_EINVAL otherwise. */
dpool_result_t *
dpool_pool_starmap (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                    size_t chunksize, const dpool_call_t *call);
dpool_result_t *
dpool_pool_starmap_async (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                          size_t chunksize, const dpool_call_t *call);

/*  Submits like map_async and returns an iterator over the results: in
    input order (imap) or in the order they finish (imap_unordered). */
dpool_iter_t *
dpool_pool_imap (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                 size_t chunksize, const dpool_call_t *call);
dpool_iter_t *
dpool_pool_imap_unordered (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                           size_t chunksize, const dpool_call_t *call);

/*  No more submissions: later submits fail with DPOOL_ECLOSED. Tasks
    already submitted run to the end. Returns 0. */
int
dpool_pool_close (dpool_pool_t *self);

/*  Waits until every task submitted to this pool has finished, up to
    timeout_ms (-1: no limit). The pool must be closed or terminated first
    (else -1, DPOOL_ESTATE), as with Pool.join. Returns 0, or -1 with
    DPOOL_ETIMEOUT. */
int
dpool_pool_join (dpool_pool_t *self, int timeout_ms);

/*  Closes the pool, cancels every task not finished (their handles end
    with DPOOL_ECANCELLED), ends every queue call on the pool, waiting ones
    included, with DPOOL_ECLOSED (a get's value on its way goes back to its
    queue) and, for an embedded pool, stops its worker processes. Made from
    another thread, it is how a program stops calls that wait without limit
    (a signal's thread, say). Returns 0. */
int
dpool_pool_terminate (dpool_pool_t *self);

/*  Asks the broker for its status. On success returns 0 and a packed msgpack
    map in *data (caller frees with free()) of *size bytes; see
    docs/PROTOCOL.md for its keys. Fails with DPOOL_ETIMEOUT, or at once
    with DPOOL_EREJECTED if the broker refused this pool's connection
    meanwhile (beyond its bound on connections; the pool goes on trying). */
int
dpool_pool_status (dpool_pool_t *self, int timeout_ms, void **data, size_t *size);

/*  The number of workers the broker reported last (0 if none yet). */
int
dpool_pool_workers (dpool_pool_t *self);

/*  ---------------------------------------------------------------------------
    Named queues (Python's Manager().Queue()), held by the broker and shared
    by every client and every task that names them, on any machine. Values
    are packed msgpack objects (at most 1 MiB); each queue is FIFO; a value
    is never lost or duplicated while the broker lives (a getter that dies
    with a value on its way gives it back to the front of the queue). A
    queue may be bounded (maxsize): a put then waits, or fails, while it is
    full, as Python's does. Waiting happens in the broker, so a get waiting
    in one task holds up no other task.

    Timeouts, for put and get: -1 waits without limit, 0 does not wait
    (put_nowait, get_nowait: DPOOL_EAGAIN when full or empty), n > 0 waits
    up to n ms (then DPOOL_ETIMEOUT). Every call also fails with
    DPOOL_ETIMEOUT when the broker does not answer within 5 s beyond its
    timeout, DPOOL_EUNREACHABLE when the connection was lost while a put or
    an open was on its way (it may or may not have happened; a get is sent
    again by itself), DPOOL_EREJECTED at a limit of the broker (see
    docs/PROTOCOL.md), DPOOL_ECLOSED once the pool was terminated (a call
    waiting then ends at once; the broker still holds a waiting put until
    the pool is destroyed, whose BYE drops it, so destroy the pool soon
    after).
    dpool_queue_error then gives the broker's message.

    A handle is used by one thread at a time (open one per thread); it is
    only a name, so many may name the same queue.
*/
typedef struct _dpool_queue_t dpool_queue_t;

/*  Opens the queue name (1 to 255 bytes) at the pool's broker, making it if
    it does not exist. maxsize bounds it: the first non-zero maxsize given
    by an open (or a put through its handle) bounds the queue, and opening
    it with another one fails (DPOOL_EINVAL); 0 takes the queue as it is
    (with no bound of its own, a queue holds at most 1,000,000 values).
    Blocks until the broker answers. The handle holds a reference on the
    pool. Returns NULL on failure. */
dpool_queue_t *
dpool_queue_open (dpool_pool_t *pool, const char *name, size_t maxsize);

/*  The same, from inside a task function: the queue is reached through the
    worker's connection to its broker. The handle is closed when the task
    function returns (dpool_queue_destroy may close it earlier). Fails with
    DPOOL_ESTATE when the function is not run by a worker as a task (an
    initializer runs before its worker connects: it cannot reach queues). */
dpool_queue_t *
dpool_task_queue_open (dpool_task_t *task, const char *name, size_t maxsize);

/*  Puts one packed msgpack object (size bytes) at the back of the queue,
    waiting up to timeout_ms for room in a full bounded queue. Returns 0, or
    -1 (DPOOL_EAGAIN, DPOOL_ETIMEOUT, DPOOL_EINVAL for bad msgpack...). */
int
dpool_queue_put (dpool_queue_t *self, const void *value, size_t size, int timeout_ms);

/*  Takes the value at the front of the queue, waiting up to timeout_ms for
    one. Returns 0 and the value (valid until the next get on this handle
    or its destroy), or -1 (DPOOL_EAGAIN, DPOOL_ETIMEOUT...). */
int
dpool_queue_get (dpool_queue_t *self, int timeout_ms, msgpack_object *value);

/*  The number of values in the queue now (Queue.qsize). Returns 0 and the
    size, or -1. Values on their way to a getter are not counted. */
int
dpool_queue_qsize (dpool_queue_t *self, size_t *size);

/*  1 if the queue is empty, 0 if not, -1 on failure (Queue.empty). */
int
dpool_queue_empty (dpool_queue_t *self);

/*  The handle's queue name and the maxsize it was opened with. */
const char *
dpool_queue_name (dpool_queue_t *self);
size_t
dpool_queue_maxsize (dpool_queue_t *self);

/*  The message of the handle's last failure (the broker's, when it
    answered), or NULL after a success. Borrowed. */
const char *
dpool_queue_error (dpool_queue_t *self);

/*  Closes the handle (not the queue, which lives on in the broker). */
void
dpool_queue_destroy (dpool_queue_t **self_p);

/*  ---------------------------------------------------------------------------
    Detached batches (docs/PROTOCOL.md 5.8): tasks the broker runs and
    keeps the results of whether or not their submitter stays connected,
    until a reader collects them or their TTL runs out. A batch has an id
    (16 hex characters) any process of the same key (or an administrator)
    reopens it by; its results come back in input order, and are deleted
    at the broker only once the reader confirms them (dpool_batch_ack), so
    a reader killed before that loses nothing. Results are kept in the
    broker's memory: a broker restart loses them.

    A handle is used by one thread at a time. It holds a reference on its
    pool; destroying it leaves the batch at the broker.
*/
typedef struct _dpool_batch_t dpool_batch_t;

typedef struct {
    const char *name; /* shown by dpool batches (0 to 255 bytes); NULL: none */
    const char *id;   /* NULL: a new random id; else this one's next tasks, by index */
    unsigned ttl_s;   /* how long results are kept uncollected; 0: the broker's */
    bool discard;     /* fire and forget: count results, keep none */
    int timeout_ms;   /* each task's run-time limit; 0: none */
    int retries;      /* re-runs after a worker dies: -1 never, 0 the broker's default */
} dpool_batch_options_t;

/*  What the broker holds of a batch. */
typedef struct {
    char id[17];
    char name[256];
    char fn[256];
    uint64_t total; /* its tasks, once submitted whole (sealed); 0 before */
    uint64_t added; /* tasks the broker acknowledged */
    uint64_t done;  /* tasks ended, failed ones included */
    uint64_t failed;
    uint64_t collected; /* results below this index were collected and deleted */
    uint64_t age_ms;
    unsigned ttl_s;
    bool sealed;
    bool cancelled;
    bool discard;
} dpool_batch_info_t;

/*  One result of a batch, borrowed until the next call on its handle:
    code 0 and the packed result, or an error code and its message (a
    packed msgpack str). */
typedef struct {
    uint64_t index; /* the task's place in the batch, from 0 */
    int code;
    const void *value;
    size_t size;
} dpool_batch_result_t;

/*  A new batch of tasks of function fn (options NULL: the defaults), or
    with options->id the batch of that id, to add tasks after those the
    broker holds (dpool_batch_added says how many). Nothing is sent yet
    for a new batch. Returns NULL on failure. */
dpool_batch_t *
dpool_batch_new (dpool_pool_t *pool, const char *fn, const dpool_batch_options_t *options);

/*  Reopens the batch id (16 hex characters) to read its results, see its
    state or cancel it. Blocks until the broker answers. Returns NULL on
    failure: DPOOL_ENOENT (no such batch), DPOOL_EDENIED (another key's). */
dpool_batch_t *
dpool_batch_open (dpool_pool_t *pool, const char *id);

/*  The batch's id (16 hex characters). */
const char *
dpool_batch_id (const dpool_batch_t *self);

/*  Adds a task whose arguments are one packed msgpack object, at most
    64 MiB less 128 KiB (DPOOL_EINVAL past it). Tasks are sent in groups;
    a call that sends one blocks until the broker acknowledged it. Returns 0, or -1
   (DPOOL_EREJECTED naming the bound the broker reached, DPOOL_EDENIED...). */
int
dpool_batch_add (dpool_batch_t *self, const void *args, size_t size);

/*  Sends the tasks not yet sent and tells the broker the batch is whole.
    Returns 0 once the broker acknowledged every task: from then on the
    batch no longer needs this process. */
int
dpool_batch_submit (dpool_batch_t *self);

/*  Tasks added to the batch so far and acknowledged by the broker. */
uint64_t
dpool_batch_added (const dpool_batch_t *self);

/*  The next result in input order, waiting up to timeout_ms (-1: no
    limit) for it. Returns 0, or -1 with DPOOL_EEND once every result was
    returned (or the batch keeps none), DPOOL_ETIMEOUT, DPOOL_ENOENT. */
int
dpool_batch_next (dpool_batch_t *self, int timeout_ms, dpool_batch_result_t *result);

/*  Reads on from index: the next result dpool_batch_next returns is
    index's (results below it count as returned, and dpool_batch_ack
    confirms them). For a reader that keeps its own record of what it has
    (dpool map --resume). */
void
dpool_batch_seek (dpool_batch_t *self, uint64_t index);

/*  Confirms every result dpool_batch_next returned so far: the broker
    deletes them (and the batch, once all are collected). Returns 0 or -1. */
int
dpool_batch_ack (dpool_batch_t *self);

/*  Cancels the batch: its queued tasks end DPOOL_ECANCELLED (their results
    are kept as failures), running ones finish, none can be added. */
int
dpool_batch_cancel (dpool_batch_t *self);

/*  Asks the broker for the batch's state. Returns 0 or -1. */
int
dpool_batch_info (dpool_batch_t *self, dpool_batch_info_t *info);

/*  The batches the pool's key may see (all of them for an administrator,
    or without keys): an array the caller frees with free(), of *count
    entries. Returns 0 or -1. */
int
dpool_pool_batches (dpool_pool_t *pool, dpool_batch_info_t **infos, size_t *count);

/*  The message of the handle's last failure (the broker's, when it
    answered), or NULL after a success. Borrowed. */
const char *
dpool_batch_error (const dpool_batch_t *self);

/*  Frees the handle; the batch lives on at the broker. */
void
dpool_batch_destroy (dpool_batch_t **self_p);

/*  ---------------------------------------------------------------------------
    Result handles (Pool's AsyncResult). One handle stands for one apply or
    one whole map.
*/

/*  Waits up to timeout_ms (-1: no limit) for the result. On success returns 0
    and, if value is not NULL, the result (for a map: the array of all
    results). Returns -1 with DPOOL_ETIMEOUT if not ready in time, or with the
    task's error code (DPOOL_EFAILED, DPOOL_ELOST...) if it failed;
    dpool_result_error then gives the message. */
int
dpool_result_get (dpool_result_t *self, int timeout_ms, msgpack_object *value);

/*  Waits up to timeout_ms (-1: no limit) for the result to be ready.
    Returns 0 when ready, -1 with DPOOL_ETIMEOUT otherwise. As with Pool, a
    handle with a callback is ready for other threads once its callback
    has run (what the callback did is seen after the wait); for its own
    callback, on the pool's thread, it is ready when the callback starts. */
int
dpool_result_wait (dpool_result_t *self, int timeout_ms);

/*  True once the result is ready (successful or not; as dpool_result_wait
    says, after its callback ran). */
bool
dpool_result_ready (dpool_result_t *self);

/*  True if ready and every task succeeded. */
bool
dpool_result_successful (dpool_result_t *self);

/*  DPOOL_OK, the error code of the (first) failed task, or -1 if not ready. */
int
dpool_result_code (dpool_result_t *self);

/*  The error message of the (first) failed task, or NULL. Borrowed. */
const char *
dpool_result_error (dpool_result_t *self);

/*  The number of tasks the handle stands for (1 for apply). */
size_t
dpool_result_count (dpool_result_t *self);

/*  For an item handle returned by an iterator, its index in the input;
    0 otherwise. */
size_t
dpool_result_index (dpool_result_t *self);

/*  Reads item index of a finished handle: returns 0 and its value, or -1
    with its error code (and dpool_result_item_error gives the message);
    DPOOL_ESTATE if the handle is not ready, DPOOL_EINVAL if out of range. */
int
dpool_result_item (dpool_result_t *self, size_t index, msgpack_object *value);

/*  The error message of item index, or NULL if it succeeded. Borrowed. */
const char *
dpool_result_item_error (dpool_result_t *self, size_t index);

/*  Cancels the tasks of this handle that have not started; they end with
    DPOOL_ECANCELLED. Tasks already running finish. Returns 0. */
int
dpool_result_cancel (dpool_result_t *self);

/*  Drops the caller's reference. The task goes on; callbacks still run. */
void
dpool_result_destroy (dpool_result_t **self_p);

/*  ---------------------------------------------------------------------------
    Iterators (imap, imap_unordered).
*/

/*  The next item as a finished handle (the caller destroys it), waiting up
    to timeout_ms (-1: no limit). Returns NULL with DPOOL_EEND when every
    item was returned, or DPOOL_ETIMEOUT. An item that failed is returned
    like any other; check it with dpool_result_successful. */
dpool_result_t *
dpool_iter_next (dpool_iter_t *self, int timeout_ms);

/*  Frees the iterator; tasks not yet returned go on running. */
void
dpool_iter_destroy (dpool_iter_t **self_p);

#ifdef __cplusplus
}
#endif

#endif

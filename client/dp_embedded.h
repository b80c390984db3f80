/*  dp_embedded.h - the broker and worker processes of an embedded pool
    (dpool_pool_new): Pool(procs) inside one program.

    dp_embedded_new first makes a private directory and forks a supervisor
    process (dp_supervisor_run) BEFORE it creates any CZMQ or ZeroMQ state,
    so the supervisor and the workers it forks never share a context with
    the program; a fork from a program that already has one (a second
    embedded pool) is safe for the same reason: the child never touches
    it, and it leaves with _exit, so no atexit handler of the program runs
    there. Only then does it make a broker, which the pool's actor thread
    runs inside its own loop (dp_client_actor), bound to
    ipc://<dir>/broker.ipc (where the workers connect), a unique
    inproc:// endpoint (where the pool's own actor connects) and, if asked,
    one more endpoint for outside workers.
*/
#ifndef DP_EMBEDDED_H_INCLUDED
#define DP_EMBEDDED_H_INCLUDED

#include "dp_broker.h"

#include <stddef.h>

typedef struct _dp_embedded_t dp_embedded_t;

/*  What every worker process runs first, and how many tasks it runs
    (dpool_config_t's initializer, initargs and max_tasks). */
typedef struct {
    const char *initializer;
    const void *initargs;
    size_t initargs_size;
    int max_tasks;
} dp_embedded_workers_t;

/*  Makes the directory, forks the supervisor of procs workers (procs >= 1;
    workers may be NULL), starts the broker (also bound to bind when it is
    not NULL). Returns NULL with the dpool error set (DPOOL_ESYS,
    DPOOL_EINVAL for a bind that failed) after undoing whatever it had
    started. */
dp_embedded_t *
dp_embedded_new (int procs, const char *bind, const dp_embedded_workers_t *workers);

/*  The inproc:// endpoint where a client reaches the broker. Borrowed. */
const char *
dp_embedded_endpoint (dp_embedded_t *self);

/*  The broker, for the pool's actor thread to run in its loop
    (dp_broker_fds, dp_broker_wait_ms, dp_broker_work); only that thread
    touches it until the pool is destroyed. */
dp_broker_t *
dp_embedded_broker (dp_embedded_t *self);

/*  Stops the worker processes: SIGTERM to the supervisor, which stops its
    workers; waits for it with a deadline, then SIGKILLs it. Blocks; safe to
    call twice. */
void
dp_embedded_stop_workers (dp_embedded_t *self);

/*  Stops the workers (if not yet done) and the broker, removes the
    directory, frees everything, and nulls *self_p. */
void
dp_embedded_destroy (dp_embedded_t **self_p);

#endif

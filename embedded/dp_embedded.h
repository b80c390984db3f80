/*  dp_embedded.h - the broker and worker processes of an embedded pool
    (dpool_pool_new): Pool(procs) inside one program. This folder is the
    one place that sees the client, the broker and the worker together.

    dp_embedded_new makes a private directory and forks a supervisor
    process (dp_supervisor_run) BEFORE anything here creates CZMQ or
    ZeroMQ state, so the supervisor and the workers it forks never share a
    context with the program; a fork from a program that already has one
    (a second embedded pool) is safe for the same reason: the child never
    touches it, and it leaves with _exit, so no atexit handler of the
    program runs there. The broker is made later, by the pool's actor
    thread, which runs it inside its own loop (dp_embedded_ext), bound to
    ipc://<dir>/broker.ipc (where the workers connect), a unique inproc://
    endpoint (where the pool's own actor and lanes connect) and, if asked,
    one more endpoint for outside workers.
*/
#ifndef DP_EMBEDDED_H_INCLUDED
#define DP_EMBEDDED_H_INCLUDED

#include "dp_client.h"
#include "dp_curve.h"

#include <stddef.h>

typedef struct _dp_embedded_t dp_embedded_t;

/*  What every worker process runs first, and how many tasks it runs
    (dpool_config_t's initializer, initargs and max_tasks); and CURVE, for
    a broker whose bind other hosts reach (an SPMD job's; NULL: plain).
    curve is the one key pair of every worker, local (over ipc) or outside
    (over bind), its server the broker's public key: the only key the
    broker admits, its public half written to the private directory for
    the broker's ZAP handler; broker_secret is the broker's secret key.
    The pool's own inproc connection has no security mechanism. Keys are
    copied: the caller may wipe its own at once. */
typedef struct {
    const char *initializer;
    const void *initargs;
    size_t initargs_size;
    int max_tasks;
    const dp_curve_t *curve;
    const char *broker_secret;
} dp_embedded_workers_t;

/*  Makes the directory and forks the supervisor of procs workers (procs
    >= 0: none, for a broker that serves outside workers only; workers may
    be NULL); bind (may be NULL) and the broker's CURVE key are kept for
    the broker.
    Returns NULL with the dpool error set (DPOOL_ESYS, DPOOL_ENOMEM) after
    undoing whatever it had started. */
dp_embedded_t *
dp_embedded_new (int procs, const char *bind, const dp_embedded_workers_t *workers);

/*  The inproc:// endpoint where a client reaches the broker. Borrowed. */
const char *
dp_embedded_endpoint (dp_embedded_t *self);

/*  The bind as the broker bound it (a "*" port resolved), once the pool
    that took the extension has started; NULL before, or without a bind.
    Borrowed: valid until the pool is destroyed. */
const char *
dp_embedded_bound (dp_embedded_t *self);

/*  Has fn told, on the actor thread, the name of each worker the broker
    registers (dp_broker_config_t's on_worker). Before the pool that takes
    the extension starts. */
void
dp_embedded_on_worker (dp_embedded_t *self, void (*fn) (void *arg, const char *name), void *arg);

/*  The extension that runs the broker in the pool's actor loop and stops
    and frees the rest (dp_client.h). Its start fails with DPOOL_EINVAL for
    a bind that failed, DPOOL_ESYS for another. Whoever takes it (the
    pool) destroys self through it. */
dp_client_ext_t
dp_embedded_ext (dp_embedded_t *self);

/*  Stops the worker processes: SIGTERM to the supervisor, which stops its
    workers; waits for it with a deadline, then SIGKILLs it. Blocks; safe to
    call twice. */
void
dp_embedded_stop_workers (dp_embedded_t *self);

/*  Stops the workers (if not yet done), removes the directory, frees
    everything, and nulls *self_p. The broker must be gone (the actor
    destroys it). */
void
dp_embedded_destroy (dp_embedded_t **self_p);

#endif

/*  dp_worker.h - the worker engine: one worker process's connection to a
    broker and the loop that runs its tasks.

    A worker process has two threads and uses plain libzmq only (no CZMQ
    globals, so it is safe in a child forked from a program that already
    uses CZMQ). The calling thread runs task functions one at a time; an
    I/O thread owns the DEALER socket, registers (READY), heartbeats even
    while a long task runs, passes DISPATCH batches to the task thread and
    DONE batches back, and reconnects with backoff when the broker goes
    silent. The two threads talk over an inproc PAIR.
*/
#ifndef DP_WORKER_H_INCLUDED
#define DP_WORKER_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *endpoint; /* broker to connect to */
    const char *name;     /* shown in status; NULL: host:pid */
    int credit;           /* tasks held at once; 0: DP_DEFAULT_CREDIT */
    int heartbeat_ms;     /* 0: DP_HEARTBEAT_MS */
    int expiry_ms;        /* 0: DP_EXPIRY_MS */
} dp_worker_config_t;

void
dp_worker_config_init (dp_worker_config_t *config);

/*  Runs the worker loop in this process until SIGINT/SIGTERM (handlers are
    installed by the caller or by dp_worker_run itself when none are set) or a
    fatal error. Returns 0 on a clean stop, -1 on failure. */
int
dp_worker_run (const dp_worker_config_t *config);

#endif

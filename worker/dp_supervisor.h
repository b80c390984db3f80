/*  dp_supervisor.h - keeps N worker processes running.

    The supervisor is a small single-threaded process with no ZeroMQ context:
    it forks the worker processes (each makes its own context), restarts any
    that die, and on SIGTERM/SIGINT stops them all (SIGTERM, then SIGKILL
    after a grace period). dpool-worker --procs N runs one; an embedded pool
    forks one from the program so the workers run the program's functions.
*/
#ifndef DP_SUPERVISOR_H_INCLUDED
#define DP_SUPERVISOR_H_INCLUDED

#include "dp_worker.h"

#include <sys/types.h>

#define DP_SUPERVISOR_GRACE_MS 2000 /* SIGTERM to SIGKILL when stopping workers */

typedef struct {
    dp_worker_config_t worker; /* what each worker process runs */
    int procs;                 /* worker processes; 0: one per CPU */
    pid_t parent;              /* if not 0: stop when this process is gone */
} dp_supervisor_config_t;

/*  Runs the supervisor in the calling process until SIGTERM/SIGINT or the
    parent is gone; then stops the workers and returns 0 (-1 if it could not
    start). The calling process must be single-threaded. */
int
dp_supervisor_run (const dp_supervisor_config_t *config);

#endif

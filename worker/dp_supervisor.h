/*  dp_supervisor.h - keeps N worker processes running.

    The supervisor is a small single-threaded process with no ZeroMQ context:
    it forks the worker processes (each makes its own context), restarts any
    that die, and on SIGTERM/SIGINT stops them all (SIGTERM, then SIGKILL
    after a grace period). dpool-worker --procs N runs one; an embedded pool
    forks one from the program so the workers run the program's functions.

    Each worker process starts with the signal handlers the program had set
    reset to their defaults, SIGINT and SIGTERM blocked (dp_worker_run reads
    them from a signalfd, so none is lost between fork and then), every other
    signal unblocked, and ends with _exit: it never runs the program's atexit
    handlers or touches anything the parent set up. It dies with the
    supervisor: a supervisor killed outright (SIGKILL) leaves no worker
    process behind, and a busy one ends within about a second, after a BYE
    that gives its jobs back to the broker (dp_supervisor.c says how).

    A worker that dies is restarted at once; when they keep dying within
    DP_SUPERVISOR_FAST_DEATH_MS of starting, restarts wait from
    DP_SUPERVISOR_BACKOFF_MS doubling to DP_SUPERVISOR_BACKOFF_MAX_MS. A
    worker that ended itself because a task ran past its timeout
    (DP_WORKER_EXIT_DEADLINE) does not count as such a death, nor does one
    that retired after max_tasks jobs (DP_WORKER_EXIT_RETIRED), which is
    replaced at once. One whose initializer failed (DP_WORKER_EXIT_INIT)
    always counts, however long it ran: it is started again, as Pool does,
    but after the growing delay, so a broken initializer costs a few
    processes a second at first and one per process every 5 s after. A
    worker that gave up because its handshakes with the broker kept failing
    (DP_WORKER_EXIT_REFUSED) is not restarted: the supervisor stops the
    others and returns DP_SUPERVISOR_REFUSED.

    Workers that leave with their broker (worker.leave_with_broker, the
    ranks of an SPMD job) end with it: the first that exits because its
    broker left (DP_WORKER_EXIT_GONE) or never answered
    (DP_WORKER_EXIT_UNREACHABLE) stops the supervisor and the others.
    Every worker process dies with the supervisor (PR_SET_PDEATHSIG), so
    that killing the supervisor leaves none behind.
*/
#ifndef DP_SUPERVISOR_H_INCLUDED
#define DP_SUPERVISOR_H_INCLUDED

#include "dp_worker.h"

#include <sys/types.h>

#define DP_SUPERVISOR_GRACE_MS       2000 /* SIGTERM to SIGKILL when stopping workers */
#define DP_SUPERVISOR_PARENT_MS      200  /* how often a gone parent is looked for */
#define DP_SUPERVISOR_FAST_DEATH_MS  1000 /* a death this soon after start is suspicious */
#define DP_SUPERVISOR_BACKOFF_MS     100  /* first restart delay after repeated fast deaths */
#define DP_SUPERVISOR_BACKOFF_MAX_MS 5000 /* restart delay ceiling */
#define DP_SUPERVISOR_MAX_PROCS      4096 /* the most CPUs a launcher's variable may claim */

/*  What dp_supervisor_run returns when a worker gave up on the broker. */
#define DP_SUPERVISOR_REFUSED 1

typedef struct {
    dp_worker_config_t worker; /* what each worker process runs */
    int procs;                 /* worker processes; 0: dp_supervisor_default_procs */
    pid_t parent;              /* if not 0: stop when this process is gone */
} dp_supervisor_config_t;

/*  Runs the supervisor in the calling process until SIGTERM/SIGINT or the
    parent is gone; then stops the workers and returns 0 (-1 if it could not
    start, DP_SUPERVISOR_REFUSED if it stopped because a worker gave up on
    its handshakes with the broker; with leave_with_broker, also -1 with
    DPOOL_EUNREACHABLE when a worker found no broker). The calling process
    must be single-threaded. SIGCHLD, SIGINT and SIGTERM are blocked while
    it runs and read from a signalfd, and SIGCHLD's disposition is the
    default (so that a program ignoring it still gets its workers
    restarted); both are restored on return. It waits only for its own
    children, by pid. */
int
dp_supervisor_run (const dp_supervisor_config_t *config);

/*  The worker processes to run when none are asked for: the CPUs the
    launcher gave this task (SLURM_CPUS_PER_TASK, else SLURM_CPUS_ON_NODE
    shared among the step's tasks on this node, SLURM_STEP_TASKS_PER_NODE),
    else those this process may run on (its affinity mask, as taskset and
    mpirun's binding set it), not the whole host's. */
int
dp_supervisor_default_procs (void);

#endif

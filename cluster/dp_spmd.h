/*  dp_spmd.h - an SPMD job's pool (dpool.h's dpool_pool_spmd): the one
    cluster-level layer, above embedded/. Rank 0 runs an embedded pool
    whose broker also binds a free TCP port (dp_embedded.h) and tells the
    other ranks where it is (dp_rendezvous.h); every other rank forks a
    worker supervisor (dp_supervisor.h) whose workers leave with that
    broker, waits for it, and exits.

    Processes of rank r > 0: the rank's own process, which may have the
    launcher runtime's threads (MPI's), only waits; the supervisor it forks
    is single-threaded, as dp_supervisor_run needs, and stops when the rank
    dies; its workers die with it (PR_SET_PDEATHSIG) and leave when the
    broker does.
*/
#ifndef DP_SPMD_H_INCLUDED
#define DP_SPMD_H_INCLUDED

/*  Defaults of dpool_config_t.spmd, documented in dpool.h. */
#define DP_SPMD_TIMEOUT_MS 30000
#define DP_SPMD_PROCS      1
#define DP_SPMD_MAX_PROCS  4096

/*  Exit statuses of a rank r > 0 (dpool_pool_spmd never returns there). */
#define DP_SPMD_EXIT_DONE   0 /* rank 0's pool was destroyed, or rank 0 died */
#define DP_SPMD_EXIT_FAILED 1 /* rank 0 was not found or did not answer */

#endif

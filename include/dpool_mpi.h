/*  dpool_mpi.h - MPI as the bootstrap of an SPMD pool (dpool_pool_spmd),
    in its own small library, libdpool_mpi, so that libdpool itself never
    depends on an MPI library. A program opts in by linking it (CMake:
    target_link_libraries (prog dpool dpool_mpi); by hand: -ldpool_mpi
    -ldpool and the MPI library, e.g. with mpicc) and naming it:

        dpool_config_t config;
        dpool_config_init (&config);
        config.spmd.bootstrap = dpool_spmd_mpi ();
        dpool_pool_t *pool = dpool_pool_spmd (&argc, &argv, &config);

    It works under any launcher the MPI library works under (mpirun,
    srun --mpi=pmix).
*/
#ifndef DPOOL_MPI_H_INCLUDED
#define DPOOL_MPI_H_INCLUDED

#include "dpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/*  The MPI bootstrap: init calls MPI_Init (unless the program already
    did; then finalize leaves MPI_Finalize to the program too) and reads
    the rank and size of MPI_COMM_WORLD; share is an MPI_Bcast from rank 0;
    finalize calls MPI_Finalize. Never NULL. */
const dpool_spmd_bootstrap_t *
dpool_spmd_mpi (void);

#ifdef __cplusplus
}
#endif

#endif

/*  dp_spmd_mpi.c - libdpool_mpi: MPI as an SPMD pool's bootstrap
    (dpool_mpi.h). Built only when CMake finds MPI; it uses dpool.h's
    types and MPI, nothing of dpool's internals.
*/
#include "dpool_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdbool.h>

/*  Whether this library called MPI_Init, and so must call MPI_Finalize. */
static bool s_owned;

static int
s_init (int *argc, char ***argv, int *rank, int *size)
{
    int started = 0;
    if (MPI_Initialized (&started) != MPI_SUCCESS)
        return -1;
    if (!started) {
        if (MPI_Init (argc, argv) != MPI_SUCCESS)
            return -1;
        s_owned = true;
    }
    if (MPI_Comm_rank (MPI_COMM_WORLD, rank) != MPI_SUCCESS ||
        MPI_Comm_size (MPI_COMM_WORLD, size) != MPI_SUCCESS)
        return -1;
    return 0;
}

static int
s_share (void *data, size_t size)
{
    if (size > INT_MAX)
        return -1;
    return MPI_Bcast (data, (int)size, MPI_BYTE, 0, MPI_COMM_WORLD) == MPI_SUCCESS ? 0 : -1;
}

static void
s_finalize (void)
{
    int finalized = 0;
    if (s_owned && MPI_Finalized (&finalized) == MPI_SUCCESS && !finalized)
        MPI_Finalize ();
    s_owned = false;
}

const dpool_spmd_bootstrap_t *
dpool_spmd_mpi (void)
{
    static const dpool_spmd_bootstrap_t bootstrap = {"MPI", s_init, s_share, s_finalize};
    return &bootstrap;
}

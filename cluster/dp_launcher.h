/*  dp_launcher.h - what a cluster's launcher tells a process of an SPMD
    job (dpool_pool_spmd) through its environment: its rank, the job's
    size, the job's identity and its first node; and which address of this
    host the other nodes reach. Pure reads of the environment and of the
    host's interfaces: no state, no threads.

    Launchers, in the order they are looked for:
    - Slurm (srun): SLURM_PROCID, SLURM_STEP_NUM_TASKS (SLURM_NTASKS when
      it is missing), SLURM_STEP_NODELIST, SLURM_JOB_ID.SLURM_STEP_ID;
    - Open MPI (mpirun): OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
      PMIX_NAMESPACE;
    - MPICH's and Intel MPI's Hydra (PMI): PMI_RANK, PMI_SIZE.
*/
#ifndef DP_LAUNCHER_H_INCLUDED
#define DP_LAUNCHER_H_INCLUDED

#include <stddef.h>

#define DP_LAUNCHER_MAX_SIZE 1000000 /* the most ranks a job may claim */
#define DP_LAUNCHER_TAG      128     /* bytes of a job's identity, with its NUL */

typedef struct {
    const char *name;          /* "slurm", "openmpi", "pmi", or "none" */
    int rank;                  /* 0 .. size - 1 */
    int size;                  /* 1 without a launcher */
    char job[DP_LAUNCHER_TAG]; /* the job's identity, or "" if unknown */
} dp_launcher_t;

/*  Reads the launcher's variables into self. Without any: rank 0 of 1.
    Returns 0, or -1 with DPOOL_EINVAL (after logging which variable) when
    a launcher's variables are malformed or disagree (rank >= size). */
int
dp_launcher_detect (dp_launcher_t *self);

/*  The first host of a Slurm host list ("node[07-09,12],login" gives
    "node07") into out. Returns 0, or -1 if the list is empty, malformed
    or the name does not fit. */
int
dp_launcher_first_host (const char *nodelist, char *out, size_t size);

/*  The IPv4 address to bind on, as text, into out: that of the interface
    named (eth0), or the text itself if it names no interface (an address
    or a host name); with interface NULL or empty, that of the first
    interface that is up and not loopback, else 127.0.0.1. Returns 0, or
    -1 if the interface has no IPv4 address or out is too small. */
int
dp_launcher_address (const char *interface, char *out, size_t size);

#endif

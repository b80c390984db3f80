# A one-node Slurm cluster (munged, slurmctld, slurmd) that each case starts
# in its own directory, on ports of its own: srun of the SPMD example (and
# of its MPI build with --mpi=pmix), srun of a dpool-worker fleet, sbatch of
# examples/dpool_map.sbatch. Needs root and Debian's slurm-wlm and munge;
# otherwise a case exits 77 and ctest reports it skipped.
if (TARGET spmd_demo AND TARGET dpool-worker AND TARGET dpool-broker AND TARGET dpool-cli)
    dpool_test (test_slurm test_slurm.c TIMEOUT 90
                PROPERTIES SKIP_RETURN_CODE 77 LABELS "slurm;root")
    target_compile_definitions (test_slurm PRIVATE
        DPOOL_SPMD_DEMO_BIN="$<TARGET_FILE:spmd_demo>"
        DPOOL_SBATCH_SCRIPT="${PROJECT_SOURCE_DIR}/examples/dpool_map.sbatch")
    add_dependencies (test_slurm spmd_demo)
    if (TARGET spmd_demo_mpi)
        target_compile_definitions (test_slurm PRIVATE
            DPOOL_SPMD_DEMO_MPI_BIN="$<TARGET_FILE:spmd_demo_mpi>")
        add_dependencies (test_slurm spmd_demo_mpi)
    endif ()
endif ()

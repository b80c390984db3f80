# cluster/: SPMD pools through a fake launcher (the variables srun and
# mpirun set) and the real mpirun, when MPI was found (else that case exits
# 77: skipped); dpool-worker's --procs from the launcher.
if (TARGET spmd_demo AND TARGET dpool-worker AND TARGET dpool-broker)
    dpool_test (test_spmd test_spmd.c TIMEOUT 60 PROPERTIES SKIP_RETURN_CODE 77)
    target_compile_definitions (test_spmd PRIVATE
        DPOOL_SPMD_DEMO_BIN="$<TARGET_FILE:spmd_demo>")
    add_dependencies (test_spmd spmd_demo)
    if (TARGET spmd_demo_mpi)
        target_compile_definitions (test_spmd PRIVATE
            DPOOL_SPMD_DEMO_MPI_BIN="$<TARGET_FILE:spmd_demo_mpi>")
        add_dependencies (test_spmd spmd_demo_mpi)
    endif ()
endif ()

# SPMD ranks as other hosts: rank 0 and the others in two network
# namespaces joined by a veth pair, through the rendezvous file. Needs root
# and iproute2's ip; otherwise the test exits 77 and ctest reports it skipped.
if (TARGET spmd_demo)
    dpool_test (test_spmd_netns test_spmd_netns.c TIMEOUT 90
                PROPERTIES SKIP_RETURN_CODE 77 LABELS "netns;root")
    target_compile_definitions (test_spmd_netns PRIVATE
        DPOOL_SPMD_DEMO_BIN="$<TARGET_FILE:spmd_demo>")
    add_dependencies (test_spmd_netns spmd_demo)
endif ()

# The install (cmake/install.cmake): programs, pkg-config, find_package
# (and libdpool_mpi's: install_mpi, skipped with 77 when it is not built),
# man pages and systemd units, from a prefix the test installs this build
# into; the .deb of cpack -G DEB (cmake/package.cmake).
# Not in a sanitizer build, whose library a plain program cannot link.
if (NOT DPOOL_SANITIZE AND TARGET dpool-cli)
    dpool_test (test_install test_install.c TIMEOUT 300 PROPERTIES SKIP_RETURN_CODE 77)
    target_compile_definitions (test_install PRIVATE
        DPOOL_BUILD_DIR="${PROJECT_BINARY_DIR}" DPOOL_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
        DPOOL_CMAKE="${CMAKE_COMMAND}" DPOOL_CPACK="${CMAKE_CPACK_COMMAND}"
        DPOOL_CC="${CMAKE_C_COMPILER}"
        DPOOL_LIBDIR="${CMAKE_INSTALL_LIBDIR}")
    # What it installs must be built: every target of the project.
    add_dependencies (test_install dpool dpool-broker dpool-worker dpool-cli)
    if (TARGET dpool_mpi)
        target_compile_definitions (test_install PRIVATE DPOOL_INSTALL_MPI)
        add_dependencies (test_install dpool_mpi)
    endif ()
    if (TARGET dpool_man)
        add_dependencies (test_install dpool_man)
    endif ()
endif ()

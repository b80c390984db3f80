# `cpack -G DEB` in the build folder: one .deb of the install (programs,
# library, header, dpool.pc, CMake package, man pages, units) for /usr,
# its Depends computed from the programs' and library's own (dpkg-shlibdeps).
# libdpool_mpi stays out (component mpi), so that the package does not
# pull Open MPI in.
set (CPACK_PACKAGE_NAME dpool)
set (CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set (CPACK_PACKAGE_CONTACT "dpool maintainers <dpool@localhost>")
set (CPACK_PACKAGE_DESCRIPTION_SUMMARY
     "process pool for C (Python's multiprocessing.Pool) over ZeroMQ and msgpack")
set (CPACK_PACKAGE_DESCRIPTION "dpool runs named C task functions on worker processes, \
forked by the program or served by dpool-worker on many hosts through dpool-broker. \
This package holds the programs, the library with its header, pkg-config file and \
CMake package, man pages and systemd units.")
set (CPACK_STRIP_FILES ON)
set (CPACK_GENERATOR DEB)
# One package per install component: dpool (Unspecified: all but MPI's)
# and, when libdpool_mpi is built, dpool-mpi (component mpi), which alone
# pulls Open MPI in.
set (CPACK_DEB_COMPONENT_INSTALL ON)
set (CPACK_COMPONENTS_ALL Unspecified)
if (TARGET dpool_mpi)
    list (APPEND CPACK_COMPONENTS_ALL mpi)
endif ()
set (CPACK_DEBIAN_UNSPECIFIED_PACKAGE_NAME dpool)
set (CPACK_DEBIAN_MPI_PACKAGE_NAME dpool-mpi)
set (CPACK_DEBIAN_MPI_PACKAGE_DEPENDS "dpool (= ${PROJECT_VERSION})")
# Each package's description: its summary line, then the text.
set (CPACK_DEBIAN_UNSPECIFIED_DESCRIPTION
     "${CPACK_PACKAGE_DESCRIPTION_SUMMARY}\n${CPACK_PACKAGE_DESCRIPTION}")
set (CPACK_DEBIAN_MPI_DESCRIPTION "MPI as the bootstrap of dpool's SPMD pools
libdpool_mpi with its header, dpool_mpi.pc and the CMake package's component \
mpi: one program started by mpirun or srun is one pool.")
set (CPACK_PACKAGE_DESCRIPTION_SUMMARY IGNORE) # not prepended to the above
set (CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set (CPACK_DEBIAN_PACKAGE_SECTION devel)
set (CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set (CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
# dpool.pc and dpool::dpool need msgpack's headers and pkg-config file.
set (CPACK_DEBIAN_PACKAGE_RECOMMENDS "libmsgpack-dev, pkg-config")
include (CPack)

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
# The install of this build, less component mpi: Unspecified is the rest.
set (CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};dpool;Unspecified;/")
set (CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set (CPACK_DEBIAN_PACKAGE_SECTION devel)
set (CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set (CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
# dpool.pc and dpool::dpool need msgpack's headers and pkg-config file.
set (CPACK_DEBIAN_PACKAGE_RECOMMENDS "libmsgpack-dev, pkg-config")
include (CPack)

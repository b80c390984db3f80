# What `cmake --install build --prefix P` lays out, for any P: the library,
# its header, dpool.pc, the CMake package (dpool::dpool), the programs (their
# rules are in their folders), man pages (cmake/man.cmake) and systemd units
# (packaging/systemd). Included at the end of the top CMakeLists.txt; the
# install RPATH is set at its top, before the targets are made.
include (CMakePackageConfigHelpers)

install (TARGETS dpool EXPORT dpoolTargets
         LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
         INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install (FILES include/dpool.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# dpool.pc, relative to its own place (${pcfiledir}).
file (RELATIVE_PATH DPOOL_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
configure_file (cmake/dpool.pc.in ${PROJECT_BINARY_DIR}/dpool.pc @ONLY)
install (FILES ${PROJECT_BINARY_DIR}/dpool.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The CMake package: dpoolConfig.cmake, its version (a 0.x release matches
# its own minor version only) and the exported target.
set (DPOOL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dpool)
configure_package_config_file (cmake/dpoolConfig.cmake.in
    ${PROJECT_BINARY_DIR}/dpoolConfig.cmake INSTALL_DESTINATION ${DPOOL_CMAKE_DIR})
write_basic_package_version_file (${PROJECT_BINARY_DIR}/dpoolConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install (FILES ${PROJECT_BINARY_DIR}/dpoolConfig.cmake
               ${PROJECT_BINARY_DIR}/dpoolConfigVersion.cmake
         DESTINATION ${DPOOL_CMAKE_DIR})
install (EXPORT dpoolTargets NAMESPACE dpool:: DESTINATION ${DPOOL_CMAKE_DIR})

# libdpool_mpi, when built: its header, dpool_mpi.pc and the package's
# component mpi (find_package (dpool COMPONENTS mpi) gives dpool::dpool_mpi),
# all in install component mpi, which the .deb leaves out.
if (TARGET dpool_mpi)
    install (TARGETS dpool_mpi EXPORT dpoolMpiTargets
             LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT mpi
             INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
    install (FILES include/dpool_mpi.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT mpi)
    configure_file (cmake/dpool_mpi.pc.in ${PROJECT_BINARY_DIR}/dpool_mpi.pc @ONLY)
    install (FILES ${PROJECT_BINARY_DIR}/dpool_mpi.pc
             DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT mpi)
    install (EXPORT dpoolMpiTargets NAMESPACE dpool:: DESTINATION ${DPOOL_CMAKE_DIR}
             COMPONENT mpi)
endif ()

# The consumer example, as a user's starting point.
install (FILES examples/consumer/square.c examples/consumer/spmd_square.c
               examples/consumer/CMakeLists.txt
         DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)


include (cmake/man.cmake)

# systemd units, in the prefix's lib/systemd/system (for /usr, where the
# distribution's go), and example files of their settings. A unit names its
# program by absolute path: it is written at install time, for the prefix
# installed into (cmake --install --prefix P, or CPack's /usr).
set (DPOOL_UNITS dpool-broker.service dpool-worker@.service)
set (DPOOL_UNIT_DIR lib/systemd/system)
install (CODE "
    set (DPOOL_UNIT_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    set (dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${DPOOL_UNIT_DIR}\")
    foreach (unit ${DPOOL_UNITS})
        message (STATUS \"Installing: \${dir}/\${unit}\")
        configure_file (\"${PROJECT_SOURCE_DIR}/packaging/systemd/\${unit}.in\"
                        \"\${dir}/\${unit}\" @ONLY)
        list (APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${dir}/\${unit}\")
    endforeach ()
")
install (FILES packaging/systemd/broker.env packaging/systemd/worker.env
         DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

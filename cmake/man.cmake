# Man pages: docs/man/*.scd, turned into roff by scdoc (Debian: scdoc, in
# setup.sh) at build time, installed in share/man. DPOOL_MAN=OFF leaves
# them out (no scdoc needed).
option (DPOOL_MAN "Build and install the man pages (needs scdoc)" ON)
if (DPOOL_MAN)
    find_program (SCDOC scdoc)
    if (NOT SCDOC)
        message (FATAL_ERROR "scdoc not found: install it (apt-get install scdoc) or "
                             "configure with -DDPOOL_MAN=OFF")
    endif ()
    set (DPOOL_MAN_PAGES dpool.1 dpool-broker.1 dpool-worker.1 dpool.3)
    set (DPOOL_MAN_OUT "")
    foreach (page IN LISTS DPOOL_MAN_PAGES)
        set (source ${PROJECT_SOURCE_DIR}/docs/man/${page}.scd)
        set (out ${PROJECT_BINARY_DIR}/man/${page})
        add_custom_command (OUTPUT ${out}
            COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
            COMMAND ${SCDOC} < ${source} > ${out}
            DEPENDS ${source} COMMENT "Making the man page ${page}" VERBATIM)
        list (APPEND DPOOL_MAN_OUT ${out})
        string (REGEX MATCH "[0-9]$" section ${page})
        install (FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
    endforeach ()
    add_custom_target (dpool_man ALL DEPENDS ${DPOOL_MAN_OUT})
endif ()

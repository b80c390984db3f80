# dpool-broker and dpool-worker as services: their notes to systemd
# (sd_notify, to a socket the test binds) and their log lines (text with
# date and zone, JSON, journald). A case that needs libsystemd, or root for
# its mount namespace, exits 77 without them and ctest reports it skipped.
if (TARGET dpool-broker AND TARGET dpool-worker)
    dpool_test (test_service test_service.c TIMEOUT 90 PROPERTIES SKIP_RETURN_CODE 77)
    target_link_libraries (test_service PRIVATE PkgConfig::JANSSON)
    target_compile_definitions (test_service PRIVATE
        DPOOL_EXAMPLE_PLUGIN="$<TARGET_FILE:dpool_example_plugin>")
    add_dependencies (test_service dpool_example_plugin dpool-cli)
    if (DPOOL_SYSTEMD)
        target_compile_definitions (test_service PRIVATE DPOOL_HAVE_SYSTEMD)
    endif ()
endif ()

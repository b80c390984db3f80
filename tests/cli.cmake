# cli/: the dpool command, its JSON conversion, and the examples.

# JSON <-> msgpack (cli/dp_json).
dpool_test (test_json test_json.c)
target_include_directories (test_json PRIVATE ${PROJECT_SOURCE_DIR}/cli)
target_link_libraries (test_json PRIVATE dpool_json)
add_test (NAME json_roundtrip_bigints_floats_bin_and_errors COMMAND test_json)
set_tests_properties (json_roundtrip_bigints_floats_bin_and_errors PROPERTIES TIMEOUT 60)

# The dpool command against a real broker and workers.
dpool_test (test_cli_commands test_cli_commands.c)
target_link_libraries (test_cli_commands PRIVATE PkgConfig::JANSSON)
foreach (case map_echo_10000_lines_in_order map_failure_marked_and_exit_status apply_and_status
              help_and_version)
    add_test (NAME cli_${case} COMMAND test_cli_commands ${case})
    set_tests_properties (cli_${case} PROPERTIES TIMEOUT 200)
endforeach ()

# The tutorial's example (examples/pool_demo) and `dpool demo`.
dpool_test (test_example_pool_demo test_example_pool_demo.c)
target_compile_definitions (test_example_pool_demo PRIVATE
    DPOOL_POOL_DEMO_BIN="$<TARGET_FILE:pool_demo>")
add_dependencies (test_example_pool_demo pool_demo)
foreach (case pool_demo_embedded pool_demo_with_broker dpool_demo_embedded)
    add_test (NAME example_${case} COMMAND test_example_pool_demo ${case})
    set_tests_properties (example_${case} PROPERTIES TIMEOUT 140)
endforeach ()

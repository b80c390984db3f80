# cli/: the dpool command, its JSON conversion, and the examples.

# JSON <-> msgpack (cli/dp_json).
dpool_test (test_json test_json.c TIMEOUT 60)
target_include_directories (test_json PRIVATE ${PROJECT_SOURCE_DIR}/cli)
target_link_libraries (test_json PRIVATE dpool_json)

# The dpool command against a real broker and workers.
dpool_test (test_cli_commands test_cli_commands.c TIMEOUT 200)
target_link_libraries (test_cli_commands PRIVATE PkgConfig::JANSSON)

# The tutorial's example (examples/pool_demo) and `dpool demo`.
dpool_test (test_example_pool_demo test_example_pool_demo.c TIMEOUT 140)
target_compile_definitions (test_example_pool_demo PRIVATE
    DPOOL_POOL_DEMO_BIN="$<TARGET_FILE:pool_demo>")
add_dependencies (test_example_pool_demo pool_demo)

# SIGINT and SIGTERM end every waiting command, releasing what it held.
dpool_test (test_cli_signals test_cli_signals.c TIMEOUT 150)

# Names from the network are escaped in human-readable output.
dpool_test (test_cli_escape test_cli_escape.c TIMEOUT 90)

# Shell commands as tasks: dpool.exec and dpool map --exec.
dpool_test (test_exec test_exec.c TIMEOUT 150)
target_link_libraries (test_exec PRIVATE PkgConfig::JANSSON)

# What the command shows while work runs: map's progress bar, read through a
# pseudo-terminal (forkpty), and status --watch.
dpool_test (test_cli_monitor test_cli_monitor.c TIMEOUT 150)
target_compile_definitions (test_cli_monitor PRIVATE
    DPOOL_TEST_PLUGIN="$<TARGET_FILE:dpool_test_plugin>")
target_link_libraries (test_cli_monitor PRIVATE util)
add_dependencies (test_cli_monitor dpool_test_plugin)

# Detached batches: dpool submit, results, batches, cancel and the C API.
dpool_test (test_batches test_batches.c TIMEOUT 150)

# Named queues, the pool initializer, maxtasksperchild and progress
# (issue 5), against real processes: a dpool-broker with dpool-worker
# processes, or with the test program serving its own task functions, or
# embedded pools.

# dpool_queue_* from programs and from tasks on different worker processes;
# the broker also under valgrind through some of them.
dpool_test (test_queue test_queue.c TIMEOUT 120 VALGRIND_TIMEOUT 300)
# The client API's case is shorter (its own deadline is 60 s).
set_tests_properties (queue_client_open_put_get_qsize_bounds_tcp
                      queue_client_open_put_get_qsize_bounds_ipc PROPERTIES TIMEOUT 90)

# Pool's initializer and maxtasksperchild, and progress reports. The test
# plugin gives dpool-worker an initializer (it takes dpool_register from
# dpool-worker, so it does not link libdpool); test_features compiles it in
# too, for its embedded pools.
add_library (dpool_test_plugin MODULE dpool_test_plugin.c)
set_target_properties (dpool_test_plugin PROPERTIES PREFIX "")
target_include_directories (dpool_test_plugin PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries (dpool_test_plugin PRIVATE PkgConfig::MSGPACK)
dpool_test (test_features test_features.c dpool_test_plugin.c TIMEOUT 120)
target_compile_definitions (test_features PRIVATE
    DPOOL_TEST_PLUGIN="$<TARGET_FILE:dpool_test_plugin>")
add_dependencies (test_features dpool_test_plugin)

# `dpool queue put|get|size`.
if (TARGET dpool-cli)
    dpool_test (test_cli_queue test_cli_queue.c TIMEOUT 150)
endif ()

# The tutorial's second example (examples/queue_demo).
dpool_test (test_example_queue_demo test_example_queue_demo.c TIMEOUT 120)
target_compile_definitions (test_example_queue_demo PRIVATE
    DPOOL_QUEUE_DEMO_BIN="$<TARGET_FILE:queue_demo>")
add_dependencies (test_example_queue_demo queue_demo)

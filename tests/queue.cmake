# Named queues, the pool initializer, maxtasksperchild and progress
# (issue 5), against real processes: a dpool-broker with dpool-worker
# processes, or with the test program serving its own task functions, or
# embedded pools.

# dpool_queue_* from programs and from tasks on different worker processes.
dpool_test (test_queue test_queue.c)
foreach (transport tcp ipc)
    add_test (NAME queue_client_open_put_get_qsize_bounds_${transport}
              COMMAND test_queue client_api ${transport})
    set_tests_properties (queue_client_open_put_get_qsize_bounds_${transport}
                          PROPERTIES TIMEOUT 90)
endforeach ()
set (DPOOL_QUEUE_TESTS
    # name                                                   case
    "queue_producers_consumers_exactly_once_fifo_per_producer producers_consumers"
    "queue_consumer_killed_in_get_loses_no_value              consumer_killed_in_get"
    "queue_bounded_put_waits_for_room_in_order                bounded_put_blocks"
    "queue_task_get_put_timeouts_and_nowait                   task_timeouts_and_nowait"
    "queue_waiting_get_does_not_hold_up_other_calls           get_does_not_block_others"
    "queue_waiting_gets_sent_again_after_broker_restart       get_resent_after_broker_restart")
foreach (entry ${DPOOL_QUEUE_TESTS})
    string (REGEX REPLACE " +" ";" fields "${entry}")
    list (GET fields 0 name)
    list (GET fields 1 case)
    add_test (NAME ${name} COMMAND test_queue ${case})
    set_tests_properties (${name} PROPERTIES TIMEOUT 120)
endforeach ()

# Pool's initializer and maxtasksperchild, and progress reports. The test
# plugin gives dpool-worker an initializer (it takes dpool_register from
# dpool-worker, so it does not link libdpool); test_features compiles it in
# too, for its embedded pools.
add_library (dpool_test_plugin MODULE dpool_test_plugin.c)
set_target_properties (dpool_test_plugin PROPERTIES PREFIX "")
target_include_directories (dpool_test_plugin PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries (dpool_test_plugin PRIVATE PkgConfig::MSGPACK)
dpool_test (test_features test_features.c)
target_sources (test_features PRIVATE dpool_test_plugin.c)
target_compile_definitions (test_features PRIVATE
    DPOOL_TEST_PLUGIN="$<TARGET_FILE:dpool_test_plugin>")
add_dependencies (test_features dpool_test_plugin)
set (DPOOL_FEATURE_TESTS
    # name                                                     case
    "initializer_runs_once_per_process_before_first_task       initializer_embedded"
    "initializer_dpool_worker_option_with_initargs             initializer_dpool_worker"
    "initializer_dpool_worker_serve_config                     initializer_serve_config"
    "initializer_failure_logged_no_task_taken_restart_backoff  initializer_failure_backs_off"
    "max_tasks_dpool_worker_replaces_processes_no_task_lost    max_tasks_dpool_worker"
    "max_tasks_embedded_fresh_processes_run_initializer        max_tasks_embedded"
    "progress_callbacks_in_order_before_result_rate_limited    progress_callbacks"
    "progress_status_shows_running_task_progress               status_shows_progress")
foreach (entry ${DPOOL_FEATURE_TESTS})
    string (REGEX REPLACE " +" ";" fields "${entry}")
    list (GET fields 0 name)
    list (GET fields 1 case)
    add_test (NAME ${name} COMMAND test_features ${case})
    set_tests_properties (${name} PROPERTIES TIMEOUT 120)
endforeach ()

# `dpool queue put|get|size`.
if (TARGET dpool-cli)
    dpool_test (test_cli_queue test_cli_queue.c)
    add_test (NAME cli_queue_put_get_size_waits_and_exit_statuses COMMAND test_cli_queue)
    set_tests_properties (cli_queue_put_get_size_waits_and_exit_statuses PROPERTIES TIMEOUT 150)
endif ()

# The tutorial's second example (examples/queue_demo).
dpool_test (test_example_queue_demo test_example_queue_demo.c)
target_compile_definitions (test_example_queue_demo PRIVATE
    DPOOL_QUEUE_DEMO_BIN="$<TARGET_FILE:queue_demo>")
add_dependencies (test_example_queue_demo queue_demo)
foreach (case embedded with_broker)
    add_test (NAME example_queue_demo_${case}_prints_the_tutorials_lines
              COMMAND test_example_queue_demo ${case})
    set_tests_properties (example_queue_demo_${case}_prints_the_tutorials_lines
                          PROPERTIES TIMEOUT 120)
endforeach ()

# The broker under valgrind through the queue cases with workers: any
# invalid access or leak makes its exit status non-zero, which the test
# checks when it stops it.
find_program (VALGRIND valgrind)
if (VALGRIND AND NOT DPOOL_SANITIZE)
    foreach (case producers_consumers consumer_killed_in_get client_api)
        add_test (NAME queue_${case}_broker_valgrind COMMAND test_queue ${case})
        set_tests_properties (queue_${case}_broker_valgrind PROPERTIES TIMEOUT 300
            ENVIRONMENT "DPOOL_TEST_BROKER_WRAP=${VALGRIND} --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99")
    endforeach ()
endif ()

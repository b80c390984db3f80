# worker/: the registry, built-ins and plugins in process; the worker engine
# and supervisor as real dpool-worker processes against a fake broker.
dpool_test (test_chan test_chan.c)
add_test (NAME worker_chan_keeps_order_and_wakes_the_reader COMMAND test_chan)
set_tests_properties (worker_chan_keeps_order_and_wakes_the_reader PROPERTIES TIMEOUT 90)
dpool_test (test_worker_registry test_worker_registry.c)
dpool_test (test_worker_engine test_worker_engine.c)
# Plugins loaded into a test program take dpool_register from it.
set_target_properties (test_worker_registry PROPERTIES ENABLE_EXPORTS ON)
foreach (target test_worker_registry test_worker_engine)
    target_compile_definitions (${target} PRIVATE
        DPOOL_EXAMPLE_PLUGIN="$<TARGET_FILE:dpool_example_plugin>")
    add_dependencies (${target} dpool_example_plugin)
endforeach ()

set (DPOOL_WORKER_TESTS
    # name                                          program               case
    "worker_builtins_run_in_process                 test_worker_registry  builtins"
    "worker_registration_overrides_builtins         test_worker_registry  register"
    "worker_task_call_checks_results                test_worker_registry  task_checks"
    "worker_plugin_loads_in_process                 test_worker_registry  plugin"
    "worker_registers_with_backoff_until_welcome    test_worker_engine    registers"
    "worker_runs_dispatched_jobs                    test_worker_engine    jobs"
    "worker_batches_fast_results_not_slow_ones      test_worker_engine    batching"
    "worker_heartbeats_while_task_runs              test_worker_engine    heartbeat"
    "worker_answers_broker_heartbeat_when_quiet     test_worker_engine    heartbeat_answer"
    "worker_answers_broker_heartbeat_during_a_job   test_worker_engine    busy_answer"
    "worker_idle_sleeps_between_messages            test_worker_engine    idle_cpu"
    "worker_idle_beats_and_expires_slower           test_worker_engine    idle_beat"
    "worker_timeout_reports_edeadline_and_restarts  test_worker_engine    timeout"
    "worker_supervisor_restarts_dead_process        test_worker_engine    killed"
    "worker_sigterm_says_bye_and_stops              test_worker_engine    sigterm"
    "worker_reconnects_when_broker_goes_silent      test_worker_engine    broker_silence"
    "worker_registers_again_on_estate               test_worker_engine    estate"
    "worker_registers_again_after_broker_bye        test_worker_engine    broker_bye"
    "worker_plugin_registers_functions              test_worker_engine    plugin"
    "worker_serve_offers_program_functions          test_worker_engine    serve"
    "worker_supervisor_stops_when_parent_dies       test_worker_engine    parent_gone"
    "worker_program_options                         test_worker_engine    options")
foreach (entry ${DPOOL_WORKER_TESTS})
    string (REGEX REPLACE " +" ";" fields "${entry}")
    list (GET fields 0 name)
    list (GET fields 1 program)
    list (GET fields 2 case)
    add_test (NAME ${name} COMMAND ${program} ${case})
    set_tests_properties (${name} PROPERTIES TIMEOUT 90)
endforeach ()

# The same dpool-worker processes against the real dpool-broker.
if (TARGET dpool-broker)
    dpool_test (test_worker_broker test_worker_broker.c)
    foreach (case tasks timeout sigterm_requeues broker_restart)
        add_test (NAME worker_broker_${case} COMMAND test_worker_broker ${case})
        set_tests_properties (worker_broker_${case} PROPERTIES TIMEOUT 90)
    endforeach ()
endif ()

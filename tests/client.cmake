# client/: the pool, result and iterator API against real processes - a
# dpool-broker and dpool-worker processes over tcp and over ipc - and in
# embedded mode, where the pool forks its own workers. One program; each
# ctest runs one case, named for the behaviour it checks.
dpool_test (test_client_pool test_client_pool.c)

dpool_test (test_recs test_recs.c)
add_test (NAME client_handle_records_reused_and_released COMMAND test_recs)
set_tests_properties (client_handle_records_reused_and_released PROPERTIES TIMEOUT 60)

set (DPOOL_CLIENT_TRANSPORT_CASES
    apply_async
    map_results_in_input_order
    imap_vs_imap_unordered_order
    task_failure_carries_worker_message
    task_failure_codes
    close_join_terminate
    submit_after_close_fails
    two_clients_get_only_their_own_results
    callbacks_run_once
    cancel_queued_task_ends_cancelled
    backpressure_blocks_submits
    backpressure_bounds_bytes
    status_reports_workers
    reconnect_resubmits_after_broker_restart
    many_threads_submit_and_wait
    result_outlives_pool
    sequential_apply_beside_other_threads
    sequential_apply_across_broker_restart
    terminate_ends_a_sequential_apply
    sequential_apply_failures)
foreach (case ${DPOOL_CLIENT_TRANSPORT_CASES})
    foreach (transport tcp ipc)
        add_test (NAME client_${case}_${transport} COMMAND test_client_pool ${case} ${transport})
        set_tests_properties (client_${case}_${transport} PROPERTIES TIMEOUT 120)
    endforeach ()
endforeach ()

foreach (case tasks_wait_for_unreachable_broker malformed_chunk_result embedded_pool_apply_map
              embedded_terminate_stops_workers embedded_pool_accepts_outside_workers
              config_from_environment)
    add_test (NAME client_${case} COMMAND test_client_pool ${case})
    set_tests_properties (client_${case} PROPERTIES TIMEOUT 120)
endforeach ()

dpool_test (test_client_exit test_client_exit.c)
add_test (NAME client_exit_without_destroy_is_clean COMMAND test_client_exit)
set_tests_properties (client_exit_without_destroy_is_clean PROPERTIES TIMEOUT 60)

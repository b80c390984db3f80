# broker/: the broker program driven message by message by hand-made peers.
dpool_test (test_broker test_broker.c)
foreach (case dispatch_by_function_and_credit slow_tasks_not_prefetched priority_then_fifo results_routed_by_session
              dead_worker_retry_and_late_done unknown_ref_counted session_stolen queue_limit
              cancel nofunc_grace hostile_input bye_and_sigterm transport_garbage
              random_frames retry_timeout results_split_for_a_returning_client
              heartbeats_on_a_common_beat idle_workers_expire_later large_results_alone
              large_args_prefetch_bounded orphans_go_alone)
    add_test (NAME broker_${case} COMMAND test_broker ${case})
    set_tests_properties (broker_${case} PROPERTIES TIMEOUT 60)
endforeach ()

dpool_test (test_taskq test_taskq.c)
add_test (NAME broker_taskq_priority_fifo_and_remove COMMAND test_taskq)
set_tests_properties (broker_taskq_priority_fifo_and_remove PROPERTIES TIMEOUT 60)

# The broker under valgrind on the hostile cases: any invalid access or leak
# makes its exit status non-zero, which the test checks at its clean stop.
find_program (VALGRIND valgrind)
if (VALGRIND AND NOT DPOOL_SANITIZE)
    foreach (case hostile_input random_frames transport_garbage dead_worker_retry_and_late_done
                  large_results_alone results_split_for_a_returning_client)
        add_test (NAME broker_${case}_valgrind COMMAND test_broker ${case})
        set_tests_properties (broker_${case}_valgrind PROPERTIES TIMEOUT 180
            ENVIRONMENT "DPOOL_TEST_BROKER_WRAP=${VALGRIND} --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99")
    endforeach ()
endif ()

# broker/dp_queues: the named-queue store on its own, with a fake clock.
dpool_test (test_queues test_queues.c)
add_test (NAME broker_queue_store_fifo_waiters_loans_and_limits COMMAND test_queues)
set_tests_properties (broker_queue_store_fifo_waiters_loans_and_limits PROPERTIES TIMEOUT 60)

# The broker's named queues and progress, driven by hand-made peers; the
# hostile cases and the lent values also under valgrind.
dpool_test (test_broker_queue test_broker_queue.c)
foreach (case lent_values_come_back progress_before_result hostile)
    add_test (NAME broker_queue_${case} COMMAND test_broker_queue ${case})
    set_tests_properties (broker_queue_${case} PROPERTIES TIMEOUT 120)
endforeach ()
if (VALGRIND AND NOT DPOOL_SANITIZE)
    foreach (case lent_values_come_back hostile)
        add_test (NAME broker_queue_${case}_valgrind COMMAND test_broker_queue ${case})
        set_tests_properties (broker_queue_${case}_valgrind PROPERTIES TIMEOUT 240
            ENVIRONMENT "DPOOL_TEST_BROKER_WRAP=${VALGRIND} --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99")
    endforeach ()
endif ()

dpool_test (test_slab test_slab.c)
add_test (NAME broker_slab_records_reused_and_released COMMAND test_slab)
set_tests_properties (broker_slab_records_reused_and_released PROPERTIES TIMEOUT 60)

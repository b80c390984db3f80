# Never hang, never lose a task: workers and the broker killed mid-map.
dpool_test (test_chaos test_chaos.c)
add_test (NAME chaos_kill9_workers_during_10000_task_map COMMAND test_chaos kill_workers)
add_test (NAME chaos_kill9_and_restart_broker_mid_map COMMAND test_chaos restart_broker)
set_tests_properties (chaos_kill9_workers_during_10000_task_map
                      chaos_kill9_and_restart_broker_mid_map PROPERTIES TIMEOUT 150)

# Never hang, never lose a task: workers and the broker killed mid-map.
dpool_test (test_chaos test_chaos.c TIMEOUT 150)

# Backpressure: a fast submitter's memory, and the broker's, stay flat.
dpool_test (test_memory test_memory.c TIMEOUT 240)
if (DPOOL_SANITIZE)
    # AddressSanitizer holds freed memory in quarantine (256 MiB by default),
    # which would read as growth: measure without it.
    set_tests_properties (backpressure_memory_stays_flat_over_200000_tasks PROPERTIES
                          ENVIRONMENT "ASAN_OPTIONS=quarantine_size_mb=0:detect_leaks=1")
endif ()

# client/: the pool, result and iterator API against real processes - a
# dpool-broker and dpool-worker processes over tcp and over ipc - and in
# embedded mode, where the pool forks its own workers. One program a topic;
# each ctest runs one case, named for the behaviour it checks.
foreach (topic apply errors lifecycle sequential)
    dpool_test (test_client_${topic} test_client_${topic}.c TIMEOUT 120)
endforeach ()

dpool_test (test_recs test_recs.c TIMEOUT 60)

dpool_test (test_client_exit test_client_exit.c TIMEOUT 60)

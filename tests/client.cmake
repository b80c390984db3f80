# client/: the pool, result and iterator API against real processes - a
# dpool-broker and dpool-worker processes over tcp and over ipc - and in
# embedded mode, where the pool forks its own workers. One program; each
# ctest runs one case, named for the behaviour it checks.
dpool_test (test_client_pool test_client_pool.c TIMEOUT 120)

dpool_test (test_recs test_recs.c TIMEOUT 60)

dpool_test (test_client_exit test_client_exit.c TIMEOUT 60)

# broker/: the broker program driven message by message by hand-made peers;
# the hostile cases also with the broker under valgrind.
dpool_test (test_broker test_broker.c dp_testbroker.c TIMEOUT 60 VALGRIND_TIMEOUT 180)
dpool_test (test_broker_faults test_broker_faults.c dp_testbroker.c TIMEOUT 60
            VALGRIND_TIMEOUT 180)

dpool_test (test_taskq test_taskq.c TIMEOUT 60)

# broker/dp_queues: the named-queue store on its own, with a fake clock.
dpool_test (test_queues test_queues.c TIMEOUT 60)

# The broker's named queues and progress, driven by hand-made peers; the
# hostile cases and the lent values also under valgrind.
dpool_test (test_broker_queue test_broker_queue.c TIMEOUT 120 VALGRIND_TIMEOUT 240)

dpool_test (test_slab test_slab.c TIMEOUT 60)

# broker/: workers' lanes (PROTOCOL.md 5.7), driven by hand-made peers.
dpool_test (test_broker_wlane test_broker_wlane.c TIMEOUT 60)

# broker/dp_conns: connections with real processes — a killed worker's
# task runs elsewhere at once; the open-file limit and the bounds.
dpool_test (test_broker_conns test_broker_conns.c TIMEOUT 90)
# broker/: its bounds in bytes (PROTOCOL.md section 8) with small limits given
# by options, and the memory it gives back after a burst.
dpool_test (test_broker_limits test_broker_limits.c dp_testbroker.c TIMEOUT 90)

# broker/: fair share between clients (by weight and by run time) and the
# bound on a client's tasks running at once, driven by hand-made peers; the
# issue's case (an apply behind another client's long map) with real
# processes.
dpool_test (test_broker_fair test_broker_fair.c dp_testbroker.c TIMEOUT 120)

# broker/: Prometheus metrics (dpool-broker --metrics-bind) scraped with
# curl while real workers run tasks; the counter store on its own.
find_program (DPOOL_CURL curl REQUIRED)
dpool_test (test_metrics test_metrics.c TIMEOUT 120 VALGRIND_TIMEOUT 300)
target_compile_definitions (test_metrics PRIVATE DPOOL_CURL_BIN="${DPOOL_CURL}")

# Detached batches in the broker, message by message, and hostile batch messages.
dpool_test (test_broker_batch test_broker_batch.c TIMEOUT 120 VALGRIND_TIMEOUT 240)

# broker/: the journal (--journal) with real processes: the broker SIGKILLed
# 20 times under a detached session's 100,000 tasks and under named-queue
# traffic; journals refused (corrupt, cut, newer, in use, read-only) and a
# full disk. The cases that mount a tmpfs need root (else skipped: 77).
dpool_test (test_broker_journal test_broker_journal.c TIMEOUT 600
            PROPERTIES SKIP_RETURN_CODE 77)

# worker/: the registry, built-ins and plugins in process; the worker engine
# (its life with a broker, its jobs) and the supervisor as real dpool-worker
# processes against the fake broker of dp_testfake.c.
dpool_test (test_chan test_chan.c TIMEOUT 90)
dpool_test (test_worker_registry test_worker_registry.c TIMEOUT 90)
foreach (program test_worker_engine test_worker_jobs test_worker_supervisor)
    dpool_test (${program} ${program}.c dp_testfake.c TIMEOUT 90)
endforeach ()
# Plugins loaded into a test program take dpool_register from it.
set_target_properties (test_worker_registry PROPERTIES ENABLE_EXPORTS ON)
foreach (target test_worker_registry test_worker_jobs)
    target_compile_definitions (${target} PRIVATE
        DPOOL_EXAMPLE_PLUGIN="$<TARGET_FILE:dpool_example_plugin>")
    add_dependencies (${target} dpool_example_plugin)
endforeach ()

# The same dpool-worker processes against the real dpool-broker.
if (TARGET dpool-broker)
    dpool_test (test_worker_broker test_worker_broker.c TIMEOUT 90)
endif ()

# worker/: the task thread's lane against a fake broker that refuses it,
# or takes it and forgets it.
if (TARGET dpool-worker)
    dpool_test (test_worker_lane test_worker_lane.c dp_testfake.c TIMEOUT 60)
endif ()

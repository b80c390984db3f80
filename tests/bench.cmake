# bench/: one smoke test of the benchmark. It runs bench/run.py --quick (every
# workload tiny, once, on the programs of this build, delay_relay and the
# slow link's network namespace included when run as root) and checks that
# it exits 0 and prints its tables. It never looks at a figure: timing has no
# place in a pass/fail test. It needs python3 (stdlib only); mpi4py is used
# when present and skipped with a message when not.
#
# This one file has two roles: included from tests/CMakeLists.txt it adds
# the test; run with `cmake -P` (CMAKE_SCRIPT_MODE_FILE set) it is the test.

if (CMAKE_SCRIPT_MODE_FILE)
    execute_process (
        COMMAND ${PYTHON} ${RUN_PY} --quick --forwarder ${FORWARDER} --dpool-bench ${DPOOL_BENCH}
                --broker ${BROKER}
        RESULT_VARIABLE status
        OUTPUT_VARIABLE out
        ERROR_VARIABLE err)
    message ("${out}")
    if (NOT status EQUAL 0)
        message (FATAL_ERROR "bench/run.py --quick exited with ${status}:\n${err}")
    endif ()
    # The table's headings and one row of each kind of system.
    foreach (expected "## Side by side" "| workload" "tasks/s median" "| zmq fwd tcp"
                      "| zmq fwd ipc" "| pool" "| dpool embedded" "| dpool tcp" "| dpool ipc"
                      "| echo64k_stream"
                      "## Broker alone" "| broker_rss" "| broker_idle" "| cancel"
                      "## Fair share between clients" "| sequential apply p50 µs, idle broker"
                      "| no-ops/s, two clients at once" "| share of the workers' time, client A"
                      "## Worker death" "## Shell commands as tasks" "## Id maps"
                      "| dp_idmap (sequential)" "| zhashx, id keys, identity hash"
                      "## Slow link" "| relay 10 ms" "## Many workers" "newcomer's wait ms")
        string (FIND "${out}" "${expected}" at)
        if (at EQUAL -1)
            message (FATAL_ERROR "bench/run.py --quick printed no '${expected}':\n${err}")
        endif ()
    endforeach ()
    # A build with MPI has spmd_bench: its section too.
    if (SPMD)
        string (FIND "${out}" "## SPMD under mpirun" at)
        if (at EQUAL -1)
            message (FATAL_ERROR "bench/run.py --quick printed no SPMD section:\n${err}")
        endif ()
    endif ()
    return ()
endif ()

find_package (Python3 COMPONENTS Interpreter)
if (NOT Python3_Interpreter_FOUND)
    message (WARNING "python3 not found: the test bench_smoke_runs is not added")
elseif (TARGET dpool_bench AND TARGET bench_forwarder AND TARGET delay_relay
        AND TARGET dpool-broker AND TARGET bench_idmap)
    set (spmd OFF)
    if (TARGET spmd_bench)
        set (spmd ON)
    endif ()
    add_test (NAME bench_smoke_runs
              COMMAND ${CMAKE_COMMAND} -DPYTHON=${Python3_EXECUTABLE}
                      -DRUN_PY=${PROJECT_SOURCE_DIR}/bench/run.py
                      -DFORWARDER=$<TARGET_FILE:bench_forwarder>
                      -DDPOOL_BENCH=$<TARGET_FILE:dpool_bench>
                      -DBROKER=$<TARGET_FILE:dpool-broker>
                      -DSPMD=${spmd}
                      -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties (bench_smoke_runs PROPERTIES TIMEOUT 300)
endif ()

# delay_relay, the slow link (bench/delay_relay_check.py says what it checks:
# bytes unchanged both ways, never sooner than the delay, half closes, exit).
if (Python3_Interpreter_FOUND AND TARGET delay_relay)
    add_test (NAME bench_delay_relay_works
              COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/bench/delay_relay_check.py
                      $<TARGET_FILE:delay_relay>)
    set_tests_properties (bench_delay_relay_works PROPERTIES TIMEOUT 120)
endif ()

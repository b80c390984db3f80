# python/: the Python package's tests (python/tests/test_*.py), one ctest
# per module, against this build's dpool-broker, dpool-worker and dpool.
# They need an interpreter with pyzmq and msgpack (Debian's python3-zmq and
# python3-msgpack, which setup.sh installs for /usr/bin/python3), and
# test_cpython_pool also CPython's own test suite (libpython3.11-testsuite).

find_program (DPOOL_PYTHON3 python3 PATHS /usr/bin NO_DEFAULT_PATH)
if (NOT DPOOL_PYTHON3)
    find_program (DPOOL_PYTHON3 python3)
endif ()
set (python_ok 1)
if (DPOOL_PYTHON3)
    execute_process (COMMAND ${DPOOL_PYTHON3} -c "import zmq, msgpack"
                     RESULT_VARIABLE python_ok OUTPUT_QUIET ERROR_QUIET)
endif ()
if (NOT DPOOL_PYTHON3 OR NOT python_ok EQUAL 0)
    message (WARNING "no python3 with pyzmq and msgpack (./setup.sh --deps-only installs them):"
                     " the Python package's tests are not added")
    return ()
endif ()

foreach (module interop cpython_pool vectors)
    add_test (NAME python_${module}
              COMMAND ${DPOOL_PYTHON3} -m unittest -v test_${module}
              WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/python/tests)
    set_tests_properties (python_${module} PROPERTIES
        TIMEOUT 300
        ENVIRONMENT "DPOOL_BROKER_BIN=$<TARGET_FILE:dpool-broker>;DPOOL_WORKER_BIN=$<TARGET_FILE:dpool-worker>;DPOOL_CLI_BIN=$<TARGET_FILE:dpool-cli>;PYTHONDONTWRITEBYTECODE=1")
endforeach ()

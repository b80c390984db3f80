# Run after a test program is built (cmake -P): the cases it prints with
# --list must be the ones CMake read from its source and registered.
execute_process (COMMAND ${PROGRAM} --list RESULT_VARIABLE status OUTPUT_VARIABLE listed
                 ERROR_VARIABLE err)
file (READ ${EXPECTED} expected)
if (NOT status EQUAL 0)
    message (FATAL_ERROR "${PROGRAM} --list exited with ${status}: ${err}")
endif ()
if (NOT listed STREQUAL expected)
    message (FATAL_ERROR "${PROGRAM} --list printed\n${listed}\nbut CMake read from its "
                         "source and registered\n${expected}(see dp_test_case_t in "
                         "tests/dp_testutil.h for the form of the table)")
endif ()

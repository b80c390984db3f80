# CURVE: key files, who a broker with --curve-secret admits, and that the
# wire carries no plaintext (a relay of the test's own records it).
dpool_test (test_curve test_curve.c)
foreach (case keys admitted refused any_key encrypted)
    add_test (NAME curve_${case} COMMAND test_curve ${case})
    set_tests_properties (curve_${case} PROPERTIES TIMEOUT 120)
endforeach ()

# The broker under valgrind while peers with wrong or no keys knock.
find_program (VALGRIND valgrind)
if (VALGRIND AND NOT DPOOL_SANITIZE)
    add_test (NAME curve_refused_broker_valgrind COMMAND test_curve refused)
    set_tests_properties (curve_refused_broker_valgrind PROPERTIES TIMEOUT 180
        ENVIRONMENT "DPOOL_TEST_BROKER_WRAP=${VALGRIND} --quiet --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99")
endif ()

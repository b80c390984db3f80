# CURVE: key files, who a broker with --curve-secret admits, and that the
# wire carries no plaintext (a relay of the test's own records it); the
# broker also under valgrind while peers with wrong or no keys knock.
dpool_test (test_curve test_curve.c TIMEOUT 120 VALGRIND_TIMEOUT 180)
# curve_keys loads malformed key files on purpose, and CZMQ leaks on each
# (tests/lsan.supp says where).
if (DPOOL_SANITIZE)
    set_property (TEST curve_keys APPEND PROPERTY ENVIRONMENT
                  "LSAN_OPTIONS=suppressions=${CMAKE_CURRENT_SOURCE_DIR}/lsan.supp")
endif ()
# Roles and quotas per key: the key file, each role refused with its error,
# quotas reached and released, a key removed at SIGHUP (real keys, real
# broker and workers).
dpool_test (test_roles test_roles.c TIMEOUT 120)
# With CURVE, fair share between client keys: one key's sessions share its
# tenant, the key file's weight and max_running apply (and change at
# SIGHUP), and status shows each tenant's share.
dpool_test (test_tenant test_tenant.c dp_testbroker.c TIMEOUT 120)

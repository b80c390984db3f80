# CURVE: key files (a secret one that is not ZPL is refused by broker,
# worker and CLI, none showing its key), who a broker with --curve-secret
# admits, and that the wire carries no plaintext (a relay of the test's own
# records it); the broker also under valgrind while peers with wrong or no
# keys knock.
dpool_test (test_curve test_curve.c TIMEOUT 120 VALGRIND_TIMEOUT 180)
# Roles and quotas per key: the key file, each role refused with its error,
# quotas reached and released, a key removed at SIGHUP (real keys, real
# broker and workers).
dpool_test (test_roles test_roles.c TIMEOUT 120)
# With CURVE, fair share between client keys: one key's sessions share its
# tenant, the key file's weight and max_running apply (and change at
# SIGHUP), and status shows each tenant's share.
dpool_test (test_tenant test_tenant.c dp_testbroker.c TIMEOUT 120)

# "Other hosts": the broker and workers in separate network namespaces joined
# by a veth pair, the link cut in the middle of a map. Needs root and
# iproute2's ip; otherwise the test exits 77 and ctest reports it skipped.
if (TARGET dpool-broker AND TARGET dpool-worker AND TARGET dpool-cli)
    dpool_test (test_netns_partition test_netns_partition.c TIMEOUT 90
                PROPERTIES SKIP_RETURN_CODE 77 LABELS "netns;root")
    target_link_libraries (test_netns_partition PRIVATE PkgConfig::JANSSON)
endif ()

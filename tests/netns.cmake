# "Other hosts": the broker and workers in separate network namespaces joined
# by a veth pair, the link cut in the middle of a map. Needs root and
# iproute2's ip; otherwise the test exits 77 and ctest reports it skipped.
if (TARGET dpool-broker AND TARGET dpool-worker AND TARGET dpool-cli)
    dpool_test (test_netns_partition test_netns_partition.c)
    target_link_libraries (test_netns_partition PRIVATE PkgConfig::JANSSON)
    add_test (NAME netns_partition_link_cut_mid_map COMMAND test_netns_partition)
    set_tests_properties (netns_partition_link_cut_mid_map PROPERTIES
        TIMEOUT 90 SKIP_RETURN_CODE 77 LABELS "netns;root")
    add_test (NAME netns_partition_link_cut_mid_map_with_curve COMMAND test_netns_partition curve)
    set_tests_properties (netns_partition_link_cut_mid_map_with_curve PROPERTIES
        TIMEOUT 90 SKIP_RETURN_CODE 77 LABELS "netns;root")
endif ()

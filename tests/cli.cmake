# client/ programs: the dpool command, its JSON conversion, and the examples.

# JSON <-> msgpack (client/dp_json).
dpool_test (test_json test_json.c)
target_link_libraries (test_json PRIVATE dpool_json)
add_test (NAME json_roundtrip_bigints_floats_bin_and_errors COMMAND test_json)
set_tests_properties (json_roundtrip_bigints_floats_bin_and_errors PROPERTIES TIMEOUT 60)

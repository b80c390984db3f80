# proto/: codec round trips and hostile input.
dpool_test (test_proto test_proto.c)
add_test (NAME proto_roundtrip_and_hostile_input COMMAND test_proto)
set_tests_properties (proto_roundtrip_and_hostile_input PROPERTIES TIMEOUT 120)

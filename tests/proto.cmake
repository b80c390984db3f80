# proto/: codec round trips and hostile input.
dpool_test (test_proto test_proto.c)
add_test (NAME proto_roundtrip_and_hostile_input COMMAND test_proto)
set_tests_properties (proto_roundtrip_and_hostile_input PROPERTIES TIMEOUT 120)

# The libFuzzer target (clang, -DDPOOL_FUZZ=ON), run for a bounded time.
if (DPOOL_FUZZ)
    add_executable (fuzz_proto fuzz_proto.c)
    target_compile_options (fuzz_proto PRIVATE -fsanitize=fuzzer)
    target_link_options (fuzz_proto PRIVATE -fsanitize=fuzzer)
    target_link_libraries (fuzz_proto PRIVATE dpool_static)
    set (DPOOL_FUZZ_SECONDS 60 CACHE STRING "How long CI fuzzes the codec")
    add_test (NAME proto_fuzz_decode_bounded
              COMMAND fuzz_proto -max_total_time=${DPOOL_FUZZ_SECONDS} -rss_limit_mb=1024
                      -max_len=4096 -print_final_stats=1)
    set_tests_properties (proto_fuzz_decode_bounded PROPERTIES
                          TIMEOUT 300 RUN_SERIAL FALSE)
endif ()

# proto/: the named-queue and progress commands (DPP/1 additions, ids 14-21).
dpool_test (test_proto_queue test_proto_queue.c)
add_test (NAME proto_queue_and_progress_roundtrip_and_hostile_input COMMAND test_proto_queue)
set_tests_properties (proto_queue_and_progress_roundtrip_and_hostile_input PROPERTIES TIMEOUT 120)

# proto/dp_wire on real sockets: large bodies go to ZeroMQ without a copy.
dpool_test (test_wire test_wire.c)
add_test (NAME wire_large_bodies_go_without_a_copy COMMAND test_wire)
set_tests_properties (wire_large_bodies_go_without_a_copy PROPERTIES TIMEOUT 60)

# proto/dp_idmap: every operation against a model, sequential and mixing maps.
dpool_test (test_idmap test_idmap.c)
add_test (NAME proto_idmap_matches_a_model COMMAND test_idmap)
set_tests_properties (proto_idmap_matches_a_model PROPERTIES TIMEOUT 60)

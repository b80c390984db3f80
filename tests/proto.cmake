# proto/: codec round trips and hostile input.
dpool_test (test_proto test_proto.c TIMEOUT 120)

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
dpool_test (test_proto_queue test_proto_queue.c TIMEOUT 120)

# proto/dp_wire on real sockets: large bodies go to ZeroMQ without a copy.
dpool_test (test_wire test_wire.c TIMEOUT 60)

# proto/dp_idmap: every operation against a model, sequential and mixing maps.
dpool_test (test_idmap test_idmap.c TIMEOUT 60)

# docs/PROTOCOL.md's test vectors (section 11): the C codec decodes each.
dpool_test (test_vectors test_vectors.c TIMEOUT 60)
target_compile_definitions (test_vectors PRIVATE DPOOL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# proto/: the detached-batch commands (DPP/2 additions, ids 23-28).
dpool_test (test_proto_batch test_proto_batch.c TIMEOUT 120)

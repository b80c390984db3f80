# proto/: the wire protocol (messages, codec, validation), msgpack reading,
# the id map, CURVE keys, logging and clocks. It depends on no other layer.
add_library (dpool_proto OBJECT
    proto/dp_msgpack.c proto/dp_proto.c proto/dp_wire.c proto/dp_idmap.c proto/dp_util.c
    proto/dp_curve.c)
target_include_directories (dpool_proto PUBLIC ${PROJECT_SOURCE_DIR}/include
                                               ${PROJECT_SOURCE_DIR}/proto)
target_link_libraries (dpool_proto PUBLIC ${DPOOL_DEPS})
if (DPOOL_SYSTEMD)
    target_compile_definitions (dpool_proto PRIVATE DPOOL_HAVE_SYSTEMD)
endif ()

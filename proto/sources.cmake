list (APPEND DPOOL_SOURCES
    proto/dp_msgpack.c proto/dp_proto.c proto/dp_wire.c proto/dp_idmap.c proto/dp_util.c proto/dp_curve.c)

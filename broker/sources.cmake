# broker/: the broker engine (loop and commands, dispatch, peers and
# sessions, status, connections, the task queue, the slab, named queues),
# on proto/.
add_library (dpool_broker OBJECT
    broker/dp_broker.c broker/dp_broker_dispatch.c broker/dp_broker_peers.c
    broker/dp_broker_status.c broker/dp_broker_fair.c broker/dp_conns.c broker/dp_taskq.c
    broker/dp_slab.c broker/dp_queues.c broker/dp_batches.c broker/dp_keys.c broker/dp_broker_auth.c
    broker/dp_metrics.c broker/dp_broker_metrics.c broker/dp_journal.c broker/dp_broker_journal.c
    broker/dp_broker_replay.c)
target_include_directories (dpool_broker PUBLIC ${PROJECT_SOURCE_DIR}/broker)
target_link_libraries (dpool_broker PUBLIC dpool_proto PkgConfig::SQLITE3)

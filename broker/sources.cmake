list (APPEND DPOOL_SOURCES broker/dp_broker.c broker/dp_broker_dispatch.c broker/dp_broker_peers.c
     broker/dp_broker_status.c broker/dp_taskq.c broker/dp_slab.c)
list (APPEND DPOOL_SOURCES broker/dp_queues.c)

list (APPEND DPOOL_SOURCES broker/dp_broker.c broker/dp_taskq.c)
list (APPEND DPOOL_SOURCES broker/dp_queues.c)

# Library sources of client/: the pool class (its shared state), its I/O actor,
# result handles and iterators, embedded mode, and the pool API.
list (APPEND DPOOL_SOURCES
    client/dp_client.c client/dp_client_tasks.c client/dp_client_actor.c client/dp_result.c
    client/dp_pool.c client/dp_recs.c client/dp_lane.c)
list (APPEND DPOOL_SOURCES client/dp_pool_queue.c)

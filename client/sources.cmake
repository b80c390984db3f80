# client/: the pool class (its shared state), its I/O actor, lanes, result
# handles and iterators, queue handles and the pool API, on common/ and
# proto/. It knows an embedded pool's broker only as an extension.
add_library (dpool_client OBJECT
    client/dp_client.c client/dp_client_tasks.c client/dp_client_actor.c client/dp_result.c
    client/dp_pool.c client/dp_recs.c client/dp_lane.c client/dp_pool_queue.c
    client/dp_pool_batch.c client/dp_reqs.c)
target_include_directories (dpool_client PUBLIC ${PROJECT_SOURCE_DIR}/client)
target_link_libraries (dpool_client PUBLIC dpool_common)

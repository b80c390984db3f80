# embedded/: the one place that puts the client, the broker and the worker
# together: an embedded pool's broker and processes, and dpool.h's pool
# constructors.
add_library (dpool_embedded OBJECT embedded/dp_embedded.c embedded/dp_pool_new.c)
target_include_directories (dpool_embedded PUBLIC ${PROJECT_SOURCE_DIR}/embedded)
target_link_libraries (dpool_embedded PUBLIC dpool_client dpool_broker dpool_worker)

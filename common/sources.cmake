# common/: what the worker and the client both need: the registry of task
# functions and its built-ins, a task call's context, queue handles, and
# dpool.exec, commands as tasks (registered only by dpool-worker --allow-exec).
add_library (dpool_common OBJECT
    common/dp_registry.c common/dp_builtins.c common/dp_task.c common/dp_queue.c
    common/dp_exec.c common/dp_exec_run.c)
target_include_directories (dpool_common PUBLIC ${PROJECT_SOURCE_DIR}/common)
target_link_libraries (dpool_common PUBLIC dpool_proto)

# Library sources of worker/: the task registry and built-ins, one task
# call, the worker engine and the supervisor.
list (APPEND DPOOL_SOURCES
    worker/dp_chan.c worker/dp_registry.c worker/dp_builtins.c worker/dp_task.c worker/dp_worker.c
    worker/dp_worker_io.c worker/dp_worker_runner.c
    worker/dp_supervisor.c)
list (APPEND DPOOL_SOURCES worker/dp_queue.c)

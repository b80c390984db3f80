# worker/: the worker engine (lifecycle, I/O thread, task runner, the queue
# between them) and the supervisor, on common/ and proto/.
add_library (dpool_worker OBJECT
    worker/dp_chan.c worker/dp_worker.c worker/dp_worker_io.c worker/dp_worker_runner.c
    worker/dp_supervisor.c worker/dp_handshake.c)
target_include_directories (dpool_worker PUBLIC ${PROJECT_SOURCE_DIR}/worker)
target_link_libraries (dpool_worker PUBLIC dpool_common)

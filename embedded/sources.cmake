# Library sources of embedded/: the one place that puts the client, the
# broker and the worker together: an embedded pool's broker and processes,
# and dpool.h's pool constructors.
list (APPEND DPOOL_SOURCES embedded/dp_embedded.c embedded/dp_pool_new.c)

/*  dp_registry.h - the task functions this process offers, by name.

    dpool_register (in dpool.h) adds to a process-wide table that forked
    worker processes inherit. The built-in functions (echo, sleep, fail,
    crash, pid) are always offered unless the program registered the same
    name itself. The table is filled before workers start and read-only
    afterwards, so it needs no lock.
*/
#ifndef DP_REGISTRY_H_INCLUDED
#define DP_REGISTRY_H_INCLUDED

#include "dpool.h"

#include <stddef.h>

/*  Looks up a function by name (len bytes, not NUL-terminated). Returns NULL
    if none; *hint gets its hint. */
dpool_fn_t *
dp_registry_lookup (const char *name, size_t len, void **hint);

/*  The names offered, built-ins included; *count gets how many. Borrowed. */
const char *const *
dp_registry_names (size_t *count);

/*  Loads a plugin: dlopen(path) and calls its entry point
    int dpool_plugin_init (void), which registers functions with
    dpool_register. Returns 0, or -1 (and logs why). */
int
dp_registry_load_plugin (const char *path);

#endif

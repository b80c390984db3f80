/*  dp_registry.h - the task functions this process offers, by name.

    dpool_register (in dpool.h) adds to a process-wide table that forked
    worker processes inherit. The built-in functions (echo, sleep, fail,
    pid) are always offered unless the program registered the same name
    itself: a program's registration replaces a built-in whenever it is
    made. The test built-in crash, which kills the process that runs it, is
    offered only when asked: DPOOL_TEST_BUILTINS=1 in the environment when
    the table is first used, or dp_registry_test_builtins. The table is filled before workers start
   and read-only afterwards, so it needs no lock: register from one thread, before any worker runs.

    Plugins. A plugin is a shared object with an entry point

        int dpool_plugin_init (void);

    that calls dpool_register for each function it offers and returns 0 (any
    other value refuses the load). dp_registry_load_plugin (dpool-worker
    --plugin lib.so) opens it with RTLD_NOW | RTLD_GLOBAL, so every symbol it
    needs must resolve at load time; it takes dpool_register from the
    program that loads it, so build it without linking libdpool (the host's
    copy, with its registry, is the one it must use; libmsgpackc may be
    linked, it has no state).
    examples/plugin/ is a complete example.
*/
#ifndef DP_REGISTRY_H_INCLUDED
#define DP_REGISTRY_H_INCLUDED

#include "dpool.h"

#include <stdbool.h>
#include <stddef.h>

/*  The name of a plugin's entry point. */
#define DP_PLUGIN_INIT "dpool_plugin_init"

/*  Looks up a function by name (len bytes, not NUL-terminated). Returns NULL
    if none; *hint (if hint is not NULL) gets its hint. */
dpool_fn_t *
dp_registry_lookup (const char *name, size_t len, void **hint);

/*  The names offered, built-ins included, in byte order; *count gets how
    many. Borrowed: valid until the next dpool_register. */
const char *const *
dp_registry_names (size_t *count);

/*  The environment variable that, set to 1 (anything but empty or 0), has
    the test built-ins offered. */
#define DP_TEST_BUILTINS_ENV "DPOOL_TEST_BUILTINS"

/*  Offers the test built-ins too (dpool-worker --test-builtins), except
    names the program registered itself. Call it before any worker runs,
    as dpool_register. */
void
dp_registry_test_builtins (void);

/*  Loads a plugin: dlopen(path) and calls its entry point
    int dpool_plugin_init (void), which registers functions with
    dpool_register. Returns 0, or -1 (and logs why). A plugin whose entry
    point ran stays loaded for the life of the process, even if it failed:
    it may have registered functions that point into it. */
int
dp_registry_load_plugin (const char *path);

/*  ---------------------------------------------------------------------------
    Built-ins (dp_builtins.c), entered in the table before any registration:
    echo    returns its arguments unchanged;
    sleep   sleeps for its argument in seconds (a number, or an array of one
            number) and returns its arguments;
    fail    fails with its arguments as the message (a str as is, anything
            else rendered readably);
    pid     returns {"pid": n, "host": "name"} of the worker process;
    and one test built-in, offered only when asked (see above), since any
    client that may submit could use it to kill workers:
    crash   abort()s the worker process.
*/
typedef struct {
    const char *name;
    dpool_fn_t *fn;
    bool test; /* a test built-in: offered only when asked */
} dp_builtin_t;

/*  The built-in functions; *count gets how many. */
const dp_builtin_t *
dp_builtins (size_t *count);

#endif

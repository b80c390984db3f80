/*  dp_registry.c - the task functions this process offers, by name.

    One sorted array of entries (binary search by name) and, built on demand,
    the array of their names that READY announces. The built-ins are entered
    once, before the first registration or lookup, so that a program's own
    registration of the same name always replaces them.
*/
#include "dp_registry.h"

#include "dp_proto.h"
#include "dp_util.h"

#include <assert.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name; /* NUL-terminated copy */
    size_t len;
    dpool_fn_t *fn;
    void *hint;
} s_entry_t;

static s_entry_t *s_entries;
static size_t s_count;
static size_t s_capacity;
static const char **s_names; /* s_count names, rebuilt when s_names_stale */
static bool s_names_stale = true;
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

/*  Compares name (len bytes) with an entry, in byte order, shorter first on
    a common prefix. */
static int
s_compare (const char *name, size_t len, const s_entry_t *entry)
{
    size_t common = len < entry->len ? len : entry->len;
    int rc = memcmp (name, entry->name, common);
    if (rc != 0)
        return rc;
    return len < entry->len ? -1 : len > entry->len ? 1 : 0;
}

/*  Binary search: returns true and the entry's index if name is there, else
    false and the index where it belongs. */
static bool
s_find (const char *name, size_t len, size_t *index)
{
    size_t low = 0, high = s_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int rc = s_compare (name, len, &s_entries[mid]);
        if (rc == 0) {
            *index = mid;
            return true;
        }
        if (rc < 0)
            high = mid;
        else
            low = mid + 1;
    }
    *index = low;
    return false;
}

/*  Enters or replaces name. Returns 0 or -1 (out of memory). */
static int
s_put (const char *name, dpool_fn_t *fn, void *hint)
{
    size_t len = strlen (name);
    size_t index;
    if (s_find (name, len, &index)) {
        s_entries[index].fn = fn;
        s_entries[index].hint = hint;
        return 0;
    }
    if (s_count == s_capacity) {
        size_t capacity = s_capacity ? s_capacity * 2 : 16;
        s_entry_t *entries = (s_entry_t *)realloc (s_entries, capacity * sizeof *entries);
        if (!entries)
            return -1;
        s_entries = entries;
        s_capacity = capacity;
    }
    char *copy = strdup (name);
    if (!copy)
        return -1;
    memmove (&s_entries[index + 1], &s_entries[index], (s_count - index) * sizeof *s_entries);
    s_entries[index] = (s_entry_t){copy, len, fn, hint};
    s_count++;
    s_names_stale = true;
    return 0;
}

/*  Enters the built-ins: the test ones only if test, and then only where
    the program registered no function of that name. */
static void
s_put_builtins (bool test)
{
    size_t count;
    const dp_builtin_t *builtins = dp_builtins (&count);
    for (size_t i = 0; i < count; i++) {
        size_t index;
        const char *name = builtins[i].name;
        if (builtins[i].test != test || (test && s_find (name, strlen (name), &index)))
            continue;
        if (s_put (name, builtins[i].fn, NULL))
            dp_error ("out of memory entering the built-in function %s", name);
    }
}

static void
s_enter_builtins (void)
{
    s_put_builtins (false);
    const char *env = getenv (DP_TEST_BUILTINS_ENV);
    if (env && *env && strcmp (env, "0") != 0)
        s_put_builtins (true);
}

void
dp_registry_test_builtins (void)
{
    pthread_once (&s_once, s_enter_builtins);
    s_put_builtins (true);
}

int
dpool_register (const char *name, dpool_fn_t *fn, void *hint)
{
    if (!name || !fn)
        return dp_fail (DPOOL_EINVAL);
    size_t len = strlen (name);
    if (len == 0 || len > DP_MAX_NAME)
        return dp_fail (DPOOL_EINVAL);
    pthread_once (&s_once, s_enter_builtins);
    if (s_put (name, fn, hint))
        return dp_fail (DPOOL_ENOMEM);
    return 0;
}

dpool_fn_t *
dp_registry_lookup (const char *name, size_t len, void **hint)
{
    assert (name || len == 0);
    pthread_once (&s_once, s_enter_builtins);
    size_t index;
    if (!s_find (name, len, &index))
        return NULL;
    if (hint)
        *hint = s_entries[index].hint;
    return s_entries[index].fn;
}

const char *const *
dp_registry_names (size_t *count)
{
    assert (count);
    pthread_once (&s_once, s_enter_builtins);
    if (s_names_stale) {
        const char **names = (const char **)realloc (s_names, (s_count + 1) * sizeof *names);
        if (!names) {
            /*  Keep offering what was there before; it is still valid. */
            *count = s_names ? s_count : 0;
            return s_names;
        }
        for (size_t i = 0; i < s_count; i++)
            names[i] = s_entries[i].name;
        names[s_count] = NULL;
        s_names = names;
        s_names_stale = false;
    }
    *count = s_count;
    return s_names;
}

int
dp_registry_load_plugin (const char *path)
{
    assert (path);
    void *handle = dlopen (path, RTLD_NOW | RTLD_GLOBAL);
    if (!handle) {
        dp_error ("cannot load plugin %s: %s", path, dlerror ());
        return dp_fail (DPOOL_EINVAL);
    }
    dlerror ();
    int (*init) (void) = NULL;
    /*  POSIX's way to turn dlsym's void * into a function pointer. */
    *(void **)(&init) = dlsym (handle, DP_PLUGIN_INIT);
    if (!init) {
        const char *reason = dlerror ();
        dp_error ("plugin %s has no entry point %s (%s)", path, DP_PLUGIN_INIT,
                  reason ? reason : "NULL");
        dlclose (handle);
        return dp_fail (DPOOL_EINVAL);
    }
    int rc = init ();
    if (rc != 0) {
        dp_error ("plugin %s: %s() returned %d", path, DP_PLUGIN_INIT, rc);
        return dp_fail (DPOOL_EINVAL);
    }
    size_t after;
    dp_registry_names (&after);
    dp_info ("loaded plugin %s (%zu functions offered now)", path, after);
    return 0;
}

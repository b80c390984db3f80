/*  test_worker_registry.c - the task registry, the built-in functions, the
    checks around one task call, and plugins, all in process: each function
    is found through the registry and called the way a worker calls it.

    Usage: test_worker_registry CASE, CASE one of builtins, register,
    task_checks, plugin.
*/
#include "dp_testutil.h"

#include "dp_msgpack.h"
#include "dp_registry.h"
#include "dp_task.h"
#include "dp_util.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef DPOOL_EXAMPLE_PLUGIN
#define DPOOL_EXAMPLE_PLUGIN "dpool_example_plugin.so"
#endif

/*  A call made through the registry: the packed args in, the code and the
    unpacked value out. */
typedef struct {
    msgpack_sbuffer args;
    msgpack_packer pk; /* packs args */
    msgpack_sbuffer out;
    msgpack_zone zone;
    msgpack_object value;
    int code;
} call_t;

static void
s_call_init (call_t *call)
{
    msgpack_sbuffer_init (&call->args);
    msgpack_packer_init (&call->pk, &call->args, msgpack_sbuffer_write);
    msgpack_sbuffer_init (&call->out);
    msgpack_zone_init (&call->zone, 4096);
}

static void
s_call_fini (call_t *call)
{
    msgpack_sbuffer_destroy (&call->args);
    msgpack_sbuffer_destroy (&call->out);
    msgpack_zone_destroy (&call->zone);
}

/*  Unpacks the one object at data into the call's zone. */
static msgpack_object
s_unpack (call_t *call, const char *data, size_t size)
{
    msgpack_object object;
    size_t offset = 0;
    CHECK (msgpack_unpack (data, size, &offset, &call->zone, &object) == MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT (offset, size);
    return object;
}

/*  Calls fn with the args packed so far; then clears them for the next. */
static void
s_call_run (call_t *call, const char *fn)
{
    void *hint = NULL;
    dpool_fn_t *function = dp_registry_lookup (fn, strlen (fn), &hint);
    CHECK (function);
    msgpack_object args = s_unpack (call, call->args.data, call->args.size);
    dpool_task_t task;
    dp_task_init (&task, fn, strlen (fn), hint, 1);
    msgpack_sbuffer_clear (&call->out);
    call->code = dp_task_call (&task, function, &args, &call->out);
    CHECK_EQ_INT (dp_mp_count_objects (call->out.data, call->out.size), 1);
    call->value = s_unpack (call, call->out.data, call->out.size);
    if (call->code != 0)
        CHECK (call->value.type == MSGPACK_OBJECT_STR);
    msgpack_sbuffer_clear (&call->args);
}

static bool
s_str_eq (const msgpack_object *value, const char *text)
{
    return value->type == MSGPACK_OBJECT_STR && value->via.str.size == strlen (text) &&
           memcmp (value->via.str.ptr, text, value->via.str.size) == 0;
}

static bool
s_str_has (const msgpack_object *value, const char *text)
{
    char buffer[8192];
    if (value->type != MSGPACK_OBJECT_STR || value->via.str.size >= sizeof buffer)
        return false;
    memcpy (buffer, value->via.str.ptr, value->via.str.size);
    buffer[value->via.str.size] = 0;
    return strstr (buffer, text) != NULL;
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str (pk, strlen (text));
    msgpack_pack_str_body (pk, text, strlen (text));
}

/*  The value of key in a map, or NULL. */
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (s_str_eq (&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

static bool
s_offers (const char *name)
{
    size_t count;
    const char *const *names = dp_registry_names (&count);
    for (size_t i = 0; i < count; i++)
        if (strcmp (names[i], name) == 0)
            return true;
    return false;
}

/*  echo, sleep, fail and pid, as a worker runs them; and crash, a test
    built-in offered only once asked for. */
static void
s_test_builtins (void)
{
    const char *builtins[] = {"echo", "sleep", "fail", "pid"};
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        CHECK (s_offers (builtins[i]));
    CHECK (!s_offers ("crash"));
    CHECK (dp_registry_lookup ("crash", 5, NULL) == NULL);
    dp_registry_test_builtins ();
    CHECK (s_offers ("crash"));
    CHECK (dp_registry_lookup ("nope", 4, NULL) == NULL);
    CHECK (dp_registry_lookup ("echoes", 4, NULL) != NULL); /* by length: "echo" */

    call_t call;
    s_call_init (&call);

    /*  echo returns its arguments, whatever they are. */
    msgpack_pack_array (&call.pk, 3);
    msgpack_pack_int (&call.pk, -7);
    s_pack_str (&call.pk, "x");
    msgpack_pack_nil (&call.pk);
    char expected[64];
    size_t expected_size = call.args.size;
    memcpy (expected, call.args.data, expected_size);
    s_call_run (&call, "echo");
    CHECK_EQ_INT (call.code, 0);
    CHECK_EQ_INT (call.out.size, expected_size);
    CHECK (memcmp (call.out.data, expected, expected_size) == 0);

    /*  sleep takes an int, a float, or an array of one, and returns them. */
    int64_t start = dp_now_ms ();
    msgpack_pack_double (&call.pk, 0.05);
    s_call_run (&call, "sleep");
    CHECK_EQ_INT (call.code, 0);
    CHECK (call.value.type == MSGPACK_OBJECT_FLOAT64 && call.value.via.f64 == 0.05);
    CHECK (dp_now_ms () - start >= 50);
    msgpack_pack_array (&call.pk, 1);
    msgpack_pack_int (&call.pk, 0);
    s_call_run (&call, "sleep");
    CHECK_EQ_INT (call.code, 0);
    CHECK (call.value.type == MSGPACK_OBJECT_ARRAY && call.value.via.array.size == 1);
    s_pack_str (&call.pk, "soon");
    s_call_run (&call, "sleep");
    CHECK_EQ_INT (call.code, DPOOL_EFAILED);
    CHECK (s_str_has (&call.value, "number of seconds"));
    msgpack_pack_int (&call.pk, -1);
    s_call_run (&call, "sleep");
    CHECK_EQ_INT (call.code, DPOOL_EFAILED);
    CHECK (s_str_has (&call.value, "out of range"));

    /*  fail: a str is the message as is; anything else is rendered. */
    s_pack_str (&call.pk, "it broke");
    s_call_run (&call, "fail");
    CHECK_EQ_INT (call.code, DPOOL_EFAILED);
    CHECK (s_str_eq (&call.value, "it broke"));
    msgpack_pack_map (&call.pk, 1);
    s_pack_str (&call.pk, "why");
    msgpack_pack_array (&call.pk, 4);
    msgpack_pack_int (&call.pk, 1);
    msgpack_pack_double (&call.pk, 2.5);
    msgpack_pack_true (&call.pk);
    s_pack_str (&call.pk, "z");
    s_call_run (&call, "fail");
    CHECK_EQ_INT (call.code, DPOOL_EFAILED);
    CHECK (s_str_eq (&call.value, "{\"why\": [1, 2.5, true, \"z\"]}"));

    /*  pid tells this process. */
    msgpack_pack_nil (&call.pk);
    s_call_run (&call, "pid");
    CHECK_EQ_INT (call.code, 0);
    const msgpack_object *pid = s_map_get (&call.value, "pid");
    const msgpack_object *host = s_map_get (&call.value, "host");
    CHECK (pid && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    CHECK_EQ_INT (pid->via.u64, getpid ());
    CHECK (host && s_str_eq (host, dp_hostname ()));

    /*  crash aborts the process that runs it. */
    pid_t child = fork ();
    CHECK (child >= 0);
    if (child == 0) {
        signal (SIGABRT, SIG_DFL);
        dp_log_set_level (DP_LOG_ERROR);
        msgpack_pack_nil (&call.pk);
        s_call_run (&call, "crash");
        _exit (0);
    }
    int status = dp_test_wait_exit (child, 10000);
    CHECK (status != -1);
    CHECK (WIFSIGNALED (status) && WTERMSIG (status) == SIGABRT);
    s_call_fini (&call);
}

static int
s_double (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    int *calls = (int *)dpool_task_hint (task);
    (*calls)++;
    CHECK_EQ_STR (dpool_task_name (task), "echo");
    CHECK_EQ_INT (dpool_task_attempt (task), 1);
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "%s wants a number, attempt %u", dpool_task_name (task),
                                dpool_task_attempt (task));
    return msgpack_pack_uint64 (result, args->via.u64 * 2);
}

static int
s_other (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    (void)args;
    return msgpack_pack_true (result);
}

/*  A program's registration replaces a built-in; bad names are refused. */
static void
s_test_register (void)
{
    size_t before;
    dp_registry_names (&before);
    int calls = 0;
    CHECK_EQ_INT (dpool_register ("echo", s_double, &calls), 0);
    CHECK_EQ_INT (dpool_register ("my.other", s_other, NULL), 0);
    size_t count;
    const char *const *names = dp_registry_names (&count);
    CHECK_EQ_INT (count, before + 1);
    for (size_t i = 1; i < count; i++)
        CHECK (strcmp (names[i - 1], names[i]) < 0); /* sorted, no duplicates */
    CHECK (s_offers ("my.other"));

    void *hint = NULL;
    CHECK (dp_registry_lookup ("echo", 4, &hint) == s_double);
    CHECK (hint == &calls);

    call_t call;
    s_call_init (&call);
    msgpack_pack_uint64 (&call.pk, 21);
    s_call_run (&call, "echo");
    CHECK_EQ_INT (call.code, 0);
    CHECK (call.value.type == MSGPACK_OBJECT_POSITIVE_INTEGER && call.value.via.u64 == 42);
    s_pack_str (&call.pk, "x");
    s_call_run (&call, "echo");
    CHECK_EQ_INT (call.code, DPOOL_EFAILED);
    CHECK (s_str_eq (&call.value, "echo wants a number, attempt 1"));
    CHECK_EQ_INT (calls, 2);
    s_call_fini (&call);

    char long_name[DP_MAX_NAME + 2];
    memset (long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    CHECK_EQ_INT (dpool_register (long_name, s_other, NULL), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    CHECK_EQ_INT (dpool_register ("", s_other, NULL), -1);
    CHECK_EQ_INT (dpool_register (NULL, s_other, NULL), -1);
    CHECK_EQ_INT (dpool_register ("x", NULL, NULL), -1);
    long_name[DP_MAX_NAME] = 0;
    CHECK_EQ_INT (dpool_register (long_name, s_other, NULL), 0);
    CHECK (dp_registry_lookup (long_name, DP_MAX_NAME, NULL) == s_other);
}

/*  Task functions that break the rules, one per mode. */
static int
s_rogue (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    switch (args->via.u64) {
    case 0: /* "succeeds" without a result */
        return 0;
    case 1: /* two results */
        msgpack_pack_int (result, 1);
        return msgpack_pack_int (result, 2);
    case 2: /* an array missing its second item */
        msgpack_pack_array (result, 2);
        return msgpack_pack_int (result, 1);
    case 3: /* fails without saying why, after writing something */
        msgpack_pack_int (result, 1);
        return -1;
    default: { /* a message over the limit, cut inside a UTF-8 character */
        char text[DP_MAX_ERROR + 16];
        memset (text, 'a', DP_MAX_ERROR - 1);
        strcpy (text + DP_MAX_ERROR - 1, "\xc3\xa9\xc3\xa9");
        return dpool_task_fail (task, "%s", text);
    }
    }
}

/*  dp_task_call turns every misbehaviour into a failure with a message and
    leaves exactly one object after what its buffer held. */
static void
s_test_task_checks (void)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    const char *expect[] = {"wrote no result", "wrote 2 msgpack objects", "incomplete or invalid",
                            "task failed", NULL};
    for (uint64_t mode = 0; mode < 5; mode++) {
        msgpack_sbuffer_clear (&out);
        msgpack_sbuffer_write (&out, "\xc0", 1); /* something already there */
        dpool_task_t task;
        dp_task_init (&task, "rogue", 5, NULL, 2);
        msgpack_object args = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = mode};
        int code = dp_task_call (&task, s_rogue, &args, &out);
        CHECK_EQ_INT (code, DPOOL_EFAILED);
        CHECK_EQ_INT (dp_mp_count_objects (out.data, out.size), 2);
        size_t offset = 1;
        msgpack_object message;
        CHECK (msgpack_unpack (out.data, out.size, &offset, &zone, &message) ==
               MSGPACK_UNPACK_SUCCESS);
        CHECK (message.type == MSGPACK_OBJECT_STR);
        if (expect[mode])
            CHECK (s_str_has (&message, expect[mode]));
        else {
            /*  Cut to DP_MAX_ERROR bytes, before the character that crossed. */
            CHECK_EQ_INT (message.via.str.size, DP_MAX_ERROR - 1);
            CHECK (message.via.str.ptr[DP_MAX_ERROR - 2] == 'a');
        }
    }
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&out);
}

/*  The example plugin loads and its functions run through the registry. */
static void
s_test_plugin (void)
{
    CHECK_EQ_INT (dp_registry_load_plugin ("/nonexistent/plugin.so"), -1);
    CHECK_EQ_INT (dp_registry_load_plugin ("libm.so.6"), -1); /* no entry point */
    CHECK (!s_offers ("example.add"));
    CHECK_EQ_INT (dp_registry_load_plugin (DPOOL_EXAMPLE_PLUGIN), 0);
    CHECK (s_offers ("example.add"));
    CHECK (s_offers ("example.upper"));
    CHECK (s_offers ("example.wordcount"));
    CHECK (s_offers ("echo"));

    call_t call;
    s_call_init (&call);
    msgpack_pack_array (&call.pk, 3);
    msgpack_pack_int (&call.pk, 1);
    msgpack_pack_int (&call.pk, -2);
    msgpack_pack_int (&call.pk, 40);
    s_call_run (&call, "example.add");
    CHECK_EQ_INT (call.code, 0);
    CHECK (call.value.type == MSGPACK_OBJECT_POSITIVE_INTEGER && call.value.via.u64 == 39);
    msgpack_pack_array (&call.pk, 2);
    msgpack_pack_int (&call.pk, 1);
    msgpack_pack_double (&call.pk, 2.5);
    s_call_run (&call, "example.add");
    CHECK (call.value.type == MSGPACK_OBJECT_FLOAT64 && call.value.via.f64 == 3.5);
    msgpack_pack_array (&call.pk, 1);
    s_pack_str (&call.pk, "one");
    s_call_run (&call, "example.add");
    CHECK_EQ_INT (call.code, DPOOL_EFAILED);
    CHECK (s_str_has (&call.value, "not a number"));

    s_pack_str (&call.pk, "Hello, world");
    s_call_run (&call, "example.upper");
    CHECK (s_str_eq (&call.value, "HELLO, WORLD"));

    s_pack_str (&call.pk, "the quick  brown\nfox\n");
    s_call_run (&call, "example.wordcount");
    CHECK_EQ_INT (call.code, 0);
    const msgpack_object *words = s_map_get (&call.value, "words");
    const msgpack_object *lines = s_map_get (&call.value, "lines");
    const msgpack_object *bytes = s_map_get (&call.value, "bytes");
    CHECK (words && words->via.u64 == 4);
    CHECK (lines && lines->via.u64 == 2);
    CHECK (bytes && bytes->via.u64 == 21);
    s_call_fini (&call);
}

static const dp_test_case_t s_cases[] = {
    {"worker_builtins_run_in_process", s_test_builtins},
    {"worker_registration_overrides_builtins", s_test_register},
    {"worker_task_call_checks_results", s_test_task_checks},
    {"worker_plugin_loads_in_process", s_test_plugin},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 30);
}

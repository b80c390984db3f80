/*  dp_exec.c - the task function dpool.exec: its arguments, who may run
    what, and its result. The command's run itself (spawn, pipes, time
    limit, reaping) is in dp_exec_run.c; dp_exec.h is the contract.
*/
#include "dp_exec.h"
#include "dp_exec_int.h"

#include "dp_msgpack.h"
#include "dp_registry.h"
#include "dp_util.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*  Who may run what: every program, or argv[0] one of names. */
typedef struct {
    bool all;
    char *text;   /* the list, its commas turned into NULs */
    char **names; /* count names pointing into text */
    size_t count;
} s_allow_t;

static s_allow_t s_allow;

/*  Parses allow into s_allow; returns 0, or -1 with the dpool error set. */
static int
s_allow_parse (const char *allow)
{
    if (strcmp (allow, "*") == 0) {
        s_allow.all = true;
        return 0;
    }
    size_t count = 1;
    for (const char *c = allow; *c; c++)
        count += *c == ',';
    char *text = strdup (allow);
    char **names = calloc (count, sizeof *names);
    if (!text || !names) {
        free (text);
        free (names);
        return dp_fail (DPOOL_ENOMEM);
    }
    char *name = text;
    for (size_t i = 0; i < count; i++) {
        char *comma = strchr (name, ',');
        if (comma)
            *comma = 0;
        if (!*name) {
            free (text);
            free (names);
            return dp_fail (DPOOL_EINVAL);
        }
        names[i] = name;
        name = comma ? comma + 1 : name + strlen (name);
    }
    free (s_allow.text);
    free (s_allow.names);
    s_allow = (s_allow_t){false, text, names, count};
    return 0;
}

int
dp_exec_register (const char *allow)
{
    if (!allow || !*allow)
        return dp_fail (DPOOL_EINVAL);
    if (s_allow_parse (allow))
        return -1;
    return dpool_register (DP_EXEC_FN, dp_exec_fn, &s_allow);
}

/*  True if the allow list (NULL: none, every program) lets program run. */
static bool
s_allowed (const s_allow_t *allow, const char *program)
{
    if (!allow || allow->all)
        return true;
    for (size_t i = 0; i < allow->count; i++)
        if (strcmp (allow->names[i], program) == 0)
            return true;
    return false;
}

/*  True if value is a str or bin; sets *data and *size. */
static bool
s_bytes (const msgpack_object *value, const char **data, size_t *size)
{
    if (value->type == MSGPACK_OBJECT_STR) {
        *data = value->via.str.ptr;
        *size = value->via.str.size;
        return true;
    }
    if (value->type == MSGPACK_OBJECT_BIN) {
        *data = value->via.bin.ptr;
        *size = value->via.bin.size;
        return true;
    }
    return false;
}

/*  Copies the words of argv (an array of str or bin without NUL bytes) into
    one block: run->argv, NULL-terminated. Returns 0, or -1 after failing
    the task. */
static int
s_parse_argv (dpool_task_t *task, const msgpack_object *argv, dp_exec_run_t *run)
{
    if (argv->type != MSGPACK_OBJECT_ARRAY || argv->via.array.size == 0 ||
        argv->via.array.size > DP_EXEC_MAX_ARGV)
        return dpool_task_fail (task, DP_EXEC_FN ": argv must be an array of 1 to %d strings",
                                DP_EXEC_MAX_ARGV);
    uint32_t count = argv->via.array.size;
    size_t bytes = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *data;
        size_t size;
        if (!s_bytes (&argv->via.array.ptr[i], &data, &size))
            return dpool_task_fail (task, DP_EXEC_FN ": argv[%u] is not a string", i);
        if (size > 0 && memchr (data, 0, size))
            return dpool_task_fail (task, DP_EXEC_FN ": argv[%u] holds a NUL byte", i);
        if (i == 0 && size == 0)
            return dpool_task_fail (task, DP_EXEC_FN ": argv[0] is empty");
        bytes += size + 1;
    }
    size_t pointers = ((size_t)count + 1) * sizeof (char *);
    char **words = malloc (pointers + bytes);
    if (!words)
        return dpool_task_fail (task, DP_EXEC_FN ": out of memory");
    char *text = (char *)words + pointers;
    for (uint32_t i = 0; i < count; i++) {
        const char *data = NULL;
        size_t size = 0;
        s_bytes (&argv->via.array.ptr[i], &data, &size);
        if (size > 0)
            memcpy (text, data, size);
        text[size] = 0;
        words[i] = text;
        text += size + 1;
    }
    words[count] = NULL;
    run->argv = words;
    return 0;
}

/*  Reads an optional uint field (nil or absent: *value stays); returns 0,
    or -1 after failing the task. */
static int
s_parse_uint (dpool_task_t *task, const msgpack_object *args, uint32_t index, const char *what,
              uint64_t max, uint64_t *value)
{
    if (args->via.array.size <= index || args->via.array.ptr[index].type == MSGPACK_OBJECT_NIL)
        return 0;
    const msgpack_object *field = &args->via.array.ptr[index];
    if (field->type != MSGPACK_OBJECT_POSITIVE_INTEGER || field->via.u64 > max)
        return dpool_task_fail (task, DP_EXEC_FN ": %s must be nil or 0 to %llu", what,
                                (unsigned long long)max);
    *value = field->via.u64;
    return 0;
}

/*  Reads args ([argv, stdin, timeout_ms, max_output]) into run. Returns
    0, or -1 after failing the task. */
static int
s_parse (dpool_task_t *task, const msgpack_object *args, dp_exec_run_t *run)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size == 0)
        return dpool_task_fail (task, DP_EXEC_FN ": expected [argv, stdin, timeout_ms, "
                                                 "max_output]");
    const msgpack_object *fields = args->via.array.ptr;
    uint32_t size = args->via.array.size;
    if (size > DP_EXEC_ARG_STDIN && fields[DP_EXEC_ARG_STDIN].type != MSGPACK_OBJECT_NIL) {
        if (!s_bytes (&fields[DP_EXEC_ARG_STDIN], &run->in, &run->in_size))
            return dpool_task_fail (task, DP_EXEC_FN ": stdin must be nil or a string");
    }
    uint64_t timeout = 0, max_output = 0;
    if (s_parse_uint (task, args, DP_EXEC_ARG_TIMEOUT, "timeout_ms", INT32_MAX, &timeout) ||
        s_parse_uint (task, args, DP_EXEC_ARG_MAX_OUTPUT, "max_output", DP_EXEC_MAX_OUTPUT_LIMIT,
                      &max_output))
        return -1;
    run->timeout_ms = (int64_t)timeout;
    run->max_output = max_output ? (size_t)max_output : DP_EXEC_DEFAULT_MAX_OUTPUT;
    return s_parse_argv (task, &fields[DP_EXEC_ARG_ARGV], run);
}

/*  Packs a stream's kept bytes as bin. */
static int
s_pack_bin (msgpack_packer *pk, const dp_exec_stream_t *stream)
{
    return msgpack_pack_bin (pk, stream->len) ||
           msgpack_pack_bin_body (pk, stream->data ? stream->data : "", stream->len);
}

/*  Packs the result map of a finished run. Returns 0 or -1. */
static int
s_pack_result (const dp_exec_run_t *run, msgpack_packer *pk)
{
    const char *host = dp_hostname ();
    size_t host_len = strlen (host);
    return msgpack_pack_map (pk, 11) || dp_mp_pack_cstr (pk, DP_EXEC_KEY_EXIT) ||
           msgpack_pack_int (pk, run->exit_code) || dp_mp_pack_cstr (pk, DP_EXEC_KEY_SIGNAL) ||
           msgpack_pack_unsigned_int (pk, (unsigned)run->signal) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_TIMEOUT) ||
           (run->timed_out ? msgpack_pack_true (pk) : msgpack_pack_false (pk)) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_STDOUT) || s_pack_bin (pk, &run->out) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_STDERR) || s_pack_bin (pk, &run->err) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_STDOUT_SIZE) ||
           msgpack_pack_uint64 (pk, run->out.total) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_STDERR_SIZE) ||
           msgpack_pack_uint64 (pk, run->err.total) || dp_mp_pack_cstr (pk, DP_EXEC_KEY_SENT) ||
           msgpack_pack_uint64 (pk, run->in_sent) || dp_mp_pack_cstr (pk, DP_EXEC_KEY_HOST) ||
           msgpack_pack_str (pk, host_len) || msgpack_pack_str_body (pk, host, host_len) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_START_US) || msgpack_pack_uint64 (pk, run->start_us) ||
           dp_mp_pack_cstr (pk, DP_EXEC_KEY_RUN_US) || msgpack_pack_uint64 (pk, run->run_us);
}

int
dp_exec_fn (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    dp_exec_run_t run;
    dp_exec_run_init (&run);
    int rc = s_parse (task, args, &run);
    if (rc == 0 && !s_allowed (dpool_task_hint (task), run.argv[0]))
        rc = dpool_task_fail (task,
                              DP_EXEC_FN ": '%.200s' is not allowed on this worker (its "
                                         "dpool-worker --allow-exec does not list it)",
                              run.argv[0]);
    if (rc == 0 && dp_exec_run (&run))
        rc = dpool_task_fail (task, DP_EXEC_FN ": %s", run.failure);
    if (rc == 0 && s_pack_result (&run, result))
        rc = dpool_task_fail (task, DP_EXEC_FN ": out of memory");
    dp_exec_run_fini (&run);
    return rc;
}

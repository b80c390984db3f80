/*  dp_builtins.c - the functions every worker offers: echo, sleep, fail
    and pid, and the test built-in crash, offered only when asked
    (dp_registry.h). They are what tests, benchmarks and `dpool` commands
    use to exercise a pool without writing any task code.
*/
#include "dp_registry.h"

#include "dp_proto.h"
#include "dp_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SLEEP_MAX_S (366.0 * 24 * 3600) /* longer is surely a mistake */
#define NS_PER_S    1000000000L

/*  Returns its arguments unchanged. */
static int
s_echo (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    return msgpack_pack_object (result, *args);
}

/*  Reads a number of seconds: an int or a float. Returns 0 or -1. */
static int
s_seconds (const msgpack_object *value, double *seconds)
{
    switch (value->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *seconds = (double)value->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *seconds = (double)value->via.i64;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *seconds = value->via.f64;
        return 0;
    default:
        return -1;
    }
}

/*  Sleeps for args seconds (a number, or an array whose first element is
    the number), then returns args. */
static int
s_sleep (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    /*  seconds, or [seconds, anything...]: the rest rides along in the
        result, so a caller can tell its sleeps apart. */
    const msgpack_object *value = args;
    if (args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size >= 1)
        value = &args->via.array.ptr[0];
    double seconds;
    if (s_seconds (value, &seconds))
        return dpool_task_fail (task, "sleep: expected a number of seconds");
    if (!(seconds >= 0) || seconds > SLEEP_MAX_S)
        return dpool_task_fail (task, "sleep: %g seconds is out of range (0 to %.0f)", seconds,
                                SLEEP_MAX_S);
    struct timespec left;
    left.tv_sec = (time_t)seconds;
    left.tv_nsec = (long)((seconds - (double)left.tv_sec) * NS_PER_S);
    if (left.tv_nsec >= NS_PER_S)
        left.tv_nsec = NS_PER_S - 1;
    while (nanosleep (&left, &left) != 0 && errno == EINTR)
        ;
    return msgpack_pack_object (result, *args);
}

/*  A bounded text buffer for rendering. */
typedef struct {
    char *data;
    size_t size;
    size_t len;
} s_text_t;

static void
s_append (s_text_t *text, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_append (s_text_t *text, const char *format, ...)
{
    if (text->len + 1 >= text->size)
        return;
    va_list args;
    va_start (args, format);
    int n = vsnprintf (text->data + text->len, text->size - text->len, format, args);
    va_end (args);
    if (n > 0)
        text->len += (size_t)n < text->size - text->len ? (size_t)n : text->size - text->len - 1;
}

/*  Renders value readably (JSON-like) into text, quoting strs when quote. */
static void
s_render (s_text_t *text, const msgpack_object *value, bool quote)
{
    switch (value->type) {
    case MSGPACK_OBJECT_NIL:
        s_append (text, "nil");
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        s_append (text, "%s", value->via.boolean ? "true" : "false");
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        s_append (text, "%" PRIu64, value->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        s_append (text, "%" PRId64, value->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        s_append (text, "%g", value->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        s_append (text, quote ? "\"%.*s\"" : "%.*s", (int)value->via.str.size, value->via.str.ptr);
        break;
    case MSGPACK_OBJECT_BIN:
        s_append (text, "<bin of %" PRIu32 " bytes>", value->via.bin.size);
        break;
    case MSGPACK_OBJECT_EXT:
        s_append (text, "<ext type %d of %" PRIu32 " bytes>", value->via.ext.type,
                  value->via.ext.size);
        break;
    case MSGPACK_OBJECT_ARRAY:
        s_append (text, "[");
        for (uint32_t i = 0; i < value->via.array.size; i++) {
            if (i)
                s_append (text, ", ");
            s_render (text, &value->via.array.ptr[i], true);
        }
        s_append (text, "]");
        break;
    case MSGPACK_OBJECT_MAP:
        s_append (text, "{");
        for (uint32_t i = 0; i < value->via.map.size; i++) {
            if (i)
                s_append (text, ", ");
            s_render (text, &value->via.map.ptr[i].key, true);
            s_append (text, ": ");
            s_render (text, &value->via.map.ptr[i].val, true);
        }
        s_append (text, "}");
        break;
    default:
        s_append (text, "?");
        break;
    }
}

/*  Fails with args as the message: a str as is, anything else rendered. */
static int
s_fail (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)result;
    if (args->type == MSGPACK_OBJECT_STR)
        return dpool_task_fail (task, "%.*s", (int)args->via.str.size, args->via.str.ptr);
    char buffer[DP_MAX_ERROR + 1];
    s_text_t text = {buffer, sizeof buffer, 0};
    buffer[0] = 0;
    s_render (&text, args, true);
    return dpool_task_fail (task, "%s", buffer);
}

/*  Aborts the process: what a segfaulting task looks like to the pool. */
static int
s_crash (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)args;
    (void)result;
    dp_warn ("task %s: crashing on purpose", dpool_task_name (task));
    abort ();
}

/*  Returns {"pid": n, "host": "name"} of this process. */
static int
s_pid (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    (void)args;
    if (msgpack_pack_map (result, 2) || dp_mp_pack_cstr (result, "pid") ||
        msgpack_pack_int64 (result, (int64_t)getpid ()) || dp_mp_pack_cstr (result, "host") ||
        dp_mp_pack_cstr (result, dp_hostname ()))
        return dpool_task_fail (task, "pid: out of memory");
    return 0;
}

static const dp_builtin_t s_builtins[] = {{"echo", s_echo, false},
                                          {"sleep", s_sleep, false},
                                          {"fail", s_fail, false},
                                          {"crash", s_crash, true},
                                          {"pid", s_pid, false}};

const dp_builtin_t *
dp_builtins (size_t *count)
{
    *count = sizeof s_builtins / sizeof s_builtins[0];
    return s_builtins;
}

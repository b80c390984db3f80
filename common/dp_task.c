/*  dp_task.c - one call of a task function, with its checks. */
#include "dp_task.h"

#include "dp_msgpack.h"
#include "dp_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_MESSAGE "task failed"

/*  The length of the longest prefix of text (len bytes), at most max bytes,
    that does not end inside a UTF-8 sequence. Only the end is looked at:
    text that is not UTF-8 elsewhere is not this function's business. */
static size_t
s_utf8_cut (const char *text, size_t len, size_t max)
{
    size_t n = len < max ? len : max;
    size_t at = n, continuation = 0;
    while (at > 0 && continuation < 4 && ((unsigned char)text[at - 1] & 0xc0) == 0x80) {
        at--;
        continuation++;
    }
    if (at == 0)
        return n;
    unsigned char lead = (unsigned char)text[at - 1];
    size_t need = lead < 0x80             ? 1
                  : (lead & 0xe0) == 0xc0 ? 2
                  : (lead & 0xf0) == 0xe0 ? 3
                  : (lead & 0xf8) == 0xf0 ? 4
                                          : 1;
    return continuation + 1 < need ? at - 1 : n;
}

void
dp_task_init (dpool_task_t *task, const char *name, size_t len, void *hint, unsigned attempt)
{
    assert (task);
    assert (name);
    if (len > DP_MAX_NAME)
        len = DP_MAX_NAME;
    memcpy (task->name, name, len);
    task->name[len] = 0;
    task->hint = hint;
    task->attempt = attempt;
    task->failed = false;
    task->message[0] = 0;
    task->link = NULL;
    task->queues = NULL;
}

int
dpool_task_fail (dpool_task_t *task, const char *format, ...)
{
    assert (task);
    assert (format);
    va_list args;
    va_start (args, format);
    int n = vsnprintf (task->message, sizeof task->message, format, args);
    va_end (args);
    if (n < 0)
        snprintf (task->message, sizeof task->message, "%s", DEFAULT_MESSAGE);
    else if ((size_t)n >= sizeof task->message)
        task->message[s_utf8_cut (task->message, DP_MAX_ERROR, DP_MAX_ERROR)] = 0;
    task->failed = true;
    return -1;
}

void *
dpool_task_hint (dpool_task_t *task)
{
    assert (task);
    return task->hint;
}

const char *
dpool_task_name (dpool_task_t *task)
{
    assert (task);
    return task->name;
}

unsigned
dpool_task_attempt (dpool_task_t *task)
{
    assert (task);
    return task->attempt;
}

int
dpool_task_progress_value (dpool_task_t *task, const void *value, size_t size)
{
    assert (task);
    if (!value || size > DP_MAX_PROGRESS)
        return dp_fail (DPOOL_EINVAL);
    dp_reader_t reader;
    dp_reader_init (&reader, value, size);
    dp_span_t object;
    if (dp_mp_read_object_depth (&reader, &object, DP_MAX_PROGRESS_DEPTH, NULL) ||
        dp_reader_left (&reader) != 0)
        return dp_fail (DPOOL_EINVAL);
    if (task->link && task->link->progress)
        return task->link->progress (task->link->arg, value, size);
    return 0; /* called in process: nobody to tell */
}

int
dpool_task_progress (dpool_task_t *task, uint64_t done, uint64_t total)
{
    /*  [done, total]: an array header and two numbers, each a fixint or a
        uint64 (1 + 8 bytes). */
    uint8_t packed[1 + 2 * 9];
    size_t size = 0;
    packed[size++] = 0x92;
    uint64_t numbers[2] = {done, total};
    for (int i = 0; i < 2; i++) {
        uint64_t n = numbers[i];
        if (n < 0x80)
            packed[size++] = (uint8_t)n;
        else {
            packed[size++] = 0xcf;
            for (int b = 7; b >= 0; b--)
                packed[size++] = (uint8_t)(n >> (8 * b));
        }
    }
    return dpool_task_progress_value (task, packed, size);
}

int
dp_task_pack_message (msgpack_sbuffer *out, const char *message)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
    size_t len = s_utf8_cut (message, strlen (message), DP_MAX_ERROR);
    if (msgpack_pack_str (&pk, len) || msgpack_pack_str_body (&pk, message, len))
        return -1;
    return 0;
}

/*  Replaces what the call appended after mark with the message. */
static int
s_fail (msgpack_sbuffer *out, size_t mark, const char *message)
{
    out->size = mark;
    if (dp_task_pack_message (out, message)) {
        out->size = mark;
        return DPOOL_ENOMEM;
    }
    return DPOOL_EFAILED;
}

int
dp_task_call (dpool_task_t *task, dpool_fn_t *fn, const msgpack_object *args, msgpack_sbuffer *out)
{
    assert (task);
    assert (fn);
    assert (args);
    assert (out);
    size_t mark = out->size;
    task->failed = false;
    task->message[0] = 0;

    msgpack_packer pk;
    msgpack_packer_init (&pk, out, msgpack_sbuffer_write);
    int rc = fn (task, args, &pk);
    dp_task_close_queues (task);
    if (rc != 0)
        return s_fail (out, mark, task->failed ? task->message : DEFAULT_MESSAGE);

    char reason[DP_MAX_NAME + 128];
    size_t size = out->size - mark;
    int64_t count = dp_mp_count_objects (out->data + mark, size);
    if (count == 1 && size <= DP_TASK_MAX_RESULT)
        return DPOOL_OK;
    if (count == 0)
        snprintf (reason, sizeof reason, "task function '%s' returned success but wrote no result",
                  task->name);
    else if (count < 0)
        snprintf (reason, sizeof reason,
                  "task function '%s' wrote an incomplete or invalid msgpack result "
                  "(or one nested deeper than %d levels)",
                  task->name, DP_MP_MAX_DEPTH);
    else if (count > 1)
        snprintf (reason, sizeof reason,
                  "task function '%s' wrote %lld msgpack objects; a result is exactly one",
                  task->name, (long long)count);
    else
        snprintf (reason, sizeof reason,
                  "task function '%s' wrote a result of %zu bytes, over the limit of %d",
                  task->name, size, DP_TASK_MAX_RESULT);
    return s_fail (out, mark, reason);
}

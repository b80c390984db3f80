/*  fuzz_proto.c - libFuzzer target for the wire codec.

    The first input byte picks a command and the framing; the rest is the
    body (or, for the header path, a header frame followed by a body; for
    the frames path, a count, a body and payload frames, docs/PROTOCOL.md
    3). Every
    message the decoder accepts is walked to its end with the list
    iterators, and every span it returns must lie inside the input. Built
    with -DDPOOL_FUZZ=ON (clang); CI runs it for a bounded time.
*/
#include "dp_msgpack.h"
#include "dp_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *s_lo, *s_hi;

static void
s_inside (dp_span_t span)
{
    if (span.size && (span.data < s_lo || span.data + span.size > s_hi))
        abort ();
}

static void
s_walk (dp_msg_t *msg)
{
    dp_task_t task;
    dp_result_t result;
    dp_span_t str;
    uint64_t seq;
    switch (msg->cmd) {
    case DP_CMD_SUBMIT:
    case DP_CMD_DISPATCH:
        while (dp_list_next_task (&msg->u.list, msg->cmd, &task)) {
            s_inside (task.fn);
            s_inside (task.args);
            if (dp_mp_count_objects (task.args.data, task.args.size) != 1)
                abort ();
        }
        break;
    case DP_CMD_RESULT:
    case DP_CMD_DONE:
        while (dp_list_next_result (&msg->u.list, &result)) {
            s_inside (result.value);
            if (result.frame && dp_mp_count_objects (result.value.data, result.value.size) != 1)
                abort ();
        }
        break;
    case DP_CMD_READY:
        s_inside (msg->u.ready.name);
        s_inside (msg->u.ready.host);
        while (dp_list_next_str (&msg->u.ready.functions, &str))
            s_inside (str);
        break;
    case DP_CMD_CANCEL:
        while (dp_list_next_uint (&msg->u.cancel.seqs, &seq))
            ;
        break;
    case DP_CMD_HELLO:
        s_inside (msg->u.hello.session);
        s_inside (msg->u.hello.name);
        break;
    case DP_CMD_STATUS_REPLY:
        s_inside (msg->u.status);
        break;
    case DP_CMD_ERROR:
        s_inside (msg->u.error.message);
        break;
    case DP_CMD_QUEUE_OPEN:
    case DP_CMD_QUEUE_PUT:
    case DP_CMD_QUEUE_GET:
    case DP_CMD_QUEUE_SIZE:
        s_inside (msg->u.queue.name);
        s_inside (msg->u.queue.value);
        if (msg->cmd == DP_CMD_QUEUE_PUT &&
            dp_mp_count_objects (msg->u.queue.value.data, msg->u.queue.value.size) != 1)
            abort ();
        break;
    case DP_CMD_QUEUE_REPLY:
        s_inside (msg->u.queue_reply.value);
        if (dp_mp_count_objects (msg->u.queue_reply.value.data, msg->u.queue_reply.value.size) !=
            1)
            abort ();
        break;
    case DP_CMD_PROGRESS:
    case DP_CMD_WORK_STATUS:
        s_inside (msg->u.progress.value);
        if (msg->u.progress.value.size > DP_MAX_PROGRESS)
            abort ();
        break;
    case DP_CMD_BATCH_ADD:
        s_inside (msg->u.batch_add.id);
        s_inside (msg->u.batch_add.name);
        s_inside (msg->u.batch_add.fn);
        while (dp_list_next_task (&msg->u.batch_add.tasks, DP_CMD_SUBMIT, &task)) {
            s_inside (task.fn);
            s_inside (task.args);
        }
        break;
    case DP_CMD_BATCH_GET:
    case DP_CMD_BATCH_ACK:
    case DP_CMD_BATCH_CANCEL:
        s_inside (msg->u.batch.id);
        if (msg->u.batch.id.size != DP_BATCH_ID_SIZE)
            abort ();
        break;
    case DP_CMD_BATCH_REPLY: {
        dp_batch_info_t info;
        s_inside (msg->u.batch_reply.message);
        while (dp_list_next_batch (&msg->u.batch_reply.batches, &info)) {
            s_inside (info.id);
            s_inside (info.name);
            s_inside (info.fn);
        }
        while (dp_list_next_result (&msg->u.batch_reply.results, &result))
            s_inside (result.value);
        break;
    }
    default:
        break;
    }
}

/*  The frames path: a list command from the selector, then a byte for the
    count of payload frames (1 to 4), then the body and the frames, cut in
    equal parts of what is left. */
static void
s_frames (uint8_t selector, const uint8_t *data, size_t size)
{
    static const dp_cmd_t lists[] = {DP_CMD_SUBMIT, DP_CMD_DISPATCH, DP_CMD_RESULT, DP_CMD_DONE};
    if (size < 1)
        return;
    dp_cmd_t cmd = lists[selector % 4];
    uint32_t nframes = 1 + data[0] % 4;
    data++;
    size--;
    size_t part = size / (nframes + 1);
    dp_span_t frames[4];
    for (uint32_t i = 0; i < nframes; i++) {
        frames[i].data = data + part * (i + 1);
        frames[i].size = i + 1 == nframes ? size - part * (i + 1) : part;
    }
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, cmd);
    dp_msg_t msg;
    if (dp_msg_decode_frames (header, sizeof header, data, part, frames, nframes, &msg) == DP_OK)
        s_walk (&msg);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /*  Copy into an exact-size buffer so that any overread is caught. */
    uint8_t *copy = (uint8_t *)malloc (size);
    if (!copy)
        return 0;
    memcpy (copy, data, size);
    s_lo = copy;
    s_hi = copy + size;
    dp_msg_t msg;
    uint8_t selector = copy[0];
    if (selector & 0x80) {
        /*  Raw path: up to 8 bytes of header, the rest body. */
        size_t header_size = (size_t)(selector & 0x07);
        if (header_size > size - 1)
            header_size = size - 1;
        if (dp_msg_decode (copy + 1, header_size, copy + 1 + header_size, size - 1 - header_size,
                           &msg) == DP_OK)
            s_walk (&msg);
    } else if (selector & 0x40)
        s_frames (selector, copy + 1, size - 1);
    else {
        uint8_t header[DP_HEADER_SIZE];
        dp_header_encode (header, (dp_cmd_t)(1 + selector % (DP_CMD_COUNT_ - 1)));
        if (dp_msg_decode (header, sizeof header, copy + 1, size - 1, &msg) == DP_OK)
            s_walk (&msg);
    }
    dp_reader_t reader;
    dp_reader_init (&reader, copy, size);
    dp_span_t object;
    while (dp_mp_read_object (&reader, &object) == 0)
        s_inside (object);
    free (copy);
    return 0;
}

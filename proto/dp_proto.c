/*  dp_proto.c - the dpool wire protocol codec. */
#include "dp_proto.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*  Entry shapes, as arrays: the fields each version-1 entry has at least.
    Later minor versions may append fields; readers skip what they do not
    know. */
#define SUBMIT_FIELDS   7 /* seq, fn, args, priority, timeout_ms, retries, flags */
#define DISPATCH_FIELDS 6 /* ref, fn, args, timeout_ms, attempt, flags; then urgent, optional */
#define RESULT_FIELDS   3 /* id, code, value (then run_us and framed, optional) */
#define HELLO_FIELDS    2 /* session, name (then lane, optional) */
#define WELCOME_FIELDS  4 /* heartbeat_ms, expiry_ms, broker, workers (then token, optional) */
#define READY_FIELDS    5 /* name, pid, host, credit, functions */
#define CANCEL_FIELDS   2 /* all, seqs */
#define ERROR_FIELDS    2 /* code, message */
#define QOPEN_FIELDS    3 /* req, name, maxsize */
#define QPUT_FIELDS     5 /* req, name, value, timeout_ms, maxsize */
#define QGET_FIELDS     3 /* req, name, timeout_ms */
#define QSIZE_FIELDS    2 /* req, name */
#define QREPLY_FIELDS   6 /* req, code, size, maxsize, value, token */
#define QACK_FIELDS     2 /* token, accept */
#define PROGRESS_FIELDS 2 /* id, value */
#define ATTACH_FIELDS   1 /* token */
#define BADD_FIELDS     8 /* req, id, name, fn, flags, ttl_s, total, tasks */
#define BGET_FIELDS     5 /* req, id, from, max, wait_ms */
#define BACK_FIELDS     3 /* req, id, upto */
#define BLIST_FIELDS    1 /* req */
#define BCANCEL_FIELDS  2 /* req, id */
#define BREPLY_FIELDS   5 /* req, code, message, batches, results */
#define BINFO_FIELDS                                                                              \
    11 /* id, name, fn, total, added, done, failed, collected, age_ms, flags, ttl_s */
#define MAX_CODE 0xffff

static const char *s_cmd_names[DP_CMD_COUNT_] = {
    "?",    "HELLO",  "WELCOME", "READY",        "SUBMIT",    "RESULT", "DISPATCH",
    "DONE", "CANCEL", "STATUS",  "STATUS-REPLY", "HEARTBEAT", "BYE",    "ERROR"};

/*  The commands of named queues, progress and worker lanes, from
    DP_CMD_QUEUE_OPEN on. */
static const char *s_more_cmd_names[DP_CMD_COUNT_ - DP_CMD_QUEUE_OPEN] = {
    "QUEUE-OPEN", "QUEUE-PUT", "QUEUE-GET",   "QUEUE-SIZE",   "QUEUE-REPLY",
    "QUEUE-ACK",  "PROGRESS",  "WORK-STATUS", "ATTACH",       "BATCH-ADD",
    "BATCH-GET",  "BATCH-ACK", "BATCH-LIST",  "BATCH-CANCEL", "BATCH-REPLY"};

static const char *s_reason_names[DP_EREASON_COUNT_] = {
    "ok", "frames", "header", "signature", "version", "command", "body", "limit"};

const char *
dp_cmd_name (int cmd)
{
    if (cmd >= DP_CMD_QUEUE_OPEN && cmd < DP_CMD_COUNT_)
        return s_more_cmd_names[cmd - DP_CMD_QUEUE_OPEN];
    return cmd > 0 && cmd < DP_CMD_COUNT_ ? s_cmd_names[cmd] : "?";
}

const char *
dp_reason_name (int reason)
{
    return reason >= 0 && reason < DP_EREASON_COUNT_ ? s_reason_names[reason] : "?";
}

bool
dp_span_eq (dp_span_t span, const char *string)
{
    size_t len = strlen (string);
    return span.size == len && (len == 0 || memcmp (span.data, string, len) == 0);
}

void
dp_header_encode (uint8_t out[DP_HEADER_SIZE], dp_cmd_t cmd)
{
    dp_header_encode_version (out, DP_VERSION, cmd);
}

void
dp_header_encode_version (uint8_t out[DP_HEADER_SIZE], uint8_t version, dp_cmd_t cmd)
{
    out[0] = DP_SIGNATURE_0;
    out[1] = DP_SIGNATURE_1;
    out[2] = version;
    out[3] = (uint8_t)cmd;
}

uint8_t
dp_header_version (const void *data, size_t size)
{
    const uint8_t *bytes = (const uint8_t *)data;
    if (size < DP_HEADER_SIZE || bytes[0] != DP_SIGNATURE_0 || bytes[1] != DP_SIGNATURE_1)
        return 0;
    return bytes[2];
}

dp_reason_t
dp_header_decode (const void *data, size_t size, dp_cmd_t *cmd)
{
    const uint8_t *bytes = (const uint8_t *)data;
    if (size != DP_HEADER_SIZE)
        return DP_EHEADER;
    if (bytes[0] != DP_SIGNATURE_0 || bytes[1] != DP_SIGNATURE_1)
        return DP_ESIGNATURE;
    if (bytes[2] != DP_VERSION && !(bytes[2] == DP_VERSION_1 && bytes[3] == DP_CMD_ERROR))
        return DP_EVERSION;
    if (bytes[3] == 0 || bytes[3] >= DP_CMD_COUNT_)
        return DP_ECOMMAND;
    *cmd = (dp_cmd_t)bytes[3];
    return DP_OK;
}

/*  ---------------------------------------------------------------------------
    Field readers with the protocol's limits. Each returns DP_OK or a reason.
*/

/*  Opens an entry array of at least min fields; extra fields are allowed. */
static dp_reason_t
s_open (dp_reader_t *r, uint32_t min, uint32_t *count)
{
    if (dp_mp_read_array (r, count))
        return DP_EBODY;
    return *count >= min ? DP_OK : DP_EBODY;
}

/*  Skips the fields of an entry beyond the known ones. */
static dp_reason_t
s_skip_extra (dp_reader_t *r, uint32_t count, uint32_t known)
{
    for (uint32_t i = known; i < count; i++)
        if (dp_mp_read_object (r, NULL))
            return DP_EBODY;
    return DP_OK;
}

static dp_reason_t
s_name (dp_reader_t *r, dp_span_t *name, size_t min)
{
    if (dp_mp_read_str (r, name))
        return DP_EBODY;
    return name->size >= min && name->size <= DP_MAX_NAME ? DP_OK : DP_ELIMIT;
}

static dp_reason_t
s_u32 (dp_reader_t *r, uint32_t *value, uint64_t max)
{
    uint64_t v;
    if (dp_mp_read_uint (r, &v))
        return DP_EBODY;
    if (v > max)
        return DP_ELIMIT;
    *value = (uint32_t)v;
    return DP_OK;
}

static dp_reason_t
s_i32 (dp_reader_t *r, int32_t *value, int64_t min, int64_t max)
{
    int64_t v;
    if (dp_mp_read_int (r, &v))
        return DP_EBODY;
    if (v < min || v > max)
        return DP_ELIMIT;
    *value = (int32_t)v;
    return DP_OK;
}

#define TRY(expr)                                                                                 \
    do {                                                                                          \
        dp_reason_t rc_ = (expr);                                                                 \
        if (rc_ != DP_OK)                                                                         \
            return rc_;                                                                           \
    } while (0)

/*  Takes the list's next payload frame for a framed entry whose body field
    is field: nil in the body, one msgpack item of at most max_depth levels
    in the frame (checked only when the entry was not checked before).
    Sets *span to the frame and *frame to 1 + its index. */
static dp_reason_t
s_take_frame (dp_list_t *list, dp_span_t field, bool checked, int max_depth, dp_span_t *span,
              uint32_t *frame, int *depth)
{
    if (field.size != 1 || *field.data != 0xc0)
        return DP_EBODY; /* a framed entry's field is nil */
    if (!list || list->frame_next >= list->nframes)
        return DP_EFRAMES;
    uint32_t at = list->frame_next++;
    *span = list->frames[at];
    *frame = at + 1;
    if (checked)
        return DP_OK;
    dp_reader_t reader;
    dp_reader_init (&reader, span->size ? span->data : (const uint8_t *)"", span->size);
    dp_span_t item;
    if (dp_mp_read_object_depth (&reader, &item, max_depth, depth))
        return DP_EBODY;
    return dp_reader_left (&reader) == 0 ? DP_OK : DP_EBODY;
}

/*  Reads one task entry of a SUBMIT or DISPATCH list. known, if not NULL,
    is where its arguments lie in the body: given when its data is set, filled
    in otherwise. checked: the entry was validated before (an iterator). */
static dp_reason_t
s_task (dp_reader_t *r, dp_cmd_t cmd, dp_task_t *task, dp_span_t *known, dp_list_t *list,
        bool checked)
{
    uint32_t count;
    bool submit = cmd == DP_CMD_SUBMIT;
    TRY (s_open (r, submit ? SUBMIT_FIELDS : DISPATCH_FIELDS, &count));
    memset (task, 0, sizeof *task);
    if (dp_mp_read_uint (r, &task->id))
        return DP_EBODY;
    TRY (s_name (r, &task->fn, 1));
    /*  A chunk's array adds one level above its calls, each of which may
        nest as deep as a single call's arguments. */
    int depth = 0;
    if (known && known->data) {
        task->args = *known;
        r->pos = known->data + known->size;
    } else if (dp_mp_read_object_depth (r, &task->args, DP_MP_MAX_DEPTH + 1, &depth))
        return DP_EBODY;
    else if (known)
        *known = task->args;
    if (submit) {
        TRY (s_i32 (r, &task->priority, INT32_MIN, INT32_MAX));
        TRY (s_u32 (r, &task->timeout_ms, UINT32_MAX));
        TRY (s_i32 (r, &task->retries, -1, DP_MAX_RETRIES));
    } else {
        TRY (s_u32 (r, &task->timeout_ms, UINT32_MAX));
        TRY (s_u32 (r, &task->attempt, UINT32_MAX));
    }
    TRY (s_u32 (r, &task->flags, UINT32_MAX));
    if (task->flags & ~(DP_TASK_FLAGS | DP_TASK_FRAMED))
        return DP_ELIMIT;
    if (task->flags & DP_TASK_FRAMED) {
        task->flags &= ~DP_TASK_FRAMED;
        depth = 0;
        TRY (s_take_frame (list, task->args, checked, DP_MP_MAX_DEPTH + 1, &task->args,
                           &task->frame, &depth));
    }
    if (task->flags & DP_TASK_CHUNK) {
        if (*task->args.data != 0xdc && *task->args.data != 0xdd &&
            (*task->args.data & 0xf0) != 0x90)
            return DP_EBODY; /* a chunk's args must be an array of calls */
    } else if (depth > DP_MP_MAX_DEPTH)
        return DP_ELIMIT; /* one call's args nest too deep for a worker */
    if (submit)
        return s_skip_extra (r, count, SUBMIT_FIELDS);
    if (count > DISPATCH_FIELDS && dp_mp_read_bool (r, &task->urgent))
        return DP_EBODY;
    return s_skip_extra (r, count, DISPATCH_FIELDS + (count > DISPATCH_FIELDS));
}

/*  Reads a result's value: any item on success, else the message, a str
    (value spans the str item whole, so it can be forwarded as is). */
static dp_reason_t
s_result_value (dp_reader_t *r, dp_result_t *result, dp_span_t *known)
{
    if (result->code == 0) {
        /*  A chunk's value wraps each call's result in two levels:
            [[code, value], ...]. */
        if (known && known->data) {
            result->value = *known;
            r->pos = known->data + known->size;
        } else if (dp_mp_read_object_depth (r, &result->value, DP_MP_MAX_DEPTH + 2, NULL))
            return DP_EBODY;
        else if (known)
            *known = result->value;
        return DP_OK;
    }
    dp_span_t message;
    const uint8_t *start = r->pos;
    if (dp_mp_read_str (r, &message))
        return DP_EBODY;
    if (message.size > DP_MAX_ERROR)
        return DP_ELIMIT;
    result->value.data = start;
    result->value.size = (size_t)(r->pos - start);
    return DP_OK;
}

/*  Reads one result entry of a RESULT or DONE list: [id, code, value,
    run_us (optional), framed (optional)]; known and checked as for s_task. */
static dp_reason_t
s_result (dp_reader_t *r, dp_result_t *result, dp_span_t *known, dp_list_t *list, bool checked)
{
    uint32_t count;
    TRY (s_open (r, RESULT_FIELDS, &count));
    memset (result, 0, sizeof *result);
    if (dp_mp_read_uint (r, &result->id))
        return DP_EBODY;
    TRY (s_i32 (r, &result->code, 0, MAX_CODE));
    TRY (s_result_value (r, result, known));
    if (count > RESULT_FIELDS)
        TRY (s_u32 (r, &result->run_us, UINT32_MAX));
    bool framed = false;
    if (count > RESULT_FIELDS + 1 && dp_mp_read_bool (r, &framed))
        return DP_EBODY;
    if (framed) {
        if (result->code != 0)
            return DP_EBODY; /* a failure's message is always inline */
        TRY (s_take_frame (list, result->value, checked, DP_MP_MAX_DEPTH + 2, &result->value,
                           &result->frame, NULL));
    }
    uint32_t known_fields = count < RESULT_FIELDS + 2 ? count : RESULT_FIELDS + 2;
    return s_skip_extra (r, count, known_fields);
}

/*  Reads a list header and checks each entry with check; every payload
    frame must belong to one framed entry. */
static dp_reason_t
s_list (dp_reader_t *r, dp_cmd_t cmd, dp_list_t *list)
{
    uint32_t count;
    if (dp_mp_read_array (r, &count))
        return DP_EBODY;
    if (count > DP_MAX_BATCH)
        return DP_ELIMIT;
    list->reader = *r;
    list->left = count;
    list->next = 0;
    for (uint32_t i = 0; i < count; i++) {
        dp_task_t task;
        dp_result_t result;
        uint64_t seq;
        dp_span_t *known = i < DP_LIST_KNOWN ? &list->known[i] : NULL;
        switch (cmd) {
        case DP_CMD_SUBMIT:
        case DP_CMD_DISPATCH:
            TRY (s_task (r, cmd, &task, known, list, false));
            break;
        case DP_CMD_RESULT:
        case DP_CMD_DONE:
            TRY (s_result (r, &result, known, list, false));
            break;
        case DP_CMD_CANCEL:
            if (dp_mp_read_uint (r, &seq))
                return DP_EBODY;
            break;
        default:
            assert (false);
            return DP_EBODY;
        }
    }
    if (list->frame_next != list->nframes)
        return DP_EFRAMES; /* a payload frame no entry holds */
    list->frame_next = 0;
    return DP_OK;
}

static dp_reason_t
s_hello (dp_reader_t *r, dp_hello_t *hello)
{
    uint32_t count;
    TRY (s_open (r, HELLO_FIELDS, &count));
    if (dp_mp_read_bin (r, &hello->session))
        return DP_EBODY;
    if (hello->session.size != DP_SESSION_SIZE)
        return DP_ELIMIT;
    TRY (s_name (r, &hello->name, 0));
    hello->lane = 0;
    if (count > HELLO_FIELDS)
        TRY (s_u32 (r, &hello->lane, DP_MAX_LANES));
    return s_skip_extra (r, count, HELLO_FIELDS + (count > HELLO_FIELDS));
}

static dp_reason_t
s_welcome (dp_reader_t *r, dp_welcome_t *welcome)
{
    uint32_t count;
    TRY (s_open (r, WELCOME_FIELDS, &count));
    TRY (s_u32 (r, &welcome->heartbeat_ms, UINT32_MAX));
    TRY (s_u32 (r, &welcome->expiry_ms, UINT32_MAX));
    TRY (s_name (r, &welcome->broker, 0));
    TRY (s_u32 (r, &welcome->workers, UINT32_MAX));
    if (welcome->heartbeat_ms == 0 || welcome->expiry_ms < welcome->heartbeat_ms)
        return DP_ELIMIT;
    welcome->token = 0;
    if (count > WELCOME_FIELDS && dp_mp_read_uint (r, &welcome->token))
        return DP_EBODY;
    return s_skip_extra (r, count, WELCOME_FIELDS + (count > WELCOME_FIELDS));
}

static dp_reason_t
s_attach (dp_reader_t *r, dp_attach_t *attach)
{
    uint32_t count;
    TRY (s_open (r, ATTACH_FIELDS, &count));
    if (dp_mp_read_uint (r, &attach->token))
        return DP_EBODY;
    if (attach->token == 0)
        return DP_ELIMIT;
    return s_skip_extra (r, count, ATTACH_FIELDS);
}

static dp_reason_t
s_ready (dp_reader_t *r, dp_ready_t *ready)
{
    uint32_t count, nfunctions;
    TRY (s_open (r, READY_FIELDS, &count));
    TRY (s_name (r, &ready->name, 0));
    if (dp_mp_read_uint (r, &ready->pid))
        return DP_EBODY;
    TRY (s_name (r, &ready->host, 0));
    TRY (s_u32 (r, &ready->credit, DP_MAX_CREDIT));
    if (ready->credit == 0)
        return DP_ELIMIT;
    if (dp_mp_read_array (r, &nfunctions))
        return DP_EBODY;
    if (nfunctions > DP_MAX_FUNCTIONS)
        return DP_ELIMIT;
    ready->functions.reader = *r;
    ready->functions.left = nfunctions;
    for (uint32_t i = 0; i < nfunctions; i++) {
        dp_span_t name;
        TRY (s_name (r, &name, 1));
    }
    return s_skip_extra (r, count, READY_FIELDS);
}

static dp_reason_t
s_cancel (dp_reader_t *r, dp_cancel_t *cancel)
{
    uint32_t count;
    TRY (s_open (r, CANCEL_FIELDS, &count));
    if (dp_mp_read_bool (r, &cancel->all))
        return DP_EBODY;
    TRY (s_list (r, DP_CMD_CANCEL, &cancel->seqs));
    return s_skip_extra (r, count, CANCEL_FIELDS);
}

static dp_reason_t
s_error (dp_reader_t *r, dp_error_t *error)
{
    uint32_t count;
    TRY (s_open (r, ERROR_FIELDS, &count));
    TRY (s_i32 (r, &error->code, 0, MAX_CODE));
    if (dp_mp_read_str (r, &error->message))
        return DP_EBODY;
    if (error->message.size > DP_MAX_ERROR)
        return DP_ELIMIT;
    return s_skip_extra (r, count, ERROR_FIELDS);
}

/*  A value that a worker's msgpack-c can unpack, at most max bytes. */
static dp_reason_t
s_value (dp_reader_t *r, dp_span_t *value, size_t max)
{
    if (dp_mp_read_object (r, value))
        return DP_EBODY;
    return value->size <= max ? DP_OK : DP_ELIMIT;
}

/*  QUEUE-OPEN, -PUT, -GET, -SIZE. */
static dp_reason_t
s_queue_req (dp_reader_t *r, dp_cmd_t cmd, dp_queue_req_t *q)
{
    static const uint32_t fields[] = {QOPEN_FIELDS, QPUT_FIELDS, QGET_FIELDS, QSIZE_FIELDS};
    uint32_t known = fields[cmd - DP_CMD_QUEUE_OPEN];
    uint32_t count;
    TRY (s_open (r, known, &count));
    if (dp_mp_read_uint (r, &q->req))
        return DP_EBODY;
    TRY (s_name (r, &q->name, 1));
    if (cmd == DP_CMD_QUEUE_OPEN)
        TRY (s_u32 (r, &q->maxsize, DP_MAX_QUEUE_SIZE));
    else if (cmd == DP_CMD_QUEUE_PUT) {
        TRY (s_value (r, &q->value, DP_MAX_QUEUE_VALUE));
        TRY (s_i32 (r, &q->timeout_ms, -1, INT32_MAX));
        TRY (s_u32 (r, &q->maxsize, DP_MAX_QUEUE_SIZE));
    } else if (cmd == DP_CMD_QUEUE_GET)
        TRY (s_i32 (r, &q->timeout_ms, -1, INT32_MAX));
    return s_skip_extra (r, count, known);
}

static dp_reason_t
s_queue_reply (dp_reader_t *r, dp_queue_reply_t *q)
{
    uint32_t count;
    TRY (s_open (r, QREPLY_FIELDS, &count));
    if (dp_mp_read_uint (r, &q->req))
        return DP_EBODY;
    TRY (s_i32 (r, &q->code, 0, MAX_CODE));
    TRY (s_u32 (r, &q->size, DP_MAX_QUEUE_SIZE));
    TRY (s_u32 (r, &q->maxsize, DP_MAX_QUEUE_SIZE));
    if (q->code == 0)
        TRY (s_value (r, &q->value, DP_MAX_QUEUE_VALUE));
    else {
        /*  The message, spanned whole like a result's. */
        dp_span_t message;
        const uint8_t *start = r->pos;
        if (dp_mp_read_str (r, &message))
            return DP_EBODY;
        if (message.size > DP_MAX_ERROR)
            return DP_ELIMIT;
        q->value.data = start;
        q->value.size = (size_t)(r->pos - start);
    }
    if (dp_mp_read_uint (r, &q->token))
        return DP_EBODY;
    if (q->code != 0 && q->token != 0)
        return DP_EBODY; /* only a value got is acknowledged */
    return s_skip_extra (r, count, QREPLY_FIELDS);
}

static dp_reason_t
s_queue_ack (dp_reader_t *r, dp_queue_ack_t *q)
{
    uint32_t count;
    TRY (s_open (r, QACK_FIELDS, &count));
    if (dp_mp_read_uint (r, &q->token) || dp_mp_read_bool (r, &q->accept))
        return DP_EBODY;
    return s_skip_extra (r, count, QACK_FIELDS);
}

/*  PROGRESS and WORK-STATUS. */
static dp_reason_t
s_progress (dp_reader_t *r, dp_progress_t *p)
{
    uint32_t count;
    TRY (s_open (r, PROGRESS_FIELDS, &count));
    if (dp_mp_read_uint (r, &p->id))
        return DP_EBODY;
    /*  Shallow, so that the broker's status map can carry it. */
    if (dp_mp_read_object_depth (r, &p->value, DP_MAX_PROGRESS_DEPTH, NULL))
        return DP_EBODY;
    if (p->value.size > DP_MAX_PROGRESS)
        return DP_ELIMIT;
    return s_skip_extra (r, count, PROGRESS_FIELDS);
}

/*  A batch id: exactly DP_BATCH_ID_SIZE characters of lowercase hex. */
static dp_reason_t
s_batch_id (dp_reader_t *r, dp_span_t *id)
{
    if (dp_mp_read_str (r, id))
        return DP_EBODY;
    if (id->size != DP_BATCH_ID_SIZE)
        return DP_ELIMIT;
    for (size_t i = 0; i < id->size; i++) {
        uint8_t c = id->data[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return DP_ELIMIT;
    }
    return DP_OK;
}

static dp_reason_t
s_batch_add (dp_reader_t *r, dp_batch_add_t *b)
{
    uint32_t count;
    TRY (s_open (r, BADD_FIELDS, &count));
    if (dp_mp_read_uint (r, &b->req))
        return DP_EBODY;
    TRY (s_batch_id (r, &b->id));
    TRY (s_name (r, &b->name, 0));
    TRY (s_name (r, &b->fn, 1));
    TRY (s_u32 (r, &b->flags, DP_BATCH_DISCARD));
    TRY (s_u32 (r, &b->ttl_s, DP_MAX_BATCH_TTL_S));
    if (dp_mp_read_uint (r, &b->total))
        return DP_EBODY;
    TRY (s_list (r, DP_CMD_SUBMIT, &b->tasks));
    return s_skip_extra (r, count, BADD_FIELDS);
}

/*  BATCH-GET, -ACK, -LIST, -CANCEL. */
static dp_reason_t
s_batch_req (dp_reader_t *r, dp_cmd_t cmd, dp_batch_req_t *b)
{
    static const uint32_t fields[] = {BGET_FIELDS, BACK_FIELDS, BLIST_FIELDS, BCANCEL_FIELDS};
    uint32_t known = fields[cmd - DP_CMD_BATCH_GET];
    uint32_t count;
    TRY (s_open (r, known, &count));
    if (dp_mp_read_uint (r, &b->req))
        return DP_EBODY;
    if (cmd != DP_CMD_BATCH_LIST)
        TRY (s_batch_id (r, &b->id));
    if (cmd == DP_CMD_BATCH_GET || cmd == DP_CMD_BATCH_ACK)
        if (dp_mp_read_uint (r, &b->from))
            return DP_EBODY;
    if (cmd == DP_CMD_BATCH_GET) {
        TRY (s_u32 (r, &b->max, DP_MAX_BATCH));
        TRY (s_u32 (r, &b->wait_ms, DP_MAX_BATCH_WAIT_MS));
        if (b->max == 0)
            return DP_ELIMIT;
    }
    return s_skip_extra (r, count, known);
}

static dp_reason_t
s_batch_info (dp_reader_t *r, dp_batch_info_t *info)
{
    uint32_t count;
    TRY (s_open (r, BINFO_FIELDS, &count));
    TRY (s_batch_id (r, &info->id));
    TRY (s_name (r, &info->name, 0));
    TRY (s_name (r, &info->fn, 0));
    uint64_t *counts[] = {&info->total,  &info->added,     &info->done,
                          &info->failed, &info->collected, &info->age_ms};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        if (dp_mp_read_uint (r, counts[i]))
            return DP_EBODY;
    TRY (s_u32 (r, &info->flags, DP_BATCH_DISCARD | DP_BATCH_SEALED | DP_BATCH_CANCELLED));
    TRY (s_u32 (r, &info->ttl_s, DP_MAX_BATCH_TTL_S));
    return s_skip_extra (r, count, BINFO_FIELDS);
}

static dp_reason_t
s_batch_reply (dp_reader_t *r, dp_batch_reply_t *b)
{
    uint32_t count, nbatches;
    TRY (s_open (r, BREPLY_FIELDS, &count));
    if (dp_mp_read_uint (r, &b->req))
        return DP_EBODY;
    TRY (s_i32 (r, &b->code, 0, MAX_CODE));
    if (dp_mp_read_str (r, &b->message))
        return DP_EBODY;
    if (b->message.size > DP_MAX_ERROR)
        return DP_ELIMIT;
    if (dp_mp_read_array (r, &nbatches))
        return DP_EBODY;
    if (nbatches > DP_MAX_BATCH)
        return DP_ELIMIT;
    b->batches.reader = *r;
    b->batches.left = nbatches;
    for (uint32_t i = 0; i < nbatches; i++) {
        dp_batch_info_t info;
        TRY (s_batch_info (r, &info));
    }
    TRY (s_list (r, DP_CMD_RESULT, &b->results));
    return s_skip_extra (r, count, BREPLY_FIELDS);
}

/*  HEARTBEAT, BYE and STATUS: an array, of any length for later versions. */
static dp_reason_t
s_empty (dp_reader_t *r)
{
    uint32_t count;
    TRY (s_open (r, 0, &count));
    return s_skip_extra (r, count, 0);
}

dp_reason_t
dp_msg_decode (const void *header, size_t header_size, const void *body, size_t body_size,
               dp_msg_t *msg)
{
    return dp_msg_decode_frames (header, header_size, body, body_size, NULL, 0, msg);
}

/*  Checks that payload frames come only with a list command, within the
    limits of count and of size (body and frames together). */
static dp_reason_t
s_frames_fit (dp_msg_t *msg, size_t body_size, const dp_span_t *frames, uint32_t nframes)
{
    if (nframes == 0)
        return DP_OK;
    if (nframes > DP_MAX_FRAMES || (msg->cmd != DP_CMD_SUBMIT && msg->cmd != DP_CMD_DISPATCH &&
                                    msg->cmd != DP_CMD_RESULT && msg->cmd != DP_CMD_DONE))
        return DP_EFRAMES;
    size_t total = body_size;
    for (uint32_t i = 0; i < nframes; i++) {
        if (frames[i].size > DP_MAX_MSG_SIZE - total)
            return DP_ELIMIT;
        total += frames[i].size;
    }
    msg->u.list.frames = frames;
    msg->u.list.nframes = nframes;
    return DP_OK;
}

dp_reason_t
dp_msg_decode_frames (const void *header, size_t header_size, const void *body, size_t body_size,
                      const dp_span_t *frames, uint32_t nframes, dp_msg_t *msg)
{
    assert (msg);
    memset (msg, 0, sizeof *msg);
    TRY (dp_header_decode (header, header_size, &msg->cmd));
    if (body_size > DP_MAX_MSG_SIZE)
        return DP_ELIMIT;
    TRY (s_frames_fit (msg, body_size, frames, nframes));
    dp_reader_t reader;
    dp_reader_init (&reader, body_size ? body : "", body_size);
    dp_reason_t rc;
    switch (msg->cmd) {
    case DP_CMD_HELLO:
        rc = s_hello (&reader, &msg->u.hello);
        break;
    case DP_CMD_WELCOME:
        rc = s_welcome (&reader, &msg->u.welcome);
        break;
    case DP_CMD_READY:
        rc = s_ready (&reader, &msg->u.ready);
        break;
    case DP_CMD_SUBMIT:
    case DP_CMD_DISPATCH:
    case DP_CMD_RESULT:
    case DP_CMD_DONE:
        rc = s_list (&reader, msg->cmd, &msg->u.list);
        break;
    case DP_CMD_CANCEL:
        rc = s_cancel (&reader, &msg->u.cancel);
        break;
    case DP_CMD_STATUS_REPLY: {
        dp_reader_t probe = reader;
        uint32_t pairs;
        if (dp_mp_read_map (&probe, &pairs) || dp_mp_read_object (&reader, &msg->u.status))
            rc = DP_EBODY;
        else
            rc = DP_OK;
        break;
    }
    case DP_CMD_ERROR:
        rc = s_error (&reader, &msg->u.error);
        break;
    case DP_CMD_QUEUE_OPEN:
    case DP_CMD_QUEUE_PUT:
    case DP_CMD_QUEUE_GET:
    case DP_CMD_QUEUE_SIZE:
        rc = s_queue_req (&reader, msg->cmd, &msg->u.queue);
        break;
    case DP_CMD_QUEUE_REPLY:
        rc = s_queue_reply (&reader, &msg->u.queue_reply);
        break;
    case DP_CMD_QUEUE_ACK:
        rc = s_queue_ack (&reader, &msg->u.queue_ack);
        break;
    case DP_CMD_PROGRESS:
    case DP_CMD_WORK_STATUS:
        rc = s_progress (&reader, &msg->u.progress);
        break;
    case DP_CMD_ATTACH:
        rc = s_attach (&reader, &msg->u.attach);
        break;
    case DP_CMD_BATCH_ADD:
        rc = s_batch_add (&reader, &msg->u.batch_add);
        break;
    case DP_CMD_BATCH_GET:
    case DP_CMD_BATCH_ACK:
    case DP_CMD_BATCH_LIST:
    case DP_CMD_BATCH_CANCEL:
        rc = s_batch_req (&reader, msg->cmd, &msg->u.batch);
        break;
    case DP_CMD_BATCH_REPLY:
        rc = s_batch_reply (&reader, &msg->u.batch_reply);
        break;
    default: /* HEARTBEAT, BYE, STATUS */
        rc = s_empty (&reader);
        break;
    }
    if (rc != DP_OK)
        return rc;
    /*  One body holds one item; trailing bytes are malformed. */
    return dp_reader_left (&reader) == 0 ? DP_OK : DP_EBODY;
}

/*  The iterators re-read entries that dp_msg_decode already checked, so a
    failure here is a bug in this file, not bad input. */
bool
dp_list_next_task (dp_list_t *self, dp_cmd_t cmd, dp_task_t *task)
{
    if (self->left == 0)
        return false;
    dp_span_t *known = self->next < DP_LIST_KNOWN ? &self->known[self->next] : NULL;
    dp_reason_t rc = s_task (&self->reader, cmd, task, known, self, true);
    assert (rc == DP_OK);
    (void)rc;
    self->left--;
    self->next++;
    return true;
}

bool
dp_list_next_result (dp_list_t *self, dp_result_t *result)
{
    if (self->left == 0)
        return false;
    dp_span_t *known = self->next < DP_LIST_KNOWN ? &self->known[self->next] : NULL;
    dp_reason_t rc = s_result (&self->reader, result, known, self, true);
    assert (rc == DP_OK);
    (void)rc;
    self->left--;
    self->next++;
    return true;
}

bool
dp_list_next_uint (dp_list_t *self, uint64_t *value)
{
    if (self->left == 0)
        return false;
    int rc = dp_mp_read_uint (&self->reader, value);
    assert (rc == 0);
    (void)rc;
    self->left--;
    return true;
}

bool
dp_list_next_str (dp_list_t *self, dp_span_t *value)
{
    if (self->left == 0)
        return false;
    int rc = dp_mp_read_str (&self->reader, value);
    assert (rc == 0);
    (void)rc;
    self->left--;
    return true;
}

/*  ---------------------------------------------------------------------------
    Encoding.
*/
void
dp_writer_init (dp_writer_t *self)
{
    assert (self);
    memset (self, 0, sizeof *self);
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, &self->sbuf, msgpack_sbuffer_write);
}

void
dp_writer_swap (dp_writer_t *self, dp_writer_t *other)
{
    dp_writer_t saved = *self;
    self->sbuf = other->sbuf;
    self->list_at = other->list_at;
    self->list_count = other->list_count;
    self->failed = other->failed;
    self->reserve = other->reserve;
    other->sbuf = saved.sbuf;
    other->list_at = saved.list_at;
    other->list_count = saved.list_count;
    other->failed = saved.failed;
    other->reserve = saved.reserve;
}

void
dp_writer_fini (dp_writer_t *self)
{
    assert (self);
    msgpack_sbuffer_destroy (&self->sbuf);
    memset (self, 0, sizeof *self);
}

bool
dp_writer_ok (const dp_writer_t *self)
{
    return !self->failed;
}

const void *
dp_writer_data (const dp_writer_t *self)
{
    return self->sbuf.data;
}

size_t
dp_writer_size (const dp_writer_t *self)
{
    return self->sbuf.size;
}

void *
dp_writer_take (dp_writer_t *self, size_t *size)
{
    if (self->failed || !self->sbuf.data)
        return NULL;
    *size = self->sbuf.size;
    self->reserve = self->sbuf.size;
    self->list_count = 0;
    return msgpack_sbuffer_release (&self->sbuf);
}

void
dp_writer_reset (dp_writer_t *self)
{
    msgpack_sbuffer_clear (&self->sbuf);
    self->failed = false;
    self->list_count = 0;
}

/*  Starts a new body, keeping the buffer's memory (or, after a take,
    starting a buffer of the size the taken body had). */
static void
s_reset (dp_writer_t *self)
{
    if (!self->sbuf.data && self->reserve > 0) {
        char *data = (char *)malloc (self->reserve);
        if (data) {
            self->sbuf.data = data;
            self->sbuf.alloc = self->reserve;
        }
        self->reserve = 0;
    }
    dp_writer_reset (self);
}

/*  Each packer call returns 0 or -1; failure sticks until the next body. */
static void
s_check (dp_writer_t *self, int rc)
{
    if (rc != 0)
        self->failed = true;
}

static void
s_str (dp_writer_t *self, const char *string, size_t len)
{
    s_check (self, msgpack_pack_str (&self->pk, len));
    s_check (self, msgpack_pack_str_body (&self->pk, string, len));
}

static void
s_cstr (dp_writer_t *self, const char *string)
{
    string = string ? string : "";
    size_t len = strlen (string);
    s_str (self, string, len > DP_MAX_NAME ? DP_MAX_NAME : len);
}

static void
s_raw (dp_writer_t *self, const void *data, size_t size)
{
    s_check (self, msgpack_sbuffer_write (&self->sbuf, (const char *)data, size));
}

void
dp_encode_hello (dp_writer_t *self, const uint8_t session[DP_SESSION_SIZE], const char *name)
{
    dp_encode_hello_lane (self, session, name, 0);
}

void
dp_encode_hello_lane (dp_writer_t *self, const uint8_t session[DP_SESSION_SIZE], const char *name,
                      uint32_t lane)
{
    assert (lane <= DP_MAX_LANES);
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, HELLO_FIELDS + (lane > 0)));
    s_check (self, msgpack_pack_bin (&self->pk, DP_SESSION_SIZE));
    s_check (self, msgpack_pack_bin_body (&self->pk, session, DP_SESSION_SIZE));
    s_cstr (self, name);
    if (lane > 0)
        s_check (self, msgpack_pack_uint32 (&self->pk, lane));
}

void
dp_encode_welcome (dp_writer_t *self, uint32_t heartbeat_ms, uint32_t expiry_ms,
                   const char *broker, uint32_t workers)
{
    dp_encode_welcome_token (self, heartbeat_ms, expiry_ms, broker, workers, 0);
}

void
dp_encode_welcome_token (dp_writer_t *self, uint32_t heartbeat_ms, uint32_t expiry_ms,
                         const char *broker, uint32_t workers, uint64_t token)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, WELCOME_FIELDS + (token != 0)));
    s_check (self, msgpack_pack_uint32 (&self->pk, heartbeat_ms));
    s_check (self, msgpack_pack_uint32 (&self->pk, expiry_ms));
    s_cstr (self, broker);
    s_check (self, msgpack_pack_uint32 (&self->pk, workers));
    if (token != 0)
        s_check (self, msgpack_pack_uint64 (&self->pk, token));
}

void
dp_encode_attach (dp_writer_t *self, uint64_t token)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, ATTACH_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, token));
}

void
dp_encode_ready (dp_writer_t *self, const char *name, uint64_t pid, const char *host,
                 uint32_t credit, const char *const *functions, size_t nfunctions)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, READY_FIELDS));
    s_cstr (self, name);
    s_check (self, msgpack_pack_uint64 (&self->pk, pid));
    s_cstr (self, host);
    s_check (self, msgpack_pack_uint32 (&self->pk, credit));
    s_check (self, msgpack_pack_array (&self->pk, nfunctions));
    for (size_t i = 0; i < nfunctions; i++)
        s_cstr (self, functions[i]);
}

void
dp_encode_cancel (dp_writer_t *self, bool all, const uint64_t *seqs, size_t nseqs)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, CANCEL_FIELDS));
    s_check (self, all ? msgpack_pack_true (&self->pk) : msgpack_pack_false (&self->pk));
    s_check (self, msgpack_pack_array (&self->pk, nseqs));
    for (size_t i = 0; i < nseqs; i++)
        s_check (self, msgpack_pack_uint64 (&self->pk, seqs[i]));
}

void
dp_encode_error (dp_writer_t *self, int32_t code, const char *message)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, ERROR_FIELDS));
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    size_t len = strlen (message);
    s_str (self, message, len > DP_MAX_ERROR ? DP_MAX_ERROR : len);
}

void
dp_encode_empty (dp_writer_t *self)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, 0));
}

void
dp_encode_queue_open (dp_writer_t *self, uint64_t req, const char *name, uint32_t maxsize)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QOPEN_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    s_cstr (self, name);
    s_check (self, msgpack_pack_uint32 (&self->pk, maxsize));
}

void
dp_encode_queue_put (dp_writer_t *self, uint64_t req, const char *name, const void *value,
                     size_t size, int32_t timeout_ms, uint32_t maxsize)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QPUT_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    s_cstr (self, name);
    s_raw (self, value, size);
    s_check (self, msgpack_pack_int32 (&self->pk, timeout_ms));
    s_check (self, msgpack_pack_uint32 (&self->pk, maxsize));
}

void
dp_encode_queue_get (dp_writer_t *self, uint64_t req, const char *name, int32_t timeout_ms)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QGET_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    s_cstr (self, name);
    s_check (self, msgpack_pack_int32 (&self->pk, timeout_ms));
}

void
dp_encode_queue_size (dp_writer_t *self, uint64_t req, const char *name)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QSIZE_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    s_cstr (self, name);
}

void
dp_encode_queue_reply (dp_writer_t *self, uint64_t req, uint32_t size, uint32_t maxsize,
                       const void *value, size_t value_size, uint64_t token)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QREPLY_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    s_check (self, msgpack_pack_int32 (&self->pk, 0));
    s_check (self, msgpack_pack_uint32 (&self->pk, size));
    s_check (self, msgpack_pack_uint32 (&self->pk, maxsize));
    if (value)
        s_raw (self, value, value_size);
    else
        s_check (self, msgpack_pack_nil (&self->pk));
    s_check (self, msgpack_pack_uint64 (&self->pk, token));
}

void
dp_encode_queue_fail (dp_writer_t *self, uint64_t req, int32_t code, uint32_t size,
                      uint32_t maxsize, const char *message)
{
    assert (code != 0);
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QREPLY_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    s_check (self, msgpack_pack_uint32 (&self->pk, size));
    s_check (self, msgpack_pack_uint32 (&self->pk, maxsize));
    message = message ? message : "";
    size_t len = strlen (message);
    s_str (self, message, len > DP_MAX_ERROR ? DP_MAX_ERROR : len);
    s_check (self, msgpack_pack_uint64 (&self->pk, 0));
}

void
dp_encode_queue_ack (dp_writer_t *self, uint64_t token, bool accept)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, QACK_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, token));
    s_check (self, accept ? msgpack_pack_true (&self->pk) : msgpack_pack_false (&self->pk));
}

void
dp_encode_progress (dp_writer_t *self, uint64_t id, const void *value, size_t size)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, PROGRESS_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, id));
    s_raw (self, value, size);
}

/*  A list's header is always array32, written as a placeholder and filled
    in by dp_list_end, so entries can be streamed without counting first. */
void
dp_list_begin (dp_writer_t *self)
{
    static const uint8_t placeholder[5] = {0xdd, 0, 0, 0, 0};
    s_reset (self);
    self->list_at = self->sbuf.size;
    s_raw (self, placeholder, sizeof placeholder);
}

void
dp_list_open (dp_writer_t *self)
{
    static const uint8_t placeholder[5] = {0xdd, 0, 0, 0, 0};
    self->list_at = self->sbuf.size;
    self->list_count = 0;
    s_raw (self, placeholder, sizeof placeholder);
}

/*  Adds a task with its args, packed, and its flags. */
static void
s_add_task (dp_writer_t *self, dp_cmd_t cmd, const dp_task_t *task, dp_span_t args, uint32_t flags)
{
    assert (cmd == DP_CMD_SUBMIT || cmd == DP_CMD_DISPATCH);
    bool submit = cmd == DP_CMD_SUBMIT;
    /*  urgent travels only when true: other jobs are as before it existed. */
    bool urgent = !submit && task->urgent;
    s_check (self,
             msgpack_pack_array (&self->pk, submit ? SUBMIT_FIELDS : DISPATCH_FIELDS + urgent));
    s_check (self, msgpack_pack_uint64 (&self->pk, task->id));
    s_str (self, (const char *)task->fn.data, task->fn.size);
    s_raw (self, args.data, args.size);
    if (submit) {
        s_check (self, msgpack_pack_int32 (&self->pk, task->priority));
        s_check (self, msgpack_pack_uint32 (&self->pk, task->timeout_ms));
        s_check (self, msgpack_pack_int32 (&self->pk, task->retries));
    } else {
        s_check (self, msgpack_pack_uint32 (&self->pk, task->timeout_ms));
        s_check (self, msgpack_pack_uint32 (&self->pk, task->attempt));
    }
    s_check (self, msgpack_pack_uint32 (&self->pk, flags));
    if (urgent)
        s_check (self, msgpack_pack_true (&self->pk));
    self->list_count++;
}

void
dp_list_add_task (dp_writer_t *self, dp_cmd_t cmd, const dp_task_t *task)
{
    s_add_task (self, cmd, task, task->args, task->flags);
}

void
dp_list_add_task_framed (dp_writer_t *self, dp_cmd_t cmd, const dp_task_t *task)
{
    static const uint8_t nil = 0xc0;
    s_add_task (self, cmd, task, (dp_span_t){&nil, 1}, task->flags | DP_TASK_FRAMED);
}

void
dp_list_add_result_framed (dp_writer_t *self, uint64_t id, uint32_t run_us)
{
    s_check (self, msgpack_pack_array (&self->pk, RESULT_FIELDS + 2));
    s_check (self, msgpack_pack_uint64 (&self->pk, id));
    s_check (self, msgpack_pack_int32 (&self->pk, 0));
    s_check (self, msgpack_pack_nil (&self->pk));
    s_check (self, msgpack_pack_uint32 (&self->pk, run_us));
    s_check (self, msgpack_pack_true (&self->pk));
    self->list_count++;
}

void
dp_list_add_result (dp_writer_t *self, uint64_t id, int32_t code, const void *value, size_t size)
{
    s_check (self, msgpack_pack_array (&self->pk, RESULT_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, id));
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    s_raw (self, value, size);
    self->list_count++;
}

void
dp_list_add_result_run (dp_writer_t *self, uint64_t id, int32_t code, const void *value,
                        size_t size, uint32_t run_us)
{
    s_check (self, msgpack_pack_array (&self->pk, RESULT_FIELDS + 1));
    s_check (self, msgpack_pack_uint64 (&self->pk, id));
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    s_raw (self, value, size);
    s_check (self, msgpack_pack_uint32 (&self->pk, run_us));
    self->list_count++;
}

void
dp_list_add_error_run (dp_writer_t *self, uint64_t id, int32_t code, const char *message,
                       uint32_t run_us)
{
    assert (code != 0);
    s_check (self, msgpack_pack_array (&self->pk, RESULT_FIELDS + 1));
    s_check (self, msgpack_pack_uint64 (&self->pk, id));
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    message = message ? message : "";
    size_t len = strlen (message);
    s_str (self, message, len > DP_MAX_ERROR ? DP_MAX_ERROR : len);
    s_check (self, msgpack_pack_uint32 (&self->pk, run_us));
    self->list_count++;
}

void
dp_list_add_error (dp_writer_t *self, uint64_t id, int32_t code, const char *message)
{
    assert (code != 0);
    s_check (self, msgpack_pack_array (&self->pk, RESULT_FIELDS));
    s_check (self, msgpack_pack_uint64 (&self->pk, id));
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    message = message ? message : "";
    size_t len = strlen (message);
    s_str (self, message, len > DP_MAX_ERROR ? DP_MAX_ERROR : len);
    self->list_count++;
}

void
dp_list_inline (dp_writer_t *self, dp_cmd_t cmd, dp_list_t *list)
{
    dp_list_begin (self);
    if (cmd == DP_CMD_SUBMIT || cmd == DP_CMD_DISPATCH) {
        dp_task_t task;
        while (dp_list_next_task (list, cmd, &task))
            dp_list_add_task (self, cmd, &task);
    } else {
        assert (cmd == DP_CMD_RESULT || cmd == DP_CMD_DONE);
        dp_result_t result;
        while (dp_list_next_result (list, &result))
            dp_list_add_result_run (self, result.id, result.code, result.value.data,
                                    result.value.size, result.run_us);
    }
    dp_list_end (self);
}

uint32_t
dp_list_count (const dp_writer_t *self)
{
    return self->list_count;
}

void
dp_list_end (dp_writer_t *self)
{
    assert (self->list_count <= DP_MAX_BATCH);
    if (self->failed)
        return;
    uint8_t *at = (uint8_t *)self->sbuf.data + self->list_at + 1;
    uint32_t n = self->list_count;
    at[0] = (uint8_t)(n >> 24);
    at[1] = (uint8_t)(n >> 16);
    at[2] = (uint8_t)(n >> 8);
    at[3] = (uint8_t)n;
}

/*  ---------------------------------------------------------------------------
    Batches.
*/

static void
s_batch_head (dp_writer_t *self, uint32_t fields, uint64_t req, const char *id)
{
    s_reset (self);
    s_check (self, msgpack_pack_array (&self->pk, fields));
    s_check (self, msgpack_pack_uint64 (&self->pk, req));
    if (id)
        s_cstr (self, id);
}

void
dp_encode_batch_add (dp_writer_t *self, uint64_t req, const char *id, const char *name,
                     const char *fn, uint32_t flags, uint32_t ttl_s, uint64_t total)
{
    s_batch_head (self, BADD_FIELDS, req, id);
    s_cstr (self, name);
    s_cstr (self, fn);
    s_check (self, msgpack_pack_uint32 (&self->pk, flags));
    s_check (self, msgpack_pack_uint32 (&self->pk, ttl_s));
    s_check (self, msgpack_pack_uint64 (&self->pk, total));
}

void
dp_encode_batch_get (dp_writer_t *self, uint64_t req, const char *id, uint64_t from, uint32_t max,
                     uint32_t wait_ms)
{
    s_batch_head (self, BGET_FIELDS, req, id);
    s_check (self, msgpack_pack_uint64 (&self->pk, from));
    s_check (self, msgpack_pack_uint32 (&self->pk, max));
    s_check (self, msgpack_pack_uint32 (&self->pk, wait_ms));
}

void
dp_encode_batch_ack (dp_writer_t *self, uint64_t req, const char *id, uint64_t upto)
{
    s_batch_head (self, BACK_FIELDS, req, id);
    s_check (self, msgpack_pack_uint64 (&self->pk, upto));
}

void
dp_encode_batch_list (dp_writer_t *self, uint64_t req)
{
    s_batch_head (self, BLIST_FIELDS, req, NULL);
}

void
dp_encode_batch_cancel (dp_writer_t *self, uint64_t req, const char *id)
{
    s_batch_head (self, BCANCEL_FIELDS, req, id);
}

void
dp_encode_batch_reply (dp_writer_t *self, uint64_t req, int32_t code, const char *message)
{
    s_batch_head (self, BREPLY_FIELDS, req, NULL);
    s_check (self, msgpack_pack_int32 (&self->pk, code));
    message = message ? message : "";
    size_t len = strlen (message);
    s_str (self, message, len > DP_MAX_ERROR ? DP_MAX_ERROR : len);
}

void
dp_list_add_batch (dp_writer_t *self, const dp_batch_info_t *info)
{
    s_check (self, msgpack_pack_array (&self->pk, BINFO_FIELDS));
    s_str (self, (const char *)info->id.data, info->id.size);
    s_str (self, (const char *)info->name.data, info->name.size);
    s_str (self, (const char *)info->fn.data, info->fn.size);
    uint64_t counts[] = {info->total,  info->added,     info->done,
                         info->failed, info->collected, info->age_ms};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        s_check (self, msgpack_pack_uint64 (&self->pk, counts[i]));
    s_check (self, msgpack_pack_uint32 (&self->pk, info->flags));
    s_check (self, msgpack_pack_uint32 (&self->pk, info->ttl_s));
    self->list_count++;
}

bool
dp_list_next_batch (dp_list_t *self, dp_batch_info_t *info)
{
    if (self->left == 0)
        return false;
    dp_reason_t rc = s_batch_info (&self->reader, info);
    assert (rc == DP_OK);
    (void)rc;
    self->left--;
    self->next++;
    return true;
}

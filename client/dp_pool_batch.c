/*  dp_pool_batch.c - detached batches reached from a program: the
    requests' table the actor serves (dp_pool_batch.h), and dpool.h's
    dpool_batch_* on top of it.

    Locking: the table lives in the pool's shared state, under the pool's
    one mutex (dp_client.h). A request record is on its caller's stack: it
    is reachable from the table only while its caller waits, and the
    caller takes it out (or finds it answered) before returning. The actor
    encodes requests under the lock and sends without it.
*/
#include "dp_pool_batch.h"

#include "dp_reqs.h"
#include "dp_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADD_TASKS     1000       /* tasks in one BATCH-ADD */
#define ADD_BYTES     (4u << 20) /* and bytes of their arguments */
#define GET_RESULTS   1000       /* results asked for in one BATCH-GET */
#define GET_SLICE_MS  10000      /* longest wait of one BATCH-GET */
#define CALL_SLACK_MS 10000      /* a request waits this long past the broker's wait */
#define CALL_MS       30000      /* a request that does not wait at the broker */
#define MAX_ARGS      (DP_MAX_MSG_SIZE - (128u << 10)) /* one task's packed arguments */

typedef void (s_encode_fn) (dp_writer_t *w, uint64_t req, void *arg);

/*  One request in flight: its caller waits for it (dp_reqs.h). */
typedef struct {
    dp_req_t head;
    dp_cmd_t cmd;
    s_encode_fn *encode;
    void *arg;
    void *reply; /* the BATCH-REPLY's body (malloc) */
    size_t reply_size;
} s_op_t;

/*  ---------------------------------------------------------------------------
    The caller's side.
*/

/*  Sends a request and waits up to timeout_ms for its reply. Returns 0 and
    the reply's body (caller frees), or -1 and a code and message. */
static int
s_call (dpool_pool_t *pool, dp_cmd_t cmd, s_encode_fn *encode, void *arg, int timeout_ms,
        void **reply, size_t *reply_size, char *error, size_t error_size)
{
    s_op_t op = {.cmd = cmd, .encode = encode, .arg = arg};
    const char *why;
    int code = dp_reqs_enter (pool, dp_client_batch_reqs (pool), &op.head, &why);
    if (code) {
        snprintf (error, error_size, "%s", why);
        return dp_fail (code);
    }
    dp_client_lock (pool);
    code = dp_reqs_wait (pool, *dp_client_batch_reqs (pool), &op.head, dp_now_ms () + timeout_ms);
    dp_client_unlock (pool);
    if (code == DPOOL_ECLOSED)
        snprintf (error, error_size, "the pool was terminated");
    else if (code) {
        code = DPOOL_EUNREACHABLE;
        snprintf (error, error_size, "the broker did not answer in time");
    } else if (!op.reply) {
        code = DPOOL_ENOMEM;
        snprintf (error, error_size, "out of memory for the broker's reply");
    }
    if (code)
        return dp_fail (code);
    *reply = op.reply;
    *reply_size = op.reply_size;
    return 0;
}

/*  ---------------------------------------------------------------------------
    The actor's side.
*/

int
dp_pool_batch_send (dpool_pool_t *pool, uint64_t conn, dp_pool_queue_send_fn *send, void *arg)
{
    dp_client_lock (pool);
    dp_req_t **reqs;
    size_t count;
    int rc = dp_reqs_unsent (*dp_client_batch_reqs (pool), conn, &reqs, &count);
    dp_writer_t *bodies = count ? (dp_writer_t *)calloc (count, sizeof *bodies) : NULL;
    dp_cmd_t *cmds = count ? (dp_cmd_t *)calloc (count, sizeof *cmds) : NULL;
    size_t nbodies = 0;
    if (bodies && cmds)
        for (size_t i = 0; i < count; i++) {
            s_op_t *op = (s_op_t *)reqs[i];
            op->head.sent_conn = conn;
            dp_writer_init (&bodies[nbodies]);
            op->encode (&bodies[nbodies], op->head.req, op->arg);
            cmds[nbodies++] = op->cmd;
        }
    else if (rc != 0 || count)
        dp_error ("client: out of memory sending batch requests");
    dp_client_unlock (pool);
    rc = 0;
    for (size_t i = 0; i < nbodies; i++) {
        if (rc == 0 && dp_writer_ok (&bodies[i]))
            rc = send (arg, cmds[i], &bodies[i]);
        dp_writer_fini (&bodies[i]);
    }
    free (bodies);
    free (cmds);
    free (reqs);
    return rc;
}

void
dp_pool_batch_reply (dpool_pool_t *pool, uint64_t req, const void *body, size_t size)
{
    void *copy = malloc (size ? size : 1);
    if (copy)
        memcpy (copy, body, size);
    dp_client_lock (pool);
    s_op_t *op = (s_op_t *)dp_reqs_take (*dp_client_batch_reqs (pool), req);
    if (op) {
        op->reply = copy;
        op->reply_size = size;
        op->head.done = true;
        copy = NULL;
        dp_client_broadcast (pool);
    }
    dp_client_unlock (pool);
    free (copy);
}

/*  ---------------------------------------------------------------------------
    Batch handles (dpool.h).
*/

struct _dpool_batch_t {
    dpool_pool_t *pool;
    char id[DP_BATCH_ID_SIZE + 1];
    char fn[DP_MAX_NAME + 1];
    char name[DP_MAX_NAME + 1];
    uint32_t flags;
    uint32_t ttl_s;
    uint32_t timeout_ms;
    int32_t retries;
    /*  Tasks added, not yet sent: their arguments, one after another. */
    msgpack_sbuffer args;
    size_t *sizes;
    size_t nargs;
    size_t cap;
    uint64_t added; /* acknowledged by the broker */
    /*  Reading: the last BATCH-REPLY with results, walked in order. */
    void *reply;
    dp_list_t results;
    uint64_t from;     /* the next index to read */
    uint64_t returned; /* results below it were returned */
    dpool_batch_info_t info;
    bool have_info;
    char error[DP_MAX_ERROR + 1];
};

/*  A request's arguments, for the encoders the actor calls. */
typedef struct {
    dpool_batch_t *batch;
    dp_cmd_t cmd;
    uint64_t total; /* ADD: 0, or the tasks of the whole batch */
    uint64_t from;  /* GET: first index; ACK: upto */
    uint32_t max;
    uint32_t wait_ms;
} s_req_t;

static void
s_encode (dp_writer_t *w, uint64_t req, void *arg)
{
    s_req_t *r = (s_req_t *)arg;
    dpool_batch_t *b = r->batch;
    switch (r->cmd) {
    case DP_CMD_BATCH_ADD: {
        dp_encode_batch_add (w, req, b->id, b->name, b->fn, b->flags, b->ttl_s, r->total);
        dp_list_open (w);
        size_t at = 0;
        for (size_t i = 0; i < b->nargs; i++) {
            dp_task_t task = {.id = b->added + i,
                              .fn = {(const uint8_t *)b->fn, strlen (b->fn)},
                              .args = {(const uint8_t *)b->args.data + at, b->sizes[i]},
                              .timeout_ms = b->timeout_ms,
                              .retries = b->retries};
            dp_list_add_task (w, DP_CMD_SUBMIT, &task);
            at += b->sizes[i];
        }
        dp_list_end (w);
        break;
    }
    case DP_CMD_BATCH_GET:
        dp_encode_batch_get (w, req, b->id, r->from, r->max, r->wait_ms);
        break;
    case DP_CMD_BATCH_ACK:
        dp_encode_batch_ack (w, req, b->id, r->from);
        break;
    case DP_CMD_BATCH_CANCEL:
        dp_encode_batch_cancel (w, req, b->id);
        break;
    default:
        dp_encode_batch_list (w, req);
        break;
    }
}

static void
s_info_copy (const dp_batch_info_t *in, dpool_batch_info_t *out)
{
    memset (out, 0, sizeof *out);
    snprintf (out->id, sizeof out->id, "%.*s", (int)in->id.size, (const char *)in->id.data);
    snprintf (out->name, sizeof out->name, "%.*s", (int)in->name.size,
              (const char *)in->name.data);
    snprintf (out->fn, sizeof out->fn, "%.*s", (int)in->fn.size, (const char *)in->fn.data);
    out->total = in->total;
    out->added = in->added;
    out->done = in->done;
    out->failed = in->failed;
    out->collected = in->collected;
    out->age_ms = in->age_ms;
    out->ttl_s = in->ttl_s;
    out->sealed = in->flags & DP_BATCH_SEALED;
    out->cancelled = in->flags & DP_BATCH_CANCELLED;
    out->discard = in->flags & DP_BATCH_DISCARD;
}

/*  Makes request r and decodes its reply into *msg (whose spans point
    into *body, which the caller frees). Returns 0, or -1 with the broker's
    refusal (or the transport's) in self->error. */
static int
s_request (dpool_batch_t *self, s_req_t *r, int timeout_ms, void **body, dp_msg_t *msg)
{
    size_t size = 0;
    self->error[0] = 0;
    if (s_call (self->pool, r->cmd, s_encode, r, timeout_ms, body, &size, self->error,
                sizeof self->error))
        return -1;
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, DP_CMD_BATCH_REPLY);
    if (dp_msg_decode (header, sizeof header, *body, size, msg) != DP_OK) {
        free (*body);
        *body = NULL;
        snprintf (self->error, sizeof self->error, "malformed BATCH-REPLY");
        return dp_fail (DPOOL_EPROTO);
    }
    const dp_batch_reply_t *reply = &msg->u.batch_reply;
    dp_batch_info_t info;
    dp_list_t batches = reply->batches;
    if (dp_list_next_batch (&batches, &info)) {
        s_info_copy (&info, &self->info);
        self->have_info = true;
    }
    if (reply->code != 0) {
        snprintf (self->error, sizeof self->error, "%.*s", (int)reply->message.size,
                  (const char *)reply->message.data);
        free (*body);
        *body = NULL;
        return dp_fail (reply->code);
    }
    return 0;
}

dpool_batch_t *
dpool_batch_new (dpool_pool_t *pool, const char *fn, const dpool_batch_options_t *options)
{
    assert (pool);
    dpool_batch_options_t none = {0};
    options = options ? options : &none;
    size_t fn_size = fn ? strlen (fn) : 0;
    bool hex = options->id && strlen (options->id) == DP_BATCH_ID_SIZE &&
               strspn (options->id, "0123456789abcdef") == DP_BATCH_ID_SIZE;
    if (fn_size == 0 || fn_size > DP_MAX_NAME || (options->id && !hex) ||
        (options->name && strlen (options->name) > DP_MAX_NAME) || options->timeout_ms < 0 ||
        options->retries < -1 || options->retries > DP_MAX_RETRIES ||
        options->ttl_s > DP_MAX_BATCH_TTL_S)
        return dp_fail_null (DPOOL_EINVAL);
    dpool_batch_t *self = (dpool_batch_t *)calloc (1, sizeof *self);
    if (!self)
        return dp_fail_null (DPOOL_ENOMEM);
    self->pool = pool;
    snprintf (self->fn, sizeof self->fn, "%s", fn);
    snprintf (self->name, sizeof self->name, "%s", options->name ? options->name : "");
    self->flags = options->discard ? DP_BATCH_DISCARD : 0;
    self->ttl_s = options->ttl_s;
    self->timeout_ms = (uint32_t)options->timeout_ms;
    self->retries = options->retries;
    msgpack_sbuffer_init (&self->args);
    dp_client_lock (pool);
    dp_client_ref (pool);
    dp_client_unlock (pool);
    if (options->id) {
        /*  Tasks come after those the broker holds, if it holds the batch. */
        snprintf (self->id, sizeof self->id, "%s", options->id);
        dpool_batch_info_t info;
        if (dpool_batch_info (self, &info) == 0)
            self->added = info.added;
        else if (dpool_errno () != DPOOL_ENOENT) {
            int code = dpool_errno ();
            dpool_batch_destroy (&self);
            return dp_fail_null (code);
        }
    } else {
        uint8_t bytes[DP_BATCH_ID_SIZE / 2];
        dp_random_bytes (bytes, sizeof bytes);
        for (size_t i = 0; i < sizeof bytes; i++)
            snprintf (self->id + 2 * i, 3, "%02x", bytes[i]);
    }
    return self;
}

dpool_batch_t *
dpool_batch_open (dpool_pool_t *pool, const char *id)
{
    assert (pool && id);
    dpool_batch_t *self = NULL;
    dpool_batch_options_t options = {.id = id};
    self = dpool_batch_new (pool, "?", &options);
    if (!self)
        return NULL;
    if (!self->have_info) {
        dpool_batch_destroy (&self);
        return dp_fail_null (DPOOL_ENOENT);
    }
    snprintf (self->fn, sizeof self->fn, "%s", self->info.fn);
    snprintf (self->name, sizeof self->name, "%s", self->info.name);
    self->flags = self->info.discard ? DP_BATCH_DISCARD : 0;
    self->ttl_s = self->info.ttl_s;
    return self;
}

const char *
dpool_batch_id (const dpool_batch_t *self)
{
    assert (self);
    return self->id;
}

uint64_t
dpool_batch_added (const dpool_batch_t *self)
{
    assert (self);
    return self->added;
}

const char *
dpool_batch_error (const dpool_batch_t *self)
{
    assert (self);
    return self->error[0] ? self->error : NULL;
}

/*  Sends the tasks not yet sent in one BATCH-ADD (total: 0, or the whole
    batch's count) and waits for the broker's acknowledgement. */
static int
s_flush (dpool_batch_t *self, uint64_t total)
{
    s_req_t r = {.batch = self, .cmd = DP_CMD_BATCH_ADD, .total = total};
    void *body;
    dp_msg_t msg;
    if (s_request (self, &r, CALL_MS, &body, &msg))
        return -1;
    free (body);
    if (self->have_info)
        self->added = self->info.added;
    msgpack_sbuffer_clear (&self->args);
    self->nargs = 0;
    return 0;
}

int
dpool_batch_add (dpool_batch_t *self, const void *args, size_t size)
{
    assert (self);
    if (!args || size > MAX_ARGS || dp_mp_count_objects (args, size) != 1)
        return dp_fail (DPOOL_EINVAL);
    /*  A group goes before it would pass ADD_BYTES with this task. */
    if (self->nargs > 0 && self->args.size + size > ADD_BYTES && s_flush (self, 0))
        return -1;
    if (self->nargs == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        size_t *more = (size_t *)realloc (self->sizes, cap * sizeof *more);
        if (!more)
            return dp_fail (DPOOL_ENOMEM);
        self->sizes = more;
        self->cap = cap;
    }
    if (msgpack_sbuffer_write (&self->args, (const char *)args, size))
        return dp_fail (DPOOL_ENOMEM);
    self->sizes[self->nargs++] = size;
    if (self->nargs >= ADD_TASKS || self->args.size >= ADD_BYTES)
        return s_flush (self, 0);
    return 0;
}

int
dpool_batch_submit (dpool_batch_t *self)
{
    assert (self);
    return s_flush (self, self->added + self->nargs);
}

int
dpool_batch_info (dpool_batch_t *self, dpool_batch_info_t *info)
{
    assert (self && info);
    s_req_t r = {.batch = self, .cmd = DP_CMD_BATCH_GET, .from = UINT64_MAX, .max = 1};
    void *body;
    dp_msg_t msg;
    self->have_info = false;
    if (s_request (self, &r, CALL_MS, &body, &msg))
        return -1;
    free (body);
    if (!self->have_info)
        return dp_fail (DPOOL_EPROTO);
    *info = self->info;
    return 0;
}

/*  True once every result was read, or the batch keeps none. */
static bool
s_read_all (const dpool_batch_t *self)
{
    return self->have_info &&
           (self->info.discard || (self->info.sealed && self->from >= self->info.total));
}

int
dpool_batch_next (dpool_batch_t *self, int timeout_ms, dpool_batch_result_t *result)
{
    assert (self && result);
    int64_t deadline = timeout_ms < 0 ? -1 : dp_now_ms () + timeout_ms;
    for (;;) {
        dp_result_t entry;
        if (self->reply && dp_list_next_result (&self->results, &entry)) {
            result->index = entry.id;
            result->code = entry.code;
            result->value = entry.value.data;
            result->size = entry.value.size;
            self->from = self->returned = entry.id + 1;
            return 0;
        }
        free (self->reply);
        self->reply = NULL;
        if (s_read_all (self))
            return dp_fail (DPOOL_EEND);
        int64_t left = deadline < 0 ? GET_SLICE_MS : deadline - dp_now_ms ();
        if (left < 0)
            return dp_fail (DPOOL_ETIMEOUT);
        s_req_t r = {.batch = self,
                     .cmd = DP_CMD_BATCH_GET,
                     .from = self->from,
                     .max = GET_RESULTS,
                     .wait_ms = (uint32_t)(left > GET_SLICE_MS ? GET_SLICE_MS : left)};
        dp_msg_t msg;
        if (s_request (self, &r, (int)r.wait_ms + CALL_SLACK_MS, &self->reply, &msg))
            return -1;
        self->results = msg.u.batch_reply.results;
        if (self->have_info && self->info.collected > self->from)
            self->from = self->info.collected; /* collected by another reader */
    }
}

void
dpool_batch_seek (dpool_batch_t *self, uint64_t index)
{
    assert (self);
    free (self->reply);
    self->reply = NULL;
    self->from = self->returned = index;
}

int
dpool_batch_ack (dpool_batch_t *self)
{
    assert (self);
    s_req_t r = {.batch = self, .cmd = DP_CMD_BATCH_ACK, .from = self->returned};
    void *body;
    dp_msg_t msg;
    if (s_request (self, &r, CALL_MS, &body, &msg))
        return -1;
    free (body);
    return 0;
}

int
dpool_batch_cancel (dpool_batch_t *self)
{
    assert (self);
    s_req_t r = {.batch = self, .cmd = DP_CMD_BATCH_CANCEL};
    void *body;
    dp_msg_t msg;
    if (s_request (self, &r, CALL_MS, &body, &msg))
        return -1;
    free (body);
    return 0;
}

int
dpool_pool_batches (dpool_pool_t *pool, dpool_batch_info_t **infos, size_t *count)
{
    assert (pool && infos && count);
    dpool_batch_t probe = {.pool = pool};
    s_req_t r = {.batch = &probe, .cmd = DP_CMD_BATCH_LIST};
    void *body;
    dp_msg_t msg;
    if (s_request (&probe, &r, CALL_MS, &body, &msg))
        return -1;
    dp_list_t list = msg.u.batch_reply.batches;
    *count = 0;
    *infos = (dpool_batch_info_t *)calloc (list.left ? list.left : 1, sizeof **infos);
    if (!*infos) {
        free (body);
        return dp_fail (DPOOL_ENOMEM);
    }
    dp_batch_info_t info;
    while (dp_list_next_batch (&list, &info))
        s_info_copy (&info, &(*infos)[(*count)++]);
    free (body);
    return 0;
}

void
dpool_batch_destroy (dpool_batch_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dpool_batch_t *self = *self_p;
        msgpack_sbuffer_destroy (&self->args);
        free (self->sizes);
        free (self->reply);
        dp_client_unref (self->pool);
        free (self);
        *self_p = NULL;
    }
}

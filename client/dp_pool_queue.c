/*  dp_pool_queue.c - named queues reached from a program.

    Locking: the table of requests lives in the pool's shared state, under
    the pool's one mutex (dp_client.h). A request record is on its caller's
    stack: it is reachable from the table only while its caller waits, and
    the caller takes it out (or finds it answered) before returning. The
    actor encodes requests and copies replies under the lock (memcpy only)
    and sends without it.
*/
#include "dp_pool_queue.h"

#include "dp_idmap.h"
#include "dp_queue.h"
#include "dp_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*  One request in flight: its caller waits for done. */
typedef struct {
    uint64_t req;
    const dp_qcall_t *call;
    int64_t broker_deadline; /* when the broker's wait ends; -1 none */
    uint64_t sent_conn;      /* the connection it went out on; 0 not yet */
    bool done;
    dp_qanswer_t *answer;
    msgpack_sbuffer *out;
} s_op_t;

struct _dp_pool_queues_t {
    dp_idmap_t *ops; /* req -> s_op_t */
    uint64_t next_req;
};

/*  With the lock held: the pool's table, made on first use. */
static dp_pool_queues_t *
s_state (dpool_pool_t *pool)
{
    if (!dp_client_queues (pool)) {
        dp_pool_queues_t *state = (dp_pool_queues_t *)calloc (1, sizeof *state);
        if (state && !(state->ops = dp_idmap_new_sequential ())) {
            free (state);
            state = NULL;
        }
        dp_client_set_queues (pool, state);
    }
    return dp_client_queues (pool);
}

void
dp_pool_queues_destroy (dp_pool_queues_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_idmap_destroy (&(*self_p)->ops);
        free (*self_p);
        *self_p = NULL;
    }
}

/*  ---------------------------------------------------------------------------
    The caller's side: the link of a handle dpool_queue_open made.
*/
static void
s_fail (dp_qanswer_t *answer, int code, const char *message)
{
    answer->code = code;
    snprintf (answer->message, sizeof answer->message, "%s", message);
}

static int
s_pool_queue (void *arg, const dp_qcall_t *call, dp_qanswer_t *answer, msgpack_sbuffer *out)
{
    dpool_pool_t *pool = (dpool_pool_t *)arg;
    if (dp_client_on_actor (pool)) {
        /*  A callback waiting for its own thread would wait forever. */
        s_fail (answer, DPOOL_ESTATE, "queue calls cannot be made from a pool's callback");
        return -1;
    }
    int64_t now = dp_now_ms ();
    s_op_t op = {.call = call,
                 .broker_deadline = call->timeout_ms < 0 ? -1 : now + call->timeout_ms,
                 .answer = answer,
                 .out = out};
    int64_t deadline = op.broker_deadline < 0 ? -1 : op.broker_deadline + DP_QUEUE_SLACK_MS;
    bool wake = false;
    dp_client_lock (pool);
    bool gone = dp_client_stopped (pool) || dp_client_terminating (pool);
    dp_pool_queues_t *state = gone ? NULL : s_state (pool);
    if (state) {
        op.req = ++state->next_req;
        if (dp_idmap_put (state->ops, op.req, &op))
            state = NULL;
        else
            wake = dp_client_want_wake (pool);
    }
    if (!state) {
        dp_client_unlock (pool);
        s_fail (answer, gone ? DPOOL_ECLOSED : DPOOL_ENOMEM,
                gone ? "the pool was terminated" : "out of memory");
        return -1;
    }
    dp_client_unlock (pool);
    if (wake)
        dp_client_wake (pool);

    /*  Terminate ends the wait too: from another thread (a signal's), it
        is how a program stops a get or put that waits without limit. */
    dp_client_lock (pool);
    while (!op.done && !dp_client_stopped (pool) && !dp_client_terminating (pool))
        if (!dp_client_wait (pool, deadline))
            break;
    if (!op.done) {
        /*  Given up: a reply that comes now finds no request, and a value
            in it goes back to its queue. */
        dp_idmap_remove (state->ops, op.req);
        if (dp_client_stopped (pool) || dp_client_terminating (pool))
            s_fail (answer, DPOOL_ECLOSED, "the pool was terminated");
        else
            s_fail (answer, DPOOL_ETIMEOUT, "the broker did not answer in time");
    }
    dp_client_unlock (pool);
    return answer->code == 0 ? 0 : -1;
}

/*  Drops the handle's reference on its pool. */
static void
s_release (void *arg)
{
    dp_client_unref ((dpool_pool_t *)arg);
}

dpool_queue_t *
dpool_queue_open (dpool_pool_t *pool, const char *name, size_t maxsize)
{
    assert (pool);
    dp_client_lock (pool);
    dp_client_ref (pool);
    dp_client_unlock (pool);
    dp_task_link_t link = {s_pool_queue, NULL, pool};
    dpool_queue_t *self = dp_queue_new (name, maxsize, &link, s_release);
    if (!self) {
        int code = dpool_errno ();
        dp_client_unref (pool);
        return dp_fail_null (code);
    }
    if (dp_queue_open_remote (self)) {
        int code = dpool_errno ();
        const char *why = dpool_queue_error (self);
        dp_info ("client: cannot open queue '%s': %s", name, why ? why : dpool_strerror (code));
        dpool_queue_destroy (&self);
        return dp_fail_null (code);
    }
    return self;
}

/*  ---------------------------------------------------------------------------
    The actor's side.
*/

/*  A request encoded for sending. */
typedef struct {
    dp_cmd_t cmd;
    dp_writer_t body;
} s_out_t;

typedef struct {
    s_op_t **ops;
    size_t count;
    size_t cap;
} s_ops_t;

static void
s_collect (uint64_t id, void *value, void *arg)
{
    (void)id;
    s_ops_t *ops = (s_ops_t *)arg;
    if (ops->count < ops->cap)
        ops->ops[ops->count++] = (s_op_t *)value;
}

static int
s_by_req (const void *a, const void *b)
{
    uint64_t x = (*(s_op_t *const *)a)->req, y = (*(s_op_t *const *)b)->req;
    return x < y ? -1 : x > y;
}

/*  Encodes op into out, asking the broker to wait only for what is left of
    the caller's timeout. */
static void
s_encode (const s_op_t *op, s_out_t *out, int64_t now)
{
    const dp_qcall_t *call = op->call;
    int32_t timeout = -1;
    if (op->broker_deadline >= 0) {
        int64_t left = op->broker_deadline - now;
        timeout = left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int32_t)left;
    }
    out->cmd = call->cmd;
    switch (call->cmd) {
    case DP_CMD_QUEUE_OPEN:
        dp_encode_queue_open (&out->body, op->req, call->name, call->maxsize);
        break;
    case DP_CMD_QUEUE_PUT:
        dp_encode_queue_put (&out->body, op->req, call->name, call->value, call->size, timeout,
                             call->maxsize);
        break;
    case DP_CMD_QUEUE_GET:
        dp_encode_queue_get (&out->body, op->req, call->name, timeout);
        break;
    default:
        dp_encode_queue_size (&out->body, op->req, call->name);
        break;
    }
}

int
dp_pool_queue_send (dpool_pool_t *pool, uint64_t conn, dp_pool_queue_send_fn *send, void *arg)
{
    s_out_t *outs = NULL;
    size_t nouts = 0;
    bool failed_any = false;
    dp_client_lock (pool);
    dp_pool_queues_t *state = dp_client_queues (pool);
    size_t count = state ? dp_idmap_size (state->ops) : 0;
    s_ops_t ops = {NULL, 0, count};
    if (count)
        ops.ops = (s_op_t **)malloc (count * sizeof *ops.ops);
    if (ops.ops)
        outs = (s_out_t *)calloc (count, sizeof *outs);
    if (outs) {
        dp_idmap_foreach (state->ops, s_collect, &ops);
        qsort (ops.ops, ops.count, sizeof *ops.ops, s_by_req);
        int64_t now = dp_now_ms ();
        for (size_t i = 0; i < ops.count; i++) {
            s_op_t *op = ops.ops[i];
            if (op->sent_conn == conn)
                continue;
            if (op->sent_conn == 0 || op->call->cmd == DP_CMD_QUEUE_GET) {
                op->sent_conn = conn;
                dp_writer_init (&outs[nouts].body);
                s_encode (op, &outs[nouts], now);
                nouts++;
            } else {
                dp_idmap_remove (state->ops, op->req);
                s_fail (op->answer, DPOOL_EUNREACHABLE,
                        "the connection to the broker was lost; the request may or may not "
                        "have been carried out");
                op->done = true;
                failed_any = true;
            }
        }
    }
    if (failed_any)
        dp_client_broadcast (pool);
    dp_client_unlock (pool);
    if (count && !outs)
        dp_error ("client: out of memory sending queue requests");

    int rc = 0;
    for (size_t i = 0; i < nouts; i++) {
        if (rc == 0 && dp_writer_ok (&outs[i].body))
            rc = send (arg, outs[i].cmd, &outs[i].body);
        dp_writer_fini (&outs[i].body);
    }
    free (outs);
    free (ops.ops);
    return rc;
}

dp_pool_queue_ack_t
dp_pool_queue_reply (dpool_pool_t *pool, uint64_t conn, bool welcomed,
                     const dp_queue_reply_t *reply)
{
    dp_pool_queue_ack_t ack = DP_POOL_QUEUE_ACK_NONE;
    dp_client_lock (pool);
    dp_pool_queues_t *state = dp_client_queues (pool);
    s_op_t *op = state ? (s_op_t *)dp_idmap_get (state->ops, reply->req) : NULL;
    if (!welcomed || (op && op->sent_conn != conn)) {
        /*  Of a registration the broker forgot: it took the value back. */
        dp_client_unlock (pool);
        return ack;
    }
    if (!op) {
        dp_client_unlock (pool);
        return reply->token ? DP_POOL_QUEUE_ACK_REFUSED : ack;
    }
    dp_idmap_remove (state->ops, op->req);
    dp_qanswer_t *answer = op->answer;
    answer->code = reply->code;
    answer->size = reply->size;
    answer->maxsize = reply->maxsize;
    if (reply->code != 0) {
        dp_reader_t reader;
        dp_span_t message = {NULL, 0};
        dp_reader_init (&reader, reply->value.data, reply->value.size);
        dp_mp_read_str (&reader, &message);
        snprintf (answer->message, sizeof answer->message, "%.*s", (int)message.size,
                  message.data ? (const char *)message.data : "");
    } else if (reply->token) {
        ack = DP_POOL_QUEUE_ACK_TAKEN;
        if (!op->out ||
            msgpack_sbuffer_write (op->out, (const char *)reply->value.data, reply->value.size)) {
            s_fail (answer, DPOOL_ENOMEM, "out of memory for the value got");
            ack = DP_POOL_QUEUE_ACK_REFUSED;
        }
    }
    op->done = true;
    dp_client_broadcast (pool);
    dp_client_unlock (pool);
    return ack;
}

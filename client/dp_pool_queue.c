/*  dp_pool_queue.c - named queues reached from a program.

    Locking: the table of requests lives in the pool's shared state, under
    the pool's one mutex (dp_client.h). A request record is on its caller's
    stack: it is reachable from the table only while its caller waits, and
    the caller takes it out (or finds it answered) before returning. The
    actor encodes requests and copies replies under the lock (memcpy only)
    and sends without it.
*/
#include "dp_pool_queue.h"

#include "dp_queue.h"
#include "dp_reqs.h"
#include "dp_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*  One request in flight: its caller waits for it (dp_reqs.h). */
typedef struct {
    dp_req_t head;
    const dp_qcall_t *call;
    int64_t broker_deadline; /* when the broker's wait ends; -1 none */
    dp_qanswer_t *answer;
    msgpack_sbuffer *out;
} s_op_t;

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
    int64_t now = dp_now_ms ();
    s_op_t op = {.call = call,
                 .broker_deadline = call->timeout_ms < 0 ? -1 : now + call->timeout_ms,
                 .answer = answer,
                 .out = out};
    int64_t deadline = op.broker_deadline < 0 ? -1 : op.broker_deadline + DP_QUEUE_SLACK_MS;
    const char *why;
    int code = dp_reqs_enter (pool, dp_client_queue_reqs (pool), &op.head, &why);
    if (code) {
        s_fail (answer, code, why);
        return -1;
    }
    /*  Terminate ends the wait too: from another thread (a signal's), it
        is how a program stops a get or put that waits without limit. A
        reply that comes after a wait given up finds no request, and a
        value in it goes back to its queue. */
    dp_client_lock (pool);
    code = dp_reqs_wait (pool, *dp_client_queue_reqs (pool), &op.head, deadline);
    dp_client_unlock (pool);
    if (code)
        s_fail (answer, code,
                code == DPOOL_ECLOSED ? "the pool was terminated"
                                      : "the broker did not answer in time");
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
        dp_encode_queue_open (&out->body, op->head.req, call->name, call->maxsize);
        break;
    case DP_CMD_QUEUE_PUT:
        dp_encode_queue_put (&out->body, op->head.req, call->name, call->value, call->size,
                             timeout, call->maxsize);
        break;
    case DP_CMD_QUEUE_GET:
        dp_encode_queue_get (&out->body, op->head.req, call->name, timeout);
        break;
    default:
        dp_encode_queue_size (&out->body, op->head.req, call->name);
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
    dp_reqs_t *table = *dp_client_queue_reqs (pool);
    dp_req_t **reqs;
    size_t count;
    int rc = dp_reqs_unsent (table, conn, &reqs, &count);
    if (rc == 0 && count)
        outs = (s_out_t *)calloc (count, sizeof *outs);
    if (outs) {
        int64_t now = dp_now_ms ();
        for (size_t i = 0; i < count; i++) {
            s_op_t *op = (s_op_t *)reqs[i];
            if (op->head.sent_conn == 0 || op->call->cmd == DP_CMD_QUEUE_GET) {
                op->head.sent_conn = conn;
                dp_writer_init (&outs[nouts].body);
                s_encode (op, &outs[nouts], now);
                nouts++;
            } else {
                dp_reqs_take (table, op->head.req);
                s_fail (op->answer, DPOOL_EUNREACHABLE,
                        "the connection to the broker was lost; the request may or may not "
                        "have been carried out");
                op->head.done = true;
                failed_any = true;
            }
        }
    }
    if (failed_any)
        dp_client_broadcast (pool);
    dp_client_unlock (pool);
    if (rc != 0 || (count && !outs))
        dp_error ("client: out of memory sending queue requests");

    rc = 0;
    for (size_t i = 0; i < nouts; i++) {
        if (rc == 0 && dp_writer_ok (&outs[i].body))
            rc = send (arg, outs[i].cmd, &outs[i].body);
        dp_writer_fini (&outs[i].body);
    }
    free (outs);
    free (reqs);
    return rc;
}

dp_pool_queue_ack_t
dp_pool_queue_reply (dpool_pool_t *pool, uint64_t conn, bool welcomed,
                     const dp_queue_reply_t *reply)
{
    dp_pool_queue_ack_t ack = DP_POOL_QUEUE_ACK_NONE;
    dp_client_lock (pool);
    dp_reqs_t *table = *dp_client_queue_reqs (pool);
    s_op_t *op = (s_op_t *)dp_reqs_get (table, reply->req);
    if (!welcomed || (op && op->head.sent_conn != conn)) {
        /*  Of a registration the broker forgot: it took the value back. */
        dp_client_unlock (pool);
        return ack;
    }
    if (!op) {
        dp_client_unlock (pool);
        return reply->token ? DP_POOL_QUEUE_ACK_REFUSED : ack;
    }
    dp_reqs_take (table, op->head.req);
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
    op->head.done = true;
    dp_client_broadcast (pool);
    dp_client_unlock (pool);
    return ack;
}

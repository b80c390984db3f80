/*  dp_queue.c - queue handles, over a task's or a pool's link. */
#include "dp_queue.h"

#include "dp_msgpack.h"
#include "dp_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct _dpool_queue_t {
    char name[DP_MAX_NAME + 1];
    uint32_t maxsize;
    dp_task_link_t link;
    void (*release) (void *arg);
    dpool_task_t *task;           /* the task that owns it, or NULL */
    dpool_queue_t *prev, *next;   /* in its task's handles */
    msgpack_sbuffer value;        /* the packed value of the last get */
    msgpack_zone zone;            /* where it is unpacked */
    char error[DP_MAX_ERROR + 1]; /* the last failure's message */
};

dpool_queue_t *
dp_queue_new (const char *name, size_t maxsize, const dp_task_link_t *link,
              void (*release) (void *arg))
{
    assert (link);
    size_t len = name ? strlen (name) : 0;
    if (len < 1 || len > DP_MAX_NAME || maxsize > DP_MAX_QUEUE_SIZE || !link->queue)
        return dp_fail_null (DPOOL_EINVAL);
    dpool_queue_t *self = (dpool_queue_t *)calloc (1, sizeof *self);
    if (!self)
        return dp_fail_null (DPOOL_ENOMEM);
    memcpy (self->name, name, len + 1);
    self->maxsize = (uint32_t)maxsize;
    self->link = *link;
    self->release = release;
    msgpack_sbuffer_init (&self->value);
    if (!msgpack_zone_init (&self->zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        free (self);
        return dp_fail_null (DPOOL_ENOMEM);
    }
    return self;
}

/*  Sends call and keeps the message of a failure. Returns 0, or -1 with
    the answer's code as the dpool error. */
static int
s_call (dpool_queue_t *self, dp_qcall_t *call, dp_qanswer_t *answer, msgpack_sbuffer *out)
{
    call->name = self->name;
    answer->code = 0;
    answer->message[0] = 0;
    int rc = self->link.queue (self->link.arg, call, answer, out);
    if (rc == 0 && answer->code == 0) {
        self->error[0] = 0;
        return 0;
    }
    if (answer->code == 0)
        answer->code = DPOOL_EPROTO;
    snprintf (self->error, sizeof self->error, "%s",
              answer->message[0] ? answer->message : dpool_strerror (answer->code));
    return dp_fail (answer->code);
}

int
dp_queue_open_remote (dpool_queue_t *self)
{
    assert (self);
    dp_qcall_t call = {.cmd = DP_CMD_QUEUE_OPEN, .maxsize = self->maxsize};
    dp_qanswer_t answer;
    return s_call (self, &call, &answer, NULL);
}

/*  A timeout of the API (-1 none, 0 no wait, else ms) on the wire. */
static int32_t
s_timeout (int timeout_ms)
{
    return timeout_ms < 0 ? -1 : (int32_t)timeout_ms;
}

int
dpool_queue_put (dpool_queue_t *self, const void *value, size_t size, int timeout_ms)
{
    assert (self);
    if (!value || size == 0 || size > DP_MAX_QUEUE_VALUE || dp_mp_count_objects (value, size) != 1)
        return dp_fail (DPOOL_EINVAL);
    dp_qcall_t call = {.cmd = DP_CMD_QUEUE_PUT,
                       .value = value,
                       .size = size,
                       .timeout_ms = s_timeout (timeout_ms),
                       .maxsize = self->maxsize};
    dp_qanswer_t answer;
    return s_call (self, &call, &answer, NULL);
}

int
dpool_queue_get (dpool_queue_t *self, int timeout_ms, msgpack_object *value)
{
    assert (self);
    msgpack_sbuffer_clear (&self->value);
    msgpack_zone_clear (&self->zone);
    dp_qcall_t call = {.cmd = DP_CMD_QUEUE_GET, .timeout_ms = s_timeout (timeout_ms)};
    dp_qanswer_t answer;
    if (s_call (self, &call, &answer, &self->value))
        return -1;
    msgpack_object object;
    size_t offset = 0;
    /*  The broker checked the value is one object a worker can unpack; the
        zone running out of memory is all that can go wrong here. The value
        was acknowledged already: it is lost only if memory is. */
    if (msgpack_unpack (self->value.data, self->value.size, &offset, &self->zone, &object) !=
        MSGPACK_UNPACK_SUCCESS) {
        snprintf (self->error, sizeof self->error, "cannot unpack the value got");
        return dp_fail (DPOOL_ENOMEM);
    }
    if (value)
        *value = object;
    return 0;
}

int
dpool_queue_qsize (dpool_queue_t *self, size_t *size)
{
    assert (self);
    dp_qcall_t call = {.cmd = DP_CMD_QUEUE_SIZE};
    dp_qanswer_t answer;
    if (s_call (self, &call, &answer, NULL))
        return -1;
    if (size)
        *size = answer.size;
    return 0;
}

int
dpool_queue_empty (dpool_queue_t *self)
{
    size_t size;
    if (dpool_queue_qsize (self, &size))
        return -1;
    return size == 0 ? 1 : 0;
}

size_t
dpool_queue_maxsize (dpool_queue_t *self)
{
    assert (self);
    return self->maxsize;
}

const char *
dpool_queue_name (dpool_queue_t *self)
{
    assert (self);
    return self->name;
}

const char *
dpool_queue_error (dpool_queue_t *self)
{
    assert (self);
    return self->error[0] ? self->error : NULL;
}

void
dpool_queue_destroy (dpool_queue_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dpool_queue_t *self = *self_p;
        if (self->task) {
            if (self->prev)
                self->prev->next = self->next;
            else
                self->task->queues = self->next;
            if (self->next)
                self->next->prev = self->prev;
        }
        if (self->release)
            self->release (self->link.arg);
        msgpack_sbuffer_destroy (&self->value);
        msgpack_zone_destroy (&self->zone);
        free (self);
        *self_p = NULL;
    }
}

/*  ---------------------------------------------------------------------------
    Handles a task opens.
*/

/*  The link of a task run in process: no broker to reach. */
static int
s_no_broker (void *arg, const dp_qcall_t *call, dp_qanswer_t *answer, msgpack_sbuffer *out)
{
    (void)arg;
    (void)call;
    (void)out;
    answer->code = DPOOL_ESTATE;
    snprintf (answer->message, sizeof answer->message,
              "queues are reached from a task run by a worker, not from here");
    return -1;
}

dpool_queue_t *
dpool_task_queue_open (dpool_task_t *task, const char *name, size_t maxsize)
{
    assert (task);
    static const dp_task_link_t no_broker = {s_no_broker, NULL, NULL};
    const dp_task_link_t *link = task->link && task->link->queue ? task->link : &no_broker;
    dpool_queue_t *self = dp_queue_new (name, maxsize, link, NULL);
    if (!self)
        return NULL;
    self->task = task;
    self->next = task->queues;
    if (task->queues)
        task->queues->prev = self;
    task->queues = self;
    if (dp_queue_open_remote (self)) {
        int code = dpool_errno ();
        dpool_queue_destroy (&self);
        return dp_fail_null (code);
    }
    return self;
}

void
dp_task_close_queues (dpool_task_t *task)
{
    assert (task);
    while (task->queues) {
        dpool_queue_t *queue = task->queues;
        dpool_queue_destroy (&queue);
    }
}

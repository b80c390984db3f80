/*  dp_client_tasks.c - the pool's task table and outbox: task records and
    SUBMIT batches, submits, results, cancels, and what the actor takes
    from the pool.

    Half of the pool class (dp_client.h; its struct in dp_client_impl.h);
    dp_client.c is the other half. Locking as dp_client.h says: the table,
    the order, the outbox and the requests are changed only under the
    pool's mutex; results are recorded in their handles and callbacks run
    after it is released.
*/
#include "dp_client_impl.h"

#include "dp_result.h"
#include "dp_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*  ---------------------------------------------------------------------------
    Task records and SUBMIT batches.
*/

dp_ctask_t *
dp_ctask_new (const char *fn, const void *prefix, size_t prefix_size, const void *args,
              size_t args_size)
{
    size_t fn_size = strlen (fn);
    /*  Only the header is zeroed: args can be large, and are copied over at
        once. */
    dp_ctask_t *self = (dp_ctask_t *)malloc (sizeof *self + fn_size + prefix_size + args_size);
    if (!self)
        return NULL;
    *self = (dp_ctask_t){.fn_size = fn_size, .args_size = prefix_size + args_size};
    atomic_init (&self->refs, 1);
    memcpy (self->data, fn, fn_size);
    if (prefix_size)
        memcpy (self->data + fn_size, prefix, prefix_size);
    if (args_size)
        memcpy (self->data + fn_size + prefix_size, args, args_size);
    self->count = 1;
    return self;
}

/*  Drops one owner of a task record; the last frees it. */
static void
s_ctask_release (dp_ctask_t *self)
{
    if (atomic_fetch_sub (&self->refs, 1) == 1)
        free (self);
}

void
dp_ctask_destroy (dp_ctask_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        s_ctask_release (*self_p);
        *self_p = NULL;
    }
}

/*  ZeroMQ is done with a payload frame made of a task record's args. */
static void
s_frame_sent (void *data, void *hint)
{
    (void)data;
    s_ctask_release ((dp_ctask_t *)hint);
}

/*  Adds the args of task to batch as its next payload frame, sent from the
    record itself (which the frame keeps alive). Returns 0, or -1 if out of
    memory. */
static int
s_batch_frame (dp_batch_t *batch, const dp_ctask_t *task)
{
    if (batch->nframes == batch->frames_cap) {
        uint32_t cap = batch->frames_cap ? batch->frames_cap * 2 : 8;
        zmq_msg_t *frames = (zmq_msg_t *)realloc (batch->frames, cap * sizeof *frames);
        if (!frames)
            return -1;
        batch->frames = frames;
        batch->frames_cap = cap;
    }
    dp_ctask_t *owner = (dp_ctask_t *)task;
    atomic_fetch_add (&owner->refs, 1);
    if (zmq_msg_init_data (&batch->frames[batch->nframes], owner->data + owner->fn_size,
                           owner->args_size, s_frame_sent, owner) != 0) {
        s_ctask_release (owner);
        return -1;
    }
    batch->nframes++;
    batch->frame_bytes += task->args_size;
    return 0;
}

int
dp_batch_add (dp_batch_t **head, dp_batch_t **tail, const dp_ctask_t *task)
{
    dp_batch_t *batch = *tail;
    size_t entry = task->fn_size + task->args_size + 64;
    /*  Framed args do not swell the body: only inline ones go alone. */
    bool framed = task->args_size >= DP_FRAME_MIN;
    bool alone = !framed && entry >= DP_CLIENT_ALONE_BYTES;
    if (!batch || batch->full || alone || dp_list_count (&batch->writer) >= DP_MAX_BATCH ||
        (framed && batch->nframes >= DP_MAX_FRAMES) ||
        (dp_list_count (&batch->writer) > 0 &&
         dp_writer_size (&batch->writer) + batch->frame_bytes + entry > DP_CLIENT_BATCH_BYTES)) {
        batch = (dp_batch_t *)calloc (1, sizeof *batch);
        if (!batch)
            return -1;
        dp_writer_init (&batch->writer);
        if (alone)
            batch->writer.reserve = entry; /* the first body's buffer, whole */
        batch->full = alone;
        dp_list_begin (&batch->writer);
        if (!dp_writer_ok (&batch->writer)) {
            dp_writer_fini (&batch->writer);
            free (batch);
            return -1;
        }
        if (*tail)
            (*tail)->next = batch;
        else
            *head = batch;
        *tail = batch;
    }
    dp_task_t entry_fields = {.id = task->seq,
                              .fn = {task->data, task->fn_size},
                              .args = {task->data + task->fn_size, task->args_size},
                              .priority = task->priority,
                              .timeout_ms = task->timeout_ms,
                              .retries = task->retries,
                              .flags = task->flags};
    if (!framed)
        dp_list_add_task (&batch->writer, DP_CMD_SUBMIT, &entry_fields);
    else if (s_batch_frame (batch, task) == 0)
        dp_list_add_task_framed (&batch->writer, DP_CMD_SUBMIT, &entry_fields);
    else
        return -1;
    return dp_writer_ok (&batch->writer) ? 0 : -1;
}

void
dp_batch_destroy_all (dp_batch_t **head)
{
    assert (head);
    dp_batch_t *batch = *head;
    while (batch) {
        dp_batch_t *next = batch->next;
        dp_writer_fini (&batch->writer);
        for (uint32_t i = 0; i < batch->nframes; i++)
            zmq_msg_close (&batch->frames[i]);
        free (batch->frames);
        free (batch);
        batch = next;
    }
    *head = NULL;
}

/*  ---------------------------------------------------------------------------
    The table, in submission order.
*/

/*  With the lock held: enters task in the table and the submission order
    and, unless the pool is terminating, packs it into the outbox, or into
    the chain *head..*tail when head is not NULL (a lane's). Returns 0, or
    -1 if out of memory (the task is then not entered). */
static int
s_insert (dpool_pool_t *self, dp_ctask_t *task, dp_batch_t **head, dp_batch_t **tail)
{
    if (!head) {
        head = &self->outbox;
        tail = &self->outbox_tail;
    }
    if (dp_idmap_put (self->tasks, task->seq, task))
        return -1;
    if (!self->terminating && dp_batch_add (head, tail, task)) {
        /*  A half-written entry leaves its batch unusable: drop the outbox
            and let the actor rebuild it from the table. */
        dp_idmap_remove (self->tasks, task->seq);
        return -1;
    }
    task->prev = self->tail;
    task->next = NULL;
    if (self->tail)
        self->tail->next = task;
    else
        self->head = task;
    self->tail = task;
    self->outstanding++;
    self->outstanding_bytes += task->args_size;
    return 0;
}

dp_ctask_t *
dp_client_task (dpool_pool_t *self, uint64_t seq)
{
    return (dp_ctask_t *)dp_idmap_get (self->tasks, seq);
}

dp_ctask_t *
dp_client_remove (dpool_pool_t *self, uint64_t seq)
{
    dp_ctask_t *task = (dp_ctask_t *)dp_idmap_remove (self->tasks, seq);
    if (!task)
        return NULL;
    if (task->prev)
        task->prev->next = task->next;
    else
        self->head = task->next;
    if (task->next)
        task->next->prev = task->prev;
    else
        self->tail = task->prev;
    task->prev = task->next = NULL;
    return task;
}

void
dp_client_release (dpool_pool_t *self, size_t count, size_t bytes)
{
    assert (self->outstanding >= count && self->outstanding_bytes >= bytes);
    self->outstanding -= count;
    self->outstanding_bytes -= bytes;
    /*  Waiting submits are woken once the pool is down to three quarters
        of its bounds, not at every result: each wake-up then submits a run
        of tasks, instead of one task per result batch. */
    if (count && self->outstanding <= self->max_outstanding - self->max_outstanding / 4 &&
        self->outstanding_bytes <= self->max_outstanding_bytes - self->max_outstanding_bytes / 4)
        dp_client_broadcast (self);
}

/*  With the lock held: true if tasks more tasks with bytes of arguments
    would pass the pool's bounds. One task always fits when none is
    outstanding, however large. */
static bool
s_full (const dpool_pool_t *self, size_t tasks, size_t bytes)
{
    if (self->outstanding == 0 && tasks <= 1)
        return false;
    return self->outstanding + tasks > self->max_outstanding ||
           self->outstanding_bytes + bytes > self->max_outstanding_bytes;
}

/*  ---------------------------------------------------------------------------
    Submits and cancels.
*/

/*  Appends result to vec. Returns 0 or -1 if out of memory. */
static int
s_vec_push (dp_handle_vec_t *vec, dpool_result_t *result)
{
    if (vec->count == vec->cap) {
        size_t cap = vec->cap ? vec->cap * 2 : 8;
        dpool_result_t **bigger = (dpool_result_t **)realloc (vec->items, cap * sizeof *bigger);
        if (!bigger)
            return -1;
        vec->items = bigger;
        vec->cap = cap;
    }
    vec->items[vec->count++] = result;
    return 0;
}

/*  With the lock held: queues a handle that needs no task for the actor
    to finish. Returns 0 or -1 if out of memory. */
static int
s_add_finish (dpool_pool_t *self, dpool_result_t *result)
{
    return s_vec_push (&self->finish, result);
}

uint64_t
dp_client_open_submit (dpool_pool_t *self, dpool_result_t *result, size_t ntasks, size_t bytes,
                       bool nowait, bool *wake, int *code)
{
    uint64_t seq0 = 0;
    *code = DPOOL_OK;
    dp_client_lock (self);
    if (self->closed)
        *code = DPOOL_ECLOSED;
    else if (nowait && s_full (self, ntasks, bytes))
        /*  All or nothing: a non-blocking call submits no part of itself. */
        *code = DPOOL_EAGAIN;
    else {
        seq0 = self->next_seq;
        self->next_seq += ntasks;
        dp_result_attach (result, seq0, ntasks);
        if (ntasks == 0) {
            if (s_add_finish (self, result)) {
                dp_error ("client: out of memory; cannot go on");
                abort ();
            }
            *wake = dp_client_want_wake (self);
        }
    }
    dp_client_unlock (self);
    return seq0;
}

bool
dp_client_submit (dpool_pool_t *self, dp_ctask_t *task, bool failed, bool wait, dp_batch_t **head,
                  dp_batch_t **tail, bool wake)
{
    dp_client_lock (self);
    while (!failed && wait && !self->terminating && s_full (self, 1, task->args_size)) {
        if (wake) {
            /*  The actor must see what is queued before this waits. */
            dp_client_unlock (self);
            dp_client_wake (self);
            wake = false;
            dp_client_lock (self);
            continue;
        }
        dp_client_wait_room (self);
    }
    bool lost = failed || s_insert (self, task, head, tail);
    if (lost) {
        task->next = self->failed;
        self->failed = task;
    }
    /*  The actor ends what was lost, and what terminate caught. */
    if ((!head || lost || self->terminating) && dp_client_want_wake (self))
        wake = true;
    dp_client_unlock (self);
    return wake;
}

bool
dp_client_resend (dpool_pool_t *self, uint64_t seq)
{
    dp_ctask_t *task = (dp_ctask_t *)dp_idmap_get (self->tasks, seq);
    if (!task || self->terminating)
        return false;
    if (dp_batch_add (&self->outbox, &self->outbox_tail, task)) {
        /*  The actor rebuilds the outbox from the table at its next
            connection; until then the task waits in the table. */
        dp_batch_destroy_all (&self->outbox);
        self->outbox_tail = NULL;
        dp_error ("client: out of memory resending task %llu", (unsigned long long)seq);
        return false;
    }
    return dp_client_want_wake (self);
}

/*  With the lock held: appends seq to the CANCEL requests. Returns 0 or -1
    if out of memory. */
static int
s_add_cancel (dpool_pool_t *self, uint64_t seq)
{
    if (self->ncancels == self->cancels_cap) {
        size_t cap = self->cancels_cap ? self->cancels_cap * 2 : 64;
        uint64_t *bigger = (uint64_t *)realloc (self->cancels, cap * sizeof *bigger);
        if (!bigger)
            return -1;
        self->cancels = bigger;
        self->cancels_cap = cap;
    }
    self->cancels[self->ncancels++] = seq;
    return 0;
}

bool
dp_client_cancel_tasks (dpool_pool_t *self, uint64_t seq0, size_t ntasks)
{
    if (self->terminating)
        return false;
    bool wake = false;
    for (size_t i = 0; i < ntasks; i++) {
        dp_ctask_t *task = (dp_ctask_t *)dp_idmap_get (self->tasks, seq0 + i);
        if (task && !task->cancelled) {
            task->cancelled = true;
            if (s_add_cancel (self, task->seq) == 0)
                wake = true;
        }
    }
    return wake && dp_client_want_wake (self);
}

/*  ---------------------------------------------------------------------------
    Results.
*/

/*  Makes room in scratch for count entries. Returns 0 or -1. */
static int
s_scratch_reserve (dp_client_scratch_t *scratch, size_t count)
{
    if (count <= scratch->cap)
        return 0;
    dp_ctask_t **matched =
        (dp_ctask_t **)realloc (scratch->matched, count * sizeof *scratch->matched);
    if (!matched)
        return -1;
    scratch->matched = matched;
    dpool_result_t **completed =
        (dpool_result_t **)realloc (scratch->completed, count * sizeof *scratch->completed);
    if (!completed)
        return -1;
    scratch->completed = completed;
    scratch->cap = count;
    return 0;
}

int64_t
dp_client_take_results (dpool_pool_t *self, dp_list_t list, dp_wire_msg_t *wire,
                        dp_client_scratch_t *scratch)
{
    if (s_scratch_reserve (scratch, list.left))
        return -1;
    dp_list_t walk = list;
    dp_result_t result;
    size_t n = 0, found = 0, bytes = 0;
    dp_client_lock (self);
    while (dp_list_next_result (&walk, &result)) {
        dp_ctask_t *task = dp_client_remove (self, result.id);
        scratch->matched[n++] = task;
        if (task) {
            found++;
            bytes += task->args_size;
        }
    }
    dp_client_unlock (self);

    walk = list;
    size_t completed = 0;
    int64_t ignored = 0;
    for (size_t i = 0; dp_list_next_result (&walk, &result); i++) {
        dp_ctask_t *task = scratch->matched[i];
        if (!task) {
            ignored++;
            dp_debug ("client: ignored a result for seq %llu", (unsigned long long)result.id);
            continue;
        }
        dpool_result_t *handle = task->result;
        zmq_msg_t *frame = result.frame ? dp_wire_payload (wire, result.frame) : NULL;
        if (dp_result_task_done (handle, task, result.code, result.value, frame))
            scratch->completed[completed++] = handle;
        dp_ctask_destroy (&task);
    }
    dp_result_complete (scratch->completed, completed);
    /*  Room for more submits only once the handles have their results, so
        a submit that waited finds its predecessors finished. */
    if (found) {
        dp_client_lock (self);
        dp_client_release (self, found, bytes);
        dp_client_unlock (self);
    }
    return ignored;
}

void
dp_client_scratch_fini (dp_client_scratch_t *scratch)
{
    free (scratch->matched);
    free (scratch->completed);
    memset (scratch, 0, sizeof *scratch);
}

/*  ---------------------------------------------------------------------------
    What the actor takes.
*/

/*  With the lock held: takes every task out of the table, returning them
    chained by next. */
static dp_ctask_t *
s_detach_all (dpool_pool_t *self)
{
    dp_ctask_t *chain = NULL, *last = NULL;
    while (self->head) {
        dp_ctask_t *task = dp_client_remove (self, self->head->seq);
        if (last)
            last->next = task;
        else
            chain = task;
        last = task;
    }
    return chain;
}

/*  With the lock held: drops the outbox and the CANCELs not sent yet. */
static void
s_drop_outbox (dpool_pool_t *self)
{
    dp_batch_destroy_all (&self->outbox);
    self->outbox_tail = NULL;
    self->ncancels = 0;
}

void
dp_client_take_requests (dpool_pool_t *self, bool welcomed, dp_client_requests_t *requests)
{
    memset (requests, 0, sizeof *requests);
    dp_client_lock (self);
    self->wake_pending = false;
    requests->stop = self->stopping;
    requests->terminating = self->terminating;
    if (self->terminating) {
        requests->ended = s_detach_all (self);
        s_drop_outbox (self);
    } else if (welcomed) {
        requests->outbox = self->outbox;
        self->outbox = self->outbox_tail = NULL;
        requests->cancels = self->cancels;
        requests->ncancels = self->ncancels;
        self->cancels = NULL;
        self->ncancels = self->cancels_cap = 0;
    }
    requests->status_wanted = self->status_wanted;
    requests->finish = self->finish;
    memset (&self->finish, 0, sizeof self->finish);
    requests->failed = self->failed;
    self->failed = NULL;
    dp_client_unlock (self);
}

void
dp_client_requests_fini (dp_client_requests_t *requests)
{
    dp_batch_destroy_all (&requests->outbox);
    free (requests->cancels);
    free (requests->finish.items);
    memset (requests, 0, sizeof *requests);
}

int64_t
dp_client_resubmit (dpool_pool_t *self, dp_batch_t **batches, dp_ctask_t **cancelled)
{
    dp_batch_t *head = NULL, *tail = NULL;
    bool failed = false;
    int64_t count = 0;
    *cancelled = NULL;
    dp_client_lock (self);
    s_drop_outbox (self);
    dp_ctask_t *task = self->head;
    while (task && !failed) {
        dp_ctask_t *next = task->next;
        if (task->cancelled) {
            dp_client_remove (self, task->seq);
            task->next = *cancelled;
            *cancelled = task;
        } else if (dp_batch_add (&head, &tail, task))
            failed = true;
        else
            count++;
        task = next;
    }
    dp_client_unlock (self);
    if (failed)
        dp_batch_destroy_all (&head);
    *batches = head;
    return failed ? -1 : count;
}

/*  dp_client.c - a pool's shared state and its one lock.

    Locking: the pool's one mutex guards the shared table of tasks, the
    outbox, the requests for the actor and the handles' refcounts; it is
    never held during I/O, waits for processes, or callbacks. See
    dp_client.h.
*/
#include "dp_client.h"

#include "dp_pool_queue.h"
#include "dp_result.h"
#include "dp_util.h"
#include "dp_wire.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t s_czmq_once = PTHREAD_ONCE_INIT;

static void (*s_at_exit) (void);

static void
s_czmq_setup (void)
{
    zsys_handler_set (NULL);
    /*  CZMQ registers its own exit handler, which destroys every socket, in
        zsys_init. Registering ours after it makes ours run first, so pools
        the program never destroyed are stopped before their sockets vanish
        under their threads. */
    zsys_init ();
    if (s_at_exit)
        atexit (s_at_exit);
}

void
dp_client_set_exit_handler (void (*handler) (void))
{
    s_at_exit = handler;
}

void
dp_client_czmq_init (void)
{
    pthread_once (&s_czmq_once, s_czmq_setup);
}

void
dp_client_lock (dpool_pool_t *self)
{
    int rc = pthread_mutex_lock (&self->mutex);
    assert (rc == 0);
    (void)rc;
}

void
dp_client_unlock (dpool_pool_t *self)
{
    int rc = pthread_mutex_unlock (&self->mutex);
    assert (rc == 0);
    (void)rc;
}

bool
dp_client_wait (dpool_pool_t *self, int64_t deadline_ms)
{
    if (deadline_ms < 0) {
        pthread_cond_wait (&self->cond, &self->mutex);
        return true;
    }
    if (dp_now_ms () >= deadline_ms)
        return false;
    /*  The condition variable runs on CLOCK_MONOTONIC, as dp_now_ms does. */
    struct timespec ts;
    ts.tv_sec = (time_t)(deadline_ms / 1000);
    ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
    int rc = pthread_cond_timedwait (&self->cond, &self->mutex, &ts);
    return rc != ETIMEDOUT;
}

void
dp_client_wait_room (dpool_pool_t *self)
{
    pthread_cond_wait (&self->room, &self->mutex);
}

void
dp_client_broadcast (dpool_pool_t *self)
{
    pthread_cond_broadcast (&self->cond);
    pthread_cond_broadcast (&self->room);
}

void
dp_client_broadcast_results (dpool_pool_t *self)
{
    pthread_cond_broadcast (&self->cond);
}

int64_t
dp_client_deadline (int timeout_ms)
{
    return timeout_ms < 0 ? -1 : dp_now_ms () + timeout_ms;
}

bool
dp_client_want_wake (dpool_pool_t *self)
{
    if (self->wake_pending)
        return false;
    self->wake_pending = true;
    return true;
}

void
dp_client_wake (dpool_pool_t *self)
{
    /*  A counter: writes add up, and one read by the actor empties it. */
    uint64_t one = 1;
    ssize_t rc;
    do
        rc = write (self->wake, &one, sizeof one);
    while (rc < 0 && errno == EINTR);
}

static void
s_free_task (uint64_t id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    dp_ctask_t *task = (dp_ctask_t *)value;
    dp_ctask_destroy (&task);
}

void
dp_client_unref (dpool_pool_t *self)
{
    dp_client_unref_handle (self, NULL);
}

void
dp_client_unref_handle (dpool_pool_t *self, void *record)
{
    dp_client_lock (self);
    if (record)
        dp_recs_free (self->handles, record);
    assert (self->refs > 0);
    bool last = --self->refs == 0;
    dp_client_unlock (self);
    if (!last)
        return;
    if (self->tasks) {
        dp_idmap_foreach (self->tasks, s_free_task, NULL);
        dp_idmap_destroy (&self->tasks);
    }
    /*  Every handle is gone: each held a reference. */
    dp_recs_destroy (&self->handles);
    dp_batch_destroy_all (&self->outbox);
    while (self->failed) {
        dp_ctask_t *task = self->failed;
        self->failed = task->next;
        dp_ctask_destroy (&task);
    }
    free (self->cancels);
    free (self->finish.items);
    free (self->status);
    dp_pool_queue_free (self);
    free (self->endpoint);
    explicit_bzero (&self->curve, sizeof self->curve);
    free (self->name);
    if (self->wake >= 0)
        close (self->wake);
    pthread_cond_destroy (&self->cond);
    pthread_cond_destroy (&self->room);
    pthread_mutex_destroy (&self->mutex);
    free (self);
}

bool
dp_client_on_actor (dpool_pool_t *self)
{
    return atomic_load (&self->actor_status) == 0 &&
           pthread_equal (pthread_self (), self->actor_thread);
}

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
    memcpy (self->data, fn, fn_size);
    if (prefix_size)
        memcpy (self->data + fn_size, prefix, prefix_size);
    if (args_size)
        memcpy (self->data + fn_size + prefix_size, args, args_size);
    self->count = 1;
    return self;
}

void
dp_ctask_destroy (dp_ctask_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

int
dp_batch_add (dp_batch_t **head, dp_batch_t **tail, const dp_ctask_t *task)
{
    dp_batch_t *batch = *tail;
    size_t entry = task->fn_size + task->args_size + 64;
    bool alone = entry >= DP_CLIENT_ALONE_BYTES;
    if (!batch || batch->full || alone || dp_list_count (&batch->writer) >= DP_MAX_BATCH ||
        (dp_list_count (&batch->writer) > 0 &&
         dp_writer_size (&batch->writer) + entry > DP_CLIENT_BATCH_BYTES)) {
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
    dp_list_add_task (&batch->writer, DP_CMD_SUBMIT, &entry_fields);
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
        free (batch);
        batch = next;
    }
    *head = NULL;
}

int
dp_client_insert (dpool_pool_t *self, dp_ctask_t *task, dp_batch_t **head, dp_batch_t **tail)
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

bool
dp_client_full (const dpool_pool_t *self, size_t tasks, size_t bytes)
{
    if (self->outstanding == 0 && tasks <= 1)
        return false;
    return self->outstanding + tasks > self->max_outstanding ||
           self->outstanding_bytes + bytes > self->max_outstanding_bytes;
}

int
dp_client_add_cancel (dpool_pool_t *self, uint64_t seq)
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

int
dp_client_add_finish (dpool_pool_t *self, dpool_result_t *result)
{
    return s_vec_push (&self->finish, result);
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

zsock_t *
dp_client_dealer_new (dpool_pool_t *self)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return NULL;
    void *handle = zsock_resolve (dealer);
    /*  Immediate: a message is queued only on a finished connection, so
        HELLOs do not pile up while the broker is away, and a send on a
        broken connection fails at once instead of vanishing later. */
    int one = 1;
    if (dp_wire_configure (handle, false, DP_CLIENT_LINGER_MS) ||
        dp_curve_apply (handle, &self->curve, false) ||
        zmq_setsockopt (handle, ZMQ_IMMEDIATE, &one, sizeof one) ||
        zsock_connect (dealer, "%s", self->endpoint)) {
        zsock_destroy (&dealer);
        return NULL;
    }
    return dealer;
}

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
dp_client_take_results (dpool_pool_t *self, dp_list_t list, dp_client_scratch_t *scratch)
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
        if (dp_result_task_done (handle, task, result.code, result.value))
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

void
dp_client_set_waiter (dpool_pool_t *self, dpool_result_t *handle, int fd)
{
    for (size_t i = 0; i < self->nwaiters; i++)
        if (self->waiters[i].handle == handle) {
            if (fd >= 0)
                self->waiters[i].fd = fd;
            else
                self->waiters[i] = self->waiters[--self->nwaiters];
            return;
        }
    if (fd >= 0) {
        assert (self->nwaiters < DP_MAX_LANES);
        self->waiters[self->nwaiters++] = (dp_client_waiter_t){handle, fd};
    }
}

int
dp_client_waiter (const dpool_pool_t *self, const dpool_result_t *handle)
{
    for (size_t i = 0; i < self->nwaiters; i++)
        if (self->waiters[i].handle == handle)
            return self->waiters[i].fd;
    return -1;
}

void
dp_client_kick (int fd)
{
    uint64_t one = 1;
    ssize_t rc;
    do
        rc = write (fd, &one, sizeof one);
    while (rc < 0 && errno == EINTR);
}

/*  dp_client.c - the pool's life cycle and shared state: references, the
    lock and its conditions, the actor thread, status, join and terminate,
    lanes, and the accounting of result handles.

    Half of the pool class (dp_client.h; its struct in dp_client_impl.h);
    dp_client_tasks.c, the task table and outbox, is the other half.
    Locking as dp_client.h says: the mutex is held only to read or change
    the struct, never while waiting for a thread or a process, nor while
    writing the wake eventfd; the one write under it is a lane waiter's
    eventfd (dp_client_handle_ready).
*/
#include "dp_client_impl.h"

#include "dp_pool_batch.h"
#include "dp_pool_queue.h"
#include "dp_reqs.h"
#include "dp_util.h"
#include "dp_wire.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

/*  ---------------------------------------------------------------------------
    Life cycle and references.
*/

static void
s_free_task (uint64_t id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    dp_ctask_t *task = (dp_ctask_t *)value;
    dp_ctask_destroy (&task);
}

/*  Frees the struct and everything it still owns, once its last reference
    is gone (every handle, lane and queue handle with it). */
static void
s_free (dpool_pool_t *self)
{
    if (self->tasks) {
        dp_idmap_foreach (self->tasks, s_free_task, NULL);
        dp_idmap_destroy (&self->tasks);
    }
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
    dp_reqs_destroy (&self->queue_reqs);
    dp_reqs_destroy (&self->batch_reqs);
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

/*  Makes the struct with its lock, conditions, wake eventfd, table and
    session, holding the owner's reference; NULL if it cannot. */
static dpool_pool_t *
s_alloc (void)
{
    dpool_pool_t *self = (dpool_pool_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->wake = -1;
    self->refs = 1;
    self->next_seq = 1;
    atomic_init (&self->actor_status, -1);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init (&self->cond, &attr);
    int rc_room = rc ? -1 : pthread_cond_init (&self->room, &attr);
    pthread_condattr_destroy (&attr);
    int rc_mutex = rc || rc_room ? -1 : pthread_mutex_init (&self->mutex, NULL);
    if (rc || rc_room || rc_mutex) {
        if (rc == 0)
            pthread_cond_destroy (&self->cond);
        if (rc_room == 0)
            pthread_cond_destroy (&self->room);
        if (rc_mutex == 0)
            pthread_mutex_destroy (&self->mutex);
        free (self);
        return NULL;
    }
    self->tasks = dp_idmap_new_sequential ();
    dp_random_bytes (self->session, sizeof self->session);
    self->wake = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!self->tasks || self->wake < 0) {
        s_free (self);
        return NULL;
    }
    return self;
}

dpool_pool_t *
dp_client_new (const dp_client_config_t *config, const dp_client_ext_t *ext)
{
    assert (config && config->endpoint && config->name);
    dpool_pool_t *self = s_alloc ();
    if (!self)
        return NULL;
    self->timeout_ms = config->timeout_ms;
    self->retries = config->retries;
    self->max_outstanding = config->max_outstanding;
    self->max_outstanding_bytes = config->max_outstanding_bytes;
    self->procs = config->procs;
    if (config->curve)
        self->curve = *config->curve;
    self->name = strdup (config->name);
    self->endpoint = strdup (config->endpoint);
    if (!self->name || !self->endpoint) {
        s_free (self);
        return NULL;
    }
    if (ext) {
        self->ext = *ext;
        self->has_ext = true;
    }
    return self;
}

int
dp_client_start_actor (dpool_pool_t *self, void *(*main) (void *))
{
    assert (!self->actor_started);
    atomic_store (&self->actor_status, DP_ACTOR_STARTING);
    if (pthread_create (&self->actor, NULL, main, self) != 0) {
        atomic_store (&self->actor_status, -DPOOL_ESYS);
        return DPOOL_ESYS;
    }
    self->actor_started = true;
    dp_client_lock (self);
    while (atomic_load (&self->actor_status) == DP_ACTOR_STARTING)
        dp_client_wait (self, -1);
    dp_client_unlock (self);
    return -atomic_load (&self->actor_status); /* stored negated: see dp_client_actor_up */
}

/*  Asks the actor to stop and waits for its thread to end. Harmless if it
    never started or has stopped. */
static void
s_stop_actor (dpool_pool_t *self)
{
    if (!self->actor_started)
        return;
    dp_client_lock (self);
    self->stopping = true;
    bool wake = dp_client_want_wake (self);
    dp_client_unlock (self);
    /*  The wake-up may be pending already; a stop is then seen with it. */
    if (wake)
        dp_client_wake (self);
    pthread_join (self->actor, NULL);
    self->actor_started = false;
}

void
dp_client_destroy (dpool_pool_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dpool_pool_t *self = *self_p;
        s_stop_actor (self);
        /*  The actor ran the embedded broker and has stopped it. */
        if (self->has_ext) {
            self->ext.destroy (self->ext.self);
            self->has_ext = false;
        }
        dp_client_unref (self);
        *self_p = NULL;
    }
}

void
dp_client_ref (dpool_pool_t *self)
{
    assert (self->refs > 0);
    self->refs++;
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
    if (last)
        s_free (self);
}

/*  ---------------------------------------------------------------------------
    The lock, its conditions and the actor's wake-up.
*/

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

/*  Writes 1 to an eventfd: a counter, whose writes add up and which one
    read empties. */
static void
s_kick (int fd)
{
    uint64_t one = 1;
    ssize_t rc;
    do
        rc = write (fd, &one, sizeof one);
    while (rc < 0 && errno == EINTR);
}

void
dp_client_wake (dpool_pool_t *self)
{
    s_kick (self->wake);
}

/*  ---------------------------------------------------------------------------
    Configuration.
*/

int
dp_client_wake_fd (const dpool_pool_t *self)
{
    return self->wake;
}

const uint8_t *
dp_client_session (const dpool_pool_t *self)
{
    return self->session;
}

const char *
dp_client_name (const dpool_pool_t *self)
{
    return self->name;
}

const char *
dp_client_endpoint (const dpool_pool_t *self)
{
    return self->endpoint;
}

const dp_client_ext_t *
dp_client_ext (const dpool_pool_t *self)
{
    return self->has_ext ? &self->ext : NULL;
}

int
dp_client_procs (const dpool_pool_t *self)
{
    return self->procs;
}

void
dp_client_task_defaults (const dpool_pool_t *self, int *timeout_ms, int *retries)
{
    *timeout_ms = self->timeout_ms;
    *retries = self->retries;
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

/*  ---------------------------------------------------------------------------
    Result handles.
*/

void *
dp_client_alloc_handle (dpool_pool_t *self, size_t size)
{
    dp_client_lock (self);
    if (!self->handles)
        self->handles = dp_recs_new (size);
    void *record = self->handles ? dp_recs_alloc (self->handles) : NULL;
    dp_client_unlock (self);
    return record;
}

void
dp_client_free_handle (dpool_pool_t *self, void *record)
{
    dp_client_lock (self);
    dp_recs_free (self->handles, record);
    dp_client_unlock (self);
}

void
dp_client_attach_handle (dpool_pool_t *self)
{
    self->refs++;
    self->live++;
}

void
dp_client_handles_ready (dpool_pool_t *self, dpool_result_t *const *handles, size_t count)
{
    /*  A thread waiting on its lane polls its socket, not the condition
        variable: it is told by its eventfd, under the lock, so that it
        cannot close the eventfd meanwhile. */
    for (size_t w = 0; w < self->nwaiters; w++)
        for (size_t i = 0; i < count; i++)
            if (self->waiters[w].handle == handles[i]) {
                s_kick (self->waiters[w].fd);
                self->waiters[w].kicked = true;
                break;
            }
}

void
dp_client_handles_finished (dpool_pool_t *self, size_t count)
{
    assert (self->live >= count);
    self->live -= count;
}

/*  ---------------------------------------------------------------------------
    The actor's side.
*/

void
dp_client_actor_up (dpool_pool_t *self, int status)
{
    dp_client_lock (self);
    self->actor_thread = pthread_self ();
    /*  Negated, so that no code can read as DP_ACTOR_STARTING. */
    atomic_store (&self->actor_status, -status);
    dp_client_broadcast (self);
    dp_client_unlock (self);
}

bool
dp_client_on_actor (dpool_pool_t *self)
{
    return atomic_load (&self->actor_status) == 0 &&
           pthread_equal (pthread_self (), self->actor_thread);
}

void
dp_client_set_terminated (dpool_pool_t *self)
{
    dp_client_lock (self);
    self->terminated = true;
    dp_client_broadcast (self);
    dp_client_unlock (self);
}

void
dp_client_set_status (dpool_pool_t *self, uint8_t *copy, size_t size, int workers)
{
    dp_client_lock (self);
    if (copy) {
        free (self->status);
        self->status = copy;
        self->status_size = size;
        self->status_gen++;
        self->status_wanted = false;
    }
    if (workers >= 0)
        self->workers = workers;
    dp_client_broadcast (self);
    dp_client_unlock (self);
}

void
dp_client_set_refused (dpool_pool_t *self, bool refused)
{
    dp_client_lock (self);
    self->refused = refused;
    dp_client_broadcast (self);
    dp_client_unlock (self);
}

void
dp_client_set_workers (dpool_pool_t *self, int workers)
{
    dp_client_lock (self);
    self->workers = workers;
    dp_client_unlock (self);
}

void
dp_client_actor_closing (dpool_pool_t *self)
{
    dp_client_lock (self);
    self->closed = true;
    self->terminating = true;
    dp_client_unlock (self);
}

void
dp_client_actor_ended (dpool_pool_t *self)
{
    dp_client_lock (self);
    self->actor_gone = true;
    dp_client_broadcast (self);
    dp_client_unlock (self);
}

bool
dp_client_stopped (const dpool_pool_t *self)
{
    return self->actor_gone;
}

bool
dp_client_terminating (const dpool_pool_t *self)
{
    return self->terminating;
}

/*  ---------------------------------------------------------------------------
    The API's calls.
*/

void
dp_client_close (dpool_pool_t *self)
{
    dp_client_lock (self);
    self->closed = true;
    dp_client_broadcast (self);
    dp_client_unlock (self);
}

int
dp_client_join (dpool_pool_t *self, int64_t deadline_ms)
{
    dp_client_lock (self);
    if (!self->closed) {
        dp_client_unlock (self);
        return DPOOL_ESTATE;
    }
    while (self->live > 0)
        if (!dp_client_wait (self, deadline_ms))
            break;
    bool done = self->live == 0;
    if (done)
        self->joined = true;
    dp_client_unlock (self);
    return done ? DPOOL_OK : DPOOL_ETIMEOUT;
}

bool
dp_client_joined (dpool_pool_t *self)
{
    dp_client_lock (self);
    bool joined = self->joined;
    dp_client_unlock (self);
    return joined;
}

void
dp_client_terminate (dpool_pool_t *self)
{
    dp_client_lock (self);
    self->closed = true;
    self->terminating = true;
    bool wake = dp_client_want_wake (self);
    dp_client_unlock (self);
    if (wake)
        dp_client_wake (self);
    dp_client_lock (self);
    while (!self->terminated)
        dp_client_wait (self, -1);
    bool stop_workers = self->has_ext && !self->workers_stopped;
    self->workers_stopped = true;
    dp_client_unlock (self);
    if (stop_workers)
        self->ext.stop_workers (self->ext.self);
}

int
dp_client_status (dpool_pool_t *self, int64_t deadline_ms, void **data, size_t *size)
{
    dp_client_lock (self);
    uint64_t gen = self->status_gen;
    self->status_wanted = true;
    bool wake = dp_client_want_wake (self);
    dp_client_unlock (self);
    if (wake)
        dp_client_wake (self);
    dp_client_lock (self);
    while (self->status_gen == gen && !self->refused && !self->actor_gone)
        if (!dp_client_wait (self, deadline_ms))
            break;
    int code = self->refused ? DPOOL_EREJECTED : DPOOL_ETIMEOUT;
    if (self->status_gen != gen) {
        *size = self->status_size;
        *data = malloc (*size ? *size : 1);
        code = *data ? DPOOL_OK : DPOOL_ENOMEM;
        if (*data)
            memcpy (*data, self->status, *size);
    }
    dp_client_unlock (self);
    return code;
}

int
dp_client_workers (dpool_pool_t *self)
{
    dp_client_lock (self);
    int workers = self->workers;
    dp_client_unlock (self);
    return workers;
}

/*  ---------------------------------------------------------------------------
    Lanes.
*/

uint32_t
dp_client_take_lane (dpool_pool_t *self)
{
    uint32_t number = 0;
    dp_client_lock (self);
    if (!self->actor_gone && ~self->lanes != 0) {
        for (uint32_t bit = 0; bit < DP_MAX_LANES && !number; bit++)
            if (!(self->lanes & (UINT64_C (1) << bit)))
                number = bit + 1;
        self->lanes |= UINT64_C (1) << (number - 1);
        self->refs++;
    }
    dp_client_unlock (self);
    return number;
}

void
dp_client_drop_lane (dpool_pool_t *self, uint32_t number)
{
    assert (number >= 1 && number <= DP_MAX_LANES);
    dp_client_lock (self);
    self->lanes &= ~(UINT64_C (1) << (number - 1));
    dp_client_unlock (self);
    dp_client_unref (self);
}

bool
dp_client_set_waiter (dpool_pool_t *self, dpool_result_t *handle, int fd)
{
    for (size_t i = 0; i < self->nwaiters; i++)
        if (self->waiters[i].handle == handle) {
            bool kicked = self->waiters[i].kicked;
            if (fd >= 0)
                self->waiters[i].fd = fd;
            else
                self->waiters[i] = self->waiters[--self->nwaiters];
            return kicked;
        }
    if (fd >= 0) {
        assert (self->nwaiters < DP_MAX_LANES);
        self->waiters[self->nwaiters++] = (dp_client_waiter_t){handle, fd, false};
    }
    return false;
}

/*  ---------------------------------------------------------------------------
    Queue requests.
*/

dp_reqs_t **
dp_client_queue_reqs (dpool_pool_t *self)
{
    return &self->queue_reqs;
}

dp_reqs_t **
dp_client_batch_reqs (dpool_pool_t *self)
{
    return &self->batch_reqs;
}

/*  dp_pool.c - the pool API: dpool.h's dpool_config_*, dpool_pool_* calls
    but the three constructors, which embedded/ makes (they decide whether
    a pool runs its own broker and workers) through dp_pool_open.

    It checks the calls, plans how a map is cut into tasks and packs the
    tasks, and leaves every piece of shared state to the pool class
    (dp_client.h), whose calls take the pool's lock as they need it. Its
    own state is the process-wide list of live pools, under a mutex of its
    own that is never held with a pool's.
*/
#include "dp_pool.h"

#include "dp_client.h"
#include "dp_client_actor.h"
#include "dp_lane.h"
#include "dp_registry.h"
#include "dp_result.h"
#include "dp_util.h"

#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*  Calls per worker in Pool's chunksize rule: divmod(n, workers * 4). */
#define CHUNKS_PER_WORKER 4

/*  Room a task needs beyond its arguments: name and fields. */
#define TASK_OVERHEAD (DP_MAX_NAME + 64)

/*  Reads the environment variable name as an integer in [min, max] into
 *value and returns true; returns false when it is not set, and also
    warns when it is set but invalid. */
static bool
s_env_long (const char *name, long min, long max, long *value)
{
    const char *text = getenv (name);
    if (!text || !*text)
        return false;
    if (dp_parse_int (text, min, max, value) == 0)
        return true;
    dp_warn ("client: ignoring %s=%s (expected %ld..%ld)", name, text, min, max);
    return false;
}

/*  s_env_long into an int. */
static void
s_env_int (const char *name, long min, long max, int *value)
{
    long parsed;
    if (s_env_long (name, min, max, &parsed))
        *value = (int)parsed;
}

void
dpool_config_init (dpool_config_t *config)
{
    assert (config);
    memset (config, 0, sizeof *config);
    const char *connect = getenv ("DPOOL_CONNECT");
    if (connect && *connect)
        config->connect = connect;
    s_env_int ("DPOOL_PROCS", 0, DP_POOL_MAX_PROCS, &config->procs);
    s_env_int ("DPOOL_TIMEOUT_MS", 0, INT_MAX, &config->timeout_ms);
    s_env_int ("DPOOL_RETRIES", -1, DP_MAX_RETRIES, &config->retries);
    s_env_int ("DPOOL_MAX_OUTSTANDING", 0, INT_MAX, &config->max_outstanding);
    long bytes;
    if (s_env_long ("DPOOL_MAX_OUTSTANDING_BYTES", 0, LONG_MAX, &bytes))
        config->max_outstanding_bytes = (size_t)bytes;
    const char *env = getenv ("DPOOL_CURVE_SERVER");
    if (env && *env)
        config->curve_server = env;
    env = getenv ("DPOOL_CURVE_SECRET");
    if (env && *env)
        config->curve_secret = env;
}

/*  The pools alive in this process, so that a program that returns from
    main without destroying one still ends cleanly, as with Python's Pool:
    at exit every live pool is terminated. */
static pthread_mutex_t s_live_mutex = PTHREAD_MUTEX_INITIALIZER;
static dpool_pool_t **s_live;
static size_t s_nlive;
static size_t s_live_cap;

static bool
s_live_add (dpool_pool_t *self)
{
    pthread_mutex_lock (&s_live_mutex);
    bool ok = true;
    if (s_nlive == s_live_cap) {
        size_t cap = s_live_cap ? s_live_cap * 2 : 8;
        dpool_pool_t **live = (dpool_pool_t **)realloc (s_live, cap * sizeof *live);
        if (live) {
            s_live = live;
            s_live_cap = cap;
        } else
            ok = false;
    }
    if (ok)
        s_live[s_nlive++] = self;
    pthread_mutex_unlock (&s_live_mutex);
    return ok;
}

/*  Removes self; returns whether it was there. */
static bool
s_live_remove (dpool_pool_t *self)
{
    pthread_mutex_lock (&s_live_mutex);
    bool found = false;
    for (size_t i = 0; i < s_nlive && !found; i++)
        if (s_live[i] == self) {
            s_live[i] = s_live[--s_nlive];
            found = true;
        }
    pthread_mutex_unlock (&s_live_mutex);
    return found;
}

static void
s_destroy_live_pools (void)
{
    for (;;) {
        pthread_mutex_lock (&s_live_mutex);
        dpool_pool_t *pool = s_nlive ? s_live[s_nlive - 1] : NULL;
        pthread_mutex_unlock (&s_live_mutex);
        if (!pool || dp_client_on_actor (pool))
            break; /* exit() from a callback: nothing safe to do */
        dpool_pool_destroy (&pool);
    }
    pthread_mutex_lock (&s_live_mutex);
    free (s_live);
    s_live = NULL;
    s_nlive = s_live_cap = 0;
    pthread_mutex_unlock (&s_live_mutex);
}

/*  Checks the settings of an embedded pool's workers: an initializer must
    be registered here (the workers are forked from this program), its
    arguments one msgpack object; they mean nothing to a connected pool.
    Returns 0, or -1 after logging why. */
static int
s_check_workers (const dpool_config_t *config)
{
    if (config->max_tasks < 0 || (config->initargs_size && !config->initargs))
        return -1;
    bool workers = config->initializer || config->initargs_size || config->max_tasks;
    if (config->connect && workers) {
        dp_error ("client: initializer and max_tasks apply to an embedded pool's workers");
        return -1;
    }
    if (config->initializer &&
        !dp_registry_lookup (config->initializer, strlen (config->initializer), NULL)) {
        dp_error ("client: no function named '%s' is registered for the initializer",
                  config->initializer);
        return -1;
    }
    if (config->initargs_size &&
        dp_mp_count_objects (config->initargs, config->initargs_size) != 1)
        return -1;
    return 0;
}

int
dp_pool_check_config (const dpool_config_t *config)
{
    if (config->procs < 0 || config->procs > DP_POOL_MAX_PROCS || config->timeout_ms < -1 ||
        config->retries < -1 || config->retries > DP_MAX_RETRIES || config->max_outstanding < 0 ||
        (config->name && strlen (config->name) > DP_MAX_NAME))
        return DPOOL_EINVAL;
    if (s_check_workers (config))
        return DPOOL_EINVAL;
    if (config->connect && (!strstr (config->connect, "://") || config->bind))
        return DPOOL_EINVAL;
    return DPOOL_OK;
}

/*  The CURVE keys of a connected pool's config into *curve. Returns 0, or
    -1 after logging why (no keys asked for: 0 with curve->on false). */
static int
s_curve_keys (const dpool_config_t *config, dp_curve_t *curve)
{
    memset (curve, 0, sizeof *curve);
    if (!config->connect || !(config->curve_server || config->curve_secret))
        return 0;
    char err[256];
    if (!config->curve_server) {
        dp_error ("client: a CURVE secret key needs the broker's public key (curve_server)");
        return -1;
    }
    if (dp_curve_client (curve, config->curve_server, config->curve_secret, err, sizeof err)) {
        dp_error ("client: %s", err);
        explicit_bzero (curve, sizeof *curve);
        return -1;
    }
    return 0;
}

dpool_pool_t *
dp_pool_open (const dpool_config_t *config, const char *endpoint, int procs,
              const dp_client_ext_t *ext)
{
    assert (config && endpoint);
    dp_client_set_exit_handler (s_destroy_live_pools);
    dp_client_config_t settings = {
        .endpoint = endpoint,
        .procs = procs,
        .timeout_ms = config->timeout_ms,
        .retries = config->retries,
        .max_outstanding =
            config->max_outstanding ? (size_t)config->max_outstanding : DP_DEFAULT_OUTSTANDING,
        .max_outstanding_bytes = config->max_outstanding_bytes ? config->max_outstanding_bytes
                                                               : DP_CLIENT_OUTSTANDING_BYTES};
    char name[DP_MAX_NAME + 1];
    if (config->name)
        snprintf (name, sizeof name, "%s", config->name);
    else
        snprintf (name, sizeof name, "client@%s:%ld", dp_hostname (), (long)getpid ());
    settings.name = name;
    dp_curve_t curve;
    if (s_curve_keys (config, &curve)) {
        if (ext)
            ext->destroy (ext->self);
        return dp_fail_null (DPOOL_EINVAL);
    }
    if (curve.on)
        settings.curve = &curve;
    dpool_pool_t *self = dp_client_new (&settings, ext);
    explicit_bzero (&curve, sizeof curve);
    if (!self) {
        if (ext)
            ext->destroy (ext->self);
        return dp_fail_null (DPOOL_ENOMEM);
    }
    dp_client_czmq_init ();
    int code = dp_client_actor_start (self);
    if (code) {
        dp_error ("client: cannot start the pool's actor on %s (%s)", dp_client_endpoint (self),
                  dpool_strerror (code));
        dp_client_destroy (&self);
        return dp_fail_null (code);
    }
    if (!s_live_add (self)) {
        dp_client_destroy (&self);
        return dp_fail_null (DPOOL_ENOMEM);
    }
    return self;
}

void
dpool_pool_destroy (dpool_pool_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dpool_pool_t *self = *self_p;
        assert (!dp_client_on_actor (self));
        dp_lane_close_mine (self);
        s_live_remove (self);
        if (!dp_client_joined (self))
            dpool_pool_terminate (self);
        dp_client_destroy (&self);
        *self_p = NULL;
    }
}

/*  ---------------------------------------------------------------------------
    Submission.
*/

/*  The fields every task of a call carries, from the call and the pool's
    defaults. */
typedef struct {
    int32_t priority;
    uint32_t timeout_ms;
    int32_t retries;
    uint32_t flags; /* DP_TASK_* */
    bool nowait;    /* fail with DPOOL_EAGAIN rather than wait for room */
} s_fields_t;

/*  Resolves a call's options. Returns 0, or -1 (DPOOL_EINVAL). */
static int
s_fields (dpool_pool_t *self, const dpool_call_t *call, s_fields_t *fields)
{
    int timeout = call ? call->timeout_ms : 0;
    int retries = call ? call->retries : 0;
    int default_timeout, default_retries;
    dp_client_task_defaults (self, &default_timeout, &default_retries);
    if (timeout == 0)
        timeout = default_timeout;
    if (retries == 0)
        retries = default_retries;
    unsigned flags = call ? call->flags : 0;
    if (timeout < -1 || retries < -1 || retries > DP_MAX_RETRIES ||
        (flags & ~(unsigned)(DPOOL_CALL_RETRY_TIMEOUT | DPOOL_CALL_NOWAIT)))
        return dp_fail (DPOOL_EINVAL);
    fields->flags = (flags & DPOOL_CALL_RETRY_TIMEOUT) ? DP_TASK_RETRY_TIMEOUT : 0;
    fields->nowait = (flags & DPOOL_CALL_NOWAIT) != 0;
    fields->priority = call ? call->priority : 0;
    fields->timeout_ms = timeout > 0 ? (uint32_t)timeout : 0;
    fields->retries = retries;
    return 0;
}

static bool
s_valid_name (const char *fn)
{
    if (!fn)
        return false;
    size_t len = strlen (fn);
    return len >= 1 && len <= DP_MAX_NAME;
}

/*  Writes a msgpack array header for count into out; returns its size. */
static size_t
s_array_header (uint8_t out[5], size_t count)
{
    if (count < 16) {
        out[0] = (uint8_t)(0x90 | count);
        return 1;
    }
    if (count <= UINT16_MAX) {
        out[0] = 0xdc;
        out[1] = (uint8_t)(count >> 8);
        out[2] = (uint8_t)count;
        return 3;
    }
    out[0] = 0xdd;
    out[1] = (uint8_t)(count >> 24);
    out[2] = (uint8_t)(count >> 16);
    out[3] = (uint8_t)(count >> 8);
    out[4] = (uint8_t)count;
    return 5;
}

/*  Reads the next chunk of a map's arguments: up to chunksize objects, fewer
    when they would pass DP_CLIENT_CHUNK_BYTES (never fewer than one).
    The arguments were validated, so reading cannot fail. */
static void
s_next_chunk (dp_reader_t *reader, size_t chunksize, dp_span_t *bytes, size_t *count)
{
    const uint8_t *start = reader->pos;
    size_t n = 0;
    while (dp_reader_left (reader) > 0 && n < chunksize && n < DP_MAX_BATCH) {
        dp_reader_t probe = *reader;
        int rc = dp_mp_read_object (&probe, NULL);
        assert (rc == 0);
        (void)rc;
        if (n > 0 && (size_t)(probe.pos - start) > DP_CLIENT_CHUNK_BYTES)
            break;
        *reader = probe;
        n++;
    }
    bytes->data = start;
    bytes->size = (size_t)(reader->pos - start);
    *count = n;
}

/*  What one submit call sends: the handle's kind, its arguments, how they
    are cut into tasks. */
typedef struct {
    dp_result_mode_t mode;
    const uint8_t *args;
    size_t size;
    size_t count;     /* calls */
    size_t chunksize; /* 0 for apply: one task, not a chunk */
    size_t ntasks;
} s_plan_t;

/*  Makes task j of the plan, reading its chunk from reader. Never NULL:
    when memory runs out it returns an empty record marked for failure. */
static dp_ctask_t *
s_make_task (const char *fn, const s_plan_t *plan, dp_reader_t *reader, size_t *first,
             const s_fields_t *fields, bool *failed)
{
    dp_ctask_t *task;
    size_t count = 1;
    *failed = false;
    if (plan->chunksize == 0)
        task = dp_ctask_new (fn, NULL, 0, plan->args, plan->size);
    else {
        dp_span_t bytes;
        uint8_t header[5];
        s_next_chunk (reader, plan->chunksize, &bytes, &count);
        size_t header_size = s_array_header (header, count);
        task = dp_ctask_new (fn, header, header_size, bytes.data, bytes.size);
        if (task)
            task->flags |= DP_TASK_CHUNK;
    }
    if (!task) {
        task = dp_ctask_new ("", NULL, 0, NULL, 0);
        if (!task) {
            dp_error ("client: out of memory; cannot go on");
            abort ();
        }
        *failed = true;
    }
    task->first = *first;
    task->count = count;
    task->priority = fields->priority;
    task->timeout_ms = fields->timeout_ms;
    task->retries = fields->retries;
    task->flags |= fields->flags;
    *first += count;
    return task;
}

/*  Submits a plan and returns its handle (the caller's reference). Blocks
    while max_outstanding tasks are in flight, except on the actor thread
    (a callback submitting), which must not wait for itself. With a lane
    the broker welcomed, the tasks go into the lane's SUBMIT, for the
    calling thread to send (dp_lane_wait), not into the actor's outbox. */
static dpool_result_t *
s_submit (dpool_pool_t *self, const char *fn, const s_plan_t *plan, const dpool_call_t *call,
          dp_lane_t *lane)
{
    s_fields_t fields = {0};
    if (s_fields (self, call, &fields))
        return NULL;
    dpool_result_t *result = dp_result_new (self, plan->mode, plan->count, call);
    if (!result)
        return dp_fail_null (DPOOL_ENOMEM);
    bool on_actor = dp_client_on_actor (self);
    bool via_lane = lane && dp_lane_ready (lane);
    bool wake = false;
    int code;
    uint64_t seq0 = dp_client_open_submit (self, result, plan->ntasks, plan->size,
                                           fields.nowait && !on_actor, &wake, &code);
    if (!seq0) {
        dp_result_discard (&result);
        return dp_fail_null (code);
    }
    dp_reader_t reader;
    dp_reader_init (&reader, plan->args, plan->size);
    size_t first = 0;
    for (size_t j = 0; j < plan->ntasks; j++) {
        bool failed;
        dp_ctask_t *task = s_make_task (fn, plan, &reader, &first, &fields, &failed);
        task->seq = seq0 + j;
        task->result = result;
        wake =
            dp_client_submit (self, task, failed, !on_actor, via_lane ? dp_lane_head (lane) : NULL,
                              via_lane ? dp_lane_tail (lane) : NULL, wake);
    }
    if (wake)
        dp_client_wake (self);
    return result;
}

/*  Submits one call of fn as apply_async does, on lane if not NULL. */
static dpool_result_t *
s_apply (dpool_pool_t *self, const char *fn, const void *args, size_t size,
         const dpool_call_t *call, dp_lane_t *lane)
{
    assert (self);
    if (!s_valid_name (fn) || !args || size > DP_CLIENT_TASK_MAX - TASK_OVERHEAD ||
        dp_mp_count_objects (args, size) != 1)
        return dp_fail_null (DPOOL_EINVAL);
    s_plan_t plan = {DP_RESULT_APPLY, (const uint8_t *)args, size, 1, 0, 1};
    return s_submit (self, fn, &plan, call, lane);
}

dpool_result_t *
dpool_pool_apply_async (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                        const dpool_call_t *call)
{
    return s_apply (self, fn, args, size, call, NULL);
}

dpool_result_t *
dpool_pool_apply (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                  const dpool_call_t *call)
{
    assert (!dp_client_on_actor (self));
    /*  The calling thread sends the task and reads its result on a socket
        of its own (dp_lane.h), unless the call has callbacks: those run on
        the pool's thread, which must then see the result. */
    bool callbacks = call && (call->callback || call->error_callback || call->progress);
    dp_lane_t *lane = callbacks ? NULL : dp_lane_mine (self);
    dpool_result_t *result = s_apply (self, fn, args, size, call, lane);
    if (result && lane)
        dp_lane_wait (lane, result, dp_result_seq (result));
    if (result)
        dpool_result_wait (result, -1);
    return result;
}

/*  Checks a map's arguments and plans its chunks. Returns 0, or -1 with
    DPOOL_EINVAL: not msgpack objects back to back, an object too big for
    one task, or (star) one that is not an array. */
static int
s_plan_map (dpool_pool_t *self, dp_result_mode_t mode, const void *args, size_t size,
            size_t chunksize, bool star, s_plan_t *plan)
{
    if (size > 0 && !args)
        return dp_fail (DPOOL_EINVAL);
    dp_reader_t reader;
    dp_reader_init (&reader, size ? args : "", size);
    size_t count = 0, largest = 0;
    while (dp_reader_left (&reader) > 0) {
        dp_span_t object;
        if ((star && dp_mp_peek (&reader) != DP_MP_ARRAY) ||
            dp_mp_read_object (&reader, &object) ||
            object.size > DP_CLIENT_TASK_MAX - TASK_OVERHEAD)
            return dp_fail (DPOOL_EINVAL);
        if (object.size > largest)
            largest = object.size;
        count++;
    }
    if (chunksize == 0 && count > 0) {
        /*  Pool's rule: divmod (n, workers * 4), one more if it leaves any. */
        int procs = dp_client_procs (self);
        size_t workers = (size_t)(procs ? procs : dp_client_workers (self));
        if (workers < 1)
            workers = 1;
        chunksize = count / (workers * CHUNKS_PER_WORKER);
        if (count % (workers * CHUNKS_PER_WORKER))
            chunksize++;
    }
    plan->mode = mode;
    plan->args = (const uint8_t *)args;
    plan->size = size;
    plan->count = count;
    plan->chunksize = chunksize ? chunksize : 1;
    /*  When no chunk can reach DP_CLIENT_CHUNK_BYTES, every chunk but the
        last is full and the count says how many there are; else they are
        cut where s_next_chunk will cut them. */
    size_t per = plan->chunksize < DP_MAX_BATCH ? plan->chunksize : DP_MAX_BATCH;
    if (largest <= DP_CLIENT_CHUNK_BYTES / per) {
        plan->ntasks = count / per + (count % per != 0);
        return 0;
    }
    plan->ntasks = 0;
    dp_reader_init (&reader, size ? args : "", size);
    while (dp_reader_left (&reader) > 0) {
        dp_span_t bytes;
        size_t n;
        s_next_chunk (&reader, plan->chunksize, &bytes, &n);
        plan->ntasks++;
    }
    return 0;
}

static dpool_result_t *
s_map_async (dpool_pool_t *self, dp_result_mode_t mode, const char *fn, const void *args,
             size_t size, size_t chunksize, bool star, const dpool_call_t *call)
{
    assert (self);
    s_plan_t plan;
    if (!s_valid_name (fn) || s_plan_map (self, mode, args, size, chunksize, star, &plan))
        return dp_fail_null (DPOOL_EINVAL);
    return s_submit (self, fn, &plan, call, NULL);
}

dpool_result_t *
dpool_pool_map_async (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                      size_t chunksize, const dpool_call_t *call)
{
    return s_map_async (self, DP_RESULT_MAP, fn, args, size, chunksize, false, call);
}

dpool_result_t *
dpool_pool_map (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                size_t chunksize, const dpool_call_t *call)
{
    assert (!dp_client_on_actor (self));
    dpool_result_t *result = dpool_pool_map_async (self, fn, args, size, chunksize, call);
    if (result)
        dpool_result_wait (result, -1);
    return result;
}

dpool_result_t *
dpool_pool_starmap_async (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                          size_t chunksize, const dpool_call_t *call)
{
    return s_map_async (self, DP_RESULT_MAP, fn, args, size, chunksize, true, call);
}

dpool_result_t *
dpool_pool_starmap (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                    size_t chunksize, const dpool_call_t *call)
{
    assert (!dp_client_on_actor (self));
    dpool_result_t *result = dpool_pool_starmap_async (self, fn, args, size, chunksize, call);
    if (result)
        dpool_result_wait (result, -1);
    return result;
}

static dpool_iter_t *
s_imap (dpool_pool_t *self, dp_result_mode_t mode, const char *fn, const void *args, size_t size,
        size_t chunksize, const dpool_call_t *call)
{
    dpool_result_t *job = s_map_async (self, mode, fn, args, size, chunksize, false, call);
    if (!job)
        return NULL;
    dpool_iter_t *iter = dp_iter_new (job);
    if (!iter) {
        dpool_result_destroy (&job);
        return dp_fail_null (DPOOL_ENOMEM);
    }
    return iter;
}

dpool_iter_t *
dpool_pool_imap (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                 size_t chunksize, const dpool_call_t *call)
{
    return s_imap (self, DP_RESULT_IMAP, fn, args, size, chunksize, call);
}

dpool_iter_t *
dpool_pool_imap_unordered (dpool_pool_t *self, const char *fn, const void *args, size_t size,
                           size_t chunksize, const dpool_call_t *call)
{
    return s_imap (self, DP_RESULT_IMAP_UNORDERED, fn, args, size, chunksize, call);
}

/*  ---------------------------------------------------------------------------
    Life cycle and status.
*/

int
dpool_pool_close (dpool_pool_t *self)
{
    assert (self);
    dp_client_close (self);
    return 0;
}

int
dpool_pool_join (dpool_pool_t *self, int timeout_ms)
{
    assert (self);
    assert (!dp_client_on_actor (self));
    int code = dp_client_join (self, dp_client_deadline (timeout_ms));
    return code == DPOOL_OK ? 0 : dp_fail (code);
}

int
dpool_pool_terminate (dpool_pool_t *self)
{
    assert (self);
    assert (!dp_client_on_actor (self));
    dp_client_terminate (self);
    return 0;
}

int
dpool_pool_status (dpool_pool_t *self, int timeout_ms, void **data, size_t *size)
{
    assert (self && data && size);
    assert (!dp_client_on_actor (self));
    void *copy = NULL;
    size_t copy_size = 0;
    int code = dp_client_status (self, dp_client_deadline (timeout_ms), &copy, &copy_size);
    if (code != DPOOL_OK)
        return dp_fail (code);
    *data = copy;
    *size = copy_size;
    return 0;
}

int
dpool_pool_workers (dpool_pool_t *self)
{
    assert (self);
    return dp_client_workers (self);
}

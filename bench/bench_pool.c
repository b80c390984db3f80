/*  bench_pool.c - dpool_bench's pool workloads: tasks submitted through
    the client library (dpool.h) to an embedded pool or to a dpool-broker
    process, and the task functions they run. See dpool_bench.c for the
    list of workloads and what each measures.
*/
#include "dpool_bench.h"

#include "dpool.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/*  Default counts, before --scale. */
#define N_APPLY_ASYNC 200000
#define N_MAP         1000000
#define N_APPLY_SEQ   10000
#define N_ECHO1K      100000
#define N_ECHO64K     10000
#define N_SLEEP       10000

#define ECHO1K_SIZE  1024
#define ECHO64K_SIZE (64 * 1024)
#define SLEEP_MS     1
#define WARMUP_TASKS 200
#define ECHO_WINDOW  1000 /* tasks in flight of a streamed echo: the forwarder's --inflight */

/*  ---------------------------------------------------------------------------
    Task functions: what the pool workloads run.
*/

static int
s_noop (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    (void)args;
    return msgpack_pack_nil (result);
}

static int
s_echo (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    return msgpack_pack_object (result, *args);
}

/*  Sleeps args milliseconds. */
static int
s_sleep (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "bench_sleep: expected milliseconds");
    uint64_t ms = args->via.u64;
    struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep (&left, &left) != 0 && errno == EINTR)
        ;
    return msgpack_pack_nil (result);
}

/*  Sleeps args microseconds; returns the microseconds it took, as the
    worker's clock saw them (the fair-share workloads add them up). */
static int
s_timed (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "bench_timed: expected microseconds");
    double start = bench_now ();
    uint64_t us = args->via.u64;
    struct timespec left = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    while (nanosleep (&left, &left) != 0 && errno == EINTR)
        ;
    return msgpack_pack_uint64 (result, (uint64_t)((bench_now () - start) * 1e6 + 0.5));
}

void
bench_register_tasks (void)
{
    if (dpool_register (BENCH_FN_NOOP, s_noop, NULL) != 0 ||
        dpool_register (BENCH_FN_ECHO, s_echo, NULL) != 0 ||
        dpool_register (BENCH_FN_SLEEP, s_sleep, NULL) != 0 ||
        dpool_register (BENCH_FN_TIMED, s_timed, NULL) != 0)
        bench_fail_dpool ("register");
}

/*  ---------------------------------------------------------------------------
    Pool workloads.
*/

/*  A packed msgpack buffer. */
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} s_packed_t;

static void
s_packed_init (s_packed_t *self)
{
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, &self->sbuf, msgpack_sbuffer_write);
}

static void
s_packed_fini (s_packed_t *self)
{
    msgpack_sbuffer_destroy (&self->sbuf);
}

/*  Waits for a handle and checks it succeeded; fails the run otherwise. */
static void
s_expect_ok (dpool_result_t *result, const char *what)
{
    if (dpool_result_wait (result, BENCH_WAIT_LIMIT_MS) != 0)
        bench_fail_dpool (what);
    if (!dpool_result_successful (result)) {
        const char *message = dpool_result_error (result);
        bench_fail ("%s: task failed: %s (%d)", what, message ? message : "?",
                    dpool_result_code (result));
    }
}

/*  The number of workers in a packed STATUS-REPLY map, or -1. */
static long
s_status_workers (const void *data, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    long workers = -1;
    if (msgpack_unpack_next (&unpacked, data, size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP) {
        msgpack_object_map map = unpacked.data.via.map;
        for (uint32_t i = 0; i < map.size; i++) {
            msgpack_object key = map.ptr[i].key;
            if (key.type == MSGPACK_OBJECT_STR && key.via.str.size == 7 &&
                memcmp (key.via.str.ptr, "workers", 7) == 0 &&
                map.ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
                workers = map.ptr[i].val.via.array.size;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return workers;
}

/*  Waits until the broker has procs workers, then runs a few tasks so that
    every connection is made before the clock starts. */
void
bench_pool_warm_up (dpool_pool_t *pool, int procs)
{
    double deadline = bench_now () + BENCH_START_LIMIT_MS / 1000.0;
    while (true) {
        void *data = NULL;
        size_t size = 0;
        long workers = -1;
        if (dpool_pool_status (pool, 1000, &data, &size) == 0) {
            workers = s_status_workers (data, size);
            free (data);
        }
        if (workers >= procs)
            break;
        if (bench_now () > deadline)
            bench_fail ("only %ld of %d workers came up in time", workers, procs);
        usleep (20000);
    }
    s_packed_t args;
    s_packed_init (&args);
    for (int i = 0; i < WARMUP_TASKS; i++)
        msgpack_pack_int (&args.pk, i);
    dpool_result_t *result =
        dpool_pool_map (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size, 1, NULL);
    if (!result)
        bench_fail_dpool ("warm-up map");
    s_expect_ok (result, "warm-up map");
    dpool_result_destroy (&result);
    s_packed_fini (&args);
}

/*  Waits for a handle, checks it (when check_size is not 0, its value must
    be a bin of that size) and destroys it. */
static void
s_collect (dpool_result_t **handle, size_t check_size)
{
    s_expect_ok (*handle, "apply_async");
    if (check_size) {
        msgpack_object value;
        if (dpool_result_get (*handle, 0, &value) != 0)
            bench_fail_dpool ("result_get");
        if (value.type != MSGPACK_OBJECT_BIN || value.via.bin.size != check_size)
            bench_fail ("echo returned something else than its %zu bytes", check_size);
    }
    dpool_result_destroy (handle);
}

/*  Submits count tasks one at a time, each with the same packed args;
    returns the seconds from first submit to last result. window 0: every
    task is submitted first and every result held until the last came, as a
    Pool's caller of apply_async does; otherwise at most window tasks are
    unfinished, the oldest collected (and dropped) before the next goes, as
    the forwarder's client with --inflight does. */
static double
s_run_apply_async (dpool_pool_t *pool, const char *fn, const void *args, size_t size, long count,
                   size_t check_size, long window)
{
    dpool_result_t **handles = calloc ((size_t)count, sizeof *handles);
    if (!handles)
        bench_fail ("out of memory");
    double start = bench_now ();
    for (long i = 0; i < count; i++) {
        if (window > 0 && i >= window)
            s_collect (&handles[i - window], check_size);
        handles[i] = dpool_pool_apply_async (pool, fn, args, size, NULL);
        if (!handles[i])
            bench_fail_dpool ("apply_async");
    }
    for (long i = window > 0 && count > window ? count - window : 0; i < count; i++)
        s_collect (&handles[i], check_size);
    double seconds = bench_now () - start;
    free (handles);
    return seconds;
}

/*  One map of count no-ops with chunksize (0: dpool's default). */
static double
s_run_map (dpool_pool_t *pool, long count, size_t chunksize)
{
    s_packed_t args;
    s_packed_init (&args);
    for (long i = 0; i < count; i++)
        msgpack_pack_int64 (&args.pk, i);
    double start = bench_now ();
    dpool_result_t *result =
        dpool_pool_map (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size, chunksize, NULL);
    if (!result)
        bench_fail_dpool ("map");
    s_expect_ok (result, "map");
    double seconds = bench_now () - start;
    if (dpool_result_count (result) != (size_t)count)
        bench_fail ("map of %ld gave %zu results", count, dpool_result_count (result));
    dpool_result_destroy (&result);
    s_packed_fini (&args);
    return seconds;
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
s_percentile (const double *sorted, long count, double fraction)
{
    return sorted[(long)(fraction * (double)(count - 1) + 0.5)];
}

/*  count sequential apply calls; fills the latency percentiles. */
double
bench_pool_apply_seq (dpool_pool_t *pool, long count, bench_figures_t *figures)
{
    double *latency = malloc ((size_t)count * sizeof *latency);
    if (!latency)
        bench_fail ("out of memory");
    s_packed_t args;
    s_packed_init (&args);
    msgpack_pack_int (&args.pk, 1);
    double start = bench_now ();
    for (long i = 0; i < count; i++) {
        double sent = bench_now ();
        dpool_result_t *result =
            dpool_pool_apply (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size, NULL);
        if (!result)
            bench_fail_dpool ("apply");
        latency[i] = bench_now () - sent;
        s_expect_ok (result, "apply");
        dpool_result_destroy (&result);
    }
    double seconds = bench_now () - start;
    qsort (latency, (size_t)count, sizeof *latency, s_compare_double);
    figures->p50_us = s_percentile (latency, count, 0.50) * 1e6;
    figures->p99_us = s_percentile (latency, count, 0.99) * 1e6;
    free (latency);
    s_packed_fini (&args);
    return seconds;
}

/*  Runs one pool workload on a pool of the configured kind. */
void
bench_pool_workload (bench_figures_t *figures)
{
    const char *w = bench_options.workload;
    int procs = bench_options.procs;
    if (bench_options.mode != BENCH_MODE_EMBEDDED) {
        /*  Fork the broker and the workers before this process has a context. */
        bench_start_broker (bench_options.mode, "10000000");
        if (bench_options.relay_delay_ms >= 0)
            bench_start_relay ();
        bench_start_workers (procs);
    }
    dpool_config_t config;
    dpool_config_init (&config);
    config.procs = procs;
    config.connect = bench_options.mode == BENCH_MODE_EMBEDDED ? NULL : bench_procs.endpoint;
    config.name = "dpool_bench";
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    if (!pool)
        bench_fail_dpool ("pool");
    bench_pool_warm_up (pool, procs);

    s_packed_t args;
    s_packed_init (&args);
    if (strcmp (w, "apply_async") == 0) {
        figures->tasks = bench_scaled (N_APPLY_ASYNC);
        msgpack_pack_int (&args.pk, 1);
        figures->seconds = s_run_apply_async (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size,
                                              figures->tasks, 0, 0);
    } else if (strcmp (w, "map1") == 0 || strcmp (w, "mapdef") == 0) {
        figures->tasks = bench_scaled (N_MAP);
        figures->seconds = s_run_map (pool, figures->tasks, strcmp (w, "map1") == 0 ? 1 : 0);
    } else if (strcmp (w, "apply_seq") == 0) {
        figures->tasks = bench_scaled (N_APPLY_SEQ);
        figures->seconds = bench_pool_apply_seq (pool, figures->tasks, figures);
    } else if (strncmp (w, "echo1k", 6) == 0 || strncmp (w, "echo64k", 7) == 0) {
        bool small = strncmp (w, "echo1k", 6) == 0;
        const char *kind = w + (small ? 6 : 7);
        long window = 0;
        if (strcmp (kind, "_stream") == 0)
            window = ECHO_WINDOW;
        else if (*kind)
            bench_fail ("unknown workload '%s'", w);
        figures->tasks = bench_scaled (small ? N_ECHO1K : N_ECHO64K);
        figures->size = small ? ECHO1K_SIZE : ECHO64K_SIZE;
        char *payload = calloc (1, figures->size);
        if (!payload)
            bench_fail ("out of memory");
        msgpack_pack_bin (&args.pk, figures->size);
        msgpack_pack_bin_body (&args.pk, payload, figures->size);
        free (payload);
        figures->seconds = s_run_apply_async (pool, BENCH_FN_ECHO, args.sbuf.data, args.sbuf.size,
                                              figures->tasks, figures->size, window);
    } else if (strcmp (w, "sleep") == 0) {
        figures->tasks = bench_scaled (N_SLEEP);
        msgpack_pack_int (&args.pk, SLEEP_MS);
        figures->seconds = s_run_apply_async (pool, BENCH_FN_SLEEP, args.sbuf.data, args.sbuf.size,
                                              figures->tasks, 0, 0);
        figures->ideal_seconds = (double)figures->tasks * SLEEP_MS / 1000.0 / procs;
    } else
        bench_fail ("unknown workload '%s'", w);
    s_packed_fini (&args);

    if (bench_procs.broker > 0)
        figures->rss_broker_kb = bench_proc_status_kb (bench_procs.broker, "VmHWM");
    dpool_pool_destroy (&pool);
    /*  The workers end before the broker, so that none is left to reconnect. */
    bench_stop_pid (bench_procs.workers, SIGTERM);
    bench_procs.workers = -1;
    struct rusage children;
    getrusage (RUSAGE_CHILDREN, &children);
    figures->rss_worker_kb = children.ru_maxrss;
    bench_stop_procs ();
}

/*  demo.c - the tutorial's first example, shared by examples/pool_demo and
    `dpool demo`. See demo.h. */
#include "demo.h"

#include "dpool.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define DEMO_MAX_SLEEP_S     2.0   /* time.sleep(random.random() * 2) */
#define DEMO_JOIN_TIMEOUT_MS 60000 /* far beyond ten tasks of at most 2 s on 3 processes */

/*  Seconds on the monotonic clock. */
static double
s_now_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*  Sleeps seconds, resuming after signals. */
static void
s_sleep_s (double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
        ;
}

/*  A random number in [0, 1). Each process seeds its own generator the
    first time, so forked workers do not all sleep the same times. */
static double
s_random (void)
{
    static pid_t seeded_by;
    if (seeded_by != getpid ()) {
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        srand48 ((long)getpid () ^ (long)ts.tv_nsec ^ (long)ts.tv_sec);
        seeded_by = getpid ();
    }
    return drand48 ();
}

/*  The task, Python's worker(msg): args is the task's number (an integer,
    or an array holding one, like the tutorial's (i,)). Prints when it starts
    and finishes from the process running it, sleeps 0 to 2 s in between,
    and returns the number. */
static int
s_demo_work (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    const msgpack_object *msg = args;
    if (msg->type == MSGPACK_OBJECT_ARRAY && msg->via.array.size == 1)
        msg = &msg->via.array.ptr[0];
    if (msg->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "%s wants a task number, a non-negative integer", DEMO_FN);
    uint64_t n = msg->via.u64;
    double start = s_now_s ();
    printf ("%llu started, pid %ld\n", (unsigned long long)n, (long)getpid ());
    fflush (stdout);
    s_sleep_s (s_random () * DEMO_MAX_SLEEP_S);
    printf ("%llu finished in %.2f s\n", (unsigned long long)n, s_now_s () - start);
    fflush (stdout);
    return msgpack_pack_uint64 (result, n);
}

int
demo_register (void)
{
    return dpool_register (DEMO_FN, s_demo_work, NULL);
}

/*  Waits until the broker behind pool answers a status request, up to
    timeout_ms. Returns 0, or -1 (the reason is printed). */
static int
s_probe (dpool_pool_t *pool, const char *endpoint, int timeout_ms)
{
    void *data = NULL;
    size_t size = 0;
    if (dpool_pool_status (pool, timeout_ms, &data, &size) == 0) {
        free (data);
        return 0;
    }
    fprintf (stderr, "demo: cannot reach the broker at %s within %d ms (%s)\n", endpoint,
             timeout_ms, dpool_strerror (dpool_errno ()));
    return -1;
}

int
demo_run (const char *connect, int connect_timeout_ms)
{
    /*  Line-buffered before any worker is forked, so that the workers'
        lines and ours come out whole and in time. */
    fflush (stdout);
    setvbuf (stdout, NULL, _IOLBF, 0);
    if (demo_register ()) {
        fprintf (stderr, "demo: cannot register %s: %s\n", DEMO_FN,
                 dpool_strerror (dpool_errno ()));
        return DEMO_EXIT_FAILED;
    }
    dpool_pool_t *pool = connect ? dpool_pool_connect (connect) : dpool_pool_new (DEMO_PROCS);
    if (!pool) {
        fprintf (stderr, "demo: cannot make the pool: %s\n", dpool_strerror (dpool_errno ()));
        return connect ? DEMO_EXIT_UNREACHABLE : DEMO_EXIT_FAILED;
    }
    if (connect && s_probe (pool, connect, connect_timeout_ms)) {
        dpool_pool_destroy (&pool);
        return DEMO_EXIT_UNREACHABLE;
    }
    int rc = DEMO_EXIT_OK;
    dpool_result_t *results[DEMO_TASKS] = {NULL};
    for (int i = 0; i < DEMO_TASKS; i++) {
        msgpack_sbuffer buffer;
        msgpack_sbuffer_init (&buffer);
        msgpack_packer packer;
        msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
        msgpack_pack_int (&packer, i);
        results[i] = dpool_pool_apply_async (pool, DEMO_FN, buffer.data, buffer.size, NULL);
        msgpack_sbuffer_destroy (&buffer);
        if (!results[i]) {
            fprintf (stderr, "demo: cannot submit task %d: %s\n", i,
                     dpool_strerror (dpool_errno ()));
            rc = DEMO_EXIT_FAILED;
        }
    }
    printf ("----start----\n");
    dpool_pool_close (pool);
    if (dpool_pool_join (pool, DEMO_JOIN_TIMEOUT_MS)) {
        fprintf (stderr, "demo: the tasks did not finish within %d ms: %s\n", DEMO_JOIN_TIMEOUT_MS,
                 dpool_strerror (dpool_errno ()));
        rc = DEMO_EXIT_FAILED;
    }
    printf ("-----end-----\n");
    for (int i = 0; i < DEMO_TASKS; i++) {
        if (results[i] && !dpool_result_successful (results[i])) {
            const char *message = dpool_result_error (results[i]);
            fprintf (stderr, "demo: task %d failed: %s%s%s\n", i,
                     dpool_strerror (dpool_result_code (results[i])), message ? ": " : "",
                     message ? message : "");
            rc = DEMO_EXIT_FAILED;
        }
        dpool_result_destroy (&results[i]);
    }
    dpool_pool_destroy (&pool);
    return rc;
}

int
demo_serve (const char *endpoint, int procs)
{
    fflush (stdout);
    setvbuf (stdout, NULL, _IOLBF, 0);
    if (demo_register ()) {
        fprintf (stderr, "demo: cannot register %s: %s\n", DEMO_FN,
                 dpool_strerror (dpool_errno ()));
        return -1;
    }
    return dpool_worker_serve (endpoint, procs);
}

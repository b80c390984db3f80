/*  spmd_bench.c - an SPMD job's start-up and a map, under mpirun, for
    bench/spmd.py (bench/README.md, "SPMD").

        mpirun -n 4 spmd_bench [--tasks N] [--chunksize C]

    Every rank registers bench.square (x -> x * x) and calls
    dpool_pool_spmd with MPI as its bootstrap; ranks 1..N-1 serve, rank 0:
    - applies bench.square to 1 and notes the wall clock (CLOCK_REALTIME)
      when the result is in: bench/spmd.py takes the time from mpirun's
      start to it, the job's start-up to its first result;
    - waits until every other rank's worker is in (so that the map's figure
      is the map's only), then maps bench.square over 0..N-1 with chunksize
      C (0: dpool's choice) and checks every result;
    - prints one JSON object: first_result_unix, map_seconds, tasks,
      chunksize, workers.
    Exits 0, or 1 after saying what failed.
*/
#include <dpool.h>
#include <dpool_mpi.h>
#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TASKS 100000
#define MAX_TASKS     100000000L
#define WORKERS_MS    60000 /* how long rank 0 waits for the other ranks' workers */
#define POLL_NS       5000000L

static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "expected a natural number");
    msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
    return 0;
}

static double
s_clock (clockid_t clock)
{
    struct timespec now;
    clock_gettime (clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static int
s_fail (const char *what)
{
    fprintf (stderr, "spmd_bench: %s: %s\n", what, dpool_strerror (dpool_errno ()));
    return 1;
}

/*  The first result: bench.square of 1, in. Returns 0 or 1. */
static int
s_first (dpool_pool_t *pool, double *at)
{
    const char one = 1; /* msgpack's positive fixint 1 */
    dpool_result_t *result = dpool_pool_apply (pool, "bench.square", &one, 1, NULL);
    msgpack_object value;
    int rc = !result || dpool_result_get (result, -1, &value) || value.via.u64 != 1;
    *at = s_clock (CLOCK_REALTIME);
    dpool_result_destroy (&result);
    return rc ? s_fail ("the first apply") : 0;
}

/*  Waits until the broker counts workers workers. Returns 0 or 1. */
static int
s_wait_workers (dpool_pool_t *pool, int workers)
{
    double deadline = s_clock (CLOCK_MONOTONIC) + WORKERS_MS / 1000.0;
    while (dpool_pool_workers (pool) < workers) {
        void *data;
        size_t size;
        if (dpool_pool_status (pool, WORKERS_MS, &data, &size) == 0)
            free (data); /* asking refreshes the count */
        if (s_clock (CLOCK_MONOTONIC) > deadline) {
            fprintf (stderr, "spmd_bench: %d of %d workers came\n", dpool_pool_workers (pool),
                     workers);
            return 1;
        }
        struct timespec pause = {0, POLL_NS};
        nanosleep (&pause, NULL);
    }
    return 0;
}

/*  The map of tasks squares, timed and checked. Returns 0 or 1. */
static int
s_map (dpool_pool_t *pool, long tasks, long chunksize, double *seconds)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    for (long i = 0; i < tasks; i++)
        msgpack_pack_uint64 (&pk, (uint64_t)i);
    double start = s_clock (CLOCK_MONOTONIC);
    dpool_result_t *result =
        dpool_pool_map (pool, "bench.square", args.data, args.size, (size_t)chunksize, NULL);
    msgpack_object value;
    int rc = !result || dpool_result_get (result, -1, &value) ||
             value.type != MSGPACK_OBJECT_ARRAY || value.via.array.size != (uint32_t)tasks;
    *seconds = s_clock (CLOCK_MONOTONIC) - start;
    for (long i = 0; !rc && i < tasks; i++)
        rc = value.via.array.ptr[i].via.u64 != (uint64_t)i * (uint64_t)i;
    dpool_result_destroy (&result);
    msgpack_sbuffer_destroy (&args);
    return rc ? s_fail ("the map") : 0;
}

int
main (int argc, char *argv[])
{
    dpool_register ("bench.square", s_square, NULL);
    dpool_config_t config;
    dpool_config_init (&config);
    config.spmd.bootstrap = dpool_spmd_mpi ();
    dpool_pool_t *pool = dpool_pool_spmd (&argc, &argv, &config);
    if (!pool)
        return s_fail ("dpool_pool_spmd");
    long tasks = DEFAULT_TASKS, chunksize = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        long *option = !strcmp (argv[i], "--tasks")       ? &tasks
                       : !strcmp (argv[i], "--chunksize") ? &chunksize
                                                          : NULL;
        if (!option) {
            fprintf (stderr, "usage: mpirun -n N spmd_bench [--tasks N] [--chunksize C]\n");
            dpool_pool_destroy (&pool);
            return 1;
        }
        *option = atol (argv[i + 1]);
    }
    if (tasks < 1 || tasks > MAX_TASKS || chunksize < 0)
        tasks = 0;
    int size = 1;
    MPI_Comm_size (MPI_COMM_WORLD, &size); /* MPI runs until the pool ends */
    double first = 0, seconds = 0;
    int rc = tasks == 0 || s_first (pool, &first) || s_wait_workers (pool, size - 1) ||
             s_map (pool, tasks, chunksize, &seconds);
    if (rc == 0)
        printf ("{\"first_result_unix\": %.6f, \"map_seconds\": %.6f, \"tasks\": %ld, "
                "\"chunksize\": %ld, \"workers\": %d}\n",
                first, seconds, tasks, chunksize, dpool_pool_workers (pool));
    dpool_pool_destroy (&pool);
    return rc;
}

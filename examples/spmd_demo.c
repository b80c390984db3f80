/*  spmd_demo.c - one program, N ranks, one pool (dpool_pool_spmd), as
    mpi4py.futures runs one: rank 0 runs main's work with the pool; every
    other rank serves as its workers and ends when rank 0's pool does.

    With MPI (spmd_demo_mpi, built when CMake finds MPI):
        mpirun -n 4 ./spmd_demo_mpi              (as root: --allow-run-as-root)
        srun -n 4 --mpi=pmix ./spmd_demo_mpi
    Without MPI, through a rendezvous every rank can reach:
        DPOOL_SPMD_RENDEZVOUS=file:$HOME/.spmd-$SLURM_JOB_ID srun -n 4 ./spmd_demo
        DPOOL_SPMD_RENDEZVOUS=tcp://head:5555 srun -n 4 ./spmd_demo   (head: rank 0's node)
        DPOOL_SPMD_RENDEZVOUS=file:/shared/spmd mpirun -n 4 ./spmd_demo
    Run alone (./spmd_demo), it is an embedded pool on this host.

    Rank 0 maps "spmd.square" over 0 .. TASKS-1 (default 100; first
    argument) and prints the sum of the squares, then how many tasks each
    worker process ran, by host and pid. A second argument makes each task
    sleep that many milliseconds first.
*/
#include <dpool.h>
#ifdef DPOOL_SPMD_MPI
#include <dpool_mpi.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TASKS 100
#define MAX_TASKS     1000000
#define MAX_SLEEP_MS  60000
#define MAX_PROCESSES 256

/*  [x, sleep_ms] -> [x * x, host, pid]: which process ran it, for the
    summary. */
static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size != 2 ||
        args->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        args->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "expected [x, sleep_ms]");
    uint64_t x = args->via.array.ptr[0].via.u64;
    uint64_t sleep_ms = args->via.array.ptr[1].via.u64;
    struct timespec pause = {(time_t)(sleep_ms / 1000), (long)(sleep_ms % 1000) * 1000000L};
    nanosleep (&pause, NULL);
    char host[256] = "";
    gethostname (host, sizeof host - 1);
    msgpack_pack_array (result, 3);
    msgpack_pack_uint64 (result, x * x);
    msgpack_pack_str_with_body (result, host, strlen (host));
    msgpack_pack_int64 (result, (int64_t)getpid ());
    return 0;
}

typedef struct {
    char host[256];
    int64_t pid;
    int tasks;
} process_t;

/*  Counts one result's process in the table; returns the table's size. */
static int
s_count (process_t *table, int n, const msgpack_object *host, int64_t pid)
{
    for (int i = 0; i < n; i++)
        if (table[i].pid == pid && strlen (table[i].host) == host->via.str.size &&
            memcmp (table[i].host, host->via.str.ptr, host->via.str.size) == 0) {
            table[i].tasks++;
            return n;
        }
    if (n == MAX_PROCESSES)
        return n;
    snprintf (table[n].host, sizeof table[n].host, "%.*s", (int)host->via.str.size,
              host->via.str.ptr);
    table[n].pid = pid;
    table[n].tasks = 1;
    return n + 1;
}

/*  Prints the sum and who ran what. Returns 0, or 1 if a result is not
    what the function makes. */
static int
s_report (const msgpack_object *results, int tasks)
{
    static process_t table[MAX_PROCESSES];
    int n = 0;
    uint64_t sum = 0;
    for (int i = 0; i < tasks; i++) {
        const msgpack_object *r = &results->via.array.ptr[i];
        if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != 3 ||
            r->via.array.ptr[0].via.u64 != (uint64_t)i * (uint64_t)i)
            return 1;
        sum += r->via.array.ptr[0].via.u64;
        n = s_count (table, n, &r->via.array.ptr[1], r->via.array.ptr[2].via.i64);
    }
    printf ("sum of squares of 0..%d: %llu\n", tasks - 1, (unsigned long long)sum);
    for (int i = 0; i < n; i++)
        printf ("process %s:%lld ran %d tasks\n", table[i].host, (long long)table[i].pid,
                table[i].tasks);
    return 0;
}

/*  Rank 0's work: the map, and the report. */
static int
s_main (dpool_pool_t *pool, int tasks, int sleep_ms)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    for (int i = 0; i < tasks; i++) {
        msgpack_pack_array (&pk, 2);
        msgpack_pack_int (&pk, i);
        msgpack_pack_int (&pk, sleep_ms);
    }
    int rc = 1;
    dpool_result_t *result = dpool_pool_map (pool, "spmd.square", args.data, args.size, 1, NULL);
    msgpack_object value;
    if (!result || dpool_result_get (result, -1, &value) != 0)
        fprintf (stderr, "spmd_demo: the map failed: %s\n",
                 result ? dpool_result_error (result) : dpool_strerror (dpool_errno ()));
    else if ((rc = s_report (&value, tasks)) != 0)
        fprintf (stderr, "spmd_demo: a result is wrong\n");
    dpool_result_destroy (&result);
    msgpack_sbuffer_destroy (&args);
    return rc;
}

int
main (int argc, char *argv[])
{
    /*  Before the pool: every rank's workers know what was registered. */
    dpool_register ("spmd.square", s_square, NULL);
    dpool_config_t config;
    dpool_config_init (&config);
#ifdef DPOOL_SPMD_MPI
    config.spmd.bootstrap = dpool_spmd_mpi ();
#endif
    /*  Ranks other than 0 serve in here, and exit when rank 0's pool ends. */
    dpool_pool_t *pool = dpool_pool_spmd (&argc, &argv, &config);
    if (!pool) {
        fprintf (stderr, "spmd_demo: %s\n", dpool_strerror (dpool_errno ()));
        return 1;
    }
    int tasks = argc > 1 ? atoi (argv[1]) : DEFAULT_TASKS;
    int sleep_ms = argc > 2 ? atoi (argv[2]) : 0;
    int rc = 2;
    if (tasks < 1 || tasks > MAX_TASKS || sleep_ms < 0 || sleep_ms > MAX_SLEEP_MS)
        fprintf (stderr, "usage: spmd_demo [TASKS (1..%d) [SLEEP_MS (0..%d)]]\n", MAX_TASKS,
                 MAX_SLEEP_MS);
    else
        rc = s_main (pool, tasks, sleep_ms);
    /*  Its broker's goodbye ends the other ranks. */
    dpool_pool_destroy (&pool);
    return rc;
}

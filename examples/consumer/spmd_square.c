/*  spmd_square.c - the smallest program that uses an installed
    libdpool_mpi: started N times by mpirun (or srun --mpi=pmix), the N
    ranks are one pool (dpool_pool_spmd with the MPI bootstrap). Rank 0
    maps square over 0..9 and prints "285", the sum of the squares; the
    other ranks are its workers and end when its pool does.

        cc -o spmd_square spmd_square.c $(pkg-config --cflags --libs dpool_mpi)
        mpirun -n 3 ./spmd_square          (as root: --allow-run-as-root)

    CMakeLists.txt beside it builds it too, with find_package (dpool
    COMPONENTS mpi), when libdpool_mpi is installed.
*/
#include <dpool.h>
#include <dpool_mpi.h>

#include <stdio.h>

#define COUNT 10

/*  The task: args is the integer n; the result is n * n. */
static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "square takes a non-negative integer");
    return msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
}

int
main (int argc, char *argv[])
{
    dpool_register ("square", s_square, NULL); /* before the pool: every rank knows it */
    dpool_config_t config;
    dpool_config_init (&config);
    config.spmd.bootstrap = dpool_spmd_mpi ();
    /*  Ranks other than 0 serve in here, and exit when rank 0's pool ends. */
    dpool_pool_t *pool = dpool_pool_spmd (&argc, &argv, &config);
    if (!pool) {
        fprintf (stderr, "spmd_square: no pool: %s\n", dpool_strerror (dpool_errno ()));
        return 1;
    }
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &args, msgpack_sbuffer_write);
    for (int i = 0; i < COUNT; i++)
        msgpack_pack_int (&packer, i);
    int rc = 1;
    dpool_result_t *map = dpool_pool_map (pool, "square", args.data, args.size, 0, NULL);
    if (map && dpool_result_wait (map, -1) == 0 && dpool_result_successful (map)) {
        unsigned long long sum = 0;
        msgpack_object value;
        for (size_t i = 0; i < dpool_result_count (map); i++)
            if (dpool_result_item (map, i, &value) == 0)
                sum += value.via.u64;
        printf ("%llu\n", sum);
        rc = 0;
    } else
        fprintf (stderr, "spmd_square: the map failed: %s\n",
                 map ? dpool_result_error (map) : dpool_strerror (dpool_errno ()));
    dpool_result_destroy (&map);
    msgpack_sbuffer_destroy (&args);
    dpool_pool_destroy (&pool); /* its broker's goodbye ends the other ranks */
    return rc;
}

/*  square.c - the smallest program that uses an installed dpool: an
    embedded pool of two processes squares 7 (Pool.apply) and 0..9
    (Pool.map), and prints "49" and "285", the sum of the squares.

    It builds against an installed prefix either way:

        cc -o square square.c $(pkg-config --cflags --libs dpool)
        cmake -S examples/consumer -B out -DCMAKE_PREFIX_PATH=PREFIX && cmake --build out

    (CMakeLists.txt beside it does the second with find_package(dpool)).
*/
#include <dpool.h>

#include <stdio.h>

#define PROCS      2
#define COUNT      10
#define TIMEOUT_MS 60000

/*  The task: args is the integer n; the result is n * n. */
static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "square takes a non-negative integer");
    msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
    return 0;
}

/*  Packs 7 (one argument) and 0..COUNT-1 (the map's, back to back) into
    their buffers, which the caller destroys. */
static void
s_pack (msgpack_sbuffer *one, msgpack_sbuffer *many)
{
    msgpack_packer packer;
    msgpack_packer_init (&packer, one, msgpack_sbuffer_write);
    msgpack_pack_int (&packer, 7);
    msgpack_packer_init (&packer, many, msgpack_sbuffer_write);
    for (int i = 0; i < COUNT; i++)
        msgpack_pack_int (&packer, i);
}

int
main (void)
{
    dpool_register ("square", s_square, NULL);
    dpool_pool_t *pool = dpool_pool_new (PROCS);
    if (!pool) {
        fprintf (stderr, "square: no pool: %s\n", dpool_strerror (dpool_errno ()));
        return 1;
    }
    msgpack_sbuffer one, many;
    msgpack_sbuffer_init (&one);
    msgpack_sbuffer_init (&many);
    s_pack (&one, &many);
    int rc = 1;
    msgpack_object value;
    dpool_result_t *apply = dpool_pool_apply (pool, "square", one.data, one.size, NULL);
    dpool_result_t *map = dpool_pool_map (pool, "square", many.data, many.size, 0, NULL);
    if (apply && map && dpool_result_get (apply, TIMEOUT_MS, &value) == 0) {
        msgpack_object_print (stdout, value); /* from libmsgpackc, which dpool requires */
        putchar ('\n');
        unsigned long long sum = 0;
        for (size_t i = 0; i < dpool_result_count (map); i++)
            if (dpool_result_item (map, i, &value) == 0)
                sum += value.via.u64;
        printf ("%llu\n", sum);
        rc = 0;
    } else
        fprintf (stderr, "square: %s\n", dpool_strerror (dpool_errno ()));
    dpool_result_destroy (&apply);
    dpool_result_destroy (&map);
    msgpack_sbuffer_destroy (&one);
    msgpack_sbuffer_destroy (&many);
    dpool_pool_destroy (&pool);
    return rc;
}

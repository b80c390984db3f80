/*  dp_pool.h - what the pool API (dp_pool.c) offers the layer above the
    client: the checks of a dpool_config_t and the constructor that the
    public dpool_pool_new_config (embedded/dp_pool_new.c) calls, for a pool
    connected to a broker or for an embedded one with its extension.

    Both run on the thread that makes the pool. dp_pool_open starts the
    pool's actor thread and blocks until it is connected or has failed.
*/
#ifndef DP_POOL_H_INCLUDED
#define DP_POOL_H_INCLUDED

#include "dp_client.h"
#include "dpool.h"

/*  Most worker processes an embedded pool forks. */
#define DP_POOL_MAX_PROCS 4096

/*  Checks config's values and the consistency of its settings (an
    initializer registered here, no worker settings or bind for a
    connected pool, an endpoint with a transport). Returns DPOOL_OK, or
    DPOOL_EINVAL after logging why where it is not obvious. */
int
dp_pool_check_config (const dpool_config_t *config);

/*  Makes a pool from config (checked), connected to endpoint, with procs
    worker processes of its own (0 when connected) and ext (NULL when
    connected), whose ownership it takes in every case: on failure ext is
    destroyed too. Starts the actor and enters the pool in the list that
    the exit handler terminates. Returns the pool, or NULL with dpool's
    error set: DPOOL_EINVAL (bad CURVE keys, an endpoint ZeroMQ refuses,
    or ext's own code when it could not start), DPOOL_ENOMEM, DPOOL_ESYS. */
dpool_pool_t *
dp_pool_open (const dpool_config_t *config, const char *endpoint, int procs,
              const dp_client_ext_t *ext);

#endif

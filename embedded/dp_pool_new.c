/*  dp_pool_new.c - dpool.h's pool constructors: dpool_pool_new_config,
    dpool_pool_new and dpool_pool_connect. They decide whether the pool
    connects to a broker or runs its own broker and workers (dp_embedded.h),
    and hand the rest to the client's dp_pool_open. On the calling thread,
    which owns the pool from then on.
*/
#include "dp_embedded.h"
#include "dp_pool.h"
#include "dp_util.h"

#include <stddef.h>

dpool_pool_t *
dpool_pool_new_config (const dpool_config_t *config)
{
    dpool_config_t defaults;
    if (!config) {
        dpool_config_init (&defaults);
        config = &defaults;
    }
    int code = dp_pool_check_config (config);
    if (code)
        return dp_fail_null (code);
    if (config->connect)
        return dp_pool_open (config, config->connect, 0, NULL);
    /*  The embedded processes come first: dp_embedded_new forks before
        anything here touches CZMQ. */
    int procs = config->procs ? config->procs : dp_cpu_count ();
    dp_embedded_workers_t workers = {config->initializer, config->initargs, config->initargs_size,
                                     config->max_tasks};
    dp_embedded_t *embedded = dp_embedded_new (procs, config->bind, &workers);
    if (!embedded)
        return NULL; /* the error is set */
    dp_client_ext_t ext = dp_embedded_ext (embedded);
    return dp_pool_open (config, dp_embedded_endpoint (embedded), procs, &ext);
}

dpool_pool_t *
dpool_pool_new (int procs)
{
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = NULL;
    if (procs)
        config.procs = procs;
    return dpool_pool_new_config (&config);
}

dpool_pool_t *
dpool_pool_connect (const char *endpoint)
{
    if (!endpoint)
        return dp_fail_null (DPOOL_EINVAL);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = endpoint;
    return dpool_pool_new_config (&config);
}

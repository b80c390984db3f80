/*  dp_reqs.c - requests made of the broker through the pool's actor, and
    waited for (dp_reqs.h).
*/
#include "dp_reqs.h"

#include "dp_idmap.h"
#include "dp_util.h"

#include <assert.h>
#include <stdlib.h>

struct _dp_reqs_t {
    dp_idmap_t *reqs; /* number -> dp_req_t */
    uint64_t next;    /* the last number given */
};

void
dp_reqs_destroy (dp_reqs_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_idmap_destroy (&(*self_p)->reqs);
        free (*self_p);
        *self_p = NULL;
    }
}

/*  With the lock held: *table, made on first use. NULL if out of memory. */
static dp_reqs_t *
s_table (dp_reqs_t **table)
{
    if (!*table) {
        dp_reqs_t *made = (dp_reqs_t *)calloc (1, sizeof *made);
        if (made && !(made->reqs = dp_idmap_new_sequential ())) {
            free (made);
            made = NULL;
        }
        *table = made;
    }
    return *table;
}

static bool
s_gone (dpool_pool_t *pool)
{
    return dp_client_stopped (pool) || dp_client_terminating (pool);
}

int
dp_reqs_enter (dpool_pool_t *pool, dp_reqs_t **table, dp_req_t *req, const char **why)
{
    if (dp_client_on_actor (pool)) {
        *why = "the call cannot be made from a pool's callback";
        return DPOOL_ESTATE;
    }
    req->sent_conn = 0;
    req->done = false;
    dp_client_lock (pool);
    bool gone = s_gone (pool);
    dp_reqs_t *state = gone ? NULL : s_table (table);
    if (state) {
        req->req = ++state->next;
        if (dp_idmap_put (state->reqs, req->req, req))
            state = NULL;
    }
    bool wake = state && dp_client_want_wake (pool);
    dp_client_unlock (pool);
    if (!state) {
        *why = gone ? "the pool was terminated" : "out of memory";
        return gone ? DPOOL_ECLOSED : DPOOL_ENOMEM;
    }
    if (wake)
        dp_client_wake (pool);
    return 0;
}

int
dp_reqs_wait (dpool_pool_t *pool, dp_reqs_t *table, dp_req_t *req, int64_t deadline)
{
    while (!req->done && !s_gone (pool))
        if (!dp_client_wait (pool, deadline))
            break;
    if (req->done)
        return 0;
    dp_idmap_remove (table->reqs, req->req);
    return s_gone (pool) ? DPOOL_ECLOSED : DPOOL_ETIMEOUT;
}

typedef struct {
    dp_req_t **reqs;
    size_t count;
    uint64_t conn;
} s_walk_t;

static void
s_collect (uint64_t id, void *value, void *arg)
{
    (void)id;
    s_walk_t *walk = (s_walk_t *)arg;
    dp_req_t *req = (dp_req_t *)value;
    if (req->sent_conn != walk->conn)
        walk->reqs[walk->count++] = req;
}

static int
s_by_number (const void *a, const void *b)
{
    uint64_t x = (*(dp_req_t *const *)a)->req, y = (*(dp_req_t *const *)b)->req;
    return x < y ? -1 : x > y;
}

int
dp_reqs_unsent (dp_reqs_t *table, uint64_t conn, dp_req_t ***out, size_t *count)
{
    *out = NULL;
    *count = 0;
    size_t size = table ? dp_idmap_size (table->reqs) : 0;
    if (size == 0)
        return 0;
    s_walk_t walk = {(dp_req_t **)malloc (size * sizeof *walk.reqs), 0, conn};
    if (!walk.reqs)
        return -1;
    dp_idmap_foreach (table->reqs, s_collect, &walk);
    qsort (walk.reqs, walk.count, sizeof *walk.reqs, s_by_number);
    *out = walk.reqs;
    *count = walk.count;
    return 0;
}

dp_req_t *
dp_reqs_take (dp_reqs_t *table, uint64_t req)
{
    return table ? (dp_req_t *)dp_idmap_remove (table->reqs, req) : NULL;
}

dp_req_t *
dp_reqs_get (dp_reqs_t *table, uint64_t req)
{
    return table ? (dp_req_t *)dp_idmap_get (table->reqs, req) : NULL;
}

/*  dp_client_impl.h - the pool's struct, private to the two files of the
    pool class: dp_client.c and dp_client_tasks.c. No other file includes
    it; they use the calls of dp_client.h.

    Markings: [const] fields are set by dp_client_new, before the actor
    starts, and never change afterwards; [owner] fields belong to the
    thread that makes and destroys the pool; [lock] fields are read and
    changed only with the pool's mutex held (dp_client.h says the rules).
*/
#ifndef DP_CLIENT_IMPL_H_INCLUDED
#define DP_CLIENT_IMPL_H_INCLUDED

#include "dp_client.h"
#include "dp_idmap.h"
#include "dp_recs.h"

#include <pthread.h>
#include <stdatomic.h>

/*  dp_client_start_actor is waiting for the actor to connect. */
#define DP_ACTOR_STARTING 1

/*  A thread that waits on its lane for handle: the actor writes fd (an
    eventfd) if it finishes the handle instead (dp_lane.h). */
typedef struct {
    const dpool_result_t *handle;
    int fd;
    bool kicked; /* fd was written: the waiter reads it empty */
} dp_client_waiter_t;

struct _dpool_pool_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond; /* every wait but room's */
    /*  Submits waiting for the pool to fall under its bounds: apart, so that
        the handles finishing while the pool stays full do not wake them. */
    pthread_cond_t room;
    int wake; /* [const] the eventfd that wakes the actor; closed with the struct */

    /*  [const] configuration. */
    uint8_t session[DP_SESSION_SIZE]; /* the pool's session id, random */
    char *endpoint;                   /* where the actor and the lanes connect */
    dp_curve_t curve;                 /* its CURVE keys (curve.on false: plain) */
    char *name;                       /* shown by the broker */
    int timeout_ms;                   /* task default, 0 none */
    int retries;                      /* task default, 0 the broker's */
    size_t max_outstanding;           /* tasks in flight before submits wait */
    size_t max_outstanding_bytes;     /* bytes of their arguments, likewise */
    int procs;                        /* embedded: worker processes; 0 when connected */
    dp_client_ext_t ext;              /* an embedded pool's broker and processes */
    bool has_ext;                     /* false when connected; [owner] destroys ext */
    pthread_t actor;                  /* [owner] the actor thread, once actor_started */
    bool actor_started;               /* [owner] */
    atomic_int actor_status;          /* DP_ACTOR_STARTING, then 0 (running) or -code */
    pthread_t actor_thread;           /* valid once actor_status is 0 */

    /*  [lock] shared state. */
    int refs;             /* the owner's, plus one per handle, lane, queue handle */
    bool closed;          /* no new submissions */
    bool terminating;     /* terminate asked: the actor ends every task */
    bool terminated;      /* the actor did so */
    bool actor_gone;      /* the actor has ended: nothing more will come */
    bool workers_stopped; /* embedded: terminate stopped (or is stopping) them */
    bool joined;          /* join returned 0 */
    bool wake_pending;    /* a wake-up is written, or about to be */
    bool stopping;        /* the actor is asked to stop */
    uint64_t next_seq;
    dp_idmap_t *tasks;  /* seq -> dp_ctask_t */
    dp_recs_t *handles; /* the result handles' records (made with the first) */
    dp_ctask_t *head;   /* oldest task */
    dp_ctask_t *tail;
    size_t outstanding;       /* tasks entered and not yet finished */
    size_t outstanding_bytes; /* the bytes of their arguments */
    dp_ctask_t *failed;       /* tasks that could not be made, to end ENOMEM */
    size_t live;              /* handles not finished (callbacks included) */
    dp_batch_t *outbox;       /* SUBMIT bodies for the actor */
    dp_batch_t *outbox_tail;
    uint64_t *cancels; /* seqs to CANCEL */
    size_t ncancels;
    size_t cancels_cap;
    dp_handle_vec_t finish; /* task-less handles to finish */
    bool status_wanted;     /* a STATUS is asked for */
    uint64_t status_gen;    /* STATUS-REPLYs received */
    bool refused;           /* the broker refused the connection (EREJECTED before WELCOME) */
    uint8_t *status;        /* the last one's map */
    size_t status_size;
    int workers; /* as the broker reported last */
    /*  Queue requests waiting for their replies (dp_pool_queue.h). */
    dp_reqs_t *queue_reqs;
    /*  Batch requests waiting for their replies (dp_pool_batch.h). */
    dp_reqs_t *batch_reqs;
    /*  Lanes (dp_lane.h): the numbers in use, bit n-1 for lane n, and the
        threads waiting on a lane for a handle the actor may finish
        instead. */
    uint64_t lanes;
    dp_client_waiter_t waiters[DP_MAX_LANES];
    size_t nwaiters;
};

#endif

/*  dp_pool_queue.h - named queues reached from a program: dpool_queue_open
    on a pool, and the requests its handles make, carried by the pool's
    I/O actor.

    A calling thread enters its request (a dp_qcall_t) in the pool's table
    of queue requests under the pool's lock, wakes the actor and waits on
    the pool's condition variable. The actor sends every request not yet
    sent on its current connection (dp_pool_queue_send), and hands each
    QUEUE-REPLY to the request it answers (dp_pool_queue_reply), under the
    lock, copying a value got into the caller's buffer before telling the
    broker it was taken. A caller that stops waiting takes its request out
    of the table; a value that arrives for it then is refused, and goes
    back to the front of its queue.

    Connections: the actor numbers them (conn, from 1, a new one at every
    WELCOME). A GET sent on an older connection is sent again, with what is
    left of its timeout; any other request sent on one fails with
    DPOOL_EUNREACHABLE, since it may or may not have been carried out. A
    reply is only taken on the connection its request went out on: one
    that comes before the WELCOME of a new registration is dropped unsent
    (the broker took the value back when it forgot the old one).
*/
#ifndef DP_POOL_QUEUE_H_INCLUDED
#define DP_POOL_QUEUE_H_INCLUDED

#include "dp_client.h"
#include "dp_proto.h"

#include <stdbool.h>
#include <stdint.h>

/*  Sends one request body on the actor's connection; returns 0 or -1. */
typedef int (dp_pool_queue_send_fn) (void *arg, dp_cmd_t cmd, const dp_writer_t *body);

/*  On the actor, without the lock, while welcomed on connection conn:
    sends the requests waiting (new ones, and GETs of an older connection),
    and fails the other requests of an older connection. Returns 0, or -1
    if a send failed (the actor then connects again). */
int
dp_pool_queue_send (dpool_pool_t *pool, uint64_t conn, dp_pool_queue_send_fn *send, void *arg);

/*  What the actor must tell the broker about a QUEUE-REPLY's value. */
typedef enum {
    DP_POOL_QUEUE_ACK_NONE = 0, /* no value, or one the broker took back already */
    DP_POOL_QUEUE_ACK_TAKEN,    /* the caller has it */
    DP_POOL_QUEUE_ACK_REFUSED   /* nobody wants it: back to the front */
} dp_pool_queue_ack_t;

/*  On the actor, without the lock: hands reply (received on connection
    conn, welcomed or not) to the request it answers. Returns what to
    acknowledge. */
dp_pool_queue_ack_t
dp_pool_queue_reply (dpool_pool_t *pool, uint64_t conn, bool welcomed,
                     const dp_queue_reply_t *reply);

#endif

/*  dp_chan.h - a one-way queue of messages between two threads of one
    process: the worker's I/O thread and its task thread.

    A message is the caller's own struct with a dp_chan_node_t as its first
    member. Putting one hands it over; taking returns every waiting message
    at once, oldest first, linked by next. The reader either blocks in
    dp_chan_wait or watches dp_chan_fd (an eventfd, readable while messages
    wait) beside its sockets in poll(2); a reader that watches the fd only
    now and then arms it each time (DP_CHAN_POLL_ARMED), so that a message
    put while it does not watch costs no system call. In the worker, the
    task thread waits on its queue (DP_CHAN_WAIT) and the I/O thread polls
    its queue's fd beside its sockets (DP_CHAN_POLL).

    Why not an inproc PAIR: libzmq checks for a fork (getpid) and polls its
    mailbox's fd each time a recv finds nothing, so a task thread that looked
    for news after every task made two system calls per look. Here a look is
    a lock and a pointer test; a system call happens only to wake a reader
    that sleeps, once per run of messages it sleeps through.

    The queue has no bound of its own: what goes through it is bounded by
    the protocol (the broker's credit bounds jobs, jobs bound results, and
    queue requests and progress reports go one at a time or paced).
*/
#ifndef DP_CHAN_H_INCLUDED
#define DP_CHAN_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct dp_chan_node {
    struct dp_chan_node *next;
} dp_chan_node_t;

typedef struct dp_chan_t dp_chan_t;

/*  How the reader learns of messages. It can always wait in dp_chan_wait. */
typedef enum {
    DP_CHAN_WAIT,      /* only so: no eventfd is made */
    DP_CHAN_POLL,      /* dp_chan_fd is readable while a message waits */
    DP_CHAN_POLL_ARMED /* likewise, but only once dp_chan_arm armed it */
} dp_chan_mode_t;

/*  Makes an empty queue. NULL on failure, with errno set. */
dp_chan_t *
dp_chan_new (dp_chan_mode_t mode);

/*  Destroys the queue; each message still in it goes to drop (which frees
    it), in order. NULL self is harmless; nulls the caller's pointer. */
void
dp_chan_destroy (dp_chan_t **self_p, void (*drop) (dp_chan_node_t *node));

/*  Appends node, taking ownership of it; wakes the reader if it waits.
    Never blocks beyond the queue's lock. */
void
dp_chan_put (dp_chan_t *self, dp_chan_node_t *node);

/*  Takes every waiting message, oldest first (linked by next, the last
    with next NULL); NULL if none. Never blocks beyond the queue's lock. The
    caller owns what it took. */
dp_chan_node_t *
dp_chan_take (dp_chan_t *self);

/*  Blocks until a message waits (true) or deadline_ms (dp_now_ms time, -1
    for none) passes with none (false). Takes nothing. */
bool
dp_chan_wait (dp_chan_t *self, int64_t deadline_ms);

/*  The eventfd of a pollable queue: readable while a message waits, until
    dp_chan_take takes it. -1 for a DP_CHAN_WAIT queue. */
int
dp_chan_fd (const dp_chan_t *self);

/*  For a DP_CHAN_POLL_ARMED queue, before the reader polls the fd: returns
    false if a message waits already (take it instead), else true, and the
    fd is made readable by the next message put, until the next take. */
bool
dp_chan_arm (dp_chan_t *self);

#endif

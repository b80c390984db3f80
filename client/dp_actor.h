/*  dp_actor.h - CZMQ-style actors whose destruction waits for their thread.

    zactor_destroy returns once the actor has signalled, while its thread is
    still closing its end of the pipe; a program that exits right after then
    finds a socket open, and CZMQ's exit handler sleeps 200 ms "for the
    actors". A dp_actor runs the same kind of function (zactor_fn: it gets
    the pipe, signals once it is ready, returns on "$TERM"), and
    dp_actor_destroy joins the thread: when it returns, every socket the
    actor made is closed.
*/
#ifndef DP_ACTOR_H_INCLUDED
#define DP_ACTOR_H_INCLUDED

#include <czmq.h>

typedef struct _dp_actor_t dp_actor_t;

/*  Starts fn (pipe, args) on a new thread and waits for its first signal.
    Returns NULL if the thread or the pipe cannot be made. */
dp_actor_t *
dp_actor_new (zactor_fn *fn, void *args);

/*  Sends "$TERM" and waits for the thread to end; nulls *self_p. */
void
dp_actor_destroy (dp_actor_t **self_p);

#endif

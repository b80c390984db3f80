/*  dp_actor.c - CZMQ-style actors whose destruction waits for their thread. */
#include "dp_actor.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

struct _dp_actor_t {
    zsock_t *front; /* the caller's end of the pipe */
    zsock_t *back;  /* the thread's end, closed by the thread */
    zactor_fn *fn;
    void *args;
    pthread_t thread;
};

static void *
s_shim (void *arg)
{
    dp_actor_t *self = (dp_actor_t *)arg;
    self->fn (self->back, self->args);
    zsock_destroy (&self->back);
    return NULL;
}

dp_actor_t *
dp_actor_new (zactor_fn *fn, void *args)
{
    assert (fn);
    dp_actor_t *self = (dp_actor_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fn = fn;
    self->args = args;
    self->front = zsys_create_pipe (&self->back);
    if (!self->front || pthread_create (&self->thread, NULL, s_shim, self) != 0) {
        zsock_destroy (&self->front);
        zsock_destroy (&self->back);
        free (self);
        return NULL;
    }
    zsock_wait (self->front); /* the actor is ready (or has given up) */
    return self;
}

void
dp_actor_destroy (dp_actor_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_actor_t *self = *self_p;
        /*  The actor may have ended already: never block on the send. */
        zsock_set_sndtimeo (self->front, 0);
        zstr_send (self->front, "$TERM");
        pthread_join (self->thread, NULL);
        zsock_destroy (&self->front);
        free (self);
        *self_p = NULL;
    }
}

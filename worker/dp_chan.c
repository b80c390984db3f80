/*  dp_chan.c - a one-way queue of messages between two threads.

    The lock guards the list and signalled (the eventfd holds a count). A
    writer that finds the list empty wakes the reader: it signals the
    condition variable (nothing to do when no one sleeps on it) and, for a
    pollable queue, counts on the eventfd. One that finds messages already
    there knows the reader has been woken, or will look before it sleeps.
    The eventfd is read back under the lock, so a count never outlives the
    messages it announced. An armed-only queue counts on it only while its
    reader has armed it: a take disarms it.
*/
#include "dp_chan.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct dp_chan_t {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    dp_chan_node_t *head;
    dp_chan_node_t *tail;
    int fd;         /* eventfd, or -1 */
    bool signalled; /* fd holds a count */
    bool armed_only;
    bool armed; /* armed_only: the reader polls the fd */
};

dp_chan_t *
dp_chan_new (dp_chan_mode_t mode)
{
    dp_chan_t *self = (dp_chan_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = -1;
    pthread_condattr_t attr;
    if (pthread_condattr_init (&attr)) {
        free (self);
        return NULL;
    }
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init (&self->cond, &attr);
    pthread_condattr_destroy (&attr);
    if (rc) {
        free (self);
        errno = rc;
        return NULL;
    }
    pthread_mutex_init (&self->mutex, NULL);
    self->armed_only = mode == DP_CHAN_POLL_ARMED;
    if (mode != DP_CHAN_WAIT && (self->fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        int saved = errno;
        dp_chan_destroy (&self, NULL);
        errno = saved;
        return NULL;
    }
    return self;
}

void
dp_chan_destroy (dp_chan_t **self_p, void (*drop) (dp_chan_node_t *node))
{
    assert (self_p);
    if (*self_p) {
        dp_chan_t *self = *self_p;
        dp_chan_node_t *node = self->head;
        while (node) {
            dp_chan_node_t *next = node->next;
            if (drop)
                drop (node);
            node = next;
        }
        if (self->fd >= 0)
            close (self->fd);
        pthread_cond_destroy (&self->cond);
        pthread_mutex_destroy (&self->mutex);
        free (self);
        *self_p = NULL;
    }
}

void
dp_chan_put (dp_chan_t *self, dp_chan_node_t *node)
{
    assert (self);
    assert (node);
    node->next = NULL;
    pthread_mutex_lock (&self->mutex);
    bool was_empty = self->head == NULL;
    if (was_empty)
        self->head = node;
    else
        self->tail->next = node;
    self->tail = node;
    if (was_empty) {
        pthread_cond_signal (&self->cond);
        if (self->fd >= 0 && !self->signalled && (self->armed || !self->armed_only)) {
            uint64_t one = 1;
            /*  Cannot fail short of a count near 2^64; the reader reads it
                back at every take. */
            ssize_t n = write (self->fd, &one, sizeof one);
            (void)n;
            self->signalled = true;
        }
    }
    pthread_mutex_unlock (&self->mutex);
}

dp_chan_node_t *
dp_chan_take (dp_chan_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    dp_chan_node_t *list = self->head;
    self->head = self->tail = NULL;
    self->armed = false;
    if (self->signalled) {
        uint64_t count;
        ssize_t n = read (self->fd, &count, sizeof count);
        (void)n;
        self->signalled = false;
    }
    pthread_mutex_unlock (&self->mutex);
    return list;
}

bool
dp_chan_wait (dp_chan_t *self, int64_t deadline_ms)
{
    assert (self);
    struct timespec ts;
    if (deadline_ms >= 0) {
        ts.tv_sec = (time_t)(deadline_ms / 1000);
        ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
    }
    pthread_mutex_lock (&self->mutex);
    int rc = 0;
    while (!self->head && rc != ETIMEDOUT) {
        rc = deadline_ms < 0 ? pthread_cond_wait (&self->cond, &self->mutex)
                             : pthread_cond_timedwait (&self->cond, &self->mutex, &ts);
    }
    bool ready = self->head != NULL;
    pthread_mutex_unlock (&self->mutex);
    return ready;
}

int
dp_chan_fd (const dp_chan_t *self)
{
    assert (self);
    return self->fd;
}

bool
dp_chan_arm (dp_chan_t *self)
{
    assert (self && self->armed_only);
    pthread_mutex_lock (&self->mutex);
    bool empty = self->head == NULL;
    if (empty)
        self->armed = true;
    pthread_mutex_unlock (&self->mutex);
    return empty;
}

/*  dp_cli_signal.c - how the dpool command ends on SIGINT and SIGTERM.

    A command that talks to a broker blocks the two signals before it makes
    its pool, so that every thread made after (the pool's own) keeps them
    blocked, and one thread of the command takes them with sigwait. The
    first one is kept (dp_cli_signal) and terminates the pool being watched
    (dp_cli_signal_watch): every wait inside the library ends at once, a
    task's or an iterator's with DPOOL_ECANCELLED and a queue call's with
    DPOOL_ECLOSED, and the command's own loops, which wait in short slices
    (status requests included), see dp_cli_signal and stop. The command
    then destroys its pool, whose BYE makes the broker forget the session:
    its queued tasks, its waiting queue requests, and any value lent to it,
    which goes back to the front of its queue. It exits with 128 + the
    signal's number.

    The thread takes signals only: it never touches the pool but to
    terminate it, under s_mutex, which the command holds too while it stops
    watching the pool, so the pool cannot be destroyed under the thread.
*/
#include "dp_cli.h"
#include "dp_util.h"
#include "dpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static atomic_int s_signal;                                 /* the first one taken, or 0 */
static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER; /* guards s_pool */
static dpool_pool_t *s_pool;                                /* the pool to terminate */
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static int s_started = -1; /* 0 once the thread runs */

/*  The signals the command ends on. */
static void
s_signal_set (sigset_t *set)
{
    sigemptyset (set);
    sigaddset (set, SIGINT);
    sigaddset (set, SIGTERM);
}

/*  Keeps the first signal and terminates the watched pool. */
static void
s_on_signal (int sig)
{
    pthread_mutex_lock (&s_mutex);
    int none = 0;
    if (atomic_compare_exchange_strong (&s_signal, &none, sig) && s_pool)
        dpool_pool_terminate (s_pool);
    pthread_mutex_unlock (&s_mutex);
}

/*  The signal thread: takes SIGINT and SIGTERM for the whole process, for
    as long as it lives. Later signals than the first change nothing. */
static void *
s_signal_main (void *arg)
{
    (void)arg;
    sigset_t set;
    s_signal_set (&set);
    for (;;) {
        int sig = 0;
        if (sigwait (&set, &sig) == 0)
            s_on_signal (sig);
    }
    return NULL;
}

/*  Blocks the signals in the calling thread and starts the signal thread;
    unblocks them again if it cannot start. */
static void
s_start (void)
{
    sigset_t set;
    s_signal_set (&set);
    if (pthread_sigmask (SIG_BLOCK, &set, NULL) != 0)
        return;
    pthread_attr_t attr;
    pthread_t thread;
    int rc = pthread_attr_init (&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create (&thread, &attr, s_signal_main, NULL);
        pthread_attr_destroy (&attr);
    }
    if (rc != 0) {
        pthread_sigmask (SIG_UNBLOCK, &set, NULL);
        dp_warn ("dpool: cannot start the signal thread (%s): signals end it at once",
                 strerror (rc));
        return;
    }
    s_started = 0;
}

int
dp_cli_signal_start (void)
{
    pthread_once (&s_once, s_start);
    return s_started;
}

void
dp_cli_signal_watch (dpool_pool_t *pool)
{
    pthread_mutex_lock (&s_mutex);
    s_pool = pool;
    if (pool && atomic_load (&s_signal))
        dpool_pool_terminate (pool);
    pthread_mutex_unlock (&s_mutex);
}

int
dp_cli_signal (void)
{
    return atomic_load (&s_signal);
}

/*  test_chan.c - the queue between a worker's threads: order, take-all,
    the eventfd's readiness following the queue, waits with a deadline,
    leftovers handed to drop, and no message lost or reordered when a
    second thread writes while the reader sleeps, blocks or polls. */
#include "dp_chan.h"
#include "dp_testutil.h"
#include "dp_util.h"

#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#define STREAM 200000

typedef struct {
    dp_chan_node_t node;
    int seq;
} s_item_t;

static s_item_t *
s_item (int seq)
{
    s_item_t *item = (s_item_t *)malloc (sizeof *item);
    CHECK (item);
    item->seq = seq;
    return item;
}

static int s_dropped;

static void
s_drop (dp_chan_node_t *node)
{
    s_dropped++;
    free (node);
}

/*  Whether fd polls readable now. */
static bool
s_readable (int fd)
{
    struct pollfd item = {.fd = fd, .events = POLLIN};
    return poll (&item, 1, 0) == 1 && (item.revents & POLLIN);
}

/*  Frees a taken list; returns how many it held, checking they run from
 *next on, and moves *next past them. */
static int
s_consume (dp_chan_node_t *list, int *next)
{
    int count = 0;
    while (list) {
        s_item_t *item = (s_item_t *)list;
        list = list->next;
        if (item->seq != *next)
            dp_test_fail (__FILE__, __LINE__, "got message %d, expected %d", item->seq, *next);
        (*next)++;
        count++;
        free (item);
    }
    return count;
}

static void
s_basics (void)
{
    dp_chan_t *chan = dp_chan_new (DP_CHAN_POLL);
    CHECK (chan);
    int fd = dp_chan_fd (chan);
    CHECK (fd >= 0);
    CHECK (dp_chan_take (chan) == NULL);
    CHECK (!s_readable (fd));
    for (int i = 0; i < 3; i++)
        dp_chan_put (chan, &s_item (i)->node);
    CHECK (s_readable (fd));
    CHECK (dp_chan_wait (chan, dp_now_ms ()));
    int next = 0;
    CHECK_EQ_INT (s_consume (dp_chan_take (chan), &next), 3);
    CHECK (!s_readable (fd));
    CHECK (dp_chan_take (chan) == NULL);

    /*  Nothing comes: the wait gives up at its deadline, not before. */
    int64_t deadline = dp_now_ms () + 50;
    CHECK (!dp_chan_wait (chan, deadline));
    CHECK (dp_now_ms () >= deadline);

    /*  What is left at the end goes to drop, all of it. */
    dp_chan_put (chan, &s_item (3)->node);
    dp_chan_put (chan, &s_item (4)->node);
    s_dropped = 0;
    dp_chan_destroy (&chan, s_drop);
    CHECK (chan == NULL);
    CHECK_EQ_INT (s_dropped, 2);
    dp_chan_destroy (&chan, s_drop);

    /*  A queue read only by waiting has no fd. */
    chan = dp_chan_new (DP_CHAN_WAIT);
    CHECK (chan);
    CHECK_EQ_INT (dp_chan_fd (chan), -1);
    dp_chan_put (chan, &s_item (0)->node);
    CHECK (dp_chan_wait (chan, -1));
    next = 0;
    CHECK_EQ_INT (s_consume (dp_chan_take (chan), &next), 1);
    dp_chan_destroy (&chan, s_drop);

    /*  An armed-only queue: its fd says nothing until armed, and a take
        disarms it; waiting works either way. Arming with a message waiting
        says so instead. */
    chan = dp_chan_new (DP_CHAN_POLL_ARMED);
    CHECK (chan);
    fd = dp_chan_fd (chan);
    CHECK (fd >= 0);
    dp_chan_put (chan, &s_item (0)->node);
    CHECK (!s_readable (fd));
    CHECK (dp_chan_wait (chan, -1));
    CHECK (!dp_chan_arm (chan));
    next = 0;
    CHECK_EQ_INT (s_consume (dp_chan_take (chan), &next), 1);
    CHECK (dp_chan_arm (chan));
    dp_chan_put (chan, &s_item (1)->node);
    CHECK (s_readable (fd));
    dp_chan_put (chan, &s_item (2)->node);
    CHECK_EQ_INT (s_consume (dp_chan_take (chan), &next), 2);
    CHECK (!s_readable (fd));
    dp_chan_put (chan, &s_item (3)->node);
    CHECK (!s_readable (fd));
    CHECK_EQ_INT (s_consume (dp_chan_take (chan), &next), 1);
    dp_chan_destroy (&chan, s_drop);
}

typedef struct {
    dp_chan_t *chan;
    int count;
} s_writer_arg_t;

static void *
s_writer (void *arg)
{
    s_writer_arg_t *w = (s_writer_arg_t *)arg;
    for (int i = 0; i < w->count; i++) {
        dp_chan_put (w->chan, &s_item (i)->node);
        /*  Now and then let the reader run dry and sleep. */
        if (i % 5000 == 4999) {
            struct timespec pause = {0, 200000};
            nanosleep (&pause, NULL);
        }
    }
    return NULL;
}

/*  One thread writes STREAM numbered messages; this one reads them all,
    in order, sleeping in dp_chan_wait (or in poll on the fd, armed first
    for an armed-only queue) whenever the queue is empty. A lost wake-up
    would leave it asleep past the test's deadline. */
static void
s_stream (dp_chan_mode_t mode)
{
    bool by_fd = mode != DP_CHAN_WAIT;
    dp_chan_t *chan = dp_chan_new (mode);
    CHECK (chan);
    s_writer_arg_t arg = {chan, STREAM};
    pthread_t thread;
    CHECK (pthread_create (&thread, NULL, s_writer, &arg) == 0);
    int next = 0;
    while (next < STREAM) {
        if (mode == DP_CHAN_POLL_ARMED && !dp_chan_arm (chan))
            ; /* a message waits: no poll */
        else if (by_fd) {
            struct pollfd item = {.fd = dp_chan_fd (chan), .events = POLLIN};
            CHECK (poll (&item, 1, -1) == 1);
        } else
            CHECK (dp_chan_wait (chan, -1));
        CHECK (s_consume (dp_chan_take (chan), &next) > 0);
    }
    CHECK (pthread_join (thread, NULL) == 0);
    CHECK (dp_chan_take (chan) == NULL);
    if (by_fd)
        CHECK (!s_readable (dp_chan_fd (chan)));
    dp_chan_destroy (&chan, s_drop);
}

/*  The program's one case. */
static void
s_case_worker_chan_keeps_order_and_wakes_the_reader (void)
{
    s_basics ();
    s_stream (DP_CHAN_WAIT);
    s_stream (DP_CHAN_POLL);
    s_stream (DP_CHAN_POLL_ARMED);
}

static const dp_test_case_t s_cases[] = {
    {"worker_chan_keeps_order_and_wakes_the_reader",
     s_case_worker_chan_keeps_order_and_wakes_the_reader},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

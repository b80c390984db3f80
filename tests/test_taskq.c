/*  test_taskq.c - the broker's priority queue: priority first, FIFO among
    equals, removal from the middle, tasks queued again with their old
    place, more priorities than lanes, checked against a brute-force model;
    and a large lane's memory coming back once it drains. */
#include "dp_taskq.h"
#include "dp_testutil.h"

#include <stdlib.h>
#include <string.h>

#define N 1500

static dp_taskq_item_t s_items[N];
static bool s_queued[N];
static bool s_ordered[N]; /* has an order: it was queued before */
static uint64_t s_x = 12345;

static uint32_t
s_rand (uint32_t below)
{
    s_x = s_x * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((s_x >> 33) % below);
}

/*  The item the model says comes first, or -1. */
static int
s_model_first (void)
{
    int best = -1;
    for (int i = 0; i < N; i++)
        if (s_queued[i] && (best < 0 || s_items[i].priority > s_items[best].priority ||
                            (s_items[i].priority == s_items[best].priority &&
                             s_items[i].order < s_items[best].order)))
            best = i;
    return best;
}

/*  Random pushes of new items, pushes of items taken before (a retry: same
    priority and order), removals and pops, each pop checked against the
    model. priorities: how many distinct priorities new items take. */
static void
s_random_ops (dp_taskq_t *q, uint64_t *order, uint32_t priorities, int rounds)
{
    uint32_t count = dp_taskq_size (q);
    for (int r = 0; r < rounds; r++) {
        int i = (int)s_rand (N);
        uint32_t op = s_rand (10);
        if (op < 5 && !s_queued[i]) {
            if (!s_ordered[i] || op < 3) {
                s_items[i].priority = (int32_t)s_rand (priorities) - 1;
                s_items[i].order = ++*order;
                s_ordered[i] = true;
            }
            CHECK (s_items[i].index == DP_TASKQ_NONE);
            CHECK (dp_taskq_push (q, &s_items[i]) == 0);
            CHECK (s_items[i].index != DP_TASKQ_NONE);
            s_queued[i] = true;
            count++;
        } else if (op < 7 && s_queued[i]) {
            dp_taskq_remove (q, &s_items[i]);
            CHECK (s_items[i].index == DP_TASKQ_NONE);
            s_queued[i] = false;
            count--;
        } else if (op >= 7) {
            int want = s_model_first ();
            dp_taskq_item_t *first = dp_taskq_pop (q);
            if (want < 0)
                CHECK (first == NULL);
            else {
                CHECK (first == &s_items[want]);
                CHECK (first->index == DP_TASKQ_NONE);
                s_queued[want] = false;
                count--;
            }
        }
        CHECK_EQ_INT (dp_taskq_size (q), count);
    }
}

/*  A burst of one priority: the lane grows, holes from removals in the
    middle are compacted away as it fills, and once drained it gives its
    ring back. */
static void
s_burst (void)
{
    enum { BURST = 200000 };
    dp_taskq_item_t *burst = calloc (BURST, sizeof *burst);
    CHECK (burst);
    dp_taskq_t q;
    dp_taskq_init (&q);
    uint64_t order = 0;
    for (int i = 0; i < BURST; i++) {
        burst[i].order = ++order;
        burst[i].index = DP_TASKQ_NONE;
        CHECK (dp_taskq_push (&q, &burst[i]) == 0);
    }
    CHECK (q.size == 0); /* all in their lane */
    /*  Cancel nine in ten, from everywhere but the head. */
    for (int i = 1; i < BURST; i++)
        if (i % 10 != 0)
            dp_taskq_remove (&q, &burst[i]);
    CHECK_EQ_INT (dp_taskq_size (&q), BURST / 10);
    /*  More behind them, enough to fill the ring: it is compacted, not
        grown. */
    enum { MORE = 70000 };
    static dp_taskq_item_t more[MORE];
    for (int i = 0; i < MORE; i++) {
        more[i].order = ++order;
        more[i].index = DP_TASKQ_NONE;
        CHECK (dp_taskq_push (&q, &more[i]) == 0);
    }
    CHECK (q.size == 0);
    CHECK (q.lanes[0].mask + 1 == 262144); /* 200,000 rounded up */
    size_t wrong = 0;
    for (int i = 0; i < BURST / 10; i++)
        if (dp_taskq_pop (&q) != &burst[i * 10])
            wrong++;
    for (int i = 0; i < MORE; i++)
        if (dp_taskq_pop (&q) != &more[i])
            wrong++;
    CHECK (wrong == 0);
    CHECK (dp_taskq_pop (&q) == NULL);
    /*  Drained: the large ring went back. */
    for (uint32_t n = 0; n < q.nlanes; n++)
        CHECK (q.lanes[n].ring == NULL || q.lanes[n].mask < 1024);
    dp_taskq_fini (&q);
    free (burst);
}

/*  The program's one case. */
static void
s_case_broker_taskq_priority_fifo_and_remove (void)
{
    for (int i = 0; i < N; i++)
        s_items[i].index = DP_TASKQ_NONE;
    dp_taskq_t q;
    dp_taskq_init (&q);
    uint64_t order = 0;
    /*  One priority, then three, then seven (more than there are lanes),
        then one again. */
    s_random_ops (&q, &order, 1, 30000);
    s_random_ops (&q, &order, 3, 30000);
    s_random_ops (&q, &order, 7, 30000);
    s_random_ops (&q, &order, 1, 30000);
    /*  Emptied by pops, in the model's order. */
    int want;
    while ((want = s_model_first ()) >= 0) {
        CHECK (dp_taskq_pop (&q) == &s_items[want]);
        s_queued[want] = false;
    }
    CHECK (dp_taskq_pop (&q) == NULL);
    CHECK_EQ_INT (dp_taskq_size (&q), 0);
    /*  fini leaves what it held in no queue. */
    for (int i = 0; i < 100; i++) {
        s_items[i].order = ++order;
        CHECK (dp_taskq_push (&q, &s_items[i]) == 0);
    }
    dp_taskq_fini (&q);
    for (int i = 0; i < 100; i++)
        CHECK (s_items[i].index == DP_TASKQ_NONE);

    s_burst ();
}

static const dp_test_case_t s_cases[] = {
    {"broker_taskq_priority_fifo_and_remove", s_case_broker_taskq_priority_fifo_and_remove},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

/*  test_taskq.c - the broker's priority queue: priority first, FIFO among
    equals, removal from the middle, checked against a brute-force model. */
#include "dp_taskq.h"
#include "dp_testutil.h"

#include <stdlib.h>
#include <string.h>

#define N 2000

int
main (void)
{
    dp_test_begin ("taskq", 60);
    static dp_taskq_item_t items[N];
    static bool queued[N];
    dp_taskq_t q;
    dp_taskq_init (&q);
    uint64_t x = 12345;
    uint64_t order = 0;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        items[i].priority = (int32_t)((x >> 33) % 5) - 2;
        items[i].order = ++order;
        items[i].index = DP_TASKQ_NONE;
        CHECK (dp_taskq_push (&q, &items[i]) == 0);
        queued[i] = true;
    }
    /*  Remove every third item from wherever it sits. */
    for (int i = 0; i < N; i += 3) {
        dp_taskq_remove (&q, &items[i]);
        CHECK (items[i].index == DP_TASKQ_NONE);
        queued[i] = false;
    }
    /*  Pop everything: each pop is the best of what is left. */
    size_t left = dp_taskq_size (&q);
    while (left > 0) {
        dp_taskq_item_t *first = dp_taskq_pop (&q);
        CHECK (first);
        int at = (int)(first - items);
        CHECK (queued[at]);
        for (int i = 0; i < N; i++)
            if (queued[i] && i != at)
                CHECK (!dp_taskq_before (&items[i], first));
        queued[at] = false;
        left--;
        CHECK_EQ_INT (dp_taskq_size (&q), left);
    }
    CHECK (dp_taskq_pop (&q) == NULL);
    dp_taskq_fini (&q);
    return 0;
}

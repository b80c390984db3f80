/*  test_slab.c - the broker's record allocator: records of every size class
    and beyond, reuse after free, nothing overlapping, every block but one
    given back once nothing is in use (run under ASan and valgrind to see
    overruns and leaks). */
#include "dp_slab.h"
#include "dp_testutil.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RECORDS 20000

/*  The program's one case. */
static void
s_case_broker_slab_records_reused_and_released (void)
{
    dp_slab_t *slab = dp_slab_new ();
    CHECK (slab);
    static void *records[RECORDS];
    static size_t sizes[RECORDS];
    uint64_t x = 7;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < RECORDS; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            sizes[i] = (size_t)(x >> 33) % (DP_SLAB_MAX + 200); /* some go to malloc */
            records[i] = dp_slab_alloc (slab, sizes[i]);
            CHECK (records[i]);
            CHECK (((uintptr_t)records[i] & 7) == 0);
            memset (records[i], (int)(i & 0xff), sizes[i]);
        }
        CHECK_EQ_INT (dp_slab_live (slab), RECORDS);
        /*  No record was overwritten by another. */
        for (int i = 0; i < RECORDS; i++)
            for (size_t b = 0; b < sizes[i]; b++)
                if (((unsigned char *)records[i])[b] != (unsigned char)(i & 0xff))
                    dp_test_fail (__FILE__, __LINE__, "record %d overwritten", i);
        /*  Free every other one, allocate again (reuse), then free all. */
        for (int i = 0; i < RECORDS; i += 2)
            dp_slab_free (slab, records[i], sizes[i]);
        for (int i = 0; i < RECORDS; i += 2) {
            records[i] = dp_slab_alloc (slab, sizes[i]);
            CHECK (records[i]);
        }
        for (int i = 0; i < RECORDS; i++)
            dp_slab_free (slab, records[i], sizes[i]);
        CHECK_EQ_INT (dp_slab_live (slab), 0);
    }
    dp_slab_destroy (&slab);
    CHECK (slab == NULL);
    dp_slab_destroy (&slab);
}

static const dp_test_case_t s_cases[] = {
    {"broker_slab_records_reused_and_released", s_case_broker_slab_records_reused_and_released},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

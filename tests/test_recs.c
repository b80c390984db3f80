/*  test_recs.c - the client's handle-record allocator: records spread over
    several chunks, aligned and not overlapping, reused after free, every
    chunk but one given back once nothing is in use; and the same again
    after that. Under AddressSanitizer each record is its own malloc, which
    the sanitizer watches; the content checks still run there. */
#include "dp_recs.h"
#include "dp_testutil.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIZE    264   /* about a result handle's */
#define RECORDS 20000 /* two and a half chunks of records */

/*  Fills a record with a pattern made from its index. */
static void
s_fill (void *record, int index)
{
    memset (record, index & 0xff, SIZE);
    memcpy (record, &index, sizeof index);
}

static void
s_check (const void *record, int index)
{
    int stored;
    memcpy (&stored, record, sizeof stored);
    CHECK_EQ_INT (stored, index);
    const uint8_t *bytes = (const uint8_t *)record;
    for (size_t i = sizeof index; i < SIZE; i++)
        if (bytes[i] != (uint8_t)(index & 0xff))
            dp_test_fail (__FILE__, __LINE__, "record %d byte %zu overwritten", index, i);
}

/*  The program's one case. */
static void
s_case_client_handle_records_reused_and_released (void)
{
    dp_recs_t *recs = dp_recs_new (SIZE);
    CHECK (recs);
    static void *records[RECORDS];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < RECORDS; i++) {
            records[i] = dp_recs_alloc (recs);
            CHECK (records[i]);
            CHECK (((uintptr_t)records[i] & 15) == 0);
            s_fill (records[i], i);
        }
        CHECK_EQ_INT (dp_recs_live (recs), RECORDS);
        bool plain = dp_recs_chunks (recs) == 0; /* AddressSanitizer's build */
        if (!plain)
            CHECK_EQ_INT (dp_recs_chunks (recs), (RECORDS * SIZE) / DP_RECS_CHUNK + 1);
        for (int i = 0; i < RECORDS; i++)
            s_check (records[i], i);

        /*  Every other one back, then as many new: the freed ones are
            reused (no chunk more), and nothing overlaps. */
        size_t chunks = dp_recs_chunks (recs);
        for (int i = 0; i < RECORDS; i += 2)
            dp_recs_free (recs, records[i]);
        CHECK_EQ_INT (dp_recs_live (recs), RECORDS / 2);
        for (int i = 0; i < RECORDS; i += 2) {
            records[i] = dp_recs_alloc (recs);
            CHECK (records[i]);
            s_fill (records[i], i);
        }
        CHECK_EQ_INT (dp_recs_chunks (recs), chunks);
        for (int i = 0; i < RECORDS; i++)
            s_check (records[i], i);

        /*  All back: one chunk is kept, ready for the next round. */
        for (int i = 0; i < RECORDS; i++)
            dp_recs_free (recs, records[i]);
        CHECK_EQ_INT (dp_recs_live (recs), 0);
        CHECK_EQ_INT (dp_recs_chunks (recs), plain ? 0 : 1);
    }
    dp_recs_destroy (&recs);
    CHECK (!recs);
}

static const dp_test_case_t s_cases[] = {
    {"client_handle_records_reused_and_released",
     s_case_client_handle_records_reused_and_released},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

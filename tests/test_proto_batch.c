/*  test_proto_batch.c - the codec of the detached-batch commands
    (BATCH-ADD, -GET, -ACK, -LIST, -CANCEL, -REPLY; PROTOCOL.md 5.8): a
    round trip for each, then hostile bodies (a malformed batch id, fields
    past their limits, unknown flags, every truncation and random bytes)
    that must be refused with a reason and never read out of bounds (ASan
    in CI).
*/
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID "0123456789abcdef"

static dp_writer_t w;

static void
s_add (void)
{
    const uint8_t args[] = {0x91, 0x07}; /* [7] */
    dp_encode_batch_add (&w, 9, ID, "nightly", "square", DP_BATCH_DISCARD, 3600, 2);
    dp_list_open (&w);
    for (uint64_t i = 0; i < 2; i++) {
        dp_task_t task = {.id = i, .fn = {(const uint8_t *)"square", 6}, .args = {args, 2}};
        dp_list_add_task (&w, DP_CMD_SUBMIT, &task);
    }
    dp_list_end (&w);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_ADD);
    CHECK_EQ_INT (msg.u.batch_add.req, 9);
    CHECK (dp_span_eq (msg.u.batch_add.id, ID));
    CHECK (dp_span_eq (msg.u.batch_add.name, "nightly"));
    CHECK (dp_span_eq (msg.u.batch_add.fn, "square"));
    CHECK_EQ_INT (msg.u.batch_add.flags, DP_BATCH_DISCARD);
    CHECK_EQ_INT (msg.u.batch_add.ttl_s, 3600);
    CHECK_EQ_INT (msg.u.batch_add.total, 2);
    dp_task_t task;
    uint64_t n = 0;
    while (dp_list_next_task (&msg.u.batch_add.tasks, DP_CMD_SUBMIT, &task)) {
        CHECK_EQ_INT (task.id, n++);
        CHECK (dp_span_eq (task.fn, "square"));
        CHECK_EQ_INT (task.args.size, 2);
    }
    CHECK_EQ_INT (n, 2);
    dp_testpeer_prefixes_refused (DP_CMD_BATCH_ADD, dp_writer_data (&w), dp_writer_size (&w));

    /*  Ids: 16 lowercase hex characters, nothing else. */
    const char *bad_ids[] = {"",
                             "0123456789abcde",
                             "0123456789abcdef0",
                             "0123456789ABCDEF",
                             "0123456789abcdeg",
                             "../../etc/passwd"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        dp_encode_batch_add (&w, 1, bad_ids[i], "", "f", 0, 0, 0);
        dp_list_open (&w);
        dp_list_end (&w);
        dp_testpeer_refused (&w, DP_CMD_BATCH_ADD, DP_ELIMIT);
        dp_encode_batch_cancel (&w, 1, bad_ids[i]);
        dp_testpeer_refused (&w, DP_CMD_BATCH_CANCEL, DP_ELIMIT);
    }
    /*  Unknown flags, a TTL past a year, an empty function. */
    dp_encode_batch_add (&w, 1, ID, "", "f", 0x80, 0, 0);
    dp_list_open (&w);
    dp_list_end (&w);
    dp_testpeer_refused (&w, DP_CMD_BATCH_ADD, DP_ELIMIT);
    dp_encode_batch_add (&w, 1, ID, "", "f", 0, DP_MAX_BATCH_TTL_S + 1, 0);
    dp_list_open (&w);
    dp_list_end (&w);
    dp_testpeer_refused (&w, DP_CMD_BATCH_ADD, DP_ELIMIT);
    dp_encode_batch_add (&w, 1, ID, "", "", 0, 0, 0);
    dp_list_open (&w);
    dp_list_end (&w);
    dp_testpeer_refused (&w, DP_CMD_BATCH_ADD, DP_ELIMIT);
}

static void
s_requests (void)
{
    dp_encode_batch_get (&w, 3, ID, 1ull << 40, 500, DP_MAX_BATCH_WAIT_MS);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_GET);
    CHECK_EQ_INT (msg.u.batch.req, 3);
    CHECK (dp_span_eq (msg.u.batch.id, ID));
    CHECK_EQ_INT (msg.u.batch.from, 1ull << 40);
    CHECK_EQ_INT (msg.u.batch.max, 500);
    CHECK_EQ_INT (msg.u.batch.wait_ms, DP_MAX_BATCH_WAIT_MS);
    dp_testpeer_prefixes_refused (DP_CMD_BATCH_GET, dp_writer_data (&w), dp_writer_size (&w));
    dp_encode_batch_get (&w, 3, ID, 0, 0, 0);
    dp_testpeer_refused (&w, DP_CMD_BATCH_GET, DP_ELIMIT);
    dp_encode_batch_get (&w, 3, ID, 0, DP_MAX_BATCH + 1, 0);
    dp_testpeer_refused (&w, DP_CMD_BATCH_GET, DP_ELIMIT);
    dp_encode_batch_get (&w, 3, ID, 0, 1, DP_MAX_BATCH_WAIT_MS + 1);
    dp_testpeer_refused (&w, DP_CMD_BATCH_GET, DP_ELIMIT);

    dp_encode_batch_ack (&w, 4, ID, 77);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_ACK);
    CHECK_EQ_INT (msg.u.batch.req, 4);
    CHECK_EQ_INT (msg.u.batch.from, 77);
    dp_testpeer_prefixes_refused (DP_CMD_BATCH_ACK, dp_writer_data (&w), dp_writer_size (&w));

    dp_encode_batch_list (&w, 5);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_LIST);
    CHECK_EQ_INT (msg.u.batch.req, 5);
    CHECK_EQ_INT (msg.u.batch.id.size, 0);

    dp_encode_batch_cancel (&w, 6, ID);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_CANCEL);
    CHECK_EQ_INT (msg.u.batch.req, 6);
    CHECK (dp_span_eq (msg.u.batch.id, ID));
    dp_testpeer_prefixes_refused (DP_CMD_BATCH_CANCEL, dp_writer_data (&w), dp_writer_size (&w));
}

static void
s_reply (void)
{
    const uint8_t value[] = {0x31}; /* 49 */
    dp_encode_batch_reply (&w, 7, 0, NULL);
    dp_list_open (&w);
    dp_batch_info_t info = {.id = {(const uint8_t *)ID, 16},
                            .name = {(const uint8_t *)"n", 1},
                            .fn = {(const uint8_t *)"square", 6},
                            .total = 3,
                            .added = 3,
                            .done = 2,
                            .failed = 1,
                            .collected = 1,
                            .age_ms = 1234,
                            .flags = DP_BATCH_SEALED,
                            .ttl_s = 60};
    dp_list_add_batch (&w, &info);
    dp_list_end (&w);
    dp_list_open (&w);
    dp_list_add_result (&w, 1, 0, value, sizeof value);
    dp_list_add_error (&w, 2, DPOOL_EFAILED, "boom");
    dp_list_end (&w);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_REPLY);
    CHECK_EQ_INT (msg.u.batch_reply.req, 7);
    CHECK_EQ_INT (msg.u.batch_reply.code, 0);
    dp_batch_info_t got;
    CHECK (dp_list_next_batch (&msg.u.batch_reply.batches, &got));
    CHECK (dp_span_eq (got.id, ID));
    CHECK (dp_span_eq (got.fn, "square"));
    CHECK_EQ_INT (got.total, 3);
    CHECK_EQ_INT (got.done, 2);
    CHECK_EQ_INT (got.failed, 1);
    CHECK_EQ_INT (got.collected, 1);
    CHECK_EQ_INT (got.age_ms, 1234);
    CHECK_EQ_INT (got.flags, DP_BATCH_SEALED);
    CHECK_EQ_INT (got.ttl_s, 60);
    CHECK (!dp_list_next_batch (&msg.u.batch_reply.batches, &got));
    dp_result_t result;
    CHECK (dp_list_next_result (&msg.u.batch_reply.results, &result));
    CHECK_EQ_INT (result.id, 1);
    CHECK_EQ_INT (result.value.size, 1);
    CHECK (dp_list_next_result (&msg.u.batch_reply.results, &result));
    CHECK_EQ_INT (result.code, DPOOL_EFAILED);
    CHECK (!dp_list_next_result (&msg.u.batch_reply.results, &result));
    dp_testpeer_prefixes_refused (DP_CMD_BATCH_REPLY, dp_writer_data (&w), dp_writer_size (&w));

    dp_encode_batch_reply (&w, 8, DPOOL_EDENIED, "not yours");
    dp_list_open (&w);
    dp_list_end (&w);
    dp_list_open (&w);
    dp_list_end (&w);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_BATCH_REPLY);
    CHECK_EQ_INT (msg.u.batch_reply.code, DPOOL_EDENIED);
    CHECK (dp_span_eq (msg.u.batch_reply.message, "not yours"));
}

/*  Random bytes as every batch command: refused or accepted, never a
    read outside the buffer. */
static void
s_random (void)
{
    srand (15);
    for (int i = 0; i < 20000; i++) {
        size_t size = (size_t)(rand () % 64);
        uint8_t *body = (uint8_t *)malloc (size ? size : 1);
        CHECK (body);
        for (size_t j = 0; j < size; j++)
            body[j] = (uint8_t)rand ();
        if (size)
            body[0] = (uint8_t)(0x90 | (rand () % 12)); /* mostly arrays */
        dp_msg_t msg;
        dp_testpeer_decode ((dp_cmd_t)(DP_CMD_BATCH_ADD + i % 6), body, size, &msg);
        free (body);
    }
}

static void
s_case_proto_batch_roundtrip_and_hostile_input (void)
{
    dp_writer_init (&w);
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_BATCH_ADD), "BATCH-ADD");
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_BATCH_REPLY), "BATCH-REPLY");
    CHECK_EQ_INT (DP_CMD_BATCH_ADD, 23);
    s_add ();
    s_requests ();
    s_reply ();
    s_random ();
    dp_writer_fini (&w);
}

static const dp_test_case_t s_cases[] = {
    {"proto_batch_roundtrip_and_hostile_input", s_case_proto_batch_roundtrip_and_hostile_input},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

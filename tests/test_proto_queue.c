/*  test_proto_queue.c - the codec of the named-queue and progress commands
    (QUEUE-OPEN, -PUT, -GET, -SIZE, -REPLY, -ACK, PROGRESS, WORK-STATUS): a
    round trip for each, then hostile bodies (wrong types, out-of-range
    fields, values over their limits, truncations and random bytes) that
    must be refused with a reason and never read out of bounds (ASan in CI).
*/
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dp_writer_t w;

static bool
s_bytes_eq (dp_span_t span, const void *data, size_t size)
{
    return span.size == size && memcmp (span.data, data, size) == 0;
}

static void
s_names (void)
{
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_QUEUE_OPEN), "QUEUE-OPEN");
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_QUEUE_ACK), "QUEUE-ACK");
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_WORK_STATUS), "WORK-STATUS");
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_ERROR), "ERROR");
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_COUNT_), "?");
    /*  Version 1 still: the new commands are additions after ERROR. */
    CHECK_EQ_INT (DP_CMD_QUEUE_OPEN, 14);
    CHECK_EQ_INT (DP_CMD_WORK_STATUS, 21);
    CHECK_EQ_INT (DP_CMD_ATTACH, 22);
}

static void
s_requests (void)
{
    const uint8_t value[] = {0x92, 0xa1, 'i', 0x07}; /* ["i", 7] */
    dp_encode_queue_open (&w, 1ull << 40, "letters", 3);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_OPEN);
    CHECK_EQ_INT (msg.u.queue.req, 1ull << 40);
    CHECK (dp_span_eq (msg.u.queue.name, "letters"));
    CHECK_EQ_INT (msg.u.queue.maxsize, 3);

    dp_encode_queue_put (&w, 2, "letters", value, sizeof value, -1, 5);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_PUT);
    CHECK_EQ_INT (msg.u.queue.req, 2);
    CHECK (dp_span_eq (msg.u.queue.name, "letters"));
    CHECK (s_bytes_eq (msg.u.queue.value, value, sizeof value));
    CHECK_EQ_INT (msg.u.queue.timeout_ms, -1);
    CHECK_EQ_INT (msg.u.queue.maxsize, 5);

    dp_encode_queue_get (&w, 3, "q", INT32_MAX);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_GET);
    CHECK_EQ_INT (msg.u.queue.req, 3);
    CHECK (dp_span_eq (msg.u.queue.name, "q"));
    CHECK_EQ_INT (msg.u.queue.timeout_ms, INT32_MAX);

    dp_encode_queue_size (&w, 4, "q");
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_SIZE);
    CHECK_EQ_INT (msg.u.queue.req, 4);
    CHECK (dp_span_eq (msg.u.queue.name, "q"));

    /*  Limits: a name of 1 to 255 bytes, maxsize up to DP_MAX_QUEUE_SIZE, a
        timeout of at least -1, a value of at most DP_MAX_QUEUE_VALUE. */
    dp_encode_queue_open (&w, 1, "", 0);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_OPEN, DP_ELIMIT);
    char long_name[DP_MAX_NAME + 2];
    memset (long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    dp_encode_queue_size (&w, 1, long_name); /* the encoder cuts it at the limit */
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_SIZE);
    CHECK_EQ_INT (msg.u.queue.name.size, DP_MAX_NAME);
    dp_encode_queue_open (&w, 1, "q", DP_MAX_QUEUE_SIZE);
    dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_OPEN);
    dp_encode_queue_open (&w, 1, "q", DP_MAX_QUEUE_SIZE + 1);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_OPEN, DP_ELIMIT);
    dp_encode_queue_put (&w, 1, "q", value, sizeof value, 0, DP_MAX_QUEUE_SIZE + 1);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_PUT, DP_ELIMIT);
    dp_encode_queue_get (&w, 1, "q", -2);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_GET, DP_ELIMIT);
    dp_encode_queue_put (&w, 1, "q", value, sizeof value, -2, 0);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_PUT, DP_ELIMIT);

    /*  The largest value passes, one byte more does not. */
    size_t big = DP_MAX_QUEUE_VALUE;
    uint8_t *bin = malloc (big);
    CHECK (bin);
    memset (bin, 0, big);
    bin[0] = 0xc6; /* bin32 of big - 5 bytes */
    uint32_t n = (uint32_t)(big - 5);
    bin[1] = (uint8_t)(n >> 24);
    bin[2] = (uint8_t)(n >> 16);
    bin[3] = (uint8_t)(n >> 8);
    bin[4] = (uint8_t)n;
    dp_encode_queue_put (&w, 1, "q", bin, big, 0, 0);
    dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_PUT);
    n++;
    bin = realloc (bin, big + 1);
    CHECK (bin);
    bin[1] = (uint8_t)(n >> 24);
    bin[2] = (uint8_t)(n >> 16);
    bin[3] = (uint8_t)(n >> 8);
    bin[4] = (uint8_t)n;
    bin[big] = 0;
    dp_encode_queue_put (&w, 1, "q", bin, big + 1, 0, 0);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_PUT, DP_ELIMIT);
    free (bin);

    /*  A value nested deeper than a worker can unpack. */
    uint8_t deep[DP_MP_MAX_DEPTH + 2];
    memset (deep, 0x91, sizeof deep - 1);
    deep[sizeof deep - 1] = 0x00;
    dp_encode_queue_put (&w, 1, "q", deep, sizeof deep, 0, 0);
    dp_testpeer_refused (&w, DP_CMD_QUEUE_PUT, DP_EBODY);

    /*  Later minor versions may append fields. */
    static const uint8_t longer[] = {0x93, 0x05, 0xa1, 'q', 0xc3}; /* SIZE [5, "q", true] */
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_SIZE, longer, sizeof longer, &msg), DP_OK);
    CHECK_EQ_INT (msg.u.queue.req, 5);
}

static void
s_reply_ack_progress (void)
{
    const uint8_t value[] = {0xa1, 't'};
    dp_encode_queue_reply (&w, 9, 4, 6, value, sizeof value, 77);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_REPLY);
    CHECK_EQ_INT (msg.u.queue_reply.req, 9);
    CHECK_EQ_INT (msg.u.queue_reply.code, 0);
    CHECK_EQ_INT (msg.u.queue_reply.size, 4);
    CHECK_EQ_INT (msg.u.queue_reply.maxsize, 6);
    CHECK (s_bytes_eq (msg.u.queue_reply.value, value, sizeof value));
    CHECK_EQ_INT (msg.u.queue_reply.token, 77);

    dp_encode_queue_reply (&w, 10, 0, 0, NULL, 0, 0);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_REPLY);
    CHECK (s_bytes_eq (msg.u.queue_reply.value, "\xc0", 1));
    CHECK_EQ_INT (msg.u.queue_reply.token, 0);

    dp_encode_queue_fail (&w, 11, DPOOL_EAGAIN, 0, 2, "queue is empty");
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_REPLY);
    CHECK_EQ_INT (msg.u.queue_reply.code, DPOOL_EAGAIN);
    CHECK_EQ_INT (msg.u.queue_reply.maxsize, 2);
    /*  The value spans the whole str item, header included. */
    CHECK (s_bytes_eq (msg.u.queue_reply.value, "\xaequeue is empty", 15));

    /*  A failure carries no token: one that does is malformed. */
    static const uint8_t failed_token[] = {0x96, 0x01, 0x0b, 0x00, 0x00, 0xa1, 'x', 0x05};
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_REPLY, failed_token, sizeof failed_token, &msg),
                  DP_EBODY);
    /*  A failure's value must be a str. */
    static const uint8_t failed_nil[] = {0x96, 0x01, 0x0b, 0x00, 0x00, 0xc0, 0x00};
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_REPLY, failed_nil, sizeof failed_nil, &msg),
                  DP_EBODY);
    /*  A size over the limit. */
    static const uint8_t huge_size[] = {0x96, 0x01, 0x00, 0xce, 0x7f, 0xff,
                                        0xff, 0xff, 0x00, 0xc0, 0x00};
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_REPLY, huge_size, sizeof huge_size, &msg),
                  DP_ELIMIT);

    dp_encode_queue_ack (&w, 77, true);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_ACK);
    CHECK_EQ_INT (msg.u.queue_ack.token, 77);
    CHECK (msg.u.queue_ack.accept);
    dp_encode_queue_ack (&w, UINT64_MAX, false);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_QUEUE_ACK);
    CHECK (msg.u.queue_ack.token == UINT64_MAX);
    CHECK (!msg.u.queue_ack.accept);
    static const uint8_t ack_int[] = {0x92, 0x01, 0x01}; /* accept is not a bool */
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_ACK, ack_int, sizeof ack_int, &msg), DP_EBODY);

    const uint8_t frac[] = {0x92, 0x03, 0x0a}; /* [3, 10] */
    for (int round = 0; round < 2; round++) {
        dp_cmd_t cmd = round ? DP_CMD_WORK_STATUS : DP_CMD_PROGRESS;
        dp_encode_progress (&w, 123456789, frac, sizeof frac);
        msg = dp_testpeer_decode_ok (&w, cmd);
        CHECK_EQ_INT (msg.u.progress.id, 123456789);
        CHECK (s_bytes_eq (msg.u.progress.value, frac, sizeof frac));
    }
    /*  A progress value over DP_MAX_PROGRESS bytes. */
    uint8_t big[DP_MAX_PROGRESS + 4];
    memset (big, 0, sizeof big);
    big[0] = 0xc5; /* bin16 */
    big[1] = (uint8_t)((sizeof big - 3) >> 8);
    big[2] = (uint8_t)(sizeof big - 3);
    dp_encode_progress (&w, 1, big, sizeof big);
    dp_testpeer_refused (&w, DP_CMD_PROGRESS, DP_ELIMIT);
    /*  Nested deeper than DP_MAX_PROGRESS_DEPTH: the status map carries it. */
    uint8_t deep[DP_MAX_PROGRESS_DEPTH + 2];
    memset (deep, 0x91, sizeof deep - 1);
    deep[sizeof deep - 1] = 0x00;
    dp_encode_progress (&w, 1, deep + 1, sizeof deep - 1);
    dp_testpeer_decode_ok (&w, DP_CMD_PROGRESS);
    dp_encode_progress (&w, 1, deep, sizeof deep);
    dp_testpeer_refused (&w, DP_CMD_PROGRESS, DP_EBODY);
    dp_encode_progress (&w, 1, big, 0); /* no value at all */
    dp_testpeer_refused (&w, DP_CMD_WORK_STATUS, DP_EBODY);
}

/*  Every prefix of every valid body is refused, and so is every body with
    one byte flipped to each of a few hostile values: never a crash. */
static void
s_truncated_and_mutated (void)
{
    const uint8_t value[] = {0x82, 0xa1, 'a', 0x01, 0xa1, 'b', 0x92, 0xc3, 0xc0};
    struct {
        dp_cmd_t cmd;
        int kind;
    } cases[] = {{DP_CMD_QUEUE_OPEN, 0}, {DP_CMD_QUEUE_PUT, 1},   {DP_CMD_QUEUE_GET, 2},
                 {DP_CMD_QUEUE_SIZE, 3}, {DP_CMD_QUEUE_REPLY, 4}, {DP_CMD_QUEUE_REPLY, 5},
                 {DP_CMD_QUEUE_ACK, 6},  {DP_CMD_PROGRESS, 7},    {DP_CMD_WORK_STATUS, 7}};
    static const uint8_t hostile[] = {0x00, 0xc1, 0xdd, 0xdf, 0xff, 0x7f, 0xc6, 0xcf};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        switch (cases[c].kind) {
        case 0:
            dp_encode_queue_open (&w, 300, "queue", 100);
            break;
        case 1:
            dp_encode_queue_put (&w, 300, "queue", value, sizeof value, 2500, 100);
            break;
        case 2:
            dp_encode_queue_get (&w, 300, "queue", 2500);
            break;
        case 3:
            dp_encode_queue_size (&w, 300, "queue");
            break;
        case 4:
            dp_encode_queue_reply (&w, 300, 3, 100, value, sizeof value, 1234);
            break;
        case 5:
            dp_encode_queue_fail (&w, 300, DPOOL_ETIMEOUT, 0, 0, "timed out");
            break;
        case 6:
            dp_encode_queue_ack (&w, 1234, true);
            break;
        default:
            dp_encode_progress (&w, 300, value, sizeof value);
            break;
        }
        size_t size = dp_writer_size (&w);
        uint8_t *body = malloc (size);
        CHECK (body);
        memcpy (body, dp_writer_data (&w), size);
        dp_msg_t msg;
        CHECK_EQ_INT (dp_testpeer_decode (cases[c].cmd, body, size, &msg), DP_OK);
        dp_testpeer_prefixes_refused (cases[c].cmd, body, size);
        for (size_t at = 0; at < size; at++)
            for (size_t h = 0; h < sizeof hostile; h++) {
                uint8_t saved = body[at];
                body[at] = hostile[h];
                dp_testpeer_decode (cases[c].cmd, body, size, &msg); /* any answer but a crash */
                body[at] = saved;
            }
        /*  Trailing bytes after the one item are malformed. */
        uint8_t *longer = malloc (size + 1);
        CHECK (longer);
        memcpy (longer, body, size);
        longer[size] = 0xc0;
        CHECK_EQ_INT (dp_testpeer_decode (cases[c].cmd, longer, size + 1, &msg), DP_EBODY);
        free (longer);
        free (body);
    }
}

/*  Wrong types in each field of a QUEUE-PUT. */
static void
s_wrong_types (void)
{
    /*  [req, name, value, timeout_ms, maxsize] */
    static const uint8_t good[] = {0x95, 0x01, 0xa1, 'q', 0xc0, 0xff, 0x00};
    dp_msg_t msg;
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_PUT, good, sizeof good, &msg), DP_OK);
    CHECK_EQ_INT (msg.u.queue.timeout_ms, -1);
    static const size_t field_at[] = {1, 2, 5, 6}; /* the value (4) may be anything */
    for (size_t i = 0; i < sizeof field_at / sizeof field_at[0]; i++) {
        uint8_t copy[sizeof good];
        memcpy (copy, good, sizeof good);
        copy[field_at[i]] = 0xc2; /* false */
        if (field_at[i] == 2)
            copy[3] = 0xc0; /* and nil where the name's byte was */
        CHECK (dp_testpeer_decode (DP_CMD_QUEUE_PUT, copy, sizeof copy, &msg) != DP_OK);
    }
    /*  A negative req; a map instead of the array; too few fields. */
    uint8_t neg[sizeof good];
    memcpy (neg, good, sizeof good);
    neg[1] = 0xff;
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_PUT, neg, sizeof neg, &msg), DP_EBODY);
    static const uint8_t map[] = {0x81, 0x01, 0x02};
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_GET, map, sizeof map, &msg), DP_EBODY);
    static const uint8_t short_get[] = {0x92, 0x01, 0xa1, 'q'};
    CHECK_EQ_INT (dp_testpeer_decode (DP_CMD_QUEUE_GET, short_get, sizeof short_get, &msg),
                  DP_EBODY);
    static const uint8_t empty[] = {0x90};
    dp_cmd_t cmds[] = {DP_CMD_QUEUE_OPEN,  DP_CMD_QUEUE_PUT, DP_CMD_QUEUE_GET, DP_CMD_QUEUE_SIZE,
                       DP_CMD_QUEUE_REPLY, DP_CMD_QUEUE_ACK, DP_CMD_PROGRESS,  DP_CMD_WORK_STATUS};
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        CHECK_EQ_INT (dp_testpeer_decode (cmds[c], empty, sizeof empty, &msg), DP_EBODY);
        CHECK_EQ_INT (dp_testpeer_decode (cmds[c], NULL, 0, &msg), DP_EBODY);
    }
}

/*  Random bodies as every new command: refused or accepted, and an
    accepted one's spans lie inside the body. */
static void
s_random (void)
{
    uint64_t x = 0x2545f4914f6cdd1dull;
    for (int round = 0; round < 100000; round++) {
        size_t size = (size_t)(x % 48);
        uint8_t *body = malloc (size ? size : 1);
        CHECK (body);
        for (size_t i = 0; i < size; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body[i] = (uint8_t)x;
        }
        if (size && round % 2)
            body[0] = (uint8_t)(0x92 | (body[0] & 0x07)); /* a plausible array */
        dp_cmd_t cmd = (dp_cmd_t)(DP_CMD_QUEUE_OPEN + x % (DP_CMD_COUNT_ - DP_CMD_QUEUE_OPEN));
        dp_msg_t msg;
        if (dp_testpeer_decode (cmd, body, size, &msg) == DP_OK) {
            dp_span_t spans[2] = {{NULL, 0}, {NULL, 0}};
            if (cmd <= DP_CMD_QUEUE_SIZE) {
                spans[0] = msg.u.queue.name;
                spans[1] = msg.u.queue.value;
            } else if (cmd == DP_CMD_QUEUE_REPLY)
                spans[0] = msg.u.queue_reply.value;
            else if (cmd != DP_CMD_QUEUE_ACK)
                spans[0] = msg.u.progress.value;
            for (int s = 0; s < 2; s++)
                CHECK (!spans[s].size ||
                       (spans[s].data >= body && spans[s].data + spans[s].size <= body + size));
        }
        free (body);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
}

/*  The program's one case. */
static void
s_case_proto_queue_and_progress_roundtrip_and_hostile_input (void)
{
    dp_writer_init (&w);
    s_names ();
    s_requests ();
    s_reply_ack_progress ();
    s_truncated_and_mutated ();
    s_wrong_types ();
    s_random ();
    dp_writer_fini (&w);
}

static const dp_test_case_t s_cases[] = {
    {"proto_queue_and_progress_roundtrip_and_hostile_input",
     s_case_proto_queue_and_progress_roundtrip_and_hostile_input},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

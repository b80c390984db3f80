/*  test_proto.c - the wire codec: a round trip for every message, and
    hostile input (truncated, oversized, wrong-typed, random) that must be
    refused with a reason, never crash, never read out of bounds (run under
    ASan in CI). */
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dp_writer_t w;

static dp_reason_t
s_decode (dp_cmd_t cmd, const void *body, size_t size)
{
    dp_msg_t msg;
    return dp_testpeer_decode (cmd, body, size, &msg);
}

static bool
s_span_is (dp_span_t span, const char *text)
{
    return dp_span_eq (span, text);
}

static void
s_header (void)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_cmd_t cmd;
    dp_header_encode (header, DP_CMD_SUBMIT);
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_OK);
    CHECK_EQ_INT (cmd, DP_CMD_SUBMIT);
    CHECK_EQ_INT (dp_header_decode (header, 3, &cmd), DP_EHEADER);
    CHECK_EQ_INT (dp_header_decode (header, 5, &cmd), DP_EHEADER);
    header[0] = 'X';
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_ESIGNATURE);
    header[0] = 'D';
    header[2] = DP_VERSION + 1;
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_EVERSION);
    /*  Version 1 (before payload frames): only its ERROR is read. */
    header[2] = DP_VERSION_1;
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_EVERSION);
    CHECK_EQ_INT (dp_header_version (header, 4), DP_VERSION_1);
    header[3] = DP_CMD_ERROR;
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_OK);
    CHECK_EQ_INT (cmd, DP_CMD_ERROR);
    CHECK_EQ_INT (dp_header_version (header, 3), 0);
    header[2] = DP_VERSION;
    header[3] = 0;
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_ECOMMAND);
    header[3] = DP_CMD_COUNT_;
    CHECK_EQ_INT (dp_header_decode (header, 4, &cmd), DP_ECOMMAND);
}

static void
s_hello_welcome_ready (void)
{
    uint8_t session[DP_SESSION_SIZE];
    for (int i = 0; i < DP_SESSION_SIZE; i++)
        session[i] = (uint8_t)(i * 7);
    dp_encode_hello (&w, session, "client-1");
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_HELLO);
    CHECK_EQ_INT (msg.u.hello.session.size, DP_SESSION_SIZE);
    CHECK (memcmp (msg.u.hello.session.data, session, DP_SESSION_SIZE) == 0);
    CHECK (s_span_is (msg.u.hello.name, "client-1"));
    CHECK_EQ_INT (msg.u.hello.lane, 0);
    CHECK_EQ_INT (((const uint8_t *)dp_writer_data (&w))[0], 0x92); /* two fields */

    /*  A lane's HELLO: the third field, up to DP_MAX_LANES. */
    dp_encode_hello_lane (&w, session, "client-1", DP_MAX_LANES);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_HELLO);
    CHECK_EQ_INT (msg.u.hello.lane, DP_MAX_LANES);
    CHECK (s_span_is (msg.u.hello.name, "client-1"));
    uint8_t lane_65[] = {0x93, 0xc4, 0x10, 0, 0, 0, 0, 0, 0,    0,   0,
                         0,    0,    0,    0, 0, 0, 0, 0, 0xa1, 'c', 65};
    CHECK_EQ_INT (s_decode (DP_CMD_HELLO, lane_65, sizeof lane_65), DP_ELIMIT);
    uint8_t lane_str[] = {0x93, 0xc4, 0x10, 0, 0, 0, 0, 0,    0,   0,    0,  0,
                          0,    0,    0,    0, 0, 0, 0, 0xa1, 'c', 0xa1, 'x'};
    CHECK_EQ_INT (s_decode (DP_CMD_HELLO, lane_str, sizeof lane_str), DP_EBODY);

    dp_encode_welcome (&w, 1000, 2500, "broker@h", 7);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_WELCOME);
    CHECK_EQ_INT (msg.u.welcome.heartbeat_ms, 1000);
    CHECK_EQ_INT (msg.u.welcome.expiry_ms, 2500);
    CHECK (s_span_is (msg.u.welcome.broker, "broker@h"));
    CHECK_EQ_INT (msg.u.welcome.workers, 7);
    CHECK_EQ_INT (msg.u.welcome.token, 0);
    CHECK_EQ_INT (dp_writer_size (&w) < 20, 1); /* no token: four fields, as before */

    /*  A worker's WELCOME carries its lane token; ATTACH hands it back. */
    dp_encode_welcome_token (&w, 1000, 2500, "b", 3, UINT64_MAX - 5);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_WELCOME);
    CHECK_EQ_INT (msg.u.welcome.workers, 3);
    CHECK (msg.u.welcome.token == UINT64_MAX - 5);
    dp_encode_attach (&w, 0x1234567890abcdefULL);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_ATTACH);
    CHECK (msg.u.attach.token == 0x1234567890abcdefULL);
    CHECK_EQ_STR (dp_cmd_name (DP_CMD_ATTACH), "ATTACH");
    uint8_t attach_zero[] = {0x91, 0x00};
    CHECK_EQ_INT (s_decode (DP_CMD_ATTACH, attach_zero, sizeof attach_zero), DP_ELIMIT);
    uint8_t attach_str[] = {0x91, 0xa1, 'x'};
    CHECK_EQ_INT (s_decode (DP_CMD_ATTACH, attach_str, sizeof attach_str), DP_EBODY);
    uint8_t attach_more[] = {0x92, 0x07, 0xc0};
    CHECK_EQ_INT (s_decode (DP_CMD_ATTACH, attach_more, sizeof attach_more), DP_OK);
    uint8_t welcome_str[] = {0x95, 0x01, 0x02, 0xa1, 'b', 0x00, 0xa1, 't'};
    CHECK_EQ_INT (s_decode (DP_CMD_WELCOME, welcome_str, sizeof welcome_str), DP_EBODY);

    const char *fns[] = {"echo", "sleep", "resize"};
    dp_encode_ready (&w, "w1", 4242, "hostA", 2, fns, 3);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_READY);
    CHECK (s_span_is (msg.u.ready.name, "w1"));
    CHECK_EQ_INT (msg.u.ready.pid, 4242);
    CHECK (s_span_is (msg.u.ready.host, "hostA"));
    CHECK_EQ_INT (msg.u.ready.credit, 2);
    dp_span_t fn;
    for (int i = 0; i < 3; i++) {
        CHECK (dp_list_next_str (&msg.u.ready.functions, &fn));
        CHECK (s_span_is (fn, fns[i]));
    }
    CHECK (!dp_list_next_str (&msg.u.ready.functions, &fn));

    /*  A worker must offer credit; names have limits. */
    dp_encode_ready (&w, "w1", 1, "h", 0, fns, 3);
    CHECK_EQ_INT (s_decode (DP_CMD_READY, dp_writer_data (&w), dp_writer_size (&w)), DP_ELIMIT);
    const char *empty[] = {""};
    dp_encode_ready (&w, "w1", 1, "h", 1, empty, 1);
    CHECK_EQ_INT (s_decode (DP_CMD_READY, dp_writer_data (&w), dp_writer_size (&w)), DP_ELIMIT);
}

/*  A DISPATCH job of fields fields (6 to 8): the seventh is urgent, as
    value (a bool, or an int where the test wants a wrong type); the eighth
    a field of some later version. Returns the decoder's verdict, and the
    job in *task. */
static dp_reason_t
s_dispatch_fields (uint32_t fields, bool as_bool, dp_task_t *task)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 1);
    msgpack_pack_array (&pk, fields);
    msgpack_pack_uint64 (&pk, 7);
    msgpack_pack_str_with_body (&pk, "f", 1);
    msgpack_pack_nil (&pk);
    msgpack_pack_uint32 (&pk, 0);
    msgpack_pack_uint32 (&pk, 1);
    msgpack_pack_uint32 (&pk, 0);
    if (fields > 6 && as_bool)
        msgpack_pack_true (&pk);
    else if (fields > 6)
        msgpack_pack_int (&pk, 1);
    if (fields > 7)
        msgpack_pack_str_with_body (&pk, "later", 5);
    dp_reason_t reason = s_decode (DP_CMD_DISPATCH, sb.data, sb.size);
    if (reason == DP_OK) {
        dp_msg_t msg;
        uint8_t header[DP_HEADER_SIZE];
        dp_header_encode (header, DP_CMD_DISPATCH);
        CHECK (dp_msg_decode (header, sizeof header, sb.data, sb.size, &msg) == DP_OK);
        CHECK (dp_list_next_task (&msg.u.list, DP_CMD_DISPATCH, task));
    }
    msgpack_sbuffer_destroy (&sb);
    return reason;
}

/*  DISPATCH's optional seventh field, urgent: absent is false; a bool;
    anything else is malformed; fields after it are skipped. */
static void
s_urgent_field (void)
{
    dp_task_t task;
    CHECK_EQ_INT (s_dispatch_fields (6, true, &task), DP_OK);
    CHECK (!task.urgent && task.id == 7);
    CHECK_EQ_INT (s_dispatch_fields (7, true, &task), DP_OK);
    CHECK (task.urgent && task.id == 7);
    CHECK_EQ_INT (s_dispatch_fields (8, true, &task), DP_OK);
    CHECK (task.urgent);
    CHECK_EQ_INT (s_dispatch_fields (7, false, &task), DP_EBODY);
}

static void
s_tasks (void)
{
    /*  SUBMIT: three tasks with every field set. */
    uint8_t args[3][16];
    size_t args_size[3];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    for (int i = 0; i < 3; i++) {
        msgpack_sbuffer_init (&sb);
        msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array (&pk, 2);
        msgpack_pack_int (&pk, i);
        msgpack_pack_str_with_body (&pk, "xy", 2);
        memcpy (args[i], sb.data, sb.size);
        args_size[i] = sb.size;
        msgpack_sbuffer_destroy (&sb);
    }
    for (int round = 0; round < 2; round++) {
        dp_cmd_t cmd = round == 0 ? DP_CMD_SUBMIT : DP_CMD_DISPATCH;
        dp_list_begin (&w);
        for (int i = 0; i < 3; i++) {
            dp_task_t task = {.id = (uint64_t)1 << (40 + i),
                              .fn = {(const uint8_t *)"echo", 4},
                              .args = {args[i], args_size[i]},
                              .priority = -5 + i,
                              .timeout_ms = 1000u * (unsigned)i,
                              .retries = i - 1,
                              .attempt = (uint32_t)i + 1,
                              .flags = 0,
                              .urgent = i == 1};
            dp_list_add_task (&w, cmd, &task);
        }
        dp_list_end (&w);
        CHECK_EQ_INT (dp_list_count (&w), 3);
        dp_msg_t msg = dp_testpeer_decode_ok (&w, cmd);
        dp_task_t task;
        for (int i = 0; i < 3; i++) {
            CHECK (dp_list_next_task (&msg.u.list, cmd, &task));
            CHECK (task.id == (uint64_t)1 << (40 + i));
            CHECK (s_span_is (task.fn, "echo"));
            CHECK_EQ_INT (task.args.size, args_size[i]);
            CHECK (memcmp (task.args.data, args[i], args_size[i]) == 0);
            CHECK_EQ_INT (task.timeout_ms, 1000 * i);
            if (cmd == DP_CMD_SUBMIT) {
                CHECK_EQ_INT (task.priority, -5 + i);
                CHECK_EQ_INT (task.retries, i - 1);
            } else
                CHECK_EQ_INT (task.attempt, i + 1);
            /*  urgent is DISPATCH's, and travels only when true. */
            CHECK (task.urgent == (cmd == DP_CMD_DISPATCH && i == 1));
        }
        CHECK (!dp_list_next_task (&msg.u.list, cmd, &task));
    }
    s_urgent_field ();

    /*  An empty list is valid. */
    dp_list_begin (&w);
    dp_list_end (&w);
    dp_testpeer_decode_ok (&w, DP_CMD_SUBMIT);

    /*  Unknown flags, and a chunk whose args are not an array, are refused. */
    dp_task_t bad = {.id = 1, .fn = {(const uint8_t *)"f", 1}, .args = {args[0], args_size[0]}};
    bad.flags = 0x80;
    dp_list_begin (&w);
    dp_list_add_task (&w, DP_CMD_SUBMIT, &bad);
    dp_list_end (&w);
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, dp_writer_data (&w), dp_writer_size (&w)), DP_ELIMIT);
    uint8_t one = 0x01;
    bad.flags = DP_TASK_CHUNK;
    bad.args = (dp_span_t){&one, 1};
    dp_list_begin (&w);
    dp_list_add_task (&w, DP_CMD_SUBMIT, &bad);
    dp_list_end (&w);
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, dp_writer_data (&w), dp_writer_size (&w)), DP_EBODY);

    /*  A function name over DP_MAX_NAME bytes is refused. */
    char longname[DP_MAX_NAME + 2];
    memset (longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    bad.flags = 0;
    bad.fn = (dp_span_t){(const uint8_t *)longname, DP_MAX_NAME + 1};
    dp_list_begin (&w);
    dp_list_add_task (&w, DP_CMD_SUBMIT, &bad);
    dp_list_end (&w);
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, dp_writer_data (&w), dp_writer_size (&w)), DP_ELIMIT);
}

static void
s_results (void)
{
    uint8_t value[] = {0x92, 0x01, 0xa1, 'z'}; /* [1, "z"] */
    for (int round = 0; round < 2; round++) {
        dp_cmd_t cmd = round == 0 ? DP_CMD_RESULT : DP_CMD_DONE;
        dp_list_begin (&w);
        dp_list_add_result (&w, 10, 0, value, sizeof value);
        dp_list_add_error (&w, 11, DPOOL_EFAILED, "division by zero");
        dp_list_end (&w);
        dp_msg_t msg = dp_testpeer_decode_ok (&w, cmd);
        dp_result_t r;
        CHECK (dp_list_next_result (&msg.u.list, &r));
        CHECK_EQ_INT (r.id, 10);
        CHECK_EQ_INT (r.code, 0);
        CHECK_EQ_INT (r.value.size, sizeof value);
        CHECK (memcmp (r.value.data, value, sizeof value) == 0);
        CHECK (dp_list_next_result (&msg.u.list, &r));
        CHECK_EQ_INT (r.id, 11);
        CHECK_EQ_INT (r.code, DPOOL_EFAILED);
        /*  The value of a failure is the whole str item, forwardable as is. */
        dp_reader_t reader;
        dp_span_t message;
        dp_reader_init (&reader, r.value.data, r.value.size);
        CHECK (dp_mp_read_str (&reader, &message) == 0);
        CHECK (s_span_is (message, "division by zero"));
        CHECK_EQ_INT (dp_reader_left (&reader), 0);
        CHECK (!dp_list_next_result (&msg.u.list, &r));
    }
    /*  A failure whose value is not a str is refused. */
    dp_list_begin (&w);
    dp_list_add_result (&w, 1, DPOOL_EFAILED, value, sizeof value);
    dp_list_end (&w);
    CHECK_EQ_INT (s_decode (DP_CMD_DONE, dp_writer_data (&w), dp_writer_size (&w)), DP_EBODY);
    /*  Messages longer than DP_MAX_ERROR are truncated by the writer. */
    char *longmsg = malloc (DP_MAX_ERROR * 2);
    memset (longmsg, 'e', DP_MAX_ERROR * 2 - 1);
    longmsg[DP_MAX_ERROR * 2 - 1] = 0;
    dp_list_begin (&w);
    dp_list_add_error (&w, 1, DPOOL_EFAILED, longmsg);
    dp_list_end (&w);
    dp_testpeer_decode_ok (&w, DP_CMD_DONE);
    free (longmsg);
}

static void
s_small_messages (void)
{
    uint64_t seqs[] = {1, 5, 1ull << 50};
    dp_encode_cancel (&w, false, seqs, 3);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_CANCEL);
    CHECK (!msg.u.cancel.all);
    uint64_t seq;
    for (int i = 0; i < 3; i++) {
        CHECK (dp_list_next_uint (&msg.u.cancel.seqs, &seq));
        CHECK (seq == seqs[i]);
    }
    CHECK (!dp_list_next_uint (&msg.u.cancel.seqs, &seq));
    dp_encode_cancel (&w, true, NULL, 0);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_CANCEL);
    CHECK (msg.u.cancel.all);

    dp_encode_error (&w, DPOOL_EPROTO, "bad header");
    msg = dp_testpeer_decode_ok (&w, DP_CMD_ERROR);
    CHECK_EQ_INT (msg.u.error.code, DPOOL_EPROTO);
    CHECK (s_span_is (msg.u.error.message, "bad header"));

    dp_cmd_t empties[] = {DP_CMD_HEARTBEAT, DP_CMD_BYE, DP_CMD_STATUS};
    for (int i = 0; i < 3; i++) {
        dp_encode_empty (&w);
        dp_testpeer_decode_ok (&w, empties[i]);
    }
    /*  A later version may append fields: readers skip them. */
    uint8_t longer[] = {0x92, 0x01, 0xc0};
    CHECK_EQ_INT (s_decode (DP_CMD_HEARTBEAT, longer, sizeof longer), DP_OK);
    /*  But trailing bytes after the body are refused. */
    uint8_t trailing[] = {0x90, 0x00};
    CHECK_EQ_INT (s_decode (DP_CMD_HEARTBEAT, trailing, sizeof trailing), DP_EBODY);
    CHECK_EQ_INT (s_decode (DP_CMD_HEARTBEAT, "", 0), DP_EBODY);

    /*  STATUS-REPLY carries any map. */
    uint8_t map[] = {0x81, 0xa1, 'q', 0x05};
    CHECK_EQ_INT (s_decode (DP_CMD_STATUS_REPLY, map, sizeof map), DP_OK);
    CHECK_EQ_INT (s_decode (DP_CMD_STATUS_REPLY, longer, sizeof longer), DP_EBODY);
}

/*  Every proper prefix of a valid body is refused, and so is every body
    with one byte changed that still decodes without reading outside it. */
static void
s_truncated_and_mutated (void)
{
    uint8_t args[] = {0x93, 0x01, 0xcb, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0xc4, 0x02, 0xaa, 0xbb};
    dp_list_begin (&w);
    for (int i = 0; i < 4; i++) {
        dp_task_t task = {.id = (uint64_t)i,
                          .fn = {(const uint8_t *)"fn", 2},
                          .args = {args, sizeof args},
                          .retries = 2};
        dp_list_add_task (&w, DP_CMD_SUBMIT, &task);
    }
    dp_list_end (&w);
    size_t size = dp_writer_size (&w);
    uint8_t *copy = malloc (size);
    dp_testpeer_prefixes_refused (DP_CMD_SUBMIT, dp_writer_data (&w), size);
    for (size_t at = 0; at < size; at++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy (copy, dp_writer_data (&w), size);
            copy[at] ^= (uint8_t)(1 << bit);
            dp_msg_t msg;
            dp_reason_t rc = dp_testpeer_decode (DP_CMD_SUBMIT, copy, size, &msg);
            CHECK (rc == DP_OK || rc == DP_EBODY || rc == DP_ELIMIT);
            if (rc == DP_OK) {
                /*  Whatever decoded must walk cleanly. */
                dp_task_t task;
                while (dp_list_next_task (&msg.u.list, DP_CMD_SUBMIT, &task))
                    CHECK (task.args.data >= copy &&
                           task.args.data + task.args.size <= copy + size);
            }
        }
    free (copy);
}

/*  Lies about sizes: containers and strings that claim more than is there. */
static void
s_lying_sizes (void)
{
    uint8_t big_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    uint8_t big_str[] = {0x91, 0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'};
    uint8_t big_bin[] = {0x91, 0xc6, 0xff, 0xff, 0xff, 0xf0, 'a'};
    uint8_t big_ext[] = {0x91, 0xc9, 0xff, 0xff, 0xff, 0xf0, 0x01, 'a'};
    uint8_t never[] = {0x91, 0xc1};
    dp_cmd_t cmds[] = {DP_CMD_SUBMIT, DP_CMD_RESULT, DP_CMD_HEARTBEAT,    DP_CMD_READY,
                       DP_CMD_HELLO,  DP_CMD_CANCEL, DP_CMD_STATUS_REPLY, DP_CMD_ERROR};
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        CHECK (s_decode (cmds[c], big_array, sizeof big_array) != DP_OK);
        CHECK (s_decode (cmds[c], big_str, sizeof big_str) != DP_OK);
        CHECK (s_decode (cmds[c], big_bin, sizeof big_bin) != DP_OK);
        CHECK (s_decode (cmds[c], big_ext, sizeof big_ext) != DP_OK);
        CHECK (s_decode (cmds[c], never, sizeof never) != DP_OK);
    }
    /*  A batch over DP_MAX_BATCH is refused before its entries are read. */
    uint8_t huge_batch[] = {0xdd, 0x00, 0x0f, 0x42, 0x41}; /* 1,000,001 */
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, huge_batch, sizeof huge_batch), DP_ELIMIT);
}

/*  Wrong types in each field of a SUBMIT task. */
static void
s_wrong_types (void)
{
    /*  [[seq, fn, args, prio, timeout, retries, flags]] with one field wrong. */
    static const uint8_t good[] = {0x91, 0x97, 0x01, 0xa1, 'f', 0xc0, 0x00, 0x00, 0x00, 0x00};
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, good, sizeof good), DP_OK);
    static const size_t field_at[] = {2, 3, 6, 7, 8, 9}; /* args (5) may be anything */
    for (size_t i = 0; i < sizeof field_at / sizeof field_at[0]; i++) {
        uint8_t copy[sizeof good + 1];
        memcpy (copy, good, sizeof good);
        size_t at = field_at[i];
        copy[at] = 0xc2; /* false: the wrong type for every one of them */
        if (at == 3) {
            /*  fn is a two-byte str; put a bool and a nil in its place. */
            copy[4] = 0xc0;
            CHECK (s_decode (DP_CMD_SUBMIT, copy, sizeof good) != DP_OK);
            continue;
        }
        CHECK (s_decode (DP_CMD_SUBMIT, copy, sizeof good) != DP_OK);
    }
    /*  A negative seq, a retries below -1, too few fields. */
    uint8_t neg[sizeof good];
    memcpy (neg, good, sizeof good);
    neg[2] = 0xff;
    CHECK (s_decode (DP_CMD_SUBMIT, neg, sizeof neg) != DP_OK);
    memcpy (neg, good, sizeof good);
    neg[8] = 0xfe; /* -2 */
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, neg, sizeof neg), DP_ELIMIT);
    uint8_t short_entry[] = {0x91, 0x96, 0x01, 0xa1, 'f', 0xc0, 0x00, 0x00, 0x00};
    CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, short_entry, sizeof short_entry), DP_EBODY);
    /*  A session of the wrong size. */
    uint8_t hello[] = {0x92, 0xc4, 0x02, 0x01, 0x02, 0xa0};
    CHECK_EQ_INT (s_decode (DP_CMD_HELLO, hello, sizeof hello), DP_ELIMIT);
}

/*  The reader on its own: every type, integer bounds, nesting depth. */
static void
s_reader (void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_int64 (&pk, INT64_MIN);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    msgpack_pack_int8 (&pk, -3);
    msgpack_pack_double (&pk, 2.5);
    msgpack_pack_float (&pk, 1.5f);
    msgpack_pack_nil (&pk);
    msgpack_pack_true (&pk);
    msgpack_pack_ext_with_body (&pk, "abc", 3, 7);
    msgpack_pack_map (&pk, 1);
    msgpack_pack_str_with_body (&pk, "k", 1);
    msgpack_pack_bin_with_body (&pk, "\x00\x01", 2);
    CHECK_EQ_INT (dp_mp_count_objects (sb.data, sb.size), 9);

    dp_reader_t r;
    dp_reader_init (&r, sb.data, sb.size);
    int64_t i64;
    uint64_t u64;
    CHECK (dp_mp_read_uint (&r, &u64) == -1); /* INT64_MIN is not a uint */
    CHECK (dp_mp_read_int (&r, &i64) == 0 && i64 == INT64_MIN);
    CHECK (dp_mp_read_int (&r, &i64) == -1); /* UINT64_MAX is not an int64 */
    CHECK (dp_mp_read_uint (&r, &u64) == 0 && u64 == UINT64_MAX);
    CHECK (dp_mp_read_int (&r, &i64) == 0 && i64 == -3);
    CHECK_EQ_INT (dp_mp_peek (&r), DP_MP_FLOAT);
    msgpack_sbuffer_destroy (&sb);

    /*  Nesting: DP_MP_MAX_DEPTH levels pass, one more fails. */
    uint8_t nested[DP_MP_MAX_DEPTH + 2];
    for (int depth = DP_MP_MAX_DEPTH; depth <= DP_MP_MAX_DEPTH + 1; depth++) {
        for (int i = 0; i < depth; i++)
            nested[i] = 0x91;
        nested[depth] = 0x00;
        dp_reader_init (&r, nested, (size_t)depth + 1);
        int rc = dp_mp_read_object (&r, NULL);
        CHECK_EQ_INT (rc, depth <= DP_MP_MAX_DEPTH ? 0 : -1);
    }
    /*  An empty container is a level too, as msgpack-c counts it. */
    for (int depth = DP_MP_MAX_DEPTH; depth <= DP_MP_MAX_DEPTH + 1; depth++) {
        for (int i = 0; i < depth - 1; i++)
            nested[i] = 0x91;
        nested[depth - 1] = 0x90;
        dp_reader_init (&r, nested, (size_t)depth);
        CHECK_EQ_INT (dp_mp_read_object (&r, NULL), depth <= DP_MP_MAX_DEPTH ? 0 : -1);
    }
    /*  A chunk may wrap calls that are each as deep as the limit; a plain
        call may not go past it. */
    uint8_t deep[DP_MP_MAX_DEPTH + 2];
    for (int i = 0; i < DP_MP_MAX_DEPTH + 1; i++)
        deep[i] = 0x91;
    deep[DP_MP_MAX_DEPTH + 1] = 0x00; /* 33 levels: a chunk of one 32-level call */
    for (int chunk = 0; chunk < 2; chunk++) {
        dp_task_t task = {.id = 1,
                          .fn = {(const uint8_t *)"f", 1},
                          .args = {deep, sizeof deep},
                          .flags = chunk ? DP_TASK_CHUNK : 0};
        dp_list_begin (&w);
        dp_list_add_task (&w, DP_CMD_SUBMIT, &task);
        dp_list_end (&w);
        CHECK_EQ_INT (s_decode (DP_CMD_SUBMIT, dp_writer_data (&w), dp_writer_size (&w)),
                      chunk ? DP_OK : DP_ELIMIT);
    }
    CHECK_EQ_INT (dp_mp_count_objects ("\xc1", 1), -1);
    CHECK_EQ_INT (dp_mp_count_objects ("", 0), 0);
}

/*  dp_mp_unpack_scalar gives what msgpack_unpack gives for every scalar,
    and leaves the rest (and truncated scalars) to it. */
static void
s_unpack_scalar (void)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init (&sb);
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    const int64_t ints[] = {0,
                            1,
                            127,
                            128,
                            255,
                            256,
                            65535,
                            65536,
                            -1,
                            -32,
                            -33,
                            -128,
                            -129,
                            -32768,
                            -32769,
                            INT32_MIN,
                            (int64_t)INT32_MIN - 1,
                            INT64_MIN,
                            INT64_MAX};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        msgpack_pack_int64 (&pk, ints[i]);
        msgpack_pack_int8 (&pk, (int8_t)ints[i]);
        msgpack_pack_int16 (&pk, (int16_t)ints[i]);
        msgpack_pack_int32 (&pk, (int32_t)ints[i]);
        msgpack_pack_fix_int64 (&pk, ints[i]);
        msgpack_pack_fix_int8 (&pk, (int8_t)ints[i]);
        msgpack_pack_fix_int16 (&pk, (int16_t)ints[i]);
        msgpack_pack_fix_uint32 (&pk, (uint32_t)ints[i]);
        msgpack_pack_fix_uint64 (&pk, (uint64_t)ints[i]);
    }
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    msgpack_pack_float (&pk, 1.5f);
    msgpack_pack_double (&pk, -2.25);
    msgpack_pack_nil (&pk);
    msgpack_pack_true (&pk);
    msgpack_pack_false (&pk);
    size_t scalars = dp_mp_count_objects (sb.data, sb.size);
    msgpack_pack_str_with_body (&pk, "s", 1);
    msgpack_pack_array (&pk, 0);
    msgpack_pack_map (&pk, 0);
    msgpack_pack_bin_with_body (&pk, "b", 1);
    msgpack_pack_ext_with_body (&pk, "e", 1, 1);

    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    size_t at = 0;
    for (size_t n = 0; at < sb.size; n++) {
        msgpack_object mine, theirs;
        size_t took = dp_mp_unpack_scalar (sb.data + at, sb.size - at, &mine);
        size_t off = 0;
        CHECK (msgpack_unpack (sb.data + at, sb.size - at, &off, &zone, &theirs) ==
                   MSGPACK_UNPACK_EXTRA_BYTES ||
               at + off == sb.size);
        if (n < scalars) {
            CHECK_EQ_INT (took, off);
            CHECK (msgpack_object_equal (mine, theirs));
            CHECK_EQ_INT (mine.type, theirs.type);
            /*  Cut short, it is left alone. */
            if (off > 1)
                CHECK_EQ_INT (dp_mp_unpack_scalar (sb.data + at, off - 1, &mine), 0);
        } else
            CHECK_EQ_INT (took, 0);
        at += off;
    }
    msgpack_object none;
    CHECK_EQ_INT (dp_mp_unpack_scalar ("", 0, &none), 0);
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&sb);
}

/*  The list iterators agree with the decode pass past the entries whose
    values it remembers, and copies of a list walk independently. */
static void
s_long_list (void)
{
    const size_t count = DP_LIST_KNOWN + 5;
    dp_list_begin (&w);
    for (size_t i = 0; i < count; i++) {
        uint8_t value[2] = {0x91, (uint8_t)i};
        if (i % 3 == 2)
            dp_list_add_error (&w, i, DPOOL_EFAILED, "boom");
        else
            dp_list_add_result (&w, i, 0, value, sizeof value);
    }
    dp_list_end (&w);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_RESULT);
    for (int pass = 0; pass < 2; pass++) {
        dp_list_t list = msg.u.list;
        dp_result_t result;
        size_t i = 0;
        while (dp_list_next_result (&list, &result)) {
            CHECK_EQ_INT (result.id, i);
            if (i % 3 == 2)
                CHECK_EQ_INT (result.code, DPOOL_EFAILED);
            else {
                CHECK_EQ_INT (result.code, 0);
                CHECK_EQ_INT (result.value.size, 2);
                CHECK_EQ_INT (result.value.data[1], i);
            }
            i++;
        }
        CHECK_EQ_INT (i, count);
    }
}

/*  Random bytes as every command: refused or accepted, never a crash. */
static void
s_random (void)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int accepted = 0;
    for (int round = 0; round < 200000; round++) {
        size_t size = (size_t)(x % 64);
        uint8_t *body = malloc (size ? size : 1);
        for (size_t i = 0; i < size; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body[i] = (uint8_t)x;
        }
        /*  Bias toward plausible starts: small arrays. */
        if (size && round % 2)
            body[0] = (uint8_t)(0x90 | (body[0] & 0x03));
        dp_cmd_t cmd = (dp_cmd_t)(1 + x % (DP_CMD_COUNT_ - 1));
        if (s_decode (cmd, body, size) == DP_OK)
            accepted++;
        free (body);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    /*  Some random bodies are valid (an empty array is a HEARTBEAT). */
    CHECK (accepted > 0);
}

/*  The program's one case. */
/*  Every kind of msgpack header is skipped as one object, and cut short
    anywhere, the sequence is refused. */
static void
s_every_header (void)
{
    static const uint8_t items[] =
        {
            0x05, 0xe0, 0xc0, 0xc2, 0xc3, /* fixints, nil, bools */
            0xca, 0,    0,    0,    0,    0xcb, 0,   0,    0,    0,
            0,    0,    0,    0,                                    /* float32, float64 */
            0xcc, 1,    0xcd, 0,    1,    0xce, 0,   0,    0,    1, /* uint8, 16, 32 */
            0xcf, 0,    0,    0,    0,    0,    0,   0,    1,       /* uint64 */
            0xd0, 1,    0xd1, 0,    1,    0xd2, 0,   0,    0,    1, /* int8, 16, 32 */
            0xd3, 0,    0,    0,    0,    0,    0,   0,    1,       /* int64 */
            0xd4, 7,    1,    0xd5, 7,    1,    2,                  /* fixext 1, 2 */
            0xd6, 7,    1,    2,    3,    4,                        /* fixext 4 */
            0xd7, 7,    1,    2,    3,    4,    5,   6,    7,    8, /* fixext 8 */
            0xd8, 7,    1,    2,    3,    4,    5,   6,    7,    8,
            9,    10,   11,   12,   13,   14,   15,  16, /* fixext 16 */
            0xc4, 1,    'b',  0xc5, 0,    1,    'b', 0xc6, 0,    0,
            0,    1,    'b', /* bin8, 16, 32 */
            0xc7, 1,    7,    'e',  0xc8, 0,    1,   7,    'e',  0xc9,
            0,    0,    0,    1,    7,    'e', /* ext8, 16, 32 */
            0xa1, 's',  0xd9, 1,    's',  0xda, 0,   1,    's',  0xdb,
            0,    0,    0,    1,    's', /* str */
            0x92, 1,    2,    0xdc, 0,    1,    1,   0xdd, 0,    0,
            0,    1,    1, /* arrays */
            0x81, 1,    2,    0xde, 0,    1,    1,   2,    0xdf, 0,
            0,    0,    1,    1,    2, /* maps */
        };
    CHECK_EQ_INT (dp_mp_count_objects (items, sizeof items), 36);
    for (size_t cut = 1; cut < sizeof items; cut++) {
        int64_t count = dp_mp_count_objects (items, cut);
        CHECK (count < 36);
    }
    static const uint8_t never[] = {0x01, 0xc1};
    CHECK (dp_mp_count_objects (never, sizeof never) < 0);
}

static void
s_case_proto_roundtrip_and_hostile_input (void)
{
    dp_writer_init (&w);
    s_header ();
    s_hello_welcome_ready ();
    s_tasks ();
    s_results ();
    s_small_messages ();
    s_truncated_and_mutated ();
    s_lying_sizes ();
    s_wrong_types ();
    s_reader ();
    s_every_header ();
    s_unpack_scalar ();
    s_long_list ();
    s_random ();
    dp_writer_fini (&w);
}

/*  Decodes the writer's body as cmd with payload frames. */
static dp_reason_t
s_decode_frames (dp_cmd_t cmd, const dp_span_t *frames, uint32_t nframes, dp_msg_t *msg)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, cmd);
    CHECK (dp_writer_ok (&w));
    return dp_msg_decode_frames (header, sizeof header, dp_writer_data (&w), dp_writer_size (&w),
                                 frames, nframes, msg);
}

/*  A SUBMIT (or DISPATCH) of an inline task and a framed one. */
static void
s_framed_tasks (dp_cmd_t cmd, uint32_t flags)
{
    static const uint8_t inline_args[] = {0x91, 0x07};
    dp_task_t task = {.id = 1, .fn = {(const uint8_t *)"echo", 4}, .args = {inline_args, 2}};
    dp_list_begin (&w);
    dp_list_add_task (&w, cmd, &task);
    task.id = 2;
    task.flags = flags;
    dp_list_add_task_framed (&w, cmd, &task);
    dp_list_end (&w);
}

static void
s_frames_tasks (void)
{
    static const uint8_t args[] = {0x92, 0x01, 0xc4, 0x02, 'a', 'b'}; /* [1, bin "ab"] */
    dp_span_t frames[2] = {{args, sizeof args}, {args, sizeof args}};
    for (int round = 0; round < 2; round++) {
        dp_cmd_t cmd = round == 0 ? DP_CMD_SUBMIT : DP_CMD_DISPATCH;
        s_framed_tasks (cmd, DP_TASK_CHUNK);
        dp_msg_t msg;
        CHECK_EQ_INT (s_decode_frames (cmd, frames, 1, &msg), DP_OK);
        dp_task_t t;
        CHECK (dp_list_next_task (&msg.u.list, cmd, &t));
        CHECK_EQ_INT (t.frame, 0);
        CHECK_EQ_INT (t.args.size, 2);
        CHECK (dp_list_next_task (&msg.u.list, cmd, &t));
        CHECK_EQ_INT (t.id, 2);
        CHECK_EQ_INT (t.frame, 1);
        CHECK_EQ_INT (t.flags, DP_TASK_CHUNK); /* FRAMED is the wire's, not the task's */
        CHECK (t.args.data == args && t.args.size == sizeof args);
        CHECK (!dp_list_next_task (&msg.u.list, cmd, &t));
        /*  Every frame belongs to one framed entry, and every framed entry
            has its frame. */
        CHECK_EQ_INT (s_decode_frames (cmd, frames, 0, &msg), DP_EFRAMES);
        CHECK_EQ_INT (s_decode_frames (cmd, frames, 2, &msg), DP_EFRAMES);
    }
    /*  A frame of anything but one whole msgpack item is malformed. */
    static const uint8_t bad[][3] = {{0xc1}, {0x01, 0x02}, {0x92, 0x01}};
    static const size_t bad_size[] = {1, 2, 2};
    s_framed_tasks (DP_CMD_SUBMIT, 0);
    dp_msg_t msg;
    for (size_t i = 0; i < 3; i++) {
        dp_span_t frame = {bad[i], bad_size[i]};
        CHECK_EQ_INT (s_decode_frames (DP_CMD_SUBMIT, &frame, 1, &msg), DP_EBODY);
    }
    dp_span_t empty = {NULL, 0};
    CHECK_EQ_INT (s_decode_frames (DP_CMD_SUBMIT, &empty, 1, &msg), DP_EBODY);
    /*  A chunk's framed args must be an array. */
    static const uint8_t scalar[] = {0x07};
    dp_span_t frame = {scalar, 1};
    s_framed_tasks (DP_CMD_SUBMIT, DP_TASK_CHUNK);
    CHECK_EQ_INT (s_decode_frames (DP_CMD_SUBMIT, &frame, 1, &msg), DP_EBODY);
    /*  A framed entry whose body field is not nil. */
    dp_task_t task = {.id = 3, .fn = {(const uint8_t *)"f", 1}, .args = {scalar, 1}};
    task.flags = DP_TASK_FRAMED;
    dp_list_begin (&w);
    dp_list_add_task (&w, DP_CMD_SUBMIT, &task);
    dp_list_end (&w);
    CHECK_EQ_INT (s_decode_frames (DP_CMD_SUBMIT, &frame, 1, &msg), DP_EBODY);
}

static void
s_frames_results (void)
{
    static const uint8_t value[] = {0xa3, 'a', 'b', 'c'};
    dp_span_t frame = {value, sizeof value};
    for (int round = 0; round < 2; round++) {
        dp_cmd_t cmd = round == 0 ? DP_CMD_RESULT : DP_CMD_DONE;
        dp_list_begin (&w);
        dp_list_add_error (&w, 1, DPOOL_EFAILED, "no");
        dp_list_add_result_framed (&w, 2, 77);
        dp_list_end (&w);
        dp_msg_t msg;
        CHECK_EQ_INT (s_decode_frames (cmd, &frame, 1, &msg), DP_OK);
        dp_result_t r;
        CHECK (dp_list_next_result (&msg.u.list, &r));
        CHECK_EQ_INT (r.frame, 0);
        CHECK (dp_list_next_result (&msg.u.list, &r));
        CHECK_EQ_INT (r.id, 2);
        CHECK_EQ_INT (r.code, 0);
        CHECK_EQ_INT (r.run_us, 77);
        CHECK_EQ_INT (r.frame, 1);
        CHECK (r.value.data == value && r.value.size == sizeof value);
        CHECK_EQ_INT (s_decode_frames (cmd, &frame, 0, &msg), DP_EFRAMES);
    }
    /*  A failure's message is never framed: [[1, 1, nil, 0, true]]. */
    static const uint8_t framed_failure[] = {0x91, 0x95, 0x01, 0x01, 0xc0, 0x00, 0xc3};
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, DP_CMD_DONE);
    dp_msg_t msg;
    CHECK_EQ_INT (dp_msg_decode_frames (header, sizeof header, framed_failure,
                                        sizeof framed_failure, &frame, 1, &msg),
                  DP_EBODY);
    /*  Frames only with the four list commands, and at most DP_MAX_FRAMES. */
    dp_encode_empty (&w);
    CHECK_EQ_INT (s_decode_frames (DP_CMD_HEARTBEAT, &frame, 1, &msg), DP_EFRAMES);
    static dp_span_t many[DP_MAX_FRAMES + 1];
    for (int i = 0; i <= DP_MAX_FRAMES; i++)
        many[i] = frame;
    dp_list_begin (&w);
    for (int i = 0; i <= DP_MAX_FRAMES; i++)
        dp_list_add_result_framed (&w, (uint64_t)i, 0);
    dp_list_end (&w);
    CHECK_EQ_INT (s_decode_frames (DP_CMD_DONE, many, DP_MAX_FRAMES + 1, &msg), DP_EFRAMES);
}

/*  Payload frames (docs/PROTOCOL.md 3): framed args and values decode to
    the frame's bytes, and every way a frame can lie is refused. */
/*  dp_writer_swap: each writer goes on packing into its own new body. */
static void
s_writer_swap (void)
{
    dp_writer_t other;
    dp_writer_init (&other);
    dp_list_begin (&w);
    dp_list_add_error (&w, 1, DPOOL_EFAILED, "w");
    dp_list_begin (&other);
    dp_writer_swap (&w, &other);
    dp_list_add_error (&w, 2, DPOOL_EFAILED, "x");
    dp_list_end (&w);
    dp_list_end (&other);
    dp_msg_t msg = dp_testpeer_decode_ok (&w, DP_CMD_DONE);
    CHECK_EQ_INT (msg.u.list.left, 1);
    dp_result_t r;
    CHECK (dp_list_next_result (&msg.u.list, &r));
    CHECK_EQ_INT (r.id, 2);
    dp_writer_swap (&w, &other);
    msg = dp_testpeer_decode_ok (&w, DP_CMD_DONE);
    CHECK (dp_list_next_result (&msg.u.list, &r));
    CHECK_EQ_INT (r.id, 1);
    dp_writer_fini (&other);
}

static void
s_case_proto_payload_frames (void)
{
    dp_writer_init (&w);
    s_frames_tasks ();
    s_frames_results ();
    s_writer_swap ();
    dp_writer_fini (&w);
}

static const dp_test_case_t s_cases[] = {
    {"proto_roundtrip_and_hostile_input", s_case_proto_roundtrip_and_hostile_input},
    {"proto_payload_frames", s_case_proto_payload_frames},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

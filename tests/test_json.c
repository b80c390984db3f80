/*  test_json.c - JSON text to msgpack and back (cli/dp_json).

    Each check reads as the rule it pins down: a JSON text goes to msgpack
    and comes back as the same (or the canonical) text, big integers stay
    exact, floats keep their bits, bin and ext travel as {"$bin"} and
    {"$ext"}, and bad input is refused with a message saying where.
*/
#include "dp_json.h"
#include "dp_testutil.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SECONDS 60 /* the whole test's deadline */

/*  Converts JSON text to msgpack into buffer; returns the rc and the error. */
static int
s_to_msgpack (msgpack_sbuffer *buffer, const char *text, char *error)
{
    msgpack_sbuffer_clear (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    return dp_json_to_msgpack (&packer, text, strlen (text), error, DP_JSON_ERROR_SIZE);
}

/*  JSON -> msgpack -> JSON must give expected (the input itself if NULL). */
static void
s_check_roundtrip (const char *text, const char *expected)
{
    char error[DP_JSON_ERROR_SIZE] = "";
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    if (s_to_msgpack (&buffer, text, error))
        dp_test_fail (__FILE__, __LINE__, "%s: %s", text, error);
    dp_json_buf_t out;
    dp_json_buf_init (&out);
    if (dp_json_from_msgpack (&out, buffer.data, buffer.size, error, sizeof error))
        dp_test_fail (__FILE__, __LINE__, "%s: back: %s", text, error);
    CHECK_EQ_STR (out.data, expected ? expected : text);
    dp_json_buf_free (&out);
    msgpack_sbuffer_destroy (&buffer);
}

/*  JSON text must be refused with an error containing needle. */
static void
s_check_refused (const char *text, const char *needle)
{
    char error[DP_JSON_ERROR_SIZE] = "";
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    if (s_to_msgpack (&buffer, text, error) == 0)
        dp_test_fail (__FILE__, __LINE__, "accepted: %s", text);
    if (!strstr (error, needle))
        dp_test_fail (__FILE__, __LINE__, "%s: error \"%s\" lacks \"%s\"", text, error, needle);
    msgpack_sbuffer_destroy (&buffer);
}

/*  Unpacks the msgpack of text into a zone-backed object for inspection. */
static msgpack_object
s_unpack (msgpack_sbuffer *buffer, msgpack_unpacked *unpacked, const char *text)
{
    char error[DP_JSON_ERROR_SIZE] = "";
    if (s_to_msgpack (buffer, text, error))
        dp_test_fail (__FILE__, __LINE__, "%s: %s", text, error);
    size_t offset = 0;
    CHECK (msgpack_unpack_next (unpacked, buffer->data, buffer->size, &offset) ==
           MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT (offset, buffer->size);
    return unpacked->data;
}

static void
s_test_scalars_and_nesting (void)
{
    s_check_roundtrip ("null", NULL);
    s_check_roundtrip ("true", NULL);
    s_check_roundtrip ("false", NULL);
    s_check_roundtrip ("0", NULL);
    s_check_roundtrip ("-1", NULL);
    s_check_roundtrip ("\"\"", NULL);
    s_check_roundtrip ("\"h\\u00e9llo \\u4e16\\u754c\"",
                       "\"h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c\"");
    s_check_roundtrip ("\"tab\\tnl\\nq\\\"bs\\\\ctl\\u0001\"", NULL);
    s_check_roundtrip ("\"nul\\u0000inside\"", NULL);
    s_check_roundtrip ("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    s_check_roundtrip ("[]", NULL);
    s_check_roundtrip ("{}", NULL);
    s_check_roundtrip ("  [1, 2 ,\t3 ]\r\n", "[1,2,3]");
    s_check_roundtrip ("{\"b\":1,\"a\":[true,{\"c\":null,\"d\":[[],[{}]]}],\"z\":\"s\"}", NULL);
    /*  Key order is kept, not sorted. */
    s_check_roundtrip ("{\"z\":1,\"y\":2,\"x\":3,\"w\":4,\"v\":5}", NULL);
}

static void
s_test_integers_are_exact (void)
{
    s_check_roundtrip ("127", NULL);
    s_check_roundtrip ("-32", NULL);
    s_check_roundtrip ("-33", NULL);
    s_check_roundtrip ("4294967296", NULL);
    s_check_roundtrip ("9007199254740993", NULL); /* 2^53 + 1: no double holds it */
    s_check_roundtrip ("9223372036854775807", NULL);
    s_check_roundtrip ("-9223372036854775808", NULL);
    s_check_roundtrip ("9223372036854775808", NULL);
    s_check_roundtrip ("18446744073709551615", NULL);
    s_check_roundtrip ("[1,18446744073709551615,{\"k\":[2.5,9223372036854775809]},-3,"
                       "\"12345678901234567890\",12345678901234567890]",
                       NULL);

    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    msgpack_object o = s_unpack (&buffer, &unpacked, "18446744073709551615");
    CHECK_EQ_INT (o.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    CHECK (o.via.u64 == UINT64_MAX);
    o = s_unpack (&buffer, &unpacked, "-9223372036854775808");
    CHECK_EQ_INT (o.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    CHECK (o.via.i64 == INT64_MIN);
    o = s_unpack (&buffer, &unpacked, "5");
    CHECK_EQ_INT (o.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    CHECK_EQ_INT (buffer.size, 1); /* packed as a fixint */
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&buffer);

    s_check_refused ("18446744073709551616", "out of range");
    s_check_refused ("-9223372036854775809", "out of range");
    s_check_refused ("[1, 99999999999999999999999]", "column");
}

static void
s_test_floats_keep_their_bits (void)
{
    s_check_roundtrip ("0.1", NULL);
    s_check_roundtrip ("-2.5", NULL);
    s_check_roundtrip ("1.0", NULL);
    s_check_roundtrip ("1e+300", NULL);
    s_check_roundtrip ("5e-324", NULL);
    s_check_roundtrip ("0.30000000000000004", NULL);
    s_check_roundtrip ("1.7976931348623157e+308", NULL);
    s_check_roundtrip ("2.0E3", "2000.0");
    s_check_roundtrip ("1e2", "100.0");
    s_check_roundtrip ("-0.0", NULL);

    /*  Every bit of a few awkward doubles survives text. */
    const double values[] = {1.0 / 3, 2.0 / 3, M_PI, 1e-7, 123456.789e-10, 4.35, 0.1 + 0.2};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        msgpack_sbuffer packed;
        msgpack_sbuffer_init (&packed);
        msgpack_packer packer;
        msgpack_packer_init (&packer, &packed, msgpack_sbuffer_write);
        msgpack_pack_double (&packer, values[i]);
        dp_json_buf_t text;
        dp_json_buf_init (&text);
        char error[DP_JSON_ERROR_SIZE];
        CHECK (dp_json_from_msgpack (&text, packed.data, packed.size, error, sizeof error) == 0);
        CHECK (strtod (text.data, NULL) == values[i]);
        dp_json_buf_free (&text);
        msgpack_sbuffer_destroy (&packed);
    }

    /*  A float32 prints short and reads back as the same value; NaN and
        infinities print as null. */
    msgpack_sbuffer packed;
    msgpack_sbuffer_init (&packed);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &packed, msgpack_sbuffer_write);
    msgpack_pack_array (&packer, 4);
    msgpack_pack_float (&packer, 0.1f);
    msgpack_pack_double (&packer, NAN);
    msgpack_pack_double (&packer, INFINITY);
    msgpack_pack_float (&packer, 3.0f);
    dp_json_buf_t text;
    dp_json_buf_init (&text);
    char error[DP_JSON_ERROR_SIZE];
    CHECK (dp_json_from_msgpack (&text, packed.data, packed.size, error, sizeof error) == 0);
    CHECK_EQ_STR (text.data, "[0.1,null,null,3.0]");
    dp_json_buf_free (&text);
    msgpack_sbuffer_destroy (&packed);
}

static void
s_test_bin_ext_and_keys (void)
{
    s_check_roundtrip ("{\"$bin\":\"\"}", NULL);
    s_check_roundtrip ("{\"$bin\":\"AA==\"}", NULL);
    s_check_roundtrip ("{\"$bin\":\"AAE=\"}", NULL);
    s_check_roundtrip ("{\"$bin\":\"AAEC\"}", NULL);
    s_check_roundtrip ("{\"$bin\":\"AAECAw\"}", "{\"$bin\":\"AAECAw==\"}");
    s_check_roundtrip ("{\"$ext\":[5,\"aGVsbG8=\"]}", NULL);
    s_check_roundtrip ("{\"$ext\":[-128,\"\"]}", NULL);
    s_check_roundtrip ("[{\"$bin\":\"/+8=\"},{\"x\":{\"$bin\":\"AA==\"}}]", NULL);
    /*  Other objects that merely hold those keys are maps. */
    s_check_roundtrip ("{\"$bin\":\"AA==\",\"other\":1}", NULL);

    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    msgpack_object o = s_unpack (&buffer, &unpacked, "{\"$bin\":\"/wABAg==\"}");
    CHECK_EQ_INT (o.type, MSGPACK_OBJECT_BIN);
    CHECK_EQ_INT (o.via.bin.size, 4);
    CHECK (memcmp (o.via.bin.ptr, "\xff\x00\x01\x02", 4) == 0);
    o = s_unpack (&buffer, &unpacked, "{\"$ext\":[7,\"aGk=\"]}");
    CHECK_EQ_INT (o.type, MSGPACK_OBJECT_EXT);
    CHECK_EQ_INT (o.via.ext.type, 7);
    CHECK_EQ_INT (o.via.ext.size, 2);
    CHECK (memcmp (o.via.ext.ptr, "hi", 2) == 0);
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&buffer);

    s_check_refused ("{\"$bin\":\"A\"}", "base64");
    s_check_refused ("{\"$bin\":\"A*==\"}", "base64");
    s_check_refused ("{\"$bin\":5}", "$bin");
    s_check_refused ("{\"$ext\":[300,\"AA==\"]}", "$ext");
    s_check_refused ("{\"$ext\":[18446744073709551615,\"AA==\"]}", "$ext");
    s_check_refused ("{\"$ext\":\"AA==\"}", "$ext");

    /*  Keys that are not strings print as their JSON text; invalid UTF-8
        is repaired. */
    msgpack_sbuffer packed;
    msgpack_sbuffer_init (&packed);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &packed, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 4);
    msgpack_pack_int (&packer, 1);
    msgpack_pack_str_with_body (&packer, "a", 1);
    msgpack_pack_array (&packer, 2);
    msgpack_pack_int (&packer, -2);
    msgpack_pack_str_with_body (&packer, "q\"", 2);
    msgpack_pack_nil (&packer);
    msgpack_pack_true (&packer);
    msgpack_pack_str_with_body (&packer, "bad\xff\xc3", 5);
    msgpack_pack_bin_with_body (&packer, "\x01", 1);
    msgpack_pack_int (&packer, 3);
    dp_json_buf_t text;
    dp_json_buf_init (&text);
    char error[DP_JSON_ERROR_SIZE];
    CHECK (dp_json_from_msgpack (&text, packed.data, packed.size, error, sizeof error) == 0);
    CHECK_EQ_STR (text.data, "{\"1\":\"a\",\"[-2,\\\"q\\\\\\\"\\\"]\":null,"
                             "\"true\":\"bad\xef\xbf\xbd\xef\xbf\xbd\","
                             "\"{\\\"$bin\\\":\\\"AQ==\\\"}\":3}");
    dp_json_buf_free (&text);

    /*  Bytes that are not one msgpack item are refused. */
    CHECK (dp_json_from_msgpack (&text, "\xc1", 1, error, sizeof error) == -1);
    CHECK (dp_json_from_msgpack (&text, "\x01\x02", 2, error, sizeof error) == -1);
    CHECK (strstr (error, "after"));
    CHECK (dp_json_from_msgpack (&text, "\x92\x01", 2, error, sizeof error) == -1);
    dp_json_buf_free (&text);
    msgpack_sbuffer_destroy (&packed);
}

/*  Writes levels nested arrays ([[...]]) or objects ({"k":{"k":...}})
    into text and returns it. */
static const char *
s_nested (char *text, size_t size, int levels, bool objects)
{
    size_t len = 0;
    for (int i = 0; i < levels; i++)
        len += (size_t)snprintf (text + len, size - len, "%s", objects ? "{\"k\":" : "[");
    len += (size_t)snprintf (text + len, size - len, "%s", objects ? "1" : "");
    for (int i = 0; i < levels; i++)
        len += (size_t)snprintf (text + len, size - len, "%s", objects ? "}" : "]");
    return text;
}

static void
s_test_invalid_json_is_refused_clearly (void)
{
    s_check_refused ("", "invalid JSON");
    s_check_refused ("   ", "invalid JSON");
    s_check_refused ("[1,2", "invalid JSON at column");
    s_check_refused ("{\"a\":1,}", "invalid JSON at column");
    s_check_refused ("{'a':1}", "invalid JSON");
    s_check_refused ("[1] [2]", "invalid JSON");
    s_check_refused ("nul", "invalid JSON");
    s_check_refused ("NaN", "invalid JSON");
    s_check_refused ("01", "invalid JSON");
    s_check_refused ("\"bad \xff utf8\"", "invalid JSON");
    s_check_refused ("{\"a\":1,\"a\":2}", "duplicate");
    s_check_refused ("[1,\n2,\n]", "line 3");
    s_check_refused ("1e999", "out of range");

    /*  Nesting: DP_JSON_MAX_DEPTH levels pass, one more does not, for
        arrays and objects alike. */
    char text[16 * (DP_JSON_MAX_DEPTH + 2)];
    s_check_roundtrip (s_nested (text, sizeof text, DP_JSON_MAX_DEPTH, false), NULL);
    s_check_roundtrip (s_nested (text, sizeof text, DP_JSON_MAX_DEPTH, true), NULL);
    s_check_refused (s_nested (text, sizeof text, DP_JSON_MAX_DEPTH + 1, false), "nested deeper");
    s_check_refused (s_nested (text, sizeof text, DP_JSON_MAX_DEPTH + 1, true), "nested deeper");

    /*  Not NUL-terminated input is read only up to its size. */
    char error[DP_JSON_ERROR_SIZE];
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    CHECK (dp_json_to_msgpack (&packer, "[7]garbage", 3, error, sizeof error) == 0);
    CHECK_EQ_INT (buffer.size, 2);
    msgpack_sbuffer_destroy (&buffer);
}

static void
s_test_base64 (void)
{
    char text[16];
    uint8_t bytes[16];
    CHECK_EQ_INT (dp_json_base64_encode (text, "foobar", 6), 8);
    CHECK_EQ_STR (text, "Zm9vYmFy");
    CHECK_EQ_INT (dp_json_base64_encode (text, "fooba", 5), 8);
    CHECK_EQ_STR (text, "Zm9vYmE=");
    CHECK_EQ_INT (dp_json_base64_encode (text, "f", 1), 4);
    CHECK_EQ_STR (text, "Zg==");
    CHECK_EQ_INT (dp_json_base64_size (1), 5);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Zm9vYg==", 8), 4);
    CHECK (memcmp (bytes, "foob", 4) == 0);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Zm9vYg", 6), 4);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Zm9v=", 5), -1);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Z===", 4), -1);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Zm 9", 4), -1);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "", 0), 0);
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Zm9vYg==Zg==", 12), -1); /* padding mid-way */
    CHECK_EQ_INT (dp_json_base64_decode (bytes, "Zm9v\0Zg=", 8), -1);     /* a NUL inside */
}

/*  The program's one case. */
static void
s_case_json_roundtrip_bigints_floats_bin_and_errors (void)
{
    s_test_scalars_and_nesting ();
    s_test_integers_are_exact ();
    s_test_floats_keep_their_bits ();
    s_test_bin_ext_and_keys ();
    s_test_invalid_json_is_refused_clearly ();
    s_test_base64 ();
}

/*  Checks that text (size bytes) escaped for a terminal is expected. */
static void
s_check_escaped (const char *text, size_t size, const char *expected)
{
    dp_json_buf_t out;
    dp_json_buf_init (&out);
    CHECK (dp_json_append_escaped (&out, text, size) == 0);
    CHECK_EQ_STR (out.data, expected);
    dp_json_buf_free (&out);
}

#define CHECK_ESCAPED(text, expected) s_check_escaped (text, sizeof (text) - 1, expected)

/*  Text for a terminal: printable UTF-8 as it is, every control, DEL, C1
    control, bidirectional override and invalid byte escaped; and the same
    controls as \u escapes in JSON strings. */
static void
s_case_json_escapes_text_for_terminals (void)
{
    CHECK_ESCAPED ("", "");
    CHECK_ESCAPED ("plain h\xc3\xa9llo \xe4\xb8\x96", "plain h\xc3\xa9llo \xe4\xb8\x96");
    CHECK_ESCAPED ("a\x1b[2J\n\r\t\\b", "a\\x1b[2J\\n\\r\\t\\\\b");
    CHECK_ESCAPED ("nul\0del\x7f", "nul\\x00del\\x7f");
    CHECK_ESCAPED ("c1\xc2\x9b"
                   "31m",
                   "c1\\u009b31m");
    CHECK_ESCAPED ("rlo\xe2\x80\xae"
                   "x",
                   "rlo\\u202ex");
    CHECK_ESCAPED ("bad\xff\xc3(\xed\xa0\x80", "bad\\xff\\xc3(\\xed\\xa0\\x80");
    s_check_roundtrip ("\"esc\\u001b del\\u007f c1\\u009b rlo\\u202e\"", NULL);
}

static const dp_test_case_t s_cases[] = {
    {"json_roundtrip_bigints_floats_bin_and_errors",
     s_case_json_roundtrip_bigints_floats_bin_and_errors},
    {"json_escapes_text_for_terminals", s_case_json_escapes_text_for_terminals},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

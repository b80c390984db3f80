/*  dp_json.c - JSON text to msgpack and back, for the dpool command.

    Output is written by hand rather than through jansson's encoder: a
    jansson integer is a long long, so uint64 values above INT64_MAX could
    not be printed exactly, and building a tree per result would only cost
    time. Input is parsed by jansson. For the same reason jansson refuses
    integers above INT64_MAX; when it does, the text is scanned once, every
    such integer is noted in document order and blanked to 0 in a copy, the
    copy is parsed, and the noted values are put back while packing. The
    scan counts number tokens in the order jansson creates number nodes
    (objects keep insertion order, duplicates are refused), so the n-th
    number node is the n-th token.
*/
#include "dp_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAPACITY   256 /* first allocation of a text buffer */
#define FLOAT_TEXT_SIZE    40  /* enough for any %.17g double */
#define DOUBLE_MAX_DIGITS  17  /* digits that always read a double back exactly */
#define FLOAT32_MAX_DIGITS 9   /* the same for a float32 */
#define POSITIONAL_MIN_EXP -4  /* exponents printed without 'e', as Python does */
#define POSITIONAL_MAX_EXP 15
#define EXT_TYPE_MIN       -128 /* msgpack ext type range */
#define EXT_TYPE_MAX       127
#define UTF8_REPLACEMENT   "\xEF\xBF\xBD" /* U+FFFD */

static const char s_too_deep[] =
    "arrays and objects nested deeper than " DP_JSON_DEPTH_TEXT " levels";

void
dp_json_buf_init (dp_json_buf_t *self)
{
    self->data = NULL;
    self->size = 0;
    self->capacity = 0;
}

void
dp_json_buf_reset (dp_json_buf_t *self)
{
    self->size = 0;
    if (self->data)
        self->data[0] = 0;
}

void
dp_json_buf_free (dp_json_buf_t *self)
{
    free (self->data);
    dp_json_buf_init (self);
}

/*  Makes room for extra more bytes plus the NUL. Returns 0 or -1. */
static int
s_buf_reserve (dp_json_buf_t *self, size_t extra)
{
    if (self->capacity - self->size > extra)
        return 0;
    size_t capacity = self->capacity ? self->capacity : BUF_MIN_CAPACITY;
    while (capacity - self->size <= extra) {
        if (capacity > SIZE_MAX / 2)
            return -1;
        capacity *= 2;
    }
    char *data = realloc (self->data, capacity);
    if (!data)
        return -1;
    self->data = data;
    self->capacity = capacity;
    return 0;
}

int
dp_json_buf_append (dp_json_buf_t *self, const char *data, size_t size)
{
    if (s_buf_reserve (self, size))
        return -1;
    if (size > 0)
        memcpy (self->data + self->size, data, size);
    self->size += size;
    self->data[self->size] = 0;
    return 0;
}

/*  Appends a NUL-terminated literal. */
static int
s_append_text (dp_json_buf_t *self, const char *text)
{
    return dp_json_buf_append (self, text, strlen (text));
}

size_t
dp_json_base64_size (size_t size)
{
    return sodium_base64_ENCODED_LEN (size, sodium_base64_VARIANT_ORIGINAL);
}

size_t
dp_json_base64_encode (char *out, const void *data, size_t size)
{
    sodium_bin2base64 (out, dp_json_base64_size (size), (const unsigned char *)data, size,
                       sodium_base64_VARIANT_ORIGINAL);
    return strlen (out);
}

/*  With its padding or without, as the text has it: libsodium's decoder
    stops at the first character it does not take, which must be the end. */
long
dp_json_base64_decode (void *out, const char *text, size_t size)
{
    static const int variants[] = {sodium_base64_VARIANT_ORIGINAL,
                                   sodium_base64_VARIANT_ORIGINAL_NO_PADDING};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        size_t len = 0;
        const char *end = NULL;
        if (sodium_base642bin ((unsigned char *)out, size / 4 * 3 + 3, text, size, NULL, &len,
                               &end, variants[i]) == 0 &&
            end == text + size)
            return (long)len;
    }
    return -1;
}

/*  The length of the valid UTF-8 sequence at s (n bytes left), and its
    code point in *code_point, or 0 if the bytes there are not one (overlong
    forms and surrogates included). */
static size_t
s_utf8_sequence (const uint8_t *s, size_t n, uint32_t *code_point)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t min, cp;
    if (c < 0x80) {
        *code_point = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
        cp = c & 0x07;
    } else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *code_point = cp;
    return len;
}

/*  True for a code point above ASCII that a terminal may act on rather
    than print: the C1 controls (ESC's eight-bit forms, CSI among them) and
    the bidirectional embeddings, overrides and isolates, which reorder the
    text around them. */
static bool
s_unsafe_code_point (uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/*  The JSON escape of the byte c (below 0x80), or NULL if it needs none;
    code is room for a \u escape. */
static const char *
s_json_escape (uint8_t c, char code[8])
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    default:
        break;
    }
    if (c >= 0x20 && c != 0x7F)
        return NULL;
    snprintf (code, 8, "\\u%04x", c);
    return code;
}

int
dp_json_append_string (dp_json_buf_t *out, const char *data, size_t size)
{
    const uint8_t *s = (const uint8_t *)data;
    if (s_buf_reserve (out, size + 2))
        return -1;
    out->data[out->size++] = '"';
    size_t run = 0; /* start of the bytes not yet copied */
    size_t i = 0;
    while (i < size) {
        uint8_t c = s[i];
        const char *escape = NULL;
        char code[8];
        size_t len = 1;
        uint32_t cp = c;
        if (c < 0x80)
            escape = s_json_escape (c, code);
        else if ((len = s_utf8_sequence (s + i, size - i, &cp)) == 0) {
            escape = UTF8_REPLACEMENT;
            len = 1;
        } else if (s_unsafe_code_point (cp)) {
            snprintf (code, sizeof code, "\\u%04x", (unsigned)cp);
            escape = code;
        }
        if (escape) {
            if (dp_json_buf_append (out, data + run, i - run) || s_append_text (out, escape))
                return -1;
            run = i + len;
        }
        i += len;
    }
    if ((size > run && dp_json_buf_append (out, data + run, size - run)) ||
        dp_json_buf_append (out, "\"", 1))
        return -1;
    return 0;
}

/*  The escape of the code point cp (len bytes at s) in text for a
    terminal, into code, or NULL if it prints as it is. */
static const char *
s_text_escape (const uint8_t *s, size_t len, uint32_t cp, char code[16])
{
    if (len == 0)
        snprintf (code, 16, "\\x%02x", s[0]);
    else if (cp == '\\')
        return "\\\\";
    else if (cp == '\n')
        return "\\n";
    else if (cp == '\r')
        return "\\r";
    else if (cp == '\t')
        return "\\t";
    else if (cp < 0x20 || cp == 0x7F)
        snprintf (code, 16, "\\x%02x", (unsigned)cp);
    else if (s_unsafe_code_point (cp))
        snprintf (code, 16, "\\u%04x", (unsigned)cp);
    else
        return NULL;
    return code;
}

int
dp_json_append_escaped (dp_json_buf_t *out, const char *data, size_t size)
{
    const uint8_t *s = (const uint8_t *)data;
    if (s_buf_reserve (out, size))
        return -1;
    size_t run = 0; /* start of the bytes not yet copied */
    size_t i = 0;
    while (i < size) {
        uint32_t cp = 0;
        size_t len = s_utf8_sequence (s + i, size - i, &cp);
        char code[16];
        const char *escape = s_text_escape (s + i, len, cp, code);
        if (len == 0)
            len = 1;
        if (escape) {
            if (dp_json_buf_append (out, data + run, i - run) || s_append_text (out, escape))
                return -1;
            run = i + len;
        }
        i += len;
    }
    if (size > run && dp_json_buf_append (out, data + run, size - run))
        return -1;
    /*  Text made of nothing still reads as a C string. */
    return dp_json_buf_append (out, "", 0);
}

/*  Appends value the way Python's repr prints a float: the fewest
    significant digits that read back to the same value (as a float when
    single, else as a double), in positional notation when the exponent is
    from -4 to 15 and in scientific notation (at least two exponent digits)
    otherwise; positional notation always has a '.'. */
static int
s_append_float (dp_json_buf_t *out, double value, bool single)
{
    if (isnan (value) || isinf (value))
        return s_append_text (out, "null");
    char sci[FLOAT_TEXT_SIZE];
    int max_digits = single ? FLOAT32_MAX_DIGITS : DOUBLE_MAX_DIGITS;
    for (int digits = 1; digits <= max_digits; digits++) {
        snprintf (sci, sizeof sci, "%.*e", digits - 1, value);
        double back = strtod (sci, NULL);
        if (single ? (float)back == (float)value : back == value)
            break;
    }
    /*  sci is [-]D[.DDD]e(+|-)XX: take its sign, digits and exponent. */
    char digits[FLOAT_TEXT_SIZE];
    size_t ndigits = 0;
    const char *p = sci;
    bool negative = *p == '-';
    if (negative)
        p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.')
            digits[ndigits++] = *p;
    int exponent = atoi (p + 1);
    while (ndigits > 1 && digits[ndigits - 1] == '0')
        ndigits--;
    char text[FLOAT_TEXT_SIZE * 2];
    size_t len = 0;
    if (negative)
        text[len++] = '-';
    if (exponent < POSITIONAL_MIN_EXP || exponent > POSITIONAL_MAX_EXP) {
        text[len++] = digits[0];
        if (ndigits > 1) {
            text[len++] = '.';
            memcpy (text + len, digits + 1, ndigits - 1);
            len += ndigits - 1;
        }
        len += (size_t)snprintf (text + len, sizeof text - len, "e%c%02d",
                                 exponent < 0 ? '-' : '+', abs (exponent));
    } else if (exponent < 0) {
        text[len++] = '0';
        text[len++] = '.';
        for (int i = 0; i < -exponent - 1; i++)
            text[len++] = '0';
        memcpy (text + len, digits, ndigits);
        len += ndigits;
    } else {
        size_t whole = (size_t)exponent + 1;
        for (size_t i = 0; i < whole; i++)
            text[len++] = i < ndigits ? digits[i] : '0';
        text[len++] = '.';
        if (ndigits > whole) {
            memcpy (text + len, digits + whole, ndigits - whole);
            len += ndigits - whole;
        } else
            text[len++] = '0';
    }
    return dp_json_buf_append (out, text, len);
}

/*  Appends bytes as base64 text inside quotes. */
static int
s_append_base64 (dp_json_buf_t *out, const char *data, size_t size)
{
    size_t need = dp_json_base64_size (size);
    if (s_buf_reserve (out, need + 2))
        return -1;
    out->data[out->size++] = '"';
    out->size += dp_json_base64_encode (out->data + out->size, data, size);
    out->data[out->size++] = '"';
    out->data[out->size] = 0;
    return 0;
}

int
dp_json_from_object (dp_json_buf_t *out, const msgpack_object *object)
{
    char number[FLOAT_TEXT_SIZE];
    switch (object->type) {
    case MSGPACK_OBJECT_NIL:
        return s_append_text (out, "null");
    case MSGPACK_OBJECT_BOOLEAN:
        return s_append_text (out, object->via.boolean ? "true" : "false");
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        snprintf (number, sizeof number, "%" PRIu64, object->via.u64);
        return s_append_text (out, number);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        snprintf (number, sizeof number, "%" PRId64, object->via.i64);
        return s_append_text (out, number);
    case MSGPACK_OBJECT_FLOAT32:
        return s_append_float (out, object->via.f64, true);
    case MSGPACK_OBJECT_FLOAT64:
        return s_append_float (out, object->via.f64, false);
    case MSGPACK_OBJECT_STR:
        return dp_json_append_string (out, object->via.str.ptr, object->via.str.size);
    case MSGPACK_OBJECT_BIN:
        if (s_append_text (out, "{\"$bin\":") ||
            s_append_base64 (out, object->via.bin.ptr, object->via.bin.size))
            return -1;
        return s_append_text (out, "}");
    case MSGPACK_OBJECT_EXT:
        snprintf (number, sizeof number, "{\"$ext\":[%d,", (int)object->via.ext.type);
        if (s_append_text (out, number) ||
            s_append_base64 (out, object->via.ext.ptr, object->via.ext.size))
            return -1;
        return s_append_text (out, "]}");
    case MSGPACK_OBJECT_ARRAY:
        if (s_append_text (out, "["))
            return -1;
        for (uint32_t i = 0; i < object->via.array.size; i++)
            if ((i > 0 && s_append_text (out, ",")) ||
                dp_json_from_object (out, &object->via.array.ptr[i]))
                return -1;
        return s_append_text (out, "]");
    case MSGPACK_OBJECT_MAP:
        if (s_append_text (out, "{"))
            return -1;
        for (uint32_t i = 0; i < object->via.map.size; i++) {
            const msgpack_object_kv *kv = &object->via.map.ptr[i];
            if (i > 0 && s_append_text (out, ","))
                return -1;
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                if (dp_json_append_string (out, kv->key.via.str.ptr, kv->key.via.str.size))
                    return -1;
            } else {
                dp_json_buf_t key;
                dp_json_buf_init (&key);
                int rc = dp_json_from_object (&key, &kv->key);
                if (rc == 0)
                    rc = dp_json_append_string (out, key.data, key.size);
                dp_json_buf_free (&key);
                if (rc)
                    return -1;
            }
            if (s_append_text (out, ":") || dp_json_from_object (out, &kv->val))
                return -1;
        }
        return s_append_text (out, "}");
    }
    return s_append_text (out, "null");
}

int
dp_json_from_msgpack (dp_json_buf_t *out, const void *data, size_t size, char *error,
                      size_t error_size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (&unpacked, data, size, &offset);
    int result = -1;
    if (rc != MSGPACK_UNPACK_SUCCESS)
        snprintf (error, error_size, "not a msgpack item");
    else if (offset != size)
        snprintf (error, error_size, "%zu bytes after the msgpack item", size - offset);
    else if (dp_json_from_object (out, &unpacked.data))
        snprintf (error, error_size, "out of memory");
    else
        result = 0;
    msgpack_unpacked_destroy (&unpacked);
    return result;
}

/*  ---------------------------------------------------------------------------
    JSON to msgpack.
*/

/*  An integer too big for jansson, and where it is in document order. */
typedef struct {
    size_t index; /* among all number tokens of the text */
    uint64_t value;
} s_bigint_t;

typedef struct {
    s_bigint_t *bigints; /* in document order */
    size_t nbigints;
    size_t next_bigint; /* the next one to put back */
    size_t numbers;     /* number nodes packed so far */
    char *error;
    size_t error_size;
} s_pack_t;

/*  Parses a run of decimal digits as a uint64; -1 if it overflows. */
static int
s_parse_u64 (const char *digits, size_t len, uint64_t *value)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(digits[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *value = v;
    return 0;
}

/*  Finds the integers in text (size bytes) that fit a uint64 but not an
    int64, notes them in ctx, and blanks each to "0" in copy (a copy of
    text). Returns how many, or -1 if out of memory. */
static long
s_scan_bigints (s_pack_t *ctx, const char *text, size_t size, char *copy)
{
    size_t capacity = 0;
    size_t index = 0;
    bool in_string = false;
    size_t i = 0;
    while (i < size) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            i++;
            continue;
        }
        if (c == '"') {
            in_string = true;
            i++;
            continue;
        }
        if (c != '-' && (c < '0' || c > '9')) {
            i++;
            continue;
        }
        size_t start = i++;
        bool integer = true;
        while (i < size && ((text[i] >= '0' && text[i] <= '9') || strchr (".eE+-", text[i]))) {
            if (text[i] < '0' || text[i] > '9')
                integer = false;
            i++;
        }
        uint64_t value;
        if (integer && c != '-' && s_parse_u64 (text + start, i - start, &value) == 0 &&
            value > (uint64_t)INT64_MAX) {
            if (ctx->nbigints == capacity) {
                capacity = capacity ? capacity * 2 : 8;
                s_bigint_t *bigger = realloc (ctx->bigints, capacity * sizeof *bigger);
                if (!bigger)
                    return -1;
                ctx->bigints = bigger;
            }
            ctx->bigints[ctx->nbigints].index = index;
            ctx->bigints[ctx->nbigints].value = value;
            ctx->nbigints++;
            copy[start] = '0';
            memset (copy + start + 1, ' ', i - start - 1);
        }
        index++;
    }
    return (long)ctx->nbigints;
}

/*  Writes "what" into the context's error buffer and returns -1. */
static int
s_pack_fail (s_pack_t *ctx, const char *what)
{
    snprintf (ctx->error, ctx->error_size, "%s", what);
    return -1;
}

static int
s_pack_value (s_pack_t *ctx, msgpack_packer *packer, json_t *value, int depth);

/*  Packs the base64 string text as a bin, or as an ext of ext_type when
    is_ext. */
static int
s_pack_bytes (s_pack_t *ctx, msgpack_packer *packer, json_t *text, bool is_ext, int ext_type)
{
    size_t len = json_string_length (text);
    uint8_t *bytes = malloc (len / 4 * 3 + 3);
    if (!bytes)
        return s_pack_fail (ctx, "out of memory");
    long size = dp_json_base64_decode (bytes, json_string_value (text), len);
    int rc;
    if (size < 0)
        rc = s_pack_fail (ctx, is_ext ? "\"$ext\" data is not base64" : "\"$bin\" is not base64");
    else if (is_ext)
        rc = msgpack_pack_ext (packer, (size_t)size, (int8_t)ext_type) ||
                     msgpack_pack_ext_body (packer, bytes, (size_t)size)
                 ? s_pack_fail (ctx, "out of memory")
                 : 0;
    else
        rc = msgpack_pack_bin (packer, (size_t)size) ||
                     msgpack_pack_bin_body (packer, bytes, (size_t)size)
                 ? s_pack_fail (ctx, "out of memory")
                 : 0;
    free (bytes);
    return rc;
}

/*  Packs an object: a {"$bin"} or {"$ext"} marker, or a map at depth (its
    own level). */
static int
s_pack_object (s_pack_t *ctx, msgpack_packer *packer, json_t *object, int depth)
{
    if (json_object_size (object) == 1) {
        json_t *bin = json_object_get (object, "$bin");
        json_t *ext = json_object_get (object, "$ext");
        if (bin) {
            if (!json_is_string (bin))
                return s_pack_fail (ctx, "\"$bin\" must be a base64 string");
            return s_pack_bytes (ctx, packer, bin, false, 0);
        }
        if (ext) {
            json_t *type = json_array_get (ext, 0);
            json_t *data = json_array_get (ext, 1);
            if (!json_is_array (ext) || json_array_size (ext) != 2 || !json_is_integer (type) ||
                !json_is_string (data) || json_integer_value (type) < EXT_TYPE_MIN ||
                json_integer_value (type) > EXT_TYPE_MAX)
                return s_pack_fail (ctx, "\"$ext\" must be [type -128..127, base64 string]");
            if (ctx->next_bigint < ctx->nbigints &&
                ctx->bigints[ctx->next_bigint].index == ctx->numbers)
                return s_pack_fail (ctx, "\"$ext\" must be [type -128..127, base64 string]");
            ctx->numbers++; /* the type is a number token */
            return s_pack_bytes (ctx, packer, data, true, (int)json_integer_value (type));
        }
    }
    if (depth > DP_JSON_MAX_DEPTH)
        return s_pack_fail (ctx, s_too_deep);
    if (msgpack_pack_map (packer, json_object_size (object)))
        return s_pack_fail (ctx, "out of memory");
    const char *key;
    size_t key_len;
    json_t *value;
    json_object_keylen_foreach (object, key, key_len, value)
    {
        if (msgpack_pack_str (packer, key_len) || msgpack_pack_str_body (packer, key, key_len))
            return s_pack_fail (ctx, "out of memory");
        if (s_pack_value (ctx, packer, value, depth + 1))
            return -1;
    }
    return 0;
}

/*  Packs one parsed value, putting back the big integers. depth is the
    level of the value itself: 1 for the root. */
static int
s_pack_value (s_pack_t *ctx, msgpack_packer *packer, json_t *value, int depth)
{
    int rc = 0;
    switch (json_typeof (value)) {
    case JSON_OBJECT:
        return s_pack_object (ctx, packer, value, depth);
    case JSON_ARRAY:
        if (depth > DP_JSON_MAX_DEPTH)
            return s_pack_fail (ctx, s_too_deep);
        if (msgpack_pack_array (packer, json_array_size (value)))
            return s_pack_fail (ctx, "out of memory");
        for (size_t i = 0; i < json_array_size (value); i++)
            if (s_pack_value (ctx, packer, json_array_get (value, i), depth + 1))
                return -1;
        return 0;
    case JSON_STRING:
        rc = msgpack_pack_str (packer, json_string_length (value)) ||
             msgpack_pack_str_body (packer, json_string_value (value), json_string_length (value));
        break;
    case JSON_INTEGER:
        if (ctx->next_bigint < ctx->nbigints &&
            ctx->bigints[ctx->next_bigint].index == ctx->numbers)
            rc = msgpack_pack_uint64 (packer, ctx->bigints[ctx->next_bigint++].value);
        else
            rc = msgpack_pack_int64 (packer, json_integer_value (value));
        ctx->numbers++;
        break;
    case JSON_REAL:
        rc = msgpack_pack_double (packer, json_real_value (value));
        ctx->numbers++;
        break;
    case JSON_TRUE:
        rc = msgpack_pack_true (packer);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false (packer);
        break;
    case JSON_NULL:
        rc = msgpack_pack_nil (packer);
        break;
    }
    return rc ? s_pack_fail (ctx, "out of memory") : 0;
}

/*  Writes jansson's parse error, with where it is, into error. */
static void
s_parse_error (const json_error_t *parse, bool multiline, char *error, size_t error_size)
{
    const char *text = parse->text;
    if (json_error_code (parse) == json_error_numeric_overflow)
        text = "number out of range";
    if (multiline)
        snprintf (error, error_size, "invalid JSON at line %d, column %d: %s", parse->line,
                  parse->column, text);
    else
        snprintf (error, error_size, "invalid JSON at column %d: %s", parse->column, text);
}

int
dp_json_to_msgpack (msgpack_packer *packer, const char *text, size_t size, char *error,
                    size_t error_size)
{
    const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    s_pack_t ctx = {.error = error, .error_size = error_size};
    bool multiline = memchr (text, '\n', size) != NULL;
    json_error_t parse;
    json_t *root = json_loadb (text, size, flags, &parse);
    if (!root && json_error_code (&parse) == json_error_numeric_overflow) {
        /*  Perhaps integers above INT64_MAX: put them aside and try again. */
        char *copy = malloc (size ? size : 1);
        if (!copy)
            return s_pack_fail (&ctx, "out of memory");
        memcpy (copy, text, size);
        long found = s_scan_bigints (&ctx, text, size, copy);
        if (found < 0) {
            free (copy);
            free (ctx.bigints);
            return s_pack_fail (&ctx, "out of memory");
        }
        if (found > 0)
            root = json_loadb (copy, size, flags, &parse);
        free (copy);
    }
    if (!root) {
        free (ctx.bigints);
        s_parse_error (&parse, multiline, error, error_size);
        return -1;
    }
    int rc = s_pack_value (&ctx, packer, root, 1);
    json_decref (root);
    free (ctx.bigints);
    return rc;
}

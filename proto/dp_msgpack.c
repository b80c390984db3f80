/*  dp_msgpack.c - a bounds-checked, non-allocating msgpack reader. */
#include "dp_msgpack.h"

#include <assert.h>
#include <string.h>

void
dp_reader_init (dp_reader_t *self, const void *data, size_t size)
{
    assert (self);
    assert (data || size == 0);
    self->pos = (const uint8_t *)data;
    self->end = size ? self->pos + size : self->pos; /* no arithmetic on NULL */
}

size_t
dp_reader_left (const dp_reader_t *self)
{
    return (size_t)(self->end - self->pos);
}

/*  Big-endian loads of n bytes at p; the caller has checked the bounds. */
static uint64_t
s_load_be (const uint8_t *p, int n)
{
    uint64_t value = 0;
    for (int i = 0; i < n; i++)
        value = (value << 8) | p[i];
    return value;
}

dp_mp_type_t
dp_mp_peek (const dp_reader_t *self)
{
    if (self->pos >= self->end)
        return DP_MP_INVALID;
    uint8_t b = *self->pos;
    if (b <= 0x7f)
        return DP_MP_UINT;
    if (b <= 0x8f)
        return DP_MP_MAP;
    if (b <= 0x9f)
        return DP_MP_ARRAY;
    if (b <= 0xbf)
        return DP_MP_STR;
    if (b >= 0xe0)
        return DP_MP_INT;
    switch (b) {
    case 0xc0:
        return DP_MP_NIL;
    case 0xc2:
    case 0xc3:
        return DP_MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return DP_MP_BIN;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return DP_MP_EXT;
    case 0xca:
    case 0xcb:
        return DP_MP_FLOAT;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return DP_MP_UINT;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return DP_MP_INT;
    case 0xd9:
    case 0xda:
    case 0xdb:
        return DP_MP_STR;
    case 0xdc:
    case 0xdd:
        return DP_MP_ARRAY;
    case 0xde:
    case 0xdf:
        return DP_MP_MAP;
    default:
        return DP_MP_INVALID; /* 0xc1 is never used */
    }
}

/*  Reads a header of 1 + n bytes whose n-byte big-endian tail is a length
    or count; fails if the header does not fit. */
static int
s_read_len (dp_reader_t *self, int n, uint64_t *len)
{
    if (dp_reader_left (self) < (size_t)1 + (size_t)n)
        return -1;
    *len = s_load_be (self->pos + 1, n);
    self->pos += 1 + n;
    return 0;
}

/*  Reads the header of a container whose fix form is fix_lo..fix_lo+15 and
    whose 16- and 32-bit forms are tag16 and tag16 + 1. */
static int
s_read_container (dp_reader_t *self, uint8_t fix_lo, uint8_t tag16, uint32_t *count)
{
    if (self->pos >= self->end)
        return -1;
    uint8_t b = *self->pos;
    uint64_t n;
    if (b >= fix_lo && b <= fix_lo + 0x0f) {
        n = b & 0x0f;
        self->pos++;
    } else if (b == tag16) {
        if (s_read_len (self, 2, &n))
            return -1;
    } else if (b == tag16 + 1) {
        if (s_read_len (self, 4, &n))
            return -1;
    } else
        return -1;
    *count = (uint32_t)n;
    return 0;
}

int
dp_mp_read_array (dp_reader_t *self, uint32_t *count)
{
    return s_read_container (self, 0x90, 0xdc, count);
}

int
dp_mp_read_map (dp_reader_t *self, uint32_t *count)
{
    return s_read_container (self, 0x80, 0xde, count);
}

/*  Reads any integer item as a sign and magnitude. */
static int
s_read_integer (dp_reader_t *self, bool *negative, uint64_t *magnitude)
{
    if (self->pos >= self->end)
        return -1;
    uint8_t b = *self->pos;
    uint64_t raw;
    *negative = false;
    if (b <= 0x7f) {
        *magnitude = b;
        self->pos++;
        return 0;
    }
    if (b >= 0xe0) {
        *negative = true;
        *magnitude = (uint64_t)(-(int64_t)(int8_t)b);
        self->pos++;
        return 0;
    }
    int width;
    bool is_signed;
    switch (b) {
    case 0xcc:
    case 0xd0:
        width = 1;
        break;
    case 0xcd:
    case 0xd1:
        width = 2;
        break;
    case 0xce:
    case 0xd2:
        width = 4;
        break;
    case 0xcf:
    case 0xd3:
        width = 8;
        break;
    default:
        return -1;
    }
    is_signed = b >= 0xd0;
    if (s_read_len (self, width, &raw))
        return -1;
    if (!is_signed) {
        *magnitude = raw;
        return 0;
    }
    /*  Sign-extend the width-byte two's complement value. */
    int shift = 64 - 8 * width;
    int64_t value = (int64_t)(raw << shift) >> shift;
    if (value < 0) {
        *negative = true;
        *magnitude = (uint64_t)0 - (uint64_t)value;
    } else
        *magnitude = (uint64_t)value;
    return 0;
}

int
dp_mp_read_uint (dp_reader_t *self, uint64_t *value)
{
    const uint8_t *start = self->pos;
    bool negative;
    uint64_t magnitude;
    if (s_read_integer (self, &negative, &magnitude))
        return -1;
    if (negative) {
        self->pos = start;
        return -1;
    }
    *value = magnitude;
    return 0;
}

int
dp_mp_read_int (dp_reader_t *self, int64_t *value)
{
    const uint8_t *start = self->pos;
    bool negative;
    uint64_t magnitude;
    if (s_read_integer (self, &negative, &magnitude))
        return -1;
    if (negative)
        *value = (int64_t)((uint64_t)0 - magnitude);
    else if (magnitude > (uint64_t)INT64_MAX) {
        self->pos = start;
        return -1;
    } else
        *value = (int64_t)magnitude;
    return 0;
}

/*  Reads a str (want_str) or bin header and its bytes. */
static int
s_read_bytes (dp_reader_t *self, bool want_str, dp_span_t *value)
{
    if (self->pos >= self->end)
        return -1;
    const uint8_t *start = self->pos;
    uint8_t b = *self->pos;
    uint64_t len;
    if (want_str && b >= 0xa0 && b <= 0xbf) {
        len = b & 0x1f;
        self->pos++;
    } else {
        uint8_t tag8 = want_str ? 0xd9 : 0xc4;
        if (b < tag8 || b > tag8 + 2)
            return -1;
        if (s_read_len (self, 1 << (b - tag8), &len))
            return -1;
    }
    if (len > dp_reader_left (self)) {
        self->pos = start;
        return -1;
    }
    value->data = self->pos;
    value->size = (size_t)len;
    self->pos += len;
    return 0;
}

int
dp_mp_read_str (dp_reader_t *self, dp_span_t *value)
{
    return s_read_bytes (self, true, value);
}

int
dp_mp_read_bin (dp_reader_t *self, dp_span_t *value)
{
    return s_read_bytes (self, false, value);
}

int
dp_mp_read_bool (dp_reader_t *self, bool *value)
{
    if (self->pos >= self->end || (*self->pos != 0xc2 && *self->pos != 0xc3))
        return -1;
    *value = *self->pos == 0xc3;
    self->pos++;
    return 0;
}

int
dp_mp_read_nil (dp_reader_t *self)
{
    if (self->pos >= self->end || *self->pos != 0xc0)
        return -1;
    self->pos++;
    return 0;
}

/*  Skips one item's own bytes: all of a scalar, or a container's header.
    Returns 0 and, for a container, is_container and its item count in
    *children (pairs count twice); -1 if the bytes are not msgpack or are cut
    short. One dispatch on the first byte: validation walks every byte of
    every message, so this is the codec's hot loop. */
static int
s_skip_one (dp_reader_t *self, bool *is_container, uint64_t *children)
{
    const uint8_t *p = self->pos;
    size_t left = (size_t)(self->end - p);
    if (left == 0)
        return -1;
    uint8_t b = *p;
    *is_container = false;
    *children = 0;
    if (b <= 0x7f || b >= 0xe0) { /* fixint */
        self->pos = p + 1;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) { /* fixstr */
        size_t len = b & 0x1f;
        if (left < 1 + len)
            return -1;
        self->pos = p + 1 + len;
        return 0;
    }
    if (b <= 0x9f) { /* fixmap 0x80-0x8f, fixarray 0x90-0x9f */
        *is_container = true;
        *children = b <= 0x8f ? (uint64_t)(b & 0x0f) * 2 : (uint64_t)(b & 0x0f);
        self->pos = p + 1;
        return 0;
    }
    /*  0xc0-0xdf: fixed sizes first (1 + payload), then lengths. */
    static const uint8_t fixed[32] = {/* c0 nil */ 1,
                                      /* c1 never */ 0,
                                      /* c2 c3 bool */ 1,   1,
                                      /* c4-c6 bin */ 0,    0, 0,
                                      /* c7-c9 ext */ 0,    0, 0,
                                      /* ca cb float */ 5,  9,
                                      /* cc-cf uint */ 2,   3, 5, 9,
                                      /* d0-d3 int */ 2,    3, 5, 9,
                                      /* d4-d8 fixext */ 3, 4, 6, 10, 18,
                                      /* d9-db str */ 0,    0, 0,
                                      /* dc dd array */ 0,  0,
                                      /* de df map */ 0,    0};
    size_t size = fixed[b - 0xc0];
    if (size) {
        if (left < size)
            return -1;
        self->pos = p + size;
        return 0;
    }
    /*  The rest carry a length (bytes that follow) or a count (items),
        coded as the width of that field, LEN for a length, EXT for an
        ext's type byte; 0 for 0xc1, which is not msgpack. */
    enum { W1 = 1, W2 = 2, W4 = 4, LEN = 8, EXT = 16 };
    static const uint8_t coded[32] = {[0x04] = W1 | LEN,
                                      [0x05] = W2 | LEN,
                                      [0x06] = W4 | LEN, /* bin */
                                      [0x07] = W1 | LEN | EXT,
                                      [0x08] = W2 | LEN | EXT,
                                      [0x09] = W4 | LEN | EXT, /* ext */
                                      [0x19] = W1 | LEN,
                                      [0x1a] = W2 | LEN,
                                      [0x1b] = W4 | LEN, /* str */
                                      [0x1c] = W2,
                                      [0x1d] = W4, /* array */
                                      [0x1e] = W2,
                                      [0x1f] = W4}; /* map */
    uint8_t code = coded[b - 0xc0];
    if (code == 0)
        return -1;
    int width = code & 7;             /* bytes of the length or count */
    int payload = (code & LEN) != 0;  /* the length counts bytes that follow */
    int extra = (code & EXT) ? 1 : 0; /* ext: the type byte */
    if (left < (size_t)1 + (size_t)width)
        return -1;
    uint64_t n = s_load_be (p + 1, width);
    size_t header = (size_t)1 + (size_t)width + (size_t)extra;
    if (payload) {
        if (left < header || n > left - header)
            return -1;
        self->pos = p + header + n;
        return 0;
    }
    *is_container = true;
    *children = b >= 0xde ? n * 2 : n;
    self->pos = p + header;
    return 0;
}

int
dp_mp_read_object_depth (dp_reader_t *self, dp_span_t *object, int max_depth, int *depth_used)
{
    assert (max_depth >= 0 && max_depth <= DP_MP_MAX_DEPTH + 2);
    const uint8_t *start = self->pos;
    /*  pending[d] is how many items are still owed at depth d; every item is
        at least one byte, so a count larger than what is left fails early
        instead of looping over a lie. Every container is a level, empty or
        not, as msgpack-c counts them. */
    uint64_t pending[DP_MP_MAX_DEPTH + 3];
    int depth = 0, deepest = 0;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        uint64_t children;
        bool is_container;
        if (s_skip_one (self, &is_container, &children))
            goto fail;
        pending[depth]--;
        if (is_container) {
            if (depth == max_depth || children > dp_reader_left (self))
                goto fail;
            if (depth + 1 > deepest)
                deepest = depth + 1;
            if (children > 0)
                pending[++depth] = children;
        }
    }
    if (object) {
        object->data = start;
        object->size = (size_t)(self->pos - start);
    }
    if (depth_used)
        *depth_used = deepest;
    return 0;
fail:
    self->pos = start;
    return -1;
}

int
dp_mp_read_object (dp_reader_t *self, dp_span_t *object)
{
    return dp_mp_read_object_depth (self, object, DP_MP_MAX_DEPTH, NULL);
}

size_t
dp_mp_unpack_scalar (const void *data, size_t size, msgpack_object *object)
{
    assert (object);
    if (size == 0)
        return 0;
    const uint8_t *p = (const uint8_t *)data;
    uint8_t b = p[0];
    if (b <= 0x7f) {
        object->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        object->via.u64 = b;
        return 1;
    }
    if (b >= 0xe0) {
        object->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
        object->via.i64 = (int8_t)b;
        return 1;
    }
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) {
        object->type = b == 0xc0 ? MSGPACK_OBJECT_NIL : MSGPACK_OBJECT_BOOLEAN;
        object->via.boolean = b == 0xc3;
        return 1;
    }
    /*  ca, cb: float 32, 64; cc-cf: uint 8-64; d0-d3: int 8-64. */
    if (b < 0xca || b > 0xd3)
        return 0;
    static const uint8_t widths[10] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
    int width = widths[b - 0xca];
    if (size < (size_t)1 + (size_t)width)
        return 0;
    uint64_t bits = s_load_be (p + 1, width);
    if (b == 0xca) {
        uint32_t narrow = (uint32_t)bits;
        float f;
        memcpy (&f, &narrow, sizeof f);
        object->type = MSGPACK_OBJECT_FLOAT32;
        object->via.f64 = (double)f;
    } else if (b == 0xcb) {
        double d;
        memcpy (&d, &bits, sizeof d);
        object->type = MSGPACK_OBJECT_FLOAT64;
        object->via.f64 = d;
    } else if (b <= 0xcf) {
        object->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
        object->via.u64 = bits;
    } else {
        /*  Sign-extend from the item's width; msgpack-c calls a signed
            item that is not negative a positive integer. */
        int shift = 64 - 8 * width;
        int64_t value = (int64_t)(bits << shift) >> shift;
        if (value >= 0) {
            object->type = MSGPACK_OBJECT_POSITIVE_INTEGER;
            object->via.u64 = (uint64_t)value;
        } else {
            object->type = MSGPACK_OBJECT_NEGATIVE_INTEGER;
            object->via.i64 = value;
        }
    }
    return (size_t)1 + (size_t)width;
}

int64_t
dp_mp_count_objects (const void *data, size_t size)
{
    dp_reader_t reader;
    dp_reader_init (&reader, data, size);
    int64_t count = 0;
    while (dp_reader_left (&reader) > 0) {
        if (dp_mp_read_object (&reader, NULL))
            return -1;
        count++;
    }
    return count;
}

int
dp_mp_pack_cstr (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, text, len) ? -1 : 0;
}

int
dp_mp_pack_count (msgpack_packer *pk, const char *key, uint64_t count)
{
    return dp_mp_pack_cstr (pk, key) || msgpack_pack_uint64 (pk, count) ? -1 : 0;
}

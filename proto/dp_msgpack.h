/*  dp_msgpack.h - a bounds-checked, non-allocating msgpack reader.

    Every byte that arrives from the network is read through this module
    first. A reader is a cursor over a buffer it does not own; each call
    consumes one msgpack item of the expected type and returns 0, or returns
    -1 and leaves the cursor where it was when the bytes are truncated, of
    another type, or not msgpack at all. Nothing is allocated, nothing is read
    past the end, and nesting deeper than DP_MP_MAX_DEPTH is refused, so
    hostile input costs at most one pass over its bytes.

    Writing goes through msgpack-c's msgpack_packer (two helpers for C
    strings are here); reading is here, because msgpack_unpack allocates a
    zone per call and cannot be told how deep is too deep.
*/
#ifndef DP_MSGPACK_H_INCLUDED
#define DP_MSGPACK_H_INCLUDED

#include <msgpack/object.h>
#include <msgpack/pack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Deepest nesting of arrays and maps a reader accepts (every container,
    empty or not, is a level). msgpack-c's own unpacker stops at 32, so a
    value this reader accepts can always be unpacked by a worker. */
#define DP_MP_MAX_DEPTH 32

/*  A run of bytes inside a buffer someone else owns. */
typedef struct {
    const uint8_t *data;
    size_t size;
} dp_span_t;

/*  The kinds of msgpack item, as dp_mp_peek reports them. */
typedef enum {
    DP_MP_INVALID = 0,
    DP_MP_NIL,
    DP_MP_BOOL,
    DP_MP_UINT,
    DP_MP_INT,
    DP_MP_FLOAT,
    DP_MP_STR,
    DP_MP_BIN,
    DP_MP_ARRAY,
    DP_MP_MAP,
    DP_MP_EXT
} dp_mp_type_t;

typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} dp_reader_t;

/*  Points the reader at size bytes of data. */
void
dp_reader_init (dp_reader_t *self, const void *data, size_t size);

/*  Bytes not yet read. */
size_t
dp_reader_left (const dp_reader_t *self);

/*  The type of the next item, without consuming it; DP_MP_INVALID at the end
    or on a byte that starts no msgpack item. */
dp_mp_type_t
dp_mp_peek (const dp_reader_t *self);

/*  Reads an array or map header: the element count (a map counts pairs). */
int
dp_mp_read_array (dp_reader_t *self, uint32_t *count);
int
dp_mp_read_map (dp_reader_t *self, uint32_t *count);

/*  Reads an integer that fits the target: a uint64 must not be negative, an
    int64 must not exceed INT64_MAX. */
int
dp_mp_read_uint (dp_reader_t *self, uint64_t *value);
int
dp_mp_read_int (dp_reader_t *self, int64_t *value);

/*  Reads a str (or a bin) and returns its bytes as a span into the buffer. */
int
dp_mp_read_str (dp_reader_t *self, dp_span_t *value);
int
dp_mp_read_bin (dp_reader_t *self, dp_span_t *value);

int
dp_mp_read_bool (dp_reader_t *self, bool *value);
int
dp_mp_read_nil (dp_reader_t *self);

/*  Reads one whole item of any type, however nested (up to DP_MP_MAX_DEPTH),
    checking every byte of it, and returns its encoded bytes. */
int
dp_mp_read_object (dp_reader_t *self, dp_span_t *object);

/*  dp_mp_read_object with another nesting limit (0 to DP_MP_MAX_DEPTH + 2,
    for the levels a chunk adds around its calls and their results); if
    depth_used is not NULL it gets the deepest nesting seen (a scalar is 0,
    an array of scalars 1). */
int
dp_mp_read_object_depth (dp_reader_t *self, dp_span_t *object, int max_depth, int *depth_used);

/*  Unpacks the item at data (size bytes available) into *object, exactly as
    msgpack_unpack would, when it is a scalar that needs no zone: nil, a
    bool, an integer or a float. Returns the bytes it took, or 0 (object
    untouched) when the item is of another kind or truncated, for
    msgpack_unpack to deal with. The fast path for map results and chunk
    arguments, which are mostly scalars. */
size_t
dp_mp_unpack_scalar (const void *data, size_t size, msgpack_object *object);

/*  Checks that data holds a sequence of complete msgpack items back to back
    and nothing else; returns how many, or -1 if it does not. */
int64_t
dp_mp_count_objects (const void *data, size_t size);

/*  Packs the C string text as a msgpack str. Returns 0, or -1 if the
    packer's writer failed (out of memory). */
int
dp_mp_pack_cstr (msgpack_packer *pk, const char *text);

/*  Packs a map's pair: the key text (a str) and count (an unsigned
    integer); status maps are made of them. Returns 0 or -1. */
int
dp_mp_pack_count (msgpack_packer *pk, const char *key, uint64_t count);

#endif

/*  dp_json.h - JSON text to msgpack and back, for the dpool command.

    The dpool command reads task arguments as JSON and prints results as
    JSON; the pool speaks msgpack. This module converts between the two, one
    value at a time, with these rules (both directions agree, so a value
    survives JSON -> msgpack -> JSON unchanged):

    - null, true, false, strings, arrays and objects map to their msgpack
      twins. Output is compact (no spaces) and keeps map order.
    - Integers stay exact over the whole int64 and uint64 range: JSON
      integers from -2^63 to 2^64-1 become msgpack integers; beyond that
      they are an error, never silently rounded.
    - Numbers with a fraction or an exponent are float64. Floats are printed
      with the fewest digits that read back to the same bits, always with a
      '.' or an exponent so they stay floats; NaN and infinities, which JSON
      cannot spell, print as null. A float32 prints as its shortest decimal
      and reads back as a float64.
    - msgpack bin prints as {"$bin": "<base64>"}; ext prints as
      {"$ext": [type, "<base64>"]}. On input an object with the one key
      "$bin" or "$ext" is read back the same way, and such an object of any
      other shape is an error.
    - A map key that is not a string prints as a string holding the key's
      own JSON text: {1: "a"} prints as {"1":"a"}.
    - Strings are printed as UTF-8; bytes that are not valid UTF-8 print as
      U+FFFD. Control characters (C0, DEL and the C1 U+0080 to U+009F) and
      the bidirectional overrides and isolates (U+202A to U+202E, U+2066 to
      U+2069) print as \u escapes, so that no output can act on a
      terminal. Input strings may hold \u0000.
    - Objects with a repeated key are refused on input, and so are values
      nested deeper than DP_JSON_MAX_DEPTH.

    Everything here is reentrant; nothing keeps global state.
*/
#ifndef DP_JSON_H_INCLUDED
#define DP_JSON_H_INCLUDED

#include <msgpack.h>
#include <stddef.h>

/*  Room for an error message from the functions below. */
#define DP_JSON_ERROR_SIZE 256

/*  The deepest nesting of arrays and objects accepted on input. Task
    arguments travel inside protocol messages limited to 32 levels, and a
    map's chunk wraps them in one more array, so deeper values could not
    be sent as task arguments. */
#define DP_JSON_MAX_DEPTH  31
#define DP_JSON_DEPTH_TEXT "31"

/*  A growable text buffer that JSON is appended to. Zeroed (or
    dp_json_buf_init) is empty; data is NUL-terminated once anything was
    appended. */
typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} dp_json_buf_t;

/*  Makes self an empty buffer that owns no memory. */
void
dp_json_buf_init (dp_json_buf_t *self);

/*  Empties self and keeps its memory for reuse. */
void
dp_json_buf_reset (dp_json_buf_t *self);

/*  Frees self's memory and leaves it empty. Harmless on an empty buffer. */
void
dp_json_buf_free (dp_json_buf_t *self);

/*  Appends size bytes. Returns 0, or -1 if out of memory (self unchanged). */
int
dp_json_buf_append (dp_json_buf_t *self, const char *data, size_t size);

/*  Appends data (size bytes, any content) as one JSON string literal with
    the escaping and UTF-8 repair described above. Returns 0 or -1 (out of
    memory). */
int
dp_json_append_string (dp_json_buf_t *out, const char *data, size_t size);

/*  Appends data (size bytes, any content, such as a name that came from
    the network) as text for people at a terminal: valid UTF-8 that prints
    stays as it is; a backslash prints as \\, newline, return and tab as
    \n, \r and \t, any other C0 control and DEL as \xNN, each byte that is
    not valid UTF-8 as \xNN, and the C1 controls and bidirectional
    overrides and isolates named above as \uNNNN. What it appends holds no
    byte below 0x20 and cannot move a terminal's cursor, clear its screen
    or start a line. out's data is NUL-terminated after it, even for empty
    text. Returns 0 or -1 (out of memory). */
int
dp_json_append_escaped (dp_json_buf_t *out, const char *data, size_t size);

/*  Appends the compact JSON text of object. Returns 0, or -1 if out of
    memory (out may then hold part of the text). */
int
dp_json_from_object (dp_json_buf_t *out, const msgpack_object *object);

/*  Appends the compact JSON text of the one msgpack item in data (size
    bytes). Returns 0, or -1 with a message in error (error_size bytes) if
    data is not exactly one well-formed item, or memory ran out. */
int
dp_json_from_msgpack (dp_json_buf_t *out, const void *data, size_t size, char *error,
                      size_t error_size);

/*  Parses text (size bytes, one JSON value with optional whitespace around
    it; it need not be NUL-terminated) and packs it with packer as one
    msgpack item. Returns 0, or -1 with a message in error naming the column
    (and the line, if the text has several) of the problem. On failure the
    packer may have been written to: pack into a scratch buffer, or cut the
    buffer back to its size before the call. */
int
dp_json_to_msgpack (msgpack_packer *packer, const char *text, size_t size, char *error,
                    size_t error_size);

/*  Writes the standard base64 text (with '=' padding) of data into out,
    which must hold dp_json_base64_size (size) bytes; NUL-terminates it and
    returns its length. */
size_t
dp_json_base64_encode (char *out, const void *data, size_t size);

/*  Bytes needed by dp_json_base64_encode for size bytes, NUL included. */
size_t
dp_json_base64_size (size_t size);

/*  Decodes standard base64 text (padding optional, no whitespace) into out,
    which must hold at least size * 3 / 4 + 3 bytes. Returns the number of
    bytes decoded, or -1 if text is not base64. */
long
dp_json_base64_decode (void *out, const char *text, size_t size);

#endif

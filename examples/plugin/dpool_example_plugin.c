/*  dpool_example_plugin.c - an example dpool plugin: task functions that any
    dpool-worker can offer without being rebuilt.

    How to write a plugin
    ---------------------
    1. Write task functions with the dpool_fn_t signature (include/dpool.h):

           int fn (dpool_task_t *task, const msgpack_object *args,
                   msgpack_packer *result);

       args are the task's unpacked msgpack arguments (valid during the
       call). Write exactly one msgpack object, the result, with the packer
       and return 0; or fail with: return dpool_task_fail (task, "why %d", n);
       the message reaches the caller with code DPOOL_EFAILED.

    2. Define the entry point, which registers each function by name and
       returns 0 (anything else refuses the load):

           int dpool_plugin_init (void);

       Names are global to the worker: prefix them ("example.add"). A
       plugin's registration replaces a built-in or an earlier plugin's
       function of the same name.

    3. Build a shared object with -fPIC that does NOT link libdpool: it
       takes dpool_register from the dpool-worker that loads it, so that its
       functions land in that program's registry. With CMake, an
       add_library (name MODULE ...) as in this directory's CMakeLists.txt;
       by hand:

           cc -shared -fPIC -I/path/to/dpool/include myplugin.c -o libmytasks.so

    4. Load it into every worker process:

           dpool-worker --connect tcp://head:5555 --plugin ./libmytasks.so

       dpool-worker opens it (RTLD_NOW | RTLD_GLOBAL: every symbol must
       resolve at once) and calls dpool_plugin_init before it forks its
       processes; their READY tells the broker the new names, and tasks
       naming them go to these workers.

    The functions here:
    example.add        [n, ...] -> the sum (an int if every n is an int and
                       the sum fits, else a float)
    example.upper      "text" -> "TEXT" (ASCII letters)
    example.wordcount  "text" -> {"bytes": b, "words": w, "lines": l}, as wc
*/
#include <dpool.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int dpool_plugin_init (void);

/*  Sums an array of numbers. Integers are added exactly while the sum fits
    an int64; otherwise, or once a float is seen, the sum is a float. */
static int
s_add (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_ARRAY)
        return dpool_task_fail (task, "%s: expected an array of numbers", dpool_task_name (task));
    int64_t exact = 0;
    double approx = 0;
    bool is_int = true;
    for (uint32_t i = 0; i < args->via.array.size; i++) {
        const msgpack_object *n = &args->via.array.ptr[i];
        double value;
        switch (n->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            value = (double)n->via.u64;
            if (is_int && (n->via.u64 > INT64_MAX ||
                           __builtin_add_overflow (exact, (int64_t)n->via.u64, &exact)))
                is_int = false;
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            value = (double)n->via.i64;
            if (is_int && __builtin_add_overflow (exact, n->via.i64, &exact))
                is_int = false;
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            value = n->via.f64;
            is_int = false;
            break;
        default:
            return dpool_task_fail (task, "%s: item %u is not a number", dpool_task_name (task),
                                    (unsigned)i);
        }
        approx += value;
    }
    return is_int ? msgpack_pack_int64 (result, exact) : msgpack_pack_double (result, approx);
}

/*  Upper-cases the ASCII letters of a str. */
static int
s_upper (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_STR)
        return dpool_task_fail (task, "%s: expected a str", dpool_task_name (task));
    uint32_t size = args->via.str.size;
    char *text = (char *)malloc (size ? size : 1);
    if (!text)
        return dpool_task_fail (task, "%s: out of memory", dpool_task_name (task));
    for (uint32_t i = 0; i < size; i++)
        text[i] = (char)toupper ((unsigned char)args->via.str.ptr[i]);
    int rc = msgpack_pack_str (result, size) || msgpack_pack_str_body (result, text, size);
    free (text);
    return rc ? dpool_task_fail (task, "%s: out of memory", dpool_task_name (task)) : 0;
}

static int
s_pack_key (msgpack_packer *pk, const char *key, uint64_t value)
{
    size_t len = strlen (key);
    return msgpack_pack_str (pk, len) || msgpack_pack_str_body (pk, key, len) ||
           msgpack_pack_uint64 (pk, value);
}

/*  Counts bytes, words (runs of non-space) and lines (newlines), as wc. */
static int
s_wordcount (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_STR)
        return dpool_task_fail (task, "%s: expected a str", dpool_task_name (task));
    uint64_t words = 0, lines = 0;
    bool in_word = false;
    for (uint32_t i = 0; i < args->via.str.size; i++) {
        unsigned char c = (unsigned char)args->via.str.ptr[i];
        if (c == '\n')
            lines++;
        if (isspace (c))
            in_word = false;
        else if (!in_word) {
            in_word = true;
            words++;
        }
    }
    if (msgpack_pack_map (result, 3) || s_pack_key (result, "bytes", args->via.str.size) ||
        s_pack_key (result, "words", words) || s_pack_key (result, "lines", lines))
        return dpool_task_fail (task, "%s: out of memory", dpool_task_name (task));
    return 0;
}

int
dpool_plugin_init (void)
{
    if (dpool_register ("example.add", s_add, NULL) ||
        dpool_register ("example.upper", s_upper, NULL) ||
        dpool_register ("example.wordcount", s_wordcount, NULL))
        return -1;
    return 0;
}

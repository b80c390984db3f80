/*  dp_util.h - small helpers every part of dpool shares: clocks, the
    thread-local error code, logging, random ids, names of this host.

    Logging goes to stderr, one line per event, at or above the level set by
    dp_log_set_level or the DPOOL_LOG environment variable (error, warn,
    info, debug; default warn). It is the one piece of global state here and
    is set once at start-up.
*/
#ifndef DP_UTIL_H_INCLUDED
#define DP_UTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Milliseconds on the monotonic clock. */
int64_t
dp_now_ms (void);

/*  Sets the calling thread's dpool error code (dpool_errno) and returns -1,
    so a failing call can end with: return dp_fail (DPOOL_EINVAL); */
int
dp_fail (int code);

/*  Sets the calling thread's error code and returns NULL. */
void *
dp_fail_null (int code);

/*  Writes a message, printf-style, into err (err_size bytes; nothing if
    err is NULL) and returns -1: how a call that explains its failure in a
    caller's buffer fails. */
int
dp_error_text (char *err, size_t err_size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

typedef enum {
    DP_LOG_ERROR = 0,
    DP_LOG_WARN = 1,
    DP_LOG_INFO = 2,
    DP_LOG_DEBUG = 3
} dp_log_level_t;

/*  Sets the level and the tag that starts every line (the program name). */
void
dp_log_set_level (int level);
void
dp_log_set_tag (const char *tag);

/*  Reads DPOOL_LOG once; returns the level now in force. */
int
dp_log_level (void);

/*  Parses "error", "warn", "info" or "debug"; -1 if none. */
int
dp_log_parse_level (const char *name);

void
dp_log (int level, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

#define dp_error(...) dp_log (DP_LOG_ERROR, __VA_ARGS__)
#define dp_warn(...)  dp_log (DP_LOG_WARN, __VA_ARGS__)
#define dp_info(...)  dp_log (DP_LOG_INFO, __VA_ARGS__)
#define dp_debug(...)                                                                             \
    do {                                                                                          \
        if (dp_log_level () >= DP_LOG_DEBUG)                                                      \
            dp_log (DP_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/*  Fills buf with size random bytes (getrandom, else /dev/urandom, else the
    clock and pid). */
void
dp_random_bytes (void *buf, size_t size);

/*  This host's name; never NULL. Borrowed, valid for the process. */
const char *
dp_hostname (void);

/*  Number of online CPUs, at least 1. */
int
dp_cpu_count (void);

/*  Parses a decimal integer in [min, max]; returns 0 and the value, or -1. */
int
dp_parse_int (const char *text, long min, long max, long *value);

/*  For a process that is dpool's for the rest of its life (the broker, a
    worker process): tells malloc to keep up to DP_MALLOC_KEEP bytes of
    freed memory and to serve blocks up to DP_MALLOC_HEAP_MAX from its heap,
    so that a stream of large messages reuses pages already mapped instead
    of faulting in fresh ones, each of which the kernel zeroes first. A
    no-op outside glibc. A client program's malloc is left as its own. */
#define DP_MALLOC_KEEP     (64L << 20)
#define DP_MALLOC_HEAP_MAX (32L << 20)
void
dp_malloc_keep (void);

/*  The CPU seconds (user + system) process pid has used, from
    /proc/pid/stat; -1 if it cannot be read. For the tests and the bench. */
double
dp_proc_cpu_seconds (int pid);

#endif

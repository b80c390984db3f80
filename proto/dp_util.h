/*  dp_util.h - small helpers every part of dpool shares: clocks, the
    thread-local error code, logging, random ids, names of this host, notes
    to the service manager.

    Logging writes one line per event at or above the level set by
    dp_log_set_level or the DPOOL_LOG environment variable (error, warn,
    info, debug; default warn). The line goes to stderr as text (the default:
    "2026-12-07T02:18:42.123+01:00 W dpool-broker[4242] message", RFC 3339
    time with the local zone's offset, the level's initial, the tag and pid)
    or as one JSON object ({"time", "level", "program", "pid", "message"});
    or the message goes to syslog(3) (facility daemon) or to the systemd
    journal, at its level's priority, with their own time stamps. Format and
    target come from dp_log_set_format and dp_log_set_target, else from
    DPOOL_LOG_FORMAT and DPOOL_LOG_TARGET. They are the one piece of global
    state here and are set once at start-up.
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

/*  Line formats on stderr, and where lines go. */
typedef enum { DP_LOG_TEXT = 0, DP_LOG_JSON = 1 } dp_log_format_t;
typedef enum { DP_LOG_STDERR = 0, DP_LOG_SYSLOG = 1, DP_LOG_JOURNALD = 2 } dp_log_target_t;

/*  The longest message, in bytes; a longer one is cut. */
#define DP_LOG_LINE 1024

/*  Parses "text" or "json"; -1 if none. */
int
dp_log_parse_format (const char *name);

/*  Parses "stderr", "syslog" or "journald"; -1 if none, or for journald
    in a build without libsystemd. */
int
dp_log_parse_target (const char *name);

/*  Sets the format of the lines on stderr (a dp_log_format_t). */
void
dp_log_set_format (int format);

/*  Sets where messages go (a dp_log_target_t); syslog is opened at once
    under the tag, which must be set before. */
void
dp_log_set_target (int target);

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

/*  Tells the service manager that started this process (systemd, through
    sd_notify and NOTIFY_SOCKET) of a change of state: "READY=1",
    "STOPPING=1", "STATUS=...". Does nothing when no service manager
    listens, or in a build without libsystemd. Returns 0, or -1 after
    logging why the note could not be sent. For the programs alone: a
    library must not speak for its host program. */
int
dp_service_notify (const char *state);

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

/*  For a process that gives memory back with malloc_trim (the broker):
    every thread allocates from glibc's main arena. malloc_trim shrinks
    only the main arena's top; a thread arena's top (where the ZeroMQ I/O
    thread's messages come from) would keep up to DP_MALLOC_KEEP after a
    burst. Call before any thread starts. A no-op outside glibc. */
void
dp_malloc_one_arena (void);

/*  The CPU seconds (user + system) process pid has used, from
    /proc/pid/stat; -1 if it cannot be read. For the tests and the bench. */
double
dp_proc_cpu_seconds (int pid);

#endif

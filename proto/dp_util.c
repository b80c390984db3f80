/*  dp_util.c - clocks, errors, logging, random ids, service notes. */
#define _GNU_SOURCE
#include "dp_util.h"

#include "dpool.h"

#ifdef DPOOL_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#endif

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static _Thread_local int s_errno;
static _Atomic int s_log_level = -1; /* read by every thread, set once */
static char s_log_tag[32] = "dpool";
static _Atomic int s_log_format = -1; /* likewise, from DPOOL_LOG_FORMAT */
static _Atomic int s_log_target = -1; /* likewise, from DPOOL_LOG_TARGET */

int64_t
dp_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
dp_fail (int code)
{
    s_errno = code;
    return -1;
}

void *
dp_fail_null (int code)
{
    s_errno = code;
    return NULL;
}

int
dpool_errno (void)
{
    return s_errno;
}

const char *
dpool_strerror (int code)
{
    switch (code) {
    case DPOOL_OK:
        return "success";
    case DPOOL_EFAILED:
        return "task failed";
    case DPOOL_ETIMEOUT:
        return "timed out waiting";
    case DPOOL_EDEADLINE:
        return "task ran past its timeout";
    case DPOOL_ECANCELLED:
        return "task cancelled";
    case DPOOL_ELOST:
        return "task lost: its workers died";
    case DPOOL_ENOFUNC:
        return "no worker offers this function";
    case DPOOL_EREJECTED:
        return "task rejected: broker queue full";
    case DPOOL_ECLOSED:
        return "pool is closed";
    case DPOOL_EINVAL:
        return "invalid argument";
    case DPOOL_ENOMEM:
        return "out of memory";
    case DPOOL_EAGAIN:
        return "would block";
    case DPOOL_EPROTO:
        return "protocol error";
    case DPOOL_ESTATE:
        return "not valid in this state";
    case DPOOL_ESYS:
        return "system call failed";
    case DPOOL_EEND:
        return "no more items";
    case DPOOL_EUNREACHABLE:
        return "broker unreachable";
    case DPOOL_EDENIED:
        return "denied by the broker's key configuration";
    case DPOOL_ENOENT:
        return "no such batch (collected, expired, or never made)";
    default:
        return "unknown error";
    }
}

/*  Finds name in names (count of them); -1 if it is not there. */
static int
s_lookup (const char *name, const char *const *names, int count)
{
    for (int i = 0; i < count; i++)
        if (name && strcmp (name, names[i]) == 0)
            return i;
    return -1;
}

static const char *const s_level_names[] = {"error", "warn", "info", "debug"};
static const char *const s_format_names[] = {"text", "json"};
static const char *const s_target_names[] = {"stderr", "syslog", "journald"};

int
dp_log_parse_level (const char *name)
{
    return s_lookup (name, s_level_names, 4);
}

int
dp_log_parse_format (const char *name)
{
    return s_lookup (name, s_format_names, 2);
}

int
dp_log_parse_target (const char *name)
{
    int target = s_lookup (name, s_target_names, 3);
#ifndef DPOOL_HAVE_SYSTEMD
    if (target == DP_LOG_JOURNALD)
        return -1;
#endif
    return target;
}

int
dp_log_level (void)
{
    if (s_log_level < 0) {
        int level = dp_log_parse_level (getenv ("DPOOL_LOG"));
        s_log_level = level >= 0 ? level : DP_LOG_WARN;
    }
    return s_log_level;
}

void
dp_log_set_level (int level)
{
    s_log_level = level;
}

void
dp_log_set_tag (const char *tag)
{
    snprintf (s_log_tag, sizeof s_log_tag, "%s", tag);
}

void
dp_log_set_format (int format)
{
    assert (format == DP_LOG_TEXT || format == DP_LOG_JSON);
    s_log_format = format;
}

void
dp_log_set_target (int target)
{
    assert (target >= DP_LOG_STDERR && target <= DP_LOG_JOURNALD);
    if (target == DP_LOG_SYSLOG)
        openlog (s_log_tag, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    s_log_target = target;
}

/*  The format and target in force: those set, else DPOOL_LOG_FORMAT's and
    DPOOL_LOG_TARGET's, else text on stderr. */
static int
s_log_format_now (void)
{
    if (s_log_format < 0) {
        int format = dp_log_parse_format (getenv ("DPOOL_LOG_FORMAT"));
        s_log_format = format >= 0 ? format : DP_LOG_TEXT;
    }
    return s_log_format;
}

static int
s_log_target_now (void)
{
    if (s_log_target < 0) {
        int target = dp_log_parse_target (getenv ("DPOOL_LOG_TARGET"));
        dp_log_set_target (target >= 0 ? target : DP_LOG_STDERR);
    }
    return s_log_target;
}

/*  Writes the wall-clock time now as RFC 3339 with milliseconds and the
    local zone's offset (2026-12-07T02:18:42.123+01:00) into stamp. */
static void
s_log_stamp (char *stamp, size_t size)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r (&ts.tv_sec, &tm);
    int offset = (int)(tm.tm_gmtoff / 60) % (24 * 60); /* minutes east of UTC */
    char sign = offset < 0 ? '-' : '+';
    if (offset < 0)
        offset = -offset;
    snprintf (stamp, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02d:%02d",
              (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
              tm.tm_sec, (int)(ts.tv_nsec / 1000000), sign, offset / 60, offset % 60);
}

/*  The length of the well-formed UTF-8 sequence at text (left bytes
    there), or 0 if it is not one. */
static size_t
s_utf8_length (const unsigned char *text, size_t left)
{
    size_t length = text[0] >= 0xF0 && text[0] <= 0xF4   ? 4
                    : text[0] >= 0xE0                    ? 3
                    : text[0] >= 0xC2 && text[0] <= 0xDF ? 2
                                                         : 0;
    if (length == 0 || length > left)
        return 0;
    for (size_t i = 1; i < length; i++)
        if ((text[i] & 0xC0) != 0x80)
            return 0;
    return length;
}

/*  Appends text to out (at *used of size bytes, always leaving room for a
    NUL) as the inside of a JSON string: quotes, backslashes and control
    characters escaped, and each byte that is not part of well-formed UTF-8
    as U+FFFD, so that the line parses whatever bytes the message held. */
static void
s_json_escape (char *out, size_t size, size_t *used, const char *text)
{
    const unsigned char *c = (const unsigned char *)text;
    size_t left = strlen (text);
    while (left > 0 && *used + 8 < size) {
        size_t length = *c < 0x80 ? 1 : s_utf8_length (c, left);
        if (*c == '"' || *c == '\\')
            *used += (size_t)snprintf (out + *used, size - *used, "\\%c", *c);
        else if (*c < 0x20)
            *used += (size_t)snprintf (out + *used, size - *used, "\\u%04x", *c);
        else if (length == 0)
            *used += (size_t)snprintf (out + *used, size - *used, "\\ufffd");
        else {
            memcpy (out + *used, c, length);
            *used += length;
        }
        length = length ? length : 1;
        c += length;
        left -= length;
    }
    out[*used] = '\0';
}

/*  Writes one line to stderr with one write, so that lines from many
    processes do not interleave. */
static void
s_log_write (char *line, size_t length, size_t size)
{
    if (length >= size - 1)
        length = size - 2;
    line[length++] = '\n';
    ssize_t rc = write (STDERR_FILENO, line, length);
    (void)rc;
}

/*  The text line: time, level's mark, program[pid], message. */
static void
s_log_text (int level, const char *stamp, const char *message)
{
    static const char *marks = "EWID";
    char line[DP_LOG_LINE + 128];
    int n = snprintf (line, sizeof line, "%s %c %s[%d] %s", stamp, marks[level & 3], s_log_tag,
                      (int)getpid (), message);
    s_log_write (line, (size_t)n, sizeof line);
}

/*  The JSON line: one object with time, level, program, pid and message. */
static void
s_log_json (int level, const char *stamp, const char *message)
{
    char line[DP_LOG_LINE * 6 + 256];
    size_t used = (size_t)snprintf (line, sizeof line,
                                    "{\"time\":\"%s\",\"level\":\"%s\","
                                    "\"program\":\"",
                                    stamp, s_level_names[level & 3]);
    s_json_escape (line, sizeof line, &used, s_log_tag);
    used += (size_t)snprintf (line + used, sizeof line - used, "\",\"pid\":%d,\"message\":\"",
                              (int)getpid ());
    s_json_escape (line, sizeof line, &used, message);
    used += (size_t)snprintf (line + used, sizeof line - used, "\"}");
    s_log_write (line, used, sizeof line);
}

/*  Hands a message to syslog or journald, at the priority of its level. */
static void
s_log_system (int target, int level, const char *message)
{
    static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    int priority = priorities[level & 3];
#ifdef DPOOL_HAVE_SYSTEMD
    if (target == DP_LOG_JOURNALD) {
        sd_journal_send ("MESSAGE=%s", message, "PRIORITY=%d", priority, "SYSLOG_IDENTIFIER=%s",
                         s_log_tag, NULL);
        return;
    }
#endif
    (void)target;
    syslog (priority, "%s", message);
}

void
dp_log (int level, const char *format, ...)
{
    if (level > dp_log_level ())
        return;
    char message[DP_LOG_LINE];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    int target = s_log_target_now ();
    if (target != DP_LOG_STDERR) {
        s_log_system (target, level, message);
        return;
    }
    char stamp[64];
    s_log_stamp (stamp, sizeof stamp);
    if (s_log_format_now () == DP_LOG_JSON)
        s_log_json (level, stamp, message);
    else
        s_log_text (level, stamp, message);
}

int
dp_service_notify (const char *state)
{
#ifdef DPOOL_HAVE_SYSTEMD
    int rc = sd_notify (0, state);
    if (rc < 0)
        dp_warn ("cannot tell the service manager %s: %s", state, strerror (-rc));
    return rc < 0 ? -1 : 0;
#else
    (void)state;
    return 0;
#endif
}

void
dp_random_bytes (void *buf, size_t size)
{
    uint8_t *out = (uint8_t *)buf;
    size_t got = 0;
    while (got < size) {
        ssize_t n = getrandom (out + got, size - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        got += (size_t)n;
    }
    if (got < size) {
        /*  No entropy source: good enough to tell sessions apart. */
        uint64_t x = (uint64_t)dp_now_ms () ^ ((uint64_t)getpid () << 32);
        for (size_t i = got; i < size; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out[i] = (uint8_t)x;
        }
    }
}

const char *
dp_hostname (void)
{
    static char name[256];
    if (!name[0] && gethostname (name, sizeof name - 1) != 0)
        snprintf (name, sizeof name, "localhost");
    return name;
}

int
dp_cpu_count (void)
{
    long n = sysconf (_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int
dp_parse_int (const char *text, long min, long max, long *value)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long v = strtol (text, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *value = v;
    return 0;
}

void
dp_malloc_keep (void)
{
#ifdef __GLIBC__
    /*  A fixed mmap threshold also stops glibc from moving it (and the trim
        threshold with it) as blocks come and go. */
    mallopt (M_MMAP_THRESHOLD, (int)DP_MALLOC_HEAP_MAX);
    mallopt (M_TRIM_THRESHOLD, (int)DP_MALLOC_KEEP);
    mallopt (M_TOP_PAD, (int)(DP_MALLOC_KEEP / 4));
#endif
}

void
dp_malloc_one_arena (void)
{
#ifdef __GLIBC__
    mallopt (M_ARENA_MAX, 1);
#endif
}

double
dp_proc_cpu_seconds (int pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/stat", pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    char line[1024];
    bool ok = fgets (line, sizeof line, file) != NULL;
    fclose (file);
    if (!ok)
        return -1;
    /*  The command name may hold spaces: fields count from after its ')'. */
    char *rest = strrchr (line, ')');
    if (!rest)
        return -1;
    unsigned long utime = 0, stime = 0;
    /*  Fields 3..13 are skipped; 14 is utime, 15 stime. */
    if (sscanf (rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) !=
        2)
        return -1;
    return (double)(utime + stime) / (double)sysconf (_SC_CLK_TCK);
}

int
dp_error_text (char *err, size_t err_size, const char *format, ...)
{
    if (err && err_size) {
        va_list args;
        va_start (args, format);
        vsnprintf (err, err_size, format, args);
        va_end (args);
    }
    return -1;
}

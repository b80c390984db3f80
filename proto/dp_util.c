/*  dp_util.c - clocks, errors, logging, random ids. */
#define _GNU_SOURCE
#include "dp_util.h"

#include "dpool.h"

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
#include <time.h>
#include <unistd.h>

static _Thread_local int s_errno;
static _Atomic int s_log_level = -1; /* read by every thread, set once */
static char s_log_tag[32] = "dpool";

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

int
dp_log_parse_level (const char *name)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp (name, names[i]) == 0)
            return i;
    return -1;
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
dp_log (int level, const char *format, ...)
{
    static const char *marks = "EWID";
    if (level > dp_log_level ())
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r (&ts.tv_sec, &tm);
    int n = snprintf (line, sizeof line, "%c %02d:%02d:%02d.%03ld %s[%d] ", marks[level & 3],
                      tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, s_log_tag,
                      (int)getpid ());
    va_list args;
    va_start (args, format);
    vsnprintf (line + n, sizeof line - (size_t)n - 1, format, args);
    va_end (args);
    size_t len = strlen (line);
    line[len++] = '\n';
    /*  One write per line, so lines from many processes do not interleave. */
    ssize_t rc = write (STDERR_FILENO, line, len);
    (void)rc;
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

/*  dp_cli_progress.c - the progress bar of `dpool map` on a terminal. The
    contract is in dp_cli_progress.h.
*/
#include "dp_cli_progress.h"

#include "dp_json.h"
#include "dp_util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BAR_WIDTH    20    /* cells of the bar itself */
#define DRAWN_MAX    1024  /* bytes of a drawn line */
#define DEFAULT_COLS 80    /* when the terminal does not say its width */
#define COUNT_CHUNK  65536 /* bytes read at once to count the input's lines */
#define ERASE_TO_END "\033[K"
#define PERCENT      100.0
#define MS_PER_S     1000.0
#define S_PER_M      60
#define S_PER_H      3600

struct _dp_cli_progress_t {
    size_t total; /* input lines, 0: not known */
    size_t done;
    size_t failed;
    int64_t started_ms;
    int64_t drawn_ms; /* when it was last drawn; 0: never */
    bool visible;     /* the bar is on the terminal's last line */
    bool finished;
    bool shares_stdout;    /* stdout is a terminal too: its results and the bar take turns */
    pthread_mutex_t mutex; /* guards report, which the pool's thread writes */
    char report[DP_CLI_PROGRESS_REPORT + 1];
};

/*  The lines of the regular file fd from its offset on (a last line
    without a newline counts), read with pread so that the offset stays;
    0 if it cannot tell. */
static size_t
s_count_lines (int fd)
{
    off_t offset = lseek (fd, 0, SEEK_CUR);
    if (offset < 0)
        return 0;
    char *chunk = (char *)malloc (COUNT_CHUNK);
    if (!chunk)
        return 0;
    size_t lines = 0;
    char last = '\n';
    ssize_t got;
    while ((got = pread (fd, chunk, COUNT_CHUNK, offset)) > 0) {
        for (ssize_t i = 0; i < got; i++)
            lines += chunk[i] == '\n';
        last = chunk[got - 1];
        offset += got;
    }
    free (chunk);
    return got < 0 ? 0 : lines + (last != '\n');
}

dp_cli_progress_t *
dp_cli_progress_new (bool quiet, int input_fd)
{
    if (quiet || !isatty (STDERR_FILENO))
        return NULL;
    dp_cli_progress_t *self = (dp_cli_progress_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    struct stat info;
    if (fstat (input_fd, &info) == 0 && S_ISREG (info.st_mode))
        self->total = s_count_lines (input_fd);
    self->started_ms = dp_now_ms ();
    self->shares_stdout = isatty (STDOUT_FILENO);
    pthread_mutex_init (&self->mutex, NULL);
    return self;
}

void
dp_cli_progress_destroy (dp_cli_progress_t **self_p)
{
    if (self_p && *self_p) {
        dp_cli_progress_t *self = *self_p;
        dp_cli_progress_finish (self);
        pthread_mutex_destroy (&self->mutex);
        free (self);
        *self_p = NULL;
    }
}

void
dp_cli_progress_count (dp_cli_progress_t *self, bool failed)
{
    if (!self)
        return;
    self->done++;
    self->failed += failed;
}

/*  The text of a report: "done/total (p%)" for a pair of whole numbers,
    else its JSON; escaped for a terminal, cut to fit the buffer. */
static void
s_report_text (const msgpack_object *value, char *text, size_t size)
{
    const msgpack_object *pair = value->type == MSGPACK_OBJECT_ARRAY && value->via.array.size == 2
                                     ? value->via.array.ptr
                                     : NULL;
    if (pair && pair[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        pair[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        uint64_t done = pair[0].via.u64, total = pair[1].via.u64;
        if (total > 0)
            snprintf (text, size, "%llu/%llu (%.0f%%)", (unsigned long long)done,
                      (unsigned long long)total, PERCENT * (double)done / (double)total);
        else
            snprintf (text, size, "%llu/%llu", (unsigned long long)done,
                      (unsigned long long)total);
        return;
    }
    dp_json_buf_t json, escaped;
    dp_json_buf_init (&json);
    dp_json_buf_init (&escaped);
    text[0] = '\0';
    if (dp_json_from_object (&json, value) == 0 &&
        dp_json_append_escaped (&escaped, json.data, json.size) == 0)
        snprintf (text, size, "%.*s", (int)escaped.size, escaped.data);
    dp_json_buf_free (&json);
    dp_json_buf_free (&escaped);
}

void
dp_cli_progress_on_report (dpool_result_t *result, size_t index, const msgpack_object *value,
                           void *arg)
{
    (void)result;
    (void)index;
    dp_cli_progress_t *self = (dp_cli_progress_t *)arg;
    char text[DP_CLI_PROGRESS_REPORT + 1];
    s_report_text (value, text, sizeof text);
    pthread_mutex_lock (&self->mutex);
    memcpy (self->report, text, sizeof text);
    pthread_mutex_unlock (&self->mutex);
}

/*  Seconds as M:SS, or H:MM:SS from an hour on. */
static void
s_duration (double seconds, char *text, size_t size)
{
    unsigned long s = seconds > 0 ? (unsigned long)(seconds + 0.5) : 0;
    if (s >= S_PER_H)
        snprintf (text, size, "%lu:%02lu:%02lu", s / S_PER_H, s % S_PER_H / S_PER_M, s % S_PER_M);
    else
        snprintf (text, size, "%lu:%02lu", s / S_PER_M, s % S_PER_M);
}

/*  Tasks a second since the start. */
static double
s_rate (const dp_cli_progress_t *self, int64_t now)
{
    double elapsed = (double)(now - self->started_ms) / MS_PER_S;
    return elapsed > 0 ? (double)self->done / elapsed : 0;
}

/*  "N/TOTAL [====>    ]  P%" with a total, else "N done". */
static int
s_format_count (const dp_cli_progress_t *self, char *line, size_t size)
{
    if (self->total == 0)
        return snprintf (line, size, "%zu done", self->done);
    size_t done = self->done < self->total ? self->done : self->total;
    size_t filled = done * BAR_WIDTH / self->total;
    char bar[BAR_WIDTH + 1];
    for (size_t i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled ? '=' : i == filled ? '>' : ' ';
    bar[BAR_WIDTH] = '\0';
    return snprintf (line, size, "%zu/%zu [%s] %.0f%%", self->done, self->total, bar,
                     PERCENT * (double)done / (double)self->total);
}

/*  The running line, without the carriage return:
        dpool map: 3/5 [============>       ] 60% 4.2/s ETA 0:01 failed 1 | 2/3 (67%)
    (without a total: "dpool map: 3 done 4.2/s failed 1 | ..."). */
static void
s_format_line (dp_cli_progress_t *self, int64_t now, char *line, size_t size)
{
    int n = snprintf (line, size, "dpool map: ");
    n += s_format_count (self, line + n, size - (size_t)n);
    double rate = s_rate (self, now);
    n += snprintf (line + n, size - (size_t)n, " %.1f/s", rate);
    if (self->total > self->done && rate > 0) {
        char eta[32];
        s_duration ((double)(self->total - self->done) / rate, eta, sizeof eta);
        n += snprintf (line + n, size - (size_t)n, " ETA %s", eta);
    }
    n += snprintf (line + n, size - (size_t)n, " failed %zu", self->failed);
    pthread_mutex_lock (&self->mutex);
    if (self->report[0])
        snprintf (line + n, size - (size_t)n, " | %s", self->report);
    pthread_mutex_unlock (&self->mutex);
}

/*  Cuts line to the terminal's width less one column, counting UTF-8
    characters (continuation bytes take no column). */
static void
s_fit (char *line)
{
    struct winsize window;
    size_t cols = DEFAULT_COLS;
    if (ioctl (STDERR_FILENO, TIOCGWINSZ, &window) == 0 && window.ws_col > 1)
        cols = window.ws_col;
    size_t used = 0;
    for (char *at = line; *at; at++) {
        if (((unsigned char)*at & 0xC0) == 0x80)
            continue;
        if (++used >= cols) {
            *at = '\0';
            return;
        }
    }
}

void
dp_cli_progress_tick (dp_cli_progress_t *self)
{
    if (!self || self->finished)
        return;
    int64_t now = dp_now_ms ();
    if (self->drawn_ms != 0 && now - self->drawn_ms < DP_CLI_PROGRESS_REDRAW_MS)
        return;
    if (self->shares_stdout) {
        /*  Results for the same terminal go out now, above the bar. */
        dp_cli_progress_hide (self);
        fflush (stdout);
    }
    char line[DRAWN_MAX];
    s_format_line (self, now, line, sizeof line);
    s_fit (line);
    fprintf (stderr, "\r%s" ERASE_TO_END, line);
    fflush (stderr);
    self->drawn_ms = now;
    self->visible = true;
}

void
dp_cli_progress_hide (dp_cli_progress_t *self)
{
    if (!self || !self->visible)
        return;
    fputs ("\r" ERASE_TO_END, stderr);
    fflush (stderr);
    self->visible = false;
}

bool
dp_cli_progress_shares_stdout (const dp_cli_progress_t *self)
{
    return self && self->shares_stdout;
}

void
dp_cli_progress_finish (dp_cli_progress_t *self)
{
    if (!self || self->finished)
        return;
    int64_t now = dp_now_ms ();
    char took[32];
    s_duration ((double)(now - self->started_ms) / MS_PER_S, took, sizeof took);
    char count[64];
    if (self->total > 0)
        snprintf (count, sizeof count, "%zu/%zu", self->done, self->total);
    else
        snprintf (count, sizeof count, "%zu", self->done);
    fprintf (stderr, "\rdpool map: %s done, %zu failed, in %s (%.1f/s)" ERASE_TO_END "\n", count,
             self->failed, took, s_rate (self, now));
    fflush (stderr);
    self->finished = true;
    self->visible = false;
}

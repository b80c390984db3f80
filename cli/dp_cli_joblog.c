/*  dp_cli_joblog.c - the joblog of dpool map --exec, as GNU parallel's
    --joblog: written line by line, read back by --resume. The contract is
    in dp_cli_exec.h.
*/
#include "dp_cli_exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOBLOG_HEADER        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"
#define JOBLOG_EXITVAL_FIELD 6 /* counted from 0 */
#define JOBLOG_SIGNAL_FIELD  7
#define US_PER_S             1000000.0

struct _dp_joblog_t {
    int fd;
    uint64_t *done; /* the seqs done, sorted, unique */
    size_t ndone;
    dp_json_buf_t pending; /* lines not yet written */
};

/*  Writes all of data to fd. Returns 0 or -1 with errno. */
static int
s_write_all (int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t put = write (fd, data, size);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return -1;
        data += put;
        size -= (size_t)put;
    }
    return 0;
}

/*  Field number index (from 0) of a tab-separated line, parsed as a
    decimal integer; returns 0 and *value, or -1 if absent or not one. */
static int
s_field (const char *line, const char *end, int index, long long *value)
{
    for (int i = 0; i < index; i++) {
        line = memchr (line, '\t', (size_t)(end - line));
        if (!line)
            return -1;
        line++;
    }
    char *stop;
    errno = 0;
    *value = strtoll (line, &stop, 10);
    if (errno || stop == line || (stop < end && *stop != '\t'))
        return -1;
    return 0;
}

static int
s_compare_seq (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*  Reads the seqs done from text (size bytes of whole lines), sorted and
    unique into self. Lines that do not parse (the header among them) are
    skipped. Returns 0 or -1 (out of memory). */
static int
s_read_done (dp_joblog_t *self, const char *text, size_t size, int mode)
{
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    self->done = malloc ((lines ? lines : 1) * sizeof *self->done);
    if (!self->done)
        return -1;
    const char *line = text, *stop = text + size;
    while (line < stop) {
        const char *end = memchr (line, '\n', (size_t)(stop - line));
        long long seq, exit_code, sig;
        if (s_field (line, end, 0, &seq) == 0 && seq > 0 &&
            s_field (line, end, JOBLOG_EXITVAL_FIELD, &exit_code) == 0 &&
            s_field (line, end, JOBLOG_SIGNAL_FIELD, &sig) == 0 &&
            (mode == DP_JOBLOG_RESUME || (exit_code == 0 && sig == 0)))
            self->done[self->ndone++] = (uint64_t)seq;
        line = end + 1;
    }
    qsort (self->done, self->ndone, sizeof *self->done, s_compare_seq);
    size_t kept = 0;
    for (size_t i = 0; i < self->ndone; i++)
        if (kept == 0 || self->done[kept - 1] != self->done[i])
            self->done[kept++] = self->done[i];
    self->ndone = kept;
    return 0;
}

/*  Reads the whole of fd (caller frees); NULL with errno on failure. */
static char *
s_read_all (int fd, size_t *size)
{
    struct stat info;
    if (fstat (fd, &info))
        return NULL;
    char *text = malloc ((size_t)info.st_size + 1);
    if (!text)
        return NULL;
    size_t got = 0;
    while (got < (size_t)info.st_size) {
        ssize_t n = pread (fd, text + got, (size_t)info.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    *size = got;
    return text;
}

/*  Reads the joblog to resume: the seqs done, and a half-written last line
    cut off (a header written if it is empty). Returns 0, or -1 with a
    message. */
static int
s_resume (dp_joblog_t *self, int mode, char *error, size_t error_size)
{
    size_t size = 0;
    char *text = s_read_all (self->fd, &size);
    if (!text) {
        snprintf (error, error_size, "cannot read it: %s", strerror (errno));
        return -1;
    }
    size_t whole = size;
    while (whole > 0 && text[whole - 1] != '\n')
        whole--;
    int rc = s_read_done (self, text, whole, mode);
    free (text);
    if (rc) {
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    if (whole < size && ftruncate (self->fd, (off_t)whole)) {
        snprintf (error, error_size, "cannot cut its half-written last line: %s",
                  strerror (errno));
        return -1;
    }
    if (whole == 0 && s_write_all (self->fd, JOBLOG_HEADER, strlen (JOBLOG_HEADER))) {
        snprintf (error, error_size, "cannot write it: %s", strerror (errno));
        return -1;
    }
    return 0;
}

dp_joblog_t *
dp_joblog_open (const char *path, int mode, char *error, size_t error_size)
{
    dp_joblog_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    dp_json_buf_init (&self->pending);
    int flags = O_CLOEXEC | O_CREAT | O_APPEND;
    flags |= mode == DP_JOBLOG_NEW ? O_WRONLY | O_TRUNC : O_RDWR;
    self->fd = open (path, flags, 0644);
    int rc = 0;
    if (self->fd < 0) {
        snprintf (error, error_size, "cannot open it: %s", strerror (errno));
        rc = -1;
    } else if (mode != DP_JOBLOG_NEW)
        rc = s_resume (self, mode, error, error_size);
    else if (s_write_all (self->fd, JOBLOG_HEADER, strlen (JOBLOG_HEADER))) {
        snprintf (error, error_size, "cannot write it: %s", strerror (errno));
        rc = -1;
    }
    if (rc)
        dp_joblog_destroy (&self);
    return self;
}

void
dp_joblog_destroy (dp_joblog_t **self_p)
{
    if (*self_p) {
        dp_joblog_t *self = *self_p;
        if (self->fd >= 0)
            close (self->fd);
        free (self->done);
        dp_json_buf_free (&self->pending);
        free (self);
        *self_p = NULL;
    }
}

bool
dp_joblog_done (const dp_joblog_t *self, uint64_t seq)
{
    return self->ndone > 0 &&
           bsearch (&seq, self->done, self->ndone, sizeof *self->done, s_compare_seq);
}

int
dp_joblog_add (dp_joblog_t *self, const dp_joblog_entry_t *entry)
{
    char head[256];
    int len = snprintf (head, sizeof head, "%" PRIu64 "\t", entry->seq);
    char times[256];
    int tlen = snprintf (times, sizeof times, "\t%.3f\t%10.3f\t%" PRIu64 "\t%" PRIu64 "\t%d\t%d\t",
                         (double)entry->start_us / US_PER_S, (double)entry->run_us / US_PER_S,
                         entry->sent, entry->received, entry->exit_code, entry->signal);
    return dp_json_buf_append (&self->pending, head, (size_t)len) ||
           dp_json_buf_append (&self->pending, entry->host, strlen (entry->host)) ||
           dp_json_buf_append (&self->pending, times, (size_t)tlen) ||
           dp_json_buf_append (&self->pending, entry->command, strlen (entry->command)) ||
           dp_json_buf_append (&self->pending, "\n", 1);
}

int
dp_joblog_flush (dp_joblog_t *self, char *error, size_t error_size)
{
    if (self->pending.size == 0)
        return 0;
    int rc = s_write_all (self->fd, self->pending.data, self->pending.size);
    if (rc)
        snprintf (error, error_size, "cannot write it: %s", strerror (errno));
    dp_json_buf_reset (&self->pending);
    return rc;
}

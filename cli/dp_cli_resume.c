/*  dp_cli_resume.c - dpool map FN --output FILE [--resume]: a map run as a
    detached batch (PROTOCOL.md 5.8), which a rerun after the command was
    killed (even with SIGKILL) continues: it submits only the input lines
    the broker holds no task for, and FILE ends with every result line
    exactly once, in input order.

    FILE is the record of what is done: its complete lines are the results
    of the first input lines (a last line cut short by a kill is cut off on
    resume). Its sidecar FILE.batch holds the batch's id and the input line
    its index 0 stands for (its base), written before the first task is
    submitted. A result is confirmed to the broker (dpool_batch_ack) only
    once its line is in FILE and synced, so a kill between the two leaves
    the broker holding a result FILE has, which the rerun skips (it reads
    from the index after FILE's last line). If the broker no longer holds
    the batch (collected, expired, or the broker restarted), the rerun
    starts a new one from the first input line FILE lacks.
*/
#include "dp_cli.h"
#include "dp_json.h"
#include "dpool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNC_EVERY   1000 /* result lines written between two syncs and confirmations */
#define STATE_SUFFIX ".batch"
#define ID_SIZE      16

typedef struct {
    dp_cli_t *cli;
    int fd;               /* FILE, written at its end */
    char state[4096 + 8]; /* FILE.batch */
    uint64_t lines;       /* complete lines in FILE: results of input lines 0 .. lines - 1 */
    uint64_t base;        /* the input line of the batch's index 0 */
    char id[ID_SIZE + 1]; /* the batch's, "" before there is one */
    dpool_batch_t *batch;
    dp_json_buf_t out; /* lines not yet written */
    size_t unsynced;   /* results in out or written since the last sync */
    bool failed;       /* a task failed */
} s_resume_t;

/*  Counts FILE's complete lines and cuts off a last line a kill left
    short. Returns 0, or -1 with errno. */
static int
s_count_lines (s_resume_t *self)
{
    char buffer[65536];
    off_t at = 0, end_of_line = 0;
    ssize_t got;
    while ((got = pread (self->fd, buffer, sizeof buffer, at)) > 0) {
        for (ssize_t i = 0; i < got; i++)
            if (buffer[i] == '\n') {
                self->lines++;
                end_of_line = at + i + 1;
            }
        at += got;
    }
    if (got < 0)
        return -1;
    if (end_of_line < at && ftruncate (self->fd, end_of_line) != 0)
        return -1;
    return lseek (self->fd, end_of_line, SEEK_SET) < 0 ? -1 : 0;
}

/*  Reads FILE.batch ("ID BASE\n") if there is one. Returns 0, or -1 if it
    is not readable as such. */
static int
s_state_read (s_resume_t *self)
{
    FILE *file = fopen (self->state, "r");
    if (!file)
        return errno == ENOENT ? 0 : -1;
    unsigned long long base;
    int n = fscanf (file, "%16s %llu", self->id, &base);
    fclose (file);
    if (n != 2 || strlen (self->id) != ID_SIZE)
        return -1;
    self->base = base;
    return 0;
}

/*  Writes FILE.batch whole (a new file renamed over the old) and syncs it. */
static int
s_state_write (s_resume_t *self)
{
    char tmp[sizeof self->state + 8];
    snprintf (tmp, sizeof tmp, "%s.tmp", self->state);
    FILE *file = fopen (tmp, "w");
    if (!file)
        return -1;
    int rc = fprintf (file, "%s %llu\n", self->id, (unsigned long long)self->base) < 0 ? -1 : 0;
    if (fflush (file) != 0 || fsync (fileno (file)) != 0)
        rc = -1;
    if (fclose (file) != 0)
        rc = -1;
    if (rc == 0 && rename (tmp, self->state) != 0)
        rc = -1;
    return rc;
}

/*  The batch to continue (the broker still holds it), or a new one whose
    index 0 is the first input line FILE lacks. Returns 0, or the exit
    status after a message. */
static int
s_open_batch (s_resume_t *self)
{
    const char *fn = self->cli->args[0];
    dpool_batch_options_t options = {.name = self->cli->options.output,
                                     .timeout_ms = (int)self->cli->options.timeout_ms};
    if (self->id[0]) {
        options.id = self->id;
        self->batch = dpool_batch_new (self->cli->pool, fn, &options);
        dpool_batch_info_t info;
        if (self->batch && dpool_batch_info (self->batch, &info) == 0 && self->lines >= self->base)
            return 0;
        if (self->batch && dpool_errno () != DPOOL_ENOENT) {
            fprintf (stderr, "dpool map: batch %s: %s\n", self->id,
                     dpool_batch_error (self->batch) ? dpool_batch_error (self->batch)
                                                     : dpool_strerror (dpool_errno ()));
            return EXIT_ERROR;
        }
        dpool_batch_destroy (&self->batch);
        options.id = NULL; /* gone: start again after what FILE has */
    }
    self->batch = dpool_batch_new (self->cli->pool, fn, &options);
    if (!self->batch) {
        fprintf (stderr, "dpool map: %s\n", dpool_strerror (dpool_errno ()));
        return EXIT_ERROR;
    }
    snprintf (self->id, sizeof self->id, "%s", dpool_batch_id (self->batch));
    self->base = self->lines;
    if (s_state_write (self) != 0) {
        fprintf (stderr, "dpool map: %s: %s\n", self->state, strerror (errno));
        return EXIT_ERROR;
    }
    return 0;
}

/*  Submits the input lines from the batch's first missing task on. */
static int
s_submit (s_resume_t *self)
{
    uint64_t skip = self->base + dpool_batch_added (self->batch);
    int rc = dp_cli_batch_add_lines (self->batch, skip, "map");
    if (rc == 0 && dpool_batch_submit (self->batch))
        rc = -1;
    if (rc < 0) {
        const char *why = dpool_batch_error (self->batch);
        fprintf (stderr, "dpool map: submitting: %s: %s\n", dp_cli_code_name (dpool_errno ()),
                 why ? why : dpool_strerror (dpool_errno ()));
        rc = dpool_errno () == DPOOL_EDENIED ? EXIT_DENIED : EXIT_ERROR;
    }
    return rc;
}

/*  Writes the lines held, syncs FILE, and only then confirms them to the
    broker. Returns 0, or the exit status after a message. */
static int
s_commit (s_resume_t *self)
{
    size_t at = 0;
    while (at < self->out.size) {
        ssize_t put = write (self->fd, self->out.data + at, self->out.size - at);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0) {
            fprintf (stderr, "dpool map: %s: %s\n", self->cli->options.output, strerror (errno));
            return EXIT_ERROR;
        }
        at += (size_t)put;
    }
    dp_json_buf_reset (&self->out);
    if (self->unsynced == 0)
        return 0;
    if (fdatasync (self->fd) != 0 || dpool_batch_ack (self->batch) != 0) {
        fprintf (stderr, "dpool map: confirming results: %s\n", strerror (errno));
        return EXIT_ERROR;
    }
    self->unsynced = 0;
    return 0;
}

/*  Appends one result's line (as dpool results prints it). */
static int
s_append (s_resume_t *self, const dpool_batch_result_t *result)
{
    char error[DP_JSON_ERROR_SIZE];
    int rc;
    if (result->code == 0)
        rc = dp_json_from_msgpack (&self->out, result->value, result->size, error, sizeof error);
    else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        bool str = msgpack_unpack_next (&unpacked, result->value, result->size, NULL) ==
                       MSGPACK_UNPACK_SUCCESS &&
                   unpacked.data.type == MSGPACK_OBJECT_STR;
        rc = dp_cli_append_failure (&self->out, result->code, str ? unpacked.data.via.str.ptr : "",
                                    str ? unpacked.data.via.str.size : 0);
        msgpack_unpacked_destroy (&unpacked);
        self->failed = true;
    }
    return rc || dp_json_buf_append (&self->out, "\n", 1) ? -1 : 0;
}

/*  Reads the results FILE lacks, in order, into FILE. */
static int
s_collect (s_resume_t *self)
{
    dpool_batch_seek (self->batch, self->lines - self->base);
    for (;;) {
        dpool_batch_result_t result;
        int rc = dpool_batch_next (self->batch, 0, &result);
        if (rc != 0 && dpool_errno () == DPOOL_ETIMEOUT) {
            if ((rc = s_commit (self)) != 0)
                return rc;
            rc = dpool_batch_next (self->batch, -1, &result);
        }
        if (rc != 0 && dpool_errno () == DPOOL_EEND)
            return s_commit (self);
        if (rc != 0) {
            fprintf (stderr, "dpool map: results: %s\n",
                     dp_cli_signal () ? "interrupted" : dpool_strerror (dpool_errno ()));
            return dp_cli_signal () ? EXIT_SIGNAL_BASE + dp_cli_signal () : EXIT_UNREACHABLE;
        }
        if (s_append (self, &result) != 0)
            return EXIT_ERROR;
        if (++self->unsynced >= SYNC_EVERY && (rc = s_commit (self)) != 0)
            return rc;
    }
}

int
dp_cli_map_resume_run (dp_cli_t *cli)
{
    s_resume_t self = {.cli = cli};
    const char *path = cli->options.output;
    snprintf (self.state, sizeof self.state, "%s%s", path, STATE_SUFFIX);
    int flags = O_RDWR | O_CREAT | (cli->options.resume ? 0 : O_EXCL);
    self.fd = open (path, flags, 0644);
    if (self.fd < 0) {
        fprintf (stderr, "dpool map: --output %s: %s%s\n", path, strerror (errno),
                 errno == EEXIST ? " (--resume continues it)" : "");
        return EXIT_ERROR;
    }
    if (s_count_lines (&self) != 0 || s_state_read (&self) != 0) {
        fprintf (stderr, "dpool map: --output %s: cannot read it, or %s\n", path, self.state);
        close (self.fd);
        return EXIT_ERROR;
    }
    dp_json_buf_init (&self.out);
    int rc = dp_cli_connect (cli);
    if (rc < 0)
        rc = s_open_batch (&self);
    if (rc == 0)
        rc = s_submit (&self);
    if (rc == 0)
        rc = s_collect (&self);
    if (rc == 0) {
        unlink (self.state); /* done: every line is in FILE */
        rc = self.failed ? EXIT_TASK_FAILED : EXIT_OK;
    }
    dpool_batch_destroy (&self.batch);
    dp_json_buf_free (&self.out);
    close (self.fd);
    if (cli->pool)
        dp_cli_disconnect (cli, false);
    return rc;
}

/*  cmd_map.c - dpool map FN: every line of stdin, one JSON value each, runs
    as a task, and the results print one line each, in input order.

    Input is read by a line reader of its own and submitted in batches, each
    one imap, with up to MAP_WINDOW batches in flight; results are printed
    from the oldest batch as they come, so any number of lines runs in
    bounded memory. One loop on the command's thread does both, never
    waiting long on one while the other may have work.
*/
#include "dp_cli.h"
#include "dp_cli_exec.h"
#include "dp_cli_progress.h"
#include "dp_exec.h"
#include "dp_json.h"
#include "dp_util.h"
#include "dpool.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char dp_cli_help_map[] =
    "usage: dpool map FN [--connect EP] [--chunksize N] [--timeout-ms N]\n"
    "                    < args.jsonl > results.jsonl\n"
    "       dpool map FN --output results.jsonl [--resume] < args.jsonl\n"
    "       dpool map --exec [OPTIONS] [--] CMD [ARG...] < lines\n"
    "\n"
    "Runs the function FN once for every line of standard input and prints one line\n"
    "of compact JSON for each: output line i is the result for input line i, in input\n"
    "order. Input is streamed in batches and results are printed as they arrive, so\n"
    "any number of lines runs in bounded memory.\n"
    "\n"
    "Input: each line holds one JSON value, FN's arguments (several go in an array).\n"
    "A blank line or invalid JSON is an error: the lines before it still run and\n"
    "print, then dpool names the line on stderr and exits with status 4.\n"
    "\n"
    "Failures: the line of a task that failed is, exactly,\n"
    "  {\"dpool_error\":{\"code\":\"EFAILED\",\"message\":\"...\"}}\n"
    "where code names the cause: EFAILED (FN reported failure; the message is its\n"
    "own), EDEADLINE (it ran past --timeout-ms), ELOST (the workers running it kept\n"
    "dying), ENOFUNC (no worker offers FN), ECANCELLED, EREJECTED (the broker's\n"
    "queue is full) or EINVAL (the worker could not read the arguments). The other\n"
    "lines are unaffected; the exit status is then 1.\n"
    "\n"
    "JSON and msgpack: integers are exact over the int64 and uint64 ranges; floats\n"
    "keep their value; msgpack bin is {\"$bin\":\"<base64>\"} and ext is\n"
    "{\"$ext\":[type,\"<base64>\"]}, both ways; a map key that is not a string prints as\n"
    "its JSON text; NaN and infinities print as null. Input nested deeper than\n"
    "31 arrays or objects is refused (task arguments cannot be deeper).\n"
    "\n"
    "Options:\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --chunksize N            tasks sent to a worker together; 0 chooses from the\n"
    "                           batch and the workers, as Pool does (1 with\n"
    "                           --timeout-ms) [DPOOL_CHUNKSIZE; 0]\n"
    "  --timeout-ms N           time limit of each task, 0 for none; a chunk is timed\n"
    "                           as one task [DPOOL_TIMEOUT_MS; 0]\n"
    "  --batch N                input lines submitted together; up to 4 batches are\n"
    "                           in flight at once [DPOOL_BATCH; 1000]\n"
    "  --connect-timeout-ms N   how long the broker has to answer, at the start and\n"
    "                           whenever results stop coming\n"
    "                           [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "  --output FILE            write the results to FILE (a new file), running the\n"
    "                           map as a detached batch (dpool submit) whose id is\n"
    "                           kept in FILE.batch until the map is done\n"
    "  --resume                 with --output: continue the map FILE holds, after\n"
    "                           the command was killed: only the input lines the\n"
    "                           broker holds no task for are submitted, and FILE\n"
    "                           ends with every result line exactly once\n"
    "  --quiet                  draw no progress bar [DPOOL_QUIET; off]\n"
    "\n"
    "Progress: when stderr is a terminal, a line there shows the lines done (out of\n"
    "the total when stdin is a file, counted first), the rate, the time left, the\n"
    "failures so far and the latest progress report of a running task\n"
    "(dpool_task_progress), redrawn up to ten times a second, then a last line of\n"
    "totals. Nothing of it is written when stderr is not a terminal, or with\n"
    "--quiet.\n"
    "\n"
    "Shell commands (--exec): CMD runs once per input line on a worker that allows\n"
    "it (dpool-worker --allow-exec), with the line in place of every {} in its\n"
    "words; when no word holds {}, the line and a newline are its stdin (else stdin\n"
    "is /dev/null). Options end at CMD (or at --). Each command's stdout is printed\n"
    "as it is, in input order (as parallel -k), and its stderr goes to stderr. A\n"
    "command fails when it exits non-zero, is killed, times out or cannot run on any\n"
    "worker; each failure is noted on stderr, e.g.\n"
    "  dpool map: line 3: exit 2: grep x file3\n"
    "and the exit status is then 1. A missing program exits 127, as in a shell.\n"
    "With --json each line of stdout is instead one record:\n"
    "  {\"seq\":3,\"command\":\"grep x file3\",\"exit\":2,\"signal\":0,\"timeout\":false,\n"
    "   \"stdout\":\"...\",\"stderr\":\"...\",\"stdout_cut\":0,\"stderr_cut\":0,\n"
    "   \"host\":\"node1\",\"start\":1712345678.123456,\"runtime\":0.004211}\n"
    "(exit is -1 when a signal ended it; output that is not UTF-8 is {\"$bin\":...};\n"
    "a line that never ran is {\"seq\":..,\"command\":..,\"dpool_error\":{...}}).\n"
    "  --exec                   run CMD, as above (no variable turns it on)\n"
    "  --json                   print one JSON record per command [DPOOL_JSON; off]\n"
    "  --timeout-ms N           with --exec, the command's own limit: its process\n"
    "                           group gets SIGTERM, then SIGKILL 1 s later; the\n"
    "                           worker lives on [DPOOL_TIMEOUT_MS; 0, none]\n"
    "  --max-output N           bytes kept of each command's stdout, and of its\n"
    "                           stderr, up to 16777216; the rest is counted and\n"
    "                           noted as cut [DPOOL_MAX_OUTPUT; 1048576]\n"
    "  --joblog FILE            GNU parallel's joblog: a header, then per command\n"
    "                           that ran, tab-separated, Seq Host Starttime\n"
    "                           JobRuntime Send Receive Exitval Signal Command; a\n"
    "                           line is written once its output is [DPOOL_JOBLOG]\n"
    "  --resume                 with --joblog: skip the input lines (Seq) it holds,\n"
    "                           whatever their exit, and append [DPOOL_RESUME; off]\n"
    "  --resume-failed          the same, but run the lines that failed again\n"
    "                           [DPOOL_RESUME_FAILED; off]\n"
    "--chunksize defaults to 1 with --exec.\n"
    "\n"
    "SIGINT or SIGTERM ends it at once with exit status 128 + the signal's number:\n"
    "the results printed so far stay, no more are printed, and the broker forgets\n"
    "the session and the tasks it still queues (those already running run to their\n"
    "end, and their results are dropped).\n"
    "\n"
    "Exit status: 0 every task succeeded, 1 a task failed, 2 bad usage, 3 the broker\n"
    "could not be reached (or stopped answering), 4 invalid input or another error,\n"
    "5 the broker's key configuration denies this key the right to submit (EDENIED),\n"
    "128 + N ended by signal N.\n";

#define MAP_WINDOW      4                  /* batches in flight at once */
#define MAP_BATCH_BYTES (8 * 1024 * 1024)  /* a batch is sent once its arguments reach this */
#define MAP_LINGER_MS   20                 /* a partial batch waits this long for more lines */
#define MAX_LINE        (64 * 1024 * 1024) /* longest input line (a message's limit) */
#define MAX_ARGS_SIZE   (64 * 1024 * 1024 - 128 * 1024) /* packed arguments of one task */
#define READ_CHUNK      65536                           /* bytes read from stdin at once */
#define STDOUT_BUFFER   65536 /* stdout is written in blocks of this size */

/*  ---------------------------------------------------------------------------
    map: a line reader on stdin, batches in flight, results in order.
*/
enum { READ_LINE, READ_AGAIN, READ_EOF, READ_ERROR, READ_TOO_LONG };

typedef struct {
    int fd;
    char *data;
    size_t start, end, capacity;
    bool eof;
} s_reader_t;

/*  Returns the next line of the reader's fd in *line and *len (without its
    newline; valid until the next call): READ_LINE. Waits up to timeout_ms
    (-1: no limit) for the first new bytes, then takes only what is already
    there: READ_AGAIN if no whole line is. READ_EOF at the end (a last line
    without a newline is still a line), READ_ERROR with errno set, or
    READ_TOO_LONG for a line over MAX_LINE bytes. */
static int
s_reader_next (s_reader_t *self, int timeout_ms, const char **line, size_t *len)
{
    for (;;) {
        char *begin = self->data ? self->data + self->start : NULL; /* none read yet */
        char *newline =
            self->end > self->start ? memchr (begin, '\n', self->end - self->start) : NULL;
        if (newline || (self->eof && self->end > self->start)) {
            char *stop = newline ? newline : self->data + self->end;
            *line = begin;
            *len = (size_t)(stop - begin);
            self->start = newline ? (size_t)(newline + 1 - self->data) : self->end;
            return READ_LINE;
        }
        if (self->eof)
            return READ_EOF;
        if (self->end - self->start > MAX_LINE)
            return READ_TOO_LONG;
        if (self->start > 0) {
            memmove (self->data, begin, self->end - self->start);
            self->end -= self->start;
            self->start = 0;
        }
        if (self->capacity - self->end < READ_CHUNK) {
            size_t capacity = self->capacity ? self->capacity * 2 : READ_CHUNK * 2;
            char *data = realloc (self->data, capacity);
            if (!data) {
                errno = ENOMEM;
                return READ_ERROR;
            }
            self->data = data;
            self->capacity = capacity;
        }
        struct pollfd poller = {.fd = self->fd, .events = POLLIN};
        int ready = poll (&poller, 1, timeout_ms);
        if (ready == 0 || (ready < 0 && errno == EINTR))
            return READ_AGAIN;
        if (ready < 0)
            return READ_ERROR;
        ssize_t got = read (self->fd, self->data + self->end, self->capacity - self->end);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            return READ_AGAIN;
        if (got < 0)
            return READ_ERROR;
        if (got == 0)
            self->eof = true;
        self->end += (size_t)got;
        timeout_ms = 0;
    }
}

/*  A batch of input lines, submitted as one imap. */
typedef struct {
    dpool_iter_t *iter;
    size_t first_line; /* the input line of its first task */
    size_t count;      /* tasks in it */
    size_t printed;    /* results printed so far */
} s_batch_t;

typedef struct {
    dp_cli_t *cli;
    s_reader_t reader;
    size_t line_no;          /* input lines read */
    msgpack_sbuffer pending; /* the next batch's arguments, back to back */
    msgpack_packer packer;
    size_t pending_count;
    size_t pending_first;     /* the input line of its first task */
    int64_t pending_since_ms; /* when its first line was read */
    s_batch_t window[MAP_WINDOW];
    size_t first, nbatches; /* a ring of batches in flight, oldest first */
    bool input_done;
    int input_error; /* EXIT_ERROR once the input went wrong */
    int fatal;       /* an exit status that ends the map at once */
    bool failed;     /* a task failed */
    bool denied;     /* a task was refused: EDENIED, the key may not submit */
    dp_json_buf_t out;
    dp_cli_exec_t *exec;         /* with --exec: the lines feed a command */
    dp_cli_progress_t *progress; /* the bar on stderr; NULL: none */
} s_map_t;

/*  True if line holds nothing but JSON whitespace. */
static bool
s_blank (const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr (" \t\r", line[i]))
            return false;
    return true;
}

/*  Ends the input: prints a message about it on stderr, and makes the map
    end with EXIT_ERROR once the lines before are done. */
static void
s_map_input_error (s_map_t *self, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_map_input_error (s_map_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    dp_cli_progress_hide (self->progress);
    fprintf (stderr, "dpool map: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    self->input_done = true;
    self->input_error = EXIT_ERROR;
}

/*  The chunksize to map with: as asked, else 1 when tasks have a time
    limit (a chunk is timed as a whole) or are commands (each worth its
    own message), else 0 for the library's choice. */
static size_t
s_map_chunksize (const s_map_t *self)
{
    const dp_cli_t *cli = self->cli;
    if (cli->options.chunksize == 0 && (cli->options.timeout_ms > 0 || self->exec))
        return 1;
    return (size_t)cli->options.chunksize;
}

/*  Submits the pending batch as one imap. Returns 0, or -1 with
    self->fatal set. */
static int
s_map_submit (s_map_t *self)
{
    dp_cli_t *cli = self->cli;
    const char *fn = self->exec ? DP_EXEC_FN : cli->args[0];
    dpool_call_t call = {.progress = dp_cli_progress_on_report, .arg = self->progress};
    dpool_iter_t *iter = dpool_pool_imap (cli->pool, fn, self->pending.data, self->pending.size,
                                          s_map_chunksize (self), self->progress ? &call : NULL);
    if (!iter) {
        int code = dpool_errno ();
        dp_cli_progress_hide (self->progress);
        fprintf (stderr, "dpool map: cannot submit lines %zu to %zu: %s\n", self->pending_first,
                 self->line_no, dpool_strerror (code));
        self->fatal = code == DPOOL_EUNREACHABLE ? EXIT_UNREACHABLE : EXIT_ERROR;
        return -1;
    }
    s_batch_t *batch = &self->window[(self->first + self->nbatches) % MAP_WINDOW];
    batch->iter = iter;
    batch->first_line = self->pending_first;
    batch->count = self->pending_count;
    batch->printed = 0;
    self->nbatches++;
    msgpack_sbuffer_clear (&self->pending);
    self->pending_count = 0;
    return 0;
}

/*  Packs the arguments of input line line_no into the pending batch: its
    JSON, or with --exec its command. Returns DP_CLI_EXEC_PACKED,
    DP_CLI_EXEC_SKIPPED (a line --resume skips), or -1 after ending the
    input with a message. */
static int
s_map_pack_line (s_map_t *self, const char *line, size_t len, size_t line_no)
{
    if (!self->exec && s_blank (line, len)) {
        s_map_input_error (self, "line %zu: blank line (each line must hold one JSON value)",
                           line_no);
        return -1;
    }
    size_t before = self->pending.size;
    char error[DP_JSON_ERROR_SIZE];
    int rc = self->exec ? dp_cli_exec_pack (self->exec, line_no, line, len, &self->packer, error,
                                            sizeof error)
                        : dp_json_to_msgpack (&self->packer, line, len, error, sizeof error);
    if (rc < 0) {
        self->pending.size = before;
        s_map_input_error (self, "line %zu: %s", line_no, error);
        return -1;
    }
    if (self->pending.size - before > MAX_ARGS_SIZE) {
        self->pending.size = before;
        if (self->exec)
            dp_cli_exec_unpack (self->exec);
        s_map_input_error (self, "line %zu: its arguments take more than %d bytes", line_no,
                           MAX_ARGS_SIZE);
        return -1;
    }
    return rc;
}

/*  Reads the input lines available now (waiting up to wait_ms for the
    first) into the pending batch, and submits it when it is full, the input
    ended, or it waited MAP_LINGER_MS for more. Returns true if it did
    anything. */
static bool
s_map_read (s_map_t *self, int wait_ms)
{
    bool progress = false;
    size_t batch_max = (size_t)self->cli->options.batch;
    while (!self->input_done && self->pending_count < batch_max &&
           self->pending.size < MAP_BATCH_BYTES) {
        const char *line;
        size_t len;
        int rc = s_reader_next (&self->reader, wait_ms, &line, &len);
        wait_ms = 0;
        if (rc == READ_AGAIN)
            break;
        progress = true;
        if (rc == READ_EOF) {
            self->input_done = true;
            break;
        }
        size_t line_no = self->line_no + 1;
        if (rc == READ_TOO_LONG) {
            s_map_input_error (self, "line %zu: longer than %d bytes", line_no, MAX_LINE);
            break;
        }
        if (rc != READ_LINE) {
            s_map_input_error (self, "reading stdin: %s", strerror (errno));
            break;
        }
        rc = s_map_pack_line (self, line, len, line_no);
        if (rc < 0)
            break;
        self->line_no = line_no;
        if (rc == DP_CLI_EXEC_SKIPPED) {
            dp_cli_progress_count (self->progress, false);
            continue;
        }
        if (self->pending_count++ == 0) {
            self->pending_since_ms = dp_now_ms ();
            self->pending_first = line_no;
        }
    }
    if (self->pending_count > 0 && (self->input_done || self->pending_count >= batch_max ||
                                    self->pending.size >= MAP_BATCH_BYTES ||
                                    dp_now_ms () - self->pending_since_ms >= MAP_LINGER_MS)) {
        s_map_submit (self);
        progress = true;
    }
    return progress;
}

/*  Prints one result: its JSON line, or with --exec its command's
    output. Returns 0, or -1 after a message. */
static int
s_map_print_one (s_map_t *self, dpool_result_t *item)
{
    if (self->exec) {
        dp_cli_progress_hide (self->progress); /* the command's stderr may follow */
        int rc = dp_cli_exec_print (self->exec, item);
        self->failed |= rc == 1;
        dp_cli_progress_count (self->progress, rc == 1);
        return rc < 0 ? -1 : 0;
    }
    bool error = false;
    dp_json_buf_reset (&self->out);
    bool succeeded = dp_cli_append_outcome (&self->out, item, &error);
    dp_cli_progress_count (self->progress, !succeeded);
    if (!succeeded) {
        self->failed = true;
        self->denied |= dpool_result_code (item) == DPOOL_EDENIED;
    }
    if (error || fwrite (self->out.data, 1, self->out.size, stdout) != self->out.size) {
        fprintf (stderr, "dpool map: writing results: %s\n", strerror (errno));
        return -1;
    }
    return 0;
}

/*  Prints the results of the oldest batches that are ready, waiting up to
    wait_ms for the first. Returns true if it printed anything. With
    --exec, what it printed is then synced (the joblog after stdout). */
static bool
s_map_print (s_map_t *self, int wait_ms)
{
    bool progress = false;
    while (self->nbatches > 0) {
        s_batch_t *batch = &self->window[self->first];
        dpool_result_t *item =
            batch->printed < batch->count ? dpool_iter_next (batch->iter, wait_ms) : NULL;
        wait_ms = 0;
        if (!item && batch->printed < batch->count) {
            int code = dpool_errno ();
            if (code == DPOOL_ETIMEOUT || code == DPOOL_EAGAIN)
                break;
            /*  The iterator ended early: name the lines left without. */
            dp_cli_progress_hide (self->progress);
            fprintf (stderr, "dpool map: no results for lines %zu to %zu: %s\n",
                     batch->first_line + batch->printed, batch->first_line + batch->count - 1,
                     dpool_strerror (code));
            self->fatal = EXIT_ERROR;
            break;
        }
        if (item && dp_cli_signal ()) {
            /*  Cancelled by the signal's terminate: not a result to print. */
            dpool_result_destroy (&item);
            break;
        }
        if (item) {
            int rc = s_map_print_one (self, item);
            dpool_result_destroy (&item);
            if (rc) {
                self->fatal = EXIT_ERROR;
                break;
            }
            batch->printed++;
            progress = true;
            self->cli->last_heard_ms = dp_now_ms ();
        }
        if (batch->printed == batch->count) {
            dpool_iter_destroy (&batch->iter);
            self->first = (self->first + 1) % MAP_WINDOW;
            self->nbatches--;
            progress = true;
        }
    }
    if (progress && self->exec && !self->fatal && dp_cli_exec_sync (self->exec))
        self->fatal = EXIT_ERROR;
    return progress;
}

/*  dpool map FN: see dp_cli_help_map. */
int
dp_cli_map_run (dp_cli_t *cli)
{
    if (cli->options.output)
        return dp_cli_map_resume_run (cli);
    s_map_t map;
    memset (&map, 0, sizeof map);
    if (cli->options.exec) {
        /*  The time limit is the command's own, which ends the command and
            not the worker: the task itself has none. */
        int rc = EXIT_ERROR;
        map.exec = dp_cli_exec_new (cli, cli->options.timeout_ms, &rc);
        if (!map.exec)
            return rc;
        cli->options.timeout_ms = 0;
    }
    int rc = dp_cli_connect (cli);
    if (rc >= 0) {
        dp_cli_exec_destroy (&map.exec);
        return rc;
    }
    map.cli = cli;
    map.reader.fd = STDIN_FILENO;
    msgpack_sbuffer_init (&map.pending);
    msgpack_packer_init (&map.packer, &map.pending, msgpack_sbuffer_write);
    dp_json_buf_init (&map.out);
    static char out_buffer[STDOUT_BUFFER];
    setvbuf (stdout, out_buffer, _IOFBF, sizeof out_buffer);
    map.progress = dp_cli_progress_new (cli->options.quiet, STDIN_FILENO);

    while (!map.fatal && !dp_cli_signal ()) {
        bool progress = false;
        bool can_read = !map.input_done && map.nbatches < MAP_WINDOW;
        if (can_read) {
            /*  With nothing in flight, reading is all there is to do. */
            int wait_ms = 0;
            if (map.nbatches == 0)
                wait_ms = map.pending_count == 0
                              ? WAIT_SLICE_MS
                              : (int)(MAP_LINGER_MS - (dp_now_ms () - map.pending_since_ms));
            progress |= s_map_read (&map, wait_ms < 0 ? 0 : wait_ms);
        }
        if (map.fatal)
            break;
        if (map.nbatches > 0)
            progress |= s_map_print (&map, progress || can_read ? 0 : WAIT_SLICE_MS);
        if (map.input_done && map.nbatches == 0 && map.pending_count == 0)
            break;
        if (!progress) {
            /*  Idle: show what is printed, wait a little for results, and
                make sure the broker is still there. */
            if (!dp_cli_progress_shares_stdout (map.progress))
                fflush (stdout); /* else the bar's tick flushes it, above the bar */
            if (map.nbatches > 0 && can_read)
                progress = s_map_print (&map, WAIT_SLICE_MS);
            if (!progress && map.nbatches > 0 && dp_cli_check_broker (cli))
                map.fatal = EXIT_UNREACHABLE;
        }
        dp_cli_progress_tick (map.progress);
    }
    dp_cli_progress_hide (map.progress);
    if (fflush (stdout) != 0 && !map.fatal) {
        fprintf (stderr, "dpool map: writing results: %s\n", strerror (errno));
        map.fatal = EXIT_ERROR;
    }
    for (; map.nbatches > 0; map.nbatches--, map.first = (map.first + 1) % MAP_WINDOW)
        dpool_iter_destroy (&map.window[map.first].iter);
    dp_cli_disconnect (cli, !map.fatal && !dp_cli_signal ());
    dp_cli_progress_destroy (&map.progress); /* after the pool: no report comes any more */
    dp_cli_exec_destroy (&map.exec);
    msgpack_sbuffer_destroy (&map.pending);
    dp_json_buf_free (&map.out);
    free (map.reader.data);
    if (dp_cli_signal ())
        return EXIT_SIGNAL_BASE + dp_cli_signal ();
    if (map.fatal)
        return map.fatal;
    if (map.input_error)
        return map.input_error;
    return map.denied ? EXIT_DENIED : map.failed ? EXIT_TASK_FAILED : EXIT_OK;
}

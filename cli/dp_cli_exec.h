/*  dp_cli_exec.h - dpool map --exec: shell commands as tasks.

    `dpool map --exec [--] CMD [ARG...]` runs the command once per input
    line on some worker, as the task function dpool.exec (common/dp_exec.h,
    docs/PROTOCOL.md section 10), with the line in place of every {} in its
    words, or, when no word holds {}, on its stdin. cmd_map.c reads the
    lines and keeps the batches in flight; this module turns a line into a
    task's arguments, and a result into output: the command's stdout and
    stderr as they are, in input order (or one JSON record a line with
    --json), a note on stderr for each command that failed or whose output
    was cut, and a line of the joblog (--joblog, GNU parallel's format),
    which --resume reads back to skip the lines already done.

    dp_cli_exec.c holds the commands and their output, dp_cli_joblog.c the
    joblog. One thread, the command's.
*/
#ifndef DP_CLI_EXEC_H_INCLUDED
#define DP_CLI_EXEC_H_INCLUDED

#include "dp_cli.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  ---------------------------------------------------------------------------
    The commands (dp_cli_exec.c).
*/
typedef struct _dp_cli_exec_t dp_cli_exec_t;

/*  What dp_cli_exec_pack did with a line. */
enum { DP_CLI_EXEC_PACKED = 0, DP_CLI_EXEC_SKIPPED = 1 };

/*  Checks the options of --exec against the command line: the command
    words, --json, --joblog, --resume, --resume-failed and --max-output go
    with --exec only, --resume wants --joblog. Returns -1 to go on, or
    EXIT_USAGE after a message. */
int
dp_cli_exec_check_args (dp_cli_t *cli);

/*  Prepares the commands of cli (cli->exec_argv), with the command's time
    limit timeout_ms (0: none), and opens the joblog, reading what it holds
    when resuming. Returns the state, or NULL with *status the exit status
    after a message. */
dp_cli_exec_t *
dp_cli_exec_new (dp_cli_t *cli, int64_t timeout_ms, int *status);

/*  Destroys the state; what was not synced is lost. */
void
dp_cli_exec_destroy (dp_cli_exec_t **self_p);

/*  Packs with pk the arguments of the task of input line seq (len bytes,
    without its newline), and remembers the task as the newest in flight.
    Returns DP_CLI_EXEC_PACKED; DP_CLI_EXEC_SKIPPED, packing nothing, for a
    line the joblog holds as done (--resume); or -1 with a message in error
    (error_size bytes) for a line that cannot make a command. */
int
dp_cli_exec_pack (dp_cli_exec_t *self, size_t seq, const char *line, size_t len,
                  msgpack_packer *pk, char *error, size_t error_size);

/*  Forgets the newest task packed (its arguments were cut back). */
void
dp_cli_exec_unpack (dp_cli_exec_t *self);

/*  Prints the result of the oldest task in flight (results come in the
    order tasks were packed) and notes it for the joblog. Returns 0 if the
    command succeeded, 1 if it failed (it exited non-zero, was killed or
    timed out, or never ran), -1 if the output could not be written (after
    a message). */
int
dp_cli_exec_print (dp_cli_exec_t *self, dpool_result_t *result);

/*  Makes what was printed durable in order: flushes stdout, then appends
    the joblog lines of the results printed since the last sync, so that a
    line the joblog holds always had its output written. Returns 0, or -1
    after a message. */
int
dp_cli_exec_sync (dp_cli_exec_t *self);

/*  ---------------------------------------------------------------------------
    The joblog (dp_cli_joblog.c): a header line, then one line per command
    that ran, tab-separated: Seq Host Starttime JobRuntime Send Receive
    Exitval Signal Command, as GNU parallel writes it.
*/
typedef struct _dp_joblog_t dp_joblog_t;

/*  How a joblog is opened: afresh (truncated), or read to resume. */
enum { DP_JOBLOG_NEW, DP_JOBLOG_RESUME, DP_JOBLOG_RESUME_FAILED };

/*  One line of it. Strings are borrowed, already escaped (no tab, no
    newline). */
typedef struct {
    uint64_t seq;
    const char *host;
    uint64_t start_us; /* µs since the Unix epoch */
    uint64_t run_us;
    uint64_t sent;
    uint64_t received;
    int exit_code;
    int signal;
    const char *command;
} dp_joblog_entry_t;

/*  Opens the joblog at path in mode. DP_JOBLOG_NEW truncates it and
    writes the header. To resume, it reads the lines there (the seqs of
    every line, or with DP_JOBLOG_RESUME_FAILED only of lines with Exitval
    and Signal 0, are done), cuts off a last line left half-written, and
    appends after them (a missing file is made, with the header). Returns
    NULL with a message in error (error_size bytes) if it cannot. */
dp_joblog_t *
dp_joblog_open (const char *path, int mode, char *error, size_t error_size);

/*  Closes it; lines not flushed are lost. */
void
dp_joblog_destroy (dp_joblog_t **self_p);

/*  True if the joblog read at opening holds seq as done. */
bool
dp_joblog_done (const dp_joblog_t *self, uint64_t seq);

/*  Adds a line, held until dp_joblog_flush. Returns 0 or -1 (out of
    memory). */
int
dp_joblog_add (dp_joblog_t *self, const dp_joblog_entry_t *entry);

/*  Writes the lines held to the file. Returns 0, or -1 with a message in
    error. */
int
dp_joblog_flush (dp_joblog_t *self, char *error, size_t error_size);

#endif

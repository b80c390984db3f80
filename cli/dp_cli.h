/*  dp_cli.h - what the files of the dpool command share.

    The command is dpool_main.c, which reads the command line into a
    dp_cli_t and calls the subcommand, and one file a subcommand (cmd_map.c,
    cmd_apply.c, cmd_status.c, cmd_demo.c, cmd_queue.c, cmd_keygen.c), each
    holding its --help text and its run function; map --exec's commands and
    joblog are in dp_cli_exec.c and dp_cli_joblog.c (dp_cli_exec.h), map's
    progress bar in dp_cli_progress.c (dp_cli_progress.h). dp_cli.c holds what
    several of them need: usage errors, connecting to the broker and
    checking that it still answers, text from the network made safe for a
    terminal, and a task's outcome as a line of JSON. dp_cli_signal.c
    holds how SIGINT and SIGTERM end a run.

    The command runs on one thread, and on one more that only takes
    signals (dp_cli_signal.c); nothing here is for the library. Run
    functions return the process's exit status (EXIT_*), having printed any
    message on stderr themselves, and leave no pool behind.
*/
#ifndef DP_CLI_H_INCLUDED
#define DP_CLI_H_INCLUDED

#include "dp_json.h"
#include "dpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Exit statuses. */
#define EXIT_OK          0   /* everything succeeded */
#define EXIT_TASK_FAILED 1   /* a task failed */
#define EXIT_USAGE       2   /* bad command line */
#define EXIT_UNREACHABLE 3   /* the broker did not answer in time */
#define EXIT_ERROR       4   /* invalid input, or any other error */
#define EXIT_DENIED      5   /* the broker's key configuration denies this key the right */
#define EXIT_SIGNAL_BASE 128 /* killed by a signal: 128 + its number */

#define MAX_POSITIONAL 3   /* queue put NAME JSON */
#define MAX_FN_NAME    255 /* longest function or queue name */
#define WAIT_SLICE_MS  10  /* longest single wait while others may be due */
#define PROBE_SLICE_MS 50  /* a status request is awaited in slices this long */

/*  The commands, as bits, so that an option can name those it applies to.
    CMD_ALL: every command that talks to a broker. */
enum {
    CMD_MAP = 1,
    CMD_APPLY = 2,
    CMD_STATUS = 4,
    CMD_DEMO = 8,
    CMD_QUEUE = 16,
    CMD_KEYGEN = 32,
    CMD_SUBMIT = 64,
    CMD_RESULTS = 128,
    CMD_BATCHES = 256,
    CMD_CANCEL = 512,
    CMD_ALL = 31 | 64 | 128 | 256 | 512
};

/*  The options' values, after defaults, DPOOL_* variables and the command
    line. Strings are borrowed from argv or the environment. */
typedef struct {
    const char *connect;
    long connect_timeout_ms;
    long chunksize;
    long timeout_ms;
    long batch;
    bool json;
    bool exec;          /* map: the input lines feed a command */
    const char *joblog; /* map --exec: the joblog's path */
    bool resume;        /* map --exec: skip the lines the joblog holds */
    bool resume_failed; /* ... but run those that failed again */
    long max_output;    /* map --exec: bytes kept of a command's stdout and stderr */
    const char *worker;
    long procs;
    const char *curve_server;
    const char *curve_secret;
    bool quiet;         /* map: no progress bar */
    bool watch;         /* status: again every interval until a signal */
    long interval;      /* status --watch: seconds */
    const char *name;   /* submit: the batch's name */
    const char *id;     /* submit: add to this batch (after the tasks it holds) */
    long result_ttl;    /* submit: seconds results are kept uncollected; 0: the broker's */
    bool no_results;    /* submit: fire and forget */
    bool no_wait;       /* results: print what is done, do not wait */
    bool keep;          /* results: leave them at the broker */
    const char *output; /* map: write results to this file, resumable (--resume) */
} dp_cli_options_t;

/*  A command: its name, its CMD_* bit, how many positional arguments it
    takes (or a negative number if it checks them itself), its --help. */
typedef struct {
    const char *name;
    unsigned id;
    int positional;
    const char *help;
} dp_cli_command_t;

/*  The state of one run of the command. */
typedef struct {
    dp_cli_options_t options;
    const dp_cli_command_t *command;
    const char *args[MAX_POSITIONAL];
    int nargs;
    char **exec_argv; /* map --exec: the command's words, borrowed from argv */
    int exec_argc;
    dpool_pool_t *pool;
    int64_t last_heard_ms; /* when the broker last answered or sent a result */
    bool warned_no_workers;
} dp_cli_t;

/*  ---------------------------------------------------------------------------
    The subcommands, one file each. Every run function takes a parsed cli
    with no pool, and returns the exit status.
*/

/*  cmd_map.c: dpool map FN, stdin's JSON lines to stdout's results. */
extern const char dp_cli_help_map[];
int
dp_cli_map_run (dp_cli_t *cli);

/*  dp_cli_resume.c: dpool map FN --output FILE [--resume], a map run as a
    detached batch whose output file is its record of what is done. */
int
dp_cli_map_resume_run (dp_cli_t *cli);

/*  cmd_apply.c: dpool apply FN JSON. */
extern const char dp_cli_help_apply[];
int
dp_cli_apply_run (dp_cli_t *cli);

/*  cmd_status.c: dpool status [--json]. */
extern const char dp_cli_help_status[];
int
dp_cli_status_run (dp_cli_t *cli);

/*  cmd_demo.c: dpool demo. connect_given says whether --connect (or
    DPOOL_CONNECT) was given. */
extern const char dp_cli_help_demo[];
int
dp_cli_demo_run (dp_cli_t *cli, bool connect_given);

/*  cmd_queue.c: dpool queue put|get|size. timeout_given says whether
    --timeout-ms (or DPOOL_TIMEOUT_MS) was given. */
extern const char dp_cli_help_queue[];
int
dp_cli_queue_run (dp_cli_t *cli, bool timeout_given);

/*  Checks the positional arguments of `dpool queue`, which its command
    entry leaves to it. Returns -1 to go on, or EXIT_USAGE after a message. */
int
dp_cli_queue_check_args (dp_cli_t *cli);

/*  cmd_batch.c: detached batches: dpool submit FN, dpool results BATCH,
    dpool batches, dpool cancel BATCH. */
extern const char dp_cli_help_submit[];
extern const char dp_cli_help_results[];
extern const char dp_cli_help_batches[];
extern const char dp_cli_help_cancel[];
int
dp_cli_submit_run (dp_cli_t *cli);
/*  Adds stdin's lines (one JSON value each) to batch, skipping the first
    skip (the broker holds them); command names the command in messages.
    Returns 0; EXIT_ERROR after a message (a line that is not JSON, a read
    error); or -1 if dpool_batch_add failed (the caller explains). */
int
dp_cli_batch_add_lines (dpool_batch_t *batch, uint64_t skip, const char *command);
int
dp_cli_results_run (dp_cli_t *cli);
int
dp_cli_batches_run (dp_cli_t *cli);
int
dp_cli_cancel_run (dp_cli_t *cli);

/*  cmd_keygen.c: dpool keygen PATH. */
extern const char dp_cli_help_keygen[];
int
dp_cli_keygen_run (dp_cli_t *cli);

/*  ---------------------------------------------------------------------------
    dp_cli.c: what the subcommands share.
*/

/*  Prints a usage error on stderr, "dpool[ COMMAND]: " and the message,
    pointing at the help; command may be NULL. Returns EXIT_USAGE. */
int
dp_cli_usage_error (const dp_cli_command_t *command, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

/*  The name of an error code as the failure marking prints it ("EFAILED"),
    or "EUNKNOWN". */
const char *
dp_cli_code_name (int code);

/*  Appends text (size bytes from the network: a name, a message) to out
    for a terminal, and returns out's text: dp_json_append_escaped after
    emptying out. Out of memory, the text is cut short. */
const char *
dp_cli_escape (dp_json_buf_t *out, const char *text, size_t size);

/*  Makes cli's pool for the broker at --connect and checks that it answers
    within the connect timeout. SIGINT and SIGTERM are taken from before
    the pool exists (dp_cli_signal_start) and terminate it (see
    dp_cli_signal_watch). Returns -1 to go on (the caller then ends with
    dp_cli_disconnect), or the exit status to end with, after a message,
    with no pool left: 128 + the signal's number if one came. */
int
dp_cli_connect (dp_cli_t *cli);

/*  Ends what dp_cli_connect began: stops watching the pool for signals,
    then closes it (graceful: what was submitted may end) or terminates it,
    and destroys it; its BYE makes the broker forget the session. */
void
dp_cli_disconnect (dp_cli_t *cli, bool graceful);

/*  ---------------------------------------------------------------------------
    dp_cli_signal.c: SIGINT and SIGTERM end a run with 128 + the signal.
*/

/*  Blocks SIGINT and SIGTERM in the calling thread, and so in every thread
    it makes after, and starts the one thread that takes them; at most
    once. Call it before any other thread exists. Returns 0, or -1 if the
    thread could not start (the signals then keep their default action,
    which ends the process at once). */
int
dp_cli_signal_start (void);

/*  Makes pool (NULL: none) the one a signal terminates: every wait of the
    library on it then ends at once. If a signal came already, terminates
    it now. Blocks while a signal's terminate runs, so that once it returns
    the previous pool may be destroyed. */
void
dp_cli_signal_watch (dpool_pool_t *pool);

/*  The number of the first SIGINT or SIGTERM taken, or 0. Loops that wait
    check it between slices and stop; the command then exits with
    EXIT_SIGNAL_BASE + it. */
int
dp_cli_signal (void);

/*  Asks the broker for its status within the connect timeout. Returns 0
    and, if data is not NULL, the packed map (caller frees) when it answers;
    else -1 after a message naming what was being done ("cannot reach").
    Blocks up to the connect timeout. Warns once, except for status and
    queue, when the broker has no worker. */
int
dp_cli_probe (dp_cli_t *cli, const char *doing, void **data, size_t *size);

/*  Called while waiting for results made no progress: probes the broker
    when nothing was heard from it for the connect timeout. Returns 0 while
    it answers, else -1 (after a message). */
int
dp_cli_check_broker (dp_cli_t *cli);

/*  Appends the outcome of a finished task to out as one JSON line: its
    value, or the failure marking {"dpool_error":{"code":..,"message":..}}.
    Returns true if the task succeeded; sets *error if the output could not
    be made. */
bool
dp_cli_append_outcome (dp_json_buf_t *out, dpool_result_t *result, bool *error);

/*  Appends the failure marking of a task that failed with code and
    message (len bytes) to out, without a newline. Returns 0, or -1 if out
    of memory. */
int
dp_cli_append_failure (dp_json_buf_t *out, int code, const char *message, size_t len);

#endif

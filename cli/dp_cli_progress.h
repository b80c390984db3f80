/*  dp_cli_progress.h - the progress bar of `dpool map` on a terminal.

    One line on stderr, redrawn in place at most every
    DP_CLI_PROGRESS_REDRAW_MS: results so far out of the total (known when
    stdin is a regular file, whose lines are counted up front), a bar and
    the percentage, the rate since the start, the time left at that rate,
    the failures so far, and the latest progress report of a running task
    (dpool_task_progress), escaped for the terminal. It ends with one final
    line of totals. It exists only when stderr is a terminal and --quiet
    was not given: otherwise nothing of it is ever written, and
    dp_cli_progress_new returns NULL, which every call here takes as "no
    bar".

    Threads: the map's thread makes, draws and destroys it; the pool's
    thread calls the progress callback (dp_cli_progress_on_report), which
    keeps the latest report under a mutex of its own.
*/
#ifndef DP_CLI_PROGRESS_H_INCLUDED
#define DP_CLI_PROGRESS_H_INCLUDED

#include "dpool.h"

#include <stdbool.h>
#include <stddef.h>

#define DP_CLI_PROGRESS_REDRAW_MS 100 /* at most ten redraws a second */
#define DP_CLI_PROGRESS_REPORT    120 /* bytes kept of a progress report's text */

typedef struct _dp_cli_progress_t dp_cli_progress_t;

/*  Makes the bar of a map reading input_fd, drawn on stderr, or returns
    NULL when there is none to draw: quiet, stderr is not a terminal, or
    out of memory. The total is counted when input_fd is a regular file
    (its lines from the current offset, read without moving it). */
dp_cli_progress_t *
dp_cli_progress_new (bool quiet, int input_fd);

/*  Draws the final line, if not yet done, and frees the bar; nulls
 *self_p. Harmless on NULL. */
void
dp_cli_progress_destroy (dp_cli_progress_t **self_p);

/*  Counts one input line done: a result printed (failed or not), or a line
    --resume skipped. */
void
dp_cli_progress_count (dp_cli_progress_t *self, bool failed);

/*  A dpool_progress_fn for the map's calls, with the bar as its arg: keeps
    the report's text. Runs on the pool's thread. */
void
dp_cli_progress_on_report (dpool_result_t *result, size_t index, const msgpack_object *value,
                           void *arg);

/*  Redraws the bar if DP_CLI_PROGRESS_REDRAW_MS passed since it was last
    drawn (so never more often, whatever else happens). When stdout is a
    terminal too, the results buffered for it are flushed first, above the
    bar: the map leaves stdout's flushing to the tick then
    (dp_cli_progress_shares_stdout). */
void
dp_cli_progress_tick (dp_cli_progress_t *self);

/*  Erases the bar from its line, so that other output (a message, a
    command's stderr) starts clean; the next tick that is due draws it
    again. */
void
dp_cli_progress_hide (dp_cli_progress_t *self);

/*  True if there is a bar and stdout is a terminal too. */
bool
dp_cli_progress_shares_stdout (const dp_cli_progress_t *self);

/*  Draws the final line: the totals, the time taken and the rate, and a
    newline. Later calls do nothing. */
void
dp_cli_progress_finish (dp_cli_progress_t *self);

#endif

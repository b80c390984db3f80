/*  cmd_status.c - dpool status: the broker's status map as a table for
    people, or with --json as one line of JSON.
*/
#include "dp_cli.h"
#include "dp_json.h"
#include "dp_util.h"
#include "dpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CLEAR_SCREEN "\033[H\033[2J" /* cursor home, erase the screen */
#define MS_PER_S     1000
#define NS_PER_MS    1000000L

const char dp_cli_help_status[] =
    "usage: dpool status [--connect EP] [--json] [--watch [--interval S]]\n"
    "\n"
    "Shows the broker's status: its workers with their functions and counts, tasks\n"
    "queued, in flight, done and failed, clients, the use of its bounds, and\n"
    "messages dropped. The broker counts a map's chunk of tasks as one task.\n"
    "\n"
    "Under \"shares\", one row per client (a CURVE key's sessions together, or a\n"
    "session without CURVE; only your own unless your key is an administrator):\n"
    "its weight, its share of the workers' time over the last 5 to 10 s, its\n"
    "tasks queued, and its quotas' use as used/bound: tasks running, tasks held\n"
    "(queued or running) and their bytes of arguments.\n"
    "\n"
    "Options:\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --json                   print the broker's whole status map as one line of\n"
    "                           JSON instead of a table [DPOOL_JSON=1]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "  --watch                  show the status again every --interval seconds until\n"
    "                           SIGINT or SIGTERM: on a terminal the screen is cleared\n"
    "                           each time, else each block follows the last (with\n"
    "                           --json, one line each); a broker that stops answering\n"
    "                           is said on stderr and asked again at the next turn\n"
    "  --interval S             seconds between two with --watch\n"
    "                           [DPOOL_INTERVAL; default 2]\n"
    "\n"
    "Names that came from the network (the broker's, workers' names, hosts and\n"
    "functions, queue names) are printed with control characters escaped: \\n,\n"
    "\\r, \\t, \\\\ and \\xNN (\\uNNNN for C1 controls and bidirectional\n"
    "overrides), so that none can act on the terminal; --json escapes them as JSON.\n"
    "\n"
    "Exit status: 0 success, 2 bad usage, 3 the broker could not be reached (with\n"
    "--watch: at the start), 128 + N ended by signal N (SIGINT, SIGTERM), which\n"
    "is how --watch ends.\n";

/*  The value under key in a msgpack map, or NULL. */
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
            memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/*  Formats a status value for the table into cell: strings (names that
    came from the network) escaped for the terminal, "-" when missing, JSON
    for anything else. Returns the text, borrowed from cell. */
static const char *
s_cell (dp_json_buf_t *cell, const msgpack_object *value)
{
    dp_json_buf_reset (cell);
    if (!value)
        dp_json_buf_append (cell, "-", 1);
    else if (value->type == MSGPACK_OBJECT_STR)
        dp_cli_escape (cell, value->via.str.ptr, value->via.str.size);
    else
        dp_json_from_object (cell, value);
    return cell->data ? cell->data : "";
}

/*  Formats a progress report for the table: "done/total (p%)" for a pair
    of numbers, JSON for anything else, "-" for none. Returns the text,
    borrowed from cell. */
static const char *
s_progress_cell (dp_json_buf_t *cell, const msgpack_object *value)
{
    if (value && value->type == MSGPACK_OBJECT_ARRAY && value->via.array.size == 2 &&
        value->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        value->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        uint64_t done = value->via.array.ptr[0].via.u64;
        uint64_t total = value->via.array.ptr[1].via.u64;
        char text[96];
        if (total > 0)
            snprintf (text, sizeof text, "%llu/%llu (%.0f%%)", (unsigned long long)done,
                      (unsigned long long)total, 100.0 * (double)done / (double)total);
        else
            snprintf (text, sizeof text, "%llu/%llu", (unsigned long long)done,
                      (unsigned long long)total);
        dp_json_buf_reset (cell);
        dp_json_buf_append (cell, text, strlen (text));
        return cell->data ? cell->data : "";
    }
    if (value && value->type == MSGPACK_OBJECT_NIL)
        value = NULL;
    return s_cell (cell, value);
}

/*  Prints one row per entry of the array under key (running tasks, queues),
    with a heading of the given columns, after a line "title N". */
static void
s_print_rows (const msgpack_object *status, const char *key, const char *title,
              const char *const *columns, const int *widths, size_t ncolumns)
{
    dp_json_buf_t cell;
    dp_json_buf_init (&cell);
    const msgpack_object *rows = s_map_get (status, key);
    uint32_t nrows = rows && rows->type == MSGPACK_OBJECT_ARRAY ? rows->via.array.size : 0;
    printf ("%-8s %u\n", title, nrows);
    for (uint32_t i = 0; nrows > 0 && i < nrows + 1; i++) {
        const msgpack_object *row = i ? &rows->via.array.ptr[i - 1] : NULL;
        printf (" ");
        for (size_t c = 0; c < ncolumns; c++) {
            const char *text = columns[c];
            char heading[32];
            if (!row) {
                size_t n = 0;
                for (; text[n] && n < sizeof heading - 1; n++)
                    heading[n] = (char)(text[n] >= 'a' && text[n] <= 'z' ? text[n] - 32 : text[n]);
                heading[n] = 0;
                text = heading;
            } else if (strcmp (columns[c], "progress") == 0)
                text = s_progress_cell (&cell, s_map_get (row, columns[c]));
            else
                text = s_cell (&cell, s_map_get (row, columns[c]));
            printf (" %-*s", widths[c], text);
        }
        printf ("\n");
    }
    dp_json_buf_free (&cell);
}

/*  Prints the tasks workers are running, with their progress, and the
    named queues. */
static void
s_print_running_and_queues (const msgpack_object *status)
{
    static const char *const running[] = {"fn", "seq", "worker", "pid", "attempt", "progress"};
    static const int running_widths[] = {24, 8, 24, 8, 7, 0};
    if (s_map_get (status, "running"))
        s_print_rows (status, "running", "running", running, running_widths,
                      sizeof running / sizeof running[0]);
    static const char *const queues[] = {"name",    "size",    "maxsize", "getters",
                                         "putters", "unacked", "puts",    "gets"};
    static const int queue_widths[] = {24, 8, 8, 7, 7, 7, 10, 0};
    if (s_map_get (status, "queues"))
        s_print_rows (status, "queues", "queues", queues, queue_widths,
                      sizeof queues / sizeof queues[0]);
}

/*  Prints the use of the broker's bounds (its status's "limits" map), if
    it sent them: each "used/bound"; held results are the most one session
    holds, against the bound of one session. */
static void
s_print_limits (const msgpack_object *status, dp_json_buf_t *cell)
{
    const msgpack_object *limits = s_map_get (status, "limits");
    if (!limits || limits->type != MSGPACK_OBJECT_MAP)
        return;
    static const char *const pairs[][3] = {
        {"task bytes", "task_bytes", "max_queue_bytes"},
        {"held results", "session_held_results", "max_held_results"},
        {"held bytes", "session_held_bytes", "max_held_bytes"},
        {"queue values bytes", "value_bytes", "max_value_bytes"}};
    printf ("limits  ");
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        printf ("%s %s %s", i ? "," : "", pairs[i][0],
                s_cell (cell, s_map_get (limits, pairs[i][1])));
        printf ("/%s", s_cell (cell, s_map_get (limits, pairs[i][2])));
    }
    printf (", stalled sessions %s", s_cell (cell, s_map_get (limits, "stalled_sessions")));
    printf (" (parked tasks %s)\n", s_cell (cell, s_map_get (limits, "parked")));
}

/*  Formats "used/bound" of two counts of row into cell, "used" alone when
    the bound is 0 (none). Returns the text, borrowed from cell. */
static const char *
s_use_cell (dp_json_buf_t *cell, const msgpack_object *row, const char *used, const char *bound)
{
    const msgpack_object *max = s_map_get (row, bound);
    char text[64];
    snprintf (text, sizeof text, "%s", s_cell (cell, s_map_get (row, used)));
    if (max && !(max->type == MSGPACK_OBJECT_POSITIVE_INTEGER && max->via.u64 == 0)) {
        size_t len = strlen (text);
        snprintf (text + len, sizeof text - len, "/%s", s_cell (cell, max));
    }
    dp_json_buf_reset (cell);
    dp_json_buf_append (cell, text, strlen (text));
    return cell->data ? cell->data : "";
}

/*  Prints the tenants of fair share (a client key's sessions together, or
    one session): weight, share of the workers' recent time, tasks queued,
    and each quota's use as "used/bound". */
static void
s_print_tenants (const msgpack_object *status, dp_json_buf_t *cell)
{
    const msgpack_object *rows = s_map_get (status, "tenants");
    if (!rows || rows->type != MSGPACK_OBJECT_ARRAY)
        return;
    printf ("shares   %u\n", rows->via.array.size);
    if (rows->via.array.size > 0)
        printf ("  %-24s %-8s %-6s %-6s %-8s %-10s %-16s %s\n", "NAME", "SESSIONS", "WEIGHT",
                "SHARE", "QUEUED", "RUNNING", "TASKS", "TASK BYTES");
    for (uint32_t i = 0; i < rows->via.array.size; i++) {
        const msgpack_object *row = &rows->via.array.ptr[i];
        const msgpack_object *share = s_map_get (row, "share");
        printf ("  %-24s", s_cell (cell, s_map_get (row, "name")));
        printf (" %-8s", s_cell (cell, s_map_get (row, "sessions")));
        printf (" %-6s", s_cell (cell, s_map_get (row, "weight")));
        if (share &&
            (share->type == MSGPACK_OBJECT_FLOAT64 || share->type == MSGPACK_OBJECT_FLOAT32))
            printf (" %5.1f%%", 100.0 * share->via.f64);
        else
            printf (" %-6s", "-");
        printf (" %-8s", s_cell (cell, s_map_get (row, "queued")));
        printf (" %-10s", s_use_cell (cell, row, "running", "max_running"));
        printf (" %-16s", s_use_cell (cell, row, "tasks", "max_queued"));
        printf (" %s\n", s_use_cell (cell, row, "task_bytes", "max_queued_bytes"));
    }
}

/*  Prints the status map for people: the broker, task counters, clients,
    the use of its bounds, one row per worker, running tasks and queues, and non-zero drop
    counters. */
static void
s_print_status_table (const msgpack_object *status)
{
    dp_json_buf_t cell;
    dp_json_buf_init (&cell);
    printf ("broker   %s", s_cell (&cell, s_map_get (status, "broker")));
    const msgpack_object *uptime = s_map_get (status, "uptime_ms");
    if (uptime && uptime->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        unsigned long long seconds = (unsigned long long)(uptime->via.u64 / 1000);
        printf (" (up %lluh%02llum%02llus)", seconds / 3600, seconds / 60 % 60, seconds % 60);
    }
    printf ("\ntasks    queued %s", s_cell (&cell, s_map_get (status, "queued")));
    printf (", in flight %s", s_cell (&cell, s_map_get (status, "inflight")));
    printf (", done %s", s_cell (&cell, s_map_get (status, "done")));
    printf (", failed %s\n", s_cell (&cell, s_map_get (status, "failed")));
    printf ("clients  %s\n", s_cell (&cell, s_map_get (status, "clients")));
    s_print_tenants (status, &cell);
    s_print_limits (status, &cell);

    const msgpack_object *workers = s_map_get (status, "workers");
    uint32_t nworkers =
        workers && workers->type == MSGPACK_OBJECT_ARRAY ? workers->via.array.size : 0;
    printf ("workers  %u\n", nworkers);
    if (nworkers > 0)
        printf ("  %-24s %-16s %-8s %-6s %-8s %-8s %-6s %s\n", "NAME", "HOST", "PID", "CREDIT",
                "INFLIGHT", "DONE", "FAILED", "FUNCTIONS");
    static const char *const columns[] = {"name",     "host", "pid",   "credit",
                                          "inflight", "done", "failed"};
    static const int widths[] = {24, 16, 8, 6, 8, 8, 6};
    for (uint32_t i = 0; i < nworkers; i++) {
        const msgpack_object *worker = &workers->via.array.ptr[i];
        printf (" ");
        for (size_t c = 0; c < sizeof columns / sizeof columns[0]; c++)
            printf (" %-*s", widths[c], s_cell (&cell, s_map_get (worker, columns[c])));
        printf (" ");
        const msgpack_object *functions = s_map_get (worker, "functions");
        if (functions && functions->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t f = 0; f < functions->via.array.size; f++)
                printf ("%s%s", f ? "," : "", s_cell (&cell, &functions->via.array.ptr[f]));
        printf ("\n");
    }
    s_print_running_and_queues (status);
    const msgpack_object *dropped = s_map_get (status, "dropped");
    bool any = false;
    if (dropped && dropped->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < dropped->via.map.size; i++) {
            const msgpack_object_kv *kv = &dropped->via.map.ptr[i];
            if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->val.via.u64 == 0)
                continue;
            printf ("%s%s", any ? ", " : "dropped  ", s_cell (&cell, &kv->key));
            printf (" %s", s_cell (&cell, &kv->val));
            any = true;
        }
    if (any)
        printf ("\n");
    dp_json_buf_free (&cell);
}

/*  Prints the broker's reply (a packed status map) as --json or the table
    say. Returns EXIT_OK, or EXIT_ERROR after a message. */
static int
s_print_reply (dp_cli_t *cli, const void *data, size_t size)
{
    int rc;
    if (cli->options.json) {
        dp_json_buf_t out;
        dp_json_buf_init (&out);
        char error[DP_JSON_ERROR_SIZE];
        if (dp_json_from_msgpack (&out, data, size, error, sizeof error)) {
            fprintf (stderr, "dpool status: the broker's reply: %s\n", error);
            rc = EXIT_ERROR;
        } else {
            printf ("%s\n", out.data);
            rc = EXIT_OK;
        }
        dp_json_buf_free (&out);
    } else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        size_t offset = 0;
        if (msgpack_unpack_next (&unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS ||
            unpacked.data.type != MSGPACK_OBJECT_MAP) {
            fprintf (stderr, "dpool status: the broker's reply is not a msgpack map\n");
            rc = EXIT_ERROR;
        } else {
            s_print_status_table (&unpacked.data);
            rc = EXIT_OK;
        }
        msgpack_unpacked_destroy (&unpacked);
    }
    return rc;
}

/*  Asks for the status and prints it. Returns EXIT_OK, or the exit status
    of a failure, after a message: EXIT_UNREACHABLE, EXIT_ERROR, or 128 +
    the signal that ended the wait. */
static int
s_status_once (dp_cli_t *cli)
{
    void *data = NULL;
    size_t size = 0;
    int rc;
    if (dp_cli_probe (cli, "cannot reach", &data, &size))
        rc = dp_cli_signal () ? EXIT_SIGNAL_BASE + dp_cli_signal () : EXIT_UNREACHABLE;
    else
        rc = s_print_reply (cli, data, size);
    free (data);
    if (rc == EXIT_OK && fflush (stdout) != 0)
        rc = EXIT_ERROR;
    return rc;
}

/*  Sleeps up to ms in slices, until a signal comes. Returns the signal, or
    0 once the time is up. */
static int
s_pause (long ms)
{
    int64_t until = dp_now_ms () + ms;
    for (int64_t now = dp_now_ms (); now < until && !dp_cli_signal (); now = dp_now_ms ()) {
        int64_t slice = until - now < PROBE_SLICE_MS ? until - now : PROBE_SLICE_MS;
        struct timespec pause = {0, (long)slice * NS_PER_MS};
        nanosleep (&pause, NULL);
    }
    return dp_cli_signal ();
}

/*  Starts a block of --watch: on a terminal the screen is cleared first;
    the table gets a line saying when (not --json, one line per refresh),
    elsewhere after a blank line that parts it from the block before. */
static void
s_watch_header (dp_cli_t *cli, bool terminal, bool first)
{
    if (terminal)
        fputs (CLEAR_SCREEN, stdout);
    if (cli->options.json)
        return;
    char when[64] = "";
    time_t now = time (NULL);
    struct tm local;
    if (localtime_r (&now, &local))
        strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &local);
    printf ("%sdpool status every %ld s: %s\n\n", terminal || first ? "" : "\n",
            cli->options.interval, when);
}

/*  dpool status --watch: the status every interval until SIGINT or
    SIGTERM, which end it with 128 + the signal. A broker that stops
    answering is said on stderr, and asked again at the next refresh. */
static int
s_watch (dp_cli_t *cli)
{
    bool terminal = isatty (STDOUT_FILENO);
    for (bool first = true;; first = false) {
        s_watch_header (cli, terminal, first);
        int rc = s_status_once (cli);
        if (rc == EXIT_ERROR && ferror (stdout))
            return rc; /* stdout is gone (a closed pipe): nobody reads on */
        if (dp_cli_signal () || s_pause (cli->options.interval * MS_PER_S))
            return EXIT_SIGNAL_BASE + dp_cli_signal ();
    }
}

/*  dpool status: see dp_cli_help_status. */
int
dp_cli_status_run (dp_cli_t *cli)
{
    int rc = dp_cli_connect (cli);
    if (rc >= 0)
        return rc;
    rc = cli->options.watch ? s_watch (cli) : s_status_once (cli);
    dp_cli_disconnect (cli, false);
    return rc;
}

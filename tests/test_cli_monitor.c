/*  test_cli_monitor.c - what the dpool command shows while work runs:
    `dpool map`'s progress bar, read from a pseudo-terminal (its bar with
    the total, the rate, the failures and the tasks' progress reports, at
    most ten redraws a second, and a last line of totals; none when stderr
    is not a terminal or with --quiet), and `dpool status --watch`, which
    redraws the status on a terminal, prints one block a turn elsewhere,
    and ends with 128 + the signal.

    A real broker and dpool-worker processes with the test plugin
    (test.steps reports progress); the command runs on the pty's slave
    side (forkpty) with stdin and stdout on files of the test's own.
*/
#include "dp_testutil.h"
#include "dpool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef DPOOL_TEST_PLUGIN
#define DPOOL_TEST_PLUGIN "dpool_test_plugin.so"
#endif

#define TEST_SECONDS 90
#define RUN_MS       30000
#define LINES        6 /* input lines of a map: 5 run, 1 fails */
#define STEPS_LINE   "[3,150]"
#define CLEAR        "\033[H\033[2J"

static dp_test_broker_t s_broker;
static pid_t s_workers;

/*  A command on a pseudo-terminal, and all it wrote there so far. */
typedef struct {
    pid_t pid;
    int master;
    char *text;
    size_t size;
} pty_run_t;

/*  Starts argv on a new pty in raw mode (so that what it writes arrives
    as it is), 200 columns wide, with stdin from in and stdout to out
    (files; NULL: the pty). */
static void
s_pty_start (pty_run_t *run, char *const argv[], const char *in, const char *out)
{
    memset (run, 0, sizeof *run);
    struct termios raw;
    memset (&raw, 0, sizeof raw);
    cfmakeraw (&raw);
    struct winsize size = {.ws_row = 40, .ws_col = 200};
    run->pid = forkpty (&run->master, NULL, &raw, &size);
    CHECK (run->pid >= 0);
    if (run->pid == 0) {
        int fd_in = in ? open (in, O_RDONLY) : -1;
        int fd_out = out ? open (out, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
        if ((in && (fd_in < 0 || dup2 (fd_in, STDIN_FILENO) < 0)) ||
            (out && (fd_out < 0 || dup2 (fd_out, STDOUT_FILENO) < 0)))
            _exit (126);
        execv (argv[0], argv);
        _exit (127);
    }
    dp_test_track (run->pid);
}

/*  Reads what the command writes for up to ms, or until needle has been
    written count times (needle NULL: until it closes the pty). Returns
    true if it stopped for that reason. */
static bool
s_pty_read (pty_run_t *run, const char *needle, int count, int ms)
{
    int64_t until = dp_test_now_ms () + ms;
    for (;;) {
        int seen = 0;
        for (const char *at = needle && run->text ? strstr (run->text, needle) : NULL; at;
             at = strstr (at + 1, needle))
            seen++;
        if (needle && seen >= count)
            return true;
        int64_t left = until - dp_test_now_ms ();
        if (left <= 0)
            return false;
        struct pollfd poller = {.fd = run->master, .events = POLLIN};
        if (poll (&poller, 1, left > 100 ? 100 : (int)left) <= 0)
            continue;
        char chunk[4096];
        ssize_t got = read (run->master, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) /* EIO once the slave side is closed everywhere */
            return needle == NULL;
        run->text = realloc (run->text, run->size + (size_t)got + 1);
        CHECK (run->text);
        memcpy (run->text + run->size, chunk, (size_t)got);
        run->size += (size_t)got;
        run->text[run->size] = '\0';
    }
}

/*  Reads to the end, then returns the command's wait status. */
static int
s_pty_finish (pty_run_t *run, int sig)
{
    if (sig)
        kill (run->pid, sig);
    CHECK (s_pty_read (run, NULL, 0, RUN_MS));
    int status = dp_test_untrack_stop (run->pid, SIGKILL);
    close (run->master);
    return status;
}

/*  A broker and two worker processes that offer test.steps. */
static void
s_start (void)
{
    dp_test_broker_start (&s_broker, NULL);
    const char *extra[] = {"--plugin", DPOOL_TEST_PLUGIN, NULL};
    s_workers = dp_test_workers_start (s_broker.tcp, 2, extra);
    /*  Registered before any map, which would warn of none on stderr. */
    dpool_pool_t *pool = dpool_pool_connect (s_broker.tcp);
    CHECK (pool);
    dp_test_wait_workers (pool, 2, RUN_MS);
    dpool_pool_destroy (&pool);
}

static void
s_stop (void)
{
    dp_test_stop (s_workers, SIGTERM, 10000);
    CHECK_EQ_INT (dp_test_stop (s_broker.pid, SIGTERM, 10000), 0);
}

/*  Writes the map's input: LINES - 1 lines of test.steps and one that
    fails (not [n, ms]). Returns its path. */
static const char *
s_input (void)
{
    static char path[4096];
    snprintf (path, sizeof path, "%s", dp_test_path ("input.jsonl"));
    FILE *file = fopen (path, "w");
    CHECK (file);
    for (int i = 0; i < LINES; i++)
        fprintf (file, "%s\n", i == 2 ? "\"bad\"" : STEPS_LINE);
    CHECK_EQ_INT (fclose (file), 0);
    return path;
}

/*  The number of results in the map's output file. */
static int
s_output_lines (const char *path)
{
    char *text = dp_test_read_file (path);
    CHECK (text);
    int lines = 0;
    for (const char *at = text; *at; at++)
        lines += *at == '\n';
    free (text);
    return lines;
}

static int
s_count (const char *text, const char *needle)
{
    int count = 0;
    for (const char *at = strstr (text, needle); at; at = strstr (at + 1, needle))
        count++;
    return count;
}

/*  On a terminal: the bar with the total, a progress report and the
    failure while the map runs; a final line of totals, last; and no more
    than ten redraws a second. */
static void
s_case_map_bar (void)
{
    s_start ();
    char out[4096];
    snprintf (out, sizeof out, "%s", dp_test_path ("out.jsonl")); /* a static buffer */
    char *const argv[] = {(char *)dp_test_cli_bin,
                          "map",
                          "test.steps",
                          "--chunksize",
                          "1",
                          "--connect",
                          s_broker.tcp,
                          NULL};
    int64_t started = dp_test_now_ms ();
    pty_run_t run;
    s_pty_start (&run, argv, s_input (), out);
    int status = s_pty_finish (&run, 0);
    int64_t took = dp_test_now_ms () - started;
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 1); /* a task failed */
    CHECK_EQ_INT (s_output_lines (out), LINES);
    const char *text = run.text ? run.text : "";
    if (!strstr (text, "\rdpool map: ") || !strstr (text, "/6 [") || !strstr (text, " | ") ||
        !strstr (text, "/3 (") || !strstr (text, "failed 1") || !strstr (text, "/s"))
        dp_test_fail (__FILE__, __LINE__, "no bar with its parts in:\n%s", text);
    const char *last = strstr (text, "\rdpool map: 6/6 done, 1 failed, in ");
    if (!last || strchr (last, '\n') != text + run.size - 1)
        dp_test_fail (__FILE__, __LINE__, "no final line of totals at the end of:\n%s", text);
    int draws = s_count (text, "\rdpool map: ");
    if (draws > took / 100 + 2)
        dp_test_fail (__FILE__, __LINE__, "%d draws in %lld ms", draws, (long long)took);
    free (run.text);
    s_stop ();
}

/*  Input from a pipe: no total, the count alone. */
static void
s_case_map_bar_pipe (void)
{
    s_start ();
    /*  s_input first: dp_test_path's buffer is static. */
    const char *in = s_input ();
    char script[8192];
    int n = snprintf (script, sizeof script, "cat '%s' | '%s' map test.steps --connect '%s'", in,
                      dp_test_cli_bin, s_broker.tcp);
    snprintf (script + n, sizeof script - (size_t)n, " > '%s'", dp_test_path ("out.jsonl"));
    char *const argv[] = {"/bin/sh", "-c", script, NULL};
    pty_run_t run;
    s_pty_start (&run, argv, NULL, NULL);
    int status = s_pty_finish (&run, 0);
    const char *text = run.text ? run.text : "";
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 1)
        dp_test_fail (__FILE__, __LINE__, "status %d:\n%s", status, text);
    if (!strstr (text, " done ") || strstr (text, "/6") ||
        !strstr (text, "\rdpool map: 6 done, 1 failed, in "))
        dp_test_fail (__FILE__, __LINE__, "not a bar without a total:\n%s", text);
    free (run.text);
    s_stop ();
}

/*  --quiet on a terminal, and stderr on a file: nothing of the bar. */
static void
s_case_map_no_bar (void)
{
    s_start ();
    char out[4096];
    snprintf (out, sizeof out, "%s", dp_test_path ("out.jsonl")); /* a static buffer */
    char *const argv[] = {
        (char *)dp_test_cli_bin, "map", "test.steps", "--quiet", "--connect", s_broker.tcp, NULL};
    pty_run_t run;
    s_pty_start (&run, argv, s_input (), out);
    int status = s_pty_finish (&run, 0);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 1);
    CHECK_EQ_INT (s_output_lines (out), LINES);
    if (run.size > 0)
        dp_test_fail (__FILE__, __LINE__, "--quiet wrote:\n%s", run.text);
    free (run.text);

    const char *in = s_input ();
    char script[8192];
    int n = snprintf (script, sizeof script, "'%s' map test.steps --connect '%s' < '%s'",
                      dp_test_cli_bin, s_broker.tcp, in);
    snprintf (script + n, sizeof script - (size_t)n, " 2> '%s'", dp_test_path ("err.txt"));
    char *const shell[] = {"/bin/sh", "-c", script, NULL};
    s_pty_start (&run, shell, NULL, NULL);
    status = s_pty_finish (&run, 0);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 1);
    char *err = dp_test_read_file (dp_test_path ("err.txt"));
    CHECK (err);
    if (strstr (err, "dpool map:") || strchr (err, '\r'))
        dp_test_fail (__FILE__, __LINE__, "a bar on a file:\n%s", err);
    CHECK (strstr (run.text ? run.text : "", "\"dpool_error\"")); /* the results came */
    free (err);
    free (run.text);
    s_stop ();
}

/*  status --watch on a terminal clears the screen each turn; SIGTERM ends
    it with 128 + 15. */
static void
s_case_watch_tty (void)
{
    s_start ();
    char *const argv[] = {(char *)dp_test_cli_bin,
                          "status",
                          "--watch",
                          "--interval",
                          "1",
                          "--connect",
                          s_broker.tcp,
                          NULL};
    pty_run_t run;
    s_pty_start (&run, argv, NULL, NULL);
    if (!s_pty_read (&run, CLEAR, 3, RUN_MS))
        dp_test_fail (__FILE__, __LINE__, "not three screens:\n%s", run.text ? run.text : "");
    CHECK (strstr (run.text, CLEAR "dpool status every 1 s: "));
    CHECK (strstr (run.text, "\nworkers  "));
    int status = s_pty_finish (&run, SIGTERM);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 128 + SIGTERM);
    free (run.text);
    s_stop ();
}

typedef struct {
    const char *tag;
    const char *needle;
    int count;
} seen_t;

static bool
s_seen (void *arg)
{
    const seen_t *seen = (const seen_t *)arg;
    char *out = dp_test_output (seen->tag, "out");
    bool enough = s_count (out, seen->needle) >= seen->count;
    free (out);
    return enough;
}

/*  status --watch on a file: one block a turn, never a screen cleared;
    with --json one line a turn. SIGINT ends it with 128 + 2. */
static void
s_case_watch_blocks (void)
{
    s_start ();
    const char *table[] = {"status", "--watch", "--interval", "1", NULL};
    pid_t pid = dp_test_cli_spawn ("table", s_broker.tcp, table);
    seen_t seen = {"table", "dpool status every 1 s: ", 3};
    CHECK (dp_test_wait_until (s_seen, &seen, RUN_MS));
    int status = dp_test_stop (pid, SIGINT, RUN_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 128 + SIGINT);
    char *out = dp_test_output ("table", "out");
    CHECK (!strstr (out, "\033"));
    CHECK (s_count (out, "\nworkers  ") >= 3);
    free (out);

    const char *json[] = {"status", "--watch", "--interval", "1", "--json", NULL};
    pid = dp_test_cli_spawn ("json", s_broker.tcp, json);
    seen_t lines = {"json", "}\n", 2};
    CHECK (dp_test_wait_until (s_seen, &lines, RUN_MS));
    status = dp_test_stop (pid, SIGINT, RUN_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 128 + SIGINT);
    out = dp_test_output ("json", "out");
    CHECK (out[0] == '{');
    CHECK (strstr (out, "}\n{"));
    CHECK (!strstr (out, "dpool status every"));
    free (out);
    s_stop ();
}

static const dp_test_case_t s_cases[] = {
    {"cli_map_progress_bar", s_case_map_bar},
    {"cli_map_progress_bar_pipe", s_case_map_bar_pipe},
    {"cli_map_progress_off", s_case_map_no_bar},
    {"cli_status_watch_tty", s_case_watch_tty},
    {"cli_status_watch_blocks", s_case_watch_blocks},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

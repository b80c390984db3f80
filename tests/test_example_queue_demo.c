/*  test_example_queue_demo.c - the tutorial's second example
    (examples/queue_demo) prints what the tutorial prints: "(pid) start",
    the writer's and the reader's "started" lines, the letters of "itcast"
    in order as the reader takes them off the queue, and "(pid) End" with
    the program's own pid.

    Usage: test_example_queue_demo CASE: embedded, or with_broker (the same
    program serving the tasks to a dpool-broker with --worker, and another
    copy submitting them with --connect).
*/
#include "dp_testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef DPOOL_QUEUE_DEMO_BIN
#define DPOOL_QUEUE_DEMO_BIN "queue_demo"
#endif

#define RUN_TIMEOUT_MS  60000
#define STOP_TIMEOUT_MS 10000
#define MESSAGE         "itcast"

/*  Runs argv to a clean exit, its output in files named after tag. */
static pid_t
s_run (const char *tag, char *const argv[])
{
    pid_t pid = dp_test_spawn (tag, argv);
    int status = dp_test_wait_exit (pid, RUN_TIMEOUT_MS);
    char name[64];
    snprintf (name, sizeof name, "%s.err", tag);
    char *err = dp_test_read_file (dp_test_path (name));
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "%s ended with wait status %d: %s", argv[0], status,
                      err ? err : "");
    free (err);
    return pid;
}

static char *
s_stdout (const char *tag)
{
    char name[64];
    snprintf (name, sizeof name, "%s.out", tag);
    char *text = dp_test_read_file (dp_test_path (name));
    CHECK (text);
    return text;
}

/*  The program's own lines: "(pid) start" first and "(pid) End" last. */
static void
s_check_main (const char *text, pid_t pid, bool only)
{
    char start[64], end[64];
    snprintf (start, sizeof start, "(%ld) start\n", (long)pid);
    snprintf (end, sizeof end, "(%ld) End\n", (long)pid);
    size_t len = strlen (text), end_len = strlen (end);
    if (strncmp (text, start, strlen (start)) != 0 || len < end_len ||
        strcmp (text + len - end_len, end) != 0)
        dp_test_fail (__FILE__, __LINE__, "no start and end lines of %ld in:\n%s", (long)pid,
                      text);
    if (only && len != strlen (start) + end_len)
        dp_test_fail (__FILE__, __LINE__, "more than the start and end lines in:\n%s", text);
}

/*  The tasks' lines: the writer starts, then the reader, which prints each
    letter of "itcast" in order; every line is one of these. */
static void
s_check_tasks (const char *text)
{
    const char *writer = strstr (text, "writer started (");
    const char *reader = strstr (text, "reader started (");
    if (!writer || !reader || reader < writer)
        dp_test_fail (__FILE__, __LINE__, "writer then reader expected in:\n%s", text);
    long pid, ppid;
    CHECK (sscanf (writer, "writer started (%ld), parent (%ld)", &pid, &ppid) == 2);
    CHECK (pid > 0 && ppid > 0);
    CHECK (sscanf (reader, "reader started (%ld), parent (%ld)", &pid, &ppid) == 2);
    const char *at = reader;
    for (const char *letter = MESSAGE; *letter; letter++) {
        char line[64];
        snprintf (line, sizeof line, "reader got from the queue: %c\n", *letter);
        const char *found = strstr (at, line);
        if (!found)
            dp_test_fail (__FILE__, __LINE__, "no \"%.*s\" in order in:\n%s",
                          (int)strlen (line) - 1, line, text);
        at = found + strlen (line);
    }
    /*  Nothing else: 2 start lines and 6 letters (plus the main lines). */
    int lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    int expected = 2 + (int)strlen (MESSAGE);
    if (lines != expected && lines != expected + 2)
        dp_test_fail (__FILE__, __LINE__, "%d lines in:\n%s", lines, text);
}

static void
s_embedded (void)
{
    char *argv[] = {DPOOL_QUEUE_DEMO_BIN, NULL};
    pid_t pid = s_run ("demo", argv);
    char *text = s_stdout ("demo");
    s_check_main (text, pid, false);
    s_check_tasks (text);
    free (text);
}

static void
s_with_broker (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    char *worker_argv[] = {DPOOL_QUEUE_DEMO_BIN, "--worker", broker.tcp, "--procs", "2", NULL};
    pid_t worker = dp_test_spawn ("worker", worker_argv);
    char *client_argv[] = {DPOOL_QUEUE_DEMO_BIN, "--connect", broker.tcp, NULL};
    pid_t pid = s_run ("client", client_argv);
    char *client = s_stdout ("client");
    s_check_main (client, pid, true);
    free (client);
    char *served = s_stdout ("worker");
    s_check_tasks (served);
    free (served);
    int status = dp_test_stop (worker, SIGTERM, STOP_TIMEOUT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

static const dp_test_case_t s_cases[] = {
    {"example_queue_demo_embedded_prints_the_tutorials_lines", s_embedded},
    {"example_queue_demo_with_broker_prints_the_tutorials_lines", s_with_broker},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 90);
}

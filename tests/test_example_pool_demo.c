/*  test_example_pool_demo.c - the tutorial's Pool(3) example behaves like
    the tutorial: "----start----" then "-----end-----", each task 0..9
    started and finished exactly once, never more than three running at
    once, and (embedded) no more than three worker processes.

    Usage: test_example_pool_demo CASE, CASE being one of the names in
    main(): the example embedded, the example against a broker with the
    same program serving as the worker, and `dpool demo`.
*/
#include "dp_testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#ifndef DPOOL_POOL_DEMO_BIN
#define DPOOL_POOL_DEMO_BIN "pool_demo"
#endif

#define TEST_SECONDS    120   /* the deadline of each case */
#define RUN_TIMEOUT_MS  90000 /* of one run of the demo */
#define STOP_TIMEOUT_MS 10000 /* for the worker to stop on SIGTERM */
#define TASKS           10
#define PROCS           3
#define MAX_SLEEP_S     2.0
#define SLACK_S         1.0 /* scheduling noise allowed on top of a task's sleep */

/*  Runs argv with its output in files named after tag and waits for it to
    exit 0; stops the test otherwise. */
static void
s_run (const char *tag, char *const argv[])
{
    pid_t pid = dp_test_spawn (tag, argv);
    int status = dp_test_wait_exit (pid, RUN_TIMEOUT_MS);
    char name[64];
    snprintf (name, sizeof name, "%s.err", tag);
    char *err = dp_test_read_file (dp_test_path (name));
    if (status == -1)
        dp_test_fail (__FILE__, __LINE__, "%s did not end within %d ms: %s", argv[0],
                      RUN_TIMEOUT_MS, err ? err : "");
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "%s ended with wait status %d: %s", argv[0], status,
                      err ? err : "");
    free (err);
}

/*  The stdout of a finished run. */
static char *
s_stdout (const char *tag)
{
    char name[64];
    snprintf (name, sizeof name, "%s.out", tag);
    char *text = dp_test_read_file (dp_test_path (name));
    CHECK (text);
    return text;
}

/*  Checks the task lines of text: every other line must be a marker, and
    markers must appear exactly as expected (with_markers) or not at all.
    Each N in 0..9 starts once and then finishes once, with a time from 0 to
    2 s in two decimals; at most PROCS run at once; at most max_pids
    distinct pids. Stops the test on the first breach, quoting the text. */
static void
s_check_demo_output (const char *text, bool with_markers, int max_pids)
{
    bool started[TASKS] = {false}, finished[TASKS] = {false};
    long pids[TASKS * 2];
    int npids = 0, running = 0, start_marker = 0, end_marker = 0;
    const char *line = text;
    int line_no = 0;
    while (*line) {
        line_no++;
        const char *eol = strchr (line, '\n');
        CHECK (eol); /* every line ends with a newline */
        char buffer[256];
        size_t len = (size_t)(eol - line);
        if (len >= sizeof buffer)
            dp_test_fail (__FILE__, __LINE__, "line %d too long in:\n%s", line_no, text);
        memcpy (buffer, line, len);
        buffer[len] = 0;
        line = eol + 1;

        int n, consumed = 0;
        long pid;
        char seconds[32];
        if (strcmp (buffer, "----start----") == 0) {
            if (start_marker++ || end_marker)
                dp_test_fail (__FILE__, __LINE__, "misplaced start marker in:\n%s", text);
        } else if (strcmp (buffer, "-----end-----") == 0) {
            if (end_marker++ || !start_marker || running)
                dp_test_fail (__FILE__, __LINE__, "misplaced end marker in:\n%s", text);
        } else if (sscanf (buffer, "%d started, pid %ld%n", &n, &pid, &consumed) == 2 &&
                   consumed == (int)len) {
            if (n < 0 || n >= TASKS || started[n] || end_marker)
                dp_test_fail (__FILE__, __LINE__, "bad start of %d in:\n%s", n, text);
            started[n] = true;
            if (++running > PROCS)
                dp_test_fail (__FILE__, __LINE__, "more than %d running at line %d in:\n%s", PROCS,
                              line_no, text);
            bool known = false;
            for (int i = 0; i < npids; i++)
                known |= pids[i] == pid;
            if (!known)
                pids[npids++] = pid;
        } else if (sscanf (buffer, "%d finished in %31s s%n", &n, seconds, &consumed) == 2 &&
                   consumed == (int)len) {
            if (n < 0 || n >= TASKS || !started[n] || finished[n])
                dp_test_fail (__FILE__, __LINE__, "bad finish of %d in:\n%s", n, text);
            finished[n] = true;
            running--;
            char *end;
            double t = strtod (seconds, &end);
            const char *dot = strchr (seconds, '.');
            if (*end || !dot || strlen (dot) != 3 || t < 0 || t > MAX_SLEEP_S + SLACK_S)
                dp_test_fail (__FILE__, __LINE__, "bad time '%s' in:\n%s", seconds, text);
        } else
            dp_test_fail (__FILE__, __LINE__, "unexpected line %d \"%s\" in:\n%s", line_no, buffer,
                          text);
    }
    for (int n = 0; n < TASKS; n++)
        if (!started[n] || !finished[n])
            dp_test_fail (__FILE__, __LINE__, "task %d did not start and finish in:\n%s", n, text);
    if (with_markers && (start_marker != 1 || end_marker != 1))
        dp_test_fail (__FILE__, __LINE__, "markers missing in:\n%s", text);
    if (!with_markers && (start_marker || end_marker))
        dp_test_fail (__FILE__, __LINE__, "markers in the workers' output:\n%s", text);
    if (npids > max_pids)
        dp_test_fail (__FILE__, __LINE__, "%d pids, at most %d expected in:\n%s", npids, max_pids,
                      text);
}

/*  pool_demo with no option: the embedded Pool(3). */
static void
s_pool_demo_embedded (void)
{
    char *argv[] = {DPOOL_POOL_DEMO_BIN, NULL};
    s_run ("demo", argv);
    char *text = s_stdout ("demo");
    s_check_demo_output (text, true, PROCS);
    free (text);
}

/*  pool_demo --worker serves three processes to a broker; pool_demo
    --connect submits the ten tasks there. The tasks print in the workers;
    the client prints the two markers and nothing else. */
static void
s_pool_demo_with_broker (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    char *worker_argv[] = {DPOOL_POOL_DEMO_BIN, "--worker", broker.tcp, "--procs", "3", NULL};
    pid_t worker = dp_test_spawn ("worker", worker_argv);
    char *client_argv[] = {DPOOL_POOL_DEMO_BIN, "--connect", broker.tcp, NULL};
    s_run ("client", client_argv);

    char *client = s_stdout ("client");
    CHECK_EQ_STR (client, "----start----\n-----end-----\n");
    free (client);
    char *served = s_stdout ("worker");
    s_check_demo_output (served, false, PROCS);
    free (served);

    int status = dp_test_stop (worker, SIGTERM, STOP_TIMEOUT_MS);
    CHECK (status != -1);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

/*  `dpool demo`: the same demo, embedded in the dpool command. */
static void
s_dpool_demo_embedded (void)
{
    char *argv[] = {(char *)dp_test_cli_bin, "demo", NULL};
    s_run ("demo", argv);
    char *text = s_stdout ("demo");
    s_check_demo_output (text, true, PROCS);
    free (text);
}

static const dp_test_case_t s_cases[] = {
    {"example_pool_demo_embedded", s_pool_demo_embedded},
    {"example_pool_demo_with_broker", s_pool_demo_with_broker},
    {"example_dpool_demo_embedded", s_dpool_demo_embedded},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

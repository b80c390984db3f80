/*  test_cli_commands.c - the dpool command against a real dpool-broker and
    dpool-workers: map streams many lines in order, failures are marked and
    set the exit status, apply and status print what they should, help,
    version and bad usage behave, and an absent broker ends in exit 3.

    Usage: test_cli_commands CASE, CASE being one of the names in main().
    Every program runs through /bin/sh with its output in files of the
    test's private directory, under a deadline.
*/
#include "dp_testutil.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define TEST_SECONDS     180   /* the deadline of each case */
#define RUN_TIMEOUT_MS   60000 /* of one command */
#define MAP_LINES        10000 /* lines through map in the big case */
#define COMMAND_SIZE     8192
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3
#define EXIT_INPUT       4

/*  Runs a shell command line built from format, with stdout and stderr in
    files named after tag, and waits up to timeout_ms for it. Returns its
    exit status; stops the test if it did not exit in time or was killed. */
static int
s_sh (const char *tag, int timeout_ms, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_sh (const char *tag, int timeout_ms, const char *format, ...)
{
    char command[COMMAND_SIZE];
    va_list args;
    va_start (args, format);
    vsnprintf (command, sizeof command, format, args);
    va_end (args);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t pid = dp_test_spawn (tag, argv);
    int status = dp_test_wait_exit (pid, timeout_ms);
    if (status == -1)
        dp_test_fail (__FILE__, __LINE__, "[%s] did not end within %d ms: %s", tag, timeout_ms,
                      command);
    if (!WIFEXITED (status))
        dp_test_fail (__FILE__, __LINE__, "[%s] was killed by signal %d: %s", tag,
                      WTERMSIG (status), command);
    return WEXITSTATUS (status);
}

/*  Writes text to a file of the test directory and returns its path (a
    static buffer the next call overwrites). */
static const char *
s_write_file (const char *name, const char *text)
{
    const char *path = dp_test_path (name);
    FILE *file = fopen (path, "w");
    CHECK (file);
    CHECK (fputs (text, file) >= 0);
    CHECK (fclose (file) == 0);
    return path;
}

/*  A broker with workers offering the built-in functions. */
static void
s_start_cluster (dp_test_broker_t *broker, int procs)
{
    dp_test_broker_start (broker, NULL);
    dp_test_workers_start (broker->tcp, procs, NULL);
}

/*  Runs `dpool map FN [options]` on input text (a file in the test
    directory) and returns its exit status. */
static int
s_map (const char *tag, const char *endpoint, const char *fn, const char *options,
       const char *input)
{
    char name[128];
    snprintf (name, sizeof name, "%s.in", tag);
    s_write_file (name, input);
    return s_sh (tag, RUN_TIMEOUT_MS, "'%s' map '%s' --connect '%s' %s < '%s'", dp_test_cli_bin,
                 fn, endpoint, options, dp_test_path (name));
}

/*  10,000 lines of every kind of JSON go through echo and come back, each
    on its own line, in order, byte for byte. */
static void
s_map_echo_10000_lines_in_order (void)
{
    dp_test_broker_t broker;
    s_start_cluster (&broker, 4);

    const char *in_path = dp_test_path ("lines.in");
    FILE *in = fopen (in_path, "w");
    CHECK (in);
    for (int i = 0; i < MAP_LINES; i++) {
        switch (i % 6) {
        case 0:
            fprintf (in, "%d\n", i);
            break;
        case 1:
            fprintf (in,
                     "{\"i\":%d,\"s\":\"line %d \\t \\\"q\\\" \xc3\xa9\",\"f\":%d.25,"
                     "\"neg\":%d}\n",
                     i, i, i, -i);
            break;
        case 2:
            fprintf (in, "[%d,%llu,-9223372036854775808,true,false,null,[],{}]\n", i,
                     18446744073709551615ULL - (unsigned long long)i);
            break;
        case 3:
            fprintf (in, "\"text %d\"\n", i);
            break;
        case 4:
            fprintf (in, "{\"bin\":{\"$bin\":\"AAEC\"},\"nested\":{\"a\":[{\"b\":[%d.75]}]}}\n",
                     i);
            break;
        default:
            fprintf (in, "-%d.5\n", i);
            break;
        }
    }
    CHECK (fclose (in) == 0);

    int rc = s_sh ("map", RUN_TIMEOUT_MS, "'%s' map echo --connect '%s' < '%s'", dp_test_cli_bin,
                   broker.tcp, in_path);
    if (rc != 0) {
        char *err = dp_test_output ("map", "err");
        dp_test_fail (__FILE__, __LINE__, "map exited %d: %s", rc, err);
    }
    char *expected = dp_test_read_file (in_path);
    char *got = dp_test_output ("map", "out");
    CHECK (expected);
    if (strcmp (expected, got) != 0) {
        /*  Name the first line that differs. */
        const char *a = expected, *b = got;
        int line = 1;
        while (*a && *a == *b) {
            if (*a == '\n')
                line++;
            a++;
            b++;
        }
        const char *a_end = strchr (a, '\n'), *b_end = strchr (b, '\n');
        dp_test_fail (__FILE__, __LINE__, "output line %d differs near \"%.*s\" vs \"%.*s\"", line,
                      (int)(a_end ? a_end - a : 40), a, (int)(b_end ? b_end - b : 40), b);
    }
    free (expected);
    free (got);
}

/*  A failed task prints the failure marking on its own line, the other
    lines are unaffected, and the exit status is 1; bad input stops with
    the line number and exit status 4 after the lines before it. */
static void
s_map_failure_marked_and_exit_status (void)
{
    dp_test_broker_t broker;
    s_start_cluster (&broker, 2);
    const char *ep = broker.tcp;

    /*  sleep fails on anything but a number. */
    CHECK_EQ_INT (s_map ("mixed", ep, "sleep", "", "0\n\"bad\"\n0.01\n[0]\n{\"x\":1}\n"), 1);
    dp_test_check_stdout ("mixed", "0\n"
                                   "{\"dpool_error\":{\"code\":\"EFAILED\","
                                   "\"message\":\"sleep: expected a number of seconds\"}}\n"
                                   "0.01\n"
                                   "[0]\n"
                                   "{\"dpool_error\":{\"code\":\"EFAILED\","
                                   "\"message\":\"sleep: expected a number of seconds\"}}\n");

    /*  The function's own message, escaped as JSON. */
    CHECK_EQ_INT (s_map ("fail", ep, "fail", "--chunksize 1", "\"boom \\\"quoted\\\"\"\n"), 1);
    dp_test_check_stdout ("fail", "{\"dpool_error\":{\"code\":\"EFAILED\","
                                  "\"message\":\"boom \\\"quoted\\\"\"}}\n");

    /*  A task past its time limit ends EDEADLINE; the other line is fine
        (with a time limit, map sends one task per chunk). */
    CHECK_EQ_INT (s_map ("deadline", ep, "sleep", "--timeout-ms 300", "10\n0\n"), 1);
    dp_test_check_contains ("deadline", "out", "{\"dpool_error\":{\"code\":\"EDEADLINE\",");
    dp_test_check_contains ("deadline", "out", "}}\n0\n");

    /*  No worker offers the function. */
    CHECK_EQ_INT (s_map ("nofunc", ep, "no.such.function", "", "1\n2\n"), 1);
    dp_test_check_contains ("nofunc", "out", "{\"dpool_error\":{\"code\":\"ENOFUNC\",");

    /*  Every task succeeded: exit status 0; empty input: no output. */
    CHECK_EQ_INT (s_map ("ok", ep, "echo", "", "[1]\n\"two\"\n"), 0);
    dp_test_check_stdout ("ok", "[1]\n\"two\"\n");
    CHECK_EQ_INT (s_map ("empty", ep, "echo", "", ""), 0);
    dp_test_check_stdout ("empty", "");
    /*  The last line may lack its newline; CRLF is fine. */
    CHECK_EQ_INT (s_map ("crlf", ep, "echo", "", "1\r\n2"), 0);
    dp_test_check_stdout ("crlf", "1\n2\n");

    /*  A blank line: the lines before it run, then exit 4 naming it. */
    CHECK_EQ_INT (s_map ("blank", ep, "echo", "", "1\n2\n\n4\n"), EXIT_INPUT);
    dp_test_check_stdout ("blank", "1\n2\n");
    dp_test_check_contains ("blank", "err", "line 3");
    dp_test_check_contains ("blank", "err", "blank");

    /*  Invalid JSON, likewise. */
    CHECK_EQ_INT (s_map ("invalid", ep, "echo", "--batch 1", "1\n{\"a\":\n3\n"), EXIT_INPUT);
    dp_test_check_stdout ("invalid", "1\n");
    dp_test_check_contains ("invalid", "err", "line 2");
    dp_test_check_contains ("invalid", "err", "invalid JSON");

    /*  Arguments nested deeper than a task can carry, likewise. */
    char deep[128] = "1\n";
    for (int i = 0; i < 40; i++)
        strcat (deep, "[");
    for (int i = 0; i < 40; i++)
        strcat (deep, "]");
    strcat (deep, "\n");
    CHECK_EQ_INT (s_map ("deep", ep, "echo", "", deep), EXIT_INPUT);
    dp_test_check_stdout ("deep", "1\n");
    dp_test_check_contains ("deep", "err",
                            "line 2: arrays and objects nested deeper than 31 levels");
}

/*  Counts the workers in `dpool status --json` output; -1 if unreadable. */
static int
s_status_workers (const char *tag)
{
    char *text = dp_test_output (tag, "out");
    json_error_t error;
    json_t *status = json_loads (text, 0, &error);
    free (text);
    json_t *workers = status ? json_object_get (status, "workers") : NULL;
    int count = json_is_array (workers) ? (int)json_array_size (workers) : -1;
    json_decref (status);
    return count;
}

/*  True once the broker at endpoint (arg) reports a task in flight. */
static bool
s_task_in_flight (void *arg)
{
    static int serial;
    char tag[32];
    snprintf (tag, sizeof tag, "inflight%d", ++serial);
    if (s_sh (tag, RUN_TIMEOUT_MS, "'%s' status --json --connect '%s'", dp_test_cli_bin,
              (const char *)arg) != 0)
        return false;
    char *text = dp_test_output (tag, "out");
    json_error_t error;
    json_t *status = json_loads (text, 0, &error);
    free (text);
    json_t *inflight = status ? json_object_get (status, "inflight") : NULL;
    bool running = json_is_integer (inflight) && json_integer_value (inflight) >= 1;
    json_decref (status);
    return running;
}

/*  apply prints a result or fails with exit 1 (EFAILED) or EXIT_INPUT
    (bad JSON); options come from DPOOL_* variables too. */
static void
s_check_apply (const dp_test_broker_t *broker, const char *cli)
{
    CHECK_EQ_INT (s_sh ("apply", RUN_TIMEOUT_MS,
                        "'%s' apply echo '{\"a\": [1, 2.5, \"x\"]}' "
                        "--connect '%s'",
                        cli, broker->tcp),
                  0);
    dp_test_check_stdout ("apply", "{\"a\":[1,2.5,\"x\"]}\n");
    CHECK_EQ_INT (
        s_sh ("negative", RUN_TIMEOUT_MS, "'%s' apply echo -5 --connect '%s'", cli, broker->ipc),
        0);
    dp_test_check_stdout ("negative", "-5\n");
    CHECK_EQ_INT (
        s_sh ("env", RUN_TIMEOUT_MS, "DPOOL_CONNECT='%s' '%s' apply pid null", broker->tcp, cli),
        0);
    dp_test_check_contains ("env", "out", "{\"pid\":");

    CHECK_EQ_INT (s_sh ("failed", RUN_TIMEOUT_MS, "'%s' apply fail '\"boom\"' --connect '%s'", cli,
                        broker->tcp),
                  1);
    dp_test_check_stdout ("failed", "");
    dp_test_check_contains ("failed", "err", "EFAILED");
    dp_test_check_contains ("failed", "err", "boom");

    CHECK_EQ_INT (s_sh ("badjson", RUN_TIMEOUT_MS, "'%s' apply echo '{bad' --connect '%s'", cli,
                        broker->tcp),
                  EXIT_INPUT);
    dp_test_check_contains ("badjson", "err", "invalid JSON");
}

/*  status prints the broker's workers as a table or as JSON. */
static void
s_check_status (const dp_test_broker_t *broker, const char *cli)
{
    /*  Status: wait until both workers are registered. */
    int workers = -1;
    for (int attempt = 0; attempt < 100 && workers != 2; attempt++) {
        char tag[32];
        snprintf (tag, sizeof tag, "json%d", attempt);
        CHECK_EQ_INT (s_sh (tag, RUN_TIMEOUT_MS, "DPOOL_JSON=1 '%s' status --connect '%s'", cli,
                            broker->tcp),
                      0);
        workers = s_status_workers (tag);
        if (workers != 2)
            dp_test_sleep_ms (100);
    }
    CHECK_EQ_INT (workers, 2);
    CHECK_EQ_INT (
        s_sh ("statusjson", RUN_TIMEOUT_MS, "'%s' status --json --connect '%s'", cli, broker->tcp),
        0);
    char *text = dp_test_output ("statusjson", "out");
    json_error_t error;
    json_t *status = json_loads (text, 0, &error);
    if (!status)
        dp_test_fail (__FILE__, __LINE__, "status --json is not JSON (%s): %s", error.text, text);
    CHECK (strchr (text, '\n') == text + strlen (text) - 1); /* one line */
    free (text);
    CHECK (json_is_string (json_object_get (status, "broker")));
    CHECK (json_is_integer (json_object_get (status, "queued")));
    CHECK (json_is_integer (json_object_get (status, "inflight")));
    CHECK (json_integer_value (json_object_get (status, "done")) >= 3);
    CHECK (json_integer_value (json_object_get (status, "failed")) >= 1);
    json_t *worker = json_array_get (json_object_get (status, "workers"), 0);
    json_t *functions = json_object_get (worker, "functions");
    bool has_echo = false;
    for (size_t i = 0; i < json_array_size (functions); i++)
        has_echo |= strcmp (json_string_value (json_array_get (functions, i)), "echo") == 0;
    CHECK (has_echo);
    json_decref (status);

    CHECK_EQ_INT (s_sh ("table", RUN_TIMEOUT_MS, "'%s' status --connect '%s'", cli, broker->tcp),
                  0);
    dp_test_check_contains ("table", "out", "broker ");
    dp_test_check_contains ("table", "out", "tasks    queued 0, in flight 0, done ");
    dp_test_check_contains ("table", "out", "workers  2\n");
    dp_test_check_contains ("table", "out", "FUNCTIONS");
    dp_test_check_contains ("table", "out", "echo");
}

/*  An absent broker ends status, apply and map in exit 3 within the
    connect timeout. */
static void
s_check_no_broker (const char *cli)
{
    /*  Nobody listens here: exit 3, quickly, with a clear message. */
    const char *nowhere = dp_test_ipc ("nobody");
    CHECK_EQ_INT (s_sh ("nobroker", 20000, "'%s' status --connect '%s' --connect-timeout-ms 500",
                        cli, nowhere),
                  EXIT_UNREACHABLE);
    dp_test_check_contains ("nobroker", "err", "cannot reach the broker");
    CHECK_EQ_INT (s_sh ("nobroker_apply", 20000,
                        "DPOOL_CONNECT_TIMEOUT_MS=500 '%s' apply echo 1 --connect '%s'", cli,
                        nowhere),
                  EXIT_UNREACHABLE);
    s_write_file ("nobroker.in", "1\n");
    CHECK_EQ_INT (s_sh ("nobroker_map", 20000,
                        "'%s' map echo --connect-timeout-ms=500 --connect '%s' < '%s'", cli,
                        nowhere, dp_test_path ("nobroker.in")),
                  EXIT_UNREACHABLE);
    dp_test_check_stdout ("nobroker_map", "");
}

/*  A broker lost in the middle of a map ends it in exit 3, no hang. */
static void
s_check_broker_lost (dp_test_broker_t *broker, const char *cli)
{
    /*  The broker goes away in the middle of a map: exit 3, no hang. */
    s_write_file ("sleepy.in", "30\n");
    char command[COMMAND_SIZE];
    snprintf (command, sizeof command,
              "'%s' map sleep --connect '%s' --connect-timeout-ms 1000 < '%s'", cli, broker->tcp,
              dp_test_path ("sleepy.in"));
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t map = dp_test_spawn ("lost", argv);
    /*  Kill the broker once the task is running on a worker. */
    CHECK (dp_test_wait_until (s_task_in_flight, broker->tcp, RUN_TIMEOUT_MS));
    dp_test_stop (broker->pid, SIGKILL, 5000);
    int rc = dp_test_wait_exit (map, 20000);
    CHECK (rc != -1 && WIFEXITED (rc));
    CHECK_EQ_INT (WEXITSTATUS (rc), EXIT_UNREACHABLE);
    dp_test_check_contains ("lost", "err", "lost the broker");
}

/*  apply prints a result or fails with exit 1; status prints the broker's
    workers as a table or as JSON; options come from DPOOL_* variables too;
    an absent broker ends in exit 3 within the connect timeout. */
static void
s_apply_and_status (void)
{
    dp_test_broker_t broker;
    s_start_cluster (&broker, 2);
    const char *cli = dp_test_cli_bin;
    s_check_apply (&broker, cli);
    s_check_status (&broker, cli);
    s_check_no_broker (cli);
    s_check_broker_lost (&broker, cli);
}

/*  Stops the test unless the program at bin answers --help and --version
    with exit 0 (help naming its usage, version its number) and an unknown
    option with exit 2 and a message. */
static void
s_check_program_help (const char *name, const char *bin)
{
    char tag[64];
    snprintf (tag, sizeof tag, "%s_help", name);
    CHECK_EQ_INT (s_sh (tag, RUN_TIMEOUT_MS, "'%s' --help", bin), 0);
    char *help = dp_test_output (tag, "out");
    if (!strstr (help, "usage") && !strstr (help, "Usage"))
        dp_test_fail (__FILE__, __LINE__, "%s --help shows no usage: %s", name, help);
    free (help);
    snprintf (tag, sizeof tag, "%s_version", name);
    CHECK_EQ_INT (s_sh (tag, RUN_TIMEOUT_MS, "'%s' --version", bin), 0);
    dp_test_check_contains (tag, "out", "0.1.0");
    snprintf (tag, sizeof tag, "%s_bad", name);
    CHECK_EQ_INT (s_sh (tag, RUN_TIMEOUT_MS, "'%s' --no-such-option", bin), EXIT_USAGE);
    char *err = dp_test_output (tag, "err");
    CHECK (strlen (err) > 0);
    free (err);
}

/*  Help on the command and every subcommand, the version, and exit 2 with
    a message for each kind of bad usage; the same for dpool-broker and
    dpool-worker. */
static void
s_help_and_version (void)
{
    const char *cli = dp_test_cli_bin;
    CHECK_EQ_INT (s_sh ("help", RUN_TIMEOUT_MS, "'%s' --help", cli), 0);
    dp_test_check_contains ("help", "out", "usage: dpool COMMAND");
    dp_test_check_contains ("help", "out", "DPOOL_CONNECT");
    const char *commands[] = {"map", "apply", "status", "demo"};
    for (size_t i = 0; i < 4; i++) {
        char tag[64], usage[64];
        snprintf (usage, sizeof usage, "usage: dpool %s", commands[i]);
        snprintf (tag, sizeof tag, "help_%s", commands[i]);
        CHECK_EQ_INT (s_sh (tag, RUN_TIMEOUT_MS, "'%s' %s --help", cli, commands[i]), 0);
        dp_test_check_contains (tag, "out", usage);
        snprintf (tag, sizeof tag, "help_cmd_%s", commands[i]);
        CHECK_EQ_INT (s_sh (tag, RUN_TIMEOUT_MS, "'%s' help %s", cli, commands[i]), 0);
        dp_test_check_contains (tag, "out", usage);
    }
    dp_test_check_contains ("help_map", "out", "{\"dpool_error\":{\"code\":");
    dp_test_check_contains ("help_map", "out", "DPOOL_CHUNKSIZE");
    CHECK_EQ_INT (s_sh ("version", RUN_TIMEOUT_MS, "'%s' --version", cli), 0);
    dp_test_check_stdout ("version", "dpool 0.1.0\n");

    static const struct {
        const char *args;
        const char *message;
    } bad[] = {
        {"", "usage: dpool"},
        {"frobnicate", "unknown command"},
        {"map", "one argument"},
        {"map echo extra", "one argument"},
        {"apply echo", "two arguments"},
        {"map echo --bogus", "unknown option"},
        {"map echo --chunksize", "wants a value"},
        {"map echo --chunksize x", "--chunksize"},
        {"map echo --chunksize -3", "--chunksize"},
        {"status --chunksize 5", "does not apply"},
        {"apply '' 1", "FN"},
        {"demo --worker tcp://127.0.0.1:1 --connect tcp://127.0.0.1:1", "exclude"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char tag[32];
        snprintf (tag, sizeof tag, "bad%zu", i);
        int rc = s_sh (tag, RUN_TIMEOUT_MS, "'%s' %s", cli, bad[i].args);
        if (rc != EXIT_USAGE)
            dp_test_fail (__FILE__, __LINE__, "dpool %s exited %d, expected 2", bad[i].args, rc);
        dp_test_check_contains (tag, "err", bad[i].message);
    }
    CHECK_EQ_INT (s_sh ("badenv", RUN_TIMEOUT_MS, "DPOOL_CHUNKSIZE=abc '%s' map echo", cli),
                  EXIT_USAGE);
    dp_test_check_contains ("badenv", "err", "DPOOL_CHUNKSIZE");

#ifdef DPOOL_BROKER_BIN
    s_check_program_help ("broker", dp_test_broker_bin);
#endif
#ifdef DPOOL_WORKER_BIN
    s_check_program_help ("worker", dp_test_worker_bin);
#endif
}

static const dp_test_case_t s_cases[] = {
    {"cli_map_echo_10000_lines_in_order", s_map_echo_10000_lines_in_order},
    {"cli_map_failure_marked_and_exit_status", s_map_failure_marked_and_exit_status},
    {"cli_apply_and_status", s_apply_and_status},
    {"cli_help_and_version", s_help_and_version},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

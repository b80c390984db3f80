/*  test_cli_queue.c - `dpool queue put|get|size` against a real broker:
    values in and out as JSON in FIFO order, waits and their timeouts, a
    get that waits for another process's put, and the exit statuses of
    every failure.
*/
#include "dp_testutil.h"
#include "dp_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define RUN_MS 20000 /* the longest one command may take */

static dp_test_broker_t s_broker;

/*  Runs dpool with args (NULL-terminated) and --connect to the broker;
    returns its exit status and (caller frees) its stdout and stderr. */
static int
s_dpool (const char *const *args, char **out, char **err)
{
    static int serial;
    char tag[32];
    snprintf (tag, sizeof tag, "dpool%d", ++serial);
    return dp_test_cli_run (tag, s_broker.tcp, args, RUN_MS, out, err);
}

/*  Runs dpool expecting status and, if not NULL, exactly that stdout and
    a stderr holding err_has. */
static void
s_expect (const char *const *args, int status, const char *out, const char *err_has)
{
    char *got_out, *got_err;
    int got = s_dpool (args, &got_out, &got_err);
    if (got != status || (out && strcmp (got_out, out) != 0) ||
        (err_has && !strstr (got_err, err_has)))
        dp_test_fail (__FILE__, __LINE__,
                      "dpool %s %s: exit %d, stdout \"%s\", stderr \"%s\"; expected exit %d%s%s",
                      args[0], args[1] ? args[1] : "", got, got_out, got_err, status,
                      out ? ", stdout " : "", out ? out : "");
    free (got_out);
    free (got_err);
}

/*  The program's one case. */
static void
s_case_cli_queue_put_get_size_waits_and_exit_statuses (void)
{
    dp_test_broker_start (&s_broker, NULL);

    /*  FIFO, JSON in and out (compact), size. */
    const char *put1[] = {"queue", "put", "jobs", "{\"a\": [1, 2.5, \"x\"]}", NULL};
    const char *put2[] = {"queue", "put", "jobs", "\"second\"", NULL};
    const char *put3[] = {"queue", "put", "jobs", "-3", NULL};
    s_expect (put1, 0, "", NULL);
    s_expect (put2, 0, "", NULL);
    s_expect (put3, 0, "", NULL);
    const char *size[] = {"queue", "size", "jobs", NULL};
    s_expect (size, 0, "3\n", NULL);
    const char *get[] = {"queue", "get", "jobs", NULL};
    s_expect (get, 0, "{\"a\":[1,2.5,\"x\"]}\n", NULL);
    s_expect (get, 0, "\"second\"\n", NULL);
    s_expect (get, 0, "-3\n", NULL);
    s_expect (size, 0, "0\n", NULL);

    /*  Empty: not waiting fails at once, waiting fails after its time. */
    const char *nowait[] = {"queue", "get", "jobs", "--timeout-ms", "0", NULL};
    s_expect (nowait, 1, "", "EAGAIN");
    const char *wait[] = {"queue", "get", "jobs", "--timeout-ms=300", NULL};
    int64_t start = dp_now_ms ();
    s_expect (wait, 1, "", "ETIMEOUT");
    CHECK (dp_now_ms () - start >= 300);

    /*  A get without a timeout waits for another process's put. */
    const char *argv[] = {dp_test_cli_bin, "queue",      "get", "later",
                          "--connect",     s_broker.tcp, NULL};
    pid_t waiting = dp_test_spawn ("waiting", (char *const *)argv);
    CHECK (dp_test_wait_exit (waiting, 500) == -1); /* still waiting */
    const char *put_later[] = {"queue", "put", "later", "[\"late\", null, true]", NULL};
    s_expect (put_later, 0, "", NULL);
    int status = dp_test_wait_exit (waiting, RUN_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    char *out = dp_test_read_file (dp_test_path ("waiting.out"));
    CHECK (out);
    CHECK_EQ_STR (out, "[\"late\",null,true]\n");
    free (out);

    /*  Mistakes: usage 2, invalid JSON 4; an unreachable broker 3. */
    const char *no_op[] = {"queue", "jobs", NULL};
    s_expect (no_op, 2, NULL, "queue takes put NAME JSON");
    const char *no_json[] = {"queue", "put", "jobs", NULL};
    s_expect (no_json, 2, NULL, "queue put takes NAME and JSON");
    const char *extra[] = {"queue", "size", "jobs", "more", NULL};
    s_expect (extra, 2, NULL, "queue size takes NAME");
    const char *bad_json[] = {"queue", "put", "jobs", "{oops", NULL};
    s_expect (bad_json, 4, NULL, "invalid JSON");
    const char *bad_timeout[] = {"queue", "get", "jobs", "--timeout-ms", "-5", NULL};
    s_expect (bad_timeout, 2, NULL, "--timeout-ms");
    const char *help[] = {dp_test_cli_bin, "queue", "--help", NULL};
    pid_t pid = dp_test_spawn ("help", (char *const *)help);
    status = dp_test_wait_exit (pid, RUN_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    out = dp_test_read_file (dp_test_path ("help.out"));
    CHECK (out && strstr (out, "queue put NAME JSON") && strstr (out, "queue get NAME") &&
           strstr (out, "queue size NAME") && strstr (out, "--timeout-ms"));
    free (out);
    const char *gone[] = {
        dp_test_cli_bin,        "queue", "size", "jobs", "--connect", "tcp://127.0.0.1:1",
        "--connect-timeout-ms", "200",   NULL};
    pid = dp_test_spawn ("gone", (char *const *)gone);
    status = dp_test_wait_exit (pid, RUN_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 3);

    /*  The broker's status lists the queues. */
    const char *status_args[] = {"status", NULL};
    char *status_out, *status_err;
    CHECK_EQ_INT (s_dpool (status_args, &status_out, &status_err), 0);
    CHECK (strstr (status_out, "queues") && strstr (status_out, "jobs"));
    free (status_out);
    free (status_err);
}

static const dp_test_case_t s_cases[] = {
    {"cli_queue_put_get_size_waits_and_exit_statuses",
     s_case_cli_queue_put_get_size_waits_and_exit_statuses},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

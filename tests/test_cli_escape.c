/*  test_cli_escape.c - names and messages that come from the network reach
    the terminal escaped: `dpool status` prints a broker, a worker and a
    queue whose names hold escape sequences, newlines, returns, C1 controls
    and invalid UTF-8 without a single control byte and with no forged row,
    `dpool apply` prints a worker's failure message the same way, and
    `--json` stays JSON.

    The hostile names come from a real dpool-broker started with one, and
    from hand-made protocol peers (tests/dp_testpeer): a worker that
    registers with them and a client that opens such a queue.
*/
#include "dp_testpeer.h"
#include "dp_testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <zmq.h>

#define TEST_SECONDS 60
#define RUN_MS       20000

#define BROKER_NAME "evil\x1b[2J\nbroker 1"
#define WORKER_NAME "w\x1b[H\x1b[2J\n  forged-worker  localhost 1\rX"
#define WORKER_HOST                                                                               \
    "h\x1b]0;title\x07\xc2\x9b"                                                                   \
    "31m\xff"
#define WORKER_FN  "fn\x1b[31m\x7f"
#define QUEUE_NAME "q\x1b[1A\nqueues   99\r"

static void *s_ctx;
static dp_test_broker_t s_broker;

/*  Runs dpool with args (NULL-terminated) and --connect to the broker;
    returns its exit status and (caller frees) its stdout and stderr. */
static int
s_dpool (const char *tag, const char *const *args, char **out, char **err)
{
    return dp_test_cli_run (tag, s_broker.tcp, args, RUN_MS, out, err);
}

/*  Stops the test if text holds a control byte other than newline (C0,
    DEL, or a C1 control's UTF-8 form) or a byte that is not UTF-8. */
static void
s_check_no_control (const char *what, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; s[i]; i++) {
        bool bad = (s[i] < 0x20 && s[i] != '\n') || s[i] == 0x7f || s[i] == 0xff ||
                   (s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f);
        if (bad)
            dp_test_fail (__FILE__, __LINE__, "%s holds byte 0x%02x at %zu:\n%s", what, s[i], i,
                          text);
    }
}

/*  Stops the test unless text contains needle. */
static void
s_check_has (const char *what, const char *text, const char *needle)
{
    if (!strstr (text, needle))
        dp_test_fail (__FILE__, __LINE__, "%s lacks \"%s\":\n%s", what, needle, text);
}

/*  The number of lines of text that start with prefix. */
static int
s_lines_starting (const char *text, const char *prefix)
{
    int count = 0;
    for (const char *line = text; line && *line; line = strchr (line, '\n'), line += !!line)
        count += strncmp (line, prefix, strlen (prefix)) == 0;
    return count;
}

/*  A worker peer that registers with hostile name, host and function. */
static dp_testpeer_t *
s_hostile_worker (void)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    const char *fns[] = {WORKER_FN, "plain"};
    dp_encode_ready (&peer->w, WORKER_NAME, 4242, WORKER_HOST, 1, fns, 2);
    dp_testpeer_send (peer, DP_CMD_READY);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    return peer;
}

/*  A client peer that opens a queue with a hostile name. */
static dp_testpeer_t *
s_hostile_queue (void)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, 0x5a, sizeof session);
    dp_encode_hello (&peer->w, session, "queue\x1b[2Jclient");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    dp_encode_queue_open (&peer->w, 1, QUEUE_NAME, 0);
    dp_testpeer_send (peer, DP_CMD_QUEUE_OPEN);
    dp_testpeer_expect (peer, DP_CMD_QUEUE_REPLY);
    CHECK_EQ_INT (peer->msg.u.queue_reply.code, 0);
    return peer;
}

/*  `dpool status` prints every hostile name escaped, one row each. */
static void
s_case_status_escapes_names (void)
{
    const char *const extra[] = {"--name", BROKER_NAME, NULL};
    dp_test_broker_start (&s_broker, extra);
    dp_testpeer_t *worker = s_hostile_worker ();
    dp_testpeer_t *client = s_hostile_queue ();

    const char *table[] = {"status", NULL};
    char *out, *err;
    CHECK_EQ_INT (s_dpool ("table", table, &out, &err), 0);
    s_check_no_control ("status", out);
    s_check_has ("status", out, "broker   evil\\x1b[2J\\nbroker 1");
    s_check_has ("status", out, "w\\x1b[H\\x1b[2J\\n  forged-worker  localhost 1\\rX");
    s_check_has ("status", out, "h\\x1b]0;title\\x07\\u009b31m\\xff");
    s_check_has ("status", out, "fn\\x1b[31m\\x7f,plain");
    s_check_has ("status", out, "q\\x1b[1A\\nqueues   99\\r");
    /*  One row for the one worker and the one queue: nothing forged. */
    CHECK_EQ_INT (s_lines_starting (out, "broker "), 1);
    CHECK_EQ_INT (s_lines_starting (out, "workers  1\n"), 1);
    CHECK_EQ_INT (s_lines_starting (out, "  w\\x1b"), 1);
    CHECK_EQ_INT (s_lines_starting (out, "queues   1\n"), 1);
    CHECK_EQ_INT (s_lines_starting (out, "queues"), 1);
    CHECK_EQ_INT (s_lines_starting (out, "  q\\x1b"), 1);
    /*  The hostile client's share row, escaped, and this command's own. */
    CHECK_EQ_INT (s_lines_starting (out, "shares   2\n"), 1);
    CHECK_EQ_INT (s_lines_starting (out, "  queue\\x1b[2Jclient "), 1);
    CHECK_EQ_INT (s_lines_starting (out, "  "), 7); /* 3 headings, 4 rows */
    free (out);
    free (err);

    /*  --json: the same names as JSON escapes, on one line. */
    const char *json[] = {"status", "--json", NULL};
    CHECK_EQ_INT (s_dpool ("json", json, &out, &err), 0);
    s_check_no_control ("status --json", out);
    s_check_has ("status --json", out, "\"w\\u001b[H\\u001b[2J\\n  forged-worker");
    s_check_has ("status --json", out, "\\u009b31m");
    CHECK (strchr (out, '\n') == out + strlen (out) - 1);
    free (out);
    free (err);

    dp_testpeer_destroy (&client);
    dp_testpeer_destroy (&worker);
    dp_test_stop (s_broker.pid, SIGTERM, 10000);
}

/*  `dpool apply` prints a worker's failure message escaped, on one line. */
static void
s_case_apply_escapes_message (void)
{
    dp_test_broker_start (&s_broker, NULL);
    pid_t workers = dp_test_workers_logged (s_broker.tcp, 1, NULL);
    const char *args[] = {"apply", "fail", "\"boom\\u001b[2J\\nforged line\\r\\u009b\"", NULL};
    char *out, *err;
    CHECK_EQ_INT (s_dpool ("apply", args, &out, &err), 1);
    CHECK_EQ_STR (out, "");
    s_check_no_control ("apply's stderr", err);
    s_check_has ("apply's stderr", err,
                 "dpool apply: fail failed: EFAILED: boom\\x1b[2J\\nforged line\\r\\u009b\n");
    free (out);
    free (err);
    dp_test_stop (workers, SIGTERM, 10000);
    dp_test_stop (s_broker.pid, SIGTERM, 10000);
}

static const dp_test_case_t s_cases[] = {
    {"cli_status_escapes_names", s_case_status_escapes_names},
    {"cli_apply_escapes_message", s_case_apply_escapes_message},
};

int
main (int argc, char *argv[])
{
    const char *transport;
    const dp_test_case_t *run =
        dp_test_select (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS, &transport);
    s_ctx = zmq_ctx_new ();
    dp_testpeer_context (s_ctx);
    dp_test_run (run, transport);
    zmq_ctx_term (s_ctx);
    return 0;
}

/*  cmd_queue.c - dpool queue put|get|size: the broker's named queues from
    the shell, values as JSON.
*/
#include "dp_cli.h"
#include "dp_json.h"
#include "dpool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

const char dp_cli_help_queue[] =
    "usage: dpool queue put NAME JSON [--timeout-ms N] [--connect EP]\n"
    "       dpool queue get NAME [--timeout-ms N] [--connect EP]\n"
    "       dpool queue size NAME [--connect EP]\n"
    "\n"
    "The broker's named queues, which programs and tasks on any worker share as\n"
    "Python's processes share a Manager().Queue(): first in, first out, held by the\n"
    "broker while it runs. NAME is 1 to 255 bytes; a queue is made when first used.\n"
    "\n"
    "  put NAME JSON    puts one JSON value (as msgpack, at most 1 MiB) at the back\n"
    "                   of the queue; waits for room if the queue is bounded and full\n"
    "  get NAME         takes the value at the front and prints it as one line of\n"
    "                   compact JSON; waits for one if the queue is empty\n"
    "  size NAME        prints how many values the queue holds\n"
    "\n"
    "Options:\n"
    "  --timeout-ms N           put, get: wait at most N ms (0: do not wait at all);\n"
    "                           without it they wait as long as it takes\n"
    "                           [DPOOL_TIMEOUT_MS]\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "SIGINT or SIGTERM ends a waiting put or get at once, with exit status 128 + the\n"
    "signal's number: a get that had not yet taken its value leaves it in the queue\n"
    "(the broker takes back what it was lending), a put that had not yet found room\n"
    "puts nothing. A value the get had already taken is printed, and a put that was\n"
    "already done stays done, with exit status 0.\n"
    "\n"
    "Exit status: 0 success, 1 the queue was empty or full past the timeout, or the\n"
    "broker refused (the reason goes to stderr), 2 bad usage, 3 the broker could not\n"
    "be reached, 4 invalid JSON or another error, 5 the broker's key configuration\n"
    "denies this key the use of named queues (EDENIED), 128 + N ended by signal N.\n";

/*  Checks the positional arguments of `dpool queue`: put NAME JSON, get
    NAME or size NAME. Returns -1 to go on, or EXIT_USAGE after a message. */
int
dp_cli_queue_check_args (dp_cli_t *cli)
{
    const dp_cli_command_t *command = cli->command;
    const char *op = cli->nargs > 0 ? cli->args[0] : "";
    int want = 0;
    if (strcmp (op, "put") == 0)
        want = 3;
    else if (strcmp (op, "get") == 0 || strcmp (op, "size") == 0)
        want = 2;
    if (!want)
        return dp_cli_usage_error (command, "queue takes put NAME JSON, get NAME or size NAME");
    if (cli->nargs != want)
        return dp_cli_usage_error (command, "queue %s takes %s", op,
                                   want == 3 ? "NAME and JSON" : "NAME");
    size_t len = strlen (cli->args[1]);
    if (len < 1 || len > MAX_FN_NAME)
        return dp_cli_usage_error (command, "NAME must be 1 to %d bytes long", MAX_FN_NAME);
    return -1;
}

/*  dpool queue: see dp_cli_help_queue. timeout_given says whether --timeout-ms
    (or DPOOL_TIMEOUT_MS) was given: without it put and get wait as long as
    it takes. */
int
dp_cli_queue_run (dp_cli_t *cli, bool timeout_given)
{
    const char *op = cli->args[0];
    const char *name = cli->args[1];
    msgpack_sbuffer value;
    msgpack_sbuffer_init (&value);
    if (strcmp (op, "put") == 0) {
        msgpack_packer packer;
        msgpack_packer_init (&packer, &value, msgpack_sbuffer_write);
        char error[DP_JSON_ERROR_SIZE];
        if (dp_json_to_msgpack (&packer, cli->args[2], strlen (cli->args[2]), error,
                                sizeof error)) {
            fprintf (stderr, "dpool queue put: the value: %s\n", error);
            msgpack_sbuffer_destroy (&value);
            return EXIT_ERROR;
        }
    }
    int rc = dp_cli_connect (cli);
    if (rc >= 0) {
        msgpack_sbuffer_destroy (&value);
        return rc;
    }
    int timeout_ms = timeout_given ? (int)cli->options.timeout_ms : -1;
    dpool_queue_t *queue = dpool_queue_open (cli->pool, name, 0);
    int code = DPOOL_OK;
    dp_json_buf_t out;
    dp_json_buf_init (&out);
    if (!queue)
        code = dpool_errno ();
    else if (strcmp (op, "put") == 0) {
        if (dpool_queue_put (queue, value.data, value.size, timeout_ms))
            code = dpool_errno ();
    } else if (strcmp (op, "get") == 0) {
        msgpack_object object;
        if (dpool_queue_get (queue, timeout_ms, &object))
            code = dpool_errno ();
        else if (dp_json_from_object (&out, &object) || dp_json_buf_append (&out, "\n", 1))
            code = DPOOL_ENOMEM;
    } else {
        size_t size;
        char line[32];
        if (dpool_queue_qsize (queue, &size))
            code = dpool_errno ();
        else {
            snprintf (line, sizeof line, "%zu\n", size);
            if (dp_json_buf_append (&out, line, strlen (line)))
                code = DPOOL_ENOMEM;
        }
    }
    if (code == DPOOL_OK) {
        fwrite (out.data ? out.data : "", 1, out.size, stdout);
        rc = fflush (stdout) == 0 ? EXIT_OK : EXIT_ERROR;
    } else if (dp_cli_signal ())
        /*  The signal ended the call: nothing was taken or put. */
        rc = EXIT_SIGNAL_BASE + dp_cli_signal ();
    else {
        const char *why = queue ? dpool_queue_error (queue) : NULL;
        if (!why)
            why = dpool_strerror (code);
        dp_json_buf_t text;
        dp_json_buf_init (&text);
        fprintf (stderr, "dpool queue %s %s: %s: %s\n", op,
                 dp_cli_escape (&out, name, strlen (name)), dp_cli_code_name (code),
                 dp_cli_escape (&text, why, strlen (why)));
        dp_json_buf_free (&text);
        rc = code == DPOOL_EUNREACHABLE                   ? EXIT_UNREACHABLE
             : code == DPOOL_EDENIED                      ? EXIT_DENIED
             : code == DPOOL_ENOMEM || code == DPOOL_ESYS ? EXIT_ERROR
                                                          : EXIT_TASK_FAILED;
    }
    dp_json_buf_free (&out);
    msgpack_sbuffer_destroy (&value);
    dpool_queue_destroy (&queue);
    dp_cli_disconnect (cli, false);
    return rc;
}

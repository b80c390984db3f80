/*  cmd_apply.c - dpool apply FN JSON: runs one task and prints its result
    as JSON, or its failure on stderr.
*/
#include "dp_cli.h"
#include "dp_json.h"
#include "dpool.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char dp_cli_help_apply[] =
    "usage: dpool apply FN JSON [--connect EP] [--timeout-ms N]\n"
    "\n"
    "Runs the function FN once with the arguments JSON (one JSON value; use -- before\n"
    "it if it starts with '-' and is not a number) and prints the result as compact\n"
    "JSON. If the task fails, the cause and its message go to stderr and the exit\n"
    "status is 1.\n"
    "\n"
    "Options:\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --timeout-ms N           the task's time limit, 0 for none\n"
    "                           [DPOOL_TIMEOUT_MS; 0]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "SIGINT or SIGTERM ends it at once with exit status 128 + the signal's number;\n"
    "the broker forgets the task if it is still queued (one already running runs to\n"
    "its end, and its result is dropped).\n"
    "\n"
    "The failure's message comes from the worker: control characters in it are\n"
    "printed escaped (\\n, \\xNN...), so that none can act on the terminal.\n"
    "\n"
    "Exit status: 0 success, 1 the task failed, 2 bad usage, 3 the broker could not\n"
    "be reached, 4 invalid JSON or another error, 5 the broker's key configuration\n"
    "denies this key the right to submit (EDENIED), 128 + N ended by signal N.\n";

/*  dpool apply FN JSON: see dp_cli_help_apply. */
int
dp_cli_apply_run (dp_cli_t *cli)
{
    const char *fn = cli->args[0];
    const char *json = cli->args[1];
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &args, msgpack_sbuffer_write);
    char error[DP_JSON_ERROR_SIZE];
    if (dp_json_to_msgpack (&packer, json, strlen (json), error, sizeof error)) {
        fprintf (stderr, "dpool apply: the arguments: %s\n", error);
        msgpack_sbuffer_destroy (&args);
        return EXIT_ERROR;
    }
    int rc = dp_cli_connect (cli);
    if (rc >= 0) {
        msgpack_sbuffer_destroy (&args);
        return rc;
    }
    dpool_result_t *result = dpool_pool_apply_async (cli->pool, fn, args.data, args.size, NULL);
    msgpack_sbuffer_destroy (&args);
    if (!result) {
        fprintf (stderr, "dpool apply: cannot submit %s: %s\n", fn,
                 dpool_strerror (dpool_errno ()));
        rc = EXIT_ERROR;
    }
    while (result && !dp_cli_signal () && dpool_result_wait (result, WAIT_SLICE_MS * 10) != 0) {
        if (dp_cli_check_broker (cli)) {
            rc = EXIT_UNREACHABLE;
            break;
        }
    }
    if (dp_cli_signal ())
        rc = EXIT_SIGNAL_BASE + dp_cli_signal ();
    else if (result && rc < 0) {
        dp_json_buf_t out;
        dp_json_buf_init (&out);
        bool out_error = false;
        bool ok = dp_cli_append_outcome (&out, result, &out_error);
        if (out_error) {
            fprintf (stderr, "dpool apply: out of memory\n");
            rc = EXIT_ERROR;
        } else if (ok) {
            fwrite (out.data, 1, out.size, stdout);
            rc = fflush (stdout) == 0 ? EXIT_OK : EXIT_ERROR;
        } else {
            int code = dpool_result_code (result);
            const char *message = dpool_result_error (result);
            if (!message)
                message = dpool_strerror (code);
            dp_json_buf_reset (&out);
            fprintf (stderr, "dpool apply: %s failed: %s: %s\n", fn, dp_cli_code_name (code),
                     dp_cli_escape (&out, message, strlen (message)));
            rc = code == DPOOL_EDENIED ? EXIT_DENIED : EXIT_TASK_FAILED;
        }
        dp_json_buf_free (&out);
    }
    dpool_result_destroy (&result);
    dp_cli_disconnect (cli, rc == EXIT_OK || rc == EXIT_TASK_FAILED || rc == EXIT_DENIED);
    return rc;
}

/*  dp_cli.c - what the dpool command's subcommands share: usage errors,
    connecting to the broker and checking that it still answers, text from
    the network made safe for a terminal, and a task's outcome as a line of
    JSON. The contracts are in dp_cli.h.
*/
#include "dp_cli.h"
#include "dp_json.h"
#include "dp_util.h"
#include "dpool.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  Prints a usage error on stderr, pointing at the help, and returns
    EXIT_USAGE. */
int
dp_cli_usage_error (const dp_cli_command_t *command, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "dpool%s%s: ", command ? " " : "", command ? command->name : "");
    vfprintf (stderr, format, args);
    va_end (args);
    fprintf (stderr, "\nTry 'dpool%s%s --help'.\n", command ? " " : "",
             command ? command->name : "");
    return EXIT_USAGE;
}

/*  The name of an error code as the failure marking prints it. */
const char *
dp_cli_code_name (int code)
{
    static const char *const names[] = {
        "OK",        "EFAILED", "ETIMEOUT",     "EDEADLINE", "ECANCELLED", "ELOST",  "ENOFUNC",
        "EREJECTED", "ECLOSED", "EINVAL",       "ENOMEM",    "EAGAIN",     "EPROTO", "ESTATE",
        "ESYS",      "EEND",    "EUNREACHABLE", "EDENIED",   "ENOENT"};
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0])
        return names[code];
    return "EUNKNOWN";
}

const char *
dp_cli_escape (dp_json_buf_t *out, const char *text, size_t size)
{
    dp_json_buf_reset (out);
    dp_json_append_escaped (out, text, size);
    return out->data ? out->data : "";
}

/*  The number of workers in a packed status map, or -1 if it has none. */
static int
s_status_workers (const void *data, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int workers = -1;
    size_t offset = 0;
    if (msgpack_unpack_next (&unpacked, data, size, &offset) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            const msgpack_object *key = &map->ptr[i].key;
            if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 7 &&
                memcmp (key->via.str.ptr, "workers", 7) == 0 &&
                map->ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
                workers = (int)map->ptr[i].val.via.array.size;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return workers;
}

/*  Asks the broker for its status, waiting up to timeout_ms in slices so
    that a signal ends the wait. Returns 0 and the packed map (caller
    frees), or -1 with dpool_errno set (DPOOL_ETIMEOUT after a signal). */
static int
s_status (dp_cli_t *cli, int timeout_ms, void **data, size_t *size)
{
    int64_t deadline = dp_now_ms () + timeout_ms;
    for (;;) {
        int64_t left = deadline - dp_now_ms ();
        int slice = left < 0 ? 0 : left < PROBE_SLICE_MS ? (int)left : PROBE_SLICE_MS;
        if (dpool_pool_status (cli->pool, slice, data, size) == 0)
            return 0;
        if (dpool_errno () != DPOOL_ETIMEOUT || left <= 0 || dp_cli_signal ())
            return -1;
    }
}

/*  Asks the broker for its status within the connect timeout. Returns 0
    and the packed map (caller frees) when it answers, else -1 after a
    message naming what was being done (none after a signal). Warns once
    when it has no worker. */
int
dp_cli_probe (dp_cli_t *cli, const char *doing, void **data, size_t *size)
{
    int timeout_ms = (int)cli->options.connect_timeout_ms;
    void *status = NULL;
    size_t status_size = 0;
    if (s_status (cli, timeout_ms, &status, &status_size)) {
        if (!dp_cli_signal () && dpool_errno () == DPOOL_EREJECTED)
            fprintf (stderr,
                     "dpool %s: %s the broker at %s: it refused the connection (too many "
                     "connections; its reason is logged above)\n",
                     cli->command->name, doing, cli->options.connect);
        else if (!dp_cli_signal ())
            fprintf (stderr, "dpool %s: %s the broker at %s: no answer within %d ms (%s)%s\n",
                     cli->command->name, doing, cli->options.connect, timeout_ms,
                     dpool_strerror (dpool_errno ()),
                     /*  A CURVE handshake that fails looks like silence. */
                     cli->options.curve_server
                         ? "; if it is running, check that --curve-server is its public key "
                           "and that it admits this client's key"
                         : "; is a broker running there? (one started with --curve-secret "
                           "also needs --curve-server)");
        return -1;
    }
    cli->last_heard_ms = dp_now_ms ();
    /*  A detached batch's commands need no worker now. */
    unsigned quiet = CMD_STATUS | CMD_QUEUE | CMD_SUBMIT | CMD_RESULTS | CMD_BATCHES | CMD_CANCEL;
    if (!(cli->command->id & quiet) && !cli->warned_no_workers &&
        s_status_workers (status, status_size) == 0) {
        fprintf (stderr, "dpool %s: waiting: the broker at %s has no workers yet\n",
                 cli->command->name, cli->options.connect);
        cli->warned_no_workers = true;
    }
    if (data) {
        *data = status;
        *size = status_size;
    } else
        free (status);
    return 0;
}

/*  Connects cli's pool to the broker and checks that it answers. Returns
    -1 to go on, or the exit status to end with, after a message, with no
    pool left. */
int
dp_cli_connect (dp_cli_t *cli)
{
    dp_cli_signal_start ();
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = cli->options.connect;
    config.timeout_ms = (int)cli->options.timeout_ms;
    config.name = "dpool";
    cli->pool = dpool_pool_new_config (&config);
    if (!cli->pool) {
        int code = dpool_errno ();
        if (code == DPOOL_EINVAL)
            return dp_cli_usage_error (cli->command, "bad endpoint '%s'", cli->options.connect);
        fprintf (stderr, "dpool %s: cannot connect to %s: %s\n", cli->command->name,
                 cli->options.connect, dpool_strerror (code));
        return EXIT_ERROR;
    }
    dp_cli_signal_watch (cli->pool);
    if (dp_cli_probe (cli, "cannot reach", NULL, NULL)) {
        dp_cli_disconnect (cli, false);
        return dp_cli_signal () ? EXIT_SIGNAL_BASE + dp_cli_signal () : EXIT_UNREACHABLE;
    }
    return -1;
}

void
dp_cli_disconnect (dp_cli_t *cli, bool graceful)
{
    if (!cli->pool)
        return;
    dp_cli_signal_watch (NULL);
    if (graceful)
        dpool_pool_close (cli->pool);
    else
        dpool_pool_terminate (cli->pool);
    dpool_pool_destroy (&cli->pool);
}

/*  Called while waiting for results made no progress: probes the broker
    when nothing was heard from it for the connect timeout. Returns 0 while
    it answers, else -1 (after a message). */
int
dp_cli_check_broker (dp_cli_t *cli)
{
    if (dp_now_ms () - cli->last_heard_ms < cli->options.connect_timeout_ms)
        return 0;
    return dp_cli_probe (cli, "lost", NULL, NULL);
}

/*  Appends a NUL-terminated text to out; returns 0 or -1. */
static int
s_append_literal (dp_json_buf_t *out, const char *text)
{
    return dp_json_buf_append (out, text, strlen (text));
}

/*  Writes the outcome of a finished task as one JSON line: its value, or
    the failure marking. Returns true if the task succeeded; sets *error if
    the output could not be made. */
int
dp_cli_append_failure (dp_json_buf_t *out, int code, const char *message, size_t len)
{
    const char *name = dp_cli_code_name (code);
    return s_append_literal (out, "{\"dpool_error\":{\"code\":") ||
                   dp_json_append_string (out, name, strlen (name)) ||
                   s_append_literal (out, ",\"message\":") ||
                   dp_json_append_string (out, message, len) || s_append_literal (out, "}}")
               ? -1
               : 0;
}

bool
dp_cli_append_outcome (dp_json_buf_t *out, dpool_result_t *result, bool *error)
{
    msgpack_object value;
    bool ok = dpool_result_get (result, 0, &value) == 0;
    int rc;
    if (ok)
        rc = dp_json_from_object (out, &value);
    else {
        int code = dpool_result_code (result);
        const char *message = dpool_result_error (result);
        if (!message)
            message = dpool_strerror (code);
        rc = dp_cli_append_failure (out, code, message, strlen (message));
    }
    if (rc || dp_json_buf_append (out, "\n", 1))
        *error = true;
    return ok;
}

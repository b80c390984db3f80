/*  cmd_batch.c - detached batches from the shell (PROTOCOL.md 5.8):

        dpool submit FN [--name NAME] < args.jsonl      prints the batch id
        dpool results BATCH > results.jsonl              in input order
        dpool batches                                    one line per batch
        dpool cancel BATCH

    A batch outlives the command that submitted it: submit exits once the
    broker acknowledged every task, and results, run from any process of
    the same key, prints the results as map does, confirming each block to
    the broker only once it is written, so that a results killed midway
    loses nothing (it may print again what it had not confirmed).
*/
#include "dp_cli.h"
#include "dp_json.h"
#include "dpool.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ACK_EVERY 1000 /* results printed between two confirmations */
#define ID_SIZE   16   /* hex characters of a batch id */

const char dp_cli_help_submit[] =
    "usage: dpool submit FN [--name NAME] [--no-results] [--result-ttl S]\n"
    "                       [--timeout-ms N] [--id BATCH] < args.jsonl\n"
    "\n"
    "Submits one task of FN per line of standard input (one JSON value each, as\n"
    "dpool map reads them) as a detached batch, prints the batch's id (16 hex\n"
    "characters) on a line of its own, and exits once the broker acknowledged every\n"
    "task: the batch then runs without this process. Collect its results with\n"
    "'dpool results BATCH', from any process of the same key.\n"
    "\n"
    "Options:\n"
    "  --name NAME              a name 'dpool batches' shows (up to 255 bytes)\n"
    "  --no-results             fire and forget: the broker counts results, keeps none\n"
    "  --result-ttl S           seconds the broker keeps results nobody collects, once\n"
    "                           nothing of the batch runs [DPOOL_RESULT_TTL; the\n"
    "                           broker's --result-ttl, 7 days by default]\n"
    "  --timeout-ms N           time limit of each task, 0 for none [DPOOL_TIMEOUT_MS; 0]\n"
    "  --id BATCH               add to the batch BATCH instead of a new one: input\n"
    "                           lines the broker already holds are skipped (submit\n"
    "                           again after an interrupted submit)\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "\n"
    "Exit status: 0 every task acknowledged, 2 bad usage, 3 the broker could not be\n"
    "reached, 4 invalid input, a bound of the broker reached (the message names\n"
    "its option) or another error, 5 the key may not submit (EDENIED), 128 + N\n"
    "ended by signal N.\n";

const char dp_cli_help_results[] =
    "usage: dpool results BATCH [--no-wait] [--keep] > results.jsonl\n"
    "\n"
    "Prints the results of the batch BATCH, one line of compact JSON each, in input\n"
    "order, as 'dpool map' prints them (a failed task's line is its dpool_error\n"
    "marking), waiting for the tasks still running. BATCH is the batch's id, or the\n"
    "name it was submitted with (--name) when one batch of the key has it. Results\n"
    "are deleted at the broker once printed and flushed (every 1000 lines, and\n"
    "whenever it waits), so results run again prints only the rest; a results\n"
    "killed before it confirmed a block prints that block again. Once every result\n"
    "is collected the batch is gone.\n"
    "\n"
    "Options:\n"
    "  --no-wait                print the results done now, in input order, up to the\n"
    "                           first task not done, and exit\n"
    "  --keep                   leave the results at the broker (print them again\n"
    "                           later)\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "\n"
    "Exit status: 0 every result printed was a success, 1 a task failed, 2 bad usage,\n"
    "3 the broker could not be reached, 4 no such batch (collected, expired, or\n"
    "never made; no batch, or several, of that name) or another error, 5 the batch\n"
    "belongs to another key (EDENIED), 128 + N ended by signal N.\n";

const char dp_cli_help_batches[] =
    "usage: dpool batches [--json]\n"
    "\n"
    "Lists the detached batches this key may see (every batch for an administrator\n"
    "key, or without keys): id, name, function, tasks done/total (total is '?'\n"
    "while the batch is being submitted), failed, age, and its state.\n"
    "\n"
    "Options:\n"
    "  --json                   one JSON object per batch and line [DPOOL_JSON]\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "\n"
    "Exit status: 0, 3 the broker could not be reached, 4 another error.\n";

const char dp_cli_help_cancel[] =
    "usage: dpool cancel BATCH\n"
    "\n"
    "Cancels the batch BATCH: its tasks that have not started end ECANCELLED (their\n"
    "lines in 'dpool results' are failures), those running finish, and no task can\n"
    "be added. Its results stay until collected or expired. BATCH is the batch's\n"
    "id, or the name it was submitted with (--name) when one batch of the key has\n"
    "it.\n"
    "\n"
    "Exit status: 0, 3 the broker could not be reached, 4 no such batch (or no\n"
    "batch, or several, of that name) or another error, 5 the batch belongs to\n"
    "another key (EDENIED).\n";

/*  The exit status for a failed batch call, after a message naming what
    was being done, the code and the broker's reason. */
static int
s_failed (const char *what, const char *id, dpool_batch_t *batch)
{
    int code = dpool_errno ();
    if (dp_cli_signal ())
        return EXIT_SIGNAL_BASE + dp_cli_signal ();
    const char *why = batch ? dpool_batch_error (batch) : NULL;
    if (!why && code == DPOOL_EDENIED && id)
        why = "the batch belongs to another key, which alone (or an admin key) may use it";
    if (!why)
        why = dpool_strerror (code);
    dp_json_buf_t text;
    dp_json_buf_init (&text);
    fprintf (stderr, "dpool %s%s%s: %s: %s\n", what, id ? " " : "", id ? id : "",
             dp_cli_code_name (code), dp_cli_escape (&text, why, strlen (why)));
    dp_json_buf_free (&text);
    return code == DPOOL_EUNREACHABLE ? EXIT_UNREACHABLE
           : code == DPOOL_EDENIED    ? EXIT_DENIED
                                      : EXIT_ERROR;
}

/*  True if text is a batch id: 16 lowercase hex characters. */
static bool
s_is_id (const char *text)
{
    if (strlen (text) != ID_SIZE)
        return false;
    for (size_t i = 0; i < ID_SIZE; i++)
        if (!strchr ("0123456789abcdef", text[i]))
            return false;
    return true;
}

/*  The batch that arg names, connected: arg itself if it is an id, else
    the one batch this key may see that was submitted with --name arg.
    Writes its id into id (ID_SIZE + 1 bytes). Returns -1, or the exit
    status after a message: no batch of that name, or several (their ids
    listed). */
static int
s_resolve (dp_cli_t *cli, const char *what, const char *arg, char *id)
{
    if (s_is_id (arg)) {
        snprintf (id, ID_SIZE + 1, "%s", arg);
        return -1;
    }
    dpool_batch_info_t *infos = NULL;
    size_t count = 0, found = 0;
    if (dpool_pool_batches (cli->pool, &infos, &count))
        return s_failed (what, arg, NULL);
    for (size_t i = 0; i < count; i++)
        if (strcmp (infos[i].name, arg) == 0 && found++ == 0)
            snprintf (id, ID_SIZE + 1, "%s", infos[i].id);
    dp_json_buf_t text;
    dp_json_buf_init (&text);
    const char *name = dp_cli_escape (&text, arg, strlen (arg));
    if (found == 0)
        fprintf (stderr, "dpool %s: ENOENT: no batch is named '%s' (nor is it a batch id)\n", what,
                 name);
    else if (found > 1) {
        fprintf (stderr, "dpool %s: %zu batches are named '%s'; give the id of one:", what, found,
                 name);
        for (size_t i = 0; i < count; i++)
            if (strcmp (infos[i].name, arg) == 0)
                fprintf (stderr, " %s", infos[i].id);
        fprintf (stderr, "\n");
    }
    dp_json_buf_free (&text);
    free (infos);
    return found == 1 ? -1 : EXIT_ERROR;
}

/*  ---------------------------------------------------------------------------
    submit
*/

int
dp_cli_batch_add_lines (dpool_batch_t *batch, uint64_t skip, const char *command)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t line_no = 0;
    int rc = 0;
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &args, msgpack_sbuffer_write);
    while (rc == 0 && (len = getline (&line, &cap, stdin)) >= 0) {
        if (++line_no <= skip)
            continue;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        char error[DP_JSON_ERROR_SIZE];
        msgpack_sbuffer_clear (&args);
        if (dp_json_to_msgpack (&packer, line, (size_t)len, error, sizeof error)) {
            fprintf (stderr, "dpool %s: line %llu: %s\n", command, (unsigned long long)line_no,
                     error);
            rc = EXIT_ERROR;
        } else if (dpool_batch_add (batch, args.data, args.size))
            rc = -1;
    }
    if (rc == 0 && ferror (stdin)) {
        fprintf (stderr, "dpool %s: reading stdin: %s\n", command, strerror (errno));
        rc = EXIT_ERROR;
    }
    free (line);
    msgpack_sbuffer_destroy (&args);
    return rc;
}

int
dp_cli_submit_run (dp_cli_t *cli)
{
    const dp_cli_options_t *o = &cli->options;
    if (o->id && !s_is_id (o->id))
        return dp_cli_usage_error (cli->command, "--id takes a batch id (16 hex characters)");
    int rc = dp_cli_connect (cli);
    if (rc >= 0)
        return rc;
    dpool_batch_options_t options = {.name = o->name,
                                     .id = o->id,
                                     .ttl_s = (unsigned)o->result_ttl,
                                     .discard = o->no_results,
                                     .timeout_ms = (int)o->timeout_ms};
    dpool_batch_t *batch = dpool_batch_new (cli->pool, cli->args[0], &options);
    if (!batch)
        rc = s_failed ("submit", o->id, NULL);
    else {
        /*  The id first, so that an interrupted submit can be resumed. */
        printf ("%s\n", dpool_batch_id (batch));
        fflush (stdout);
        rc = dp_cli_batch_add_lines (batch, dpool_batch_added (batch), "submit");
        if (rc < 0 || (rc == 0 && dpool_batch_submit (batch)))
            rc = s_failed ("submit", dpool_batch_id (batch), batch);
    }
    dpool_batch_destroy (&batch);
    dp_cli_disconnect (cli, true);
    return rc < 0 ? EXIT_OK : rc;
}

/*  ---------------------------------------------------------------------------
    results
*/

/*  Appends one result's line to out. Returns 0, or -1 if out of memory. */
static int
s_result_line (dp_json_buf_t *out, const dpool_batch_result_t *result)
{
    char error[DP_JSON_ERROR_SIZE];
    int rc;
    if (result->code == 0)
        rc = dp_json_from_msgpack (out, result->value, result->size, error, sizeof error);
    else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        const char *message = "";
        size_t len = 0;
        if (msgpack_unpack_next (&unpacked, result->value, result->size, NULL) ==
                MSGPACK_UNPACK_SUCCESS &&
            unpacked.data.type == MSGPACK_OBJECT_STR) {
            message = unpacked.data.via.str.ptr;
            len = unpacked.data.via.str.size;
        }
        rc = dp_cli_append_failure (out, result->code, message, len);
        msgpack_unpacked_destroy (&unpacked);
    }
    return rc || dp_json_buf_append (out, "\n", 1) ? -1 : 0;
}

/*  Writes out to stdout and, unless --keep, confirms what it held to the
    broker. Returns 0, or the exit status after a message. */
static int
s_results_commit (dp_cli_t *cli, dpool_batch_t *batch, dp_json_buf_t *out, size_t *unacked)
{
    if (out->size && fwrite (out->data, 1, out->size, stdout) != out->size)
        return EXIT_ERROR;
    if (fflush (stdout) != 0) {
        fprintf (stderr, "dpool results: writing stdout: %s\n", strerror (errno));
        return EXIT_ERROR;
    }
    dp_json_buf_reset (out);
    if (*unacked && !cli->options.keep && dpool_batch_ack (batch))
        return s_failed ("results", dpool_batch_id (batch), batch);
    *unacked = 0;
    return 0;
}

/*  Prints the batch's results, confirming them as they are written. */
static int
s_results_print (dp_cli_t *cli, dpool_batch_t *batch)
{
    dp_json_buf_t out;
    dp_json_buf_init (&out);
    size_t unacked = 0;
    bool failed = false;
    int rc = 0;
    while (rc == 0) {
        dpool_batch_result_t result;
        if (dpool_batch_next (batch, 0, &result) == 0 ||
            (dpool_errno () == DPOOL_ETIMEOUT && !cli->options.no_wait &&
             (rc = s_results_commit (cli, batch, &out, &unacked)) == 0 &&
             dpool_batch_next (batch, -1, &result) == 0)) {
            failed |= result.code != 0;
            if (s_result_line (&out, &result))
                rc = EXIT_ERROR;
            else if (++unacked >= ACK_EVERY)
                rc = s_results_commit (cli, batch, &out, &unacked);
            continue;
        }
        if (rc)
            break;
        int code = dpool_errno ();
        if (code != DPOOL_EEND && !(code == DPOOL_ETIMEOUT && cli->options.no_wait))
            rc = s_failed ("results", dpool_batch_id (batch), batch);
        else
            rc = s_results_commit (cli, batch, &out, &unacked);
        if (rc == 0)
            rc = failed ? EXIT_TASK_FAILED : EXIT_OK;
        break;
    }
    dp_json_buf_free (&out);
    return rc;
}

/*  Connects and opens the batch the command's argument names (an id or a
    name, s_resolve). Returns -1 with *batch open, or the exit status after
    a message (disconnected then). */
static int
s_open_named (dp_cli_t *cli, const char *what, dpool_batch_t **batch)
{
    char id[ID_SIZE + 1];
    int rc = dp_cli_connect (cli);
    if (rc < 0)
        rc = s_resolve (cli, what, cli->args[0], id);
    if (rc < 0 && !(*batch = dpool_batch_open (cli->pool, id)))
        rc = s_failed (what, id, NULL);
    if (rc >= 0)
        dp_cli_disconnect (cli, false);
    return rc;
}

int
dp_cli_results_run (dp_cli_t *cli)
{
    dpool_batch_t *batch = NULL;
    int rc = s_open_named (cli, "results", &batch);
    if (rc >= 0)
        return rc;
    rc = s_results_print (cli, batch);
    dpool_batch_destroy (&batch);
    dp_cli_disconnect (cli, false);
    return rc;
}

/*  ---------------------------------------------------------------------------
    batches, cancel
*/

static void
s_batch_line (dp_json_buf_t *out, const dpool_batch_info_t *info, bool json)
{
    char line[1024];
    const char *state = info->cancelled             ? "cancelled"
                        : !info->sealed             ? "submitting"
                        : info->done == info->total ? "done"
                                                    : "running";
    char total[32];
    snprintf (total, sizeof total, "%llu", (unsigned long long)info->total);
    dp_json_buf_t name, fn;
    dp_json_buf_init (&name);
    dp_json_buf_init (&fn);
    if (json) {
        dp_json_append_string (&name, info->name, strlen (info->name));
        dp_json_append_string (&fn, info->fn, strlen (info->fn));
        snprintf (line, sizeof line,
                  "{\"id\":\"%s\",\"name\":%s,\"function\":%s,\"done\":%llu,\"total\":%s,"
                  "\"added\":%llu,\"failed\":%llu,\"collected\":%llu,\"age_s\":%.3f,"
                  "\"state\":\"%s\",\"results\":%s}\n",
                  info->id, name.data, fn.data, (unsigned long long)info->done,
                  info->sealed ? total : "null", (unsigned long long)info->added,
                  (unsigned long long)info->failed, (unsigned long long)info->collected,
                  info->age_ms / 1000.0, state, info->discard ? "false" : "true");
    } else {
        char done[64];
        snprintf (done, sizeof done, "%llu/%s", (unsigned long long)info->done,
                  info->sealed ? total : "?");
        snprintf (line, sizeof line, "%-16s  %-16s  %-16s  %12s  %6llu  %7.0fs  %s\n", info->id,
                  dp_cli_escape (&name, info->name, strlen (info->name)),
                  dp_cli_escape (&fn, info->fn, strlen (info->fn)), done,
                  (unsigned long long)info->failed, info->age_ms / 1000.0, state);
    }
    dp_json_buf_append (out, line, strlen (line));
    dp_json_buf_free (&name);
    dp_json_buf_free (&fn);
}

int
dp_cli_batches_run (dp_cli_t *cli)
{
    int rc = dp_cli_connect (cli);
    if (rc >= 0)
        return rc;
    dpool_batch_info_t *infos = NULL;
    size_t count = 0;
    if (dpool_pool_batches (cli->pool, &infos, &count))
        rc = s_failed ("batches", NULL, NULL);
    else {
        dp_json_buf_t out;
        dp_json_buf_init (&out);
        if (!cli->options.json) {
            const char *head = "ID                NAME              FUNCTION          "
                               "  DONE/TOTAL  FAILED       AGE  STATE\n";
            dp_json_buf_append (&out, head, strlen (head));
        }
        for (size_t i = 0; i < count; i++)
            s_batch_line (&out, &infos[i], cli->options.json);
        fwrite (out.data ? out.data : "", 1, out.size, stdout);
        rc = fflush (stdout) == 0 ? EXIT_OK : EXIT_ERROR;
        dp_json_buf_free (&out);
    }
    free (infos);
    dp_cli_disconnect (cli, false);
    return rc;
}

int
dp_cli_cancel_run (dp_cli_t *cli)
{
    dpool_batch_t *batch = NULL;
    int rc = s_open_named (cli, "cancel", &batch);
    if (rc >= 0)
        return rc;
    if (dpool_batch_cancel (batch))
        rc = s_failed ("cancel", dpool_batch_id (batch), batch);
    else
        rc = EXIT_OK;
    dpool_batch_destroy (&batch);
    dp_cli_disconnect (cli, false);
    return rc;
}

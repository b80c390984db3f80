/*  test_batches.c - detached batches (PROTOCOL.md 5.8) with real
    processes: a broker, workers, and `dpool submit`, `results`,
    `batches` and `cancel` run through /bin/sh, each a process of its own.

    Each case checks one promise: a batch outlives its submitter, and
    another process collects its results later, in input order, exactly
    once; a `dpool results` killed midway loses nothing; cancel; the TTL;
    rights (another key is refused, an administrator is not); the bounds,
    each refusal naming its option; fire-and-forget batches; the C API
    reopening a batch by id; and `dpool map --output FILE --resume` after
    the map was killed with SIGKILL.
*/
#include "dp_curve.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define RUN_MS       30000 /* the longest one command may take */
#define WAIT_MS      20000 /* the longest a condition may take to hold */
#define COMMAND_SIZE 8192

static dp_test_broker_t s_broker;
static const char *s_auth = ""; /* CURVE options of the dpool command, if any */

/*  Runs a shell command line (output in tag.out and tag.err) and returns
    its exit status; stops the test if it does not exit in time. */
static int
s_sh (const char *tag, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_sh (const char *tag, const char *format, ...)
{
    char command[COMMAND_SIZE];
    va_list args;
    va_start (args, format);
    vsnprintf (command, sizeof command, format, args);
    va_end (args);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    int status = dp_test_wait_exit (dp_test_spawn (tag, argv), RUN_MS);
    if (status == -1 || !WIFEXITED (status))
        dp_test_fail (__FILE__, __LINE__, "[%s] did not exit in time: %s", tag, command);
    return WEXITSTATUS (status);
}

/*  `dpool ARGS --connect broker` with the CURVE options of s_auth. */
static int
s_dpool (const char *tag, const char *args)
{
    return s_sh (tag, "'%s' %s --connect '%s' %s", dp_test_cli_bin, args, s_broker.tcp, s_auth);
}

/*  Writes count input lines: [seconds, i] for sleep, seconds 0 except at
    slow (-1: none), which sleeps slow_s, into the file name of the test's
    directory, whose path goes to path (PATH_SIZE bytes). */
#define PATH_SIZE 4096
static const char *
s_input (char *path, const char *name, int count, int slow, double slow_s)
{
    snprintf (path, PATH_SIZE, "%s", dp_test_path (name));
    FILE *file = fopen (path, "w");
    CHECK (file);
    for (int i = 0; i < count; i++)
        fprintf (file, "[%g,%d]\n", i == slow ? slow_s : 0.0, i);
    CHECK_EQ_INT (fclose (file), 0);
    return path;
}

/*  Submits the input file as a batch of sleep (more: options) and returns
    its id (a static buffer). */
static const char *
s_submit (const char *input, const char *more)
{
    static char id[32];
    char args[COMMAND_SIZE];
    snprintf (args, sizeof args, "submit sleep %s < '%s'", more ? more : "", input);
    int rc = s_dpool ("submit", args);
    char *out = dp_test_output ("submit", "out");
    if (rc != 0 || strlen (out) < 17)
        dp_test_fail (__FILE__, __LINE__, "submit: exit %d, stdout '%s'", rc, out);
    /*  The last line is this submit's id (the tag's file collects them all). */
    size_t len = strlen (out);
    snprintf (id, sizeof id, "%.16s", out + len - 17);
    free (out);
    return id;
}

/*  The lines [0,from] .. [0,to - 1], one a line: what sleep returns. */
static char *
s_expected (int from, int to, int slow, double slow_s)
{
    char *text = (char *)calloc ((size_t)(to - from + 1), 32);
    CHECK (text);
    for (int i = from; i < to; i++)
        sprintf (text + strlen (text), "[%g,%d]\n", i == slow ? slow_s : 0.0, i);
    return text;
}

static void
s_check_file (const char *tag, const char *expected)
{
    char *got = dp_test_output (tag, "out");
    if (strcmp (got, expected) != 0)
        dp_test_fail (__FILE__, __LINE__, "%s printed:\n%s\nexpected:\n%s", tag, got, expected);
    free (got);
}

/*  The line of `dpool batches` that names id holds what: */
typedef struct {
    const char *id;
    const char *what;
} s_listing_t;

static bool
s_listed (void *arg)
{
    const s_listing_t *l = (const s_listing_t *)arg;
    static int serial;
    char tag[32];
    snprintf (tag, sizeof tag, "batches%d", ++serial);
    if (s_dpool (tag, "batches") != 0)
        return false;
    char *out = dp_test_output (tag, "out");
    char *line = strstr (out, l->id);
    char *end = line ? strchr (line, '\n') : NULL;
    if (end)
        *end = 0; /* the line alone */
    bool found = l->what ? line && strstr (line, l->what) : !line;
    free (out);
    return found;
}

static void
s_wait_listed (const char *id, const char *what)
{
    s_listing_t l = {id, what};
    if (!dp_test_wait_until (s_listed, &l, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "batch %s never listed with '%s'", id,
                      what ? what : "(gone)");
}

/*  ---------------------------------------------------------------------------
    Cases.
*/

/*  Submitted with no worker at all; the submitter exits (its session is
    forgotten); workers come later; another process prints the results in
    input order; a second reader finds the batch gone: exactly once. */
static void
s_case_detached (void)
{
    dp_test_broker_start (&s_broker, NULL);
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 2500, -1, 0);
    const char *id = s_submit (input, "--name nightly");
    s_wait_listed (id, "0/2500");
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    s_wait_listed (id, "2500/2500");
    char args[256];
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("results", "results nightly"), 0); /* by its name */
    char *expected = s_expected (0, 2500, -1, 0);
    s_check_file ("results", expected);
    free (expected);
    CHECK_EQ_INT (s_dpool ("again", args), 4);
    dp_test_check_contains ("again", "err", "ENOENT");
    s_wait_listed (id, NULL);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  A reader of batch id, and the lines it printed. */
typedef struct {
    const char *id;
    int printed;
} s_reader_t;

/*  True once the reader printed lines and the broker counts as collected
    exactly the lines it printed: it waits, with nothing unconfirmed. */
static bool
s_reader_waits (void *arg)
{
    s_reader_t *reader = (s_reader_t *)arg;
    char *out = dp_test_output ("killed", "out");
    int lines = 0;
    for (const char *c = out; *c; c++)
        lines += *c == '\n';
    free (out);
    static int serial;
    char tag[32];
    snprintf (tag, sizeof tag, "json%d", ++serial);
    if (lines == 0 || s_dpool (tag, "batches --json") != 0)
        return false;
    char *json = dp_test_output (tag, "out");
    char want[128];
    snprintf (want, sizeof want, "\"id\":\"%s\"", reader->id);
    char *line = strstr (json, want);
    char *end = line ? strchr (line, '\n') : NULL;
    if (end)
        *end = 0;
    snprintf (want, sizeof want, "\"collected\":%d,", lines);
    bool waits = line && strstr (line, want);
    free (json);
    reader->printed = lines;
    return waits;
}

/*  A reader killed with SIGKILL while it waits for a slow task: the next
    reader prints the rest, and together they printed every line once. A
    --keep reader leaves its results for the next. */
static void
s_case_killed_reader (void)
{
    dp_test_broker_start (&s_broker, NULL);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 100, 50, 3);
    const char *id = s_submit (input, NULL);
    char command[COMMAND_SIZE];
    snprintf (command, sizeof command, "exec '%s' results %s --connect '%s'", dp_test_cli_bin, id,
              s_broker.tcp);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t reader = dp_test_spawn ("killed", argv);
    s_reader_t state = {id, 0};
    CHECK (dp_test_wait_until (s_reader_waits, &state, WAIT_MS));
    dp_test_stop (reader, SIGKILL, WAIT_MS);
    int printed = state.printed;
    CHECK (printed > 0 && printed <= 50);
    char args[256];
    snprintf (args, sizeof args, "results %s --keep", id);
    CHECK_EQ_INT (s_dpool ("kept", args), 0);
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("rest", args), 0);
    char *first = s_expected (0, printed, 50, 3);
    char *rest = s_expected (printed, 100, 50, 3);
    s_check_file ("killed", first);
    s_check_file ("kept", rest);
    s_check_file ("rest", rest);
    free (first);
    free (rest);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  Cancel: queued tasks end ECANCELLED, each still a line of the results;
    no task can be added after. */
static void
s_case_cancel (void)
{
    dp_test_broker_start (&s_broker, NULL);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 1, NULL);
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 200, 0, 2);
    const char *id = s_submit (input, NULL);
    char args[256];
    snprintf (args, sizeof args, "cancel %s", id);
    CHECK_EQ_INT (s_dpool ("cancel", args), 0);
    s_wait_listed (id, "cancelled");
    snprintf (args, sizeof args, "submit sleep --id %s < '%s'", id, input);
    CHECK_EQ_INT (s_dpool ("more", args), 4);
    dp_test_check_contains ("more", "err", "cancelled");
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("results", args), 1);
    char *out = dp_test_output ("results", "out");
    int lines = 0, cancelled = 0;
    for (char *line = strtok (out, "\n"); line; line = strtok (NULL, "\n")) {
        lines++;
        cancelled += strstr (line, "\"ECANCELLED\"") != NULL;
    }
    free (out);
    CHECK_EQ_INT (lines, 200);
    CHECK (cancelled >= 190); /* the one worker ran at most a few */
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  Results nobody collects go after the TTL: the broker's, or a batch's
    own. Fire and forget keeps no result. */
static void
s_case_ttl (void)
{
    /*  TTLs long enough that a loaded machine still sees each batch done
        before it expires (they count from the batch's last change). */
    const char *extra[] = {"--result-ttl", "4", NULL};
    dp_test_broker_start (&s_broker, extra);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 1, NULL);
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 5, -1, 0);
    const char *id = s_submit (input, NULL);
    char first[32];
    snprintf (first, sizeof first, "%s", id);
    s_wait_listed (first, "5/5");
    s_wait_listed (first, NULL); /* expired after 4 s */
    char args[256];
    snprintf (args, sizeof args, "results %s", first);
    CHECK_EQ_INT (s_dpool ("expired", args), 4);
    dp_test_check_contains ("expired", "err", "ENOENT");
    /*  Fire and forget: counted, and nothing to read. */
    id = s_submit (input, "--no-results --result-ttl 3");
    s_wait_listed (id, "5/5");
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("none", args), 0);
    s_check_file ("none", "");
    s_wait_listed (id, NULL);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  The bounds: tasks per batch, batches per key, result bytes; each
    refusal names its option. */
static void
s_case_bounds (void)
{
    const char *extra[] = {
        "--max-batch-tasks", "10", "--max-batches", "2", "--max-batch-bytes", "16", NULL};
    dp_test_broker_start (&s_broker, extra);
    char big_path[PATH_SIZE];
    const char *big = s_input (big_path, "big", 20, -1, 0);
    char args[256];
    snprintf (args, sizeof args, "submit sleep < '%s'", big);
    CHECK_EQ_INT (s_dpool ("tasks", args), 4);
    dp_test_check_contains ("tasks", "err", "EREJECTED");
    dp_test_check_contains ("tasks", "err", "--max-batch-tasks");
    char *out = dp_test_output ("tasks", "out");
    char id[32];
    snprintf (id, sizeof id, "%.16s", out);
    free (out);
    /*  Its first 10 tasks run: 30 bytes of results, past 16. Those that
        came after the bound are refusals naming it, in their place. */
    pid_t workers = dp_test_workers_start (s_broker.tcp, 1, NULL);
    s_wait_listed (id, "10/?");
    snprintf (args, sizeof args, "results %s --no-wait --keep", id);
    CHECK_EQ_INT (s_dpool ("over", args), 1);
    dp_test_check_contains ("over", "out", "[0,0]\n");
    dp_test_check_contains ("over", "out", "EREJECTED");
    dp_test_check_contains ("over", "out", "--max-batch-bytes");
    /*  New tasks are refused while the results are held. */
    snprintf (args, sizeof args, "submit sleep < '%s'", big);
    CHECK_EQ_INT (s_dpool ("bytes", args), 4);
    dp_test_check_contains ("bytes", "err", "--max-batch-bytes");
    /*  That made a second batch (empty): a third is one too many. */
    CHECK_EQ_INT (s_dpool ("third", args), 4);
    dp_test_check_contains ("third", "err", "--max-batches");
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  A key pair made by `dpool keygen`. */
typedef struct {
    char public_[4096];
    char secret[4200];
    char z85[DP_CURVE_KEY + 1];
} s_key_t;

static void
s_keygen (s_key_t *key, const char *name)
{
    snprintf (key->public_, sizeof key->public_, "%s", dp_test_path (name));
    snprintf (key->secret, sizeof key->secret, "%s_secret", key->public_);
    char *argv[] = {(char *)dp_test_cli_bin, "keygen", key->public_, NULL};
    int status = dp_test_wait_exit (dp_test_spawn (NULL, argv), WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    char err[256];
    CHECK_EQ_INT (dp_curve_public (key->public_, key->z85, err, sizeof err), 0);
}

/*  Rights: another key neither sees, reads nor cancels a batch; an
    administrator does. */
static void
s_case_rights (void)
{
    s_key_t server, alice, bob, root, worker;
    s_keygen (&server, "server");
    s_keygen (&alice, "alice");
    s_keygen (&bob, "bob");
    s_keygen (&root, "root");
    s_keygen (&worker, "worker");
    const char *keys = dp_test_path ("keys");
    FILE *file = fopen (keys, "w");
    CHECK (file);
    fprintf (file,
             "%s name=alice roles=submit\n%s name=bob roles=submit\n%s name=root roles=all\n"
             "%s name=w roles=worker\n",
             alice.z85, bob.z85, root.z85, worker.z85);
    CHECK_EQ_INT (fclose (file), 0);
    char keys_path[4096];
    snprintf (keys_path, sizeof keys_path, "%s", keys);
    const char *extra[] = {"--curve-secret", server.secret, "--curve-keys", keys_path, NULL};
    dp_test_broker_start (&s_broker, extra);
    const char *wextra[] = {"--curve-server", server.public_, "--curve-secret", worker.secret,
                            NULL};
    pid_t workers = dp_test_workers_start (s_broker.tcp, 1, wextra);
    static char auth[3 * 4200];
    snprintf (auth, sizeof auth, "--curve-server '%s' --curve-secret '%s'", server.public_,
              alice.secret);
    s_auth = auth;
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 3, -1, 0);
    char id[32];
    snprintf (id, sizeof id, "%s", s_submit (input, NULL));
    s_wait_listed (id, "3/3");

    snprintf (auth, sizeof auth, "--curve-server '%s' --curve-secret '%s'", server.public_,
              bob.secret);
    char args[256];
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("bob_results", args), 5);
    dp_test_check_contains ("bob_results", "err", "EDENIED");
    snprintf (args, sizeof args, "cancel %s", id);
    CHECK_EQ_INT (s_dpool ("bob_cancel", args), 5);
    CHECK_EQ_INT (s_dpool ("bob_batches", "batches"), 0);
    char *out = dp_test_output ("bob_batches", "out");
    CHECK (!strstr (out, id));
    free (out);
    snprintf (args, sizeof args, "submit sleep --id %s < '%s'", id, input);
    CHECK_EQ_INT (s_dpool ("bob_adds", args), 5);

    snprintf (auth, sizeof auth, "--curve-server '%s' --curve-secret '%s'", server.public_,
              root.secret);
    CHECK_EQ_INT (s_dpool ("root_batches", "batches"), 0);
    dp_test_check_contains ("root_batches", "out", id);
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("root_results", args), 0);
    char *expected = s_expected (0, 3, -1, 0);
    s_check_file ("root_results", expected);
    free (expected);
    s_auth = "";
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  The C API: one pool submits and lets go of its handle; another pool
    (as another process would) reopens the batch by id and reads it. */
static void
s_case_c_api (void)
{
    dp_test_env_t env;
    dp_test_env_start (&env, "tcp", 2);
    dpool_pool_t *pool = dp_test_env_connect (&env, 2);
    dpool_batch_options_t options = {.name = "api"};
    dpool_batch_t *batch = dpool_batch_new (pool, "echo", &options);
    CHECK (batch);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    for (int i = 0; i < 3000; i++) {
        dp_test_buf_clear (&buf);
        msgpack_pack_int (&buf.pk, i);
        CHECK_EQ_INT (dpool_batch_add (batch, buf.sbuf.data, buf.sbuf.size), 0);
    }
    CHECK_EQ_INT (dpool_batch_submit (batch), 0);
    CHECK_EQ_INT (dpool_batch_added (batch), 3000);
    char id[32];
    snprintf (id, sizeof id, "%s", dpool_batch_id (batch));
    dpool_batch_destroy (&batch);
    dpool_pool_destroy (&pool);

    pool = dp_test_env_connect (&env, 0);
    batch = dpool_batch_open (pool, id);
    CHECK (batch);
    dpool_batch_result_t result;
    for (int i = 0; i < 3000; i++) {
        CHECK_EQ_INT (dpool_batch_next (batch, WAIT_MS, &result), 0);
        CHECK_EQ_INT (result.index, i);
        CHECK_EQ_INT (result.code, 0);
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        CHECK (msgpack_unpack_next (&unpacked, result.value, result.size, NULL) ==
               MSGPACK_UNPACK_SUCCESS);
        CHECK (dp_test_is_int (&unpacked.data, i));
        msgpack_unpacked_destroy (&unpacked);
    }
    CHECK (dpool_batch_next (batch, 0, &result) == -1 && dpool_errno () == DPOOL_EEND);
    CHECK_EQ_INT (dpool_batch_ack (batch), 0);
    dpool_batch_destroy (&batch);
    CHECK (!dpool_batch_open (pool, id) && dpool_errno () == DPOOL_ENOENT);
    CHECK (!dpool_batch_open (pool, "not-an-id") && dpool_errno () == DPOOL_EINVAL);
    dp_test_buf_fini (&buf);
    dpool_pool_destroy (&pool);
    dp_test_env_stop (&env);
}

static bool
s_has_output (void *arg)
{
    char *out = dp_test_read_file ((const char *)arg);
    int lines = 0;
    for (const char *c = out ? out : ""; *c; c++)
        lines += *c == '\n';
    free (out);
    return lines >= 50;
}

/*  dpool map --output FILE killed with SIGKILL midway, then run again with
    --resume: FILE holds every result line exactly once, in order, and the
    broker ran each input once (its done count). */
static void
s_case_map_resume (void)
{
    dp_test_broker_start (&s_broker, NULL);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 400, 300, 1);
    char output[PATH_SIZE];
    snprintf (output, sizeof output, "%s", dp_test_path ("results.jsonl"));
    char command[COMMAND_SIZE];
    snprintf (command, sizeof command, "exec '%s' map sleep --output '%s' --connect '%s' < '%s'",
              dp_test_cli_bin, output, s_broker.tcp, input);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t map = dp_test_spawn ("map", argv);
    CHECK (dp_test_wait_until (s_has_output, output, WAIT_MS));
    dp_test_stop (map, SIGKILL, WAIT_MS);
    char args[COMMAND_SIZE];
    snprintf (args, sizeof args, "map sleep --output '%s' < '%s'", output, input);
    CHECK_EQ_INT (s_dpool ("fresh", args), 4); /* FILE exists: not without --resume */
    dp_test_check_contains ("fresh", "err", "--resume");
    snprintf (args, sizeof args, "map sleep --output '%s' --resume < '%s'", output, input);
    CHECK_EQ_INT (s_dpool ("resumed", args), 0);
    char *got = dp_test_read_file (output);
    char *expected = s_expected (0, 400, 300, 1);
    CHECK (got);
    if (strcmp (got, expected) != 0)
        dp_test_fail (__FILE__, __LINE__, "results.jsonl is not every line once, in order");
    free (got);
    free (expected);
    CHECK_EQ_INT (s_dpool ("status", "status --json"), 0);
    dp_test_check_contains ("status", "out", "\"done\":400,");
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

/*  A batch named by its --name: a name no batch has, and one two batches
    have, are refused (the second listing both ids); once one of them is
    gone, the name names the other. No worker: every task stays queued. */
static void
s_case_by_name (void)
{
    dp_test_broker_start (&s_broker, NULL);
    char input_path[PATH_SIZE];
    const char *input = s_input (input_path, "in", 20, -1, 0);
    char first[32], second[32];
    snprintf (first, sizeof first, "%s", s_submit (input, "--name twin"));
    snprintf (second, sizeof second, "%s", s_submit (input, "--name twin"));
    CHECK_EQ_INT (s_dpool ("unknown", "cancel nosuch"), 4);
    dp_test_check_contains ("unknown", "err", "no batch is named 'nosuch'");
    CHECK_EQ_INT (s_dpool ("twins", "cancel twin"), 4);
    dp_test_check_contains ("twins", "err", first);
    dp_test_check_contains ("twins", "err", second);
    CHECK_EQ_INT (s_dpool ("twins2", "results twin --no-wait"), 4);
    dp_test_check_contains ("twins2", "err", "2 batches are named 'twin'");
    char args[256];
    snprintf (args, sizeof args, "cancel %s", second);
    CHECK_EQ_INT (s_dpool ("cancel-second", args), 0);
    snprintf (args, sizeof args, "results %s", second);
    CHECK_EQ_INT (s_dpool ("drain-second", args), 1); /* 20 ECANCELLED lines: gone after */
    s_wait_listed (second, NULL);
    CHECK_EQ_INT (s_dpool ("cancel-first", "cancel twin"), 0);
    s_wait_listed (first, "cancelled");
    CHECK_EQ_INT (s_dpool ("drain-first", "results twin"), 1);
    char *out = dp_test_output ("drain-first", "out");
    int lines = 0;
    for (char *line = strtok (out, "\n"); line; line = strtok (NULL, "\n"))
        lines += strstr (line, "\"ECANCELLED\"") != NULL;
    free (out);
    CHECK_EQ_INT (lines, 20);
    dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
}

static const dp_test_case_t s_cases[] = {
    {"batch_detached_collected_later_in_order_once", s_case_detached},
    {"batch_results_killed_midway_loses_nothing", s_case_killed_reader},
    {"batch_cancel_ends_queued_tasks", s_case_cancel},
    {"batch_named_by_its_name_when_one_has_it", s_case_by_name},
    {"batch_results_expire_after_ttl", s_case_ttl},
    {"batch_bounds_refused_naming_the_option", s_case_bounds},
    {"batch_rights_other_key_refused_admin_allowed", s_case_rights},
    {"batch_c_api_reopen_by_id", s_case_c_api},
    {"batch_map_resume_after_sigkill_each_line_once", s_case_map_resume},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 150);
}

/*  test_curve.c - CURVE: keys, who the broker admits, and what the wire shows.

    Real programs throughout: dpool keygen makes the keys, dpool-broker runs
    with --curve-secret (and --curve-clients), dpool-worker connects with
    its keys, and this program's pools connect as clients. The "encrypted"
    case puts a TCP relay of its own between a client and the broker and
    looks at every byte that crossed: a marker the task echoes must not be
    readable on the wire with CURVE, and must be without it (so the check
    can fail). Usage: test_curve CASE.
*/
#define _GNU_SOURCE
#include "dp_curve.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS  10000 /* how long a step may take before the test fails */
#define SHORT_MS 1500  /* how long a refused client waits for an answer */
#define GOOD_Z85 "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID" /* a key (ZeroMQ RFC 26's) */
#define BAD_Z85  "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hI~" /* 40 characters, '~' no Z85 */

/*  Runs `dpool keygen name` in the test directory; returns its exit status
    and leaves the public key file's path in path (static buffer). */
static int
s_keygen (const char *name, const char **path)
{
    static char where[4096];
    snprintf (where, sizeof where, "%s", dp_test_path (name));
    char *argv[] = {(char *)dp_test_cli_bin, "keygen", where, NULL};
    pid_t pid = dp_test_spawn (NULL, argv);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status));
    if (path)
        *path = where;
    return WEXITSTATUS (status);
}

/*  Makes a key pair name, name_secret; returns the public file's path
    (allocated). */
static char *
s_key (const char *name)
{
    const char *path;
    CHECK_EQ_INT (s_keygen (name, &path), 0);
    return strdup (path);
}

static char *
s_secret (const char *public_path)
{
    char *secret = malloc (strlen (public_path) + 8);
    CHECK (secret);
    sprintf (secret, "%s_secret", public_path);
    return secret;
}

/*  Copies a public key file into dir. */
static void
s_admit (const char *dir, const char *public_path, const char *name)
{
    char *text = dp_test_read_file (public_path);
    CHECK (text);
    char to[8192];
    snprintf (to, sizeof to, "%s/%s", dir, name);
    FILE *file = fopen (to, "w");
    CHECK (file);
    fputs (text, file);
    fclose (file);
    free (text);
}

/*  A connected pool with these keys (either may be NULL). */
static dpool_pool_t *
s_pool (const char *endpoint, const char *server, const char *secret)
{
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = endpoint;
    config.curve_server = server;
    config.curve_secret = secret;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    if (!pool)
        dp_test_fail (__FILE__, __LINE__, "cannot make a pool: %s",
                      dpool_strerror (dpool_errno ()));
    return pool;
}

/*  Packs one str. */
static size_t
s_pack_str (char *out, size_t cap, const char *text)
{
    size_t len = strlen (text);
    CHECK (len < 32 && len + 1 <= cap);
    out[0] = (char)(0xa0 | len);
    memcpy (out + 1, text, len);
    return len + 1;
}

/*  apply("echo", text) must return text. */
static void
s_echo_ok (dpool_pool_t *pool, const char *text)
{
    char args[64];
    size_t size = s_pack_str (args, sizeof args, text);
    dpool_result_t *result = dpool_pool_apply (pool, "echo", args, size, NULL);
    CHECK (result);
    msgpack_object value;
    if (dpool_result_get (result, WAIT_MS, &value))
        dp_test_fail (__FILE__, __LINE__, "echo failed: %s",
                      dpool_result_error (result) ? dpool_result_error (result)
                                                  : dpool_strerror (dpool_errno ()));
    CHECK (value.type == MSGPACK_OBJECT_STR);
    CHECK_EQ_INT (value.via.str.size, strlen (text));
    CHECK (memcmp (value.via.str.ptr, text, strlen (text)) == 0);
    dpool_result_destroy (&result);
}

/*  Writes text as the key file name in the test directory; returns its
    path (static buffer). */
static const char *
s_write_key (const char *name, const char *text)
{
    static char where[4096];
    snprintf (where, sizeof where, "%s", dp_test_path (name));
    FILE *file = fopen (where, "w");
    CHECK (file);
    CHECK (fputs (text, file) >= 0);
    CHECK_EQ_INT (fclose (file), 0);
    return where;
}

/*  A bad key file: every loader refuses it, naming it and saying why. */
static void
s_expect_bad (const char *path, const char *why)
{
    char err[512], key[DP_CURVE_KEY + 1];
    dp_curve_t curve;
    CHECK_EQ_INT (dp_curve_public (path, key, err, sizeof err), -1);
    if (!strstr (err, path) || !strstr (err, why))
        dp_test_fail (__FILE__, __LINE__, "%s: '%s' lacks '%s'", path, err, why);
    CHECK_EQ_INT (dp_curve_server (&curve, path, err, sizeof err), -1);
    CHECK (strstr (err, path) && strstr (err, why));
}

/*  ---------------------------------------------------------------------------
    keys: dpool keygen and the key files.
*/
static void
s_case_keys (void)
{
    const char *path;
    CHECK_EQ_INT (s_keygen ("k", &path), 0);
    char *public_path = strdup (path);
    char *secret_path = s_secret (public_path);
    struct stat st;
    CHECK_EQ_INT (stat (public_path, &st), 0);
    CHECK_EQ_INT (st.st_mode & 0777, 0644);
    CHECK_EQ_INT (stat (secret_path, &st), 0);
    CHECK_EQ_INT (st.st_mode & 0777, 0600);
    char *before = dp_test_read_file (secret_path);
    CHECK (before);
    /*  Never overwritten. */
    CHECK_EQ_INT (s_keygen ("k", NULL), 4);
    char *after = dp_test_read_file (secret_path);
    CHECK (after && strcmp (before, after) == 0);

    /*  Both files name the same public key, and a client and a server can
        be made from them. */
    char err[256];
    char public_key[DP_CURVE_KEY + 1];
    CHECK_EQ_INT (dp_curve_public (public_path, public_key, err, sizeof err), 0);
    dp_curve_t server, client;
    CHECK_EQ_INT (dp_curve_server (&server, secret_path, err, sizeof err), 0);
    CHECK (strcmp (server.public_, public_key) == 0);
    CHECK_EQ_INT (dp_curve_client (&client, public_key, NULL, err, sizeof err), 0);
    CHECK (client.on && strcmp (client.server, public_key) == 0);
    CHECK (strcmp (client.public_, public_key) != 0); /* a fresh pair of its own */

    /*  As CZMQ's certificates go, a public file's path given for a secret
        key reads its _secret beside it; alone, a public file is no secret
        key. */
    CHECK_EQ_INT (dp_curve_server (&server, public_path, err, sizeof err), 0);
    CHECK (strcmp (server.public_, public_key) == 0);
    char *text = dp_test_read_file (public_path);
    CHECK (text);
    const char *alone = s_write_key ("alone", text);
    free (text);
    CHECK_EQ_INT (dp_curve_server (&server, alone, err, sizeof err), -1);
    CHECK (strstr (err, alone) && strstr (err, "holds no secret-key"));

    /*  Bad key files get a clear error that names them. */
    CHECK_EQ_INT (dp_curve_public ("not-a-key-and-not-a-file", public_key, err, sizeof err), -1);
    CHECK (strstr (err, "cannot open key file"));
    s_expect_bad (s_write_key ("short", "curve\n    public-key = \"tooshort\"\n"),
                  "40 characters of Z85");
    s_expect_bad (s_write_key ("z85", "curve\n    public-key = \"" BAD_Z85 "\"\n"),
                  "40 characters of Z85");
    s_expect_bad (s_write_key ("zpl", "curve\n  public-key = \"" GOOD_Z85 "\"\n"), "ZPL");
    s_expect_bad (dp_test_path (""), "not a regular file");
    const char *fifo = dp_test_path ("fifo");
    CHECK_EQ_INT (mkfifo (fifo, 0600), 0);
    s_expect_bad (fifo, "not a regular file");
    /*  A secret key that is not the public key's. */
    char *other = s_key ("other");
    char *other_secret = s_secret (other);
    text = dp_test_read_file (other_secret);
    CHECK (text);
    char *at = strstr (text, "secret-key");
    CHECK (at);
    at[15] = at[15] == 'a' ? 'b' : 'a';
    const char *mixed = s_write_key ("mixed", text);
    free (text);
    CHECK_EQ_INT (dp_curve_server (&server, mixed, err, sizeof err), -1);
    CHECK (strstr (err, mixed) && strstr (err, "not the secret of public-key"));
    /*  A public file whose _secret beside it is another key's: refused as
        a secret; as a public key only the public file itself is read. */
    CHECK_EQ_INT (rename (other_secret, secret_path), 0);
    CHECK_EQ_INT (dp_curve_server (&server, public_path, err, sizeof err), -1);
    CHECK (strstr (err, public_path) && strstr (err, secret_path) &&
           strstr (err, "hold different public keys"));
    char again[DP_CURVE_KEY + 1];
    CHECK_EQ_INT (dp_curve_public (public_path, again, err, sizeof err), 0);
    CHECK (strcmp (again, client.server) == 0);
    free (other);
    free (other_secret);
    CHECK_EQ_INT (dp_curve_client_env (&client, NULL, secret_path, err, sizeof err), -1);
    CHECK (strstr (err, "public key"));
    /*  No keys at all: plain. */
    unsetenv ("DPOOL_CURVE_SERVER");
    unsetenv ("DPOOL_CURVE_SECRET");
    CHECK_EQ_INT (dp_curve_client_env (&client, NULL, NULL, err, sizeof err), 0);
    CHECK (!client.on);
    free (before);
    free (after);
    free (public_path);
    free (secret_path);
}

/*  ---------------------------------------------------------------------------
    key_not_shown: a secret key file that is not valid ZPL is refused by
    every program, and no program shows its secret key while saying so.
*/

/*  The 40 characters of secret-key in the secret key file at path. */
static void
s_secret_text (const char *path, char out[DP_CURVE_KEY + 1])
{
    char *text = dp_test_read_file (path);
    CHECK (text);
    const char *at = strstr (text, "secret-key = \"");
    CHECK (at);
    at += strlen ("secret-key = \"");
    CHECK (strlen (at) > DP_CURVE_KEY && at[DP_CURVE_KEY] == '"');
    memcpy (out, at, DP_CURVE_KEY);
    out[DP_CURVE_KEY] = 0;
    free (text);
}

/*  Copies the file at from to name in the test directory with its first
    line that holds mark replaced by line; returns the new path (static). */
static const char *
s_edit_key (const char *from, const char *name, const char *mark, const char *line)
{
    char *text = dp_test_read_file (from);
    CHECK (text);
    char *at = strstr (text, mark);
    CHECK (at);
    while (at > text && at[-1] != '\n')
        at--;
    char *end = strchr (at, '\n');
    CHECK (end);
    char edited[8192];
    snprintf (edited, sizeof edited, "%.*s%s%s", (int)(at - text), text, line, end);
    free (text);
    return s_write_key (name, edited);
}

/*  Fails if any 8 characters in a row of secret are in the file name. */
static void
s_not_shown (const char *name, const char *secret)
{
    char *text = dp_test_read_file (dp_test_path (name));
    CHECK (text);
    for (int i = 0; i + 8 <= DP_CURVE_KEY; i++) {
        char piece[9];
        memcpy (piece, secret + i, 8);
        piece[8] = 0;
        if (strstr (text, piece))
            dp_test_fail (__FILE__, __LINE__, "%s shows the secret key: %s", name, text);
    }
    free (text);
}

/*  Runs argv (stdout and stderr into tag.out, tag.err): it must exit with
    an error that names path, and show no part of secret on either. */
static void
s_refuses_quietly (const char *tag, char *const argv[], const char *path, const char *secret)
{
    pid_t pid = dp_test_spawn (tag, argv);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status));
    if (WEXITSTATUS (status) == 0)
        dp_test_fail (__FILE__, __LINE__, "%s accepted a key file that is not ZPL", tag);
    char name[64];
    snprintf (name, sizeof name, "%s.out", tag);
    s_not_shown (name, secret);
    snprintf (name, sizeof name, "%s.err", tag);
    s_not_shown (name, secret);
    char *err = dp_test_read_file (dp_test_path (name));
    CHECK (err);
    if (!strstr (err, path))
        dp_test_fail (__FILE__, __LINE__, "%s: its error does not name %s: %s", tag, path, err);
    free (err);
}

/*  The broker, a worker and the CLI each refuse the key file at path. */
static void
s_all_refuse (const char *tag, const char *path, const char *server, const char *secret)
{
    char broker_tag[64], worker_tag[64], cli_tag[64];
    snprintf (broker_tag, sizeof broker_tag, "%s-broker", tag);
    snprintf (worker_tag, sizeof worker_tag, "%s-worker", tag);
    snprintf (cli_tag, sizeof cli_tag, "%s-cli", tag);
    const char *endpoint = dp_test_ipc (tag);
    char *broker[] = {(char *)dp_test_broker_bin, "--bind",     (char *)endpoint,
                      "--curve-secret",           (char *)path, NULL};
    s_refuses_quietly (broker_tag, broker, path, secret);
    char *worker[] = {(char *)dp_test_worker_bin,
                      "--connect",
                      (char *)endpoint,
                      "--curve-server",
                      (char *)server,
                      "--curve-secret",
                      (char *)path,
                      NULL};
    s_refuses_quietly (worker_tag, worker, path, secret);
    char *cli[] = {(char *)dp_test_cli_bin, "status",         "--connect",
                   (char *)endpoint,        "--curve-server", (char *)server,
                   "--curve-secret",        (char *)path,     NULL};
    s_refuses_quietly (cli_tag, cli, path, secret);
}

static void
s_case_key_not_shown (void)
{
    char *public_path = s_key ("shy");
    char *secret_path = s_secret (public_path);
    char secret[DP_CURVE_KEY + 1];
    s_secret_text (secret_path, secret);
    char line[128];
    /*  The secret-key line without its '=': CZMQ's parser reports the rest
        of that line. */
    snprintf (line, sizeof line, "    secret-key \"%s\"", secret);
    s_all_refuse ("no-equals", s_edit_key (secret_path, "no-equals", "secret-key", line),
                  public_path, secret);
    /*  Text after the closing quote, the key again. */
    snprintf (line, sizeof line, "    secret-key = \"%s\" %s", secret, secret);
    s_all_refuse ("junk", s_edit_key (secret_path, "junk", "secret-key", line), public_path,
                  secret);
    /*  The error on another line (an indent of 3), the key intact. */
    char public_key[DP_CURVE_KEY + 1];
    char err[256];
    CHECK_EQ_INT (dp_curve_public (public_path, public_key, err, sizeof err), 0);
    snprintf (line, sizeof line, "   public-key = \"%s\"", public_key);
    s_all_refuse ("indent", s_edit_key (secret_path, "indent", "public-key", line), public_path,
                  secret);
    /*  Hand-edited but valid ZPL, with what the parser looks at in odd
        places (comments, quotes, '=', '#', '/'): loaded as it stands. */
    char text[1024];
    snprintf (text, sizeof text,
              "#   edited by hand: 'quotes', \"more\", a = b # c\n"
              "metadata\n"
              "    note = 'a # in quotes / = and \"'   # a comment\n"
              "    path = /etc/dpool # unquoted\n"
              "curve\n"
              "    public-key = '%s'\n"
              "    secret-key = \"%s\"\t# the secret\n",
              public_key, secret);
    dp_curve_t curve;
    CHECK_EQ_INT (dp_curve_server (&curve, s_write_key ("edited", text), err, sizeof err), 0);
    CHECK (strcmp (curve.public_, public_key) == 0 && strcmp (curve.secret, secret) == 0);
    free (public_path);
    free (secret_path);
}

/*  ---------------------------------------------------------------------------
    admitted / refused: a broker that admits the keys in a directory.
*/
typedef struct {
    dp_test_broker_t broker;
    char *broker_key; /* its public key file */
    char *worker_key;
    char *client_key;
} s_setup_t;

static void
s_start (s_setup_t *s, bool only_known)
{
    s->broker_key = s_key ("broker");
    s->worker_key = s_key ("worker");
    s->client_key = s_key ("client");
    char *broker_secret = s_secret (s->broker_key);
    const char *dir = dp_test_path ("clients");
    CHECK_EQ_INT (mkdir (dir, 0700), 0);
    static char clients[4096];
    snprintf (clients, sizeof clients, "%s", dir);
    s_admit (clients, s->worker_key, "worker");
    s_admit (clients, s->client_key, "client");
    const char *extra[] = {"--curve-secret", broker_secret, only_known ? "--curve-clients" : NULL,
                           clients, NULL};
    dp_test_broker_start (&s->broker, extra);
    free (broker_secret);
}

static void
s_finish (s_setup_t *s)
{
    int status = dp_test_stop (s->broker.pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    free (s->broker_key);
    free (s->worker_key);
    free (s->client_key);
}

/*  Admitted keys work over tcp and ipc: a worker and clients with keys
    from the directory run a map and an apply. */
static void
s_case_admitted (void)
{
    s_setup_t s;
    s_start (&s, true);
    char *worker_secret = s_secret (s.worker_key);
    const char *extra[] = {"--curve-server", s.broker_key, "--curve-secret", worker_secret, NULL};
    pid_t workers = dp_test_workers_start (s.broker.tcp, 2, extra);
    char *client_secret = s_secret (s.client_key);
    dpool_pool_t *pool = s_pool (s.broker.tcp, s.broker_key, client_secret);

    enum { N = 200 };
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    for (int i = 0; i < N; i++)
        msgpack_pack_int (&pk, i * 7);
    dpool_result_t *result = dpool_pool_map (pool, "echo", args.data, args.size, 0, NULL);
    CHECK (result);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, WAIT_MS, &value), 0);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == N);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT (value.via.array.ptr[i].via.i64, i * 7);
    dpool_result_destroy (&result);
    msgpack_sbuffer_destroy (&args);

    /*  The ipc endpoint is the same socket: CURVE there too. */
    dpool_pool_t *local = s_pool (s.broker.ipc, s.broker_key, client_secret);
    s_echo_ok (local, "over ipc");
    CHECK_EQ_INT (dp_test_status_count (local, "connections", "handshake_failed"), 0);
    dpool_pool_destroy (&local);
    dpool_pool_destroy (&pool);
    int status = dp_test_stop (workers, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    free (worker_secret);
    free (client_secret);
    s_finish (&s);
}

typedef struct {
    dpool_pool_t *pool;
    long long at_least;
} s_failed_t;

static bool
s_handshakes_failed (void *arg)
{
    s_failed_t *f = (s_failed_t *)arg;
    return dp_test_status_count (f->pool, "connections", "handshake_failed") >= f->at_least;
}

/*  Unknown keys, wrong server keys and plain peers get nothing: no answer,
    no registration; the broker counts their failed handshakes. */
static void
s_case_refused (void)
{
    s_setup_t s;
    s_start (&s, true);
    char *client_secret = s_secret (s.client_key);
    dpool_pool_t *good = s_pool (s.broker.tcp, s.broker_key, client_secret);
    CHECK_EQ_INT (dp_test_status_count (good, NULL, "workers"), 0);

    char *stranger_key = s_key ("stranger");
    char *stranger_secret = s_secret (stranger_key);
    /*  A key the broker does not know. */
    dpool_pool_t *pool = s_pool (s.broker.tcp, s.broker_key, stranger_secret);
    void *data;
    size_t size;
    CHECK_EQ_INT (dpool_pool_status (pool, SHORT_MS, &data, &size), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_ETIMEOUT);
    dpool_pool_destroy (&pool);
    /*  A known key that trusts the wrong server key. */
    pool = s_pool (s.broker.tcp, stranger_key, client_secret);
    CHECK_EQ_INT (dpool_pool_status (pool, SHORT_MS, &data, &size), -1);
    dpool_pool_destroy (&pool);
    /*  No CURVE at all. */
    pool = s_pool (s.broker.tcp, NULL, NULL);
    CHECK_EQ_INT (dpool_pool_status (pool, SHORT_MS, &data, &size), -1);
    dpool_pool_destroy (&pool);
    s_failed_t failed = {good, 3};
    CHECK (dp_test_wait_until (s_handshakes_failed, &failed, WAIT_MS));

    /*  A worker with a key the broker does not know never registers: its
        attempts fail the handshake, and the broker lists no worker. */
    long long before = dp_test_status_count (good, "connections", "handshake_failed");
    const char *extra[] = {"--curve-server", s.broker_key, "--curve-secret", stranger_secret,
                           NULL};
    pid_t workers = dp_test_workers_start (s.broker.tcp, 1, extra);
    failed.at_least = before + 1;
    CHECK (dp_test_wait_until (s_handshakes_failed, &failed, WAIT_MS));
    CHECK_EQ_INT (dp_test_status_count (good, NULL, "workers"), 0);
    dp_test_stop (workers, SIGTERM, WAIT_MS);

    /*  The CLI says what to check. */
    char *argv[] = {(char *)dp_test_cli_bin,
                    "status",
                    "--connect",
                    s.broker.tcp,
                    "--curve-server",
                    s.broker_key,
                    "--curve-secret",
                    stranger_secret,
                    "--connect-timeout-ms",
                    "1000",
                    NULL};
    pid_t cli = dp_test_spawn ("cli", argv);
    int status = dp_test_wait_exit (cli, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status));
    CHECK_EQ_INT (WEXITSTATUS (status), 3);
    char *err = dp_test_read_file (dp_test_path ("cli.err"));
    CHECK (err && strstr (err, "admits this client's key"));
    free (err);

    dpool_pool_destroy (&good);
    free (stranger_key);
    free (stranger_secret);
    free (client_secret);
    s_finish (&s);
}

/*  ---------------------------------------------------------------------------
    refused workers: a worker the broker never admits says why and gives up.
*/
typedef struct {
    const char *tag;    /* the worker's output files */
    const char *expect; /* what its error must say */
} s_said_t;

/*  True once the stderr of s_said_t's worker holds its expected text on a
    line logged at error level. */
static bool
s_said (void *arg)
{
    const s_said_t *said = (const s_said_t *)arg;
    char name[64];
    snprintf (name, sizeof name, "%s.err", said->tag);
    char *text = dp_test_read_file (dp_test_path (name));
    bool found = false;
    for (char *at = text ? strstr (text, said->expect) : NULL; at && !found;
         at = strstr (at + 1, said->expect)) {
        char *line = at;
        while (line > text && line[-1] != '\n')
            line--;
        const char *mark = strchr (line, ' '); /* the level's, after the time */
        found = mark && mark[1] == 'E' && mark[2] == ' ';
    }
    free (text);
    return found;
}

/*  Starts dpool-worker --procs 2 --handshake-timeout 2 with keys against
    endpoint, where every handshake fails: it must say expect at error level
    within seconds, and exit 3 once the timeout has passed. */
static void
s_refused_worker (const char *tag, const char *endpoint, const char *const *keys,
                  const char *expect)
{
    const char *argv[16] = {dp_test_worker_bin,    "--connect", endpoint, "--procs", "2",
                            "--handshake-timeout", "2"};
    int argc = 7;
    for (int i = 0; keys[i]; i++)
        argv[argc++] = keys[i];
    argv[argc] = NULL;
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    s_said_t said = {tag, expect};
    if (!dp_test_wait_until (s_said, &said, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "worker %s did not log \"%s\" at error level", tag,
                      expect);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    if (status == -1)
        dp_test_fail (__FILE__, __LINE__, "worker %s did not give up", tag);
    CHECK (WIFEXITED (status));
    CHECK_EQ_INT (WEXITSTATUS (status), 3);
    said.expect = "giving up";
    CHECK (s_said (&said));
}

/*  An unlisted key, the wrong server key, no CURVE for a CURVE broker, and
    CURVE for a plain one: each worker logs the likely cause at error level
    and dpool-worker exits 3 after --handshake-timeout. (A mismatch of
    mechanisms shows on this side as a protocol error or, when the broker
    closes first, as a connection closed mid-handshake: the texts of both
    name the cause.) */
static void
s_case_refused_worker_says_why (void)
{
    s_setup_t s;
    s_start (&s, true);
    char *worker_secret = s_secret (s.worker_key);
    char *stranger_key = s_key ("stranger");
    char *stranger_secret = s_secret (stranger_key);
    const char *unlisted[] = {"--curve-server", s.broker_key, "--curve-secret", stranger_secret,
                              NULL};
    s_refused_worker ("unlisted", s.broker.tcp, unlisted,
                      "refused this worker's CURVE key (ZAP status 400)");
    const char *wrong_server[] = {"--curve-server", stranger_key, "--curve-secret", worker_secret,
                                  NULL};
    s_refused_worker ("wrong_server", s.broker.tcp, wrong_server, "wrong --curve-server key");
    const char *plain[] = {NULL};
    s_refused_worker ("plain", s.broker.tcp, plain, "requires CURVE");
    dp_test_broker_t open;
    dp_test_broker_start (&open, NULL);
    const char *curve_only[] = {"--curve-server", s.broker_key, NULL};
    s_refused_worker ("curve_only", open.tcp, curve_only, "without CURVE");
    int status = dp_test_stop (open.pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    free (stranger_key);
    free (stranger_secret);
    free (worker_secret);
    s_finish (&s);
}

/*  Without --curve-clients any key is admitted: a worker and a client with
    only the broker's public key (fresh key pairs of their own) work. */
static void
s_case_any_key (void)
{
    s_setup_t s;
    s_start (&s, false);
    const char *extra[] = {"--curve-server", s.broker_key, NULL};
    pid_t workers = dp_test_workers_start (s.broker.tcp, 1, extra);
    /*  The key as text works as well as the file. */
    char key[DP_CURVE_KEY + 1], err[256];
    CHECK_EQ_INT (dp_curve_public (s.broker_key, key, err, sizeof err), 0);
    dpool_pool_t *pool = s_pool (s.broker.tcp, key, NULL);
    s_echo_ok (pool, "any key");
    /*  A plain client still gets nothing. */
    dpool_pool_t *plain = s_pool (s.broker.tcp, NULL, NULL);
    void *data;
    size_t size;
    CHECK_EQ_INT (dpool_pool_status (plain, SHORT_MS, &data, &size), -1);
    dpool_pool_destroy (&plain);
    dpool_pool_destroy (&pool);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    s_finish (&s);
}

/*  ---------------------------------------------------------------------------
    encrypted: a relay between client and broker records the wire.
*/
typedef struct {
    int listener;
    int port;        /* where clients connect */
    int target_port; /* the broker's */
    pthread_t thread;
    char *seen; /* every byte relayed, both ways */
    size_t seen_size;
    size_t seen_cap;
    pthread_mutex_t lock;
    volatile bool stop;
} s_relay_t;

static void
s_relay_record (s_relay_t *r, const char *data, size_t size)
{
    pthread_mutex_lock (&r->lock);
    if (r->seen_size + size > r->seen_cap) {
        size_t cap = (r->seen_size + size) * 2;
        char *more = realloc (r->seen, cap);
        CHECK (more);
        r->seen = more;
        r->seen_cap = cap;
    }
    memcpy (r->seen + r->seen_size, data, size);
    r->seen_size += size;
    pthread_mutex_unlock (&r->lock);
}

/*  Relays every connection to the target, one at a time; ends on stop. */
static void *
s_relay_main (void *arg)
{
    s_relay_t *r = (s_relay_t *)arg;
    while (!r->stop) {
        struct pollfd accept_fd = {r->listener, POLLIN, 0};
        if (poll (&accept_fd, 1, 50) <= 0)
            continue;
        int in = accept (r->listener, NULL, NULL);
        if (in < 0)
            continue;
        int out = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons (r->target_port)};
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        if (out < 0 || connect (out, (struct sockaddr *)&addr, sizeof addr) != 0) {
            close (in);
            if (out >= 0)
                close (out);
            continue;
        }
        bool open = true;
        while (open && !r->stop) {
            struct pollfd fds[2] = {{in, POLLIN, 0}, {out, POLLIN, 0}};
            if (poll (fds, 2, 50) <= 0)
                continue;
            for (int i = 0; i < 2 && open; i++) {
                if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                char buf[65536];
                ssize_t n = read (fds[i].fd, buf, sizeof buf);
                if (n <= 0) {
                    open = false;
                    break;
                }
                s_relay_record (r, buf, (size_t)n);
                int to = i == 0 ? out : in;
                for (ssize_t done = 0; done < n;) {
                    ssize_t w = write (to, buf + done, (size_t)(n - done));
                    if (w <= 0) {
                        open = false;
                        break;
                    }
                    done += w;
                }
            }
        }
        close (in);
        close (out);
    }
    return NULL;
}

static void
s_relay_start (s_relay_t *r, const char *target)
{
    memset (r, 0, sizeof *r);
    pthread_mutex_init (&r->lock, NULL);
    const char *colon = strrchr (target, ':');
    CHECK (colon);
    r->target_port = atoi (colon + 1);
    r->listener = socket (AF_INET, SOCK_STREAM, 0);
    CHECK (r->listener >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    CHECK_EQ_INT (bind (r->listener, (struct sockaddr *)&addr, sizeof addr), 0);
    CHECK_EQ_INT (listen (r->listener, 8), 0);
    socklen_t len = sizeof addr;
    CHECK_EQ_INT (getsockname (r->listener, (struct sockaddr *)&addr, &len), 0);
    r->port = ntohs (addr.sin_port);
    CHECK_EQ_INT (pthread_create (&r->thread, NULL, s_relay_main, r), 0);
}

/*  Stops the relay; true if marker crossed it in the clear. */
static bool
s_relay_stop (s_relay_t *r, const char *marker)
{
    r->stop = true;
    pthread_join (r->thread, NULL);
    close (r->listener);
    CHECK (r->seen_size > 0);
    bool found = memmem (r->seen, r->seen_size, marker, strlen (marker)) != NULL;
    free (r->seen);
    pthread_mutex_destroy (&r->lock);
    return found;
}

/*  One echo of marker through the relay, to a broker with or without
    CURVE; returns whether the marker was readable on the wire. */
static bool
s_marker_visible (bool curve, const char *marker)
{
    dp_test_broker_t broker;
    char *broker_key = NULL;
    char *broker_secret = NULL;
    if (curve) {
        broker_key = s_key ("relay-broker");
        broker_secret = s_secret (broker_key);
        const char *extra[] = {"--curve-secret", broker_secret, NULL};
        dp_test_broker_start (&broker, extra);
    } else
        dp_test_broker_start (&broker, NULL);
    const char *worker_extra[] = {"--curve-server", broker_key, NULL};
    pid_t workers = dp_test_workers_start (broker.ipc, 1, curve ? worker_extra : NULL);
    s_relay_t relay;
    s_relay_start (&relay, broker.tcp);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", relay.port);
    dpool_pool_t *pool = s_pool (endpoint, broker_key, NULL);
    s_echo_ok (pool, marker);
    dpool_pool_destroy (&pool);
    bool visible = s_relay_stop (&relay, marker);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    dp_test_stop (broker.pid, SIGTERM, WAIT_MS);
    free (broker_key);
    free (broker_secret);
    return visible;
}

static void
s_case_encrypted (void)
{
    const char *marker = "dpool-marker-7f3a9c";
    /*  The check can fail: in the clear, the marker shows. */
    CHECK (s_marker_visible (false, marker));
    if (s_marker_visible (true, marker))
        dp_test_fail (__FILE__, __LINE__, "the marker crossed the wire in the clear with CURVE");
}

static const dp_test_case_t s_cases[] = {
    {"curve_keys", s_case_keys},
    {"curve_key_not_shown", s_case_key_not_shown},
    {"curve_admitted", s_case_admitted},
    {"curve_refused", s_case_refused, .valgrind = "curve_refused_broker_valgrind"},
    {"curve_any_key", s_case_any_key},
    {"curve_refused_worker_says_why", s_case_refused_worker_says_why},
    {"curve_encrypted", s_case_encrypted},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

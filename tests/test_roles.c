/*  test_roles.c - the broker's key configuration: roles, quotas, reload.

    Real programs with real CURVE keys: dpool keygen makes them, dpool-broker
    runs with --curve-secret and --curve-keys FILE, dpool-worker and this
    program's pools connect with them. Each role is refused with EDENIED
    and a message naming the right; quotas refuse with EREJECTED naming the
    quota and let tasks in again once others finished; a key removed from
    the file loses access at the next SIGHUP, with the broker still
    running. Usage: test_roles CASE.
*/
#define _GNU_SOURCE
#include "dp_curve.h"
#include "dp_keys.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS  10000 /* how long a step may take before the test fails */
#define SHORT_MS 1500  /* how long a refused call may wait for its answer */

/*  A key pair made by `dpool keygen`: its public file, its secret file and
    its Z85 public key. */
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

/*  Writes text to the file at path, in place of what it held. */
static void
s_write (const char *path, const char *text)
{
    char tmp[4200];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen (tmp, "w");
    CHECK (file);
    fputs (text, file);
    CHECK_EQ_INT (fclose (file), 0);
    CHECK_EQ_INT (rename (tmp, path), 0);
}

static dpool_pool_t *
s_pool (const char *endpoint, const s_key_t *server, const s_key_t *own)
{
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = endpoint;
    config.curve_server = server ? server->public_ : NULL;
    config.curve_secret = own ? own->secret : NULL;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    if (!pool)
        dp_test_fail (__FILE__, __LINE__, "cannot make a pool: %s",
                      dpool_strerror (dpool_errno ()));
    return pool;
}

typedef struct {
    dpool_pool_t *pool;
    const char *outer;
    const char *key;
    long long at_least;
} s_count_t;

static bool
s_count_reached (void *arg)
{
    s_count_t *c = (s_count_t *)arg;
    return dp_test_status_count (c->pool, c->outer, c->key) >= c->at_least;
}

static void
s_wait_count (dpool_pool_t *pool, const char *outer, const char *key, long long at_least)
{
    s_count_t c = {pool, outer, key, at_least};
    if (!dp_test_wait_until (s_count_reached, &c, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "status %s.%s stayed under %lld", outer ? outer : "",
                      key, at_least);
}

/*  apply ("echo", [n]) and its result, within WAIT_MS. */
static dpool_result_t *
s_echo (dpool_pool_t *pool, int n)
{
    char args[2] = {(char)0x91, (char)n};
    dpool_result_t *result = dpool_pool_apply_async (pool, "echo", args, sizeof args, NULL);
    CHECK (result);
    msgpack_object value;
    dpool_result_get (result, WAIT_MS, &value);
    CHECK (dpool_result_ready (result));
    return result;
}

/*  The result failed with code and a message holding text. */
static void
s_check_refused (dpool_result_t *result, int code, const char *text)
{
    dp_test_check_failed (result, code);
    if (!strstr (dpool_result_error (result), text))
        dp_test_fail (__FILE__, __LINE__, "'%s' does not say '%s'", dpool_result_error (result),
                      text);
}

/*  ---------------------------------------------------------------------------
    keys_file: the key file's format.
*/
static void
s_case_keys_file (void)
{
    s_key_t a, b;
    s_keygen (&a, "a");
    s_keygen (&b, "b");
    char text[1024];
    snprintf (text, sizeof text,
              "# a comment\n\n  %s name=alice roles=submit,queue max_queued=10 "
              "max_queued_bytes=2K weight=3\n%s name=w roles=worker functions=echo,square\n",
              a.z85, b.z85);
    const char *path = dp_test_path ("keys");
    s_write (path, text);
    char err[512];
    dp_keys_t *keys = dp_keys_load (path, err, sizeof err);
    CHECK (keys);
    CHECK_EQ_INT (dp_keys_size (keys), 2);
    const dp_key_t *alice = dp_keys_lookup (keys, a.z85);
    CHECK (alice && strcmp (alice->name, "alice") == 0);
    CHECK_EQ_INT (alice->rights, DP_RIGHT_SUBMIT | DP_RIGHT_QUEUE);
    CHECK_EQ_INT (alice->max_queued, 10);
    CHECK_EQ_INT (alice->max_queued_bytes, 2048);
    CHECK_EQ_INT (alice->weight, 3);
    const dp_key_t *w = dp_keys_lookup (keys, b.z85);
    CHECK (w && dp_key_may_offer (w, "square") && !dp_key_may_offer (w, "sleep"));
    CHECK (!dp_key_may_offer (alice, "echo"));
    char rights[64];
    CHECK (strcmp (dp_rights_text (alice->rights, rights, sizeof rights), "submit,queue") == 0);
    dp_keys_destroy (&keys);
    CHECK (!keys);

    /*  Each mistake is named, with its line. */
    const char *bad[] = {"notakey name=x\n", "%s roles=submit,fly\n", "%s colour=blue\n",
                         "%s max_queued=many\n", "%s\n%s\n"};
    const char *why[] = {"a line starts with a key", "roles are", "unknown field 'colour'",
                         "is not a count", "keys:2: key listed twice"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf (text, sizeof text, bad[i], a.z85, a.z85);
        s_write (path, text);
        CHECK (!dp_keys_load (path, err, sizeof err));
        if (!strstr (err, why[i]))
            dp_test_fail (__FILE__, __LINE__, "'%s' does not say '%s'", err, why[i]);
    }
}

/*  ---------------------------------------------------------------------------
    keys_dir: a directory of public key files admits each key with every
    right; a key in two files counts once (zcertstore would abort), and
    secret files, dot files, other files and subdirectories are passed
    over.
*/
static void
s_case_keys_dir (void)
{
    s_key_t a, b, c;
    s_keygen (&a, "a");
    s_keygen (&b, "b");
    s_keygen (&c, "c");
    const char *dir = dp_test_path ("admitted");
    char path[4200];
    snprintf (path, sizeof path, "%s", dir);
    CHECK_EQ_INT (mkdir (path, 0700), 0);
    const char *copies[][2] = {{a.public_, "alice"},
                               {a.public_, "alice-again"},
                               {b.secret, "b_secret"},
                               {c.public_, ".hidden"},
                               {"# no key\n", "README"}};
    for (size_t i = 0; i < sizeof copies / sizeof *copies; i++) {
        char *text =
            copies[i][0][0] == '#' ? strdup (copies[i][0]) : dp_test_read_file (copies[i][0]);
        CHECK (text);
        char to[4400];
        snprintf (to, sizeof to, "%s/%s", path, copies[i][1]);
        s_write (to, text);
        free (text);
    }
    char sub[4400];
    snprintf (sub, sizeof sub, "%s/sub", path);
    CHECK_EQ_INT (mkdir (sub, 0700), 0);
    char err[512] = "";
    dp_keys_t *keys = dp_keys_load (path, err, sizeof err);
    if (!keys)
        dp_test_fail (__FILE__, __LINE__, "%s", err);
    CHECK_EQ_INT (dp_keys_size (keys), 1);
    const dp_key_t *alice = dp_keys_lookup (keys, a.z85);
    CHECK (alice && strncmp (alice->name, "alice", 5) == 0);
    CHECK_EQ_INT (alice->rights, DP_RIGHTS_ALL);
    CHECK (!dp_keys_lookup (keys, b.z85) && !dp_keys_lookup (keys, c.z85));
    dp_keys_destroy (&keys);
}

/*  ---------------------------------------------------------------------------
    A broker with a key file: an admin, a client, a worker.
*/
typedef struct {
    dp_test_broker_t broker;
    s_key_t server, admin, client, worker;
    char keys[4096];
} s_setup_t;

static void
s_keys_write (s_setup_t *s, bool with_client)
{
    char text[2048];
    snprintf (text, sizeof text,
              "# roles of test_roles\n"
              "%s name=root roles=all\n"
              "%s name=carol roles=submit max_queued=%d\n"
              "%s name=w roles=worker functions=echo,square\n",
              s->admin.z85, with_client ? s->client.z85 : s->admin.z85, 3, s->worker.z85);
    if (!with_client) /* the admin's line once more would be an error: drop it */
        snprintf (text, sizeof text,
                  "%s name=root roles=all\n%s name=w roles=worker functions=echo,square\n",
                  s->admin.z85, s->worker.z85);
    s_write (s->keys, text);
}

static void
s_start (s_setup_t *s, const char *const *more)
{
    s_keygen (&s->server, "server");
    s_keygen (&s->admin, "admin");
    s_keygen (&s->client, "client");
    s_keygen (&s->worker, "worker");
    snprintf (s->keys, sizeof s->keys, "%s", dp_test_path ("keys"));
    s_keys_write (s, true);
    const char *extra[16] = {"--curve-secret", s->server.secret, "--curve-keys", s->keys};
    for (int i = 0; more && more[i] && i < 10; i++)
        extra[4 + i] = more[i];
    dp_test_broker_start (&s->broker, extra);
}

static void
s_finish (s_setup_t *s)
{
    int status = dp_test_stop (s->broker.pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

static pid_t
s_workers (s_setup_t *s, const s_key_t *key, const char *functions)
{
    const char *extra[] = {"--curve-server", s->server.public_, "--curve-secret", key->secret,
                           NULL};
    (void)functions;
    return dp_test_workers_start (s->broker.tcp, 1, extra);
}

/*  The worker refused the worker right has said so, naming the right. */
static bool
s_rogue_told (void *arg)
{
    (void)arg;
    char *log = dp_test_read_file (dp_test_path ("rogue.err"));
    bool told = log && strstr (log, "denies this worker") && strstr (log, "serve as a worker");
    free (log);
    return told;
}

/*  roles_refused: each role's refusals, with their error and count. */
static void
s_case_refused (void)
{
    s_setup_t s;
    s_start (&s, NULL);
    dpool_pool_t *admin = s_pool (s.broker.tcp, &s.server, &s.admin);
    pid_t workers = s_workers (&s, &s.worker, NULL);
    dp_test_wait_workers (admin, 1, WAIT_MS);
    dpool_pool_t *client = s_pool (s.broker.tcp, &s.server, &s.client);
    dpool_result_t *result = s_echo (client, 7);
    CHECK (dpool_result_successful (result));
    dpool_result_destroy (&result);

    /*  A worker key may not submit. */
    dpool_pool_t *worker = s_pool (s.broker.tcp, &s.server, &s.worker);
    result = s_echo (worker, 1);
    s_check_refused (result, DPOOL_EDENIED, "key 'w' may not submit tasks (roles: worker)");
    dpool_result_destroy (&result);
    CHECK_EQ_INT (dp_test_status_count (admin, "refused", "submit"), 1);

    /*  A client key may not use named queues, nor serve as a worker. */
    CHECK (!dpool_queue_open (client, "q", 0));
    CHECK_EQ_INT (dpool_errno (), DPOOL_EDENIED);
    CHECK_EQ_INT (dp_test_status_count (admin, "refused", "queue"), 1);
    const char *rogue_argv[] = {
        dp_test_worker_bin, "--connect",      s.broker.tcp,     "--procs",       "1",
        "--curve-server",   s.server.public_, "--curve-secret", s.client.secret, NULL};
    pid_t rogue = dp_test_spawn ("rogue", (char *const *)rogue_argv);
    s_wait_count (admin, "refused", "worker", 1);
    CHECK (dp_test_wait_until (s_rogue_told, NULL, WAIT_MS));
    CHECK_EQ_INT (dp_test_status_count (admin, NULL, "workers"), 1);
    dp_test_stop (rogue, SIGKILL, WAIT_MS);
    /*  The worker key offers only the functions its line names. */
    result = dpool_pool_apply_async (admin, "sleep", "\x91\x00", 2, NULL);
    CHECK (result);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, WAIT_MS, &value), -1);
    CHECK_EQ_INT (dpool_result_code (result), DPOOL_ENOFUNC);
    dpool_result_destroy (&result);

    /*  The dpool command says so and exits 5 (EXIT_DENIED). */
    const char *apply[] = {"apply",          "echo",           "[1]",           "--curve-server",
                           s.server.public_, "--curve-secret", s.worker.secret, NULL};
    char *out = NULL, *err = NULL;
    CHECK_EQ_INT (dp_test_cli_run ("cli_apply", s.broker.tcp, apply, WAIT_MS, &out, &err), 5);
    CHECK (strstr (err, "EDENIED") && strstr (err, "may not submit tasks"));
    free (out);
    free (err);
    const char *put[] = {
        "queue",          "put",           "q", "1", "--curve-server", s.server.public_,
        "--curve-secret", s.client.secret, NULL};
    CHECK_EQ_INT (dp_test_cli_run ("cli_put", s.broker.tcp, put, WAIT_MS, &out, &err), 5);
    CHECK (strstr (err, "EDENIED"));
    free (out);
    free (err);

    /*  Only an admin sees every session. */
    CHECK_EQ_INT (dp_test_status_count (client, NULL, "sessions"), 1);
    CHECK (dp_test_status_count (admin, NULL, "sessions") >= 3);
    dpool_pool_destroy (&worker);
    dpool_pool_destroy (&client);
    dpool_pool_destroy (&admin);
    int status = dp_test_stop (workers, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status));
    s_finish (&s);
}

/*  roles_quota: a key's quota refuses its fourth held task, and lets
    tasks in once the others finished. */
static void
s_case_quota (void)
{
    s_setup_t s;
    s_start (&s, NULL);
    dpool_pool_t *client = s_pool (s.broker.tcp, &s.server, &s.client);
    /*  No worker yet: the tasks stay held. */
    dpool_result_t *held[3];
    char args[2] = {(char)0x91, 5};
    for (int i = 0; i < 3; i++)
        CHECK ((held[i] = dpool_pool_apply_async (client, "echo", args, sizeof args, NULL)));
    dpool_result_t *result = s_echo (client, 4);
    s_check_refused (result, DPOOL_EREJECTED, "quota reached: key 'carol' holds 3 tasks");
    dpool_result_destroy (&result);
    pid_t workers = s_workers (&s, &s.worker, NULL);
    msgpack_object value;
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT (dpool_result_get (held[i], WAIT_MS, &value), 0);
        dpool_result_destroy (&held[i]);
    }
    result = s_echo (client, 6);
    CHECK (dpool_result_successful (result));
    dpool_result_destroy (&result);
    CHECK_EQ_INT (dp_test_status_count (client, "refused", "quota"), 1);
    dpool_pool_destroy (&client);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    s_finish (&s);
}

/*  roles_reload: a key removed from the file loses access at SIGHUP. */
static void
s_case_reload (void)
{
    s_setup_t s;
    s_start (&s, NULL);
    dpool_pool_t *admin = s_pool (s.broker.tcp, &s.server, &s.admin);
    pid_t workers = s_workers (&s, &s.worker, NULL);
    dp_test_wait_workers (admin, 1, WAIT_MS);
    dpool_pool_t *client = s_pool (s.broker.tcp, &s.server, &s.client);
    dpool_result_t *result = s_echo (client, 1);
    CHECK (dpool_result_successful (result));
    dpool_result_destroy (&result);
    CHECK_EQ_INT (dp_test_status_count (admin, "refused", "keys"), 3);

    s_keys_write (&s, false);
    CHECK_EQ_INT (kill (s.broker.pid, SIGHUP), 0);
    s_wait_count (admin, "refused", "reloads", 1);
    CHECK_EQ_INT (dp_test_status_count (admin, "refused", "keys"), 2);
    /*  Its session is gone, and what it sends now is refused. */
    char args[2] = {(char)0x91, 2};
    result = dpool_pool_apply_async (client, "echo", args, sizeof args, NULL);
    CHECK (result);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, SHORT_MS, &value), -1);
    dpool_result_destroy (&result);
    s_wait_count (admin, "refused", "removed", 1);
    /*  The broker and the others go on. */
    result = s_echo (admin, 3);
    CHECK (dpool_result_successful (result));
    dpool_result_destroy (&result);
    dpool_pool_terminate (client);
    dpool_pool_destroy (&client);
    dpool_pool_destroy (&admin);
    dp_test_stop (workers, SIGTERM, WAIT_MS);
    s_finish (&s);
}

static const dp_test_case_t s_cases[] = {
    {"roles_keys_file", s_case_keys_file}, {"roles_keys_dir", s_case_keys_dir},
    {"roles_refused", s_case_refused},     {"roles_quota", s_case_quota},
    {"roles_reload", s_case_reload},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

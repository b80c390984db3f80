/*  test_tenant.c - with CURVE, fair share is between client keys (issue
    16): the sessions of one key are one tenant, which takes its key's
    weight and running quota from the key file, and a reload (SIGHUP)
    changes both for a tenant alive; status shows each tenant's share of
    the workers' time and its quotas' use.

    A real dpool-broker with --curve-secret and --curve-keys FILE, real key
    pairs (dp_curve_keygen), and hand-made peers over CURVE: a worker of
    credit 1 that says how long each job took, so that shares are counted
    exactly, as in test_broker_fair. Usage: test_tenant CASE.
*/
#define _GNU_SOURCE
#include "dp_curve.h"
#include "dp_testbroker.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS   10000 /* how long a step may take before the test fails */
#define BATCH     1000  /* tasks each busy session submits */
#define JOBS      400   /* jobs the worker runs before the shares are counted */
#define RUN_US    1000  /* each job's run time, as its worker says */
#define SHARE_PCT 5     /* allowed distance from the fair share, in points of the whole */
#define MAX_PEERS 4
#define FUNCTION  "f"

/*  A key pair: its public file, its secret file and its Z85 public key. */
typedef struct {
    char public_[4096];
    char secret[4200];
    char z85[DP_CURVE_KEY + 1];
} s_key_t;

/*  The broker and the keys of a case: alice and bob submit, w works,
    root administers. */
typedef struct {
    dp_test_broker_t broker;
    s_key_t server, alice, bob, w, root;
    char keys[4096];
    void *ctx;
} s_setup_t;

static void
s_keygen (s_key_t *key, const char *name)
{
    snprintf (key->public_, sizeof key->public_, "%s", dp_test_path (name));
    snprintf (key->secret, sizeof key->secret, "%s_secret", key->public_);
    char err[256];
    if (dp_curve_keygen (key->public_, err, sizeof err) != 0)
        dp_test_fail (__FILE__, __LINE__, "keygen: %s", err);
    CHECK_EQ_INT (dp_curve_public (key->public_, key->z85, err, sizeof err), 0);
}

/*  Writes the key file: alice's and bob's lines take extra fields. */
static void
s_keys_write (s_setup_t *s, const char *alice, const char *bob)
{
    char tmp[4200];
    snprintf (tmp, sizeof tmp, "%s.tmp", s->keys);
    FILE *file = fopen (tmp, "w");
    CHECK (file);
    fprintf (file,
             "%s name=alice roles=submit %s\n%s name=bob roles=submit %s\n"
             "%s name=w roles=worker\n%s name=root roles=all\n",
             s->alice.z85, alice, s->bob.z85, bob, s->w.z85, s->root.z85);
    CHECK_EQ_INT (fclose (file), 0);
    CHECK_EQ_INT (rename (tmp, s->keys), 0);
}

static void
s_start (s_setup_t *s, const char *alice, const char *bob)
{
    s_keygen (&s->server, "server");
    s_keygen (&s->alice, "alice");
    s_keygen (&s->bob, "bob");
    s_keygen (&s->w, "w");
    s_keygen (&s->root, "root");
    snprintf (s->keys, sizeof s->keys, "%s", dp_test_path ("keys"));
    s_keys_write (s, alice, bob);
    const char *extra[] = {"--curve-secret", s->server.secret, "--curve-keys", s->keys, NULL};
    dp_test_broker_start (&s->broker, extra);
    s->ctx = zmq_ctx_new ();
    CHECK (s->ctx);
    dp_testpeer_context (s->ctx);
}

static void
s_finish (s_setup_t *s)
{
    int status = dp_test_stop (s->broker.pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    zmq_ctx_term (s->ctx);
}

/*  A DEALER over CURVE with key's secret, connected to the broker. */
static dp_testpeer_t *
s_peer (s_setup_t *s, const s_key_t *key)
{
    dp_testpeer_t *peer = (dp_testpeer_t *)calloc (1, sizeof *peer);
    CHECK (peer);
    peer->sock = zmq_socket (s->ctx, ZMQ_DEALER);
    CHECK (peer->sock);
    CHECK (dp_wire_configure (peer->sock, false, 0) == 0);
    dp_curve_t curve;
    char err[256];
    if (dp_curve_client (&curve, s->server.public_, key->secret, err, sizeof err) != 0)
        dp_test_fail (__FILE__, __LINE__, "curve: %s", err);
    CHECK (dp_curve_apply (peer->sock, &curve, false) == 0);
    CHECK (zmq_connect (peer->sock, s->broker.tcp) == 0);
    dp_writer_init (&peer->w);
    dp_testpeer_keepalive (peer); /* so that none expires while the test waits on another */
    return peer;
}

/*  A client session of key, its session id tag repeated. */
static dp_testpeer_t *
s_client (s_setup_t *s, const s_key_t *key, uint8_t tag)
{
    dp_testpeer_t *peer = s_peer (s, key);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "session");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

/*  A worker of w's key offering FUNCTION, with credit 1. */
static dp_testpeer_t *
s_worker (s_setup_t *s)
{
    const char *const fns[] = {FUNCTION};
    dp_testpeer_t *peer = s_peer (s, &s->w);
    dp_encode_ready (&peer->w, "fake", 4242, "testhost", 1, fns, 1);
    dp_testpeer_send (peer, DP_CMD_READY);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    return peer;
}

/*  Submits count tasks of FUNCTION whose args are the session's tag (cut
    to 7 bits, a positive fixint). */
static void
s_submit (dp_testpeer_t *client, uint8_t tag, size_t count)
{
    static dp_task_t tasks[BATCH];
    static uint8_t args[MAX_PEERS][1];
    static size_t next;
    uint8_t *arg = args[next++ % MAX_PEERS];
    arg[0] = tag & 0x7f;
    for (size_t i = 0; i < count; i++)
        tasks[i] = (dp_task_t){.id = tag * 100000ull + i + 1,
                               .fn = {(const uint8_t *)FUNCTION, strlen (FUNCTION)},
                               .args = {arg, 1}};
    dp_testbroker_submit_tasks (client, tasks, count);
}

/*  Receives one DISPATCH of one job: its ref, and in *tag its args. */
static uint64_t
s_next_job (dp_testpeer_t *worker, uint8_t *tag)
{
    dp_testpeer_expect (worker, DP_CMD_DISPATCH);
    dp_task_t job;
    CHECK (dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
    CHECK_EQ_INT (job.args.size, 1);
    *tag = job.args.data[0];
    CHECK (!dp_list_next_task (&worker->msg.u.list, DP_CMD_DISPATCH, &job));
    return job.id;
}

/*  The status map's top-level value under key in the asker's view; in
    unpacked, which the caller destroys. */
static msgpack_object
s_status (dp_testpeer_t *asker, msgpack_unpacked *unpacked, const char *key)
{
    msgpack_object top = dp_testpeer_status (asker, unpacked);
    return dp_testpeer_map_get (top, key);
}

/*  The count of tasks queued the broker holds, asked on client's own
    connection (so that what it sent before is in). */
static uint64_t
s_queued (dp_testpeer_t *client)
{
    msgpack_unpacked unpacked;
    msgpack_object queued = s_status (client, &unpacked, "queued");
    CHECK (queued.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    uint64_t count = queued.via.u64;
    msgpack_unpacked_destroy (&unpacked);
    return count;
}

/*  Sessions of keys (tags[i] of keys[i]) submit BATCH tasks each, one
    after the other; a worker runs JOBS of them; each key gets share[k] %
    of the run time, k its index in owners. Then, with the sessions still
    there, then (NULL: nothing). */
static void
s_busy (s_setup_t *s, const s_key_t *const *keys, const uint8_t *tags, size_t nsessions,
        const s_key_t *const *owners, const double *share, size_t nkeys,
        void (*then) (s_setup_t *))
{
    dp_testpeer_t *clients[MAX_PEERS];
    for (size_t i = 0; i < nsessions; i++) {
        clients[i] = s_client (s, keys[i], tags[i]);
        s_submit (clients[i], tags[i], BATCH);
        CHECK (s_queued (clients[i]) == (i + 1) * BATCH);
    }
    dp_testpeer_t *worker = s_worker (s);
    uint64_t got[MAX_PEERS] = {0};
    for (size_t n = 0; n < JOBS; n++) {
        uint8_t tag;
        uint64_t ref = s_next_job (worker, &tag);
        size_t i = 0;
        while (i < nsessions && (tags[i] & 0x7f) != tag)
            i++;
        CHECK (i < nsessions);
        size_t k = 0;
        while (k < nkeys && owners[k] != keys[i])
            k++;
        CHECK (k < nkeys);
        got[k] += RUN_US;
        dp_testbroker_done_run (worker, ref, 0, NULL, RUN_US);
    }
    for (size_t k = 0; k < nkeys; k++) {
        double pct = 100.0 * (double)got[k] / (double)(JOBS * RUN_US);
        if (pct < share[k] - SHARE_PCT || pct > share[k] + SHARE_PCT)
            dp_test_fail (__FILE__, __LINE__, "key %zu got %.1f%% of the time, not %.1f%% ± %d", k,
                          pct, share[k], SHARE_PCT);
    }
    if (then)
        then (s);
    dp_testpeer_destroy (&worker);
    for (size_t i = 0; i < nsessions; i++)
        dp_testpeer_destroy (&clients[i]);
}

/*  ---------------------------------------------------------------------------
    tenant_one_key_sessions: alice opens two sessions, bob one; each key
    gets half the workers' time (by session, alice would get two thirds).
*/
static void
s_case_one_key_sessions (void)
{
    s_setup_t s;
    s_start (&s, "", "");
    const s_key_t *keys[] = {&s.alice, &s.alice, &s.bob};
    const uint8_t tags[] = {0xa1, 0xa2, 0xb1};
    const s_key_t *owners[] = {&s.alice, &s.bob};
    const double share[] = {50, 50};
    s_busy (&s, keys, tags, 3, owners, share, 2, NULL);
    s_finish (&s);
}

/*  ---------------------------------------------------------------------------
    tenant_key_weight: alice's line says weight=3: three quarters for her.
*/
static void
s_case_key_weight (void)
{
    s_setup_t s;
    s_start (&s, "weight=3", "");
    const s_key_t *keys[] = {&s.alice, &s.bob};
    const uint8_t tags[] = {0xa1, 0xb1};
    const double share[] = {75, 25};
    s_busy (&s, keys, tags, 2, keys, share, 2, NULL);
    s_finish (&s);
}

/*  ---------------------------------------------------------------------------
    tenant_status: after a weighted run, status lists each tenant with its
    share; a key that does not administer sees its own only; `dpool
    status` prints them.
*/

/*  The entry named name in status's "tenants" list, or NIL. */
static msgpack_object
s_tenant (msgpack_object tenants, const char *name)
{
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    if (tenants.type != MSGPACK_OBJECT_ARRAY)
        return nil;
    for (uint32_t i = 0; i < tenants.via.array.size; i++) {
        msgpack_object got = dp_testpeer_map_get (tenants.via.array.ptr[i], "name");
        if (got.type == MSGPACK_OBJECT_STR && got.via.str.size == strlen (name) &&
            memcmp (got.via.str.ptr, name, got.via.str.size) == 0)
            return tenants.via.array.ptr[i];
    }
    return nil;
}

static uint64_t
s_field (msgpack_object tenant, const char *key)
{
    msgpack_object value = dp_testpeer_map_get (tenant, key);
    CHECK (value.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    return value.via.u64;
}

/*  Fails unless the tenant's share is pct %, give or take SHARE_PCT. */
static void
s_check_share (msgpack_object tenant, double pct)
{
    msgpack_object share = dp_testpeer_map_get (tenant, "share");
    CHECK (share.type == MSGPACK_OBJECT_FLOAT64 || share.type == MSGPACK_OBJECT_FLOAT32);
    if (100 * share.via.f64 < pct - SHARE_PCT || 100 * share.via.f64 > pct + SHARE_PCT)
        dp_test_fail (__FILE__, __LINE__, "status says a share of %.3f, not %.0f%%", share.via.f64,
                      pct);
}

/*  Status as root (every tenant), as alice (her own), and `dpool status`. */
static void
s_check_status (s_setup_t *s)
{
    dp_testpeer_t *root = s_client (s, &s->root, 0xc1);
    msgpack_unpacked unpacked;
    msgpack_object tenants = s_status (root, &unpacked, "tenants");
    CHECK (tenants.type == MSGPACK_OBJECT_ARRAY && tenants.via.array.size == 3);
    msgpack_object alice = s_tenant (tenants, "alice");
    msgpack_object bob = s_tenant (tenants, "bob");
    CHECK (alice.type == MSGPACK_OBJECT_MAP && bob.type == MSGPACK_OBJECT_MAP);
    s_check_share (alice, 75);
    s_check_share (bob, 25);
    CHECK_EQ_INT (s_field (alice, "weight"), 3);
    CHECK_EQ_INT (s_field (bob, "weight"), 1);
    CHECK_EQ_INT (s_field (alice, "max_running"), 7);
    CHECK_EQ_INT (s_field (alice, "max_queued"), 5000);
    CHECK_EQ_INT (s_field (alice, "tasks") + s_field (bob, "tasks"), 2 * BATCH - JOBS);
    CHECK_EQ_INT (s_field (alice, "run_us") + s_field (bob, "run_us"), JOBS * RUN_US);
    msgpack_object key = dp_testpeer_map_get (alice, "key");
    CHECK (key.type == MSGPACK_OBJECT_STR && key.via.str.size == DP_CURVE_KEY &&
           memcmp (key.via.str.ptr, s->alice.z85, DP_CURVE_KEY) == 0);
    msgpack_unpacked_destroy (&unpacked);

    /*  alice sees her own only, with her two sessions. */
    dp_testpeer_t *own = s_client (s, &s->alice, 0xa3);
    tenants = s_status (own, &unpacked, "tenants");
    CHECK (tenants.type == MSGPACK_OBJECT_ARRAY && tenants.via.array.size == 1);
    CHECK_EQ_INT (s_field (s_tenant (tenants, "alice"), "sessions"), 2);
    msgpack_unpacked_destroy (&unpacked);
    dp_testpeer_destroy (&own);

    /*  dpool status, for people: a row per tenant with its share. */
    const char *args[] = {"status",         "--curve-server", s->server.public_,
                          "--curve-secret", s->root.secret,   NULL};
    char *out = NULL;
    CHECK_EQ_INT (dp_test_cli_run ("status", s->broker.tcp, args, WAIT_MS, &out, NULL), 0);
    if (!strstr (out, "shares") || !strstr (out, "alice") || !strstr (out, "SHARE"))
        dp_test_fail (__FILE__, __LINE__, "dpool status shows no shares:\n%s", out);
    free (out);
    dp_testpeer_destroy (&root);
}

static void
s_case_status (void)
{
    s_setup_t s;
    s_start (&s, "weight=3 max_queued=5000 max_running=7", "");
    const s_key_t *keys[] = {&s.alice, &s.bob};
    const uint8_t tags[] = {0xa1, 0xb1};
    const double share[] = {75, 25};
    s_busy (&s, keys, tags, 2, keys, share, 2, s_check_status);
    s_finish (&s);
}

/*  ---------------------------------------------------------------------------
    tenant_max_running: alice's max_running=1 holds her to one task running
    while a second worker waits idle; bob's task takes it. A reload that
    gives her max_running=2 and weight=5 applies to her tenant at once.
*/
/*  Which of two workers got a DISPATCH first (held in its msg). */
static size_t
s_first_dispatch (dp_testpeer_t **workers)
{
    int64_t deadline = dp_test_now_ms () + WAIT_MS;
    while (dp_test_now_ms () < deadline) {
        zmq_pollitem_t items[2] = {{workers[0]->sock, 0, ZMQ_POLLIN, 0},
                                   {workers[1]->sock, 0, ZMQ_POLLIN, 0}};
        CHECK (zmq_poll (items, 2, 100) >= 0);
        for (size_t i = 0; i < 2; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            int cmd = dp_testpeer_recv (workers[i], 0);
            if (cmd == DP_CMD_DISPATCH)
                return i;
            CHECK (cmd == 0); /* a HEARTBEAT, skipped */
        }
    }
    dp_test_fail (__FILE__, __LINE__, "no worker got a task within %d ms", WAIT_MS);
    return 0;
}

static void
s_case_max_running (void)
{
    s_setup_t s;
    s_start (&s, "max_running=1", "");
    dp_testpeer_t *workers[2] = {s_worker (&s), s_worker (&s)};
    dp_testpeer_t *alice = s_client (&s, &s.alice, 0xa1);
    s_submit (alice, 0xa1, BATCH);
    /*  One worker has her task; which one is the broker's choice. */
    size_t busy = s_first_dispatch (workers);
    dp_task_t job;
    CHECK (dp_list_next_task (&workers[busy]->msg.u.list, DP_CMD_DISPATCH, &job));
    uint64_t ref = job.id;
    dp_testpeer_expect_silence (workers[1 - busy], 500);
    CHECK (s_queued (alice) == BATCH - 1);

    /*  bob's task runs on the idle worker. */
    dp_testpeer_t *bob = s_client (&s, &s.bob, 0xb1);
    s_submit (bob, 0xb1, 1);
    uint8_t tag;
    uint64_t bob_ref = s_next_job (workers[1 - busy], &tag);
    CHECK_EQ_INT (tag, 0xb1 & 0x7f);
    dp_testbroker_done_run (workers[1 - busy], bob_ref, 0, NULL, RUN_US);
    CHECK_EQ_INT (dp_testbroker_expect_result (bob).code, 0);
    dp_testpeer_expect_silence (workers[1 - busy], 300);

    /*  The reload lets her run two at once: the idle worker gets hers. */
    s_keys_write (&s, "max_running=2 weight=5", "");
    CHECK_EQ_INT (kill (s.broker.pid, SIGHUP), 0);
    s_next_job (workers[1 - busy], &tag);
    CHECK_EQ_INT (tag, 0xa1 & 0x7f);
    msgpack_unpacked unpacked;
    msgpack_object tenants = s_status (alice, &unpacked, "tenants");
    msgpack_object own = s_tenant (tenants, "alice");
    CHECK_EQ_INT (s_field (own, "running"), 2);
    CHECK_EQ_INT (s_field (own, "max_running"), 2);
    CHECK_EQ_INT (s_field (own, "weight"), 5);
    msgpack_unpacked_destroy (&unpacked);
    dp_testbroker_done_run (workers[busy], ref, 0, NULL, RUN_US);
    CHECK_EQ_INT (dp_testbroker_expect_result (alice).code, 0);
    for (size_t i = 0; i < 2; i++)
        dp_testpeer_destroy (&workers[i]);
    dp_testpeer_destroy (&bob);
    dp_testpeer_destroy (&alice);
    s_finish (&s);
}

static const dp_test_case_t s_cases[] = {
    {"tenant_one_key_sessions", s_case_one_key_sessions},
    {"tenant_key_weight", s_case_key_weight},
    {"tenant_status", s_case_status},
    {"tenant_max_running", s_case_max_running},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 120);
}

/*  test_broker_journal.c - the broker's journal (dpool-broker --journal,
    PROTOCOL.md 6.1) with real processes: the broker SIGKILLed at random
    moments, again and again, while a detached session's tasks run on real
    workers and while a peer puts and takes named-queue values; and the
    journals a broker must refuse or stop writing: corrupt, truncated, of a
    newer version, not a journal, in use by another broker, read-only, on
    a full disk.

        test_broker_journal CASE

    The kill loops print their random seed; DPOOL_TEST_SEED replays one,
    DPOOL_TEST_JOURNAL_TASKS sets the batch's size (default 100000), and
    DPOOL_TEST_JOURNAL_BATCH the detached batch's (default 100000).
    The cases that mount a tmpfs need root (else the case exits 77,
    skipped).
*/
#define _GNU_SOURCE /* memmem */
#include "dp_journal.h"
#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define EXIT_SKIP     77
#define KILLS         20
#define TASKS_DEFAULT 100000
#define SUBMIT_BATCH  1000
#define COLLECT_MS    240000 /* for the whole batch's results, on a loaded machine */
#define REPLY_MS      10000
#define QUEUE         "jq"
#define VALUE_BYTES   4096 /* of a value on the full disk */
#define NO_VALUE      UINT32_MAX
#define BATCH_DEFAULT 100000 /* tasks of the detached batch killed 20 times */
#define BATCH_IDLE    1000   /* tasks of the batch killed before any worker came */
#define PATH_SIZE     4096

static void *s_ctx;
static dp_test_broker_t s_broker;
static char s_journal[1024];
static uint64_t s_rand;
static int s_incarnation;

/*  ---------------------------------------------------------------------------
    Helpers.
*/

static uint32_t
s_random (uint32_t below)
{
    s_rand ^= s_rand << 13;
    s_rand ^= s_rand >> 7;
    s_rand ^= s_rand << 17;
    return (uint32_t)(s_rand % below);
}

static void
s_seed (void)
{
    const char *env = getenv ("DPOOL_TEST_SEED");
    s_rand = env ? strtoull (env, NULL, 10) : (uint64_t)dp_now_ms () ^ (uint64_t)getpid ();
    if (s_rand == 0)
        s_rand = 1;
    fprintf (stderr, "seed %llu (DPOOL_TEST_SEED replays it)\n", (unsigned long long)s_rand);
}

static void
s_skip_unless_root (const char *why)
{
    if (geteuid () != 0) {
        fprintf (stderr, "SKIP: needs root to %s (uid %ld)\n", why, (long)geteuid ());
        exit (EXIT_SKIP);
    }
}

/*  The broker's arguments: the journal, a fast beat (workers find the
    restarted broker within a few beats) and a long expiry (a detached
    session outlives the whole loop). */
static const char *const *
s_broker_args (const char *journal)
{
    static const char *args[12];
    int argc = 0;
    args[argc++] = "--journal";
    args[argc++] = journal;
    args[argc++] = "--heartbeat-ms";
    args[argc++] = "100";
    args[argc++] = "--expiry-ms";
    args[argc++] = "120000";
    args[argc++] = "--max-held-results";
    args[argc++] = "1000000";
    args[argc++] = "--log-level";
    args[argc++] = "warn";
    args[argc] = NULL;
    return args;
}

static void
s_broker_start (const char *journal)
{
    char tag[32];
    snprintf (tag, sizeof tag, "broker-j%d", ++s_incarnation);
    if (s_incarnation == 1)
        dp_test_broker_start (&s_broker, s_broker_args (journal));
    else
        dp_test_broker_restart (&s_broker, tag, s_broker_args (journal));
}

static void
s_broker_kill (void)
{
    CHECK (dp_test_stop (s_broker.pid, SIGKILL, 10000) != -1);
}

static void
s_broker_stop (void)
{
    int status = dp_test_stop (s_broker.pid, SIGTERM, 30000);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "broker ended with wait status %d", status);
}

/*  A peer of the session tag..tag, welcomed; its results, held for the
    session, may come before WELCOME and are left for the caller. */
static dp_testpeer_t *
s_client (uint8_t tag, bool expect_welcome)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.tcp);
    uint8_t session[DP_SESSION_SIZE];
    memset (session, tag, sizeof session);
    dp_encode_hello (&peer->w, session, "journal-client");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    if (expect_welcome)
        dp_testpeer_expect (peer, DP_CMD_WELCOME);
    dp_testpeer_keepalive (peer);
    return peer;
}

/*  A value: the packed uint32 n (msgpack 0xce). */
static void
s_pack_u32 (uint8_t *out, uint32_t n)
{
    out[0] = 0xce;
    out[1] = (uint8_t)(n >> 24);
    out[2] = (uint8_t)(n >> 16);
    out[3] = (uint8_t)(n >> 8);
    out[4] = (uint8_t)n;
}

/*  n of a value n or [n, padding], packed in any width (a worker packs
    it anew); NO_VALUE if it is neither. */
static uint32_t
s_unpack_u32 (dp_span_t value)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    uint32_t n = NO_VALUE;
    if (msgpack_unpack_next (&unpacked, (const char *)value.data, value.size, NULL) ==
        MSGPACK_UNPACK_SUCCESS) {
        msgpack_object object = unpacked.data;
        if (object.type == MSGPACK_OBJECT_ARRAY && object.via.array.size == 2)
            object = object.via.array.ptr[0];
        if (object.type == MSGPACK_OBJECT_POSITIVE_INTEGER && object.via.u64 < NO_VALUE)
            n = (uint32_t)object.via.u64;
    }
    msgpack_unpacked_destroy (&unpacked);
    return n;
}

/*  Puts value n: the packed uint32 alone, or (size > 16) the array [n,
    padding] of size bytes in all. */
static void
s_put_send (dp_testpeer_t *peer, uint32_t n, size_t size)
{
    static uint8_t value[VALUE_BYTES];
    size_t bytes = 5;
    if (size > 16 && size <= sizeof value) {
        size_t pad = size - 9;
        value[0] = 0x92;
        s_pack_u32 (value + 1, n);
        value[6] = 0xc5; /* bin 16 */
        value[7] = (uint8_t)(pad >> 8);
        value[8] = (uint8_t)pad;
        memset (value + 9, 0x55, pad);
        bytes = size;
    } else
        s_pack_u32 (value, n);
    dp_encode_queue_put (&peer->w, n, QUEUE, value, bytes, 0, 0);
    dp_testpeer_send (peer, DP_CMD_QUEUE_PUT);
}

/*  Rows of the journal by kind, read with SQLite after the broker ended. */
static long
s_rows (const char *journal, int kind)
{
    sqlite3 *db = NULL;
    CHECK (sqlite3_open_v2 (journal, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    CHECK (sqlite3_prepare_v2 (db, "SELECT count(*) FROM records WHERE kind = ?1", -1, &stmt,
                               NULL) == SQLITE_OK);
    sqlite3_bind_int (stmt, 1, kind);
    CHECK (sqlite3_step (stmt) == SQLITE_ROW);
    long rows = (long)sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    return rows;
}

/*  The journal holds no record of any session's tasks or results. */
static void
s_check_no_session_rows (const char *journal)
{
    static const int kinds[] = {DP_JOURNAL_TASK,    DP_JOURNAL_RUN,    DP_JOURNAL_RESULT,
                                DP_JOURNAL_RESULTS, DP_JOURNAL_TSTATE, DP_JOURNAL_TASKS};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (s_rows (journal, kinds[i]) != 0)
            dp_test_fail (__FILE__, __LINE__, "%ld records of kind %d left",
                          s_rows (journal, kinds[i]), kinds[i]);
}

/*  ---------------------------------------------------------------------------
    A detached session's batch through 20 kills.
*/

/*  Submits count echo tasks (seq i, args i), then makes sure the broker
    journaled them: a queue PUT after them is answered only once the turn
    that handled it (and every message before it) is committed. */
static void
s_submit_batch (dp_testpeer_t *client, uint32_t count)
{
    uint8_t args[SUBMIT_BATCH][5];
    for (uint32_t first = 0; first < count; first += SUBMIT_BATCH) {
        dp_list_begin (&client->w);
        for (uint32_t i = first; i < count && i < first + SUBMIT_BATCH; i++) {
            s_pack_u32 (args[i - first], i);
            dp_task_t task = {.id = i,
                              .fn = {(const uint8_t *)"echo", 4},
                              .args = {args[i - first], 5},
                              .retries = DP_MAX_RETRIES};
            dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
        }
        dp_list_end (&client->w);
        dp_testpeer_send (client, DP_CMD_SUBMIT);
    }
    s_put_send (client, 0, 5);
    CHECK_EQ_INT (dp_testpeer_recv (client, 60000), DP_CMD_QUEUE_REPLY);
    CHECK_EQ_INT (client->msg.u.queue_reply.code, 0);
}

/*  The status counter key of the broker, asked by a peer of its own. */
static long long
s_status (const char *key)
{
    dp_testpeer_t *asker = s_client (0xee, true);
    msgpack_unpacked unpacked;
    msgpack_object value = dp_testpeer_map_get (dp_testpeer_status (asker, &unpacked), key);
    long long count =
        value.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)value.via.u64 : -1;
    msgpack_unpacked_destroy (&unpacked);
    dp_encode_empty (&asker->w);
    dp_testpeer_send (asker, DP_CMD_BYE);
    dp_testpeer_destroy (&asker);
    return count;
}

/*  Takes every RESULT entry the session gets: each seq once, each value
    its seq. Returns when all count came. */
static void
s_collect (dp_testpeer_t *client, uint32_t count)
{
    uint8_t *seen = (uint8_t *)calloc (count, 1);
    CHECK (seen);
    uint32_t got = 0;
    int64_t deadline = dp_now_ms () + COLLECT_MS;
    while (got < count && dp_now_ms () < deadline) {
        int cmd = dp_testpeer_recv (client, 1000);
        if (cmd != DP_CMD_RESULT)
            continue;
        dp_result_t result;
        while (dp_list_next_result (&client->msg.u.list, &result)) {
            if (result.id >= count)
                dp_test_fail (__FILE__, __LINE__, "a result for seq %llu, never submitted",
                              (unsigned long long)result.id);
            if (seen[result.id])
                dp_test_fail (__FILE__, __LINE__, "seq %llu's result came twice",
                              (unsigned long long)result.id);
            if (result.code != 0)
                dp_test_fail (__FILE__, __LINE__, "seq %llu failed: code %d",
                              (unsigned long long)result.id, result.code);
            CHECK_EQ_INT (s_unpack_u32 (result.value), result.id);
            seen[result.id] = 1;
            got++;
        }
    }
    if (got < count)
        dp_test_fail (__FILE__, __LINE__, "%u of %u results came", got, count);
    /*  Nothing more: no result comes twice, even late. */
    int cmd;
    while ((cmd = dp_testpeer_recv (client, 500)) != 0)
        CHECK (cmd != DP_CMD_RESULT);
    free (seen);
}

/*  A client submits a large batch and goes away (its session detached,
    its tasks and results the broker's alone to keep); the broker is
    SIGKILLed 20 times at random moments while real workers run the batch,
    and started again on its journal each time. The client then comes back
    and gets every result exactly once; once they are sent, the journal
    holds no task and no result. */
static void
s_case_tasks_survive_kills (void)
{
    s_seed ();
    const char *env = getenv ("DPOOL_TEST_JOURNAL_TASKS");
    uint32_t count = env ? (uint32_t)atol (env) : TASKS_DEFAULT;
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("tasks.journal"));
    s_broker_start (s_journal);
    dp_testpeer_t *client = s_client (0x42, true);
    s_submit_batch (client, count);
    dp_testpeer_destroy (&client); /* gone without BYE: its session is detached */
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    long long done_before = 0;
    for (int kill = 0; kill < KILLS; kill++) {
        /*  A random moment once this broker has run tasks of the batch (or
            after a short wait, once the batch may be over). */
        int64_t deadline = dp_now_ms () + 3000;
        while (dp_now_ms () < deadline && s_status ("done") <= 0)
            dp_test_sleep_ms (5);
        dp_test_sleep_ms (s_random (60));
        long long done = s_status ("done");
        done_before += done > 0 ? done : 0;
        s_broker_kill ();
        s_broker_start (s_journal);
    }
    fprintf (stderr, "%d kills; %lld tasks run before them (reruns counted)\n", KILLS,
             done_before);
    client = s_client (0x42, false);
    s_collect (client, count);
    dp_encode_empty (&client->w);
    dp_testpeer_send (client, DP_CMD_BYE);
    dp_testpeer_destroy (&client);
    CHECK (dp_test_stop (workers, SIGTERM, 10000) != -1);
    s_broker_stop ();
    s_check_no_session_rows (s_journal);
}

/*  ---------------------------------------------------------------------------
    Attempts of tasks that were running.
*/

/*  Three fake workers offering echo, one job at a time each, welcomed;
    they answer only when told. */
static void
s_fake_workers (dp_testpeer_t **workers)
{
    for (int i = 0; i < 3; i++) {
        workers[i] = dp_testpeer_new (s_broker.tcp);
        const char *fns[] = {"echo"};
        dp_encode_ready (&workers[i]->w, "fake", 4242, "testhost", 1, fns, 1);
        dp_testpeer_send (workers[i], DP_CMD_READY);
        dp_testpeer_expect (workers[i], DP_CMD_WELCOME);
        dp_testpeer_keepalive (workers[i]);
    }
}

static void
s_fake_workers_gone (dp_testpeer_t **workers)
{
    for (int i = 0; i < 3; i++)
        dp_testpeer_destroy (&workers[i]);
}

/*  Takes DISPATCHes from the nworkers workers until count jobs came: the
    job of args n (a packed uint32) into jobs[n]. */
static void
s_take_jobs (dp_testpeer_t **workers, int nworkers, dp_task_t *jobs, size_t njobs, int count)
{
    int got = 0;
    int64_t deadline = dp_now_ms () + REPLY_MS;
    while (got < count && dp_now_ms () < deadline)
        for (int w = 0; w < nworkers; w++) {
            if (dp_testpeer_recv (workers[w], 50) != DP_CMD_DISPATCH)
                continue;
            dp_list_t list = workers[w]->msg.u.list;
            dp_task_t job;
            while (dp_list_next_task (&list, DP_CMD_DISPATCH, &job)) {
                uint32_t n = s_unpack_u32 (job.args);
                CHECK (n < njobs);
                jobs[n] = job;
                jobs[n].flags = (uint32_t)w; /* who holds it */
                got++;
            }
        }
    if (got < count)
        dp_test_fail (__FILE__, __LINE__, "%d of %d jobs came", got, count);
}

/*  What the broker did before this is committed: a queue PUT's reply is
    held until the commit of the turn that handled it. */
static void
s_synced (dp_testpeer_t *client, uint32_t n)
{
    s_put_send (client, n, 5);
    int64_t deadline = dp_now_ms () + REPLY_MS;
    while (dp_now_ms () < deadline) {
        int cmd = dp_testpeer_recv (client, 1000);
        if (cmd == DP_CMD_QUEUE_REPLY) {
            CHECK_EQ_INT (client->msg.u.queue_reply.code, 0);
            return;
        }
    }
    dp_test_fail (__FILE__, __LINE__, "no QUEUE-REPLY");
}

/*  Three tasks of one SUBMIT (one record), running on a worker when the
    broker is killed: after the restart, the one without retries ends
    ELOST, the others run again as attempt 2; killed again while they
    run, they come back as attempt 3, and their results reach the client
    once. Then the journal holds nothing of the session. */
static void
s_case_running_tasks_count_attempts (void)
{
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("attempts.journal"));
    s_broker_start (s_journal);
    dp_testpeer_t *client = s_client (0x51, true);
    uint8_t args[3][5];
    dp_list_begin (&client->w);
    for (uint32_t i = 0; i < 3; i++) {
        s_pack_u32 (args[i], i);
        dp_task_t task = {.id = i,
                          .fn = {(const uint8_t *)"echo", 4},
                          .args = {args[i], 5},
                          .retries = i == 0 ? -1 : 5};
        dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
    }
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_SUBMIT);
    dp_task_t jobs[3];
    dp_testpeer_t *workers[3];
    s_fake_workers (workers);
    s_take_jobs (workers, 3, jobs, 3, 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT (jobs[i].attempt, 1);
    s_synced (client, 1);
    s_broker_kill ();
    s_fake_workers_gone (workers);
    s_broker_start (s_journal);

    /*  The client comes back (its results may come before WELCOME). */
    dp_testpeer_destroy (&client);
    client = s_client (0x51, false);
    bool lost = false;
    int64_t deadline = dp_now_ms () + REPLY_MS;
    while (!lost && dp_now_ms () < deadline) {
        if (dp_testpeer_recv (client, 1000) != DP_CMD_RESULT)
            continue;
        dp_result_t result;
        while (dp_list_next_result (&client->msg.u.list, &result)) {
            CHECK_EQ_INT (result.id, 0);
            CHECK_EQ_INT (result.code, DPOOL_ELOST);
            const char *want = "the broker stopped while it ran (1 attempts)";
            CHECK (result.value.size > strlen (want) &&
                   memmem (result.value.data, result.value.size, want, strlen (want)));
            lost = true;
        }
    }
    CHECK (lost);
    s_fake_workers (workers);
    memset (jobs, 0, sizeof jobs);
    s_take_jobs (workers, 3, jobs, 3, 2);
    CHECK_EQ_INT (jobs[1].attempt, 2);
    CHECK_EQ_INT (jobs[2].attempt, 2);
    s_synced (client, 2);
    s_broker_kill ();
    s_fake_workers_gone (workers);
    s_broker_start (s_journal);

    dp_testpeer_destroy (&client);
    client = s_client (0x51, false);
    s_fake_workers (workers);
    memset (jobs, 0, sizeof jobs);
    s_take_jobs (workers, 3, jobs, 3, 2);
    CHECK_EQ_INT (jobs[1].attempt, 3);
    CHECK_EQ_INT (jobs[2].attempt, 3);
    for (int i = 1; i < 3; i++) {
        dp_testpeer_t *worker = workers[jobs[i].flags];
        dp_list_begin (&worker->w);
        dp_list_add_result (&worker->w, jobs[i].id, 0, jobs[i].args.data, jobs[i].args.size);
        dp_list_end (&worker->w);
        dp_testpeer_send (worker, DP_CMD_DONE);
    }
    int got = 0;
    deadline = dp_now_ms () + REPLY_MS;
    while (got < 2 && dp_now_ms () < deadline) {
        if (dp_testpeer_recv (client, 1000) != DP_CMD_RESULT)
            continue;
        dp_result_t result;
        while (dp_list_next_result (&client->msg.u.list, &result)) {
            CHECK (result.id == 1 || result.id == 2);
            CHECK_EQ_INT (result.code, 0);
            CHECK_EQ_INT (s_unpack_u32 (result.value), result.id);
            got++;
        }
    }
    CHECK_EQ_INT (got, 2);
    dp_testpeer_expect_silence (client, 300); /* none twice */
    dp_encode_empty (&client->w);
    dp_testpeer_send (client, DP_CMD_BYE);
    dp_testpeer_destroy (&client);
    s_fake_workers_gone (workers);
    s_broker_stop ();
    s_check_no_session_rows (s_journal);
}

/*  ---------------------------------------------------------------------------
    Named queues through 20 kills.
*/

enum { PUT_NONE = 0, PUT_UNSURE, PUT_ACKED };
enum { TAKE_NONE = 0, TAKE_UNSURE, TAKE_SURE };

typedef struct {
    uint8_t *put;  /* per value: PUT_* */
    uint8_t *take; /* per value: TAKE_* */
    uint32_t next; /* the next value to put */
    uint32_t cap;
} ledger_t;

/*  Reads QUEUE-REPLYs until max came or ms of silence: a PUT's reply
    acknowledges its value and, coming after it, makes the taking
    acknowledged before it sure (the broker commits before it replies).
    Returns how many came. */
static uint32_t
s_read_replies (dp_testpeer_t *peer, ledger_t *ledger, uint32_t taken, uint32_t max, int ms)
{
    uint32_t count = 0;
    while (count < max && dp_testpeer_recv (peer, ms) == DP_CMD_QUEUE_REPLY) {
        dp_queue_reply_t reply = peer->msg.u.queue_reply;
        if (reply.req >= ledger->cap || ledger->put[reply.req] != PUT_UNSURE)
            continue; /* a GET's */
        count++;
        if (reply.code == 0) {
            ledger->put[reply.req] = PUT_ACKED;
            if (taken != NO_VALUE)
                ledger->take[taken] = TAKE_SURE;
        }
    }
    return count;
}

/*  Gets one value (waiting for it); accept: acknowledges it as taken.
    Returns it, or NO_VALUE if the queue is empty. */
static uint32_t
s_get (dp_testpeer_t *peer, bool accept)
{
    uint64_t req = UINT32_MAX + (uint64_t)1;
    dp_encode_queue_get (&peer->w, req, QUEUE, 0);
    dp_testpeer_send (peer, DP_CMD_QUEUE_GET);
    CHECK_EQ_INT (dp_testpeer_recv (peer, REPLY_MS), DP_CMD_QUEUE_REPLY);
    dp_queue_reply_t reply = peer->msg.u.queue_reply;
    CHECK (reply.req == req);
    if (reply.code == DPOOL_EAGAIN)
        return NO_VALUE;
    CHECK_EQ_INT (reply.code, 0);
    uint32_t value = s_unpack_u32 (reply.value);
    CHECK (value != NO_VALUE);
    if (accept) {
        dp_encode_queue_ack (&peer->w, reply.token, true);
        dp_testpeer_send (peer, DP_CMD_QUEUE_ACK);
    }
    return value;
}

/*  One life of the broker: a value taken (acknowledged), one lent and not
    acknowledged, then puts sent without waiting, the broker killed among
    them at a random moment. */
static void
s_queue_round (ledger_t *ledger)
{
    dp_testpeer_t *peer = s_client (0x51, true);
    uint32_t taken = s_get (peer, true);
    if (taken != NO_VALUE) {
        CHECK (ledger->take[taken] == TAKE_NONE);
        ledger->take[taken] = TAKE_UNSURE;
    }
    s_get (peer, false); /* lent at the kill: it must come back */
    uint32_t puts = 50 + s_random (450);
    for (uint32_t i = 0; i < puts && ledger->next < ledger->cap; i++) {
        ledger->put[ledger->next] = PUT_UNSURE;
        s_put_send (peer, ledger->next++, 5);
    }
    /*  Killed at a random moment among them: after some were answered. */
    s_read_replies (peer, ledger, taken, s_random (puts), REPLY_MS);
    s_broker_kill ();
    s_read_replies (peer, ledger, taken, UINT32_MAX, 300);
    dp_testpeer_destroy (&peer);
}

/*  20 lives of the broker, each killed among puts: every value whose PUT
    was answered is there exactly once after the last restart, unless it
    was taken; a value whose taking was made sure (a PUT answered after
    its ACK) is not; an unanswered PUT's value is there at most once. */
static void
s_case_queue_survives_kills (void)
{
    s_seed ();
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("queue.journal"));
    ledger_t ledger = {.cap = KILLS * 500};
    ledger.put = (uint8_t *)calloc (ledger.cap, 1);
    ledger.take = (uint8_t *)calloc (ledger.cap, 1);
    CHECK (ledger.put && ledger.take);
    for (int kill = 0; kill < KILLS; kill++) {
        s_broker_start (s_journal);
        s_queue_round (&ledger);
    }
    s_broker_start (s_journal);
    dp_testpeer_t *peer = s_client (0x52, true);
    uint8_t *seen = (uint8_t *)calloc (ledger.cap, 1);
    CHECK (seen);
    uint32_t value;
    size_t drained = 0, acked = 0;
    while ((value = s_get (peer, true)) != NO_VALUE) {
        if (value >= ledger.next || ledger.put[value] == PUT_NONE)
            dp_test_fail (__FILE__, __LINE__, "value %u was never put", value);
        if (seen[value]++)
            dp_test_fail (__FILE__, __LINE__, "value %u came twice", value);
        if (ledger.take[value] == TAKE_SURE)
            dp_test_fail (__FILE__, __LINE__, "value %u was taken, and came again", value);
        drained++;
    }
    for (uint32_t v = 0; v < ledger.next; v++) {
        if (ledger.put[v] == PUT_ACKED)
            acked++;
        if (ledger.put[v] == PUT_ACKED && ledger.take[v] == TAKE_NONE && !seen[v])
            dp_test_fail (__FILE__, __LINE__, "value %u was put (answered) and is lost", v);
    }
    fprintf (stderr, "%u values put, %zu answered, %zu left after %d kills\n", ledger.next, acked,
             drained, KILLS);
    CHECK (acked > 0);
    dp_testpeer_destroy (&peer);
    s_broker_stop ();
    free (seen);
    free (ledger.put);
    free (ledger.take);
}

/*  ---------------------------------------------------------------------------
    Journals a broker refuses.
*/

/*  Starts a broker on journal and expects it to refuse to start: a
    non-zero exit, its reason (needle) on stderr. */
static void
s_expect_refused (const char *journal, const char *tag, const char *needle)
{
    const char *argv[] = {dp_test_broker_bin,
                          "--bind",
                          "tcp://127.0.0.1:0",
                          "--journal",
                          journal,
                          "--log-level",
                          "error",
                          NULL};
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    int status = dp_test_wait_exit (pid, 30000);
    if (status == -1 || !WIFEXITED (status) || WEXITSTATUS (status) == 0)
        dp_test_fail (__FILE__, __LINE__, "%s: broker ended with wait status %d, not refused", tag,
                      status);
    dp_test_check_contains (tag, "err", needle);
}

static void
s_write_file (const char *path, const void *data, size_t size)
{
    FILE *file = fopen (path, "wb");
    CHECK (file);
    CHECK (fwrite (data, 1, size, file) == size);
    CHECK (fclose (file) == 0);
}

/*  Makes a journal holding a few values, written by a real broker. */
static void
s_make_journal (const char *journal)
{
    s_broker_start (journal);
    dp_testpeer_t *peer = s_client (0x61, true);
    for (uint32_t i = 0; i < 200; i++) {
        s_put_send (peer, i, 100);
        CHECK_EQ_INT (dp_testpeer_recv (peer, REPLY_MS), DP_CMD_QUEUE_REPLY);
    }
    dp_testpeer_destroy (&peer);
    s_broker_stop ();
}

static void
s_sql (const char *journal, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK (sqlite3_open (journal, &db) == SQLITE_OK);
    CHECK (sqlite3_exec (db, sql, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close (db);
}

/*  A file that is no journal, a journal cut short, one whose pages were
    overwritten, one of a newer schema, another program's database, and
    an empty file: each refused at start with its reason. */
static void
s_case_refuses_bad_journals (void)
{
    char path[1024];
    snprintf (path, sizeof path, "%s", dp_test_path ("garbage.journal"));
    char garbage[8192];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (char)(i * 7 + 3);
    s_write_file (path, garbage, sizeof garbage);
    s_expect_refused (path, "garbage", "corrupt or not a journal");

    snprintf (path, sizeof path, "%s", dp_test_path ("cut.journal"));
    s_make_journal (path);
    char *text = NULL;
    struct stat st;
    CHECK (stat (path, &st) == 0 && st.st_size > 8192);
    CHECK (truncate (path, st.st_size / 2) == 0);
    s_expect_refused (path, "cut", "corrupt");
    free (text);

    snprintf (path, sizeof path, "%s", dp_test_path ("smashed.journal"));
    s_make_journal (path);
    FILE *file = fopen (path, "r+b");
    CHECK (file);
    CHECK (fseek (file, 4096, SEEK_SET) == 0); /* the second page: a b-tree's header */
    CHECK (fwrite (garbage, 1, 2048, file) == 2048);
    CHECK (fclose (file) == 0);
    s_expect_refused (path, "smashed", "corrupt");

    snprintf (path, sizeof path, "%s", dp_test_path ("newer.journal"));
    s_make_journal (path);
    s_sql (path, "PRAGMA user_version = 3");
    s_expect_refused (path, "newer", "written by a newer dpool");

    snprintf (path, sizeof path, "%s", dp_test_path ("other.db"));
    s_sql (path, "CREATE TABLE t (x); PRAGMA application_id = 12345");
    s_expect_refused (path, "other", "not a dpool journal");

    snprintf (path, sizeof path, "%s", dp_test_path ("empty.journal"));
    s_write_file (path, "", 0);
    s_expect_refused (path, "empty", "is empty");
}

/*  A second broker on a journal in use is refused; the first runs on. */
static void
s_case_refuses_journal_in_use (void)
{
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("used.journal"));
    s_broker_start (s_journal);
    s_expect_refused (s_journal, "second", "in use by another broker");
    dp_testpeer_t *peer = s_client (0x71, true);
    s_put_send (peer, 1, 5);
    CHECK_EQ_INT (dp_testpeer_recv (peer, REPLY_MS), DP_CMD_QUEUE_REPLY);
    CHECK_EQ_INT (peer->msg.u.queue_reply.code, 0);
    dp_testpeer_destroy (&peer);
    s_broker_stop ();
}

static char s_mount[1024];

static void
s_unmount (void)
{
    if (s_mount[0])
        umount2 (s_mount, MNT_DETACH);
}

/*  A tmpfs of size at the test's directory "name". */
static const char *
s_tmpfs (const char *name, const char *size)
{
    snprintf (s_mount, sizeof s_mount, "%s", dp_test_path (name));
    CHECK (mkdir (s_mount, 0700) == 0);
    char options[64];
    snprintf (options, sizeof options, "size=%s", size);
    if (mount ("tmpfs", s_mount, "tmpfs", 0, options) != 0)
        dp_test_fail (__FILE__, __LINE__, "cannot mount a tmpfs on %s", s_mount);
    atexit (s_unmount);
    return s_mount;
}

/*  A journal on a file system mounted read-only is refused at start. */
static void
s_case_refuses_read_only (void)
{
    s_skip_unless_root ("mount a file system read-only");
    const char *dir = s_tmpfs ("ro", "4m");
    snprintf (s_journal, sizeof s_journal, "%s/j.journal", dir);
    s_make_journal (s_journal);
    CHECK (mount (NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL) == 0);
    s_expect_refused (s_journal, "readonly", "cannot be written");
}

static void
s_copy (const char *from, const char *to)
{
    char *text = dp_test_read_file (from);
    struct stat st;
    if (!text || stat (from, &st) != 0)
        return; /* no such file (a WAL checkpointed away) */
    s_write_file (to, text, (size_t)st.st_size);
    free (text);
}

/*  The journal's disk fills up under puts: the broker stops taking work
    (a put is answered EREJECTED naming the journal, a task is refused
    EREJECTED) and answers no put it could not journal. Its journal, moved
    to a roomier disk, holds every value whose put was answered. */
static void
s_case_disk_full (void)
{
    s_skip_unless_root ("mount a small tmpfs");
    const char *dir = s_tmpfs ("full", "512k");
    snprintf (s_journal, sizeof s_journal, "%s/j.journal", dir);
    s_broker_start (s_journal);
    dp_testpeer_t *peer = s_client (0x81, true);
    uint8_t state[1024] = {0};
    uint32_t n = 0;
    bool refused = false;
    while (!refused && n < sizeof state) {
        s_put_send (peer, n, VALUE_BYTES);
        int cmd = dp_testpeer_recv (peer, 3000);
        if (cmd == DP_CMD_QUEUE_REPLY && peer->msg.u.queue_reply.code == 0)
            state[n] = PUT_ACKED;
        else if (cmd == DP_CMD_QUEUE_REPLY) {
            CHECK_EQ_INT (peer->msg.u.queue_reply.code, DPOOL_EREJECTED);
            dp_span_t text = peer->msg.u.queue_reply.value; /* a packed str */
            CHECK (memmem (text.data, text.size, "journal failed", 14) != NULL);
            refused = true;
        } else
            state[n] = PUT_UNSURE; /* its turn's commit failed: no answer */
        n++;
    }
    CHECK (refused);
    /*  A task is refused too. */
    uint8_t args[5];
    s_pack_u32 (args, 1);
    dp_task_t task = {.id = 1, .fn = {(const uint8_t *)"echo", 4}, .args = {args, 5}};
    dp_list_begin (&peer->w);
    dp_list_add_task (&peer->w, DP_CMD_SUBMIT, &task);
    dp_list_end (&peer->w);
    dp_testpeer_send (peer, DP_CMD_SUBMIT);
    CHECK_EQ_INT (dp_testpeer_recv (peer, REPLY_MS), DP_CMD_RESULT);
    dp_result_t result;
    CHECK (dp_list_next_result (&peer->msg.u.list, &result));
    CHECK_EQ_INT (result.code, DPOOL_EREJECTED);
    /*  Status says why. */
    msgpack_unpacked unpacked;
    msgpack_object failed = dp_testpeer_map_get (
        dp_testpeer_map_get (dp_testpeer_status (peer, &unpacked), "journal"), "failed");
    CHECK (failed.type == MSGPACK_OBJECT_STR);
    CHECK (memmem (failed.via.str.ptr, failed.via.str.size, "full", 4) != NULL);
    msgpack_unpacked_destroy (&unpacked);
    dp_testpeer_destroy (&peer);
    s_broker_kill ();
    /*  The journal, on a disk with room, has every answered put. */
    char moved[1024], from[1100], to[1100];
    snprintf (moved, sizeof moved, "%s", dp_test_path ("moved.journal"));
    s_copy (s_journal, moved);
    snprintf (from, sizeof from, "%s-wal", s_journal);
    snprintf (to, sizeof to, "%s-wal", moved);
    s_copy (from, to);
    s_broker_start (moved);
    peer = s_client (0x82, true);
    uint32_t value;
    uint8_t seen[1024] = {0};
    while ((value = s_get (peer, true)) != NO_VALUE) {
        CHECK (value < n && state[value] != PUT_NONE && !seen[value]);
        seen[value] = 1;
    }
    uint32_t acked = 0;
    for (uint32_t v = 0; v < n; v++) {
        acked += state[v] == PUT_ACKED;
        if (state[v] == PUT_ACKED && !seen[v])
            dp_test_fail (__FILE__, __LINE__, "value %u was answered and is lost", v);
    }
    fprintf (stderr, "%u puts answered before the disk was full\n", acked);
    CHECK (acked > 0);
    dp_testpeer_destroy (&peer);
    s_broker_stop ();
}

/*  ---------------------------------------------------------------------------
    A detached batch (dpool submit) through 20 kills.
*/

/*  Runs the dpool command (args, then --connect) through /bin/sh with its
    output in tag's files; returns its exit status. */
static int
s_dpool (const char *tag, const char *args)
{
    char command[2 * PATH_SIZE];
    snprintf (command, sizeof command, "exec '%s' %s --connect '%s'", dp_test_cli_bin, args,
              s_broker.tcp);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    int status = dp_test_wait_exit (dp_test_spawn (tag, argv), REPLY_MS * 6);
    if (status == -1 || !WIFEXITED (status))
        dp_test_fail (__FILE__, __LINE__, "[%s] did not exit in time: %s", tag, command);
    return WEXITSTATUS (status);
}

/*  Writes count lines [0,i] (sleep's arguments, and its results) into the
    test's file in, and submits them as a batch of sleep; returns its id
    (a static buffer). */
static const char *
s_submit_detached (uint32_t count)
{
    char input[PATH_SIZE];
    snprintf (input, sizeof input, "%s", dp_test_path ("in.jsonl"));
    FILE *file = fopen (input, "w");
    CHECK (file);
    for (uint32_t i = 0; i < count; i++)
        fprintf (file, "[0,%u]\n", i);
    CHECK_EQ_INT (fclose (file), 0);
    char args[PATH_SIZE + 64];
    snprintf (args, sizeof args, "submit sleep --name journaled < '%s'", input);
    CHECK_EQ_INT (s_dpool ("submit", args), 0);
    static char id[DP_BATCH_ID_SIZE + 1];
    char *out = dp_test_output ("submit", "out");
    CHECK (strlen (out) == DP_BATCH_ID_SIZE + 1);
    memcpy (id, out, DP_BATCH_ID_SIZE);
    free (out);
    return id;
}

/*  What the collectors printed, run after run. */
typedef struct {
    uint32_t count;
    uint32_t next;    /* lines [0,0] .. [0,next - 1] came */
    uint32_t printed; /* lines, again ones included */
    int runs;
} s_ledger_t;

/*  Checks the output of one `dpool results` run: consecutive lines from
    where an earlier run may have left (a run the broker's death cut short
    prints again the block it had not confirmed), never past a gap. */
static void
s_ledger_add (s_ledger_t *ledger, const char *tag)
{
    char *out = dp_test_output (tag, "out");
    uint32_t expect = UINT32_MAX;
    for (char *line = out; *line;) {
        char *end = strchr (line, '\n');
        if (!end)
            break; /* a line cut by the kill of its writer: none is */
        *end = 0;
        unsigned n;
        if (sscanf (line, "[0,%u]", &n) != 1 || n >= ledger->count)
            dp_test_fail (__FILE__, __LINE__, "[%s] printed '%s'", tag, line);
        if (expect == UINT32_MAX && n > ledger->next)
            dp_test_fail (__FILE__, __LINE__, "[%s] began at %u: %u..%u lost", tag, n,
                          ledger->next, n - 1);
        if (expect != UINT32_MAX && n != expect)
            dp_test_fail (__FILE__, __LINE__, "[%s] printed %u after %u", tag, n, expect - 1);
        expect = n + 1;
        if (n == ledger->next)
            ledger->next++;
        ledger->printed++;
        line = end + 1;
    }
    ledger->runs++;
    free (out);
}

/*  Starts a collector of batch id: `dpool results ID`, tagged runN. */
static pid_t
s_collector (const char *id, int run)
{
    char command[2 * PATH_SIZE];
    snprintf (command, sizeof command, "exec '%s' results %s --connect '%s'", dp_test_cli_bin, id,
              s_broker.tcp);
    char tag[32];
    snprintf (tag, sizeof tag, "run%d", run);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    return dp_test_spawn (tag, argv);
}

/*  If the collector ended: its output checked, and true if it printed
    the last line; else started again. */
static bool
s_collector_step (const char *id, pid_t *collector, s_ledger_t *ledger, int timeout_ms)
{
    int status = dp_test_wait_exit (*collector, timeout_ms);
    if (status == -1)
        return false;
    char tag[32];
    snprintf (tag, sizeof tag, "run%d", ledger->runs);
    s_ledger_add (ledger, tag);
    if (WIFEXITED (status) && WEXITSTATUS (status) == 0 && ledger->next == ledger->count)
        return true;
    *collector = s_collector (id, ledger->runs);
    return false;
}

/*  `dpool submit` makes a batch and exits; the broker is SIGKILLed 20
    times at random moments while 2 real workers run it and `dpool
    results` collects it, started again on its journal each time (and the
    collector again whenever it ended). Every result is printed in order,
    none lost; once confirmed none comes again; the batch is gone and the
    journal holds nothing of it. */
static void
s_case_batch_survives_kills (void)
{
    s_seed ();
    const char *env = getenv ("DPOOL_TEST_JOURNAL_BATCH");
    uint32_t count = env ? (uint32_t)atol (env) : BATCH_DEFAULT;
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("batch.journal"));
    s_broker_start (s_journal);
    const char *id = s_submit_detached (count);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    s_ledger_t ledger = {.count = count};
    pid_t collector = s_collector (id, 0);
    bool over = false;
    long long done_before = 0;
    for (int kill = 0; kill < KILLS; kill++) {
        int64_t deadline = dp_now_ms () + 3000;
        while (dp_now_ms () < deadline && s_status ("done") <= 0)
            dp_test_sleep_ms (5);
        dp_test_sleep_ms (s_random (200));
        long long done = s_status ("done");
        done_before += done > 0 ? done : 0;
        s_broker_kill ();
        s_broker_start (s_journal);
        if (!over)
            over = s_collector_step (id, &collector, &ledger, 0);
    }
    int64_t deadline = dp_now_ms () + COLLECT_MS;
    while (!over && dp_now_ms () < deadline)
        over = s_collector_step (id, &collector, &ledger, 1000);
    fprintf (stderr,
             "%d kills, %lld tasks run before them; %d collector runs printed %u lines for "
             "%u results\n",
             KILLS, done_before, ledger.runs, ledger.printed, count);
    if (!over)
        dp_test_fail (__FILE__, __LINE__, "%u of %u results came", ledger.next, count);
    CHECK_EQ_INT (ledger.printed, count); /* none twice: each confirmed before the next */
    CHECK_EQ_INT (s_dpool ("gone", "batches"), 0);
    char *out = dp_test_output ("gone", "out");
    CHECK (!strstr (out, id));
    free (out);
    CHECK (dp_test_stop (workers, SIGTERM, 10000) != -1);
    s_broker_stop ();
    for (int kind = DP_JOURNAL_BATCH; kind <= DP_JOURNAL_BRUN; kind++)
        CHECK_EQ_INT (s_rows (s_journal, kind), 0);
}

/*  A batch submitted, the broker killed before any worker came: the
    restarted broker lists it, and its results arrive, every one in order. */
static void
s_case_batch_survives_idle_kill (void)
{
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("idle.journal"));
    s_broker_start (s_journal);
    const char *id = s_submit_detached (BATCH_IDLE);
    s_broker_kill ();
    s_broker_start (s_journal);
    CHECK_EQ_INT (s_dpool ("listed", "batches"), 0);
    char *out = dp_test_output ("listed", "out");
    char *line = strstr (out, id);
    if (!line || !strstr (line, "journaled") || !strstr (line, "0/1000"))
        dp_test_fail (__FILE__, __LINE__, "dpool batches printed:\n%s", out);
    free (out);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    char args[64];
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("results", args), 0);
    char *expected = (char *)calloc (BATCH_IDLE, 16);
    CHECK (expected);
    for (uint32_t i = 0; i < BATCH_IDLE; i++)
        sprintf (expected + strlen (expected), "[0,%u]\n", i);
    dp_test_check_stdout ("results", expected);
    free (expected);
    CHECK (dp_test_stop (workers, SIGTERM, 10000) != -1);
    s_broker_stop ();
}

/*  Results large enough to come from the workers in payload frames of
    their own (PROTOCOL.md 3), through a journaled broker: a detached
    batch's are held and collected (they were lost once: the batch never
    ended), a map's are printed; the journal then holds nothing of them. */
static void
s_case_large_results (void)
{
    snprintf (s_journal, sizeof s_journal, "%s", dp_test_path ("large.journal"));
    s_broker_start (s_journal);
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, NULL);
    char input[PATH_SIZE];
    snprintf (input, sizeof input, "%s", dp_test_path ("large.jsonl"));
    size_t sizes[] = {10, 5000, 70000, 3, 4096};
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        total += sizes[i] + 8;
    char *text = (char *)calloc (1, total + 1);
    CHECK (text);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char *end = text + strlen (text);
        end[0] = '[';
        end[1] = '"';
        memset (end + 2, 'a' + (int)i, sizes[i]);
        memcpy (end + 2 + sizes[i], "\"]\n", 4);
    }
    s_write_file (input, text, strlen (text));

    char args[2 * PATH_SIZE];
    snprintf (args, sizeof args, "submit echo < '%s'", input);
    CHECK_EQ_INT (s_dpool ("submit", args), 0);
    char *id = dp_test_output ("submit", "out");
    id[strcspn (id, "\n")] = 0;
    snprintf (args, sizeof args, "results %s", id);
    CHECK_EQ_INT (s_dpool ("results", args), 0);
    dp_test_check_stdout ("results", text);
    free (id);
    snprintf (args, sizeof args, "map echo < '%s'", input);
    CHECK_EQ_INT (s_dpool ("map", args), 0);
    dp_test_check_stdout ("map", text);
    free (text);
    CHECK (dp_test_stop (workers, SIGTERM, 10000) != -1);
    s_broker_stop ();
    s_check_no_session_rows (s_journal);
    CHECK_EQ_INT (s_rows (s_journal, DP_JOURNAL_BATCH), 0);
    CHECK_EQ_INT (s_rows (s_journal, DP_JOURNAL_BRESULT), 0);
    CHECK_EQ_INT (s_rows (s_journal, DP_JOURNAL_BTASK), 0);
}

static const dp_test_case_t s_cases[] = {
    {"broker_journal_tasks_survive_kills", s_case_tasks_survive_kills, .seconds = 500},
    {"broker_journal_queue_survives_kills", s_case_queue_survives_kills, .seconds = 300},
    {"broker_journal_running_tasks_count_attempts", s_case_running_tasks_count_attempts},
    {"broker_journal_refuses_bad_journals", s_case_refuses_bad_journals},
    {"broker_journal_refuses_journal_in_use", s_case_refuses_journal_in_use},
    {"broker_journal_refuses_read_only", s_case_refuses_read_only},
    {"broker_journal_disk_full", s_case_disk_full},
    {"broker_journal_batch_survives_kills", s_case_batch_survives_kills, .seconds = 500},
    {"broker_journal_batch_survives_idle_kill", s_case_batch_survives_idle_kill},
    {"broker_journal_large_results_framed", s_case_large_results},
};

int
main (int argc, char *argv[])
{
    const char *transport;
    const dp_test_case_t *run =
        dp_test_select (argc, argv, DP_TEST_CASES (s_cases), 120, &transport);
    s_ctx = zmq_ctx_new ();
    dp_testpeer_context (s_ctx);
    dp_test_run (run, transport);
    zmq_ctx_term (s_ctx);
    return 0;
}

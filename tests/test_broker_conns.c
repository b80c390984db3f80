/*  test_broker_conns.c - the broker's connections (broker/dp_conns.h) with
    real processes: a worker process killed while it runs a task has its
    task run elsewhere at once, not at the heartbeat expiry; the broker
    raises its open-file limit and bounds connections in all and per peer
    address, refusing those beyond with a reason while established clients
    go on; and bytes that are not ZMTP are not counted as CURVE refusals.
*/
#include "dp_testutil.h"

#include "dp_testpeer.h"
#include "dp_util.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#define WAIT_MS   10000 /* how long a step may take before the test fails */
#define EXPIRY_MS "30000"
#define MAX_RAW   600

static dp_test_broker_t s_broker;
static void *s_ctx;
static int s_raw[MAX_RAW];
static int s_nraw;

/*  ---------------------------------------------------------------------------
    Helpers.
*/

static void
s_start (const char *const *extra)
{
    s_ctx = zmq_ctx_new ();
    CHECK (s_ctx);
    dp_testpeer_context (s_ctx);
    dp_test_broker_start (&s_broker, extra);
}

static void
s_finish (void)
{
    for (int i = 0; i < s_nraw; i++)
        close (s_raw[i]);
    s_nraw = 0;
    int status = dp_test_stop (s_broker.pid, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    zmq_ctx_term (s_ctx);
}

/*  Opens count plain TCP connections to the broker that say nothing. */
static void
s_open_raw (int count)
{
    int port = atoi (strrchr (s_broker.tcp, ':') + 1);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    for (int i = 0; i < count; i++) {
        CHECK (s_nraw < MAX_RAW);
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        CHECK (fd >= 0);
        CHECK (connect (fd, (struct sockaddr *)&addr, sizeof addr) == 0);
        s_raw[s_nraw++] = fd;
    }
}

static void
s_close_raw (void)
{
    for (int i = 0; i < s_nraw; i++)
        close (s_raw[i]);
    s_nraw = 0;
}

/*  A connection counter of the broker's status, asked over ipc. */
static uint64_t
s_conns (const char *key)
{
    dp_testpeer_t *peer = dp_testpeer_new (s_broker.ipc);
    /*  A session of its own each time: the BYE below may not go out before
        the socket closes (linger 0), leaving the last one attached. */
    uint8_t session[DP_SESSION_SIZE];
    dp_random_bytes (session, sizeof session);
    dp_encode_hello (&peer->w, session, "status");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    dp_testpeer_expect (peer, DP_CMD_WELCOME);
    msgpack_unpacked unpacked;
    msgpack_object map = dp_testpeer_status (peer, &unpacked);
    msgpack_object value = dp_testpeer_map_get (dp_testpeer_map_get (map, "connections"), key);
    if (value.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        dp_test_fail (__FILE__, __LINE__, "status has no connections.%s", key);
    uint64_t count = value.via.u64;
    msgpack_unpacked_destroy (&unpacked);
    dp_encode_empty (&peer->w);
    dp_testpeer_send (peer, DP_CMD_BYE);
    dp_testpeer_destroy (&peer);
    return count;
}

/*  A connection counter of the broker's status, asked by an established
    client. */
static uint64_t
s_pool_conns (dpool_pool_t *pool, const char *key)
{
    msgpack_unpacked status = dp_test_status (pool);
    const msgpack_object *value =
        dp_test_map_get (dp_test_map_get (&status.data, "connections"), key);
    CHECK (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    uint64_t count = value->via.u64;
    msgpack_unpacked_destroy (&status);
    return count;
}

/*  A new client's HELLO on endpoint: the command it gets back (WELCOME,
    ERROR, or 0 for nothing within ms). An ERROR's code and message are
    copied out. */
static int
s_hello (const char *endpoint, int ms, int *code, char *message, size_t size)
{
    dp_testpeer_t *peer = dp_testpeer_new (endpoint);
    uint8_t session[DP_SESSION_SIZE];
    dp_random_bytes (session, sizeof session);
    dp_encode_hello (&peer->w, session, "newcomer");
    dp_testpeer_send (peer, DP_CMD_HELLO);
    int cmd = dp_testpeer_recv (peer, ms);
    if (cmd == DP_CMD_ERROR) {
        *code = (int)peer->msg.u.error.code;
        snprintf (message, size, "%.*s", (int)peer->msg.u.error.message.size,
                  (const char *)peer->msg.u.error.message.data);
    }
    if (cmd == DP_CMD_WELCOME) {
        dp_encode_empty (&peer->w);
        dp_testpeer_send (peer, DP_CMD_BYE);
    }
    dp_testpeer_destroy (&peer);
    return cmd;
}

/*  Waits until a new client over endpoint gets the answer cmd (WELCOME,
    or an ERROR with code), trying again with a fresh connection while it
    gets another; returns the last message of an ERROR. */
static void
s_expect_hello (const char *endpoint, int cmd, int code, char *message, size_t size)
{
    int64_t deadline = dp_test_now_ms () + 2 * WAIT_MS;
    for (;;) {
        int got_code = 0;
        message[0] = 0;
        int got = s_hello (endpoint, 2000, &got_code, message, size);
        if (got == cmd && (cmd != DP_CMD_ERROR || got_code == code))
            return;
        if (dp_test_now_ms () > deadline)
            dp_test_fail (__FILE__, __LINE__, "HELLO on %s got %d (code %d: %s), expected %d",
                          endpoint, got, got_code, message, cmd);
    }
}

/*  An established client still runs tasks. */
static void
s_echo_ok (dpool_pool_t *pool)
{
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_int (&buf.pk, 42);
    dpool_result_t *result = dpool_pool_apply (pool, "echo", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    msgpack_object value;
    CHECK_EQ_INT (dpool_result_get (result, WAIT_MS, &value), 0);
    CHECK (dp_test_is_int (&value, 42));
    dpool_result_destroy (&result);
    dp_test_buf_fini (&buf);
}

/*  The soft and hard "Max open files" of a process, from /proc. */
static void
s_nofile (pid_t pid, long long *soft, long long *hard)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/limits", (int)pid);
    char *text = dp_test_read_file (path);
    CHECK (text);
    char *line = strstr (text, "Max open files");
    CHECK (line);
    CHECK_EQ_INT (sscanf (line + strlen ("Max open files"), "%lld %lld", soft, hard), 2);
    free (text);
}

/*  ---------------------------------------------------------------------------
    A worker process killed while it runs a task.
*/

typedef struct {
    dpool_pool_t *pool;
    long long pid; /* the process that holds the job */
} s_running_t;

static bool
s_job_running (void *arg)
{
    s_running_t *r = (s_running_t *)arg;
    msgpack_unpacked status = dp_test_status (r->pool);
    const msgpack_object *running = dp_test_map_get (&status.data, "running");
    r->pid = 0;
    if (running && running->type == MSGPACK_OBJECT_ARRAY && running->via.array.size == 1) {
        const msgpack_object *pid = dp_test_map_get (&running->via.array.ptr[0], "pid");
        if (pid && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            r->pid = (long long)pid->via.u64;
    }
    msgpack_unpacked_destroy (&status);
    return r->pid > 0;
}

/*  The broker's expiry is 30 s here: only the closed connection can tell
    it within seconds that the process died. The task ran 1 s, so it ends
    about 1 s after the kill, on the other process. */
static void
s_case_worker_death (void)
{
    const char *extra[] = {"--expiry-ms", EXPIRY_MS, NULL};
    s_start (extra);
    pid_t workers = dp_test_workers_logged (s_broker.tcp, 2, NULL);
    dpool_pool_t *pool = dpool_pool_connect (s_broker.tcp);
    CHECK (pool);
    dp_test_wait_workers (pool, 2, WAIT_MS);
    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    msgpack_pack_double (&buf.pk, 1.0);
    dpool_result_t *result =
        dpool_pool_apply_async (pool, "sleep", buf.sbuf.data, buf.sbuf.size, NULL);
    CHECK (result);
    s_running_t running = {pool, 0};
    CHECK (dp_test_wait_until (s_job_running, &running, WAIT_MS));
    int64_t killed = dp_test_now_ms ();
    CHECK_EQ_INT (kill ((pid_t)running.pid, SIGKILL), 0);
    CHECK_EQ_INT (dpool_result_get (result, WAIT_MS, NULL), 0);
    int64_t took = dp_test_now_ms () - killed;
    if (took > 5000)
        dp_test_fail (__FILE__, __LINE__, "the task ended %lld ms after its worker died",
                      (long long)took);
    dpool_result_destroy (&result);
    dp_test_buf_fini (&buf);
    dpool_pool_destroy (&pool);
    int status = dp_test_stop (workers, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    s_finish ();
}

/*  A worker whose connection closes while it holds a job, with a second
    worker idle: the job goes to the second at once, as its second
    attempt; the first's late DONE is not a result. */
static void
s_case_worker_cut (void)
{
    const char *extra[] = {"--expiry-ms", EXPIRY_MS, NULL};
    s_start (extra);
    dp_testpeer_t *client = dp_testpeer_new (s_broker.tcp);
    dp_encode_hello (&client->w, (const uint8_t *)"conns-client-001", "client");
    dp_testpeer_send (client, DP_CMD_HELLO);
    dp_testpeer_expect (client, DP_CMD_WELCOME);
    dp_testpeer_keepalive (client);
    dp_testpeer_t *workers[2];
    const char *fns[] = {"f"};
    for (int i = 0; i < 2; i++) {
        workers[i] = dp_testpeer_new (s_broker.tcp);
        dp_encode_ready (&workers[i]->w, "w", 100 + (uint64_t)i, "host", 1, fns, 1);
        dp_testpeer_send (workers[i], DP_CMD_READY);
        dp_testpeer_expect (workers[i], DP_CMD_WELCOME);
        dp_testpeer_keepalive (workers[i]);
    }
    dp_task_t task = {
        .id = 1, .fn = {(const uint8_t *)"f", 1}, .args = {(const uint8_t *)"\x01", 1}};
    dp_list_begin (&client->w);
    dp_list_add_task (&client->w, DP_CMD_SUBMIT, &task);
    dp_list_end (&client->w);
    dp_testpeer_send (client, DP_CMD_SUBMIT);
    /*  Whichever got it is cut (its socket closed at once, linger 0). */
    int first = -1;
    for (int64_t until = dp_test_now_ms () + WAIT_MS; first < 0;) {
        CHECK (dp_test_now_ms () < until);
        for (int i = 0; i < 2 && first < 0; i++)
            if (dp_testpeer_recv (workers[i], 50) == DP_CMD_DISPATCH)
                first = i;
    }
    int64_t cut = dp_test_now_ms ();
    dp_testpeer_destroy (&workers[first]);
    dp_testpeer_t *other = workers[1 - first];
    dp_testpeer_expect (other, DP_CMD_DISPATCH);
    int64_t took = dp_test_now_ms () - cut;
    dp_task_t job;
    CHECK (dp_list_next_task (&other->msg.u.list, DP_CMD_DISPATCH, &job));
    CHECK_EQ_INT (job.attempt, 2); /* a death was counted */
    if (took > 2000)
        dp_test_fail (__FILE__, __LINE__, "redispatched %lld ms after the cut", (long long)took);
    dp_testpeer_destroy (&other);
    dp_testpeer_destroy (&client);
    s_finish ();
}

/*  ---------------------------------------------------------------------------
    The open-file limit and the bounds.
*/

/*  Under a soft limit of 256 (hard 512), 300 idle connections: the broker
    raised its limit to 512, so they fit below its bound (512 - 128) and a
    new client gets in. 150 more pass the bound: they are refused, and an
    established client goes on working. */
static void
s_case_fd_limit (void)
{
    struct rlimit limit = {256, 512};
    CHECK_EQ_INT (setrlimit (RLIMIT_NOFILE, &limit), 0);
    s_start (NULL);
    limit.rlim_cur = 512; /* the test's own connections */
    CHECK_EQ_INT (setrlimit (RLIMIT_NOFILE, &limit), 0);
    long long soft, hard;
    s_nofile (s_broker.pid, &soft, &hard);
    CHECK_EQ_INT (soft, 512);
    CHECK_EQ_INT (hard, 512);
    CHECK_EQ_INT (s_conns ("max"), 512 - 128);
    pid_t workers = dp_test_workers_logged (s_broker.ipc, 1, NULL);
    dpool_pool_t *pool = dpool_pool_connect (s_broker.tcp);
    CHECK (pool);
    dp_test_wait_workers (pool, 1, WAIT_MS);
    s_echo_ok (pool);

    s_open_raw (300);
    char message[256];
    s_expect_hello (s_broker.tcp, DP_CMD_WELCOME, 0, message, sizeof message);
    s_open_raw (150);
    s_echo_ok (pool);
    s_expect_hello (s_broker.tcp, DP_CMD_ERROR, DPOOL_EREJECTED, message, sizeof message);
    CHECK (strstr (message, "--max-connections"));
    s_echo_ok (pool);
    CHECK (s_pool_conns (pool, "refused") >= 450 - (512 - 128));
    CHECK (s_pool_conns (pool, "open") <= 512 - 128);

    s_close_raw ();
    s_expect_hello (s_broker.tcp, DP_CMD_WELCOME, 0, message, sizeof message);
    dpool_pool_destroy (&pool);
    int status = dp_test_stop (workers, SIGTERM, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    s_finish ();
}

/*  With 10 connections admitted per address, 10 idle ones from
    127.0.0.1 lock out only that address: a new tcp client is told why,
    one over ipc (no address) gets in, and once they close tcp works. */
static void
s_case_per_peer (void)
{
    const char *extra[] = {"--max-peer-connections", "10", NULL};
    s_start (extra);
    CHECK_EQ_INT (s_conns ("max_per_peer"), 10);
    s_open_raw (10);
    char message[256];
    s_expect_hello (s_broker.tcp, DP_CMD_ERROR, DPOOL_EREJECTED, message, sizeof message);
    CHECK (strstr (message, "127.0.0.1") && strstr (message, "--max-peer-connections"));
    /*  A pool refused so learns it from its status call, which ends
        EREJECTED rather than waiting out its timeout. */
    dpool_pool_t *pool = dpool_pool_connect (s_broker.tcp);
    CHECK (pool);
    void *data = NULL;
    size_t size = 0;
    CHECK_EQ_INT (dpool_pool_status (pool, 60000, &data, &size), -1);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EREJECTED);
    dpool_pool_destroy (&pool);
    s_expect_hello (s_broker.ipc, DP_CMD_WELCOME, 0, message, sizeof message);
    CHECK (s_conns ("refused") >= 1);
    s_close_raw ();
    s_expect_hello (s_broker.tcp, DP_CMD_WELCOME, 0, message, sizeof message);
    s_finish ();
}

/*  ---------------------------------------------------------------------------
    What the handshake counters count.
*/

static bool
s_all_cut (void *arg)
{
    return s_conns ("disconnected") >= *(uint64_t *)arg;
}

/*  Bytes that are not ZMTP on a broker without CURVE, cut short within
    the greeting: protocol errors, not CURVE refusals. */
static void
s_case_junk (void)
{
    s_start (NULL);
    enum { JUNK = 20 };
    char junk[8];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    s_open_raw (JUNK);
    for (int i = 0; i < JUNK; i++)
        CHECK (write (s_raw[i], junk, sizeof junk) == (ssize_t)sizeof junk);
    s_close_raw ();
    uint64_t all = JUNK;
    CHECK (dp_test_wait_until (s_all_cut, &all, WAIT_MS));
    CHECK_EQ_INT (s_conns ("handshake_failed"), 0);
    CHECK (s_conns ("protocol_errors") >= 1);
    s_finish ();
}

/*  ---------------------------------------------------------------------------
    --io-threads: the broker runs that many ZeroMQ I/O threads (by their
    names in /proc), two by default on a machine with more than one CPU;
    a value out of range is a usage error naming the option.
*/

/*  The threads of pid named ZMQbg/IO/N. */
static int
s_io_threads (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *dir = opendir (path);
    CHECK (dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name[0] == '.')
            continue;
        char comm[sizeof path + sizeof entry->d_name + 8];
        snprintf (comm, sizeof comm, "%s/%s/comm", path, entry->d_name);
        char *name = dp_test_read_file (comm);
        if (name && strncmp (name, "ZMQbg/IO/", 9) == 0)
            count++;
        free (name);
    }
    closedir (dir);
    return count;
}

static int s_io_wanted;

static bool
s_io_threads_named (void *arg)
{
    (void)arg;
    return s_io_threads (s_broker.pid) == s_io_wanted;
}

/*  Waits until the broker runs wanted I/O threads: each names itself once
    it runs, a moment after the broker has bound. */
static void
s_expect_io_threads (int wanted)
{
    s_io_wanted = wanted;
    if (!dp_test_wait_until (s_io_threads_named, NULL, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "%d ZeroMQ I/O threads, expected %d",
                      s_io_threads (s_broker.pid), wanted);
}

static void
s_case_io_threads (void)
{
    const char *const three[] = {"--io-threads", "3", NULL};
    s_start (three);
    s_expect_io_threads (3);
    s_finish ();
    s_start (NULL);
    s_expect_io_threads (dp_cpu_count () > 1 ? 2 : 1);
    s_finish ();
    const char *bad[] = {dp_test_broker_bin, "--bind", dp_test_ipc ("bad"),
                         "--io-threads",     "0",      NULL};
    pid_t pid = dp_test_spawn ("bad", (char *const *)bad);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 2);
    dp_test_check_contains ("bad", "err", "invalid --io-threads '0'");
}

static const dp_test_case_t s_cases[] = {
    {"broker_conns_worker_death", s_case_worker_death},
    {"broker_conns_worker_cut", s_case_worker_cut},
    {"broker_conns_fd_limit", s_case_fd_limit},
    {"broker_conns_per_peer", s_case_per_peer},
    {"broker_conns_junk", s_case_junk},
    {"broker_conns_io_threads", s_case_io_threads},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

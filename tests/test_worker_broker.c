/*  test_worker_broker.c - dpool-worker processes against the real
    dpool-broker, driven by a hand-made client: a DEALER socket in this test
    that speaks DPP/2 through proto/ (HELLO, SUBMIT, STATUS, RESULT). Each
    case is one ctest test: test_worker_broker CASE.
*/
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define WAIT_MS      10000 /* how long a step may take before the test fails */
#define CLIENT_HB_MS 300   /* the client heartbeats this often while it waits */
#define MAX_SEQ      64

/*  ---------------------------------------------------------------------------
    The client.
*/
typedef struct {
    void *ctx;
    void *dealer;
    dp_writer_t writer;
    dp_wire_msg_t wire;
    dp_msg_t m;
    bool held;
    int64_t last_send;
    /*  Results by seq. */
    bool seen[MAX_SEQ];
    int32_t code[MAX_SEQ];
    char *bytes[MAX_SEQ];
    size_t size[MAX_SEQ];
    bool framed[MAX_SEQ]; /* the value came in a payload frame */
    msgpack_object value[MAX_SEQ];
    msgpack_zone zone;
} client_t;

static void
s_client_send (client_t *client, dp_cmd_t cmd)
{
    CHECK_EQ_INT (dp_wire_send_writer (client->dealer, NULL, 0, cmd, &client->writer, 0), 0);
    client->last_send = dp_now_ms ();
}

/*  Receives the next message other than HEARTBEAT within timeout_ms,
    heartbeating meanwhile; returns its command or 0. */
static int
s_client_recv (client_t *client, int timeout_ms)
{
    int64_t until = dp_now_ms () + timeout_ms;
    for (;;) {
        if (client->held)
            dp_wire_close (&client->wire);
        client->held = false;
        int64_t now = dp_now_ms ();
        if (now - client->last_send >= CLIENT_HB_MS) {
            dp_encode_empty (&client->writer);
            s_client_send (client, DP_CMD_HEARTBEAT);
        }
        int64_t left = until - now;
        if (left <= 0)
            return 0;
        zmq_pollitem_t item = {client->dealer, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll (&item, 1, left < CLIENT_HB_MS ? (long)left : CLIENT_HB_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        CHECK (rc >= 0);
        if (rc == 0)
            continue;
        CHECK_EQ_INT (dp_wire_recv (client->dealer, &client->wire, 0), 0);
        client->held = true;
        dp_reason_t reason = dp_wire_decode (&client->wire, false, NULL, &client->m);
        if (reason != DP_OK)
            dp_test_fail (__FILE__, __LINE__, "malformed message from the broker: %s",
                          dp_reason_name (reason));
        if (client->m.cmd != DP_CMD_HEARTBEAT)
            return client->m.cmd;
    }
}

static void
s_client_expect (client_t *client, dp_cmd_t cmd, int line)
{
    int got = s_client_recv (client, WAIT_MS);
    if (got != (int)cmd)
        dp_test_fail (__FILE__, line, "expected %s from the broker, got %s", dp_cmd_name (cmd),
                      got ? dp_cmd_name (got) : "nothing");
}

/*  Connects to endpoint and says HELLO until WELCOME (the broker may not be
    up yet: ZeroMQ delivers once it is). */
static void
s_client_start (client_t *client, const char *endpoint)
{
    memset (client, 0, sizeof *client);
    client->ctx = zmq_ctx_new ();
    client->dealer = zmq_socket (client->ctx, ZMQ_DEALER);
    CHECK (client->dealer);
    CHECK_EQ_INT (dp_wire_configure (client->dealer, false, 0), 0);
    CHECK_EQ_INT (zmq_connect (client->dealer, endpoint), 0);
    dp_writer_init (&client->writer);
    msgpack_zone_init (&client->zone, 4096);
    uint8_t session[DP_SESSION_SIZE];
    dp_random_bytes (session, sizeof session);
    dp_encode_hello (&client->writer, session, "test-client");
    s_client_send (client, DP_CMD_HELLO);
    s_client_expect (client, DP_CMD_WELCOME, __LINE__);
}

static void
s_client_stop (client_t *client)
{
    if (client->held)
        dp_wire_close (&client->wire);
    for (int i = 0; i < MAX_SEQ; i++)
        free (client->bytes[i]);
    msgpack_zone_destroy (&client->zone);
    dp_writer_fini (&client->writer);
    zmq_close (client->dealer);
    zmq_ctx_term (client->ctx);
}

/*  A task to submit; args are packed msgpack bytes. */
typedef struct {
    uint64_t seq;
    const char *fn;
    const char *args;
    size_t args_size;
    uint32_t timeout_ms;
    int32_t retries;
    uint32_t flags;
} task_t;

static void
s_client_submit (client_t *client, const task_t *tasks, size_t count)
{
    dp_list_begin (&client->writer);
    for (size_t i = 0; i < count; i++) {
        dp_task_t task = {.id = tasks[i].seq,
                          .fn = {(const uint8_t *)tasks[i].fn, strlen (tasks[i].fn)},
                          .args = {(const uint8_t *)tasks[i].args, tasks[i].args_size},
                          .timeout_ms = tasks[i].timeout_ms,
                          .retries = tasks[i].retries,
                          .flags = tasks[i].flags};
        dp_list_add_task (&client->writer, DP_CMD_SUBMIT, &task);
    }
    dp_list_end (&client->writer);
    s_client_send (client, DP_CMD_SUBMIT);
}

/*  s_client_submit with every task's args in a payload frame of its own
    (PROTOCOL.md 3). */
static void
s_client_submit_framed (client_t *client, const task_t *tasks, size_t count)
{
    dp_list_begin (&client->writer);
    for (size_t i = 0; i < count; i++) {
        dp_task_t task = {.id = tasks[i].seq,
                          .fn = {(const uint8_t *)tasks[i].fn, strlen (tasks[i].fn)},
                          .timeout_ms = tasks[i].timeout_ms,
                          .retries = tasks[i].retries,
                          .flags = tasks[i].flags};
        dp_list_add_task_framed (&client->writer, DP_CMD_SUBMIT, &task);
    }
    dp_list_end (&client->writer);
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, DP_CMD_SUBMIT);
    CHECK (zmq_send (client->dealer, header, sizeof header, ZMQ_SNDMORE) == DP_HEADER_SIZE);
    CHECK (zmq_send (client->dealer, dp_writer_data (&client->writer),
                     dp_writer_size (&client->writer), ZMQ_SNDMORE) >= 0);
    for (size_t i = 0; i < count; i++)
        CHECK (zmq_send (client->dealer, tasks[i].args, tasks[i].args_size,
                         i + 1 < count ? ZMQ_SNDMORE : 0) == (int)tasks[i].args_size);
    client->last_send = dp_now_ms ();
}

/*  Receives RESULTs until the result of every seq in seqs is in. */
static void
s_client_results (client_t *client, const uint64_t *seqs, size_t count, int line)
{
    for (;;) {
        size_t missing = 0;
        for (size_t i = 0; i < count; i++)
            if (!client->seen[seqs[i]])
                missing++;
        if (missing == 0)
            return;
        s_client_expect (client, DP_CMD_RESULT, line);
        dp_list_t list = client->m.u.list;
        dp_result_t result;
        while (dp_list_next_result (&list, &result)) {
            CHECK (result.id < MAX_SEQ);
            CHECK (!client->seen[result.id]);
            client->seen[result.id] = true;
            client->code[result.id] = result.code;
            client->framed[result.id] = result.frame != 0;
            client->size[result.id] = result.value.size;
            client->bytes[result.id] = (char *)malloc (result.value.size);
            CHECK (client->bytes[result.id]);
            memcpy (client->bytes[result.id], result.value.data, result.value.size);
            size_t offset = 0;
            CHECK (msgpack_unpack (client->bytes[result.id], result.value.size, &offset,
                                   &client->zone,
                                   &client->value[result.id]) == MSGPACK_UNPACK_SUCCESS);
        }
    }
}

/*  The value of a uint counter at the top of the broker's status map. */
static uint64_t
s_client_status (client_t *client, const char *key)
{
    dp_encode_empty (&client->writer);
    s_client_send (client, DP_CMD_STATUS);
    s_client_expect (client, DP_CMD_STATUS_REPLY, __LINE__);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object map;
    size_t offset = 0;
    CHECK (msgpack_unpack ((const char *)client->m.u.status.data, client->m.u.status.size, &offset,
                           &zone, &map) == MSGPACK_UNPACK_SUCCESS);
    CHECK (map.type == MSGPACK_OBJECT_MAP);
    uint64_t value = UINT64_MAX;
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object *k = &map.via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen (key) &&
            memcmp (k->via.str.ptr, key, k->via.str.size) == 0 &&
            map.via.map.ptr[i].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            value = map.via.map.ptr[i].val.via.u64;
    }
    msgpack_zone_destroy (&zone);
    CHECK (value != UINT64_MAX);
    return value;
}

/*  The number of workers in the broker's status. */
static uint32_t
s_client_workers (client_t *client)
{
    dp_encode_empty (&client->writer);
    s_client_send (client, DP_CMD_STATUS);
    s_client_expect (client, DP_CMD_STATUS_REPLY, __LINE__);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object map;
    size_t offset = 0;
    CHECK (msgpack_unpack ((const char *)client->m.u.status.data, client->m.u.status.size, &offset,
                           &zone, &map) == MSGPACK_UNPACK_SUCCESS);
    uint32_t workers = 0;
    for (uint32_t i = 0; i < map.via.map.size; i++) {
        msgpack_object *k = &map.via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 7 &&
            memcmp (k->via.str.ptr, "workers", 7) == 0 &&
            map.via.map.ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
            workers = map.via.map.ptr[i].val.via.array.size;
    }
    msgpack_zone_destroy (&zone);
    return workers;
}

typedef struct {
    client_t *client;
    uint32_t workers;
} workers_wait_t;

static bool
s_has_workers (void *arg)
{
    workers_wait_t *wait = (workers_wait_t *)arg;
    return s_client_workers (wait->client) >= wait->workers;
}

static bool
s_no_workers (void *arg)
{
    return s_client_workers ((client_t *)arg) == 0;
}

typedef struct {
    client_t *client;
    const char *key;
    uint64_t value;
} counter_wait_t;

static bool
s_counter_is (void *arg)
{
    counter_wait_t *wait = (counter_wait_t *)arg;
    return s_client_status (wait->client, wait->key) == wait->value;
}

/*  ---------------------------------------------------------------------------
    Helpers.
*/
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} pack_t;

static void
s_pack_init (pack_t *pack)
{
    msgpack_sbuffer_init (&pack->sbuf);
    msgpack_packer_init (&pack->pk, &pack->sbuf, msgpack_sbuffer_write);
}

static void
s_pack_str (pack_t *pack, const char *text)
{
    msgpack_pack_str (&pack->pk, strlen (text));
    msgpack_pack_str_body (&pack->pk, text, strlen (text));
}

static bool
s_str_eq (const msgpack_object *value, const char *text)
{
    return value->type == MSGPACK_OBJECT_STR && value->via.str.size == strlen (text) &&
           memcmp (value->via.str.ptr, text, value->via.str.size) == 0;
}

/*  The "pid" of a pid built-in's result. */
static uint64_t
s_result_pid (const msgpack_object *value)
{
    CHECK (value->type == MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < value->via.map.size; i++)
        if (s_str_eq (&value->via.map.ptr[i].key, "pid"))
            return value->via.map.ptr[i].val.via.u64;
    dp_test_fail (__FILE__, __LINE__, "no pid in the result");
}

/*  Starts dpool-broker bound to endpoint (a fixed one, so that a second
    broker can take over the same address). */
static pid_t
s_broker (const char *endpoint, const char *tag)
{
    const char *argv[] = {dp_test_broker_bin,
                          "--bind",
                          endpoint,
                          "--log-level",
                          getenv ("DPOOL_LOG") ? getenv ("DPOOL_LOG") : "info",
                          NULL};
    return dp_test_spawn (tag, (char *const *)argv);
}

/*  Stops pid with SIGTERM and checks that it exits with status 0. */
static void
s_stop_clean (pid_t pid)
{
    int status = dp_test_stop (pid, SIGTERM, 5000);
    CHECK (status != -1);
    CHECK (WIFEXITED (status));
    CHECK_EQ_INT (WEXITSTATUS (status), 0);
}

/*  Fills pids with the processes whose parent is parent (scanning /proc);
    returns how many (at most max). */
static int
s_children_of (pid_t parent, pid_t *pids, int max)
{
    DIR *dir = opendir ("/proc");
    CHECK (dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)) && count < max) {
        char *end;
        long pid = strtol (entry->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        char path[64];
        snprintf (path, sizeof path, "/proc/%ld/stat", pid);
        FILE *file = fopen (path, "r");
        if (!file)
            continue;
        char line[1024];
        char *got = fgets (line, sizeof line, file);
        fclose (file);
        /*  pid (comm) state ppid ...: comm may hold spaces and parentheses. */
        char *close = got ? strrchr (line, ')') : NULL;
        char state;
        long ppid;
        if (close && sscanf (close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent &&
            state != 'Z')
            pids[count++] = (pid_t)pid;
    }
    closedir (dir);
    return count;
}

/*  True if pid is gone: no such process, or a zombie that some reaper of
    orphans has not reaped yet. */
static bool
s_process_gone (pid_t pid)
{
    if (kill (pid, 0) != 0)
        return errno == ESRCH;
    char path[64], line[1024];
    snprintf (path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return true;
    char *got = fgets (line, sizeof line, file);
    fclose (file);
    char *close = got ? strrchr (line, ')') : NULL;
    return !close || close[1] == 0 || close[2] == 'Z' || close[2] == 'X';
}

typedef struct {
    const pid_t *pids;
    int count;
} gone_wait_t;

static bool
s_all_gone (void *arg)
{
    gone_wait_t *wait = (gone_wait_t *)arg;
    for (int i = 0; i < wait->count; i++)
        if (!s_process_gone (wait->pids[i]))
            return false;
    return true;
}

/*  Fails the test, after killing them, if the processes in pids are not all
    gone within 5 s (the orphans of a supervisor killed outright: no test
    cleanup knows them). */
static void
s_check_gone (const pid_t *pids, int count, int line)
{
    gone_wait_t gone = {pids, count};
    if (dp_test_wait_until (s_all_gone, &gone, 5000))
        return;
    for (int i = 0; i < count; i++)
        kill (pids[i], SIGKILL);
    dp_test_fail (__FILE__, line, "%d worker processes outlived their supervisor", count);
}

/*  ---------------------------------------------------------------------------
    Cases.
*/

/*  Tasks of every kind through the real broker to two worker processes. */
static void
s_case_tasks (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    const char *extra[] = {"--credit", "4", NULL};
    pid_t workers = dp_test_workers_logged (broker.ipc, 2, extra);
    client_t client;
    s_client_start (&client, broker.tcp);
    workers_wait_t two = {&client, 2};
    CHECK (dp_test_wait_until (s_has_workers, &two, WAIT_MS));
    /*  Each worker's task thread attaches a lane of its own (PROTOCOL.md 5.7). */
    counter_wait_t lanes = {&client, "worker_lanes", 2};
    CHECK (dp_test_wait_until (s_counter_is, &lanes, WAIT_MS));

    pack_t value, boom, calls, nil, nap;
    s_pack_init (&value);
    msgpack_pack_array (&value.pk, 2);
    s_pack_str (&value, "a");
    msgpack_pack_int (&value.pk, 2);
    s_pack_init (&boom);
    s_pack_str (&boom, "kaput");
    s_pack_init (&calls);
    msgpack_pack_array (&calls.pk, 2);
    msgpack_pack_int (&calls.pk, 1);
    msgpack_pack_int (&calls.pk, 2);
    s_pack_init (&nil);
    msgpack_pack_nil (&nil.pk);
    s_pack_init (&nap);
    msgpack_pack_double (&nap.pk, 0.2);
    task_t tasks[] = {
        {1, "echo", value.sbuf.data, value.sbuf.size, 0, 0, 0},
        {2, "fail", boom.sbuf.data, boom.sbuf.size, 0, 0, 0},
        {3, "echo", calls.sbuf.data, calls.sbuf.size, 0, 0, DP_TASK_CHUNK},
        {4, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0, 0},
        {5, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0, 0},
        {6, "pid", nil.sbuf.data, nil.sbuf.size, 0, 0, 0},
        {7, "pid", nil.sbuf.data, nil.sbuf.size, 0, 0, 0},
    };
    int64_t start = dp_now_ms ();
    s_client_submit (&client, tasks, 7);
    uint64_t seqs[] = {1, 2, 3, 4, 5, 6, 7};
    s_client_results (&client, seqs, 7, __LINE__);
    CHECK_EQ_INT (client.code[1], 0);
    CHECK (client.value[1].type == MSGPACK_OBJECT_ARRAY && client.value[1].via.array.size == 2);
    CHECK_EQ_INT (client.code[2], DPOOL_EFAILED);
    CHECK (s_str_eq (&client.value[2], "kaput"));
    CHECK_EQ_INT (client.code[3], 0);
    CHECK (client.value[3].type == MSGPACK_OBJECT_ARRAY && client.value[3].via.array.size == 2);
    CHECK_EQ_INT (client.value[3].via.array.ptr[1].via.array.ptr[1].via.u64, 2);
    CHECK_EQ_INT (client.code[4], 0);
    CHECK_EQ_INT (client.code[5], 0);
    CHECK (dp_now_ms () - start >= 200);
    CHECK_EQ_INT (client.code[6], 0);
    CHECK (s_result_pid (&client.value[6]) > 0);
    CHECK_EQ_INT (s_client_status (&client, "failed"), 1);
    CHECK_EQ_INT (s_client_status (&client, "done"), 6);
    /*  The jobs went out on the lanes. */
    CHECK (s_client_status (&client, "lane_dispatches") >= 2);

    msgpack_sbuffer_destroy (&value.sbuf);
    msgpack_sbuffer_destroy (&boom.sbuf);
    msgpack_sbuffer_destroy (&calls.sbuf);
    msgpack_sbuffer_destroy (&nil.sbuf);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_stop_clean (workers);
    s_client_stop (&client);
}

/*  A task past its timeout ends EDEADLINE; its process is replaced and the
    pool goes on. */
static void
s_case_timeout (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    pid_t workers = dp_test_workers_logged (broker.ipc, 1, NULL);
    client_t client;
    s_client_start (&client, broker.tcp);
    pack_t nil, nap;
    s_pack_init (&nil);
    msgpack_pack_nil (&nil.pk);
    s_pack_init (&nap);
    msgpack_pack_int (&nap.pk, 30);
    task_t first = {1, "pid", nil.sbuf.data, nil.sbuf.size, 0, 0, 0};
    s_client_submit (&client, &first, 1);
    uint64_t seq = 1;
    s_client_results (&client, &seq, 1, __LINE__);
    uint64_t pid = s_result_pid (&client.value[1]);

    task_t slow = {2, "sleep", nap.sbuf.data, nap.sbuf.size, 250, 0, 0};
    int64_t start = dp_now_ms ();
    s_client_submit (&client, &slow, 1);
    seq = 2;
    s_client_results (&client, &seq, 1, __LINE__);
    CHECK_EQ_INT (client.code[2], DPOOL_EDEADLINE);
    CHECK (s_str_eq (&client.value[2], "task exceeded its timeout of 250 ms"));
    int64_t took = dp_now_ms () - start;
    CHECK (took >= 250 && took < 2000);

    task_t after = {3, "pid", nil.sbuf.data, nil.sbuf.size, 0, 0, 0};
    s_client_submit (&client, &after, 1);
    seq = 3;
    s_client_results (&client, &seq, 1, __LINE__);
    CHECK_EQ_INT (client.code[3], 0);
    CHECK (s_result_pid (&client.value[3]) != pid);
    msgpack_sbuffer_destroy (&nil.sbuf);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_stop_clean (workers);
    s_client_stop (&client);
}

/*  SIGTERM to a worker that holds a task: its BYE gives the task back, with
    no attempt counted, and another worker runs it. */
static void
s_case_sigterm_requeues (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    pid_t first = dp_test_workers_logged (broker.ipc, 1, NULL);
    client_t client;
    s_client_start (&client, broker.tcp);
    pack_t nap;
    s_pack_init (&nap);
    msgpack_pack_double (&nap.pk, 1.0);
    /*  retries -1: a death would end it ELOST; a BYE must not. */
    task_t task = {1, "sleep", nap.sbuf.data, nap.sbuf.size, 0, -1, 0};
    s_client_submit (&client, &task, 1);
    counter_wait_t running = {&client, "inflight", 1};
    CHECK (dp_test_wait_until (s_counter_is, &running, WAIT_MS));
    int64_t start = dp_now_ms ();
    int status = dp_test_stop (first, SIGTERM, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    CHECK (dp_now_ms () - start < 1500);
    counter_wait_t queued = {&client, "queued", 1};
    CHECK (dp_test_wait_until (s_counter_is, &queued, WAIT_MS));
    pid_t second = dp_test_workers_logged (broker.ipc, 1, NULL);
    uint64_t seq = 1;
    s_client_results (&client, &seq, 1, __LINE__);
    CHECK_EQ_INT (client.code[1], 0);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_stop_clean (second);
    s_client_stop (&client);
}

/*  The broker goes away and another takes its address: after a clean stop
    (its BYE) and after a crash (silence, then ESTATE or expiry), the same
    worker processes register with the new broker and serve it. */
static void
s_case_broker_restart (void)
{
    const char *endpoint_tmp = dp_test_ipc ("broker");
    char endpoint[2048];
    snprintf (endpoint, sizeof endpoint, "%s", endpoint_tmp);
    pid_t broker = s_broker (endpoint, "broker1");
    pid_t workers = dp_test_workers_logged (endpoint, 2, NULL);
    pack_t nil;
    s_pack_init (&nil);
    msgpack_pack_nil (&nil.pk);
    uint64_t pids[6];
    int npids = 0;
    for (int round = 0; round < 3; round++) {
        client_t client;
        s_client_start (&client, endpoint);
        workers_wait_t two = {&client, 2};
        CHECK (dp_test_wait_until (s_has_workers, &two, WAIT_MS));
        /*  Each new broker gets each worker's lane too. */
        counter_wait_t lanes = {&client, "worker_lanes", 2};
        CHECK (dp_test_wait_until (s_counter_is, &lanes, WAIT_MS));
        task_t tasks[] = {{1, "pid", nil.sbuf.data, nil.sbuf.size, 0, 0, 0},
                          {2, "pid", nil.sbuf.data, nil.sbuf.size, 0, 0, 0}};
        s_client_submit (&client, tasks, 2);
        uint64_t seqs[] = {1, 2};
        s_client_results (&client, seqs, 2, __LINE__);
        for (int i = 1; i <= 2; i++) {
            uint64_t pid = s_result_pid (&client.value[i]);
            bool known = false;
            for (int k = 0; k < npids; k++)
                known = known || pids[k] == pid;
            if (!known)
                pids[npids++] = pid;
        }
        s_client_stop (&client);
        if (round == 0)
            s_stop_clean (broker); /* it says BYE to the workers */
        else if (round == 1)
            CHECK (dp_test_stop (broker, SIGKILL, 5000) != -1); /* it says nothing */
        if (round < 2) {
            char tag[16];
            snprintf (tag, sizeof tag, "broker%d", round + 2);
            broker = s_broker (endpoint, tag);
        }
    }
    /*  The same two processes served every broker: they reconnected. */
    CHECK (npids <= 2);
    msgpack_sbuffer_destroy (&nil.sbuf);
    s_stop_clean (workers);
    s_stop_clean (broker);
}

/*  A supervisor killed outright (SIGKILL: no chance to stop its workers)
    takes its worker processes with it, the busy one included: they say BYE
    and end within a few seconds instead of serving on unsupervised. A new
    supervisor then runs exactly its own --procs processes. */
static void
s_case_supervisor_killed (void)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    pid_t first = dp_test_workers_logged (broker.ipc, 2, NULL);
    client_t client;
    s_client_start (&client, broker.tcp);
    workers_wait_t two = {&client, 2};
    CHECK (dp_test_wait_until (s_has_workers, &two, WAIT_MS));
    pack_t nap;
    s_pack_init (&nap);
    msgpack_pack_int (&nap.pk, 60);
    task_t task = {1, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0, 0};
    s_client_submit (&client, &task, 1);
    counter_wait_t running = {&client, "inflight", 1};
    CHECK (dp_test_wait_until (s_counter_is, &running, WAIT_MS));
    pid_t orphans[8];
    int count = s_children_of (first, orphans, 8);
    CHECK_EQ_INT (count, 2);

    CHECK (dp_test_stop (first, SIGKILL, 5000) != -1);
    s_check_gone (orphans, count, __LINE__);
    /*  They left with a BYE: the broker forgot them and has the task back. */
    counter_wait_t none = {&client, "inflight", 0};
    CHECK (dp_test_wait_until (s_counter_is, &none, WAIT_MS));
    CHECK (dp_test_wait_until (s_no_workers, &client, WAIT_MS));

    pid_t second = dp_test_workers_logged (broker.ipc, 2, NULL);
    CHECK (dp_test_wait_until (s_has_workers, &two, WAIT_MS));
    CHECK (dp_test_wait_until (s_counter_is, &running, WAIT_MS));
    pid_t pids[8];
    CHECK_EQ_INT (s_children_of (second, pids, 8), 2);
    CHECK_EQ_INT (s_client_workers (&client), 2);
    msgpack_sbuffer_destroy (&nap.sbuf);
    s_stop_clean (second);
    s_client_stop (&client);
}

/*  The same while the worker processes run a long initializer (the
    built-in sleep, 60 s), when SIGTERM waits blocked for the I/O thread:
    they die with the supervisor all the same. */
static void
s_case_supervisor_killed_in_initializer (void)
{
    const char *extra[] = {"--initializer", "sleep", "--initargs", "60", NULL};
    pid_t supervisor = dp_test_workers_logged (dp_test_ipc ("nobroker"), 2, extra);
    pid_t orphans[8];
    int count = 0;
    int64_t until = dp_test_now_ms () + WAIT_MS;
    while ((count = s_children_of (supervisor, orphans, 8)) < 2 && dp_test_now_ms () < until)
        dp_test_sleep_ms (10);
    CHECK_EQ_INT (count, 2);
    CHECK (dp_test_stop (supervisor, SIGKILL, 5000) != -1);
    s_check_gone (orphans, count, __LINE__);
}

/*  Arguments in payload frames (PROTOCOL.md 3) through dpool-worker: its
    task thread takes them from the frame on its lane, and sends a large
    value back in a frame of its own, which reaches the client as one. A
    timed job's result goes through the I/O thread, which carries no
    payload frames: its value comes inline. A chunk's calls may come
    framed too. */
static void
s_case_payload_frames (void)
{
    enum { BIG = 64 * 1024, TASKS = 7 };
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    pid_t workers = dp_test_workers_logged (broker.ipc, 2, NULL);
    client_t client;
    s_client_start (&client, broker.tcp);
    counter_wait_t lanes = {&client, "worker_lanes", 2};
    CHECK (dp_test_wait_until (s_counter_is, &lanes, WAIT_MS));
    char *big = (char *)malloc (BIG + 5);
    CHECK (big);
    big[0] = (char)0xc6; /* bin32 of BIG bytes */
    big[1] = 0;
    big[2] = (char)(BIG >> 16);
    big[3] = (char)(BIG >> 8);
    big[4] = 0;
    for (int i = 0; i < BIG; i++)
        big[5 + i] = (char)(i * 7);
    static const char chunk[] = {(char)0x92, 0x01, 0x02}; /* two calls */
    /*  The timed job goes last, alone: the results held with its own would
        go through the I/O thread too. */
    task_t tasks[TASKS] = {
        {1, "echo", big, BIG + 5, 0, 0, 0},         {2, "echo", big, BIG + 5, 0, 0, 0},
        {3, "echo", big, BIG + 5, 0, 0, 0},         {4, "echo", big, BIG + 5, 0, 0, 0},
        {5, "echo", chunk, 3, 0, 0, DP_TASK_CHUNK}, {6, "echo", big, BIG + 5, 60000, 0, 0},
        {7, "echo", big, BIG + 5, 0, 0, 0},
    };
    s_client_submit_framed (&client, tasks, 5);
    uint64_t seqs[TASKS] = {1, 2, 3, 4, 5, 6, 7};
    s_client_results (&client, seqs, 5, __LINE__);
    /*  The timed one, then one more on each worker: a worker goes on
        framing after a batch that went inline. */
    s_client_submit_framed (&client, &tasks[5], 1);
    s_client_results (&client, seqs, 6, __LINE__);
    s_client_submit_framed (&client, &tasks[6], 1);
    s_client_results (&client, seqs, 7, __LINE__);
    for (uint64_t seq = 1; seq <= TASKS; seq++) {
        CHECK_EQ_INT (client.code[seq], 0);
        if (seq == 5) {
            CHECK (client.value[5].type == MSGPACK_OBJECT_ARRAY);
            CHECK_EQ_INT (client.value[5].via.array.size, 2);
            continue;
        }
        CHECK_EQ_INT (client.size[seq], BIG + 5);
        CHECK (memcmp (client.bytes[seq], big, BIG + 5) == 0);
        CHECK (client.framed[seq] == (seq != 6));
    }
    CHECK_EQ_INT (s_client_status (&client, "done"), TASKS);
    free (big);
    s_stop_clean (workers);
    s_client_stop (&client);
}

static const dp_test_case_t s_cases[] = {
    {"worker_broker_tasks", s_case_tasks},
    {"worker_broker_payload_frames", s_case_payload_frames},
    {"worker_broker_timeout", s_case_timeout},
    {"worker_broker_sigterm_requeues", s_case_sigterm_requeues},
    {"worker_broker_broker_restart", s_case_broker_restart},
    {"worker_broker_supervisor_killed", s_case_supervisor_killed},
    {"worker_broker_supervisor_killed_in_initializer", s_case_supervisor_killed_in_initializer},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 90);
}

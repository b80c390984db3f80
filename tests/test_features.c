/*  test_features.c - Pool's initializer and maxtasksperchild, and task
    progress, against real processes: embedded pools, dpool-worker (with
    tests/dpool_test_plugin for its --initializer), and this program serving
    its own functions to a dpool-broker (test_features serve EP PROCS ...).

        test_features CASE

    Every case waits on conditions with deadlines and stops what it
    started, by pid.
*/
#define _GNU_SOURCE
#include "dp_proto.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <czmq.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef DPOOL_TEST_PLUGIN
#define DPOOL_TEST_PLUGIN "dpool_test_plugin.so"
#endif

#define WAIT_MS     20000 /* for a condition, or a task */
#define MAX_REPORTS 64
#define CHATTY_MS   400  /* a chatty task reports for this long */
#define BACKOFF_MS  3000 /* how long failing initializers are watched */

/*  ---------------------------------------------------------------------------
    Task functions of this program.
*/
/*  test.init and test.state come from the test plugin, compiled into this
    program as well (tests/queue.cmake): the same functions serve embedded
    pools and dpool-worker --plugin. */
int
dpool_plugin_init (void);

/*  [n, ms]: reports i of n for i = 1..n, ms apart; returns n. */
static int
s_progress (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size != 2)
        return dpool_task_fail (task, "wants [n, ms]");
    uint64_t n = args->via.array.ptr[0].via.u64, ms = args->via.array.ptr[1].via.u64;
    for (uint64_t i = 1; i <= n; i++) {
        dp_test_sleep_ms ((int)ms);
        if (dpool_task_progress (task, i, n))
            return dpool_task_fail (task, "progress failed");
    }
    return msgpack_pack_uint64 (result, n);
}

/*  Reports as fast as it can for CHATTY_MS, the last report being
    [count, count]; returns the count. */
static int
s_chatty (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)args;
    int64_t until = dp_now_ms () + CHATTY_MS;
    uint64_t count = 0;
    while (dp_now_ms () < until)
        dpool_task_progress (task, ++count, UINT32_MAX);
    dpool_task_progress (task, count, count);
    /*  Not a valid report: refused, and nothing is sent. */
    if (dpool_task_progress_value (task, "\x92\x01", 2) != -1)
        return dpool_task_fail (task, "an incomplete report was taken");
    return msgpack_pack_uint64 (result, count);
}

/*  [done, total, queue]: reports done of total, then waits for a value on
    the queue (so that it runs while the test looks); returns the value. */
static int
s_report_and_wait (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_ARRAY || args->via.array.size != 3 ||
        args->via.array.ptr[2].type != MSGPACK_OBJECT_STR)
        return dpool_task_fail (task, "wants [done, total, queue]");
    char name[256];
    const msgpack_object *q = &args->via.array.ptr[2];
    snprintf (name, sizeof name, "%.*s", (int)q->via.str.size, q->via.str.ptr);
    dpool_task_progress (task, args->via.array.ptr[0].via.u64, args->via.array.ptr[1].via.u64);
    dpool_queue_t *queue = dpool_task_queue_open (task, name, 0);
    msgpack_object value;
    if (!queue || dpool_queue_get (queue, WAIT_MS, &value))
        return dpool_task_fail (task, "get: %s", dpool_strerror (dpool_errno ()));
    return msgpack_pack_object (result, value);
}

static void
s_register (void)
{
    CHECK (dpool_plugin_init () == 0);
    CHECK (dpool_register ("f.progress", s_progress, NULL) == 0);
    CHECK (dpool_register ("f.chatty", s_chatty, NULL) == 0);
    CHECK (dpool_register ("f.report_and_wait", s_report_and_wait, NULL) == 0);
}

/*  ---------------------------------------------------------------------------
    Helpers.
*/
static dp_test_broker_t s_broker;

static const char *
s_self (void)
{
    static char self[PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", self, sizeof self - 1);
    CHECK (len > 0);
    self[len] = 0;
    return self;
}

static dpool_pool_t *
s_connect (int workers)
{
    zsys_handler_set (NULL);
    dpool_pool_t *pool = dpool_pool_connect (s_broker.tcp);
    CHECK (pool);
    if (workers > 0)
        dp_test_wait_workers (pool, workers, WAIT_MS);
    return pool;
}

/*  Packs count objects back to back: nil each (map arguments). */
static void
s_pack_nils (msgpack_sbuffer *sbuf, int count)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    for (int i = 0; i < count; i++)
        msgpack_pack_nil (&pk);
}

/*  Maps fn over count nils, one task each, and checks that every call's
    value is [pid, 1, arg] (the initializer ran once in its process, before
    it, with arg). Returns how many distinct processes ran them. */
static int
s_check_state (dpool_pool_t *pool, const char *fn, int count, const char *arg, int max_per_pid)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    s_pack_nils (&args, count);
    dpool_result_t *map = dpool_pool_map (pool, fn, args.data, args.size, 1, NULL);
    CHECK (map);
    if (!dpool_result_successful (map))
        dp_test_fail (__FILE__, __LINE__, "%s failed: %s", fn, dpool_result_error (map));
    int pids[256], uses[256], npids = 0;
    for (int i = 0; i < count; i++) {
        msgpack_object value;
        CHECK (dpool_result_item (map, (size_t)i, &value) == 0);
        CHECK (value.type == MSGPACK_OBJECT_ARRAY && value.via.array.size == 3);
        int pid = (int)value.via.array.ptr[0].via.u64;
        if (value.via.array.ptr[1].via.u64 != 1)
            dp_test_fail (__FILE__, __LINE__, "call %d: the initializer ran %llu times in %d", i,
                          (unsigned long long)value.via.array.ptr[1].via.u64, pid);
        CHECK (dp_test_is_str (&value.via.array.ptr[2], arg));
        int at = 0;
        while (at < npids && pids[at] != pid)
            at++;
        if (at == npids) {
            CHECK (npids < 256);
            pids[npids] = pid;
            uses[npids++] = 0;
        }
        if (++uses[at] > max_per_pid)
            dp_test_fail (__FILE__, __LINE__, "process %d ran %d tasks, at most %d expected", pid,
                          uses[at], max_per_pid);
    }
    dpool_result_destroy (&map);
    msgpack_sbuffer_destroy (&args);
    return npids;
}

/*  The text of a file in the test directory ("" if none; caller frees). */
static char *
s_file (const char *name)
{
    char *text = dp_test_read_file (dp_test_path (name));
    return text ? text : strdup ("");
}

static int
s_count (const char *text, const char *needle)
{
    int count = 0;
    for (const char *at = strstr (text, needle); at; at = strstr (at + 1, needle))
        count++;
    return count;
}

/*  ---------------------------------------------------------------------------
    Initializer.
*/

/*  An embedded pool's initializer runs once in each worker process, before
    its first task, with its arguments. */
static void
s_case_initializer_embedded (void)
{
    s_register ();
    zsys_handler_set (NULL);
    dpool_config_t config;
    dpool_config_init (&config);
    config.procs = 2;
    config.initializer = "test.init";
    config.initargs = "\xa5"
                      "hello";
    config.initargs_size = 6;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    int npids = s_check_state (pool, "test.state", 20, "hello", 20);
    CHECK (npids >= 1 && npids <= 2);
    dpool_pool_destroy (&pool);
    /*  An initializer that is not registered, or bad arguments, are
        refused at once. */
    config.initializer = "no.such.function";
    CHECK (dpool_pool_new_config (&config) == NULL);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
    config.initializer = "test.init";
    config.initargs = "\x92\x01";
    config.initargs_size = 2;
    CHECK (dpool_pool_new_config (&config) == NULL);
    CHECK_EQ_INT (dpool_errno (), DPOOL_EINVAL);
}

/*  dpool-worker --initializer with --initargs (a plugin's function). */
static void
s_case_initializer_dpool_worker (void)
{
    dp_test_broker_start (&s_broker, NULL);
    const char *extra[] = {"--plugin",  DPOOL_TEST_PLUGIN, "--initializer",
                           "test.init", "--initargs",      "\"from the command line\"",
                           NULL};
    dp_test_workers_start (s_broker.tcp, 2, extra);
    dpool_pool_t *pool = s_connect (2);
    int npids = s_check_state (pool, "test.state", 20, "from the command line", 20);
    CHECK (npids >= 1 && npids <= 2);
    dpool_pool_destroy (&pool);
    /*  Mistakes are caught before any process starts. */
    const char *unknown[] = {dp_test_worker_bin, "--connect",     s_broker.tcp,
                             "--initializer",    "no.such.thing", NULL};
    pid_t pid = dp_test_spawn ("unknown", (char *const *)unknown);
    int status = dp_test_wait_exit (pid, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 1);
    char *err = s_file ("unknown.err");
    CHECK (strstr (err, "no function named 'no.such.thing'"));
    free (err);
    const char *bad[] = {dp_test_worker_bin, "--connect", s_broker.tcp, "--initializer", "echo",
                         "--initargs",       "{oops",     NULL};
    pid = dp_test_spawn ("bad", (char *const *)bad);
    status = dp_test_wait_exit (pid, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 2);
    err = s_file ("bad.err");
    CHECK (strstr (err, "invalid --initargs"));
    free (err);
}

/*  dpool_worker_serve_config: a program serving its own functions. */
static void
s_case_initializer_serve_config (void)
{
    dp_test_broker_start (&s_broker, NULL);
    char *argv[] = {(char *)s_self (), "serve",  s_broker.tcp, "2",
                    "test.init",       "served", "0",          NULL};
    dp_test_spawn ("served", argv);
    dpool_pool_t *pool = s_connect (2);
    int npids = s_check_state (pool, "test.state", 10, "served", 10);
    CHECK (npids >= 1 && npids <= 2);
    dpool_pool_destroy (&pool);
}

typedef struct {
    dpool_pool_t *pool;
    const char *file;
    int needed;
} s_log_wait_t;

static bool
s_log_has (void *arg)
{
    s_log_wait_t *wait = (s_log_wait_t *)arg;
    char *text = s_file (wait->file);
    int count = s_count (text, "initializer 'test.init' failed: told to fail");
    free (text);
    return count >= wait->needed;
}

/*  A failing initializer: logged clearly, no task taken (tasks wait, as
    with Pool), and the processes restarted with a growing delay, not in a
    loop. */
static void
s_case_initializer_failure_backs_off (void)
{
    dp_test_broker_start (&s_broker, NULL);
    const char *extra[] = {"--plugin",  DPOOL_TEST_PLUGIN, "--initializer",
                           "test.init", "--initargs",      "\"fail\"",
                           NULL};
    pid_t failing = dp_test_workers_start (s_broker.tcp, 2, extra);
    dpool_pool_t *pool = s_connect (0);
    dpool_result_t *task = dpool_pool_apply_async (pool, "echo", "\x07", 1, NULL);
    CHECK (task);
    s_log_wait_t wait = {pool, "workers1.err", 2};
    CHECK (dp_test_wait_until (s_log_has, &wait, WAIT_MS));
    int64_t since = dp_now_ms ();
    char *before = s_file ("workers1.err");
    int first = s_count (before, "failed: told to fail");
    free (before);
    /*  Watch for a while, with a deadline: no worker registers, the task
        waits, and restarts slow down (without backoff two processes
        failing at once would log hundreds of lines here). */
    while (dp_now_ms () - since < BACKOFF_MS) {
        void *data;
        size_t size;
        CHECK (dpool_pool_status (pool, 5000, &data, &size) == 0);
        free (data);
        CHECK_EQ_INT (dpool_pool_workers (pool), 0);
        CHECK (!dpool_result_ready (task));
        dp_test_sleep_ms (100);
    }
    char *after = s_file ("workers1.err");
    int failures = s_count (after, "failed: told to fail") - first;
    CHECK (strstr (after, "this worker process exits without taking a task"));
    free (after);
    fprintf (stderr, "initializer failures in %d ms: %d\n", BACKOFF_MS, failures);
    CHECK (failures >= 1 && failures <= 20);
    /*  A worker without the initializer takes the waiting task. */
    pid_t good = dp_test_workers_start (s_broker.tcp, 1, NULL);
    CHECK_EQ_INT (dpool_result_wait (task, WAIT_MS), 0);
    CHECK (dpool_result_successful (task));
    dpool_result_destroy (&task);
    dpool_pool_destroy (&pool);
    int status = dp_test_stop (failing, SIGTERM, 10000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    dp_test_stop (good, SIGTERM, 10000);
}

/*  ---------------------------------------------------------------------------
    maxtasksperchild.
*/

/*  dpool-worker --max-tasks 3: a process is replaced after 3 tasks, and no
    task is lost or fails. */
static void
s_case_max_tasks_dpool_worker (void)
{
    dp_test_broker_start (&s_broker, NULL);
    const char *extra[] = {"--max-tasks", "3", NULL};
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, extra);
    dpool_pool_t *pool = s_connect (2);
    enum { N = 30 };
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    s_pack_nils (&args, N);
    dpool_result_t *map = dpool_pool_map (pool, "pid", args.data, args.size, 1, NULL);
    CHECK (map && dpool_result_successful (map));
    int pids[N], uses[N], npids = 0;
    for (int i = 0; i < N; i++) {
        msgpack_object value;
        CHECK (dpool_result_item (map, (size_t)i, &value) == 0);
        const msgpack_object *pid = dp_test_map_get (&value, "pid");
        CHECK (pid && pid->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
        int at = 0;
        while (at < npids && pids[at] != (int)pid->via.u64)
            at++;
        if (at == npids) {
            pids[npids] = (int)pid->via.u64;
            uses[npids++] = 0;
        }
        if (++uses[at] > 3)
            dp_test_fail (__FILE__, __LINE__, "process %d ran %d tasks", pids[at], uses[at]);
    }
    CHECK (npids >= N / 3);
    /*  The broker saw every task done once, none failed. */
    void *data;
    size_t size;
    CHECK (dpool_pool_status (pool, 5000, &data, &size) == 0);
    msgpack_unpacked status;
    msgpack_unpacked_init (&status);
    CHECK (msgpack_unpack_next (&status, data, size, NULL) == MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ_INT (dp_test_map_get (&status.data, "done")->via.u64, N);
    CHECK_EQ_INT (dp_test_map_get (&status.data, "failed")->via.u64, 0);
    msgpack_unpacked_destroy (&status);
    free (data);
    dpool_result_destroy (&map);
    dpool_pool_destroy (&pool);
    msgpack_sbuffer_destroy (&args);
    CHECK (dp_test_stop (workers, SIGTERM, 10000) != -1);
    /*  Retirements are not deaths: no backoff was ever needed. */
    char *err = s_file ("workers1.err");
    CHECK (!strstr (err, "keep dying"));
    CHECK (!strstr (err, "killed by signal"));
    free (err);
}

/*  An embedded pool with max_tasks 2 and an initializer: every fresh
    process runs the initializer once, and none runs more than 2 tasks. */
static void
s_case_max_tasks_embedded (void)
{
    s_register ();
    zsys_handler_set (NULL);
    dpool_config_t config;
    dpool_config_init (&config);
    config.procs = 2;
    config.max_tasks = 2;
    config.initializer = "test.init";
    config.initargs = "\xa5"
                      "fresh";
    config.initargs_size = 6;
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    int npids = s_check_state (pool, "test.state", 12, "fresh", 2);
    CHECK (npids >= 6);
    dpool_pool_destroy (&pool);
}

/*  ---------------------------------------------------------------------------
    Progress.
*/
typedef struct {
    pthread_mutex_t mutex;
    uint64_t done[MAX_REPORTS];
    uint64_t total[MAX_REPORTS];
    size_t index[MAX_REPORTS];
    int count;
    bool after_result; /* a report came once the handle was ready */
    int at_result;     /* reports seen when the result came */
    bool result_seen;  /* the result callback ran */
} s_reports_t;

static void
s_on_progress (dpool_result_t *result, size_t index, const msgpack_object *value, void *arg)
{
    s_reports_t *reports = (s_reports_t *)arg;
    pthread_mutex_lock (&reports->mutex);
    if (dpool_result_ready (result))
        reports->after_result = true;
    if (reports->count < MAX_REPORTS && value->type == MSGPACK_OBJECT_ARRAY &&
        value->via.array.size == 2) {
        reports->done[reports->count] = value->via.array.ptr[0].via.u64;
        reports->total[reports->count] = value->via.array.ptr[1].via.u64;
        reports->index[reports->count] = index;
    }
    reports->count++;
    pthread_mutex_unlock (&reports->mutex);
}

static void
s_on_result (dpool_result_t *result, void *arg)
{
    (void)result;
    s_reports_t *reports = (s_reports_t *)arg;
    pthread_mutex_lock (&reports->mutex);
    reports->at_result = reports->count;
    reports->result_seen = true;
    pthread_mutex_unlock (&reports->mutex);
}

static bool
s_result_seen (void *arg)
{
    s_reports_t *reports = (s_reports_t *)arg;
    pthread_mutex_lock (&reports->mutex);
    bool seen = reports->result_seen;
    pthread_mutex_unlock (&reports->mutex);
    return seen;
}

/*  Waits for the result callback (it runs just after the handle is ready)
    and returns a copy of what the callbacks saw; then starts over. */
static s_reports_t
s_reports_take (s_reports_t *reports)
{
    CHECK (dp_test_wait_until (s_result_seen, reports, WAIT_MS));
    pthread_mutex_lock (&reports->mutex);
    s_reports_t copy = *reports;
    reports->count = reports->at_result = 0;
    reports->result_seen = reports->after_result = false;
    pthread_mutex_unlock (&reports->mutex);
    return copy;
}

/*  Progress reports reach the caller's callback in order, the last one
    included, all before the result; a chatty task is rate-limited; a map's
    reports name the call. */
static void
s_case_progress_callbacks (void)
{
    s_register ();
    zsys_handler_set (NULL);
    dpool_pool_t *pool = dpool_pool_new (2);
    CHECK (pool);

    static s_reports_t reports = {.mutex = PTHREAD_MUTEX_INITIALIZER};
    dpool_call_t call = {.callback = s_on_result, .progress = s_on_progress, .arg = &reports};
    dpool_result_t *result = dpool_pool_apply (pool, "f.progress", "\x92\x05\xcc\x96", 4, &call);
    CHECK (result && dpool_result_successful (result));
    s_reports_t seen = s_reports_take (&reports);
    fprintf (stderr, "progress: %d reports of 5\n", seen.count);
    CHECK (seen.count >= 2 && seen.count <= 5);
    CHECK (!seen.after_result);
    CHECK_EQ_INT (seen.at_result, seen.count);
    for (int i = 0; i < seen.count; i++) {
        CHECK_EQ_INT (seen.total[i], 5);
        CHECK_EQ_INT (seen.index[i], 0);
        if (i > 0)
            CHECK (seen.done[i] > seen.done[i - 1]);
    }
    CHECK_EQ_INT (seen.done[seen.count - 1], 5); /* the last one, flushed */
    dpool_result_destroy (&result);

    /*  A chatty task: hundreds of thousands of reports, a handful sent. */
    result = dpool_pool_apply (pool, "f.chatty", "\xc0", 1, &call);
    CHECK (result && dpool_result_successful (result));
    msgpack_object value;
    CHECK (dpool_result_get (result, 0, &value) == 0);
    seen = s_reports_take (&reports);
    fprintf (stderr, "chatty: %llu reports made, %d received\n", (unsigned long long)value.via.u64,
             seen.count);
    CHECK (value.via.u64 > 1000);
    CHECK (seen.count >= 2 && seen.count <= CHATTY_MS / DP_PROGRESS_MS + 3);
    CHECK_EQ_INT (seen.done[seen.count - 1], value.via.u64);
    CHECK_EQ_INT (seen.total[seen.count - 1], value.via.u64);
    CHECK (!seen.after_result);
    CHECK_EQ_INT (seen.at_result, seen.count);
    dpool_result_destroy (&result);

    /*  A map: each report names the call of its task. */
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    for (int i = 0; i < 4; i++) {
        msgpack_pack_array (&pk, 2);
        msgpack_pack_int (&pk, 2);
        msgpack_pack_int (&pk, 120);
    }
    result = dpool_pool_map (pool, "f.progress", args.data, args.size, 1, &call);
    CHECK (result && dpool_result_successful (result));
    seen = s_reports_take (&reports);
    bool calls[4] = {false};
    for (int i = 0; i < seen.count && i < MAX_REPORTS; i++) {
        CHECK (seen.index[i] < 4);
        calls[seen.index[i]] = true;
    }
    for (int i = 0; i < 4; i++)
        CHECK (calls[i]);
    CHECK_EQ_INT (seen.at_result, seen.count);
    dpool_result_destroy (&result);
    msgpack_sbuffer_destroy (&args);
    dpool_pool_destroy (&pool);
}

typedef struct {
    dpool_pool_t *pool;
} s_running_t;

/*  True once the broker's status lists f.report_and_wait running with the
    progress [3, 10]. */
static bool
s_shows_progress (void *arg)
{
    dpool_pool_t *pool = ((s_running_t *)arg)->pool;
    void *data;
    size_t size;
    if (dpool_pool_status (pool, 1000, &data, &size))
        return false;
    msgpack_zone *zone = msgpack_zone_new (MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_object status;
    size_t offset = 0;
    bool found = false;
    if (msgpack_unpack (data, size, &offset, zone, &status) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *running = dp_test_map_get (&status, "running");
        for (uint32_t i = 0; running && i < running->via.array.size; i++) {
            const msgpack_object *task = &running->via.array.ptr[i];
            const msgpack_object *fn = dp_test_map_get (task, "fn");
            const msgpack_object *progress = dp_test_map_get (task, "progress");
            found |= fn && dp_test_is_str (fn, "f.report_and_wait") && progress &&
                     progress->type == MSGPACK_OBJECT_ARRAY && progress->via.array.size == 2 &&
                     progress->via.array.ptr[0].via.u64 == 3 &&
                     progress->via.array.ptr[1].via.u64 == 10;
        }
    }
    msgpack_zone_free (zone);
    free (data);
    return found;
}

/*  The broker's status, and `dpool status`, show a running task's
    progress. */
static void
s_case_status_shows_progress (void)
{
    dp_test_broker_start (&s_broker, NULL);
    char *argv[] = {(char *)s_self (), "serve", s_broker.tcp, "1", "", "", "0", NULL};
    dp_test_spawn ("served", argv);
    dpool_pool_t *pool = s_connect (1);
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 3);
    msgpack_pack_int (&pk, 3);
    msgpack_pack_int (&pk, 10);
    msgpack_pack_str_with_body (&pk, "release", 7);
    dpool_result_t *result =
        dpool_pool_apply_async (pool, "f.report_and_wait", args.data, args.size, NULL);
    CHECK (result);
    s_running_t running = {pool};
    CHECK (dp_test_wait_until (s_shows_progress, &running, WAIT_MS));
    const char *cli[] = {dp_test_cli_bin, "status", "--connect", s_broker.tcp, NULL};
    pid_t pid = dp_test_spawn ("status", (char *const *)cli);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    char *out = s_file ("status.out");
    if (!strstr (out, "f.report_and_wait") || !strstr (out, "3/10 (30%)") ||
        !strstr (out, "running  1"))
        dp_test_fail (__FILE__, __LINE__, "dpool status shows no progress:\n%s", out);
    free (out);
    dpool_queue_t *release = dpool_queue_open (pool, "release", 0);
    CHECK (release && dpool_queue_put (release, "\x2a", 1, 0) == 0);
    msgpack_object value;
    CHECK (dpool_result_get (result, WAIT_MS, &value) == 0 && value.via.u64 == 42);
    dpool_queue_destroy (&release);
    dpool_result_destroy (&result);
    dpool_pool_destroy (&pool);
    msgpack_sbuffer_destroy (&args);
}

static const dp_test_case_t s_cases[] = {
    {"initializer_runs_once_per_process_before_first_task", s_case_initializer_embedded},
    {"initializer_dpool_worker_option_with_initargs", s_case_initializer_dpool_worker},
    {"initializer_dpool_worker_serve_config", s_case_initializer_serve_config},
    {"initializer_failure_logged_no_task_taken_restart_backoff",
     s_case_initializer_failure_backs_off},
    {"max_tasks_dpool_worker_replaces_processes_no_task_lost", s_case_max_tasks_dpool_worker},
    {"max_tasks_embedded_fresh_processes_run_initializer", s_case_max_tasks_embedded},
    {"progress_callbacks_in_order_before_result_rate_limited", s_case_progress_callbacks},
    {"progress_status_shows_running_task_progress", s_case_status_shows_progress},
};

int
main (int argc, char *argv[])
{
    /*  serve EP PROCS INITIALIZER INITARG MAX_TASKS: this program as a
        worker, through dpool_worker_serve_config. */
    if (argc == 7 && strcmp (argv[1], "serve") == 0) {
        s_register ();
        msgpack_sbuffer initargs;
        msgpack_sbuffer_init (&initargs);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &initargs, msgpack_sbuffer_write);
        msgpack_pack_str_with_body (&pk, argv[5], strlen (argv[5]));
        dpool_serve_config_t config = {.endpoint = argv[2],
                                       .procs = atoi (argv[3]),
                                       .initializer = *argv[4] ? argv[4] : NULL,
                                       .initargs = *argv[4] ? initargs.data : NULL,
                                       .initargs_size = *argv[4] ? initargs.size : 0,
                                       .max_tasks = atoi (argv[6])};
        int rc = dpool_worker_serve_config (&config);
        msgpack_sbuffer_destroy (&initargs);
        return rc == 0 ? 0 : 1;
    }
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 90);
}

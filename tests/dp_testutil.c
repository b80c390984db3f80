/*  dp_testutil.c - what dpool's tests share. */
#define _GNU_SOURCE
#include "dp_testutil.h"

#include "dpool.h"

#include <czmq.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef DPOOL_BROKER_BIN
#define DPOOL_BROKER_BIN "dpool-broker"
#endif
#ifndef DPOOL_WORKER_BIN
#define DPOOL_WORKER_BIN "dpool-worker"
#endif
#ifndef DPOOL_CLI_BIN
#define DPOOL_CLI_BIN "dpool"
#endif

const char *dp_test_broker_bin = DPOOL_BROKER_BIN;
const char *dp_test_worker_bin = DPOOL_WORKER_BIN;
const char *dp_test_cli_bin = DPOOL_CLI_BIN;

#define MAX_CHILDREN    256
#define DIR_NAME_MAX    32
#define MAX_TRACKED     16
#define BROKER_START_MS 30000
#define STOP_GRACE_MS   5000
#define WORKERS_WAIT_MS 15000

static char s_dir[1024];
static char s_name[128] = "test";
static pid_t s_children[MAX_CHILDREN];
static int s_nchildren;
static pid_t s_main_pid;

int64_t
dp_test_now_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
dp_test_sleep_ms (int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep (&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*  Kills every child still running; used at exit and on failure. Children
    were made process-group leaders, so their own children go too. */
static void
s_kill_children (void)
{
    if (getpid () != s_main_pid)
        return;
    /*  SIGTERM first, so that programs (and valgrind around them) can end
        cleanly; SIGKILL whatever is left after the grace period. */
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] > 0)
            kill (s_children[i], SIGTERM);
    int64_t deadline = dp_test_now_ms () + 3000;
    for (int i = 0; i < s_nchildren; i++) {
        while (s_children[i] > 0 && dp_test_now_ms () < deadline) {
            if (waitpid (s_children[i], NULL, WNOHANG) != 0)
                s_children[i] = -s_children[i]; /* reaped: remember the group */
            else
                dp_test_sleep_ms (5);
        }
    }
    for (int i = 0; i < s_nchildren; i++) {
        pid_t pid = s_children[i] > 0 ? s_children[i] : -s_children[i];
        if (pid == 0)
            continue;
        kill (-pid, SIGKILL);
        if (s_children[i] > 0) {
            kill (pid, SIGKILL);
            waitpid (pid, NULL, 0);
        }
        s_children[i] = 0;
    }
}

static void
s_remove_dir (void)
{
    if (getpid () != s_main_pid || !s_dir[0] || getenv ("DPOOL_KEEP_TMP"))
        return;
    char command[1100];
    snprintf (command, sizeof command, "rm -rf '%s'", s_dir);
    int rc = system (command);
    (void)rc;
}

static void
s_at_exit (void)
{
    s_kill_children ();
    s_remove_dir ();
}

void
dp_test_fail (const char *file, int line, const char *format, ...)
{
    char message[2048];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    fprintf (stderr, "FAIL %s: %s:%d: %s\n", s_name, file, line, message);
    fflush (stderr);
    /*  Now, not at exit: exit handlers registered later (CZMQ's) run first
        and may abort before ours. */
    s_kill_children ();
    if (getenv ("DPOOL_KEEP_TMP"))
        fprintf (stderr, "test files kept in %s\n", s_dir);
    exit (1);
}

static void
s_on_alarm (int sig)
{
    (void)sig;
    static const char text[] = "FAIL: test deadline passed\n";
    ssize_t rc = write (STDERR_FILENO, text, sizeof text - 1);
    (void)rc;
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] > 0) {
            kill (-s_children[i], SIGKILL);
            kill (s_children[i], SIGKILL);
        }
    _exit (1);
}

void
dp_test_begin (const char *name, int seconds)
{
    snprintf (s_name, sizeof s_name, "%s", name);
    s_main_pid = getpid ();
    const char *base = getenv ("TMPDIR");
    /*  The name is cut short in the directory: ipc:// paths inside it must
        stay within the 107 bytes of a socket address. */
    snprintf (s_dir, sizeof s_dir, "%s/dpool-%.*s-XXXXXX", base ? base : "/tmp", DIR_NAME_MAX,
              name);
    if (!mkdtemp (s_dir)) {
        fprintf (stderr, "FAIL %s: mkdtemp: %s\n", name, strerror (errno));
        exit (1);
    }
    atexit (s_at_exit);
    signal (SIGALRM, s_on_alarm);
    signal (SIGPIPE, SIG_IGN);
    alarm ((unsigned)seconds);
}

static void
s_list (const dp_test_case_t *cases, size_t count)
{
    for (size_t i = 0; i < count; i++)
        printf ("%s%s%s%s\n", cases[i].name, cases[i].run_on ? " tcp ipc" : "",
                cases[i].valgrind ? " valgrind=" : "", cases[i].valgrind ? cases[i].valgrind : "");
}

static void
s_usage (const char *program, const dp_test_case_t *cases, size_t count)
{
    fprintf (stderr, "usage: %s --list | CASE [tcp|ipc]\ncases:\n", program);
    for (size_t i = 0; i < count; i++)
        fprintf (stderr, "  %s%s\n", cases[i].name, cases[i].run_on ? " tcp|ipc" : "");
    exit (2);
}

const dp_test_case_t *
dp_test_select (int argc, char *argv[], const dp_test_case_t *cases, size_t count, int seconds,
                const char **transport)
{
    assert (transport);
    if (argc == 2 && strcmp (argv[1], "--list") == 0) {
        s_list (cases, count);
        exit (0);
    }
    const dp_test_case_t *found = NULL;
    for (size_t i = 0; argc >= 2 && argc <= 3 && i < count; i++)
        if (strcmp (cases[i].name, argv[1]) == 0)
            found = &cases[i];
    if (!found)
        s_usage (argv[0], cases, count);
    *transport = NULL;
    char name[128];
    snprintf (name, sizeof name, "%s", found->name);
    if (found->run_on) {
        *transport = argc == 3 ? argv[2] : "tcp";
        if (strcmp (*transport, "tcp") != 0 && strcmp (*transport, "ipc") != 0)
            s_usage (argv[0], cases, count);
        snprintf (name, sizeof name, "%s_%s", found->name, *transport);
    } else if (argc == 3)
        s_usage (argv[0], cases, count);
    dp_test_begin (name, found->seconds ? found->seconds : seconds);
    return found;
}

void
dp_test_run (const dp_test_case_t *self, const char *transport)
{
    assert (self);
    if (self->run_on)
        self->run_on (transport);
    else
        self->run ();
}

int
dp_test_main (int argc, char *argv[], const dp_test_case_t *cases, size_t count, int seconds)
{
    const char *transport;
    const dp_test_case_t *found = dp_test_select (argc, argv, cases, count, seconds, &transport);
    dp_test_run (found, transport);
    return 0;
}

const char *
dp_test_dir (void)
{
    return s_dir;
}

const char *
dp_test_path (const char *name)
{
    static char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/%s", s_dir, name);
    return path;
}

const char *
dp_test_ipc (const char *name)
{
    static char endpoint[2048];
    snprintf (endpoint, sizeof endpoint, "ipc://%s/%s.ipc", s_dir, name);
    return endpoint;
}

pid_t
dp_test_spawn (const char *tag, char *const argv[])
{
    /*  A slot of a child already waited for (forgotten: 0) is taken
        again, so a test may run any number of short commands. */
    int slot = 0;
    while (slot < s_nchildren && s_children[slot] != 0)
        slot++;
    if (slot == MAX_CHILDREN)
        dp_test_fail (__FILE__, __LINE__, "too many child processes");
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0)
        dp_test_fail (__FILE__, __LINE__, "fork: %s", strerror (errno));
    if (pid == 0) {
        setpgid (0, 0);
        if (tag) {
            char path[PATH_MAX];
            snprintf (path, sizeof path, "%s/%s.out", s_dir, tag);
            int out = open (path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            snprintf (path, sizeof path, "%s/%s.err", s_dir, tag);
            int err = open (path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (out >= 0)
                dup2 (out, STDOUT_FILENO);
            if (err >= 0)
                dup2 (err, STDERR_FILENO);
        }
        alarm (0);
        execvp (argv[0], argv);
        fprintf (stderr, "exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    setpgid (pid, pid);
    s_children[slot] = pid;
    if (slot == s_nchildren)
        s_nchildren++;
    return pid;
}

static void
s_forget (pid_t pid)
{
    for (int i = 0; i < s_nchildren; i++)
        if (s_children[i] == pid)
            s_children[i] = 0;
}

int
dp_test_wait_exit (pid_t pid, int timeout_ms)
{
    int64_t deadline = dp_test_now_ms () + timeout_ms;
    int status;
    for (;;) {
        pid_t rc = waitpid (pid, &status, WNOHANG);
        if (rc == pid) {
            s_forget (pid);
            return status;
        }
        if (rc < 0 || dp_test_now_ms () >= deadline)
            return -1;
        dp_test_sleep_ms (5);
    }
}

int
dp_test_stop (pid_t pid, int sig, int timeout_ms)
{
    kill (pid, sig);
    int status = dp_test_wait_exit (pid, timeout_ms);
    if (status == -1) {
        kill (-pid, SIGKILL);
        kill (pid, SIGKILL);
        waitpid (pid, NULL, 0);
        s_forget (pid);
    }
    return status;
}

bool
dp_test_wait_until (bool (*cond) (void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = dp_test_now_ms () + timeout_ms;
    for (;;) {
        if (cond (arg))
            return true;
        if (dp_test_now_ms () >= deadline)
            return cond (arg);
        dp_test_sleep_ms (5);
    }
}

char *
dp_test_read_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return NULL;
    size_t cap = 4096, len = 0;
    char *data = malloc (cap);
    size_t n;
    while (data && (n = fread (data + len, 1, cap - len - 1, file)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            char *bigger = realloc (data, cap);
            if (!bigger) {
                free (data);
                data = NULL;
            } else
                data = bigger;
        }
    }
    fclose (file);
    if (data)
        data[len] = 0;
    return data;
}

static bool
s_file_has_lines (void *arg)
{
    char *text = dp_test_read_file ((const char *)arg);
    bool ready = text && strstr (text, "ipc://") && strstr (text, "tcp://");
    free (text);
    return ready;
}

/*  Starts dpool-broker (under DPOOL_TEST_BROKER_WRAP, if set) bound to tcp
    and ipc plus extra arguments, writing what it bound to the file
    tag.endpoints, and waits until it has bound both. Returns the pid and
    the file's text (caller frees). */
static pid_t
s_broker_spawn (const char *tag, const char *tcp, const char *ipc, const char *const *extra,
                char **endpoints)
{
    char endpoint_file[PATH_MAX];
    snprintf (endpoint_file, sizeof endpoint_file, "%s/%s.endpoints", s_dir, tag);
    const char *argv[64];
    int argc = 0;
    /*  DPOOL_TEST_BROKER_WRAP runs the broker under a tool, e.g.
        "valgrind --leak-check=full --error-exitcode=99". */
    static char wrap[512];
    const char *wrap_env = getenv ("DPOOL_TEST_BROKER_WRAP");
    if (wrap_env && *wrap_env) {
        snprintf (wrap, sizeof wrap, "%s", wrap_env);
        for (char *save = NULL, *word = strtok_r (wrap, " ", &save); word && argc < 16;
             word = strtok_r (NULL, " ", &save))
            argv[argc++] = word;
    }
    argv[argc++] = dp_test_broker_bin;
    argv[argc++] = "--bind";
    argv[argc++] = tcp;
    argv[argc++] = "--bind";
    argv[argc++] = ipc;
    argv[argc++] = "--endpoint-file";
    argv[argc++] = endpoint_file;
    for (int i = 0; extra && extra[i] && argc < 62; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    if (!dp_test_wait_until (s_file_has_lines, endpoint_file, BROKER_START_MS))
        dp_test_fail (__FILE__, __LINE__, "broker did not write %s", endpoint_file);
    *endpoints = dp_test_read_file (endpoint_file);
    return pid;
}

void
dp_test_broker_start (dp_test_broker_t *broker, const char *const *extra)
{
    static int serial;
    char name[64];
    snprintf (name, sizeof name, "broker%d", ++serial);
    snprintf (broker->ipc, sizeof broker->ipc, "%s", dp_test_ipc (name));
    /*  The kernel picks the port (tcp port 0), not "tcp://host:*", which
        hands out ports in order from 49152: the next broker to start (of
        this suite or another on the machine) would take such a port as
        soon as it is free, and the workers and clients of a broker that
        died would then talk to it. */
    char *text;
    broker->pid = s_broker_spawn (name, "tcp://127.0.0.1:0", broker->ipc, extra, &text);
    char *tcp = text ? strstr (text, "tcp://") : NULL;
    if (!tcp)
        dp_test_fail (__FILE__, __LINE__, "no tcp endpoint in %s.endpoints", name);
    size_t len = strcspn (tcp, "\r\n");
    if (len >= sizeof broker->tcp)
        len = sizeof broker->tcp - 1;
    memcpy (broker->tcp, tcp, len);
    broker->tcp[len] = 0;
    free (text);
}

pid_t
dp_test_workers_start (const char *endpoint, int procs, const char *const *extra)
{
    static int serial;
    char tag[32], nprocs[16];
    snprintf (tag, sizeof tag, "workers%d", ++serial);
    snprintf (nprocs, sizeof nprocs, "%d", procs);
    const char *argv[64];
    int argc = 0;
    argv[argc++] = dp_test_worker_bin;
    argv[argc++] = "--connect";
    argv[argc++] = endpoint;
    argv[argc++] = "--procs";
    argv[argc++] = nprocs;
    for (int i = 0; extra && extra[i] && argc < 62; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    return dp_test_spawn (tag, (char *const *)argv);
}

pid_t
dp_test_workers_logged (const char *endpoint, int procs, const char *const *extra)
{
    const char *argv[32];
    int argc = 0;
    argv[argc++] = "--log-level";
    argv[argc++] = getenv ("DPOOL_LOG") ? getenv ("DPOOL_LOG") : "info";
    for (int i = 0; extra && extra[i] && argc < 31; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    return dp_test_workers_start (endpoint, procs, argv);
}

typedef struct {
    dpool_pool_t *pool;
    int workers;
} s_workers_wait_t;

/*  Asks for the status, which refreshes the pool's count of workers. */
static bool
s_has_workers (void *arg)
{
    s_workers_wait_t *wait = (s_workers_wait_t *)arg;
    void *data = NULL;
    size_t size = 0;
    if (dpool_pool_status (wait->pool, 1000, &data, &size) == 0)
        free (data);
    return dpool_pool_workers (wait->pool) >= wait->workers;
}

void
dp_test_wait_workers (dpool_pool_t *pool, int workers, int timeout_ms)
{
    s_workers_wait_t wait = {pool, workers};
    if (!dp_test_wait_until (s_has_workers, &wait, timeout_ms))
        dp_test_fail (__FILE__, __LINE__, "only %d of %d workers registered",
                      dpool_pool_workers (pool), workers);
}

msgpack_unpacked
dp_test_status (dpool_pool_t *pool)
{
    void *data;
    size_t size;
    CHECK (dpool_pool_status (pool, 10000, &data, &size) == 0);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    msgpack_unpacker *unpacker = msgpack_unpacker_new (size);
    CHECK (unpacker && msgpack_unpacker_reserve_buffer (unpacker, size));
    memcpy (msgpack_unpacker_buffer (unpacker), data, size);
    msgpack_unpacker_buffer_consumed (unpacker, size);
    CHECK (msgpack_unpacker_next (unpacker, &unpacked) == MSGPACK_UNPACK_SUCCESS);
    msgpack_unpacker_free (unpacker);
    free (data);
    return unpacked;
}

void
dp_test_buf_init (dp_test_buf_t *self)
{
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, &self->sbuf, msgpack_sbuffer_write);
}

void
dp_test_buf_clear (dp_test_buf_t *self)
{
    msgpack_sbuffer_clear (&self->sbuf);
}

void
dp_test_buf_fini (dp_test_buf_t *self)
{
    msgpack_sbuffer_destroy (&self->sbuf);
}

void
dp_test_pack_str (msgpack_packer *pk, const char *text)
{
    msgpack_pack_str_with_body (pk, text, strlen (text));
}

void
dp_test_pack_pair (msgpack_packer *pk, int64_t a, int64_t b)
{
    msgpack_pack_array (pk, 2);
    msgpack_pack_int64 (pk, a);
    msgpack_pack_int64 (pk, b);
}

void
dp_test_pack_range (dp_test_buf_t *buf, int from, int to)
{
    dp_test_buf_clear (buf);
    for (int i = from; i < to; i++)
        msgpack_pack_int (&buf->pk, i);
}

bool
dp_test_is_int (const msgpack_object *object, int64_t value)
{
    if (object->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return value >= 0 && object->via.u64 == (uint64_t)value;
    if (object->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return object->via.i64 == value;
    return false;
}

bool
dp_test_is_pair (const msgpack_object *object, int64_t a, int64_t b)
{
    return object->type == MSGPACK_OBJECT_ARRAY && object->via.array.size == 2 &&
           dp_test_is_int (&object->via.array.ptr[0], a) &&
           dp_test_is_int (&object->via.array.ptr[1], b);
}

bool
dp_test_is_str (const msgpack_object *object, const char *text)
{
    size_t len = strlen (text);
    return object->type == MSGPACK_OBJECT_STR && object->via.str.size == len &&
           memcmp (object->via.str.ptr, text, len) == 0;
}

const msgpack_object *
dp_test_map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (dp_test_is_str (&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

void
dp_test_check_failed (dpool_result_t *result, int code)
{
    msgpack_object value;
    CHECK (dpool_result_ready (result));
    CHECK (!dpool_result_successful (result));
    CHECK_EQ_INT (dpool_result_code (result), code);
    CHECK_EQ_INT (dpool_result_get (result, 0, &value), -1);
    CHECK_EQ_INT (dpool_errno (), code);
    CHECK (dpool_result_error (result) != NULL);
}

static pid_t s_tracked[MAX_TRACKED];
static pid_t s_tracking_pid;

static void
s_kill_tracked (void)
{
    if (getpid () != s_tracking_pid)
        return;
    for (int i = 0; i < MAX_TRACKED; i++)
        if (s_tracked[i] > 0) {
            kill (-s_tracked[i], SIGKILL);
            kill (s_tracked[i], SIGKILL);
            s_tracked[i] = 0;
        }
}

pid_t
dp_test_track (pid_t pid)
{
    if (!s_tracking_pid) {
        s_tracking_pid = getpid ();
        zsys_handler_set (NULL);
        zsys_init ();
        atexit (s_kill_tracked);
    }
    if (pid <= 0)
        return pid;
    for (int i = 0; i < MAX_TRACKED; i++)
        if (s_tracked[i] == 0) {
            s_tracked[i] = pid;
            return pid;
        }
    dp_test_fail (__FILE__, __LINE__, "too many processes");
}

int
dp_test_untrack_stop (pid_t pid, int sig)
{
    for (int i = 0; i < MAX_TRACKED; i++)
        if (s_tracked[i] == pid)
            s_tracked[i] = 0;
    return dp_test_stop (pid, sig, STOP_GRACE_MS);
}

void
dp_test_env_start (dp_test_env_t *env, const char *transport, int procs)
{
    memset (env, 0, sizeof *env);
    dp_test_track (0);
    dp_test_broker_start (&env->broker, NULL);
    dp_test_track (env->broker.pid);
    if (strcmp (transport, "tcp") == 0)
        env->endpoint = env->broker.tcp;
    else if (strcmp (transport, "ipc") == 0)
        env->endpoint = env->broker.ipc;
    else
        dp_test_fail (__FILE__, __LINE__, "unknown transport %s", transport);
    if (procs > 0)
        env->workers = dp_test_track (dp_test_workers_start (env->endpoint, procs, NULL));
}

void
dp_test_env_stop (dp_test_env_t *env)
{
    if (env->workers > 0)
        dp_test_untrack_stop (env->workers, SIGTERM);
    dp_test_untrack_stop (env->broker.pid, SIGTERM);
}

dpool_pool_t *
dp_test_env_connect (dp_test_env_t *env, int workers)
{
    dpool_pool_t *pool = dpool_pool_connect (env->endpoint);
    CHECK (pool);
    if (workers > 0)
        dp_test_wait_workers (pool, workers, WORKERS_WAIT_MS);
    return pool;
}

void
dp_test_broker_restart (dp_test_broker_t *broker, const char *tag, const char *const *extra)
{
    char *text;
    broker->pid = s_broker_spawn (tag, broker->tcp, broker->ipc, extra, &text);
    free (text);
}

void
dp_test_env_restart_broker (dp_test_env_t *env, const char *tag)
{
    char *text;
    env->broker.pid =
        dp_test_track (s_broker_spawn (tag, env->broker.tcp, env->broker.ipc, NULL, &text));
    free (text);
}

void
dp_test_check_range (dpool_result_t *result, int count)
{
    msgpack_object value;
    CHECK (result);
    CHECK_EQ_INT (dpool_result_get (result, 20000, &value), 0);
    CHECK_EQ_INT (dpool_result_count (result), count);
    CHECK (value.type == MSGPACK_OBJECT_ARRAY);
    CHECK_EQ_INT (value.via.array.size, count);
    for (int i = 0; i < count; i++) {
        CHECK (dp_test_is_int (&value.via.array.ptr[i], i));
        msgpack_object item;
        CHECK_EQ_INT (dpool_result_item (result, (size_t)i, &item), 0);
        CHECK (dp_test_is_int (&item, i));
        CHECK (dpool_result_item_error (result, (size_t)i) == NULL);
    }
}

pid_t
dp_test_cli_spawn (const char *tag, const char *endpoint, const char *const *args)
{
    const char *argv[16] = {dp_test_cli_bin};
    int argc = 1;
    for (int i = 0; args[i]; i++) {
        CHECK (argc < 13);
        argv[argc++] = args[i];
    }
    argv[argc++] = "--connect";
    argv[argc++] = endpoint;
    argv[argc] = NULL;
    return dp_test_spawn (tag, (char *const *)argv);
}

static char *
s_cli_output (const char *tag, const char *suffix)
{
    char name[96];
    snprintf (name, sizeof name, "%s.%s", tag, suffix);
    char *text = dp_test_read_file (dp_test_path (name));
    CHECK (text);
    return text;
}

int
dp_test_cli_run (const char *tag, const char *endpoint, const char *const *args, int timeout_ms,
                 char **out, char **err)
{
    int status = dp_test_wait_exit (dp_test_cli_spawn (tag, endpoint, args), timeout_ms);
    CHECK (status != -1 && WIFEXITED (status));
    if (out)
        *out = s_cli_output (tag, "out");
    if (err)
        *err = s_cli_output (tag, "err");
    return WEXITSTATUS (status);
}

char *
dp_test_output (const char *tag, const char *stream)
{
    char name[128];
    snprintf (name, sizeof name, "%s.%s", tag, stream);
    char *text = dp_test_read_file (dp_test_path (name));
    return text ? text : strdup ("");
}

void
dp_test_check_contains (const char *tag, const char *stream, const char *needle)
{
    char *text = dp_test_output (tag, stream);
    if (!strstr (text, needle))
        dp_test_fail (__FILE__, __LINE__, "[%s] %s lacks \"%s\"; it is:\n%s", tag, stream, needle,
                      text);
    free (text);
}

void
dp_test_check_stdout (const char *tag, const char *expected)
{
    char *text = dp_test_output (tag, "out");
    if (strcmp (text, expected) != 0) {
        char *err = dp_test_output (tag, "err");
        dp_test_fail (__FILE__, __LINE__, "[%s] stdout is:\n%s\nexpected:\n%s\nstderr:\n%s", tag,
                      text, expected, err);
    }
    free (text);
}

long long
dp_test_status_count (dpool_pool_t *pool, const char *outer, const char *key)
{
    void *data;
    size_t size;
    if (dpool_pool_status (pool, 10000, &data, &size))
        return -1;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    CHECK (msgpack_unpack_next (&unpacked, data, size, &offset) == MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *map = &unpacked.data;
    if (outer)
        map = dp_test_map_get (map, outer);
    const msgpack_object *found = map ? dp_test_map_get (map, key) : NULL;
    long long count = -1;
    if (found && found->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        count = (long long)found->via.u64;
    else if (found && found->type == MSGPACK_OBJECT_ARRAY)
        count = found->via.array.size;
    msgpack_unpacked_destroy (&unpacked);
    free (data);
    return count;
}

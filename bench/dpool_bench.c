/*  dpool_bench.c - the benchmark's workloads through dpool, one per run,
    for bench/run.py to set side by side with multiprocessing.Pool, mpi4py
    and the transport's own limit (forwarder.c).

    Pool workloads (--workload), each on a pool of --procs processes:
      apply_async  N no-op tasks submitted one at a time, then all awaited
      map1         one map of N no-ops with chunksize 1
      mapdef       one map of N no-ops with dpool's default chunksize
      apply_seq    N apply calls one after the other: latency p50 and p99
      echo1k       N apply_async of a 1 KiB bin that the task returns
      echo64k      the same with 64 KiB
      sleep        N apply_async of a task that sleeps 1 ms (ideal N/procs ms)
    and --mode says which pool:
      embedded     dpool_pool_new (procs): broker thread and forked workers
      tcp, ipc     dpool_pool_connect to a dpool-broker process (--broker-bin)
                   on that transport, with a forked copy of this program
                   serving procs workers (dpool_worker_serve; with --credit,
                   the same supervisor with that credit per worker)

    Broker-only workloads speak the wire protocol (proto/) to a dpool-broker
    process directly, with no client library in between:
      broker_rss   N tasks queued and no worker: the broker's resident memory
                   per queued task, less each task's argument bytes
      broker_idle  --idle-workers DEALERs that say READY and then only
                   heartbeat: the broker's CPU over --idle-seconds, read from
                   /proc/PID/stat
      cancel       N tasks queued, then one CANCEL naming every seq: the time
                   until the N ECANCELLED results are back
      cancel_all   the same with CANCEL all

    Every count is its default times --scale (at least 1). Output: one JSON
    object on stdout with the rate, latencies, peak RSS of the main process,
    the largest worker process and the broker. Every process this program
    starts, it stops by pid. Exits 0 on success, 1 on failure (said on
    stderr), 2 on a usage error.
*/
#include "dp_proto.h"
#include "dp_supervisor.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <zmq.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2

/*  Default counts, before --scale. */
#define N_APPLY_ASYNC 200000
#define N_MAP         1000000
#define N_APPLY_SEQ   10000
#define N_ECHO1K      100000
#define N_ECHO64K     10000
#define N_SLEEP       10000
#define N_BROKER_RSS  1000000
#define N_CANCEL      100000
#define N_IDLE        1000
#define IDLE_SECONDS  10.0

#define ECHO1K_SIZE     1024
#define ECHO64K_SIZE    (64 * 1024)
#define SLEEP_MS        1
#define DEFAULT_PROCS   2
#define WAIT_LIMIT_MS   (15 * 60 * 1000) /* no workload may take longer */
#define START_LIMIT_MS  20000            /* for a broker or workers to come up */
#define WARMUP_TASKS    200
#define SUBMIT_BATCH    10000 /* tasks per SUBMIT in the broker-only workloads */
#define STATUS_POLL_MS  50    /* between STATUS requests while waiting */
#define IDLE_TICK_MS    20    /* the fake workers' loop period */
#define SETTLE_MS       1000  /* after the idle workers are welcome, before measuring */
#define PATH_SIZE       512
#define BROKER_LOG_TAIL 2000 /* bytes of the broker's log shown on a failure */
#define BENCH_FN_NOOP   "bench_noop"
#define BENCH_FN_ECHO   "bench_echo"
#define BENCH_FN_SLEEP  "bench_sleep"

typedef enum { MODE_EMBEDDED, MODE_TCP, MODE_IPC } s_mode_t;

typedef struct {
    s_mode_t mode;
    const char *workload;
    double scale;
    int procs;
    const char *broker_bin;
    int credit;        /* tcp, ipc: each worker's credit; 0: the library's default */
    long idle_workers; /* 0: N_IDLE scaled */
    double idle_seconds;
} s_options_t;

/*  What a workload measured; printed as JSON. Unset figures stay 0. */
typedef struct {
    long tasks;
    size_t size;
    double seconds;
    double p50_us, p99_us;
    double ideal_seconds;  /* sleep */
    double bytes_per_task; /* broker_rss: beyond the payload */
    long payload_bytes;    /* broker_rss: argument bytes per task */
    double cpu_percent;    /* broker_idle: of one core */
    long expired;          /* broker_idle: workers the broker dropped */
    long rss_broker_kb;    /* peak, or current for broker_rss */
    long rss_broker_idle_kb;
    long rss_broker_full_kb;
    long rss_worker_kb;
} s_figures_t;

/*  The broker and workers a broker-mode run started. */
typedef struct {
    pid_t broker;
    pid_t workers;
    char dir[PATH_SIZE];
    char endpoint[PATH_SIZE];
} s_procs_t;

static s_options_t s_options;
static s_procs_t s_procs = {.broker = -1, .workers = -1};

/*  ---------------------------------------------------------------------------
    Helpers: clock, failure, processes.
*/

static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
s_stop_procs (void);

/*  Copies the end of the broker's log (if one was started) to stderr, so
    that a failure says what the broker said before its directory goes. */
static void
s_dump_broker_log (void)
{
    if (!s_procs.dir[0])
        return;
    char path[PATH_SIZE + 32];
    snprintf (path, sizeof path, "%s/broker.log", s_procs.dir);
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    char tail[BROKER_LOG_TAIL + 1];
    if (fseek (file, -(long)BROKER_LOG_TAIL, SEEK_END) != 0)
        rewind (file);
    size_t got = fread (tail, 1, BROKER_LOG_TAIL, file);
    fclose (file);
    tail[got] = '\0';
    if (got)
        fprintf (stderr, "dpool_bench: the broker's log ends:\n%s\n", tail);
}

/*  Says why the workload failed, stops what was started, exits 1. */
static void __attribute__ ((noreturn, format (printf, 1, 2))) s_fail (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "dpool_bench: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    s_dump_broker_log ();
    s_stop_procs ();
    exit (1);
}

/*  Fails with the last dpool error after a call named what. */
static void __attribute__ ((noreturn)) s_fail_dpool (const char *what)
{
    int code = dpool_errno ();
    s_fail ("%s: %s (%d)", what, dpool_strerror (code), code);
}

/*  A count scaled by --scale, at least 1. */
static long
s_scaled (long count)
{
    double value = (double)count * s_options.scale;
    return value < 1 ? 1 : (long)(value + 0.5);
}

/*  The value of the first line "key: N kB" in /proc/pid/status, or 0. */
static long
s_proc_status_kb (pid_t pid, const char *key)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    char line[256];
    long value = 0;
    size_t keylen = strlen (key);
    while (fgets (line, sizeof line, file)) {
        if (strncmp (line, key, keylen) == 0 && line[keylen] == ':') {
            value = strtol (line + keylen + 1, NULL, 10);
            break;
        }
    }
    fclose (file);
    return value;
}

/*  Sends sig to pid, waits up to a few seconds, then SIGKILLs; reaps it. */
static void
s_stop_pid (pid_t pid, int sig)
{
    if (pid <= 0)
        return;
    kill (pid, sig);
    for (int i = 0; i < 500; i++) {
        if (waitpid (pid, NULL, WNOHANG) == pid)
            return;
        usleep (10000);
    }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
}

/*  Stops the workers, then the broker, and removes the private directory. */
static void
s_stop_procs (void)
{
    s_stop_pid (s_procs.workers, SIGTERM);
    s_procs.workers = -1;
    s_stop_pid (s_procs.broker, SIGTERM);
    s_procs.broker = -1;
    if (s_procs.dir[0]) {
        char path[PATH_SIZE + 32];
        const char *names[] = {"broker.ipc", "endpoints", "broker.log"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf (path, sizeof path, "%s/%s", s_procs.dir, names[i]);
            unlink (path);
        }
        rmdir (s_procs.dir);
        s_procs.dir[0] = '\0';
    }
}

/*  Starts dpool-broker on the transport of mode (tcp or ipc) in a private
    directory, waits for its endpoint file, and stores the endpoint clients
    and workers connect to. Must run before this process has a ZeroMQ
    context (it forks). Fails the run if the broker does not come up. */
static void
s_start_broker (s_mode_t mode, const char *max_queue)
{
    snprintf (s_procs.dir, sizeof s_procs.dir, "/tmp/dpool-bench-XXXXXX");
    if (!mkdtemp (s_procs.dir)) {
        s_procs.dir[0] = '\0';
        s_fail ("mkdtemp: %s", strerror (errno));
    }
    char bind[PATH_SIZE + 32], file[PATH_SIZE + 32], log[PATH_SIZE + 32];
    if (mode == MODE_IPC)
        snprintf (bind, sizeof bind, "ipc://%s/broker.ipc", s_procs.dir);
    else
        snprintf (bind, sizeof bind, "tcp://127.0.0.1:*");
    snprintf (file, sizeof file, "%s/endpoints", s_procs.dir);
    snprintf (log, sizeof log, "%s/broker.log", s_procs.dir);
    pid_t pid = fork ();
    if (pid < 0)
        s_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2 (fd, STDOUT_FILENO);
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        char *argv[] = {(char *)s_options.broker_bin,
                        "--bind",
                        bind,
                        "--endpoint-file",
                        file,
                        "--max-queue",
                        (char *)max_queue,
                        "--nofunc-grace",
                        "-1",
                        NULL};
        execv (s_options.broker_bin, argv);
        _exit (127);
    }
    s_procs.broker = pid;
    double deadline = s_now () + START_LIMIT_MS / 1000.0;
    while (s_now () < deadline) {
        FILE *in = fopen (file, "r");
        if (in) {
            char line[PATH_SIZE];
            bool got = fgets (line, sizeof line, in) != NULL;
            fclose (in);
            if (got && strchr (line, '\n')) {
                *strchr (line, '\n') = '\0';
                snprintf (s_procs.endpoint, sizeof s_procs.endpoint, "%s", line);
                return;
            }
        }
        if (waitpid (pid, NULL, WNOHANG) == pid) {
            s_procs.broker = -1;
            s_fail ("%s exited at start", s_options.broker_bin);
        }
        usleep (10000);
    }
    s_fail ("%s did not write %s in time", s_options.broker_bin, file);
}

/*  Forks a copy of this program that serves procs workers to the broker. */
static void
s_start_workers (int procs)
{
    pid_t pid = fork ();
    if (pid < 0)
        s_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        if (s_options.credit == 0)
            _exit (dpool_worker_serve (s_procs.endpoint, procs) == 0 ? 0 : 1);
        /*  What dpool_worker_serve does, with the worker's credit set. */
        dp_supervisor_config_t config;
        memset (&config, 0, sizeof config);
        dp_worker_config_init (&config.worker);
        config.worker.endpoint = s_procs.endpoint;
        config.worker.credit = s_options.credit;
        config.procs = procs;
        _exit (dp_supervisor_run (&config) == 0 ? 0 : 1);
    }
    s_procs.workers = pid;
}

/*  ---------------------------------------------------------------------------
    Task functions: what the pool workloads run.
*/

static int
s_noop (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    (void)args;
    return msgpack_pack_nil (result);
}

static int
s_echo (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    (void)task;
    return msgpack_pack_object (result, *args);
}

/*  Sleeps args milliseconds. */
static int
s_sleep (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "bench_sleep: expected milliseconds");
    uint64_t ms = args->via.u64;
    struct timespec left = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep (&left, &left) != 0 && errno == EINTR)
        ;
    return msgpack_pack_nil (result);
}

/*  ---------------------------------------------------------------------------
    Pool workloads.
*/

/*  A packed msgpack buffer. */
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} s_packed_t;

static void
s_packed_init (s_packed_t *self)
{
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, &self->sbuf, msgpack_sbuffer_write);
}

static void
s_packed_fini (s_packed_t *self)
{
    msgpack_sbuffer_destroy (&self->sbuf);
}

/*  Waits for a handle and checks it succeeded; fails the run otherwise. */
static void
s_expect_ok (dpool_result_t *result, const char *what)
{
    if (dpool_result_wait (result, WAIT_LIMIT_MS) != 0)
        s_fail_dpool (what);
    if (!dpool_result_successful (result)) {
        const char *message = dpool_result_error (result);
        s_fail ("%s: task failed: %s (%d)", what, message ? message : "?",
                dpool_result_code (result));
    }
}

/*  The number of workers in a packed STATUS-REPLY map, or -1. */
static long
s_status_workers (const void *data, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    long workers = -1;
    if (msgpack_unpack_next (&unpacked, data, size, NULL) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP) {
        msgpack_object_map map = unpacked.data.via.map;
        for (uint32_t i = 0; i < map.size; i++) {
            msgpack_object key = map.ptr[i].key;
            if (key.type == MSGPACK_OBJECT_STR && key.via.str.size == 7 &&
                memcmp (key.via.str.ptr, "workers", 7) == 0 &&
                map.ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
                workers = map.ptr[i].val.via.array.size;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return workers;
}

/*  Waits until the broker has procs workers, then runs a few tasks so that
    every connection is made before the clock starts. */
static void
s_warm_up (dpool_pool_t *pool, int procs)
{
    double deadline = s_now () + START_LIMIT_MS / 1000.0;
    while (true) {
        void *data = NULL;
        size_t size = 0;
        long workers = -1;
        if (dpool_pool_status (pool, 1000, &data, &size) == 0) {
            workers = s_status_workers (data, size);
            free (data);
        }
        if (workers >= procs)
            break;
        if (s_now () > deadline)
            s_fail ("only %ld of %d workers came up in time", workers, procs);
        usleep (20000);
    }
    s_packed_t args;
    s_packed_init (&args);
    for (int i = 0; i < WARMUP_TASKS; i++)
        msgpack_pack_int (&args.pk, i);
    dpool_result_t *result =
        dpool_pool_map (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size, 1, NULL);
    if (!result)
        s_fail_dpool ("warm-up map");
    s_expect_ok (result, "warm-up map");
    dpool_result_destroy (&result);
    s_packed_fini (&args);
}

/*  Submits count tasks one at a time, each with the same packed args, then
    waits for every one; returns the seconds from first submit to last
    result. When check_size is not 0, every result must be a bin of that
    size. */
static double
s_run_apply_async (dpool_pool_t *pool, const char *fn, const void *args, size_t size, long count,
                   size_t check_size)
{
    dpool_result_t **handles = calloc ((size_t)count, sizeof *handles);
    if (!handles)
        s_fail ("out of memory");
    double start = s_now ();
    for (long i = 0; i < count; i++) {
        handles[i] = dpool_pool_apply_async (pool, fn, args, size, NULL);
        if (!handles[i])
            s_fail_dpool ("apply_async");
    }
    for (long i = 0; i < count; i++) {
        s_expect_ok (handles[i], "apply_async");
        if (check_size) {
            msgpack_object value;
            if (dpool_result_get (handles[i], 0, &value) != 0)
                s_fail_dpool ("result_get");
            if (value.type != MSGPACK_OBJECT_BIN || value.via.bin.size != check_size)
                s_fail ("echo returned something else than its %zu bytes", check_size);
        }
        dpool_result_destroy (&handles[i]);
    }
    double seconds = s_now () - start;
    free (handles);
    return seconds;
}

/*  One map of count no-ops with chunksize (0: dpool's default). */
static double
s_run_map (dpool_pool_t *pool, long count, size_t chunksize)
{
    s_packed_t args;
    s_packed_init (&args);
    for (long i = 0; i < count; i++)
        msgpack_pack_int64 (&args.pk, i);
    double start = s_now ();
    dpool_result_t *result =
        dpool_pool_map (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size, chunksize, NULL);
    if (!result)
        s_fail_dpool ("map");
    s_expect_ok (result, "map");
    double seconds = s_now () - start;
    if (dpool_result_count (result) != (size_t)count)
        s_fail ("map of %ld gave %zu results", count, dpool_result_count (result));
    dpool_result_destroy (&result);
    s_packed_fini (&args);
    return seconds;
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double
s_percentile (const double *sorted, long count, double fraction)
{
    return sorted[(long)(fraction * (double)(count - 1) + 0.5)];
}

/*  count sequential apply calls; fills the latency percentiles. */
static double
s_run_apply_seq (dpool_pool_t *pool, long count, s_figures_t *figures)
{
    double *latency = malloc ((size_t)count * sizeof *latency);
    if (!latency)
        s_fail ("out of memory");
    s_packed_t args;
    s_packed_init (&args);
    msgpack_pack_int (&args.pk, 1);
    double start = s_now ();
    for (long i = 0; i < count; i++) {
        double sent = s_now ();
        dpool_result_t *result =
            dpool_pool_apply (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size, NULL);
        if (!result)
            s_fail_dpool ("apply");
        latency[i] = s_now () - sent;
        s_expect_ok (result, "apply");
        dpool_result_destroy (&result);
    }
    double seconds = s_now () - start;
    qsort (latency, (size_t)count, sizeof *latency, s_compare_double);
    figures->p50_us = s_percentile (latency, count, 0.50) * 1e6;
    figures->p99_us = s_percentile (latency, count, 0.99) * 1e6;
    free (latency);
    s_packed_fini (&args);
    return seconds;
}

/*  Runs one pool workload on a pool of the configured kind. */
static void
s_pool_workload (s_figures_t *figures)
{
    const char *w = s_options.workload;
    int procs = s_options.procs;
    if (s_options.mode != MODE_EMBEDDED) {
        /*  Fork the broker and the workers before this process has a context. */
        s_start_broker (s_options.mode, "10000000");
        s_start_workers (procs);
    }
    dpool_config_t config;
    dpool_config_init (&config);
    config.procs = procs;
    config.connect = s_options.mode == MODE_EMBEDDED ? NULL : s_procs.endpoint;
    config.name = "dpool_bench";
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    if (!pool)
        s_fail_dpool ("pool");
    s_warm_up (pool, procs);

    s_packed_t args;
    s_packed_init (&args);
    if (strcmp (w, "apply_async") == 0) {
        figures->tasks = s_scaled (N_APPLY_ASYNC);
        msgpack_pack_int (&args.pk, 1);
        figures->seconds = s_run_apply_async (pool, BENCH_FN_NOOP, args.sbuf.data, args.sbuf.size,
                                              figures->tasks, 0);
    } else if (strcmp (w, "map1") == 0 || strcmp (w, "mapdef") == 0) {
        figures->tasks = s_scaled (N_MAP);
        figures->seconds = s_run_map (pool, figures->tasks, strcmp (w, "map1") == 0 ? 1 : 0);
    } else if (strcmp (w, "apply_seq") == 0) {
        figures->tasks = s_scaled (N_APPLY_SEQ);
        figures->seconds = s_run_apply_seq (pool, figures->tasks, figures);
    } else if (strcmp (w, "echo1k") == 0 || strcmp (w, "echo64k") == 0) {
        bool small = strcmp (w, "echo1k") == 0;
        figures->tasks = s_scaled (small ? N_ECHO1K : N_ECHO64K);
        figures->size = small ? ECHO1K_SIZE : ECHO64K_SIZE;
        char *payload = calloc (1, figures->size);
        if (!payload)
            s_fail ("out of memory");
        msgpack_pack_bin (&args.pk, figures->size);
        msgpack_pack_bin_body (&args.pk, payload, figures->size);
        free (payload);
        figures->seconds = s_run_apply_async (pool, BENCH_FN_ECHO, args.sbuf.data, args.sbuf.size,
                                              figures->tasks, figures->size);
    } else if (strcmp (w, "sleep") == 0) {
        figures->tasks = s_scaled (N_SLEEP);
        msgpack_pack_int (&args.pk, SLEEP_MS);
        figures->seconds = s_run_apply_async (pool, BENCH_FN_SLEEP, args.sbuf.data, args.sbuf.size,
                                              figures->tasks, 0);
        figures->ideal_seconds = (double)figures->tasks * SLEEP_MS / 1000.0 / procs;
    } else
        s_fail ("unknown workload '%s'", w);
    s_packed_fini (&args);

    if (s_procs.broker > 0)
        figures->rss_broker_kb = s_proc_status_kb (s_procs.broker, "VmHWM");
    dpool_pool_destroy (&pool);
    /*  The workers end before the broker, so that none is left to reconnect. */
    s_stop_pid (s_procs.workers, SIGTERM);
    s_procs.workers = -1;
    struct rusage children;
    getrusage (RUSAGE_CHILDREN, &children);
    figures->rss_worker_kb = children.ru_maxrss;
    s_stop_procs ();
}

/*  ---------------------------------------------------------------------------
    Broker-only workloads: the wire protocol by hand, over plain libzmq.
*/

/*  One peer of the broker: a DEALER and a reusable writer. */
typedef struct {
    void *socket;
    dp_writer_t writer;
    double last_sent;
} s_peer_t;

static void
s_peer_open (s_peer_t *self, void *ctx, const char *endpoint)
{
    self->socket = zmq_socket (ctx, ZMQ_DEALER);
    if (!self->socket)
        s_fail ("zmq_socket: %s", zmq_strerror (errno));
    if (dp_wire_configure (self->socket, false, 0) != 0 ||
        zmq_connect (self->socket, endpoint) != 0)
        s_fail ("connect %s: %s", endpoint, zmq_strerror (errno));
    dp_writer_init (&self->writer);
    self->last_sent = 0;
}

static void
s_peer_close (s_peer_t *self)
{
    zmq_close (self->socket);
    dp_writer_fini (&self->writer);
}

/*  Sends the writer's body as cmd; fails the run if it cannot. */
static void
s_peer_send (s_peer_t *self, dp_cmd_t cmd)
{
    if (!dp_writer_ok (&self->writer))
        s_fail ("out of memory encoding %s", dp_cmd_name (cmd));
    if (dp_wire_send_writer (self->socket, NULL, 0, cmd, &self->writer, 0) != 0)
        s_fail ("send %s: %s", dp_cmd_name (cmd), zmq_strerror (errno));
    self->last_sent = s_now ();
}

/*  Receives one message into msg (decoded into out) within timeout_ms;
    returns false on timeout. A malformed message fails the run. */
static bool
s_peer_recv (s_peer_t *self, dp_wire_msg_t *msg, dp_msg_t *out, int timeout_ms)
{
    zmq_pollitem_t item = {self->socket, 0, ZMQ_POLLIN, 0};
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return false;
    if (dp_wire_recv (self->socket, msg, 0) != 0)
        s_fail ("recv: %s", zmq_strerror (errno));
    dp_reason_t reason = dp_wire_decode (msg, false, NULL, out);
    if (reason != DP_OK)
        s_fail ("malformed message from the broker: %s", dp_reason_name (reason));
    return true;
}

/*  HELLO, then waits for WELCOME (results held for the session first). */
static void
s_client_hello (s_peer_t *self)
{
    uint8_t session[DP_SESSION_SIZE];
    for (size_t i = 0; i < sizeof session; i++)
        session[i] = (uint8_t)rand ();
    dp_encode_hello (&self->writer, session, "dpool_bench");
    s_peer_send (self, DP_CMD_HELLO);
    double deadline = s_now () + START_LIMIT_MS / 1000.0;
    while (s_now () < deadline) {
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!s_peer_recv (self, &msg, &decoded, 100))
            continue;
        dp_cmd_t cmd = decoded.cmd;
        dp_wire_close (&msg);
        if (cmd == DP_CMD_WELCOME)
            return;
    }
    s_fail ("no WELCOME from the broker");
}

/*  Submits count no-op tasks with seqs first..first+count-1, in batches;
    args is one packed object. */
static void
s_client_submit (s_peer_t *self, uint64_t first, long count, const void *args, size_t size)
{
    dp_task_t task = {0};
    task.fn.data = (const uint8_t *)BENCH_FN_NOOP;
    task.fn.size = strlen (BENCH_FN_NOOP);
    task.args.data = args;
    task.args.size = size;
    long sent = 0;
    while (sent < count) {
        dp_list_begin (&self->writer);
        long batch = count - sent < SUBMIT_BATCH ? count - sent : SUBMIT_BATCH;
        for (long i = 0; i < batch; i++) {
            task.id = first + (uint64_t)(sent + i);
            dp_list_add_task (&self->writer, DP_CMD_SUBMIT, &task);
        }
        dp_list_end (&self->writer);
        s_peer_send (self, DP_CMD_SUBMIT);
        sent += batch;
    }
}

/*  Reads an unsigned value of key from a packed status map; -1 if absent. */
static long
s_status_uint (dp_span_t status, const char *key)
{
    dp_reader_t reader;
    dp_reader_init (&reader, status.data, status.size);
    uint32_t pairs;
    if (dp_mp_read_map (&reader, &pairs) != 0)
        return -1;
    for (uint32_t i = 0; i < pairs; i++) {
        dp_span_t name, value;
        uint64_t number;
        if (dp_mp_read_str (&reader, &name) != 0)
            return -1;
        if (dp_span_eq (name, key) && dp_mp_read_uint (&reader, &number) == 0)
            return (long)number;
        if (dp_mp_read_object (&reader, &value) != 0)
            return -1;
    }
    return -1;
}

/*  Asks STATUS until the broker holds count queued tasks; results that
    arrive meanwhile fail the run (no task may end yet). */
static void
s_client_wait_queued (s_peer_t *self, long count)
{
    double deadline = s_now () + WAIT_LIMIT_MS / 1000.0;
    while (s_now () < deadline) {
        dp_encode_empty (&self->writer);
        s_peer_send (self, DP_CMD_STATUS);
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        long queued = -1;
        double asked = s_now ();
        while (s_now () - asked < 10.0) {
            if (!s_peer_recv (self, &msg, &decoded, 1000))
                continue;
            dp_cmd_t cmd = decoded.cmd;
            if (cmd == DP_CMD_STATUS_REPLY)
                queued = s_status_uint (decoded.u.status, "queued");
            dp_wire_close (&msg);
            if (cmd == DP_CMD_RESULT)
                s_fail ("a result arrived while the tasks should wait");
            if (cmd == DP_CMD_STATUS_REPLY)
                break;
        }
        if (queued >= count)
            return;
        usleep (STATUS_POLL_MS * 1000);
    }
    s_fail ("the broker never held %ld queued tasks", count);
}

/*  broker_rss: the broker's resident memory per queued task. */
static void
s_broker_rss (void *ctx, s_figures_t *figures)
{
    long count = s_scaled (N_BROKER_RSS);
    s_peer_t client;
    s_peer_open (&client, ctx, s_procs.endpoint);
    s_client_hello (&client);
    /*  The argument: a uint64 in its 9-byte form, as a counter would be. */
    uint8_t args[9] = {0xcf, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
    /*  Settle what the first messages allocated, then take the baseline. */
    s_client_wait_queued (&client, 0);
    figures->rss_broker_idle_kb = s_proc_status_kb (s_procs.broker, "VmRSS");
    double start = s_now ();
    s_client_submit (&client, 1, count, args, sizeof args);
    s_client_wait_queued (&client, count);
    figures->seconds = s_now () - start;
    figures->rss_broker_full_kb = s_proc_status_kb (s_procs.broker, "VmRSS");
    figures->rss_broker_kb = s_proc_status_kb (s_procs.broker, "VmHWM");
    figures->tasks = count;
    figures->payload_bytes = (long)sizeof args;
    figures->bytes_per_task = (double)(figures->rss_broker_full_kb - figures->rss_broker_idle_kb) *
                                  1024.0 / (double)count -
                              (double)sizeof args;
    s_peer_close (&client);
}

/*  cancel and cancel_all: N queued tasks cancelled in one CANCEL. */
static void
s_cancel (void *ctx, bool all, s_figures_t *figures)
{
    long count = s_scaled (N_CANCEL);
    s_peer_t client;
    s_peer_open (&client, ctx, s_procs.endpoint);
    s_client_hello (&client);
    uint8_t args[1] = {0x01};
    s_client_submit (&client, 1, count, args, sizeof args);
    s_client_wait_queued (&client, count);
    uint64_t *seqs = NULL;
    if (!all) {
        seqs = malloc ((size_t)count * sizeof *seqs);
        if (!seqs)
            s_fail ("out of memory");
        for (long i = 0; i < count; i++)
            seqs[i] = (uint64_t)i + 1;
    }
    double start = s_now ();
    dp_encode_cancel (&client.writer, all, seqs, all ? 0 : (size_t)count);
    s_peer_send (&client, DP_CMD_CANCEL);
    long cancelled = 0;
    double deadline = start + WAIT_LIMIT_MS / 1000.0;
    while (cancelled < count) {
        if (s_now () > deadline)
            s_fail ("only %ld of %ld cancellations came back", cancelled, count);
        dp_wire_msg_t msg;
        dp_msg_t decoded;
        if (!s_peer_recv (&client, &msg, &decoded, 1000))
            continue;
        if (decoded.cmd == DP_CMD_RESULT) {
            dp_result_t result;
            while (dp_list_next_result (&decoded.u.list, &result)) {
                if (result.code != DPOOL_ECANCELLED)
                    s_fail ("task %" PRIu64 " ended with code %d, not ECANCELLED", result.id,
                            (int)result.code);
                cancelled++;
            }
        }
        dp_wire_close (&msg);
    }
    figures->seconds = s_now () - start;
    figures->tasks = count;
    figures->rss_broker_kb = s_proc_status_kb (s_procs.broker, "VmHWM");
    free (seqs);
    s_peer_close (&client);
}

/*  broker_idle: many workers that only heartbeat; the broker's CPU. */
static void
s_broker_idle (void *ctx, s_figures_t *figures)
{
    long count = s_options.idle_workers > 0 ? s_options.idle_workers : s_scaled (N_IDLE);
    double seconds = s_options.idle_seconds;
    s_peer_t *peers = calloc ((size_t)count, sizeof *peers);
    bool *welcome = calloc ((size_t)count, sizeof *welcome);
    if (!peers || !welcome)
        s_fail ("out of memory");
    const char *functions[] = {BENCH_FN_NOOP};
    char name[64];
    for (long i = 0; i < count; i++) {
        s_peer_open (&peers[i], ctx, s_procs.endpoint);
        snprintf (name, sizeof name, "idle-%ld", i);
        dp_encode_ready (&peers[i].writer, name, (uint64_t)getpid (), "localhost", 1, functions,
                         1);
        s_peer_send (&peers[i], DP_CMD_READY);
    }
    /*  Every worker keeps the protocol's heartbeat rules for idle workers
        (PROTOCOL.md §6): it answers the broker's HEARTBEAT when it has been
        quiet for half an interval, and speaks unasked after one and a half
        idle intervals (DP_IDLE_FACTOR intervals). Their own clocks start
        spread over the idle interval. */
    double heartbeat = DP_HEARTBEAT_MS / 1000.0;
    for (long i = 0; i < count; i++)
        peers[i].last_sent = s_now () - DP_IDLE_FACTOR * heartbeat * (double)i / (double)count;
    long welcomed = 0, expired = 0;
    double started = s_now ();
    double measure_from = 0, measure_to = 0;
    double cpu_from = 0;
    while (true) {
        double now = s_now ();
        for (long i = 0; i < count; i++) {
            dp_wire_msg_t msg;
            while (dp_wire_recv (peers[i].socket, &msg, ZMQ_DONTWAIT) == 0) {
                dp_msg_t decoded;
                if (dp_wire_decode (&msg, false, NULL, &decoded) == DP_OK) {
                    if (decoded.cmd == DP_CMD_WELCOME && !welcome[i]) {
                        welcome[i] = true;
                        welcomed++;
                        heartbeat = decoded.u.welcome.heartbeat_ms / 1000.0;
                    } else if (decoded.cmd == DP_CMD_HEARTBEAT &&
                               now - peers[i].last_sent >= DP_HEARTBEAT_QUIET (heartbeat)) {
                        dp_encode_empty (&peers[i].writer);
                        s_peer_send (&peers[i], DP_CMD_HEARTBEAT);
                    } else if (decoded.cmd == DP_CMD_ERROR || decoded.cmd == DP_CMD_BYE)
                        expired++;
                }
                dp_wire_close (&msg);
            }
            if (now - peers[i].last_sent >= DP_HEARTBEAT_ALONE (DP_IDLE_FACTOR * heartbeat)) {
                dp_encode_empty (&peers[i].writer);
                s_peer_send (&peers[i], DP_CMD_HEARTBEAT);
            }
        }
        if (measure_from == 0 && welcomed == count) {
            /*  Everyone is in: let the broker settle, then start measuring. */
            measure_from = now + SETTLE_MS / 1000.0;
        }
        if (measure_from > 0 && cpu_from == 0 && now >= measure_from) {
            cpu_from = dp_proc_cpu_seconds (s_procs.broker);
            measure_from = now;
            measure_to = now + seconds;
            expired = 0;
        }
        if (cpu_from > 0 && now >= measure_to) {
            double cpu_to = dp_proc_cpu_seconds (s_procs.broker);
            figures->cpu_percent = (cpu_to - cpu_from) / (now - measure_from) * 100.0;
            figures->seconds = now - measure_from;
            break;
        }
        if (measure_from == 0 && now - started > START_LIMIT_MS / 1000.0)
            s_fail ("only %ld of %ld idle workers were welcomed", welcomed, count);
        usleep (IDLE_TICK_MS * 1000);
    }
    figures->tasks = count;
    figures->expired = expired;
    figures->rss_broker_kb = s_proc_status_kb (s_procs.broker, "VmHWM");
    for (long i = 0; i < count; i++)
        s_peer_close (&peers[i]);
    free (peers);
    free (welcome);
}

static void
s_broker_workload (s_figures_t *figures)
{
    const char *w = s_options.workload;
    s_start_broker (s_options.mode == MODE_IPC ? MODE_IPC : MODE_TCP, "100000000");
    void *ctx = zmq_ctx_new ();
    if (!ctx)
        s_fail ("zmq_ctx_new: %s", zmq_strerror (errno));
    if (strcmp (w, "broker_idle") == 0) {
        long count = s_options.idle_workers > 0 ? s_options.idle_workers : s_scaled (N_IDLE);
        zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, (int)count + 64);
        s_broker_idle (ctx, figures);
    } else if (strcmp (w, "broker_rss") == 0)
        s_broker_rss (ctx, figures);
    else if (strcmp (w, "cancel") == 0 || strcmp (w, "cancel_all") == 0)
        s_cancel (ctx, strcmp (w, "cancel_all") == 0, figures);
    else
        s_fail ("unknown workload '%s'", w);
    zmq_ctx_term (ctx);
    s_stop_procs ();
}

/*  ---------------------------------------------------------------------------
    Options and output.
*/

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: dpool_bench --workload W [OPTION]...\n"
             "Runs one benchmark workload through dpool and prints one JSON object.\n"
             "\n"
             "  --workload W       apply_async, map1, mapdef, apply_seq, echo1k, echo64k,\n"
             "                     sleep (pool workloads); broker_rss, broker_idle,\n"
             "                     cancel, cancel_all (broker-only workloads)\n"
             "  --mode M           embedded, tcp or ipc (default embedded; the broker-only\n"
             "                     workloads use tcp unless ipc is given)\n"
             "  --scale F          multiply every count by F (default 1)\n"
             "  --procs N          worker processes (default %d)\n"
             "  --broker-bin PATH  the dpool-broker program (default: ./dpool-broker)\n"
             "  --credit N         tcp, ipc: each worker's credit (default: the library's)\n"
             "  --idle-workers N   broker_idle: fake workers (default %d times the scale)\n"
             "  --idle-seconds S   broker_idle: measuring time (default %.0f)\n",
             DEFAULT_PROCS, N_IDLE, IDLE_SECONDS);
}

static void
s_parse_options (int argc, char *argv[])
{
    enum {
        OPT_WORKLOAD = 256,
        OPT_MODE,
        OPT_SCALE,
        OPT_PROCS,
        OPT_BROKER,
        OPT_CREDIT,
        OPT_IDLE,
        OPT_SECONDS
    };
    static const struct option long_options[] = {
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"mode", required_argument, NULL, OPT_MODE},
        {"scale", required_argument, NULL, OPT_SCALE},
        {"procs", required_argument, NULL, OPT_PROCS},
        {"broker-bin", required_argument, NULL, OPT_BROKER},
        {"credit", required_argument, NULL, OPT_CREDIT},
        {"idle-workers", required_argument, NULL, OPT_IDLE},
        {"idle-seconds", required_argument, NULL, OPT_SECONDS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    s_options =
        (s_options_t){MODE_EMBEDDED, NULL, 1.0, DEFAULT_PROCS, "./dpool-broker", 0, IDLE_SECONDS};
    int opt;
    char *end;
    while ((opt = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_WORKLOAD:
            s_options.workload = optarg;
            break;
        case OPT_MODE:
            if (strcmp (optarg, "embedded") == 0)
                s_options.mode = MODE_EMBEDDED;
            else if (strcmp (optarg, "tcp") == 0)
                s_options.mode = MODE_TCP;
            else if (strcmp (optarg, "ipc") == 0)
                s_options.mode = MODE_IPC;
            else {
                fprintf (stderr, "dpool_bench: --mode is embedded, tcp or ipc\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_SCALE:
            s_options.scale = strtod (optarg, &end);
            if (*end || !(s_options.scale > 0 && s_options.scale <= 100)) {
                fprintf (stderr, "dpool_bench: --scale is a number in (0, 100]\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_PROCS:
            s_options.procs = (int)strtol (optarg, &end, 10);
            if (*end || s_options.procs < 1 || s_options.procs > 1024) {
                fprintf (stderr, "dpool_bench: --procs is 1..1024\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_BROKER:
            s_options.broker_bin = optarg;
            break;
        case OPT_CREDIT:
            s_options.credit = (int)strtol (optarg, &end, 10);
            if (*end || s_options.credit < 1 || s_options.credit > DP_MAX_CREDIT) {
                fprintf (stderr, "dpool_bench: --credit is 1..%d\n", DP_MAX_CREDIT);
                exit (EXIT_USAGE);
            }
            break;
        case OPT_IDLE:
            s_options.idle_workers = strtol (optarg, &end, 10);
            if (*end || s_options.idle_workers < 1 || s_options.idle_workers > 100000) {
                fprintf (stderr, "dpool_bench: --idle-workers is 1..100000\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_SECONDS:
            s_options.idle_seconds = strtod (optarg, &end);
            if (*end || !(s_options.idle_seconds > 0 && s_options.idle_seconds <= 3600)) {
                fprintf (stderr, "dpool_bench: --idle-seconds is in (0, 3600]\n");
                exit (EXIT_USAGE);
            }
            break;
        case 'h':
            s_usage (stdout);
            exit (0);
        default:
            s_usage (stderr);
            exit (EXIT_USAGE);
        }
    }
    if (optind < argc || !s_options.workload) {
        s_usage (stderr);
        exit (EXIT_USAGE);
    }
}

static const char *
s_mode_name (s_mode_t mode)
{
    return mode == MODE_EMBEDDED ? "embedded" : mode == MODE_TCP ? "tcp" : "ipc";
}

static void
s_print (const s_figures_t *f, bool broker_only)
{
    /*  VmHWM, not ru_maxrss: ru_maxrss keeps the high-water mark of the
        process that exec'd this one (bench/run.py). */
    long self_kb = s_proc_status_kb (getpid (), "VmHWM");
    const char *transport =
        broker_only ? (s_options.mode == MODE_IPC ? "ipc" : "tcp") : s_mode_name (s_options.mode);
    printf ("{\"system\": \"dpool\", \"transport\": \"%s\", \"workload\": \"%s\", "
            "\"tasks\": %ld, \"size\": %zu, \"procs\": %d, \"seconds\": %.6f, "
            "\"rate\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"ideal_seconds\": %.3f, "
            "\"bytes_per_task\": %.1f, \"payload_bytes\": %ld, \"cpu_percent\": %.3f, "
            "\"expired\": %ld, \"rss_main_kb\": %ld, \"rss_worker_kb\": %ld, "
            "\"rss_broker_kb\": %ld, \"rss_broker_idle_kb\": %ld, \"rss_broker_full_kb\": %ld}\n",
            transport, s_options.workload, f->tasks, f->size, s_options.procs, f->seconds,
            f->seconds > 0 ? (double)f->tasks / f->seconds : 0.0, f->p50_us, f->p99_us,
            f->ideal_seconds, f->bytes_per_task, f->payload_bytes, f->cpu_percent, f->expired,
            self_kb, f->rss_worker_kb, f->rss_broker_kb, f->rss_broker_idle_kb,
            f->rss_broker_full_kb);
}

int
main (int argc, char *argv[])
{
    s_parse_options (argc, argv);
    srand ((unsigned)getpid () ^ (unsigned)time (NULL));
    if (dpool_register (BENCH_FN_NOOP, s_noop, NULL) != 0 ||
        dpool_register (BENCH_FN_ECHO, s_echo, NULL) != 0 ||
        dpool_register (BENCH_FN_SLEEP, s_sleep, NULL) != 0)
        s_fail_dpool ("register");
    const char *w = s_options.workload;
    bool broker_only = strcmp (w, "broker_rss") == 0 || strcmp (w, "broker_idle") == 0 ||
                       strcmp (w, "cancel") == 0 || strcmp (w, "cancel_all") == 0;
    s_figures_t figures = {0};
    if (broker_only)
        s_broker_workload (&figures);
    else
        s_pool_workload (&figures);
    s_print (&figures, broker_only);
    return 0;
}

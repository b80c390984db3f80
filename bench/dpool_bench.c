/*  dpool_bench.c - the benchmark's workloads through dpool, one per run,
    for bench/run.py to set side by side with multiprocessing.Pool, mpi4py
    and the transport's own limit (forwarder.c).

    Pool workloads (--workload), each on a pool of --procs processes:
      apply_async  N no-op tasks submitted one at a time, then all awaited
      map1         one map of N no-ops with chunksize 1
      mapdef       one map of N no-ops with dpool's default chunksize
      apply_seq    N apply calls one after the other: latency p50 and p99
      echo1k       N apply_async of a 1 KiB bin that the task returns
      echo64k      the same with 64 KiB; every task is submitted first and
                   every result held to the end, as Pool's callers do
      echo1k_stream, echo64k_stream
                   the same, with at most 1,000 tasks unfinished, each
                   result dropped once collected (the forwarder's way)
      sleep        N apply_async of a task that sleeps 1 ms (ideal N/procs ms)
    and with --relay-delay-ms (tcp only) the workers reach the broker
    through delay_relay, a slow link, from inside --netns when given;
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
      broker_many  for each count of --many-workers, fake workers of this
                   process (one DEALER each) drain N no-ops: the rate, the
                   broker's CPU per task, and a newcomer's wait for its
                   first job while the others are busy (bench_many.c); a
                   second JSON line has the per-count figures

    Fair-share workloads: two clients of one dpool-broker process at once,
    --procs workers (bench_fair.c says more):
      fair_apply_seq  sequential applies' p50 and p99 on the idle broker,
                      then while another client has 1,000,000 no-ops queued
      fair_two        no-ops/s of one client alone and of two at once; then
                      how busy the workers are with one, then two, busy
                      clients of 1 ms and 2 ms tasks, and each one's share

    Every count is its default times --scale (at least 1). Output: one JSON
    object on stdout with the rate, latencies, peak RSS of the main process,
    the largest worker process and the broker. Every process this program
    starts, it stops by pid. Exits 0 on success, 1 on failure (said on
    stderr), 2 on a usage error.

    Layout: this file holds the options, the output, main and the helpers
    every workload shares (clock, failure, processes, the broker's start,
    the slow link's relay); bench_pool.c the pool workloads;
    bench_broker.c the broker-only workloads; bench_many.c broker_many;
    bench_fair.c the fair-share workloads; bench_peer.c the wire-protocol
    peer the last three use. dpool_bench.h is what they share.
*/
#define _GNU_SOURCE /* setns */
#include "dpool_bench.h"

#include "dp_proto.h"
#include "dp_supervisor.h"
#include "dpool.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE      2
#define DEFAULT_PROCS   2
#define BROKER_LOG_TAIL 2000 /* bytes of the broker's log shown on a failure */
#define DEFAULT_MANY    "10,100,1000"
#define MAX_MANY        100000 /* broker_many: workers in one count */

bench_options_t bench_options;
bench_procs_t bench_procs = {.broker = -1, .workers = -1, .client = -1, .relay = -1};

/*  ---------------------------------------------------------------------------
    Helpers: clock, failure, processes.
*/

double
bench_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*  Copies the end of the broker's log (if one was started) to stderr, so
    that a failure says what the broker said before its directory goes. */
static void
s_dump_broker_log (void)
{
    if (!bench_procs.dir[0])
        return;
    char path[BENCH_PATH_SIZE + 32];
    snprintf (path, sizeof path, "%s/broker.log", bench_procs.dir);
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
void __attribute__ ((noreturn, format (printf, 1, 2))) bench_fail (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "dpool_bench: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    s_dump_broker_log ();
    bench_stop_procs ();
    exit (1);
}

/*  Fails with the last dpool error after a call named what. */
void __attribute__ ((noreturn)) bench_fail_dpool (const char *what)
{
    int code = dpool_errno ();
    bench_fail ("%s: %s (%d)", what, dpool_strerror (code), code);
}

/*  A count scaled by --scale, at least 1. */
long
bench_scaled (long count)
{
    double value = (double)count * bench_options.scale;
    return value < 1 ? 1 : (long)(value + 0.5);
}

/*  The value of the first line "key: N kB" in /proc/pid/status, or 0. */
long
bench_proc_status_kb (pid_t pid, const char *key)
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
void
bench_stop_pid (pid_t pid, int sig)
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
void
bench_stop_procs (void)
{
    bench_stop_pid (bench_procs.client, SIGTERM);
    bench_procs.client = -1;
    bench_stop_pid (bench_procs.workers, SIGTERM);
    bench_procs.workers = -1;
    bench_stop_pid (bench_procs.relay, SIGTERM);
    bench_procs.relay = -1;
    bench_stop_pid (bench_procs.broker, SIGTERM);
    bench_procs.broker = -1;
    if (bench_procs.dir[0]) {
        char path[BENCH_PATH_SIZE + 32];
        const char *names[] = {
            "broker.ipc",         "endpoints",          "broker.log",
            "relay.port",         "relay.log",          "broker.journal",
            "broker.journal-wal", "broker.journal-shm", "broker.journal-journal"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf (path, sizeof path, "%s/%s", bench_procs.dir, names[i]);
            unlink (path);
        }
        rmdir (bench_procs.dir);
        bench_procs.dir[0] = '\0';
    }
}

/*  Starts dpool-broker on the transport of mode (tcp or ipc) in a private
    directory, waits for its endpoint file, and stores the endpoint clients
    and workers connect to. Must run before this process has a ZeroMQ
    context (it forks). Fails the run if the broker does not come up. */
static bench_mode_t s_broker_mode;
static const char *s_broker_max_queue;

void
bench_start_broker (bench_mode_t mode, const char *max_queue)
{
    snprintf (bench_procs.dir, sizeof bench_procs.dir, "/tmp/dpool-bench-XXXXXX");
    if (!mkdtemp (bench_procs.dir)) {
        bench_procs.dir[0] = '\0';
        bench_fail ("mkdtemp: %s", strerror (errno));
    }
    s_broker_mode = mode;
    s_broker_max_queue = max_queue;
    bench_restart_broker ();
}

void
bench_restart_broker (void)
{
    bench_mode_t mode = s_broker_mode;
    char bind[BENCH_PATH_SIZE + 32], file[BENCH_PATH_SIZE + 32], log[BENCH_PATH_SIZE + 32];
    char journal[BENCH_PATH_SIZE + 32];
    if (mode == BENCH_MODE_IPC)
        snprintf (bind, sizeof bind, "ipc://%s/broker.ipc", bench_procs.dir);
    else
        snprintf (bind, sizeof bind, "tcp://127.0.0.1:*");
    snprintf (file, sizeof file, "%s/endpoints", bench_procs.dir);
    snprintf (log, sizeof log, "%s/broker.log", bench_procs.dir);
    snprintf (journal, sizeof journal, "%s/broker.journal", bench_procs.dir);
    unlink (file);
    pid_t pid = fork ();
    if (pid < 0)
        bench_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2 (fd, STDOUT_FILENO);
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        char *argv[] = {(char *)bench_options.broker_bin,
                        "--bind",
                        bind,
                        "--endpoint-file",
                        file,
                        "--max-queue",
                        (char *)s_broker_max_queue,
                        "--nofunc-grace",
                        "-1",
                        bench_options.sync ? "--journal" : NULL,
                        journal,
                        "--sync",
                        (char *)bench_options.sync,
                        NULL};
        execv (bench_options.broker_bin, argv);
        _exit (127);
    }
    bench_procs.broker = pid;
    double deadline = bench_now () + BENCH_START_LIMIT_MS / 1000.0;
    while (bench_now () < deadline) {
        FILE *in = fopen (file, "r");
        if (in) {
            char line[BENCH_PATH_SIZE];
            bool got = fgets (line, sizeof line, in) != NULL;
            fclose (in);
            if (got && strchr (line, '\n')) {
                *strchr (line, '\n') = '\0';
                snprintf (bench_procs.endpoint, sizeof bench_procs.endpoint, "%s", line);
                return;
            }
        }
        if (waitpid (pid, NULL, WNOHANG) == pid) {
            bench_procs.broker = -1;
            bench_fail ("%s exited at start", bench_options.broker_bin);
        }
        usleep (10000);
    }
    bench_fail ("%s did not write %s in time", bench_options.broker_bin, file);
}

/*  Reads the first line of path into line (without its newline) once the
    file holds a whole line; false until then. */
static bool
s_read_line (const char *path, char *line, size_t size)
{
    FILE *in = fopen (path, "r");
    if (!in)
        return false;
    bool got = fgets (line, (int)size, in) != NULL;
    fclose (in);
    if (!got || !strchr (line, '\n'))
        return false;
    *strchr (line, '\n') = '\0';
    return true;
}

/*  Starts delay_relay between --relay-host and the broker; stores the
    endpoint the workers connect to. */
void
bench_start_relay (void)
{
    const char *port = strrchr (bench_procs.endpoint, ':');
    if (strncmp (bench_procs.endpoint, "tcp://", 6) != 0 || !port)
        bench_fail ("a relay needs a tcp broker, not %s", bench_procs.endpoint);
    char listen[BENCH_PATH_SIZE], connect[BENCH_PATH_SIZE], delay[32];
    char file[BENCH_PATH_SIZE + 32], log[BENCH_PATH_SIZE + 32];
    snprintf (listen, sizeof listen, "%s:0", bench_options.relay_host);
    snprintf (connect, sizeof connect, "127.0.0.1%s", port);
    snprintf (delay, sizeof delay, "%ld", bench_options.relay_delay_ms);
    snprintf (file, sizeof file, "%s/relay.port", bench_procs.dir);
    snprintf (log, sizeof log, "%s/relay.log", bench_procs.dir);
    pid_t pid = fork ();
    if (pid < 0)
        bench_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2 (fd, STDOUT_FILENO);
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        char *argv[] = {(char *)bench_options.relay_bin,
                        "--listen",
                        listen,
                        "--connect",
                        connect,
                        "--delay-ms",
                        delay,
                        "--port-file",
                        file,
                        NULL};
        execv (bench_options.relay_bin, argv);
        _exit (127);
    }
    bench_procs.relay = pid;
    double deadline = bench_now () + BENCH_START_LIMIT_MS / 1000.0;
    char line[16]; /* a port */
    while (!s_read_line (file, line, sizeof line)) {
        if (waitpid (pid, NULL, WNOHANG) == pid) {
            bench_procs.relay = -1;
            bench_fail ("%s exited at start (its log: %s)", bench_options.relay_bin, log);
        }
        if (bench_now () > deadline)
            bench_fail ("%s did not write %s in time", bench_options.relay_bin, file);
        usleep (10000);
    }
    int size = snprintf (bench_procs.worker_endpoint, sizeof bench_procs.worker_endpoint,
                         "tcp://%s:%s", bench_options.relay_host, line);
    if (size < 0 || (size_t)size >= sizeof bench_procs.worker_endpoint)
        bench_fail ("--relay-host is too long");
}

/*  In a fresh fork: enters the network namespace ip netns calls name. */
static void
s_enter_netns (const char *name)
{
    char path[BENCH_PATH_SIZE];
    snprintf (path, sizeof path, "/var/run/netns/%s", name);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns (fd, CLONE_NEWNET) != 0) {
        fprintf (stderr, "dpool_bench: cannot enter %s: %s\n", path, strerror (errno));
        _exit (1);
    }
    close (fd);
}

/*  Forks a copy of this program that serves procs workers to the broker. */
void
bench_start_workers (int procs)
{
    const char *endpoint =
        bench_procs.worker_endpoint[0] ? bench_procs.worker_endpoint : bench_procs.endpoint;
    pid_t pid = fork ();
    if (pid < 0)
        bench_fail ("fork: %s", strerror (errno));
    if (pid == 0) {
        if (bench_options.netns)
            s_enter_netns (bench_options.netns);
        if (bench_options.credit == 0)
            _exit (dpool_worker_serve (endpoint, procs) == 0 ? 0 : 1);
        /*  What dpool_worker_serve does, with the worker's credit set. */
        dp_supervisor_config_t config;
        memset (&config, 0, sizeof config);
        dp_worker_config_init (&config.worker);
        config.worker.endpoint = endpoint;
        config.worker.credit = bench_options.credit;
        config.procs = procs;
        _exit (dp_supervisor_run (&config) == 0 ? 0 : 1);
    }
    bench_procs.workers = pid;
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
             "                     echo1k_stream, echo64k_stream, sleep (pool\n"
             "                     workloads); broker_rss, broker_idle,\n"
             "                     cancel, cancel_all, broker_many, restart (broker-only\n"
             "                     workloads);\n"
             "                     fair_apply_seq, fair_two (two clients at once)\n"
             "  --mode M           embedded, tcp or ipc (default embedded; the broker-only\n"
             "                     and fair workloads use tcp unless ipc is given)\n"
             "  --scale F          multiply every count by F (default 1)\n"
             "  --procs N          worker processes (default %d)\n"
             "  --broker-bin PATH  the dpool-broker program (default: ./dpool-broker)\n"
             "  --credit N         tcp, ipc: each worker's credit (default: the library's)\n"
             "  --idle-workers N   broker_idle: fake workers (default %d times the scale)\n"
             "  --idle-seconds S   broker_idle: measuring time (default %.0f)\n"
             "  --many-workers L   broker_many: worker counts, comma-separated, run in\n"
             "                     that order (default %s)\n"
             "  --relay-delay-ms D tcp pool workloads: the workers reach the broker through\n"
             "                     delay_relay adding D ms of round trip (default: no relay)\n"
             "  --relay-bin PATH   the delay_relay program (default: ./delay_relay)\n"
             "  --relay-host IP    the address the relay listens on (default 127.0.0.1)\n"
             "  --netns NAME       tcp: run the workers in the network namespace NAME\n"
             "                     (ip netns add NAME; needs root; default: this one)\n"
             "  --journal-sync S   tcp, ipc: the broker keeps a journal (--journal) with\n"
             "                     --sync S (full, normal or off; default: no journal;\n"
             "                     the restart workload always has one, normal by default)\n",
             DEFAULT_PROCS, BENCH_N_IDLE, BENCH_IDLE_SECONDS, DEFAULT_MANY);
}

/*  The options s_parse_link_option takes (above the other ones' ids). */
enum { OPT_MANY = 512, OPT_RELAY_DELAY, OPT_RELAY_BIN, OPT_RELAY_HOST, OPT_NETNS };

/*  Parses --many-workers' comma-separated counts; exits on a usage error. */
static void
s_parse_many (const char *text)
{
    bench_options.many_count = 0;
    const char *at = text;
    while (*at) {
        char *end;
        long count = strtol (at, &end, 10);
        if (end == at || (*end && *end != ',') || count < 1 || count > MAX_MANY ||
            bench_options.many_count == BENCH_MANY_MAX) {
            fprintf (stderr, "dpool_bench: --many-workers is up to %d counts of 1..%d\n",
                     BENCH_MANY_MAX, MAX_MANY);
            exit (EXIT_USAGE);
        }
        bench_options.many[bench_options.many_count++] = count;
        at = *end ? end + 1 : end;
    }
    if (bench_options.many_count == 0) {
        fprintf (stderr, "dpool_bench: --many-workers needs a count\n");
        exit (EXIT_USAGE);
    }
}

/*  The slow-link and many-worker options; false if opt is none of them. */
static bool
s_parse_link_option (int opt, const char *arg)
{
    char *end;
    switch (opt) {
    case OPT_MANY:
        s_parse_many (arg);
        return true;
    case OPT_RELAY_DELAY:
        bench_options.relay_delay_ms = strtol (arg, &end, 10);
        if (*end || bench_options.relay_delay_ms < 0 || bench_options.relay_delay_ms > 60000) {
            fprintf (stderr, "dpool_bench: --relay-delay-ms is 0..60000\n");
            exit (EXIT_USAGE);
        }
        return true;
    case OPT_RELAY_BIN:
        bench_options.relay_bin = arg;
        return true;
    case OPT_RELAY_HOST:
        bench_options.relay_host = arg;
        return true;
    case OPT_NETNS:
        bench_options.netns = arg;
        return true;
    default:
        return false;
    }
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
        OPT_SECONDS,
        OPT_SYNC
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
        {"many-workers", required_argument, NULL, OPT_MANY},
        {"relay-delay-ms", required_argument, NULL, OPT_RELAY_DELAY},
        {"relay-bin", required_argument, NULL, OPT_RELAY_BIN},
        {"relay-host", required_argument, NULL, OPT_RELAY_HOST},
        {"netns", required_argument, NULL, OPT_NETNS},
        {"journal-sync", required_argument, NULL, OPT_SYNC},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    bench_options = (bench_options_t){.mode = BENCH_MODE_EMBEDDED,
                                      .scale = 1.0,
                                      .procs = DEFAULT_PROCS,
                                      .broker_bin = "./dpool-broker",
                                      .idle_seconds = BENCH_IDLE_SECONDS,
                                      .relay_bin = "./delay_relay",
                                      .relay_delay_ms = -1,
                                      .relay_host = "127.0.0.1"};
    s_parse_many (DEFAULT_MANY);
    int opt;
    char *end;
    while ((opt = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_WORKLOAD:
            bench_options.workload = optarg;
            break;
        case OPT_MODE:
            if (strcmp (optarg, "embedded") == 0)
                bench_options.mode = BENCH_MODE_EMBEDDED;
            else if (strcmp (optarg, "tcp") == 0)
                bench_options.mode = BENCH_MODE_TCP;
            else if (strcmp (optarg, "ipc") == 0)
                bench_options.mode = BENCH_MODE_IPC;
            else {
                fprintf (stderr, "dpool_bench: --mode is embedded, tcp or ipc\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_SCALE:
            bench_options.scale = strtod (optarg, &end);
            if (*end || !(bench_options.scale > 0 && bench_options.scale <= 100)) {
                fprintf (stderr, "dpool_bench: --scale is a number in (0, 100]\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_PROCS:
            bench_options.procs = (int)strtol (optarg, &end, 10);
            if (*end || bench_options.procs < 1 || bench_options.procs > 1024) {
                fprintf (stderr, "dpool_bench: --procs is 1..1024\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_BROKER:
            bench_options.broker_bin = optarg;
            break;
        case OPT_CREDIT:
            bench_options.credit = (int)strtol (optarg, &end, 10);
            if (*end || bench_options.credit < 1 || bench_options.credit > DP_MAX_CREDIT) {
                fprintf (stderr, "dpool_bench: --credit is 1..%d\n", DP_MAX_CREDIT);
                exit (EXIT_USAGE);
            }
            break;
        case OPT_IDLE:
            bench_options.idle_workers = strtol (optarg, &end, 10);
            if (*end || bench_options.idle_workers < 1 || bench_options.idle_workers > 100000) {
                fprintf (stderr, "dpool_bench: --idle-workers is 1..100000\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_SECONDS:
            bench_options.idle_seconds = strtod (optarg, &end);
            if (*end || !(bench_options.idle_seconds > 0 && bench_options.idle_seconds <= 3600)) {
                fprintf (stderr, "dpool_bench: --idle-seconds is in (0, 3600]\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_SYNC:
            if (strcmp (optarg, "full") && strcmp (optarg, "normal") && strcmp (optarg, "off")) {
                fprintf (stderr, "dpool_bench: --journal-sync is full, normal or off\n");
                exit (EXIT_USAGE);
            }
            bench_options.sync = optarg;
            break;
        case 'h':
            s_usage (stdout);
            exit (0);
        default:
            if (!s_parse_link_option (opt, optarg)) {
                s_usage (stderr);
                exit (EXIT_USAGE);
            }
        }
    }
    if (bench_options.relay_delay_ms >= 0 && bench_options.mode != BENCH_MODE_TCP) {
        fprintf (stderr, "dpool_bench: --relay-delay-ms needs --mode tcp\n");
        exit (EXIT_USAGE);
    }
    if (optind < argc || !bench_options.workload) {
        s_usage (stderr);
        exit (EXIT_USAGE);
    }
}

static const char *
s_mode_name (bench_mode_t mode)
{
    return mode == BENCH_MODE_EMBEDDED ? "embedded" : mode == BENCH_MODE_TCP ? "tcp" : "ipc";
}

static void
s_print (const bench_figures_t *f, bool broker_only)
{
    /*  VmHWM, not ru_maxrss: ru_maxrss keeps the high-water mark of the
        process that exec'd this one (bench/run.py). */
    long self_kb = bench_proc_status_kb (getpid (), "VmHWM");
    const char *transport = broker_only ? (bench_options.mode == BENCH_MODE_IPC ? "ipc" : "tcp")
                                        : s_mode_name (bench_options.mode);
    printf ("{\"system\": \"dpool\", \"transport\": \"%s\", \"workload\": \"%s\", "
            "\"tasks\": %ld, \"size\": %zu, \"procs\": %d, \"seconds\": %.6f, "
            "\"rate\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, \"ideal_seconds\": %.3f, "
            "\"bytes_per_task\": %.1f, \"payload_bytes\": %ld, \"cpu_percent\": %.3f, "
            "\"expired\": %ld, \"rss_main_kb\": %ld, \"rss_worker_kb\": %ld, "
            "\"rss_broker_kb\": %ld, \"rss_broker_idle_kb\": %ld, \"rss_broker_full_kb\": %ld, "
            "\"p50_idle_us\": %.2f, \"p99_idle_us\": %.2f, \"queued_start\": %ld, "
            "\"queued_end\": %ld, \"rate_alone\": %.1f, \"share_a\": %.4f, \"share_b\": %.4f, "
            "\"busy\": %.4f, \"busy_alone\": %.4f, \"window_seconds\": %.3f, \"tasks_a\": %ld, "
            "\"tasks_b\": %ld}\n",
            transport, bench_options.workload, f->tasks, f->size, bench_options.procs, f->seconds,
            f->seconds > 0 ? (double)f->tasks / f->seconds : 0.0, f->p50_us, f->p99_us,
            f->ideal_seconds, f->bytes_per_task, f->payload_bytes, f->cpu_percent, f->expired,
            self_kb, f->rss_worker_kb, f->rss_broker_kb, f->rss_broker_idle_kb,
            f->rss_broker_full_kb, f->p50_idle_us, f->p99_idle_us, f->queued_start, f->queued_end,
            f->rate_alone, f->share_a, f->share_b, f->busy, f->busy_alone, f->window_seconds,
            f->tasks_a, f->tasks_b);
}

/*  The per-count figures of broker_many, as one JSON object on its own line. */
static void
s_print_many (const bench_figures_t *f)
{
    const char *names[] = {"workers", "rate", "cpu_us", "join_ms"};
    printf ("{\"many\": {");
    for (int k = 0; k < 4; k++) {
        printf ("%s\"%s\": [", k ? ", " : "", names[k]);
        for (int i = 0; i < f->many_count; i++) {
            double value = k == 0   ? (double)f->many_workers[i]
                           : k == 1 ? f->many_rate[i]
                           : k == 2 ? f->many_cpu_us[i]
                                    : f->many_join_ms[i];
            printf ("%s%.3f", i ? ", " : "", value);
        }
        printf ("]");
    }
    printf ("}}\n");
}

int
main (int argc, char *argv[])
{
    s_parse_options (argc, argv);
    srand ((unsigned)getpid () ^ (unsigned)time (NULL));
    bench_register_tasks ();
    const char *w = bench_options.workload;
    bool broker_only = strcmp (w, "broker_rss") == 0 || strcmp (w, "broker_idle") == 0 ||
                       strcmp (w, "cancel") == 0 || strcmp (w, "cancel_all") == 0 ||
                       strcmp (w, "restart") == 0;
    if (strcmp (w, "restart") == 0 && !bench_options.sync)
        bench_options.sync = "normal";
    bool fair = strncmp (w, "fair_", 5) == 0;
    bool many = strcmp (w, "broker_many") == 0;
    bench_figures_t figures = {0};
    if (many)
        bench_many_workload (&figures);
    else if (fair)
        bench_fair_workload (&figures);
    else if (broker_only)
        bench_broker_workload (&figures);
    else
        bench_pool_workload (&figures);
    s_print (&figures, broker_only || fair || many);
    if (many)
        s_print_many (&figures);
    return 0;
}

/*  forwarder.c - the transport's own limit: what ZeroMQ alone allows on this
    machine, with no pool logic, for bench/run.py to compare dpool against.

    Layout: three kinds of process, each with its own ZeroMQ context, as
    dpool's broker mode has them (processes, not threads, so that the
    kernel's scheduling and the copies between address spaces are the same):

        client (DEALER) --> frontend ROUTER [forwarder] backend ROUTER --> N workers (DEALER)

    The forwarder process and the workers are forked before the parent
    creates any context (DESIGN.md, "fork and threads"). A worker announces
    itself with a one-frame message; the forwarder then hands requests to the
    workers in turn (round robin, no credit, no queue of its own) and routes
    each reply back by the client's routing id. Workers echo what they get.
    Every frame is moved, never copied, by the forwarder.

    Workloads (--workload):
      throughput  --requests tiny requests with --inflight of them in flight
                  (default 1,000); reports requests/s.
      latency     --requests requests one at a time; reports the round
                  trip's p50 and p99.
    --size sets the payload of either (default 8 bytes). With --keep the
    client keeps every reply of the throughput workload until the end, as a
    pool's caller keeps the handles of its apply_async calls (dpool_bench's
    echo workloads do): the memory of the replies, fresh for each one, is
    then part of what is timed.

    Output: one JSON object on stdout (bench/run.py reads it), with the
    rate, the latencies and each process's peak RSS. Exits 0 on success,
    1 on a failure (said on stderr), 2 on a usage error.
*/
#include <zmq.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE        2
#define MAX_WORKERS       64
#define DEFAULT_WORKERS   2
#define DEFAULT_INFLIGHT  1000
#define DEFAULT_REQUESTS  200000
#define DEFAULT_SIZE      8
#define WARMUP_REQUESTS   1000
#define SOCKET_HWM        1000000 /* far above what --inflight puts in the pipes */
#define ENDPOINT_MAX      256
#define READY_FRAME       "R" /* a worker's one-frame hello */
#define CHILD_STOP_WAIT_S 5
#define FORWARD_BURST     1000 /* messages moved per socket between two polls */

typedef enum { WORKLOAD_THROUGHPUT, WORKLOAD_LATENCY } s_workload_t;

typedef struct {
    const char *transport; /* "tcp" or "ipc" */
    s_workload_t workload;
    int workers;
    long requests;
    long inflight;
    size_t size;
    bool keep; /* keep every reply until the end */
} s_options_t;

/*  Seconds on the monotonic clock. */
static double
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*  Prints a failure and exits 1: the benchmark cannot go on. */
static void
s_die (const char *what)
{
    fprintf (stderr, "forwarder: %s: %s\n", what, zmq_strerror (errno));
    exit (1);
}

static void
s_set_int (void *socket, int option, int value)
{
    if (zmq_setsockopt (socket, option, &value, sizeof value) != 0)
        s_die ("zmq_setsockopt");
}

/*  Moves every frame of one message from one socket to another; returns
    the number of frames. The frames are handed over, not copied. */
static int
s_move_rest (void *from, void *to)
{
    int frames = 0;
    int more = 1;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, from, 0) < 0)
            s_die ("forwarder recv");
        more = zmq_msg_more (&frame);
        if (zmq_msg_send (&frame, to, more ? ZMQ_SNDMORE : 0) < 0)
            s_die ("forwarder send");
        frames++;
    }
    return frames;
}

/*  The forwarder process: binds both ROUTERs, writes their endpoints (one
    line each) to report_fd, then forwards until killed. Never returns. */
static void
s_forwarder_main (const s_options_t *options, int report_fd)
{
    void *ctx = zmq_ctx_new ();
    void *frontend = zmq_socket (ctx, ZMQ_ROUTER);
    void *backend = zmq_socket (ctx, ZMQ_ROUTER);
    if (!frontend || !backend)
        s_die ("zmq_socket");
    void *sockets[2] = {frontend, backend};
    for (int i = 0; i < 2; i++) {
        s_set_int (sockets[i], ZMQ_ROUTER_MANDATORY, 1);
        s_set_int (sockets[i], ZMQ_SNDHWM, SOCKET_HWM);
        s_set_int (sockets[i], ZMQ_RCVHWM, SOCKET_HWM);
        s_set_int (sockets[i], ZMQ_LINGER, 0);
    }
    char endpoints[2][ENDPOINT_MAX];
    for (int i = 0; i < 2; i++) {
        char bind[ENDPOINT_MAX];
        if (strcmp (options->transport, "ipc") == 0)
            snprintf (bind, sizeof bind, "ipc:///tmp/dpool-fwd-%d-%d.ipc", (int)getpid (), i);
        else
            snprintf (bind, sizeof bind, "tcp://127.0.0.1:*");
        if (zmq_bind (sockets[i], bind) != 0)
            s_die ("zmq_bind");
        size_t size = sizeof endpoints[i];
        if (zmq_getsockopt (sockets[i], ZMQ_LAST_ENDPOINT, endpoints[i], &size) != 0)
            s_die ("ZMQ_LAST_ENDPOINT");
    }
    dprintf (report_fd, "%s\n%s\n", endpoints[0], endpoints[1]);
    close (report_fd);

    /*  Worker routing ids, in the order they said hello. */
    zmq_msg_t workers[MAX_WORKERS];
    int nworkers = 0;
    int next = 0;
    zmq_pollitem_t items[2] = {{backend, 0, ZMQ_POLLIN, 0}, {frontend, 0, ZMQ_POLLIN, 0}};
    while (true) {
        /*  Requests wait in the frontend until every worker has said hello. */
        int nitems = nworkers == options->workers ? 2 : 1;
        if (zmq_poll (items, nitems, -1) < 0) {
            if (errno == EINTR)
                continue;
            s_die ("zmq_poll");
        }
        /*  Each socket is drained before the next poll: one poll per burst,
            not per message, as any forwarder tuned for throughput does. */
        for (long burst = 0; burst < FORWARD_BURST; burst++) {
            /*  From a worker: [worker id] READY or [worker id, client id, payload]. */
            zmq_msg_t id;
            zmq_msg_init (&id);
            if (zmq_msg_recv (&id, backend, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&id);
                if (errno == EAGAIN || errno == EINTR)
                    break;
                s_die ("backend recv");
            }
            zmq_msg_t first;
            zmq_msg_init (&first);
            if (zmq_msg_recv (&first, backend, 0) < 0)
                s_die ("backend recv");
            if (!zmq_msg_more (&first)) {
                if (nworkers < MAX_WORKERS && nworkers < options->workers) {
                    zmq_msg_init (&workers[nworkers]);
                    zmq_msg_move (&workers[nworkers++], &id);
                }
                zmq_msg_close (&first);
            } else {
                if (zmq_msg_send (&first, frontend, ZMQ_SNDMORE) < 0)
                    s_die ("frontend send");
                s_move_rest (backend, frontend);
            }
            zmq_msg_close (&id);
        }
        for (long burst = 0; nworkers == options->workers && burst < FORWARD_BURST; burst++) {
            /*  From the client: [client id, payload] goes to the next worker. */
            zmq_msg_t client;
            zmq_msg_init (&client);
            if (zmq_msg_recv (&client, frontend, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&client);
                if (errno == EAGAIN || errno == EINTR)
                    break;
                s_die ("frontend recv");
            }
            zmq_msg_t id;
            zmq_msg_init (&id);
            zmq_msg_copy (&id, &workers[next]);
            next = (next + 1) % nworkers;
            if (zmq_msg_send (&id, backend, ZMQ_SNDMORE) < 0)
                s_die ("backend send");
            if (zmq_msg_send (&client, backend, ZMQ_SNDMORE) < 0)
                s_die ("backend send");
            s_move_rest (frontend, backend);
        }
    }
}

/*  A worker process: says hello, then echoes every request until killed.
    Never returns. */
static void
s_worker_main (const char *endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *socket = zmq_socket (ctx, ZMQ_DEALER);
    if (!socket)
        s_die ("zmq_socket");
    s_set_int (socket, ZMQ_SNDHWM, SOCKET_HWM);
    s_set_int (socket, ZMQ_RCVHWM, SOCKET_HWM);
    s_set_int (socket, ZMQ_LINGER, 0);
    if (zmq_connect (socket, endpoint) != 0)
        s_die ("zmq_connect");
    if (zmq_send (socket, READY_FRAME, strlen (READY_FRAME), 0) < 0)
        s_die ("worker send");
    while (true)
        s_move_rest (socket, socket);
}

/*  Forks a child running fn; exits the parent on failure. */
static pid_t
s_spawn (void)
{
    pid_t pid = fork ();
    if (pid < 0) {
        perror ("forwarder: fork");
        exit (1);
    }
    return pid;
}

static void
s_send_request (void *socket, const void *payload, size_t size)
{
    if (zmq_send (socket, payload, size, 0) < 0)
        s_die ("client send");
}

static void
s_recv_reply (void *socket, zmq_msg_t *reply)
{
    if (zmq_msg_recv (reply, socket, 0) < 0)
        s_die ("client recv");
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/*  The value below which fraction of the sorted values fall. */
static double
s_percentile (const double *sorted, long count, double fraction)
{
    long index = (long)(fraction * (double)(count - 1) + 0.5);
    return sorted[index];
}

/*  Runs count requests with inflight of them outstanding; returns seconds.
    With keep, every reply is kept (in a message of its own) until the
    clock has stopped. Exits 1 when out of memory. */
static double
s_run_pipelined (void *socket, const char *payload, size_t size, long count, long inflight,
                 bool keep)
{
    zmq_msg_t *replies = calloc (keep ? (size_t)count : 1, sizeof *replies);
    if (!replies) {
        fprintf (stderr, "forwarder: out of memory\n");
        exit (1);
    }
    double start = s_now ();
    long sent = 0, received = 0;
    while (sent < count && sent < inflight) {
        s_send_request (socket, payload, size);
        sent++;
    }
    while (received < count) {
        zmq_msg_t *reply = &replies[keep ? received : 0];
        zmq_msg_init (reply);
        s_recv_reply (socket, reply);
        if (zmq_msg_size (reply) != size) {
            fprintf (stderr, "forwarder: reply of %zu bytes, expected %zu\n", zmq_msg_size (reply),
                     size);
            exit (1);
        }
        if (!keep)
            zmq_msg_close (reply);
        received++;
        if (sent < count) {
            s_send_request (socket, payload, size);
            sent++;
        }
    }
    double seconds = s_now () - start;
    for (long i = 0; keep && i < count; i++)
        zmq_msg_close (&replies[i]);
    free (replies);
    return seconds;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: forwarder [OPTION]...\n"
             "ZeroMQ's own limit: one DEALER client, a ROUTER-to-ROUTER forwarder and\n"
             "DEALER echo workers, each a process; prints one JSON object.\n"
             "\n"
             "  --transport tcp|ipc   loopback transport (default tcp)\n"
             "  --workload W          throughput or latency (default throughput)\n"
             "  --requests N          requests to time (default %d)\n"
             "  --inflight N          requests in flight for throughput (default %d)\n"
             "  --workers N           worker processes (default %d, at most %d)\n"
             "  --size BYTES          payload of each request (default %d)\n"
             "  --keep                throughput: keep every reply until the end, as a\n"
             "                        pool's caller keeps its results (default: not)\n",
             DEFAULT_REQUESTS, DEFAULT_INFLIGHT, DEFAULT_WORKERS, MAX_WORKERS, DEFAULT_SIZE);
}

static long
s_parse_long (const char *name, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || end == text || *end || value < min || value > max) {
        fprintf (stderr, "forwarder: invalid %s '%s' (%ld..%ld)\n", name, text, min, max);
        exit (EXIT_USAGE);
    }
    return value;
}

static void
s_parse_options (int argc, char *argv[], s_options_t *options)
{
    enum {
        OPT_TRANSPORT = 256,
        OPT_WORKLOAD,
        OPT_REQUESTS,
        OPT_INFLIGHT,
        OPT_WORKERS,
        OPT_SIZE,
        OPT_KEEP
    };
    static const struct option long_options[] = {
        {"transport", required_argument, NULL, OPT_TRANSPORT},
        {"workload", required_argument, NULL, OPT_WORKLOAD},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"inflight", required_argument, NULL, OPT_INFLIGHT},
        {"workers", required_argument, NULL, OPT_WORKERS},
        {"size", required_argument, NULL, OPT_SIZE},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    *options = (s_options_t){"tcp",
                             WORKLOAD_THROUGHPUT,
                             DEFAULT_WORKERS,
                             DEFAULT_REQUESTS,
                             DEFAULT_INFLIGHT,
                             DEFAULT_SIZE,
                             false};
    int opt;
    while ((opt = getopt_long (argc, argv, "h", long_options, NULL)) != -1) {
        switch (opt) {
        case OPT_TRANSPORT:
            if (strcmp (optarg, "tcp") != 0 && strcmp (optarg, "ipc") != 0) {
                fprintf (stderr, "forwarder: --transport is tcp or ipc\n");
                exit (EXIT_USAGE);
            }
            options->transport = optarg;
            break;
        case OPT_WORKLOAD:
            if (strcmp (optarg, "throughput") == 0)
                options->workload = WORKLOAD_THROUGHPUT;
            else if (strcmp (optarg, "latency") == 0)
                options->workload = WORKLOAD_LATENCY;
            else {
                fprintf (stderr, "forwarder: --workload is throughput or latency\n");
                exit (EXIT_USAGE);
            }
            break;
        case OPT_REQUESTS:
            options->requests = s_parse_long ("--requests", optarg, 1, 1000000000L);
            break;
        case OPT_INFLIGHT:
            options->inflight = s_parse_long ("--inflight", optarg, 1, 1000000L);
            break;
        case OPT_WORKERS:
            options->workers = (int)s_parse_long ("--workers", optarg, 1, MAX_WORKERS);
            break;
        case OPT_SIZE:
            options->size = (size_t)s_parse_long ("--size", optarg, 1, 64L * 1024 * 1024);
            break;
        case OPT_KEEP:
            options->keep = true;
            break;
        case 'h':
            s_usage (stdout);
            exit (0);
        default:
            s_usage (stderr);
            exit (EXIT_USAGE);
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        exit (EXIT_USAGE);
    }
}

/*  Reads one line (without its newline) from fd into line; false at EOF. */
static bool
s_read_line (int fd, char *line, size_t size)
{
    size_t used = 0;
    while (used + 1 < size) {
        char c;
        ssize_t got = read (fd, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        if (c == '\n')
            break;
        line[used++] = c;
    }
    line[used] = '\0';
    return true;
}

/*  Stops a child by pid and returns its peak RSS in KiB (0 if unknown). */
static long
s_stop_child (pid_t pid)
{
    kill (pid, SIGTERM);
    struct rusage usage;
    int status;
    for (int i = 0; i < CHILD_STOP_WAIT_S * 100; i++) {
        pid_t done = wait4 (pid, &status, WNOHANG, &usage);
        if (done == pid)
            return usage.ru_maxrss;
        usleep (10000);
    }
    kill (pid, SIGKILL);
    if (wait4 (pid, &status, 0, &usage) == pid)
        return usage.ru_maxrss;
    return 0;
}

/*  This process's peak RSS in KiB: VmHWM, which starts afresh at exec.
    (ru_maxrss does not: it keeps the high-water mark of the process that
    forked and exec'd this program, e.g. bench/run.py.) */
static long
s_self_peak_kb (void)
{
    FILE *file = fopen ("/proc/self/status", "r");
    if (!file)
        return 0;
    char line[256];
    long value = 0;
    while (fgets (line, sizeof line, file)) {
        if (strncmp (line, "VmHWM:", 6) == 0) {
            value = strtol (line + 6, NULL, 10);
            break;
        }
    }
    fclose (file);
    return value;
}

/*  Forks the forwarder process and reads the endpoints it bound into
    frontend and backend (ENDPOINT_MAX bytes each). Returns its pid, or -1
    (said on stderr, the child stopped) if it did not start. */
static pid_t
s_start_forwarder (const s_options_t *options, char *frontend, char *backend)
{
    int report[2];
    if (pipe (report) != 0) {
        perror ("forwarder: pipe");
        return -1;
    }
    pid_t forwarder = s_spawn ();
    if (forwarder == 0) {
        close (report[0]);
        s_forwarder_main (options, report[1]);
    }
    close (report[1]);
    if (!s_read_line (report[0], frontend, ENDPOINT_MAX) ||
        !s_read_line (report[0], backend, ENDPOINT_MAX)) {
        fprintf (stderr, "forwarder: the forwarder process did not start\n");
        s_stop_child (forwarder);
        return -1;
    }
    close (report[0]);
    return forwarder;
}

/*  Runs count requests one at a time; returns seconds and fills in the
    round trip's p50 and p99 in microseconds. Exits 1 when out of memory. */
static double
s_run_latency (void *socket, const char *payload, size_t size, long count, double *p50_us,
               double *p99_us)
{
    double *rtt = malloc ((size_t)count * sizeof *rtt);
    if (!rtt) {
        fprintf (stderr, "forwarder: out of memory\n");
        exit (1);
    }
    zmq_msg_t reply;
    zmq_msg_init (&reply);
    double start = s_now ();
    for (long i = 0; i < count; i++) {
        double sent = s_now ();
        s_send_request (socket, payload, size);
        s_recv_reply (socket, &reply);
        rtt[i] = s_now () - sent;
    }
    double seconds = s_now () - start;
    zmq_msg_close (&reply);
    qsort (rtt, (size_t)count, sizeof *rtt, s_compare_double);
    *p50_us = s_percentile (rtt, count, 0.50) * 1e6;
    *p99_us = s_percentile (rtt, count, 0.99) * 1e6;
    free (rtt);
    return seconds;
}

/*  The client's part: connects a DEALER to frontend, warms up, then runs
    the workload; returns its seconds and, for latency, fills in p50 and
    p99. Makes this process's only context, so must run after every fork.
    Exits 1 on a failure. */
static double
s_run_client (const s_options_t *options, const char *frontend, double *p50_us, double *p99_us)
{
    void *ctx = zmq_ctx_new ();
    void *client = zmq_socket (ctx, ZMQ_DEALER);
    if (!client)
        s_die ("zmq_socket");
    s_set_int (client, ZMQ_SNDHWM, SOCKET_HWM);
    s_set_int (client, ZMQ_RCVHWM, SOCKET_HWM);
    s_set_int (client, ZMQ_LINGER, 0);
    if (zmq_connect (client, frontend) != 0)
        s_die ("zmq_connect");

    char *payload = malloc (options->size);
    if (!payload) {
        fprintf (stderr, "forwarder: out of memory\n");
        exit (1);
    }
    memset (payload, 'x', options->size);

    /*  Warm up: every connection made, every worker registered. */
    s_run_pipelined (client, payload, options->size, WARMUP_REQUESTS, options->workers, false);

    double seconds;
    if (options->workload == WORKLOAD_THROUGHPUT)
        seconds = s_run_pipelined (client, payload, options->size, options->requests,
                                   options->inflight, options->keep);
    else
        seconds =
            s_run_latency (client, payload, options->size, options->requests, p50_us, p99_us);
    free (payload);
    zmq_close (client);
    zmq_ctx_term (ctx);
    return seconds;
}

int
main (int argc, char *argv[])
{
    s_options_t options;
    s_parse_options (argc, argv, &options);

    char frontend[ENDPOINT_MAX], backend[ENDPOINT_MAX];
    pid_t forwarder = s_start_forwarder (&options, frontend, backend);
    if (forwarder < 0)
        return 1;
    pid_t workers[MAX_WORKERS];
    for (int i = 0; i < options.workers; i++) {
        workers[i] = s_spawn ();
        if (workers[i] == 0)
            s_worker_main (backend);
    }

    /*  Only now, with every child forked, does this process make a context. */
    double p50_us = 0, p99_us = 0;
    double seconds = s_run_client (&options, frontend, &p50_us, &p99_us);

    long forwarder_kb = s_stop_child (forwarder);
    long worker_kb = 0;
    for (int i = 0; i < options.workers; i++) {
        long kb = s_stop_child (workers[i]);
        if (kb > worker_kb)
            worker_kb = kb;
    }
    if (strcmp (options.transport, "ipc") == 0) {
        for (int i = 0; i < 2; i++) {
            char path[ENDPOINT_MAX];
            snprintf (path, sizeof path, "/tmp/dpool-fwd-%d-%d.ipc", (int)forwarder, i);
            unlink (path);
        }
    }
    long self_kb = s_self_peak_kb ();

    printf ("{\"system\": \"forwarder\", \"transport\": \"%s\", \"workload\": \"%s\", "
            "\"tasks\": %ld, \"size\": %zu, \"inflight\": %ld, \"workers\": %d, \"keep\": %s, "
            "\"seconds\": %.6f, \"rate\": %.1f, \"p50_us\": %.2f, \"p99_us\": %.2f, "
            "\"rss_main_kb\": %ld, \"rss_worker_kb\": %ld, \"rss_broker_kb\": %ld}\n",
            options.transport, options.workload == WORKLOAD_THROUGHPUT ? "throughput" : "latency",
            options.requests, options.size,
            options.workload == WORKLOAD_THROUGHPUT ? options.inflight : 1L, options.workers,
            options.keep ? "true" : "false", seconds, (double)options.requests / seconds, p50_us,
            p99_us, self_kb, worker_kb, forwarder_kb);
    return 0;
}

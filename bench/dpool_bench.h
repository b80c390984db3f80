/*  dpool_bench.h - what the files of the dpool_bench program share: its
    options, the figures a workload fills in, the processes a run started,
    and the helpers that every workload uses (clock, failure, processes).

    The program is six files: dpool_bench.c (options, output, main and
    these helpers), bench_pool.c (the workloads through the client library),
    bench_broker.c (the broker-only workloads, spoken over the wire
    protocol), bench_many.c (many busy workers), bench_fair.c (two clients
    of one broker at once) and
    bench_peer.c (a peer over the wire protocol, bench_peer.h). Private to
    bench/; nothing here is dpool's API.
*/
#ifndef DPOOL_BENCH_H
#define DPOOL_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*  Defaults, limits and names used by more than one file (counts are
    before --scale). */
#define BENCH_N_IDLE         1000
#define BENCH_IDLE_SECONDS   10.0
#define BENCH_WAIT_LIMIT_MS  (15 * 60 * 1000) /* no workload may take longer */
#define BENCH_START_LIMIT_MS 20000            /* for a broker or workers to come up */
#define BENCH_PATH_SIZE      512
#define BENCH_FN_NOOP        "bench_noop"
#define BENCH_FN_ECHO        "bench_echo"
#define BENCH_FN_SLEEP       "bench_sleep"
#define BENCH_FN_TIMED       "bench_timed"
#define BENCH_MANY_MAX       8 /* broker_many: worker counts in one run */

typedef enum { BENCH_MODE_EMBEDDED, BENCH_MODE_TCP, BENCH_MODE_IPC } bench_mode_t;

/*  The command line, as parsed by main. */
typedef struct {
    bench_mode_t mode;
    const char *workload;
    double scale;
    int procs;
    const char *broker_bin;
    int credit;        /* tcp, ipc: each worker's credit; 0: the library's default */
    long idle_workers; /* 0: BENCH_N_IDLE scaled */
    double idle_seconds;
    /*  tcp pool workloads across a slow link: the workers reach the broker
        through delay_relay (relay_bin) adding relay_delay_ms of round trip
        (-1: no relay), listening on relay_host; the workers run in the
        network namespace netns (ip netns's name; NULL: this one). */
    const char *relay_bin;
    long relay_delay_ms;
    const char *relay_host;
    const char *netns;
    /*  broker_many: the worker counts, in the order they run. */
    long many[BENCH_MANY_MAX];
    int many_count;
    const char *sync; /* tcp, ipc: the broker keeps a journal with this --sync; NULL: none */
} bench_options_t;

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
    /*  fair_apply_seq: p50_us and p99_us are with another client's tasks
        queued; these on the idle broker, and that client's queue when the
        loaded applies began and ended. */
    double p50_idle_us, p99_idle_us;
    long queued_start, queued_end;
    /*  fair_two: tasks and seconds are two clients' no-ops together; this
        the rate of one client alone; then each one's share of the
        workers' time over a window, the tasks each ran in it, and how
        busy the workers were in it (the tasks' run time over window x
        procs), with both clients and with one alone. */
    double rate_alone;
    double share_a, share_b, busy, busy_alone, window_seconds;
    long tasks_a, tasks_b;
    /*  broker_many, for each worker count in turn: the no-ops/s, the
        broker's CPU µs per task, and how long the worker that joined the
        busy ones waited for its first job (ms; -1: it never got one). */
    int many_count;
    long many_workers[BENCH_MANY_MAX];
    double many_rate[BENCH_MANY_MAX];
    double many_cpu_us[BENCH_MANY_MAX];
    double many_join_ms[BENCH_MANY_MAX];
} bench_figures_t;

/*  The broker and workers a broker-mode run started (-1: none), its
    private directory ("" when none) and the broker's endpoint. */
typedef struct {
    pid_t broker;
    pid_t workers;
    pid_t client; /* fair_apply_seq: the busy client's process */
    pid_t relay;  /* delay_relay between the workers and the broker */
    char dir[BENCH_PATH_SIZE];
    char endpoint[BENCH_PATH_SIZE];
    char worker_endpoint[BENCH_PATH_SIZE]; /* the relay's, else the broker's */
} bench_procs_t;

/*  The options, set once by main before any workload runs. */
extern bench_options_t bench_options;

/*  The processes of this run; bench_start_broker and bench_start_workers
    fill them in, bench_stop_procs clears them. */
extern bench_procs_t bench_procs;

/*  Seconds on the monotonic clock. */
double
bench_now (void);

/*  Says on stderr why the run failed (printf-style), with the end of the
    broker's log if one was started, stops every process the run started,
    and exits 1. Never returns. */
void __attribute__ ((noreturn, format (printf, 1, 2))) bench_fail (const char *format, ...);

/*  Fails the run with the last dpool error after the call named what. */
void __attribute__ ((noreturn)) bench_fail_dpool (const char *what);

/*  count multiplied by --scale, rounded, and at least 1. */
long
bench_scaled (long count);

/*  The value of the first line "key: N kB" in /proc/pid/status, or 0 when
    the file or the key is missing. */
long
bench_proc_status_kb (pid_t pid, const char *key);

/*  Sends sig to pid, waits up to a few seconds, then SIGKILLs it; reaps it
    either way. Does nothing for a pid <= 0. Blocks. */
void
bench_stop_pid (pid_t pid, int sig);

/*  Stops the workers, then the broker, and removes the private directory.
    Harmless when nothing was started or when called twice. */
void
bench_stop_procs (void);

/*  Starts dpool-broker (--broker-bin) on the transport of mode (tcp or ipc)
    in a private directory with the given --max-queue, waits for its
    endpoint file, and stores the endpoint in bench_procs. Must run before
    this process has a ZeroMQ context (it forks). Fails the run if the
    broker does not come up within BENCH_START_LIMIT_MS. */
void
bench_start_broker (bench_mode_t mode, const char *max_queue);

/*  Starts delay_relay (--relay-bin) between --relay-host and the tcp
    broker at bench_procs.endpoint, adding --relay-delay-ms of round trip,
    waits for its port and stores its endpoint as
    bench_procs.worker_endpoint. Must run after bench_start_broker and
    before this process has a ZeroMQ context. Fails the run if the relay
    does not come up within BENCH_START_LIMIT_MS. */
void
bench_start_relay (void);

/*  Starts the broker again, as bench_start_broker did, in the same
    directory (so on the same journal), after it was stopped; returns once
    it wrote its endpoint file. */
void
bench_restart_broker (void);

/*  Forks a copy of this program that serves procs workers to the broker
    at bench_procs.worker_endpoint, or bench_procs.endpoint when that is
    empty (with --credit, when given), inside --netns when given. Must run
    before this process has a ZeroMQ context. Fails the run if it cannot
    fork; the copy exits 1 if it cannot enter the namespace. */
void
bench_start_workers (int procs);

/*  Registers the task functions the pool workloads run (BENCH_FN_NOOP,
    BENCH_FN_ECHO, BENCH_FN_SLEEP, BENCH_FN_TIMED); fails the run if dpool
    refuses one. */
void
bench_register_tasks (void);

/*  Runs the pool workload named by --workload on a pool of --mode, fills
    in figures and stops every process it started. Fails the run on any
    error, or when the workload is not a pool workload. */
void
bench_pool_workload (bench_figures_t *figures);

/*  Runs the broker-only workload named by --workload against a
    dpool-broker process of its own, fills in figures and stops the
    broker. Fails the run on any error, or when the workload is unknown. */
void
bench_broker_workload (bench_figures_t *figures);

/*  Runs broker_many for each count of --many-workers, each against a
    dpool-broker process of its own, fills in figures and stops every
    process it started (bench_many.c). */
void
bench_many_workload (bench_figures_t *figures);

/*  Runs the fair-share workload named by --workload (fair_apply_seq,
    fair_two) against a dpool-broker process and workers of its own, fills
    in figures and stops every process it started. */
void
bench_fair_workload (bench_figures_t *figures);

typedef struct _dpool_pool_t dpool_pool_t;

/*  Waits until the broker has procs workers, then runs a few tasks so that
    every connection is made before a clock starts. */
void
bench_pool_warm_up (dpool_pool_t *pool, int procs);

/*  count sequential applies of a no-op; fills p50_us and p99_us of
    figures; returns the seconds they took. */
double
bench_pool_apply_seq (dpool_pool_t *pool, long count, bench_figures_t *figures);

#endif

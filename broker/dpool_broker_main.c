/*  dpool-broker - the dpool broker program.

    Binds one or more endpoints, serves clients and workers until SIGINT or
    SIGTERM, then says BYE to every peer and exits 0. Options may also come
    from DPOOL_* environment variables; a command-line option wins.
*/
#include "dp_broker.h"
#include "dp_metrics_http.h"
#include "dp_journal.h"
#include "dp_proto.h"
#include "dp_util.h"
#include "dpool.h"

#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define EXIT_USAGE      2
#define MAX_CONNECTIONS 100000000 /* the most --max-connections takes */
/*  ZeroMQ I/O threads. With one, that thread copies every byte of every
    connection and is the busiest of the broker's threads under large
    payloads; a second takes some of the connections (64 KiB echo: about
    a tenth more tasks per second, bench/README.md). */
#define IO_THREADS_DEFAULT 2
#define IO_THREADS_MAX     64

/*  Raises the soft limit on open files to the hard one, so that idle
    connections do not lock new peers out (each holds a descriptor), and
    logs both. */
static void
s_raise_nofile (void)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) != 0)
        return;
    rlim_t soft = limit.rlim_cur;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &limit) != 0) {
            dp_warn ("cannot raise the open-file limit from %llu to %llu: %s",
                     (unsigned long long)soft, (unsigned long long)limit.rlim_max,
                     strerror (errno));
            return;
        }
    }
    dp_info ("open files: soft limit %llu (was %llu), hard limit %llu",
             (unsigned long long)limit.rlim_cur, (unsigned long long)soft,
             (unsigned long long)limit.rlim_max);
}

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: dpool-broker [OPTION]...\n"
             "Hold dpool's task queue and hand tasks to workers over ZeroMQ.\n"
             "\n"
             "  -b, --bind EP          endpoint to bind, repeatable (env DPOOL_BIND;\n"
             "                         default %s); tcp://host:0 lets the kernel pick a port\n"
             "  -n, --name NAME        name shown to peers and in status (env DPOOL_NAME;\n"
             "                         default host:pid)\n"
             "      --heartbeat-ms MS  heartbeat interval (env DPOOL_HEARTBEAT_MS; default %d)\n"
             "      --expiry-ms MS     a peer silent this long is dead; more than 1.5 times\n"
             "                         the interval (env DPOOL_EXPIRY_MS; default %d)\n"
             "      --max-queue N      queued tasks before new ones are rejected\n"
             "                         (env DPOOL_MAX_QUEUE; default %d)\n"
             "      --max-queue-bytes N  bytes of task arguments held (queued or running)\n"
             "                         before new tasks are rejected\n"
             "                         (env DPOOL_MAX_QUEUE_BYTES; default %lu)\n"
             "      --max-held-results N  results held for one session that does not read\n"
             "                         them before its tasks wait (env DPOOL_MAX_HELD_RESULTS;\n"
             "                         default %d)\n"
             "      --max-held-bytes N  likewise in bytes of results\n"
             "                         (env DPOOL_MAX_HELD_BYTES; default %lu)\n"
             "      --max-sessions N   client sessions held, attached or not (a detached one\n"
             "                         expires), before a HELLO is refused\n"
             "                         (env DPOOL_MAX_SESSIONS; default %d)\n"
             "      --max-running-per-client N  tasks of one client (its CURVE key, or\n"
             "                         its session without CURVE) running at once; the rest\n"
             "                         wait their turn; a key's max_running in the key file\n"
             "                         wins (default 0: no bound)\n"
             "      --weights KEY=N[,KEY=N...]  shares of the workers' time: a client key\n"
             "                         (CURVE key text, or session id in hex) gets N shares;\n"
             "                         a key's weight in the key file wins (default: 1 each)\n"
             "      --max-named-bytes N  bytes of values the named queues hold before puts\n"
             "                         are rejected (env DPOOL_MAX_NAMED_BYTES; default %ld)\n"
             "      --result-ttl S     seconds a detached batch's results are kept, once\n"
             "                         nothing of it runs, if nobody collects them; a batch\n"
             "                         may ask for its own (default %d: 7 days)\n"
             "      --max-batches N    detached batches one key holds (without CURVE: all\n"
             "                         of them) before a new one is refused (default %d)\n"
             "      --max-batch-tasks N  tasks of one batch (default %d)\n"
             "      --max-batch-bytes N  bytes of results every batch holds together before\n"
             "                         new batch tasks are refused (default %ld)\n"
             "      --nofunc-grace MS  how long a task waits for a worker offering its\n"
             "                         function once workers are connected; -1 forever\n"
             "                         (env DPOOL_NOFUNC_GRACE_MS; default %d)\n"
             "      --max-connections N  connections admitted in all; those beyond are told\n"
             "                         why and cut (env DPOOL_MAX_CONNECTIONS; default: the\n"
             "                         open-file limit, raised to its hard limit, less %d)\n"
             "      --max-peer-connections N  connections admitted from one IP address\n"
             "                         (env DPOOL_MAX_PEER_CONNECTIONS; default %d)\n"
             "      --io-threads N     ZeroMQ I/O threads, which move the connections' bytes;\n"
             "                         a second one carries large payloads about a tenth\n"
             "                         faster (env DPOOL_IO_THREADS; default %d, 1 on a\n"
             "                         machine with one CPU)\n"
             "      --max-msg-size N   largest message accepted, in bytes; a peer sending a\n"
             "                         larger one is disconnected (env DPOOL_MAX_MSG_SIZE;\n"
             "                         default and most %d)\n"
             "      --curve-secret F   encrypt every connection with CURVE, with the broker's\n"
             "                         secret key file F (made by 'dpool keygen'); clients\n"
             "                         and workers then need its public key\n"
             "                         (env DPOOL_CURVE_SECRET)\n"
             "      --curve-clients D  with --curve-secret: admit only the public keys in\n"
             "                         directory D, each with every right\n"
             "                         (env DPOOL_CURVE_CLIENTS; default: any key)\n"
             "      --curve-keys F     with --curve-secret: admit only the keys in the key\n"
             "                         file F, each with its roles and quotas (README, 'Keys,\n"
             "                         roles and quotas'; env DPOOL_CURVE_KEYS); SIGHUP reads\n"
             "                         F (or D) again: a key removed loses access at once\n"
             "      --max-queued-per-client N  tasks one session (with --curve-keys: one\n"
             "                         key without max_queued) may hold, queued or running,\n"
             "                         before its new ones are rejected (default 0: no quota)\n"
             "      --max-queued-bytes-per-client N  likewise in bytes of arguments\n"
             "                         (default 0: no quota)\n"
             "      --journal PATH     keep sessions, their tasks and undelivered results,\n"
             "                         and named queues with their values in the SQLite file\n"
             "                         PATH, committed once per turn of the loop before any\n"
             "                         acknowledgement; a restart on PATH takes them back\n"
             "                         (env DPOOL_JOURNAL; default: none, all in memory)\n"
             "      --sync full|normal|off  how commits reach the disk: normal survives the\n"
             "                         broker's death (SIGKILL) but maybe not the machine's;\n"
             "                         full fsyncs every commit; off never fsyncs\n"
             "                         (env DPOOL_JOURNAL_SYNC; default normal)\n"
             "      --endpoint-file F  write the bound endpoints to F, one per line\n"
             "      --metrics-bind HOST:PORT  serve Prometheus metrics over HTTP at\n"
             "                         http://HOST:PORT/metrics ([HOST]:PORT for IPv6; port 0\n"
             "                         picks one, logged at info) (env DPOOL_METRICS_BIND;\n"
             "                         default: none)\n"
             "      --log-level L      error, warn, info or debug (env DPOOL_LOG; default warn)\n"
             "      --log-format F     text (a line with date, time and zone) or json (one\n"
             "                         object per line) (env DPOOL_LOG_FORMAT; default text)\n"
             "      --log-target T     stderr, syslog or journald (env DPOOL_LOG_TARGET;\n"
             "                         default stderr)\n"
             "  -h, --help             show this help and exit\n"
             "  -V, --version          show the version and exit\n"
             "\n"
             "SIGINT or SIGTERM stops the broker cleanly; SIGHUP reloads its keys. Under\n"
             "systemd (NOTIFY_SOCKET set) it reports READY=1 once bound and STOPPING=1 when\n"
             "it stops. See dpool-broker(1); the wire protocol is in docs/PROTOCOL.md.\n",
             DP_DEFAULT_ENDPOINT, DP_HEARTBEAT_MS, DP_EXPIRY_MS, DP_DEFAULT_MAX_QUEUE,
             DP_DEFAULT_MAX_QUEUE_BYTES, DP_DEFAULT_MAX_HELD_RESULTS, DP_DEFAULT_MAX_HELD_BYTES,
             DP_DEFAULT_MAX_SESSIONS, DP_QUEUE_BYTES, DP_BATCH_RESULT_TTL_S, DP_MAX_BATCHES,
             DP_MAX_BATCH_TASKS, DP_BATCH_BYTES, DP_DEFAULT_NOFUNC_GRACE, DP_BROKER_FD_RESERVE,
             DP_DEFAULT_MAX_PEER_CONNS, IO_THREADS_DEFAULT, DP_MAX_MSG_SIZE);
}

/*  Parses an integer option or exits with a usage error naming it. */
static long
s_int_option (const char *name, const char *text, long min, long max)
{
    long value;
    if (dp_parse_int (text, min, max, &value) != 0) {
        fprintf (stderr, "dpool-broker: invalid %s '%s' (expected %ld..%ld)\n", name, text, min,
                 max);
        exit (EXIT_USAGE);
    }
    return value;
}

#define BYTES_MAX (1L << 46) /* the largest byte bound an option takes: 64 TiB */

/*  Fills the byte and count bounds from the DPOOL_* variables. */
static void
s_bounds_from_environment (dp_broker_config_t *config)
{
    const char *env;
    if ((env = getenv ("DPOOL_MAX_QUEUE_BYTES")) && *env)
        config->max_queue_bytes =
            (size_t)s_int_option ("DPOOL_MAX_QUEUE_BYTES", env, 1, BYTES_MAX);
    if ((env = getenv ("DPOOL_MAX_HELD_RESULTS")) && *env)
        config->max_held_results =
            (size_t)s_int_option ("DPOOL_MAX_HELD_RESULTS", env, 1, 1000000000);
    if ((env = getenv ("DPOOL_MAX_HELD_BYTES")) && *env)
        config->max_held_bytes = (size_t)s_int_option ("DPOOL_MAX_HELD_BYTES", env, 1, BYTES_MAX);
    if ((env = getenv ("DPOOL_MAX_SESSIONS")) && *env)
        config->max_sessions = (size_t)s_int_option ("DPOOL_MAX_SESSIONS", env, 1, 100000000);
    if ((env = getenv ("DPOOL_MAX_NAMED_BYTES")) && *env)
        config->queue_bytes = (size_t)s_int_option ("DPOOL_MAX_NAMED_BYTES", env, 1, BYTES_MAX);
}

static const char *s_metrics_bind; /* --metrics-bind: HOST:PORT, or NULL */
static long s_io_threads;          /* --io-threads; 0: the default */
/*  Sets the journal's sync from text; exits EXIT_USAGE if it is none. */
static void
s_sync_option (const char *what, const char *text, dp_broker_config_t *config)
{
    dp_journal_sync_t sync;
    if (dp_journal_sync_parse (text, &sync) != 0) {
        fprintf (stderr, "dpool-broker: %s must be full, normal or off, not '%s'\n", what, text);
        exit (EXIT_USAGE);
    }
    config->journal_sync = (int)sync;
}

/*  Fills config from the DPOOL_* variables; exits EXIT_USAGE on a bad one. */
static void
s_from_environment (dp_broker_config_t *config)
{
    const char *env;
    s_bounds_from_environment (config);
    if ((env = getenv ("DPOOL_BIND")) && *env)
        config->binds[config->nbinds++] = env;
    if ((env = getenv ("DPOOL_NAME")) && *env)
        config->name = env;
    if ((env = getenv ("DPOOL_HEARTBEAT_MS")) && *env)
        config->heartbeat_ms = (int)s_int_option ("DPOOL_HEARTBEAT_MS", env, 10, 3600000);
    if ((env = getenv ("DPOOL_EXPIRY_MS")) && *env)
        config->expiry_ms = (int)s_int_option ("DPOOL_EXPIRY_MS", env, 20, 36000000);
    if ((env = getenv ("DPOOL_MAX_QUEUE")) && *env)
        config->max_queue = (size_t)s_int_option ("DPOOL_MAX_QUEUE", env, 1, 1000000000);
    if ((env = getenv ("DPOOL_MAX_CONNECTIONS")) && *env)
        config->max_connections =
            (size_t)s_int_option ("DPOOL_MAX_CONNECTIONS", env, 1, MAX_CONNECTIONS);
    if ((env = getenv ("DPOOL_MAX_PEER_CONNECTIONS")) && *env)
        config->max_peer_connections =
            (size_t)s_int_option ("DPOOL_MAX_PEER_CONNECTIONS", env, 1, MAX_CONNECTIONS);
    if ((env = getenv ("DPOOL_MAX_MSG_SIZE")) && *env)
        config->max_msg_size = s_int_option ("DPOOL_MAX_MSG_SIZE", env, 1024, DP_MAX_MSG_SIZE);
    if ((env = getenv ("DPOOL_NOFUNC_GRACE_MS")) && *env)
        config->nofunc_grace_ms = (int)s_int_option ("DPOOL_NOFUNC_GRACE_MS", env, -1, 86400000);

    if ((env = getenv ("DPOOL_JOURNAL")) && *env)
        config->journal = env;
    if ((env = getenv ("DPOOL_JOURNAL_SYNC")) && *env)
        s_sync_option ("DPOOL_JOURNAL_SYNC", env, config);
    if ((env = getenv ("DPOOL_CURVE_SECRET")) && *env)
        config->curve_secret = env;
    if ((env = getenv ("DPOOL_CURVE_CLIENTS")) && *env)
        config->curve_clients = env;
    if ((env = getenv ("DPOOL_CURVE_KEYS")) && *env)
        config->curve_keys = env;
    if ((env = getenv ("DPOOL_METRICS_BIND")) && *env)
        s_metrics_bind = env;
    if ((env = getenv ("DPOOL_IO_THREADS")) && *env)
        s_io_threads = s_int_option ("DPOOL_IO_THREADS", env, 1, IO_THREADS_MAX);
}

enum {
    OPT_HEARTBEAT = 256,
    OPT_EXPIRY,
    OPT_MAX_QUEUE,
    OPT_GRACE,
    OPT_FILE,
    OPT_LOG,
    OPT_LOG_FORMAT,
    OPT_LOG_TARGET,
    OPT_MSG,
    OPT_CURVE_SECRET,
    OPT_CURVE_CLIENTS,
    OPT_CURVE_KEYS,
    OPT_CLIENT_QUEUED,
    OPT_CLIENT_BYTES,
    OPT_MAX_CONNS,
    OPT_MAX_PEER_CONNS,
    OPT_MAX_QUEUE_BYTES,
    OPT_MAX_HELD_RESULTS,
    OPT_MAX_HELD_BYTES,
    OPT_MAX_NAMED_BYTES,
    OPT_RESULT_TTL,
    OPT_MAX_BATCHES,
    OPT_MAX_BATCH_TASKS,
    OPT_MAX_BATCH_BYTES,
    OPT_MAX_SESSIONS,
    OPT_MAX_RUNNING,
    OPT_WEIGHTS,
    OPT_METRICS_BIND,
    OPT_JOURNAL,
    OPT_SYNC,
    OPT_IO_THREADS
};

/*  Applies a bound's option to config. Returns false if opt is none. */
static bool
s_bound_option (int opt, dp_broker_config_t *config)
{
    switch (opt) {
    case OPT_MAX_QUEUE_BYTES:
        config->max_queue_bytes = (size_t)s_int_option ("--max-queue-bytes", optarg, 1, BYTES_MAX);
        return true;
    case OPT_MAX_HELD_RESULTS:
        config->max_held_results =
            (size_t)s_int_option ("--max-held-results", optarg, 1, 1000000000);
        return true;
    case OPT_MAX_HELD_BYTES:
        config->max_held_bytes = (size_t)s_int_option ("--max-held-bytes", optarg, 1, BYTES_MAX);
        return true;
    case OPT_MAX_SESSIONS:
        config->max_sessions = (size_t)s_int_option ("--max-sessions", optarg, 1, 100000000);
        return true;
    case OPT_MAX_NAMED_BYTES:
        config->queue_bytes = (size_t)s_int_option ("--max-named-bytes", optarg, 1, BYTES_MAX);
        return true;
    case OPT_RESULT_TTL:
        config->result_ttl_s =
            (uint32_t)s_int_option ("--result-ttl", optarg, 1, DP_MAX_BATCH_TTL_S);
        return true;
    case OPT_MAX_BATCHES:
        config->max_batches = (size_t)s_int_option ("--max-batches", optarg, 1, 100000000);
        return true;
    case OPT_MAX_BATCH_TASKS:
        config->max_batch_tasks =
            (size_t)s_int_option ("--max-batch-tasks", optarg, 1, 1000000000);
        return true;
    case OPT_MAX_BATCH_BYTES:
        config->max_batch_bytes = (size_t)s_int_option ("--max-batch-bytes", optarg, 1, BYTES_MAX);
        return true;
    case OPT_CLIENT_QUEUED:
        config->max_queued_per_client =
            (size_t)s_int_option ("--max-queued-per-client", optarg, 0, 1000000000);
        return true;
    case OPT_CLIENT_BYTES:
        config->max_queued_bytes_per_client =
            (size_t)s_int_option ("--max-queued-bytes-per-client", optarg, 0, BYTES_MAX);
        return true;
    case OPT_MAX_RUNNING:
        config->max_running =
            (size_t)s_int_option ("--max-running-per-client", optarg, 0, 1000000000);
        return true;
    case OPT_WEIGHTS:
        config->weights = optarg;
        return true;
    case OPT_JOURNAL:
        config->journal = optarg;
        return true;
    case OPT_SYNC:
        s_sync_option ("--sync", optarg, config);
        return true;
    default:
        return false;
    }
}

/*  Applies --log-level, --log-format or --log-target (or their variables,
    named by name) with value text. Returns false if opt is none of them;
    exits EXIT_USAGE on a bad value. */
static bool
s_log_option (int opt, const char *name, const char *text)
{
    int value;
    switch (opt) {
    case OPT_LOG:
        if ((value = dp_log_parse_level (text)) >= 0)
            dp_log_set_level (value);
        break;
    case OPT_LOG_FORMAT:
        if ((value = dp_log_parse_format (text)) >= 0)
            dp_log_set_format (value);
        break;
    case OPT_LOG_TARGET:
        if ((value = dp_log_parse_target (text)) >= 0)
            dp_log_set_target (value);
        break;
    default:
        return false;
    }
    if (value < 0) {
        fprintf (stderr, "dpool-broker: invalid %s '%s'\nTry 'dpool-broker --help'.\n", name,
                 text);
        exit (EXIT_USAGE);
    }
    return true;
}

/*  Applies DPOOL_LOG_FORMAT and DPOOL_LOG_TARGET; exits on a bad one. */
static void
s_log_from_environment (void)
{
    const char *env;
    if ((env = getenv ("DPOOL_LOG_FORMAT")) && *env)
        s_log_option (OPT_LOG_FORMAT, "DPOOL_LOG_FORMAT", env);
    if ((env = getenv ("DPOOL_LOG_TARGET")) && *env)
        s_log_option (OPT_LOG_TARGET, "DPOOL_LOG_TARGET", env);
}

/*  Applies one option (a value of getopt_long) to config. Returns -1 to go
    on, or the exit code the program ends with (--help, --version, a bad
    option). */
static int
s_option (int opt, dp_broker_config_t *config, bool *bind_given)
{
    static const char *const names[] = {"--log-level", "--log-format", "--log-target"};
    if (s_bound_option (opt, config) || (opt >= OPT_LOG && opt <= OPT_LOG_TARGET &&
                                         s_log_option (opt, names[opt - OPT_LOG], optarg)))
        return -1;
    switch (opt) {
    case 'b':
        if (!*bind_given) {
            config->nbinds = 0; /* the command line replaces DPOOL_BIND */
            *bind_given = true;
        }
        if (config->nbinds == DP_BROKER_MAX_BINDS) {
            fprintf (stderr, "dpool-broker: at most %d --bind options\n", DP_BROKER_MAX_BINDS);
            return EXIT_USAGE;
        }
        config->binds[config->nbinds++] = optarg;
        break;
    case 'n':
        config->name = optarg;
        break;
    case OPT_HEARTBEAT:
        config->heartbeat_ms = (int)s_int_option ("--heartbeat-ms", optarg, 10, 3600000);
        break;
    case OPT_EXPIRY:
        config->expiry_ms = (int)s_int_option ("--expiry-ms", optarg, 20, 36000000);
        break;
    case OPT_MAX_QUEUE:
        config->max_queue = (size_t)s_int_option ("--max-queue", optarg, 1, 1000000000);
        break;
    case OPT_GRACE:
        config->nofunc_grace_ms = (int)s_int_option ("--nofunc-grace", optarg, -1, 86400000);
        break;
    case OPT_MSG:
        config->max_msg_size = s_int_option ("--max-msg-size", optarg, 1024, DP_MAX_MSG_SIZE);
        break;
    case OPT_MAX_CONNS:
        config->max_connections =
            (size_t)s_int_option ("--max-connections", optarg, 1, MAX_CONNECTIONS);
        break;
    case OPT_MAX_PEER_CONNS:
        config->max_peer_connections =
            (size_t)s_int_option ("--max-peer-connections", optarg, 1, MAX_CONNECTIONS);
        break;
    case OPT_FILE:
        config->endpoint_file = optarg;
        break;
    case OPT_METRICS_BIND:
        s_metrics_bind = optarg;
        break;
    case OPT_IO_THREADS:
        s_io_threads = s_int_option ("--io-threads", optarg, 1, IO_THREADS_MAX);
        break;
    case OPT_CURVE_SECRET:
        config->curve_secret = optarg;
        break;
    case OPT_CURVE_CLIENTS:
        config->curve_clients = optarg;
        break;
    case OPT_CURVE_KEYS:
        config->curve_keys = optarg;
        break;
    case 'h':
        s_usage (stdout);
        return 0;
    case 'V':
        printf ("dpool-broker %s (protocol DPP/%d)\n", DPOOL_VERSION_STRING, DP_VERSION);
        return 0;
    default:
        fprintf (stderr, "Try 'dpool-broker --help'.\n");
        return EXIT_USAGE;
    }
    return -1;
}

/*  Reads the command line into config and checks the whole. Returns -1 to
    go on, or the exit code the program ends with. */
static int
s_parse (int argc, char *argv[], dp_broker_config_t *config)
{
    static const struct option options[] = {
        {"bind", required_argument, NULL, 'b'},
        {"name", required_argument, NULL, 'n'},
        {"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT},
        {"expiry-ms", required_argument, NULL, OPT_EXPIRY},
        {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
        {"max-queue-bytes", required_argument, NULL, OPT_MAX_QUEUE_BYTES},
        {"max-held-results", required_argument, NULL, OPT_MAX_HELD_RESULTS},
        {"max-held-bytes", required_argument, NULL, OPT_MAX_HELD_BYTES},
        {"max-named-bytes", required_argument, NULL, OPT_MAX_NAMED_BYTES},
        {"result-ttl", required_argument, NULL, OPT_RESULT_TTL},
        {"max-batches", required_argument, NULL, OPT_MAX_BATCHES},
        {"max-batch-tasks", required_argument, NULL, OPT_MAX_BATCH_TASKS},
        {"max-batch-bytes", required_argument, NULL, OPT_MAX_BATCH_BYTES},
        {"max-sessions", required_argument, NULL, OPT_MAX_SESSIONS},
        {"max-running-per-client", required_argument, NULL, OPT_MAX_RUNNING},
        {"weights", required_argument, NULL, OPT_WEIGHTS},
        {"journal", required_argument, NULL, OPT_JOURNAL},
        {"sync", required_argument, NULL, OPT_SYNC},
        {"nofunc-grace", required_argument, NULL, OPT_GRACE},
        {"endpoint-file", required_argument, NULL, OPT_FILE},
        {"metrics-bind", required_argument, NULL, OPT_METRICS_BIND},
        {"io-threads", required_argument, NULL, OPT_IO_THREADS},
        {"max-msg-size", required_argument, NULL, OPT_MSG},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNS},
        {"max-peer-connections", required_argument, NULL, OPT_MAX_PEER_CONNS},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"log-target", required_argument, NULL, OPT_LOG_TARGET},
        {"curve-secret", required_argument, NULL, OPT_CURVE_SECRET},
        {"curve-clients", required_argument, NULL, OPT_CURVE_CLIENTS},
        {"curve-keys", required_argument, NULL, OPT_CURVE_KEYS},
        {"max-queued-per-client", required_argument, NULL, OPT_CLIENT_QUEUED},
        {"max-queued-bytes-per-client", required_argument, NULL, OPT_CLIENT_BYTES},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    bool bind_given = false;
    int opt;
    while ((opt = getopt_long (argc, argv, "b:n:hV", options, NULL)) != -1) {
        int rc = s_option (opt, config, &bind_given);
        if (rc >= 0)
            return rc;
    }
    if (optind < argc) {
        fprintf (stderr, "dpool-broker: unexpected argument '%s'\nTry 'dpool-broker --help'.\n",
                 argv[optind]);
        return EXIT_USAGE;
    }
    if ((config->curve_clients || config->curve_keys) && !config->curve_secret) {
        fprintf (stderr, "dpool-broker: --curve-clients and --curve-keys need --curve-secret\n");
        return EXIT_USAGE;
    }
    if (config->curve_clients && config->curve_keys) {
        fprintf (stderr, "dpool-broker: give --curve-clients or --curve-keys, not both\n");
        return EXIT_USAGE;
    }
    if (config->expiry_ms <= DP_HEARTBEAT_ALONE (config->heartbeat_ms)) {
        fprintf (stderr, "dpool-broker: --expiry-ms must exceed 1.5 times --heartbeat-ms "
                         "(a quiet peer heartbeats that often)\n");
        return EXIT_USAGE;
    }
    return -1;
}

static dp_broker_t *s_broker; /* the broker SIGHUP reloads */

static void
s_on_hup (int sig)
{
    (void)sig;
    if (s_broker)
        dp_broker_reload_soon (s_broker);
}

/*  SIGHUP reloads the key configuration (at the loop's next round: the
    signal interrupts its poll). No SA_RESTART, so that the poll wakes. */
static void
s_reload_on_hup (dp_broker_t *broker)
{
    s_broker = broker;
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_hup;
    sigemptyset (&action.sa_mask);
    sigaction (SIGHUP, &action, NULL);
}

static char *
s_render_metrics (void *arg, size_t *size)
{
    return dp_broker_metrics ((dp_broker_t *)arg, size);
}

/*  dp_broker_run with the metrics' HTTP server in the same loop: one poll
    over the broker's descriptors and the server's, then the work of each
    that is due, all on this thread (dp_metrics_http.h says why). Returns
    0 once interrupted, -1 if poll(2) fails. */
static int
s_run_with_metrics (dp_broker_t *broker, dp_metrics_http_t *http)
{
    struct pollfd fds[DP_BROKER_MAX_FDS + 1];
    int nfds = dp_broker_fds (broker, fds);
    fds[nfds] = (struct pollfd){.fd = dp_metrics_http_fd (http), .events = POLLIN};
    while (!zsys_interrupted) {
        int wait = dp_broker_wait_ms (broker);
        int http_wait = dp_metrics_http_wait_ms (http);
        if (http_wait >= 0 && (wait < 0 || http_wait < wait))
            wait = http_wait;
        int rc = poll (fds, (nfds_t)nfds + 1, wait);
        if (rc < 0 && errno != EINTR)
            return -1;
        if (zsys_interrupted)
            break;
        if (rc <= 0)
            for (int i = 0; i <= nfds; i++)
                fds[i].revents = 0;
        dp_broker_work (broker, fds, nfds);
        if (fds[nfds].revents || dp_metrics_http_wait_ms (http) == 0)
            dp_metrics_http_work (http);
    }
    return 0;
}

/*  Runs the broker until interrupted, serving its metrics if asked.
    Returns the program's exit code. */
static int
s_serve (dp_broker_t *broker)
{
    if (!s_metrics_bind) {
        dp_broker_run (broker);
        return 0;
    }
    dp_metrics_http_t *http = dp_metrics_http_new (s_metrics_bind, s_render_metrics, broker);
    if (!http)
        return 1;
    dp_info ("metrics on %s, port %u, path " DP_METRICS_PATH, s_metrics_bind,
             dp_metrics_http_port (http));
    int rc = s_run_with_metrics (broker, http);
    dp_metrics_http_destroy (&http);
    return rc == 0 ? 0 : 1;
}

int
main (int argc, char *argv[])
{
    dp_broker_config_t config;
    dp_broker_config_init (&config);
    config.trim_memory = true; /* the process is the broker's alone */
    dp_log_set_tag ("dpool-broker");
    dp_malloc_keep ();
    dp_malloc_one_arena (); /* so that its malloc_trim reaches every thread's frees */
    s_from_environment (&config);
    s_log_from_environment ();
    int rc = s_parse (argc, argv, &config);
    if (rc >= 0)
        return rc;
    config.metrics = s_metrics_bind != NULL;

    /*  CZMQ's own handler turns SIGINT/SIGTERM into zsys_interrupted, which
        the loop checks: that is the clean stop this program wants. */
    zsys_init ();
    if (!s_io_threads)
        s_io_threads = dp_cpu_count () > 1 ? IO_THREADS_DEFAULT : 1;
    zsys_set_io_threads ((size_t)s_io_threads); /* before any socket */
    dp_info ("%ld ZeroMQ I/O thread%s", s_io_threads, s_io_threads == 1 ? "" : "s");
    s_raise_nofile ();
    dp_broker_t *broker = dp_broker_new (&config);
    if (!broker)
        return 1;
    const char *endpoints = dp_broker_endpoints (broker);
    dp_log (DP_LOG_INFO, "listening on %.*s", (int)strcspn (endpoints, "\n"), endpoints);
    s_reload_on_hup (broker);
    /*  Bound (and the endpoint file written): the service is up. */
    dp_service_notify ("READY=1");
    rc = s_serve (broker);
    dp_service_notify ("STOPPING=1");
    signal (SIGHUP, SIG_IGN);
    dp_info ("stopping");
    dp_broker_destroy (&broker);
    return rc;
}

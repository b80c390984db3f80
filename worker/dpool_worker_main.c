/*  dpool_worker_main.c - the dpool-worker program: N worker processes that
    serve a broker with the built-in functions and those of any plugins.

        dpool-worker --connect tcp://head:5555 --procs 8 --plugin ./libmytasks.so
        dpool-worker --plugin ./libmytasks.so --initializer my.init --initargs '[1]'
        dpool-worker --max-tasks 100
        dpool-worker --allow-exec=sh,convert     (commands as tasks: dpool map --exec)

    Plugins are loaded before the worker processes are forked, so each
    process has them. Exit status: 0 after a clean stop (SIGINT/SIGTERM), 1
    if it could not start (a plugin failed to load...), 2 for bad options,
    3 when the workers gave up because their handshakes with the broker
    kept failing (--handshake-timeout).
*/
#include "dp_exec.h"
#include "dp_json.h"
#include "dp_proto.h"
#include "dp_registry.h"
#include "dp_supervisor.h"
#include "dp_util.h"
#include "dpool.h"

#include <ctype.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE    2
#define EXIT_REFUSED  3
#define MAX_HANDSHAKE 86400 /* --handshake-timeout upper bound, s */
#define MAX_PLUGINS   64
#define MAX_PROCS     4096
#define MAX_TASKS     1000000000 /* --max-tasks upper bound */

static void
s_usage (FILE *out)
{
    fprintf (out,
             "Usage: dpool-worker [OPTION]...\n"
             "Runs worker processes that take tasks from a dpool broker and run them with\n"
             "the built-in functions (echo, sleep, fail, pid) and those of any plugins.\n"
             "Stops on SIGINT or SIGTERM.\n"
             "\n"
             "  -c, --connect EP     broker endpoint (env DPOOL_CONNECT; default %s)\n"
             "  -p, --procs N        worker processes, 0 for the default (env DPOOL_PROCS;\n"
             "                       default the CPUs the launcher gave this task:\n"
             "                       SLURM_CPUS_PER_TASK, SLURM_CPUS_ON_NODE or the\n"
             "                       affinity mask; %d here)\n"
             "  -C, --credit N       most tasks each process holds at once, 1 to %d;\n"
             "                       the broker sends fewer when tasks are slow or\n"
             "                       their arguments large\n"
             "                       (env DPOOL_CREDIT; default %d)\n"
             "  -n, --name NAME      worker name shown in the broker's status\n"
             "                       (default host:pid; with --procs N > 1, NAME/0..N-1)\n"
             "  -P, --plugin LIB.so  load a plugin that registers task functions; may be\n"
             "                       repeated (a plugin defines int dpool_plugin_init (void));\n"
             "                       replaces env DPOOL_PLUGINS, a list of them split by ':'\n"
             "  -i, --initializer FN run the registered function FN once in each worker\n"
             "                       process before its first task, as Pool's initializer\n"
             "                       (env DPOOL_INITIALIZER); a process whose initializer\n"
             "                       fails logs why, takes no task and is started again\n"
             "                       after a delay growing to 5 s\n"
             "  -a, --initargs JSON  the initializer's arguments, one JSON value\n"
             "                       (env DPOOL_INITARGS; default null)\n"
             "  -m, --max-tasks N    replace a worker process by a fresh one after it ran N\n"
             "                       tasks, as Pool's maxtasksperchild; 0 never\n"
             "                       (env DPOOL_MAX_TASKS; default 0)\n"
             "      --allow-exec[=PROG,...]  run shell commands as tasks (the function\n"
             "                       " DP_EXEC_FN ", which dpool map --exec submits): any\n"
             "                       program, or only those whose argv[0] is one of\n"
             "                       the PROGs, byte for byte ('*': any). It lets\n"
             "                       whoever reaches the broker run them as this user\n"
             "                       (env DPOOL_ALLOW_EXEC; default off: such tasks\n"
             "                       fail ENOFUNC)\n"
             "  -k, --curve-server KEY  the broker's CURVE public key, for a broker started\n"
             "                       with --curve-secret: 40 Z85 characters or a key file\n"
             "                       (env DPOOL_CURVE_SERVER)\n"
             "  -K, --curve-secret F this worker's secret key file (made by 'dpool keygen';\n"
             "                       env DPOOL_CURVE_SECRET); without it, a fresh key,\n"
             "                       enough for a broker that admits any key\n"
             "  -T, --test-builtins  also offer the test built-in crash, which aborts the\n"
             "                       worker process that runs it: for tests and demos only,\n"
             "                       since any client could kill the workers with it\n"
             "                       (env DPOOL_TEST_BUILTINS=1; default off)\n"
             "  -H, --handshake-timeout S  a worker process whose handshakes with the broker\n"
             "                       fail (a CURVE key it does not admit, the wrong\n"
             "                       --curve-server key, CURVE on one side only) logs why\n"
             "                       at once; after S seconds of that with none succeeding\n"
             "                       every process stops and dpool-worker exits 3; 0 to\n"
             "                       retry for ever (env DPOOL_HANDSHAKE_TIMEOUT; default\n"
             "                       %d). A broker not running yet is no failure: the\n"
             "                       workers wait for it\n"
             "  -l, --log-level L    error, warn, info or debug (env DPOOL_LOG; default warn)\n"
             "      --log-format F   text (a line with date, time and zone) or json (one\n"
             "                       object per line) (env DPOOL_LOG_FORMAT; default text)\n"
             "      --log-target T   stderr, syslog or journald (env DPOOL_LOG_TARGET;\n"
             "                       default stderr)\n"
             "  -h, --help           show this help and exit\n"
             "  -V, --version        show the version and exit\n"
             "\n"
             "Under systemd (NOTIFY_SOCKET set) each worker process reports READY=1 once\n"
             "it registered with the broker, and STOPPING=1 comes when it is stopped.\n"
             "Exit status: 0 after SIGINT or SIGTERM, 1 if it cannot start, 2 for bad\n"
             "options, 3 when the broker refused the workers' handshakes. See\n"
             "dpool-worker(1).\n",
             DP_DEFAULT_CONNECT, dp_supervisor_default_procs (), DP_MAX_CREDIT, DP_DEFAULT_CREDIT,
             DP_WORKER_HANDSHAKE_TIMEOUT_MS / 1000);
}

/*  Reports a usage error; returns the exit status for it. */
static int
s_bad (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static int
s_bad (const char *format, ...)
{
    char message[512];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    fprintf (stderr, "dpool-worker: %s\nTry 'dpool-worker --help' for more information.\n",
             message);
    return EXIT_USAGE;
}

/*  Packs the JSON text of --initargs into sbuf; returns 0, or the exit
    status after a message. */
static int
s_initargs (const char *json, msgpack_sbuffer *sbuf)
{
    msgpack_packer packer;
    msgpack_packer_init (&packer, sbuf, msgpack_sbuffer_write);
    char error[DP_JSON_ERROR_SIZE];
    if (dp_json_to_msgpack (&packer, json, strlen (json), error, sizeof error))
        return s_bad ("invalid --initargs: %s", error);
    return 0;
}

/*  Parses an integer option or variable into *value; returns 0 or -1. */
static int
s_number (const char *text, long min, long max, int *value)
{
    long parsed;
    if (dp_parse_int (text, min, max, &parsed))
        return -1;
    *value = (int)parsed;
    return 0;
}

/*  Parses --handshake-timeout (seconds, 0: for ever) into the worker's
    config; returns 0 or -1. */
static int
s_handshake_timeout (const char *text, dp_worker_config_t *worker)
{
    int seconds;
    if (s_number (text, 0, MAX_HANDSHAKE, &seconds))
        return -1;
    worker->handshake_timeout_ms = seconds == 0 ? -1 : seconds * 1000;
    return 0;
}

/*  True if endpoint looks like a ZeroMQ endpoint, transport://address: the
    processes check it for real, but a typo is better caught here, once,
    than by workers that keep failing. */
static bool
s_endpoint_ok (const char *endpoint)
{
    const char *sep = strstr (endpoint, "://");
    if (!sep || sep == endpoint || !sep[3])
        return false;
    for (const char *c = endpoint; c < sep; c++)
        if (!isalnum ((unsigned char)*c) && *c != '+' && *c != '-')
            return false;
    return true;
}

/*  What the environment and the command line ask for, read but not yet
    checked as a whole. */
typedef struct {
    dp_supervisor_config_t config;
    const char *plugins[MAX_PLUGINS];
    int nplugins;
    bool plugins_given;   /* a --plugin came: it replaces DPOOL_PLUGINS */
    const char *initargs; /* --initargs, JSON text; or NULL */
    const char *curve_server;
    const char *curve_secret;
    bool test_builtins;     /* --test-builtins */
    const char *allow_exec; /* --allow-exec: "*" or a list; NULL: off */
} options_t;

enum { OPT_LOG_FORMAT = 256, OPT_LOG_TARGET };

/*  Applies --log-format or --log-target (or its variable, name) with value
    text. Returns -1 to go on, or the exit status after a message. */
static int
s_log_option (int option, const char *name, const char *text)
{
    int value = option == OPT_LOG_FORMAT ? dp_log_parse_format (text) : dp_log_parse_target (text);
    if (value < 0)
        return s_bad ("invalid %s '%s' (expected %s)", name, text,
                      option == OPT_LOG_FORMAT ? "text or json" : "stderr, syslog or journald");
    if (option == OPT_LOG_FORMAT)
        dp_log_set_format (value);
    else
        dp_log_set_target (value);
    return -1;
}

/*  Splits DPOOL_PLUGINS (paths split by ':') into opts's plugins. Returns
    -1 to go on, or the exit status after a message. */
static int
s_plugins_from (const char *list, options_t *opts)
{
    static char s_list[8192]; /* the plugins' paths, for the process's life */
    if (strlen (list) >= sizeof s_list)
        return s_bad ("DPOOL_PLUGINS is too long (at most %zu bytes)", sizeof s_list - 1);
    snprintf (s_list, sizeof s_list, "%s", list);
    char *save = NULL;
    for (char *path = strtok_r (s_list, ":", &save); path; path = strtok_r (NULL, ":", &save)) {
        if (opts->nplugins == MAX_PLUGINS)
            return s_bad ("too many plugins in DPOOL_PLUGINS (at most %d)", MAX_PLUGINS);
        opts->plugins[opts->nplugins++] = path;
    }
    return -1;
}

/*  Fills opts from DPOOL_PLUGINS, DPOOL_LOG_FORMAT and DPOOL_LOG_TARGET.
    Returns -1 to go on, or the exit status after a message. */
static int
s_more_from_environment (options_t *opts)
{
    const char *env;
    int rc = -1;
    if ((env = getenv ("DPOOL_PLUGINS")) && *env)
        rc = s_plugins_from (env, opts);
    if (rc < 0 && (env = getenv ("DPOOL_LOG_FORMAT")) && *env)
        rc = s_log_option (OPT_LOG_FORMAT, "DPOOL_LOG_FORMAT", env);
    if (rc < 0 && (env = getenv ("DPOOL_LOG_TARGET")) && *env)
        rc = s_log_option (OPT_LOG_TARGET, "DPOOL_LOG_TARGET", env);
    return rc;
}

/*  Fills opts from the DPOOL_* variables. Returns -1 to go on, or the exit
    status after a message (a bad value). */
static int
s_from_environment (options_t *opts)
{
    dp_worker_config_t *worker = &opts->config.worker;
    const char *env = getenv ("DPOOL_CONNECT");
    if (env && *env)
        worker->endpoint = env;
    if ((env = getenv ("DPOOL_PROCS")) && *env &&
        s_number (env, 0, MAX_PROCS, &opts->config.procs))
        return s_bad ("invalid DPOOL_PROCS '%s' (expected 0 to %d)", env, MAX_PROCS);
    if ((env = getenv ("DPOOL_CREDIT")) && *env &&
        s_number (env, 1, DP_MAX_CREDIT, &worker->credit))
        return s_bad ("invalid DPOOL_CREDIT '%s' (expected 1 to %d)", env, DP_MAX_CREDIT);
    if ((env = getenv ("DPOOL_LOG")) && *env && dp_log_parse_level (env) < 0)
        return s_bad ("invalid DPOOL_LOG '%s' (expected error, warn, info or debug)", env);
    if ((env = getenv ("DPOOL_MAX_TASKS")) && *env &&
        s_number (env, 0, MAX_TASKS, &worker->max_tasks))
        return s_bad ("invalid DPOOL_MAX_TASKS '%s' (expected 0 to %d)", env, MAX_TASKS);
    if ((env = getenv ("DPOOL_HANDSHAKE_TIMEOUT")) && *env && s_handshake_timeout (env, worker))
        return s_bad ("invalid DPOOL_HANDSHAKE_TIMEOUT '%s' (expected 0 to %d seconds)", env,
                      MAX_HANDSHAKE);
    if ((env = getenv ("DPOOL_INITIALIZER")) && *env)
        worker->initializer = env;
    if ((env = getenv ("DPOOL_INITARGS")) && *env)
        opts->initargs = env;
    if ((env = getenv ("DPOOL_CURVE_SERVER")) && *env)
        opts->curve_server = env;
    if ((env = getenv ("DPOOL_CURVE_SECRET")) && *env)
        opts->curve_secret = env;
    if ((env = getenv ("DPOOL_ALLOW_EXEC")) && *env)
        opts->allow_exec = env;
    return s_more_from_environment (opts);
}

/*  Applies one option (a value of getopt_long, its value in optarg) to
    opts; argv names a bad one. Returns -1 to go on, or the exit status the
    program ends with (--help, --version, a bad option or value). */
static int
s_option (int option, options_t *opts, char *argv[])
{
    dp_worker_config_t *worker = &opts->config.worker;
    if (option == OPT_LOG_FORMAT || option == OPT_LOG_TARGET)
        return s_log_option (option, option == OPT_LOG_FORMAT ? "--log-format" : "--log-target",
                             optarg);
    switch (option) {
    case 'c':
        if (!*optarg)
            return s_bad ("--connect needs an endpoint");
        worker->endpoint = optarg;
        break;
    case 'p':
        if (s_number (optarg, 0, MAX_PROCS, &opts->config.procs))
            return s_bad ("invalid --procs '%s' (expected 0 to %d)", optarg, MAX_PROCS);
        break;
    case 'C':
        if (s_number (optarg, 1, DP_MAX_CREDIT, &worker->credit))
            return s_bad ("invalid --credit '%s' (expected 1 to %d)", optarg, DP_MAX_CREDIT);
        break;
    case 'n':
        if (!*optarg || strlen (optarg) > DP_MAX_NAME)
            return s_bad ("invalid --name '%s' (1 to %d bytes)", optarg, DP_MAX_NAME);
        worker->name = optarg;
        break;
    case 'i':
        if (!*optarg || strlen (optarg) > DP_MAX_NAME)
            return s_bad ("invalid --initializer '%s' (1 to %d bytes)", optarg, DP_MAX_NAME);
        worker->initializer = optarg;
        break;
    case 'a':
        opts->initargs = optarg;
        break;
    case 'm':
        if (s_number (optarg, 0, MAX_TASKS, &worker->max_tasks))
            return s_bad ("invalid --max-tasks '%s' (expected 0 to %d)", optarg, MAX_TASKS);
        break;
    case 'H':
        if (s_handshake_timeout (optarg, worker))
            return s_bad ("invalid --handshake-timeout '%s' (expected 0 to %d seconds)", optarg,
                          MAX_HANDSHAKE);
        break;
    case 'k':
        opts->curve_server = optarg;
        break;
    case 'K':
        opts->curve_secret = optarg;
        break;
    case 'T':
        opts->test_builtins = true;
        break;
    case 'X':
        opts->allow_exec = optarg ? optarg : "*";
        break;
    case 'P':
        if (!opts->plugins_given)
            opts->nplugins = 0; /* the command line replaces DPOOL_PLUGINS */
        opts->plugins_given = true;
        if (opts->nplugins == MAX_PLUGINS)
            return s_bad ("too many --plugin options (at most %d)", MAX_PLUGINS);
        opts->plugins[opts->nplugins++] = optarg;
        break;
    case 'l': {
        int level = dp_log_parse_level (optarg);
        if (level < 0)
            return s_bad ("invalid --log-level '%s' (expected error, warn, info or debug)",
                          optarg);
        dp_log_set_level (level);
        break;
    }
    case 'h':
        s_usage (stdout);
        return 0;
    case 'V':
        printf ("dpool-worker %s\n", DPOOL_VERSION_STRING);
        return 0;
    case ':':
        return s_bad ("option %s needs a value", argv[optind - 1]);
    default:
        if (optopt)
            return s_bad ("unknown option -%c", optopt);
        return s_bad ("unknown option %s", argv[optind - 1]);
    }
    return -1;
}

/*  Reads the command line into opts, over what the environment said, and
    checks the endpoint. Returns -1 to go on, or the exit status. */
static int
s_parse (int argc, char *argv[], options_t *opts)
{
    static const struct option options[] = {
        {"connect", required_argument, NULL, 'c'},
        {"procs", required_argument, NULL, 'p'},
        {"credit", required_argument, NULL, 'C'},
        {"name", required_argument, NULL, 'n'},
        {"plugin", required_argument, NULL, 'P'},
        {"initializer", required_argument, NULL, 'i'},
        {"initargs", required_argument, NULL, 'a'},
        {"max-tasks", required_argument, NULL, 'm'},
        {"curve-server", required_argument, NULL, 'k'},
        {"curve-secret", required_argument, NULL, 'K'},
        {"log-level", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
        {"log-target", required_argument, NULL, OPT_LOG_TARGET},
        {"test-builtins", no_argument, NULL, 'T'},
        {"handshake-timeout", required_argument, NULL, 'H'},
        {"allow-exec", optional_argument, NULL, 'X'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    opterr = 0;
    int option;
    while ((option = getopt_long (argc, argv, ":c:p:C:n:P:i:a:m:k:K:l:H:ThV", options, NULL)) !=
           -1) {
        int rc = s_option (option, opts, argv);
        if (rc >= 0)
            return rc;
    }
    if (optind < argc)
        return s_bad ("unexpected argument %s", argv[optind]);
    if (!s_endpoint_ok (opts->config.worker.endpoint))
        return s_bad ("invalid endpoint '%s' (expected transport://address, "
                      "e.g. tcp://head:5555)",
                      opts->config.worker.endpoint);
    return -1;
}

/*  Checks the options that go together, sets up CURVE, and packs
    --initargs into packed (which the caller destroys), for the config.
    Returns -1 to go on, or the exit status after a message. */
static int
s_check (options_t *opts, msgpack_sbuffer *packed)
{
    dp_worker_config_t *worker = &opts->config.worker;
    if (opts->initargs && !worker->initializer)
        return s_bad ("--initargs goes with --initializer");
    char err[256];
    if (opts->curve_secret && !opts->curve_server)
        return s_bad ("--curve-secret goes with --curve-server");
    if (opts->curve_server && dp_curve_client (&worker->curve, opts->curve_server,
                                               opts->curve_secret, err, sizeof err)) {
        fprintf (stderr, "dpool-worker: %s\n", err);
        return 1;
    }
    if (opts->initargs) {
        int rc = s_initargs (opts->initargs, packed);
        if (rc)
            return rc;
        worker->initargs = packed->data;
        worker->initargs_size = packed->size;
    }
    return -1;
}

/*  Loads the plugins, checks that the initializer is known, and runs the
    supervisor until it is stopped. Returns the exit status. */
static int
s_run (const options_t *opts)
{
    /*  Before the plugins: a plugin's own crash would replace it. */
    if (opts->test_builtins)
        dp_registry_test_builtins ();
    if (opts->allow_exec && dp_exec_register (opts->allow_exec)) {
        fprintf (stderr, "dpool-worker: invalid --allow-exec '%s' (expected '*' or PROG,...)\n",
                 opts->allow_exec);
        return EXIT_USAGE;
    }
    for (int i = 0; i < opts->nplugins; i++)
        if (dp_registry_load_plugin (opts->plugins[i])) {
            fprintf (stderr, "dpool-worker: cannot load plugin %s\n", opts->plugins[i]);
            return 1;
        }
    /*  A missing initializer is a mistake better caught here, once. */
    const char *initializer = opts->config.worker.initializer;
    if (initializer && !dp_registry_lookup (initializer, strlen (initializer), NULL)) {
        fprintf (stderr, "dpool-worker: no function named '%s' for --initializer\n", initializer);
        return 1;
    }
    int rc = dp_supervisor_run (&opts->config);
    if (rc == DP_SUPERVISOR_REFUSED) {
        fprintf (stderr,
                 "dpool-worker: the broker at %s refused the workers' handshakes "
                 "(see above)\n",
                 opts->config.worker.endpoint);
        return EXIT_REFUSED;
    }
    if (rc) {
        fprintf (stderr, "dpool-worker: cannot start: %s\n", dpool_strerror (dpool_errno ()));
        return 1;
    }
    return 0;
}

int
main (int argc, char *argv[])
{
    dp_log_set_tag ("dpool-worker");
    options_t opts;
    memset (&opts, 0, sizeof opts);
    dp_worker_config_init (&opts.config.worker);
    opts.config.worker.notify_service = true; /* a no-op unless systemd listens */
    /*  Environment first; options override it. */
    int rc = s_from_environment (&opts);
    if (rc >= 0)
        return rc;
    rc = s_parse (argc, argv, &opts);
    if (rc >= 0)
        return rc;
    msgpack_sbuffer packed;
    msgpack_sbuffer_init (&packed);
    rc = s_check (&opts, &packed);
    if (rc < 0)
        rc = s_run (&opts);
    msgpack_sbuffer_destroy (&packed);
    return rc;
}

/*  dpool_main.c - the dpool command: map, apply, status and demo against a
    dpool-broker, from the shell, and the broker's named queues.

        dpool map FN < args.jsonl > results.jsonl
        dpool apply FN JSON
        dpool status [--json]
        dpool demo
        dpool queue put NAME JSON | get NAME | size NAME

    Arguments and results are JSON on the command line and msgpack on the
    wire (cli/dp_json.h says how they map). Every option can also come
    from a DPOOL_* environment variable; the command line wins. The command
    never waits forever for a broker: it probes it with a status request
    before submitting, and again whenever results stop coming for a while,
    and gives up with exit status 3 when it does not answer.
*/
#include "demo.h"
#include "dp_curve.h"
#include "dp_json.h"
#include "dp_util.h"
#include "dpool.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*  Exit statuses. */
#define EXIT_OK          0   /* everything succeeded */
#define EXIT_TASK_FAILED 1   /* a task failed */
#define EXIT_USAGE       2   /* bad command line */
#define EXIT_UNREACHABLE 3   /* the broker did not answer in time */
#define EXIT_ERROR       4   /* invalid input, or any other error */
#define EXIT_SIGNAL_BASE 128 /* killed by a signal: 128 + its number */

#define DEFAULT_CONNECT            "tcp://127.0.0.1:5555"
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_BATCH              1000 /* map: input lines per submission */
#define DEFAULT_PROCS              DEMO_PROCS
#define MAX_CONNECT_TIMEOUT_MS     3600000
#define MAX_CHUNKSIZE              1000000
#define MAX_BATCH                  100000
#define MAX_PROCS                  1024
#define MAX_POSITIONAL             3  /* queue put NAME JSON */
#define POSITIONAL_VARIES          -1 /* the command checks its positional arguments */
#define MAX_FN_NAME                255

#define MAP_WINDOW      4                  /* batches in flight at once */
#define MAP_BATCH_BYTES (8 * 1024 * 1024)  /* a batch is sent once its arguments reach this */
#define MAP_LINGER_MS   20                 /* a partial batch waits this long for more lines */
#define MAX_LINE        (64 * 1024 * 1024) /* longest input line (a message's limit) */
#define MAX_ARGS_SIZE   (64 * 1024 * 1024 - 128 * 1024) /* packed arguments of one task */
#define READ_CHUNK      65536                           /* bytes read from stdin at once */
#define WAIT_SLICE_MS   10 /* longest single wait while others may be due */
#define STDOUT_BUFFER   65536

/*  ---------------------------------------------------------------------------
    Options.
*/
/*  CMD_ALL: every command that talks to a broker. */
enum {
    CMD_MAP = 1,
    CMD_APPLY = 2,
    CMD_STATUS = 4,
    CMD_DEMO = 8,
    CMD_QUEUE = 16,
    CMD_ALL = 31,
    CMD_KEYGEN = 32
};
enum { OPT_STRING, OPT_INT, OPT_FLAG };

typedef struct {
    const char *connect;
    long connect_timeout_ms;
    long chunksize;
    long timeout_ms;
    long batch;
    bool json;
    const char *worker;
    long procs;
    const char *curve_server;
    const char *curve_secret;
} s_options_t;

typedef struct {
    const char *name;  /* "--connect" */
    const char *env;   /* "DPOOL_CONNECT" */
    int kind;          /* OPT_STRING, OPT_INT or OPT_FLAG */
    unsigned commands; /* the commands it applies to */
    long min, max;     /* for OPT_INT */
    size_t offset;     /* of its value in s_options_t */
} s_option_t;

static const s_option_t s_option_table[] = {
    {"--connect", "DPOOL_CONNECT", OPT_STRING, CMD_ALL, 0, 0, offsetof (s_options_t, connect)},
    {"--connect-timeout-ms", "DPOOL_CONNECT_TIMEOUT_MS", OPT_INT, CMD_ALL, 1,
     MAX_CONNECT_TIMEOUT_MS, offsetof (s_options_t, connect_timeout_ms)},
    {"--chunksize", "DPOOL_CHUNKSIZE", OPT_INT, CMD_MAP, 0, MAX_CHUNKSIZE,
     offsetof (s_options_t, chunksize)},
    {"--timeout-ms", "DPOOL_TIMEOUT_MS", OPT_INT, CMD_MAP | CMD_APPLY | CMD_QUEUE, 0, INT_MAX,
     offsetof (s_options_t, timeout_ms)},
    {"--batch", "DPOOL_BATCH", OPT_INT, CMD_MAP, 1, MAX_BATCH, offsetof (s_options_t, batch)},
    {"--json", "DPOOL_JSON", OPT_FLAG, CMD_STATUS, 0, 0, offsetof (s_options_t, json)},
    {"--worker", "DPOOL_WORKER", OPT_STRING, CMD_DEMO, 0, 0, offsetof (s_options_t, worker)},
    {"--procs", "DPOOL_PROCS", OPT_INT, CMD_DEMO, 0, MAX_PROCS, offsetof (s_options_t, procs)},
    {"--curve-server", "DPOOL_CURVE_SERVER", OPT_STRING, CMD_ALL, 0, 0,
     offsetof (s_options_t, curve_server)},
    {"--curve-secret", "DPOOL_CURVE_SECRET", OPT_STRING, CMD_ALL, 0, 0,
     offsetof (s_options_t, curve_secret)},
};
#define OPTION_COUNT (sizeof s_option_table / sizeof s_option_table[0])

typedef struct {
    const char *name;
    unsigned id;
    int positional; /* how many positional arguments it takes, or POSITIONAL_VARIES */
    const char *help;
} s_command_t;

static const char s_help_main[] =
    "usage: dpool COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "dpool runs named task functions on the workers of a dpool-broker, the way\n"
    "Python's multiprocessing.Pool runs functions on its processes. Arguments and\n"
    "results are JSON.\n"
    "\n"
    "Commands:\n"
    "  map FN          run FN on every line of stdin (one JSON value each) and print\n"
    "                  one JSON result per line, in input order\n"
    "  apply FN JSON   run FN once on the JSON arguments and print its result\n"
    "  status          show the broker's workers, their functions and task counts\n"
    "  demo            run the tutorial's Pool(3) demo (embedded by default)\n"
    "  queue put NAME JSON, queue get NAME, queue size NAME\n"
    "                  put a value on the broker's named queue NAME, take one off,\n"
    "                  or count them (the queues tasks share, like Manager().Queue)\n"
    "  keygen PATH     make a CURVE key pair: PATH (the public key) and PATH_secret\n"
    "  help [COMMAND]  show the help of a command (also: dpool COMMAND --help)\n"
    "\n"
    "Options of every command:\n"
    "  --connect EP             the broker's endpoint\n"
    "                           [DPOOL_CONNECT; default " DEFAULT_CONNECT "]\n"
    "  --connect-timeout-ms N   how long the broker has to answer before dpool gives\n"
    "                           up with exit status 3\n"
    "                           [DPOOL_CONNECT_TIMEOUT_MS; default 5000]\n"
    "  --curve-server KEY       the broker's CURVE public key (40 Z85 characters or a\n"
    "                           key file), for a broker started with --curve-secret\n"
    "                           [DPOOL_CURVE_SERVER]\n"
    "  --curve-secret FILE      this client's secret key file; without it a fresh\n"
    "                           key, enough if the broker admits any key\n"
    "                           [DPOOL_CURVE_SECRET]\n"
    "  --help, -h               show help\n"
    "  --version                print dpool's version\n"
    "\n"
    "Every option can also be set with the environment variable shown in brackets;\n"
    "the command line wins. Start a broker with dpool-broker and workers with\n"
    "dpool-worker --connect EP (or your own program, see dpool_worker_serve).\n"
    "\n"
    "Exit status: 0 success, 1 a task failed, 2 bad usage, 3 the broker could not\n"
    "be reached, 4 invalid input or another error.\n";

static const char s_help_map[] =
    "usage: dpool map FN [--connect EP] [--chunksize N] [--timeout-ms N]\n"
    "                    < args.jsonl > results.jsonl\n"
    "\n"
    "Runs the function FN once for every line of standard input and prints one line\n"
    "of compact JSON for each: output line i is the result for input line i, in input\n"
    "order. Input is streamed in batches and results are printed as they arrive, so\n"
    "any number of lines runs in bounded memory.\n"
    "\n"
    "Input: each line holds one JSON value, FN's arguments (several go in an array).\n"
    "A blank line or invalid JSON is an error: the lines before it still run and\n"
    "print, then dpool names the line on stderr and exits with status 4.\n"
    "\n"
    "Failures: the line of a task that failed is, exactly,\n"
    "  {\"dpool_error\":{\"code\":\"EFAILED\",\"message\":\"...\"}}\n"
    "where code names the cause: EFAILED (FN reported failure; the message is its\n"
    "own), EDEADLINE (it ran past --timeout-ms), ELOST (the workers running it kept\n"
    "dying), ENOFUNC (no worker offers FN), ECANCELLED, EREJECTED (the broker's\n"
    "queue is full) or EINVAL (the worker could not read the arguments). The other\n"
    "lines are unaffected; the exit status is then 1.\n"
    "\n"
    "JSON and msgpack: integers are exact over the int64 and uint64 ranges; floats\n"
    "keep their value; msgpack bin is {\"$bin\":\"<base64>\"} and ext is\n"
    "{\"$ext\":[type,\"<base64>\"]}, both ways; a map key that is not a string prints as\n"
    "its JSON text; NaN and infinities print as null. Input nested deeper than\n"
    "31 arrays or objects is refused (task arguments cannot be deeper).\n"
    "\n"
    "Options:\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --chunksize N            tasks sent to a worker together; 0 chooses from the\n"
    "                           batch and the workers, as Pool does (1 with\n"
    "                           --timeout-ms) [DPOOL_CHUNKSIZE; 0]\n"
    "  --timeout-ms N           time limit of each task, 0 for none; a chunk is timed\n"
    "                           as one task [DPOOL_TIMEOUT_MS; 0]\n"
    "  --batch N                input lines submitted together; up to 4 batches are\n"
    "                           in flight at once [DPOOL_BATCH; 1000]\n"
    "  --connect-timeout-ms N   how long the broker has to answer, at the start and\n"
    "                           whenever results stop coming\n"
    "                           [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "Interrupted by SIGINT or SIGTERM, dpool cancels what is queued and exits with\n"
    "128 + the signal's number.\n"
    "\n"
    "Exit status: 0 every task succeeded, 1 a task failed, 2 bad usage, 3 the broker\n"
    "could not be reached (or stopped answering), 4 invalid input or another error.\n";

static const char s_help_apply[] =
    "usage: dpool apply FN JSON [--connect EP] [--timeout-ms N]\n"
    "\n"
    "Runs the function FN once with the arguments JSON (one JSON value; use -- before\n"
    "it if it starts with '-' and is not a number) and prints the result as compact\n"
    "JSON. If the task fails, the cause and its message go to stderr and the exit\n"
    "status is 1.\n"
    "\n"
    "Options:\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --timeout-ms N           the task's time limit, 0 for none\n"
    "                           [DPOOL_TIMEOUT_MS; 0]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "Exit status: 0 success, 1 the task failed, 2 bad usage, 3 the broker could not\n"
    "be reached, 4 invalid JSON or another error.\n";

static const char s_help_status[] =
    "usage: dpool status [--connect EP] [--json]\n"
    "\n"
    "Shows the broker's status: its workers with their functions and counts, tasks\n"
    "queued, in flight, done and failed, clients, and messages dropped. The broker\n"
    "counts a map's chunk of tasks as one task.\n"
    "\n"
    "Options:\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --json                   print the broker's whole status map as one line of\n"
    "                           JSON instead of a table [DPOOL_JSON=1]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "Exit status: 0 success, 2 bad usage, 3 the broker could not be reached.\n";

static const char s_help_demo[] =
    "usage: dpool demo [--connect EP | --worker EP [--procs N]]\n"
    "\n"
    "The tutorial's first example: a pool of 3 processes runs 10 tasks; each prints\n"
    "\"N started, pid P\", sleeps 0 to 2 s and prints \"N finished in T s\". dpool\n"
    "prints \"----start----\" once all are submitted and \"-----end-----\" after join.\n"
    "\n"
    "Options:\n"
    "  (none)                   run embedded: the pool forks its own 3 processes\n"
    "  --connect EP             submit the tasks to the broker at EP instead; some\n"
    "                           worker must offer \"" DEMO_FN "\" [DPOOL_CONNECT]\n"
    "  --worker EP              serve \"" DEMO_FN "\" to the broker at EP until SIGINT\n"
    "                           or SIGTERM [DPOOL_WORKER]\n"
    "  --procs N                worker processes with --worker; 0 means one per CPU\n"
    "                           [DPOOL_PROCS; 3]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "Exit status: 0 every task succeeded, 1 a task failed, 2 bad usage, 3 the broker\n"
    "could not be reached.\n";

static const char s_help_queue[] =
    "usage: dpool queue put NAME JSON [--timeout-ms N] [--connect EP]\n"
    "       dpool queue get NAME [--timeout-ms N] [--connect EP]\n"
    "       dpool queue size NAME [--connect EP]\n"
    "\n"
    "The broker's named queues, which programs and tasks on any worker share as\n"
    "Python's processes share a Manager().Queue(): first in, first out, held by the\n"
    "broker while it runs. NAME is 1 to 255 bytes; a queue is made when first used.\n"
    "\n"
    "  put NAME JSON    puts one JSON value (as msgpack, at most 1 MiB) at the back\n"
    "                   of the queue; waits for room if the queue is bounded and full\n"
    "  get NAME         takes the value at the front and prints it as one line of\n"
    "                   compact JSON; waits for one if the queue is empty\n"
    "  size NAME        prints how many values the queue holds\n"
    "\n"
    "Options:\n"
    "  --timeout-ms N           put, get: wait at most N ms (0: do not wait at all);\n"
    "                           without it they wait as long as it takes\n"
    "                           [DPOOL_TIMEOUT_MS]\n"
    "  --connect EP             the broker's endpoint [DPOOL_CONNECT]\n"
    "  --connect-timeout-ms N   [DPOOL_CONNECT_TIMEOUT_MS; 5000]\n"
    "\n"
    "Exit status: 0 success, 1 the queue was empty or full past the timeout, or the\n"
    "broker refused (the reason goes to stderr), 2 bad usage, 3 the broker could not\n"
    "be reached, 4 invalid JSON or another error.\n";

static const char s_help_keygen[] =
    "usage: dpool keygen PATH\n"
    "\n"
    "Makes a CURVE key pair for encrypted, authenticated connections (see README,\n"
    "Security): PATH holds the public key, safe to hand out; PATH_secret holds both\n"
    "keys and is made readable by its owner only. Existing files are never\n"
    "overwritten. The files are ZPL text in CZMQ's zcert layout.\n"
    "\n"
    "  the broker's pair:   dpool-broker --curve-secret PATH_secret; its clients\n"
    "                       and workers get --curve-server PATH\n"
    "  a client's or worker's pair: --curve-secret PATH_secret; PATH goes into the\n"
    "                       directory given to dpool-broker --curve-clients\n"
    "\n"
    "Exit status: 0 success, 2 bad usage, 4 the files could not be written.\n";

static const s_command_t s_commands[] = {
    {"map", CMD_MAP, 1, s_help_map},
    {"apply", CMD_APPLY, 2, s_help_apply},
    {"status", CMD_STATUS, 0, s_help_status},
    {"demo", CMD_DEMO, 0, s_help_demo},
    {"queue", CMD_QUEUE, POSITIONAL_VARIES, s_help_queue},
    {"keygen", CMD_KEYGEN, 1, s_help_keygen},
};
#define COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

/*  The state of one run of the command. */
typedef struct {
    s_options_t options;
    const s_command_t *command;
    const char *args[MAX_POSITIONAL];
    int nargs;
    dpool_pool_t *pool;
    int64_t last_heard_ms; /* when the broker last answered or sent a result */
    bool warned_no_workers;
} s_cli_t;

/*  Set by SIGINT/SIGTERM once a pool exists. */
static volatile sig_atomic_t s_signal;

/*  The command named name, or NULL. */
static const s_command_t *
s_command_find (const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        if (strcmp (s_commands[i].name, name) == 0)
            return &s_commands[i];
    return NULL;
}

/*  The option named name (which may carry "=value"), or NULL. */
static const s_option_t *
s_option_find (const char *name)
{
    size_t len = strcspn (name, "=");
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (strlen (s_option_table[i].name) == len &&
            strncmp (s_option_table[i].name, name, len) == 0)
            return &s_option_table[i];
    return NULL;
}

/*  Prints a usage error on stderr, pointing at the help, and returns
    EXIT_USAGE. */
static int
s_usage_error (const s_command_t *command, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_usage_error (const s_command_t *command, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "dpool%s%s: ", command ? " " : "", command ? command->name : "");
    vfprintf (stderr, format, args);
    va_end (args);
    fprintf (stderr, "\nTry 'dpool%s%s --help'.\n", command ? " " : "",
             command ? command->name : "");
    return EXIT_USAGE;
}

/*  Parses a boolean environment value; returns 0 and the value, or -1. */
static int
s_parse_flag (const char *text, bool *value)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcasecmp (text, yes[i]) == 0) {
            *value = true;
            return 0;
        }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (strcasecmp (text, no[i]) == 0) {
            *value = false;
            return 0;
        }
    return -1;
}

/*  Stores text as option's value in options; from names where it came
    from, for the message. Returns 0, or EXIT_USAGE after a message. */
static int
s_option_set (s_options_t *options, const s_option_t *option, const char *text, const char *from,
              const s_command_t *command)
{
    void *slot = (char *)options + option->offset;
    if (option->kind == OPT_STRING) {
        if (!*text)
            return s_usage_error (command, "%s must not be empty", from);
        *(const char **)slot = text;
    } else if (option->kind == OPT_INT) {
        long value;
        if (dp_parse_int (text, option->min, option->max, &value))
            return s_usage_error (command, "%s wants a whole number from %ld to %ld, not '%s'",
                                  from, option->min, option->max, text);
        *(long *)slot = value;
    } else if (s_parse_flag (text, (bool *)slot))
        return s_usage_error (command, "%s wants 1 or 0, not '%s'", from, text);
    return 0;
}

/*  True if arg is to be read as an option: it starts with '-', but is not
    "-" alone or a negative number (apply's JSON may be one). */
static bool
s_is_option (const char *arg)
{
    if (arg[0] != '-' || arg[1] == 0)
        return false;
    return !(arg[1] >= '0' && arg[1] <= '9');
}

/*  Checks the positional arguments of `dpool queue`: put NAME JSON, get
    NAME or size NAME. Returns -1 to go on, or EXIT_USAGE after a message. */
static int
s_check_queue_args (s_cli_t *cli)
{
    const s_command_t *command = cli->command;
    const char *op = cli->nargs > 0 ? cli->args[0] : "";
    int want = 0;
    if (strcmp (op, "put") == 0)
        want = 3;
    else if (strcmp (op, "get") == 0 || strcmp (op, "size") == 0)
        want = 2;
    if (!want)
        return s_usage_error (command, "queue takes put NAME JSON, get NAME or size NAME");
    if (cli->nargs != want)
        return s_usage_error (command, "queue %s takes %s", op,
                              want == 3 ? "NAME and JSON" : "NAME");
    size_t len = strlen (cli->args[1]);
    if (len < 1 || len > MAX_FN_NAME)
        return s_usage_error (command, "NAME must be 1 to %d bytes long", MAX_FN_NAME);
    return -1;
}

/*  Parses the command line into cli: defaults, then DPOOL_* variables,
    then options. Returns -1 to go on, or the exit status to end with (0
    after --help or --version). */
static int
s_parse (s_cli_t *cli, int argc, char *argv[])
{
    s_options_t *options = &cli->options;
    options->connect = DEFAULT_CONNECT;
    options->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    options->batch = DEFAULT_BATCH;
    options->procs = DEFAULT_PROCS;

    /*  First pass: the command, positional arguments, --help, --version. */
    bool help = false;
    bool version = false;
    bool options_end = false;
    const char *unknown = NULL;
    const char *positional[MAX_POSITIONAL + 1];
    int npositional = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_end && strcmp (arg, "--") == 0)
            options_end = true;
        else if (!options_end && (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0))
            help = true;
        else if (!options_end && strcmp (arg, "--version") == 0)
            version = true;
        else if (!options_end && s_is_option (arg)) {
            const s_option_t *option = s_option_find (arg);
            if (!option && !unknown)
                unknown = arg;
            if (option && option->kind != OPT_FLAG && !strchr (arg, '='))
                i++; /* its value */
        } else if (!cli->command && npositional == 0 && strcmp (arg, "help") == 0)
            help = true;
        else if (!cli->command && !s_command_find (arg) && !help)
            return s_usage_error (NULL, "unknown command '%s'", arg);
        else if (!cli->command && !help)
            cli->command = s_command_find (arg);
        else if (npositional <= MAX_POSITIONAL)
            positional[npositional++] = arg;
    }
    if (help) {
        const s_command_t *command = cli->command;
        if (!command && npositional > 0)
            command = s_command_find (positional[0]);
        if (!command && npositional > 0)
            return s_usage_error (NULL, "unknown command '%s'", positional[0]);
        fputs (command ? command->help : s_help_main, stdout);
        return EXIT_OK;
    }
    if (version) {
        printf ("dpool %s\n", DPOOL_VERSION_STRING);
        return EXIT_OK;
    }
    if (unknown)
        return s_usage_error (cli->command, "unknown option '%s'", unknown);
    if (!cli->command) {
        fputs (s_help_main, stderr);
        return EXIT_USAGE;
    }
    const s_command_t *command = cli->command;
    if (command->positional >= 0 && npositional != command->positional) {
        static const char *const wants[] = {"no arguments", "one argument, FN",
                                            "two arguments, FN and JSON"};
        return s_usage_error (command, "%s takes %s", command->name, wants[command->positional]);
    }
    for (int i = 0; i < npositional; i++)
        cli->args[i] = positional[i];
    cli->nargs = npositional;

    /*  The environment, for the options this command has. */
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const s_option_t *option = &s_option_table[i];
        const char *value = getenv (option->env);
        if ((option->commands & command->id) && value) {
            int rc = s_option_set (options, option, value, option->env, command);
            if (rc)
                return rc;
        }
    }

    /*  Second pass: the options. */
    options_end = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_end && strcmp (arg, "--") == 0)
            options_end = true;
        if (options_end || !s_is_option (arg))
            continue;
        const s_option_t *option = s_option_find (arg);
        if (!(option->commands & command->id))
            return s_usage_error (command, "%s does not apply to %s", option->name, command->name);
        const char *value = strchr (arg, '=');
        if (value)
            value++;
        else if (option->kind == OPT_FLAG)
            value = "1";
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return s_usage_error (command, "%s wants a value", option->name);
        int rc = s_option_set (options, option, value, option->name, command);
        if (rc)
            return rc;
    }
    if (command->positional > 0 && command->id != CMD_KEYGEN) {
        size_t len = strlen (cli->args[0]);
        if (len < 1 || len > MAX_FN_NAME)
            return s_usage_error (command, "FN must be 1 to %d bytes long", MAX_FN_NAME);
    }
    if (command->id == CMD_QUEUE)
        return s_check_queue_args (cli);
    return -1;
}

/*  ---------------------------------------------------------------------------
    Talking to the broker.
*/

/*  The name of an error code as the failure marking prints it. */
static const char *
s_code_name (int code)
{
    static const char *const names[] = {
        "OK",      "EFAILED",   "ETIMEOUT", "EDEADLINE", "ECANCELLED",  "ELOST",
        "ENOFUNC", "EREJECTED", "ECLOSED",  "EINVAL",    "ENOMEM",      "EAGAIN",
        "EPROTO",  "ESTATE",    "ESYS",     "EEND",      "EUNREACHABLE"};
    if (code >= 0 && (size_t)code < sizeof names / sizeof names[0])
        return names[code];
    return "EUNKNOWN";
}

/*  Records the signal; the loops notice it and stop. */
static void
s_on_signal (int sig)
{
    s_signal = sig;
}

/*  Makes SIGINT and SIGTERM set s_signal, replacing whatever handler the
    library's ZeroMQ layer installed, so the command can stop its loops. */
static void
s_catch_signals (void)
{
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
}

/*  The number of workers in a packed status map, or -1 if it has none. */
static int
s_status_workers (const void *data, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int workers = -1;
    size_t offset = 0;
    if (msgpack_unpack_next (&unpacked, data, size, &offset) == MSGPACK_UNPACK_SUCCESS &&
        unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t i = 0; i < map->size; i++) {
            const msgpack_object *key = &map->ptr[i].key;
            if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 7 &&
                memcmp (key->via.str.ptr, "workers", 7) == 0 &&
                map->ptr[i].val.type == MSGPACK_OBJECT_ARRAY)
                workers = (int)map->ptr[i].val.via.array.size;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return workers;
}

/*  Asks the broker for its status within the connect timeout. Returns 0
    and the packed map (caller frees) when it answers, else -1 after a
    message naming what was being done. Warns once when it has no worker. */
static int
s_probe (s_cli_t *cli, const char *doing, void **data, size_t *size)
{
    int timeout_ms = (int)cli->options.connect_timeout_ms;
    void *status = NULL;
    size_t status_size = 0;
    if (dpool_pool_status (cli->pool, timeout_ms, &status, &status_size)) {
        if (!s_signal)
            fprintf (stderr, "dpool %s: %s the broker at %s: no answer within %d ms (%s)%s\n",
                     cli->command->name, doing, cli->options.connect, timeout_ms,
                     dpool_strerror (dpool_errno ()),
                     /*  A CURVE handshake that fails looks like silence. */
                     cli->options.curve_server
                         ? "; if it is running, check that --curve-server is its public key "
                           "and that it admits this client's key"
                         : "; is a broker running there? (one started with --curve-secret "
                           "also needs --curve-server)");
        return -1;
    }
    cli->last_heard_ms = dp_now_ms ();
    if (!(cli->command->id & (CMD_STATUS | CMD_QUEUE)) && !cli->warned_no_workers &&
        s_status_workers (status, status_size) == 0) {
        fprintf (stderr, "dpool %s: waiting: the broker at %s has no workers yet\n",
                 cli->command->name, cli->options.connect);
        cli->warned_no_workers = true;
    }
    if (data) {
        *data = status;
        *size = status_size;
    } else
        free (status);
    return 0;
}

/*  Connects cli's pool to the broker and checks that it answers. Returns
    -1 to go on (cli->pool is then the caller's to destroy), or the exit
    status to end with, after a message, with no pool left. */
static int
s_connect (s_cli_t *cli)
{
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = cli->options.connect;
    config.timeout_ms = (int)cli->options.timeout_ms;
    config.name = "dpool";
    cli->pool = dpool_pool_new_config (&config);
    if (!cli->pool) {
        int code = dpool_errno ();
        if (code == DPOOL_EINVAL)
            return s_usage_error (cli->command, "bad endpoint '%s'", cli->options.connect);
        fprintf (stderr, "dpool %s: cannot connect to %s: %s\n", cli->command->name,
                 cli->options.connect, dpool_strerror (code));
        return EXIT_ERROR;
    }
    s_catch_signals ();
    if (s_probe (cli, "cannot reach", NULL, NULL)) {
        dpool_pool_terminate (cli->pool);
        dpool_pool_destroy (&cli->pool);
        return s_signal ? EXIT_SIGNAL_BASE + s_signal : EXIT_UNREACHABLE;
    }
    return -1;
}

/*  Called while waiting for results made no progress: probes the broker
    when nothing was heard from it for the connect timeout. Returns 0 while
    it answers, else -1 (after a message). */
static int
s_check_broker (s_cli_t *cli)
{
    if (dp_now_ms () - cli->last_heard_ms < cli->options.connect_timeout_ms)
        return 0;
    return s_probe (cli, "lost", NULL, NULL);
}

/*  Appends a NUL-terminated text to out; returns 0 or -1. */
static int
s_append_literal (dp_json_buf_t *out, const char *text)
{
    return dp_json_buf_append (out, text, strlen (text));
}

/*  Writes the outcome of a finished task as one JSON line: its value, or
    the failure marking. Returns true if the task succeeded; sets *error if
    the output could not be made. */
static bool
s_append_outcome (dp_json_buf_t *out, dpool_result_t *result, bool *error)
{
    msgpack_object value;
    bool ok = dpool_result_get (result, 0, &value) == 0;
    int rc;
    if (ok)
        rc = dp_json_from_object (out, &value);
    else {
        int code = dpool_result_code (result);
        const char *message = dpool_result_error (result);
        if (!message)
            message = dpool_strerror (code);
        const char *name = s_code_name (code);
        rc = s_append_literal (out, "{\"dpool_error\":{\"code\":") ||
             dp_json_append_string (out, name, strlen (name)) ||
             s_append_literal (out, ",\"message\":") ||
             dp_json_append_string (out, message, strlen (message)) ||
             s_append_literal (out, "}}");
    }
    if (rc || dp_json_buf_append (out, "\n", 1))
        *error = true;
    return ok;
}

/*  ---------------------------------------------------------------------------
    map: a line reader on stdin, batches in flight, results in order.
*/
enum { READ_LINE, READ_AGAIN, READ_EOF, READ_ERROR, READ_TOO_LONG };

typedef struct {
    int fd;
    char *data;
    size_t start, end, capacity;
    bool eof;
} s_reader_t;

/*  Returns the next line of the reader's fd in *line and *len (without its
    newline; valid until the next call): READ_LINE. Waits up to timeout_ms
    (-1: no limit) for the first new bytes, then takes only what is already
    there: READ_AGAIN if no whole line is. READ_EOF at the end (a last line
    without a newline is still a line), READ_ERROR with errno set, or
    READ_TOO_LONG for a line over MAX_LINE bytes. */
static int
s_reader_next (s_reader_t *self, int timeout_ms, const char **line, size_t *len)
{
    for (;;) {
        char *begin = self->data ? self->data + self->start : NULL; /* none read yet */
        char *newline =
            self->end > self->start ? memchr (begin, '\n', self->end - self->start) : NULL;
        if (newline || (self->eof && self->end > self->start)) {
            char *stop = newline ? newline : self->data + self->end;
            *line = begin;
            *len = (size_t)(stop - begin);
            self->start = newline ? (size_t)(newline + 1 - self->data) : self->end;
            return READ_LINE;
        }
        if (self->eof)
            return READ_EOF;
        if (self->end - self->start > MAX_LINE)
            return READ_TOO_LONG;
        if (self->start > 0) {
            memmove (self->data, begin, self->end - self->start);
            self->end -= self->start;
            self->start = 0;
        }
        if (self->capacity - self->end < READ_CHUNK) {
            size_t capacity = self->capacity ? self->capacity * 2 : READ_CHUNK * 2;
            char *data = realloc (self->data, capacity);
            if (!data) {
                errno = ENOMEM;
                return READ_ERROR;
            }
            self->data = data;
            self->capacity = capacity;
        }
        struct pollfd poller = {.fd = self->fd, .events = POLLIN};
        int ready = poll (&poller, 1, timeout_ms);
        if (ready == 0 || (ready < 0 && errno == EINTR))
            return READ_AGAIN;
        if (ready < 0)
            return READ_ERROR;
        ssize_t got = read (self->fd, self->data + self->end, self->capacity - self->end);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            return READ_AGAIN;
        if (got < 0)
            return READ_ERROR;
        if (got == 0)
            self->eof = true;
        self->end += (size_t)got;
        timeout_ms = 0;
    }
}

/*  A batch of input lines, submitted as one imap. */
typedef struct {
    dpool_iter_t *iter;
    size_t first_line; /* the input line of its first task */
    size_t count;      /* tasks in it */
    size_t printed;    /* results printed so far */
} s_batch_t;

typedef struct {
    s_cli_t *cli;
    s_reader_t reader;
    size_t line_no;          /* input lines read */
    msgpack_sbuffer pending; /* the next batch's arguments, back to back */
    msgpack_packer packer;
    size_t pending_count;
    int64_t pending_since_ms; /* when its first line was read */
    s_batch_t window[MAP_WINDOW];
    size_t first, nbatches; /* a ring of batches in flight, oldest first */
    bool input_done;
    int input_error; /* EXIT_ERROR once the input went wrong */
    int fatal;       /* an exit status that ends the map at once */
    bool failed;     /* a task failed */
    dp_json_buf_t out;
} s_map_t;

/*  True if line holds nothing but JSON whitespace. */
static bool
s_blank (const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr (" \t\r", line[i]))
            return false;
    return true;
}

/*  Ends the input: prints a message about it on stderr, and makes the map
    end with EXIT_ERROR once the lines before are done. */
static void
s_map_input_error (s_map_t *self, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static void
s_map_input_error (s_map_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "dpool map: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
    self->input_done = true;
    self->input_error = EXIT_ERROR;
}

/*  The chunksize to map with: as asked, else 1 when tasks have a time
    limit (a chunk is timed as a whole), else 0 for the library's choice. */
static size_t
s_map_chunksize (const s_cli_t *cli)
{
    if (cli->options.chunksize == 0 && cli->options.timeout_ms > 0)
        return 1;
    return (size_t)cli->options.chunksize;
}

/*  Submits the pending batch as one imap. Returns 0, or -1 with
    self->fatal set. */
static int
s_map_submit (s_map_t *self)
{
    s_cli_t *cli = self->cli;
    dpool_iter_t *iter = dpool_pool_imap (cli->pool, cli->args[0], self->pending.data,
                                          self->pending.size, s_map_chunksize (cli), NULL);
    if (!iter) {
        int code = dpool_errno ();
        fprintf (stderr, "dpool map: cannot submit lines %zu to %zu: %s\n",
                 self->line_no - self->pending_count + 1, self->line_no, dpool_strerror (code));
        self->fatal = code == DPOOL_EUNREACHABLE ? EXIT_UNREACHABLE : EXIT_ERROR;
        return -1;
    }
    s_batch_t *batch = &self->window[(self->first + self->nbatches) % MAP_WINDOW];
    batch->iter = iter;
    batch->first_line = self->line_no - self->pending_count + 1;
    batch->count = self->pending_count;
    batch->printed = 0;
    self->nbatches++;
    msgpack_sbuffer_clear (&self->pending);
    self->pending_count = 0;
    return 0;
}

/*  Reads the input lines available now (waiting up to wait_ms for the
    first) into the pending batch, and submits it when it is full, the input
    ended, or it waited MAP_LINGER_MS for more. Returns true if it did
    anything. */
static bool
s_map_read (s_map_t *self, int wait_ms)
{
    bool progress = false;
    size_t batch_max = (size_t)self->cli->options.batch;
    while (!self->input_done && self->pending_count < batch_max &&
           self->pending.size < MAP_BATCH_BYTES) {
        const char *line;
        size_t len;
        int rc = s_reader_next (&self->reader, wait_ms, &line, &len);
        wait_ms = 0;
        if (rc == READ_AGAIN)
            break;
        progress = true;
        if (rc == READ_EOF) {
            self->input_done = true;
            break;
        }
        size_t line_no = self->line_no + 1;
        if (rc == READ_TOO_LONG) {
            s_map_input_error (self, "line %zu: longer than %d bytes", line_no, MAX_LINE);
            break;
        }
        if (rc != READ_LINE) {
            s_map_input_error (self, "reading stdin: %s", strerror (errno));
            break;
        }
        if (s_blank (line, len)) {
            s_map_input_error (self, "line %zu: blank line (each line must hold one JSON value)",
                               line_no);
            break;
        }
        size_t before = self->pending.size;
        char error[DP_JSON_ERROR_SIZE];
        if (dp_json_to_msgpack (&self->packer, line, len, error, sizeof error)) {
            self->pending.size = before;
            s_map_input_error (self, "line %zu: %s", line_no, error);
            break;
        }
        if (self->pending.size - before > MAX_ARGS_SIZE) {
            self->pending.size = before;
            s_map_input_error (self, "line %zu: its arguments take more than %d bytes", line_no,
                               MAX_ARGS_SIZE);
            break;
        }
        self->line_no = line_no;
        if (self->pending_count++ == 0)
            self->pending_since_ms = dp_now_ms ();
    }
    if (self->pending_count > 0 && (self->input_done || self->pending_count >= batch_max ||
                                    self->pending.size >= MAP_BATCH_BYTES ||
                                    dp_now_ms () - self->pending_since_ms >= MAP_LINGER_MS)) {
        s_map_submit (self);
        progress = true;
    }
    return progress;
}

/*  Prints the results of the oldest batches that are ready, waiting up to
    wait_ms for the first. Returns true if it printed anything. */
static bool
s_map_print (s_map_t *self, int wait_ms)
{
    bool progress = false;
    while (self->nbatches > 0) {
        s_batch_t *batch = &self->window[self->first];
        dpool_result_t *item =
            batch->printed < batch->count ? dpool_iter_next (batch->iter, wait_ms) : NULL;
        wait_ms = 0;
        if (!item && batch->printed < batch->count) {
            int code = dpool_errno ();
            if (code == DPOOL_ETIMEOUT || code == DPOOL_EAGAIN)
                break;
            /*  The iterator ended early: name the lines left without. */
            fprintf (stderr, "dpool map: no results for lines %zu to %zu: %s\n",
                     batch->first_line + batch->printed, batch->first_line + batch->count - 1,
                     dpool_strerror (code));
            self->fatal = EXIT_ERROR;
            break;
        }
        if (item) {
            bool error = false;
            dp_json_buf_reset (&self->out);
            if (!s_append_outcome (&self->out, item, &error))
                self->failed = true;
            dpool_result_destroy (&item);
            if (error || fwrite (self->out.data, 1, self->out.size, stdout) != self->out.size) {
                fprintf (stderr, "dpool map: writing results: %s\n", strerror (errno));
                self->fatal = EXIT_ERROR;
                break;
            }
            batch->printed++;
            progress = true;
            self->cli->last_heard_ms = dp_now_ms ();
        }
        if (batch->printed == batch->count) {
            dpool_iter_destroy (&batch->iter);
            self->first = (self->first + 1) % MAP_WINDOW;
            self->nbatches--;
            progress = true;
        }
    }
    return progress;
}

/*  dpool map FN: see s_help_map. */
static int
s_run_map (s_cli_t *cli)
{
    int rc = s_connect (cli);
    if (rc >= 0)
        return rc;
    s_map_t map;
    memset (&map, 0, sizeof map);
    map.cli = cli;
    map.reader.fd = STDIN_FILENO;
    msgpack_sbuffer_init (&map.pending);
    msgpack_packer_init (&map.packer, &map.pending, msgpack_sbuffer_write);
    dp_json_buf_init (&map.out);
    static char out_buffer[STDOUT_BUFFER];
    setvbuf (stdout, out_buffer, _IOFBF, sizeof out_buffer);

    while (!map.fatal && !s_signal) {
        bool progress = false;
        bool can_read = !map.input_done && map.nbatches < MAP_WINDOW;
        if (can_read) {
            /*  With nothing in flight, reading is all there is to do. */
            int wait_ms = 0;
            if (map.nbatches == 0)
                wait_ms = map.pending_count == 0
                              ? WAIT_SLICE_MS
                              : (int)(MAP_LINGER_MS - (dp_now_ms () - map.pending_since_ms));
            progress |= s_map_read (&map, wait_ms < 0 ? 0 : wait_ms);
        }
        if (map.fatal)
            break;
        if (map.nbatches > 0)
            progress |= s_map_print (&map, progress || can_read ? 0 : WAIT_SLICE_MS);
        if (map.input_done && map.nbatches == 0 && map.pending_count == 0)
            break;
        if (!progress) {
            /*  Idle: show what is printed, wait a little for results, and
                make sure the broker is still there. */
            fflush (stdout);
            if (map.nbatches > 0 && can_read)
                progress = s_map_print (&map, WAIT_SLICE_MS);
            if (!progress && map.nbatches > 0 && s_check_broker (cli))
                map.fatal = EXIT_UNREACHABLE;
        }
    }
    if (fflush (stdout) != 0 && !map.fatal) {
        fprintf (stderr, "dpool map: writing results: %s\n", strerror (errno));
        map.fatal = EXIT_ERROR;
    }
    for (; map.nbatches > 0; map.nbatches--, map.first = (map.first + 1) % MAP_WINDOW)
        dpool_iter_destroy (&map.window[map.first].iter);
    if (map.fatal || s_signal)
        dpool_pool_terminate (cli->pool);
    else
        dpool_pool_close (cli->pool);
    dpool_pool_destroy (&cli->pool);
    msgpack_sbuffer_destroy (&map.pending);
    dp_json_buf_free (&map.out);
    free (map.reader.data);
    if (s_signal)
        return EXIT_SIGNAL_BASE + s_signal;
    if (map.fatal)
        return map.fatal;
    if (map.input_error)
        return map.input_error;
    return map.failed ? EXIT_TASK_FAILED : EXIT_OK;
}

/*  ---------------------------------------------------------------------------
    apply, status, demo.
*/

/*  dpool apply FN JSON: see s_help_apply. */
static int
s_run_apply (s_cli_t *cli)
{
    const char *fn = cli->args[0];
    const char *json = cli->args[1];
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &args, msgpack_sbuffer_write);
    char error[DP_JSON_ERROR_SIZE];
    if (dp_json_to_msgpack (&packer, json, strlen (json), error, sizeof error)) {
        fprintf (stderr, "dpool apply: the arguments: %s\n", error);
        msgpack_sbuffer_destroy (&args);
        return EXIT_ERROR;
    }
    int rc = s_connect (cli);
    if (rc >= 0) {
        msgpack_sbuffer_destroy (&args);
        return rc;
    }
    dpool_result_t *result = dpool_pool_apply_async (cli->pool, fn, args.data, args.size, NULL);
    msgpack_sbuffer_destroy (&args);
    if (!result) {
        fprintf (stderr, "dpool apply: cannot submit %s: %s\n", fn,
                 dpool_strerror (dpool_errno ()));
        rc = EXIT_ERROR;
    }
    while (result && !s_signal && dpool_result_wait (result, WAIT_SLICE_MS * 10) != 0) {
        if (s_check_broker (cli)) {
            rc = EXIT_UNREACHABLE;
            break;
        }
    }
    if (s_signal)
        rc = EXIT_SIGNAL_BASE + s_signal;
    else if (result && rc < 0) {
        dp_json_buf_t out;
        dp_json_buf_init (&out);
        bool out_error = false;
        bool ok = s_append_outcome (&out, result, &out_error);
        if (out_error) {
            fprintf (stderr, "dpool apply: out of memory\n");
            rc = EXIT_ERROR;
        } else if (ok) {
            fwrite (out.data, 1, out.size, stdout);
            rc = fflush (stdout) == 0 ? EXIT_OK : EXIT_ERROR;
        } else {
            int code = dpool_result_code (result);
            const char *message = dpool_result_error (result);
            fprintf (stderr, "dpool apply: %s failed: %s: %s\n", fn, s_code_name (code),
                     message ? message : dpool_strerror (code));
            rc = EXIT_TASK_FAILED;
        }
        dp_json_buf_free (&out);
    }
    dpool_result_destroy (&result);
    if (rc == EXIT_OK || rc == EXIT_TASK_FAILED)
        dpool_pool_close (cli->pool);
    else
        dpool_pool_terminate (cli->pool);
    dpool_pool_destroy (&cli->pool);
    return rc;
}

/*  The value under key in a msgpack map, or NULL. */
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
            memcmp (k->via.str.ptr, key, len) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/*  Formats a status value for the table into cell: strings as they are,
    "-" when missing, JSON for anything else. Returns the text, borrowed
    from cell. */
static const char *
s_cell (dp_json_buf_t *cell, const msgpack_object *value)
{
    dp_json_buf_reset (cell);
    if (!value)
        dp_json_buf_append (cell, "-", 1);
    else if (value->type == MSGPACK_OBJECT_STR)
        dp_json_buf_append (cell, value->via.str.ptr, value->via.str.size);
    else
        dp_json_from_object (cell, value);
    return cell->data ? cell->data : "";
}

/*  Formats a progress report for the table: "done/total (p%)" for a pair
    of numbers, JSON for anything else, "-" for none. Returns the text,
    borrowed from cell. */
static const char *
s_progress_cell (dp_json_buf_t *cell, const msgpack_object *value)
{
    if (value && value->type == MSGPACK_OBJECT_ARRAY && value->via.array.size == 2 &&
        value->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        value->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        uint64_t done = value->via.array.ptr[0].via.u64;
        uint64_t total = value->via.array.ptr[1].via.u64;
        char text[96];
        if (total > 0)
            snprintf (text, sizeof text, "%llu/%llu (%.0f%%)", (unsigned long long)done,
                      (unsigned long long)total, 100.0 * (double)done / (double)total);
        else
            snprintf (text, sizeof text, "%llu/%llu", (unsigned long long)done,
                      (unsigned long long)total);
        dp_json_buf_reset (cell);
        dp_json_buf_append (cell, text, strlen (text));
        return cell->data ? cell->data : "";
    }
    if (value && value->type == MSGPACK_OBJECT_NIL)
        value = NULL;
    return s_cell (cell, value);
}

/*  Prints one row per entry of the array under key (running tasks, queues),
    with a heading of the given columns, after a line "title N". */
static void
s_print_rows (const msgpack_object *status, const char *key, const char *title,
              const char *const *columns, const int *widths, size_t ncolumns)
{
    dp_json_buf_t cell;
    dp_json_buf_init (&cell);
    const msgpack_object *rows = s_map_get (status, key);
    uint32_t nrows = rows && rows->type == MSGPACK_OBJECT_ARRAY ? rows->via.array.size : 0;
    printf ("%-8s %u\n", title, nrows);
    for (uint32_t i = 0; nrows > 0 && i < nrows + 1; i++) {
        const msgpack_object *row = i ? &rows->via.array.ptr[i - 1] : NULL;
        printf (" ");
        for (size_t c = 0; c < ncolumns; c++) {
            const char *text = columns[c];
            char heading[32];
            if (!row) {
                size_t n = 0;
                for (; text[n] && n < sizeof heading - 1; n++)
                    heading[n] = (char)(text[n] >= 'a' && text[n] <= 'z' ? text[n] - 32 : text[n]);
                heading[n] = 0;
                text = heading;
            } else if (strcmp (columns[c], "progress") == 0)
                text = s_progress_cell (&cell, s_map_get (row, columns[c]));
            else
                text = s_cell (&cell, s_map_get (row, columns[c]));
            printf (" %-*s", widths[c], text);
        }
        printf ("\n");
    }
    dp_json_buf_free (&cell);
}

/*  Prints the tasks workers are running, with their progress, and the
    named queues. */
static void
s_print_running_and_queues (const msgpack_object *status)
{
    static const char *const running[] = {"fn", "seq", "worker", "pid", "attempt", "progress"};
    static const int running_widths[] = {24, 8, 24, 8, 7, 0};
    if (s_map_get (status, "running"))
        s_print_rows (status, "running", "running", running, running_widths,
                      sizeof running / sizeof running[0]);
    static const char *const queues[] = {"name",    "size",    "maxsize", "getters",
                                         "putters", "unacked", "puts",    "gets"};
    static const int queue_widths[] = {24, 8, 8, 7, 7, 7, 10, 0};
    if (s_map_get (status, "queues"))
        s_print_rows (status, "queues", "queues", queues, queue_widths,
                      sizeof queues / sizeof queues[0]);
}

/*  Prints the status map for people: the broker, task counters, clients,
    one row per worker, running tasks and queues, and non-zero drop
    counters. */
static void
s_print_status_table (const msgpack_object *status)
{
    dp_json_buf_t cell;
    dp_json_buf_init (&cell);
    printf ("broker   %s", s_cell (&cell, s_map_get (status, "broker")));
    const msgpack_object *uptime = s_map_get (status, "uptime_ms");
    if (uptime && uptime->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        unsigned long long seconds = (unsigned long long)(uptime->via.u64 / 1000);
        printf (" (up %lluh%02llum%02llus)", seconds / 3600, seconds / 60 % 60, seconds % 60);
    }
    printf ("\ntasks    queued %s", s_cell (&cell, s_map_get (status, "queued")));
    printf (", in flight %s", s_cell (&cell, s_map_get (status, "inflight")));
    printf (", done %s", s_cell (&cell, s_map_get (status, "done")));
    printf (", failed %s\n", s_cell (&cell, s_map_get (status, "failed")));
    printf ("clients  %s\n", s_cell (&cell, s_map_get (status, "clients")));

    const msgpack_object *workers = s_map_get (status, "workers");
    uint32_t nworkers =
        workers && workers->type == MSGPACK_OBJECT_ARRAY ? workers->via.array.size : 0;
    printf ("workers  %u\n", nworkers);
    if (nworkers > 0)
        printf ("  %-24s %-16s %-8s %-6s %-8s %-8s %-6s %s\n", "NAME", "HOST", "PID", "CREDIT",
                "INFLIGHT", "DONE", "FAILED", "FUNCTIONS");
    static const char *const columns[] = {"name",     "host", "pid",   "credit",
                                          "inflight", "done", "failed"};
    static const int widths[] = {24, 16, 8, 6, 8, 8, 6};
    for (uint32_t i = 0; i < nworkers; i++) {
        const msgpack_object *worker = &workers->via.array.ptr[i];
        printf (" ");
        for (size_t c = 0; c < sizeof columns / sizeof columns[0]; c++)
            printf (" %-*s", widths[c], s_cell (&cell, s_map_get (worker, columns[c])));
        printf (" ");
        const msgpack_object *functions = s_map_get (worker, "functions");
        if (functions && functions->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t f = 0; f < functions->via.array.size; f++)
                printf ("%s%s", f ? "," : "", s_cell (&cell, &functions->via.array.ptr[f]));
        printf ("\n");
    }
    s_print_running_and_queues (status);
    const msgpack_object *dropped = s_map_get (status, "dropped");
    bool any = false;
    if (dropped && dropped->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < dropped->via.map.size; i++) {
            const msgpack_object_kv *kv = &dropped->via.map.ptr[i];
            if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->val.via.u64 == 0)
                continue;
            printf ("%s%s", any ? ", " : "dropped  ", s_cell (&cell, &kv->key));
            printf (" %s", s_cell (&cell, &kv->val));
            any = true;
        }
    if (any)
        printf ("\n");
    dp_json_buf_free (&cell);
}

/*  dpool status: see s_help_status. */
static int
s_run_status (s_cli_t *cli)
{
    int rc = s_connect (cli);
    if (rc >= 0)
        return rc;
    void *data = NULL;
    size_t size = 0;
    if (s_probe (cli, "cannot reach", &data, &size))
        rc = s_signal ? EXIT_SIGNAL_BASE + s_signal : EXIT_UNREACHABLE;
    else if (cli->options.json) {
        dp_json_buf_t out;
        dp_json_buf_init (&out);
        char error[DP_JSON_ERROR_SIZE];
        if (dp_json_from_msgpack (&out, data, size, error, sizeof error)) {
            fprintf (stderr, "dpool status: the broker's reply: %s\n", error);
            rc = EXIT_ERROR;
        } else {
            printf ("%s\n", out.data);
            rc = EXIT_OK;
        }
        dp_json_buf_free (&out);
    } else {
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        size_t offset = 0;
        if (msgpack_unpack_next (&unpacked, data, size, &offset) != MSGPACK_UNPACK_SUCCESS ||
            unpacked.data.type != MSGPACK_OBJECT_MAP) {
            fprintf (stderr, "dpool status: the broker's reply is not a msgpack map\n");
            rc = EXIT_ERROR;
        } else {
            s_print_status_table (&unpacked.data);
            rc = EXIT_OK;
        }
        msgpack_unpacked_destroy (&unpacked);
    }
    free (data);
    dpool_pool_terminate (cli->pool);
    dpool_pool_destroy (&cli->pool);
    if (rc == EXIT_OK && fflush (stdout) != 0)
        rc = EXIT_ERROR;
    return rc;
}

/*  dpool demo: see s_help_demo. The demo's --connect is only used when
    given on the command line or in DPOOL_CONNECT. */
static int
s_run_demo (s_cli_t *cli, bool connect_given)
{
    if (cli->options.worker) {
        if (demo_serve (cli->options.worker, (int)cli->options.procs)) {
            fprintf (stderr, "dpool demo: cannot serve %s: %s\n", cli->options.worker,
                     dpool_strerror (dpool_errno ()));
            return EXIT_ERROR;
        }
        return EXIT_OK;
    }
    return demo_run (connect_given ? cli->options.connect : NULL,
                     (int)cli->options.connect_timeout_ms);
}

/*  dpool queue: see s_help_queue. timeout_given says whether --timeout-ms
    (or DPOOL_TIMEOUT_MS) was given: without it put and get wait as long as
    it takes. */
static int
s_run_queue (s_cli_t *cli, bool timeout_given)
{
    const char *op = cli->args[0];
    const char *name = cli->args[1];
    msgpack_sbuffer value;
    msgpack_sbuffer_init (&value);
    if (strcmp (op, "put") == 0) {
        msgpack_packer packer;
        msgpack_packer_init (&packer, &value, msgpack_sbuffer_write);
        char error[DP_JSON_ERROR_SIZE];
        if (dp_json_to_msgpack (&packer, cli->args[2], strlen (cli->args[2]), error,
                                sizeof error)) {
            fprintf (stderr, "dpool queue put: the value: %s\n", error);
            msgpack_sbuffer_destroy (&value);
            return EXIT_ERROR;
        }
    }
    int rc = s_connect (cli);
    if (rc >= 0) {
        msgpack_sbuffer_destroy (&value);
        return rc;
    }
    int timeout_ms = timeout_given ? (int)cli->options.timeout_ms : -1;
    dpool_queue_t *queue = dpool_queue_open (cli->pool, name, 0);
    int code = DPOOL_OK;
    dp_json_buf_t out;
    dp_json_buf_init (&out);
    if (!queue)
        code = dpool_errno ();
    else if (strcmp (op, "put") == 0) {
        if (dpool_queue_put (queue, value.data, value.size, timeout_ms))
            code = dpool_errno ();
    } else if (strcmp (op, "get") == 0) {
        msgpack_object object;
        if (dpool_queue_get (queue, timeout_ms, &object))
            code = dpool_errno ();
        else if (dp_json_from_object (&out, &object) || dp_json_buf_append (&out, "\n", 1))
            code = DPOOL_ENOMEM;
    } else {
        size_t size;
        char line[32];
        if (dpool_queue_qsize (queue, &size))
            code = dpool_errno ();
        else {
            snprintf (line, sizeof line, "%zu\n", size);
            if (dp_json_buf_append (&out, line, strlen (line)))
                code = DPOOL_ENOMEM;
        }
    }
    if (code == DPOOL_OK) {
        fwrite (out.data ? out.data : "", 1, out.size, stdout);
        rc = fflush (stdout) == 0 ? EXIT_OK : EXIT_ERROR;
    } else {
        const char *why = queue ? dpool_queue_error (queue) : NULL;
        fprintf (stderr, "dpool queue %s %s: %s: %s\n", op, name, s_code_name (code),
                 why ? why : dpool_strerror (code));
        rc = code == DPOOL_EUNREACHABLE                   ? EXIT_UNREACHABLE
             : code == DPOOL_ENOMEM || code == DPOOL_ESYS ? EXIT_ERROR
                                                          : EXIT_TASK_FAILED;
    }
    if (s_signal)
        rc = EXIT_SIGNAL_BASE + s_signal;
    dp_json_buf_free (&out);
    msgpack_sbuffer_destroy (&value);
    dpool_queue_destroy (&queue);
    dpool_pool_terminate (cli->pool);
    dpool_pool_destroy (&cli->pool);
    return rc;
}

/*  dpool keygen PATH: see s_help_keygen. */
static int
s_run_keygen (s_cli_t *cli)
{
    char err[512];
    if (dp_curve_keygen (cli->args[0], err, sizeof err)) {
        fprintf (stderr, "dpool keygen: %s\n", err);
        return EXIT_ERROR;
    }
    printf ("public key: %s\nsecret key: %s_secret (keep it private)\n", cli->args[0],
            cli->args[0]);
    return fflush (stdout) == 0 ? EXIT_OK : EXIT_ERROR;
}

/*  True if name (an option) is on the command line, before any "--". */
static bool
s_option_on_command_line (int argc, char *argv[], const char *name)
{
    size_t len = strlen (name);
    for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
        if (strncmp (argv[i], name, len) == 0 && (argv[i][len] == 0 || argv[i][len] == '='))
            return true;
    return false;
}

/*  True if --connect is on the command line. */
static bool
s_connect_on_command_line (int argc, char *argv[])
{
    for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++)
        if (strcmp (argv[i], "--connect") == 0 || strncmp (argv[i], "--connect=", 10) == 0)
            return true;
    return false;
}

/*  Parses the command line and runs the command; returns the exit status
    (see s_help_main). */
int
main (int argc, char *argv[])
{
    dp_log_set_tag ("dpool");
    s_cli_t cli;
    memset (&cli, 0, sizeof cli);
    int rc = s_parse (&cli, argc, argv);
    if (rc >= 0)
        return rc;
    bool connect_argument = s_connect_on_command_line (argc, argv);
    /*  The library reads the CURVE keys where every pool made here (the
        demo's too) finds them. */
    if (cli.options.curve_server)
        setenv ("DPOOL_CURVE_SERVER", cli.options.curve_server, 1);
    if (cli.options.curve_secret)
        setenv ("DPOOL_CURVE_SECRET", cli.options.curve_secret, 1);
    switch (cli.command->id) {
    case CMD_KEYGEN:
        return s_run_keygen (&cli);
    case CMD_MAP:
        return s_run_map (&cli);
    case CMD_APPLY:
        return s_run_apply (&cli);
    case CMD_STATUS:
        return s_run_status (&cli);
    case CMD_QUEUE:
        return s_run_queue (&cli, s_option_on_command_line (argc, argv, "--timeout-ms") ||
                                      getenv ("DPOOL_TIMEOUT_MS"));
    default:
        if (cli.options.worker && connect_argument)
            return s_usage_error (cli.command, "--connect and --worker exclude each other");
        return s_run_demo (&cli, connect_argument || getenv ("DPOOL_CONNECT"));
    }
}

/*  dpool_main.c - the dpool command: map, apply, status and demo against a
    dpool-broker, from the shell, and the broker's named queues.

        dpool map FN < args.jsonl > results.jsonl
        dpool map --exec [--] CMD [ARG...] < lines
        dpool apply FN JSON
        dpool status [--json] [--watch [--interval S]]
        dpool demo
        dpool queue put NAME JSON | get NAME | size NAME

    Arguments and results are JSON on the command line and msgpack on the
    wire (cli/dp_json.h says how they map). Every option can also come
    from a DPOOL_* environment variable; the command line wins. The command
    never waits forever for a broker: it probes it with a status request
    before submitting, and again whenever results stop coming for a while,
    and gives up with exit status 3 when it does not answer. SIGINT and
    SIGTERM end any waiting command at once with 128 + the signal
    (dp_cli_signal.c).

    This file reads the command line and calls the subcommand; each
    subcommand is in its own cmd_*.c, with its help (dp_cli.h).
*/
#include "demo.h"
#include "dp_cli.h"
#include "dp_cli_exec.h"
#include "dp_exec.h"
#include "dp_proto.h"
#include "dp_util.h"
#include "dpool.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_CONNECT            "tcp://127.0.0.1:5555"
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_BATCH              1000 /* map: input lines per submission */
#define DEFAULT_PROCS              DEMO_PROCS
#define MAX_CONNECT_TIMEOUT_MS     3600000
#define MAX_CHUNKSIZE              1000000
#define MAX_BATCH                  100000
#define MAX_PROCS                  1024
#define DEFAULT_INTERVAL_S         2 /* status --watch: seconds between two */
#define MAX_INTERVAL_S             86400
#define POSITIONAL_VARIES          -1 /* the command checks its positional arguments */

/*  ---------------------------------------------------------------------------
    Options.
*/
enum { OPT_STRING, OPT_INT, OPT_FLAG };

typedef struct {
    const char *name;  /* "--connect" */
    const char *env;   /* "DPOOL_CONNECT" */
    int kind;          /* OPT_STRING, OPT_INT or OPT_FLAG */
    unsigned commands; /* the commands it applies to */
    long min, max;     /* for OPT_INT */
    size_t offset;     /* of its value in dp_cli_options_t */
} s_option_t;

static const s_option_t s_option_table[] = {
    {"--connect", "DPOOL_CONNECT", OPT_STRING, CMD_ALL, 0, 0,
     offsetof (dp_cli_options_t, connect)},
    {"--connect-timeout-ms", "DPOOL_CONNECT_TIMEOUT_MS", OPT_INT, CMD_ALL, 1,
     MAX_CONNECT_TIMEOUT_MS, offsetof (dp_cli_options_t, connect_timeout_ms)},
    {"--chunksize", "DPOOL_CHUNKSIZE", OPT_INT, CMD_MAP, 0, MAX_CHUNKSIZE,
     offsetof (dp_cli_options_t, chunksize)},
    {"--timeout-ms", "DPOOL_TIMEOUT_MS", OPT_INT, CMD_MAP | CMD_APPLY | CMD_QUEUE | CMD_SUBMIT, 0,
     INT_MAX, offsetof (dp_cli_options_t, timeout_ms)},
    {"--batch", "DPOOL_BATCH", OPT_INT, CMD_MAP, 1, MAX_BATCH, offsetof (dp_cli_options_t, batch)},
    {"--json", "DPOOL_JSON", OPT_FLAG, CMD_STATUS | CMD_MAP | CMD_BATCHES, 0, 0,
     offsetof (dp_cli_options_t, json)},
    /*  No variable turns --exec on: it changes what the words mean. */
    {"--exec", NULL, OPT_FLAG, CMD_MAP, 0, 0, offsetof (dp_cli_options_t, exec)},
    {"--joblog", "DPOOL_JOBLOG", OPT_STRING, CMD_MAP, 0, 0, offsetof (dp_cli_options_t, joblog)},
    {"--resume", "DPOOL_RESUME", OPT_FLAG, CMD_MAP, 0, 0, offsetof (dp_cli_options_t, resume)},
    {"--output", NULL, OPT_STRING, CMD_MAP, 0, 0, offsetof (dp_cli_options_t, output)},
    {"--resume-failed", "DPOOL_RESUME_FAILED", OPT_FLAG, CMD_MAP, 0, 0,
     offsetof (dp_cli_options_t, resume_failed)},
    {"--max-output", "DPOOL_MAX_OUTPUT", OPT_INT, CMD_MAP, 1, DP_EXEC_MAX_OUTPUT_LIMIT,
     offsetof (dp_cli_options_t, max_output)},
    {"--quiet", "DPOOL_QUIET", OPT_FLAG, CMD_MAP, 0, 0, offsetof (dp_cli_options_t, quiet)},
    {"--worker", "DPOOL_WORKER", OPT_STRING, CMD_DEMO, 0, 0, offsetof (dp_cli_options_t, worker)},
    {"--procs", "DPOOL_PROCS", OPT_INT, CMD_DEMO, 0, MAX_PROCS,
     offsetof (dp_cli_options_t, procs)},
    /*  No variable turns --watch on: a script's status would never end. */
    {"--watch", NULL, OPT_FLAG, CMD_STATUS, 0, 0, offsetof (dp_cli_options_t, watch)},
    {"--interval", "DPOOL_INTERVAL", OPT_INT, CMD_STATUS, 1, MAX_INTERVAL_S,
     offsetof (dp_cli_options_t, interval)},
    {"--curve-server", "DPOOL_CURVE_SERVER", OPT_STRING, CMD_ALL, 0, 0,
     offsetof (dp_cli_options_t, curve_server)},
    {"--curve-secret", "DPOOL_CURVE_SECRET", OPT_STRING, CMD_ALL, 0, 0,
     offsetof (dp_cli_options_t, curve_secret)},
    {"--name", NULL, OPT_STRING, CMD_SUBMIT, 0, 0, offsetof (dp_cli_options_t, name)},
    {"--id", NULL, OPT_STRING, CMD_SUBMIT, 0, 0, offsetof (dp_cli_options_t, id)},
    {"--result-ttl", "DPOOL_RESULT_TTL", OPT_INT, CMD_SUBMIT, 1, DP_MAX_BATCH_TTL_S,
     offsetof (dp_cli_options_t, result_ttl)},
    {"--no-results", NULL, OPT_FLAG, CMD_SUBMIT, 0, 0, offsetof (dp_cli_options_t, no_results)},
    {"--no-wait", NULL, OPT_FLAG, CMD_RESULTS, 0, 0, offsetof (dp_cli_options_t, no_wait)},
    {"--keep", NULL, OPT_FLAG, CMD_RESULTS, 0, 0, offsetof (dp_cli_options_t, keep)},
};
#define OPTION_COUNT (sizeof s_option_table / sizeof s_option_table[0])

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
    "  map --exec CMD  run the shell command CMD once per line of stdin, on the\n"
    "                  workers that allow it, as GNU parallel does ({} is the line)\n"
    "  apply FN JSON   run FN once on the JSON arguments and print its result\n"
    "  status          show the broker's workers, their functions and task counts\n"
    "  demo            run the tutorial's Pool(3) demo (embedded by default)\n"
    "  queue put NAME JSON, queue get NAME, queue size NAME\n"
    "                  put a value on the broker's named queue NAME, take one off,\n"
    "                  or count them (the queues tasks share, like Manager().Queue)\n"
    "  submit FN       run FN on every line of stdin as a detached batch: print its\n"
    "                  id and exit once the broker holds every task\n"
    "  results BATCH   print a batch's results in input order, as map does\n"
    "  batches         list the batches: id, name, function, done/total, failed, age\n"
    "  cancel BATCH    cancel a batch's tasks that have not started\n"
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
    "Log lines: DPOOL_LOG (error, warn, info, debug; default warn), DPOOL_LOG_FORMAT\n"
    "(text or json; default text), DPOOL_LOG_TARGET (stderr, syslog or journald;\n"
    "default stderr). See dpool(1).\n"
    "\n"
    "Exit status: 0 success, 1 a task failed, 2 bad usage, 3 the broker could not\n"
    "be reached, 4 invalid input or another error, 5 the broker's key configuration\n"
    "denies this key the right (EDENIED), 128 + N ended by signal N: SIGINT\n"
    "or SIGTERM ends a waiting command at once, and the broker forgets what it held\n"
    "(queued tasks, a queue request, a value it was lending).\n";

static const dp_cli_command_t s_commands[] = {
    {"map", CMD_MAP, 1, dp_cli_help_map},
    {"apply", CMD_APPLY, 2, dp_cli_help_apply},
    {"status", CMD_STATUS, 0, dp_cli_help_status},
    {"demo", CMD_DEMO, 0, dp_cli_help_demo},
    {"queue", CMD_QUEUE, POSITIONAL_VARIES, dp_cli_help_queue},
    {"keygen", CMD_KEYGEN, 1, dp_cli_help_keygen},
    {"submit", CMD_SUBMIT, 1, dp_cli_help_submit},
    {"results", CMD_RESULTS, 1, dp_cli_help_results},
    {"batches", CMD_BATCHES, 0, dp_cli_help_batches},
    {"cancel", CMD_CANCEL, 1, dp_cli_help_cancel},
};
#define COMMAND_COUNT (sizeof s_commands / sizeof s_commands[0])

/*  The command named name, or NULL. */
static const dp_cli_command_t *
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
s_option_set (dp_cli_options_t *options, const s_option_t *option, const char *text,
              const char *from, const dp_cli_command_t *command)
{
    void *slot = (char *)options + option->offset;
    if (option->kind == OPT_STRING) {
        if (!*text)
            return dp_cli_usage_error (command, "%s must not be empty", from);
        *(const char **)slot = text;
    } else if (option->kind == OPT_INT) {
        long value;
        if (dp_parse_int (text, option->min, option->max, &value))
            return dp_cli_usage_error (command,
                                       "%s wants a whole number from %ld to %ld, not '%s'", from,
                                       option->min, option->max, text);
        *(long *)slot = value;
    } else if (s_parse_flag (text, (bool *)slot))
        return dp_cli_usage_error (command, "%s wants 1 or 0, not '%s'", from, text);
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

/*  Where the words of map --exec's command begin: after "--", or at the
    first word after the command's name once --exec was seen; argc if no
    --exec. Sets *exec if --exec is on the command line. Options end there,
    so that the command's own options stay its own. */
static int
s_exec_start (int argc, char *argv[], bool *exec)
{
    bool named = false;
    *exec = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp (arg, "--") == 0)
            return *exec ? i + 1 : argc;
        if (s_is_option (arg)) {
            const s_option_t *option = s_option_find (arg);
            bool value = true;
            const char *equals = strchr (arg, '=');
            if (option && option->offset == offsetof (dp_cli_options_t, exec))
                *exec = !equals || (s_parse_flag (equals + 1, &value) == 0 && value);
            if (option && option->kind != OPT_FLAG && !equals)
                i++;
        } else if (!named)
            named = true;
        else if (*exec)
            return i;
    }
    return argc;
}

/*  What the first pass over the command line found besides the command. */
typedef struct {
    bool help;
    bool version;
    const char *unknown; /* the first unknown option */
    const char *positional[MAX_POSITIONAL + 1];
    int npositional;
    bool exec;     /* --exec is there */
    int exec_from; /* the index of its command's first word, or argc */
} s_words_t;

/*  First pass over the command line: sets cli->command and notes in words
    the positional arguments, --help, --version and the first unknown
    option, stepping over option values. Returns -1 to go on, or EXIT_USAGE
    after a message naming an unknown command. */
static int
s_parse_words (dp_cli_t *cli, int argc, char *argv[], s_words_t *words)
{
    bool options_end = false;
    words->exec_from = s_exec_start (argc, argv, &words->exec);
    for (int i = 1; i < words->exec_from; i++) {
        const char *arg = argv[i];
        if (!options_end && strcmp (arg, "--") == 0)
            options_end = true;
        else if (!options_end && (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0))
            words->help = true;
        else if (!options_end && strcmp (arg, "--version") == 0)
            words->version = true;
        else if (!options_end && s_is_option (arg)) {
            const s_option_t *option = s_option_find (arg);
            if (!option && !words->unknown)
                words->unknown = arg;
            if (option && option->kind != OPT_FLAG && !strchr (arg, '='))
                i++; /* its value */
        } else if (!cli->command && words->npositional == 0 && strcmp (arg, "help") == 0)
            words->help = true;
        else if (!cli->command && !s_command_find (arg) && !words->help)
            return dp_cli_usage_error (NULL, "unknown command '%s'", arg);
        else if (!cli->command && !words->help)
            cli->command = s_command_find (arg);
        else if (words->npositional <= MAX_POSITIONAL)
            words->positional[words->npositional++] = arg;
    }
    return -1;
}

/*  Acts on the first pass: prints the help or the version, or refuses an
    unknown option, a missing command or the wrong number of positional
    arguments; else keeps the positional arguments in cli. Returns -1 to go
    on, or the exit status to end with (0 after --help or --version). */
static int
s_parse_check (dp_cli_t *cli, const s_words_t *words)
{
    if (words->help) {
        const dp_cli_command_t *command = cli->command;
        if (!command && words->npositional > 0)
            command = s_command_find (words->positional[0]);
        if (!command && words->npositional > 0)
            return dp_cli_usage_error (NULL, "unknown command '%s'", words->positional[0]);
        fputs (command ? command->help : s_help_main, stdout);
        return EXIT_OK;
    }
    if (words->version) {
        printf ("dpool %s\n", DPOOL_VERSION_STRING);
        return EXIT_OK;
    }
    if (words->unknown)
        return dp_cli_usage_error (cli->command, "unknown option '%s'", words->unknown);
    if (!cli->command) {
        fputs (s_help_main, stderr);
        return EXIT_USAGE;
    }
    const dp_cli_command_t *command = cli->command;
    bool exec = command->id == CMD_MAP && words->exec; /* dp_cli_exec_check_args checks */
    if (!exec && command->positional >= 0 && words->npositional != command->positional) {
        static const char *const wants[] = {"no arguments", "one argument, FN",
                                            "two arguments, FN and JSON"};
        bool batch = command->id & (CMD_RESULTS | CMD_CANCEL);
        return dp_cli_usage_error (command, "%s takes %s", command->name,
                                   batch ? "one argument, BATCH" : wants[command->positional]);
    }
    for (int i = 0; i < words->npositional && i < MAX_POSITIONAL; i++)
        cli->args[i] = words->positional[i];
    cli->nargs = words->npositional < MAX_POSITIONAL ? words->npositional : MAX_POSITIONAL;
    return -1;
}

/*  Sets the options the command has from their DPOOL_* variables. Returns
    0, or EXIT_USAGE after a message. */
static int
s_parse_environment (dp_cli_t *cli)
{
    const dp_cli_command_t *command = cli->command;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const s_option_t *option = &s_option_table[i];
        const char *value = option->env ? getenv (option->env) : NULL;
        if ((option->commands & command->id) && value) {
            int rc = s_option_set (&cli->options, option, value, option->env, command);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/*  Second pass over the command line: sets the options, refusing those
    the command does not have. The first pass has made sure every option
    is known. Returns 0, or EXIT_USAGE after a message. */
static int
s_parse_options (dp_cli_t *cli, int argc, char *argv[], int exec_from)
{
    const dp_cli_command_t *command = cli->command;
    bool options_end = false;
    for (int i = 1; i < exec_from; i++) {
        const char *arg = argv[i];
        if (!options_end && strcmp (arg, "--") == 0)
            options_end = true;
        if (options_end || !s_is_option (arg))
            continue;
        const s_option_t *option = s_option_find (arg);
        if (!(option->commands & command->id))
            return dp_cli_usage_error (command, "%s does not apply to %s", option->name,
                                       command->name);
        const char *value = strchr (arg, '=');
        if (value)
            value++;
        else if (option->kind == OPT_FLAG)
            value = "1";
        else if (i + 1 < argc)
            value = argv[++i];
        else
            return dp_cli_usage_error (command, "%s wants a value", option->name);
        int rc = s_option_set (&cli->options, option, value, option->name, command);
        if (rc)
            return rc;
    }
    return 0;
}

/*  Parses the command line into cli: defaults, then DPOOL_* variables,
    then options. Returns -1 to go on, or the exit status to end with (0
    after --help or --version). */
static int
s_parse (dp_cli_t *cli, int argc, char *argv[])
{
    dp_cli_options_t *options = &cli->options;
    options->connect = DEFAULT_CONNECT;
    options->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    options->batch = DEFAULT_BATCH;
    options->procs = DEFAULT_PROCS;
    options->interval = DEFAULT_INTERVAL_S;

    s_words_t words;
    memset (&words, 0, sizeof words);
    int rc = s_parse_words (cli, argc, argv, &words);
    if (rc < 0)
        rc = s_parse_check (cli, &words);
    if (rc >= 0)
        return rc;
    rc = s_parse_environment (cli);
    if (rc == 0)
        rc = s_parse_options (cli, argc, argv, words.exec_from);
    if (rc)
        return rc;
    cli->exec_argv = argv + words.exec_from;
    cli->exec_argc = argc - words.exec_from;
    const dp_cli_command_t *command = cli->command;
    if (command->id == CMD_MAP && (rc = dp_cli_exec_check_args (cli)) >= 0)
        return rc;
    if (command->positional > 0 && command->id != CMD_KEYGEN && cli->nargs > 0) {
        size_t len = strlen (cli->args[0]);
        if (len < 1 || len > MAX_FN_NAME)
            return dp_cli_usage_error (command, "FN must be 1 to %d bytes long", MAX_FN_NAME);
    }
    if (command->id == CMD_QUEUE)
        return dp_cli_queue_check_args (cli);
    return -1;
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
    dp_cli_t cli;
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
        return dp_cli_keygen_run (&cli);
    case CMD_MAP:
        return dp_cli_map_run (&cli);
    case CMD_APPLY:
        return dp_cli_apply_run (&cli);
    case CMD_STATUS:
        return dp_cli_status_run (&cli);
    case CMD_SUBMIT:
        return dp_cli_submit_run (&cli);
    case CMD_RESULTS:
        return dp_cli_results_run (&cli);
    case CMD_BATCHES:
        return dp_cli_batches_run (&cli);
    case CMD_CANCEL:
        return dp_cli_cancel_run (&cli);
    case CMD_QUEUE:
        return dp_cli_queue_run (&cli, s_option_on_command_line (argc, argv, "--timeout-ms") ||
                                           getenv ("DPOOL_TIMEOUT_MS"));
    default:
        if (cli.options.worker && connect_argument)
            return dp_cli_usage_error (cli.command, "--connect and --worker exclude each other");
        return dp_cli_demo_run (&cli, connect_argument || getenv ("DPOOL_CONNECT"));
    }
}

/*  pool_demo.c - the tutorial's first example in C: Pool(3) runs ten tasks
    that each print when they start and finish and sleep a random time.

        pool_demo                          an embedded pool of 3 processes
        pool_demo --connect EP             the tasks go to a running broker
        pool_demo --worker EP [--procs N]  serve the task to that broker

    The same program runs on every host: one copy submits, the others serve
    (see demo.h for what the demo does).
*/
#include "demo.h"

#include "dpool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE         2    /* bad command line */
#define CONNECT_TIMEOUT_MS 5000 /* how long --connect waits for the broker */
#define MAX_PROCS          1024 /* --procs upper bound */

static const char s_usage[] =
    "usage: pool_demo [--connect EP | --worker EP [--procs N]]\n"
    "\n"
    "The tutorial's Pool(3) example: ten tasks, each printing \"N started, pid P\",\n"
    "sleeping 0-2 s and printing \"N finished in T s\", never more than 3 at once.\n"
    "\n"
    "  (no option)        run embedded: the pool forks its own 3 worker processes\n"
    "  --connect EP       submit the tasks to the dpool-broker at EP (tcp://host:port)\n"
    "  --worker EP        serve the task function \"" DEMO_FN "\" to the broker at EP\n"
    "                     until SIGINT/SIGTERM (run this on every worker host)\n"
    "  --procs N          worker processes with --worker (default 3)\n"
    "  --help             show this help\n"
    "\n"
    "Exit status: 0 all tasks done, 1 a task failed, 2 bad usage, 3 broker unreachable.\n";

/*  Prints a usage error and returns the usage exit status. */
static int
s_usage_error (const char *what, const char *arg)
{
    fprintf (stderr, "pool_demo: %s%s%s\nTry 'pool_demo --help'.\n", what, arg ? ": " : "",
             arg ? arg : "");
    return EXIT_USAGE;
}

/*  Parses the command line and runs the demo in the role it asks for;
    returns the exit status. */
int
main (int argc, char *argv[])
{
    const char *connect = NULL;
    const char *worker = NULL;
    long procs = DEMO_PROCS;
    bool procs_given = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp (arg, "--help") == 0 || strcmp (arg, "-h") == 0) {
            fputs (s_usage, stdout);
            return 0;
        }
        if (strcmp (arg, "--version") == 0) {
            printf ("pool_demo (dpool %s)\n", DPOOL_VERSION_STRING);
            return 0;
        }
        if (strcmp (arg, "--connect") && strcmp (arg, "--worker") && strcmp (arg, "--procs"))
            return s_usage_error ("unknown argument", arg);
        if (i + 1 == argc)
            return s_usage_error ("missing value after", arg);
        const char *value = argv[++i];
        if (strcmp (arg, "--connect") == 0)
            connect = value;
        else if (strcmp (arg, "--worker") == 0)
            worker = value;
        else {
            char *end;
            procs = strtol (value, &end, 10);
            if (*value == 0 || *end || procs < 1 || procs > MAX_PROCS)
                return s_usage_error ("--procs wants a number from 1 to 1024", value);
            procs_given = true;
        }
    }
    if (connect && worker)
        return s_usage_error ("--connect and --worker exclude each other", NULL);
    if (procs_given && !worker)
        return s_usage_error ("--procs goes with --worker", NULL);
    if (worker)
        return demo_serve (worker, (int)procs) == 0 ? 0 : DEMO_EXIT_FAILED;
    return demo_run (connect, CONNECT_TIMEOUT_MS);
}

/*  cmd_demo.c - dpool demo: the tutorial's Pool(3) example of
    examples/demo.c, embedded, against a broker, or as its worker.
*/
#include "demo.h"
#include "dp_cli.h"
#include "dpool.h"

#include <stdbool.h>
#include <stdio.h>

const char dp_cli_help_demo[] =
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
    "SIGINT or SIGTERM ends the demo at once by the signal's default action (a shell\n"
    "reports 128 + the signal's number); an embedded pool's processes see their\n"
    "parent gone and stop. With --worker they end serving, with exit status 0.\n"
    "\n"
    "Exit status: 0 every task succeeded, 1 a task failed, 2 bad usage, 3 the broker\n"
    "could not be reached.\n";

/*  dpool demo: see dp_cli_help_demo. The demo's --connect is only used when
    given on the command line or in DPOOL_CONNECT. */
int
dp_cli_demo_run (dp_cli_t *cli, bool connect_given)
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

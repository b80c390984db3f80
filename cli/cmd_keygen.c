/*  cmd_keygen.c - dpool keygen PATH: a CURVE key pair in two files, for
    brokers, clients and workers to give --curve-secret and --curve-server.
*/
#include "dp_cli.h"
#include "dp_curve.h"

#include <stdio.h>

const char dp_cli_help_keygen[] =
    "usage: dpool keygen PATH\n"
    "\n"
    "Makes a CURVE key pair for encrypted, authenticated connections (see README,\n"
    "Security): PATH holds the public key, safe to hand out; PATH_secret holds both\n"
    "keys and is made readable by its owner only. Existing files are never\n"
    "overwritten. The files are CZMQ certificates, written by zcert_save.\n"
    "\n"
    "  the broker's pair:   dpool-broker --curve-secret PATH_secret; its clients\n"
    "                       and workers get --curve-server PATH\n"
    "  a client's or worker's pair: --curve-secret PATH_secret; PATH goes into the\n"
    "                       directory given to dpool-broker --curve-clients\n"
    "\n"
    "Exit status: 0 success, 2 bad usage, 4 the files could not be written.\n";

/*  dpool keygen PATH: see dp_cli_help_keygen. */
int
dp_cli_keygen_run (dp_cli_t *cli)
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

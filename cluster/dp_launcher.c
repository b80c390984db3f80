/*  dp_launcher.c - ranks, job identity and addresses from the launcher's
    environment and the host's interfaces.
*/
#include "dp_launcher.h"

#include "dp_util.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*  One launcher's variables: its rank, its size, and a fallback size. */
typedef struct {
    const char *name;
    const char *rank;
    const char *size;
    const char *size_fallback;
} s_vars_t;

static const s_vars_t s_launchers[] = {
    {"slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"},
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", NULL},
    {"pmi", "PMI_RANK", "PMI_SIZE", NULL},
};

/*  The job's identity, so that a rendezvous left by another job is not
    taken for this one's. */
static void
s_job_tag (const char *launcher, char *out, size_t size)
{
    const char *job = getenv ("SLURM_JOB_ID");
    const char *step = getenv ("SLURM_STEP_ID");
    const char *space = getenv ("PMIX_NAMESPACE");
    out[0] = 0;
    if (strcmp (launcher, "slurm") == 0 && job)
        snprintf (out, size, "slurm:%s.%s", job, step ? step : "");
    else if (space && *space)
        snprintf (out, size, "pmix:%s", space);
}

int
dp_launcher_detect (dp_launcher_t *self)
{
    memset (self, 0, sizeof *self);
    self->name = "none";
    self->size = 1;
    for (size_t i = 0; i < sizeof s_launchers / sizeof s_launchers[0]; i++) {
        const s_vars_t *vars = &s_launchers[i];
        const char *rank = getenv (vars->rank);
        const char *size = getenv (vars->size);
        if (!size && vars->size_fallback)
            size = getenv (vars->size_fallback);
        if (!rank || !size)
            continue;
        long r, n;
        if (dp_parse_int (size, 1, DP_LAUNCHER_MAX_SIZE, &n) ||
            dp_parse_int (rank, 0, n - 1, &r)) {
            dp_error ("spmd: %s's rank %s of %s is not a rank of the job", vars->name, rank, size);
            return dp_fail (DPOOL_EINVAL);
        }
        self->name = vars->name;
        self->rank = (int)r;
        self->size = (int)n;
        s_job_tag (vars->name, self->job, sizeof self->job);
        return 0;
    }
    return 0;
}

int
dp_launcher_first_host (const char *nodelist, char *out, size_t size)
{
    if (!nodelist || !*nodelist || *nodelist == '[' || *nodelist == ',')
        return -1;
    size_t prefix = strcspn (nodelist, ",[");
    if (prefix >= size)
        return -1;
    memcpy (out, nodelist, prefix);
    out[prefix] = 0;
    if (nodelist[prefix] != '[')
        return 0;
    /*  node[07-09,12]: the first number of the range, zeros kept. */
    const char *digits = nodelist + prefix + 1;
    size_t n = 0;
    while (isdigit ((unsigned char)digits[n]))
        n++;
    if (n == 0 || prefix + n >= size || !strchr (digits, ']'))
        return -1;
    memcpy (out + prefix, digits, n);
    out[prefix + n] = 0;
    return 0;
}

/*  The IPv4 address of the interface named (or, name NULL, of the first
    that is up and not loopback) into out. Returns 0, or -1 if none. */
static int
s_interface_address (const char *name, char *out, size_t size)
{
    struct ifaddrs *all;
    if (getifaddrs (&all))
        return -1;
    int rc = -1;
    for (struct ifaddrs *i = all; i && rc; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        if (name ? strcmp (i->ifa_name, name) != 0
                 : !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
            continue;
        const struct sockaddr_in *in = (const struct sockaddr_in *)i->ifa_addr;
        if (inet_ntop (AF_INET, &in->sin_addr, out, (socklen_t)size))
            rc = 0;
    }
    freeifaddrs (all);
    return rc;
}

/*  True if this host has an interface named name. */
static bool
s_is_interface (const char *name)
{
    return if_nametoindex (name) != 0;
}

int
dp_launcher_address (const char *interface, char *out, size_t size)
{
    if (interface && *interface) {
        if (s_is_interface (interface))
            return s_interface_address (interface, out, size);
        if (strlen (interface) >= size)
            return -1;
        snprintf (out, size, "%s", interface);
        return 0;
    }
    if (s_interface_address (NULL, out, size) == 0)
        return 0;
    if (size < sizeof "127.0.0.1")
        return -1;
    snprintf (out, size, "127.0.0.1");
    return 0;
}

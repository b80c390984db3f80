/*  test_spmd_netns.c - an SPMD job whose ranks are on "other hosts".

    Rank 0 runs in one network namespace (the head host), ranks 1..3 in
    another (the remote host), and a veth pair joins the two: the only way
    between them is the head's veth address. MPI's own daemons talk over
    loopback, so the job uses the launcher-free bootstrap: this test sets
    the variables srun would (SLURM_PROCID, SLURM_NTASKS), and the ranks
    find rank 0 through a rendezvous file in the test's directory (the
    shared filesystem); rank 0 binds on its veth (DPOOL_SPMD_INTERFACE).
    The card carries the job's CURVE keys, on by default with a file.

    Checked: the job gets its results, every task ran on a remote rank,
    rank 0 bound the veth's address, every rank exits 0 and leaves no
    process; and, as a control that the namespaces really part the hosts,
    rank 0 bound on its loopback is not reached: the remote ranks exit 1
    saying they waited for it.

    Needs root and iproute2's ip; without them, or when the system refuses
    network namespaces or veth pairs, it exits 77 (skipped) saying why. Its
    namespaces are named after its pid and deleted at exit; those of a run
    killed outright are deleted by the next run once that run's pid is gone.
*/
#include "dp_testutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_SECONDS   90
#define EXIT_SKIP      77
#define COMMAND_MS     10000 /* one ip command */
#define RUN_MS         40000 /* one job, start to end */
#define ORPHAN_MS      15000 /* rank 0 gone: the others leave within the expiry */
#define RANKS          4
#define TASKS          "60"
#define SLEEP_MS       "20"
#define NETNS_DIR      "/var/run/netns"
#define NETNS_PREFIX   "dpool-spmdns-" /* + pid + "-head" or "-remote" */
#define HEAD_ADDRESS   "10.214.0.1"
#define REMOTE_ADDRESS "10.214.0.2"
#define PREFIX_LENGTH  "/30"
#define ENV_BIN        "/usr/bin/env"
#define MAX_STALE      64

#ifndef DPOOL_SPMD_DEMO_BIN
#define DPOOL_SPMD_DEMO_BIN "spmd_demo"
#endif

typedef struct {
    char name[64];
    char veth[IF_NAMESIZE];
    bool made;
} s_netns_t;

static s_netns_t s_head;
static s_netns_t s_remote;
static char s_ip_path[PATH_MAX];
static pid_t s_owner;

static void
s_skip (const char *format, ...) __attribute__ ((noreturn, format (printf, 1, 2)));

static void
s_skip (const char *format, ...)
{
    char reason[2048];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    fprintf (stderr, "SKIP spmd_netns: %s\n", reason);
    exit (EXIT_SKIP);
}

/*  Runs `ip ARGS...` (NULL-terminated) to its end, its output in ip.out and
    ip.err. Returns its exit code, or -1 if it did not end in time. */
static int
s_ip (const char *first, ...)
{
    const char *argv[32] = {s_ip_path, first};
    int argc = 2;
    va_list args;
    va_start (args, first);
    const char *arg;
    while ((arg = va_arg (args, const char *)) && argc < 31)
        argv[argc++] = arg;
    va_end (args);
    argv[argc] = NULL;
    int status = dp_test_wait_exit (dp_test_spawn ("ip", (char *const *)argv), COMMAND_MS);
    return status != -1 && WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/*  What the last ip command said on stderr (static; "" if nothing). */
static const char *
s_ip_err (void)
{
    static char text[1024];
    char *err = dp_test_read_file (dp_test_path ("ip.err"));
    snprintf (text, sizeof text, "%s", err ? err : "");
    free (err);
    return text;
}

static void
s_ip_check (int rc, const char *what)
{
    if (rc != 0)
        dp_test_fail (__FILE__, __LINE__, "ip could not %s (exit %d): %s", what, rc, s_ip_err ());
}

/*  Finds ip where iproute2 installs it; skips without it. */
static void
s_find_ip (void)
{
    static const char *const places[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++)
        if (access (places[i], X_OK) == 0) {
            snprintf (s_ip_path, sizeof s_ip_path, "%s", places[i]);
            return;
        }
    s_skip ("needs iproute2's ip, which is not installed");
}

/*  At exit, after dp_testutil stopped every process it started: deletes
    the namespaces (the veth pair goes with them). */
static void
s_at_exit (void)
{
    if (getpid () != s_owner)
        return;
    s_netns_t *both[] = {&s_remote, &s_head};
    for (int i = 0; i < 2; i++)
        if (both[i]->made) {
            both[i]->made = false;
            s_ip ("netns", "delete", both[i]->name, NULL);
        }
}

/*  Deletes the namespaces of runs of this test that are gone (killed
    outright), with the processes inside them. */
static void
s_remove_stale (void)
{
    DIR *dir = opendir (NETNS_DIR);
    if (!dir)
        return;
    char stale[MAX_STALE][256];
    int nstale = 0;
    size_t prefix = strlen (NETNS_PREFIX);
    struct dirent *entry;
    while ((entry = readdir (dir)) && nstale < MAX_STALE) {
        char *end;
        long pid = strtol (entry->d_name + prefix, &end, 10);
        if (strncmp (entry->d_name, NETNS_PREFIX, prefix) != 0 || pid <= 0 ||
            (strcmp (end, "-head") != 0 && strcmp (end, "-remote") != 0) ||
            kill ((pid_t)pid, 0) == 0 || errno == EPERM)
            continue;
        snprintf (stale[nstale++], sizeof stale[0], "%s", entry->d_name);
    }
    closedir (dir);
    for (int i = 0; i < nstale; i++) {
        if (s_ip ("netns", "pids", stale[i], NULL) == 0) {
            char *text = dp_test_read_file (dp_test_path ("ip.out"));
            for (char *save = NULL, *word = strtok_r (text, " \n", &save); word;
                 word = strtok_r (NULL, " \n", &save))
                if (strtol (word, NULL, 10) > 1)
                    kill ((pid_t)strtol (word, NULL, 10), SIGKILL);
            free (text);
        }
        s_ip ("netns", "delete", stale[i], NULL);
    }
}

static void
s_netns_add (s_netns_t *netns, const char *role, char letter)
{
    snprintf (netns->name, sizeof netns->name, "%s%ld-%s", NETNS_PREFIX, (long)getpid (), role);
    snprintf (netns->veth, sizeof netns->veth, "dsv%ld%c", (long)getpid () % 10000000, letter);
    netns->made = true; /* from now on deleted at exit */
    if (s_ip ("netns", "add", netns->name, NULL) != 0)
        s_skip ("cannot make a network namespace (ip netns add %s): %s", netns->name, s_ip_err ());
}

/*  The two hosts and the link between them, up, an address at each end;
    loopback up in both (rank 0's own connections). */
static void
s_make_network (void)
{
    if (geteuid () != 0)
        s_skip ("needs root to make network namespaces");
    s_find_ip ();
    s_remove_stale ();
    s_netns_add (&s_head, "head", 'h');
    s_netns_add (&s_remote, "remote", 'r');
    if (s_ip ("netns", "exec", s_head.name, "true", NULL) != 0)
        s_skip ("cannot run programs in a network namespace: %s", s_ip_err ());
    if (s_ip ("-n", s_head.name, "link", "add", s_head.veth, "type", "veth", "peer", "name",
              s_remote.veth, "netns", s_remote.name, NULL) != 0)
        s_skip ("cannot make a veth pair: %s", s_ip_err ());
    s_ip_check (s_ip ("-n", s_head.name, "address", "add", HEAD_ADDRESS PREFIX_LENGTH, "dev",
                      s_head.veth, NULL),
                "address the head's end");
    s_ip_check (s_ip ("-n", s_remote.name, "address", "add", REMOTE_ADDRESS PREFIX_LENGTH, "dev",
                      s_remote.veth, NULL),
                "address the remote end");
    s_netns_t *both[] = {&s_head, &s_remote};
    for (int i = 0; i < 2; i++) {
        s_ip_check (s_ip ("-n", both[i]->name, "link", "set", both[i]->veth, "up", NULL),
                    "bring a veth up");
        s_ip_check (s_ip ("-n", both[i]->name, "link", "set", "lo", "up", NULL),
                    "bring loopback up");
    }
}

/*  Starts rank of the job inside netns, as srun would, finding rank 0
    through the rendezvous file; rank 0 binds on interface. */
static pid_t
s_rank (const s_netns_t *netns, int rank, const char *interface, const char *const *extra)
{
    static char vars[4][PATH_MAX + 64];
    snprintf (vars[0], sizeof vars[0], "SLURM_PROCID=%d", rank);
    snprintf (vars[1], sizeof vars[1], "SLURM_NTASKS=%d", RANKS);
    snprintf (vars[2], sizeof vars[2], "DPOOL_SPMD_RENDEZVOUS=file:%s",
              dp_test_path ("rendezvous"));
    snprintf (vars[3], sizeof vars[3], "DPOOL_SPMD_INTERFACE=%s", interface);
    const char *argv[24] = {s_ip_path, "netns", "exec",  netns->name, ENV_BIN,
                            vars[0],   vars[1], vars[2], vars[3],     "DPOOL_LOG=info"};
    int argc = 10;
    for (int i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc++] = DPOOL_SPMD_DEMO_BIN;
    argv[argc++] = TASKS;
    argv[argc++] = SLEEP_MS;
    char tag[32];
    snprintf (tag, sizeof tag, "rank%d", rank);
    return dp_test_spawn (tag, (char *const *)argv);
}

/*  tag's stderr (caller frees; "" if none). */
static char *
s_err (const char *tag)
{
    char name[64];
    snprintf (name, sizeof name, "%s.err", tag);
    char *err = dp_test_read_file (dp_test_path (name));
    return err ? err : strdup ("");
}

/*  Waits for pid to exit with status, and for its stderr to hold text (if
    not NULL); stops the test with its stderr otherwise. */
static void
s_expect_exit (pid_t pid, const char *tag, int status, const char *text, int timeout_ms)
{
    int got = dp_test_wait_exit (pid, timeout_ms);
    char *err = s_err (tag);
    if (got == -1 || !WIFEXITED (got) || WEXITSTATUS (got) != status ||
        (text && !strstr (err, text)))
        dp_test_fail (__FILE__, __LINE__, "%s: wait status %d, expected exit %d and \"%s\":\n%s",
                      tag, got, status, text ? text : "", err);
    free (err);
}

static bool
s_group_gone (void *arg)
{
    return kill (-*(pid_t *)arg, 0) != 0;
}

/*  Rank 0's report: the sum of squares of 0..TASKS-1, then one line per
    process that ran tasks, none of them rank 0. */
static void
s_check_report (pid_t root)
{
    char *out = dp_test_read_file (dp_test_path ("rank0.out"));
    CHECK (out);
    long long tasks = atoll (TASKS), sum = 0;
    for (long long i = 0; i < tasks; i++)
        sum += i * i;
    char expected[128];
    snprintf (expected, sizeof expected, "sum of squares of 0..%lld: %lld\n", tasks - 1, sum);
    if (strncmp (out, expected, strlen (expected)) != 0)
        dp_test_fail (__FILE__, __LINE__, "rank 0 printed:\n%s\nexpected first:\n%s", out,
                      expected);
    long long ran = 0;
    for (const char *line = strchr (out, '\n') + 1; *line; line = strchr (line, '\n') + 1) {
        long pid;
        int count;
        CHECK (sscanf (line, "process %*[^:]:%ld ran %d tasks", &pid, &count) == 2);
        CHECK (pid != (long)root);
        ran += count;
    }
    CHECK_EQ_INT (ran, tasks);
    free (out);
}

/*  Rank 0 on the head, bound on its veth; ranks 1..3 on the remote host,
    through the rendezvous file: the job completes. */
static void
s_case_join (void)
{
    s_make_network ();
    pid_t ranks[RANKS];
    for (int r = RANKS - 1; r >= 1; r--)
        ranks[r] = s_rank (&s_remote, r, "", NULL);
    ranks[0] = s_rank (&s_head, 0, s_head.veth, NULL);
    s_expect_exit (ranks[0], "rank0", 0, "serving at tcp://" HEAD_ADDRESS ":", RUN_MS);
    s_check_report (ranks[0]);
    for (int r = 1; r < RANKS; r++) {
        char tag[32];
        snprintf (tag, sizeof tag, "rank%d", r);
        s_expect_exit (ranks[r], tag, 0, "serving rank 0 at tcp://" HEAD_ADDRESS ":", ORPHAN_MS);
        CHECK (dp_test_wait_until (s_group_gone, &ranks[r], ORPHAN_MS));
    }
}

/*  The control: rank 0 bound on the head's loopback is out of the remote
    host's reach; its ranks give up, saying what they waited for. */
static void
s_case_parted (void)
{
    s_make_network ();
    const char *timeout[] = {"DPOOL_SPMD_TIMEOUT_MS=1500", NULL};
    pid_t ranks[RANKS];
    for (int r = RANKS - 1; r >= 1; r--)
        ranks[r] = s_rank (&s_remote, r, "", timeout);
    ranks[0] = s_rank (&s_head, 0, "lo", timeout);
    for (int r = 1; r < RANKS; r++) {
        char tag[32];
        snprintf (tag, sizeof tag, "rank%d", r);
        s_expect_exit (ranks[r], tag, 1, "did not answer within 1500 ms", RUN_MS);
    }
    /*  Rank 0's map waits for workers that never come: stopped here. */
    CHECK (dp_test_stop (ranks[0], SIGTERM, ORPHAN_MS) != -1);
}

static const dp_test_case_t s_cases[] = {
    {"spmd_netns_join", s_case_join},
    {"spmd_netns_parted", s_case_parted},
};

int
main (int argc, char *argv[])
{
    s_owner = getpid ();
    atexit (s_at_exit); /* before dp_test_begin's: runs after it */
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

/*  test_slurm.c - dpool under a real Slurm: a one-node cluster of its own.

    Each case starts a cluster in its private directory: munged with a
    fresh key on a socket there, then slurmctld and slurmd (in the
    foreground, so that the test holds their pids) from a slurm.conf it
    writes: ports picked free, a ClusterName, state, spool, pid and log
    files, and FirstJobId all its own, so that two runs (ctest -j) never
    meet. SLURM_CONF points srun, sbatch, squeue and scontrol at it. The
    node has this host's short name and CPU count; its partition has
    OverSubscribe=FORCE, and a step of more tasks than CPUs is asked for
    with srun --overcommit (OverSubscribe lets jobs share CPUs, never one
    step's tasks). The cases:

    - srun -n 4 of examples/spmd_demo, ranks from Slurm's variables and a
      rendezvous file: rank 0 alone prints the map's results, which come
      from the worker processes of the three other ranks;
    - the same with srun --mpi=pmix and spmd_demo_mpi (skipped when the
      build has no MPI or Slurm no pmix plugin);
    - srun -N 1 -n 2 -c 1 dpool-worker against a broker the test starts:
      each task runs as many worker processes as it was given CPUs (one),
      and a dpool map completes on them;
    - sbatch of examples/dpool_map.sbatch, waited for until the job ends:
      its results, its exit code (0, and 1 when the tasks fail), the
      workers' processes as many as the node's CPUs, stopped by SIGTERM.

    After each, no process of the cluster but its daemons is left. Every
    process the cluster runs is known as the test's: it carries
    DPOOL_SLURM_TEST_OWNER=<test pid> in its environment (the daemons get
    it from the test, a task from srun), or, for a slurmstepd (which writes
    its title over its environment), holds the cluster's slurmd.log open.
    At exit, on failure and on the test's deadline every such process is
    killed by pid: slurmstepd and its tasks outlive slurmd by design. A run
    killed outright (SIGKILL) leaves them to the next run, which kills
    those whose owner is gone.

    Needs root (slurmd) and Debian's slurm-wlm and munge; without them it
    exits 77 (skipped) with the reason on stderr.
*/
#define _GNU_SOURCE
#include "dp_testutil.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_SECONDS 60
#define EXIT_SKIP    77
#define UP_MS        20000 /* the cluster, from munged's start to an idle node */
#define COMMAND_MS   10000 /* squeue, scontrol, sinfo, scancel */
#define JOB_MS       30000 /* one srun or sbatch job, start to end */
#define STOP_MS      10000 /* a daemon's exit after SIGTERM; the jobs' end */
#define POLL_MS      100   /* between two runs of a polling command */
#define RANKS        "4"
#define OWNER_VAR    "DPOOL_SLURM_TEST_OWNER"
#define MAP_LINES    30

#ifndef DPOOL_SPMD_DEMO_BIN
#define DPOOL_SPMD_DEMO_BIN "spmd_demo"
#endif
#ifndef DPOOL_SBATCH_SCRIPT
#define DPOOL_SBATCH_SCRIPT "dpool_map.sbatch"
#endif

/*  The cluster of this test. */
typedef struct {
    char conf[PATH_MAX]; /* its slurm.conf */
    char node[64];       /* the node's name: this host's short name */
    int cpus;            /* the node's CPUs */
    pid_t munged;
    pid_t slurmctld;
    pid_t slurmd;
} s_cluster_t;

static s_cluster_t s_cluster;
static pid_t s_owner;                /* the test process */
static struct sigaction s_old_alarm; /* dp_testutil's deadline handler */

/*  Ends the test as skipped, with the reason. */
static void
s_skip (const char *format, ...) __attribute__ ((noreturn, format (printf, 1, 2)));

static void
s_skip (const char *format, ...)
{
    char reason[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (reason, sizeof reason, format, args);
    va_end (args);
    fprintf (stderr, "SKIP slurm: %s\n", reason);
    exit (EXIT_SKIP);
}

/*  ---------------------------------------------------------------------------
    The cluster's processes, found by the owner variable in their
    environment; killed by pid.
*/

/*  The owner named in process pid's environment: > 0, or 0 if none. */
static pid_t
s_owner_in_environ (const char *pid)
{
    char path[64], environ_text[65536];
    snprintf (path, sizeof path, "/proc/%s/environ", pid);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t size = read (fd, environ_text, sizeof environ_text - 1);
    close (fd);
    if (size <= 0)
        return 0;
    environ_text[size] = 0;
    size_t prefix = strlen (OWNER_VAR "=");
    for (char *var = environ_text; var < environ_text + size; var += strlen (var) + 1)
        if (strncmp (var, OWNER_VAR "=", prefix) == 0)
            return (pid_t)atol (var + prefix);
    return 0;
}

/*  The owner of the cluster whose slurmd.log process pid holds open (as
    its slurmstepd do: they write over their environment with their
    title): the pid in the ClusterName of the slurm.conf beside the log.
    > 0, or 0 if none. */
static pid_t
s_owner_in_files (const char *pid)
{
    char path[64], link[PATH_MAX];
    snprintf (path, sizeof path, "/proc/%s/fd", pid);
    DIR *fds = opendir (path);
    if (!fds)
        return 0;
    pid_t owner = 0;
    struct dirent *entry;
    while (!owner && (entry = readdir (fds))) {
        snprintf (path, sizeof path, "/proc/%s/fd/%.16s", pid, entry->d_name);
        ssize_t size = readlink (path, link, sizeof link - 1);
        if (size <= 0)
            continue;
        link[size] = 0;
        char *log = strstr (link, "/slurmd.log");
        if (!strstr (link, "/dpool-slurm_") || !log || log[strlen ("/slurmd.log")])
            continue;
        strcpy (log, "/slurm.conf");
        char *conf = dp_test_read_file (link);
        const char *name = conf ? strstr (conf, "ClusterName=dpool") : NULL;
        owner = name ? (pid_t)atol (name + strlen ("ClusterName=dpool")) : 0;
        free (conf);
    }
    closedir (fds);
    return owner;
}

/*  The test that owns process pid (a decimal string): > 0, or 0. */
static pid_t
s_owner_of (const char *pid)
{
    pid_t owner = s_owner_in_environ (pid);
    return owner ? owner : s_owner_in_files (pid);
}

/*  True if process pid runs (a zombie has ended: its parent may never reap
    it, as a container's first process may not). */
static bool
s_alive (pid_t pid)
{
    char path[64], stat_text[512] = "";
    snprintf (path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t size = read (fd, stat_text, sizeof stat_text - 1);
    close (fd);
    const char *state = size > 0 ? strrchr (stat_text, ')') : NULL;
    return state && state[1] == ' ' && state[2] != 'Z' && state[2] != 'X';
}

/*  Calls found (pid) on every process but this one whose owner is ours,
    or, if stale, whose owner has gone. Returns how many. */
static int
s_each_owned (bool stale, void (*found) (pid_t pid))
{
    DIR *proc = opendir ("/proc");
    if (!proc)
        return 0;
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir (proc))) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9')
            continue;
        pid_t pid = (pid_t)atol (entry->d_name);
        pid_t owner = pid == getpid () ? 0 : s_owner_of (entry->d_name);
        if (owner <= 0)
            continue;
        bool ours = owner == s_owner;
        if (stale ? (!ours && !s_alive (owner)) : ours) {
            count++;
            if (found)
                found (pid);
        }
    }
    closedir (proc);
    return count;
}

static void
s_kill_pid (pid_t pid)
{
    kill (pid, SIGKILL);
}

/*  Kills every process of the cluster (at exit and on failure). */
static void
s_sweep (void)
{
    if (getpid () == s_owner)
        s_each_owned (false, s_kill_pid);
}

/*  On the test's deadline: the cluster's processes, then dp_testutil's. */
static void
s_on_alarm (int sig)
{
    s_sweep ();
    if (s_old_alarm.sa_handler != SIG_DFL && s_old_alarm.sa_handler != SIG_IGN)
        s_old_alarm.sa_handler (sig);
    _exit (1);
}

/*  ---------------------------------------------------------------------------
    Commands.
*/

/*  Runs argv (argv[0] found in PATH) to its end with stdout and stderr in
    tag.out and tag.err, emptied first; returns its wait status, and its
    stdout in *out if out (the caller frees). Stops the test if it does not
    end within timeout_ms. */
static int
s_run (const char *tag, const char *const *argv, int timeout_ms, char **out)
{
    char name[64];
    snprintf (name, sizeof name, "%s.out", tag);
    unlink (dp_test_path (name));
    snprintf (name, sizeof name, "%s.err", tag);
    unlink (dp_test_path (name));
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    int status = dp_test_wait_exit (pid, timeout_ms);
    if (status == -1) {
        dp_test_stop (pid, SIGKILL, 1000);
        dp_test_fail (__FILE__, __LINE__, "%s did not end within %d ms", argv[0], timeout_ms);
    }
    if (out) {
        snprintf (name, sizeof name, "%s.out", tag);
        *out = dp_test_read_file (dp_test_path (name));
        if (!*out)
            *out = strdup ("");
    }
    return status;
}

/*  Stops the test with message, and tag's stderr, unless status is exit 0. */
static void
s_expect_ok (int status, const char *tag)
{
    if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
        return;
    char name[64];
    snprintf (name, sizeof name, "%s.err", tag);
    char *err = dp_test_read_file (dp_test_path (name));
    dp_test_fail (__FILE__, __LINE__, "%s: wait status %d; stderr:\n%s", tag, status,
                  err ? err : "");
}

/*  Writes text to the file name in the test directory, mode 0600. */
static void
s_write (const char *name, const void *text, size_t size)
{
    int fd = open (dp_test_path (name), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK (fd >= 0);
    CHECK (write (fd, text, size) == (ssize_t)size);
    close (fd);
}

/*  Prints the end of the daemons' logs to stderr. */
static void
s_print_logs (void)
{
    const char *logs[] = {"munged.log", "slurmctld.log", "slurmd.log",
                          "munged.err", "slurmctld.err", "slurmd.err"};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++) {
        char *text = dp_test_read_file (dp_test_path (logs[i]));
        if (!text)
            continue;
        size_t size = strlen (text);
        fprintf (stderr, "--- %s%s\n%s\n", logs[i], size > 4000 ? " (its end)" : "",
                 size > 4000 ? text + size - 4000 : text);
        free (text);
    }
}

/*  ---------------------------------------------------------------------------
    The cluster.
*/

/*  A port no socket holds now: bound, then freed. */
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    CHECK (fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl (INADDR_ANY);
    socklen_t len = sizeof addr;
    CHECK (bind (fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK (getsockname (fd, (struct sockaddr *)&addr, &len) == 0);
    close (fd);
    return ntohs (addr.sin_port);
}

/*  Skips the test unless it runs as root with every program it needs. */
static void
s_require (void)
{
    if (geteuid () != 0)
        s_skip ("slurmd needs root");
    const char *programs[] = {"munged", "slurmctld", "slurmd",  "srun", "sbatch",
                              "squeue", "scontrol",  "scancel", "sinfo"};
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        char command[128];
        snprintf (command, sizeof command, "command -v %s >/dev/null", programs[i]);
        if (system (command) != 0)
            s_skip ("no %s on PATH (Debian: apt-get install slurm-wlm munge)", programs[i]);
    }
}

/*  Forgets the Slurm variables of any job this test runs in (its own
    cluster is not that job's) and marks every process it starts. */
static void
s_environment (void)
{
    extern char **environ;
    const char *prefixes[] = {"SLURM_", "SBATCH_", "SALLOC_", "SRUN_"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        for (char **var = environ; *var;)
            if (strncmp (*var, prefixes[i], strlen (prefixes[i])) == 0) {
                char name[256];
                snprintf (name, sizeof name, "%.*s", (int)strcspn (*var, "="), *var);
                unsetenv (name); /* environ changed: look again from its start */
                var = environ;
            } else
                var++;
    char owner[32];
    snprintf (owner, sizeof owner, "%ld", (long)s_owner);
    setenv (OWNER_VAR, owner, 1);
    setenv ("SLURM_CONF", s_cluster.conf, 1);
}

/*  munged with a fresh key, on a socket in the test directory. */
static void
s_munged_start (void)
{
    /*  munged wants every directory above its socket searchable by all. */
    CHECK (chmod (dp_test_dir (), 0755) == 0);
    unsigned char key[1024];
    CHECK (getrandom (key, sizeof key, 0) == (ssize_t)sizeof key);
    s_write ("munge.key", key, sizeof key);
    char socket_arg[PATH_MAX + 16], key_arg[PATH_MAX + 16], log_arg[PATH_MAX + 16];
    char pid_arg[PATH_MAX + 16], seed_arg[PATH_MAX + 16];
    snprintf (socket_arg, sizeof socket_arg, "--socket=%s", dp_test_path ("munge.socket"));
    snprintf (key_arg, sizeof key_arg, "--key-file=%s", dp_test_path ("munge.key"));
    snprintf (log_arg, sizeof log_arg, "--log-file=%s", dp_test_path ("munged.log"));
    snprintf (pid_arg, sizeof pid_arg, "--pid-file=%s", dp_test_path ("munged.pid"));
    snprintf (seed_arg, sizeof seed_arg, "--seed-file=%s", dp_test_path ("munged.seed"));
    const char *argv[] = {"munged", "--foreground", socket_arg, key_arg,
                          log_arg,  pid_arg,        seed_arg,   NULL};
    s_cluster.munged = dp_test_spawn ("munged", (char *const *)argv);
}

/*  The configuration's first half: names, ports, files. */
static void
s_conf_daemons (FILE *conf)
{
    const char *dir = dp_test_dir ();
    fprintf (conf, "ClusterName=dpool%ld\n", (long)s_owner);
    fprintf (conf, "SlurmctldHost=%s(127.0.0.1)\n", s_cluster.node);
    fprintf (conf, "SlurmctldPort=%d\nSlurmdPort=%d\n", s_free_port (), s_free_port ());
    fprintf (conf, "SlurmUser=root\nSlurmdUser=root\n");
    fprintf (conf, "AuthType=auth/munge\nCredType=cred/munge\n");
    fprintf (conf, "AuthInfo=socket=%s/munge.socket\n", dir);
    fprintf (conf, "StateSaveLocation=%s/state\nSlurmdSpoolDir=%s/spool\n", dir, dir);
    fprintf (conf, "TmpFS=%s\n", dir);
    fprintf (conf, "SlurmctldPidFile=%s/slurmctld.pid\n", dir);
    fprintf (conf, "SlurmdPidFile=%s/slurmd.pid\n", dir);
    fprintf (conf, "SlurmctldLogFile=%s/slurmctld.log\n", dir);
    fprintf (conf, "SlurmdLogFile=%s/slurmd.log\n", dir);
    /*  Job ids of their own too: pmix names files in TmpFS after them. */
    fprintf (conf, "FirstJobId=%ld\n", 1000 + (long)(s_owner % 60000) * 1000);
}

/*  The configuration's second half: no cgroups (a container has none to
    give), the node and its partition. */
static void
s_conf_node (FILE *conf)
{
    fprintf (conf, "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n");
    fprintf (conf, "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n");
    fprintf (conf, "SchedulerType=sched/builtin\nMpiDefault=none\n");
    fprintf (conf, "JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n");
    fprintf (conf, "JobAcctGatherType=jobacct_gather/none\n");
    fprintf (conf, "ReturnToService=2\nSlurmdParameters=config_overrides\n");
    fprintf (conf, "InactiveLimit=0\nKillWait=2\nMinJobAge=300\n");
    fprintf (conf, "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d State=UNKNOWN\n", s_cluster.node,
             s_cluster.cpus);
    fprintf (conf,
             "PartitionName=dpool Nodes=%s Default=YES MaxTime=INFINITE State=UP "
             "OverSubscribe=FORCE:4\n",
             s_cluster.node);
}

/*  Writes slurm.conf and the directories it names. */
static void
s_conf_write (void)
{
    char host[256] = "";
    CHECK (gethostname (host, sizeof host - 1) == 0);
    host[strcspn (host, ".")] = 0;
    CHECK (strlen (host) < sizeof s_cluster.node); /* a host name is at most 63 bytes */
    memcpy (s_cluster.node, host, strlen (host) + 1);
    long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    s_cluster.cpus = cpus > 0 ? (int)cpus : 1;
    CHECK (mkdir (dp_test_path ("state"), 0700) == 0);
    CHECK (mkdir (dp_test_path ("spool"), 0700) == 0);
    snprintf (s_cluster.conf, sizeof s_cluster.conf, "%s", dp_test_path ("slurm.conf"));
    FILE *conf = fopen (s_cluster.conf, "w");
    CHECK (conf);
    s_conf_daemons (conf);
    s_conf_node (conf);
    CHECK (fclose (conf) == 0);
}

/*  True once sinfo says the node is idle; runs sinfo once. */
static bool
s_node_idle (void)
{
    const char *argv[] = {"sinfo", "--noheader", "--format=%t", NULL};
    char *out = NULL;
    int status = s_run ("sinfo", argv, COMMAND_MS, &out);
    bool idle = WIFEXITED (status) && WEXITSTATUS (status) == 0 && strcmp (out, "idle\n") == 0;
    free (out);
    return idle;
}

/*  Starts the whole cluster and waits until its node is idle; stops the
    test, with the daemons' logs, if it does not come up within UP_MS. */
static void
s_cluster_start (void)
{
    s_require ();
    s_owner = getpid ();
    s_each_owned (true, s_kill_pid); /* what a killed run left */
    s_conf_write ();
    s_environment ();
    atexit (s_sweep);
    struct sigaction alarm_action = {.sa_handler = s_on_alarm};
    sigaction (SIGALRM, &alarm_action, &s_old_alarm);
    s_munged_start ();
    const char *slurmctld[] = {"slurmctld", "-D", "-f", s_cluster.conf, NULL};
    const char *slurmd[] = {"slurmd", "-D", "-f", s_cluster.conf, NULL};
    s_cluster.slurmctld = dp_test_spawn ("slurmctld", (char *const *)slurmctld);
    s_cluster.slurmd = dp_test_spawn ("slurmd", (char *const *)slurmd);
    int64_t deadline = dp_test_now_ms () + UP_MS;
    while (!s_node_idle ()) {
        if (dp_test_now_ms () > deadline) {
            s_print_logs ();
            dp_test_fail (__FILE__, __LINE__, "the cluster was not up within %d ms", UP_MS);
        }
        dp_test_sleep_ms (POLL_MS);
    }
}

/*  Waits until the cluster runs nothing but its daemons: every job step's
    slurmstepd and tasks gone. */
static void
s_expect_no_leftovers (void)
{
    int64_t deadline = dp_test_now_ms () + STOP_MS;
    int left;
    while ((left = s_each_owned (false, NULL) - 3) > 0) {
        if (dp_test_now_ms () > deadline)
            dp_test_fail (__FILE__, __LINE__, "%d processes of the cluster's jobs left", left);
        dp_test_sleep_ms (POLL_MS);
    }
}

/*  Stops the daemons by pid: each must exit 0 on SIGTERM. */
static void
s_cluster_stop (void)
{
    s_expect_no_leftovers ();
    CHECK_EQ_INT (dp_test_stop (s_cluster.slurmd, SIGTERM, STOP_MS), 0);
    CHECK_EQ_INT (dp_test_stop (s_cluster.slurmctld, SIGTERM, STOP_MS), 0);
    CHECK_EQ_INT (dp_test_stop (s_cluster.munged, SIGTERM, STOP_MS), 0);
    CHECK_EQ_INT (s_each_owned (false, NULL), 0);
}

/*  ---------------------------------------------------------------------------
    The cases.
*/

/*  Checks what srun --label printed for spmd_demo's `tasks` tasks: every
    line from task 0; the sum first; then the worker processes, one on each
    of ranks other than 0, that ran the tasks between them. */
static void
s_check_spmd (const char *out, int tasks, int workers)
{
    long long sum = 0;
    for (long long i = 0; i < tasks; i++)
        sum += i * i;
    char expected[128];
    snprintf (expected, sizeof expected, "0: sum of squares of 0..%d: %lld\n", tasks - 1, sum);
    if (strncmp (out, expected, strlen (expected)) != 0)
        dp_test_fail (__FILE__, __LINE__, "srun printed:\n%s\nexpected first:\n%s", out, expected);
    int processes = 0, ran = 0;
    for (const char *line = strchr (out, '\n') + 1; *line; line = strchr (line, '\n') + 1) {
        char host[256];
        long pid;
        int count;
        if (sscanf (line, "0: process %255[^:]:%ld ran %d tasks", host, &pid, &count) != 3)
            dp_test_fail (__FILE__, __LINE__, "srun printed:\n%s\nunexpected: %.80s", out, line);
        processes++;
        ran += count;
    }
    CHECK_EQ_INT (processes, workers);
    CHECK_EQ_INT (ran, tasks);
}

/*  srun -n 4 spmd_demo: ranks and rank 0's host from Slurm's variables,
    rank 0's endpoint through a rendezvous file. */
static void
s_case_srun_spmd (void)
{
    s_cluster_start ();
    char rendezvous[PATH_MAX + 8];
    snprintf (rendezvous, sizeof rendezvous, "file:%s", dp_test_path ("rendezvous"));
    setenv ("DPOOL_SPMD_RENDEZVOUS", rendezvous, 1);
    const char *argv[] = {"srun",
                          "--overcommit",
                          "-n",
                          RANKS,
                          "--label",
                          "--kill-on-bad-exit=1",
                          DPOOL_SPMD_DEMO_BIN,
                          "60",
                          "20",
                          NULL};
    char *out = NULL;
    s_expect_ok (s_run ("srun", argv, JOB_MS, &out), "srun");
    s_check_spmd (out, 60, atoi (RANKS) - 1);
    free (out);
    struct stat st;
    CHECK (stat (dp_test_path ("rendezvous"), &st) != 0); /* rank 0 removed it */
    s_cluster_stop ();
}

/*  srun --mpi=pmix -n 4 spmd_demo_mpi: ranks and rank 0's endpoint through
    MPI, which Open MPI gets from Slurm's PMIx server. */
static void
s_case_srun_pmix (void)
{
#ifndef DPOOL_SPMD_DEMO_MPI_BIN
    s_skip ("built without MPI: no spmd_demo_mpi");
#else
    s_cluster_start ();
    const char *list[] = {"srun", "--mpi=list", NULL};
    char *plugins = NULL;
    s_expect_ok (s_run ("mpi_list", list, COMMAND_MS, &plugins), "mpi_list");
    char *err = dp_test_read_file (dp_test_path ("mpi_list.err"));
    bool pmix = strstr (plugins, "pmix") || (err && strstr (err, "pmix"));
    free (err);
    free (plugins);
    if (!pmix)
        s_skip ("this Slurm has no pmix plugin (srun --mpi=list)");
    /*  Open MPI's own allocations outlive MPI_Finalize: not this test's to
        judge in a sanitizer build. */
    setenv ("ASAN_OPTIONS", "detect_leaks=0", 1);
    const char *argv[] = {"srun",
                          "--overcommit",
                          "-n",
                          RANKS,
                          "--label",
                          "--mpi=pmix",
                          "--kill-on-bad-exit=1",
                          DPOOL_SPMD_DEMO_MPI_BIN,
                          "60",
                          "20",
                          NULL};
    char *out = NULL;
    s_expect_ok (s_run ("srun", argv, JOB_MS, &out), "srun");
    s_check_spmd (out, 60, atoi (RANKS) - 1);
    free (out);
    s_cluster_stop ();
#endif
}

/*  Writes count lines of sleep's arguments to the file name; returns what
    dpool map prints for them (the caller frees). */
static char *
s_inputs (const char *name, int count)
{
    size_t size = (size_t)count * 32 + 1;
    char *text = malloc (size);
    CHECK (text);
    size_t at = 0;
    for (int i = 0; i < count; i++)
        at += (size_t)snprintf (text + at, size - at, "[0.01,%d]\n", i);
    s_write (name, text, at);
    return text;
}

/*  How many times text holds needle. */
static int
s_count (const char *text, const char *needle)
{
    int count = 0;
    for (const char *at = text; at && (at = strstr (at, needle)); at += strlen (needle))
        count++;
    return count;
}

/*  srun -N 1 -n 2 dpool-worker: a fleet of two tasks serves a broker the
    test started; each runs its share of the node's CPUs, one process
    (Slurm gives both tasks the node's 2 CPUs in SLURM_CPUS_ON_NODE). */
static void
s_case_srun_workers (void)
{
    s_cluster_start ();
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    const char *argv[] = {
        "srun",      "-N",       "1",           "-n",   "2", "--label", dp_test_worker_bin,
        "--connect", broker.tcp, "--log-level", "info", NULL};
    pid_t fleet = dp_test_spawn ("fleet", (char *const *)argv);
    dpool_pool_t *pool = dpool_pool_connect (broker.tcp);
    CHECK (pool);
    dp_test_wait_workers (pool, 2, JOB_MS);
    dpool_pool_destroy (&pool);
    char *expected = s_inputs ("inputs.jsonl", MAP_LINES);
    char command[3 * PATH_MAX];
    snprintf (command, sizeof command, "exec '%s' map sleep --connect '%s' < '%s'",
              dp_test_cli_bin, broker.tcp, dp_test_path ("inputs.jsonl"));
    const char *map[] = {"/bin/sh", "-c", command, NULL};
    char *out = NULL;
    s_expect_ok (s_run ("map", map, JOB_MS, &out), "map");
    CHECK_EQ_STR (out, expected);
    free (out);
    free (expected);
    char *log = dp_test_read_file (dp_test_path ("fleet.err"));
    CHECK (log);
    if (s_count (log, "supervising 1 worker processes") != 2 || !strstr (log, "0: ") ||
        !strstr (log, "1: "))
        dp_test_fail (__FILE__, __LINE__, "two tasks of one process each expected:\n%s", log);
    free (log);
    dp_test_stop (fleet, SIGTERM, STOP_MS); /* srun ends the step */
    dp_test_stop (broker.pid, SIGTERM, STOP_MS);
    s_cluster_stop ();
}

/*  Puts the directories of dpool-broker, dpool-worker and dpool first on
    PATH, where the batch script looks for them. */
static void
s_path_programs (void)
{
    const char *programs[] = {dp_test_broker_bin, dp_test_worker_bin, dp_test_cli_bin};
    char path[8192] = "";
    size_t at = 0;
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        char copy[PATH_MAX];
        snprintf (copy, sizeof copy, "%s", programs[i]);
        at += (size_t)snprintf (path + at, sizeof path - at, "%s:", dirname (copy));
        CHECK (at < sizeof path);
    }
    const char *old = getenv ("PATH");
    snprintf (path + at, sizeof path - at, "%s", old ? old : "/usr/bin:/bin");
    setenv ("PATH", path, 1);
}

/*  The field name=VALUE of scontrol's one-line record, into value. */
static bool
s_field (const char *record, const char *name, char *value, size_t size)
{
    char key[64];
    snprintf (key, sizeof key, " %s=", name);
    const char *at = strstr (record, key);
    if (!at)
        return false;
    at += strlen (key);
    snprintf (value, size, "%.*s", (int)strcspn (at, " \n"), at);
    return true;
}

/*  Waits until job has ended; returns its scontrol record (the caller
    frees). */
static char *
s_job_end (const char *job)
{
    const char *argv[] = {"scontrol", "--oneliner", "show", "job", job, NULL};
    int64_t deadline = dp_test_now_ms () + JOB_MS;
    for (;;) {
        char *record = NULL;
        s_expect_ok (s_run ("scontrol", argv, COMMAND_MS, &record), "scontrol");
        char state[64] = "";
        CHECK (s_field (record, "JobState", state, sizeof state));
        if (strcmp (state, "PENDING") && strcmp (state, "CONFIGURING") &&
            strcmp (state, "RUNNING") && strcmp (state, "COMPLETING"))
            return record;
        free (record);
        if (dp_test_now_ms () > deadline)
            dp_test_fail (__FILE__, __LINE__, "job %s still %s after %d ms", job, state, JOB_MS);
        dp_test_sleep_ms (POLL_MS);
    }
}

/*  Submits examples/dpool_map.sbatch over the file inputs_name (in the
    test directory) with the variables exports, waits for its end, and checks its state and exit
   code. Returns the job's output (the caller frees). */
static char *
s_sbatch (const char *exports, const char *inputs_name, const char *state, const char *exit_code)
{
    char output[PATH_MAX + 16], inputs[PATH_MAX], results[PATH_MAX];
    snprintf (inputs, sizeof inputs, "%s", dp_test_path (inputs_name));
    snprintf (output, sizeof output, "--output=%s", dp_test_path ("job-%j.out"));
    snprintf (results, sizeof results, "%s", dp_test_path ("results.jsonl"));
    const char *argv[] = {"sbatch", "--parsable", output, exports, DPOOL_SBATCH_SCRIPT,
                          inputs,   results,      NULL};
    char *job = NULL;
    s_expect_ok (s_run ("sbatch", argv, COMMAND_MS, &job), "sbatch");
    job[strcspn (job, ";\n")] = 0;
    char *record = s_job_end (job);
    char name[64], got_state[64] = "", got_exit[64] = "";
    snprintf (name, sizeof name, "job-%s.out", job);
    char *log = dp_test_read_file (dp_test_path (name));
    CHECK (log);
    s_field (record, "JobState", got_state, sizeof got_state);
    s_field (record, "ExitCode", got_exit, sizeof got_exit);
    if (strcmp (got_state, state) || strcmp (got_exit, exit_code))
        dp_test_fail (__FILE__, __LINE__, "job %s: %s, exit code %s; expected %s, %s:\n%s", job,
                      got_state, got_exit, state, exit_code, log);
    free (record);
    free (job);
    return log;
}

/*  sbatch examples/dpool_map.sbatch, waited for until it ends: its results
    in input order; a dpool-worker of as many processes as the node's CPUs
    (the job has the node to itself), stopped cleanly by SIGTERM; and a map
    whose tasks fail ends the job with exit code 1. */
static void
s_case_sbatch_map (void)
{
    s_cluster_start ();
    s_path_programs ();
    char *expected = s_inputs ("inputs.jsonl", MAP_LINES);
    char *log = s_sbatch ("--export=ALL,DPOOL_LOG=info", "inputs.jsonl", "COMPLETED", "0:0");
    char *results = dp_test_read_file (dp_test_path ("results.jsonl"));
    CHECK_EQ_STR (results, expected);
    char line[64];
    snprintf (line, sizeof line, "supervising %d worker processes", s_cluster.cpus);
    if (!strstr (log, line) || !strstr (log, "signal 15: stopping the worker processes"))
        dp_test_fail (__FILE__, __LINE__, "the job's output lacks \"%s\" or a clean stop:\n%s",
                      line, log);
    free (log);
    free (results);
    free (expected);
    s_write ("fail.jsonl", "\"one\"\n\"two\"\n", 12);
    log = s_sbatch ("--export=ALL,FUNCTION=fail", "fail.jsonl", "FAILED", "1:0");
    results = dp_test_read_file (dp_test_path ("results.jsonl"));
    CHECK (results);
    CHECK_EQ_INT (s_count (results, "\"dpool_error\""), 2);
    free (results);
    free (log);
    s_cluster_stop ();
}

static const dp_test_case_t s_cases[] = {
    {"slurm_srun_spmd", s_case_srun_spmd},
    {"slurm_srun_pmix", s_case_srun_pmix},
    {"slurm_srun_workers", s_case_srun_workers},
    {"slurm_sbatch_map", s_case_sbatch_map},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

/*  test_netns_partition.c - "other hosts": a map outlives a network cut.

    The broker and one worker process run in one network namespace (the
    head host), two more worker processes in another (the remote host), and
    a veth pair joins the two: the remote workers reach the broker over tcp
    through it, the head's worker over ipc. The dpool command runs in the
    test's own namespace and reaches the broker over ipc too (a path-based
    unix socket crosses network namespaces).

    A map of 400 short sleeps starts; once each remote worker has finished
    one of its tasks, the remote end of the link goes down for longer than
    the heartbeat expiry, then comes back up. Checked: the broker drops the
    cut-off workers while the head's worker goes on with the work; the map
    exits 0 and output line i is the result of input line i for every i
    (none lost, doubled or out of order); the broker counts each task done
    exactly once; the remote workers register again once the link is back
    and take tasks of a second map.

    Needs root and iproute2's ip. Without them, or when the system refuses
    network namespaces or veth pairs, it exits 77 (skipped) with the reason
    on stderr. Its namespaces are named after its pid and deleted at exit,
    on failure, on the test's deadline and on SIGINT, SIGTERM or SIGHUP; the
    namespaces of a run that was killed outright (SIGKILL) are deleted, with
    the processes inside them, by the next run once that run's pid is gone.
    Silent on success; DPOOL_TEST_VERBOSE=1 prints the timeline.

    With the argument "curve", the same runs with CURVE: the broker has a
    secret key and admits only the key the workers and the dpool command
    share (given to them in DPOOL_CURVE_SERVER and DPOOL_CURVE_SECRET): every
    worker gets in with no failed handshake, and a dpool status without the
    keys gets no answer and is counted as one.
*/
#define _GNU_SOURCE
#include "dp_curve.h"
#include "dp_testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_NAME      "netns_partition"
#define TEST_SECONDS   60    /* the whole test's deadline */
#define EXIT_SKIP      77    /* ctest's SKIP_RETURN_CODE for this test */
#define STEP_MS        15000 /* how long one awaited condition may take */
#define COMMAND_MS     10000 /* how long one ip or dpool status command may take */
#define MAP_MS         40000 /* how long the first map may take from the link's return */
#define POLL_MS        50    /* between two status polls */
#define CUT_MS         4000  /* the link stays down at least this long (expiry: 2500) */
#define STOP_MS        5000  /* how long a stopped program may take to exit */
#define MAP_TASKS      400   /* sleeps of 20 to 40 ms: about 4 s for three workers */
#define MAP_SLEEP_S    0.02
#define TAIL_TASKS     30 /* the second map, once the link is back */
#define TAIL_SLEEP_S   0.05
#define SLEEP_STEP_S   0.00005 /* makes every input line's value distinct */
#define REMOTE_PROCS   2
#define LOCAL_PROCS    1
#define MAX_STALE      64
#define NETNS_DIR      "/var/run/netns" /* where ip netns keeps the names */
#define NETNS_PREFIX   "dpool-netns-"   /* + pid + "-head" or "-remote" */
#define HEAD_ADDRESS   "10.213.0.1"     /* exists only inside the test's namespaces */
#define REMOTE_ADDRESS "10.213.0.2"
#define PREFIX_LENGTH  "/30"

/*  One namespace of the test: its name, the path ip netns mounts it on,
    its end of the veth pair, and whether it may exist (then it is deleted
    at exit). */
typedef struct {
    char name[64];
    char path[128];
    char veth[IF_NAMESIZE];
    volatile sig_atomic_t made;
} s_netns_t;

static s_netns_t s_head;
static s_netns_t s_remote;
static char s_ip_path[PATH_MAX]; /* path of the ip program */
static char s_ipc[PATH_MAX];     /* the broker's ipc endpoint */
/*  CURVE mode: the broker's secret key file and the directory of admitted
    keys, for its command line; empty when off. */
static char s_curve_secret[PATH_MAX + 16];
static char s_curve_clients[PATH_MAX];
static pid_t s_owner;                 /* the test process, not a forked child */
static volatile pid_t s_command_pid;  /* the short command running, 0 if none */
static volatile pid_t s_long_pids[8]; /* the long-lived programs started */
static volatile sig_atomic_t s_nlong; /* how many of them */
static pid_t s_broker;                /* the broker's pid, once started */
static struct sigaction s_old_alarm;  /* dp_testutil's deadline handler */

/*  Ends the test as skipped, with the reason. */
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
    fprintf (stderr, "SKIP %s: %s\n", TEST_NAME, reason);
    exit (EXIT_SKIP);
}

/*  ---------------------------------------------------------------------------
    Short commands (ip, dpool status): run to the end under a timeout.
*/

/*  Runs argv (argv[0] a path) with stdout and stderr in the test directory's
    tag.out and tag.err (truncated first), or in /dev/null when tag is NULL.
    Returns its wait status, or -1 if it did not end within timeout_ms (it
    is then killed). */
static int
s_command (const char *tag, int timeout_ms, const char *const argv[])
{
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0)
        dp_test_fail (__FILE__, __LINE__, "fork: %s", strerror (errno));
    if (pid == 0) {
        setpgid (0, 0);
        char out_path[PATH_MAX], err_path[PATH_MAX];
        snprintf (out_path, sizeof out_path, "%s/%s.out", dp_test_dir (), tag ? tag : "");
        snprintf (err_path, sizeof err_path, "%s/%s.err", dp_test_dir (), tag ? tag : "");
        int flags = O_WRONLY | O_CREAT | O_TRUNC;
        int out = tag ? open (out_path, flags, 0644) : open ("/dev/null", O_WRONLY);
        int err = tag ? open (err_path, flags, 0644) : open ("/dev/null", O_WRONLY);
        if (out >= 0)
            dup2 (out, STDOUT_FILENO);
        if (err >= 0)
            dup2 (err, STDERR_FILENO);
        execv (argv[0], (char *const *)argv);
        _exit (127);
    }
    setpgid (pid, pid);
    s_command_pid = pid;
    int64_t deadline = dp_test_now_ms () + timeout_ms;
    int status = -1;
    for (;;) {
        pid_t rc = waitpid (pid, &status, WNOHANG);
        if (rc == pid)
            break;
        if (rc < 0 && errno != EINTR) {
            status = -1;
            break;
        }
        if (dp_test_now_ms () >= deadline) {
            kill (-pid, SIGKILL);
            waitpid (pid, NULL, 0);
            status = -1;
            break;
        }
        dp_test_sleep_ms (2);
    }
    s_command_pid = 0;
    return status;
}

/*  Runs `ip first ARGS...` (NULL-terminated) with its output in the test
    directory's tag.out and tag.err, or nowhere when tag is NULL. Returns its
    exit code, or -1 if it was killed or did not end in time. */
static int
s_ip_run (const char *tag, const char *first, va_list args)
{
    const char *argv[32];
    int argc = 0;
    argv[argc++] = s_ip_path;
    argv[argc++] = first;
    const char *arg;
    while ((arg = va_arg (args, const char *)) && argc < 31)
        argv[argc++] = arg;
    argv[argc] = NULL;
    int status = s_command (tag, COMMAND_MS, argv);
    return status != -1 && WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/*  Runs ip with its output in ip.out and ip.err; returns as s_ip_run. */
static int
s_ip (const char *first, ...)
{
    va_list args;
    va_start (args, first);
    int rc = s_ip_run ("ip", first, args);
    va_end (args);
    return rc;
}

/*  Runs ip with its output nowhere (cleanup, after the test directory may
    be gone); returns as s_ip_run. */
static int
s_ip_quiet (const char *first, ...)
{
    va_list args;
    va_start (args, first);
    int rc = s_ip_run (NULL, first, args);
    va_end (args);
    return rc;
}

/*  Stops the test unless an ip command exited 0 (rc), naming what it did. */
static void
s_ip_check (int rc, const char *what, int line)
{
    if (rc == 0)
        return;
    char *err = dp_test_output ("ip", "err");
    dp_test_fail (__FILE__, line, "ip could not %s (exit %d): %s", what, rc, err);
}

/*  ---------------------------------------------------------------------------
    Namespaces: made, and deleted whatever way the test ends.
*/

/*  Deletes a namespace quietly if it may exist. Not for signal handlers. */
static void
s_netns_delete (s_netns_t *netns)
{
    if (netns->made) {
        s_ip_quiet ("netns", "delete", netns->name, NULL);
        netns->made = 0;
    }
}

/*  At exit (normal, skip, or failure through dp_test_fail): registered
    before dp_test_begin, so it runs after dp_testutil has stopped every
    program the test started. Deleting the remote namespace deletes the
    veth pair with it. */
static void
s_at_exit (void)
{
    if (getpid () != s_owner)
        return;
    s_netns_delete (&s_remote);
    s_netns_delete (&s_head);
}

/*  What ip netns delete does, in async-signal-safe calls: unmount the
    namespace's name and remove it. The namespace itself ends when its last
    process does. */
static void
s_netns_unmount (s_netns_t *netns)
{
    if (netns->made) {
        umount2 (netns->path, MNT_DETACH);
        unlink (netns->path);
        netns->made = 0;
    }
}

/*  On the deadline (SIGALRM) or SIGINT, SIGTERM, SIGHUP: kill what the test
    started, delete the namespaces, and end as dp_testutil's deadline does
    (it kills the rest of its children and exits 1). */
static void
s_on_signal (int sig)
{
    if (getpid () != s_owner)
        _exit (1);
    if (s_command_pid > 0)
        kill (-s_command_pid, SIGKILL);
    for (int i = 0; i < s_nlong; i++)
        if (s_long_pids[i] > 0) {
            kill (-s_long_pids[i], SIGKILL);
            kill (s_long_pids[i], SIGKILL);
        }
    s_netns_unmount (&s_remote);
    s_netns_unmount (&s_head);
    if (sig == SIGALRM && s_old_alarm.sa_handler != SIG_DFL && s_old_alarm.sa_handler != SIG_IGN)
        s_old_alarm.sa_handler (sig);
    static const char text[] = "FAIL " TEST_NAME ": interrupted by a signal\n";
    ssize_t rc = write (STDERR_FILENO, text, sizeof text - 1);
    (void)rc;
    _exit (1);
}

static void
s_catch_signals (void)
{
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGALRM, &action, &s_old_alarm);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGHUP, &action, NULL);
}

/*  Finds ip where iproute2 installs it, or in PATH; skips without it. */
static void
s_find_ip (void)
{
    static const char *const places[] = {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++)
        if (access (places[i], X_OK) == 0) {
            snprintf (s_ip_path, sizeof s_ip_path, "%s", places[i]);
            return;
        }
    const char *path = getenv ("PATH");
    char copy[4096];
    snprintf (copy, sizeof copy, "%s", path ? path : "");
    for (char *save = NULL, *dir = strtok_r (copy, ":", &save); dir;
         dir = strtok_r (NULL, ":", &save)) {
        snprintf (s_ip_path, sizeof s_ip_path, "%s/ip", dir);
        if (access (s_ip_path, X_OK) == 0)
            return;
    }
    s_skip ("needs iproute2's ip, which is not installed");
}

/*  Kills every process inside a namespace (by pid, as ip netns pids lists
    them). Only for namespaces of this test whose run is gone. */
static void
s_kill_inside (const char *name)
{
    if (s_ip ("netns", "pids", name, NULL) != 0)
        return;
    char *text = dp_test_output ("ip", "out");
    for (char *save = NULL, *word = strtok_r (text, " \n", &save); word;
         word = strtok_r (NULL, " \n", &save)) {
        long pid = strtol (word, NULL, 10);
        if (pid > 1 && pid != (long)getpid ())
            kill ((pid_t)pid, SIGKILL);
    }
    free (text);
}

/*  Deletes the namespaces that runs of this test killed outright left
    behind: those named with a pid that is gone (or with this run's pid,
    which cannot have made any yet). Others belong to runs still going. */
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
        if (strncmp (entry->d_name, NETNS_PREFIX, prefix) != 0)
            continue;
        char *end;
        long pid = strtol (entry->d_name + prefix, &end, 10);
        if (pid <= 0 || (strcmp (end, "-head") != 0 && strcmp (end, "-remote") != 0))
            continue;
        if (pid != (long)getpid () && (kill ((pid_t)pid, 0) == 0 || errno == EPERM))
            continue;
        snprintf (stale[nstale++], sizeof stale[0], "%s", entry->d_name);
    }
    closedir (dir);
    for (int i = 0; i < nstale; i++) {
        s_kill_inside (stale[i]);
        int rc = s_ip ("netns", "delete", stale[i], NULL);
        fprintf (stderr, "note: %s namespace %s, left by a run of this test that is gone\n",
                 rc == 0 ? "deleted" : "could not delete", stale[i]);
    }
}

static void
s_netns_name (s_netns_t *netns, const char *role, char letter)
{
    snprintf (netns->name, sizeof netns->name, "%s%ld-%s", NETNS_PREFIX, (long)getpid (), role);
    snprintf (netns->path, sizeof netns->path, "%s/%s", NETNS_DIR, netns->name);
    snprintf (netns->veth, sizeof netns->veth, "dpv%ld%c", (long)getpid (), letter);
}

/*  Makes the two namespaces and the link between them, up, with an address
    at each end. Skips if the system refuses namespaces or veth pairs. */
static void
s_make_network (void)
{
    s_netns_name (&s_head, "head", 'h');
    s_netns_name (&s_remote, "remote", 'r');
    s_netns_t *both[] = {&s_head, &s_remote};
    for (int i = 0; i < 2; i++) {
        both[i]->made = 1; /* from now on deleted at exit, whatever happens */
        if (s_ip ("netns", "add", both[i]->name, NULL) != 0) {
            char *err = dp_test_output ("ip", "err");
            s_skip ("cannot make a network namespace (ip netns add %s): %s", both[i]->name, err);
        }
    }
    if (s_ip ("netns", "exec", s_head.name, "true", NULL) != 0) {
        char *err = dp_test_output ("ip", "err");
        s_skip ("cannot run programs in a network namespace (ip netns exec): %s", err);
    }
    if (s_ip ("-n", s_head.name, "link", "add", s_head.veth, "type", "veth", "peer", "name",
              s_remote.veth, "netns", s_remote.name, NULL) != 0) {
        char *err = dp_test_output ("ip", "err");
        s_skip ("cannot make a veth pair: %s", err);
    }
    s_ip_check (s_ip ("-n", s_head.name, "address", "add", HEAD_ADDRESS PREFIX_LENGTH, "dev",
                      s_head.veth, NULL),
                "address the head's end", __LINE__);
    s_ip_check (s_ip ("-n", s_remote.name, "address", "add", REMOTE_ADDRESS PREFIX_LENGTH, "dev",
                      s_remote.veth, NULL),
                "address the remote end", __LINE__);
    s_ip_check (s_ip ("-n", s_head.name, "link", "set", s_head.veth, "up", NULL),
                "bring the head's end up", __LINE__);
    s_ip_check (s_ip ("-n", s_remote.name, "link", "set", s_remote.veth, "up", NULL),
                "bring the remote end up", __LINE__);
}

/*  Deletes both namespaces now, checking that they are gone. */
static void
s_delete_network (void)
{
    s_netns_t *both[] = {&s_remote, &s_head};
    for (int i = 0; i < 2; i++) {
        s_ip_check (s_ip ("netns", "delete", both[i]->name, NULL), "delete a namespace", __LINE__);
        both[i]->made = 0;
        struct stat info;
        if (stat (both[i]->path, &info) == 0)
            dp_test_fail (__FILE__, __LINE__, "%s is still there after ip netns delete",
                          both[i]->path);
    }
}

/*  ---------------------------------------------------------------------------
    Programs: the broker, the workers and the maps.
*/

/*  Starts a long-lived program (dp_testutil stops it at exit) and remembers
    it for the signal handler. */
static pid_t
s_start (const char *tag, const char *const argv[])
{
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    if (s_nlong < (int)(sizeof s_long_pids / sizeof s_long_pids[0]))
        s_long_pids[s_nlong++] = pid;
    return pid;
}

static bool
s_has_endpoints (void *arg)
{
    char *text = dp_test_read_file ((const char *)arg);
    bool ready = text && strstr (text, "ipc://") && strstr (text, "tcp://");
    free (text);
    return ready;
}

/*  Starts the broker in the head namespace, bound to the head's address
    (the kernel picks the port) and to an ipc path; waits until it has
    bound both and writes its tcp endpoint into tcp. */
static pid_t
s_start_broker (char *tcp, size_t size)
{
    char endpoint_file[PATH_MAX];
    snprintf (endpoint_file, sizeof endpoint_file, "%s", dp_test_path ("broker.endpoints"));
    snprintf (s_ipc, sizeof s_ipc, "%s", dp_test_ipc ("broker"));
    const char *argv[] = {s_ip_path,
                          "netns",
                          "exec",
                          s_head.name,
                          dp_test_broker_bin,
                          "--bind",
                          "tcp://" HEAD_ADDRESS ":0",
                          "--bind",
                          s_ipc,
                          "--endpoint-file",
                          endpoint_file,
                          "--log-level",
                          "info",
                          s_curve_secret[0] ? "--curve-secret" : NULL,
                          s_curve_secret,
                          "--curve-clients",
                          s_curve_clients,
                          NULL};
    pid_t pid = s_start ("broker", argv);
    if (!dp_test_wait_until (s_has_endpoints, endpoint_file, STEP_MS)) {
        char *err = dp_test_output ("broker", "err");
        dp_test_fail (__FILE__, __LINE__, "the broker did not bind; its stderr:\n%s", err);
    }
    char *text = dp_test_read_file (endpoint_file);
    CHECK (text);
    char *start = strstr (text, "tcp://");
    CHECK (start);
    size_t len = strcspn (start, "\r\n");
    CHECK (len < size);
    memcpy (tcp, start, len);
    tcp[len] = 0;
    free (text);
    return pid;
}

/*  Starts `dpool-worker --procs procs --name name` connected to endpoint,
    inside the namespace; returns the supervisor's pid. */
static pid_t
s_start_workers (const s_netns_t *netns, const char *endpoint, int procs, const char *name)
{
    char nprocs[16];
    snprintf (nprocs, sizeof nprocs, "%d", procs);
    const char *argv[] = {s_ip_path,   "netns",       "exec",    netns->name, dp_test_worker_bin,
                          "--connect", endpoint,      "--procs", nprocs,      "--name",
                          name,        "--log-level", "info",    NULL};
    return s_start (name, argv);
}

/*  Writes count lines of sleep arguments, base + i * SLEEP_STEP_S seconds
    on line i: a distinct value on every line. Returns the file's path. */
static const char *
s_write_input (const char *name, int count, double base)
{
    static char path[PATH_MAX];
    snprintf (path, sizeof path, "%s", dp_test_path (name));
    FILE *file = fopen (path, "w");
    CHECK (file);
    for (int i = 0; i < count; i++)
        CHECK (fprintf (file, "%.5f\n", base + i * SLEEP_STEP_S) > 0);
    CHECK (fclose (file) == 0);
    return path;
}

/*  Starts `dpool map sleep --chunksize 1` over ipc with input on stdin and
    its output in tag.out. One task per line, so that the broker's counts
    are lines. */
static pid_t
s_start_map (const char *tag, const char *input)
{
    const char *argv[] = {"/bin/sh",
                          "-c",
                          "exec \"$0\" map sleep --connect \"$1\" --chunksize 1 < \"$2\"",
                          dp_test_cli_bin,
                          s_ipc,
                          input,
                          NULL};
    return s_start (tag, argv);
}

/*  Waits for a map to end and checks that it exited 0. */
static void
s_check_map_exit (pid_t pid, const char *tag, int timeout_ms)
{
    int status = dp_test_wait_exit (pid, timeout_ms);
    char *err = dp_test_output (tag, "err");
    if (status == -1)
        dp_test_fail (__FILE__, __LINE__, "[%s] did not end within %d ms; stderr:\n%s", tag,
                      timeout_ms, err);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        dp_test_fail (__FILE__, __LINE__, "[%s] ended with wait status 0x%x; stderr:\n%s", tag,
                      (unsigned)status, err);
    free (err);
}

/*  Splits text into its lines in place; returns how many (at most max). */
static int
s_lines (char *text, char **lines, int max)
{
    int n = 0;
    for (char *line = text; *line && n < max;) {
        char *end = strchr (line, '\n');
        lines[n++] = line;
        if (!end)
            break;
        *end = 0;
        line = end + 1;
    }
    return n;
}

/*  Checks that the map's output has exactly one line per input line and
    that line i holds the value of input line i (sleep returns its
    argument): nothing lost, doubled or out of order. Values are compared
    as JSON, not as text. */
static void
s_check_map_output (const char *tag, const char *input, int count)
{
    char *in_text = dp_test_read_file (input);
    char *out_text = dp_test_output (tag, "out");
    CHECK (in_text);
    char **in_lines = calloc ((size_t)count + 1, sizeof (char *));
    char **out_lines = calloc ((size_t)count + 1, sizeof (char *));
    CHECK (in_lines && out_lines);
    CHECK_EQ_INT (s_lines (in_text, in_lines, count + 1), count);
    int nout = s_lines (out_text, out_lines, count + 1);
    if (nout != count)
        dp_test_fail (__FILE__, __LINE__, "[%s] printed %d lines for %d input lines", tag, nout,
                      count);
    for (int i = 0; i < count; i++) {
        json_error_t error;
        json_t *want = json_loads (in_lines[i], JSON_DECODE_ANY, &error);
        json_t *got = json_loads (out_lines[i], JSON_DECODE_ANY, &error);
        if (!want || !got || !json_equal (want, got))
            dp_test_fail (__FILE__, __LINE__, "[%s] output line %d is \"%s\", expected \"%s\"",
                          tag, i + 1, out_lines[i], in_lines[i]);
        json_decref (want);
        json_decref (got);
    }
    free (in_lines);
    free (out_lines);
    free (in_text);
    free (out_text);
}

/*  ---------------------------------------------------------------------------
    The broker's status, through `dpool status --json` over ipc.
*/
typedef struct {
    int local;            /* workers registered, by group */
    int remote;           /* (groups are told apart by their --name) */
    long long local_done; /* tasks done by the workers registered now */
    long long remote_done;
    long long remote_min_done; /* the least any registered remote worker has done */
    long long remote_inflight; /* jobs the broker sees the remote workers hold */
    long long done;            /* the broker's own counts */
    long long failed;
    long long queued;
    long long inflight;
    long long handshake_failed; /* connections.handshake_failed */
    char text[4096];            /* the status as printed, for failure messages */
} s_status_t;

static long long
s_count (json_t *object, const char *key)
{
    json_t *value = json_object_get (object, key);
    return json_is_integer (value) ? (long long)json_integer_value (value) : -1;
}

/*  Asks the broker for its status; returns false if that failed. */
static bool
s_status_get (s_status_t *status)
{
    memset (status, 0, sizeof *status);
    status->remote_min_done = -1;
    const char *argv[] = {dp_test_cli_bin, "status", "--connect", s_ipc, "--json", NULL};
    int rc = s_command ("status", COMMAND_MS, argv);
    if (rc == -1 || !WIFEXITED (rc) || WEXITSTATUS (rc) != 0)
        return false;
    char *text = dp_test_output ("status", "out");
    snprintf (status->text, sizeof status->text, "%s", text);
    json_error_t error;
    json_t *root = json_loads (text, 0, &error);
    free (text);
    json_t *workers = root ? json_object_get (root, "workers") : NULL;
    if (!json_is_array (workers)) {
        json_decref (root);
        return false;
    }
    status->done = s_count (root, "done");
    status->failed = s_count (root, "failed");
    status->queued = s_count (root, "queued");
    status->inflight = s_count (root, "inflight");
    status->handshake_failed = s_count (json_object_get (root, "connections"), "handshake_failed");
    size_t index;
    json_t *worker;
    json_array_foreach (workers, index, worker)
    {
        const char *name = json_string_value (json_object_get (worker, "name"));
        long long done = s_count (worker, "done");
        if (name && strcmp (name, "local") == 0) {
            status->local++;
            status->local_done += done;
        } else if (name && strncmp (name, "remote/", 7) == 0) {
            /* dpool-worker --name remote --procs 2 names its processes remote/0, remote/1 */
            status->remote++;
            status->remote_done += done;
            status->remote_inflight += s_count (worker, "inflight");
            if (status->remote_min_done < 0 || done < status->remote_min_done)
                status->remote_min_done = done;
        }
    }
    json_decref (root);
    return true;
}

/*  Polls the status until cond holds; stops the test, naming what it was
    waiting for, if that takes longer than timeout_ms. */
static void
s_await (bool (*cond) (const s_status_t *), s_status_t *status, int timeout_ms, const char *what)
{
    int64_t deadline = dp_test_now_ms () + timeout_ms;
    for (;;) {
        int ended = s_broker > 0 ? dp_test_wait_exit (s_broker, 0) : -1;
        if (ended != -1) {
            char *err = dp_test_output ("broker", "err");
            dp_test_fail (__FILE__, __LINE__,
                          "the broker ended (wait status 0x%x) while the test waited for %s; "
                          "its stderr:\n%s",
                          (unsigned)ended, what, err);
        }
        bool ok = s_status_get (status);
        if (ok && cond (status))
            return;
        if (dp_test_now_ms () >= deadline)
            dp_test_fail (__FILE__, __LINE__, "waited %d ms for %s; the last status:\n%s",
                          timeout_ms, what, ok ? status->text : "(dpool status failed)");
        dp_test_sleep_ms (POLL_MS);
    }
}

static bool
s_all_registered (const s_status_t *status)
{
    return status->local == LOCAL_PROCS && status->remote == REMOTE_PROCS;
}

static bool
s_remote_busy (const s_status_t *status)
{
    return status->remote == REMOTE_PROCS && status->remote_min_done >= 1;
}

/*  The most jobs the broker saw the cut-off workers hold between the cut
    and their expiry: the tasks that must finish elsewhere. */
static long long s_held_at_cut;

static bool
s_remote_gone (const s_status_t *status)
{
    if (status->remote == REMOTE_PROCS && status->remote_inflight > s_held_at_cut)
        s_held_at_cut = status->remote_inflight;
    return status->remote == 0;
}

/*  Makes a broker key pair and one for every other program, admits the
    latter, and hands it to the programs the test starts through the
    environment they inherit. */
static void
s_curve_setup (void)
{
    char err[512], broker[PATH_MAX], node[PATH_MAX];
    snprintf (broker, sizeof broker, "%s", dp_test_path ("broker.key"));
    snprintf (node, sizeof node, "%s", dp_test_path ("node.key"));
    if (dp_curve_keygen (broker, err, sizeof err) || dp_curve_keygen (node, err, sizeof err))
        dp_test_fail (__FILE__, __LINE__, "keygen: %s", err);
    snprintf (s_curve_secret, sizeof s_curve_secret, "%s_secret", broker);
    snprintf (s_curve_clients, sizeof s_curve_clients, "%s", dp_test_path ("clients"));
    CHECK_EQ_INT (mkdir (s_curve_clients, 0700), 0);
    char *text = dp_test_read_file (node);
    CHECK (text);
    char admitted[PATH_MAX + 16];
    snprintf (admitted, sizeof admitted, "%s/node", s_curve_clients);
    FILE *file = fopen (admitted, "w");
    CHECK (file && fputs (text, file) >= 0 && fclose (file) == 0);
    free (text);
    char node_secret[PATH_MAX + 8];
    snprintf (node_secret, sizeof node_secret, "%s_secret", node);
    CHECK_EQ_INT (setenv ("DPOOL_CURVE_SERVER", broker, 1), 0);
    CHECK_EQ_INT (setenv ("DPOOL_CURVE_SECRET", node_secret, 1), 0);
}

/*  ---------------------------------------------------------------------------
    The test.
*/
/*  With CURVE on: every worker got in with its key, and the broker really
    is behind CURVE: without keys, no answer. */
static void
s_check_curve_only (s_status_t *status)
{
    CHECK_EQ_INT (status->handshake_failed, 0);
    const char *plain[] = {
        "/usr/bin/env",  "-u",     "DPOOL_CURVE_SERVER", "-u",  "DPOOL_CURVE_SECRET",
        dp_test_cli_bin, "status", "--connect",          s_ipc, "--connect-timeout-ms",
        "1000",          NULL};
    int rc = s_command ("plain", COMMAND_MS, plain);
    if (rc == -1 || !WIFEXITED (rc) || WEXITSTATUS (rc) != 3)
        dp_test_fail (__FILE__, __LINE__,
                      "dpool status without keys: wait status 0x%x, expected exit 3",
                      (unsigned)rc);
    /*  (Its reconnections go on being refused, and counted, for a while:
        only "at least one" is certain.) */
    CHECK (s_status_get (status));
    CHECK (status->handshake_failed >= 1);
}

/*  When each step of the cut happened (dp_test_now_ms), and what the head's
    worker had done by then. */
typedef struct {
    int64_t started, cut, dropped, up, back, finished;
    long long local_at_cut, local_at_up;
} s_timeline_t;

/*  Once each remote worker has finished a task of the running map, cuts
    the link; waits for the broker to drop the cut-off workers, keeps the
    link down CUT_MS at least, and brings it up again, checking that the
    head's worker went on meanwhile. */
static void
s_cut_and_heal (pid_t map, s_status_t *status, s_timeline_t *t)
{
    s_await (s_remote_busy, status, STEP_MS, "each remote worker to finish a task");
    int early = dp_test_wait_exit (map, 0);
    if (early != -1)
        dp_test_fail (__FILE__, __LINE__, "the map ended (wait status 0x%x) before the cut",
                      (unsigned)early);
    t->local_at_cut = status->local_done;
    t->cut = dp_test_now_ms ();
    s_ip_check (s_ip ("-n", s_remote.name, "link", "set", s_remote.veth, "down", NULL),
                "cut the link", __LINE__);

    /*  The broker drops the cut-off workers once they have been silent past
        the expiry; the link stays down CUT_MS at least, and until then. */
    s_await (s_remote_gone, status, STEP_MS, "the broker to drop the cut-off workers");
    t->dropped = dp_test_now_ms ();
    CHECK_EQ_INT (status->local, LOCAL_PROCS);
    if (s_held_at_cut < 1)
        dp_test_fail (__FILE__, __LINE__,
                      "the broker saw the cut-off workers hold no task before their expiry");
    dp_test_sleep_ms (t->cut + CUT_MS - dp_test_now_ms ());
    if (!s_status_get (status))
        dp_test_fail (__FILE__, __LINE__, "no status from the broker while the link was down");
    CHECK_EQ_INT (status->remote, 0);
    t->local_at_up = status->local_done;
    t->up = dp_test_now_ms ();
    s_ip_check (s_ip ("-n", s_remote.name, "link", "set", s_remote.veth, "up", NULL),
                "bring the link back up", __LINE__);
    if (t->local_at_up <= t->local_at_cut)
        dp_test_fail (__FILE__, __LINE__,
                      "the head's worker finished no task while the link was down (%lld done)",
                      t->local_at_up);
}

/*  The link works again: the remote workers take tasks of a new map. */
static void
s_check_tail (s_status_t *status)
{
    long long remote_before_tail = status->remote_done;
    const char *tail_input = s_write_input ("tail.in", TAIL_TASKS, TAIL_SLEEP_S);
    pid_t tail = s_start_map ("tail", tail_input);
    s_check_map_exit (tail, "tail", STEP_MS);
    s_check_map_output ("tail", tail_input, TAIL_TASKS);
    CHECK (s_status_get (status));
    CHECK_EQ_INT (status->remote, REMOTE_PROCS);
    if (status->remote_done <= remote_before_tail)
        dp_test_fail (__FILE__, __LINE__,
                      "the remote workers took no task after the link came back:\n%s",
                      status->text);
    CHECK_EQ_INT (status->done, MAP_TASKS + TAIL_TASKS);
    CHECK_EQ_INT (status->failed, 0);
}

static void
s_run (bool curve)
{
    s_catch_signals ();
    if (geteuid () != 0)
        s_skip ("needs root to make network namespaces (running as uid %ld)", (long)geteuid ());
    s_find_ip ();
    s_remove_stale ();
    s_make_network ();
    if (curve)
        s_curve_setup ();

    /*  The head host: the broker and one worker over ipc. The remote host:
        two workers over tcp through the link. */
    char tcp[128];
    pid_t broker = s_start_broker (tcp, sizeof tcp);
    s_broker = broker;
    pid_t local = s_start_workers (&s_head, s_ipc, LOCAL_PROCS, "local");
    pid_t remote = s_start_workers (&s_remote, tcp, REMOTE_PROCS, "remote");
    s_status_t status;
    s_await (s_all_registered, &status, STEP_MS, "the three workers to register");
    if (curve)
        s_check_curve_only (&status);

    /*  The map, and the cut in its middle. */
    s_timeline_t t = {.started = dp_test_now_ms ()};
    const char *input = s_write_input ("map.in", MAP_TASKS, MAP_SLEEP_S);
    pid_t map = s_start_map ("map", input);
    s_cut_and_heal (map, &status, &t);

    /*  The remote workers come back; the map ends with every line right,
        each task counted done once by the broker. */
    s_await (s_all_registered, &status, STEP_MS, "the remote workers to register again");
    t.back = dp_test_now_ms ();
    s_check_map_exit (map, "map", MAP_MS);
    t.finished = dp_test_now_ms ();
    s_check_map_output ("map", input, MAP_TASKS);
    CHECK (s_status_get (&status));
    CHECK_EQ_INT (status.done, MAP_TASKS);
    CHECK_EQ_INT (status.failed, 0);
    CHECK_EQ_INT (status.queued, 0);
    CHECK_EQ_INT (status.inflight, 0);
    s_check_tail (&status);

    dp_test_stop (remote, SIGTERM, STOP_MS);
    dp_test_stop (local, SIGTERM, STOP_MS);
    dp_test_stop (broker, SIGTERM, STOP_MS);
    s_delete_network ();
    if (getenv ("DPOOL_TEST_VERBOSE"))
        printf ("%s: cut %lld ms into the map; workers dropped %lld ms after the cut; "
                "link up %lld ms after the cut; remote workers back %lld ms after that; "
                "map done %lld ms after the start; head's worker did %lld tasks during the "
                "cut; the cut-off workers held %lld\n",
                TEST_NAME, (long long)(t.cut - t.started), (long long)(t.dropped - t.cut),
                (long long)(t.up - t.cut), (long long)(t.back - t.up),
                (long long)(t.finished - t.started), t.local_at_up - t.local_at_cut,
                s_held_at_cut);
}

static void
s_case_link_cut_mid_map (void)
{
    s_run (false);
}

/*  The same with the broker and workers behind CURVE. */
static void
s_case_link_cut_mid_map_with_curve (void)
{
    s_run (true);
}

static const dp_test_case_t s_cases[] = {
    {"netns_partition_link_cut_mid_map", s_case_link_cut_mid_map},
    {"netns_partition_link_cut_mid_map_with_curve", s_case_link_cut_mid_map_with_curve},
};

int
main (int argc, char *argv[])
{
    s_owner = getpid ();
    atexit (s_at_exit); /* before dp_test_begin's: runs after it */
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

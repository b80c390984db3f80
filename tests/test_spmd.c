/*  test_spmd.c - SPMD pools (dpool_pool_spmd) and worker fleets.

    The ranks are real processes of examples/spmd_demo: a fake launcher
    (this test) starts N of them with the variables srun or mpirun would
    set (SLURM_PROCID and SLURM_NTASKS, OMPI_COMM_WORLD_RANK and _SIZE),
    and they find rank 0 through a rendezvous file or a fixed endpoint; or
    the real mpirun starts spmd_demo_mpi. Checked: the map's results reach
    rank 0 and come from worker processes of the other ranks; every rank
    exits 0 when rank 0's pool is destroyed, a rank started after the map
    ended too; a worker rank killed mid-map
    loses no task; killing rank 0 ends every other rank within the
    broker's expiry, with none of their processes left; a rank that finds
    no rank 0 exits 1 naming what it waited for, and one takes no card
    that another user could have written. With CURVE (the default with a
    file or MPI): the job's keys travel on the card only, shown by no
    process, and rank 0's broker admits no one else. And dpool-worker's
    default --procs follows the launcher: taskset's mask, SLURM_CPUS_ON_NODE.
    Also the pure parts: Slurm host lists, and rank 0's card as hostile
    input. Every process is started in its own group and stopped by pid.
*/
#define _GNU_SOURCE /* memmem */

#include "dp_curve.h"
#include "dp_launcher.h"
#include "dp_rendezvous.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_SECONDS 60
#define EXIT_SKIP    77
#define RUN_MS       30000 /* one job, start to end */
#define RANKS        4
#define ENV_BIN      "/usr/bin/env"
#define TASKSET_BIN  "/usr/bin/taskset"
/*  Rank 0 gone, the others leave within the expiry of an idle worker
    (DP_IDLE_FACTOR x DP_EXPIRY_MS, 7.5 s) and a margin for a slow host. */
#define ORPHAN_MS 15000

#ifndef DPOOL_SPMD_DEMO_BIN
#define DPOOL_SPMD_DEMO_BIN "spmd_demo"
#endif

/*  A rank's variables, as its launcher would set them. */
typedef enum { LAUNCH_SLURM, LAUNCH_OMPI } s_launch_t;

/*  Starts rank of size ranks of spmd_demo with TASKS and SLEEP_MS, the
    rendezvous, and extra variables (NULL-terminated, may be NULL). */
static pid_t
s_rank (s_launch_t launch, int rank, int size, const char *rendezvous, const char *tasks,
        const char *sleep_ms, const char *const *extra)
{
    static char vars[8][256];
    const char *names[2][2] = {{"SLURM_PROCID", "SLURM_NTASKS"},
                               {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}};
    snprintf (vars[0], sizeof vars[0], "%s=%d", names[launch][0], rank);
    snprintf (vars[1], sizeof vars[1], "%s=%d", names[launch][1], size);
    snprintf (vars[2], sizeof vars[2], "DPOOL_SPMD_RENDEZVOUS=%s", rendezvous);
    const char *argv[16] = {ENV_BIN, vars[0], vars[1], vars[2], "DPOOL_LOG=info"};
    int argc = 5;
    for (int i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc++] = DPOOL_SPMD_DEMO_BIN;
    argv[argc++] = tasks;
    argv[argc++] = sleep_ms;
    char tag[32];
    snprintf (tag, sizeof tag, "rank%d", rank);
    return dp_test_spawn (tag, (char *const *)argv);
}

/*  Waits for pid to exit with status; stops the test with its stderr. */
static void
s_expect_exit (pid_t pid, const char *tag, int status, int timeout_ms)
{
    int got = dp_test_wait_exit (pid, timeout_ms);
    char name[64];
    snprintf (name, sizeof name, "%s.err", tag);
    char *err = dp_test_read_file (dp_test_path (name));
    if (got == -1 || !WIFEXITED (got) || WEXITSTATUS (got) != status)
        dp_test_fail (__FILE__, __LINE__, "%s: wait status %d, expected exit %d; stderr:\n%s", tag,
                      got, status, err ? err : "");
    free (err);
}

/*  The rendezvous of a job whose ranks meet in a file of the test's
    directory (a static buffer). */
static const char *
s_file_rendezvous (void)
{
    static char rendezvous[1024];
    snprintf (rendezvous, sizeof rendezvous, "file:%s", dp_test_path ("rendezvous"));
    return rendezvous;
}

/*  Reads rank 0's report: the sum must be that of 0..tasks-1 squared, and
    the processes that ran tasks are put in pids (returns how many). */
static int
s_report (int tasks, long *pids, int max)
{
    char *out = dp_test_read_file (dp_test_path ("rank0.out"));
    CHECK (out);
    char expected[128];
    long long sum = 0;
    for (long long i = 0; i < tasks; i++)
        sum += i * i;
    snprintf (expected, sizeof expected, "sum of squares of 0..%d: %lld\n", tasks - 1, sum);
    if (strncmp (out, expected, strlen (expected)) != 0)
        dp_test_fail (__FILE__, __LINE__, "rank 0 printed:\n%s\nexpected first:\n%s", out,
                      expected);
    int n = 0, ran = 0;
    const char *line = strchr (out, '\n') + 1;
    while (*line && n < max) {
        long pid;
        int count;
        char host[256];
        CHECK (sscanf (line, "process %255[^:]:%ld ran %d tasks", host, &pid, &count) == 3);
        pids[n++] = pid;
        ran += count;
        line = strchr (line, '\n') + 1;
    }
    CHECK_EQ_INT (ran, tasks);
    free (out);
    return n;
}

/*  True if no process pid exists any more. */
static bool
s_all_gone (void *arg)
{
    const long *pids = (const long *)arg;
    for (int i = 0; pids[i]; i++)
        if (kill ((pid_t)pids[i], 0) == 0)
            return false;
    return true;
}

static void
s_expect_err (const char *tag, const char *text);

/*  A job of RANKS ranks through the rendezvous, to its results. */
static void
s_job (s_launch_t launch, const char *rendezvous)
{
    pid_t ranks[RANKS];
    /*  The workers first: they wait for rank 0's card. */
    for (int r = RANKS - 1; r >= 0; r--)
        ranks[r] = s_rank (launch, r, RANKS, rendezvous, "60", "20", NULL);
    s_expect_exit (ranks[0], "rank0", 0, RUN_MS);
    long pids[RANKS * 2 + 1] = {0};
    int n = s_report (60, pids, RANKS * 2);
    /*  Rank 0 runs no worker of its own: every task ran on another rank. */
    for (int i = 0; i < n; i++)
        CHECK (pids[i] != ranks[0]);
    for (int r = 1; r < RANKS; r++) {
        char tag[32];
        snprintf (tag, sizeof tag, "rank%d", r);
        s_expect_exit (ranks[r], tag, 0, ORPHAN_MS);
    }
    CHECK (dp_test_wait_until (s_all_gone, pids, ORPHAN_MS));
}

static void
s_case_file (void)
{
    const char *rendezvous = s_file_rendezvous ();
    s_job (LAUNCH_SLURM, rendezvous);
    s_expect_err ("rank0", "(CURVE)"); /* by default, with a file to carry the keys */
    /*  Rank 0 removed its card when its pool ended. */
    struct stat st;
    CHECK (stat (dp_test_path ("rendezvous"), &st) != 0);
}

/*  A free loopback port: bound, then freed. */
static int
s_free_port (void);

static void
s_case_fixed_endpoint (void)
{
    char rendezvous[64];
    snprintf (rendezvous, sizeof rendezvous, "tcp://127.0.0.1:%d", s_free_port ());
    s_job (LAUNCH_OMPI, rendezvous);
}

static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    CHECK (fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    CHECK (bind (fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK (getsockname (fd, (struct sockaddr *)&addr, &len) == 0);
    close (fd);
    return ntohs (addr.sin_port);
}

/*  True if the file name (in the test directory) holds text. */
static bool
s_file_has (const char *name, const char *text)
{
    char *content = dp_test_read_file (dp_test_path (name));
    bool yes = content && strstr (content, text);
    free (content);
    return yes;
}

/*  True when the file named arg (in the test directory) says a worker
    registered with rank 0's broker. */
static bool
s_registered (void *arg)
{
    return s_file_has ((const char *)arg, "registered with broker");
}

/*  True when no process is left in the group arg (a pid_t *). */
static bool
s_group_gone (void *arg)
{
    return kill (-*(pid_t *)arg, 0) != 0;
}

/*  True when rank 0's stderr says its pool's session ended (the broker's
    "client ... gone"): its map is done. */
static bool
s_root_ended (void *arg)
{
    (void)arg;
    return s_file_has ("rank0.err", ") gone with ");
}

/*  A short job whose map ends before its last rank has started (mpirun
    may start ranks that late): rank 0's pool ends, but its broker serves
    on until rank 2 has joined, so rank 2 gets the goodbye and every rank
    exits 0, instead of rank 2 failing after the job's timeout. */
static void
s_case_late_rank (void)
{
    const char *rendezvous = s_file_rendezvous ();
    pid_t one = s_rank (LAUNCH_SLURM, 1, 3, rendezvous, "20", "0", NULL);
    pid_t root = s_rank (LAUNCH_SLURM, 0, 3, rendezvous, "20", "0", NULL);
    /*  The map has ended (on rank 1): rank 0 is in its pool's end. */
    CHECK (dp_test_wait_until (s_root_ended, NULL, RUN_MS));
    CHECK (kill (root, 0) == 0);
    s_expect_err ("rank0", "1 of the 2 other ranks have not joined yet");
    pid_t two = s_rank (LAUNCH_SLURM, 2, 3, rendezvous, "20", "0", NULL);
    s_expect_exit (root, "rank0", 0, RUN_MS);
    long pids[8] = {0};
    s_report (20, pids, 7);
    s_expect_exit (one, "rank1", 0, ORPHAN_MS);
    s_expect_exit (two, "rank2", 0, ORPHAN_MS);
    s_expect_err ("rank2", "the broker said goodbye");
}

/*  Three ranks on a map of slow tasks; once both worker ranks serve, one
    of them is killed: the map completes, its tasks run again elsewhere. */
static void
s_case_kill_worker_rank (void)
{
    const char *rendezvous = s_file_rendezvous ();
    pid_t two = s_rank (LAUNCH_SLURM, 2, 3, rendezvous, "40", "100", NULL);
    pid_t one = s_rank (LAUNCH_SLURM, 1, 3, rendezvous, "40", "100", NULL);
    pid_t root = s_rank (LAUNCH_SLURM, 0, 3, rendezvous, "40", "100", NULL);
    CHECK (dp_test_wait_until (s_registered, "rank1.err", RUN_MS));
    CHECK (dp_test_wait_until (s_registered, "rank2.err", RUN_MS));
    dp_test_sleep_ms (300); /* some tasks under way on both */
    kill (one, SIGKILL);
    CHECK (dp_test_wait_exit (one, RUN_MS) != -1); /* reaped: no zombie in its group */
    s_expect_exit (root, "rank0", 0, RUN_MS);
    long pids[8] = {0};
    s_report (40, pids, 7);
    s_expect_exit (two, "rank2", 0, ORPHAN_MS);
    CHECK (dp_test_wait_until (s_group_gone, &one, ORPHAN_MS));
    CHECK (dp_test_wait_until (s_group_gone, &two, ORPHAN_MS));
}

/*  Rank 0 killed mid-map: the others leave within the expiry, with every
    process they started. */
static void
s_case_kill_root (void)
{
    const char *rendezvous = s_file_rendezvous ();
    pid_t ranks[3];
    for (int r = 2; r >= 0; r--)
        ranks[r] = s_rank (LAUNCH_SLURM, r, 3, rendezvous, "1000", "100", NULL);
    CHECK (dp_test_wait_until (s_registered, "rank1.err", RUN_MS));
    CHECK (dp_test_wait_until (s_registered, "rank2.err", RUN_MS));
    kill (ranks[0], SIGKILL);
    int64_t start = dp_test_now_ms ();
    s_expect_exit (ranks[1], "rank1", 0, ORPHAN_MS);
    s_expect_exit (ranks[2], "rank2", 0, ORPHAN_MS);
    CHECK (dp_test_wait_until (s_group_gone, &ranks[1], ORPHAN_MS));
    CHECK (dp_test_wait_until (s_group_gone, &ranks[2], ORPHAN_MS));
    CHECK (dp_test_now_ms () - start < ORPHAN_MS);
}

/*  Checks that tag's stderr holds text. */
static void
s_expect_err (const char *tag, const char *text)
{
    char name[64];
    snprintf (name, sizeof name, "%s.err", tag);
    char *err = dp_test_read_file (dp_test_path (name));
    if (!err || !strstr (err, text))
        dp_test_fail (__FILE__, __LINE__, "%s's stderr lacks \"%s\":\n%s", tag, text,
                      err ? err : "");
    free (err);
}

/*  No rank 0: a rank waits for its card, or its broker, a bounded time,
    then exits 1 saying what it waited for. */
static void
s_case_unreachable (void)
{
    const char *timeout[] = {"DPOOL_SPMD_TIMEOUT_MS=500", NULL};
    const char *rendezvous = s_file_rendezvous ();
    pid_t rank = s_rank (LAUNCH_SLURM, 1, 2, rendezvous, "1", "0", timeout);
    s_expect_exit (rank, "rank1", 1, RUN_MS);
    s_expect_err ("rank1", "rank 0 wrote no endpoint to");
    s_expect_err ("rank1", rendezvous + strlen ("file:"));
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_free_port ());
    rank = s_rank (LAUNCH_OMPI, 2, 3, endpoint, "1", "0", timeout);
    s_expect_exit (rank, "rank2", 1, RUN_MS);
    s_expect_err ("rank2", "did not answer within 500 ms");
    s_expect_err ("rank2", endpoint);
}

/*  ---------------------------------------------------------------------------
    CURVE through the bootstrap.
*/

/*  True if path (a /proc file) holds text. */
static bool
s_file_holds (const char *path, const char *text)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return false; /* gone, or not ours to read */
    static char buf[1 << 20];
    size_t n = fread (buf, 1, sizeof buf, file);
    fclose (file);
    return memmem (buf, n, text, strlen (text)) != NULL;
}

/*  The first process whose command line or environment holds text, or 0. */
static pid_t
s_process_holding (const char *text)
{
    DIR *proc = opendir ("/proc");
    CHECK (proc);
    pid_t found = 0;
    struct dirent *entry;
    while (!found && (entry = readdir (proc))) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        char path[300];
        snprintf (path, sizeof path, "/proc/%s/cmdline", entry->d_name);
        bool holds = s_file_holds (path, text);
        snprintf (path, sizeof path, "/proc/%s/environ", entry->d_name);
        if (holds || s_file_holds (path, text))
            found = (pid_t)atol (entry->d_name);
    }
    closedir (proc);
    return found;
}

static bool
s_someone_holds (void *arg)
{
    return s_process_holding ((const char *)arg) != 0;
}

/*  True once the rendezvous file at arg holds a card. */
static bool
s_card_ready (void *arg)
{
    dp_card_t card;
    char *text = dp_test_read_file ((const char *)arg);
    bool ready = text && dp_card_parse (text, &card) == 0;
    free (text);
    return ready;
}

typedef struct {
    dpool_pool_t *pool;
    long long at_least;
} s_failed_t;

static bool
s_handshakes_failed (void *arg)
{
    s_failed_t *f = (s_failed_t *)arg;
    return dp_test_status_count (f->pool, "connections", "handshake_failed") >= f->at_least;
}

/*  A pool of the job's own key (a key file made from the card) on
    rank 0's broker; and no process shows the workers' secret key. */
static dpool_pool_t *
s_curve_pool (const dp_card_t *card)
{
    dp_curve_t keys;
    char err[256];
    CHECK (dp_curve_from_keys (&keys, card->curve_server, card->curve_secret, err, sizeof err) ==
           0);
    char text[256];
    snprintf (text, sizeof text, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n",
              keys.public_, keys.secret);
    FILE *file = fopen (dp_test_path ("job.key_secret"), "w");
    CHECK (file && fputs (text, file) >= 0 && fclose (file) == 0);
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = card->endpoint;
    config.curve_server = card->curve_server;
    config.curve_secret = dp_test_path ("job.key_secret");
    dpool_pool_t *pool = dpool_pool_new_config (&config);
    CHECK (pool);
    return pool;
}

/*  Rank 0's card with CURVE keys, read from the rendezvous file (mode
    0600) once rank 0 wrote it and every other rank's worker registered;
    no process's command line or environment shows the secret key. */
static void
s_curve_card (dp_card_t *card)
{
    char path[1024];
    snprintf (path, sizeof path, "%s", dp_test_path ("rendezvous"));
    CHECK (dp_test_wait_until (s_card_ready, path, RUN_MS));
    struct stat st;
    CHECK (stat (path, &st) == 0 && (st.st_mode & 0777) == 0600);
    char *text = dp_test_read_file (path);
    CHECK (text && dp_card_parse (text, card) == 0);
    free (text);
    CHECK (card->curve_server[0] && card->curve_secret[0]);
    for (int r = 1; r < RANKS; r++) {
        char tag[32];
        snprintf (tag, sizeof tag, "rank%d.err", r);
        CHECK (dp_test_wait_until (s_registered, tag, RUN_MS));
    }
    pid_t holder = s_process_holding (card->curve_secret);
    if (holder)
        dp_test_fail (__FILE__, __LINE__, "process %d shows the workers' secret key", holder);
}

/*  Rank 0's broker admits the job's key only: a plain worker and a client
    of a key of its own fail their handshakes and get nothing. */
static void
s_curve_refusals (const dp_card_t *card)
{
    dpool_pool_t *pool = s_curve_pool (card);
    dp_test_wait_workers (pool, RANKS, RUN_MS); /* 3 ranks, and rank 0's own over ipc */
    long long before = dp_test_status_count (pool, "connections", "handshake_failed");
    CHECK (before >= 0);
    pid_t plain = dp_test_workers_start (card->endpoint, 1, NULL);
    s_failed_t failed = {pool, before + 1};
    CHECK (dp_test_wait_until (s_handshakes_failed, &failed, RUN_MS));
    failed.at_least = dp_test_status_count (pool, "connections", "handshake_failed") + 1;
    dpool_config_t config;
    dpool_config_init (&config);
    config.connect = card->endpoint;
    config.curve_server = card->curve_server; /* and a fresh key of its own */
    dpool_pool_t *stranger = dpool_pool_new_config (&config);
    CHECK (stranger);
    void *data;
    size_t size;
    CHECK_EQ_INT (dpool_pool_status (stranger, 1000, &data, &size), -1);
    dpool_pool_destroy (&stranger);
    CHECK (dp_test_wait_until (s_handshakes_failed, &failed, RUN_MS));
    CHECK_EQ_INT (dp_test_status_count (pool, NULL, "workers"), RANKS);
    dpool_pool_destroy (&pool);
    dp_test_stop (plain, SIGTERM, RUN_MS);
}

/*  Four ranks with CURVE (and a worker process on rank 0, over ipc): the
    keys travel on the card, shown by no process, and admit only the job's
    processes; the job gets its results. And the scan can fail; and CURVE
    asked for with a fixed endpoint is refused. */
static void
s_case_curve (void)
{
    const char *rendezvous = s_file_rendezvous ();
    const char *extra[] = {"DPOOL_SPMD_CURVE=1", "DPOOL_SPMD_ROOT_PROCS=1", NULL};
    pid_t ranks[RANKS];
    for (int r = RANKS - 1; r >= 0; r--)
        ranks[r] = s_rank (LAUNCH_SLURM, r, RANKS, rendezvous, "400", "100", extra);
    dp_card_t card;
    s_curve_card (&card);
    s_curve_refusals (&card);
    s_expect_exit (ranks[0], "rank0", 0, RUN_MS);
    long pids[RANKS * 2 + 1] = {0};
    s_report (400, pids, RANKS * 2);
    for (int r = 1; r < RANKS; r++) {
        char tag[32];
        snprintf (tag, sizeof tag, "rank%d", r);
        s_expect_exit (ranks[r], tag, 0, ORPHAN_MS);
    }
    /*  The scan can find a key: a process started with it does. */
    char mark[128];
    snprintf (mark, sizeof mark, "DPOOL_TEST_MARK=%s", card.curve_secret);
    const char *argv[] = {ENV_BIN, mark, "/bin/sleep", "60", NULL};
    pid_t marked = dp_test_spawn ("marked", (char *const *)argv);
    CHECK (dp_test_wait_until (s_someone_holds, card.curve_secret, RUN_MS));
    dp_test_stop (marked, SIGKILL, RUN_MS);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_free_port ());
    pid_t fixed = s_rank (LAUNCH_OMPI, 0, 2, endpoint, "1", "0", extra);
    s_expect_exit (fixed, "rank0", 1, RUN_MS);
    s_expect_err ("rank0", "CURVE needs a channel for the job's keys");
}

/*  A rank that asked for CURVE does not serve a rank 0 that runs without
    it: it exits 1 saying so. */
static void
s_case_curve_mismatch (void)
{
    const char *rendezvous = s_file_rendezvous ();
    const char *off[] = {"DPOOL_SPMD_CURVE=0", NULL};
    const char *on[] = {"DPOOL_SPMD_CURVE=1", NULL};
    pid_t root = s_rank (LAUNCH_SLURM, 0, 2, rendezvous, "1", "0", off);
    pid_t rank = s_rank (LAUNCH_SLURM, 1, 2, rendezvous, "1", "0", on);
    s_expect_exit (rank, "rank1", 1, RUN_MS);
    s_expect_err ("rank1", "CURVE is on here, but rank 0 runs without it");
    /*  Rank 0's map waits for a worker that never comes: stopped here. */
    CHECK (dp_test_stop (root, SIGTERM, RUN_MS) != -1);
}

/*  A card that rank 0 did not write is not taken: one open to other users
    (anyone could have planted it, pointing the ranks at a broker of
    theirs) is ignored, with a warning, and the rank times out. */
static void
s_case_foreign_card (void)
{
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s_free_port ());
    dp_card_t card = {.size = 2};
    snprintf (card.endpoint, sizeof card.endpoint, "%s", endpoint);
    char text[DP_CARD_SIZE];
    CHECK (dp_card_format (&card, text, sizeof text) == 0);
    FILE *file = fopen (dp_test_path ("rendezvous"), "w");
    CHECK (file && fputs (text, file) >= 0 && fclose (file) == 0);
    CHECK (chmod (dp_test_path ("rendezvous"), 0644) == 0);
    const char *timeout[] = {"DPOOL_SPMD_TIMEOUT_MS=500", NULL};
    const char *rendezvous = s_file_rendezvous ();
    pid_t rank = s_rank (LAUNCH_SLURM, 1, 2, rendezvous, "1", "0", timeout);
    s_expect_exit (rank, "rank1", 1, RUN_MS);
    s_expect_err ("rank1", "ignoring the rendezvous");
    s_expect_err ("rank1", "rank 0 wrote no endpoint to");
}

/*  The real mpirun, four ranks of spmd_demo_mpi, to their results. */
static void
s_case_mpirun (void)
{
#ifndef DPOOL_SPMD_DEMO_MPI_BIN
    fprintf (stderr, "skipped: built without MPI\n");
    exit (EXIT_SKIP);
#else
    const char *argv[] = {"mpirun",
                          "--allow-run-as-root",
                          "--oversubscribe",
                          "-n",
                          "4",
                          "--mca",
                          "btl",
                          "self,tcp",
                          "-x",
                          "DPOOL_LOG",
                          DPOOL_SPMD_DEMO_MPI_BIN,
                          "60",
                          "20",
                          NULL};
    setenv ("DPOOL_LOG", "info", 1);
    /*  Open MPI's own allocations outlive MPI_Finalize: not this test's to
        judge in a sanitizer build. */
    setenv ("ASAN_OPTIONS", "detect_leaks=0", 1);
    if (system ("command -v mpirun >/dev/null") != 0) {
        fprintf (stderr, "skipped: no mpirun\n");
        exit (EXIT_SKIP);
    }
    pid_t pid = dp_test_spawn ("rank0", (char *const *)argv);
    s_expect_exit (pid, "rank0", 0, RUN_MS);
    long pids[16] = {0};
    s_report (60, pids, 15);
    s_expect_err ("rank0", "(CURVE)"); /* by default: the keys go by MPI_Bcast */
    CHECK (dp_test_wait_until (s_group_gone, &pid, ORPHAN_MS));
#endif
}

/*  dpool-worker with the launcher's CPUs: it supervises count processes,
    and the broker sees them. */
static void
s_procs_default (const char *tag, const char *const *prefix, int count)
{
    dp_test_broker_t broker;
    dp_test_broker_start (&broker, NULL);
    const char *argv[16];
    int argc = 0;
    for (int i = 0; prefix[i]; i++)
        argv[argc++] = prefix[i];
    argv[argc++] = dp_test_worker_bin;
    argv[argc++] = "--connect";
    argv[argc++] = broker.tcp;
    argv[argc++] = "--log-level";
    argv[argc++] = "info";
    argv[argc] = NULL;
    pid_t workers = dp_test_spawn (tag, (char *const *)argv);
    dpool_pool_t *pool = dpool_pool_connect (broker.tcp);
    CHECK (pool);
    dp_test_wait_workers (pool, count, RUN_MS);
    char line[64];
    snprintf (line, sizeof line, "supervising %d worker processes", count);
    s_expect_err (tag, line);
    dpool_pool_destroy (&pool);
    CHECK (dp_test_stop (workers, SIGTERM, 10000) == 0);
    dp_test_stop (broker.pid, SIGTERM, 10000);
}

static void
s_case_procs_default (void)
{
    const char *taskset[] = {TASKSET_BIN, "-c", "0", NULL};
    s_procs_default ("taskset", taskset, 1);
    const char *slurm[] = {ENV_BIN, "SLURM_CPUS_ON_NODE=3", NULL};
    s_procs_default ("slurm", slurm, 3);
    /*  `srun -N 3 -n 5` on nodes of 4 CPUs: the second node runs 2 tasks
        (2,2,1), each of which gets its share, 2 of the node's 4. */
    const char *shared[] = {ENV_BIN, "SLURM_CPUS_ON_NODE=4", "SLURM_STEP_TASKS_PER_NODE=2(x2),1",
                            "SLURM_NODEID=1", NULL};
    s_procs_default ("slurm_shared", shared, 2);
    const char *alone[] = {ENV_BIN, "SLURM_CPUS_ON_NODE=4", "SLURM_STEP_TASKS_PER_NODE=2(x2),1",
                           "SLURM_NODEID=2", NULL};
    s_procs_default ("slurm_alone", alone, 4);
}

/*  Slurm host lists: the first host; malformed lists refused. */
static void
s_case_host_list (void)
{
    char host[64];
    CHECK (dp_launcher_first_host ("node[07-09,12],login", host, sizeof host) == 0);
    CHECK_EQ_STR (host, "node07");
    CHECK (dp_launcher_first_host ("gpu1,gpu2", host, sizeof host) == 0);
    CHECK_EQ_STR (host, "gpu1");
    CHECK (dp_launcher_first_host ("head", host, sizeof host) == 0);
    CHECK_EQ_STR (host, "head");
    CHECK (dp_launcher_first_host ("", host, sizeof host) == -1);
    CHECK (dp_launcher_first_host (NULL, host, sizeof host) == -1);
    CHECK (dp_launcher_first_host ("[1-2]", host, sizeof host) == -1);
    CHECK (dp_launcher_first_host ("node[x]", host, sizeof host) == -1);
    CHECK (dp_launcher_first_host ("node[1-2", host, sizeof host) == -1);
    CHECK (dp_launcher_first_host ("averylonghostname", host, 8) == -1);
}

/*  Rank 0's card: written and read back; anything else refused. */
static void
s_case_card (void)
{
    dp_card_t card = {.job = "slurm:12.0", .size = 4, .endpoint = "tcp://10.0.0.1:40000"};
    char text[DP_CARD_SIZE];
    CHECK (dp_card_format (&card, text, sizeof text) == 0);
    dp_card_t back;
    CHECK (dp_card_parse (text, &back) == 0);
    CHECK_EQ_STR (back.job, "slurm:12.0");
    CHECK_EQ_INT (back.size, 4);
    CHECK_EQ_STR (back.endpoint, "tcp://10.0.0.1:40000");
    CHECK_EQ_STR (back.error, "");
    CHECK_EQ_STR (back.curve_secret, "");
    char big[DP_CARD_FIELD + 64];
    memset (big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char oversized[DP_CARD_SIZE * 2];
    snprintf (oversized, sizeof oversized, "dpool-spmd 1\nsize 2\nendpoint %s\n", big);
    const char *hostile[] = {"",
                             "dpool-spmd 2\nsize 2\nendpoint tcp://a:1\n",
                             "dpool-spmd 1\nsize 2\nendpoint tcp://a:1",
                             "dpool-spmd 1\nsize 0\nendpoint tcp://a:1\n",
                             "dpool-spmd 1\nsize -3\nendpoint tcp://a:1\n",
                             "dpool-spmd 1\nsize 99999999999\nendpoint tcp://a:1\n",
                             "dpool-spmd 1\nsize 2\n",
                             "dpool-spmd 1\nsize 2\nendpoint tcp://a:1\nerror no\n",
                             "dpool-spmd 1\nsize 2\nendpoint \n",
                             "dpool-spmd 1\nsize 2\nkey value\nendpoint tcp://a:1\n",
                             "dpool-spmd 1\nsize2\nendpoint tcp://a:1\n",
                             oversized};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++)
        if (dp_card_parse (hostile[i], &back) != -1)
            dp_test_fail (__FILE__, __LINE__, "card %zu taken: %s", i, hostile[i]);
}

/*  Rank 0's card with CURVE keys: both travel, and come back; a card
    with one, a key that is not Z85, or keys without an endpoint, refused. */
static void
s_case_card_curve (void)
{
    dp_card_t card = {.job = "-", .size = 4, .endpoint = "tcp://10.0.0.1:40000"};
    const char *key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    snprintf (card.curve_server, sizeof card.curve_server, "%s", key);
    snprintf (card.curve_secret, sizeof card.curve_secret, "%s", key);
    char text[DP_CARD_SIZE];
    CHECK (dp_card_format (&card, text, sizeof text) == 0);
    dp_card_t back;
    CHECK (dp_card_parse (text, &back) == 0);
    CHECK_EQ_STR (back.curve_server, key);
    CHECK_EQ_STR (back.curve_secret, key);
    char curve[4][512];
    snprintf (curve[0], sizeof curve[0], "dpool-spmd 1\nsize 2\nendpoint e\ncurve-server %s\n",
              key);
    snprintf (curve[1], sizeof curve[1], "dpool-spmd 1\nsize 2\nendpoint e\ncurve-secret %s\n",
              key);
    snprintf (curve[2], sizeof curve[2],
              "dpool-spmd 1\nsize 2\nerror no\ncurve-server %s\ncurve-secret %s\n", key, key);
    snprintf (curve[3], sizeof curve[3],
              "dpool-spmd 1\nsize 2\nendpoint e\ncurve-server %s\ncurve-secret /etc/passwd\n",
              key);
    for (int i = 0; i < 4; i++)
        if (dp_card_parse (curve[i], &back) != -1)
            dp_test_fail (__FILE__, __LINE__, "card %d taken: %s", i, curve[i]);
}

static const dp_test_case_t s_cases[] = {
    {"spmd_rendezvous_file", s_case_file},
    {"spmd_fixed_endpoint", s_case_fixed_endpoint},
    {"spmd_kill_worker_rank", s_case_kill_worker_rank},
    {"spmd_late_rank_gets_goodbye", s_case_late_rank},
    {"spmd_kill_rank0", s_case_kill_root},
    {"spmd_rank0_unreachable", s_case_unreachable},
    {"spmd_foreign_card_ignored", s_case_foreign_card},
    {"spmd_mpirun", s_case_mpirun},
    {"spmd_curve", s_case_curve},
    {"spmd_curve_mismatch", s_case_curve_mismatch},
    {"worker_procs_from_launcher", s_case_procs_default},
    {"spmd_host_list", s_case_host_list},
    {"spmd_card", s_case_card},
    {"spmd_card_curve", s_case_card_curve},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

/*  test_worker_supervisor.c - the supervisor and the programs around the
    worker engine, as real processes against a fake broker (dp_testfake.h):
    dead worker processes replaced, SIGTERM, dpool_worker_serve in a
    program of its own, a supervisor whose parent dies, and the options of
    dpool-worker. Each case is one ctest test: test_worker_supervisor CASE.
*/
#include "dp_testfake.h"
#include "dp_testutil.h"

#include "dp_proto.h"
#include "dp_supervisor.h"
#include "dp_util.h"
#include "dp_worker.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/*  A worker process killed outright is replaced. */
static void
s_case_killed (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint);
    /*  crash is a test built-in: offered only when asked. */
    const char *extra[] = {"--test-builtins", NULL};
    pid_t supervisor = dp_test_workers_logged (endpoint, 2, extra);
    dp_testfake_msg_t got = {0};
    uint64_t pids[2];
    for (int i = 0; i < 2;) {
        EXPECT (&fake, &got, DP_CMD_READY);
        if (i == 1 && dp_testfake_ready_pid (&got) == pids[0])
            continue; /* a stray attempt of the first */
        dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
        pids[i++] = fake.current_pid;
    }
    CHECK_EQ_INT (kill ((pid_t)pids[0], SIGKILL), 0);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (dp_testfake_ready_pid (&got) == pids[0] || dp_testfake_ready_pid (&got) == pids[1]);
    /*  The crash built-in kills its process too; it is replaced as well. */
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    uint64_t pid = fake.current_pid;
    dp_test_buf_t nil;
    dp_test_buf_init (&nil);
    msgpack_pack_nil (&nil.pk);
    dp_testfake_job_t crash = {1, "crash", nil.sbuf.data, nil.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &crash, 1);
    for (;;) {
        EXPECT (&fake, &got, DP_CMD_READY);
        uint64_t again = dp_testfake_ready_pid (&got);
        if (again != pid && again != pids[1])
            break;
    }
    dp_test_buf_fini (&nil);
    dp_testfake_finish (&fake, &got, supervisor);
}

/*  SIGTERM while a task runs: BYE, and everything stops promptly. */
static void
s_case_sigterm (void)
{
    const char *extra[] = {"--credit", "2", NULL};
    dp_testfake_t fake;
    dp_testfake_msg_t got = {0};
    pid_t supervisor = dp_testfake_one_worker (&fake, &got, extra);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_test_buf_t nap, value;
    dp_test_buf_init (&nap);
    msgpack_pack_int (&nap.pk, 30);
    dp_test_buf_init (&value);
    msgpack_pack_int (&value.pk, 1);
    dp_testfake_job_t jobs[] = {{1, "echo", value.sbuf.data, value.sbuf.size, 0, 0},
                                {2, "sleep", nap.sbuf.data, nap.sbuf.size, 0, 0}};
    dp_testfake_dispatch (&fake, jobs, 2);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 1, __FILE__,
                              __LINE__); /* the sleep has started */
    int64_t start = dp_now_ms ();
    CHECK_EQ_INT (kill (supervisor, SIGTERM), 0);
    EXPECT (&fake, &got, DP_CMD_BYE);
    dp_testfake_reply_bye (&fake, &got);
    int status = dp_test_wait_exit (supervisor, 3000);
    CHECK (status != -1);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    CHECK (dp_now_ms () - start < 1500);
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&nap);
    dp_test_buf_fini (&value);
    dp_testfake_release (&got);
    dp_testfake_stop (&fake);
}

static int
s_square (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result)
{
    if (args->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return dpool_task_fail (task, "square wants a natural number");
    return msgpack_pack_uint64 (result, args->via.u64 * args->via.u64);
}

/*  Processes this test forked itself (not with dp_test_spawn), killed with
    their process group at exit. */
static pid_t s_forked[4];
static int s_nforked;
static pid_t s_main_pid;

static void
s_kill_forked (void)
{
    if (getpid () != s_main_pid)
        return;
    for (int i = 0; i < s_nforked; i++)
        if (s_forked[i] > 0) {
            kill (-s_forked[i], SIGKILL);
            kill (s_forked[i], SIGKILL);
        }
}

/*  Forks a process in its own process group, remembered for cleanup. */
static pid_t
s_fork (void)
{
    if (s_nforked == 0) {
        s_main_pid = getpid ();
        atexit (s_kill_forked);
    }
    CHECK (s_nforked < 4);
    fflush (NULL);
    pid_t pid = fork ();
    CHECK (pid >= 0);
    if (pid == 0) {
        setpgid (0, 0);
        alarm (0);
        if (!getenv ("DPOOL_LOG"))
            dp_log_set_level (DP_LOG_INFO);
        return 0;
    }
    setpgid (pid, pid);
    s_forked[s_nforked++] = pid;
    return pid;
}

/*  dpool_worker_serve: a program serving its own functions, whose worker
    processes are restarted even though it ignores SIGCHLD. */
static void
s_case_serve (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    char endpoint_copy[2048];
    snprintf (endpoint_copy, sizeof endpoint_copy, "%s", endpoint);
    /*  Forked before this process makes a ZeroMQ context. */
    CHECK_EQ_INT (dpool_register ("test.square", s_square, NULL), 0);
    pid_t server = s_fork ();
    if (server == 0) {
        /*  A program that ignores SIGCHLD still gets its workers restarted. */
        signal (SIGCHLD, SIG_IGN);
        _exit (dpool_worker_serve (endpoint_copy, 1) == 0 ? 0 : 3);
    }
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint_copy);
    dp_testfake_msg_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    CHECK (dp_testfake_ready_offers (&got, "test.square"));
    CHECK (dp_testfake_ready_offers (&got, "echo"));
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    dp_test_buf_t seven;
    dp_test_buf_init (&seven);
    msgpack_pack_int (&seven.pk, 7);
    dp_testfake_job_t job = {1, "test.square", seven.sbuf.data, seven.sbuf.size, 0, 0};
    dp_testfake_dispatch (&fake, &job, 1);
    dp_testfake_results_t results;
    dp_testfake_results_init (&results);
    dp_testfake_results_wait (&fake, &got, &results, 1, __FILE__, __LINE__);
    CHECK_EQ_INT (results.code[1], 0);
    CHECK_EQ_INT (results.value[1].via.u64, 49);
    uint64_t pid = fake.current_pid;
    CHECK_EQ_INT (kill ((pid_t)pid, SIGKILL), 0);
    do
        EXPECT (&fake, &got, DP_CMD_READY);
    while (dp_testfake_ready_pid (&got) == pid);
    CHECK (dp_testfake_ready_offers (&got, "test.square"));
    dp_testfake_results_fini (&results);
    dp_test_buf_fini (&seven);
    dp_testfake_release (&got);
    dp_testfake_stop_workers (&fake, server);
    dp_testfake_stop (&fake);
}

typedef struct {
    pid_t pid;
    int status;
} reaped_t;

/*  True once some child of this process has ended (and was reaped). */
static bool
s_reaped (void *arg)
{
    reaped_t *reaped = (reaped_t *)arg;
    reaped->pid = waitpid (-1, &reaped->status, WNOHANG);
    return reaped->pid > 0;
}

/*  A supervisor with a parent to watch stops its workers (they say BYE)
    and itself once that parent is gone. */
static void
s_case_parent_gone (void)
{
    const char *endpoint = dp_test_ipc ("broker");
    char endpoint_copy[2048];
    snprintf (endpoint_copy, sizeof endpoint_copy, "%s", endpoint);
    /*  The supervisor's parent will die; it is then reparented to us. */
    CHECK_EQ_INT (prctl (PR_SET_CHILD_SUBREAPER, 1), 0);
    int fds[2];
    CHECK_EQ_INT (pipe (fds), 0);
    pid_t parent = s_fork ();
    if (parent == 0) {
        close (fds[1]);
        pid_t supervisor = fork ();
        if (supervisor == 0) {
            close (fds[0]);
            dp_supervisor_config_t config;
            memset (&config, 0, sizeof config);
            dp_worker_config_init (&config.worker);
            config.worker.endpoint = endpoint_copy;
            config.procs = 1;
            config.parent = getppid ();
            _exit (dp_supervisor_run (&config) == 0 ? 0 : 3);
        }
        /*  Live until the test closes the pipe. */
        char byte;
        ssize_t rc = read (fds[0], &byte, 1);
        (void)rc;
        _exit (supervisor > 0 ? 0 : 1);
    }
    close (fds[0]);
    dp_testfake_t fake;
    dp_testfake_start (&fake, endpoint_copy);
    dp_testfake_msg_t got = {0};
    EXPECT (&fake, &got, DP_CMD_READY);
    dp_testfake_welcome (&fake, &got, 1000, DP_TESTFAKE_LONG_EXPIRY);
    close (fds[1]); /* the parent ends */
    int status = dp_test_wait_exit (parent, 5000);
    CHECK (status != -1 && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    int64_t start = dp_now_ms ();
    EXPECT (&fake, &got, DP_CMD_BYE);
    CHECK (dp_now_ms () - start < 1000);
    dp_testfake_reply_bye (&fake, &got);
    /*  The supervisor, now our child, ends with status 0. */
    reaped_t reaped = {0, 0};
    CHECK (dp_test_wait_until (s_reaped, &reaped, 5000));
    CHECK (WIFEXITED (reaped.status) && WEXITSTATUS (reaped.status) == 0);
    dp_testfake_release (&got);
    dp_testfake_stop (&fake);
}

/*  --help, --version, and bad options. */
static void
s_case_options (void)
{
    struct {
        const char *args[4];
        int status;
        const char *out;
        const char *err;
    } runs[] = {
        {{"--help"}, 0, "--plugin", NULL},
        {{"--version"}, 0, DPOOL_VERSION_STRING, NULL},
        {{"--procs", "many"}, 2, NULL, "invalid --procs"},
        {{"--bogus"}, 2, NULL, "unknown option --bogus"},
        {{"--credit", "0"}, 2, NULL, "invalid --credit"},
        {{"--log-level", "loud"}, 2, NULL, "invalid --log-level"},
        {{"--plugin", "/nonexistent/lib.so"}, 1, NULL, "cannot load plugin"},
        {{"stray"}, 2, NULL, "unexpected argument"},
        {{"--connect", "localhost:5555"}, 2, NULL, "invalid endpoint"},
        {{"--handshake-timeout", "-1"}, 2, NULL, "invalid --handshake-timeout"},
    };
    const char *options[] = {"--connect",
                             "--procs",
                             "--credit",
                             "--name",
                             "--plugin",
                             "--log-level",
                             "--help",
                             "--version",
                             "--test-builtins",
                             "DPOOL_CONNECT",
                             "DPOOL_PROCS",
                             "DPOOL_CREDIT",
                             "DPOOL_LOG",
                             "DPOOL_TEST_BUILTINS",
                             "--handshake-timeout",
                             "DPOOL_HANDSHAKE_TIMEOUT"};
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        char tag[32];
        snprintf (tag, sizeof tag, "options%zu", i);
        const char *argv[8] = {dp_test_worker_bin};
        for (int a = 0; a < 4 && runs[i].args[a]; a++)
            argv[a + 1] = runs[i].args[a];
        pid_t pid = dp_test_spawn (tag, (char *const *)argv);
        int status = dp_test_wait_exit (pid, 5000);
        CHECK (status != -1 && WIFEXITED (status));
        CHECK_EQ_INT (WEXITSTATUS (status), runs[i].status);
        char name[64];
        snprintf (name, sizeof name, "%s.out", tag);
        char *out = dp_test_read_file (dp_test_path (name));
        snprintf (name, sizeof name, "%s.err", tag);
        char *err = dp_test_read_file (dp_test_path (name));
        CHECK (out && err);
        if (runs[i].out)
            CHECK (strstr (out, runs[i].out));
        if (runs[i].err)
            CHECK (strstr (err, runs[i].err));
        if (i == 0)
            for (size_t o = 0; o < sizeof options / sizeof options[0]; o++)
                if (!strstr (out, options[o]))
                    dp_test_fail (__FILE__, __LINE__, "--help does not mention %s", options[o]);
        free (out);
        free (err);
    }
}

static const dp_test_case_t s_cases[] = {
    {"worker_supervisor_restarts_dead_process", s_case_killed},
    {"worker_sigterm_says_bye_and_stops", s_case_sigterm},
    {"worker_serve_offers_program_functions", s_case_serve},
    {"worker_supervisor_stops_when_parent_dies", s_case_parent_gone},
    {"worker_program_options", s_case_options},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

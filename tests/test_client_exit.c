/*  test_client_exit.c - a program that returns from main without destroying
    its pools still exits cleanly (status 0, no abort from CZMQ's exit
    handler), embedded or connected, as a Python program does with a Pool it
    never closed; and the embedded pool's worker processes are gone after. */
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/*  The child: makes the pools, runs one task on the embedded one, writes
    the pid of a worker process to a file, returns from main. */
static int
s_child (const char *pid_file)
{
    dpool_pool_t *embedded = dpool_pool_new (2);
    CHECK (embedded);
    dpool_pool_t *connected = dpool_pool_connect ("tcp://127.0.0.1:1"); /* nobody there */
    CHECK (connected);
    dpool_result_t *result = dpool_pool_apply (embedded, "pid", "\xc0", 1, NULL);
    CHECK (result && dpool_result_successful (result));
    msgpack_object value;
    CHECK (dpool_result_get (result, 0, &value) == 0);
    CHECK (value.type == MSGPACK_OBJECT_MAP);
    long pid = 0;
    for (uint32_t i = 0; i < value.via.map.size; i++)
        if (value.via.map.ptr[i].key.via.str.size == 3 &&
            memcmp (value.via.map.ptr[i].key.via.str.ptr, "pid", 3) == 0)
            pid = (long)value.via.map.ptr[i].val.via.u64;
    CHECK (pid > 0);
    FILE *file = fopen (pid_file, "w");
    CHECK (file);
    fprintf (file, "%ld\n", pid);
    fclose (file);
    /*  A task left queued on the connected pool, and no destroy at all. */
    dpool_result_t *pending = dpool_pool_apply_async (connected, "echo", "\x01", 1, NULL);
    CHECK (pending);
    return 0;
}

static bool
s_gone (void *arg)
{
    return kill ((pid_t)(long)arg, 0) != 0;
}

static const char *s_self; /* this program, run again as the child */

/*  The program's one case. */
static void
s_case_client_exit_without_destroy_is_clean (void)
{
    char pid_file[2048];
    snprintf (pid_file, sizeof pid_file, "%s", dp_test_path ("worker.pid"));
    /*  The child leaks on purpose what a careless program leaks: its
        handles. LeakSanitizer (in sanitizer builds) is not the judge here. */
    setenv ("ASAN_OPTIONS", "detect_leaks=0", 1);
    char *child_argv[] = {(char *)s_self, "child", pid_file, NULL};
    pid_t child = dp_test_spawn ("child", child_argv);
    int status = dp_test_wait_exit (child, 30000);
    CHECK (status != -1);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
        char *err = dp_test_read_file (dp_test_path ("child.err"));
        dp_test_fail (__FILE__, __LINE__, "child ended with status %d: %s", status,
                      err ? err : "");
    }
    char *text = dp_test_read_file (pid_file);
    CHECK (text);
    long worker = atol (text);
    free (text);
    CHECK (worker > 0);
    /*  The worker process it ran on is gone (it may be reaped by init a
        moment later). */
    CHECK (dp_test_wait_until (s_gone, (void *)worker, 10000));
}

static const dp_test_case_t s_cases[] = {
    {"client_exit_without_destroy_is_clean", s_case_client_exit_without_destroy_is_clean},
};

/*  `child PID_FILE`: the program that exits without destroying its pool. */
int
main (int argc, char *argv[])
{
    if (argc == 3 && strcmp (argv[1], "child") == 0)
        return s_child (argv[2]);
    s_self = argv[0];
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

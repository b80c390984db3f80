/*  test_cli_signals.c - SIGINT and SIGTERM end every waiting `dpool`
    command at once with exit status 128 + the signal, and release what it
    held in the broker: a queue get's waiting request and the value lent to
    it, a put's waiting request, a map's or an apply's session with its
    queued tasks; and they do so while the broker does not answer at all.

    Each case runs the real dpool command against a real dpool-broker (and
    dpool-workers for map), watching the broker through a pool of the
    test's own.
*/
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_SECONDS    120
#define SIGNAL_EXIT_MS  5000  /* generous: the command ends in milliseconds */
#define READY_MS        20000 /* for the broker to show a command waiting */
#define RUN_MS          20000 /* the longest one short command may take */
#define LONG_TIMEOUT_MS "60000"

static dp_test_broker_t s_broker;
static dpool_pool_t *s_pool; /* the test's own client, to watch the broker */

/*  Starts the case's broker, with extra arguments (NULL-terminated, may be
    NULL), and the test's pool on it. */
static void
s_start_with (const char *const *extra)
{
    dp_test_broker_start (&s_broker, extra);
    s_pool = dpool_pool_connect (s_broker.tcp);
    CHECK (s_pool);
}

static void
s_start (void)
{
    s_start_with (NULL);
}

static void
s_stop (void)
{
    dpool_pool_destroy (&s_pool);
    dp_test_stop (s_broker.pid, SIGTERM, 10000);
}

/*  Starts dpool with args (NULL-terminated) and --connect to the broker;
    stdout and stderr go to files named after tag. */
static pid_t
s_dpool (const char *tag, const char *const *args)
{
    return dp_test_cli_spawn (tag, s_broker.tcp, args);
}

/*  Runs dpool with args to its end; returns its exit status and (caller
    frees) its stdout. */
static int
s_dpool_run (const char *tag, const char *const *args, char **out)
{
    return dp_test_cli_run (tag, s_broker.tcp, args, RUN_MS, out, NULL);
}

/*  Sends sig to the command pid and checks that it exits, rather than
    being killed, with status 128 + sig within SIGNAL_EXIT_MS. */
static void
s_signal_expect_exit (pid_t pid, int sig)
{
    CHECK (kill (pid, sig) == 0);
    int status = dp_test_wait_exit (pid, SIGNAL_EXIT_MS);
    if (status == -1)
        dp_test_fail (__FILE__, __LINE__, "dpool did not end within %d ms of signal %d",
                      SIGNAL_EXIT_MS, sig);
    if (!WIFEXITED (status))
        dp_test_fail (__FILE__, __LINE__, "dpool was killed by signal %d", WTERMSIG (status));
    if (WEXITSTATUS (status) != 128 + sig)
        dp_test_fail (__FILE__, __LINE__, "dpool exited %d after signal %d, expected %d",
                      WEXITSTATUS (status), sig, 128 + sig);
}

/*  A counter of the broker's status: key at the top, or under group. */
typedef struct {
    const char *group;
    const char *key;
    int64_t want;
    int64_t got;
} s_stat_t;

static bool
s_stat_is (void *arg)
{
    s_stat_t *stat = (s_stat_t *)arg;
    msgpack_unpacked status = dp_test_status (s_pool);
    const msgpack_object *map = &status.data;
    if (stat->group)
        map = dp_test_map_get (map, stat->group);
    const msgpack_object *value = dp_test_map_get (map, stat->key);
    stat->got =
        value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)value->via.u64 : -1;
    msgpack_unpacked_destroy (&status);
    return stat->got == stat->want;
}

/*  Waits until the broker's counter group.key (group may be NULL) is want. */
static void
s_wait_stat (const char *group, const char *key, int64_t want)
{
    s_stat_t stat = {group, key, want, -1};
    if (!dp_test_wait_until (s_stat_is, &stat, READY_MS))
        dp_test_fail (__FILE__, __LINE__, "the broker's %s%s%s stayed %lld, not %lld",
                      group ? group : "", group ? "." : "", key, (long long)stat.got,
                      (long long)want);
}

/*  Checks that `dpool queue get NAME --timeout-ms 0` prints expected at
    once (exit 0), or finds the queue empty if expected is NULL (exit 1). */
static void
s_expect_get_now (const char *tag, const char *name, const char *expected)
{
    const char *args[] = {"queue", "get", name, "--timeout-ms", "0", NULL};
    char *out;
    int rc = s_dpool_run (tag, args, &out);
    if (expected) {
        CHECK_EQ_INT (rc, 0);
        CHECK_EQ_STR (out, expected);
    } else
        CHECK_EQ_INT (rc, 1);
    free (out);
}

/*  Puts the JSON value json on the queue name through the command. */
static void
s_put (const char *tag, const char *name, const char *json)
{
    const char *args[] = {"queue", "put", name, json, NULL};
    char *out;
    CHECK_EQ_INT (s_dpool_run (tag, args, &out), 0);
    free (out);
}

/*  A get waiting on an empty queue ends on SIGTERM and on SIGINT with 128
    + the signal, and the broker forgets its request: the next value put
    is the next getter's at once, not lent to the one that left. */
static void
s_case_queue_get_waiting (void)
{
    s_start ();
    const int signals[] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        const char *args[] = {"queue", "get", "jobs", NULL};
        pid_t getter = s_dpool (i ? "getter_int" : "getter_term", args);
        s_wait_stat ("queue_stats", "waiting", 1);
        s_signal_expect_exit (getter, signals[i]);
        s_wait_stat ("queue_stats", "waiting", 0);
        s_put (i ? "put_int" : "put_term", "jobs", i ? "\"two\"" : "\"one\"");
        s_wait_stat ("queue_stats", "unacked", 0);
        s_expect_get_now (i ? "get_int" : "get_term", "jobs", i ? "\"two\"\n" : "\"one\"\n");
    }
    s_stop ();
}

/*  A value the broker lent to a get that the signal ends is never lost:
    either the get had taken it (it printed it, exit 0), or the broker has
    it back at once (exit 128 + the signal), not after the 30 s a loan may
    wait for its acknowledgement. The command is stopped (SIGSTOP) while
    the value is lent to it, so that the signal finds it unacknowledged;
    the broker gives it a minute before it would take it for dead. */
static void
s_case_queue_get_lent_value (void)
{
    const char *const patient[] = {"--expiry-ms", "60000", NULL};
    s_start_with (patient);
    const int signals[] = {SIGTERM, SIGINT};
    for (int i = 0; i < 2; i++) {
        const char *tag = i ? "lent_int" : "lent_term";
        const char *args[] = {"queue", "get", "lent", NULL};
        pid_t getter = s_dpool (tag, args);
        s_wait_stat ("queue_stats", "waiting", 1);
        CHECK (kill (getter, SIGSTOP) == 0);
        s_put (i ? "put_int" : "put_term", "lent", "{\"n\":7}");
        s_wait_stat ("queue_stats", "unacked", 1);
        CHECK (kill (getter, signals[i]) == 0);
        CHECK (kill (getter, SIGCONT) == 0);
        int status = dp_test_wait_exit (getter, SIGNAL_EXIT_MS);
        CHECK (status != -1 && WIFEXITED (status));
        char name[64];
        snprintf (name, sizeof name, "%s.out", tag);
        char *out = dp_test_read_file (dp_test_path (name));
        CHECK (out);
        if (WEXITSTATUS (status) == 0) {
            /*  It had acknowledged the value: it printed it. */
            CHECK_EQ_STR (out, "{\"n\":7}\n");
            s_expect_get_now (i ? "empty_int" : "empty_term", "lent", NULL);
        } else {
            CHECK_EQ_INT (WEXITSTATUS (status), 128 + signals[i]);
            CHECK_EQ_STR (out, "");
            s_wait_stat ("queue_stats", "unacked", 0);
            s_expect_get_now (i ? "back_int" : "back_term", "lent", "{\"n\":7}\n");
        }
        free (out);
    }
    s_stop ();
}

/*  A put waiting for room in a full queue ends on SIGINT and SIGTERM, and
    its value never enters the queue. */
static void
s_case_queue_put_full (void)
{
    s_start ();
    dpool_queue_t *queue = dpool_queue_open (s_pool, "full", 1);
    CHECK (queue);
    const char first[] = {'\xa5', 'f', 'i', 'r', 's', 't'}; /* msgpack "first" */
    CHECK (dpool_queue_put (queue, first, sizeof first, 0) == 0);
    const int signals[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        const char *args[] = {"queue", "put", "full", "\"second\"", NULL};
        pid_t putter = s_dpool (i ? "putter_term" : "putter_int", args);
        s_wait_stat ("queue_stats", "waiting", 1);
        s_signal_expect_exit (putter, signals[i]);
        s_wait_stat ("queue_stats", "waiting", 0);
        s_wait_stat ("queue_stats", "values", 1);
    }
    dpool_queue_destroy (&queue);
    s_expect_get_now ("get_first", "full", "\"first\"\n");
    s_expect_get_now ("get_none", "full", NULL);
    s_stop ();
}

/*  Writes count lines of text to the file name in the test directory;
    returns its path. */
static const char *
s_input (const char *name, const char *line, int count)
{
    const char *path = dp_test_path (name);
    FILE *file = fopen (path, "w");
    CHECK (file);
    for (int i = 0; i < count; i++)
        fprintf (file, "%s\n", line);
    CHECK (fclose (file) == 0);
    return path;
}

/*  A map ends on SIGTERM with one task running and more queued: exit 143,
    and the broker forgets its session and every task it still queued (the
    one running runs to its end: tasks are never interrupted). */
static void
s_case_map_forgets_session (void)
{
    s_start ();
    pid_t workers = dp_test_workers_logged (s_broker.tcp, 1, NULL);
    dp_test_wait_workers (s_pool, 1, READY_MS);
    const char *input = s_input ("sleeps.in", "30", 20);
    char command[4096];
    snprintf (command, sizeof command, "exec '%s' map sleep --chunksize 1 --connect '%s' < '%s'",
              dp_test_cli_bin, s_broker.tcp, input);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t map = dp_test_spawn ("map", argv);
    s_wait_stat (NULL, "inflight", 1);
    s_wait_stat (NULL, "queued", 19);
    s_wait_stat (NULL, "clients", 2);
    s_signal_expect_exit (map, SIGTERM);
    s_wait_stat (NULL, "queued", 0);
    s_wait_stat (NULL, "clients", 1);
    char *out = dp_test_read_file (dp_test_path ("map.out"));
    CHECK_EQ_STR (out, "");
    free (out);
    dp_test_stop (workers, SIGTERM, 10000);
    s_stop ();
}

/*  An apply whose task waits for a worker ends on SIGINT: exit 130, and
    the broker forgets the task and the session. */
static void
s_case_apply_forgets_session (void)
{
    s_start ();
    const char *args[] = {"apply", "echo", "1", NULL};
    pid_t apply = s_dpool ("apply", args);
    s_wait_stat (NULL, "queued", 1);
    s_wait_stat (NULL, "clients", 2);
    s_signal_expect_exit (apply, SIGINT);
    s_wait_stat (NULL, "queued", 0);
    s_wait_stat (NULL, "clients", 1);
    s_stop ();
}

/*  True once the process pid (arg) blocks or catches SIGTERM: it is past
    the start of its main. */
static bool
s_takes_sigterm (void *arg)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status", (int)(intptr_t)arg);
    char *text = dp_test_read_file (path);
    bool takes = false;
    for (const char *field = text; field && (field = strstr (field, "Sig")); field++)
        if (strncmp (field, "SigBlk:", 7) == 0 || strncmp (field, "SigCgt:", 7) == 0) {
            unsigned long long mask = strtoull (field + 7, NULL, 16);
            takes |= (mask >> (SIGTERM - 1) & 1) != 0;
        }
    free (text);
    return takes;
}

/*  While the broker does not answer at all (it is stopped), every command
    that waits for its answer ends on a signal at once with 128 + the
    signal, not after its connect timeout. */
static void
s_case_broker_silent (void)
{
    s_start ();
    CHECK (kill (s_broker.pid, SIGSTOP) == 0);
    const char *input = s_input ("one.in", "1", 1);
    char map_command[4096];
    snprintf (map_command, sizeof map_command,
              "exec '%s' map echo --connect '%s' --connect-timeout-ms " LONG_TIMEOUT_MS " < '%s'",
              dp_test_cli_bin, s_broker.tcp, input);
    const char *const commands[][8] = {
        {"status", "--connect-timeout-ms", LONG_TIMEOUT_MS, NULL},
        {"apply", "echo", "1", "--connect-timeout-ms", LONG_TIMEOUT_MS, NULL},
        {"queue", "get", "jobs", "--connect-timeout-ms", LONG_TIMEOUT_MS, NULL},
        {"queue", "size", "jobs", "--connect-timeout-ms", LONG_TIMEOUT_MS, NULL},
        {NULL},
    };
    for (int i = 0; i < 5; i++) {
        char tag[32];
        snprintf (tag, sizeof tag, "silent%d", i);
        pid_t pid;
        if (commands[i][0])
            pid = s_dpool (tag, commands[i]);
        else {
            char *argv[] = {"/bin/sh", "-c", map_command, NULL};
            pid = dp_test_spawn (tag, argv);
        }
        CHECK (dp_test_wait_until (s_takes_sigterm, (void *)(intptr_t)pid, READY_MS));
        s_signal_expect_exit (pid, i % 2 ? SIGINT : SIGTERM);
    }
    CHECK (kill (s_broker.pid, SIGCONT) == 0);
    s_stop ();
}

static const dp_test_case_t s_cases[] = {
    {"cli_signal_queue_get_waiting", s_case_queue_get_waiting},
    {"cli_signal_queue_get_lent_value", s_case_queue_get_lent_value},
    {"cli_signal_queue_put_full", s_case_queue_put_full},
    {"cli_signal_map_forgets_session", s_case_map_forgets_session},
    {"cli_signal_apply_forgets_session", s_case_apply_forgets_session},
    {"cli_signal_broker_silent", s_case_broker_silent},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

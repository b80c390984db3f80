/*  test_exec.c - shell commands as tasks: dpool.exec in process, and
    `dpool map --exec` against a real dpool-broker and dpool-worker
    --allow-exec. Failing commands set the exit status, {} and stdin carry
    the line, a time limit kills the command's whole process group and not
    the worker, huge output is bounded with a note, --resume after the map
    was SIGKILLed completes the joblog with every line exactly once, and a
    worker without the opt-in answers ENOFUNC.

    Usage: test_exec CASE (the names in s_cases).
*/
#define _GNU_SOURCE /* memmem */
#include "dp_exec.h"
#include "dp_registry.h"
#include "dp_task.h"
#include "dp_testutil.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define TEST_SECONDS   120
#define RUN_TIMEOUT_MS 60000 /* of one dpool command */
#define COMMAND_SIZE   8192
#define HUGE_OUTPUT    10000000
#define RESUME_LINES   60
#define GONE_MS        5000 /* for a killed process to be gone */

/*  ---------------------------------------------------------------------------
    Helpers: shell commands with their output in files, JSON records.
*/

/*  Starts a shell command line built from format with stdout and stderr in
    files named after tag; returns its pid (sh execs the last command). */
static pid_t
s_start (const char *tag, const char *format, va_list args)
{
    char command[COMMAND_SIZE];
    vsnprintf (command, sizeof command, format, args);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    return dp_test_spawn (tag, argv);
}

/*  Runs a shell command line and returns its exit status; stops the test
    if it does not exit within RUN_TIMEOUT_MS. */
static int
s_sh (const char *tag, const char *format, ...) __attribute__ ((format (printf, 2, 3)));

static int
s_sh (const char *tag, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    pid_t pid = s_start (tag, format, args);
    va_end (args);
    int status = dp_test_wait_exit (pid, RUN_TIMEOUT_MS);
    if (status == -1 || !WIFEXITED (status))
        dp_test_fail (__FILE__, __LINE__, "[%s] did not exit within %d ms", tag, RUN_TIMEOUT_MS);
    return WEXITSTATUS (status);
}

/*  Writes text to a file of the test directory; returns its path, which
    stays valid for the next 7 calls. */
static const char *
s_write_file (const char *name, const char *text)
{
    static char paths[8][1024];
    static int next;
    char *path = paths[next++ % 8];
    snprintf (path, sizeof paths[0], "%s", dp_test_path (name));
    FILE *file = fopen (path, "w");
    CHECK (file);
    CHECK (fputs (text, file) >= 0);
    CHECK (fclose (file) == 0);
    return path;
}

/*  The JSON records a command printed, one a line, as an array (the caller
    decrefs). */
static json_t *
s_records (const char *tag)
{
    char *text = dp_test_output (tag, "out");
    json_t *records = json_array ();
    char *save = NULL;
    for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save)) {
        json_error_t error;
        json_t *record = json_loads (line, JSON_ALLOW_NUL, &error);
        if (!record)
            dp_test_fail (__FILE__, __LINE__, "[%s] not JSON: %s", tag, line);
        json_array_append_new (records, record);
    }
    free (text);
    return records;
}

/*  The integer under key of record i. */
static long long
s_int (json_t *records, size_t i, const char *key)
{
    json_t *value = json_object_get (json_array_get (records, i), key);
    if (!json_is_integer (value))
        dp_test_fail (__FILE__, __LINE__, "record %zu has no integer %s", i, key);
    return json_integer_value (value);
}

/*  The string under key of record i (borrowed), or "" if it has none. */
static const char *
s_str (json_t *records, size_t i, const char *key)
{
    const char *text = json_string_value (json_object_get (json_array_get (records, i), key));
    return text ? text : "";
}

/*  A broker and one dpool-worker of procs processes with worker_options
    (NULL-terminated extra arguments). */
static void
s_cluster (dp_test_broker_t *broker, int procs, const char *const *worker_options)
{
    static const char *const grace[] = {"--nofunc-grace", "500", NULL};
    dp_test_broker_start (broker, grace);
    dp_test_workers_logged (broker->tcp, procs, worker_options);
}

static const char *const s_allow_all[] = {"--allow-exec", NULL};

/*  True if pid is gone: no such process, or a zombie nobody reaps yet. */
static bool
s_gone (void *arg)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/stat", *(int *)arg);
    char *stat = dp_test_read_file (path);
    if (!stat)
        return true;
    const char *paren = strrchr (stat, ')');
    bool zombie = paren && (paren[2] == 'Z' || paren[2] == 'X');
    free (stat);
    return zombie;
}

/*  The pid a command wrote to the file name in the test directory. */
static int
s_read_pid (const char *name)
{
    char *text = dp_test_read_file (dp_test_path (name));
    if (!text)
        dp_test_fail (__FILE__, __LINE__, "no pid in %s", name);
    int pid = atoi (text);
    free (text);
    CHECK (pid > 1);
    return pid;
}

/*  ---------------------------------------------------------------------------
    The cases.
*/

/*  Failing commands: each line's output in input order, a note naming the
    line, exit status 1, the joblog's Exitval; {} substitution in a word
    and the line on stdin when no word holds {}. */
static void
s_exec_failing_commands (void)
{
    dp_test_broker_t broker;
    s_cluster (&broker, 2, s_allow_all);
    const char *in = s_write_file ("codes.in", "0\n3\n0\n7\n");
    char joblog[1024];
    snprintf (joblog, sizeof joblog, "%s", dp_test_path ("codes.joblog"));
    int rc = s_sh ("codes",
                   "'%s' map --exec --connect '%s' --joblog '%s' -- sh -c 'echo out$0; exit $0' "
                   "{} < '%s'",
                   dp_test_cli_bin, broker.tcp, joblog, in);
    CHECK_EQ_INT (rc, 1);
    dp_test_check_stdout ("codes", "out0\nout3\nout0\nout7\n");
    dp_test_check_contains ("codes", "err", "line 2: exit 3: sh -c 'echo out$0; exit $0' 3");
    dp_test_check_contains ("codes", "err", "line 4: exit 7");
    char *log = dp_test_read_file (joblog);
    CHECK (log);
    const char *header =
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";
    CHECK (strncmp (log, header, strlen (header)) == 0);
    int seen = 0;
    for (char *line = strchr (log, '\n') + 1; *line; line = strchr (line, '\n') + 1) {
        int seq, exit_code, sig;
        CHECK (sscanf (line, "%d\t%*s\t%*f\t%*f\t%*d\t%*d\t%d\t%d", &seq, &exit_code, &sig) == 3);
        CHECK_EQ_INT (exit_code, seq == 2 ? 3 : seq == 4 ? 7 : 0);
        CHECK_EQ_INT (sig, 0);
        seen |= 1 << seq;
    }
    CHECK_EQ_INT (seen, 0x1e);
    free (log);

    /*  {} inside a word, and every line succeeding: exit 0. */
    in = s_write_file ("words.in", "a b\n\nc'd\n");
    CHECK_EQ_INT (s_sh ("words", "'%s' map --exec --connect '%s' printf '[%%s]\\n' x{}y{} < '%s'",
                        dp_test_cli_bin, broker.tcp, in),
                  0);
    dp_test_check_stdout ("words", "[xa bya b]\n[xy]\n[xc'dyc'd]\n");
    /*  No {}: the line is the command's stdin. */
    CHECK_EQ_INT (s_sh ("stdin", "'%s' map --exec --connect '%s' -- tr a-z A-Z < '%s'",
                        dp_test_cli_bin, broker.tcp, in),
                  0);
    dp_test_check_stdout ("stdin", "A B\n\nC'D\n");
    /*  A program that does not exist: exit 127, as in a shell. */
    in = s_write_file ("missing.in", "1\n");
    CHECK_EQ_INT (s_sh ("missing",
                        "'%s' map --exec --connect '%s' --json no-such-program-x < '%s'",
                        dp_test_cli_bin, broker.tcp, in),
                  1);
    json_t *records = s_records ("missing");
    CHECK_EQ_INT (s_int (records, 0, "exit"), 127);
    CHECK (strstr (s_str (records, 0, "stderr"), "No such file or directory"));
    json_decref (records);
}

/*  A command past its time limit: its whole process group is killed (the
    shell and the sleep it started), the map ends long before the sleep
    would, the record says timeout, and the worker process is the same
    one before and after. */
static void
s_exec_timeout_kills_group (void)
{
    dp_test_broker_t broker;
    s_cluster (&broker, 1, s_allow_all);
    const char *in = s_write_file ("ppid.in", "1\n");
    CHECK_EQ_INT (s_sh ("before", "'%s' map --exec --connect '%s' -- sh -c 'echo $PPID' < '%s'",
                        dp_test_cli_bin, broker.tcp, in),
                  0);
    char *worker_before = dp_test_output ("before", "out");

    const char *dir = dp_test_dir ();
    int64_t start = dp_test_now_ms ();
    int rc = s_sh ("timeout",
                   "'%s' map --exec --json --timeout-ms 300 --connect '%s' -- sh -c 'echo $$ > "
                   "%s/sh.pid; sleep 30 & echo $! > %s/sleep.pid; wait' < '%s'",
                   dp_test_cli_bin, broker.tcp, dir, dir, in);
    CHECK_EQ_INT (rc, 1);
    CHECK (dp_test_now_ms () - start < 20000);
    json_t *records = s_records ("timeout");
    CHECK_EQ_INT (json_array_size (records), 1);
    CHECK (json_is_true (json_object_get (json_array_get (records, 0), "timeout")));
    CHECK_EQ_INT (s_int (records, 0, "signal"), SIGTERM);
    CHECK_EQ_INT (s_int (records, 0, "exit"), -1);
    json_decref (records);
    dp_test_check_contains ("timeout", "err", "line 1: timed out after 300 ms");
    int sh = s_read_pid ("sh.pid"), sleeper = s_read_pid ("sleep.pid");
    CHECK (dp_test_wait_until (s_gone, &sh, GONE_MS));
    CHECK (dp_test_wait_until (s_gone, &sleeper, GONE_MS));

    CHECK_EQ_INT (s_sh ("after", "'%s' map --exec --connect '%s' -- sh -c 'echo $PPID' < '%s'",
                        dp_test_cli_bin, broker.tcp, in),
                  0);
    dp_test_check_stdout ("after", worker_before);
    free (worker_before);
}

/*  A command that exits leaving a process behind in its group: the
    leftover is killed at once, so neither it nor the pipe it holds keeps
    the map waiting. */
static void
s_exec_leftover_killed (void)
{
    dp_test_broker_t broker;
    s_cluster (&broker, 1, s_allow_all);
    const char *in = s_write_file ("left.in", "1\n");
    int64_t start = dp_test_now_ms ();
    CHECK_EQ_INT (s_sh ("left",
                        "'%s' map --exec --connect '%s' -- sh -c 'sleep 30 & echo $! > "
                        "%s/left.pid; echo done' < '%s'",
                        dp_test_cli_bin, broker.tcp, dp_test_dir (), in),
                  0);
    CHECK (dp_test_now_ms () - start < 20000);
    dp_test_check_stdout ("left", "done\n");
    int sleeper = s_read_pid ("left.pid");
    CHECK (dp_test_wait_until (s_gone, &sleeper, GONE_MS));
}

/*  10,000,000 bytes of output: 1 MiB of stdout kept and printed, a note
    saying what was cut, and the command still succeeds; --max-output
    bounds stderr too, the JSON record counting what was cut. */
static void
s_exec_huge_output (void)
{
    dp_test_broker_t broker;
    s_cluster (&broker, 1, s_allow_all);
    const char *in = s_write_file ("huge.in", "1\n");
    CHECK_EQ_INT (s_sh ("huge", "'%s' map --exec --connect '%s' -- head -c %d /dev/zero < '%s'",
                        dp_test_cli_bin, broker.tcp, HUGE_OUTPUT, in),
                  0);
    FILE *out = fopen (dp_test_path ("huge.out"), "rb");
    CHECK (out);
    CHECK (fseek (out, 0, SEEK_END) == 0);
    CHECK_EQ_INT (ftell (out), DP_EXEC_DEFAULT_MAX_OUTPUT);
    fclose (out);
    dp_test_check_contains ("huge", "err", "line 1: stdout cut to 1048576 of 10000000 bytes");

    CHECK_EQ_INT (s_sh ("huge_err",
                        "'%s' map --exec --json --max-output 1000 --connect '%s' -- sh -c 'head "
                        "-c %d /dev/zero >&2; echo done' < '%s'",
                        dp_test_cli_bin, broker.tcp, HUGE_OUTPUT, in),
                  0);
    json_t *records = s_records ("huge_err");
    CHECK_EQ_STR (s_str (records, 0, "stdout"), "done\n");
    CHECK_EQ_INT (s_int (records, 0, "stdout_cut"), 0);
    CHECK_EQ_INT (s_int (records, 0, "stderr_cut"), HUGE_OUTPUT - 1000);
    CHECK_EQ_INT (s_int (records, 0, "exit"), 0);
    json_decref (records);
}

/*  True once the joblog at arg holds more than 10 lines. */
static bool
s_joblog_has_some (void *arg)
{
    char *log = dp_test_read_file ((const char *)arg);
    int lines = 0;
    for (const char *c = log ? log : ""; *c; c++)
        lines += *c == '\n';
    free (log);
    return lines > 10;
}

/*  Marks in seen[] the seqs of a joblog's lines; stops the test if one is
    there twice. Returns how many. */
static int
s_joblog_seqs (const char *path, bool *seen, int max)
{
    char *log = dp_test_read_file (path);
    CHECK (log);
    int count = 0;
    for (char *line = strchr (log, '\n') + 1; *line; line = strchr (line, '\n') + 1) {
        int seq = atoi (line);
        CHECK (seq >= 1 && seq <= max);
        if (seen[seq])
            dp_test_fail (__FILE__, __LINE__, "line %d is twice in the joblog", seq);
        seen[seq] = true;
        count++;
    }
    free (log);
    return count;
}

/*  The map is SIGKILLed mid-run; the rerun with --resume runs only the
    lines the joblog does not hold, and in the end the joblog holds every
    line exactly once. */
static void
s_exec_resume_after_kill (void)
{
    dp_test_broker_t broker;
    s_cluster (&broker, 2, s_allow_all);
    char lines[RESUME_LINES * 8] = "";
    for (int i = 1; i <= RESUME_LINES; i++)
        snprintf (lines + strlen (lines), sizeof lines - strlen (lines), "%d\n", i);
    const char *in = s_write_file ("resume.in", lines);
    char joblog[1024];
    snprintf (joblog, sizeof joblog, "%s", dp_test_path ("resume.joblog"));
    const char *format = "exec '%s' map --exec --connect '%s' --joblog '%s' -- sh -c 'echo "
                         "L$0; sleep 0.05' {} < '%s'";
    char command[COMMAND_SIZE];
    snprintf (command, sizeof command, format, dp_test_cli_bin, broker.tcp, joblog, in);
    char *argv[] = {"/bin/sh", "-c", command, NULL};
    pid_t first = dp_test_spawn ("first", argv);
    CHECK (dp_test_wait_until (s_joblog_has_some, joblog, 30000));
    CHECK (kill (first, SIGKILL) == 0);
    CHECK (dp_test_wait_exit (first, 10000) != -1);
    bool before[RESUME_LINES + 1] = {false};
    int done = s_joblog_seqs (joblog, before, RESUME_LINES);
    CHECK (done >= 10 && done < RESUME_LINES);

    CHECK_EQ_INT (s_sh ("second",
                        "'%s' map --exec --connect '%s' --joblog '%s' --resume -- sh -c 'echo "
                        "L$0; sleep 0.05' {} < '%s'",
                        dp_test_cli_bin, broker.tcp, joblog, in),
                  0);
    bool after[RESUME_LINES + 1] = {false};
    CHECK_EQ_INT (s_joblog_seqs (joblog, after, RESUME_LINES), RESUME_LINES);
    char *second = dp_test_output ("second", "out");
    for (int i = 1; i <= RESUME_LINES; i++) {
        char line[32], needle[34];
        snprintf (line, sizeof line, "L%d\n", i);
        snprintf (needle, sizeof needle, "\n%s", line);
        bool printed = strncmp (second, line, strlen (line)) == 0 || strstr (second, needle);
        if (printed == before[i])
            dp_test_fail (__FILE__, __LINE__, "line %d: %s by the rerun, and %s in the joblog", i,
                          printed ? "run" : "not run", before[i] ? "was" : "was not");
    }
    free (second);
}

/*  A worker without --allow-exec does not offer dpool.exec: the command's
    line fails ENOFUNC. One whose list does not name the program refuses
    it (EFAILED), and runs those it names. */
static void
s_exec_without_opt_in (void)
{
    dp_test_broker_t broker;
    s_cluster (&broker, 1, NULL);
    const char *in = s_write_file ("no.in", "1\n");
    CHECK_EQ_INT (s_sh ("no", "'%s' map --exec --json --connect '%s' -- echo {} < '%s'",
                        dp_test_cli_bin, broker.tcp, in),
                  1);
    json_t *records = s_records ("no");
    json_t *error = json_object_get (json_array_get (records, 0), "dpool_error");
    CHECK_EQ_STR (json_string_value (json_object_get (error, "code")), "ENOFUNC");
    json_decref (records);
    dp_test_check_contains ("no", "err", "line 1: ENOFUNC");

    dp_test_broker_t listed;
    static const char *const allow_echo[] = {"--allow-exec=echo,printf", NULL};
    s_cluster (&listed, 1, allow_echo);
    CHECK_EQ_INT (s_sh ("listed", "'%s' map --exec --connect '%s' -- echo {} < '%s'",
                        dp_test_cli_bin, listed.tcp, in),
                  0);
    dp_test_check_stdout ("listed", "1\n");
    CHECK_EQ_INT (s_sh ("refused", "'%s' map --exec --connect '%s' -- sh -c 'echo $0' {} < '%s'",
                        dp_test_cli_bin, listed.tcp, in),
                  1);
    dp_test_check_stdout ("refused", "");
    dp_test_check_contains ("refused", "err", "EFAILED: dpool.exec: 'sh' is not allowed");
}

/*  Calls dpool.exec in process on the packed args; returns the code and
    leaves the result in out (unpacked into *value with zone). */
static int
s_call (dp_test_buf_t *args, msgpack_sbuffer *out, msgpack_zone *zone, msgpack_object *value)
{
    msgpack_object object;
    size_t offset = 0;
    CHECK (msgpack_unpack (args->sbuf.data, args->sbuf.size, &offset, zone, &object) ==
           MSGPACK_UNPACK_SUCCESS);
    dpool_task_t task;
    dp_task_init (&task, DP_EXEC_FN, strlen (DP_EXEC_FN), NULL, 1);
    msgpack_sbuffer_clear (out);
    int code = dp_task_call (&task, dp_exec_fn, &object, out);
    offset = 0;
    CHECK (msgpack_unpack (out->data, out->size, &offset, zone, value) == MSGPACK_UNPACK_SUCCESS);
    dp_test_buf_clear (args);
    return code;
}

/*  Arguments of every wrong shape fail the task with a message, and
    nothing runs; a well-formed call returns the result map. */
static void
s_exec_hostile_arguments (void)
{
    dp_test_buf_t args;
    dp_test_buf_init (&args);
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object value;
    msgpack_packer *pk = &args.pk;

    msgpack_pack_int (pk, 3); /* not an array */
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    msgpack_pack_array (pk, 1); /* no words */
    msgpack_pack_array (pk, 0);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    msgpack_pack_array (pk, 1); /* a word that is a number */
    msgpack_pack_array (pk, 1);
    msgpack_pack_int (pk, 1);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    msgpack_pack_array (pk, 1); /* a NUL inside a word */
    msgpack_pack_array (pk, 2);
    dp_test_pack_str (pk, "echo");
    msgpack_pack_str (pk, 3);
    msgpack_pack_str_body (pk, "a\0b", 3);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    CHECK (value.type == MSGPACK_OBJECT_STR &&
           memmem (value.via.str.ptr, value.via.str.size, "NUL", 3));
    msgpack_pack_array (pk, 1); /* an empty program */
    msgpack_pack_array (pk, 1);
    dp_test_pack_str (pk, "");
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    msgpack_pack_array (pk, 2); /* stdin of the wrong type */
    msgpack_pack_array (pk, 1);
    dp_test_pack_str (pk, "true");
    msgpack_pack_int (pk, 5);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    msgpack_pack_array (pk, 3); /* a negative time limit */
    msgpack_pack_array (pk, 1);
    dp_test_pack_str (pk, "true");
    msgpack_pack_nil (pk);
    msgpack_pack_int (pk, -1);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);
    msgpack_pack_array (pk, 4); /* more output than a worker keeps */
    msgpack_pack_array (pk, 1);
    dp_test_pack_str (pk, "true");
    msgpack_pack_nil (pk);
    msgpack_pack_nil (pk);
    msgpack_pack_uint64 (pk, DP_EXEC_MAX_OUTPUT_LIMIT + 1);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_EFAILED);

    /*  Well formed, with extra fields ignored: the result map. */
    msgpack_pack_array (pk, 5);
    msgpack_pack_array (pk, 3);
    dp_test_pack_str (pk, "sh");
    dp_test_pack_str (pk, "-c");
    dp_test_pack_str (pk, "cat; exit 7");
    dp_test_pack_str (pk, "in");
    msgpack_pack_uint64 (pk, 10000);
    msgpack_pack_uint64 (pk, 1);
    msgpack_pack_nil (pk);
    CHECK_EQ_INT (s_call (&args, &out, &zone, &value), DPOOL_OK);
    CHECK (dp_test_is_int (dp_test_map_get (&value, DP_EXEC_KEY_EXIT), 7));
    CHECK (dp_test_is_int (dp_test_map_get (&value, DP_EXEC_KEY_STDOUT_SIZE), 2));
    CHECK (dp_test_is_int (dp_test_map_get (&value, DP_EXEC_KEY_SENT), 2));
    const msgpack_object *kept = dp_test_map_get (&value, DP_EXEC_KEY_STDOUT);
    CHECK (kept && kept->type == MSGPACK_OBJECT_BIN && kept->via.bin.size == 1 &&
           kept->via.bin.ptr[0] == 'i');

    /*  An allow list that does not name the program refuses it. */
    CHECK (dp_exec_register ("") == -1);
    CHECK (dp_exec_register ("a,,b") == -1);
    CHECK (dp_exec_register ("echo") == 0);
    void *hint = NULL;
    CHECK (dp_registry_lookup (DP_EXEC_FN, strlen (DP_EXEC_FN), &hint) == dp_exec_fn);
    msgpack_pack_array (pk, 1);
    msgpack_pack_array (pk, 1);
    dp_test_pack_str (pk, "true");
    msgpack_object object;
    size_t offset = 0;
    CHECK (msgpack_unpack (args.sbuf.data, args.sbuf.size, &offset, &zone, &object) ==
           MSGPACK_UNPACK_SUCCESS);
    dpool_task_t task;
    dp_task_init (&task, DP_EXEC_FN, strlen (DP_EXEC_FN), hint, 1);
    msgpack_sbuffer_clear (&out);
    CHECK_EQ_INT (dp_task_call (&task, dp_exec_fn, &object, &out), DPOOL_EFAILED);
    CHECK (strstr (task.message, "not allowed"));

    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&out);
    dp_test_buf_fini (&args);
}

static const dp_test_case_t s_cases[] = {
    {"exec_failing_commands", s_exec_failing_commands},
    {"exec_timeout_kills_group", s_exec_timeout_kills_group},
    {"exec_leftover_killed", s_exec_leftover_killed},
    {"exec_huge_output", s_exec_huge_output},
    {"exec_resume_after_kill", s_exec_resume_after_kill},
    {"exec_without_opt_in", s_exec_without_opt_in},
    {"exec_hostile_arguments", s_exec_hostile_arguments},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

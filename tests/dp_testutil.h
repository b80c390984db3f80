/*  dp_testutil.h - what dpool's tests share: checks that stop the test with
    a file:line message, a deadline for the whole test, private temporary
    directories, and real processes (broker, workers) started and stopped
    by pid, with conditions awaited under a deadline instead of sleeps.
*/
#ifndef DP_TESTUTIL_H_INCLUDED
#define DP_TESTUTIL_H_INCLUDED

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct _dpool_pool_t dpool_pool_t;
typedef struct _dpool_result_t dpool_result_t;

/*  Stops the test with a message unless cond holds. */
#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond))                                                                              \
            dp_test_fail (__FILE__, __LINE__, "CHECK (%s)", #cond);                               \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                        \
    do {                                                                                          \
        long long a_ = (long long)(a), b_ = (long long)(b);                                       \
        if (a_ != b_)                                                                             \
            dp_test_fail (__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, a_, #b, b_); \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                        \
    do {                                                                                          \
        const char *a_ = (a), *b_ = (b);                                                          \
        if (!a_ || !b_ || strcmp (a_, b_) != 0)                                                   \
            dp_test_fail (__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,                \
                          a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                \
    } while (0)

void
dp_test_fail (const char *file, int line, const char *format, ...)
    __attribute__ ((noreturn, format (printf, 3, 4)));

/*  Starts a test: kills the whole test (and every process it started) if it
    is still running after seconds; makes a private temporary directory. */
void
dp_test_begin (const char *name, int seconds);

/*  One case of a test program. Each program lists its cases once, in a
    file-scope table named s_cases, one entry a case:

        static const dp_test_case_t s_cases[] = {
            {"broker_cancel", s_case_cancel},
            {"client_apply_async", .run_on = s_case_apply_async, .seconds = 90},
            {"broker_hostile_input", s_case_hostile_input,
             .valgrind = "broker_hostile_input_valgrind"},
        };

    name is the test's name as ctest knows it, and what the program takes on
    its command line to run the case. A case with run_on runs once per
    transport, as the tests name_tcp and name_ipc. A case with valgrind is
    also registered under that name, run with the broker under valgrind.
    tests/CMakeLists.txt reads this table from the source (dpool_test_cases)
    and registers what it lists; the build checks that it read the same
    cases as the program prints with --list. So entries hold no braces, and
    name and valgrind are plain string literals. */
typedef struct {
    const char *name;
    void (*run) (void);                     /* the case; or run_on */
    void (*run_on) (const char *transport); /* the case, over "tcp" or "ipc" */
    const char *valgrind;                   /* the test's name under valgrind, or NULL */
    int seconds;                            /* the case's deadline; 0: the program's */
    const void *data;                       /* the program's own, for its main */
} dp_test_case_t;

#define DP_TEST_CASES(cases) (cases), (sizeof (cases) / sizeof (cases)[0])

/*  Reads the command line of a test program: `--list` prints the cases
    (one a line: the name, then "tcp ipc" for a case run per transport, then
    "valgrind=NAME" for one with a valgrind variant) and exits 0; `NAME
    [tcp|ipc]` finds the case, begins the test under its name (with the
    transport appended, as ctest names it) with the case's deadline or
    seconds, and returns the case, setting *transport for a run_on case
    ("tcp" when none is given). Anything else prints the usage and exits 2. */
const dp_test_case_t *
dp_test_select (int argc, char *argv[], const dp_test_case_t *cases, size_t count, int seconds,
                const char **transport);

/*  Runs a case that dp_test_select returned. */
void
dp_test_run (const dp_test_case_t *self, const char *transport);

/*  The whole main of a program whose cases need nothing around them:
    dp_test_select, then dp_test_run; returns the exit status. */
int
dp_test_main (int argc, char *argv[], const dp_test_case_t *cases, size_t count, int seconds);

/*  The test's private directory (removed at exit unless DPOOL_KEEP_TMP). */
const char *
dp_test_dir (void);

/*  A fresh ipc:// endpoint inside the test's directory. Returns a static
    buffer that the next call overwrites. */
const char *
dp_test_ipc (const char *name);

/*  Starts argv[0] (a path) with argv; stdout and stderr go to files in the
    test directory named after tag (or stay shared when tag is NULL).
    Returns the pid. The process is killed when the test exits. */
pid_t
dp_test_spawn (const char *tag, char *const argv[]);

/*  Sends sig to pid and waits up to timeout_ms for it to end; returns its
    wait status, or -1 if it did not end (it is then SIGKILLed). */
int
dp_test_stop (pid_t pid, int sig, int timeout_ms);

/*  Waits up to timeout_ms for pid to exit; returns its wait status or -1. */
int
dp_test_wait_exit (pid_t pid, int timeout_ms);

/*  Polls cond(arg) every few milliseconds until it is true or timeout_ms
    passes; returns the last value of cond. */
bool
dp_test_wait_until (bool (*cond) (void *arg), void *arg, int timeout_ms);

/*  Reads a whole file into a NUL-terminated buffer (caller frees); NULL if
    it cannot. */
char *
dp_test_read_file (const char *path);

/*  Path of a file in the test directory (static buffer). */
const char *
dp_test_path (const char *name);

/*  A running dpool-broker started by the test. */
typedef struct {
    pid_t pid;
    char tcp[128];  /* tcp://127.0.0.1:PORT it bound */
    char ipc[2048]; /* ipc:// endpoint it bound */
} dp_test_broker_t;

/*  Starts dpool-broker bound to a free loopback port and a private ipc
    endpoint, plus any extra arguments (NULL-terminated, may be NULL), and
    waits until it has bound both. Stops the test if it cannot. */
void
dp_test_broker_start (dp_test_broker_t *broker, const char *const *extra);

/*  Starts a broker again on broker's endpoints (after it was stopped),
    with extra arguments (NULL-terminated, may be NULL), and waits until it
    has bound them; its pid goes to broker->pid. tag names its output
    files. */
void
dp_test_broker_restart (dp_test_broker_t *broker, const char *tag, const char *const *extra);

/*  Starts `dpool-worker --connect endpoint --procs procs` plus extra
    arguments (NULL-terminated, may be NULL); returns the supervisor's pid. */
pid_t
dp_test_workers_start (const char *endpoint, int procs, const char *const *extra);

/*  dp_test_workers_start with --log-level DPOOL_LOG's value (info when it
    is not set) before extra (at most 29 of them), so that a failing
    test's workers say what they did. */
pid_t
dp_test_workers_logged (const char *endpoint, int procs, const char *const *extra);

/*  Waits up to timeout_ms until the broker of pool (a connected pool)
    reports at least workers worker processes; stops the test, saying how
    many came, if they do not. */
void
dp_test_wait_workers (dpool_pool_t *pool, int workers, int timeout_ms);

/*  A msgpack buffer with its packer, for packing arguments. */
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} dp_test_buf_t;

void
dp_test_buf_init (dp_test_buf_t *self);
void
dp_test_buf_clear (dp_test_buf_t *self);
void
dp_test_buf_fini (dp_test_buf_t *self);

/*  The broker's status through pool, unpacked into a zone of its own (its
    strings point into the zone, not into the reply); stops the test if the
    broker does not answer within 10 s. The caller destroys it. */
msgpack_unpacked
dp_test_status (dpool_pool_t *pool);

/*  Milliseconds on the monotonic clock. */
int64_t
dp_test_now_ms (void);

/*  Sleeps ms milliseconds (none if ms <= 0), resumed when a signal breaks
    in. For pacing a test's own actions only: to wait for something, use
    dp_test_wait_until. */
void
dp_test_sleep_ms (int64_t ms);

/*  Packs text as a msgpack str. */
void
dp_test_pack_str (msgpack_packer *pk, const char *text);

/*  Packs the array [a, b] (a task's one argument list). */
void
dp_test_pack_pair (msgpack_packer *pk, int64_t a, int64_t b);

/*  Clears buf, then packs the ints from .. to - 1 back to back. */
void
dp_test_pack_range (dp_test_buf_t *buf, int from, int to);

/*  True if object is the integer value. */
bool
dp_test_is_int (const msgpack_object *object, int64_t value);

/*  True if object is the array [a, b] of integers. */
bool
dp_test_is_pair (const msgpack_object *object, int64_t a, int64_t b);

/*  True if object is the str text. */
bool
dp_test_is_str (const msgpack_object *object, const char *text);

/*  The value under the str key in map, or NULL if map is NULL, no map, or
    has no such key. Borrowed from map. */
const msgpack_object *
dp_test_map_get (const msgpack_object *map, const char *key);

/*  Checks that a finished handle failed with code: not successful, its
    code and dpool_errno are code, get fails, and it has an error text. */
void
dp_test_check_failed (dpool_result_t *result, int code);

/*  Checks that a finished map (or one in 20 s) gave the ints 0 .. count - 1
    in order, each also as its item and none with an error. */
void
dp_test_check_range (dpool_result_t *result, int count);

/*  A broker, maybe workers, and the endpoint of the transport a test uses,
    for tests of the client library. Its processes are also killed at exit
    before CZMQ's exit handler runs, even when the test fails with a pool
    still running (CZMQ's handler may abort before dp_testutil's own could
    kill them, which would leave them to talk to other tests' brokers). */
typedef struct {
    dp_test_broker_t broker;
    pid_t workers;
    const char *endpoint;
} dp_test_env_t;

/*  Starts a broker (dp_test_broker_start) and, if procs > 0, a dpool-worker
    with procs processes, reached over transport ("tcp" or "ipc"). */
void
dp_test_env_start (dp_test_env_t *env, const char *transport, int procs);

/*  Stops what dp_test_env_start started, by pid. */
void
dp_test_env_stop (dp_test_env_t *env);

/*  Connects a pool to the environment's broker and waits until it has
    workers workers (none if workers is 0). */
dpool_pool_t *
dp_test_env_connect (dp_test_env_t *env, int workers);

/*  Starts the environment's broker again on the same endpoints, after it
    was stopped (dp_test_untrack_stop); tag names its output files. */
void
dp_test_env_restart_broker (dp_test_env_t *env, const char *tag);

/*  Tracks pid (if > 0) as an environment's process (see dp_test_env_t) and
    returns it; the first call also makes CZMQ's context, so that the
    handler that kills tracked processes runs before CZMQ's. */
pid_t
dp_test_track (pid_t pid);

/*  Forgets a tracked pid and stops it (dp_test_stop with a 5 s grace);
    returns its wait status or -1. */
int
dp_test_untrack_stop (pid_t pid, int sig);

/*  A count from the status of pool's broker: the key at the top level
    (outer NULL) or in the map under outer; an array counts its items. -1
    if absent, or if the broker did not answer within 10 s. */
long long
dp_test_status_count (dpool_pool_t *pool, const char *outer, const char *key);

/*  The text a command started with a tag wrote to its stdout (stream
    "out") or stderr ("err"); empty if it wrote nothing. The caller frees. */
char *
dp_test_output (const char *tag, const char *stream);

/*  Stops the test unless the command tag's stream contains needle, or
    unless its stdout is exactly expected (showing what it was). */
void
dp_test_check_contains (const char *tag, const char *stream, const char *needle);
void
dp_test_check_stdout (const char *tag, const char *expected);

/*  Starts the dpool command with args (NULL-terminated, at most 12) and
    --connect endpoint; its stdout and stderr go to files named after tag
    (dp_test_spawn). Returns its pid. */
pid_t
dp_test_cli_spawn (const char *tag, const char *endpoint, const char *const *args);

/*  Runs the dpool command so to its end (at most timeout_ms, else the test
    stops) and returns its exit status; *out and *err (either may be NULL)
    get its stdout and stderr, which the caller frees. */
int
dp_test_cli_run (const char *tag, const char *endpoint, const char *const *args, int timeout_ms,
                 char **out, char **err);

/*  Paths of the built programs. */
extern const char *dp_test_broker_bin;
extern const char *dp_test_worker_bin;
extern const char *dp_test_cli_bin;

#endif

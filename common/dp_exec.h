/*  dp_exec.h - shell commands as tasks: the function dpool.exec.

    A task of the function DP_EXEC_FN runs one command on the worker, as
    GNU parallel runs a job, and returns its exit status, its output and
    its timing. To the broker it is an ordinary task; docs/PROTOCOL.md
    (section 10) describes its arguments and result, which this header
    names. It is remote code execution: a worker offers it only when its
    operator says so (dpool-worker --allow-exec), through dp_exec_register,
    and then only for the programs allowed. An embedded pool never offers
    it.

    The command runs in a process group of its own (posix_spawnp, so the
    worker's other thread is never at risk between fork and exec), with
    stdin from the task (or /dev/null), stdout and stderr read through
    pipes, each kept up to a bound and counted beyond it, and every other
    descriptor closed. Its time limit ends the command, never the worker:
    SIGTERM to its group, SIGKILL DP_EXEC_TERM_GRACE_MS later. When the
    command exits, whatever it left running in its group is killed, and the
    command is reaped: no zombie, no grandchild in its group outlives the
    task. A process that left the group (setsid) is beyond reach; the wait
    for the pipes it may hold is bounded by DP_EXEC_DRAIN_MS.
*/
#ifndef DP_EXEC_H_INCLUDED
#define DP_EXEC_H_INCLUDED

#include "dpool.h"

#include <stddef.h>
#include <stdint.h>

/*  The function's name. */
#define DP_EXEC_FN "dpool.exec"

/*  Arguments: [argv, stdin, timeout_ms, max_output], the last three
    optional (absent or nil: none, none, the default). */
#define DP_EXEC_ARG_ARGV       0
#define DP_EXEC_ARG_STDIN      1
#define DP_EXEC_ARG_TIMEOUT    2
#define DP_EXEC_ARG_MAX_OUTPUT 3

#define DP_EXEC_MAX_ARGV           65536              /* words of a command */
#define DP_EXEC_DEFAULT_MAX_OUTPUT (1024 * 1024)      /* bytes kept of stdout, and of stderr */
#define DP_EXEC_MAX_OUTPUT_LIMIT   (16 * 1024 * 1024) /* the most max_output may ask */
#define DP_EXEC_TERM_GRACE_MS      1000 /* from SIGTERM to SIGKILL after the time limit */
#define DP_EXEC_DRAIN_MS           1000 /* longest wait for pipes once the group is killed */
#define DP_EXEC_EXIT_NOT_FOUND     127  /* exit status when the program is not found */
#define DP_EXEC_EXIT_CANNOT_RUN    126  /* ... or cannot run for another reason */

/*  The keys of the result map. */
#define DP_EXEC_KEY_EXIT        "exit"        /* int: exit status; -1 if killed by a signal */
#define DP_EXEC_KEY_SIGNAL      "signal"      /* uint: the signal that killed it, or 0 */
#define DP_EXEC_KEY_TIMEOUT     "timeout"     /* bool: its time limit ended it */
#define DP_EXEC_KEY_STDOUT      "stdout"      /* bin: what it wrote, up to max_output */
#define DP_EXEC_KEY_STDERR      "stderr"      /* bin: the same of its stderr */
#define DP_EXEC_KEY_STDOUT_SIZE "stdout_size" /* uint: bytes it wrote, kept or not */
#define DP_EXEC_KEY_STDERR_SIZE "stderr_size" /* uint: the same of its stderr */
#define DP_EXEC_KEY_SENT        "sent"        /* uint: bytes of stdin it read */
#define DP_EXEC_KEY_HOST        "host"        /* str: the worker's host name */
#define DP_EXEC_KEY_START_US    "start_us"    /* uint: start, µs since the Unix epoch */
#define DP_EXEC_KEY_RUN_US      "run_us"      /* uint: from start to its end, µs */

/*  Registers DP_EXEC_FN in this process's registry. allow is the
    operator's list: "*" allows every program; else a comma-separated list
    of the names a command's argv[0] must equal, byte for byte (a name
    allowed as "sh" is found through PATH; "/bin/sh" must be asked as
    such). Call it before the workers start, from one thread. Returns 0, or
    -1 with DPOOL_EINVAL (an empty list or name) or DPOOL_ENOMEM. */
int
dp_exec_register (const char *allow);

/*  The task function itself (registered by dp_exec_register, with the
    allow list as its hint; tests call it through dp_task_call). Without a
    hint it allows every program. */
int
dp_exec_fn (dpool_task_t *task, const msgpack_object *args, msgpack_packer *result);

/*  Kills (SIGKILL) the process group of the command running now, if any.
    Async-signal-safe: the worker calls it before it ends its process in
    the middle of a task (a deadline, a signal), so that the command does
    not outlive it. */
void
dp_exec_kill_running (void);

#endif

/*  dp_exec_int.h - one command's run, between dp_exec.c (arguments and
    result) and dp_exec_run.c (the process). Private to those two files.
*/
#ifndef DP_EXEC_INT_H_INCLUDED
#define DP_EXEC_INT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*  One of the command's output pipes: the bytes kept, up to max_output,
    and how many it wrote in all. */
typedef struct {
    int fd; /* our read end, -1 once closed */
    char *data;
    size_t len;
    size_t capacity;
    uint64_t total;
} dp_exec_stream_t;

/*  A command to run and, once run, how it went. */
typedef struct {
    /*  Asked (dp_exec.c fills these; argv is owned, one block). */
    char **argv;
    const char *in; /* stdin's bytes, or NULL for /dev/null */
    size_t in_size;
    int64_t timeout_ms; /* 0: none */
    size_t max_output;
    /*  The process (dp_exec_run.c). */
    pid_t pid;
    int pidfd;           /* readable once the command ended; -1 if the kernel has none */
    int in_fd;           /* our end of its stdin, -1 once closed */
    bool ended;          /* it is a zombie, not yet reaped */
    int64_t end_at;      /* ms: the time limit */
    int64_t kill_at;     /* ms: SIGKILL after the SIGTERM of the time limit */
    int64_t drain_until; /* ms: the pipes' last chance, once it ended */
    int64_t started_ms;
    uint64_t started_us; /* on the monotonic clock */
    /*  The outcome. */
    dp_exec_stream_t out, err;
    uint64_t in_sent;
    int exit_code; /* -1 if it did not exit */
    int signal;    /* 0 if none killed it */
    bool timed_out;
    uint64_t start_us; /* wall clock */
    uint64_t run_us;
    char failure[256]; /* why dp_exec_run failed */
} dp_exec_run_t;

/*  Makes run empty: nothing asked, nothing open. */
void
dp_exec_run_init (dp_exec_run_t *run);

/*  Frees what run holds and closes what it has open. */
void
dp_exec_run_fini (dp_exec_run_t *run);

/*  Runs the command run asks for, to its end, and fills the outcome: a
    program that cannot start ends with exit 127 (not found) or 126 and
    the reason on its stderr, as in a shell. Blocks until the command ended
    and was reaped (bounded by its time limit, DP_EXEC_TERM_GRACE_MS and
    DP_EXEC_DRAIN_MS when it has one). Returns 0, or -1 with run->failure
    set when the worker could not even try (no pipes, no memory). */
int
dp_exec_run (dp_exec_run_t *run);

#endif

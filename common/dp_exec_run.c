/*  dp_exec_run.c - one command of dpool.exec, from spawn to reaping.

    posix_spawnp starts the command in a process group of its own, with a
    clean signal mask and default dispositions, its stdin, stdout and
    stderr on pipes (or /dev/null) and every other descriptor closed. One
    poll loop then writes its stdin, reads its output, watches its end
    through a pidfd (or, without one, in DP_EXEC_SLICE_MS slices) and
    enforces its time limit. The process is only reaped after its group
    was sent SIGKILL, so that the group's id cannot have been reused by
    then. dp_exec_int.h is the contract.
*/
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np */
#include "dp_exec.h"
#include "dp_exec_int.h"

#include "dp_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DP_EXEC_SLICE_MS   10    /* polling for its end, without a pidfd */
#define DP_EXEC_READ_CHUNK 65536 /* the most read at once */
#define DP_EXEC_SCRATCH    16384 /* bytes beyond max_output are read here and dropped */

extern char **environ;

/*  The process group of the command running now, 0 if none. */
static atomic_int s_running;

void
dp_exec_kill_running (void)
{
    int pgid = atomic_load (&s_running);
    if (pgid > 0)
        kill (-pgid, SIGKILL);
}

void
dp_exec_run_init (dp_exec_run_t *run)
{
    memset (run, 0, sizeof *run);
    run->pidfd = -1;
    run->in_fd = -1;
    run->out.fd = -1;
    run->err.fd = -1;
    run->exit_code = -1;
}

static void
s_close (int *fd)
{
    if (*fd >= 0)
        close (*fd);
    *fd = -1;
}

void
dp_exec_run_fini (dp_exec_run_t *run)
{
    s_close (&run->pidfd);
    s_close (&run->in_fd);
    s_close (&run->out.fd);
    s_close (&run->err.fd);
    free (run->out.data);
    free (run->err.data);
    free (run->argv);
    dp_exec_run_init (run);
}

/*  Microseconds on clock. */
static uint64_t
s_now_us (clockid_t clock)
{
    struct timespec now;
    clock_gettime (clock, &now);
    return (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_nsec / 1000u;
}

/*  Appends text to a stream's kept bytes, within its bound. */
static void
s_stream_note (dp_exec_stream_t *stream, size_t max, const char *text)
{
    size_t len = strlen (text);
    if (len > max)
        len = max;
    char *data = malloc (len);
    if (!data)
        return;
    memcpy (data, text, len);
    free (stream->data);
    stream->data = data;
    stream->len = stream->capacity = len;
    stream->total = len;
}

/*  Makes a pipe, both ends close-on-exec, ours non-blocking; ours_read
    says which end is ours. Returns 0, or -1 after noting why. */
static int
s_pipe (dp_exec_run_t *run, int fds[2], bool ours_read)
{
    if (pipe2 (fds, O_CLOEXEC)) {
        snprintf (run->failure, sizeof run->failure, "cannot make a pipe: %s", strerror (errno));
        return -1;
    }
    int ours = fds[ours_read ? 0 : 1];
    fcntl (ours, F_SETFL, fcntl (ours, F_GETFL) | O_NONBLOCK);
    return 0;
}

/*  The child's side of the descriptors: stdin, stdout and stderr on the
    pipes' ends (stdin on /dev/null without one), all else closed. */
static int
s_file_actions (posix_spawn_file_actions_t *actions, int in, int out, int err)
{
    posix_spawn_file_actions_init (actions);
    int rc = in >= 0 ? posix_spawn_file_actions_adddup2 (actions, in, STDIN_FILENO)
                     : posix_spawn_file_actions_addopen (actions, STDIN_FILENO, "/dev/null",
                                                         O_RDONLY, 0);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2 (actions, out, STDOUT_FILENO);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2 (actions, err, STDERR_FILENO);
    if (!rc)
        rc = posix_spawn_file_actions_addclosefrom_np (actions, STDERR_FILENO + 1);
    return rc;
}

/*  The child's process attributes: a group of its own, no signal
    blocked, every signal's disposition the default. */
static int
s_attributes (posix_spawnattr_t *attr)
{
    posix_spawnattr_init (attr);
    sigset_t none, all;
    sigemptyset (&none);
    sigfillset (&all);
    int rc = posix_spawnattr_setflags (attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF);
    if (!rc)
        rc = posix_spawnattr_setpgroup (attr, 0);
    if (!rc)
        rc = posix_spawnattr_setsigmask (attr, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault (attr, &all);
    return rc;
}

/*  Starts the command on the child's ends of the pipes (in is -1 for
    /dev/null). Returns 0, or the error number of posix_spawnp. */
static int
s_spawn (dp_exec_run_t *run, int in, int out, int err)
{
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = s_file_actions (&actions, in, out, err);
    if (!rc)
        rc = s_attributes (&attr);
    if (!rc) {
        rc = posix_spawnp (&run->pid, run->argv[0], &actions, &attr, run->argv, environ);
        posix_spawnattr_destroy (&attr);
    }
    posix_spawn_file_actions_destroy (&actions);
    return rc;
}

/*  Opens the pipes and starts the command. A command that cannot start is
    a result (126 or 127, the reason on its stderr), not a failure. Returns
    0, or -1 after noting why. */
static int
s_start (dp_exec_run_t *run)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int rc = -1;
    if ((!run->in || !s_pipe (run, in, false)) && !s_pipe (run, out, true) &&
        !s_pipe (run, err, true)) {
        run->start_us = s_now_us (CLOCK_REALTIME);
        run->started_ms = dp_now_ms ();
        run->started_us = s_now_us (CLOCK_MONOTONIC);
        int error = s_spawn (run, in[0], out[1], err[1]);
        rc = 0;
        if (error) {
            char text[512];
            snprintf (text, sizeof text, DP_EXEC_FN ": cannot run '%.200s': %s\n", run->argv[0],
                      strerror (error));
            s_stream_note (&run->err, run->max_output, text);
            run->exit_code = error == ENOENT ? DP_EXEC_EXIT_NOT_FOUND : DP_EXEC_EXIT_CANNOT_RUN;
            run->pid = 0;
        }
    }
    s_close (&in[0]);
    s_close (&out[1]);
    s_close (&err[1]);
    run->in_fd = in[1];
    run->out.fd = out[0];
    run->err.fd = err[0];
    return rc;
}

/*  Reads what a pipe holds now: kept up to max, counted beyond. Closes it
    at its end (or on an error). */
static void
s_read (dp_exec_stream_t *stream, size_t max)
{
    char scratch[DP_EXEC_SCRATCH];
    for (;;) {
        char *into = scratch;
        size_t room = sizeof scratch;
        if (stream->len < max) {
            if (stream->capacity == stream->len) {
                size_t capacity = stream->capacity + DP_EXEC_READ_CHUNK;
                capacity = capacity > max ? max : capacity;
                char *data = realloc (stream->data, capacity);
                if (data) {
                    stream->data = data;
                    stream->capacity = capacity;
                }
            }
            if (stream->capacity > stream->len) {
                into = stream->data + stream->len;
                room = stream->capacity - stream->len;
            }
        }
        ssize_t got = read (stream->fd, into, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && errno == EAGAIN)
            return;
        if (got <= 0) {
            s_close (&stream->fd);
            return;
        }
        if (into != scratch)
            stream->len += (size_t)got;
        stream->total += (uint64_t)got;
        if ((size_t)got < room)
            return;
    }
}

/*  Writes what the command's stdin takes now; closes it when all is
    written, or when the command closed its end (EPIPE, whose SIGPIPE the
    caller blocked: it is taken here). */
static void
s_write (dp_exec_run_t *run)
{
    while (run->in_sent < run->in_size) {
        ssize_t put = write (run->in_fd, run->in + run->in_sent, run->in_size - run->in_sent);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && errno == EAGAIN)
            return;
        if (put < 0) {
            if (errno == EPIPE) {
                sigset_t pipe_only;
                sigemptyset (&pipe_only);
                sigaddset (&pipe_only, SIGPIPE);
                struct timespec zero = {0, 0};
                sigtimedwait (&pipe_only, NULL, &zero);
            }
            break;
        }
        run->in_sent += (size_t)put;
    }
    s_close (&run->in_fd);
}

/*  The command ended (it is a zombie): kills what it left in its group,
    and gives the pipes DP_EXEC_DRAIN_MS to reach their end. */
static void
s_on_end (dp_exec_run_t *run, int64_t now)
{
    run->ended = true;
    run->run_us = s_now_us (CLOCK_MONOTONIC) - run->started_us;
    kill (-run->pid, SIGKILL);
    s_close (&run->in_fd);
    s_close (&run->pidfd);
    run->drain_until = now + DP_EXEC_DRAIN_MS;
}

/*  Sees whether the command ended, without reaping it. */
static void
s_check_end (dp_exec_run_t *run, int64_t now)
{
    siginfo_t info;
    memset (&info, 0, sizeof info);
    int rc = waitid (P_PID, (id_t)run->pid, &info, WEXITED | WNOHANG | WNOWAIT);
    if ((rc == 0 && info.si_pid == run->pid) || (rc < 0 && errno == ECHILD))
        s_on_end (run, now);
}

/*  Enforces the time limit: SIGTERM to the group at its end, SIGKILL
    DP_EXEC_TERM_GRACE_MS later. */
static void
s_limit (dp_exec_run_t *run, int64_t now)
{
    if (run->ended)
        return;
    if (run->timeout_ms > 0 && !run->timed_out && now >= run->end_at) {
        run->timed_out = true;
        kill (-run->pid, SIGTERM);
        kill (-run->pid, SIGCONT);
        run->kill_at = now + DP_EXEC_TERM_GRACE_MS;
    } else if (run->kill_at && now >= run->kill_at) {
        kill (-run->pid, SIGKILL);
        run->kill_at = 0;
    }
}

/*  How long the loop may sleep: until the next step of the time limit, or
    of the drain, or a slice without a pidfd; -1 for no limit. */
static int
s_wait_ms (const dp_exec_run_t *run, int64_t now)
{
    int64_t next = -1;
    if (run->ended)
        next = run->drain_until;
    else if (run->timed_out)
        next = run->kill_at ? run->kill_at : -1;
    else if (run->timeout_ms > 0)
        next = run->end_at;
    if (!run->ended && run->pidfd < 0 && (next < 0 || next > now + DP_EXEC_SLICE_MS))
        next = now + DP_EXEC_SLICE_MS;
    if (next < 0)
        return -1;
    return next <= now ? 0 : (int)(next - now);
}

/*  Waits on the pipes and the command's end once, then acts on what came. */
static void
s_step (dp_exec_run_t *run)
{
    struct pollfd fds[4];
    int fd_of[4] = {run->out.fd, run->err.fd, run->in_fd, run->ended ? -1 : run->pidfd};
    short events[4] = {POLLIN, POLLIN, POLLOUT, POLLIN};
    for (int i = 0; i < 4; i++)
        fds[i] = (struct pollfd){.fd = fd_of[i], .events = events[i]};
    int n = poll (fds, 4, s_wait_ms (run, dp_now_ms ()));
    if (n > 0 && fds[0].revents)
        s_read (&run->out, run->max_output);
    if (n > 0 && fds[1].revents)
        s_read (&run->err, run->max_output);
    if (n > 0 && fds[2].revents)
        s_write (run);
    int64_t now = dp_now_ms ();
    if (!run->ended && (run->pidfd < 0 || (n > 0 && fds[3].revents)))
        s_check_end (run, now);
    s_limit (run, now);
}

/*  Reaps the command (after its group was killed, so that nothing of it
    is left) and reads how it ended. */
static void
s_reap (dp_exec_run_t *run)
{
    if (!run->ended)
        s_on_end (run, dp_now_ms ());
    int status = 0;
    pid_t rc;
    while ((rc = waitpid (run->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    atomic_store (&s_running, 0);
    if (rc == run->pid && WIFEXITED (status))
        run->exit_code = WEXITSTATUS (status);
    else if (rc == run->pid && WIFSIGNALED (status))
        run->signal = WTERMSIG (status);
}

/*  Runs the started command to its end, with SIGPIPE blocked on this
    thread, so that a command that does not read its stdin cannot kill
    the worker. */
static void
s_supervise (dp_exec_run_t *run)
{
    sigset_t pipe_only, saved;
    sigemptyset (&pipe_only);
    sigaddset (&pipe_only, SIGPIPE);
    pthread_sigmask (SIG_BLOCK, &pipe_only, &saved);
    atomic_store (&s_running, (int)run->pid);
    run->pidfd = (int)syscall (SYS_pidfd_open, run->pid, 0);
    run->end_at = run->started_ms + run->timeout_ms;
    if (run->in_fd >= 0)
        s_write (run);
    for (;;) {
        bool open = run->out.fd >= 0 || run->err.fd >= 0;
        if (run->ended && (!open || dp_now_ms () >= run->drain_until))
            break;
        s_step (run);
    }
    s_close (&run->out.fd);
    s_close (&run->err.fd);
    s_reap (run);
    pthread_sigmask (SIG_SETMASK, &saved, NULL);
}

int
dp_exec_run (dp_exec_run_t *run)
{
    if (s_start (run))
        return -1;
    if (run->pid > 0)
        s_supervise (run);
    return 0;
}

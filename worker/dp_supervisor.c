/*  dp_supervisor.c - keeps N worker processes running.

    One poll loop over a signalfd (SIGCHLD, SIGINT, SIGTERM). Its only timers
    are the restart delays of dead workers and, when it has a parent to
    watch, a check every DP_SUPERVISOR_PARENT_MS; with neither it sleeps
    until a signal comes.
*/
#define _GNU_SOURCE
#include "dp_supervisor.h"

#include "dp_proto.h"
#include "dp_util.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;          /* 0: not running */
    int64_t started;    /* ms */
    int64_t restart_at; /* ms: when to start it again, if not running */
} s_child_t;

typedef struct {
    const dp_supervisor_config_t *config;
    s_child_t *children;
    int procs;
    int sigfd;
    int fast_deaths; /* consecutive deaths soon after start */
    bool stop;
    bool refused; /* a worker gave up: its handshakes with the broker kept failing */
    int code;     /* leave_with_broker: why it stopped (a dpool_error_t), or 0 */
} s_supervisor_t;

/*  In a new worker process: forget the parent's signal handlers and mask,
    run the worker, and leave without running anything of the parent's. */
static void
s_child_main (const dp_supervisor_config_t *config)
{
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction action;
        if (sigaction (sig, NULL, &action) == 0 && action.sa_handler != SIG_DFL &&
            action.sa_handler != SIG_IGN) {
            action.sa_handler = SIG_DFL;
            action.sa_flags = 0;
            sigaction (sig, &action, NULL);
        }
    }
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    signal (SIGCHLD, SIG_DFL);
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGINT);
    sigaddset (&mask, SIGTERM);
    sigprocmask (SIG_SETMASK, &mask, NULL);
    int rc = dp_worker_run (&config->worker);
    if (rc == DP_WORKER_RETIRED)
        _exit (DP_WORKER_EXIT_RETIRED);
    if (rc == DP_WORKER_INIT_FAILED)
        _exit (DP_WORKER_EXIT_INIT);
    if (rc == DP_WORKER_REFUSED)
        _exit (DP_WORKER_EXIT_REFUSED);
    if (rc == DP_WORKER_BROKER_GONE)
        _exit (DP_WORKER_EXIT_GONE);
    if (rc < 0 && dpool_errno () == DPOOL_EUNREACHABLE)
        _exit (DP_WORKER_EXIT_UNREACHABLE);
    _exit (rc == 0 ? 0 : 1);
}

/*  In a new worker process, first of all: make it die with the supervisor,
    so that a supervisor killed outright (SIGKILL, the OOM killer) leaves no
    worker serving on unsupervised, and a new supervisor started in its place
    runs its own --procs processes, not those plus the orphans. The
    supervisor is single-threaded, so its one thread, whose end the kernel
    watches (PR_SET_PDEATHSIG), lives as long as it does.

    Two steps. Until the worker engine runs its I/O thread, the signal is
    SIGKILL: an initializer may run for a long time with SIGTERM blocked
    (dp_worker_run reads it from a signalfd later), and only SIGKILL is sure
    to end it. Then dp_worker_run switches to SIGTERM (parent_death_signal):
    the worker says BYE, so that the broker takes back its jobs at once
    instead of after the heartbeat expiry, and a worker busy with a long
    task still ends within DP_WORKER_BYE_WAIT_MS (it abandons the task, as
    on any SIGTERM). A supervisor that died before the prctl is seen by the
    parent that getppid then names: this process leaves at once. */
static void
s_child_die_with (pid_t supervisor)
{
    if (prctl (PR_SET_PDEATHSIG, SIGKILL) != 0) {
        dp_error ("cannot tie a worker process to its supervisor: %s", strerror (errno));
        _exit (1);
    }
    if (getppid () != supervisor)
        _exit (1);
}

static void
s_spawn (s_supervisor_t *self, s_child_t *child)
{
    fflush (NULL);
    pid_t supervisor = getpid ();
    pid_t pid = fork ();
    if (pid == 0) {
        s_child_die_with (supervisor);
        close (self->sigfd);
        /*  A name given for the worker is shared by its processes: each adds
            its slot, so that status tells them apart. */
        dp_worker_config_t worker = self->config->worker;
        char name[DP_MAX_NAME + 1];
        if (worker.name && self->procs > 1) {
            snprintf (name, sizeof name, "%.*s/%d", DP_MAX_NAME - 12, worker.name,
                      (int)(child - self->children));
            worker.name = name;
        }
        worker.parent_death_signal = SIGTERM;
        dp_supervisor_config_t config = *self->config;
        config.worker = worker;
        s_child_main (&config);
    }
    int64_t now = dp_now_ms ();
    if (pid < 0) {
        dp_error ("cannot start a worker process: %s", strerror (errno));
        child->restart_at = now + DP_SUPERVISOR_BACKOFF_MAX_MS;
        return;
    }
    child->pid = pid;
    child->started = now;
    dp_debug ("started worker process %d", (int)pid);
}

/*  leave_with_broker: true if the worker ended because its broker left or
    never answered, which stops the supervisor and the others too. */
static bool
s_left_with_broker (s_supervisor_t *self, s_child_t *child, int status)
{
    if (!self->config->worker.leave_with_broker || !WIFEXITED (status))
        return false;
    int code = WEXITSTATUS (status);
    if (code != DP_WORKER_EXIT_GONE && code != DP_WORKER_EXIT_UNREACHABLE)
        return false;
    child->pid = 0;
    self->stop = true;
    if (code == DP_WORKER_EXIT_UNREACHABLE && !self->code)
        self->code = DPOOL_EUNREACHABLE;
    return true;
}

/*  Logs a worker's death and schedules its restart. */
static void
s_on_death (s_supervisor_t *self, s_child_t *child, int status)
{
    int64_t now = dp_now_ms ();
    bool deadline = WIFEXITED (status) && WEXITSTATUS (status) == DP_WORKER_EXIT_DEADLINE;
    bool retired = WIFEXITED (status) && WEXITSTATUS (status) == DP_WORKER_EXIT_RETIRED;
    bool init = WIFEXITED (status) && WEXITSTATUS (status) == DP_WORKER_EXIT_INIT;
    if (WIFEXITED (status) && WEXITSTATUS (status) == DP_WORKER_EXIT_REFUSED) {
        /*  The others fail the same way: a fresh process would only wait
            as long again. */
        dp_error ("worker process %d gave up: its handshakes with the broker kept failing "
                  "(see above); stopping",
                  (int)child->pid);
        child->pid = 0;
        self->refused = true;
        self->stop = true;
        return;
    }
    if (s_left_with_broker (self, child, status))
        return;
    if (retired) {
        /*  Replaced at once, and not a death: it did what it was told. */
        dp_info ("worker process %d retired after %d tasks; starting a fresh one", (int)child->pid,
                 self->config->worker.max_tasks);
        self->fast_deaths = 0;
        child->pid = 0;
        child->restart_at = now;
        return;
    }
    if (init)
        dp_warn ("worker process %d exited: its initializer failed (see above)", (int)child->pid);
    else if (deadline)
        dp_info ("worker process %d ended after a task ran past its timeout", (int)child->pid);
    else if (WIFEXITED (status))
        dp_log (WEXITSTATUS (status) == 0 ? DP_LOG_INFO : DP_LOG_WARN,
                "worker process %d exited with status %d", (int)child->pid, WEXITSTATUS (status));
    else if (WIFSIGNALED (status))
        dp_warn ("worker process %d was killed by signal %d (%s)", (int)child->pid,
                 WTERMSIG (status), strsignal (WTERMSIG (status)));
    /*  A failed initializer counts however long it took, so that restarts
        slow down: it would only fail again. */
    if (init || (!deadline && now - child->started < DP_SUPERVISOR_FAST_DEATH_MS))
        self->fast_deaths++;
    else
        self->fast_deaths = 0;
    int64_t delay = 0;
    if (self->fast_deaths > 1) {
        delay = DP_SUPERVISOR_BACKOFF_MS;
        for (int i = 2; i < self->fast_deaths && delay < DP_SUPERVISOR_BACKOFF_MAX_MS; i++)
            delay *= 2;
        if (delay > DP_SUPERVISOR_BACKOFF_MAX_MS)
            delay = DP_SUPERVISOR_BACKOFF_MAX_MS;
        dp_warn ("worker processes keep dying at start; next restart in %lld ms",
                 (long long)delay);
    }
    child->pid = 0;
    child->restart_at = now + delay;
}

/*  Reaps every worker that ended; returns how many are still running. */
static int
s_reap (s_supervisor_t *self, bool restart)
{
    int running = 0;
    for (int i = 0; i < self->procs; i++) {
        s_child_t *child = &self->children[i];
        if (child->pid <= 0)
            continue;
        int status;
        pid_t rc = waitpid (child->pid, &status, WNOHANG);
        if (rc == child->pid || (rc < 0 && errno == ECHILD)) {
            if (restart)
                s_on_death (self, child, rc < 0 ? 0 : status);
            else
                child->pid = 0;
        } else
            running++;
    }
    return running;
}

/*  Reads the signals that came; notes a request to stop. */
static void
s_read_signals (s_supervisor_t *self)
{
    struct signalfd_siginfo info;
    while (read (self->sigfd, &info, sizeof info) == (ssize_t)sizeof info)
        if (info.ssi_signo == SIGINT || info.ssi_signo == SIGTERM) {
            if (!self->stop) {
                dp_info ("signal %d: stopping the worker processes", (int)info.ssi_signo);
                if (self->config->worker.notify_service)
                    dp_service_notify ("STOPPING=1");
            }
            self->stop = true;
        }
}

/*  Milliseconds until the next timer, or -1 for none. */
static int
s_timeout (s_supervisor_t *self)
{
    int64_t now = dp_now_ms ();
    int64_t timeout = self->config->parent ? DP_SUPERVISOR_PARENT_MS : -1;
    for (int i = 0; i < self->procs; i++)
        if (self->children[i].pid == 0) {
            int64_t left = self->children[i].restart_at - now;
            if (left < 0)
                left = 0;
            if (timeout < 0 || left < timeout)
                timeout = left;
        }
    return timeout > INT_MAX ? INT_MAX : (int)timeout;
}

/*  SIGTERM to every worker, SIGKILL to those still there after the grace
    period, and every one reaped. */
static void
s_stop_children (s_supervisor_t *self)
{
    for (int i = 0; i < self->procs; i++)
        if (self->children[i].pid > 0)
            kill (self->children[i].pid, SIGTERM);
    int64_t until = dp_now_ms () + DP_SUPERVISOR_GRACE_MS;
    while (s_reap (self, false) > 0) {
        int64_t left = until - dp_now_ms ();
        if (left <= 0)
            break;
        struct pollfd item = {self->sigfd, POLLIN, 0};
        if (poll (&item, 1, (int)left) > 0)
            s_read_signals (self);
    }
    for (int i = 0; i < self->procs; i++)
        if (self->children[i].pid > 0) {
            dp_warn ("worker process %d did not stop in %d ms; killing it",
                     (int)self->children[i].pid, DP_SUPERVISOR_GRACE_MS);
            kill (self->children[i].pid, SIGKILL);
            waitpid (self->children[i].pid, NULL, 0);
            self->children[i].pid = 0;
        }
}

int
dp_supervisor_run (const dp_supervisor_config_t *config)
{
    assert (config);
    if (!config->worker.endpoint || !*config->worker.endpoint)
        return dp_fail (DPOOL_EINVAL);
    s_supervisor_t self;
    memset (&self, 0, sizeof self);
    self.config = config;
    self.procs = config->procs > 0 ? config->procs : dp_supervisor_default_procs ();
    self.children = (s_child_t *)calloc ((size_t)self.procs, sizeof *self.children);
    if (!self.children)
        return dp_fail (DPOOL_ENOMEM);

    /*  A program that ignores SIGCHLD (or asks for SA_NOCLDWAIT) would have
        the workers reaped behind our back, and no SIGCHLD to read. */
    struct sigaction default_action, saved_action;
    memset (&default_action, 0, sizeof default_action);
    default_action.sa_handler = SIG_DFL;
    sigemptyset (&default_action.sa_mask);
    sigaction (SIGCHLD, &default_action, &saved_action);
    sigset_t signals, saved_mask;
    sigemptyset (&signals);
    sigaddset (&signals, SIGCHLD);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    sigprocmask (SIG_BLOCK, &signals, &saved_mask);
    self.sigfd = signalfd (-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self.sigfd < 0) {
        dp_error ("signalfd: %s", strerror (errno));
        sigprocmask (SIG_SETMASK, &saved_mask, NULL);
        sigaction (SIGCHLD, &saved_action, NULL);
        free (self.children);
        return dp_fail (DPOOL_ESYS);
    }
    dp_info ("supervising %d worker processes for %s", self.procs, config->worker.endpoint);

    while (!self.stop) {
        int64_t now = dp_now_ms ();
        for (int i = 0; i < self.procs; i++)
            if (self.children[i].pid == 0 && now >= self.children[i].restart_at)
                s_spawn (&self, &self.children[i]);
        struct pollfd item = {self.sigfd, POLLIN, 0};
        int rc = poll (&item, 1, s_timeout (&self));
        if (rc < 0 && errno != EINTR) {
            dp_error ("poll: %s", strerror (errno));
            break;
        }
        if (rc > 0)
            s_read_signals (&self);
        s_reap (&self, !self.stop);
        if (config->parent && getppid () != config->parent) {
            dp_info ("parent process %d is gone: stopping", (int)config->parent);
            self.stop = true;
        }
    }
    s_stop_children (&self);
    close (self.sigfd);
    sigprocmask (SIG_SETMASK, &saved_mask, NULL);
    sigaction (SIGCHLD, &saved_action, NULL);
    free (self.children);
    if (self.refused)
        return DP_SUPERVISOR_REFUSED;
    return self.code ? dp_fail (self.code) : 0;
}

/*  A whole count of CPUs from a launcher's variable, or 0. */
static int
s_cpus_from (const char *variable)
{
    long cpus;
    const char *text = getenv (variable);
    if (!text || dp_parse_int (text, 1, DP_SUPERVISOR_MAX_PROCS, &cpus))
        return 0;
    return (int)cpus;
}

/*  The tasks of this Slurm step on this node, from a tasks-per-node list
    such as "2(x3),1" (one count per node, "(xN)" repeating it) and this
    node's index; 0 if unknown or malformed. */
static int
s_slurm_tasks_here (const char *list, long node)
{
    const char *at = list;
    while (at && *at) {
        char *end;
        long tasks = strtol (at, &end, 10);
        long repeat = 1;
        if (end == at || tasks < 1)
            return 0;
        if (strncmp (end, "(x", 2) == 0) {
            const char *from = end + 2;
            repeat = strtol (from, &end, 10);
            if (end == from || repeat < 1 || *end != ')')
                return 0;
            end++;
        }
        if (node < repeat)
            return tasks > DP_SUPERVISOR_MAX_PROCS ? 0 : (int)tasks;
        node -= repeat;
        if (*end != ',')
            return 0;
        at = end + 1;
    }
    return 0;
}

/*  SLURM_CPUS_ON_NODE is the whole allocation's on this node, shared by
    every task of the step there (`srun -n 2` on a node of 2 CPUs gives
    both tasks 2): this task's share of it, or 0. */
static int
s_slurm_cpus_of_task (void)
{
    int cpus = s_cpus_from ("SLURM_CPUS_ON_NODE");
    if (!cpus)
        return 0;
    long node = 0;
    const char *id = getenv ("SLURM_NODEID");
    if (id && dp_parse_int (id, 0, 1000000, &node))
        node = 0;
    const char *list = getenv ("SLURM_STEP_TASKS_PER_NODE");
    if (!list)
        list = getenv ("SLURM_TASKS_PER_NODE");
    int tasks = list ? s_slurm_tasks_here (list, node) : 0;
    if (tasks > 1)
        cpus = cpus / tasks > 0 ? cpus / tasks : 1;
    return cpus;
}

int
dp_supervisor_default_procs (void)
{
    int cpus = s_cpus_from ("SLURM_CPUS_PER_TASK");
    if (!cpus)
        cpus = s_slurm_cpus_of_task ();
    cpu_set_t set;
    if (!cpus && sched_getaffinity (0, sizeof set, &set) == 0)
        cpus = CPU_COUNT (&set);
    return cpus > 0 ? cpus : dp_cpu_count ();
}

int
dpool_worker_serve (const char *endpoint, int procs)
{
    dpool_serve_config_t config = {.endpoint = endpoint, .procs = procs};
    return dpool_worker_serve_config (&config);
}

int
dpool_worker_serve_config (const dpool_serve_config_t *serve)
{
    if (!serve || !serve->endpoint || !*serve->endpoint || serve->procs < 0 ||
        serve->max_tasks < 0 || (serve->initargs_size && !serve->initargs))
        return dp_fail (DPOOL_EINVAL);
    dp_supervisor_config_t config;
    memset (&config, 0, sizeof config);
    dp_worker_config_init (&config.worker);
    config.worker.endpoint = serve->endpoint;
    config.worker.initializer = serve->initializer;
    config.worker.initargs = serve->initargs;
    config.worker.initargs_size = serve->initargs_size;
    config.worker.max_tasks = serve->max_tasks;
    config.procs = serve->procs;
    char err[256];
    if (dp_curve_client_env (&config.worker.curve, serve->curve_server, serve->curve_secret, err,
                             sizeof err)) {
        dp_error ("%s", err);
        return dp_fail (DPOOL_EINVAL);
    }
    int rc = dp_supervisor_run (&config);
    explicit_bzero (&config.worker.curve, sizeof config.worker.curve);
    if (rc == DP_SUPERVISOR_REFUSED)
        return dp_fail (DPOOL_EUNREACHABLE);
    return rc;
}

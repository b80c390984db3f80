/*  dp_embedded.c - the broker and worker processes of an embedded pool.

    Threads: the thread that makes the pool makes the directory and forks
    the supervisor; the pool's actor thread makes the broker, runs it in
    its loop and destroys it (the extension's start, fds, wait_ms, work and
    stop), so that the broker's sockets have that one owner for their whole
    life; the thread that terminates the pool stops the workers, and the
    one that destroys it frees the rest. No lock: these never overlap.
*/
#include "dp_embedded.h"

#include "dp_broker.h"
#include "dp_supervisor.h"
#include "dp_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*  How long stopping the workers may take beyond the supervisor's own
    grace period before the supervisor is killed. */
#define STOP_MARGIN_MS 2000

/*  How often a stopping supervisor is looked at. */
#define STOP_POLL_MS 5

/*  Longest directory prefix used for the ipc socket: sun_path holds 108
    bytes, and "/dpool-XXXXXX/broker.ipc" needs 25 of them. */
#define MAX_TMP_PREFIX 80

/*  With CURVE: the workers' public key, in <dir>/clients. */
#define CLIENT_KEY_FILE "workers.key"

struct _dp_embedded_t {
    char dir[PATH_MAX];            /* the private directory */
    char ipc[PATH_MAX + 32];       /* ipc://<dir>/broker.ipc */
    char inproc[64];               /* inproc://dpool-<pid>-<n> */
    char *bind;                    /* one more endpoint for outside workers, or NULL */
    char *bound;                   /* bind as bound ("*" port resolved); set by start */
    char clients[PATH_MAX + 16];   /* <dir>/clients, the key admitted; "" without CURVE */
    char secret[DP_CURVE_KEY + 1]; /* the broker's CURVE secret key; "" without */
    pid_t supervisor;              /* 0 once reaped */
    dp_broker_t *broker;           /* the actor thread's, from start to stop */
    void (*on_worker) (void *arg, const char *name); /* dp_embedded_on_worker's */
    void *on_worker_arg;
};

_Static_assert(DP_BROKER_MAX_FDS <= DP_CLIENT_EXT_FDS, "the broker's fds fit the actor's poll");

/*  The supervisor process: runs the workers until told to stop, and never
    returns into the program. */
static void
s_run_supervisor (const char *endpoint, int procs, pid_t parent,
                  const dp_embedded_workers_t *workers)
{
    /*  A program that ignores SIGCHLD would have its workers reaped behind
        the supervisor's back. */
    signal (SIGCHLD, SIG_DFL);
    dp_supervisor_config_t config;
    memset (&config, 0, sizeof config);
    dp_worker_config_init (&config.worker);
    config.worker.endpoint = endpoint;
    if (workers) {
        config.worker.initializer = workers->initializer;
        config.worker.initargs = workers->initargs;
        config.worker.initargs_size = workers->initargs_size;
        config.worker.max_tasks = workers->max_tasks;
        if (workers->curve)
            config.worker.curve = *workers->curve;
    }
    config.procs = procs;
    /*  The supervisor watches the program by polling getppid (every
        DP_SUPERVISOR_PARENT_MS), not with PR_SET_PDEATHSIG: that signal
        comes when the thread that forked it ends, and a program may make
        its pool on a thread that ends long before the pool does. Its
        worker processes die with it (dp_supervisor.c), so a program
        killed outright takes them all within that period. */
    config.parent = parent;
    int rc = dp_supervisor_run (&config);
    _exit (rc == 0 ? 0 : 1);
}

/*  Removes the directory and what this file put there. */
static void
s_remove_dir (dp_embedded_t *self)
{
    char path[PATH_MAX + 48];
    if (self->clients[0]) {
        snprintf (path, sizeof path, "%s/" CLIENT_KEY_FILE, self->clients);
        unlink (path);
        rmdir (self->clients);
    }
    /*  ZeroMQ unlinks the socket file itself, but on its I/O thread,
        maybe after the rmdir below: unlink it first. */
    snprintf (path, sizeof path, "%s/broker.ipc", self->dir);
    unlink (path);
    if (rmdir (self->dir))
        dp_warn ("client: cannot remove %s: %s", self->dir, strerror (errno));
}

/*  With CURVE: keeps the broker's secret key, and writes the workers'
    public key where the broker's ZAP handler reads the keys it admits.
    Returns 0, or -1 after logging. */
static int
s_curve_keep (dp_embedded_t *self, const dp_embedded_workers_t *workers)
{
    if (!workers || !workers->curve)
        return 0;
    if (!dp_curve_is_key (workers->broker_secret)) {
        dp_error ("client: the embedded broker has no CURVE secret key");
        return -1;
    }
    snprintf (self->clients, sizeof self->clients, "%s/clients", self->dir);
    char path[PATH_MAX + 48];
    snprintf (path, sizeof path, "%s/" CLIENT_KEY_FILE, self->clients);
    char text[256];
    int len =
        snprintf (text, sizeof text, "curve\n    public-key = \"%s\"\n", workers->curve->public_);
    int fd = -1;
    bool ok = mkdir (self->clients, 0700) == 0 &&
              (fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0 &&
              write (fd, text, (size_t)len) == len;
    if (fd >= 0 && close (fd) != 0)
        ok = false;
    if (!ok) {
        dp_error ("client: cannot write %s: %s", path, strerror (errno));
        return -1;
    }
    memcpy (self->secret, workers->broker_secret, DP_CURVE_KEY + 1);
    return 0;
}

/*  Undoes dp_embedded_new before its fork; returns NULL with code set. */
static dp_embedded_t *
s_new_failed (dp_embedded_t *self, int code)
{
    s_remove_dir (self);
    explicit_bzero (self->secret, sizeof self->secret);
    free (self->bind);
    free (self);
    return dp_fail_null (code);
}

dp_embedded_t *
dp_embedded_new (int procs, const char *bind, const dp_embedded_workers_t *workers)
{
    static atomic_uint serial;
    assert (procs >= 0);
    dp_embedded_t *self = (dp_embedded_t *)calloc (1, sizeof *self);
    if (!self)
        return dp_fail_null (DPOOL_ENOMEM);
    const char *base = getenv ("TMPDIR");
    if (!base || !*base || strlen (base) > MAX_TMP_PREFIX)
        base = "/tmp";
    snprintf (self->dir, sizeof self->dir, "%s/dpool-XXXXXX", base);
    if (!mkdtemp (self->dir)) {
        dp_error ("client: cannot make a directory in %s: %s", base, strerror (errno));
        free (self);
        return dp_fail_null (DPOOL_ESYS);
    }
    snprintf (self->ipc, sizeof self->ipc, "ipc://%s/broker.ipc", self->dir);
    snprintf (self->inproc, sizeof self->inproc, "inproc://dpool-%ld-%u", (long)getpid (),
              atomic_fetch_add (&serial, 1));
    if (bind && !(self->bind = strdup (bind)))
        return s_new_failed (self, DPOOL_ENOMEM);
    if (s_curve_keep (self, workers))
        return s_new_failed (self, DPOOL_ESYS);
    if (procs == 0)
        return self; /* a broker for outside workers only */

    /*  Fork first: this call has made no CZMQ or ZeroMQ state yet. */
    fflush (stdout);
    fflush (stderr);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0) {
        dp_error ("client: cannot fork the worker supervisor: %s", strerror (errno));
        return s_new_failed (self, DPOOL_ESYS);
    }
    if (pid == 0) {
        explicit_bzero (self->secret, sizeof self->secret); /* the broker's, not theirs */
        s_run_supervisor (self->ipc, procs, parent, workers);
    }
    self->supervisor = pid;
    return self;
}

/*  ---------------------------------------------------------------------------
    The extension the pool's actor runs (dp_client_ext_t).
*/

void
dp_embedded_on_worker (dp_embedded_t *self, void (*fn) (void *arg, const char *name), void *arg)
{
    self->on_worker = fn;
    self->on_worker_arg = arg;
}

/*  On the actor thread: makes the broker, bound to the ipc endpoint (the
    workers'), the inproc one (the pool's) and the bind asked for. */
static int
s_start (void *arg)
{
    dp_embedded_t *self = (dp_embedded_t *)arg;
    dp_broker_config_t config;
    dp_broker_config_init (&config);
    config.binds[0] = self->ipc;
    config.binds[1] = self->inproc;
    config.nbinds = 2;
    if (self->bind)
        config.binds[config.nbinds++] = self->bind;
    if (self->secret[0]) {
        config.curve_secret_key = self->secret;
        config.curve_clients = self->clients;
    }
    config.on_worker = self->on_worker;
    config.on_worker_arg = self->on_worker_arg;
    self->broker = dp_broker_new (&config);
    if (!self->broker) {
        dp_error ("client: the embedded broker could not bind %s",
                  self->bind ? self->bind : self->ipc);
        return self->bind ? DPOOL_EINVAL : DPOOL_ESYS;
    }
    if (self->bind) {
        /*  The bind is the last endpoint bound: the last line (each ends
            with a newline). */
        const char *all = dp_broker_endpoints (self->broker);
        size_t len = strlen (all);
        if (len && all[len - 1] == '\n')
            len--;
        size_t start = len;
        while (start > 0 && all[start - 1] != '\n')
            start--;
        self->bound = strndup (all + start, len - start);
        if (!self->bound)
            return DPOOL_ENOMEM;
    }
    return 0;
}

static int
s_fds (void *arg, struct pollfd *fds)
{
    return dp_broker_fds (((dp_embedded_t *)arg)->broker, fds);
}

static int
s_wait_ms (void *arg)
{
    return dp_broker_wait_ms (((dp_embedded_t *)arg)->broker);
}

static void
s_work (void *arg, const struct pollfd *fds, int nfds)
{
    dp_broker_work (((dp_embedded_t *)arg)->broker, fds, nfds);
}

/*  On the actor thread, after its last message: its BYE tells the workers
    not to wait for an answer to theirs when they are stopped. */
static void
s_stop (void *arg)
{
    dp_broker_destroy (&((dp_embedded_t *)arg)->broker);
}

static void
s_stop_workers (void *arg)
{
    dp_embedded_stop_workers ((dp_embedded_t *)arg);
}

static void
s_destroy (void *arg)
{
    dp_embedded_t *self = (dp_embedded_t *)arg;
    dp_embedded_destroy (&self);
}

dp_client_ext_t
dp_embedded_ext (dp_embedded_t *self)
{
    assert (self);
    return (dp_client_ext_t){self,   s_start, s_fds,          s_wait_ms,
                             s_work, s_stop,  s_stop_workers, s_destroy};
}

const char *
dp_embedded_endpoint (dp_embedded_t *self)
{
    assert (self);
    return self->inproc;
}

const char *
dp_embedded_bound (dp_embedded_t *self)
{
    assert (self);
    return self->bound;
}

static void
s_sleep_ms (int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep (&ts, NULL);
}

void
dp_embedded_stop_workers (dp_embedded_t *self)
{
    assert (self);
    if (self->supervisor <= 0)
        return;
    pid_t pid = self->supervisor;
    self->supervisor = 0;
    kill (pid, SIGTERM);
    int64_t deadline = dp_now_ms () + DP_SUPERVISOR_GRACE_MS + STOP_MARGIN_MS;
    for (;;) {
        pid_t rc = waitpid (pid, NULL, WNOHANG);
        if (rc == pid || (rc < 0 && errno != EINTR))
            return; /* reaped, or reaped by someone else (ECHILD) */
        if (dp_now_ms () >= deadline)
            break;
        s_sleep_ms (STOP_POLL_MS);
    }
    dp_warn ("client: worker supervisor %ld did not stop; killing it", (long)pid);
    kill (pid, SIGKILL);
    while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

void
dp_embedded_destroy (dp_embedded_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_embedded_t *self = *self_p;
        /*  The actor destroyed the broker when it ended (s_stop). */
        assert (!self->broker);
        dp_embedded_stop_workers (self);
        s_remove_dir (self);
        explicit_bzero (self->secret, sizeof self->secret);
        free (self->bind);
        free (self->bound);
        free (self);
        *self_p = NULL;
    }
}

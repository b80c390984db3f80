/*  dp_spmd.c - dpool_pool_spmd: one program started N times is one pool.

    Each rank reads its settings (s_job_init), learns its rank (the
    bootstrap's init, or the launcher's variables), then rank 0 makes its
    pool and hands out its card (s_root), and every other rank reads the
    card and serves (s_serve). Runs on the thread that calls it.
*/
#include "dp_spmd.h"

#include "dp_embedded.h"
#include "dp_launcher.h"
#include "dp_pool.h"
#include "dp_rendezvous.h"
#include "dp_supervisor.h"
#include "dp_util.h"
#include "dpool.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/*  DPOOL_SPMD_CURVE unset: CURVE when the card can carry its keys. */
#define CURVE_AUTO 2

/*  Exit status of a rank's supervisor that reached no broker. */
#define EXIT_UNREACHABLE 2

/*  A rank's workers are named HOST:rankN; rank 0 counts the ranks joined
    by it. */
#define RANK_TAG ":rank"

/*  One rank's view of the job. */
typedef struct {
    const dpool_config_t *config;
    const dpool_spmd_bootstrap_t *bootstrap; /* or NULL */
    dp_launcher_t launcher;                  /* rank, size, job */
    const char *rendezvous;                  /* or NULL */
    const char *interface;                   /* or NULL */
    int procs;
    int root_procs;
    int timeout_ms;
    bool curve;       /* the job's connections use CURVE */
    bool curve_asked; /* ... because the config or DPOOL_SPMD_CURVE said so */
} s_job_t;

/*  value if set, else the variable name if set (within min .. max), else
    fallback. Returns -1 after logging a bad variable, else 0. */
static int
s_setting (int value, const char *name, int min, int max, int fallback, int *out)
{
    const char *text = getenv (name);
    long parsed;
    *out = value ? value : fallback;
    if (value || !text || !*text)
        return 0;
    if (dp_parse_int (text, min, max, &parsed)) {
        dp_error ("spmd: invalid %s '%s' (expected %d to %d)", name, text, min, max);
        return -1;
    }
    *out = (int)parsed;
    return 0;
}

/*  Whether the job uses CURVE: as config's spmd.curve says (1 on, -1
    off), else DPOOL_SPMD_CURVE (1, 0), else when rank 0's card travels
    through a channel that can carry keys (a bootstrap, a rendezvous file;
    not a fixed endpoint). Returns 0, or -1 after logging. */
static int
s_job_curve (s_job_t *job, int value)
{
    const char *path;
    bool fixed =
        !job->bootstrap && dp_rendezvous_kind (job->rendezvous, &path) == DP_RENDEZVOUS_TCP;
    int asked;
    if (value < -1 || value > 1 || s_setting (value, "DPOOL_SPMD_CURVE", 0, 1, CURVE_AUTO, &asked))
        return -1;
    job->curve_asked = asked == 1;
    job->curve = asked == CURVE_AUTO ? !fixed : asked == 1;
    if (job->curve && fixed) {
        dp_error ("spmd: CURVE needs a channel for the job's keys: a bootstrap such as "
                  "dpool_spmd_mpi () or a rendezvous file:PATH; a fixed endpoint (%s) has none",
                  job->rendezvous);
        return -1;
    }
    return 0;
}

/*  Reads config and the DPOOL_SPMD_* variables. Returns 0, or -1 with
    DPOOL_EINVAL. */
static int
s_job_init (s_job_t *job, const dpool_config_t *config)
{
    memset (job, 0, sizeof *job);
    job->config = config;
    job->bootstrap = config->spmd.bootstrap;
    job->rendezvous = config->spmd.rendezvous;
    if (!job->rendezvous)
        job->rendezvous = getenv ("DPOOL_SPMD_RENDEZVOUS");
    job->interface = config->spmd.interface;
    if (!job->interface)
        job->interface = getenv ("DPOOL_SPMD_INTERFACE");
    const char *path;
    if (job->rendezvous && *job->rendezvous &&
        dp_rendezvous_kind (job->rendezvous, &path) == DP_RENDEZVOUS_NONE) {
        dp_error ("spmd: invalid rendezvous '%s' (expected file:PATH or tcp://HOST:PORT)",
                  job->rendezvous);
        return dp_fail (DPOOL_EINVAL);
    }
    if (config->spmd.procs < 0 || config->spmd.root_procs < 0 || config->spmd.timeout_ms < 0 ||
        s_setting (config->spmd.procs, "DPOOL_SPMD_PROCS", 1, DP_SPMD_MAX_PROCS, DP_SPMD_PROCS,
                   &job->procs) ||
        s_setting (config->spmd.root_procs, "DPOOL_SPMD_ROOT_PROCS", 0, DP_SPMD_MAX_PROCS, 0,
                   &job->root_procs) ||
        s_setting (config->spmd.timeout_ms, "DPOOL_SPMD_TIMEOUT_MS", 1, 86400000,
                   DP_SPMD_TIMEOUT_MS, &job->timeout_ms) ||
        s_job_curve (job, config->spmd.curve))
        return dp_fail (DPOOL_EINVAL);
    return 0;
}

/*  This process's rank and the job's size, from the bootstrap or the
    launcher's variables. Returns 0 or -1. */
static int
s_job_ranks (s_job_t *job, int *argc, char ***argv)
{
    if (!job->bootstrap)
        return dp_launcher_detect (&job->launcher);
    dp_launcher_t *l = &job->launcher;
    l->name = job->bootstrap->name ? job->bootstrap->name : "bootstrap";
    if (job->bootstrap->init (argc, argv, &l->rank, &l->size) || l->size < 1 || l->rank < 0 ||
        l->rank >= l->size) {
        dp_error ("spmd: %s could not start or gave no rank", l->name);
        return dp_fail (DPOOL_ESYS);
    }
    return 0;
}

/*  ---------------------------------------------------------------------------
    The card through the bootstrap, with a bound on the wait: a rank whose
    rank 0 never shares would wait in the runtime without end.
*/

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    const s_job_t *job;
} s_watch_t;

static void *
s_watchdog (void *arg)
{
    s_watch_t *watch = (s_watch_t *)arg;
    struct timespec until;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_sec += watch->job->timeout_ms / 1000;
    until.tv_nsec += (long)(watch->job->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock (&watch->lock);
    int rc = 0;
    while (!watch->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait (&watch->cond, &watch->lock, &until);
    bool late = !watch->done;
    pthread_mutex_unlock (&watch->lock);
    if (late) {
        const dp_launcher_t *l = &watch->job->launcher;
        dp_error ("spmd: rank %d of %d: rank 0 did not send its endpoint through %s within %d ms",
                  l->rank, l->size, l->name, watch->job->timeout_ms);
        _exit (DP_SPMD_EXIT_FAILED);
    }
    return NULL;
}

/*  The bootstrap's share of card (DP_CARD_SIZE bytes), ending the process
    if it takes longer than the job's timeout. Returns 0 or -1. */
static int
s_share (const s_job_t *job, char *card)
{
    s_watch_t watch = {.done = false, .job = job};
    pthread_mutex_init (&watch.lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&watch.cond, &attr);
    pthread_condattr_destroy (&attr);
    pthread_t thread;
    bool watching = pthread_create (&thread, NULL, s_watchdog, &watch) == 0;
    int rc = job->bootstrap->share (card, DP_CARD_SIZE);
    pthread_mutex_lock (&watch.lock);
    watch.done = true;
    pthread_cond_signal (&watch.cond);
    pthread_mutex_unlock (&watch.lock);
    if (watching)
        pthread_join (thread, NULL);
    pthread_cond_destroy (&watch.cond);
    pthread_mutex_destroy (&watch.lock);
    card[DP_CARD_SIZE - 1] = 0;
    return rc;
}

static void
s_finalize (const s_job_t *job)
{
    if (job->bootstrap && job->bootstrap->finalize)
        job->bootstrap->finalize ();
}

/*  ---------------------------------------------------------------------------
    Ranks 1 .. N-1.
*/

/*  A tcp:// rendezvous as the other ranks reach it: as it is, or, for the
    host "*", on the first node of the Slurm step. Returns 0, or -1 after logging. */
static int
s_tcp_endpoint (const s_job_t *job, char *out, size_t size)
{
    const char *rendezvous = job->rendezvous;
    if (strncmp (rendezvous, "tcp://*:", 8) != 0) {
        snprintf (out, size, "%s", rendezvous);
        return 0;
    }
    char host[DP_CARD_FIELD / 2];
    if (dp_launcher_first_host (getenv ("SLURM_STEP_NODELIST"), host, sizeof host)) {
        dp_error ("spmd: rendezvous %s: rank 0's host is unknown (no SLURM_STEP_NODELIST); "
                  "name it: tcp://HOST:PORT",
                  rendezvous);
        return -1;
    }
    if (snprintf (out, size, "tcp://%s:%s", host, rendezvous + 8) >= (int)size) {
        dp_error ("spmd: rendezvous %s: the endpoint is too long", rendezvous);
        return -1;
    }
    return 0;
}

/*  The card's CURVE keys into curve (off without). Returns 0, or -1
    after logging. */
static int
s_card_curve (const s_job_t *job, const dp_card_t *card, dp_curve_t *curve)
{
    const dp_launcher_t *l = &job->launcher;
    char err[256];
    memset (curve, 0, sizeof *curve);
    if (!card->curve_secret[0]) {
        if (!job->curve_asked)
            return 0;
        dp_error ("spmd: rank %d of %d: CURVE is on here, but rank 0 runs without it", l->rank,
                  l->size);
        return -1;
    }
    if (dp_curve_from_keys (curve, card->curve_server, card->curve_secret, err, sizeof err)) {
        dp_error ("spmd: rank %d of %d: rank 0's card: %s", l->rank, l->size, err);
        return -1;
    }
    return 0;
}

/*  Where rank 0's broker is, into endpoint (DP_CARD_FIELD bytes), and the
    job's CURVE keys into curve. Returns 0, or -1 after logging what it
    waited for. */
static int
s_find_root (const s_job_t *job, char *endpoint, dp_curve_t *curve)
{
    memset (curve, 0, sizeof *curve);
    const dp_launcher_t *l = &job->launcher;
    dp_card_t card;
    const char *path = NULL;
    if (job->bootstrap) {
        char text[DP_CARD_SIZE] = "";
        int rc = s_share (job, text) || dp_card_parse (text, &card) ? -1 : 0;
        explicit_bzero (text, sizeof text);
        if (rc) {
            dp_error ("spmd: rank %d of %d: no card from rank 0 through %s", l->rank, l->size,
                      l->name);
            return -1;
        }
    } else {
        dp_rendezvous_kind_t kind = dp_rendezvous_kind (job->rendezvous, &path);
        if (kind == DP_RENDEZVOUS_TCP)
            return s_tcp_endpoint (job, endpoint, DP_CARD_FIELD);
        if (kind == DP_RENDEZVOUS_NONE) {
            dp_error ("spmd: rank %d of %d (%s): no way to find rank 0: set "
                      "DPOOL_SPMD_RENDEZVOUS (file:PATH or tcp://HOST:PORT), or use a "
                      "bootstrap such as dpool_spmd_mpi ()",
                      l->rank, l->size, l->name);
            return -1;
        }
        if (dp_rendezvous_wait (path, l->job, l->size, job->timeout_ms, &card)) {
            dp_error ("spmd: rank %d of %d: rank 0 wrote no endpoint to %s within %d ms", l->rank,
                      l->size, path, job->timeout_ms);
            return -1;
        }
    }
    if (card.error[0]) {
        dp_error ("spmd: rank %d of %d: rank 0 failed: %s", l->rank, l->size, card.error);
        return -1;
    }
    memcpy (endpoint, card.endpoint, DP_CARD_FIELD);
    int rc = s_card_curve (job, &card, curve);
    explicit_bzero (&card, sizeof card);
    return rc;
}

/*  In the forked supervisor: runs the rank's workers until their broker
    leaves. Never returns. */
static void
s_supervise (const s_job_t *job, const char *endpoint, const dp_curve_t *curve, pid_t rank_pid)
{
    const dpool_config_t *config = job->config;
    dp_supervisor_config_t sc;
    memset (&sc, 0, sizeof sc);
    dp_worker_config_init (&sc.worker);
    char name[DP_MAX_NAME + 1];
    snprintf (name, sizeof name, "%s" RANK_TAG "%d", dp_hostname (), job->launcher.rank);
    sc.worker.endpoint = endpoint;
    sc.worker.name = name;
    sc.worker.initializer = config->initializer;
    sc.worker.initargs = config->initargs;
    sc.worker.initargs_size = config->initargs_size;
    sc.worker.max_tasks = config->max_tasks;
    sc.worker.leave_with_broker = true;
    sc.worker.reach_ms = job->timeout_ms;
    sc.worker.curve = *curve;
    sc.procs = job->procs;
    sc.parent = rank_pid;
    int rc = dp_supervisor_run (&sc);
    if (rc && dpool_errno () == DPOOL_EUNREACHABLE)
        _exit (EXIT_UNREACHABLE);
    _exit (rc == 0 ? 0 : 1);
}

/*  Forks the supervisor and waits for it. Returns its exit status. */
static int
s_serve_workers (const s_job_t *job, const char *endpoint, const dp_curve_t *curve)
{
    fflush (NULL);
    pid_t rank_pid = getpid ();
    pid_t pid = fork ();
    if (pid < 0) {
        dp_error ("spmd: cannot fork the worker supervisor: %s", strerror (errno));
        return 1;
    }
    if (pid == 0)
        s_supervise (job, endpoint, curve, rank_pid);
    int status;
    while (waitpid (pid, &status, 0) < 0)
        if (errno != EINTR)
            return 1;
    return WIFEXITED (status) ? WEXITSTATUS (status) : 1;
}

/*  Rank r > 0: finds rank 0, serves it, and exits. */
static void __attribute__ ((noreturn)) s_serve (const s_job_t *job)
{
    const dp_launcher_t *l = &job->launcher;
    char endpoint[DP_CARD_FIELD];
    dp_curve_t curve;
    int rc = s_find_root (job, endpoint, &curve);
    if (rc == 0) {
        dp_info ("spmd: rank %d of %d serving rank 0 at %s%s", l->rank, l->size, endpoint,
                 curve.on ? " (CURVE)" : "");
        rc = s_serve_workers (job, endpoint, &curve);
        if (rc == EXIT_UNREACHABLE)
            dp_error ("spmd: rank %d of %d: rank 0's pool at %s did not answer within %d ms",
                      l->rank, l->size, endpoint, job->timeout_ms);
    }
    explicit_bzero (&curve, sizeof curve);
    s_finalize (job);
    exit (rc == 0 ? DP_SPMD_EXIT_DONE : DP_SPMD_EXIT_FAILED);
}

/*  ---------------------------------------------------------------------------
    Rank 0: the embedded pool's extension, wrapped so that its end also
    removes the rendezvous file and ends the bootstrap's runtime.
*/

typedef struct {
    dp_client_ext_t inner;
    const dpool_spmd_bootstrap_t *bootstrap; /* finalized at the end, or NULL */
    char *path;                              /* the rendezvous file, or NULL */
    /*  The other ranks: which have had a worker registered (a byte each),
        how many, and how long the pool's end waits for the rest. */
    int size;
    uint8_t *joined;
    int njoined;
    int timeout_ms;
} s_root_ext_t;

/*  The broker registered a worker: counts its rank, once. */
static void
s_on_worker (void *arg, const char *name)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    const char *tag = NULL;
    for (const char *at = strstr (name, RANK_TAG); at; at = strstr (at + 1, RANK_TAG))
        tag = at;
    if (!tag || !isdigit ((unsigned char)tag[strlen (RANK_TAG)]))
        return;
    char *end;
    long rank = strtol (tag + strlen (RANK_TAG), &end, 10);
    if (*end || rank < 1 || rank >= self->size || self->joined[rank])
        return;
    self->joined[rank] = 1;
    self->njoined++;
}

/*  Before the broker goes (the pool's end, by join or terminate alike): a
    rank whose workers have not registered yet would only find out that it
    is gone after the job's timeout, and fail; so the broker serves on
    until every rank has joined (each then gets the broker's goodbye), for
    the job's timeout at most. A short job's map may well end before the
    last ranks have started. */
static void
s_wait_for_ranks (s_root_ext_t *self)
{
    if (self->njoined >= self->size - 1)
        return;
    dp_info ("spmd: %d of the %d other ranks have not joined yet: waiting for them, %d ms at "
             "most",
             self->size - 1 - self->njoined, self->size - 1, self->timeout_ms);
    int64_t deadline = dp_now_ms () + self->timeout_ms;
    while (self->njoined < self->size - 1) {
        int64_t left = deadline - dp_now_ms ();
        if (left <= 0) {
            dp_warn ("spmd: %d of the %d other ranks never joined rank 0's pool",
                     self->size - 1 - self->njoined, self->size - 1);
            return;
        }
        struct pollfd fds[DP_CLIENT_EXT_FDS];
        int nfds = self->inner.fds (self->inner.self, fds);
        int wait = self->inner.wait_ms (self->inner.self);
        if (wait < 0 || wait > left)
            wait = (int)left;
        if (poll (fds, (nfds_t)nfds, wait) < 0 && errno != EINTR)
            return;
        self->inner.work (self->inner.self, fds, nfds);
    }
}

static int
s_ext_start (void *arg)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    return self->inner.start (self->inner.self);
}

static int
s_ext_fds (void *arg, struct pollfd *fds)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    return self->inner.fds (self->inner.self, fds);
}

static int
s_ext_wait_ms (void *arg)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    return self->inner.wait_ms (self->inner.self);
}

static void
s_ext_work (void *arg, const struct pollfd *fds, int nfds)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    self->inner.work (self->inner.self, fds, nfds);
}

static void
s_ext_stop (void *arg)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    s_wait_for_ranks (self);
    self->inner.stop (self->inner.self);
}

static void
s_ext_stop_workers (void *arg)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    self->inner.stop_workers (self->inner.self);
}

static void
s_ext_free (s_root_ext_t *self)
{
    if (self) {
        free (self->path);
        free (self->joined);
        free (self);
    }
}

static void
s_ext_destroy (void *arg)
{
    s_root_ext_t *self = (s_root_ext_t *)arg;
    self->inner.destroy (self->inner.self);
    if (self->path)
        unlink (self->path);
    if (self->bootstrap && self->bootstrap->finalize)
        self->bootstrap->finalize ();
    s_ext_free (self);
}

/*  Where rank 0's broker binds, into bind: the fixed rendezvous endpoint,
    or a free port on the interface's address. Returns 0, or -1 after
    logging. */
static int
s_root_bind (const s_job_t *job, char *bind, size_t size)
{
    const char *path;
    if (dp_rendezvous_kind (job->rendezvous, &path) == DP_RENDEZVOUS_TCP) {
        snprintf (bind, size, "%s", job->rendezvous);
        return 0;
    }
    char address[DP_CARD_FIELD / 2];
    if (dp_launcher_address (job->interface, address, sizeof address)) {
        dp_error ("spmd: interface %s has no IPv4 address", job->interface);
        return -1;
    }
    /*  Port 0: the kernel picks one; "*" would scan up from 49152, and a
        port freed by another job would be taken again at once. */
    snprintf (bind, size, "tcp://%s:0", address);
    return 0;
}

/*  An SPMD job's CURVE keys, made by rank 0 for this job only: its
    broker's secret key, and the one key pair of every worker. */
typedef struct {
    char broker_secret[DP_CURVE_KEY + 1];
    dp_curve_t workers;
} s_keys_t;

/*  Makes fresh keys, and puts on the card what the other ranks need: the
    broker's public key and the workers' secret key. Returns 0, or -1
    after logging. */
static int
s_keys_make (s_keys_t *keys, dp_card_t *card)
{
    memset (keys, 0, sizeof *keys);
    dp_curve_t *w = &keys->workers;
    if (zmq_curve_keypair (w->server, keys->broker_secret) ||
        zmq_curve_keypair (w->public_, w->secret)) {
        dp_error ("spmd: cannot make CURVE keys: %s", zmq_strerror (errno));
        return -1;
    }
    w->on = true;
    memcpy (card->curve_server, w->server, sizeof card->curve_server);
    memcpy (card->curve_secret, w->secret, sizeof card->curve_secret);
    return 0;
}

/*  Rank 0's pool, its broker also bound to bind (or not, if NULL) with
    CURVE from keys (or not, if NULL); the endpoint bound goes into card.
    Takes wrap, whose inner extension it fills, in every case. Returns the
    pool or NULL. */
static dpool_pool_t *
s_root_pool (const s_job_t *job, const char *bind, const s_keys_t *keys, s_root_ext_t *wrap,
             dp_card_t *card)
{
    dpool_config_t config = *job->config;
    config.connect = NULL;
    config.bind = NULL;
    config.procs = 0;
    int code = dp_pool_check_config (&config);
    if (code) {
        s_ext_free (wrap);
        return dp_fail_null (code);
    }
    int procs = job->root_procs;
    if (procs == 0 && job->launcher.size == 1)
        procs = dp_supervisor_default_procs ();
    dp_embedded_workers_t workers = {
        config.initializer, config.initargs, config.initargs_size, config.max_tasks, NULL, NULL};
    if (keys) {
        workers.curve = &keys->workers;
        workers.broker_secret = keys->broker_secret;
    }
    dp_embedded_t *embedded = dp_embedded_new (procs, bind, &workers);
    if (!embedded) {
        s_ext_free (wrap);
        return NULL;
    }
    dp_embedded_on_worker (embedded, s_on_worker, wrap);
    wrap->inner = dp_embedded_ext (embedded);
    dp_client_ext_t ext = {wrap,       s_ext_start, s_ext_fds,          s_ext_wait_ms,
                           s_ext_work, s_ext_stop,  s_ext_stop_workers, s_ext_destroy};
    /*  procs 0: map's chunks follow the workers the broker counts. */
    dpool_pool_t *pool = dp_pool_open (&config, dp_embedded_endpoint (embedded), 0, &ext);
    if (pool && bind)
        snprintf (card->endpoint, sizeof card->endpoint, "%s", dp_embedded_bound (embedded));
    return pool;
}

/*  Hands the card to the other ranks. Returns 0, or -1 after logging. */
static int
s_root_tell (const s_job_t *job, const dp_card_t *card)
{
    const char *path;
    char text[DP_CARD_SIZE];
    memset (text, 0, sizeof text);
    if (dp_card_format (card, text, sizeof text)) {
        dp_error ("spmd: the endpoint %s is too long to share", card->endpoint);
        return -1;
    }
    int rc = 0;
    if (job->bootstrap)
        rc = s_share (job, text);
    else if (dp_rendezvous_kind (job->rendezvous, &path) == DP_RENDEZVOUS_FILE)
        rc = dp_rendezvous_write (path, text);
    explicit_bzero (text, sizeof text);
    return rc;
}

/*  Rank 0: makes the pool and tells the others where it is, or why it
    failed. Returns the pool or NULL. */
static dpool_pool_t *
s_root (const s_job_t *job)
{
    const dp_launcher_t *l = &job->launcher;
    const char *path = NULL;
    bool file = dp_rendezvous_kind (job->rendezvous, &path) == DP_RENDEZVOUS_FILE;
    if (file)
        unlink (path); /* a card left by an earlier job */
    bool alone = l->size == 1 && !(job->rendezvous && *job->rendezvous);
    if (l->size > 1 && !job->bootstrap && !(job->rendezvous && *job->rendezvous)) {
        dp_error ("spmd: rank 0 of %d (%s): the other ranks have no way to find this one: set "
                  "DPOOL_SPMD_RENDEZVOUS (file:PATH or tcp://HOST:PORT), or use a bootstrap "
                  "such as dpool_spmd_mpi ()",
                  l->size, l->name);
        return dp_fail_null (DPOOL_EINVAL);
    }
    dp_card_t card;
    memset (&card, 0, sizeof card);
    snprintf (card.job, sizeof card.job, "%s", l->job);
    card.size = l->size;
    char bind[DP_CARD_FIELD];
    s_keys_t keys;
    bool curve = job->curve && !alone;
    s_root_ext_t *wrap = (s_root_ext_t *)calloc (1, sizeof *wrap);
    if (wrap) {
        wrap->size = l->size;
        wrap->timeout_ms = job->timeout_ms;
        wrap->joined = (uint8_t *)calloc ((size_t)l->size, 1);
    }
    dpool_pool_t *pool = NULL;
    int code = DPOOL_ENOMEM;
    if (!wrap || !wrap->joined || (file && !(wrap->path = strdup (path))))
        s_ext_free (wrap);
    else if ((!alone && s_root_bind (job, bind, sizeof bind)) ||
             (curve && s_keys_make (&keys, &card))) {
        s_ext_free (wrap);
        code = DPOOL_EINVAL;
    } else {
        pool = s_root_pool (job, alone ? NULL : bind, curve ? &keys : NULL, wrap, &card);
        code = dpool_errno ();
    }
    explicit_bzero (&keys, sizeof keys);
    if (!pool) {
        explicit_bzero (card.curve_secret, sizeof card.curve_secret);
        snprintf (card.error, sizeof card.error, "rank 0 could not start its pool: %s",
                  dpool_strerror (code));
    }
    if (!alone && s_root_tell (job, &card) && pool)
        dp_warn ("spmd: the other ranks were not told where rank 0 is");
    explicit_bzero (card.curve_secret, sizeof card.curve_secret);
    if (!pool) {
        s_finalize (job);
        return dp_fail_null (code);
    }
    wrap->bootstrap = job->bootstrap; /* finalized when the pool ends */
    dp_info ("spmd: rank 0 of %d (%s) serving at %s%s", l->size, l->name,
             card.endpoint[0] ? card.endpoint : "(this process only)", curve ? " (CURVE)" : "");
    return pool;
}

dpool_pool_t *
dpool_pool_spmd (int *argc, char ***argv, const dpool_config_t *config)
{
    dpool_config_t defaults;
    if (!config) {
        dpool_config_init (&defaults);
        config = &defaults;
    }
    s_job_t job;
    if (s_job_init (&job, config) || s_job_ranks (&job, argc, argv))
        return NULL;
    if (job.launcher.rank > 0)
        s_serve (&job);
    return s_root (&job);
}

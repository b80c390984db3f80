/*  dp_worker.c - the worker engine's lifecycle: settings, the
    initializer, the threads' start and stop, and the notes they pass.

    dp_worker_run sets up what the two threads share (dp_worker_t, its two
    queues and the ZeroMQ context), runs the initializer, starts the I/O
    thread (dp_worker_io.c, the one owner of the sockets and the timers)
    and runs the task loop (dp_worker_runner.c) on the calling thread. The
    threads talk through two message queues (dp_chan), one each way; their
    messages are notes (dp_note_t, dp_worker_int.h): a dp_note_ctl_t copied
    by value and up to two frames, moved.
*/
#define _GNU_SOURCE
#include "dp_registry.h"
#include "dp_task.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dp_worker_int.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

void
dp_note_free (dp_chan_node_t *node)
{
    dp_note_t *note = (dp_note_t *)node;
    for (int i = 0; i < 2; i++)
        zmq_msg_close (&note->frame[i]);
    free (note);
}

void
dp_note_send (dp_chan_t *chan, const dp_note_ctl_t *ctl, zmq_msg_t *frames, int count)
{
    assert (count >= 0 && count <= 2);
    dp_note_t *note = (dp_note_t *)malloc (sizeof *note);
    if (!note) {
        dp_error ("out of memory passing a message between the worker's threads");
        _exit (1);
    }
    note->ctl = *ctl;
    for (int i = 0; i < 2; i++) {
        zmq_msg_init (&note->frame[i]);
        if (i < count)
            zmq_msg_move (&note->frame[i], &frames[i]);
    }
    dp_chan_put (chan, &note->node);
}

void
dp_note_send_ctl (dp_chan_t *chan, const dp_note_ctl_t *ctl)
{
    dp_note_send (chan, ctl, NULL, 0);
}

void
dp_note_send_copy (dp_chan_t *chan, const dp_note_ctl_t *ctl, const void *data, size_t size)
{
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, size)) {
        dp_error ("out of memory passing a message between the worker's threads");
        _exit (1);
    }
    if (size > 0)
        memcpy (zmq_msg_data (&frame), data, size);
    dp_note_send (chan, ctl, &frame, 1);
    zmq_msg_close (&frame);
}

void
dp_worker_config_init (dp_worker_config_t *config)
{
    assert (config);
    memset (config, 0, sizeof *config);
    config->endpoint = DP_DEFAULT_CONNECT;
}

/*  Fills the worker's settings from config. Returns 0 or a dpool_error_t. */
static int
s_worker_setup (dp_worker_t *w, const dp_worker_config_t *config)
{
    if (!config->endpoint || !*config->endpoint)
        return DPOOL_EINVAL;
    w->endpoint = config->endpoint;
    w->curve = config->curve;
    snprintf (w->host, sizeof w->host, "%s", dp_hostname ());
    if (config->name && *config->name)
        snprintf (w->name, sizeof w->name, "%s", config->name);
    else if (snprintf (w->name, sizeof w->name, "%s:%d", w->host, (int)getpid ()) >=
             (int)sizeof w->name)
        dp_debug ("worker name truncated to %s", w->name);
    int credit = config->credit > 0 ? config->credit : DP_DEFAULT_CREDIT;
    if (credit > DP_MAX_CREDIT) {
        dp_warn ("credit %d lowered to the limit of %d", credit, DP_MAX_CREDIT);
        credit = DP_MAX_CREDIT;
    }
    w->credit = (uint32_t)credit;
    w->heartbeat_ms = config->heartbeat_ms > 0 ? config->heartbeat_ms : DP_HEARTBEAT_MS;
    w->expiry_ms = config->expiry_ms > 0 ? config->expiry_ms : DP_EXPIRY_MS;
    w->handshake_timeout_ms = config->handshake_timeout_ms > 0   ? config->handshake_timeout_ms
                              : config->handshake_timeout_ms < 0 ? 0
                                                                 : DP_WORKER_HANDSHAKE_TIMEOUT_MS;
    w->sigfd = -1;
    w->leave_with_broker = config->leave_with_broker;
    w->notify_service = config->notify_service;
    w->reach_ms = config->reach_ms > 0 ? config->reach_ms : 0;
    atomic_init (&w->gone, false);
    atomic_init (&w->busy, false);
    atomic_init (&w->stopping, false);
    atomic_init (&w->held, 0);
    atomic_init (&w->lane_heard, 0);
    return 0;
}

/*  Runs the configured initializer, if any, on the calling thread, with
    no way to the broker yet. Returns 0, or -1 after logging why it failed. */
static int
s_run_initializer (const dp_worker_config_t *config)
{
    const char *name = config->initializer;
    if (!name || !*name)
        return 0;
    size_t len = strlen (name);
    void *hint = NULL;
    dpool_fn_t *fn = dp_registry_lookup (name, len, &hint);
    if (!fn) {
        dp_error ("initializer '%s' is not a registered function; this worker process exits "
                  "without taking a task",
                  name);
        return -1;
    }
    msgpack_zone zone;
    msgpack_zone_init (&zone, MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_object args = {.type = MSGPACK_OBJECT_NIL};
    size_t offset = 0;
    int rc = 0;
    if (config->initargs_size > 0 &&
        (dp_mp_count_objects (config->initargs, config->initargs_size) != 1 ||
         msgpack_unpack ((const char *)config->initargs, config->initargs_size, &offset, &zone,
                         &args) != MSGPACK_UNPACK_SUCCESS)) {
        dp_error ("the arguments of initializer '%s' are not one msgpack object; this worker "
                  "process exits without taking a task",
                  name);
        rc = -1;
    }
    dpool_task_t *task = rc == 0 ? (dpool_task_t *)malloc (sizeof *task) : NULL;
    msgpack_sbuffer out;
    msgpack_sbuffer_init (&out);
    if (task) {
        dp_task_init (task, name, len, hint, 0);
        if (dp_task_call (task, fn, &args, &out) != DPOOL_OK) {
            dp_reader_t reader;
            dp_span_t message = {NULL, 0};
            dp_reader_init (&reader, out.data ? out.data : "", out.size);
            dp_mp_read_str (&reader, &message);
            dp_error ("initializer '%s' failed: %.*s; this worker process exits without "
                      "taking a task (it is started again after a delay)",
                      name, (int)message.size, message.data ? (const char *)message.data : "");
            rc = -1;
        }
    } else if (rc == 0) {
        dp_error ("out of memory running initializer '%s'", name);
        rc = -1;
    }
    free (task);
    msgpack_sbuffer_destroy (&out);
    msgpack_zone_destroy (&zone);
    return rc;
}

/*  Makes what the threads share and the I/O state, and starts the I/O
    thread. Returns 0, or a dpool_error_t after logging why. */
static int
s_worker_start (dp_worker_t *w, dp_worker_io_t **io_p, pthread_t *thread)
{
    w->ctx = w->sigfd >= 0 ? zmq_ctx_new () : NULL;
    if (!w->ctx) {
        dp_error ("cannot start the worker: %s", strerror (errno));
        return DPOOL_ESYS;
    }
    if (!(w->to_task = dp_chan_new (DP_CHAN_POLL_ARMED)) ||
        !(w->to_io = dp_chan_new (DP_CHAN_POLL))) {
        dp_error ("cannot make the worker's queues: %s", strerror (errno));
        return DPOOL_ESYS;
    }
    if (!(*io_p = dp_worker_io_new (w)))
        return DPOOL_ENOMEM;
    if (pthread_create (thread, NULL, dp_worker_io_main, *io_p) != 0) {
        dp_error ("cannot start the worker's I/O thread");
        return DPOOL_ESYS;
    }
    return 0;
}

/*  Runs the task loop on this thread until it stops, then ends the I/O
    thread and waits for it. Returns 0 or why it stopped. */
static int
s_worker_serve (dp_worker_t *w, dp_worker_runner_t *runner, pthread_t thread, size_t count)
{
    dp_info ("worker %s connecting to broker %s (%zu functions, credit %u)", w->name, w->endpoint,
             count, w->credit);
    int code = dp_worker_runner_run (runner);
    /*  A stop from the task side: wake the I/O thread the same way. */
    if (!atomic_load (&w->stopping))
        pthread_kill (thread, SIGTERM);
    pthread_join (thread, NULL);
    return code;
}

int
dp_worker_run (const dp_worker_config_t *config)
{
    assert (config);
    dp_worker_t w;
    memset (&w, 0, sizeof w);
    int code = s_worker_setup (&w, config);
    if (code)
        return dp_fail (code);
    /*  This process is a worker from now on: large arguments and results
        reuse its warm pages. */
    dp_malloc_keep ();
    size_t count;
    dp_registry_names (&count);
    if (count > DP_MAX_FUNCTIONS) {
        dp_error ("%zu functions registered, over the limit of %d", count, DP_MAX_FUNCTIONS);
        return dp_fail (DPOOL_EINVAL);
    }

    /*  Before any thread exists (ours or libzmq's), so that all inherit it. */
    sigset_t signals, saved_mask;
    sigemptyset (&signals);
    sigaddset (&signals, SIGINT);
    sigaddset (&signals, SIGTERM);
    pthread_sigmask (SIG_BLOCK, &signals, &saved_mask);
    w.sigfd = signalfd (-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);

    /*  The initializer first: a worker whose initializer failed never
        registers, so it takes no task. */
    if (s_run_initializer (config)) {
        if (w.sigfd >= 0)
            close (w.sigfd);
        pthread_sigmask (SIG_SETMASK, &saved_mask, NULL);
        return DP_WORKER_INIT_FAILED;
    }

    dp_worker_runner_t *runner = dp_worker_runner_new (&w, config->max_tasks);
    dp_worker_io_t *io = NULL;
    pthread_t thread;
    code = runner ? s_worker_start (&w, &io, &thread) : DPOOL_ENOMEM;
    if (code == 0 && config->parent_death_signal &&
        prctl (PR_SET_PDEATHSIG, config->parent_death_signal) != 0)
        dp_warn ("cannot ask for signal %d on the death of the parent: %s",
                 config->parent_death_signal, strerror (errno));
    if (code == 0)
        code = s_worker_serve (&w, runner, thread, count);
    bool retired = runner && dp_worker_runner_retired (runner);
    bool refused = io && dp_worker_io_refused (io);
    dp_worker_runner_destroy (&runner);
    dp_worker_io_destroy (&io);
    dp_chan_destroy (&w.to_task, dp_note_free);
    dp_chan_destroy (&w.to_io, dp_note_free);
    if (w.ctx)
        zmq_ctx_term (w.ctx);
    if (w.sigfd >= 0)
        close (w.sigfd);
    pthread_sigmask (SIG_SETMASK, &saved_mask, NULL);
    if (code)
        return dp_fail (code);
    if (atomic_load (&w.gone))
        return DP_WORKER_BROKER_GONE;
    return refused ? DP_WORKER_REFUSED : retired ? DP_WORKER_RETIRED : 0;
}

int
dpool_worker_run (const char *endpoint)
{
    if (!endpoint || !*endpoint)
        return dp_fail (DPOOL_EINVAL);
    dp_worker_config_t config;
    dp_worker_config_init (&config);
    config.endpoint = endpoint;
    char err[256];
    if (dp_curve_client_env (&config.curve, NULL, NULL, err, sizeof err)) {
        dp_error ("%s", err);
        return dp_fail (DPOOL_EINVAL);
    }
    int rc = dp_worker_run (&config);
    explicit_bzero (&config.curve, sizeof config.curve);
    if (rc == DP_WORKER_REFUSED)
        return dp_fail (DPOOL_EUNREACHABLE);
    return rc;
}

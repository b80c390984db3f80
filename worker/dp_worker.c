/*  dp_worker.c - the worker engine: one worker process's connection to a
    broker and the loop that runs its tasks.

    Two threads. The I/O thread (s_io_*) keeps every timer: registration
    and its backoff, heartbeats, the broker's expiry, DONE batching, and the
    deadline of the running job; it waits on the sockets while a job runs.
    The calling thread (s_runner_*) keeps the jobs the broker handed over and
    runs them one at a time. They talk through two message queues (dp_chan),
    one each way; their messages (s_note_t) are of s_kind_t: an s_ctl_t
    copied by value and up to two frames, moved.

    Every socket belongs to the I/O thread for its whole life: it reads
    every message from the broker and sends every message to it, the task
    thread's DONE batches, progress reports and queue requests included,
    which reach it as notes in its queue. Neither thread touches the
    other's state.

    Epochs: every (re)registration starts a new epoch. Jobs carry the epoch
    they arrived in; a result of an older epoch is dropped, since the broker
    that gave the job has forgotten it, and a RESET tells the task thread to
    drop the jobs it holds from before.

    Two atomics close one race on stopping: the task thread sets busy before
    it starts a job and then checks stopping; the I/O side sets stopping and
    then checks busy. One of them sees the other, so a stopping worker
    either abandons a running task (and ends the process) or starts no new
    one.
*/
#define _GNU_SOURCE
#include "dp_worker.h"

#include "dp_chan.h"
#include "dp_queue.h"
#include "dp_registry.h"
#include "dp_task.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

#define RUNNER_PACES 16            /* functions whose last run time the task thread remembers */
#define RESULT_KEEP  (1024 * 1024) /* result buffer kept between jobs, bytes */
#define DONE_ENTRY   32            /* DONE bytes around one value: array, ref, code */
#define DONE_LIMIT   (DP_MAX_MSG_SIZE - 1024)

/*  Messages between the threads. */
typedef enum {
    PIPE_JOBS = 1, /* I/O -> task: [ctl, DISPATCH header, DISPATCH body] */
    PIPE_RESET,    /* I/O -> task: drop held jobs; ctl.epoch is the new epoch */
    PIPE_STOP,     /* I/O -> task: stop; ctl.code 0 or why (dpool_error_t) */
    PIPE_ARM,      /* task -> I/O: job ctl.ref started; it must end by ctl.deadline_ms */
    PIPE_DONE,     /* task -> I/O: [ctl, DONE body]: ctl.count results of jobs of ctl.epoch;
                      when ctl.code is 1, job ctl.ref (the timed one) is among them */
    PIPE_QUEUE,    /* task -> I/O: [ctl, body]: queue request ctl.ref, command ctl.code */
    PIPE_QCANCEL,  /* task -> I/O: the task gave up waiting for request ctl.ref */
    PIPE_QREPLY,   /* I/O -> task: [ctl, QUEUE-REPLY body] received in ctl.epoch */
    PIPE_QACK,     /* task -> I/O: acknowledge token ctl.ref: taken if ctl.code, else not */
    PIPE_PROGRESS, /* task -> I/O: [ctl, packed value]: progress of job ctl.ref */
    PIPE_RETIRE    /* task -> I/O: it ran max_tasks jobs (their results went before) */
} s_kind_t;

typedef struct {
    int kind;
    int32_t code;
    uint64_t epoch;
    uint64_t ref;
    int64_t deadline_ms;
    uint32_t timeout_ms;
    uint32_t count;
} s_ctl_t;

/*  One message between the threads. Both frames are always initialised;
    kinds with fewer leave them empty. */
typedef struct {
    dp_chan_node_t node;
    s_ctl_t ctl;
    zmq_msg_t frame[2];
} s_note_t;

/*  What both threads know; set before the I/O thread starts. */
typedef struct {
    void *ctx;
    const char *endpoint;
    char name[DP_MAX_NAME + 1];
    char host[DP_MAX_NAME + 1];
    uint32_t credit;
    int heartbeat_ms;
    int expiry_ms;
    int sigfd;
    dp_chan_t *to_task; /* I/O -> task: the task thread waits on it */
    dp_chan_t *to_io;   /* task -> I/O: the I/O thread polls its fd */
    dp_curve_t curve;
    atomic_bool busy;     /* the task thread is running a job */
    atomic_bool stopping; /* the I/O thread is stopping: start no job */
} s_worker_t;

/*  ---------------------------------------------------------------------------
    The I/O thread.
*/
typedef enum { IO_REGISTERING, IO_ACTIVE } s_state_t;

typedef struct s_io_t {
    s_worker_t *worker;
    void *dealer; /* NULL while waiting to reconnect */
    void *spare;  /* REGISTERING: the previous attempt's socket, for a late WELCOME */
    s_state_t state;
    bool done;
    uint64_t epoch;
    int64_t last_send;  /* ms: last message sent to the broker */
    int64_t last_recv;  /* ms: last valid message from the broker */
    int64_t next_ready; /* ms: REGISTERING: when to send READY again */
    int backoff_ms;
    int heartbeat_ms;
    int expiry_ms;
    dp_writer_t ready; /* the READY body, encoded once */
    dp_writer_t empty; /* the HEARTBEAT and BYE body */
    dp_writer_t done_w;
    uint32_t pending;      /* results in done_w not yet sent */
    uint32_t held;         /* jobs of this registration whose results have not gone out */
    int64_t first_pending; /* ms: when the first of them arrived */
    bool armed;            /* a job with a timeout is running */
    uint64_t armed_ref;
    uint64_t armed_epoch;
    int64_t deadline;
    uint32_t armed_timeout;
    uint64_t malformed; /* malformed messages from the broker */
    /*  The queue request the task thread waits on (one at a time): its
        body, kept to send it again after a new registration. */
    bool qpending;
    uint64_t qreq;
    dp_cmd_t qcmd;
    uint64_t qsent_epoch; /* the registration it was sent in; 0 not yet */
    zmq_msg_t qbody;
    dp_writer_t qw; /* QUEUE-ACK, PROGRESS and failure bodies */
    /*  The latest progress report not yet sent, and when one last went. */
    bool progress_pending;
    uint64_t progress_ref;
    uint64_t progress_epoch;
    msgpack_sbuffer progress;
    int64_t progress_sent;
    /*  The DEALER's last use was a look that found nothing (a recv, or its
        events): its descriptor fires on the next message, so a look before
        polling it would find nothing either. */
    bool dealer_quiet;
} s_io_t;

static void
s_note_free (dp_chan_node_t *node)
{
    s_note_t *note = (s_note_t *)node;
    for (int i = 0; i < 2; i++)
        zmq_msg_close (&note->frame[i]);
    free (note);
}

/*  Sends ctl and count frames (0 to 2), moved from frames. Out of memory
    for one message the threads cannot stay in step: the process leaves,
    and the broker gives its jobs to other workers. */
static void
s_pipe_send (dp_chan_t *chan, const s_ctl_t *ctl, zmq_msg_t *frames, int count)
{
    assert (count >= 0 && count <= 2);
    s_note_t *note = (s_note_t *)malloc (sizeof *note);
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

static void
s_pipe_send_ctl (dp_chan_t *chan, const s_ctl_t *ctl)
{
    s_pipe_send (chan, ctl, NULL, 0);
}

/*  Sends ctl and a frame holding a copy of size bytes at data. */
static void
s_pipe_send_copy (dp_chan_t *chan, const s_ctl_t *ctl, const void *data, size_t size)
{
    zmq_msg_t frame;
    if (zmq_msg_init_size (&frame, size)) {
        dp_error ("out of memory passing a message between the worker's threads");
        _exit (1);
    }
    if (size > 0)
        memcpy (zmq_msg_data (&frame), data, size);
    s_pipe_send (chan, ctl, &frame, 1);
    zmq_msg_close (&frame);
}

/*  Tells the task thread about a new epoch: jobs it holds are void. */
static void
s_io_reset_jobs (s_io_t *io)
{
    io->epoch++;
    io->pending = 0;
    io->held = 0;
    dp_writer_reset (&io->done_w);
    s_ctl_t ctl = {.kind = PIPE_RESET, .epoch = io->epoch};
    s_pipe_send_ctl (io->worker->to_task, &ctl);
}

/*  Sends a message to the broker; never blocks. Returns 0 or -1. */
static int
s_io_send (s_io_t *io, dp_cmd_t cmd, const dp_writer_t *writer)
{
    if (!io->dealer)
        return -1;
    io->dealer_quiet = false;
    if (dp_wire_send_writer (io->dealer, NULL, 0, cmd, writer, ZMQ_DONTWAIT)) {
        dp_warn ("cannot send %s to the broker: %s", dp_cmd_name (cmd), zmq_strerror (errno));
        return -1;
    }
    io->last_send = dp_now_ms ();
    return 0;
}

/*  Closes a socket, dropping what it has not sent. */
static void
s_io_close (void **socket_p)
{
    if (*socket_p) {
        int zero = 0;
        zmq_setsockopt (*socket_p, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close (*socket_p);
        *socket_p = NULL;
    }
}

/*  Closes a socket that may have registered with the broker, after a BYE so
    that the broker forgets it at once (the BYE goes out within linger). */
static void
s_io_close_with_bye (s_io_t *io, void **socket_p)
{
    if (*socket_p) {
        dp_wire_send_writer (*socket_p, NULL, 0, DP_CMD_BYE, &io->empty, ZMQ_DONTWAIT);
        zmq_close (*socket_p);
        *socket_p = NULL;
    }
}

static void
s_io_close_dealer (s_io_t *io)
{
    io->dealer_quiet = false;
    s_io_close (&io->dealer);
    s_io_close (&io->spare);
}

/*  Replaces the DEALER with a fresh one connected to the broker; with
    keep_spare, the old one stays open as the spare (replacing any spare).
    Returns 0, or -1 with errno if the endpoint cannot be connected. */
static int
s_io_open_dealer (s_io_t *io, bool keep_spare)
{
    io->dealer_quiet = false;
    /*  A socket that sent READY may be registered (its WELCOME lost or not
        yet here): its BYE tells the broker to take back what it gave it. */
    if (keep_spare && io->dealer) {
        s_io_close_with_bye (io, &io->spare);
        io->spare = io->dealer;
        io->dealer = NULL;
    } else {
        s_io_close_with_bye (io, &io->dealer);
        s_io_close_with_bye (io, &io->spare);
    }
    void *dealer = zmq_socket (io->worker->ctx, ZMQ_DEALER);
    if (!dealer)
        return -1;
    if (dp_wire_configure (dealer, false, DP_WORKER_LINGER_MS) ||
        dp_curve_apply (dealer, &io->worker->curve, false) ||
        zmq_connect (dealer, io->worker->endpoint)) {
        int saved = errno;
        zmq_close (dealer);
        errno = saved;
        return -1;
    }
    io->dealer = dealer;
    return 0;
}

/*  Ends the I/O thread, telling the task thread to stop with code. If the
    task thread is running a job, the job is abandoned with the process. */
static void
s_io_stop (s_io_t *io, int code)
{
    atomic_store (&io->worker->stopping, true);
    if (atomic_load (&io->worker->busy)) {
        dp_info ("abandoning the running task");
        _exit (code == 0 ? 0 : 1);
    }
    s_ctl_t ctl = {.kind = PIPE_STOP, .code = code};
    s_pipe_send_ctl (io->worker->to_task, &ctl);
    io->done = true;
}

/*  How s_io_register gets its socket. */
typedef enum {
    SOCKET_SAME,  /* the one it has (ERROR ESTATE: the connection is fine) */
    SOCKET_FRESH, /* a new one (start, or the broker went silent) */
    SOCKET_RETRY  /* a new one, keeping the last attempt's as the spare */
} s_socket_t;

/*  Starts a new registration, or retries one: new epoch, READY now, and
    again after the backoff until WELCOME. A retry goes out on a fresh socket
    (a stuck connection holds nothing worth keeping) but the previous one
    stays open until the next retry: a WELCOME slower than the backoff still
    counts. */
static void
s_io_register (s_io_t *io, s_socket_t socket)
{
    s_io_reset_jobs (io);
    io->state = IO_REGISTERING;
    int64_t now = dp_now_ms ();
    io->next_ready = now + io->backoff_ms;
    io->backoff_ms =
        io->backoff_ms * 2 > DP_RECONNECT_MAX_MS ? DP_RECONNECT_MAX_MS : io->backoff_ms * 2;
    if (socket != SOCKET_SAME || !io->dealer) {
        if (s_io_open_dealer (io, socket == SOCKET_RETRY)) {
            dp_warn ("cannot connect to %s: %s", io->worker->endpoint, zmq_strerror (errno));
            return;
        }
    }
    dp_debug ("READY to %s (epoch %llu)", io->worker->endpoint, (unsigned long long)io->epoch);
    s_io_send (io, DP_CMD_READY, &io->ready);
}

/*  Sends the DONE batch, if any. */
static void
s_io_flush (s_io_t *io)
{
    if (io->pending == 0)
        return;
    dp_list_end (&io->done_w);
    s_io_send (io, DP_CMD_DONE, &io->done_w);
    io->pending = 0;
    dp_writer_reset (&io->done_w);
}

/*  Waits up to DP_WORKER_BYE_WAIT_MS for the broker's BYE, which proves that
    everything sent before our BYE arrived. Anything else is dropped; a
    signal ends the wait. Returns true if the BYE came. */
static bool
s_io_wait_bye (s_io_t *io)
{
    int64_t until = dp_now_ms () + DP_WORKER_BYE_WAIT_MS;
    io->dealer_quiet = false;
    for (;;) {
        int64_t left = until - dp_now_ms ();
        if (left <= 0 || !io->dealer)
            return false;
        zmq_pollitem_t items[] = {{io->dealer, 0, ZMQ_POLLIN, 0},
                                  {NULL, io->worker->sigfd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll (items, 2, (long)left);
        if (rc < 0 && errno != EINTR)
            return false;
        if (items[1].revents & ZMQ_POLLIN) {
            dp_info ("second signal: not waiting for the broker");
            return false;
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        dp_wire_msg_t msg;
        while (dp_wire_recv (io->dealer, &msg, ZMQ_DONTWAIT) == 0) {
            dp_msg_t m;
            bool bye = dp_wire_decode (&msg, false, NULL, &m) == DP_OK && m.cmd == DP_CMD_BYE;
            dp_wire_close (&msg);
            if (bye)
                return true;
        }
    }
}

/*  Leaves the broker: sends what is pending and BYE, and waits for its BYE.
    While registering, a READY may have registered this worker although its
    WELCOME has not come yet: a BYE on each socket undoes that (a broker that
    does not know the peer ignores it), with no wait, since no answer comes
    from a broker that does not know us. */
static void
s_io_leave (s_io_t *io)
{
    if (io->state != IO_ACTIVE) {
        s_io_close_with_bye (io, &io->dealer);
        s_io_close_with_bye (io, &io->spare);
        return;
    }
    if (!io->dealer)
        return;
    s_io_flush (io);
    if (s_io_send (io, DP_CMD_BYE, &io->empty) == 0 && !s_io_wait_bye (io))
        dp_info ("no answer to BYE from the broker");
}

/*  The running job is past its deadline: report it, leave, and end the
    process, the only way to stop a task function. */
static void
s_io_deadline (s_io_t *io)
{
    dp_warn ("job %llu exceeded its timeout of %u ms; ending the process",
             (unsigned long long)io->armed_ref, io->armed_timeout);
    if (io->state == IO_ACTIVE && io->armed_epoch == io->epoch) {
        char message[128];
        snprintf (message, sizeof message, "task exceeded its timeout of %u ms",
                  io->armed_timeout);
        s_io_flush (io);
        dp_list_begin (&io->done_w);
        dp_list_add_error (&io->done_w, io->armed_ref, DPOOL_EDEADLINE, message);
        io->pending = 1;
        s_io_flush (io);
        s_io_leave (io);
    }
    _exit (DP_WORKER_EXIT_DEADLINE);
}

/*  Sends the pending queue request unless it went out in this
    registration already; held while registering. */
static void
s_io_queue_send (s_io_t *io)
{
    if (!io->qpending || io->state != IO_ACTIVE || io->qsent_epoch == io->epoch || !io->dealer)
        return;
    io->qsent_epoch = io->epoch;
    io->dealer_quiet = false;
    if (dp_wire_send (io->dealer, NULL, 0, io->qcmd, zmq_msg_data (&io->qbody),
                      zmq_msg_size (&io->qbody), ZMQ_DONTWAIT) == 0)
        io->last_send = dp_now_ms ();
    else
        dp_warn ("cannot send %s to the broker: %s", dp_cmd_name (io->qcmd), zmq_strerror (errno));
}

static void
s_io_queue_drop (s_io_t *io)
{
    if (io->qpending) {
        zmq_msg_close (&io->qbody);
        io->qpending = false;
    }
}

/*  Hands the task thread a QUEUE-REPLY body. */
static void
s_io_queue_reply (s_io_t *io, const void *body, size_t size)
{
    s_ctl_t ctl = {.kind = PIPE_QREPLY, .epoch = io->epoch};
    s_pipe_send_copy (io->worker->to_task, &ctl, body, size);
}

/*  Registered (again): a request held while registering goes out now. One
    sent in an earlier registration is sent again if it is a GET (its value,
    if the broker lent one, went back when the worker registered again);
    anything else may or may not have been carried out, so it fails. */
static void
s_io_queue_resume (s_io_t *io)
{
    if (!io->qpending)
        return;
    if (io->qsent_epoch == 0 || io->qcmd == DP_CMD_QUEUE_GET) {
        s_io_queue_send (io);
        return;
    }
    dp_encode_queue_fail (&io->qw, io->qreq, DPOOL_EUNREACHABLE, 0, 0,
                          "the connection to the broker was lost; the request may or may "
                          "not have been carried out");
    s_io_queue_drop (io);
    s_io_queue_reply (io, dp_writer_data (&io->qw), dp_writer_size (&io->qw));
}

/*  A QUEUE-REPLY from the broker: to the task thread if it answers the
    request it waits on, sent in this registration. A value nobody waits
    for any more is refused at once, so that it goes back to the front of
    its queue; one lent before the last registration is the broker's again
    already. */
static void
s_io_on_queue_reply (s_io_t *io, const dp_queue_reply_t *reply, dp_wire_msg_t *msg)
{
    if (io->state != IO_ACTIVE)
        return;
    if (io->qpending && reply->req == io->qreq && io->qsent_epoch == io->epoch) {
        s_io_queue_drop (io);
        s_io_queue_reply (io, zmq_msg_data (&msg->frames[1]), zmq_msg_size (&msg->frames[1]));
    } else if (reply->token) {
        dp_encode_queue_ack (&io->qw, reply->token, false);
        s_io_send (io, DP_CMD_QUEUE_ACK, &io->qw);
    }
}

/*  Sends the progress report held back, if it is still of this
    registration. */
static void
s_io_progress_flush (s_io_t *io)
{
    if (!io->progress_pending)
        return;
    io->progress_pending = false;
    if (io->progress_epoch != io->epoch || io->state != IO_ACTIVE)
        return;
    dp_encode_progress (&io->qw, io->progress_ref, io->progress.data, io->progress.size);
    s_io_send (io, DP_CMD_PROGRESS, &io->qw);
    io->progress_sent = dp_now_ms ();
}

/*  A progress report from the task thread: sent now if none went for
    DP_PROGRESS_MS, else held (replacing any held one) until then. */
static void
s_io_on_progress (s_io_t *io, const s_ctl_t *ctl, zmq_msg_t *value)
{
    msgpack_sbuffer_clear (&io->progress);
    if (msgpack_sbuffer_write (&io->progress, (const char *)zmq_msg_data (value),
                               zmq_msg_size (value)))
        return;
    io->progress_pending = true;
    io->progress_ref = ctl->ref;
    io->progress_epoch = ctl->epoch;
    if (dp_now_ms () - io->progress_sent >= DP_PROGRESS_MS)
        s_io_progress_flush (io);
}

/*  The task thread ran its last job (max_tasks): leave as on a signal, so
    that the broker takes back at once what this worker still holds. */
static void
s_io_retire (s_io_t *io)
{
    dp_info ("ran its last task (max_tasks); retiring");
    s_io_leave (io);
    s_io_stop (io, 0);
}

/*  A message from the task thread. */
static void
s_io_on_task (s_io_t *io, const s_ctl_t *ctl, zmq_msg_t *value)
{
    switch (ctl->kind) {
    case PIPE_QUEUE:
        s_io_queue_drop (io);
        zmq_msg_init (&io->qbody);
        zmq_msg_move (&io->qbody, value);
        io->qpending = true;
        io->qreq = ctl->ref;
        io->qcmd = (dp_cmd_t)ctl->code;
        io->qsent_epoch = 0;
        s_io_queue_send (io);
        return;
    case PIPE_QCANCEL:
        if (io->qpending && io->qreq == ctl->ref)
            s_io_queue_drop (io);
        return;
    case PIPE_QACK:
        if (ctl->epoch == io->epoch && io->state == IO_ACTIVE) {
            dp_encode_queue_ack (&io->qw, ctl->ref, ctl->code != 0);
            s_io_send (io, DP_CMD_QUEUE_ACK, &io->qw);
        }
        return;
    case PIPE_PROGRESS:
        s_io_on_progress (io, ctl, value);
        return;
    case PIPE_RETIRE:
        s_io_retire (io);
        return;
    default:
        break;
    }
    if (ctl->kind == PIPE_ARM) {
        io->armed = true;
        io->armed_ref = ctl->ref;
        io->armed_epoch = ctl->epoch;
        io->deadline = ctl->deadline_ms;
        io->armed_timeout = ctl->timeout_ms;
        return;
    }
    assert (ctl->kind == PIPE_DONE);
    if (ctl->code == 1 && io->armed && io->armed_ref == ctl->ref && io->armed_epoch == ctl->epoch)
        io->armed = false;
    /*  A progress report held back goes out before the results: its job's
        may be among them. */
    s_io_progress_flush (io);
    if (ctl->epoch != io->epoch || io->state != IO_ACTIVE || !io->dealer) {
        dp_debug ("dropping results of an old registration");
        return;
    }
    io->held = ctl->count < io->held ? io->held - ctl->count : 0;
    /*  The task thread built the DONE body: it goes out as it is. */
    s_io_flush (io);
    io->dealer_quiet = false;
    if (dp_wire_send_msg (io->dealer, NULL, 0, DP_CMD_DONE, value, ZMQ_DONTWAIT))
        dp_warn ("cannot send DONE to the broker: %s", zmq_strerror (errno));
    else
        io->last_send = dp_now_ms ();
}

/*  Handles every message the task thread sent; once stopped, drops them. */
static void
s_io_drain_pipe (s_io_t *io)
{
    dp_chan_node_t *node = dp_chan_take (io->worker->to_io);
    while (node) {
        s_note_t *note = (s_note_t *)node;
        node = node->next;
        if (!io->done)
            s_io_on_task (io, &note->ctl, &note->frame[0]);
        s_note_free (&note->node);
    }
}

/*  Hands a DISPATCH (jobs) over to the task thread, frames and all. */
static void
s_io_forward_jobs (s_io_t *io, const dp_list_t *jobs, dp_wire_msg_t *msg)
{
    io->held += jobs->left;
    s_ctl_t ctl = {.kind = PIPE_JOBS, .epoch = io->epoch};
    s_pipe_send (io->worker->to_task, &ctl, msg->frames, 2);
}

/*  WELCOME: registered. Also on a WELCOME while active, which answers a
    second READY: the broker took back the jobs it gave before, so they are
    dropped here too. */
static void
s_io_on_welcome (s_io_t *io, const dp_welcome_t *welcome)
{
    if (io->state == IO_ACTIVE) {
        dp_info ("registered again: the jobs held are the broker's again");
        s_io_reset_jobs (io);
    }
    /*  The other attempt's socket may have registered too: undo it. */
    s_io_close_with_bye (io, &io->spare);
    if (welcome->heartbeat_ms > 0)
        io->heartbeat_ms = welcome->heartbeat_ms > INT_MAX ? INT_MAX : (int)welcome->heartbeat_ms;
    if (welcome->expiry_ms > 0)
        io->expiry_ms = welcome->expiry_ms > INT_MAX ? INT_MAX : (int)welcome->expiry_ms;
    if (io->state == IO_REGISTERING) {
        io->state = IO_ACTIVE;
        io->backoff_ms = DP_RECONNECT_MS;
        dp_info ("registered with broker %.*s at %s (heartbeat %d ms, expiry %d ms)",
                 (int)welcome->broker.size, (const char *)welcome->broker.data,
                 io->worker->endpoint, io->heartbeat_ms, io->expiry_ms);
    }
    s_io_queue_resume (io);
}

/*  One valid message from the broker. Returns false if the socket it came
    on was closed. */
static bool
s_io_on_broker (s_io_t *io, dp_msg_t *m, dp_wire_msg_t *msg)
{
    switch (m->cmd) {
    case DP_CMD_WELCOME:
        s_io_on_welcome (io, &m->u.welcome);
        break;
    case DP_CMD_DISPATCH:
        if (io->state == IO_ACTIVE)
            s_io_forward_jobs (io, &m->u.list, msg);
        else
            dp_debug ("DISPATCH before WELCOME dropped");
        break;
    case DP_CMD_HEARTBEAT:
        /*  Answered at once, so that every idle worker's answer reaches the
            broker in one burst with the others'. */
        if (io->state == IO_ACTIVE &&
            dp_now_ms () - io->last_send >= DP_HEARTBEAT_QUIET (io->heartbeat_ms))
            s_io_send (io, DP_CMD_HEARTBEAT, &io->empty);
        break;
    case DP_CMD_QUEUE_REPLY:
        s_io_on_queue_reply (io, &m->u.queue_reply, msg);
        break;
    case DP_CMD_BYE:
        dp_info ("the broker said goodbye; registering again in %d ms", io->backoff_ms);
        s_io_reset_jobs (io);
        s_io_close_dealer (io);
        io->state = IO_REGISTERING;
        io->next_ready = dp_now_ms () + io->backoff_ms;
        return false;
    case DP_CMD_ERROR:
        if (m->u.error.code == DPOOL_ESTATE && io->state == IO_REGISTERING)
            /*  An answer to something sent before our READY, which is on
                its way: registering again would only void it. */
            dp_debug ("ERROR ESTATE while registering ignored");
        else if (m->u.error.code == DPOOL_ESTATE) {
            dp_info ("the broker does not know this worker (%.*s); registering again",
                     (int)m->u.error.message.size, (const char *)m->u.error.message.data);
            io->backoff_ms = DP_RECONNECT_MS;
            s_io_register (io, SOCKET_SAME);
        } else
            dp_warn ("the broker refused a message: %s: %.*s", dpool_strerror (m->u.error.code),
                     (int)m->u.error.message.size, (const char *)m->u.error.message.data);
        break;
    default:
        dp_warn ("unexpected %s from the broker dropped", dp_cmd_name (m->cmd));
        break;
    }
    return true;
}

/*  True if a message may wait on the DEALER (which must be open): not if
    it is known quiet, nor if its events say nothing waits, which marks it
    quiet until its next use. */
static bool
s_io_dealer_readable (s_io_t *io)
{
    if (io->dealer_quiet)
        return false;
    if (dp_wire_readable (io->dealer))
        return true;
    io->dealer_quiet = true;
    return false;
}

/*  Reads every message waiting on the DEALER. */
static void
s_io_drain_dealer (s_io_t *io)
{
    while (io->dealer && !io->done) {
        dp_wire_msg_t msg;
        if (dp_wire_recv (io->dealer, &msg, ZMQ_DONTWAIT)) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                s_io_stop (io, DPOOL_ESYS);
            else
                io->dealer_quiet = true;
            return;
        }
        io->dealer_quiet = false;
        dp_msg_t m;
        dp_reason_t reason = dp_wire_decode (&msg, false, NULL, &m);
        bool open = true;
        if (reason != DP_OK) {
            if (io->malformed++ == 0)
                dp_warn ("malformed message from the broker (%s) dropped",
                         dp_reason_name (reason));
        } else {
            io->last_recv = dp_now_ms ();
            open = s_io_on_broker (io, &m, &msg);
        }
        dp_wire_close (&msg);
        if (!open)
            return;
    }
}

/*  Reads the spare socket (REGISTERING only): a WELCOME there makes it the
    DEALER, and the newer attempt's socket is closed; anything else is
    dropped. */
static void
s_io_drain_spare (s_io_t *io)
{
    while (io->spare) {
        dp_wire_msg_t msg;
        if (dp_wire_recv (io->spare, &msg, ZMQ_DONTWAIT)) {
            if (errno == EINTR)
                continue;
            return;
        }
        dp_msg_t m;
        bool welcome = dp_wire_decode (&msg, false, NULL, &m) == DP_OK &&
                       m.cmd == DP_CMD_WELCOME && io->state == IO_REGISTERING;
        if (welcome) {
            void *late = io->spare;
            io->spare = io->dealer;
            io->dealer = late;
            io->dealer_quiet = false;
            io->last_recv = dp_now_ms ();
            s_io_on_welcome (io, &m.u.welcome);
        }
        dp_wire_close (&msg);
        if (welcome)
            return;
    }
}

/*  A signal came: leave the broker and stop. */
static void
s_io_on_signal (s_io_t *io)
{
    struct signalfd_siginfo info;
    ssize_t n = read (io->worker->sigfd, &info, sizeof info);
    int sig = n == (ssize_t)sizeof info ? (int)info.ssi_signo : 0;
    dp_info ("signal %d: leaving", sig);
    s_io_leave (io);
    s_io_stop (io, 0);
}

/*  The heartbeat interval and expiry in force: a worker that holds no job
    is idle, and both sides beat DP_IDLE_FACTOR times as slowly (§6). */
static int64_t
s_io_beat_ms (const s_io_t *io)
{
    return DP_IDLE_SCALED (io->heartbeat_ms, io->held == 0);
}

static int64_t
s_io_expiry_ms (const s_io_t *io)
{
    return DP_IDLE_SCALED (io->expiry_ms, io->held == 0);
}

/*  Runs every timer that is due. */
static void
s_io_timers (s_io_t *io)
{
    int64_t now = dp_now_ms ();
    if (io->armed && now >= io->deadline) {
        /*  The result may be in the pipe already: a job that finished in
            time is not killed. */
        s_io_drain_pipe (io);
        if (io->armed)
            s_io_deadline (io);
    }
    if (io->state == IO_REGISTERING) {
        if (now >= io->next_ready)
            s_io_register (io, SOCKET_RETRY);
        return;
    }
    if (now - io->last_recv >= s_io_expiry_ms (io)) {
        dp_warn ("the broker has been silent for %lld ms; connecting again",
                 (long long)(now - io->last_recv));
        io->backoff_ms = DP_RECONNECT_MS;
        s_io_register (io, SOCKET_FRESH);
        return;
    }
    if (io->pending > 0 && now - io->first_pending >= DP_WORKER_DONE_DELAY_MS)
        s_io_flush (io);
    if (io->progress_pending && now - io->progress_sent >= DP_PROGRESS_MS)
        s_io_progress_flush (io);
    if (now - io->last_send >= DP_HEARTBEAT_ALONE (s_io_beat_ms (io)))
        s_io_send (io, DP_CMD_HEARTBEAT, &io->empty);
}

/*  Milliseconds until the next timer is due, for zmq_poll. */
static long
s_io_timeout (s_io_t *io)
{
    int64_t next;
    if (io->state == IO_REGISTERING)
        next = io->next_ready;
    else {
        next = io->last_recv + s_io_expiry_ms (io);
        if (io->last_send + DP_HEARTBEAT_ALONE (s_io_beat_ms (io)) < next)
            next = io->last_send + DP_HEARTBEAT_ALONE (s_io_beat_ms (io));
        if (io->pending > 0 && io->first_pending + DP_WORKER_DONE_DELAY_MS < next)
            next = io->first_pending + DP_WORKER_DONE_DELAY_MS;
        if (io->progress_pending && io->progress_sent + DP_PROGRESS_MS < next)
            next = io->progress_sent + DP_PROGRESS_MS;
    }
    if (io->armed && io->deadline < next)
        next = io->deadline;
    int64_t left = next - dp_now_ms ();
    return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (long)left;
}

static void
s_io_loop (s_io_t *io)
{
    if (s_io_open_dealer (io, false)) {
        dp_error ("cannot connect to %s: %s", io->worker->endpoint, zmq_strerror (errno));
        s_io_stop (io, DPOOL_EINVAL);
        return;
    }
    s_io_register (io, SOCKET_SAME);
    while (!io->done) {
        s_io_timers (io);
        if (io->done)
            break;
        /*  Descriptors, not zmq_poll: one look at each socket's events and
            one poll(2) a round, where zmq_poll looks at every socket twice
            and polls twice when it has to wait (each look is two system
            calls in libzmq). A socket's descriptor fires only once the
            socket has been found empty, so one with a message waiting
            makes the wait 0. */
        void *spare = io->spare;
        void *dealer = io->dealer;
        bool spare_in = spare && dp_wire_readable (spare);
        bool dealer_in = dealer && s_io_dealer_readable (io);
        struct pollfd fds[4] = {{dp_chan_fd (io->worker->to_io), POLLIN, 0},
                                {io->worker->sigfd, POLLIN, 0},
                                {spare ? dp_wire_fd (spare) : -1, POLLIN, 0},
                                {dealer ? dp_wire_fd (dealer) : -1, POLLIN, 0}};
        long timeout = spare_in || dealer_in ? 0 : s_io_timeout (io);
        int rc = poll (fds, 4, (int)timeout);
        int saved = errno;
        if (rc < 0) {
            if (saved == EINTR)
                continue;
            dp_error ("poll: %s", strerror (saved));
            s_io_stop (io, DPOOL_ESYS);
            break;
        }
        if (fds[0].revents & POLLIN)
            s_io_drain_pipe (io);
        /*  Messages first, a signal last: a WELCOME that came with it
            decides how the worker leaves. A WELCOME on the spare swaps the
            two sockets: the old DEALER is then not read. A note from the
            task thread may have changed the sockets (a retiring worker
            leaves). */
        if (spare && spare == io->spare && (spare_in || fds[2].revents) && !io->done)
            s_io_drain_spare (io);
        if (dealer && dealer == io->dealer && (dealer_in || fds[3].revents) && !io->done)
            s_io_drain_dealer (io);
        if ((fds[1].revents & POLLIN) && !io->done) {
            s_io_on_signal (io);
            break;
        }
    }
}

static void *
s_io_main (void *arg)
{
    s_io_t *io = (s_io_t *)arg;
    s_io_loop (io);
    s_io_close_dealer (io);
    return NULL;
}

/*  ---------------------------------------------------------------------------
    The task thread.
*/

/*  One DISPATCH: its frames and the jobs not yet run. */
typedef struct s_batch_t {
    struct s_batch_t *next;
    zmq_msg_t header;
    zmq_msg_t body;
    dp_list_t jobs;
} s_batch_t;

typedef struct {
    s_worker_t *worker;
    dp_chan_node_t *inbox; /* messages taken from the I/O thread, not yet handled */
    s_batch_t *head;
    s_batch_t *tail;
    size_t queued; /* jobs held in all batches */
    uint64_t epoch;
    bool stop;
    int code; /* why it stopped: 0 or a dpool_error_t */
    msgpack_zone zone;
    msgpack_sbuffer result;
    dpool_task_t task;
    dp_writer_t done;      /* results not yet handed to the I/O thread */
    uint32_t pending;      /* entries in done */
    int64_t first_pending; /* ms: when the first of them was added */
    struct {
        dpool_fn_t *fn;
        uint32_t run_us;   /* its last run time */
    } paces[RUNNER_PACES]; /* recently run functions, to tell fast from slow */
    unsigned npaces;
    dp_task_link_t link; /* the running task's way to the broker */
    /*  The queue request waiting for its reply (qwant, 0 for none) and,
        once it came, the reply and the registration it came in. */
    uint64_t next_req;
    uint64_t qwant;
    bool qgot;
    zmq_msg_t qreply;
    uint64_t qreply_epoch;
    dp_writer_t qw;
    /*  The running job, for its progress reports: the last one passed on,
        and one held back. */
    uint64_t job_ref;
    uint64_t job_epoch;
    int64_t progress_sent;
    bool progress_held;
    msgpack_sbuffer progress;
    int max_tasks; /* 0: no limit */
    int ran;       /* jobs run */
    bool retiring; /* ran max_tasks: waits for the I/O thread's stop */
} s_runner_t;

static void
s_batch_destroy (s_batch_t **self_p)
{
    if (*self_p) {
        zmq_msg_close (&(*self_p)->header);
        zmq_msg_close (&(*self_p)->body);
        free (*self_p);
        *self_p = NULL;
    }
}

static void
s_runner_drop_jobs (s_runner_t *r)
{
    while (r->head) {
        s_batch_t *batch = r->head;
        r->head = batch->next;
        s_batch_destroy (&batch);
    }
    r->tail = NULL;
    r->queued = 0;
}

/*  Takes a DISPATCH (the note's two frames) from the I/O thread. */
static int
s_runner_take_jobs (s_runner_t *r, s_note_t *note)
{
    const s_ctl_t *ctl = &note->ctl;
    s_batch_t *batch = (s_batch_t *)calloc (1, sizeof *batch);
    if (!batch) {
        dp_error ("out of memory holding jobs");
        return -1;
    }
    zmq_msg_init (&batch->header);
    zmq_msg_init (&batch->body);
    zmq_msg_move (&batch->header, &note->frame[0]);
    zmq_msg_move (&batch->body, &note->frame[1]);
    dp_msg_t m;
    dp_reason_t reason =
        dp_msg_decode (zmq_msg_data (&batch->header), zmq_msg_size (&batch->header),
                       zmq_msg_data (&batch->body), zmq_msg_size (&batch->body), &m);
    /*  The I/O thread validated it already; a job of a void epoch is dropped. */
    if (reason != DP_OK || m.cmd != DP_CMD_DISPATCH || ctl->epoch != r->epoch) {
        s_batch_destroy (&batch);
        return 0;
    }
    batch->jobs = m.u.list;
    r->queued += batch->jobs.left;
    if (r->tail)
        r->tail->next = batch;
    else
        r->head = batch;
    r->tail = batch;
    return 0;
}

/*  Tells the I/O thread to acknowledge token (received in epoch). */
static void
s_runner_ack (s_runner_t *r, uint64_t token, bool accept, uint64_t epoch)
{
    s_ctl_t ctl = {.kind = PIPE_QACK, .code = accept, .epoch = epoch, .ref = token};
    s_pipe_send_ctl (r->worker->to_io, &ctl);
}

/*  Decodes a QUEUE-REPLY body the I/O thread passed on (it validated it).
    Returns true and the reply, or false. */
static bool
s_runner_decode_reply (zmq_msg_t *body, dp_queue_reply_t *reply)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, DP_CMD_QUEUE_REPLY);
    dp_msg_t m;
    if (dp_msg_decode (header, sizeof header, zmq_msg_data (body), zmq_msg_size (body), &m) !=
        DP_OK)
        return false;
    *reply = m.u.queue_reply;
    return true;
}

/*  A QUEUE-REPLY: kept if it answers the request the task waits on;
    otherwise (the task gave up waiting) a value in it is refused, so that
    it goes back to the front of its queue. */
static void
s_runner_on_reply (s_runner_t *r, const s_ctl_t *ctl, zmq_msg_t *body)
{
    dp_queue_reply_t reply;
    if (!s_runner_decode_reply (body, &reply))
        return;
    if (r->qwant && reply.req == r->qwant && !r->qgot) {
        zmq_msg_init (&r->qreply);
        zmq_msg_move (&r->qreply, body);
        r->qgot = true;
        r->qreply_epoch = ctl->epoch;
    } else if (reply.token)
        s_runner_ack (r, reply.token, false, ctl->epoch);
}

/*  Handles one message from the I/O thread, waiting for one if wait is
    true. Returns 1 if one was handled, 0 if none was waiting. */
static int
s_runner_recv (s_runner_t *r, bool wait)
{
    if (!r->inbox)
        r->inbox = dp_chan_take (r->worker->to_task);
    while (!r->inbox && wait) {
        dp_chan_wait (r->worker->to_task, -1);
        r->inbox = dp_chan_take (r->worker->to_task);
    }
    if (!r->inbox)
        return 0;
    s_note_t *note = (s_note_t *)r->inbox;
    r->inbox = note->node.next;
    const s_ctl_t ctl = note->ctl;
    switch (ctl.kind) {
    case PIPE_JOBS:
        if (s_runner_take_jobs (r, note)) {
            /*  Cannot hold the jobs, cannot answer them: leave, so that the
                broker gives them to another worker. */
            _exit (1);
        }
        break;
    case PIPE_RESET:
        s_runner_drop_jobs (r);
        r->pending = 0; /* results for the old registration: nobody wants them */
        r->epoch = ctl.epoch;
        break;
    case PIPE_STOP:
        r->stop = true;
        r->code = ctl.code;
        break;
    case PIPE_QREPLY:
        s_runner_on_reply (r, &ctl, &note->frame[0]);
        break;
    default:
        assert (false);
    }
    s_note_free (&note->node);
    return 1;
}

/*  Handles every message waiting, without blocking. */
static void
s_runner_drain (s_runner_t *r)
{
    while (!r->stop && s_runner_recv (r, false) > 0)
        ;
}

static void
s_runner_flush (s_runner_t *r, bool timed, uint64_t ref, uint64_t epoch);

/*  The task's queue requests (dp_task_link_t.queue): one at a time, sent
    by the I/O thread, answered while the task thread goes on taking the
    jobs and messages that arrive meanwhile. */
static int
s_runner_queue (void *arg, const dp_qcall_t *call, dp_qanswer_t *answer, msgpack_sbuffer *out)
{
    s_runner_t *r = (s_runner_t *)arg;
    /*  Results held for company go now: this request may wait long. */
    s_runner_flush (r, false, 0, r->epoch);
    uint64_t req = ++r->next_req;
    switch (call->cmd) {
    case DP_CMD_QUEUE_OPEN:
        dp_encode_queue_open (&r->qw, req, call->name, call->maxsize);
        break;
    case DP_CMD_QUEUE_PUT:
        dp_encode_queue_put (&r->qw, req, call->name, call->value, call->size, call->timeout_ms,
                             call->maxsize);
        break;
    case DP_CMD_QUEUE_GET:
        dp_encode_queue_get (&r->qw, req, call->name, call->timeout_ms);
        break;
    default:
        dp_encode_queue_size (&r->qw, req, call->name);
        break;
    }
    s_ctl_t ctl = {.kind = PIPE_QUEUE, .code = (int32_t)call->cmd, .ref = req};
    if (!dp_writer_ok (&r->qw)) {
        answer->code = DPOOL_ENOMEM;
        return -1;
    }
    s_pipe_send_copy (r->worker->to_io, &ctl, dp_writer_data (&r->qw), dp_writer_size (&r->qw));
    int64_t deadline =
        call->timeout_ms < 0 ? -1 : dp_now_ms () + call->timeout_ms + DP_QUEUE_SLACK_MS;
    r->qwant = req;
    r->qgot = false;
    for (;;) {
        s_runner_drain (r);
        if (r->qgot || r->stop || !dp_chan_wait (r->worker->to_task, deadline))
            break;
    }
    r->qwant = 0;
    if (!r->qgot) {
        s_ctl_t cancel = {.kind = PIPE_QCANCEL, .ref = req};
        s_pipe_send_ctl (r->worker->to_io, &cancel);
        answer->code = r->stop ? DPOOL_ECLOSED : DPOOL_ETIMEOUT;
        snprintf (answer->message, sizeof answer->message, "%s",
                  r->stop ? "the worker is stopping" : "the broker did not answer in time");
        return -1;
    }
    r->qgot = false;
    /*  s_runner_on_reply kept it only after decoding it. */
    dp_queue_reply_t reply;
    if (!s_runner_decode_reply (&r->qreply, &reply)) {
        zmq_msg_close (&r->qreply);
        answer->code = DPOOL_EPROTO;
        snprintf (answer->message, sizeof answer->message, "%s", "malformed QUEUE-REPLY");
        return -1;
    }
    answer->code = reply.code;
    answer->size = reply.size;
    answer->maxsize = reply.maxsize;
    if (reply.code != 0) {
        dp_reader_t reader;
        dp_span_t message = {NULL, 0};
        dp_reader_init (&reader, reply.value.data, reply.value.size);
        dp_mp_read_str (&reader, &message);
        snprintf (answer->message, sizeof answer->message, "%.*s", (int)message.size,
                  message.data ? (const char *)message.data : "");
    } else if (reply.token) {
        /*  The value is the task's once it holds it; else the broker's. */
        bool taken = out && msgpack_sbuffer_write (out, (const char *)reply.value.data,
                                                   reply.value.size) == 0;
        s_runner_ack (r, reply.token, taken, r->qreply_epoch);
        if (!taken) {
            answer->code = DPOOL_ENOMEM;
            snprintf (answer->message, sizeof answer->message, "out of memory for the value");
        }
    }
    zmq_msg_close (&r->qreply);
    return answer->code == 0 ? 0 : -1;
}

/*  Passes a progress report of the running job to the I/O thread. */
static int
s_runner_send_progress (s_runner_t *r, const void *value, size_t size)
{
    s_ctl_t ctl = {.kind = PIPE_PROGRESS, .epoch = r->job_epoch, .ref = r->job_ref};
    r->progress_sent = dp_now_ms ();
    s_pipe_send_copy (r->worker->to_io, &ctl, value, size);
    return 0;
}

/*  The task's progress reports (dp_task_link_t.progress): at most one per
    DP_WORKER_PROGRESS_PIPE_MS goes to the I/O thread; a report within that
    time is held (the latest wins) until the next one or the job's end. */
static int
s_runner_progress (void *arg, const void *value, size_t size)
{
    s_runner_t *r = (s_runner_t *)arg;
    if (dp_now_ms () - r->progress_sent >= DP_WORKER_PROGRESS_PIPE_MS) {
        r->progress_held = false;
        return s_runner_send_progress (r, value, size);
    }
    msgpack_sbuffer_clear (&r->progress);
    if (msgpack_sbuffer_write (&r->progress, (const char *)value, size))
        return dp_fail (DPOOL_ENOMEM);
    r->progress_held = true;
    return 0;
}

/*  Leaves a failure message in the result buffer; returns code. */
static int
s_runner_fail (s_runner_t *r, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_runner_fail (s_runner_t *r, int code, const char *format, ...)
{
    char message[DP_MAX_ERROR + 1];
    va_list args;
    va_start (args, format);
    vsnprintf (message, sizeof message, format, args);
    va_end (args);
    msgpack_sbuffer_clear (&r->result);
    if (dp_task_pack_message (&r->result, message))
        msgpack_sbuffer_clear (&r->result);
    return code;
}

/*  Runs each call of a chunk; the value is an array of [code, value]. The
    calls are unpacked one at a time, so each may nest as deep as a single
    call's arguments (the chunk's own array does not count against
    msgpack-c's limit), and the zone holds one call's objects at a time. */
static int
s_runner_chunk (s_runner_t *r, dpool_fn_t *fn, dp_span_t calls)
{
    dp_reader_t reader;
    uint32_t count;
    dp_reader_init (&reader, calls.data, calls.size);
    if (dp_mp_read_array (&reader, &count))
        return s_runner_fail (r, DPOOL_EINVAL, "the arguments of a chunk of '%s' are not an array",
                              r->task.name);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &r->result, msgpack_sbuffer_write);
    if (msgpack_pack_array (&pk, count))
        return DPOOL_ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        /*  [code, value]: codes are positive fixints, one byte, patched in
            once the call has ended. */
        static const char pair[2] = {(char)0x92, 0x00};
        if (msgpack_sbuffer_write (&r->result, pair, sizeof pair))
            return DPOOL_ENOMEM;
        size_t code_at = r->result.size - 1;
        dp_span_t item;
        msgpack_object args;
        size_t offset = 0;
        int code;
        /*  A scalar (most calls' arguments) needs no zone. */
        size_t scalar = dp_mp_unpack_scalar (reader.pos, dp_reader_left (&reader), &args);
        if (scalar)
            reader.pos += scalar;
        else
            msgpack_zone_clear (&r->zone);
        if (!scalar && (dp_mp_read_object (&reader, &item) != 0 ||
                        msgpack_unpack ((const char *)item.data, item.size, &offset, &r->zone,
                                        &args) != MSGPACK_UNPACK_SUCCESS)) {
            /*  Proto validated the chunk; this is memory running out. */
            code = DPOOL_EINVAL;
            static const char message[] = "cannot unpack the arguments";
            if (msgpack_pack_str_with_body (&pk, message, sizeof message - 1))
                return DPOOL_ENOMEM;
        } else
            code = dp_task_call (&r->task, fn, &args, &r->result);
        if (code == DPOOL_ENOMEM)
            return DPOOL_ENOMEM;
        assert (code >= 0 && code < 0x80);
        r->result.data[code_at] = (char)code;
    }
    if (r->result.size > DP_TASK_MAX_RESULT)
        return s_runner_fail (r, DPOOL_EFAILED,
                              "the results of the chunk's %u calls of '%s' total %zu bytes, "
                              "over the limit of %d",
                              count, r->task.name, r->result.size, DP_TASK_MAX_RESULT);
    return DPOOL_OK;
}

/*  Runs one job; returns its code and leaves its value (the result, or a
    message str) in r->result. */
static int
s_runner_run (s_runner_t *r, const dp_task_t *job)
{
    if (r->result.alloc > RESULT_KEEP) {
        msgpack_sbuffer_destroy (&r->result);
        msgpack_sbuffer_init (&r->result);
    }
    msgpack_sbuffer_clear (&r->result);
    void *hint = NULL;
    dpool_fn_t *fn = dp_registry_lookup ((const char *)job->fn.data, job->fn.size, &hint);
    dp_task_init (&r->task, (const char *)job->fn.data, job->fn.size, hint, job->attempt);
    r->task.link = &r->link;
    if (!fn)
        return s_runner_fail (r, DPOOL_ENOFUNC, "no function named '%s' in worker %s",
                              r->task.name, r->worker->name);

    msgpack_zone_clear (&r->zone);
    msgpack_object args;
    bool chunk = (job->flags & DP_TASK_CHUNK) != 0;
    if (!chunk) {
        size_t offset = 0;
        msgpack_unpack_return rc = msgpack_unpack ((const char *)job->args.data, job->args.size,
                                                   &offset, &r->zone, &args);
        if (rc != MSGPACK_UNPACK_SUCCESS)
            return s_runner_fail (
                r, DPOOL_EINVAL, "cannot unpack the arguments of '%s' (%s)", r->task.name,
                rc == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory" : "bad msgpack");
    }

    if (job->timeout_ms > 0) {
        s_ctl_t ctl = {.kind = PIPE_ARM,
                       .epoch = r->epoch,
                       .ref = job->id,
                       .deadline_ms = dp_now_ms () + job->timeout_ms,
                       .timeout_ms = job->timeout_ms};
        s_pipe_send_ctl (r->worker->to_io, &ctl);
    }
    int code =
        chunk ? s_runner_chunk (r, fn, job->args) : dp_task_call (&r->task, fn, &args, &r->result);
    if (code == DPOOL_ENOMEM)
        msgpack_sbuffer_clear (&r->result);
    return code;
}

/*  Takes the next job from the batches, if any. */
static bool
s_runner_next (s_runner_t *r, dp_task_t *job)
{
    while (r->head) {
        if (dp_list_next_task (&r->head->jobs, DP_CMD_DISPATCH, job)) {
            r->queued--;
            return true;
        }
        s_batch_t *batch = r->head;
        r->head = batch->next;
        if (!r->head)
            r->tail = NULL;
        s_batch_destroy (&batch);
    }
    return false;
}

/*  The last run time of fn, or NULL if not known. */
static uint32_t *
s_runner_pace (s_runner_t *r, dpool_fn_t *fn)
{
    for (unsigned i = 0; fn && i < r->npaces; i++)
        if (r->paces[i].fn == fn)
            return &r->paces[i].run_us;
    return NULL;
}

/*  Adds a finished job's result to the DONE batch. */
static void
s_runner_add_result (s_runner_t *r, uint64_t ref, int code, uint32_t run_us)
{
    if (r->pending == 0) {
        dp_list_begin (&r->done);
        r->first_pending = dp_now_ms ();
    }
    if (code != 0 && r->result.size == 0)
        dp_list_add_error_run (&r->done, ref, code, dpool_strerror (code), run_us);
    else
        dp_list_add_result_run (&r->done, ref, code, r->result.data, r->result.size, run_us);
    r->pending++;
}

/*  Hands the DONE batch to the I/O thread. timed says that job ref (of
    epoch), which had a deadline, is in it. */
static void
s_runner_flush (s_runner_t *r, bool timed, uint64_t ref, uint64_t epoch)
{
    if (r->pending == 0)
        return;
    dp_list_end (&r->done);
    s_ctl_t ctl = {
        .kind = PIPE_DONE, .code = timed ? 1 : 0, .epoch = epoch, .ref = ref, .count = r->pending};
    if (!dp_writer_ok (&r->done)) {
        /*  Out of memory building it: the process cannot answer for its
            jobs; leaving makes the broker give them to others. */
        dp_error ("out of memory building results");
        _exit (1);
    }
    /*  A large body goes over without a copy. */
    zmq_msg_t body;
    if (dp_wire_msg_take (&body, &r->done) != 0) {
        dp_error ("out of memory passing results on");
        _exit (1);
    }
    /*  After what this thread queued before it: a job's ARM and progress
        go first. */
    s_pipe_send (r->worker->to_io, &ctl, &body, 1);
    zmq_msg_close (&body);
    r->pending = 0;
    if (r->done.sbuf.alloc > RESULT_KEEP) {
        dp_writer_fini (&r->done);
        dp_writer_init (&r->done);
    }
}

static void
s_runner_loop (s_runner_t *r)
{
    while (!r->stop) {
        if (r->queued == 0 || r->retiring) {
            s_runner_recv (r, true);
            continue;
        }
        s_runner_drain (r);
        dp_task_t job;
        if (r->stop || !s_runner_next (r, &job))
            continue;
        /*  Results wait for company only in front of a job known to be
            quick: before a slow job, or one not yet timed, they go now. */
        void *hint;
        dpool_fn_t *fn = dp_registry_lookup ((const char *)job.fn.data, job.fn.size, &hint);
        uint32_t *last_run = s_runner_pace (r, fn);
        if (r->pending > 0 && (!last_run || *last_run >= DP_WORKER_DONE_DELAY_MS * 1000))
            s_runner_flush (r, false, 0, r->epoch);
        atomic_store (&r->worker->busy, true);
        if (atomic_load (&r->worker->stopping)) {
            atomic_store (&r->worker->busy, false);
            break;
        }
        uint64_t ref = job.id;
        uint64_t epoch = r->epoch;
        r->job_ref = ref;
        r->job_epoch = epoch;
        r->progress_held = false;
        struct timespec began, ended;
        clock_gettime (CLOCK_MONOTONIC, &began);
        int code = s_runner_run (r, &job);
        clock_gettime (CLOCK_MONOTONIC, &ended);
        int64_t run_us = (int64_t)(ended.tv_sec - began.tv_sec) * 1000000 +
                         (ended.tv_nsec - began.tv_nsec) / 1000;
        atomic_store (&r->worker->busy, false);
        /*  A progress report held back goes before the result. */
        if (r->progress_held)
            s_runner_send_progress (r, r->progress.data, r->progress.size);
        r->progress_held = false;
        if (fn) {
            if (!last_run && r->npaces < RUNNER_PACES) {
                r->paces[r->npaces].fn = fn;
                last_run = &r->paces[r->npaces++].run_us;
            }
            if (last_run)
                *last_run = run_us < 0 ? 0 : run_us > UINT32_MAX ? UINT32_MAX : (uint32_t)run_us;
        }
        /*  A registration that ended while it ran (a RESET came while the
            task waited on a queue) took the job back: its result must not
            join a batch that goes out under the new one, whose refs start
            over. */
        if (epoch == r->epoch)
            s_runner_add_result (r, ref, code,
                                 run_us < 0            ? 0
                                 : run_us > UINT32_MAX ? UINT32_MAX
                                                       : (uint32_t)run_us);
        /*  Jobs that arrived while it ran count as queued: results of a
            run of short jobs go out together, each slow or timed job's at
            once. */
        s_runner_drain (r);
        r->retiring = r->max_tasks > 0 && ++r->ran >= r->max_tasks;
        if (job.timeout_ms > 0 || r->queued == 0 || r->pending >= DP_WORKER_DONE_BATCH ||
            dp_writer_size (&r->done) > DONE_LIMIT / 2 || r->retiring ||
            dp_now_ms () - r->first_pending >= DP_WORKER_DONE_DELAY_MS)
            s_runner_flush (r, job.timeout_ms > 0, ref, epoch);
        if (r->retiring) {
            /*  The last results went first; the I/O thread leaves and stops
                this thread. */
            s_ctl_t retire = {.kind = PIPE_RETIRE, .epoch = epoch};
            s_pipe_send_ctl (r->worker->to_io, &retire);
        }
    }
}

/*  ---------------------------------------------------------------------------
    Start and stop.
*/

void
dp_worker_config_init (dp_worker_config_t *config)
{
    assert (config);
    memset (config, 0, sizeof *config);
    config->endpoint = DP_DEFAULT_CONNECT;
}

/*  Fills the worker's settings from config. Returns 0 or a dpool_error_t. */
static int
s_worker_setup (s_worker_t *w, const dp_worker_config_t *config)
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
    w->sigfd = -1;
    atomic_init (&w->busy, false);
    atomic_init (&w->stopping, false);
    return 0;
}

static s_io_t *
s_io_new (s_worker_t *w)
{
    s_io_t *io = (s_io_t *)calloc (1, sizeof *io);
    if (!io)
        return NULL;
    io->worker = w;
    io->state = IO_REGISTERING;
    io->backoff_ms = DP_RECONNECT_MS;
    io->heartbeat_ms = w->heartbeat_ms;
    io->expiry_ms = w->expiry_ms;
    io->last_send = io->last_recv = dp_now_ms ();
    dp_writer_init (&io->ready);
    dp_writer_init (&io->empty);
    dp_writer_init (&io->done_w);
    dp_writer_init (&io->qw);
    msgpack_sbuffer_init (&io->progress);
    size_t count;
    const char *const *names = dp_registry_names (&count);
    dp_encode_ready (&io->ready, w->name, (uint64_t)getpid (), w->host, w->credit, names, count);
    dp_encode_empty (&io->empty);
    return io;
}

static void
s_io_destroy (s_io_t **self_p)
{
    if (*self_p) {
        s_io_t *io = *self_p;
        dp_writer_fini (&io->ready);
        dp_writer_fini (&io->empty);
        dp_writer_fini (&io->done_w);
        dp_writer_fini (&io->qw);
        msgpack_sbuffer_destroy (&io->progress);
        s_io_queue_drop (io);
        free (io);
        *self_p = NULL;
    }
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

int
dp_worker_run (const dp_worker_config_t *config)
{
    assert (config);
    s_worker_t w;
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
        pthread_sigmask (SIG_SETMASK, &saved_mask, NULL);
        return DP_WORKER_INIT_FAILED;
    }

    s_runner_t runner;
    memset (&runner, 0, sizeof runner);
    runner.worker = &w;
    runner.link.queue = s_runner_queue;
    runner.link.progress = s_runner_progress;
    runner.link.arg = &runner;
    runner.max_tasks = config->max_tasks > 0 ? config->max_tasks : 0;
    dp_writer_init (&runner.qw);
    msgpack_sbuffer_init (&runner.progress);
    msgpack_zone_init (&runner.zone, MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_sbuffer_init (&runner.result);
    dp_writer_init (&runner.done);

    s_io_t *io = NULL;
    pthread_t thread;
    bool started = false;
    code = DPOOL_ESYS;
    w.ctx = w.sigfd >= 0 ? zmq_ctx_new () : NULL;
    if (!w.ctx)
        dp_error ("cannot start the worker: %s", strerror (errno));
    else if (!(w.to_task = dp_chan_new (DP_CHAN_WAIT)) || !(w.to_io = dp_chan_new (DP_CHAN_POLL)))
        dp_error ("cannot make the worker's pipe: %s", strerror (errno));
    else if (!(io = s_io_new (&w)))
        code = DPOOL_ENOMEM;
    else if (pthread_create (&thread, NULL, s_io_main, io) != 0)
        dp_error ("cannot start the worker's I/O thread");
    else
        started = true;

    if (started) {
        dp_info ("worker %s serving %zu functions, credit %u, broker %s", w.name, count, w.credit,
                 w.endpoint);
        s_runner_loop (&runner);
        code = runner.code;
        /*  A stop from the task side: wake the I/O thread the same way. */
        if (!atomic_load (&w.stopping))
            pthread_kill (thread, SIGTERM);
        pthread_join (thread, NULL);
    }
    s_runner_drop_jobs (&runner);
    msgpack_zone_destroy (&runner.zone);
    msgpack_sbuffer_destroy (&runner.result);
    msgpack_sbuffer_destroy (&runner.progress);
    dp_writer_fini (&runner.qw);
    dp_writer_fini (&runner.done);
    s_io_destroy (&io);
    while (runner.inbox) {
        dp_chan_node_t *next = runner.inbox->next;
        s_note_free (runner.inbox);
        runner.inbox = next;
    }
    dp_chan_destroy (&w.to_task, s_note_free);
    dp_chan_destroy (&w.to_io, s_note_free);
    if (w.ctx)
        zmq_ctx_term (w.ctx);
    if (w.sigfd >= 0)
        close (w.sigfd);
    pthread_sigmask (SIG_SETMASK, &saved_mask, NULL);
    if (code)
        return dp_fail (code);
    return runner.retiring ? DP_WORKER_RETIRED : 0;
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
    return rc;
}

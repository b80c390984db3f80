/*  dp_worker_io.c - the worker's I/O thread: the one owner of its sockets
    and its timers.

    It keeps the DEALER connected to the broker (and, while registering,
    the previous attempt's socket as the spare), and every timer:
    registration and its backoff, heartbeats, the broker's expiry, progress
    pacing, and the deadline of the running job. It reads every message
    from the broker and hands the task thread what is the task thread's
    (jobs, resets, the lane token of a registration, queue replies, stop)
    as notes in to_task; it sends to the broker what the task thread puts
    in to_io (DONE batches, progress, queue requests and
    acknowledgements), in the order it was put. Once the task thread's own
    lane is attached (dp_worker_runner.c), most jobs and results pass this
    thread by; it still keeps the registration, the heartbeats, the queue
    requests and the deadline of a timed job. Its state,
    dp_worker_io_t, is its own; it shares nothing else with the task thread
    but the atomics of dp_worker_t (dp_worker_int.h).

    One loop: run the timers that are due, then one poll(2) on the queue's
    eventfd, the signalfd and the sockets' descriptors (see s_io_loop), then
    handle what woke it.

    Handshakes: while registering, the DEALER of the latest attempt is
    watched for handshakes that fail (dp_handshake.h): the worker says why,
    and gives up after handshake_timeout_ms of nothing but failures. Once
    registered the watch is off, so that it costs nothing on the way of
    jobs and results.

    Epochs: every (re)registration starts a new epoch. Jobs carry the epoch
    they arrived in; a result of an older epoch is dropped, since the broker
    that gave the job has forgotten it, and a RESET tells the task thread to
    drop the jobs it holds from before.
*/
#define _GNU_SOURCE
#include "dp_handshake.h"
#include "dp_exec.h"
#include "dp_registry.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dp_worker_int.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

typedef enum { IO_REGISTERING, IO_ACTIVE } s_state_t;

/*  The I/O thread's own state, sockets included: no other thread reads or
    writes it while that thread runs. */
struct dp_worker_io_t {
    dp_worker_t *worker;
    void *dealer; /* NULL while waiting to reconnect */
    void *spare;  /* REGISTERING: the previous attempt's socket, for a late WELCOME */
    s_state_t state;
    bool done;
    bool refused;          /* it gave up: its handshakes kept failing */
    dp_handshake_t *watch; /* REGISTERING: watches the DEALER's handshakes */
    int64_t waiting_since; /* ms: REGISTERING: when the registration began */
    int64_t wait_warn_at;  /* ms: REGISTERING: when to warn that no broker answers */
    bool registered;       /* a WELCOME came, once at least */
    int64_t started;       /* ms: when the thread began */
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
};

/*  Tells the task thread about a new epoch: jobs it holds are void. */
static void
s_io_reset_jobs (dp_worker_io_t *io)
{
    io->epoch++;
    io->pending = 0;
    dp_writer_reset (&io->done_w);
    dp_note_ctl_t ctl = {.kind = DP_NOTE_RESET, .epoch = io->epoch};
    dp_note_send_ctl (io->worker->to_task, &ctl);
}

/*  Sends a message to the broker; never blocks. Returns 0 or -1. */
static int
s_io_send (dp_worker_io_t *io, dp_cmd_t cmd, const dp_writer_t *writer)
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
s_io_close (dp_worker_io_t *io, void **socket_p)
{
    if (*socket_p) {
        if (*socket_p == dp_handshake_socket (io->watch))
            dp_handshake_detach (io->watch);
        int zero = 0;
        zmq_setsockopt (*socket_p, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close (*socket_p);
        *socket_p = NULL;
    }
}

/*  Closes a socket that may have registered with the broker, after a BYE so
    that the broker forgets it at once (the BYE goes out within linger). */
static void
s_io_close_with_bye (dp_worker_io_t *io, void **socket_p)
{
    if (*socket_p) {
        if (*socket_p == dp_handshake_socket (io->watch))
            dp_handshake_detach (io->watch);
        dp_wire_send_writer (*socket_p, NULL, 0, DP_CMD_BYE, &io->empty, ZMQ_DONTWAIT);
        zmq_close (*socket_p);
        *socket_p = NULL;
    }
}

static void
s_io_close_dealer (dp_worker_io_t *io)
{
    io->dealer_quiet = false;
    s_io_close (io, &io->dealer);
    s_io_close (io, &io->spare);
}

/*  Replaces the DEALER with a fresh one connected to the broker; with
    keep_spare, the old one stays open as the spare (replacing any spare).
    Returns 0, or -1 with errno if the endpoint cannot be connected. */
static int
s_io_open_dealer (dp_worker_io_t *io, bool keep_spare)
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
        dp_curve_apply (dealer, &io->worker->curve, false)) {
        int saved = errno;
        zmq_close (dealer);
        errno = saved;
        return -1;
    }
    /*  Watched from before its connect, so that no handshake is missed; a
        socket that cannot be watched still serves. */
    dp_handshake_attach (io->watch, dealer);
    if (zmq_connect (dealer, io->worker->endpoint)) {
        int saved = errno;
        dp_handshake_detach (io->watch);
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
s_io_stop (dp_worker_io_t *io, int code)
{
    atomic_store (&io->worker->stopping, true);
    if (atomic_load (&io->worker->busy)) {
        dp_info ("abandoning the running task");
        dp_exec_kill_running (); /* a command of dpool.exec must not outlive it */
        if (atomic_load (&io->worker->gone))
            _exit (DP_WORKER_EXIT_GONE);
        _exit (code == 0 ? 0 : 1);
    }
    dp_note_ctl_t ctl = {.kind = DP_NOTE_STOP, .code = code};
    dp_note_send_ctl (io->worker->to_task, &ctl);
    io->done = true;
}

/*  Registered no more: from now on, the time without an answer counts, and
    handshakes are watched again (by s_io_open_dealer). */
static void
s_io_begin_waiting (dp_worker_io_t *io, int64_t now)
{
    io->waiting_since = now;
    io->wait_warn_at = now + DP_WORKER_WAIT_WARN_MS;
}

/*  leave_with_broker: the broker left (why says how); the worker ends
    with it. */
static void
s_io_gone (dp_worker_io_t *io, const char *why)
{
    dp_info ("%s: leaving with the broker at %s", why, io->worker->endpoint);
    atomic_store (&io->worker->gone, true);
    s_io_close_dealer (io);
    s_io_stop (io, 0);
}

/*  Registering: true, after ending the worker, if it waited too long. The
    first registration may take reach_ms; with leave_with_broker, a later
    one may take the broker's expiry: a broker that was there and no
    longer answers is gone. */
static bool
s_io_register_expired (dp_worker_io_t *io, int64_t now)
{
    if (!io->registered && io->worker->reach_ms > 0 && now - io->started >= io->worker->reach_ms) {
        dp_error ("no dpool broker answered at %s within %d ms", io->worker->endpoint,
                  io->worker->reach_ms);
        s_io_close_dealer (io);
        s_io_stop (io, DPOOL_EUNREACHABLE);
        return true;
    }
    if (io->registered && io->worker->leave_with_broker &&
        now - io->waiting_since >= io->expiry_ms) {
        s_io_gone (io, "the broker did not welcome this worker back");
        return true;
    }
    return false;
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
s_io_register (dp_worker_io_t *io, s_socket_t socket)
{
    s_io_reset_jobs (io);
    int64_t now = dp_now_ms ();
    if (io->state == IO_ACTIVE)
        s_io_begin_waiting (io, now);
    io->state = IO_REGISTERING;
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
s_io_flush (dp_worker_io_t *io)
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
s_io_wait_bye (dp_worker_io_t *io)
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
s_io_leave (dp_worker_io_t *io)
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
s_io_deadline (dp_worker_io_t *io)
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
    dp_exec_kill_running ();
    _exit (DP_WORKER_EXIT_DEADLINE);
}

/*  Sends the pending queue request unless it went out in this
    registration already; held while registering. */
static void
s_io_queue_send (dp_worker_io_t *io)
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
s_io_queue_drop (dp_worker_io_t *io)
{
    if (io->qpending) {
        zmq_msg_close (&io->qbody);
        io->qpending = false;
    }
}

/*  Hands the task thread a QUEUE-REPLY body. */
static void
s_io_queue_reply (dp_worker_io_t *io, const void *body, size_t size)
{
    dp_note_ctl_t ctl = {.kind = DP_NOTE_QREPLY, .epoch = io->epoch};
    dp_note_send_copy (io->worker->to_task, &ctl, body, size);
}

/*  Registered (again): a request held while registering goes out now. One
    sent in an earlier registration is sent again if it is a GET (its value,
    if the broker lent one, went back when the worker registered again);
    anything else may or may not have been carried out, so it fails. */
static void
s_io_queue_resume (dp_worker_io_t *io)
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
s_io_on_queue_reply (dp_worker_io_t *io, const dp_queue_reply_t *reply, dp_wire_msg_t *msg)
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
s_io_progress_flush (dp_worker_io_t *io)
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
s_io_on_progress (dp_worker_io_t *io, const dp_note_ctl_t *ctl, zmq_msg_t *value)
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
s_io_retire (dp_worker_io_t *io)
{
    dp_info ("ran its last task (max_tasks); retiring");
    s_io_leave (io);
    s_io_stop (io, 0);
}

/*  A message from the task thread. */
static void
s_io_on_task (dp_worker_io_t *io, const dp_note_ctl_t *ctl, zmq_msg_t *value)
{
    switch (ctl->kind) {
    case DP_NOTE_QUEUE:
        s_io_queue_drop (io);
        zmq_msg_init (&io->qbody);
        zmq_msg_move (&io->qbody, value);
        io->qpending = true;
        io->qreq = ctl->ref;
        io->qcmd = (dp_cmd_t)ctl->code;
        io->qsent_epoch = 0;
        s_io_queue_send (io);
        return;
    case DP_NOTE_QCANCEL:
        if (io->qpending && io->qreq == ctl->ref)
            s_io_queue_drop (io);
        return;
    case DP_NOTE_QACK:
        if (ctl->epoch == io->epoch && io->state == IO_ACTIVE) {
            dp_encode_queue_ack (&io->qw, ctl->ref, ctl->code != 0);
            s_io_send (io, DP_CMD_QUEUE_ACK, &io->qw);
        }
        return;
    case DP_NOTE_PROGRESS:
        s_io_on_progress (io, ctl, value);
        return;
    case DP_NOTE_RETIRE:
        s_io_retire (io);
        return;
    case DP_NOTE_LANE_LOST:
        if (ctl->epoch == io->epoch && io->state == IO_ACTIVE) {
            dp_info ("the broker lost this worker's lane; registering again");
            io->backoff_ms = DP_RECONNECT_MS;
            s_io_register (io, SOCKET_SAME);
        }
        return;
    default:
        break;
    }
    if (ctl->kind == DP_NOTE_ARM) {
        io->armed = true;
        io->armed_ref = ctl->ref;
        io->armed_epoch = ctl->epoch;
        io->deadline = ctl->deadline_ms;
        io->armed_timeout = ctl->timeout_ms;
        return;
    }
    assert (ctl->kind == DP_NOTE_DONE);
    if (ctl->code == 1 && io->armed && io->armed_ref == ctl->ref && io->armed_epoch == ctl->epoch)
        io->armed = false;
    /*  A progress report held back goes out before the results: its job's
        may be among them. */
    s_io_progress_flush (io);
    if (ctl->epoch != io->epoch || io->state != IO_ACTIVE || !io->dealer) {
        dp_debug ("dropping results of an old registration");
        return;
    }
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
s_io_drain_notes (dp_worker_io_t *io)
{
    dp_chan_node_t *node = dp_chan_take (io->worker->to_io);
    while (node) {
        dp_note_t *note = (dp_note_t *)node;
        node = node->next;
        if (!io->done)
            s_io_on_task (io, &note->ctl, &note->frame[0]);
        dp_note_free (&note->node);
    }
}

/*  Hands a DISPATCH (jobs) over to the task thread, frames and all. A note
    carries two frames: jobs whose arguments came in payload frames (only
    before the lane is attached) go over inline, copied. */
static void
s_io_forward_jobs (dp_worker_io_t *io, const dp_list_t *jobs, dp_wire_msg_t *msg)
{
    atomic_fetch_add (&io->worker->held, jobs->left);
    dp_note_ctl_t ctl = {.kind = DP_NOTE_JOBS, .epoch = io->epoch};
    if (msg->count > 2) {
        dp_list_t all = *jobs;
        dp_list_inline (&io->qw, DP_CMD_DISPATCH, &all);
        zmq_msg_close (&msg->frames[1]);
        if (dp_wire_msg_take (&msg->frames[1], &io->qw) != 0) {
            dp_error ("out of memory passing jobs on");
            _exit (1);
        }
    }
    dp_note_send (io->worker->to_task, &ctl, msg->frames, 2);
}

/*  WELCOME: registered. Also on a WELCOME while active, which answers a
    second READY: the broker took back the jobs it gave before, so they are
    dropped here too. */
static void
s_io_on_welcome (dp_worker_io_t *io, const dp_welcome_t *welcome)
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
        bool first = !io->registered;
        io->state = IO_ACTIVE;
        io->registered = true;
        io->backoff_ms = DP_RECONNECT_MS;
        dp_handshake_detach (io->watch);
        dp_handshake_reset (io->watch);
        dp_info ("registered with broker %.*s at %s (heartbeat %d ms, expiry %d ms)",
                 (int)welcome->broker.size, (const char *)welcome->broker.data,
                 io->worker->endpoint, io->heartbeat_ms, io->expiry_ms);
        if (first && io->worker->notify_service)
            dp_service_notify ("READY=1");
    }
    if (welcome->token != 0) {
        /*  The task thread opens its lane for this registration. */
        dp_note_ctl_t ctl = {.kind = DP_NOTE_LANE, .epoch = io->epoch, .ref = welcome->token};
        dp_note_send_ctl (io->worker->to_task, &ctl);
    }
    s_io_queue_resume (io);
}

/*  One valid message from the broker. Returns false if the socket it came
    on was closed. */
static bool
s_io_on_broker (dp_worker_io_t *io, dp_msg_t *m, dp_wire_msg_t *msg)
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
        if (io->worker->leave_with_broker) {
            s_io_gone (io, "the broker said goodbye");
            return false;
        }
        dp_info ("the broker said goodbye; registering again in %d ms", io->backoff_ms);
        s_io_reset_jobs (io);
        s_io_close_dealer (io);
        io->state = IO_REGISTERING;
        s_io_begin_waiting (io, dp_now_ms ());
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
        } else if (m->u.error.code == DPOOL_EDENIED && io->state == IO_REGISTERING)
            /*  The broker's key configuration denies this key the worker
                right: said at each try (after the backoff), since a reload
                of the configuration (SIGHUP) may grant it. */
            dp_error ("the broker at %s denies this worker: %.*s", io->worker->endpoint,
                      (int)m->u.error.message.size, (const char *)m->u.error.message.data);
        else
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
s_io_dealer_readable (dp_worker_io_t *io)
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
s_io_drain_dealer (dp_worker_io_t *io)
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
s_io_drain_spare (dp_worker_io_t *io)
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
s_io_on_signal (dp_worker_io_t *io)
{
    struct signalfd_siginfo info;
    ssize_t n = read (io->worker->sigfd, &info, sizeof info);
    int sig = n == (ssize_t)sizeof info ? (int)info.ssi_signo : 0;
    dp_info ("signal %d: leaving", sig);
    s_io_leave (io);
    s_io_stop (io, 0);
}

/*  The heartbeat interval and expiry in force: a worker that holds no job
    is idle, and both sides beat DP_IDLE_FACTOR times as slowly (§6). The
    task thread counts the jobs held (dp_worker_t.held), since jobs that
    come on its lane pass this thread by. */
static int64_t
s_io_beat_ms (const dp_worker_io_t *io)
{
    return DP_IDLE_SCALED (io->heartbeat_ms, atomic_load (&io->worker->held) == 0);
}

static int64_t
s_io_expiry_ms (const dp_worker_io_t *io)
{
    return DP_IDLE_SCALED (io->expiry_ms, atomic_load (&io->worker->held) == 0);
}

/*  When the broker was last heard from: on this thread's DEALER, or on the
    task thread's lane. A worker idle on its main connection while jobs
    come on its lane has heard from the broker all along. */
static int64_t
s_io_heard (const dp_worker_io_t *io)
{
    int64_t lane = atomic_load (&io->worker->lane_heard);
    return lane > io->last_recv ? lane : io->last_recv;
}

/*  Handshakes with the broker kept failing (dp_handshake.h): leave, and
    tell dp_worker_run. */
static void
s_io_give_up (dp_worker_io_t *io)
{
    dp_error ("no handshake with %s succeeded in %d s: giving up", io->worker->endpoint,
              io->worker->handshake_timeout_ms / 1000);
    io->refused = true;
    s_io_leave (io);
    s_io_stop (io, 0);
}

/*  The timers of a registration: give up once the handshakes kept failing
    (not while a task of an earlier registration still runs: stopping would
    end the process under it), warn now and then while nothing answers and
    no handshake fails (no broker there yet), and READY again when due. */
static void
s_io_registering (dp_worker_io_t *io, int64_t now)
{
    if (dp_handshake_expired (io->watch, now) && !atomic_load (&io->worker->busy)) {
        s_io_give_up (io);
        return;
    }
    if (now >= io->wait_warn_at && !dp_handshake_failing (io->watch)) {
        dp_warn ("no answer from a broker at %s for %lld s; still trying", io->worker->endpoint,
                 (long long)(now - io->waiting_since) / 1000);
        io->wait_warn_at = now + (int64_t)DP_WORKER_WAIT_WARN_MS * DP_WORKER_WAIT_WARN_FACTOR;
    }
    if (now >= io->next_ready)
        s_io_register (io, SOCKET_RETRY);
}

/*  Runs every timer that is due. */
static void
s_io_timers (dp_worker_io_t *io)
{
    int64_t now = dp_now_ms ();
    if (io->armed && now >= io->deadline) {
        /*  The result may be in the queue already: a job that finished in
            time is not killed. */
        s_io_drain_notes (io);
        if (io->armed)
            s_io_deadline (io);
    }
    if (io->state == IO_REGISTERING) {
        if (!s_io_register_expired (io, now))
            s_io_registering (io, now);
        return;
    }
    if (now - s_io_heard (io) >= s_io_expiry_ms (io) && io->worker->leave_with_broker) {
        s_io_gone (io, "the broker went silent");
        return;
    }
    if (now - s_io_heard (io) >= s_io_expiry_ms (io)) {
        dp_warn ("the broker has been silent for %lld ms; connecting again",
                 (long long)(now - s_io_heard (io)));
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
s_io_timeout (dp_worker_io_t *io)
{
    int64_t next;
    if (io->state == IO_REGISTERING) {
        next = io->next_ready;
        if (io->wait_warn_at < next)
            next = io->wait_warn_at;
        if (dp_handshake_deadline (io->watch) < next)
            next = dp_handshake_deadline (io->watch);
        if (!io->registered && io->worker->reach_ms > 0 &&
            io->started + io->worker->reach_ms < next)
            next = io->started + io->worker->reach_ms;
        if (io->registered && io->worker->leave_with_broker &&
            io->waiting_since + io->expiry_ms < next)
            next = io->waiting_since + io->expiry_ms;
    } else {
        next = s_io_heard (io) + s_io_expiry_ms (io);
        if (io->last_send + DP_HEARTBEAT_ALONE (s_io_beat_ms (io)) < next)
            next = io->last_send + DP_HEARTBEAT_ALONE (s_io_beat_ms (io));
        if (io->pending > 0 && io->first_pending + DP_WORKER_DONE_DELAY_MS < next)
            next = io->first_pending + DP_WORKER_DONE_DELAY_MS;
        if (io->progress_pending && io->progress_sent + DP_PROGRESS_MS < next)
            next = io->progress_sent + DP_PROGRESS_MS;
    }
    if (io->armed && io->deadline < next)
        next = io->deadline;
    /*  The task thread may take jobs on its lane meanwhile, which makes
        the worker busy and its timers shorter: look again within a beat. */
    int64_t now = dp_now_ms ();
    if (now + io->heartbeat_ms < next)
        next = now + io->heartbeat_ms;
    int64_t left = next - now;
    return left < 0 ? 0 : left > INT_MAX ? INT_MAX : (long)left;
}

static void
s_io_loop (dp_worker_io_t *io)
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
        /*  The handshake watch (registering only): read until empty, so
            that its descriptor fires on the next event. */
        bool watched = dp_handshake_socket (io->watch) != NULL;
        if (watched)
            dp_handshake_read (io->watch);
        struct pollfd fds[5] = {{dp_chan_fd (io->worker->to_io), POLLIN, 0},
                                {io->worker->sigfd, POLLIN, 0},
                                {spare ? dp_wire_fd (spare) : -1, POLLIN, 0},
                                {dealer ? dp_wire_fd (dealer) : -1, POLLIN, 0},
                                {watched ? dp_handshake_fd (io->watch) : -1, POLLIN, 0}};
        long timeout = spare_in || dealer_in ? 0 : s_io_timeout (io);
        int rc = poll (fds, 5, (int)timeout);
        int saved = errno;
        if (rc < 0) {
            if (saved == EINTR)
                continue;
            dp_error ("poll: %s", strerror (saved));
            s_io_stop (io, DPOOL_ESYS);
            break;
        }
        if (fds[0].revents & POLLIN)
            s_io_drain_notes (io);
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

bool
dp_worker_io_refused (const dp_worker_io_t *self)
{
    assert (self);
    return self->refused;
}

void *
dp_worker_io_main (void *arg)
{
    dp_worker_io_t *io = (dp_worker_io_t *)arg;
    s_io_loop (io);
    s_io_close_dealer (io);
    return NULL;
}

dp_worker_io_t *
dp_worker_io_new (dp_worker_t *w)
{
    dp_worker_io_t *io = (dp_worker_io_t *)calloc (1, sizeof *io);
    if (!io)
        return NULL;
    io->worker = w;
    io->state = IO_REGISTERING;
    io->backoff_ms = DP_RECONNECT_MS;
    io->heartbeat_ms = w->heartbeat_ms;
    io->expiry_ms = w->expiry_ms;
    io->last_send = io->last_recv = dp_now_ms ();
    s_io_begin_waiting (io, io->last_send);
    io->watch = dp_handshake_new (w->ctx, w->endpoint, w->curve.on, w->handshake_timeout_ms);
    if (!io->watch) {
        free (io);
        return NULL;
    }
    io->started = io->last_send;
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

void
dp_worker_io_destroy (dp_worker_io_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_worker_io_t *io = *self_p;
        /*  Its sockets were closed when its thread ended, the watched one
            detached first. */
        dp_handshake_destroy (&io->watch);
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

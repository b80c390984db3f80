/*  dp_client_actor.c - a pool's I/O thread.

    The actor owns the pool's DEALER for its whole life: no other thread
    sends, receives or polls on it. API threads reach the actor through
    the pool's shared state (dp_client.h) and one eventfd (dp_client_wake);
    it is the actor's only way to be woken, for submits, cancels, status,
    queue requests, terminate and stop alike.

    Locking: the actor takes the pool's mutex only to swap shared state in
    or out: the outbox, the CANCEL and STATUS requests, the tasks a RESULT
    names. It never holds it while it sends, receives, or runs a callback
    (dp_result_task_done runs them after unlocking).
*/
#include "dp_client_actor.h"

#include "dp_client.h"
#include "dp_pool_batch.h"
#include "dp_pool_queue.h"
#include "dp_result.h"
#include "dp_util.h"
#include "dp_wire.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONNECT_POLL_MS 2 /* first look for a connection that is not up yet */

/*  Messages handled from the socket before timers and requests get a turn. */
#define RECV_BURST 256

typedef struct {
    dpool_pool_t *pool;
    zsock_t *dealer;
    /*  The DEALER's last call was a recv that found nothing: all its
        commands are processed, so its descriptor fires on the next
        message and the loop need not look at its events first. */
    bool drained;
    bool welcomed;
    bool refused; /* the broker's last answer to HELLO was a refusal */
    int heartbeat_ms;
    int expiry_ms;
    int64_t last_recv;
    int64_t last_send;
    int64_t next_hello; /* when to say HELLO (or connect) next */
    int backoff;        /* current HELLO retry delay */
    int unconnected;    /* ms before trying a HELLO that found no connection yet */
    bool status_sent;   /* a STATUS is on its way */
    bool cancel_all_sent;
    dp_writer_t writer;
    dp_client_scratch_t scratch; /* for the tasks and handles one RESULT names */
    uint64_t ignored;            /* results for seqs not held */
    uint64_t malformed;          /* messages refused by proto */
    /*  Connections welcomed so far: queue requests know which one they
        went out on (dp_pool_queue.h). */
    uint64_t conn;
} s_actor_t;

/*  Makes and connects a new DEALER. Returns 0, or -1 if the endpoint is
    invalid or the socket cannot be made. */
static int
s_connect (s_actor_t *self)
{
    assert (!self->dealer);
    self->dealer = dp_client_dealer_new (self->pool);
    self->drained = false;
    return self->dealer ? 0 : -1;
}

/*  The DEALER to send on, noting the time of the send; NULL with errno
    ENOTCONN when there is none. */
static void *
s_sending (s_actor_t *self)
{
    if (!self->dealer) {
        errno = ENOTCONN;
        return NULL;
    }
    self->last_send = dp_now_ms ();
    self->drained = false; /* a send may process the socket's commands */
    return zsock_resolve (self->dealer);
}

/*  Sends the writer's body as cmd. Returns 0, or -1 with errno (EAGAIN when
    there is no connection, or the broker is not reading). */
static int
s_send (s_actor_t *self, dp_cmd_t cmd, const dp_writer_t *writer)
{
    void *dealer = s_sending (self);
    return dealer ? dp_wire_send_writer (dealer, NULL, 0, cmd, writer, ZMQ_DONTWAIT) : -1;
}

/*  Says HELLO and schedules the next one after the backoff, doubled up to
    its ceiling for the time after. */
static void
s_send_hello (s_actor_t *self)
{
    dp_encode_hello (&self->writer, dp_client_session (self->pool), dp_client_name (self->pool));
    if (s_send (self, DP_CMD_HELLO, &self->writer) != 0 && errno == EAGAIN) {
        /*  No connection yet (ZMQ_IMMEDIATE keeps nothing for one): look
            again soon, a little later each time, rather than after the
            backoff meant for a HELLO that went unanswered. */
        self->next_hello = dp_now_ms () + self->unconnected;
        self->unconnected =
            self->unconnected * 2 > self->backoff ? self->backoff : self->unconnected * 2;
        return;
    }
    dp_debug ("client: HELLO to %s", dp_client_endpoint (self->pool));
    self->unconnected = CONNECT_POLL_MS;
    self->next_hello = dp_now_ms () + self->backoff;
    self->backoff =
        self->backoff * 2 > DP_RECONNECT_MAX_MS ? DP_RECONNECT_MAX_MS : self->backoff * 2;
}

/*  Drops the socket and starts over on a new one: HELLO again, with
    backoff. Tasks are resubmitted when the WELCOME comes. */
static void
s_reconnect (s_actor_t *self, const char *why)
{
    dp_info ("client: %s; reconnecting to %s", why, dp_client_endpoint (self->pool));
    zsock_destroy (&self->dealer);
    self->welcomed = false;
    self->status_sent = false;
    self->cancel_all_sent = false;
    self->backoff = DP_RECONNECT_MS;
    self->unconnected = CONNECT_POLL_MS;
    self->next_hello = dp_now_ms ();
    if (s_connect (self))
        self->next_hello += self->backoff; /* try again later */
    else
        s_send_hello (self);
}

/*  s_send for a SUBMIT batch, sent once: a large body goes without a copy
    (dp_wire_send_take), and so do its payload frames. */
static int
s_send_batch (s_actor_t *self, dp_batch_t *batch)
{
    void *dealer = s_sending (self);
    return dealer ? dp_wire_send_frames (dealer, NULL, 0, DP_CMD_SUBMIT, &batch->writer,
                                         batch->frames, batch->nframes, ZMQ_DONTWAIT)
                  : -1;
}

/*  Sends a chain of SUBMIT batches and frees it. Returns 0, or -1 if one
    could not be sent (the rest are freed too). */
static int
s_send_batches (s_actor_t *self, dp_batch_t **head)
{
    int rc = 0;
    for (dp_batch_t *batch = *head; batch && rc == 0; batch = batch->next) {
        dp_list_end (&batch->writer);
        if (dp_list_count (&batch->writer) > 0)
            rc = s_send_batch (self, batch);
    }
    dp_batch_destroy_all (head);
    return rc;
}

/*  Sends CANCEL for seqs, in lists of at most DP_MAX_BATCH. */
static int
s_send_cancels (s_actor_t *self, const uint64_t *seqs, size_t count)
{
    for (size_t at = 0; at < count; at += DP_MAX_BATCH) {
        size_t n = count - at > DP_MAX_BATCH ? DP_MAX_BATCH : count - at;
        dp_encode_cancel (&self->writer, false, seqs + at, n);
        if (s_send (self, DP_CMD_CANCEL, &self->writer))
            return -1;
    }
    return 0;
}

/*  Ends a detached chain of tasks (linked by next) with code and message,
    then releases their places if they were outstanding. */
static void
s_end_tasks (dpool_pool_t *pool, dp_ctask_t *chain, int code, const char *message,
             bool outstanding)
{
    size_t count = 0, bytes = 0;
    while (chain) {
        dp_ctask_t *task = chain;
        chain = task->next;
        task->next = NULL;
        dp_result_task_failed (task->result, task, code, message);
        bytes += task->args_size;
        dp_ctask_destroy (&task);
        count++;
    }
    if (outstanding && count) {
        dp_client_lock (pool);
        dp_client_release (pool, count, bytes);
        dp_client_unlock (pool);
    }
}

/*  Sends a queue or batch request for dp_pool_queue_send and
    dp_pool_batch_send. */
static int
s_send_queue (void *arg, dp_cmd_t cmd, const dp_writer_t *body)
{
    return s_send ((s_actor_t *)arg, cmd, body);
}

/*  Serves what API threads asked for: sends the outbox, CANCELs and a
    STATUS, queue requests, finishes task-less handles, and carries out
    terminate. Returns true when the pool asks the actor to stop. */
static bool
s_service (s_actor_t *self)
{
    dpool_pool_t *pool = self->pool;
    dp_client_requests_t asked;
    dp_client_take_requests (pool, self->welcomed, &asked);
    bool send_cancel_all = asked.ended && self->welcomed && !self->cancel_all_sent;
    bool send_status = self->welcomed && asked.status_wanted && !self->status_sent;

    bool broken = false;
    if (asked.outbox && s_send_batches (self, &asked.outbox))
        broken = true;
    if (asked.ncancels && !broken && s_send_cancels (self, asked.cancels, asked.ncancels))
        broken = true;
    if (send_status && !broken) {
        dp_encode_empty (&self->writer);
        if (s_send (self, DP_CMD_STATUS, &self->writer) == 0)
            self->status_sent = true;
    }
    if (send_cancel_all) {
        dp_encode_cancel (&self->writer, true, NULL, 0);
        if (s_send (self, DP_CMD_CANCEL, &self->writer) == 0)
            self->cancel_all_sent = true;
    }
    if (self->welcomed && !broken && dp_pool_queue_send (pool, self->conn, s_send_queue, self))
        broken = true;
    if (self->welcomed && !broken && dp_pool_batch_send (pool, self->conn, s_send_queue, self))
        broken = true;
    s_end_tasks (pool, asked.ended, DPOOL_ECANCELLED, "cancelled: the pool was terminated", true);
    s_end_tasks (pool, asked.failed, DPOOL_ENOMEM, "out of memory submitting the task", false);
    for (size_t i = 0; i < asked.finish.count; i++)
        dp_result_finish_empty (asked.finish.items[i]);
    bool stop = asked.stop;
    if (asked.terminating)
        dp_client_set_terminated (pool);
    dp_client_requests_fini (&asked);
    /*  A message that could not go out may have carried tasks: start over
        on a new connection, which resubmits everything. */
    if (broken)
        s_reconnect (self, "send to broker failed");
    return stop;
}

/*  After a WELCOME: rebuilds SUBMITs from the table (the outbox may hold
    only part of it, or tasks a previous broker already had) and sends them.
    Tasks whose cancel was asked end here as cancelled instead. */
static void
s_resubmit_all (s_actor_t *self)
{
    dp_batch_t *batches;
    dp_ctask_t *cancelled;
    int64_t count = dp_client_resubmit (self->pool, &batches, &cancelled);
    if (count < 0)
        /*  Out of memory: let the connection expire and try again then. */
        dp_error ("client: out of memory resubmitting tasks");
    else if (count) {
        dp_debug ("client: submitting %lld tasks after WELCOME", (long long)count);
        if (s_send_batches (self, &batches))
            s_reconnect (self, "send to broker failed");
    }
    s_end_tasks (self->pool, cancelled, DPOOL_ECANCELLED, "cancelled", true);
}

/*  Handles every entry of a RESULT: each names a task by seq; the first
    result for a seq finishes it, any other is ignored. */
static void
s_on_results (s_actor_t *self, dp_list_t list, dp_wire_msg_t *wire)
{
    int64_t ignored = dp_client_take_results (self->pool, list, wire, &self->scratch);
    if (ignored < 0)
        /*  The results stay with the broker's retries; this connection
            is dropped so that they are asked for again. */
        s_reconnect (self, "out of memory for results");
    else
        self->ignored += (uint64_t)ignored;
}

/*  A QUEUE-REPLY: to the request it answers, and the broker told whether
    its value was taken. */
static void
s_on_queue_reply (s_actor_t *self, const dp_queue_reply_t *reply)
{
    dp_pool_queue_ack_t ack = dp_pool_queue_reply (self->pool, self->conn, self->welcomed, reply);
    if (ack != DP_POOL_QUEUE_ACK_NONE) {
        dp_encode_queue_ack (&self->writer, reply->token, ack == DP_POOL_QUEUE_ACK_TAKEN);
        s_send (self, DP_CMD_QUEUE_ACK, &self->writer);
    }
}

/*  A WORK-STATUS: the progress of a task this pool still waits for goes to
    its handle's progress callback. The task stays in the table until this
    thread itself takes it out, so it outlives the call. */
static void
s_on_work_status (s_actor_t *self, const dp_progress_t *progress)
{
    dpool_pool_t *pool = self->pool;
    dp_client_lock (pool);
    dp_ctask_t *task = dp_client_task (pool, progress->id);
    /*  Only a task whose handle has callbacks can want its progress, and
        such a task never goes out on a lane (dpool_pool_apply): only this
        thread takes it out of the table, so it outlives the unlock. A lane
        thread may free any other task at once. */
    if (task && !dp_result_has_callbacks (task->result))
        task = NULL;
    dp_client_unlock (pool);
    if (task)
        dp_result_progress (task->result, task, progress->value);
}

/*  Stores a STATUS-REPLY for the threads waiting in dpool_pool_status, and
    its count of workers. */
static void
s_on_status (s_actor_t *self, dp_span_t map)
{
    int workers = -1;
    dp_reader_t reader;
    uint32_t pairs, count;
    dp_span_t key;
    dp_reader_init (&reader, map.data, map.size);
    if (dp_mp_read_map (&reader, &pairs) == 0)
        for (uint32_t i = 0; i < pairs; i++) {
            if (dp_mp_read_str (&reader, &key)) {
                if (dp_mp_read_object (&reader, NULL))
                    break;
            } else if (dp_span_eq (key, "workers") && dp_mp_peek (&reader) == DP_MP_ARRAY &&
                       dp_mp_read_array (&reader, &count) == 0) {
                workers = (int)count;
                break;
            }
            if (dp_mp_read_object (&reader, NULL))
                break;
        }
    uint8_t *copy = (uint8_t *)malloc (map.size ? map.size : 1);
    if (copy)
        memcpy (copy, map.data, map.size);
    self->status_sent = false;
    dp_client_set_status (self->pool, copy, map.size, workers);
}

/*  Acts on one decoded message from the broker (wire, as received: its
    results' handles may keep payload frames of it). */
static void
s_on_message (s_actor_t *self, const dp_msg_t *msg, dp_wire_msg_t *wire)
{
    switch (msg->cmd) {
    case DP_CMD_WELCOME: {
        const dp_welcome_t *welcome = &msg->u.welcome;
        self->heartbeat_ms =
            (int)(welcome->heartbeat_ms > INT32_MAX ? INT32_MAX : welcome->heartbeat_ms);
        self->expiry_ms = (int)(welcome->expiry_ms > INT32_MAX ? INT32_MAX : welcome->expiry_ms);
        dp_client_set_workers (self->pool,
                               (int)(welcome->workers > INT32_MAX ? INT32_MAX : welcome->workers));
        if (!self->welcomed) {
            dp_debug ("client: WELCOME from %.*s", (int)welcome->broker.size,
                      (const char *)welcome->broker.data);
            if (self->refused)
                dp_client_set_refused (self->pool, false);
            self->refused = false;
            self->welcomed = true;
            self->conn++;
            self->backoff = DP_RECONNECT_MS;
            s_resubmit_all (self);
            if (self->welcomed)
                s_service (self); /* a stop asked meanwhile is seen at the next wake-up */
        }
        break;
    }
    case DP_CMD_RESULT:
        s_on_results (self, msg->u.list, wire);
        break;
    case DP_CMD_STATUS_REPLY:
        s_on_status (self, msg->u.status);
        break;
    case DP_CMD_QUEUE_REPLY:
        s_on_queue_reply (self, &msg->u.queue_reply);
        break;
    case DP_CMD_WORK_STATUS:
        s_on_work_status (self, &msg->u.progress);
        break;
    case DP_CMD_ERROR:
        if (msg->u.error.code == DPOOL_ESTATE) {
            /*  The broker does not know us (it restarted), or the session
                still belongs to our previous connection: register again. */
            dp_info ("client: broker says %.*s; saying HELLO again",
                     (int)msg->u.error.message.size, (const char *)msg->u.error.message.data);
            bool was_welcomed = self->welcomed;
            self->welcomed = false;
            self->status_sent = false;
            self->cancel_all_sent = false;
            if (was_welcomed) {
                self->backoff = DP_RECONNECT_MS;
                s_send_hello (self);
            }
        } else if (msg->u.error.code == DPOOL_EREJECTED && !self->welcomed) {
            /*  Beyond the broker's bound on connections: it cuts this one
                soon, and the pool tries again after its backoff. */
            dp_error ("client: the broker refused this connection: %.*s",
                      (int)msg->u.error.message.size, (const char *)msg->u.error.message.data);
            if (!self->refused)
                dp_client_set_refused (self->pool, true);
            self->refused = true;
        } else
            dp_warn ("client: broker refused a message (%d): %.*s", (int)msg->u.error.code,
                     (int)msg->u.error.message.size, (const char *)msg->u.error.message.data);
        break;
    case DP_CMD_BYE:
        s_reconnect (self, "broker said BYE");
        break;
    case DP_CMD_HEARTBEAT:
        if (self->welcomed &&
            dp_now_ms () - self->last_send >= DP_HEARTBEAT_QUIET (self->heartbeat_ms)) {
            dp_encode_empty (&self->writer);
            s_send (self, DP_CMD_HEARTBEAT, &self->writer);
        }
        break;
    default:
        self->malformed++;
        dp_debug ("client: ignored %s from the broker", dp_cmd_name (msg->cmd));
        break;
    }
}

/*  Receives and handles what the broker sent, up to RECV_BURST messages. */
static void
s_recv (s_actor_t *self)
{
    for (int i = 0; i < RECV_BURST && self->dealer; i++) {
        dp_wire_msg_t wire;
        if (dp_wire_recv (zsock_resolve (self->dealer), &wire, ZMQ_DONTWAIT)) {
            self->drained = errno == EAGAIN;
            return;
        }
        self->last_recv = dp_now_ms ();
        dp_msg_t msg;
        dp_reason_t reason = dp_wire_decode (&wire, false, NULL, &msg);
        if (reason == DP_OK && msg.cmd == DP_CMD_BATCH_REPLY)
            /*  Handed on whole: its caller decodes it again. */
            dp_pool_batch_reply (self->pool, msg.u.batch_reply.req,
                                 zmq_msg_data (&wire.frames[wire.count - 1]),
                                 zmq_msg_size (&wire.frames[wire.count - 1]));
        else if (reason == DP_OK)
            s_on_message (self, &msg, &wire);
        else if (self->malformed++ == 0)
            dp_warn ("client: malformed message from the broker (%s)", dp_reason_name (reason));
        dp_wire_close (&wire);
    }
}

/*  HELLO retries, heartbeats and the broker's expiry. */
static void
s_on_timers (s_actor_t *self)
{
    int64_t now = dp_now_ms ();
    if (!self->dealer) {
        if (now >= self->next_hello)
            s_reconnect (self, "no socket");
    } else if (!self->welcomed) {
        if (now >= self->next_hello)
            s_send_hello (self);
    } else if (now - self->last_recv >= self->expiry_ms)
        s_reconnect (self, "broker silent past expiry");
    else if (now - self->last_send >= DP_HEARTBEAT_ALONE (self->heartbeat_ms)) {
        dp_encode_empty (&self->writer);
        s_send (self, DP_CMD_HEARTBEAT, &self->writer);
    }
}

/*  Milliseconds until the next timer is due (at least 0). */
static long
s_timeout (const s_actor_t *self)
{
    int64_t now = dp_now_ms ();
    int64_t next;
    if (!self->dealer || !self->welcomed)
        next = self->next_hello;
    else {
        next = self->last_recv + self->expiry_ms;
        if (self->last_send + DP_HEARTBEAT_ALONE (self->heartbeat_ms) < next)
            next = self->last_send + DP_HEARTBEAT_ALONE (self->heartbeat_ms);
    }
    return next > now ? (long)(next - now) : 0;
}

/*  Empties the wake eventfd. */
static void
s_drain_wake (dpool_pool_t *pool)
{
    uint64_t count;
    ssize_t rc;
    do
        rc = read (dp_client_wake_fd (pool), &count, sizeof count);
    while (rc < 0 && errno == EINTR);
}

/*  One round of the loop: polls the wake eventfd, the DEALER and the
    extension's descriptors (an embedded pool's broker) until one fires or
    a timer falls due, then serves them. Returns false when the actor must
    stop. */
static bool
s_round (s_actor_t *self, const dp_client_ext_t *ext)
{
    dpool_pool_t *pool = self->pool;
    void *dealer = self->dealer ? zsock_resolve (self->dealer) : NULL;
    /*  ZMQ_FD fires on edges: a message already queued before the last
        recv or send raises no new one, so the events are looked at first
        unless the last recv found the socket empty (drained). */
    bool inbox = dealer && !self->drained && dp_wire_readable (dealer);
    struct pollfd fds[2 + DP_CLIENT_EXT_FDS] = {{dp_client_wake_fd (pool), POLLIN, 0},
                                                {dealer ? dp_wire_fd (dealer) : -1, POLLIN, 0}};
    int nfds = 2;
    int timeout = inbox ? 0 : (int)s_timeout (self);
    if (ext) {
        nfds += ext->fds (ext->self, fds + 2);
        int wait = ext->wait_ms (ext->self);
        if (wait < timeout)
            timeout = wait;
    }
    if (poll (fds, (nfds_t)nfds, timeout) < 0) {
        if (errno != EINTR) {
            dp_error ("client: poll failed: %s", strerror (errno));
            return false;
        }
        for (int i = 0; i < nfds; i++)
            fds[i].revents = 0;
    }
    if (fds[0].revents) {
        s_drain_wake (pool);
        if (s_service (self))
            return false;
    }
    if (ext) {
        /*  What s_service just sent is the broker's now, and what the
            broker answers is the DEALER's in the same round. */
        ext->work (ext->self, fds + 2, nfds - 2);
        inbox = true;
    }
    if (self->dealer && (inbox || fds[1].revents || (!dealer && !self->drained)))
        s_recv (self);
    s_on_timers (self);
    return true;
}

/*  The actor thread: starts the extension (an embedded pool's broker, whose
    sockets it then owns), connects, tells the pool whether it could, then
    runs rounds until stopped; ends every task still held, says BYE, closes
    its DEALER and stops the extension. */
static void *
s_actor_main (void *arg)
{
    dpool_pool_t *pool = (dpool_pool_t *)arg;
    s_actor_t self;
    memset (&self, 0, sizeof self);
    self.pool = pool;
    self.heartbeat_ms = DP_HEARTBEAT_MS;
    self.expiry_ms = DP_EXPIRY_MS;
    self.backoff = DP_RECONNECT_MS;
    self.unconnected = CONNECT_POLL_MS;
    dp_writer_init (&self.writer);

    /*  An embedded pool's broker runs in this loop too: a task goes from
        SUBMIT to DISPATCH, and a result from DONE to the handle, without
        waking another thread. */
    const dp_client_ext_t *ext = dp_client_ext (pool);
    int code = ext ? ext->start (ext->self) : 0;
    bool ext_up = ext && code == 0;
    if (code == 0 && s_connect (&self))
        code = DPOOL_EINVAL; /* an endpoint ZeroMQ refuses */
    if (code && ext_up)
        ext->stop (ext->self);
    dp_client_actor_up (pool, code);
    if (code) {
        dp_writer_fini (&self.writer);
        return NULL;
    }
    s_send_hello (&self);
    while (s_round (&self, ext))
        ;

    /*  Whatever ended the loop, no handle may wait for this thread any
        more: every task still held ends cancelled, as with terminate. */
    dp_client_actor_closing (pool);
    s_service (&self);
    if (self.welcomed) {
        dp_encode_empty (&self.writer);
        s_send (&self, DP_CMD_BYE, &self.writer);
    }
    dp_client_actor_ended (pool);
    if (self.ignored || self.malformed)
        dp_debug ("client: %llu results ignored, %llu messages refused",
                  (unsigned long long)self.ignored, (unsigned long long)self.malformed);
    zsock_destroy (&self.dealer);
    if (ext)
        ext->stop (ext->self);
    dp_writer_fini (&self.writer);
    dp_client_scratch_fini (&self.scratch);
    return NULL;
}

int
dp_client_actor_start (dpool_pool_t *pool)
{
    return dp_client_start_actor (pool, s_actor_main);
}

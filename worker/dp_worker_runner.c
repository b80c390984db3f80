/*  dp_worker_runner.c - the worker's task thread: it runs the jobs the
    broker handed over, one at a time, on the thread that called
    dp_worker_run.

    It owns the jobs (DISPATCH messages, in batches), the runner state,
    dp_worker_runner_t, and one socket: its lane (PROTOCOL.md 5.7), a
    DEALER it makes, uses and closes alone. It learns from the notes in
    to_task (jobs, a new epoch, the lane token of a registration, a queue
    reply, stop) and from its lane (jobs), waiting on both when it has no
    job, and says by notes in to_io a job's deadline (ARM), its progress,
    its queue requests and their acknowledgements. The results it batches
    in a DONE body it builds itself. A batch goes when no job is left, at
    DP_WORKER_DONE_BATCH results, DP_WORKER_DONE_DELAY_MS after its first,
    after a job with a timeout or an urgent one, and before a job whose
    function is slow or has not been run yet. Jobs run in the order they
    came, but that an urgent job (PROTOCOL.md 5.2) runs before the jobs
    held: between two jobs this thread takes what came meanwhile, from the
    I/O thread and from its lane.

    The lane saves the two thread wake-ups a job costs through the I/O
    thread. After each WELCOME with a token, this thread opens a lane and
    sends ATTACH; once the broker welcomed it, jobs come on it and DONE
    batches go out on it, but for a batch holding a job that had a timeout
    (the I/O thread must learn it ended in time) or that reported progress
    (its reports go through the I/O thread and must precede its result):
    those go as notes, which the I/O thread sends in order. Until the lane
    is attached, or without one (a broker that refuses it), everything goes
    through the I/O thread. A new registration (RESET) closes the lane, and
    the broker forgets the old one's jobs; a lane the broker forgot after
    attaching it (ERROR) is closed and the I/O thread registers again, so
    that no result is lost with it.

    The atomics of dp_worker_t close one race on stopping: this thread sets
    busy before it starts a job and then checks stopping; the I/O thread
    sets stopping and then checks busy. One of them sees the other, so a
    stopping worker either abandons a running task (and ends the process)
    or starts no new one.
*/
#define _GNU_SOURCE
#include "dp_queue.h"
#include "dp_registry.h"
#include "dp_task.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dp_worker_int.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define RUNNER_PACES 16            /* functions whose last run time the task thread remembers */
#define RESULT_KEEP  (1024 * 1024) /* result buffer kept between jobs, bytes */
#define DONE_LIMIT   (DP_MAX_MSG_SIZE - 1024)
#define LANE_LOOK_US 100 /* between two jobs, the lane is read at most this often */

/*  One DISPATCH: its frames and the jobs not yet run. The batches are run
    in the order they came, but that of a DISPATCH whose first job is
    urgent (the broker sends an urgent job alone: PROTOCOL.md 5.2), which
    goes before every batch that is not, after the urgent ones before it. */
typedef struct s_batch_t {
    struct s_batch_t *next;
    zmq_msg_t header;
    zmq_msg_t body;
    dp_list_t jobs;
    uint32_t nframes; /* payload frames: jobs' args (PROTOCOL.md 3) */
    dp_span_t *spans; /* theirs, after frames[] */
    zmq_msg_t frames[];
} s_batch_t;

struct dp_worker_runner_t {
    dp_worker_t *worker;
    dp_chan_node_t *inbox; /* messages taken from the I/O thread, not yet handled */
    s_batch_t *head;
    s_batch_t *tail;
    s_batch_t *urgent; /* the last urgent batch, at the front; NULL if none */
    size_t queued;     /* jobs held in all batches */
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
    /*  The lane, of the current epoch; NULL if none. */
    void *lane;
    int lane_fd;
    bool lane_attached;     /* the broker welcomed it: results may go on it */
    bool lane_quiet;        /* its last look found nothing: lane_fd fires on the next message */
    int64_t lane_looked_us; /* when the task thread last read it between two jobs */
    bool job_via_io;        /* the running job reported progress through the I/O thread */
    bool via_io;            /* the DONE batch must go through the I/O thread */
    /*  Values of the DONE batch that go as payload frames, sent from the
        buffer the task packed them in. */
    zmq_msg_t frames[DP_MAX_FRAMES];
    uint32_t nframes;
};

static void
s_batch_destroy (s_batch_t **self_p)
{
    if (*self_p) {
        zmq_msg_close (&(*self_p)->header);
        zmq_msg_close (&(*self_p)->body);
        for (uint32_t i = 0; i < (*self_p)->nframes; i++)
            zmq_msg_close (&(*self_p)->frames[i]);
        free (*self_p);
        *self_p = NULL;
    }
}

/*  Gives up the payload frames of the DONE batch. */
static void
s_runner_drop_frames (dp_worker_runner_t *r)
{
    for (uint32_t i = 0; i < r->nframes; i++)
        zmq_msg_close (&r->frames[i]);
    r->nframes = 0;
}

static void
s_runner_drop_jobs (dp_worker_runner_t *r)
{
    while (r->head) {
        s_batch_t *batch = r->head;
        r->head = batch->next;
        s_batch_destroy (&batch);
    }
    r->tail = NULL;
    r->urgent = NULL;
    r->queued = 0;
}

/*  Takes count jobs off the count of those held (dp_worker_t.held). */
static void
s_runner_release (dp_worker_runner_t *r, size_t count)
{
    if (count > 0)
        atomic_fetch_sub (&r->worker->held, (unsigned)count);
}

/*  Puts batch in line: at the back, or if its first job is urgent, after
    the urgent batches at the front. */
static void
s_runner_hold (dp_worker_runner_t *r, s_batch_t *batch)
{
    dp_list_t jobs = batch->jobs;
    dp_task_t first;
    if (dp_list_next_task (&jobs, DP_CMD_DISPATCH, &first) && first.urgent) {
        s_batch_t **at = r->urgent ? &r->urgent->next : &r->head;
        batch->next = *at;
        *at = batch;
        r->urgent = batch;
        if (!batch->next)
            r->tail = batch;
        return;
    }
    if (r->tail)
        r->tail->next = batch;
    else
        r->head = batch;
    r->tail = batch;
}

/*  Holds the jobs of a DISPATCH (its frames, moved: header, body and
    nframes payload frames) received in epoch: passed on by the I/O thread,
    which counted them in held, or taken on the lane, counted here. Jobs of
    a void epoch are dropped. Returns 0, or -1 if out of memory. */
static int
s_runner_take_jobs (dp_worker_runner_t *r, zmq_msg_t *header, zmq_msg_t *body, zmq_msg_t *frames,
                    uint32_t nframes, uint64_t epoch, bool from_lane)
{
    size_t size = sizeof (s_batch_t) + nframes * (sizeof (zmq_msg_t) + sizeof (dp_span_t));
    s_batch_t *batch = (s_batch_t *)calloc (1, size);
    if (!batch) {
        dp_error ("out of memory holding jobs");
        return -1;
    }
    zmq_msg_init (&batch->header);
    zmq_msg_init (&batch->body);
    zmq_msg_move (&batch->header, header);
    zmq_msg_move (&batch->body, body);
    batch->spans = (dp_span_t *)(void *)&batch->frames[nframes];
    for (uint32_t i = 0; i < nframes; i++) {
        zmq_msg_init (&batch->frames[i]);
        zmq_msg_move (&batch->frames[i], &frames[i]);
        batch->spans[i].data = (const uint8_t *)zmq_msg_data (&batch->frames[i]);
        batch->spans[i].size = zmq_msg_size (&batch->frames[i]);
    }
    batch->nframes = nframes;
    dp_msg_t m;
    dp_reason_t reason = dp_msg_decode_frames (
        zmq_msg_data (&batch->header), zmq_msg_size (&batch->header), zmq_msg_data (&batch->body),
        zmq_msg_size (&batch->body), batch->spans, nframes, &m);
    /*  Validated already, by the I/O thread or by s_lane_on_msg. */
    if (reason != DP_OK || m.cmd != DP_CMD_DISPATCH) {
        s_batch_destroy (&batch);
        return 0;
    }
    if (epoch != r->epoch) {
        if (!from_lane)
            s_runner_release (r, m.u.list.left);
        s_batch_destroy (&batch);
        return 0;
    }
    if (from_lane)
        atomic_fetch_add (&r->worker->held, m.u.list.left);
    batch->jobs = m.u.list;
    r->queued += batch->jobs.left;
    s_runner_hold (r, batch);
    return 0;
}

/*  Tells the I/O thread to acknowledge token (received in epoch). */
static void
s_runner_ack (dp_worker_runner_t *r, uint64_t token, bool accept, uint64_t epoch)
{
    dp_note_ctl_t ctl = {.kind = DP_NOTE_QACK, .code = accept, .epoch = epoch, .ref = token};
    dp_note_send_ctl (r->worker->to_io, &ctl);
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
s_runner_on_reply (dp_worker_runner_t *r, const dp_note_ctl_t *ctl, zmq_msg_t *body)
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

/*  ---------------------------------------------------------------------------
    The lane (PROTOCOL.md 5.7).
*/

/*  Closes the lane, if any, after a BYE when bye is true (the broker then
    forgets it at once; the BYE goes out within the linger). */
static void
s_lane_close (dp_worker_runner_t *r, bool bye)
{
    if (!r->lane)
        return;
    if (bye) {
        dp_encode_empty (&r->qw);
        dp_wire_send_writer (r->lane, NULL, 0, DP_CMD_BYE, &r->qw, ZMQ_DONTWAIT);
    }
    zmq_close (r->lane);
    r->lane = NULL;
    r->lane_fd = -1;
    r->lane_attached = false;
}

/*  Opens a lane for the current registration, whose token is token, and
    sends ATTACH. Without one (the endpoint cannot be connected), jobs and
    results go through the I/O thread. */
static void
s_lane_open (dp_worker_runner_t *r, uint64_t token)
{
    s_lane_close (r, true);
    void *lane = zmq_socket (r->worker->ctx, ZMQ_DEALER);
    if (!lane)
        return;
    dp_encode_attach (&r->qw, token);
    if (dp_wire_configure (lane, false, DP_WORKER_LINGER_MS) ||
        dp_curve_apply (lane, &r->worker->curve, false) ||
        zmq_connect (lane, r->worker->endpoint) ||
        dp_wire_send_writer (lane, NULL, 0, DP_CMD_ATTACH, &r->qw, ZMQ_DONTWAIT)) {
        dp_warn ("cannot open a lane to %s: %s", r->worker->endpoint, zmq_strerror (errno));
        zmq_setsockopt (lane, ZMQ_LINGER, &(int){0}, sizeof (int));
        zmq_close (lane);
        return;
    }
    r->lane = lane;
    r->lane_fd = dp_wire_fd (lane);
    r->lane_attached = false;
    r->lane_quiet = false;
}

/*  One message on the lane: its WELCOME, jobs, or the broker's refusal.
    A refusal before the WELCOME (a broker without lanes, or one that
    forgot the token) leaves this registration without a lane; one after
    it may have cost results sent on it, so the I/O thread registers again
    and the broker takes back every job it gave this registration. */
static void
s_lane_on_msg (dp_worker_runner_t *r, dp_wire_msg_t *msg)
{
    dp_msg_t m;
    if (dp_wire_decode (msg, false, NULL, &m) != DP_OK) {
        dp_warn ("malformed message from the broker on the lane dropped");
        return;
    }
    switch (m.cmd) {
    case DP_CMD_WELCOME:
        r->lane_attached = true;
        dp_debug ("lane attached (epoch %llu)", (unsigned long long)r->epoch);
        break;
    case DP_CMD_DISPATCH:
        if (s_runner_take_jobs (r, &msg->frames[0], &msg->frames[1], &msg->frames[2],
                                (uint32_t)(msg->count - 2), r->epoch, true))
            _exit (1); /* cannot hold them: leave, so that the broker gives them to others */
        break;
    case DP_CMD_ERROR: {
        bool attached = r->lane_attached;
        dp_info ("the broker refused this worker's lane: %s: %.*s",
                 dpool_strerror (m.u.error.code), (int)m.u.error.message.size,
                 (const char *)m.u.error.message.data);
        s_lane_close (r, false);
        if (attached) {
            dp_note_ctl_t ctl = {.kind = DP_NOTE_LANE_LOST, .epoch = r->epoch};
            dp_note_send_ctl (r->worker->to_io, &ctl);
        }
        break;
    }
    case DP_CMD_BYE:
        s_lane_close (r, false); /* the broker is leaving; the I/O thread hears it too */
        break;
    default:
        break;
    }
}

/*  Reads every message waiting on the lane; returns how many. */
static int
s_lane_drain (dp_worker_runner_t *r)
{
    int count = 0;
    while (r->lane) {
        dp_wire_msg_t msg;
        if (dp_wire_recv (r->lane, &msg, ZMQ_DONTWAIT)) {
            if (errno == EINTR)
                continue;
            r->lane_quiet = true;
            break;
        }
        r->lane_quiet = false;
        atomic_store (&r->worker->lane_heard, dp_now_ms ());
        s_lane_on_msg (r, &msg);
        dp_wire_close (&msg);
        count++;
    }
    return count;
}

/*  Blocks until a note waits in to_task, or the lane brought messages
    (which it handles). With a lane, one poll(2) watches both: the queue's
    eventfd, armed first, and the lane's descriptor, which fires on the
    next message once a look found the lane empty. */
static void
s_runner_wait (dp_worker_runner_t *r)
{
    while (r->lane) {
        if (s_lane_drain (r) > 0 || !r->lane || !dp_chan_arm (r->worker->to_task))
            return;
        struct pollfd fds[2] = {{dp_chan_fd (r->worker->to_task), POLLIN, 0},
                                {r->lane_fd, POLLIN, 0}};
        if (poll (fds, 2, -1) < 0 && errno != EINTR) {
            dp_error ("poll: %s", strerror (errno));
            _exit (1); /* cannot wait: leave, so that the broker gives the jobs to others */
        }
        if (fds[0].revents & POLLIN)
            return;
    }
    dp_chan_wait (r->worker->to_task, -1);
}

/*  Says BYE on the lane and waits up to DP_WORKER_BYE_WAIT_MS for the
    broker's, which proves that the results sent on it arrived; closes it.
    What else comes meanwhile is dropped: the worker is leaving. */
static void
s_lane_leave (dp_worker_runner_t *r)
{
    if (!r->lane)
        return;
    dp_encode_empty (&r->qw);
    bool bye = !r->lane_attached ||
               dp_wire_send_writer (r->lane, NULL, 0, DP_CMD_BYE, &r->qw, ZMQ_DONTWAIT) != 0;
    int64_t until = dp_now_ms () + DP_WORKER_BYE_WAIT_MS;
    while (!bye && dp_now_ms () < until) {
        zmq_pollitem_t item = {r->lane, 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, (long)(until - dp_now_ms ())) < 0 && errno != EINTR)
            break;
        dp_wire_msg_t msg;
        while (!bye && dp_wire_recv (r->lane, &msg, ZMQ_DONTWAIT) == 0) {
            dp_msg_t m;
            bye = dp_wire_decode (&msg, false, NULL, &m) == DP_OK && m.cmd == DP_CMD_BYE;
            dp_wire_close (&msg);
        }
    }
    s_lane_close (r, false);
}

/*  Handles one message from the I/O thread, waiting for one, or for the
    lane's messages, if wait is true. Returns 1 if one was handled, 0 if
    none was waiting. */
static int
s_runner_recv (dp_worker_runner_t *r, bool wait)
{
    if (!r->inbox)
        r->inbox = dp_chan_take (r->worker->to_task);
    if (!r->inbox && wait) {
        s_runner_wait (r);
        r->inbox = dp_chan_take (r->worker->to_task);
    }
    if (!r->inbox)
        return 0;
    dp_note_t *note = (dp_note_t *)r->inbox;
    r->inbox = note->node.next;
    const dp_note_ctl_t ctl = note->ctl;
    switch (ctl.kind) {
    case DP_NOTE_JOBS:
        if (s_runner_take_jobs (r, &note->frame[0], &note->frame[1], NULL, 0, ctl.epoch, false)) {
            /*  Cannot hold the jobs, cannot answer them: leave, so that the
                broker gives them to another worker. */
            _exit (1);
        }
        break;
    case DP_NOTE_RESET:
        s_runner_release (r, r->queued + r->pending);
        s_runner_drop_jobs (r);
        r->pending = 0; /* results for the old registration: nobody wants them */
        s_runner_drop_frames (r);
        r->via_io = false;
        r->epoch = ctl.epoch;
        s_lane_close (r, true); /* the old registration's */
        break;
    case DP_NOTE_LANE:
        if (ctl.epoch == r->epoch)
            s_lane_open (r, ctl.ref);
        break;
    case DP_NOTE_STOP:
        r->stop = true;
        r->code = ctl.code;
        break;
    case DP_NOTE_QREPLY:
        s_runner_on_reply (r, &ctl, &note->frame[0]);
        break;
    default:
        assert (false);
    }
    dp_note_free (&note->node);
    return 1;
}

/*  Handles every message waiting, without blocking: the notes, then the
    lane's jobs (an urgent one runs next), if the lane was last read
    LANE_LOOK_US ago or more: a look costs a receive, which a run of
    no-ops would pay at every job. */
static void
s_runner_drain (dp_worker_runner_t *r)
{
    while (!r->stop && s_runner_recv (r, false) > 0)
        ;
    if (r->stop || !r->lane)
        return;
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    int64_t now_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    if (now_us - r->lane_looked_us >= LANE_LOOK_US) {
        r->lane_looked_us = now_us;
        s_lane_drain (r);
    }
}

static void
s_runner_flush (dp_worker_runner_t *r, bool timed, uint64_t ref, uint64_t epoch);

/*  The task's queue requests (dp_task_link_t.queue): one at a time, sent
    by the I/O thread, answered while the task thread goes on taking the
    jobs and messages that arrive meanwhile. */
static int
s_runner_queue (void *arg, const dp_qcall_t *call, dp_qanswer_t *answer, msgpack_sbuffer *out)
{
    dp_worker_runner_t *r = (dp_worker_runner_t *)arg;
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
    dp_note_ctl_t ctl = {.kind = DP_NOTE_QUEUE, .code = (int32_t)call->cmd, .ref = req};
    if (!dp_writer_ok (&r->qw)) {
        answer->code = DPOOL_ENOMEM;
        return -1;
    }
    dp_note_send_copy (r->worker->to_io, &ctl, dp_writer_data (&r->qw), dp_writer_size (&r->qw));
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
        dp_note_ctl_t cancel = {.kind = DP_NOTE_QCANCEL, .ref = req};
        dp_note_send_ctl (r->worker->to_io, &cancel);
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
s_runner_send_progress (dp_worker_runner_t *r, const void *value, size_t size)
{
    dp_note_ctl_t ctl = {.kind = DP_NOTE_PROGRESS, .epoch = r->job_epoch, .ref = r->job_ref};
    r->progress_sent = dp_now_ms ();
    r->job_via_io = true;
    dp_note_send_copy (r->worker->to_io, &ctl, value, size);
    return 0;
}

/*  The task's progress reports (dp_task_link_t.progress): at most one per
    DP_WORKER_PROGRESS_PIPE_MS goes to the I/O thread; a report within that
    time is held (the latest wins) until the next one or the job's end. */
static int
s_runner_progress (void *arg, const void *value, size_t size)
{
    dp_worker_runner_t *r = (dp_worker_runner_t *)arg;
    if (dp_now_ms () - r->progress_sent >= DP_WORKER_PROGRESS_PIPE_MS) {
        r->progress_held = false;
        return s_runner_send_progress (r, value, size);
    }
    msgpack_sbuffer_clear (&r->progress);
    if (msgpack_sbuffer_write (&r->progress, (const char *)value, size))
        return dp_fail (DPOOL_ENOMEM);
    r->progress_held = true;
    r->job_via_io = true;
    return 0;
}

/*  Leaves a failure message in the result buffer; returns code. */
static int
s_runner_fail (dp_worker_runner_t *r, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_runner_fail (dp_worker_runner_t *r, int code, const char *format, ...)
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
s_runner_chunk (dp_worker_runner_t *r, dpool_fn_t *fn, dp_span_t calls)
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
s_runner_run (dp_worker_runner_t *r, const dp_task_t *job)
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
        dp_note_ctl_t ctl = {.kind = DP_NOTE_ARM,
                             .epoch = r->epoch,
                             .ref = job->id,
                             .deadline_ms = dp_now_ms () + job->timeout_ms,
                             .timeout_ms = job->timeout_ms};
        dp_note_send_ctl (r->worker->to_io, &ctl);
    }
    int code =
        chunk ? s_runner_chunk (r, fn, job->args) : dp_task_call (&r->task, fn, &args, &r->result);
    if (code == DPOOL_ENOMEM)
        msgpack_sbuffer_clear (&r->result);
    return code;
}

/*  Takes the next job from the batches, if any. */
static bool
s_runner_next (dp_worker_runner_t *r, dp_task_t *job)
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
        if (r->urgent == batch)
            r->urgent = NULL;
        s_batch_destroy (&batch);
    }
    return false;
}

/*  The last run time of fn, or NULL if not known. */
static uint32_t *
s_runner_pace (dp_worker_runner_t *r, dpool_fn_t *fn)
{
    for (unsigned i = 0; fn && i < r->npaces; i++)
        if (r->paces[i].fn == fn)
            return &r->paces[i].run_us;
    return NULL;
}

static void
s_free_result (void *data, void *hint)
{
    (void)hint;
    free (data);
}

/*  Adds the successful result in r->result as a payload frame made of its
    buffer (no copy), if it is large and the batch will go on the lane
    (framed: timed is false). Returns true if it did. */
static bool
s_runner_add_framed (dp_worker_runner_t *r, uint64_t ref, bool timed, uint32_t run_us)
{
    if (timed || r->via_io || !r->lane_attached || r->result.size < DP_FRAME_MIN ||
        r->nframes == DP_MAX_FRAMES)
        return false;
    size_t size = r->result.size;
    zmq_msg_t *frame = &r->frames[r->nframes];
    if (zmq_msg_init_data (frame, r->result.data, size, s_free_result, NULL) != 0)
        return false;
    msgpack_sbuffer_release (&r->result);
    r->nframes++;
    dp_list_add_result_framed (&r->done, ref, run_us);
    return true;
}

/*  Adds a finished job's result to the DONE batch. timed: the job had a
    deadline (its batch goes through the I/O thread). */
static void
s_runner_add_result (dp_worker_runner_t *r, uint64_t ref, int code, bool timed, uint32_t run_us)
{
    if (r->pending == 0) {
        dp_list_begin (&r->done);
        r->first_pending = dp_now_ms ();
    }
    if (code != 0 && r->result.size == 0)
        dp_list_add_error_run (&r->done, ref, code, dpool_strerror (code), run_us);
    else if (code != 0 || !s_runner_add_framed (r, ref, timed, run_us))
        dp_list_add_result_run (&r->done, ref, code, r->result.data, r->result.size, run_us);
    r->pending++;
}

/*  Puts the values of the (ended) DONE batch's payload frames back in its
    body, for the I/O thread, whose notes carry no payload frames. */
static void
s_runner_inline (dp_worker_runner_t *r)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode (header, DP_CMD_DONE);
    dp_span_t spans[DP_MAX_FRAMES];
    for (uint32_t i = 0; i < r->nframes; i++) {
        spans[i].data = (const uint8_t *)zmq_msg_data (&r->frames[i]);
        spans[i].size = zmq_msg_size (&r->frames[i]);
    }
    dp_msg_t m;
    dp_reason_t reason = dp_msg_decode_frames (header, sizeof header, dp_writer_data (&r->done),
                                               dp_writer_size (&r->done), spans, r->nframes, &m);
    assert (reason == DP_OK);
    (void)reason;
    dp_writer_t inlined;
    dp_writer_init (&inlined);
    dp_list_inline (&inlined, DP_CMD_DONE, &m.u.list);
    dp_writer_swap (&r->done, &inlined);
    dp_writer_fini (&inlined);
    s_runner_drop_frames (r);
}

/*  Sends the DONE batch on the lane, or hands it to the I/O thread (see
    the top of this file). timed says that job ref (of epoch), which had a
    deadline, is in it. */
static void
s_runner_flush (dp_worker_runner_t *r, bool timed, uint64_t ref, uint64_t epoch)
{
    if (r->pending == 0)
        return;
    dp_list_end (&r->done);
    dp_note_ctl_t ctl = {.kind = DP_NOTE_DONE,
                         .code = timed ? 1 : 0,
                         .epoch = epoch,
                         .ref = ref,
                         .count = r->pending};
    if (!dp_writer_ok (&r->done)) {
        /*  Out of memory building it: the process cannot answer for its
            jobs; leaving makes the broker give them to others. */
        dp_error ("out of memory building results");
        _exit (1);
    }
    bool lane = !timed && !r->via_io && r->lane_attached && epoch == r->epoch;
    if (lane) {
        r->lane_quiet = false;
        lane = dp_wire_send_frames (r->lane, NULL, 0, DP_CMD_DONE, &r->done, r->frames, r->nframes,
                                    ZMQ_DONTWAIT) == 0;
    }
    if (!lane && r->nframes > 0)
        s_runner_inline (r);
    s_runner_drop_frames (r);
    if (!lane) {
        /*  A large body goes over without a copy. */
        zmq_msg_t body;
        if (dp_wire_msg_take (&body, &r->done) != 0) {
            dp_error ("out of memory passing results on");
            _exit (1);
        }
        /*  After what this thread queued before it: a job's ARM and
            progress go first. */
        dp_note_send (r->worker->to_io, &ctl, &body, 1);
        zmq_msg_close (&body);
    }
    s_runner_release (r, r->pending);
    r->pending = 0;
    r->via_io = false;
    if (r->done.sbuf.alloc > RESULT_KEEP) {
        dp_writer_fini (&r->done);
        dp_writer_init (&r->done);
    }
}

static void
s_runner_loop (dp_worker_runner_t *r)
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
        r->job_via_io = false;
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
        if (epoch == r->epoch) {
            r->via_io = r->via_io || r->job_via_io;
            s_runner_add_result (r, ref, code, job.timeout_ms > 0,
                                 run_us < 0            ? 0
                                 : run_us > UINT32_MAX ? UINT32_MAX
                                                       : (uint32_t)run_us);
        } else
            s_runner_release (r, 1);
        /*  Jobs that arrived while it ran count as queued: results of a
            run of short jobs go out together, each slow, timed or urgent
            job's at once. */
        s_runner_drain (r);
        r->retiring = r->max_tasks > 0 && ++r->ran >= r->max_tasks;
        if (job.timeout_ms > 0 || job.urgent || r->queued == 0 ||
            r->pending >= DP_WORKER_DONE_BATCH || dp_writer_size (&r->done) > DONE_LIMIT / 2 ||
            r->retiring || dp_now_ms () - r->first_pending >= DP_WORKER_DONE_DELAY_MS)
            s_runner_flush (r, job.timeout_ms > 0, ref, epoch);
        if (r->retiring) {
            /*  The last results went first (those on the lane are known to
                have arrived once the lane's BYE is answered); the I/O
                thread leaves and stops this thread. */
            s_lane_leave (r);
            dp_note_ctl_t retire = {.kind = DP_NOTE_RETIRE, .epoch = epoch};
            dp_note_send_ctl (r->worker->to_io, &retire);
        }
    }
}

dp_worker_runner_t *
dp_worker_runner_new (dp_worker_t *worker, int max_tasks)
{
    assert (worker);
    dp_worker_runner_t *r = (dp_worker_runner_t *)calloc (1, sizeof *r);
    if (!r)
        return NULL;
    r->worker = worker;
    r->link.queue = s_runner_queue;
    r->link.progress = s_runner_progress;
    r->link.arg = r;
    r->lane_fd = -1;
    r->max_tasks = max_tasks > 0 ? max_tasks : 0;
    dp_writer_init (&r->qw);
    msgpack_sbuffer_init (&r->progress);
    msgpack_zone_init (&r->zone, MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_sbuffer_init (&r->result);
    dp_writer_init (&r->done);
    return r;
}

void
dp_worker_runner_destroy (dp_worker_runner_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_worker_runner_t *r = *self_p;
        s_runner_drop_jobs (r);
        msgpack_zone_destroy (&r->zone);
        msgpack_sbuffer_destroy (&r->result);
        msgpack_sbuffer_destroy (&r->progress);
        s_lane_close (r, true);
        dp_writer_fini (&r->qw);
        s_runner_drop_frames (r);
        dp_writer_fini (&r->done);
        while (r->inbox) {
            dp_chan_node_t *next = r->inbox->next;
            dp_note_free (r->inbox);
            r->inbox = next;
        }
        free (r);
        *self_p = NULL;
    }
}

int
dp_worker_runner_run (dp_worker_runner_t *self)
{
    assert (self);
    s_runner_loop (self);
    s_lane_close (self, true);
    return self->code;
}

bool
dp_worker_runner_retired (const dp_worker_runner_t *self)
{
    assert (self);
    return self->retiring;
}

/*  dp_broker_dispatch.c - the broker's tasks and their dispatch.

    A task waits in the queue of its function (fnq_t: by priority, then
    arrival) until a worker offering that function has credit. Dispatch
    gives each ready worker in turn the best tasks of the functions it
    offers, in one DISPATCH, bounded by its credit, by the run time it
    is expected to hold (DP_PREFETCH_US, from each function's learned
    pace) and by the bytes of arguments it holds (DP_PREFETCH_BYTES). The
    task of a tenant back from idle (dp_broker_fair_urgent) goes first, alone in a DISPATCH, marked
   urgent, to any worker with credit: the worker runs it before what it holds, so that prefetching
   for a busy tenant does not make a newcomer wait. A task ends here too: its result or error goes
   into its session's RESULT batch. The contracts are in dp_broker_int.h.
*/
#include "dp_broker_int.h"

#include "dp_util.h"
#include "dpool.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PACE_WEIGHT        4                 /* a pace sample moves the average by a quarter */
#define DISPATCH_MAX_BYTES (8 * 1024 * 1024) /* a DISPATCH stops taking tasks past this */
/*  Across a slow link, a worker's budget grows by its round trip times
    RTT_FACTOR: it is topped up at half its budget, and the top-up must
    arrive before what it still holds runs out, a round trip later. */
#define RTT_FACTOR    2
#define RTT_WINDOW_US (10 * 1000000) /* a worker's round trip: its least sample this recent */
#define RTT_MAX_US    1000000        /* samples beyond a second are a stalled worker */
/*  Credit a worker of URGENT_CREDIT or more keeps free of prefetched tasks,
    so that an urgent task goes to it at once, not at its next DONE. */
#define URGENT_ROOM   1
#define URGENT_CREDIT 4

/*  ---------------------------------------------------------------------------
    Function queues.
*/

fnq_t *
dp_broker_fnq_get (dp_broker_t *self, const char *name)
{
    fnq_t *fnq = (fnq_t *)zhashx_lookup (self->fnqs, name);
    if (fnq)
        return fnq;
    fnq = (fnq_t *)calloc (1, sizeof *fnq);
    if (!fnq)
        return NULL;
    fnq->name = strdup (name);
    if (!fnq->name) {
        free (fnq);
        return NULL;
    }
    zhashx_insert (self->fnqs, fnq->name, fnq);
    dp_broker_metrics_fnq (self, fnq);
    return fnq;
}

void
dp_broker_fnq_destroy (void **item)
{
    fnq_t *fnq = (fnq_t *)*item;
    if (fnq) {
        assert (fnq->nflows == 0);
        free (fnq->heap);
        free (fnq->name);
        free (fnq);
        *item = NULL;
    }
}

/*  ---------------------------------------------------------------------------
    Tasks.
*/

/*  Once a function's tasks have failed for want of a worker, the next ones
    fail as they come until a worker offers it (or no worker is connected
    at all): a map over a million inputs of a misspelt function fails in
    seconds, not a grace period per window of tasks. */
static bool
s_fails_at_once (dp_broker_t *self, task_t *task)
{
    fnq_t *fnq = task->flow->fnq;
    if (fnq->nofunc_at == 0 || fnq->nworkers > 0 || zlistx_size (self->workers) == 0 ||
        self->nofunc_grace_ms < 0)
        return false;
    fnq->nofunc_at = dp_now_ms ();
    char message[DP_MAX_NAME + 64];
    snprintf (message, sizeof message, "no worker offers function '%s'", fnq->name);
    dp_broker_task_fail (self, task, DPOOL_ENOFUNC, message);
    return true;
}

void
dp_broker_task_queue (dp_broker_t *self, task_t *task)
{
    if (s_fails_at_once (self, task))
        return;
    task->ref = 0;
    dp_broker_metrics_queued (self, task);
    /*  A stalled session's tasks wait in its parked queue (backpressure). */
    bool park = task->client && task->client->stalled;
    if ((park ? dp_taskq_push (&task->client->parked, &task->item)
              : dp_broker_fair_push (self, task)) == 0) {
        task->parked = park;
        self->queued++;
        self->dispatch_needed = self->dispatch_needed || !park;
    } else
        dp_broker_task_finish (self, task, DPOOL_ENOMEM, NULL, 0);
}

void
dp_broker_task_unqueue (dp_broker_t *self, task_t *task)
{
    assert (task->item.index != DP_TASKQ_NONE);
    assert (!task->parked || task->client);
    if (task->parked)
        dp_taskq_remove (&task->client->parked, &task->item);
    else
        dp_broker_fair_remove (self, task);
    task->parked = 0;
    self->queued--;
}

void
dp_broker_task_free (dp_broker_t *self, task_t *task)
{
    assert (task->item.index == DP_TASKQ_NONE);
    assert (self->task_bytes >= task->args_size);
    self->task_bytes -= task->args_size;
    self->freed_bytes += task->args_size;
    if (task->flow)
        dp_broker_flow_put (self, task->flow);
    if (task->jslot)
        dp_broker_journal_task_free (self, task);
    if (task->framed)
        zmq_msg_close (dp_broker_task_frame (task));
    dp_slab_free (self->slab, task, dp_broker_task_record (task));
}

void
dp_broker_task_finish (dp_broker_t *self, task_t *task, int32_t code, const void *value,
                       size_t size)
{
    if (code == 0)
        self->done++;
    else
        self->failed++;
    dp_broker_metrics_ended (self, task, code, value ? size : 0);
    client_t *client = task->client;
    if (client && client->batch) {
        dp_broker_client_task_remove (self, client, task);
        dp_batches_task_ended (self, client->batch, task->seq, code, value, size);
    } else if (client) {
        dp_broker_journal_task_gone (self, task);
        dp_broker_client_task_remove (self, client, task);
        if (dp_broker_lane_result (self, task, code, value, size) == 0) {
            dp_broker_task_free (self, task);
            return;
        }
        dp_broker_client_out (self, client, size + RESULT_OVERHEAD);
        if (value)
            dp_broker_client_add_result (self, client, task->seq, code, value, size);
        else
            dp_broker_client_add_error (self, client, task->seq, code, dpool_strerror (code));
    }
    dp_broker_task_free (self, task);
}

void
dp_broker_task_finish_frame (dp_broker_t *self, task_t *task, zmq_msg_t *frame)
{
    client_t *client = task->client;
    if (client && client->batch) {
        /*  A batch holds its results in records of its own. */
        dp_broker_task_finish (self, task, 0, zmq_msg_data (frame), zmq_msg_size (frame));
        return;
    }
    self->done++;
    dp_broker_metrics_ended (self, task, 0, zmq_msg_size (frame));
    if (client) {
        dp_broker_journal_task_gone (self, task);
        dp_broker_client_task_remove (self, client, task);
        if (dp_broker_lane_result_frame (self, task, frame) != 0) {
            dp_broker_client_out_frame (self, client, task->seq, frame);
            dp_broker_journal_result_framed (self, client, task->seq, zmq_msg_data (frame),
                                             zmq_msg_size (frame));
        }
    }
    dp_broker_task_free (self, task);
}

void
dp_broker_task_fail (dp_broker_t *self, task_t *task, int32_t code, const char *message)
{
    client_t *client = task->client;
    if (client && client->batch) {
        dp_broker_client_task_remove (self, client, task);
        dp_batches_task_failed (self, client->batch, task->seq, code, message);
    } else if (client) {
        dp_broker_journal_task_gone (self, task);
        dp_broker_client_task_remove (self, client, task);
        dp_broker_client_out (self, client, strlen (message) + RESULT_OVERHEAD);
        dp_broker_client_add_error (self, client, task->seq, code, message);
    }
    self->failed++;
    dp_broker_metrics_ended (self, task, code, strlen (message));
    dp_broker_task_free (self, task);
}

uint32_t
dp_broker_task_retries (const task_t *task)
{
    if (task->retries < 0)
        return 0;
    return task->retries == 0 ? DP_DEFAULT_RETRIES : (uint32_t)task->retries;
}

void
dp_broker_task_orphaned (dp_broker_t *self, task_t *task, worker_t *worker, bool died)
{
    self->inflight--;
    dp_broker_fair_stopped (self, task, 0);
    if (!task->client) {
        dp_broker_task_free (self, task); /* nobody wants its result any more */
        return;
    }
    if (died && ++task->deaths > dp_broker_task_retries (task)) {
        char message[DP_MAX_NAME * 2 + 64];
        snprintf (message, sizeof message, "worker died %u times (last: %s@%s)", task->deaths,
                  worker->name, worker->host);
        dp_broker_task_fail (self, task, DPOOL_ELOST, message);
        return;
    }
    if (died)
        dp_broker_metrics_retried (self, task);
    else
        dp_broker_journal_stopped (self, task); /* no attempt counted: not running */
    dp_broker_task_queue (self, task);
}

/*  ---------------------------------------------------------------------------
    Dispatch: fill every worker with free credit from the queues of the
    functions it offers, best task first, one DISPATCH per worker.
*/

/*  The next task for worker: of the functions it offers, the one whose
    next tenant is furthest behind in virtual time; among equals, the best
    task by priority and arrival. */
static task_t *
s_best_task (dp_broker_t *self, worker_t *worker)
{
    task_t *best = NULL;
    for (size_t i = 0; i < worker->nfns; i++) {
        task_t *head = dp_broker_fair_peek (self, worker->fns[i]);
        if (!head)
            continue;
        uint64_t vtime = head->flow->tenant->vtime;
        uint64_t best_vtime = best ? best->flow->tenant->vtime : 0;
        if (!best || vtime < best_vtime ||
            (vtime == best_vtime && dp_taskq_before (&head->item, &best->item)))
            best = head;
    }
    return best;
}

/*  What a task is expected to cost its worker, in run time: its function's
    pace times its calls, or a whole prefetch budget while the pace is
    unknown (so the first tasks of a function go one per worker, as Pool
    hands them out) and for a task held by a worker that died (it may be
    what killed it: alone, the next death is charged to it, not to the
    tasks that would have queued behind it). */
static uint32_t
s_task_cost (const task_t *task)
{
    uint64_t pace = task->flow->fnq->pace_us;
    if (pace == 0 || task->deaths > 0)
        return DP_PREFETCH_US;
    uint64_t cost = pace * task->calls;
    return cost < 1 ? 1 : cost > DP_PREFETCH_US ? DP_PREFETCH_US : (uint32_t)cost;
}

void
dp_broker_pace_learn (task_t *task, uint32_t run_us)
{
    fnq_t *fnq = task->flow->fnq;
    int64_t sample = run_us / (task->calls ? task->calls : 1);
    if (sample < 1)
        sample = 1;
    if (fnq->pace_us == 0)
        fnq->pace_us = (uint32_t)sample;
    else {
        /*  A moving average that follows a change within a few tasks. */
        int64_t pace = fnq->pace_us + (sample - (int64_t)fnq->pace_us) / PACE_WEIGHT;
        fnq->pace_us = pace < 1 ? 1 : (uint32_t)pace;
    }
}

/*  Microseconds on the monotonic clock, for round-trip samples. */
static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
dp_broker_rtt_learn (worker_t *worker, uint64_t ref, uint32_t run_us)
{
    if (ref == 0 || ref != worker->probe_ref)
        return;
    worker->probe_ref = 0;
    int64_t now = s_now_us ();
    int64_t sample = now - worker->probe_us - (int64_t)run_us;
    if (sample < 0 || sample > RTT_MAX_US)
        return;
    /*  The least sample of a window: the link's round trip is a floor, and
        a sample above it is the worker's own delay (a late DONE), not the
        link's. A sample older than the window gives way, so that a link
        that became slower is followed. */
    if (worker->rtt_at == 0 || sample <= (int64_t)worker->rtt_us ||
        now - worker->rtt_at > RTT_WINDOW_US) {
        worker->rtt_us = (uint32_t)sample;
        worker->rtt_at = now;
    }
}

static bool
s_batch_reserve (dp_broker_t *self, size_t count)
{
    if (count <= self->batch_cap)
        return true;
    size_t cap = self->batch_cap ? self->batch_cap * 2 : 64;
    while (cap < count)
        cap *= 2;
    task_t **batch = (task_t **)realloc (self->batch, cap * sizeof (task_t *));
    if (!batch)
        return false;
    self->batch = batch;
    self->batch_cap = cap;
    return true;
}

/*  Sends the DISPATCH in self->w to worker's lane if it has one, else (or
    if the lane is gone or slow) to the worker. Returns 0, or -1 with errno
    if the worker's own connection could not take it. */
static int
s_send_dispatch (dp_broker_t *self, worker_t *worker, size_t nframes)
{
    int rc = -1;
    if (worker->lane) {
        rc = dp_broker_send_frames (self, worker->lane, DP_CMD_DISPATCH, &self->w, self->frames,
                                    nframes);
        if (rc == 0)
            self->lane_dispatches++;
        else if (errno == EHOSTUNREACH)
            dp_broker_wlane_drop (self, worker->lane);
    }
    if (rc != 0)
        rc = dp_broker_send_frames (self, worker->peer, DP_CMD_DISPATCH, &self->w, self->frames,
                                    nframes);
    int err = errno;
    for (size_t i = 0; i < nframes; i++)
        zmq_msg_close (&self->frames[i]);
    errno = err;
    return rc;
}

/*  Takes task out of its queue into the DISPATCH being built in self->w
    (the count-th of self->batch), as a job of its own: its arguments
    inline or, held in a payload frame, as the next of the message's
    *nframes frames (shared, not copied). Returns false, the task left
    queued, if that frame cannot be had (out of memory). */
static bool
s_add_job (dp_broker_t *self, task_t *task, uint32_t cost, bool urgent, size_t count,
           size_t *nframes)
{
    const char *fn = task->flow->fnq->name;
    dp_task_t job = {.id = self->next_ref + 1,
                     .fn = {(const uint8_t *)fn, strlen (fn)},
                     .args = {dp_broker_task_args (task), task->args_size},
                     .timeout_ms = task->timeout_ms,
                     .attempt = task->deaths + 1,
                     .flags = task->flags,
                     .urgent = urgent};
    if (task->framed) {
        zmq_msg_t *frame = &self->frames[*nframes];
        zmq_msg_init (frame);
        if (zmq_msg_copy (frame, dp_broker_task_frame (task)) != 0) {
            zmq_msg_close (frame);
            return false;
        }
        (*nframes)++;
        dp_list_add_task_framed (&self->w, DP_CMD_DISPATCH, &job);
    } else
        dp_list_add_task (&self->w, DP_CMD_DISPATCH, &job);
    task->ref = ++self->next_ref;
    dp_broker_journal_run (self, task);
    dp_broker_fair_remove (self, task);
    task->cost_us = cost;
    self->queued--;
    self->batch[count] = task;
    return true;
}

/*  Sends the DISPATCH of the count tasks in self->batch (and its nframes
    payload frames) to worker, who then holds them. Returns count, or -1
    if the worker could not be sent to (it is then gone, or out of the
    ready list until it is heard from again; the tasks are queued again,
    untouched). */
static long
s_send_batch (dp_broker_t *self, worker_t *worker, size_t count, size_t nframes)
{
    dp_list_end (&self->w);
    if (s_send_dispatch (self, worker, nframes) != 0) {
        int err = errno;
        for (size_t i = 0; i < count; i++) {
            dp_broker_task_queue (self, self->batch[i]);
        }
        if (err == EHOSTUNREACH) {
            peer_t *peer = worker->peer;
            dp_broker_worker_remove (self, worker, true);
            dp_broker_peer_delete (self, peer);
        } else
            dp_broker_ready_remove (self, worker); /* slow: wait for its next message */
        return -1;
    }
    /*  An idle worker was heard from up to an idle expiry ago: from now on
        it must answer within the expiry of a busy one, counted from here. */
    if (worker->inflight == 0) {
        worker->busy_since = dp_now_ms ();
        /*  It held nothing: its first job's DONE times the round trip. */
        worker->probe_ref = self->batch[0]->ref;
        worker->probe_us = s_now_us ();
    }
    for (size_t i = 0; i < count; i++) {
        if (dp_idmap_put (worker->jobs, self->batch[i]->ref, self->batch[i]) != 0) {
            /*  Out of memory: the worker will answer for a ref it is not
                known to hold, and the task is retried from the queue. */
            dp_broker_task_queue (self, self->batch[i]);
            continue;
        }
        dp_broker_fair_started (self, self->batch[i], self->batch[i]->cost_us);
        dp_broker_metrics_dispatched (self, self->batch[i]);
        worker->inflight++;
        worker->load_us += self->batch[i]->cost_us;
        worker->held += self->batch[i]->args_size;
        self->inflight++;
    }
    return (long)count;
}

/*  Of the functions worker offers, the urgent task that came first (by
    priority, then arrival); NULL if none. */
static task_t *
s_urgent_task (dp_broker_t *self, worker_t *worker)
{
    task_t *best = NULL;
    for (size_t i = 0; self->waiting > 0 && i < worker->nfns; i++) {
        task_t *task = dp_broker_fair_urgent (self, worker->fns[i]);
        if (task && (!best || dp_taskq_before (&task->item, &best->item)))
            best = task;
    }
    return best;
}

/*  Gives worker, if it has credit left, the urgent task of a function it
    offers, alone in a DISPATCH, however much it holds. Returns 1, 0 if
    there was none, or -1 as s_send_batch. */
static long
s_dispatch_urgent (dp_broker_t *self, worker_t *worker)
{
    if (self->waiting == 0 || worker->inflight >= worker->credit || !s_batch_reserve (self, 1))
        return 0;
    task_t *task = s_urgent_task (self, worker);
    if (!task)
        return 0;
    size_t nframes = 0;
    dp_list_begin (&self->w);
    if (!s_add_job (self, task, s_task_cost (task), true, 0, &nframes))
        return 0;
    return s_send_batch (self, worker, 1, nframes);
}

/*  Gives worker its urgent task, if any, then tasks while it has credit
    (but URGENT_ROOM), less than DP_PREFETCH_US (plus RTT_FACTOR of its
    round trips) of expected run time queued and less than
    DP_PREFETCH_BYTES of arguments (always at least one task; a task that
    costs a whole DP_PREFETCH_US goes alone); returns how many, or -1 if
    the worker could not be sent to (it is then gone, or out of the ready
    list until it is heard from again). */
static long
s_dispatch_worker (dp_broker_t *self, worker_t *worker)
{
    long urgent = s_dispatch_urgent (self, worker);
    if (urgent < 0)
        return -1;
    uint32_t credit = worker->credit;
    uint64_t budget = DP_PREFETCH_US + RTT_FACTOR * (uint64_t)worker->rtt_us;
    /*  A worker still holding half a budget or half its credit is busy
        enough: it is topped up once it runs lower, in one bigger batch
        rather than many small ones. */
    if (worker->inflight >= 1 &&
        (worker->load_us > budget / 2 || worker->held > DP_PREFETCH_BYTES / 2 ||
         worker->inflight > credit / 2))
        return urgent;
    size_t free = credit - worker->inflight;
    size_t want = credit >= URGENT_CREDIT && free > URGENT_ROOM ? free - URGENT_ROOM : free;
    if (want == 0 || !s_batch_reserve (self, want))
        return urgent;
    size_t count = 0;
    size_t nframes = 0;
    uint64_t load = worker->load_us;
    uint64_t held = worker->held;
    uint64_t framed = 0; /* bytes of the message's payload frames */
    dp_list_begin (&self->w);
    while (count < want) {
        task_t *task = s_best_task (self, worker);
        if (!task)
            break;
        uint32_t cost = s_task_cost (task);
        /*  The round trips' share of the budget is for fast tasks: a slow
            one (or one not timed yet) still fills a budget alone. */
        uint64_t charge = cost >= DP_PREFETCH_US ? budget : cost;
        if (worker->inflight + count >= 1 &&
            (load + charge > budget || held + task->args_size > DP_PREFETCH_BYTES))
            break; /* enough queued there: keep the rest for whoever frees up */
        if (count > 0 &&
            (dp_writer_size (&self->w) + framed + task->args_size > DISPATCH_MAX_BYTES ||
             (task->framed && nframes == DP_MAX_FRAMES)))
            break; /* a message stays well under what a worker accepts */
        uint32_t size = task->args_size;
        bool in_frame = task->framed;
        if (!s_add_job (self, task, cost, false, count, &nframes))
            break; /* out of memory: the task stays queued */
        count++;
        load += charge;
        held += size;
        framed += in_frame ? size : 0;
    }
    if (count == 0)
        return urgent;
    long sent = s_send_batch (self, worker, count, nframes);
    return sent < 0 ? -1 : sent + urgent;
}

void
dp_broker_dispatch_one (dp_broker_t *self, worker_t *worker)
{
    if ((self->queued == 0 && self->waiting == 0) || !worker->ready)
        return;
    long given = s_dispatch_worker (self, worker);
    if (given > 0 && worker->inflight >= worker->credit)
        dp_broker_ready_remove (self, worker);
}

void
dp_broker_dispatch (dp_broker_t *self)
{
    self->dispatch_needed = false;
    size_t rounds = zlistx_size (self->ready);
    /*  Each worker gets one turn; a worker that took tasks moves to the back,
        so under a deep queue the turns rotate. */
    for (size_t i = 0; i < rounds && self->queued > 0; i++) {
        worker_t *worker = (worker_t *)zlistx_first (self->ready);
        if (!worker)
            break;
        long given = s_dispatch_worker (self, worker);
        if (given < 0)
            continue; /* gone, or slow */
        if (worker->inflight >= worker->credit)
            dp_broker_ready_remove (self, worker);
        else if (given > 0 || zlistx_size (self->ready) > 1)
            zlistx_move_end (self->ready, worker->ready);
    }
}

void
dp_broker_dispatch_urgent (dp_broker_t *self)
{
    self->urgent_needed = false;
    size_t rounds = zlistx_size (self->ready);
    for (size_t i = 0; i < rounds && self->waiting > 0; i++) {
        worker_t *worker = (worker_t *)zlistx_first (self->ready);
        if (!worker)
            break;
        long given = s_dispatch_urgent (self, worker);
        if (given < 0)
            continue; /* gone, or slow */
        if (worker->inflight >= worker->credit)
            dp_broker_ready_remove (self, worker);
        else
            zlistx_move_end (self->ready, worker->ready);
    }
}

/*  ---------------------------------------------------------------------------
    Steps of the tick.
*/

void
dp_broker_fnq_offered (dp_broker_t *self, fnq_t *fnq)
{
    fnq->nworkers++;
    fnq->unoffered_since = 0;
    if (fnq->nofunc_at != 0) {
        fnq->nofunc_at = 0;
        self->nofunc_fnqs--;
    }
}

/*  Fails every queued task of fnq, ENOFUNC, and remembers the function
    (while there is room) so that its next tasks fail at once. */
static void
s_fail_function (dp_broker_t *self, fnq_t *fnq, int64_t now)
{
    char message[DP_MAX_NAME + 64];
    snprintf (message, sizeof message, "no worker offers function '%s'", fnq->name);
    zlistx_t *tasks = dp_broker_fair_unqueue_all (self, fnq);
    task_t *task;
    while (tasks && (task = (task_t *)zlistx_detach (tasks, NULL)))
        dp_broker_task_fail (self, task, DPOOL_ENOFUNC, message);
    zlistx_destroy (&tasks);
    if (fnq->nofunc_at == 0) {
        if (self->nofunc_fnqs >= DP_MAX_NOFUNC_FNQS)
            return; /* not remembered: its next tasks get a grace again */
        self->nofunc_fnqs++;
    }
    fnq->nofunc_at = now;
}

/*  An empty queue of a function nobody offers is freed, unless it is
    remembered as failing; the memory fades DP_NOFUNC_MEMORY_MS after its
    last failed task. */
static bool
s_fnq_unused (dp_broker_t *self, fnq_t *fnq, int64_t now)
{
    if (fnq->nofunc_at != 0 && now - fnq->nofunc_at < DP_NOFUNC_MEMORY_MS)
        return false;
    if (fnq->nofunc_at != 0)
        self->nofunc_fnqs--;
    fnq->nofunc_at = 0;
    return true;
}

void
dp_broker_fail_unoffered (dp_broker_t *self, int64_t now)
{
    zlistx_t *unused = NULL;
    for (fnq_t *fnq = (fnq_t *)zhashx_first (self->fnqs); fnq;
         fnq = (fnq_t *)zhashx_next (self->fnqs)) {
        if (fnq->nworkers > 0)
            continue;
        if (fnq->queued == 0) {
            if (fnq->nflows > 0 || !s_fnq_unused (self, fnq, now))
                continue;
            if (!unused)
                unused = zlistx_new ();
            zlistx_add_end (unused, fnq->name);
            continue;
        }
        if (zlistx_size (self->workers) == 0 || self->nofunc_grace_ms < 0) {
            fnq->unoffered_since = 0;
            continue;
        }
        if (fnq->unoffered_since == 0)
            fnq->unoffered_since = now;
        if (now - fnq->unoffered_since >= self->nofunc_grace_ms)
            s_fail_function (self, fnq, now);
    }
    const char *name;
    while (unused && (name = (const char *)zlistx_detach (unused, NULL)))
        zhashx_delete (self->fnqs, name);
    zlistx_destroy (&unused);
}

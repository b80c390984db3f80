/*  dp_broker_journal.c - what the broker writes in its journal
    (dp_journal.h), how it reads it back at start, and the replies that
    wait for the turn's commit.

    Records: a session (its name and key), each task it holds (queued or
    running: its function, arguments and order, with a RUN record while a
    worker holds it that counts the attempt), each RESULT entry it has not
    sent (numbered by the session's entries, so that a sent body deletes
    one range), the named queues with their values (dp_queues.c writes
    those), and the detached batches (dp_batches.c writes each batch's
    state and held results; their tasks' records are written here, keyed
    by the batch's id in place of a session's, in kinds of their own). A task's record is written
   when the broker takes it and deleted when it ends; a result's when it enters the session's batch
    and deleted once that batch went out. The broker's loop commits once
    per turn (dp_broker_journal_commit) before it sends anything that
    acknowledges a write: RESULT batches go after it, and the replies
    handlers send at once without a journal (the named queues') wait in
    a list until it (dp_broker_send_held).

    On restart, sessions come back detached (they expire as any detached
    session does, counted from the restart), their tasks queued again in
    their order, a task that was running with one more attempt counted
    (ELOST once it has had them all: PROTOCOL.md 6), their results ready
    for their client's HELLO, the named queues with every value not
    acknowledged as taken, lent ones back in place, and the batches with
    their results and their tasks (dp_batches_replay; the kinds' order
    brings a batch back before its results and tasks).
*/
#include "dp_broker_int.h"

#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_SIZE   (DP_SESSION_SIZE + 8) /* a session and a number */
#define TASK_HEAD  26                    /* fixed bytes of a task record */
#define ENTRY_HEAD 13                    /* seq, code, a value or a message */
#define ERROR_SIZE 512

static_assert (DP_BATCH_ID_SIZE == DP_SESSION_SIZE, "a batch's key takes a session's place");

/*  A reply that waits for the turn's commit. */
typedef struct {
    dp_cmd_t cmd;
    zmq_msg_t body;
    size_t rid_size;
    uint8_t rid[];
} held_t;

static void
s_held_free (void **item)
{
    held_t *held = (held_t *)*item;
    if (held) {
        zmq_msg_close (&held->body);
        free (held);
        *item = NULL;
    }
}

static void
s_put_u32 (uint8_t *out, uint32_t value)
{
    memcpy (out, &value, sizeof value);
}

static uint32_t
s_get_u32 (const uint8_t *in)
{
    uint32_t value;
    memcpy (&value, in, sizeof value);
    return value;
}

static void
s_key (uint8_t *key, const uint8_t *session, uint64_t number)
{
    memcpy (key, session, DP_SESSION_SIZE);
    dp_journal_be64 (key + DP_SESSION_SIZE, number);
}

/*  ---------------------------------------------------------------------------
    Writing.
*/

/*  True if task's changes are journaled: a journal is on, and the task
    is a session's or a batch's. */
static bool
s_journaled (const dp_broker_t *self, const task_t *task)
{
    return self->journal && task->client;
}

/*  The key of task's records: its session, or its batch's id (of as many
    bytes) in a kind of its own, and its seq (a batch's: its index). Sets
    the kinds of its TASK and RUN records. */
static void
s_task_key (const task_t *task, uint8_t *key, int *task_kind, int *run_kind)
{
    const client_t *client = task->client;
    if (client->batch) {
        memcpy (key, dp_batch_id (client->batch), DP_BATCH_ID_SIZE);
        dp_journal_be64 (key + DP_BATCH_ID_SIZE, task->seq);
        *task_kind = DP_JOURNAL_BTASK;
        *run_kind = DP_JOURNAL_BRUN;
    } else {
        s_key (key, client->session, task->seq);
        *task_kind = DP_JOURNAL_TASK;
        *run_kind = DP_JOURNAL_RUN;
    }
}

void
dp_broker_journal_session (dp_broker_t *self, const client_t *client)
{
    if (!self->journal)
        return;
    uint8_t body[DP_MAX_NAME + 2 + DP_CURVE_KEY];
    size_t name = strlen (client->name);
    body[0] = (uint8_t)name;
    memcpy (body + 1, client->name, name);
    size_t user = strlen (self->from_user);
    memcpy (body + 1 + name, self->from_user, user);
    dp_journal_put (self->journal, DP_JOURNAL_SESSION, client->session, DP_SESSION_SIZE, body,
                    1 + name + user, NULL, 0);
}

void
dp_broker_journal_session_gone (dp_broker_t *self, const client_t *client)
{
    if (!self->journal)
        return;
    uint8_t lo[KEY_SIZE], hi[KEY_SIZE];
    s_key (lo, client->session, 0);
    s_key (hi, client->session, UINT64_MAX);
    dp_journal_del (self->journal, DP_JOURNAL_SESSION, client->session, DP_SESSION_SIZE);
    for (int kind = DP_JOURNAL_RESULT; kind <= DP_JOURNAL_RUN; kind++)
        dp_journal_del_range (self->journal, kind, lo, sizeof lo, hi, sizeof hi);
}

void
dp_broker_journal_task (dp_broker_t *self, const task_t *task)
{
    if (!s_journaled (self, task))
        return;
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    uint8_t head[TASK_HEAD + DP_MAX_NAME];
    const char *fn = task->flow->fnq->name;
    size_t fn_size = strlen (fn);
    dp_journal_be64 (head, task->item.order);
    s_put_u32 (head + 8, (uint32_t)task->item.priority);
    s_put_u32 (head + 12, task->timeout_ms);
    s_put_u32 (head + 16, task->calls);
    s_put_u32 (head + 20, (uint32_t)(uint16_t)task->retries << 16 | task->deaths);
    head[24] = task->flags;
    head[25] = (uint8_t)fn_size;
    memcpy (head + TASK_HEAD, fn, fn_size);
    dp_journal_put (self->journal, kind, key, sizeof key, head, TASK_HEAD + fn_size,
                    dp_broker_task_args ((task_t *)task), task->args_size);
}

void
dp_broker_journal_run (dp_broker_t *self, const task_t *task)
{
    if (!s_journaled (self, task))
        return;
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    uint8_t deaths[4];
    s_put_u32 (deaths, task->deaths);
    dp_journal_put (self->journal, run_kind, key, sizeof key, deaths, sizeof deaths, NULL, 0);
}

void
dp_broker_journal_stopped (dp_broker_t *self, const task_t *task)
{
    if (!s_journaled (self, task))
        return;
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    dp_journal_del (self->journal, run_kind, key, sizeof key);
}

void
dp_broker_journal_task_gone (dp_broker_t *self, const task_t *task)
{
    if (!s_journaled (self, task))
        return;
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    dp_journal_del (self->journal, kind, key, sizeof key);
    dp_journal_del (self->journal, run_kind, key, sizeof key);
}

/*  Journals the entry just added to client's batch (a result's value, or
    an error's message if error), as the session's entry out_next. */
static void
s_journal_entry (dp_broker_t *self, client_t *client, uint64_t seq, int32_t code, bool error,
                 const void *data, size_t size)
{
    uint64_t number = client->out_next++;
    if (!self->journal)
        return;
    uint8_t key[KEY_SIZE];
    s_key (key, client->session, number);
    uint8_t head[ENTRY_HEAD];
    dp_journal_be64 (head, seq);
    s_put_u32 (head + 8, (uint32_t)code);
    head[12] = error;
    dp_journal_put (self->journal, DP_JOURNAL_RESULT, key, sizeof key, head, sizeof head, data,
                    size);
}

void
dp_broker_client_add_result (dp_broker_t *self, client_t *client, uint64_t seq, int32_t code,
                             const void *value, size_t size)
{
    dp_list_add_result (&client->out, seq, code, value, size);
    s_journal_entry (self, client, seq, code, false, value, size);
}

void
dp_broker_client_add_error (dp_broker_t *self, client_t *client, uint64_t seq, int32_t code,
                            const char *message)
{
    dp_list_add_error (&client->out, seq, code, message);
    s_journal_entry (self, client, seq, code, true, message, strlen (message));
}

void
dp_broker_journal_sent (dp_broker_t *self, client_t *client, size_t results)
{
    if (results == 0)
        return;
    uint64_t first = client->out_sent;
    client->out_sent += results;
    if (!self->journal)
        return;
    uint8_t lo[KEY_SIZE], hi[KEY_SIZE];
    s_key (lo, client->session, first);
    s_key (hi, client->session, client->out_sent - 1);
    dp_journal_del_range (self->journal, DP_JOURNAL_RESULT, lo, sizeof lo, hi, sizeof hi);
}

/*  ---------------------------------------------------------------------------
    Replies after the commit.
*/

int
dp_broker_send_held (dp_broker_t *self, peer_t *peer, dp_cmd_t cmd, dp_writer_t *body)
{
    if (!self->journal || dp_journal_failed (self->journal))
        return dp_broker_send (self, peer, cmd, body); /* failed: puts are refused before */
    held_t *held = (held_t *)malloc (sizeof *held + peer->rid_size);
    if (!held)
        return -1;
    if (dp_wire_msg_take (&held->body, body) != 0) {
        free (held);
        return -1;
    }
    dp_writer_reset (body);
    held->cmd = cmd;
    held->rid_size = peer->rid_size;
    memcpy (held->rid, peer->rid, peer->rid_size);
    if (!zlistx_add_end (self->held, held)) {
        void *item = held;
        s_held_free (&item);
        return -1;
    }
    return 0;
}

bool
dp_broker_journal_refused (dp_broker_t *self, char *message, size_t size)
{
    const char *why = self->journal ? dp_journal_failed (self->journal) : NULL;
    if (why)
        snprintf (message, size, "the broker's journal failed (%s): it takes no more work", why);
    return why != NULL;
}

/*  Writes the batches' records changed this turn, then commits. */
static int
s_commit (dp_broker_t *self)
{
    dp_batches_journal (self);
    return dp_journal_commit (self->journal);
}

void
dp_broker_journal_commit (dp_broker_t *self)
{
    if (!self->journal)
        return;
    held_t *held;
    if (s_commit (self) != 0) {
        /*  What this turn acknowledges is not in the journal: no answer
            says it is. The requesters time out; further requests are
            refused (dp_broker_journal_refused). */
        if (zlistx_size (self->held) > 0)
            dp_warn ("journal failed: %zu replies withheld", zlistx_size (self->held));
        zlistx_purge (self->held);
        dp_batches_withhold (self);
        return;
    }
    while ((held = (held_t *)zlistx_detach (self->held, NULL))) {
        dp_wire_send_msg (self->handle, held->rid, held->rid_size, held->cmd, &held->body,
                          ZMQ_DONTWAIT);
        void *item = held;
        s_held_free (&item);
    }
}

/*  ---------------------------------------------------------------------------
    Replay.
*/

/*  The session, or for a batch's kind the batch's client, that a
    record's id names; NULL if none. */
static client_t *
s_replay_client (dp_broker_t *self, int kind, const uint8_t *id, size_t id_size)
{
    if (id_size < DP_SESSION_SIZE)
        return NULL;
    if (kind == DP_JOURNAL_BTASK || kind == DP_JOURNAL_BRUN)
        return dp_batches_replay_client (self, id, id_size);
    char key[2 * DP_SESSION_SIZE + 1];
    dp_broker_hex (id, DP_SESSION_SIZE, key);
    return (client_t *)zhashx_lookup (self->sessions, key);
}

static int
s_replay_session (dp_broker_t *self, const uint8_t *id, size_t id_size, const uint8_t *body,
                  size_t size)
{
    if (id_size != DP_SESSION_SIZE || size < 1 || 1 + (size_t)body[0] > size)
        return -1;
    size_t user = size - 1 - body[0];
    if (user > DP_CURVE_KEY)
        return -1;
    memcpy (self->from_user, body + 1 + body[0], user);
    self->from_user[user] = 0;
    dp_span_t name = {body + 1, body[0]};
    client_t *client = dp_broker_client_new (self, id, name);
    self->from_user[0] = 0;
    return client ? 0 : -1;
}

/*  A result not yet sent, back in its session's batch. Entries are
    numbered afresh from 0 (the record moves), so that the numbers of the
    batch's entries are those of its records whatever was lost before. */
static int
s_replay_result (dp_broker_t *self, const uint8_t *id, size_t id_size, const uint8_t *body,
                 size_t size)
{
    client_t *client = s_replay_client (self, DP_JOURNAL_RESULT, id, id_size);
    if (id_size != KEY_SIZE || size < ENTRY_HEAD)
        return -1;
    if (!client)
        return 0; /* its session was deleted with it */
    dp_journal_del (self->journal, DP_JOURNAL_RESULT, id, id_size);
    uint64_t seq = dp_journal_get_be64 (body);
    int32_t code = (int32_t)s_get_u32 (body + 8);
    size_t data = size - ENTRY_HEAD;
    dp_broker_client_out (self, client, data + RESULT_OVERHEAD);
    if (body[12]) {
        char message[DP_MAX_NAME * 2 + 128];
        snprintf (message, sizeof message, "%.*s", (int)data, body + ENTRY_HEAD);
        dp_broker_client_add_error (self, client, seq, code, message);
    } else
        dp_broker_client_add_result (self, client, seq, code, body + ENTRY_HEAD, data);
    return 0;
}

/*  A task's record back in memory, queued. */
static int
s_replay_task (dp_broker_t *self, int kind, const uint8_t *id, size_t id_size, const uint8_t *body,
               size_t size)
{
    client_t *client = s_replay_client (self, kind, id, id_size);
    if (id_size != KEY_SIZE || size < TASK_HEAD || TASK_HEAD + (size_t)body[25] > size)
        return -1;
    if (!client)
        return 0;
    char name[DP_MAX_NAME + 1];
    memcpy (name, body + TASK_HEAD, body[25]);
    name[body[25]] = 0;
    size_t args = size - TASK_HEAD - body[25];
    fnq_t *fnq = dp_broker_fnq_get (self, name);
    flow_t *flow = fnq ? dp_broker_flow_get (self, client, fnq) : NULL;
    task_t *task =
        flow ? (task_t *)dp_slab_alloc (self->slab, offsetof (task_t, args) + args) : NULL;
    if (!task) {
        if (flow)
            dp_broker_flow_put (self, flow);
        return -1;
    }
    memset (task, 0, offsetof (task_t, args));
    task->item.order = dp_journal_get_be64 (body);
    task->item.priority = (int32_t)s_get_u32 (body + 8);
    task->item.index = DP_TASKQ_NONE;
    task->client = client;
    task->flow = flow;
    task->seq = dp_journal_get_be64 (id + DP_SESSION_SIZE);
    task->timeout_ms = s_get_u32 (body + 12);
    task->calls = s_get_u32 (body + 16);
    uint32_t tries = s_get_u32 (body + 20);
    task->retries = (int16_t)(uint16_t)(tries >> 16);
    task->deaths = (uint16_t)tries;
    task->flags = body[24];
    task->args_size = (uint32_t)args;
    memcpy (task->args, body + TASK_HEAD + body[25], args);
    self->task_bytes += task->args_size;
    if (task->item.order > self->next_order)
        self->next_order = task->item.order;
    if (dp_idmap_put (client->tasks, task->seq, task) != 0) {
        dp_broker_task_free (self, task);
        return -1;
    }
    dp_broker_client_task_add (self, client, task);
    dp_broker_task_queue (self, task);
    return 0;
}

/*  A task that was running when the broker stopped: one more attempt
    counted, as for a worker that died running it. */
static int
s_replay_run (dp_broker_t *self, int kind, const uint8_t *id, size_t id_size, const uint8_t *body,
              size_t size)
{
    client_t *client = s_replay_client (self, kind, id, id_size);
    if (id_size != KEY_SIZE || size < 4)
        return -1;
    task_t *task =
        client ? (task_t *)dp_idmap_get (client->tasks, dp_journal_get_be64 (id + DP_SESSION_SIZE))
               : NULL;
    if (!task || task->item.index == DP_TASKQ_NONE)
        return 0;
    uint32_t deaths = s_get_u32 (body);
    task->deaths = (uint16_t)(deaths > task->deaths ? deaths : task->deaths);
    dp_broker_task_unqueue (self, task);
    dp_broker_journal_stopped (self, task);
    if (++task->deaths > dp_broker_task_retries (task)) {
        char message[96];
        snprintf (message, sizeof message, "the broker stopped while it ran (%u attempts)",
                  task->deaths);
        dp_broker_task_fail (self, task, DPOOL_ELOST, message);
        return 0;
    }
    dp_broker_journal_task (self, task); /* its attempts so far */
    dp_broker_task_queue (self, task);
    return 0;
}

static int
s_replay (void *arg, int kind, const uint8_t *id, size_t id_size, const uint8_t *body, size_t size)
{
    dp_broker_t *self = (dp_broker_t *)arg;
    switch (kind) {
    case DP_JOURNAL_SESSION:
        return s_replay_session (self, id, id_size, body, size);
    case DP_JOURNAL_RESULT:
        return s_replay_result (self, id, id_size, body, size);
    case DP_JOURNAL_TASK:
    case DP_JOURNAL_BTASK:
        return s_replay_task (self, kind, id, id_size, body, size);
    case DP_JOURNAL_RUN:
    case DP_JOURNAL_BRUN:
        return s_replay_run (self, kind, id, id_size, body, size);
    case DP_JOURNAL_QUEUE:
    case DP_JOURNAL_QVALUE:
        return dp_queues_replay (self->queues, kind, id, id_size, body, size);
    case DP_JOURNAL_BATCH:
    case DP_JOURNAL_BRESULT:
        return dp_batches_replay (self, kind, id, id_size, body, size);
    default:
        return -1; /* a kind of a newer broker: refused rather than lost */
    }
}

int
dp_broker_journal_open (dp_broker_t *self, const char *path, int sync)
{
    char error[ERROR_SIZE];
    int64_t started = dp_now_ms ();
    self->held = zlistx_new ();
    if (!self->held)
        return -1;
    zlistx_set_destructor (self->held, s_held_free);
    self->journal = dp_journal_open (path, (dp_journal_sync_t)sync, error, sizeof error);
    if (!self->journal) {
        dp_error ("%s: %s", path, error);
        return -1;
    }
    long records = dp_journal_replay (self->journal, s_replay, self, error, sizeof error);
    if (records < 0 || s_commit (self) != 0) {
        dp_error ("%s: %s", path, records < 0 ? error : dp_journal_failed (self->journal));
        dp_journal_destroy (&self->journal); /* what the replay wrote is rolled back */
        return -1;
    }
    dp_queues_set_journal (self->queues, self->journal);
    size_t batches, tasks, bytes, waiting;
    dp_batches_counts (self->batches, &batches, &tasks, &bytes, &waiting);
    dp_info ("journal %s: %ld records, %zu sessions, %zu batches, %zu tasks queued, replayed in "
             "%lld ms",
             path, records, zhashx_size (self->sessions), batches, self->queued,
             (long long)(dp_now_ms () - started));
    return 0;
}

void
dp_broker_journal_close (dp_broker_t *self)
{
    if (self->journal)
        s_commit (self);
    dp_journal_destroy (&self->journal);
    zlistx_destroy (&self->held);
}

/*  dp_broker_replay.c - the broker's journal read back at start
    (dp_broker_journal_replay): every record to its owner, in the
    journal's order (kind, then id).

    Sessions come back detached (they expire as any detached session
    does, counted from the restart), their tasks queued again in their
    order, a task that was running with one more attempt counted (ELOST
    once it has had them all: PROTOCOL.md 6), their results ready for
    their client's HELLO, the named queues with every value not
    acknowledged as taken, lent ones back in place (dp_queues_replay), and
    the batches with their results and their tasks (dp_batches_replay; the
    kinds' order brings a batch back before its results and tasks). What
    the replay changes (a running task's attempt, results renumbered)
    joins the transaction the journal's opening commits.
*/
#include "dp_broker_journal_int.h"

#include "dp_util.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*  One result entry (its head: seq, code, error mark) back in client's
    batch, renumbered and journaled again. */
static int
s_replay_entry (dp_broker_t *self, client_t *client, const uint8_t *head, const uint8_t *data,
                size_t size)
{
    uint64_t seq = dp_journal_get_be64 (head);
    int32_t code = (int32_t)dp_jrec_get_u32 (head + 8);
    dp_broker_client_out (self, client, size + RESULT_OVERHEAD);
    if (head[12]) {
        char message[DP_MAX_NAME * 2 + 128];
        snprintf (message, sizeof message, "%.*s", (int)size, data);
        dp_broker_client_add_error (self, client, seq, code, message);
    } else
        dp_broker_client_add_result (self, client, seq, code, data, size);
    return 0;
}

/*  A result not yet sent (a RESULT record of its own), back in its
    session's batch. Entries are numbered afresh from 0 (the record
    moves), so that the numbers of the batch's entries are those of its
    records whatever was lost before. */
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
    return s_replay_entry (self, client, body, body + ENTRY_HEAD, size - ENTRY_HEAD);
}

/*  A turn's RESULTS record: its entries back in the session's batch, as
    s_replay_result does for one. Every entry comes back: some may have
    gone out before the broker stopped (their client drops them). */
static int
s_replay_results (dp_broker_t *self, const uint8_t *id, size_t id_size, const uint8_t *body,
                  size_t size)
{
    client_t *client = s_replay_client (self, DP_JOURNAL_RESULTS, id, id_size);
    if (id_size != KEY_SIZE)
        return -1;
    for (size_t at = 0; at < size;) {
        if (size - at < RESULT_HEAD || size - at - RESULT_HEAD < dp_jrec_get_u32 (body + at + 13))
            return -1;
        at += RESULT_HEAD + dp_jrec_get_u32 (body + at + 13);
    }
    if (!client)
        return 0;
    dp_journal_del (self->journal, DP_JOURNAL_RESULTS, id, id_size);
    for (size_t at = 0; at < size;) {
        const uint8_t *entry = body + at;
        uint32_t data = dp_jrec_get_u32 (entry + 13);
        at += RESULT_HEAD + data;
        if (s_replay_entry (self, client, entry, entry + RESULT_HEAD, data) != 0)
            return -1;
    }
    return 0;
}

/*  A task of client back in memory from its record (head, function name,
    arguments), held by client, not queued: *out. Returns 0 (*out NULL if
    client already holds seq), or -1 if the record is malformed or memory
    ran out. */
static int
s_restore (dp_broker_t *self, client_t *client, uint64_t seq, const uint8_t *body, size_t size,
           task_t **out)
{
    *out = NULL;
    if (size < TASK_HEAD || TASK_HEAD + (size_t)body[25] > size)
        return -1;
    if (dp_idmap_get (client->tasks, seq))
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
    task->item.priority = (int32_t)dp_jrec_get_u32 (body + 8);
    task->item.index = DP_TASKQ_NONE;
    task->client = client;
    task->flow = flow;
    task->seq = seq;
    task->timeout_ms = dp_jrec_get_u32 (body + 12);
    task->calls = dp_jrec_get_u32 (body + 16);
    uint32_t tries = dp_jrec_get_u32 (body + 20);
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
    *out = task;
    return 0;
}

/*  A task's record back in memory, queued. */
static int
s_replay_task (dp_broker_t *self, int kind, const uint8_t *id, size_t id_size, const uint8_t *body,
               size_t size)
{
    client_t *client = s_replay_client (self, kind, id, id_size);
    if (id_size != KEY_SIZE)
        return -1;
    if (!client)
        return 0;
    task_t *task;
    if (s_restore (self, client, dp_journal_get_be64 (id + DP_SESSION_SIZE), body, size, &task))
        return -1;
    if (task)
        dp_broker_task_queue (self, task);
    return 0;
}

/*  A task that was running when the broker stopped counts one more
    attempt, as for a worker that died running it: it ends ELOST past its
    retries, else it is queued again, its attempts in its record. */
static void
s_replay_ran (dp_broker_t *self, task_t *task)
{
    if (++task->deaths > dp_broker_task_retries (task)) {
        char message[96];
        snprintf (message, sizeof message, "the broker stopped while it ran (%u attempts)",
                  task->deaths);
        dp_broker_task_fail (self, task, DPOOL_ELOST, message);
        return;
    }
    dp_broker_journal_task (self, task);
    dp_broker_task_queue (self, task);
}

/*  A task that was running when the broker stopped (its RUN record). */
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
    uint32_t deaths = dp_jrec_get_u32 (body);
    task->deaths = (uint16_t)(deaths > task->deaths ? deaths : task->deaths);
    dp_broker_task_unqueue (self, task);
    dp_broker_journal_stopped (self, task);
    s_replay_ran (self, task);
    return 0;
}

/*  The TSTATE records, read before the TASKS records of the same ids
    (the kinds' order), and met again in the same order. */
typedef struct {
    uint8_t key[KEY_SIZE];
    uint32_t count;
    uint8_t bits[GROUP_MAX / 4];
} jstate_t;

struct _jstash_t {
    jstate_t *states;
    size_t count;
    size_t cap;
    size_t next; /* the first not yet met by a TASKS record */
};

static int
s_replay_state (dp_broker_t *self, const uint8_t *id, size_t id_size, const uint8_t *body,
                size_t size)
{
    if (id_size != KEY_SIZE || size < 4)
        return -1;
    uint32_t count = dp_jrec_get_u32 (body);
    if (count == 0 || count > GROUP_MAX || size != 4 + (count + 3) / 4)
        return -1;
    if (!self->jstash)
        self->jstash = (jstash_t *)calloc (1, sizeof *self->jstash);
    jstash_t *stash = self->jstash;
    if (!stash)
        return -1;
    if (stash->count == stash->cap) {
        size_t cap = stash->cap ? 2 * stash->cap : 64;
        jstate_t *more = (jstate_t *)realloc (stash->states, cap * sizeof *more);
        if (!more)
            return -1;
        stash->states = more;
        stash->cap = cap;
    }
    jstate_t *state = &stash->states[stash->count++];
    memcpy (state->key, id, KEY_SIZE);
    state->count = count;
    memset (state->bits, 0, sizeof state->bits);
    memcpy (state->bits, body + 4, size - 4);
    return 0;
}

/*  The state recorded for the group id, if any. */
static const jstate_t *
s_stashed_state (dp_broker_t *self, const uint8_t *id)
{
    jstash_t *stash = self->jstash;
    while (stash && stash->next < stash->count &&
           memcmp (stash->states[stash->next].key, id, KEY_SIZE) < 0)
        stash->next++;
    if (stash && stash->next < stash->count &&
        memcmp (stash->states[stash->next].key, id, KEY_SIZE) == 0)
        return &stash->states[stash->next++];
    return NULL;
}

/*  The group record id, which a session's turn wrote: its tasks that had
    not ended come back, in the group as they were; one that was running
    counts an attempt (and leaves the group for a record of its own). */
static int
s_replay_group (dp_broker_t *self, const uint8_t *id, size_t id_size, const uint8_t *body,
                size_t size)
{
    client_t *client = s_replay_client (self, DP_JOURNAL_TASKS, id, id_size);
    if (id_size != KEY_SIZE)
        return -1;
    const jstate_t *state = s_stashed_state (self, id);
    jsession_t *js = client ? dp_jsession_of (client) : NULL;
    jgroup_t *group = js ? dp_jgroup_new (self) : NULL;
    if (!group)
        return client ? -1 : 0; /* no session: its records went with it */
    memcpy (group->key, id, KEY_SIZE);
    group->written = true;
    group->state = state != NULL;
    uint64_t number = dp_journal_get_be64 (id + DP_SESSION_SIZE);
    if (number >= js->groups)
        js->groups = number + 1;
    if (state)
        memcpy (group->bits, state->bits, sizeof group->bits);
    int rc = 0;
    size_t at = 0;
    while (rc == 0 && at < size) {
        uint32_t slot = group->count++;
        if (size - at < GROUP_ENTRY || slot >= GROUP_MAX ||
            size - at - GROUP_ENTRY < dp_jrec_get_u32 (body + at + 8)) {
            rc = -1;
            break;
        }
        uint64_t seq = dp_journal_get_be64 (body + at);
        size_t record = dp_jrec_get_u32 (body + at + 8);
        const uint8_t *task_body = body + at + GROUP_ENTRY;
        at += GROUP_ENTRY + record;
        int bits = dp_jgroup_bits (group, slot);
        if (bits & ENDED)
            continue;
        task_t *task;
        rc = s_restore (self, client, seq, task_body, record, &task);
        if (rc != 0 || !task) {
            dp_jgroup_set_bits (group, slot, ENDED);
            continue;
        }
        task->jslot = group->index << SLOT_BITS | slot;
        group->live++;
        if (bits & RUNNING)
            s_replay_ran (self, task);
        else
            dp_broker_task_queue (self, task);
    }
    if (rc == 0 && state && state->count != group->count)
        rc = -1;
    dp_jgroup_dirty (self, group); /* its state is written again, or its records deleted */
    return rc;
}

/*  Deletes the TSTATE records no TASKS record met, and the stash. */
static void
s_stash_free (dp_broker_t *self)
{
    jstash_t *stash = self->jstash;
    if (!stash)
        return;
    for (size_t i = 0; i < stash->count; i++)
        if (self->journal)
            dp_journal_del (self->journal, DP_JOURNAL_TSTATE, stash->states[i].key, KEY_SIZE);
    free (stash->states);
    free (stash);
    self->jstash = NULL;
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
    case DP_JOURNAL_RESULTS:
        return s_replay_results (self, id, id_size, body, size);
    case DP_JOURNAL_TSTATE:
        return s_replay_state (self, id, id_size, body, size);
    case DP_JOURNAL_TASKS:
        return s_replay_group (self, id, id_size, body, size);
    default:
        return -1; /* a kind of a newer broker: refused rather than lost */
    }
}

long
dp_broker_journal_replay (dp_broker_t *self, char *error, size_t size)
{
    long records = dp_journal_replay (self->journal, s_replay, self, error, size);
    s_stash_free (self);
    return records;
}

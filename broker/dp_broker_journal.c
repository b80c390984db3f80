/*  dp_broker_journal.c - what the broker writes in its journal
    (dp_journal.h), and the replies that wait for the turn's commit; the
    journal is read back at start by dp_broker_replay.c.

    Records: a session (its name and key); the tasks it sent in one turn,
    in one TASKS record (function, arguments, order of each), with a
    TSTATE record of two bits a task (ended; running, which counts an
    attempt at restart) rewritten in each turn that changed one, both
    deleted once every task of the group ended: a few records a turn
    rather than several a task, which is what keeps a journaled broker
    near the speed of one without (bench/RESULTS.md). A task whose
    attempts change (a worker died running it) moves to a TASK record of
    its own, with a RUN record while a worker holds it. The RESULT
    entries a session got in one turn go in one RESULTS record, deleted
    once all went out. The named queues write their values (dp_queues.c),
    the detached batches their state and held results (dp_batches.c);
    a batch's tasks have records of their own, written here, keyed by the
    batch's id in place of a session's, in kinds of their own. The
    broker's loop commits once per turn (dp_broker_journal_commit: the
    turn's groups and results are written then) before it sends anything
    that acknowledges a write: RESULT batches go after it, and the
    replies handlers send at once without a journal (the named queues')
    wait in a list until it (dp_broker_send_held).

    On restart (dp_broker_replay.c), what the records hold comes back:
    sessions detached, their tasks queued, a task that was running with
    one more attempt, their results, the named queues and the batches.
*/
#include "dp_broker_journal_int.h"

#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/*  ---------------------------------------------------------------------------
    Writing.
*/

#define KEEP_BYTES (1024 * 1024) /* a turn's buffer larger than this is freed after it */

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
        dp_jrec_key (key, client->session, task->seq);
        *task_kind = DP_JOURNAL_TASK;
        *run_kind = DP_JOURNAL_RUN;
    }
}

/*  Writes the fixed part of task's record and its function's name into
    head (TASK_HEAD + DP_MAX_NAME bytes); returns the bytes written. Its
    arguments follow. */
static size_t
s_task_head (const task_t *task, uint8_t *head)
{
    const char *fn = task->flow->fnq->name;
    size_t fn_size = strlen (fn);
    dp_journal_be64 (head, task->item.order);
    dp_jrec_put_u32 (head + 8, (uint32_t)task->item.priority);
    dp_jrec_put_u32 (head + 12, task->timeout_ms);
    dp_jrec_put_u32 (head + 16, task->calls);
    dp_jrec_put_u32 (head + 20, (uint32_t)(uint16_t)task->retries << 16 | task->deaths);
    head[24] = task->flags;
    head[25] = (uint8_t)fn_size;
    memcpy (head + TASK_HEAD, fn, fn_size);
    return TASK_HEAD + fn_size;
}

/*  task's group, or NULL; and its place in it. */
static jgroup_t *
s_group_of (const dp_broker_t *self, const task_t *task)
{
    return task->jslot ? self->jgroups[task->jslot >> SLOT_BITS] : NULL;
}

static uint32_t
s_slot (const task_t *task)
{
    return task->jslot & (GROUP_MAX - 1);
}

/*  A new group, in broker->jgroups (zeroed: fill its key). NULL if out
    of memory or of indexes. */
jgroup_t *
dp_jgroup_new (dp_broker_t *self)
{
    uint32_t index;
    if (self->njfree > 0)
        index = self->jfree[--self->njfree];
    else {
        if (self->njgroups + 1 >= GROUPS_MAX)
            return NULL;
        if (self->njgroups + 1 >= self->jgroups_cap) {
            uint32_t cap = self->jgroups_cap ? 2 * self->jgroups_cap : 64;
            jgroup_t **more = (jgroup_t **)realloc (self->jgroups, cap * sizeof *more);
            uint32_t *free_more = (uint32_t *)realloc (self->jfree, cap * sizeof *free_more);
            if (more)
                self->jgroups = more;
            if (free_more)
                self->jfree = free_more;
            if (!more || !free_more)
                return NULL;
            self->jgroups_cap = cap;
        }
        index = ++self->njgroups;
    }
    jgroup_t *group = (jgroup_t *)calloc (1, sizeof *group);
    if (!group) {
        self->jfree[self->njfree++] = index;
        return NULL;
    }
    group->index = index;
    msgpack_sbuffer_init (&group->body);
    self->jgroups[index] = group;
    return group;
}

static void
s_group_free (dp_broker_t *self, jgroup_t *group)
{
    self->jgroups[group->index] = NULL;
    self->jfree[self->njfree++] = group->index;
    msgpack_sbuffer_destroy (&group->body);
    free (group);
}

void
dp_broker_journal_fini (dp_broker_t *self)
{
    for (uint32_t i = 1; i <= self->njgroups; i++)
        if (self->jgroups[i]) {
            msgpack_sbuffer_destroy (&self->jgroups[i]->body);
            free (self->jgroups[i]);
        }
    free (self->jgroups);
    free (self->jfree);
    self->jgroups = NULL;
    self->jfree = NULL;
    self->njgroups = self->jgroups_cap = self->njfree = 0;
}

/*  Its state is written (or, with no task left, its records deleted) at
    the turn's commit. */
void
dp_jgroup_dirty (dp_broker_t *self, jgroup_t *group)
{
    if (!group->dirty) {
        group->dirty = true;
        group->next = self->jdirty;
        self->jdirty = group;
    }
}

/*  Task leaves its group: ended, gone with its session, or moving to a
    record of its own. */
static void
s_release (dp_broker_t *self, task_t *task)
{
    jgroup_t *group = s_group_of (self, task);
    dp_jgroup_set_bits (group, s_slot (task), ENDED);
    task->jslot = 0;
    group->live--;
    if (!task->client)
        group->orphan = true; /* a task keeps its session's records; this one's are gone */
    if (self->journal)
        dp_jgroup_dirty (self, group);
    else if (group->live == 0 && !group->open)
        s_group_free (self, group); /* the journal is closed: the broker is going */
}

/*  client's journal state, made at its first need. NULL if out of memory. */
jsession_t *
dp_jsession_of (client_t *client)
{
    if (!client->journal) {
        client->journal = (jsession_t *)calloc (1, sizeof *client->journal);
        if (client->journal)
            msgpack_sbuffer_init (&client->journal->entries);
    }
    return client->journal;
}

/*  client's journal state, listed for the turn's commit. NULL if out of
    memory. */
static jsession_t *
s_jsession_listed (dp_broker_t *self, client_t *client)
{
    jsession_t *js = dp_jsession_of (client);
    if (js && !js->listed) {
        if (self->njclients == self->jclients_cap) {
            size_t cap = self->jclients_cap ? 2 * self->jclients_cap : 64;
            client_t **more = (client_t **)realloc (self->jclients, cap * sizeof *more);
            if (!more)
                return NULL;
            self->jclients = more;
            self->jclients_cap = cap;
        }
        self->jclients[self->njclients++] = client;
        js->listed = true;
    }
    return js;
}

/*  Writes group's TASKS record, if a task still names it. */
static void
s_group_write (dp_broker_t *self, jgroup_t *group)
{
    if (group->live > 0 && !group->orphan) {
        dp_journal_put (self->journal, DP_JOURNAL_TASKS, group->key, KEY_SIZE, NULL, 0,
                        group->body.data, group->body.size);
        group->written = true;
    }
    msgpack_sbuffer_destroy (&group->body);
    msgpack_sbuffer_init (&group->body);
}

/*  The turn is over for the open group: its record is written; with no
    task left it is freed at the commit. */
static void
s_group_close (dp_broker_t *self, jgroup_t *group)
{
    group->open = false;
    s_group_write (self, group);
    if (group->live == 0)
        dp_jgroup_dirty (self, group);
}

/*  A new group of client's, open for this turn's tasks. */
static jgroup_t *
s_group_new (dp_broker_t *self, jsession_t *js, const client_t *client)
{
    jgroup_t *group = dp_jgroup_new (self);
    if (!group)
        return NULL;
    dp_jrec_key (group->key, client->session, js->groups++);
    group->open = true;
    return group;
}

void
dp_broker_journal_task_new (dp_broker_t *self, task_t *task)
{
    if (!s_journaled (self, task))
        return;
    client_t *client = task->client;
    jsession_t *js = client->batch ? NULL : s_jsession_listed (self, client);
    jgroup_t *group = js ? js->open : NULL;
    if (js && (!group || group->count == GROUP_MAX)) {
        if (group)
            s_group_close (self, group); /* full: written now, in the same transaction */
        group = js->open = s_group_new (self, js, client);
    }
    if (!group) {
        dp_broker_journal_task (self, task); /* a batch's, or out of memory: alone */
        return;
    }
    uint8_t head[GROUP_ENTRY + TASK_HEAD + DP_MAX_NAME];
    size_t size = s_task_head (task, head + GROUP_ENTRY);
    dp_journal_be64 (head, task->seq);
    dp_jrec_put_u32 (head + 8, (uint32_t)(size + task->args_size));
    size_t before = group->body.size;
    if (msgpack_sbuffer_write (&group->body, (const char *)head, GROUP_ENTRY + size) != 0 ||
        msgpack_sbuffer_write (&group->body, (const char *)dp_broker_task_args (task),
                               task->args_size) != 0) {
        group->body.size = before;
        dp_broker_journal_task (self, task);
        return;
    }
    task->jslot = group->index << SLOT_BITS | group->count++;
    group->live++;
}

void
dp_broker_journal_task (dp_broker_t *self, task_t *task)
{
    if (!s_journaled (self, task))
        return;
    if (task->jslot)
        s_release (self, task); /* its own record from now on, in the same commit */
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    uint8_t head[TASK_HEAD + DP_MAX_NAME];
    size_t size = s_task_head (task, head);
    dp_journal_put (self->journal, kind, key, sizeof key, head, size,
                    dp_broker_task_args ((task_t *)task), task->args_size);
}

void
dp_broker_journal_run (dp_broker_t *self, task_t *task)
{
    if (!s_journaled (self, task))
        return;
    if (task->jslot && task->deaths == 0) {
        dp_jgroup_set_bits (s_group_of (self, task), s_slot (task), RUNNING);
        dp_jgroup_dirty (self, s_group_of (self, task));
        return;
    }
    if (task->jslot)
        dp_broker_journal_task (self, task); /* its attempts so far need a record of its own */
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    uint8_t deaths[4];
    dp_jrec_put_u32 (deaths, task->deaths);
    dp_journal_put (self->journal, run_kind, key, sizeof key, deaths, sizeof deaths, NULL, 0);
}

void
dp_broker_journal_stopped (dp_broker_t *self, task_t *task)
{
    if (!s_journaled (self, task))
        return;
    if (task->jslot) {
        dp_jgroup_set_bits (s_group_of (self, task), s_slot (task), 0);
        dp_jgroup_dirty (self, s_group_of (self, task));
        return;
    }
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    dp_journal_del (self->journal, run_kind, key, sizeof key);
}

void
dp_broker_journal_task_gone (dp_broker_t *self, task_t *task)
{
    if (!s_journaled (self, task))
        return;
    if (task->jslot) {
        s_release (self, task);
        return;
    }
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    dp_journal_del (self->journal, kind, key, sizeof key);
    dp_journal_del (self->journal, run_kind, key, sizeof key);
}

void
dp_broker_journal_task_free (dp_broker_t *self, task_t *task)
{
    if (task->jslot)
        s_release (self, task);
}

/*  Journals the entry just added to client's batch (a result's value, or
    an error's message if error), as the session's entry out_next: in the
    turn's RESULTS record, or alone if memory ran out. */
static void
s_journal_entry (dp_broker_t *self, client_t *client, uint64_t seq, int32_t code, bool error,
                 const void *data, size_t size)
{
    uint64_t number = client->out_next++;
    if (!self->journal)
        return;
    uint8_t head[RESULT_HEAD];
    dp_journal_be64 (head, seq);
    dp_jrec_put_u32 (head + 8, (uint32_t)code);
    head[12] = error;
    dp_jrec_put_u32 (head + 13, (uint32_t)size);
    jsession_t *js = s_jsession_listed (self, client);
    if (js) {
        size_t before = js->entries.size;
        if (msgpack_sbuffer_write (&js->entries, (const char *)head, sizeof head) == 0 &&
            msgpack_sbuffer_write (&js->entries, (const char *)data, size) == 0) {
            if (before == 0)
                js->first = number;
            js->end = number + 1;
            return;
        }
        js->entries.size = before;
        js->singles = true;
    }
    uint8_t key[KEY_SIZE];
    dp_jrec_key (key, client->session, number);
    dp_journal_put (self->journal, DP_JOURNAL_RESULT, key, sizeof key, head, 13, data, size);
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
dp_broker_journal_result_framed (dp_broker_t *self, client_t *client, uint64_t seq,
                                 const void *value, size_t size)
{
    s_journal_entry (self, client, seq, 0, false, value, size);
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
    jsession_t *js = client->journal;
    while (js && js->head < js->nranges && js->ranges[2 * js->head + 1] <= client->out_sent) {
        uint8_t key[KEY_SIZE];
        dp_jrec_key (key, client->session, js->ranges[2 * js->head]);
        dp_journal_del (self->journal, DP_JOURNAL_RESULTS, key, sizeof key);
        if (++js->head == js->nranges)
            js->head = js->nranges = 0;
    }
    if (!js || js->singles) {
        uint8_t lo[KEY_SIZE], hi[KEY_SIZE];
        dp_jrec_key (lo, client->session, first);
        dp_jrec_key (hi, client->session, client->out_sent - 1);
        dp_journal_del_range (self->journal, DP_JOURNAL_RESULT, lo, sizeof lo, hi, sizeof hi);
    }
}

/*  Writes a session's part of the turn: its open group's TASKS record
    and its RESULTS record (unless every entry already went out). */
static void
s_flush_session (dp_broker_t *self, client_t *client)
{
    jsession_t *js = client->journal;
    js->listed = false;
    if (js->open) {
        s_group_close (self, js->open);
        js->open = NULL;
    }
    if (js->entries.size == 0)
        return;
    if (js->end > client->out_sent) {
        uint8_t key[KEY_SIZE];
        dp_jrec_key (key, client->session, js->first);
        dp_journal_put (self->journal, DP_JOURNAL_RESULTS, key, sizeof key, NULL, 0,
                        js->entries.data, js->entries.size);
        if (js->nranges == js->ranges_cap) {
            size_t cap = js->ranges_cap ? 2 * js->ranges_cap : 8;
            uint64_t *more = (uint64_t *)realloc (js->ranges, 2 * cap * sizeof *more);
            if (more) {
                js->ranges = more;
                js->ranges_cap = cap;
            }
        }
        if (js->nranges < js->ranges_cap) {
            js->ranges[2 * js->nranges] = js->first;
            js->ranges[2 * js->nranges + 1] = js->end;
            js->nranges++;
        } /* else: out of memory, the record stays until the session goes */
    }
    if (js->entries.alloc > KEEP_BYTES) {
        msgpack_sbuffer_destroy (&js->entries);
        msgpack_sbuffer_init (&js->entries);
    } else
        msgpack_sbuffer_clear (&js->entries);
}

/*  Writes what the turn changed in the sessions' records: groups and
    results, then the groups' states; frees the groups no task names. */
static void
s_flush (dp_broker_t *self)
{
    for (size_t i = 0; i < self->njclients; i++)
        if (self->jclients[i])
            s_flush_session (self, self->jclients[i]);
    self->njclients = 0;
    jgroup_t *group;
    while ((group = self->jdirty)) {
        self->jdirty = group->next;
        group->dirty = false;
        bool keep = group->written && !group->orphan;
        if (group->live == 0) {
            if (keep) {
                dp_journal_del (self->journal, DP_JOURNAL_TASKS, group->key, KEY_SIZE);
                if (group->state)
                    dp_journal_del (self->journal, DP_JOURNAL_TSTATE, group->key, KEY_SIZE);
            }
            s_group_free (self, group);
        } else if (keep) {
            uint8_t count[4];
            dp_jrec_put_u32 (count, group->count);
            dp_journal_put (self->journal, DP_JOURNAL_TSTATE, group->key, KEY_SIZE, count,
                            sizeof count, group->bits, (group->count + 3) / 4);
            group->state = true;
        }
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
dp_broker_journal_session_gone (dp_broker_t *self, client_t *client)
{
    jsession_t *js = client->journal;
    if (js) {
        if (js->open) {
            js->open->open = false;
            js->open->orphan = true;
            if (js->open->live == 0 && !js->open->dirty)
                s_group_free (self, js->open); /* else freed at the commit */
        }
        for (size_t i = 0; js->listed && i < self->njclients; i++)
            if (self->jclients[i] == client)
                self->jclients[i] = NULL;
        msgpack_sbuffer_destroy (&js->entries);
        free (js->ranges);
        free (js);
        client->journal = NULL;
    }
    if (!self->journal)
        return;
    uint8_t lo[KEY_SIZE], hi[KEY_SIZE];
    dp_jrec_key (lo, client->session, 0);
    dp_jrec_key (hi, client->session, UINT64_MAX);
    dp_journal_del (self->journal, DP_JOURNAL_SESSION, client->session, DP_SESSION_SIZE);
    static const int kinds[] = {DP_JOURNAL_RESULT,  DP_JOURNAL_TASK,   DP_JOURNAL_RUN,
                                DP_JOURNAL_RESULTS, DP_JOURNAL_TSTATE, DP_JOURNAL_TASKS};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        dp_journal_del_range (self->journal, kinds[i], lo, sizeof lo, hi, sizeof hi);
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
    s_flush (self);
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
    long records = dp_broker_journal_replay (self, error, sizeof error);
    if (records < 0 || s_commit (self) != 0) {
        dp_error ("%s: %s", path, records < 0 ? error : dp_journal_failed (self->journal));
        if (records < 0)
            s_flush (self); /* closes the groups the replay made; its writes are rolled back */
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
    free (self->jclients);
    self->jclients = NULL;
    self->njclients = self->jclients_cap = 0;
}

/*  dp_broker_journal.c - what the broker writes in its journal
    (dp_journal.h), how it reads it back at start, and the replies that
    wait for the turn's commit.

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

#define SLOT_BITS   10                       /* of task_t.jslot: the task's place in its group */
#define GROUP_MAX   (1u << SLOT_BITS)        /* tasks in one TASKS record */
#define GROUPS_MAX  (1u << (32 - SLOT_BITS)) /* groups alive at once, and one */
#define GROUP_ENTRY 12 /* a task's seq and its record's size, before its record */
#define RESULT_HEAD 17 /* a RESULTS entry's seq, code, error mark and size */
#define ENDED       1  /* a task's bits in its group: ended, or moved to a record of its own */
#define RUNNING     2  /* a worker holds it */
#define KEEP_BYTES  (1024 * 1024) /* a turn's buffer larger than this is freed after it */

/*  The tasks a session sent in one turn, journaled in one TASKS record
    (at most GROUP_MAX of them). What happens to them later goes to the
    group's TSTATE record, two bits a task, rewritten once per turn in
    which any changed; both go once no task names the group. A task whose
    attempts change leaves its group for a TASK record of its own. */
struct _jgroup_t {
    uint8_t key[KEY_SIZE]; /* its session and number: its records' id */
    uint32_t index;        /* in broker->jgroups */
    uint32_t count;        /* tasks in its record */
    uint32_t live;         /* tasks that name it */
    bool open;             /* its session's tasks still join it this turn */
    bool written;          /* its TASKS record is in the journal */
    bool state;            /* its TSTATE record is */
    bool dirty;            /* in broker->jdirty */
    bool orphan;           /* its session was forgotten (its records with it) */
    jgroup_t *next;        /* in broker->jdirty */
    msgpack_sbuffer body;  /* the tasks' records, until written */
    uint8_t bits[GROUP_MAX / 4];
};

/*  A session's part of the turn's commit, and its RESULTS records. */
struct _jsession_t {
    jgroup_t *open;          /* the group of this turn's tasks; NULL: none yet */
    uint64_t groups;         /* groups numbered so far */
    msgpack_sbuffer entries; /* this turn's RESULT entries, for one RESULTS record */
    uint64_t first;          /* the number of the first of them */
    uint64_t end;            /* and one past the last */
    bool listed;             /* in broker->jclients */
    bool singles;            /* some entries went to RESULT records of their own */
    uint64_t *ranges;        /* RESULTS records in the journal: first, end pairs, oldest first */
    size_t head;             /* the oldest pair still there */
    size_t nranges;
    size_t ranges_cap;
};

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

/*  Writes the fixed part of task's record and its function's name into
    head (TASK_HEAD + DP_MAX_NAME bytes); returns the bytes written. Its
    arguments follow. */
static size_t
s_task_head (const task_t *task, uint8_t *head)
{
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
    return TASK_HEAD + fn_size;
}

static int
s_bits (const jgroup_t *group, uint32_t slot)
{
    return group->bits[slot / 4] >> (slot % 4 * 2) & 3;
}

static void
s_set_bits (jgroup_t *group, uint32_t slot, int bits)
{
    int shift = (int)(slot % 4 * 2);
    group->bits[slot / 4] = (uint8_t)((group->bits[slot / 4] & ~(3 << shift)) | bits << shift);
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
static jgroup_t *
s_group_alloc (dp_broker_t *self)
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
static void
s_group_dirty (dp_broker_t *self, jgroup_t *group)
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
    s_set_bits (group, s_slot (task), ENDED);
    task->jslot = 0;
    group->live--;
    if (!task->client)
        group->orphan = true; /* a task keeps its session's records; this one's are gone */
    if (self->journal)
        s_group_dirty (self, group);
    else if (group->live == 0 && !group->open)
        s_group_free (self, group); /* the journal is closed: the broker is going */
}

/*  client's journal state, made at its first need. NULL if out of memory. */
static jsession_t *
s_jsession (client_t *client)
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
    jsession_t *js = s_jsession (client);
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
        s_group_dirty (self, group);
}

/*  A new group of client's, open for this turn's tasks. */
static jgroup_t *
s_group_new (dp_broker_t *self, jsession_t *js, const client_t *client)
{
    jgroup_t *group = s_group_alloc (self);
    if (!group)
        return NULL;
    s_key (group->key, client->session, js->groups++);
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
    s_put_u32 (head + 8, (uint32_t)(size + task->args_size));
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
        s_set_bits (s_group_of (self, task), s_slot (task), RUNNING);
        s_group_dirty (self, s_group_of (self, task));
        return;
    }
    if (task->jslot)
        dp_broker_journal_task (self, task); /* its attempts so far need a record of its own */
    uint8_t key[KEY_SIZE];
    int kind, run_kind;
    s_task_key (task, key, &kind, &run_kind);
    uint8_t deaths[4];
    s_put_u32 (deaths, task->deaths);
    dp_journal_put (self->journal, run_kind, key, sizeof key, deaths, sizeof deaths, NULL, 0);
}

void
dp_broker_journal_stopped (dp_broker_t *self, task_t *task)
{
    if (!s_journaled (self, task))
        return;
    if (task->jslot) {
        s_set_bits (s_group_of (self, task), s_slot (task), 0);
        s_group_dirty (self, s_group_of (self, task));
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
    s_put_u32 (head + 8, (uint32_t)code);
    head[12] = error;
    s_put_u32 (head + 13, (uint32_t)size);
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
    s_key (key, client->session, number);
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
        s_key (key, client->session, js->ranges[2 * js->head]);
        dp_journal_del (self->journal, DP_JOURNAL_RESULTS, key, sizeof key);
        if (++js->head == js->nranges)
            js->head = js->nranges = 0;
    }
    if (!js || js->singles) {
        uint8_t lo[KEY_SIZE], hi[KEY_SIZE];
        s_key (lo, client->session, first);
        s_key (hi, client->session, client->out_sent - 1);
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
        s_key (key, client->session, js->first);
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
            s_put_u32 (count, group->count);
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
    s_key (lo, client->session, 0);
    s_key (hi, client->session, UINT64_MAX);
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

/*  One result entry (its head: seq, code, error mark) back in client's
    batch, renumbered and journaled again. */
static int
s_replay_entry (dp_broker_t *self, client_t *client, const uint8_t *head, const uint8_t *data,
                size_t size)
{
    uint64_t seq = dp_journal_get_be64 (head);
    int32_t code = (int32_t)s_get_u32 (head + 8);
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
        if (size - at < RESULT_HEAD || size - at - RESULT_HEAD < s_get_u32 (body + at + 13))
            return -1;
        at += RESULT_HEAD + s_get_u32 (body + at + 13);
    }
    if (!client)
        return 0;
    dp_journal_del (self->journal, DP_JOURNAL_RESULTS, id, id_size);
    for (size_t at = 0; at < size;) {
        const uint8_t *entry = body + at;
        uint32_t data = s_get_u32 (entry + 13);
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
    task->item.priority = (int32_t)s_get_u32 (body + 8);
    task->item.index = DP_TASKQ_NONE;
    task->client = client;
    task->flow = flow;
    task->seq = seq;
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
    uint32_t deaths = s_get_u32 (body);
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
    uint32_t count = s_get_u32 (body);
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
    jsession_t *js = client ? s_jsession (client) : NULL;
    jgroup_t *group = js ? s_group_alloc (self) : NULL;
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
            size - at - GROUP_ENTRY < s_get_u32 (body + at + 8)) {
            rc = -1;
            break;
        }
        uint64_t seq = dp_journal_get_be64 (body + at);
        size_t record = s_get_u32 (body + at + 8);
        const uint8_t *task_body = body + at + GROUP_ENTRY;
        at += GROUP_ENTRY + record;
        int bits = s_bits (group, slot);
        if (bits & ENDED)
            continue;
        task_t *task;
        rc = s_restore (self, client, seq, task_body, record, &task);
        if (rc != 0 || !task) {
            s_set_bits (group, slot, ENDED);
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
    s_group_dirty (self, group); /* its state is written again, or its records deleted */
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
    s_stash_free (self);
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

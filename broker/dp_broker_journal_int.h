/*  dp_broker_journal_int.h - what the broker's journal code shares
    between its writing side (dp_broker_journal.c) and its replay
    (dp_broker_replay.c): the records' layouts and the groups of tasks
    journaled together. Private to those two files.

    Records (dp_journal.h's kinds): ids are a session (or a batch's id) and
    a big-endian number (KEY_SIZE bytes). A task's record is TASK_HEAD
    bytes (order, priority, timeout, calls, retries and attempts, flags,
    the name's size), its function's name, its arguments. A TASKS record
    is, per task, its seq (8), its record's size (4) and its record. A
    TSTATE record is a count (4) and two bits a task (ENDED, RUNNING). A
    RESULT record is a seq (8), a code (4), an error mark (1) and the value
    or message; a RESULTS record is such entries, each with its data's size
    (4) before the data. Numbers inside bodies are in host order: a
    journal is read back by the machine that wrote it.
*/
#ifndef DP_BROKER_JOURNAL_INT_H_INCLUDED
#define DP_BROKER_JOURNAL_INT_H_INCLUDED

#include "dp_broker_int.h"

#include <string.h>

#define KEY_SIZE    (DP_SESSION_SIZE + 8)    /* a session and a number */
#define TASK_HEAD   26                       /* fixed bytes of a task record */
#define ENTRY_HEAD  13                       /* seq, code, a value or a message */
#define SLOT_BITS   10                       /* of task_t.jslot: the task's place in its group */
#define GROUP_MAX   (1u << SLOT_BITS)        /* tasks in one TASKS record */
#define GROUPS_MAX  (1u << (32 - SLOT_BITS)) /* groups alive at once, and one */
#define GROUP_ENTRY 12 /* a task's seq and its record's size, before its record */
#define RESULT_HEAD 17 /* a RESULTS entry's seq, code, error mark and size */
#define ENDED       1  /* a task's bits in its group: ended, or moved to a record of its own */
#define RUNNING     2  /* a worker holds it */

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

static inline void
dp_jrec_put_u32 (uint8_t *out, uint32_t value)
{
    memcpy (out, &value, sizeof value);
}

static inline uint32_t
dp_jrec_get_u32 (const uint8_t *in)
{
    uint32_t value;
    memcpy (&value, in, sizeof value);
    return value;
}

/*  The id of a session's (or a batch's) record number. */
static inline void
dp_jrec_key (uint8_t *key, const uint8_t *session, uint64_t number)
{
    memcpy (key, session, DP_SESSION_SIZE);
    dp_journal_be64 (key + DP_SESSION_SIZE, number);
}

/*  A task's two bits in its group, by slot. */
static inline int
dp_jgroup_bits (const jgroup_t *group, uint32_t slot)
{
    return group->bits[slot / 4] >> (slot % 4 * 2) & 3;
}

static inline void
dp_jgroup_set_bits (jgroup_t *group, uint32_t slot, int bits)
{
    int shift = (int)(slot % 4 * 2);
    group->bits[slot / 4] = (uint8_t)((group->bits[slot / 4] & ~(3 << shift)) | bits << shift);
}

#pragma GCC visibility push(hidden)

/*  A new group, in broker->jgroups (zeroed: its key is the caller's to
    fill). NULL if out of memory or of indexes. */
jgroup_t *
dp_jgroup_new (dp_broker_t *self);

/*  The group's state is written (or, with no task left, its records
    deleted and the group freed) at the turn's commit. */
void
dp_jgroup_dirty (dp_broker_t *self, jgroup_t *group);

/*  client's journal state, made at its first need. NULL if out of memory. */
jsession_t *
dp_jsession_of (client_t *client);

/*  Hands every record of the journal back to its owner (dp_broker_replay.c).
    Returns the records read, or -1 with error written. */
long
dp_broker_journal_replay (dp_broker_t *self, char *error, size_t size);

#pragma GCC visibility pop

#endif

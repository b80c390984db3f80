/*  dp_journal.h - the broker's journal: what it holds, kept in a SQLite
    database so that it outlives the broker's process.

    A journal is a set of records, each a kind (a small number naming its
    owner's record type), an id (bytes, unique within its kind) and a body
    (bytes). Owners write with one call per change: dp_journal_put makes
    or replaces a record, dp_journal_del and dp_journal_del_range remove
    them. Writes are batched: the first write after a commit opens a
    transaction, and dp_journal_commit ends it (group commit: the broker
    commits once per turn of its loop, before it sends that turn's
    acknowledgements). On restart dp_journal_replay hands every record
    back, in order of kind then id, to a callback that passes each kind to
    its owner.

    The database is in WAL mode, locked exclusively (a second process that
    opens it is refused), and carries a schema version (a journal of a
    newer version is refused). Once a write or a commit fails (a full
    disk, an I/O error) the journal is failed: the open transaction is
    rolled back, later writes do nothing, and dp_journal_failed says why;
    the broker then takes no more work (PROTOCOL.md 6.1).

    Not thread-safe: one broker loop owns it. Nothing blocks but the
    file system (and with DP_JOURNAL_SYNC_FULL an fsync per commit).
*/
#ifndef DP_JOURNAL_H_INCLUDED
#define DP_JOURNAL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _dp_journal_t dp_journal_t;

/*  The schema this code writes; a journal of a higher one is refused.
    2: the kinds from DP_JOURNAL_BATCH on (a broker of schema 1 refuses
    such a journal as newer, rather than failing on a kind it does not
    know); this code reads journals of schema 1 too. */
#define DP_JOURNAL_VERSION 2

/*  The kinds of record. Their numbers are written in journals: never
    renumber one, add new kinds at the end. Replay goes in this order. */
typedef enum {
    DP_JOURNAL_SESSION = 1,  /* id: session; body: its name, its key's user */
    DP_JOURNAL_RESULT = 2,   /* id: session, entry number; body: a RESULT entry not yet sent */
    DP_JOURNAL_TASK = 3,     /* id: session, seq; body: a task queued or running */
    DP_JOURNAL_RUN = 4,      /* id: session, seq; body: attempts so far, while it runs */
    DP_JOURNAL_QUEUE = 5,    /* id: queue name; body: its maxsize */
    DP_JOURNAL_QVALUE = 6,   /* id: queue name, position; body: a value queued or lent */
    DP_JOURNAL_BATCH = 7,    /* id: batch id; body: its state (dp_batches.c) */
    DP_JOURNAL_BRESULT = 8,  /* id: batch id, index; body: a result held, not collected */
    DP_JOURNAL_BTASK = 9,    /* id: batch id, index; body: a task queued or running */
    DP_JOURNAL_BRUN = 10,    /* id: batch id, index; body: attempts so far, while it runs */
    DP_JOURNAL_RESULTS = 11, /* id: session, first entry number; body: RESULT entries of a turn */
    DP_JOURNAL_TSTATE = 12,  /* id: session, group; body: which of the group's tasks ended, ran */
    DP_JOURNAL_TASKS = 13,   /* id: session, group; body: the tasks a session sent in a turn */
} dp_journal_kind_t;

/*  How a commit reaches the disk (SQLite's synchronous setting, in WAL
    mode). NORMAL: a commit is written to the WAL file, not fsynced: it
    survives the broker's death, not the machine's (power loss or a
    kernel crash may undo the last commits, never corrupt the file).
    FULL: each commit is fsynced too. OFF: no fsync at all, not even at
    checkpoints. */
typedef enum {
    DP_JOURNAL_SYNC_OFF = 0,
    DP_JOURNAL_SYNC_NORMAL = 1,
    DP_JOURNAL_SYNC_FULL = 2,
} dp_journal_sync_t;

#define DP_JOURNAL_SYNC_DEFAULT DP_JOURNAL_SYNC_NORMAL

/*  Counts for status and tests. */
typedef struct {
    uint64_t commits; /* transactions committed */
    uint64_t writes;  /* puts and deletes */
    bool failed;
} dp_journal_stats_t;

/*  Opens (or makes) the journal at path, locks it, and checks its schema
    and its integrity. Returns NULL if it cannot be used, having written
    why into error (a file that is not a journal, is corrupt, read-only,
    of a newer version, or in use by another process). */
dp_journal_t *
dp_journal_open (const char *path, dp_journal_sync_t sync, char *error, size_t size);

/*  Closes the database and nulls *self_p. Writes not committed are
    rolled back. */
void
dp_journal_destroy (dp_journal_t **self_p);

/*  Parses "off", "normal" or "full"; returns 0, or -1 if text is none. */
int
dp_journal_sync_parse (const char *text, dp_journal_sync_t *sync);

/*  Makes or replaces the record (kind, id) with a body that is the
    concatenation of head and body (either may be empty). Returns 0, or -1
    once the journal failed. */
int
dp_journal_put (dp_journal_t *self, int kind, const void *id, size_t id_size, const void *head,
                size_t head_size, const void *body, size_t body_size);

/*  Removes the record (kind, id), if there is one. Returns 0 or -1. */
int
dp_journal_del (dp_journal_t *self, int kind, const void *id, size_t id_size);

/*  Removes every record of kind whose id is between lo and hi (bytewise,
    both included). Returns 0 or -1. */
int
dp_journal_del_range (dp_journal_t *self, int kind, const void *lo, size_t lo_size, const void *hi,
                      size_t hi_size);

/*  True while writes are waiting for a commit. */
bool
dp_journal_pending (const dp_journal_t *self);

/*  Commits the open transaction, if any. Returns 0, or -1 once the journal
    failed (the transaction is then rolled back). */
int
dp_journal_commit (dp_journal_t *self);

/*  NULL while the journal works; once it failed, why. */
const char *
dp_journal_failed (const dp_journal_t *self);

/*  One record handed back by dp_journal_replay. Returns 0, or -1 to stop
    the replay. The bytes are borrowed for the call only. */
typedef int (dp_journal_replay_fn) (void *arg, int kind, const uint8_t *id, size_t id_size,
                                    const uint8_t *body, size_t body_size);

/*  Hands every record to fn, by kind then id. Writes made by fn join the
    transaction that the next commit ends. Returns the records read, or -1
    if reading failed or fn said stop (error says why). */
long
dp_journal_replay (dp_journal_t *self, dp_journal_replay_fn *fn, void *arg, char *error,
                   size_t size);

void
dp_journal_stats (const dp_journal_t *self, dp_journal_stats_t *stats);

/*  Big-endian encoding of ids, so that bytewise order is numeric order. */
void
dp_journal_be64 (uint8_t *out, uint64_t value);
uint64_t
dp_journal_get_be64 (const uint8_t *in);

#endif

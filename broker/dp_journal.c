/*  dp_journal.c - the broker's journal over SQLite (dp_journal.h).

    One table of records, (kind, id) its primary key, WITHOUT ROWID so
    that a record is one b-tree entry. The connection holds an exclusive
    lock for its whole life (locking_mode EXCLUSIVE, taken by a write at
    open), which also lets WAL mode run without its shared-memory index.
    SQLite checkpoints the WAL into the database as it grows
    (wal_autocheckpoint) and journal_size_limit truncates it afterwards,
    so with finished work deleted the files stay the size of what is held.
*/
#include "dp_journal.h"

#include "dp_util.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define APPLICATION_ID 0x64706f6c         /* "dpol": a dpool journal */
#define WAL_LIMIT      (64 * 1024 * 1024) /* bytes the WAL keeps after a checkpoint */
#define ERROR_MAX      256

struct _dp_journal_t {
    sqlite3 *db;
    sqlite3_stmt *put;
    sqlite3_stmt *del;
    sqlite3_stmt *del_range;
    bool open; /* a transaction is open */
    uint8_t *scratch;
    size_t scratch_cap;
    uint64_t commits;
    uint64_t writes;
    char failed[ERROR_MAX]; /* "" while it works */
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS records (kind INTEGER NOT NULL, id BLOB NOT NULL, "
    "body BLOB NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID";

/*  ---------------------------------------------------------------------------
    Opening.
*/

/*  Why rc failed, in words an operator can act on. */
static void
s_explain (sqlite3 *db, int rc, const char *what, char *error, size_t size)
{
    const char *why = db ? sqlite3_errmsg (db) : sqlite3_errstr (rc);
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        snprintf (error, size, "%s: the journal is in use by another broker (%s)", what, why);
        break;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
        snprintf (error, size, "%s: the journal cannot be written (%s)", what, why);
        break;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        snprintf (error, size, "%s: the journal is corrupt or not a journal (%s)", what, why);
        break;
    case SQLITE_FULL:
        snprintf (error, size, "%s: the journal's disk is full (%s)", what, why);
        break;
    default:
        snprintf (error, size, "%s: %s", what, why);
    }
}

static int
s_exec (sqlite3 *db, const char *sql, const char *what, char *error, size_t size)
{
    int rc = sqlite3_exec (db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        s_explain (db, rc, what, error, size);
    return rc == SQLITE_OK ? 0 : -1;
}

/*  The integer a one-value PRAGMA returns, or -1 with error written. */
static int64_t
s_pragma_int (sqlite3 *db, const char *sql, char *error, size_t size)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step (stmt);
    int64_t value = rc == SQLITE_ROW ? sqlite3_column_int64 (stmt, 0) : -1;
    if (rc != SQLITE_ROW)
        s_explain (db, rc, "cannot read the journal", error, size);
    sqlite3_finalize (stmt);
    return value;
}

/*  Checks the file is a journal this code can read: its application id
    (none yet in a new file), its version, and its pages. */
static int
s_check (sqlite3 *db, char *error, size_t size)
{
    int64_t app = s_pragma_int (db, "PRAGMA application_id", error, size);
    if (app < 0)
        return -1;
    if (app != 0 && app != APPLICATION_ID) {
        snprintf (error, size, "the file is a SQLite database but not a dpool journal");
        return -1;
    }
    int64_t version = s_pragma_int (db, "PRAGMA user_version", error, size);
    if (version < 0)
        return -1;
    if (version > DP_JOURNAL_VERSION) {
        snprintf (error, size,
                  "the journal was written by a newer dpool (schema %lld; this broker reads up "
                  "to %d): use that version, or move the journal away",
                  (long long)version, DP_JOURNAL_VERSION);
        return -1;
    }
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (db, "PRAGMA quick_check", -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step (stmt);
    const char *verdict = rc == SQLITE_ROW ? (const char *)sqlite3_column_text (stmt, 0) : NULL;
    if (rc != SQLITE_ROW)
        s_explain (db, rc, "cannot check the journal", error, size);
    else if (!verdict || strcmp (verdict, "ok") != 0)
        snprintf (error, size, "the journal is corrupt (%s)", verdict ? verdict : "?");
    bool ok = rc == SQLITE_ROW && verdict && strcmp (verdict, "ok") == 0;
    sqlite3_finalize (stmt);
    return ok ? 0 : -1;
}

/*  Takes the lock and sets the file up: WAL, the schema, its marks. */
static int
s_setup (dp_journal_t *self, dp_journal_sync_t sync, char *error, size_t size)
{
    sqlite3 *db = self->db;
    sqlite3_busy_timeout (db, 0);
    if (sqlite3_db_readonly (db, "main") == 1) {
        snprintf (error, size, "the journal cannot be written (read-only file or file system)");
        return -1;
    }
    if (s_exec (db, "PRAGMA locking_mode=EXCLUSIVE", "cannot lock the journal", error, size) ||
        s_check (db, error, size))
        return -1;
    char sql[320];
    snprintf (sql, sizeof sql,
              "BEGIN IMMEDIATE; PRAGMA application_id=%d; PRAGMA user_version=%d; %s; COMMIT",
              APPLICATION_ID, DP_JOURNAL_VERSION, s_schema);
    if (s_exec (db, "PRAGMA journal_mode=WAL", "cannot put the journal in WAL mode", error,
                size) ||
        s_exec (db, sql, "cannot write the journal", error, size))
        return -1;
    const char *level = sync == DP_JOURNAL_SYNC_FULL     ? "FULL"
                        : sync == DP_JOURNAL_SYNC_NORMAL ? "NORMAL"
                                                         : "OFF";
    snprintf (sql, sizeof sql, "PRAGMA synchronous=%s; PRAGMA journal_size_limit=%d", level,
              WAL_LIMIT);
    if (s_exec (db, sql, "cannot set up the journal", error, size))
        return -1;
    struct {
        sqlite3_stmt **stmt;
        const char *sql;
    } statements[] = {
        {&self->put, "INSERT OR REPLACE INTO records (kind, id, body) VALUES (?1, ?2, ?3)"},
        {&self->del, "DELETE FROM records WHERE kind = ?1 AND id = ?2"},
        {&self->del_range, "DELETE FROM records WHERE kind = ?1 AND id BETWEEN ?2 AND ?3"},
    };
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        int rc = sqlite3_prepare_v3 (db, statements[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                                     statements[i].stmt, NULL);
        if (rc != SQLITE_OK) {
            s_explain (db, rc, "cannot prepare the journal's statements", error, size);
            return -1;
        }
    }
    return 0;
}

dp_journal_t *
dp_journal_open (const char *path, dp_journal_sync_t sync, char *error, size_t size)
{
    assert (path && error);
    struct stat st;
    if (stat (path, &st) == 0 && S_ISREG (st.st_mode) && st.st_size == 0) {
        /*  A journal always holds its schema: an empty file was cut short. */
        snprintf (error, size,
                  "the journal %s is empty (truncated?): remove it to start with none", path);
        return NULL;
    }
    dp_journal_t *self = (dp_journal_t *)calloc (1, sizeof *self);
    if (!self) {
        snprintf (error, size, "out of memory");
        return NULL;
    }
    int rc = sqlite3_open_v2 (
        path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        s_explain (self->db, rc, "cannot open the journal", error, size);
    if (rc != SQLITE_OK || s_setup (self, sync, error, size) != 0) {
        dp_journal_destroy (&self);
        return NULL;
    }
    return self;
}

void
dp_journal_destroy (dp_journal_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_journal_t *self = *self_p;
        sqlite3_finalize (self->put);
        sqlite3_finalize (self->del);
        sqlite3_finalize (self->del_range);
        sqlite3_close (self->db);
        free (self->scratch);
        free (self);
        *self_p = NULL;
    }
}

int
dp_journal_sync_parse (const char *text, dp_journal_sync_t *sync)
{
    if (strcmp (text, "off") == 0)
        *sync = DP_JOURNAL_SYNC_OFF;
    else if (strcmp (text, "normal") == 0)
        *sync = DP_JOURNAL_SYNC_NORMAL;
    else if (strcmp (text, "full") == 0)
        *sync = DP_JOURNAL_SYNC_FULL;
    else
        return -1;
    return 0;
}

/*  ---------------------------------------------------------------------------
    Writing.
*/

/*  The journal failed: its transaction is rolled back (what it held is
    not in the file), and it takes no more writes. Returns -1. */
static int
s_fail (dp_journal_t *self, int rc, const char *what)
{
    if (!self->failed[0]) {
        s_explain (self->db, rc, what, self->failed, sizeof self->failed);
        dp_error ("journal failed: %s; the broker takes no more work", self->failed);
    }
    if (!sqlite3_get_autocommit (self->db))
        sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    self->open = false;
    return -1;
}

/*  Opens the turn's transaction if none is. Returns 0 or -1. */
static int
s_begin (dp_journal_t *self)
{
    if (self->failed[0])
        return -1;
    if (self->open)
        return 0;
    int rc = sqlite3_exec (self->db, "BEGIN", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return s_fail (self, rc, "cannot begin a transaction");
    self->open = true;
    return 0;
}

/*  Runs a bound statement to its end and resets it. Returns 0 or -1. */
static int
s_run (dp_journal_t *self, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    self->writes++;
    if (rc != SQLITE_DONE)
        return s_fail (self, rc, "cannot write the journal");
    return 0;
}

int
dp_journal_put (dp_journal_t *self, int kind, const void *id, size_t id_size, const void *head,
                size_t head_size, const void *body, size_t body_size)
{
    assert (self && id);
    if (s_begin (self))
        return -1;
    const void *bytes = body;
    size_t size = body_size;
    if (head_size > 0 && body_size > 0) {
        size = head_size + body_size;
        if (size > self->scratch_cap) {
            uint8_t *more = (uint8_t *)realloc (self->scratch, size);
            if (!more)
                return s_fail (self, SQLITE_NOMEM, "cannot write the journal");
            self->scratch = more;
            self->scratch_cap = size;
        }
        memcpy (self->scratch, head, head_size);
        memcpy (self->scratch + head_size, body, body_size);
        bytes = self->scratch;
    } else if (head_size > 0) {
        bytes = head;
        size = head_size;
    }
    sqlite3_bind_int (self->put, 1, kind);
    sqlite3_bind_blob (self->put, 2, id, (int)id_size, SQLITE_STATIC);
    sqlite3_bind_blob (self->put, 3, size ? bytes : "", (int)size, SQLITE_STATIC);
    return s_run (self, self->put);
}

int
dp_journal_del (dp_journal_t *self, int kind, const void *id, size_t id_size)
{
    assert (self && id);
    if (s_begin (self))
        return -1;
    sqlite3_bind_int (self->del, 1, kind);
    sqlite3_bind_blob (self->del, 2, id, (int)id_size, SQLITE_STATIC);
    return s_run (self, self->del);
}

int
dp_journal_del_range (dp_journal_t *self, int kind, const void *lo, size_t lo_size, const void *hi,
                      size_t hi_size)
{
    assert (self && lo && hi);
    if (s_begin (self))
        return -1;
    sqlite3_bind_int (self->del_range, 1, kind);
    sqlite3_bind_blob (self->del_range, 2, lo, (int)lo_size, SQLITE_STATIC);
    sqlite3_bind_blob (self->del_range, 3, hi, (int)hi_size, SQLITE_STATIC);
    return s_run (self, self->del_range);
}

bool
dp_journal_pending (const dp_journal_t *self)
{
    assert (self);
    return self->open;
}

int
dp_journal_commit (dp_journal_t *self)
{
    assert (self);
    if (self->failed[0])
        return -1;
    if (!self->open)
        return 0;
    int rc = sqlite3_exec (self->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return s_fail (self, rc, "cannot commit to the journal");
    self->open = false;
    self->commits++;
    return 0;
}

const char *
dp_journal_failed (const dp_journal_t *self)
{
    assert (self);
    return self->failed[0] ? self->failed : NULL;
}

/*  ---------------------------------------------------------------------------
    Replay.
*/

long
dp_journal_replay (dp_journal_t *self, dp_journal_replay_fn *fn, void *arg, char *error,
                   size_t size)
{
    assert (self && fn);
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (self->db, "SELECT kind, id, body FROM records ORDER BY kind, id",
                                 -1, &stmt, NULL);
    long count = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        const uint8_t *id = (const uint8_t *)sqlite3_column_blob (stmt, 1);
        size_t id_size = (size_t)sqlite3_column_bytes (stmt, 1);
        const uint8_t *body = (const uint8_t *)sqlite3_column_blob (stmt, 2);
        size_t body_size = (size_t)sqlite3_column_bytes (stmt, 2);
        if (fn (arg, sqlite3_column_int (stmt, 0), id ? id : (const uint8_t *)"", id_size,
                body ? body : (const uint8_t *)"", body_size) != 0) {
            snprintf (error, size, "the journal holds a record this broker cannot read");
            sqlite3_finalize (stmt);
            return -1;
        }
        count++;
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        s_explain (self->db, rc, "cannot read the journal", error, size);
        count = -1;
    }
    sqlite3_finalize (stmt);
    return count;
}

void
dp_journal_stats (const dp_journal_t *self, dp_journal_stats_t *stats)
{
    assert (self && stats);
    stats->commits = self->commits;
    stats->writes = self->writes;
    stats->failed = self->failed[0] != 0;
}

void
dp_journal_be64 (uint8_t *out, uint64_t value)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)value;
        value >>= 8;
    }
}

uint64_t
dp_journal_get_be64 (const uint8_t *in)
{
    uint64_t value = 0;
    for (int i = 0; i < 8; i++)
        value = value << 8 | in[i];
    return value;
}

/*  dp_batches.c - detached batches in the broker: see dp_batches.h. */
#include "dp_batches.h"

#include "dp_broker_int.h"
#include "dp_journal.h"
#include "dp_util.h"
#include "dp_wire.h"
#include "dpool.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPIRE_EVERY_MS 1000   /* how often the tick looks for expired batches */
#define LIST_MAX        100000 /* batches in one BATCH-LIST reply */
#define MESSAGE_MAX     320    /* a refusal's message */
#define RECORD_HEAD     61     /* fixed bytes of a batch's record (s_journal_batch) */
#define RESULT_KEY      (DP_BATCH_ID_SIZE + 8) /* a batch's id and an index */

/*  One result held: code 0 and the packed value, or a code and its packed
    str message. */
typedef struct {
    int32_t code;
    uint32_t size;
    uint8_t value[];
} held_t;

struct _dp_batch_t {
    char id[DP_BATCH_ID_SIZE + 1];
    char name[DP_MAX_NAME + 1];
    char fn[DP_MAX_NAME + 1];
    char owner[DP_CURVE_KEY + 1]; /* the submitter's key (Z85); "" without CURVE */
    client_t *client;             /* holds its tasks queued or running (seq: index) */
    uint32_t flags;               /* DP_BATCH_DISCARD, _SEALED, _CANCELLED */
    uint32_t ttl_s;
    uint64_t total; /* once sealed */
    uint64_t added;
    uint64_t done; /* ended, failed ones included */
    uint64_t failed;
    uint64_t collected; /* results below it were collected and freed */
    int64_t created;
    int64_t changed;  /* its TTL counts from here once nothing of it runs */
    held_t **results; /* by index; NULL: not ended, or collected */
    size_t cap;
    void *dirty; /* its handle in dp_batches_t.dirty while its record is due */
};

/*  A reply owed: sent by dp_batches_flush. A GET waits in waiters until it
    has results, the batch ends, or its deadline passes. */
typedef struct {
    dp_cmd_t cmd;
    uint8_t rid[MAX_RID];
    size_t rid_size;
    uint64_t req;
    char id[DP_BATCH_ID_SIZE + 1];
    uint64_t from;
    uint32_t max;
    int64_t deadline;
    int32_t code; /* a refusal, decided by the handler */
    char message[MESSAGE_MAX];
    char owner[DP_CURVE_KEY + 1]; /* LIST: whose batches */
    bool admin;                   /* LIST: everyone's */
} pending_t;

struct _dp_batches_t {
    dp_batches_config_t config;
    zhashx_t *table;   /* id -> dp_batch_t */
    zlistx_t *replies; /* pending_t, answered at the next flush */
    zlistx_t *waiters; /* pending_t, GETs waiting */
    zlistx_t *dirty;   /* dp_batch_t whose journal record is due (with a journal) */
    bool changed;      /* since the waiters were last looked at */
    size_t bytes;      /* of results held, every batch */
    int64_t last_expire;
};

/*  ---------------------------------------------------------------------------
    Life cycle.
*/

static void
s_pending_free (void **item)
{
    free (*item);
    *item = NULL;
}

dp_batches_t *
dp_batches_new (const dp_batches_config_t *config)
{
    dp_batches_t *self = (dp_batches_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->config = *config;
    if (!self->config.result_ttl_s)
        self->config.result_ttl_s = DP_BATCH_RESULT_TTL_S;
    if (!self->config.max_batches)
        self->config.max_batches = DP_MAX_BATCHES;
    if (!self->config.max_batch_tasks)
        self->config.max_batch_tasks = DP_MAX_BATCH_TASKS;
    if (!self->config.max_batch_bytes)
        self->config.max_batch_bytes = DP_BATCH_BYTES;
    self->table = zhashx_new ();
    self->replies = zlistx_new ();
    self->waiters = zlistx_new ();
    self->dirty = zlistx_new ();
    if (!self->table || !self->replies || !self->waiters || !self->dirty) {
        zhashx_destroy (&self->table);
        zlistx_destroy (&self->replies);
        zlistx_destroy (&self->waiters);
        zlistx_destroy (&self->dirty);
        free (self);
        return NULL;
    }
    zlistx_set_destructor (self->replies, s_pending_free);
    zlistx_set_destructor (self->waiters, s_pending_free);
    return self;
}

/*  ---------------------------------------------------------------------------
    Journal (dp_journal.h): a batch's record (its state, written once per
    turn it changed, before the turn's commit), each result it holds (by
    index, until collected), and its tasks (dp_broker_journal.c, keyed by
    the batch's id and their index).
*/

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

static int64_t
s_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_result_key (uint8_t *key, const dp_batch_t *batch, uint64_t index)
{
    memcpy (key, batch->id, DP_BATCH_ID_SIZE);
    dp_journal_be64 (key + DP_BATCH_ID_SIZE, index);
}

/*  Its record is due at the turn's commit (dp_batches_journal). */
static void
s_dirty (dp_broker_t *broker, dp_batch_t *batch)
{
    if (broker->journal && !batch->dirty)
        batch->dirty = zlistx_add_end (broker->batches->dirty, batch);
}

/*  Appends a length byte at *lens and the text at *text. */
static void
s_put_text (uint8_t **lens, uint8_t **text, const char *value)
{
    size_t len = strlen (value);
    *(*lens)++ = (uint8_t)len;
    memcpy (*text, value, len);
    *text += len;
}

static void
s_journal_batch (dp_broker_t *broker, const dp_batch_t *batch)
{
    uint8_t body[RECORD_HEAD + 2 * DP_MAX_NAME + DP_CURVE_KEY + TENANT_KEY_SIZE + DP_KEY_NAME_MAX];
    s_put_u32 (body, batch->flags);
    s_put_u32 (body + 4, batch->ttl_s);
    uint64_t counts[5] = {batch->total, batch->added, batch->done, batch->failed,
                          batch->collected};
    memcpy (body + 8, counts, sizeof counts);
    int64_t created = s_wall_ms () - (dp_now_ms () - batch->created);
    memcpy (body + 48, &created, sizeof created);
    uint8_t *lens = body + 56, *text = body + RECORD_HEAD;
    const tenant_t *tenant = batch->client->tenant;
    s_put_text (&lens, &text, batch->name);
    s_put_text (&lens, &text, batch->fn);
    s_put_text (&lens, &text, batch->owner);
    s_put_text (&lens, &text, tenant->key);
    s_put_text (&lens, &text, tenant->name);
    dp_journal_put (broker->journal, DP_JOURNAL_BATCH, batch->id, DP_BATCH_ID_SIZE, body,
                    (size_t)(text - body), NULL, 0);
}

void
dp_batches_journal (dp_broker_t *broker)
{
    dp_batches_t *self = broker->batches;
    dp_batch_t *batch;
    while ((batch = (dp_batch_t *)zlistx_detach (self->dirty, NULL))) {
        batch->dirty = NULL;
        if (broker->journal)
            s_journal_batch (broker, batch);
    }
}

/*  A batch gone: every record of it. */
static void
s_journal_gone (dp_broker_t *broker, dp_batch_t *batch)
{
    if (batch->dirty)
        zlistx_delete (broker->batches->dirty, batch->dirty);
    batch->dirty = NULL;
    if (!broker->journal)
        return;
    uint8_t lo[RESULT_KEY], hi[RESULT_KEY];
    s_result_key (lo, batch, 0);
    s_result_key (hi, batch, UINT64_MAX);
    dp_journal_del (broker->journal, DP_JOURNAL_BATCH, batch->id, DP_BATCH_ID_SIZE);
    for (int kind = DP_JOURNAL_BRESULT; kind <= DP_JOURNAL_BRUN; kind++)
        dp_journal_del_range (broker->journal, kind, lo, sizeof lo, hi, sizeof hi);
}

/*  Task index ended: its records go, its result's (if held) comes. */
static void
s_journal_ended (dp_broker_t *broker, dp_batch_t *batch, uint64_t index, const held_t *held)
{
    s_dirty (broker, batch);
    if (!broker->journal)
        return;
    uint8_t key[RESULT_KEY];
    s_result_key (key, batch, index);
    dp_journal_del (broker->journal, DP_JOURNAL_BTASK, key, sizeof key);
    dp_journal_del (broker->journal, DP_JOURNAL_BRUN, key, sizeof key);
    if (held) {
        uint8_t code[4];
        s_put_u32 (code, (uint32_t)held->code);
        dp_journal_put (broker->journal, DP_JOURNAL_BRESULT, key, sizeof key, code, sizeof code,
                        held->value, held->size);
    }
}

/*  Results from index first up to the batch's collected went. */
static void
s_journal_collected (dp_broker_t *broker, dp_batch_t *batch, uint64_t first)
{
    if (!broker->journal || first == batch->collected)
        return;
    s_dirty (broker, batch);
    uint8_t lo[RESULT_KEY], hi[RESULT_KEY];
    s_result_key (lo, batch, first);
    s_result_key (hi, batch, batch->collected - 1);
    dp_journal_del_range (broker->journal, DP_JOURNAL_BRESULT, lo, sizeof lo, hi, sizeof hi);
}

/*  The batch a record's id names, if the index it holds was added. */
static dp_batch_t *
s_replay_lookup (dp_broker_t *broker, const uint8_t *id, size_t id_size)
{
    if (id_size != RESULT_KEY)
        return NULL;
    char key[DP_BATCH_ID_SIZE + 1];
    memcpy (key, id, DP_BATCH_ID_SIZE);
    key[DP_BATCH_ID_SIZE] = 0;
    dp_batch_t *batch = (dp_batch_t *)zhashx_lookup (broker->batches->table, key);
    if (batch && dp_journal_get_be64 (id + DP_BATCH_ID_SIZE) >= batch->added)
        return NULL;
    return batch;
}

client_t *
dp_batches_replay_client (dp_broker_t *broker, const uint8_t *id, size_t id_size)
{
    dp_batch_t *batch = s_replay_lookup (broker, id, id_size);
    return batch ? batch->client : NULL;
}

/*  Reads the five texts of a batch's record into batch and the tenant's
    key and name; returns -1 if a length is out of bounds. */
static int
s_read_texts (const uint8_t *body, size_t size, dp_batch_t *batch, char *tkey, char *tname)
{
    char *out[5] = {batch->name, batch->fn, batch->owner, tkey, tname};
    size_t max[5] = {DP_MAX_NAME, DP_MAX_NAME, DP_CURVE_KEY, TENANT_KEY_SIZE - 1, DP_KEY_NAME_MAX};
    size_t at = RECORD_HEAD;
    for (int i = 0; i < 5; i++) {
        size_t len = body[56 + i];
        if (len > max[i] || at + len > size)
            return -1;
        memcpy (out[i], body + at, len);
        out[i][len] = 0;
        at += len;
    }
    return at == size ? 0 : -1;
}

/*  A batch's record: the batch back, its tasks and results to follow. */
static int
s_replay_batch (dp_broker_t *broker, const uint8_t *id, size_t id_size, const uint8_t *body,
                size_t size)
{
    dp_batch_t *batch = (dp_batch_t *)calloc (1, sizeof *batch);
    char tkey[TENANT_KEY_SIZE], tname[DP_KEY_NAME_MAX + 1];
    if (!batch || id_size != DP_BATCH_ID_SIZE || size < RECORD_HEAD ||
        s_read_texts (body, size, batch, tkey, tname) != 0) {
        free (batch);
        return -1;
    }
    memcpy (batch->id, id, DP_BATCH_ID_SIZE);
    batch->flags = s_get_u32 (body);
    batch->ttl_s = s_get_u32 (body + 4);
    uint64_t counts[5];
    memcpy (counts, body + 8, sizeof counts);
    batch->total = counts[0];
    batch->added = counts[1];
    batch->done = counts[2];
    batch->failed = counts[3];
    batch->collected = counts[4];
    int64_t created;
    memcpy (&created, body + 48, sizeof created);
    batch->changed = dp_now_ms ();
    batch->created = batch->changed - (s_wall_ms () - created);
    bool keep = !(batch->flags & DP_BATCH_DISCARD);
    batch->cap = keep ? (size_t)batch->added : 0;
    if (batch->done > batch->added || batch->collected > batch->added ||
        (keep && batch->cap &&
         !(batch->results = (held_t **)calloc (batch->cap, sizeof (held_t *))))) {
        free (batch);
        return -1;
    }
    uint8_t session[DP_SESSION_SIZE] = {0};
    memcpy (session, "batch:", 6);
    dp_span_t name = {(const uint8_t *)dp_batch_name (batch), strlen (dp_batch_name (batch))};
    batch->client = dp_broker_client_make (broker, session, name, tkey, tname);
    if (!batch->client) {
        free (batch->results);
        free (batch);
        return -1;
    }
    batch->client->batch = batch;
    zhashx_insert (broker->batches->table, batch->id, batch);
    return 0;
}

/*  A result held, back at its index. */
static int
s_replay_result (dp_broker_t *broker, const uint8_t *id, size_t id_size, const uint8_t *body,
                 size_t size)
{
    if (id_size != RESULT_KEY || size < 4)
        return -1;
    dp_batch_t *batch = s_replay_lookup (broker, id, id_size);
    if (!batch)
        return 0; /* deleted with its batch */
    uint64_t index = dp_journal_get_be64 (id + DP_BATCH_ID_SIZE);
    if (index >= batch->cap || index < batch->collected || batch->results[index])
        return -1;
    held_t *held = (held_t *)malloc (sizeof *held + size - 4);
    if (!held)
        return -1;
    held->code = (int32_t)s_get_u32 (body);
    held->size = (uint32_t)(size - 4);
    memcpy (held->value, body + 4, size - 4);
    batch->results[index] = held;
    broker->batches->bytes += held->size;
    return 0;
}

int
dp_batches_replay (dp_broker_t *broker, int kind, const uint8_t *id, size_t id_size,
                   const uint8_t *body, size_t size)
{
    if (kind == DP_JOURNAL_BATCH)
        return s_replay_batch (broker, id, id_size, body, size);
    return s_replay_result (broker, id, id_size, body, size);
}

/*  The one place a batch goes: fully collected, expired, or the broker's
    end. Its queued tasks are freed and its running ones orphaned (their
    results are dropped when they end). */
static void
s_batch_free (dp_broker_t *broker, dp_batch_t *batch, const char *why)
{
    dp_batches_t *self = broker->batches;
    dp_info ("batch %s (%s) %s: %llu of %llu tasks done, %llu results collected", batch->id,
             batch->name, why, (unsigned long long)batch->done, (unsigned long long)batch->added,
             (unsigned long long)batch->collected);
    for (size_t i = 0; i < batch->cap; i++)
        if (batch->results[i]) {
            self->bytes -= batch->results[i]->size;
            broker->freed_bytes += batch->results[i]->size;
            free (batch->results[i]);
        }
    free (batch->results);
    s_journal_gone (broker, batch);
    dp_broker_client_forget (broker, batch->client);
    zhashx_delete (self->table, batch->id);
    free (batch);
}

void
dp_batches_destroy (dp_broker_t *broker, dp_batches_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_batches_t *self = *self_p;
        dp_batch_t *batch;
        while ((batch = (dp_batch_t *)zhashx_first (self->table)))
            s_batch_free (broker, batch, "dropped");
        zhashx_destroy (&self->table);
        zlistx_destroy (&self->replies);
        zlistx_destroy (&self->waiters);
        zlistx_destroy (&self->dirty);
        free (self);
        *self_p = NULL;
    }
}

const char *
dp_batch_name (const dp_batch_t *batch)
{
    return batch->name[0] ? batch->name : batch->id;
}

void
dp_batches_counts (const dp_batches_t *self, size_t *batches, size_t *tasks, size_t *bytes,
                   size_t *waiting)
{
    *batches = zhashx_size (self->table);
    *tasks = 0;
    for (dp_batch_t *batch = (dp_batch_t *)zhashx_first (self->table); batch;
         batch = (dp_batch_t *)zhashx_next (self->table))
        *tasks += dp_idmap_size (batch->client->tasks);
    *bytes = self->bytes;
    *waiting = zlistx_size (self->waiters);
}

/*  ---------------------------------------------------------------------------
    State changes: each is the one place its change happens (dp_batches.h).
*/

/*  A new batch of the current message's key, whose tasks take the share
    of tenant. Returns NULL if out of memory. */
static dp_batch_t *
s_batch_create (dp_broker_t *broker, const dp_batch_add_t *add, tenant_t *tenant)
{
    dp_batch_t *batch = (dp_batch_t *)calloc (1, sizeof *batch);
    if (!batch)
        return NULL;
    dp_broker_span_copy (add->id, batch->id, sizeof batch->id);
    dp_broker_span_copy (add->name, batch->name, sizeof batch->name);
    dp_broker_span_copy (add->fn, batch->fn, sizeof batch->fn);
    memcpy (batch->owner, broker->from_user, sizeof batch->owner);
    batch->flags = add->flags & DP_BATCH_DISCARD;
    batch->ttl_s = add->ttl_s ? add->ttl_s : broker->batches->config.result_ttl_s;
    batch->created = batch->changed = dp_now_ms ();
    uint8_t session[DP_SESSION_SIZE] = {0};
    memcpy (session, "batch:", 6);
    dp_span_t name = {(const uint8_t *)dp_batch_name (batch), strlen (dp_batch_name (batch))};
    batch->client = dp_broker_client_make (broker, session, name, tenant->key, tenant->name);
    if (!batch->client) {
        free (batch);
        return NULL;
    }
    batch->client->batch = batch;
    zhashx_insert (broker->batches->table, batch->id, batch);
    s_dirty (broker, batch);
    dp_info ("batch %s (%s) of %s made", batch->id, batch->name, tenant->name);
    return batch;
}

/*  Enters a task, whose index is batch->added. Returns 0, or -1 if out of
    memory. */
static int
s_batch_task_added (dp_broker_t *broker, dp_batch_t *batch, const dp_task_t *task)
{
    assert (task->id == batch->added);
    if (!(batch->flags & DP_BATCH_DISCARD) && batch->added >= batch->cap) {
        size_t cap = batch->cap ? batch->cap * 2 : 64;
        held_t **more = (held_t **)realloc (batch->results, cap * sizeof *more);
        if (!more)
            return -1;
        memset (more + batch->cap, 0, (cap - batch->cap) * sizeof *more);
        batch->results = more;
        batch->cap = cap;
    }
    if (dp_broker_task_enter (broker, batch->client, 0, task, NULL) != 0)
        return -1;
    batch->added++;
    batch->changed = dp_now_ms ();
    s_dirty (broker, batch);
    return 0;
}

static void
s_batch_seal (dp_broker_t *broker, dp_batch_t *batch, uint64_t total)
{
    batch->total = total;
    batch->flags |= DP_BATCH_SEALED;
    s_dirty (broker, batch);
}

/*  Packs message (cut at DP_MAX_ERROR bytes) as a msgpack str into out,
    which holds DP_MAX_ERROR + 3 bytes; returns its size. */
static size_t
s_pack_str (uint8_t *out, const char *message)
{
    size_t len = strlen (message);
    len = len > DP_MAX_ERROR ? DP_MAX_ERROR : len;
    size_t head = 1;
    if (len < 32)
        out[0] = (uint8_t)(0xa0 | len);
    else if (len < 256) {
        out[0] = 0xd9;
        out[1] = (uint8_t)len;
        head = 2;
    } else {
        out[0] = 0xda;
        out[1] = (uint8_t)(len >> 8);
        out[2] = (uint8_t)len;
        head = 3;
    }
    memcpy (out + head, message, len);
    return head + len;
}

/*  A result the broker made up: code and its message. */
static held_t *
s_held_message (int32_t code, const char *message)
{
    held_t *held = (held_t *)malloc (sizeof *held + DP_MAX_ERROR + 3);
    if (!held)
        return NULL;
    held->code = code;
    held->size = (uint32_t)s_pack_str (held->value, message);
    return held;
}

void
dp_batches_task_failed (dp_broker_t *broker, dp_batch_t *batch, uint64_t index, int32_t code,
                        const char *message)
{
    uint8_t packed[DP_MAX_ERROR + 3];
    size_t size = s_pack_str (packed, message);
    dp_batches_task_ended (broker, batch, index, code, packed, size);
}

void
dp_batches_task_ended (dp_broker_t *broker, dp_batch_t *batch, uint64_t index, int32_t code,
                       const void *value, size_t size)
{
    dp_batches_t *self = broker->batches;
    batch->done++;
    batch->failed += code != 0;
    batch->changed = dp_now_ms ();
    self->changed = true;
    if (batch->flags & DP_BATCH_DISCARD) {
        s_journal_ended (broker, batch, index, NULL);
        return;
    }
    assert (index < batch->cap && !batch->results[index]);
    held_t *held = NULL;
    if (self->bytes + size > self->config.max_batch_bytes) {
        /*  Held in its place: a refusal that names the bound. */
        char message[MESSAGE_MAX];
        snprintf (message, sizeof message,
                  "result not kept: batches hold %zu bytes of results (--max-batch-bytes)",
                  self->bytes);
        held = s_held_message (DPOOL_EREJECTED, message);
        batch->failed += code == 0;
    } else if (!value)
        held = s_held_message (code, dpool_strerror (code));
    else if ((held = (held_t *)malloc (sizeof *held + size))) {
        held->code = code;
        held->size = (uint32_t)size;
        memcpy (held->value, value, size);
    }
    if (!held) {
        dp_error ("batch %s: out of memory for the result of task %llu", batch->id,
                  (unsigned long long)index);
        s_journal_ended (broker, batch, index, NULL);
        return; /* its reader waits for it until the batch expires */
    }
    batch->results[index] = held;
    self->bytes += held->size;
    s_journal_ended (broker, batch, index, held);
}

/*  Frees the results below upto (at most the first one not ended) and
    returns whether the batch is now fully collected. */
static bool
s_batch_collect (dp_broker_t *broker, dp_batch_t *batch, uint64_t upto)
{
    dp_batches_t *self = broker->batches;
    if (batch->flags & DP_BATCH_DISCARD)
        return false;
    uint64_t first = batch->collected;
    while (batch->collected < upto && batch->collected < batch->added &&
           batch->results[batch->collected]) {
        held_t *held = batch->results[batch->collected];
        self->bytes -= held->size;
        broker->freed_bytes += held->size;
        free (held);
        batch->results[batch->collected++] = NULL;
        batch->changed = dp_now_ms ();
    }
    s_journal_collected (broker, batch, first);
    return (batch->flags & DP_BATCH_SEALED) && batch->collected == batch->total;
}

/*  Its queued tasks end ECANCELLED (their results held like any other),
    running ones finish; no task is added from now on. */
static void
s_batch_cancel (dp_broker_t *broker, dp_batch_t *batch)
{
    zlistx_t *tasks = zlistx_new ();
    if (!tasks)
        return;
    dp_idmap_foreach (batch->client->tasks, dp_broker_collect_task, tasks);
    task_t *task;
    while ((task = (task_t *)zlistx_detach (tasks, NULL)))
        if (task->item.index != DP_TASKQ_NONE) {
            dp_broker_task_unqueue (broker, task);
            dp_broker_task_finish (broker, task, DPOOL_ECANCELLED, NULL, 0);
        }
    zlistx_destroy (&tasks);
    batch->flags |= DP_BATCH_CANCELLED;
    s_batch_seal (broker, batch, batch->added);
    batch->changed = dp_now_ms ();
    broker->batches->changed = true;
}

/*  ---------------------------------------------------------------------------
    Requests: each changes state at once and owes a reply (pending_t).
*/

static dp_batch_t *
s_lookup (dp_batches_t *self, dp_span_t id)
{
    char key[DP_BATCH_ID_SIZE + 1];
    dp_broker_span_copy (id, key, sizeof key);
    return (dp_batch_t *)zhashx_lookup (self->table, key);
}

static size_t
s_owned (dp_batches_t *self, const char *owner)
{
    size_t count = 0;
    for (dp_batch_t *batch = (dp_batch_t *)zhashx_first (self->table); batch;
         batch = (dp_batch_t *)zhashx_next (self->table))
        count += strcmp (batch->owner, owner) == 0;
    return count;
}

static void
s_refuse (pending_t *p, int32_t code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_refuse (pending_t *p, int32_t code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (p->message, sizeof p->message, format, args);
    va_end (args);
    p->code = code;
}

/*  The batch p names, if the current message's key may reach it (its
    owner's, or an administrator's); else NULL, and p refused. */
static dp_batch_t *
s_reach (dp_broker_t *broker, pending_t *p, dp_span_t id)
{
    dp_batch_t *batch = s_lookup (broker->batches, id);
    if (!batch)
        s_refuse (p, DPOOL_ENOENT, "no batch %s (collected, expired, or never made)", p->id);
    else if (strcmp (batch->owner, broker->from_user) != 0 && !dp_broker_is_admin (broker)) {
        s_refuse (p, DPOOL_EDENIED, "batch %s belongs to another key", p->id);
        broker->refused[REFUSED_SUBMIT]++;
        batch = NULL;
    }
    return batch;
}

/*  Writes why a task of size bytes of arguments may not join batch: a
    bound of batches, or of the broker's queue. */
static bool
s_over_bounds (dp_broker_t *broker, dp_batch_t *batch, size_t size, pending_t *p)
{
    dp_batches_t *self = broker->batches;
    if (batch->added >= self->config.max_batch_tasks)
        s_refuse (p, DPOOL_EREJECTED, "batch holds its most tasks (%zu: --max-batch-tasks)",
                  self->config.max_batch_tasks);
    else if (broker->queued >= broker->max_queue)
        s_refuse (p, DPOOL_EREJECTED, "broker queue full (%zu tasks: --max-queue)",
                  broker->max_queue);
    else if (broker->task_bytes + size > broker->max_queue_bytes)
        s_refuse (p, DPOOL_EREJECTED,
                  "broker queue full (%zu bytes of arguments: --max-queue-bytes)",
                  broker->max_queue_bytes);
    else if (!(batch->flags & DP_BATCH_DISCARD) && self->bytes >= self->config.max_batch_bytes)
        s_refuse (p, DPOOL_EREJECTED, "batches hold %zu bytes of results (--max-batch-bytes)",
                  self->bytes);
    else
        return false;
    return true;
}

/*  The batch BATCH-ADD names, made if new; NULL (p refused) if the key
    may not add to it. */
static dp_batch_t *
s_add_target (dp_broker_t *broker, pending_t *p, client_t *session, dp_batch_add_t *add)
{
    dp_batches_t *self = broker->batches;
    if (!dp_broker_may (broker, DP_RIGHT_SUBMIT, REFUSED_SUBMIT, p->message, sizeof p->message)) {
        p->code = DPOOL_EDENIED;
        return NULL;
    }
    dp_batch_t *batch = s_lookup (self, add->id);
    if (batch && strcmp (batch->owner, broker->from_user) != 0) {
        broker->refused[REFUSED_SUBMIT]++;
        s_refuse (p, DPOOL_EDENIED, "batch %s belongs to another key", p->id);
        return NULL;
    }
    if (!batch && s_owned (self, broker->from_user) >= self->config.max_batches) {
        s_refuse (p, DPOOL_EREJECTED, "its key holds its most batches (%zu: --max-batches)",
                  self->config.max_batches);
        return NULL;
    }
    if (!batch && !(batch = s_batch_create (broker, add, session->tenant)))
        s_refuse (p, DPOOL_ENOMEM, "broker out of memory");
    else if (batch->flags & DP_BATCH_CANCELLED) {
        s_refuse (p, DPOOL_ESTATE, "batch %s was cancelled", p->id);
        batch = NULL;
    } else if (add->total && (((batch->flags & DP_BATCH_SEALED) && add->total != batch->total) ||
                              add->total < batch->added)) {
        s_refuse (
            p, DPOOL_EINVAL, "batch %s has %llu tasks, not %llu", p->id,
            (unsigned long long)((batch->flags & DP_BATCH_SEALED) ? batch->total : batch->added),
            (unsigned long long)add->total);
        batch = NULL;
    }
    return batch;
}

/*  BATCH-ADD: tasks enter in index order; an index already added is a
    resubmission, ignored. The first refused stops the rest. */
static void
s_on_add (dp_broker_t *broker, pending_t *p, client_t *session, dp_batch_add_t *add)
{
    dp_batch_t *batch = s_add_target (broker, p, session, add);
    if (!batch)
        return;
    uint64_t limit = add->total ? add->total : batch->total;
    bool sealed = add->total || (batch->flags & DP_BATCH_SEALED);
    dp_task_t task;
    while (dp_list_next_task (&add->tasks, DP_CMD_SUBMIT, &task)) {
        if (task.id < batch->added)
            continue;
        if (task.id > batch->added || (sealed && task.id >= limit)) {
            s_refuse (p, DPOOL_EINVAL, "batch %s: task %llu out of order (next: %llu)", p->id,
                      (unsigned long long)task.id, (unsigned long long)batch->added);
            return;
        }
        if (s_over_bounds (broker, batch, task.args.size, p))
            return;
        if (s_batch_task_added (broker, batch, &task) != 0) {
            s_refuse (p, DPOOL_ENOMEM, "broker out of memory");
            return;
        }
    }
    if (add->total && !(batch->flags & DP_BATCH_SEALED))
        s_batch_seal (broker, batch, add->total);
}

static void
s_on_ack (dp_broker_t *broker, pending_t *p, const dp_batch_req_t *req)
{
    dp_batch_t *batch = s_reach (broker, p, req->id);
    if (batch && s_batch_collect (broker, batch, req->from))
        s_batch_free (broker, batch, "collected");
}

static void
s_on_cancel (dp_broker_t *broker, pending_t *p, const dp_batch_req_t *req)
{
    dp_batch_t *batch = s_reach (broker, p, req->id);
    if (batch && !(batch->flags & DP_BATCH_CANCELLED))
        s_batch_cancel (broker, batch);
}

void
dp_batches_request (dp_broker_t *broker, const uint8_t *rid, size_t rid_size,
                    struct _client_t *session, dp_msg_t *msg)
{
    dp_batches_t *self = broker->batches;
    pending_t *p = (pending_t *)calloc (1, sizeof *p);
    if (!p)
        return; /* out of memory: unanswered, the client asks again */
    assert (rid_size < MAX_RID);
    p->cmd = msg->cmd;
    memcpy (p->rid, rid, rid_size);
    p->rid_size = rid_size;
    bool add = msg->cmd == DP_CMD_BATCH_ADD;
    p->req = add ? msg->u.batch_add.req : msg->u.batch.req;
    dp_broker_span_copy (add ? msg->u.batch_add.id : msg->u.batch.id, p->id, sizeof p->id);
    zlistx_t *list = self->replies;
    if (msg->cmd != DP_CMD_BATCH_GET && msg->cmd != DP_CMD_BATCH_LIST &&
        dp_broker_journal_refused (broker, p->message, sizeof p->message)) {
        p->code = DPOOL_EREJECTED; /* nothing it changed would be kept */
        if (!zlistx_add_end (list, p))
            free (p);
        return;
    }
    switch (msg->cmd) {
    case DP_CMD_BATCH_ADD:
        s_on_add (broker, p, session, &msg->u.batch_add);
        break;
    case DP_CMD_BATCH_GET:
        if (s_reach (broker, p, msg->u.batch.id)) {
            if (zlistx_size (self->waiters) >= DP_MAX_BATCH_WAITERS)
                s_refuse (p, DPOOL_EREJECTED, "%d requests for results wait already",
                          DP_MAX_BATCH_WAITERS);
            else {
                list = self->waiters;
                self->changed = true;
            }
        }
        p->from = msg->u.batch.from;
        p->max = msg->u.batch.max;
        p->deadline = dp_now_ms () + msg->u.batch.wait_ms;
        break;
    case DP_CMD_BATCH_ACK:
        s_on_ack (broker, p, &msg->u.batch);
        break;
    case DP_CMD_BATCH_CANCEL:
        s_on_cancel (broker, p, &msg->u.batch);
        break;
    default: /* LIST */
        memcpy (p->owner, broker->from_user, sizeof p->owner);
        p->admin = dp_broker_is_admin (broker);
        break;
    }
    if (!zlistx_add_end (list, p))
        free (p);
}

/*  ---------------------------------------------------------------------------
    Replies, at the end of the turn.
*/

static void
s_add_info (dp_writer_t *w, const dp_batch_t *batch, int64_t now)
{
    dp_batch_info_t info = {.id = {(const uint8_t *)batch->id, strlen (batch->id)},
                            .name = {(const uint8_t *)batch->name, strlen (batch->name)},
                            .fn = {(const uint8_t *)batch->fn, strlen (batch->fn)},
                            .total = batch->total,
                            .added = batch->added,
                            .done = batch->done,
                            .failed = batch->failed,
                            .collected = batch->collected,
                            .age_ms = (uint64_t)(now - batch->created),
                            .flags = batch->flags,
                            .ttl_s = batch->ttl_s};
    dp_list_add_batch (w, &info);
}

/*  BATCH-REPLY to p: its refusal, or the batch's info and, for a GET,
    count results from index from. */
static void
s_send (dp_broker_t *broker, pending_t *p, const dp_batch_t *batch, uint64_t from, size_t count,
        int64_t now)
{
    dp_writer_t *w = &broker->w;
    dp_encode_batch_reply (w, p->req, p->code, p->code ? p->message : NULL);
    dp_list_open (w);
    if (batch && !p->code)
        s_add_info (w, batch, now);
    dp_list_end (w);
    dp_list_open (w);
    for (size_t i = 0; i < count; i++) {
        const held_t *held = batch->results[from + i];
        dp_list_add_result (w, from + i, held->code, held->value, held->size);
    }
    dp_list_end (w);
    dp_wire_send_writer (broker->handle, p->rid, p->rid_size, DP_CMD_BATCH_REPLY, w, ZMQ_DONTWAIT);
}

static void
s_send_list (dp_broker_t *broker, pending_t *p, int64_t now)
{
    dp_writer_t *w = &broker->w;
    dp_encode_batch_reply (w, p->req, 0, NULL);
    dp_list_open (w);
    zhashx_t *table = broker->batches->table;
    for (dp_batch_t *batch = (dp_batch_t *)zhashx_first (table);
         batch && dp_list_count (w) < LIST_MAX; batch = (dp_batch_t *)zhashx_next (table))
        if (p->admin || strcmp (batch->owner, p->owner) == 0)
            s_add_info (w, batch, now);
    dp_list_end (w);
    dp_list_open (w);
    dp_list_end (w);
    dp_wire_send_writer (broker->handle, p->rid, p->rid_size, DP_CMD_BATCH_REPLY, w, ZMQ_DONTWAIT);
}

/*  Answers a waiting GET if it has results, if no more will come, or if
    its wait is over. Returns true if answered. */
static bool
s_answer_get (dp_broker_t *broker, pending_t *p, int64_t now)
{
    dp_batch_t *batch = (dp_batch_t *)zhashx_lookup (broker->batches->table, p->id);
    if (!batch) {
        s_refuse (p, DPOOL_ENOENT, "no batch %s (collected, expired, or never made)", p->id);
        s_send (broker, p, NULL, 0, 0, now);
        return true;
    }
    uint64_t from = p->from > batch->collected ? p->from : batch->collected;
    size_t count = 0, bytes = 0;
    if (!(batch->flags & DP_BATCH_DISCARD))
        while (from + count < batch->added && count < p->max && bytes < DP_BATCH_REPLY_BYTES &&
               batch->results[from + count])
            bytes += batch->results[from + count++]->size + RESULT_OVERHEAD;
    bool ended = (batch->flags & DP_BATCH_SEALED) && batch->done == batch->total;
    if (count == 0 && !ended && !(batch->flags & DP_BATCH_DISCARD) && now < p->deadline)
        return false;
    s_send (broker, p, batch, from, count, now);
    return true;
}

void
dp_batches_flush (dp_broker_t *broker, int64_t now)
{
    dp_batches_t *self = broker->batches;
    pending_t *p;
    while ((p = (pending_t *)zlistx_first (self->replies))) {
        if (p->cmd == DP_CMD_BATCH_LIST)
            s_send_list (broker, p, now);
        else if (p->cmd == DP_CMD_BATCH_GET)
            s_send (broker, p, NULL, 0, 0, now); /* refused */
        else
            s_send (broker, p, (dp_batch_t *)zhashx_lookup (self->table, p->id), 0, 0, now);
        zlistx_delete (self->replies, NULL);
    }
    if (!self->changed)
        return;
    self->changed = false;
    void *handle = zlistx_first (self->waiters) ? zlistx_cursor (self->waiters) : NULL;
    while (handle) {
        void *next = zlistx_next (self->waiters) ? zlistx_cursor (self->waiters) : NULL;
        if (s_answer_get (broker, (pending_t *)zlistx_handle_item (handle), now))
            zlistx_delete (self->waiters, handle);
        handle = next;
    }
}

void
dp_batches_withhold (dp_broker_t *broker)
{
    zlistx_t *replies = broker->batches->replies;
    void *handle = zlistx_first (replies) ? zlistx_cursor (replies) : NULL;
    while (handle) {
        void *next = zlistx_next (replies) ? zlistx_cursor (replies) : NULL;
        pending_t *p = (pending_t *)zlistx_handle_item (handle);
        if (!p->code && p->cmd != DP_CMD_BATCH_GET && p->cmd != DP_CMD_BATCH_LIST)
            zlistx_delete (replies, handle);
        handle = next;
    }
}

const char *
dp_batch_id (const dp_batch_t *batch)
{
    return batch->id;
}

void
dp_batches_tick (dp_broker_t *broker, int64_t now)
{
    dp_batches_t *self = broker->batches;
    if (zlistx_size (self->waiters))
        self->changed = true; /* waits that ran out end at the next flush */
    if (now - self->last_expire < EXPIRE_EVERY_MS)
        return;
    self->last_expire = now;
    zlistx_t *gone = NULL;
    for (dp_batch_t *batch = (dp_batch_t *)zhashx_first (self->table); batch;
         batch = (dp_batch_t *)zhashx_next (self->table))
        if (dp_idmap_size (batch->client->tasks) == 0 &&
            now - batch->changed >= (int64_t)batch->ttl_s * 1000) {
            if (!gone)
                gone = zlistx_new ();
            if (gone)
                zlistx_add_end (gone, batch);
        }
    dp_batch_t *batch;
    while (gone && (batch = (dp_batch_t *)zlistx_detach (gone, NULL)))
        s_batch_free (broker, batch, "expired");
    zlistx_destroy (&gone);
}

/*  dp_queues.c - the broker's named queues.

    A queue is a singly linked FIFO of values plus two FIFOs of waiters
    (gets waiting for a value, puts waiting for room). Every waiter and
    every loan also hangs on its owner's lists, so that forgetting an owner
    costs what it holds, and on a deadline heap (dp_taskq ordered by
    deadline), so that the tick costs what is due. After any change to a
    queue, s_settle serves its waiters until nothing more can move.
*/
#include "dp_queues.h"

#include "dp_idmap.h"
#include "dp_journal.h"
#include "dp_taskq.h"
#include "dp_util.h"
#include "dpool.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGE_SIZE (DP_MAX_NAME + 128)

typedef struct _value_t value_t;
typedef struct _queue_t queue_t;
typedef struct _owner_t owner_t;
typedef struct _waiter_t waiter_t;
typedef struct _loan_t loan_t;

struct _value_t {
    value_t *next;
    uint64_t pos; /* its record's place in the journal */
    uint32_t size;
    uint8_t data[];
};

/*  A get (value NULL) or a put (holding its value) waiting on a queue. */
struct _waiter_t {
    dp_taskq_item_t timer; /* first: in self->timers while it has a deadline */
    queue_t *queue;
    owner_t *owner;
    uint64_t req;
    int32_t timeout_ms;
    bool put;
    value_t *value;          /* a put's, until it enters the queue */
    waiter_t *prev, *next;   /* in its queue's getters or putters, oldest first */
    waiter_t *oprev, *onext; /* in its owner's waiters */
};

/*  A value handed to a getter, until it acknowledges it. */
struct _loan_t {
    dp_taskq_item_t timer; /* first: in self->acks, ordered by ack deadline */
    uint64_t token;
    queue_t *queue;
    owner_t *owner;
    value_t *value;
    loan_t *oprev, *onext; /* in its owner's loans */
};

/*  A requester: what it waits for and what it was lent. */
struct _owner_t {
    void *key;
    waiter_t *waiters;
    loan_t *loans;
    size_t nwaiters;
    size_t nloans;
};

typedef struct {
    waiter_t *head;
    waiter_t *tail;
    size_t count;
} waitlist_t;

struct _queue_t {
    char name[DP_MAX_NAME + 1];
    uint32_t maxsize; /* 0: no bound of its own (yet) */
    value_t *head;
    value_t *tail;
    uint32_t size;
    waitlist_t getters;
    waitlist_t putters;
    size_t nloans;
    bool idle;          /* unused: empty, unwaited, unlent */
    int64_t idle_since; /* since when */
    uint64_t puts;
    uint64_t gets;
    uint64_t next_pos; /* the journal position of the next value put */
};

struct _dp_queues_t {
    zhashx_t *queues;   /* name -> queue_t */
    dp_idmap_t *owners; /* owner pointer -> owner_t */
    dp_idmap_t *loans;  /* token -> loan_t */
    dp_taskq_t timers;  /* waiters with a deadline */
    dp_taskq_t acks;    /* loans, by ack deadline */
    dp_queues_reply_fn *reply;
    void *arg;
    size_t max_bytes;
    int ack_ms;
    uint64_t next_token;
    size_t values;
    size_t bytes;
    size_t nwaiters;
    uint64_t puts;
    uint64_t gets;
    uint64_t returned;
    dp_journal_t *journal; /* NULL: none */
};

#define QKEY_SIZE (1 + DP_MAX_NAME + 8)

/*  ---------------------------------------------------------------------------
    Helpers.
*/
static uint64_t
s_owner_id (void *key)
{
    return (uint64_t)(uintptr_t)key;
}

static owner_t *
s_owner (dp_queues_t *self, void *key, bool make)
{
    owner_t *owner = (owner_t *)dp_idmap_get (self->owners, s_owner_id (key));
    if (owner || !make)
        return owner;
    owner = (owner_t *)calloc (1, sizeof *owner);
    if (!owner)
        return NULL;
    owner->key = key;
    if (dp_idmap_put (self->owners, s_owner_id (key), owner)) {
        free (owner);
        return NULL;
    }
    return owner;
}

/*  Frees an owner that holds nothing. */
static void
s_owner_release (dp_queues_t *self, owner_t *owner)
{
    if (owner && !owner->waiters && !owner->loans) {
        dp_idmap_remove (self->owners, s_owner_id (owner->key));
        free (owner);
    }
}

static uint32_t
s_cap (const queue_t *queue)
{
    return queue->maxsize ? queue->maxsize : DP_MAX_QUEUE_SIZE;
}

/*  A queue's record id (kind QUEUE: its name), or its value's at pos
    (QVALUE: the name and pos, big-endian). Returns its size. */
static size_t
s_qkey (const queue_t *queue, bool value, uint64_t pos, uint8_t *key)
{
    size_t len = strlen (queue->name);
    key[0] = (uint8_t)len;
    memcpy (key + 1, queue->name, len);
    if (!value)
        return 1 + len;
    dp_journal_be64 (key + 1 + len, pos);
    return 1 + len + 8;
}

/*  A value entered its queue: journaled, at the back. */
static void
s_journal_value (dp_queues_t *self, queue_t *queue, value_t *value)
{
    value->pos = queue->next_pos++;
    if (!self->journal)
        return;
    uint8_t key[QKEY_SIZE];
    dp_journal_put (self->journal, DP_JOURNAL_QVALUE, key, s_qkey (queue, true, value->pos, key),
                    value->data, value->size, NULL, 0);
}

/*  A value left for good (acknowledged as taken). */
static void
s_journal_taken (dp_queues_t *self, queue_t *queue, value_t *value)
{
    if (!self->journal)
        return;
    uint8_t key[QKEY_SIZE];
    dp_journal_del (self->journal, DP_JOURNAL_QVALUE, key, s_qkey (queue, true, value->pos, key));
}

/*  A queue's bound was set (bound true), or the queue is freed. */
static void
s_journal_queue (dp_queues_t *self, queue_t *queue, bool bound)
{
    if (!self->journal || !queue->maxsize)
        return;
    uint8_t key[QKEY_SIZE];
    size_t size = s_qkey (queue, false, 0, key);
    if (bound)
        dp_journal_put (self->journal, DP_JOURNAL_QUEUE, key, size, &queue->maxsize,
                        sizeof queue->maxsize, NULL, 0);
    else
        dp_journal_del (self->journal, DP_JOURNAL_QUEUE, key, size);
}

static value_t *
s_value_new (dp_queues_t *self, const void *data, size_t size)
{
    value_t *value = (value_t *)malloc (sizeof *value + size);
    if (!value)
        return NULL;
    value->next = NULL;
    value->size = (uint32_t)size;
    memcpy (value->data, data, size);
    self->values++;
    self->bytes += size;
    return value;
}

static void
s_value_free (dp_queues_t *self, value_t *value)
{
    if (value) {
        self->values--;
        self->bytes -= value->size;
        free (value);
    }
}

static void
s_push_back (queue_t *queue, value_t *value)
{
    value->next = NULL;
    if (queue->tail)
        queue->tail->next = value;
    else
        queue->head = value;
    queue->tail = value;
    queue->size++;
}

static void
s_push_front (queue_t *queue, value_t *value)
{
    value->next = queue->head;
    queue->head = value;
    if (!queue->tail)
        queue->tail = value;
    queue->size++;
}

static value_t *
s_pop_front (queue_t *queue)
{
    value_t *value = queue->head;
    if (value) {
        queue->head = value->next;
        if (!queue->head)
            queue->tail = NULL;
        queue->size--;
        value->next = NULL;
    }
    return value;
}

static bool
s_queue_unused (const queue_t *queue)
{
    return queue->size == 0 && queue->getters.count == 0 && queue->putters.count == 0 &&
           queue->nloans == 0;
}

/*  Notes when a queue became unused, for the idle sweep. */
static void
s_queue_touch (queue_t *queue, int64_t now)
{
    if (!s_queue_unused (queue))
        queue->idle = false;
    else if (!queue->idle) {
        queue->idle = true;
        queue->idle_since = now;
    }
}

static void
s_queue_free (void **item)
{
    free (*item);
    *item = NULL;
}

/*  Answers owner; returns what the callback returned. */
static int
s_answer (dp_queues_t *self, owner_t *owner, void *key, uint64_t req, int32_t code,
          const queue_t *queue, const char *message)
{
    dp_queues_reply_t reply = {.req = req,
                               .code = code,
                               .size = queue ? queue->size : 0,
                               .maxsize = queue ? queue->maxsize : 0,
                               .message = message};
    return self->reply (self->arg, owner ? owner->key : key, &reply);
}

/*  ---------------------------------------------------------------------------
    Waiters and loans.
*/
static void
s_waitlist_append (waitlist_t *list, waiter_t *waiter)
{
    waiter->next = NULL;
    waiter->prev = list->tail;
    if (list->tail)
        list->tail->next = waiter;
    else
        list->head = waiter;
    list->tail = waiter;
    list->count++;
}

static void
s_waitlist_remove (waitlist_t *list, waiter_t *waiter)
{
    if (waiter->prev)
        waiter->prev->next = waiter->next;
    else
        list->head = waiter->next;
    if (waiter->next)
        waiter->next->prev = waiter->prev;
    else
        list->tail = waiter->prev;
    waiter->prev = waiter->next = NULL;
    list->count--;
}

static waitlist_t *
s_waitlist_of (waiter_t *waiter)
{
    return waiter->put ? &waiter->queue->putters : &waiter->queue->getters;
}

/*  Takes a waiter out of every list and frees it (not its value). */
static void
s_waiter_free (dp_queues_t *self, waiter_t *waiter)
{
    s_waitlist_remove (s_waitlist_of (waiter), waiter);
    if (waiter->timer.index != DP_TASKQ_NONE)
        dp_taskq_remove (&self->timers, &waiter->timer);
    owner_t *owner = waiter->owner;
    if (waiter->oprev)
        waiter->oprev->onext = waiter->onext;
    else
        owner->waiters = waiter->onext;
    if (waiter->onext)
        waiter->onext->oprev = waiter->oprev;
    owner->nwaiters--;
    self->nwaiters--;
    free (waiter);
}

/*  Makes a waiter; returns NULL if out of memory. */
static waiter_t *
s_waiter_new (dp_queues_t *self, queue_t *queue, owner_t *owner, uint64_t req, int32_t timeout_ms,
              value_t *value, int64_t now)
{
    waiter_t *waiter = (waiter_t *)calloc (1, sizeof *waiter);
    if (!waiter)
        return NULL;
    waiter->timer.index = DP_TASKQ_NONE;
    waiter->queue = queue;
    waiter->owner = owner;
    waiter->req = req;
    waiter->timeout_ms = timeout_ms;
    waiter->put = value != NULL;
    waiter->value = value;
    if (timeout_ms > 0) {
        waiter->timer.order = (uint64_t)(now + timeout_ms);
        if (dp_taskq_push (&self->timers, &waiter->timer)) {
            free (waiter);
            return NULL;
        }
    }
    s_waitlist_append (s_waitlist_of (waiter), waiter);
    waiter->onext = owner->waiters;
    if (owner->waiters)
        owner->waiters->oprev = waiter;
    owner->waiters = waiter;
    owner->nwaiters++;
    self->nwaiters++;
    return waiter;
}

static void
s_loan_unlink (dp_queues_t *self, loan_t *loan)
{
    dp_idmap_remove (self->loans, loan->token);
    if (loan->timer.index != DP_TASKQ_NONE)
        dp_taskq_remove (&self->acks, &loan->timer);
    owner_t *owner = loan->owner;
    if (loan->oprev)
        loan->oprev->onext = loan->onext;
    else
        owner->loans = loan->onext;
    if (loan->onext)
        loan->onext->oprev = loan->oprev;
    owner->nloans--;
    loan->queue->nloans--;
}

/*  Lends the value to owner in answer to its GET req: the value is the
    loan's until acknowledged. Returns false if the answer could not be
    sent or the loan not recorded: the value is then back at the front of
    its queue. */
static bool
s_lend (dp_queues_t *self, queue_t *queue, owner_t *owner, uint64_t req, value_t *value,
        int64_t now)
{
    loan_t *loan = (loan_t *)calloc (1, sizeof *loan);
    if (loan) {
        loan->timer.index = DP_TASKQ_NONE;
        loan->timer.order = (uint64_t)(now + self->ack_ms);
        loan->token = ++self->next_token;
        loan->queue = queue;
        loan->owner = owner;
        loan->value = value;
        if (dp_idmap_put (self->loans, loan->token, loan) ||
            dp_taskq_push (&self->acks, &loan->timer)) {
            dp_idmap_remove (self->loans, loan->token);
            free (loan);
            loan = NULL;
        }
    }
    if (!loan) {
        s_push_front (queue, value);
        s_answer (self, owner, NULL, req, DPOOL_ENOMEM, queue, "broker out of memory");
        return false;
    }
    loan->onext = owner->loans;
    if (owner->loans)
        owner->loans->oprev = loan;
    owner->loans = loan;
    owner->nloans++;
    queue->nloans++;
    dp_queues_reply_t reply = {.req = req,
                               .size = queue->size,
                               .maxsize = queue->maxsize,
                               .value = value->data,
                               .value_size = value->size,
                               .token = loan->token};
    if (self->reply (self->arg, owner->key, &reply) == 0)
        return true;
    s_loan_unlink (self, loan);
    free (loan);
    s_push_front (queue, value);
    return false;
}

/*  Serves a queue's waiters for as long as anything can move: values to
    waiting gets, then waiting puts into the room that made. */
static void
s_settle (dp_queues_t *self, queue_t *queue, int64_t now)
{
    for (;;) {
        if (queue->head && queue->getters.head) {
            waiter_t *getter = queue->getters.head;
            owner_t *owner = getter->owner;
            uint64_t req = getter->req;
            s_waiter_free (self, getter);
            s_lend (self, queue, owner, req, s_pop_front (queue), now);
            s_owner_release (self, owner);
            continue;
        }
        if (queue->putters.head && queue->size < s_cap (queue)) {
            waiter_t *putter = queue->putters.head;
            owner_t *owner = putter->owner;
            s_push_back (queue, putter->value);
            s_journal_value (self, queue, putter->value);
            queue->puts++;
            self->puts++;
            uint64_t req = putter->req;
            s_waiter_free (self, putter);
            s_answer (self, owner, NULL, req, 0, queue, NULL);
            s_owner_release (self, owner);
            continue;
        }
        break;
    }
    s_queue_touch (queue, now);
}

/*  Takes a loan back: its value returns to the front of its queue. */
static void
s_return (dp_queues_t *self, loan_t *loan, int64_t now)
{
    queue_t *queue = loan->queue;
    owner_t *owner = loan->owner;
    s_loan_unlink (self, loan);
    s_push_front (queue, loan->value);
    self->returned++;
    free (loan);
    s_owner_release (self, owner);
    s_settle (self, queue, now);
}

/*  ---------------------------------------------------------------------------
    Requests.
*/

/*  The queue named name, made if make is true and there is room. */
static queue_t *
s_queue (dp_queues_t *self, dp_span_t name, bool make, int64_t now, bool *full)
{
    char key[DP_MAX_NAME + 1];
    size_t len = name.size > DP_MAX_NAME ? DP_MAX_NAME : name.size;
    memcpy (key, name.data, len);
    key[len] = 0;
    queue_t *queue = (queue_t *)zhashx_lookup (self->queues, key);
    *full = false;
    if (queue || !make)
        return queue;
    if (zhashx_size (self->queues) >= DP_MAX_QUEUES) {
        *full = true;
        return NULL;
    }
    queue = (queue_t *)calloc (1, sizeof *queue);
    if (!queue)
        return NULL;
    memcpy (queue->name, key, len + 1);
    queue->idle = true;
    queue->idle_since = now;
    if (zhashx_insert (self->queues, queue->name, queue)) {
        free (queue);
        return NULL;
    }
    return queue;
}

/*  An OPEN or PUT names maxsize (0: "as it is"): the first non-zero one
    bounds the queue. Returns false if it has another bound (the caller
    answers EINVAL). */
static bool
s_fix_bound (dp_queues_t *self, queue_t *queue, uint32_t maxsize)
{
    if (maxsize && !queue->maxsize) {
        queue->maxsize = maxsize;
        s_journal_queue (self, queue, true);
    }
    return maxsize == 0 || maxsize == queue->maxsize;
}

static void
s_bound_conflict (dp_queues_t *self, owner_t *owner, void *key, uint64_t req, queue_t *queue,
                  uint32_t maxsize)
{
    char message[MESSAGE_SIZE];
    if (queue->maxsize)
        snprintf (message, sizeof message, "queue '%s' exists with maxsize %u, not %u",
                  queue->name, queue->maxsize, maxsize);
    else
        snprintf (message, sizeof message, "queue '%s' exists without a maxsize, not %u",
                  queue->name, maxsize);
    s_answer (self, owner, key, req, DPOOL_EINVAL, queue, message);
}

/*  True if owner may add one more waiter (wait), or take one more value
    (get): a waiting get counts toward the values lent to its owner, since
    it will be lent one. Else answers EREJECTED. */
static bool
s_may_wait (dp_queues_t *self, owner_t *owner, void *key, const dp_queue_req_t *req,
            queue_t *queue, bool wait, bool get)
{
    const char *why = NULL;
    size_t nwaiters = owner ? owner->nwaiters : 0;
    size_t nloans = owner ? owner->nloans : 0;
    if (wait && self->nwaiters >= DP_MAX_QUEUE_WAITERS)
        why = "too many requests waiting at the broker";
    else if (wait && nwaiters >= DP_MAX_PEER_WAITERS)
        why = "too many requests of this peer waiting";
    else if (get && nloans + nwaiters >= DP_MAX_PEER_LOANS)
        why = "too many values lent to this peer and not acknowledged";
    if (!why)
        return true;
    s_answer (self, owner, key, req->req, DPOOL_EREJECTED, queue, why);
    return false;
}

static void
s_on_put (dp_queues_t *self, void *key, const dp_queue_req_t *req, int64_t now)
{
    bool full;
    queue_t *queue = s_queue (self, req->name, true, now, &full);
    if (!queue) {
        s_answer (self, NULL, key, req->req, full ? DPOOL_EREJECTED : DPOOL_ENOMEM, NULL,
                  full ? "too many queues at the broker" : "broker out of memory");
        return;
    }
    if (!s_fix_bound (self, queue, req->maxsize)) {
        s_bound_conflict (self, NULL, key, req->req, queue, req->maxsize);
        return;
    }
    bool room = queue->size < s_cap (queue) && queue->putters.count == 0;
    if (!room && req->timeout_ms == 0) {
        s_answer (self, NULL, key, req->req, DPOOL_EAGAIN, queue, "queue is full");
        s_queue_touch (queue, now);
        return;
    }
    if (self->bytes + req->value.size > self->max_bytes) {
        char message[MESSAGE_SIZE];
        snprintf (message, sizeof message,
                  "broker holds its limit of %zu bytes of queued values "
                  "(--max-named-bytes)",
                  self->max_bytes);
        s_answer (self, NULL, key, req->req, DPOOL_EREJECTED, queue, message);
        s_queue_touch (queue, now);
        return;
    }
    owner_t *owner = room ? NULL : s_owner (self, key, false);
    if (!room && !s_may_wait (self, owner, key, req, queue, true, false)) {
        s_queue_touch (queue, now);
        return;
    }
    value_t *value = s_value_new (self, req->value.data, req->value.size);
    if (value && !room) {
        owner = s_owner (self, key, true);
        if (!owner || !s_waiter_new (self, queue, owner, req->req, req->timeout_ms, value, now)) {
            s_value_free (self, value);
            s_owner_release (self, owner);
            value = NULL;
        }
    }
    if (!value) {
        s_answer (self, NULL, key, req->req, DPOOL_ENOMEM, queue, "broker out of memory");
        s_queue_touch (queue, now);
        return;
    }
    if (room) {
        s_push_back (queue, value);
        s_journal_value (self, queue, value);
        queue->puts++;
        self->puts++;
        s_answer (self, NULL, key, req->req, 0, queue, NULL);
    }
    s_settle (self, queue, now);
}

static void
s_on_get (dp_queues_t *self, void *key, const dp_queue_req_t *req, int64_t now)
{
    bool full;
    bool wait = req->timeout_ms != 0;
    queue_t *queue = s_queue (self, req->name, wait, now, &full);
    if (!queue && wait) {
        s_answer (self, NULL, key, req->req, full ? DPOOL_EREJECTED : DPOOL_ENOMEM, NULL,
                  full ? "too many queues at the broker" : "broker out of memory");
        return;
    }
    if (!queue || (!queue->head && !wait)) {
        s_answer (self, NULL, key, req->req, DPOOL_EAGAIN, queue, "queue is empty");
        return;
    }
    owner_t *owner = s_owner (self, key, false);
    bool now_ready = queue->head && !queue->getters.head;
    if (!s_may_wait (self, owner, key, req, queue, !now_ready, true)) {
        s_queue_touch (queue, now);
        return;
    }
    owner = s_owner (self, key, true);
    if (!owner) {
        s_answer (self, NULL, key, req->req, DPOOL_ENOMEM, queue, "broker out of memory");
        s_queue_touch (queue, now);
        return;
    }
    if (now_ready) {
        s_lend (self, queue, owner, req->req, s_pop_front (queue), now);
        s_owner_release (self, owner);
    } else if (!s_waiter_new (self, queue, owner, req->req, req->timeout_ms, NULL, now)) {
        s_answer (self, owner, NULL, req->req, DPOOL_ENOMEM, queue, "broker out of memory");
        s_owner_release (self, owner);
    }
    /*  Taking a value may make room for a waiting put. */
    s_settle (self, queue, now);
}

void
dp_queues_request (dp_queues_t *self, void *key, dp_cmd_t cmd, const dp_queue_req_t *req,
                   int64_t now)
{
    assert (self && key && req);
    bool full;
    queue_t *queue;
    switch (cmd) {
    case DP_CMD_QUEUE_OPEN:
        queue = s_queue (self, req->name, true, now, &full);
        if (!queue)
            s_answer (self, NULL, key, req->req, full ? DPOOL_EREJECTED : DPOOL_ENOMEM, NULL,
                      full ? "too many queues at the broker" : "broker out of memory");
        else if (!s_fix_bound (self, queue, req->maxsize))
            s_bound_conflict (self, NULL, key, req->req, queue, req->maxsize);
        else {
            s_answer (self, NULL, key, req->req, 0, queue, NULL);
            /*  A bound set now may let no put in; a new queue may be idle. */
            s_settle (self, queue, now);
        }
        break;
    case DP_CMD_QUEUE_PUT:
        s_on_put (self, key, req, now);
        break;
    case DP_CMD_QUEUE_GET:
        s_on_get (self, key, req, now);
        break;
    case DP_CMD_QUEUE_SIZE:
        queue = s_queue (self, req->name, false, now, &full);
        s_answer (self, NULL, key, req->req, 0, queue, NULL);
        break;
    default:
        assert (false);
    }
}

int
dp_queues_ack (dp_queues_t *self, void *key, uint64_t token, bool accept, int64_t now)
{
    assert (self);
    loan_t *loan = (loan_t *)dp_idmap_get (self->loans, token);
    if (!loan || loan->owner->key != key)
        return -1;
    if (!accept) {
        s_return (self, loan, now);
        return 0;
    }
    queue_t *queue = loan->queue;
    owner_t *owner = loan->owner;
    s_loan_unlink (self, loan);
    queue->gets++;
    self->gets++;
    s_journal_taken (self, queue, loan->value);
    s_value_free (self, loan->value);
    free (loan);
    s_owner_release (self, owner);
    s_queue_touch (queue, now);
    return 0;
}

void
dp_queues_forget (dp_queues_t *self, void *key, int64_t now)
{
    assert (self);
    owner_t *owner = s_owner (self, key, false);
    if (!owner)
        return;
    while (owner->waiters) {
        waiter_t *waiter = owner->waiters;
        queue_t *queue = waiter->queue;
        value_t *value = waiter->value;
        s_waiter_free (self, waiter);
        s_value_free (self, value);
        s_queue_touch (queue, now);
    }
    /*  Loans go back newest first (the owner's list is newest first), so
        the oldest ends at the very front. */
    zlistx_t *touched = zlistx_new ();
    while (owner->loans) {
        loan_t *loan = owner->loans;
        queue_t *queue = loan->queue;
        s_loan_unlink (self, loan);
        s_push_front (queue, loan->value);
        self->returned++;
        free (loan);
        if (touched && !zlistx_find (touched, queue))
            zlistx_add_end (touched, queue);
    }
    dp_idmap_remove (self->owners, s_owner_id (key));
    free (owner);
    for (queue_t *queue = touched ? (queue_t *)zlistx_first (touched) : NULL; queue;
         queue = (queue_t *)zlistx_next (touched))
        s_settle (self, queue, now);
    zlistx_destroy (&touched);
}

void
dp_queues_tick (dp_queues_t *self, int64_t now)
{
    assert (self);
    dp_taskq_item_t *item;
    while ((item = dp_taskq_peek (&self->timers)) && (int64_t)item->order <= now) {
        waiter_t *waiter = (waiter_t *)item;
        queue_t *queue = waiter->queue;
        owner_t *owner = waiter->owner;
        uint64_t req = waiter->req;
        bool put = waiter->put;
        char message[MESSAGE_SIZE];
        snprintf (message, sizeof message, "%s '%s' for %d ms", put ? "queue full" : "no value in",
                  queue->name, waiter->timeout_ms);
        s_value_free (self, waiter->value);
        s_waiter_free (self, waiter);
        s_answer (self, owner, NULL, req, DPOOL_ETIMEOUT, queue, message);
        s_owner_release (self, owner);
        s_queue_touch (queue, now);
    }
    while ((item = dp_taskq_peek (&self->acks)) && (int64_t)item->order <= now) {
        loan_t *loan = (loan_t *)item;
        dp_warn ("queue '%s': value %llu not acknowledged in %d ms; back to the front",
                 loan->queue->name, (unsigned long long)loan->token, self->ack_ms);
        s_return (self, loan, now);
    }
    zlistx_t *idle = NULL;
    for (queue_t *queue = (queue_t *)zhashx_first (self->queues); queue;
         queue = (queue_t *)zhashx_next (self->queues))
        if (queue->idle && s_queue_unused (queue) && now - queue->idle_since >= DP_QUEUE_IDLE_MS) {
            if (!idle)
                idle = zlistx_new ();
            if (idle)
                zlistx_add_end (idle, queue->name);
        }
    const char *name;
    while (idle && (name = (const char *)zlistx_detach (idle, NULL))) {
        s_journal_queue (self, (queue_t *)zhashx_lookup (self->queues, name), false);
        zhashx_delete (self->queues, name);
    }
    zlistx_destroy (&idle);
}

int64_t
dp_queues_next_deadline (const dp_queues_t *self)
{
    assert (self);
    dp_taskq_item_t *timer = dp_taskq_peek (&self->timers);
    dp_taskq_item_t *ack = dp_taskq_peek (&self->acks);
    if (timer && ack)
        return (int64_t)(timer->order < ack->order ? timer->order : ack->order);
    if (timer || ack)
        return (int64_t)(timer ? timer->order : ack->order);
    return -1;
}

/*  Adds ms to every loan's deadline; the heap's order is unchanged. */
static void
s_forgive_loan (uint64_t id, void *value, void *arg)
{
    (void)id;
    ((loan_t *)value)->timer.order += *(const uint64_t *)arg;
}

void
dp_queues_forgive (dp_queues_t *self, int64_t ms)
{
    assert (self);
    if (ms <= 0)
        return;
    uint64_t delta = (uint64_t)ms;
    dp_idmap_foreach (self->loans, s_forgive_loan, &delta);
}

void
dp_queues_stats (const dp_queues_t *self, dp_queues_stats_t *stats)
{
    assert (self && stats);
    stats->queues = zhashx_size (self->queues);
    stats->values = self->values;
    stats->bytes = self->bytes;
    stats->waiters = self->nwaiters;
    stats->loans = dp_idmap_size (self->loans);
    stats->puts = self->puts;
    stats->gets = self->gets;
    stats->returned = self->returned;
    stats->max_bytes = self->max_bytes;
}

void
dp_queues_pack (const dp_queues_t *self, msgpack_packer *pk, size_t max)
{
    assert (self && pk);
    size_t count = zhashx_size (self->queues);
    if (count > max)
        count = max;
    msgpack_pack_array (pk, count);
    size_t packed = 0;
    for (queue_t *queue = (queue_t *)zhashx_first (self->queues); queue && packed < count;
         queue = (queue_t *)zhashx_next (self->queues), packed++) {
        msgpack_pack_map (pk, 8);
        dp_mp_pack_cstr (pk, "name");
        dp_mp_pack_cstr (pk, queue->name);
        dp_mp_pack_cstr (pk, "size");
        msgpack_pack_uint32 (pk, queue->size);
        dp_mp_pack_cstr (pk, "maxsize");
        msgpack_pack_uint32 (pk, queue->maxsize);
        dp_mp_pack_cstr (pk, "getters");
        msgpack_pack_uint64 (pk, queue->getters.count);
        dp_mp_pack_cstr (pk, "putters");
        msgpack_pack_uint64 (pk, queue->putters.count);
        dp_mp_pack_cstr (pk, "unacked");
        msgpack_pack_uint64 (pk, queue->nloans);
        dp_mp_pack_cstr (pk, "puts");
        msgpack_pack_uint64 (pk, queue->puts);
        dp_mp_pack_cstr (pk, "gets");
        msgpack_pack_uint64 (pk, queue->gets);
    }
}

/*  ---------------------------------------------------------------------------
    Life cycle.
*/
dp_queues_t *
dp_queues_new (size_t max_bytes, int ack_ms, dp_queues_reply_fn *reply, void *arg)
{
    assert (reply);
    dp_queues_t *self = (dp_queues_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->queues = zhashx_new ();
    self->owners = dp_idmap_new ();
    self->loans = dp_idmap_new_sequential ();
    if (!self->queues || !self->owners || !self->loans) {
        dp_queues_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->queues, s_queue_free);
    dp_taskq_init (&self->timers);
    dp_taskq_init (&self->acks);
    self->reply = reply;
    self->arg = arg;
    self->max_bytes = max_bytes ? max_bytes : (size_t)DP_QUEUE_BYTES;
    self->ack_ms = ack_ms > 0 ? ack_ms : DP_QUEUE_ACK_MS;
    return self;
}

static void
s_free_owner (uint64_t id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    owner_t *owner = (owner_t *)value;
    while (owner->waiters) {
        waiter_t *waiter = owner->waiters;
        owner->waiters = waiter->onext;
        free (waiter->value);
        free (waiter);
    }
    while (owner->loans) {
        loan_t *loan = owner->loans;
        owner->loans = loan->onext;
        free (loan->value);
        free (loan);
    }
    free (owner);
}

void
dp_queues_destroy (dp_queues_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_queues_t *self = *self_p;
        /*  The heaps first: finishing one touches its items. */
        dp_taskq_fini (&self->timers);
        dp_taskq_fini (&self->acks);
        if (self->owners) {
            dp_idmap_foreach (self->owners, s_free_owner, NULL);
            dp_idmap_destroy (&self->owners);
        }
        for (queue_t *queue = self->queues ? (queue_t *)zhashx_first (self->queues) : NULL; queue;
             queue = (queue_t *)zhashx_next (self->queues)) {
            value_t *value;
            while ((value = s_pop_front (queue)))
                free (value);
        }
        zhashx_destroy (&self->queues);
        dp_idmap_destroy (&self->loans);
        free (self);
        *self_p = NULL;
    }
}

void
dp_queues_set_journal (dp_queues_t *self, dp_journal_t *journal)
{
    assert (self);
    self->journal = journal;
}

/*  The queue a record's id names (made if there is none), and where the
    name ends; NULL if the id is malformed or out of memory. */
static queue_t *
s_replay_queue (dp_queues_t *self, const uint8_t *id, size_t id_size, size_t *end)
{
    if (id_size < 1 || 1 + (size_t)id[0] > id_size)
        return NULL;
    *end = 1 + (size_t)id[0];
    bool full;
    return s_queue (self, (dp_span_t){id + 1, id[0]}, true, dp_now_ms (), &full);
}

int
dp_queues_replay (dp_queues_t *self, int kind, const uint8_t *id, size_t id_size,
                  const uint8_t *body, size_t size)
{
    assert (self);
    size_t end;
    queue_t *queue = s_replay_queue (self, id, id_size, &end);
    if (!queue)
        return -1;
    if (kind == DP_JOURNAL_QUEUE) {
        if (end != id_size || size != sizeof queue->maxsize)
            return -1;
        memcpy (&queue->maxsize, body, sizeof queue->maxsize);
        return 0;
    }
    if (end + 8 != id_size)
        return -1;
    value_t *value = s_value_new (self, body, size);
    if (!value)
        return -1;
    value->pos = dp_journal_get_be64 (id + end);
    if (value->pos >= queue->next_pos)
        queue->next_pos = value->pos + 1;
    s_push_back (queue, value);
    s_queue_touch (queue, dp_now_ms ());
    return 0;
}

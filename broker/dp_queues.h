/*  dp_queues.h - the broker's named queues (Python's Manager().Queue held
    by the broker): FIFOs of msgpack values, the gets and puts waiting on
    them, and the values handed out that await an acknowledgement.

    The store owns every value until a getter acknowledges it. A GET that
    finds a value takes it off the front of its queue and lends it to the
    requester, under a token: the value comes back to the FRONT of its queue
    if the requester says it did not take it (QUEUE-ACK false), if it is
    forgotten (dead, gone, registered again) or if no acknowledgement comes
    within the ack deadline. So a consumer killed while its value was on the
    way loses nothing, and values are neither lost nor duplicated while the
    broker lives (a duplicate needs an acknowledgement later than the ack
    deadline, DP_QUEUE_ACK_MS by default).

    The store never blocks. A get on an empty queue, or a put on a full
    one, is kept as a waiter (with its deadline, if it has one) and
    answered when the queue changes or the deadline passes; waiters are
    served oldest first. Requesters are opaque pointers (the broker's
    peers); answers go out through the reply callback, which must only send
    and never call back into the store. Every queue, value, waiter and loan
    is bounded (DP_MAX_QUEUES, DP_MAX_QUEUE_VALUE, DP_MAX_QUEUE_SIZE,
    DP_MAX_QUEUE_WAITERS, DP_MAX_PEER_WAITERS, DP_MAX_PEER_LOANS, and the
    byte budget given to dp_queues_new); a request beyond a bound is
    answered EREJECTED.

    A queue's bound (maxsize) is the first non-zero one an OPEN or PUT
    names; until then it has none but DP_MAX_QUEUE_SIZE. An OPEN or PUT that
    names another non-zero bound is answered EINVAL; 0 takes the queue as
    it is. Any request but a SIZE or a GET that does not wait makes the
    queue it names. A queue that has been empty, unwaited and unlent for
    DP_QUEUE_IDLE_MS is freed. Not thread-safe: one broker loop owns it.
*/
#ifndef DP_QUEUES_H_INCLUDED
#define DP_QUEUES_H_INCLUDED

#include "dp_journal.h"
#include "dp_proto.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _dp_queues_t dp_queues_t;

/*  One answer to a request. A successful GET carries the value and a
    non-zero token; a failure carries a code (dpool_error_t) and a
    message. size and maxsize describe the queue after the request. */
typedef struct {
    uint64_t req;
    int32_t code;
    uint32_t size;
    uint32_t maxsize;
    const void *value; /* code 0, GET: the packed value; else NULL */
    size_t value_size;
    uint64_t token;
    const char *message; /* code not 0 */
} dp_queues_reply_t;

/*  Sends reply to owner. Returns 0 if it went out, -1 if it could not (the
    owner is gone or slow); a value that could not be sent goes back to the
    front of its queue. Must not call into the store. */
typedef int (dp_queues_reply_fn) (void *arg, void *owner, const dp_queues_reply_t *reply);

/*  Counts for status and tests. */
typedef struct {
    size_t queues;     /* named queues held */
    size_t values;     /* values queued, waiting puts' and lent ones included */
    size_t bytes;      /* their bytes */
    size_t waiters;    /* gets and puts waiting */
    size_t loans;      /* values lent, not yet acknowledged */
    uint64_t puts;     /* values that entered a queue */
    uint64_t gets;     /* values acknowledged as taken */
    uint64_t returned; /* values that went back to the front */
    size_t max_bytes;  /* the bound on bytes */
} dp_queues_stats_t;

/*  A new empty store holding at most max_bytes of values (0:
    DP_QUEUE_BYTES), with acknowledgements due within ack_ms (0:
    DP_QUEUE_ACK_MS), answering through reply. Returns NULL if out of
    memory. */
dp_queues_t *
dp_queues_new (size_t max_bytes, int ack_ms, dp_queues_reply_fn *reply, void *arg);

/*  Frees every queue, value, waiter and loan, answering nobody. */
void
dp_queues_destroy (dp_queues_t **self_p);

/*  Handles a validated QUEUE-OPEN, -PUT, -GET or -SIZE (cmd) from owner,
    at time now (ms, dp_now_ms). Answers at once, or later if it waits. */
void
dp_queues_request (dp_queues_t *self, void *owner, dp_cmd_t cmd, const dp_queue_req_t *req,
                   int64_t now);

/*  owner acknowledges the value lent under token: taken (accept), or to go
    back to the front of its queue. Returns 0, or -1 if owner holds no loan
    of that token (late, forged or repeated: the caller counts it). */
int
dp_queues_ack (dp_queues_t *self, void *owner, uint64_t token, bool accept, int64_t now);

/*  owner is gone (or registered again): its waiting gets and puts are
    dropped unanswered (a waiting put's value never entered its queue), and
    every value lent to it goes back to the front of its queue. */
void
dp_queues_forget (dp_queues_t *self, void *owner, int64_t now);

/*  Answers the waiters whose deadline passed (ETIMEOUT), takes back the
    loans whose acknowledgement is overdue, and frees idle queues. */
void
dp_queues_tick (dp_queues_t *self, int64_t now);

/*  The earliest waiter or ack deadline (ms), or -1 if none. */
int64_t
dp_queues_next_deadline (const dp_queues_t *self);

/*  The broker's loop stalled for ms: acknowledgements may be waiting
    unread, so ack deadlines move on by ms. */
void
dp_queues_forgive (dp_queues_t *self, int64_t ms);

/*  Journals every change from now on: a value that enters a queue, one
    acknowledged as taken, a queue's bound. A PUT's reply must not go out
    before the journal's commit (the caller holds it). journal NULL: none. */
void
dp_queues_set_journal (dp_queues_t *self, dp_journal_t *journal);

/*  Takes back one record of kind DP_JOURNAL_QUEUE or DP_JOURNAL_QVALUE
    read from the journal at start (values come in their queue's order).
    Returns 0, or -1 if the record is malformed or out of memory. */
int
dp_queues_replay (dp_queues_t *self, int kind, const uint8_t *id, size_t id_size,
                  const uint8_t *body, size_t size);

void
dp_queues_stats (const dp_queues_t *self, dp_queues_stats_t *stats);

/*  Packs an array of at most max maps, one per queue: name, size, maxsize,
    getters, putters, unacked (values lent out), puts, gets. */
void
dp_queues_pack (const dp_queues_t *self, msgpack_packer *pk, size_t max);

#endif

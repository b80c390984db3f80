/*  dp_batches.h - detached batches in the broker (PROTOCOL.md 5.8).

    A batch is a list of tasks a client submits and need not wait for: its
    tasks run through the fair-share queues of the submitter's tenant (its
    CURVE key, or without CURVE its session), but belong to no session, so
    the submitter may leave and no session expiry touches them. The broker
    holds each task's result, by the task's index in the batch, until a
    reader collects it (BATCH-GET, then BATCH-ACK up to an index), or until
    the batch's TTL runs out with nothing of it queued or running. A
    fire-and-forget batch (DP_BATCH_DISCARD) keeps no result, only counts.

    Each batch owns a client_t of its own (client_t.batch points back),
    which is never in the session table: its tasks are entered, queued,
    dispatched, retried and ended by the same code as a session's, and
    dp_broker_task_finish hands their results here (dp_batches_task_ended).

    State changes. Every change of a batch's state happens in exactly one
    of these functions of dp_batches.c, so that a journal can record each
    with one call: s_batch_create (a batch made), s_batch_task_added (a
    task entered), dp_batches_task_ended (a task done or failed, with its
    result), s_batch_collect (results below an index collected and freed),
    s_batch_cancel (queued tasks cancelled, no more added), s_batch_seal
    (its total known) and s_batch_free (a batch gone: fully collected, or
    expired). With a journal each marks the batch's record due, written
    once per turn just before the commit (dp_batches_journal); a result's
    record is written as it ends and deleted as it is collected, and the
    batch's tasks are journaled by the broker's task hooks.

    Replies. Handlers change state at once, but every BATCH-REPLY goes out
    from dp_batches_flush, at the end of the loop's turn (after dispatch
    and the sessions' RESULTs), never from inside a handler: a journal
    commits the turn's changes before anything is acknowledged.

    Bounds: batches per owner (--max-batches), tasks per batch
    (--max-batch-tasks), bytes of results held by every batch
    (--max-batch-bytes), and BATCH-GETs waiting (DP_MAX_BATCH_WAITERS);
    past each, the request is answered EREJECTED naming it.

    Everything here runs on the broker's thread (dp_broker_int.h).
*/
#ifndef DP_BATCHES_H_INCLUDED
#define DP_BATCHES_H_INCLUDED

#include "dp_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _dp_broker_t dp_broker_t;
typedef struct _dp_batches_t dp_batches_t;
typedef struct _dp_batch_t dp_batch_t;
struct _client_t;

/*  The broker's bounds on batches; 0 takes the default. */
typedef struct {
    uint32_t result_ttl_s;  /* DP_BATCH_RESULT_TTL_S */
    size_t max_batches;     /* per owner: DP_MAX_BATCHES */
    size_t max_batch_tasks; /* DP_MAX_BATCH_TASKS */
    size_t max_batch_bytes; /* DP_BATCH_BYTES */
} dp_batches_config_t;

#pragma GCC visibility push(hidden)

/*  Makes the broker's table of batches. Returns NULL if out of memory. */
dp_batches_t *
dp_batches_new (const dp_batches_config_t *config);

/*  Frees every batch (their tasks: queued ones freed, running ones
    orphaned) and the table; nulls *self_p. Harmless on NULL. */
void
dp_batches_destroy (dp_broker_t *broker, dp_batches_t **self_p);

/*  A batch request (BATCH-ADD, -GET, -ACK, -LIST, -CANCEL) from a client
    session's peer, with the current message's key (broker->from). Its
    reply is queued for dp_batches_flush. */
void
dp_batches_request (dp_broker_t *broker, const uint8_t *rid, size_t rid_size,
                    struct _client_t *session, dp_msg_t *msg);

/*  A task of batch ended: code 0 and its packed value, or an error code
    and its packed str message (value NULL: the code's text). The task is
    already out of its queue or job table; the caller frees it. */
void
dp_batches_task_ended (dp_broker_t *broker, dp_batch_t *batch, uint64_t index, int32_t code,
                       const void *value, size_t size);

/*  dp_batches_task_ended for a failure the broker decided, with its
    message (a NUL-terminated string). */
void
dp_batches_task_failed (dp_broker_t *broker, dp_batch_t *batch, uint64_t index, int32_t code,
                        const char *message);

/*  At the end of the loop's turn: sends the replies due (acknowledgements,
    and the GETs that have results or whose wait ended). */
void
dp_batches_flush (dp_broker_t *broker, int64_t now);

/*  A step of the tick: frees the batches whose TTL ran out, and ends the
    GETs whose wait did. */
void
dp_batches_tick (dp_broker_t *broker, int64_t now);

/*  For status: batches held, their tasks queued or running, result bytes
    held, GETs waiting. */
void
dp_batches_counts (const dp_batches_t *self, size_t *batches, size_t *tasks, size_t *bytes,
                   size_t *waiting);

/*  Writes the journal record of each batch changed since the last call:
    called just before the turn's commit. */
void
dp_batches_journal (dp_broker_t *broker);

/*  The turn's commit failed: the replies that would acknowledge one of
    its changes (an ADD, ACK or CANCEL not refused) are dropped; their
    requesters time out, and later requests are refused. */
void
dp_batches_withhold (dp_broker_t *broker);

/*  Replay of the journal's batch records (DP_JOURNAL_BATCH and _BRESULT):
    returns 0, or -1 if the record is malformed or memory ran out. */
int
dp_batches_replay (dp_broker_t *broker, int kind, const uint8_t *id, size_t id_size,
                   const uint8_t *body, size_t size);

/*  The client_t of the batch a task record's key names (its id, then a
    big-endian index), or NULL if there is no such batch or it never had
    that index (the record is then ignored). */
struct _client_t *
dp_batches_replay_client (dp_broker_t *broker, const uint8_t *id, size_t id_size);

/*  A batch's id, DP_BATCH_ID_SIZE characters. */
const char *
dp_batch_id (const dp_batch_t *batch);

/*  The name a batch's tasks show in status (its session's name). */
const char *
dp_batch_name (const dp_batch_t *batch);

#pragma GCC visibility pop

#endif

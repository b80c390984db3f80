/*  test_queues.c - the broker's queue store (broker/dp_queues) on its own,
    with a fake clock and a reply callback that records every answer: FIFO
    order, waiting gets and puts served oldest first, bounds, timeouts,
    values lent until acknowledged and returned to the FRONT when refused,
    overdue or their owner is forgotten, and every limit.
*/
#include "dp_queues.h"
#include "dp_testutil.h"
#include "dp_util.h"
#include "dpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLIES 4096

typedef struct {
    void *owner;
    uint64_t req;
    int32_t code;
    uint32_t size;
    uint32_t maxsize;
    int64_t value; /* the value got, a positive fixint here; -1 if none */
    uint64_t token;
} reply_t;

static reply_t s_replies[MAX_REPLIES];
static size_t s_nreplies;
static size_t s_taken;      /* replies looked at */
static void *s_unreachable; /* replies to this owner fail */

static int
s_reply (void *arg, void *owner, const dp_queues_reply_t *reply)
{
    (void)arg;
    if (owner == s_unreachable)
        return -1;
    if (s_taken == s_nreplies)
        s_taken = s_nreplies = 0; /* every reply was looked at: start over */
    CHECK (s_nreplies < MAX_REPLIES);
    reply_t *r = &s_replies[s_nreplies++];
    r->owner = owner;
    r->req = reply->req;
    r->code = reply->code;
    r->size = reply->size;
    r->maxsize = reply->maxsize;
    r->value = -1;
    r->token = reply->token;
    if (reply->code == 0 && reply->value) {
        CHECK (reply->value_size == 1 && ((const uint8_t *)reply->value)[0] < 0x80);
        CHECK (reply->token != 0);
        r->value = ((const uint8_t *)reply->value)[0];
    } else
        CHECK (reply->token == 0);
    if (reply->code != 0)
        CHECK (reply->message && *reply->message);
    return 0;
}

/*  Takes the oldest reply not yet taken; fails if there is none. */
static reply_t
s_next (void)
{
    if (s_taken >= s_nreplies)
        dp_test_fail (__FILE__, __LINE__, "expected a reply, got none");
    return s_replies[s_taken++];
}

static void
s_expect_none (void)
{
    if (s_taken != s_nreplies)
        dp_test_fail (__FILE__, __LINE__, "unexpected reply to req %llu (code %d)",
                      (unsigned long long)s_replies[s_taken].req, s_replies[s_taken].code);
}

static int owner_a, owner_b, owner_c; /* their addresses are the owners */
#define A (&owner_a)
#define B (&owner_b)
#define C (&owner_c)

static uint64_t s_req;

static uint64_t
s_request (dp_queues_t *q, void *owner, dp_cmd_t cmd, const char *name, int value,
           int32_t timeout_ms, uint32_t maxsize, int64_t now)
{
    uint8_t byte = (uint8_t)value;
    dp_queue_req_t req = {.req = ++s_req,
                          .name = {(const uint8_t *)name, strlen (name)},
                          .maxsize = maxsize,
                          .timeout_ms = timeout_ms,
                          .value = {&byte, 1}};
    dp_queues_request (q, owner, cmd, &req, now);
    return s_req;
}

static uint64_t
s_put (dp_queues_t *q, void *owner, const char *name, int value, int32_t timeout_ms, int64_t now)
{
    return s_request (q, owner, DP_CMD_QUEUE_PUT, name, value, timeout_ms, 0, now);
}

static uint64_t
s_get (dp_queues_t *q, void *owner, const char *name, int32_t timeout_ms, int64_t now)
{
    return s_request (q, owner, DP_CMD_QUEUE_GET, name, 0, timeout_ms, 0, now);
}

/*  The next reply answers req with code. */
static reply_t
s_expect (uint64_t req, int32_t code)
{
    reply_t r = s_next ();
    if (r.req != req || r.code != code)
        dp_test_fail (__FILE__, __LINE__, "reply to req %llu code %d, expected req %llu code %d",
                      (unsigned long long)r.req, r.code, (unsigned long long)req, code);
    return r;
}

/*  Gets a value at once and acknowledges it; returns it. */
static int64_t
s_take (dp_queues_t *q, void *owner, const char *name, int64_t now)
{
    uint64_t req = s_get (q, owner, name, 0, now);
    reply_t r = s_expect (req, 0);
    CHECK (dp_queues_ack (q, owner, r.token, true, now) == 0);
    return r.value;
}

static dp_queues_stats_t
s_stats (dp_queues_t *q)
{
    dp_queues_stats_t stats;
    dp_queues_stats (q, &stats);
    return stats;
}

static void
s_fifo_and_nowait (void)
{
    dp_queues_t *q = dp_queues_new (0, 0, s_reply, NULL);
    CHECK (q);
    /*  Nothing to get, and no queue made by trying. */
    s_expect (s_get (q, A, "letters", 0, 0), DPOOL_EAGAIN);
    s_expect (s_request (q, A, DP_CMD_QUEUE_SIZE, "letters", 0, 0, 0, 0), 0);
    CHECK_EQ_INT (s_stats (q).queues, 0);
    const char *word = "itcast";
    for (int i = 0; word[i]; i++) {
        reply_t r = s_expect (s_put (q, A, "letters", word[i], -1, 0), 0);
        CHECK_EQ_INT (r.size, i + 1);
    }
    reply_t size = s_expect (s_request (q, B, DP_CMD_QUEUE_SIZE, "letters", 0, 0, 0, 0), 0);
    CHECK_EQ_INT (size.size, 6);
    for (int i = 0; word[i]; i++)
        CHECK_EQ_INT (s_take (q, B, "letters", 0), word[i]);
    s_expect (s_get (q, B, "letters", 0, 0), DPOOL_EAGAIN);
    dp_queues_stats_t stats = s_stats (q);
    CHECK_EQ_INT (stats.puts, 6);
    CHECK_EQ_INT (stats.gets, 6);
    CHECK_EQ_INT (stats.values, 0);
    CHECK_EQ_INT (stats.bytes, 0);
    CHECK_EQ_INT (stats.loans, 0);
    s_expect_none ();
    dp_queues_destroy (&q);
    dp_queues_destroy (&q); /* twice is harmless */
}

static void
s_waiting_gets (void)
{
    dp_queues_t *q = dp_queues_new (0, 0, s_reply, NULL);
    /*  Two gets wait, oldest served first; a third times out. */
    uint64_t first = s_get (q, A, "q", -1, 0);
    uint64_t second = s_get (q, B, "q", 5000, 0);
    uint64_t third = s_get (q, C, "q", 100, 0);
    s_expect_none ();
    CHECK_EQ_INT (s_stats (q).waiters, 3);
    CHECK_EQ_INT (dp_queues_next_deadline (q), 100);
    dp_queues_tick (q, 99);
    s_expect_none ();
    dp_queues_tick (q, 100);
    s_expect (third, DPOOL_ETIMEOUT);
    /*  A value goes straight to the oldest waiting get, once its put is
        answered. */
    s_expect (s_put (q, C, "q", 1, 0, 200), 0);
    reply_t got = s_expect (first, 0);
    CHECK (got.owner == A && got.value == 1);
    s_expect (s_put (q, C, "q", 2, 0, 300), 0);
    reply_t got2 = s_expect (second, 0);
    CHECK (got2.owner == B && got2.value == 2);
    CHECK_EQ_INT (s_stats (q).waiters, 0);
    CHECK_EQ_INT (s_stats (q).loans, 2);
    /*  A refused value goes back to the FRONT: it comes out before a newer one. */
    s_put (q, C, "q", 3, 0, 400);
    s_next ();
    CHECK (dp_queues_ack (q, A, got.token, false, 400) == 0);
    CHECK_EQ_INT (s_take (q, C, "q", 400), 1);
    CHECK_EQ_INT (s_take (q, C, "q", 400), 3);
    /*  Only the owner may acknowledge, and only once. */
    CHECK (dp_queues_ack (q, A, got2.token, true, 400) == -1);
    CHECK (dp_queues_ack (q, B, got2.token, true, 400) == 0);
    CHECK (dp_queues_ack (q, B, got2.token, true, 400) == -1);
    CHECK (dp_queues_ack (q, B, 987654, true, 400) == -1);
    CHECK_EQ_INT (s_stats (q).values, 0);
    s_expect_none ();
    dp_queues_destroy (&q);
}

static void
s_forget_and_ack_deadline (void)
{
    dp_queues_t *q = dp_queues_new (0, 1000, s_reply, NULL);
    for (int i = 1; i <= 5; i++)
        s_put (q, A, "q", i, 0, 0);
    for (int i = 1; i <= 5; i++)
        s_next ();
    /*  B takes 1, 2 and 3 without acknowledging, then dies; its waiting get
        is dropped and its values go back to the front in their order. */
    reply_t lent[3];
    for (int i = 0; i < 3; i++)
        lent[i] = s_expect (s_get (q, B, "q", 0, 0), 0);
    CHECK (lent[0].value == 1 && lent[2].value == 3);
    s_get (q, B, "other", -1, 0);
    CHECK_EQ_INT (s_stats (q).waiters, 1);
    dp_queues_forget (q, B, 10);
    s_expect_none ();
    CHECK_EQ_INT (s_stats (q).waiters, 0);
    CHECK_EQ_INT (s_stats (q).returned, 3);
    /*  A late acknowledgement of a returned value is refused. */
    CHECK (dp_queues_ack (q, B, lent[0].token, true, 20) == -1);
    for (int i = 1; i <= 5; i++)
        CHECK_EQ_INT (s_take (q, A, "q", 20), i);

    /*  An acknowledgement that never comes: back to the front at the
        deadline (moved on by a forgiven stall), and a waiting get gets it. */
    s_put (q, A, "q", 7, 0, 100);
    s_next ();
    reply_t r = s_expect (s_get (q, C, "q", 0, 100), 0);
    CHECK_EQ_INT (dp_queues_next_deadline (q), 1100);
    dp_queues_forgive (q, 500);
    CHECK_EQ_INT (dp_queues_next_deadline (q), 1600);
    uint64_t waiting = s_get (q, A, "q", -1, 200);
    dp_queues_tick (q, 1599);
    s_expect_none ();
    dp_queues_tick (q, 1600);
    reply_t again = s_expect (waiting, 0);
    CHECK (again.value == 7 && again.token != r.token);
    CHECK (dp_queues_ack (q, C, r.token, true, 1700) == -1);
    CHECK (dp_queues_ack (q, A, again.token, true, 1700) == 0);

    /*  A value whose answer cannot be sent stays at the front. */
    s_put (q, A, "q", 8, 0, 1800);
    s_next ();
    s_unreachable = C;
    s_get (q, C, "q", 0, 1800);
    s_unreachable = NULL;
    CHECK_EQ_INT (s_take (q, A, "q", 1800), 8);
    CHECK_EQ_INT (s_stats (q).values, 0);
    s_expect_none ();
    dp_queues_destroy (&q);
}

static void
s_bounded (void)
{
    dp_queues_t *q = dp_queues_new (0, 0, s_reply, NULL);
    reply_t open = s_expect (s_request (q, A, DP_CMD_QUEUE_OPEN, "b", 0, 0, 2, 0), 0);
    CHECK_EQ_INT (open.maxsize, 2);
    /*  Another bound is refused; none said means "as it is". */
    s_expect (s_request (q, B, DP_CMD_QUEUE_OPEN, "b", 0, 0, 3, 0), DPOOL_EINVAL);
    s_expect (s_request (q, B, DP_CMD_QUEUE_OPEN, "b", 0, 0, 0, 0), 0);
    s_expect (s_request (q, B, DP_CMD_QUEUE_PUT, "b", 1, 0, 5, 0), DPOOL_EINVAL);
    s_expect (s_put (q, A, "b", 1, 0, 0), 0);
    s_expect (s_put (q, A, "b", 2, 0, 0), 0);
    /*  Full: a put that does not wait fails; one that waits times out or
        gets in once a get makes room, in the order they came. */
    s_expect (s_put (q, A, "b", 3, 0, 0), DPOOL_EAGAIN);
    uint64_t timed = s_put (q, A, "b", 3, 50, 0);
    uint64_t patient = s_put (q, B, "b", 4, -1, 0);
    s_expect_none ();
    dp_queues_tick (q, 50);
    s_expect (timed, DPOOL_ETIMEOUT);
    CHECK_EQ_INT (s_stats (q).values, 3); /* 1, 2 and the waiting 4 */
    uint64_t get = s_get (q, C, "b", 0, 60);
    reply_t got = s_expect (get, 0);
    CHECK_EQ_INT (got.value, 1);
    reply_t in = s_expect (patient, 0);
    CHECK_EQ_INT (in.size, 2);
    CHECK (dp_queues_ack (q, C, got.token, true, 60) == 0);
    CHECK_EQ_INT (s_take (q, C, "b", 60), 2);
    CHECK_EQ_INT (s_take (q, C, "b", 60), 4);

    /*  A queue made by a waiting get takes the bound of the first OPEN. */
    uint64_t early = s_get (q, C, "late", -1, 70);
    reply_t late = s_expect (s_request (q, A, DP_CMD_QUEUE_OPEN, "late", 0, 0, 1, 70), 0);
    CHECK_EQ_INT (late.maxsize, 1);
    s_expect (s_request (q, A, DP_CMD_QUEUE_PUT, "late", 9, 0, 1, 70), 0);
    s_expect (early, 0);
    s_expect_none ();
    dp_queues_destroy (&q); /* frees what is lent and queued */
}

static void
s_limits_and_idle (void)
{
    /*  A byte budget of 3 values. */
    dp_queues_t *q = dp_queues_new (3, 0, s_reply, NULL);
    for (int i = 0; i < 3; i++)
        s_expect (s_put (q, A, "q", i, 0, 0), 0);
    s_expect (s_put (q, A, "q", 3, 0, 0), DPOOL_EREJECTED);
    /*  Waiting requests per peer. */
    for (int i = 0; i < DP_MAX_PEER_WAITERS; i++)
        s_get (q, B, "empty", -1, 0);
    s_expect_none ();
    s_expect (s_get (q, B, "empty", -1, 0), DPOOL_EREJECTED);
    s_expect (s_get (q, B, "q", 0, 0), DPOOL_EREJECTED); /* its loans would pass the limit */
    dp_queues_forget (q, B, 0);
    CHECK_EQ_INT (s_stats (q).waiters, 0);
    /*  Queues. */
    char name[32];
    for (int i = 2; i < DP_MAX_QUEUES; i++) {
        snprintf (name, sizeof name, "q%d", i);
        s_expect (s_request (q, A, DP_CMD_QUEUE_OPEN, name, 0, 0, 0, 0), 0);
    }
    CHECK_EQ_INT (s_stats (q).queues, DP_MAX_QUEUES);
    s_expect (s_request (q, A, DP_CMD_QUEUE_OPEN, "one-more", 0, 0, 0, 0), DPOOL_EREJECTED);
    /*  Idle ones are freed after DP_QUEUE_IDLE_MS; "q" holds values. */
    dp_queues_tick (q, DP_QUEUE_IDLE_MS - 1);
    CHECK_EQ_INT (s_stats (q).queues, DP_MAX_QUEUES);
    dp_queues_tick (q, DP_QUEUE_IDLE_MS);
    CHECK_EQ_INT (s_stats (q).queues, 1);
    s_expect (s_request (q, A, DP_CMD_QUEUE_OPEN, "one-more", 0, 0, 0, DP_QUEUE_IDLE_MS), 0);
    /*  Status: one map per queue, cut at max. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    dp_queues_pack (q, &pk, 1);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    CHECK (msgpack_unpack_next (&unpacked, sb.data, sb.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    CHECK (unpacked.data.type == MSGPACK_OBJECT_ARRAY && unpacked.data.via.array.size == 1);
    CHECK (unpacked.data.via.array.ptr[0].type == MSGPACK_OBJECT_MAP);
    CHECK_EQ_INT (unpacked.data.via.array.ptr[0].via.map.size, 8);
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&sb);
    s_expect_none ();
    dp_queues_destroy (&q);
}

/*  The program's one case. */
static void
s_case_broker_queue_store_fifo_waiters_loans_and_limits (void)
{
    dp_log_set_level (DP_LOG_ERROR); /* the overdue acknowledgement is expected */
    s_fifo_and_nowait ();
    s_waiting_gets ();
    s_forget_and_ack_deadline ();
    s_bounded ();
    s_limits_and_idle ();
}

static const dp_test_case_t s_cases[] = {
    {"broker_queue_store_fifo_waiters_loans_and_limits",
     s_case_broker_queue_store_fifo_waiters_loans_and_limits},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

/*  dp_lane.c - a calling thread's own connection to its pool's broker.

    Every function here runs on the thread that owns the lane; the pool's
    shared state is reached under its lock, as dp_client.h says. See
    dp_lane.h for what a lane is and why.
*/
#include "dp_lane.h"

#include "dp_result.h"
#include "dp_util.h"
#include "dp_wire.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*  While its HELLO could not go out (no connection yet), a waiting lane
    tries again this often. */
#define HELLO_POLL_MS 2

/*  Messages read from the lane in one go before the handle is looked at. */
#define RECV_BURST 64

struct _dp_lane_t {
    dpool_pool_t *pool; /* a reference of the lane's own */
    uint32_t number;    /* 1 .. DP_MAX_LANES (dp_client_take_lane) */
    zsock_t *dealer;
    int kick;       /* eventfd: the actor finished the handle this thread waits for */
    bool welcomed;  /* the broker knows the lane */
    bool hello_due; /* a HELLO is to be sent (at next_hello or later) */
    bool drained;   /* the last recv found the DEALER empty (see s_round in the actor) */
    int64_t next_hello;
    dp_writer_t writer;
    dp_batch_t *head; /* SUBMIT batches to send, filled under the pool's lock */
    dp_batch_t *tail;
    dp_client_scratch_t scratch;
    dp_lane_t *next; /* the thread's next lane */
};

/*  Each thread's lanes: the key's value is the first of a list. */
static pthread_key_t s_key;
static pthread_once_t s_key_once = PTHREAD_ONCE_INIT;

static void
s_close (dp_lane_t *self);
static void
s_recv (dp_lane_t *self, uint64_t seq, bool sent);

/*  At a thread's end: closes every lane it has. */
static void
s_thread_end (void *value)
{
    dp_lane_t *lane = (dp_lane_t *)value;
    while (lane) {
        dp_lane_t *next = lane->next;
        s_close (lane);
        lane = next;
    }
}

static void
s_key_make (void)
{
    int rc = pthread_key_create (&s_key, s_thread_end);
    assert (rc == 0);
    (void)rc;
}

/*  Says HELLO if one is due and its time has come. */
static void
s_hello (dp_lane_t *self)
{
    if (!self->hello_due || dp_now_ms () < self->next_hello)
        return;
    dp_encode_hello_lane (&self->writer, dp_client_session (self->pool),
                          dp_client_name (self->pool), self->number);
    if (dp_wire_send_writer (zsock_resolve (self->dealer), NULL, 0, DP_CMD_HELLO, &self->writer,
                             ZMQ_DONTWAIT) == 0) {
        self->hello_due = false;
        /*  Unanswered, it is said again after the same wait. */
        self->next_hello = dp_now_ms () + DP_LANE_RETRY_MS;
    }
    self->drained = false;
}

/*  Frees what a lane holds and its lane number, closes its socket, and
    drops its pool reference. The lane must be out of its thread's list. */
static void
s_close (dp_lane_t *self)
{
    dpool_pool_t *pool = self->pool;
    if (self->welcomed) {
        /*  The broker forgets the lane, not the session. */
        dp_encode_empty (&self->writer);
        dp_wire_send_writer (zsock_resolve (self->dealer), NULL, 0, DP_CMD_BYE, &self->writer,
                             ZMQ_DONTWAIT);
    }
    zsock_destroy (&self->dealer);
    if (self->kick >= 0)
        close (self->kick);
    dp_writer_fini (&self->writer);
    dp_batch_destroy_all (&self->head);
    dp_client_scratch_fini (&self->scratch);
    uint32_t number = self->number;
    free (self);
    dp_client_drop_lane (pool, number);
}

/*  Makes the calling thread's lane to pool. Returns NULL if it cannot. */
static dp_lane_t *
s_open (dpool_pool_t *pool)
{
    dp_lane_t *self = (dp_lane_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->number = dp_client_take_lane (pool);
    if (!self->number) {
        free (self);
        return NULL;
    }
    self->pool = pool;
    self->kick = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    dp_writer_init (&self->writer);
    self->dealer = dp_client_dealer_new (pool);
    if (self->kick < 0 || !self->dealer) {
        s_close (self);
        return NULL;
    }
    self->hello_due = true;
    self->next_hello = dp_now_ms ();
    s_hello (self);
    return self;
}

/*  Closes the calling thread's lanes whose pool has stopped. */
static dp_lane_t *
s_sweep (dp_lane_t *lanes)
{
    dp_lane_t **link = &lanes;
    while (*link) {
        dp_lane_t *lane = *link;
        dp_client_lock (lane->pool);
        bool gone = dp_client_stopped (lane->pool);
        dp_client_unlock (lane->pool);
        if (gone) {
            *link = lane->next;
            s_close (lane);
        } else
            link = &lane->next;
    }
    return lanes;
}

dp_lane_t *
dp_lane_mine (dpool_pool_t *pool)
{
    assert (pool);
    pthread_once (&s_key_once, s_key_make);
    dp_lane_t *lanes = (dp_lane_t *)pthread_getspecific (s_key);
    for (dp_lane_t *lane = lanes; lane; lane = lane->next)
        if (lane->pool == pool) {
            if (!lane->welcomed) {
                /*  A WELCOME that came after the last apply ended. */
                s_recv (lane, 0, false);
                s_hello (lane);
            }
            return lane;
        }
    lanes = s_sweep (lanes);
    dp_lane_t *lane = s_open (pool);
    if (lane) {
        lane->next = lanes;
        lanes = lane;
    }
    pthread_setspecific (s_key, lanes);
    return lane;
}

bool
dp_lane_ready (const dp_lane_t *self)
{
    return self->welcomed;
}

dp_batch_t **
dp_lane_head (dp_lane_t *self)
{
    return &self->head;
}

dp_batch_t **
dp_lane_tail (dp_lane_t *self)
{
    return &self->tail;
}

void
dp_lane_close_mine (dpool_pool_t *pool)
{
    pthread_once (&s_key_once, s_key_make);
    dp_lane_t *lanes = (dp_lane_t *)pthread_getspecific (s_key);
    for (dp_lane_t **link = &lanes; *link; link = &(*link)->next)
        if ((*link)->pool == pool) {
            dp_lane_t *lane = *link;
            *link = lane->next;
            s_close (lane);
            break;
        }
    pthread_setspecific (s_key, lanes);
}

/*  The broker does not know the lane (any more): the task of seq, if it
    went out here, goes to the actor, and the lane says HELLO again later. */
static void
s_refused (dp_lane_t *self, uint64_t seq, bool sent)
{
    self->welcomed = false;
    self->hello_due = true;
    self->next_hello = dp_now_ms () + DP_LANE_RETRY_MS;
    if (!sent)
        return;
    dpool_pool_t *pool = self->pool;
    dp_client_lock (pool);
    bool wake = dp_client_resend (pool, seq);
    dp_client_unlock (pool);
    if (wake)
        dp_client_wake (pool);
}

/*  Sends the lane's SUBMIT batches and frees them. Returns 0, or -1 if one
    could not go out. */
static int
s_send_batches (dp_lane_t *self)
{
    int rc = 0;
    void *dealer = zsock_resolve (self->dealer);
    for (dp_batch_t *batch = self->head; batch && rc == 0; batch = batch->next) {
        dp_list_end (&batch->writer);
        if (dp_list_count (&batch->writer) > 0)
            rc = dp_wire_send_frames (dealer, NULL, 0, DP_CMD_SUBMIT, &batch->writer,
                                      batch->frames, batch->nframes, ZMQ_DONTWAIT);
    }
    dp_batch_destroy_all (&self->head);
    self->tail = NULL;
    self->drained = false;
    return rc;
}

/*  Acts on one message from the broker (wire, as received: its results'
    handles may keep payload frames of it). */
static void
s_on_message (dp_lane_t *self, const dp_msg_t *msg, dp_wire_msg_t *wire, uint64_t seq, bool sent)
{
    switch (msg->cmd) {
    case DP_CMD_WELCOME:
        self->welcomed = true;
        self->hello_due = false;
        break;
    case DP_CMD_RESULT:
        if (dp_client_take_results (self->pool, msg->u.list, wire, &self->scratch) < 0)
            s_refused (self, seq, sent); /* out of memory: the actor asks again */
        break;
    case DP_CMD_ERROR:
        dp_debug ("client: lane %u refused (%d): %.*s", self->number, (int)msg->u.error.code,
                  (int)msg->u.error.message.size, (const char *)msg->u.error.message.data);
        s_refused (self, seq, sent);
        break;
    case DP_CMD_BYE:
        s_refused (self, seq, sent);
        break;
    default:
        break; /* HEARTBEAT, or what a lane does not use */
    }
}

/*  Reads what the lane holds, up to RECV_BURST messages. */
static void
s_recv (dp_lane_t *self, uint64_t seq, bool sent)
{
    void *dealer = zsock_resolve (self->dealer);
    for (int i = 0; i < RECV_BURST; i++) {
        dp_wire_msg_t wire;
        if (dp_wire_recv (dealer, &wire, ZMQ_DONTWAIT)) {
            self->drained = errno == EAGAIN;
            return;
        }
        dp_msg_t msg;
        if (dp_wire_decode (&wire, false, NULL, &msg) == DP_OK)
            s_on_message (self, &msg, &wire, seq, sent);
        else
            dp_debug ("client: malformed message on lane %u", self->number);
        dp_wire_close (&wire);
    }
}

/*  True once result is ready. */
static bool
s_ready (dp_lane_t *self, dpool_result_t *result)
{
    dp_client_lock (self->pool);
    bool ready = dp_result_ready (result);
    dp_client_unlock (self->pool);
    return ready;
}

void
dp_lane_wait (dp_lane_t *self, dpool_result_t *result, uint64_t seq)
{
    dpool_pool_t *pool = self->pool;
    bool sent = false;
    if (self->head) {
        sent = s_send_batches (self) == 0;
        if (!sent)
            s_refused (self, seq, true);
    }
    dp_client_lock (pool);
    dp_client_set_waiter (pool, result, self->kick);
    bool ready = dp_result_ready (result);
    dp_client_unlock (pool);
    while (!ready) {
        s_hello (self);
        void *dealer = zsock_resolve (self->dealer);
        if (!self->drained && dp_wire_readable (dealer))
            s_recv (self, seq, sent);
        else {
            struct pollfd fds[2] = {{dp_wire_fd (dealer), POLLIN, 0}, {self->kick, POLLIN, 0}};
            int timeout = self->hello_due ? HELLO_POLL_MS : -1;
            if (poll (fds, 2, timeout) < 0 && errno != EINTR) {
                /*  The task goes to the actor, whose SUBMIT moves its
                    result there; the caller waits for the handle on the
                    pool's condition instead. */
                dp_error ("client: poll failed: %s", strerror (errno));
                s_refused (self, seq, sent);
                break;
            }
            if (fds[0].revents)
                self->drained = false;
        }
        ready = s_ready (self, result);
    }
    dp_client_lock (pool);
    bool kicked = dp_client_set_waiter (pool, result, -1);
    dp_client_unlock (pool);
    /*  Only when the actor finished the handle (rare): no read otherwise. */
    uint64_t count;
    while (kicked && read (self->kick, &count, sizeof count) < 0 && errno == EINTR)
        ;
}

/*  test_wire.c - dp_wire on real sockets: a large body goes to ZeroMQ
    without a copy and arrives whole; a small one is copied and stays with
    its writer; a send that fails leaves the writer as it was. */
#include "dp_testutil.h"
#include "dp_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *s_ctx;
static void *s_router;
static void *s_dealer;

/*  Builds a RESULT list of count entries of value_size bytes each, every
    byte a function of its position, so any damage shows. Returns a copy of
    the body (the caller frees it), its size in *size. */
static void *
s_fill (dp_writer_t *w, size_t count, size_t value_size, size_t *size)
{
    uint8_t *value = (uint8_t *)malloc (value_size + 5);
    CHECK (value);
    dp_list_begin (w);
    for (size_t i = 0; i < count; i++) {
        /*  A bin8/16/32 header, then the bytes. */
        value[0] = 0xc6;
        value[1] = (uint8_t)(value_size >> 24);
        value[2] = (uint8_t)(value_size >> 16);
        value[3] = (uint8_t)(value_size >> 8);
        value[4] = (uint8_t)value_size;
        for (size_t b = 0; b < value_size; b++)
            value[5 + b] = (uint8_t)(i * 31 + b * 7);
        dp_list_add_result (w, i, 0, value, value_size + 5);
    }
    dp_list_end (w);
    CHECK (dp_writer_ok (w));
    free (value);
    *size = dp_writer_size (w);
    void *copy = malloc (*size);
    CHECK (copy);
    memcpy (copy, dp_writer_data (w), *size);
    return copy;
}

/*  Receives one message on socket and checks that its body is expected. */
static void
s_expect (void *socket, bool router, dp_cmd_t cmd, const void *expected, size_t size)
{
    dp_wire_msg_t msg;
    CHECK_EQ_INT (dp_wire_recv (socket, &msg, 0), 0);
    zmq_msg_t *rid = NULL;
    dp_msg_t out;
    CHECK_EQ_INT (dp_wire_decode (&msg, router, &rid, &out), DP_OK);
    CHECK_EQ_INT (out.cmd, cmd);
    zmq_msg_t *body = &msg.frames[router ? 2 : 1];
    CHECK (zmq_msg_size (body) == size);
    CHECK (memcmp (zmq_msg_data (body), expected, size) == 0);
    dp_wire_close (&msg);
}

/*  The routing id the ROUTER knows the DEALER by. */
static size_t
s_dealer_rid (uint8_t *rid)
{
    dp_writer_t w;
    dp_writer_init (&w);
    dp_encode_empty (&w);
    CHECK_EQ_INT (dp_wire_send_writer (s_dealer, NULL, 0, DP_CMD_HEARTBEAT, &w, 0), 0);
    dp_writer_fini (&w);
    dp_wire_msg_t msg;
    CHECK_EQ_INT (dp_wire_recv (s_router, &msg, 0), 0);
    size_t size = zmq_msg_size (&msg.frames[0]);
    CHECK (size > 0 && size < 256);
    memcpy (rid, zmq_msg_data (&msg.frames[0]), size);
    dp_wire_close (&msg);
    return size;
}

static void
s_large_body_taken (void)
{
    dp_writer_t w;
    dp_writer_init (&w);
    size_t size;
    void *copy = s_fill (&w, 3, 40000, &size); /* 120 KB: taken */
    CHECK (size >= DP_WIRE_TAKE_MIN);

    CHECK_EQ_INT (dp_wire_send_take (s_dealer, NULL, 0, DP_CMD_RESULT, &w, 0), 0);
    /*  The writer gave its buffer away... */
    CHECK (dp_writer_data (&w) == NULL);
    CHECK (dp_writer_size (&w) == 0);
    s_expect (s_router, true, DP_CMD_RESULT, copy, size);
    /*  ...and its next body starts with room for one as large. */
    dp_list_begin (&w);
    CHECK (w.sbuf.alloc >= size);
    CHECK_EQ_INT (dp_list_count (&w), 0);

    /*  Again the other way, from the ROUTER with a routing id. */
    uint8_t rid[256];
    size_t rid_size = s_dealer_rid (rid);
    free (copy);
    copy = s_fill (&w, 2, 50000, &size);
    CHECK_EQ_INT (dp_wire_send_take (s_router, rid, rid_size, DP_CMD_RESULT, &w, ZMQ_DONTWAIT), 0);
    CHECK (dp_writer_data (&w) == NULL);
    s_expect (s_dealer, false, DP_CMD_RESULT, copy, size);
    free (copy);
    dp_writer_fini (&w);
}

static void
s_small_body_kept (void)
{
    dp_writer_t w;
    dp_writer_init (&w);
    size_t size;
    free (s_fill (&w, 4, 100, &size));
    CHECK (size < DP_WIRE_TAKE_MIN);
    const void *data = dp_writer_data (&w);
    CHECK_EQ_INT (dp_wire_send_take (s_dealer, NULL, 0, DP_CMD_RESULT, &w, 0), 0);
    /*  Copied: the writer still has it, and it arrives the same. */
    CHECK (dp_writer_data (&w) == data);
    CHECK (dp_writer_size (&w) == size);
    s_expect (s_router, true, DP_CMD_RESULT, data, size);
    dp_writer_fini (&w);
}

static void
s_failed_send_keeps_body (void)
{
    dp_writer_t w;
    dp_writer_init (&w);
    size_t size;
    void *copy = s_fill (&w, 2, 40000, &size);
    const void *data = dp_writer_data (&w);
    /*  No such peer: a ROUTER_MANDATORY socket refuses the first frame. */
    CHECK_EQ_INT (dp_wire_send_take (s_router, "nobody", 6, DP_CMD_RESULT, &w, ZMQ_DONTWAIT), -1);
    CHECK_EQ_INT (errno, EHOSTUNREACH);
    CHECK (dp_writer_data (&w) == data);
    CHECK (dp_writer_size (&w) == size);
    /*  It can still go, whole, to one that is there. */
    CHECK_EQ_INT (dp_wire_send_take (s_dealer, NULL, 0, DP_CMD_RESULT, &w, 0), 0);
    s_expect (s_router, true, DP_CMD_RESULT, copy, size);
    free (copy);
    dp_writer_fini (&w);
}

static void
s_msg_take (void)
{
    dp_writer_t w;
    dp_writer_init (&w);

    /*  Large: the message holds the writer's very bytes. */
    size_t size;
    void *copy = s_fill (&w, 1, 70000, &size);
    const void *data = dp_writer_data (&w);
    zmq_msg_t body;
    CHECK_EQ_INT (dp_wire_msg_take (&body, &w), 0);
    CHECK (zmq_msg_data (&body) == data);
    CHECK (zmq_msg_size (&body) == size);
    CHECK (dp_writer_data (&w) == NULL);
    CHECK_EQ_INT (dp_wire_send_msg (s_dealer, NULL, 0, DP_CMD_DONE, &body, 0), 0);
    CHECK (zmq_msg_size (&body) == 0); /* sent: the message is empty */
    zmq_msg_close (&body);
    s_expect (s_router, true, DP_CMD_DONE, copy, size);

    /*  Small: a copy, and the writer keeps its own. */
    free (copy);
    copy = s_fill (&w, 1, 10, &size);
    data = dp_writer_data (&w);
    CHECK_EQ_INT (dp_wire_msg_take (&body, &w), 0);
    CHECK (zmq_msg_data (&body) != data);
    CHECK (zmq_msg_size (&body) == size);
    CHECK (memcmp (zmq_msg_data (&body), data, size) == 0);
    CHECK (dp_writer_data (&w) == data);
    CHECK_EQ_INT (dp_wire_send_msg (s_dealer, NULL, 0, DP_CMD_DONE, &body, 0), 0);
    zmq_msg_close (&body);
    s_expect (s_router, true, DP_CMD_DONE, data, size);
    free (copy);
    dp_writer_fini (&w);
}

/*  The program's one case. */
static void
s_case_wire_large_bodies_go_without_a_copy (void)
{
    s_ctx = zmq_ctx_new ();
    CHECK (s_ctx);
    s_router = zmq_socket (s_ctx, ZMQ_ROUTER);
    s_dealer = zmq_socket (s_ctx, ZMQ_DEALER);
    CHECK (s_router && s_dealer);
    CHECK_EQ_INT (dp_wire_configure (s_router, true, 0), 0);
    CHECK_EQ_INT (dp_wire_configure (s_dealer, false, 0), 0);
    CHECK_EQ_INT (zmq_bind (s_router, "inproc://test_wire"), 0);
    CHECK_EQ_INT (zmq_connect (s_dealer, "inproc://test_wire"), 0);

    s_large_body_taken ();
    s_small_body_kept ();
    s_failed_send_keeps_body ();
    s_msg_take ();

    zmq_close (s_dealer);
    zmq_close (s_router);
    zmq_ctx_term (s_ctx);
}

static const dp_test_case_t s_cases[] = {
    {"wire_large_bodies_go_without_a_copy", s_case_wire_large_bodies_go_without_a_copy},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), 60);
}

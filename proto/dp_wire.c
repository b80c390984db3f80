/*  dp_wire.c - dpool messages on ZeroMQ sockets. */
#include "dp_wire.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
dp_wire_configure (void *socket, bool router, int linger_ms)
{
    int64_t maxmsg = DP_MAX_MSG_SIZE;
    int hwm = DP_WIRE_HWM;
    int one = 1;
    if (zmq_setsockopt (socket, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt (socket, ZMQ_LINGER, &linger_ms, sizeof linger_ms))
        return -1;
    if (router && zmq_setsockopt (socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one))
        return -1;
    return 0;
}

int
dp_wire_fd (void *socket)
{
    int fd = -1;
    size_t size = sizeof fd;
    if (zmq_getsockopt (socket, ZMQ_FD, &fd, &size) != 0)
        return -1;
    return fd;
}

bool
dp_wire_readable (void *socket)
{
    uint32_t events = 0;
    size_t size = sizeof events;
    if (zmq_getsockopt (socket, ZMQ_EVENTS, &events, &size) != 0)
        return false;
    return (events & ZMQ_POLLIN) != 0;
}

int
dp_wire_recv (void *socket, dp_wire_msg_t *msg, int flags)
{
    assert (msg);
    msg->count = 0;
    msg->excess = 0;
    int more = 1;
    while (more) {
        zmq_msg_t *frame;
        zmq_msg_t spill;
        if (msg->count < DP_WIRE_FRAMES)
            frame = &msg->frames[msg->count];
        else
            frame = &spill;
        zmq_msg_init (frame);
        /*  Once the first frame is in, the rest of the message is already
            here: ZeroMQ delivers messages whole. */
        if (zmq_msg_recv (frame, socket, msg->count + msg->excess ? 0 : flags) < 0) {
            int saved = errno;
            zmq_msg_close (frame);
            dp_wire_close (msg);
            errno = saved;
            return -1;
        }
        more = zmq_msg_more (frame);
        if (frame == &spill) {
            zmq_msg_close (&spill);
            msg->excess++;
        } else
            msg->count++;
    }
    return 0;
}

void
dp_wire_close (dp_wire_msg_t *msg)
{
    for (int i = 0; i < msg->count; i++)
        zmq_msg_close (&msg->frames[i]);
    msg->count = 0;
    msg->excess = 0;
}

dp_reason_t
dp_wire_decode (dp_wire_msg_t *msg, bool router, zmq_msg_t **rid, dp_msg_t *out)
{
    int want = router ? 3 : 2;
    if (msg->count < want || msg->excess)
        return DP_EFRAMES;
    int at = 0;
    if (router) {
        *rid = &msg->frames[0];
        at = 1;
    }
    zmq_msg_t *header = &msg->frames[at];
    zmq_msg_t *body = &msg->frames[at + 1];
    msg->payload = want;
    uint32_t nframes = (uint32_t)(msg->count - want);
    for (uint32_t i = 0; i < nframes; i++) {
        zmq_msg_t *frame = &msg->frames[want + (int)i];
        msg->spans[i].data = (const uint8_t *)zmq_msg_data (frame);
        msg->spans[i].size = zmq_msg_size (frame);
    }
    return dp_msg_decode_frames (zmq_msg_data (header), zmq_msg_size (header), zmq_msg_data (body),
                                 zmq_msg_size (body), msg->spans, nframes, out);
}

zmq_msg_t *
dp_wire_payload (dp_wire_msg_t *msg, uint32_t frame)
{
    assert (frame >= 1 && msg->payload + (int)frame - 1 < msg->count);
    return &msg->frames[msg->payload + (int)frame - 1];
}

/*  Sends the routing id and header of a message, leaving it open for its
    body. Returns the flags for the body frame, or -1. Once the first frame
    is accepted the rest of the message is too, so on a ROUTER the later
    frames drop the caller's ZMQ_DONTWAIT. */
static int
s_send_head_version (void *socket, const void *rid, size_t rid_size, uint8_t version, dp_cmd_t cmd,
                     int flags)
{
    uint8_t header[DP_HEADER_SIZE];
    dp_header_encode_version (header, version, cmd);
    if (rid_size > 0 && zmq_send (socket, rid, rid_size, flags | ZMQ_SNDMORE) < 0)
        return -1;
    int more_flags = (rid_size > 0 ? 0 : flags) & ~ZMQ_SNDMORE;
    if (zmq_send (socket, header, sizeof header, more_flags | ZMQ_SNDMORE) < 0)
        return -1;
    return more_flags;
}

static int
s_send_head (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, int flags)
{
    return s_send_head_version (socket, rid, rid_size, DP_VERSION, cmd, flags);
}

int
dp_wire_send_version (void *socket, const void *rid, size_t rid_size, uint8_t version,
                      dp_cmd_t cmd, const void *body, size_t size, int flags)
{
    int body_flags = s_send_head_version (socket, rid, rid_size, version, cmd, flags);
    if (body_flags < 0 || zmq_send (socket, body, size, body_flags) < 0)
        return -1;
    return 0;
}

int
dp_wire_send (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, const void *body,
              size_t size, int flags)
{
    int body_flags = s_send_head (socket, rid, rid_size, cmd, flags);
    if (body_flags < 0 || zmq_send (socket, body, size, body_flags) < 0)
        return -1;
    return 0;
}

static void
s_free (void *data, void *hint)
{
    (void)hint;
    free (data);
}

int
dp_wire_msg_take (zmq_msg_t *msg, dp_writer_t *writer)
{
    size_t size = dp_writer_size (writer);
    if (!dp_writer_ok (writer)) {
        errno = ENOMEM;
        return -1;
    }
    if (size >= DP_WIRE_TAKE_MIN) {
        void *data = dp_writer_take (writer, &size);
        if (data && zmq_msg_init_data (msg, data, size, s_free, NULL) == 0)
            return 0;
        /*  No memory for ZeroMQ's record of it: copy after all. */
        if (data && zmq_msg_init_size (msg, size) == 0) {
            memcpy (zmq_msg_data (msg), data, size);
            free (data);
            return 0;
        }
        free (data);
        errno = ENOMEM;
        return -1;
    }
    if (zmq_msg_init_size (msg, size) != 0)
        return -1;
    if (size > 0)
        memcpy (zmq_msg_data (msg), dp_writer_data (writer), size);
    return 0;
}

int
dp_wire_send_msg (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, zmq_msg_t *body,
                  int flags)
{
    int body_flags = s_send_head (socket, rid, rid_size, cmd, flags);
    if (body_flags < 0 || zmq_msg_send (body, socket, body_flags) < 0)
        return -1;
    return 0;
}

int
dp_wire_send_take (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd,
                   dp_writer_t *writer, int flags)
{
    if (!dp_writer_ok (writer)) {
        errno = ENOMEM;
        return -1;
    }
    if (dp_writer_size (writer) < DP_WIRE_TAKE_MIN)
        return dp_wire_send_writer (socket, rid, rid_size, cmd, writer, flags);
    int body_flags = s_send_head (socket, rid, rid_size, cmd, flags);
    if (body_flags < 0)
        return -1;
    /*  The head is accepted, so the body must follow. */
    zmq_msg_t body;
    int rc = dp_wire_msg_take (&body, writer);
    if (rc == 0) {
        rc = zmq_msg_send (&body, socket, body_flags) < 0 ? -1 : 0;
        zmq_msg_close (&body);
    } else
        zmq_send (socket, "", 0, body_flags); /* out of memory: an empty body, rejected */
    return rc;
}

int
dp_wire_send_writer (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd,
                     const dp_writer_t *writer, int flags)
{
    if (!dp_writer_ok (writer)) {
        errno = ENOMEM;
        return -1;
    }
    return dp_wire_send (socket, rid, rid_size, cmd, dp_writer_data (writer),
                         dp_writer_size (writer), flags);
}

/*  Sends body and nframes payload frames after an accepted head, with
    more, the head's flags for the frames that follow it. */
static int
s_send_rest (void *socket, int more, zmq_msg_t *body, zmq_msg_t *frames, size_t nframes)
{
    int rc = zmq_msg_send (body, socket, more | (nframes ? ZMQ_SNDMORE : 0)) < 0 ? -1 : 0;
    for (size_t i = 0; i < nframes; i++) {
        int last = i + 1 == nframes ? 0 : ZMQ_SNDMORE;
        if (zmq_msg_send (&frames[i], socket, more | last) < 0)
            rc = -1;
    }
    return rc;
}

int
dp_wire_send_msgs (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, zmq_msg_t *body,
                   zmq_msg_t *frames, size_t nframes, int flags)
{
    assert (nframes <= DP_MAX_FRAMES);
    int more = s_send_head (socket, rid, rid_size, cmd, flags);
    if (more < 0)
        return -1;
    return s_send_rest (socket, more, body, frames, nframes);
}

int
dp_wire_send_frames (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd,
                     dp_writer_t *writer, zmq_msg_t *frames, size_t nframes, int flags)
{
    assert (nframes <= DP_MAX_FRAMES);
    if (nframes == 0)
        return dp_wire_send_take (socket, rid, rid_size, cmd, writer, flags);
    if (!dp_writer_ok (writer)) {
        errno = ENOMEM;
        return -1;
    }
    int more = s_send_head (socket, rid, rid_size, cmd, flags);
    if (more < 0)
        return -1;
    /*  The head is accepted, so the rest must follow: a body that cannot be
        made goes empty, which the receiver refuses as malformed. */
    zmq_msg_t body;
    int rc = dp_wire_msg_take (&body, writer);
    if (rc != 0)
        zmq_msg_init (&body);
    if (s_send_rest (socket, more, &body, frames, nframes) != 0)
        rc = -1;
    zmq_msg_close (&body);
    return rc;
}

/*  dp_wire.h - dpool messages on ZeroMQ sockets: framing only.

    The codec (dp_proto) is pure; this thin layer moves its bytes. It works
    on raw libzmq socket handles, so the broker and client (CZMQ, through
    zsock_resolve) and the worker (plain libzmq, safe after fork) share it.
    On a ROUTER a message is [routing id, header, body, payload frames...];
    on a DEALER it is [header, body, payload frames...]. Frames beyond the
    most a message may have are received and dropped, and the message is
    reported as malformed.
*/
#ifndef DP_WIRE_H_INCLUDED
#define DP_WIRE_H_INCLUDED

#include "dp_proto.h"

#include <zmq.h>

#define DP_WIRE_FRAMES (3 + DP_MAX_FRAMES)

/*  High-water marks: a safety net far above what credits allow. */
#define DP_WIRE_HWM 100000

typedef struct {
    zmq_msg_t frames[DP_WIRE_FRAMES];
    int count;                      /* frames held in frames[] */
    int excess;                     /* further frames received and dropped */
    int payload;                    /* decoded: index in frames[] of the first payload frame */
    dp_span_t spans[DP_MAX_FRAMES]; /* decoded: the payload frames */
} dp_wire_msg_t;

/*  Applies dpool's socket options: ZMQ_MAXMSGSIZE, high-water marks, linger
    (linger_ms), and on a ROUTER, ZMQ_ROUTER_MANDATORY so that a send to a
    gone peer fails with EHOSTUNREACH instead of vanishing. Returns 0 or -1. */
int
dp_wire_configure (void *socket, bool router, int linger_ms);

/*  A socket's file descriptor (ZMQ_FD), to poll(2) beside other fds; -1 on
    failure. It only says that the socket's state may have changed: look
    with dp_wire_readable after it fires, and before sleeping on it after
    any send or receive on the socket (they may consume its signal). Costs
    far fewer system calls than zmq_poll, which asks every socket for its
    events before and after it sleeps. */
int
dp_wire_fd (void *socket);

/*  True if a message is waiting on the socket (ZMQ_EVENTS has ZMQ_POLLIN). */
bool
dp_wire_readable (void *socket);

/*  Receives one whole message (all its frames). flags may be ZMQ_DONTWAIT.
    Returns 0, or -1 with errno (EAGAIN, EINTR, ETERM). On success the caller
    must dp_wire_close the message. */
int
dp_wire_recv (void *socket, dp_wire_msg_t *msg, int flags);

/*  Releases the frames of a received message. */
void
dp_wire_close (dp_wire_msg_t *msg);

/*  Validates a received message: a routing id first when router is true,
    then header, body and payload frames. Returns DP_OK and fills out (spans
    into msg), or the reason; *rid is set to the routing id frame when
    router is true. A decoded entry's frame n is dp_wire_payload (msg, n). */
dp_reason_t
dp_wire_decode (dp_wire_msg_t *msg, bool router, zmq_msg_t **rid, dp_msg_t *out);

/*  The payload frame a decoded entry's frame field (1 + its index) names. */
zmq_msg_t *
dp_wire_payload (dp_wire_msg_t *msg, uint32_t frame);

/*  Sends one message: [rid (if rid_size > 0)], header for cmd, body.
    flags may hold ZMQ_DONTWAIT. Returns 0, or -1 with errno: EAGAIN (the
    peer is slow), EHOSTUNREACH (no such peer on a ROUTER), ETERM. */
int
dp_wire_send (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, const void *body,
              size_t size, int flags);

/*  dp_wire_send with a writer's body. */
int
dp_wire_send_writer (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd,
                     const dp_writer_t *writer, int flags);

/*  Bodies this large are handed to ZeroMQ rather than copied. Below it a
    copy costs less than a fresh buffer. */
#define DP_WIRE_TAKE_MIN (32 * 1024)

/*  dp_wire_send_writer for a body sent once: a body of DP_WIRE_TAKE_MIN
    bytes or more goes to ZeroMQ without a copy (dp_writer_take), so after
    this returns 0 the writer holds no body. On -1 the writer is untouched. */
int
dp_wire_send_take (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd,
                   dp_writer_t *writer, int flags);

/*  Makes a message of a writer's body for another socket: taken without a
    copy when large, copied when small. Returns 0, or -1 with errno ENOMEM. */
int
dp_wire_msg_take (zmq_msg_t *msg, dp_writer_t *writer);

/*  dp_wire_send_take followed by nframes payload frames, each sent as it
    is (ZeroMQ shares or frees its data: no copy). On 0 the frames are
    empty; either way the caller closes them. On -1 because the first
    frame was refused (EAGAIN, EHOSTUNREACH) nothing was sent and the
    writer and the frames are untouched. */
int
dp_wire_send_frames (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd,
                     dp_writer_t *writer, zmq_msg_t *frames, size_t nframes, int flags);

/*  dp_wire_send_msg followed by nframes payload frames, each sent as it is.
    On 0 body and frames are empty; either way the caller closes them. */
int
dp_wire_send_msgs (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, zmq_msg_t *body,
                   zmq_msg_t *frames, size_t nframes, int flags);

/*  dp_wire_send of a header in another version: an ERROR to a peer that
    spoke that version (docs/PROTOCOL.md, 9). */
int
dp_wire_send_version (void *socket, const void *rid, size_t rid_size, uint8_t version,
                      dp_cmd_t cmd, const void *body, size_t size, int flags);

/*  dp_wire_send with the body a message, which is sent as it is. On 0 the
    message is empty; on -1 it is unchanged. Either way the caller closes it. */
int
dp_wire_send_msg (void *socket, const void *rid, size_t rid_size, dp_cmd_t cmd, zmq_msg_t *body,
                  int flags);

#endif

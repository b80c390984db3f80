/*  dp_proto.h - the dpool wire protocol: commands, limits, defaults, and the
    codec for every message, as pure functions.

    docs/PROTOCOL.md is the specification; this module is its only
    implementation. A message is two frames after any routing id: a 4-byte
    header ("DP", version, command) and a msgpack body whose shape depends on
    the command. dp_msg_decode validates a whole message before anyone acts
    on it: a message it accepts can be walked with the dp_list_* iterators
    without further checks. Decoded fields are spans into the caller's
    buffers; nothing is allocated. Encoding appends to a dp_writer_t, a
    reusable msgpack buffer.
*/
#ifndef DP_PROTO_H_INCLUDED
#define DP_PROTO_H_INCLUDED

#include "dp_msgpack.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Header frame: signature, version, command. */
#define DP_SIGNATURE_0 'D'
#define DP_SIGNATURE_1 'P'
#define DP_VERSION     2
#define DP_HEADER_SIZE 4

/*  The version before payload frames (docs/PROTOCOL.md, 9). A peer reads
    only its ERROR, so that a peer of either version learns why the other
    refused it; the broker answers a version-1 message in version 1. */
#define DP_VERSION_1 1

/*  Payload frames (docs/PROTOCOL.md, 3): a task's arguments or a result's
    value may travel as a frame of its own after the body, so that no hop
    copies it into a batch. A message carries at most DP_MAX_FRAMES of
    them. Senders put arguments and values of DP_FRAME_MIN bytes or more
    in frames; smaller ones cost less inline (1 KiB echo framed ran at
    under half the rate of the same inline: a frame costs ZeroMQ a message
    part of its own on every hop). */
#define DP_MAX_FRAMES 256
#define DP_FRAME_MIN  (4 * 1024)

/*  Limits. A message or field beyond them is malformed. */
#define DP_MAX_MSG_SIZE  (64 * 1024 * 1024) /* ZMQ_MAXMSGSIZE on every socket */
#define DP_MAX_NAME      255                /* function, peer and host names */
#define DP_MAX_ERROR     4096               /* error message bytes */
#define DP_MAX_BATCH     1000000            /* entries in one list message */
#define DP_MAX_FUNCTIONS 4096               /* functions one worker offers */
#define DP_MAX_RETRIES   1000               /* retries a task may ask for */
#define DP_MAX_CREDIT    100000             /* tasks one worker may hold */
#define DP_SESSION_SIZE  16                 /* bytes of a client session id */
#define DP_MAX_LANES     64                 /* extra connections (lanes) of one session */

/*  Limits of named queues and progress reports (docs/PROTOCOL.md, 8). The
    first three are limits of the wire: beyond them a message is malformed.
    The others are the broker's: beyond them a request is answered
    EREJECTED. */
#define DP_MAX_QUEUE_VALUE    (1024 * 1024) /* bytes of one queued value */
#define DP_MAX_QUEUE_SIZE     1000000       /* maxsize, and the items any queue holds */
#define DP_MAX_PROGRESS       4096          /* bytes of one progress value */
#define DP_MAX_PROGRESS_DEPTH 8             /* nesting of one progress value */
#define DP_MAX_QUEUES         10000         /* named queues one broker holds */
#define DP_MAX_QUEUE_WAITERS  100000        /* gets and puts waiting, broker-wide */
#define DP_MAX_PEER_WAITERS   1024          /* gets and puts waiting, per peer */
#define DP_MAX_PEER_LOANS     1024          /* values handed to a peer, not yet acknowledged */
#define DP_QUEUE_BYTES        (1L << 30)    /* default: value bytes held, broker-wide */

/*  Detached batches (docs/PROTOCOL.md, 5.8). The first four are limits of
    the wire; the others are the broker's defaults and bounds. */
#define DP_BATCH_ID_SIZE      16            /* hex characters of a batch id */
#define DP_MAX_BATCH_TTL_S    (366 * 86400) /* a batch's result TTL, seconds */
#define DP_MAX_BATCH_WAIT_MS  600000        /* longest wait of one BATCH-GET */
#define DP_BATCH_DISCARD      0x01u         /* flags: fire and forget, no result kept */
#define DP_BATCH_SEALED       0x02u         /* info: its total is known */
#define DP_BATCH_CANCELLED    0x04u         /* info: cancelled */
#define DP_BATCH_RESULT_TTL_S (7 * 86400)   /* default --result-ttl */
#define DP_MAX_BATCHES        10000         /* default --max-batches, per owner */
#define DP_MAX_BATCH_TASKS    10000000      /* default --max-batch-tasks */
#define DP_BATCH_BYTES        (1L << 30)    /* default --max-batch-bytes: results held */
#define DP_MAX_BATCH_WAITERS  1024          /* BATCH-GETs waiting, broker-wide */
#define DP_BATCH_REPLY_BYTES  (8u << 20)    /* results in one BATCH-REPLY, about */

/*  Heartbeat rules (docs/PROTOCOL.md §6), for an interval ivl in ms: the
    broker beats once per ivl, sending HEARTBEAT to each peer it has sent
    nothing for DP_HEARTBEAT_QUIET (ivl); a peer answers a HEARTBEAT when it
    has sent nothing for DP_HEARTBEAT_QUIET (ivl), and sends one unasked
    after DP_HEARTBEAT_ALONE (ivl) of its own silence. */
#define DP_HEARTBEAT_QUIET(ivl) ((ivl) / 2)
#define DP_HEARTBEAT_ALONE(ivl) ((ivl) + (ivl) / 2)

/*  Idle workers (holding no job, docs/PROTOCOL.md §6) beat slower: the
    broker beats them on every DP_IDLE_FACTOR-th beat only, the worker sends
    unasked after DP_HEARTBEAT_ALONE (DP_IDLE_FACTOR * ivl), and each side
    waits DP_IDLE_FACTOR times the expiry before it gives the other up. */
#define DP_IDLE_FACTOR 3

/*  An interval or expiry of ms as it applies to a worker that is idle or
    not, in ms (int64_t). */
#define DP_IDLE_SCALED(ms, idle) ((idle) ? DP_IDLE_FACTOR * (int64_t)(ms) : (int64_t)(ms))

/*  Defaults, documented in docs/PROTOCOL.md. */
#define DP_DEFAULT_ENDPOINT    "tcp://*:5555"
#define DP_DEFAULT_CONNECT     "tcp://127.0.0.1:5555"
#define DP_HEARTBEAT_MS        1000       /* the broker's heartbeat beat (docs/PROTOCOL.md §6) */
#define DP_EXPIRY_MS           2500       /* a peer silent this long is dead */
#define DP_DEFAULT_RETRIES     3          /* re-runs after a worker dies */
#define DP_DEFAULT_CREDIT      512        /* tasks a worker process may hold at once */
#define DP_PREFETCH_US         5000       /* work the broker queues at a worker, in run time */
#define DP_PREFETCH_BYTES      (4u << 20) /* and in bytes of arguments */
#define DP_DEFAULT_OUTSTANDING 100000     /* client tasks in flight */
#define DP_RECONNECT_MS        100        /* first reconnect delay */
#define DP_RECONNECT_MAX_MS    2000       /* reconnect backoff ceiling */
#define DP_QUEUE_ACK_MS        30000      /* a value not acknowledged this long goes back */
#define DP_QUEUE_IDLE_MS       60000      /* an empty queue nobody uses this long is freed */
#define DP_QUEUE_SLACK_MS      5000       /* a requester waits this long past its timeout */
#define DP_PROGRESS_MS         100        /* a worker sends one PROGRESS at most this often */

/*  Task flags (SUBMIT and DISPATCH). */
#define DP_TASK_CHUNK         0x01u /* args is an array of calls; the value an array of [code, value] */
#define DP_TASK_RETRY_TIMEOUT 0x02u /* a timed-out attempt is retried like a worker death */
#define DP_TASK_FLAGS         0x03u /* every flag of a task this version knows */
/*  On the wire only (SUBMIT and DISPATCH): args is nil in the body and the
    arguments are the message's next payload frame. Decoding takes it out
    of flags and sets dp_task_t.frame instead. */
#define DP_TASK_FRAMED 0x04u

typedef enum {
    DP_CMD_HELLO = 1,         /* client -> broker: session id, name, lane */
    DP_CMD_WELCOME = 2,       /* broker -> client or worker: timing, limits */
    DP_CMD_READY = 3,         /* worker -> broker: functions and credit */
    DP_CMD_SUBMIT = 4,        /* client -> broker: a batch of tasks */
    DP_CMD_RESULT = 5,        /* broker -> client: a batch of results */
    DP_CMD_DISPATCH = 6,      /* broker -> worker: a batch of tasks */
    DP_CMD_DONE = 7,          /* worker -> broker: a batch of results */
    DP_CMD_CANCEL = 8,        /* client -> broker: tasks not to run */
    DP_CMD_STATUS = 9,        /* client -> broker: status request */
    DP_CMD_STATUS_REPLY = 10, /* broker -> client: status map */
    DP_CMD_HEARTBEAT = 11,    /* any -> any: still here */
    DP_CMD_BYE = 12,          /* any -> any: leaving (a worker's is answered) */
    DP_CMD_ERROR = 13,        /* broker -> any: your message was refused */
    DP_CMD_QUEUE_OPEN = 14,   /* client or worker -> broker: open a named queue */
    DP_CMD_QUEUE_PUT = 15,    /* client or worker -> broker: put a value on a queue */
    DP_CMD_QUEUE_GET = 16,    /* client or worker -> broker: take a value off a queue */
    DP_CMD_QUEUE_SIZE = 17,   /* client or worker -> broker: how many values it holds */
    DP_CMD_QUEUE_REPLY = 18,  /* broker -> client or worker: the answer to a request */
    DP_CMD_QUEUE_ACK = 19,    /* client or worker -> broker: a value got was taken, or not */
    DP_CMD_PROGRESS = 20,     /* worker -> broker: a running job's progress */
    DP_CMD_WORK_STATUS = 21,  /* broker -> client: a running task's progress */
    DP_CMD_ATTACH = 22,       /* worker lane -> broker: be this worker's data lane */
    DP_CMD_BATCH_ADD = 23,    /* client -> broker: tasks of a detached batch */
    DP_CMD_BATCH_GET = 24,    /* client -> broker: a batch's results, in input order */
    DP_CMD_BATCH_ACK = 25,    /* client -> broker: results up to an index were collected */
    DP_CMD_BATCH_LIST = 26,   /* client -> broker: the batches it may see */
    DP_CMD_BATCH_CANCEL = 27, /* client -> broker: cancel a batch's queued tasks */
    DP_CMD_BATCH_REPLY = 28,  /* broker -> client: the answer to a batch request */
    DP_CMD_COUNT_ = 29
} dp_cmd_t;

/*  Why a message was refused; the broker counts each reason. */
typedef enum {
    DP_OK = 0,
    DP_EFRAMES = 1,    /* wrong number of frames */
    DP_EHEADER = 2,    /* header frame not 4 bytes */
    DP_ESIGNATURE = 3, /* not "DP" */
    DP_EVERSION = 4,   /* a version this peer does not speak */
    DP_ECOMMAND = 5,   /* unknown command */
    DP_EBODY = 6,      /* body is not the command's msgpack shape */
    DP_ELIMIT = 7,     /* a field is beyond a limit */
    DP_EREASON_COUNT_ = 8
} dp_reason_t;

/*  Short names for commands and reasons, for logs and status. */
const char *
dp_cmd_name (int cmd);
const char *
dp_reason_name (int reason);

/*  How many task arguments or result values of a list dp_msg_decode
    remembers, so that the iterators need not walk them a second time (a
    chunk's value holds thousands of calls). */
#define DP_LIST_KNOWN 16

/*  A list of entries (tasks, results, seqs, names) inside a validated body,
    walked with the dp_list_next_* call of its kind. Made only by
    dp_msg_decode; copies walk the same entries independently. */
typedef struct {
    dp_reader_t reader;
    uint32_t left;
    uint32_t next;                  /* index of the next entry */
    dp_span_t known[DP_LIST_KNOWN]; /* the first entries' args or values */
    const dp_span_t *frames;        /* the message's payload frames */
    uint32_t nframes;
    uint32_t frame_next; /* the payload frame the next framed entry holds */
} dp_list_t;

/*  One task, as SUBMIT and DISPATCH carry it. In SUBMIT, id is the client's
    sequence number and retries the retry limit (-1 none, 0 default); in
    DISPATCH, id is the broker's reference and attempt counts from 1, and
    urgent (DISPATCH's optional seventh field, PROTOCOL.md 5.2) says that
    the worker may run it before the jobs it received earlier. */
typedef struct {
    uint64_t id;
    dp_span_t fn;
    dp_span_t args; /* exactly one msgpack object */
    int32_t priority;
    uint32_t timeout_ms;
    int32_t retries;
    uint32_t attempt;
    uint32_t flags;
    uint32_t frame; /* decoded: 1 + the payload frame that holds args; 0 inline */
    bool urgent;
} dp_task_t;

/*  One result, as RESULT and DONE carry it: code 0 and the value, or an
    error code (dpool_error_t) and a str message as the value. */
typedef struct {
    uint64_t id;
    int32_t code;
    dp_span_t value;
    uint32_t run_us; /* DONE: how long the task ran on the worker; 0 if not said */
    uint32_t frame;  /* decoded: 1 + the payload frame that holds value; 0 inline */
} dp_result_t;

typedef struct {
    dp_span_t session; /* DP_SESSION_SIZE bytes */
    dp_span_t name;
    uint32_t lane; /* 0: the session's main connection; 1..DP_MAX_LANES: a lane of it */
} dp_hello_t;

typedef struct {
    uint32_t heartbeat_ms;
    uint32_t expiry_ms;
    dp_span_t broker; /* broker name */
    uint32_t workers; /* workers connected now */
    uint64_t token;   /* to a worker: its registration's lane token; 0 if none */
} dp_welcome_t;

typedef struct {
    dp_span_t name;
    uint64_t pid;
    dp_span_t host;
    uint32_t credit;
    dp_list_t functions; /* str names, walk with dp_list_next_str */
} dp_ready_t;

/*  ATTACH: the token of the worker registration the lane joins. */
typedef struct {
    uint64_t token;
} dp_attach_t;

typedef struct {
    bool all;       /* every task of the session */
    dp_list_t seqs; /* or these, walk with dp_list_next_uint */
} dp_cancel_t;

typedef struct {
    int32_t code;
    dp_span_t message;
} dp_error_t;

/*  A queue request: QUEUE-OPEN, -PUT, -GET or -SIZE. req is the
    requester's number for it, echoed in the reply. timeout_ms (PUT, GET)
    is -1 to wait without limit, 0 not to wait, else the longest wait. */
typedef struct {
    uint64_t req;
    dp_span_t name;     /* 1 to DP_MAX_NAME bytes */
    uint32_t maxsize;   /* OPEN, PUT: 0 none, else the queue's bound */
    int32_t timeout_ms; /* PUT, GET */
    dp_span_t value;    /* PUT: one msgpack object */
} dp_queue_req_t;

/*  QUEUE-REPLY: code 0 and, for a GET, the value and a non-zero token to
    acknowledge; else a dpool_error_t code and a str message as the value.
    size and maxsize describe the queue after the request. */
typedef struct {
    uint64_t req;
    int32_t code;
    uint32_t size;
    uint32_t maxsize;
    dp_span_t value;
    uint64_t token;
} dp_queue_reply_t;

typedef struct {
    uint64_t token;
    bool accept; /* false: the value goes back to the front of its queue */
} dp_queue_ack_t;

/*  BATCH-ADD: tasks of batch id, entries of a SUBMIT list whose seq is
    the task's index in the batch. total 0: more may come; else the batch
    has exactly total tasks (it is sealed). */
typedef struct {
    uint64_t req;
    dp_span_t id;   /* DP_BATCH_ID_SIZE lowercase hex characters */
    dp_span_t name; /* 0 to DP_MAX_NAME bytes */
    dp_span_t fn;   /* the batch's function, for listing: 1 to DP_MAX_NAME bytes */
    uint32_t flags; /* DP_BATCH_DISCARD */
    uint32_t ttl_s; /* 0: the broker's --result-ttl */
    uint64_t total;
    dp_list_t tasks; /* walk with dp_list_next_task (DP_CMD_SUBMIT) */
} dp_batch_add_t;

/*  BATCH-GET [req, id, from, max, wait_ms], BATCH-ACK [req, id, upto],
    BATCH-LIST [req], BATCH-CANCEL [req, id]. */
typedef struct {
    uint64_t req;
    dp_span_t id;     /* empty for LIST */
    uint64_t from;    /* GET: the first index wanted; ACK: results below it collected */
    uint32_t max;     /* GET: most results in the reply, 1 to DP_MAX_BATCH */
    uint32_t wait_ms; /* GET: how long to wait for one, at most DP_MAX_BATCH_WAIT_MS */
} dp_batch_req_t;

/*  A batch as BATCH-REPLY describes it. */
typedef struct {
    dp_span_t id;
    dp_span_t name;
    dp_span_t fn;
    uint64_t total; /* 0 until sealed */
    uint64_t added;
    uint64_t done; /* tasks ended, failed ones included */
    uint64_t failed;
    uint64_t collected; /* results below this index were collected (deleted) */
    uint64_t age_ms;
    uint32_t flags; /* DP_BATCH_DISCARD, _SEALED, _CANCELLED */
    uint32_t ttl_s;
} dp_batch_info_t;

/*  BATCH-REPLY [req, code, message, batches, results]: code 0, or a
    dpool_error_t code and message; batches (infos, walk with
    dp_list_next_batch) and results (RESULT entries whose id is the
    task's index, in order, walk with dp_list_next_result). */
typedef struct {
    uint64_t req;
    int32_t code;
    dp_span_t message;
    dp_list_t batches;
    dp_list_t results;
} dp_batch_reply_t;

/*  PROGRESS (id is the job's ref) and WORK-STATUS (id is the task's seq). */
typedef struct {
    uint64_t id;
    dp_span_t value; /* one msgpack object, at most DP_MAX_PROGRESS bytes */
} dp_progress_t;

/*  A decoded message. */
typedef struct {
    dp_cmd_t cmd;
    union {
        dp_hello_t hello;
        dp_welcome_t welcome;
        dp_ready_t ready;
        dp_cancel_t cancel;
        dp_error_t error;
        dp_list_t list;   /* SUBMIT, DISPATCH: tasks; RESULT, DONE: results */
        dp_span_t status; /* STATUS_REPLY: the msgpack map */
        /*  QUEUE_OPEN, _PUT, _GET and _SIZE; QUEUE_REPLY; QUEUE_ACK;
            PROGRESS and WORK_STATUS. */
        dp_queue_req_t queue;
        dp_queue_reply_t queue_reply;
        dp_queue_ack_t queue_ack;
        dp_progress_t progress;
        dp_attach_t attach;
        dp_batch_add_t batch_add;
        dp_batch_req_t batch;
        dp_batch_reply_t batch_reply;
    } u;
} dp_msg_t;

/*  Writes the header frame for cmd into out. */
void
dp_header_encode (uint8_t out[DP_HEADER_SIZE], dp_cmd_t cmd);

/*  dp_header_encode in another version (an ERROR to a peer of that version). */
void
dp_header_encode_version (uint8_t out[DP_HEADER_SIZE], uint8_t version, dp_cmd_t cmd);

/*  Checks a header frame. Returns DP_OK and the command, or the reason.
    Accepts DP_VERSION, and DP_VERSION_1 for ERROR only. */
dp_reason_t
dp_header_decode (const void *data, size_t size, dp_cmd_t *cmd);

/*  The version byte of a header frame that has dpool's signature; 0 if it
    has none (too short, another signature). */
uint8_t
dp_header_version (const void *data, size_t size);

/*  Validates the header and the whole body of one message and fills msg.
    Returns DP_OK, or the reason it is malformed; never reads outside the
    two buffers, which must outlive msg. */
dp_reason_t
dp_msg_decode (const void *header, size_t header_size, const void *body, size_t body_size,
               dp_msg_t *msg);

/*  dp_msg_decode of a message with nframes payload frames after its body
    (at most DP_MAX_FRAMES). Each frame must belong to one framed entry of
    a list, in order, and hold exactly one msgpack item within the limits
    an inline one has; otherwise the message is malformed (DP_EFRAMES for a
    count that does not match, DP_EBODY or DP_ELIMIT for the item). The
    frames' spans must outlive msg. */
dp_reason_t
dp_msg_decode_frames (const void *header, size_t header_size, const void *body, size_t body_size,
                      const dp_span_t *frames, uint32_t nframes, dp_msg_t *msg);

/*  Iterators over a list of a validated message: return true and the next
    entry, or false at the end. */
bool
dp_list_next_task (dp_list_t *self, dp_cmd_t cmd, dp_task_t *task);
bool
dp_list_next_result (dp_list_t *self, dp_result_t *result);
bool
dp_list_next_uint (dp_list_t *self, uint64_t *value);
bool
dp_list_next_str (dp_list_t *self, dp_span_t *value);
bool
dp_list_next_batch (dp_list_t *self, dp_batch_info_t *info);

/*  True if span equals the NUL-terminated string. */
bool
dp_span_eq (dp_span_t span, const char *string);

/*  ---------------------------------------------------------------------------
    Encoding. A writer is a msgpack buffer reused from message to message;
    every dp_encode_* call starts a new body. Allocation failure is sticky:
    dp_writer_ok tells whether the body is whole.
*/
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    size_t list_at; /* offset of the open list's array32 header */
    uint32_t list_count;
    bool failed;
    size_t reserve; /* bytes the next body starts with, if the buffer was taken */
} dp_writer_t;

void
dp_writer_init (dp_writer_t *self);
void
dp_writer_fini (dp_writer_t *self);
/*  Takes the body's buffer away from the writer (the caller frees it with
    free()) and returns it, its size in *size. The writer's next body starts
    in a fresh buffer of that size, so that a run of large bodies does not
    grow one from scratch each time. NULL (and the writer unchanged) if the
    body is not whole. */
void *
dp_writer_take (dp_writer_t *self, size_t *size);
bool
dp_writer_ok (const dp_writer_t *self);
const void *
dp_writer_data (const dp_writer_t *self);
size_t
dp_writer_size (const dp_writer_t *self);

/*  Swaps the bodies (and buffers) of two writers. A writer must not be
    copied by value: its packer points into it. */
void
dp_writer_swap (dp_writer_t *self, dp_writer_t *other);

/*  Starts a new empty body, for a caller that packs it with self->pk itself
    (the broker's status map). */
void
dp_writer_reset (dp_writer_t *self);

void
dp_encode_hello (dp_writer_t *self, const uint8_t session[DP_SESSION_SIZE], const char *name);
/*  HELLO for a lane (1 to DP_MAX_LANES) of the session: the third field.
    Lane 0 is the session's main connection and encodes as dp_encode_hello,
    with the two fields every broker knows. */
void
dp_encode_hello_lane (dp_writer_t *self, const uint8_t session[DP_SESSION_SIZE], const char *name,
                      uint32_t lane);
void
dp_encode_welcome (dp_writer_t *self, uint32_t heartbeat_ms, uint32_t expiry_ms,
                   const char *broker, uint32_t workers);
/*  WELCOME to a worker with its lane token (PROTOCOL.md 5.7) as the fifth
    field; token 0 encodes as dp_encode_welcome, without it. */
void
dp_encode_welcome_token (dp_writer_t *self, uint32_t heartbeat_ms, uint32_t expiry_ms,
                         const char *broker, uint32_t workers, uint64_t token);
/*  ATTACH [token]: a worker's lane asks to carry that worker's jobs. */
void
dp_encode_attach (dp_writer_t *self, uint64_t token);
void
dp_encode_ready (dp_writer_t *self, const char *name, uint64_t pid, const char *host,
                 uint32_t credit, const char *const *functions, size_t nfunctions);
void
dp_encode_cancel (dp_writer_t *self, bool all, const uint64_t *seqs, size_t nseqs);
void
dp_encode_error (dp_writer_t *self, int32_t code, const char *message);
/*  HEARTBEAT, BYE and STATUS have an empty array as body. */
void
dp_encode_empty (dp_writer_t *self);

/*  Queue requests. name is a C string (cut at DP_MAX_NAME bytes); value is
    one packed msgpack object. */
void
dp_encode_queue_open (dp_writer_t *self, uint64_t req, const char *name, uint32_t maxsize);
void
dp_encode_queue_put (dp_writer_t *self, uint64_t req, const char *name, const void *value,
                     size_t size, int32_t timeout_ms, uint32_t maxsize);
void
dp_encode_queue_get (dp_writer_t *self, uint64_t req, const char *name, int32_t timeout_ms);
void
dp_encode_queue_size (dp_writer_t *self, uint64_t req, const char *name);

/*  A successful QUEUE-REPLY: value (one packed object) and its token for a
    GET, or NULL (packed as nil) and token 0 for the other requests. */
void
dp_encode_queue_reply (dp_writer_t *self, uint64_t req, uint32_t size, uint32_t maxsize,
                       const void *value, size_t value_size, uint64_t token);
/*  A failed QUEUE-REPLY: code (not 0) and a message (cut at DP_MAX_ERROR). */
void
dp_encode_queue_fail (dp_writer_t *self, uint64_t req, int32_t code, uint32_t size,
                      uint32_t maxsize, const char *message);
void
dp_encode_queue_ack (dp_writer_t *self, uint64_t token, bool accept);

/*  PROGRESS or WORK-STATUS: id and one packed msgpack object. */
void
dp_encode_progress (dp_writer_t *self, uint64_t id, const void *value, size_t size);

/*  Batch requests. id is DP_BATCH_ID_SIZE hex characters. BATCH-ADD's
    tasks follow as a list: dp_list_open, dp_list_add_task (DP_CMD_SUBMIT,
    the task's id its index) for each, then dp_list_end. */
void
dp_encode_batch_add (dp_writer_t *self, uint64_t req, const char *id, const char *name,
                     const char *fn, uint32_t flags, uint32_t ttl_s, uint64_t total);
void
dp_encode_batch_get (dp_writer_t *self, uint64_t req, const char *id, uint64_t from, uint32_t max,
                     uint32_t wait_ms);
void
dp_encode_batch_ack (dp_writer_t *self, uint64_t req, const char *id, uint64_t upto);
void
dp_encode_batch_list (dp_writer_t *self, uint64_t req);
void
dp_encode_batch_cancel (dp_writer_t *self, uint64_t req, const char *id);

/*  BATCH-REPLY: begin with its req, code and message (NULL: none); then
    the list of batches (dp_list_open, dp_list_add_batch..., dp_list_end),
    then the list of results (dp_list_open, dp_list_add_result...,
    dp_list_end). */
void
dp_encode_batch_reply (dp_writer_t *self, uint64_t req, int32_t code, const char *message);
void
dp_list_add_batch (dp_writer_t *self, const dp_batch_info_t *info);

/*  List bodies (SUBMIT, DISPATCH, RESULT, DONE): begin, add entries, end.
    A list holds at most DP_MAX_BATCH entries. */
void
dp_list_begin (dp_writer_t *self);
/*  Opens a list inside the body being written (a batch message's), where
    dp_list_begin starts a body that is a list. One list is open at a time. */
void
dp_list_open (dp_writer_t *self);
void
dp_list_add_task (dp_writer_t *self, dp_cmd_t cmd, const dp_task_t *task);
/*  dp_list_add_task for a task whose arguments the caller sends as the
    message's next payload frame: args nil, flags with DP_TASK_FRAMED. */
void
dp_list_add_task_framed (dp_writer_t *self, dp_cmd_t cmd, const dp_task_t *task);
/*  Adds a result with its code and value, one packed msgpack object: the
    task's result when code is 0, its message (a str) otherwise. */
void
dp_list_add_result (dp_writer_t *self, uint64_t id, int32_t code, const void *value, size_t size);
/*  dp_list_add_result for DONE, with how long the task ran (microseconds),
    which the broker uses to decide how much work to queue at each worker. */
void
dp_list_add_result_run (dp_writer_t *self, uint64_t id, int32_t code, const void *value,
                        size_t size, uint32_t run_us);
/*  dp_list_add_error for DONE, with how long the task ran. */
void
dp_list_add_error_run (dp_writer_t *self, uint64_t id, int32_t code, const char *message,
                       uint32_t run_us);

/*  A successful result whose value the caller sends as the message's next
    payload frame: [id, 0, nil, run_us, true]. */
void
dp_list_add_result_framed (dp_writer_t *self, uint64_t id, uint32_t run_us);

/*  Adds a failed result with its code and message (truncated to DP_MAX_ERROR). */
void
dp_list_add_error (dp_writer_t *self, uint64_t id, int32_t code, const char *message);
uint32_t
dp_list_count (const dp_writer_t *self);

/*  Writes the entries of list, a validated SUBMIT, DISPATCH, RESULT or DONE
    of command cmd, as a body of their own with every argument and value
    inline (copied out of its payload frame): for a hop that cannot carry
    the frames on. Walks list to its end. */
void
dp_list_inline (dp_writer_t *self, dp_cmd_t cmd, dp_list_t *list);
void
dp_list_end (dp_writer_t *self);

#endif

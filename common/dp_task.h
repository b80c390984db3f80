/*  dp_task.h - one call of a task function, with its checks.

    A task function gets a dpool_task_t (what dpool_task_fail, _hint, _name
    and _attempt read) and writes its result with a msgpack packer. This
    module defines that struct and makes the call: it gives the function a
    packer that appends to a buffer, then checks what it did. A call always
    leaves exactly one msgpack object behind it: the function's result when it
    succeeded and wrote exactly one object, or otherwise a str saying why it
    failed. The worker engine runs every job through dp_task_call; tests use it
    to run functions in process.
*/
#ifndef DP_TASK_H_INCLUDED
#define DP_TASK_H_INCLUDED

#include "dp_proto.h"
#include "dpool.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

/*  Largest result one call may leave: a DONE message carrying it must stay
    under DP_MAX_MSG_SIZE, which the broker's socket enforces. */
#define DP_TASK_MAX_RESULT (DP_MAX_MSG_SIZE - 64 * 1024)

/*  A request to a named queue, as dpool_queue_* make it (dp_queue.h). */
typedef struct {
    dp_cmd_t cmd;       /* DP_CMD_QUEUE_OPEN, _PUT, _GET or _SIZE */
    const char *name;   /* 1 to DP_MAX_NAME bytes */
    const void *value;  /* PUT: one packed msgpack object */
    size_t size;        /* its bytes */
    int32_t timeout_ms; /* PUT, GET: -1 wait without limit, 0 not at all */
    uint32_t maxsize;   /* OPEN, PUT: 0 none */
} dp_qcall_t;

/*  The broker's answer to it: code 0, or a dpool_error_t with a message;
    the queue's size and maxsize after the request. */
typedef struct {
    int32_t code;
    uint32_t size;
    uint32_t maxsize;
    char message[DP_MAX_ERROR + 1];
} dp_qanswer_t;

/*  How a running task reaches the broker: filled by whoever runs the
    task (the worker engine) and NULL for a function called in process.

    queue sends call and waits for the answer (up to the call's timeout
    and DP_QUEUE_SLACK_MS more): it returns 0 with answer filled,
    the value a GET got appended to out and acknowledged to the broker;
    or -1 with answer->code and message set (DPOOL_ETIMEOUT when the
    broker did not answer in time, DPOOL_EUNREACHABLE when the connection
    was lost and the request may or may not have been carried out,
    DPOOL_ENOMEM). A value is never lost: one got and not appended goes
    back to the broker's queue.

    progress reports one packed msgpack object as the task's progress;
    it returns 0 (reports are rate-limited and may be coalesced). */
typedef struct {
    int (*queue) (void *arg, const dp_qcall_t *call, dp_qanswer_t *answer, msgpack_sbuffer *out);
    int (*progress) (void *arg, const void *value, size_t size);
    void *arg;
} dp_task_link_t;

/*  What a task function sees of its task. Filled by dp_task_init; the
    message is set by dpool_task_fail. */
struct _dpool_task_t {
    char name[DP_MAX_NAME + 1]; /* the function's name, NUL-terminated */
    void *hint;                 /* the hint it was registered with */
    unsigned attempt;           /* 1 for the first run */
    bool failed;                /* dpool_task_fail was called */
    char message[DP_MAX_ERROR + 1];
    /*  The way to the broker (see above), or NULL; and the queue handles
        the task opened, closed when it returns (dp_queue.h). */
    const dp_task_link_t *link;
    dpool_queue_t *queues;
};

/*  Prepares task for calls of the function registered as name (len bytes,
    at most DP_MAX_NAME; longer is truncated) with its hint and the job's
    attempt number. The link is left NULL, with no queue open. */
void
dp_task_init (dpool_task_t *task, const char *name, size_t len, void *hint, unsigned attempt);

/*  Calls fn (task, args, packer) once, the packer appending to out. Returns
    DPOOL_OK when fn returned 0 and appended exactly one complete msgpack
    object of at most DP_TASK_MAX_RESULT bytes: out then holds it after what
    it held before. Otherwise discards what fn appended, appends instead a
    msgpack str with the reason, and returns DPOOL_EFAILED: the message given
    to dpool_task_fail, "task failed" if fn returned non-zero without one, or
    a message naming the mistake if fn "succeeded" with no object, several,
    an incomplete one, or one too large. Returns DPOOL_ENOMEM if out could
    not grow even for the message (out is then as before the call). */
int
dp_task_call (dpool_task_t *task, dpool_fn_t *fn, const msgpack_object *args,
              msgpack_sbuffer *out);

/*  Appends a msgpack str of at most DP_MAX_ERROR bytes (cut at a UTF-8
    character boundary) to out. Returns 0, or -1 if out could not grow. */
int
dp_task_pack_message (msgpack_sbuffer *out, const char *message);

/*  (dp_queue.c) Closes the queue handles the task opened and still holds.
    dp_task_call does it when the function returns. */
void
dp_task_close_queues (dpool_task_t *task);

#endif

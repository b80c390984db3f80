/*  dp_worker_int.h - the worker engine's private parts, shared by its three
    files and by nothing else.

    A worker process runs two threads (dp_worker.h says what they do):
    - the I/O thread (dp_worker_io.c) owns the worker's main DEALER
      socket(s), every timer and the I/O state (dp_worker_io_t), from its
      start to its end;
    - the task thread (dp_worker_runner.c), the thread that called
      dp_worker_run, owns the jobs the broker handed over, the runner
      state (dp_worker_runner_t) and its lane: a DEALER of its own that it
      makes, uses and closes alone (PROTOCOL.md 5.7), on which the broker
      sends it jobs and it sends their results. It runs task functions one
      at a time. No thread touches the other's sockets;
    - dp_worker.c (lifecycle) sets up dp_worker_t on the calling thread,
      makes both states, starts the I/O thread, runs the task loop, and
      frees everything once the I/O thread has been joined.

    The threads talk only by message: two dp_chan queues, one each way, of
    notes (dp_note_t), an ownership hand-over of a dp_note_ctl_t copied by
    value and up to two frames, moved. Besides the queues, they share only
    dp_worker_t: its settings are written before the I/O thread starts and
    read-only after; busy, stopping and held are atomics.
*/
#ifndef DP_WORKER_INT_H_INCLUDED
#define DP_WORKER_INT_H_INCLUDED

#include "dp_chan.h"
#include "dp_proto.h"
#include "dp_worker.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

/*  What a note says; the arrow is its direction. */
typedef enum {
    DP_NOTE_JOBS = 1, /* I/O -> task: [ctl, DISPATCH header, DISPATCH body] */
    DP_NOTE_RESET,    /* I/O -> task: drop held jobs; ctl.epoch is the new epoch */
    DP_NOTE_STOP,     /* I/O -> task: stop; ctl.code 0 or why (dpool_error_t) */
    DP_NOTE_ARM,      /* task -> I/O: job ctl.ref started; it must end by ctl.deadline_ms */
    DP_NOTE_DONE,     /* task -> I/O: [ctl, DONE body]: ctl.count results of jobs of ctl.epoch;
                         when ctl.code is 1, job ctl.ref (the timed one) is among them */
    DP_NOTE_QUEUE,    /* task -> I/O: [ctl, body]: queue request ctl.ref, command ctl.code */
    DP_NOTE_QCANCEL,  /* task -> I/O: the task gave up waiting for request ctl.ref */
    DP_NOTE_QREPLY,   /* I/O -> task: [ctl, QUEUE-REPLY body] received in ctl.epoch */
    DP_NOTE_QACK,     /* task -> I/O: acknowledge token ctl.ref: taken if ctl.code, else not */
    DP_NOTE_PROGRESS, /* task -> I/O: [ctl, packed value]: progress of job ctl.ref */
    DP_NOTE_RETIRE,   /* task -> I/O: it ran max_tasks jobs (their results went before) */
    DP_NOTE_LANE,     /* I/O -> task: registration ctl.epoch has lane token ctl.ref */
    DP_NOTE_LANE_LOST /* task -> I/O: the broker forgot the lane of ctl.epoch: register again */
} dp_note_kind_t;

typedef struct {
    int kind; /* dp_note_kind_t */
    int32_t code;
    uint64_t epoch;
    uint64_t ref;
    int64_t deadline_ms;
    uint32_t timeout_ms;
    uint32_t count;
} dp_note_ctl_t;

/*  One message between the threads. Both frames are always initialised;
    kinds with fewer leave them empty. Whoever takes it from the queue owns
    it and frees it with dp_note_free. */
typedef struct {
    dp_chan_node_t node;
    dp_note_ctl_t ctl;
    zmq_msg_t frame[2];
} dp_note_t;

/*  What both threads know. The calling thread fills it before the I/O
    thread starts; after that only busy and stopping change. */
typedef struct {
    void *ctx;
    const char *endpoint;
    char name[DP_MAX_NAME + 1];
    char host[DP_MAX_NAME + 1];
    uint32_t credit;
    int heartbeat_ms;
    int expiry_ms;
    int sigfd;          /* SIGINT and SIGTERM; the I/O thread reads it */
    dp_chan_t *to_task; /* I/O -> task: the task thread waits on it, or polls its fd */
    dp_chan_t *to_io;   /* task -> I/O: the I/O thread polls its fd */
    dp_curve_t curve;
    int handshake_timeout_ms; /* 0: never give up */
    atomic_bool busy;         /* the task thread is running a job */
    atomic_bool stopping;     /* the I/O thread is stopping: start no job */
    bool leave_with_broker;   /* dp_worker_config_t's */
    bool notify_service;      /* likewise */
    int reach_ms;
    atomic_bool gone; /* leave_with_broker: the I/O thread stopped because the broker left */
    /*  Jobs of this process whose results have not gone out: the I/O
        thread adds those it passes on, the task thread those it takes on
        its lane, and takes off each it answers or drops. The I/O thread
        reads it to tell an idle worker (PROTOCOL.md 6). */
    atomic_uint held;
    /*  When the task thread last received a message on its lane (ms): proof
        that the broker is alive, which the I/O thread counts as hearing
        from it (jobs on the lane do not pass it by). */
    _Atomic int64_t lane_heard;
} dp_worker_t;

/*  Frees a note and its frames (a dp_chan drop function). */
void
dp_note_free (dp_chan_node_t *node);

/*  Puts a note of ctl and count frames (0 to 2, moved from frames) in
    chan; never blocks beyond the queue's lock. Out of memory for one note
    the threads cannot stay in step: the process leaves (_exit), and the
    broker gives its jobs to other workers. */
void
dp_note_send (dp_chan_t *chan, const dp_note_ctl_t *ctl, zmq_msg_t *frames, int count);

/*  Puts a note of ctl alone. */
void
dp_note_send_ctl (dp_chan_t *chan, const dp_note_ctl_t *ctl);

/*  Puts a note of ctl and one frame holding a copy of size bytes at data. */
void
dp_note_send_copy (dp_chan_t *chan, const dp_note_ctl_t *ctl, const void *data, size_t size);

/*  The I/O thread's state (dp_worker_io.c). Made and destroyed by the
    calling thread, before the I/O thread starts and after it was joined;
    used by the I/O thread alone in between. */
typedef struct dp_worker_io_t dp_worker_io_t;

/*  Makes the I/O state of worker (which it borrows). NULL if out of
    memory. */
dp_worker_io_t *
dp_worker_io_new (dp_worker_t *worker);

/*  Frees the I/O state; its sockets were closed when its thread ended.
    NULL is harmless; nulls the caller's pointer. */
void
dp_worker_io_destroy (dp_worker_io_t **self_p);

/*  True if the I/O thread gave up because its handshakes with the broker
    kept failing (dp_handshake.h); to read once it was joined. */
bool
dp_worker_io_refused (const dp_worker_io_t *self);

/*  The I/O thread's body (pthread_create's start routine, arg the
    dp_worker_io_t): connects, registers and serves until a signal, a
    retirement, a refusal or a fatal error, then sends DP_NOTE_STOP and
    returns NULL.
    Ends the process itself when a job runs past its deadline, or when it
    must stop while a job runs. */
void *
dp_worker_io_main (void *arg);

/*  The task thread's state (dp_worker_runner.c), used by the calling
    thread alone. */
typedef struct dp_worker_runner_t dp_worker_runner_t;

/*  Makes the runner of worker (which it borrows); max_tasks 0 is no limit.
    NULL if out of memory. */
dp_worker_runner_t *
dp_worker_runner_new (dp_worker_t *worker, int max_tasks);

/*  Frees the runner, its jobs and the notes it took but did not handle.
    NULL is harmless; nulls the caller's pointer. */
void
dp_worker_runner_destroy (dp_worker_runner_t **self_p);

/*  Runs jobs as they come until the I/O thread says stop (or stopping is
    set). Blocks; returns 0 or why it stopped (a dpool_error_t). */
int
dp_worker_runner_run (dp_worker_runner_t *self);

/*  True once the runner ran max_tasks jobs. */
bool
dp_worker_runner_retired (const dp_worker_runner_t *self);

#endif

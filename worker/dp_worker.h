/*  dp_worker.h - the worker engine: one worker process's connection to a
    broker and the loop that runs its tasks.

    A worker process has two threads and uses plain libzmq only (no CZMQ
    globals, so it is safe in a child forked from a program that already
    uses CZMQ). The calling thread (the task thread) runs task functions one
    at a time; an I/O thread owns the worker's main DEALER socket(s) and
    every timer: it registers (READY), reads every message from the broker
    on it, sends the task thread's progress and queue requests (and its
    results until it has a lane), heartbeats even while a long task runs,
    and reconnects with backoff when the broker goes silent. Once
    registered with a broker that hands out lane tokens, the task thread
    opens a DEALER of its own, its lane (docs/PROTOCOL.md 5.7), and takes
    its jobs and sends their results there itself. Each socket has one
    owning thread; the two threads talk only through two message queues
    (dp_chan), one each way.

    What the worker does, event by event (docs/PROTOCOL.md, 5.2 and 6):
    - a handshake that fails while registering (a CURVE key the broker does
      not admit, the wrong server key, CURVE on one side only): logged at
      error level with its likely cause, at once and then at most every
      DP_HANDSHAKE_LOG_MS; after handshake_timeout_ms of failures with no
      handshake succeeding, the worker leaves and dp_worker_run returns
      DP_WORKER_REFUSED (dp_handshake.h). No broker at all is no failure:
      the worker waits for one, with a warning now and then;
    - start, broker silent past expiry, or ERROR ESTATE: forgets the jobs it
      held and sends READY (on a fresh socket, except after ESTATE), again
      every DP_RECONNECT_MS doubling to DP_RECONNECT_MAX_MS until WELCOME;
      the WELCOME's heartbeat_ms and expiry_ms replace the config's. Each
      retry uses a fresh socket, but the previous attempt's stays open until
      the next retry, so a WELCOME slower than the backoff still counts; a
      socket that sent READY is closed after a BYE, so that the broker takes
      back at once any job it gave to a registration that was abandoned;
    - WELCOME while registered (the broker answered a second READY): the
      broker took back the jobs it had given, so they are forgotten here;
    - BYE from the broker (it is shutting down): forgets its jobs, closes the
      socket and registers again after the backoff;
    - silence on its own side for heartbeat_ms: sends HEARTBEAT, also while
      a task runs;
    - WELCOME with a token: the task thread opens its lane and sends ATTACH;
      once the lane is welcomed, jobs and results travel on it. A refused
      ATTACH leaves this registration without a lane; an ERROR on the lane
      after its WELCOME makes the worker register again;
    - results: sent as DONE batches, flushed when the task thread has no job
      left, at 64 results, or 1 ms after the first unsent one, so the
      result of a slow task leaves as soon as it is ready; on the lane,
      except a batch with a timed job or one that reported progress, which
      goes through the I/O thread;
    - a job past its timeout_ms: sends DONE [ref, EDEADLINE, message] and
      BYE, waits up to 1 s for the broker's BYE (proof that both arrived),
      and ends the process with _exit (DP_WORKER_EXIT_DEADLINE): the task
      cannot be stopped any other way, and the supervisor starts a fresh
      process;
    - leave_with_broker (an SPMD rank, which lives as long as its rank 0):
      a BYE from the broker, or its silence past expiry once registered
      (also while registering again), ends the worker: dp_worker_run
      returns DP_WORKER_BROKER_GONE (a running task is abandoned with the
      process, which ends with DP_WORKER_EXIT_GONE);
    - reach_ms: no WELCOME within reach_ms of the start ends the worker:
      dp_worker_run fails with DPOOL_EUNREACHABLE, after logging which
      endpoint it waited for;
    - SIGINT or SIGTERM: sends any unsent results and BYE, waits up to 1 s
      for the broker's BYE, and stops: dp_worker_run returns 0, or, when a
      task is still running, the process ends with _exit (0) (the broker
      has the job back). A second signal while waiting stops at once. While
      still registering, it sends BYE on its sockets without waiting (a
      READY may have registered it) and stops;
    - a queue request from the running task (dpool_task_queue_open and the
      dpool_queue_* calls on its handles): sent to the broker, or held until
      registered; its QUEUE-REPLY goes to the task thread, which
      acknowledges a value got (QUEUE-ACK) once it holds it, or refuses it
      (the value goes back to the front of its queue) when it gave up
      waiting. A GET sent before a new registration is sent again; any
      other request then fails with DPOOL_EUNREACHABLE (it may or may not
      have been carried out), and a reply to a request of an older
      registration is dropped: the broker took its value back when the
      worker registered again;
    - progress from the running task (dpool_task_progress): the task thread
      passes on at most one report per DP_WORKER_PROGRESS_PIPE_MS and this
      thread sends at most one PROGRESS per DP_PROGRESS_MS, the latest report
      winning; a report held back goes out before the job's result;
    - max_tasks: after the task thread has run that many jobs it sends the
      last result, says BYE on its lane and waits up to 1 s for the
      answer, then tells the I/O thread, which leaves as on a signal (BYE,
      so the broker takes back any job it held without counting a death)
      and dp_worker_run returns DP_WORKER_RETIRED.

    Before all this, a configured initializer runs once on the calling
    thread (before READY, so a worker whose initializer failed takes no
    task): dp_worker_run then logs why and returns DP_WORKER_INIT_FAILED.
*/
#ifndef DP_WORKER_H_INCLUDED
#define DP_WORKER_H_INCLUDED

#include "dp_curve.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  Exit status of a worker process that killed itself because a task ran
    past its timeout (the same as timeout(1)'s). */
#define DP_WORKER_EXIT_DEADLINE 124

/*  Exit statuses of a supervised worker process that retired after
    max_tasks jobs, and of one whose initializer failed. */
#define DP_WORKER_EXIT_RETIRED 122
#define DP_WORKER_EXIT_INIT    123

/*  Exit status of a supervised worker process that gave up because its
    handshakes with the broker kept failing (DP_WORKER_REFUSED). */
#define DP_WORKER_EXIT_REFUSED 119
/*  Exit statuses of a supervised worker process of leave_with_broker whose
    broker left, and of one that reached no broker within reach_ms. */
#define DP_WORKER_EXIT_GONE        121
#define DP_WORKER_EXIT_UNREACHABLE 120

/*  What dp_worker_run returns besides 0 (stopped by a signal) and -1. */
#define DP_WORKER_RETIRED     1 /* it ran max_tasks jobs and left */
#define DP_WORKER_INIT_FAILED 2 /* its initializer failed; it never registered */
#define DP_WORKER_REFUSED     3 /* handshakes failed for handshake_timeout_ms */
#define DP_WORKER_BROKER_GONE 4 /* leave_with_broker: the broker left or went silent */

/*  How long a worker whose handshakes with the broker fail, and none
    succeeds, keeps trying before it gives up (dp_handshake.h). */
#define DP_WORKER_HANDSHAKE_TIMEOUT_MS 30000

/*  A worker that registers and hears nothing (no broker there, and no
    handshake failing) warns after this long, and again at this interval
    times DP_WORKER_WAIT_WARN_FACTOR. */
#define DP_WORKER_WAIT_WARN_MS     10000
#define DP_WORKER_WAIT_WARN_FACTOR 6

/*  The task thread passes on one progress report at most this often. */
#define DP_WORKER_PROGRESS_PIPE_MS 10

/*  How long a leaving worker waits for the broker's answer to its BYE. */
#define DP_WORKER_BYE_WAIT_MS 1000

/*  DONE batching: flush at this many results, or this long after the first
    result not yet sent. */
#define DP_WORKER_DONE_BATCH    64
#define DP_WORKER_DONE_DELAY_MS 1

/*  Linger of the DEALER socket when it is closed. */
#define DP_WORKER_LINGER_MS 100

typedef struct {
    const char *endpoint; /* broker to connect to */
    const char *name;     /* shown in status; NULL: host:pid */
    int credit;           /* tasks held at once; 0: DP_DEFAULT_CREDIT */
    int heartbeat_ms;     /* until WELCOME says otherwise; 0: DP_HEARTBEAT_MS */
    int expiry_ms;        /* until WELCOME says otherwise; 0: DP_EXPIRY_MS */
    /*  Run first (see above): a registered function's name, or NULL, and
        its packed msgpack arguments (NULL: nil). */
    const char *initializer;
    const void *initargs;
    size_t initargs_size;
    /*  Jobs to run before retiring; 0: no limit. */
    int max_tasks;
    /*  Give up after handshakes failed this long with none succeeding;
        0: DP_WORKER_HANDSHAKE_TIMEOUT_MS; negative: never. */
    int handshake_timeout_ms;
    /*  CURVE keys for the connection (curve.on false: plain). */
    dp_curve_t curve;
    /*  If not 0: once the I/O thread runs (so that the worker can leave
        cleanly), the signal this process gets when the thread that forked
        it ends (PR_SET_PDEATHSIG, set on the calling thread, which must be
        the one that was forked). A supervised worker process asks for
        SIGTERM (dp_supervisor.c says why). */
    int parent_death_signal;
    /*  Leave when the broker leaves or goes silent, rather than register
        again (see above); and how long to wait for the first WELCOME
        (0: without limit). */
    bool leave_with_broker;
    int reach_ms;
    /*  dpool-worker under a service manager: the process's first WELCOME
        tells it READY=1 (dp_service_notify), and a supervisor asked to stop
        tells it STOPPING=1. Never for a library's workers, which must not
        speak for their host program. */
    bool notify_service;
} dp_worker_config_t;

/*  Fills config with zeros (the defaults) and DP_DEFAULT_CONNECT. */
void
dp_worker_config_init (dp_worker_config_t *config);

/*  Runs the worker loop in this process until SIGINT/SIGTERM or a fatal
    error (an endpoint that cannot be connected, no memory). Returns 0 on a
    clean stop, DP_WORKER_RETIRED after max_tasks jobs, DP_WORKER_INIT_FAILED
    if the initializer failed, DP_WORKER_REFUSED if its handshakes with the
    broker kept failing, DP_WORKER_BROKER_GONE when its broker left
    (leave_with_broker), -1 on failure (dpool_errno says why: DPOOL_EUNREACHABLE
    when no broker answered within reach_ms). Never
    returns when a task runs past its timeout (see above).

    Signals: while it runs, SIGINT and SIGTERM are blocked in the calling
    thread (and so in the threads it starts) and read from a signalfd; the
    caller's signal mask is restored on return. Other threads of the
    process, if any, should block them too, or the signals may go to them.
    Task functions run on the calling thread. */
int
dp_worker_run (const dp_worker_config_t *config);

#endif

/*  dp_testfake.h - a fake broker for tests of dpool-worker processes: a
    ROUTER socket in the test that speaks DPP/1 through proto/, so that a
    test can register real workers and drive them message by message, with
    the results of the jobs it dispatches gathered by ref. Shared by
    test_worker_engine.c, test_worker_jobs.c, test_worker_supervisor.c and
    test_worker_lane.c.

    Every call here fails the test (dp_test_fail) rather than return an
    error, unless it says otherwise. One thread, the test's, uses a fake.
*/
#ifndef DP_TESTFAKE_H_INCLUDED
#define DP_TESTFAKE_H_INCLUDED

#include "dp_proto.h"
#include "dp_wire.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DP_TESTFAKE_LONG_EXPIRY  60000 /* expiry_ms announced by a fake that does not beat */
#define DP_TESTFAKE_WAIT_MS      5000  /* how long a step may take before the test fails */
#define DP_TESTFAKE_MAX_WELCOMED 64
#define DP_TESTFAKE_MAX_RESULTS  256 /* refs of the results gathered: 0 to this - 1 */

typedef struct {
    void *ctx;
    void *router;
    dp_writer_t writer; /* the body of the next message to send */
    /*  Routing ids of the workers it registered (see dp_testfake_welcome). */
    uint8_t welcomed[DP_TESTFAKE_MAX_WELCOMED][256];
    size_t welcomed_size[DP_TESTFAKE_MAX_WELCOMED];
    int nwelcomed;
    /*  The worker registered last: where DISPATCH and the like go. */
    uint8_t current[256];
    size_t current_size;
    uint64_t current_pid;
    uint64_t pings;
} dp_testfake_t;

/*  One message from a worker, decoded; rid is a copy of its routing id.
    Starts zeroed ({0}); dp_testfake_release lets go of what it holds. */
typedef struct {
    dp_wire_msg_t wire;
    dp_msg_t m;
    uint8_t rid[256];
    size_t rid_size;
    bool held;
} dp_testfake_msg_t;

/*  A job to dispatch: args are packed msgpack bytes. */
typedef struct {
    uint64_t ref;
    const char *fn;
    const char *args;
    size_t args_size;
    uint32_t timeout_ms;
    uint32_t flags;
} dp_testfake_job_t;

/*  Results gathered from DONE messages, by ref. */
typedef struct {
    int32_t code[DP_TESTFAKE_MAX_RESULTS];
    msgpack_object value[DP_TESTFAKE_MAX_RESULTS];
    bool seen[DP_TESTFAKE_MAX_RESULTS];
    char *bytes[DP_TESTFAKE_MAX_RESULTS]; /* the values' bytes, which the objects point into */
    int count;                            /* results taken */
    int messages;                         /* DONE messages they came in */
    msgpack_zone zone;
} dp_testfake_results_t;

/*  Binds a fresh fake broker, in a ZeroMQ context of its own, to endpoint. */
void
dp_testfake_start (dp_testfake_t *fake, const char *endpoint);

/*  Closes the fake's socket and context. */
void
dp_testfake_stop (dp_testfake_t *fake);

/*  Lets go of the message got holds, if any. */
void
dp_testfake_release (dp_testfake_msg_t *got);

/*  Receives the next message, HEARTBEAT included, within timeout_ms into
    got; false if none came. Every message a worker sends must be well
    formed. */
bool
dp_testfake_recv (dp_testfake_t *fake, dp_testfake_msg_t *got, int timeout_ms);

/*  Receives until a cmd arrives, within timeout_ms. Skips HEARTBEATs, and
    the READY and BYE of registration attempts it did not welcome (a worker
    retrying READY on a fresh socket, then closing the one that lost). Any
    other command fails the test, at file:line. */
void
dp_testfake_expect (dp_testfake_t *fake, dp_testfake_msg_t *got, dp_cmd_t cmd, int timeout_ms,
                    const char *file, int line);

#define EXPECT(fake, got, cmd)                                                                    \
    dp_testfake_expect ((fake), (got), (cmd), DP_TESTFAKE_WAIT_MS, __FILE__, __LINE__)

/*  Sends the writer's body as cmd to the worker registered last. Returns 0,
    or -1 with errno (EHOSTUNREACH: that socket is gone). */
int
dp_testfake_try_send (dp_testfake_t *fake, dp_cmd_t cmd);

/*  The same, and the test fails if it cannot. */
void
dp_testfake_send (dp_testfake_t *fake, dp_cmd_t cmd);

/*  Sends the writer's body as cmd to the peer with routing id rid; the
    test fails if it cannot. */
void
dp_testfake_send_to (dp_testfake_t *fake, const uint8_t *rid, size_t rid_size, dp_cmd_t cmd);

/*  True if got came from the worker registered last. */
bool
dp_testfake_from_current (const dp_testfake_t *fake, const dp_testfake_msg_t *got);

/*  Registers the worker whose READY is in got (or the next READY) the way a
    broker would, and makes sure it took: WELCOME, then a ping job (echo)
    whose DONE proves that the worker adopted that socket. A worker that
    retried READY on a fresh socket meanwhile may drop the welcomed one (a
    send that fails, or its BYE; slow machines, valgrind): then the next
    READY of the same process is taken. The worker becomes fake->current;
    got is left empty. */
void
dp_testfake_welcome (dp_testfake_t *fake, dp_testfake_msg_t *got, uint32_t heartbeat_ms,
                     uint32_t expiry_ms);

/*  Answers a worker's BYE (in to). The worker waits only so long for it,
    and may be gone already: that is no failure. */
void
dp_testfake_reply_bye (dp_testfake_t *fake, const dp_testfake_msg_t *to);

/*  Sends the jobs, in one DISPATCH, to the worker registered last. */
void
dp_testfake_dispatch (dp_testfake_t *fake, const dp_testfake_job_t *jobs, size_t count);

/*  A READY's pid (the test fails if got is no READY), and whether it offers
    fn. */
uint64_t
dp_testfake_ready_pid (const dp_testfake_msg_t *got);
bool
dp_testfake_ready_offers (const dp_testfake_msg_t *got, const char *fn);

/*  Makes results empty, and frees what they hold. */
void
dp_testfake_results_init (dp_testfake_results_t *results);
void
dp_testfake_results_fini (dp_testfake_results_t *results);

/*  Takes the entries of the DONE in got into results; each ref must come
    once, and be below DP_TESTFAKE_MAX_RESULTS. Returns how many it took. */
int
dp_testfake_results_take (dp_testfake_results_t *results, dp_testfake_msg_t *got);

/*  Receives DONEs (dp_testfake_expect) until count results are in. */
void
dp_testfake_results_wait (dp_testfake_t *fake, dp_testfake_msg_t *got,
                          dp_testfake_results_t *results, int count, const char *file, int line);

/*  Starts a fake broker on a fresh ipc endpoint and a dpool-worker with
    one process and extra options (as dp_test_workers_logged), and waits for
    that process's READY (in got). Returns the supervisor's pid. */
pid_t
dp_testfake_one_worker (dp_testfake_t *fake, dp_testfake_msg_t *got, const char *const *extra);

/*  Stops the supervisor with SIGTERM, answering its workers' BYEs, and
    checks that it ends with status 0 within the grace period. */
void
dp_testfake_stop_workers (dp_testfake_t *fake, pid_t supervisor);

/*  The end of a case: releases got, stops the supervisor
    (dp_testfake_stop_workers), then the fake. */
void
dp_testfake_finish (dp_testfake_t *fake, dp_testfake_msg_t *got, pid_t supervisor);

#endif

/*  dp_testbroker.h - the broker under test and hand-made peers that drive
    it message by message, shared by test_broker.c and test_broker_faults.c.

    Each peer is a real DEALER socket speaking DPP through proto/
    (dp_testpeer.h). dp_testbroker_main starts one broker for the case it
    runs (with the case's .data as extra broker arguments), runs the case,
    and checks that the broker then stops cleanly on SIGTERM. Every call
    here fails the test (dp_test_fail) rather than return an error.
*/
#ifndef DP_TESTBROKER_H_INCLUDED
#define DP_TESTBROKER_H_INCLUDED

#include "dp_proto.h"
#include "dp_testpeer.h"
#include "dp_testutil.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*  The broker of the running case, and the ZeroMQ context of its peers. */
extern dp_test_broker_t dp_testbroker_broker;
extern void *dp_testbroker_ctx;

/*  A task's args: a packed small int. */
extern const uint8_t dp_testbroker_args[1];

/*  A client whose session id is tag repeated, welcomed over tcp. */
dp_testpeer_t *
dp_testbroker_client (uint8_t tag);

/*  A worker offering fns with credit, welcomed over ipc. */
dp_testpeer_t *
dp_testbroker_worker (const char *const *fns, size_t nfns, uint32_t credit);

/*  Sends count tasks in one SUBMIT. */
void
dp_testbroker_submit_tasks (dp_testpeer_t *client, const dp_task_t *tasks, size_t count);

/*  Sends one task of fn with dp_testbroker_args, and these fields. */
void
dp_testbroker_submit_flags (dp_testpeer_t *client, const char *fn, uint64_t seq, int32_t priority,
                            int32_t retries, uint32_t flags);
void
dp_testbroker_submit (dp_testpeer_t *client, const char *fn, uint64_t seq, int32_t priority,
                      int32_t retries);

/*  Receives a DISPATCH and returns its jobs' refs (and fns, if not NULL)
    in order; at most max. */
size_t
dp_testbroker_expect_jobs (dp_testpeer_t *worker, uint64_t *refs, char fns[][32], size_t max);

/*  Sends DONE for ref: code 0 with dp_testbroker_args as the value, else
    the message; run_us as the run time (dp_testbroker_done: 10 us, a fast
    function). */
void
dp_testbroker_done_run (dp_testpeer_t *worker, uint64_t ref, int code, const char *message,
                        uint32_t run_us);
void
dp_testbroker_done (dp_testpeer_t *worker, uint64_t ref, int code, const char *message);

/*  Receives one RESULT with exactly one entry and returns it. */
dp_result_t
dp_testbroker_expect_result (dp_testpeer_t *client);

/*  The str message of a failed result, as a string the caller frees. */
char *
dp_testbroker_result_message (dp_result_t result);

/*  Asks for status and returns a counter of its top map, of its "dropped"
    map when dropped is true, or of its "connections" map for the
    connection counters. */
uint64_t
dp_testbroker_status_counter (dp_testpeer_t *client, const char *key, bool dropped);

/*  Runs the case argv names (dp_test_select) against a fresh broker. */
int
dp_testbroker_main (int argc, char *argv[], const dp_test_case_t *cases, size_t count);

#endif

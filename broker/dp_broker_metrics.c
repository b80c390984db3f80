/*  dp_broker_metrics.c - what the broker counts for its metrics, and their
    text: the hooks the loop calls as tasks come, wait, run and end
    (dp_broker_int.h), and dp_broker_metrics (dp_broker.h), which adds the
    gauges read from the broker's state at the time of asking.

    Times: a task's stamp_ms holds when it was last queued, then when it
    was dispatched, on the millisecond clock cut to 32 bits (differences
    are right below 49 days). A wait is measured to the millisecond; a
    run is what the worker reports in microseconds (DONE's run_us), or,
    when it reports nothing, the milliseconds from dispatch to DONE.
*/
#include "dp_broker_int.h"

#include "dp_util.h"

#include <assert.h>

#define US_PER_MS 1000

void
dp_broker_metrics_fnq (dp_broker_t *self, fnq_t *fnq)
{
    if (self->metrics)
        fnq->stats = dp_metrics_function (self->metrics, fnq->name);
}

void
dp_broker_metrics_submitted (dp_broker_t *self, task_t *task)
{
    if (!self->metrics)
        return;
    dp_metrics_fn_t *fn = task->flow->fnq->stats;
    dp_metrics_count (fn, DP_METRIC_SUBMITTED, 1);
    dp_metrics_count (fn, DP_METRIC_ARG_BYTES, task->args_size);
}

void
dp_broker_metrics_queued (dp_broker_t *self, task_t *task)
{
    if (self->metrics)
        task->stamp_ms = (uint32_t)dp_now_ms ();
}

void
dp_broker_metrics_dispatched (dp_broker_t *self, task_t *task)
{
    if (!self->metrics)
        return;
    uint32_t now = (uint32_t)dp_now_ms ();
    uint32_t waited = now - task->stamp_ms;
    dp_metrics_observe (task->flow->fnq->stats, DP_HISTO_WAIT, (uint64_t)waited * US_PER_MS);
    task->stamp_ms = now;
}

void
dp_broker_metrics_ran (dp_broker_t *self, task_t *task, uint32_t run_us)
{
    if (!self->metrics)
        return;
    uint64_t us = run_us;
    if (us == 0)
        us = (uint64_t)((uint32_t)dp_now_ms () - task->stamp_ms) * US_PER_MS;
    dp_metrics_observe (task->flow->fnq->stats, DP_HISTO_RUN, us);
}

void
dp_broker_metrics_retried (dp_broker_t *self, task_t *task)
{
    if (self->metrics)
        dp_metrics_count (task->flow->fnq->stats, DP_METRIC_RETRIED, 1);
}

void
dp_broker_metrics_ended (dp_broker_t *self, task_t *task, int32_t code, size_t size)
{
    if (!self->metrics)
        return;
    dp_metrics_fn_t *fn = task->flow->fnq->stats;
    dp_metrics_count (fn, code == 0 ? DP_METRIC_DONE : DP_METRIC_FAILED, 1);
    dp_metrics_count (fn, DP_METRIC_RESULT_BYTES, size);
}

/*  Sets every function's gauges from the queues alive now. */
static void
s_function_gauges (dp_broker_t *self)
{
    dp_metrics_clear_gauges (self->metrics);
    for (fnq_t *fnq = (fnq_t *)zhashx_first (self->fnqs); fnq;
         fnq = (fnq_t *)zhashx_next (self->fnqs))
        dp_metrics_add_gauges (fnq->stats, fnq->queued, fnq->nworkers);
}

char *
dp_broker_metrics (dp_broker_t *self, size_t *size)
{
    assert (self);
    assert (size);
    if (!self->metrics)
        return NULL;
    s_function_gauges (self);
    const dp_metrics_gauge_t gauges[] = {
        {"dpool_workers", "Worker processes registered.", zlistx_size (self->workers)},
        {"dpool_sessions", "Client sessions held, attached or not.", zhashx_size (self->sessions)},
        {"dpool_queue_depth", "Tasks queued, of every function.", self->queued},
        {"dpool_tasks_running", "Tasks that workers hold.", self->inflight},
        {"dpool_task_bytes", "Bytes of arguments of the tasks held, queued or running.",
         self->task_bytes},
        {"dpool_uptime_seconds", "Seconds since the broker started.",
         (uint64_t)(dp_now_ms () - self->started) / 1000}};
    return dp_metrics_render (self->metrics, gauges, sizeof gauges / sizeof gauges[0], size);
}

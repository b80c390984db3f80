/*  dp_metrics.h - the broker's counters per function, and their text in
    Prometheus's exposition format.

    A store of counters and histograms keyed by function name, which the
    broker's loop feeds one event at a time (a task submitted, dispatched,
    done, failed, retried) and renders on demand (dpool-broker
    --metrics-bind serves the text over HTTP). Function names come from
    the network, so the set is bounded: past max_functions, every further
    name counts in the one series labelled function="_other" (a function
    really named "_other" counts there too). Label values are escaped as
    the format wants (backslash, double quote, newline); bytes that are
    not printable UTF-8 are written as the four characters \xNN.

    A counter never goes down: a function's series stays when its queue is
    freed. Histograms have fixed buckets in seconds (DP_METRICS_BUCKETS).
    Not thread-safe: the thread that drives the broker owns it.
*/
#ifndef DP_METRICS_H_INCLUDED
#define DP_METRICS_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

#define DP_METRICS_MAX_FUNCTIONS 100 /* series per function before "_other" */
#define DP_METRICS_OTHER         "_other"
#define DP_METRICS_BUCKETS       14 /* finite buckets of a histogram, and +Inf */

typedef struct _dp_metrics_t dp_metrics_t;
typedef struct _dp_metrics_fn_t dp_metrics_fn_t;

/*  What a function counts. */
typedef enum {
    DP_METRIC_SUBMITTED = 0, /* tasks taken in from clients */
    DP_METRIC_DONE,          /* tasks ended with a result */
    DP_METRIC_FAILED,        /* tasks ended with an error */
    DP_METRIC_RETRIED,       /* attempts begun again (a worker died, a deadline retried) */
    DP_METRIC_ARG_BYTES,     /* bytes of arguments submitted */
    DP_METRIC_RESULT_BYTES,  /* bytes of results and error messages sent back */
    DP_METRIC_COUNT_
} dp_metric_t;

/*  A function's histograms. */
typedef enum {
    DP_HISTO_WAIT = 0, /* from queued (submitted or retried) to dispatched */
    DP_HISTO_RUN,      /* run time of one task (a map's chunk is one task) */
    DP_HISTO_COUNT_
} dp_histo_t;

/*  A value of the whole broker, rendered as a gauge. */
typedef struct {
    const char *name; /* a metric name, e.g. "dpool_workers" */
    const char *help;
    uint64_t value;
} dp_metrics_gauge_t;

/*  Makes an empty store that tracks at most max_functions names (0:
    DP_METRICS_MAX_FUNCTIONS) besides "_other". Returns NULL if out of
    memory. */
dp_metrics_t *
dp_metrics_new (size_t max_functions);

/*  Frees the store and nulls *self_p; harmless on NULL. */
void
dp_metrics_destroy (dp_metrics_t **self_p);

/*  The series of function name: made on first use, or "_other" once the
    store is full (or out of memory). Never NULL; owned by the store, valid
    until it is destroyed. */
dp_metrics_fn_t *
dp_metrics_function (dp_metrics_t *self, const char *name);

/*  Adds n to a counter of fn. */
void
dp_metrics_count (dp_metrics_fn_t *fn, dp_metric_t which, uint64_t n);

/*  Records one observation of us microseconds in a histogram of fn. */
void
dp_metrics_observe (dp_metrics_fn_t *fn, dp_histo_t which, uint64_t us);

/*  The gauges of fn, set afresh before each render: tasks queued and
    workers offering it. dp_metrics_clear_gauges zeroes every function's;
    dp_metrics_add_gauges adds to one (functions folded into "_other" add
    up there). */
void
dp_metrics_clear_gauges (dp_metrics_t *self);
void
dp_metrics_add_gauges (dp_metrics_fn_t *fn, uint64_t queued, uint64_t workers);

/*  Renders the whole store, after the broker's gauges (count of them), in
    the text exposition format (version 0.0.4): a # HELP and a # TYPE line
    per metric, functions in name order. Returns a string the caller frees
    and its length in *size, or NULL if out of memory. */
char *
dp_metrics_render (dp_metrics_t *self, const dp_metrics_gauge_t *gauges, size_t count,
                   size_t *size);

#endif

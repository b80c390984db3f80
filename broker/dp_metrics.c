/*  dp_metrics.c - the broker's counters per function and their text in
    Prometheus's exposition format. The contract is in dp_metrics.h.
*/
#include "dp_metrics.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX (4 * 255 + 1) /* an escaped name of DP_MAX_NAME bytes, each up to \xNN */

/*  The upper bounds of the finite buckets, in microseconds and as the le
    label says them in seconds. */
static const uint64_t s_bucket_us[DP_METRICS_BUCKETS] = {
    100,    500,     1000,    5000,     10000,    50000,    100000,
    500000, 1000000, 5000000, 10000000, 30000000, 60000000, 300000000};
static const char *const s_bucket_le[DP_METRICS_BUCKETS] = {
    "0.0001", "0.0005", "0.001", "0.005", "0.01", "0.05", "0.1",
    "0.5",    "1",      "5",     "10",    "30",   "60",   "300"};

typedef struct {
    uint64_t counts[DP_METRICS_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    uint64_t sum_us;
    uint64_t count;
} histo_t;

struct _dp_metrics_fn_t {
    char *name;  /* as the client gave it */
    char *label; /* escaped for a label value */
    uint64_t counters[DP_METRIC_COUNT_];
    histo_t histos[DP_HISTO_COUNT_];
    uint64_t queued;
    uint64_t workers;
};

struct _dp_metrics_t {
    dp_metrics_fn_t **fns; /* tracked functions and "_other" */
    size_t nfns;
    dp_metrics_fn_t *other; /* where the rest count */
    size_t max_fns;         /* besides "_other" */
};

/*  Counters in the order they are rendered, with their names and help. */
static const struct {
    const char *name;
    const char *help;
} s_counters[DP_METRIC_COUNT_] = {
    {"dpool_tasks_submitted_total", "Tasks taken in from clients."},
    {"dpool_tasks_done_total", "Tasks ended with a result."},
    {"dpool_tasks_failed_total", "Tasks ended with an error."},
    {"dpool_tasks_retried_total", "Attempts begun again after a worker died or a deadline."},
    {"dpool_task_argument_bytes_total", "Bytes of task arguments submitted."},
    {"dpool_task_result_bytes_total", "Bytes of results and error messages sent back."}};

static const struct {
    const char *name;
    const char *help;
} s_histos[DP_HISTO_COUNT_] = {
    {"dpool_task_wait_seconds", "Time from queued (submitted or retried) to dispatched."},
    {"dpool_task_run_seconds",
     "Run time of one task, as its worker reports it, else from dispatch to its result."}};

/*  Length of the UTF-8 sequence at text (at most left bytes) if it is a
    valid one of a printable character, else 0. */
static size_t
s_utf8_length (const unsigned char *text, size_t left)
{
    unsigned char c = text[0];
    size_t length = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (c < 0x80)
        return c >= 0x20 && c != 0x7F ? 1 : 0;
    if (length == 0 || length > left || c > 0xF4)
        return 0;
    for (size_t i = 1; i < length; i++)
        if ((text[i] & 0xC0) != 0x80)
            return 0;
    return length;
}

/*  name escaped as a label value: \\, \" and \n as the format says; other
    bytes that are not printable UTF-8 as the text \xNN (its backslash
    escaped). Returns NULL if out of memory. */
static char *
s_escape (const char *name)
{
    size_t size = strlen (name);
    char *label = (char *)malloc (size * 5 + 1);
    if (!label)
        return NULL;
    char *out = label;
    const unsigned char *in = (const unsigned char *)name;
    for (size_t i = 0; i < size;) {
        size_t length = s_utf8_length (in + i, size - i);
        if (in[i] == '\\' || in[i] == '"') {
            *out++ = '\\';
            *out++ = (char)in[i++];
        } else if (in[i] == '\n') {
            memcpy (out, "\\n", 2);
            out += 2;
            i++;
        } else if (length > 0) {
            memcpy (out, in + i, length);
            out += length;
            i += length;
        } else
            out += sprintf (out, "\\\\x%02X", in[i++]);
    }
    *out = '\0';
    return label;
}

static void
s_fn_destroy (dp_metrics_fn_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->name);
        free ((*self_p)->label);
        free (*self_p);
        *self_p = NULL;
    }
}

static dp_metrics_fn_t *
s_fn_new (const char *name)
{
    dp_metrics_fn_t *self = (dp_metrics_fn_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->name = strdup (name);
    self->label = s_escape (name);
    if (!self->name || !self->label)
        s_fn_destroy (&self);
    return self;
}

dp_metrics_t *
dp_metrics_new (size_t max_functions)
{
    dp_metrics_t *self = (dp_metrics_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max_fns = max_functions ? max_functions : DP_METRICS_MAX_FUNCTIONS;
    self->fns = (dp_metrics_fn_t **)calloc (self->max_fns + 1, sizeof *self->fns);
    if (self->fns)
        self->fns[0] = s_fn_new (DP_METRICS_OTHER);
    if (!self->fns || !self->fns[0]) {
        free (self->fns);
        free (self);
        return NULL;
    }
    self->other = self->fns[0];
    self->nfns = 1;
    return self;
}

void
dp_metrics_destroy (dp_metrics_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        dp_metrics_t *self = *self_p;
        for (size_t i = 0; i < self->nfns; i++)
            s_fn_destroy (&self->fns[i]);
        free (self->fns);
        free (self);
        *self_p = NULL;
    }
}

dp_metrics_fn_t *
dp_metrics_function (dp_metrics_t *self, const char *name)
{
    assert (self);
    assert (name);
    /*  A linear search: it runs when a function's queue is made, not per task. */
    for (size_t i = 0; i < self->nfns; i++)
        if (strcmp (self->fns[i]->name, name) == 0)
            return self->fns[i];
    if (self->nfns > self->max_fns)
        return self->other;
    dp_metrics_fn_t *fn = s_fn_new (name);
    if (!fn)
        return self->other;
    self->fns[self->nfns++] = fn;
    return fn;
}

void
dp_metrics_count (dp_metrics_fn_t *fn, dp_metric_t which, uint64_t n)
{
    assert (fn && which < DP_METRIC_COUNT_);
    fn->counters[which] += n;
}

void
dp_metrics_observe (dp_metrics_fn_t *fn, dp_histo_t which, uint64_t us)
{
    assert (fn && which < DP_HISTO_COUNT_);
    histo_t *histo = &fn->histos[which];
    size_t bucket = 0;
    while (bucket < DP_METRICS_BUCKETS && us > s_bucket_us[bucket])
        bucket++;
    histo->counts[bucket]++;
    histo->sum_us += us;
    histo->count++;
}

void
dp_metrics_clear_gauges (dp_metrics_t *self)
{
    assert (self);
    for (size_t i = 0; i < self->nfns; i++)
        self->fns[i]->queued = self->fns[i]->workers = 0;
}

void
dp_metrics_add_gauges (dp_metrics_fn_t *fn, uint64_t queued, uint64_t workers)
{
    assert (fn);
    fn->queued += queued;
    fn->workers += workers;
}

static void
s_header (FILE *out, const char *name, const char *help, const char *type)
{
    fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
s_render_histo (FILE *out, dp_metrics_t *self, dp_histo_t which)
{
    const char *name = s_histos[which].name;
    s_header (out, name, s_histos[which].help, "histogram");
    for (size_t i = 0; i < self->nfns; i++) {
        const histo_t *histo = &self->fns[i]->histos[which];
        const char *label = self->fns[i]->label;
        uint64_t cumulative = 0;
        for (size_t b = 0; b < DP_METRICS_BUCKETS; b++) {
            cumulative += histo->counts[b];
            fprintf (out, "%s_bucket{function=\"%s\",le=\"%s\"} %llu\n", name, label,
                     s_bucket_le[b], (unsigned long long)cumulative);
        }
        fprintf (out, "%s_bucket{function=\"%s\",le=\"+Inf\"} %llu\n", name, label,
                 (unsigned long long)histo->count);
        fprintf (out, "%s_sum{function=\"%s\"} %llu.%06llu\n", name, label,
                 (unsigned long long)(histo->sum_us / 1000000),
                 (unsigned long long)(histo->sum_us % 1000000));
        fprintf (out, "%s_count{function=\"%s\"} %llu\n", name, label,
                 (unsigned long long)histo->count);
    }
}

/*  One metric of every function: a counter (which < DP_METRIC_COUNT_) or
    a gauge (queued, workers). */
static void
s_render_per_function (FILE *out, dp_metrics_t *self, const char *name, const char *help,
                       const char *type, size_t offset)
{
    s_header (out, name, help, type);
    for (size_t i = 0; i < self->nfns; i++) {
        const uint64_t *value = (const uint64_t *)((const char *)self->fns[i] + offset);
        fprintf (out, "%s{function=\"%s\"} %llu\n", name, self->fns[i]->label,
                 (unsigned long long)*value);
    }
}

static int
s_by_name (const void *a, const void *b)
{
    return strcmp ((*(dp_metrics_fn_t *const *)a)->name, (*(dp_metrics_fn_t *const *)b)->name);
}

char *
dp_metrics_render (dp_metrics_t *self, const dp_metrics_gauge_t *gauges, size_t count,
                   size_t *size)
{
    assert (self);
    assert (size);
    char *text = NULL;
    FILE *out = open_memstream (&text, size);
    if (!out)
        return NULL;
    qsort (self->fns, self->nfns, sizeof *self->fns, s_by_name);
    for (size_t i = 0; i < count; i++) {
        s_header (out, gauges[i].name, gauges[i].help, "gauge");
        fprintf (out, "%s %llu\n", gauges[i].name, (unsigned long long)gauges[i].value);
    }
    for (size_t c = 0; c < DP_METRIC_COUNT_; c++)
        s_render_per_function (out, self, s_counters[c].name, s_counters[c].help, "counter",
                               offsetof (dp_metrics_fn_t, counters) + c * sizeof (uint64_t));
    s_render_per_function (out, self, "dpool_function_queued", "Tasks queued for the function.",
                           "gauge", offsetof (dp_metrics_fn_t, queued));
    s_render_per_function (out, self, "dpool_function_workers", "Workers offering the function.",
                           "gauge", offsetof (dp_metrics_fn_t, workers));
    for (size_t h = 0; h < DP_HISTO_COUNT_; h++)
        s_render_histo (out, self, (dp_histo_t)h);
    if (fclose (out) != 0) {
        free (text);
        return NULL;
    }
    return text;
}

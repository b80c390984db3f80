/*  test_metrics.c - dpool-broker --metrics-bind: Prometheus metrics over
    HTTP, scraped with curl from a real broker while real workers run a
    client's tasks, and the counter store (broker/dp_metrics) on its own:
    escaped label values, the bound on functions tracked, histogram
    buckets.
*/
#include "dp_metrics.h"
#include "dp_testutil.h"
#include "dpool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define TEST_SECONDS 90
#define WAIT_MS      20000
#define TASKS        20

static const char *s_curl_bin = DPOOL_CURL_BIN;

static dp_test_broker_t s_broker;
static char s_url[128]; /* http://127.0.0.1:PORT/metrics */

static bool
s_metrics_logged (void *arg)
{
    (void)arg;
    char *err = dp_test_output ("broker1", "err");
    const char *at = strstr (err, "metrics on 127.0.0.1:0, port ");
    unsigned port = 0;
    if (at)
        sscanf (at + strlen ("metrics on 127.0.0.1:0, port "), "%u", &port);
    if (port > 0)
        snprintf (s_url, sizeof s_url, "http://127.0.0.1:%u/metrics", port);
    free (err);
    return port > 0;
}

/*  Starts a broker serving metrics on a port the kernel picks, and finds
    that port in its log. */
static void
s_start_broker (void)
{
    const char *extra[] = {"--metrics-bind", "127.0.0.1:0", "--log-level", "info", NULL};
    dp_test_broker_start (&s_broker, extra);
    if (!dp_test_wait_until (s_metrics_logged, NULL, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "the broker did not log its metrics port");
}

/*  Runs curl on url with options (NULL-terminated, at most 8); returns
    its exit status and (caller frees) its stdout. */
static int
s_curl (const char *url, const char *const *options, char **out)
{
    static int serial;
    char tag[32];
    snprintf (tag, sizeof tag, "curl%d", ++serial);
    const char *argv[16] = {s_curl_bin, "--silent", "--show-error", "--max-time", "10"};
    int argc = 5;
    for (int i = 0; options && options[i] && argc < 14; i++)
        argv[argc++] = options[i];
    argv[argc++] = url;
    argv[argc] = NULL;
    pid_t pid = dp_test_spawn (tag, (char *const *)argv);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (status != -1);
    *out = dp_test_output (tag, "out");
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

/*  The value of the sample whose line starts with series and a space, as
    scraped now; -1 if there is none. */
static double
s_sample (const char *series)
{
    char *text;
    CHECK_EQ_INT (s_curl (s_url, NULL, &text), 0);
    double value = -1;
    size_t length = strlen (series);
    for (const char *line = text; line && *line; line = strchr (line, '\n'), line += !!line)
        if (strncmp (line, series, length) == 0 && line[length] == ' ')
            value = strtod (line + length + 1, NULL);
    free (text);
    return value;
}

typedef struct {
    const char *series;
    double value;
} expect_t;

static bool
s_sample_is (void *arg)
{
    const expect_t *expect = (const expect_t *)arg;
    return s_sample (expect->series) == expect->value;
}

/*  Waits until a scrape shows series at value; stops the test, showing
    the last value, if it does not come. */
static void
s_wait_sample (const char *series, double value)
{
    expect_t expect = {series, value};
    if (!dp_test_wait_until (s_sample_is, &expect, WAIT_MS))
        dp_test_fail (__FILE__, __LINE__, "%s is %g, not %g", series, s_sample (series), value);
}

/*  Counters, gauges and histograms move as a client's tasks run: a map
    of TASKS echoes, a failing task, and a task whose worker dies once and
    is retried. */
static void
s_case_metrics_move (void)
{
    s_start_broker ();
    const char *extra[] = {"--test-builtins", NULL};
    pid_t workers = dp_test_workers_start (s_broker.tcp, 2, extra);
    s_wait_sample ("dpool_workers", 2);
    CHECK_EQ_INT (s_sample ("dpool_tasks_submitted_total{function=\"echo\"}"), 0);
    dpool_pool_t *pool = dpool_pool_connect (s_broker.tcp);
    CHECK (pool);

    dp_test_buf_t buf;
    dp_test_buf_init (&buf);
    dp_test_pack_range (&buf, 0, TASKS);
    dpool_result_t *result = dpool_pool_map (pool, "echo", buf.sbuf.data, buf.sbuf.size, 1, NULL);
    dp_test_check_range (result, TASKS);
    dpool_result_destroy (&result);
    CHECK_EQ_INT (s_sample ("dpool_tasks_submitted_total{function=\"echo\"}"), TASKS);
    CHECK_EQ_INT (s_sample ("dpool_tasks_done_total{function=\"echo\"}"), TASKS);
    CHECK_EQ_INT (s_sample ("dpool_tasks_failed_total{function=\"echo\"}"), 0);
    CHECK (s_sample ("dpool_task_argument_bytes_total{function=\"echo\"}") >= TASKS);
    CHECK (s_sample ("dpool_task_result_bytes_total{function=\"echo\"}") >= TASKS);
    CHECK_EQ_INT (s_sample ("dpool_task_run_seconds_count{function=\"echo\"}"), TASKS);
    CHECK_EQ_INT (s_sample ("dpool_task_run_seconds_bucket{function=\"echo\",le=\"+Inf\"}"),
                  TASKS);
    CHECK_EQ_INT (s_sample ("dpool_task_wait_seconds_count{function=\"echo\"}"), TASKS);
    CHECK_EQ_INT (s_sample ("dpool_function_workers{function=\"echo\"}"), 2);
    CHECK_EQ_INT (s_sample ("dpool_queue_depth"), 0);
    CHECK_EQ_INT (s_sample ("dpool_sessions"), 1);

    msgpack_sbuffer_clear (&buf.sbuf);
    dp_test_pack_str (&buf.pk, "boom");
    result = dpool_pool_apply (pool, "fail", buf.sbuf.data, buf.sbuf.size, NULL);
    dp_test_check_failed (result, DPOOL_EFAILED);
    dpool_result_destroy (&result);
    CHECK_EQ_INT (s_sample ("dpool_tasks_failed_total{function=\"fail\"}"), 1);
    CHECK_EQ_INT (s_sample ("dpool_tasks_done_total{function=\"fail\"}"), 0);

    /*  crash kills its worker: one retry (the supervisor starts another
        process), then it fails ELOST. */
    dpool_call_t call = {.retries = 1};
    msgpack_sbuffer_clear (&buf.sbuf);
    msgpack_pack_nil (&buf.pk);
    result = dpool_pool_apply (pool, "crash", buf.sbuf.data, buf.sbuf.size, &call);
    dp_test_check_failed (result, DPOOL_ELOST);
    dpool_result_destroy (&result);
    CHECK_EQ_INT (s_sample ("dpool_tasks_retried_total{function=\"crash\"}"), 1);
    CHECK_EQ_INT (s_sample ("dpool_tasks_failed_total{function=\"crash\"}"), 1);
    CHECK_EQ_INT (s_sample ("dpool_task_wait_seconds_count{function=\"crash\"}"), 2);

    dp_test_buf_fini (&buf);
    dpool_pool_destroy (&pool);
    s_wait_sample ("dpool_sessions", 0);
    CHECK_EQ_INT (dp_test_stop (workers, SIGTERM, 10000), 0);
    s_wait_sample ("dpool_workers", 0);
    CHECK_EQ_INT (s_sample ("dpool_tasks_submitted_total{function=\"echo\"}"), TASKS);
    CHECK_EQ_INT (dp_test_stop (s_broker.pid, SIGTERM, 20000), 0);
}

/*  Only GET and HEAD of /metrics are served; a port in use, a malformed
    address and --help are said. */
static void
s_case_metrics_http (void)
{
    s_start_broker ();
    const char *head[] = {"--head", NULL};
    char *out;
    CHECK_EQ_INT (s_curl (s_url, head, &out), 0);
    CHECK (strstr (out, "200 OK"));
    CHECK (strstr (out, "Content-Type: text/plain; version=0.0.4"));
    free (out);
    const char *post[] = {"--write-out", "%{http_code}", "--output", "/dev/null", "--data", "x",
                          NULL};
    CHECK_EQ_INT (s_curl (s_url, post, &out), 0);
    CHECK_EQ_STR (out, "405");
    free (out);
    char other[160];
    snprintf (other, sizeof other, "%.*s/other", (int)(strlen (s_url) - strlen ("/metrics")),
              s_url);
    const char *code[] = {"--write-out", "%{http_code}", "--output", "/dev/null", NULL};
    CHECK_EQ_INT (s_curl (other, code, &out), 0);
    CHECK_EQ_STR (out, "404");
    free (out);

    /*  The port is taken: a second broker says so and exits 1. */
    char taken[64];
    unsigned port;
    CHECK (sscanf (s_url, "http://127.0.0.1:%u/", &port) == 1);
    snprintf (taken, sizeof taken, "127.0.0.1:%u", port);
    const char *argv[] = {dp_test_broker_bin, "--bind", dp_test_ipc ("second"),
                          "--metrics-bind",   taken,    NULL};
    pid_t pid = dp_test_spawn ("second", (char *const *)argv);
    int status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 1);
    dp_test_check_contains ("second", "err", "cannot listen there");
    const char *bad[] = {dp_test_broker_bin, "--bind",  dp_test_ipc ("third"),
                         "--metrics-bind",   "no-port", NULL};
    pid = dp_test_spawn ("third", (char *const *)bad);
    status = dp_test_wait_exit (pid, WAIT_MS);
    CHECK (WIFEXITED (status) && WEXITSTATUS (status) == 1);
    dp_test_check_contains ("third", "err", "expected HOST:PORT");
    const char *help[] = {dp_test_broker_bin, "--help", NULL};
    pid = dp_test_spawn ("help", (char *const *)help);
    CHECK_EQ_INT (dp_test_wait_exit (pid, WAIT_MS), 0);
    dp_test_check_contains ("help", "out", "--metrics-bind HOST:PORT");
    CHECK_EQ_INT (dp_test_stop (s_broker.pid, SIGTERM, 20000), 0);
}

/*  The store on its own: names from the network are escaped, functions
    past the bound count as "_other", and buckets are cumulative. */
static void
s_case_metrics_store (void)
{
    dp_metrics_t *metrics = dp_metrics_new (3);
    CHECK (metrics);
    dp_metrics_fn_t *evil = dp_metrics_function (metrics, "a\"b\\c\nd\x01\xff\xc3\xa9");
    CHECK (dp_metrics_function (metrics, "a\"b\\c\nd\x01\xff\xc3\xa9") == evil);
    dp_metrics_count (evil, DP_METRIC_SUBMITTED, 2);
    dp_metrics_function (metrics, "one");
    dp_metrics_function (metrics, "two");
    dp_metrics_fn_t *other = dp_metrics_function (metrics, "three");
    CHECK (dp_metrics_function (metrics, "four") == other);
    CHECK (dp_metrics_function (metrics, "_other") == other);
    dp_metrics_count (other, DP_METRIC_DONE, 5);
    dp_metrics_observe (other, DP_HISTO_RUN, 50);      /* le 0.0001 */
    dp_metrics_observe (other, DP_HISTO_RUN, 2000000); /* le 5 */
    dp_metrics_observe (other, DP_HISTO_RUN, 999000000);
    dp_metrics_add_gauges (other, 7, 1);
    dp_metrics_add_gauges (other, 3, 1);
    dp_metrics_gauge_t gauge = {"dpool_workers", "Workers.", 4};
    size_t size;
    char *text = dp_metrics_render (metrics, &gauge, 1, &size);
    CHECK (text && size == strlen (text));
    CHECK (strstr (text, "# TYPE dpool_workers gauge\ndpool_workers 4\n"));
    CHECK (strstr (text, "dpool_tasks_submitted_total{function=\"a\\\"b\\\\c\\nd\\\\x01\\\\xFF"
                         "\xc3\xa9\"} 2\n"));
    CHECK (strstr (text, "dpool_tasks_done_total{function=\"_other\"} 5\n"));
    CHECK (!strstr (text, "function=\"three\""));
    CHECK (strstr (text, "dpool_function_queued{function=\"_other\"} 10\n"));
    CHECK (strstr (text, "dpool_function_workers{function=\"_other\"} 2\n"));
    const char *run = "dpool_task_run_seconds_bucket{function=\"_other\",le=";
    char line[160];
    const char *buckets[][2] = {
        {"0.0001", "1"}, {"1", "1"}, {"5", "2"}, {"300", "2"}, {"+Inf", "3"}};
    for (size_t i = 0; i < sizeof buckets / sizeof buckets[0]; i++) {
        snprintf (line, sizeof line, "%s\"%s\"} %s\n", run, buckets[i][0], buckets[i][1]);
        CHECK (strstr (text, line));
    }
    CHECK (strstr (text, "dpool_task_run_seconds_sum{function=\"_other\"} 1001.000050\n"));
    CHECK (strstr (text, "# TYPE dpool_task_wait_seconds histogram\n"));
    free (text);
    dp_metrics_clear_gauges (metrics);
    text = dp_metrics_render (metrics, NULL, 0, &size);
    CHECK (strstr (text, "dpool_function_queued{function=\"_other\"} 0\n"));
    free (text);
    dp_metrics_destroy (&metrics);
    dp_metrics_destroy (&metrics);
}

static const dp_test_case_t s_cases[] = {
    {"broker_metrics_move", s_case_metrics_move, .valgrind = "broker_metrics_move_valgrind"},
    {"broker_metrics_http", s_case_metrics_http},
    {"broker_metrics_store", s_case_metrics_store},
};

int
main (int argc, char *argv[])
{
    return dp_test_main (argc, argv, DP_TEST_CASES (s_cases), TEST_SECONDS);
}

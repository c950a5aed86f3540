/*  bm_monitor_test.c - self tests of the metrics library.

    Usage: bm_monitor_test [render|escaping|histogram|concurrent|promtool|http|assets|all]
    Each named test is one CTest entry.  Exit 0 on success; a failed check
    prints FILE:LINE and the expression and exits 1. */
#include "bm_selftest.h"
#include "bm_metrics.h"
#include "bm_assets.h"

#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int s_verbose = 0;

#define CHECK(expr) BM_CHECK (expr)
#define CHECK_CONTAINS(text, needle) do { if (!strstr ((text), (needle))) { \
    fprintf (stderr, "%s:%d: missing in output: %s\n--- output ---\n%s\n", \
             __FILE__, __LINE__, (needle), (text)); abort (); } } while (0)

//  Render self and, when verbose, print it.
static char *
s_render (bm_metrics_t *metrics)
{
    char *text = bm_metrics_render (metrics);
    CHECK (text);
    if (s_verbose)
        printf ("%s", text);
    return text;
}

static void
test_render (bool verbose)
{
    s_verbose = verbose;
    bm_metrics_t *metrics = bm_metrics_new ();
    CHECK (metrics);
    bm_metric_t *exec = bm_metrics_counter (metrics, "bot_executions_total",
        "Bot executions by type and outcome", "bot_type,status");
    CHECK (exec);
    bm_metric_t *queue = bm_metrics_gauge (metrics, "queue_size", "Jobs waiting", "bot_type");
    CHECK (queue);
    bm_metric_t *up = bm_metrics_gauge (metrics, "redis_up", "1 when Redis answers", NULL);
    CHECK (up);
    bm_metric_t *empty = bm_metrics_counter (metrics, "jobs_rejected_total", "Rejected", "reason");
    CHECK (empty);

    //  Same registration again: the same family; conflicting: NULL
    CHECK (bm_metrics_counter (metrics, "bot_executions_total", "x", "bot_type,status") == exec);
    CHECK (bm_metrics_gauge (metrics, "bot_executions_total", "x", "bot_type,status") == NULL);
    CHECK (bm_metrics_counter (metrics, "bot_executions_total", "x", "bot_type") == NULL);

    //  Bad names
    CHECK (bm_metrics_counter (metrics, "1abc", "x", NULL) == NULL);
    CHECK (bm_metrics_counter (metrics, "a-b", "x", NULL) == NULL);
    CHECK (bm_metrics_counter (metrics, "", "x", NULL) == NULL);
    CHECK (bm_metrics_counter (metrics, NULL, "x", NULL) == NULL);
    CHECK (bm_metrics_counter (metrics, "ok_total", "x", "a,,b") == NULL);
    CHECK (bm_metrics_counter (metrics, "ok_total", "x", "__reserved") == NULL);
    CHECK (bm_metrics_counter (metrics, "ok_total", "x", "a,a") == NULL);
    CHECK (bm_metrics_counter (metrics, "ok_total", "x", "a-b") == NULL);
    CHECK (bm_metrics_counter (metrics, "ok_total", "x", "9a") == NULL);
    CHECK (bm_metrics_histogram (metrics, "h_seconds", "x", "le", NULL, 0) == NULL);
    double bad_buckets [] = { 1, 0.5 };
    CHECK (bm_metrics_histogram (metrics, "h_seconds", "x", NULL, bad_buckets, 2) == NULL);
    CHECK (bm_metrics_counter (metrics, "ns:name_total", "x", " a , b ") != NULL);

    bm_series_t *py_ok = bm_metric_series (exec, "python", "completed");
    bm_series_t *py_fail = bm_metric_series (exec, "python", "failed");
    CHECK (py_ok && py_fail && py_ok != py_fail);
    CHECK (bm_metric_series (exec, "python", "completed") == py_ok);
    const char *values [] = { "python", "failed" };
    CHECK (bm_metric_series_v (exec, values) == py_fail);
    const char *null_values [] = { "python", NULL };
    CHECK (bm_metric_series_v (exec, null_values) == NULL);

    bm_series_inc (py_ok);
    bm_series_inc (py_ok);
    bm_series_add (py_ok, 3);
    bm_series_add (py_ok, -10);         //  ignored: counters only go up
    bm_series_add (py_ok, NAN);         //  ignored
    bm_series_set (py_ok, 100);         //  ignored: not a gauge
    CHECK (bm_series_value (py_ok) == 5);
    bm_series_inc (py_fail);
    CHECK (bm_series_value (py_fail) == 1);

    bm_series_t *q = bm_metric_series (queue, "node");
    bm_series_set (q, 7);
    bm_series_dec (q);
    bm_series_add (q, 0.5);
    CHECK (bm_series_value (q) == 6.5);
    bm_series_t *u = bm_metric_series (up);
    CHECK (u);
    bm_series_set (u, 1);

    //  NULL handles are no-ops
    bm_series_inc (NULL);
    bm_series_observe (NULL, 1);
    CHECK (bm_series_value (NULL) == 0);

    char *text = s_render (metrics);
    CHECK_CONTAINS (text, "# HELP bot_executions_total Bot executions by type and outcome\n"
                          "# TYPE bot_executions_total counter\n"
                          "bot_executions_total{bot_type=\"python\",status=\"completed\"} 5\n"
                          "bot_executions_total{bot_type=\"python\",status=\"failed\"} 1\n");
    CHECK_CONTAINS (text, "# TYPE queue_size gauge\nqueue_size{bot_type=\"node\"} 6.5\n");
    CHECK_CONTAINS (text, "# TYPE redis_up gauge\nredis_up 1\n");
    //  A labelled family without series renders just HELP and TYPE
    CHECK_CONTAINS (text, "# TYPE jobs_rejected_total counter\n# HELP ns:name_total");
    //  Registration order
    CHECK (strstr (text, "bot_executions_total") < strstr (text, "queue_size"));
    free (text);

    //  Gauge special values and number formatting
    bm_series_set (q, 0.1);
    text = s_render (metrics);
    CHECK_CONTAINS (text, "queue_size{bot_type=\"node\"} 0.1\n");
    free (text);
    bm_series_set (q, INFINITY);
    text = s_render (metrics);
    CHECK_CONTAINS (text, "queue_size{bot_type=\"node\"} +Inf\n");
    free (text);
    bm_series_set (q, 1e21);
    text = s_render (metrics);
    CHECK_CONTAINS (text, "queue_size{bot_type=\"node\"} 1e+21\n");
    free (text);

    //  Series by HTTP status, cached: a status past the cache, or 0, is
    //  the none series
    bm_metric_t *answers = bm_metrics_counter (metrics, "answers_total", "Answers", "code");
    bm_series_t *cache [600] = { NULL };
    bm_series_t *ok = bm_metric_series_status (answers, cache, 600, 200, "none");
    CHECK (ok && cache [200] == ok);
    CHECK (bm_metric_series_status (answers, cache, 600, 200, "none") == ok);
    bm_series_t *none = bm_metric_series_status (answers, cache, 600, 0, "none");
    CHECK (none && none != ok);
    CHECK (bm_metric_series_status (answers, cache, 600, 600, "none") == none);
    CHECK (bm_metric_series_status (answers, cache, 600, -1, "none") == none);
    bm_series_inc (ok);
    text = s_render (metrics);
    CHECK_CONTAINS (text, "answers_total{code=\"200\"} 1\nanswers_total{code=\"none\"} 0\n");
    free (text);

    //  The collect callback runs before every render
    bm_metrics_set_collect (metrics, (bm_metrics_collect_fn *) NULL, NULL);
    bm_metrics_destroy (&metrics);
    CHECK (metrics == NULL);
    bm_metrics_destroy (&metrics);      //  idempotent
}

static void
s_collect (bm_metrics_t *metrics, void *arg)
{
    (void) metrics;
    bm_series_t *series = (bm_series_t *) arg;
    bm_series_set (series, bm_series_value (series) + 10);
}

static void
test_collect (bool verbose)
{
    s_verbose = verbose;
    bm_metrics_t *metrics = bm_metrics_new ();
    bm_series_t *g = bm_metric_series (bm_metrics_gauge (metrics, "refreshed", "by collect", NULL));
    bm_metrics_set_collect (metrics, s_collect, g);
    char *text = s_render (metrics);
    CHECK_CONTAINS (text, "refreshed 10\n");
    free (text);
    text = s_render (metrics);
    CHECK_CONTAINS (text, "refreshed 20\n");
    free (text);
    bm_metrics_destroy (&metrics);
}

static void
test_escaping (bool verbose)
{
    s_verbose = verbose;
    bm_metrics_t *metrics = bm_metrics_new ();
    bm_metric_t *m = bm_metrics_counter (metrics, "escape_total",
        "Help with \\ backslash\nand newline and \"quotes\"", "v");
    CHECK (m);
    bm_series_inc (bm_metric_series (m, "a\"b\\c\nd"));
    bm_series_inc (bm_metric_series (m, "caf\xc3\xa9 \xe2\x82\xac"));     //  valid UTF-8 kept
    bm_series_inc (bm_metric_series (m, "bad\xff\xc3"));                //  invalid bytes -> '?'
    bm_series_inc (bm_metric_series (m, "over\xc0\xaflong"));           //  overlong '/' -> '??'
    bm_series_inc (bm_metric_series (m, "surr\xed\xa0\x80"));           //  surrogate -> '???'
    bm_series_inc (bm_metric_series (m, ""));                           //  empty value is legal
    char long_value [1000];
    memset (long_value, 'x', sizeof long_value - 1);
    long_value [sizeof long_value - 1] = 0;
    bm_series_t *long_series = bm_metric_series (m, long_value);
    CHECK (long_series);
    //  Two different long values that agree on the first MAX bytes share a series
    long_value [900] = 'y';
    CHECK (bm_metric_series (m, long_value) == long_series);

    char *text = s_render (metrics);
    CHECK_CONTAINS (text, "# HELP escape_total Help with \\\\ backslash\\nand newline and \"quotes\"\n");
    CHECK_CONTAINS (text, "escape_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    CHECK_CONTAINS (text, "escape_total{v=\"caf\xc3\xa9 \xe2\x82\xac\"} 1\n");
    CHECK_CONTAINS (text, "escape_total{v=\"bad??\"} 1\n");
    CHECK_CONTAINS (text, "escape_total{v=\"over??long\"} 1\n");
    CHECK_CONTAINS (text, "escape_total{v=\"surr???\"} 1\n");
    CHECK_CONTAINS (text, "escape_total{v=\"\"} 1\n");
    char expect [BM_METRICS_MAX_VALUE_LEN + 32];
    snprintf (expect, sizeof expect, "{v=\"%.*s\"} 0\n", BM_METRICS_MAX_VALUE_LEN, long_value);
    CHECK_CONTAINS (text, expect);
    free (text);

    //  Cutting a long value never splits a UTF-8 character
    char euros [BM_METRICS_MAX_VALUE_LEN * 2];
    size_t n = 0;
    euros [n++] = 'a';
    while (n + 3 < sizeof euros) {
        memcpy (euros + n, "\xe2\x82\xac", 3);
        n += 3;
    }
    euros [n] = 0;
    bm_metrics_t *m2 = bm_metrics_new ();
    bm_metric_t *e = bm_metrics_gauge (m2, "euros", "x", "v");
    bm_series_set (bm_metric_series (e, euros), 1);
    text = s_render (m2);
    char *start = strstr (text, "euros{v=\"") + 9;
    char *end = strstr (start, "\"}");
    CHECK ((size_t) (end - start) <= BM_METRICS_MAX_VALUE_LEN);
    CHECK ((end - start - 1) % 3 == 0);
    free (text);
    bm_metrics_destroy (&m2);

    //  The series cap
    bm_metric_t *many = bm_metrics_counter (metrics, "many_total", "x", "id");
    char id [32];
    for (int i = 0; i < BM_METRICS_MAX_SERIES; i++) {
        snprintf (id, sizeof id, "%d", i);
        CHECK (bm_metric_series (many, id));
    }
    CHECK (bm_metric_series (many, "one-too-many") == NULL);
    CHECK (bm_metric_series (many, "7") != NULL);      //  existing ones still resolve
    bm_metrics_destroy (&metrics);
}

static void
test_histogram (bool verbose)
{
    s_verbose = verbose;
    bm_metrics_t *metrics = bm_metrics_new ();
    double buckets [] = { 0.1, 0.5, 1, 5 };
    bm_metric_t *h = bm_metrics_histogram (metrics, "bot_execution_duration_seconds",
        "Bot run time", "bot_type", buckets, 4);
    CHECK (h);
    bm_series_t *s = bm_metric_series (h, "python");
    double observations [] = { 0.05, 0.1, 0.2, 0.5, 0.7, 3, 10, 100 };
    double sum = 0;
    for (size_t i = 0; i < sizeof observations / sizeof (double); i++) {
        bm_series_observe (s, observations [i]);
        sum += observations [i];
    }
    bm_series_observe (s, NAN);                 //  ignored
    bm_series_inc (s);                          //  ignored: not a counter
    CHECK (bm_series_count (s) == 8);
    CHECK (fabs (bm_series_sum (s) - sum) < 1e-9);
    uint64_t counts [5];
    CHECK (bm_series_buckets (s, counts, 4) == 0);
    CHECK (bm_series_buckets (s, counts, 5) == 5);
    CHECK (counts [0] == 2 && counts [1] == 2 && counts [2] == 1 && counts [3] == 1 && counts [4] == 2);

    //  A label-less histogram with default buckets renders before any observation
    bm_metric_t *lat = bm_metrics_histogram (metrics, "webhook_delivery_duration_seconds",
        "Webhook delivery time", NULL, NULL, 0);
    CHECK (lat);

    char *text = s_render (metrics);
    CHECK_CONTAINS (text, "# TYPE bot_execution_duration_seconds histogram\n"
        "bot_execution_duration_seconds_bucket{bot_type=\"python\",le=\"0.1\"} 2\n"
        "bot_execution_duration_seconds_bucket{bot_type=\"python\",le=\"0.5\"} 4\n"
        "bot_execution_duration_seconds_bucket{bot_type=\"python\",le=\"1\"} 5\n"
        "bot_execution_duration_seconds_bucket{bot_type=\"python\",le=\"5\"} 6\n"
        "bot_execution_duration_seconds_bucket{bot_type=\"python\",le=\"+Inf\"} 8\n"
        "bot_execution_duration_seconds_sum{bot_type=\"python\"} 114.55\n"
        "bot_execution_duration_seconds_count{bot_type=\"python\"} 8\n");
    CHECK_CONTAINS (text, "webhook_delivery_duration_seconds_bucket{le=\"0.0005\"} 0\n");
    CHECK_CONTAINS (text, "webhook_delivery_duration_seconds_bucket{le=\"+Inf\"} 0\n"
                          "webhook_delivery_duration_seconds_sum 0\n"
                          "webhook_delivery_duration_seconds_count 0\n");
    free (text);

    //  Quantiles as Prometheus' histogram_quantile computes them
    uint64_t q_counts [] = { 10, 0, 10, 0, 0 };     //  10 in (0,0.1], 10 in (0.5,1]
    CHECK (fabs (bm_histogram_quantile (0.5, buckets, 4, q_counts) - 0.1) < 1e-9);
    CHECK (fabs (bm_histogram_quantile (0.25, buckets, 4, q_counts) - 0.05) < 1e-9);
    CHECK (fabs (bm_histogram_quantile (0.75, buckets, 4, q_counts) - 0.75) < 1e-9);
    uint64_t inf_counts [] = { 0, 0, 0, 0, 3 };
    CHECK (bm_histogram_quantile (0.99, buckets, 4, inf_counts) == 5);
    uint64_t zero_counts [] = { 0, 0, 0, 0, 0 };
    CHECK (isnan (bm_histogram_quantile (0.5, buckets, 4, zero_counts)));

    //  Standard buckets are strictly increasing and reach several minutes
    CHECK (bm_buckets_duration [bm_buckets_duration_count - 1] >= 300);
    for (size_t i = 1; i < bm_buckets_duration_count; i++)
        CHECK (bm_buckets_duration [i] > bm_buckets_duration [i - 1]);
    for (size_t i = 1; i < bm_buckets_latency_count; i++)
        CHECK (bm_buckets_latency [i] > bm_buckets_latency [i - 1]);
    bm_metrics_destroy (&metrics);
}

//  Concurrent updates: 4 threads hammer shared series while a fifth renders.
#define THREADS 4
#define ITERATIONS 200000

typedef struct {
    bm_metrics_t *metrics;
    bm_metric_t *counter, *gauge, *histogram;
    int index;
} worker_args_t;

static void *
s_worker (void *arg)
{
    worker_args_t *args = (worker_args_t *) arg;
    //  Each thread resolves the same series itself (races the creation path)
    bm_series_t *c = bm_metric_series (args->counter, "shared");
    bm_series_t *g = bm_metric_series (args->gauge, "shared");
    bm_series_t *h = bm_metric_series (args->histogram, "shared");
    char own [16];
    snprintf (own, sizeof own, "t%d", args->index);
    bm_series_t *mine = bm_metric_series (args->counter, own);
    for (int i = 0; i < ITERATIONS; i++) {
        bm_series_inc (c);
        bm_series_add (c, 0.5);
        bm_series_inc (g);
        bm_series_dec (g);
        bm_series_add (g, 2);
        bm_series_observe (h, (double) (i % 4) * 0.4);   //  0, 0.4, 0.8, 1.2
        bm_series_inc (mine);
    }
    return NULL;
}

static void *
s_renderer (void *arg)
{
    bm_metrics_t *metrics = (bm_metrics_t *) arg;
    for (int i = 0; i < 50; i++) {
        char *text = bm_metrics_render (metrics);
        CHECK (text);
        free (text);
    }
    return NULL;
}

static void
test_concurrent (bool verbose)
{
    s_verbose = verbose;
    bm_metrics_t *metrics = bm_metrics_new ();
    double buckets [] = { 0.5, 1 };
    worker_args_t args [THREADS];
    pthread_t threads [THREADS], renderer;
    bm_metric_t *counter = bm_metrics_counter (metrics, "c_total", "c", "k");
    bm_metric_t *gauge = bm_metrics_gauge (metrics, "g", "g", "k");
    bm_metric_t *histogram = bm_metrics_histogram (metrics, "h_seconds", "h", "k", buckets, 2);
    for (int i = 0; i < THREADS; i++) {
        args [i] = (worker_args_t) { metrics, counter, gauge, histogram, i };
        CHECK (pthread_create (&threads [i], NULL, s_worker, &args [i]) == 0);
    }
    CHECK (pthread_create (&renderer, NULL, s_renderer, metrics) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join (threads [i], NULL);
    pthread_join (renderer, NULL);

    double total = (double) THREADS * ITERATIONS;
    CHECK (bm_series_value (bm_metric_series (counter, "shared")) == total * 1.5);
    CHECK (bm_series_value (bm_metric_series (gauge, "shared")) == total * 2);
    bm_series_t *h = bm_metric_series (histogram, "shared");
    CHECK (bm_series_count (h) == (uint64_t) total);
    uint64_t counts [3];
    CHECK (bm_series_buckets (h, counts, 3) == 3);
    CHECK (counts [0] == (uint64_t) total / 2);     //  0 and 0.4
    CHECK (counts [1] == (uint64_t) total / 4);     //  0.8
    CHECK (counts [2] == (uint64_t) total / 4);     //  1.2
    CHECK (fabs (bm_series_sum (h) - total / 4 * (0.4 + 0.8 + 1.2)) < 1e-3);
    for (int i = 0; i < THREADS; i++) {
        char own [16];
        snprintf (own, sizeof own, "t%d", i);
        CHECK (bm_series_value (bm_metric_series (counter, own)) == ITERATIONS);
    }
    char *text = s_render (metrics);
    //  Exactly one "shared" series per family despite the creation race
    char *first = strstr (text, "c_total{k=\"shared\"}");
    CHECK (first && !strstr (first + 1, "c_total{k=\"shared\"}"));
    CHECK_CONTAINS (text, "h_seconds_count{k=\"shared\"} 800000\n");
    free (text);
    bm_metrics_destroy (&metrics);
}

//  Feed text to `promtool check metrics`; return its exit status.
static int
s_promtool (const char *text)
{
    FILE *pipe = popen ("promtool check metrics", "w");
    CHECK (pipe);
    fputs (text, pipe);
    int status = pclose (pipe);
    return WIFEXITED (status) ? WEXITSTATUS (status) : -1;
}

static void
test_promtool (bool verbose)
{
    s_verbose = verbose;
    if (system ("command -v promtool >/dev/null 2>&1") != 0) {
        fprintf (stderr, "promtool not installed (Debian package prometheus)\n");
        exit (1);
    }
    bm_metrics_t *metrics = bm_metrics_new ();
    bm_metric_t *exec = bm_metrics_counter (metrics, "bot_executions_total",
        "Bot executions by type and outcome", "bot_type,status");
    bm_series_add (bm_metric_series (exec, "python", "completed"), 12);
    bm_series_inc (bm_metric_series (exec, "node\"\\\n", "failed"));
    bm_series_inc (bm_metric_series (exec, "bad\xff", "failed"));
    bm_metric_t *dur = bm_metrics_histogram (metrics, "bot_execution_duration_seconds",
        "Bot run time in seconds", "bot_type", bm_buckets_duration, bm_buckets_duration_count);
    bm_series_t *d = bm_metric_series (dur, "python");
    for (int i = 0; i < 100; i++)
        bm_series_observe (d, i * 0.37);
    bm_metrics_histogram (metrics, "webhook_delivery_duration_seconds",
        "Webhook delivery time in seconds", NULL, bm_buckets_latency, bm_buckets_latency_count);
    bm_metric_t *ws = bm_metrics_counter (metrics, "webhook_deliveries_total",
        "Webhook deliveries by outcome", "status");
    bm_series_inc (bm_metric_series (ws, "delivered"));
    bm_metric_t *qs = bm_metrics_gauge (metrics, "queue_size", "Jobs waiting, by bot type", "bot_type");
    bm_series_set (bm_metric_series (qs, "python"), 3);
    bm_metrics_gauge (metrics, "semaphore_usage", "Permits in use, by bot type", "bot_type");
    bm_metrics_gauge (metrics, "redis_up", "1 when Redis answers \\ \n help", NULL);
    char *text = s_render (metrics);
    int rc = s_promtool (text);
    if (rc != 0)
        fprintf (stderr, "promtool rc=%d on:\n%s", rc, text);
    CHECK (rc == 0);
    free (text);

    //  And promtool does catch a broken exposition (so this test can fail)
    CHECK (s_promtool ("# TYPE x counter\nx{a=\"unterminated} 1\n") != 0);
    bm_metrics_destroy (&metrics);
}

//  Minimal HTTP/1.0 GET against 127.0.0.1:port; returns the whole response.
static char *
s_http_get (int port, const char *request)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    CHECK (fd >= 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    CHECK (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    CHECK (write (fd, request, strlen (request)) == (ssize_t) strlen (request));
    size_t size = 0, cap = 65536;
    char *buffer = malloc (cap);
    CHECK (buffer);
    ssize_t got;
    while ((got = read (fd, buffer + size, cap - size - 1)) > 0) {
        size += (size_t) got;
        if (size + 1 == cap) {
            char *bigger = realloc (buffer, cap *= 2);
            CHECK (bigger);
            buffer = bigger;
        }
    }
    buffer [size] = 0;
    close (fd);
    return buffer;
}

static void
test_http (bool verbose)
{
    s_verbose = verbose;
    bm_metrics_t *metrics = bm_metrics_new ();
    bm_metric_t *exec = bm_metrics_counter (metrics, "bot_executions_total", "Executions", "bot_type,status");
    bm_series_add (bm_metric_series (exec, "python", "completed"), 42);
    bm_metrics_http_t *http = bm_metrics_http_new (metrics, "127.0.0.1", 0);
    CHECK (http);
    int port = bm_metrics_http_port (http);
    CHECK (port > 0);
    //  A second server on the same port fails cleanly
    CHECK (bm_metrics_http_new (metrics, "127.0.0.1", port) == NULL);

    char *reply = s_http_get (port, "GET /metrics HTTP/1.0\r\n\r\n");
    CHECK_CONTAINS (reply, "HTTP/1.1 200 OK\r\n");
    CHECK_CONTAINS (reply, "Content-Type: " BM_METRICS_CONTENT_TYPE "\r\n");
    CHECK_CONTAINS (reply, "\r\n\r\n# HELP bot_executions_total Executions\n");
    CHECK_CONTAINS (reply, "bot_executions_total{bot_type=\"python\",status=\"completed\"} 42\n");
    free (reply);
    reply = s_http_get (port, "GET /health HTTP/1.0\r\n\r\n");
    CHECK_CONTAINS (reply, "HTTP/1.1 200 OK\r\n");
    CHECK_CONTAINS (reply, "{\"status\":\"healthy\",\"timestamp\":\"");
    CHECK_CONTAINS (reply, "\"uptimeMs\":");
    CHECK_CONTAINS (reply, "X-Content-Type-Options: nosniff\r\n");
    CHECK_CONTAINS (reply, "Access-Control-Allow-Origin: *\r\n");
    free (reply);
    //  A CORS preflight is answered before any handler
    reply = s_http_get (port, "OPTIONS /metrics HTTP/1.0\r\nOrigin: http://dash.example\r\n"
                              "Access-Control-Request-Method: GET\r\n\r\n");
    CHECK_CONTAINS (reply, "HTTP/1.1 204 No Content\r\n");
    CHECK_CONTAINS (reply, "Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n");
    CHECK_CONTAINS (reply, "Access-Control-Allow-Origin: *\r\n");
    free (reply);
    reply = s_http_get (port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    CHECK_CONTAINS (reply, " 405 ");
    free (reply);
    reply = s_http_get (port, "GET /nothing HTTP/1.0\r\n\r\n");
    CHECK_CONTAINS (reply, " 404 ");
    free (reply);
    reply = s_http_get (port, "GET /metricsfoo HTTP/1.0\r\n\r\n");
    CHECK_CONTAINS (reply, " 404 ");
    free (reply);
    reply = s_http_get (port, "garbage\r\n\r\n");
    CHECK (!strstr (reply, " 200 "));
    CHECK_CONTAINS (reply, "X-Content-Type-Options: nosniff\r\n");    //  civetweb's own 400 too
    free (reply);
    bm_metrics_http_destroy (&http);
    CHECK (http == NULL);
    CHECK (bm_metrics_http_new (metrics, "127.0.0.1", 70000) == NULL);
    bm_metrics_destroy (&metrics);
}

static void
test_assets (bool verbose)
{
    s_verbose = verbose;
    const unsigned char *data;
    size_t size;
    const char *type;
    CHECK (bm_assets_find ("/admin/queues", &data, &size, &type) == 0);
    CHECK (size > 100 && strstr (type, "text/html"));
    CHECK (memmem (data, size, "app.js", 6));
    CHECK (bm_assets_find ("/admin/queues/", &data, &size, &type) == 0);
    CHECK (bm_assets_find ("/admin/queues/index.html", &data, &size, &type) == 0);
    CHECK (bm_assets_find ("/admin/queues/app.js", &data, &size, &type) == 0);
    CHECK (strstr (type, "javascript"));
    CHECK (bm_assets_find ("/admin/queues/app.css", &data, &size, &type) == 0);
    CHECK (strstr (type, "text/css"));
    CHECK (bm_assets_find ("/admin/queues/nothing.js", &data, &size, &type) == -1);
    CHECK (bm_assets_find ("/admin/queues/../app.js", &data, &size, &type) == -1);
    CHECK (bm_assets_find ("/app.js", &data, &size, &type) == -1);
    CHECK (bm_assets_find (NULL, &data, &size, &type) == -1);
    //  Query strings are ignored
    CHECK (bm_assets_find ("/admin/queues?x=1", &data, &size, &type) == 0);
}

static const bm_selftest_t s_tests [] = {
    { "render", test_render }, { "collect", test_collect },
    { "escaping", test_escaping }, { "histogram", test_histogram },
    { "concurrent", test_concurrent }, { "promtool", test_promtool },
    { "http", test_http }, { "assets", test_assets },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("bm_monitor_test", s_tests, argc, argv);
}

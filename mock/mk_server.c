/*  mk_server.c - botmesh-mock's HTTP server: records deliveries and answers
    them as its mode says.  */
#include "mk_server.h"
#include "mk_store.h"
#include "wh_signature.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"
#include "bm_metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <civetweb.h>

#define MK_JOB_ID_MAX   256     //  Longer jobIds are not indexed

#define MK_DRAIN_MS 5000            //  At stop, the longest wait for requests
                                    //  in their handler

struct _mk_server_t {
    struct mg_context *ctx;     //  civetweb server
    mk_config_t config;         //  As given (strings borrowed from the caller)
    wh_signer_t *signer;        //  NULL when no secret
    int port;                   //  Bound port
    int64_t started_ms;         //  For uptime
    pthread_mutex_t lock;       //  Guards everything below
    pthread_cond_t wake;        //  Signalled on stop, to cut delays short
    bool stopping;              //  Set by destroy
    atomic_int active;          //  Requests in their handler (not under lock)
    mk_store_t *store;          //  Deliveries and counters
    mk_mode_t mode;             //  Current failure mode
    uint64_t rng;               //  xorshift64 state for failRate/dropRate
    //  Metrics (series updates are lock-free)
    bm_metrics_t *metrics;
    bm_metric_t *received;      //  mock_webhook_deliveries_total{status}
    bm_series_t *by_status [600];   //  Resolved lazily under lock
    bm_series_t *sig_valid, *sig_invalid, *sig_unchecked;
    bm_series_t *duplicates;
    bm_series_t *records;       //  Gauge, refreshed on render
};

//  A uniform double in [0, 1).  Call under lock.
static double
s_random (mk_server_t *self)
{
    uint64_t x = self->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->rng = x;
    return (double) (x >> 11) / 9007199254740992.0;
}

//  Wait up to ms, or until the server stops.  Returns false if stopping.
static bool
s_wait (mk_server_t *self, int64_t ms)
{
    if (ms <= 0)
        return true;
    struct timespec until;
    clock_gettime (CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        int rc = pthread_cond_timedwait (&self->wake, &self->lock, &until);
        if (rc == ETIMEDOUT)
            break;
    }
    bool alive = !self->stopping;
    pthread_mutex_unlock (&self->lock);
    return alive;
}

//  The request headers as a JSON object text (caller frees).
static char *
s_headers_json (const struct mg_request_info *info)
{
    json_t *headers = json_object ();
    for (int i = 0; i < info->num_headers; i++) {
        json_t *value = json_string (info->http_headers [i].value);
        if (value && info->http_headers [i].name)
            json_object_set_new (headers, info->http_headers [i].name, value);
        else
            json_decref (value);
    }
    char *text = json_dumps (headers, JSON_COMPACT);
    json_decref (headers);
    return text;
}

//  What the mock reads from a JSON object body: jobId (copied into job_id;
//  false if none), botType (into bot_type, "" if none) and success.
static bool
s_body_fields (const char *body, size_t len, char *job_id, size_t size,
               char *bot_type, size_t type_size, int *success)
{
    json_t *json = json_loadb (body, len, 0, NULL);
    const char *id = json_string_value (json_object_get (json, "jobId"));
    bool found = id && *id && strlen (id) < size;
    if (found)
        snprintf (job_id, size, "%s", id);
    const char *type = json_string_value (json_object_get (json, "botType"));
    snprintf (bot_type, type_size, "%s", type && strlen (type) < type_size? type: "");
    json_t *flag = json_object_get (json, "success");
    *success = json_is_boolean (flag)? json_is_true (flag): -1;
    json_decref (json);
    return found;
}

static mk_sig_t
s_check_signature (mk_server_t *self, struct mg_connection *conn,
                   const char *body, size_t len, const char *webhook_id)
{
    if (!self->signer)
        return MK_SIG_UNCHECKED;
    const char *timestamp = mg_get_header (conn, "webhook-timestamp");
    const char *signature = mg_get_header (conn, "webhook-signature");
    if (!webhook_id || !timestamp || !signature)
        return MK_SIG_INVALID;
    int64_t when;
    if (bm_parse_int (timestamp, 0, INT64_MAX / 1000, &when))
        return MK_SIG_INVALID;
    int64_t skew = bm_now_ms () / 1000 - when;
    if (skew > self->config.tolerance_s || -skew > self->config.tolerance_s)
        return MK_SIG_INVALID;
    return wh_signer_verify (self->signer, webhook_id, timestamp, body, len, signature)?
           MK_SIG_VALID: MK_SIG_INVALID;
}

//  The mock_webhook_deliveries_total series of an answered status (0 or
//  out of range: "dropped"), made on first use.  Call under lock.
static bm_series_t *
s_status_series (mk_server_t *self, int status)
{
    return bm_metric_series_status (self->received, self->by_status,
                                    sizeof self->by_status / sizeof self->by_status [0],
                                    status, "dropped");
}

//  The series of every answer the mode can give, at 0 until the first
//  one, so rate() and increase() see the first delivery of each.  Call
//  under lock (or before the server starts).
static void
s_mode_series (mk_server_t *self)
{
    s_status_series (self, self->mode.success_status);
    s_status_series (self, self->mode.fail_status);
    s_status_series (self, 0);
}

//  A delivery: POST on any path but the API's.
static void
s_delivery (mk_server_t *self, struct mg_connection *conn, const char *path)
{
    char *body;
    size_t len;
    int rc = bm_http_read_body (conn, self->config.max_request, &body, &len);
    if (rc == -1) {
        //  The rest of the body is not read: the connection closes, or
        //  civetweb would read and drop it all before the next request.
        mg_disable_connection_keep_alive (conn);
        bm_http_reply_error (conn, 413, "payload_too_large", "the body is larger than %zu bytes",
                        self->config.max_request);
        return;
    }
    if (rc) {
        mg_disable_connection_keep_alive (conn);
        return;                 //  The client went away mid-body
    }
    const char *webhook_id = mg_get_header (conn, "webhook-id");
    char job_id [MK_JOB_ID_MAX], bot_type [MK_JOB_ID_MAX];
    int success;
    bool has_job = s_body_fields (body, len, job_id, sizeof job_id, bot_type, sizeof bot_type,
                                  &success);
    mk_sig_t signature = s_check_signature (self, conn, body, len, webhook_id);
    char *headers = s_headers_json (mg_get_request_info (conn));

    //  Decide and record under the lock; wait and answer outside it.
    pthread_mutex_lock (&self->lock);
    uint64_t arrival = mk_store_seen (self->store, webhook_id, has_job? job_id: NULL) + 1;
    mk_answer_t answer = mk_mode_decide (&self->mode, arrival, s_random (self), s_random (self));
    int64_t timeout_delay = self->config.timeout_delay_ms;
    if (strcmp (path, "/test/success") == 0)
        answer = (mk_answer_t) { 200, 0, false, false, NULL };
    else
    if (strcmp (path, "/test/error") == 0)
        answer = (mk_answer_t) { 500, 0, true, false, NULL };
    else
    if (strcmp (path, "/test/timeout") == 0)
        answer = (mk_answer_t) { 200, timeout_delay, false, false, NULL };
    else
    if (strcmp (path, "/test/not-found") == 0)
        answer = (mk_answer_t) { 404, 0, true, false, NULL };
    else
    if (strncmp (path, "/test/", 6) == 0)
        answer = (mk_answer_t) { 400, 0, true, false, NULL };
    char retry_after [MK_RETRY_AFTER_MAX + 32] = "";
    if (answer.retry_after)
        snprintf (retry_after, sizeof retry_after, "Retry-After: %s\r\n", answer.retry_after);
    //  The time is read under the lock that numbers the record, so that
    //  records in id order are in time order too (newest first holds for
    //  both when requests arrive at once on several threads).
    mk_arrival_t record = { bm_now_ms (), path, headers, body, len, webhook_id,
                            has_job? job_id: NULL, answer.status, signature, success,
                            *bot_type? bot_type: NULL };
    bool duplicate;
    uint64_t seq = mk_store_add (self->store, &record, &duplicate);
    bm_series_t *status_series = s_status_series (self, answer.status);
    pthread_mutex_unlock (&self->lock);
    free (headers);
    free (body);

    bm_series_inc (status_series);
    bm_series_inc (signature == MK_SIG_VALID? self->sig_valid:
                   signature == MK_SIG_INVALID? self->sig_invalid: self->sig_unchecked);
    if (duplicate)
        bm_series_inc (self->duplicates);
    bm_debug (has_job? job_id: NULL, "delivery %llu to %s webhook-id=%s: answering %d after %lld ms",
              (unsigned long long) seq, path, webhook_id? webhook_id: "-", answer.status,
              (long long) answer.delay_ms);

    if (!s_wait (self, answer.delay_ms)) {
        mg_disable_connection_keep_alive (conn);
        return;                 //  Stopping: no answer
    }
    if (answer.drop) {
        //  Close the connection without a byte of answer.
        mg_disable_connection_keep_alive (conn);
        return;
    }
    if (strncmp (path, "/test/", 6) == 0 && (answer.status == 404 || answer.status == 400))
        bm_http_reply_json (conn, answer.status,
                            json_pack ("{s:{s:s, s:s}, s:I}", "error",
                                       "code", answer.status == 404? "not_found": "bad_request",
                                       "message", answer.status == 404? "test scenario: not found"
                                       : "unknown test scenario: use success, error, timeout or not-found",
                                       "seq", (json_int_t) seq), NULL);
    else
    if (answer.failed)
        bm_http_reply_json (conn, answer.status,
                       json_pack ("{s:{s:s, s:s}, s:I}", "error", "code", "mock_failure",
                                  "message", "the mock was told to fail this delivery",
                                  "seq", (json_int_t) seq),
                       retry_after);
    else
        bm_http_reply_json (conn, answer.status,
                       json_pack ("{s:b, s:I}", "received", 1, "seq", (json_int_t) seq), NULL);
}

static void
s_get_stats (mk_server_t *self, struct mg_connection *conn)
{
    pthread_mutex_lock (&self->lock);
    json_t *stats = mk_store_stats (self->store, bm_now_ms ());
    json_object_set_new (stats, "mode", mk_mode_to_json (&self->mode));
    pthread_mutex_unlock (&self->lock);
    json_object_set_new (stats, "uptimeMs", json_integer (bm_now_ms () - self->started_ms));
    json_object_set_new (stats, "signatureCheck", json_boolean (self->signer != NULL));
    bm_http_reply_json (conn, 200, stats, NULL);
}

static void
s_get_deliveries (mk_server_t *self, struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *query = info->query_string? info->query_string: "";
    char job_id [MK_JOB_ID_MAX];
    int job_len = mg_get_var (query, strlen (query), "jobId", job_id, sizeof job_id);
    if (job_len == -2) {
        bm_http_reply_error (conn, 400, "bad_request", "jobId is too long");
        return;
    }
    char limit_text [32];
    int64_t limit = 100;
    if (mg_get_var (query, strlen (query), "limit", limit_text, sizeof limit_text) >= 0
    &&  bm_parse_int (limit_text, 1, 100000, &limit)) {
        bm_http_reply_error (conn, 400, "bad_request", "limit must be an integer from 1 to 100000");
        return;
    }
    pthread_mutex_lock (&self->lock);
    json_t *list = mk_store_deliveries (self->store, job_len > 0? job_id: NULL, (size_t) limit);
    pthread_mutex_unlock (&self->lock);
    json_t *reply = json_pack ("{s:o, s:I, s:o}",
                               "jobId", job_len > 0? json_string (job_id): json_null (),
                               "count", (json_int_t) json_array_size (list),
                               "deliveries", list);
    bm_http_reply_json (conn, 200, reply, NULL);
}

//  A query parameter as an integer in [min, max] (def when absent); false
//  after answering 400.
static bool
s_query_int (struct mg_connection *conn, const char *name, int64_t min, int64_t max,
             int64_t *value)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *query = info->query_string? info->query_string: "";
    char text [32];
    int len = mg_get_var (query, strlen (query), name, text, sizeof text);
    if (len == -1)
        return true;
    if (len < 0 || bm_parse_int (text, min, max, value)) {
        bm_http_reply_error (conn, 400, "bad_request", "%s must be an integer from %lld to %lld",
                             name, (long long) min, (long long) max);
        return false;
    }
    return true;
}

//  GET /webhooks?limit=&offset=: the deliveries on record, newest first.
static void
s_get_webhooks (mk_server_t *self, struct mg_connection *conn)
{
    int64_t limit = 50, offset = 0;
    if (!s_query_int (conn, "limit", 0, 100000, &limit)
    ||  !s_query_int (conn, "offset", 0, INT64_MAX, &offset))
        return;
    pthread_mutex_lock (&self->lock);
    json_t *reply = mk_store_webhooks (self->store, (size_t) limit, (size_t) offset);
    pthread_mutex_unlock (&self->lock);
    bm_http_reply_json (conn, 200, reply, NULL);
}

//  GET /webhooks/{id}: one delivery on record.
static void
s_get_webhook (mk_server_t *self, struct mg_connection *conn, const char *id)
{
    int64_t seq = 0;
    json_t *record = NULL;
    if (bm_parse_int (id, 1, INT64_MAX, &seq) == 0) {
        pthread_mutex_lock (&self->lock);
        record = mk_store_webhook (self->store, (uint64_t) seq);
        pthread_mutex_unlock (&self->lock);
    }
    if (record)
        bm_http_reply_json (conn, 200, record, NULL);
    else
        bm_http_reply_error (conn, 404, "not_found", "no webhook with id '%.100s' on record", id);
}

static void
s_reset (mk_server_t *self, struct mg_connection *conn)
{
    pthread_mutex_lock (&self->lock);
    mk_store_reset (self->store);
    pthread_mutex_unlock (&self->lock);
    bm_info (NULL, "stats and records reset");
    bm_http_reply_json (conn, 200, json_pack ("{s:b, s:s}", "reset", 1,
                                              "message", "all webhooks cleared"), NULL);
}

static void
s_post_mode (mk_server_t *self, struct mg_connection *conn)
{
    char *body;
    size_t len;
    if (bm_http_read_body (conn, 65536, &body, &len)) {
        mg_disable_connection_keep_alive (conn);
        bm_http_reply_error (conn, 413, "payload_too_large", "a mode is at most 64 KiB");
        return;
    }
    json_error_t json_error;
    json_t *json = json_loadb (body, len, 0, &json_error);
    free (body);
    if (!json) {
        bm_http_reply_error (conn, 400, "bad_request", "the body is not JSON: %s", json_error.text);
        return;
    }
    char error [256];
    pthread_mutex_lock (&self->lock);
    int rc = mk_mode_apply_json (&self->mode, json, error, sizeof error);
    if (rc == 0)
        s_mode_series (self);
    json_t *mode = mk_mode_to_json (&self->mode);
    pthread_mutex_unlock (&self->lock);
    json_decref (json);
    if (rc) {
        json_decref (mode);
        bm_http_reply_error (conn, 400, "bad_request", "%s", error);
        return;
    }
    char *text = json_dumps (mode, JSON_COMPACT);
    bm_info (NULL, "mode changed: %s", text? text: "?");
    free (text);
    bm_http_reply_json (conn, 200, mode, NULL);
}

static void
s_collect (bm_metrics_t *metrics, void *arg)
{
    (void) metrics;
    mk_server_t *self = (mk_server_t *) arg;
    pthread_mutex_lock (&self->lock);
    size_t records = mk_store_size (self->store);
    pthread_mutex_unlock (&self->lock);
    bm_series_set (self->records, (double) records);
}

static int s_handle_request (struct mg_connection *conn, mk_server_t *self);

//  Every request, counted while in its handler: destroy waits for those
//  before it stops civetweb.
static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    mk_server_t *self = (mk_server_t *) cbdata;
    atomic_fetch_add (&self->active, 1);
    int rc = s_handle_request (conn, self);
    atomic_fetch_sub (&self->active, 1);
    return rc;
}

static int
s_handle_request (struct mg_connection *conn, mk_server_t *self)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *method = info->request_method;
    const char *path = info->local_uri? info->local_uri: "/";
    bool get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;

    if (strcmp (path, "/health") == 0 && get)
        bm_http_reply_json (conn, 200, bm_http_health (), NULL);
    else
    if (strcmp (path, "/ready") == 0 && get)       //  Nothing to wait for
        bm_http_reply_json (conn, 200, json_pack ("{s:s}", "status", "ready"), NULL);
    else
    if (strcmp (path, "/stats") == 0 && get)
        s_get_stats (self, conn);
    else
    if ((strcmp (path, "/stats") == 0 || strcmp (path, "/webhooks") == 0)
    &&  strcmp (method, "DELETE") == 0)
        s_reset (self, conn);
    else
    if (strcmp (path, "/webhooks") == 0 && get)
        s_get_webhooks (self, conn);
    else
    if (strncmp (path, "/webhooks/", 10) == 0 && get)
        s_get_webhook (self, conn, path + 10);
    else
    if (strcmp (path, "/deliveries") == 0 && get)
        s_get_deliveries (self, conn);
    else
    if (strcmp (path, "/mode") == 0 && get) {
        pthread_mutex_lock (&self->lock);
        json_t *mode = mk_mode_to_json (&self->mode);
        pthread_mutex_unlock (&self->lock);
        bm_http_reply_json (conn, 200, mode, NULL);
    }
    else
    if (strcmp (path, "/mode") == 0 && strcmp (method, "POST") == 0)
        s_post_mode (self, conn);
    else
    if (strcmp (path, "/metrics") == 0 && get)
        bm_http_reply_metrics (conn, bm_metrics_render (self->metrics));
    else
    if (strcmp (method, "POST") == 0
    &&  strcmp (path, "/stats") != 0 && strcmp (path, "/deliveries") != 0
    &&  strcmp (path, "/health") != 0 && strcmp (path, "/metrics") != 0)
        s_delivery (self, conn, path);
    else
    if (strcmp (path, "/stats") == 0 || strcmp (path, "/deliveries") == 0
    ||  strcmp (path, "/health") == 0 || strcmp (path, "/metrics") == 0
    ||  strcmp (path, "/mode") == 0 || strcmp (path, "/webhooks") == 0
    ||  strncmp (path, "/webhooks/", 10) == 0)
        bm_http_reply_error (conn, 405, "method_not_allowed", "%s is not allowed on %s", method, path);
    else
        bm_http_reply_error (conn, 404, "not_found",
                        "deliveries are POSTed; GET /stats, /webhooks, /webhooks/{id}, /deliveries, "
                        "/mode, /metrics, /health, /ready; DELETE /webhooks");
    return 1;
}

mk_server_t *
mk_server_new (const mk_config_t *config, char *error, size_t error_size)
{
    mk_server_t *self = (mk_server_t *) calloc (1, sizeof (mk_server_t));
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    self->config = *config;
    self->mode = config->mode;
    self->started_ms = bm_now_ms ();
    self->rng = (uint64_t) bm_now_ms () * 0x9E3779B97F4A7C15ULL | 1;
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wake, &attr);
    pthread_condattr_destroy (&attr);

    if (config->secret && *config->secret) {
        char reason [160];
        self->signer = wh_signer_new (config->secret, reason, sizeof reason);
        if (!self->signer) {
            snprintf (error, error_size, "MOCK_WEBHOOK_SECRET: %s", reason);
            mk_server_destroy (&self);
            return NULL;
        }
    }
    self->store = mk_store_new (config->max_records, config->max_body_stored);
    self->metrics = bm_metrics_new ();
    if (!self->store || !self->metrics) {
        snprintf (error, error_size, "out of memory");
        mk_server_destroy (&self);
        return NULL;
    }
    self->received = bm_metrics_counter (self->metrics, "mock_webhook_deliveries_total",
        "Deliveries received by the mock, by the status it answered (dropped: no answer)", "status");
    bm_metric_t *signatures = bm_metrics_counter (self->metrics, "mock_webhook_signatures_total",
        "Signature checks of received deliveries", "result");
    self->sig_valid = bm_metric_series (signatures, "valid");
    self->sig_invalid = bm_metric_series (signatures, "invalid");
    self->sig_unchecked = bm_metric_series (signatures, "unchecked");
    s_mode_series (self);
    self->duplicates = bm_metric_series (bm_metrics_counter (self->metrics,
        "mock_webhook_duplicates_total",
        "2xx-answered deliveries whose webhook-id had already been answered 2xx", NULL));
    self->records = bm_metric_series (bm_metrics_gauge (self->metrics, "mock_webhook_records",
        "Deliveries kept in memory (at most MOCK_MAX_RECORDS)", NULL));
    bm_metrics_set_collect (self->metrics, s_collect, self);

    char threads [16], keep_alive [16];
    snprintf (threads, sizeof threads, "%d", config->threads);
    snprintf (keep_alive, sizeof keep_alive, "%d", config->keep_alive_ms > 0? config->keep_alive_ms: 500);
    const char *options [] = {
        "num_threads", threads,
        "enable_keep_alive", config->keep_alive_ms > 0? "yes": "no",
        "keep_alive_timeout_ms", keep_alive,
        "request_timeout_ms", "30000",
        "listen_backlog", "1024",
        NULL
    };
    self->ctx = bm_http_start (config->listen_addr, config->port, options, NULL, self,
                               &self->port, error, error_size);
    if (!self->ctx) {
        mk_server_destroy (&self);
        return NULL;
    }
    mg_set_request_handler (self->ctx, "/", s_handle, self);
    return self;
}

void
mk_server_destroy (mk_server_t **self_p)
{
    if (*self_p) {
        mk_server_t *self = *self_p;
        pthread_mutex_lock (&self->lock);
        self->stopping = true;
        pthread_cond_broadcast (&self->wake);
        pthread_mutex_unlock (&self->lock);
        //  Requests in their handler finish (a delayed or hanging answer is
        //  cut short by the wake above); then civetweb stops, idle
        //  keep-alive connections at once (bm_http_stop_drained).
        int64_t until = bm_mono_ms () + MK_DRAIN_MS;
        while (atomic_load (&self->active) > 0 && bm_mono_ms () < until) {
            struct timespec pause = { 0, 5 * 1000 * 1000 };
            nanosleep (&pause, NULL);
        }
        if (self->ctx && atomic_load (&self->active) == 0)
            bm_http_stop_drained (self->ctx, self->config.listen_addr);
        else
        if (self->ctx)
            bm_http_stop (self->ctx, self->config.listen_addr);
        mk_store_destroy (&self->store);
        bm_metrics_destroy (&self->metrics);
        wh_signer_destroy (&self->signer);
        pthread_cond_destroy (&self->wake);
        pthread_mutex_destroy (&self->lock);
        free (self);
        *self_p = NULL;
    }
}

int
mk_server_port (mk_server_t *self)
{
    return self->port;
}

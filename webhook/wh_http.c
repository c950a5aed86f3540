/*  wh_http.c - botmesh-webhook's HTTP API (civetweb, its own threads).  */
#include "wh_http.h"
#include "bm_auth.h"
#include "bm_client.h"
#include "bm_codec.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"

#include <civetweb.h>
#include <pthread.h>
#include <string.h>

#define WH_REDELIVER_TIMEOUT_MS 5000

struct _wh_http_t {
    struct mg_context *ctx;     //  civetweb
    const wh_config_t *config;  //  Borrowed
    wh_engine_t *engine;        //  Borrowed: only its atomics are read
    bm_worker_link_t *link;            //  Borrowed: only its atomics are read
    bm_metrics_t *metrics;      //  Borrowed
    int port;                   //  Bound port
    int64_t started_ms;
    bm_auth_t *auth;            //  API_KEYS (maybe none)
    bm_auth_t *admin;           //  ADMIN_API_KEYS (maybe none)
    bm_series_t *m_connected;           //  webhook_broker_connected
    bm_series_t *m_credit;              //  webhook_credit (the manager sets it)
    bm_series_t *m_reconnects;          //  webhook_broker_reconnects_total
    bm_metric_t *m_redeliver;           //  webhook_redeliver_requests_total{result}
};

//  One broker client per civetweb thread, made on first use.
static __thread bm_client_t *tl_client;

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *thread_pointer)
{
    (void) ctx;
    (void) thread_type;
    (void) thread_pointer;
    bm_client_destroy (&tl_client);
}

static void
s_collect (bm_metrics_t *metrics, void *arg)
{
    (void) metrics;
    wh_http_t *self = (wh_http_t *) arg;
    bm_series_set (self->m_connected, bm_worker_link_connected (self->link)? 1: 0);
    double reconnects = (double) bm_worker_link_reconnects (self->link);
    double seen = bm_series_value (self->m_reconnects);
    if (reconnects > seen)
        bm_series_add (self->m_reconnects, reconnects - seen);
}

static void
s_stats (wh_http_t *self, struct mg_connection *conn)
{
    const wh_config_t *c = self->config;
    json_t *stats = wh_engine_stats (self->engine);
    json_object_set_new (stats, "name", json_string (c->name));
    json_object_set_new (stats, "credit", json_integer ((json_int_t) bm_series_value (self->m_credit)));
    json_object_set_new (stats, "uptimeMs", json_integer (bm_now_ms () - self->started_ms));
    json_object_set_new (stats, "broker", json_pack ("{s:s, s:b, s:I}",
        "endpoint", c->broker_endpoint,
        "connected", bm_worker_link_connected (self->link),
        "reconnects", (json_int_t) bm_worker_link_reconnects (self->link)));
    json_object_set_new (stats, "config", json_pack (
        "{s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:b, s:b}",
        "maxRetries", (json_int_t) c->max_retries,
        "maxAttempts", (json_int_t) c->max_retries + 1,
        "retryDelayMs", (json_int_t) c->retry_delay_ms,
        "maxDelayMs", (json_int_t) c->max_delay_ms,
        "jitter", wh_jitter_name (c->jitter),
        "timeoutMs", (json_int_t) c->timeout_ms,
        "maxInflight", (json_int_t) c->max_inflight,
        "signed", c->secret != NULL,
        "allowPrivate", c->allow_private));
    bm_http_reply_json (conn, 200, stats, NULL);
}

//  Who may use an endpoint when API_KEYS is set.
typedef enum {
    S_OPEN,         //  Anyone: /health, /ready (and /metrics unless METRICS_REQUIRE_KEY)
    S_KEY,          //  Any key of API_KEYS: /stats
    S_ADMIN         //  A key of ADMIN_API_KEYS when set, else any key: the redelivery
} s_access_t;

//  Check the request's API key as the gateway does.  0, or -1 after
//  answering 401 (no valid key) or 403 (a key not in ADMIN_API_KEYS).
static int
s_authenticate (wh_http_t *self, struct mg_connection *conn, s_access_t access)
{
    if (access == S_OPEN || !bm_auth_enabled (self->auth))
        return 0;
    size_t len = 0;
    const char *key = bm_auth_presented (mg_get_header (conn, "Authorization"),
                                         mg_get_header (conn, "X-API-Key"), &len);
    if (bm_auth_check (self->auth, key, len) < 0) {
        if (access == S_ADMIN)
            bm_series_inc (bm_metric_series (self->m_redeliver, "unauthorized"));
        bm_http_reply_json (conn, 401, json_pack ("{s:{s:s, s:s}}", "error", "code", "unauthorized",
            "message", key ? "the API key is not valid"
                           : "an API key is required (Authorization: Bearer KEY or X-API-Key)"),
            "WWW-Authenticate: Bearer\r\n");
        return -1;
    }
    if (access == S_ADMIN && self->admin && bm_auth_check (self->admin, key, len) < 0) {
        bm_series_inc (bm_metric_series (self->m_redeliver, "forbidden"));
        bm_http_reply_error (conn, 403, "forbidden",
                             "this API key may not ask for redeliveries (ADMIN_API_KEYS)");
        return -1;
    }
    return 0;
}

//  POST /deliveries/{jobId}/retry: REDELIVER {req, jobId} to the broker.
static void
s_retry (wh_http_t *self, struct mg_connection *conn, const char *job_id)
{
    if (!bm_valid_id (job_id, strlen (job_id))) {
        bm_http_reply_error (conn, 400, "bad_request",
                        "jobId must be 1-128 printable characters without spaces");
        return;
    }
    if (!tl_client)
        tl_client = bm_client_new (self->config->broker_endpoint);
    if (!tl_client) {
        bm_http_reply_error (conn, 503, "broker_unavailable", "cannot open a socket to the broker");
        return;
    }
    bm_codec_job_ref_t ref = { .has_req = true, .req = bm_client_next_req (tl_client) };
    snprintf (ref.job_id, sizeof ref.job_id, "%s", job_id);
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_job_ref_encode (&ref, &packer);
    bm_msg_t *reply = bm_packer_failed (&packer) ? NULL
                    : bm_client_request (tl_client, BM_REDELIVER, packer.sbuf.data,
                                         packer.sbuf.size, WH_REDELIVER_TIMEOUT_MS);
    bm_packer_destroy (&packer);
    if (!reply) {
        bm_series_inc (bm_metric_series (self->m_redeliver, "timeout"));
        bm_http_reply_error (conn, 504, "broker_timeout",
                        "the broker did not answer within %d ms", WH_REDELIVER_TIMEOUT_MS);
        return;
    }
    const msgpack_object *body = bm_msg_body (reply);
    if (bm_msg_command (reply) == BM_ACCEPTED) {
        bm_series_inc (bm_metric_series (self->m_redeliver, "accepted"));
        bm_info (job_id, "redelivery requested over HTTP");
        //  The same fields as the gateway's POST /job/{id}/redeliver.
        bm_http_reply_json (conn, 202, json_pack ("{s:s, s:s, s:s}", "jobId", job_id,
                                             "status", "redelivery queued",
                                             "webhook", "pending"), NULL);
    }
    else
    if (bm_msg_command (reply) == BM_REJECTED) {
        char code [64] = "rejected", message [512] = "the broker rejected the request";
        bm_obj_strcpy (body, "code", code, sizeof code);
        bm_obj_strcpy (body, "message", message, sizeof message);
        int status = strcmp (code, "not_found") == 0? 404
                   : strcmp (code, "conflict") == 0? 409
                   : strcmp (code, "bad_request") == 0? 400: 503;
        bm_series_inc (bm_metric_series (self->m_redeliver, status == 503? "error": code));
        bm_http_reply_error (conn, status, code, "%s", message);
    }
    else {
        bm_series_inc (bm_metric_series (self->m_redeliver, "error"));
        bm_http_reply_error (conn, 502, "bad_gateway", "unexpected answer from the broker");
    }
    bm_msg_destroy (&reply);
}

//  The paths under which requests change state: their answers (and
//  their CORS preflights) carry no "Access-Control-Allow-Origin: *", only
//  the origins CORS_ORIGINS names.
static bool
s_state_changing (const char *path)
{
    return path && strncmp (path, "/deliveries/", 12) == 0;
}

//  civetweb's begin_request: bm_http_begin_request (framing, preflights),
//  with no wildcard CORS for the state-changing paths.
static int
s_begin_request (struct mg_connection *conn)
{
    bm_http_cors_off (s_state_changing (mg_get_request_info (conn)->local_uri));
    int rc = bm_http_begin_request (conn);
    bm_http_cors_off (false);
    return rc;
}

static void
s_dispatch (wh_http_t *self, struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *method = info->request_method;
    const char *path = info->local_uri? info->local_uri: "/";
    bool get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;

    //  /deliveries/{jobId}/retry
    const char *prefix = "/deliveries/", *suffix = "/retry";
    size_t path_len = strlen (path), prefix_len = strlen (prefix), suffix_len = strlen (suffix);
    if (path_len > prefix_len + suffix_len && strncmp (path, prefix, prefix_len) == 0
    &&  strcmp (path + path_len - suffix_len, suffix) == 0) {
        if (strcmp (method, "POST") != 0) {
            bm_http_reply_error (conn, 405, "method_not_allowed", "use POST");
            return;
        }
        //  A page of another origin must not make a browser replay webhooks
        //  (a form POST needs no preflight): refused unless CORS_ORIGINS
        //  names its origin.  Clients that are not browsers send no Origin.
        const char *origin = mg_get_header (conn, "Origin");
        if (origin && !bm_http_origin_listed (origin)) {
            bm_series_inc (bm_metric_series (self->m_redeliver, "forbidden"));
            bm_http_reply_error (conn, 403, "forbidden_origin",
                                 "requests from browser pages of another origin may not ask for "
                                 "redeliveries (CORS_ORIGINS does not list it)");
            return;
        }
        if (s_authenticate (self, conn, S_ADMIN))
            return;
        char job_id [BM_MAX_ID_LEN + 2];
        size_t id_len = path_len - prefix_len - suffix_len;
        if (id_len >= sizeof job_id) {
            bm_http_reply_error (conn, 400, "bad_request", "jobId is longer than %d bytes", BM_MAX_ID_LEN);
            return;
        }
        memcpy (job_id, path + prefix_len, id_len);
        job_id [id_len] = 0;
        s_retry (self, conn, job_id);
    }
    else
    if (strcmp (path, "/health") == 0 && get) {
        json_t *health = bm_http_health ();
        json_object_set_new (health, "broker", json_pack ("{s:b}", "connected",
                                                          bm_worker_link_connected (self->link)));
        bm_http_reply_json (conn, 200, health, NULL);
    }
    else
    if (strcmp (path, "/ready") == 0 && get) {
        //  Ready while the broker link is up: deliveries come from it.
        if (bm_worker_link_connected (self->link))
            bm_http_reply_json (conn, 200, json_pack ("{s:s}", "status", "ready"), NULL);
        else
            bm_http_reply_error (conn, 503, "broker_unavailable",
                                 "the webhook manager has no answer from the broker at BROKER_ENDPOINT");
    }
    else
    if (strcmp (path, "/stats") == 0 && get) {
        if (!s_authenticate (self, conn, S_KEY))
            s_stats (self, conn);
    }
    else
    if (strcmp (path, "/metrics") == 0 && get) {
        if (!s_authenticate (self, conn, self->config->metrics_require_key ? S_KEY : S_OPEN))
            bm_http_reply_metrics (conn, bm_metrics_render (self->metrics));
    }
    else
    if (strcmp (path, "/health") == 0 || strcmp (path, "/ready") == 0 || strcmp (path, "/stats") == 0
    ||  strcmp (path, "/metrics") == 0)
        bm_http_reply_error (conn, 405, "method_not_allowed", "use GET");
    else
        bm_http_reply_error (conn, 404, "not_found",
                        "GET /health, /ready, /stats, /metrics; POST /deliveries/{jobId}/retry");
}

static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    bm_http_cors_off (s_state_changing (mg_get_request_info (conn)->local_uri));
    s_dispatch ((wh_http_t *) cbdata, conn);
    bm_http_cors_off (false);
    return 1;
}

wh_http_t *
wh_http_new (const wh_config_t *config, bm_metrics_t *metrics,
             wh_engine_t *engine, char *error, size_t error_size)
{
    wh_http_t *self = (wh_http_t *) calloc (1, sizeof (wh_http_t));
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    self->config = config;
    self->engine = engine;
    self->metrics = metrics;
    self->started_ms = bm_now_ms ();
    char reason [200];
    self->auth = bm_auth_new (config->api_keys, reason, sizeof reason);
    if (!self->auth
    ||  bm_auth_admin_new (self->auth, config->admin_api_keys, &self->admin, reason, sizeof reason)) {
        snprintf (error, error_size, "configuration: %s", reason);
        bm_auth_destroy (&self->auth);
        free (self);
        return NULL;
    }
    self->m_credit = bm_metric_series (bm_metrics_gauge (metrics, WH_CREDIT_METRIC, WH_CREDIT_HELP, NULL));
    self->m_connected = bm_metric_series (bm_metrics_gauge (metrics, "webhook_broker_connected",
        "1 when the broker spoke within the heartbeat liveness window", NULL));
    self->m_reconnects = bm_metric_series (bm_metrics_counter (metrics,
        "webhook_broker_reconnects_total", "Reconnections to a silent or forgetful broker", NULL));
    self->m_redeliver = bm_metrics_counter (metrics, "webhook_redeliver_requests_total",
        "POST /deliveries/{jobId}/retry requests, by outcome", "result");
    //  Every outcome at 0 from the start, so rate() sees the first of each.
    static const char *results [] = { "accepted", "unauthorized", "forbidden", "not_found",
                                      "conflict", "bad_request", "timeout", "error" };
    for (size_t i = 0; i < sizeof results / sizeof results [0]; i++)
        bm_metric_series (self->m_redeliver, results [i]);

    char threads [16];
    snprintf (threads, sizeof threads, "%d", (int) config->http_threads);
    const char *options [] = {
        "num_threads", threads,
        "enable_keep_alive", "no",
        "request_timeout_ms", "10000",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.exit_thread = s_exit_thread;
    callbacks.begin_request = s_begin_request;
    self->ctx = bm_http_start (config->listen_addr, (int) config->port, options, &callbacks, self,
                               &self->port, error, error_size);
    if (!self->ctx) {
        bm_auth_destroy (&self->auth);
        bm_auth_destroy (&self->admin);
        free (self);
        return NULL;
    }
    return self;
}

void
wh_http_serve (wh_http_t *self, bm_worker_link_t *link)
{
    self->link = link;
    bm_metrics_set_collect (self->metrics, s_collect, self);
    mg_set_request_handler (self->ctx, "/", s_handle, self);
}

void
wh_http_destroy (wh_http_t **self_p)
{
    if (*self_p) {
        wh_http_t *self = *self_p;
        bm_http_stop (self->ctx, self->config->listen_addr);    //  mg_stop, promptly
        bm_metrics_set_collect (self->metrics, NULL, NULL);
        bm_auth_destroy (&self->auth);
        bm_auth_destroy (&self->admin);
        free (self);
        *self_p = NULL;
    }
}

int
wh_http_port (wh_http_t *self)
{
    return self->port;
}

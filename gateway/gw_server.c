/*  gw_server.c - botmesh-gateway's HTTP server (civetweb) and its routes.

    Threads and sockets
    -------------------
    civetweb serves each connection on one of `num_threads` worker threads,
    for as long as the connection stays open (keep-alive).  Every handler
    thread talks to the broker through the server's one gw_link_t: a single
    pipelined DEALER owned by the link's own thread, which batches the
    requests of all handler threads and hands each reply (matched by "req")
    back to the thread that waits for it.  (Before the shared link, each handler
    thread had its own DEALER and blocked on it for one round trip: 64
    sockets with one request each in flight, nothing for libzmq to batch,
    most of the gateway's CPU in context switches.  gw_link.c explains the
    design.)  The thread's Redis connection for /api/history stays per
    thread (hiredis contexts are not thread-safe), made on first use.

    This file holds civetweb's set-up and callbacks, the routing (with
    authentication and rate limiting), the metrics and the lifecycle;
    gw_request.c reads and answers requests and asks the broker,
    gw_routes.c holds the handlers.  */
#include "gw_server_priv.h"
#include "gw_request.h"
#include "gw_routes.h"
#include "gw_wait.h"
#include "gw_events.h"

#include "bm_assets.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"
#include "bm_metrics.h"
#include "bm_proto.h"
#include "bm_ssrf.h"
#include "bm_codec_control.h"

#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>

//  --------------------------------------------------------------------------
//  Routes

static const struct {
    const char *label;          //  Route template, the metrics label
    const char *method;         //  The one method it answers
    bool needs_key;             //  Behind API_KEYS (when keys are set)
    bool limited;               //  Behind the rate limiter (when it is on)
} s_routes [R_COUNT] = {
    [R_HEALTH]        = { "/health",              "GET",  false, false },
    [R_READY]         = { "/ready",               "GET",  false, false },
    [R_METRICS]       = { "/metrics",             "GET",  false, false },
    [R_INVOKE]        = { "/invoke",              "POST", true,  true  },
    [R_INVOKE_BATCH]  = { "/invoke/batch",        "POST", true,  true  },
    [R_FLOWS]         = { "/flows",               "POST", true,  true  },
    [R_JOB]           = { "/job/{id}",            "GET",  true,  true  },
    [R_JOB_CANCEL]    = { "/job/{id}/cancel",     "POST", true,  true  },
    [R_JOB_RETRY]     = { "/job/{id}/retry",      "POST", true,  true  },
    [R_JOB_REDELIVER] = { "/job/{id}/redeliver",  "POST", true,  true  },
    [R_JOB_DELETE]    = { "/job/{id}",            "DELETE", true, true  },
    [R_JOB_PROMOTE]   = { "/job/{id}/promote",    "POST", true,  true  },
    [R_JOB_LOGS]      = { "/job/{id}/logs",       "GET",  true,  true  },
    [R_QUEUE_PAUSE]   = { "/queues/{botType}/pause",  "POST", true, true },
    [R_QUEUE_RESUME]  = { "/queues/{botType}/resume", "POST", true, true },
    [R_QUEUE_DRAIN]   = { "/queues/{botType}/drain",  "POST", true, true },
    [R_QUEUE_CLEAN]   = { "/queues/{botType}/clean",  "POST", true, true },
    [R_QUEUE_RETRY]   = { "/queues/{botType}/retry",  "POST", true, true },
    [R_SCHEDULE_ADD]  = { "/schedules",           "POST", true,  true  },
    [R_SCHEDULES]     = { "/schedules",           "GET",  true,  true  },
    [R_SCHEDULE_DELETE] = { "/schedules/{key}",   "DELETE", true, true },
    [R_JOBS]          = { "/jobs",                "GET",  true,  true  },
    [R_STATS]         = { "/stats",               "GET",  true,  true  },
    [R_ADMIN]         = { "/admin/queues",        "GET",  false, false },
    [R_HISTORY]       = { "/api/history",         "GET",  true,  true  },
    [R_INDEX]         = { "/",                    "GET",  false, false },
    [R_EVENTS]        = { "/events",              "GET",  true,  true  },
    [R_OTHER]         = { "other",                NULL,   false, false },
};

//  The status codes we answer with, for the per-code series cache.
static const int s_codes [] = { 200, 202, 207, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429,
                                500, 502, 503, 504 };
_Static_assert (sizeof s_codes / sizeof s_codes [0] == GW_NCODES, "GW_NCODES");

//  Reasons a job is refused on POST /invoke, /invoke/batch or /flows (a request,
//  or a batch's item): gateway_invoke_rejected_total{reason}.  A fixed
//  list, so that label values never come from the peer: the error codes
//  those routes answer with (gw_invoke.c, gw_invoke_batch.c, the body
//  reader, the broker's REJECTED codes as gw_request_rejection maps them,
//  authentication, the rate limiter, drain), each counted under its own
//  name; "other" for the rest (not_found, conflict: no job is refused so).
//  gateway.invoke_rejected checks the list against the sources.
static const char *s_reasons [] = {
    "invalid_json", "invalid_body", "missing_field", "invalid_bot_type", "invalid_payload",
    "invalid_webhook_url", "invalid_priority", "invalid_idempotency_key", "invalid_timeout",
    "invalid_max_attempts", "invalid_attempts", "invalid_backoff", "invalid_delay",
    "invalid_run_at", "invalid_dependencies", "payload_too_large", "body_too_large", "too_many_jobs",
    "unsupported_media_type", "unauthorized", "rate_limited", "bad_request", "queue_full",
    "store_unavailable", "shutting_down", "broker_timeout", "broker_unavailable",
    "broker_connection_lost", "broker_error", "request_timeout", "idempotency_key_reused",
    "out_of_memory", "invalid_wait", "too_many_waiters", "invalid_flow", "other"
};
_Static_assert (sizeof s_reasons / sizeof s_reasons [0] == GW_NREASONS, "GW_NREASONS");

//  --------------------------------------------------------------------------
//  Metrics helpers

static bm_series_t *
s_requests_series (gw_server_t *self, gw_route_t route, int status)
{
    for (int i = 0; i < GW_NCODES; i++)
        if (s_codes [i] == status) {
            bm_series_t *s = atomic_load_explicit (&self->requests [route][i], memory_order_acquire);
            if (!s) {
                //  Find-or-create is idempotent: two threads racing here get
                //  the same series.
                char code [8];
                snprintf (code, sizeof code, "%d", status);
                s = bm_metric_series (self->m_requests, s_routes [route].label, code);
                atomic_store_explicit (&self->requests [route][i], s, memory_order_release);
            }
            return s;
        }
    char code [8];
    snprintf (code, sizeof code, "%d", status);
    return bm_metric_series (self->m_requests, s_routes [route].label, code);
}

void
gw_server_count_rejected (gw_server_t *self, const char *reason)
{
    int index = GW_NREASONS - 1;             //  "other"
    for (int i = 0; i < GW_NREASONS - 1; i++)
        if (streq (s_reasons [i], reason)) {
            index = i;
            break;
        }
    bm_series_inc (self->rejected [index]);
}

static int
s_metrics_init (gw_server_t *self)
{
    bm_metrics_t *m = self->metrics = bm_metrics_new ();
    self->m_requests = bm_metrics_counter (m, "gateway_http_requests_total",
        "HTTP requests answered by the gateway, by route and status code", "route,code");
    self->m_duration = bm_metrics_histogram (m, "gateway_http_request_duration_seconds",
        "Time from request to response, by route", "route", NULL, 0);
    self->m_rejected = bm_metrics_counter (m, "gateway_invoke_rejected_total",
        "Jobs refused on POST /invoke and /invoke/batch (a request, or an item of a batch), by reason",
        "reason");
    bm_metric_t *accepted = bm_metrics_counter (m, "gateway_invoke_accepted_total",
        "Jobs the broker accepted through this gateway", NULL);
    bm_metric_t *duplicates = bm_metrics_counter (m, "gateway_invoke_duplicates_total",
        "POST /invoke answered with an earlier job (same idempotencyKey)", NULL);
    bm_metric_t *broker_errors = bm_metrics_counter (m, "gateway_broker_errors_total",
        "Broker requests that failed: timeout (504), unavailable (503), bad_reply", "kind");
    bm_metric_t *limited = bm_metrics_counter (m, "gateway_rate_limited_total",
        "Requests refused with 429 by the rate limiter", NULL);
    bm_metric_t *auth = bm_metrics_counter (m, "gateway_auth_failures_total",
        "Requests refused with 401 (missing or unknown API key)", NULL);
    bm_metric_t *in_flight = bm_metrics_gauge (m, "gateway_requests_in_flight",
        "Requests being served right now", NULL);
    bm_metric_t *history = bm_metrics_counter (m, "gateway_history_errors_total",
        "GET /api/history answered 503 because Redis could not be read", NULL);
    bm_metric_t *threads = bm_metrics_gauge (m, "gateway_threads",
        "HTTP worker threads (GATEWAY_THREADS): the most keep-alive clients served at once",
        NULL);
    bm_metric_t *waiting = bm_metrics_gauge (m, "gateway_waiters",
        "Requests waiting for a job to finish (?wait=MS), at most GATEWAY_MAX_WAITERS", NULL);
    bm_metric_t *streams = bm_metrics_gauge (m, "gateway_event_streams",
        "GET /events streams open, at most GATEWAY_MAX_EVENT_STREAMS", NULL);
    if (!self->m_requests || !self->m_duration || !self->m_rejected || !accepted
    ||  !duplicates || !broker_errors || !limited || !auth || !in_flight
    ||  !history || !threads || !waiting)
        return -1;
    for (int r = 0; r < R_COUNT; r++)
        self->duration [r] = bm_metric_series (self->m_duration, s_routes [r].label);
    for (int i = 0; i < GW_NREASONS; i++)
        self->rejected [i] = bm_metric_series (self->m_rejected, s_reasons [i]);
    self->accepted = bm_metric_series (accepted);
    self->duplicates = bm_metric_series (duplicates);
    self->broker_timeouts = bm_metric_series (broker_errors, "timeout");
    self->broker_unavailable = bm_metric_series (broker_errors, "unavailable");
    self->broker_bad_replies = bm_metric_series (broker_errors, "bad_reply");
    self->rate_limited = bm_metric_series (limited);
    self->auth_failures = bm_metric_series (auth);
    self->in_flight = bm_metric_series (in_flight);
    self->history_errors = bm_metric_series (history);
    self->threads = bm_metric_series (threads);
    self->waiting = bm_metric_series (waiting);
    self->event_streams = streams ? bm_metric_series (streams) : NULL;
    bm_series_set (self->threads, (double) self->config.threads);
    return 0;
}

//  --------------------------------------------------------------------------
//  Routing, authentication, rate limiting

//  The longest path routed (decoded): longer ones are no route's.
#define GW_PATH_MAX     2048

//  Percent-decode src[0..len) into dest[size] ('+' stays '+': a path is no
//  form).  Its length, or -1 when it does not fit or decodes to a NUL.
static int
s_decode (const char *src, size_t len, char *dest, size_t size)
{
    if (len >= size * 3)
        return -1;
    int n = mg_url_decode (src, (int) len, dest, (int) size, 0);
    if (n < 0 || strlen (dest) != (size_t) n)
        return -1;
    return n;
}

//  /job/{id}[/action] on the path as sent, still percent-encoded: the id
//  is one segment, decoded alone, so that an id holding '/' (a schedule's
//  run "<key>@<ms>" whose key holds one) is reached as %2F.  Fills
//  r->job_id.
static gw_route_t
s_route_job (gw_request_t *r, const char *raw)
{
    const char *id = raw + 5;
    const char *slash = strchr (id, '/');
    size_t len = slash ? (size_t) (slash - id) : strlen (id);
    char action [16];
    int n = s_decode (id, len, r->job_id, sizeof r->job_id);
    if (n < 0 || !bm_valid_id (r->job_id, (size_t) n)) {
        r->job_id [0] = 0;
        return R_OTHER;
    }
    if (!slash)
        return streq (r->ri->request_method, "DELETE") ? R_JOB_DELETE : R_JOB;
    if (s_decode (slash, strlen (slash), action, sizeof action) < 0)
        return R_OTHER;
    if (streq (action, "/cancel"))      return R_JOB_CANCEL;
    if (streq (action, "/retry"))       return R_JOB_RETRY;
    if (streq (action, "/redeliver"))   return R_JOB_REDELIVER;
    if (streq (action, "/promote"))     return R_JOB_PROMOTE;
    if (streq (action, "/logs"))        return R_JOB_LOGS;
    return R_OTHER;
}

//  Match the path to a route: raw as sent (civetweb leaves it encoded,
//  decode_url=no), path decoded.  Fills r->job_id for /job/{id}...
static gw_route_t
s_route (gw_request_t *r, const char *raw, const char *path)
{
    if (strncmp (raw, "/job/", 5) == 0)
        return s_route_job (r, raw);
    if (streq (path, "/invoke"))        return R_INVOKE;
    if (streq (path, "/"))              return R_INDEX;
    if (streq (path, "/invoke/batch"))  return R_INVOKE_BATCH;
    if (streq (path, "/flows"))         return R_FLOWS;
    if (streq (path, "/health"))        return R_HEALTH;
    if (streq (path, "/ready"))         return R_READY;
    if (streq (path, "/metrics"))       return R_METRICS;
    if (streq (path, "/stats"))         return R_STATS;
    if (streq (path, "/jobs"))          return R_JOBS;
    if (streq (path, "/api/history"))   return R_HISTORY;
    if (streq (path, "/events"))        return R_EVENTS;
    if (streq (path, "/schedules"))
        return streq (r->ri->request_method, "POST") ? R_SCHEDULE_ADD : R_SCHEDULES;
    if (strncmp (path, "/schedules/", 11) == 0) {
        const char *key = path + 11;
        size_t len = strlen (key);
        if (len > BM_MAX_SCHEDULE_KEY_LEN || !bm_valid_id (key, len))
            return R_OTHER;
        memcpy (r->job_id, key, len + 1);
        return R_SCHEDULE_DELETE;
    }
    if (strncmp (path, BM_ASSETS_PREFIX, strlen (BM_ASSETS_PREFIX)) == 0) {
        char next = path [strlen (BM_ASSETS_PREFIX)];
        if (next == 0 || next == '/')
            return R_ADMIN;
        return R_OTHER;
    }
    if (strncmp (path, "/queues/", 8) == 0) {
        const char *type = path + 8;
        const char *slash = strchr (type, '/');
        size_t len = slash ? (size_t) (slash - type) : 0;
        if (!slash || !bm_valid_bot_type (type, len))
            return R_OTHER;
        memcpy (r->bot_type, type, len);
        r->bot_type [len] = 0;
        if (streq (slash, "/pause"))    return R_QUEUE_PAUSE;
        if (streq (slash, "/resume"))   return R_QUEUE_RESUME;
        if (streq (slash, "/drain"))    return R_QUEUE_DRAIN;
        if (streq (slash, "/clean"))    return R_QUEUE_CLEAN;
        if (streq (slash, "/retry"))    return R_QUEUE_RETRY;
    }
    return R_OTHER;
}

//  GET /: what this service is and where to go, for a person who opens
//  the gateway's address in a browser.  Open like /health (no API key,
//  no rate limit): it says nothing the route table does not.
static void
s_index (gw_request_t *r)
{
    json_t *endpoints = json_array ();
    for (int i = 0; i < R_COUNT; i++) {
        if (i == R_OTHER)
            continue;
        char line [64];
        snprintf (line, sizeof line, "%s %s", s_routes [i].method, s_routes [i].label);
        json_array_append_new (endpoints, json_string (line));
    }
    json_t *index = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:o}",
        "service", "botmesh-gateway", "version", GW_VERSION, "dashboard", BM_ASSETS_PREFIX,
        "health", "/health", "metrics", "/metrics", "endpoints", endpoints);
    gw_request_send_json (r, 200, index, NULL);
}

//  The queue and admin endpoints ADMIN_API_KEYS keeps to its keys.
static bool
s_admin_route (int route)
{
    return route == R_QUEUE_PAUSE || route == R_QUEUE_RESUME || route == R_QUEUE_DRAIN
        || route == R_QUEUE_CLEAN || route == R_QUEUE_RETRY || route == R_SCHEDULE_ADD || route == R_SCHEDULE_DELETE;
}

//  ADMIN_API_KEYS (each one of API_KEYS).  0, or -1 logged.
static int
s_admin_keys_load (gw_server_t *self)
{
    char error [200];
    if (bm_auth_admin_new (self->auth, self->config.admin_api_keys, &self->admin,
                           error, sizeof error)) {
        bm_error (NULL, "configuration: %s", error);
        return -1;
    }
    return 0;
}

//  Check the API key; returns the rate-limit key for this client into buf
//  and 0, or -1 after answering 401 (no valid key) or 403 (a key that is
//  not in ADMIN_API_KEYS on a queue or admin endpoint).
static int
s_authenticate (gw_request_t *r, char *limit_key, size_t size)
{
    gw_server_t *server = r->server;
    bool needs_key = s_routes [r->route].needs_key
                  || (r->route == R_METRICS && server->config.metrics_require_key);
    if (!bm_auth_enabled (server->auth)) {
        if (server->limiter)            //  Else not used: spare the snprintf
            snprintf (limit_key, size, "a:%s", r->ri->remote_addr);
        return 0;
    }
    size_t len = 0;
    const char *key = bm_auth_presented (mg_get_header (r->conn, "Authorization"),
                                         mg_get_header (r->conn, "X-API-Key"), &len);
    int index = bm_auth_check (server->auth, key, len);
    if (index < 0 && needs_key) {
        bm_series_inc (server->auth_failures);
        r->reason = "unauthorized";
        gw_request_error (r, 401, "unauthorized",
                 key ? "the API key is not valid"
                     : "an API key is required (Authorization: Bearer KEY or X-API-Key)",
                 "WWW-Authenticate: Bearer\r\n");
        return -1;
    }
    if (index >= 0 && server->admin && s_admin_route (r->route)
    &&  bm_auth_check (server->admin, key, len) < 0) {
        r->reason = "forbidden";
        gw_request_error (r, 403, "forbidden",
                          "this API key may not use the queue and admin endpoints "
                          "(ADMIN_API_KEYS)", NULL);
        return -1;
    }
    //  Keys on: one bucket per key (clients sharing a key share it).
    if (index >= 0)
        snprintf (limit_key, size, "k:%d", index);
    else
        snprintf (limit_key, size, "a:%s", r->ri->remote_addr);
    return 0;
}

//  Every method the route's path takes ("GET, HEAD, DELETE" for
//  /job/{id}): the methods of the routes that share its template, HEAD
//  beside GET (HEAD is GET without the body; load balancers probe with it).
static void
s_allow (gw_route_t route, char *buf, size_t size)
{
    size_t n = 0;
    buf [0] = 0;
    for (int i = 0; i < R_COUNT; i++) {
        if (!s_routes [i].method || !streq (s_routes [i].label, s_routes [route].label))
            continue;
        bool get = streq (s_routes [i].method, "GET");
        int more = snprintf (buf + n, size - n, "%s%s%s", n ? ", " : "", s_routes [i].method,
                             get ? ", HEAD" : "");
        if (more < 0 || (size_t) more >= size - n)
            break;
        n += (size_t) more;
    }
}

static int
s_handler (struct mg_connection *conn, void *cbdata)
{
    gw_server_t *server = (gw_server_t *) cbdata;
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    bm_series_inc (server->in_flight);

    atomic_fetch_add (&server->active, 1);
    gw_request_t req = { .conn = conn, .ri = mg_get_request_info (conn), .server = server };
    gw_request_t *r = &req;
    r->thread = (gw_thread_t *) mg_get_thread_pointer (conn);
    const char *te = mg_get_header (conn, "Transfer-Encoding");
    r->body_pending = r->ri->content_length > 0 || (r->ri->content_length < 0 && te);
    const char *expect = mg_get_header (conn, "Expect");
    r->expect_continue = r->body_pending && expect && strcasestr (expect, "100-continue");
    r->head = streq (r->ri->request_method, "HEAD");
    const char *raw = r->ri->local_uri ? r->ri->local_uri : "";
    char path [GW_PATH_MAX];
    if (s_decode (raw, strlen (raw), path, sizeof path) < 0)
        path [0] = 0;                   //  No route's
    r->path = path;
    r->route = *path ? s_route (r, raw, path) : R_OTHER;

    bool draining = atomic_load (&server->draining);
    if (draining)
        r->must_close = true;       //  Let keep-alive clients move on
    if (!r->thread) {
        //  Not one of civetweb's worker threads: cannot happen.
        gw_request_error (r, 500, "internal", "internal error", NULL);
    }
    else
    if (draining && r->route != R_HEALTH) {
        r->reason = "shutting_down";
        gw_request_error_retry (r, 503, "shutting_down", "the gateway is shutting down; retry later",
                       GW_RETRY_SHUTTING_DOWN);
    }
    else
    if (r->route == R_OTHER)
        gw_request_error (r, 404, "not_found", "no such endpoint", NULL);
    else
    if (strcmp (r->ri->request_method, s_routes [r->route].method) != 0
    &&  !(r->head && streq (s_routes [r->route].method, "GET"))) {
        char allow [64];
        s_allow (r->route, allow, sizeof allow);
        char extra [96];
        snprintf (extra, sizeof extra, "Allow: %s\r\n", allow);
        char message [96];
        snprintf (message, sizeof message, "use %s for this endpoint", allow);
        gw_request_error (r, 405, "method_not_allowed", message, extra);
    }
    else {
        char limit_key [96];
        limit_key [0] = 0;
        int retry_after = 1;
        if (s_authenticate (r, limit_key, sizeof limit_key))
            ;   //  Answered 401
        else
        if (server->limiter && s_routes [r->route].limited
        &&  !gw_ratelimit_take (server->limiter, limit_key, bm_mono_ms (), &retry_after)) {
            bm_series_inc (server->rate_limited);
            r->reason = "rate_limited";
            gw_request_error_retry (r, 429, "rate_limited", "too many requests; slow down", retry_after);
        }
        else
        switch (r->route) {
            case R_HEALTH:          gw_routes_health (r); break;
            case R_READY:           gw_routes_ready (r); break;
            case R_METRICS:         gw_routes_metrics (r); break;
            case R_INVOKE:          gw_routes_invoke (r); break;
            case R_INVOKE_BATCH:    gw_routes_invoke_batch (r); break;
            case R_FLOWS:           gw_routes_flows (r); break;
            case R_JOB:             gw_routes_job (r, BM_STATUS); break;
            case R_JOB_CANCEL:      gw_routes_job (r, BM_CANCEL); break;
            case R_JOB_RETRY:       gw_routes_job_action (r, BM_RETRY); break;
            case R_JOB_REDELIVER:   gw_routes_job_action (r, BM_REDELIVER); break;
            case R_JOB_DELETE:      gw_routes_job_control (r, BM_REMOVE); break;
            case R_JOB_PROMOTE:     gw_routes_job_control (r, BM_PROMOTE); break;
            case R_JOB_LOGS:        gw_routes_job_logs (r); break;
            case R_QUEUE_PAUSE:     gw_routes_queue (r, "pause"); break;
            case R_QUEUE_RESUME:    gw_routes_queue (r, "resume"); break;
            case R_QUEUE_DRAIN:     gw_routes_queue (r, "drain"); break;
            case R_QUEUE_CLEAN:     gw_routes_queue (r, "clean"); break;
            case R_QUEUE_RETRY:     gw_routes_queue (r, "retry"); break;
            case R_SCHEDULE_ADD:
            case R_SCHEDULES:
            case R_SCHEDULE_DELETE: gw_routes_schedules (r); break;
            case R_JOBS:            gw_routes_jobs (r); break;
            case R_STATS:           gw_routes_stats (r); break;
            case R_ADMIN:           gw_routes_admin (r); break;
            case R_HISTORY:         gw_routes_history (r); break;
            case R_INDEX:           s_index (r); break;
            case R_EVENTS:          gw_routes_events (r); break;
            default:                gw_request_error (r, 404, "not_found", "no such endpoint", NULL);
        }
    }
    if (!r->status)             //  A handler forgot to answer: our bug
        gw_request_error (r, 500, "internal", "internal error", NULL);

    if ((r->route == R_INVOKE || r->route == R_INVOKE_BATCH || r->route == R_FLOWS)
    &&  r->status >= 400)
        gw_server_count_rejected (server, r->reason ? r->reason : "other");
    struct timespec t1;
    clock_gettime (CLOCK_MONOTONIC, &t1);
    double seconds = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
    bm_series_observe (server->duration [r->route], seconds);
    bm_series_inc (s_requests_series (server, r->route, r->status));
    bm_series_dec (server->in_flight);
    atomic_fetch_sub (&server->active, 1);
    return r->status;
}

//  --------------------------------------------------------------------------
//  civetweb callbacks

//  civetweb's authorization step, replaced: without an authorization
//  handler civetweb looks for a ".htpasswd" beside every request's path
//  (a stat() and a snprintf per request, for files the gateway never
//  serves).  API keys are checked in s_handler.
static int
s_authorize (struct mg_connection *conn, void *cbdata)
{
    (void) conn;
    (void) cbdata;
    return 1;
}

//  The head limit, GATEWAY_MAX_HEADER_BYTES, checked here rather than by
//  civetweb: civetweb refuses a head past its own max_request_size with
//  one message whatever the cause, so it is given twice the limit, and a
//  head between the two gets an answer that says which part is too long
//  (a URL: 414, the headers: 431).  civetweb counts at most 64 headers:
//  the bytes of more count only against its own, larger limit.
static int
s_begin_request (struct mg_connection *conn)
{
    gw_server_t *self = (gw_server_t *) mg_get_user_data (mg_get_context (conn));
    const struct mg_request_info *info = mg_get_request_info (conn);
    size_t limit = (size_t) self->config.max_header_bytes;
    size_t url = (info->request_uri ? strlen (info->request_uri) : 0)
               + (info->query_string ? strlen (info->query_string) + 1 : 0);
    size_t head = url + strlen (info->request_method) + sizeof " HTTP/1.1\r\n\r\n";
    for (int i = 0; i < info->num_headers && i < (int) (sizeof info->http_headers
                                                      / sizeof info->http_headers [0]); i++)
        head += strlen (info->http_headers [i].name) + strlen (info->http_headers [i].value) + 4;
    if (url <= limit && head <= limit)
        return bm_http_begin_request (conn);
    char message [128];
    snprintf (message, sizeof message, "%s larger than %zu bytes (GATEWAY_MAX_HEADER_BYTES)",
              url > limit ? "the URL is" : "the request line and headers are", limit);
    bm_http_refuse (conn, url > limit ? 414 : 431,
                    url > limit ? "uri_too_long" : "headers_too_large", message);
    return url > limit ? 414 : 431;
}

static void *
s_init_thread (const struct mg_context *ctx, int thread_type)
{
    //  Only worker threads (type 1) serve requests.
    if (thread_type != 1)
        return NULL;
    gw_thread_t *thread = (gw_thread_t *) zmalloc (sizeof (gw_thread_t));
    thread->server = (gw_server_t *) mg_get_user_data (ctx);
    return thread;
}

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *pointer)
{
    (void) ctx;
    (void) thread_type;
    gw_thread_t *thread = (gw_thread_t *) pointer;
    if (thread) {
        gw_history_destroy (&thread->history);
        free (thread);
    }
}

//  --------------------------------------------------------------------------
//  Lifecycle

gw_server_t *
gw_server_new (const gw_config_t *config, bool *bad_config)
{
    gw_server_t *self = (gw_server_t *) zmalloc (sizeof (gw_server_t));
    self->config = *config;
    pthread_mutex_init (&self->types_lock, NULL);
    pthread_mutex_init (&self->refused_lock, NULL);
    pthread_mutex_init (&self->wait_lock, NULL);
    pthread_condattr_t cond_attr;
    pthread_condattr_init (&cond_attr);
    pthread_condattr_setclock (&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wait_cond, &cond_attr);
    pthread_condattr_destroy (&cond_attr);

    char error [200];
    self->auth = bm_auth_new (config->api_keys, error, sizeof error);
    if (!self->auth) {
        bm_error (NULL, "configuration: %s", error);
        goto bad;
    }
    if (s_admin_keys_load (self))
        goto bad;
    //  Waiters hold their threads: some must stay for every other request.
    if (config->max_waiters >= config->threads) {
        bm_error (NULL, "configuration: GATEWAY_MAX_WAITERS (%" PRId64 ") must be below "
                  "GATEWAY_THREADS (%" PRId64 "): each waiting request holds a thread",
                  config->max_waiters, config->threads);
        goto bad;
    }
    self->max_waiters = config->max_waiters > 0 ? (int) config->max_waiters
                      : config->threads >= 4 ? (int) (config->threads / 4) : 1;
    if (self->max_waiters >= config->threads)
        self->max_waiters = 0;          //  One thread: no waiting
    //  Event streams hold their threads too, for as long as they are open.
    if (config->max_event_streams >= config->threads) {
        bm_error (NULL, "configuration: GATEWAY_MAX_EVENT_STREAMS (%" PRId64 ") must be below "
                  "GATEWAY_THREADS (%" PRId64 "): each event stream holds a thread",
                  config->max_event_streams, config->threads);
        goto bad;
    }
    //  An eighth of the threads, at least one while a thread is left over.
    self->max_event_streams = config->max_event_streams > 0 ? (int) config->max_event_streams
                            : config->threads >= 8 ? (int) (config->threads / 8)
                            : config->threads >= 2 ? 1 : 0;
    if (bm_ssrf_list_check (config->webhook_allowed_hosts, error, sizeof error)) {
        bm_error (NULL, "configuration: WEBHOOK_ALLOWED_HOSTS: %s", error);
        goto bad;
    }
    self->limits = (gw_invoke_limits_t) {
        .max_payload = (size_t) config->max_payload,
        .allow_private = config->webhook_allow_private,
        .allowed_hosts = config->webhook_allowed_hosts
    };
    if (config->rate_rps > 0) {
        double burst = config->rate_burst > 0 ? config->rate_burst
                     : (config->rate_rps < 1 ? 1 : config->rate_rps);
        self->limiter = gw_ratelimit_new (config->rate_rps, burst, (size_t) config->rate_max_keys);
        if (!self->limiter) {
            bm_error (NULL, "configuration: RATE_LIMIT_BURST must be at least 1");
            goto bad;
        }
    }
    if (config->redis_url && *config->redis_url && !streq (config->redis_url, "none")) {
        if (bm_redis_url_parse (config->redis_url, &self->redis)) {
            bm_error (NULL, "configuration: REDIS_URL must be redis://[:password@]host[:port][/db] or none");
            goto bad;
        }
        self->history_on = true;
        if (config->redis_sentinels) {
            self->history_watch = gw_history_watch_new (config->redis_sentinels,
                                                        config->redis_master_name);
            if (!self->history_watch) {
                bm_error (NULL, "cannot follow the sentinels' +switch-master");
                goto fail;
            }
        }
    }
    if (s_metrics_init (self)) {
        bm_error (NULL, "cannot register the gateway's metrics");
        goto fail;
    }
    char threads [16], keepalive [16], request_timeout [16], header_size [16];
    snprintf (threads, sizeof threads, "%d", (int) config->threads);
    snprintf (keepalive, sizeof keepalive, "%d", (int) config->keepalive_ms);
    snprintf (request_timeout, sizeof request_timeout, "%d", (int) config->request_timeout_ms);
    snprintf (header_size, sizeof header_size, "%d", 2 * (int) config->max_header_bytes);
    const char *options [] = {
        "num_threads", threads,
        //  The path as sent: the router decodes it (s_route), each job id
        //  on its own, so that an id holding '/' is reached as %2F.
        "decode_url", "no",
        //  Keep-alive on: most of a request's cost is TCP set-up otherwise.
        //  Each open connection holds a civetweb thread, so idle ones
        //  are closed after GATEWAY_KEEPALIVE_MS.
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", keepalive,
        //  A client must deliver its headers and body within this time:
        //  slow clients cannot hold threads for ever.
        "request_timeout_ms", request_timeout,
        //  Twice GATEWAY_MAX_HEADER_BYTES: s_begin_request checks it.
        "max_request_size", header_size,
        //  Accepted sockets waiting for a free thread.
        "connection_queue", "1024",
        "listen_backlog", "1024",
        NULL
    };
    //  civetweb's own messages, its own error answers and CORS preflights
    //  are bm_http's; the threads carry each handler thread's state.
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    callbacks.begin_request = s_begin_request;
    self->ctx = bm_http_start (config->listen_addr, (int) config->port, options, &callbacks, self,
                               &self->port, error, sizeof error);
    if (!self->ctx) {
        bm_http_start_failed (error, "API_GATEWAY_PORT");
        goto fail;
    }
    //  The port is ours: now the broker link, before the handlers (they
    //  use it from their first request).  It connects in the background;
    //  a request meanwhile waits up to BROKER_CONNECT_TIMEOUT_MS for the
    //  connection.  A port that cannot be bound stops the gateway above,
    //  before it ever spoke to the broker.
    self->link = gw_link_new (config->broker_endpoint, config->connect_timeout_ms);
    if (!self->link)
        goto fail;
    self->events = gw_events_new (self->link, self->max_event_streams);
    if (!self->events)
        goto fail;
    mg_set_request_handler (self->ctx, "/", s_handler, self);
    mg_set_auth_handler (self->ctx, "/", s_authorize, NULL);
    return self;
bad:
    *bad_config = true;
fail:
    gw_server_destroy (&self);
    return NULL;
}

int
gw_server_port (gw_server_t *self)
{
    return self->port;
}

//  How long the event streams have, once woken at stop, to write their
//  `end` item and return: one whose client reads does within milliseconds.
//  One still open after it is stuck in a write to a client that stopped
//  reading (until GATEWAY_REQUEST_TIMEOUT_MS), and its socket is shut.
#define GW_STREAM_END_MS        200

int
gw_server_drain (gw_server_t *self, int64_t timeout_ms)
{
    atomic_store (&self->draining, true);
    gw_wait_wake_all (self);            //  Waiters answer now
    if (self->events)
        gw_events_wake_all (self->events);  //  Event streams end now
    int64_t now = bm_mono_ms ();
    int64_t deadline = now + timeout_ms;
    int64_t cut_at = now + GW_STREAM_END_MS;
    bool cut = false;
    while (atomic_load (&self->active) > 0) {
        now = bm_mono_ms ();
        if (!cut && self->events && now >= cut_at) {
            //  Only the streams: the other requests (an /invoke the broker
            //  is accepting) are waited for, up to the deadline.
            cut = true;
            int stuck = gw_events_cut_all (self->events);
            if (stuck)
                bm_warn (NULL, "%d event streams still writing %d ms after the stop began (their "
                         "clients stopped reading): connections shut", stuck, GW_STREAM_END_MS);
        }
        if (now >= deadline) {
            bm_warn (NULL, "%d requests still in flight after %" PRId64 " ms; stopping anyway "
                     "(their answers are lost)", atomic_load (&self->active), timeout_ms);
            return -1;
        }
        zclock_sleep (10);
    }
    self->drained = true;
    return 0;
}

void
gw_server_destroy (gw_server_t **self_p)
{
    if (*self_p) {
        gw_server_t *self = *self_p;
        //  mg_stop closes the listening socket, ends open connections and
        //  joins the threads (exit_thread frees their Redis readers).  Call
        //  gw_server_drain first: once mg_stop runs, answers can no longer
        //  be written.  The link goes after the threads that use it.
        //  Once drained, idle keep-alive connections end at once too
        //  (bm_http_stop_drained shuts their reading side on every port):
        //  nothing is in flight.  When gw_server_drain gave up waiting (or
        //  was not called), requests are still in flight: their connections
        //  are not cut, and mg_stop waits for their handlers to return (an
        //  /invoke being accepted by the broker is accepted, though its
        //  answer can no longer be written).
        if (self->ctx && self->drained)
            bm_http_stop_drained (self->ctx, self->config.listen_addr);
        else
        if (self->ctx)
            bm_http_stop (self->ctx, self->config.listen_addr);
        gw_request_refused_flush (self);
        gw_events_destroy (&self->events);
        gw_link_destroy (&self->link);
        gw_history_watch_destroy (&self->history_watch);
        bm_metrics_destroy (&self->metrics);
        gw_ratelimit_destroy (&self->limiter);
        bm_auth_destroy (&self->auth);
        bm_auth_destroy (&self->admin);
        pthread_mutex_destroy (&self->types_lock);
        pthread_mutex_destroy (&self->refused_lock);
        pthread_mutex_destroy (&self->wait_lock);
        pthread_cond_destroy (&self->wait_cond);
        free (self);
        *self_p = NULL;
    }
}

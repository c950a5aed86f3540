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

    Each response is built in one buffer and written with one mg_write
    (civetweb's header helpers cost one write per line, which halves
    throughput on this kind of machine).  */
#include "gw_server.h"
#include "gw_auth.h"
#include "gw_history.h"
#include "gw_invoke.h"
#include "gw_link.h"
#include "gw_ratelimit.h"
#include "gw_record.h"

#include "bm_assets.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"
#include "bm_metrics.h"
#include "bm_proto.h"

#include <civetweb.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>

//  Retry-After (seconds) for each kind of 503: how soon trying again makes
//  sense.  The broker restarts in about a second; Redis outages last longer.
#define GW_RETRY_BROKER_DOWN    1
#define GW_RETRY_QUEUE_FULL     1
#define GW_RETRY_STORE_DOWN     2
#define GW_RETRY_SHUTTING_DOWN  5
//  How long the list of bot types (for unknown_bot_type) is reused.
#define GW_BOT_TYPES_TTL_MS     5000
//  Bodies of refused requests up to this size are read and dropped so the
//  connection can stay open; larger ones close it.
#define GW_DRAIN_MAX            (64 * 1024)
//  Lingering close (s_linger): how long and how much of an unwanted body
//  is read after the answer, so that the answer is not lost to a reset.
#define GW_LINGER_MS            1000
#define GW_LINGER_BYTES         (32 * 1024 * 1024)
//  Largest single read of a request body (see s_read_body).
#define GW_READ_STEP_MAX        (64 * 1024)
//  Room for the list of bot types in an unknown_bot_type message.
#define GW_TYPES_LEN            400

//  --------------------------------------------------------------------------
//  Routes

typedef enum {
    R_HEALTH, R_READY, R_METRICS, R_INVOKE, R_JOB, R_JOB_CANCEL, R_JOB_RETRY,
    R_JOB_REDELIVER, R_JOBS, R_STATS, R_ADMIN, R_HISTORY, R_OTHER, R_COUNT
} s_route_t;

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
    [R_JOB]           = { "/job/{id}",            "GET",  true,  true  },
    [R_JOB_CANCEL]    = { "/job/{id}/cancel",     "POST", true,  true  },
    [R_JOB_RETRY]     = { "/job/{id}/retry",      "POST", true,  true  },
    [R_JOB_REDELIVER] = { "/job/{id}/redeliver",  "POST", true,  true  },
    [R_JOBS]          = { "/jobs",                "GET",  true,  true  },
    [R_STATS]         = { "/stats",               "GET",  true,  true  },
    [R_ADMIN]         = { "/admin/queues",        "GET",  false, false },
    [R_HISTORY]       = { "/api/history",         "GET",  true,  true  },
    [R_OTHER]         = { "other",                NULL,   false, false },
};

//  The status codes we answer with, for the per-code series cache.
static const int s_codes [] = { 200, 202, 400, 401, 404, 405, 408, 409, 413, 415, 429,
                                500, 502, 503, 504 };
#define S_NCODES ((int) (sizeof s_codes / sizeof s_codes [0]))

//  Reasons an /invoke is refused (gateway_invoke_rejected_total{reason}):
//  a fixed list, so label values never come from the peer.
static const char *s_reasons [] = {
    "invalid_json", "invalid_body", "missing_field", "invalid_bot_type", "invalid_payload",
    "invalid_webhook_url", "invalid_priority", "invalid_idempotency_key", "invalid_timeout",
    "invalid_max_attempts", "payload_too_large", "body_too_large", "unsupported_media_type",
    "unauthorized", "rate_limited", "bad_request", "queue_full", "store_unavailable",
    "shutting_down", "broker_timeout", "broker_unavailable", "broker_error", "request_timeout",
    "other"
};
#define S_NREASONS ((int) (sizeof s_reasons / sizeof s_reasons [0]))

//  --------------------------------------------------------------------------
//  Server and per-thread state

struct _gw_server_t {
    gw_config_t config;                 //  Settings (strings borrowed from env/argv)
    struct mg_context *ctx;             //  civetweb
    int port;                           //  Port we listen on
    gw_auth_t *auth;                    //  API keys (maybe none)
    gw_ratelimit_t *limiter;            //  Token buckets, NULL when off
    gw_link_t *link;                    //  To the broker, shared by all threads
    bool history_on;                    //  REDIS_URL given
    bm_redis_url_t redis;               //  Parsed REDIS_URL

    //  Metrics (series handles are resolved once and cached)
    bm_metrics_t *metrics;
    bm_metric_t *m_requests;            //  gateway_http_requests_total{route,code}
    bm_metric_t *m_duration;            //  gateway_http_request_duration_seconds{route}
    bm_metric_t *m_rejected;            //  gateway_invoke_rejected_total{reason}
    _Atomic (bm_series_t *) requests [R_COUNT][S_NCODES];
    bm_series_t *duration [R_COUNT];
    bm_series_t *rejected [S_NREASONS];
    bm_series_t *accepted;              //  gateway_invoke_accepted_total
    bm_series_t *duplicates;            //  gateway_invoke_duplicates_total
    bm_series_t *broker_timeouts;       //  gateway_broker_errors_total{kind="timeout"}
    bm_series_t *broker_unavailable;    //  ...{kind="unavailable"}
    bm_series_t *broker_bad_replies;    //  ...{kind="bad_reply"}
    bm_series_t *rate_limited;          //  gateway_rate_limited_total
    bm_series_t *auth_failures;         //  gateway_auth_failures_total
    bm_series_t *in_flight;             //  gateway_requests_in_flight
    bm_series_t *history_errors;        //  gateway_history_errors_total
    bm_series_t *threads;               //  gateway_threads

    //  Graceful stop: civetweb's mg_stop makes every later mg_write fail
    //  (its writes stop with its stop flag), so requests in flight are
    //  waited for before it is called.
    atomic_bool draining;               //  SIGTERM seen: refuse new work
    atomic_int active;                  //  Requests inside s_handler now

    //  Bot types the broker knows, for unknown_bot_type's message
    pthread_mutex_t types_lock;
    char bot_types [GW_TYPES_LEN];             //  "java, node, python"
    int64_t bot_types_ms;               //  When read (mono), 0 = never
};

//  What each civetweb worker thread owns.  Made in init_thread, freed in
//  exit_thread; only that thread ever touches it.
typedef struct {
    gw_server_t *server;                //  Borrowed
    gw_history_t *history;              //  Our Redis reader, lazily made
} s_thread_t;

//  One request being served.
typedef struct {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    gw_server_t *server;
    s_thread_t *thread;
    s_route_t route;
    char job_id [BM_MAX_ID_LEN + 1];    //  For /job/{id}...
    int status;                         //  Status answered, 0 until then
    bool body_pending;                  //  Body bytes we have not read
    bool must_close;                    //  Close the connection after answering
    bool expect_continue;               //  Client waits for "100 Continue"
    bool head;                          //  A HEAD request: answer without body
    const char *reason;                 //  Why an /invoke was refused (metrics)
} s_req_t;

//  --------------------------------------------------------------------------
//  Metrics helpers

static bm_series_t *
s_requests_series (gw_server_t *self, s_route_t route, int status)
{
    for (int i = 0; i < S_NCODES; i++)
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

static void
s_count_rejected (gw_server_t *self, const char *reason)
{
    int index = S_NREASONS - 1;             //  "other"
    for (int i = 0; i < S_NREASONS - 1; i++)
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
        "POST /invoke requests refused, by reason", "reason");
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
    if (!self->m_requests || !self->m_duration || !self->m_rejected || !accepted
    ||  !duplicates || !broker_errors || !limited || !auth || !in_flight
    ||  !history || !threads)
        return -1;
    for (int r = 0; r < R_COUNT; r++)
        self->duration [r] = bm_metric_series (self->m_duration, s_routes [r].label);
    for (int i = 0; i < S_NREASONS; i++)
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
    bm_series_set (self->threads, (double) self->config.threads);
    return 0;
}

//  --------------------------------------------------------------------------
//  Writing responses

//  Does the client want the connection kept open (civetweb's own rule)?
static bool
s_client_keeps_alive (s_req_t *r)
{
    const char *connection = mg_get_header (r->conn, "Connection");
    if (connection)
        return strcasestr (connection, "keep-alive") != NULL;
    return r->ri->http_version && streq (r->ri->http_version, "1.1");
}

//  Read and drop the rest of a body we will not use, so that the
//  connection can serve the next request.  Gives up (and closes) past
//  GW_DRAIN_MAX bytes.
static void
s_drain (s_req_t *r)
{
    if (!r->body_pending || r->must_close)
        return;
    if (r->expect_continue || r->ri->content_length > GW_DRAIN_MAX) {
        //  A client waiting for 100 Continue will not send the body: the
        //  connection cannot be reused.
        r->must_close = true;
        return;
    }
    char buf [8192];
    size_t total = 0;
    size_t step = 1;                //  Small first, as in s_read_body
    int n;
    int64_t deadline = bm_mono_ms () + r->server->config.request_timeout_ms;
    while ((n = mg_read (r->conn, buf, step)) > 0) {
        total += (size_t) n;
        if (step < sizeof buf)
            step *= 2;
        if (total > GW_DRAIN_MAX || bm_mono_ms () > deadline) {
            r->must_close = true;
            return;
        }
    }
    if (n < 0)
        r->must_close = true;
    r->body_pending = false;
}

//  After answering a request whose body is still arriving (a 413 for a
//  body past the limit, say), read and drop what comes for a moment before
//  civetweb closes the socket: closing with unread bytes makes the kernel
//  send a reset, which can reach the client before it has read our answer
//  (Apache calls this a lingering close).  Not needed when the client
//  waits for "100 Continue" that was never sent: it sends nothing.
static void
s_linger (s_req_t *r)
{
    if (!r->body_pending || r->expect_continue)
        return;
    char buf [8192];
    size_t total = 0;
    size_t step = 1;
    int64_t deadline = bm_mono_ms () + GW_LINGER_MS;
    while (total < GW_LINGER_BYTES && bm_mono_ms () < deadline) {
        int n = mg_read (r->conn, buf, step);
        if (n <= 0)
            break;
        total += (size_t) n;
        if (step < sizeof buf)
            step *= 2;
    }
}

//  Write the whole response (status line, headers, body) with one write.
//  extra holds more header lines, each ending in CRLF, or NULL.
static void
s_send (s_req_t *r, int status, const char *content_type, const char *extra,
        const char *body, size_t size)
{
    if (r->status)
        return;                 //  Answered already
    r->status = status;
    s_drain (r);
    bool keep = !r->body_pending && !r->must_close && s_client_keeps_alive (r);
    if (!keep)
        mg_disable_keep_alive (r->conn);
    char head [BM_HTTP_HEAD_MAX + 512];
    int n = bm_http_head (r->conn, status, content_type, size, keep ? "keep-alive" : "close",
                          extra, head, sizeof head);
    if (n < 0)
        return;                 //  Our own headers never get this long
    char stack [8192];
    char *buf = (size_t) n + size <= sizeof stack ? stack : (char *) malloc ((size_t) n + size);
    if (!buf)
        return;
    memcpy (buf, head, (size_t) n);
    if (size)
        memcpy (buf + n, body, size);
    //  HEAD: the same headers (Content-Length included), no body.
    mg_write (r->conn, buf, (size_t) n + (r->head ? 0 : size));
    if (buf != stack)
        free (buf);
    s_linger (r);
}

//  Answer with a JSON value (takes the reference).
static void
s_send_json (s_req_t *r, int status, json_t *value, const char *extra)
{
    char *text = bm_http_json_text (value);
    json_decref (value);
    if (!text) {
        const char *fallback = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        s_send (r, 500, "application/json", NULL, fallback, strlen (fallback));
        return;
    }
    s_send (r, status, "application/json", extra, text, strlen (text));
    free (text);
}

//  Answer {"error": {"code": code, "message": message}}.
static void
s_error (s_req_t *r, int status, const char *code, const char *message, const char *extra)
{
    json_t *value = json_pack ("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    s_send_json (r, status, value, extra);
}

static void
s_error_retry (s_req_t *r, int status, const char *code, const char *message, int retry_after)
{
    char extra [64];
    snprintf (extra, sizeof extra, "Retry-After: %d\r\n", retry_after);
    s_error (r, status, code, message, extra);
}

//  --------------------------------------------------------------------------
//  Talking to the broker

//  Pack {req, jobId?} for the simple requests.  Returns its req; caller
//  frees (or hands on) *data.
static int64_t
s_pack_simple (gw_server_t *server, const char *job_id, char **data, size_t *size)
{
    int64_t req = gw_link_next_req (server->link);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, job_id ? 2 : 1);
    bm_pack_kv_int (&pk, "req", req);
    if (job_id)
        bm_pack_kv_str (&pk, "jobId", job_id);
    *data = sbuf.data;
    *size = sbuf.size;
    return req;
}

//  Send one request (body holds "req" = req; taken) to the broker and wait
//  for its answer.  On no answer, answers the HTTP request (503
//  unreachable / 504 too slow) when `answer` is true, and returns NULL.
static bm_msg_t *
s_broker (s_req_t *r, int64_t req, int command, char *body, size_t size, bool answer)
{
    gw_server_t *server = r->server;
    bm_msg_t *reply = gw_link_request (server->link, req, command, body, size,
                                       server->config.broker_timeout_ms);
    if (reply)
        return reply;
    if (errno == ECONNRESET) {
        bm_series_inc (server->broker_timeouts);
        bm_warn (NULL, "the broker connection dropped with %s unanswered",
                 bm_command_name (BM_PEER_CLIENT, command));
        r->reason = "broker_connection_lost";
        if (answer)
            s_error (r, 504, "broker_connection_lost",
                     "the connection to the broker dropped after the request was sent: "
                     "its outcome is unknown (retry with the same idempotencyKey to be safe)",
                     NULL);
    }
    else
    if (errno == ETIMEDOUT) {
        bm_series_inc (server->broker_timeouts);
        bm_warn (NULL, "broker did not answer %s within %" PRId64 " ms",
                 bm_command_name (BM_PEER_CLIENT, command), server->config.broker_timeout_ms);
        r->reason = "broker_timeout";
        if (answer)
            s_error (r, 504, "broker_timeout", "the broker did not answer in time", NULL);
    }
    else {
        bm_series_inc (server->broker_unavailable);
        bm_debug (NULL, "broker unreachable for %s", bm_command_name (BM_PEER_CLIENT, command));
        r->reason = "broker_unavailable";
        if (answer)
            s_error_retry (r, 503, "broker_unavailable", "the broker is not reachable",
                           GW_RETRY_BROKER_DOWN);
    }
    return NULL;
}

//  A simple request {req, jobId?}: pack, send, wait.
static bm_msg_t *
s_broker_simple (s_req_t *r, int command, const char *job_id, bool answer)
{
    char *data;
    size_t size;
    int64_t req = s_pack_simple (r->server, job_id, &data, &size);
    return s_broker (r, req, command, data, size, answer);
}

//  Copy src into buf[size], cutting it if needed.
static void
s_copy (char *buf, size_t size, const char *src)
{
    size_t n = strnlen (src, size - 1);
    memcpy (buf, src, n);
    buf [n] = 0;
}

//  Copy a REJECTED message for clients: printable ASCII only, bounded.
static void
s_safe_message (const msgpack_object *body, char *buf, size_t size, const char *fallback)
{
    const char *str;
    size_t len;
    if (!bm_obj_str (body, "message", &str, &len) || len == 0) {
        s_copy (buf, size, fallback);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < size; i++)
        buf [n++] = (str [i] >= 0x20 && str [i] < 0x7f) ? str [i] : '?';
    buf [n] = 0;
}

//  The bot types the broker knows, "java, node, python", from a STATS
//  reply at most GW_BOT_TYPES_TTL_MS old.  Empty if the broker is silent.
static void
s_bot_types (s_req_t *r, char *buf, size_t size)
{
    gw_server_t *server = r->server;
    pthread_mutex_lock (&server->types_lock);
    bool fresh = server->bot_types_ms && bm_mono_ms () - server->bot_types_ms < GW_BOT_TYPES_TTL_MS;
    if (fresh)
        s_copy (buf, size, server->bot_types);
    pthread_mutex_unlock (&server->types_lock);
    if (fresh)
        return;
    buf [0] = 0;
    bm_msg_t *reply = s_broker_simple (r, BM_STATS, NULL, false);
    if (reply && bm_msg_command (reply) == BM_REPLY) {
        gw_record_bot_types (bm_msg_body (reply), buf, size);
        pthread_mutex_lock (&server->types_lock);
        s_copy (server->bot_types, sizeof server->bot_types, buf);
        server->bot_types_ms = bm_mono_ms ();
        pthread_mutex_unlock (&server->types_lock);
    }
    bm_msg_destroy (&reply);
}

//  How the broker's REJECTED codes are answered (unknown_bot_type, which
//  needs the list of types, and codes not listed are handled in
//  s_rejected).  The HTTP error code is the broker's.
typedef struct {
    const char *code;           //  The broker's code, and ours
    int status;                 //  HTTP status
    const char *reason;         //  gateway_invoke_rejected_total{reason}
    const char *message;        //  Our message; NULL: the broker's, made safe...
    const char *fallback;       //  ...or this when it sent none
    int retry_after;            //  Retry-After seconds, 0 = none
} s_rejection_t;

static const s_rejection_t s_rejections [] = {
    { "bad_request", 400, "bad_request", NULL, "the request was refused", 0 },
    { "payload_too_large", 413, "payload_too_large", "payload is too large", NULL, 0 },
    { "not_found", 404, "other", "no job with this id", NULL, 0 },
    { "conflict", 409, "other", NULL, "the job is not in a state that allows this", 0 },
    //  503, not 429: the system is full, not this client too fast.
    { "queue_full", 503, "queue_full", "the queue for this bot type is full; retry later", NULL,
      GW_RETRY_QUEUE_FULL },
    { "store_unavailable", 503, "store_unavailable", "job storage is unavailable; retry later",
      NULL, GW_RETRY_STORE_DOWN },
    { "shutting_down", 503, "shutting_down", "the broker is shutting down; retry later", NULL,
      GW_RETRY_SHUTTING_DOWN },
};

static const s_rejection_t *
s_rejection (const char *code)
{
    for (size_t i = 0; i < sizeof s_rejections / sizeof s_rejections [0]; i++)
        if (streq (s_rejections [i].code, code))
            return &s_rejections [i];
    return NULL;
}

//  Answer a REJECTED from the broker with the matching HTTP error.
static void
s_rejected (s_req_t *r, bm_msg_t *reply)
{
    const msgpack_object *body = bm_msg_body (reply);
    char code [64] = "";
    bm_obj_strcpy (body, "code", code, sizeof code);
    char message [200];
    const s_rejection_t *rule;

    if (streq (code, "unknown_bot_type")) {
        r->reason = "invalid_bot_type";
        //  The broker names the types it knows; an older broker may not,
        //  then a STATS reply does.
        s_safe_message (body, message, sizeof message, "");
        if (strncmp (message, "botType must be one of: ", 24) == 0 && message [24]) {
            s_error (r, 400, "invalid_bot_type", message, NULL);
            return;
        }
        char types [GW_TYPES_LEN];
        s_bot_types (r, types, sizeof types);
        if (*types)
            snprintf (message, sizeof message, "botType must be one of: %s", types);
        else
            snprintf (message, sizeof message, "botType is not a bot type the broker knows");
        s_error (r, 400, "invalid_bot_type", message, NULL);
    }
    else
    if ((rule = s_rejection (code))) {
        r->reason = rule->reason;
        if (!rule->message)
            s_safe_message (body, message, sizeof message, rule->fallback);
        const char *text = rule->message ? rule->message : message;
        if (rule->retry_after)
            s_error_retry (r, rule->status, rule->code, text, rule->retry_after);
        else
            s_error (r, rule->status, rule->code, text, NULL);
    }
    else {
        //  bad_frame, bad_header...: our own request was wrong.  Log it,
        //  tell the client nothing internal.
        r->reason = "broker_error";
        bm_series_inc (r->server->broker_bad_replies);
        bm_error (NULL, "broker refused our request: %s", *code ? code : "(no code)");
        s_error (r, 502, "broker_error", "the broker could not handle the request", NULL);
    }
}

//  Answer a reply we did not expect (wrong command or body).
static void
s_bad_reply (s_req_t *r, bm_msg_t *reply)
{
    bm_series_inc (r->server->broker_bad_replies);
    bm_error (NULL, "unexpected broker reply %s",
              bm_command_name (BM_PEER_CLIENT, bm_msg_command (reply)));
    r->reason = "broker_error";
    s_error (r, 502, "broker_error", "the broker sent an unexpected answer", NULL);
}

//  --------------------------------------------------------------------------
//  Reading the request

//  Is the Content-Type JSON?  "application/json", any case, with or
//  without parameters (charset).  A request without Content-Type is
//  accepted and parsed as JSON (see README.md).
static bool
s_is_json (const char *content_type)
{
    if (!content_type)
        return true;
    while (*content_type == ' ')
        content_type++;
    if (strncasecmp (content_type, "application/json", 16) != 0)
        return false;
    char next = content_type [16];
    return next == 0 || next == ';' || next == ' ' || next == '\t';
}

//  Answer 413 body_too_large (closing the connection); returns -1.
static int
s_body_too_large (s_req_t *r, size_t max)
{
    r->must_close = true;
    r->reason = "body_too_large";
    char message [96];
    snprintf (message, sizeof message, "the body is larger than %zu bytes", max);
    s_error (r, 413, "body_too_large", message, NULL);
    return -1;
}

//  Answer 503 out_of_memory (closing the connection: the body is not
//  read); returns -1.
static int
s_no_memory (s_req_t *r)
{
    r->must_close = true;
    r->reason = "out_of_memory";
    s_error (r, 503, "out_of_memory", "no memory for the request body; retry later", NULL);
    return -1;
}

//  Read the whole body, at most MAX_BODY_BYTES.  Returns 0 with *body
//  (caller frees; NUL-terminated) and *size, or -1 after answering.
static int
s_read_body (s_req_t *r, char **body, size_t *size)
{
    gw_server_t *server = r->server;
    size_t max = (size_t) server->config.max_body;
    long long declared = r->ri->content_length;
    *body = NULL;
    *size = 0;
    if (declared > (long long) max) {
        //  Refuse before reading a byte; the unread body closes the
        //  connection (a client that sent Expect: 100-continue never
        //  sends it).
        return s_body_too_large (r, max);
    }
    if (!r->body_pending) {
        *body = strdup ("");
        return 0;
    }
    if (r->expect_continue) {
        //  civetweb leaves "Expect: 100-continue" to request handlers.
        //  Sent only once the body is wanted, so a 413 or 415 costs the
        //  client no upload.
        mg_write (r->conn, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        r->expect_continue = false;
    }
    size_t cap = declared >= 0 ? (size_t) declared : 16384;
    char *buf = (char *) malloc (cap + 1);
    if (!buf)
        return s_no_memory (r);
    size_t got = 0;
    //  civetweb's request_timeout_ms bounds each wait for bytes, not the
    //  body: a client trickling a byte at a time keeps one mg_read going
    //  until it has all it asked for.  So the body as a whole gets that
    //  time too, checked between reads, and reads start at one byte and
    //  double: a read can then take at most as long as all before it, and
    //  a trickler is cut after about twice the timeout.  A body that came
    //  with its head is in civetweb's buffer already, so the small reads
    //  cost a memcpy each, no system call.
    int64_t deadline = bm_mono_ms () + r->server->config.request_timeout_ms;
    bool late = false;
    size_t step = 1;
    while (true) {
        if (bm_mono_ms () > deadline) {
            late = true;
            break;
        }
        if (got == cap) {
            if (declared >= 0)
                break;
            if (cap > max)
                break;                  //  Chunked body past the limit
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *bigger = (char *) realloc (buf, cap + 1);
            if (!bigger) {
                free (buf);
                return s_no_memory (r);
            }
            buf = bigger;
        }
        size_t want = cap - got < step ? cap - got : step;
        int n = mg_read (r->conn, buf + got, want);
        if (n <= 0) {
            //  A read that gave up at its own timeout (civetweb's
            //  request_timeout_ms, the same as ours) ends at our deadline:
            //  the client stalled, it did not close.
            late = declared >= 0 && got < (size_t) declared && bm_mono_ms () >= deadline;
            break;
        }
        got += (size_t) n;
        if (step < GW_READ_STEP_MAX)
            step *= 2;
    }
    if (late) {
        free (buf);
        r->must_close = true;
        r->reason = "request_timeout";
        s_error (r, 408, "request_timeout", "the body was not sent in time", NULL);
        return -1;
    }
    if (got > max) {
        free (buf);
        return s_body_too_large (r, max);
    }
    if (declared >= 0 && got < (size_t) declared) {
        //  The client stopped sending (or was too slow): it may be gone.
        free (buf);
        r->must_close = true;
        r->reason = "invalid_json";
        s_error (r, 400, "truncated_body", "the body ended before Content-Length bytes", NULL);
        return -1;
    }
    r->body_pending = false;
    buf [got] = 0;
    *body = buf;
    *size = got;
    return 0;
}

//  A query-string parameter into buf.  1 if present, 0 if absent, -1 if
//  longer than buf.
static int
s_query (s_req_t *r, const char *name, char *buf, size_t size)
{
    const char *qs = r->ri->query_string;
    if (!qs)
        return 0;
    int n = mg_get_var (qs, strlen (qs), name, buf, size);
    if (n == -1)
        return 0;
    if (n < 0)
        return -1;
    return 1;
}

//  --------------------------------------------------------------------------
//  Handlers

static void
s_handle_health (s_req_t *r)
{
    s_send_json (r, 200, bm_http_health (), NULL);
}

static void
s_handle_ready (s_req_t *r)
{
    bm_msg_t *reply = s_broker_simple (r, BM_PING, NULL, false);
    if (!reply || bm_msg_command (reply) != BM_REPLY) {
        bm_msg_destroy (&reply);
        json_t *value = json_pack ("{s:{s:s,s:s},s:s,s:b,s:n}",
            "error", "code", "broker_unavailable", "message", "the broker is not answering",
            "status", "not_ready", "broker", 0, "redis");
        char extra [64];
        snprintf (extra, sizeof extra, "Retry-After: %d\r\n", GW_RETRY_BROKER_DOWN);
        s_send_json (r, 503, value, extra);
        return;
    }
    bool redis = false;
    bm_obj_bool (bm_msg_body (reply), "redis", &redis);
    bm_msg_destroy (&reply);
    if (redis) {
        s_send_json (r, 200, json_pack ("{s:s,s:b,s:b}", "status", "ready",
                                        "broker", 1, "redis", 1), NULL);
        return;
    }
    json_t *value = json_pack ("{s:{s:s,s:s},s:s,s:b,s:b}",
        "error", "code", "redis_unavailable", "message", "the broker cannot reach Redis",
        "status", "not_ready", "broker", 1, "redis", 0);
    char extra [64];
    snprintf (extra, sizeof extra, "Retry-After: %d\r\n", GW_RETRY_STORE_DOWN);
    s_send_json (r, 503, value, extra);
}

//  The gateway's own series only: the broker serves its own on its
//  metrics port (BROKER_METRICS_PORT), which Prometheus scrapes apart, so
//  that a sum() over every job counts each execution once.
static void
s_handle_metrics (s_req_t *r)
{
    char *text = bm_metrics_render (r->server->metrics);
    if (!text) {
        s_error (r, 500, "internal", "out of memory", NULL);
        return;
    }
    s_send (r, 200, BM_METRICS_CONTENT_TYPE, NULL, text, strlen (text));
    free (text);
}

static void
s_handle_invoke (s_req_t *r)
{
    gw_server_t *server = r->server;
    if (!s_is_json (mg_get_header (r->conn, "Content-Type"))) {
        r->reason = "unsupported_media_type";
        s_error (r, 415, "unsupported_media_type", "Content-Type must be application/json", NULL);
        return;
    }
    char *body;
    size_t size;
    if (s_read_body (r, &body, &size))
        return;
    char *submit;
    size_t submit_size;
    gw_invoke_error_t error;
    int64_t req = gw_link_next_req (server->link);
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    int64_t priority = 0;
    int rc = gw_invoke_translate (body, size, req, (size_t) server->config.max_payload,
                                  &submit, &submit_size, bot_type, &priority, &error);
    free (body);
    if (rc) {
        r->reason = error.code;
        s_error (r, error.status, error.code, error.message, NULL);
        return;
    }
    bm_msg_t *reply = s_broker (r, req, BM_SUBMIT, submit, submit_size, true);
    if (!reply)
        return;
    char job_id [BM_MAX_ID_LEN + 1];
    if (bm_msg_command (reply) == BM_ACCEPTED
    &&  bm_obj_strcpy (bm_msg_body (reply), "jobId", job_id, sizeof job_id)
    &&  bm_valid_id (job_id, strlen (job_id))) {
        bool duplicate = false;
        bm_obj_bool (bm_msg_body (reply), "duplicate", &duplicate);
        bm_series_inc (duplicate ? server->duplicates : server->accepted);
        //  botType, priority and estimatedPosition (the job's place in its
        //  queue; the broker leaves it out on a duplicate) as BullMQ-based
        //  bot systems answer.
        int64_t position = 0;
        bool has_position = bm_obj_int (bm_msg_body (reply), "position", &position);
        json_t *value = json_pack ("{s:s,s:s,s:s,s:I,s:o}", "jobId", job_id, "status", "queued",
                                   "botType", bot_type, "priority", (json_int_t) priority,
                                   "estimatedPosition", has_position
                                   ? json_integer ((json_int_t) position) : json_null ());
        if (duplicate)
            json_object_set_new (value, "duplicate", json_true ());
        char extra [200];
        snprintf (extra, sizeof extra, "Location: /job/%s\r\n", job_id);
        bm_debug (job_id, "accepted%s", duplicate ? " (duplicate)" : "");
        s_send_json (r, 202, value, extra);
    }
    else
    if (bm_msg_command (reply) == BM_REJECTED)
        s_rejected (r, reply);
    else
        s_bad_reply (r, reply);
    bm_msg_destroy (&reply);
}

//  The end of most handlers: the reply the route expects (`want`) is
//  answered with `status` and its JSON: `make` (body), or else `fixed`
//  (taken).  A REJECTED (when `rejections`) gets its HTTP error; anything
//  else is a bad reply (502).  No reply: s_broker has answered already.
typedef json_t *(s_make_fn) (const msgpack_object *body);

static void
s_answer (s_req_t *r, bm_msg_t *reply, int want, int status, s_make_fn *make, json_t *fixed,
          bool rejections)
{
    json_t *value = NULL;
    if (reply && bm_msg_command (reply) == want) {
        value = make ? make (bm_msg_body (reply)) : fixed;
        fixed = NULL;
    }
    json_decref (fixed);
    if (!reply)
        return;
    if (value)
        s_send_json (r, status, value, NULL);
    else
    if (rejections && bm_msg_command (reply) == BM_REJECTED)
        s_rejected (r, reply);
    else
        s_bad_reply (r, reply);
    bm_msg_destroy (&reply);
}

static json_t *
s_make_job (const msgpack_object *body)
{
    return gw_record_job (bm_obj_get (body, "job"));
}

//  GET /job/{id}, POST /job/{id}/cancel: answer with the job record.
static void
s_handle_job (s_req_t *r, int command)
{
    s_answer (r, s_broker_simple (r, command, r->job_id, true), BM_REPLY, 200, s_make_job, NULL,
              true);
}

//  POST /job/{id}/retry and /redeliver: ACCEPTED -> 202.
static void
s_handle_job_action (s_req_t *r, int command)
{
    bm_msg_t *reply = s_broker_simple (r, command, r->job_id, true);
    json_t *value = command == BM_RETRY
        ? json_pack ("{s:s,s:s}", "jobId", r->job_id, "status", "queued")
        : json_pack ("{s:s,s:s}", "jobId", r->job_id, "webhook", "pending");
    s_answer (r, reply, BM_ACCEPTED, 202, NULL, value, true);
}

static void
s_handle_jobs (s_req_t *r)
{
    static const char *states [] = { "queued", "running", "completed", "failed", "cancelled" };
    char state [16], bot_type [BM_MAX_BOT_TYPE_LEN + 1], limit_text [16];
    int has_state = s_query (r, "state", state, sizeof state);
    int has_type = s_query (r, "botType", bot_type, sizeof bot_type);
    int has_limit = s_query (r, "limit", limit_text, sizeof limit_text);
    bool state_ok = has_state == 0 || (has_state > 0 && !*state);
    for (size_t i = 0; has_state > 0 && *state && i < sizeof states / sizeof states [0]; i++)
        if (streq (state, states [i]))
            state_ok = true;
    if (!state_ok) {
        s_error (r, 400, "invalid_state",
                 "state must be one of: queued, running, completed, failed, cancelled", NULL);
        return;
    }
    if (has_type < 0 || (has_type > 0 && *bot_type && !bm_valid_bot_type (bot_type, strlen (bot_type)))) {
        s_error (r, 400, "invalid_bot_type", "botType must be 1 to 32 characters from [a-z0-9_-]",
                 NULL);
        return;
    }
    int64_t limit = 50;
    if (has_limit < 0 || (has_limit > 0 && bm_parse_int (limit_text, 1, 500, &limit))) {
        s_error (r, 400, "invalid_limit", "limit must be an integer from 1 to 500", NULL);
        return;
    }
    //  LIST body: {req, limit, state?, botType?}
    int64_t req = gw_link_next_req (r->server->link);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    bool with_state = has_state > 0 && *state;
    bool with_type = has_type > 0 && *bot_type;
    msgpack_pack_map (&pk, 2 + with_state + with_type);
    bm_pack_kv_int (&pk, "req", req);
    bm_pack_kv_int (&pk, "limit", limit);
    if (with_state)
        bm_pack_kv_str (&pk, "state", state);
    if (with_type)
        bm_pack_kv_str (&pk, "botType", bot_type);
    s_answer (r, s_broker (r, req, BM_LIST, sbuf.data, sbuf.size, true), BM_REPLY, 200,
              gw_record_list, NULL, true);
}

static void
s_handle_stats (s_req_t *r)
{
    //  A REJECTED to STATS is not an answer we know: 502.
    s_answer (r, s_broker_simple (r, BM_STATS, NULL, true), BM_REPLY, 200, gw_record_stats, NULL,
              false);
}

static void
s_handle_admin (s_req_t *r)
{
    const unsigned char *data;
    size_t size;
    const char *content_type;
    if (bm_assets_find (r->ri->local_uri, &data, &size, &content_type)) {
        s_error (r, 404, "not_found", "no such page", NULL);
        return;
    }
    s_send (r, 200, content_type, NULL, (const char *) data, size);
}

static void
s_handle_history (s_req_t *r)
{
    gw_server_t *server = r->server;
    char limit_text [16];
    int64_t limit = 360;        //  1 h at the default 10 s interval
    int has_limit = s_query (r, "limit", limit_text, sizeof limit_text);
    if (has_limit < 0
    || (has_limit > 0 && bm_parse_int (limit_text, 1, GW_HISTORY_MAX_LIMIT, &limit))) {
        char message [80];
        snprintf (message, sizeof message, "limit must be an integer from 1 to %d",
                  GW_HISTORY_MAX_LIMIT);
        s_error (r, 400, "invalid_limit", message, NULL);
        return;
    }
    if (!server->history_on) {
        s_error_retry (r, 503, "history_unavailable", "no Redis is configured for history",
                       GW_RETRY_STORE_DOWN);
        return;
    }
    if (!r->thread->history)
        r->thread->history = gw_history_new (&server->redis, server->config.redis_prefix,
                                             (int) server->config.redis_timeout_ms);
    json_t *value = gw_history_fetch (r->thread->history, (int) limit);
    if (!value) {
        bm_series_inc (server->history_errors);
        s_error_retry (r, 503, "redis_unavailable", "metric history is unavailable right now",
                       GW_RETRY_STORE_DOWN);
        return;
    }
    s_send_json (r, 200, value, NULL);
}

//  --------------------------------------------------------------------------
//  Routing, authentication, rate limiting

//  Match the path to a route; fills r->job_id for /job/{id}...
static s_route_t
s_route (s_req_t *r, const char *path)
{
    if (streq (path, "/invoke"))        return R_INVOKE;
    if (streq (path, "/health"))        return R_HEALTH;
    if (streq (path, "/ready"))         return R_READY;
    if (streq (path, "/metrics"))       return R_METRICS;
    if (streq (path, "/stats"))         return R_STATS;
    if (streq (path, "/jobs"))          return R_JOBS;
    if (streq (path, "/api/history"))   return R_HISTORY;
    if (strncmp (path, BM_ASSETS_PREFIX, strlen (BM_ASSETS_PREFIX)) == 0) {
        char next = path [strlen (BM_ASSETS_PREFIX)];
        if (next == 0 || next == '/')
            return R_ADMIN;
        return R_OTHER;
    }
    if (strncmp (path, "/job/", 5) == 0) {
        const char *id = path + 5;
        const char *slash = strchr (id, '/');
        size_t len = slash ? (size_t) (slash - id) : strlen (id);
        if (!bm_valid_id (id, len))
            return R_OTHER;
        memcpy (r->job_id, id, len);
        r->job_id [len] = 0;
        if (!slash)                     return R_JOB;
        if (streq (slash, "/cancel"))   return R_JOB_CANCEL;
        if (streq (slash, "/retry"))    return R_JOB_RETRY;
        if (streq (slash, "/redeliver")) return R_JOB_REDELIVER;
    }
    return R_OTHER;
}

//  Check the API key; returns the rate-limit key for this client into buf
//  and 0, or -1 after answering 401.
static int
s_authenticate (s_req_t *r, char *limit_key, size_t size)
{
    gw_server_t *server = r->server;
    bool needs_key = s_routes [r->route].needs_key
                  || (r->route == R_METRICS && server->config.metrics_require_key);
    if (!gw_auth_enabled (server->auth)) {
        snprintf (limit_key, size, "a:%s", r->ri->remote_addr);
        return 0;
    }
    size_t len = 0;
    const char *key = gw_auth_presented (mg_get_header (r->conn, "Authorization"),
                                         mg_get_header (r->conn, "X-API-Key"), &len);
    int index = gw_auth_check (server->auth, key, len);
    if (index < 0 && needs_key) {
        bm_series_inc (server->auth_failures);
        r->reason = "unauthorized";
        s_error (r, 401, "unauthorized",
                 key ? "the API key is not valid"
                     : "an API key is required (Authorization: Bearer KEY or X-API-Key)",
                 "WWW-Authenticate: Bearer\r\n");
        return -1;
    }
    //  Keys on: one bucket per key (clients sharing a key share it).
    if (index >= 0)
        snprintf (limit_key, size, "k:%d", index);
    else
        snprintf (limit_key, size, "a:%s", r->ri->remote_addr);
    return 0;
}

static int
s_handler (struct mg_connection *conn, void *cbdata)
{
    gw_server_t *server = (gw_server_t *) cbdata;
    struct timespec t0;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    bm_series_inc (server->in_flight);

    atomic_fetch_add (&server->active, 1);
    s_req_t req = { .conn = conn, .ri = mg_get_request_info (conn), .server = server };
    s_req_t *r = &req;
    r->thread = (s_thread_t *) mg_get_thread_pointer (conn);
    const char *te = mg_get_header (conn, "Transfer-Encoding");
    r->body_pending = r->ri->content_length > 0 || (r->ri->content_length < 0 && te);
    const char *expect = mg_get_header (conn, "Expect");
    r->expect_continue = r->body_pending && expect && strcasestr (expect, "100-continue");
    r->head = streq (r->ri->request_method, "HEAD");
    const char *path = r->ri->local_uri ? r->ri->local_uri : "";
    r->route = s_route (r, path);

    bool draining = atomic_load (&server->draining);
    if (draining)
        r->must_close = true;       //  Let keep-alive clients move on
    if (!r->thread) {
        //  Not one of civetweb's worker threads: cannot happen.
        s_error (r, 500, "internal", "internal error", NULL);
    }
    else
    if (draining && r->route != R_HEALTH) {
        r->reason = "shutting_down";
        s_error_retry (r, 503, "shutting_down", "the gateway is shutting down; retry later",
                       GW_RETRY_SHUTTING_DOWN);
    }
    else
    if (r->route == R_OTHER)
        s_error (r, 404, "not_found", "no such endpoint", NULL);
    else
    if (strcmp (r->ri->request_method, s_routes [r->route].method) != 0
    &&  !(r->head && streq (s_routes [r->route].method, "GET"))) {
        //  HEAD is GET without the body (load balancers probe with it).
        bool get = streq (s_routes [r->route].method, "GET");
        char extra [64];
        snprintf (extra, sizeof extra, "Allow: %s\r\n", get ? "GET, HEAD" : s_routes [r->route].method);
        char message [80];
        snprintf (message, sizeof message, "use %s for this endpoint", s_routes [r->route].method);
        s_error (r, 405, "method_not_allowed", message, extra);
    }
    else {
        char limit_key [96];
        int retry_after = 1;
        if (s_authenticate (r, limit_key, sizeof limit_key))
            ;   //  Answered 401
        else
        if (server->limiter && s_routes [r->route].limited
        &&  !gw_ratelimit_take (server->limiter, limit_key, bm_mono_ms (), &retry_after)) {
            bm_series_inc (server->rate_limited);
            r->reason = "rate_limited";
            s_error_retry (r, 429, "rate_limited", "too many requests; slow down", retry_after);
        }
        else
        switch (r->route) {
            case R_HEALTH:          s_handle_health (r); break;
            case R_READY:           s_handle_ready (r); break;
            case R_METRICS:         s_handle_metrics (r); break;
            case R_INVOKE:          s_handle_invoke (r); break;
            case R_JOB:             s_handle_job (r, BM_STATUS); break;
            case R_JOB_CANCEL:      s_handle_job (r, BM_CANCEL); break;
            case R_JOB_RETRY:       s_handle_job_action (r, BM_RETRY); break;
            case R_JOB_REDELIVER:   s_handle_job_action (r, BM_REDELIVER); break;
            case R_JOBS:            s_handle_jobs (r); break;
            case R_STATS:           s_handle_stats (r); break;
            case R_ADMIN:           s_handle_admin (r); break;
            case R_HISTORY:         s_handle_history (r); break;
            default:                s_error (r, 404, "not_found", "no such endpoint", NULL);
        }
    }
    if (!r->status)             //  A handler forgot to answer: our bug
        s_error (r, 500, "internal", "internal error", NULL);

    if (r->route == R_INVOKE && r->status >= 400)
        s_count_rejected (server, r->reason ? r->reason : "other");
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

static void *
s_init_thread (const struct mg_context *ctx, int thread_type)
{
    //  Only worker threads (type 1) serve requests.
    if (thread_type != 1)
        return NULL;
    s_thread_t *thread = (s_thread_t *) zmalloc (sizeof (s_thread_t));
    thread->server = (gw_server_t *) mg_get_user_data (ctx);
    return thread;
}

static void
s_exit_thread (const struct mg_context *ctx, int thread_type, void *pointer)
{
    (void) ctx;
    (void) thread_type;
    s_thread_t *thread = (s_thread_t *) pointer;
    if (thread) {
        gw_history_destroy (&thread->history);
        free (thread);
    }
}

//  Errors civetweb answers itself (a request it cannot parse, a head too
//  large, an unknown HTTP version...): JSON like ours, and the connection
//  closes, since what follows on it cannot be trusted.
static int
s_http_error (struct mg_connection *conn, int status, const char *message)
{
    (void) message;                 //  May hold request bytes: not echoed
    const char *code = "bad_request";
    switch (status) {
        case 408: code = "request_timeout"; break;
        case 411: code = "length_required"; break;
        case 413: code = "request_too_large"; break;
        case 414: code = "uri_too_long"; break;
        case 431: code = "headers_too_large"; break;
        case 505: code = "http_version_not_supported"; break;
        default:  if (status >= 500) code = "internal"; break;
    }
    char body [160];
    int len = snprintf (body, sizeof body,
                        "{\"error\":{\"code\":\"%s\",\"message\":\"the request could not be "
                        "handled (HTTP %d)\"}}", code, status);
    char buf [BM_HTTP_HEAD_MAX + 160];
    int n = bm_http_head (conn, status, "application/json", (size_t) len, "close", NULL,
                          buf, sizeof buf);
    if (n < 0)
        return 0;
    memcpy (buf + n, body, (size_t) len);
    n += len;
    mg_disable_keep_alive (conn);
    mg_write (conn, buf, (size_t) n);
    return 0;
}

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    bm_warn (NULL, "civetweb: %s", message);
    return 1;
}

//  --------------------------------------------------------------------------
//  Lifecycle

gw_server_t *
gw_server_new (const gw_config_t *config)
{
    gw_server_t *self = (gw_server_t *) zmalloc (sizeof (gw_server_t));
    self->config = *config;
    pthread_mutex_init (&self->types_lock, NULL);

    char error [200];
    self->auth = gw_auth_new (config->api_keys, error, sizeof error);
    if (!self->auth) {
        bm_error (NULL, "configuration: %s", error);
        goto fail;
    }
    if (config->rate_rps > 0) {
        double burst = config->rate_burst > 0 ? config->rate_burst
                     : (config->rate_rps < 1 ? 1 : config->rate_rps);
        self->limiter = gw_ratelimit_new (config->rate_rps, burst, (size_t) config->rate_max_keys);
        if (!self->limiter) {
            bm_error (NULL, "configuration: RATE_LIMIT_BURST must be at least 1");
            goto fail;
        }
    }
    if (config->redis_url && *config->redis_url && !streq (config->redis_url, "none")) {
        if (bm_redis_url_parse (config->redis_url, &self->redis)) {
            bm_error (NULL, "configuration: REDIS_URL must be redis://[:password@]host[:port][/db] or none");
            goto fail;
        }
        self->history_on = true;
    }
    if (s_metrics_init (self)) {
        bm_error (NULL, "cannot register the gateway's metrics");
        goto fail;
    }
    //  The broker link first: handler threads use it from their first
    //  request.  It connects in the background; a request meanwhile waits
    //  up to BROKER_CONNECT_TIMEOUT_MS for the connection.
    self->link = gw_link_new (config->broker_endpoint, config->connect_timeout_ms);
    if (!self->link)
        goto fail;

    char ports [300];
    snprintf (ports, sizeof ports, "%s:%d", config->listen_addr, (int) config->port);
    char threads [16], keepalive [16], request_timeout [16], header_size [16];
    snprintf (threads, sizeof threads, "%d", (int) config->threads);
    snprintf (keepalive, sizeof keepalive, "%d", (int) config->keepalive_ms);
    snprintf (request_timeout, sizeof request_timeout, "%d", (int) config->request_timeout_ms);
    snprintf (header_size, sizeof header_size, "%d", (int) config->max_header_bytes);
    const char *options [] = {
        "listening_ports", ports,
        "num_threads", threads,
        //  Keep-alive on: most of a request's cost is TCP set-up otherwise.
        //  Each open connection holds a civetweb thread, so idle ones
        //  are closed after GATEWAY_KEEPALIVE_MS.
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", keepalive,
        //  A client must deliver its headers and body within this time:
        //  slow clients cannot hold threads for ever.
        "request_timeout_ms", request_timeout,
        "max_request_size", header_size,
        //  Accepted sockets waiting for a free thread.
        "connection_queue", "1024",
        "listen_backlog", "1024",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.init_thread = s_init_thread;
    callbacks.exit_thread = s_exit_thread;
    callbacks.log_message = s_log_message;
    callbacks.http_error = s_http_error;
    callbacks.begin_request = bm_http_begin_request;
    struct mg_init_data init = { &callbacks, self, options };
    unsigned code = 0;
    char text [256] = "";
    struct mg_error_data mg_error = { &code, text, sizeof text };
    self->ctx = mg_start2 (&init, &mg_error);
    if (!self->ctx) {
        bm_error (NULL, "cannot start the HTTP server on %s: %s", ports, *text ? text : "unknown error");
        goto fail;
    }
    mg_set_request_handler (self->ctx, "/", s_handler, self);

    struct mg_server_port info [4];
    int n = mg_get_server_ports (self->ctx, 4, info);
    self->port = n > 0 ? info [0].port : (int) config->port;
    return self;
fail:
    gw_server_destroy (&self);
    return NULL;
}

int
gw_server_port (gw_server_t *self)
{
    return self->port;
}

int
gw_server_drain (gw_server_t *self, int64_t timeout_ms)
{
    atomic_store (&self->draining, true);
    int64_t deadline = bm_mono_ms () + timeout_ms;
    while (atomic_load (&self->active) > 0) {
        if (bm_mono_ms () >= deadline) {
            bm_warn (NULL, "%d requests still in flight after %" PRId64 " ms; stopping anyway",
                     atomic_load (&self->active), timeout_ms);
            return -1;
        }
        zclock_sleep (10);
    }
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
        if (self->ctx)
            mg_stop (self->ctx);
        gw_link_destroy (&self->link);
        bm_metrics_destroy (&self->metrics);
        gw_ratelimit_destroy (&self->limiter);
        gw_auth_destroy (&self->auth);
        pthread_mutex_destroy (&self->types_lock);
        free (self);
        *self_p = NULL;
    }
}

/*  bm_metrics_http.c - a tiny civetweb server: GET /metrics, GET /health,
    and GET /ready when its owner says how.

    For processes that have no HTTP server of their own (the broker).
    Answers go through bm_http (one write each, the common headers).
    Keep-alive is off and a few threads suffice: Prometheus scrapes once
    every few seconds. */
#include "bm_main.h"
#include "bm_metrics.h"
#include "bm_config.h"
#include "bm_http.h"

#include <assert.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <civetweb.h>

struct _bm_metrics_http_t {
    struct mg_context *ctx;             //  civetweb server
    bm_metrics_t *metrics;              //  Registry rendered on /metrics (borrowed)
    int port;                           //  Port we listen on
    int64_t started_ms;                 //  For uptimeMs
    bm_metrics_ready_fn *ready;         //  For /ready, or NULL (fixed at start)
    void *ready_arg;
    char listen_addr [64];              //  As given, for bm_http_stop
};

//  True for GET and HEAD; else answers 405 and returns false.
static bool
s_get_or_head (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (strcmp (info->request_method, "GET") == 0 || strcmp (info->request_method, "HEAD") == 0)
        return true;
    bm_http_reply_error (conn, 405, "method_not_allowed", "use GET");
    return false;
}

static int
s_handle_metrics (struct mg_connection *conn, void *cbdata)
{
    bm_metrics_http_t *self = (bm_metrics_http_t *) cbdata;
    if (!s_get_or_head (conn))
        return 405;
    bm_http_reply_metrics (conn, bm_metrics_render (self->metrics));
    return 200;
}

//  /health: {status: "healthy", timestamp, uptimeMs}.
static int
s_handle_health (struct mg_connection *conn, void *cbdata)
{
    bm_metrics_http_t *self = (bm_metrics_http_t *) cbdata;
    if (!s_get_or_head (conn))
        return 405;
    json_t *health = bm_http_health ();
    json_object_set_new (health, "uptimeMs", json_integer (bm_now_ms () - self->started_ms));
    bm_http_reply_json (conn, 200, health, NULL);
    return 200;
}

//  /ready: what the owner's function says, 200 or 503.
static int
s_handle_ready (struct mg_connection *conn, void *cbdata)
{
    bm_metrics_http_t *self = (bm_metrics_http_t *) cbdata;
    if (!s_get_or_head (conn))
        return 405;
    if (!self->ready) {
        bm_http_reply_error (conn, 404, "not_found", "no /ready here: GET /metrics or /health");
        return 404;
    }
    json_t *answer = json_object ();
    int status = self->ready (self->ready_arg, answer) == 200 ? 200 : 503;
    bm_http_reply_json (conn, status, answer, status == 200 ? NULL : "Retry-After: 1\r\n");
    return status;
}

//  Every path: /metrics, /health, /ready, else 404 (with the common headers).
static int
s_handle (struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *path = info->local_uri ? info->local_uri : "";
    if (strcmp (path, "/metrics") == 0)
        return s_handle_metrics (conn, cbdata);
    if (strcmp (path, "/health") == 0)
        return s_handle_health (conn, cbdata);
    if (strcmp (path, "/ready") == 0)
        return s_handle_ready (conn, cbdata);
    bm_http_reply_error (conn, 404, "not_found", "GET /metrics or /health");
    return 404;
}

//  civetweb's own log lines would go to stderr unasked; keep them quiet.
static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    (void) message;
    return 1;
}

bm_metrics_http_t *
bm_metrics_http_new (bm_metrics_t *metrics, const char *listen_addr, int port)
{
    return bm_metrics_http_new_ready (metrics, listen_addr, port, NULL, NULL);
}

bm_metrics_http_t *
bm_metrics_http_new_ready (bm_metrics_t *metrics, const char *listen_addr, int port,
                           bm_metrics_ready_fn *ready, void *ready_arg)
{
    assert (metrics);
    if (port < 0 || port > 65535)
        return NULL;
    bm_metrics_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
    self->ready = ready;
    self->ready_arg = ready_arg;
    self->started_ms = bm_now_ms ();
    snprintf (self->listen_addr, sizeof self->listen_addr, "%s", listen_addr ? listen_addr : "");
    const char *options [] = {
        "num_threads", "4",
        "request_timeout_ms", "10000",
        "enable_keep_alive", "no",
        NULL
    };
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.log_message = s_log_message;
    char error [160];
    self->ctx = bm_http_start (listen_addr, port, options, &callbacks, self, &self->port,
                               error, sizeof error);
    if (!self->ctx) {
        free (self);
        return NULL;
    }
    mg_set_request_handler (self->ctx, "/", s_handle, self);
    bm_main_listening ("metrics", listen_addr, self->port);
    return self;
}

int
bm_metrics_http_port (bm_metrics_http_t *self)
{
    assert (self);
    return self->port;
}

void
bm_metrics_http_destroy (bm_metrics_http_t **self_p)
{
    assert (self_p);
    bm_metrics_http_t *self = *self_p;
    if (!self)
        return;
    bm_http_stop (self->ctx, self->listen_addr);     //  mg_stop, promptly
    free (self);
    *self_p = NULL;
}

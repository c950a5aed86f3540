/*  bm_metrics_http.c - a tiny civetweb server: GET /metrics, GET /health.

    For processes that have no HTTP server of their own (the broker).  Each
    answer is built in one buffer and written once (PLATFORM.md: civetweb's
    header helpers write line by line).  Keep-alive is off and a few threads
    suffice: Prometheus scrapes once every few seconds. */
#include "bm_metrics.h"
#include "bm_http_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <civetweb.h>

struct _bm_metrics_http_t {
    struct mg_context *ctx;             //  civetweb server
    bm_metrics_t *metrics;              //  Registry rendered on /metrics (borrowed)
    int port;                           //  Port we listen on
};

//  Write status line, headers and body in one write.
static void
s_reply (struct mg_connection *conn, int status, const char *reason,
         const char *content_type, const char *body, size_t body_size, int head_only)
{
    char header [256];
    int header_size = snprintf (header, sizeof header,
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: %s\r\n"
        "Content-Length: %zu\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n",
        status, reason, content_type, body_size);
    size_t total = (size_t) header_size + (head_only ? 0 : body_size);
    char *buffer = malloc (total);
    if (!buffer) {
        mg_write (conn, header, (size_t) header_size);
        return;
    }
    memcpy (buffer, header, (size_t) header_size);
    if (!head_only)
        memcpy (buffer + header_size, body, body_size);
    mg_write (conn, buffer, total);
    free (buffer);
}

static int
s_is_get (const struct mg_request_info *info, int *head_only)
{
    *head_only = strcmp (info->request_method, "HEAD") == 0;
    return *head_only || strcmp (info->request_method, "GET") == 0;
}

static int
s_handle_metrics (struct mg_connection *conn, void *cbdata)
{
    bm_metrics_http_t *self = (bm_metrics_http_t *) cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    int head_only;
    if (!s_is_get (info, &head_only)) {
        const char *body = "method not allowed\n";
        s_reply (conn, 405, "Method Not Allowed", "text/plain", body, strlen (body), 0);
        return 405;
    }
    char *text = bm_metrics_render (self->metrics);
    if (!text) {
        const char *body = "out of memory\n";
        s_reply (conn, 500, "Internal Server Error", "text/plain", body, strlen (body), head_only);
        return 500;
    }
    s_reply (conn, 200, "OK", BM_METRICS_CONTENT_TYPE, text, strlen (text), head_only);
    free (text);
    return 200;
}

static int
s_handle_health (struct mg_connection *conn, void *cbdata)
{
    (void) cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    int head_only;
    if (!s_is_get (info, &head_only)) {
        const char *body = "method not allowed\n";
        s_reply (conn, 405, "Method Not Allowed", "text/plain", body, strlen (body), 0);
        return 405;
    }
    const char *body = "{\"status\":\"ok\"}\n";
    s_reply (conn, 200, "OK", "application/json", body, strlen (body), head_only);
    return 200;
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
    assert (metrics);
    if (port < 0 || port > 65535)
        return NULL;
    bm_metrics_http_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->metrics = metrics;
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
    mg_set_request_handler (self->ctx, "/metrics$", s_handle_metrics, self);
    mg_set_request_handler (self->ctx, "/health$", s_handle_health, self);
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
    mg_stop (self->ctx);
    free (self);
    *self_p = NULL;
}

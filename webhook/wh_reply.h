/*  wh_reply.h - civetweb helpers shared by botmesh-webhook and botmesh-mock.

    Each response is built in one buffer and written with one mg_write
    (PLATFORM.md: civetweb's header helpers write line by line, which halves
    throughput).  JSON errors have the API's shape:
    {"error": {"code": "...", "message": "..."}}.  */
#ifndef WH_REPLY_H
#define WH_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <civetweb.h>
#include <jansson.h>

#include "bm_metrics.h"

//  Write status line, headers and body.  extra_headers holds whole header
//  lines ("Retry-After: 2\r\n"), or is NULL.  A HEAD request gets no body.
void wh_reply (struct mg_connection *conn, int status, const char *content_type,
               const char *extra_headers, const char *body, size_t body_len);

//  Reply with a JSON value; takes the reference.
void wh_reply_json (struct mg_connection *conn, int status, json_t *json,
                    const char *extra_headers);

//  Reply {"error": {"code": code, "message": message}}.
void wh_reply_error (struct mg_connection *conn, int status, const char *code,
                     const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

//  Reply with the registry in the Prometheus text format (500 if it cannot
//  be rendered).
void wh_reply_metrics (struct mg_connection *conn, bm_metrics_t *metrics);

//  Read the request body (Content-Length or chunked) into a new buffer,
//  terminated (caller frees *data).  Returns 0, -1 if larger than max
//  (answer 413), -2 if the connection failed.
int wh_read_body (struct mg_connection *conn, size_t max, char **data, size_t *len);

//  The reason phrase of a status ("OK", "Not Found", "Unknown").
const char *wh_status_reason (int status);

#endif

/*  wh_reply.c - civetweb helpers shared by botmesh-webhook and botmesh-mock.  */
#include "wh_reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *
wh_status_reason (int status)
{
    switch (status) {
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 413: return "Content Too Large";
        case 425: return "Too Early";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default:  return "Unknown";
    }
}

void
wh_reply (struct mg_connection *conn, int status, const char *content_type,
          const char *extra_headers, const char *body, size_t body_len)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    bool head = info && info->request_method && strcmp (info->request_method, "HEAD") == 0;
    char header [1024];
    int header_len = snprintf (header, sizeof header,
        "HTTP/1.1 %d %s\r\n"
        "Content-Type: %s\r\n"
        "Content-Length: %zu\r\n"
        "Cache-Control: no-store\r\n"
        "%s\r\n",
        status, wh_status_reason (status), content_type, body_len,
        extra_headers? extra_headers: "");
    if (header_len < 0 || (size_t) header_len >= sizeof header)
        header_len = snprintf (header, sizeof header,
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
            status, wh_status_reason (status), content_type, body_len);
    size_t total = (size_t) header_len + (head? 0: body_len);
    char *buffer = (char *) malloc (total);
    if (!buffer) {
        mg_write (conn, header, (size_t) header_len);
        if (!head && body_len)
            mg_write (conn, body, body_len);
        return;
    }
    memcpy (buffer, header, (size_t) header_len);
    if (!head && body_len)
        memcpy (buffer + header_len, body, body_len);
    mg_write (conn, buffer, total);
    free (buffer);
}

void
wh_reply_json (struct mg_connection *conn, int status, json_t *json, const char *extra_headers)
{
    char *text = json? json_dumps (json, JSON_COMPACT): NULL;
    json_decref (json);
    if (!text) {
        const char *fallback = "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        wh_reply (conn, 500, "application/json", NULL, fallback, strlen (fallback));
        return;
    }
    wh_reply (conn, status, "application/json", extra_headers, text, strlen (text));
    free (text);
}

void
wh_reply_error (struct mg_connection *conn, int status, const char *code, const char *fmt, ...)
{
    char message [512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    wh_reply_json (conn, status,
                   json_pack ("{s:{s:s, s:s}}", "error", "code", code, "message", message), NULL);
}

int
wh_read_body (struct mg_connection *conn, size_t max, char **data, size_t *len)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    *data = NULL;
    *len = 0;
    if (info->content_length > 0 && (size_t) info->content_length > max)
        return -1;
    size_t capacity = info->content_length > 0? (size_t) info->content_length + 1: 4096;
    char *buffer = (char *) malloc (capacity);
    if (!buffer)
        return -2;
    size_t used = 0;
    while (true) {
        if (used + 1 >= capacity) {
            if (capacity > max + 1) {
                free (buffer);
                return -1;
            }
            capacity *= 2;
            char *bigger = (char *) realloc (buffer, capacity);
            if (!bigger) {
                free (buffer);
                return -2;
            }
            buffer = bigger;
        }
        int got = mg_read (conn, buffer + used, capacity - used - 1);
        if (got < 0) {
            free (buffer);
            return -2;
        }
        if (got == 0)
            break;
        used += (size_t) got;
        if (used > max) {
            free (buffer);
            return -1;
        }
    }
    buffer [used] = 0;
    *data = buffer;
    *len = used;
    return 0;
}

void
wh_reply_metrics (struct mg_connection *conn, bm_metrics_t *metrics)
{
    char *text = bm_metrics_render (metrics);
    if (text) {
        wh_reply (conn, 200, BM_METRICS_CONTENT_TYPE, NULL, text, strlen (text));
        free (text);
    }
    else
        wh_reply_error (conn, 500, "internal", "out of memory");
}

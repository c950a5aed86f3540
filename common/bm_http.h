/*  bm_http.h - the HTTP layer of botmesh's civetweb servers: the gateway,
    the webhook manager, the mock receiver and the broker's metrics server.

    * Starting a server (listening address and port, options, civetweb's
      own messages logged, the port actually bound), and the command line
      of a server whose only flags are --help and --port N.
    * Writing a whole response (status line, headers, body) in one buffer
      with one mg_write: civetweb's header helpers write each line apart,
      which halves throughput.
    * The headers every response carries: Cache-Control: no-store, the
      browser security headers, and CORS (Access-Control-Allow-Origin as
      CORS_ORIGINS says).  A CORS preflight (any OPTIONS request) is
      answered before any handler runs (bm_http_begin_request).
    * JSON replies, JSON errors {"error": {"code": "...", "message": "..."}},
      the /metrics reply, the /health body, reading a request body within a
      limit.

    The CORS setting is process-wide: set it (bm_http_cors_from_env) before
    any server starts; handler threads only read it.  */
#ifndef BM_HTTP_H
#define BM_HTTP_H

#include <civetweb.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

//  Longest CORS_ORIGINS value, and most origins in it.
#define BM_HTTP_CORS_MAX_LEN        4096
#define BM_HTTP_CORS_MAX_ORIGINS    32
#define BM_HTTP_ORIGIN_MAX_LEN      200
//  Room bm_http_head needs for our own headers (callers add their extra).
#define BM_HTTP_HEAD_MAX            2048

//  --------------------------------------------------------------------------
//  Settings

//  Set the allowed origins: NULL, "" or "*" allow any origin (the answer is
//  "Access-Control-Allow-Origin: *"); else a comma-separated list of
//  origins ("https://app.example.com,http://localhost:8080"): a request
//  whose Origin is in it gets that origin back, with "Vary: Origin"; other
//  origins get no Access-Control-Allow-Origin.  Returns 0, or -1 with a
//  message in error (nothing changes).
int bm_http_set_cors (const char *origins, char *error, size_t error_size);

//  True when origin is one of the origins CORS_ORIGINS lists by name (never
//  under "*": any origin is then allowed to read, none is trusted to act).
bool bm_http_origin_listed (const char *origin);

//  Replies this thread writes while off is true carry no
//  "Access-Control-Allow-Origin: *" (under "*" only "Vary: Origin"; an
//  origin CORS_ORIGINS names is still granted): for endpoints that change
//  state, whose answers any page must not read.  A handler turns it on for
//  its request and off before it returns.
void bm_http_cors_off (bool off);

//  bm_http_set_cors from the CORS_ORIGINS variable.  Returns 0, or -1 after
//  logging "configuration: CORS_ORIGINS ...".
int bm_http_cors_from_env (void);

//  --------------------------------------------------------------------------
//  Starting a server

//  Start civetweb on listen_addr:port (listen_addr NULL or "": 0.0.0.0;
//  port 0: a free port).  options: NULL-terminated name/value pairs besides
//  "listening_ports" (num_threads, enable_keep_alive...).  callbacks may be
//  NULL; without a log_message of its own, civetweb's messages are logged
//  as warnings (bm_log); without a begin_request, bm_http_begin_request
//  answers CORS preflights.  Request handlers are the caller's to set.
//  Returns the context and sets *bound to the port it listens on, or
//  returns NULL with a message in error ("cannot listen on ADDR:PORT
//  (Address already in use)": civetweb's own messages while it starts go
//  into it, not to the log).
struct mg_context *bm_http_start (const char *listen_addr, int port, const char *const *options,
                                  const struct mg_callbacks *callbacks, void *user_data,
                                  int *bound, char *error, size_t error_size);

//  0 when addr may be given to bm_http_start (NULL or "": every
//  interface; else an IPv4 address: civetweb 1.15 listens on no other),
//  else -1, having logged a configuration error naming var.
int bm_http_listen_check (const char *var, const char *addr);

//  True when such an addr is reachable from the network: every interface
//  (NULL, "", 0.0.0.0) or any address outside 127.0.0.0/8.
bool bm_http_listen_open (const char *addr);

//  An HTTP API on addr:port that asks no API key (keys NULL or ""): one
//  WARN when addr is open to the network, saying who reaches the port may
//  do what `exposed` says, and how to close it (API_KEYS, or listen_var=
//  127.0.0.1).  Returns whether it warned.
bool bm_http_warn_open (const char *addr, int port, const char *keys, const char *listen_var,
                        const char *exposed);

//  Log why a server could not start (error from bm_http_start) as one
//  ERROR line that names the variable setting its port (port_var, e.g.
//  "API_GATEWAY_PORT"): "cannot listen on 0.0.0.0:3000 (Address already
//  in use): set API_GATEWAY_PORT (or --port) to a free port, or 0 for any".
void bm_http_start_failed (const char *error, const char *port_var);

//  Stop civetweb promptly: mg_stop, while a helper thread connects to the
//  server's own port every 10 ms until it returns.  civetweb's listening
//  thread polls its socket for 2 s at a time and sees the stop only after
//  a poll returns, so a bare mg_stop of an idle server takes up to 2 s; a
//  connection ends that poll at once.  listen_addr is the address given to
//  bm_http_start (NULL, "" or 0.0.0.0: 127.0.0.1 is dialled).
void bm_http_stop (struct mg_context *ctx, const char *listen_addr);
//  The same for a server with no request in flight any more (drained):
//  the connections it accepted (on every port it listens on) also get
//  their reading side shut meanwhile,
//  so a thread waiting for a keep-alive connection's next request ends at
//  once rather than after its poll quantum (up to 2 s); what is being
//  written still goes out.
void bm_http_stop_drained (struct mg_context *ctx, const char *listen_addr);

//  The socket of a connection being served (plain HTTP), found among this
//  process's TCP sockets by its ports and its peer's address, or -1 when
//  none or more than one matches (it cannot be told apart).  civetweb
//  closes it once the request's handler returns: use it only from that
//  handler, or while the handler is known to be running.
int bm_http_conn_socket (const struct mg_connection *conn);

//  civetweb's begin_request callback: refuses a request with ambiguous
//  framing (bm_http_framing_error) with 400 and returns 400; answers an
//  OPTIONS request (a CORS preflight) with 204 and the CORS headers, and
//  returns 204; returns 0 for every other request (the handlers answer it).
int bm_http_begin_request (struct mg_connection *conn);

//  Why a request's framing is refused, or NULL when it is not: two
//  Content-Length headers with different values, a Content-Length that is
//  not one decimal number ("2, 40"), or Content-Length with
//  Transfer-Encoding.  Readers that pick different lengths (civetweb takes
//  the first header) would split the stream differently: request
//  smuggling.  The same value twice is accepted.  bm_http_begin_request
//  answers such a request 400 {"error": {"code": "bad_framing", ...}} and
//  closes the connection.
const char *bm_http_framing_error (const struct mg_request_info *info);

//  The start of main for a server taking only "--help"/"-h" (usage to
//  stdout) and "--port N": logging set up for component (bm_log_init),
//  then the arguments, then CORS_ORIGINS.  Returns -1 to go on, with
//  *port_flag the value of --port or NULL; else the exit code: 0 after
//  --help, 2 (BM_EXIT_CONFIG) after an unknown argument (named on stderr,
//  then the usage) or if LOG_LEVEL or CORS_ORIGINS is bad.
int bm_http_args (int argc, char *argv [], const char *component, void (*usage) (FILE *out),
                  const char **port_flag);

//  Apply the value of --port (port_flag may be NULL: nothing to do) to
//  *port.  0, or -1 (logged) if it is not an integer from 0 to 65535.
int bm_http_port_flag (const char *port_flag, int64_t *port);

//  --------------------------------------------------------------------------
//  Writing responses

//  Format the status line and headers (through the blank line) into buf:
//  Content-Type, Content-Length (none when body_len is BM_HTTP_NO_LENGTH: a
//  stream the connection's close ends), Cache-Control, the security and
//  CORS headers, "Connection: <connection>" unless connection is NULL, then
//  extra (whole header lines, "Retry-After: 2\r\n", or NULL).  Returns the
//  length, or -1 if buf is too small.
#define BM_HTTP_NO_LENGTH SIZE_MAX
int bm_http_head (struct mg_connection *conn, int status, const char *content_type,
                  size_t body_len, const char *connection, const char *extra,
                  char *buf, size_t size);

//  Write status line, headers and body with one write.  A HEAD request
//  gets no body.
void bm_http_reply (struct mg_connection *conn, int status, const char *content_type,
                    const char *extra, const char *body, size_t body_len);

//  Reply with a JSON value; takes the reference.  500 if it cannot be
//  serialised.
void bm_http_reply_json (struct mg_connection *conn, int status, json_t *json,
                         const char *extra);

//  Reply {"error": {"code": code, "message": message}}.
void bm_http_reply_error (struct mg_connection *conn, int status, const char *code,
                          const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

//  Refuse a request before any handler: log it (one INFO line, at most
//  10 a second for all such refusals, the rest counted into the next),
//  reply {"error": {"code", "message"}} and close the connection.
void bm_http_refuse (struct mg_connection *conn, int status, const char *code,
                     const char *message);

//  Reply with a Prometheus text exposition (takes text; NULL, when it
//  could not be rendered, answers 500).
void bm_http_reply_metrics (struct mg_connection *conn, char *text);

//  The JSON text of a compact JSON serialisation, as every reply uses it
//  (16 significant digits: 228.6889, not 228.68889999999999).  Caller frees.
char *bm_http_json_text (const json_t *json);

//  The body of /health on every service: {"status": "healthy",
//  "timestamp": "<ISO 8601 now>"}.  Callers add their own fields.
json_t *bm_http_health (void);

//  An ISO 8601 UTC time with milliseconds ("2024-05-01T12:00:00.000Z") of
//  ms since the epoch.  0, or -1 if the year is outside 0..9999 or buf is
//  too small (40 bytes always suffice).
int bm_http_iso_time (int64_t ms, char *buf, size_t size);

//  A job record's times as the HTTP API gives them: every integer member
//  whose key ends in "At" (ms since the epoch), of the record and of its
//  webhook, and the "at" of each attemptErrors entry, replaced by its ISO
//  8601 form. Anything else is left as it is.
void bm_http_record_times (json_t *record);

//  The reason phrase of a status ("OK", "Not Found", "Unknown").
const char *bm_http_reason (int status);

//  --------------------------------------------------------------------------
//  Reading requests

//  Read the request body (Content-Length or chunked) into a new buffer,
//  terminated (caller frees *data).  Returns 0, -1 if larger than max
//  (answer 413), -2 if the connection failed.
int bm_http_read_body (struct mg_connection *conn, size_t max, char **data, size_t *len);

#endif

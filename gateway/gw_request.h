/*  gw_request.h - one HTTP request being served by the gateway, and what
    every route does with it: read the body and the query string, ask the
    broker (over the server's shared gw_link) and answer, in one write.

    Each function that "answers" writes the whole response; a request is
    answered at most once (later answers are ignored), and r->status holds
    the status sent, 0 until then.  r->reason names why an /invoke was
    refused, for gateway_invoke_rejected_total.  Only the civetweb thread
    serving the request touches it.  */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include "gw_server_priv.h"
#include "bm_proto.h"

#include <jansson.h>
#include <msgpack.h>

//  One request being served.
typedef struct {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    gw_server_t *server;
    gw_thread_t *thread;
    gw_route_t route;
    const char *path;                   //  The path, percent-decoded
    char job_id [BM_MAX_ID_LEN + 1];    //  For /job/{id}...
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];    //  For /queues/{botType}/...
    int status;                         //  Status answered, 0 until then
    bool body_pending;                  //  Body bytes we have not read
    bool must_close;                    //  Close the connection after answering
    bool expect_continue;               //  Client waits for "100 Continue"
    bool head;                          //  A HEAD request: answer without body
    const char *reason;                 //  Why an /invoke was refused (metrics)
} gw_request_t;

//  Write the whole response (status line, headers, body) with one write.
//  extra holds more header lines, each ending in CRLF, or NULL.
void gw_request_send (gw_request_t *r, int status, const char *content_type, const char *extra,
                      const char *body, size_t size);

//  Answer with a JSON value (takes the reference).
void gw_request_send_json (gw_request_t *r, int status, json_t *value, const char *extra);

//  Answer {"error": {"code": code, "message": message}}.
void gw_request_error (gw_request_t *r, int status, const char *code, const char *message,
                       const char *extra);

//  Log the summary of refused requests' lines not written ("suppressed K"),
//  if any.  gw_request_error logs each refusal (4xx, 5xx) itself.
void gw_request_refused_flush (gw_server_t *server);

//  The same with a Retry-After header (seconds).
void gw_request_error_retry (gw_request_t *r, int status, const char *code, const char *message,
                             int retry_after);

//  Send one request (body holds "req" = req; taken) to the broker and wait
//  for its answer (caller destroys it).  On no answer, answers the HTTP
//  request (503 unreachable / 504 too slow) when `answer` is true, and
//  returns NULL.
bm_msg_t *gw_request_broker (gw_request_t *r, int64_t req, int command, char *body, size_t size,
                             bool answer);

//  Why the broker did not answer (code broker_unavailable), in the words
//  /ready, /invoke and /invoke/batch all use: no broker leads (the brokers
//  answer as standbys), or the broker is not reachable.
const char *gw_request_unavailable_text (gw_server_t *server);

//  STATUS of the job id names; when the broker knows no job with that id
//  and or_key, a second STATUS {req, idempotencyKey: id}: the job submitted
//  with that key (a BullMQ client's own jobId).  As gw_request_broker_simple.
bm_msg_t *gw_request_status (gw_request_t *r, const char *id, bool or_key, bool answer);

//  A simple request {req, jobId?} (job_id may be NULL): pack, send, wait.
bm_msg_t *gw_request_broker_simple (gw_request_t *r, int command, const char *job_id,
                                    bool answer);

//  What a REJECTED body (the message's, or a batch item's) is for the
//  HTTP client: status, code, message, Retry-After (0: none), and the
//  reason for gateway_invoke_rejected_total.  unknown_bot_type may ask the
//  broker for its bot types (cached).
typedef struct {
    int status;
    const char *code;                   //  Static
    const char *reason;                 //  Static
    char message [200];
    int retry_after;
} gw_rejection_t;
void gw_request_rejection (gw_request_t *r, const msgpack_object *body, gw_rejection_t *out);

//  Answer a REJECTED from the broker with the matching HTTP error.
void gw_request_rejected (gw_request_t *r, bm_msg_t *reply);

//  Answer a reply we did not expect (wrong command or body): 502.
void gw_request_bad_reply (gw_request_t *r, bm_msg_t *reply);

//  Is the Content-Type JSON?  "application/json", any case, with or
//  without parameters; NULL (no Content-Type) counts as JSON.
bool gw_request_is_json (const char *content_type);

//  Read the whole body, at most MAX_BODY_BYTES.  Returns 0 with *body
//  (caller frees; NUL-terminated) and *size, or -1 after answering.
int gw_request_read_body (gw_request_t *r, char **body, size_t *size);

//  Read a JSON body's text: 415 unsupported_media_type unless the
//  Content-Type is JSON (or absent), then gw_request_read_body.  0 with
//  *body (caller frees) and *size, or -1 after answering.
int gw_request_read_json_text (gw_request_t *r, char **body, size_t *size);

//  Read a body that must be one JSON object, checked alike on every route
//  that takes one: 415 as above, 400 invalid_json (malformed text named by
//  line and column, duplicate keys, a NUL, an empty body, nesting past 64
//  levels refused before it is parsed), 400 invalid_body with the message
//  `shape` when it is another JSON value.  The object (caller decrefs), or
//  NULL after answering (r->reason set).
json_t *gw_request_read_object (gw_request_t *r, const char *shape);

//  A query-string parameter into buf.  1 if present, 0 if absent, -1 if
//  longer than buf; -2 once answered 400 with code, when the parameter is
//  given twice or holds a NUL or control character once decoded.
int gw_request_query (gw_request_t *r, const char *name, char *buf, size_t size,
                      const char *code);

#endif

/*  gw_request.c - one HTTP request being served: reading it, answering it
    (each response built in one buffer and written with one mg_write:
    civetweb's header helpers cost one write per line, which halves
    throughput on this kind of machine), and asking the broker.  */
#include "gw_request.h"
#include "gw_record.h"
#include "gw_invoke.h"

#include "bm_http.h"
#include "bm_log.h"

#include <errno.h>
#include <inttypes.h>
#include <strings.h>

//  How long the list of bot types (for unknown_bot_type) is reused.
#define GW_BOT_TYPES_TTL_MS     5000
//  Bodies of refused requests up to this size are read and dropped so the
//  connection can stay open; larger ones close it.
#define GW_DRAIN_MAX            (64 * 1024)
//  Lingering close (s_linger): how long and how much of an unwanted body
//  is read after the answer, so that the answer is not lost to a reset.
#define GW_LINGER_MS            1000
#define GW_LINGER_BYTES         (32 * 1024 * 1024)
//  Largest single read of a request body (see gw_request_read_body).
#define GW_READ_STEP_MAX        (64 * 1024)

//  --------------------------------------------------------------------------
//  Writing responses

//  Does the client want the connection kept open (civetweb's own rule)?
static bool
s_client_keeps_alive (gw_request_t *r)
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
s_drain (gw_request_t *r)
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
    size_t step = 1;                //  Small first, as in gw_request_read_body
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
s_linger (gw_request_t *r)
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
void
gw_request_send (gw_request_t *r, int status, const char *content_type, const char *extra,
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
void
gw_request_send_json (gw_request_t *r, int status, json_t *value, const char *extra)
{
    char *text = bm_http_json_text (value);
    json_decref (value);
    if (!text) {
        const char *fallback = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        gw_request_send (r, 500, "application/json", NULL, fallback, strlen (fallback));
        return;
    }
    gw_request_send (r, status, "application/json", extra, text, strlen (text));
    free (text);
}

//  Copy text for a log line: printable ASCII kept, anything else (a
//  newline, a quote, UTF-8, a byte a client made up) as %XX, cut to fit.
static void
s_log_safe (char *dest, size_t size, const char *text)
{
    static const char hex [] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *) (text ? text : ""); *p; p++) {
        bool plain = *p > 0x20 && *p < 0x7f && *p != '%' && *p != '"' && *p != '\\';
        size_t need = plain ? 1 : 3;
        if (n + need + 4 > size) {
            memcpy (dest + n, "...", 3);
            n += 3;
            break;
        }
        if (plain)
            dest [n++] = (char) *p;
        else {
            dest [n++] = '%';
            dest [n++] = hex [*p >> 4];
            dest [n++] = hex [*p & 15];
        }
    }
    dest [n] = 0;
}

//  Log the count of refusal lines not written, if any (refused_lock held).
static void
s_refused_summary (gw_server_t *server)
{
    if (server->refused_suppressed) {
        bm_warn (NULL, "refused: %" PRIu64 " more refused requests not logged (at most %d lines/s)",
                 server->refused_suppressed, GW_REFUSED_LOG_PER_SEC);
        server->refused_suppressed = 0;
    }
}

void
gw_request_refused_flush (gw_server_t *server)
{
    pthread_mutex_lock (&server->refused_lock);
    s_refused_summary (server);
    pthread_mutex_unlock (&server->refused_lock);
}

//  One line per refused request: status, error code, method and path, the
//  client's address; never the body.  At most GW_REFUSED_LOG_PER_SEC lines
//  a second, so that a client hammering bad requests cannot make the log
//  the bottleneck: the rest are counted and summed up in one line.
static void
s_log_refused (gw_request_t *r, int status, const char *code)
{
    gw_server_t *server = r->server;
    bm_level_t level = status >= 500 ? BM_WARN : BM_INFO;
    if (!server || !r->ri || !bm_log_enabled (level))
        return;
    int64_t second = bm_mono_ms () / 1000;
    pthread_mutex_lock (&server->refused_lock);
    if (second != server->refused_second) {
        server->refused_second = second;
        server->refused_lines = 0;
        s_refused_summary (server);
    }
    bool write = server->refused_lines < GW_REFUSED_LOG_PER_SEC;
    if (write)
        server->refused_lines++;
    else
        server->refused_suppressed++;
    pthread_mutex_unlock (&server->refused_lock);
    if (!write)
        return;
    char what [64], method [24], path [256], client [64];
    s_log_safe (what, sizeof what, code);
    s_log_safe (method, sizeof method, r->ri->request_method);
    s_log_safe (path, sizeof path, r->path && *r->path ? r->path : r->ri->local_uri);
    s_log_safe (client, sizeof client, r->ri->remote_addr);
    bool job = r->job_id [0] && r->ri->local_uri && strncmp (r->ri->local_uri, "/job/", 5) == 0;
    bm_log (level, job ? r->job_id : NULL, "refused %d %s %s %s from %s", status,
            what, method, path, client);
}

//  Answer {"error": {"code": code, "message": message}}.
void
gw_request_error (gw_request_t *r, int status, const char *code, const char *message, const char *extra)
{
    if (!r->status && status >= 400)
        s_log_refused (r, status, code);
    json_t *value = json_pack ("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    gw_request_send_json (r, status, value, extra);
}

void
gw_request_error_retry (gw_request_t *r, int status, const char *code, const char *message, int retry_after)
{
    char extra [64];
    snprintf (extra, sizeof extra, "Retry-After: %d\r\n", retry_after);
    gw_request_error (r, status, code, message, extra);
}

//  --------------------------------------------------------------------------
//  Talking to the broker

//  Pack {req, jobId?} for the simple requests.  Returns its req; caller
//  frees (or hands on) *data.
static int64_t
s_pack_simple_as (gw_server_t *server, const char *name, const char *job_id, char **data,
                  size_t *size)
{
    int64_t req = gw_link_next_req (server->link);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, job_id ? 2 : 1);
    bm_pack_kv_int (&pk, "req", req);
    if (job_id)
        bm_pack_kv_str (&pk, name, job_id);
    *data = sbuf.data;
    *size = sbuf.size;
    return req;
}

static int64_t
s_pack_simple (gw_server_t *server, const char *job_id, char **data, size_t *size)
{
    return s_pack_simple_as (server, "jobId", job_id, data, size);
}

#define GW_TEXT_OUTCOME_UNKNOWN "the broker's answer could not be read: the request was sent " \
    "and its outcome is unknown (the job may have been accepted: send it again with the same " \
    "idempotencyKey, or look for it with GET /jobs)"

#define GW_TEXT_NO_LEADER "no broker leads: the brokers answer as standbys (none holds the " \
                          "lease, or they cannot reach Redis); retry later"

const char *
gw_request_unavailable_text (gw_server_t *server)
{
    return gw_link_standbys_only (server->link) ? GW_TEXT_NO_LEADER
                                                : "the broker is not reachable";
}

//  Send one request (body holds "req" = req; taken) to the broker and wait
//  for its answer.  On no answer, answers the HTTP request (503
//  unreachable / 504 too slow) when `answer` is true, and returns NULL.
bm_msg_t *
gw_request_broker (gw_request_t *r, int64_t req, int command, char *body, size_t size, bool answer)
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
            gw_request_error (r, 504, "broker_connection_lost",
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
            gw_request_error (r, 504, "broker_timeout", "the broker did not answer in time", NULL);
    }
    else
    if (errno == EPROTO) {
        //  The request went in a group (SUBMIT_MANY) whose answer could
        //  not be split into one per request: sent, perhaps accepted.
        bm_series_inc (server->broker_bad_replies);
        bm_error (NULL, "the broker's answer to a group holding a %s could not be split: "
                  "its outcome is unknown", bm_command_name (BM_PEER_CLIENT, command));
        r->reason = "broker_error";
        if (answer)
            gw_request_error (r, 502, "broker_error", GW_TEXT_OUTCOME_UNKNOWN, NULL);
    }
    else {
        bm_series_inc (server->broker_unavailable);
        bm_debug (NULL, "broker unreachable for %s", bm_command_name (BM_PEER_CLIENT, command));
        r->reason = "broker_unavailable";
        if (answer)
            gw_request_error_retry (r, 503, "broker_unavailable",
                                    gw_request_unavailable_text (server), GW_RETRY_BROKER_DOWN);
    }
    return NULL;
}

//  A simple request {req, jobId?}: pack, send, wait.
bm_msg_t *
gw_request_broker_simple (gw_request_t *r, int command, const char *job_id, bool answer)
{
    char *data;
    size_t size;
    int64_t req = s_pack_simple (r->server, job_id, &data, &size);
    return gw_request_broker (r, req, command, data, size, answer);
}

bm_msg_t *
gw_request_status (gw_request_t *r, const char *id, bool or_key, bool answer)
{
    bm_msg_t *reply = gw_request_broker_simple (r, BM_STATUS, id, answer);
    char code [32] = "";
    if (!or_key || !reply || bm_msg_command (reply) != BM_REJECTED
    ||  !bm_obj_strcpy (bm_msg_body (reply), "code", code, sizeof code)
    ||  !streq (code, "not_found"))
        return reply;
    bm_msg_destroy (&reply);
    char *data;
    size_t size;
    int64_t req = s_pack_simple_as (r->server, "idempotencyKey", id, &data, &size);
    return gw_request_broker (r, req, BM_STATUS, data, size, answer);
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
s_bot_types (gw_request_t *r, char *buf, size_t size)
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
    bm_msg_t *reply = gw_request_broker_simple (r, BM_STATS, NULL, false);
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
//  gw_request_rejected).  The HTTP error code is the broker's.
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
    //  422: the request is well-formed, but its key names another job.
    { "idempotency_key_reused", 422, "idempotency_key_reused", NULL,
      "idempotencyKey was used for another job", 0 },
    //  503, not 429: the system is full, not this client too fast.
    //  The broker's words name the type and its bound.
    { "queue_full", 503, "queue_full", NULL, "the queue for this bot type is full; retry later",
      GW_RETRY_QUEUE_FULL },
    //  But for the broker's words while it recovers (gw_request_rejection).
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

//  What a REJECTED body from the broker becomes for the HTTP client.
void
gw_request_rejection (gw_request_t *r, const msgpack_object *body, gw_rejection_t *out)
{
    char code [64] = "";
    bm_obj_strcpy (body, "code", code, sizeof code);
    const s_rejection_t *rule;
    out->retry_after = 0;

    if (streq (code, "unknown_bot_type")) {
        out->status = 400;
        out->code = out->reason = "invalid_bot_type";
        //  The broker names the types it knows (an older one in its hash
        //  order; not for every command), a few when there are many: else,
        //  and then, a STATS reply does.  Shown in one order everywhere,
        //  whole names, with a count of those past the message's room
        //  (gw_record_type_list).
        static const char prefix [] = "botType must be one of: ";
        char types [GW_TYPES_LEN] = "";
        const char *str;
        size_t len;
        if (bm_obj_str (body, "message", &str, &len) && len > strlen (prefix)
        &&  len - strlen (prefix) < sizeof types && memcmp (str, prefix, strlen (prefix)) == 0) {
            memcpy (types, str + strlen (prefix), len - strlen (prefix));
            types [len - strlen (prefix)] = 0;
        }
        if (!*types || strstr (types, "... and ")) {
            char stats [GW_TYPES_LEN];
            s_bot_types (r, stats, sizeof stats);
            if (*stats)
                memcpy (types, stats, sizeof types);
        }
        size_t used = (size_t) snprintf (out->message, sizeof out->message, "%s", prefix);
        gw_record_type_list (types, out->message + used, sizeof out->message - used);
        if (!out->message [used])
            snprintf (out->message, sizeof out->message,
                      "botType is not a bot type the broker knows");
    }
    else
    if (streq (code, "not_leader")) {
        //  Every broker tried within the connect timeout was a standby.
        out->status = 503;
        out->code = out->reason = "broker_unavailable";
        out->retry_after = GW_RETRY_BROKER_DOWN;
        s_copy (out->message, sizeof out->message, GW_TEXT_NO_LEADER);
    }
    else
    if ((rule = s_rejection (code))) {
        out->status = rule->status;
        out->code = rule->code;
        out->reason = rule->reason;
        out->retry_after = rule->retry_after;
        if (rule->message)
            s_copy (out->message, sizeof out->message, rule->message);
        else
            s_safe_message (body, out->message, sizeof out->message, rule->fallback);
        //  runAt is the one field whose range only the broker can check
        //  (its clock): its refusal gets the code the gateway gives a
        //  runAt of the wrong type.
        if (streq (code, "bad_request") && strncmp (out->message, "runAt ", 6) == 0)
            out->code = out->reason = "invalid_run_at";
        //  Redis is fine, the broker reads its queues back, or waits for
        //  the workers to name their types again (a start or a failover):
        //  said as the broker says it, nothing else it says.
        const char *said;
        size_t said_len;
        static const char *passed [] = { BM_TEXT_RECOVERING, BM_TEXT_TYPES_WAIT };
        for (size_t i = 0; i < sizeof passed / sizeof *passed; i++)
            if (streq (code, "store_unavailable") && bm_obj_str (body, "message", &said, &said_len)
            &&  said_len == strlen (passed [i]) && memcmp (said, passed [i], said_len) == 0)
                s_copy (out->message, sizeof out->message, passed [i]);
    }
    else {
        //  bad_frame, bad_header...: our own request was wrong.  Log it,
        //  tell the client nothing internal.
        out->status = 502;
        out->code = out->reason = "broker_error";
        bm_series_inc (r->server->broker_bad_replies);
        bm_error (NULL, "broker refused our request: %s", *code ? code : "(no code)");
        s_copy (out->message, sizeof out->message, "the broker could not handle the request");
    }
}

//  Answer a REJECTED from the broker with the matching HTTP error.
void
gw_request_rejected (gw_request_t *r, bm_msg_t *reply)
{
    gw_rejection_t rejection;
    gw_request_rejection (r, bm_msg_body (reply), &rejection);
    r->reason = rejection.reason;
    if (rejection.retry_after)
        gw_request_error_retry (r, rejection.status, rejection.code, rejection.message,
                                rejection.retry_after);
    else
        gw_request_error (r, rejection.status, rejection.code, rejection.message, NULL);
}

//  Answer a reply we did not expect (wrong command or body).
void
gw_request_bad_reply (gw_request_t *r, bm_msg_t *reply)
{
    bm_series_inc (r->server->broker_bad_replies);
    bm_error (NULL, "unexpected broker reply %s",
              bm_command_name (BM_PEER_CLIENT, bm_msg_command (reply)));
    r->reason = "broker_error";
    gw_request_error (r, 502, "broker_error", "the broker sent an unexpected answer", NULL);
}

//  --------------------------------------------------------------------------
//  Reading the request

//  Is the Content-Type JSON?  "application/json", any case, with or
//  without parameters (charset).  A request without Content-Type is
//  accepted and parsed as JSON (see README.md).
bool
gw_request_is_json (const char *content_type)
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
s_body_too_large (gw_request_t *r, size_t max)
{
    r->must_close = true;
    r->reason = "body_too_large";
    char message [96];
    snprintf (message, sizeof message, "the body is larger than %zu bytes", max);
    gw_request_error (r, 413, "body_too_large", message, NULL);
    return -1;
}

//  Answer 503 out_of_memory (closing the connection: the body is not
//  read); returns -1.
static int
s_no_memory (gw_request_t *r)
{
    r->must_close = true;
    r->reason = "out_of_memory";
    gw_request_error (r, 503, "out_of_memory", "no memory for the request body; retry later", NULL);
    return -1;
}

//  Read the whole body, at most MAX_BODY_BYTES.  Returns 0 with *body
//  (caller frees; NUL-terminated) and *size, or -1 after answering.
int
gw_request_read_body (gw_request_t *r, char **body, size_t *size)
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
        if (n < 0 && declared < 0 && bm_mono_ms () < deadline) {
            //  civetweb could not read a chunk's size line (not
            //  hexadecimal, or cut short): the body's framing is broken.
            free (buf);
            r->must_close = true;
            r->reason = "bad_request";
            gw_request_error (r, 400, "bad_framing",
                              "the chunked body is malformed: each chunk must begin with its "
                              "size in hexadecimal and CRLF", NULL);
            return -1;
        }
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
        gw_request_error (r, 408, "request_timeout", "the body was not sent in time", NULL);
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
        gw_request_error (r, 400, "truncated_body", "the body ended before Content-Length bytes", NULL);
        return -1;
    }
    r->body_pending = false;
    buf [got] = 0;
    *body = buf;
    *size = got;
    return 0;
}

//  Read a JSON body's text: 415 when Content-Type names another type
//  (none at all is read as JSON), then the body (413, 408, ...).
int
gw_request_read_json_text (gw_request_t *r, char **body, size_t *size)
{
    *body = NULL;
    *size = 0;
    if (!gw_request_is_json (mg_get_header (r->conn, "Content-Type"))) {
        r->reason = "unsupported_media_type";
        gw_request_error (r, 415, "unsupported_media_type",
                          "Content-Type must be application/json", NULL);
        return -1;
    }
    return gw_request_read_body (r, body, size);
}

//  Read a JSON object body: the text (gw_request_read_json_text), parsed
//  as /invoke parses it (gw_invoke_parse: nesting bounded before jansson
//  recurses, duplicate keys, NUL, malformed text named by line and
//  column), and an object, else 400 invalid_body with `shape`.
json_t *
gw_request_read_object (gw_request_t *r, const char *shape)
{
    char *text;
    size_t size;
    if (gw_request_read_json_text (r, &text, &size))
        return NULL;
    gw_invoke_error_t error;
    json_t *body = gw_invoke_parse (text, size, 0, &error);
    free (text);
    if (body && !json_is_object (body)) {
        json_decref (body);
        body = NULL;
        error.status = 400;
        error.code = "invalid_body";
        snprintf (error.message, sizeof error.message, "%s", shape);
    }
    if (!body) {
        r->reason = error.code;
        gw_request_error (r, error.status, error.code, error.message, NULL);
    }
    return body;
}

//  A query-string parameter into buf.  1 if present, 0 if absent, -1 if
//  longer than buf; -2 once answered 400 with code, when the parameter is
//  given twice or holds a NUL or control character once decoded.
int
gw_request_query (gw_request_t *r, const char *name, char *buf, size_t size, const char *code)
{
    const char *qs = r->ri->query_string;
    if (!qs)
        return 0;
    size_t qs_len = strlen (qs);
    int n = mg_get_var (qs, qs_len, name, buf, size);
    if (n == -1)
        return 0;
    if (n < 0)
        return -1;
    char second [8];
    int again = mg_get_var2 (qs, qs_len, name, second, sizeof second, 1);
    const char *why = NULL;
    if (again != -1)
        why = "given twice: give it once";
    else
    for (int i = 0; i < n && !why; i++)
        if ((unsigned char) buf [i] < 0x20 || buf [i] == 0x7f)
            why = "holds a NUL or control character";
    if (why) {
        char message [96];
        snprintf (message, sizeof message, "%s %s", name, why);
        gw_request_error (r, 400, code, message, NULL);
        return -2;
    }
    return 1;
}

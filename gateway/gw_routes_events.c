/*  gw_routes_events.c - GET /events: live job events as Server-Sent Events
    (gw_events.h is the hub; docs/protocol.md, SUBSCRIBE, the broker's side).

    The request's thread holds the stream until the client goes, the
    broker subscription cannot be made, or the gateway stops: each stream
    holds a civetweb thread, hence GATEWAY_MAX_EVENT_STREAMS.  */
#include "gw_request.h"
#include "gw_routes.h"
#include "gw_events.h"
#include "bm_http.h"

#include "bm_log.h"

//  A comment line each second without events: it keeps proxies and
//  clients from timing out, and is how a client that left is noticed
//  (civetweb tells nothing of a closed connection until a write to it
//  fails, and the first write after the close still succeeds), its
//  thread and its GATEWAY_MAX_EVENT_STREAMS slot given back within about
//  two seconds rather than held while its filters match nothing.
#define GW_EVENTS_KEEPALIVE_MS  1000
//  How long a new stream waits for the broker subscription.
#define GW_EVENTS_READY_MS      5000

//  The filters of the query string; -1 once answered 400.
static int
s_filter (gw_request_t *r, gw_events_filter_t *filter)
{
    memset (filter, 0, sizeof *filter);
    char events [256];
    int has_type = gw_request_query (r, "botType", filter->bot_type, sizeof filter->bot_type,
                                     "invalid_bot_type");
    if (has_type == -2)
        return -1;
    if (has_type < 0 || (has_type > 0 && *filter->bot_type
                         && !bm_valid_bot_type (filter->bot_type, strlen (filter->bot_type)))) {
        gw_request_error (r, 400, "invalid_bot_type",
                          "botType must be 1 to 32 characters from [a-z0-9_-]", NULL);
        return -1;
    }
    int has_job = gw_request_query (r, "jobId", filter->job_id, sizeof filter->job_id,
                                    "invalid_job_id");
    if (has_job == -2)
        return -1;
    if (has_job < 0 || (has_job > 0 && *filter->job_id
                        && !bm_valid_id (filter->job_id, strlen (filter->job_id)))) {
        gw_request_error (r, 400, "invalid_job_id", "jobId must be 1 to 128 printable ASCII "
                          "characters without spaces", NULL);
        return -1;
    }
    int has_events = gw_request_query (r, "events", events, sizeof events, "invalid_events");
    if (has_events == -2)
        return -1;
    if (has_events < 0) {
        gw_request_error (r, 400, "invalid_events", "events is too long", NULL);
        return -1;
    }
    //  A comma-separated list of names
    char *save = NULL;
    for (char *name = strtok_r (events, ",", &save); has_events > 0 && name;
         name = strtok_r (NULL, ",", &save)) {
        int i = 0;
        while (gw_events_name (i) && !streq (gw_events_name (i), name))
            i++;
        if (!gw_events_name (i)) {
            char message [256];
            snprintf (message, sizeof message, "events: unknown event name '%.64s' (waiting, "
                      "active, progress, completed, failed, delayed, removed, stalled, cancelled, "
                      "waiting-children)",
                      name);
            gw_request_error (r, 400, "invalid_events", message, NULL);
            return -1;
        }
        filter->events |= 1u << i;
    }
    return 0;
}

//  The id of the last event the client got: the Last-Event-ID header (an
//  EventSource sends it when it reconnects), else the lastEventId query
//  (for fetch()); "" none.  -1 once answered 400.
static int
s_last_id (gw_request_t *r, char *last_id, size_t size)
{
    const char *header = mg_get_header (r->conn, "Last-Event-ID");
    int has = 0;
    if (header) {
        has = strlen (header) < size ? 1 : -1;
        if (has > 0)
            snprintf (last_id, size, "%s", header);
    }
    else {
        has = gw_request_query (r, "lastEventId", last_id, size, "invalid_last_event_id");
        if (has == -2)
            return -1;
    }
    if (has <= 0)
        last_id [0] = 0;
    bool valid = has >= 0;
    for (const char *c = last_id; valid && *c; c++)
        valid = *c > ' ' && *c < 127;
    if (!valid) {
        gw_request_error (r, 400, "invalid_last_event_id", "Last-Event-ID (or lastEventId) must "
                          "be an event id as the stream's id: lines give it (at most 47 printable "
                          "characters)", NULL);
        return -1;
    }
    return 0;
}

static void
s_too_many (gw_request_t *r)
{
    char message [160];
    snprintf (message, sizeof message, "%d event streams are open already "
              "(GATEWAY_MAX_EVENT_STREAMS); retry later", r->server->max_event_streams);
    gw_request_error_retry (r, 503, "too_many_streams", message, 5);
}

//  A jobId that is no job's id but the idempotencyKey (BullMQ's own jobId)
//  some job was submitted with names that job, as GET /job/{id} finds it:
//  looked up once, as the stream opens (events carry the job's id only),
//  so a job submitted with that key later is not matched.  Unknown: kept,
//  a job id yet to come.
static void
s_resolve_key (gw_request_t *r, gw_events_filter_t *filter)
{
    bm_msg_t *reply = gw_request_status (r, filter->job_id, true, false);
    const msgpack_object *job = reply && bm_msg_command (reply) == BM_REPLY
                              ? bm_obj_get (bm_msg_body (reply), "job") : NULL;
    char id [BM_MAX_ID_LEN + 1];
    if (job && bm_obj_strcpy (job, "jobId", id, sizeof id) && *id && !streq (id, filter->job_id)) {
        bm_info (id, "event stream of jobId=%s: that job's idempotencyKey, its events",
                 filter->job_id);
        memcpy (filter->job_id, id, sizeof filter->job_id);
    }
    bm_msg_destroy (&reply);
}

void
gw_routes_events (gw_request_t *r)
{
    gw_server_t *server = r->server;
    gw_events_filter_t filter;
    char last_id [48];
    if (s_filter (r, &filter) || s_last_id (r, last_id, sizeof last_id))
        return;
    if (r->head) {
        //  The head a GET would have, no stream (no thread held for it).
        gw_request_send (r, 200, "text/event-stream", "X-Accel-Buffering: no\r\n", NULL, 0);
        return;
    }
    //  The cap before the key's lookup: a full gateway asks the broker nothing
    if (gw_events_streams (server->events) >= server->max_event_streams) {
        s_too_many (r);
        return;
    }
    if (*filter.job_id)
        s_resolve_key (r, &filter);
    gw_stream_t *stream = gw_events_open (server->events, &filter, last_id);
    if (!stream) {
        s_too_many (r);
        return;
    }
    if (!gw_events_wait_ready (server->events, stream, GW_EVENTS_READY_MS)) {
        gw_events_close (server->events, &stream);
        char code [64], refusal [256];
        if (atomic_load (&server->draining))
            gw_request_error_retry (r, 503, "shutting_down", "the gateway is shutting down; retry "
                                    "later", GW_RETRY_SHUTTING_DOWN);
        else
        if (gw_events_refused (server->events, code, sizeof code, refusal, sizeof refusal)) {
            char message [320];
            snprintf (message, sizeof message, "the broker refused the gateway's event "
                      "subscription: %s", *refusal ? refusal : code);
            gw_request_error_retry (r, 503, code, message, GW_RETRY_BROKER_DOWN);
        }
        else
            gw_request_error_retry (r, 503, "broker_unavailable", "could not subscribe to the "
                                    "broker's events; retry later", GW_RETRY_BROKER_DOWN);
        return;
    }
    //  Its socket, which the gateway's stop shuts if the stream is stuck
    //  writing to a client that stopped reading (gw_server_drain).
    int socket = bm_http_conn_socket (r->conn);
    if (socket < 0)
        bm_debug (NULL, "GET /events: this stream's socket was not found (TLS, no /proc, or "
                  "two sockets match its addresses): a stop waits for its write to end");
    gw_events_set_socket (server->events, stream, socket);
    bm_series_inc (server->event_streams);
    r->status = 200;
    mg_disable_keep_alive (r->conn);
    //  The headers (CORS, security) every answer carries, no Content-Length
    char head [BM_HTTP_HEAD_MAX + 64];
    int len = bm_http_head (r->conn, 200, "text/event-stream", BM_HTTP_NO_LENGTH, "close",
                            "X-Accel-Buffering: no\r\n", head, sizeof head);
    bool open = len > 0 && mg_write (r->conn, head, (size_t) len) > 0
             && mg_write (r->conn, ": subscribed\n\n", 14) > 0;
    int64_t written = bm_mono_ms ();
    while (open && !atomic_load (&server->draining)) {
        char *item = gw_events_next (server->events, stream, 500);
        if (item) {
            open = mg_write (r->conn, item, strlen (item)) > 0;
            free (item);
            written = bm_mono_ms ();
        }
        else
        if (bm_mono_ms () - written >= GW_EVENTS_KEEPALIVE_MS) {
            open = mg_write (r->conn, ": keep-alive\n\n", 14) > 0;
            written = bm_mono_ms ();
        }
    }
    if (open) {
        static const char end [] = "event: end\ndata: {\"reason\":\"the gateway is shutting "
                                   "down\"}\n\n";
        mg_write (r->conn, end, sizeof end - 1);
    }
    gw_events_close (server->events, &stream);
    bm_series_dec (server->event_streams);
}

/*  gw_routes.c - the gateway's route handlers.  */
#include "gw_routes.h"
#include "gw_wait.h"
#include "gw_invoke.h"
#include "gw_record.h"

#include "bm_assets.h"
#include "bm_http.h"
#include "bm_log.h"

#include <inttypes.h>

void
gw_routes_health (gw_request_t *r)
{
    gw_request_send_json (r, 200, bm_http_health (), NULL);
}

void
gw_routes_ready (gw_request_t *r)
{
    bm_msg_t *reply = gw_request_broker_simple (r, BM_PING, NULL, false);
    if (!reply || bm_msg_command (reply) != BM_REPLY) {
        //  A standby's REJECTED not_leader: no broker leads (the words of
        //  /invoke's 503 for it); else the broker did not answer.
        gw_rejection_t rejection = { .status = 0 };
        if (reply && bm_msg_command (reply) == BM_REJECTED)
            gw_request_rejection (r, bm_msg_body (reply), &rejection);
        bm_msg_destroy (&reply);
        const char *message = rejection.status == 503
                            && streq (rejection.code, "broker_unavailable")
                            ? rejection.message : gw_request_unavailable_text (r->server);
        json_t *value = json_pack ("{s:{s:s,s:s},s:s,s:b,s:n}",
            "error", "code", "broker_unavailable", "message", message,
            "status", "not_ready", "broker", 0, "redis");
        char extra [64];
        snprintf (extra, sizeof extra, "Retry-After: %d\r\n", GW_RETRY_BROKER_DOWN);
        gw_request_send_json (r, 503, value, extra);
        return;
    }
    bool redis = false, recovering = false;
    bm_obj_bool (bm_msg_body (reply), "redis", &redis);
    bm_obj_bool (bm_msg_body (reply), "recovering", &recovering);
    bm_msg_destroy (&reply);
    if (redis) {
        gw_request_send_json (r, 200, json_pack ("{s:s,s:b,s:b}", "status", "ready",
                                        "broker", 1, "redis", 1), NULL);
        return;
    }
    //  Redis answers, and the broker is reading its queues back (a start
    //  or a failover): not Redis's fault, and soon over.
    json_t *value = recovering
        ? json_pack ("{s:{s:s,s:s},s:s,s:b,s:b,s:b}",
              "error", "code", "recovering",
              "message", "the broker is reading its queues back from Redis",
              "status", "not_ready", "broker", 1, "redis", 0, "recovering", 1)
        : json_pack ("{s:{s:s,s:s},s:s,s:b,s:b}",
              "error", "code", "redis_unavailable", "message", "the broker cannot reach Redis",
              "status", "not_ready", "broker", 1, "redis", 0);
    char extra [64];
    snprintf (extra, sizeof extra, "Retry-After: %d\r\n", GW_RETRY_STORE_DOWN);
    gw_request_send_json (r, 503, value, extra);
}

//  The gateway's own series only: the broker serves its own on its
//  metrics port (BROKER_METRICS_PORT), which Prometheus scrapes apart, so
//  that a sum() over every job counts each execution once.
void
gw_routes_metrics (gw_request_t *r)
{
    char *text = bm_metrics_render (r->server->metrics);
    if (!text) {
        gw_request_error (r, 500, "internal", "out of memory", NULL);
        return;
    }
    gw_request_send (r, 200, BM_METRICS_CONTENT_TYPE, NULL, text, strlen (text));
    free (text);
}

//  Append str to buf as a JSON string: printable ASCII only, '"' and '\\'
//  escaped as jansson does.  Returns the new length, or -1 (does not fit,
//  or a byte that jansson would escape otherwise: the caller uses jansson).
static int
s_json_str (char *buf, size_t size, int len, const char *str)
{
    if (len < 0 || (size_t) len + 1 >= size)
        return -1;
    size_t n = (size_t) len;
    buf [n++] = '"';
    for (const char *p = str; *p; p++) {
        unsigned char c = (unsigned char) *p;
        if (c < 0x20 || c >= 0x7f || n + 3 >= size)
            return -1;
        if (c == '"' || c == '\\')
            buf [n++] = '\\';
        buf [n++] = (char) c;
    }
    buf [n++] = '"';
    buf [n] = 0;
    return (int) n;
}

const char *
gw_routes_accepted_status (const char *state, bool delayed, bool duplicate)
{
    return *state ? state : duplicate ? "unknown" : delayed ? "delayed" : "queued";
}

//  The 202 body of an accepted /invoke, as json_dumps (JSON_COMPACT) of
//  {jobId, status, botType, priority, estimatedPosition[, duplicate]}
//  writes it, without building the JSON value: per request that was a
//  dozen allocations and two passes.  Returns its length, or -1: the
//  caller builds it with jansson then.
int
gw_routes_accepted_text (char *buf, size_t size, const char *job_id, const char *status,
                         const char *bot_type, int64_t priority, bool has_position,
                         int64_t position, bool duplicate)
{
    int n = snprintf (buf, size, "{\"jobId\":");
    n = s_json_str (buf, size, n, job_id);
    if (n < 0 || (size_t) n + 12 >= size)
        return -1;
    n += snprintf (buf + n, size - (size_t) n, ",\"status\":");
    n = s_json_str (buf, size, n, status);
    if (n < 0 || (size_t) n + 13 >= size)
        return -1;
    n += snprintf (buf + n, size - (size_t) n, ",\"botType\":");
    n = s_json_str (buf, size, n, bot_type);
    if (n < 0)
        return -1;
    int more = has_position
        ? snprintf (buf + n, size - (size_t) n, ",\"priority\":%" PRId64 ",\"estimatedPosition\":%" PRId64 "%s}",
                    priority, position, duplicate ? ",\"duplicate\":true" : "")
        : snprintf (buf + n, size - (size_t) n, ",\"priority\":%" PRId64 ",\"estimatedPosition\":null%s}",
                    priority, duplicate ? ",\"duplicate\":true" : "");
    if (more < 0 || (size_t) n + (size_t) more >= size)
        return -1;
    return n + more;
}

const char *
gw_routes_accepted_warning (char *buf, size_t size, const char *warning, bool unserved,
                            const char *bot_type)
{
    const char *said = warning && *warning ? warning : NULL;
    if (!unserved)
        return said;
    snprintf (buf, size, "%s%sno worker serves bot type %s now: the job waits until one connects",
              said ? said : "", said ? "; " : "", bot_type);
    return buf;
}

json_t *
gw_routes_accepted_value (const char *job_id, const char *status, const char *bot_type,
                          int64_t priority, bool has_position, int64_t position, bool duplicate)
{
    json_t *value = json_pack ("{s:s,s:s,s:s,s:I,s:o}", "jobId", job_id, "status", status,
                               "botType", bot_type, "priority", (json_int_t) priority,
                               "estimatedPosition", has_position
                               ? json_integer ((json_int_t) position) : json_null ());
    if (value && duplicate)
        json_object_set_new (value, "duplicate", json_true ());
    return value;
}

//  POST /invoke?wait=MS, once the job is accepted: wait for it to finish
//  (gw_wait.h), then answer 200 with its record, or, when MS have passed
//  first, 202 with the accepted body and the job's state now ("state",
//  absent when the broker could not be asked: the job was accepted all
//  the same, so that is no error).  Both carry `ignored` and `warning` as
//  the 202 does.  A job removed while it waits is 404 not_found saying so
//  (gw_wait_status).
static void
s_invoke_wait (gw_request_t *r, int64_t wait_ms, const char *job_id, json_t *accepted,
               const char *extra, json_t *ignored, const char *warning)
{
    bool finished, removed;
    bm_msg_t *reply = gw_wait_status (r, job_id, false, bm_mono_ms () + wait_ms, false, true,
                                      &finished, &removed);
    if (removed) {
        json_decref (accepted);
        return;
    }
    const msgpack_object *job = reply && bm_msg_command (reply) == BM_REPLY
                              ? bm_obj_get (bm_msg_body (reply), "job") : NULL;
    char state [BM_MAX_STATE_LEN + 1];
    json_t *value = gw_wait_finished (job, state, sizeof state) ? gw_record_job (job) : NULL;
    bool done = value != NULL;
    if (done)
        json_decref (accepted);
    else {
        value = accepted;
        if (value && *state)
            json_object_set_new (value, "state", json_string (state));
    }
    if (value && ignored)
        json_object_set (value, "ignored", ignored);
    if (value && *warning)
        json_object_set_new (value, "warning", json_string (warning));
    gw_request_send_json (r, done ? 200 : 202, value, extra);
    bm_msg_destroy (&reply);
}

static void s_invoke (gw_request_t *r, int64_t wait_ms);

void
gw_routes_invoke (gw_request_t *r)
{
    int64_t wait_ms = 0;
    if (gw_wait_param (r, &wait_ms))
        return;
    //  The waiter's place is taken before the job is submitted: a 503
    //  too_many_waiters leaves no job behind.
    if (wait_ms > 0 && !gw_wait_enter (r))
        return;
    s_invoke (r, wait_ms);
    if (wait_ms > 0)
        gw_wait_leave (r->server);
}

static void
s_invoke (gw_request_t *r, int64_t wait_ms)
{
    gw_server_t *server = r->server;
    json_t *body = gw_request_read_object (r, "the body must be a JSON object");
    if (!body)
        return;
    gw_invoke_error_t error;
    int64_t req = gw_link_next_req (server->link);
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    int64_t priority = 0;
    json_t *ignored = NULL;
    bm_packer_t packer;
    bm_packer_init (&packer);
    int rc = gw_invoke_translate_value (body, true, req, &server->limits,
                                        &packer, NULL, bot_type, &priority, &ignored, &error);
    json_decref (body);
    if (rc) {
        bm_packer_destroy (&packer);
        r->reason = error.code;
        gw_request_error (r, error.status, error.code, error.message, NULL);
        return;
    }
    size_t submit_size;
    char *submit = bm_packer_detach (&packer, &submit_size);
    bm_msg_t *reply = gw_request_broker (r, req, BM_SUBMIT, submit, submit_size, true);
    if (!reply) {
        json_decref (ignored);
        return;
    }
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
        bool delayed = false;
        bm_obj_bool (bm_msg_body (reply), "delayed", &delayed);
        //  A duplicate's status is its job's now (it may have run since).
        char state [BM_MAX_STATE_LEN + 1] = "";
        bm_obj_strcpy (bm_msg_body (reply), "state", state, sizeof state);
        const char *status = gw_routes_accepted_status (state, delayed, duplicate);
        //  A duplicate's priority is its job's, when the broker says (this
        //  request may have asked for another).
        if (duplicate)
            bm_obj_int (bm_msg_body (reply), "priority", &priority);
        //  No worker serves the type now (the broker says so on a new
        //  job): the 202 says the job waits, with any warning of the request.
        bool unserved = false;
        bm_obj_bool (bm_msg_body (reply), "unserved", &unserved);
        char warned [GW_ROUTES_WARNING_MAX];
        const char *warning = gw_routes_accepted_warning (warned, sizeof warned, error.warning,
                                                          unserved, bot_type);
        char extra [200];
        snprintf (extra, sizeof extra, "Location: /job/%s\r\n", job_id);
        //  Keys the gateway does not read (BullMQ's removeOnComplete, ...)
        //  are named back: the client learns they had no effect.
        char *names = ignored ? json_dumps (ignored, JSON_COMPACT) : NULL;
        bm_debug (job_id, "accepted%s%s%s", duplicate ? " (duplicate)" : "",
                  names ? "; unknown fields ignored: " : "", names ? names : "");
        free (names);
        //  A warning of the request is an operator's to see; a type with no
        //  worker now is the client's (one WARN a job would flood the log).
        if (error.warning [0])
            bm_warn (job_id, "accepted with a warning: %s", error.warning);
        if (unserved)
            bm_debug (job_id, "accepted: no worker serves %s now", bot_type);
        char text [512];
        int n = ignored || warning || wait_ms > 0 ? -1
              : gw_routes_accepted_text (text, sizeof text, job_id, status,
                                                        bot_type, priority, has_position,
                                                        position, duplicate);
        if (n > 0)
            gw_request_send (r, 202, "application/json", extra, text, (size_t) n);
        else
        if (wait_ms > 0)
            s_invoke_wait (r, wait_ms, job_id,
                           gw_routes_accepted_value (job_id, status, bot_type, priority,
                                                     has_position, position, duplicate),
                           extra, ignored, warning ? warning : "");
        else {
            json_t *value = gw_routes_accepted_value (job_id, status, bot_type, priority,
                                                      has_position, position, duplicate);
            if (value && ignored)
                json_object_set (value, "ignored", ignored);
            if (value && warning)
                json_object_set_new (value, "warning", json_string (warning));
            gw_request_send_json (r, 202, value, extra);
        }
    }
    else
    if (bm_msg_command (reply) == BM_REJECTED)
        gw_request_rejected (r, reply);
    else
        gw_request_bad_reply (r, reply);
    bm_msg_destroy (&reply);
    json_decref (ignored);
}

//  The end of most handlers: the reply the route expects (`want`) is
//  answered with `status` and its JSON: `make` (body), or else `fixed`
//  (taken).  A REJECTED (when `rejections`) gets its HTTP error; anything
//  else is a bad reply (502).  No reply: gw_request_broker has answered already.
void
gw_routes_answer (gw_request_t *r, bm_msg_t *reply, int want, int status, gw_routes_make_fn *make,
                  json_t *fixed, bool rejections)
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
        gw_request_send_json (r, status, value, NULL);
    else
    if (rejections && bm_msg_command (reply) == BM_REJECTED)
        gw_request_rejected (r, reply);
    else
        gw_request_bad_reply (r, reply);
    bm_msg_destroy (&reply);
}

json_t *
gw_routes_make_job (const msgpack_object *body)
{
    json_t *record = gw_record_job (bm_obj_get (body, "job"));
    //  A whole record (STATUS, CANCEL): its log, null when it has none.
    if (record && !json_object_get (record, "log"))
        json_object_set_new (record, "log", json_null ());
    return record;
}

static json_t *
s_make_logs (const msgpack_object *body)
{
    return gw_record_logs (bm_obj_get (body, "job"));
}

//  GET /job/{id}, POST /job/{id}/cancel: answer with the job record.
//  GET /job/{id}?wait=MS answers once the job has finished, or with its
//  record as it is when MS have passed (gw_wait.h).
void
gw_routes_job (gw_request_t *r, int command)
{
    int64_t wait_ms = 0;
    if (command == BM_STATUS && gw_wait_param (r, &wait_ms))
        return;
    if (wait_ms == 0) {
        //  GET /job/{id} finds a job by the idempotencyKey (BullMQ jobId) it
        //  was submitted with too
        bm_msg_t *reply = command == BM_STATUS ? gw_request_status (r, r->job_id, true, true)
                                               : gw_request_broker_simple (r, command, r->job_id,
                                                                           true);
        gw_routes_answer (r, reply, BM_REPLY, 200, gw_routes_make_job, NULL, true);
        return;
    }
    if (!gw_wait_enter (r))
        return;
    bool finished, removed;
    bm_msg_t *reply = gw_wait_status (r, r->job_id, true, bm_mono_ms () + wait_ms, true, false,
                                      &finished, &removed);
    gw_wait_leave (r->server);
    gw_routes_answer (r, reply, BM_REPLY, 200, gw_routes_make_job, NULL, true);
}

void
gw_routes_job_logs (gw_request_t *r)
{
    //  Found by its idempotencyKey too, as GET /job/{id}.
    bm_msg_t *reply = gw_request_status (r, r->job_id, true, true);
    gw_routes_answer (r, reply, BM_REPLY, 200, s_make_logs, NULL, true);
}

//  POST /job/{id}/retry and /redeliver: ACCEPTED -> 202.  A redelivery
//  answers as the webhook manager's POST /deliveries/{jobId}/retry does:
//  the job's new webhook state and the same status.
void
gw_routes_job_action (gw_request_t *r, int command)
{
    bm_msg_t *reply = gw_request_broker_simple (r, command, r->job_id, true);
    json_t *value = NULL;
    if (command == BM_RETRY) {
        //  A job with dependsOn may wait for them again: the broker's
        //  ACCEPTED then names its state.
        char state [BM_MAX_STATE_LEN + 1] = "";
        if (reply && bm_msg_command (reply) == BM_ACCEPTED)
            bm_obj_strcpy (bm_msg_body (reply), "state", state, sizeof state);
        value = json_pack ("{s:s,s:s}", "jobId", r->job_id, "status", *state ? state : "queued");
    }
    else
        value = json_pack ("{s:s,s:s,s:s}", "jobId", r->job_id, "webhook", "pending",
                           "status", "redelivery queued");
    gw_routes_answer (r, reply, BM_ACCEPTED, 202, NULL, value, true);
}

void
gw_routes_jobs (gw_request_t *r)
{
    //  The state, or BullMQ's name of it, as /stats reports them (waiting,
    //  active) and as BullMQ's getJobs takes them (wait).
    char state [BM_MAX_STATE_LEN + 1], bot_type [BM_MAX_BOT_TYPE_LEN + 1], limit_text [16];
    int has_state = gw_request_query (r, "state", state, sizeof state, "invalid_state");
    if (has_state == -2)
        return;
    int has_type = gw_request_query (r, "botType", bot_type, sizeof bot_type, "invalid_bot_type");
    if (has_type == -2)
        return;
    int has_limit = gw_request_query (r, "limit", limit_text, sizeof limit_text, "invalid_limit");
    if (has_limit == -2)
        return;
    //  webhook: the state of the jobs' webhooks (failed: the failed
    //  webhooks list).
    char webhook [16];
    int has_webhook = gw_request_query (r, "webhook", webhook, sizeof webhook, "invalid_webhook");
    if (has_webhook == -2)
        return;
    const char *listed = has_state > 0 && *state ? bm_list_state (state) : "";
    if (has_state < 0 || !listed) {
        gw_request_error (r, 400, "invalid_state", BM_LIST_STATE_ERROR, NULL);
        return;
    }
    snprintf (state, sizeof state, "%s", listed);
    if (has_type < 0 || (has_type > 0 && *bot_type && !bm_valid_bot_type (bot_type, strlen (bot_type)))) {
        gw_request_error (r, 400, "invalid_bot_type", "botType must be 1 to 32 characters from [a-z0-9_-]",
                 NULL);
        return;
    }
    int64_t limit = 50;
    if (has_limit < 0 || (has_limit > 0 && bm_parse_int (limit_text, 1, 500, &limit))) {
        gw_request_error (r, 400, "invalid_limit", "limit must be an integer from 1 to 500", NULL);
        return;
    }
    if (has_webhook < 0 || (has_webhook > 0 && *webhook && bm_webhook_state (webhook) < 0)) {
        gw_request_error (r, 400, "invalid_webhook", BM_LIST_WEBHOOK_ERROR, NULL);
        return;
    }
    //  LIST body: {req, limit, state?, botType?, webhook?}
    int64_t req = gw_link_next_req (r->server->link);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    bool with_state = has_state > 0 && *state;
    bool with_type = has_type > 0 && *bot_type;
    bool with_webhook = has_webhook > 0 && *webhook;
    msgpack_pack_map (&pk, 2 + with_state + with_type + with_webhook);
    bm_pack_kv_int (&pk, "req", req);
    bm_pack_kv_int (&pk, "limit", limit);
    if (with_state)
        bm_pack_kv_str (&pk, "state", state);
    if (with_type)
        bm_pack_kv_str (&pk, "botType", bot_type);
    if (with_webhook)
        bm_pack_kv_str (&pk, "webhook", webhook);
    gw_routes_answer (r, gw_request_broker (r, req, BM_LIST, sbuf.data, sbuf.size, true), BM_REPLY, 200,
              gw_record_list, NULL, true);
}

void
gw_routes_stats (gw_request_t *r)
{
    //  A REJECTED to STATS is not an answer we know: 502.
    gw_routes_answer (r, gw_request_broker_simple (r, BM_STATS, NULL, true), BM_REPLY, 200, gw_record_stats, NULL,
              false);
}

void
gw_routes_admin (gw_request_t *r)
{
    const unsigned char *data;
    size_t size;
    const char *content_type;
    if (bm_assets_find (r->path, &data, &size, &content_type)) {
        gw_request_error (r, 404, "not_found", "no such page", NULL);
        return;
    }
    gw_request_send (r, 200, content_type, NULL, (const char *) data, size);
}

void
gw_routes_history (gw_request_t *r)
{
    gw_server_t *server = r->server;
    char limit_text [16];
    int64_t limit = 360;        //  1 h at the default 10 s interval
    int has_limit = gw_request_query (r, "limit", limit_text, sizeof limit_text, "invalid_limit");
    if (has_limit == -2)
        return;
    if (has_limit < 0
    || (has_limit > 0 && bm_parse_int (limit_text, 1, GW_HISTORY_MAX_LIMIT, &limit))) {
        char message [80];
        snprintf (message, sizeof message, "limit must be an integer from 1 to %d",
                  GW_HISTORY_MAX_LIMIT);
        gw_request_error (r, 400, "invalid_limit", message, NULL);
        return;
    }
    if (!server->history_on) {
        gw_request_error_retry (r, 503, "history_unavailable", "no Redis is configured for history",
                       GW_RETRY_STORE_DOWN);
        return;
    }
    if (!r->thread->history)
    {
        r->thread->history = gw_history_new (&server->redis, server->config.redis_prefix,
                                             (int) server->config.redis_timeout_ms);
        if (server->config.redis_sentinels)
            gw_history_set_sentinels (r->thread->history, server->config.redis_sentinels,
                                      server->config.redis_master_name, server->history_watch);
    }
    json_t *value = gw_history_fetch (r->thread->history, (int) limit);
    if (!value) {
        bm_series_inc (server->history_errors);
        gw_request_error_retry (r, 503, "redis_unavailable", "metric history is unavailable right now",
                       GW_RETRY_STORE_DOWN);
        return;
    }
    gw_request_send_json (r, 200, value, NULL);
}

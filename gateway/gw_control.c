/*  gw_control.c - the routes that control queues and jobs: pause, resume,
    drain, clean and retry a bot type (QUEUE), remove a job (REMOVE), promote a
    delayed one (PROMOTE).  See gateway/README.md for each one's contract.  */
#include "gw_routes.h"
#include "gw_record.h"
#include "gw_invoke.h"

#include "bm_codec_control.h"
#include "bm_json.h"
#include "bm_log.h"

#include <civetweb.h>
#include <string.h>

//  A REPLY answered 200 with make's JSON; a REJECTED with its HTTP error.
static void
s_answer (gw_request_t *r, bm_msg_t *reply, gw_routes_make_fn *make)
{
    gw_routes_answer (r, reply, BM_REPLY, 200, make, NULL, true);
}

//  Send the packer's body to the broker and wait for its answer (NULL
//  after answering: no memory, no broker).  Takes the packer's buffer.
static bm_msg_t *
s_send (gw_request_t *r, int64_t req, int command, bm_packer_t *packer)
{
    if (bm_packer_failed (packer)) {
        bm_packer_destroy (packer);
        gw_request_error (r, 503, "out_of_memory", "no memory to encode the request", NULL);
        return NULL;
    }
    size_t size;
    char *data = bm_packer_detach (packer, &size);
    return gw_request_broker (r, req, command, data, size, true);
}

//  REPLY {botType, paused, removed} -> the same as JSON.
static json_t *
s_make_queue (const msgpack_object *body)
{
    const char *type;
    size_t type_len;
    bool paused = false;
    int64_t removed = 0;
    if (!bm_obj_str (body, "botType", &type, &type_len) || !bm_obj_bool (body, "paused", &paused)
    ||  !bm_obj_int (body, "removed", &removed))
        return NULL;
    return json_pack ("{s:s%,s:b,s:I}", "botType", type, type_len, "paused", paused,
                      "removed", (json_int_t) removed);
}

//  A body field the route does not take is refused, 400 invalid_body naming
//  it: a typo in a filter ("State", "olderThan") would otherwise widen what
//  a clean removes or a retry runs again, one in a schedule ("cronn",
//  "webhookURL") make a schedule other than the one meant.  known: the
//  fields taken, NULL ended.  Returns 0, or -1 after answering.
static int
s_refuse_unknown (gw_request_t *r, json_t *body, const char *const *known)
{
    const char *key;
    json_t *value;
    json_object_foreach (body, key, value) {
        size_t i = 0;
        while (known [i] && !streq (known [i], key))
            i++;
        if (known [i])
            continue;
        char taken [160] = "";
        for (i = 0; known [i]; i++)
            snprintf (taken + strlen (taken), sizeof taken - strlen (taken), "%s%s",
                      i ? ", " : "", known [i]);
        char message [280];
        snprintf (message, sizeof message, "unknown field \"%.64s\": the body takes only %s",
                  key, taken);
        r->reason = "invalid_body";
        gw_request_error (r, 400, "invalid_body", message, NULL);
        return -1;
    }
    return 0;
}

//  The body of POST /queues/{botType}/clean: {"state", "olderThanMs"?}.
//  Returns 0, or -1 after answering 400 naming the field.
static int
s_read_clean (gw_request_t *r, bm_codec_queue_t *q)
{
    json_t *body = gw_request_read_object (r, "the body must be a JSON object {\"state\": "
                                           "\"completed\"|\"failed\"|\"cancelled\", "
                                           "\"olderThanMs\": N}");
    if (!body)
        return -1;
    static const char *const known [] = { "state", "olderThanMs", NULL };
    if (s_refuse_unknown (r, body, known)) {
        json_decref (body);
        return -1;
    }
    const char *state = json_string_value (json_object_get (body, "state"));
    json_t *older = json_object_get (body, "olderThanMs");
    int rc = 0;
    if (!state || !(streq (state, "completed") || streq (state, "failed")
                    || streq (state, "cancelled"))) {
        gw_request_error (r, 400, "invalid_state",
                          "state must be \"completed\", \"failed\" or \"cancelled\"", NULL);
        rc = -1;
    }
    else
    if (older && !json_is_null (older)
    &&  (!json_is_integer (older) || json_integer_value (older) < 0)) {
        gw_request_error (r, 400, "invalid_older_than",
                          "olderThanMs must be an integer of 0 or more (ms)", NULL);
        rc = -1;
    }
    else {
        snprintf (q->state, sizeof q->state, "%s", state);
        q->older_than_ms = json_is_integer (older) ? json_integer_value (older) : 0;
    }
    json_decref (body);
    return rc;
}

//  REPLY {botType, retried, more} (QUEUE retry) -> the same as JSON.
static json_t *
s_make_retry (const msgpack_object *body)
{
    const char *type;
    size_t type_len;
    int64_t retried = 0;
    bool more = false;
    if (!bm_obj_str (body, "botType", &type, &type_len) || !bm_obj_int (body, "retried", &retried)
    ||  !bm_obj_bool (body, "more", &more))
        return NULL;
    return json_pack ("{s:s%,s:I,s:b}", "botType", type, type_len, "retried", (json_int_t) retried,
                      "more", more);
}

//  The body of POST /queues/{botType}/retry: {"state"?, "olderThanMs"?,
//  "limit"?}, or none at all (the defaults).  Returns 0, or -1 after
//  answering 400 naming the field.
static int
s_read_retry (gw_request_t *r, bm_codec_queue_t *q)
{
    snprintf (q->state, sizeof q->state, "failed");
    q->limit = BM_QUEUE_RETRY_MAX;
    if (r->ri->content_length == 0
    ||  (r->ri->content_length < 0 && !mg_get_header (r->conn, "Content-Type")))
        return 0;               //  No body: the defaults
    json_t *body = gw_request_read_object (r, "the body must be a JSON object {\"state\": "
                                           "\"failed\"|\"cancelled\", \"olderThanMs\": N, "
                                           "\"limit\": N}, each optional");
    if (!body)
        return -1;
    static const char *const known [] = { "state", "olderThanMs", "limit", NULL };
    if (s_refuse_unknown (r, body, known)) {
        json_decref (body);
        return -1;
    }
    json_t *state = json_object_get (body, "state");
    json_t *older = json_object_get (body, "olderThanMs");
    json_t *limit = json_object_get (body, "limit");
    int rc = -1;
    if (state && !json_is_null (state)
    &&  !(json_is_string (state) && (streq (json_string_value (state), "failed")
                                     || streq (json_string_value (state), "cancelled"))))
        gw_request_error (r, 400, "invalid_state", "state must be \"failed\" or \"cancelled\"",
                          NULL);
    else
    if (older && !json_is_null (older)
    &&  (!json_is_integer (older) || json_integer_value (older) < 0))
        gw_request_error (r, 400, "invalid_older_than",
                          "olderThanMs must be an integer of 0 or more (ms)", NULL);
    else
    if (limit && !json_is_null (limit)
    &&  (!json_is_integer (limit) || json_integer_value (limit) < 1
         || json_integer_value (limit) > BM_QUEUE_RETRY_MAX)) {
        char message [80];
        snprintf (message, sizeof message, "limit must be an integer from 1 to %d",
                  BM_QUEUE_RETRY_MAX);
        gw_request_error (r, 400, "invalid_limit", message, NULL);
    }
    else {
        if (json_is_string (state))
            snprintf (q->state, sizeof q->state, "%s", json_string_value (state));
        q->older_than_ms = json_is_integer (older) ? json_integer_value (older) : 0;
        if (json_is_integer (limit))
            q->limit = json_integer_value (limit);
        rc = 0;
    }
    json_decref (body);
    return rc;
}

void
gw_routes_queue (gw_request_t *r, const char *action)
{
    bm_codec_queue_t q = { .has_req = true };
    snprintf (q.bot_type, sizeof q.bot_type, "%s", r->bot_type);
    snprintf (q.action, sizeof q.action, "%s", action);
    bool retry = streq (action, "retry");
    if (streq (r->bot_type, BM_WEBHOOK_TYPE)
    &&  (streq (action, "drain") || streq (action, "clean") || retry)) {
        gw_request_error (r, 400, "invalid_bot_type",
                          retry ? BM_TEXT_WEBHOOK_RETRY : BM_TEXT_WEBHOOK_QUEUE, NULL);
        return;
    }
    if (streq (action, "clean") && s_read_clean (r, &q))
        return;
    if (retry && s_read_retry (r, &q))
        return;
    q.req = gw_link_next_req (r->server->link);
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_queue_encode (&q, &packer);
    s_answer (r, s_send (r, q.req, BM_QUEUE, &packer), retry ? s_make_retry : s_make_queue);
}

//  REPLY {jobId, removed} -> the same as JSON.
static json_t *
s_make_removed (const msgpack_object *body)
{
    const char *id;
    size_t id_len;
    bool removed = false;
    if (!bm_obj_str (body, "jobId", &id, &id_len) || !bm_obj_bool (body, "removed", &removed))
        return NULL;
    return json_pack ("{s:s%,s:b}", "jobId", id, id_len, "removed", removed);
}

void
gw_routes_job_control (gw_request_t *r, int command)
{
    s_answer (r, gw_request_broker_simple (r, command, r->job_id, true),
              command == BM_REMOVE ? s_make_removed : gw_routes_make_job);
}

//  --------------------------------------------------------------------------
//  Schedules: POST /schedules, GET /schedules, DELETE /schedules/{key}

//  A REJECTED about a schedule: its own words for not_found and queue_full
//  (MAX_SCHEDULES), the usual answer for the rest.
static void
s_schedule_rejected (gw_request_t *r, bm_msg_t *reply)
{
    char code [32] = "";
    bm_obj_strcpy (bm_msg_body (reply), "code", code, sizeof code);
    if (streq (code, "not_found"))
        gw_request_error (r, 404, "not_found", "no schedule with this key", NULL);
    else
    if (streq (code, "queue_full"))
        gw_request_error (r, 409, "too_many_schedules",
                          "MAX_SCHEDULES schedules exist already; remove one first", NULL);
    else
        gw_request_rejected (r, reply);
}

static json_t *
s_make_schedule (const msgpack_object *body)
{
    const msgpack_object *schedule = bm_obj_get (body, "schedule");
    const msgpack_object *list = bm_obj_get (body, "schedules");
    if (schedule)
        return gw_record_schedule (schedule);
    if (list && list->type == MSGPACK_OBJECT_ARRAY) {
        json_t *array = json_array ();
        for (uint32_t i = 0; i < list->via.array.size; i++) {
            json_t *item = gw_record_schedule (&list->via.array.ptr [i]);
            if (item)
                json_array_append_new (array, item);
        }
        return json_pack ("{s:o}", "schedules", array);
    }
    const char *key;
    size_t key_len;
    if (!bm_obj_str (body, "key", &key, &key_len))
        return NULL;
    return json_pack ("{s:s%,s:b}", "key", key, key_len, "removed", true);
}

//  POST /schedules: the JSON body as the SCHEDULE add body (the broker's
//  codec checks every field and names the one at fault: 400).
void
gw_routes_schedules (gw_request_t *r)
{
    int64_t req = gw_link_next_req (r->server->link);
    bm_packer_t packer;
    bm_packer_init (&packer);
    if (r->route == R_SCHEDULE_ADD) {
        json_t *body = gw_request_read_object (r, "the body must be a JSON object {\"key\", "
                                               "\"botType\", \"payload\", \"cron\" or "
                                               "\"everyMs\", ...}");
        //  The broker reads these and ignores any other: refused here.
        static const char *const known [] = { "key", "botType", "payload", "cron", "tz",
                                              "everyMs", "limit", "startAt", "endAt",
                                              "priority", "webhookUrl", NULL };
        if (!body || s_refuse_unknown (r, body, known)) {
            json_decref (body);
            bm_packer_destroy (&packer);
            return;
        }
        //  The fields it shares with /invoke get /invoke's error codes.
        gw_invoke_error_t error;
        if (gw_invoke_check_schedule (body, &r->server->limits, &error)) {
            json_decref (body);
            bm_packer_destroy (&packer);
            r->reason = error.code;
            gw_request_error (r, error.status, error.code, error.message, NULL);
            return;
        }
        if (error.warning [0])
            bm_warn (NULL, "schedule %.64s accepted with a warning: %s",
                     json_string_value (json_object_get (body, "key")) ?: "?", error.warning);
        json_object_set_new (body, "action", json_string ("add"));
        json_object_set_new (body, "req", json_integer ((json_int_t) req));
        int rc = bm_json_pack (&packer.pk, body, BM_MAX_NESTING);
        json_decref (body);
        if (rc) {
            //  gw_invoke_check_schedule bounded every field: our bug.
            bm_packer_destroy (&packer);
            gw_request_error (r, 500, "internal", "internal error", NULL);
            return;
        }
    }
    else {
        bm_codec_schedule_t sc = { .has_req = true, .req = req };
        snprintf (sc.action, sizeof sc.action, "%s", r->route == R_SCHEDULES ? "list" : "remove");
        snprintf (sc.key, sizeof sc.key, "%s", r->job_id);
        bm_codec_schedule_encode (&sc, &packer);
    }
    bm_msg_t *reply = s_send (r, req, BM_SCHEDULE, &packer);
    if (reply && bm_msg_command (reply) == BM_REJECTED) {
        s_schedule_rejected (r, reply);
        bm_msg_destroy (&reply);
        return;
    }
    gw_routes_answer (r, reply, BM_REPLY, 200, s_make_schedule, NULL, true);
}

/*  bm_codec.c - the client side's bodies (BMC01), the job record, and
    every body by kind.  The worker side's are in bm_codec_worker.c.  See
    bm_codec.h and docs/protocol.md.  */
#include "bm_codec_field.h"

#include <string.h>

//  --------------------------------------------------------------------------
//  SUBMIT

//  SUBMIT's retry and timing options: attempts, backoff, delayMs, runAt.

static int
s_submit_timing (const msgpack_object *body, bm_codec_submit_t *self, bm_codec_error_t *error)
{
    if (bm_field_opt_int (body, "attempts", 1, BM_MAX_ATTEMPTS, &self->has_attempts,
                          &self->attempts, error)
    ||  bm_field_opt_int (body, "delayMs", 0, BM_MAX_DELAY_MS, &self->has_delay_ms,
                          &self->delay_ms, error)
    ||  bm_field_opt_int (body, "runAt", 0, INT64_MAX, &self->has_run_at, &self->run_at, error))
        return -1;
    if (self->has_delay_ms && self->has_run_at)
        return bm_field_fail (error, "runAt", "runAt and delayMs exclude each other: give one");
    const msgpack_object *backoff;
    if (bm_field_opt_map (body, "backoff", &backoff, error))
        return -1;
    if (backoff) {
        //  Nested fields are named from the body's top ("backoff.delayMs").
        bm_codec_str_t type = { NULL, 0 };
        int jitter = 0;
        int64_t delay = 0;
        char message [128];
        if (bm_field_opt_str (backoff, "type", 16, &type, error))
            return bm_field_fail (error, "backoff.type", "backoff.type must be \"exponential\" or \"fixed\"");
        if (bm_field_int (backoff, "delayMs", 0, BM_BACKOFF_MAX_MS, &delay, error))
            return bm_field_fail (error, "backoff.delayMs", "backoff.delayMs is required: an integer from 0 to %lld",
                                  (long long) BM_BACKOFF_MAX_MS);
        const msgpack_object *o = bm_field_opt (backoff, "jitter");
        if (o) {
            double number = o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64
                          ? o->via.f64
                          : o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (double) o->via.u64 : -1;
            jitter = bm_backoff_jitter_pm (o->type == MSGPACK_OBJECT_BOOLEAN,
                                           o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean, number);
            if (jitter < 0)
                return bm_field_fail (error, "backoff.jitter",
                                      "backoff.jitter must be a boolean or a number from 0 to 1");
        }
        if (bm_backoff_set (&self->backoff, type.ptr, type.len, delay, jitter,
                            message, sizeof message))
            return bm_field_fail (error, type.ptr && strncmp (message, "backoff.type", 12) == 0
                                  ? "backoff.type" : "backoff.delayMs", "%s", message);
        self->has_backoff = true;
    }
    return 0;
}

//  dependsOn, onDependencyFailure, dependencyResults: the ids' shape and
//  that they are distinct; whether they name jobs is the broker's to say.
static int
s_submit_depends (const msgpack_object *body, bm_codec_submit_t *self, bm_codec_error_t *error)
{
    const msgpack_object *o = bm_field_opt (body, "dependsOn");
    if (o && (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1
              || o->via.array.size > BM_MAX_DEPENDS))
        return bm_field_fail (error, "dependsOn", "dependsOn must be an array of 1 to %d job ids",
                              BM_MAX_DEPENDS);
    for (uint32_t i = 0; o && i < o->via.array.size; i++) {
        const msgpack_object *id = &o->via.array.ptr [i];
        if (id->type != MSGPACK_OBJECT_STR || !bm_valid_id (id->via.str.ptr, id->via.str.size))
            return bm_field_fail (error, "dependsOn", "dependsOn[%u] must be a job id: 1-%d "
                                  "printable characters without spaces", i, BM_MAX_ID_LEN);
        for (uint32_t j = 0; j < i; j++)
            if (o->via.array.ptr [j].via.str.size == id->via.str.size
            &&  memcmp (o->via.array.ptr [j].via.str.ptr, id->via.str.ptr, id->via.str.size) == 0)
                return bm_field_fail (error, "dependsOn", "dependsOn[%u] repeats dependsOn[%u]: "
                                      "each job id once", i, j);
        self->depends_on [i].ptr = id->via.str.ptr;
        self->depends_on [i].len = id->via.str.size;
    }
    self->depends_count = o ? o->via.array.size : 0;
    const msgpack_object *f = bm_field_opt (body, "onDependencyFailure");
    bool fail = f && f->type == MSGPACK_OBJECT_STR && f->via.str.size == 4
             && memcmp (f->via.str.ptr, "fail", 4) == 0;
    bool ignore = f && f->type == MSGPACK_OBJECT_STR && f->via.str.size == 6
               && memcmp (f->via.str.ptr, "ignore", 6) == 0;
    if (f && !fail && !ignore)
        return bm_field_fail (error, "onDependencyFailure",
                              "onDependencyFailure must be \"fail\" or \"ignore\"");
    self->ignore_dependency_failure = ignore;
    if (bm_field_opt_bool (body, "dependencyResults", &self->dependency_results, error))
        return -1;
    if ((f || self->dependency_results) && !self->depends_count)
        return bm_field_fail (error, f ? "onDependencyFailure" : "dependencyResults",
                              "%s needs dependsOn", f ? "onDependencyFailure" : "dependencyResults");
    return 0;
}

int
bm_codec_submit_decode (const bm_msg_t *msg, bm_codec_submit_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_bot_type (body, "botType", true, self->bot_type, error))
        return -1;
    if (streq (self->bot_type, BM_WEBHOOK_TYPE))
        return bm_field_fail (error, "botType", "botType %s is reserved for webhook deliveries",
                       BM_WEBHOOK_TYPE);
    if (bm_field_opt_int (body, "priority", 0, BM_MAX_PRIORITY, &self->has_priority,
                   &self->priority, error)
    ||  bm_field_opt_int (body, "timeoutMs", 1, BM_MAX_TIMEOUT_MS, &self->has_timeout_ms,
                   &self->timeout_ms, error)
    ||  bm_field_opt_int (body, "maxAttempts", 1, BM_MAX_ATTEMPTS, &self->has_max_attempts,
                   &self->max_attempts, error))
        return -1;
    bm_codec_str_t url;
    const msgpack_object *o = bm_field_opt (body, "webhookUrl");
    if (o && (o->type != MSGPACK_OBJECT_STR || !bm_valid_url (o->via.str.ptr, o->via.str.size)))
        return bm_field_fail (error, "webhookUrl",
                       "webhookUrl must be an http:// or https:// URL of at most %d printable ASCII "
                       "characters (percent-encode others)",
                       BM_MAX_URL_LEN);
    url.ptr = o ? o->via.str.ptr : NULL;
    url.len = o ? o->via.str.size : 0;
    self->webhook_url = url;
    if (bm_field_id (body, "idempotencyKey", false, self->idempotency_key, error)
    ||  bm_field_opt_bool (body, "notify", &self->notify, error))
        return -1;
    bm_field_value (msg, "payload", &self->payload);
    if (self->payload.obj && bm_obj_depth (self->payload.obj) > BM_MAX_NESTING)
        return bm_field_fail (error, "payload", "payload nests deeper than %d levels", BM_MAX_NESTING);
    if (s_submit_timing (body, self, error))
        return -1;
    return s_submit_depends (body, self, error);
}

void
bm_codec_submit_encode (const bm_codec_submit_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 2 + self->has_req + (self->webhook_url.ptr != NULL)
                                   + self->has_priority + (self->idempotency_key [0] != 0)
                                   + self->has_timeout_ms + self->has_max_attempts
                                   + self->notify + self->has_attempts + self->has_backoff
                                   + self->has_delay_ms + self->has_run_at
                                   + (self->depends_count > 0)
                                   + self->ignore_dependency_failure + self->dependency_results);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_pack_kv_str (&packer->pk, "botType", self->bot_type);
    bm_field_pack_value (packer, "payload", &self->payload);
    if (self->webhook_url.ptr)
        bm_field_pack_strn (packer, "webhookUrl", self->webhook_url.ptr, self->webhook_url.len);
    if (self->has_priority)
        bm_field_pack_int (packer, "priority", self->priority);
    if (self->idempotency_key [0])
        bm_pack_kv_str (&packer->pk, "idempotencyKey", self->idempotency_key);
    if (self->has_timeout_ms)
        bm_field_pack_int (packer, "timeoutMs", self->timeout_ms);
    if (self->has_max_attempts)
        bm_field_pack_int (packer, "maxAttempts", self->max_attempts);
    if (self->notify)
        bm_pack_kv_bool (&packer->pk, "notify", true);
    if (self->has_attempts)
        bm_field_pack_int (packer, "attempts", self->attempts);
    if (self->has_backoff) {
        //  backoff {type, delayMs, jitter}
        bm_field_pack_key (packer, "backoff");
        bm_pack_backoff (&packer->pk, &self->backoff);
    }
    if (self->has_delay_ms)
        bm_field_pack_int (packer, "delayMs", self->delay_ms);
    if (self->has_run_at)
        bm_field_pack_int (packer, "runAt", self->run_at);
    if (self->depends_count) {
        bm_field_pack_key (packer, "dependsOn");
        msgpack_pack_array (&packer->pk, self->depends_count);
        for (size_t i = 0; i < self->depends_count; i++) {
            msgpack_pack_str (&packer->pk, self->depends_on [i].len);
            msgpack_pack_str_body (&packer->pk, self->depends_on [i].ptr, self->depends_on [i].len);
        }
    }
    if (self->ignore_dependency_failure)
        bm_pack_kv_str (&packer->pk, "onDependencyFailure", "ignore");
    if (self->dependency_results)
        bm_pack_kv_bool (&packer->pk, "dependencyResults", true);
}

//  --------------------------------------------------------------------------
//  STATUS, CANCEL, RETRY, REDELIVER; STATS, PING, METRICS; LIST

int
bm_codec_job_ref_decode (const bm_msg_t *msg, bm_codec_job_ref_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error))
        return -1;
    //  A STATUS may name its job by the idempotencyKey it was submitted with
    if (bm_msg_command (msg) == BM_STATUS && !bm_field_opt (body, "jobId")
    &&  bm_field_opt (body, "idempotencyKey"))
        return bm_field_id (body, "idempotencyKey", true, self->idempotency_key, error);
    //  A STATUS with neither: the refusal names both ways to name the job
    if (bm_msg_command (msg) == BM_STATUS && !bm_field_opt (body, "jobId"))
        return bm_field_fail (error, "jobId", "jobId or idempotencyKey is required: a jobId, "
                              "or the idempotencyKey the job was submitted with, 1-%d "
                              "printable characters without spaces", BM_MAX_ID_LEN);
    return bm_field_id (body, "jobId", true, self->job_id, error);
}

void
bm_codec_job_ref_encode (const bm_codec_job_ref_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 1 + self->has_req);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    if (self->idempotency_key [0])
        bm_pack_kv_str (&packer->pk, "idempotencyKey", self->idempotency_key);
    else
        bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
}

int
bm_codec_request_decode (const bm_msg_t *msg, bm_codec_request_t *self, bm_codec_error_t *error)
{
    memset (self, 0, sizeof *self);
    return bm_field_req (bm_field_body (msg), &self->has_req, &self->req, error);
}

void
bm_codec_request_encode (const bm_codec_request_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, self->has_req);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
}

int
bm_codec_list_decode (const bm_msg_t *msg, bm_codec_list_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error))
        return -1;
    const msgpack_object *o = bm_field_opt (body, "state");
    if (o && (o->type != MSGPACK_OBJECT_STR || o->via.str.size > BM_MAX_STATE_LEN
          ||  memchr (o->via.str.ptr, 0, o->via.str.size) || o->via.str.size == 0))
        return bm_field_fail (error, "state", "state must be one of queued, running, completed, "
                       "failed, cancelled");
    if (o)
        bm_field_copy (self->state, o->via.str.ptr, o->via.str.size);
    if (bm_field_bot_type (body, "botType", false, self->bot_type, error))
        return -1;
    o = bm_field_opt (body, "webhook");
    if (o) {
        if (o->type == MSGPACK_OBJECT_STR && o->via.str.size <= BM_MAX_STATE_LEN)
            bm_field_copy (self->webhook, o->via.str.ptr, o->via.str.size);
        if (o->type != MSGPACK_OBJECT_STR || strlen (self->webhook) != o->via.str.size
        ||  bm_webhook_state (self->webhook) < 0)
            return bm_field_fail (error, "webhook", BM_LIST_WEBHOOK_ERROR);
    }
    o = bm_field_opt (body, "limit");
    int64_t limit = BM_LIST_DEFAULT_LIMIT;
    if (o && !bm_field_as_int (o, &limit))
        return bm_field_fail (error, "limit", "limit must be an integer (below 1 reads as %d, "
                              "above %d as %d)", BM_LIST_DEFAULT_LIMIT, BM_LIST_MAX_LIMIT,
                              BM_LIST_MAX_LIMIT);
    if (limit < 1)
        limit = BM_LIST_DEFAULT_LIMIT;
    self->limit = limit > BM_LIST_MAX_LIMIT ? BM_LIST_MAX_LIMIT : limit;
    return 0;
}

void
bm_codec_list_encode (const bm_codec_list_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 1 + self->has_req + (self->state [0] != 0)
                                   + (self->bot_type [0] != 0) + (self->webhook [0] != 0));
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    if (self->state [0])
        bm_pack_kv_str (&packer->pk, "state", self->state);
    if (self->bot_type [0])
        bm_pack_kv_str (&packer->pk, "botType", self->bot_type);
    if (self->webhook [0])
        bm_pack_kv_str (&packer->pk, "webhook", self->webhook);
    bm_field_pack_int (packer, "limit", self->limit);
}

//  --------------------------------------------------------------------------
//  ACCEPTED, REJECTED / NACK

int
bm_codec_accepted_decode (const bm_msg_t *msg, bm_codec_accepted_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_id (body, "jobId", true, self->job_id, error)
    ||  bm_field_opt_bool (body, "duplicate", &self->duplicate, error)
    ||  bm_field_opt_int (body, "position", 1, INT64_MAX, &self->has_position, &self->position, error)
    ||  bm_field_opt_bool (body, "delayed", &self->delayed, error)
    ||  bm_field_name (body, "state", false, BM_MAX_STATE_LEN, self->state, error)
    ||  bm_field_opt_int (body, "priority", 0, BM_MAX_PRIORITY, &self->has_priority,
                          &self->priority, error)
    ||  bm_field_opt_bool (body, "unserved", &self->unserved, error))
        return -1;
    return 0;
}

void
bm_codec_accepted_encode (const bm_codec_accepted_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 2 + self->has_req + self->has_position + self->delayed
                                   + (self->state [0] != 0) + self->has_priority + self->unserved);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    bm_pack_kv_bool (&packer->pk, "duplicate", self->duplicate);
    if (self->has_position)
        bm_field_pack_int (packer, "position", self->position);
    if (self->delayed)
        bm_pack_kv_bool (&packer->pk, "delayed", true);
    if (self->state [0])
        bm_pack_kv_str (&packer->pk, "state", self->state);
    if (self->has_priority)
        bm_field_pack_int (packer, "priority", self->priority);
    if (self->unserved)
        bm_pack_kv_bool (&packer->pk, "unserved", true);
}

int
bm_codec_rejected_decode (const bm_msg_t *msg, bm_codec_rejected_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_name (body, "code", true, BM_MAX_ERROR_CODE_LEN, self->code, error)
    ||  bm_field_opt_str (body, "message", SIZE_MAX, &self->message, error))
        return -1;
    if (!self->message.ptr)
        self->message.ptr = "";
    return 0;
}

void
bm_codec_rejected_encode (const bm_codec_rejected_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 2 + self->has_req);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_pack_kv_str (&packer->pk, "code", self->code);
    bm_field_pack_strn (packer, "message", self->message.ptr ? self->message.ptr : "",
                 self->message.len);
}

//  --------------------------------------------------------------------------
//  Webhook state, job error, job record

int
bm_codec_webhook_decode (const msgpack_object *map, bm_codec_webhook_t *self,
                         bm_codec_error_t *error)
{
    memset (self, 0, sizeof *self);
    self->obj = map;
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return bm_field_fail (error, "webhook", "webhook must be a map");
    bool has;
    if (bm_field_name (map, "state", true, BM_MAX_STATE_LEN, self->state, error)
    ||  bm_field_opt_int (map, "attempts", 0, INT64_MAX, &has, &self->attempts, error)
    ||  bm_field_opt_int (map, "lastStatus", 0, 999, &has, &self->last_status, error)
    ||  bm_field_opt_str (map, "lastError", SIZE_MAX, &self->last_error, error)
    ||  bm_field_opt_int (map, "nextAttemptAt", 0, INT64_MAX, &has, &self->next_attempt_at, error)) {
        //  Name the nesting: "webhook.state".
        static const char *names [] = { "webhook.state", "webhook.attempts",
            "webhook.lastStatus", "webhook.lastError", "webhook.nextAttemptAt" };
        for (size_t i = 0; i < sizeof names / sizeof names [0]; i++)
            if (streq (names [i] + 8, error->field)) {
                error->field = names [i];
                char message [sizeof error->message];
                snprintf (message, sizeof message, "webhook.%s", error->message);
                memcpy (error->message, message, sizeof message);
            }
        return -1;
    }
    return 0;
}

void
bm_codec_webhook_encode (const bm_codec_webhook_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 5);
    bm_pack_kv_str (&packer->pk, "state", self->state);
    bm_field_pack_int (packer, "attempts", self->attempts);
    bm_field_pack_key (packer, "lastStatus");
    if (self->last_status > 0)
        msgpack_pack_int64 (&packer->pk, self->last_status);
    else
        msgpack_pack_nil (&packer->pk);
    bm_field_pack_opt_str (packer, "lastError", &self->last_error);
    bm_field_pack_key (packer, "nextAttemptAt");
    if (self->next_attempt_at > 0)
        msgpack_pack_int64 (&packer->pk, self->next_attempt_at);
    else
        msgpack_pack_nil (&packer->pk);
}

int
bm_codec_record_decode (const msgpack_object *map, bm_codec_record_t *self,
                        bm_codec_error_t *error)
{
    memset (self, 0, sizeof *self);
    self->obj = map;
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return bm_field_fail (error, "job", "job must be a map");
    bool has;
    if (bm_field_id (map, "jobId", true, self->job_id, error)
    ||  bm_field_bot_type (map, "botType", true, self->bot_type, error)
    ||  bm_field_name (map, "state", true, BM_MAX_STATE_LEN, self->state, error)
    ||  bm_field_opt_int (map, "priority", 0, BM_MAX_PRIORITY, &has, &self->priority, error)
    ||  bm_field_opt_int (map, "progress", 0, BM_MAX_PROGRESS, &has, &self->progress, error)
    ||  bm_field_opt_int (map, "attempts", 0, INT64_MAX, &has, &self->attempts, error)
    ||  bm_field_opt_int (map, "maxAttempts", 0, BM_MAX_ATTEMPTS, &has, &self->max_attempts, error)
    ||  bm_field_opt_int (map, "timeoutMs", 0, BM_MAX_TIMEOUT_MS, &has, &self->timeout_ms, error)
    ||  bm_field_opt_int (map, "createdAt", 0, INT64_MAX, &has, &self->created_at, error)
    ||  bm_field_opt_int (map, "startedAt", 0, INT64_MAX, &has, &self->started_at, error)
    ||  bm_field_opt_int (map, "finishedAt", 0, INT64_MAX, &has, &self->finished_at, error)
    ||  bm_field_opt_str (map, "webhookUrl", BM_MAX_URL_LEN, &self->webhook_url, error)
    ||  bm_field_opt_str (map, "worker", BM_MAX_ID_LEN, &self->worker, error))
        return -1;
    bm_field_nested_value (map, "payload", &self->payload);
    bm_field_nested_value (map, "result", &self->result);
    const msgpack_object *o;
    if (bm_field_opt_map (map, "error", &o, error))
        return -1;
    if (o) {
        self->has_error = true;
        bm_field_job_error (o, &self->error, "");
    }
    return bm_field_opt_webhook (map, &self->has_webhook, &self->webhook, error);
}

void
bm_codec_record_encode (const bm_codec_record_t *self, bm_packer_t *packer)
{
    bool started = self->started_at > 0, finished = self->finished_at > 0;
    msgpack_pack_map (&packer->pk, 9 + (self->payload.obj || self->payload.data)
                                   + (self->result.obj || self->result.data)
                                   + (self->webhook_url.ptr != NULL) + started + finished
                                   + (self->worker.ptr != NULL) + self->has_error
                                   + self->has_webhook);
    bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    bm_pack_kv_str (&packer->pk, "botType", self->bot_type);
    bm_pack_kv_str (&packer->pk, "state", self->state);
    bm_field_pack_int (packer, "priority", self->priority);
    bm_field_pack_int (packer, "progress", self->progress);
    bm_field_pack_int (packer, "attempts", self->attempts);
    bm_field_pack_int (packer, "maxAttempts", self->max_attempts);
    bm_field_pack_int (packer, "timeoutMs", self->timeout_ms);
    bm_field_pack_int (packer, "createdAt", self->created_at);
    if (self->payload.obj || self->payload.data)
        bm_field_pack_value (packer, "payload", &self->payload);
    if (self->result.obj || self->result.data)
        bm_field_pack_value (packer, "result", &self->result);
    if (self->webhook_url.ptr)
        bm_field_pack_strn (packer, "webhookUrl", self->webhook_url.ptr, self->webhook_url.len);
    if (started)
        bm_field_pack_int (packer, "startedAt", self->started_at);
    if (finished)
        bm_field_pack_int (packer, "finishedAt", self->finished_at);
    if (self->worker.ptr)
        bm_field_pack_strn (packer, "worker", self->worker.ptr, self->worker.len);
    if (self->has_error) {
        bm_field_pack_key (packer, "error");
        bm_field_job_error_encode (&self->error, packer);
    }
    if (self->has_webhook) {
        bm_field_pack_key (packer, "webhook");
        bm_codec_webhook_encode (&self->webhook, packer);
    }
}

//  --------------------------------------------------------------------------
//  REPLY {req, job}, RESULT {jobId, job}, REPLY {req, jobs}

static int
s_job_reply (const bm_msg_t *msg, bm_codec_job_reply_t *self, bool result,
             bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  (result && bm_field_id (body, "jobId", true, self->job_id, error)))
        return -1;
    const msgpack_object *job = bm_obj_get (body, "job");
    if (!job)
        return bm_field_fail (error, "job", "job is required: the job's record");
    return bm_codec_record_decode (job, &self->job, error);
}

int
bm_codec_job_reply_decode (const bm_msg_t *msg, bm_codec_job_reply_t *self,
                           bm_codec_error_t *error)
{
    return s_job_reply (msg, self, false, error);
}

int
bm_codec_result_decode (const bm_msg_t *msg, bm_codec_job_reply_t *self,
                        bm_codec_error_t *error)
{
    return s_job_reply (msg, self, true, error);
}

void
bm_codec_job_reply_encode (const bm_codec_job_reply_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 1 + self->has_req + (self->job_id [0] != 0));
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    if (self->job_id [0])
        bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    bm_field_pack_key (packer, "job");
    bm_codec_record_encode (&self->job, packer);
}

int
bm_codec_list_reply_decode (const bm_msg_t *msg, bm_codec_list_reply_t *self,
                            bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error))
        return -1;
    self->jobs = bm_obj_get (body, "jobs");
    if (!self->jobs || self->jobs->type != MSGPACK_OBJECT_ARRAY)
        return bm_field_fail (error, "jobs", "jobs is required: an array of job records");
    self->count = self->jobs->via.array.size;
    //  Check every record now, so that reading them one by one cannot fail.
    bm_codec_record_t record;
    for (size_t i = 0; i < self->count; i++)
        if (bm_codec_record_decode (&self->jobs->via.array.ptr [i], &record, error))
            return -1;
    return 0;
}

int
bm_codec_list_reply_job (const bm_codec_list_reply_t *self, size_t index,
                         bm_codec_record_t *job, bm_codec_error_t *error)
{
    if (!self->jobs || index >= self->count)
        return bm_field_fail (error, "jobs", "no record %zu in jobs", index);
    return bm_codec_record_decode (&self->jobs->via.array.ptr [index], job, error);
}

//  --------------------------------------------------------------------------
//  REPLY to PING, METRICS, STATS

int
bm_codec_ping_reply_decode (const bm_msg_t *msg, bm_codec_ping_reply_t *self,
                            bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    bool has;
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_opt_bool (body, "redis", &self->redis, error)
    ||  bm_field_opt_int (body, "uptimeMs", 0, INT64_MAX, &has, &self->uptime_ms, error))
        return -1;
    return 0;
}

void
bm_codec_ping_reply_encode (const bm_codec_ping_reply_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 2 + self->has_req);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_pack_kv_bool (&packer->pk, "redis", self->redis);
    bm_field_pack_int (packer, "uptimeMs", self->uptime_ms);
}

int
bm_codec_metrics_reply_decode (const bm_msg_t *msg, bm_codec_metrics_reply_t *self,
                               bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_opt_str (body, "text", SIZE_MAX, &self->text, error))
        return -1;
    if (!self->text.ptr)
        return bm_field_fail (error, "text", "text is required: the metrics as text");
    return 0;
}

void
bm_codec_metrics_reply_encode (const bm_codec_metrics_reply_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 1 + self->has_req);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_field_pack_strn (packer, "text", self->text.ptr ? self->text.ptr : "", self->text.len);
}

int
bm_codec_stats_reply_type (const bm_codec_stats_reply_t *self, size_t index,
                           bm_codec_type_stats_t *type, bm_codec_error_t *error)
{
    memset (type, 0, sizeof *type);
    if (!self->types || index >= self->type_count)
        return bm_field_fail (error, "types", "no entry %zu in types", index);
    const msgpack_object *key = &self->types->via.map.ptr [index].key;
    const msgpack_object *map = &self->types->via.map.ptr [index].val;
    if (key->type != MSGPACK_OBJECT_STR || !bm_valid_bot_type (key->via.str.ptr, key->via.str.size))
        return bm_field_fail (error, "types", "types must be keyed by bot type");
    if (map->type != MSGPACK_OBJECT_MAP)
        return bm_field_fail (error, "types", "each entry of types must be a map");
    bm_field_copy (type->name, key->via.str.ptr, key->via.str.size);
    struct { const char *key; int64_t *value; } fields [] = {
        { "waiting", &type->waiting }, { "running", &type->running },
        { "completed", &type->completed }, { "failed", &type->failed },
        { "cancelled", &type->cancelled }, { "limit", &type->limit },
        { "usage", &type->usage }, { "waitingForPermit", &type->waiting_for_permit },
        { "workers", &type->workers }, { "submitted", &type->submitted } };
    bool has;
    for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++)
        if (bm_field_opt_int (map, fields [i].key, 0, INT64_MAX, &has, fields [i].value, error))
            return -1;
    return 0;
}

int
bm_codec_stats_reply_worker (const bm_codec_stats_reply_t *self, size_t index,
                             bm_codec_worker_stats_t *worker, bm_codec_error_t *error)
{
    memset (worker, 0, sizeof *worker);
    if (!self->workers || index >= self->worker_count)
        return bm_field_fail (error, "workers", "no entry %zu in workers", index);
    const msgpack_object *map = &self->workers->via.array.ptr [index];
    if (map->type != MSGPACK_OBJECT_MAP)
        return bm_field_fail (error, "workers", "each entry of workers must be a map");
    bool has;
    if (bm_field_opt_str (map, "name", BM_MAX_ID_LEN + 16, &worker->name, error)
    ||  bm_field_opt_int (map, "credit", 0, BM_MAX_CREDIT, &has, &worker->credit, error)
    ||  bm_field_opt_int (map, "running", 0, INT64_MAX, &has, &worker->running, error)
    ||  bm_field_opt_int (map, "lastHeartbeat", 0, INT64_MAX, &has, &worker->last_heartbeat, error)
    ||  bm_field_opt_int (map, "pid", INT64_MIN, INT64_MAX, &has, &worker->pid, error))
        return -1;
    worker->types = bm_field_opt (map, "types");
    if (worker->types && worker->types->type != MSGPACK_OBJECT_ARRAY)
        return bm_field_fail (error, "types", "a worker's types must be an array");
    return 0;
}

int
bm_codec_stats_reply_decode (const bm_msg_t *msg, bm_codec_stats_reply_t *self,
                             bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    bool has;
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_opt_map (body, "types", &self->types, error)
    ||  bm_field_opt_bool (body, "redis", &self->redis, error)
    ||  bm_field_opt_int (body, "uptimeMs", 0, INT64_MAX, &has, &self->uptime_ms, error))
        return -1;
    self->type_count = self->types ? self->types->via.map.size : 0;
    self->workers = bm_field_opt (body, "workers");
    if (self->workers && self->workers->type != MSGPACK_OBJECT_ARRAY)
        return bm_field_fail (error, "workers", "workers must be an array");
    self->worker_count = self->workers ? self->workers->via.array.size : 0;
    const msgpack_object *totals;
    if (bm_field_opt_map (body, "totals", &totals, error))
        return -1;
    if (totals) {
        struct { const char *key; int64_t *value; } fields [] = {
            { "submitted", &self->submitted }, { "completed", &self->completed },
            { "failed", &self->failed }, { "cancelled", &self->cancelled },
            { "rejected", &self->rejected }, { "retried", &self->retried } };
        for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++)
            if (bm_field_opt_int (totals, fields [i].key, 0, INT64_MAX, &has, fields [i].value, error))
                return -1;
    }
    //  Every entry now, so that reading them one by one cannot fail.
    bm_codec_type_stats_t type;
    for (size_t i = 0; i < self->type_count; i++)
        if (bm_codec_stats_reply_type (self, i, &type, error))
            return -1;
    bm_codec_worker_stats_t worker;
    for (size_t i = 0; i < self->worker_count; i++)
        if (bm_codec_stats_reply_worker (self, i, &worker, error))
            return -1;
    return 0;
}

//  --------------------------------------------------------------------------
//  Every body by kind

int
bm_codec_decode (bm_codec_kind_t kind, const bm_msg_t *msg, bm_codec_body_t *body,
                 bm_codec_error_t *error)
{
    switch (kind) {
        case BM_CODEC_SUBMIT: return bm_codec_submit_decode (msg, &body->submit, error);
        case BM_CODEC_JOB_REF: return bm_codec_job_ref_decode (msg, &body->job_ref, error);
        case BM_CODEC_REQUEST: return bm_codec_request_decode (msg, &body->request, error);
        case BM_CODEC_LIST: return bm_codec_list_decode (msg, &body->list, error);
        case BM_CODEC_ACCEPTED: return bm_codec_accepted_decode (msg, &body->accepted, error);
        case BM_CODEC_REJECTED: return bm_codec_rejected_decode (msg, &body->rejected, error);
        case BM_CODEC_JOB_REPLY: return bm_codec_job_reply_decode (msg, &body->job_reply, error);
        case BM_CODEC_RESULT: return bm_codec_result_decode (msg, &body->job_reply, error);
        case BM_CODEC_LIST_REPLY: return bm_codec_list_reply_decode (msg, &body->list_reply, error);
        case BM_CODEC_PING_REPLY: return bm_codec_ping_reply_decode (msg, &body->ping_reply, error);
        case BM_CODEC_METRICS_REPLY:
            return bm_codec_metrics_reply_decode (msg, &body->metrics_reply, error);
        case BM_CODEC_STATS_REPLY:
            return bm_codec_stats_reply_decode (msg, &body->stats_reply, error);
        case BM_CODEC_READY: return bm_codec_ready_decode (msg, &body->ready, error);
        case BM_CODEC_JOB: return bm_codec_job_decode (msg, &body->job, error);
        case BM_CODEC_PROGRESS: return bm_codec_progress_decode (msg, &body->progress, error);
        case BM_CODEC_DONE: return bm_codec_done_decode (msg, &body->done, error);
        case BM_CODEC_JOB_NOTICE: return bm_codec_job_notice_decode (msg, &body->job_notice, error);
        case BM_CODEC_DISCONNECT: return bm_codec_disconnect_decode (msg, &body->disconnect, error);
        case BM_CODEC_HEARTBEAT: return bm_codec_heartbeat_decode (msg, &body->heartbeat, error);
        default: return bm_field_fail (error, "", "no body of kind %d", (int) kind);
    }
}

const char *
bm_codec_kind_name (bm_codec_kind_t kind)
{
    static const char *names [BM_CODEC_KINDS] = {
        "SUBMIT", "STATUS/CANCEL/RETRY/REDELIVER", "STATS/PING/METRICS", "LIST",
        "ACCEPTED", "REJECTED/NACK", "REPLY {job}", "RESULT", "REPLY {jobs}", "REPLY to PING",
        "REPLY to METRICS", "REPLY to STATS", "READY", "JOB", "PROGRESS", "DONE",
        "CANCEL/RELEASE", "DISCONNECT", "HEARTBEAT" };
    return kind >= 0 && kind < BM_CODEC_KINDS ? names [kind] : "unknown";
}

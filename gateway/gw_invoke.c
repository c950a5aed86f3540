/*  gw_invoke.c - translate a POST /invoke JSON body into a BMC01 SUBMIT body.  */
#include "gw_invoke.h"
#include "bm_selftest.h"
#include "bm_codec.h"
#include "bm_json.h"
#include "bm_ssrf.h"
#include "bm_url.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_fail (gw_invoke_error_t *error, int status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static int
s_fail (gw_invoke_error_t *error, int status, const char *code, const char *fmt, ...)
{
    error->status = status;
    error->code = code;
    va_list args;
    va_start (args, fmt);
    vsnprintf (error->message, sizeof error->message, fmt, args);
    va_end (args);
    return -1;
}

//  --------------------------------------------------------------------------
//  The value of an integer given as JSON text: an integer, or a real with
//  an integral value (1.0: what Python's json.dumps writes for a float, and
//  JavaScript clients for a computed number).  0, or -1 when item is
//  neither (1.5, a string, past 64 bits).
static int
s_integral (const json_t *item, int64_t *value)
{
    if (json_is_integer (item)) {
        *value = json_integer_value (item);
        return 0;
    }
    if (!json_is_real (item))
        return -1;
    double d = json_real_value (item);
    //  -2^63 <= d < 2^63: in range of int64_t, NaN and infinities fail.
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double) (int64_t) d)
        return -1;
    *value = (int64_t) d;
    return 0;
}

//  An optional integer field in [min, max].  Returns 1 when present (value
//  set), 0 when absent or null, -1 when of the wrong type or out of range.

static int
s_opt_int (const json_t *body, const char *key, int64_t min, int64_t max, int64_t *value)
{
    const json_t *item = json_object_get (body, key);
    if (!item || json_is_null (item))
        return 0;
    int64_t v;
    if (s_integral (item, &v))
        return -1;
    if (v < min || v > max)
        return -1;
    *value = v;
    return 1;
}

//  An optional string field.  Returns 1 when present, 0 when absent or null,
//  -1 when not a string.
static int
s_opt_str (const json_t *body, const char *key, const char **str, size_t *len)
{
    const json_t *item = json_object_get (body, key);
    if (!item || json_is_null (item))
        return 0;
    if (!json_is_string (item))
        return -1;
    *str = json_string_value (item);
    *len = json_string_length (item);
    return 1;
}

//  How many containers (arrays, objects) nest in value, counting value
//  itself; stops counting past limit.  The recursion is bounded by the
//  text's nesting, checked before parsing (s_nesting).
static int
s_containers (const json_t *value, int limit)
{
    if (!json_is_array (value) && !json_is_object (value))
        return 0;
    if (limit < 0)
        return 1;
    int deepest = 0;
    if (json_is_array (value)) {
        size_t index;
        const json_t *member;
        json_array_foreach (value, index, member) {
            int depth = s_containers (member, limit - 1);
            if (depth > deepest)
                deepest = depth;
        }
    }
    else {
        const char *key;
        const json_t *member;
        json_object_foreach ((json_t *) value, key, member) {
            int depth = s_containers (member, limit - 1);
            if (depth > deepest)
                deepest = depth;
        }
    }
    return 1 + deepest;
}

//  --------------------------------------------------------------------------
//  The retry and timing options: attempts, backoff, delayMs, runAt.  Whether
//  a runAt is too far in the past is the broker's to say (its clock).

static int
s_timing (const json_t *body, bm_codec_submit_t *submit, gw_invoke_error_t *error)
{
    int has = s_opt_int (body, "attempts", 1, BM_MAX_ATTEMPTS, &submit->attempts);
    if (has < 0)
        return s_fail (error, 400, "invalid_attempts",
                       "attempts must be an integer from 1 to %d (runs of the bot)", BM_MAX_ATTEMPTS);
    submit->has_attempts = has > 0;
    has = s_opt_int (body, "delayMs", 0, BM_MAX_DELAY_MS, &submit->delay_ms);
    if (has < 0)
        return s_fail (error, 400, "invalid_delay",
                       "delayMs must be an integer from 0 to %lld (a year)",
                       (long long) BM_MAX_DELAY_MS);
    //  BullMQ's name, delay (ms), reads as delayMs; both must agree.
    int64_t alias = 0;
    int has_alias = s_opt_int (body, "delay", 0, BM_MAX_DELAY_MS, &alias);
    if (has_alias < 0)
        return s_fail (error, 400, "invalid_delay",
                       "delay (delayMs) must be an integer from 0 to %lld (a year)",
                       (long long) BM_MAX_DELAY_MS);
    if (has_alias > 0 && has > 0 && alias != submit->delay_ms)
        return s_fail (error, 400, "invalid_delay",
                       "delay and delayMs are the same field and differ: give one");
    if (has_alias > 0 && has == 0) {
        submit->delay_ms = alias;
        has = 1;
    }
    submit->has_delay_ms = has > 0;
    has = s_opt_int (body, "runAt", 0, INT64_MAX, &submit->run_at);
    if (has < 0)
        return s_fail (error, 400, "invalid_run_at",
                       "runAt must be an integer: ms since the epoch");
    submit->has_run_at = has > 0;
    if (submit->has_run_at && submit->has_delay_ms)
        return s_fail (error, 400, "invalid_run_at",
                       "runAt and delayMs (or delay) exclude each other: give one");

    const json_t *backoff = json_object_get (body, "backoff");
    if (!backoff || json_is_null (backoff))
        return 0;
    //  BullMQ's short form: a number is a fixed delay in ms.
    if (json_is_number (backoff)) {
        int64_t fixed = 0;
        if (s_opt_int (body, "backoff", 0, BM_BACKOFF_MAX_MS, &fixed) < 0)
            return s_fail (error, 400, "invalid_backoff",
                           "backoff as a number is a fixed delay: an integer from 0 to %lld (ms)",
                           (long long) BM_BACKOFF_MAX_MS);
        char message [128];
        if (bm_backoff_set (&submit->backoff, "fixed", 5, fixed, 0, message, sizeof message))
            return s_fail (error, 400, "invalid_backoff", "%s", message);
        submit->has_backoff = true;
        return 0;
    }
    if (!json_is_object (backoff))
        return s_fail (error, 400, "invalid_backoff",
                       "backoff must be a number (a fixed delay in ms) or an object "
                       "{\"type\": \"exponential\"|\"fixed\", \"delayMs\": N}");
    const char *type = NULL;
    size_t type_len = 0;
    int64_t delay = 0;
    const json_t *jitter = json_object_get (backoff, "jitter");
    if (s_opt_str (backoff, "type", &type, &type_len) < 0)
        return s_fail (error, 400, "invalid_backoff", "backoff.type must be \"exponential\" or \"fixed\"");
    //  BullMQ names it delay: a job written for it reads the same here.
    const char *delay_key = json_object_get (backoff, "delayMs") || !json_object_get (backoff, "delay")
                          ? "delayMs" : "delay";
    if (json_object_get (backoff, "delayMs") && json_object_get (backoff, "delay"))
        return s_fail (error, 400, "invalid_backoff",
                       "backoff.delay and backoff.delayMs are the same field: give one");
    //  The type first: a wrong one is the mistake to name, whatever
    //  else the object lacks.
    char message [128];
    bm_backoff_t type_check;
    if (bm_backoff_set (&type_check, type, type_len, 0, 0, message, sizeof message))
        return bm_valid_bot_type (type, type_len)
             ? s_fail (error, 400, "invalid_backoff", "%s, not \"%s\"", message, type)
             : s_fail (error, 400, "invalid_backoff", "%s", message);
    int has_delay = s_opt_int (backoff, delay_key, 0, BM_BACKOFF_MAX_MS, &delay);
    if (has_delay <= 0)
        return s_fail (error, 400, "invalid_backoff",
                       "backoff.%s %s an integer from 0 to %lld", delay_key,
                       has_delay == 0 ? "is required:" : "must be", (long long) BM_BACKOFF_MAX_MS);
    //  true is full jitter; a number is BullMQ's random fraction of the wait.
    int jitter_pm = 0;
    if (jitter && !json_is_null (jitter)) {
        jitter_pm = json_is_boolean (jitter) || json_is_number (jitter)
                  ? bm_backoff_jitter_pm (json_is_boolean (jitter), json_is_true (jitter),
                                          json_number_value (jitter))
                  : -1;
        if (jitter_pm < 0)
            return s_fail (error, 400, "invalid_backoff",
                           "backoff.jitter must be a boolean or a number from 0 to 1 "
                           "(the random fraction of the wait)");
    }
    if (bm_backoff_set (&submit->backoff, type, type_len, delay, jitter_pm,
                        message, sizeof message))
        return s_fail (error, 400, "invalid_backoff", "%s", message);
    submit->has_backoff = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  The top-level keys the gateway reads; any other is ignored and named
//  back to the client (gw_invoke_ignored).

static const char *s_known_keys [] = {
    "botType", "payload", "webhookUrl", "priority", "idempotencyKey", "jobId",
    "timeoutMs", "maxAttempts", "attempts", "backoff", "delayMs", "delay", "runAt",
    "dependsOn", "onDependencyFailure", "dependencyResults", "ignoreDependencyOnFailure",
    "failParentOnFailure"
};

json_t *
gw_invoke_ignored (const json_t *body)
{
    if (!json_is_object (body))
        return NULL;
    json_t *names = NULL;
    const char *key;
    const json_t *member;
    json_object_foreach ((json_t *) body, key, member) {
        bool known = false;
        for (size_t i = 0; i < sizeof s_known_keys / sizeof s_known_keys [0] && !known; i++)
            known = streq (key, s_known_keys [i]);
        if (known)
            continue;
        if (!names && !(names = json_array ()))
            return NULL;
        if (json_array_size (names) == GW_INVOKE_MAX_IGNORED)
            break;
        json_array_append_new (names, json_string (key));
    }
    return names;
}

//  --------------------------------------------------------------------------
//  The fields POST /invoke shares with POST /schedules, checked alike (the
//  same codes and messages).  Each returns 0, or -1 with *error.

//  botType: required, [a-z0-9_-]{1,32}.  Whether the broker knows the
//  type is the broker's answer (unknown_bot_type).
static int
s_bot_type (const json_t *body, const char **bot_type, size_t *len, gw_invoke_error_t *error)
{
    const json_t *item = json_object_get (body, "botType");
    if (!item)
        return s_fail (error, 400, "missing_field", "botType is required");
    if (!json_is_string (item)
    ||  !bm_valid_bot_type (json_string_value (item), json_string_length (item)))
        return s_fail (error, 400, "invalid_bot_type",
                       "botType must be a string of 1 to %d characters from [a-z0-9_-]",
                       BM_MAX_BOT_TYPE_LEN);
    *bot_type = json_string_value (item);
    *len = json_string_length (item);
    if (streq (*bot_type, BM_WEBHOOK_TYPE))
        return s_fail (error, 400, "invalid_bot_type",
                       "botType %s is reserved for webhook deliveries", BM_WEBHOOK_TYPE);
    return 0;
}

static int
s_webhook_url (const json_t *body, const gw_invoke_limits_t *limits, const char **url, size_t *len,
               int *has, gw_invoke_error_t *error)
{
    *has = s_opt_str (body, "webhookUrl", url, len);
    //  "" is how seed clients say "no webhook", like null.
    if (*has > 0 && *len == 0)
        *has = 0;
    if (*has < 0 || (*has && !bm_valid_url (*url, *len)))
        return s_fail (error, 400, "invalid_webhook_url",
                       "webhookUrl must be an http:// or https:// URL of at most %d printable ASCII "
                       "characters (percent-encode others)",
                       BM_MAX_URL_LEN);
    //  Read as the webhook manager will read it: a URL it cannot use is
    //  refused now, not at delivery.
    int port;
    char *host = *has ? bm_url_host (*url, "webhookUrl", &port, error->message,
                                     sizeof error->message) : NULL;
    if (*has && !host) {
        error->status = 400;
        error->code = "invalid_webhook_url";
        return -1;
    }
    //  A target the manager's SSRF guard refuses before any lookup (an IP
    //  address, localhost), by the settings this gateway was given: the
    //  job is accepted with a warning, not refused, since the manager may
    //  run with settings of its own (they are its to apply).  A name is
    //  looked up at delivery, by the manager.
    const char *refused = host ? bm_ssrf_literal_refused (host, port, limits->allow_private,
                                                          limits->allowed_hosts) : NULL;
    if (refused)
        snprintf (error->warning, sizeof error->warning,
                  "webhookUrl host %.64s is %s: the webhook manager refuses such targets "
                  "unless WEBHOOK_ALLOW_PRIVATE=1 or WEBHOOK_ALLOWED_HOSTS lists the host, "
                  "and this job's webhook will then fail", host, refused);
    free (host);
    return 0;
}

static int
s_priority (const json_t *body, int64_t *priority, gw_invoke_error_t *error)
{
    if (s_opt_int (body, "priority", 0, BM_MAX_PRIORITY, priority) < 0)
        return s_fail (error, 400, "invalid_priority",
                       "priority must be an integer from 0 to %d (lower runs first)",
                       BM_MAX_PRIORITY);
    return 0;
}

//  A payload: at most GW_INVOKE_MAX_DEPTH nested containers.
static int
s_payload_depth (const json_t *payload, gw_invoke_error_t *error)
{
    if (s_containers (payload, GW_INVOKE_MAX_DEPTH) > GW_INVOKE_MAX_DEPTH)
        return s_fail (error, 400, "invalid_payload",
                       "payload nests deeper than %d levels", GW_INVOKE_MAX_DEPTH);
    return 0;
}

//  dependsOn (1..BM_MAX_DEPENDS distinct job ids), onDependencyFailure
//  ("fail" | "ignore") and dependencyResults, into submit (the ids
//  borrowed from body).  Whether the ids name jobs is the broker's to say.
static int
s_depends (const json_t *body, bm_codec_submit_t *submit, gw_invoke_error_t *error)
{
    const json_t *deps = json_object_get (body, "dependsOn");
    if (deps && !json_is_null (deps)) {
        if (!json_is_array (deps) || json_array_size (deps) < 1
        ||  json_array_size (deps) > BM_MAX_DEPENDS)
            return s_fail (error, 400, "invalid_dependencies",
                           "dependsOn must be an array of 1 to %d job ids", BM_MAX_DEPENDS);
        for (size_t i = 0; i < json_array_size (deps); i++) {
            const json_t *id = json_array_get (deps, i);
            if (!json_is_string (id)
            ||  !bm_valid_id (json_string_value (id), json_string_length (id)))
                return s_fail (error, 400, "invalid_dependencies",
                               "dependsOn[%zu] must be a job id: 1 to %d printable ASCII "
                               "characters without spaces", i, BM_MAX_ID_LEN);
            for (size_t j = 0; j < i; j++)
                if (json_equal ((json_t *) id, json_array_get (deps, j)))
                    return s_fail (error, 400, "invalid_dependencies",
                                   "dependsOn[%zu] repeats dependsOn[%zu]: each job id once", i, j);
            submit->depends_on [i] = (bm_codec_str_t) { json_string_value (id),
                                                        json_string_length (id) };
        }
        submit->depends_count = json_array_size (deps);
    }
    //  onDependencyFailure, or BullMQ's names for its values:
    //  ignoreDependencyOnFailure true is "ignore", failParentOnFailure true
    //  "fail" (false: nothing asked).  Two that disagree are refused.
    const char *chosen = NULL, *chosen_by = NULL;
    const json_t *on_failure = json_object_get (body, "onDependencyFailure");
    if (on_failure && !json_is_null (on_failure)) {
        chosen = json_is_string (on_failure) ? json_string_value (on_failure) : "";
        if (!streq (chosen, "fail") && !streq (chosen, "ignore"))
            return s_fail (error, 400, "invalid_dependencies",
                           "onDependencyFailure must be \"fail\" or \"ignore\"");
        chosen_by = "onDependencyFailure";
    }
    static const char *aliases [][2] = {
        { "ignoreDependencyOnFailure", "ignore" }, { "failParentOnFailure", "fail" }
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases [0]; i++) {
        const json_t *flag = json_object_get (body, aliases [i][0]);
        if (flag && !json_is_null (flag) && !json_is_boolean (flag))
            return s_fail (error, 400, "invalid_dependencies",
                           "%s must be a boolean (true is onDependencyFailure \"%s\")",
                           aliases [i][0], aliases [i][1]);
        if (!json_is_true (flag))
            continue;
        if (chosen && !streq (chosen, aliases [i][1]))
            return s_fail (error, 400, "invalid_dependencies",
                           "%s true is onDependencyFailure \"%s\": it contradicts %s",
                           aliases [i][0], aliases [i][1], chosen_by);
        chosen = aliases [i][1];
        chosen_by = aliases [i][0];
    }
    submit->ignore_dependency_failure = chosen && streq (chosen, "ignore");
    const json_t *results = json_object_get (body, "dependencyResults");
    if (results && !json_is_null (results) && !json_is_boolean (results))
        return s_fail (error, 400, "invalid_dependencies", "dependencyResults must be a boolean");
    submit->dependency_results = json_is_true (results);
    if (!submit->depends_count && (chosen_by || submit->dependency_results))
        return s_fail (error, 400, "invalid_dependencies", "%s needs dependsOn",
                       submit->dependency_results ? "dependencyResults" : chosen_by);
    return 0;
}

//  The numeric fields but priority: timeoutMs, maxAttempts and the
//  timing options (s_timing), into submit.
static int
s_numbers (const json_t *body, bm_codec_submit_t *submit, gw_invoke_error_t *error)
{
    int has = s_opt_int (body, "timeoutMs", 1, GW_INVOKE_MAX_TIMEOUT_MS, &submit->timeout_ms);
    if (has < 0)
        return s_fail (error, 400, "invalid_timeout",
                       "timeoutMs must be an integer from 1 to %lld",
                       (long long) GW_INVOKE_MAX_TIMEOUT_MS);
    submit->has_timeout_ms = has > 0;
    has = s_opt_int (body, "maxAttempts", 1, GW_INVOKE_MAX_ATTEMPTS, &submit->max_attempts);
    if (has < 0)
        return s_fail (error, 400, "invalid_max_attempts",
                       "maxAttempts must be an integer from 1 to %d", GW_INVOKE_MAX_ATTEMPTS);
    submit->has_max_attempts = has > 0;
    return s_timing (body, submit, error);
}

int
gw_invoke_check_schedule (json_t *body, const gw_invoke_limits_t *limits, gw_invoke_error_t *error)
{
    error->warning [0] = '\0';
    const char *str;
    size_t len;
    int has;
    int64_t priority = -1;
    const json_t *payload = json_object_get (body, "payload");
    if (s_bot_type (body, &str, &len, error)
    ||  (payload && s_payload_depth (payload, error))
    ||  s_webhook_url (body, limits, &str, &len, &has, error)
    ||  s_priority (body, &priority, error))
        return -1;
    //  The body goes to the broker as it is: written as /invoke reads
    //  them, a priority of 1.0 as 1, a webhookUrl of "" as none.
    if (!has)
        json_object_del (body, "webhookUrl");
    if (json_is_real (json_object_get (body, "priority")))
        json_object_set_new (body, "priority", json_integer ((json_int_t) priority));
    //  The SCHEDULE body is the object itself (one level), so each field
    //  holds at most GW_INVOKE_MAX_DEPTH - 1 containers: a deeper one is
    //  named, payload with payload's code, any other as the body's fault.
    const char *key;
    const json_t *member;
    json_object_foreach ((json_t *) body, key, member)
        if (s_containers (member, GW_INVOKE_MAX_DEPTH) > GW_INVOKE_MAX_DEPTH - 1)
            return streq (key, "payload")
                 ? s_fail (error, 400, "invalid_payload", "payload nests deeper than %d levels "
                           "in a schedule", GW_INVOKE_MAX_DEPTH - 1)
                 : s_fail (error, 400, "invalid_body", "%.40s nests deeper than %d levels",
                           key, GW_INVOKE_MAX_DEPTH - 1);
    return 0;
}

//  --------------------------------------------------------------------------
//  Validate the parsed body and pack it.  Returns 0 or -1 with *error set.

int
gw_invoke_translate_value (const json_t *body, bool has_req, int64_t req,
                           const gw_invoke_limits_t *limits,
                           bm_packer_t *packer, bm_packer_t *scratch, char *bot_type_out,
                           int64_t *priority_out, json_t **ignored, gw_invoke_error_t *error)
{
    error->warning [0] = '\0';
    if (ignored)
        *ignored = NULL;
    if (!json_is_object (body))
        return s_fail (error, 400, "invalid_body", "the body must be a JSON object");

    const char *bot_type;
    size_t bot_type_len;
    if (s_bot_type (body, &bot_type, &bot_type_len, error))
        return -1;

    //  payload: required (the seed's examples always send it), any value.
    const json_t *payload = json_object_get (body, "payload");
    if (!payload)
        return s_fail (error, 400, "missing_field", "payload is required");

    const char *url = NULL;
    size_t url_len = 0;
    int has_url = 0;
    int64_t priority = GW_INVOKE_DEFAULT_PRIORITY;
    if (s_webhook_url (body, limits, &url, &url_len, &has_url, error)
    ||  s_priority (body, &priority, error))
        return -1;

    const char *key = NULL;
    size_t key_len = 0;
    int has_key = s_opt_str (body, "idempotencyKey", &key, &key_len);
    if (has_key < 0 || (has_key && !bm_valid_id (key, key_len)))
        return s_fail (error, 400, "invalid_idempotency_key",
                       "idempotencyKey must be 1 to %d printable ASCII characters without spaces",
                       BM_MAX_ID_LEN);
    //  BullMQ's jobId (a client-chosen id that de-duplicates adds) reads
    //  as idempotencyKey; both must agree.
    const char *job_key = NULL;
    size_t job_key_len = 0;
    int has_job_key = s_opt_str (body, "jobId", &job_key, &job_key_len);
    if (has_job_key < 0 || (has_job_key && !bm_valid_id (job_key, job_key_len)))
        return s_fail (error, 400, "invalid_idempotency_key",
                       "jobId (idempotencyKey) must be 1 to %d printable ASCII characters "
                       "without spaces", BM_MAX_ID_LEN);
    if (has_job_key > 0 && has_key > 0
    &&  (job_key_len != key_len || memcmp (job_key, key, key_len) != 0))
        return s_fail (error, 400, "invalid_idempotency_key",
                       "jobId and idempotencyKey are the same field and differ: give one");
    if (has_job_key > 0 && has_key == 0) {
        key = job_key;
        key_len = job_key_len;
        has_key = 1;
    }

    bm_codec_submit_t submit = { .has_req = has_req, .req = req };
    if (s_numbers (body, &submit, error) || s_depends (body, &submit, error))
        return -1;

    //  The payload first, on its own: its encoded size is the limit, and
    //  the SUBMIT body carries those bytes as they are.  bm_json_pack
    //  refuses the depth s_payload_depth would (GW_INVOKE_MAX_DEPTH
    //  containers), in the same walk.
    bm_packer_t own;
    bm_packer_t *payload_buf = scratch ? scratch : &own;
    if (scratch)
        bm_packer_reset (scratch);
    else
        bm_packer_init (&own);
    if (bm_json_pack (&payload_buf->pk, payload, GW_INVOKE_MAX_DEPTH)) {
        if (!scratch)
            bm_packer_destroy (&own);
        return s_fail (error, 400, "invalid_payload",
                       "payload nests deeper than %d levels", GW_INVOKE_MAX_DEPTH);
    }
    if (payload_buf->sbuf.size > limits->max_payload) {
        if (!scratch)
            bm_packer_destroy (&own);
        return s_fail (error, 413, "payload_too_large",
                       "payload is larger than %zu bytes once encoded", limits->max_payload);
    }
    //  SUBMIT body (protocol.md section 4):
    //  {req, botType, payload, priority, webhookUrl?, idempotencyKey?,
    //   timeoutMs?, maxAttempts?, attempts?, backoff?, delayMs?, runAt?,
    //   dependsOn?, onDependencyFailure?, dependencyResults?}
    submit.payload = (bm_codec_value_t) { NULL, payload_buf->sbuf.data, payload_buf->sbuf.size };
    submit.webhook_url = (bm_codec_str_t) { has_url > 0 ? url : NULL, has_url > 0 ? url_len : 0 };
    submit.has_priority = true;
    submit.priority = priority;
    memcpy (submit.bot_type, bot_type, bot_type_len);
    if (has_key > 0)
        memcpy (submit.idempotency_key, key, key_len);
    bm_codec_submit_encode (&submit, packer);
    bool failed = bm_packer_failed (payload_buf) || bm_packer_failed (packer);
    if (!scratch)
        bm_packer_destroy (&own);
    if (failed)
        return s_fail (error, 503, "out_of_memory", "no memory to encode the job");

    if (priority_out)
        *priority_out = priority;
    if (ignored)
        *ignored = gw_invoke_ignored (body);
    if (bot_type_out) {
        memcpy (bot_type_out, bot_type, bot_type_len);
        bot_type_out [bot_type_len] = 0;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The deepest nesting of arrays and objects in JSON text, counted without
//  parsing (strings and their escapes are skipped).  jansson parses
//  recursively and allows 2048 levels: more than the ~100 KB stack of a
//  civetweb worker thread holds, so deeper text never reaches it.
//  Stops counting past limit.

static size_t
s_nesting (const char *text, size_t size, size_t limit)
{
    size_t depth = 0, deepest = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = text [i];
        if (in_string) {
            if (c == '\\')
                i++;                //  Skip the escaped byte
            else
            if (c == '"')
                in_string = false;
        }
        else
        if (c == '"')
            in_string = true;
        else
        if (c == '[' || c == '{') {
            if (++depth > deepest) {
                deepest = depth;
                if (deepest > limit)
                    return deepest;
            }
        }
        else
        if ((c == ']' || c == '}') && depth > 0)
            depth--;
    }
    return deepest;
}

//  The member names that lead to byte offset at of JSON text (that
//  parsed up to there): names [i] is the name within the object at depth
//  i + 1, "" where that depth is an array.  Returns the depth.
#define S_PATH_MAX  4

static int
s_path_at (const char *text, size_t at, char names [S_PATH_MAX][40])
{
    int depth = 0;
    bool is_object [S_PATH_MAX + 1] = { false };
    bool expect_name [S_PATH_MAX + 1] = { false };
    const char *start = NULL;
    for (size_t i = 0; i < at; i++) {
        char c = text [i];
        if (start) {
            if (c == '\\')
                i++;
            else
            if (c == '"') {
                if (depth >= 1 && depth <= S_PATH_MAX && expect_name [depth]) {
                    snprintf (names [depth - 1], sizeof names [0], "%.*s",
                              (int) (text + i - start), start);
                    expect_name [depth] = false;
                }
                start = NULL;
            }
        }
        else
        if (c == '"')
            start = text + i + 1;
        else
        if (c == '{' || c == '[') {
            depth++;
            if (depth <= S_PATH_MAX) {
                names [depth - 1][0] = 0;
                is_object [depth] = expect_name [depth] = c == '{';
            }
        }
        else
        if ((c == '}' || c == ']') && depth > 0)
            depth--;
        else
        if (c == ',' && depth >= 1 && depth <= S_PATH_MAX)
            expect_name [depth] = is_object [depth];
    }
    return depth;
}

//  An integer past 64 bits, which jansson refuses while parsing: named
//  by its field, with the code and message an out-of-range value of that
//  field gets (a real number in its place fails the same checks).
static void
s_too_big (const char *text, size_t at, int extra_depth, const json_error_t *jerr,
           gw_invoke_error_t *error)
{
    char names [S_PATH_MAX][40];
    int depth = s_path_at (text, at, names);
    const char *field = depth > extra_depth ? names [extra_depth] : "";
    const char *member = depth > extra_depth + 1 ? names [extra_depth + 1] : "";
    json_t *probe = NULL;
    if (depth == extra_depth + 1 && *field)
        probe = json_pack ("{s:f}", field, 1e30);
    else
    if (depth == extra_depth + 2 && streq (field, "backoff") && *member)
        probe = json_pack ("{s:{s:s, s:f}}", "backoff", "type", "fixed", member, 1e30);
    int64_t priority;
    bm_codec_submit_t submit;
    memset (&submit, 0, sizeof submit);
    bool named = probe && (s_priority (probe, &priority, error) || s_numbers (probe, &submit, error));
    json_decref (probe);
    if (named)
        return;
    if (streq (field, "payload"))
        s_fail (error, 400, "invalid_payload", "payload holds an integer too big for a 64-bit "
                "integer (line %d column %d): send such numbers as strings",
                jerr->line, jerr->column);
    else
    if (*field && bm_valid_id (field, strlen (field))
    &&  (!*member || bm_valid_id (member, strlen (member))))
        s_fail (error, 400, "invalid_json", "%s%s%s holds an integer too big for a 64-bit integer "
                "(line %d column %d)", field, *member ? "." : "", member, jerr->line, jerr->column);
    else
        s_fail (error, 400, "invalid_json", "malformed JSON at line %d column %d: an integer too "
                "big for a 64-bit integer", jerr->line, jerr->column);
}

json_t *
gw_invoke_parse (const char *body, size_t size, int extra_depth, gw_invoke_error_t *error)
{
    if (size == 0) {
        s_fail (error, 400, "invalid_json", "the body is empty; send a JSON %s",
                extra_depth ? "array" : "object");
        return NULL;
    }
    size_t limit = GW_INVOKE_MAX_TEXT_DEPTH + (size_t) extra_depth;
    if (s_nesting (body, size, limit) > limit) {
        s_fail (error, 400, "invalid_json", "JSON nests deeper than %zu levels", limit);
        return NULL;
    }
    //  jansson checks UTF-8, refuses \u0000 (no JSON_ALLOW_NUL) and limits
    //  nesting while parsing (JSON_PARSER_MAX_DEPTH), so hostile input ends
    //  here with a message, not a deep recursion.
    json_error_t jerr;
    json_t *root = json_loadb (body, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (root)
        return root;
    if (json_error_code (&jerr) == json_error_null_character)
        s_fail (error, 400, "invalid_json", "the body contains a NUL character (\\u0000), which "
                "is not allowed (line %d column %d)", jerr.line, jerr.column);
    else
    if (json_error_code (&jerr) == json_error_numeric_overflow)
        s_too_big (body, jerr.position < 0 || (size_t) jerr.position > size
                   ? size : (size_t) jerr.position, extra_depth, &jerr, error);
    else
        s_fail (error, 400, "invalid_json", "malformed JSON at line %d column %d: %s",
                jerr.line, jerr.column, jerr.text);
    return NULL;
}

int
gw_invoke_translate (const char *body, size_t size, int64_t req, const gw_invoke_limits_t *limits,
                     char **out, size_t *out_size, char *bot_type, int64_t *priority,
                     json_t **ignored, gw_invoke_error_t *error)
{
    *out = NULL;
    *out_size = 0;
    if (ignored)
        *ignored = NULL;
    json_t *root = gw_invoke_parse (body, size, 0, error);
    if (!root)
        return -1;
    bm_packer_t packer;
    bm_packer_init (&packer);
    int rc = gw_invoke_translate_value (root, true, req, limits, &packer, NULL, bot_type,
                                        priority, ignored, error);
    json_decref (root);
    if (rc) {
        bm_packer_destroy (&packer);
        return -1;
    }
    *out = bm_packer_detach (&packer, out_size);
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test

//  The last translation's bytes: the unpacked result points into them.
static char *s_last_out;

//  The rule for private targets the self test runs under.
static gw_invoke_limits_t s_limits;

static const char *
s_try (const char *body, size_t max_payload, gw_invoke_error_t *error, msgpack_unpacked *result)
{
    s_limits.max_payload = max_payload;
    free (s_last_out);
    s_last_out = NULL;
    char *out;
    size_t out_size;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    if (gw_invoke_translate (body, strlen (body), 7, &s_limits, &out, &out_size, bot_type, NULL,
                             NULL, error))
        return error->code;
    s_last_out = out;
    if (bm_msgpack_check (out, out_size) != 0)
        return "bad msgpack";
    msgpack_unpacked_init (result);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (result, out, out_size, &offset);
    return rc == MSGPACK_UNPACK_SUCCESS ? "ok" : "bad msgpack";
}

#define CHECK(cond) BM_CHECK (cond)

void
gw_invoke_test (bool verbose)
{
    if (verbose)
        printf (" * gw_invoke: ");
    gw_invoke_error_t error;
    msgpack_unpacked result;

    //  The seed's example, with every optional field.
    const char *full = "{\"botType\":\"python\",\"payload\":{\"task\":\"data_analysis\","
        "\"dataset\":\"sales_2024\"},\"webhookUrl\":\"http://mock-webhook:5000\","
        "\"priority\":1,\"idempotencyKey\":\"k-1\",\"timeoutMs\":1000,\"maxAttempts\":2,"
        "\"unknown\":[1,2]}";
    CHECK (streq (s_try (full, 1 << 20, &error, &result), "ok"));
    const msgpack_object *map = &result.data;
    CHECK (map->type == MSGPACK_OBJECT_MAP && map->via.map.size == 8);
    int64_t value;
    char buf [64];
    CHECK (bm_obj_int (map, "req", &value) && value == 7);
    CHECK (bm_obj_int (map, "priority", &value) && value == 1);
    CHECK (bm_obj_int (map, "timeoutMs", &value) && value == 1000);
    CHECK (bm_obj_int (map, "maxAttempts", &value) && value == 2);
    CHECK (bm_obj_strcpy (map, "botType", buf, sizeof buf) && streq (buf, "python"));
    CHECK (bm_obj_strcpy (map, "webhookUrl", buf, sizeof buf)
           && streq (buf, "http://mock-webhook:5000"));
    CHECK (bm_obj_strcpy (map, "idempotencyKey", buf, sizeof buf) && streq (buf, "k-1"));
    const msgpack_object *payload = bm_obj_get (map, "payload");
    CHECK (payload && payload->type == MSGPACK_OBJECT_MAP && payload->via.map.size == 2);
    CHECK (!bm_obj_get (map, "unknown"));
    msgpack_unpacked_destroy (&result);

    //  The retry and timing options reach the SUBMIT body.
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"attempts\":4,\"delayMs\":1500,"
                         "\"backoff\":{\"type\":\"fixed\",\"delayMs\":100,\"jitter\":true}}",
                         1 << 20, &error, &result), "ok"));
    CHECK (bm_obj_int (&result.data, "attempts", &value) && value == 4);
    CHECK (bm_obj_int (&result.data, "delayMs", &value) && value == 1500);
    const msgpack_object *backoff = bm_obj_get (&result.data, "backoff");
    CHECK (backoff && bm_obj_int (backoff, "delayMs", &value) && value == 100);
    CHECK (bm_obj_strcpy (backoff, "type", buf, sizeof buf) && streq (buf, "fixed"));
    msgpack_unpacked_destroy (&result);

    //  BullMQ's forms: a number is a fixed delay; jitter a random fraction.
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"backoff\":1000}",
                         1 << 20, &error, &result), "ok"));
    backoff = bm_obj_get (&result.data, "backoff");
    CHECK (backoff && bm_obj_int (backoff, "delayMs", &value) && value == 1000);
    CHECK (bm_obj_strcpy (backoff, "type", buf, sizeof buf) && streq (buf, "fixed"));
    msgpack_unpacked_destroy (&result);
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,"
                         "\"backoff\":{\"type\":\"exponential\",\"delay\":1000,\"jitter\":0.2}}",
                         1 << 20, &error, &result), "ok"));
    backoff = bm_obj_get (&result.data, "backoff");
    const msgpack_object *jitter = backoff ? bm_obj_get (backoff, "jitter") : NULL;
    CHECK (jitter && jitter->type == MSGPACK_OBJECT_FLOAT64 && jitter->via.f64 == 0.2);
    msgpack_unpacked_destroy (&result);

    //  BullMQ's name of the backoff's delay, delay, reads as delayMs; both
    //  at once are refused.
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,"
                         "\"backoff\":{\"type\":\"fixed\",\"delay\":1000}}",
                         1 << 20, &error, &result), "ok"));
    backoff = bm_obj_get (&result.data, "backoff");
    CHECK (backoff && bm_obj_int (backoff, "delayMs", &value) && value == 1000);
    msgpack_unpacked_destroy (&result);
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,"
                         "\"backoff\":{\"type\":\"fixed\",\"delay\":1,\"delayMs\":1}}",
                         1 << 20, &error, &result), "invalid_backoff"));

    //  BullMQ's delay and jobId read as delayMs and idempotencyKey; given
    //  with those, they must agree.
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"delay\":5000,"
                         "\"jobId\":\"my-own-id\"}", 1 << 20, &error, &result), "ok"));
    CHECK (bm_obj_int (&result.data, "delayMs", &value) && value == 5000);
    CHECK (bm_obj_strcpy (&result.data, "idempotencyKey", buf, sizeof buf)
           && streq (buf, "my-own-id"));
    msgpack_unpacked_destroy (&result);
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"delay\":5,\"delayMs\":5,"
                         "\"jobId\":\"k\",\"idempotencyKey\":\"k\"}", 1 << 20, &error, &result), "ok"));
    CHECK (bm_obj_int (&result.data, "delayMs", &value) && value == 5);
    msgpack_unpacked_destroy (&result);
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"delay\":5,\"delayMs\":6}",
                         1 << 20, &error, &result), "invalid_delay"));
    CHECK (strstr (error.message, "delay and delayMs"));
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"jobId\":\"a\","
                         "\"idempotencyKey\":\"b\"}", 1 << 20, &error, &result),
                  "invalid_idempotency_key"));
    CHECK (strstr (error.message, "jobId and idempotencyKey"));
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"delay\":1,\"runAt\":1}",
                         1 << 20, &error, &result), "invalid_run_at"));
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"jobId\":5}",
                         1 << 20, &error, &result), "invalid_idempotency_key"));

    //  Unknown top-level keys are named, in order; known ones never.
    json_t *parsed = json_loads ("{\"botType\":\"java\",\"payload\":{\"x\":1},\"delay\":1,"
                                 "\"removeOnComplete\":true,\"jobId\":\"j\",\"lifo\":false}",
                                 0, NULL);
    json_t *names = gw_invoke_ignored (parsed);
    CHECK (names && json_array_size (names) == 2);
    CHECK (streq (json_string_value (json_array_get (names, 0)), "removeOnComplete"));
    CHECK (streq (json_string_value (json_array_get (names, 1)), "lifo"));
    json_decref (names);
    json_decref (parsed);
    parsed = json_loads ("{\"botType\":\"java\",\"payload\":1,\"priority\":1}", 0, NULL);
    CHECK (gw_invoke_ignored (parsed) == NULL);
    json_decref (parsed);

    //  A schedule's shared fields get /invoke's codes; its own are left
    //  to the broker.
    struct { const char *body; const char *code; } sched [] = {
        { "{\"key\":\"k\",\"botType\":\"java\",\"everyMs\":1000}", "ok" },
        { "{\"key\":\"k\",\"botType\":\"java\",\"cron\":\"bad\",\"unknown\":1}", "ok" },
        { "{\"key\":\"k\",\"everyMs\":1000}", "missing_field" },
        { "{\"key\":\"k\",\"botType\":\"Java\"}", "invalid_bot_type" },
        { "{\"key\":\"k\",\"botType\":\"java\",\"priority\":-1}", "invalid_priority" },
        { "{\"key\":\"k\",\"botType\":\"java\",\"priority\":1.5}", "invalid_priority" },
        { "{\"key\":\"k\",\"botType\":\"java\",\"webhookUrl\":\"ftp://x\"}", "invalid_webhook_url" },
        { "{\"key\":\"k\",\"botType\":\"java\",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
          "invalid_body" },
        { "{\"key\":\"k\",\"botType\":\"java\",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
          "ok" },
    };
    for (size_t i = 0; i < sizeof sched / sizeof sched [0]; i++) {
        json_t *parsed = json_loads (sched [i].body, 0, NULL);
        CHECK (parsed);
        int rc = gw_invoke_check_schedule (parsed, &s_limits, &error);
        CHECK (rc == 0 ? streq (sched [i].code, "ok")
                       : streq (error.code, sched [i].code) && error.status == 400);
        json_decref (parsed);
    }

    //  Minimal body: defaults, nulls as absent, any payload type.
    CHECK (streq (s_try ("{\"botType\":\"node\",\"payload\":null,\"webhookUrl\":null,"
                         "\"priority\":null}", 1 << 20, &error, &result), "ok"));
    CHECK (result.data.via.map.size == 4);
    CHECK (bm_obj_int (&result.data, "priority", &value) && value == GW_INVOKE_DEFAULT_PRIORITY);
    msgpack_unpacked_destroy (&result);

    //  Integer fields given as reals with an integral value (json.dumps of
    //  a float) read as those integers; a webhookUrl of "" as none.
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"priority\":1.0,"
                         "\"timeoutMs\":1000.0,\"maxAttempts\":2.0,\"attempts\":4.0,"
                         "\"delay\":5e3,\"backoff\":{\"type\":\"fixed\",\"delay\":100.0},"
                         "\"webhookUrl\":\"\"}", 1 << 20, &error, &result), "ok"));
    CHECK (bm_obj_int (&result.data, "priority", &value) && value == 1);
    CHECK (bm_obj_int (&result.data, "timeoutMs", &value) && value == 1000);
    CHECK (bm_obj_int (&result.data, "maxAttempts", &value) && value == 2);
    CHECK (bm_obj_int (&result.data, "attempts", &value) && value == 4);
    CHECK (bm_obj_int (&result.data, "delayMs", &value) && value == 5000);
    backoff = bm_obj_get (&result.data, "backoff");
    CHECK (backoff && bm_obj_int (backoff, "delayMs", &value) && value == 100);
    CHECK (!bm_obj_get (&result.data, "webhookUrl"));
    msgpack_unpacked_destroy (&result);
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,\"runAt\":1790000000000.0}",
                         1 << 20, &error, &result), "ok"));
    CHECK (bm_obj_int (&result.data, "runAt", &value) && value == 1790000000000LL);
    msgpack_unpacked_destroy (&result);

    //  A webhookUrl the webhook manager refuses before any lookup (an IP
    //  address, localhost) passes with a warning naming the reason and the
    //  settings; a name is the manager's to look up.  Allowed, or listed
    //  with its port, it passes without one.
    struct { const char *url; const char *says; } private_urls [] = {
        { "http://127.0.0.1:5000/hook",   "host 127.0.0.1 is loopback" },
        { "http://localhost:5000/hook",   "host localhost is loopback" },
        { "http://10.1.2.3:8080/hook",    "host 10.1.2.3 is private" },
        { "http://169.254.169.254/",      "is link-local" },
        { "https://[::1]/hook",           "host [::1] is loopback" },
        { "http://127.1:5000/",           "host 127.0.0.1 is loopback" },
        { "http://192.0.2.1:81/hook",     "is reserved" },
    };
    for (size_t i = 0; i < sizeof private_urls / sizeof private_urls [0]; i++) {
        char body [200];
        snprintf (body, sizeof body, "{\"botType\":\"java\",\"payload\":1,\"webhookUrl\":\"%s\"}",
                  private_urls [i].url);
        CHECK (streq (s_try (body, 1 << 20, &error, &result), "ok"));
        msgpack_unpacked_destroy (&result);
        if (!strstr (error.warning, private_urls [i].says)
        ||  !strstr (error.warning, "WEBHOOK_ALLOW_PRIVATE=1")
        ||  !strstr (error.warning, "WEBHOOK_ALLOWED_HOSTS")) {
            fprintf (stderr, "gw_invoke_test: %s: %s\n", private_urls [i].url, error.warning);
            abort ();
        }
        json_t *parsed = json_pack ("{s:s, s:s}", "botType", "java", "webhookUrl", private_urls [i].url);
        CHECK (gw_invoke_check_schedule (parsed, &s_limits, &error) == 0
               && strstr (error.warning, private_urls [i].says));
        json_decref (parsed);
    }
    const char *passes [] = {
        "{\"botType\":\"java\",\"payload\":1,\"webhookUrl\":\"http://internal.example/x\"}",
        "{\"botType\":\"java\",\"payload\":1,\"webhookUrl\":\"https://1.1.1.1/x\"}",
    };
    for (size_t i = 0; i < sizeof passes / sizeof passes [0]; i++) {
        CHECK (streq (s_try (passes [i], 1 << 20, &error, &result), "ok") && !error.warning [0]);
        msgpack_unpacked_destroy (&result);
    }
    const char *mock = "{\"botType\":\"java\",\"payload\":1,\"webhookUrl\":\"http://127.0.0.1:5000/x\"}";
    s_limits.allowed_hosts = "localhost:5000,127.0.0.1:5000";
    CHECK (streq (s_try (mock, 1 << 20, &error, &result), "ok") && !error.warning [0]);
    msgpack_unpacked_destroy (&result);
    CHECK (streq (s_try ("{\"botType\":\"java\",\"payload\":1,"
                         "\"webhookUrl\":\"http://127.0.0.1:6379/\"}", 1 << 20, &error, &result),
                  "ok") && strstr (error.warning, "is loopback"));
    msgpack_unpacked_destroy (&result);
    s_limits.allowed_hosts = NULL;
    s_limits.allow_private = true;
    CHECK (streq (s_try (mock, 1 << 20, &error, &result), "ok") && !error.warning [0]);
    msgpack_unpacked_destroy (&result);
    s_limits.allow_private = false;

    //  Errors, each with its code and status.
    struct { const char *body; int status; const char *code; } cases [] = {
        { "", 400, "invalid_json" },
        { "{", 400, "invalid_json" },
        { "{\"botType\":\"python\",\"payload\":1", 400, "invalid_json" },
        { "{\"botType\":\"pyth\xff\",\"payload\":1}", 400, "invalid_json" },
        { "{\"botType\":\"python\",\"payload\":\"\\u0000\"}", 400, "invalid_json" },
        { "{\"botType\":\"python\",\"botType\":\"node\",\"payload\":1}", 400, "invalid_json" },
        { "[1,2]", 400, "invalid_body" },
        { "\"text\"", 400, "invalid_body" },
        { "{\"payload\":1}", 400, "missing_field" },
        { "{\"botType\":\"python\"}", 400, "missing_field" },
        { "{\"botType\":7,\"payload\":1}", 400, "invalid_bot_type" },
        { "{\"botType\":\"Python\",\"payload\":1}", 400, "invalid_bot_type" },
        { "{\"botType\":\"\",\"payload\":1}", 400, "invalid_bot_type" },
        { "{\"botType\":\"webhook\",\"payload\":1}", 400, "invalid_bot_type" },
        { "{\"botType\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"payload\":1}", 400, "invalid_bot_type" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":-1}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":2097153}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":1.5}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":\"1\"}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":1e300}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":-0.5}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"timeoutMs\":1000.5}", 400, "invalid_timeout" },
        { "{\"botType\":\"python\",\"payload\":1,\"attempts\":1.5}", 400, "invalid_attempts" },
        { "{\"botType\":\"python\",\"payload\":1,\"runAt\":9.3e18}", 400, "invalid_run_at" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":true}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":1,\"webhookUrl\":\"ftp://x\"}", 400, "invalid_webhook_url" },
        { "{\"botType\":\"python\",\"payload\":1,\"webhookUrl\":\"http://\"}", 400, "invalid_webhook_url" },
        { "{\"botType\":\"python\",\"payload\":1,\"webhookUrl\":5}", 400, "invalid_webhook_url" },
        { "{\"botType\":\"python\",\"payload\":1,\"webhookUrl\":\"http://x/\\u2028\"}", 400, "invalid_webhook_url" },
        { "{\"botType\":\"python\",\"payload\":1,\"webhookUrl\":\"http://x/\\u202e\"}", 400, "invalid_webhook_url" },
        { "{\"botType\":\"python\",\"payload\":1,\"webhookUrl\":\"http://[::1\"}", 400, "invalid_webhook_url" },
        { "{\"botType\":\"python\",\"payload\":1,\"priority\":99999999999999999999}", 400, "invalid_priority" },
        { "{\"botType\":\"python\",\"payload\":{\"a\":[1,{\"b\":-99999999999999999999}]}}", 400, "invalid_payload" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":{\"delay\":99999999999999999999}}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":{\"type\":\"weird\"}}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"x\":{\"y\":99999999999999999999}}", 400, "invalid_json" },
        { "{\"botType\":\"python\",\"payload\":1,\"timeoutMs\":0}", 400, "invalid_timeout" },
        { "{\"botType\":\"python\",\"payload\":1,\"timeoutMs\":86400001}", 400, "invalid_timeout" },
        { "{\"botType\":\"python\",\"payload\":1,\"maxAttempts\":101}", 400, "invalid_max_attempts" },
        { "{\"botType\":\"python\",\"payload\":1,\"idempotencyKey\":\"a b\"}", 400, "invalid_idempotency_key" },
        { "{\"botType\":\"python\",\"payload\":1,\"idempotencyKey\":\"\"}", 400, "invalid_idempotency_key" },
        { "{\"botType\":\"python\",\"payload\":\"0123456789abcdef0123456789\"}", 413, "payload_too_large" },
        { "{\"botType\":\"python\",\"payload\":1,\"attempts\":0}", 400, "invalid_attempts" },
        { "{\"botType\":\"python\",\"payload\":1,\"attempts\":\"3\"}", 400, "invalid_attempts" },
        { "{\"botType\":\"python\",\"payload\":1,\"delayMs\":-1}", 400, "invalid_delay" },
        { "{\"botType\":\"python\",\"payload\":1,\"delayMs\":31536000001}", 400, "invalid_delay" },
        { "{\"botType\":\"python\",\"payload\":1,\"runAt\":1.5}", 400, "invalid_run_at" },
        { "{\"botType\":\"python\",\"payload\":1,\"runAt\":1,\"delayMs\":1}", 400, "invalid_run_at" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":-1}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":1.5}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":\"2000\"}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":{\"delayMs\":1,\"jitter\":1.5}}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":{}}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":{\"type\":\"linear\",\"delayMs\":1}}", 400, "invalid_backoff" },
        { "{\"botType\":\"python\",\"payload\":1,\"backoff\":{\"delayMs\":1,\"jitter\":\"yes\"}}", 400, "invalid_backoff" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        const char *code = s_try (cases [i].body, 16, &error, &result);
        if (streq (code, "ok"))
            msgpack_unpacked_destroy (&result);
        if (!streq (code, cases [i].code) || error.status != cases [i].status) {
            fprintf (stderr, "gw_invoke_test: case %zu: got %s, want %s\n", i, code, cases [i].code);
            abort ();
        }
        CHECK (strlen (error.message) > 0);
    }

    //  Deep nesting: refused by the depth rule, never a crash.
    char deep [4096];
    size_t n = (size_t) snprintf (deep, sizeof deep, "{\"botType\":\"python\",\"payload\":");
    for (int i = 0; i < 40; i++)
        deep [n++] = '[';
    for (int i = 0; i < 40; i++)
        deep [n++] = ']';
    deep [n++] = '}';
    deep [n] = 0;
    CHECK (streq (s_try (deep, 1 << 20, &error, &result), "invalid_payload"));
    //  Exactly GW_INVOKE_MAX_DEPTH nested containers pass (holding a value
    //  or empty), and the SUBMIT body still unpacks; one more does not.
    for (int extra = 0; extra < 4; extra++) {
        int levels = GW_INVOKE_MAX_DEPTH + extra % 2;
        n = (size_t) snprintf (deep, sizeof deep, "{\"botType\":\"python\",\"payload\":");
        for (int i = 0; i < levels; i++)
            deep [n++] = '[';
        if (extra < 2)
            deep [n++] = '1';
        for (int i = 0; i < levels; i++)
            deep [n++] = ']';
        deep [n++] = '}';
        deep [n] = 0;
        const char *code = s_try (deep, 1 << 20, &error, &result);
        CHECK (streq (code, extra % 2 ? "invalid_payload" : "ok"));
        if (!(extra % 2))
            msgpack_unpacked_destroy (&result);
    }
    n = 0;
    for (int i = 0; i < 3000; i++)
        deep [n++] = '[';
    deep [n] = 0;
    CHECK (streq (s_try (deep, 1 << 20, &error, &result), "invalid_json"));
    //  Brackets inside strings do not count; escaped quotes do not end them.
    CHECK (s_nesting ("[\"[[[[\\\"[[[\"]", 13, 100) == 1);
    CHECK (s_nesting ("{\"a\":[{}]}", 11, 100) == 3);
    CHECK (s_nesting ("[[[[", 4, 2) == 3);
    free (s_last_out);
    s_last_out = NULL;

    if (verbose)
        printf ("OK\n");
}

/*  fuzz_gw_invoke.c - the POST /invoke body -> SUBMIT translation
    (gateway/gw_invoke.h) under libFuzzer, checked against the API's
    written rules and against the broker's decoder.

    The gateway's own harness (gateway/gw_invoke_fuzz.c) checks the shape
    of the output; this one checks its meaning:
    - translate is deterministic (the same bytes twice, the same answer);
    - a refusal is a 400 or 413 with a code and a message, and nothing out;
    - an acceptance happens exactly when the body follows the documented
      rules (README "The HTTP API", gw_invoke.h), as re-checked here from
      jansson's own parse: an object, botType [a-z0-9_-]{1,32}, a payload,
      optional fields null or valid (an integer field may be a real with an
      integral value; a webhookUrl of "" is none; a webhookUrl whose host
      is an address or localhost in a range the webhook manager refuses is
      refused, private targets not being allowed here);
    - an accepted body's SUBMIT carries the same botType, payload (JSON
      equality after msgpack -> JSON), priority (GW_INVOKE_DEFAULT_PRIORITY by default), webhookUrl,
      idempotencyKey, timeoutMs and maxAttempts as the JSON did;
    - the SUBMIT frames are accepted by bm_msg_decode_raw as the broker
      decodes them (a job the gateway accepts must not be a bad_frame to
      the broker), and its payload nests at most BM_MAX_NESTING deep (the
      broker's bad_request rule).  */
#include "bm_json.h"
#include "bm_proto.h"
#include "bm_url.h"
#include "gw_invoke.h"
#include "fuzz_common.h"

#include <math.h>

#define FUZZ_MAX_PAYLOAD    2048    //  Small, so that 413 is within -max_len
static const gw_invoke_limits_t s_limits = { .max_payload = FUZZ_MAX_PAYLOAD };

//  The deepest nesting of containers in value (value itself counts).
static int
s_depth (const json_t *value)
{
    int deepest = 0;
    size_t index;
    const char *key;
    json_t *member;
    if (json_is_array (value)) {
        json_array_foreach (value, index, member) {
            int d = s_depth (member);
            if (d > deepest)
                deepest = d;
        }
        return 1 + deepest;
    }
    if (json_is_object (value)) {
        json_object_foreach ((json_t *) value, key, member) {
            int d = s_depth (member);
            if (d > deepest)
                deepest = d;
        }
        return 1 + deepest;
    }
    return 0;
}

//  An optional integer (or a real with an integral value, 1.0): 0
//  absent/null, 1 valid, -1 invalid.
static int
s_rule_int (const json_t *root, const char *key, int64_t min, int64_t max)
{
    json_t *v = json_object_get (root, key);
    if (!v || json_is_null (v))
        return 0;
    if (json_is_real (v)) {
        double d = json_real_value (v);
        return d == floor (d) && d >= (double) min && d <= (double) max ? 1 : -1;
    }
    if (!json_is_integer (v) || json_integer_value (v) < min || json_integer_value (v) > max)
        return -1;
    return 1;
}

//  The value a valid integer field is sent as: an integral real as an
//  integer (a new reference).
static json_t *
s_as_sent (json_t *value)
{
    return json_is_real (value) ? json_integer ((json_int_t) json_real_value (value))
                                : json_incref (value);
}

//  A webhook URL the gateway takes: bm_valid_url's shape, and one the
//  webhook manager's parser (libcurl's) reads (one its SSRF guard would
//  refuse is taken too, with a warning).
static bool
s_valid_webhook_url (const char *str, size_t len)
{
    char error [160];
    int port;
    char *host = bm_valid_url (str, len) ? bm_url_host (str, "webhookUrl", &port, error,
                                                        sizeof error) : NULL;
    bool ok = host != NULL;
    free (host);
    return ok;
}

//  An optional string: 0 absent/null, 1 valid, -1 invalid.
static int
s_rule_str (const json_t *root, const char *key, bool (*valid) (const char *, size_t))
{
    json_t *v = json_object_get (root, key);
    if (!v || json_is_null (v) || (strcmp (key, "webhookUrl") == 0 && json_is_string (v)
                                   && json_string_length (v) == 0))
        return 0;
    if (!json_is_string (v) || !valid (json_string_value (v), json_string_length (v)))
        return -1;
    return 1;
}

//  The SUBMIT field key must hold the JSON value expected (NULL: absent;
//  for an optional field, null means absent too).
static void
s_check_field (const msgpack_object *map, const char *key, const json_t *expected,
               bool optional)
{
    const msgpack_object *got = bm_obj_get (map, key);
    if (!expected || (optional && json_is_null (expected))) {
        FUZZ_CHECK (got == NULL);
        return;
    }
    FUZZ_CHECK (got != NULL);
    json_t *value = bm_json_from_msgpack (got, BM_JSON_MAX_DEPTH + 1);
    FUZZ_CHECK (value != NULL);
    FUZZ_CHECK (fuzz_json_same (value, expected));
    json_decref (value);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *body = (const char *) data;
    char *out = NULL, *out2 = NULL;
    size_t out_size = 0, out2_size = 0;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    gw_invoke_error_t error, error2;
    memset (&error, 0, sizeof error);
    memset (&error2, 0, sizeof error2);
    int rc = gw_invoke_translate (body, size, 1234, &s_limits, &out, &out_size,
                                  bot_type, NULL, NULL, &error);
    int rc2 = gw_invoke_translate (body, size, 1234, &s_limits, &out2, &out2_size,
                                   NULL, NULL, NULL, &error2);
    //  Deterministic.
    FUZZ_CHECK (rc == rc2);
    if (rc == 0)
        FUZZ_CHECK (out_size == out2_size && memcmp (out, out2, out_size) == 0);
    else
        FUZZ_CHECK (error.status == error2.status && strcmp (error.code, error2.code) == 0);
    free (out2);

    if (rc) {
        FUZZ_CHECK (rc == -1 && out == NULL);
        FUZZ_CHECK (error.status == 400 || error.status == 413);
        FUZZ_CHECK (error.code && error.code [0] && error.message [0]);
    }

    //  The rules, from an independent parse.  Text nesting deeper than the
    //  gateway's pre-scan limit is refused before parsing; do not ask
    //  jansson (it recurses) about such input either.
    int brackets = 0, deepest_text = 0;
    bool in_string = false;
    for (size_t i = 0; i < size; i++) {
        char c = body [i];
        if (in_string) {
            if (c == '\\')
                i++;
            else
            if (c == '"')
                in_string = false;
        }
        else
        if (c == '"')
            in_string = true;
        else
        if ((c == '[' || c == '{') && ++brackets > deepest_text)
            deepest_text = brackets;
        else
        if ((c == ']' || c == '}') && brackets > 0)
            brackets--;
    }
    if (deepest_text > GW_INVOKE_MAX_TEXT_DEPTH) {
        FUZZ_CHECK (rc == -1 && strcmp (error.code, "invalid_json") == 0);
        return 0;
    }
    json_error_t jerr;
    json_t *root = json_loadb (body, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        //  An integer past 64 bits is named by its field (invalid_priority,
        //  invalid_payload...); anything else is invalid_json.
        bool overflow = json_error_code (&jerr) == json_error_numeric_overflow;
        FUZZ_CHECK (rc == -1 && error.status == 400
                    && (strcmp (error.code, "invalid_json") == 0
                        || (overflow && strncmp (error.code, "invalid_", 8) == 0)));
        return 0;
    }
    json_t *type = json_object_get (root, "botType");
    json_t *payload = json_object_get (root, "payload");
    bool valid = json_is_object (root)
              && json_is_string (type)
              && bm_valid_bot_type (json_string_value (type), json_string_length (type))
              && strcmp (json_string_value (type), BM_WEBHOOK_TYPE) != 0    //  Reserved
              && payload != NULL
              && s_rule_str (root, "webhookUrl", s_valid_webhook_url) >= 0
              && s_rule_int (root, "priority", 0, BM_MAX_PRIORITY) >= 0
              && s_rule_str (root, "idempotencyKey", bm_valid_id) >= 0
              && s_rule_int (root, "timeoutMs", 1, GW_INVOKE_MAX_TIMEOUT_MS) >= 0
              && s_rule_int (root, "maxAttempts", 1, GW_INVOKE_MAX_ATTEMPTS) >= 0;
    if (!valid) {
        FUZZ_CHECK (rc == -1 && error.status == 400);
        json_decref (root);
        return 0;
    }
    if (rc) {
        //  Valid fields, refused: only for the payload's size or depth.
        FUZZ_CHECK ((strcmp (error.code, "invalid_payload") == 0
                     && s_depth (payload) > GW_INVOKE_MAX_DEPTH - 1)
                 || (strcmp (error.code, "payload_too_large") == 0 && error.status == 413));
        json_decref (root);
        return 0;
    }
    FUZZ_CHECK (s_depth (payload) <= GW_INVOKE_MAX_DEPTH);

    //  Accepted: the SUBMIT says what the JSON said.
    FUZZ_CHECK (strcmp (bot_type, json_string_value (type)) == 0);
    FUZZ_CHECK (bm_msgpack_check (out, out_size) == 0);
    const char *code = NULL;
    char reason [200] = "";
    unsigned char command = BM_SUBMIT;
    bm_msg_t *msg = bm_msg_decode_raw (BM_CLIENT_HEADER, BM_HEADER_LEN, &command, 1,
                                       out, out_size, BM_MAX_FRAME_BYTES,
                                       &code, reason, sizeof reason);
    if (!msg)
        fprintf (stderr, "the broker would refuse the SUBMIT: %s: %s\n", code, reason);
    FUZZ_CHECK (msg != NULL);
    const msgpack_object *map = bm_msg_body (msg);
    int64_t number;
    FUZZ_CHECK (bm_obj_int (map, "req", &number) && number == 1234);
    s_check_field (map, "botType", type, false);
    s_check_field (map, "payload", payload, false);
    //  The broker refuses payloads nested deeper than BM_MAX_NESTING
    //  (bad_request): the gateway must not accept one.
    FUZZ_CHECK (bm_obj_depth (bm_obj_get (map, "payload")) <= BM_MAX_NESTING);
    json_t *priority = json_object_get (root, "priority");
    json_t *fallback = json_integer (GW_INVOKE_DEFAULT_PRIORITY);
    json_t *sent = s_as_sent (priority && !json_is_null (priority)? priority: fallback);
    s_check_field (map, "priority", sent, false);
    json_decref (sent);
    json_decref (fallback);
    json_t *url = json_object_get (root, "webhookUrl");
    s_check_field (map, "webhookUrl", json_is_string (url) && json_string_length (url) == 0
                                      ? NULL : url, true);
    s_check_field (map, "idempotencyKey", json_object_get (root, "idempotencyKey"), true);
    const char *numbers [] = { "timeoutMs", "maxAttempts" };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers [0]; i++) {
        json_t *number_value = json_object_get (root, numbers [i]);
        sent = number_value ? s_as_sent (number_value) : NULL;
        s_check_field (map, numbers [i], sent, true);
        json_decref (sent);
    }
    bm_msg_destroy (&msg);
    json_decref (root);
    free (out);
    return 0;
}

/*  bm_codec_control.c - the bodies of the control commands (BMC01).  */
#include "bm_codec_control.h"
#include "bm_tz.h"
#include "bm_codec_field.h"
#include "bm_cron.h"
#include "bm_json.h"
#include "bm_selftest.h"

#include <string.h>

int
bm_codec_queue_decode (const bm_msg_t *msg, bm_codec_queue_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error)
    ||  bm_field_bot_type (body, "botType", true, self->bot_type, error))
        return -1;
    if (bm_field_name (body, "action", true, sizeof self->action - 1, self->action, error)
    ||  !(streq (self->action, "pause") || streq (self->action, "resume")
          || streq (self->action, "drain") || streq (self->action, "clean")
          || streq (self->action, "rate") || streq (self->action, "retry")))
        return bm_field_fail (error, "action", "action must be pause, resume, drain, clean, rate "
                              "or retry");
    if (streq (self->action, "rate"))
        return bm_field_name (body, "rate", true, sizeof self->rate - 1, self->rate, error);
    bool has;
    if (streq (self->action, "retry")) {
        if (bm_field_name (body, "state", false, BM_MAX_STATE_LEN, self->state, error))
            return bm_field_fail (error, "state", "state must be \"failed\" or \"cancelled\"");
        if (!self->state [0])
            snprintf (self->state, sizeof self->state, "failed");
        if (!(streq (self->state, "failed") || streq (self->state, "cancelled")))
            return bm_field_fail (error, "state", "state must be \"failed\" or \"cancelled\"");
        if (bm_field_opt_int (body, "olderThanMs", 0, INT64_MAX / 2, &has, &self->older_than_ms,
                              error)
        ||  bm_field_opt_int (body, "limit", 1, BM_QUEUE_RETRY_MAX, &has, &self->limit, error))
            return -1;
        if (!has)
            self->limit = BM_QUEUE_RETRY_MAX;
        return 0;
    }
    if (!streq (self->action, "clean"))
        return 0;
    if (bm_field_name (body, "state", true, BM_MAX_STATE_LEN, self->state, error)
    ||  !(streq (self->state, "completed") || streq (self->state, "failed")
          || streq (self->state, "cancelled")))
        return bm_field_fail (error, "state",
                              "state must be \"completed\", \"failed\" or \"cancelled\"");
    return bm_field_opt_int (body, "olderThanMs", 0, INT64_MAX / 2, &has, &self->older_than_ms,
                             error);
}

void
bm_codec_queue_encode (const bm_codec_queue_t *self, bm_packer_t *packer)
{
    bool clean = streq (self->action, "clean"), rate = streq (self->action, "rate");
    bool retry = streq (self->action, "retry");
    msgpack_pack_map (&packer->pk, 2 + self->has_req + (clean || retry ? 2 : 0) + rate
                                   + (retry && self->limit > 0));
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_pack_kv_str (&packer->pk, "botType", self->bot_type);
    bm_pack_kv_str (&packer->pk, "action", self->action);
    if (clean || retry) {
        bm_pack_kv_str (&packer->pk, "state", self->state [0] ? self->state : "failed");
        bm_field_pack_int (packer, "olderThanMs", self->older_than_ms);
    }
    if (retry && self->limit > 0)
        bm_field_pack_int (packer, "limit", self->limit);
    if (rate)
        bm_pack_kv_str (&packer->pk, "rate", self->rate);
}

//  --------------------------------------------------------------------------
//  SCHEDULE

int
bm_codec_schedule_decode (const bm_msg_t *msg, bm_codec_schedule_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_req (body, &self->has_req, &self->req, error))
        return -1;
    if (bm_field_name (body, "action", true, sizeof self->action - 1, self->action, error)
    ||  !(streq (self->action, "add") || streq (self->action, "list")
          || streq (self->action, "remove")))
        return bm_field_fail (error, "action", "action must be add, list or remove");
    if (streq (self->action, "list"))
        return 0;
    char key [BM_MAX_ID_LEN + 1];
    if (bm_field_id (body, "key", true, key, error) || strlen (key) > BM_MAX_SCHEDULE_KEY_LEN)
        return bm_field_fail (error, "key", "key is required: 1 to %d printable characters "
                              "without spaces", BM_MAX_SCHEDULE_KEY_LEN);
    snprintf (self->key, sizeof self->key, "%s", key);
    if (streq (self->action, "remove"))
        return 0;
    if (bm_field_bot_type (body, "botType", true, self->bot_type, error))
        return -1;
    if (streq (self->bot_type, BM_WEBHOOK_TYPE))
        return bm_field_fail (error, "botType", "botType %s is reserved for webhook deliveries",
                              BM_WEBHOOK_TYPE);
    bm_field_value (msg, "payload", &self->payload);
    if (self->payload.obj && bm_obj_depth (self->payload.obj) > BM_MAX_NESTING)
        return bm_field_fail (error, "payload", "payload nests deeper than %d levels", BM_MAX_NESTING);
    bool has_every, has;
    if (bm_field_name (body, "cron", false, sizeof self->cron - 1, self->cron, error)
    ||  bm_field_name (body, "tz", false, BM_TZ_MAX_NAME, self->tz, error)
    ||  bm_field_opt_int (body, "everyMs", BM_MIN_EVERY_MS, BM_MAX_DELAY_MS, &has_every,
                          &self->every_ms, error)
    ||  bm_field_opt_int (body, "limit", 0, INT32_MAX, &has, &self->limit, error)
    ||  bm_field_opt_int (body, "startAt", 0, INT64_MAX / 2, &has, &self->start_at, error)
    ||  bm_field_opt_int (body, "endAt", 0, INT64_MAX / 2, &has, &self->end_at, error)
    ||  bm_field_opt_int (body, "priority", 0, BM_MAX_PRIORITY, &self->has_priority,
                          &self->priority, error))
        return -1;
    if (!self->cron [0] == !has_every)
        return bm_field_fail (error, "cron", "give exactly one of cron (5 fields) and everyMs");
    //  everyMs counts from startAt (or the creation time), in no zone: a
    //  zone given with it (as BullMQ's `every` takes and ignores one, and
    //  as a caller that always sends "UTC" does) is unused and dropped, but
    //  one that does not exist is refused as with cron: the sender meant
    //  something by it.
    if (has_every && self->tz [0]) {
        char message [160];
        bm_tz_t *tz = bm_tz_new (self->tz, message, sizeof message);
        if (!tz)
            return bm_field_fail (error, "tz", "tz: %s", message);
        bm_tz_destroy (&tz);
        self->tz [0] = 0;
    }
    if (self->cron [0]) {
        char message [160];
        bm_cron_t *cron = bm_cron_new (self->cron, self->tz, message, sizeof message);
        if (!cron)
            return bm_field_fail (error, strstr (message, "time zone") ? "tz" : "cron",
                                  "%s: %s", strstr (message, "time zone") ? "tz" : "cron", message);
        bm_cron_destroy (&cron);
    }
    if (self->end_at && self->end_at <= self->start_at)
        return bm_field_fail (error, "endAt", "endAt must come after startAt");
    const msgpack_object *o = bm_field_opt (body, "webhookUrl");
    if (o && (o->type != MSGPACK_OBJECT_STR || !bm_valid_url (o->via.str.ptr, o->via.str.size)))
        return bm_field_fail (error, "webhookUrl",
                              "webhookUrl must be an http:// or https:// URL of at most %d "
                              "printable ASCII characters (percent-encode others)",
                              BM_MAX_URL_LEN);
    self->webhook_url.ptr = o ? o->via.str.ptr : NULL;
    self->webhook_url.len = o ? o->via.str.size : 0;
    return 0;
}

void
bm_codec_schedule_encode (const bm_codec_schedule_t *self, bm_packer_t *packer)
{
    bool add = streq (self->action, "add");
    bool keyed = !streq (self->action, "list");
    int count = 1 + self->has_req + keyed;
    if (add)
        count += 2 + 1 + (self->cron [0] && self->tz [0]) + (self->limit > 0)
               + (self->start_at > 0) + (self->end_at > 0) + self->has_priority
               + (self->webhook_url.ptr != NULL);
    msgpack_pack_map (&packer->pk, count);
    if (self->has_req)
        bm_field_pack_int (packer, "req", self->req);
    bm_pack_kv_str (&packer->pk, "action", self->action);
    if (keyed)
        bm_pack_kv_str (&packer->pk, "key", self->key);
    if (!add)
        return;
    bm_pack_kv_str (&packer->pk, "botType", self->bot_type);
    bm_field_pack_value (packer, "payload", &self->payload);
    if (self->cron [0]) {
        bm_pack_kv_str (&packer->pk, "cron", self->cron);
        if (self->tz [0])
            bm_pack_kv_str (&packer->pk, "tz", self->tz);
    }
    else
        bm_field_pack_int (packer, "everyMs", self->every_ms);
    if (self->limit > 0)
        bm_field_pack_int (packer, "limit", self->limit);
    if (self->start_at > 0)
        bm_field_pack_int (packer, "startAt", self->start_at);
    if (self->end_at > 0)
        bm_field_pack_int (packer, "endAt", self->end_at);
    if (self->has_priority)
        bm_field_pack_int (packer, "priority", self->priority);
    if (self->webhook_url.ptr)
        bm_field_pack_strn (packer, "webhookUrl", self->webhook_url.ptr, self->webhook_url.len);
}

//  --------------------------------------------------------------------------
//  Self-test

//  A client message of the command with the packer's bytes as its body.
static bm_msg_t *
s_msg (int command, bm_packer_t *packer)
{
    BM_CHECK (!bm_packer_failed (packer));
    unsigned char byte = (unsigned char) command;
    const char *code;
    char reason [128];
    bm_msg_t *msg = bm_msg_decode_raw (BM_CLIENT_HEADER, BM_HEADER_LEN, &byte, 1,
                                       packer->sbuf.data, packer->sbuf.size,
                                       BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
    bm_packer_reset (packer);
    return msg;
}

static bm_msg_t *
s_json_msg (int command, const char *json)
{
    json_error_t jerr;
    json_t *value = json_loads (json, 0, &jerr);
    BM_CHECK (value);
    bm_packer_t packer;
    bm_packer_init (&packer);
    BM_CHECK (bm_json_pack (&packer.pk, value, 8) == 0);
    json_decref (value);
    bm_msg_t *msg = s_msg (command, &packer);
    bm_packer_destroy (&packer);
    BM_CHECK (msg);
    return msg;
}

static int
s_decode_schedule (const char *json, bm_codec_schedule_t *sc, bm_codec_error_t *error)
{
    bm_msg_t *msg = s_json_msg (BM_SCHEDULE, json);
    int rc = bm_codec_schedule_decode (msg, sc, error);
    bm_msg_destroy (&msg);
    return rc;
}

static int
s_decode_json (const char *json, bm_codec_queue_t *q, bm_codec_error_t *error)
{
    bm_msg_t *msg = s_json_msg (BM_QUEUE, json);
    int rc = bm_codec_queue_decode (msg, q, error);
    bm_msg_destroy (&msg);
    return rc;
}

void
bm_codec_control_test (bool verbose)
{
    (void) verbose;
    bm_codec_error_t error;
    bm_codec_queue_t q = { .has_req = true, .req = 4, .bot_type = "python", .action = "clean",
                           .state = "failed", .older_than_ms = 60000 };
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_queue_encode (&q, &packer);
    bm_msg_t *msg = s_msg (BM_QUEUE, &packer);
    bm_codec_queue_t back;
    BM_CHECK (msg && bm_codec_queue_decode (msg, &back, &error) == 0);
    BM_CHECK (back.req == 4 && streq (back.bot_type, "python") && streq (back.action, "clean")
              && streq (back.state, "failed") && back.older_than_ms == 60000);
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);
    bm_codec_queue_t r = { .bot_type = "python", .action = "rate", .rate = "10/s" };
    bm_packer_init (&packer);
    bm_codec_queue_encode (&r, &packer);
    msg = s_msg (BM_QUEUE, &packer);
    BM_CHECK (msg && bm_codec_queue_decode (msg, &back, &error) == 0);
    BM_CHECK (streq (back.action, "rate") && streq (back.rate, "10/s") && !back.has_req);
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);

    bm_codec_queue_t rt = { .has_req = true, .req = 5, .bot_type = "node", .action = "retry",
                            .state = "cancelled", .older_than_ms = 10, .limit = 7 };
    bm_packer_init (&packer);
    bm_codec_queue_encode (&rt, &packer);
    msg = s_msg (BM_QUEUE, &packer);
    BM_CHECK (msg && bm_codec_queue_decode (msg, &back, &error) == 0);
    BM_CHECK (streq (back.action, "retry") && streq (back.state, "cancelled")
              && back.older_than_ms == 10 && back.limit == 7);
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);
    BM_CHECK (s_decode_json ("{\"botType\":\"node\",\"action\":\"retry\"}", &back, &error) == 0);
    BM_CHECK (streq (back.state, "failed") && back.older_than_ms == 0
              && back.limit == BM_QUEUE_RETRY_MAX);
    BM_CHECK (s_decode_json ("{\"botType\":\"node\",\"action\":\"pause\"}", &back, &error) == 0);
    BM_CHECK (streq (back.action, "pause") && back.state [0] == 0);
    struct { const char *json; const char *field; } bad [] = {
        { "{\"action\":\"pause\"}", "botType" },
        { "{\"botType\":\"node\"}", "action" },
        { "{\"botType\":\"node\",\"action\":\"stop\"}", "action" },
        { "{\"botType\":\"node\",\"action\":7}", "action" },
        { "{\"botType\":\"node\",\"action\":\"clean\"}", "state" },
        { "{\"botType\":\"node\",\"action\":\"clean\",\"state\":\"queued\"}", "state" },
        { "{\"botType\":\"node\",\"action\":\"clean\",\"state\":\"failed\",\"olderThanMs\":-1}",
          "olderThanMs" },
        { "{\"botType\":\"node\",\"action\":\"clean\",\"state\":\"failed\",\"olderThanMs\":\"1\"}",
          "olderThanMs" },
        { "{\"botType\":\"node\",\"action\":\"retry\",\"state\":\"completed\"}", "state" },
        { "{\"botType\":\"node\",\"action\":\"retry\",\"state\":3}", "state" },
        { "{\"botType\":\"node\",\"action\":\"retry\",\"limit\":0}", "limit" },
        { "{\"botType\":\"node\",\"action\":\"retry\",\"limit\":1001}", "limit" },
        { "{\"botType\":\"node\",\"action\":\"retry\",\"olderThanMs\":-5}", "olderThanMs" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        if (s_decode_json (bad [i].json, &back, &error) != -1 || !streq (error.field, bad [i].field)
        ||  !strstr (error.message, bad [i].field)) {
            fprintf (stderr, "%s: field %s (%s), want %s\n", bad [i].json, error.field,
                     error.message, bad [i].field);
            BM_CHECK (false);
        }
    }

    //  SCHEDULE: a round trip, then refusals naming the field.
    //  The decoded body borrows payload and webhookUrl from its message:
    //  the message lives until the re-encode is done.
    bm_codec_schedule_t sc;
    bm_msg_t *first = s_json_msg (BM_SCHEDULE, "{\"req\":1,\"action\":\"add\",\"key\":\"nightly\","
                                 "\"botType\":\"python\",\"payload\":{\"a\":1},\"cron\":\"0 3 * * *\","
                                 "\"tz\":\"Europe/Berlin\",\"limit\":5,\"startAt\":10,\"endAt\":20,"
                                 "\"priority\":1,\"webhookUrl\":\"http://x/y\"}");
    BM_CHECK (bm_codec_schedule_decode (first, &sc, &error) == 0);
    BM_CHECK (streq (sc.key, "nightly") && streq (sc.cron, "0 3 * * *") && streq (sc.tz, "Europe/Berlin")
              && sc.limit == 5 && sc.start_at == 10 && sc.end_at == 20 && sc.priority == 1
              && sc.webhook_url.len == 10 && sc.payload.obj);
    bm_packer_init (&packer);
    bm_codec_schedule_encode (&sc, &packer);
    msg = s_msg (BM_SCHEDULE, &packer);
    bm_codec_schedule_t sc2;
    BM_CHECK (msg && bm_codec_schedule_decode (msg, &sc2, &error) == 0);
    BM_CHECK (streq (sc2.cron, sc.cron) && streq (sc2.tz, sc.tz) && sc2.limit == 5 && sc2.end_at == 20);
    bm_msg_destroy (&msg);
    bm_msg_destroy (&first);
    bm_packer_destroy (&packer);
    BM_CHECK (s_decode_schedule ("{\"action\":\"list\"}", &sc, &error) == 0);
    BM_CHECK (s_decode_schedule ("{\"action\":\"remove\",\"key\":\"k\"}", &sc, &error) == 0);
    struct { const char *json; const char *field; } bad_sc [] = {
        { "{\"action\":\"run\"}", "action" },
        { "{\"action\":\"remove\"}", "key" },
        { "{\"action\":\"add\",\"key\":\"k\",\"everyMs\":1000}", "botType" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\"}", "cron" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"cron\":\"* * * * *\","
          "\"everyMs\":1000}", "cron" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"cron\":\"61 * * * *\"}", "cron" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"cron\":\"* * * * *\","
          "\"tz\":\"Mars/Base\"}", "tz" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"everyMs\":5}", "everyMs" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"everyMs\":500,"
          "\"tz\":\"Mars/Olympus\"}", "tz" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"everyMs\":500,\"limit\":-1}",
          "limit" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"node\",\"everyMs\":500,\"startAt\":9,"
          "\"endAt\":5}", "endAt" },
        { "{\"action\":\"add\",\"key\":\"a b\",\"botType\":\"node\",\"everyMs\":500}", "key" },
        { "{\"action\":\"add\",\"key\":\"k\",\"botType\":\"webhook\",\"everyMs\":500}", "botType" },
    };
    for (size_t i = 0; i < sizeof bad_sc / sizeof bad_sc [0]; i++) {
        if (s_decode_schedule (bad_sc [i].json, &sc, &error) != -1
        ||  !streq (error.field, bad_sc [i].field) || !strstr (error.message, bad_sc [i].field)) {
            fprintf (stderr, "%s: field %s (%s), want %s\n", bad_sc [i].json, error.field,
                     error.message, bad_sc [i].field);
            BM_CHECK (false);
        }
    }
}

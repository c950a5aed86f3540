/*  mk_store.c - a bounded record of deliveries and the counters of /stats.  */
#include "mk_store.h"
#include "bm_selftest.h"
#include "bm_http.h"
#include "bm_utf8.h"

#include <czmq.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One delivery on record: the strings follow the struct in one allocation.
typedef struct {
    uint64_t seq;               //  Arrival number since the last reset
    int64_t time_ms;            //  Arrival time
    int status;                 //  Answer, 0 if dropped
    mk_sig_t signature;         //  Signature check result
    bool truncated;             //  Body longer than max_body
    size_t body_len;            //  Bytes of body kept
    char *path;                 //  Points into the allocation
    char *headers_json;
    char *body;
    char *webhook_id;           //  NULL if absent
    char *job_id;               //  NULL if absent
} s_record_t;

//  Most bot types counted apart in botTypeStats (others count in the totals).
#define MK_BOT_TYPES_MAX    1000
#define MK_BOT_TYPE_MAX_LEN 64
//  Minutes of arrival counts kept for lastHour and lastDay.
#define MK_MINUTES          1440

//  botTypeStats of one bot type.
typedef struct {
    uint64_t total, successful, failed;
} s_bot_t;

//  State of one delivery (webhook-id or jobId).
typedef struct {
    uint64_t arrivals;          //  Arrivals on record
    uint64_t successes;         //  2xx answers
    size_t live;                //  Records still retained
} s_key_t;

struct _mk_store_t {
    size_t max_records;         //  Ring size
    size_t max_body;            //  Body bytes kept per record
    s_record_t **ring;          //  The records, seq % max_records
    size_t count;               //  Records in the ring
    uint64_t seq;               //  Last sequence number given
    zhashx_t *keys;             //  key -> s_key_t
    uint64_t keyless;           //  Arrivals without any key
    //  Counters, since the last reset
    uint64_t received;
    uint64_t by_status [600];
    uint64_t duplicates;        //  2xx answers to a delivery already answered 2xx
    uint64_t repeats;           //  Arrivals of a delivery seen before
    uint64_t unique;            //  Deliveries seen for the first time
    uint64_t dropped;           //  Closed without an answer
    uint64_t sig_valid, sig_invalid, sig_unchecked;
    uint64_t evicted;           //  Records dropped to stay bounded
    uint64_t successful;        //  Bodies with "success": true
    uint64_t failed;            //  Bodies with "success": false
    zhashx_t *bots;             //  botType -> s_bot_t
    uint64_t minute_count [MK_MINUTES];     //  Arrivals in the minute minute_of [i]
    int64_t minute_of [MK_MINUTES];         //  Minute (since the epoch) of slot i
};

static void
s_key_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

mk_store_t *
mk_store_new (size_t max_records, size_t max_body)
{
    if (max_records == 0)
        return NULL;
    mk_store_t *self = (mk_store_t *) calloc (1, sizeof (mk_store_t));
    if (!self)
        return NULL;
    self->max_records = max_records;
    self->max_body = max_body;
    self->ring = (s_record_t **) calloc (max_records, sizeof (s_record_t *));
    self->keys = zhashx_new ();
    self->bots = zhashx_new ();
    if (!self->ring || !self->keys || !self->bots) {
        mk_store_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->keys, s_key_destroy);
    zhashx_set_destructor (self->bots, s_key_destroy);
    return self;
}

static void
s_clear (mk_store_t *self)
{
    for (size_t i = 0; i < self->max_records; i++) {
        free (self->ring [i]);
        self->ring [i] = NULL;
    }
    self->count = 0;
    zhashx_purge (self->keys);
    if (self->bots)
        zhashx_purge (self->bots);
}

void
mk_store_destroy (mk_store_t **self_p)
{
    if (*self_p) {
        mk_store_t *self = *self_p;
        if (self->ring)
            s_clear (self);
        free (self->ring);
        zhashx_destroy (&self->keys);
        zhashx_destroy (&self->bots);
        free (self);
        *self_p = NULL;
    }
}

static const char *
s_key_of (const char *webhook_id, const char *job_id)
{
    if (webhook_id && *webhook_id)
        return webhook_id;
    if (job_id && *job_id)
        return job_id;
    return NULL;
}

uint64_t
mk_store_seen (mk_store_t *self, const char *webhook_id, const char *job_id)
{
    const char *key = s_key_of (webhook_id, job_id);
    if (!key)
        return self->keyless;
    s_key_t *state = (s_key_t *) zhashx_lookup (self->keys, key);
    return state? state->arrivals: 0;
}

//  Drop the record in a ring slot, and its delivery's state with its last record.
static void
s_evict (mk_store_t *self, size_t slot)
{
    s_record_t *record = self->ring [slot];
    if (!record)
        return;
    const char *key = s_key_of (record->webhook_id, record->job_id);
    if (key) {
        s_key_t *state = (s_key_t *) zhashx_lookup (self->keys, key);
        if (state && --state->live == 0)
            zhashx_delete (self->keys, key);
    }
    free (record);
    self->ring [slot] = NULL;
    self->count--;
    self->evicted++;
}

static char *
s_copy (char **cursor, const char *text, size_t len)
{
    char *start = *cursor;
    memcpy (start, text, len);
    start [len] = 0;
    *cursor += len + 1;
    return start;
}

uint64_t
mk_store_add (mk_store_t *self, const mk_arrival_t *arrival, bool *duplicate)
{
    if (duplicate)
        *duplicate = false;
    uint64_t seq = ++self->seq;
    size_t slot = (size_t) (seq % self->max_records);

    //  Counters first: they never depend on memory being available.
    self->received++;
    int status = arrival->status;
    if (status <= 0)
        self->dropped++;
    else
    if (status < 600)
        self->by_status [status]++;
    if (arrival->signature == MK_SIG_VALID)
        self->sig_valid++;
    else
    if (arrival->signature == MK_SIG_INVALID)
        self->sig_invalid++;
    else
        self->sig_unchecked++;

    //  What the body says: success, and the bot type.  A body without
    //  "success" (a /test/* call, say) counts by the answer: 2xx is
    //  successful, anything else (or no answer) failed, so that
    //  successful + failed == total.
    bool answered_2xx = status >= 200 && status < 300;
    bool said_success = arrival->success == 1 || arrival->success == 0 ? arrival->success == 1
                      : answered_2xx;
    if (said_success)
        self->successful++;
    else
        self->failed++;
    const char *bot_type = arrival->bot_type;
    if (bot_type && *bot_type && strlen (bot_type) <= MK_BOT_TYPE_MAX_LEN) {
        s_bot_t *bot = (s_bot_t *) zhashx_lookup (self->bots, bot_type);
        if (!bot && zhashx_size (self->bots) < MK_BOT_TYPES_MAX) {
            bot = (s_bot_t *) calloc (1, sizeof (s_bot_t));
            if (bot)
                zhashx_insert (self->bots, bot_type, bot);
        }
        if (bot) {
            bot->total++;
            bot->successful += said_success;
            bot->failed += !said_success;
        }
    }
    int64_t minute = arrival->time_ms / 60000;
    size_t slot_m = (size_t) (minute % MK_MINUTES);
    if (self->minute_of [slot_m] != minute) {
        self->minute_of [slot_m] = minute;
        self->minute_count [slot_m] = 0;
    }
    self->minute_count [slot_m]++;

    bool success = answered_2xx;
    const char *key = s_key_of (arrival->webhook_id, arrival->job_id);
    s_key_t *state = NULL;
    if (key) {
        state = (s_key_t *) zhashx_lookup (self->keys, key);
        if (state) {
            self->repeats++;
            if (success && state->successes) {
                self->duplicates++;
                if (duplicate)
                    *duplicate = true;
            }
        }
        else {
            self->unique++;
            state = (s_key_t *) calloc (1, sizeof (s_key_t));
            if (state)
                zhashx_insert (self->keys, key, state);
        }
        if (state) {
            state->arrivals++;
            state->successes += success;
            //  Held by this arrival's record (released if it cannot be
            //  kept), before the ring's oldest record goes: when that was
            //  this delivery's last, its state stays.
            state->live++;
        }
    }
    else
        self->keyless++;
    s_evict (self, slot);

    //  The record, in one allocation.
    const char *path = arrival->path? arrival->path: "";
    const char *headers = arrival->headers_json? arrival->headers_json: "{}";
    size_t body_len = arrival->body_len < self->max_body? arrival->body_len: self->max_body;
    size_t path_len = strlen (path), headers_len = strlen (headers);
    size_t id_len = arrival->webhook_id? strlen (arrival->webhook_id): 0;
    size_t job_len = arrival->job_id? strlen (arrival->job_id): 0;
    size_t size = sizeof (s_record_t) + path_len + headers_len + body_len + id_len + job_len + 5;
    s_record_t *record = (s_record_t *) malloc (size);
    if (!record) {
        //  Counted, not kept; a state with no record left goes too.
        if (state && --state->live == 0)
            zhashx_delete (self->keys, key);
        return seq;
    }
    record->seq = seq;
    record->time_ms = arrival->time_ms;
    record->status = status;
    record->signature = arrival->signature;
    record->truncated = arrival->body_len > body_len;
    record->body_len = body_len;
    char *cursor = (char *) (record + 1);
    record->path = s_copy (&cursor, path, path_len);
    record->headers_json = s_copy (&cursor, headers, headers_len);
    record->body = s_copy (&cursor, arrival->body? arrival->body: "", body_len);
    record->webhook_id = arrival->webhook_id? s_copy (&cursor, arrival->webhook_id, id_len): NULL;
    record->job_id = arrival->job_id? s_copy (&cursor, arrival->job_id, job_len): NULL;
    self->ring [slot] = record;     //  Its state's hold: released by s_evict
    self->count++;
    return seq;
}

//  Arrivals in the minutes after now_ms - minutes (whole minutes).
static uint64_t
s_arrivals_since (mk_store_t *self, int64_t now_ms, int64_t minutes)
{
    int64_t now = now_ms / 60000;
    uint64_t sum = 0;
    for (size_t i = 0; i < MK_MINUTES; i++)
        if (self->minute_count [i] && self->minute_of [i] > now - minutes
        &&  self->minute_of [i] <= now)
            sum += self->minute_count [i];
    return sum;
}

json_t *
mk_store_stats (mk_store_t *self, int64_t now_ms)
{
    json_t *by_status = json_object ();
    for (int status = 0; status < 600; status++)
        if (self->by_status [status]) {
            char name [8];
            snprintf (name, sizeof name, "%d", status);
            json_object_set_new (by_status, name, json_integer ((json_int_t) self->by_status [status]));
        }
    json_t *bots = json_object ();
    for (s_bot_t *bot = (s_bot_t *) zhashx_first (self->bots); bot;
         bot = (s_bot_t *) zhashx_next (self->bots))
        json_object_set_new (bots, (const char *) zhashx_cursor (self->bots),
                             json_pack ("{s:I, s:I, s:I}", "total", (json_int_t) bot->total,
                                        "successful", (json_int_t) bot->successful,
                                        "failed", (json_int_t) bot->failed));
    json_t *stats = json_pack ("{s:I, s:o, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:I}",
        "received", (json_int_t) self->received,
        "byStatus", by_status,
        "duplicates", (json_int_t) self->duplicates,
        "repeats", (json_int_t) self->repeats,
        "uniqueIds", (json_int_t) self->unique,
        "dropped", (json_int_t) self->dropped,
        "signatures",
            "valid", (json_int_t) self->sig_valid,
            "invalid", (json_int_t) self->sig_invalid,
            "unchecked", (json_int_t) self->sig_unchecked,
        "records", (json_int_t) self->count,
        "evicted", (json_int_t) self->evicted);
    json_object_set_new (stats, "total", json_integer ((json_int_t) self->received));
    json_object_set_new (stats, "successful", json_integer ((json_int_t) self->successful));
    json_object_set_new (stats, "failed", json_integer ((json_int_t) self->failed));
    json_object_set_new (stats, "botTypeStats", bots);
    json_object_set_new (stats, "lastHour",
                         json_integer ((json_int_t) s_arrivals_since (self, now_ms, 60)));
    json_object_set_new (stats, "lastDay",
                         json_integer ((json_int_t) s_arrivals_since (self, now_ms, MK_MINUTES)));
    return stats;
}

//  bytes [0..len) in base64, as a JSON string (NULL for no memory).
static json_t *
s_base64 (const char *bytes, size_t len)
{
    char *text = (char *) malloc (4 * ((len + 2) / 3) + 1);
    if (!text)
        return NULL;
    int written = EVP_EncodeBlock ((unsigned char *) text, (const unsigned char *) bytes, (int) len);
    json_t *json = json_stringn (text, (size_t) written);
    free (text);
    return json;
}

static json_t *
s_record_json (const s_record_t *record)
{
    static const char *sig_names [] = { "unchecked", "valid", "invalid" };
    json_t *headers = json_loads (record->headers_json, 0, NULL);
    json_t *body = record->truncated? NULL: json_loadb (record->body, record->body_len, 0, NULL);
    bool base64 = false;
    if (!body) {
        //  Not JSON, or cut at MOCK_MAX_BODY_STORED (perhaps inside a
        //  character): the text, else the bytes in base64.
        size_t len = record->truncated? bm_utf8_whole (record->body, record->body_len)
                                      : record->body_len;
        if (bm_utf8_valid (record->body, len))
            body = json_stringn_nocheck (record->body, len);
        else {
            body = s_base64 (record->body, record->body_len);
            base64 = body != NULL;
        }
    }
    char id [24], timestamp [40];
    snprintf (id, sizeof id, "%llu", (unsigned long long) record->seq);
    bm_http_iso_time (record->time_ms, timestamp, sizeof timestamp);
    //  A path or webhook-id that is not UTF-8: its bad bytes as '?'.
    char *path = bm_utf8_sanitised (record->path, strlen (record->path), SIZE_MAX);
    char *webhook_id = record->webhook_id
                     ? bm_utf8_sanitised (record->webhook_id, strlen (record->webhook_id), SIZE_MAX)
                     : NULL;
    json_t *json = json_pack ("{s:s, s:s, s:I, s:I, s:s*, s:o, s:o, s:i, s:s, s:o, s:o, s:b}",
        "id", id,
        "timestamp", timestamp,
        "seq", (json_int_t) record->seq,
        "time", (json_int_t) record->time_ms,
        "path", path,
        "webhookId", webhook_id? json_string (webhook_id): json_null (),
        "jobId", record->job_id? json_string (record->job_id): json_null (),
        "status", record->status,
        "signature", sig_names [record->signature],
        "headers", headers? headers: json_object (),
        "body", body? body: json_null (),
        "bodyTruncated", record->truncated);
    if (json && base64)
        json_object_set_new (json, "bodyEncoding", json_string ("base64"));
    free (path);
    free (webhook_id);
    return json;
}

json_t *
mk_store_deliveries (mk_store_t *self, const char *job_id, size_t limit)
{
    json_t *list = json_array ();
    if (limit == 0 || self->seq == 0)
        return list;
    //  Walk back from the newest record; collect up to limit, then reverse.
    s_record_t **found = (s_record_t **) malloc (sizeof (s_record_t *) * (limit < self->count? limit: self->count + 1));
    if (!found)
        return list;
    size_t matched = 0;
    uint64_t oldest = self->seq > self->max_records? self->seq - self->max_records + 1: 1;
    for (uint64_t seq = self->seq; seq >= oldest && matched < limit; seq--) {
        s_record_t *record = self->ring [seq % self->max_records];
        if (!record || record->seq != seq)
            continue;
        if (job_id && (!record->job_id || strcmp (record->job_id, job_id) != 0))
            continue;
        found [matched++] = record;
        if (seq == 1)
            break;
    }
    while (matched)
        json_array_append_new (list, s_record_json (found [--matched]));
    free (found);
    return list;
}

json_t *
mk_store_webhooks (mk_store_t *self, size_t limit, size_t offset)
{
    json_t *list = json_array ();
    size_t skipped = 0;
    uint64_t oldest = self->seq > self->max_records? self->seq - self->max_records + 1: 1;
    for (uint64_t seq = self->seq; seq >= oldest && seq > 0 && json_array_size (list) < limit; seq--) {
        s_record_t *record = self->ring [seq % self->max_records];
        if (!record || record->seq != seq)
            continue;
        if (skipped++ < offset)
            continue;
        json_array_append_new (list, s_record_json (record));
    }
    return json_pack ("{s:o, s:I}", "webhooks", list, "total", (json_int_t) self->count);
}

json_t *
mk_store_webhook (mk_store_t *self, uint64_t id)
{
    if (id == 0 || id > self->seq)
        return NULL;
    s_record_t *record = self->ring [id % self->max_records];
    return record && record->seq == id? s_record_json (record): NULL;
}

void
mk_store_reset (mk_store_t *self)
{
    s_clear (self);
    size_t max_records = self->max_records, max_body = self->max_body;
    s_record_t **ring = self->ring;
    zhashx_t *keys = self->keys, *bots = self->bots;
    memset (self, 0, sizeof *self);
    self->max_records = max_records;
    self->max_body = max_body;
    self->ring = ring;
    self->keys = keys;
    self->bots = bots;
}

size_t
mk_store_size (mk_store_t *self)
{
    return self->count;
}

//  --------------------------------------------------------------------------
//  Self test

static uint64_t
s_add (mk_store_t *store, const char *id, const char *job, int status, mk_sig_t sig)
{
    char body [128];
    snprintf (body, sizeof body, "{\"jobId\": \"%s\", \"status\": \"completed\"}", job? job: "");
    mk_arrival_t arrival = { 1000, "/hook", "{\"webhook-id\": \"x\"}", body, strlen (body),
                             id, job, status, sig, status == 200? 1: status == 503? 0: -1,
                             "python" };
    return mk_store_add (store, &arrival, NULL);
}

static json_int_t
s_stat (mk_store_t *store, const char *key)
{
    json_t *stats = mk_store_stats (store, 1000);
    json_int_t value = json_integer_value (json_object_get (stats, key));
    json_decref (stats);
    return value;
}

void
mk_store_test (bool verbose)
{
    (void) verbose;
    printf (" * mk_store: ");
    mk_store_t *store = mk_store_new (4, 16);
    BM_CHECK (store);
    BM_CHECK (mk_store_seen (store, "msg_1", "job1") == 0);
    s_add (store, "msg_1", "job1", 503, MK_SIG_VALID);
    BM_CHECK (mk_store_seen (store, "msg_1", "job1") == 1);
    s_add (store, "msg_1", "job1", 200, MK_SIG_VALID);
    s_add (store, "msg_1", "job1", 200, MK_SIG_INVALID);     //  A duplicate
    BM_CHECK (mk_store_seen (store, "msg_1", NULL) == 3);
    BM_CHECK (s_stat (store, "received") == 3);
    BM_CHECK (s_stat (store, "repeats") == 2);
    BM_CHECK (s_stat (store, "duplicates") == 1);
    BM_CHECK (s_stat (store, "uniqueIds") == 1);
    json_t *stats = mk_store_stats (store, 1000);
    BM_CHECK (json_integer_value (json_object_get (json_object_get (stats, "byStatus"), "200")) == 2);
    //  success from the bodies: two true, one false; all three this hour
    BM_CHECK (json_integer_value (json_object_get (stats, "successful")) == 2);
    BM_CHECK (json_integer_value (json_object_get (stats, "failed")) == 1);
    json_t *python = json_object_get (json_object_get (stats, "botTypeStats"), "python");
    BM_CHECK (json_integer_value (json_object_get (python, "total")) == 3);
    BM_CHECK (json_integer_value (json_object_get (python, "failed")) == 1);
    BM_CHECK (json_integer_value (json_object_get (stats, "lastHour")) == 3);
    json_decref (stats);
    //  Two hours later: not in the last hour, still in the last day
    stats = mk_store_stats (store, 1000 + 2 * 3600 * 1000);
    BM_CHECK (json_integer_value (json_object_get (stats, "lastHour")) == 0);
    BM_CHECK (json_integer_value (json_object_get (stats, "lastDay")) == 3);
    json_decref (stats);
    //  /webhooks: newest first, offset and limit; one by id
    json_t *page = mk_store_webhooks (store, 1, 1);
    BM_CHECK (json_integer_value (json_object_get (page, "total")) == 3);
    BM_CHECK (json_array_size (json_object_get (page, "webhooks")) == 1);
    BM_CHECK (streq (json_string_value (json_object_get (
        json_array_get (json_object_get (page, "webhooks"), 0), "id")), "2"));
    json_decref (page);
    json_t *one = mk_store_webhook (store, 3);
    BM_CHECK (one && json_integer_value (json_object_get (one, "seq")) == 3);
    BM_CHECK (streq (json_string_value (json_object_get (one, "timestamp")), "1970-01-01T00:00:01.000Z"));
    json_decref (one);
    BM_CHECK (mk_store_webhook (store, 4) == NULL && mk_store_webhook (store, 0) == NULL);
    stats = mk_store_stats (store, 1000);
    BM_CHECK (json_integer_value (json_object_get (json_object_get (stats, "signatures"), "invalid")) == 1);
    json_decref (stats);

    //  Deliveries of a job, oldest first; bodies cut at max_body.
    json_t *list = mk_store_deliveries (store, "job1", 10);
    BM_CHECK (json_array_size (list) == 3);
    BM_CHECK (json_integer_value (json_object_get (json_array_get (list, 0), "status")) == 503);
    BM_CHECK (json_is_true (json_object_get (json_array_get (list, 0), "bodyTruncated")));
    json_decref (list);
    list = mk_store_deliveries (store, "job1", 1);
    BM_CHECK (json_array_size (list) == 1);
    BM_CHECK (json_integer_value (json_object_get (json_array_get (list, 0), "seq")) == 3);
    json_decref (list);
    list = mk_store_deliveries (store, "nope", 10);
    BM_CHECK (json_array_size (list) == 0);
    json_decref (list);

    //  The ring keeps 4; msg_1's state goes with its last record.
    s_add (store, "msg_2", "job2", 200, MK_SIG_UNCHECKED);
    s_add (store, "msg_3", "job3", 200, MK_SIG_UNCHECKED);
    BM_CHECK (mk_store_size (store) == 4);
    BM_CHECK (s_stat (store, "evicted") == 1);
    BM_CHECK (mk_store_seen (store, "msg_1", NULL) == 3);
    s_add (store, "msg_4", "job4", 200, MK_SIG_UNCHECKED);
    s_add (store, "msg_5", "job5", 200, MK_SIG_UNCHECKED);
    BM_CHECK (mk_store_seen (store, "msg_1", NULL) == 0);
    list = mk_store_deliveries (store, NULL, 100);
    BM_CHECK (json_array_size (list) == 4);
    json_decref (list);

    //  Keyless arrivals share one count; dropped ones count apart.
    s_add (store, NULL, NULL, 0, MK_SIG_UNCHECKED);
    BM_CHECK (mk_store_seen (store, NULL, NULL) == 1);
    BM_CHECK (s_stat (store, "dropped") == 1);

    //  Many arrivals stay bounded.
    for (int i = 0; i < 1000; i++) {
        char id [32];
        snprintf (id, sizeof id, "msg_x%d", i % 7);
        s_add (store, id, "jobx", i % 3? 200: 500, MK_SIG_UNCHECKED);
    }
    BM_CHECK (mk_store_size (store) == 4);
    BM_CHECK (s_stat (store, "received") == 1008);

    mk_store_reset (store);
    BM_CHECK (s_stat (store, "received") == 0 && mk_store_size (store) == 0);
    BM_CHECK (mk_store_seen (store, "msg_x1", NULL) == 0);
    list = mk_store_deliveries (store, NULL, 100);
    BM_CHECK (json_array_size (list) == 0);
    json_decref (list);
    s_add (store, "msg_1", "job1", 200, MK_SIG_UNCHECKED);
    BM_CHECK (mk_store_size (store) == 1);
    mk_store_destroy (&store);
    mk_store_destroy (&store);
    printf ("OK\n");
}

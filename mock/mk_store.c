/*  mk_store.c - a bounded record of deliveries and the counters of /stats.  */
#include "mk_store.h"
#include "wh_check.h"

#include <czmq.h>
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
    if (!self->ring || !self->keys) {
        mk_store_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->keys, s_key_destroy);
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
    s_evict (self, slot);

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

    bool success = status >= 200 && status < 300;
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
        }
    }
    else
        self->keyless++;

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
        if (state && state->live == 0)
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
    if (state)
        state->live++;      //  Released by s_evict through the same key
    self->ring [slot] = record;
    self->count++;
    return seq;
}

json_t *
mk_store_stats (mk_store_t *self)
{
    json_t *by_status = json_object ();
    for (int status = 0; status < 600; status++)
        if (self->by_status [status]) {
            char name [8];
            snprintf (name, sizeof name, "%d", status);
            json_object_set_new (by_status, name, json_integer ((json_int_t) self->by_status [status]));
        }
    return json_pack ("{s:I, s:o, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:I, s:I}",
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
}

static json_t *
s_record_json (const s_record_t *record)
{
    static const char *sig_names [] = { "unchecked", "valid", "invalid" };
    json_t *headers = json_loads (record->headers_json, 0, NULL);
    json_t *body = record->truncated? NULL: json_loadb (record->body, record->body_len, 0, NULL);
    if (!body)
        body = json_stringn_nocheck (record->body, record->body_len);
    if (!body)
        body = json_null ();    //  Not UTF-8: not representable
    return json_pack ("{s:I, s:I, s:s, s:o, s:o, s:i, s:s, s:o, s:o, s:b}",
        "seq", (json_int_t) record->seq,
        "time", (json_int_t) record->time_ms,
        "path", record->path,
        "webhookId", record->webhook_id? json_string (record->webhook_id): json_null (),
        "jobId", record->job_id? json_string (record->job_id): json_null (),
        "status", record->status,
        "signature", sig_names [record->signature],
        "headers", headers? headers: json_object (),
        "body", body,
        "bodyTruncated", record->truncated);
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

void
mk_store_reset (mk_store_t *self)
{
    s_clear (self);
    size_t max_records = self->max_records, max_body = self->max_body;
    s_record_t **ring = self->ring;
    zhashx_t *keys = self->keys;
    memset (self, 0, sizeof *self);
    self->max_records = max_records;
    self->max_body = max_body;
    self->ring = ring;
    self->keys = keys;
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
                             id, job, status, sig };
    return mk_store_add (store, &arrival, NULL);
}

static json_int_t
s_stat (mk_store_t *store, const char *key)
{
    json_t *stats = mk_store_stats (store);
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
    WH_CHECK (store);
    WH_CHECK (mk_store_seen (store, "msg_1", "job1") == 0);
    s_add (store, "msg_1", "job1", 503, MK_SIG_VALID);
    WH_CHECK (mk_store_seen (store, "msg_1", "job1") == 1);
    s_add (store, "msg_1", "job1", 200, MK_SIG_VALID);
    s_add (store, "msg_1", "job1", 200, MK_SIG_INVALID);     //  A duplicate
    WH_CHECK (mk_store_seen (store, "msg_1", NULL) == 3);
    WH_CHECK (s_stat (store, "received") == 3);
    WH_CHECK (s_stat (store, "repeats") == 2);
    WH_CHECK (s_stat (store, "duplicates") == 1);
    WH_CHECK (s_stat (store, "uniqueIds") == 1);
    json_t *stats = mk_store_stats (store);
    WH_CHECK (json_integer_value (json_object_get (json_object_get (stats, "byStatus"), "200")) == 2);
    WH_CHECK (json_integer_value (json_object_get (json_object_get (stats, "signatures"), "invalid")) == 1);
    json_decref (stats);

    //  Deliveries of a job, oldest first; bodies cut at max_body.
    json_t *list = mk_store_deliveries (store, "job1", 10);
    WH_CHECK (json_array_size (list) == 3);
    WH_CHECK (json_integer_value (json_object_get (json_array_get (list, 0), "status")) == 503);
    WH_CHECK (json_is_true (json_object_get (json_array_get (list, 0), "bodyTruncated")));
    json_decref (list);
    list = mk_store_deliveries (store, "job1", 1);
    WH_CHECK (json_array_size (list) == 1);
    WH_CHECK (json_integer_value (json_object_get (json_array_get (list, 0), "seq")) == 3);
    json_decref (list);
    list = mk_store_deliveries (store, "nope", 10);
    WH_CHECK (json_array_size (list) == 0);
    json_decref (list);

    //  The ring keeps 4; msg_1's state goes with its last record.
    s_add (store, "msg_2", "job2", 200, MK_SIG_UNCHECKED);
    s_add (store, "msg_3", "job3", 200, MK_SIG_UNCHECKED);
    WH_CHECK (mk_store_size (store) == 4);
    WH_CHECK (s_stat (store, "evicted") == 1);
    WH_CHECK (mk_store_seen (store, "msg_1", NULL) == 3);
    s_add (store, "msg_4", "job4", 200, MK_SIG_UNCHECKED);
    s_add (store, "msg_5", "job5", 200, MK_SIG_UNCHECKED);
    WH_CHECK (mk_store_seen (store, "msg_1", NULL) == 0);
    list = mk_store_deliveries (store, NULL, 100);
    WH_CHECK (json_array_size (list) == 4);
    json_decref (list);

    //  Keyless arrivals share one count; dropped ones count apart.
    s_add (store, NULL, NULL, 0, MK_SIG_UNCHECKED);
    WH_CHECK (mk_store_seen (store, NULL, NULL) == 1);
    WH_CHECK (s_stat (store, "dropped") == 1);

    //  Many arrivals stay bounded.
    for (int i = 0; i < 1000; i++) {
        char id [32];
        snprintf (id, sizeof id, "msg_x%d", i % 7);
        s_add (store, id, "jobx", i % 3? 200: 500, MK_SIG_UNCHECKED);
    }
    WH_CHECK (mk_store_size (store) == 4);
    WH_CHECK (s_stat (store, "received") == 1008);

    mk_store_reset (store);
    WH_CHECK (s_stat (store, "received") == 0 && mk_store_size (store) == 0);
    WH_CHECK (mk_store_seen (store, "msg_x1", NULL) == 0);
    list = mk_store_deliveries (store, NULL, 100);
    WH_CHECK (json_array_size (list) == 0);
    json_decref (list);
    s_add (store, "msg_1", "job1", 200, MK_SIG_UNCHECKED);
    WH_CHECK (mk_store_size (store) == 1);
    mk_store_destroy (&store);
    mk_store_destroy (&store);
    printf ("OK\n");
}

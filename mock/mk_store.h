/*  mk_store.h - what the mock webhook receiver has seen: a bounded record
    of deliveries and the counters of /stats.

    Keeps the last max_records deliveries (a ring: the oldest is dropped
    first) with at most max_body bytes of each body, so memory stays
    bounded however long the mock runs.  Per-delivery state (arrivals, 2xx
    answers), keyed by webhook-id or else jobId, lives as long as one of the
    delivery's records does: duplicates are detected within that window.

    Not thread-safe: the server holds one lock around every call.  */
#ifndef MK_STORE_H
#define MK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef enum {
    MK_SIG_UNCHECKED = 0,       //  No secret configured
    MK_SIG_VALID = 1,
    MK_SIG_INVALID = 2          //  Wrong, missing headers, or timestamp out of tolerance
} mk_sig_t;

//  One delivery as it arrived (all borrowed; the store copies).
typedef struct {
    int64_t time_ms;            //  Arrival, ms since the epoch
    const char *path;
    const char *headers_json;   //  The request headers as a JSON object text
    const char *body;
    size_t body_len;
    const char *webhook_id;     //  webhook-id header, or NULL
    const char *job_id;         //  jobId of the JSON body, or NULL
    int status;                 //  The answer; 0 when dropped without one
    mk_sig_t signature;
    int success;                //  The body's "success": 1 true, 0 false, -1 absent
    const char *bot_type;       //  The body's "botType", or NULL
} mk_arrival_t;

typedef struct _mk_store_t mk_store_t;

mk_store_t *mk_store_new (size_t max_records, size_t max_body);
void mk_store_destroy (mk_store_t **self_p);

//  How many arrivals of this delivery are on record (0 for a new one).  The
//  key is the webhook-id, else the jobId; with neither, one global count.
uint64_t mk_store_seen (mk_store_t *self, const char *webhook_id, const char *job_id);

//  Record an arrival and count it.  Returns its sequence number (1-based);
//  sets *duplicate (if not NULL) when it is a 2xx answer to a delivery
//  already answered 2xx.
uint64_t mk_store_add (mk_store_t *self, const mk_arrival_t *arrival, bool *duplicate);

//  /stats: {received, byStatus, duplicates, repeats, uniqueIds, dropped,
//  signatures: {valid, invalid, unchecked}, records, evicted, total,
//  successful, failed, botTypeStats: {TYPE: {total, successful, failed}},
//  lastHour, lastDay}.  successful/failed count the bodies whose "success"
//  is true/false, and the others by the answer (2xx successful, else
//  failed): they add up to total; lastHour/lastDay the arrivals in the hour/day before
//  now_ms.  New reference.
json_t *mk_store_stats (mk_store_t *self, int64_t now_ms);

//  The retained deliveries of a job (job_id NULL: all), oldest first, at
//  most limit of the most recent.  A JSON array (new reference).
json_t *mk_store_deliveries (mk_store_t *self, const char *job_id, size_t limit);

//  GET /webhooks: {webhooks: [...], total}: the retained deliveries newest
//  first, skipping offset, at most limit; total counts all retained.
//  Each is {id, timestamp, headers, body, ...the fields of deliveries}.
json_t *mk_store_webhooks (mk_store_t *self, size_t limit, size_t offset);

//  One retained delivery by its id (its sequence number), or NULL.
json_t *mk_store_webhook (mk_store_t *self, uint64_t id);

//  Forget every record and zero every counter.
void mk_store_reset (mk_store_t *self);

size_t mk_store_size (mk_store_t *self);

void mk_store_test (bool verbose);

#endif

/*  wh_engine.h - the webhook delivery engine: many HTTP deliveries at once
    from one zloop, through libcurl's multi-socket interface.

    libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION ->
    zloop pollers) and when to call it back (CURLMOPT_TIMERFUNCTION -> one
    zloop timer); we call curl_multi_socket_action when either fires.  No
    thread per delivery: the only threads are libcurl's DNS resolver
    threads for host names (IP literals resolve inline).

    A delivery lives in one of three places:
        waiting     in a min-heap keyed by its next attempt time (retries)
        ready       due, in a FIFO waiting for one of max_inflight slots
        in flight   an HTTP request in progress

    Each attempt is signed (Standard Webhooks) when a secret is set, runs
    with a total timeout, never follows redirects, and connects only to
    addresses the SSRF guard allows (checked in CURLOPT_OPENSOCKETFUNCTION,
    i.e. on the address actually connected to, after DNS).

    The engine reports to its owner through one callback, always from the
    loop's thread and never from inside a libcurl callback:
        PROGRESS    an attempt failed and another is scheduled (state retrying)
        DONE        delivered, or failed for good; the delivery is forgotten
        RELEASE     given back without a final outcome (drain, abort); forgotten
    The callback must not call back into the engine.

    Counters are atomics: wh_engine_stats may be called from any thread
    while the engine lives.  */
#ifndef WH_ENGINE_H
#define WH_ENGINE_H

#include "wh_config.h"
#include "bm_metrics.h"
#include "bm_proto.h"

#include <czmq.h>
#include <jansson.h>

//  The shared webhook states: wh_state_name gives bm_webhook_state_names.
typedef enum {
    WH_STATE_PENDING = BM_WEBHOOK_PENDING,
    WH_STATE_RETRYING = BM_WEBHOOK_RETRYING,
    WH_STATE_DELIVERED = BM_WEBHOOK_DELIVERED,
    WH_STATE_FAILED = BM_WEBHOOK_FAILED
} wh_state_t;

#define WH_LAST_ERROR_MAX 256

//  The delivery state reported to the broker (protocol.md section 6).
typedef struct {
    wh_state_t state;
    int64_t attempts;               //  Attempts made so far
    int last_status;                //  HTTP status of the last attempt, 0 if none
    char last_error [WH_LAST_ERROR_MAX];    //  "" if none
    int64_t next_attempt_at;        //  ms since the epoch, 0 if none
} wh_status_t;

typedef enum {
    WH_EVENT_PROGRESS = 0,
    WH_EVENT_DONE = 1,
    WH_EVENT_RELEASE = 2
} wh_event_t;

typedef void (wh_event_fn) (void *arg, wh_event_t event, const char *job_id,
                            const wh_status_t *status);

typedef struct _wh_engine_t wh_engine_t;

//  Create an engine on a loop.  config and metrics are borrowed and must
//  outlive it.  NULL with a reason in error (bad secret, libcurl failure).
wh_engine_t *wh_engine_new (zloop_t *loop, const wh_config_t *config, bm_metrics_t *metrics,
                            wh_event_fn *fn, void *arg, char *error, size_t error_size);

//  Stop every transfer (no events) and free everything.
void wh_engine_destroy (wh_engine_t **self_p);

//  Take a delivery (all strings copied).  prior is the state last reported
//  for it (after a manager crash), or NULL: attempts continue from
//  prior->attempts, and a future prior->next_attempt_at is waited for.
//  deadline_ms (ms since the epoch, 0: none) is when the broker gives up on
//  the delivery job: an attempt that could not end before it is not made.
//  Returns 0 if taken, 1 if a delivery with that job id is already held
//  (nothing done), -1 if invalid (reason in error; nothing held).
int wh_engine_add (wh_engine_t *self, const char *job_id, const char *url,
                   const char *webhook_id, const char *body, size_t body_len,
                   const wh_status_t *prior, int64_t deadline_ms,
                   char *error, size_t error_size);

//  Count a delivery that failed without being taken (a JOB refused as
//  invalid, answered DONE webhook_failed by the owner) among the failed:
//  /stats failed and webhook_deliveries_total{status="failed"}.
void wh_engine_count_failed (wh_engine_t *self);

//  Forget a delivery wherever it is (an in-flight request is aborted).  No
//  event.  Returns 0, or -1 if not held.
int wh_engine_cancel (wh_engine_t *self, const char *job_id);

//  Shutdown, step 1: RELEASE every delivery not in flight and every one
//  added later; in-flight attempts finish, and those that would be retried
//  are reported (PROGRESS) and RELEASEd instead.
void wh_engine_drain (wh_engine_t *self);

//  Shutdown, step 2: abort every in-flight request and RELEASE it.
void wh_engine_abort (wh_engine_t *self);

size_t wh_engine_held (wh_engine_t *self);
size_t wh_engine_inflight (wh_engine_t *self);

//  Bytes the deliveries held hold: the sum of their wh_engine_cost.
size_t wh_engine_held_bytes (wh_engine_t *self);

//  The bytes a delivery holds while it is held (what WEBHOOK_MAX_HELD_BYTES
//  counts): its record, lastError included, and its strings (body, URL as
//  given and as logs show it, job id, webhook-id, the name looked up).
//  Not counted: an attempt in flight (libcurl's handle and buffers, the
//  request headers, WEBHOOK_MAX_INFLIGHT of them at most) and the
//  allocator's and tables' overhead.
size_t wh_engine_cost (wh_engine_t *self, const char *job_id, const char *url,
                       const char *webhook_id, size_t body_len);

//  True if the delivery of job_id is held.
bool wh_engine_holds (wh_engine_t *self, const char *job_id);

//  The job ids of the deliveries held (waiting, ready or in flight), for
//  the READY of a new broker connection: fills ids (borrowed until the
//  engine changes) with at most max, returns how many.
int wh_engine_held_ids (wh_engine_t *self, const char **ids, int max);

//  Counters and gauges as a JSON object (new reference).  Any thread.
json_t *wh_engine_stats (wh_engine_t *self);

const char *wh_state_name (wh_state_t state);
//  Parse a state name; -1 if unknown.
int wh_state_parse (const char *name, size_t len);

#endif

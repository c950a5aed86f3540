/*  wh_engine_priv.h - the delivery engine's state, shared by the files that
    make it up: wh_engine.c (deliveries, the waiting heap and ready list,
    outcomes, the public interface), wh_attempt.c (one HTTP attempt: the
    easy handle and its libcurl callbacks) and wh_multi.c (libcurl's
    multi-socket interface on the zloop).  Everything here runs on the
    loop's thread, except the counters, which other threads read.  Not for
    use outside those files: everyone else sees only wh_engine.h.  */
#ifndef WH_ENGINE_PRIV_H
#define WH_ENGINE_PRIV_H

#include "wh_engine.h"
#include "wh_backoff.h"
#include "wh_heap.h"
#include "wh_signature.h"

#include <curl/curl.h>
#include <stdatomic.h>

typedef enum { WHERE_WAITING, WHERE_READY, WHERE_PARKED, WHERE_INFLIGHT } where_t;

//  A host name being looked up: the name libcurl resolves for a delivery
//  (the URL's host, or the host WEBHOOK_CONNECT_TO maps it to).  Lives
//  while it has lookups pending or deliveries parked.
typedef struct {
    char *name;                 //  Lower case
    size_t resolving;           //  Lookups of attempts in flight, not answered
    size_t abandoned;           //  Lookups abandoned, presumed still running
    zlistx_t *parked;           //  Due deliveries waiting for one of its
                                //  lookups to end (WEBHOOK_MAX_RESOLVING_PER_HOST)
} dns_host_t;

//  An abandoned lookup: when the resolver gives up on it (monotonic ms).
typedef struct {
    int64_t over;
    dns_host_t *host;
} abandoned_t;

//  Where answers are counted by status: 100-599 under their own, 0 for no
//  answer ("none"), this one for any other status ("other": libcurl takes
//  up to 999).
#define WH_RESPONSE_OTHER   600

//  What an attempt reads of an answer.  A delivery's outcome is the
//  status: the body is read only so that the connection can be kept, up
//  to WH_BODY_READ_MAX (then the transfer stops and the connection is
//  closed), and its first WH_BODY_KEEP bytes are kept for the error of a
//  non-2xx answer.  Headers past WH_HEADERS_MAX stop the transfer.
#define WH_BODY_KEEP        200
#define WH_BODY_READ_MAX    (64 * 1024)
#define WH_HEADERS_MAX      (64 * 1024)

//  One HTTP attempt in flight.  Allocated only while it runs, so a
//  delivery waiting for a retry costs little.
typedef struct {
    CURL *easy;                 //  libcurl's transfer
    struct curl_slist *headers; //  Request headers
    int64_t started_mono;       //  For the duration histogram
    int64_t retry_after_ms;     //  Retry-After of the last response, -1 if none
    bool opened;                //  A socket was opened (an address passed the guard)
    bool resolving;             //  A host name lookup started (a resolver thread)
    dns_host_t *host;           //  ... of this name
    bool resolved;              //  ... and answered (an address came to be opened)
    bool resolve_failed;        //  ... or failed (the thread ended): not abandoned
    bool dns_refused;           //  Not looked up: too many lookups pending,
    bool dns_refused_host;      //  ... of its name (else in all)
    size_t dns_refused_pending; //  ... how many
    bool dns_deferred;          //  Not looked up: wait for a lookup of the name to end
    char refused [200];         //  Why the SSRF guard refused an address, "" if none
    size_t header_bytes;        //  Response header bytes so far
    bool headers_too_large;     //  Over WH_HEADERS_MAX: stopped
    bool status_line;           //  An answer's status line arrived
    bool answered;              //  A final (non-1xx) answer's headers all arrived
    size_t body_read;           //  Body bytes read
    bool body_cut;              //  Stopped reading the body (too long)
    size_t body_kept;           //  Bytes in body_head
    char body_head [WH_BODY_KEEP];  //  The body's first bytes
    char errbuf [CURL_ERROR_SIZE];  //  libcurl's error text
} attempt_t;

//  One delivery.
typedef struct {
    wh_heap_node_t node;        //  In the waiting heap (key: due, monotonic ms)
    struct _wh_engine_t *engine;    //  Back pointer for libcurl callbacks
    char *job_id;               //  The delivery job ("<parent>.whN")
    char *url;                  //  Target
    char *url_shown;            //  Target as logs show it: secrets masked (wh_url)
    char *webhook_id;           //  webhook-id header, same on every attempt
    char *body;                 //  JSON text to POST
    size_t body_len;
    bool ssrf_exempt;           //  Host in WEBHOOK_ALLOWED_HOSTS, or private allowed
    char *lookup_host;          //  The name looked up to connect, lower case;
                                //  NULL: none (an IP address, localhost)
    size_t cost;                //  Bytes it holds (wh_engine_cost)
    bool fresh_connect;         //  The next attempt opens a new connection (the
                                //  last failed on a reused one)
    int64_t deadline_ms;        //  Broker's deadline (epoch ms), 0: none
    int64_t received_mono;      //  When we took it
    wh_status_t status;         //  What we report
    where_t where;              //  Waiting, ready or in flight
    void *ready_handle;         //  Handle in the ready list, or its host's parked list
    attempt_t *attempt;         //  The attempt in flight, or NULL
} delivery_t;

//  Counters read by other threads.
typedef struct {
    atomic_uint_fast64_t delivered;     //  Final: delivered
    atomic_uint_fast64_t failed;        //  Final: failed
    atomic_uint_fast64_t attempts;      //  HTTP attempts finished
    atomic_uint_fast64_t retries;       //  Retries scheduled
    atomic_uint_fast64_t released;      //  Given back to the broker
    atomic_uint_fast64_t cancelled;     //  Cancelled by the broker
    atomic_uint_fast64_t refused;       //  Attempts the SSRF guard refused
    atomic_uint_fast64_t received;      //  Deliveries taken
    atomic_uint_fast64_t responses [WH_RESPONSE_OTHER + 1];     //  By HTTP status;
                                        //  [0]: no answer, [WH_RESPONSE_OTHER]:
                                        //  a status outside 100-599
    atomic_int_fast64_t held;           //  Gauges
    atomic_int_fast64_t waiting;
    atomic_int_fast64_t ready;
    atomic_int_fast64_t inflight;
    atomic_int_fast64_t dns_pending;    //  Host name lookups not answered
    atomic_int_fast64_t held_bytes;     //  Bytes the deliveries held hold (wh_engine_cost)
} counters_t;

struct _wh_engine_t {
    zloop_t *loop;              //  Our reactor (borrowed)
    const wh_config_t *config;  //  Borrowed
    wh_event_fn *event_fn;      //  Owner's callback
    void *event_arg;
    CURLM *multi;               //  libcurl multi handle
    wh_backoff_t *backoff;      //  Retry delays
    wh_signer_t *signer;        //  NULL when unsigned
    zhashx_t *deliveries;       //  job id -> delivery_t (we free them)
    wh_heap_t *waiting;         //  Deliveries waiting for a retry
    zlistx_t *ready;            //  Due deliveries waiting for a slot, FIFO
    size_t inflight;            //  Attempts in flight
    size_t held_bytes;          //  Bytes the deliveries held hold (wh_engine_cost)
    int curl_timer;             //  zloop timer for libcurl, -1 if none
    int64_t curl_armed;         //  Monotonic ms curl_timer fires at
    int64_t curl_due;           //  Monotonic ms libcurl wants its timeout call, -1: never
    int wait_timer;             //  zloop timer for the heap's head, -1 if none
    int64_t wait_timer_due;     //  Monotonic ms it fires at
    bool draining;              //  Shutting down: release instead of retrying
    //  Host name lookups: libcurl's resolver thread of an attempt that ends
    //  before its lookup answered is left to finish on its own
    //  (CURLOPT_QUICK_EXIT); it lives until the resolver gives up.
    size_t resolving;           //  Lookups of attempts in flight, not answered
    abandoned_t *abandoned;     //  Ring: when each abandoned lookup is presumed over
    size_t abandoned_first, abandoned_count, abandoned_max;
    zhashx_t *dns_hosts;        //  name -> dns_host_t, those with lookups pending
    size_t parked;              //  Deliveries parked on a host
    bool unparked;              //  Some moved to the ready list: pump
    int64_t lookup_life_ms;     //  How long a lookup may take (resolv.conf)
    counters_t counters;
    //  Metrics
    bm_metric_t *m_responses;           //  webhook_responses_total{code}
    bm_series_t *m_response_series [WH_RESPONSE_OTHER + 1];
    bm_series_t *m_delivered, *m_failed;    //  webhook_deliveries_total{status}
    bm_series_t *m_attempt_success, *m_attempt_retryable, *m_attempt_permanent;
    bm_series_t *m_duration;            //  webhook_delivery_duration_seconds
    bm_series_t *m_time_to_deliver;     //  webhook_delivery_latency_seconds
    bm_series_t *m_retries, *m_released, *m_cancelled, *m_refused;
    bm_series_t *m_held, *m_waiting, *m_ready, *m_inflight;
    bm_series_t *m_dns_pending;         //  webhook_dns_lookups_pending
};

//  Collect the transfers libcurl has finished and decide each delivery's
//  fate (retry, DONE, RELEASE).  Called after every curl_multi_socket_action.
void wh_engine_check_done (wh_engine_t *self);

//  Host name lookups not answered yet: those of attempts in flight and the
//  abandoned ones presumed still running (forgets those presumed over).
size_t wh_engine_dns_pending (wh_engine_t *self);

//  The record of a name looked up, made on first use; NULL if out of memory.
dns_host_t *wh_engine_dns_host (wh_engine_t *self, const char *name);

//  A lookup of host ended: answered, failed, or abandoned (its attempt
//  ended first: then it stays pending until the resolver gives up).  The
//  deliveries parked on host go back to the front of the ready list.
void wh_engine_dns_ended (wh_engine_t *self, dns_host_t *host, bool abandoned);

#endif

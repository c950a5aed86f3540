/*  gw_server_priv.h - the gateway server's state, shared by the files that
    make up the server: gw_server.c (civetweb, routing, metrics, lifecycle),
    gw_request.c (reading a request, answering it, asking the broker) and
    gw_routes.c (the route handlers).  Not for use outside them: everyone
    else sees only gw_server.h.  */
#ifndef GW_SERVER_PRIV_H
#define GW_SERVER_PRIV_H

#include "gw_server.h"
#include "bm_auth.h"
#include "gw_history.h"
#include "gw_invoke.h"
#include "gw_link.h"
#include "gw_ratelimit.h"

#include "bm_config.h"
#include "bm_metrics.h"

#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>

//  Retry-After (seconds) for each kind of 503: how soon trying again makes
//  sense.  The broker restarts in about a second; Redis outages last longer.
#define GW_RETRY_BROKER_DOWN    1
#define GW_RETRY_QUEUE_FULL     1
#define GW_RETRY_STORE_DOWN     2
#define GW_RETRY_SHUTTING_DOWN  5
//  Room for the list of bot types in an unknown_bot_type message.
#define GW_TYPES_LEN            400
//  Most log lines a second about refused requests (the rest are counted)
#define GW_REFUSED_LOG_PER_SEC  10

//  The status codes we answer with (gw_server.c's s_codes) and the reasons
//  an /invoke is refused (its s_reasons): sizes of the per-series caches.
#define GW_NCODES               17
#define GW_NREASONS             36

//  --------------------------------------------------------------------------
//  Routes

typedef enum {
    R_HEALTH, R_READY, R_METRICS, R_INVOKE, R_INVOKE_BATCH, R_FLOWS, R_JOB, R_JOB_CANCEL, R_JOB_RETRY,
    R_JOB_REDELIVER, R_JOB_DELETE, R_JOB_PROMOTE, R_JOB_LOGS, R_QUEUE_PAUSE, R_QUEUE_RESUME, R_QUEUE_DRAIN,
    R_QUEUE_CLEAN, R_QUEUE_RETRY, R_SCHEDULE_ADD, R_SCHEDULES, R_SCHEDULE_DELETE, R_JOBS, R_STATS, R_ADMIN, R_HISTORY, R_INDEX,
    R_EVENTS, R_OTHER, R_COUNT
} gw_route_t;

//  --------------------------------------------------------------------------
//  Server and per-thread state

struct _gw_server_t {
    gw_config_t config;                 //  Settings (strings borrowed from env/argv)
    gw_invoke_limits_t limits;          //  What a job's fields are checked against
    struct mg_context *ctx;             //  civetweb
    int port;                           //  Port we listen on
    bm_auth_t *auth;                    //  API keys (maybe none)
    bm_auth_t *admin;                   //  ADMIN_API_KEYS (maybe none)
    gw_ratelimit_t *limiter;            //  Token buckets, NULL when off
    gw_link_t *link;                    //  To the broker, shared by all threads
    bool history_on;                    //  REDIS_URL given
    bm_redis_url_t redis;               //  Parsed REDIS_URL
    gw_history_watch_t *history_watch;  //  +switch-master under Sentinel, or NULL

    //  Metrics (series handles are resolved once and cached)
    bm_metrics_t *metrics;
    bm_metric_t *m_requests;            //  gateway_http_requests_total{route,code}
    bm_metric_t *m_duration;            //  gateway_http_request_duration_seconds{route}
    bm_metric_t *m_rejected;            //  gateway_invoke_rejected_total{reason}
    _Atomic (bm_series_t *) requests [R_COUNT][GW_NCODES];
    bm_series_t *duration [R_COUNT];
    bm_series_t *rejected [GW_NREASONS];
    bm_series_t *accepted;              //  gateway_invoke_accepted_total
    bm_series_t *duplicates;            //  gateway_invoke_duplicates_total
    bm_series_t *broker_timeouts;       //  gateway_broker_errors_total{kind="timeout"}
    bm_series_t *broker_unavailable;    //  ...{kind="unavailable"}
    bm_series_t *broker_bad_replies;    //  ...{kind="bad_reply"}
    bm_series_t *rate_limited;          //  gateway_rate_limited_total
    bm_series_t *auth_failures;         //  gateway_auth_failures_total
    bm_series_t *in_flight;             //  gateway_requests_in_flight
    bm_series_t *history_errors;        //  gateway_history_errors_total
    bm_series_t *threads;               //  gateway_threads
    bm_series_t *waiting;               //  gateway_waiters
    bm_series_t *event_streams;         //  gateway_event_streams

    //  Graceful stop: civetweb's mg_stop makes every later mg_write fail
    //  (its writes stop with its stop flag), so requests in flight are
    //  waited for before it is called.
    atomic_bool draining;               //  SIGTERM seen: refuse new work
    atomic_int active;                  //  Requests inside s_handler now
    bool drained;                       //  gw_server_drain saw none left in flight

    //  Requests waiting for a job to finish (gw_wait.c): at most
    //  max_waiters at once; each sleeps on wait_cond between its polls,
    //  and the drain broadcasts it.
    atomic_int waiters;
    int max_waiters;                    //  GATEWAY_MAX_WAITERS, resolved
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;           //  On CLOCK_MONOTONIC

    //  GET /events streams (gw_events.h): at most max_event_streams.
    struct _gw_events_t *events;
    int max_event_streams;              //  GATEWAY_MAX_EVENT_STREAMS, resolved

    //  Refused requests' log lines: at most GW_REFUSED_LOG_PER_SEC a second;
    //  past that they are counted, and the count is logged in one line
    //  ("suppressed K") when the next second's first line is written or the
    //  gateway stops.
    pthread_mutex_t refused_lock;
    int64_t refused_second;             //  Monotonic second of the window
    int refused_lines;                  //  Lines written in it
    uint64_t refused_suppressed;        //  Lines not written since the last summary

    //  Bot types the broker knows, for unknown_bot_type's message
    pthread_mutex_t types_lock;
    char bot_types [GW_TYPES_LEN];             //  "java, node, python"
    int64_t bot_types_ms;               //  When read (mono), 0 = never
};

//  What each civetweb worker thread owns.  Made in init_thread, freed in
//  exit_thread; only that thread ever touches it.
typedef struct {
    gw_server_t *server;                //  Borrowed
    gw_history_t *history;              //  Our Redis reader, lazily made
} gw_thread_t;

//  Count a job refused on POST /invoke or /invoke/batch under reason (an
//  error code; one not in the list counts as "other").
void gw_server_count_rejected (gw_server_t *self, const char *reason);

#endif

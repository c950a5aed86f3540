/*  wh_http.h - botmesh-webhook's HTTP API (civetweb, its own threads).

        GET  /health                      {"status": "ok", "broker": {"connected": bool}}
        GET  /ready                       200 while the broker answers, else 503 broker_unavailable
        GET  /stats                       delivered, failed, retrying, inFlight, ...
        GET  /metrics                     Prometheus text
        POST /deliveries/{jobId}/retry    redeliver a job's webhook (REDELIVER)

    With API_KEYS set, /stats (and /metrics under METRICS_REQUIRE_KEY) need
    a key, /retry a key of ADMIN_API_KEYS (any key when that is unset), as
    the gateway checks them (bm_auth); /retry refuses browser pages of
    origins CORS_ORIGINS does not name and never answers with
    "Access-Control-Allow-Origin: *".

    The handlers never touch the loop's sockets: they read the engine's and
    the link's atomics, and /retry speaks to the broker through a
    synchronous client of its own, one per civetweb thread.  */
#ifndef WH_HTTP_H
#define WH_HTTP_H

#include "wh_config.h"
#include "wh_engine.h"
#include "bm_worker_link.h"
#include "bm_metrics.h"

//  The gauge of the credit the manager announces (0 while it takes no
//  more: shutting down, or WEBHOOK_MAX_HELD_BYTES reached); /stats credit
//  reads it.
#define WH_CREDIT_METRIC    "webhook_credit"
#define WH_CREDIT_HELP      "Deliveries this manager takes at once now: WEBHOOK_CONCURRENCY, " \
                            "0 while draining or past WEBHOOK_MAX_HELD_BYTES"

typedef struct _wh_http_t wh_http_t;

//  Bind the port; no request is served before wh_http_serve.  Everything
//  borrowed must outlive the server.  NULL with a reason in error if the
//  port cannot be bound.
wh_http_t *wh_http_new (const wh_config_t *config, bm_metrics_t *metrics,
                        wh_engine_t *engine, char *error, size_t error_size);
//  Serve requests, with the link to the broker (borrowed) they read.
void wh_http_serve (wh_http_t *self, bm_worker_link_t *link);
void wh_http_destroy (wh_http_t **self_p);      //  ~2 s (mg_stop)
int wh_http_port (wh_http_t *self);

#endif

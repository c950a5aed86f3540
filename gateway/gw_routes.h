/*  gw_routes.h - the gateway's route handlers, one per endpoint (see
    gateway/README.md for each one's contract).  gw_server.c routes,
    authenticates and rate-limits a request, then calls one of these; each
    answers the request (gw_request.h) before it returns.  */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include "gw_request.h"

//  GET /health: always 200 while the process serves.
void gw_routes_health (gw_request_t *r);
//  GET /ready: 200 when the broker answers PING and reaches Redis, else 503.
void gw_routes_ready (gw_request_t *r);
//  GET /metrics: the gateway's own series, Prometheus text.
void gw_routes_metrics (gw_request_t *r);
//  POST /invoke: validate, SUBMIT, 202 with the job id.
void gw_routes_invoke (gw_request_t *r);
//  GET /job/{id} (BM_STATUS), POST /job/{id}/cancel (BM_CANCEL): the job record.
void gw_routes_job (gw_request_t *r, int command);
//  POST /job/{id}/retry (BM_RETRY) and /redeliver (BM_REDELIVER): 202.
void gw_routes_job_action (gw_request_t *r, int command);
//  GET /jobs?state=&botType=&limit=: LIST.
void gw_routes_jobs (gw_request_t *r);
//  GET /stats: STATS.
void gw_routes_stats (gw_request_t *r);
//  GET /admin/queues...: the dashboard's files.
void gw_routes_admin (gw_request_t *r);
//  GET /api/history?limit=: metric history from Redis.
void gw_routes_history (gw_request_t *r);

#endif

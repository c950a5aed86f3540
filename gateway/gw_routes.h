/*  gw_routes.h - the gateway's route handlers, one per endpoint (see
    gateway/README.md for each one's contract).  gw_server.c routes,
    authenticates and rate-limits a request, then calls one of these; each
    answers the request (gw_request.h) before it returns.  */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include "gw_request.h"

//  The end of most handlers: the reply the route expects (`want`) is
//  answered with `status` and its JSON: `make` (body), or else `fixed`
//  (taken).  A REJECTED (when `rejections`) gets its HTTP error; anything
//  else is a bad reply (502).  No reply: gw_request_broker has answered
//  already.  Takes the reply.
typedef json_t *(gw_routes_make_fn) (const msgpack_object *body);
void gw_routes_answer (gw_request_t *r, bm_msg_t *reply, int want, int status,
                       gw_routes_make_fn *make, json_t *fixed, bool rejections);

//  REPLY {job} -> the job record as JSON (gw_record_job).
json_t *gw_routes_make_job (const msgpack_object *body);

//  GET /health: always 200 while the process serves.
void gw_routes_health (gw_request_t *r);
//  GET /ready: 200 when the broker answers PING and reaches Redis, else 503.
void gw_routes_ready (gw_request_t *r);
//  GET /metrics: the gateway's own series, Prometheus text.
void gw_routes_metrics (gw_request_t *r);
//  POST /invoke: validate, SUBMIT, 202 with the job id.
void gw_routes_invoke (gw_request_t *r);
//  The status of an accepted job: the state the broker gave (a
//  duplicate's now); else a new job's, "delayed" or "queued"; a duplicate
//  whose state the broker did not give is "unknown", never "queued" (its
//  job may no longer exist).
const char *gw_routes_accepted_status (const char *state, bool delayed, bool duplicate);
//  The 202 body of an accepted job into buf, byte for byte as jansson's
//  JSON_COMPACT writes {jobId, status, botType, priority,
//  estimatedPosition (null when !has_position)[, duplicate: true]}.
//  Returns its length, or -1 when it does not fit or a string holds a byte
//  jansson would escape: the caller builds the value with jansson then.
int gw_routes_accepted_text (char *buf, size_t size, const char *job_id, const char *status,
                             const char *bot_type, int64_t priority, bool has_position,
                             int64_t position, bool duplicate);
//  The "warning" of an accepted job's answer: the request's own warning
//  (NULL or "": none) and, when the broker said unserved, that no worker
//  serves bot_type now, written into buf (GW_ROUTES_WARNING_MAX bytes hold
//  both).  Returns the text (warning or buf), or NULL when there is none.
#define GW_ROUTES_WARNING_MAX 640
const char *gw_routes_accepted_warning (char *buf, size_t size, const char *warning, bool unserved,
                                        const char *bot_type);
//  The same as a JSON value (caller decrefs), for answers that carry more.
json_t *gw_routes_accepted_value (const char *job_id, const char *status, const char *bot_type,
                                  int64_t priority, bool has_position, int64_t position,
                                  bool duplicate);
//  POST /invoke/batch (gw_routes_batch.c): an array of /invoke bodies,
//  SUBMIT_MANY, 207 with each item's outcome.
void gw_routes_invoke_batch (gw_request_t *r);

//  POST /flows (gw_routes_flows.c): a tree of /invoke bodies ("children"),
//  each node depending on its children; 202 with the tree's job ids.
void gw_routes_flows (gw_request_t *r);
//  GET /job/{id} (BM_STATUS), POST /job/{id}/cancel (BM_CANCEL): the job record.
void gw_routes_job (gw_request_t *r, int command);
//  GET /job/{id}/logs: the job's log line by line, as BullMQ's
//  getJobLogs: {"jobId", "logs": [...], "count"}.
void gw_routes_job_logs (gw_request_t *r);
//  POST /job/{id}/retry (BM_RETRY) and /redeliver (BM_REDELIVER): 202.
void gw_routes_job_action (gw_request_t *r, int command);
//  POST /queues/{botType}/pause|resume|drain|clean (gw_control.c): QUEUE,
//  200 {"botType", "paused", "removed"}.
void gw_routes_queue (gw_request_t *r, const char *action);
//  DELETE /job/{id} (BM_REMOVE): 200 {"jobId", "removed"}; POST
//  /job/{id}/promote (BM_PROMOTE): 200 with the job record.
void gw_routes_job_control (gw_request_t *r, int command);
//  POST /schedules (200 {schedule}), GET /schedules ({"schedules": [...]}),
//  DELETE /schedules/{key} ({"key", "removed"}): SCHEDULE (gw_control.c).
void gw_routes_schedules (gw_request_t *r);
//  GET /jobs?state=&botType=&limit=: LIST.
void gw_routes_jobs (gw_request_t *r);
//  GET /stats: STATS.
void gw_routes_stats (gw_request_t *r);
//  GET /admin/queues...: the dashboard's files.
void gw_routes_admin (gw_request_t *r);
//  GET /api/history?limit=: metric history from Redis.
void gw_routes_history (gw_request_t *r);
//  GET /events: live job events, Server-Sent Events (gw_routes_events.c)
void gw_routes_events (gw_request_t *r);

#endif

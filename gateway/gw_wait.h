/*  gw_wait.h - long-polling a job: GET /job/{id}?wait=MS and
    POST /invoke?wait=MS answer once the job has finished (completed,
    failed or cancelled), or when MS milliseconds have passed, whichever
    comes first.

    A waiter holds its civetweb thread while it waits, so at most
    GATEWAY_MAX_WAITERS requests wait at once (503 too_many_waiters past
    that): the other threads keep serving.  A waiter asks the broker for
    the job's STATUS over the shared link, at once and then every 10 ms,
    20, 40, 80, and 100 ms from then on, sleeping on a condition variable
    between polls; gw_wait_wake_all (the drain at SIGTERM) wakes every
    waiter, which then answers with the job's record as it is now.  */
#ifndef GW_WAIT_H
#define GW_WAIT_H

#include "gw_request.h"

//  The longest wait a request may ask for, in ms.
#define GW_WAIT_MAX_MS          60000

//  The wait query parameter into *wait_ms (0 when absent: no wait).
//  0, or -1 once answered 400 invalid_wait (not an integer 0..60000, or
//  given twice).
int gw_wait_param (gw_request_t *r, int64_t *wait_ms);

//  Take a waiter's place: true, or false once answered 503
//  too_many_waiters (GATEWAY_MAX_WAITERS wait already).  Each true is
//  given back with gw_wait_leave.
bool gw_wait_enter (gw_request_t *r);
void gw_wait_leave (gw_server_t *server);

//  Poll the job's STATUS until the job has finished, deadline (bm_mono_ms)
//  has passed or the gateway drains.  Returns the last answer (REPLY, or
//  a REJECTED such as not_found, returned at once; caller destroys), with
//  *finished telling whether the job has ended; NULL when the broker
//  could not be asked (answered 503/504 when `answer`).  With or_key, an
//  id the broker knows no job by is looked up as an idempotencyKey
//  (gw_request_status), and the job found polled by its own id.
//  A job known to exist (`known`: the caller submitted it), or found by
//  an earlier poll, and then not found was removed while the request
//  waited: answered 404 not_found saying so, NULL returned and *removed
//  set.
bm_msg_t *gw_wait_status (gw_request_t *r, const char *job_id, bool or_key, int64_t deadline,
                          bool answer, bool known,
                          bool *finished, bool *removed);

//  Has this job record's state ended (completed, failed, cancelled)?
//  Its state into state[size] ("" when the record has none).
bool gw_wait_finished (const msgpack_object *job, char *state, size_t size);

//  Wake every waiter (the gateway is draining: they answer now).
void gw_wait_wake_all (gw_server_t *server);

#endif

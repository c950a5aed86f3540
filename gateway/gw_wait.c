/*  gw_wait.c - long-polling a job (GET /job/{id}?wait=MS, POST
    /invoke?wait=MS): see gw_wait.h.

    Why polling, not the broker's RESULT push: a RESULT comes only for a
    job submitted with notify on the socket that submitted it, by the
    broker process that accepted it (none after a broker restart, none for
    a duplicate, none for GET /job of a job submitted elsewhere), so a
    waiter must poll STATUS in any case; polling alone is one mechanism
    for both routes.  A STATUS of a job the broker holds is a lookup in
    its memory, and the link batches the polls of every waiter.  */
#include "gw_wait.h"

#include "bm_config.h"
#include "bm_log.h"

#include <errno.h>
#include <inttypes.h>
#include <time.h>

//  The first poll's pause, doubled each poll up to the last (ms).
#define GW_WAIT_POLL_FIRST_MS   10
#define GW_WAIT_POLL_MAX_MS     100

int
gw_wait_param (gw_request_t *r, int64_t *wait_ms)
{
    char text [16];
    *wait_ms = 0;
    int has = gw_request_query (r, "wait", text, sizeof text, "invalid_wait");
    if (has == -2) {
        r->reason = "invalid_wait";
        return -1;
    }
    if (has < 0 || (has > 0 && bm_parse_int (text, 0, GW_WAIT_MAX_MS, wait_ms))) {
        char message [96];
        snprintf (message, sizeof message,
                  "wait must be an integer from 0 to %d (milliseconds)", GW_WAIT_MAX_MS);
        r->reason = "invalid_wait";
        gw_request_error (r, 400, "invalid_wait", message, NULL);
        return -1;
    }
    return 0;
}

bool
gw_wait_enter (gw_request_t *r)
{
    gw_server_t *server = r->server;
    if (atomic_fetch_add (&server->waiters, 1) >= server->max_waiters) {
        atomic_fetch_sub (&server->waiters, 1);
        char message [160];
        snprintf (message, sizeof message,
                  "%d requests are waiting for jobs already (GATEWAY_MAX_WAITERS); retry, "
                  "or poll GET /job/{jobId} without wait", server->max_waiters);
        r->reason = "too_many_waiters";
        gw_request_error_retry (r, 503, "too_many_waiters", message, 1);
        return false;
    }
    bm_series_inc (server->waiting);
    return true;
}

void
gw_wait_leave (gw_server_t *server)
{
    bm_series_dec (server->waiting);
    atomic_fetch_sub (&server->waiters, 1);
}

bool
gw_wait_finished (const msgpack_object *job, char *state, size_t size)
{
    state [0] = 0;
    if (!job || !bm_obj_strcpy (job, "state", state, size))
        return false;
    return streq (state, "completed") || streq (state, "failed") || streq (state, "cancelled");
}

//  Sleep until mono ms `until`, or until the gateway drains.
static void
s_pause (gw_server_t *server, int64_t until)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    int64_t ms = until - bm_mono_ms ();
    if (ms <= 0)
        return;
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock (&server->wait_lock);
    //  The drain sets the flag, then broadcasts holding the lock: a waiter
    //  that saw the flag clear here is asleep before the broadcast.
    while (!atomic_load (&server->draining)
    &&  pthread_cond_timedwait (&server->wait_cond, &server->wait_lock, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock (&server->wait_lock);
}

//  Is this a REJECTED not_found?
static bool
s_not_found (bm_msg_t *reply)
{
    char code [32] = "";
    return bm_msg_command (reply) == BM_REJECTED
        && bm_obj_strcpy (bm_msg_body (reply), "code", code, sizeof code)
        && streq (code, "not_found");
}

bm_msg_t *
gw_wait_status (gw_request_t *r, const char *job_id, bool or_key, int64_t deadline,
                bool answer, bool known, bool *finished, bool *removed)
{
    gw_server_t *server = r->server;
    int64_t pause = GW_WAIT_POLL_FIRST_MS;
    char own_id [BM_MAX_ID_LEN + 1];
    *finished = false;
    *removed = false;
    while (true) {
        bm_msg_t *reply = gw_request_status (r, job_id, or_key, answer);
        //  A job that existed and is not found now was removed while this
        //  request waited (DELETE /job/{id}, a drain of its queue): the
        //  404 says so, rather than the "no job with this id" of an id
        //  that never was one.
        if (reply && known && s_not_found (reply)) {
            bm_msg_destroy (&reply);
            bm_info (job_id, "wait ended: the job was removed while a request waited for it");
            char message [BM_MAX_ID_LEN + 160];
            snprintf (message, sizeof message,
                      "job %s was removed while this request waited for it "
                      "(DELETE /job/{id}, or a drain of its queue)", job_id);
            r->reason = "other";    //  Not a refusal: the job was taken, then removed
            gw_request_error (r, 404, "not_found", message, NULL);
            *removed = true;
            return NULL;
        }
        if (!reply || bm_msg_command (reply) != BM_REPLY)
            return reply;
        known = true;
        //  Found (by id or by key): polled by its own id from now on
        if (or_key && bm_obj_strcpy (bm_obj_get (bm_msg_body (reply), "job"), "jobId",
                                     own_id, sizeof own_id))
            job_id = own_id;
        or_key = false;
        char state [BM_MAX_STATE_LEN + 1];
        *finished = gw_wait_finished (bm_obj_get (bm_msg_body (reply), "job"), state, sizeof state);
        int64_t now = bm_mono_ms ();
        if (*finished || now >= deadline || atomic_load (&server->draining)) {
            if (!*finished && atomic_load (&server->draining)) {
                bm_info (job_id, "wait ended by the shutdown; answering with the job %s", state);
                r->must_close = true;
            }
            return reply;
        }
        bm_msg_destroy (&reply);
        s_pause (server, now + pause < deadline ? now + pause : deadline);
        pause = pause * 2 > GW_WAIT_POLL_MAX_MS ? GW_WAIT_POLL_MAX_MS : pause * 2;
    }
}

void
gw_wait_wake_all (gw_server_t *server)
{
    pthread_mutex_lock (&server->wait_lock);
    pthread_cond_broadcast (&server->wait_cond);
    pthread_mutex_unlock (&server->wait_lock);
}

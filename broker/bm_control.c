/*  bm_control.c - a bot type's queue under control (pause, resume, drain,
    clean) and job actions (remove, promote): the QUEUE, REMOVE and PROMOTE
    client commands (protocol.md section 4).

    A paused type keeps its queued and delayed jobs and lets its running
    ones finish, but nothing of it is dispatched (bm_dispatch checks
    service->paused).  Paused types are the Redis set {bm}:paused, read
    back when the store connects, before the queues are rebuilt: a pause
    survives a restart.  Removing a job deletes it everywhere (memory, its
    queue or the due-time heap, its Redis record, the live set); a running
    job cannot be removed (cancel it first).  */
#include "bm_broker_internal.h"

//  Delete a job that is not running: out of every structure, its record out
//  of Redis, freed.
static void
s_remove (bm_broker_t *self, bm_job_t *job)
{
    bm_jobstore_forget (self, job->id);
    bm_debug (job->id, "removed");
    bm_service_t *service = job->service;
    bm_job_delete (self, job);
    bm_series_set (service->m_queue, (double) bm_heap_size (service->queue));
}

static void
s_set_paused (bm_broker_t *self, bm_service_t *service, bool paused)
{
    if (service->paused == paused)
        return;
    service->paused = paused;
    bm_info (NULL, "bot type %s %s", service->name, paused ? "paused" : "resumed");
    if (self->store) {
        bm_cmd_t cmd;
        bm_cmd_start (self, &cmd, paused ? "SADD" : "SREM", "paused", NULL);
        bm_cmd_arg_str (&cmd, service->name);
        bm_jobstore_issue (self, &cmd, true, NULL, NULL);
    }
    if (!paused)
        bm_dispatch (self, service);
}

//  Retention by count: a type with KEEP_COMPLETED_<TYPE> (KEEP_FAILED_<TYPE>)
//  keeps the records of its newest N completed (failed) jobs; an older one
//  is removed as the next one ends, from memory and Redis.  The count runs
//  over the jobs that ended since the broker started; older records leave
//  Redis at their TTL.  The job has just ended (its terminal write is
//  confirmed).
void
bm_control_retain (bm_broker_t *self, bm_job_t *job)
{
    bm_service_t *service = job->service;
    int which = job->state == JOB_COMPLETED ? 0 : job->state == JOB_FAILED ? 1 : -1;
    if (which < 0 || service->keep [which] <= 0)
        return;
    if (!service->kept [which]) {
        service->kept [which] = zlistx_new ();
        zlistx_set_destructor (service->kept [which], (zlistx_destructor_fn *) zstr_free);
    }
    zlistx_t *kept = service->kept [which];
    zlistx_add_end (kept, strdup (job->id));
    while ((int64_t) zlistx_size (kept) > service->keep [which]) {
        char *id = (char *) zlistx_first (kept);
        bm_job_t *old = (bm_job_t *) zhashx_lookup (self->jobs, id);
        if (old && bm_job_terminal (old) && !old->confirming)
            s_remove (self, old);
        else
        if (!old)
            bm_jobstore_forget (self, id);
        zlistx_delete (kept, zlistx_cursor (kept));
    }
}

//  The paused types as Redis has them (SMEMBERS reply), on connect.
void
bm_control_on_paused (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *name = reply->element [i];
        if (name->type != REDIS_REPLY_STRING || !bm_valid_bot_type (name->str, name->len))
            continue;
        bm_service_t *service = bm_service_require (self, name->str);
        if (!service->paused)
            bm_info (NULL, "bot type %s is paused (since before this start)", service->name);
        service->paused = true;
    }
}

//  Drain: remove the type's queued jobs (not the delayed or running ones).
static int64_t
s_drain (bm_broker_t *self, bm_service_t *service)
{
    int64_t removed = 0;
    bm_job_t *job;
    while ((job = (bm_job_t *) bm_heap_peek (service->queue))) {
        if (!job->durable) {
            //  Its SUBMIT is not confirmed yet: it is not the client's yet.
            break;
        }
        s_remove (self, job);
        removed++;
    }
    return removed;
}

//  Clean: remove the type's finished jobs in state that ended more than
//  older_than ms ago, among those the broker holds (KEEP_FINISHED_JOBS);
//  older records live in Redis until their TTL.
static int64_t
s_clean (bm_broker_t *self, bm_service_t *service, bm_job_state_t state, int64_t older_than)
{
    int64_t cutoff = bm_now_ms () - older_than;
    int64_t removed = 0;
    bm_job_t *job = (bm_job_t *) zlistx_first (self->finished);
    while (job) {
        bm_job_t *next = (bm_job_t *) zlistx_next (self->finished);
        if (job->service == service && job->state == state && !job->confirming
        &&  !bm_job_is_delivery (job) && job->finished_at <= cutoff) {
            s_remove (self, job);
            removed++;
        }
        job = next;
    }
    return removed;
}

//  QUEUE {req, botType, action, state?, olderThanMs?}
//  -> REPLY {req, botType, paused, removed}
void
bm_control_queue (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    bm_codec_queue_t q;
    bm_codec_error_t error;
    if (bm_codec_queue_decode (msg, &q, &error)) {
        bm_broker_reject (self, identity, body, error.code, error.message);
        return;
    }
    if (!bm_service_type_known (self, q.bot_type)) {
        bm_broker_reject (self, identity, body, "unknown_bot_type", "botType is not a known bot type");
        return;
    }
    bm_service_t *service = bm_service_require (self, q.bot_type);
    int64_t removed = 0;
    if (streq (q.action, "pause"))
        s_set_paused (self, service, true);
    else
    if (streq (q.action, "resume"))
        s_set_paused (self, service, false);
    else
    if (streq (q.action, "drain"))
        removed = s_drain (self, service);
    else
        removed = s_clean (self, service, streq (q.state, "completed") ? JOB_COMPLETED : JOB_FAILED,
                           q.older_than_ms);
    if (removed)
        bm_info (NULL, "bot type %s: %s removed %" PRId64 " jobs", service->name, q.action, removed);
    bm_body_t reply;
    bm_body_init (self, &reply);
    msgpack_pack_map (&reply.pk, bm_req_count (body) + 3);
    bm_pack_req (&reply.pk, body);
    bm_pack_kv_str (&reply.pk, "botType", service->name);
    bm_pack_kv_bool (&reply.pk, "paused", service->paused);
    bm_pack_kv_int (&reply.pk, "removed", removed);
    bm_broker_send_client (self, identity, BM_REPLY, &reply);
    bm_body_free (&reply);
}

//  REMOVE {req, jobId} -> REPLY {req, jobId, removed}; PROMOTE {req, jobId}
//  -> REPLY {req, job}.  The job must be in memory: every job that is not
//  finished is, and so are the newest finished ones.
void
bm_control_job (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    bm_codec_job_ref_t ref;
    bm_codec_error_t error;
    if (bm_codec_job_ref_decode (msg, &ref, &error)) {
        bm_broker_reject (self, identity, body, error.code, error.message);
        return;
    }
    bm_job_t *job = (bm_job_t *) zhashx_lookup (self->jobs, ref.job_id);
    bool promote = bm_msg_command (msg) == BM_PROMOTE;
    if (!job || bm_job_is_delivery (job)) {
        bm_broker_reject (self, identity, body, "not_found", "no job with that id");
        return;
    }
    if (promote && job->state != JOB_DELAYED) {
        bm_broker_reject (self, identity, body, "conflict", "only a delayed job can be promoted");
        return;
    }
    if (!promote && (job->state == JOB_RUNNING || job->confirming || !job->durable)) {
        bm_broker_reject (self, identity, body, "conflict", job->state == JOB_RUNNING
                          ? "a running job cannot be removed; cancel it first"
                          : "the job is being written; try again");
        return;
    }
    bm_body_t reply;
    bm_body_init (self, &reply);
    msgpack_pack_map (&reply.pk, bm_req_count (body) + (promote ? 1 : 2));
    bm_pack_req (&reply.pk, body);
    if (promote) {
        bm_info (job->id, "promoted: due now");
        bm_delayed_promote (self, job);
        bm_pack_str (&reply.pk, "job");
        bm_job_pack_record (&reply.pk, job, false);
    }
    else {
        bm_pack_kv_str (&reply.pk, "jobId", job->id);
        bm_pack_kv_bool (&reply.pk, "removed", true);
        s_remove (self, job);
    }
    bm_broker_send_client (self, identity, BM_REPLY, &reply);
    bm_body_free (&reply);
}

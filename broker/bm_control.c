/*  bm_control.c - a bot type's queue under control (pause, resume, drain,
    clean; retry is bm_retry.c) and job actions (remove, promote): the QUEUE, REMOVE and PROMOTE
    client commands (protocol.md section 4).

    A paused type keeps its queued and delayed jobs and lets its running
    ones finish, but nothing of it is dispatched (bm_dispatch checks
    service->paused).  Paused types are the Redis set {bm}:paused, read
    back when the store connects, before the queues are rebuilt: a pause
    survives a restart.  Removing a job deletes it everywhere (memory, its
    queue or the due-time heap, its Redis record, the live set, its
    idempotencyKey: the next SUBMIT with it makes a new job); a running
    job cannot be removed (cancel it first).  Pause, resume, drain, REMOVE
    and PROMOTE are answered once Redis has them (s_answer_t).  */
#include "bm_broker_internal.h"

//  An answer sent once Redis has taken the writes issued before it (they
//  go out in order on one connection): a pause, resume, drain, REMOVE or
//  PROMOTE is answered only when a broker crash can no longer undo it.  Its
//  REPLY is packed at once; REJECTED store_unavailable goes instead if the
//  write it waits for is dropped.
typedef struct {
    bm_broker_t *broker;
    zframe_t *identity;         //  The client's
    bm_body_t reply;            //  REPLY, packed
    bm_body_t refusal;          //  REJECTED store_unavailable, packed
} s_answer_t;

static s_answer_t *
s_answer_new (bm_broker_t *self, zframe_t *identity, const msgpack_object *request,
              const char *what)
{
    s_answer_t *answer = (s_answer_t *) zmalloc (sizeof (s_answer_t));
    answer->broker = self;
    answer->identity = zframe_dup (identity);
    bm_body_init (self, &answer->reply);
    bm_body_init (self, &answer->refusal);
    char message [96];
    snprintf (message, sizeof message, "the job store (Redis) did not confirm the %s", what);
    msgpack_pack_map (&answer->refusal.pk, 2 + bm_req_count (request));
    bm_pack_req (&answer->refusal.pk, request);
    bm_pack_kv_str (&answer->refusal.pk, "code", "store_unavailable");
    bm_pack_kv_str (&answer->refusal.pk, "message", message);
    return answer;
}

static void
s_on_answer_durable (redisReply *reply, void *arg)
{
    s_answer_t *answer = (s_answer_t *) arg;
    bm_broker_send_client (answer->broker, answer->identity, reply ? BM_REPLY : BM_REJECTED,
                           reply ? &answer->reply : &answer->refusal);
    bm_body_free (&answer->reply);
    bm_body_free (&answer->refusal);
    zframe_destroy (&answer->identity);
    free (answer);
}

//  Who asked for a removal, for its log line: what, "from client" and the
//  client's routing id (hex, its first 32 bytes), into by.
static void
s_asked_by (zframe_t *identity, const char *what, char *by, size_t size)
{
    char key [2 * 256 + 1];
    bm_broker_peer_key (identity, key);
    snprintf (by, size, "%s from client %.64s%s", what, key, strlen (key) > 64 ? "..." : "");
}

//  Delete a job that is not running: out of every structure, its record out
//  of Redis (fn, if any, told when that is confirmed), freed.  One log
//  line: INFO naming who asked (by), or, for a retention trim (by NULL),
//  debug.
//  Its idempotencyKey goes with it (in memory and in Redis, in the same
//  group of writes): the next SUBMIT with that key makes a new job.
static void
s_remove_then (bm_broker_t *self, bm_job_t *job, const char *by, bm_store_fn *fn, void *arg)
{
    bm_jobstore_forget_then (self, job->id, job->idem_key, fn, arg);
    bm_finished_forget (self, job);
    bm_log (by ? BM_INFO : BM_DEBUG, job->id, "removed (%s, %s): by %s", job->service->name,
            bm_job_state_names [job->state], by ? by : job->state == JOB_COMPLETED
            ? "retention (KEEP_COMPLETED_<TYPE>)" : "retention (KEEP_FAILED_<TYPE>)");
    if (by)
        BM_JOB_EVENT (self, job, BM_EV_REMOVED, NULL, false);
    bm_service_t *service = job->service;
    bm_job_delete (self, job);
    bm_series_set (service->m_queue, (double) bm_heap_size (service->queue));
    bm_series_set (service->m_waiting, (double) bm_service_waiting_for_permit (service));
}

static void
s_remove (bm_broker_t *self, bm_job_t *job, const char *by)
{
    s_remove_then (self, job, by, NULL, NULL);
}

void
bm_control_remove (bm_broker_t *self, bm_job_t *job, const char *by)
{
    s_remove (self, job, by);
}

static void
s_set_paused (bm_broker_t *self, bm_service_t *service, bool paused)
{
    if (service->paused == paused)
        return;
    service->paused = paused;
    bm_info (NULL, "bot type %s %s", service->name, paused ? "paused" : "resumed");
    if (!paused)
        bm_dispatch (self, service);
}

//  Whether the type is paused, into Redis (SADD or SREM, written even when
//  it did not change: fn then learns that every write before it landed).
static void
s_persist_paused (bm_broker_t *self, bm_service_t *service, bm_store_fn *fn, void *arg)
{
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, service->paused ? "SADD" : "SREM", "paused", NULL);
    bm_cmd_arg_str (&cmd, service->name);
    bm_jobstore_issue (self, &cmd, true, fn, arg);
}

//  Retention by count: a type with KEEP_COMPLETED_<TYPE> (KEEP_FAILED_<TYPE>)
//  keeps the records of its newest N completed (failed) jobs; an older one
//  is removed as the next one ends, from memory and Redis.  This list
//  holds the jobs that ended since the broker started; the older records
//  (only in Redis) are trimmed through the finished sets (bm_finished.c).
//  The job has just ended (its terminal write is confirmed).
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
        bm_job_t *old = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
        if (old && bm_job_terminal (old) && !old->confirming)
            s_remove (self, old, NULL);
        else
        if (!old) {
            bm_jobstore_forget (self, id);
            char key [BM_FINISHED_KEY_SLOT];
            bm_finished_key (self, service->name, which, key, sizeof key);
            bm_finished_remove_ids (self, key, (const char **) &id, 1);
        }
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
s_drain (bm_broker_t *self, bm_service_t *service, const char *by)
{
    int64_t removed = 0;
    bm_job_t *job;
    while ((job = (bm_job_t *) bm_heap_peek (service->queue))) {
        if (!job->durable) {
            //  Its SUBMIT is not confirmed yet: it is not the client's yet.
            break;
        }
        s_remove (self, job, by);
        removed++;
    }
    return removed;
}

//  Clean, in memory: remove the type's finished jobs in state that ended
//  at or before cutoff (ms since the epoch), among those the broker holds
//  (KEEP_FINISHED_JOBS; its finished deliveries are in a list apart, never
//  cleaned).  The older ones, only in Redis, are found in the
//  type's finished set (s_clean_query).
static int64_t
s_clean (bm_broker_t *self, bm_service_t *service, bm_job_state_t state, int64_t cutoff,
         const char *by)
{
    int64_t removed = 0;
    bm_job_t *job = bm_joblist_first (&self->finished);
    while (job) {
        bm_job_t *next = bm_joblist_next (&self->finished, job);
        if (job->service == service && job->state == state && !job->confirming
        &&  job->finished_at <= cutoff) {
            s_remove (self, job, by);
            removed++;
        }
        job = next;
    }
    return removed;
}

//  Frame 2: {req?, botType, paused, removed}
static void
s_queue_pack (msgpack_packer *pk, const msgpack_object *req, bm_service_t *service,
              int64_t removed)
{
    msgpack_pack_map (pk, (req != NULL) + 4);
    if (req) {
        bm_pack_str (pk, "req");
        msgpack_pack_object (pk, *req);
    }
    bm_pack_kv_str (pk, "botType", service->name);
    bm_pack_kv_bool (pk, "paused", service->paused);
    bm_pack_kv_int (pk, "removed", removed);
    bm_stats_pack_rate (service, pk);
}

static void
s_queue_reply (bm_broker_t *self, zframe_t *identity, const msgpack_object *req,
               bm_service_t *service, int64_t removed)
{
    bm_body_t reply;
    bm_body_init (self, &reply);
    s_queue_pack (&reply.pk, req, service, removed);
    bm_broker_send_client (self, identity, BM_REPLY, &reply);
    bm_body_free (&reply);
}

//  Ids read from a finished set a query at a time: a clean of a million
//  jobs holds at most this many ids at once.
#define BM_CLEAN_PAGE 5000

//  A clean waiting for Redis: the finished set's ids in [floor, cutoff].
typedef struct {
    bm_broker_t *broker;
    zframe_t *identity;         //  The client's
    msgpack_object req;         //  The request's req (a scalar), if has_req
    bool has_req;
    bm_service_t *service;
    int which;                  //  0 completed, 1 failed, 2 cancelled (bm_finished_which)
    int64_t floor;              //  Records that ended before it have expired
    int64_t cutoff;             //  Ended at or before it: removed
    int64_t removed;            //  So far, memory included
    char by [160];              //  Who asked, for the removals' log lines
} s_clean_t;

static void s_on_clean_page (redisReply *reply, void *arg);

static void
s_clean_query (s_clean_t *clean)
{
    bm_finished_flush (clean->broker);  //  The query sees this turn's ends
    bm_cmd_t cmd;
    bm_cmd_start (clean->broker, &cmd, "ZRANGEBYSCORE", bm_finished_what (clean->which),
                  clean->service->name);
    bm_cmd_arg_int (&cmd, clean->floor);
    bm_cmd_arg_int (&cmd, clean->cutoff);
    bm_cmd_arg_str (&cmd, "LIMIT");
    bm_cmd_arg_str (&cmd, "0");
    bm_cmd_arg_int (&cmd, BM_CLEAN_PAGE);
    bm_jobstore_query (clean->broker, &cmd, s_on_clean_page, clean);
}

//  One page of a clean's ids removed (bm_finished_remove_listed), then the
//  next page (read after these writes) or the answer.
static void
s_on_clean_page (redisReply *reply, void *arg)
{
    s_clean_t *clean = (s_clean_t *) arg;
    bm_broker_t *self = clean->broker;
    bool more = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        bm_warn (NULL, "bot type %s: clean could not read its finished jobs from redis; "
                 "removed only the %" PRId64 " in memory", clean->service->name, clean->removed);
    else {
        clean->removed += bm_finished_remove_listed (self, clean->service->name, clean->which, reply,
                                                     clean->by);
        more = reply->elements == BM_CLEAN_PAGE;
    }
    if (more && bm_store_up (self->store)) {
        s_clean_query (clean);
        return;
    }
    if (clean->removed)
        bm_info (NULL, "bot type %s: clean removed %" PRId64 " jobs", clean->service->name, clean->removed);
    s_queue_reply (self, clean->identity, clean->has_req ? &clean->req : NULL, clean->service,
                   clean->removed);
    zframe_destroy (&clean->identity);
    free (clean);
}

//  Clean: the jobs in memory at once, then (with Redis) those only in
//  Redis, a page at a time; answered after the last page.
static void
s_clean_start (bm_broker_t *self, zframe_t *identity, const msgpack_object *request,
               bm_service_t *service, bm_job_state_t state, int64_t older_than)
{
    int64_t now = bm_now_ms ();
    int64_t cutoff = now - older_than;
    char by [160];
    char what [40];
    snprintf (what, sizeof what, "QUEUE clean %s", bm_job_state_names [state]);
    s_asked_by (identity, what, by, sizeof by);
    int64_t removed = s_clean (self, service, state, cutoff, by);
    const msgpack_object *req = bm_obj_get (request, "req");
    //  Only a scalar req is kept (it holds no pointer into the message).
    bool scalar = req && req->type != MSGPACK_OBJECT_STR && req->type != MSGPACK_OBJECT_BIN
               && req->type != MSGPACK_OBJECT_ARRAY && req->type != MSGPACK_OBJECT_MAP
               && req->type != MSGPACK_OBJECT_EXT;
    if (!self->store || !bm_store_up (self->store) || (req && !scalar)) {
        if (removed)
            bm_info (NULL, "bot type %s: clean removed %" PRId64 " jobs", service->name, removed);
        s_queue_reply (self, identity, req, service, removed);
        return;
    }
    s_clean_t *clean = (s_clean_t *) zmalloc (sizeof (s_clean_t));
    clean->broker = self;
    clean->identity = zframe_dup (identity);
    if (req) {
        clean->req = *req;
        clean->has_req = true;
    }
    clean->service = service;
    clean->which = bm_finished_which (state);
    clean->floor = now - bm_finished_ttl_ms (self, clean->which);
    clean->cutoff = cutoff;
    clean->removed = removed;
    snprintf (clean->by, sizeof clean->by, "%s", by);
    s_clean_query (clean);
}

//  QUEUE {req, botType, action, state?, olderThanMs?, limit?}
//  -> REPLY {req, botType, paused, removed} (retry: {req, botType, paused,
//  retried, more})
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
        //  As SUBMIT: not known *yet* right after a start or takeover
        const char *wait = bm_types_unknown_refusal (self);
        if (wait)
            bm_broker_reject (self, identity, body, "store_unavailable", wait);
        else
            bm_broker_reject (self, identity, body, "unknown_bot_type",
                              "botType is not a known bot type");
        return;
    }
    //  drain, clean and retry act on the type's jobs: while the broker
    //  reads its queues back it holds only part of them (a drain would
    //  remove those read so far and leave the rest to run), so they wait
    //  for the recovery as SUBMIT does.  pause, resume and rate act on the
    //  type alone.
    if (self->store && !self->recovered
    &&  (streq (q.action, "drain") || streq (q.action, "clean") || streq (q.action, "retry"))) {
        bm_broker_reject (self, identity, body, "store_unavailable", bm_stats_store_refusal (self));
        return;
    }
    if (streq (q.bot_type, BM_WEBHOOK_TYPE) && !streq (q.action, "pause")
    &&  !streq (q.action, "resume")) {
        bm_broker_reject (self, identity, body, "bad_request", streq (q.action, "retry")
                          ? BM_TEXT_WEBHOOK_RETRY : BM_TEXT_WEBHOOK_QUEUE);
        return;
    }
    if (streq (q.action, "retry")) {
        char by [160];
        char what [40];
        snprintf (what, sizeof what, "QUEUE retry %s", q.state);
        s_asked_by (identity, what, by, sizeof by);
        bm_retry_start (self, identity, &q, by);
        return;
    }
    bm_service_t *service = bm_service_require (self, q.bot_type);
    if (streq (q.action, "clean")) {
        bm_job_state_t state = streq (q.state, "completed") ? JOB_COMPLETED
                             : streq (q.state, "failed") ? JOB_FAILED : JOB_CANCELLED;
        s_clean_start (self, identity, body, service, state, q.older_than_ms);
        return;
    }
    if (streq (q.action, "rate")) {
        //  RATE_<TYPE> at run time, in memory: a restart or a failover
        //  takes RATE_<TYPE> again.
        int64_t max, period_ms;
        char why [160], by [160];
        if (bm_service_rate_parse (q.rate, &max, &period_ms, why, sizeof why)) {
            char message [256];
            snprintf (message, sizeof message, "rate %s, got '%s'", why, q.rate);
            bm_broker_reject (self, identity, body, "bad_request", message);
            return;
        }
        bm_service_set_rate (service, max, period_ms);
        s_asked_by (identity, "QUEUE rate", by, sizeof by);
        if (max) {
            char rate [64];
            bm_service_rate_text (max, period_ms, rate, sizeof rate);
            bm_info (NULL, "bot type %s: at most %s (%s)", service->name, rate, by);
        }
        else
            bm_info (NULL, "bot type %s: no rate limit (%s)", service->name, by);
        s_queue_reply (self, identity, bm_obj_get (body, "req"), service, 0);
        bm_dispatch (self, service);
        return;
    }
    int64_t removed = 0;
    if (streq (q.action, "pause"))
        s_set_paused (self, service, true);
    else
    if (streq (q.action, "resume"))
        s_set_paused (self, service, false);
    else
    if (streq (q.action, "drain")) {
        char by [160];
        s_asked_by (identity, "QUEUE drain", by, sizeof by);
        removed = s_drain (self, service, by);
    }
    if (removed)
        bm_info (NULL, "bot type %s: %s removed %" PRId64 " jobs", service->name, q.action, removed);
    //  Answered once Redis has the pause (and the drained jobs' deletions,
    //  written before it): a crash then cannot undo it.
    s_answer_t *answer = s_answer_new (self, identity, body, q.action);
    s_queue_pack (&answer->reply.pk, bm_obj_get (body, "req"), service, removed);
    s_persist_paused (self, service, s_on_answer_durable, answer);
}

//  REMOVE {req, jobId} -> REPLY {req, jobId, removed}; PROMOTE {req, jobId}
//  -> REPLY {req, job}.  Every job that is not finished is in memory, and
//  so are the newest finished ones; a finished job only Redis holds is read
//  from there first (bm_clients_job_load), then acted on here.
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
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, ref.job_id);
    if (!job && self->store)
        bm_clients_job_load (self, identity, body, ref.job_id, bm_msg_command (msg));
    else
        bm_control_job_act (self, identity, body, bm_msg_command (msg) == BM_PROMOTE, job);
}

//  REMOVE or PROMOTE of job (NULL: not found), answered to identity.
void
bm_control_job_act (bm_broker_t *self, zframe_t *identity, const msgpack_object *body,
                    bool promote, bm_job_t *job)
{
    if (!job || bm_job_is_delivery (job)) {
        bm_broker_reject (self, identity, body, "not_found", "no job with that id");
        return;
    }
    if (!job->durable) {
        //  Its SUBMIT is not confirmed yet: it is neither queued nor
        //  delayed until Redis answers.
        bm_broker_reject (self, identity, body, "conflict", "the job is being written; try again");
        return;
    }
    if (promote && job->state != JOB_DELAYED) {
        bm_broker_reject (self, identity, body, "conflict", "only a delayed job can be promoted");
        return;
    }
    if (!promote && (job->state == JOB_RUNNING || job->confirming)) {
        bm_broker_reject (self, identity, body, "conflict", job->state == JOB_RUNNING
                          ? "a running job cannot be removed; cancel it first"
                          : "the job is being written; try again");
        return;
    }
    if (!promote) {
        //  Answered once Redis has deleted its record: a crash then
        //  cannot bring it back.
        s_answer_t *answer = s_answer_new (self, identity, body, "removal");
        msgpack_pack_map (&answer->reply.pk, bm_req_count (body) + 2);
        bm_pack_req (&answer->reply.pk, body);
        bm_pack_kv_str (&answer->reply.pk, "jobId", job->id);
        bm_pack_kv_bool (&answer->reply.pk, "removed", true);
        char by [160];
        s_asked_by (identity, "REMOVE", by, sizeof by);
        s_remove_then (self, job, by, s_on_answer_durable, answer);
        return;
    }
    bm_info (job->id, "promoted: due now");
    bm_delayed_promote (self, job);
    //  Answered once Redis has it queued (its state written again, after
    //  the promotion's own writes and the dispatch's, if any): a crash
    //  then cannot leave it delayed.
    s_answer_t *answer = s_answer_new (self, identity, body, "promotion");
    msgpack_pack_map (&answer->reply.pk, bm_req_count (body) + 1);
    bm_pack_req (&answer->reply.pk, body);
    bm_pack_str (&answer->reply.pk, "job");
    bm_job_pack_record (&answer->reply.pk, job, false);
    bm_jobstore_persist_state_then (self, job, s_on_answer_durable, answer);
}

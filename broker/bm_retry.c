/*  bm_retry.c - QUEUE retry: a bot type's failed (or cancelled) jobs run
    again, each as RETRY runs one (bm_clients_retry), the oldest end first,
    at most a limit a request (BullMQ's queue.retryJobs).

    With Redis, the type's finished set of that state (bm_finished.c) lists
    them by end time, those in memory and those only Redis holds (pushed
    out by KEEP_FINISHED_JOBS, or ended before a restart): one
    ZRANGEBYSCORE reads the oldest limit + 1 ids that ended between the end
    of their retention and now - olderThanMs.  A job in memory is retried at
    once; one only in Redis is read (HGETALL) and retried as its record
    comes.  The answer {retried, more} goes once Redis has every retried
    job's queued record, so a crash after it cannot undo them; more: the
    set listed more such ids than the limit (or a record could not be
    read).  An id without a record, or whose job is in another state now,
    leaves the set: a client that asks again while more ends.
    Without Redis, the jobs in memory (the KEEP_FINISHED_JOBS newest).  */
#include "bm_broker_internal.h"

typedef struct {
    bm_broker_t *broker;
    zframe_t *identity;         //  The client's
    bool has_req;
    int64_t req;
    bm_service_t *service;
    bm_job_state_t state;       //  JOB_FAILED or JOB_CANCELLED
    int which;                  //  Its finished set (bm_finished_which)
    int64_t limit;
    char by [160];              //  Who asked, for the log lines
    int64_t retried;
    bool more;
    int pending;                //  Reads and writes out (+1 while issuing)
    int64_t dropped;            //  Queued records Redis did not confirm
    bool unreadable;            //  The set could not be read: nothing done
    bool reading;               //  bm_finished_reads_begin was called
} s_bulk_t;

//  A record read for the bulk: the job only Redis held.
typedef struct {
    s_bulk_t *bulk;
    char id [BM_ID_SLOT];
} s_read_t;

static void
s_answer (s_bulk_t *bulk)
{
    bm_broker_t *self = bulk->broker;
    bm_body_t body;
    bm_body_init (self, &body);
    if (bulk->dropped || bulk->unreadable) {
        char message [160];
        if (bulk->unreadable)
            snprintf (message, sizeof message, "the job store (Redis) is unavailable; retry later");
        else
            snprintf (message, sizeof message, "the job store (Redis) did not confirm %" PRId64
                      " of the %" PRId64 " retries; STATUS tells whether each holds",
                      bulk->dropped, bulk->retried);
        msgpack_pack_map (&body.pk, 2 + bulk->has_req);
        if (bulk->has_req)
            bm_pack_kv_int (&body.pk, "req", bulk->req);
        bm_pack_kv_str (&body.pk, "code", "store_unavailable");
        bm_pack_kv_str (&body.pk, "message", message);
        bm_broker_send_client (self, bulk->identity, BM_REJECTED, &body);
    }
    else {
        msgpack_pack_map (&body.pk, 5 + bulk->has_req);
        if (bulk->has_req)
            bm_pack_kv_int (&body.pk, "req", bulk->req);
        bm_pack_kv_str (&body.pk, "botType", bulk->service->name);
        bm_pack_kv_bool (&body.pk, "paused", bulk->service->paused);
        bm_pack_kv_int (&body.pk, "retried", bulk->retried);
        bm_pack_kv_bool (&body.pk, "more", bulk->more);
        bm_stats_pack_rate (bulk->service, &body.pk);
        bm_broker_send_client (self, bulk->identity, BM_REPLY, &body);
    }
    bm_body_free (&body);
    bm_info (NULL, "bot type %s: %s retried %" PRId64 " %s jobs%s", bulk->service->name, bulk->by,
             bulk->retried, bm_job_state_names [bulk->state], bulk->more ? " (more left)" : "");
    if (bulk->reading)
        bm_finished_reads_end (self);
    zframe_destroy (&bulk->identity);
    free (bulk);
}

static void
s_release (s_bulk_t *bulk)
{
    if (--bulk->pending == 0)
        s_answer (bulk);
}

static void
s_on_written (redisReply *reply, void *arg)
{
    s_bulk_t *bulk = (s_bulk_t *) arg;
    if (!reply)
        bulk->dropped++;
    s_release (bulk);
}

//  True for a job the bulk retries: a durable client job in its state.
static bool
s_wanted (const s_bulk_t *bulk, const bm_job_t *job)
{
    return job->state == bulk->state && job->durable && !bm_job_is_delivery (job);
}

static void
s_retry_one (s_bulk_t *bulk, bm_job_t *job)
{
    bm_info (job->id, "retried (%s, %s): by %s", job->service->name,
             bm_job_state_names [job->state], bulk->by);
    bulk->retried++;
    if (bulk->broker->store) {
        bulk->pending++;
        bm_clients_retry (bulk->broker, job, s_on_written, bulk);
    }
    else
        bm_clients_retry (bulk->broker, job, NULL, NULL);
}

//  An id of the set that names no job of that state any more: out of it.
static void
s_stale (s_bulk_t *bulk, const char *id)
{
    char key [BM_FINISHED_KEY_SLOT];
    bm_finished_key (bulk->broker, bulk->service->name, bulk->which, key, sizeof key);
    bm_finished_remove_ids (bulk->broker, key, &id, 1);
}

static void
s_on_record (redisReply *reply, void *arg)
{
    s_read_t *read = (s_read_t *) arg;
    s_bulk_t *bulk = read->bulk;
    bm_broker_t *self = bulk->broker;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, read->id);
    if (!reply || !self->serving)
        bulk->more = true;              //  Not read: still listed
    else
    if (job) {                          //  In memory meanwhile (a RETRY, a read-back)
        if (s_wanted (bulk, job)) {
            s_retry_one (bulk, job);
            bm_dispatch (self, job->service);
        }
    }
    else
    if (reply->type == REDIS_REPLY_ERROR) {
        bm_warn (read->id, "reading its record from redis failed: %s", reply->str);
        bulk->more = true;
    }
    else
    if (!bm_finished_deleted (self, read->id)) {       //  Else removed meanwhile
        job = bm_jobstore_job_from_hash (self, read->id, reply, NULL);
        if (job && bm_finished_expired (self, job, bm_now_ms ()))
            bm_job_destroy (&job);      //  Its retention ran out: the sweep's
        else
        if (!job && reply->elements == 0)
            s_stale (bulk, read->id);   //  No record
        else
        if (!job)
            bm_warn (read->id, "retry: its record in redis cannot be read; left as it is");
        else
        if (!bm_job_terminal (job) || bm_job_is_delivery (job)) {
            bm_job_destroy (&job);      //  Being recovered: not finished
        }
        else
        if (job->state != bulk->state) {
            s_stale (bulk, read->id);
            bm_job_destroy (&job);
        }
        else {
            bm_job_restore (self, job);
            s_retry_one (bulk, job);
            bm_dispatch (self, job->service);
        }
    }
    free (read);
    s_release (bulk);
}

//  The oldest ids of the set: those in memory retried now, the others read.
static void
s_on_ids (redisReply *reply, void *arg)
{
    s_bulk_t *bulk = (s_bulk_t *) arg;
    bm_broker_t *self = bulk->broker;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !self->serving) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            bm_warn (NULL, "bot type %s: retry could not read its %s jobs from redis: %s",
                     bulk->service->name, bm_job_state_names [bulk->state], reply->str);
        bulk->unreadable = true;
        s_answer (bulk);
        return;
    }
    bm_finished_reads_begin (self);
    bulk->reading = true;
    bulk->pending = 1;
    size_t count = reply->elements;
    if ((int64_t) count > bulk->limit) {
        count = (size_t) bulk->limit;
        bulk->more = true;
    }
    bm_dispatch_hold (self);
    for (size_t i = 0; i < count; i++) {
        const redisReply *el = reply->element [i];
        if (el->type != REDIS_REPLY_STRING || el->len == 0 || el->len > BM_MAX_ID_LEN + 15)
            continue;
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, el->str);
        if (job) {
            //  Another state: run again since (its ZREM is on its way)
            if (s_wanted (bulk, job))
                s_retry_one (bulk, job);
            continue;
        }
        s_read_t *read = (s_read_t *) zmalloc (sizeof (s_read_t));
        read->bulk = bulk;
        bm_id_copy (read->id, sizeof read->id, el->str);
        bulk->pending++;
        bm_cmd_t cmd;
        bm_cmd_start (self, &cmd, "HGETALL", "job:", read->id);
        bm_jobstore_query (self, &cmd, s_on_record, read);
    }
    bm_dispatch (self, bulk->service);
    bm_dispatch_release (self);
    s_release (bulk);
}

void
bm_retry_start (bm_broker_t *self, zframe_t *identity, const bm_codec_queue_t *q, const char *by)
{
    s_bulk_t *bulk = (s_bulk_t *) zmalloc (sizeof (s_bulk_t));
    bulk->broker = self;
    bulk->identity = zframe_dup (identity);
    bulk->has_req = q->has_req;
    bulk->req = q->req;
    bulk->service = bm_service_require (self, q->bot_type);
    bulk->state = streq (q->state, "cancelled") ? JOB_CANCELLED : JOB_FAILED;
    bulk->which = bm_finished_which (bulk->state);
    bulk->limit = q->limit > 0 ? q->limit : BM_QUEUE_RETRY_MAX;
    snprintf (bulk->by, sizeof bulk->by, "%s", by);
    int64_t now = bm_now_ms ();
    int64_t cutoff = now - q->older_than_ms;
    if (!self->store) {
        //  The finished jobs in memory, oldest end first.
        bulk->pending = 1;
        bm_job_t *job = bm_joblist_first (&self->finished);
        while (job) {
            bm_job_t *next = bm_joblist_next (&self->finished, job);
            if (job->service == bulk->service && s_wanted (bulk, job) && job->finished_at <= cutoff) {
                if (bulk->retried == bulk->limit) {
                    bulk->more = true;
                    break;
                }
                s_retry_one (bulk, job);
            }
            job = next;
        }
        bm_dispatch (self, bulk->service);
        s_release (bulk);
        return;
    }
    if (!bm_store_up (self->store)) {
        bulk->unreadable = true;
        s_answer (bulk);
        return;
    }
    bm_finished_flush (self);           //  The query sees this turn's ends
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "ZRANGEBYSCORE", bm_finished_what (bulk->which), bulk->service->name);
    bm_cmd_arg_int (&cmd, now - bm_finished_ttl_ms (self, bulk->which));
    bm_cmd_arg_int (&cmd, cutoff);
    bm_cmd_arg_str (&cmd, "LIMIT");
    bm_cmd_arg_str (&cmd, "0");
    bm_cmd_arg_int (&cmd, bulk->limit + 1);
    bm_jobstore_query (self, &cmd, s_on_ids, bulk);
}

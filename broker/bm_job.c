/*  bm_job.c - one job: the class (bm_job.h: fields, record, order), and
    what the broker does with its jobs: the job table, ending a job,
    RESULT, eviction, ids.

    Jobs live in the broker's job table (id -> bm_job_t, owned); this file
    creates, packs (protocol.md section 3), ends and forgets them.  */
#include "bm_broker_internal.h"
#include "bm_utf8.h"

const char *bm_job_state_names [JOB_STATES] = {
    "queued", "running", "delayed", "waiting-children", "completed", "failed", "cancelled"
};

bool
bm_job_queue_less (const void *a, const void *b)
{
    const bm_job_t *x = (const bm_job_t *) a, *y = (const bm_job_t *) b;
    return x->priority < y->priority || (x->priority == y->priority && x->seq < y->seq);
}

void
bm_job_queue_index (void *item, size_t index)
{
    ((bm_job_t *) item)->queue_index = index;
}

bool
bm_job_deadline_less (const void *a, const void *b)
{
    return ((const bm_job_t *) a)->deadline < ((const bm_job_t *) b)->deadline;
}

void
bm_job_deadline_index (void *item, size_t index)
{
    ((bm_job_t *) item)->deadline_index = index;
}

bm_notify_t *
bm_notify_new (zframe_t *identity)
{
    bm_notify_t *self = (bm_notify_t *) zmalloc (sizeof (bm_notify_t));
    self->identity = zframe_dup (identity);
    self->refs = 1;
    return self;
}

bm_notify_t *
bm_notify_ref (bm_notify_t *self)
{
    self->refs++;
    return self;
}

void
bm_notify_unref (bm_notify_t **self_p)
{
    bm_notify_t *self = *self_p;
    if (self && --self->refs == 0) {
        zframe_destroy (&self->identity);
        free (self);
    }
    *self_p = NULL;
}

bm_job_t *
bm_job_new (void)
{
    bm_job_t *job = (bm_job_t *) zmalloc (sizeof (bm_job_t));
    job->queue_index = SIZE_MAX;
    job->deadline_index = SIZE_MAX;
    job->due_index = SIZE_MAX;
    job->run_attempts = 1;
    job->wh_state = -1;
    return job;
}

void
bm_job_destroy (bm_job_t **job_p)
{
    if (*job_p) {
        bm_job_t *job = *job_p;
        bm_idem_waiters_discard (job);
        bm_cancel_answers_discard (job);
        free (job->payload);
        free (job->result);
        free (job->webhook_url);
        free (job->idem_key);
        free (job->error_code);
        free (job->error_message);
        free (job->log);
        free (job->worker_name);
        free (job->last_worker);
        free (job->wh);
        free (job->parent);
        free (job->attempt_errors);
        bm_deps_destroy (&job->deps);
        bm_notify_unref (&job->notify);
        free (job);
        *job_p = NULL;
    }
}

bool
bm_job_terminal (const bm_job_t *job)
{
    return job->state >= JOB_COMPLETED;
}

bool
bm_job_is_delivery (const bm_job_t *job)
{
    return job->parent != NULL;
}

void
bm_job_set_error (bm_job_t *job, const char *code, const char *message)
{
    bm_set_str (&job->error_code, code);
    bm_set_str (&job->error_message, code ? message : NULL);
}

void
bm_job_set_result (bm_job_t *job, char *result, size_t size)
{
    free (job->result);
    job->result = result;
    job->result_size = result ? size : 0;
}

void
bm_job_set_log (bm_job_t *job, const char *text, size_t len)
{
    free (job->log);
    job->log = NULL;
    if (len == 0)
        return;
    job->log = bm_utf8_sanitised (text, len, len);
    if (!job->log) {
        bm_error (job->id, "no memory to keep its log: left out");
        return;
    }
    for (size_t i = 0; i < len; i++)          //  As long as text: one '?' a bad byte
        if (job->log [i] == 0)
            job->log [i] = '?';
}

void
bm_job_reset_outcome (bm_job_t *job)
{
    job->attempts = 0;
    job->progress = 0;
    job->started_at = job->finished_at = 0;
    job->has_exit_code = false;
    job->exit_code = 0;
    bm_job_set_error (job, NULL, NULL);
    bm_job_set_result (job, NULL, 0);
    bm_job_set_log (job, NULL, 0);
    job->counted = false;
    job->outcome_gen++;
    job->deliveries_before = job->deliveries;
}

//  A job that goes back to waiting (queued or delayed) sheds the fields of
//  the run it had: progress, startedAt and worker (the worker's name is
//  kept apart, as last_worker, for its DONE that may still come).  True
//  if anything changed.
bool
bm_job_clear_run (bm_job_t *job)
{
    bool changed = job->progress != 0 || job->started_at != 0 || job->worker_name;
    job->progress = 0;
    job->started_at = 0;
    if (job->worker_name) {
        free (job->last_worker);
        job->last_worker = job->worker_name;
        job->worker_name = NULL;
    }
    return changed;
}

//  Pack a job's record (protocol.md section 3).  full = with payload and
//  result.
void
bm_job_pack_record (msgpack_packer *pk, const bm_job_t *job, bool full)
{
    int count = 9;          //  jobId botType state priority progress attempts
                            //  maxAttempts timeoutMs createdAt
    bool payload = full;
    bool result = full && job->result;
    bool log = full && job->log;
    count += payload + result + log;
    count += job->webhook_url != NULL;
    count += job->started_at > 0;
    count += job->finished_at > 0;
    count += job->worker_name != NULL;
    count += job->error_code != NULL;
    count += job->wh != NULL;
    count += 2;             //  runAttempts backoff
    count += job->run_at > 0;
    count += job->failed_runs > 0;
    count += bm_deps_record_keys (job, full);
    msgpack_pack_map (pk, count);
    BM_PACK_KV_STR (pk, "jobId", job->id);
    BM_PACK_KV_STR (pk, "botType", job->service->name);
    BM_PACK_KV_STR (pk, "state", bm_job_state_names [job->state]);
    BM_PACK_KV_INT (pk, "priority", job->priority);
    BM_PACK_KV_INT (pk, "progress", job->progress);
    BM_PACK_KV_INT (pk, "attempts", job->attempts);
    BM_PACK_KV_INT (pk, "maxAttempts", job->max_attempts);
    BM_PACK_KV_INT (pk, "timeoutMs", job->timeout_ms);
    BM_PACK_KV_INT (pk, "createdAt", job->created_at);
    BM_PACK_KV_INT (pk, "runAttempts", job->run_attempts);
    BM_PACK_KEY (pk, "backoff");
    bm_pack_backoff (pk, &job->backoff);
    if (job->run_at > 0)
        BM_PACK_KV_INT (pk, "runAt", job->run_at);
    if (job->failed_runs > 0) {
        BM_PACK_KEY (pk, "attemptErrors");
        bm_delayed_pack_errors (pk, job);
    }
    if (job->deps)
        bm_deps_pack_record (pk, job, full);
    if (payload) {
        BM_PACK_KEY (pk, "payload");
        msgpack_sbuffer_write (pk->data, job->payload, job->payload_size);
    }
    if (result) {
        BM_PACK_KEY (pk, "result");
        msgpack_sbuffer_write (pk->data, job->result, job->result_size);
    }
    if (log)
        BM_PACK_KV_STR (pk, "log", job->log);
    if (job->webhook_url)
        BM_PACK_KV_STR (pk, "webhookUrl", job->webhook_url);
    if (job->started_at > 0)
        BM_PACK_KV_INT (pk, "startedAt", job->started_at);
    if (job->finished_at > 0)
        BM_PACK_KV_INT (pk, "finishedAt", job->finished_at);
    if (job->worker_name)
        BM_PACK_KV_STR (pk, "worker", job->worker_name);
    if (job->error_code) {
        BM_PACK_KEY (pk, "error");
        msgpack_pack_map (pk, 2 + job->has_exit_code);
        BM_PACK_KV_STR (pk, "code", job->error_code);
        BM_PACK_KV_STR (pk, "message", job->error_message ? job->error_message : "");
        if (job->has_exit_code)
            BM_PACK_KV_INT (pk, "exitCode", job->exit_code);
    }
    if (job->wh) {
        BM_PACK_KEY (pk, "webhook");
        msgpack_sbuffer_write (pk->data, job->wh, job->wh_size);
    }
}

//  Remember a job in the tables (takes ownership).
bm_job_t *
bm_job_insert (bm_broker_t *self, bm_job_t *job)
{
    bm_jobtab_insert (self->jobs, job);
    if (!bm_job_is_delivery (job)) {
        bm_joblist_append (&self->recent, job);
        bm_delivery_index (self, job);
    }
    return job;
}

//  The first job of list that was created (by_end: ended) after at: where
//  a job of that time goes, the list being in that order.  Walked from the
//  oldest: the jobs placed so are old, most often older than all.
static bm_job_t *
s_first_after (const bm_joblist_t *list, int64_t at, bool by_end)
{
    bm_job_t *job = bm_joblist_first (list);
    while (job && (by_end ? job->finished_at : job->created_at) <= at)
        job = bm_joblist_next (list, job);
    return job;
}

//  When a job's webhook reached its state, or, not known, its end.
static int64_t
s_webhook_at (const bm_job_t *job)
{
    return job->wh_at > 0 ? job->wh_at : job->finished_at;
}

//  Take a finished job read back from Redis into the tables (takes
//  ownership) for an action that needs it in memory (RETRY, REDELIVER),
//  placed by its own times as though it had never left: among the recent
//  jobs by creation, the finished ones by end, and its webhook state's list
//  by when it reached that state (a record that does not say: its end).  It pushes no job
//  out: beyond KEEP_FINISHED_JOBS it is the oldest, the one to go once its
//  action no longer holds it (bm_job_expire).  Its outcome was counted by
//  the broker that finished it (this one or an earlier one): a REDELIVER's
//  rewrite of its record does not count it again.
void
bm_job_restore (bm_broker_t *self, bm_job_t *job)
{
    assert (!bm_job_is_delivery (job) && bm_job_terminal (job));
    job->counted = true;
    bm_jobtab_insert (self->jobs, job);
    bm_joblist_insert (&self->recent, job, s_first_after (&self->recent, job->created_at, false));
    bm_joblist_insert (&self->finished, job, s_first_after (&self->finished, job->finished_at, true));
    if (job->wh_state >= 0) {
        bm_joblist_t *list = &self->webhooks [job->wh_state];
        int64_t at = s_webhook_at (job);
        bm_job_t *next = bm_joblist_first (list);
        while (next && s_webhook_at (next) <= at)
            next = bm_joblist_next (list, next);
        bm_joblist_insert (list, job, next);
    }
}

//  Forget a job (frees it); gone: its record too (or there is no Redis),
//  else it stays in Redis (a finished job past KEEP_FINISHED_JOBS).
static void
s_delete (bm_broker_t *self, bm_job_t *job, bool gone)
{
    //  Gone before it ended: the jobs waiting for it fail (or go on)
    if (self->dependents && zhashx_size (self->dependents) && !bm_job_terminal (job))
        bm_deps_gone (self, job);
    if (job->state == JOB_WAITING_CHILDREN)
        bm_deps_leave (self, job);
    if (job->deliveries && !bm_job_is_delivery (job))
        bm_delivery_drop_withheld (self, job);
    bm_joblist_remove (&self->recent, job);
    bm_joblist_remove (&self->withheld, job);
    bm_joblist_remove (&self->finished, job);
    bm_joblist_remove (&self->finished_deliveries, job);
    if (job->links [BM_JOBLIST_WEBHOOK].list)
        bm_joblist_remove (job->links [BM_JOBLIST_WEBHOOK].list, job);
    bm_service_queue_remove (job->service, job);
    bm_delayed_remove (self, job);
    bm_job_set_held (job, false);
    if (job->deadline_index != SIZE_MAX)
        bm_heap_remove (self->deadlines, job->deadline_index);
    //  Ended and gone, and jobs wait for its RETRY: it cannot come now (one
    //  only Redis holds can still be retried: they wait on)
    if (gone && self->dependents && zhashx_size (self->dependents) && bm_job_terminal (job))
        bm_deps_forgotten (self, job);
    if (job->idem_key)
        bm_idem_forget (self->idem, job->idem_key, job->id, bm_now_ms ());
    //  Gone before it was confirmed: the SUBMITs waiting on it are refused
    //  as it is (they retry).
    if (job->idem_waiters)
        bm_idem_wake (self, job, "store_unavailable", bm_stats_store_refusal (self));
    //  Whatever the table holds under its id goes (and is freed)
    bm_job_t *held = (bm_job_t *) bm_jobtab_remove (self->jobs, job->id);
    bm_job_destroy (&held);
}

void
bm_job_delete (bm_broker_t *self, bm_job_t *job)
{
    s_delete (self, job, true);
}

void
bm_job_send_result (bm_broker_t *self, bm_job_t *job)
{
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 2);
    BM_PACK_KV_STR (&body.pk, "jobId", job->id);
    BM_PACK_KEY (&body.pk, "job");
    bm_job_pack_record (&body.pk, job, true);
    if (!bm_batch_keep_result (self, job->notify->identity, &body))
        bm_broker_send_client (self, job->notify->identity, BM_RESULT, &body);
    bm_body_free (&body);
    bm_notify_unref (&job->notify);
}

//  Finished delivery jobs kept in memory: as many as KEEP_FINISHED_JOBS,
//  at most this.  A delivery's outcome lives on in its job's webhook state
//  (memory and Redis) and its own record leaves Redis as it ends, so only
//  a late word about it looks it up: a DONE that comes after its end (from
//  a manager it was taken from), a STATUS of its id.  The newest 1,000
//  answer those; users' jobs keep their KEEP_FINISHED_JOBS.
#define BM_KEEP_FINISHED_DELIVERIES     1000

//  How many finished deliveries the broker keeps.
static int64_t
s_deliveries_bound (bm_broker_t *self)
{
    return self->config.keep_finished < BM_KEEP_FINISHED_DELIVERIES
         ? self->config.keep_finished : BM_KEEP_FINISHED_DELIVERIES;
}

//  Evict the oldest jobs of a finished list beyond bound.
static void
s_evict (bm_broker_t *self, bm_joblist_t *list, int64_t bound)
{
    while ((int64_t) bm_joblist_size (list) > bound) {
        bm_job_t *oldest = bm_joblist_first (list);
        //  Not before Redis has its outcome: the confirmation still needs
        //  it (counts, RESULT).  Jobs end in order, so later ones wait too
        //  (until the next job ends, or bm_job_expire).
        if (oldest->confirming)
            break;
        s_delete (self, oldest, !self->store);
    }
}

//  Keep a terminal job in memory, the newest of its list (users' jobs, or
//  deliveries), and evict the oldest of that list beyond its bound.  A
//  delivery never pushes a user's job out.
void
bm_job_keep_finished (bm_broker_t *self, bm_job_t *job)
{
    bool delivery = bm_job_is_delivery (job);
    bm_joblist_t *list = delivery ? &self->finished_deliveries : &self->finished;
    bm_joblist_append (list, job);
    s_evict (self, list, delivery ? s_deliveries_bound (self) : self->config.keep_finished);
}

//  Forget the finished jobs of one list whose retention has run out (see
//  bm_job_expire).
static void
s_expire_list (bm_broker_t *self, bm_joblist_t *list, int64_t now)
{
    int64_t completed_ms = self->config.completed_ttl_s * 1000;
    int64_t failed_ms = self->config.failed_ttl_s * 1000;
    int64_t shorter = completed_ms < failed_ms ? completed_ms : failed_ms;
    bm_job_t *job = bm_joblist_first (list);
    while (job && job->finished_at + shorter <= now) {
        bm_job_t *next = bm_joblist_next (list, job);
        int64_t ttl = job->state == JOB_COMPLETED ? completed_ms : failed_ms;
        if (!job->confirming && job->finished_at + ttl <= now)
            bm_job_delete (self, job);
        job = next;
    }
}

//  Forget the finished jobs whose Redis record has expired
//  (COMPLETED_JOB_TTL, FAILED_JOB_TTL): the memory cache answers no longer
//  than Redis keeps the record, so a TTL set to stop keeping results holds
//  for STATUS and GET /job too.  Each list runs by end time: its scan stops
//  at the first job younger than the shorter TTL.  Finished deliveries
//  (their records gone from Redis as they end) last no longer than a job's.
//  First, the jobs beyond a list's bound that waited for their Redis
//  confirmation when the last job ended go: a burst of ends (a DONE_MANY)
//  followed by quiet leaves no list above its bound.
void
bm_job_expire (bm_broker_t *self, int64_t now)
{
    s_evict (self, &self->finished, self->config.keep_finished);
    s_evict (self, &self->finished_deliveries, s_deliveries_bound (self));
    s_expire_list (self, &self->finished, now);
    s_expire_list (self, &self->finished_deliveries, now);
}

//  End a job: record the outcome, release its slot, persist, notify.
void
bm_job_finish (bm_broker_t *self, bm_job_t *job, bm_job_state_t state,
               const char *code, const char *message)
{
    bm_job_finish_at (self, job, state, code, message, bm_now_ms ());
}

//  The same, the run having ended at finished_at (ms since the epoch).
void
bm_job_finish_at (bm_broker_t *self, bm_job_t *job, bm_job_state_t state,
                  const char *code, const char *message, int64_t finished_at)
{
    bm_service_queue_remove (job->service, job);
    bm_delayed_remove (self, job);
    bm_job_set_held (job, false);
    bm_worker_entry_t *worker = job->worker;
    bm_job_unassign (self, job);
    //  A failed run with runs left waits out its backoff instead; the
    //  webhook and RESULT are for the final outcome only.
    if (state == JOB_FAILED && bm_delayed_retry (self, job, code, message)) {
        bm_dispatch (self, job->service);
        if (worker)
            bm_dispatch_worker (self, worker);
        return;
    }
    if (job->state == JOB_WAITING_CHILDREN)
        bm_deps_leave (self, job);
    job->run_at = 0;
    job->state = state;
    job->finished_at = finished_at;
    if (state == JOB_COMPLETED) {
        bm_job_set_error (job, NULL, NULL);
        if (job->started_at) {
            double secs = (job->finished_at - job->started_at) / 1000.0;
            bm_series_observe (job->service->m_duration, secs);
            bm_service_t *service = job->service;
            service->durations [service->duration_count++ % BM_DURATION_SAMPLES] = secs * 1000.0;
        }
    }
    else
        bm_job_set_error (job, code, message);
    bm_log (state == JOB_COMPLETED ? BM_DEBUG : BM_INFO, job->id, "%s%s%s%s",
            bm_job_state_names [state], code ? " (" : "", code ? code : "", code ? ")" : "");
    BM_JOB_EVENT (self, job, state == JOB_COMPLETED ? BM_EV_COMPLETED
                       : state == JOB_CANCELLED ? BM_EV_CANCELLED : BM_EV_FAILED, NULL, false);
    if (!bm_job_is_delivery (job) && job->webhook_url)
        bm_delivery_create (self, job);     //  Writes the terminal record too
    else
        bm_jobstore_persist_terminal (self, job);
    bm_finished_add (self, job);
    if (bm_job_is_delivery (job) && state != JOB_COMPLETED) {
        //  Make sure the job it delivers says the delivery failed.
        if (!job->wh_final) {
            size_t size;
            char *wh = bm_delivery_simple_state (self, BM_WEBHOOK_FAILED, job->attempts,
                                                 message ? message : code, &size);
            bm_delivery_set_state (job, wh, size, BM_WEBHOOK_FAILED);
            bm_delivery_to_parent (self, job, wh, size, BM_WEBHOOK_FAILED);
            free (wh);
        }
    }
    //  Its dependents told before it joins the finished jobs: the ones
    //  they fail end after it and would push it out (KEEP_FINISHED_JOBS).
    if (self->dependents && zhashx_size (self->dependents))
        bm_deps_ended (self, job);
    bm_job_keep_finished (self, job);
    bm_dispatch (self, job->service);
    if (worker)
        bm_dispatch_worker (self, worker);
}

void
bm_job_make_id (bm_broker_t *self, char *id, size_t size)
{
    //  "%012x-<instance>-%08x" of (ms, instance, counter), by hand: snprintf
    //  was 4 % of the broker's time per job.
    static const char hex [] = "0123456789abcdef";
    uint64_t ms = (uint64_t) bm_now_ms () & 0xffffffffffffULL;
    uint32_t counter = ++self->counter;
    size_t instance_len = strlen (self->instance);
    if (size < 12 + 1 + instance_len + 1 + 8 + 1) {
        snprintf (id, size, "%012" PRIx64 "-%s-%08" PRIx32, ms, self->instance, counter);
        return;
    }
    char *p = id;
    for (int shift = 44; shift >= 0; shift -= 4)
        *p++ = hex [(ms >> shift) & 15];
    *p++ = '-';
    memcpy (p, self->instance, instance_len);
    p += instance_len;
    *p++ = '-';
    for (int shift = 28; shift >= 0; shift -= 4)
        *p++ = hex [(counter >> shift) & 15];
    *p = 0;
}

//  --------------------------------------------------------------------------
//  --------------------------------------------------------------------------
//  Lists of jobs

void
bm_joblist_init (bm_joblist_t *self, bm_joblist_which_t which)
{
    memset (self, 0, sizeof *self);
    self->which = which;
}

void
bm_joblist_remove (bm_joblist_t *self, bm_job_t *job)
{
    bm_joblink_t *link = &job->links [self->which];
    if (link->list != self)
        return;
    if (link->prev)
        link->prev->links [self->which].next = link->next;
    else
        self->first = link->next;
    if (link->next)
        link->next->links [self->which].prev = link->prev;
    else
        self->last = link->prev;
    link->prev = link->next = NULL;
    link->list = NULL;
    self->size--;
}

void
bm_joblist_append (bm_joblist_t *self, bm_job_t *job)
{
    bm_joblist_insert (self, job, NULL);
}

void
bm_joblist_insert (bm_joblist_t *self, bm_job_t *job, bm_job_t *next)
{
    bm_joblink_t *link = &job->links [self->which];
    if (link->list)
        bm_joblist_remove (link->list, job);
    bm_job_t *prev = next ? next->links [self->which].prev : self->last;
    link->list = self;
    link->prev = prev;
    link->next = next;
    if (prev)
        prev->links [self->which].next = job;
    else
        self->first = job;
    if (next)
        next->links [self->which].prev = job;
    else
        self->last = job;
    self->size++;
}

bool
bm_joblist_has (const bm_joblist_t *self, const bm_job_t *job)
{
    return job->links [self->which].list == self;
}

bm_job_t *
bm_joblist_first (const bm_joblist_t *self)
{
    return self->first;
}

bm_job_t *
bm_joblist_last (const bm_joblist_t *self)
{
    return self->last;
}

bm_job_t *
bm_joblist_next (const bm_joblist_t *self, const bm_job_t *job)
{
    return job->links [self->which].next;
}

bm_job_t *
bm_joblist_prev (const bm_joblist_t *self, const bm_job_t *job)
{
    return job->links [self->which].prev;
}

size_t
bm_joblist_size (const bm_joblist_t *self)
{
    return self->size;
}

//  Self test

//  Lists: order, removal at either end and in the middle, a move to the
//  end, two lists through two links at once.
static void
s_joblist_test (void)
{
    bm_joblist_t recent, finished, other;
    bm_joblist_init (&recent, BM_JOBLIST_RECENT);
    bm_joblist_init (&finished, BM_JOBLIST_FINISHED);
    bm_joblist_init (&other, BM_JOBLIST_FINISHED);
    bm_job_t *jobs [4];
    for (int i = 0; i < 4; i++) {
        jobs [i] = bm_job_new ();
        bm_joblist_append (&recent, jobs [i]);
    }
    BM_CHECK (bm_joblist_size (&recent) == 4 && bm_joblist_first (&recent) == jobs [0]
              && bm_joblist_last (&recent) == jobs [3]);
    BM_CHECK (bm_joblist_next (&recent, jobs [1]) == jobs [2]
              && bm_joblist_prev (&recent, jobs [1]) == jobs [0]
              && bm_joblist_prev (&recent, jobs [0]) == NULL);
    bm_joblist_append (&finished, jobs [2]);
    bm_joblist_append (&finished, jobs [0]);
    BM_CHECK (bm_joblist_has (&finished, jobs [0]) && !bm_joblist_has (&finished, jobs [1])
              && bm_joblist_has (&recent, jobs [0]));
    //  Not in other: nothing happens
    bm_joblist_remove (&other, jobs [0]);
    BM_CHECK (bm_joblist_size (&finished) == 2 && bm_joblist_has (&finished, jobs [0]));
    //  Middle, first, last
    bm_joblist_remove (&recent, jobs [1]);
    BM_CHECK (bm_joblist_next (&recent, jobs [0]) == jobs [2]
              && bm_joblist_prev (&recent, jobs [2]) == jobs [0]);
    bm_joblist_remove (&recent, jobs [0]);
    bm_joblist_remove (&recent, jobs [3]);
    BM_CHECK (bm_joblist_size (&recent) == 1 && bm_joblist_first (&recent) == jobs [2]
              && bm_joblist_last (&recent) == jobs [2] && bm_joblist_next (&recent, jobs [2]) == NULL);
    bm_joblist_remove (&recent, jobs [3]);
    BM_CHECK (bm_joblist_size (&recent) == 1);
    //  Appending a job already in the list moves it to the end; moving it
    //  to another list of the same link takes it out of the first.
    bm_joblist_append (&finished, jobs [2]);
    BM_CHECK (bm_joblist_first (&finished) == jobs [0] && bm_joblist_last (&finished) == jobs [2]
              && bm_joblist_size (&finished) == 2);
    bm_joblist_append (&other, jobs [0]);
    BM_CHECK (bm_joblist_size (&finished) == 1 && bm_joblist_first (&finished) == jobs [2]
              && bm_joblist_has (&other, jobs [0]));
    bm_joblist_remove (&other, jobs [0]);
    //  Inserting: before the first, in the middle, at the end (NULL); a
    //  job of the list moves to its new place.
    bm_joblist_insert (&recent, jobs [0], jobs [2]);
    bm_joblist_insert (&recent, jobs [1], jobs [2]);
    bm_joblist_insert (&recent, jobs [3], NULL);
    BM_CHECK (bm_joblist_size (&recent) == 4 && bm_joblist_first (&recent) == jobs [0]
              && bm_joblist_next (&recent, jobs [0]) == jobs [1]
              && bm_joblist_next (&recent, jobs [1]) == jobs [2]
              && bm_joblist_prev (&recent, jobs [2]) == jobs [1]
              && bm_joblist_last (&recent) == jobs [3]
              && bm_joblist_prev (&recent, jobs [3]) == jobs [2]);
    bm_joblist_insert (&recent, jobs [3], jobs [0]);
    BM_CHECK (bm_joblist_size (&recent) == 4 && bm_joblist_first (&recent) == jobs [3]
              && bm_joblist_next (&recent, jobs [3]) == jobs [0]
              && bm_joblist_prev (&recent, jobs [0]) == jobs [3]
              && bm_joblist_last (&recent) == jobs [2] && !bm_joblist_next (&recent, jobs [2]));
    bm_joblist_remove (&recent, jobs [0]);
    bm_joblist_remove (&recent, jobs [1]);
    bm_joblist_remove (&recent, jobs [3]);
    bm_joblist_remove (&finished, jobs [2]);
    bm_joblist_remove (&recent, jobs [2]);
    BM_CHECK (!bm_joblist_first (&recent) && !bm_joblist_last (&finished)
              && bm_joblist_size (&other) == 0);
    for (int i = 0; i < 4; i++)
        bm_job_destroy (&jobs [i]);
}

void
bm_job_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_job: ");
    s_joblist_test ();
    bm_service_t *service = bm_service_new ("python", 1, 10);
    bm_job_t *job = bm_job_new ();
    BM_CHECK (job && job->state == JOB_QUEUED && job->queue_index == SIZE_MAX
              && job->deadline_index == SIZE_MAX && !bm_job_terminal (job)
              && !job->wh && job->wh_state == -1);     //  No webhook state: in no webhook list
    snprintf (job->id, sizeof job->id, "j-1");
    job->service = service;
    job->priority = 3;
    job->seq = 7;
    job->max_attempts = 3;
    job->timeout_ms = 1000;
    job->created_at = 1764360000000;
    job->payload = bm_memdup ("\x81\xa1n\x01", 4);     //  {n: 1}
    job->payload_size = 4;

    //  Order: priority, then submission; deadlines by time.
    bm_job_t *other = bm_job_new ();
    other->priority = 3;
    other->seq = 8;
    BM_CHECK (bm_job_queue_less (job, other) && !bm_job_queue_less (other, job));
    other->priority = 0;
    BM_CHECK (bm_job_queue_less (other, job));
    job->deadline = 100, other->deadline = 200;
    BM_CHECK (bm_job_deadline_less (job, other) && !bm_job_deadline_less (other, job));
    bm_job_destroy (&other);
    BM_CHECK (other == NULL);

    //  States: terminal from completed on; a delivery has a parent.
    job->state = JOB_RUNNING;
    BM_CHECK (!bm_job_terminal (job) && !bm_job_is_delivery (job));
    job->state = JOB_FAILED;
    bm_job_set_error (job, "bot_failed", "Traceback...");
    job->has_exit_code = true, job->exit_code = 3;
    job->attempts = 2;
    job->finished_at = 1764360001000;
    BM_CHECK (bm_job_terminal (job) && streq (job->error_code, "bot_failed"));

    //  Its record, read back with the codec the clients use.
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_job_pack_record (&packer.pk, job, true);
    BM_CHECK (!bm_packer_failed (&packer));
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    BM_CHECK (msgpack_unpack_next (&unpacked, packer.sbuf.data, packer.sbuf.size, NULL)
              == MSGPACK_UNPACK_SUCCESS);
    bm_codec_record_t record;
    bm_codec_error_t error;
    BM_CHECK (bm_codec_record_decode (&unpacked.data, &record, &error) == 0);
    BM_CHECK (streq (record.job_id, "j-1") && streq (record.bot_type, "python")
              && streq (record.state, "failed") && record.priority == 3
              && record.attempts == 2 && record.max_attempts == 3
              && record.timeout_ms == 1000 && record.finished_at == 1764360001000
              && record.has_error && streq (record.error.code, "bot_failed")
              && record.error.has_exit_code && record.error.exit_code == 3);
    BM_CHECK (record.payload.obj && record.payload.obj->type == MSGPACK_OBJECT_MAP);
    BM_CHECK (!record.result.obj && !record.has_webhook && !record.worker.ptr);
    msgpack_unpacked_destroy (&unpacked);

    //  RETRY forgets the outcome; a result is taken over.
    bm_job_reset_outcome (job);
    BM_CHECK (job->attempts == 0 && !job->error_code && !job->error_message
              && !job->has_exit_code && job->finished_at == 0 && !job->result);
    bm_job_set_result (job, bm_memdup ("\xc3", 1), 1);
    BM_CHECK (job->result && job->result_size == 1);
    bm_packer_reset (&packer);
    bm_job_pack_record (&packer.pk, job, false);         //  LIST: no payload, no result
    msgpack_unpacked_init (&unpacked);
    BM_CHECK (msgpack_unpack_next (&unpacked, packer.sbuf.data, packer.sbuf.size, NULL)
              == MSGPACK_UNPACK_SUCCESS);
    BM_CHECK (bm_codec_record_decode (&unpacked.data, &record, &error) == 0
              && !record.payload.obj && !record.result.obj && !record.has_error);
    msgpack_unpacked_destroy (&unpacked);
    bm_packer_destroy (&packer);

    bm_job_destroy (&job);
    BM_CHECK (job == NULL);
    bm_job_destroy (&job);
    bm_service_destroy (&service);
    printf ("OK\n");
}

/*  bm_service.c - a bot type: its queue, its semaphore, dispatch.

    Majordomo's service: a priority queue of jobs (bm_heap, with bm_rank
    counting it per priority) and a semaphore of MAX_<TYPE>_BOTS permits; a
    job starts when its type has a free permit and a worker has credit.  */
#include "bm_broker_internal.h"

bm_service_t *
bm_service_new (const char *name, int64_t limit, int64_t max_queue)
{
    bm_service_t *self = (bm_service_t *) zmalloc (sizeof (bm_service_t));
    self->name = strdup (name);
    if (!self->name) {
        bm_error (NULL, "out of memory creating bot type %s", name);
        abort ();
    }
    self->limit = limit;
    self->max_queue = max_queue;
    self->queue = bm_heap_new (bm_job_queue_less, bm_job_queue_index);
    self->rank = bm_rank_new ();
    self->workers = zlistx_new ();
    self->rate_timer = -1;
    return self;
}

void
bm_service_destroy (bm_service_t **self_p)
{
    if (*self_p) {
        bm_service_t *service = *self_p;
        free (service->name);
        bm_heap_destroy (&service->queue);
        bm_rank_destroy (&service->rank);
        zlistx_destroy (&service->workers);
        zhashx_destroy (&service->bots_gone);
        zlistx_destroy (&service->kept [0]);
        zlistx_destroy (&service->kept [1]);
        free (service->rate_starts);
        free (service);
        *self_p = NULL;
    }
}

static void
s_service_gauges (bm_service_t *service)
{
    bm_series_set (service->m_queue, (double) bm_heap_size (service->queue));
    bm_series_set (service->m_usage, (double) service->usage);
    bm_series_set (service->m_waiting, (double) bm_service_waiting_for_permit (service));
}

//  Create the service; limit from MAX_<TYPE>_BOTS (read at start) or the
//  default.
bm_service_t *
bm_service_require (bm_broker_t *self, const char *name)
{
    bm_service_t *service = (bm_service_t *) zhashx_lookup (self->services, name);
    if (service)
        return service;
    service = bm_service_new (name, self->config.default_limit, self->config.max_queue);
    service->retry_attempts = self->config.retry_attempts;
    service->retry_backoff_ms = self->config.retry_backoff_ms;
    service->m_queue = bm_metric_series (self->mf_queue, name);
    service->m_usage = bm_metric_series (self->mf_usage, name);
    service->m_waiting = bm_metric_series (self->mf_waiting, name);
    service->m_limit = bm_metric_series (self->mf_limit, name);
    service->m_delayed = bm_metric_series (self->mf_delayed, name);
    service->m_queue_limit = bm_metric_series (self->mf_queue_limit, name);
    bm_series_set (service->m_queue_limit, (double) service->max_queue);
    //  Webhook deliveries are no bot executions: the bot_type series
    //  (executions, durations, submissions, waits, retries, workers) leave
    //  them out (NULL series ignore updates); the webhook service counts
    //  them, broker_webhook_managers_connected its workers.
    if (!streq (name, BM_WEBHOOK_TYPE)) {
        //  Present from the start at 0: a type no worker serves shows so.
        service->m_workers = bm_metric_series (self->mf_type_workers, name);
        service->m_submitted = bm_metric_series (self->mf_submitted, name);
        service->m_completed = bm_metric_series (self->mf_executions, name, "completed");
        service->m_failed = bm_metric_series (self->mf_executions, name, "failed");
        service->m_cancelled = bm_metric_series (self->mf_executions, name, "cancelled");
        service->m_duration = bm_metric_series (self->mf_duration, name);
        service->m_wait = bm_metric_series (self->mf_wait, name);
        service->m_retries = bm_metric_series (self->mf_retries, name);
        service->m_rate_limited = bm_metric_series (self->mf_rate_limited, name);
        for (int i = 0; bm_stats_limit_names [i]; i++)
            bm_metric_series (self->mf_limit_kills, name, bm_stats_limit_names [i]);
    }
    bm_series_set (service->m_limit, (double) service->limit);
    zhashx_insert (self->services, name, service);
    return service;
}

//  A job recovered as running and held for its worker keeps a permit:
//  adopted, it becomes usage; released or ended, the permit frees.
int64_t
bm_service_permits_free (const bm_service_t *service)
{
    return service->limit - service->usage - service->held;
}

//  Queued jobs that have a worker with free credit but no permit.
int64_t
bm_service_waiting_for_permit (bm_service_t *service)
{
    //  Ready jobs (the delayed ones are not in the queue) that cannot start
    //  because every permit is held: what "waiting for a semaphore" means
    //  to an operator, whatever credit the workers have.
    return bm_service_permits_free (service) <= 0? (int64_t) bm_heap_size (service->queue): 0;
}

//  --------------------------------------------------------------------------
//  The rate limit (RATE_<TYPE>): a sliding log of the last rate_max start
//  times.  A start is allowed when fewer than rate_max starts happened in
//  the rate_period_ms before it, so no window of that length ever holds
//  more than rate_max starts (a token bucket of burst N would allow up to
//  2N across a refill).  Each start is pushed once and dropped once: O(1)
//  amortized, rate_max * 8 bytes.

int
bm_service_rate_parse (const char *text, int64_t *max, int64_t *period_ms, char *error,
                       size_t error_size)
{
    *max = *period_ms = 0;
    if (!text || !*text || streq (text, "0"))
        return 0;                       //  Unlimited
    const char *p = text;
    int64_t n = 0;
    if (!isdigit ((unsigned char) *p)) {
        snprintf (error, error_size, "must be N/PERIOD, e.g. 10/s, 100/m, 5/200ms (0 = unlimited)");
        return -1;
    }
    while (isdigit ((unsigned char) *p) && n <= BM_RATE_MAX_STARTS)
        n = n * 10 + (*p++ - '0');
    if (isdigit ((unsigned char) *p) || n > BM_RATE_MAX_STARTS || n < 1) {
        snprintf (error, error_size, "N of N/PERIOD must be 1 to %d (0 alone = unlimited)",
                  BM_RATE_MAX_STARTS);
        return -1;
    }
    if (*p++ != '/') {
        snprintf (error, error_size, "must be N/PERIOD, e.g. 10/s, 100/m, 5/200ms (0 = unlimited)");
        return -1;
    }
    bool has_number = isdigit ((unsigned char) *p);
    int64_t count = 0;
    while (isdigit ((unsigned char) *p) && count <= BM_RATE_MAX_PERIOD_MS)
        count = count * 10 + (*p++ - '0');
    int64_t unit = 0;
    if (streq (p, "ms") || (has_number && !*p))
        unit = 1;
    else
    if (streq (p, "s"))
        unit = 1000;
    else
    if (streq (p, "m"))
        unit = 60000;
    else
    if (streq (p, "h"))
        unit = 3600000;
    if (!unit) {
        snprintf (error, error_size, "PERIOD of N/PERIOD must be s, m, h, ms, a number with one "
                  "of those (200ms, 2s) or a number of ms");
        return -1;
    }
    if (!has_number)
        count = 1;
    if (count < 1 || count > BM_RATE_MAX_PERIOD_MS / unit) {
        snprintf (error, error_size, "PERIOD of N/PERIOD must be 1 ms to 24 h");
        return -1;
    }
    *max = n;
    *period_ms = count * unit;
    return 0;
}

void
bm_service_rate_text (int64_t max, int64_t period_ms, char *buf, size_t size)
{
    const struct { int64_t ms; const char *name; } units [] = {
        { 3600000, "h" }, { 60000, "min" }, { 1000, "s" }, { 1, "ms" }
    };
    size_t i = 0;
    while (period_ms % units [i].ms)
        i++;
    snprintf (buf, size, "%" PRId64 " start%s in any %" PRId64 " %s", max, max == 1 ? "" : "s",
              period_ms / units [i].ms, units [i].name);
}

//  The newest starts recorded (up to the new max) stay in the window: a
//  change at run time opens no fresh window.
void
bm_service_set_rate (bm_service_t *service, int64_t max, int64_t period_ms)
{
    int64_t *starts = max > 0
        ? (int64_t *) bm_realloc_or_abort (NULL, (size_t) max * sizeof (int64_t), "a rate window")
        : NULL;
    int64_t keep = starts ? (service->rate_count < max ? service->rate_count : max) : 0;
    for (int64_t i = 0; i < keep; i++)
        starts [i] = service->rate_starts [(service->rate_oldest + service->rate_count - keep + i)
                                           % service->rate_max];
    free (service->rate_starts);
    service->rate_starts = starts;
    service->rate_max = max > 0 ? max : 0;
    service->rate_period_ms = max > 0 ? period_ms : 0;
    service->rate_oldest = 0;
    service->rate_count = keep;
}

int64_t
bm_service_rate_room (bm_service_t *service, int64_t now)
{
    if (!service->rate_max)
        return INT64_MAX;
    while (service->rate_count > 0
    &&     service->rate_starts [service->rate_oldest] <= now - service->rate_period_ms) {
        service->rate_oldest = (service->rate_oldest + 1) % service->rate_max;
        service->rate_count--;
    }
    return service->rate_max - service->rate_count;
}

void
bm_service_rate_started (bm_service_t *service, int64_t now)
{
    if (!service->rate_max)
        return;
    if (service->rate_count == service->rate_max) {
        //  Only when a start went past the limit (it never should): the
        //  oldest start leaves early.
        service->rate_oldest = (service->rate_oldest + 1) % service->rate_max;
        service->rate_count--;
    }
    service->rate_starts [(service->rate_oldest + service->rate_count) % service->rate_max] = now;
    service->rate_count++;
}

int64_t
bm_service_rate_next (const bm_service_t *service)
{
    return service->rate_count ? service->rate_starts [service->rate_oldest] + service->rate_period_ms
                               : 0;
}

//  The rate timer of a type fired: the window has room, dispatch again.
static int
s_on_rate_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    bm_broker_t *self = (bm_broker_t *) arg;
    bm_service_t *service = (bm_service_t *) zhashx_first (self->services);
    while (service) {
        if (service->rate_timer == timer_id) {
            service->rate_timer = -1;
            bm_dispatch (self, service);
            break;
        }
        service = (bm_service_t *) zhashx_next (self->services);
    }
    return 0;
}

//  Dispatch of a type stopped at its rate limit with a job, a permit and a
//  worker's credit ready: wake when the window has room again.
static void
s_rate_wait (bm_broker_t *self, bm_service_t *service, int64_t now)
{
    service->rate_blocked = true;
    int64_t at = bm_service_rate_next (service);
    if (!self->loop || (service->rate_timer != -1 && service->rate_timer_at == at))
        return;
    if (service->rate_timer != -1)
        zloop_timer_end (self->loop, service->rate_timer);
    int64_t wait = at > now ? at - now : 0;
    service->rate_timer = zloop_timer (self->loop, (size_t) wait, 1, s_on_rate_timer, self);
    service->rate_timer_at = at;
}

//  The queue and its per-priority counts change together.
void
bm_service_queue_push (bm_service_t *service, bm_job_t *job)
{
    bm_heap_push (service->queue, job);
    if (bm_rank_add (service->rank, job->priority))
        bm_error (job->id, "out of memory counting the queue of %s: positions are off",
                  service->name);
}

size_t
bm_service_queue_size (const bm_service_t *service)
{
    return bm_heap_size (service->queue);
}

bm_job_t *
bm_service_queue_pop (bm_service_t *service)
{
    bm_job_t *job = (bm_job_t *) bm_heap_pop (service->queue);
    if (job)
        bm_rank_remove (service->rank, job->priority);
    return job;
}

//  Take a job out of its queue, if it is in it.
void
bm_service_queue_remove (bm_service_t *service, bm_job_t *job)
{
    if (job->queue_index != SIZE_MAX) {
        bm_heap_remove (service->queue, job->queue_index);
        bm_rank_remove (service->rank, job->priority);
    }
}

//  A queued job's place in its queue, 1 = next: the jobs of a lower
//  priority number plus those of its own priority submitted before it.
//  A scan of the queue: for RETRY, not for every SUBMIT.
int64_t
bm_service_queue_position (bm_service_t *service, const bm_job_t *job)
{
    int64_t ahead = job->priority > 0 ? bm_rank_upto (service->rank, job->priority - 1) : 0;
    size_t size = bm_heap_size (service->queue);
    for (size_t i = 0; i < size; i++) {
        const bm_job_t *other = (const bm_job_t *) bm_heap_at (service->queue, i);
        if (other->priority == job->priority && other->seq < job->seq)
            ahead++;
    }
    return ahead + 1;
}

//  A JOB body {jobId, botType, payload, attempt, timeoutMs, deadline[,
//  webhook]}, alone or as an item of JOB_MANY.
static void
s_pack_job (bm_body_t *body, const bm_job_t *job)
{
    msgpack_pack_map (&body->pk, 6 + (job->wh && bm_job_is_delivery (job)));
    BM_PACK_KV_STR (&body->pk, "jobId", job->id);
    BM_PACK_KV_STR (&body->pk, "botType", job->service->name);
    BM_PACK_KEY (&body->pk, "payload");
    if (job->deps && job->deps->results)
        bm_deps_pack_payload (&body->sbuf, &body->pk, job);
    else
        msgpack_sbuffer_write (&body->sbuf, job->payload, job->payload_size);
    BM_PACK_KV_INT (&body->pk, "attempt", job->attempts);
    BM_PACK_KV_INT (&body->pk, "timeoutMs", job->timeout_ms);
    BM_PACK_KV_INT (&body->pk, "deadline", bm_now_ms () + job->timeout_ms);
    if (job->wh && bm_job_is_delivery (job)) {
        BM_PACK_KEY (&body->pk, "webhook");
        msgpack_sbuffer_write (&body->sbuf, job->wh, job->wh_size);
    }
}

//  A queued job (already out of the queue) given to a worker: its slot,
//  permit and deadline, before the JOB is sent.  The run it lost (lost,
//  last_worker) stays the job's until the JOB goes out: a JOB that
//  cannot be sent leaves it queued, that run's DONE still to be taken.
static void
s_job_assign (bm_broker_t *self, bm_job_t *job, bm_worker_entry_t *worker)
{
    if (job->deadline_index != SIZE_MAX) {
        //  Already running: a second deadline would outlive the job.
        bm_error (job->id, "dispatched while it still runs (state %s): its old deadline dropped",
                  bm_job_state_names [job->state]);
        bm_heap_remove (self->deadlines, job->deadline_index);
    }
    job->state = JOB_RUNNING;
    job->attempts++;
    job->has_exit_code = false;
    bm_job_set_log (job, NULL, 0);          //  Each run starts without one
    job->worker = worker;
    bm_set_str (&job->worker_name, worker->name);
    job->started_at = bm_now_ms ();
    job->adopted = false;
    job->waits = false;
    job->deadline = bm_mono_ms () + job->timeout_ms;
    bm_heap_push (self->deadlines, job);
    bm_joblist_append (&worker->jobs, job);
    worker->running++;
    job->service->usage++;
}

//  The job runs on its worker now: an earlier run it lost is no longer
//  its own.
static void
s_job_run_taken (bm_job_t *job)
{
    bm_set_str (&job->last_worker, NULL);
    job->lost = false;
}

void
bm_job_adopt (bm_broker_t *self, bm_job_t *job, bm_worker_entry_t *worker)
{
    bm_service_queue_remove (job->service, job);
    int64_t recorded_start = job->held_started_at;
    bm_job_set_held (job, false);
    int64_t attempts = job->attempts;
    s_job_assign (self, job, worker);
    //  The attempt the worker runs: the one recorded, or the first when its
    //  dispatch had not reached Redis yet.
    job->attempts = attempts > 0 ? attempts : 1;
    //  It began before now: when its record has that, until its DONE says
    //  (s_run_finished_at).
    if (recorded_start > 0)
        job->started_at = recorded_start;
    job->adopted = true;
    s_job_run_taken (job);
    job->started_mono = bm_mono_ms ();
    job->running_saved = false;
    bm_jobstore_persist_state (self, job);
    s_service_gauges (job->service);
    bm_info (job->id, "adopted: %s reports it runs attempt %" PRId64 " (not dispatched again)",
             worker->name, job->attempts);
}

//  Its JOB went out (sent) or not (back to the queue as if never
//  dispatched).
static void
s_job_sent (bm_broker_t *self, bm_job_t *job, bool sent)
{
    if (!sent) {
        bm_job_unassign (self, job);
        job->attempts--;
        job->state = JOB_QUEUED;
        job->progress = job->started_at = 0;
        bm_set_str (&job->worker_name, NULL);
        bm_service_queue_push (job->service, job);
        return;
    }
    s_job_run_taken (job);
    BM_JOB_EVENT (self, job, BM_EV_ACTIVE, NULL, false);
    int64_t now = bm_mono_ms ();
    if (job->service->rate_max) {
        bm_service_rate_started (job->service, bm_mono_ms_unheld ());
        if (job->service->rate_blocked) {
            job->service->rate_limited++;
            bm_series_inc (job->service->m_rate_limited);
        }
    }
    bm_series_observe (job->service->m_wait, (now - job->queued_mono) / 1000.0);
    //  Most jobs end sooner than BROKER_SAVE_RUNNING_MS: their running
    //  state goes to Redis with their outcome; bm_jobstore_save_running writes it for
    //  the others.
    job->started_mono = now;
    job->running_saved = false;
    if (self->config.save_running_ms == 0)
        bm_jobstore_persist_state (self, job);
    bm_debug (job->id, "dispatched to %s (attempt %" PRId64 ")", job->worker_name, job->attempts);
}

//  Start a queued job (already out of the queue) on a worker.
static void
s_job_start (bm_broker_t *self, bm_job_t *job, bm_worker_entry_t *worker)
{
    s_job_assign (self, job, worker);
    //  Frame 2: the JOB body
    bm_body_t body;
    bm_body_init (self, &body);
    s_pack_job (&body, job);
    int rc = bm_broker_send_worker (self, worker, BM_JOB, &body);
    bm_body_free (&body);
    s_job_sent (self, job, rc == 0);
}

//  True if the worker was told to stop a run of this job that has not
//  ended yet: a JOB for it would be taken for that run, whose DONE would
//  end the new attempt.
static bool
s_worker_stopping (bm_worker_entry_t *worker, const bm_job_t *job)
{
    return zlistx_size (worker->stopping) > 0
        && bm_worker_entry_stopping_holds (worker, job->id);
}

//  Start as many queued jobs on a worker that takes batches as its free
//  credit, the type's permits, BM_MAX_BATCH and the frame size allow, in
//  one JOB_MANY {jobs: [JOB body, ...]}; one job goes as a JOB.
static void
s_job_start_many (bm_broker_t *self, bm_service_t *service, bm_worker_entry_t *worker)
{
    int64_t count = worker->credit - worker->running;
    if (count > (int64_t) bm_heap_size (service->queue))
        count = (int64_t) bm_heap_size (service->queue);
    if (count > bm_service_permits_free (service))
        count = bm_service_permits_free (service);
    if (count > BM_MAX_BATCH)
        count = BM_MAX_BATCH;
    if (service->rate_max && count > bm_service_rate_room (service, bm_mono_ms_unheld ()))
        count = bm_service_rate_room (service, bm_mono_ms_unheld ());
    //  The body stays within the frame size the worker reads (MAX_FRAME_BYTES
    //  on both sides): a job's body is its payload (and webhook state) plus
    //  at most 512 bytes of id, type, keys and numbers.
    bm_job_t *jobs [BM_MAX_BATCH];
    size_t room = self->config.max_frame > 4096 ? self->config.max_frame - 4096 : 0, size = 16;
    int64_t taken = 0;
    while (taken < count) {
        const bm_job_t *next = (const bm_job_t *) bm_heap_peek (service->queue);
        size_t need = next->payload_size + next->wh_size + 512
                    + (next->deps && next->deps->results ? bm_deps_results_size (next->deps) : 0);
        if ((taken > 0 && size + need > room) || s_worker_stopping (worker, next))
            break;
        jobs [taken++] = bm_service_queue_pop (service);
        size += need;
    }
    if (taken == 1) {
        s_job_start (self, jobs [0], worker);
        return;
    }
    count = taken;
    bm_body_t body;
    bm_body_init_big (self, &body);
    msgpack_pack_map (&body.pk, 1);
    bm_pack_str (&body.pk, "jobs");
    msgpack_pack_array (&body.pk, (size_t) count);
    for (int64_t i = 0; i < count; i++) {
        s_job_assign (self, jobs [i], worker);
        s_pack_job (&body, jobs [i]);
    }
    int rc = bm_broker_send_worker (self, worker, BM_JOB_MANY, &body);
    bm_body_free (&body);
    for (int64_t i = 0; i < count; i++)
        s_job_sent (self, jobs [i], rc == 0);
}

//  The worker of this service with the most free credit that is not still
//  stopping a run of job (if not NULL), or NULL.
static bm_worker_entry_t *
s_pick_worker (bm_service_t *service, const bm_job_t *job)
{
    bm_worker_entry_t *best = NULL;
    int64_t best_free = 0;
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zlistx_first (service->workers);
    while (worker) {
        int64_t free_credit = worker->congested || worker->holding ? 0
                            : worker->credit - worker->running;
        if (free_credit > best_free && !(job && s_worker_stopping (worker, job))) {
            best = worker;
            best_free = free_credit;
        }
        worker = (bm_worker_entry_t *) zlistx_next (service->workers);
    }
    return best;
}

//  Dispatch as many jobs of this type as permits and credit allow.
void
bm_dispatch (bm_broker_t *self, bm_service_t *service)
{
    if (self->dispatch_held > 0) {
        if (!service->dispatch_pending) {
            if (self->dispatch_pending_count == self->dispatch_pending_alloc) {
                self->dispatch_pending_alloc = self->dispatch_pending_alloc
                                             ? 2 * self->dispatch_pending_alloc : 16;
                self->dispatch_pending = (bm_service_t **) bm_realloc_or_abort (
                    self->dispatch_pending, self->dispatch_pending_alloc * sizeof (bm_service_t *),
                    "the types waiting for dispatch");
            }
            self->dispatch_pending [self->dispatch_pending_count++] = service;
            service->dispatch_pending = true;
        }
        return;
    }
    //  A job whose only workers with credit are still stopping a run of it
    //  waits aside (until their DONE or RELEASE) while the jobs behind it go.
    bm_job_t *aside [BM_MAX_BATCH];
    size_t aside_count = 0;
    bool rate_blocked = false;
    while (bm_heap_size (service->queue) && bm_service_permits_free (service) > 0 && !self->stopping
           && !service->paused) {
        bm_job_t *next = (bm_job_t *) bm_heap_peek (service->queue);
        bm_worker_entry_t *worker = s_pick_worker (service, next);
        if (!worker) {
            if (aside_count == BM_MAX_BATCH || !s_pick_worker (service, NULL))
                break;
            aside [aside_count++] = bm_service_queue_pop (service);
            continue;
        }
        if (service->rate_max) {
            int64_t now = bm_mono_ms_unheld ();
            if (bm_service_rate_room (service, now) <= 0) {
                s_rate_wait (self, service, now);
                rate_blocked = true;
                break;
            }
        }
        if (worker->batch)
            s_job_start_many (self, service, worker);
        else
            s_job_start (self, bm_service_queue_pop (service), worker);
    }
    for (size_t i = 0; i < aside_count; i++)
        bm_service_queue_push (service, aside [i]);
    //  The starts made while the limit holds jobs back count as delayed by it.
    if (!rate_blocked)
        service->rate_blocked = false;
    s_service_gauges (service);
}

void
bm_dispatch_hold (bm_broker_t *self)
{
    self->dispatch_held++;
}

void
bm_dispatch_release (bm_broker_t *self)
{
    assert (self->dispatch_held > 0);
    if (--self->dispatch_held > 0)
        return;
    //  Services are never deleted, so the pointers held stay valid; a
    //  dispatch cannot mark another (nothing is held now).
    for (size_t i = 0; i < self->dispatch_pending_count; i++) {
        bm_service_t *service = self->dispatch_pending [i];
        service->dispatch_pending = false;
        bm_dispatch (self, service);
    }
    self->dispatch_pending_count = 0;
}

void
bm_dispatch_worker (bm_broker_t *self, bm_worker_entry_t *worker)
{
    for (int i = 0; i < worker->service_count; i++)
        bm_dispatch (self, worker->services [i]);
}

//  Hold a job for its worker, or end its hold: the held jobs of a type
//  keep permits of its semaphore.
void
bm_job_set_held (bm_job_t *job, bool held)
{
    if (job->held != held)
        job->service->held += held ? 1 : -1;
    job->held = held;
    if (!held)
        job->held_started_at = 0;
}

//  Put a job (back) in its queue.
void
bm_job_enqueue (bm_broker_t *self, bm_job_t *job)
{
    job->state = JOB_QUEUED;
    job->worker = NULL;
    bm_job_set_held (job, false);
    bm_job_clear_run (job);
    job->queued_mono = bm_mono_ms ();
    bm_service_queue_push (job->service, job);
    BM_JOB_EVENT (self, job, BM_EV_WAITING, NULL, false);
}

//  Take a running job off its worker: slot, permit and deadline.
void
bm_job_unassign (bm_broker_t *self, bm_job_t *job)
{
    bm_worker_entry_t *worker = job->worker;
    if (worker) {
        bm_joblist_remove (&worker->jobs, job);
        worker->running--;
        job->service->usage--;
        job->worker = NULL;
    }
    if (job->deadline_index != SIZE_MAX)
        bm_heap_remove (self->deadlines, job->deadline_index);
}

//  A running job goes back to the queue (its worker died, or released it).
void
bm_job_requeue (bm_broker_t *self, bm_job_t *job, const char *reason, const char *loss)
{
    bm_job_unassign (self, job);
    //  maxAttempts bounds the dispatches lost to workers; runs whose bot
    //  failed count against attempts instead (protocol.md section 4).
    if (job->attempts - job->failed_runs >= job->max_attempts) {
        char message [256];
        snprintf (message, sizeof message, "%s on dispatch %" PRId64 " of %" PRId64,
                  loss, job->attempts - job->failed_runs, job->max_attempts);
        bm_job_finish (self, job, JOB_FAILED, "worker_lost", message);
        return;
    }
    job->lost = !streq (reason, "released");
    if (bm_job_is_delivery (job) && job->lost)
        bm_delivery_lost (self, job);
    //  A released dispatch was taken back (not counted): the attempts
    //  named are those that count, of a delivery its HTTP attempts.
    if (bm_job_is_delivery (job)) {
        int64_t tried = bm_delivery_attempts (job);
        bm_info (job->id, "re-queued (%s) after %" PRId64 " delivery attempt%s", reason,
                 tried, tried == 1 ? "" : "s");
    }
    else
    if (job->lost)
        bm_info (job->id, "re-queued (%s) after attempt %" PRId64, reason, job->attempts);
    else
        bm_info (job->id, "re-queued (released), not counted: %" PRId64 " attempt%s so far",
                 job->attempts, job->attempts == 1 ? "" : "s");
    bm_series_inc (bm_metric_series (self->mf_redispatched, reason));
    if (job->lost)
        BM_JOB_EVENT (self, job, BM_EV_STALLED, reason, false);
    bm_job_enqueue (self, job);
    bm_jobstore_persist_state (self, job);
}

//  A type is known when it has a limit configured or a worker has served
//  it since the broker started or, as Redis's types record says, within
//  BROKER_TYPE_TTL_MS (protocol.md, SUBMIT).
bool
bm_service_known (const bm_service_t *service)
{
    return service->configured || service->served
        || (service->recorded_until && bm_now_ms () < service->recorded_until)
        || service->submitted > 0 || bm_heap_size (service->queue) > 0 || service->held > 0;
}

bool
bm_service_unserved (const bm_service_t *self)
{
    return zlistx_size (self->workers) == 0;
}

bool
bm_service_type_known (bm_broker_t *self, const char *name)
{
    bm_service_t *service = (bm_service_t *) zhashx_lookup (self->services, name);
    return service && bm_service_known (service);
}

bool
bm_types_waiting (bm_broker_t *self)
{
    return self->types_wait_until && bm_mono_ms () < self->types_wait_until;
}

const char *
bm_types_unknown_refusal (bm_broker_t *self)
{
    if (self->store && !self->recovered)
        return bm_stats_store_refusal (self);
    return bm_types_waiting (self) ? BM_TEXT_TYPES_WAIT : NULL;
}

//  --------------------------------------------------------------------------
//  Self test

void
bm_service_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_service: ");
    bm_service_t *service = bm_service_new ("python", 1, 100);
    BM_CHECK (service && streq (service->name, "python") && service->limit == 1);
    BM_CHECK (bm_service_queue_size (service) == 0 && !bm_service_queue_pop (service));
    BM_CHECK (!bm_service_known (service));

    //  The queue: lower priority number first, then submission order.
    struct { int64_t priority, seq; } order [] = { { 3, 1 }, { 1, 2 }, { 3, 3 }, { 0, 4 } };
    bm_job_t *jobs [4];
    for (int i = 0; i < 4; i++) {
        jobs [i] = bm_job_new ();
        snprintf (jobs [i]->id, sizeof jobs [i]->id, "j-%d", i + 1);
        jobs [i]->service = service;
        jobs [i]->priority = order [i].priority;
        jobs [i]->seq = order [i].seq;
        bm_service_queue_push (service, jobs [i]);
    }
    BM_CHECK (bm_service_queue_size (service) == 4 && bm_service_known (service));
    //  Places: j-4 (0), j-2 (1), j-1 (3, first), j-3 (3, second).
    BM_CHECK (bm_service_queue_position (service, jobs [3]) == 1);
    BM_CHECK (bm_service_queue_position (service, jobs [1]) == 2);
    BM_CHECK (bm_service_queue_position (service, jobs [0]) == 3);
    BM_CHECK (bm_service_queue_position (service, jobs [2]) == 4);
    BM_CHECK (bm_rank_upto (service->rank, 3) == 4 && bm_rank_upto (service->rank, 1) == 2);

    //  Removal keeps the order and the per-priority counts together;
    //  removing a job that is not queued changes nothing.
    bm_service_queue_remove (service, jobs [1]);
    BM_CHECK (jobs [1]->queue_index == SIZE_MAX && bm_service_queue_size (service) == 3);
    bm_service_queue_remove (service, jobs [1]);
    BM_CHECK (bm_service_queue_size (service) == 3 && bm_rank_upto (service->rank, 1) == 1);
    BM_CHECK (bm_service_queue_position (service, jobs [2]) == 3);
    BM_CHECK (bm_service_queue_pop (service) == jobs [3]);
    BM_CHECK (bm_service_queue_pop (service) == jobs [0]);
    BM_CHECK (bm_service_queue_pop (service) == jobs [2]);
    BM_CHECK (bm_service_queue_pop (service) == NULL && bm_rank_upto (service->rank, 3) == 0);

    //  Waiting for a permit: every queued job, while every permit is held,
    //  whatever credit the workers have.
    for (int i = 0; i < 3; i++)
        bm_service_queue_push (service, jobs [i]);
    zframe_t *identity = zframe_new ("w", 1);
    bm_worker_entry_t *worker = bm_worker_entry_new ("77", identity, "w-1", 2);
    zframe_destroy (&identity);
    zlistx_add_end (service->workers, worker);
    BM_CHECK (bm_service_waiting_for_permit (service) == 0);   //  A permit is free
    service->usage = 1;
    BM_CHECK (bm_service_waiting_for_permit (service) == 3);   //  All 3 queued
    worker->running = 2;
    BM_CHECK (bm_service_waiting_for_permit (service) == 3);   //  Credit does not matter
    service->usage = 0;
    service->held = 1;          //  A recovered job held for its worker
    BM_CHECK (bm_service_permits_free (service) == 0);
    BM_CHECK (bm_service_waiting_for_permit (service) == 3);
    service->held = 0;
    while (bm_service_queue_pop (service))
        ;
    bm_worker_entry_destroy (&worker);
    for (int i = 0; i < 4; i++)
        bm_job_destroy (&jobs [i]);

    //  RATE_<TYPE> values: N/PERIOD, 0 or empty unlimited, the rest refused.
    const struct { const char *text; int64_t max, period_ms; int rc; } rates [] = {
        { "10/s", 10, 1000, 0 }, { "100/m", 100, 60000, 0 }, { "5/200ms", 5, 200, 0 },
        { "2/h", 2, 3600000, 0 }, { "3/1500", 3, 1500, 0 }, { "1/2s", 1, 2000, 0 },
        { "0", 0, 0, 0 }, { "", 0, 0, 0 }, { "24/24h", 24, 86400000, 0 },
        { "abc", 0, 0, -1 }, { "0/s", 0, 0, -1 }, { "-1/s", 0, 0, -1 }, { "5", 0, 0, -1 },
        { "5/", 0, 0, -1 }, { "5/0s", 0, 0, -1 }, { "5/0", 0, 0, -1 }, { "5/x", 0, 0, -1 },
        { "5/s ", 0, 0, -1 }, { "100001/s", 0, 0, -1 }, { "1/25h", 0, 0, -1 },
        { "99999999999999999999/s", 0, 0, -1 }, { "1/99999999999999999999ms", 0, 0, -1 },
    };
    for (size_t i = 0; i < sizeof rates / sizeof rates [0]; i++) {
        int64_t max = -1, period = -1;
        char why [160] = "";
        int rc = bm_service_rate_parse (rates [i].text, &max, &period, why, sizeof why);
        if (rc != rates [i].rc || (rc == 0 && (max != rates [i].max || period != rates [i].period_ms)))
            fprintf (stderr, "\nrate '%s': rc %d, %" PRId64 "/%" PRId64 " ms\n", rates [i].text, rc,
                     max, period);
        BM_CHECK (rc == rates [i].rc && (rc || (max == rates [i].max && period == rates [i].period_ms)));
        BM_CHECK (rc == 0 || *why);
    }
    //  The sliding window: 3 starts in any 1000 ms.
    BM_CHECK (bm_service_rate_room (service, 0) == INT64_MAX);
    bm_service_set_rate (service, 3, 1000);
    BM_CHECK (bm_service_rate_room (service, 5000) == 3);
    bm_service_rate_started (service, 5000);
    bm_service_rate_started (service, 5100);
    bm_service_rate_started (service, 5200);
    BM_CHECK (bm_service_rate_room (service, 5999) == 0 && bm_service_rate_next (service) == 6000);
    BM_CHECK (bm_service_rate_room (service, 6000) == 1 && bm_service_rate_next (service) == 6100);
    bm_service_rate_started (service, 6000);
    BM_CHECK (bm_service_rate_room (service, 6099) == 0);
    BM_CHECK (bm_service_rate_room (service, 7300) == 3);
    //  A change keeps the newest starts: 7400 and 7500 stay under 2/1000.
    bm_service_rate_started (service, 7300);
    bm_service_rate_started (service, 7400);
    bm_service_rate_started (service, 7500);
    bm_service_set_rate (service, 2, 1000);
    BM_CHECK (service->rate_count == 2 && bm_service_rate_room (service, 8399) == 0);
    BM_CHECK (bm_service_rate_next (service) == 8400 && bm_service_rate_room (service, 8400) == 1);
    bm_service_set_rate (service, 0, 0);
    BM_CHECK (bm_service_rate_room (service, 7300) == INT64_MAX && !service->rate_starts);
    bm_service_destroy (&service);
    BM_CHECK (service == NULL);
    printf ("OK\n");
}

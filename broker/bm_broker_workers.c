/*  bm_broker_workers.c - workers as the broker sees them, and BMW01.

    READY registers a worker (Majordomo's worker: identity, services,
    credit, expiry); DONE, PROGRESS, RELEASE, HEARTBEAT and DISCONNECT are
    handled here (protocol.md section 5).  */
#include "bm_broker_internal.h"
#include "bm_codec_batch.h"

//  Unlink a worker everywhere, re-queue its jobs, free it.
void
bm_workers_delete (bm_broker_t *self, bm_worker_entry_t *worker, const char *reason)
{
    bm_log (worker->hushed ? BM_DEBUG : BM_INFO, NULL, "worker %s gone (%s), %zu jobs re-queued",
            worker->name, reason, bm_joblist_size (&worker->jobs));
    for (int i = 0; i < worker->service_count; i++) {
        bm_service_t *service = worker->services [i];
        void *handle = zlistx_find (service->workers, worker);
        if (handle)
            zlistx_delete (service->workers, handle);
        bm_stats_worker_gone (service, worker);
    }
    bm_job_t *job;
    while ((job = bm_joblist_first (&worker->jobs))) {
        //  With CURVE, only the key that ran it may reclaim the lost run.
        if (worker->pubkey [0])
            bm_lost_keys_put (self->lost_keys, job->id, worker->pubkey);
        if (job->waits) {
            //  It waited there for a process and never began (its worker
            //  says started before it writes the job to one): the
            //  dispatch is not counted, as for a RELEASE.
            job->attempts--;
            bm_info (job->id, "waited on worker %s for a process and never began: its "
                     "dispatch is not counted", worker->name);
        }
        bm_job_requeue (self, job, "worker_lost", "the worker running the job was lost");
    }
    bm_stopping_t *stop;
    while ((stop = (bm_stopping_t *) zlistx_first (worker->stopping))) {
        bm_service_t *service = bm_worker_entry_stopping_take (worker, stop->id);
        if (service)                    //  None: a job being looked up
            service->usage--;
    }
    bm_service_t *services [BM_MAX_WORKER_TYPES];
    int count = worker->service_count;
    memcpy (services, worker->services, sizeof services);
    bm_stats_worker_counted (self, worker, -1);
    zhashx_delete (self->workers, worker->key);     //  Frees it
    for (int i = 0; i < count; i++)
        bm_dispatch (self, services [i]);
}

//  A worker body that does not decode: NACK naming the field, one log
//  line, counted (broker_frames_rejected_total{reason="bad_request"}).
static void
s_worker_refuse (bm_broker_t *self, zframe_t *identity, const char *name, int command,
                 const bm_codec_error_t *error)
{
    bm_broker_log_refusal (self, identity, BM_PEER_WORKER, name, command, NULL, error->code,
                           error->message);
    bm_series_inc (bm_metric_series (self->mf_frames, error->code));
    bm_broker_send_worker_simple (self, identity, BM_NACK, error->code, error->message);
}

static bm_job_t *s_worker_job (bm_broker_t *self, bm_worker_entry_t *worker, const char *id);
static void s_reported_lookup (bm_broker_t *self, bm_worker_entry_t *worker, const char *id);

//  A job a worker says it runs (READY running) that the broker cannot let
//  it finish: CANCEL {jobId, reason}; the worker stops the bot and its
//  DONE is answered NACK not_owner.  For a job the broker knows, the
//  slot stays taken until that DONE.
static void
s_send_cancel (bm_broker_t *self, bm_worker_entry_t *worker, const char *id, const char *reason)
{
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 2);
    bm_pack_kv_str (&body.pk, "jobId", id);
    bm_pack_kv_str (&body.pk, "reason", reason);
    bm_broker_send_worker (self, worker, BM_WCANCEL, &body);
    bm_body_free (&body);
}

static void
s_reported_cancel (bm_broker_t *self, bm_worker_entry_t *worker, const char *id,
                   const bm_job_t *job, const char *reason)
{
    if (job) {
        bm_worker_entry_stopping_add (worker, id, job->service, reason);
        worker->running++;
        job->service->usage++;
    }
    s_send_cancel (self, worker, id, reason);
}

//  With CURVE, only the key that ran a job's lost run (bm_lost_keys) may
//  speak for that run: its DONE, or its READY running.  When no key is
//  kept (the broker restarted or took over, from Redis) the job's record
//  must name this worker as the one that ran it; a run whose key was
//  dropped, or a job dispatched again since, names none.  Without CURVE
//  any worker is trusted.
static bool
s_key_ran_lost_run (bm_broker_t *self, bm_worker_entry_t *worker, const bm_job_t *job)
{
    if (!worker->pubkey [0])
        return true;
    const char *ran_key = bm_lost_keys_lookup (self->lost_keys, job->id);
    if (ran_key)
        return streq (ran_key, worker->pubkey);
    return job->last_worker && streq (job->last_worker, worker->name);
}

//  A job the worker reports running, once the queues are recovered:
//  adopted when queued (the new leader recovered it from Redis, or the
//  worker was declared dead meanwhile and it waits for another run),
//  kept when it already runs there, else cancelled on that worker.
static void
s_reported_resolve (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    if (bm_worker_entry_stopping_holds (worker, id)) {
        //  Told to stop already (a READY again): its slot is held once.
        bm_debug (id, "%s reports running a job it was told to stop", worker->name);
        return;
    }
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    if (job && job->state == JOB_RUNNING) {
        if (s_worker_job (self, worker, id))
            return;                     //  Its own (moved from its old entry)
        bm_warn (id, "%s reports running a job that runs on %s: it runs twice; "
                 "CANCEL to %s", worker->name, job->worker_name ? job->worker_name : "another worker",
                 worker->name);
        s_reported_cancel (self, worker, id, job, "duplicate");
    }
    else
    if (job && job->state == JOB_QUEUED && s_key_ran_lost_run (self, worker, job)) {
        bm_lost_keys_delete (self->lost_keys, id);
        bm_job_adopt (self, job, worker);
    }
    else
    if (job && job->state == JOB_QUEUED) {
        bm_warn (id, "%s reports running a queued job whose lost run its CURVE key did not run: "
                 "not adopted; CANCEL", worker->name);
        s_reported_cancel (self, worker, id, job, "not_owner");
    }
    else
    if (!job && self->store)
        s_reported_lookup (self, worker, id);
    else {
        bm_warn (id, "%s reports running a job that is %s: CANCEL", worker->name,
                 !job ? "not known" : bm_job_terminal (job) ? "finished" : "not due yet");
        s_reported_cancel (self, worker, id, job, !job ? "unknown" : "finished");
    }
}

//  The live worker named name whose slot for id waits for a lookup, or NULL.
static bm_worker_entry_t *
s_lookup_holder (bm_broker_t *self, const char *name, const char *id)
{
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    for (; worker; worker = (bm_worker_entry_t *) zhashx_next (self->workers)) {
        const char *reason = streq (worker->name, name)
                           ? bm_worker_entry_stopping_reason (worker, id) : NULL;
        if (reason && !*reason)
            return worker;
    }
    return NULL;
}

//  The slots freed by lookups Redis could not answer: every worker is
//  dispatched to on the next turn, out of the store's callback (the read
//  may be failed as the store drops its connection or is destroyed).
static int
s_on_lookup_dispatch (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    self->lookup_dispatch_timer = 0;    //  One-shot: zloop ends it
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    for (; worker; worker = (bm_worker_entry_t *) zhashx_next (self->workers))
        bm_dispatch_worker (self, worker);
    return 0;
}

static void
s_lookup_dispatch_soon (bm_broker_t *self)
{
    if (self->lookup_dispatch_timer > 0 || !self->loop || self->stopping)
        return;
    int timer = zloop_timer (self->loop, 0, 1, s_on_lookup_dispatch, self);
    self->lookup_dispatch_timer = timer > 0 ? timer : 0;
}

//  A reported job looked up: the worker that holds the slot for it, by name
//  (a connection that replaces it under that name takes the slot over).
typedef struct {
    char name [BM_MAX_ID_LEN + 1];
    char id [BM_MAX_ID_LEN + 1];
} s_lookup_t;

static void
s_on_lookup (bm_broker_t *self, const bm_job_t *job, bool answered, void *arg)
{
    s_lookup_t *lookup = (s_lookup_t *) arg;
    const char *id = lookup->id;
    bm_worker_entry_t *worker = s_lookup_holder (self, lookup->name, id);
    if (!worker)
        //  Its DONE or RELEASE came first (the slot went with it), or the
        //  worker is gone.
        bm_debug (id, "looked up for %s, which no longer runs it", lookup->name);
    else {
        bm_worker_entry_stopping_take (worker, id);
        worker->running--;
        if (job && job == bm_jobtab_lookup (self->jobs, id))
            s_reported_resolve (self, worker, id);      //  In memory now (a RETRY)
        else
        if (job && bm_job_terminal (job)) {
            bm_warn (id, "%s reports running a job that is finished (%s; only Redis holds it): "
                     "CANCEL", worker->name, bm_job_state_names [job->state]);
            s_reported_cancel (self, worker, id, job, "finished");
        }
        else {
            bm_warn (id, "%s reports running a job that is not known%s: CANCEL", worker->name,
                     !answered ? " (Redis could not be asked)"
                     : job ? " (its record is not of a finished job)" : "");
            s_send_cancel (self, worker, id, "unknown");
        }
        //  Not from within the store when Redis could not answer (an
        //  error reply, or the read failed as the connection was dropped
        //  for silence, REDIS_TIMEOUT_MS, or the store destroyed): the
        //  freed slot is dispatched to on the next turn.
        if (answered)
            bm_dispatch_worker (self, worker);
        else
            s_lookup_dispatch_soon (self);
    }
    free (lookup);
}

//  A job the worker reports running that the broker does not hold in
//  memory: it may have finished before a restart, or left memory since,
//  and only Redis holds it.  Its record is read (bm_job_read); meanwhile
//  the worker's slot for it is held (a stopping entry with no type and an
//  empty reason: no JOB takes it, and a DONE or RELEASE for the job frees
//  it).  Then CANCEL finished for a job that has ended (its slot, and a
//  permit of its type, taken until the worker's DONE, as for a finished
//  job in memory), else CANCEL unknown (the slot is free).
static void
s_reported_lookup (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    bm_worker_entry_stopping_add (worker, id, NULL, "");
    worker->running++;
    s_lookup_t *lookup = (s_lookup_t *) zmalloc (sizeof (s_lookup_t));
    snprintf (lookup->name, sizeof lookup->name, "%s", worker->name);
    snprintf (lookup->id, sizeof lookup->id, "%s", id);
    bm_job_read (self, id, s_on_lookup, lookup);
}

//  The queues are rebuilt (or there is no Redis to rebuild them from).
static bool
s_recovered (bm_broker_t *self)
{
    return !self->store || self->recovered;
}

static bm_job_t *s_worker_job (bm_broker_t *self, bm_worker_entry_t *worker, const char *id);

//  The worker's job waits there for a process (prefetched): no timeout
//  until it begins (PROGRESS {started: true} arms it again).
static void
s_job_waits (bm_broker_t *self, bm_worker_entry_t *worker, bm_job_t *job)
{
    if (job->deadline_index != SIZE_MAX)
        bm_heap_remove (self->deadlines, job->deadline_index);
    job->waits = true;
    bm_debug (job->id, "waits on worker %s for a process: no timeout until it begins",
              worker->name);
    if (job->started_at) {
        //  Not started: its record says so until PROGRESS {started: true}.
        //  Written only over a running record Redis already holds; else
        //  the record still says queued, and the next write of the run
        //  (its start, or BROKER_SAVE_RUNNING_MS) carries no startedAt.
        job->started_at = 0;
        if (job->running_saved)
            bm_jobstore_persist_state (self, job);
    }
}

//  worker->reported's value for a job whose worker said, before the
//  recovery reached it, that it waits there for a process (PROGRESS
//  {waiting: true} follows READY after a reconnect); else the worker.
static char s_reported_waits;

//  A job of READY's running that the recovery reached (or ended without):
//  resolved, and once adopted, kept without a timeout if it waits.
static void
s_reported_claim (bm_broker_t *self, bm_worker_entry_t *worker, const char *id, bool waits)
{
    s_reported_resolve (self, worker, id);
    bm_job_t *job = waits ? s_worker_job (self, worker, id) : NULL;
    if (job)
        s_job_waits (self, worker, job);
}

//  READY's running, on a worker's first READY: each job resolved now, or
//  kept until recovery has brought it back (or ended without it).
static void
s_worker_reported (bm_broker_t *self, bm_worker_entry_t *worker, const bm_codec_ready_t *ready)
{
    for (int i = 0; i < ready->running_count; i++) {
        const msgpack_object_str *str = &ready->running->via.array.ptr [i].via.str;
        char id [BM_MAX_ID_LEN + 1];
        memcpy (id, str->ptr, str->size);
        id [str->size] = 0;
        if (s_recovered (self) || bm_jobtab_lookup (self->jobs, id))
            s_reported_resolve (self, worker, id);
        else {
            if (!worker->reported)
                worker->reported = zhashx_new ();
            zhashx_insert (worker->reported, id, worker);
        }
    }
    if (worker->reported)
        bm_info (NULL, "worker %s runs %zu job(s) not recovered yet: resolved as recovery goes",
                 worker->name, zhashx_size (worker->reported));
}

static void s_early_done_take (bm_broker_t *self, const char *id);
static void s_early_done_unrecovered (bm_broker_t *self, const char *id);

void
bm_workers_claim_recovered (bm_broker_t *self, bm_job_t *job)
{
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    for (; worker; worker = (bm_worker_entry_t *) zhashx_next (self->workers))
        if (worker->reported && zhashx_lookup (worker->reported, job->id)) {
            bool waits = zhashx_lookup (worker->reported, job->id) == &s_reported_waits;
            zhashx_delete (worker->reported, job->id);
            s_reported_claim (self, worker, job->id, waits);
            break;
        }
    s_early_done_take (self, job->id);
}

void
bm_workers_recovery_done (bm_broker_t *self)
{
    zlistx_t *all = zlistx_new ();
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    for (; worker; worker = (bm_worker_entry_t *) zhashx_next (self->workers))
        if (worker->reported)
            zlistx_add_end (all, worker);
    while ((worker = (bm_worker_entry_t *) zlistx_detach (all, NULL))) {
        zhashx_t *reported = worker->reported;
        worker->reported = NULL;
        zlistx_t *ids = zhashx_keys (reported);
        for (const char *id = (const char *) zlistx_first (ids); id;
             id = (const char *) zlistx_next (ids))
            s_reported_claim (self, worker, id,
                              zhashx_lookup (reported, id) == &s_reported_waits);
        zlistx_destroy (&ids);
        zhashx_destroy (&reported);
    }
    zlistx_destroy (&all);
    //  The DONEs of jobs the recovery did not bring back: they had ended
    //  (a delivered webhook's record is deleted), or Redis never had them.
    zlistx_t *ids = self->early_dones ? zhashx_keys (self->early_dones) : NULL;
    size_t unrecovered = ids ? zlistx_size (ids) : 0;
    for (const char *id = ids ? (const char *) zlistx_first (ids) : NULL; id;
         id = (const char *) zlistx_next (ids))
        s_early_done_unrecovered (self, id);
    zlistx_destroy (&ids);
    zhashx_destroy (&self->early_dones);
    if (self->early_dones_kept)
        bm_info (NULL, "recovery: %zu DONE(s) came before it reached their jobs and were kept "
                 "(a DONE sent again counts again); %zu were of jobs it did not bring back",
                 self->early_dones_kept, unrecovered);
    self->early_dones_kept = 0;
}

//  A CURVE key as the logs show it: its first 8 characters.
static const char *
s_short_key (const char *key, char *buf, size_t size)
{
    snprintf (buf, size, "%.8s", key && *key ? key : "(none)");
    return buf;
}

//  A live worker entry (another connection) that goes by this name, or NULL.
static bm_worker_entry_t *
s_worker_named (bm_broker_t *self, const char *name, const char *key)
{
    bm_worker_entry_t *other = (bm_worker_entry_t *) zhashx_first (self->workers);
    for (; other; other = (bm_worker_entry_t *) zhashx_next (self->workers))
        if (streq (other->name, name) && !streq (other->key, key))
            return other;
    return NULL;
}

//  A worker's first READY, with CURVE: refused (NACK, logged, counted)
//  when its key is not in CURVE_WORKERS_DIR (not_a_worker) or when a live
//  worker registered the same name with another key (name_in_use): a
//  worker name is bound to the key that registered it, and only that key
//  finishes its jobs.  True if refused.
static bool
s_ready_refused (bm_broker_t *self, zframe_t *identity, const char *name)
{
    if (!self->peer_key [0])
        return false;                   //  No CURVE: names are not bound
    const char *code = NULL;
    char message [200];
    if (self->worker_certs && !zcertstore_lookup (self->worker_certs, self->peer_key)) {
        code = "not_a_worker";
        snprintf (message, sizeof message, "this key (%.8s) is not in the broker's "
                  "CURVE_WORKERS_DIR: it may not act as a worker", self->peer_key);
    }
    else {
        char key [2 * 256 + 1];
        bm_broker_peer_key (identity, key);
        bm_worker_entry_t *other = s_worker_named (self, name, key);
        if (!other || streq (other->pubkey, self->peer_key))
            return false;
        char theirs [16];
        code = "name_in_use";
        snprintf (message, sizeof message, "worker name %s is registered by another key "
                  "(%s), still connected; this key is %.8s", name,
                  s_short_key (other->pubkey, theirs, sizeof theirs), self->peer_key);
    }
    bm_broker_log_refusal (self, identity, BM_PEER_WORKER, name, BM_READY, NULL, code, message);
    bm_series_inc (bm_metric_series (self->mf_frames, code));
    bm_broker_send_worker_simple (self, identity, BM_NACK, code, message);
    return true;
}

//  A name for a worker whose READY gave none: "worker-" and its whole
//  routing id in hex, which no other connection has while this one is
//  connected.  A routing id too long for a name, or a name a live worker
//  chose for itself, gets a numbered suffix: two live workers never share
//  a name the broker made.
static void
s_generated_name (bm_broker_t *self, const char *key, char *name, size_t size)
{
    bool whole = strlen ("worker-") + strlen (key) < size;
    snprintf (name, size, "worker-%s", key);
    for (unsigned n = 2; !whole || s_worker_named (self, name, key); n++) {
        snprintf (name, size, "worker-%.100s-%u", key, n);
        whole = true;
    }
}

//  Tell a worker the name the broker gave it: HEARTBEAT {name}, sent as
//  its READY is taken, so that it can READY under that name when it
//  reconnects (and have its running jobs back).
static void
s_tell_name (bm_broker_t *self, bm_worker_entry_t *worker)
{
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 1);
    bm_pack_kv_str (&body.pk, "name", worker->name);
    bm_broker_send_worker (self, worker, BM_HEARTBEAT, &body);
    bm_body_free (&body);
}

//  A routing key (hex) as the logs show it: its first 16 characters.
static const char *
s_id_short (const char *key, char buf [33])
{
    snprintf (buf, 33, "%.16s", key);
    return buf;
}

//  Who a worker connection is, for the logs and DISCONNECT's by: "pid N
//  at ADDRESS" ("pid N" when the address is unknown), "" when its READY
//  gave no pid.
static const char *
s_who (const bm_worker_entry_t *worker, char who [BM_NAME_WHO_LEN])
{
    if (!worker->pid)
        who [0] = 0;
    else
    if (worker->peer [0])
        snprintf (who, BM_NAME_WHO_LEN, "pid %" PRId64 " at %s", worker->pid, worker->peer);
    else
        snprintf (who, BM_NAME_WHO_LEN, "pid %" PRId64, worker->pid);
    return who;
}

//  A new connection under a live worker's name replaces the old one (a
//  reconnect or a restart; or another process using the name).  The jobs
//  the new READY lists in running move to the new entry as they run; the
//  old connection is told DISCONNECT {reason: "replaced", by} and deleted
//  as if it died: the jobs left on it are queued again.  Two live
//  processes under one name take it from each other again and again: the
//  name's streak tells (a replaced process came back), and the streak
//  logs one ERROR and then debug lines, not a line a replacement.
static void
s_worker_replace (bm_broker_t *self, bm_worker_entry_t *old, bm_worker_entry_t *worker,
                  const bm_codec_ready_t *ready)
{
    size_t moved = 0;
    for (int i = 0; i < ready->running_count; i++) {
        const msgpack_object_str *str = &ready->running->via.array.ptr [i].via.str;
        char id [BM_MAX_ID_LEN + 1];
        memcpy (id, str->ptr, str->size);
        id [str->size] = 0;
        bm_job_t *job = s_worker_job (self, old, id);
        const char *reason = job ? NULL : bm_worker_entry_stopping_reason (old, id);
        if (job) {
            bm_joblist_remove (&old->jobs, job);
            old->running--;
            job->worker = worker;
            bm_joblist_append (&worker->jobs, job);
            worker->running++;
            moved++;
        }
        else
        if (reason) {
            //  A run the old connection was told to stop, its CANCEL
            //  perhaps unread: its slot moves over (taken until its DONE)
            //  and the new connection is told again.
            char why [sizeof ((bm_stopping_t *) 0)->reason];
            snprintf (why, sizeof why, "%s", reason);
            bm_service_t *service = bm_worker_entry_stopping_take (old, id);
            old->running--;
            bm_worker_entry_stopping_add (worker, id, service, why);
            worker->running++;
            if (*why)                   //  Else being looked up: the answer goes here
                s_send_cancel (self, worker, id, why);
            moved++;
        }
    }
    char who [BM_NAME_WHO_LEN], old_who [BM_NAME_WHO_LEN];
    s_who (worker, who);
    s_who (old, old_who);
    worker->streak = old->streak;
    int64_t since_ms = worker->streak.last_ms ? bm_mono_ms () - worker->streak.last_ms : -1;
    bool flaps = bm_name_streak_replace (&worker->streak, bm_mono_ms (), who, old_who);
    bm_series_inc (bm_metric_series (self->mf_replaced, flaps ? "duplicate_name" : "reconnect"));
    int64_t quiet_ms = bm_now_ms () - old->last_seen;
    char old_id [33], new_id [33];
    char text [600];
    snprintf (text, sizeof text, "worker %s: connection %s%s%s%s replaces connection %s%s%s%s, "
              "heard from %" PRId64 " ms ago: %zu running job(s) listed move over, %zu re-queued",
              worker->name, s_id_short (worker->key, new_id),
              *who ? " (" : "", who, *who ? ")" : "",
              s_id_short (old->key, old_id), *old_who ? " (" : "", old_who, *old_who ? ")" : "",
              quiet_ms, moved, bm_joblist_size (&old->jobs));
    if (flaps && !worker->streak.said) {
        //  Once a streak: the cause and the fix.  A webhook manager takes
        //  its name from WEBHOOK_NAME, a worker from WORKER_NAME.
        worker->streak.said = true;
        bool manager = worker->service_count == 1
                    && streq (worker->services [0]->name, BM_WEBHOOK_TYPE);
        bm_error (NULL, "%s. Two live processes use the worker name %s and keep replacing "
                  "each other (%s%s took it back %" PRId64 " ms after it was replaced; "
                  "replaced %" PRId64 " times in a row); their running jobs are queued "
                  "again each time. Give each one a distinct %s. Further "
                  "replacements of this name are logged at debug level until none for %d s "
                  "(broker_workers_replaced_total{reason=\"duplicate_name\"} counts them)",
                  text, worker->name, *who ? who : "a connection with no pid",
                  *who ? "" : "", since_ms, worker->streak.count,
                  manager ? "WEBHOOK_NAME" : "WORKER_NAME", BM_NAME_STREAK_QUIET_MS / 1000);
    }
    else
    if (flaps || worker->streak.said)
        bm_debug (NULL, "%s", text);
    else
    //  Heard from lately, the old connection may be another live process
    //  under the same name: worth a warning.
    if (quiet_ms < self->config.heartbeat_ms * self->config.liveness)
        bm_warn (NULL, "%s (a reconnect or restart, or another process using the name)", text);
    else
        bm_info (NULL, "%s", text);
    bm_body_t body;
    bm_body_init (self, &body);
    //  Frame 2: {reason: "replaced", by?: who took the name}
    msgpack_pack_map (&body.pk, *who ? 2 : 1);
    bm_pack_kv_str (&body.pk, "reason", "replaced");
    if (*who)
        bm_pack_kv_str (&body.pk, "by", who);
    //  Its socket is often closed already (a reconnect): the send then
    //  fails, and a congested entry's failure is not logged.
    old->congested = true;
    bm_broker_send_worker (self, old, BM_DISCONNECT, &body);
    bm_body_free (&body);
    old->hushed = worker->streak.said;
    bm_workers_delete (self, old, "replaced by a new connection under its name");
}

//  The bot types a worker serves, comma-separated, into text.
static void
s_types_text (bm_worker_entry_t *worker, char text [BM_MAX_WORKER_TYPES * (BM_MAX_BOT_TYPE_LEN + 1) + 1])
{
    text [0] = 0;
    for (int i = 0; i < worker->service_count; i++) {
        if (i)
            strcat (text, ",");
        strcat (text, worker->services [i]->name);
    }
}

//  True if a READY names the same set of bot types the worker serves (in
//  any order, a type named twice counting once).
static bool
s_same_types (bm_worker_entry_t *worker, const bm_codec_ready_t *ready)
{
    bool seen [BM_MAX_WORKER_TYPES] = { false };
    for (int i = 0; i < ready->type_count; i++) {
        int found = -1;
        for (int j = 0; j < worker->service_count && found < 0; j++)
            if (strlen (worker->services [j]->name) == ready->type_lens [i]
            &&  memcmp (worker->services [j]->name, ready->types [i], ready->type_lens [i]) == 0)
                found = j;
        if (found < 0)
            return false;
        seen [found] = true;
    }
    for (int j = 0; j < worker->service_count; j++)
        if (!seen [j])
            return false;
    return true;
}

//  The worker's warm bots per type (a READY's or HEARTBEAT's bots), kept
//  for STATS; none said (count 0) keeps what it said before.
static void
s_worker_keep_bots (bm_worker_entry_t *worker, const bm_codec_heartbeat_t *bots)
{
    if (bots->count == 0)
        return;
    if (!worker->bots)
        worker->bots = (bm_codec_heartbeat_t *) bm_calloc_or_abort (sizeof *bots, "a worker's warm bots");
    *worker->bots = *bots;
}

//  READY {name, types, credit, pid?, batch?, running?, bots?}
static void
s_worker_ready (bm_broker_t *self, zframe_t *identity, const char *key,
                bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_ready_t ready;
    bm_codec_error_t error;
    if (bm_codec_ready_decode (msg, &ready, &error)) {
        s_worker_refuse (self, identity, worker ? worker->name : NULL, BM_READY, &error);
        return;
    }
    char name [BM_MAX_ID_LEN + 1];
    bool named = ready.name [0] != 0;
    if (named)
        snprintf (name, sizeof name, "%s", ready.name);
    else
        s_generated_name (self, key, name, sizeof name);
    char types_text [BM_MAX_WORKER_TYPES * (BM_MAX_BOT_TYPE_LEN + 1) + 1];
    if (worker && !s_same_types (worker, &ready)) {
        s_types_text (worker, types_text);
        error.code = "types_changed";
        error.field = "types";
        snprintf (error.message, sizeof error.message, "READY again with other types: this "
                  "connection serves %s; to serve other types, READY on a new socket",
                  types_text);
        s_worker_refuse (self, identity, worker->name, BM_READY, &error);
        return;
    }
    if (!worker && s_ready_refused (self, identity, name))
        return;
    int64_t credit = ready.credit;
    if (worker) {
        //  A second READY changes the credit only.
        worker->credit = credit;
        bm_info (NULL, "worker %s credit now %" PRId64, worker->name, credit);
        s_worker_keep_bots (worker, &ready.bots);
        s_worker_reported (self, worker, &ready);
        bm_dispatch_worker (self, worker);
        return;
    }
    //  Names are unique among live workers: one that holds this name is
    //  replaced once the new entry is in (the CURVE check above refused
    //  another key's).
    bm_worker_entry_t *old = named ? s_worker_named (self, name, key) : NULL;
    worker = bm_worker_entry_new (key, identity, name, credit);
    snprintf (worker->pubkey, sizeof worker->pubkey, "%s", self->peer_key);
    if (ready.has_pid)
        worker->pid = ready.pid;
    const char *address = self->peer_frame ? zmq_msg_gets (self->peer_frame, "Peer-Address")
                                            : NULL;
    if (address)
        snprintf (worker->peer, sizeof worker->peer, "%s", address);
    worker->batch = ready.batch;
    s_worker_keep_bots (worker, &ready.bots);
    for (int i = 0; i < ready.type_count; i++) {
        char type [BM_MAX_BOT_TYPE_LEN + 1];
        memcpy (type, ready.types [i], ready.type_lens [i]);
        type [ready.type_lens [i]] = 0;
        bm_service_t *service = bm_service_require (self, type);
        if (bm_worker_entry_add_service (worker, service)) {
            zlistx_add_end (service->workers, worker);
            service->served = true;
            bm_types_store_seen (self, service);
        }
    }
    worker->expiry = bm_mono_ms () + self->config.heartbeat_ms * self->config.liveness;
    worker->heartbeat_at = bm_mono_ms () + self->config.heartbeat_ms;
    worker->last_seen = bm_now_ms ();
    zhashx_insert (self->workers, key, worker);
    bm_stats_worker_counted (self, worker, +1);
    s_types_text (worker, types_text);
    //  A name that flaps (its ERROR said, s_worker_replace): at debug level.
    bool hushed = old && old->streak.said
               && bm_mono_ms () - old->streak.last_ms <= BM_NAME_STREAK_QUIET_MS;
    bm_log (hushed ? BM_DEBUG : BM_INFO, NULL,
            "worker %s ready: types %s, credit %" PRId64 ", running %d%s",
            name, types_text, credit, ready.running_count,
            named ? "" : " (named by the broker: its READY gave no name)");
    if (!named)
        s_tell_name (self, worker);
    if (old)
        s_worker_replace (self, old, worker, &ready);
    s_worker_reported (self, worker, &ready);
    bm_dispatch_worker (self, worker);
}

//  Release the slot of a job the worker was told to stop; true if found.
static bool
s_worker_release_stopping (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    if (!bm_worker_entry_stopping_holds (worker, id))
        return false;
    bm_service_t *service = bm_worker_entry_stopping_take (worker, id);
    if (service)                        //  None: a job being looked up
        service->usage--;
    worker->running--;
    bm_dispatch_worker (self, worker);
    return true;
}

//  Tell a worker to stop a job that has ended (timeout, cancel); keep the
//  slot until it confirms.
void
bm_workers_stop_job (bm_broker_t *self, bm_job_t *job, const char *reason)
{
    bm_worker_entry_t *worker = job->worker;
    bm_worker_entry_stopping_add (worker, job->id, job->service, reason);
    //  Keep the permit and the credit: bump them so bm_job_unassign's
    //  release leaves them held by the stopping entry.
    worker->running++;
    job->service->usage++;
    s_send_cancel (self, worker, job->id, reason);
}

//  The job a worker names in DONE/PROGRESS/RELEASE, if it is its own.
static bm_job_t *
s_worker_job (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    return job && job->state == JOB_RUNNING && job->worker == worker ? job : NULL;
}

//  A worker reported a run that hit a resource limit.  The limit's name
//  comes from a peer: only the four the workers know become a label.
static void
s_count_limit_kill (bm_broker_t *self, bm_service_t *service, const char *limit)
{
    const char *label = "other";
    for (int i = 0; bm_stats_limit_names [i]; i++)
        if (streq (limit, bm_stats_limit_names [i]))
            label = bm_stats_limit_names [i];
    service->limit_kills++;
    bm_series_inc (bm_metric_series (self->mf_limit_kills, service->name, label));
}

//  A DONE from a worker that was declared dead and came back (new socket,
//  same name) for the job it ran then: the job was queued again but not
//  given to anyone else, so the outcome is taken (protocol.md section 5).
//  Only a lost run: a run that failed was counted when its DONE came, and
//  that DONE sent again is not the job's (attempt: the DONE's, 0 if none).
static bm_job_t *
s_worker_reclaim (bm_broker_t *self, bm_worker_entry_t *worker, const char *id,
                  int64_t attempt, bool ok)
{
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    if (job && !s_key_ran_lost_run (self, worker, job))
        return NULL;                    //  Same name, another CURVE key
    if (job && job->state == JOB_QUEUED && job->durable && job->lost && job->attempts > 0
    &&  (attempt <= 0 || attempt == job->attempts)
    &&  job->last_worker && streq (job->last_worker, worker->name)) {
        bm_lost_keys_delete (self->lost_keys, id);
        bm_info (job->id, "DONE from %s, which ran attempt %" PRId64 " before it was lost: taken",
                 worker->name, job->attempts);
        return job;
    }
    //  The completed DONE of an earlier run, the later one lost (a
    //  failover, a restart: the recovery found it running, or it was kept
    //  while the recovery had not reached the job): its result is the
    //  job's, as it is while the job runs again (s_done_of_earlier_run).
    if (job && job->state == JOB_QUEUED && job->durable && job->lost && ok
    &&  attempt > 0 && attempt < job->attempts) {
        bm_lost_keys_delete (self->lost_keys, id);
        bm_info (job->id, "DONE from %s for attempt %" PRId64 ", which completed, while attempt %"
                 PRId64 " was lost (%s): taken", worker->name, attempt, job->attempts,
                 job->last_worker ? job->last_worker : "its worker");
        bm_set_str (&job->last_worker, worker->name);
        return job;
    }
    //  Queued with no run in its record: a leader that had lost Redis
    //  dispatched it, and its worker completed it, before the dispatch
    //  could be written; the recovery found it queued.  A completed DONE
    //  for attempt 1 is that run, as READY running would have adopted it:
    //  taken, not run again.  Not a failed one (the next attempt decides
    //  then), nor one for a job RETRY reset in this process (outcome_gen),
    //  nor with CURVE (no key is known to have run it: s_key_ran_lost_run).
    //  The record does not tell which run of attempt 1 the DONE ends:
    //  without CURVE a stale one (from before a cancel and a RETRY made
    //  by an earlier leader) or a made-up one is taken too; protocol.md
    //  says so.
    if (job && job->state == JOB_QUEUED && job->durable && !job->lost && !job->held
    &&  job->attempts == 0 && job->failed_runs == 0 && job->outcome_gen == 0
    &&  !job->last_worker && ok && attempt == 1) {
        job->attempts = 1;
        bm_set_str (&job->last_worker, worker->name);
        bm_info (job->id, "DONE from %s, which completed attempt 1 before its dispatch reached "
                 "redis: taken", worker->name);
        return job;
    }
    return NULL;
}

//  DONE's error as the job keeps it: a C string of at most
//  BM_MAX_ERROR_MESSAGE_LEN bytes (the codec cut it on a UTF-8 boundary).
static void
s_error_message (const bm_codec_job_error_t *error, char *buf, size_t size)
{
    size_t len = error->message.len < size ? error->message.len : size - 1;
    memcpy (buf, error->message.ptr ? error->message.ptr : "", len);
    buf [len] = 0;
}

//  A DONE for an earlier run of a job that runs again now: the broker had
//  counted that run as lost (its worker went quiet, or the broker
//  restarted) and dispatched the job once more; the worker sent the DONE
//  again after it reconnected, or late.
static bool
s_done_of_earlier_run (const bm_codec_done_t *done, const bm_job_t *job)
{
    return job && job->state == JOB_RUNNING && done->attempt > 0 && done->attempt < job->attempts;
}

//  When the run a DONE ends finished: the DONE's own startedAt and
//  finishedAt (the worker's clock) when they are of a run that began
//  before this dispatch, i.e. a run the broker had counted as lost (
//  earlier_run: reclaimed, or an earlier attempt's), or one that ended
//  before the job was dispatched again (a JOB answered with the DONE the
//  worker kept: a broker restart, or a DONE the broker missed), or of a
//  run adopted (it began before the broker knew it); the job's startedAt
//  is then the run's too.  Else the broker's clock: the dispatch's
//  startedAt and now.
static int64_t
s_run_finished_at (bm_job_t *job, const bm_codec_done_t *done, bool earlier_run)
{
    if (done->started_at <= 0 || done->finished_at < done->started_at)
        return bm_now_ms ();
    if (!earlier_run && !job->adopted && done->finished_at >= job->started_at) {
        //  This dispatch's run; one that waited in its worker and began
        //  (its PROGRESS {started: true} missed) starts at the worker's.
        if (!job->started_at && !job->waits)
            job->started_at = done->started_at;
        return bm_now_ms ();
    }
    job->started_at = done->started_at;
    return done->finished_at;
}

//  A DONE, PROGRESS or RELEASE for a job the worker does not hold:
//  logged, counted (broker_frames_rejected_total{reason="not_owner"}),
//  answered NACK not_owner.
static void
s_not_owner_log (bm_broker_t *self, zframe_t *identity, const char *name, int command,
                 const char *id)
{
    bm_broker_log_refusal (self, identity, BM_PEER_WORKER, name, command, id, "not_owner",
                           "this worker does not hold that job");
    bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
}

static void
s_not_owner (bm_broker_t *self, bm_worker_entry_t *worker, int command, const char *id)
{
    s_not_owner_log (self, worker->identity, worker->name, command, id);
    bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                                  "this worker does not hold that job");
}

//  A DONE for a job that is not in memory, waiting for its state from Redis.
typedef struct {
    bm_broker_t *broker;
    zframe_t *identity;
    char name [BM_MAX_ID_LEN + 1];
    char id [BM_MAX_ID_LEN + 1];
    bool early;                         //  Came while the queues were recovered
} s_unheld_t;

static void
s_on_unheld_state (const char *state, int64_t priority, void *arg)
{
    (void) priority;
    s_unheld_t *unheld = (s_unheld_t *) arg;
    bm_broker_t *self = unheld->broker;
    if (state && (streq (state, "completed") || streq (state, "failed")
                  || streq (state, "cancelled")))
        bm_debug (unheld->id, "DONE from %s sent again for a job that has ended (%s)",
                  unheld->name, state);
    else
    if (!state && bm_delivery_id (unheld->id))
        //  A webhook manager sends its recent DONEs again after a
        //  reconnect (to a new leader, a restarted broker); a delivery's
        //  record is deleted when it ends, so none is what ended looks like.
        bm_debug (unheld->id, "DONE from %s sent again for a webhook delivery that has ended "
                  "(its record is deleted then): not taken", unheld->name);
    else
    if (unheld->early)
        //  Expected after a start or a failover: workers send their DONEs
        //  again at once, the recovery reaches their jobs later.
        bm_info (unheld->id, "DONE from %s before the recovery reached the job: not taken "
                 "(NACK not_owner); the worker answers with it again when the job is "
                 "dispatched to it", unheld->name);
    else
        s_not_owner_log (self, unheld->identity, unheld->name, BM_DONE, unheld->id);
    zframe_destroy (&unheld->identity);
    free (unheld);
}

//  A DONE for a job the worker does not hold (its NACK not_owner is sent
//  by the caller).  A job that has ended is expected: a worker sends its
//  recent DONEs again after READY, and the broker had some of them.  A job
//  the broker does not hold in memory is looked up in Redis first.
static void
s_done_unheld (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    if (job && bm_job_terminal (job))
        bm_debug (id, "DONE from %s sent again for a job that has ended (%s)", worker->name,
                  bm_job_state_names [job->state]);
    else
    if (job || !self->store)
        s_not_owner_log (self, worker->identity, worker->name, BM_DONE, id);
    else {
        s_unheld_t *unheld = (s_unheld_t *) zmalloc (sizeof (s_unheld_t));
        unheld->broker = self;
        unheld->identity = zframe_dup (worker->identity);
        snprintf (unheld->name, sizeof unheld->name, "%s", worker->name);
        snprintf (unheld->id, sizeof unheld->id, "%s", id);
        unheld->early = !s_recovered (self);
        bm_submit_duplicate_state (self, id, s_on_unheld_state, unheld);
    }
}

//  A DONE that came before the recovery reached its job (a start or a
//  failover: workers send their recent DONEs again at once, the recovery
//  reads the unfinished jobs back one by one).  Refused at once, the job
//  would be recovered as running on a worker that no longer lists it,
//  held, dispatched again and answered with the worker's kept DONE: one
//  run counted as two.  So it is kept, by job id, and taken as a DONE when
//  the recovery reaches the job (bm_workers_claim_recovered), or when the
//  recovery ends without it.  At most BM_EARLY_DONES_MAX of them, of
//  BM_EARLY_DONE_BYTES: one past the bound is answered NACK not_owner at
//  once, logged, and so is another worker's DONE for a job that has one.
#define BM_EARLY_DONES_MAX      10000
#define BM_EARLY_DONE_BYTES     (64 * 1024 * 1024)

typedef struct {
    char *key;                          //  The connection that sent it (hex)
    zframe_t *identity;                 //  Its routing identity
    char name [BM_MAX_ID_LEN + 1];      //  Its worker's name
    char pubkey [41];                   //  Its CURVE key, "" without CURVE
    int64_t attempt;                    //  The attempt it names, 0: none
    bool ok;                            //  Its run completed
    msgpack_sbuffer body;               //  The DONE's body, msgpack
} s_early_done_t;

static void
s_early_done_free (s_early_done_t **self_p)
{
    s_early_done_t *self = *self_p;
    if (!self)
        return;
    free (self->key);
    zframe_destroy (&self->identity);
    msgpack_sbuffer_destroy (&self->body);
    free (self);
    *self_p = NULL;
}

//  The live connection of a kept DONE's worker: the one that sent it, or
//  else the one under its worker's name and key (it reconnected); NULL
//  when the worker has left.
static bm_worker_entry_t *
s_early_done_sender (bm_broker_t *self, const s_early_done_t *kept)
{
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_lookup (self->workers, kept->key);
    for (bm_worker_entry_t *other = worker ? NULL : (bm_worker_entry_t *) zhashx_first (self->workers);
         other && !worker; other = (bm_worker_entry_t *) zhashx_next (self->workers))
        if (streq (other->name, kept->name) && streq (other->pubkey, kept->pubkey))
            worker = other;
    return worker;
}

//  The DONE kept for job id, taken out of the table (the caller owns it),
//  or NULL.
static s_early_done_t *
s_early_done_pop (bm_broker_t *self, const char *id)
{
    s_early_done_t *kept = self->early_dones
                         ? (s_early_done_t *) zhashx_lookup (self->early_dones, id) : NULL;
    if (kept) {
        zhashx_delete (self->early_dones, id);
        self->early_done_bytes -= kept->body.size;
    }
    return kept;
}

//  1 if kept (nothing is answered now), -1 if it is not (logged; the
//  caller answers NACK not_owner), 0 if it is not early.
static int
s_early_done_keep (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg,
                   const char *id, int64_t attempt, bool ok)
{
    if (s_recovered (self) || bm_jobtab_lookup (self->jobs, id))
        return 0;
    s_early_done_t *old = self->early_dones
                        ? (s_early_done_t *) zhashx_lookup (self->early_dones, id) : NULL;
    //  Two runs of one job (a retry, a lost run), each worker sending its
    //  DONE again after the failover: as while the job runs again (an
    //  earlier run's completed DONE is taken, a failed one is not), a
    //  completed DONE beats a failed one; then the later run's decides, and
    //  an earlier one's is expected.  The same attempt from two workers (or
    //  one naming none) is not.  The same worker's sent again (a
    //  reconnect) replaces its own, unless it would put a failed run's
    //  over a completed one's.
    bool later = old && attempt > 0 && attempt > old->attempt;
    bool beats = old && (old->ok != ok ? ok : streq (old->name, worker->name) || later);
    if (old && !beats) {
        bool earlier = attempt > 0 && old->attempt > attempt;
        bool failed = old->ok && !ok;
        bm_log (earlier || failed ? BM_DEBUG : BM_WARN, id, "DONE from %s%s before the "
                "recovery reached the job, which keeps the %sDONE %s sent already%s: not kept "
                "(NACK not_owner)", worker->name,
                failed ? " of a failed run" : earlier ? " for an earlier attempt" : "",
                failed ? "completed " : "", old->name,
                !failed && earlier ? " for a later one" : "");
        return -1;
    }
    s_early_done_t *kept = (s_early_done_t *) bm_calloc_or_abort (sizeof (s_early_done_t),
                                                                  "a DONE kept for the recovery");
    msgpack_sbuffer_init (&kept->body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &kept->body, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *bm_msg_body (msg));
    size_t count = self->early_dones ? zhashx_size (self->early_dones) : 0;
    size_t bytes = self->early_done_bytes - (old ? old->body.size : 0) + kept->body.size;
    if ((!old && count >= BM_EARLY_DONES_MAX) || bytes > BM_EARLY_DONE_BYTES) {
        bm_warn (id, "DONE from %s before the recovery reached the job: not kept, %zu DONEs "
                 "of %zu bytes are kept already (at most %d, of %d bytes); NACK not_owner, "
                 "and the job may run again", worker->name, count, self->early_done_bytes,
                 BM_EARLY_DONES_MAX, BM_EARLY_DONE_BYTES);
        s_early_done_free (&kept);
        return -1;
    }
    kept->attempt = attempt;
    kept->ok = ok;
    kept->key = strdup (worker->key);
    kept->identity = zframe_dup (worker->identity);
    snprintf (kept->name, sizeof kept->name, "%s", worker->name);
    snprintf (kept->pubkey, sizeof kept->pubkey, "%s", worker->pubkey);
    if (!kept->key || !kept->identity) {
        bm_error (id, "out of memory keeping the DONE from %s: NACK not_owner", worker->name);
        s_early_done_free (&kept);
        return -1;
    }
    if (!self->early_dones)
        self->early_dones = zhashx_new ();
    if (old && !streq (old->name, worker->name)) {
        //  An earlier attempt's (or a failed run's), from another worker:
        //  this one decides.
        bm_debug (id, "DONE from %s for attempt %" PRId64 "%s before the recovery reached the "
                  "job replaces the one %s sent for attempt %" PRId64 "%s (NACK not_owner to %s)",
                  worker->name, attempt, ok ? ", completed," : "", old->name, old->attempt,
                  old->ok ? "" : ", failed", old->name);
        bm_worker_entry_t *sender = s_early_done_sender (self, old);
        if (sender)
            bm_broker_send_worker_simple (self, sender->identity, BM_NACK, "not_owner",
                                          "this worker does not hold that job");
    }
    if (old) {
        //  Sent again (a reconnect): the newer connection's is kept.
        self->early_done_bytes -= old->body.size;
        s_early_done_free (&old);
    }
    zhashx_update (self->early_dones, id, kept);
    self->early_done_bytes += kept->body.size;
    //  A takeover brings each worker's recent DONEs again (thousands at
    //  a job rate of hundreds a second): one line for the first, one
    //  for the sum when the recovery ends, each one at debug level.
    if (self->early_dones_kept++ == 0)
        bm_info (id, "DONE from %s before the recovery reached the job: kept until the recovery "
                 "reaches it (so are the next ones, logged at debug level; the recovery's end "
                 "says how many)", worker->name);
    else
        bm_debug (id, "DONE from %s before the recovery reached the job: kept until the "
                  "recovery reaches it (%zu kept)", worker->name, zhashx_size (self->early_dones));
    return 1;
}

static void s_worker_done (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg);

//  The recovery reached the job of a kept DONE (or ended): the DONE is
//  taken as if it came now, from its connection or, when that one is
//  gone, from the live one under its worker's name and key (the worker
//  reconnected).  A worker with none (it left since) is still the one
//  that sent it: its run is the job's all the same.
static void
s_early_done_take (bm_broker_t *self, const char *id)
{
    s_early_done_t *kept = s_early_done_pop (self, id);
    if (!kept)
        return;
    bm_worker_entry_t *worker = s_early_done_sender (self, kept);
    bm_worker_entry_t *gone = NULL;
    if (!worker) {
        gone = worker = bm_worker_entry_new (kept->key, kept->identity, kept->name, 0);
        if (!gone) {
            bm_error (id, "out of memory taking the DONE %s sent before the recovery reached "
                      "the job: dropped", kept->name);
            s_early_done_free (&kept);
            return;
        }
        snprintf (gone->pubkey, sizeof gone->pubkey, "%s", kept->pubkey);
    }
    bm_debug (id, "the DONE %s sent before the recovery reached the job is taken now%s",
              kept->name, gone ? " (its worker has left since)" : "");
    const char *code;
    char reason [256];
    unsigned char command = BM_DONE;
    bm_msg_t *msg = bm_msg_decode_raw (BM_WORKER_HEADER, BM_HEADER_LEN, &command, 1,
                                       kept->body.data, kept->body.size, kept->body.size,
                                       &code, reason, sizeof reason);
    if (msg)
        s_worker_done (self, worker, msg);
    else
        bm_error (id, "the DONE %s sent before the recovery reached the job does not read "
                  "back (%s): dropped", kept->name, reason);
    bm_msg_destroy (&msg);
    bm_worker_entry_destroy (&gone);
    s_early_done_free (&kept);
}

//  A kept DONE whose job the recovery did not bring back.  A job in
//  memory now (submitted again since) takes it as a DONE that comes now;
//  else the job had ended before the restart, and a worker sends its
//  recent DONEs again after every reconnect: expected, so logged at debug
//  level and not counted as a rejected frame, though answered NACK
//  not_owner as before, so that the worker stops sending it.
static void
s_early_done_unrecovered (bm_broker_t *self, const char *id)
{
    if (bm_jobtab_lookup (self->jobs, id)) {
        s_early_done_take (self, id);
        return;
    }
    s_early_done_t *kept = s_early_done_pop (self, id);
    if (!kept)
        return;
    bm_debug (id, "DONE from %s sent again for a job the recovery did not bring back (it had "
              "ended): not taken", kept->name);
    bm_worker_entry_t *worker = s_early_done_sender (self, kept);
    if (worker)
        bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                                      "this worker does not hold that job");
    s_early_done_free (&kept);
}

void
bm_workers_early_free (bm_broker_t *self)
{
    if (!self->early_dones)
        return;
    s_early_done_t *kept = (s_early_done_t *) zhashx_first (self->early_dones);
    for (; kept; kept = (s_early_done_t *) zhashx_next (self->early_dones))
        s_early_done_free (&kept);
    zhashx_destroy (&self->early_dones);
    self->early_done_bytes = 0;
}

//  A failed DONE as sent by its worker: its name, attempt and run times
//  (the worker's clock) hashed; 0 for one without times (nothing tells it
//  from another).  A worker sends the same DONE again after a reconnect.
static int64_t
s_failed_done_print (const bm_worker_entry_t *worker, const bm_codec_done_t *done)
{
    if (done->ok || (done->started_at <= 0 && done->finished_at <= 0))
        return 0;
    uint64_t hash = 14695981039346656037ULL;        //  FNV-1a
    for (const char *c = worker->name; *c; c++)
        hash = (hash ^ (uint8_t) *c) * 1099511628211ULL;
    const int64_t fields [] = { done->attempt, done->started_at, done->finished_at };
    for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++)
        for (int byte = 0; byte < 8; byte++)
            hash = (hash ^ (uint8_t) (fields [i] >> (8 * byte))) * 1099511628211ULL;
    hash &= 0x3fffffffffffffffULL;                  //  A positive int64 in the record
    return hash ? (int64_t) hash : 1;
}

//  The DONE of a run that a cancel stopped carries what the bot wrote on
//  stderr until then: the cancelled job's log.  The job ended when the
//  cancel came, so this updates a finished record, in memory and in
//  Redis (the state is the same; the run map gains the log).  Taken only
//  while the job is still that run's: cancelled, same attempt, no log yet,
//  in memory and within its retention (a job removed, cleaned, evicted or
//  retried since is left alone, and no record is written again).
static void
s_cancelled_run_log (bm_broker_t *self, bm_worker_entry_t *worker, const bm_codec_done_t *done)
{
    const char *reason = bm_worker_entry_stopping_reason (worker, done->job_id);
    if (!reason || !streq (reason, "cancelled"))
        return;
    if (done->log_invalid)
        bm_warn (done->job_id, "DONE from %s for its cancelled run: its log %s: left out",
                 worker->name, done->log_invalid);
    if (!done->log.ptr || done->log.len == 0)
        return;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, done->job_id);
    if (!job || job->state != JOB_CANCELLED || job->log
    ||  (done->attempt > 0 && done->attempt != job->attempts)
    ||  bm_finished_expired (self, job, bm_now_ms ())) {
        bm_debug (done->job_id, "DONE from %s for a run it was told to stop: the job is no "
                  "longer that cancelled run's, its log is not kept", worker->name);
        return;
    }
    bm_job_set_log (job, done->log.ptr, done->log.len);
    bm_jobstore_persist_state (self, job);
    bm_info (job->id, "DONE from %s for the cancelled run: its log (%zu bytes) kept in the "
             "record", worker->name, done->log.len);
}

static void
s_worker_done (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_done_t done;
    bm_codec_error_t error;
    if (bm_codec_done_decode (msg, &done, &error)) {
        s_worker_refuse (self, worker->identity, worker->name, BM_DONE, &error);
        return;
    }
    bm_job_t *job = s_worker_job (self, worker, done.job_id);
    //  A DONE for a run this connection was told to stop (timeout, cancel)
    //  is that run's, even when the job is queued again after it: it frees
    //  the slot (below) and is not taken as the job's outcome, even when
    //  the job runs again elsewhere (a timed-out run's DONE, late).
    bool told_to_stop = !job && bm_worker_entry_stopping_holds (worker, done.job_id);
    if (!job && !told_to_stop)
        job = s_worker_reclaim (self, worker, done.job_id, done.attempt, done.ok);
    int64_t print = s_failed_done_print (worker, &done);
    if (job && print && print == job->failed_done) {
        //  The failed DONE of a run already counted, sent again after a
        //  reconnect, while the job runs again (a RETRY numbers its runs
        //  from 1 again, so the attempt alone does not tell).
        bm_info (job->id, "DONE from %s for attempt %" PRId64 " is the failed one taken before, "
                 "sent again: not taken", worker->name, done.attempt);
        bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                                      "this worker does not hold that job");
        return;
    }
    bool earlier_run = false;
    if (job && job->state == JOB_QUEUED) {
        //  Reclaimed: the run that was lost is the job's again.
        job->lost = false;
        bm_set_str (&job->worker_name, job->last_worker);
        bm_set_str (&job->last_worker, NULL);
        if (done.started_at > 0)
            job->started_at = done.started_at;
        earlier_run = true;
    }
    if (!job && !told_to_stop) {
        bm_job_t *other = (bm_job_t *) bm_jobtab_lookup (self->jobs, done.job_id);
        if (s_done_of_earlier_run (&done, other) && s_key_ran_lost_run (self, worker, other))
            job = other;                        //  Runs again on another worker
    }
    if (s_done_of_earlier_run (&done, job)) {
        //  The earlier run completed: its result is the job's, and the run
        //  now going is stopped (CANCEL duplicate; its slot stays taken
        //  until that worker's DONE for it).  An earlier run that failed
        //  is not taken: the run now going decides.
        if (!done.ok) {
            bm_info (job->id, "DONE from %s for attempt %" PRId64 ", which failed; attempt %"
                     PRId64 " runs on %s and decides", worker->name, done.attempt,
                     job->attempts, job->worker_name ? job->worker_name : "a worker");
            return;
        }
        bm_info (job->id, "DONE from %s for attempt %" PRId64 ", which completed: taken; "
                 "attempt %" PRId64 " on %s stopped (CANCEL duplicate)", worker->name,
                 done.attempt, job->attempts, job->worker_name ? job->worker_name : "a worker");
        bm_workers_stop_job (self, job, "duplicate");
        if (done.started_at > 0)
            job->started_at = done.started_at;
        earlier_run = true;
    }
    if (!job) {
        //  A DONE for a job it was told to stop is expected (it frees the
        //  slot), and so is one sent again for a job that has ended (after
        //  a reconnect or a broker restart: section 5).  Anything else is
        //  refused, logged and counted.  One that came before the recovery
        //  reached its job is kept until it does.
        int early = 0;
        s_cancelled_run_log (self, worker, &done);
        if (s_worker_release_stopping (self, worker, done.job_id))
            bm_debug (done.job_id, "DONE from %s for a job it was told to stop", worker->name);
        else
        if ((early = s_early_done_keep (self, worker, msg, done.job_id, done.attempt,
                                             done.ok)) > 0)
            return;                     //  Answered when the recovery reaches it
        else
        if (early == 0)
            s_done_unheld (self, worker, done.job_id);
        bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                              "this worker does not hold that job");
        return;
    }
    if (bm_job_is_delivery (job) && done.has_webhook) {
        bm_delivery_update (self, job, &done.webhook);
        job->wh_final = true;
    }
    if (done.has_progress)
        job->progress = done.progress;
    if (done.log_invalid)
        bm_warn (job->id, "DONE from %s: its log %s: left out", worker->name, done.log_invalid);
    bm_job_set_log (job, done.log.ptr, done.log.len);
    int64_t finished_at = s_run_finished_at (job, &done, earlier_run);
    if (done.ok) {
        if (done.result_too_deep) {
            char message [64];
            snprintf (message, sizeof message, "the result nests deeper than %d levels",
                      BM_MAX_NESTING);
            bm_job_finish_at (self, job, JOB_FAILED, "bad_output", message, finished_at);
            return;
        }
        size_t size;
        char *packed = bm_keep_codec_value (msg, "result", &done.result, &size);
        if ((int64_t) size > self->config.max_payload) {
            free (packed);
            bm_job_finish_at (self, job, JOB_FAILED, "bad_output",
                              "the result is larger than MAX_PAYLOAD_BYTES", finished_at);
            return;
        }
        bm_job_set_result (job, packed, size);
        job->progress = 100;
        bm_job_finish_at (self, job, JOB_COMPLETED, NULL, NULL, finished_at);
    }
    else {
        if (done.error.has_exit_code) {
            job->exit_code = done.error.exit_code;
            job->has_exit_code = true;
        }
        if (streq (done.error.code, "resource_limit") && done.error.limit [0])
            s_count_limit_kill (self, job->service, done.error.limit);
        char message [BM_MAX_ERROR_MESSAGE_LEN + 1];
        s_error_message (&done.error, message, sizeof message);
        job->failed_done = print;
        //  A worker ends a run cancelled only when a broker told it to: a
        //  cancel this broker does not know of (made by a leader that lost
        //  Redis before it was written) ends the job cancelled all the same.
        bm_job_finish_at (self, job, streq (done.error.code, "cancelled") ? JOB_CANCELLED
                          : JOB_FAILED, done.error.code, message, finished_at);
    }
}

//  DONE_MANY {jobs: [DONE body, ...]} (protocol.md 5a): each item taken as
//  a DONE, each refusal (not a map, no jobId, not its job) its own NACK.
static void
s_worker_done_many (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_batch_t items;
    bm_codec_error_t error;
    if (bm_codec_batch_decode (msg, &items, &error)) {
        s_worker_refuse (self, worker->identity, worker->name, BM_DONE_MANY, &error);
        return;
    }
    bm_msg_t *item = bm_msg_new ();
    if (!item) {
        bm_error (NULL, "out of memory reading a DONE_MANY from %s", worker->name);
        return;
    }
    //  The credit freed item by item goes out at the end, as one JOB_MANY
    //  (to this worker or another).
    worker->holding = true;
    bm_dispatch_hold (self);
    int rc;
    while ((rc = bm_codec_batch_next (&items, item, &error)) != 0) {
        if (rc < 0)
            s_worker_refuse (self, worker->identity, worker->name, BM_DONE_MANY, &error);
        else {
            s_worker_done (self, worker, item);
            bm_broker_push_writes (self);
        }
    }
    bm_msg_destroy (&item);
    worker->holding = false;
    bm_dispatch_release (self);
    bm_dispatch_worker (self, worker);
}

static void
s_worker_progress (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_progress_t progress;
    bm_codec_error_t error;
    if (bm_codec_progress_decode (msg, &progress, &error)) {
        s_worker_refuse (self, worker->identity, worker->name, BM_PROGRESS, &error);
        return;
    }
    bm_job_t *job = s_worker_job (self, worker, progress.job_id);
    if (!job && (progress.waiting || progress.started) && worker->reported
    &&  zhashx_lookup (worker->reported, progress.job_id)) {
        //  Listed in its READY, not recovered yet: the wait (or its end)
        //  is kept for the adoption, which would arm its timeout.
        zhashx_update (worker->reported, progress.job_id,
                       progress.waiting ? (void *) &s_reported_waits : (void *) worker);
        bm_debug (progress.job_id, "%s on worker %s before the recovery reached it: "
                  "taken when it is adopted", progress.waiting ? "waits for a process"
                  : "began on a process", worker->name);
        return;
    }
    if (!job) {
        s_not_owner (self, worker, BM_PROGRESS, progress.job_id);
        return;
    }
    bool started = progress.started && job->state == JOB_RUNNING;
    if (started && job->deadline_index != SIZE_MAX)
        bm_heap_remove (self->deadlines, job->deadline_index);
    if (started) {
        //  It began on a process now: its timeout and startedAt count from
        //  now.
        job->waits = false;
        job->deadline = bm_mono_ms () + job->timeout_ms;
        bm_heap_push (self->deadlines, job);
        job->started_at = bm_now_ms ();
        bm_debug (job->id, "began on worker %s after waiting there: its timeout of %" PRId64
                  " ms runs from now", worker->name, job->timeout_ms);
    }
    else
    if (progress.waiting)
        s_job_waits (self, worker, job);
    if (progress.has_progress) {
        job->progress = progress.progress;
        BM_JOB_EVENT (self, job, BM_EV_PROGRESS, NULL, false);
    }
    if (progress.has_progress || started)
        bm_jobstore_persist_state (self, job);
    if (bm_job_is_delivery (job) && progress.has_webhook)
        bm_delivery_update (self, job, &progress.webhook);
}

//  How the dispatch of a released job was lost, for its worker_lost
//  message: the worker's bot process killed from outside, by the signal
//  the RELEASE names when it names one.  The number is the worker's; its
//  name, as this host spells it, is only a hint.
static void
s_release_loss (const bm_codec_job_notice_t *release, char *loss, size_t size)
{
    if (!release->lost)
        snprintf (loss, size, "the worker released the job");
    else
    if (!release->signal)
        snprintf (loss, size, "the bot process running the job was killed from outside the worker");
    else {
        const char *name = sigabbrev_np ((int) release->signal);
        snprintf (loss, size, "the bot process running the job was killed by signal %" PRId64
                  "%s%s%s from outside the worker%s", release->signal,
                  name ? " (SIG" : "", name ? name : "", name ? ")" : "",
                  release->signal == SIGKILL ? " (kill -9, the OOM killer)" : "");
    }
}

static void
s_worker_release (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_job_notice_t release;
    bm_codec_error_t error;
    if (bm_codec_job_notice_decode (msg, &release, &error)) {
        s_worker_refuse (self, worker->identity, worker->name, BM_RELEASE, &error);
        return;
    }
    bm_job_t *job = s_worker_job (self, worker, release.job_id);
    if (!job) {
        if (!s_worker_release_stopping (self, worker, release.job_id))
            s_not_owner (self, worker, BM_RELEASE, release.job_id);
        return;
    }
    //  A released job does not count as an attempt, unless the worker says
    //  the process running it was lost (killed from outside): that attempt
    //  counts, as if the worker had died under it.
    if (!release.lost)
        job->attempts--;
    char loss [160];
    s_release_loss (&release, loss, sizeof loss);
    bm_job_requeue (self, job, release.lost ? "process_lost" : "released", loss);
    bm_dispatch_worker (self, worker);
    bm_dispatch (self, job->service);
}

//  HEARTBEAT {bots?}: a sign of life; with bots, the worker's warm bots per
//  type, kept for STATS.  A body that does not decode is refused (NACK
//  bad_request) and the heartbeat still counts.
static void
s_worker_heartbeat (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_heartbeat_t beat;
    bm_codec_error_t error;
    if (bm_codec_heartbeat_decode (msg, &beat, &error)) {
        s_worker_refuse (self, worker->identity, worker->name, BM_HEARTBEAT, &error);
        return;
    }
    s_worker_keep_bots (worker, &beat);
}

//  DISCONNECT {reason?}: the worker leaves whatever the body says; the
//  reason, when it reads, goes in the log line.
static void
s_worker_disconnect (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    bm_codec_disconnect_t bye;
    bm_codec_error_t error;
    char reason [BM_MAX_REASON_LEN + 32] = "disconnected";
    if (bm_codec_disconnect_decode (msg, &bye, &error) == 0 && bye.reason.ptr && bye.reason.len)
        snprintf (reason, sizeof reason, "disconnected: %.*s", (int) bye.reason.len, bye.reason.ptr);
    bm_workers_delete (self, worker, reason);
}

//  A DISCONNECT whose body did not parse (not a map, not msgpack, too
//  large): the worker leaves all the same, as with any body; from a peer
//  that is not registered it is ignored, as any DISCONNECT is.
bool
bm_workers_parting (bm_broker_t *self, zframe_t *identity, const void *header, size_t header_size,
                    const void *command, size_t command_size)
{
    if (header_size != BM_HEADER_LEN || memcmp (header, BM_WORKER_HEADER, BM_HEADER_LEN) != 0
    ||  command_size != 1 || *(const unsigned char *) command != BM_DISCONNECT)
        return false;
    if (!self->serving)
        return false;                   //  A standby answers not_leader
    char key [2 * 256 + 1];
    bm_broker_peer_key (identity, key);
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_lookup (self->workers, key);
    if (worker)
        bm_workers_delete (self, worker, "disconnected (its body did not read)");
    return true;
}

void
bm_workers_handle (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    //  The worker table is keyed by the identity in hex (identities are
    //  binary); built on the stack, as this runs for every worker message.
    char key [2 * 256 + 1];
    bm_broker_peer_key (identity, key);
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_lookup (self->workers, key);
    int command = bm_msg_command (msg);
    if (worker) {
        worker->expiry = bm_mono_ms () + self->config.heartbeat_ms * self->config.liveness;
        worker->last_seen = bm_now_ms ();
        if (worker->congested) {
            worker->congested = false;
            bm_dispatch_worker (self, worker);
        }
    }
    if (command == BM_READY)
        s_worker_ready (self, identity, key, worker, msg);
    else
    if (!worker) {
        //  Not known (e.g. we restarted): tell it to reconnect and READY.
        if (command != BM_DISCONNECT)
            bm_broker_send_worker_simple (self, identity, BM_DISCONNECT, NULL, NULL);
    }
    else
    if (command == BM_DONE)
        s_worker_done (self, worker, msg);
    else
    if (command == BM_DONE_MANY)
        s_worker_done_many (self, worker, msg);
    else
    if (command == BM_PROGRESS)
        s_worker_progress (self, worker, msg);
    else
    if (command == BM_HEARTBEAT)
        s_worker_heartbeat (self, worker, msg);
    else
    if (command == BM_RELEASE)
        s_worker_release (self, worker, msg);
    else
    if (command == BM_DISCONNECT)
        s_worker_disconnect (self, worker, msg);
    else {
        bm_broker_log_refusal (self, identity, BM_PEER_WORKER, worker->name, command, NULL,
                               "bad_command", "unknown worker command");
        bm_series_inc (bm_metric_series (self->mf_frames, "bad_command"));
        bm_broker_send_worker_simple (self, identity, BM_NACK, "bad_command", "unknown worker command");
    }
}

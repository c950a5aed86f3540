/*  bm_jobstore.c - the Redis record schema of jobs (docs/redis.md).

    Builds the HSET/SADD commands that make a job durable, the
    unfinished set written once a loop turn, the terminal writes, and recovery: the
    queues rebuilt from Redis when the store first connects.  bm_store.c
    does the I/O.  */
#include "bm_broker_internal.h"
#include "bm_lease.h"
#include "bm_record.h"

static void
s_on_terminal_durable (redisReply *reply, void *arg);
static void
s_terminal_confirmed (bm_broker_t *self, bm_job_t *job, uint32_t outcome_gen, bool count, bool ok);
static void
s_count_outcome (bm_broker_t *self, bm_service_t *service, bool client_job, bm_job_state_t state);

static void
s_arg (bm_cmd_t *cmd, const char *data, size_t len)
{
    if (cmd->argc < BM_CMD_MAX_ARGS) {
        cmd->argv [cmd->argc] = data;
        cmd->len [cmd->argc] = len;
        cmd->argc++;
    }
}

void
bm_cmd_arg_str (bm_cmd_t *cmd, const char *str)
{
    s_arg (cmd, str, strlen (str));
}

//  Integers as decimal text, without snprintf (this runs ~20 times a job).
void
bm_cmd_arg_int (bm_cmd_t *cmd, int64_t value)
{
    if (cmd->argc < BM_CMD_MAX_ARGS) {
        char *buf = cmd->scratch [cmd->argc];
        char *end = buf + 24, *p = end;
        uint64_t magnitude = value < 0 ? (uint64_t) 0 - (uint64_t) value : (uint64_t) value;
        do {
            *--p = (char) ('0' + magnitude % 10);
            magnitude /= 10;
        } while (magnitude);
        if (value < 0)
            *--p = '-';
        s_arg (cmd, p, (size_t) (end - p));
    }
}

//  "<prefix>{bm}:<what><id>"
void
bm_cmd_start (bm_broker_t *self, bm_cmd_t *cmd, const char *verb, const char *what, const char *id)
{
    cmd->argc = 0;
    size_t prefix = strlen (self->config.redis_prefix), w = strlen (what);
    size_t i = id ? strlen (id) : 0;
    if (prefix + 5 + w + i >= sizeof cmd->key)
        i = w = 0;      //  Cannot happen with valid ids and our prefixes
    char *p = cmd->key;
    memcpy (p, self->config.redis_prefix, prefix); p += prefix;
    memcpy (p, "{bm}:", 5); p += 5;
    memcpy (p, what, w); p += w;
    if (i)
        memcpy (p, id, i);      //  id may be NULL (memcpy from NULL is UB even for 0 bytes)
    p += i;
    *p = 0;
    bm_cmd_arg_str (cmd, verb);
    s_arg (cmd, cmd->key, (size_t) (p - cmd->key));
}

//  A reply standing for "OK" when the broker runs without Redis.
static redisReply s_ok_reply = { .type = REDIS_REPLY_STATUS, .str = "OK", .len = 2 };

//  A write, in this loop turn's group (bm_store_write).
void
bm_jobstore_issue (bm_broker_t *self, bm_cmd_t *cmd, bool retry, bm_store_fn *fn, void *arg)
{
    if (!self->store) {
        if (fn)
            fn (&s_ok_reply, arg);
        return;
    }
    if (bm_store_write (self->store, retry, fn, arg, cmd->argc, cmd->argv, cmd->len)) {
        if (fn)
            fn (NULL, arg);
    }
}

//  A read: fn gets Redis's reply, or NULL when Redis is away.
void
bm_jobstore_query (bm_broker_t *self, bm_cmd_t *cmd, bm_store_fn *fn, void *arg)
{
    if (!self->store
    ||  bm_store_query (self->store, fn, arg, cmd->argc, cmd->argv, cmd->len))
        fn (NULL, arg);
}

//  Queue a job for this turn's SADD; fn (if any) is called when it lands
//  or, fail_fast, with NULL as soon as the SADD is not applied at once.
static void
s_live_add (bm_broker_t *self, const bm_job_t *job, bm_store_fn *fn, void *arg, bool fail_fast)
{
    bm_live_t *live = &self->live;
    if (live->adds == live->add_alloc) {
        live->add_alloc = live->add_alloc ? live->add_alloc * 2 : 256;
        live->add_ids = (char *) bm_realloc_or_abort (live->add_ids, live->add_alloc * BM_ID_SLOT,
                                                      "the unfinished set's additions");
    }
    bm_id_copy (live->add_ids + live->adds++ * BM_ID_SLOT, BM_ID_SLOT, job->id);
    if (fn) {
        if (live->waiting == live->waiter_alloc) {
            live->waiter_alloc = live->waiter_alloc ? live->waiter_alloc * 2 : 256;
            live->waiters = (bm_waiter_t *) bm_realloc_or_abort (live->waiters,
                                live->waiter_alloc * sizeof (bm_waiter_t), "the SUBMIT waiters");
        }
        live->waiters [live->waiting++] = (bm_waiter_t) { fn, arg, fail_fast };
    }
}

static void
s_live_remove (bm_broker_t *self, const char *id)
{
    bm_live_t *live = &self->live;
    if (live->rems == live->rem_alloc) {
        live->rem_alloc = live->rem_alloc ? live->rem_alloc * 2 : 256;
        live->rem_ids = (char *) bm_realloc_or_abort (live->rem_ids, live->rem_alloc * BM_ID_SLOT,
                                                      "the unfinished set's removals");
    }
    bm_id_copy (live->rem_ids + live->rems++ * BM_ID_SLOT, BM_ID_SLOT, id);
}

void
bm_jobstore_on_live_added (redisReply *reply, void *arg)
{
    bm_waiters_t *batch = (bm_waiters_t *) arg;
    bm_broker_t *self = batch->broker;
    //  The jobs this SADD confirms are dispatched together, after it.
    bm_dispatch_hold (self);
    for (size_t i = 0; i < batch->count; i++)
        batch->waiters [i].fn (reply, batch->waiters [i].arg);
    bm_dispatch_release (self);
    free (batch->waiters);
    free (batch);
}

//  The SADD was refused or lost, or not sent as the connection went: it is
//  sent again (the other waiters wait for it), but a SUBMIT is answered
//  now (store_unavailable).  Its own writes are undone after the re-sent
//  ones (bm_submit_confirmed), so nothing of it stays in Redis.
static void
s_on_live_kept (void *arg)
{
    bm_waiters_t *batch = (bm_waiters_t *) arg;
    size_t kept = 0;
    for (size_t i = 0; i < batch->count; i++) {
        bm_waiter_t waiter = batch->waiters [i];
        if (waiter.fail_fast)
            waiter.fn (NULL, waiter.arg);
        else
            batch->waiters [kept++] = waiter;
    }
    batch->count = kept;
}

//  The unfinished set's key: "<prefix>{bm}:unfinished".
static void
s_unfinished_key (bm_broker_t *self, char *key, size_t size)
{
    snprintf (key, size, "%s{bm}:unfinished", self->config.redis_prefix);
}

//  The store's flush hook: this turn's unfinished-set changes as one SADD
//  and one SREM, ahead of the flush that sends them.  A plain set: recovery
//  orders the jobs by the submission number in their records, so the set
//  needs no scores (a member costs Redis a hash-table entry, not also a
//  skiplist node).
void
bm_jobstore_live_flush (void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    bm_live_t *live = &self->live;
    char key [256];
    s_unfinished_key (self, key, sizeof key);
    if (live->adds) {
        size_t argc = 2 + live->adds;
        const char **argv = (const char **) bm_realloc_or_abort (NULL, argc * sizeof (char *),
                                                                 "a SADD");
        size_t *lens = (size_t *) bm_realloc_or_abort (NULL, argc * sizeof (size_t), "a SADD");
        argv [0] = "SADD"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        for (size_t i = 0; i < live->adds; i++) {
            argv [2 + i] = live->add_ids + i * BM_ID_SLOT;
            lens [2 + i] = strlen (argv [2 + i]);
        }
        bm_waiters_t *batch = (bm_waiters_t *) zmalloc (sizeof (bm_waiters_t));
        batch->broker = self;
        batch->waiters = live->waiters;
        batch->count = live->waiting;
        live->waiters = NULL;
        live->waiting = live->waiter_alloc = 0;
        bool fail_fast = false;
        for (size_t i = 0; i < batch->count; i++)
            fail_fast |= batch->waiters [i].fail_fast;
        //  Durable: a SUBMIT waits for it, and a re-sent SADD is harmless.
        if (bm_store_write_kept (self->store, bm_jobstore_on_live_added,
                                 fail_fast ? s_on_live_kept : NULL, batch,
                                 (int) argc, argv, lens))
            bm_jobstore_on_live_added (NULL, batch);
        free (argv);
        free (lens);
        live->adds = 0;
    }
    if (live->rems) {
        size_t argc = 2 + live->rems;
        const char **argv = (const char **) bm_realloc_or_abort (NULL, argc * sizeof (char *),
                                                                 "a SREM");
        size_t *lens = (size_t *) bm_realloc_or_abort (NULL, argc * sizeof (size_t), "a SREM");
        argv [0] = "SREM"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        for (size_t i = 0; i < live->rems; i++) {
            argv [2 + i] = live->rem_ids + i * BM_ID_SLOT;
            lens [2 + i] = strlen (argv [2 + i]);
        }
        bm_store_write (self->store, true, NULL, NULL, (int) argc, argv, lens);
        free (argv);
        free (lens);
        live->rems = 0;
    }
}

//  A msgpack map as a field of a command: packed into a body from the
//  broker's pool, which stays lent until the command is issued.
static void
s_arg_map (bm_cmd_t *cmd, const char *field, bm_body_t *body)
{
    bm_cmd_arg_str (cmd, field);
    s_arg (cmd, body->sbuf.data, body->sbuf.size);
}

//  Whether a kept result is still to be written to the job's record: never
//  written, or written before a write the store dropped (which may have
//  been it; a later HSET of the record would then say its dependency
//  completed without it).
static bool
s_dep_result_unsaved (const bm_dep_t *dep, uint64_t drops)
{
    return dep->result && (!dep->result_saved || dep->saved_drops != drops);
}

//  The dependencies' results the job keeps that its record does not have
//  yet, each as a field of its own (BM_RECORD_DEP_RESULT) of cmd, an HSET
//  of the job's record with at most BM_RECORD_FIELDS_MAX arguments so far:
//  a dependency's end writes its one result, not every result kept so far
//  again.  All fit, so the record and its results land together or not at
//  all.  Each is marked saved as of the store's drops now: a write once
//  issued is sent again until it lands, unless it is dropped (counted).
static void
s_arg_dep_results (bm_broker_t *self, bm_cmd_t *cmd, bm_job_t *job)
{
    _Static_assert (BM_CMD_MAX_ARGS >= BM_RECORD_FIELDS_MAX + 2 * BM_MAX_DEPENDS,
                    "a record's HSET holds every dependency's result");
    bm_deps_t *deps = job->deps;
    if (!deps)
        return;
    uint64_t drops = self->store ? bm_store_drops (self->store) : 0;
    for (size_t i = 0; i < deps->count && cmd->argc + 2 <= BM_CMD_MAX_ARGS; i++) {
        bm_dep_t *dep = &deps->items [i];
        if (!s_dep_result_unsaved (dep, drops))
            continue;
        char *name = cmd->scratch [cmd->argc];
        s_arg (cmd, name, bm_record_dep_result_field (name, sizeof cmd->scratch [0], i));
        s_arg (cmd, dep->result, dep->result_size);
        dep->result_saved = true;
        dep->saved_drops = drops;
    }
}

//  HSET the whole record: state, what it was submitted with, and what its
//  runs did when they did anything (a job queued again by RETRY or
//  recovery).  retry false means "fail fast" (a SUBMIT answers
//  store_unavailable): at once while Redis is not known to take writes
//  (bm_store_writable), and as soon as the group holding the writes is
//  refused or lost.  Once issued, the HSET is always re-sent with its
//  group, like the SADD after it that fn waits for, so that a job is never
//  confirmed by its SADD without its record; a SUBMIT failed fast undoes
//  both after them (bm_jobstore_forget).
void
bm_jobstore_persist_full (bm_broker_t *self, bm_job_t *job, bool retry, bm_store_fn *fn, void *arg)
{
    if (!self->store) {
        if (fn)
            fn (&s_ok_reply, arg);
        return;
    }
    if (!retry && !bm_store_writable (self->store)) {
        if (fn)
            fn (NULL, arg);
        return;
    }
    bm_cmd_t hset [1];
    bm_body_t submit, run;
    bm_cmd_start (self, hset, "HSET", "job:", job->id);
    bm_cmd_arg_str (hset, BM_RECORD_STATE);  bm_cmd_arg_str (hset, bm_job_state_names [job->state]);
    bm_body_init (self, &submit);
    bm_record_pack_submit (&submit.pk, job);
    s_arg_map (hset, BM_RECORD_SUBMIT, &submit);
    bool has_run = bm_record_has_run (job);
    if (has_run) {
        bm_body_init (self, &run);
        bm_record_pack_run (&run.pk, job);
        s_arg_map (hset, BM_RECORD_RUN, &run);
    }
    if (job->wh) {
        bm_cmd_arg_str (hset, BM_RECORD_WEBHOOK);
        s_arg (hset, job->wh, job->wh_size);
        if (job->wh_at > 0) {
            bm_cmd_arg_str (hset, BM_RECORD_WEBHOOK_AT);
            bm_cmd_arg_int (hset, job->wh_at);
        }
    }
    s_arg_dep_results (self, hset, job);
    bm_jobstore_issue (self, hset, true, NULL, NULL);
    bm_body_free (&submit);
    if (has_run)
        bm_body_free (&run);
    //  The unfinished set lists every job that is not terminal (recovery
    //  reads it).  The SADD goes out with this turn's others; fn waits for it.
    s_live_add (self, job, fn, arg, !retry);
}

//  HSET the state and the run map (rewritten whole: the job in memory
//  knows all of it), with the dependency results kept since the last
//  write; the webhook state too when with_webhook.
static void
s_persist_run (bm_broker_t *self, bm_job_t *job, bool with_webhook, bm_store_fn *fn, void *arg)
{
    bm_cmd_t cmd;
    bm_body_t run;
    bm_cmd_start (self, &cmd, "HSET", "job:", job->id);
    bm_cmd_arg_str (&cmd, BM_RECORD_STATE);  bm_cmd_arg_str (&cmd, bm_job_state_names [job->state]);
    bm_body_init (self, &run);
    bm_record_pack_run (&run.pk, job);
    s_arg_map (&cmd, BM_RECORD_RUN, &run);
    if (with_webhook && job->wh) {
        bm_cmd_arg_str (&cmd, BM_RECORD_WEBHOOK);
        s_arg (&cmd, job->wh, job->wh_size);
        if (job->wh_at > 0) {
            bm_cmd_arg_str (&cmd, BM_RECORD_WEBHOOK_AT);
            bm_cmd_arg_int (&cmd, job->wh_at);
        }
    }
    s_arg_dep_results (self, &cmd, job);
    bm_jobstore_issue (self, &cmd, true, fn, arg);
    bm_body_free (&run);
}

//  A state change: the state and the run map.
void
bm_jobstore_persist_state (bm_broker_t *self, bm_job_t *job)
{
    bm_jobstore_persist_state_then (self, job, NULL, NULL);
}

void
bm_jobstore_persist_state_then (bm_broker_t *self, bm_job_t *job, bm_store_fn *fn, void *arg)
{
    if (!self->store) {
        if (fn)
            fn (&s_ok_reply, arg);
        return;
    }
    if (job->state == JOB_RUNNING)
        job->running_saved = true;      //  bm_jobstore_save_running need not write it
    s_persist_run (self, job, false, fn, arg);
}

//  A terminal write waiting for Redis: the outcome it carries, and whether
//  its confirmation counts that outcome (the first write of a run's).  The
//  service (services outlive the store) and the kind of job are kept, so
//  the outcome counts even when the job was removed meanwhile (a drain).
typedef struct {
    bm_broker_t *broker;
    char id [BM_MAX_ID_LEN + 16];
    bm_job_state_t state;
    uint32_t outcome_gen;
    bool count;
    bm_service_t *service;
    bool client_job;
} s_job_ref_t;

//  Terminal: the whole outcome (with the webhook state of a delivery just
//  made), out of the unfinished set.  A completed, failed or cancelled
//  job's record gets no TTL: its id joins its type's finished set
//  (bm_finished_add) and the leader's sweep deletes the record when its
//  retention ran out (bm_finished.c), which spares Redis a PEXPIRE a job.
//  A delivery job's record is deleted instead: its outcome is in the webhook
//  state of the job it delivered, and nothing reads it once it ended.
void
bm_jobstore_persist_terminal (bm_broker_t *self, bm_job_t *job)
{
    job->confirming++;
    //  The outcome is counted by the confirmation of this write, even when
    //  a RETRY overtakes it or the job is removed meanwhile; a later
    //  rewrite (REDELIVER) counts nothing.
    bool count = !job->counted;
    job->counted = true;
    bool client_job = !bm_job_is_delivery (job);
    if (!self->store) {
        //  Nothing to wait for: counted (and RESULT sent) now, without a
        //  reference to look the job up by.
        if (count)
            s_count_outcome (self, job->service, client_job, job->state);
        s_terminal_confirmed (self, job, job->outcome_gen, count, true);
        return;
    }
    s_job_ref_t *ref = (s_job_ref_t *) zmalloc (sizeof (s_job_ref_t));
    ref->broker = self;
    bm_id_copy (ref->id, sizeof ref->id, job->id);
    ref->state = job->state;
    ref->outcome_gen = job->outcome_gen;
    ref->count = count;
    ref->service = job->service;
    ref->client_job = client_job;
    bm_cmd_t cmd;
    if (bm_job_is_delivery (job)) {
        bm_cmd_start (self, &cmd, "DEL", "job:", job->id);
        bm_jobstore_issue (self, &cmd, true, s_on_terminal_durable, ref);
    }
    else
        s_persist_run (self, job, true, s_on_terminal_durable, ref);
    s_live_remove (self, job->id);
}

//  A job's record out of Redis: DEL and SREM from the unfinished set.
void
bm_jobstore_forget (bm_broker_t *self, const char *id)
{
    bm_jobstore_forget_then (self, id, NULL, NULL, NULL);
}

//  The same; fn (if any) gets the SREM's reply (the writes landed), NULL
//  if it is dropped; at once without Redis.  The key's HDEL goes after the
//  DEL: a crash between leaves a key naming no record, which a duplicate
//  SUBMIT finds gone (bm_submit_duplicate_check), never a record without
//  its key.
void
bm_jobstore_forget_then (bm_broker_t *self, const char *id, const char *idem_key,
                         bm_store_fn *fn, void *arg)
{
    if (!self->store) {
        if (idem_key)
            bm_idem_drop (self->idem, idem_key, id);
        if (fn)
            fn (&s_ok_reply, arg);
        return;
    }
    bm_finished_removed (self, id);
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "DEL", "job:", id);
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
    if (idem_key)
        bm_idem_store_drop (self, idem_key, id);
    bm_cmd_start (self, &cmd, "SREM", "unfinished", NULL);
    bm_cmd_arg_str (&cmd, id);
    bm_jobstore_issue (self, &cmd, true, fn, arg);
}

//  The webhook state of a job, which may live only in Redis by now, and
//  when it reached that state (wh_at; 0: not known, the record's is kept).
void
bm_jobstore_persist_webhook (bm_broker_t *self, const char *job_id, const char *wh, size_t wh_size,
                             int64_t wh_at)
{
    if (!self->store)
        return;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HSET", "job:", job_id);
    bm_cmd_arg_str (&cmd, BM_RECORD_WEBHOOK);
    s_arg (&cmd, wh, wh_size);
    if (wh_at > 0) {
        bm_cmd_arg_str (&cmd, BM_RECORD_WEBHOOK_AT);
        bm_cmd_arg_int (&cmd, wh_at);
    }
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
}

//  An outcome into its job's type's and the broker's counts.
static void
s_count_outcome (bm_broker_t *self, bm_service_t *service, bool client_job, bm_job_state_t state)
{
    //  Totals count the jobs clients submitted; webhook deliveries count
    //  under their own type.
    if (state == JOB_COMPLETED) {
        service->completed++;
        self->completed += client_job;
        bm_series_inc (service->m_completed);
    }
    else
    if (state == JOB_FAILED) {
        service->failed++;
        self->failed += client_job;
        bm_series_inc (service->m_failed);
    }
    else {
        service->cancelled++;
        self->cancelled += client_job;
        bm_series_inc (service->m_cancelled);
    }
    if (!client_job) {
        if (state == JOB_COMPLETED)
            self->wh_delivered++;
        else
            self->wh_failed++;
    }
}

//  A terminal write of the job (of outcome outcome_gen) is in Redis (or
//  there is no Redis), its outcome counted already if count (the run's
//  first write: a REDELIVER writes the record again, and that confirmation
//  only releases the delivery).  An outcome a RETRY overtook (the job
//  queued or run again meanwhile) is counted, and nothing else: the
//  RESULT, retention and withheld deliveries belong to the job's current
//  outcome, whose own write is confirmed later.  job is NULL when it was
//  forgotten meanwhile.
static void
s_terminal_confirmed (bm_broker_t *self, bm_job_t *job, uint32_t outcome_gen, bool count, bool ok)
{
    if (!job)
        return;
    if (job->confirming)        //  0 for a job read back from Redis since
        job->confirming--;
    bm_cancel_answers_wake (self, job, outcome_gen, ok);
    bool current = job->outcome_gen == outcome_gen;
    if (current && bm_job_terminal (job)) {
        bool client_job = !bm_job_is_delivery (job);
        if (job->notify)
            bm_job_send_result (self, job);
        if (client_job && count)
            bm_control_retain (self, job);
        if (client_job && job->deliveries)
            bm_delivery_release (self, job);
    }
}

static void
s_on_terminal_durable (redisReply *reply, void *arg)
{
    s_job_ref_t *ref = (s_job_ref_t *) arg;
    if (!reply && ref->broker->stopping)
        bm_warn (ref->id, "terminal state (%s) not written to redis before the broker stopped: "
                 "its record still says it is unfinished, so the next broker recovers it and "
                 "settles it again (from its worker's kept DONE, or by running it again)",
                 bm_job_state_names [ref->state]);
    else
    if (!reply)
        bm_error (ref->id, "terminal state not confirmed by redis");
    if (ref->count)
        s_count_outcome (ref->broker, ref->service, ref->client_job, ref->state);
    s_terminal_confirmed (ref->broker, (bm_job_t *) bm_jobtab_lookup (ref->broker->jobs, ref->id),
                          ref->outcome_gen, ref->count, reply != NULL);
    free (ref);
}

//  attemptErrors holds one msgpack value per failed run, back to back:
//  false when it does not parse.  failedRuns follows what it holds, so
//  that the record's array is always whole.
static bool
s_attempt_errors_ok (bm_job_t *job)
{
    //  Walk without unpacking: a damaged count in a record must not make
    //  msgpack-c reserve memory for items that are not there.
    int64_t count = 0;
    size_t offset = 0;
    while (job->attempt_errors && offset < job->attempt_errors_size) {
        if (bm_msgpack_skip (job->attempt_errors, job->attempt_errors_size, &offset))
            return false;
        count++;
    }
    job->failed_runs = count;
    return true;
}

//  Build the job of id from its Redis hash (HGETALL reply, either record
//  layout: bm_record.h); NULL if it holds none or a damaged one.  *held
//  (if given) tells whether the record is of a job held for its worker.
bm_job_t *
bm_jobstore_job_from_hash (bm_broker_t *self, const char *id, redisReply *reply, bool *held)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return NULL;
    bm_job_t *job = bm_job_new ();
    bm_record_meta_t meta;
    //  Records from elsewhere, or damaged: refuse rather than guess.
    if (bm_record_read (job, id, reply, &meta)
    ||  !bm_valid_bot_type (meta.type, strlen (meta.type))
    ||  !job->payload || bm_msgpack_check (job->payload, job->payload_size)
    ||  (job->result && bm_msgpack_check (job->result, job->result_size))
    ||  (job->wh && bm_msgpack_check (job->wh, job->wh_size))
    ||  !s_attempt_errors_ok (job)) {
        bm_job_destroy (&job);
        return NULL;
    }
    if (job->max_attempts < 1)
        job->max_attempts = self->config.job_max_attempts;
    if (job->timeout_ms < 1)
        job->timeout_ms = self->config.job_timeout_ms;
    if (job->state != JOB_DELAYED && job->state != JOB_WAITING_CHILDREN)
        job->run_at = 0;        //  Left from a wait that ended
    job->service = bm_service_require (self, meta.type);
    if (!meta.has_run_attempts)
        job->run_attempts = bm_job_is_delivery (job) ? 1 : job->service->retry_attempts;
    if (!meta.has_backoff)
        job->backoff = (bm_backoff_t) { BM_BACKOFF_EXPONENTIAL, job->service->retry_backoff_ms, false };
    //  A queued job's worker may still send the DONE of the run it lost,
    //  unless that run was counted.
    job->lost = job->last_worker && !meta.run_counted;
    if (held)
        *held = meta.held && job->state == JOB_QUEUED;
    job->durable = true;
    return job;
}

//  Write the running state of attempts that have run BROKER_SAVE_RUNNING_MS
//  (those started at dispatch were written then).
void
bm_jobstore_save_running (bm_broker_t *self, int64_t now)
{
    if (!self->store || self->config.save_running_ms == 0)
        return;
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    while (worker) {
        bm_job_t *job = bm_joblist_first (&worker->jobs);
        while (job) {
            if (!job->running_saved
            &&  now - job->started_mono >= self->config.save_running_ms)
                bm_jobstore_persist_state (self, job);
            job = bm_joblist_next (&worker->jobs, job);
        }
        worker = (bm_worker_entry_t *) zhashx_next (self->workers);
    }
}

//  A job recovered as running may still run on a live worker that has not
//  registered with this broker yet: it notices the old broker is gone
//  (within HEARTBEAT_LIVENESS intervals, sooner when the connection
//  closes), then sends READY listing the jobs it runs, then the DONEs of
//  the runs that ended meanwhile.  Dispatching such a job at once would
//  run it a second time, or answer a run that already completed with a
//  needless second dispatch.  So it is held: queued, but out of its queue,
//  until its worker reports it (adopted), a DONE for it comes (taken), or
//  the hold ends, 2 x HEARTBEAT_INTERVAL_MS x HEARTBEAT_LIVENESS after the
//  recovery (as long as a worker keeps its DONEs to send them again).
static int64_t
s_hold_ms (bm_broker_t *self)
{
    return 2 * self->config.heartbeat_ms * self->config.liveness;
}

static void
s_hold (bm_broker_t *self, bm_job_t *job)
{
    //  A record of it running has that run's startedAt: kept for the
    //  worker that adopts it.
    int64_t started_at = job->state == JOB_RUNNING ? job->started_at : 0;
    job->state = JOB_QUEUED;
    job->worker = NULL;
    bm_job_clear_run (job);
    job->queued_mono = bm_mono_ms ();
    bm_job_set_held (job, true);
    job->held_started_at = started_at;
    if (!self->held) {
        self->held = zlistx_new ();
        zlistx_set_destructor (self->held, (zlistx_destructor_fn *) zstr_free);
        zlistx_set_duplicator (self->held, (zlistx_duplicator_fn *) strdup);
    }
    zlistx_add_end (self->held, job->id);
}

//  The hold is over: the held jobs no worker reported join their queues.
void
bm_jobstore_hold_tick (bm_broker_t *self, int64_t now)
{
    if (!self->held || self->held_until == 0 || now < self->held_until)
        return;
    zlistx_t *held = self->held;
    self->held = NULL;
    self->held_until = 0;
    zlistx_t *services = zlistx_new ();
    size_t released = 0;
    for (const char *id = (const char *) zlistx_first (held); id;
         id = (const char *) zlistx_next (held)) {
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
        if (!job || !job->held || job->state != JOB_QUEUED)
            continue;           //  Adopted, taken, cancelled or queued since
        bm_job_set_held (job, false);
        if (!zlistx_find (services, job->service))
            zlistx_add_end (services, job->service);
        if (job->attempts - job->failed_runs >= job->max_attempts) {
            //  Its last allowed dispatch ran when the broker restarted.
            bm_info (job->id, "not reported by %s within %" PRId64 " ms of the recovery: "
                     "lost on its last allowed dispatch",
                     job->last_worker ? job->last_worker : "its worker", s_hold_ms (self));
            bm_job_finish (self, job, JOB_FAILED, "worker_lost",
                           "the broker restarted while the last allowed attempt ran, and "
                           "its worker did not report it");
            continue;
        }
        bm_info (job->id, "not reported by %s within %" PRId64 " ms of the recovery: "
                 "dispatched again", job->last_worker ? job->last_worker : "its worker",
                 s_hold_ms (self));
        bm_service_queue_push (job->service, job);
        BM_JOB_EVENT (self, job, BM_EV_STALLED, "not reported after the recovery", false);
        BM_JOB_EVENT (self, job, BM_EV_WAITING, NULL, false);
        bm_jobstore_persist_state (self, job);     //  No longer held
        released++;
    }
    zlistx_destroy (&held);
    if (released)
        bm_info (NULL, "%zu recovered job(s) no worker reported are queued for dispatch",
                 released);
    bm_service_t *service;
    while ((service = (bm_service_t *) zlistx_detach (services, NULL)))
        bm_dispatch (self, service);
    zlistx_destroy (&services);
}

void
bm_jobstore_hold_free (bm_broker_t *self)
{
    zlistx_destroy (&self->held);
}

//  A recovered id whose record read Redis answers with an error (BUSY,
//  LOADING, NOPERM, WRONGTYPE: it says nothing of the job) is read again,
//  up to BM_RECOVERY_AGAIN_TRIES rounds, the first after
//  BM_RECOVERY_AGAIN_MS and each next after twice the wait before (250 ms
//  to 4 s: about 8 s in all); the recovery is under way until then.  An id
//  refused every time is left in the unfinished set, logged at ERROR: the
//  next recovery (a restart, a failover, Redis back) reads it again.
#define BM_RECOVERY_AGAIN_TRIES 5
#define BM_RECOVERY_AGAIN_MS 250

static void s_recover_id (bm_broker_t *self, const char *id);

static void
s_again_clear (bm_broker_t *self)
{
    if (self->recovery_again_timer > 0 && self->loop)
        zloop_timer_end (self->loop, self->recovery_again_timer);
    self->recovery_again_timer = 0;
    self->recovery_again_count = 0;
    self->recovery_again_tries = 0;
}

void
bm_jobstore_recovery_again_free (bm_broker_t *self)
{
    free (self->recovery_again);
    self->recovery_again = NULL;
    self->recovery_again_count = self->recovery_again_alloc = 0;
}

static void
s_again_add (bm_broker_t *self, const char *id, const char *error)
{
    if (self->recovery_again_count == self->recovery_again_alloc) {
        self->recovery_again_alloc = self->recovery_again_alloc ? 2 * self->recovery_again_alloc : 16;
        self->recovery_again = bm_realloc_or_abort (self->recovery_again,
                                                    self->recovery_again_alloc * BM_ID_SLOT,
                                                    "the jobs to recover again");
    }
    if (!self->recovery_again_count)
        snprintf (self->recovery_again_error, sizeof self->recovery_again_error, "%s", error);
    bm_id_copy (self->recovery_again [self->recovery_again_count++], BM_ID_SLOT, id);
}

//  The next round: the records Redis refused are read again.
static int
s_on_recovery_again (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    self->recovery_again_timer = 0;
    if (!self->recovering || !self->store || !bm_store_up (self->store)) {
        //  Redis went away meanwhile: the recovery starts over when it is back
        s_again_clear (self);
        self->recovering = false;
        return 0;
    }
    self->recovery_again_tries++;
    char (*ids) [BM_ID_SLOT] = self->recovery_again;
    size_t count = self->recovery_again_count;
    self->recovery_again = NULL;
    self->recovery_again_count = self->recovery_again_alloc = 0;
    self->recovery_pending += (int) count;
    for (size_t i = 0; i < count; i++)
        s_recover_id (self, ids [i]);
    free (ids);
    return 0;
}

static void s_recovery_finish (bm_broker_t *self);

//  Every read of the recovery answered: it ends, unless Redis refused
//  some, which are read again while rounds are left.
static void
s_recovery_check (bm_broker_t *self)
{
    if (self->recovery_pending > 0 || !self->recovering || self->recovery_again_timer > 0)
        return;
    size_t count = self->recovery_again_count;
    int wait = BM_RECOVERY_AGAIN_MS << self->recovery_again_tries;
    if (count && self->recovery_again_tries < BM_RECOVERY_AGAIN_TRIES && self->loop) {
        int timer = zloop_timer (self->loop, (size_t) wait, 1, s_on_recovery_again, self);
        if (timer > 0) {
            self->recovery_again_timer = timer;
            bm_warn (NULL, "recovery: redis answered %zu job record reads with an error (%s); "
                     "read again in %d ms", count, self->recovery_again_error, wait);
            return;
        }
    }
    for (size_t i = 0; i < count; i++)
        bm_error (self->recovery_again [i], "not recovered: redis answered the read of its "
                  "record with an error (%s) %d times; it stays in the unfinished set, and the "
                  "next recovery (a restart, a failover, Redis back) reads it again",
                  self->recovery_again_error, self->recovery_again_tries + 1);
    s_recovery_finish (self);
}

static void
s_recovery_finish (bm_broker_t *self)
{
    s_again_clear (self);
    self->recovering = false;
    self->recovered = true;
    bm_stats_ready_gauges (self);
    size_t queued = 0;
    bm_service_t *service = (bm_service_t *) zhashx_first (self->services);
    while (service) {
        queued += bm_heap_size (service->queue);
        service = (bm_service_t *) zhashx_next (self->services);
    }
    size_t held = self->held ? zlistx_size (self->held) : 0;
    bm_info (NULL, "recovered %zu unfinished jobs from redis (%zu queued, %zu delayed, "
             "%zu were running)", queued + held + bm_heap_size (self->delayed), queued,
             bm_heap_size (self->delayed), held);
    bm_workers_recovery_done (self);
    //  Another broker led on this Redis before (epoch above 1) and left no
    //  record of its types (an older version): its workers come back
    //  within the hold, and a type only they named is not unknown
    //  meanwhile.  With the record, a type it lists is known already.
    bm_types_store_recovered (self);
    if (self->lease && bm_lease_epoch (self->lease) > 1 && self->types_recorded == 0) {
        self->types_wait_until = bm_mono_ms () + s_hold_ms (self);
        bm_info (NULL, "a bot type no worker registered yet is refused store_unavailable, not "
                 "unknown_bot_type, for %" PRId64 " ms while the workers register again",
                 s_hold_ms (self));
    }
    if (self->held) {
        self->held_until = bm_mono_ms () + s_hold_ms (self);
        bm_info (NULL, "the jobs that were running and no worker reported yet wait up to "
                 "%" PRId64 " ms for their workers before they are dispatched again",
                 s_hold_ms (self));
    }
    service = (bm_service_t *) zhashx_first (self->services);
    zlistx_t *all = zlistx_new ();
    while (service) {
        zlistx_add_end (all, service);
        service = (bm_service_t *) zhashx_next (self->services);
    }
    while ((service = (bm_service_t *) zlistx_detach (all, NULL)))
        bm_dispatch (self, service);
    zlistx_destroy (&all);
    bm_finished_restore (self);
    bm_deps_recovery_done (self);
    bm_stats_trim ("the recovery");
}

static void
s_on_recovered_job (redisReply *reply, void *arg)
{
    s_job_ref_t *ref = (s_job_ref_t *) arg;
    bm_broker_t *self = ref->broker;
    self->recovery_pending--;
    if (!reply) {
        free (ref);
        //  Redis went away mid-recovery: it starts over on reconnect.
        if (self->recovery_pending == 0) {
            s_again_clear (self);
            self->recovering = false;
        }
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        //  One WARN line a round says how many (a BUSY Redis refuses them all)
        bm_debug (ref->id, "recovery: reading its record failed: %s", reply->str);
        s_again_add (self, ref->id, reply->str);
        free (ref);
        s_recovery_check (self);
        return;
    }
    bool was_held = false;
    bm_job_t *job = bm_jobstore_job_from_hash (self, ref->id, reply, &was_held);
    free (ref);
    if (job && !bm_jobtab_lookup (self->jobs, job->id) && !bm_job_terminal (job)) {
        if (job->seq > self->seq)
            self->seq = job->seq;
        bm_job_insert (self, job);
        bool was_running = job->state == JOB_RUNNING;
        //  Its key, unless the idempotency hash gave it already (a record
        //  of the earlier layout, with no hash entry)
        const char *known = job->idem_key ? bm_idem_lookup (self->idem, job->idem_key,
                                                            bm_now_ms (), NULL) : NULL;
        if (job->idem_key && !(known && streq (known, job->id)))
            bm_idem_put (self->idem, job->idem_key, job->id,
                         bm_idem_fingerprint_bytes (job->service->name, job->payload,
                                                    job->payload_size),
                         job->created_at + self->config.idempotency_ttl_ms);
        if (job->state == JOB_WAITING_CHILDREN)
            bm_deps_recovered_job (self, job);
        else
        if (job->state == JOB_DELAYED) {
            if (job->run_at <= 0)
                job->run_at = bm_now_ms ();
            bm_delayed_add (self, job);
        }
        else {
            //  A queued job's worker may still send the DONE of the run
            //  it lost (bm_jobstore_job_from_hash); one that was running,
            //  or held for its worker by the broker before, is held again.
            job->lost = job->lost || was_running || was_held;
            if (was_running || was_held) {
                s_hold (self, job);
                bm_info (job->id, "recovered: %s (attempt %" PRId64 ") on %s, queued "
                         "again; held for its worker to report it",
                         was_running ? "was running" : "was held for its worker", job->attempts,
                         job->last_worker ? job->last_worker : "a worker");
                bm_jobstore_persist_state (self, job);
            }
            else {
                //  A record written before queued jobs shed their run's
                //  fields is tidied.
                bool stale = job->progress || job->started_at || job->worker_name;
                bm_job_enqueue (self, job);
                if (stale)
                    bm_jobstore_persist_state (self, job);
            }
            //  A worker that said it runs it takes it back.
            bm_workers_claim_recovered (self, job);
        }
    }
    else
    if (job) {
        //  A finished job still listed as unfinished (its SREM was lost in
        //  a crash): tidy the set.
        if (bm_job_terminal (job))
            s_live_remove (self, job->id);
        bm_job_destroy (&job);
    }
    s_recovery_check (self);
}

void
bm_jobstore_recovery_old_free (bm_broker_t *self)
{
    for (size_t i = 0; i < self->recovery_old_count; i++)
        free (self->recovery_old [i]);
    free (self->recovery_old);
    self->recovery_old = NULL;
    self->recovery_old_count = 0;
}

//  The earlier layout's sorted set "live" (written by brokers before the
//  unfinished set): its ids are kept for s_on_live_ids, which recovers
//  them with the unfinished set's and moves them there.
static void
s_on_old_live_ids (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    bm_jobstore_recovery_old_free (self);
    if (!reply)
        return;                 //  Redis went away: the next reply says so too
    if (reply->type != REDIS_REPLY_ARRAY) {
        bm_warn (NULL, "redis: the earlier layout's live set could not be read (%s): "
                 "its jobs are not recovered", reply->type == REDIS_REPLY_ERROR ? reply->str : "not a list");
        return;
    }
    if (reply->elements == 0)
        return;
    self->recovery_old = (char **) bm_realloc_or_abort (NULL, reply->elements * sizeof (char *),
                                                        "the earlier live set's ids");
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *id = reply->element [i];
        if (id->type == REDIS_REPLY_STRING && id->len <= BM_MAX_ID_LEN + 15)
            self->recovery_old [self->recovery_old_count++] = strdup (id->str);
    }
}

//  One recovered id: its record read back (HGETALL).
static void
s_recover_id (bm_broker_t *self, const char *id)
{
    bm_cmd_t cmd;
    cmd.argc = 0;
    snprintf (cmd.key, sizeof cmd.key, "%s{bm}:job:%s", self->config.redis_prefix, id);
    bm_cmd_arg_str (&cmd, "HGETALL");
    bm_cmd_arg_str (&cmd, cmd.key);
    s_job_ref_t *ref = (s_job_ref_t *) zmalloc (sizeof (s_job_ref_t));
    ref->broker = self;
    snprintf (ref->id, sizeof ref->id, "%s", id);
    bm_jobstore_query (self, &cmd, s_on_recovered_job, ref);
}

//  The ids of the earlier layout's live set move to the unfinished set:
//  one SADD, then the DEL of the old set, in one group (in this order, so
//  that a crash between them leaves the ids listed in both, never in
//  neither).
static void
s_migrate_old_live (bm_broker_t *self)
{
    size_t count = self->recovery_old_count;
    const char **argv = (const char **) bm_realloc_or_abort (NULL, (2 + count) * sizeof (char *),
                                                             "a SADD");
    size_t *lens = (size_t *) bm_realloc_or_abort (NULL, (2 + count) * sizeof (size_t), "a SADD");
    char key [256];
    s_unfinished_key (self, key, sizeof key);
    argv [0] = "SADD"; lens [0] = 4;
    argv [1] = key; lens [1] = strlen (key);
    for (size_t i = 0; i < count; i++) {
        argv [2 + i] = self->recovery_old [i];
        lens [2 + i] = strlen (argv [2 + i]);
    }
    bm_store_write (self->store, true, NULL, NULL, (int) (2 + count), argv, lens);
    free (argv);
    free (lens);
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "DEL", "live", NULL);
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
    bm_info (NULL, "redis: %zu ids of the earlier layout's live set moved to the unfinished set",
             count);
}

static void
s_on_live_ids (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        bm_jobstore_recovery_old_free (self);
        s_again_clear (self);
        self->recovering = false;
        return;
    }
    //  The earlier layout's ids not in the unfinished set are read too.
    zhashx_t *seen = NULL;
    size_t old = 0;
    if (self->recovery_old_count) {
        seen = zhashx_new ();
        for (size_t i = 0; i < reply->elements; i++)
            if (reply->element [i]->type == REDIS_REPLY_STRING)
                zhashx_insert (seen, reply->element [i]->str, (void *) "");
        for (size_t i = 0; i < self->recovery_old_count; i++)
            if (zhashx_insert (seen, self->recovery_old [i], (void *) "") == 0)
                self->recovery_old [old++] = self->recovery_old [i];
            else
                free (self->recovery_old [i]);
        self->recovery_old_count = old;
        zhashx_destroy (&seen);
    }
    self->recovery_pending = (int) (reply->elements + old);
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *id = reply->element [i];
        if (id->type != REDIS_REPLY_STRING || id->len > BM_MAX_ID_LEN + 15) {
            self->recovery_pending--;
            continue;
        }
        s_recover_id (self, id->str);
    }
    for (size_t i = 0; i < old; i++)
        s_recover_id (self, self->recovery_old [i]);
    if (self->recovery_old)
        s_migrate_old_live (self);
    bm_jobstore_recovery_old_free (self);
    if (self->recovery_pending == 0)
        s_recovery_finish (self);
}

//  After the idempotency keys (bm_idem_store_recover): the unfinished
//  jobs, then the schedules (their runs' checks then see the jobs).
static void
s_recover_jobs (bm_broker_t *self, bool read)
{
    if (!read) {
        //  Redis went away: the replies still due say so too; recovery
        //  starts over when it is back.
        bm_jobstore_recovery_old_free (self);
        s_again_clear (self);
        self->recovering = false;
        return;
    }
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "SMEMBERS", "unfinished", NULL);
    bm_jobstore_query (self, &cmd, s_on_live_ids, self);
    bm_schedule_recover (self);
}

void
bm_jobstore_on_store_state (bool up, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    //  A standby recovers only once it leads (bm_broker_ha.c).
    if (up && !self->recovered && !self->recovering && bm_ha_may_recover (self)) {
        s_again_clear (self);
        self->recovering = true;
        //  The totals go on from the last snapshot (the first recovery).
        bm_stats_continue (self);
        bm_cmd_t cmd;
        //  Paused types first: the replies come in order, so nothing is
        //  dispatched for a paused type when the queues are rebuilt.
        bm_cmd_start (self, &cmd, "SMEMBERS", "paused", NULL);
        bm_jobstore_query (self, &cmd, bm_control_on_paused, self);
        //  The earlier layout's live set, then the unfinished set: their
        //  ids together are the jobs to recover.
        bm_cmd_start (self, &cmd, "ZRANGE", "live", NULL);
        bm_cmd_arg_str (&cmd, "0");
        bm_cmd_arg_str (&cmd, "-1");
        bm_jobstore_query (self, &cmd, s_on_old_live_ids, self);
        //  The bot types workers registered (bm_types_store.c).
        bm_types_store_recover (self);
        //  The idempotency keys before the jobs (a recovered job's key is
        //  then known already), page by page; then the jobs.
        bm_idem_store_recover (self, s_recover_jobs);
    }
    //  GET /ready: never "ready" between the connection and the recovery.
    if (up)
        bm_stats_ready_gauges (self);
    else {
        bm_series_set (self->m_redis_up, 0);
        bm_series_set (self->m_recovering, 0);
        atomic_store (&self->redis_reached, false);
    }
}

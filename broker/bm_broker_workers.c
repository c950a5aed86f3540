/*  bm_broker_workers.c - workers as the broker sees them, and BMW01.

    READY registers a worker (Majordomo's worker: identity, services,
    credit, expiry); DONE, PROGRESS, RELEASE, HEARTBEAT and DISCONNECT are
    handled here (protocol.md section 5).  */
#include "bm_broker_internal.h"

void
bm_workers_destroy (bm_worker_entry_t **self_p)
{
    if (*self_p) {
        bm_worker_entry_t *worker = *self_p;
        free (worker->key);
        free (worker->name);
        zframe_destroy (&worker->identity);
        zlistx_destroy (&worker->jobs);
        zlistx_destroy (&worker->stopping);
        free (worker);
        *self_p = NULL;
    }
}

static void
s_stopping_free (void **item)
{
    free (*item);
    *item = NULL;
}

//  Unlink a worker everywhere, re-queue its jobs, free it.
void
bm_workers_delete (bm_broker_t *self, bm_worker_entry_t *worker, const char *reason)
{
    bm_info (NULL, "worker %s gone (%s), %zu jobs re-queued", worker->name, reason,
             zlistx_size (worker->jobs));
    for (int i = 0; i < worker->service_count; i++) {
        bm_service_t *service = worker->services [i];
        void *handle = zlistx_find (service->workers, worker);
        if (handle)
            zlistx_delete (service->workers, handle);
    }
    bm_job_t *job;
    while ((job = (bm_job_t *) zlistx_first (worker->jobs)))
        bm_job_requeue (self, job, "worker_lost");
    bm_stopping_t *stop;
    while ((stop = (bm_stopping_t *) zlistx_first (worker->stopping))) {
        stop->service->usage--;
        zlistx_delete (worker->stopping, zlistx_cursor (worker->stopping));
    }
    bm_service_t *services [BM_MAX_WORKER_TYPES];
    int count = worker->service_count;
    memcpy (services, worker->services, sizeof services);
    zhashx_delete (self->workers, worker->key);     //  Frees it
    bm_series_set (self->m_workers, (double) zhashx_size (self->workers));
    for (int i = 0; i < count; i++)
        bm_dispatch (self, services [i]);
}

//  READY {name, types, credit, pid?}
static void
s_worker_ready (bm_broker_t *self, zframe_t *identity, const char *key,
                bm_worker_entry_t *worker, const msgpack_object *body)
{
    const msgpack_object *types = bm_obj_get (body, "types");
    int64_t credit;
    char name [129];
    if (!types || types->type != MSGPACK_OBJECT_ARRAY || types->via.array.size == 0
    ||  types->via.array.size > BM_MAX_WORKER_TYPES
    ||  !bm_obj_int (body, "credit", &credit) || credit < 0 || credit > 1000000) {
        bm_broker_send_worker_simple (self, identity, BM_NACK, "bad_request",
                              "READY needs types (1-16 bot types) and credit (0-1000000)");
        return;
    }
    if (!bm_obj_strcpy (body, "name", name, sizeof name) || !bm_valid_id (name, strlen (name)))
        snprintf (name, sizeof name, "worker-%.8s", key);
    bm_service_t *services [BM_MAX_WORKER_TYPES];
    int count = 0;
    for (uint32_t i = 0; i < types->via.array.size; i++) {
        const msgpack_object *t = &types->via.array.ptr [i];
        if (t->type != MSGPACK_OBJECT_STR || !bm_valid_bot_type (t->via.str.ptr, t->via.str.size)) {
            bm_broker_send_worker_simple (self, identity, BM_NACK, "bad_request",
                                  "each type must be 1-32 characters of a-z, 0-9, _ and -");
            return;
        }
        char type [BM_MAX_BOT_TYPE_LEN + 1];
        memcpy (type, t->via.str.ptr, t->via.str.size);
        type [t->via.str.size] = 0;
        services [count++] = bm_service_require (self, type);
    }
    if (worker) {
        //  A second READY changes the credit only.
        worker->credit = credit;
        bm_info (NULL, "worker %s credit now %" PRId64, worker->name, credit);
        bm_dispatch_worker (self, worker);
        return;
    }
    worker = (bm_worker_entry_t *) zmalloc (sizeof (bm_worker_entry_t));
    worker->key = strdup (key);
    worker->identity = zframe_dup (identity);
    worker->name = strdup (name);
    worker->credit = credit;
    worker->jobs = zlistx_new ();
    worker->stopping = zlistx_new ();
    zlistx_set_destructor (worker->stopping, s_stopping_free);
    bm_obj_int (body, "pid", &worker->pid);
    for (int i = 0; i < count; i++) {
        bool dup = false;
        for (int j = 0; j < worker->service_count; j++)
            dup |= worker->services [j] == services [i];
        if (!dup) {
            worker->services [worker->service_count++] = services [i];
            zlistx_add_end (services [i]->workers, worker);
            services [i]->served = true;
        }
    }
    worker->expiry = bm_mono_ms () + self->config.heartbeat_ms * self->config.liveness;
    worker->heartbeat_at = bm_mono_ms () + self->config.heartbeat_ms;
    worker->last_seen = bm_now_ms ();
    zhashx_insert (self->workers, key, worker);
    bm_series_set (self->m_workers, (double) zhashx_size (self->workers));
    char types_text [BM_MAX_WORKER_TYPES * (BM_MAX_BOT_TYPE_LEN + 1) + 1] = "";
    for (int i = 0; i < worker->service_count; i++) {
        if (i)
            strcat (types_text, ",");
        strcat (types_text, worker->services [i]->name);
    }
    bm_info (NULL, "worker %s ready: types %s, credit %" PRId64, name, types_text, credit);
    bm_dispatch_worker (self, worker);
}

//  Release the slot of a job the worker was told to stop; true if found.
static bool
s_worker_release_stopping (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    bm_stopping_t *stop = (bm_stopping_t *) zlistx_first (worker->stopping);
    while (stop) {
        if (streq (stop->id, id)) {
            stop->service->usage--;
            worker->running--;
            zlistx_delete (worker->stopping, zlistx_cursor (worker->stopping));
            bm_dispatch_worker (self, worker);
            return true;
        }
        stop = (bm_stopping_t *) zlistx_next (worker->stopping);
    }
    return false;
}

//  Tell a worker to stop a job that has ended (timeout, cancel); keep the
//  slot until it confirms.
void
bm_workers_stop_job (bm_broker_t *self, bm_job_t *job, const char *reason)
{
    bm_worker_entry_t *worker = job->worker;
    bm_stopping_t *stop = (bm_stopping_t *) zmalloc (sizeof (bm_stopping_t));
    snprintf (stop->id, sizeof stop->id, "%s", job->id);
    stop->service = job->service;
    zlistx_add_end (worker->stopping, stop);
    //  Keep the permit and the credit: bump them so bm_job_unassign's
    //  release leaves them held by the stopping entry.
    worker->running++;
    job->service->usage++;
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 2);
    bm_pack_kv_str (&body.pk, "jobId", job->id);
    bm_pack_kv_str (&body.pk, "reason", reason);
    bm_broker_send_worker (self, worker, BM_WCANCEL, &body);
    bm_body_free (&body);
}

//  The job a worker names in DONE/PROGRESS/RELEASE, if it is its own.
static bm_job_t *
s_worker_job (bm_broker_t *self, bm_worker_entry_t *worker, const msgpack_object *body, char *id, size_t size)
{
    id [0] = 0;
    if (!bm_obj_strcpy (body, "jobId", id, size))
        return NULL;
    bm_job_t *job = (bm_job_t *) zhashx_lookup (self->jobs, id);
    if (!job || job->state != JOB_RUNNING)
        return NULL;
    if (job->worker == worker)
        return job;
    //  A worker that reconnected (new identity, same name) finishes what it
    //  ran before; the job moves to its new entry.
    if (job->worker && job->worker_name && streq (job->worker_name, worker->name)) {
        bm_worker_entry_t *old = job->worker;
        void *handle = zlistx_find (old->jobs, job);
        if (handle)
            zlistx_delete (old->jobs, handle);
        old->running--;
        job->worker = worker;
        zlistx_add_end (worker->jobs, job);
        worker->running++;
        return job;
    }
    return NULL;
}

//  A worker reported a run that hit a resource limit.  The limit's name
//  comes from a peer: only the four the workers know become a label.
static void
s_count_limit_kill (bm_broker_t *self, bm_service_t *service, const char *limit)
{
    static const char *known [] = { "memory", "cpu", "pids", "files", NULL };
    const char *label = "other";
    for (int i = 0; known [i]; i++)
        if (streq (limit, known [i]))
            label = known [i];
    service->limit_kills++;
    bm_series_inc (bm_metric_series (self->mf_limit_kills, service->name, label));
}

//  A DONE from a worker that was declared dead and came back (new socket,
//  same name) for the job it ran then: the job was queued again but not
//  given to anyone else, so the outcome is taken (protocol.md section 5).
static bm_job_t *
s_worker_reclaim (bm_broker_t *self, bm_worker_entry_t *worker, const char *id)
{
    bm_job_t *job = (bm_job_t *) zhashx_lookup (self->jobs, id);
    if (job && job->state == JOB_QUEUED && job->durable && job->attempts > 0
    &&  job->worker_name && streq (job->worker_name, worker->name)) {
        bm_info (job->id, "DONE from %s, which ran attempt %" PRId64 " before it was lost: taken",
                 worker->name, job->attempts);
        return job;
    }
    return NULL;
}

static void
s_worker_done (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    char id [BM_MAX_ID_LEN + 16];
    bm_job_t *job = s_worker_job (self, worker, body, id, sizeof id);
    if (!job && id [0])
        job = s_worker_reclaim (self, worker, id);
    if (!job) {
        //  A DONE for a job it was told to stop is expected (it frees the
        //  slot); anything else is counted.
        if (!s_worker_release_stopping (self, worker, id)) {
            bm_warn (id [0] ? id : NULL, "DONE from %s for a job it does not hold", worker->name);
            bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
        }
        bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                              "this worker does not hold that job");
        return;
    }
    bool ok = false;
    bm_obj_bool (body, "ok", &ok);
    const msgpack_object *wh = bm_obj_get (body, "webhook");
    if (bm_job_is_delivery (job) && wh && wh->type == MSGPACK_OBJECT_MAP) {
        bm_delivery_update (self, job, msg, wh);
        job->wh_final = true;
    }
    int64_t progress;
    if (bm_obj_int (body, "progress", &progress) && progress >= 0 && progress <= 100)
        job->progress = progress;
    if (ok) {
        const msgpack_object *result = bm_obj_get (body, "result");
        if (result && bm_obj_depth (result) > BM_MAX_NESTING) {
            bm_job_finish (self, job, JOB_FAILED, "bad_output",
                          "the result nests deeper than 30 levels");
            return;
        }
        size_t size = 1;
        char *packed = result ? bm_keep_value (msg, "result", result, &size)
                              : bm_memdup ("\xc0", 1);
        if ((int64_t) size > self->config.max_payload) {
            free (packed);
            bm_job_finish (self, job, JOB_FAILED, "bad_output",
                          "the result is larger than MAX_PAYLOAD_BYTES");
            return;
        }
        free (job->result);
        job->result = packed;
        job->result_size = size;
        job->progress = 100;
        bm_job_finish (self, job, JOB_COMPLETED, NULL, NULL);
    }
    else {
        const msgpack_object *error = bm_obj_get (body, "error");
        char code [64] = "bot_failed";
        char message [4096] = "the bot failed";
        if (error && error->type == MSGPACK_OBJECT_MAP) {
            if (!bm_obj_strcpy (error, "code", code, sizeof code))
                snprintf (code, sizeof code, "bot_failed");
            const char *text;
            size_t len;
            int64_t exit_code;
            if (bm_obj_int (error, "exitCode", &exit_code)) {
                job->exit_code = exit_code;
                job->has_exit_code = true;
            }
            char limit [16];
            if (streq (code, "resource_limit") && bm_obj_strcpy (error, "limit", limit, sizeof limit))
                s_count_limit_kill (self, job->service, limit);
            if (bm_obj_str (error, "message", &text, &len)) {
                if (len >= sizeof message) {
                    //  Cut on a UTF-8 character boundary.
                    len = sizeof message - 1;
                    while (len > 0 && ((unsigned char) text [len] & 0xc0) == 0x80)
                        len--;
                }
                memcpy (message, text, len);
                message [len] = 0;
            }
        }
        bm_job_finish (self, job, JOB_FAILED, code, message);
    }
}

static void
s_worker_progress (bm_broker_t *self, bm_worker_entry_t *worker, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    char id [BM_MAX_ID_LEN + 16];
    bm_job_t *job = s_worker_job (self, worker, body, id, sizeof id);
    if (!job) {
        bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
        bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                              "this worker does not hold that job");
        return;
    }
    int64_t progress;
    if (bm_obj_int (body, "progress", &progress) && progress >= 0 && progress <= 100) {
        job->progress = progress;
        bm_jobstore_persist_state (self, job);
    }
    const msgpack_object *wh = bm_obj_get (body, "webhook");
    if (bm_job_is_delivery (job) && wh && wh->type == MSGPACK_OBJECT_MAP)
        bm_delivery_update (self, job, msg, wh);
}

static void
s_worker_release (bm_broker_t *self, bm_worker_entry_t *worker, const msgpack_object *body)
{
    char id [BM_MAX_ID_LEN + 16];
    bm_job_t *job = s_worker_job (self, worker, body, id, sizeof id);
    if (!job) {
        if (!s_worker_release_stopping (self, worker, id)) {
            bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
            bm_broker_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                                  "this worker does not hold that job");
        }
        return;
    }
    //  A released job does not count as an attempt.
    job->attempts--;
    bm_job_requeue (self, job, "released");
    bm_dispatch_worker (self, worker);
    bm_dispatch (self, job->service);
}

void
bm_workers_handle (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    //  The worker table is keyed by the identity in hex (identities are
    //  binary); built on the stack, as this runs for every worker message.
    char key [2 * 256 + 1];
    size_t id_size = zframe_size (identity) > 256 ? 256 : zframe_size (identity);
    static const char hex [] = "0123456789ABCDEF";
    const byte *id = zframe_data (identity);
    for (size_t i = 0; i < id_size; i++) {
        key [2 * i] = hex [id [i] >> 4];
        key [2 * i + 1] = hex [id [i] & 15];
    }
    key [2 * id_size] = 0;
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_lookup (self->workers, key);
    int command = bm_msg_command (msg);
    const msgpack_object *body = bm_msg_body (msg);
    if (worker) {
        worker->expiry = bm_mono_ms () + self->config.heartbeat_ms * self->config.liveness;
        worker->last_seen = bm_now_ms ();
        if (worker->congested) {
            worker->congested = false;
            bm_dispatch_worker (self, worker);
        }
    }
    if (command == BM_READY)
        s_worker_ready (self, identity, key, worker, body);
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
    if (command == BM_PROGRESS)
        s_worker_progress (self, worker, msg);
    else
    if (command == BM_HEARTBEAT)
        ;
    else
    if (command == BM_RELEASE)
        s_worker_release (self, worker, body);
    else
    if (command == BM_DISCONNECT)
        bm_workers_delete (self, worker, "disconnected");
    else {
        bm_series_inc (bm_metric_series (self->mf_frames, "bad_command"));
        bm_broker_send_worker_simple (self, identity, BM_NACK, "bad_command", "unknown worker command");
    }
}

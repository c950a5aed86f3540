/*  bm_codec_worker.c - the worker side's bodies (BMW01): READY, JOB,
    PROGRESS, DONE, CANCEL / RELEASE, DISCONNECT / HEARTBEAT.  See
    bm_codec.h and docs/protocol.md section 5.  */
#include "bm_codec_field.h"
#include "bm_utf8.h"

#include <string.h>

static int s_bots_decode (const msgpack_object *body, bm_codec_heartbeat_t *self,
                          bm_codec_error_t *error);
static void s_bots_encode (const bm_codec_heartbeat_t *self, bm_packer_t *packer);

//  --------------------------------------------------------------------------
//  READY

int
bm_codec_ready_decode (const bm_msg_t *msg, bm_codec_ready_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    const msgpack_object *types = bm_obj_get (body, "types");
    if (!types || types->type != MSGPACK_OBJECT_ARRAY || types->via.array.size == 0
    ||  types->via.array.size > BM_MAX_WORKER_TYPES)
        return bm_field_fail (error, "types", "READY needs types (1-%d bot types)", BM_MAX_WORKER_TYPES);
    for (uint32_t i = 0; i < types->via.array.size; i++) {
        const msgpack_object *t = &types->via.array.ptr [i];
        if (t->type != MSGPACK_OBJECT_STR || !bm_valid_bot_type (t->via.str.ptr, t->via.str.size))
            return bm_field_fail (error, "types", "each of types must be 1-%d characters of a-z, 0-9, _ and -",
                           BM_MAX_BOT_TYPE_LEN);
        self->types [i] = t->via.str.ptr;
        self->type_lens [i] = t->via.str.size;
    }
    self->type_count = (int) types->via.array.size;
    if (bm_field_int (body, "credit", 0, BM_MAX_CREDIT, &self->credit, error)
    ||  bm_field_opt_int (body, "pid", INT64_MIN, INT64_MAX, &self->has_pid, &self->pid, error)
    ||  bm_field_opt_bool (body, "batch", &self->batch, error))
        return -1;
    const msgpack_object *running = bm_obj_get (body, "running");
    if (running) {
        if (running->type != MSGPACK_OBJECT_ARRAY || running->via.array.size > BM_MAX_READY_RUNNING)
            return bm_field_fail (error, "running", "running must be an array of at most %d job ids",
                                  BM_MAX_READY_RUNNING);
        for (uint32_t i = 0; i < running->via.array.size; i++) {
            const msgpack_object *id = &running->via.array.ptr [i];
            if (id->type != MSGPACK_OBJECT_STR || !bm_valid_id (id->via.str.ptr, id->via.str.size))
                return bm_field_fail (error, "running", "each of running must be a job id");
        }
        self->running = running;
        self->running_count = (int) running->via.array.size;
    }
    if (s_bots_decode (body, &self->bots, error))
        return -1;
    //  No name (absent or nil): the broker names the worker itself.  A
    //  name that does not read is refused, like any field.
    return bm_field_id (body, "name", false, self->name, error);
}

void
bm_codec_ready_encode (const bm_codec_ready_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 3 + self->has_pid + self->batch + (self->running_count > 0)
                                   + (self->bots.count > 0));
    bm_pack_kv_str (&packer->pk, "name", self->name);
    bm_field_pack_key (packer, "types");
    msgpack_pack_array (&packer->pk, (size_t) self->type_count);
    for (int i = 0; i < self->type_count; i++)
        bm_pack_str (&packer->pk, self->types [i]);
    bm_field_pack_int (packer, "credit", self->credit);
    if (self->has_pid)
        bm_field_pack_int (packer, "pid", self->pid);
    if (self->batch)
        bm_pack_kv_bool (&packer->pk, "batch", true);
    if (self->running_count > 0) {
        bm_field_pack_key (packer, "running");
        msgpack_pack_array (&packer->pk, (size_t) self->running_count);
        for (int i = 0; i < self->running_count; i++)
            bm_pack_str (&packer->pk, self->running_ids [i]);
    }
    if (self->bots.count > 0)
        s_bots_encode (&self->bots, packer);
}

//  --------------------------------------------------------------------------
//  JOB, PROGRESS, DONE

int
bm_codec_job_decode (const bm_msg_t *msg, bm_codec_job_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    bool has;
    if (bm_field_id (body, "jobId", true, self->job_id, error)
    ||  bm_field_bot_type (body, "botType", true, self->bot_type, error)
    ||  bm_field_int (body, "attempt", 1, INT64_MAX, &self->attempt, error)
    ||  bm_field_int (body, "timeoutMs", 1, BM_MAX_TIMEOUT_MS, &self->timeout_ms, error)
    ||  bm_field_opt_int (body, "deadline", 0, INT64_MAX, &has, &self->deadline, error)
    ||  bm_field_opt_webhook (body, &self->has_webhook, &self->webhook, error))
        return -1;
    bm_field_value (msg, "payload", &self->payload);
    return 0;
}

void
bm_codec_job_encode (const bm_codec_job_t *self, bm_packer_t *packer)
{
    //  Frame 2: {jobId, botType, payload, attempt, timeoutMs, deadline[, webhook]}
    msgpack_pack_map (&packer->pk, 5 + (self->deadline > 0) + self->has_webhook);
    bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    bm_pack_kv_str (&packer->pk, "botType", self->bot_type);
    bm_field_pack_value (packer, "payload", &self->payload);
    bm_field_pack_int (packer, "attempt", self->attempt);
    bm_field_pack_int (packer, "timeoutMs", self->timeout_ms);
    if (self->deadline > 0)
        bm_field_pack_int (packer, "deadline", self->deadline);
    if (self->has_webhook) {
        bm_field_pack_key (packer, "webhook");
        bm_codec_webhook_encode (&self->webhook, packer);
    }
}

int
bm_codec_progress_decode (const bm_msg_t *msg, bm_codec_progress_t *self,
                          bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_id (body, "jobId", true, self->job_id, error))
        return -1;
    bm_field_progress (body, &self->has_progress, &self->progress);
    if (bm_field_opt_bool (body, "waiting", &self->waiting, error)
    ||  bm_field_opt_bool (body, "started", &self->started, error))
        return -1;
    return bm_field_opt_webhook (body, &self->has_webhook, &self->webhook, error);
}

void
bm_codec_progress_encode (const bm_codec_progress_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 1 + self->has_progress + self->waiting + self->started
                                   + self->has_webhook);
    bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    if (self->has_progress)
        bm_field_pack_int (packer, "progress", self->progress);
    if (self->waiting)
        bm_pack_kv_bool (&packer->pk, "waiting", true);
    if (self->started)
        bm_pack_kv_bool (&packer->pk, "started", true);
    if (self->has_webhook) {
        bm_field_pack_key (packer, "webhook");
        bm_codec_webhook_encode (&self->webhook, packer);
    }
}

int
bm_codec_done_decode (const bm_msg_t *msg, bm_codec_done_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_id (body, "jobId", true, self->job_id, error))
        return -1;
    //  A non-boolean ok reads as false: the job fails, it is not lost.
    bm_obj_bool (body, "ok", &self->ok);
    //  A DONE ends its job: an optional field that does not read is
    //  ignored rather than the DONE refused (the job would stay running
    //  until its timeout).
    bool has;
    bm_codec_error_t ignored;
    if (bm_field_opt_int (body, "startedAt", 0, INT64_MAX, &has, &self->started_at, &ignored))
        self->started_at = 0;
    if (bm_field_opt_int (body, "finishedAt", 0, INT64_MAX, &has, &self->finished_at, &ignored))
        self->finished_at = 0;
    if (bm_field_opt_int (body, "attempt", 1, INT64_MAX, &has, &self->attempt, &ignored))
        self->attempt = 0;
    if (bm_field_opt_webhook (body, &self->has_webhook, &self->webhook, &ignored)) {
        self->has_webhook = false;
        memset (&self->webhook, 0, sizeof self->webhook);
    }
    bm_field_progress (body, &self->has_progress, &self->progress);
    bm_field_value (msg, "result", &self->result);
    self->result_too_deep = self->result.obj && bm_obj_depth (self->result.obj) > BM_MAX_NESTING;
    bm_field_job_error (self->ok ? NULL : bm_obj_get (body, "error"), &self->error, "the bot failed");
    const msgpack_object *log = bm_obj_get (body, "log");
    if (log && log->type == MSGPACK_OBJECT_STR) {
        size_t start = bm_utf8_tail (log->via.str.ptr, log->via.str.size, BM_MAX_JOB_LOG_LEN);
        self->log.ptr = log->via.str.ptr + start;
        self->log.len = log->via.str.size - start;
    }
    else
    if (log && log->type != MSGPACK_OBJECT_NIL)
        self->log_invalid = "is not a string";
    return 0;
}

void
bm_codec_done_encode (const bm_codec_done_t *self, bm_packer_t *packer)
{
    bool result = self->ok && (self->result.obj || self->result.data);
    msgpack_pack_map (&packer->pk, 3 + (self->started_at > 0) + (self->finished_at > 0)
                                   + self->has_progress + self->has_webhook
                                   + (self->attempt > 0) + (self->log.len > 0)
                                   - (self->ok && !result));
    bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    bm_pack_kv_bool (&packer->pk, "ok", self->ok);
    if (result)
        bm_field_pack_value (packer, "result", &self->result);
    else
    if (!self->ok) {
        bm_field_pack_key (packer, "error");
        bm_field_job_error_encode (&self->error, packer);
    }
    if (self->started_at > 0)
        bm_field_pack_int (packer, "startedAt", self->started_at);
    if (self->finished_at > 0)
        bm_field_pack_int (packer, "finishedAt", self->finished_at);
    if (self->has_progress)
        bm_field_pack_int (packer, "progress", self->progress);
    if (self->has_webhook) {
        bm_field_pack_key (packer, "webhook");
        bm_codec_webhook_encode (&self->webhook, packer);
    }
    if (self->attempt > 0)
        bm_field_pack_int (packer, "attempt", self->attempt);
    if (self->log.len > 0)
        bm_field_pack_strn (packer, "log", self->log.ptr, self->log.len);
}

//  --------------------------------------------------------------------------
//  CANCEL / RELEASE, DISCONNECT / HEARTBEAT

int
bm_codec_job_notice_decode (const bm_msg_t *msg, bm_codec_job_notice_t *self,
                            bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    if (bm_field_id (body, "jobId", true, self->job_id, error)
    ||  bm_field_opt_str (body, "reason", BM_MAX_REASON_LEN, &self->reason, error)
    ||  bm_field_opt_bool (body, "lost", &self->lost, error))
        return -1;
    //  Lenient: refusing a RELEASE for its signal would leave the job with
    //  a worker that no longer runs it.
    bool has;
    bm_codec_error_t ignored;
    if (bm_field_opt_int (body, "signal", 1, BM_MAX_SIGNAL, &has, &self->signal, &ignored))
        self->signal = 0;
    return 0;
}

void
bm_codec_job_notice_encode (const bm_codec_job_notice_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 1 + (self->reason.ptr != NULL) + self->lost
                                   + (self->signal > 0));
    bm_pack_kv_str (&packer->pk, "jobId", self->job_id);
    if (self->reason.ptr)
        bm_field_pack_strn (packer, "reason", self->reason.ptr, self->reason.len);
    if (self->lost) {
        msgpack_pack_str_with_body (&packer->pk, "lost", 4);
        msgpack_pack_true (&packer->pk);
    }
    if (self->signal > 0)
        bm_field_pack_int (packer, "signal", self->signal);
}

int
bm_codec_disconnect_decode (const bm_msg_t *msg, bm_codec_disconnect_t *self,
                            bm_codec_error_t *error)
{
    memset (self, 0, sizeof *self);
    if (bm_field_opt_str (bm_field_body (msg), "reason", BM_MAX_REASON_LEN, &self->reason, error))
        return -1;
    //  by is informational, best effort: one that is not a string or is
    //  too long is left out, and the DISCONNECT (a "replaced" above all,
    //  which a worker must not answer with READY at once) still decodes.
    bm_codec_error_t ignored;
    if (bm_field_opt_str (bm_field_body (msg), "by", BM_MAX_DISCONNECT_BY_LEN, &self->by, &ignored))
        self->by = (bm_codec_str_t) { NULL, 0 };
    return 0;
}

void
bm_codec_disconnect_encode (const bm_codec_disconnect_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, (self->reason.ptr != NULL) + (self->by.ptr != NULL));
    if (self->reason.ptr)
        bm_field_pack_strn (packer, "reason", self->reason.ptr, self->reason.len);
    if (self->by.ptr)
        bm_field_pack_strn (packer, "by", self->by.ptr, self->by.len);
}

//  --------------------------------------------------------------------------
//  HEARTBEAT {bots?}

//  bots {TYPE: {mode, processes, recycles, initFailures}} of body, when
//  present, into self (count 0 when absent).  0, or -1 and error.
static int
s_bots_decode (const msgpack_object *body, bm_codec_heartbeat_t *self, bm_codec_error_t *error)
{
    memset (self, 0, sizeof *self);
    const msgpack_object *bots;
    if (bm_field_opt_map (body, "bots", &bots, error))
        return -1;
    if (!bots)
        return 0;
    if (bots->via.map.size > BM_MAX_WORKER_TYPES)
        return bm_field_fail (error, "bots", "bots must hold at most %d types", BM_MAX_WORKER_TYPES);
    for (uint32_t i = 0; i < bots->via.map.size; i++) {
        const msgpack_object *key = &bots->via.map.ptr [i].key;
        const msgpack_object *value = &bots->via.map.ptr [i].val;
        bm_codec_bot_pool_t *bot = &self->bots [self->count];
        if (key->type != MSGPACK_OBJECT_STR
        ||  !bm_valid_bot_type (key->via.str.ptr, key->via.str.size))
            return bm_field_fail (error, "bots", "bots keys must be bot types");
        if (value->type != MSGPACK_OBJECT_MAP)
            return bm_field_fail (error, "bots", "bots.%.*s must be a map",
                                  (int) key->via.str.size, key->via.str.ptr);
        bm_field_copy (bot->type, key->via.str.ptr, key->via.str.size);
        bm_codec_str_t mode;
        bool has;
        if (bm_field_opt_str (value, "mode", sizeof bot->mode - 1, &mode, error)
        ||  bm_field_opt_int (value, "processes", 0, INT32_MAX, &has, &bot->processes, error)
        ||  bm_field_opt_int (value, "recycles", 0, INT64_MAX, &has, &bot->recycles, error)
        ||  bm_field_opt_int (value, "initFailures", 0, INT64_MAX, &has, &bot->init_failures, error))
            return -1;
        if (!mode.ptr || !((mode.len == 4 && memcmp (mode.ptr, "pool", 4) == 0)
                        || (mode.len == 4 && memcmp (mode.ptr, "fork", 4) == 0)))
            return bm_field_fail (error, "bots", "bots.%s.mode must be pool or fork", bot->type);
        bm_field_copy (bot->mode, mode.ptr, mode.len);
        self->count++;
    }
    return 0;
}

//  The key and map of bots (self->count > 0).
static void
s_bots_encode (const bm_codec_heartbeat_t *self, bm_packer_t *packer)
{
    bm_field_pack_key (packer, "bots");
    msgpack_pack_map (&packer->pk, (uint32_t) self->count);
    for (int i = 0; i < self->count; i++) {
        const bm_codec_bot_pool_t *bot = &self->bots [i];
        bm_field_pack_key (packer, bot->type);
        msgpack_pack_map (&packer->pk, 4);
        bm_field_pack_strn (packer, "mode", bot->mode, strlen (bot->mode));
        bm_field_pack_int (packer, "processes", bot->processes);
        bm_field_pack_int (packer, "recycles", bot->recycles);
        bm_field_pack_int (packer, "initFailures", bot->init_failures);
    }
}

int
bm_codec_heartbeat_decode (const bm_msg_t *msg, bm_codec_heartbeat_t *self,
                           bm_codec_error_t *error)
{
    return s_bots_decode (bm_field_body (msg), self, error);
}

void
bm_codec_heartbeat_encode (const bm_codec_heartbeat_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, self->count > 0);
    if (self->count > 0)
        s_bots_encode (self, packer);
}

/*  bm_delivery.c - webhook deliveries (protocol.md section 6).

    When a job with a webhookUrl ends, a delivery job of the built-in type
    webhook carries its body to botmesh-webhook; the delivery state it
    reports is copied into the parent job.  */
#include "bm_broker_internal.h"
#include "bm_json.h"

static void
s_iso_time (int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    snprintf (buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
              tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

//  The JSON text POSTed to the webhook URL. Besides botmesh's own fields it
//  carries the fields receivers of BullMQ-based bot systems read: success,
//  data (the result), error as a string (its code is in errorCode) and
//  timestamp (when the job ended).
static char *
s_webhook_body (const bm_job_t *job)
{
    json_t *body = json_object ();
    json_object_set_new (body, "jobId", json_string (job->id));
    json_object_set_new (body, "botType", json_string (job->service->name));
    json_object_set_new (body, "status", json_string (bm_job_state_names [job->state]));
    json_object_set_new (body, "success", json_boolean (job->state == JOB_COMPLETED));
    json_t *value = NULL;
    if (job->result) {
        msgpack_zone zone;
        msgpack_zone_init (&zone, 1024);
        msgpack_object obj;
        size_t offset = 0;
        if (msgpack_unpack (job->result, job->result_size, &offset, &zone, &obj)
            == MSGPACK_UNPACK_SUCCESS)
            value = bm_json_from_msgpack (&obj, BM_JSON_MAX_DEPTH);
        json_object_set_new (body, "result", value ? json_incref (value) : json_null ());
        msgpack_zone_destroy (&zone);
    }
    json_object_set_new (body, "data", value ? value : json_null ());
    if (job->error_code) {
        const char *message = job->error_message && *job->error_message
                            ? job->error_message : job->error_code;
        json_object_set_new (body, "error", json_string (message));
        json_object_set_new (body, "errorCode", json_string (job->error_code));
    }
    json_object_set_new (body, "attempts", json_integer (job->attempts));
    int64_t duration = job->started_at && job->finished_at > job->started_at
                     ? job->finished_at - job->started_at : 0;
    json_object_set_new (body, "durationMs", json_integer (duration));
    char when [32];
    s_iso_time (job->created_at, when, sizeof when);
    json_object_set_new (body, "createdAt", json_string (when));
    s_iso_time (job->finished_at, when, sizeof when);
    json_object_set_new (body, "finishedAt", json_string (when));
    json_object_set_new (body, "timestamp", json_string (when));
    char *text = bm_json_dumps (body, JSON_COMPACT);
    json_decref (body);
    return text;
}

//  The map and the state it names are set together, here only: every
//  writer knows the state it writes (or, reading a record, reads it once),
//  so that the webhook lists need no unpack of the map.
void
bm_delivery_set_state (bm_job_t *job, const char *wh, size_t size, int state)
{
    assert (state >= -1 && state < BM_WEBHOOK_STATES);
    if (state < 0)
        job->wh_at = 0;
    else
    if (state != job->wh_state)
        job->wh_at = bm_now_ms ();
    free (job->wh);
    job->wh = bm_memdup (wh, size);
    job->wh_size = size;
    job->wh_state = (int8_t) state;
}

//  Keep a job in the list of its webhook's state (self->webhooks): moved
//  to the end of another list when its state changes, left in place while
//  it does not, taken out when it has none.  Delivery jobs and jobs not
//  in the broker's tables are in none.
void
bm_delivery_index (bm_broker_t *self, bm_job_t *job)
{
    if (bm_job_is_delivery (job) || !bm_joblist_has (&self->recent, job))
        return;
    int state = job->wh_state;
    bm_joblist_t *now = job->links [BM_JOBLIST_WEBHOOK].list;
    bm_joblist_t *next = state >= 0 ? &self->webhooks [state] : NULL;
    if (now == next)
        return;
    if (now)
        bm_joblist_remove (now, job);
    if (next)
        bm_joblist_append (next, job);
}

//  Whether a map key is the string key.
static bool
s_key_is (const msgpack_object *obj, const char *key)
{
    return obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == strlen (key)
        && memcmp (obj->via.str.ptr, key, obj->via.str.size) == 0;
}

//  The string value of key in a msgpack map (copied), or NULL.
static char *
s_map_str (const char *map, size_t size, const char *key)
{
    if (!map)
        return NULL;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    msgpack_object obj;
    size_t offset = 0;
    char *value = NULL;
    if (msgpack_unpack (map, size, &offset, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *o = bm_obj_get (&obj, key);
        if (o && o->type == MSGPACK_OBJECT_STR)
            value = strndup (o->via.str.ptr, o->via.str.size);
    }
    msgpack_zone_destroy (&zone);
    return value;
}

//  What a redelivery keeps of a job's webhook state before it: the
//  lastError of its latest delivery that gave up (this state's when it
//  is failed, else the one it kept itself).  NULL: none gave up.
static char *
s_previous_error (const bm_job_t *parent)
{
    bool failed = parent->wh_state == BM_WEBHOOK_FAILED;
    return s_map_str (parent->wh, parent->wh_size, failed ? "lastError" : "previousError");
}

//  The number in a delivery job id, the N of "<jobId>.whN"; 0 if none.
static int64_t
s_delivery_number (const char *id)
{
    const char *dot = strrchr (id, '.');
    return dot && strncmp (dot, ".wh", 3) == 0 ? strtoll (dot + 3, NULL, 10) : 0;
}

bool
bm_delivery_id (const char *id)
{
    return s_delivery_number (id) > 0;
}

//  The webhook-id of parent's current outcome: the job id for its first
//  outcome, else (after a RETRY) the id of the first delivery job made for
//  that outcome, "<jobId>.whN".  Its redeliveries keep it; another outcome
//  of the job has another.
static void
s_webhook_id (const bm_job_t *parent, char *buf, size_t size)
{
    if (parent->deliveries_before > 0)
        snprintf (buf, size, "%s.wh%" PRId64, parent->id, parent->deliveries_before + 1);
    else
        snprintf (buf, size, "%s", parent->id);
}

//  The webhook state of the job a delivery delivers, from the delivery's
//  own (wh): the same map and what the delivery's state does not carry:
//  redeliveries, the deliveries of the job's current outcome before this
//  one (each made by a REDELIVER; absent for the first), and
//  previousError, the lastError of the latest one that gave up before it
//  (kept in the delivery's payload, so it outlives a broker restart).
//  The outcome's first delivery is the one its webhook-id names (the job
//  id: the job's first).  NULL (no memory, or wh is not a map): use wh as
//  it is.
static char *
s_parent_state (const bm_job_t *delivery, const char *wh, size_t size, size_t *out_size)
{
    int64_t number = s_delivery_number (delivery->id);
    char *previous = s_map_str (delivery->payload, delivery->payload_size, "previousError");
    char *webhook_id = s_map_str (delivery->payload, delivery->payload_size, "webhookId");
    int64_t first = webhook_id ? s_delivery_number (webhook_id) : 0;
    free (webhook_id);
    int64_t redeliveries = number - (first > 0 ? first : 1);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    msgpack_object obj;
    size_t offset = 0;
    char *full = NULL;
    if (msgpack_unpack (wh, size, &offset, &zone, &obj) == MSGPACK_UNPACK_SUCCESS
    &&  obj.type == MSGPACK_OBJECT_MAP) {
        bm_packer_t packer;
        bm_packer_init (&packer);
        uint32_t kept = 0;
        for (uint32_t i = 0; i < obj.via.map.size; i++)
            kept += !s_key_is (&obj.via.map.ptr [i].key, "redeliveries")
                 && !s_key_is (&obj.via.map.ptr [i].key, "previousError");
        msgpack_pack_map (&packer.pk, kept + (redeliveries > 0) + (previous != NULL));
        for (uint32_t i = 0; i < obj.via.map.size; i++) {
            const msgpack_object_kv *kv = &obj.via.map.ptr [i];
            if (s_key_is (&kv->key, "redeliveries") || s_key_is (&kv->key, "previousError"))
                continue;
            msgpack_pack_object (&packer.pk, kv->key);
            msgpack_pack_object (&packer.pk, kv->val);
        }
        if (redeliveries > 0)
            bm_pack_kv_int (&packer.pk, "redeliveries", redeliveries);
        if (previous)
            bm_pack_kv_str (&packer.pk, "previousError", previous);
        full = bm_packer_detach (&packer, out_size);
    }
    msgpack_zone_destroy (&zone);
    free (previous);
    return full;
}

//  A delivery's webhook state becomes that of the job it delivers (with
//  s_parent_state's fields), in memory when the job is there, and in
//  Redis.
void
bm_delivery_to_parent (bm_broker_t *self, const bm_job_t *delivery, const char *wh, size_t size,
                       int state)
{
    size_t full_size = size;
    char *full = s_parent_state (delivery, wh, size, &full_size);
    const char *map = full ? full : wh;
    bm_job_t *parent = (bm_job_t *) bm_jobtab_lookup (self->jobs, delivery->parent);
    if (parent) {
        bm_delivery_set_state (parent, map, full_size, state);
        bm_delivery_index (self, parent);
    }
    //  The job's webhook reaches each state as its delivery does (the
    //  delivery's state was set first).
    bm_jobstore_persist_webhook (self, delivery->parent, map, full_size,
                                 parent ? parent->wh_at : delivery->wh_at);
    free (full);
}

//  A webhook state map with just a state and optional error.
char *
bm_delivery_simple_state (bm_broker_t *self, bm_webhook_state_t state, int64_t attempts,
                          const char *error, size_t *size)
{
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 2 + (error != NULL));
    bm_pack_kv_str (&body.pk, "state", bm_webhook_state_names [state]);
    bm_pack_kv_int (&body.pk, "attempts", attempts);
    if (error)
        bm_pack_kv_str (&body.pk, "lastError", error);
    *size = body.sbuf.size;
    char *copy = bm_memdup (body.sbuf.data, body.sbuf.size);
    bm_body_free (&body);
    return copy;
}

//  The delivery job of a terminal job with a webhook URL; the job's
//  webhook state says pending and its delivery count is one more.  A
//  redelivery keeps the previousError of the outcome's deliveries before
//  it; the first delivery of an outcome has none.
static bm_job_t *
s_delivery_new (bm_broker_t *self, bm_job_t *parent)
{
    bm_job_t *job = bm_job_new ();
    char *previous = parent->deliveries > parent->deliveries_before
                   ? s_previous_error (parent) : NULL;
    char webhook_id [sizeof parent->id + 32];
    s_webhook_id (parent, webhook_id, sizeof webhook_id);
    parent->deliveries++;
    snprintf (job->id, sizeof job->id, "%s.wh%" PRId64, parent->id, parent->deliveries);
    job->service = bm_service_require (self, BM_WEBHOOK_TYPE);
    job->priority = 0;
    job->seq = ++self->seq;
    job->max_attempts = self->config.webhook_attempts;
    job->timeout_ms = self->config.webhook_timeout_ms;
    job->created_at = bm_now_ms ();
    job->parent = strdup (parent->id);
    job->durable = true;
    job->service->submitted++;
    //  Payload: {url, webhookId, body, previousError?} (the manager reads
    //  the first three; the last is for the job's record, s_parent_state)
    char *text = s_webhook_body (parent);
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 3 + (previous != NULL));
    bm_pack_kv_str (&body.pk, "url", parent->webhook_url);
    bm_pack_kv_str (&body.pk, "webhookId", webhook_id);
    bm_pack_kv_str (&body.pk, "body", text);
    if (previous)
        bm_pack_kv_str (&body.pk, "previousError", previous);
    free (previous);
    free (text);
    job->payload = bm_memdup (body.sbuf.data, body.sbuf.size);
    job->payload_size = body.sbuf.size;
    bm_body_free (&body);
    size_t wh_size;
    char *wh = bm_delivery_simple_state (self, BM_WEBHOOK_PENDING, 0, NULL, &wh_size);
    size_t full_size = wh_size;
    char *full = s_parent_state (job, wh, wh_size, &full_size);
    bm_delivery_set_state (parent, full ? full : wh, full_size, BM_WEBHOOK_PENDING);
    bm_delivery_index (self, parent);
    free (full);
    free (wh);
    return job;
}

//  The delivery number n of parent if it is withheld, else NULL.  Its
//  withheld deliveries are its latest: a walk down from its last one ends
//  at the first that is not (the earlier ones went before it).
static bm_job_t *
s_withheld (bm_broker_t *self, const bm_job_t *parent, int64_t n)
{
    char id [sizeof parent->id + 32];
    snprintf (id, sizeof id, "%s.wh%" PRId64, parent->id, n);
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    return job && job->withheld ? job : NULL;
}

//  Forget a withheld delivery job: from memory and from Redis (a broker
//  started on that Redis would send it).
static void
s_withheld_forget (bm_broker_t *self, bm_job_t *delivery)
{
    bm_jobstore_forget (self, delivery->id);
    bm_job_delete (self, delivery);
}

//  Withhold a delivery job until the outcome it carries is durable.  The
//  broker holds at most WEBHOOK_WITHHELD_MAX of them: the oldest beyond it
//  is dropped and its job's webhook fails, unsent.  Redis confirms writes
//  in order, so the oldest is the one waiting longest for Redis.
static void
s_withhold (bm_broker_t *self, bm_job_t *delivery)
{
    delivery->withheld = true;
    bm_joblist_append (&self->withheld, delivery);
    while ((int64_t) bm_joblist_size (&self->withheld) > self->config.webhook_withheld_max) {
        bm_job_t *oldest = bm_joblist_first (&self->withheld);
        const char *why = "not sent: more deliveries withheld than WEBHOOK_WITHHELD_MAX "
                          "while the job's outcome waited for redis";
        bm_warn (oldest->parent, "delivery %s dropped, unsent: %zu deliveries withheld "
                 "(WEBHOOK_WITHHELD_MAX %" PRId64 ") while their jobs' outcomes wait for redis",
                 oldest->id, bm_joblist_size (&self->withheld), self->config.webhook_withheld_max);
        //  The job's webhook state is this delivery's unless a newer one
        //  (a redelivery) was made since.
        bm_job_t *parent = (bm_job_t *) bm_jobtab_lookup (self->jobs, oldest->parent);
        char latest [sizeof oldest->id + 32] = "";
        if (parent)
            snprintf (latest, sizeof latest, "%s.wh%" PRId64, parent->id, parent->deliveries);
        if (streq (latest, oldest->id)) {
            size_t size;
            char *wh = bm_delivery_simple_state (self, BM_WEBHOOK_FAILED, 0, why, &size);
            bm_delivery_to_parent (self, oldest, wh, size, BM_WEBHOOK_FAILED);
            free (wh);
        }
        self->wh_failed++;
        s_withheld_forget (self, oldest);
    }
}

//  Make the delivery job of a terminal job with a webhook URL.  The job's
//  terminal record is written here, in the same HSET as its pending
//  webhook state and delivery count, ahead of the delivery's own record.
//  The delivery is withheld until Redis confirms that write: a receiver
//  never hears of an outcome a failover could still undo (the job run
//  again by the next leader, and delivered again as a first try).
void
bm_delivery_create (bm_broker_t *self, bm_job_t *parent)
{
    bm_job_t *job = s_delivery_new (self, parent);
    bm_jobstore_persist_terminal (self, parent);
    bm_job_insert (self, job);
    bm_jobstore_persist_full (self, job, true, NULL, NULL);
    s_withhold (self, job);
    if (!parent->confirming)        //  No Redis: confirmed already
        bm_delivery_release (self, parent);
}

//  The terminal state of parent is durable (or will never be: no Redis,
//  or the write was dropped): its withheld deliveries join their queue.
void
bm_delivery_release (bm_broker_t *self, bm_job_t *parent)
{
    bm_service_t *service = NULL;
    bm_job_t *job;
    for (int64_t n = parent->deliveries; n > 0 && (job = s_withheld (self, parent, n)); n--) {
        job->withheld = false;
        bm_joblist_remove (&self->withheld, job);
        bm_job_enqueue (self, job);
        service = job->service;
    }
    if (service)
        bm_dispatch (self, service);
}

//  parent is being removed (a job retried before its outcome was durable
//  keeps that outcome's delivery withheld until it ends again): its
//  withheld deliveries go with it, unsent.
void
bm_delivery_drop_withheld (bm_broker_t *self, bm_job_t *parent)
{
    bm_job_t *job;
    for (int64_t n = parent->deliveries; n > 0 && (job = s_withheld (self, parent, n)); n--) {
        bm_info (parent->id, "withheld delivery %s dropped, unsent: its job is removed", job->id);
        s_withheld_forget (self, job);
    }
}

//  A delivery job reported its state: copy it to the job it delivers.
void
bm_delivery_update (bm_broker_t *self, bm_job_t *delivery, const bm_codec_webhook_t *state)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_webhook_encode (state, &packer);
    size_t size;
    char *wh = bm_packer_detach (&packer, &size);
    if (!wh) {
        bm_error (delivery->id, "no memory for the webhook state: not recorded");
        return;
    }
    int named = bm_webhook_state (state->state);
    bm_delivery_set_state (delivery, wh, size, named);
    bm_delivery_to_parent (self, delivery, wh, size, named);
    //  The delivery's own record keeps the state too, while it goes on: a
    //  broker started from Redis dispatches it with that state, and the
    //  next manager counts on from its attempts.  A final state is not
    //  written: the record is deleted as the delivery ends.
    if (named != BM_WEBHOOK_DELIVERED && named != BM_WEBHOOK_FAILED)
        bm_jobstore_persist_webhook (self, delivery->id, wh, size, delivery->wh_at);
    free (wh);
}

//  The state a delivery's manager reported last (attempts 0, no state:
//  nothing reported, or a state that does not decode).
static void
s_reported (const bm_job_t *delivery, bm_codec_webhook_t *state)
{
    memset (state, 0, sizeof *state);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    msgpack_object obj;
    size_t offset = 0;
    bm_codec_error_t error;
    if (!delivery->wh
    ||  msgpack_unpack (delivery->wh, delivery->wh_size, &offset, &zone, &obj) != MSGPACK_UNPACK_SUCCESS
    ||  bm_codec_webhook_decode (&obj, state, &error))
        memset (state, 0, sizeof *state);
    state->obj = NULL;              //  Its zone is gone
    state->last_error = (bm_codec_str_t) { NULL, 0 };
    msgpack_zone_destroy (&zone);
}

int64_t
bm_delivery_attempts (const bm_job_t *delivery)
{
    bm_codec_webhook_t state;
    s_reported (delivery, &state);
    return state.attempts;
}

//  A delivery's dispatch was lost with its manager (killed, cut off): an
//  HTTP attempt it had under way may have reached the receiver without
//  being reported.  It counts, as the run of a lost worker counts: the
//  next manager's first try says attempt N + 2 (X-Delivery-Attempt), and
//  the job's webhook state says N + 1 now.  Not when the state last
//  reported has the delivery waiting for a retry time still to come: no
//  attempt was under way.
void
bm_delivery_lost (bm_broker_t *self, bm_job_t *delivery)
{
    bm_codec_webhook_t state;
    s_reported (delivery, &state);      //  Nothing reported: not tried yet
    bool waiting = state.next_attempt_at > bm_now_ms ();
    bool final = streq (state.state, "delivered") || streq (state.state, "failed");
    if (waiting || final)
        return;
    snprintf (state.state, sizeof state.state, "retrying");
    state.attempts++;
    state.last_status = 0;
    const char *lost = "the webhook manager was lost during this attempt";
    state.last_error = (bm_codec_str_t) { lost, strlen (lost) };
    state.next_attempt_at = 0;
    bm_info (delivery->id, "its manager was lost: counted as attempt %" PRId64
             " (it may have reached the receiver)", state.attempts);
    bm_delivery_update (self, delivery, &state);
}

/*  bm_schedule.c - repeatable jobs: schedules that make one job per due
    time (a cron expression in a zone, or every N ms), the SCHEDULE client
    command (add, list, remove), and their durability in Redis.

    Each due run is one job whose id derives from the schedule's key and the
    due time ("<key>@<due ms>"): the broker checks that no job of that id
    exists (in memory, then in Redis) before it makes one, so a run is never
    made twice, across restarts too.  A schedule's runs and next due time are
    in its Redis hash; when the broker comes back after its next due time
    passed, it makes one catch-up run (for the earliest missed due time) and
    goes on from now: missed runs are not made one by one.

    Schedules are in a due-time heap with one one-shot zloop timer for the
    earliest, as delayed jobs are (bm_delayed.c).  */
#include "bm_broker_internal.h"
#include "bm_cron.h"

struct _bm_schedule_t {
    char key [BM_MAX_SCHEDULE_KEY_LEN + 1];     //  Its name, part of run ids
    bm_service_t *service;      //  Bot type of its runs
    char *payload;              //  msgpack bytes of every run
    size_t payload_size;
    char *cron_text;            //  The expression, or NULL (every_ms)
    char *tz;                   //  Its zone, or NULL (UTC)
    bm_cron_t *cron;            //  Parsed, or NULL
    int64_t every_ms;           //  Or 0 (cron)
    int64_t limit;              //  Runs allowed, 0 = no limit
    int64_t start_at, end_at;   //  Epoch ms, 0 = none
    int64_t priority;           //  Of its runs
    char *webhook_url;          //  Of its runs, or NULL
    int64_t created_at;         //  Epoch ms; every_ms counts from here or startAt
    int64_t runs;               //  Runs made
    int64_t next_at;            //  Next due time (epoch ms), -1 = no more
    size_t heap_index;          //  In broker->schedule_heap
    bm_series_t *m_runs;        //  schedule_runs_total{schedule}
};

static void
s_schedule_destroy (bm_schedule_t **self_p)
{
    if (*self_p) {
        bm_schedule_t *sc = *self_p;
        free (sc->payload);
        free (sc->cron_text);
        free (sc->tz);
        bm_cron_destroy (&sc->cron);
        free (sc->webhook_url);
        free (sc);
        *self_p = NULL;
    }
}

void
bm_schedule_free (void **item)
{
    s_schedule_destroy ((bm_schedule_t **) item);
}

bool
bm_schedule_less (const void *a, const void *b)
{
    return ((const bm_schedule_t *) a)->next_at < ((const bm_schedule_t *) b)->next_at;
}

void
bm_schedule_index (void *item, size_t index)
{
    ((bm_schedule_t *) item)->heap_index = index;
}

//  The first due time strictly after `after`, within startAt/endAt and the
//  limit; -1 when there is none.
static int64_t
s_next_after (const bm_schedule_t *sc, int64_t after)
{
    if (sc->limit > 0 && sc->runs >= sc->limit)
        return -1;
    if (sc->start_at > 0 && after < sc->start_at - 1)
        after = sc->start_at - 1;
    int64_t next;
    if (sc->cron)
        next = bm_cron_next (sc->cron, after);
    else {
        int64_t anchor = sc->start_at > 0 ? sc->start_at : sc->created_at;
        next = after < anchor ? anchor : anchor + ((after - anchor) / sc->every_ms + 1) * sc->every_ms;
    }
    if (next < 0 || (sc->end_at > 0 && next > sc->end_at))
        return -1;
    return next;
}

//  --------------------------------------------------------------------------
//  Redis: the set {bm}:schedules and a hash {bm}:schedule:<key> each.

static void
s_persist (bm_broker_t *self, const bm_schedule_t *sc, bool full)
{
    if (!self->store)
        return;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HSET", "schedule:", sc->key);
    bm_cmd_arg_str (&cmd, "runs");       bm_cmd_arg_int (&cmd, sc->runs);
    bm_cmd_arg_str (&cmd, "nextAt");     bm_cmd_arg_int (&cmd, sc->next_at);
    if (full) {
        bm_cmd_arg_str (&cmd, "key");        bm_cmd_arg_str (&cmd, sc->key);
        bm_cmd_arg_str (&cmd, "botType");    bm_cmd_arg_str (&cmd, sc->service->name);
        bm_cmd_arg_str (&cmd, "payload");
        cmd.argv [cmd.argc] = sc->payload;
        cmd.len [cmd.argc++] = sc->payload_size;
        if (sc->cron_text) {
            bm_cmd_arg_str (&cmd, "cron");   bm_cmd_arg_str (&cmd, sc->cron_text);
        }
        if (sc->tz) {
            bm_cmd_arg_str (&cmd, "tz");     bm_cmd_arg_str (&cmd, sc->tz);
        }
        bm_cmd_arg_str (&cmd, "everyMs");    bm_cmd_arg_int (&cmd, sc->every_ms);
        bm_cmd_arg_str (&cmd, "limit");      bm_cmd_arg_int (&cmd, sc->limit);
        bm_cmd_arg_str (&cmd, "startAt");    bm_cmd_arg_int (&cmd, sc->start_at);
        bm_cmd_arg_str (&cmd, "endAt");      bm_cmd_arg_int (&cmd, sc->end_at);
        bm_cmd_arg_str (&cmd, "priority");   bm_cmd_arg_int (&cmd, sc->priority);
        bm_cmd_arg_str (&cmd, "createdAt");  bm_cmd_arg_int (&cmd, sc->created_at);
        if (sc->webhook_url) {
            bm_cmd_arg_str (&cmd, "webhookUrl"); bm_cmd_arg_str (&cmd, sc->webhook_url);
        }
    }
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
    if (full) {
        bm_cmd_start (self, &cmd, "SADD", "schedules", NULL);
        bm_cmd_arg_str (&cmd, sc->key);
        bm_jobstore_issue (self, &cmd, true, NULL, NULL);
    }
}

//  --------------------------------------------------------------------------
//  Runs

typedef struct {
    bm_broker_t *broker;
    char id [BM_MAX_ID_LEN + 16];
    char key [BM_MAX_SCHEDULE_KEY_LEN + 1];
} s_run_t;

//  A run's SUBMIT-like write came back: the job is queued (or dropped).
static void
s_on_run_durable (redisReply *reply, void *arg)
{
    s_run_t *run = (s_run_t *) arg;
    bm_broker_t *self = run->broker;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, run->id);
    if (job && !job->durable) {
        job->service->confirming--;
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            bm_warn (job->id, "scheduled run not confirmed by redis: dropped");
            bm_job_delete (self, job);
        }
        else {
            job->durable = true;
            bm_job_enqueue (self, job);
            bm_dispatch (self, job->service);
        }
    }
    free (run);
}

//  Make the job of one run, unless a job of that id exists.
static void
s_make_run (bm_broker_t *self, bm_schedule_t *sc, const char *id)
{
    if (bm_jobtab_lookup (self->jobs, id))
        return;
    bm_job_t *job = bm_job_new ();
    snprintf (job->id, sizeof job->id, "%s", id);
    job->service = sc->service;
    job->state = JOB_QUEUED;
    job->priority = sc->priority;
    job->seq = ++self->seq;
    job->payload = bm_memdup (sc->payload, sc->payload_size);
    job->payload_size = sc->payload_size;
    job->max_attempts = self->config.job_max_attempts;
    job->timeout_ms = self->config.job_timeout_ms;
    job->created_at = bm_now_ms ();
    job->run_attempts = sc->service->retry_attempts;
    job->backoff = (bm_backoff_t) { BM_BACKOFF_EXPONENTIAL, sc->service->retry_backoff_ms, false };
    if (sc->webhook_url)
        job->webhook_url = strdup (sc->webhook_url);
    sc->service->submitted++;
    sc->service->confirming++;
    self->submitted++;
    bm_series_inc (sc->service->m_submitted);
    bm_series_inc (sc->m_runs);
    bm_job_insert (self, job);
    bm_info (job->id, "scheduled run of %s", sc->key);
    s_run_t *run = (s_run_t *) zmalloc (sizeof (s_run_t));
    run->broker = self;
    snprintf (run->id, sizeof run->id, "%s", id);
    bm_jobstore_persist_full (self, job, true, s_on_run_durable, run);
}

//  EXISTS job:<id> answered: 0 means the run is not made yet.
static void
s_on_run_checked (redisReply *reply, void *arg)
{
    s_run_t *run = (s_run_t *) arg;
    bm_broker_t *self = run->broker;
    bm_schedule_t *sc = (bm_schedule_t *) zhashx_lookup (self->schedules, run->key);
    if (sc && reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        s_make_run (self, sc, run->id);
    else
    if (sc && reply && reply->type == REDIS_REPLY_INTEGER)
        bm_info (run->id, "scheduled run exists already: not made again");
    else
    if (sc)
        bm_warn (run->id, "scheduled run not made: redis did not answer");
    free (run);
}

//  One run of the schedule, due at `due`.
static void
s_run (bm_broker_t *self, bm_schedule_t *sc, int64_t due)
{
    s_run_t *run = (s_run_t *) zmalloc (sizeof (s_run_t));
    run->broker = self;
    snprintf (run->id, sizeof run->id, "%s@%" PRId64, sc->key, due);
    snprintf (run->key, sizeof run->key, "%s", sc->key);
    sc->runs++;
    if (!self->store || bm_jobtab_lookup (self->jobs, run->id)) {
        s_make_run (self, sc, run->id);
        free (run);
        return;
    }
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "EXISTS", "job:", run->id);
    bm_jobstore_query (self, &cmd, s_on_run_checked, run);
}

//  --------------------------------------------------------------------------
//  The timer

static int
s_on_due (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    self->schedule_timer = -1;
    int64_t now = bm_now_ms ();
    bm_schedule_t *sc;
    while ((sc = (bm_schedule_t *) bm_heap_peek (self->schedule_heap)) && sc->next_at <= now) {
        bm_heap_pop (self->schedule_heap);
        int64_t due = sc->next_at;
        s_run (self, sc, due);
        //  Late by more than a period (the loop was held up): the runs in
        //  between are missed, as after downtime.
        sc->next_at = s_next_after (sc, due);
        if (sc->next_at >= 0 && sc->next_at <= now)
            sc->next_at = s_next_after (sc, now);
        s_persist (self, sc, false);
        if (sc->next_at >= 0)
            bm_heap_push (self->schedule_heap, sc);
    }
    bm_schedule_arm (self);
    return 0;
}

static int64_t
s_next_at (const void *sc)
{
    return ((const bm_schedule_t *) sc)->next_at;
}

void
bm_schedule_arm (bm_broker_t *self)
{
    bm_due_timer_arm (self, self->schedule_heap, s_next_at, &self->schedule_timer,
                      &self->schedule_timer_at, s_on_due);
}

//  Put a schedule in the table and the heap (replacing one of its key).
static void
s_insert (bm_broker_t *self, bm_schedule_t *sc)
{
    bm_schedule_t *old = (bm_schedule_t *) zhashx_lookup (self->schedules, sc->key);
    if (old) {
        if (old->heap_index != SIZE_MAX)
            bm_heap_remove (self->schedule_heap, old->heap_index);
        zhashx_delete (self->schedules, sc->key);
    }
    sc->heap_index = SIZE_MAX;
    sc->m_runs = bm_metric_series (self->mf_schedule_runs, sc->key);
    zhashx_insert (self->schedules, sc->key, sc);
    if (sc->next_at >= 0)
        bm_heap_push (self->schedule_heap, sc);
    bm_schedule_arm (self);
}

//  --------------------------------------------------------------------------
//  SCHEDULE

static void
s_pack (msgpack_packer *pk, const bm_schedule_t *sc)
{
    msgpack_pack_map (pk, 9 + (sc->cron_text ? 1 + (sc->tz != NULL) : 1) + (sc->limit > 0)
                          + (sc->start_at > 0) + (sc->end_at > 0) + (sc->webhook_url != NULL));
    bm_pack_kv_str (pk, "key", sc->key);
    bm_pack_kv_str (pk, "botType", sc->service->name);
    bm_pack_str (pk, "payload");
    msgpack_sbuffer_write (pk->data, sc->payload, sc->payload_size);
    if (sc->cron_text) {
        bm_pack_kv_str (pk, "cron", sc->cron_text);
        if (sc->tz)
            bm_pack_kv_str (pk, "tz", sc->tz);
    }
    else
        bm_pack_kv_int (pk, "everyMs", sc->every_ms);
    if (sc->limit > 0)
        bm_pack_kv_int (pk, "limit", sc->limit);
    if (sc->start_at > 0)
        bm_pack_kv_int (pk, "startAt", sc->start_at);
    if (sc->end_at > 0)
        bm_pack_kv_int (pk, "endAt", sc->end_at);
    if (sc->webhook_url)
        bm_pack_kv_str (pk, "webhookUrl", sc->webhook_url);
    bm_pack_kv_int (pk, "priority", sc->priority);
    bm_pack_kv_int (pk, "createdAt", sc->created_at);
    bm_pack_kv_int (pk, "runs", sc->runs);
    bm_pack_str (pk, "nextAt");
    if (sc->next_at >= 0)
        msgpack_pack_int64 (pk, sc->next_at);
    else
        msgpack_pack_nil (pk);
    bm_pack_kv_bool (pk, "ended", sc->next_at < 0);
    //  Its runs' job ids: "<key>@<due ms>".
    bm_pack_kv_str (pk, "runIdPrefix", sc->key);
}

void
bm_schedule_command (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    bm_codec_schedule_t in;
    bm_codec_error_t error;
    if (bm_codec_schedule_decode (msg, &in, &error)) {
        bm_broker_reject (self, identity, body, error.code, error.message);
        return;
    }
    bm_body_t reply;
    bm_body_init (self, &reply);
    msgpack_pack_map (&reply.pk, bm_req_count (body) + (streq (in.action, "remove") ? 2 : 1));
    bm_pack_req (&reply.pk, body);
    if (streq (in.action, "list")) {
        bm_pack_str (&reply.pk, "schedules");
        msgpack_pack_array (&reply.pk, (uint32_t) zhashx_size (self->schedules));
        bm_schedule_t *sc = (bm_schedule_t *) zhashx_first (self->schedules);
        while (sc) {
            s_pack (&reply.pk, sc);
            sc = (bm_schedule_t *) zhashx_next (self->schedules);
        }
    }
    else
    if (streq (in.action, "remove")) {
        bm_schedule_t *sc = (bm_schedule_t *) zhashx_lookup (self->schedules, in.key);
        if (!sc) {
            bm_body_free (&reply);
            bm_broker_reject (self, identity, body, "not_found", "no schedule with that key");
            return;
        }
        if (sc->heap_index != SIZE_MAX)
            bm_heap_remove (self->schedule_heap, sc->heap_index);
        if (self->store) {
            bm_cmd_t cmd;
            bm_cmd_start (self, &cmd, "DEL", "schedule:", in.key);
            bm_jobstore_issue (self, &cmd, true, NULL, NULL);
            bm_cmd_start (self, &cmd, "SREM", "schedules", NULL);
            bm_cmd_arg_str (&cmd, in.key);
            bm_jobstore_issue (self, &cmd, true, NULL, NULL);
        }
        zhashx_delete (self->schedules, in.key);
        bm_schedule_arm (self);
        bm_info (NULL, "schedule %s removed", in.key);
        bm_pack_kv_str (&reply.pk, "key", in.key);
        bm_pack_kv_bool (&reply.pk, "removed", true);
    }
    else {
        bool replaces = zhashx_lookup (self->schedules, in.key) != NULL;
        if (!replaces && (int64_t) zhashx_size (self->schedules) >= self->config.max_schedules) {
            bm_body_free (&reply);
            bm_broker_reject (self, identity, body, "queue_full",
                              "MAX_SCHEDULES schedules exist already; remove one first");
            return;
        }
        if (self->store && (!bm_store_up (self->store) || !self->recovered)) {
            bm_body_free (&reply);
            bm_broker_reject (self, identity, body, "store_unavailable",
                              bm_stats_store_refusal (self));
            return;
        }
        if (!bm_service_type_known (self, in.bot_type)) {
            bm_body_free (&reply);
            if (bm_types_waiting (self))
                bm_broker_reject (self, identity, body, "store_unavailable", BM_TEXT_TYPES_WAIT);
            else
                bm_broker_reject (self, identity, body, "unknown_bot_type",
                                  "botType is not a known bot type");
            return;
        }
        char message [160];
        bm_schedule_t *sc = (bm_schedule_t *) zmalloc (sizeof (bm_schedule_t));
        snprintf (sc->key, sizeof sc->key, "%s", in.key);
        sc->service = bm_service_require (self, in.bot_type);
        sc->payload_size = in.payload.data ? in.payload.size : 1;
        sc->payload = bm_memdup (in.payload.data ? in.payload.data : "\xc0", sc->payload_size);
        if (in.cron [0]) {
            sc->cron_text = strdup (in.cron);
            sc->tz = in.tz [0] ? strdup (in.tz) : NULL;
            sc->cron = bm_cron_new (in.cron, in.tz, message, sizeof message);
        }
        sc->every_ms = in.every_ms;
        sc->limit = in.limit;
        sc->start_at = in.start_at;
        sc->end_at = in.end_at;
        sc->priority = in.has_priority ? in.priority : BM_DEFAULT_PRIORITY;
        if (in.webhook_url.ptr)
            sc->webhook_url = strndup (in.webhook_url.ptr, in.webhook_url.len);
        sc->created_at = bm_now_ms ();
        sc->next_at = s_next_after (sc, sc->created_at);
        s_insert (self, sc);
        s_persist (self, sc, true);
        bm_info (NULL, "schedule %s %s: %s %s", sc->key, replaces ? "replaced" : "added",
                 sc->service->name, sc->cron_text ? sc->cron_text : "every");
        bm_pack_str (&reply.pk, "schedule");
        s_pack (&reply.pk, sc);
    }
    bm_broker_send_client (self, identity, BM_REPLY, &reply);
    bm_body_free (&reply);
}

//  --------------------------------------------------------------------------
//  Recovery: the schedules back from Redis when the store connects.

static void
s_on_loaded (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    bm_schedule_t *sc = (bm_schedule_t *) zmalloc (sizeof (bm_schedule_t));
    char type [BM_MAX_BOT_TYPE_LEN + 1] = "";
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *f = reply->element [i], *v = reply->element [i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        int64_t n = 0;
        bool numeric = bm_parse_int (v->str, INT64_MIN, INT64_MAX, &n) == 0;
        if (streq (f->str, "key") && v->len <= BM_MAX_SCHEDULE_KEY_LEN)
            snprintf (sc->key, sizeof sc->key, "%s", v->str);
        else if (streq (f->str, "botType") && v->len < (int) sizeof type)
            snprintf (type, sizeof type, "%s", v->str);
        else if (streq (f->str, "payload")) {
            free (sc->payload);
            sc->payload = bm_memdup (v->str, v->len);
            sc->payload_size = v->len;
        }
        else if (streq (f->str, "cron")) bm_set_str (&sc->cron_text, v->str);
        else if (streq (f->str, "tz")) bm_set_str (&sc->tz, v->str);
        else if (streq (f->str, "webhookUrl")) bm_set_str (&sc->webhook_url, v->str);
        else if (!numeric) continue;
        else if (streq (f->str, "everyMs")) sc->every_ms = n;
        else if (streq (f->str, "limit")) sc->limit = n;
        else if (streq (f->str, "startAt")) sc->start_at = n;
        else if (streq (f->str, "endAt")) sc->end_at = n;
        else if (streq (f->str, "priority")) sc->priority = n;
        else if (streq (f->str, "createdAt")) sc->created_at = n;
        else if (streq (f->str, "runs")) sc->runs = n;
        else if (streq (f->str, "nextAt")) sc->next_at = n;
    }
    char message [160] = "";
    if (sc->cron_text)
        sc->cron = bm_cron_new (sc->cron_text, sc->tz, message, sizeof message);
    if (!sc->key [0] || !bm_valid_bot_type (type, strlen (type)) || !sc->payload
    ||  bm_msgpack_check (sc->payload, sc->payload_size)
    ||  (sc->cron_text ? !sc->cron : sc->every_ms < BM_MIN_EVERY_MS)) {
        bm_error (NULL, "schedule record %s is damaged: skipped %s", sc->key, message);
        s_schedule_destroy (&sc);
        return;
    }
    sc->service = bm_service_require (self, type);
    int64_t now = bm_now_ms ();
    if (sc->next_at >= 0 && sc->next_at <= now) {
        //  Due while the broker was down: one catch-up run, for the earliest
        //  missed due time, then on from now.
        bm_info (NULL, "schedule %s: missed its run at %" PRId64 ": one catch-up run",
                 sc->key, sc->next_at);
        sc->heap_index = SIZE_MAX;
        sc->m_runs = bm_metric_series (self->mf_schedule_runs, sc->key);
        zhashx_insert (self->schedules, sc->key, sc);
        s_run (self, sc, sc->next_at);
        sc->next_at = s_next_after (sc, now);
        s_persist (self, sc, false);
        if (sc->next_at >= 0)
            bm_heap_push (self->schedule_heap, sc);
        bm_schedule_arm (self);
        return;
    }
    s_insert (self, sc);
}

static void
s_on_keys (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *key = reply->element [i];
        if (key->type != REDIS_REPLY_STRING || zhashx_lookup (self->schedules, key->str))
            continue;
        bm_cmd_t cmd;
        bm_cmd_start (self, &cmd, "HGETALL", "schedule:", key->str);
        bm_jobstore_query (self, &cmd, s_on_loaded, self);
    }
}

//  Read the schedules (after the live set: their runs' EXISTS checks then
//  see the recovered jobs).
void
bm_schedule_recover (bm_broker_t *self)
{
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "SMEMBERS", "schedules", NULL);
    bm_jobstore_query (self, &cmd, s_on_keys, self);
}

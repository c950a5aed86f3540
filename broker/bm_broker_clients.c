/*  bm_broker_clients.c - the client commands (BMC01).

    SUBMIT, STATUS, CANCEL, RETRY, REDELIVER, LIST, STATS, PING, METRICS
    (protocol.md section 4).  A SUBMIT is answered once its Redis write
    is confirmed (bm_pending_t carries the answer until then).  */
#include "bm_broker_internal.h"

static void
s_client_act (bm_broker_t *self, zframe_t *identity, bm_pending_t *pending,
              const msgpack_object *request, int command, bm_job_t *job);

static void
s_pack_pending_req (msgpack_packer *pk, bm_pending_t *pending)
{
    if (pending->has_req) {
        bm_pack_str (pk, "req");
        msgpack_pack_object (pk, pending->req);
    }
}

//  A pending answer filled in: the request's req, the job id, identity as
//  given (the caller decides whether it is a copy).
static void
s_pending_fill (bm_pending_t *pending, bm_broker_t *self, zframe_t *identity,
                const msgpack_object *request, const char *id)
{
    memset (pending, 0, sizeof *pending);
    pending->broker = self;
    pending->identity = identity;
    bm_id_copy (pending->id, sizeof pending->id, id);
    const msgpack_object *req = bm_obj_get (request, "req");
    //  Only scalars are kept (they hold no pointers into the message).
    if (req && req->type != MSGPACK_OBJECT_STR && req->type != MSGPACK_OBJECT_BIN
    &&  req->type != MSGPACK_OBJECT_ARRAY && req->type != MSGPACK_OBJECT_MAP
    &&  req->type != MSGPACK_OBJECT_EXT) {
        pending->req = *req;
        pending->has_req = true;
    }
}

//  A pending answer that waits for Redis: it holds a copy of the routing id.
//  An answer to send later, into kept: a copy of pending (a request read
//  from Redis first), else made from the request; identity is copied.
static void
s_pending_keep (bm_pending_t *kept, bm_broker_t *self, zframe_t *identity,
                const bm_pending_t *pending, const msgpack_object *request, const char *id)
{
    if (pending) {
        *kept = *pending;
        kept->identity = zframe_dup (identity);
    }
    else
        s_pending_fill (kept, self, zframe_dup (identity), request, id);
}

static bm_pending_t *
s_pending_new (bm_broker_t *self, zframe_t *identity, const msgpack_object *request, const char *id)
{
    bm_pending_t *pending = (bm_pending_t *) zmalloc (sizeof (bm_pending_t));
    s_pending_fill (pending, self, zframe_dup (identity), request, id);
    return pending;
}

static void
s_pending_destroy (bm_pending_t **pending_p)
{
    if (*pending_p) {
        zframe_destroy (&(*pending_p)->identity);
        free (*pending_p);
        *pending_p = NULL;
    }
}

static void
s_pending_reject (bm_pending_t *pending, const char *code, const char *message)
{
    bm_body_t body;
    bm_body_init (pending->broker, &body);
    msgpack_pack_map (&body.pk, 2 + pending->has_req);
    s_pack_pending_req (&body.pk, pending);
    bm_pack_kv_str (&body.pk, "code", code);
    bm_pack_kv_str (&body.pk, "message", message);
    bm_broker_send_client (pending->broker, pending->identity, BM_REJECTED, &body);
    bm_body_free (&body);
}

//  Frame 2: {req?, jobId, duplicate, position?, delayed?, state?,
//  priority?, unserved?}; position is left out when 0 (duplicates,
//  REDELIVER, delayed jobs), delayed unless true, state and priority unless
//  given (a duplicate's state now, and its job's priority: priority < 0,
//  none), unserved unless true (a new job whose type no connected worker
//  serves: it waits until one connects).
static void
s_send_accepted (bm_broker_t *self, zframe_t *identity, bm_pending_t *pending,
                 const msgpack_object *request, const char *id, bool duplicate,
                 int64_t position, bool delayed, const char *state, int64_t priority,
                 bool unserved)
{
    bm_body_t body;
    bm_body_init (self, &body);
    int keys = 2 + (position > 0) + delayed + (state != NULL) + (priority >= 0) + unserved;
    if (pending) {
        msgpack_pack_map (&body.pk, keys + pending->has_req);
        s_pack_pending_req (&body.pk, pending);
    }
    else {
        msgpack_pack_map (&body.pk, keys + bm_req_count (request));
        bm_pack_req (&body.pk, request);
    }
    bm_pack_kv_str (&body.pk, "jobId", id);
    bm_pack_kv_bool (&body.pk, "duplicate", duplicate);
    if (position > 0)
        bm_pack_kv_int (&body.pk, "position", position);
    if (delayed)
        bm_pack_kv_bool (&body.pk, "delayed", true);
    if (state)
        bm_pack_kv_str (&body.pk, "state", state);
    if (priority >= 0)
        bm_pack_kv_int (&body.pk, "priority", priority);
    if (unserved)
        bm_pack_kv_bool (&body.pk, "unserved", true);
    bm_broker_send_client (self, identity, BM_ACCEPTED, &body);
    bm_body_free (&body);
}

//  A job's SUBMIT write came back: the job is durable and queued (0,
//  *position its place) or, not confirmed, taken back and deleted (-1).
int
bm_submit_confirmed (bm_broker_t *self, bm_job_t *job, redisReply *reply, int64_t *position)
{
    job->service->confirming--;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        bm_warn (job->id, "submit not confirmed by redis: rejected");
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        //  The write may have reached Redis: undo it (best effort).
        bm_jobstore_forget (self, job->id);
        if (job->idem_key) {
            bm_idem_forget (self->idem, job->idem_key, NULL, 0);
            bm_jobstore_forget_idem (self, job->idem_key);
        }
        job->service->submitted--;
        bm_job_delete (self, job);
        return -1;
    }
    job->durable = true;
    *position = 0;
    if (job->state == JOB_WAITING_CHILDREN) {
        BM_JOB_EVENT (self, job, BM_EV_WAITING_CHILDREN, NULL, false);
        //  Settled first (failed at once by a dependency failed already,
        //  or released), so that same-key SUBMITs learn the state it has;
        //  one the settling pushed out of memory woke them as it went.
        char id [BM_ID_SLOT];
        bm_id_copy (id, sizeof id, job->id);
        bm_deps_confirmed (self, job);
        job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
        if (job && job->idem_waiters)
            bm_idem_wake (self, job, NULL, NULL);
        return 0;
    }
    if ((job->state != JOB_QUEUED && job->state != JOB_DELAYED)
    ||  job->queue_index != SIZE_MAX || job->due_index != SIZE_MAX) {
        //  No job action is taken before this: a job that left its
        //  admitted state is left as it is, never queued a second time.
        bm_warn (job->id, "submit confirmed for a job now %s: not queued again",
                 bm_job_state_names [job->state]);
        return 0;
    }
    if (job->run_at > bm_now_ms ())
        bm_delayed_add (self, job);
    else {
        job->run_at = 0;
        bm_job_enqueue (self, job);
        //  The newest of its priority: every queued job at or before it is ahead.
        *position = bm_rank_upto (job->service->rank, job->priority);
    }
    bm_dispatch (self, job->service);
    if (job->idem_waiters)
        bm_idem_wake (self, job, NULL, NULL);
    return 0;
}

//  --------------------------------------------------------------------------
//  SUBMITs waiting for the job their idempotencyKey names to be confirmed

struct _bm_idem_waiter_t {
    bm_idem_waiter_t *next;
    bm_idem_wait_fn *fn;
    void *arg;
    bool reused;                //  Asks for another job than the first
};

void
bm_idem_wait (bm_broker_t *self, bm_job_t *first, bool reused, bm_idem_wait_fn *fn, void *arg)
{
    (void) self;
    bm_idem_waiter_t *waiter = (bm_idem_waiter_t *) zmalloc (sizeof (bm_idem_waiter_t));
    waiter->fn = fn;
    waiter->arg = arg;
    waiter->reused = reused;
    //  Answered in arrival order
    bm_idem_waiter_t **tail = &first->idem_waiters;
    while (*tail)
        tail = &(*tail)->next;
    *tail = waiter;
}

void
bm_idem_wake (bm_broker_t *self, bm_job_t *job, const char *code, const char *message)
{
    bm_idem_waiter_t *waiter = job->idem_waiters;
    job->idem_waiters = NULL;
    while (waiter) {
        bm_idem_waiter_t *next = waiter->next;
        if (code) {
            self->rejected++;
            bm_series_inc (bm_metric_series (self->mf_rejected, code));
            waiter->fn (self, code, message, NULL, waiter->arg);
        }
        else
        if (waiter->reused) {
            char reused [256];
            snprintf (reused, sizeof reused, BM_IDEM_REUSED_FMT, job->id);
            self->rejected++;
            bm_series_inc (bm_metric_series (self->mf_rejected, "idempotency_key_reused"));
            waiter->fn (self, "idempotency_key_reused", reused, NULL, waiter->arg);
        }
        else
            waiter->fn (self, NULL, NULL, bm_job_state_names [job->state], waiter->arg);
        free (waiter);
        waiter = next;
    }
}

//  --------------------------------------------------------------------------
//  CANCELs waiting for the cancelled record to be confirmed

struct _bm_cancel_answer_t {
    bm_cancel_answer_t *next;
    bm_pending_t pending;
    uint32_t outcome_gen;
};

static void s_reply_record (bm_broker_t *self, zframe_t *identity, bm_pending_t *pending,
                            const msgpack_object *request, bm_job_t *job);

static void
s_cancel_answer_add (bm_broker_t *self, zframe_t *identity, bm_pending_t *pending,
                     const msgpack_object *request, bm_job_t *job)
{
    bm_cancel_answer_t *answer = (bm_cancel_answer_t *) zmalloc (sizeof (bm_cancel_answer_t));
    s_pending_keep (&answer->pending, self, identity, pending, request, job->id);
    answer->outcome_gen = job->outcome_gen;
    answer->next = job->cancel_answers;
    job->cancel_answers = answer;
}

void
bm_cancel_answers_wake (bm_broker_t *self, bm_job_t *job, uint32_t outcome_gen, bool ok)
{
    bm_cancel_answer_t **link = &job->cancel_answers;
    while (*link) {
        bm_cancel_answer_t *answer = *link;
        if (answer->outcome_gen != outcome_gen) {
            link = &answer->next;
            continue;
        }
        *link = answer->next;
        if (ok)
            s_reply_record (self, answer->pending.identity, &answer->pending, NULL, job);
        else
            s_pending_reject (&answer->pending, "store_unavailable",
                              "the job store (Redis) did not confirm the cancel; STATUS tells "
                              "whether it holds");
        zframe_destroy (&answer->pending.identity);
        free (answer);
    }
}

void
bm_cancel_answers_discard (bm_job_t *job)
{
    while (job->cancel_answers) {
        bm_cancel_answer_t *answer = job->cancel_answers;
        job->cancel_answers = answer->next;
        zframe_destroy (&answer->pending.identity);
        free (answer);
    }
}

void
bm_idem_waiters_discard (bm_job_t *job)
{
    bm_idem_waiter_t *waiter = job->idem_waiters;
    job->idem_waiters = NULL;
    while (waiter) {
        bm_idem_waiter_t *next = waiter->next;
        waiter->fn (NULL, NULL, NULL, NULL, waiter->arg);
        free (waiter);
        waiter = next;
    }
}

//  A SUBMIT's wait ended.
static void
s_on_idem_woken (bm_broker_t *self, const char *code, const char *message, const char *state,
                 void *arg)
{
    bm_pending_t *pending = (bm_pending_t *) arg;
    if (!self)
        ;
    else
    if (code)
        s_pending_reject (pending, code, message);
    else
        s_send_accepted (self, pending->identity, pending, NULL, pending->id, true, 0, false,
                         state, pending->has_priority ? pending->priority : -1, false);
    s_pending_destroy (&pending);
}

//  The SUBMIT write came back (without Redis: at once): ACCEPTED, or
//  REJECTED store_unavailable.
static void
s_on_submit_answer (redisReply *reply, void *arg)
{
    bm_pending_t *pending = (bm_pending_t *) arg;
    bm_broker_t *self = pending->broker;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, pending->id);
    int64_t position;
    if (!job)
        ;
    else
    if (bm_submit_confirmed (self, job, reply, &position))
        s_pending_reject (pending, "store_unavailable", bm_stats_store_refusal (self));
    else
        s_send_accepted (self, pending->identity, pending, NULL, pending->id, false, position,
                         job->state == JOB_DELAYED,
                         job->deps && (job->state == JOB_WAITING_CHILDREN || bm_job_terminal (job))
                         ? bm_job_state_names [job->state] : NULL, -1,
                         !bm_job_terminal (job) && bm_service_unserved (job->service));
}

//  The same for a pending answer that waited for Redis: it goes after.
static void
s_on_submit_durable (redisReply *reply, void *arg)
{
    bm_pending_t *pending = (bm_pending_t *) arg;
    s_on_submit_answer (reply, pending);
    s_pending_destroy (&pending);
}

//  A job read for bm_job_read: from memory, else from its Redis record.
typedef struct {
    bm_broker_t *broker;
    char id [BM_ID_SLOT];
    bm_job_read_fn *done;
    void *arg;
} s_job_read_t;

static void
s_on_job_read (redisReply *reply, void *arg)
{
    s_job_read_t *read = (s_job_read_t *) arg;
    bm_broker_t *self = read->broker;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, read->id);
    if (job)            //  Arrived meanwhile (a RETRY or REDELIVER restored it)
        read->done (self, job, true, read->arg);
    else {
        //  An error (BUSY, LOADING, NOPERM, ...) says nothing of the
        //  record: Redis could not say, as when it did not answer.
        bool answered = reply && reply->type != REDIS_REPLY_ERROR;
        if (reply && !answered)
            bm_warn (read->id, "reading its record from redis failed: %s", reply->str);
        job = answered ? bm_jobstore_job_from_hash (self, read->id, reply, NULL) : NULL;
        //  Past its retention: gone, whether or not the sweep got to it
        if (job && bm_finished_expired (self, job, bm_now_ms ()))
            bm_job_destroy (&job);
        read->done (self, job, answered, read->arg);
        bm_job_destroy (&job);
    }
    free (read);
}

void
bm_job_read (bm_broker_t *self, const char *id, bm_job_read_fn *done, void *arg)
{
    s_job_read_t *read = (s_job_read_t *) zmalloc (sizeof (s_job_read_t));
    read->broker = self;
    bm_id_copy (read->id, sizeof read->id, id);
    read->done = done;
    read->arg = arg;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HGETALL", "job:", id);
    bm_jobstore_query (self, &cmd, s_on_job_read, read);
}

//  The state of a job that only Redis holds, for a duplicate SUBMIT.
typedef struct {
    bm_duplicate_state_fn *done;
    void *arg;
} s_state_load_t;

static void
s_on_state_load (bm_broker_t *self, const bm_job_t *job, bool answered, void *arg)
{
    (void) self;
    (void) answered;
    s_state_load_t *load = (s_state_load_t *) arg;
    load->done (job ? bm_job_state_names [job->state] : NULL, job ? job->priority : -1, load->arg);
    free (load);
}

void
bm_submit_duplicate_state (bm_broker_t *self, const char *id, bm_duplicate_state_fn *done,
                           void *arg)
{
    s_state_load_t *load = (s_state_load_t *) zmalloc (sizeof (s_state_load_t));
    load->done = done;
    load->arg = arg;
    bm_job_read (self, id, s_on_state_load, load);
}

//  A duplicate's check: the key and the job it names.
typedef struct {
    bm_duplicate_check_fn *done;
    void *arg;
    char key [BM_MAX_ID_LEN + 1];
    char id [BM_ID_SLOT];
} s_check_t;

static void
s_on_check_read (bm_broker_t *self, const bm_job_t *job, bool answered, void *arg)
{
    s_check_t *check = (s_check_t *) arg;
    bool gone = !job && answered;
    if (gone) {
        bm_info (check->id, "idempotencyKey %s named this job, which is gone (removed or past "
                 "its retention): the SUBMIT makes a new job", check->key);
        bm_idem_store_drop (self, check->key, check->id);
    }
    check->done (self, job ? bm_job_state_names [job->state] : NULL, job ? job->priority : -1,
                 gone, check->arg);
    free (check);
}

void
bm_submit_duplicate_check (bm_broker_t *self, const char *id, const char *key,
                           bm_duplicate_check_fn *done, void *arg)
{
    s_check_t *check = (s_check_t *) zmalloc (sizeof (s_check_t));
    check->done = done;
    check->arg = arg;
    snprintf (check->key, sizeof check->key, "%s", key);
    bm_id_copy (check->id, sizeof check->id, id);
    bm_job_read (self, id, s_on_check_read, check);
}

//  Refuse an admission: counted by its code.
static void
s_refuse (bm_broker_t *self, bm_admit_t *admit, const char *code, const char *message)
{
    self->rejected++;
    bm_series_inc (bm_metric_series (self->mf_rejected, code));
    admit->code = code;
    snprintf (admit->message, sizeof admit->message, "%s", message);
}

//  The bot types a SUBMIT may name, for its refusal: the default bots'
//  types first, then the others by name, whole names only, and "... and N
//  more" for those past the room.  The message travels in buffers of 160
//  bytes (a SUBMIT_MANY item's refusal), so the list keeps within them.
static const char s_known_prefix [] = "botType must be one of: ";
#define BM_KNOWN_TYPES_LEN  (160 - sizeof s_known_prefix)

static int
s_known_rank (const char *name)
{
    const char *builtin [] = { "java", "node", "python" };
    for (int i = 0; i < 3; i++)
        if (streq (name, builtin [i]))
            return i;
    return 3;
}

static int
s_known_compare (const void *a, const void *b)
{
    const char *x = *(const char *const *) a, *y = *(const char *const *) b;
    int rank = s_known_rank (x) - s_known_rank (y);
    return rank ? rank : strcmp (x, y);
}

static void
s_known_types (bm_broker_t *self, char *buf, size_t size)
{
    buf [0] = 0;
    size_t count = 0;
    const char **names = (const char **) malloc ((zhashx_size (self->services) + 1) * sizeof *names);
    if (!names)
        return;
    for (bm_service_t *service = (bm_service_t *) zhashx_first (self->services); service;
         service = (bm_service_t *) zhashx_next (self->services))
        if (!streq (service->name, BM_WEBHOOK_TYPE) && bm_service_known (service))
            names [count++] = service->name;
    qsort (names, count, sizeof *names, s_known_compare);
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        char more [40] = "";
        if (i + 1 < count)              //  Room kept to say what is left out
            snprintf (more, sizeof more, ", ... and %zu more", count - i - 1);
        if (used + (i ? 2 : 0) + strlen (names [i]) + strlen (more) + 1 > size) {
            snprintf (buf + used, size - used, "%s... and %zu more", i ? ", " : "", count - i);
            break;
        }
        used += (size_t) snprintf (buf + used, size - used, "%s%s", i ? ", " : "", names [i]);
    }
    free (names);
}

void
bm_submit_admit (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg, bm_admit_t *admit)
{
    memset (admit, 0, sizeof *admit);
    //  Every field checked against its limit by the codec; the message
    //  names the field at fault.
    bm_codec_submit_t submit;
    bm_codec_error_t error;
    if (bm_codec_submit_decode (msg, &submit, &error)) {
        s_refuse (self, admit, "bad_request", error.message);
        return;
    }
    //  Due times are the broker's clock: a runAt behind it by more than
    //  the tolerance is a mistake, not a wish to run at once.
    int64_t now = bm_now_ms ();
    if (submit.has_run_at && (submit.run_at < now - BM_RUN_AT_TOLERANCE_MS
                              || submit.run_at > now + BM_MAX_DELAY_MS)) {
        char message [160];
        snprintf (message, sizeof message, "runAt must be from %lld ms before the broker's "
                  "clock (%" PRId64 ") to a year after it", (long long) BM_RUN_AT_TOLERANCE_MS, now);
        s_refuse (self, admit, "bad_request", message);
        return;
    }
    const char *bot_type = submit.bot_type;
    int64_t priority = submit.has_priority ? submit.priority : BM_DEFAULT_PRIORITY;
    int64_t timeout_ms = submit.has_timeout_ms ? submit.timeout_ms : self->config.job_timeout_ms;
    int64_t max_attempts = submit.has_max_attempts ? submit.max_attempts
                                                   : self->config.job_max_attempts;
    const char *url = submit.webhook_url.ptr;
    size_t url_len = submit.webhook_url.len;
    const char *idem = submit.idempotency_key [0] ? submit.idempotency_key : NULL;
    bool notify = submit.notify;
    if (self->stopping) {
        s_refuse (self, admit, "shutting_down", "the broker is shutting down");
        return;
    }
    //  Until the queues are read back, the types known are not all known
    //  yet either: any type waits for the recovery.
    if (self->store && !self->recovered) {
        s_refuse (self, admit, "store_unavailable", bm_stats_store_refusal (self));
        return;
    }
    if (!bm_service_type_known (self, bot_type) && bm_types_waiting (self)) {
        s_refuse (self, admit, "store_unavailable", BM_TEXT_TYPES_WAIT);
        return;
    }
    if (!bm_service_type_known (self, bot_type)) {
        char message [sizeof s_known_prefix + BM_KNOWN_TYPES_LEN];
        memcpy (message, s_known_prefix, sizeof s_known_prefix);
        s_known_types (self, message + strlen (s_known_prefix), BM_KNOWN_TYPES_LEN);
        s_refuse (self, admit, "unknown_bot_type", message);
        return;
    }
    //  Idempotency: the first job with this key, while the key lives, if
    //  this SUBMIT asks for the same job (bot type, payload, dependsOn).
    uint64_t fingerprint = 0;
    if (idem) {
        fingerprint = bm_idem_fingerprint_submit (bot_type, bm_msg_body (msg));
        uint64_t first_fingerprint = 0;
        const char *first_id = bm_idem_lookup (self->idem, idem, bm_now_ms (), &first_fingerprint);
        if (first_id && !self->store && !bm_jobtab_lookup (self->jobs, first_id)) {
            //  Without Redis, a job the broker does not hold is gone
            //  (removed, or past KEEP_FINISHED_JOBS): the key is free.
            bm_idem_drop (self->idem, idem, first_id);
            first_id = NULL;
        }
        if (first_id) {
            bm_job_t *first = (bm_job_t *) bm_jobtab_lookup (self->jobs, first_id);
            if (first && !first->durable) {
                //  Its write is in flight: its outcome answers this one too.
                admit->wait = first;
                admit->reused = !bm_idem_same_job (first_fingerprint, fingerprint, bot_type,
                                                   submit.payload.obj);
                admit->has_priority = true;
                admit->priority = first->priority;
                snprintf (admit->id, sizeof admit->id, "%s", first_id);
                return;
            }
            bool reused = !bm_idem_same_job (first_fingerprint, fingerprint, bot_type,
                                             submit.payload.obj);
            if (!first && self->store) {
                //  Only Redis may hold it: the caller reads its record
                //  (bm_submit_duplicate_check), then answers it, or refuses
                //  a reuse, or admits this SUBMIT again if the job is gone.
                admit->duplicate = true;
                admit->reused = reused;
                snprintf (admit->id, sizeof admit->id, "%s", first_id);
                return;
            }
            if (reused) {
                char message [256];
                snprintf (message, sizeof message, BM_IDEM_REUSED_FMT, first_id);
                s_refuse (self, admit, "idempotency_key_reused", message);
                return;
            }
            admit->duplicate = true;
            admit->state = bm_job_state_names [first->state];
            admit->has_priority = true;
            admit->priority = first->priority;
            snprintf (admit->id, sizeof admit->id, "%s", first_id);
            return;
        }
    }
    bm_service_t *service = bm_service_require (self, bot_type);
    if ((int64_t) bm_heap_size (service->queue) + service->confirming >= service->max_queue) {
        //  Named with its bound (MAX_QUEUE_<TYPE>, else MAX_QUEUE).
        char message [256];
        snprintf (message, sizeof message, "the queue of bot type '%.64s' is full (%" PRId64
                  " jobs, its limit); retry later", bot_type, service->max_queue);
        s_refuse (self, admit, "queue_full", message);
        return;
    }
    //  Not writable: Redis is away, or a group was refused or lost (a
    //  Sentinel switch) and none has gone through since.  Refused now
    //  rather than held until Redis takes writes again.
    if (self->store && (!bm_store_writable (self->store) || !self->recovered)) {
        s_refuse (self, admit, "store_unavailable", bm_stats_store_refusal (self));
        return;
    }
    //  The payload's bytes as the client encoded them, not re-encoded.
    size_t payload_size;
    char *packed = bm_keep_codec_value (msg, "payload", &submit.payload, &payload_size);
    if ((int64_t) payload_size > self->config.max_payload) {
        free (packed);
        char message [128];
        snprintf (message, sizeof message, "the payload is %zu bytes encoded, larger than "
                  "MAX_PAYLOAD_BYTES (%" PRId64 " bytes)", payload_size, self->config.max_payload);
        s_refuse (self, admit, "payload_too_large", message);
        return;
    }
    bm_deps_t *deps = NULL;
    if (submit.depends_count) {
        char message [256];
        const char *code = bm_deps_admit (self, &submit, &deps, message, sizeof message);
        if (code == BM_DEPS_READ) {
            free (packed);
            admit->code = code;         //  Not a refusal: the caller reads them
            return;
        }
        if (code) {
            free (packed);
            s_refuse (self, admit, code, message);
            return;
        }
    }
    bm_job_t *job = bm_job_new ();
    bm_job_make_id (self, job->id, sizeof job->id);
    job->service = service;
    job->state = JOB_QUEUED;
    job->priority = priority;
    job->seq = ++self->seq;
    job->payload = packed;
    job->payload_size = payload_size;
    job->max_attempts = max_attempts;
    job->timeout_ms = timeout_ms;
    job->created_at = now;
    job->run_attempts = submit.has_attempts ? submit.attempts : service->retry_attempts;
    if (submit.has_backoff)
        job->backoff = submit.backoff;
    else
        job->backoff = (bm_backoff_t) { BM_BACKOFF_EXPONENTIAL, service->retry_backoff_ms, false };
    job->run_at = submit.has_run_at ? submit.run_at
                : submit.has_delay_ms && submit.delay_ms > 0 ? now + submit.delay_ms : 0;
    if (job->run_at > now)
        job->state = JOB_DELAYED;
    if (deps)
        bm_deps_attach (self, job, deps);
    if (url)
        job->webhook_url = strndup (url, url_len);
    if (idem) {
        job->idem_key = strdup (idem);
        admit->fingerprint = fingerprint;
        bm_idem_put (self->idem, idem, job->id, fingerprint,
                     bm_now_ms () + self->config.idempotency_ttl_ms);
    }
    if (notify) {
        //  The broker holds the last client's: the jobs it submits in a
        //  row share it.
        if (!self->notify_last || !zframe_eq (self->notify_last->identity, identity)) {
            bm_notify_unref (&self->notify_last);
            self->notify_last = bm_notify_new (identity);
        }
        job->notify = bm_notify_ref (self->notify_last);
    }
    service->submitted++;
    service->confirming++;
    self->submitted++;
    bm_series_inc (service->m_submitted);
    bm_job_insert (self, job);
    bm_id_copy (admit->id, sizeof admit->id, job->id);
    admit->job = job;
}

//  A duplicate SUBMIT whose job only Redis may hold, while its record is
//  read: the SUBMIT is kept to be admitted again if the job is gone.
typedef struct {
    zframe_t *identity;         //  The client's
    bm_msg_t *msg;              //  The SUBMIT (a copy)
    char id [BM_ID_SLOT];       //  The job its key names
    bool reused;                //  Asks for another job than that one
} s_recheck_t;

static void s_client_submit (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg);

static void
s_on_duplicate_checked (bm_broker_t *self, const char *state, int64_t priority, bool gone,
                        void *arg)
{
    s_recheck_t *recheck = (s_recheck_t *) arg;
    const msgpack_object *body = bm_msg_body (recheck->msg);
    if (state && recheck->reused) {
        char message [256];
        snprintf (message, sizeof message, BM_IDEM_REUSED_FMT, recheck->id);
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "idempotency_key_reused"));
        bm_broker_reject (self, recheck->identity, body, "idempotency_key_reused", message);
    }
    else
    if (state)
        s_send_accepted (self, recheck->identity, NULL, body, recheck->id, true, 0, false,
                         state, priority, false);
    else
    if (gone)
        s_client_submit (self, recheck->identity, recheck->msg);
    else {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        bm_broker_reject (self, recheck->identity, body, "store_unavailable",
                          BM_TEXT_DUPLICATE_UNKNOWN);
    }
    zframe_destroy (&recheck->identity);
    bm_msg_destroy (&recheck->msg);
    free (recheck);
}

//  A SUBMIT whose dependsOn names jobs only Redis may hold, while they are
//  read: admitted again once they are.
typedef struct {
    zframe_t *identity;
    bm_msg_t *msg;              //  A copy
} s_deps_wait_t;

static void
s_on_deps_looked (bm_broker_t *self, bool ok, void *arg)
{
    s_deps_wait_t *wait = (s_deps_wait_t *) arg;
    //  Answered outside the message's handling: its refusal is logged
    //  naming its command (SUBMIT), as one answered at once is.
    int command = self ? self->command : -1;
    if (self)
        self->command = bm_msg_command (wait->msg);
    if (self && ok)
        s_client_submit (self, wait->identity, wait->msg);
    else
    if (self) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        bm_broker_reject (self, wait->identity, bm_msg_body (wait->msg), "store_unavailable",
                          "the job store (Redis) could not say whether the jobs of dependsOn exist; "
                          "retry later");
    }
    if (self)
        self->command = command;
    zframe_destroy (&wait->identity);
    bm_msg_destroy (&wait->msg);
    free (wait);
}

static void
s_client_submit (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    bm_admit_t admit;
    bm_submit_admit (self, identity, msg, &admit);
    if (admit.code == BM_DEPS_READ) {
        s_deps_wait_t *wait = (s_deps_wait_t *) zmalloc (sizeof (s_deps_wait_t));
        wait->msg = bm_msg_copy (msg);
        if (!wait->msg) {
            free (wait);
            bm_broker_reject (self, identity, body, "store_unavailable",
                              "the broker is out of memory; retry later");
            return;
        }
        wait->identity = zframe_dup (identity);
        bm_deps_lookup (self, body, s_on_deps_looked, wait);
    }
    else
    if (admit.code)
        bm_broker_reject (self, identity, body, admit.code, admit.message);
    else
    if (admit.wait) {
        bm_pending_t *pending = s_pending_new (self, identity, body, admit.id);
        pending->has_priority = admit.has_priority;
        pending->priority = admit.priority;
        bm_idem_wait (self, admit.wait, admit.reused, s_on_idem_woken, pending);
    }
    else
    if (admit.duplicate && !admit.state && self->store) {
        s_recheck_t *recheck = (s_recheck_t *) zmalloc (sizeof (s_recheck_t));
        recheck->msg = bm_msg_copy (msg);
        if (!recheck->msg) {
            free (recheck);
            bm_broker_reject (self, identity, body, "store_unavailable",
                              "the broker is out of memory; retry later");
            return;
        }
        recheck->identity = zframe_dup (identity);
        bm_id_copy (recheck->id, sizeof recheck->id, admit.id);
        recheck->reused = admit.reused;
        char key [BM_MAX_ID_LEN + 1] = "";
        bm_obj_strcpy (body, "idempotencyKey", key, sizeof key);
        bm_submit_duplicate_check (self, admit.id, key, s_on_duplicate_checked, recheck);
    }
    else
    if (admit.duplicate)
        s_send_accepted (self, identity, NULL, body, admit.id, true, 0, false, admit.state,
                         admit.has_priority ? admit.priority : -1, false);
    else
    if (!self->store) {
        //  No Redis: bm_jobstore_persist_full answers before it returns,
        //  so the answer waits on the stack, the routing id borrowed (no
        //  allocation and no copy a job).
        bm_pending_t pending;
        s_pending_fill (&pending, self, identity, body, admit.id);
        bm_jobstore_persist_full (self, admit.job, false, s_on_submit_answer, &pending);
    }
    else {
        bm_pending_t *pending = s_pending_new (self, identity, body, admit.id);
        bm_jobstore_persist_idem (self, admit.job, admit.fingerprint);
        bm_jobstore_persist_full (self, admit.job, false, s_on_submit_durable, pending);
    }
}

//  Reply with one job's record.
static void
s_reply_record (bm_broker_t *self, zframe_t *identity, bm_pending_t *pending,
                const msgpack_object *request, bm_job_t *job)
{
    bm_body_t body;
    bm_body_init (self, &body);
    if (pending) {
        msgpack_pack_map (&body.pk, 1 + pending->has_req);
        s_pack_pending_req (&body.pk, pending);
    }
    else {
        msgpack_pack_map (&body.pk, 1 + bm_req_count (request));
        bm_pack_req (&body.pk, request);
    }
    bm_pack_str (&body.pk, "job");
    bm_job_pack_record (&body.pk, job, true);
    bm_broker_send_client (self, identity, BM_REPLY, &body);
    bm_body_free (&body);
}

//  A job that only Redis still holds: loaded for STATUS, CANCEL, RETRY,
//  REDELIVER, REMOVE, PROMOTE.
typedef struct {
    bm_pending_t *pending;
    int command;
} s_load_t;

//  A loaded job's command: REMOVE and PROMOTE as bm_control_job does
//  (given a request holding just the pending req), the others here.
static void
s_load_act (bm_broker_t *self, bm_pending_t *pending, int command, bm_job_t *job)
{
    if (command != BM_REMOVE && command != BM_PROMOTE) {
        s_client_act (self, pending->identity, pending, NULL, command, job);
        return;
    }
    msgpack_object_kv kv = { .key = { .type = MSGPACK_OBJECT_STR,
                                      .via.str = { .size = 3, .ptr = "req" } },
                             .val = pending->req };
    msgpack_object request = { .type = MSGPACK_OBJECT_MAP,
                               .via.map = { .size = pending->has_req, .ptr = &kv } };
    bm_control_job_act (self, pending->identity, &request, command == BM_PROMOTE, job);
}

static void
s_on_load (redisReply *reply, void *arg)
{
    s_load_t *load = (s_load_t *) arg;
    bm_pending_t *pending = load->pending;
    bm_broker_t *self = pending->broker;
    if (!reply)
        s_pending_reject (pending, "store_unavailable",
                          "the job store (Redis) is unavailable; retry later");
    else
    if (self->stopping && !self->serving)
        //  Its lease given up meanwhile: the next leader acts on it
        s_pending_reject (pending, "shutting_down", "the broker is shutting down");
    else {
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, pending->id);
        if (job)        //  Arrived meanwhile (e.g. recovery)
            s_load_act (self, pending, load->command, job);
        else
        if (reply->type == REDIS_REPLY_ERROR) {
            //  BUSY, LOADING, NOPERM, ...: nothing said of the record
            bm_warn (pending->id, "reading its record from redis failed: %s", reply->str);
            s_pending_reject (pending, "store_unavailable",
                              "the job store (Redis) is unavailable; retry later");
        }
        else {
            job = bm_jobstore_job_from_hash (self, pending->id, reply, NULL);
            //  A record past its retention is gone, whether or not the
            //  sweep (bm_finished.c) deleted it yet.
            if (job && bm_finished_expired (self, job, bm_now_ms ()))
                bm_job_destroy (&job);
            if (!job)
                s_pending_reject (pending, "not_found", "no job with that id");
            else
            if (!bm_job_terminal (job)) {
                //  Only terminal jobs live in Redis alone; anything else is
                //  being recovered: answer what Redis says.  An action waits
                //  for the recovery, refused as a SUBMIT is meanwhile (a
                //  client retries store_unavailable; a conflict is final).
                if (load->command == BM_STATUS)
                    s_reply_record (self, pending->identity, pending, NULL, job);
                else
                    s_pending_reject (pending, "store_unavailable", BM_TEXT_RECOVERING);
                bm_job_destroy (&job);
            }
            else
            if ((load->command == BM_REMOVE || load->command == BM_PROMOTE)
            &&  !bm_job_is_delivery (job)) {
                //  In memory for the action; a REMOVE deletes it, a
                //  refused PROMOTE leaves it to Redis again.
                bm_job_restore (self, job);
                s_load_act (self, pending, load->command, job);
                job = (bm_job_t *) bm_jobtab_lookup (self->jobs, pending->id);
                if (job && bm_job_terminal (job) && !job->confirming)
                    bm_job_delete (self, job);
            }
            else
            if (load->command == BM_STATUS || load->command == BM_CANCEL
            ||  bm_job_is_delivery (job)) {
                //  Answered from the record alone (CANCEL and a delivery's
                //  RETRY, REDELIVER, REMOVE or PROMOTE are refused), not
                //  kept: a client polling old jobs would evict newer ones
                //  and list old ones as recent.  A later action reads it
                //  again.
                s_load_act (self, pending, load->command, job);
                bm_job_destroy (&job);
            }
            else {
                //  A RETRY queues it again; a REDELIVER's delivery is
                //  withheld until its record's rewrite is confirmed, which
                //  releases it from the job in memory.  Refused, the job
                //  is not kept either.
                bm_job_restore (self, job);
                s_client_act (self, pending->identity, pending, NULL, load->command, job);
                if (bm_job_terminal (job) && !job->confirming)
                    bm_job_delete (self, job);
            }
        }
    }
    s_pending_destroy (&pending);
    free (load);
}

//  A RETRY's queued record is in Redis: ACCEPTED, with the job's queue
//  position now (0 once dispatched) or its state when it is not queued
//  (waiting-children); REJECTED store_unavailable if the write failed.
static void
s_on_retry_durable (redisReply *reply, void *arg)
{
    bm_pending_t *pending = (bm_pending_t *) arg;
    bm_broker_t *self = pending->broker;
    if (!reply)
        s_pending_reject (pending, "store_unavailable",
                          "the job store (Redis) did not confirm the retry; STATUS tells "
                          "whether it holds");
    else {
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, pending->id);
        int64_t position = job && job->state == JOB_QUEUED && !job->held
                         ? bm_service_queue_position (job->service, job) : 0;
        //  A job that went back to waiting for its dependencies (or that
        //  one of them failed again at once) says so: it is not queued.
        const char *state = job && job->state != JOB_QUEUED && job->state != JOB_RUNNING
                          ? bm_job_state_names [job->state] : NULL;
        s_send_accepted (self, pending->identity, pending, NULL, pending->id, false, position,
                         false, state, -1, false);
    }
    s_pending_destroy (&pending);
}

//  A failed or cancelled client job, durable, queued again afresh (RETRY,
//  QUEUE retry): its outcome, attempts and attempt errors go, in Redis too;
//  fn told once Redis has the queued record (at once without Redis).  The
//  caller dispatches.
void
bm_clients_retry (bm_broker_t *self, bm_job_t *job, bm_store_fn *fn, void *arg)
{
    bool cancelled = job->state == JOB_CANCELLED;
    bm_joblist_remove (&self->finished, job);
    bm_finished_forget (self, job);     //  No longer failed (cancelled)
    bm_job_reset_outcome (job);
    //  A fresh set of runs: the last outcome and the attempt errors go
    //  (the run map, and the fields of a record of the earlier layout).
    if (self->store) {
        bm_cmd_t cmd;
        bm_cmd_start (self, &cmd, "HDEL", "job:", job->id);
        bm_cmd_arg_str (&cmd, "x");
        bm_cmd_arg_str (&cmd, "attemptErrors");
        bm_cmd_arg_str (&cmd, "failedRuns");
        bm_jobstore_issue (self, &cmd, true, NULL, NULL);
        if (cancelled) {
            //  An earlier version gave a cancelled record a Redis TTL:
            //  a job that runs again keeps its record.
            bm_cmd_start (self, &cmd, "PERSIST", "job:", job->id);
            bm_jobstore_issue (self, &cmd, true, NULL, NULL);
        }
    }
    job->failed_runs = 0;
    free (job->attempt_errors);
    job->attempt_errors = NULL;
    job->attempt_errors_size = 0;
    if (job->deps)
        bm_deps_retry (self, job);
    else
        bm_job_enqueue (self, job);
    self->retried++;
    bm_jobstore_persist_full (self, job, true, fn, arg);
}

//  STATUS, CANCEL, RETRY, REDELIVER on a job we hold.
static void
s_client_act (bm_broker_t *self, zframe_t *identity, bm_pending_t *pending,
              const msgpack_object *request, int command, bm_job_t *job)
{
    #define REJECT(code, message) do { \
        if (pending) s_pending_reject (pending, code, message); \
        else bm_broker_reject (self, identity, request, code, message); } while (0)

    if (command == BM_STATUS)
        s_reply_record (self, identity, pending, request, job);
    else
    if (!job->durable)
        //  Its SUBMIT is not confirmed yet: the confirmation queues it.
        REJECT ("conflict", "the job is being written; try again");
    else
    if (command == BM_CANCEL) {
        if (bm_job_terminal (job))
            REJECT ("conflict", "the job has already ended");
        else {
            if (job->state == JOB_RUNNING && job->worker)
                bm_workers_stop_job (self, job, "cancelled");
            bm_job_finish (self, job, JOB_CANCELLED, "cancelled", "cancelled by request");
            //  Answered once Redis has the cancelled record (without
            //  Redis, confirmed at once): a crash then cannot undo it.
            if (job->confirming)
                s_cancel_answer_add (self, identity, pending, request, job);
            else
                s_reply_record (self, identity, pending, request, job);
        }
    }
    else
    if (command == BM_RETRY) {
        if (job->state != JOB_FAILED && job->state != JOB_CANCELLED)
            REJECT ("conflict", "only failed or cancelled jobs can be retried");
        else
        if (bm_job_is_delivery (job))
            REJECT ("conflict", "use REDELIVER for webhook deliveries");
        else {
            //  Answered once Redis has the queued record (without Redis,
            //  at once): a crash then cannot undo it.
            bm_pending_t *answer = (bm_pending_t *) zmalloc (sizeof (bm_pending_t));
            s_pending_keep (answer, self, identity, pending, request, job->id);
            bm_clients_retry (self, job, s_on_retry_durable, answer);
            bm_dispatch (self, job->service);
        }
    }
    else
    if (command == BM_REDELIVER) {
        if (!bm_job_terminal (job) || !job->webhook_url || bm_job_is_delivery (job))
            REJECT ("conflict", "the job has no webhook or has not ended");
        else {
            bm_delivery_create (self, job);       //  Writes its record again, with the count
            s_send_accepted (self, identity, pending, request, job->id, false, 0, false, NULL,
                             -1, false);
        }
    }
    #undef REJECT
}

//  A STATUS by idempotencyKey the index does not hold: the key's field
//  in Redis names the job, whose record is then read as for its id.
static void
s_on_key_read (redisReply *reply, void *arg)
{
    bm_pending_t *pending = (bm_pending_t *) arg;
    bm_broker_t *self = pending->broker;
    char job_id [BM_MAX_ID_LEN + 1];
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (reply)
            bm_warn (NULL, "reading idempotencyKey %s from redis failed: %s", pending->id, reply->str);
        s_pending_reject (pending, "store_unavailable",
                          "the job store (Redis) is unavailable; retry later");
    }
    else
    if (!bm_idem_store_parse (reply, job_id, sizeof job_id))
        s_pending_reject (pending, "not_found", "no job with that idempotencyKey");
    else {
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, job_id);
        bm_id_copy (pending->id, sizeof pending->id, job_id);
        if (job)
            s_client_act (self, pending->identity, pending, NULL, BM_STATUS, job);
        else {
            s_load_t *load = (s_load_t *) zmalloc (sizeof (s_load_t));
            load->pending = pending;
            load->command = BM_STATUS;
            bm_cmd_t cmd;
            bm_cmd_start (self, &cmd, "HGETALL", "job:", job_id);
            bm_jobstore_query (self, &cmd, s_on_load, load);
            return;
        }
    }
    s_pending_destroy (&pending);
}

static void
s_key_read (bm_broker_t *self, zframe_t *identity, const msgpack_object *body, const char *key)
{
    bm_pending_t *pending = s_pending_new (self, identity, body, key);
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HGET", "idem", NULL);
    bm_cmd_arg_str (&cmd, key);
    bm_jobstore_query (self, &cmd, s_on_key_read, pending);
}

static void
s_client_job_command (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    int command = bm_msg_command (msg);
    bm_codec_job_ref_t ref;
    bm_codec_error_t error;
    if (bm_codec_job_ref_decode (msg, &ref, &error)) {
        bm_broker_reject (self, identity, body, error.code, error.message);
        return;
    }
    const char *id = ref.job_id;
    if (ref.idempotency_key [0]) {
        //  STATUS by the key the job was submitted with (global, as the
        //  index is): the index, else (its recovery not done yet) Redis.
        id = bm_idem_lookup (self->idem, ref.idempotency_key, bm_now_ms (), NULL);
        if (!id && self->store) {
            s_key_read (self, identity, body, ref.idempotency_key);
            return;
        }
        if (!id) {
            bm_broker_reject (self, identity, body, "not_found", "no job with that idempotencyKey");
            return;
        }
        bm_id_copy (ref.job_id, sizeof ref.job_id, id);
        id = ref.job_id;
    }
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    if (job) {
        s_client_act (self, identity, NULL, body, command, job);
        return;
    }
    if (!self->store) {
        bm_broker_reject (self, identity, body, "not_found", "no job with that id");
        return;
    }
    bm_clients_job_load (self, identity, body, id, command);
}

void
bm_clients_job_load (bm_broker_t *self, zframe_t *identity, const msgpack_object *body,
                     const char *id, int command)
{
    s_load_t *load = (s_load_t *) zmalloc (sizeof (s_load_t));
    load->pending = s_pending_new (self, identity, body, id);
    load->command = command;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HGETALL", "job:", id);
    bm_jobstore_query (self, &cmd, s_on_load, load);
}

static void
s_client_simple (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    int command = bm_msg_command (msg);
    bm_codec_list_t list;
    bm_codec_request_t request;
    bm_codec_error_t error;
    if (command == BM_LIST ? bm_codec_list_decode (msg, &list, &error)
                           : bm_codec_request_decode (msg, &request, &error)) {
        bm_broker_reject (self, identity, body, error.code, error.message);
        return;
    }
    bm_body_t reply;
    bm_body_init (self, &reply);
    int req = bm_req_count (body);
    if (command == BM_STATS) {
        const char *refused = self->store ? bm_store_refusal (self->store) : NULL;
        msgpack_pack_map (&reply.pk, req + 7 + (refused != NULL));
        bm_pack_req (&reply.pk, body);
        bm_stats_pack (self, &reply.pk);
        bm_ha_pack (self, &reply.pk);
        bm_pack_kv_bool (&reply.pk, "redis", bm_stats_redis_ok (self));
        if (refused)
            bm_pack_kv_str (&reply.pk, "redisError", refused);
        bm_pack_kv_bool (&reply.pk, "recovering", bm_stats_recovering (self));
        bm_pack_kv_int (&reply.pk, "uptimeMs", bm_mono_ms () - self->started_mono);
    }
    else
    if (command == BM_PING) {
        msgpack_pack_map (&reply.pk, req + 3);
        bm_pack_req (&reply.pk, body);
        bm_pack_kv_bool (&reply.pk, "redis", bm_stats_redis_ok (self));
        bm_pack_kv_bool (&reply.pk, "recovering", bm_stats_recovering (self));
        bm_pack_kv_int (&reply.pk, "uptimeMs", bm_mono_ms () - self->started_mono);
    }
    else
    if (command == BM_METRICS) {
        bm_series_set (self->m_store_pending, self->store ? (double) bm_store_pending (self->store) : 0);
        char *text = bm_metrics_render (self->metrics);
        msgpack_pack_map (&reply.pk, req + 1);
        bm_pack_req (&reply.pk, body);
        bm_pack_kv_str (&reply.pk, "text", text ? text : "");
        free (text);
    }
    else {      //  LIST
        //  Newest first; a state no job has matches none.  With a webhook
        //  state, the walk is over the jobs whose webhook is in it (newest
        //  to reach it first), not over every job the broker holds.
        const char *state = list.state, *type = list.bot_type;
        int webhook = bm_webhook_state (list.webhook);
        const bm_joblist_t *walked = webhook >= 0 ? &self->webhooks [webhook] : &self->recent;
        bm_job_t *matches [BM_LIST_MAX_LIMIT];
        int64_t count = 0;
        bm_job_t *job = bm_joblist_last (walked);
        while (job && count < list.limit) {
            if ((!*state || streq (state, bm_job_state_names [job->state]))
            &&  (!*type || streq (type, job->service->name)))
                matches [count++] = job;
            job = bm_joblist_prev (walked, job);
        }
        msgpack_pack_map (&reply.pk, req + 1);
        bm_pack_req (&reply.pk, body);
        bm_pack_str (&reply.pk, "jobs");
        msgpack_pack_array (&reply.pk, count);
        for (int64_t i = 0; i < count; i++)
            bm_job_pack_record (&reply.pk, matches [i], false);
    }
    bm_broker_send_client (self, identity, BM_REPLY, &reply);
    bm_body_free (&reply);
}

void
bm_clients_handle (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    //  One socket is one peer: a socket that registered as a worker
    //  (READY) sending client requests is a mistake that would mix up the
    //  two sides' answers on it.
    if (zhashx_size (self->workers) > 0) {
        char key [2 * 256 + 1];
        bm_broker_peer_key (identity, key);
        if (zhashx_lookup (self->workers, key)) {
            bm_series_inc (bm_metric_series (self->mf_frames, "bad_header"));
            bm_broker_reject (self, identity, body, "bad_header",
                              "a BMC01 request from a socket registered as a worker (READY): "
                              "a client needs a socket of its own");
            return;
        }
    }
    switch (bm_msg_command (msg)) {
        case BM_SUBMIT:
            s_client_submit (self, identity, msg);
            break;
        case BM_SUBMIT_MANY:
            bm_clients_submit_many (self, identity, msg);
            break;
        case BM_STATUS:
        case BM_CANCEL:
        case BM_RETRY:
        case BM_REDELIVER:
            s_client_job_command (self, identity, msg);
            break;
        case BM_STATS:
        case BM_LIST:
        case BM_PING:
        case BM_METRICS:
            s_client_simple (self, identity, msg);
            break;
        case BM_QUEUE:
            bm_control_queue (self, identity, msg);
            break;
        case BM_REMOVE:
        case BM_PROMOTE:
            bm_control_job (self, identity, msg);
            break;
        case BM_SCHEDULE:
            bm_schedule_command (self, identity, msg);
            break;
        case BM_SUBSCRIBE:
        case BM_UNSUBSCRIBE:
            bm_events_command (self, identity, msg);
            break;
        default:
            bm_series_inc (bm_metric_series (self->mf_frames, "bad_command"));
            bm_broker_reject (self, identity, body, "bad_command", "unknown client command");
    }
}

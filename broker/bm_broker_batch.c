/*  bm_broker_batch.c - SUBMIT_MANY and RESULT_MANY (protocol.md section
    4a).  SUBMIT_MANY: each item admitted or refused on its own, exactly as
    a SUBMIT would be; one ACCEPTED_MANY lists every item's outcome in the
    items' order once every accepted job is durable.  RESULT_MANY: the
    RESULTs of one loop turn for a client that has sent SUBMIT_MANY (end
    of this file).

    A batch in flight is a bm_batch_t: one outcome slot per item, and a
    count of the Redis writes still unconfirmed (plus one for the loop that
    issues them, so that writes confirmed at once, without Redis, do not
    answer before the last item is read).  */
#include "bm_broker_internal.h"
#include "bm_codec_batch.h"

typedef struct _bm_batch_t bm_batch_t;

static void s_batch_client_mark (bm_broker_t *self, zframe_t *identity);

//  One item's outcome, and the argument of its job's Redis write.
typedef struct {
    bm_batch_t *batch;          //  The batch it belongs to
    const char *code;           //  NULL: accepted
    char message [160];         //  Why not
    char id [BM_ID_SLOT];       //  The job's id when accepted
    bool duplicate;
    int64_t position;           //  0: none given
    bool delayed;               //  Waits for its due time
    bool unserved;              //  A new job no connected worker serves
    const char *state;          //  A duplicate's state now (a static name), or NULL
    int64_t priority;           //  Its job's priority (a duplicate's: the first
                                //  job's), -1 when not known
    size_t first;               //  1 + the slot of an earlier item of this batch
                                //  with the same idempotencyKey; 0: none
    uint64_t fingerprint;       //  Its bot type, payload, dependsOn, when it has a key
} bm_batch_slot_t;

struct _bm_batch_t {
    bm_broker_t *broker;
    zframe_t *identity;         //  The client's
    bool has_req;
    int64_t req;
    size_t count;               //  Items
    size_t unconfirmed;         //  Writes not yet confirmed, + 1 while issuing
    bm_batch_slot_t slots [];   //  One per item
};

static void
s_slot_refuse (bm_batch_slot_t *slot, const char *code, const char *message)
{
    slot->code = code;
    snprintf (slot->message, sizeof slot->message, "%s", message);
}

//  Frame 2: {req?, jobs: [{jobId, duplicate, position?} | {code, message}]}
static void
s_batch_answer (bm_batch_t *batch)
{
    bm_broker_t *self = batch->broker;
    bm_packer_t packer;
    bm_broker_packer_take (self, &packer);
    bm_codec_batch_begin (&packer, batch->has_req, batch->req, batch->count);
    for (size_t i = 0; i < batch->count; i++) {
        bm_batch_slot_t *slot = &batch->slots [i];
        //  A duplicate of an item of this batch has its outcome, and its
        //  job (a new one if that item's key named a job found gone).
        if (slot->first && batch->slots [slot->first - 1].code)
            s_slot_refuse (slot, batch->slots [slot->first - 1].code,
                           batch->slots [slot->first - 1].message);
        if (slot->first && !slot->code) {
            bm_batch_slot_t *first = &batch->slots [slot->first - 1];
            memcpy (slot->id, first->id, sizeof slot->id);
            slot->state = first->state ? first->state : first->delayed ? "delayed" : "queued";
        }
        bm_codec_outcome_t outcome;
        memset (&outcome, 0, sizeof outcome);
        outcome.accepted = slot->code == NULL;
        if (outcome.accepted) {
            snprintf (outcome.ok.job_id, sizeof outcome.ok.job_id, "%s", slot->id);
            outcome.ok.duplicate = slot->duplicate;
            outcome.ok.has_position = slot->position > 0;
            outcome.ok.position = slot->position;
            //  A duplicate of an item of this batch is that item's job
            outcome.ok.delayed = slot->first ? batch->slots [slot->first - 1].delayed
                                             : slot->delayed;
            if (slot->state)
                snprintf (outcome.ok.state, sizeof outcome.ok.state, "%s", slot->state);
            //  A duplicate's job's priority (of an item of this batch: that item's)
            int64_t priority = slot->first ? batch->slots [slot->first - 1].priority
                                           : slot->priority;
            outcome.ok.has_priority = slot->duplicate && priority >= 0;
            outcome.ok.priority = priority;
            outcome.ok.unserved = !slot->duplicate && slot->unserved;
        }
        else {
            snprintf (outcome.rejected.code, sizeof outcome.rejected.code, "%s", slot->code);
            outcome.rejected.message.ptr = slot->message;
            outcome.rejected.message.len = strlen (slot->message);
        }
        bm_codec_outcome_encode (&outcome, &packer);
    }
    if (bm_packer_failed (&packer))
        bm_error (NULL, "out of memory answering a SUBMIT_MANY of %zu jobs", batch->count);
    else {
        //  Sent from the packer's buffer (not one of the broker's pool)
        bm_body_t body = { .owner = self };
        body.sbuf = packer.sbuf;
        bm_broker_send_client (self, batch->identity, BM_ACCEPTED_MANY, &body);
    }
    bm_broker_packer_give (self, &packer);
}

static void
s_batch_release (bm_batch_t **batch_p)
{
    bm_batch_t *batch = *batch_p;
    if (batch && --batch->unconfirmed == 0) {
        s_batch_answer (batch);
        zframe_destroy (&batch->identity);
        free (batch);
    }
    *batch_p = NULL;
}

static bool s_item_admit (bm_broker_t *self, bm_batch_slot_t *slot, const bm_msg_t *item);

//  A duplicate item whose job only Redis may hold, while its record is
//  read: the item is kept to be admitted again if the job is gone.
typedef struct {
    bm_batch_slot_t *slot;
    bm_msg_t *item;             //  A copy
    bool reused;                //  Asks for another job than the one found
} s_item_check_t;

static void
s_on_item_checked (bm_broker_t *self, const char *state, int64_t priority, bool gone, void *arg)
{
    s_item_check_t *check = (s_item_check_t *) arg;
    bm_batch_slot_t *slot = check->slot;
    bm_batch_t *batch = slot->batch;
    if (state && check->reused) {
        char message [sizeof slot->message];
        snprintf (message, sizeof message, BM_IDEM_REUSED_FMT, slot->id);
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "idempotency_key_reused"));
        s_slot_refuse (slot, "idempotency_key_reused", message);
    }
    else
    if (state) {
        slot->state = state;
        slot->priority = priority;
    }
    else
    if (gone)
        s_item_admit (self, slot, check->item);
    else {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        s_slot_refuse (slot, "store_unavailable", BM_TEXT_DUPLICATE_UNKNOWN);
    }
    bm_msg_destroy (&check->item);
    free (check);
    s_batch_release (&batch);
}

//  An item waited for the job its idempotencyKey names to be confirmed.
static void
s_on_item_woken (bm_broker_t *self, const char *code, const char *message, const char *state,
                 void *arg)
{
    bm_batch_slot_t *slot = (bm_batch_slot_t *) arg;
    bm_batch_t *batch = slot->batch;
    if (!self) {
        //  The broker is gone: the batch goes with its last wait
        if (--batch->unconfirmed == 0) {
            zframe_destroy (&batch->identity);
            free (batch);
        }
        return;
    }
    if (code)
        s_slot_refuse (slot, code, message);
    else {
        slot->duplicate = true;
        slot->state = state;
    }
    s_batch_release (&batch);
}

//  One job's SUBMIT write came back.
static void
s_on_item_durable (redisReply *reply, void *arg)
{
    bm_batch_slot_t *slot = (bm_batch_slot_t *) arg;
    bm_batch_t *batch = slot->batch;
    bm_broker_t *self = batch->broker;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, slot->id);
    if (!job)
        s_slot_refuse (slot, "store_unavailable", "the job went away before it was durable");
    else
    if (bm_submit_confirmed (self, job, reply, &slot->position))
        s_slot_refuse (slot, "store_unavailable", bm_stats_store_refusal (self));
    else {
        if (job->state == JOB_WAITING_CHILDREN || (job->deps && bm_job_terminal (job)))
            slot->state = bm_job_state_names [job->state];     //  Failed: a dependency had
        else
            slot->delayed = slot->position == 0;    //  A queued job has its place
        slot->unserved = !bm_job_terminal (job) && bm_service_unserved (job->service);
    }
    s_batch_release (&batch);
}

//  One item admitted as a SUBMIT would be: refused (false), a duplicate,
//  or a new job whose write is issued.  The batch waits for what it waits
//  for (a write, a wait, a record read).
//  An item whose dependsOn names jobs only Redis may hold, while they are
//  read: admitted again once they are.
typedef struct {
    bm_batch_slot_t *slot;
    bm_msg_t *item;             //  A copy
} s_item_deps_t;

static void
s_on_item_deps (bm_broker_t *self, bool ok, void *arg)
{
    s_item_deps_t *wait = (s_item_deps_t *) arg;
    bm_batch_slot_t *slot = wait->slot;
    bm_batch_t *batch = slot->batch;
    if (ok)
        s_item_admit (self, slot, wait->item);
    else {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        s_slot_refuse (slot, "store_unavailable", "the job store (Redis) could not say whether "
                       "the jobs of dependsOn exist; retry later");
    }
    bm_msg_destroy (&wait->item);
    free (wait);
    s_batch_release (&batch);
}

static bool
s_item_admit (bm_broker_t *self, bm_batch_slot_t *slot, const bm_msg_t *item)
{
    bm_batch_t *batch = slot->batch;
    bm_admit_t admit;
    bm_submit_admit (self, batch->identity, item, &admit);
    if (admit.code == BM_DEPS_READ) {
        s_item_deps_t *wait = (s_item_deps_t *) zmalloc (sizeof (s_item_deps_t));
        wait->slot = slot;
        wait->item = bm_msg_copy (item);
        if (!wait->item) {
            free (wait);
            s_slot_refuse (slot, "store_unavailable", "the broker is out of memory; retry later");
            return false;
        }
        batch->unconfirmed++;
        bm_deps_lookup (self, bm_msg_body (item), s_on_item_deps, wait);
        return true;
    }
    if (admit.code) {
        s_slot_refuse (slot, admit.code, admit.message);
        return false;
    }
    bm_id_copy (slot->id, sizeof slot->id, admit.id);
    if (admit.wait) {
        batch->unconfirmed++;
        bm_idem_wait (self, admit.wait, admit.reused, s_on_item_woken, slot);
    }
    slot->duplicate = admit.duplicate;
    slot->state = admit.state;
    slot->priority = admit.job ? admit.job->priority
                   : admit.has_priority ? admit.priority : -1;
    if (admit.duplicate && !admit.state && self->store) {
        s_item_check_t *check = (s_item_check_t *) zmalloc (sizeof (s_item_check_t));
        check->slot = slot;
        check->reused = admit.reused;
        check->item = bm_msg_copy (item);
        if (!check->item) {
            free (check);
            s_slot_refuse (slot, "store_unavailable", "the broker is out of memory; retry later");
            return false;
        }
        char key [BM_MAX_ID_LEN + 1] = "";
        bm_obj_strcpy (bm_msg_body (item), "idempotencyKey", key, sizeof key);
        batch->unconfirmed++;
        bm_submit_duplicate_check (self, admit.id, key, s_on_item_checked, check);
    }
    if (admit.job) {
        batch->unconfirmed++;
        bm_jobstore_persist_idem (self, admit.job, admit.fingerprint);
        bm_jobstore_persist_full (self, admit.job, false, s_on_item_durable, slot);
        bm_broker_push_writes (self);
    }
    return true;
}

void
bm_clients_submit_many (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    bm_codec_batch_t items;
    bm_codec_error_t error;
    if (bm_codec_batch_decode (msg, &items, &error)) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "bad_request"));
        bm_broker_reject (self, identity, bm_msg_body (msg), error.code, error.message);
        return;
    }
    bm_batch_t *batch = (bm_batch_t *) calloc (1, sizeof (bm_batch_t)
                                                  + items.count * sizeof (bm_batch_slot_t));
    bm_msg_t *item = bm_msg_new ();
    zhashx_t *keys = NULL;              //  idempotencyKey -> 1 + slot, made at the first key
    if (!batch || !item) {
        bm_error (NULL, "out of memory for a SUBMIT_MANY of %zu jobs", items.count);
        free (batch);
        bm_msg_destroy (&item);
        bm_broker_reject (self, identity, bm_msg_body (msg), "store_unavailable",
                          "the broker is out of memory; retry later");
        return;
    }
    s_batch_client_mark (self, identity);
    batch->broker = self;
    batch->identity = zframe_dup (identity);
    batch->has_req = items.has_req;
    batch->req = items.req;
    batch->count = items.count;
    batch->unconfirmed = 1;
    //  Without Redis each job is confirmed as it is admitted: the batch's
    //  jobs are dispatched together once it is read.
    bm_dispatch_hold (self);
    int rc;
    while ((rc = bm_codec_batch_next (&items, item, &error)) != 0) {
        bm_batch_slot_t *slot = &batch->slots [items.index - 1];
        slot->batch = batch;
        if (rc < 0) {
            //  The outcome's place in ACCEPTED_MANY is the item's index:
            //  no message names it (the SUBMIT's messages stand as they are).
            self->rejected++;
            bm_series_inc (bm_metric_series (self->mf_rejected, "bad_request"));
            s_slot_refuse (slot, "bad_request", "the item must be a map (a job's body)");
            continue;
        }
        //  An idempotencyKey an earlier item of this batch gave: that job
        //  (it is not durable yet, so the broker's own lookup would not
        //  answer it).
        char key [BM_MAX_ID_LEN + 1];
        bool has_key = bm_obj_strcpy (bm_msg_body (item), "idempotencyKey", key, sizeof key)
                    && *key;
        size_t first = has_key && keys ? (size_t) (uintptr_t) zhashx_lookup (keys, key) : 0;
        if (has_key) {
            const msgpack_object *type = bm_obj_get (bm_msg_body (item), "botType");
            char bot_type [BM_MAX_ID_LEN + 1] = "";
            if (type && type->type == MSGPACK_OBJECT_STR && type->via.str.size < sizeof bot_type)
                memcpy (bot_type, type->via.str.ptr, type->via.str.size);
            slot->fingerprint = bm_idem_fingerprint_submit (bot_type, bm_msg_body (item));
        }
        if (first && !batch->slots [first - 1].code
        &&  batch->slots [first - 1].fingerprint != slot->fingerprint) {
            //  The key of an earlier item, for another job: as a SUBMIT
            //  after that item's would be answered.
            char message [sizeof slot->message];
            snprintf (message, sizeof message, BM_IDEM_REUSED_FMT, batch->slots [first - 1].id);
            self->rejected++;
            bm_series_inc (bm_metric_series (self->mf_rejected, "idempotency_key_reused"));
            s_slot_refuse (slot, "idempotency_key_reused", message);
            continue;
        }
        if (first && !batch->slots [first - 1].code) {
            slot->first = first;
            memcpy (slot->id, batch->slots [first - 1].id, sizeof slot->id);
            slot->duplicate = true;
            continue;
        }
        if (!s_item_admit (self, slot, item))
            continue;
        if (has_key && !keys)
            keys = zhashx_new ();
        if (has_key && keys)
            zhashx_insert (keys, key, (void *) (uintptr_t) (items.index));
    }
    bm_msg_destroy (&item);
    zhashx_destroy (&keys);
    bm_dispatch_release (self);
    s_batch_release (&batch);
}

//  --------------------------------------------------------------------------
//  RESULT_MANY (protocol.md section 4a): a client that has sent SUBMIT_MANY
//  gets the RESULTs of one loop turn (one Redis reply read confirms many
//  outcomes) as one message, sent at the start of the next turn (a timer
//  due at once).  Other clients get RESULT one by one.

#define BM_BATCH_CLIENTS_MAX    4096            //  Clients remembered; more get RESULT
#define BM_RESULTS_MAX_BYTES    (1024 * 1024)   //  RESULT bodies in one RESULT_MANY

//  Room kept in front of the RESULT bodies waiting for the RESULT_MANY
//  envelope ({jobs: [...]} up to the array's 5-byte head): the message
//  goes out from the one buffer, with no copy to put the envelope first.
#define BM_RESULTS_HEAD         16

//  One batch client: its RESULTs waiting.
typedef struct {
    zframe_t *identity;
    bm_packer_t items;          //  BM_RESULTS_HEAD bytes of room, then the
                                //  RESULT bodies one after the other
    size_t count;
} s_results_t;

static void
s_results_destroy (void **item)
{
    s_results_t *results = (s_results_t *) *item;
    if (results) {
        zframe_destroy (&results->identity);
        bm_packer_destroy (&results->items);
        free (results);
        *item = NULL;
    }
}

//  Send what one client has waiting: a RESULT alone, or a RESULT_MANY.
static void
s_results_send (bm_broker_t *self, s_results_t *results)
{
    if (results->count == 0)
        return;
    char *items = results->items.sbuf.data + BM_RESULTS_HEAD;
    bm_body_t body = { .owner = self };
    body.sbuf.data = items;
    body.sbuf.size = results->items.sbuf.size - BM_RESULTS_HEAD;
    if (results->count > 1) {
        //  The envelope, written into the room just before the items
        bm_packer_t head;
        bm_packer_init (&head);
        bm_codec_batch_begin (&head, false, 0, results->count);
        if (bm_packer_failed (&head) || head.sbuf.size > BM_RESULTS_HEAD) {
            bm_error (NULL, "out of memory sending %zu RESULTs", results->count);
            body.sbuf.data = NULL;
        }
        else {
            body.sbuf.data = items - head.sbuf.size;
            body.sbuf.size += head.sbuf.size;
            memcpy (body.sbuf.data, head.sbuf.data, head.sbuf.size);
        }
        bm_packer_destroy (&head);
    }
    if (body.sbuf.data)
        bm_broker_send_client (self, results->identity,
                               results->count > 1 ? BM_RESULT_MANY : BM_RESULT, &body);
    bm_packer_reset (&results->items);
    if (results->items.sbuf.alloc > BM_RESULTS_MAX_BYTES)
        bm_packer_destroy (&results->items);
    results->count = 0;
}

void
bm_batch_send_results (bm_broker_t *self)
{
    if (self->results_timer > 0 && self->loop)
        zloop_timer_end (self->loop, self->results_timer);
    self->results_timer = 0;
    if (!self->batch_clients)
        return;
    s_results_t *results = (s_results_t *) zhashx_first (self->batch_clients);
    while (results) {
        s_results_send (self, results);
        results = (s_results_t *) zhashx_next (self->batch_clients);
    }
}

static int
s_on_results_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    self->results_timer = 0;            //  One-shot: zloop ends it
    bm_batch_send_results (self);
    return 0;
}

//  A client sent SUBMIT_MANY: remember it (up to BM_BATCH_CLIENTS_MAX).
static void
s_batch_client_mark (bm_broker_t *self, zframe_t *identity)
{
    if (!self->batch_clients) {
        self->batch_clients = zhashx_new ();
        if (!self->batch_clients)
            return;
        zhashx_set_destructor (self->batch_clients, s_results_destroy);
    }
    char *key = zframe_strhex (identity);
    if (key && !zhashx_lookup (self->batch_clients, key)
    &&  zhashx_size (self->batch_clients) < BM_BATCH_CLIENTS_MAX) {
        s_results_t *results = (s_results_t *) calloc (1, sizeof (s_results_t));
        if (results) {
            results->identity = zframe_dup (identity);
            bm_packer_init (&results->items);
            zhashx_insert (self->batch_clients, key, results);
        }
    }
    free (key);
}

bool
bm_batch_keep_result (bm_broker_t *self, zframe_t *identity, bm_body_t *body)
{
    if (!self->batch_clients || !identity || !self->loop)
        return false;
    //  The RESULTs of a loop turn mostly go to one client: the last one
    //  found is tried first (entries live as long as the broker).
    s_results_t *results = (s_results_t *) self->results_last;
    if (!results || !zframe_eq (results->identity, identity)) {
        char *key = zframe_strhex (identity);
        results = key ? (s_results_t *) zhashx_lookup (self->batch_clients, key) : NULL;
        free (key);
        if (!results)
            return false;
        self->results_last = results;
    }
    if (results->count >= BM_MAX_BATCH
    ||  (results->count > 0 && results->items.sbuf.size + body->sbuf.size > BM_RESULTS_MAX_BYTES))
        s_results_send (self, results);
    if (results->count == 0 && results->items.sbuf.size == 0) {
        static const char room [BM_RESULTS_HEAD];
        bm_packer_write_raw (&results->items, room, sizeof room);
        if (bm_packer_failed (&results->items)) {
            bm_packer_reset (&results->items);
            return false;               //  Sent alone
        }
    }
    size_t before = results->items.sbuf.size;
    bm_packer_write_raw (&results->items, body->sbuf.data, body->sbuf.size);
    if (bm_packer_failed (&results->items)) {
        results->items.sbuf.size = before;
        results->items.failed = false;
        return false;                   //  Sent alone
    }
    results->count++;
    if (self->results_timer <= 0) {
        self->results_timer = zloop_timer (self->loop, 0, 1, s_on_results_timer, self);
        if (self->results_timer <= 0) {
            self->results_timer = 0;
            s_results_send (self, results);
        }
    }
    return true;
}

/*  bm_events.c - live job events (bm_events.h; docs/protocol.md,
    "SUBSCRIBE, UNSUBSCRIBE, EVENT").

    A fixed table of MAX_SUBSCRIPTIONS slots, walked for each event: the
    table is small (64 by default) and an event that no subscription wants
    costs a bit test per slot.  An event's fields common to every
    subscriber are packed once; each subscriber's body is its own map
    header, subscription id and seq, then those bytes.

    The history is a ring of those packed bytes (with the job's id and type
    and the event, for the filters of a replay), by count and by bytes; it
    covers the ids (base, last]: a since in that range is replayed from it,
    any other is answered reset and the whole history replayed (its client
    has seen none of it).  */
#include "bm_broker_internal.h"
#include "bm_codec_field.h"
#include "bm_events.h"

#define BM_EVENTS_ID_SLOT 40
#define BM_EVENTS_EPOCH_SLOT 24

static const char *s_names [BM_EV_COUNT] = {
    "waiting", "active", "progress", "completed", "failed", "delayed", "removed", "stalled",
    "cancelled", "waiting-children"
};

typedef struct {
    bool used;
    char id [BM_EVENTS_ID_SLOT];            //  "sub-<instance>-<counter>"
    zframe_t *identity;                     //  The client's routing id
    uint32_t events;                        //  Bit per bm_event_t wanted
    int type_count;
    char types [BM_EVENTS_MAX_TYPES][BM_MAX_BOT_TYPE_LEN + 1];
    int job_count;
    char (*jobs) [BM_MAX_ID_LEN + 1];       //  job_count ids, or NULL
    int64_t seq;                            //  Last seq given (sent or dropped)
    int64_t dropped;                        //  Events its client's queue was too full for
    int64_t ttl_ms;
    int64_t expires;                        //  Mono ms
} s_sub_t;

//  One past event, kept for since: its packed fields (s_pack_tail), then
//  its job's id and type, in one block.
typedef struct {
    uint64_t n;                             //  Its id's number
    int event;
    uint32_t keys;                          //  Fields in data
    size_t size;                            //  Bytes of data
    size_t block;                           //  Bytes of the whole allocation
    const char *job_id, *bot_type;          //  In the block, after data
    char data [];
} s_past_t;

struct _bm_events_t {
    s_sub_t *subs;
    int64_t max;
    uint64_t counter;
    char epoch [BM_EVENTS_EPOCH_SLOT];      //  This broker run's part of an event id
    uint64_t last;                          //  The last event id's number given
    uint64_t base;                          //  The history holds the ids after it
    s_past_t **ring;                        //  history slots, or NULL
    int64_t history, head, count;
    size_t bytes;                           //  Bytes of the events held
    int64_t linger_until;                   //  Mono ms: then dropped, with no subscription
    msgpack_sbuffer tail;                   //  The fields every subscriber gets
    msgpack_sbuffer body;                   //  One subscriber's body
    bm_series_t *m_sent, *m_dropped, *m_subscriptions;
};

bm_events_t *
bm_events_new (bm_broker_t *broker, int64_t max_subscriptions, int64_t history)
{
    bm_events_t *self = (bm_events_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->max = max_subscriptions;
    self->history = max_subscriptions > 0 ? history : 0;
    if (self->max > 0)
        self->subs = (s_sub_t *) calloc ((size_t) self->max, sizeof *self->subs);
    if (self->history > 0)
        self->ring = (s_past_t **) calloc ((size_t) self->history, sizeof *self->ring);
    if ((self->max > 0 && !self->subs) || (self->history > 0 && !self->ring)) {
        free (self->subs);
        free (self->ring);
        free (self);
        return NULL;
    }
    //  Another run of this broker (or another broker) has another epoch:
    //  its since is answered reset, never matched against these numbers.
    snprintf (self->epoch, sizeof self->epoch, "%" PRIx64 "%04x", (uint64_t) bm_now_ms (),
              (unsigned) (((unsigned) getpid () * 2654435761u) ^ (unsigned) bm_mono_ms ()) & 0xffff);
    msgpack_sbuffer_init (&self->tail);
    msgpack_sbuffer_init (&self->body);
    bm_metrics_t *m = broker->metrics;
    self->m_sent = bm_metric_series (bm_metrics_counter (m, "broker_events_sent_total",
        "Job events sent to subscribers (SUBSCRIBE)", NULL));
    self->m_dropped = bm_metric_series (bm_metrics_counter (m, "broker_events_dropped_total",
        "Job events not sent because the subscriber's queue was full (BROKER_PEER_HWM): its "
        "subscription's seq shows the gap", NULL));
    self->m_subscriptions = bm_metric_series (bm_metrics_gauge (m, "broker_event_subscriptions",
        "Live event subscriptions (at most MAX_SUBSCRIPTIONS)", NULL));
    //  As after the last subscription ended: the subscribers of the run
    //  before this one come back (at their next renewal) to what happened
    //  meanwhile
    broker->events_on = self->history > 0;
    self->linger_until = bm_mono_ms () + BM_EVENTS_HISTORY_LINGER_MS;
    return self;
}

static void
s_sub_clear (s_sub_t *sub)
{
    zframe_destroy (&sub->identity);
    free (sub->jobs);
    memset (sub, 0, sizeof *sub);
}

//  The oldest event of the history forgotten.
static void
s_forget_oldest (bm_events_t *self)
{
    s_past_t *past = self->ring [self->head];
    self->ring [self->head] = NULL;
    self->base = past->n;
    self->bytes -= past->block;
    free (past);
    self->head = (self->head + 1) % self->history;
    self->count--;
}

//  The whole history forgotten; the next event skips an id, so that a
//  since of the last one given is not taken for "nothing missed".
static void
s_history_clear (bm_events_t *self)
{
    while (self->count)
        s_forget_oldest (self);
    self->last++;
    self->base = self->last;
}

void
bm_events_destroy (bm_events_t **self_p)
{
    bm_events_t *self = *self_p;
    if (!self)
        return;
    for (int64_t i = 0; i < self->max; i++)
        s_sub_clear (&self->subs [i]);
    while (self->count)
        s_forget_oldest (self);
    free (self->ring);
    free (self->subs);
    msgpack_sbuffer_destroy (&self->tail);
    msgpack_sbuffer_destroy (&self->body);
    free (self);
    *self_p = NULL;
}

static void
s_drop (bm_broker_t *broker, s_sub_t *sub, const char *why)
{
    bm_info (NULL, "event subscription %s ended (%s) after %" PRId64 " events, %" PRId64
             " dropped", sub->id, why, sub->seq, sub->dropped);
    s_sub_clear (sub);
    broker->event_subs--;
    bm_series_set (broker->events->m_subscriptions, (double) broker->event_subs);
    if (broker->event_subs == 0) {
        //  The history stays a while for a subscriber coming back
        broker->events_on = broker->events->history > 0;
        broker->events->linger_until = bm_mono_ms () + BM_EVENTS_HISTORY_LINGER_MS;
    }
}

void
bm_events_tick (bm_broker_t *broker, int64_t now_mono)
{
    bm_events_t *self = broker->events;
    if (!broker->events_on || !self)
        return;
    for (int64_t i = 0; i < self->max && broker->event_subs; i++)
        if (self->subs [i].used && self->subs [i].expires <= now_mono)
            s_drop (broker, &self->subs [i], "not renewed within its ttlMs");
    if (!broker->event_subs && now_mono >= self->linger_until) {
        bm_debug (NULL, "event history of %" PRId64 " events dropped: no subscription for %d ms",
                  self->count, BM_EVENTS_HISTORY_LINGER_MS);
        s_history_clear (self);
        broker->events_on = false;
    }
}

//  --------------------------------------------------------------------------
//  Sending

static bool
s_matches (const s_sub_t *sub, const char *bot_type, const char *job_id, int event)
{
    if (!(sub->events & (1u << event)))
        return false;
    if (sub->type_count) {
        int i = 0;
        while (i < sub->type_count && !streq (sub->types [i], bot_type))
            i++;
        if (i == sub->type_count)
            return false;
    }
    if (sub->job_count) {
        int i = 0;
        while (i < sub->job_count && !streq (sub->jobs [i], job_id))
            i++;
        if (i == sub->job_count)
            return false;
    }
    return true;
}

static void
s_pack_text (msgpack_packer *pk, const char *key, const char *text)
{
    text = text ? text : "";
    bm_pack_str (pk, key);
    bm_pack_strn (pk, text, bm_field_utf8_cut (text, strlen (text), BM_EVENTS_MESSAGE_MAX));
}

//  The fields of the event every subscriber gets; returns how many.
static uint32_t
s_pack_tail (msgpack_sbuffer *sbuf, const char *id, const bm_job_t *job, bm_event_t event,
             const char *text, bool will_retry)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    sbuf->size = 0;
    uint32_t keys = 6;
    bm_pack_kv_str (&pk, "id", id);
    bm_pack_kv_str (&pk, "event", s_names [event]);
    bm_pack_kv_str (&pk, "jobId", job->id);
    bm_pack_kv_str (&pk, "botType", job->service->name);
    bm_pack_kv_int (&pk, "at", bm_now_ms ());
    bm_pack_kv_int (&pk, "attempt", job->attempts);
    switch (event) {
        case BM_EV_WAITING:
            bm_pack_kv_int (&pk, "priority", job->priority);
            keys++;
            break;
        case BM_EV_ACTIVE:
            if (job->worker_name) {
                bm_pack_kv_str (&pk, "worker", job->worker_name);
                keys++;
            }
            break;
        case BM_EV_PROGRESS:
            bm_pack_kv_int (&pk, "progress", job->progress);
            keys++;
            break;
        case BM_EV_COMPLETED:
            bm_pack_kv_int (&pk, "resultSize", (int64_t) job->result_size);
            keys++;
            if (job->result_size <= BM_EVENTS_RESULT_MAX) {
                bm_pack_str (&pk, "result");
                if (job->result)
                    msgpack_sbuffer_write (sbuf, job->result, job->result_size);
                else
                    msgpack_pack_nil (&pk);
                keys++;
            }
            break;
        case BM_EV_FAILED:
        case BM_EV_CANCELLED:
            bm_pack_kv_str (&pk, "code", job->error_code ? job->error_code : "failed");
            s_pack_text (&pk, "message", job->error_message);
            keys += 2;
            if (event == BM_EV_FAILED) {
                bm_pack_kv_bool (&pk, "willRetry", will_retry);
                keys++;
                if (job->has_exit_code) {
                    bm_pack_kv_int (&pk, "exitCode", job->exit_code);
                    keys++;
                }
            }
            break;
        case BM_EV_DELAYED:
            bm_pack_kv_int (&pk, "dueAt", job->run_at);
            keys++;
            break;
        case BM_EV_STALLED:
            s_pack_text (&pk, "reason", text);
            keys++;
            break;
        default:
            break;
    }
    return keys;
}

//  The event packed in tail (keys fields) kept in the history as number n;
//  the oldest forgotten as needed.  With no memory the history is
//  forgotten: a since before this event is answered reset.
static void
s_record (bm_events_t *self, uint64_t n, const bm_job_t *job, bm_event_t event, uint32_t keys)
{
    size_t id_len = strlen (job->id) + 1, type_len = strlen (job->service->name) + 1;
    size_t block = sizeof (s_past_t) + self->tail.size + id_len + type_len;
    while (self->count
       && (self->count == self->history || self->bytes + block > BM_EVENTS_HISTORY_BYTES))
        s_forget_oldest (self);
    s_past_t *past = (s_past_t *) malloc (block);
    if (!past) {
        while (self->count)
            s_forget_oldest (self);
        self->base = n;
        return;
    }
    past->n = n;
    past->event = event;
    past->keys = keys;
    past->size = self->tail.size;
    past->block = block;
    memcpy (past->data, self->tail.data, self->tail.size);
    past->job_id = past->data + past->size;
    memcpy ((char *) past->job_id, job->id, id_len);
    past->bot_type = past->job_id + id_len;
    memcpy ((char *) past->bot_type, job->service->name, type_len);
    self->ring [(self->head + self->count++) % self->history] = past;
    self->bytes += block;
}

//  An event (keys fields packed in tail, size bytes) sent to sub with its
//  next seq.  -1 when its client is gone: the subscription is dropped.
static int
s_send (bm_broker_t *broker, s_sub_t *sub, uint32_t keys, const char *tail, size_t size)
{
    bm_events_t *self = broker->events;
    sub->seq++;
    msgpack_packer pk;
    msgpack_packer_init (&pk, &self->body, msgpack_sbuffer_write);
    self->body.size = 0;
    msgpack_pack_map (&pk, keys + 2);
    bm_pack_kv_str (&pk, "subscription", sub->id);
    bm_pack_kv_int (&pk, "seq", sub->seq);
    msgpack_sbuffer_write (&self->body, tail, size);
    if (bm_broker_route_client (broker, sub->identity, BM_EVENT, self->body.data,
                                self->body.size) == 0) {
        bm_series_inc (self->m_sent);
        return 0;
    }
    if (errno == EAGAIN) {
        //  Never queued: the client sees the gap in seq.
        sub->dropped++;
        bm_series_inc (self->m_dropped);
        return 0;
    }
    s_drop (broker, sub, "its client is gone");
    return -1;
}

void
bm_events_emit (bm_broker_t *broker, const bm_job_t *job, bm_event_t event, const char *text,
                bool will_retry)
{
    bm_events_t *self = broker->events;
    if (!self || bm_job_is_delivery (job))
        return;
    uint64_t n = ++self->last;
    uint32_t tail_keys = 0;
    char id [BM_EVENTS_ID_SLOT];
    snprintf (id, sizeof id, "%s-%" PRIu64, self->epoch, n);
    if (self->history) {
        tail_keys = s_pack_tail (&self->tail, id, job, event, text, will_retry);
        s_record (self, n, job, event, tail_keys);
    }
    else
        self->base = n;
    int64_t now = bm_mono_ms ();
    for (int64_t i = 0; i < self->max && broker->event_subs; i++) {
        s_sub_t *sub = &self->subs [i];
        if (!sub->used)
            continue;
        if (sub->expires <= now) {
            s_drop (broker, sub, "not renewed within its ttlMs");
            continue;
        }
        if (!s_matches (sub, job->service->name, job->id, event))
            continue;
        if (!tail_keys)
            tail_keys = s_pack_tail (&self->tail, id, job, event, text, will_retry);
        s_send (broker, sub, tail_keys, self->tail.data, self->tail.size);
    }
}

//  --------------------------------------------------------------------------
//  SUBSCRIBE, UNSUBSCRIBE

static s_sub_t *
s_find (bm_events_t *self, const char *id, zframe_t *identity)
{
    for (int64_t i = 0; i < self->max; i++) {
        s_sub_t *sub = &self->subs [i];
        if (sub->used && streq (sub->id, id) && zframe_eq (sub->identity, identity))
            return sub;
    }
    return NULL;
}

//  An optional array of strings under key: *array NULL when absent, nil
//  or empty.  At most max items, each a string.
static int
s_str_array (const msgpack_object *body, const char *key, uint32_t max,
             const msgpack_object_array **array, char *message, size_t size)
{
    const msgpack_object *o = bm_field_opt (body, key);
    *array = NULL;
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > max) {
        snprintf (message, size, "%s must be an array of at most %u strings", key, max);
        return -1;
    }
    for (uint32_t i = 0; i < o->via.array.size; i++)
        if (o->via.array.ptr [i].type != MSGPACK_OBJECT_STR) {
            snprintf (message, size, "%s [%u] must be a string", key, i);
            return -1;
        }
    if (o->via.array.size)
        *array = &o->via.array;
    return 0;
}

//  The filters and ttlMs of a SUBSCRIBE into the fields of sub (filled
//  only when all of them are right); -1 with message naming the field.
static int
s_parse (const msgpack_object *body, s_sub_t *sub, char *message, size_t size)
{
    const msgpack_object_array *types, *jobs, *events;
    if (s_str_array (body, "botTypes", BM_EVENTS_MAX_TYPES, &types, message, size)
    ||  s_str_array (body, "jobIds", BM_EVENTS_MAX_JOBS, &jobs, message, size)
    ||  s_str_array (body, "events", BM_EV_COUNT, &events, message, size))
        return -1;
    for (uint32_t i = 0; types && i < types->size; i++) {
        const msgpack_object_str *s = &types->ptr [i].via.str;
        if (!bm_valid_bot_type (s->ptr, s->size)) {
            snprintf (message, size, "botTypes [%u] is not a bot type (1-%d bytes of [a-z0-9_-])",
                      i, BM_MAX_BOT_TYPE_LEN);
            return -1;
        }
    }
    for (uint32_t i = 0; jobs && i < jobs->size; i++) {
        const msgpack_object_str *s = &jobs->ptr [i].via.str;
        if (!bm_valid_id (s->ptr, s->size)) {
            snprintf (message, size, "jobIds [%u] is not a job id (1-%d bytes of printable "
                      "ASCII, no spaces)", i, BM_MAX_ID_LEN);
            return -1;
        }
    }
    uint32_t mask = events ? 0 : (1u << BM_EV_COUNT) - 1;
    for (uint32_t i = 0; events && i < events->size; i++) {
        const msgpack_object_str *s = &events->ptr [i].via.str;
        int e = 0;
        while (e < BM_EV_COUNT
           && !(strlen (s_names [e]) == s->size && memcmp (s_names [e], s->ptr, s->size) == 0))
            e++;
        if (e == BM_EV_COUNT) {
            int n = snprintf (message, size, "events [%u] is not an event name (", i);
            for (int k = 0; k < BM_EV_COUNT && n > 0 && (size_t) n < size; k++)
                n += snprintf (message + n, size - (size_t) n, "%s%s", k ? ", " : "", s_names [k]);
            if (n > 0 && (size_t) n < size)
                snprintf (message + n, size - (size_t) n, ")");
            return -1;
        }
        mask |= 1u << e;
    }
    bm_codec_error_t error = { 0 };
    bool has_ttl;
    int64_t ttl = BM_EVENTS_TTL_DEFAULT_MS;
    if (bm_field_opt_int (body, "ttlMs", BM_EVENTS_TTL_MIN_MS, BM_EVENTS_TTL_MAX_MS, &has_ttl,
                          &ttl, &error)) {
        snprintf (message, size, "ttlMs must be an integer from %d to %d", BM_EVENTS_TTL_MIN_MS,
                  BM_EVENTS_TTL_MAX_MS);
        return -1;
    }
    char (*ids) [BM_MAX_ID_LEN + 1] = NULL;
    if (jobs) {
        ids = (char (*) [BM_MAX_ID_LEN + 1]) calloc (jobs->size, sizeof *ids);
        if (!ids) {
            snprintf (message, size, "no memory for jobIds");
            return -1;
        }
        for (uint32_t i = 0; i < jobs->size; i++)
            bm_field_copy (ids [i], jobs->ptr [i].via.str.ptr, jobs->ptr [i].via.str.size);
    }
    free (sub->jobs);
    sub->jobs = ids;
    sub->job_count = jobs ? (int) jobs->size : 0;
    sub->type_count = types ? (int) types->size : 0;
    for (int i = 0; i < sub->type_count; i++)
        bm_field_copy (sub->types [i], types->ptr [i].via.str.ptr, types->ptr [i].via.str.size);
    sub->events = mask;
    sub->ttl_ms = ttl;
    return 0;
}

//  What a SUBSCRIBE's since asks for.
typedef struct {
    bool given;
    bool reset;                 //  Not in the history: all of it replayed
    uint64_t after;             //  Replay the events after this number (0: all)
} s_since_t;

//  The since of a SUBSCRIBE: absent, an id of this run in the history, or
//  reset (older than the history, or of another run); -1 with message when
//  it is not an event id, or a number not given yet.
static int
s_parse_since (bm_events_t *self, const msgpack_object *body, bool renewal, s_since_t *since,
               char *message, size_t size)
{
    memset (since, 0, sizeof *since);
    const msgpack_object *o = bm_field_opt (body, "since");
    if (!o || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (renewal) {
        snprintf (message, size, "since is for a new subscription (without subscription), "
                  "not a renewal");
        return -1;
    }
    char text [BM_EVENTS_ID_SLOT] = "";
    if (o->type == MSGPACK_OBJECT_STR && o->via.str.size < sizeof text)
        memcpy (text, o->via.str.ptr, o->via.str.size);
    char *dash = strrchr (text, '-');
    size_t digits = dash ? strspn (dash + 1, "0123456789") : 0;
    if (!dash || dash == text || digits == 0 || dash [1 + digits] || digits > 19
    ||  strlen (text) != (o->type == MSGPACK_OBJECT_STR ? o->via.str.size : 0)) {
        snprintf (message, size, "since must be an event id (\"<epoch>-<n>\", as an EVENT's id)");
        return -1;
    }
    *dash = 0;
    uint64_t n = strtoull (dash + 1, NULL, 10);
    since->given = true;
    if (!streq (text, self->epoch))
        since->reset = true;            //  Another broker, or another run of this one
    else
    if (n > self->last) {
        snprintf (message, size, "since %s-%" PRIu64 " is after the last event id of this broker "
                  "(%s-%" PRIu64 ")", text, n, self->epoch, self->last);
        return -1;
    }
    else
    if (n < self->base)
        since->reset = true;            //  Older than the history
    else
        since->after = n;
    return 0;
}

static void
s_reply (bm_broker_t *broker, zframe_t *identity, const msgpack_object *body, const s_sub_t *sub,
         const s_since_t *since, int64_t replayed)
{
    bm_events_t *self = broker->events;
    bm_body_t reply;
    bm_body_init (broker, &reply);
    msgpack_pack_map (&reply.pk, bm_req_count (body) + 5 + (since && since->given ? 2 : 0));
    bm_pack_req (&reply.pk, body);
    bm_pack_kv_str (&reply.pk, "subscription", sub->id);
    bm_pack_kv_int (&reply.pk, "ttlMs", sub->ttl_ms);
    bm_pack_kv_int (&reply.pk, "seq", sub->seq);
    bm_pack_kv_int (&reply.pk, "dropped", sub->dropped);
    char id [BM_EVENTS_ID_SLOT];
    snprintf (id, sizeof id, "%s-%" PRIu64, self->epoch, self->last);
    bm_pack_kv_str (&reply.pk, "eventId", id);
    if (since && since->given) {
        bm_pack_kv_bool (&reply.pk, "reset", since->reset);
        bm_pack_kv_int (&reply.pk, "replayed", replayed);
    }
    bm_broker_send_client (broker, identity, BM_REPLY, &reply);
    bm_body_free (&reply);
}

//  The events of the history after since that sub's filters match, sent
//  to it (after its REPLY: it counts them first).
static int64_t
s_replay (bm_broker_t *broker, s_sub_t *sub, const s_since_t *since, bool send)
{
    bm_events_t *self = broker->events;
    int64_t matched = 0;
    for (int64_t i = 0; i < self->count; i++) {
        const s_past_t *past = self->ring [(self->head + i) % self->history];
        if (past->n <= since->after || !s_matches (sub, past->bot_type, past->job_id, past->event))
            continue;
        matched++;
        if (send && s_send (broker, sub, past->keys, past->data, past->size))
            break;                      //  Its client is gone: sub was dropped
    }
    return matched;
}

void
bm_events_command (bm_broker_t *broker, zframe_t *identity, const bm_msg_t *msg)
{
    bm_events_t *self = broker->events;
    const msgpack_object *body = bm_msg_body (msg);
    bm_codec_error_t error = { 0 };
    bool has_req;
    int64_t req;
    char id [BM_EVENTS_ID_SLOT] = "";
    if (bm_field_req (body, &has_req, &req, &error)
    ||  bm_field_name (body, "subscription", bm_msg_command (msg) == BM_UNSUBSCRIBE,
                       BM_EVENTS_ID_SLOT - 1, id, &error)) {
        bm_broker_reject (broker, identity, body, "bad_request", error.message);
        return;
    }
    //  A subscription named, even "" (which no subscription is), must exist.
    bool named = bm_field_opt (body, "subscription") != NULL;
    s_sub_t *sub = named ? s_find (self, id, identity) : NULL;
    if (named && !sub) {
        char message [160];
        snprintf (message, sizeof message, "no live subscription \"%s\" of this client: "
                  "subscribe anew (events since it ended are lost)", id);
        bm_broker_reject (broker, identity, body, "not_found", message);
        return;
    }
    if (bm_msg_command (msg) == BM_UNSUBSCRIBE) {
        s_reply (broker, identity, body, sub, NULL, 0);
        s_drop (broker, sub, "UNSUBSCRIBE");
        return;
    }
    s_sub_t parsed = { 0 };
    s_since_t since;
    char message [160];
    if (s_parse (body, &parsed, message, sizeof message)
    ||  s_parse_since (self, body, named, &since, message, sizeof message)) {
        free (parsed.jobs);
        bm_broker_reject (broker, identity, body, "bad_request", message);
        return;
    }
    if (!sub) {
        for (int64_t i = 0; i < self->max && !sub; i++)
            if (!self->subs [i].used)
                sub = &self->subs [i];
        if (!sub) {
            free (parsed.jobs);
            if (self->max == 0)
                snprintf (message, sizeof message, "event subscriptions are turned off on "
                          "this broker (MAX_SUBSCRIPTIONS=0)");
            else
                snprintf (message, sizeof message, "MAX_SUBSCRIPTIONS (%" PRId64 ") event "
                          "subscriptions exist already", self->max);
            bm_broker_reject (broker, identity, body, "too_many_subscriptions", message);
            return;
        }
        sub->used = true;
        sub->identity = zframe_dup (identity);
        snprintf (sub->id, sizeof sub->id, "sub-%s-%" PRIu64, broker->instance, ++self->counter);
        broker->event_subs++;
        broker->events_on = true;
        bm_series_set (self->m_subscriptions, (double) broker->event_subs);
        bm_info (NULL, "event subscription %s made (%d types, %d jobs, events 0x%x%s%s)", sub->id,
                 parsed.type_count, parsed.job_count, parsed.events,
                 since.given ? ", since: " : "",
                 since.given ? (since.reset ? "not in the history, reset, all of it replayed"
                                            : "replayed") : "");
    }
    //  A renewal takes the filters it carries, as a new subscription does.
    free (sub->jobs);
    sub->jobs = parsed.jobs;
    sub->job_count = parsed.job_count;
    sub->type_count = parsed.type_count;
    memcpy (sub->types, parsed.types, sizeof sub->types);
    sub->events = parsed.events;
    sub->ttl_ms = parsed.ttl_ms;
    sub->expires = bm_mono_ms () + sub->ttl_ms;
    int64_t replayed = since.given ? s_replay (broker, sub, &since, false) : 0;
    s_reply (broker, identity, body, sub, &since, replayed);
    if (replayed)
        s_replay (broker, sub, &since, true);
}

/*  gw_events.c - the gateway's live job events (gw_events.h).

    Locking: one mutex guards the stream list, every stream's queue and
    the subscription's id and seq.  The link thread (gw_link_push) checks
    under it whether a stream wants an EVENT, formats it outside it (only
    then: no JSON for an event no filter takes) and queues under it; each stream's HTTP thread
    sleeps on its own condition variable; the hub's thread sleeps on the
    hub's, woken when the first stream opens or the hub stops.

    The history: the last GW_EVENTS_HISTORY events of the subscription, as
    sent (their SSE blocks), without a hole: a gap clears it, and so does a
    new subscription that could not start where the last one ended.  A
    stream opened with a Last-Event-ID gets those after it from here; a new
    subscription asks the broker for the events since the last one here.  */
#include "gw_events.h"

#include "bm_config.h"
#include "bm_json.h"
#include "bm_log.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static const char *s_names [] = {
    "waiting", "active", "progress", "completed", "failed", "delayed", "removed", "stalled",
    "cancelled", "waiting-children", NULL
};

struct _gw_stream_t {
    gw_events_filter_t filter;
    bool resumed;                       //  Opened with a Last-Event-ID: told when the
                                        //  subscription made next lost events
    int64_t skip_replay_of;             //  Opened without one: the subscription (by
                                        //  number, subs_made) whose replay it skips,
                                        //  events from before it opened; 0 none
    char *items [GW_EVENTS_STREAM_QUEUE];
    size_t head, count;
    int64_t lost;                       //  Items its queue had no room for, not told yet
    int64_t took_at;                    //  When it last took an item (bm_mono_ms), 0 never
    int socket;                         //  Its client's connection (borrowed), -1 unknown
    pthread_cond_t cond;
    gw_stream_t *next;
};

//  Events that may be a new subscription's, pushed before the hub has
//  delivered the broker's replay (the broker sends it right after its
//  answer): held, not lost.  The hold grows from GW_EVENTS_PENDING up to
//  GW_EVENTS_PENDING_MAX events, BROKER_EVENT_HISTORY's upper bound, so a
//  replay of all the broker keeps fits; past it the events are the
//  gateway's own loss (a `gap` with reason "gateway").
#define GW_EVENTS_PENDING 1024
#define GW_EVENTS_PENDING_MAX 1000000
//  How long, in all, the hub waits for streams to take items of a replay
//  before it queues the rest regardless (a stream then too full is a slow
//  reader).
#define GW_EVENTS_REPLAY_WAIT_MS 5000
//  A stream whose queue is full and that took nothing for this long (since
//  the replay began, at the latest) is not waited for: it is a slow reader,
//  and the other streams' events go on.
#define GW_EVENTS_REPLAY_STALL_MS 1000
//  Unknown event names warned of once each; the rest logged at DEBUG.
#define GW_EVENTS_UNKNOWN_NAMES 16
#define GW_EVENTS_ID_SLOT 48
typedef struct {
    char sub [64];
    char id [GW_EVENTS_ID_SLOT];        //  The broker's event id
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    char job_id [BM_MAX_ID_LEN + 1];
    int64_t seq;
    int event;
    char *text;
} gw_pending_t;

//  An event of the history.
typedef struct {
    char id [GW_EVENTS_ID_SLOT];
    int event;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    char job_id [BM_MAX_ID_LEN + 1];
    char *text;
} gw_past_t;

struct _gw_events_t {
    gw_link_t *link;
    int max_streams;
    pthread_mutex_t lock;
    pthread_cond_t cond;                //  The hub thread's
    gw_stream_t *streams;
    int count;
    bool stopping;                      //  gw_events_destroy began
    bool waking;                        //  gw_events_wake_all was called
    char sub_id [64];                   //  The broker's subscription, "" when none
    bool subscribing;                   //  A new one asked for, its replay not
                                        //  delivered yet: pushes go to pending
    gw_pending_t *pending;              //  The events pushed meanwhile
    int pending_count, pending_size;
    bool own_loss;                      //  Pending had no room: the next gap is the
                                        //  gateway's, not the broker's
    char unknown [GW_EVENTS_UNKNOWN_NAMES][65];     //  Event names warned of
    int unknown_count;
    int64_t seq;                        //  Its last seq seen
    int64_t subs_made;                  //  Subscriptions made so far (numbers them)
    int64_t replayed;                   //  The current one's seq 1..replayed: the
                                        //  broker's replay of events since last_id
    gw_past_t *history;                 //  GW_EVENTS_HISTORY slots
    int history_head, history_count;
    char last_id [GW_EVENTS_ID_SLOT];   //  The newest event of the history (or the since
                                        //  a stream brought, the history empty), "" none
    char refused_code [64];             //  The broker's last refusal of a SUBSCRIBE,
    char refused [256];                 //  "" since a stream opened or one was made
    pthread_t thread;
    bool thread_started;
};

const char *
gw_events_name (int index)
{
    return index >= 0 && index < (int) (sizeof s_names / sizeof s_names [0]) ? s_names [index] : NULL;
}

static void
s_cond_init (pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (cond, &attr);
    pthread_condattr_destroy (&attr);
}

static void
s_cond_wait_ms (pthread_cond_t *cond, pthread_mutex_t *lock, int64_t ms)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait (cond, lock, &ts);
}

//  Queue an item (taken) for one stream, under the lock.
static void
s_queue (gw_stream_t *stream, char *item)
{
    if (!item)
        return;
    if (stream->count == GW_EVENTS_STREAM_QUEUE) {
        stream->lost++;
        free (item);
        return;
    }
    stream->items [(stream->head + stream->count++) % GW_EVENTS_STREAM_QUEUE] = item;
    pthread_cond_signal (&stream->cond);
}

static char *
s_notice (const char *event, const char *json)
{
    size_t size = strlen (event) + strlen (json) + 32;
    char *item = (char *) malloc (size);
    if (item)
        snprintf (item, size, "event: %s\ndata: %s\n\n", event, json);
    return item;
}

//  A `reset` or `gap` item to every stream, under the lock.
static void
s_broadcast (gw_events_t *self, const char *event, const char *json)
{
    for (gw_stream_t *s = self->streams; s; s = s->next)
        s_queue (s, s_notice (event, json));
}

//  The history forgotten (under the lock): its events no longer follow on
//  from what a Last-Event-ID names.
static void
s_history_clear (gw_events_t *self)
{
    while (self->history_count) {
        free (self->history [self->history_head].text);
        self->history [self->history_head].text = NULL;
        self->history_head = (self->history_head + 1) % GW_EVENTS_HISTORY;
        self->history_count--;
    }
    self->last_id [0] = 0;
}

static void
s_history_add (gw_events_t *self, const char *id, int event, const char *bot_type,
               const char *job_id, const char *text)
{
    char *copy = strdup (text);
    if (!copy) {
        s_history_clear (self);
        return;
    }
    if (self->history_count == GW_EVENTS_HISTORY) {
        free (self->history [self->history_head].text);
        self->history_head = (self->history_head + 1) % GW_EVENTS_HISTORY;
        self->history_count--;
    }
    gw_past_t *past = &self->history [(self->history_head + self->history_count++)
                                      % GW_EVENTS_HISTORY];
    snprintf (past->id, sizeof past->id, "%s", id);
    past->event = event;
    snprintf (past->bot_type, sizeof past->bot_type, "%s", bot_type);
    snprintf (past->job_id, sizeof past->job_id, "%s", job_id);
    past->text = copy;
    snprintf (self->last_id, sizeof self->last_id, "%s", id);
}

//  --------------------------------------------------------------------------
//  From the broker (the link thread)

static void
s_str (const msgpack_object *body, const char *key, char *buf, size_t size)
{
    const msgpack_object *o = bm_obj_get (body, key);
    buf [0] = 0;
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < size) {
        memcpy (buf, o->via.str.ptr, o->via.str.size);
        buf [o->via.str.size] = 0;
    }
}

static bool
s_matches (const gw_stream_t *s, int event, const char *bot_type, const char *job_id)
{
    return (!s->filter.events || (s->filter.events & (1u << event)))
        && (!*s->filter.bot_type || streq (s->filter.bot_type, bot_type))
        && (!*s->filter.job_id || streq (s->filter.job_id, job_id));
}

//  One event of the subscription, under the lock: a `gap` item first when
//  the broker's seq skipped, then text (NULL when no stream wanted it) to
//  each stream it matches; kept in the history when it has an id.
static void
s_deliver (gw_events_t *self, int64_t seq, int event, const char *id, const char *bot_type,
           const char *job_id, const char *text)
{
    if (seq > self->seq + 1) {
        char json [96];
        snprintf (json, sizeof json, "{\"missed\":%" PRId64 ",\"reason\":\"%s\"}",
                  seq - self->seq - 1, self->own_loss ? "gateway" : "broker");
        self->own_loss = false;
        s_broadcast (self, "gap", json);
        s_history_clear (self);         //  A hole: no resuming across it
    }
    if (text && *id)
        s_history_add (self, id, event, bot_type, job_id, text);
    if (seq > self->seq)
        self->seq = seq;
    bool replay = seq <= self->replayed;
    for (gw_stream_t *s = self->streams; text && s; s = s->next)
        if (s_matches (s, event, bot_type, job_id)
        &&  !(replay && s->skip_replay_of == self->subs_made))
            s_queue (s, strdup (text));
}

//  The events held while a new subscription's id was not known yet; a
//  hold a long replay grew goes back to its first size.
static void
s_pending_clear (gw_events_t *self)
{
    for (int i = 0; i < self->pending_count; i++)
        free (self->pending [i].text);
    self->pending_count = 0;
    if (self->pending_size > GW_EVENTS_PENDING) {
        gw_pending_t *small = (gw_pending_t *) realloc (self->pending,
                                                        GW_EVENTS_PENDING * sizeof *small);
        if (small) {
            self->pending = small;
            self->pending_size = GW_EVENTS_PENDING;
        }
    }
}

//  Room for one more pending event (under the lock), the hold grown when
//  full; false past GW_EVENTS_PENDING_MAX or out of memory.
static bool
s_pending_room (gw_events_t *self)
{
    if (self->pending_count < self->pending_size)
        return true;
    if (self->pending_size >= GW_EVENTS_PENDING_MAX)
        return false;
    int size = self->pending_size * 2;
    if (size > GW_EVENTS_PENDING_MAX)
        size = GW_EVENTS_PENDING_MAX;
    gw_pending_t *grown = (gw_pending_t *) realloc (self->pending, size * sizeof *grown);
    if (!grown)
        return false;
    self->pending = grown;
    self->pending_size = size;
    return true;
}

//  True once per event name this gateway does not know (under the lock):
//  a newer broker's event kind is warned of once, not at job rate.
static bool
s_unknown_first (gw_events_t *self, const char *name, int size)
{
    for (int i = 0; i < self->unknown_count; i++)
        if ((int) strlen (self->unknown [i]) == size && memcmp (self->unknown [i], name, size) == 0)
            return false;
    if (self->unknown_count == GW_EVENTS_UNKNOWN_NAMES)
        return false;
    snprintf (self->unknown [self->unknown_count++], sizeof self->unknown [0], "%.*s", size, name);
    return true;
}

//  True when a stream that takes the held event p has a full queue and
//  still reads (under the lock): a replay that began at `began` waits for
//  it.  Not waited for: a stream that skips this subscription's replay
//  (opened without a Last-Event-ID for it), one that lost items already,
//  or one that took none for GW_EVENTS_REPLAY_STALL_MS: a slow reader's
//  overflow is its own `gap slow_reader`, not every stream's wait.
static bool
s_stream_full (gw_events_t *self, const gw_pending_t *p, int64_t began)
{
    bool replay = p->seq <= self->replayed;
    int64_t now = bm_mono_ms ();
    for (gw_stream_t *s = self->streams; s; s = s->next)
        if (s->count == GW_EVENTS_STREAM_QUEUE && !s->lost
        &&  now - (s->took_at > began ? s->took_at : began) < GW_EVENTS_REPLAY_STALL_MS
        &&  !(replay && s->skip_replay_of == self->subs_made)
        &&  s_matches (s, p->event, p->bot_type, p->job_id))
            return true;
    return false;
}

static void
s_on_push (const bm_msg_t *msg, void *arg)
{
    gw_events_t *self = (gw_events_t *) arg;
    const msgpack_object *body = bm_msg_body (msg);
    char sub [64], bot_type [BM_MAX_BOT_TYPE_LEN + 1], job_id [BM_MAX_ID_LEN + 1];
    char id [GW_EVENTS_ID_SLOT];
    s_str (body, "subscription", sub, sizeof sub);
    s_str (body, "id", id, sizeof id);
    s_str (body, "botType", bot_type, sizeof bot_type);
    s_str (body, "jobId", job_id, sizeof job_id);
    const msgpack_object *seq_obj = bm_obj_get (body, "seq");
    int64_t seq = seq_obj && seq_obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                ? (int64_t) seq_obj->via.u64 : 0;
    if (!*sub || seq <= 0)
        return;
    //  The name compared where it lies, whatever its length: an event this
    //  gateway does not know (a newer broker's) is skipped, its seq still
    //  counted, so the next one is no gap.
    const msgpack_object *name_obj = bm_obj_get (body, "event");
    int event = 0;
    while (s_names [event]
    &&    !(name_obj && name_obj->type == MSGPACK_OBJECT_STR
            && strlen (s_names [event]) == name_obj->via.str.size
            && memcmp (s_names [event], name_obj->via.str.ptr, name_obj->via.str.size) == 0))
        event++;
    bool known = s_names [event] != NULL;
    const char *name = known ? s_names [event] : "";
    if (!known) {
        int size = name_obj && name_obj->type == MSGPACK_OBJECT_STR
                 ? (int) (name_obj->via.str.size > 64 ? 64 : name_obj->via.str.size) : 0;
        const char *unknown = size ? name_obj->via.str.ptr : "";
        pthread_mutex_lock (&self->lock);
        bool first = s_unknown_first (self, unknown, size);
        pthread_mutex_unlock (&self->lock);
        if (first)
            bm_warn (*job_id ? job_id : NULL, "event '%.*s' (seq %" PRId64 ") of subscription %s "
                     "skipped: an event name this gateway does not know (told once; the "
                     "next ones at DEBUG)", size, unknown, seq, sub);
        else
            bm_debug (*job_id ? job_id : NULL, "event '%.*s' (seq %" PRId64 ") of subscription "
                      "%s skipped: an event name this gateway does not know", size, unknown,
                      seq, sub);
    }
    //  Ours, or maybe the new subscription's whose id the hub has not
    //  recorded yet; formatted only when a stream wants it, or for the
    //  history when it has an id.
    pthread_mutex_lock (&self->lock);
    bool ours = streq (sub, self->sub_id) || self->subscribing;
    bool wanted = known && *id != 0;
    for (gw_stream_t *s = self->streams; known && ours && s && !wanted; s = s->next)
        wanted = s_matches (s, event, bot_type, job_id);
    pthread_mutex_unlock (&self->lock);
    if (!ours)
        return;
    char *text = NULL;
    json_t *value = wanted ? bm_json_from_msgpack (body, 32) : NULL;
    if (value) {
        json_object_del (value, "subscription");
        char *data = bm_json_dumps (value, JSON_COMPACT);     //  digits as GET /job prints them
        json_decref (value);
        size_t size = data ? strlen (data) + strlen (name) + 64 : 0;
        text = data ? (char *) malloc (size) : NULL;
        if (text && *id)
            snprintf (text, size, "event: %s\nid: %s\ndata: %s\n\n", name, id, data);
        else
        if (text)
            snprintf (text, size, "event: %s\nid: %" PRId64 "\ndata: %s\n\n", name, seq, data);
        free (data);
    }
    pthread_mutex_lock (&self->lock);
    if (streq (sub, self->sub_id) && !self->subscribing)
        s_deliver (self, seq, event, id, bot_type, job_id, text);
    else
    if (self->subscribing && !s_pending_room (self)) {
        if (!self->own_loss)
            bm_warn (*job_id ? job_id : NULL, "event seq %" PRId64 " of subscription %s lost: "
                     "%d events held already while the subscription is made", seq, sub,
                     self->pending_count);
        self->own_loss = true;
    }
    else
    if (self->subscribing) {
        //  Delivered in order once the hub records the subscription (s_thread).
        gw_pending_t *p = &self->pending [self->pending_count++];
        snprintf (p->sub, sizeof p->sub, "%s", sub);
        snprintf (p->id, sizeof p->id, "%s", id);
        snprintf (p->bot_type, sizeof p->bot_type, "%s", bot_type);
        snprintf (p->job_id, sizeof p->job_id, "%s", job_id);
        p->seq = seq;
        p->event = event;
        p->text = text;
        text = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    free (text);
}

//  --------------------------------------------------------------------------
//  The subscription (the hub thread)

//  The `reset` item's data when the broker refuses a new subscription
//  after one was lost.
static void
s_json_refusal (char *json, size_t size, const char *code, const char *message)
{
    char reason [400];
    snprintf (reason, sizeof reason, "the broker refused the gateway's new event subscription "
              "(%s%s%s): events are lost until it takes one; the gateway asks each second",
              code, *message ? ": " : "", message);
    json_t *value = json_pack ("{s:s, s:s}", "reason", reason, "code", code);
    char *text = value ? json_dumps (value, JSON_COMPACT) : NULL;
    snprintf (json, size, "%s", text ? text : "{\"reason\":\"the broker refused the gateway's "
              "new event subscription\"}");
    free (text);
    json_decref (value);
}

//  SUBSCRIBE (renewing id when given, else since the event id since when
//  not "") or UNSUBSCRIBE; the answer or NULL.
static bm_msg_t *
s_ask (gw_events_t *self, int command, const char *id, const char *since)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    int64_t req = gw_link_next_req (self->link);
    bool with_since = command == BM_SUBSCRIBE && !*id && *since;
    msgpack_pack_map (&pk, 1 + (*id != 0) + (command == BM_SUBSCRIBE) + with_since);
    bm_pack_kv_int (&pk, "req", req);
    if (*id)
        bm_pack_kv_str (&pk, "subscription", id);
    if (with_since)
        bm_pack_kv_str (&pk, "since", since);
    if (command == BM_SUBSCRIBE)
        bm_pack_kv_int (&pk, "ttlMs", GW_EVENTS_TTL_MS);
    return gw_link_request (self->link, req, command, sbuf.data, sbuf.size, 5000);
}

static void *
s_thread (void *arg)
{
    gw_events_t *self = (gw_events_t *) arg;
    char id [64] = "";                  //  The subscription the thread holds
    bool lost = false;                  //  One was lost: tell the streams
    int64_t renew_at = 0, connects = 0;
    char warned [300] = "";             //  The failure last logged
    pthread_mutex_lock (&self->lock);
    while (!self->stopping) {
        int64_t now = bm_mono_ms ();
        if (self->count == 0 && *id) {
            self->sub_id [0] = 0;
            pthread_mutex_unlock (&self->lock);
            bm_msg_t *reply = s_ask (self, BM_UNSUBSCRIBE, id, "");
            bm_msg_destroy (&reply);
            bm_debug (NULL, "event subscription %s ended: no stream left", id);
            id [0] = 0;
            lost = false;
            pthread_mutex_lock (&self->lock);
            continue;
        }
        int64_t now_connects = gw_link_connects (self->link);
        if (connects == 0 && now_connects == 1)
            connects = 1;               //  The first handshake, told after the answer
                                        //  that came over it: the same connection
        if (self->count > 0 && *id && now_connects != connects) {
            //  Another connection: the broker's subscription was the old one's.
            bm_info (NULL, "event subscription %s lost with the broker connection", id);
            id [0] = self->sub_id [0] = 0;
            lost = true;
        }
        if (self->count > 0 && (!*id || now >= renew_at)) {
            char asked [64], since [GW_EVENTS_ID_SLOT];
            snprintf (asked, sizeof asked, "%s", id);
            snprintf (since, sizeof since, "%s", self->last_id);
            int64_t before = gw_link_connects (self->link);
            if (!*asked) {
                self->subscribing = true;
                self->own_loss = false;
                s_pending_clear (self);
            }
            pthread_mutex_unlock (&self->lock);
            bm_msg_t *reply = s_ask (self, BM_SUBSCRIBE, asked, since);
            pthread_mutex_lock (&self->lock);
            const msgpack_object *body = reply ? bm_msg_body (reply) : NULL;
            char got [64] = "";
            if (reply && bm_msg_command (reply) == BM_REPLY)
                s_str (body, "subscription", got, sizeof got);
            if (*got) {
                const msgpack_object *seq = bm_obj_get (body, "seq");
                if (!streq (got, id)) {
                    self->seq = seq && seq->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                              ? (int64_t) seq->via.u64 : 0;
                    const msgpack_object *replayed = bm_obj_get (body, "replayed");
                    self->replayed = replayed
                                  && replayed->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                                   ? (int64_t) replayed->via.u64 : 0;
                    self->subs_made++;
                    snprintf (self->sub_id, sizeof self->sub_id, "%s", got);
                    //  Streams waiting for it start reading now, before the
                    //  replay below, which may wait for them to take it
                    pthread_cond_broadcast (&self->cond);
                    //  Since the last event seen, when the broker still had it
                    const msgpack_object *reset = bm_obj_get (body, "reset");
                    bool resumed = *since && streq (since, self->last_id)
                                && reset && reset->type == MSGPACK_OBJECT_BOOLEAN
                                && !reset->via.boolean;
                    bm_info (NULL, "event subscription %s made%s%s%s", got,
                             *since ? " since " : "", since,
                             *since ? (resumed ? ": replayed" : ": not in the broker's "
                                       "history, events in between lost") : "");
                    if (!resumed) {
                        s_history_clear (self);
                        for (gw_stream_t *s = self->streams; s; s = s->next)
                            if ((lost && s->skip_replay_of != self->subs_made)
                            ||  s->resumed)
                                s_queue (s, s_notice ("reset", "{\"reason\":\"the gateway "
                                         "subscribed to the broker anew: events in between "
                                         "are lost\"}"));
                    }
                    for (gw_stream_t *s = self->streams; s; s = s->next)
                        s->resumed = false;
                    lost = false;
                    //  The events held, the broker's replay first, in order; pushes
                    //  meanwhile are held behind them.  A stream whose queue is
                    //  full while its client reads is waited for
                    //  (GW_EVENTS_REPLAY_WAIT_MS in all), so a replay longer than
                    //  its queue reaches a client that reads.
                    int64_t began = bm_mono_ms ();
                    int64_t wait_until = began + GW_EVENTS_REPLAY_WAIT_MS;
                    for (int i = 0; i < self->pending_count && !self->stopping; ) {
                        if (self->pending [i].text && streq (self->pending [i].sub, got)
                        &&  s_stream_full (self, &self->pending [i], began)
                        &&  bm_mono_ms () < wait_until) {
                            s_cond_wait_ms (&self->cond, &self->lock, 100);
                            continue;
                        }
                        gw_pending_t *p = &self->pending [i++];
                        if (streq (p->sub, got))
                            s_deliver (self, p->seq, p->event, p->id, p->bot_type, p->job_id,
                                       p->text);
                        free (p->text);
                        p->text = NULL;
                    }
                }
                snprintf (id, sizeof id, "%s", got);
                self->refused [0] = self->refused_code [0] = 0;
                warned [0] = 0;
                connects = before;
                renew_at = now + GW_EVENTS_TTL_MS / 3;
                pthread_cond_broadcast (&self->cond);       //  Streams waiting for it
            }
            else {
                char code [64] = "", message [200] = "";
                if (reply && bm_msg_command (reply) == BM_REJECTED) {
                    s_str (body, "code", code, sizeof code);
                    s_str (body, "message", message, sizeof message);
                }
                if (!*asked && *since && streq (code, "bad_request")) {
                    //  The broker refused the `since` this gateway took from
                    //  a client: ask again without it, and tell the streams
                    //  that what came before is lost.
                    bm_warn (NULL, "event subscription: the broker refused since=%s (%s); "
                             "subscribing without it", since, message);
                    self->last_id [0] = 0;
                    s_broadcast (self, "reset", "{\"reason\":\"the broker does not know that "
                                 "Last-Event-ID: events since it are lost\"}");
                    self->subscribing = false;
                    s_pending_clear (self);
                    bm_msg_destroy (&reply);
                    continue;
                }
                if (*code && !streq (code, "not_found")) {
                    //  Streams waiting for it answer with it (gw_events_refused)
                    snprintf (self->refused_code, sizeof self->refused_code, "%s", code);
                    snprintf (self->refused, sizeof self->refused, "%s", message);
                    pthread_cond_broadcast (&self->cond);
                }
                char what [300];
                snprintf (what, sizeof what, "%s%s%s", *code ? code : "the broker did not answer",
                          *message ? ": " : "", message);
                //  Once per cause, not once a second while streams wait
                if (!streq (what, warned)) {
                    if (*id)
                        bm_warn (NULL, "event subscription renewal of %s: %s", id, what);
                    else
                    if (!lost || (*code && !streq (code, "not_found")))
                        bm_warn (NULL, "event subscription not made%s: %s",
                                 lost ? " again after a loss" : "", what);
                }
                if (lost && !*id && *code && !streq (code, "not_found")
                &&  !streq (what, warned)) {
                    //  The open streams hear of it (once per cause) while
                    //  the gateway keeps asking, each second
                    char json [600];
                    s_json_refusal (json, sizeof json, code, message);
                    s_broadcast (self, "reset", json);
                }
                snprintf (warned, sizeof warned, "%s", what);
                if (*id)
                    lost = true;
                id [0] = self->sub_id [0] = 0;
                renew_at = 0;
                if (!streq (code, "not_found"))
                    s_cond_wait_ms (&self->cond, &self->lock, 1000);
            }
            self->subscribing = false;
            s_pending_clear (self);
            bm_msg_destroy (&reply);
            continue;
        }
        s_cond_wait_ms (&self->cond, &self->lock, 250);
    }
    pthread_mutex_unlock (&self->lock);
    if (*id) {
        bm_msg_t *reply = s_ask (self, BM_UNSUBSCRIBE, id, "");
        bm_msg_destroy (&reply);
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  The API

gw_events_t *
gw_events_new (gw_link_t *link, int max_streams)
{
    gw_events_t *self = (gw_events_t *) calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->link = link;
    self->max_streams = max_streams;
    self->pending = (gw_pending_t *) calloc (GW_EVENTS_PENDING, sizeof *self->pending);
    self->pending_size = GW_EVENTS_PENDING;
    self->history = (gw_past_t *) calloc (GW_EVENTS_HISTORY, sizeof *self->history);
    if (!self->pending || !self->history) {
        free (self->pending);
        free (self->history);
        free (self);
        return NULL;
    }
    pthread_mutex_init (&self->lock, NULL);
    s_cond_init (&self->cond);
    gw_link_set_push (link, s_on_push, self);
    if (pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        gw_link_set_push (link, NULL, NULL);
        pthread_mutex_destroy (&self->lock);
        pthread_cond_destroy (&self->cond);
        free (self->pending);
        free (self->history);
        free (self);
        return NULL;
    }
    self->thread_started = true;
    return self;
}

void
gw_events_destroy (gw_events_t **self_p)
{
    gw_events_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stopping = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
    if (self->thread_started)
        pthread_join (self->thread, NULL);
    gw_link_set_push (self->link, NULL, NULL);
    s_pending_clear (self);
    s_history_clear (self);
    free (self->pending);
    free (self->history);
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->cond);
    free (self);
    *self_p = NULL;
}

//  A stream opened with last_id (under the lock): the events of the
//  history after it, or a `reset` when the history does not reach back to
//  it.  With no history and no subscription, last_id is what the next
//  subscription asks the broker for.
//  True if id has the shape of the broker's event ids, "<hex epoch>-<n>"
//  (docs/protocol.md): only such an id may go to the broker as `since`.
//  Anything else (a numeric id an older gateway gave, a typo) would be
//  refused there, and with it every subscription that carried it.
static bool
s_broker_id_shape (const char *id)
{
    const char *dash = strchr (id, '-');
    size_t length = strlen (id);
    if (!dash || dash == id || length >= GW_EVENTS_ID_SLOT || length > 39)
        return false;
    for (const char *c = id; c < dash; c++)
        if (!isxdigit ((unsigned char) *c))
            return false;
    size_t digits = strlen (dash + 1);
    if (digits < 1 || digits > 19)
        return false;
    for (const char *c = dash + 1; *c; c++)
        if (!isdigit ((unsigned char) *c))
            return false;
    return true;
}

static void
s_resume (gw_events_t *self, gw_stream_t *stream, const char *last_id)
{
    stream->resumed = true;
    if (!self->history_count && !*self->last_id && !*self->sub_id && self->count == 1
    &&  s_broker_id_shape (last_id)) {
        snprintf (self->last_id, sizeof self->last_id, "%s", last_id);
        return;
    }
    int i = self->history_count - 1;
    while (i >= 0 && !streq (self->history [(self->history_head + i) % GW_EVENTS_HISTORY].id,
                             last_id))
        i--;
    if (i < 0 && !streq (last_id, self->last_id)) {
        stream->resumed = false;
        s_queue (stream, s_notice ("reset", "{\"reason\":\"Last-Event-ID is not in the gateway's "
                                   "history of events: events since it are lost\"}"));
        return;
    }
    for (i = i < 0 ? self->history_count : i + 1; i < self->history_count; i++) {
        const gw_past_t *past = &self->history [(self->history_head + i) % GW_EVENTS_HISTORY];
        if (s_matches (stream, past->event, past->bot_type, past->job_id))
            s_queue (stream, strdup (past->text));
    }
}

gw_stream_t *
gw_events_open (gw_events_t *self, const gw_events_filter_t *filter, const char *last_id)
{
    gw_stream_t *stream = (gw_stream_t *) calloc (1, sizeof *stream);
    if (!stream)
        return NULL;
    stream->filter = *filter;
    stream->socket = -1;
    s_cond_init (&stream->cond);
    pthread_mutex_lock (&self->lock);
    if (self->count >= self->max_streams) {
        pthread_mutex_unlock (&self->lock);
        pthread_cond_destroy (&stream->cond);
        free (stream);
        return NULL;
    }
    stream->next = self->streams;
    self->streams = stream;
    self->count++;
    if (last_id && *last_id)
        s_resume (self, stream, last_id);
    else
        //  New events only: not the replay of the subscription made for it
        //  (the events since the last one the hub saw), nor the rest of the
        //  current one's
        stream->skip_replay_of = self->subs_made + !*self->sub_id;
    self->refused [0] = self->refused_code [0] = 0;     //  Asked again for this one
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
    return stream;
}

bool
gw_events_wait_ready (gw_events_t *self, gw_stream_t *stream, int64_t timeout_ms)
{
    (void) stream;
    int64_t deadline = bm_mono_ms () + timeout_ms;
    pthread_mutex_lock (&self->lock);
    while (!self->sub_id [0] && !self->refused_code [0] && !self->waking
    &&     bm_mono_ms () < deadline)
        s_cond_wait_ms (&self->cond, &self->lock, deadline - bm_mono_ms ());
    bool ready = self->sub_id [0] != 0 && !self->waking;
    pthread_mutex_unlock (&self->lock);
    return ready;
}

char *
gw_events_next (gw_events_t *self, gw_stream_t *stream, int64_t timeout_ms)
{
    char *item = NULL;
    pthread_mutex_lock (&self->lock);
    if (!stream->count && !stream->lost && !self->waking)
        s_cond_wait_ms (&stream->cond, &self->lock, timeout_ms);
    if (stream->lost && stream->count < GW_EVENTS_STREAM_QUEUE) {
        char json [96];
        snprintf (json, sizeof json, "{\"missed\":%" PRId64 ",\"reason\":\"slow_reader\"}",
                  stream->lost);
        stream->lost = 0;
        //  Told after what the queue holds, where the loss happened
        s_queue (stream, s_notice ("gap", json));
    }
    if (stream->count && !self->waking) {
        item = stream->items [stream->head];
        stream->head = (stream->head + 1) % GW_EVENTS_STREAM_QUEUE;
        stream->took_at = bm_mono_ms ();
        if (stream->count-- == GW_EVENTS_STREAM_QUEUE && self->subscribing)
            pthread_cond_broadcast (&self->cond);       //  A replay waiting for room
    }
    pthread_mutex_unlock (&self->lock);
    return item;
}

void
gw_events_close (gw_events_t *self, gw_stream_t **stream_p)
{
    gw_stream_t *stream = *stream_p;
    if (!stream)
        return;
    pthread_mutex_lock (&self->lock);
    for (gw_stream_t **p = &self->streams; *p; p = &(*p)->next)
        if (*p == stream) {
            *p = stream->next;
            self->count--;
            break;
        }
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
    while (stream->count) {
        free (stream->items [stream->head]);
        stream->head = (stream->head + 1) % GW_EVENTS_STREAM_QUEUE;
        stream->count--;
    }
    pthread_cond_destroy (&stream->cond);
    free (stream);
    *stream_p = NULL;
}

void
gw_events_wake_all (gw_events_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->waking = true;
    for (gw_stream_t *s = self->streams; s; s = s->next)
        pthread_cond_broadcast (&s->cond);
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

void
gw_events_set_socket (gw_events_t *self, gw_stream_t *stream, int socket)
{
    pthread_mutex_lock (&self->lock);
    stream->socket = socket;
    pthread_mutex_unlock (&self->lock);
}

int
gw_events_cut_all (gw_events_t *self)
{
    //  Under the lock: a stream in the list has not been closed, so its
    //  handler has not returned and civetweb has not closed its socket.
    int cut = 0;
    pthread_mutex_lock (&self->lock);
    for (gw_stream_t *s = self->streams; s; s = s->next)
        if (s->socket >= 0) {
            shutdown (s->socket, SHUT_RDWR);
            s->socket = -1;
            cut++;
        }
    pthread_mutex_unlock (&self->lock);
    return cut;
}

bool
gw_events_refused (gw_events_t *self, char *code, size_t code_size, char *message,
                   size_t message_size)
{
    pthread_mutex_lock (&self->lock);
    bool refused = self->refused_code [0] != 0;
    snprintf (code, code_size, "%s", self->refused_code);
    snprintf (message, message_size, "%s", self->refused);
    pthread_mutex_unlock (&self->lock);
    return refused;
}

int
gw_events_streams (gw_events_t *self)
{
    pthread_mutex_lock (&self->lock);
    int count = self->count;
    pthread_mutex_unlock (&self->lock);
    return count;
}

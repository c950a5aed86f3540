/*  bm_sentinel_watch.c - a subscription to the sentinels' +switch-master,
    asynchronous, on the caller's zloop.

    A subscribed connection is quiet until a switch: a sentinel that stops
    answering (frozen, or cut off by a partition that keeps the TCP
    connection open) would go unnoticed, and its switches with it.  So
    every S_CHECK_MS the subscription is asked again (SUBSCRIBE of the same
    channel, which a live sentinel confirms at once); no confirmation
    within S_SUBSCRIBE_MS and the next sentinel is tried.  A sentinel named
    by host name is resolved off the loop first (bm_resolve_zloop), given
    up on after BM_RESOLVE_WAIT_MS: hiredis would resolve it in the loop's
    thread, for as long as the resolver waits.  */
#include "bm_sentinel.h"
#include "bm_endpoints.h"
#include "bm_log.h"
#include "bm_redis_zloop.h"
#include "bm_resolve.h"
#include "bm_resolve_zloop.h"

#include <hiredis/async.h>

#define S_SUBSCRIBE_MS      1000    //  A sentinel must confirm the subscription within
#define S_CHECK_MS          2000    //  How often a subscribed sentinel must confirm it again
#define S_BACKOFF_MIN_MS    100
#define S_BACKOFF_MAX_MS    5000

struct _bm_sentinel_watch_t {
    zloop_t *loop;
    bm_endpoints_t *list;       //  The sentinels; current = the one we use
    char *name;                 //  The master watched
    bm_sentinel_switch_fn *fn;
    void *arg;
    bm_resolve_zloop_t *resolver;   //  Resolves the current sentinel's host name
    int port;                   //  The current sentinel's port
    redisAsyncContext *ac;      //  Connection to the current sentinel, or NULL
    bm_redis_zloop_t io;        //  Drives ac from the loop
    int timer;                  //  Reconnect or subscribe deadline, or -1
    int check_timer;            //  Every S_CHECK_MS: ask for a confirmation
    int backoff_ms;
    bool subscribed;
    bool confirming;            //  The deadline is a confirmation's
    bool down_logged;           //  One WARN line until subscribed again
};

static void s_connect (bm_sentinel_watch_t *self);

//  --------------------------------------------------------------------------
//  Connection life

static int s_on_timer (zloop_t *loop, int timer_id, void *arg);

//  Move on to the next sentinel, connected to after the backoff, which
//  doubles for the time after.
static void
s_next_later (bm_sentinel_watch_t *self)
{
    bm_endpoints_next (self->list, false);
    self->timer = zloop_timer (self->loop, self->backoff_ms, 1, s_on_timer, self);
    self->backoff_ms = self->backoff_ms * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS
                                                              : self->backoff_ms * 2;
}

static int
s_on_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) arg;
    self->timer = -1;
    if (self->ac) {
        //  The subscribe deadline passed: drop this sentinel.  Freeing it
        //  here calls no callback of ours that matters (ac is no longer
        //  self->ac when they run).
        redisAsyncContext *ac = self->ac;
        self->ac = NULL;
        redisAsyncFree (ac);
        if (self->confirming)
            bm_warn (NULL, "sentinel %s: silent (its +switch-master subscription not confirmed "
                     "within %d ms); trying the next sentinel", bm_endpoints_current (self->list),
                     S_SUBSCRIBE_MS);
        else
        if (!self->down_logged)
            bm_warn (NULL, "sentinel %s: no +switch-master subscription within %d ms; trying "
                     "the next sentinel with backoff", bm_endpoints_current (self->list),
                     S_SUBSCRIBE_MS);
        self->down_logged = true;
        self->subscribed = false;
        self->confirming = false;
        s_next_later (self);
    }
    else
        s_connect (self);
    return 0;
}

//  The connection to the current sentinel is gone (ac freed by hiredis):
//  try the next one after the backoff.
static void
s_lost (bm_sentinel_watch_t *self, const char *why)
{
    const char *which = bm_endpoints_current (self->list);
    self->ac = NULL;
    self->subscribed = false;
    self->confirming = false;
    if (self->timer != -1) {
        zloop_timer_end (self->loop, self->timer);
        self->timer = -1;
    }
    if (!self->down_logged)
        bm_warn (NULL, "sentinel %s: +switch-master subscription lost (%s); trying the next "
                 "sentinel with backoff", which, why);
    self->down_logged = true;
    s_next_later (self);
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) ac->data;
    if (status != REDIS_OK && ac == self->ac)
        s_lost (self, ac->errstr);
}

static void
s_on_disconnect (const redisAsyncContext *ac, int status)
{
    (void) status;
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) ac->data;
    if (ac == self->ac)
        s_lost (self, ac->errstr [0] ? ac->errstr : "connection closed");
}

static bool
s_is (const redisReply *reply, const char *word)
{
    return reply->type == REDIS_REPLY_STRING && strlen (word) == reply->len
        && memcmp (reply->str, word, reply->len) == 0;
}

static void
s_on_message (redisAsyncContext *ac, void *r, void *privdata)
{
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (!reply || ac != self->ac)
        return;                 //  Connection gone: s_on_disconnect handles it
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        bm_warn (NULL, "sentinel %s: unexpected answer to SUBSCRIBE +switch-master (%s)",
                 bm_endpoints_current (self->list),
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "not a message");
        return;
    }
    if (s_is (reply->element [0], "subscribe") && self->confirming) {
        //  Still there
        self->confirming = false;
        if (self->timer != -1) {
            zloop_timer_end (self->loop, self->timer);
            self->timer = -1;
        }
        return;
    }
    if (s_is (reply->element [0], "subscribe")) {
        self->subscribed = true;
        self->backoff_ms = S_BACKOFF_MIN_MS;
        if (self->timer != -1) {
            zloop_timer_end (self->loop, self->timer);
            self->timer = -1;
        }
        bm_endpoints_served (self->list);
        bm_info (NULL, "sentinel %s: following +switch-master for '%s'",
                 bm_endpoints_current (self->list), self->name);
        self->down_logged = false;
        return;
    }
    if (!s_is (reply->element [0], "message") || reply->element [2]->type != REDIS_REPLY_STRING)
        return;
    bm_sentinel_switch_t sw;
    if (bm_sentinel_parse_switch (reply->element [2]->str, reply->element [2]->len, &sw)) {
        bm_warn (NULL, "sentinel %s: malformed +switch-master message ignored: '%.*s'",
                 bm_endpoints_current (self->list),
                 (int) (reply->element [2]->len > 200 ? 200 : reply->element [2]->len),
                 reply->element [2]->str);
        return;
    }
    if (strcmp (sw.name, self->name)) {
        bm_debug (NULL, "sentinel %s: +switch-master for master '%s' ignored (we follow '%s')",
                  bm_endpoints_current (self->list), sw.name, self->name);
        return;
    }
    self->fn (&sw, self->arg);
}

//  The current sentinel cannot be reached (why): the next one after the
//  backoff.
static void
s_cannot_connect (bm_sentinel_watch_t *self, const char *why)
{
    if (!self->down_logged)
        bm_warn (NULL, "sentinel %s: cannot connect (%s); trying the next sentinel with "
                 "backoff", bm_endpoints_current (self->list), why);
    self->down_logged = true;
    s_next_later (self);
}

//  Connect to the current sentinel at addr (numeric) and subscribe.
static void
s_connect_to (bm_sentinel_watch_t *self, const char *addr)
{
    redisAsyncContext *ac = redisAsyncConnect (addr, self->port);
    if (!ac || ac->err) {
        s_cannot_connect (self, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree (ac);
        return;
    }
    ac->data = self;
    self->ac = ac;
    bm_redis_zloop_attach (&self->io, ac);
    redisAsyncSetConnectCallback (ac, s_on_connect);
    redisAsyncSetDisconnectCallback (ac, s_on_disconnect);
    redisAsyncCommand (ac, s_on_message, self, "SUBSCRIBE +switch-master");
    //  A sentinel that neither answers nor refuses (a partition) is
    //  dropped after S_SUBSCRIBE_MS.
    self->timer = zloop_timer (self->loop, S_SUBSCRIBE_MS, 1, s_on_timer, self);
}

//  The current sentinel's name resolved (connect to it), or not (the next).
static void
s_on_resolved (int rc, const char *addr, const char *why, void *arg)
{
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) arg;
    if (rc == 0)
        s_connect_to (self, addr);
    else
        s_cannot_connect (self, why);
}

//  Connect to the current sentinel; a host name is resolved first.
static void
s_connect (bm_sentinel_watch_t *self)
{
    const char *one = bm_endpoints_current (self->list);
    char host [256], why [256];
    if (bm_sentinel_parse_addr (one, strlen (one), host, sizeof host, &self->port))
        s_cannot_connect (self, "not host:port");
    else
    if (bm_resolve_numeric (host))
        s_connect_to (self, host);
    else
    if (bm_resolve_zloop_start (self->resolver, host, why, sizeof why))
        s_cannot_connect (self, why);
}

//  Every S_CHECK_MS: a subscribed sentinel confirms its subscription again.
static int
s_on_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) arg;
    if (self->ac && self->subscribed && self->timer == -1
    &&  redisAsyncCommand (self->ac, s_on_message, self, "SUBSCRIBE +switch-master") == REDIS_OK) {
        self->confirming = true;
        self->timer = zloop_timer (self->loop, S_SUBSCRIBE_MS, 1, s_on_timer, self);
    }
    return 0;
}

//  --------------------------------------------------------------------------

int
bm_sentinel_parse_switch (const char *msg, size_t len, bm_sentinel_switch_t *out)
{
    //  Five fields separated by single spaces.
    const char *field [5];
    size_t size [5];
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || msg [i] == ' ') {
            if (i == start || count == 5)
                return -1;
            field [count] = msg + start;
            size [count++] = i - start;
            start = i + 1;
        }
        else
        if (msg [i] == '\0' || msg [i] == '\r' || msg [i] == '\n')
            return -1;
    }
    if (count != 5 || size [0] >= sizeof out->name
    ||  size [1] >= sizeof out->old_host || size [3] >= sizeof out->new_host)
        return -1;
    int ports [2];
    for (int k = 0; k < 2; k++) {
        const char *digits = field [2 + 2 * k];
        size_t n = size [2 + 2 * k];
        long value = 0;
        if (n > 5)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (digits [i] < '0' || digits [i] > '9')
                return -1;
            value = value * 10 + (digits [i] - '0');
        }
        if (value < 1 || value > 65535)
            return -1;
        ports [k] = (int) value;
    }
    memcpy (out->name, field [0], size [0]);
    out->name [size [0]] = 0;
    memcpy (out->old_host, field [1], size [1]);
    out->old_host [size [1]] = 0;
    memcpy (out->new_host, field [3], size [3]);
    out->new_host [size [3]] = 0;
    out->old_port = ports [0];
    out->new_port = ports [1];
    return 0;
}

bm_sentinel_watch_t *
bm_sentinel_watch_new (zloop_t *loop, const char *sentinels, const char *name,
                       bm_sentinel_switch_fn *fn, void *arg)
{
    bm_endpoints_t *list = bm_endpoints_new (sentinels);
    if (!list)
        return NULL;
    bm_sentinel_watch_t *self = (bm_sentinel_watch_t *) zmalloc (sizeof (bm_sentinel_watch_t));
    self->loop = loop;
    self->resolver = bm_resolve_zloop_new (loop, BM_RESOLVE_WAIT_MS, s_on_resolved, self);
    bm_redis_zloop_init (&self->io, loop, &self->ac, NULL, NULL);
    self->list = list;
    self->name = strdup (name ? name : BM_SENTINEL_DEFAULT_MASTER);
    self->fn = fn;
    self->arg = arg;
    self->timer = -1;
    self->backoff_ms = S_BACKOFF_MIN_MS;
    self->check_timer = zloop_timer (loop, S_CHECK_MS, 0, s_on_check, self);
    s_connect (self);
    return self;
}

void
bm_sentinel_watch_destroy (bm_sentinel_watch_t **self_p)
{
    if (*self_p) {
        bm_sentinel_watch_t *self = *self_p;
        if (self->timer != -1)
            zloop_timer_end (self->loop, self->timer);
        if (self->check_timer != -1)
            zloop_timer_end (self->loop, self->check_timer);
        bm_resolve_zloop_destroy (&self->resolver);
        if (self->ac) {
            redisAsyncContext *ac = self->ac;
            self->ac = NULL;
            redisAsyncFree (ac);
        }
        bm_endpoints_destroy (&self->list);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

bool
bm_sentinel_watch_subscribed (bm_sentinel_watch_t *self)
{
    return self->subscribed;
}

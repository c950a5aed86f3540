/*  gw_history.c - metric snapshots from Redis for GET /api/history.  */
#include "gw_history.h"
#include "bm_sentinel.h"
#include "bm_redis_setup.h"
#include "bm_resolve.h"
#include "bm_selftest.h"
#include "bm_config.h"
#include "bm_log.h"

#include <czmq.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <strings.h>

struct _gw_history_watch_t {
    zactor_t *actor;            //  Runs the subscription's loop
    char *sentinels;
    char *name;
    atomic_uint switches;       //  +switch-master messages for our master
};

struct _gw_history_t {
    bm_redis_url_t url;         //  Where Redis is
    char *key;                  //  <prefix>{bm}:snapshots
    int timeout_ms;             //  Connect and command timeout
    redisContext *redis;        //  Our connection, or NULL
    char *sentinels;            //  REDIS_SENTINELS, or NULL
    char *master_name;          //  REDIS_MASTER_NAME
    int64_t next_try_ms;        //  No connection attempt before this (mono)
    gw_history_watch_t *watch;  //  Borrowed, or NULL
    unsigned switches;          //  The watch's count when we connected
    bool refusal_logged;        //  Redis refused AUTH or SELECT, said once
};

void
gw_history_set_sentinels (gw_history_t *self, const char *sentinels, const char *name,
                          gw_history_watch_t *watch)
{
    self->watch = watch;
    free (self->sentinels);
    free (self->master_name);
    self->sentinels = sentinels ? strdup (sentinels) : NULL;
    self->master_name = strdup (name ? name : BM_SENTINEL_DEFAULT_MASTER);
}

gw_history_t *
gw_history_new (const bm_redis_url_t *url, const char *prefix, int timeout_ms)
{
    gw_history_t *self = (gw_history_t *) zmalloc (sizeof (gw_history_t));
    self->url = *url;
    self->key = zsys_sprintf ("%s{bm}:snapshots", prefix ? prefix : "");
    self->timeout_ms = timeout_ms;
    return self;
}

void
gw_history_destroy (gw_history_t **self_p)
{
    if (*self_p) {
        gw_history_t *self = *self_p;
        if (self->redis)
            redisFree (self->redis);
        zstr_free (&self->key);
        free (self->sentinels);
        free (self->master_name);
        free (self);
        *self_p = NULL;
    }
}

//  Send AUTH or SELECT (command, for messages): true when Redis took it.
//  Its refusal goes to refused; no answer leaves refused as it is.
static bool
s_setup (gw_history_t *self, const char *command, char *refused, size_t refused_size,
         const char *format, ...)
{
    va_list args;
    va_start (args, format);
    redisReply *reply = (redisReply *) redisvCommand (self->redis, format, args);
    va_end (args);
    bool taken = reply && !bm_redis_setup_refused (reply, self->url.host, self->url.port,
                                                   command, refused, refused_size);
    freeReplyObject (reply);
    return taken;
}

//  Make sure we hold a working connection.  0 or -1.
static int
s_connect (gw_history_t *self)
{
    if (self->redis && !self->redis->err && self->watch
    &&  gw_history_watch_switches (self->watch) != self->switches) {
        //  The master moved since we connected: ask the sentinels again.
        bm_debug (NULL, "history: the Redis master switched; reconnecting");
        redisFree (self->redis);
        self->redis = NULL;
        self->next_try_ms = 0;
    }
    if (self->redis && !self->redis->err)
        return 0;
    if (self->redis) {
        redisFree (self->redis);
        self->redis = NULL;
    }
    if (bm_mono_ms () < self->next_try_ms)
        return -1;
    if (self->watch)
        self->switches = gw_history_watch_switches (self->watch);
    if (self->sentinels) {
        char why [512];
        if (bm_sentinel_master (self->sentinels, self->master_name, self->timeout_ms,
                                self->url.host, sizeof self->url.host, &self->url.port,
                                why, sizeof why)) {
            bm_warn (NULL, "history: no Redis master from the sentinels (%s)", why);
            self->next_try_ms = bm_mono_ms () + 1000;
            return -1;
        }
    }
    //  hiredis's connect timeout does not cover the name's lookup, which
    //  would hold this request's thread for the resolver's own timeouts.
    char addr [64], why [256];
    if (bm_resolve_wait (self->url.host, self->timeout_ms, addr, sizeof addr, why, sizeof why)) {
        bm_warn (NULL, "history: cannot reach Redis at %s:%d: %s; tried again at a later GET "
                 "/api/history (at most every %d ms)", self->url.host, self->url.port, why,
                 GW_HISTORY_RETRY_MS);
        self->next_try_ms = bm_mono_ms () + GW_HISTORY_RETRY_MS;
        return -1;
    }
    struct timeval tv = { self->timeout_ms / 1000, (self->timeout_ms % 1000) * 1000 };
    self->redis = redisConnectWithTimeout (addr, self->url.port, tv);
    char refused [400] = "", select [32];
    const char *command = NULL;         //  The one Redis refused
    snprintf (select, sizeof select, "SELECT %d", self->url.db);
    if (self->redis && !self->redis->err && redisSetTimeout (self->redis, tv) == REDIS_OK) {
        bool ok = true;
        if (*self->url.password && !(ok = s_setup (self, "AUTH", refused, sizeof refused,
                                                   "AUTH %s", self->url.password)))
            command = "AUTH";
        if (ok && self->url.db && !(ok = s_setup (self, select, refused, sizeof refused,
                                                  "SELECT %d", self->url.db)))
            command = select;
        if (ok) {
            self->refusal_logged = false;
            return 0;
        }
    }
    //  A refused AUTH or SELECT: never read another database instead.
    if (command && *refused) {
        if (!self->refusal_logged)
            bm_error (NULL, "history: %s: check %s; GET /api/history answers 503 until Redis "
                      "takes it", refused, bm_redis_setup_var (command));
        else
            bm_debug (NULL, "history: %s", refused);
        self->refusal_logged = true;
    }
    else
        bm_warn (NULL, "history: cannot reach Redis at %s:%d%s%s; tried again at a later GET "
                 "/api/history (at most every %d ms)", self->url.host, self->url.port,
                 self->redis && *self->redis->errstr ? ": " : "",
                 self->redis ? self->redis->errstr : "", GW_HISTORY_RETRY_MS);
    if (self->redis) {
        redisFree (self->redis);
        self->redis = NULL;
    }
    self->next_try_ms = bm_mono_ms () + GW_HISTORY_RETRY_MS;
    return -1;
}

json_t *
gw_history_fetch (gw_history_t *self, int limit)
{
    if (limit < 1)
        limit = 1;
    if (limit > GW_HISTORY_MAX_LIMIT)
        limit = GW_HISTORY_MAX_LIMIT;
    redisReply *reply = NULL;
    //  A connection kept from earlier may have died with Redis (restart):
    //  then the first command fails and one fresh connection is tried.
    for (int attempt = 0; attempt < 2 && !reply; attempt++) {
        if (s_connect (self))
            return NULL;
        reply = (redisReply *) redisCommand (self->redis, "LRANGE %s 0 %d", self->key, limit - 1);
        if (!reply) {
            redisFree (self->redis);
            self->redis = NULL;
        }
    }
    if (!reply)
        return NULL;
    if (reply->type != REDIS_REPLY_ARRAY) {
        freeReplyObject (reply);
        return NULL;
    }
    json_t *snapshots = json_array ();
    //  Newest first in Redis; the answer is oldest first, for charts.
    for (size_t i = reply->elements; i-- > 0;) {
        redisReply *item = reply->element [i];
        if (item->type != REDIS_REPLY_STRING)
            continue;
        json_t *value = json_loadb (item->str, item->len, 0, NULL);
        if (value)
            json_array_append_new (snapshots, value);
    }
    freeReplyObject (reply);
    return json_pack ("{s:o}", "snapshots", snapshots);
}

//  --------------------------------------------------------------------------
//  The +switch-master watch

static void
s_on_switch (const bm_sentinel_switch_t *sw, void *arg)
{
    gw_history_watch_t *self = (gw_history_watch_t *) arg;
    bm_info (NULL, "history: +switch-master '%s' %s:%d -> %s:%d; Redis readers reconnect",
             sw->name, sw->old_host, sw->old_port, sw->new_host, sw->new_port);
    atomic_fetch_add (&self->switches, 1);
}

static int
s_on_pipe (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void) loop; (void) arg;
    char *command = zstr_recv (pipe);
    bool term = !command || streq (command, "$TERM");
    zstr_free (&command);
    return term ? -1 : 0;
}

static void
s_watch_actor (zsock_t *pipe, void *args)
{
    gw_history_watch_t *self = (gw_history_watch_t *) args;
    zloop_t *loop = zloop_new ();
    bm_sentinel_watch_t *watch = bm_sentinel_watch_new (loop, self->sentinels, self->name,
                                                        s_on_switch, self);
    zloop_reader (loop, pipe, s_on_pipe, NULL);
    zsock_signal (pipe, 0);
    zloop_start (loop);
    bm_sentinel_watch_destroy (&watch);
    zloop_destroy (&loop);
}

gw_history_watch_t *
gw_history_watch_new (const char *sentinels, const char *name)
{
    if (!sentinels || !bm_sentinel_list_valid (sentinels))
        return NULL;
    gw_history_watch_t *self = (gw_history_watch_t *) zmalloc (sizeof (gw_history_watch_t));
    self->sentinels = strdup (sentinels);
    self->name = strdup (name ? name : BM_SENTINEL_DEFAULT_MASTER);
    atomic_init (&self->switches, 0);
    self->actor = zactor_new (s_watch_actor, self);
    if (!self->actor) {
        gw_history_watch_destroy (&self);
        return NULL;
    }
    return self;
}

void
gw_history_watch_destroy (gw_history_watch_t **self_p)
{
    if (*self_p) {
        gw_history_watch_t *self = *self_p;
        zactor_destroy (&self->actor);
        free (self->sentinels);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

unsigned
gw_history_watch_switches (gw_history_watch_t *self)
{
    return atomic_load (&self->switches);
}

//  --------------------------------------------------------------------------
//  Self test (fetching from a live Redis is covered by the black-box tests)

#define CHECK(cond) BM_CHECK (cond)

void
gw_history_test (bool verbose)
{
    if (verbose)
        printf (" * gw_history: ");
    bm_redis_url_t url;
    //  Nothing listens on port 1: fetch answers NULL quickly, twice.
    CHECK (bm_redis_url_parse ("redis://127.0.0.1:1", &url) == 0);
    gw_history_t *history = gw_history_new (&url, "p:", 200);
    CHECK (gw_history_fetch (history, 10) == NULL);
    CHECK (gw_history_fetch (history, 10) == NULL);
    gw_history_destroy (&history);
    CHECK (history == NULL);

    //  A watch on sentinels nobody runs: no switch, and it stops cleanly.
    CHECK (gw_history_watch_new ("not a list", "m") == NULL);
    gw_history_watch_t *watch = gw_history_watch_new ("127.0.0.1:1", "m");
    CHECK (watch && gw_history_watch_switches (watch) == 0);
    history = gw_history_new (&url, "p:", 200);
    gw_history_set_sentinels (history, "127.0.0.1:1", "m", watch);
    CHECK (gw_history_fetch (history, 10) == NULL);
    gw_history_destroy (&history);
    gw_history_watch_destroy (&watch);
    CHECK (watch == NULL);

    if (verbose)
        printf ("OK\n");
}

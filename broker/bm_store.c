/*  bm_store.c - the broker's Redis connection, asynchronous, on its zloop.  */
#include "bm_store.h"
#include "bm_config.h"
#include "bm_store_group.h"
#include "bm_redis_url.h"
#include "bm_redis_setup.h"
#include "bm_log.h"
#include "bm_sentinel.h"
#include "bm_redis_zloop.h"
#include "bm_resolve.h"
#include "bm_resolve_zloop.h"

#include <hiredis/async.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

//  Under REDIS_SENTINELS, how long each sentinel has to take the connection
//  and say where the master is, before the next one is asked: a sentinel
//  on a live host answers in a millisecond or two; one frozen or behind a
//  partition costs this much of each reconnect (the loop serves on).
#define STORE_SENTINEL_TIMEOUT_MS 300

//  A read, sent on its own.
typedef struct {
    bm_store_fn *fn;
    void *arg;
} s_query_t;

struct _bm_store_t {
    zloop_t *loop;              //  The broker's loop
    char *host;                 //  Redis host
    int port;                   //  Redis port
    int db;                     //  Database number
    char *password;             //  AUTH password or NULL
    redisAsyncContext *ac;      //  Live connection, or NULL
    bool connected;             //  Connect callback said yes
    bm_redis_zloop_t io;        //  Drives ac from the loop
    bm_store_group_t *open;            //  Writes of this loop turn, or NULL
    bm_store_group_t *waiting;         //  Durable writes waiting for a connection
    bm_store_group_t *lost;            //  Writes lost in flight, in order
    size_t buffer_max;          //  Bound on waiting + lost
    size_t in_flight;           //  Writes sent, not answered
    size_t last_group_size;     //  Bytes of the last group sent (a size hint)
    int backoff_ms;             //  Next reconnect delay
    int reconnect_timer;        //  zloop timer id, or -1
    bm_resolve_zloop_t *resolver;   //  Resolves the host's name, off the loop
    bool outage_logged;         //  One log line per outage
    bool loading_logged;        //  One log line while Redis loads
    bool setup_refused;         //  Redis refused this connection's AUTH or
                                //  SELECT: never used, dropped
    bool setup_logged;          //  One log line per outage for a refusal
    int ping_timer;             //  Readiness re-check, or -1
    bm_store_state_fn *state_fn;
    void *state_arg;
    bm_store_flush_fn *flush_fn;    //  Hook run before each flush
    void *flush_arg;
    bool flushing;              //  In the hook (no recursion)
    bool destroying;            //  In bm_store_destroy
    char *fence_key;            //  Fencing: the epoch counter's key, or NULL
    char *fence_epoch;          //  The epoch every group requires
    bool fenced;                //  A group found another epoch: no more writes
    bool closed;                //  bm_store_close_writes: no more writes
    size_t closed_refused;      //  Writes refused since
    bm_store_fenced_fn *fenced_fn;
    void *fenced_arg;
    char *sentinels;            //  REDIS_SENTINELS, or NULL
    char *master_name;          //  REDIS_MASTER_NAME
    bm_sentinel_watch_t *watch; //  +switch-master subscription, or NULL
    bm_sentinel_lookup_t *lookup;   //  Asks the sentinels where the master is, or NULL
    const char *dropping;       //  Why we are dropping the connection, or NULL
    int timeout_ms;             //  Bound on Redis's silence (0: none)
    int watchdog_timer;         //  Checks that bound, or -1
    int64_t asked_at;           //  When Redis last came to owe an answer
    char local_addr [64];       //  This connection's end as Redis names it
    char stale_addr [64];       //  A connection dropped unanswered, to be
                                //  killed before the next one writes, or ""
    bool kill_warned;           //  Its CLIENT KILL was refused: said once
    char *eval_buf;             //  A fenced group's EVAL, rebuilt per group
    char *marker_key;           //  Fencing: <epoch key>:group, set by each group
    char *verdict_cmd;          //  "MGET <marker_key> <fence_key>" as RESP
    size_t verdict_size;
    uint64_t group_seq;         //  Numbers the groups' markers
    size_t eval_alloc;
    bool refusing;              //  The last group was refused: keep backing off
    char refusal [160];         //  Redis's error for it while refusing, else ""
    char ping_refusal [160];    //  Redis's MISCONF to our PING (no writes), else ""
    uint64_t write_errors;      //  Error replies to writes, ever
    uint64_t drops;             //  Durable writes dropped (buffer full) or
                                //  refused for good, ever (bm_store_drops)
    int64_t dropped_at;         //  When a write refused for good was last logged
    uint64_t dropped_since;     //  Such writes not logged since
    bool resend_rest;           //  A group was refused on this connection: the
                                //  groups after it count as lost
    bool refused_drop;          //  This connection is closed for a refused group
    bool holding;               //  Refused writes wait for resend_timer
    int resend_timer;           //  Their backoff, or -1
    bool unconfirmed;           //  A group was refused or lost, or the connection
                                //  went, and none confirmed since: not writable
    bm_store_group_t *flying;   //  Groups sent and not answered, oldest first
    bm_store_group_t *flying_last;
};

static void s_connect (bm_store_t *self);
static void s_became_ready (bm_store_t *self);
static void s_group_keep (bm_store_t *self, bm_store_group_t *group);
static size_t s_kept (bm_store_t *self);

//  After each round of I/O: reply callbacks may have written.
static void
s_after_io (void *arg)
{
    bm_store_flush ((bm_store_t *) arg);
}

//  A command is about to go out: if Redis owed no answer, the wait for one
//  starts now (else it started with the oldest command unanswered).
static void
s_asking (bm_store_t *self)
{
    if (self->ac && !self->ac->replies.head)
        self->asked_at = zclock_mono ();
}

//  --------------------------------------------------------------------------
//  Connection life

static int
s_reconnect_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_store_t *self = (bm_store_t *) arg;
    self->reconnect_timer = -1;
    s_connect (self);
    return 0;
}

static void
s_schedule_reconnect (bm_store_t *self)
{
    if (self->destroying || self->reconnect_timer != -1)
        return;
    self->reconnect_timer = zloop_timer (self->loop, self->backoff_ms, 1, s_reconnect_timer, self);
    //  At most a second apart: a refused connect costs next to nothing, and
    //  every second more is a second of SUBMITs answered store_unavailable
    //  after Redis is back.
    self->backoff_ms = self->backoff_ms * 2 > 1000 ? 1000 : self->backoff_ms * 2;
}

static void
s_went_down (bm_store_t *self, const char *why)
{
    bool was_up = self->connected;
    self->connected = false;
    self->resend_rest = false;
    self->unconfirmed = true;
    self->ac = NULL;
    if (self->ping_timer != -1) {
        zloop_timer_end (self->loop, self->ping_timer);
        self->ping_timer = -1;
    }
    //  Resend in the order first written: lost in flight, the open group,
    //  then what waited already.
    bm_store_group_t *open = self->open, *waiting = self->waiting;
    self->open = NULL;
    self->waiting = self->lost;
    self->lost = NULL;
    if (open) {
        s_group_keep (self, open);
        bm_store_group_destroy (&open);
    }
    if (waiting) {
        s_group_keep (self, waiting);
        bm_store_group_destroy (&waiting);
    }
    if (!self->outage_logged && !self->destroying && !self->refusing) {
        bm_error (NULL, "redis %s:%d unavailable (%s); reconnecting with backoff",
                  self->host, self->port, why);
        self->outage_logged = true;
    }
    if (was_up && self->state_fn)
        self->state_fn (false, self->state_arg);
    if (self->refused_drop && !self->destroying) {
        //  Closed for a refused group: a new connection at once, which
        //  holds the refused writes back for the backoff (s_became_ready);
        //  meanwhile what does not wait for them (the lease) goes through.
        self->refused_drop = false;
        self->holding = true;
        int backoff_ms = self->backoff_ms;
        self->backoff_ms = 1;
        s_schedule_reconnect (self);
        self->backoff_ms = backoff_ms;
        return;
    }
    s_schedule_reconnect (self);
}

static int
s_resend_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_store_t *self = (bm_store_t *) arg;
    self->resend_timer = -1;
    self->holding = false;
    bm_store_flush (self);
    return 0;
}

static void s_ping (bm_store_t *self);

static int
s_ping_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_store_t *self = (bm_store_t *) arg;
    self->ping_timer = -1;
    if (self->ac && !self->connected)
        s_ping (self);
    return 0;
}

//  Redis answers PING with -LOADING while it reads its AOF after a
//  restart, and refuses writes meanwhile; a transaction's writes (fenced
//  groups) go with replies off and would not show it.  So the store
//  counts as connected only once PING says PONG.
static void
s_on_ping (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    bm_store_t *self = (bm_store_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (!reply || self->destroying || self->setup_refused)
        return;                 //  Connection gone, or going: the reconnect path runs
    if (reply->type == REDIS_REPLY_ERROR) {
        //  MISCONF (it cannot persist) refuses PING as a write: Redis
        //  refuses the broker's writes (bm_store_refusal) until it saves.
        bool misconf = strncmp (reply->str, "MISCONF ", 8) == 0;
        if (misconf) {
            const char *stop = strstr (reply->str, ". ");
            int length = stop ? (int) (stop - reply->str) : (int) strlen (reply->str);
            snprintf (self->ping_refusal, sizeof self->ping_refusal, "%.*s", length, reply->str);
        }
        if (!self->loading_logged && misconf)
            bm_error (NULL, "redis %s:%d refuses writes (%s); waiting: free the disk it saves "
                      "to (redis-cli info persistence: rdb_last_bgsave_status, the Redis log names "
                      "the error), after which Redis takes writes again at its next successful "
                      "BGSAVE", self->host, self->port, self->ping_refusal);
        else
        if (!self->loading_logged)
            bm_warn (NULL, "redis %s:%d is not ready (%s); waiting", self->host, self->port,
                     reply->str);
        self->loading_logged = true;
        if (self->ping_timer == -1)
            self->ping_timer = zloop_timer (self->loop, 100, 1, s_ping_timer, self);
        return;
    }
    self->loading_logged = false;
    if (*self->ping_refusal)
        bm_info (NULL, "redis %s:%d takes writes again", self->host, self->port);
    self->ping_refusal [0] = 0;
    s_became_ready (self);
}

static void
s_ping (bm_store_t *self)
{
    s_asking (self);
    redisAsyncCommand (self->ac, s_on_ping, self, "PING");
}

//  Redis's answer to the AUTH or the SELECT that open a connection.  A
//  refusal (a database it does not have, a wrong password) makes the
//  connection useless: it is never taken as connected (whatever PING says
//  next; it would read and write database 0), the refusal is logged as an
//  ERROR once per outage, and the connection is dropped and tried again
//  with backoff, as a lost one.
static void
s_on_setup (bm_store_t *self, redisAsyncContext *ac, redisReply *reply, const char *command)
{
    char error [400];
    if (self->destroying || self->setup_refused
    ||  !bm_redis_setup_refused (reply, self->host, self->port, command, error, sizeof error))
        return;
    self->setup_refused = true;
    //  Logged even when the outage was (Redis went away and came back
    //  without the database): this is what to fix.
    if (!self->setup_logged)
        bm_error (NULL, "%s: check %s; not ready (never falling back to database 0), retrying "
                  "with backoff", error, bm_redis_setup_var (command));
    self->setup_logged = true;
    self->outage_logged = true;
    redisAsyncDisconnect (ac);
}

static void
s_on_auth (redisAsyncContext *ac, void *r, void *privdata)
{
    s_on_setup ((bm_store_t *) privdata, ac, (redisReply *) r, "AUTH");
}

static void
s_on_select (redisAsyncContext *ac, void *r, void *privdata)
{
    bm_store_t *self = (bm_store_t *) privdata;
    char command [32];
    snprintf (command, sizeof command, "SELECT %d", self->db);
    s_on_setup (self, ac, (redisReply *) r, command);
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    bm_store_t *self = (bm_store_t *) ac->data;
    if (status != REDIS_OK) {
        //  hiredis frees ac after this callback.
        s_went_down (self, ac->errstr);
        return;
    }
    //  How Redis names this client (CLIENT LIST's addr): "ip:port", an
    //  IPv6 address in brackets.
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char ip [INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (getsockname (ac->c.fd, (struct sockaddr *) &sa, &len) == 0) {
        if (sa.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *) &sa;
            inet_ntop (AF_INET, &in->sin_addr, ip, sizeof ip);
            port = ntohs (in->sin_port);
        }
        else
        if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &sa;
            inet_ntop (AF_INET6, &in6->sin6_addr, ip, sizeof ip);
            port = ntohs (in6->sin6_port);
        }
    }
    if (*ip)
        snprintf (self->local_addr, sizeof self->local_addr,
                  strchr (ip, ':') ? "[%s]:%d" : "%s:%d", ip, port);
    else
        self->local_addr [0] = 0;
    s_ping (self);
}

//  The answer to CONFIG GET appendonly / maxmemory-policy: a warning when
//  Redis is set up to lose what the broker confirmed. A Redis that refuses
//  CONFIG (a managed one may) is taken on trust.
static void
s_on_config (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    bm_store_t *self = (bm_store_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (!reply || self->destroying)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING
    ||  reply->element [1]->type != REDIS_REPLY_STRING) {
        bm_debug (NULL, "redis %s:%d: CONFIG GET not answered (%s); its settings not checked",
                  self->host, self->port, reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
        return;
    }
    const char *name = reply->element [0]->str, *value = reply->element [1]->str;
    if (streq (name, "appendonly") && streq (value, "no"))
        bm_warn (NULL, "redis %s:%d runs without its append-only file (appendonly no): jobs "
                 "accepted since its last snapshot are lost if it restarts; set appendonly yes "
                 "and appendfsync everysec (docs/redis.md)", self->host, self->port);
    else
    if (streq (name, "maxmemory-policy") && !streq (value, "noeviction"))
        bm_warn (NULL, "redis %s:%d evicts keys when full (maxmemory-policy %s): it may drop "
                 "job records and the broker cannot see it; set maxmemory-policy noeviction "
                 "(docs/redis.md)", self->host, self->port, value);
}

static void
s_became_ready (bm_store_t *self)
{
    self->connected = true;
    //  Before the first group (its replies may be off): is Redis durable?
    s_asking (self);
    redisAsyncCommand (self->ac, s_on_config, self, "CONFIG GET appendonly");
    redisAsyncCommand (self->ac, s_on_config, self, "CONFIG GET maxmemory-policy");
    //  Nothing to send again: writes count as going through until a group
    //  says otherwise.  Else the first group confirmed says so.
    if (s_kept (self) == 0)
        self->unconfirmed = false;
    if (!self->refusing)
        self->backoff_ms = 100;
    //  While Redis refuses writes, each try to send them again reconnects:
    //  the refusal's ERROR said it, its end says "takes writes again".
    if (self->refusing)
        bm_debug (NULL, "redis %s:%d connected; sending the refused writes again",
                  self->host, self->port);
    else
    if (self->outage_logged)
        bm_info (NULL, "redis %s:%d available again", self->host, self->port);
    else
        bm_info (NULL, "redis %s:%d connected", self->host, self->port);
    self->outage_logged = false;
    self->setup_logged = false;
    if (self->holding && self->resend_timer == -1) {
        self->resend_timer = zloop_timer (self->loop, self->backoff_ms, 1, s_resend_timer, self);
        self->backoff_ms = self->backoff_ms * 2 > 1000 ? 1000 : self->backoff_ms * 2;
    }
    if (self->state_fn)
        self->state_fn (true, self->state_arg);
    bm_store_flush (self);
}

static void
s_on_disconnect (const redisAsyncContext *ac, int status)
{
    bm_store_t *self = (bm_store_t *) ac->data;
    (void) status;
    s_went_down (self, self->dropping ? self->dropping
                     : ac->errstr [0] ? ac->errstr : "connection closed");
}

//  Drop the connection now, as if it were lost: every pending callback
//  gets NULL (the writes in flight are kept, to be sent again in order),
//  then s_went_down runs and a reconnect is scheduled.
static void
s_drop (bm_store_t *self, const char *why)
{
    redisAsyncContext *ac = self->ac;
    self->dropping = why;
    //  Calls the disconnect callback (s_went_down) if ac was connected.
    redisAsyncFree (ac);
    self->dropping = NULL;
    if (self->ac == ac)
        s_went_down (self, why);
}

//  Redis owes an answer (a command sent, or the connect itself) and has
//  neither sent anything nor read what we had to send for timeout_ms: a Redis that is stopped (SIGSTOP, a VM
//  paused) or cut off keeps the TCP connection open and would hold every
//  write forever.  Dropped as a lost connection: the writes not confirmed
//  are sent again on the next one, and a connection to a Redis still
//  frozen (its kernel accepts the connect) times out the same way, with
//  backoff and no more log lines.
static int
s_watchdog (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_store_t *self = (bm_store_t *) arg;
    redisAsyncContext *ac = self->ac;
    if (!ac || self->timeout_ms <= 0 || self->destroying
    ||  (ac->c.flags & (REDIS_IN_CALLBACK | REDIS_DISCONNECTING | REDIS_FREEING)))
        return 0;
    if (!ac->replies.head && (ac->c.flags & REDIS_CONNECTED))
        return 0;               //  Nothing owed
    //  Redis reading what we send counts as much as Redis answering: a
    //  large group (the backlog of an outage; a fenced one is answered
    //  once, at its end) takes long to run, but our socket drains
    //  while Redis reads it; what stays in the buffers after its last
    //  byte goes runs in well under a second.
    int64_t since = self->asked_at > self->io.last_io ? self->asked_at : self->io.last_io;
    int64_t silent = zclock_mono () - since;
    if (silent < self->timeout_ms)
        return 0;
    if (!self->outage_logged)
        bm_error (NULL, "redis %s:%d: no answer for %" PRId64 " ms; reconnecting with backoff",
                  self->host, self->port, silent);
    self->outage_logged = true;
    //  What it was sent stays in its socket and Redis runs it when it
    //  wakes up, while the writes are sent again on the next connection:
    //  that one first kills this one (s_connect_to), so that all of the
    //  old one's writes that ever run, run before any of the new one's.
    //  A connection never ready carried no writes.
    if (self->connected && *self->local_addr)
        snprintf (self->stale_addr, sizeof self->stale_addr, "%s", self->local_addr);
    s_drop (self, "no answer");
    return 0;
}

void
bm_store_set_timeout (bm_store_t *self, int timeout_ms)
{
    if (self->watchdog_timer != -1) {
        zloop_timer_end (self->loop, self->watchdog_timer);
        self->watchdog_timer = -1;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    if (self->timeout_ms == 0)
        return;
    //  Checked a few times per bound: noticed within timeout_ms + a quarter.
    int every = self->timeout_ms / 4;
    every = every < 10 ? 10 : every > 250 ? 250 : every;
    self->watchdog_timer = zloop_timer (self->loop, (size_t) every, 0, s_watchdog, self);
}

//  The sentinels announced a new master: drop the connection at once, as
//  if it were lost (writes in flight are kept and sent again), and
//  reconnect through s_connect, which asks the sentinels where it is.
static void
s_on_switch (const bm_sentinel_switch_t *sw, void *arg)
{
    bm_store_t *self = (bm_store_t *) arg;
    if (self->destroying)
        return;
    //  Already there when a refused write or a lost connection made us ask
    //  the sentinels before the message came.
    bool there = self->ac && streq (sw->new_host, self->host) && sw->new_port == self->port;
    bm_info (NULL, "redis: +switch-master '%s' %s:%d -> %s:%d; %s", sw->name, sw->old_host,
             sw->old_port, sw->new_host, sw->new_port,
             there ? "connected there already" : "reconnecting");
    if (there)
        return;
    if (self->ac)
        s_drop (self, "the sentinels switched the master");
    //  Reconnect now (on the next loop turn), whatever backoff an outage
    //  had reached; the backoff starts over.
    if (self->reconnect_timer != -1) {
        zloop_timer_end (self->loop, self->reconnect_timer);
        self->reconnect_timer = -1;
    }
    self->backoff_ms = 1;
    s_schedule_reconnect (self);
    self->backoff_ms = 100;
}

//  A connect that failed before reaching Redis (a name that does not
//  resolve, no socket): logged once per outage, tried again with backoff.
static void
s_cannot_connect (bm_store_t *self, const char *why)
{
    if (!self->outage_logged) {
        bm_error (NULL, "redis %s:%d: cannot connect (%s); reconnecting with backoff",
                  self->host, self->port, why);
        self->outage_logged = true;
    }
    s_schedule_reconnect (self);
}

static void s_connect_to (bm_store_t *self, const char *addr);

//  The host's name resolved (connect to the address), or not in time, or
//  not at all (try again with backoff).
static void
s_on_resolved (int rc, const char *addr, const char *why, void *arg)
{
    bm_store_t *self = (bm_store_t *) arg;
    if (rc == 0)
        s_connect_to (self, addr);
    else
        s_cannot_connect (self, why);
}

static void s_connect_host (bm_store_t *self);
static void s_on_master (int rc, const char *host, int port, const char *why, void *arg);

//  A connect: under REDIS_SENTINELS, ask them where the master is first
//  (s_on_master), on the loop; a lookup in progress (a +switch-master came
//  meanwhile) starts over.
static void
s_connect (bm_store_t *self)
{
    bm_resolve_zloop_cancel (self->resolver);
    if (self->lookup)
        bm_sentinel_lookup_start (self->lookup);
    else
    if (self->sentinels)        //  No lookup: not a list (the configuration checks it)
        s_on_master (-1, NULL, 0, "REDIS_SENTINELS is not a list of host:port", self);
    else
        s_connect_host (self);
}

//  The sentinels' answer: connect to the master they name, or try again
//  with backoff.
static void
s_on_master (int rc, const char *host, int port, const char *why, void *arg)
{
    bm_store_t *self = (bm_store_t *) arg;
    if (self->destroying)
        return;
    if (rc) {
        if (!self->outage_logged) {
            bm_error (NULL, "redis: no master from the sentinels (%s)", why);
            self->outage_logged = true;
        }
        s_schedule_reconnect (self);
        return;
    }
    if (strcmp (host, self->host) || port != self->port)
        bm_info (NULL, "redis: sentinels name master '%s' at %s:%d", self->master_name, host, port);
    char *copy = strdup (host);
    if (copy) {
        free (self->host);
        self->host = copy;
        self->port = port;
    }
    s_connect_host (self);
}

//  Connect to self->host.
static void
s_connect_host (bm_store_t *self)
{
    //  hiredis would resolve a host name itself, in the loop's thread, for
    //  as long as the resolver waits: a name is resolved off the loop
    //  first (s_on_resolved), and hiredis gets its address.
    char why [256];
    if (bm_resolve_numeric (self->host))
        s_connect_to (self, self->host);
    else
    if (bm_resolve_zloop_start (self->resolver, self->host, why, sizeof why))
        s_cannot_connect (self, why);
}

//  The answer to CLIENT KILL ADDR of a connection dropped unanswered: the
//  old connection is gone (or was already), its writes can no longer run
//  after the new connection's.  Refused (an ACL without CLIENT, a renamed
//  command): said once; its writes may then run late, after newer ones.
static void
s_on_kill (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    bm_store_t *self = (bm_store_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (!reply || self->destroying)
        return;                 //  Not run: the next connection asks again
    if (reply->type == REDIS_REPLY_ERROR && !self->kill_warned) {
        bm_warn (NULL, "redis %s:%d refused CLIENT KILL ADDR %s (%s): what that connection sent "
                 "before it stopped answering may still run after newer writes", self->host,
                 self->port, self->stale_addr, reply->str);
        self->kill_warned = true;
    }
    self->stale_addr [0] = 0;
}

//  Connect to addr (the host's address, or the host itself when it needs
//  no resolving); logs name the host.
static void
s_connect_to (bm_store_t *self, const char *addr)
{
    self->setup_refused = false;
    redisAsyncContext *ac = redisAsyncConnect (addr, self->port);
    if (!ac || ac->err) {
        s_cannot_connect (self, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree (ac);
        return;
    }
    ac->data = self;
    self->ac = ac;
    self->asked_at = zclock_mono ();    //  The connect itself is owed an answer
    bm_redis_zloop_attach (&self->io, ac);
    redisAsyncSetConnectCallback (ac, s_on_connect);
    redisAsyncSetDisconnectCallback (ac, s_on_disconnect);
    //  Commands queued before the connect completes are sent once it does;
    //  AUTH and SELECT go first; their answers are checked (s_on_setup).
    if (self->password)
        redisAsyncCommand (ac, s_on_auth, self, "AUTH %s", self->password);
    if (self->db)
        redisAsyncCommand (ac, s_on_select, self, "SELECT %d", self->db);
    //  Before PING, hence before any write of this connection.
    if (*self->stale_addr)
        redisAsyncCommand (ac, s_on_kill, self, "CLIENT KILL ADDR %s SKIPME yes", self->stale_addr);
}

//  --------------------------------------------------------------------------
//  Groups of writes

static size_t
s_kept (bm_store_t *self)
{
    return (self->waiting ? self->waiting->count : 0) + (self->lost ? self->lost->count : 0);
}

//  A group was not (or not surely) applied: append its durable writes to
//  self->waiting, in order, and fail the others.  Does not free the group.
static void
s_group_keep (bm_store_t *self, bm_store_group_t *group)
{
    for (size_t i = 0; i < group->count; i++) {
        bm_store_entry_t *entry = &group->entries [i];
        if (entry->retry && !self->destroying && s_kept (self) < self->buffer_max) {
            if (!self->waiting)
                self->waiting = bm_store_group_new (self, self->last_group_size);
            bm_store_group_add (self->waiting, group->buf + entry->offset, entry->size,
                         true, entry->fn, entry->arg);
            self->waiting->entries [self->waiting->count - 1].kept = entry->kept;
            //  Told after the write is kept, so that what it writes goes after.
            if (entry->kept)
                entry->kept (entry->arg);
        }
        else {
            if (entry->retry && !self->destroying) {
                self->drops++;
                bm_error (NULL, "redis buffer full (%zu writes): a state change is dropped",
                          self->buffer_max);
            }
            if (entry->fn)
                entry->fn (NULL, entry->arg);
        }
    }
}

//  A group sent: in the list of groups in flight until its answer.
static void
s_flying_add (bm_store_t *self, bm_store_group_t *group)
{
    group->next = NULL;
    group->prev = self->flying_last;
    if (self->flying_last)
        self->flying_last->next = group;
    else
        self->flying = group;
    self->flying_last = group;
    self->in_flight += group->count;
}

static void
s_flying_remove (bm_store_t *self, bm_store_group_t *group)
{
    if (group->prev)
        group->prev->next = group->next;
    else
        self->flying = group->next;
    if (group->next)
        group->next->prev = group->prev;
    else
        self->flying_last = group->prev;
    group->prev = group->next = NULL;
    self->in_flight -= group->count;
}

//  A group was refused (or its connection lost): writes are not going
//  through for now.  The groups still in flight may wait long for their
//  answers (each Sentinel-mode group waits up to a second for a replica,
//  one after the other), so the writes that fail fast are told at once
//  that they are kept (a SUBMIT answers store_unavailable and undoes its
//  writes after them).  They are still sent again if their group is not
//  confirmed; their "fn" is still called once.
static void
s_suspect (bm_store_t *self)
{
    if (self->unconfirmed)
        return;
    self->unconfirmed = true;
    for (bm_store_group_t *group = self->flying; group; group = group->next)
        for (size_t i = 0; i < group->count; i++)
            if (group->entries [i].kept)
                group->entries [i].kept (group->entries [i].arg);
}

static void
s_on_group_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    bm_store_group_t *group = (bm_store_group_t *) privdata;
    bm_store_t *self = group->store;
    s_flying_remove (self, group);
    redisReply *reply = (redisReply *) r;
    //  Sentinel mode: the answer is WAIT's; the EVAL's error came before.
    const char *error = reply && reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (reply && group->error [0])
        error = group->error;
    else
    if (reply && group->waited && reply->type == REDIS_REPLY_INTEGER && reply->integer < 1)
        error = "NOTREPLICATED no replica confirmed the group in time";
    if (error && strncmp (error, "FENCED", 6) == 0) {
        //  Another broker took the lease: none of this group ran, and no
        //  write of ours may run again.
        bool first = !self->fenced;
        self->fenced = true;
        if (first)
            bm_error (NULL, "redis refused our writes: %s", error);
        bm_store_group_fail (group);
        bm_store_group_destroy (&group);
        if (first && self->fenced_fn)
            self->fenced_fn (self->fenced_arg);
        return;
    }
    //  A scripted group's one refusal counts once (a plain group's, per
    //  write refused: s_on_write_reply).
    if (error && !group->sent)
        self->write_errors++;
    if (error && !self->destroying) {
        //  Not surely applied: keep the writes and start over on a fresh
        //  connection (which waits until Redis is ready again).  Once per
        //  episode: until a group is confirmed again.
        if (!self->refusing)
            bm_error (NULL, "redis %s:%d refused writes (%s): new jobs are refused "
                      "store_unavailable, the %zu writes of the group are kept and sent again "
                      "with backoff until Redis takes them", self->host, self->port, error,
                      group->count);
        self->refusing = true;
        snprintf (self->refusal, sizeof self->refusal, "%s", error);
        s_suspect (self);
        bm_store_group_t *waiting = self->waiting;
        self->waiting = self->lost;
        s_group_keep (self, group);
        self->lost = self->waiting;
        self->waiting = waiting;
        bm_store_group_destroy (&group);
        if (self->ac) {
            //  The groups sent after this one still get their answers
            //  before the connection closes; they are kept and sent again
            //  after it whatever they say, so that no write of theirs
            //  lands before this group's (their SUBMITs were told above).
            self->resend_rest = true;
            self->refused_drop = true;
            redisAsyncDisconnect (self->ac);
        }
        return;
    }
    if (reply && !self->resend_rest) {
        if (self->refusing)
            bm_info (NULL, "redis %s:%d takes writes again", self->host, self->port);
        self->refusing = false;
        self->refusal [0] = 0;
        self->unconfirmed = false;
        //  One clock read for the group's confirmations (bm_clock_hold)
        bm_clock_hold ();
        redisReply refused = { .type = REDIS_REPLY_ERROR, .str = group->refused,
                               .len = strlen (group->refused) };
        for (size_t i = 0; i < group->count; i++)
            if (group->entries [i].fn)
                group->entries [i].fn (group->entries [i].refused ? &refused : reply,
                                       group->entries [i].arg);
        bm_clock_release ();
    }
    else
    if (self->destroying)
        bm_store_group_fail (group);
    else {
        //  Lost with the connection: collected in self->lost, which
        //  s_went_down puts before everything else.
        s_suspect (self);
        bm_store_group_t *waiting = self->waiting;
        self->waiting = self->lost;
        s_group_keep (self, group);
        self->lost = self->waiting;
        self->waiting = waiting;
    }
    bm_store_group_destroy (&group);
}

//  An error that says Redis does not take writes for now (full, not
//  persisting, not the master, busy): the write may land when sent again.
static bool
s_transient (const char *error)
{
    static const char *codes [] = { "OOM ", "MISCONF ", "READONLY ", "LOADING ", "MASTERDOWN ",
                                    "NOREPLICAS ", "BUSY ", "TRYAGAIN ", NULL };
    for (int i = 0; codes [i]; i++)
        if (strncmp (error, codes [i], strlen (codes [i])) == 0)
            return true;
    return false;
}

//  A write's command and first argument (its key) for a log line, from
//  its RESP bytes: "*<n>\r\n$<len>\r\n<command>\r\n$<len>\r\n<key>...".
static void
s_write_name (const char *resp, size_t size, char *out, size_t out_size)
{
    const char *at = resp, *end = resp + size;
    size_t used = 0;
    out [0] = 0;
    at = memchr (at, '\n', (size_t) (end - at));
    for (int arg = 0; at && arg < 2; arg++) {
        at++;                                   //  At "$<len>"
        if (at >= end || *at != '$')
            return;
        size_t len = strtoul (at + 1, NULL, 10);
        at = memchr (at, '\n', (size_t) (end - at));
        if (!at || (size_t) (end - at - 1) < len)
            return;
        int n = snprintf (out + used, out_size - used, "%s%.*s", arg ? " " : "",
                          (int) (len < 120 ? len : 120), at + 1);
        used += n > 0 && (size_t) n < out_size - used ? (size_t) n : 0;
        at = memchr (at + 1 + len, '\n', (size_t) (end - at - 1 - len));
    }
}

//  A plain group's writes go with replies on: each write's own answer.
//  The group is settled at its last answer: confirmed when none was an
//  error, refused (kept, sent again) when one was, lost when the
//  connection went first.  An error counts once per write.
static void
s_on_write_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    bm_store_group_t *group = (bm_store_group_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (!reply)
        group->unanswered = true;
    else
    if (reply->type == REDIS_REPLY_ERROR) {
        bm_store_t *self = group->store;
        bm_store_entry_t *entry = &group->entries [group->answered];
        self->write_errors++;
        if (s_transient (reply->str)) {
            if (!group->error [0])
                snprintf (group->error, sizeof group->error, "%s", reply->str);
        }
        else {
            //  Sent again it would be refused again (WRONGTYPE: a key of
            //  the wrong type): this write alone failed; its callback gets
            //  the error, it is not sent again.  Said at most once a minute.
            entry->refused = true;
            entry->retry = false;
            self->drops++;
            if (!group->refused [0])
                snprintf (group->refused, sizeof group->refused, "%s", reply->str);
            int64_t now = zclock_mono ();
            if (!self->dropped_at || now - self->dropped_at >= 60000) {
                char name [256];
                s_write_name (group->buf + entry->offset, entry->size, name, sizeof name);
                bm_error (NULL, "redis %s:%d refused a write (%s): %s not applied, not sent again "
                          "(%" PRIu64 " more such since the last line)", self->host, self->port,
                          reply->str, name, self->dropped_since);
                self->dropped_at = now;
                self->dropped_since = 0;
            }
            else
                self->dropped_since++;
        }
    }
    if (++group->answered < group->sent)
        return;
    static redisReply ok = { .type = REDIS_REPLY_STATUS, .str = (char *) "OK", .len = 2 };
    s_on_group_reply (ac, group->unanswered ? NULL : &ok, group);
}

void
bm_store_set_flush_fn (bm_store_t *self, bm_store_flush_fn *fn, void *arg)
{
    self->flush_fn = fn;
    self->flush_arg = arg;
}

//  Sentinel mode: the EVAL's own answer; the group's callback is WAIT's.
static void
s_on_group_eval (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    bm_store_group_t *group = (bm_store_group_t *) privdata;
    redisReply *reply = (redisReply *) r;
    //  Acted on at WAIT's answer, not now: an undo issued now would go out
    //  on this connection and could run before this group is sent again.
    if (reply && reply->type == REDIS_REPLY_ERROR)
        snprintf (group->error, sizeof group->error, "%s", reply->str);
}

static const char s_wait [] = "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n1000\r\n";

//  A watched group's transaction: its one reply (CLIENT REPLY ON's) says
//  nothing; the MGET after it does.
static void
s_on_group_sent (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac; (void) r; (void) privdata;
}

//  A watched group's MGET [marker, epoch]: did the transaction run, and is
//  the epoch still ours?  Then on as any group's answer (or WAIT's next).
static void
s_on_group_verdict (redisAsyncContext *ac, void *r, void *privdata)
{
    bm_store_group_t *group = (bm_store_group_t *) privdata;
    bm_store_t *self = group->store;
    redisReply *reply = (redisReply *) r;
    //  The writes' callbacks get "OK" when the transaction ran, as they do
    //  from the other forms.
    static redisReply ok = { .type = REDIS_REPLY_STATUS, .str = (char *) "OK", .len = 2 };
    bool ran = reply && bm_store_group_verdict (reply, self->fence_epoch, group->marker,
                                                group->error, sizeof group->error) == 0;
    if (!group->waited)
        s_on_group_reply (ac, ran ? &ok : r, privdata);
}

void
bm_store_set_fence (bm_store_t *self, const char *key, const char *epoch,
                    bm_store_fenced_fn *fn, void *arg)
{
    free (self->fence_key);
    free (self->fence_epoch);
    free (self->marker_key);
    free (self->verdict_cmd);
    self->fence_key = strdup (key);
    self->fence_epoch = strdup (epoch);
    self->marker_key = zsys_sprintf ("%s:group", key);
    self->verdict_cmd = NULL;
    int size = self->marker_key
             ? redisFormatCommand (&self->verdict_cmd, "MGET %s %s", self->marker_key, key) : -1;
    self->verdict_size = size > 0 ? (size_t) size : 0;
    if (!self->fence_key || !self->fence_epoch || !self->verdict_cmd) {
        bm_error (NULL, "out of memory for the store's fencing keys");
        abort ();
    }
    self->fenced_fn = fn;
    self->fenced_arg = arg;
}

bool
bm_store_fenced (bm_store_t *self)
{
    return self->fenced;
}

void
bm_store_close_writes (bm_store_t *self)
{
    self->closed = true;
}

size_t
bm_store_closed_refused (bm_store_t *self)
{
    return self->closed_refused;
}

//  A group in one of its scripted forms.  Fenced: the writes as a
//  transaction that runs only while the epoch holds, then MGET [marker,
//  epoch] says whether it ran.  Sentinel alone: one EVAL of the group.
//  Sentinel: then WAIT 1, as a group counts once a replica has it too, so
//  that a failover to that replica loses no confirmed write.
static void
s_send_scripted (bm_store_t *self, bm_store_group_t *group)
{
    size_t size;
    redisCallbackFn *first = s_on_group_reply;
    group->waited = self->sentinels != NULL;
    if (self->fence_key) {
        snprintf (group->marker, sizeof group->marker, "%s:%" PRIu64,
                  self->fence_epoch, ++self->group_seq);
        size = bm_store_group_watch (group, &self->eval_buf, &self->eval_alloc, self->fence_key,
                                     self->fence_epoch, self->marker_key, group->marker);
        first = s_on_group_sent;
    }
    else {
        size = bm_store_group_fence (group, &self->eval_buf, &self->eval_alloc, NULL, NULL);
        if (group->waited)
            first = s_on_group_eval;
    }
    s_asking (self);
    if (size == 0
    ||  redisAsyncFormattedCommand (self->ac, first, group, self->eval_buf, size) != REDIS_OK
    ||  (self->fence_key && redisAsyncFormattedCommand (self->ac, s_on_group_verdict, group,
                                                        self->verdict_cmd, self->verdict_size) != REDIS_OK)
    ||  (group->waited && redisAsyncFormattedCommand (self->ac, s_on_group_reply, group,
                                                      s_wait, sizeof s_wait - 1) != REDIS_OK)) {
        if (size == 0)
            bm_error (NULL, "redis: no memory to send a group of %zu writes: kept", group->count);
        s_group_keep (self, group);
        bm_store_group_destroy (&group);
        return;
    }
    s_flying_add (self, group);
}

void
bm_store_flush (bm_store_t *self)
{
    if (self->flush_fn && !self->flushing) {
        self->flushing = true;
        self->flush_fn (self->flush_arg);
        self->flushing = false;
    }
    if (!self->connected || !self->ac || self->holding)
        return;
    //  What waited for the connection goes first.
    bm_store_group_t *groups [2] = { self->waiting, self->open };
    self->waiting = NULL;
    self->open = NULL;
    for (int i = 0; i < 2; i++) {
        bm_store_group_t *group = groups [i];
        if (!group)
            continue;
        if (group->count == 0 || self->fenced) {
            if (group->count)
                bm_store_group_fail (group);
            bm_store_group_destroy (&group);
            continue;
        }
        if (self->fence_key || self->sentinels) {
            s_send_scripted (self, group);
            continue;
        }
        //  Capped: one huge group (a flush after an outage) must not make
        //  every later group reserve as much.
        self->last_group_size = group->size + 1 < 4 * 1024 * 1024 ? group->size + 1 : 4 * 1024 * 1024;
        s_asking (self);
        //  Each write with its own answer (replies on): a write Redis
        //  refuses (OOM under maxmemory, MISCONF, READONLY) is seen.
        for (size_t w = 0; w < group->count; w++) {
            const bm_store_entry_t *entry = &group->entries [w];
            if (redisAsyncFormattedCommand (self->ac, s_on_write_reply, group,
                                            group->buf + entry->offset, entry->size) != REDIS_OK)
                break;          //  The connection is going away (so from the first)
            group->sent++;
        }
        if (group->sent == 0) {
            //  The connection is going away: keep what must be kept.
            s_group_keep (self, group);
            bm_store_group_destroy (&group);
            continue;
        }
        if (group->sent < group->count) {
            //  Never seen (hiredis refuses all or none): the rest is kept.
            bm_store_group_t *rest = bm_store_group_new (self, 0);
            for (size_t w = group->sent; w < group->count; w++) {
                const bm_store_entry_t *entry = &group->entries [w];
                bm_store_group_add (rest, group->buf + entry->offset, entry->size, entry->retry,
                                    entry->fn, entry->arg);
                rest->entries [rest->count - 1].kept = entry->kept;
            }
            group->count = group->sent;
            s_group_keep (self, rest);
            bm_store_group_destroy (&rest);
        }
        s_flying_add (self, group);
    }
}

void
bm_store_push (bm_store_t *self, size_t writes)
{
    if (writes && (!self->open || self->open->count < writes))
        return;
    bm_store_flush (self);
    redisAsyncContext *ac = self->ac;
    if (!self->connected || !ac || ac->c.err
    ||  (ac->c.flags & (REDIS_IN_CALLBACK | REDIS_DISCONNECTING | REDIS_FREEING)))
        return;
    //  What redisAsyncHandleWrite does, but an error does not disconnect
    //  here (that would call back into whoever is pushing): the socket
    //  stays polled for writing, and the loop's redisAsyncHandleWrite
    //  finds the error and disconnects.
    int done = 0;
    if (redisBufferWrite (&ac->c, &done) == REDIS_OK && done) {
        if (ac->ev.delWrite)
            ac->ev.delWrite (ac->ev.data);
        if (ac->ev.addRead)
            ac->ev.addRead (ac->ev.data);
    }
}

int
bm_store_write_kept (bm_store_t *self, bm_store_fn *fn, bm_store_kept_fn *kept, void *arg,
                     int argc, const char **argv, const size_t *argvlen)
{
    if (bm_store_write (self, true, fn, arg, argc, argv, argvlen))
        return -1;
    bm_store_group_t *group = self->connected ? self->open : self->waiting;
    group->entries [group->count - 1].kept = kept;
    if (!self->connected && kept)
        kept (arg);             //  Waiting for the connection already
    return 0;
}

int
bm_store_write (bm_store_t *self, bool retry, bm_store_fn *fn, void *arg,
                int argc, const char **argv, const size_t *argvlen)
{
    if (self->destroying || self->fenced)
        return -1;
    if (self->closed) {
        self->closed_refused++;
        return -1;
    }
    if (self->connected) {
        if (!self->open)
            self->open = bm_store_group_new (self, self->last_group_size);
        bm_store_group_add_argv (self->open, retry, fn, arg, argc, argv, argvlen);
        return 0;
    }
    if (!retry)
        return -1;
    if (s_kept (self) >= self->buffer_max) {
        self->drops++;
        bm_error (NULL, "redis buffer full (%zu writes): a state change is dropped",
                  self->buffer_max);
        return -1;
    }
    if (!self->waiting)
        self->waiting = bm_store_group_new (self, self->last_group_size);
    bm_store_group_add_argv (self->waiting, true, fn, arg, argc, argv, argvlen);
    return 0;
}

//  --------------------------------------------------------------------------
//  Queries

static void
s_on_query_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    s_query_t *query = (s_query_t *) privdata;
    if (query->fn)
        query->fn ((redisReply *) r, query->arg);
    free (query);
}

static int
s_query (bm_store_t *self, bool ahead, bm_store_fn *fn, void *arg,
         int argc, const char **argv, const size_t *argvlen)
{
    if (!self->connected || !self->ac || (self->holding && !ahead))
        return -1;
    bm_store_flush (self);      //  A read sees the writes made before it
    bm_store_group_t scratch = { 0 };
    bm_store_group_add_argv (&scratch, false, NULL, NULL, argc, argv, argvlen);
    s_query_t *query = (s_query_t *) zmalloc (sizeof (s_query_t));
    query->fn = fn;
    query->arg = arg;
    s_asking (self);
    int rc = redisAsyncFormattedCommand (self->ac, s_on_query_reply, query,
                                         scratch.buf, scratch.size);
    free (scratch.buf);
    free (scratch.entries);
    if (rc != REDIS_OK) {
        free (query);
        return -1;
    }
    return 0;
}

int
bm_store_query (bm_store_t *self, bm_store_fn *fn, void *arg,
                int argc, const char **argv, const size_t *argvlen)
{
    return s_query (self, false, fn, arg, argc, argv, argvlen);
}

int
bm_store_query_ahead (bm_store_t *self, bm_store_fn *fn, void *arg,
                      int argc, const char **argv, const size_t *argvlen)
{
    return s_query (self, true, fn, arg, argc, argv, argvlen);
}

//  --------------------------------------------------------------------------

bm_store_t *
bm_store_new (zloop_t *loop, const char *url, const char *sentinels, const char *master_name,
              size_t buffer_max)
{
    bm_redis_url_t parsed;
    if (bm_redis_url_parse (url, &parsed))
        return NULL;
    char *host = strdup (parsed.host);
    char *password = *parsed.password ? strdup (parsed.password) : NULL;
    int port = parsed.port, db = parsed.db;
    bm_store_t *self = (bm_store_t *) zmalloc (sizeof (bm_store_t));
    self->loop = loop;
    bm_redis_zloop_init (&self->io, loop, &self->ac, s_after_io, self);
    self->host = host;
    self->port = port;
    self->db = db;
    self->password = password;
    self->buffer_max = buffer_max;
    if (sentinels) {
        self->sentinels = strdup (sentinels);
        self->master_name = strdup (master_name ? master_name : BM_SENTINEL_DEFAULT_MASTER);
    }
    self->backoff_ms = 100;
    self->reconnect_timer = -1;
    self->resend_timer = -1;
    self->resolver = bm_resolve_zloop_new (loop, BM_RESOLVE_WAIT_MS, s_on_resolved, self);
    self->ping_timer = -1;
    self->watchdog_timer = -1;
    if (self->sentinels) {
        self->watch = bm_sentinel_watch_new (loop, self->sentinels, self->master_name,
                                             s_on_switch, self);
        self->lookup = bm_sentinel_lookup_new (loop, self->sentinels, self->master_name,
                                               STORE_SENTINEL_TIMEOUT_MS, s_on_master, self);
    }
    s_connect (self);
    return self;
}

void
bm_store_destroy (bm_store_t **self_p)
{
    if (*self_p) {
        bm_store_t *self = *self_p;
        self->destroying = true;
        bm_sentinel_watch_destroy (&self->watch);
        bm_sentinel_lookup_destroy (&self->lookup);
        if (self->reconnect_timer != -1)
            zloop_timer_end (self->loop, self->reconnect_timer);
        if (self->resend_timer != -1)
            zloop_timer_end (self->loop, self->resend_timer);
        bm_resolve_zloop_destroy (&self->resolver);
        if (self->ping_timer != -1)
            zloop_timer_end (self->loop, self->ping_timer);
        if (self->watchdog_timer != -1)
            zloop_timer_end (self->loop, self->watchdog_timer);
        if (self->ac) {
            //  Calls every pending callback with NULL and the disconnect
            //  callback.
            redisAsyncContext *ac = self->ac;
            self->ac = NULL;
            redisAsyncFree (ac);
        }
        bm_store_group_t *groups [3] = { self->lost, self->open, self->waiting };
        for (int i = 0; i < 3; i++) {
            if (groups [i]) {
                bm_store_group_fail (groups [i]);
                bm_store_group_destroy (&groups [i]);
            }
        }
        free (self->host);
        free (self->password);
        free (self->fence_key);
        free (self->fence_epoch);
        free (self->marker_key);
        free (self->verdict_cmd);
        free (self->eval_buf);
        free (self->sentinels);
        free (self->master_name);
        free (self);
        *self_p = NULL;
    }
}

void
bm_store_set_state_fn (bm_store_t *self, bm_store_state_fn *fn, void *arg)
{
    self->state_fn = fn;
    self->state_arg = arg;
}

bool
bm_store_up (bm_store_t *self)
{
    return self->connected;
}

bool
bm_store_writable (bm_store_t *self)
{
    return self->connected && !self->unconfirmed && !self->fenced;
}

size_t
bm_store_pending (bm_store_t *self)
{
    return s_kept (self) + (self->open ? self->open->count : 0) + self->in_flight;
}

size_t
bm_store_in_flight (bm_store_t *self)
{
    return self->in_flight;
}

const char *
bm_store_refusal (bm_store_t *self)
{
    if (self->refusing && self->refusal [0])
        return self->refusal;
    return self->ping_refusal [0] ? self->ping_refusal : NULL;
}

uint64_t
bm_store_write_errors (bm_store_t *self)
{
    return self->write_errors;
}

uint64_t
bm_store_drops (bm_store_t *self)
{
    return self->drops;
}

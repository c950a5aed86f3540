/*  bm_lease.c - broker leadership: a lease in Redis with an increasing epoch.  */
#include "bm_lease.h"
#include "bm_log.h"
#include "bm_selftest.h"
#include "bm_config.h"

#include <czmq.h>
#include <inttypes.h>

//  KEYS[1] lease, KEYS[2] epoch counter; ARGV owner, endpoint, lease ms,
//  the epoch we hold ("0": none), a lease value known to be stale (its
//  owner is gone: bm_lease_take_stale; "" none), deleted if still there.
//  Returns {held (0/1), epoch, endpoint}, and another's lease value whole
//  with its PTTL (its real remaining time, whatever lease its owner uses).
//  A lease that names us (the owner is unique to this process) is ours at
//  whatever epoch it holds: an acquire that took it but whose answer was
//  lost (the connection dropped) set it, and no reign began since, or its
//  value would name another broker.
static const char s_acquire_script [] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and ARGV[5] ~= '' and v == ARGV[5] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  v = false\n"
    "end\n"
    "if v then\n"
    "  local e, o, ep = string.match(v, '^(%d+) (%S+) (.*)$')\n"
    "  if o == ARGV[1] then\n"
    "    redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "    return {1, e, ep}\n"
    "  end\n"
    "  return {0, e or '0', ep or '', v, redis.call('PTTL', KEYS[1])}\n"
    "end\n"
    "local cur = redis.call('GET', KEYS[2]) or '0'\n"
    "local e = cur\n"
    "if ARGV[4] == '0' then\n"
    "  e = tostring(redis.call('INCR', KEYS[2]))\n"
    "elseif cur ~= ARGV[4] then\n"
    "  return {0, cur, ''}\n"
    "end\n"
    "redis.call('SET', KEYS[1], e .. ' ' .. ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])\n"
    "return {1, e, ARGV[2]}\n";

//  KEYS[1] lease; ARGV owner, epoch.  Deletes the lease if it is ours.
static const char s_release_script [] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and string.match(v, '^(%d+) (%S+)') == ARGV[2] then\n"
    "  local e, o = string.match(v, '^(%d+) (%S+)')\n"
    "  if o == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "end\n"
    "return 0\n";

struct _bm_lease_t {
    bm_store_t *store;          //  The owner's Redis connection (borrowed)
    char *lease_key;            //  <prefix>{bm}:leader
    char *epoch_key;            //  <prefix>{bm}:epoch
    char *owner;                //  This process, unique
    char *endpoint;             //  Where this process serves
    int64_t lease_ms;           //  TTL of the lease
    int64_t epoch;              //  Our reign's epoch, 0 when not leading
    char epoch_text [24];       //  The same, as text
    char leader [256];          //  Leader's endpoint as last seen
    bool replicated;            //  Sentinel mode: count it once WAIT 1 says so
    char wait_ms [24];          //  WAIT's timeout: a quarter lease
    char pending_epoch [24];    //  The epoch held, waiting for WAIT
    bool held;                  //  We lead
    int64_t valid_until;        //  Mono ms: our lease ends here at the latest
    int64_t next_at;            //  Mono ms: next acquire/renew
    bool in_flight;             //  A request is out
    int64_t sent_at;            //  Mono ms it was sent
    bool released;              //  bm_lease_release was called
    bool solo;                  //  A reign a lapse does not end (bm_lease_set_solo)
    int64_t rival_since;        //  Mono ms another's lease was first seen, 0: none
    int64_t rival_ends;         //  Mono ms its lease runs out at the latest (its PTTL)
    int64_t rival_ttl;          //  Its PTTL as last seen, -1: none (never runs out)
    bool rival_alive;           //  Another's lease was renewed since first seen
    char rival_epoch [24];      //  Its epoch as last seen
    char rival_value [600];     //  Its lease's value as last seen
    char stale [600];           //  A value to delete with the next acquire
    char refused [300];         //  Redis's error while it refuses the lease, "" none
    bm_lease_change_fn *change_fn;
    void *change_arg;
    bm_lease_rival_fn *rival_fn;
    void *rival_arg;
};

static void
s_set_held (bm_lease_t *self, bool held)
{
    if (self->held == held)
        return;
    self->held = held;
    if (!held) {
        self->epoch = 0;
        snprintf (self->epoch_text, sizeof self->epoch_text, "0");
    }
    if (self->change_fn)
        self->change_fn (held, self->change_arg);
}

static bool
s_reply_str (const redisReply *reply, char *out, size_t size)
{
    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) {
        snprintf (out, size, "%.*s", (int) reply->len, reply->str);
        return true;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        snprintf (out, size, "%lld", reply->integer);
        return true;
    }
    return false;
}

//  The lease is ours at epoch (text) since the acquire or renewal we sent.
static void
s_count (bm_lease_t *self, const char *epoch)
{
    self->epoch = strtoll (epoch, NULL, 10);
    snprintf (self->epoch_text, sizeof self->epoch_text, "%" PRId64, self->epoch);
    self->valid_until = self->sent_at + self->lease_ms - self->lease_ms / 10;
    s_set_held (self, true);
}

//  Sentinel mode: WAIT's answer after an acquire or renewal that held.
static void
s_on_wait (redisReply *reply, void *arg)
{
    bm_lease_t *self = (bm_lease_t *) arg;
    self->in_flight = false;
    if (!reply || self->released)
        return;
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer >= 1)
        s_count (self, self->pending_epoch);
    else
        bm_warn (NULL, "lease: epoch %s not confirmed by a replica within %s ms: not counted",
                 self->pending_epoch, self->wait_ms);
}

//  Redis answered the acquire or renewal with an error: MISCONF (it cannot
//  persist), READONLY (a replica), OOM... (the renewal writes nothing new,
//  so maxmemory does not refuse it).  One ERROR per episode.
static void
s_on_refused (bm_lease_t *self, const char *error)
{
    if (*self->refused)
        return;
    //  Redis's first sentence names the error: enough for the log.
    const char *stop = strstr (error, ". ");
    int length = stop ? (int) (stop - error) : (int) strlen (error);
    snprintf (self->refused, sizeof self->refused, "%.*s", length, error);
    bm_error (NULL, "lease: redis refuses to %s the lease (%s): %s; %s",
              self->held ? "renew" : "take", self->refused, self->solo && self->held
              ? "this broker (BROKER_HA off) keeps its reign and takes its epoch again once "
                "Redis takes writes"
              : "while it refuses writes no broker can hold the lease (a leader steps down once "
                "its lease runs out, a standby cannot take it) and none leads",
              strncmp (error, "MISCONF", 7) == 0
              ? "fix Redis's persistence: free the disk it saves to (redis-cli info persistence: "
                "rdb_last_bgsave_status, the Redis log names the error), after which Redis takes "
                "writes again at its next successful BGSAVE"
              : "fix Redis (its log names the error)");
}

//  What the two clocks may disagree on since another's lease was first
//  seen: 10 ms of rounding and 0.5 % of the time elapsed (a wall clock
//  that NTP slews).
static int64_t
s_ttl_slack (bm_lease_t *self, int64_t now)
{
    return 10 + (now - self->rival_since) / 200;
}

static void
s_on_acquire (redisReply *reply, void *arg)
{
    bm_lease_t *self = (bm_lease_t *) arg;
    self->in_flight = false;
    if (!reply)
        return;                 //  Redis away: the next tick tries again
    if (reply->type == REDIS_REPLY_ERROR && !self->released) {
        s_on_refused (self, reply->str);
        return;
    }
    char epoch [24], endpoint [256];
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 || reply->elements > 5
    ||  reply->element [0]->type != REDIS_REPLY_INTEGER
    ||  !s_reply_str (reply->element [1], epoch, sizeof epoch)
    ||  !s_reply_str (reply->element [2], endpoint, sizeof endpoint)) {
        bm_warn (NULL, "lease: unexpected answer from redis (%s)",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "not {held, epoch, endpoint}");
        return;
    }
    if (self->released)
        return;
    if (*self->refused) {
        bm_info (NULL, "lease: redis takes the lease's writes again");
        self->refused [0] = 0;
    }
    snprintf (self->leader, sizeof self->leader, "%s", endpoint);
    if (reply->elements < 4 || !s_reply_str (reply->element [3], self->rival_value,
                                             sizeof self->rival_value))
        self->rival_value [0] = 0;
    if (reply->element [0]->integer == 1)
        self->rival_since = 0;
    else
    if (!self->held && *endpoint) {
        //  Another broker's lease.  Its PTTL tells when it runs out at the
        //  latest, on our clock: Redis counted it before its answer
        //  arrived.  Seen later with a PTTL that reaches past that (Redis
        //  counted it after our later request was sent), it was renewed:
        //  its owner is alive, whatever lease length it uses.  A lease
        //  without a TTL never runs out: waiting is of no use.  Both clocks
        //  count whole ms, and Redis's is its wall clock: a slack covers
        //  that (a renewed lease reaches further with each renewal).
        int64_t now = bm_mono_ms ();
        int64_t ttl = reply->elements > 4 && reply->element [4]->type == REDIS_REPLY_INTEGER
                    ? reply->element [4]->integer : -1;
        if (self->rival_since == 0 || !streq (self->rival_epoch, epoch)) {
            self->rival_since = now;
            self->rival_ends = now + ttl;
        }
        else
        if (ttl >= 0 && self->sent_at + ttl > self->rival_ends + s_ttl_slack (self, now))
            self->rival_alive = true;
        else
        if (ttl >= 0 && now + ttl < self->rival_ends)
            self->rival_ends = now + ttl;
        if (ttl < 0)
            self->rival_alive = true;
        self->rival_ttl = ttl;
        snprintf (self->rival_epoch, sizeof self->rival_epoch, "%s", epoch);
        if (self->rival_fn && *self->rival_value)
            self->rival_fn (self->rival_value, self->rival_arg);
        return;
    }
    if (reply->element [0]->integer == 1) {
        if (self->replicated) {
            //  Counted once a replica has it too: a Redis failover to
            //  that replica then keeps the epoch and the lease.
            snprintf (self->pending_epoch, sizeof self->pending_epoch, "%s", epoch);
            const char *argv [] = { "WAIT", "1", self->wait_ms };
            size_t lens [] = { 4, 1, strlen (self->wait_ms) };
            if (bm_store_query_ahead (self->store, s_on_wait, self, 3, argv, lens) == 0)
                self->in_flight = true;
            return;
        }
        s_count (self, epoch);
    }
    else
    if (self->held && self->solo && !*endpoint && strtoll (epoch, NULL, 10) < self->epoch) {
        //  Nobody holds the lease and the counter is below our epoch:
        //  Redis lost its data (restarted without it).  No other reign
        //  began: take a new epoch (the next acquire increments).
        bm_warn (NULL, "lease: redis has no epoch %" PRId64 " any more (its counter is at %s: "
                 "its data was lost?): taking a new epoch", self->epoch, epoch);
        snprintf (self->epoch_text, sizeof self->epoch_text, "0");
        self->next_at = 0;
    }
    else
    if (self->held) {
        bm_warn (NULL, "lease: epoch %s belongs to %s now", epoch,
                 *endpoint ? endpoint : "another broker");
        s_set_held (self, false);
    }
}

static void
s_on_release (redisReply *reply, void *arg)
{
    (void) reply;
    bm_lease_t *self = (bm_lease_t *) arg;
    self->in_flight = false;
}

static void
s_send_acquire (bm_lease_t *self, int64_t now)
{
    char ms [24];
    snprintf (ms, sizeof ms, "%" PRId64, self->lease_ms);
    const char *argv [] = { "EVAL", s_acquire_script, "2", self->lease_key, self->epoch_key,
                            self->owner, self->endpoint, ms, self->epoch_text, self->stale };
    size_t lens [10];
    for (int i = 0; i < 10; i++)
        lens [i] = strlen (argv [i]);
    self->sent_at = now;
    if (bm_store_query_ahead (self->store, s_on_acquire, self, 10, argv, lens) == 0) {
        self->in_flight = true;
        self->stale [0] = 0;
    }
}

void
bm_lease_take_stale (bm_lease_t *self, const char *value)
{
    snprintf (self->stale, sizeof self->stale, "%s", value);
    self->next_at = 0;
}

const char *
bm_lease_rival_value (bm_lease_t *self)
{
    return self->held ? "" : self->rival_value;
}

void
bm_lease_set_replicated (bm_lease_t *self, bool replicated)
{
    self->replicated = replicated;
    snprintf (self->wait_ms, sizeof self->wait_ms, "%" PRId64,
              self->lease_ms / 4 > 0 ? self->lease_ms / 4 : 1);
}

void
bm_lease_tick (bm_lease_t *self, int64_t now)
{
    if (self->released)
        return;
    //  A solo reign outlives a lapse: the next renewal takes the same
    //  epoch again if no other broker took the lease meanwhile.
    if (self->held && !self->solo && now >= self->valid_until) {
        bm_warn (NULL, "lease: epoch %" PRId64 " not renewed within %" PRId64 " ms: lost",
                 self->epoch, self->lease_ms);
        s_set_held (self, false);
    }
    if (self->in_flight || now < self->next_at)
        return;
    //  A leader renews every quarter lease; a standby asks every eighth;
    //  a request that could not be sent (Redis away) goes at the next tick.
    s_send_acquire (self, now);
    if (self->in_flight)
        self->next_at = now + (self->held ? self->lease_ms / 4 : self->lease_ms / 8);
}

void
bm_lease_ask_now (bm_lease_t *self, int64_t now)
{
    self->next_at = 0;
    bm_lease_tick (self, now);
}

void
bm_lease_set_solo (bm_lease_t *self, bool solo)
{
    self->solo = solo;
}

int64_t
bm_lease_rival_ttl (bm_lease_t *self)
{
    return self->rival_ttl;
}

const char *
bm_lease_refused (bm_lease_t *self)
{
    return self->refused;
}

bool
bm_lease_rival_alive (bm_lease_t *self)
{
    return !self->held && self->rival_alive;
}

const char *
bm_lease_rival_epoch (bm_lease_t *self)
{
    return self->rival_since ? self->rival_epoch : "";
}

bool
bm_lease_held (bm_lease_t *self, int64_t now)
{
    return self->held && now < self->valid_until;
}

int64_t
bm_lease_epoch (bm_lease_t *self)
{
    return self->epoch;
}

const char *
bm_lease_epoch_text (bm_lease_t *self)
{
    return self->epoch_text;
}

const char *
bm_lease_epoch_key (bm_lease_t *self)
{
    return self->epoch_key;
}

const char *
bm_lease_leader (bm_lease_t *self)
{
    return self->leader;
}

void
bm_lease_set_endpoint (bm_lease_t *self, const char *endpoint)
{
    char *copy = strdup (endpoint);
    if (copy) {
        free (self->endpoint);
        self->endpoint = copy;
    }
}

void
bm_lease_release (bm_lease_t *self)
{
    if (self->released)
        return;
    self->released = true;
    if (!self->held)
        return;
    const char *argv [] = { "EVAL", s_release_script, "1", self->lease_key,
                            self->owner, self->epoch_text };
    size_t lens [6];
    for (int i = 0; i < 6; i++)
        lens [i] = strlen (argv [i]);
    //  An acquire in flight answers first (one connection, in order).
    if (bm_store_query (self->store, s_on_release, self, 6, argv, lens) == 0)
        self->in_flight = true;
    bm_info (NULL, "lease: epoch %" PRId64 " released", self->epoch);
    self->held = false;
}

bool
bm_lease_busy (bm_lease_t *self)
{
    return self->in_flight;
}

void
bm_lease_set_change_fn (bm_lease_t *self, bm_lease_change_fn *fn, void *arg)
{
    self->change_fn = fn;
    self->change_arg = arg;
}

void
bm_lease_set_rival_fn (bm_lease_t *self, bm_lease_rival_fn *fn, void *arg)
{
    self->rival_fn = fn;
    self->rival_arg = arg;
}

bm_lease_t *
bm_lease_new (bm_store_t *store, const char *prefix, const char *owner,
              const char *endpoint, int64_t lease_ms)
{
    if (!store || !prefix || !owner || !*owner || strchr (owner, ' ') || !endpoint
    ||  lease_ms < 100)
        return NULL;
    bm_lease_t *self = (bm_lease_t *) zmalloc (sizeof (bm_lease_t));
    self->store = store;
    self->lease_key = zsys_sprintf ("%s{bm}:leader", prefix);
    self->epoch_key = zsys_sprintf ("%s{bm}:epoch", prefix);
    self->owner = strdup (owner);
    self->endpoint = strdup (endpoint);
    self->lease_ms = lease_ms;
    snprintf (self->epoch_text, sizeof self->epoch_text, "0");
    if (!self->lease_key || !self->epoch_key || !self->owner || !self->endpoint)
        bm_lease_destroy (&self);
    return self;
}

void
bm_lease_destroy (bm_lease_t **self_p)
{
    if (*self_p) {
        bm_lease_t *self = *self_p;
        zstr_free (&self->lease_key);
        zstr_free (&self->epoch_key);
        free (self->owner);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Self-test: two leases (two "brokers") on one real redis-server.

typedef struct {
    zloop_t *loop;
    bm_lease_t *a, *b;
    int64_t until;              //  Mono ms: give up
    bool (*done) (void *arg);   //  Stop when true
    void *done_arg;
    int changes;                //  Change callbacks seen
} s_test_t;

static int
s_test_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    s_test_t *t = (s_test_t *) arg;
    int64_t now = bm_mono_ms ();
    if (t->a)
        bm_lease_tick (t->a, now);
    if (t->b)
        bm_lease_tick (t->b, now);
    if (t->done (t->done_arg) || now > t->until)
        return -1;
    return 0;
}

static void
s_test_run (s_test_t *t, bool (*done) (void *), void *arg, int64_t timeout_ms)
{
    t->done = done;
    t->done_arg = arg;
    t->until = bm_mono_ms () + timeout_ms;
    int timer = zloop_timer (t->loop, 20, 0, s_test_timer, t);
    zloop_start (t->loop);
    zloop_timer_end (t->loop, timer);
}

static bool
s_test_one_leads (void *arg)
{
    s_test_t *t = (s_test_t *) arg;
    int64_t now = bm_mono_ms ();
    return bm_lease_held (t->a, now) != bm_lease_held (t->b, now)
        && (bm_lease_held (t->a, now) ? *bm_lease_leader (t->b) : *bm_lease_leader (t->a));
}

static bool
s_test_held (void *arg)
{
    return bm_lease_held ((bm_lease_t *) arg, bm_mono_ms ());
}

static bool
s_test_rival_alive (void *arg)
{
    return bm_lease_rival_alive ((bm_lease_t *) arg);
}

static bool
s_test_idle (void *arg)
{
    return !bm_lease_busy ((bm_lease_t *) arg);
}

static bool
s_test_never (void *arg)
{
    (void) arg;
    return false;
}

//  Fencing in bm_store: a write callback's outcome, and the fenced hook.
typedef struct {
    int calls;
    bool ok;                    //  Last reply was not NULL and not an error
    char text [64];             //  Last reply as text
    long long integer;          //  Last reply as an integer
    int fenced;
} s_write_t;

static void
s_test_written (redisReply *reply, void *arg)
{
    s_write_t *w = (s_write_t *) arg;
    w->calls++;
    w->ok = reply && reply->type != REDIS_REPLY_ERROR;
    snprintf (w->text, sizeof w->text, "%s", reply && reply->str ? reply->str : "");
    w->integer = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
}

static void
s_test_fenced (void *arg)
{
    ((s_write_t *) arg)->fenced++;
}

static bool
s_test_called (void *arg)
{
    return ((s_write_t *) arg)->calls > 0;
}

static void
s_test_command (s_test_t *t, bm_store_t *store, bool query, s_write_t *w, int argc, const char **argv)
{
    size_t lens [8];
    for (int i = 0; i < argc; i++)
        lens [i] = strlen (argv [i]);
    *w = (s_write_t) { .fenced = w->fenced };
    if (query)
        BM_CHECK (bm_store_query (store, s_test_written, w, argc, argv, lens) == 0);
    else {
        BM_CHECK (bm_store_write (store, true, s_test_written, w, argc, argv, lens) == 0);
        bm_store_flush (store);
    }
    s_test_run (t, s_test_called, w, 3000);
    BM_CHECK (w->calls == 1);
}

static void
s_test_change (bool held, void *arg)
{
    (void) held;
    ((s_test_t *) arg)->changes++;
}

//  A redis-server for the self-test, daemonized, with its pid file and log
//  in dir; returns its port once it answers (aborts after 20 tries).  The
//  port is drawn at random from below the kernel's ephemeral range, free
//  when drawn: a port of that range (what bind to port 0 gives) can be
//  handed to anything binding port 0 or connecting out between the probe
//  and redis-server's own bind.  A port taken meanwhile all the same makes
//  redis-server exit ("Could not create server TCP listening socket"): the
//  next try draws another.  It is ours only when it answers CONFIG GET dir
//  with dir (another test's server may sit on a port drawn here).
static bool
s_test_redis_ours (int port, const char *dir)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    BM_CHECK (fd >= 0);
    struct timeval tv = { .tv_sec = 2 };
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons (port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    bool ours = false;
    if (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0) {
        const char ask [] = "*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$3\r\ndir\r\n";
        char reply [1024];
        size_t got = 0;
        if (write (fd, ask, sizeof ask - 1) == (ssize_t) (sizeof ask - 1))
            while (got < sizeof reply - 1 && !ours) {
                ssize_t n = read (fd, reply + got, sizeof reply - 1 - got);
                if (n <= 0)
                    break;
                got += (size_t) n;
                reply [got] = 0;
                ours = strstr (reply, dir) != NULL;
            }
    }
    close (fd);
    return ours;
}

static int
s_test_redis_start (const char *dir)
{
    int low = 32768;
    FILE *range = fopen ("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (range) {
        if (fscanf (range, "%d", &low) != 1)
            low = 32768;
        fclose (range);
    }
    if (low < 11000)
        low = 11000;
    srandom ((unsigned) (getpid () ^ bm_mono_ms ()));
    for (int attempt = 0; attempt < 20; attempt++) {
        int port = 10000 + (int) (random () % (low - 10000));
        int probe = socket (AF_INET, SOCK_STREAM, 0);
        BM_CHECK (probe >= 0);
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons (port),
                                    .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
        int taken = bind (probe, (struct sockaddr *) &addr, sizeof addr);
        close (probe);
        if (taken)
            continue;
        char command [512], path [256];
        snprintf (command, sizeof command,
                  "redis-server --port %d --bind 127.0.0.1 --dir %s --save '' --appendonly no "
                  "--daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log", port, dir, dir, dir);
        BM_CHECK (system (command) == 0);
        snprintf (path, sizeof path, "%s/redis.log", dir);
        //  Up to 15 s for it to answer (a loaded machine, a sanitizer run).
        int64_t until = bm_mono_ms () + 15000;
        bool failed = false;
        while (!failed && bm_mono_ms () < until) {
            if (s_test_redis_ours (port, dir))
                return port;
            //  Its log says so when the port was taken.
            char log [8192];
            size_t log_size = 0;
            FILE *f = fopen (path, "r");
            if (f) {
                log_size = fread (log, 1, sizeof log - 1, f);
                fclose (f);
            }
            log [log_size] = 0;
            failed = strstr (log, "Could not create server TCP listening socket") != NULL;
            if (!failed)
                zclock_sleep (20);
        }
        BM_CHECK (failed);          //  Neither up nor failing after 15 s
        unlink (path);
    }
    BM_CHECK (!"no port for the self-test's redis-server after 20 tries");
    return -1;
}

void
bm_lease_test (bool verbose)
{
    if (verbose)
        printf (" * bm_lease: ");
    //  A throwaway redis-server of this test's own (s_test_redis_start).
    char dir [] = "/tmp/bm_lease_test.XXXXXX";
    BM_CHECK (mkdtemp (dir));
    int port = s_test_redis_start (dir);
    char command [512];
    char url [64];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/0", port);

    s_test_t t = { .loop = zloop_new () };
    bm_store_t *store_a = bm_store_new (t.loop, url, NULL, NULL, 1000);
    bm_store_t *store_b = bm_store_new (t.loop, url, NULL, NULL, 1000);
    BM_CHECK (store_a && store_b);
    BM_CHECK (bm_lease_new (store_a, "t:", "has space", "x", 1000) == NULL);
    bm_lease_t *lease_a = bm_lease_new (store_a, "t:", "broker-a", "tcp://a:5555", 600);
    bm_lease_t *lease_b = bm_lease_new (store_b, "t:", "broker-b", "tcp://b:5555", 600);
    t.a = lease_a;
    t.b = lease_b;
    BM_CHECK (t.a && t.b);
    bm_lease_set_change_fn (t.a, s_test_change, &t);
    bm_lease_set_change_fn (t.b, s_test_change, &t);
    BM_CHECK (streq (bm_lease_epoch_key (t.a), "t:{bm}:epoch"));

    //  Both compete: exactly one leads, the other knows its endpoint.
    s_test_run (&t, s_test_one_leads, &t, 5000);
    BM_CHECK (s_test_one_leads (&t));
    bm_lease_t *leader = bm_lease_held (t.a, bm_mono_ms ()) ? t.a : t.b;
    bm_lease_t *standby = leader == t.a ? t.b : t.a;
    int64_t first_epoch = bm_lease_epoch (leader);
    BM_CHECK (first_epoch == 1);
    BM_CHECK (bm_lease_epoch (standby) == 0);
    BM_CHECK (streq (bm_lease_leader (standby), leader == t.a ? "tcp://a:5555" : "tcp://b:5555"));
    BM_CHECK (t.changes == 1);

    //  Renewals keep it over several lease lengths: nobody takes over.
    s_test_run (&t, s_test_never, NULL, 1500);
    BM_CHECK (bm_lease_held (leader, bm_mono_ms ()));
    BM_CHECK (bm_lease_epoch (leader) == first_epoch);
    BM_CHECK (t.changes == 1);

    //  The leader stops renewing (as if killed): the standby takes over
    //  with the next epoch; the old one, ticking again, finds it lost.
    t.a = standby;
    t.b = NULL;
    s_test_run (&t, s_test_held, standby, 3000);
    BM_CHECK (bm_lease_held (standby, bm_mono_ms ()));
    BM_CHECK (bm_lease_epoch (standby) == first_epoch + 1);
    BM_CHECK (t.changes == 2);
    bm_lease_tick (leader, bm_mono_ms ());
    BM_CHECK (!bm_lease_held (leader, bm_mono_ms ()));
    BM_CHECK (bm_lease_epoch (leader) == 0);
    BM_CHECK (t.changes == 3);
    //  It asks again and learns who leads now; it does not take over.
    t.b = leader;
    s_test_run (&t, s_test_never, NULL, 300);
    BM_CHECK (!bm_lease_held (leader, bm_mono_ms ()));
    BM_CHECK (streq (bm_lease_leader (leader), bm_lease_leader (standby)));

    //  Release: the new leader gives it up; the other takes the next epoch
    //  without waiting for a TTL.
    bm_lease_release (standby);
    BM_CHECK (!bm_lease_held (standby, bm_mono_ms ()));
    s_test_run (&t, s_test_idle, standby, 2000);
    int64_t released_at = bm_mono_ms ();
    s_test_run (&t, s_test_held, leader, 2000);
    BM_CHECK (bm_lease_held (leader, bm_mono_ms ()));
    BM_CHECK (bm_mono_ms () - released_at < 500);
    BM_CHECK (bm_lease_epoch (leader) == first_epoch + 2);
    t.a = t.b = NULL;

    //  Fencing: a store fenced on the leader's epoch writes while the
    //  counter holds it; once another reign began (INCR), its group runs
    //  not at all, it says FENCED once and refuses later writes.
    bm_store_t *fenced = bm_store_new (t.loop, url, NULL, NULL, 1000);
    s_write_t w = { 0 };
    bm_store_set_fence (fenced, bm_lease_epoch_key (leader), bm_lease_epoch_text (leader),
                        s_test_fenced, &w);
    const char *set_x [] = { "SET", "t:x", "written" };
    s_test_command (&t, fenced, false, &w, 3, set_x);
    BM_CHECK (w.ok && streq (w.text, "OK") && w.fenced == 0);
    //  A large group (one SUBMIT burst's worth): each write's header grows
    //  in the EVAL; every write lands.
    const char *set_many [] = { "SET", NULL, "v" };
    char names [600][16];
    for (int i = 0; i < 600; i++) {
        snprintf (names [i], sizeof names [i], "t:many:%d", i);
        set_many [1] = names [i];
        size_t many_lens [3] = { 3, strlen (names [i]), 1 };
        BM_CHECK (bm_store_write (fenced, true, i == 599 ? s_test_written : NULL, &w,
                                  3, set_many, many_lens) == 0);
    }
    w.calls = 0;
    bm_store_flush (fenced);
    s_test_run (&t, s_test_called, &w, 3000);
    BM_CHECK (w.ok && w.fenced == 0);
    const char *count_many [] = { "EXISTS", "t:many:0", "t:many:299", "t:many:599" };
    s_test_command (&t, store_b, true, &w, 4, count_many);
    BM_CHECK (w.integer == 3);
    const char *get_x [] = { "GET", "t:x" };
    s_test_command (&t, store_b, true, &w, 2, get_x);
    BM_CHECK (streq (w.text, "written"));
    const char *incr [] = { "INCR", "t:{bm}:epoch" };
    s_test_command (&t, store_b, false, &w, 2, incr);
    const char *set_y [] = { "SET", "t:y", "late" };
    s_test_command (&t, fenced, false, &w, 3, set_y);
    BM_CHECK (!w.ok && w.fenced == 1 && bm_store_fenced (fenced));
    size_t lens [3] = { 3, 3, 4 };
    BM_CHECK (bm_store_write (fenced, true, NULL, NULL, 3, set_y, lens) == -1);
    const char *get_y [] = { "EXISTS", "t:y" };
    s_test_command (&t, store_b, true, &w, 2, get_y);
    BM_CHECK (w.ok && w.integer == 0);
    bm_store_destroy (&fenced);

    //  A server that refuses a write of the group (here: it wants a replica
    //  it does not have): the transaction does not run, the group is not
    //  confirmed, is not counted as fenced, and lands once writes are taken.
    bm_store_t *refused = bm_store_new (t.loop, url, NULL, NULL, 1000);
    const char *epoch_now [] = { "GET", "t:{bm}:epoch" };
    s_test_command (&t, store_b, true, &w, 2, epoch_now);
    char current [24];
    snprintf (current, sizeof current, "%s", w.text);
    w = (s_write_t) { 0 };
    bm_store_set_fence (refused, "t:{bm}:epoch", current, s_test_fenced, &w);
    const char *strict [] = { "CONFIG", "SET", "min-replicas-to-write", "1" };
    s_test_command (&t, store_b, true, &w, 4, strict);
    const char *set_z [] = { "SET", "t:z", "held back" };
    size_t z_lens [3] = { 3, 3, 9 };
    w.calls = 0;
    BM_CHECK (bm_store_write (refused, true, s_test_written, &w, 3, set_z, z_lens) == 0);
    bm_store_flush (refused);
    s_test_run (&t, s_test_called, &w, 700);
    BM_CHECK (w.calls == 0 && w.fenced == 0 && !bm_store_fenced (refused));
    const char *lax [] = { "CONFIG", "SET", "min-replicas-to-write", "0" };
    s_write_t w2 = { 0 };
    s_test_command (&t, store_b, true, &w2, 4, lax);
    s_test_run (&t, s_test_called, &w, 5000);
    BM_CHECK (w.calls == 1 && w.ok && w.fenced == 0);
    const char *get_z [] = { "GET", "t:z" };
    s_test_command (&t, store_b, true, &w2, 2, get_z);
    BM_CHECK (streq (w2.text, "held back"));
    bm_store_destroy (&refused);
    leader = standby = NULL;

    //  Under Sentinel (replicated): the lease counts only once a replica
    //  has it; this server has none, so it is never held.
    bm_store_t *store_c = bm_store_new (t.loop, url, NULL, NULL, 1000);
    bm_lease_t *lease_c = bm_lease_new (store_c, "t2:", "broker-c", "tcp://c:5555", 400);
    bm_lease_set_replicated (lease_c, true);
    t.a = lease_c;
    s_test_run (&t, s_test_held, lease_c, 1200);
    BM_CHECK (!bm_lease_held (lease_c, bm_mono_ms ()));
    t.a = NULL;
    s_test_run (&t, s_test_idle, lease_c, 1000);
    bm_store_destroy (&store_c);
    bm_lease_destroy (&lease_c);

    //  Solo (a broker without BROKER_HA): a lapse on its clock does not
    //  end its reign, and it takes its epoch again; a counter that Redis
    //  lost gives it a new one; another broker that took the lease after
    //  a lapse ends it; a solo broker that is not leading sees another's
    //  renewed lease as alive, after a lease and a tenth.
    bm_store_t *store_d = bm_store_new (t.loop, url, NULL, NULL, 1000);
    bm_store_t *store_e = bm_store_new (t.loop, url, NULL, NULL, 1000);
    bm_lease_t *solo = bm_lease_new (store_a, "t3:", "broker-solo", "tcp://s:5555", 400);
    bm_lease_t *ha = bm_lease_new (store_d, "t3:", "broker-ha", "tcp://h:5555", 400);
    bm_lease_t *late = bm_lease_new (store_e, "t3:", "broker-late", "tcp://l:5555", 400);
    bm_lease_set_solo (solo, true);
    bm_lease_set_solo (late, true);
    t.changes = 0;
    bm_lease_set_change_fn (solo, s_test_change, &t);
    t.a = solo;
    s_test_run (&t, s_test_held, solo, 2000);
    BM_CHECK (bm_lease_held (solo, bm_mono_ms ()) && bm_lease_epoch (solo) == 1 && t.changes == 1);
    t.a = NULL;
    s_test_run (&t, s_test_never, NULL, 700);
    t.a = solo;
    s_test_run (&t, s_test_never, NULL, 300);
    BM_CHECK (bm_lease_held (solo, bm_mono_ms ()) && bm_lease_epoch (solo) == 1 && t.changes == 1);
    const char *lost [] = { "DEL", "t3:{bm}:epoch", "t3:{bm}:leader" };
    s_test_command (&t, store_b, true, &w, 3, lost);
    s_test_run (&t, s_test_never, NULL, 500);
    BM_CHECK (bm_lease_held (solo, bm_mono_ms ()) && bm_lease_epoch (solo) == 1 && t.changes == 1);
    const char *counter [] = { "GET", "t3:{bm}:epoch" };
    s_test_command (&t, store_b, true, &w, 2, counter);
    BM_CHECK (streq (w.text, "1"));
    //  Its own lease at another epoch (an acquire that took epoch 3 but
    //  whose answer was lost): the lease is its own, held at that epoch;
    //  it does not drop it as another broker's.
    const char *own [] = { "SET", "t3:{bm}:leader", "3 broker-solo tcp://s:5555", "PX", "400" };
    const char *own_counter [] = { "SET", "t3:{bm}:epoch", "3" };
    s_test_command (&t, store_b, true, &w, 5, own);
    s_test_command (&t, store_b, true, &w, 3, own_counter);
    s_test_run (&t, s_test_never, NULL, 300);
    BM_CHECK (bm_lease_held (solo, bm_mono_ms ()) && bm_lease_epoch (solo) == 3 && t.changes == 1);
    //  It lapses; an HA broker takes the lease; the solo one learns it.
    t.a = NULL;
    t.b = ha;
    s_test_run (&t, s_test_held, ha, 2000);
    BM_CHECK (bm_lease_held (ha, bm_mono_ms ()) && bm_lease_epoch (ha) == 4);
    t.a = solo;
    s_test_run (&t, s_test_never, NULL, 300);
    BM_CHECK (t.changes == 2 && !bm_lease_held (solo, bm_mono_ms ()));
    BM_CHECK (streq (bm_lease_leader (solo), "tcp://h:5555"));
    //  A solo broker arriving now finds the HA broker alive once it saw it
    //  renew the lease (its PTTL reached past the first one's end).
    t.a = late;
    s_test_run (&t, s_test_rival_alive, late, 2000);
    BM_CHECK (bm_lease_rival_alive (late) && !bm_lease_held (late, bm_mono_ms ()));
    BM_CHECK (streq (bm_lease_rival_epoch (late), "4"));
    t.a = t.b = NULL;
    //  A lease nobody renews, longer than this broker's own (a dead broker
    //  that used a longer BROKER_LEASE_MS): not alive, however long it is
    //  seen (here over three of its own leases); it is taken once it ran
    //  out in Redis.
    bm_store_t *store_f = bm_store_new (t.loop, url, NULL, NULL, 1000);
    bm_lease_t *fresh = bm_lease_new (store_f, "t4:", "broker-fresh", "tcp://f:5555", 400);
    bm_lease_set_solo (fresh, true);
    const char *dead [] = { "SET", "t4:{bm}:leader", "7 elsewhere:1:x:y tcp://d:5555", "PX", "1600" };
    s_test_command (&t, store_b, true, &w, 5, dead);
    t.a = fresh;
    s_test_run (&t, s_test_never, NULL, 1300);
    BM_CHECK (!bm_lease_rival_alive (fresh) && streq (bm_lease_rival_epoch (fresh), "7"));
    BM_CHECK (bm_lease_rival_ttl (fresh) > 0 && bm_lease_rival_ttl (fresh) <= 400);
    s_test_run (&t, s_test_held, fresh, 2000);
    BM_CHECK (bm_lease_held (fresh, bm_mono_ms ()) && !bm_lease_rival_alive (fresh));
    //  A lease without a TTL never runs out: alive at once.
    const char *stuck [] = { "SET", "t5:{bm}:leader", "2 elsewhere:1:x:y tcp://d:5555" };
    s_test_command (&t, store_b, true, &w, 3, stuck);
    bm_lease_t *stuck_lease = bm_lease_new (store_e, "t5:", "broker-stuck", "tcp://g:5555", 400);
    t.a = stuck_lease;
    s_test_run (&t, s_test_rival_alive, stuck_lease, 1000);
    BM_CHECK (bm_lease_rival_alive (stuck_lease) && bm_lease_rival_ttl (stuck_lease) == -1);
    t.a = NULL;
    s_test_run (&t, s_test_idle, fresh, 1000);
    s_test_run (&t, s_test_idle, stuck_lease, 1000);
    bm_store_destroy (&store_f);
    bm_lease_destroy (&fresh);
    bm_lease_destroy (&stuck_lease);
    s_test_run (&t, s_test_idle, ha, 1000);
    s_test_run (&t, s_test_idle, late, 1000);
    s_test_run (&t, s_test_idle, solo, 1000);
    bm_store_destroy (&store_d);
    bm_store_destroy (&store_e);
    bm_lease_destroy (&solo);
    bm_lease_destroy (&ha);
    bm_lease_destroy (&late);

    bm_store_destroy (&store_a);
    bm_store_destroy (&store_b);
    bm_lease_destroy (&lease_a);
    bm_lease_destroy (&lease_b);
    BM_CHECK (lease_a == NULL);
    zloop_destroy (&t.loop);
    snprintf (command, sizeof command, "kill $(cat %s/redis.pid) 2>/dev/null; rm -rf %s", dir, dir);
    BM_CHECK (system (command) == 0);
    if (verbose)
        printf ("OK\n");
}

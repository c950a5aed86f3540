/*  bm_sentinel_lookup.c - where the Redis master is, asked of the
    sentinels on the caller's zloop, never blocking it.

    bm_sentinel_master's question and answers, one sentinel at a time: a
    host name resolved off the loop (bm_resolve_zloop, given up on after
    BM_RESOLVE_WAIT_MS), a non-blocking connect, SENTINEL
    get-master-addr-by-name, and a deadline (a zloop timer) for the
    connect and answer.  A sentinel that refuses, closes, does not
    know the master or stays silent past the deadline hands over to the
    next one; the loop goes on serving everything else meanwhile.  The
    owner's callback always runs from a timer of ours, never from inside a
    hiredis callback: by then the connection used is freed, so the owner
    may start the next lookup (whose connection the adapter then drives)
    or destroy this one.  */
#include "bm_sentinel.h"
#include "bm_endpoints.h"
#include "bm_redis_zloop.h"
#include "bm_resolve.h"
#include "bm_resolve_zloop.h"

#include <hiredis/async.h>

struct _bm_sentinel_lookup_t {
    zloop_t *loop;
    char *sentinels;            //  The list, as given
    char *name;                 //  The master asked for
    int timeout_ms;             //  Bound on each sentinel's connect and answer
    bm_sentinel_found_fn *fn;
    void *arg;
    bm_endpoints_t *list;       //  This lookup's walk: current = next to ask
    size_t asked;               //  Sentinels asked so far in this lookup
    char sentinel [300];        //  The one being asked (host:port)
    int sentinel_port;          //  Its port
    bm_resolve_zloop_t *resolver;   //  Resolves its host name
    redisAsyncContext *ac;      //  Connection to it, or NULL
    bm_redis_zloop_t io;        //  Drives ac from the loop
    int timer;                  //  The sentinel's deadline, or the next step, or -1
    bool busy;                  //  A lookup is in progress
    bool done;                  //  ... and has its outcome, told at the next step
    int rc;                     //  The outcome: 0 (host, port) or -1 (why)
    char host [256];
    int port;
    char why [512];
};

static int s_on_timer (zloop_t *loop, int timer_id, void *arg);

//  Go on at the next loop turn: ask the next sentinel, or tell the owner.
//  Never at once from a hiredis callback: the context it runs for is freed
//  after it returns, and with it the adapter's poller, whichever context
//  the adapter drives by then.
static void
s_step (bm_sentinel_lookup_t *self)
{
    if (self->timer != -1)
        zloop_timer_end (self->loop, self->timer);
    self->timer = zloop_timer (self->loop, 0, 1, s_on_timer, self);
}

//  Let the connection go; from inside its callback hiredis frees it once
//  the callback returns, and our callbacks ignore it from now on.
static void
s_release (bm_sentinel_lookup_t *self)
{
    redisAsyncContext *ac = self->ac;
    self->ac = NULL;
    if (ac)
        redisAsyncFree (ac);
}

static void
s_finish (bm_sentinel_lookup_t *self, int rc)
{
    self->rc = rc;
    self->done = true;
    s_step (self);
}

//  The connection to the sentinel asked failed or went away before it
//  answered: hiredis frees it.
static void
s_lost (bm_sentinel_lookup_t *self, const char *why)
{
    self->ac = NULL;
    snprintf (self->why, sizeof self->why, "sentinel %s: %s", self->sentinel, why);
    s_step (self);
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    bm_sentinel_lookup_t *self = (bm_sentinel_lookup_t *) ac->data;
    if (status != REDIS_OK && ac == self->ac)
        s_lost (self, ac->errstr);
}

static void
s_on_disconnect (const redisAsyncContext *ac, int status)
{
    (void) status;
    bm_sentinel_lookup_t *self = (bm_sentinel_lookup_t *) ac->data;
    if (ac == self->ac)
        s_lost (self, ac->errstr [0] ? ac->errstr : "connection closed");
}

static void
s_on_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    bm_sentinel_lookup_t *self = (bm_sentinel_lookup_t *) privdata;
    if (ac != self->ac)
        return;                 //  Let go already
    if (!r) {
        //  The connection is going: its disconnect callback, if any, is
        //  then not ours.
        s_lost (self, ac->errstr [0] ? ac->errstr : "connection closed");
        return;
    }
    if (bm_sentinel_parse_master ((redisReply *) r, self->sentinel, self->name, self->host,
                                  sizeof self->host, &self->port, self->why, sizeof self->why)) {
        s_release (self);
        s_step (self);
        return;
    }
    s_release (self);
    s_finish (self, 0);
}

static void s_ask_next (bm_sentinel_lookup_t *self);

//  (Re)arm the one timer as the current sentinel's deadline.
static void
s_deadline (bm_sentinel_lookup_t *self, int ms)
{
    if (self->timer != -1)
        zloop_timer_end (self->loop, self->timer);
    self->timer = zloop_timer (self->loop, (size_t) ms, 1, s_on_timer, self);
}

//  Connect to the current sentinel at addr (numeric) and ask it: 0, or
//  -1 with why set when the connect failed at once (a loopback connect is
//  refused at once).
static int
s_ask (bm_sentinel_lookup_t *self, const char *addr)
{
    redisAsyncContext *ac = redisAsyncConnect (addr, self->sentinel_port);
    if (!ac || ac->err) {
        snprintf (self->why, sizeof self->why, "sentinel %s: %s", self->sentinel,
                  ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree (ac);
        return -1;
    }
    ac->data = self;
    self->ac = ac;
    bm_redis_zloop_attach (&self->io, ac);
    redisAsyncSetConnectCallback (ac, s_on_connect);
    redisAsyncSetDisconnectCallback (ac, s_on_disconnect);
    redisAsyncCommand (ac, s_on_reply, self, "SENTINEL get-master-addr-by-name %s", self->name);
    s_deadline (self, self->timeout_ms);
    return 0;
}

//  The sentinel's name resolved (ask it at that address), or not (ask
//  the next).
static void
s_on_resolved (int rc, const char *addr, const char *why, void *arg)
{
    bm_sentinel_lookup_t *self = (bm_sentinel_lookup_t *) arg;
    if (rc)
        snprintf (self->why, sizeof self->why, "sentinel %s: %s", self->sentinel, why);
    if (rc || s_ask (self, addr))
        s_ask_next (self);
}

//  Ask the next sentinel of the list; after the last, the lookup failed.
//  Not from a hiredis callback (s_step).
static void
s_ask_next (bm_sentinel_lookup_t *self)
{
    while (self->asked < bm_endpoints_size (self->list)) {
        const char *one = bm_endpoints_current (self->list);
        snprintf (self->sentinel, sizeof self->sentinel, "%s", one);
        bm_endpoints_next (self->list, false);
        self->asked++;
        char host [256];
        if (bm_sentinel_parse_addr (self->sentinel, strlen (self->sentinel), host, sizeof host,
                                    &self->sentinel_port))
            continue;
        if (bm_resolve_numeric (host)) {
            if (s_ask (self, host) == 0)
                return;
            continue;
        }
        //  hiredis would resolve a name in the loop's thread, for as long
        //  as the resolver waits.
        char why [256];
        if (bm_resolve_zloop_start (self->resolver, host, why, sizeof why) == 0)
            return;             //  On to s_on_resolved
        snprintf (self->why, sizeof self->why, "sentinel %s: %s", self->sentinel, why);
    }
    s_finish (self, -1);
}

static int
s_on_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_sentinel_lookup_t *self = (bm_sentinel_lookup_t *) arg;
    self->timer = -1;
    if (self->ac) {
        //  The sentinel's deadline: connected or not, it has not answered
        //  (frozen, or behind a partition that keeps the connection open).
        snprintf (self->why, sizeof self->why, "sentinel %s: no answer within %d ms",
                  self->sentinel, self->timeout_ms);
        s_release (self);       //  Freed now: not in one of its callbacks
        s_ask_next (self);
    }
    else
    if (self->done) {
        self->busy = false;
        self->done = false;
        //  Last: fn may start another lookup, or destroy this one.
        self->fn (self->rc, self->host, self->port, self->why, self->arg);
    }
    else
        s_ask_next (self);
    return 0;
}

//  --------------------------------------------------------------------------

bm_sentinel_lookup_t *
bm_sentinel_lookup_new (zloop_t *loop, const char *sentinels, const char *name, int timeout_ms,
                        bm_sentinel_found_fn *fn, void *arg)
{
    if (!sentinels || !bm_sentinel_list_valid (sentinels))
        return NULL;
    bm_sentinel_lookup_t *self = (bm_sentinel_lookup_t *) zmalloc (sizeof (bm_sentinel_lookup_t));
    self->loop = loop;
    self->sentinels = strdup (sentinels);
    self->name = strdup (name ? name : BM_SENTINEL_DEFAULT_MASTER);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    self->fn = fn;
    self->arg = arg;
    self->timer = -1;
    self->resolver = bm_resolve_zloop_new (loop, BM_RESOLVE_WAIT_MS, s_on_resolved, self);
    bm_redis_zloop_init (&self->io, loop, &self->ac, NULL, NULL);
    if (!self->sentinels || !self->name)
        bm_sentinel_lookup_destroy (&self);
    return self;
}

void
bm_sentinel_lookup_destroy (bm_sentinel_lookup_t **self_p)
{
    if (*self_p) {
        bm_sentinel_lookup_t *self = *self_p;
        if (self->timer != -1)
            zloop_timer_end (self->loop, self->timer);
        bm_resolve_zloop_destroy (&self->resolver);
        s_release (self);
        bm_endpoints_destroy (&self->list);
        free (self->sentinels);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

void
bm_sentinel_lookup_start (bm_sentinel_lookup_t *self)
{
    if (self->timer != -1) {
        zloop_timer_end (self->loop, self->timer);
        self->timer = -1;
    }
    bm_resolve_zloop_cancel (self->resolver);
    s_release (self);
    //  From the first sentinel each time, as bm_sentinel_master asks.
    bm_endpoints_destroy (&self->list);
    self->list = bm_endpoints_new (self->sentinels);
    self->asked = 0;
    self->busy = true;
    self->done = false;
    self->rc = -1;
    snprintf (self->why, sizeof self->why, "REDIS_SENTINELS is not a list of host:port");
    if (!self->list) {
        s_finish (self, -1);
        return;
    }
    //  Connects at once (no callback of ours runs before it returns); a
    //  refusal of every one is told at the next loop turn.
    s_ask_next (self);
}

bool
bm_sentinel_lookup_busy (bm_sentinel_lookup_t *self)
{
    return self->busy;
}

//  --------------------------------------------------------------------------
//  Self test: sentinels played on the test's own loop.

#include "bm_selftest.h"
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int calls;                  //  fn calls
    int rc;
    char host [256];
    int port;
    char why [512];
    int64_t started;            //  When the lookup started
    int64_t at;                 //  When fn ran
    int ticks;                  //  The loop's 10 ms ticks meanwhile
    int fd;                     //  A fake sentinel's accepted connection, or -1
} s_test_t;

static void
s_test_found (int rc, const char *host, int port, const char *why, void *arg)
{
    s_test_t *t = (s_test_t *) arg;
    t->calls++;
    t->rc = rc;
    snprintf (t->host, sizeof t->host, "%s", rc == 0 ? host : "");
    t->port = rc == 0 ? port : 0;
    snprintf (t->why, sizeof t->why, "%s", rc ? why : "");
    t->at = zclock_mono ();
}

static int
s_test_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    s_test_t *t = (s_test_t *) arg;
    t->ticks++;
    return t->calls ? -1 : 0;
}

static int
s_test_end (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id; (void) arg;
    return -1;
}

//  A listener on 127.0.0.1, its port in *port; backlog only (nobody
//  accepts: a sentinel that takes the connection and never answers).
static int
s_test_listener (int *port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    BM_CHECK (fd >= 0 && bind (fd, (struct sockaddr *) &sa, sizeof sa) == 0 && listen (fd, 8) == 0);
    BM_CHECK (getsockname (fd, (struct sockaddr *) &sa, &len) == 0);
    *port = ntohs (sa.sin_port);
    return fd;
}

//  The answering sentinel: accepts, and answers the first bytes read with
//  the master 10.0.0.7:6390.
static int
s_test_answer (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    s_test_t *t = (s_test_t *) arg;
    if (t->fd == -1) {
        t->fd = accept (item->fd, NULL, NULL);
        zmq_pollitem_t conn = { NULL, t->fd, ZMQ_POLLIN, 0 };
        BM_CHECK (t->fd >= 0 && zloop_poller (loop, &conn, s_test_answer, t) == 0);
        return 0;
    }
    char buf [256];
    if (read (t->fd, buf, sizeof buf) > 0) {
        const char answer [] = "*2\r\n$8\r\n10.0.0.7\r\n$4\r\n6390\r\n";
        BM_CHECK (write (t->fd, answer, sizeof answer - 1) == (ssize_t) sizeof answer - 1);
    }
    return 0;
}

//  Run loop until fn was called (or 3 s), ticking every 10 ms.
static void
s_test_run (zloop_t *loop, s_test_t *t)
{
    int tick = zloop_timer (loop, 10, 0, s_test_tick, t);
    int64_t limit = zclock_mono () + 3000;
    while (!t->calls && zclock_mono () < limit)
        if (zloop_start (loop) == -1 && !t->calls)
            break;
    zloop_timer_end (loop, tick);
}

//  One lookup of list (timeout_ms a sentinel), the answering sentinel
//  served meanwhile: its outcome in *t.
static void
s_test_ask (zloop_t *loop, int answering, const char *list, int timeout_ms, s_test_t *t)
{
    *t = (s_test_t) { .fd = -1 };
    zmq_pollitem_t item = { NULL, answering, ZMQ_POLLIN, 0 };
    BM_CHECK (zloop_poller (loop, &item, s_test_answer, t) == 0);
    bm_sentinel_lookup_t *lookup = bm_sentinel_lookup_new (loop, list, "m", timeout_ms,
                                                           s_test_found, t);
    BM_CHECK (lookup);
    t->started = zclock_mono ();
    bm_sentinel_lookup_start (lookup);
    BM_CHECK (t->calls == 0 && bm_sentinel_lookup_busy (lookup));   //  Never inside start
    s_test_run (loop, t);
    BM_CHECK (!bm_sentinel_lookup_busy (lookup));
    zloop_poller_end (loop, &item);
    if (t->fd != -1) {
        zmq_pollitem_t conn = { NULL, t->fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (loop, &conn);
        close (t->fd);
    }
    bm_sentinel_lookup_destroy (&lookup);
    BM_CHECK (lookup == NULL);
}

void
bm_sentinel_lookup_test (bool verbose)
{
    (void) verbose;
    zloop_t *loop = zloop_new ();
    s_test_t t;
    BM_CHECK (bm_sentinel_lookup_new (loop, "nohost", "m", 100, s_test_found, &t) == NULL);
    int silent_port, answer_port;
    int silent = s_test_listener (&silent_port);
    int answering = s_test_listener (&answer_port);

    //  Refused at once: told at the next loop turn.
    s_test_ask (loop, answering, "127.0.0.1:1", 100, &t);
    BM_CHECK (t.calls == 1 && t.rc == -1 && strstr (t.why, "sentinel 127.0.0.1:1: "));

    //  A refusal, a sentinel that never answers, one that names the
    //  master: the third answers, after the second's 200 ms, and the loop
    //  kept ticking all along.
    char list [128];
    snprintf (list, sizeof list, "127.0.0.1:1, 127.0.0.1:%d, 127.0.0.1:%d", silent_port, answer_port);
    s_test_ask (loop, answering, list, 200, &t);
    BM_CHECK (t.calls == 1 && t.rc == 0 && streq (t.host, "10.0.0.7") && t.port == 6390);
    BM_CHECK (t.at - t.started >= 200);
    BM_CHECK (t.ticks >= 10);           //  Not held by the silent one

    //  A sentinel named by host name (resolved off the loop).
    snprintf (list, sizeof list, "localhost:%d", answer_port);
    s_test_ask (loop, answering, list, 200, &t);
    BM_CHECK (t.calls == 1 && t.rc == 0 && streq (t.host, "10.0.0.7") && t.port == 6390);

    //  Only the silent one: its deadline is the reason.
    snprintf (list, sizeof list, "127.0.0.1:%d", silent_port);
    s_test_ask (loop, answering, list, 100, &t);
    char expected [128];
    snprintf (expected, sizeof expected, "sentinel 127.0.0.1:%d: no answer within 100 ms",
              silent_port);
    BM_CHECK (t.calls == 1 && t.rc == -1 && streq (t.why, expected));

    //  Started again while resolving, then destroyed while resolving: no
    //  call.
    snprintf (list, sizeof list, "localhost:%d", silent_port);
    t = (s_test_t) { .fd = -1 };
    bm_sentinel_lookup_t *lookup = bm_sentinel_lookup_new (loop, list, "m", 100, s_test_found, &t);
    bm_sentinel_lookup_start (lookup);
    bm_sentinel_lookup_start (lookup);
    BM_CHECK (bm_sentinel_lookup_busy (lookup));
    bm_sentinel_lookup_destroy (&lookup);
    zloop_timer (loop, 150, 1, s_test_end, NULL);
    zloop_start (loop);
    BM_CHECK (t.calls == 0);
    close (silent);
    close (answering);
    zloop_destroy (&loop);
}

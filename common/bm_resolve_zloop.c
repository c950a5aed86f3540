/*  bm_resolve_zloop.c - a host name resolved off a zloop, the answer told
    on it.  */
#include "bm_resolve_zloop.h"
#include "bm_resolve.h"

#include <arpa/inet.h>

struct _bm_resolve_zloop_t {
    zloop_t *loop;
    int timeout_ms;             //  Bound on each resolution
    bm_resolve_zloop_fn *fn;
    void *arg;
    bm_resolve_t *resolve;      //  The resolution in flight, or NULL
    zmq_pollitem_t item;        //  Our poller on its descriptor
    int timer;                  //  Its deadline, or -1
};

//  Stop waiting for the resolution in flight, if any.
static void
s_end (bm_resolve_zloop_t *self)
{
    if (!self->resolve)
        return;
    zloop_poller_end (self->loop, &self->item);
    if (self->timer != -1) {
        zloop_timer_end (self->loop, self->timer);
        self->timer = -1;
    }
    bm_resolve_destroy (&self->resolve);
}

//  The resolver answered.
static int
s_on_readable (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop; (void) item;
    bm_resolve_zloop_t *self = (bm_resolve_zloop_t *) arg;
    char addr [INET6_ADDRSTRLEN], why [256];
    int rc = self->resolve
           ? bm_resolve_result (self->resolve, addr, sizeof addr, why, sizeof why) : 1;
    if (rc == 1)
        return 0;               //  Not yet (or no longer ours)
    s_end (self);
    //  Last: fn may start another resolution, or destroy self.
    self->fn (rc, rc == 0 ? addr : NULL, rc ? why : NULL, self->arg);
    return 0;
}

//  The resolver took too long: given up on.
static int
s_on_deadline (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    bm_resolve_zloop_t *self = (bm_resolve_zloop_t *) arg;
    //  zloop_timer_end only queues a timer's removal: one due in the same
    //  pass still fires.  A deadline ended since (cancel, start again) is
    //  not the one in force.
    if (timer_id != self->timer)
        return 0;
    self->timer = -1;
    s_end (self);
    char why [64];
    snprintf (why, sizeof why, "name not resolved after %d ms", self->timeout_ms);
    self->fn (-1, NULL, why, self->arg);
    return 0;
}

//  --------------------------------------------------------------------------

bm_resolve_zloop_t *
bm_resolve_zloop_new (zloop_t *loop, int timeout_ms, bm_resolve_zloop_fn *fn, void *arg)
{
    bm_resolve_zloop_t *self = (bm_resolve_zloop_t *) zmalloc (sizeof (bm_resolve_zloop_t));
    self->loop = loop;
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    self->fn = fn;
    self->arg = arg;
    self->timer = -1;
    return self;
}

void
bm_resolve_zloop_destroy (bm_resolve_zloop_t **self_p)
{
    if (*self_p) {
        bm_resolve_zloop_t *self = *self_p;
        s_end (self);
        free (self);
        *self_p = NULL;
    }
}

int
bm_resolve_zloop_start (bm_resolve_zloop_t *self, const char *host, char *why, size_t why_size)
{
    s_end (self);
    self->resolve = bm_resolve_new (host, why, why_size);
    if (!self->resolve)
        return -1;
    self->item = (zmq_pollitem_t) { NULL, bm_resolve_fd (self->resolve), ZMQ_POLLIN, 0 };
    if (zloop_poller (self->loop, &self->item, s_on_readable, self)) {
        bm_resolve_destroy (&self->resolve);
        snprintf (why, why_size, "cannot poll the resolver");
        return -1;
    }
    //  The pipe's hang-up comes with its byte: not an error.
    zloop_poller_set_tolerant (self->loop, &self->item);
    self->timer = zloop_timer (self->loop, (size_t) self->timeout_ms, 1, s_on_deadline, self);
    return 0;
}

void
bm_resolve_zloop_cancel (bm_resolve_zloop_t *self)
{
    s_end (self);
}

bool
bm_resolve_zloop_busy (bm_resolve_zloop_t *self)
{
    return self->resolve != NULL;
}

//  --------------------------------------------------------------------------
//  Self test: resolutions of localhost on the test's own loop (a name
//  given up on is tested end to end: tests/broker/test_*_dns_silent.py).

#include "bm_selftest.h"

typedef struct {
    int calls;                  //  fn calls
    int rc;
    char addr [INET6_ADDRSTRLEN];
    bm_resolve_zloop_t **destroy;   //  fn destroys this one, if set
} s_test_t;

static void
s_test_fn (int rc, const char *addr, const char *why, void *arg)
{
    s_test_t *t = (s_test_t *) arg;
    t->calls++;
    t->rc = rc;
    snprintf (t->addr, sizeof t->addr, "%s", rc == 0 ? addr : why);
    if (t->destroy)
        bm_resolve_zloop_destroy (t->destroy);
}

static int
s_test_called (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    return ((s_test_t *) arg)->calls ? -1 : 0;
}

static int
s_test_end (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id; (void) arg;
    return -1;
}

//  Run loop until fn was called, or for ms at most.
static void
s_test_run (zloop_t *loop, s_test_t *t, int ms)
{
    int tick = zloop_timer (loop, 10, 0, s_test_called, t);
    int end = zloop_timer (loop, (size_t) ms, 1, s_test_end, NULL);
    zloop_start (loop);
    zloop_timer_end (loop, tick);
    zloop_timer_end (loop, end);
}

void
bm_resolve_zloop_test (bool verbose)
{
    (void) verbose;
    zloop_t *loop = zloop_new ();
    s_test_t t = { 0 };
    char why [256];
    bm_resolve_zloop_t *resolver = bm_resolve_zloop_new (loop, 10000, s_test_fn, &t);
    BM_CHECK (!bm_resolve_zloop_busy (resolver));

    //  localhost: its address, told on the loop, never inside start.
    BM_CHECK (bm_resolve_zloop_start (resolver, "localhost", why, sizeof why) == 0);
    BM_CHECK (t.calls == 0 && bm_resolve_zloop_busy (resolver));
    s_test_run (loop, &t, 10000);
    BM_CHECK (t.calls == 1 && t.rc == 0 && streq (t.addr, "127.0.0.1"));
    BM_CHECK (!bm_resolve_zloop_busy (resolver));

    //  Started twice: the first is dropped, one call.
    t = (s_test_t) { 0 };
    BM_CHECK (bm_resolve_zloop_start (resolver, "localhost", why, sizeof why) == 0);
    BM_CHECK (bm_resolve_zloop_start (resolver, "localhost", why, sizeof why) == 0);
    s_test_run (loop, &t, 10000);
    BM_CHECK (t.calls == 1 && t.rc == 0);
    t.calls = 0;
    s_test_run (loop, &t, 200);
    BM_CHECK (t.calls == 0);

    //  Cancelled: no call.
    BM_CHECK (bm_resolve_zloop_start (resolver, "localhost", why, sizeof why) == 0);
    bm_resolve_zloop_cancel (resolver);
    BM_CHECK (!bm_resolve_zloop_busy (resolver));
    s_test_run (loop, &t, 200);
    BM_CHECK (t.calls == 0);

    //  fn destroys the object it runs for (the sanitizers watch).
    t = (s_test_t) { .destroy = &resolver };
    BM_CHECK (bm_resolve_zloop_start (resolver, "localhost", why, sizeof why) == 0);
    s_test_run (loop, &t, 10000);
    BM_CHECK (t.calls == 1 && t.rc == 0 && resolver == NULL);

    //  Destroyed in flight: no call (the thread frees what is left).
    t = (s_test_t) { 0 };
    resolver = bm_resolve_zloop_new (loop, 10000, s_test_fn, &t);
    BM_CHECK (bm_resolve_zloop_start (resolver, "localhost", why, sizeof why) == 0);
    bm_resolve_zloop_destroy (&resolver);
    BM_CHECK (resolver == NULL);
    bm_resolve_zloop_destroy (&resolver);   //  Idempotent
    s_test_run (loop, &t, 200);
    BM_CHECK (t.calls == 0);
    zloop_destroy (&loop);
}

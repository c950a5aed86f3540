/*  bm_done_replay.c - recent DONEs, kept to send again after a reconnect.  */
#include "bm_done_replay.h"
#include "bm_log.h"
#include "bm_proto.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <stdint.h>
#include <string.h>

//  A DONE recently sent, to send again after a reconnect. One allocation:
//  the body, then the job id's string.
typedef struct {
    int64_t sent_mono;                  //  When it was sent
    size_t size;                        //  Bytes of its msgpack body
    char *job_id;                       //  Its job, in data
    bool indexed;                       //  completed maps job_id to it (no newer
                                        //  DONE of the job replaced it there)
    bool discarded;                     //  A CANCEL crossed it: not sent again
    bool reached;                       //  A live broker got it on an earlier
                                        //  connection (sent again since)
    char data [];                       //  The body, then the job id
} done_t;

struct _bm_done_replay_t {
    done_t **ring;                      //  slots slots: count DONEs, oldest at
    size_t first, count, slots;         //  first, owned (no list node each);
    size_t max;                         //  slots grow up to max
    size_t bytes, max_bytes;            //  Bodies kept, and their bound
    size_t lost;                        //  Dropped before a broker got them
    size_t discarded;                   //  Of count, those not sent again
    zhashx_t *completed;                //  job id -> its completed done_t in ring
    int64_t heard_mono;                 //  When the broker last spoke
    bool link_up;                       //  A connection to a broker is up
    int64_t up_since;                   //  When it said READY (every DONE kept
                                        //  was sent again then)
};

//  When the DONE was last sent: at its run's end, or again on the
//  current connection.
static int64_t
s_last_sent (bm_done_replay_t *self, const done_t *done)
{
    return done->sent_mono > self->up_since ? done->sent_mono : self->up_since;
}

//  Whether a live broker got the DONE, as far as we can tell: the broker
//  spoke on the connection it was last sent on, after it was sent.
static bool
s_reached (bm_done_replay_t *self, const done_t *done)
{
    return done->reached || (self->link_up && self->heard_mono > s_last_sent (self, done));
}

//  The connection ends (or a new one starts): the DONEs a broker got on
//  it stay got when they are sent again on the next one.
static void
s_mark_reached (bm_done_replay_t *self)
{
    if (!self->link_up)
        return;
    for (size_t i = 0; i < self->count; i++) {
        done_t *done = self->ring [(self->first + i) % self->slots];
        if (!done->reached && s_reached (self, done))
            done->reached = true;
    }
}

//  Room for one more slot: the ring doubles (up to max), oldest first at 0.
static bool
s_grow (bm_done_replay_t *self)
{
    size_t slots = self->slots ? self->slots * 2 : 64;
    if (slots > self->max)
        slots = self->max;
    done_t **ring = (done_t **) malloc (slots * sizeof (done_t *));
    if (!ring)
        return false;
    for (size_t i = 0; i < self->count; i++)
        ring [i] = self->ring [(self->first + i) % self->slots];
    free (self->ring);
    self->ring = ring;
    self->slots = slots;
    self->first = 0;
    return true;
}

static void
s_done_destroy (done_t **done_p)
{
    if (*done_p) {
        free (*done_p);
        *done_p = NULL;
    }
}

//  Take the oldest DONE out of the ring and the index; the caller owns it.
static done_t *
s_take_oldest (bm_done_replay_t *self)
{
    done_t *done = self->ring [self->first];
    self->ring [self->first] = NULL;
    self->first = (self->first + 1) % self->slots;
    self->count--;
    self->bytes -= done->size;
    if (done->discarded)
        self->discarded--;
    if (done->indexed)
        zhashx_delete (self->completed, done->job_id);
    return done;
}

//  Drop the oldest DONE kept; WARN when no live broker got it (why: the
//  cap, or its age).
static void
s_drop_oldest (bm_done_replay_t *self, const char *why)
{
    done_t *done = s_take_oldest (self);
    if (why && !done->discarded && !s_reached (self, done)) {
        self->lost++;
        bm_warn (done->job_id, "its DONE is dropped (%s) before a broker confirmed it: the job "
                 "may run again", why);
    }
    s_done_destroy (&done);
}

bm_done_replay_t *
bm_done_replay_new (size_t max, size_t max_bytes)
{
    bm_done_replay_t *self = (bm_done_replay_t *) zmalloc (sizeof (bm_done_replay_t));
    self->max = max;
    self->max_bytes = max_bytes;
    self->link_up = true;
    //  Neither keys nor values are owned: each is a done_t in ring
    self->completed = zhashx_new ();
    zhashx_set_key_duplicator (self->completed, NULL);
    zhashx_set_key_destructor (self->completed, NULL);
    return self;
}

void
bm_done_replay_destroy (bm_done_replay_t **self_p)
{
    if (*self_p) {
        bm_done_replay_t *self = *self_p;
        while (self->count)
            s_drop_oldest (self, NULL);
        free (self->ring);
        zhashx_destroy (&self->completed);
        free (self);
        *self_p = NULL;
    }
}

void
bm_done_replay_remember (bm_done_replay_t *self, const char *body, size_t size,
                         const char *job_id, bool completed, int64_t now_mono)
{
    if (self->max == 0 || size > self->max_bytes)
        return;
    size_t id_size = strlen (job_id) + 1;
    //  Past the bytes bound, the oldest go; past the slots, the ring grows
    //  up to max.  Full (a worker that keeps busy always is): the oldest's
    //  memory is reused for this one, one realloc instead of a free and a
    //  malloc.
    while (self->count && self->bytes + size > self->max_bytes)
        s_drop_oldest (self, "more than the bytes bound kept");
    if (self->count == self->slots && self->slots < self->max && !s_grow (self) && !self->count)
        return;                         //  Not kept: a replay is best effort
    done_t *reuse = NULL;
    if (self->count == self->slots) {
        reuse = s_take_oldest (self);
        if (!reuse->discarded && !s_reached (self, reuse)) {
            self->lost++;
            bm_warn (reuse->job_id, "its DONE is dropped (more than %zu kept) before a broker "
                     "confirmed it: the job may run again", self->count + 1);
        }
    }
    done_t *done = (done_t *) realloc (reuse, sizeof (done_t) + size + id_size);
    if (!done) {
        free (reuse);
        return;                         //  Not kept: a replay is best effort
    }
    done->sent_mono = now_mono;
    done->size = size;
    memcpy (done->data, body, size);
    done->job_id = done->data + size;
    memcpy (done->job_id, job_id, id_size);
    done->indexed = false;
    done->discarded = false;
    done->reached = false;
    if (completed) {
        done->indexed = true;
        if (zhashx_insert (self->completed, done->job_id, done)) {
            //  The newer entry replaces an older one of the same job (whose
            //  key, its own string, is then no longer the table's)
            done_t *older = (done_t *) zhashx_lookup (self->completed, done->job_id);
            older->indexed = false;
            zhashx_delete (self->completed, done->job_id);
            zhashx_insert (self->completed, done->job_id, done);
        }
    }
    self->ring [(self->first + self->count) % self->slots] = done;
    self->count++;
    self->bytes += size;
}

const char *
bm_done_replay_completed (bm_done_replay_t *self, const char *job_id, size_t *size)
{
    done_t *done = (done_t *) zhashx_lookup (self->completed, job_id);
    if (!done)
        return NULL;
    *size = done->size;
    return done->data;
}

bool
bm_done_replay_discard (bm_done_replay_t *self, const char *job_id)
{
    done_t *done = (done_t *) zhashx_lookup (self->completed, job_id);
    if (!done)
        return false;
    //  It stays in the ring, skipped, until it is the oldest
    done->discarded = true;
    done->indexed = false;
    self->discarded++;
    zhashx_delete (self->completed, job_id);
    return true;
}

void
bm_done_replay_heard (bm_done_replay_t *self, int64_t heard_mono)
{
    self->heard_mono = heard_mono;
}

void
bm_done_replay_link_down (bm_done_replay_t *self)
{
    s_mark_reached (self);
    self->link_up = false;
}

void
bm_done_replay_link_up (bm_done_replay_t *self, int64_t now_mono)
{
    s_mark_reached (self);
    self->link_up = true;
    self->up_since = now_mono;
}

void
bm_done_replay_prune (bm_done_replay_t *self, int64_t now_mono, int64_t age_ms)
{
    if (!self->link_up)
        return;                         //  No broker to ask for them: they wait
    while (self->count && s_last_sent (self, self->ring [self->first]) < now_mono - age_ms)
        s_drop_oldest (self, "too old");
}

void
bm_done_replay_send (bm_done_replay_t *self, bm_worker_link_t *link)
{
    for (size_t i = 0; i < self->count; i++) {
        const done_t *done = self->ring [(self->first + i) % self->slots];
        if (!done->discarded)
            bm_worker_link_send (link, BM_DONE, done->data, done->size, NULL);
    }
}

size_t
bm_done_replay_size (bm_done_replay_t *self)
{
    return self->count - self->discarded;
}

size_t
bm_done_replay_lost (bm_done_replay_t *self)
{
    return self->lost;
}


//  --------------------------------------------------------------------------
//  Self-test: the cap drops the oldest, pruning drops the old, a CANCEL
//  discards.

void
bm_done_replay_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_done_replay: ");
    bm_done_replay_t *replay = bm_done_replay_new (2, SIZE_MAX);
    size_t size = 0;
    bm_done_replay_remember (replay, "a", 1, "j1", true, 10);
    BM_CHECK (bm_done_replay_completed (replay, "j1", &size) && size == 1);
    bm_done_replay_remember (replay, "bb", 2, "j2", false, 20);        //  A failed run
    BM_CHECK (!bm_done_replay_completed (replay, "j2", &size));
    bm_done_replay_remember (replay, "ccc", 3, "j3", true, 30);
    BM_CHECK (bm_done_replay_size (replay) == 2);         //  "a" dropped
    BM_CHECK (!bm_done_replay_completed (replay, "j1", &size));
    const char *body = bm_done_replay_completed (replay, "j3", &size);
    BM_CHECK (body && size == 3 && memcmp (body, "ccc", 3) == 0);
    bm_done_replay_prune (replay, 25, 0);
    BM_CHECK (bm_done_replay_size (replay) == 1);         //  "bb" too old
    bm_done_replay_prune (replay, 31, 0);
    BM_CHECK (bm_done_replay_size (replay) == 0);
    BM_CHECK (!bm_done_replay_completed (replay, "j3", &size));
    //  The same job twice: the newer entry is the one found, and dropping
    //  the older one keeps it.
    bm_done_replay_remember (replay, "e", 1, "j4", true, 40);
    bm_done_replay_remember (replay, "ff", 2, "j4", true, 41);
    bm_done_replay_remember (replay, "g", 1, "f2", false, 42);
    BM_CHECK (bm_done_replay_completed (replay, "j4", &size) && size == 2);
    bm_done_replay_remember (replay, "d", 1, "f3", false, 43);
    BM_CHECK (!bm_done_replay_completed (replay, "j4", &size));
    bm_done_replay_destroy (&replay);
    BM_CHECK (replay == NULL);
    bm_done_replay_destroy (&replay);                   //  Idempotent

    //  Round and round the ring: the last three stay, pruned oldest first.
    replay = bm_done_replay_new (3, SIZE_MAX);
    const char *ids [] = { "k1", "k2", "k3", "k4", "k5", "k6", "k7" };
    for (int i = 0; i < 7; i++)
        bm_done_replay_remember (replay, ids [i], 2, ids [i], true, 100 + i);
    BM_CHECK (bm_done_replay_size (replay) == 3);
    BM_CHECK (!bm_done_replay_completed (replay, "k4", &size));
    body = bm_done_replay_completed (replay, "k5", &size);
    BM_CHECK (body && size == 2 && memcmp (body, "k5", 2) == 0);
    bm_done_replay_prune (replay, 106, 0);                 //  k5 and k6 go
    BM_CHECK (bm_done_replay_size (replay) == 1);
    BM_CHECK (!bm_done_replay_completed (replay, "k6", &size));
    BM_CHECK (bm_done_replay_completed (replay, "k7", &size));
    bm_done_replay_destroy (&replay);

    //  A CANCEL crossed a completed DONE: it answers no JOB and is not sent
    //  again; a failed DONE is not found, a later completed one is.
    replay = bm_done_replay_new (3, SIZE_MAX);
    bm_done_replay_remember (replay, "m1", 2, "m1", true, 200);
    bm_done_replay_remember (replay, "xx", 2, "m2", false, 201);          //  A failed run of m2
    BM_CHECK (bm_done_replay_discard (replay, "m1"));
    BM_CHECK (!bm_done_replay_completed (replay, "m1", &size));
    BM_CHECK (bm_done_replay_size (replay) == 1);                     //  Only "xx" goes again
    BM_CHECK (!bm_done_replay_discard (replay, "m1"));
    BM_CHECK (!bm_done_replay_discard (replay, "m2"));
    BM_CHECK (!bm_done_replay_discard (replay, "nope"));
    bm_done_replay_remember (replay, "M1", 2, "m1", true, 202);          //  Its retry completed
    body = bm_done_replay_completed (replay, "m1", &size);
    BM_CHECK (body && memcmp (body, "M1", 2) == 0 && bm_done_replay_size (replay) == 2);
    bm_done_replay_remember (replay, "n1", 2, "n1", true, 203);          //  The discarded one goes
    BM_CHECK (bm_done_replay_size (replay) == 3);
    BM_CHECK (bm_done_replay_discard (replay, "n1") && bm_done_replay_size (replay) == 2);
    bm_done_replay_prune (replay, 204, 0);
    BM_CHECK (bm_done_replay_size (replay) == 0 && !bm_done_replay_completed (replay, "m1", &size));
    bm_done_replay_destroy (&replay);
    //  While no broker is connected, no DONE ages; once one is, each ages
    //  from that READY (when it was sent again), not from its run's end.
    replay = bm_done_replay_new (3, SIZE_MAX);
    bm_done_replay_link_up (replay, 300);
    bm_done_replay_remember (replay, "p1", 2, "p1", true, 301);
    bm_done_replay_link_down (replay);
    bm_done_replay_prune (replay, 10000, 10);
    BM_CHECK (bm_done_replay_completed (replay, "p1", &size));
    bm_done_replay_link_up (replay, 10000);
    bm_done_replay_prune (replay, 10009, 10);
    BM_CHECK (bm_done_replay_completed (replay, "p1", &size));
    bm_done_replay_prune (replay, 10011, 10);
    BM_CHECK (!bm_done_replay_completed (replay, "p1", &size) && bm_done_replay_size (replay) == 0);
    //  The cap still drops the oldest while no broker is connected.
    bm_done_replay_link_down (replay);
    for (int i = 0; i < 4; i++)
        bm_done_replay_remember (replay, ids [i], 2, ids [i], true, 20000 + i);
    BM_CHECK (bm_done_replay_size (replay) == 3 && !bm_done_replay_completed (replay, "k1", &size));
    bm_done_replay_destroy (&replay);
    //  A DONE a broker got before the connection was lost is still got
    //  once it is sent again on the next one: dropping it is no loss.
    //  One no broker got is.
    replay = bm_done_replay_new (2, SIZE_MAX);
    bm_done_replay_link_up (replay, 400);
    bm_done_replay_remember (replay, "q1", 2, "q1", true, 401);
    bm_done_replay_heard (replay, 402);
    bm_done_replay_link_down (replay);
    bm_done_replay_link_up (replay, 500);                  //  q1 sent again
    bm_done_replay_remember (replay, "q2", 2, "q2", true, 501);
    bm_done_replay_remember (replay, "q3", 2, "q3", true, 502);           //  q1 goes
    BM_CHECK (bm_done_replay_size (replay) == 2 && bm_done_replay_lost (replay) == 0);
    bm_done_replay_remember (replay, "q4", 2, "q4", true, 503);           //  q2 goes
    BM_CHECK (bm_done_replay_lost (replay) == 1);
    bm_done_replay_destroy (&replay);
    //  The bytes bound drops the oldest; a body over it is not kept.
    replay = bm_done_replay_new (10, 5);
    bm_done_replay_remember (replay, "abc", 3, "r1", true, 600);
    bm_done_replay_remember (replay, "def", 3, "r2", true, 601);
    BM_CHECK (bm_done_replay_size (replay) == 1 && !bm_done_replay_completed (replay, "r1", &size));
    bm_done_replay_remember (replay, "ghijkl", 6, "r3", true, 602);
    BM_CHECK (bm_done_replay_size (replay) == 1 && !bm_done_replay_completed (replay, "r3", &size));
    bm_done_replay_destroy (&replay);
    //  The ring grows: 5,000 DONEs of a busy worker in the window are all
    //  kept, the first still found (a fixed 1,000 dropped it).
    replay = bm_done_replay_new (BM_DONE_REPLAY_MAX, BM_DONE_REPLAY_BYTES);
    char id [16];
    for (int i = 0; i < 5000; i++) {
        snprintf (id, sizeof id, "s%d", i);
        bm_done_replay_remember (replay, id, strlen (id), id, true, 700 + i / 100);
    }
    BM_CHECK (bm_done_replay_size (replay) == 5000 && bm_done_replay_lost (replay) == 0);
    body = bm_done_replay_completed (replay, "s0", &size);
    BM_CHECK (body && size == 2 && memcmp (body, "s0", 2) == 0);
    BM_CHECK (bm_done_replay_completed (replay, "s4999", &size));
    bm_done_replay_heard (replay, 800);                    //  A broker got them all
    bm_done_replay_prune (replay, 725, 0);                 //  The first half goes
    BM_CHECK (bm_done_replay_size (replay) == 2500 && !bm_done_replay_completed (replay, "s0", &size));
    BM_CHECK (bm_done_replay_lost (replay) == 0);
    bm_done_replay_destroy (&replay);
    //  Keeping none keeps none.
    replay = bm_done_replay_new (0, SIZE_MAX);
    bm_done_replay_remember (replay, "a", 1, "j1", true, 10);
    BM_CHECK (bm_done_replay_size (replay) == 0 && !bm_done_replay_completed (replay, "j1", &size));
    bm_done_replay_destroy (&replay);
    printf ("OK\n");
}
